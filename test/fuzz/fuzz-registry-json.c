/* SPDX-License-Identifier: MIT */
/* fuzz-registry-json: every value codec of the etcd registry (spec §4.1): job objects, unit
 * contents, unit states, machine objects, the engine lease. Values come from the cluster store,
 * so anything may be there. Each decoder gets the input; what decodes must re-encode to a
 * fixed point (encode(decode(encode(v))) == encode(v)) and decode to the same fields. */
#include "fuzz.h"
#include "registry.h"

/* Go's encoder writes an invalid UTF-8 byte as \ufffd, which decodes to a real U+FFFD that is
 * then written as is: a value reaches its fixed point after two rounds, not one. */
static void job_object(const char *in) {
        _cleanup_free_ char *name = NULL, *name2 = NULL, *name3 = NULL, *e1 = NULL, *e2 = NULL, *e3 = NULL;
        uint8_t hash[20], hash2[20], hash3[20];

        if (fl_reg_decode_job_object(in, &name, hash) < 0)
                return;
        e1 = fl_reg_encode_job_object(name, hash);
        FUZZ_CHECK(e1);
        FUZZ_CHECK(fl_reg_decode_job_object(e1, &name2, hash2) == 0);
        FUZZ_CHECK(memcmp(hash, hash2, 20) == 0);
        e2 = fl_reg_encode_job_object(name2, hash2);
        FUZZ_CHECK(e2);
        FUZZ_CHECK(fl_reg_decode_job_object(e2, &name3, hash3) == 0);
        e3 = fl_reg_encode_job_object(name3, hash3);
        FUZZ_CHECK_STREQ(e2, e3);
}

static void unit_contents(const char *in) {
        _cleanup_free_ char *raw = NULL, *raw2 = NULL, *raw3 = NULL, *e1 = NULL, *e2 = NULL, *e3 = NULL;

        if (fl_reg_decode_unit_contents(in, &raw) < 0)
                return;
        e1 = fl_reg_encode_unit_contents(raw);
        FUZZ_CHECK(e1);
        FUZZ_CHECK(fl_reg_decode_unit_contents(e1, &raw2) == 0);
        e2 = fl_reg_encode_unit_contents(raw2);
        FUZZ_CHECK(e2);
        FUZZ_CHECK(fl_reg_decode_unit_contents(e2, &raw3) == 0);
        FUZZ_CHECK_STREQ(raw2, raw3);
        e3 = fl_reg_encode_unit_contents(raw3);
        FUZZ_CHECK_STREQ(e2, e3);
}

static void unit_state(const char *in) {
        RegUnitState st = {}, st2 = {}, st3 = {};
        _cleanup_free_ char *e1 = NULL, *e2 = NULL, *e3 = NULL;

        st.name = strdup("keep.service"); /* the decoder keeps the caller's name */
        FUZZ_CHECK(st.name);
        if (fl_reg_decode_unit_state(in, &st) < 0) {
                FUZZ_CHECK_STREQ(st.name, "keep.service");
                fl_reg_unit_state_done(&st);
                return;
        }
        FUZZ_CHECK_STREQ(st.name, "keep.service");
        FUZZ_CHECK(st.load_state && st.active_state && st.sub_state);
        FUZZ_CHECK(st.hash[0] == 0 || (strlen(st.hash) == 40 && strspn(st.hash, "0123456789abcdef") == 40));
        FUZZ_CHECK(!st.machine_id || *st.machine_id);
        e1 = fl_reg_encode_unit_state(&st);
        FUZZ_CHECK(e1);
        FUZZ_CHECK(fl_reg_decode_unit_state(e1, &st2) == 0);
        FUZZ_CHECK(streq(st.hash, st2.hash));
        e2 = fl_reg_encode_unit_state(&st2);
        FUZZ_CHECK(e2);
        FUZZ_CHECK(fl_reg_decode_unit_state(e2, &st3) == 0);
        e3 = fl_reg_encode_unit_state(&st3);
        FUZZ_CHECK_STREQ(e2, e3);
        fl_reg_unit_state_done(&st3);
        fl_reg_unit_state_done(&st);
        fl_reg_unit_state_done(&st2);
}

static void machine(const char *in) {
        RegMachine m = {}, m2 = {}, m3 = {};
        _cleanup_free_ char *e1 = NULL, *e2 = NULL, *e3 = NULL;

        if (fl_reg_decode_machine(in, &m) < 0) {
                fl_reg_machine_done(&m);
                return;
        }
        FUZZ_CHECK(m.id && m.public_ip && m.version);
        for (size_t i = 0; i < m.n_metadata; i++) {
                FUZZ_CHECK(m.metadata[2 * i] && m.metadata[2 * i + 1]);
                if (i > 0)
                        FUZZ_CHECK(strcmp(m.metadata[2 * i - 2], m.metadata[2 * i]) < 0);
                FUZZ_CHECK(fl_reg_machine_metadata(&m, m.metadata[2 * i]) == m.metadata[2 * i + 1]);
        }
        e1 = fl_reg_encode_machine(&m);
        FUZZ_CHECK(e1);
        FUZZ_CHECK(fl_reg_decode_machine(e1, &m2) == 0);
        e2 = fl_reg_encode_machine(&m2);
        FUZZ_CHECK(e2);
        FUZZ_CHECK(fl_reg_decode_machine(e2, &m3) == 0);
        e3 = fl_reg_encode_machine(&m3);
        FUZZ_CHECK_STREQ(e2, e3);
        FUZZ_CHECK(m2.n_metadata == m3.n_metadata && m2.disable_engine == m3.disable_engine &&
                   m2.grpc == m3.grpc);
        fl_reg_machine_done(&m);
        fl_reg_machine_done(&m2);
        fl_reg_machine_done(&m3);
}

static void lease(const char *in) {
        _cleanup_free_ char *mid = NULL, *mid2 = NULL, *mid3 = NULL, *e1 = NULL, *e2 = NULL, *e3 = NULL;
        int version = -1, version2 = -1, version3 = -1;

        FUZZ_CHECK(fl_reg_decode_lease(NULL, NULL, NULL) == -EBADMSG);
        /* Never fails on content: garbage is a bare machine ID of version 0. */
        FUZZ_CHECK(fl_reg_decode_lease(in, &mid, &version) == 0);
        FUZZ_CHECK(mid);
        e1 = fl_reg_encode_lease(mid, version);
        FUZZ_CHECK(e1);
        FUZZ_CHECK(fl_reg_decode_lease(e1, &mid2, &version2) == 0);
        FUZZ_CHECK(version2 == version);
        e2 = fl_reg_encode_lease(mid2, version2);
        FUZZ_CHECK(e2);
        FUZZ_CHECK(fl_reg_decode_lease(e2, &mid3, &version3) == 0);
        FUZZ_CHECK(version3 == version);
        e3 = fl_reg_encode_lease(mid3, version3);
        FUZZ_CHECK_STREQ(e2, e3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *in = NULL;
        JobState s;

        if (size > 256 * 1024)
                return 0;
        in = fuzz_strndup(data, size);
        FUZZ_CHECK(in);

        job_object(in);
        unit_contents(in);
        unit_state(in);
        machine(in);
        lease(in);

        s = fl_job_state_from_string(in);
        if (s != _JOB_STATE_INVALID)
                FUZZ_CHECK_STREQ(fl_job_state_to_string(s), in);
        return 0;
}
