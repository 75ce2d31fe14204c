/* SPDX-License-Identifier: MIT */
/* test-registry-store.c: the daemons' incremental mirror (lib/registry-store.c) must say exactly
 * what a full decode of the same keys says (fl_reg_snapshot_build), after every event: tables of
 * event sequences that matter (create, schedule, states, destroy, garbage, partial units,
 * directory deletes), then long random sequences over a small key space. Pure logic: no etcd. */
#include <malloc.h>
#include <stdio.h>

#include "registry-internal.h"
#include "strv.h"
#include "tests.h"

typedef struct Pair {
        RegTree tree;     /* reference: raw keys, decoded whole each time */
        RegStore *store;
        uint64_t index;
} Pair;

static void pair_init(Pair *p) {
        *p = (Pair) { .tree.free_data = fl_reg_decoded_free };
        if (fl_reg_store_new(&p->store) < 0)
                abort();
}

static void pair_done(Pair *p) {
        fl_reg_tree_clear(&p->tree);
        fl_reg_store_free(p->store);
}

static void pair_set(Pair *p, const char *key, const char *value) {
        p->index++;
        ASSERT_OK(fl_reg_tree_set(&p->tree, key, value, p->index, 0));
        ASSERT_TRUE(fl_reg_store_set(p->store, key, value, p->index, 0) >= 0);
}

static void pair_del(Pair *p, const char *key) {
        p->index++;
        fl_reg_tree_remove(&p->tree, key);
        fl_reg_tree_remove_dir(&p->tree, key);
        ASSERT_TRUE(fl_reg_store_remove(p->store, key) >= 0);
}

/* 0 when equal; prints the difference. */
static int pair_check(Pair *p, const char *what) {
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *ref = NULL, *cached = NULL;
        _cleanup_free_ char *why = NULL;
        const RegSnapshot *got;

        if (fl_reg_snapshot_build(&p->tree, p->index, &ref) < 0)
                abort();
        got = fl_reg_store_snapshot(p->store, p->index);
        if (fl_reg_snapshot_compare(got, ref, &why) != 0) {
                printf("# after %s: store differs from a full decode: %s\n", what, why ? why : "?");
                return 1;
        }
        return 0;
}

/* A bulk load of the same keys must agree too. */
static int load_check(Pair *p) {
        _cleanup_(fl_reg_store_freep) RegStore *st = NULL;
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *ref = NULL;
        _cleanup_free_ char *why = NULL;
        int r = 0;

        if (fl_reg_store_new(&st) < 0 || fl_reg_snapshot_build(&p->tree, p->index, &ref) < 0)
                abort();
        fl_reg_store_begin_load(st);
        for (RegNode *n = fl_reg_tree_lower_bound(&p->tree, ""); n; n = fl_reg_tree_next(&p->tree, n->key))
                if (fl_reg_store_set(st, n->key, n->value, n->modified_index, n->ttl_sec) < 0)
                        abort();
        if (fl_reg_store_end_load(st) < 0)
                abort();
        if (fl_reg_snapshot_compare(fl_reg_store_snapshot(st, p->index), ref, &why) != 0) {
                printf("# bulk load differs from a full decode: %s\n", why ? why : "?");
                r = 1;
        }
        return r;
}

#define HASH_A "[55,80,179,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]"
#define HASH_B "[200,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19]"

static const char *hex_of(const char *json) {
        static char hex[41];
        uint8_t h[20];
        if (fl_reg_decode_job_object(json, NULL, h) < 0)
                abort();
        fl_hash_to_hex(h, hex);
        return hex;
}

static const char *OBJ_A = "{\"Name\":\"x\",\"UnitHash\":" HASH_A "}";
static const char *OBJ_B = "{\"Name\":\"x\",\"UnitHash\":" HASH_B "}";
static const char *FILE_1 = "{\"Raw\":\"[Unit]\\nDescription=one\\n\\n[X-Fleet]\\nMachineOf=b.service\\n\"}";
static const char *FILE_2 = "{\"Raw\":\"[Service]\\nExecStart=/bin/true\\n\\n[X-Fleet]\\nGlobal=true\\n\"}";
static const char *FILE_BAD = "{\"Raw\":\"[Unit\\n\"}";

