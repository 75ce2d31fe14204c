/* SPDX-License-Identifier: MIT */
/* test-unit-options.c: [X-Fleet] requirements, ValidateOptions messages, metadata matching and
 * the AbleToRun helpers (spec §7.4, §7.5, §5.4). */
#include <time.h>

#include "buf.h"
#include "strv.h"
#include "unit-options.h"
#include "tests.h"

static UnitFile *unit(const char *text) {
        UnitFile *u = NULL;

        if (fl_unit_file_parse(text, strlen(text), &u, NULL) < 0)
                return NULL;
        return u;
}

/* Parses text and reads its requirements for name. */
static int reqs(const char *text, const char *name, UnitRequirements *ret) {
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(text);

        if (!u)
                return -EINVAL;
        return fl_unit_requirements_parse(u, name, ret);
}

static bool strv_is(char *const *l, const char *const *want, size_t n) {
        if (fl_strv_length(l) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!streq(l[i], want[i]))
                        return false;
        return true;
}
#define STRV_IS(l, ...)                                                                  \
        strv_is(l, (const char *const[]) { __VA_ARGS__ },                                 \
                sizeof((const char *const[]) { __VA_ARGS__ }) / sizeof(const char *))

TEST(basic_requirements) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};

        ASSERT_OK(reqs("[Service]\nExecStart=/bin/true\nMachineID=ignored\n"
                       "[X-Fleet]\nMachineOf=db.service\nMachineOf=cache.service\n"
                       "MachineMetadata=region=us-east-1\nConflicts=web@*.service\n"
                       "Replaces=old.service\nGlobal=false\n",
                       "web@1.service", &r));
        ASSERT_NULL(r.machine_id); /* MachineID outside [X-Fleet] means nothing */
        ASSERT_TRUE(STRV_IS(r.machine_of, "db.service", "cache.service"));
        ASSERT_EQ(r.n_metadata, 1);
        ASSERT_STREQ(r.metadata[0].key, "region");
        ASSERT_EQ(r.metadata[0].op, META_EQ);
        ASSERT_STREQ(r.metadata[0].value, "us-east-1");
        ASSERT_TRUE(STRV_IS(r.conflicts, "web@*.service"));
        ASSERT_TRUE(STRV_IS(r.replaces, "old.service"));
        ASSERT_FALSE(r.global);
        ASSERT_NULL(r.unknown_keys);
}

TEST(empty_unit) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {}, r2 = {};

        ASSERT_OK(reqs("[Service]\nExecStart=/bin/true\n", "a.service", &r));
        ASSERT_NULL(r.machine_id);
        ASSERT_NULL(r.machine_of);
        ASSERT_EQ(r.n_metadata, 0);
        ASSERT_NULL(r.conflicts);
        ASSERT_NULL(r.replaces);
        ASSERT_FALSE(r.global);
        ASSERT_OK(fl_unit_requirements_parse(NULL, NULL, &r2));
        ASSERT_NULL(r2.machine_id);
}

TEST(machine_id_precedence) {
        static const struct {
                const char *text, *want;
        } cases[] = {
                { "[X-Fleet]\nX-ConditionMachineBootID=c\nX-ConditionMachineID=b\nMachineID=a\n",
                  "a" },
                { "[X-Fleet]\nX-ConditionMachineBootID=c\nX-ConditionMachineID=b\n", "b" },
                { "[X-Fleet]\nX-ConditionMachineBootID=c\n", "c" },
                { "[X-Fleet]\nMachineID=a\nMachineID=z\n", "a" },          /* first value wins */
                { "[X-Fleet]\nMachineID=\"a\" \"z\"\n", "a" },
                { "[X-Fleet]\nMachineID=\n", "" },                          /* present, empty */
                { "[X-Fleet]\nMachineID=%i\n", "0123456789abcdef" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};

                ASSERT_OK(reqs(cases[i].text, "pin@0123456789abcdef.service", &r));
                if (!streq_ptr(r.machine_id, cases[i].want))
                        FAIL_AT("case %zu: \"%s\"", i, strempty(r.machine_id));
        }
}

