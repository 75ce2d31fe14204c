/* SPDX-License-Identifier: MIT */
/* test-registry-codec.c: the registry's JSON values, byte for byte as fleet v1.0.0 (Go's
 * encoding/json) writes them (spec §4.1), and the lenient decoding of what others wrote. */
#include "registry.h"
#include "tests.h"

static const uint8_t hash1[20] = { 55, 80, 179, 0, 1, 2, 3, 4, 5, 255, 128, 127, 10, 11, 12, 13, 14, 15, 16, 17 };

TEST(job_state_strings) {
        ASSERT_STREQ(fl_job_state_to_string(JOB_STATE_INACTIVE), "inactive");
        ASSERT_STREQ(fl_job_state_to_string(JOB_STATE_LOADED), "loaded");
        ASSERT_STREQ(fl_job_state_to_string(JOB_STATE_LAUNCHED), "launched");
        ASSERT_NULL(fl_job_state_to_string(_JOB_STATE_MAX));
        ASSERT_EQ(fl_job_state_from_string("launched"), JOB_STATE_LAUNCHED);
        ASSERT_EQ(fl_job_state_from_string("loaded"), JOB_STATE_LOADED);
        ASSERT_EQ(fl_job_state_from_string("inactive"), JOB_STATE_INACTIVE);
        ASSERT_EQ(fl_job_state_from_string("Launched"), _JOB_STATE_INVALID);
        ASSERT_EQ(fl_job_state_from_string(""), _JOB_STATE_INVALID);
        ASSERT_EQ(fl_job_state_from_string(NULL), _JOB_STATE_INVALID);
}

TEST(job_object) {
        _cleanup_free_ char *s = fl_reg_encode_job_object("hello.service", hash1);
        ASSERT_STREQ(s, "{\"Name\":\"hello.service\",\"UnitHash\":"
                        "[55,80,179,0,1,2,3,4,5,255,128,127,10,11,12,13,14,15,16,17]}");

        _cleanup_free_ char *name = NULL;
        uint8_t h[20];
        ASSERT_OK(fl_reg_decode_job_object(s, &name, h));
        ASSERT_STREQ(name, "hello.service");
        ASSERT_TRUE(memcmp(h, hash1, 20) == 0);
}