static char *state_json(const char *mid, const char *active) {
        char *s = NULL;
        if (asprintf(&s,
                     "{\"loadState\":\"loaded\",\"activeState\":\"%s\",\"subState\":\"running\",\"machineState\":"
                     "{\"ID\":\"%s\",\"PublicIP\":\"\",\"Metadata\":null,\"Capabilities\":null,\"Version\":\"\"},"
                     "\"unitHash\":\"3750b3e9a9a7f2a4f2f0b0c6a5b5e4d3c2b1a090\"}",
                     active, mid) < 0)
                abort();
        return s;
}

TEST(sequences) {
        Pair p;
        _cleanup_free_ char *st1 = state_json("m1", "active"), *st2 = state_json("m2", "failed"),
                            *st_other = state_json("m9", "active");
        char unit_key_a[64], unit_key_b[64];
        int bad = 0;

        snprintf(unit_key_a, sizeof(unit_key_a), "unit/%s", hex_of(OBJ_A));
        snprintf(unit_key_b, sizeof(unit_key_b), "unit/%s", hex_of(OBJ_B));
        pair_init(&p);
        /* create as fleetctl does: file, object, target state */
        pair_set(&p, unit_key_a, FILE_1);
        bad += pair_check(&p, "file first");
        pair_set(&p, "job/a.service/object", OBJ_A);
        bad += pair_check(&p, "object");
        pair_set(&p, "job/a.service/target-state", "launched");
        bad += pair_check(&p, "target-state");
        /* schedule, state, heartbeat */
        pair_set(&p, "job/a.service/target", "m1");
        bad += pair_check(&p, "target");
        pair_set(&p, "states/a.service/m1", st1);
        bad += pair_check(&p, "state");
        pair_set(&p, "job/a.service/job-state", "m1");
        bad += pair_check(&p, "job-state");
        pair_set(&p, "states/a.service/m2", st2);
        pair_set(&p, "states/a.service/m3", st_other);   /* key and JSON disagree */
        pair_set(&p, "states/a.service/m4", "garbage");
        bad += pair_check(&p, "more states");
        pair_set(&p, "job/a.service/target", "m4");      /* target whose state does not decode */
        bad += pair_check(&p, "target with bad state");
        pair_del(&p, "states/a.service/m4");
        bad += pair_check(&p, "bad state gone");
        /* the file goes, comes back different, becomes unparsable */
        pair_del(&p, unit_key_a);
        bad += pair_check(&p, "file deleted");
        pair_set(&p, unit_key_a, FILE_2);
        bad += pair_check(&p, "file back, global");
        pair_set(&p, unit_key_a, FILE_BAD);
        bad += pair_check(&p, "file unparsable");
        pair_set(&p, unit_key_a, FILE_1);
        /* the object changes hash, then breaks */
        pair_set(&p, "job/a.service/object", OBJ_B);
        bad += pair_check(&p, "object to B");
        pair_set(&p, unit_key_b, FILE_2);
        bad += pair_check(&p, "file B");
        pair_set(&p, "job/a.service/object", "{not json");
        bad += pair_check(&p, "object broken");
        pair_set(&p, "job/a.service/object", OBJ_A);
        /* partial units: keys before the object, object deleted alone */
        pair_set(&p, "job/b.service/target-state", "loaded");
        pair_set(&p, "job/b.service/unschedulable", "no machines");
        bad += pair_check(&p, "partial b");
        pair_set(&p, "job/b.service/object", OBJ_B);
        bad += pair_check(&p, "b complete");
        pair_del(&p, "job/b.service/object");
        bad += pair_check(&p, "b object gone");
        pair_set(&p, "job/b.service/target-state", "bogus");
        pair_set(&p, "job/b.service/object", OBJ_A);
        pair_set(&p, "job/b.service/target", "");
        bad += pair_check(&p, "b back with bogus target-state, empty target");
        /* keys nobody reads, legacy state/, nested */
        pair_set(&p, "state/a.service", st1);
        pair_set(&p, "job/a.service/foo/bar", "x");
        pair_set(&p, "job/c.service", "leaf");
        pair_set(&p, "states/a.service/m1/deeper", st1);
        pair_set(&p, "unit/x/y", FILE_1);
        pair_set(&p, "whatever/else", "1");
        bad += pair_check(&p, "ignored keys");
        /* machines, lease, engine version */
        pair_set(&p, "machines/m1/object",
                 "{\"ID\":\"m1\",\"PublicIP\":\"10.0.0.1\",\"Metadata\":{\"role\":\"web\"},\"Capabilities\":null,\"Version\":\"1.0.0\"}");
        pair_set(&p, "machines/m1/metadata/role", "db");
        pair_set(&p, "lease/engine-leader", "{\"MachineID\":\"m1\",\"Version\":1}");
        pair_set(&p, "engine/version", "1");
        bad += pair_check(&p, "machines and lease");
        pair_del(&p, "machines/m1");
        bad += pair_check(&p, "machine gone");
        /* keys no etcd sends: a trailing slash names no field and no directory (a fuzzer find:
         * the store dropped the whole unit) */
        pair_del(&p, "job/a.service/");
        pair_del(&p, "states/a.service/");
        bad += pair_check(&p, "trailing slash deletes");
        /* directory deletes */
        pair_del(&p, "states/a.service");
        bad += pair_check(&p, "states of a gone");
        pair_set(&p, "states/a.service/m1", st1);
        pair_set(&p, "states/b.service/m1", "junk");
        pair_del(&p, "job/a.service");
        bad += pair_check(&p, "destroy a");
        bad += load_check(&p);
        pair_del(&p, "states");
        bad += pair_check(&p, "all states gone");
        pair_del(&p, "unit");
        bad += pair_check(&p, "all files gone");
        pair_del(&p, "job");
        bad += pair_check(&p, "all jobs gone");
        bad += load_check(&p);
        pair_done(&p);
        ASSERT_EQ(bad, 0);
}

