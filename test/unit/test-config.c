/* SPDX-License-Identifier: MIT */
/* test-config.c: fleetd configuration: goini syntax, FLEET_* precedence, value forms. */
#include <stdio.h>
#include <sys/stat.h>

#include "config.h"
#include "strv.h"
#include "tests.h"

static char path[64];

static void remove_tmp(void) {
        if (path[0])
                (void) unlink(path);
}

/* Writes text to a fresh temporary file; returns its path (static buffer). */
static const char *conf(const char *text) {
        FILE *f;
        int fd;

        if (path[0])
                (void) unlink(path);
        else
                atexit(remove_tmp);
        strcpy(path, "/tmp/fleet-test-config.XXXXXX");
        fd = mkstemp(path);
        if (fd < 0)
                abort();
        f = fdopen(fd, "w");
        fputs(text, f);
        fclose(f);
        return path;
}

static char *no_env[] = { NULL };

/* Loads text with env; NULL on failure (error message in *err if given). */
static FleetConfig *load(const char *text, char **env, char **err) {
        FleetConfig *c = NULL;
        _cleanup_free_ char *e = NULL;

        if (fl_config_load(conf(text), env ?: no_env, &c, &e) < 0) {
                if (err)
                        *err = TAKE_PTR(e);
                return NULL;
        }
        return c;
}

TEST(defaults) {
        _cleanup_(fl_config_freep) FleetConfig *c = load("", NULL, NULL);
        ASSERT_NOT_NULL(c);
        ASSERT_NOT_NULL(c->path);
        ASSERT_EQ(c->verbosity, 0);
        ASSERT_EQ(fl_strv_length(c->etcd_servers), 2);
        ASSERT_STREQ(c->etcd_servers[0], "http://127.0.0.1:2379");
        ASSERT_STREQ(c->etcd_servers[1], "http://127.0.0.1:4001");
        ASSERT_STREQ(c->etcd_key_prefix, "/_coreos.com/fleet/");
        ASSERT_EQ(c->etcd_request_timeout_usec, 1000000);
        ASSERT_EQ(c->engine_reconcile_interval_usec, 2000000);
        ASSERT_EQ(c->agent_ttl_usec, 30000000);
        ASSERT_STREQ(c->units_directory, "/run/fleet/units/");
        ASSERT_EQ(c->token_limit, 100);
        ASSERT_FALSE(c->systemd_user);
        ASSERT_FALSE(c->disable_engine);
        ASSERT_FALSE(c->disable_watches);
        ASSERT_FALSE(c->enable_grpc);
        ASSERT_NULL(c->public_ip);
        ASSERT_EQ(fl_strv_length(c->metadata), 0);
        ASSERT_EQ(fl_strv_length(c->api_listen), 0);
        ASSERT_EQ(fl_strv_length(c->warnings), 0);
}