TEST(specifiers) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {}, r2 = {}, r3 = {}, r4 = {};

        /* functional test TestTemplatesWithSpecifiersInMetadata */
        ASSERT_OK(reqs("[X-Fleet]\nMachineMetadata=hostname=%i\n", "metadata@smoke1.service", &r));
        ASSERT_EQ(r.n_metadata, 1);
        ASSERT_STREQ(r.metadata[0].key, "hostname");
        ASSERT_STREQ(r.metadata[0].value, "smoke1");

        ASSERT_OK(reqs("[X-Fleet]\nMachineOf=%n|%N|%p|%i|%m|%H|%%i|100%\n", "foo@bar.service",
                       &r2));
        ASSERT_TRUE(STRV_IS(r2.machine_of, "foo@bar.service|foo@bar|foo|bar|%m|%H|%bar|100%"));

        /* Not an instance: %p is the whole name, %i is empty. */
        ASSERT_OK(reqs("[X-Fleet]\nMachineOf=%p-db.service\nConflicts=%i\nReplaces=%N.old\n",
                       "web.service", &r3));
        ASSERT_TRUE(STRV_IS(r3.machine_of, "web-db.service"));
        ASSERT_NULL(r3.conflicts);
        ASSERT_TRUE(STRV_IS(r3.replaces, "web.old"));

        /* No name (or one without a '.'): nothing expanded. */
        ASSERT_OK(reqs("[X-Fleet]\nMachineOf=%p-db.service\n", NULL, &r4));
        ASSERT_TRUE(STRV_IS(r4.machine_of, "%p-db.service"));
        fl_unit_requirements_done(&r4);
        ASSERT_OK(reqs("[X-Fleet]\nMachineOf=%p-db.service\n", "nodot", &r4));
        ASSERT_TRUE(STRV_IS(r4.machine_of, "%p-db.service"));
}

TEST(quoted_values) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {}, r2 = {}, r3 = {};

        ASSERT_OK(reqs("[X-Fleet]\nMachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\n",
                       "a.service", &r));
        ASSERT_EQ(r.n_metadata, 2);
        ASSERT_STREQ(r.metadata[0].key, "region");
        ASSERT_STREQ(r.metadata[0].value, "us-east-1");
        ASSERT_STREQ(r.metadata[1].key, "diskType");
        ASSERT_STREQ(r.metadata[1].value, "SSD");

        /* Spaces inside quotes stay; quotes anywhere are dropped; empty pieces kept. */
        ASSERT_OK(reqs("[X-Fleet]\nMachineOf=\"a b.service\" c\"d\".service  \"e\"\n"
                       "Replaces=x \"y\"\nReplaces=\"\"\n",
                       "a.service", &r2));
        ASSERT_TRUE(STRV_IS(r2.machine_of, "a b.service", "cd.service", "", "e"));
        /* does not start with a quote: one value, quotes kept */
        ASSERT_TRUE(STRV_IS(r2.replaces, "x \"y\"", ""));

        /* Quoted Conflicts: each piece is split on white space again. */
        ASSERT_OK(reqs("[X-Fleet]\nConflicts=\"a.service b.service\" \"c.service\"\n",
                       "a.service", &r3));
        ASSERT_TRUE(STRV_IS(r3.conflicts, "a.service", "b.service", "c.service"));
}

TEST(global_truthiness) {
        static const struct {
                const char *text;
                bool want;
        } cases[] = {
                { "Global=true", true },   { "Global=TRUE", true },  { "Global=Yes", true },
                { "Global=1", true },      { "Global=on", true },    { "Global=t", true },
                { "Global=T", true },      { "Global=false", false }, { "Global=0", false },
                { "Global=no", false },    { "Global=", false },     { "Global=tru", false },
                { "Global=y", false },     { "Global=true1", false }, { "Global=enabled", false },
                { "Global=true\nGlobal=false", false },  /* last value decides */
                { "Global=false\nGlobal=yes", true },
                { "Global=\"false\" \"true\"", true },
                { "Global=\"true\" \"off\"", false },
                { "global=true", false },                /* keys are case-sensitive */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};
                _cleanup_free_ char *text = NULL;

                ASSERT_TRUE(asprintf(&text, "[X-Fleet]\n%s\n", cases[i].text) > 0);
                ASSERT_OK(reqs(text, "g.service", &r));
                if (r.global != cases[i].want)
                        FAIL_AT("\"%s\"", cases[i].text);
        }
        ASSERT_FALSE(fl_fleet_truthy(NULL));
}

