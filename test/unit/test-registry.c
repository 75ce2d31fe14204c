/* SPDX-License-Identifier: MIT */
/* test-registry.c: the registry against a real etcd ($FLEET_TEST_ETCD, from test/run.sh):
 * writes land on exactly the keys and bytes of spec §4.1 (read back raw with curl), loads
 * decode them, the mirror follows changes made by another client (TTL expiry and recovery from
 * a cleared event index included), unreferenced unit files are collected only when safe. */
#include <cJSON.h>
#include <stdio.h>
#include <time.h>

#include "registry-internal.h"
#include "strv.h"
#include "tests.h"

static char endpoint[256];
static char prefix[128];

static bool setup(void) {
        const char *e = getenv("FLEET_TEST_ETCD");
        if (isempty(e))
                return false;
        if (!endpoint[0]) {
                size_t l = strcspn(e, ",");
                snprintf(endpoint, sizeof(endpoint), "%.*s", (int) l, e);
        }
        /* A fresh prefix per test: runs and cases never see each other's keys. */
        static unsigned n;
        snprintf(prefix, sizeof(prefix), "/fleet-test-registry-%d-%ld-%u/", (int) getpid(), (long) time(NULL), n++);
        return true;
}

#define SETUP()                                                       \
        do {                                                          \
                if (!setup())                                         \
                        SKIP("FLEET_TEST_ETCD not set (no etcd)");    \
        } while (0)

static Registry *reg_new(sd_event *e) {
        char *eps[] = { endpoint, NULL };
        RegistryConfig cfg = {
                .endpoints = eps,
                .prefix = prefix,
                .request_timeout_usec = 5 * 1000 * 1000,
        };
        Registry *r = NULL;
        if (fl_registry_new(&cfg, e, &r) < 0)
                return NULL;
        return r;
}

/* GET of a raw key (relative to the prefix) with curl: its JSON node, or NULL if missing. */
static cJSON *raw_node(const char *rel) {
        _cleanup_free_ char *cmd = NULL;
        Buf b = BUF_INIT;
        char buf[4096];
        size_t n;
        FILE *f;
        cJSON *root, *node;

        if (asprintf(&cmd, "curl -s '%s/v2/keys%s%s?quorum=true'", endpoint, prefix, rel) < 0)
                return NULL;
        f = popen(cmd, "r");
        if (!f)
                return NULL;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
                fl_buf_append(&b, buf, n);
        pclose(f);
        root = cJSON_Parse(fl_buf_str(&b));
        fl_buf_done(&b);
        if (!root)
                return NULL;
        node = cJSON_DetachItemFromObject(root, "node");
        cJSON_Delete(root);
        return node;
}

static bool raw_exists(const char *rel) {
        cJSON *n = raw_node(rel);
        cJSON_Delete(n);
        return n != NULL;
}

static char *raw_get(const char *rel) {
        cJSON *n = raw_node(rel), *v;
        char *s = NULL;
        if (!n)
                return NULL;
        v = cJSON_GetObjectItem(n, "value");
        if (cJSON_IsString(v))
                s = strdup(v->valuestring);
        cJSON_Delete(n);
        return s;
}

static long long raw_num(const char *rel, const char *field) {
        cJSON *n = raw_node(rel), *v;
        long long x = -1;
        if (!n)
                return -1;
        v = cJSON_GetObjectItem(n, field);
        if (cJSON_IsNumber(v))
                x = (long long) v->valuedouble;
        cJSON_Delete(n);
        return x;
}

static int raw_put(const char *rel, const char *value) {
        _cleanup_free_ char *cmd = NULL;
        FILE *f;
        /* Values here never contain a single quote. */
        if (asprintf(&cmd, "curl -fs -o /dev/null -XPUT '%s/v2/keys%s%s' --data-urlencode 'value=%s'", endpoint,
                     prefix, rel, value) < 0)
                return -ENOMEM;
        f = popen(cmd, "r");
        if (!f)
                return -errno;
        return pclose(f) == 0 ? 0 : -EIO;
}

static UnitFile *unit(const char *text) {
        UnitFile *u = NULL;
        if (fl_unit_file_parse(text, strlen(text), &u, NULL) < 0)
                return NULL;
        return u;
}

static const char hello_text[] = "[Unit]\nDescription=Hello <world> & co\n\n[Service]\nExecStart=/bin/sh -c \"sleep 1000\"\n";

/* ---- Async helpers ---- */

typedef struct Done {
        int n;
        int error;
} Done;

static void done_cb(Registry *r, int error, void *userdata) {
        Done *d = userdata;
        d->n++;
        d->error = error;
}

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* Runs e until cond(userdata) or timeout; returns whether cond held. */
static bool run_until(sd_event *e, bool (*cond)(void *), void *userdata, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;
        while (!cond(userdata)) {
                if (now_usec() >= end)
                        return false;
                if (sd_event_run(e, 50 * 1000) < 0)
                        return false;
        }
        return true;
}

static bool done_cond(void *p) {
        return ((Done *) p)->n > 0;
}

/* Waits for the async op behind d; returns its error (or -ETIME). */
static int wait_done(sd_event *e, Done *d) {
        if (!run_until(e, done_cond, d, 10 * 1000 * 1000))
                return -ETIME;
        return d->error;
}

#define ASYNC(e, call_expr)                                           \
        ({                                                            \
                Done _d = {};                                         \
                int _k = (call_expr);                                 \
                if (_k >= 0) {                                        \
                        _k = wait_done(e, &_d);                       \
                        if (_d.n > 1)                                 \
                                _k = -EDOM;                           \
                }                                                     \
                _k;                                                   \
        })
#define DONE (&_d)

/* What an agent reports for a running unit (strings borrowed). */
static RegUnitState running_state(const char *name, const char *machine_id) {
        RegUnitState st = {
                .name = (char *) name,
                .machine_id = (char *) machine_id,
                .load_state = (char *) "loaded",
                .active_state = (char *) "active",
                .sub_state = (char *) "running",
        };

        fl_hash_to_hex((const uint8_t *) "01234567890123456789", st.hash);
        return st;
}

/* ---- Tests ---- */