/* Random events over a small key space, values drawn from what each kind of key holds (and
 * garbage), so that units really get scheduled, launched, re-filed and destroyed. */
TEST(random_events) {
        static const char *units[] = { "a.service", "b@1.service", "b@.service", "c.service" };
        static const char *machines[] = { "m1", "m2", "m3" };
        static const char *fields[] = { "object", "target-state", "target", "job-state", "unschedulable", "x" };
        _cleanup_free_ char *s1 = state_json("m1", "active"), *s2 = state_json("m2", "inactive"),
                            *s0 = state_json("", "active");
        const char *objects[] = { OBJ_A, OBJ_B, "{bad" };
        const char *tstates[] = { "launched", "loaded", "inactive", "bogus", "" };
        const char *mids[] = { "m1", "m2", "m3", "" };
        const char *states[] = { s1, s2, s0, "junk" };
        const char *files[] = { FILE_1, FILE_2, FILE_BAD };
        const char *mobjs[] = {
                "{\"ID\":\"m1\",\"PublicIP\":\"10.0.0.1\",\"Metadata\":{},\"Capabilities\":null,\"Version\":\"1.0.0\"}",
                "{\"ID\":\"\",\"PublicIP\":\"\",\"Metadata\":{\"a\":\"b\"},\"Capabilities\":null,\"Version\":\"\"}",
                "nope",
        };
        char unit_key_a[64], unit_key_b[64];
        unsigned seed = 12345, launched = 0, loaded = 0;
        int bad = 0;
        Pair p;

        snprintf(unit_key_a, sizeof(unit_key_a), "unit/%s", hex_of(OBJ_A));
        snprintf(unit_key_b, sizeof(unit_key_b), "unit/%s", hex_of(OBJ_B));
        pair_init(&p);
        for (int step = 0; step < 30000 && !bad; step++) {
                char key[128], what[200];
                const char *v = NULL;
                seed = seed * 1103515245 + 12345;
                unsigned r = seed >> 4;
                const char *u = units[r % 4], *m = machines[(r >> 2) % 3];
                unsigned f = (r >> 4) % 6, pick = r >> 16;
                switch ((r >> 7) % 16) {
                case 0 ... 6:
                        snprintf(key, sizeof(key), "job/%s/%s", u, fields[f]);
                        v = f == 0 ? objects[pick % 3] : f == 1 ? tstates[pick % 5] : f == 4 ? "why" : mids[pick % 4];
                        break;
                case 7 ... 9:
                        snprintf(key, sizeof(key), "states/%s/%s", u, m);
                        v = states[pick % 4];
                        break;
                case 10 ... 11:
                        snprintf(key, sizeof(key), "%s", pick % 2 ? unit_key_a : unit_key_b);
                        v = files[(pick >> 1) % 3];
                        break;
                case 12:
                        snprintf(key, sizeof(key), "%s/%s", pick % 2 ? "job" : "states", u);
                        break;
                case 13:
                        snprintf(key, sizeof(key), "machines/%s/object", m);
                        v = mobjs[pick % 3];
                        break;
                case 14:
                        snprintf(key, sizeof(key), "state/%s", u);
                        v = s1;
                        break;
                default:
                        if (pick % 8 == 0)
                                snprintf(key, sizeof(key), "%s", (const char *[]) { "job", "states", "unit", "machines" }[(pick >> 3) % 4]);
                        else {
                                snprintf(key, sizeof(key), "lease/engine-leader");
                                v = "{\"MachineID\":\"m1\",\"Version\":1}";
                        }
                        break;
                }
                /* Directories are deleted; one leaf event in five is a delete. */
                if (!v || (pick >> 8) % 5 == 0) {
                        pair_del(&p, key);
                        snprintf(what, sizeof(what), "step %d: delete %s", step, key);
                } else {
                        pair_set(&p, key, v);
                        snprintf(what, sizeof(what), "step %d: set %s = %.40s", step, key, v);
                }
                bad += pair_check(&p, what);
                const RegSnapshot *sn = fl_reg_store_snapshot(p.store, p.index);
                for (size_t i = 0; i < sn->n_units; i++) {
                        launched += sn->units[i].current_state == JOB_STATE_LAUNCHED;
                        loaded += sn->units[i].current_state == JOB_STATE_LOADED;
                }
                if (step % 1000 == 999)
                        bad += load_check(&p);
        }
        pair_done(&p);
        printf("# unit-steps launched %u, loaded %u\n", launched, loaded);
        ASSERT_TRUE(launched > 100 && loaded > 100);
        ASSERT_EQ(bad, 0);
}