TEST(conflicts_multi) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};

        /* functional TestScheduleMultipleConflicts: one line, or repeated lines */
        ASSERT_OK(reqs("[X-Fleet]\nConflicts=a.service b.service\nConflicts=c.service\n"
                       "X-Conflicts=d*.service\t e.service\nConflicts=   \n",
                       "a.service", &r));
        ASSERT_TRUE(STRV_IS(r.conflicts, "a.service", "b.service", "c.service", "d*.service",
                            "e.service"));
}

TEST(deprecated_aliases) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};

        ASSERT_OK(reqs("[X-Fleet]\nX-ConditionMachineOf=a.service\nMachineOf=b.service\n"
                       "X-ConditionMachineMetadata=disk=ssd\nX-Conflicts=c.service\n"
                       "X-ConditionMachineBootID=boot\n",
                       "x.service", &r));
        ASSERT_TRUE(STRV_IS(r.machine_of, "a.service", "b.service"));
        ASSERT_EQ(r.n_metadata, 1);
        ASSERT_STREQ(r.metadata[0].key, "disk");
        ASSERT_TRUE(STRV_IS(r.conflicts, "c.service"));
        ASSERT_STREQ(r.machine_id, "boot");
        ASSERT_NULL(r.unknown_keys);
}

TEST(unknown_keys) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};

        ASSERT_OK(reqs("[X-Fleet]\nFoo=1\nBar=2\nFoo=3\nmachineid=x\nX-ConditionConflicts=y\n"
                       "[Service]\nBaz=1\n[X-Other]\nQux=1\n",
                       "x.service", &r));
        ASSERT_TRUE(STRV_IS(r.unknown_keys, "Foo", "Bar", "machineid", "X-ConditionConflicts"));
        ASSERT_NULL(r.machine_id);
        ASSERT_TRUE(fl_unit_option_known("X-ConditionMachineBootID"));
        ASSERT_FALSE(fl_unit_option_known("X-ConditionMachineBootId"));
}

TEST(metadata_items) {
        static const struct {
                const char *item;
                const char *key; /* NULL: ignored */
                MetaOp op;
                const char *value;
        } cases[] = {
                { "region=eu", "region", META_EQ, "eu" },
                { "a=b=c", NULL, 0, NULL },       /* fleet: not exactly two parts */
                { "=b", NULL, 0, NULL },
                { "a=", NULL, 0, NULL },
                { "noeq", NULL, 0, NULL },
                { "", NULL, 0, NULL },
                { "a==b", NULL, 0, NULL },
                { "a b=c d", "a b", META_EQ, "c d" }, /* no trimming, like fleet */
                { "a=>b", "a", META_EQ, ">b" },
                { "disk!=hdd", "disk", META_NE, "hdd" },
                { "cores<5", "cores", META_LT, "5" },
                { "cores<=5", "cores", META_LE, "5" },
                { "cores>5", "cores", META_GT, "5" },
                { "cores>=5", "cores", META_GE, "5" },
                { "a!b", NULL, 0, NULL },
                { "a!=", NULL, 0, NULL },
                { "a<", NULL, 0, NULL },
                { "a<==5", NULL, 0, NULL },
                { "!=x", NULL, 0, NULL },
                { ">=x", NULL, 0, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};
                _cleanup_free_ char *text = NULL;

                ASSERT_TRUE(asprintf(&text, "[X-Fleet]\nMachineMetadata=%s\n", cases[i].item) > 0);
                ASSERT_OK(reqs(text, "m.service", &r));
                if (!cases[i].key) {
                        if (r.n_metadata != 0)
                                FAIL_AT("\"%s\" not ignored", cases[i].item);
                        continue;
                }
                if (r.n_metadata != 1 || !streq(r.metadata[0].key, cases[i].key) ||
                    r.metadata[0].op != cases[i].op || !streq(r.metadata[0].value, cases[i].value))
                        FAIL_AT("\"%s\" misparsed", cases[i].item);
        }
}