TEST(create_unit_raw_keys) {
        SETUP();
        _cleanup_(fl_registry_freep) Registry *r = reg_new(NULL);
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(hello_text);
        ASSERT_NOT_NULL(r);
        ASSERT_NOT_NULL(u);

        ASSERT_OK(fl_registry_create_unit(r, "hello.service", u, JOB_STATE_LAUNCHED));
        ASSERT_TRUE(fl_registry_write_index(r) > 0);

        uint8_t h[20];
        char hex[41], key[64];
        ASSERT_OK(fl_unit_file_hash(u, h));
        fl_hash_to_hex(h, hex);
        snprintf(key, sizeof(key), "unit/%s", hex);
        _cleanup_free_ char *raw_unit = raw_get(key), *canon = fl_unit_file_serialize(u);
        _cleanup_free_ char *want_unit = fl_reg_encode_unit_contents(canon);
        ASSERT_STREQ(raw_unit, want_unit);
        /* Go's encoder: HTML characters escaped, newlines as \n. */
        ASSERT_TRUE(strstr(raw_unit, "Hello \\u003cworld\\u003e \\u0026 co\\n") != NULL);

        _cleanup_free_ char *obj = raw_get("job/hello.service/object");
        Buf want = BUF_INIT;
        fl_buf_puts(&want, "{\"Name\":\"hello.service\",\"UnitHash\":[");
        for (int i = 0; i < 20; i++)
                fl_buf_printf(&want, i ? ",%u" : "%u", h[i]);
        fl_buf_puts(&want, "]}");
        ASSERT_STREQ(obj, fl_buf_str(&want));
        fl_buf_done(&want);

        _cleanup_free_ char *ts = raw_get("job/hello.service/target-state");
        ASSERT_STREQ(ts, "launched");
        /* No TTL on any of them. */
        ASSERT_EQ(raw_num("job/hello.service/object", "ttl"), -1);

        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s = NULL;
        ASSERT_OK(fl_registry_load(r, &s));
        ASSERT_EQ(s->n_units, 1);
        const RegUnit *x = fl_reg_snapshot_find_unit(s, "hello.service");
        ASSERT_NOT_NULL(x);
        ASSERT_STREQ(x->hash, hex);
        ASSERT_NOT_NULL(x->file);
        ASSERT_TRUE(fl_unit_file_equal(x->file, u));
        ASSERT_EQ(x->target_state, JOB_STATE_LAUNCHED);
        ASSERT_EQ(x->current_state, JOB_STATE_INACTIVE);
        ASSERT_NULL(x->target);
        ASSERT_FALSE(x->global);
        ASSERT_FALSE(s->shared_files);
        ASSERT_TRUE(s->index >= fl_registry_write_index(r));
}

TEST(empty_registry) {
        SETUP();
        _cleanup_(fl_registry_freep) Registry *r = reg_new(NULL);
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s = NULL;
        ASSERT_OK(fl_registry_load(r, &s));
        ASSERT_EQ(s->n_units + s->n_states + s->n_machines, 0);
        ASSERT_NULL(s->lease.machine_id);
        ASSERT_EQ(s->engine_version, 0);
        ASSERT_TRUE(s->index > 0);
}

TEST(target_state_and_destroy) {
        SETUP();
        _cleanup_(fl_registry_freep) Registry *r = reg_new(NULL);
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(hello_text);
        uint64_t n0, n1;

        /* An inactive create is exactly three writes (no read-back: see create_inactive_step). */
        fl_registry_stats(r, &n0, NULL, NULL);
        ASSERT_OK(fl_registry_create_unit(r, "a.service", u, JOB_STATE_INACTIVE));
        fl_registry_stats(r, &n1, NULL, NULL);
        ASSERT_EQ(n1 - n0, 3);
        _cleanup_free_ char *ts0 = raw_get("job/a.service/target-state");
        ASSERT_STREQ(ts0, "inactive");
        ASSERT_TRUE(raw_exists("job/a.service/object"));
        ASSERT_OK(fl_registry_set_target_state(r, "a.service", JOB_STATE_LOADED));
        _cleanup_free_ char *ts = raw_get("job/a.service/target-state");
        ASSERT_STREQ(ts, "loaded");
        ASSERT_ERR(fl_registry_set_target_state(r, "nope.service", JOB_STATE_LOADED), -ENOENT);
        ASSERT_FALSE(raw_exists("job/nope.service"));
        ASSERT_ERR(fl_registry_set_target_state(r, "a.service", _JOB_STATE_INVALID), -EINVAL);

        ASSERT_OK(fl_registry_destroy_unit(r, "a.service"));
        ASSERT_FALSE(raw_exists("job/a.service"));
        ASSERT_ERR(fl_registry_destroy_unit(r, "a.service"), -ENOENT);
        /* fleet never deletes unit files on destroy (the GC does, later). */
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s = NULL;
        ASSERT_OK(fl_registry_load(r, &s));
        ASSERT_EQ(s->n_units, 0);
}