/* What a daemon keeps per unit: measured here so a regression shows in the test log. */
TEST(many_units) {
        RegStore *st;
        char key[128], obj[256];
        _cleanup_free_ char *state = state_json("0123456789abcdef0123456789abcdef", "active");

        struct mallinfo2 m0 = mallinfo2();
        ASSERT_OK(fl_reg_store_new(&st));
        for (unsigned i = 0; i < 20000; i++) {
                snprintf(key, sizeof(key), "job/u%05u.service/object", i);
                snprintf(obj, sizeof(obj), "{\"Name\":\"u%05u.service\",\"UnitHash\":" HASH_A "}", i);
                ASSERT_TRUE(fl_reg_store_set(st, key, obj, i + 1, 0) > 0);
                snprintf(key, sizeof(key), "job/u%05u.service/target", i);
                ASSERT_TRUE(fl_reg_store_set(st, key, "0123456789abcdef0123456789abcdef", i + 1, 0) > 0);
                snprintf(key, sizeof(key), "states/u%05u.service/0123456789abcdef0123456789abcdef", i);
                ASSERT_TRUE(fl_reg_store_set(st, key, state, i + 1, 0) > 0);
        }
        const RegSnapshot *s = fl_reg_store_snapshot(st, 1);
        struct mallinfo2 m1 = mallinfo2();
        printf("# heap per unit (job object, target, state; no file): %zu bytes\n",
               (m1.uordblks - m0.uordblks) / 20000);
        ASSERT_EQ(s->n_units, 20000u);
        ASSERT_EQ(s->n_states, 20000u);
        ASSERT_EQ(s->units[0].current_state, JOB_STATE_LOADED);
        for (unsigned i = 0; i < 20000; i += 2) {
                snprintf(key, sizeof(key), "job/u%05u.service", i);
                ASSERT_TRUE(fl_reg_store_remove(st, key) > 0);
        }
        s = fl_reg_store_snapshot(st, 2);
        ASSERT_EQ(s->n_units, 10000u);
        ASSERT_STREQ(s->units[0].name, "u00001.service");
        m0 = mallinfo2();
        for (unsigned i = 0; i < 10000; i++) {
                snprintf(key, sizeof(key), "unit/%040x", i);
                snprintf(obj, sizeof(obj),
                         "{\"Raw\":\"[Unit]\\nDescription=bench unit %u\\n\\n[Service]\\nExecStart=/bin/sleep infinity\\n\"}", i);
                ASSERT_TRUE(fl_reg_store_set(st, key, obj, 1, 0) > 0);
        }
        m1 = mallinfo2();
        printf("# heap per unit file (two options): %zu bytes\n", (m1.uordblks - m0.uordblks) / 10000);
        fl_reg_store_free(st);
}

TEST_MAIN(T(sequences), T(random_events), T(many_units))