TEST(metadata_grouping_and_explain) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {}, none = {};
        _cleanup_free_ char *e = NULL, *e2 = NULL;

        ASSERT_OK(reqs("[X-Fleet]\nMachineMetadata=region=eu\nMachineMetadata=disk!=hdd\n"
                       "MachineMetadata=region=us\nMachineMetadata=region=eu\n"
                       "X-ConditionMachineMetadata=cores>=4\nMachineMetadata=disk!=hdd\n",
                       "m.service", &r));
        ASSERT_EQ(r.n_metadata, 4);
        e = fl_metadata_explain(&r);
        ASSERT_STREQ(e, "region=eu, region=us, disk!=hdd, cores>=4");
        e2 = fl_metadata_explain(&none);
        ASSERT_STREQ(e2, "");
}

static bool match(const char *text, const char *const *kv) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};
        char *keys[16], *values[16];
        size_t n = 0;

        if (reqs(text, "m.service", &r) < 0)
                return false;
        for (; kv && kv[2 * n]; n++) {
                keys[n] = (char *) kv[2 * n];
                values[n] = (char *) kv[2 * n + 1];
        }
        return fl_metadata_match(&r, keys, values, n);
}
#define KV(...) ((const char *const[]) { __VA_ARGS__, NULL })

TEST(metadata_match) {
        const char *both = "[X-Fleet]\nMachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\n";
        const char *either = "[X-Fleet]\nMachineMetadata=region=eu\nMachineMetadata=region=us\n";

        /* fleet: AND across keys */
        ASSERT_TRUE(match(both, KV("region", "us-east-1", "diskType", "SSD", "x", "y")));
        ASSERT_FALSE(match(both, KV("region", "us-east-1")));
        ASSERT_FALSE(match(both, KV("region", "us-east-1", "diskType", "ssd")));
        ASSERT_FALSE(match(both, NULL));
        /* fleet: OR within a key */
        ASSERT_TRUE(match(either, KV("region", "us")));
        ASSERT_TRUE(match(either, KV("region", "eu")));
        ASSERT_FALSE(match(either, KV("region", "ap")));
        /* no requirements */
        ASSERT_TRUE(match("[Service]\nA=1\n", NULL));
        ASSERT_TRUE(fl_metadata_match(NULL, NULL, NULL, 0));
        /* exact strings for =, as in fleet */
        ASSERT_FALSE(match("[X-Fleet]\nMachineMetadata=v=1\n", KV("v", "1.0")));
        /* != holds on its own and when the key is missing */
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=disk!=hdd\n", KV("disk", "ssd")));
        ASSERT_FALSE(match("[X-Fleet]\nMachineMetadata=disk!=hdd\n", KV("disk", "hdd")));
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=disk!=hdd\n", NULL));
        ASSERT_FALSE(match("[X-Fleet]\nMachineMetadata=region=eu\nMachineMetadata=region=us\n"
                           "MachineMetadata=region!=us\n",
                           KV("region", "us")));
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=region=eu\nMachineMetadata=region=us\n"
                          "MachineMetadata=region!=us\n",
                          KV("region", "eu")));
        /* numeric when both sides are numbers */
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=cores>=4\n", KV("cores", "16")));
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=cores>=4\n", KV("cores", "4")));
        ASSERT_FALSE(match("[X-Fleet]\nMachineMetadata=cores>=4\n", KV("cores", "2")));
        ASSERT_FALSE(match("[X-Fleet]\nMachineMetadata=cores>=4\n", NULL));
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=cores>4\n", KV("cores", "4.5")));
        ASSERT_FALSE(match("[X-Fleet]\nMachineMetadata=cores>4\n", KV("cores", "4")));
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=mem<1.5e3\n", KV("mem", "1000")));
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=mem<=-1\n", KV("mem", "-1")));
        ASSERT_FALSE(match("[X-Fleet]\nMachineMetadata=mem<2\n", KV("mem", "nan")));
        /* otherwise strings */
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=zone>b\n", KV("zone", "c")));
        ASSERT_FALSE(match("[X-Fleet]\nMachineMetadata=ver>=v2\n", KV("ver", "v10")));
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=cores>=4\n", KV("cores", "3x")) == false);
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=cores<4\n", KV("cores", " 3")));
        /* combined range */
        ASSERT_TRUE(match("[X-Fleet]\nMachineMetadata=\"cores>=4\" \"cores<=8\"\n",
                          KV("cores", "8")));
        ASSERT_FALSE(match("[X-Fleet]\nMachineMetadata=\"cores>=4\" \"cores<=8\"\n",
                           KV("cores", "9")));
        /* specifier-driven metadata: metadata@smoke1 only on hostname=smoke1 */
        {
                _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};
                char *k[] = { "hostname" }, *v1[] = { "smoke1" }, *v2[] = { "smoke2" };

                ASSERT_OK(reqs("[X-Fleet]\nMachineMetadata=hostname=%i\n",
                               "metadata@smoke1.service", &r));
                ASSERT_TRUE(fl_metadata_match(&r, k, v1, 1));
                ASSERT_FALSE(fl_metadata_match(&r, k, v2, 1));
        }
}