TEST(schedule_and_states) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        _cleanup_(fl_registry_freep) Registry *r = reg_new(e);
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(hello_text);
        const char *m1 = "c31e44e1f7f642bea3b54b7f6d0be1c5", *m2 = "0123456789abcdef0123456789abcdef";

        ASSERT_OK(fl_registry_create_unit(r, "web.service", u, JOB_STATE_LAUNCHED));
        ASSERT_OK(ASYNC(e, fl_registry_schedule_async(r, "web.service", m1, done_cb, DONE)));
        _cleanup_free_ char *t = raw_get("job/web.service/target");
        ASSERT_STREQ(t, m1);
        ASSERT_ERR(ASYNC(e, fl_registry_schedule_async(r, "web.service", m2, done_cb, DONE)), -EEXIST);
        ASSERT_ERR(ASYNC(e, fl_registry_unschedule_async(r, "web.service", m2, done_cb, DONE)), -ESTALE);
        ASSERT_OK(ASYNC(e, fl_registry_unschedule_async(r, "nope.service", m2, done_cb, DONE)));

        /* Scheduled, no state yet: inactive. */
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s1 = NULL;
        ASSERT_OK(fl_registry_load(r, &s1));
        ASSERT_STREQ(s1->units[0].target, m1);
        ASSERT_EQ(s1->units[0].current_state, JOB_STATE_INACTIVE);

        RegUnitState st = running_state("web.service", m1);
        ASSERT_OK(ASYNC(e, fl_registry_save_unit_state_async(r, &st, 30, done_cb, DONE)));
        _cleanup_free_ char *want = fl_reg_encode_unit_state(&st);
        char key[128];
        snprintf(key, sizeof(key), "states/web.service/%s", m1);
        _cleanup_free_ char *raw_st = raw_get(key);
        ASSERT_STREQ(raw_st, want);
        /* fleet's legacy state/<unit> (never read) is not written any more. */
        ASSERT_FALSE(raw_exists("state/web.service"));
        ASSERT_TRUE(raw_num(key, "ttl") > 25);
        ASSERT_TRUE(strstr(raw_st, "\"machineState\":{\"ID\":\"c31e44e1f7f642bea3b54b7f6d0be1c5\",\"PublicIP\":\"\","
                                   "\"Metadata\":null,\"Capabilities\":null,\"Version\":\"\"}") != NULL);
        /* Refused like fleet: no hash. */
        RegUnitState bad = st;
        bad.hash[0] = 0;
        ASSERT_ERR(fl_registry_save_unit_state_async(r, &bad, 30, done_cb, NULL), -EINVAL);

        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s2 = NULL;
        ASSERT_OK(fl_registry_load(r, &s2));
        ASSERT_EQ(s2->units[0].current_state, JOB_STATE_LOADED);
        ASSERT_EQ(s2->n_states, 1);
        ASSERT_STREQ(s2->states[0].name, "web.service");
        ASSERT_STREQ(s2->states[0].machine_id, m1);
        ASSERT_STREQ(s2->states[0].active_state, "active");
        ASSERT_STREQ(s2->states[0].hash, st.hash);

        /* Job heartbeat: launched. A second beat with the same value only refreshes the TTL:
         * the key's index moves, its value and our write index (what the mirror waits for)
         * do not. */
        ASSERT_OK(ASYNC(e, fl_registry_job_heartbeat_async(r, "web.service", m1, 30, done_cb, DONE)));
        _cleanup_free_ char *js = raw_get("job/web.service/job-state");
        ASSERT_STREQ(js, m1);
        long long idx1 = raw_num("job/web.service/job-state", "modifiedIndex");
        uint64_t wi = fl_registry_write_index(r);
        ASSERT_OK(ASYNC(e, fl_registry_job_heartbeat_async(r, "web.service", m1, 30, done_cb, DONE)));
        ASSERT_TRUE(raw_num("job/web.service/job-state", "modifiedIndex") > idx1);
        ASSERT_EQ(fl_registry_write_index(r), wi);
        /* Someone else overwrote it: the refresh's compare fails and we write in full. */
        ASSERT_OK(raw_put("job/web.service/job-state", m2));
        ASSERT_OK(ASYNC(e, fl_registry_job_heartbeat_async(r, "web.service", m1, 30, done_cb, DONE)));
        _cleanup_free_ char *js2 = raw_get("job/web.service/job-state");
        ASSERT_STREQ(js2, m1);
        ASSERT_TRUE(raw_num("job/web.service/job-state", "ttl") > 25);

        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s3 = NULL;
        ASSERT_OK(fl_registry_load(r, &s3));
        ASSERT_EQ(s3->units[0].current_state, JOB_STATE_LAUNCHED);
        ASSERT_STREQ(s3->units[0].job_state, m1);

        ASSERT_OK(ASYNC(e, fl_registry_job_clear_heartbeat_async(r, "web.service", done_cb, DONE)));
        ASSERT_FALSE(raw_exists("job/web.service/job-state"));
        ASSERT_OK(ASYNC(e, fl_registry_job_clear_heartbeat_async(r, "web.service", done_cb, DONE)));

        /* Another machine's state survives removing ours. */
        RegUnitState st2 = st;
        st2.machine_id = (char *) m2;
        ASSERT_OK(ASYNC(e, fl_registry_save_unit_state_async(r, &st2, 30, done_cb, DONE)));
        ASSERT_OK(ASYNC(e, fl_registry_remove_unit_state_async(r, "web.service", m1, done_cb, DONE)));
        ASSERT_FALSE(raw_exists(key));
        snprintf(key, sizeof(key), "states/web.service/%s", m2);
        ASSERT_TRUE(raw_exists(key));
        ASSERT_OK(ASYNC(e, fl_registry_remove_unit_state_async(r, "web.service", m2, done_cb, DONE)));
        ASSERT_FALSE(raw_exists(key));
        ASSERT_FALSE(raw_exists("state/web.service"));
        ASSERT_FALSE(raw_exists("states/web.service"));

        /* Unschedulable reasons. */
        ASSERT_OK(ASYNC(e, fl_registry_set_unschedulable_async(r, "web.service", "no machine", done_cb, DONE)));
        _cleanup_free_ char *why = raw_get("job/web.service/unschedulable");
        ASSERT_STREQ(why, "no machine");
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s4 = NULL;
        ASSERT_OK(fl_registry_load(r, &s4));
        ASSERT_STREQ(s4->units[0].unschedulable, "no machine");
        ASSERT_EQ(s4->units[0].current_state, JOB_STATE_INACTIVE);
        ASSERT_OK(ASYNC(e, fl_registry_set_unschedulable_async(r, "web.service", NULL, done_cb, DONE)));
        ASSERT_OK(ASYNC(e, fl_registry_set_unschedulable_async(r, "web.service", NULL, done_cb, DONE)));
        ASSERT_FALSE(raw_exists("job/web.service/unschedulable"));

        ASSERT_OK(ASYNC(e, fl_registry_unschedule_async(r, "web.service", m1, done_cb, DONE)));
        ASSERT_FALSE(raw_exists("job/web.service/target"));
}

/* A few units read on their own (fleetctl's etcd driver, few names) decode exactly as in a read
 * of everything; other units are not read. */