TEST(job_object_decode_lenient) {
        static const struct {
                const char *json;
                int ret;
                const char *name;
                uint8_t h0, h19;
        } cases[] = {
                /* Go matches field names case-insensitively, ignores unknown fields. */
                { "{\"name\":\"a.service\",\"unithash\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20],\"X\":1}",
                  0, "a.service", 1, 20 },
                /* Short arrays zero-fill, long ones are cut. */
                { "{\"Name\":\"b\",\"UnitHash\":[9]}", 0, "b", 9, 0 },
                { "{\"Name\":\"c\",\"UnitHash\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21]}", 0, "c", 1, 20 },
                { "{\"Name\":\"d\",\"UnitHash\":null}", 0, "d", 0, 0 },
                { "{\"UnitHash\":[1]}", 0, "", 1, 0 },
                /* Garbage. */
                { "", -EBADMSG, NULL, 0, 0 },
                { "hello", -EBADMSG, NULL, 0, 0 },
                { "[]", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":5}", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":\"x\",\"UnitHash\":[256]}", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":\"x\",\"UnitHash\":[1.5]}", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":\"x\",\"UnitHash\":[-1]}", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":\"x\",\"UnitHash\":\"abc\"}", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":\"x\"} trailing", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":\"x\"", -EBADMSG, NULL, 0, 0 },
                /* Near the exact form the fast path reads: what it refuses, the general
                 * parser decides. */
                { "{\"Name\":\"e\",\"UnitHash\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,255]}", 0, "e", 0, 255 },
                { "{\"Name\":\"e\",\"UnitHash\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,256]}", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":\"e\",\"UnitHash\":[1000,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1]}", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":\"e\",\"UnitHash\":[7,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1]} ", 0, "e", 7, 1 },
                { "{\"Name\":\"e\",\"UnitHash\":[7,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1]}x", -EBADMSG, NULL, 0, 0 },
                { "{\"Name\":\"e\",\"UnitHash\":[7,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,2]}", 0, "e", 7, 1 },
                { "{\"Name\":\"a\\u003cb\",\"UnitHash\":[7,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1]}", 0, "a<b", 7, 1 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *name = NULL;
                uint8_t h[20];
                int r = fl_reg_decode_job_object(cases[i].json, &name, h);
                if (r != cases[i].ret)
                        FAIL_AT("case %zu (%s): %d", i, cases[i].json, r);
                if (r < 0)
                        continue;
                ASSERT_STREQ(name, cases[i].name);
                ASSERT_EQ(h[0], cases[i].h0);
                ASSERT_EQ(h[19], cases[i].h19);
        }
        ASSERT_ERR(fl_reg_decode_job_object(NULL, NULL, NULL), -EBADMSG);
}

TEST(string_escapes) {
        /* Go's encoding/json: \n \r \t \" \\ short forms; other control characters, <, > and &
         * as \u00XX; U+2028/2029 escaped; each invalid UTF-8 byte becomes \ufffd; DEL as is. */
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "", "{\"Raw\":\"\"}" },
                { "[Service]\nExecStart=/bin/sh -c \"echo <hi> && x\\\\y\"\n",
                  "{\"Raw\":\"[Service]\\nExecStart=/bin/sh -c \\\"echo \\u003chi\\u003e \\u0026\\u0026 x\\\\\\\\y\\\"\\n\"}" },
                { "a\tb\rc\x01\x08\x0c\x1f\x7f", "{\"Raw\":\"a\\tb\\rc\\u0001\\u0008\\u000c\\u001f\x7f\"}" },
                { "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "{\"Raw\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}" },
                { "\xe2\x80\xa8\xe2\x80\xa9", "{\"Raw\":\"\\u2028\\u2029\"}" },
                { "\xff", "{\"Raw\":\"\\ufffd\"}" },
                { "a\xc3", "{\"Raw\":\"a\\ufffd\"}" },
                { "\xe2\x82x", "{\"Raw\":\"\\ufffd\\ufffdx\"}" },
                { "\xc0\xaf", "{\"Raw\":\"\\ufffd\\ufffd\"}" },               /* overlong */
                { "\xed\xa0\x80", "{\"Raw\":\"\\ufffd\\ufffd\\ufffd\"}" },     /* surrogate */
                { "\xf4\x90\x80\x80", "{\"Raw\":\"\\ufffd\\ufffd\\ufffd\\ufffd\"}" }, /* > U+10FFFF */
                { "\xef\xbf\xbd", "{\"Raw\":\"\xef\xbf\xbd\"}" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *s = fl_reg_encode_unit_contents(cases[i].in);
                if (!s || strcmp(s, cases[i].out) != 0)
                        FAIL_AT("case %zu: got %s want %s", i, s, cases[i].out);
        }
}

TEST(unit_contents_roundtrip) {
        const char *raw = "[Unit]\nDescription=x <y> & \"z\"\n\n[Service]\nExecStart=/bin/true\n";
        _cleanup_free_ char *s = fl_reg_encode_unit_contents(raw), *back = NULL;
        ASSERT_OK(fl_reg_decode_unit_contents(s, &back));
        ASSERT_STREQ(back, raw);

        _cleanup_free_ char *b2 = NULL;
        ASSERT_OK(fl_reg_decode_unit_contents("{\"raw\":\"a\\u0026b\"}", &b2));
        ASSERT_STREQ(b2, "a&b");
        ASSERT_ERR(fl_reg_decode_unit_contents("{\"Raw\":1}", NULL), -EBADMSG);
        ASSERT_ERR(fl_reg_decode_unit_contents("null", NULL), -EBADMSG);
}

TEST(unit_state) {
        RegUnitState st = {
                .name = (char *) "hello.service",
                .machine_id = (char *) "c31e44e1f7f642bea3b54b7f6d0be1c5",
                .load_state = (char *) "loaded",
                .active_state = (char *) "active",
                .sub_state = (char *) "running",
                .hash = "3750b300010203040506ff807f0a0b0c0d0e0f10",
        };
        _cleanup_free_ char *s = fl_reg_encode_unit_state(&st);
        ASSERT_STREQ(s, "{\"loadState\":\"loaded\",\"activeState\":\"active\",\"subState\":\"running\","
                        "\"machineState\":{\"ID\":\"c31e44e1f7f642bea3b54b7f6d0be1c5\",\"PublicIP\":\"\","
                        "\"Metadata\":null,\"Capabilities\":null,\"Version\":\"\"},"
                        "\"unitHash\":\"3750b300010203040506ff807f0a0b0c0d0e0f10\"}");

        RegUnitState d = { .name = strdup("keep.service") };
        ASSERT_OK(fl_reg_decode_unit_state(s, &d));
        ASSERT_STREQ(d.name, "keep.service");
        ASSERT_STREQ(d.machine_id, "c31e44e1f7f642bea3b54b7f6d0be1c5");
        ASSERT_STREQ(d.load_state, "loaded");
        ASSERT_STREQ(d.active_state, "active");
        ASSERT_STREQ(d.sub_state, "running");
        ASSERT_STREQ(d.hash, "3750b300010203040506ff807f0a0b0c0d0e0f10");
        fl_reg_unit_state_done(&d);

        /* No machine: machineState null. */
        RegUnitState e = { .load_state = (char *) "x", .active_state = (char *) "y", .sub_state = (char *) "z" };
        _cleanup_free_ char *s2 = fl_reg_encode_unit_state(&e);
        ASSERT_STREQ(s2, "{\"loadState\":\"x\",\"activeState\":\"y\",\"subState\":\"z\",\"machineState\":null,\"unitHash\":\"\"}");
        RegUnitState f = {};
        ASSERT_OK(fl_reg_decode_unit_state(s2, &f));
        ASSERT_NULL(f.machine_id);
        ASSERT_STREQ(f.hash, "");
        fl_reg_unit_state_done(&f);

        /* Garbage. */
        RegUnitState g = {};
        ASSERT_ERR(fl_reg_decode_unit_state("{\"loadState\":1}", &g), -EBADMSG);
        ASSERT_ERR(fl_reg_decode_unit_state("{\"machineState\":\"abc\"}", &g), -EBADMSG);
        ASSERT_ERR(fl_reg_decode_unit_state("oops", &g), -EBADMSG);
        ASSERT_NULL(g.load_state);
        /* A bogus hash reads as none. */
        ASSERT_OK(fl_reg_decode_unit_state("{\"unitHash\":\"xyz\"}", &g));
        ASSERT_STREQ(g.hash, "");
        ASSERT_STREQ(g.load_state, "");
        fl_reg_unit_state_done(&g);
}

TEST(machine) {
        char *md[] = { (char *) "region", (char *) "us-west", (char *) "az", (char *) "b<1>",
                       (char *) "region", (char *) "eu" };
        RegMachine m = {
                .id = (char *) "abc",
                .public_ip = (char *) "10.0.0.1",
                .metadata = md,
                .n_metadata = 3,
                .version = (char *) "1.0.0",
                .disable_engine = true,
        };
        _cleanup_free_ char *s = fl_reg_encode_machine(&m);
        /* Keys sorted; a duplicate key: the later pair wins. */
        ASSERT_STREQ(s, "{\"ID\":\"abc\",\"PublicIP\":\"10.0.0.1\",\"Metadata\":{\"az\":\"b\\u003c1\\u003e\","
                        "\"region\":\"eu\"},\"Capabilities\":{\"DISABLE_ENGINE\":true,\"GRPC\":false},"
                        "\"Version\":\"1.0.0\"}");

        RegMachine d = {};
        ASSERT_OK(fl_reg_decode_machine(s, &d));
        ASSERT_STREQ(d.id, "abc");
        ASSERT_STREQ(d.public_ip, "10.0.0.1");
        ASSERT_STREQ(d.version, "1.0.0");
        ASSERT_EQ(d.n_metadata, 2);
        ASSERT_STREQ(fl_reg_machine_metadata(&d, "az"), "b<1>");
        ASSERT_STREQ(fl_reg_machine_metadata(&d, "region"), "eu");
        ASSERT_NULL(fl_reg_machine_metadata(&d, "zone"));
        ASSERT_TRUE(d.disable_engine);
        ASSERT_FALSE(d.grpc);
        fl_reg_machine_done(&d);

        /* No metadata: {} (fleet's map is never nil). */
        RegMachine e = { .id = (char *) "x" };
        _cleanup_free_ char *s2 = fl_reg_encode_machine(&e);
        ASSERT_STREQ(s2, "{\"ID\":\"x\",\"PublicIP\":\"\",\"Metadata\":{},\"Capabilities\":"
                         "{\"DISABLE_ENGINE\":false,\"GRPC\":false},\"Version\":\"\"}");

        /* What fleet v0.x wrote: no Capabilities, null Metadata. */
        RegMachine f = {};
        ASSERT_OK(fl_reg_decode_machine("{\"ID\":\"y\",\"PublicIP\":\"1.2.3.4\",\"Metadata\":null,\"Version\":\"0.11.8\"}", &f));
        ASSERT_STREQ(f.id, "y");
        ASSERT_EQ(f.n_metadata, 0);
        ASSERT_FALSE(f.disable_engine);
        fl_reg_machine_done(&f);

        ASSERT_ERR(fl_reg_decode_machine("{\"Metadata\":{\"a\":1}}", &f), -EBADMSG);
        ASSERT_ERR(fl_reg_decode_machine("{\"Capabilities\":{\"GRPC\":\"yes\"}}", &f), -EBADMSG);
        ASSERT_ERR(fl_reg_decode_machine("[1]", &f), -EBADMSG);
        ASSERT_NULL(f.id);
}

TEST(lease) {
        _cleanup_free_ char *s = fl_reg_encode_lease("x", 1);
        ASSERT_STREQ(s, "{\"MachineID\":\"x\",\"Version\":1}");

        static const struct {
                const char *in;
                const char *id;
                int version;
        } cases[] = {
                { "{\"MachineID\":\"x\",\"Version\":1}", "x", 1 },
                { "{\"machineid\":\"y\",\"version\":7}", "y", 7 },
                { "{\"MachineID\":\"z\"}", "z", 0 },
                /* Legacy: a bare machine ID, version 0. */
                { "c31e44e1f7f642bea3b54b7f6d0be1c5", "c31e44e1f7f642bea3b54b7f6d0be1c5", 0 },
                { "\"quoted\"", "\"quoted\"", 0 },
                { "{\"MachineID\":5}", "{\"MachineID\":5}", 0 },
                { "", "", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *id = NULL;
                int v = -1;
                ASSERT_OK(fl_reg_decode_lease(cases[i].in, &id, &v));
                if (!id || strcmp(id, cases[i].id) != 0 || v != cases[i].version)
                        FAIL_AT("case %zu: got %s/%d", i, id, v);
        }
}

TEST(snapshot_lookup_helpers) {
        RegUnit units[] = { { .name = (char *) "a.service" }, { .name = (char *) "b.service" },
                            { .name = (char *) "c.service" } };
        RegUnitState states[] = { { .name = (char *) "a.service", .machine_id = (char *) "m1" },
                                  { .name = (char *) "c.service", .machine_id = (char *) "m1" },
                                  { .name = (char *) "c.service", .machine_id = (char *) "m2" } };
        RegMachine machines[] = { { .id = (char *) "m1" }, { .id = (char *) "m2" } };
        RegSnapshot s = { .units = units, .n_units = 3, .states = states, .n_states = 3,
                          .machines = machines, .n_machines = 2 };
        ASSERT_TRUE(fl_reg_snapshot_find_unit(&s, "b.service") == &units[1]);
        ASSERT_NULL(fl_reg_snapshot_find_unit(&s, "d.service"));
        ASSERT_TRUE(fl_reg_snapshot_find_machine(&s, "m2") == &machines[1]);
        ASSERT_NULL(fl_reg_snapshot_find_machine(&s, "m3"));
        ASSERT_EQ(fl_reg_snapshot_find_states(&s, "c.service"), 1);
        ASSERT_EQ(fl_reg_snapshot_find_states(&s, "a.service"), 0);
        ASSERT_EQ(fl_reg_snapshot_find_states(&s, "b.service"), -1);
}

TEST_MAIN(T(job_state_strings), T(job_object), T(job_object_decode_lenient), T(string_escapes),
          T(unit_contents_roundtrip), T(unit_state), T(machine), T(lease), T(snapshot_lookup_helpers))