static int validate(const char *text, const char *name, char **ret_msg) {
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(text);

        if (!u)
                return -EBADMSG;
        return fl_unit_options_validate(u, name, ret_msg);
}

TEST(validate_messages) {
        static const struct {
                const char *fleet; /* [X-Fleet] body */
                const char *msg;   /* NULL: valid */
        } cases[] = {
                { "", NULL },
                { "MachineID=abc\n", NULL },
                { "MachineOf=a.service\nConflicts=b*.service\n", NULL },
                { "Global=true\nConflicts=x*.service\nMachineMetadata=a=b\n", NULL },
                { "MachineID=abc\nGlobal=false\n", NULL },
                { "Replaces=a.service\nMachineOf=b.service\n", NULL },
                { "MachineOf=foo.service\nConflicts=foo*\n",
                  "unresolvable requirements: peer \"foo.service\" matches conflict \"foo*\"" },
                { "MachineOf=a.service\nMachineOf=foo.service\nConflicts=x.service *.service\n",
                  "unresolvable requirements: peer \"a.service\" matches conflict \"*.service\"" },
                { "MachineOf=foo.service\nReplaces=f?o.service\n",
                  "unresolvable requirements: peer \"foo.service\" matches replace \"f?o.service\"" },
                { "MachineOf=a.service\nMachineID=abc\n", "MachineID cannot be used with Peers" },
                { "Conflicts=a.service\nMachineID=abc\n", "MachineID cannot be used with Conflicts" },
                { "Global=true\nMachineID=abc\n", "MachineID cannot be used with Global" },
                { "Replaces=a.service\nMachineID=abc\n", "MachineID cannot be used with Replaces" },
                { "Global=yes\nMachineOf=a.service\n", "Global cannot be used with Peers" },
                { "Global=1\nReplaces=a.service\n", "Global cannot be used with Replaces" },
                { "Conflicts=a.service\nReplaces=b.service\n",
                  "Conflicts cannot be used with Replaces" },
                /* first hit wins: the peer check runs before the combinations */
                { "MachineID=abc\nMachineOf=a.service\nConflicts=a.service\n",
                  "unresolvable requirements: peer \"a.service\" matches conflict \"a.service\"" },
                { "MachineID=abc\nMachineOf=a.service\nConflicts=b.service\nGlobal=true\n",
                  "MachineID cannot be used with Peers" },
                { "Global=true\nMachineOf=a.service\nReplaces=b.service\nConflicts=c.service\n",
                  "Global cannot be used with Peers" },
                /* deprecated aliases count the same */
                { "X-ConditionMachineID=abc\nX-ConditionMachineOf=a.service\n",
                  "MachineID cannot be used with Peers" },
                { "X-ConditionMachineBootID=abc\nX-Conflicts=a.service\n",
                  "MachineID cannot be used with Conflicts" },
                { "MachineID=\nGlobal=on\n", "MachineID cannot be used with Global" },
                /* fleet validates without a name: %i stays "%i", a non-empty conflict */
                { "MachineID=abc\nConflicts=%i\n", "MachineID cannot be used with Conflicts" },
                { "MachineOf=%p.service\nConflicts=%p.service\n",
                  "unresolvable requirements: peer \"%p.service\" matches conflict \"%p.service\"" },
                /* unknown keys are not an error */
                { "Foo=bar\n", NULL },
                /* quoting of odd peers */
                { "MachineOf=\"a\\\"b\"\nConflicts=*\n",
                  "unresolvable requirements: peer \"a\\\\b\" matches conflict \"*\"" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *text = NULL, *msg = NULL;
                int r;

                ASSERT_TRUE(asprintf(&text, "[Service]\nExecStart=/bin/true\n[X-Fleet]\n%s",
                                     cases[i].fleet) > 0);
                r = validate(text, NULL, &msg);
                if (!cases[i].msg) {
                        if (r < 0)
                                FAIL_AT("case %zu rejected: %s", i, strempty(msg));
                        continue;
                }
                if (r != -EINVAL || !streq_ptr(msg, cases[i].msg))
                        FAIL_AT("case %zu: r=%d \"%s\", want \"%s\"", i, r, strempty(msg),
                                cases[i].msg);
        }
}

TEST(validate_with_name_expands) {
        _cleanup_free_ char *msg = NULL;

        /* With a name, %i on a non-instance is empty: no conflict left, so valid. */
        ASSERT_OK(validate("[X-Fleet]\nMachineID=abc\nConflicts=%i\n", "a.service", &msg));
        ASSERT_ERR(validate("[X-Fleet]\nMachineOf=db-%i.service\nConflicts=db-1.service\n",
                            "web@1.service", &msg),
                   -EINVAL);
        ASSERT_STREQ(msg, "unresolvable requirements: peer \"db-1.service\" matches conflict "
                          "\"db-1.service\"");
}

TEST(validate_round_trip_errors) {
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;
        _cleanup_free_ char *msg = NULL, *msg2 = NULL, *msg3 = NULL, *big = NULL;

        /* Options that came in as JSON, not text: the round trip catches them. */
        ASSERT_OK(fl_unit_file_new(&u));
        big = malloc(3001);
        ASSERT_NOT_NULL(big);
        memset(big, 'x', 3000);
        big[3000] = 0;
        ASSERT_OK(fl_unit_file_add(u, "Service", "ExecStart", big));
        ASSERT_ERR(fl_unit_options_validate(u, NULL, &msg), -EINVAL);
        ASSERT_STREQ(msg, "line too long (max 2048 bytes)");
        fl_unit_file_free(u);

        ASSERT_OK(fl_unit_file_new(&u));
        ASSERT_OK(fl_unit_file_add(u, "Service", "Exec\nStart", "x"));
        ASSERT_ERR(fl_unit_options_validate(u, NULL, &msg2), -EINVAL);
        ASSERT_STREQ(msg2, "unexpected newline encountered while parsing option name");
        fl_unit_file_free(u);

        ASSERT_OK(fl_unit_file_new(&u));
        ASSERT_OK(fl_unit_file_add(u, "Service", "A", "\xff"));
        ASSERT_ERR(fl_unit_options_validate(u, NULL, &msg3), -EINVAL);
        ASSERT_STREQ(msg3, "invalid UTF-8");
        /* No message wanted */
        ASSERT_ERR(fl_unit_options_validate(u, NULL, NULL), -EINVAL);
        fl_unit_file_free(TAKE_PTR(u));

        /* Empty unit: valid */
        ASSERT_OK(fl_unit_file_new(&u));
        ASSERT_OK(fl_unit_options_validate(u, NULL, NULL));
}

TEST(conflicts_and_replaces) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements a = {}, b = {}, none = {};

        ASSERT_OK(reqs("[X-Fleet]\nConflicts=conflict.*.service\nReplaces=old@*.service\n",
                       "conflict.0.service", &a));
        ASSERT_OK(reqs("[X-Fleet]\nConflicts=hello.service\n", "conflicts-with-hello.service", &b));

        /* either direction */
        ASSERT_TRUE(fl_unit_conflicts_with("conflict.0.service", &a, "conflict.1.service", &none));
        ASSERT_TRUE(fl_unit_conflicts_with("conflict.1.service", &none, "conflict.0.service", &a));
        ASSERT_TRUE(fl_unit_conflicts_with("hello.service", &none, "conflicts-with-hello.service",
                                           &b));
        ASSERT_TRUE(fl_unit_conflicts_with("conflicts-with-hello.service", &b, "hello.service",
                                           &none));
        ASSERT_FALSE(fl_unit_conflicts_with("x.service", &none, "y.service", &none));
        ASSERT_FALSE(fl_unit_conflicts_with("x.service", NULL, "y.service", NULL));
        ASSERT_FALSE(fl_unit_conflicts_with("conflict.0.service", &a, "other.service", &b));

        /* one direction only */
        ASSERT_TRUE(fl_unit_replaces(&a, "old@1.service"));
        ASSERT_FALSE(fl_unit_replaces(&b, "conflict.0.service"));
        ASSERT_FALSE(fl_unit_replaces(&a, "new@1.service"));
        ASSERT_FALSE(fl_unit_replaces(NULL, "old@1.service"));
}