TEST(load_units) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        _cleanup_(fl_registry_freep) Registry *r = reg_new(e);
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(hello_text);
        _cleanup_(fl_unit_file_freep) UnitFile *g = unit("[Service]\nExecStart=/bin/true\n[X-Fleet]\nGlobal=true\n");
        const char *m1 = "c31e44e1f7f642bea3b54b7f6d0be1c5";
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *all = NULL, *few = NULL, *none = NULL;
        char *names[] = { "web.service", "missing.service", "job/x", "..", "glob.service", "idle.service", NULL };

        _cleanup_strv_free_ char **empty = NULL;
        ASSERT_OK(fl_registry_list_unit_names(r, &empty));
        ASSERT_EQ(fl_strv_length(empty), 0);
        ASSERT_OK(fl_registry_create_unit(r, "web.service", u, JOB_STATE_LAUNCHED));
        ASSERT_OK(ASYNC(e, fl_registry_schedule_async(r, "web.service", m1, done_cb, DONE)));
        ASSERT_OK(ASYNC(e, fl_registry_job_heartbeat_async(r, "web.service", m1, 30, done_cb, DONE)));
        RegUnitState st = running_state("web.service", m1);
        ASSERT_OK(ASYNC(e, fl_registry_save_unit_state_async(r, &st, 30, done_cb, DONE)));
        ASSERT_OK(fl_registry_create_unit(r, "glob.service", g, JOB_STATE_LAUNCHED));
        ASSERT_OK(fl_registry_create_unit(r, "idle.service", u, JOB_STATE_INACTIVE));
        ASSERT_OK(fl_registry_create_unit(r, "other.service", g, JOB_STATE_LOADED));
        /* A job directory without object is no unit, in either read. */
        ASSERT_OK(raw_put("job/ghost.service/target", m1));

        ASSERT_OK(fl_registry_load(r, &all));
        ASSERT_OK(fl_registry_load_units(r, names, 6, &few));
        ASSERT_EQ(all->n_units, 4);
        ASSERT_EQ(few->n_units, 3);
        ASSERT_NULL(fl_reg_snapshot_find_unit(few, "other.service"));
        ASSERT_EQ(few->n_machines, 0);
        for (size_t i = 0; i < few->n_units; i++) {
                const RegUnit *a = fl_reg_snapshot_find_unit(all, few->units[i].name), *b = &few->units[i];

                ASSERT_NOT_NULL(a);
                ASSERT_STREQ(a->hash, b->hash);
                ASSERT_TRUE(a->file && b->file && fl_unit_file_equal(a->file, b->file));
                ASSERT_EQ(a->global, b->global);
                ASSERT_EQ(a->target_state, b->target_state);
                ASSERT_EQ(a->current_state, b->current_state);
                ASSERT_TRUE(streq_ptr(a->target, b->target));
                ASSERT_TRUE(streq_ptr(a->job_state, b->job_state));
        }
        ASSERT_EQ(fl_reg_snapshot_find_unit(few, "web.service")->current_state, JOB_STATE_LAUNCHED);
        ASSERT_TRUE(fl_reg_snapshot_find_unit(few, "glob.service")->global);

        ASSERT_OK(fl_registry_load_units(r, (char *[]) { "missing.service", NULL }, 1, &none));
        ASSERT_EQ(none->n_units, 0);

        /* The names: every unit and the directory without object (a hint, read again later). */
        _cleanup_strv_free_ char **l = NULL;
        ASSERT_OK(fl_registry_list_unit_names(r, &l));
        _cleanup_strv_free_ char **want = NULL;
        fl_strv_sort(l);
        ASSERT_OK(fl_strv_split("ghost.service glob.service idle.service other.service web.service", " ", &want));
        ASSERT_TRUE(fl_strv_equal(l, want));
}

TEST(machines) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        _cleanup_(fl_registry_freep) Registry *r = reg_new(e);
        char *md[] = { (char *) "region", (char *) "us", (char *) "disk", (char *) "ssd" };
        RegMachine m = { .id = (char *) "m1", .public_ip = (char *) "10.0.0.1", .metadata = md, .n_metadata = 2,
                         .version = (char *) "1.0.0" };

        ASSERT_OK(ASYNC(e, fl_registry_machine_register_async(r, &m, 30, done_cb, DONE)));
        _cleanup_free_ char *obj = raw_get("machines/m1/object");
        ASSERT_STREQ(obj, "{\"ID\":\"m1\",\"PublicIP\":\"10.0.0.1\",\"Metadata\":{\"disk\":\"ssd\",\"region\":\"us\"},"
                          "\"Capabilities\":{\"DISABLE_ENGINE\":false,\"GRPC\":false},\"Version\":\"1.0.0\"}");
        ASSERT_TRUE(raw_num("machines/m1/object", "ttl") > 25);
        ASSERT_ERR(ASYNC(e, fl_registry_machine_register_async(r, &m, 30, done_cb, DONE)), -EEXIST);

        /* Unchanged: refresh (same value, index moves, not a write the mirror waits for). */
        long long i1 = raw_num("machines/m1/object", "modifiedIndex");
        uint64_t wi = fl_registry_write_index(r);
        ASSERT_OK(ASYNC(e, fl_registry_machine_beat_async(r, &m, 30, done_cb, DONE)));
        ASSERT_TRUE(raw_num("machines/m1/object", "modifiedIndex") > i1);
        ASSERT_EQ(fl_registry_write_index(r), wi);
        /* Changed: full write. */
        m.public_ip = (char *) "10.0.0.2";
        ASSERT_OK(ASYNC(e, fl_registry_machine_beat_async(r, &m, 30, done_cb, DONE)));
        _cleanup_free_ char *obj2 = raw_get("machines/m1/object");
        ASSERT_TRUE(strstr(obj2, "\"PublicIP\":\"10.0.0.2\"") != NULL);
        ASSERT_TRUE(fl_registry_write_index(r) > wi);

        /* Dynamic metadata overlays config metadata; "" removes. */
        ASSERT_OK(fl_registry_set_machine_metadata(r, "m1", "region", "eu"));
        ASSERT_OK(fl_registry_set_machine_metadata(r, "m1", "disk", ""));
        ASSERT_OK(ASYNC(e, fl_registry_set_machine_metadata_async(r, "m1", "rack", "7", done_cb, DONE)));
        ASSERT_OK(fl_registry_set_machine_metadata(r, "m2", "region", "ap"));
        _cleanup_free_ char *dm = raw_get("machines/m1/metadata/disk");
        ASSERT_STREQ(dm, "");
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s = NULL;
        ASSERT_OK(fl_registry_load(r, &s));
        ASSERT_EQ(s->n_machines, 1);   /* m2 has metadata but no presence */
        const RegMachine *x = fl_reg_snapshot_find_machine(s, "m1");
        ASSERT_NOT_NULL(x);
        ASSERT_STREQ(x->public_ip, "10.0.0.2");
        ASSERT_STREQ(x->version, "1.0.0");
        ASSERT_EQ(x->n_metadata, 2);
        ASSERT_STREQ(fl_reg_machine_metadata(x, "region"), "eu");
        ASSERT_STREQ(fl_reg_machine_metadata(x, "rack"), "7");
        ASSERT_NULL(fl_reg_machine_metadata(x, "disk"));

        /* Expired machine: beat recreates it. */
        ASSERT_OK(ASYNC(e, fl_registry_machine_remove_async(r, "m1", done_cb, DONE)));
        ASSERT_FALSE(raw_exists("machines/m1/object"));
        ASSERT_OK(ASYNC(e, fl_registry_machine_remove_async(r, "m1", done_cb, DONE)));
        ASSERT_OK(ASYNC(e, fl_registry_machine_beat_async(r, &m, 30, done_cb, DONE)));
        ASSERT_TRUE(raw_exists("machines/m1/object"));
}