/* One key, one file text, the value expected in etcd_key_prefix (a plain string key). */
TEST(goini_values) {
        static const struct {
                const char *text, *want;
        } cases[] = {
                { "etcd_key_prefix=/a/\n", "/a/" },
                { "  etcd_key_prefix  =   /a/   \n", "/a/" },
                { "ETCD_KEY_PREFIX=/upper/\n", "/upper/" },
                { "Etcd_Key_Prefix=/mixed/\n", "/mixed/" },
                { "etcd_key_prefix=/a/ # comment\n", "/a/" },
                { "etcd_key_prefix=/a/;comment\n", "/a/" },
                { "etcd_key_prefix=\"/a/ # not a comment\"\n", "/a/ # not a comment" },
                { "etcd_key_prefix='/single; quoted/'\n", "/single; quoted/" },
                { "etcd_key_prefix=\"/q/\" # trailing comment\n", "/q/" },
                { "etcd_key_prefix=\"\"\n", "" },
                { "etcd_key_prefix=\n", "" },
                { "etcd_key_prefix=a=b\n", "a=b" },
                { "etcd_key_prefix=/first/\netcd_key_prefix=/second/\n", "/second/" },
                { "# etcd_key_prefix=/commented/\n", "/_coreos.com/fleet/" },
                { "; etcd_key_prefix=/commented/\n", "/_coreos.com/fleet/" },
                { "etcd_key_prefix=/con\\\n   tinued/\n", "/continued/" },
                { "etcd_key_prefix=/a/\\\nb/\\\n  c/\n", "/a/b/c/" },
                { "etcd_key_prefix=/top/\n[section]\netcd_key_prefix=/in-section/\n", "/top/" },
                { "[section]\netcd_key_prefix=/in-section/\n", "/_coreos.com/fleet/" },
                { "\n\n   \n\tetcd_key_prefix=/blank-lines/\r\n", "/blank-lines/" },
                { "\xef\xbb\xbf" "etcd_key_prefix=/bom/\n", "/bom/" },
                { "etcd_key_prefix=/no-newline/", "/no-newline/" },
                { "unknown_key=whatever\netcd_key_prefix=/x/\n", "/x/" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *err = NULL;
                _cleanup_(fl_config_freep) FleetConfig *c = load(cases[i].text, NULL, &err);
                if (!c)
                        FAIL_AT("case %zu: load failed: %s", i, strempty(err));
                if (!streq(c->etcd_key_prefix, cases[i].want))
                        FAIL_AT("case %zu: got \"%s\", want \"%s\"", i, c->etcd_key_prefix, cases[i].want);
        }
}

TEST(goini_syntax_errors) {
        static const struct {
                const char *text;
                unsigned line;
        } cases[] = {
                { "no equals sign\n", 1 },
                { "verbosity=1\n\n# ok\nbroken line\n", 4 },
                { "=value\n", 1 },
                { "etcd_key_prefix=\"unterminated\n", 1 },
                { "etcd_key_prefix=\"a\" junk\n", 1 },
                { "[unterminated\n", 1 },
                { "a=1\n[section]\nstill bad in a section\n", 3 },
                { "a=1\nb=\\\nc\n", 2 }, /* continued line "b=c" is fine... */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *err = NULL, *want = NULL;
                FleetConfig *c = NULL;
                const char *path = conf(cases[i].text);
                int r = fl_config_load(path, no_env, &c, &err);

                if (i == ELEMENTSOF(cases) - 1) {
                        /* ...the last case is the control: it must parse. */
                        if (r < 0)
                                FAIL_AT("control case failed: %s", strempty(err));
                        fl_config_free(c);
                        continue;
                }
                if (r != -EINVAL)
                        FAIL_AT("case %zu: r=%d, want -EINVAL", i, r);
                ASSERT_TRUE(asprintf(&want, "iniparser: syntax error at '%s:%u'.", path, cases[i].line) > 0);
                if (!streq_ptr(err, want))
                        FAIL_AT("case %zu: error \"%s\", want \"%s\"", i, strempty(err), want);
        }
}

TEST(missing_and_directory) {
        FleetConfig *c = NULL;
        _cleanup_free_ char *e1 = NULL, *e2 = NULL;

        ASSERT_ERR(fl_config_load("/nonexistent/fleet.conf", no_env, &c, &e1), -ENOENT);
        ASSERT_NOT_NULL(e1);
        ASSERT_NOT_NULL(strstr(e1, "/nonexistent/fleet.conf"));
        ASSERT_ERR(fl_config_load("/tmp", no_env, &c, &e2), -EISDIR);
        ASSERT_NOT_NULL(strstr(e2, "/tmp"));
        ASSERT_NULL(c);
}

TEST(env_precedence) {
        char *env[] = { "FLEET_ETCD_KEY_PREFIX=/from-env/", "FLEET_PUBLIC_IP=", "FLEET_VERBOSITY=2",
                        "FLEET_DISABLE_ENGINE=true", "NOT_FLEET_AGENT_TTL=5s", "FLEET_AGENT_TTLX=5s",
                        "FLEET_METADATA=", NULL };
        _cleanup_(fl_config_freep) FleetConfig *c =
                load("etcd_key_prefix=/from-file/\npublic_ip=1.2.3.4\nverbosity=1\nagent_ttl=10s\n"
                     "metadata=a=b\n", env, NULL);
        ASSERT_NOT_NULL(c);
        ASSERT_STREQ(c->etcd_key_prefix, "/from-env/");
        /* Set but empty still wins over the file. */
        ASSERT_STREQ(c->public_ip, "");
        ASSERT_EQ(fl_strv_length(c->metadata), 0);
        ASSERT_EQ(c->verbosity, 2);
        ASSERT_TRUE(c->disable_engine);
        ASSERT_EQ(c->agent_ttl_usec, 10000000);
}

TEST(env_without_file) {
        char *env[] = { "FLEET_ETCD_SERVERS=http://e:1", NULL };
        FleetConfig *c = NULL;
        /* The default path may or may not exist here; an explicit empty file stands in. */
        ASSERT_OK(fl_config_load(conf(""), env, &c, NULL));
        ASSERT_EQ(fl_strv_length(c->etcd_servers), 1);
        ASSERT_STREQ(c->etcd_servers[0], "http://e:1");
        fl_config_free(c);
}

TEST(go_duration) {
        static const struct {
                const char *s;
                int r;
                uint64_t usec;
        } cases[] = {
                { "30s", 0, 30000000 },
                { "0", 0, 0 },
                { "-0", 0, 0 },
                { "+5s", 0, 5000000 },
                { "1m30s", 0, 90000000 },
                { "1h", 0, UINT64_C(3600000000) },
                { "1.5h", 0, UINT64_C(5400000000) },
                { "500ms", 0, 500000 },
                { ".5s", 0, 500000 },
                { "1.s", 0, 1000000 },
                { "2us", 0, 2 },
                { "2\xc2\xb5s", 0, 2 },
                { "2\xce\xbcs", 0, 2 },
                { "1500ns", 0, 1 },
                { "3s250ms", 0, 3250000 },
                { "1h2m3s4ms5us6ns", 0, UINT64_C(3723004005) },
                { "0.000001s", 0, 1 },
                /* More fraction digits than the unit has zeros (the fuzzer's finds). */
                { "1.25000000000s", 0, 1250000 },
                { "0.5555555555555h", 0, UINT64_C(1999999999) },
                { "0.2500000000000000000000000h", 0, UINT64_C(900000000) },
                { "0.5555555555555555555555555s", 0, 555555 },
                { "1.0000000000000000000001h", 0, UINT64_C(3600000000) },
                { "0.000000000000000000000000000001s", 0, 0 },
                { "1.5000000000000000000000000000000000us", 0, 1 },
                { "", -EINVAL, 0 },
                { "30", -EINVAL, 0 },
                { "s", -EINVAL, 0 },
                { ".s", -EINVAL, 0 },
                { "3x", -EINVAL, 0 },
                { "3 s", -EINVAL, 0 },
                { "1d", -EINVAL, 0 },
                { "-5s", -ERANGE, 0 },
                { "99999999999999999999h", -ERANGE, 0 },
                { "9999999999h", -ERANGE, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t u = 12345;
                int r = fl_parse_go_duration(cases[i].s, &u);
                if (r != cases[i].r)
                        FAIL_AT("\"%s\": r=%d, want %d", cases[i].s, r, cases[i].r);
                if (r == 0 && u != cases[i].usec)
                        FAIL_AT("\"%s\": %" PRIu64 " usec, want %" PRIu64, cases[i].s, u, cases[i].usec);
        }
}

TEST(agent_ttl_invalid) {
        _cleanup_free_ char *err = NULL, *err2 = NULL, *err3 = NULL;
        char *env[] = { "FLEET_AGENT_TTL=soon", NULL };

        ASSERT_NULL(load("verbosity=1\nagent_ttl=30\n", NULL, &err));
        ASSERT_NOT_NULL(err);
        ASSERT_NOT_NULL(strstr(err, "Failed creating Server"));
        ASSERT_NOT_NULL(strstr(err, "agent_ttl"));
        ASSERT_NOT_NULL(strstr(err, ":2"));
        ASSERT_NULL(load("", env, &err2));
        ASSERT_NOT_NULL(strstr(err2, "FLEET_AGENT_TTL"));
        ASSERT_NULL(load("agent_ttl=0s\n", NULL, &err3));
        ASSERT_NOT_NULL(err3);

        _cleanup_(fl_config_freep) FleetConfig *c = load("agent_ttl=3s\n", NULL, NULL);
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(c->agent_ttl_usec, 3000000);
}

TEST(etcd_servers_forms) {
        static const struct {
                const char *text;
                const char *want[3];
        } cases[] = {
                { "etcd_servers=http://a:2379,http://b:2379\n", { "http://a:2379", "http://b:2379" } },
                { "etcd_servers=[\"http://a:2379\",\"http://b:2379\"]\n", { "http://a:2379", "http://b:2379" } },
                { "etcd_servers=[\"http://a:2379\", \"http://b:2379\"]\n", { "http://a:2379", "http://b:2379" } },
                { "etcd_servers=http://only:2379\n", { "http://only:2379" } },
                { "etcd_servers=[\"http://only:2379\"]\n", { "http://only:2379" } },
                { "etcd_servers=http://a:1,,http://c:3,\n", { "http://a:1", "http://c:3" } },
                { "etcd_servers=\n", { NULL } },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(fl_config_freep) FleetConfig *c = load(cases[i].text, NULL, NULL);
                size_t n = 0;
                ASSERT_NOT_NULL(c);
                while (n < 3 && cases[i].want[n])
                        n++;
                if (fl_strv_length(c->etcd_servers) != n)
                        FAIL_AT("case %zu: %zu servers, want %zu", i, fl_strv_length(c->etcd_servers), n);
                for (size_t j = 0; j < n; j++)
                        ASSERT_STREQ(c->etcd_servers[j], cases[i].want[j]);
        }
}

TEST(metadata) {
        static const struct {
                const char *value;
                const char *want[9];
        } cases[] = {
                { "region=us-west,az=2", { "region", "us-west", "az", "2" } },
                { " region = us-west , az= 2 ", { "region", "us-west", "az", "2" } },
                { "a=1,b=2,a=3", { "a", "3", "b", "2" } },
                { "noequals,a=1", { "a", "1" } },
                { "a=b=c", { "a", "b=c" } },
                { "a=", { "a", "" } },
                { "=orphan,x=y", { "x", "y" } },
                { "", { NULL } },
                { ",,,", { NULL } },
                { "hostname=smoke1,role=web,disk=ssd,env=prod", { "hostname", "smoke1", "role", "web", "disk", "ssd", "env", "prod" } },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *text = NULL;
                size_t n = 0;
                ASSERT_TRUE(asprintf(&text, "metadata=%s\n", cases[i].value) > 0);
                _cleanup_(fl_config_freep) FleetConfig *c = load(text, NULL, NULL);
                ASSERT_NOT_NULL(c);
                while (n < 9 && cases[i].want[n])
                        n++;
                if (fl_strv_length(c->metadata) != n)
                        FAIL_AT("case %zu: %zu items, want %zu", i, fl_strv_length(c->metadata), n);
                for (size_t j = 0; j < n; j++)
                        ASSERT_STREQ(c->metadata[j], cases[i].want[j]);
        }
}

TEST(numbers_and_bools) {
        _cleanup_(fl_config_freep) FleetConfig *c =
                load("verbosity=0x2\nsystemd_user=T\ndisable_watches=1\nenable_grpc=True\n"
                     "etcd_request_timeout=2.5\nengine_reconcile_interval=10\ntoken_limit=50\n"
                     "api_listen=unix:/tmp/a.sock, tcp:127.0.0.1:49153\napi_allow_insecure_tcp=true\n",
                     NULL, NULL);
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(c->verbosity, 2);
        ASSERT_TRUE(c->systemd_user);
        ASSERT_TRUE(c->disable_watches);
        ASSERT_TRUE(c->enable_grpc);
        ASSERT_EQ(c->etcd_request_timeout_usec, 2500000);
        ASSERT_EQ(c->engine_reconcile_interval_usec, 10000000);
        ASSERT_EQ(c->token_limit, 50);
        ASSERT_EQ(fl_strv_length(c->api_listen), 2);
        ASSERT_STREQ(c->api_listen[0], "unix:/tmp/a.sock");
        ASSERT_STREQ(c->api_listen[1], "tcp:127.0.0.1:49153");
        ASSERT_TRUE(c->api_allow_insecure_tcp);

        /* Invalid numbers and booleans keep the defaults. */
        _cleanup_(fl_config_freep) FleetConfig *d =
                load("verbosity=lots\nsystemd_user=yes\ndisable_engine=TrUe\netcd_request_timeout=fast\n"
                     "engine_reconcile_interval=nan\ntoken_limit=12x\n", NULL, NULL);
        ASSERT_NOT_NULL(d);
        ASSERT_EQ(d->verbosity, 0);
        ASSERT_FALSE(d->systemd_user);
        ASSERT_FALSE(d->disable_engine);
        ASSERT_EQ(d->etcd_request_timeout_usec, 1000000);
        ASSERT_EQ(d->engine_reconcile_interval_usec, 2000000);
        ASSERT_EQ(d->token_limit, 100);
        ASSERT_EQ(fl_strv_length(d->warnings), 0);

        /* Out-of-range values are ignored with a warning. */
        _cleanup_(fl_config_freep) FleetConfig *e = load("token_limit=70000\netcd_request_timeout=-1\n", NULL, NULL);
        ASSERT_NOT_NULL(e);
        ASSERT_EQ(e->token_limit, 100);
        ASSERT_EQ(e->etcd_request_timeout_usec, 1000000);
        ASSERT_EQ(fl_strv_length(e->warnings), 2);
}

TEST(deprecated_keys) {
        char *env[] = { "FLEET_AUTHORIZED_KEYS_FILE=/x", NULL };
        _cleanup_(fl_config_freep) FleetConfig *c = load("verify_units=true\n", env, NULL);
        ASSERT_NOT_NULL(c);
        ASSERT_EQ(fl_strv_length(c->warnings), 2);
        ASSERT_STREQ(c->warnings[0], "Config option verify_units is no longer supported - ignoring");
        ASSERT_STREQ(c->warnings[1], "Config option authorized_keys_file is no longer supported - ignoring");
}

TEST(sample_file) {
        /* The shipped sample must parse and change nothing (everything commented out). */
        FleetConfig *c = NULL;
        _cleanup_free_ char *err = NULL, *rel = NULL, *dir = strdup(__FILE__);
        struct stat st;
        const char *path = NULL;

        /* meson compiles with a path relative to the build directory, where `meson test`
         * runs; test/run.sh runs from the source root. */
        ASSERT_NOT_NULL(dir);
        if (strrchr(dir, '/'))
                *strrchr(dir, '/') = 0;
        ASSERT_TRUE(asprintf(&rel, "%s/../../units/fleet.conf.sample", dir) > 0);
        if (stat(rel, &st) == 0)
                path = rel;
        else if (stat("units/fleet.conf.sample", &st) == 0)
                path = "units/fleet.conf.sample";
        else
                SKIP("units/fleet.conf.sample not found");
        if (fl_config_load(path, no_env, &c, &err) < 0)
                FAIL_AT("sample: %s", strempty(err));
        ASSERT_EQ(c->agent_ttl_usec, 30000000);
        ASSERT_EQ(fl_strv_length(c->warnings), 0);
        fl_config_free(c);
}

TEST_MAIN(T(defaults), T(goini_values), T(goini_syntax_errors), T(missing_and_directory), T(env_precedence),
          T(env_without_file), T(go_duration), T(agent_ttl_invalid), T(etcd_servers_forms), T(metadata),
          T(numbers_and_bools), T(deprecated_keys), T(sample_file))