TEST(machine_id_match) {
        const char *id = "0123456789abcdef0123456789abcdef";

        ASSERT_TRUE(fl_machine_id_match(id, id));
        ASSERT_TRUE(fl_machine_id_match("01234567", id));
        ASSERT_FALSE(fl_machine_id_match("0123456", id));
        ASSERT_FALSE(fl_machine_id_match("012345678", id));
        ASSERT_FALSE(fl_machine_id_match("", id));
        ASSERT_FALSE(fl_machine_id_match("ffffffff", id));
        ASSERT_TRUE(fl_machine_id_match("short", "short"));
        ASSERT_FALSE(fl_machine_id_match(NULL, id));
}

TEST(hostile_sizes) {
        /* ~50k distinct metadata items and conflicts from one big unit stay fast. */
        Buf b = BUF_INIT;
        _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};
        char *keys[] = { "k7" }, *values[] = { "v7" };
        _cleanup_free_ char *e = NULL;

        ASSERT_OK(fl_buf_puts(&b, "[X-Fleet]\n"));
        for (int i = 0; i < 25000; i++)
                ASSERT_OK(fl_buf_printf(&b, "MachineMetadata=k%d=v%d\nU%d=1\n", i % 1000, i, i));
        ASSERT_OK(reqs(fl_buf_str(&b), "x.service", &r));
        ASSERT_EQ(r.n_metadata, 25000);
        ASSERT_EQ(fl_strv_length(r.unknown_keys), 25000);
        ASSERT_STREQ(r.metadata[0].key, "k0");
        ASSERT_STREQ(r.metadata[1].value, "v1000"); /* grouped by key */
        ASSERT_FALSE(fl_metadata_match(&r, keys, values, 1));
        e = fl_metadata_explain(&r);
        ASSERT_TRUE(startswith(e, "k0=v0, k0=v1000, "));
        fl_buf_done(&b);
}