TEST(lease_and_engine_version) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        _cleanup_(fl_registry_freep) Registry *r = reg_new(e);

        ASSERT_OK(ASYNC(e, fl_registry_lease_acquire_async(r, "m1", 1, 10, done_cb, DONE)));
        _cleanup_free_ char *l = raw_get("lease/engine-leader");
        ASSERT_STREQ(l, "{\"MachineID\":\"m1\",\"Version\":1}");
        ASSERT_TRUE(raw_num("lease/engine-leader", "ttl") > 5);
        ASSERT_ERR(ASYNC(e, fl_registry_lease_acquire_async(r, "m2", 1, 10, done_cb, DONE)), -EEXIST);

        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s = NULL;
        ASSERT_OK(fl_registry_load(r, &s));
        ASSERT_STREQ(s->lease.machine_id, "m1");
        ASSERT_EQ(s->lease.version, 1);
        ASSERT_TRUE(s->lease.index > 0);
        ASSERT_TRUE(s->lease.ttl_sec > 5 && s->lease.ttl_sec <= 10);

        ASSERT_ERR(ASYNC(e, fl_registry_lease_renew_async(r, "m1", 1, 10, s->lease.index + 1000, done_cb, DONE)),
                   -ESTALE);
        ASSERT_ERR(ASYNC(e, fl_registry_lease_renew_async(r, "m1", 1, 10, 0, done_cb, DONE)), -ESTALE);
        ASSERT_OK(ASYNC(e, fl_registry_lease_renew_async(r, "m1", 1, 20, s->lease.index, done_cb, DONE)));
        ASSERT_TRUE(raw_num("lease/engine-leader", "ttl") > 15);
        ASSERT_ERR(ASYNC(e, fl_registry_lease_release_async(r, s->lease.index, done_cb, DONE)), -ESTALE);
        long long idx = raw_num("lease/engine-leader", "modifiedIndex");
        ASSERT_OK(ASYNC(e, fl_registry_lease_release_async(r, (uint64_t) idx, done_cb, DONE)));
        ASSERT_FALSE(raw_exists("lease/engine-leader"));

        /* A pre-versioning engine's lease: a bare machine ID. */
        ASSERT_OK(raw_put("lease/engine-leader", "c31e44e1f7f642bea3b54b7f6d0be1c5"));
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s2 = NULL;
        ASSERT_OK(fl_registry_load(r, &s2));
        ASSERT_STREQ(s2->lease.machine_id, "c31e44e1f7f642bea3b54b7f6d0be1c5");
        ASSERT_EQ(s2->lease.version, 0);
        ASSERT_EQ(s2->lease.ttl_sec, 0);
        /* Steal: a renew with the old index. */
        ASSERT_OK(ASYNC(e, fl_registry_lease_renew_async(r, "m2", 1, 10, s2->lease.index, done_cb, DONE)));
        _cleanup_free_ char *l2 = raw_get("lease/engine-leader");
        ASSERT_STREQ(l2, "{\"MachineID\":\"m2\",\"Version\":1}");

        /* engine/version: created when missing, then compare-and-swap. */
        ASSERT_OK(ASYNC(e, fl_registry_engine_version_set_async(r, 0, 1, done_cb, DONE)));
        _cleanup_free_ char *v = raw_get("engine/version");
        ASSERT_STREQ(v, "1");
        ASSERT_ERR(ASYNC(e, fl_registry_engine_version_set_async(r, 0, 2, done_cb, DONE)), -ESTALE);
        ASSERT_OK(ASYNC(e, fl_registry_engine_version_set_async(r, 1, 2, done_cb, DONE)));
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s3 = NULL;
        ASSERT_OK(fl_registry_load(r, &s3));
        ASSERT_EQ(s3->engine_version, 2);
}

TEST(decode_robustness) {
        SETUP();
        _cleanup_(fl_registry_freep) Registry *r = reg_new(NULL);
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(hello_text);
        _cleanup_(fl_unit_file_freep) UnitFile *g = unit("[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n");

        ASSERT_OK(fl_registry_create_unit(r, "ok.service", u, JOB_STATE_LAUNCHED));
        ASSERT_OK(fl_registry_create_unit(r, "bogus-target.service", u, JOB_STATE_LAUNCHED));
        ASSERT_OK(raw_put("job/bogus-target.service/target-state", "running"));
        ASSERT_OK(fl_registry_create_unit(r, "global.service", g, JOB_STATE_LAUNCHED));
        /* Garbage a careless tool could leave. */
        ASSERT_OK(raw_put("job/garbage.service/object", "not json"));
        ASSERT_OK(raw_put("job/nofile.service/object",
                          "{\"Name\":\"nofile.service\",\"UnitHash\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}"));
        ASSERT_OK(raw_put("job/orphan.service/target", "m1"));
        ASSERT_OK(raw_put("states/ok.service/m1", "{broken"));
        ASSERT_OK(raw_put("states/ok.service/m2", "{\"loadState\":\"loaded\",\"activeState\":\"active\","
                                                  "\"subState\":\"running\",\"machineState\":null,\"unitHash\":\"\"}"));
        ASSERT_OK(raw_put("machines/bad/object", "[1,2]"));
        ASSERT_OK(raw_put("engine/version", "x"));
        ASSERT_OK(raw_put("unit/0102030405060708090a0b0c0d0e0f1011121314", "{\"Raw\":\"[Service\"}"));
        ASSERT_OK(raw_put("job/badfile.service/object",
                          "{\"Name\":\"badfile.service\",\"UnitHash\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}"));

        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s = NULL;
        ASSERT_OK(fl_registry_load(r, &s));
        ASSERT_NULL(fl_reg_snapshot_find_unit(s, "garbage.service"));
        ASSERT_NULL(fl_reg_snapshot_find_unit(s, "orphan.service"));
        const RegUnit *x = fl_reg_snapshot_find_unit(s, "bogus-target.service");
        ASSERT_NOT_NULL(x);
        ASSERT_EQ(x->target_state, JOB_STATE_INACTIVE);
        x = fl_reg_snapshot_find_unit(s, "nofile.service");
        ASSERT_NOT_NULL(x);
        ASSERT_NULL(x->file);
        ASSERT_STREQ(x->hash, "0102030405060708090a0b0c0d0e0f1011121314");
        x = fl_reg_snapshot_find_unit(s, "badfile.service");
        ASSERT_NOT_NULL(x);
        ASSERT_NULL(x->file);
        x = fl_reg_snapshot_find_unit(s, "global.service");
        ASSERT_NOT_NULL(x);
        ASSERT_TRUE(x->global);
        ASSERT_TRUE(x->req.global);
        ASSERT_EQ(x->current_state, JOB_STATE_INACTIVE);
        ASSERT_EQ(s->n_units, 5);
        /* Names sorted. */
        for (size_t i = 1; i < s->n_units; i++)
                ASSERT_TRUE(strcmp(s->units[i - 1].name, s->units[i].name) < 0);
        /* The broken state is skipped; a state without machineState takes the key's machine. */
        ASSERT_EQ(s->n_states, 1);
        ASSERT_STREQ(s->states[0].machine_id, "m2");
        ASSERT_EQ(s->n_machines, 0);
        ASSERT_EQ(s->engine_version, 0);
}

/* ---- Mirror ---- */

typedef struct MirrorCtx {
        Registry *r;
        int changes;
        const char *want_unit;      /* wait until it exists ... */
        bool want_present;
        const char *want_machine;
        JobState want_state;
        uint64_t want_index;
        size_t want_units;
        int want_changes;           /* wait until changes exceeds it */
} MirrorCtx;

static void on_change(Registry *r, void *userdata) {
        ((MirrorCtx *) userdata)->changes++;
}

static bool ready_cond(void *p) {
        return fl_registry_mirror_ready(((MirrorCtx *) p)->r) && fl_registry_snapshot(((MirrorCtx *) p)->r);
}

static bool unit_cond(void *p) {
        MirrorCtx *c = p;
        const RegSnapshot *s = fl_registry_snapshot(c->r);
        const RegUnit *u = s ? fl_reg_snapshot_find_unit(s, c->want_unit) : NULL;
        if (!c->want_present)
                return s && !u;
        return u && u->target_state == c->want_state;
}

static bool machine_cond(void *p) {
        MirrorCtx *c = p;
        const RegSnapshot *s = fl_registry_snapshot(c->r);
        return s && (fl_reg_snapshot_find_machine(s, c->want_machine) != NULL) == c->want_present;
}

/* on_change runs from a defer source, possibly one loop iteration after the snapshot changed. */
static bool changes_cond(void *p) {
        MirrorCtx *c = p;
        return c->changes > c->want_changes;
}

static bool index_cond(void *p) {
        MirrorCtx *c = p;
        return fl_registry_mirror_index(c->r) >= c->want_index;
}

TEST(mirror_follows) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        _cleanup_(fl_registry_freep) Registry *w = reg_new(e);
        _cleanup_(fl_registry_freep) Registry *r = reg_new(e);
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(hello_text);
        _cleanup_(fl_unit_file_freep) UnitFile *u2 = unit("[Service]\nExecStart=/bin/true\n");
        MirrorCtx c = { .r = r };

        ASSERT_OK(fl_registry_create_unit(w, "before.service", u, JOB_STATE_LOADED));
        ASSERT_NULL(fl_registry_snapshot(r));
        ASSERT_OK(fl_registry_mirror_start(r, on_change, &c));
        ASSERT_ERR(fl_registry_mirror_start(r, on_change, &c), -EALREADY);
        ASSERT_TRUE(run_until(e, ready_cond, &c, 5000000));
        const RegSnapshot *s = fl_registry_snapshot(r);
        ASSERT_EQ(s->n_units, 1);
        ASSERT_TRUE(s->shared_files);
        ASSERT_NOT_NULL(s->units[0].file);
        ASSERT_TRUE(c.changes >= 0);

        /* Changes by another client show up. */
        int changes = c.changes;
        ASSERT_OK(fl_registry_create_unit(w, "after.service", u, JOB_STATE_LAUNCHED));
        c.want_unit = "after.service", c.want_present = true, c.want_state = JOB_STATE_LAUNCHED;
        ASSERT_TRUE(run_until(e, unit_cond, &c, 5000000));
        c.want_changes = changes;
        ASSERT_TRUE(run_until(e, changes_cond, &c, 5000000));
        ASSERT_TRUE(fl_registry_mirror_index(r) >= fl_registry_write_index(w));
        s = fl_registry_snapshot(r);
        const RegUnit *a = fl_reg_snapshot_find_unit(s, "after.service");
        const RegUnit *b = fl_reg_snapshot_find_unit(s, "before.service");
        /* Same hash: one parse shared. */
        ASSERT_TRUE(a->file == b->file);
        ASSERT_TRUE(s->index == fl_registry_mirror_index(r));

        ASSERT_OK(fl_registry_set_target_state(w, "after.service", JOB_STATE_INACTIVE));
        c.want_state = JOB_STATE_INACTIVE;
        ASSERT_TRUE(run_until(e, unit_cond, &c, 5000000));

        /* Replacing a unit with new contents. */
        ASSERT_OK(fl_registry_create_unit(w, "after.service", u2, JOB_STATE_LOADED));
        c.want_state = JOB_STATE_LOADED;
        ASSERT_TRUE(run_until(e, unit_cond, &c, 5000000));
        a = fl_reg_snapshot_find_unit(fl_registry_snapshot(r), "after.service");
        ASSERT_TRUE(fl_unit_file_equal(a->file, u2));

        /* A recursive delete removes the whole job directory. */
        ASSERT_OK(fl_registry_destroy_unit(w, "after.service"));
        c.want_present = false;
        ASSERT_TRUE(run_until(e, unit_cond, &c, 5000000));
        ASSERT_EQ(fl_registry_snapshot(r)->n_units, 1);

        /* No change, no rebuild: the same snapshot comes back. */
        ASSERT_TRUE(fl_registry_snapshot(r) == fl_registry_snapshot(r));

        /* A machine whose presence expires (TTL 1 s) vanishes. */
        RegMachine m = { .id = (char *) "m-ttl", .public_ip = (char *) "", .version = (char *) "1.0.0" };
        ASSERT_OK(ASYNC(e, fl_registry_machine_register_async(w, &m, 1, done_cb, DONE)));
        c.want_machine = "m-ttl", c.want_present = true;
        ASSERT_TRUE(run_until(e, machine_cond, &c, 5000000));
        c.want_present = false;
        ASSERT_TRUE(run_until(e, machine_cond, &c, 10000000));

        /* Read-your-writes: the mirror reaches the writer's index. */
        ASSERT_OK(fl_registry_set_machine_metadata(w, "m-ttl", "k", "v"));
        c.want_index = fl_registry_write_index(w);
        ASSERT_TRUE(run_until(e, index_cond, &c, 5000000));
}