TEST(validate_work_is_bounded) {
        Buf b = BUF_INIT;
        _cleanup_free_ char *msg = NULL;
        clock_t t0 = clock();

        ASSERT_OK(fl_buf_puts(&b, "[X-Fleet]\n"));
        for (int i = 0; i < 1001; i++)
                ASSERT_OK(fl_buf_printf(&b, "MachineOf=p%d.service\nConflicts=c%d.service\n", i, i));
        ASSERT_ERR(validate(fl_buf_str(&b), NULL, &msg), -EINVAL);
        ASSERT_STREQ(msg, "too many MachineOf, Conflicts and Replaces values");
        ASSERT_TRUE(clock() - t0 < CLOCKS_PER_SEC / 2);
        fl_buf_done(&b);

        /* 1000 x 1000 is still checked (and fine). */
        ASSERT_OK(fl_buf_puts(&b, "[X-Fleet]\n"));
        for (int i = 0; i < 1000; i++)
                ASSERT_OK(fl_buf_printf(&b, "MachineOf=p%d.service\nConflicts=c%d.service\n", i, i));
        ASSERT_OK(validate(fl_buf_str(&b), NULL, NULL));
        fl_buf_done(&b);
}

TEST_MAIN(T(basic_requirements), T(empty_unit), T(machine_id_precedence), T(specifiers),
          T(quoted_values), T(global_truthiness), T(conflicts_multi), T(deprecated_aliases),
          T(unknown_keys), T(metadata_items), T(metadata_grouping_and_explain),
          T(metadata_match), T(validate_messages), T(validate_with_name_expands),
          T(validate_round_trip_errors), T(conflicts_and_replaces), T(machine_id_match),
          T(hostile_sizes), T(validate_work_is_bounded))