TEST(mirror_index_cleared) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        _cleanup_(fl_registry_freep) Registry *w = reg_new(e);
        _cleanup_(fl_registry_freep) Registry *r = reg_new(e);
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(hello_text);
        MirrorCtx c = { .r = r };

        ASSERT_OK(fl_registry_create_unit(w, "gone.service", u, JOB_STATE_LOADED));
        ASSERT_OK(fl_registry_mirror_start(r, on_change, &c));
        ASSERT_TRUE(run_until(e, ready_cond, &c, 5000000));
        ASSERT_EQ(fl_registry_mirror_reads(r), 1);
        ASSERT_NOT_NULL(fl_reg_snapshot_find_unit(fl_registry_snapshot(r), "gone.service"));

        /* Stop the watch, change things, then push etcd's 1000-event history past the
         * mirror's index with writes elsewhere (outside the prefix). */
        fl_reg_mirror_pause(r);
        ASSERT_OK(fl_registry_destroy_unit(w, "gone.service"));
        ASSERT_OK(fl_registry_create_unit(w, "new.service", u, JOB_STATE_LAUNCHED));
        {
                char *eps[] = { endpoint, NULL };
                _cleanup_free_ char *other = NULL;
                ASSERT_TRUE(asprintf(&other, "%s-noise/", prefix) > 0);
                RegistryConfig cfg = { .endpoints = eps, .prefix = other };
                _cleanup_(fl_registry_freep) Registry *noise = NULL;
                ASSERT_OK(fl_registry_new(&cfg, NULL, &noise));
                for (int i = 0; i < 1050; i++)
                        ASSERT_OK(fl_registry_set_machine_metadata(noise, "x", "k", i % 2 ? "a" : "b"));
        }
        ASSERT_OK(fl_reg_mirror_resume(r));
        c.want_unit = "new.service", c.want_present = true, c.want_state = JOB_STATE_LAUNCHED;
        ASSERT_TRUE(run_until(e, unit_cond, &c, 10000000));
        ASSERT_NULL(fl_reg_snapshot_find_unit(fl_registry_snapshot(r), "gone.service"));
        /* Recovered by a full read, not by replaying events. */
        ASSERT_EQ(fl_registry_mirror_reads(r), 2);
        ASSERT_TRUE(fl_registry_mirror_ready(r));

        /* And the watch goes on afterwards. */
        ASSERT_OK(fl_registry_destroy_unit(w, "new.service"));
        c.want_present = false;
        ASSERT_TRUE(run_until(e, unit_cond, &c, 5000000));
}

static bool units_cond(void *p) {
        MirrorCtx *c = p;
        const RegSnapshot *s = fl_registry_snapshot(c->r);
        return s && s->n_units == c->want_units;
}

/* Far behind (more than etcd's stream catch-up limit) while writes go on: a full read beside a
 * stream started from "now" catches up in one go, and what the stream brought during the read
 * is applied after it. */
TEST(mirror_resync_during_writes) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        _cleanup_(fl_registry_freep) Registry *w = reg_new(e);
        _cleanup_(fl_registry_freep) Registry *r = reg_new(e);
        _cleanup_(fl_unit_file_freep) UnitFile *u = unit(hello_text);
        MirrorCtx c = { .r = r };
        char name[64];

        ASSERT_OK(fl_registry_mirror_start(r, on_change, &c));
        ASSERT_TRUE(run_until(e, ready_cond, &c, 5000000));
        ASSERT_EQ(fl_registry_mirror_reads(r), 1);

        fl_reg_mirror_pause(r);
        for (unsigned i = 0; i < ETCD_STREAM_CATCHUP_MAX; i++) {
                snprintf(name, sizeof(name), "early-%u.service", i);
                ASSERT_OK(fl_registry_create_unit(w, name, u, JOB_STATE_INACTIVE));
        }
        ASSERT_OK(fl_reg_mirror_resume(r));
        for (unsigned i = 0; i < 40; i++) {
                snprintf(name, sizeof(name), "late-%u.service", i);
                ASSERT_OK(fl_registry_create_unit(w, name, u, JOB_STATE_LOADED));
                (void) sd_event_run(e, 0);
                (void) sd_event_run(e, 0);
        }
        ASSERT_OK(fl_registry_set_target_state(w, "early-0.service", JOB_STATE_LAUNCHED));
        c.want_units = ETCD_STREAM_CATCHUP_MAX + 40;
        ASSERT_TRUE(run_until(e, units_cond, &c, 10000000));
        c.want_unit = "early-0.service", c.want_present = true, c.want_state = JOB_STATE_LAUNCHED;
        ASSERT_TRUE(run_until(e, unit_cond, &c, 5000000));
        c.want_index = fl_registry_write_index(w);
        ASSERT_TRUE(run_until(e, index_cond, &c, 5000000));
        /* A read more, not one request per missed event. A loaded box may see one more: the
         * burst's quiet restart can find its stream behind again (seen once in CI). */
        ASSERT_TRUE(fl_registry_mirror_reads(r) >= 2 && fl_registry_mirror_reads(r) <= 3);
        c.want_unit = "late-39.service", c.want_state = JOB_STATE_LOADED;
        ASSERT_TRUE(unit_cond(&c));

        /* And the stream goes on afterwards. */
        ASSERT_OK(fl_registry_destroy_unit(w, "late-39.service"));
        c.want_present = false;
        ASSERT_TRUE(run_until(e, unit_cond, &c, 5000000));
}

TEST(mirror_etcd_down) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        /* Nothing listens there: the mirror keeps retrying, never ready, no snapshot. */
        char *eps[] = { (char *) "http://127.0.0.1:1", NULL };
        RegistryConfig cfg = { .endpoints = eps, .prefix = prefix, .request_timeout_usec = 200000 };
        _cleanup_(fl_registry_freep) Registry *r = NULL;
        ASSERT_OK(fl_registry_new(&cfg, e, &r));
        MirrorCtx c = { .r = r };
        ASSERT_OK(fl_registry_mirror_start(r, on_change, &c));
        ASSERT_FALSE(run_until(e, ready_cond, &c, 1000000));
        ASSERT_NULL(fl_registry_snapshot(r));
        RegSnapshot *s = NULL;
        int k = fl_registry_load(r, &s);
        ASSERT_TRUE(k == -ECONNREFUSED || k == -ETIMEDOUT);
        /* Async writes report the failure through done, once. */
        k = ASYNC(e, fl_registry_schedule_async(r, "x.service", "m1", done_cb, DONE));
        ASSERT_TRUE(k == -ECONNREFUSED || k == -ETIMEDOUT);
}

/* ---- Garbage collection ---- */

static int unit_hash_key(const UnitFile *u, char key[64]) {
        uint8_t h[20];
        char hex[41];
        int k = fl_unit_file_hash(u, h);
        if (k < 0)
                return k;
        fl_hash_to_hex(h, hex);
        snprintf(key, 64, "unit/%s", hex);
        return 0;
}

TEST(gc_units) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        _cleanup_(fl_registry_freep) Registry *r = reg_new(e);
        _cleanup_(fl_unit_file_freep) UnitFile *u1 = unit(hello_text);
        _cleanup_(fl_unit_file_freep) UnitFile *u2 = unit("[Service]\nExecStart=/bin/false\n");
        char k1[64], k2[64];
        const uint64_t grace = 300 * 1000;

        ASSERT_OK(unit_hash_key(u1, k1));
        ASSERT_OK(unit_hash_key(u2, k2));
        ASSERT_OK(fl_registry_create_unit(r, "keep.service", u1, JOB_STATE_LOADED));
        ASSERT_OK(fl_registry_create_unit(r, "drop.service", u2, JOB_STATE_LOADED));
        ASSERT_OK(fl_registry_destroy_unit(r, "drop.service"));

        /* First sight starts the grace period: nothing goes. */
        ASSERT_OK(ASYNC(e, fl_registry_gc_units_async(r, grace, done_cb, DONE)));
        ASSERT_TRUE(raw_exists(k2));
        usleep(grace + 100 * 1000);
        ASSERT_OK(ASYNC(e, fl_registry_gc_units_async(r, grace, done_cb, DONE)));
        ASSERT_FALSE(raw_exists(k2));
        ASSERT_TRUE(raw_exists(k1));

        /* Re-written meanwhile (a create in progress): the grace period starts again. */
        ASSERT_OK(fl_registry_create_unit(r, "drop.service", u2, JOB_STATE_LOADED));
        ASSERT_OK(fl_registry_destroy_unit(r, "drop.service"));
        ASSERT_OK(ASYNC(e, fl_registry_gc_units_async(r, grace, done_cb, DONE)));
        usleep(grace + 100 * 1000);
        _cleanup_free_ char *c2 = raw_get(k2);
        ASSERT_OK(raw_put(k2, c2));
        ASSERT_OK(ASYNC(e, fl_registry_gc_units_async(r, grace, done_cb, DONE)));
        ASSERT_TRUE(raw_exists(k2));

        /* With a mirror that lags behind a concurrent create: the compare-and-delete on the
         * old index fails and the unit file stays. */
        MirrorCtx c = { .r = r };
        ASSERT_OK(fl_registry_mirror_start(r, on_change, &c));
        ASSERT_TRUE(run_until(e, ready_cond, &c, 5000000));
        ASSERT_OK(ASYNC(e, fl_registry_gc_units_async(r, grace, done_cb, DONE)));
        usleep(grace + 100 * 1000);
        fl_reg_mirror_pause(r);
        _cleanup_(fl_registry_freep) Registry *w = reg_new(NULL);
        ASSERT_OK(fl_registry_create_unit(w, "drop.service", u2, JOB_STATE_LOADED));
        ASSERT_OK(ASYNC(e, fl_registry_gc_units_async(r, grace, done_cb, DONE)));
        ASSERT_TRUE(raw_exists(k2));
        ASSERT_OK(fl_reg_mirror_resume(r));

        /* Referenced again: never deleted, whatever the time. */
        usleep(grace + 100 * 1000);
        c.want_unit = "drop.service", c.want_present = true, c.want_state = JOB_STATE_LOADED;
        ASSERT_TRUE(run_until(e, unit_cond, &c, 5000000));
        ASSERT_OK(ASYNC(e, fl_registry_gc_units_async(r, grace, done_cb, DONE)));
        usleep(grace + 100 * 1000);
        ASSERT_OK(ASYNC(e, fl_registry_gc_units_async(r, grace, done_cb, DONE)));
        ASSERT_TRUE(raw_exists(k2));
        ASSERT_TRUE(raw_exists(k1));
}

TEST(async_done_never_synchronous) {
        SETUP();
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        ASSERT_OK(sd_event_new(&e));
        _cleanup_(fl_registry_freep) Registry *r = reg_new(e);
        Done d = {};
        /* Fails without a request (index 0), still reported from the loop. */
        ASSERT_OK(fl_registry_lease_release_async(r, 0, done_cb, &d));
        ASSERT_EQ(d.n, 0);
        ASSERT_ERR(wait_done(e, &d), -ESTALE);
        ASSERT_EQ(d.n, 1);
        /* Freeing the registry with operations in flight calls nothing. */
        Done d2 = {};
        ASSERT_OK(fl_registry_lease_release_async(r, 5, done_cb, &d2));
        r = fl_registry_free(r);
        ASSERT_EQ(d2.n, 0);
}

TEST_MAIN(T(create_unit_raw_keys), T(empty_registry), T(target_state_and_destroy), T(schedule_and_states), T(load_units),
          T(machines), T(lease_and_engine_version), T(decode_robustness), T(mirror_follows),
          T(mirror_index_cleared), T(mirror_resync_during_writes), T(mirror_etcd_down), T(gc_units), T(async_done_never_synchronous))
