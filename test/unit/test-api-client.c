/* SPDX-License-Identifier: MIT */
/* test-api-client.c: the fleet API client's pure parts: JSON decoding of the v1 entities
 * (trusting nothing), the PUT body, path escaping, fleet's googleapi error strings, endpoint
 * parsing messages. */
#include "api-client.h"
#include "tests.h"

TEST(decode_unit) {
        static const char json[] =
                "{\"currentState\":\"launched\",\"desiredState\":\"launched\",\"machineID\":\"m1\","
                "\"name\":\"hello.service\",\"options\":[{\"name\":\"ExecStart\",\"section\":\"Service\","
                "\"value\":\"/bin/true\"},{\"name\":\"Description\",\"section\":\"Unit\",\"value\":\"x\"}],"
                "\"unschedulableReason\":\"no machine\"}";
        ApiUnit u = {};

        ASSERT_OK(fl_api_decode_unit(json, strlen(json), &u));
        ASSERT_STREQ(u.name, "hello.service");
        ASSERT_STREQ(u.current_state, "launched");
        ASSERT_STREQ(u.machine_id, "m1");
        ASSERT_STREQ(u.unschedulable, "no machine");
        ASSERT_EQ(u.file->n_options, 2);
        ASSERT_STREQ(u.file->options[1].section, "Unit");
        fl_api_unit_done(&u);
}

TEST(decode_unit_rejects_bad_types) {
        static const char *const bad[] = {
                "[]",
                "{\"name\":5}",
                "{\"options\":[]}",                                  /* no name */
                "{\"name\":\"a.service\",\"options\":{}}",
                "{\"name\":\"a.service\",\"options\":[5]}",
                "{\"name\":\"a.service\",\"options\":[{\"name\":[]}]}",
                "{\"name\":\"a.service\",\"machineID\":true}",
                "{\"name\":\"a.service\"",
                "",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ApiUnit u = {};
                if (fl_api_decode_unit(bad[i], strlen(bad[i]), &u) != -EBADMSG)
                        FAIL_AT("accepted %s", bad[i]);
        }
}

TEST(decode_pages) {
        static const char p1[] = "{\"nextPageToken\":\"ZAACAA==\",\"units\":[{\"name\":\"a.service\"}]}";
        static const char p2[] = "{}";
        static const char s1[] = "{\"states\":[{\"hash\":\"abc\",\"machineID\":\"m\",\"name\":\"a.service\","
                                 "\"systemdActiveState\":\"active\",\"systemdLoadState\":\"loaded\","
                                 "\"systemdSubState\":\"running\"}]}";
        static const char m1[] = "{\"machines\":[{\"id\":\"m2\",\"metadata\":{\"z\":\"1\",\"a\":\"2\"},"
                                 "\"primaryIP\":\"10.0.0.2\"},{\"id\":\"m1\"}]}";
        ApiUnit *u = NULL;
        ApiUnitState *s = NULL;
        ApiMachine *m = NULL;
        size_t nu = 0, ns = 0, nm = 0;
        char *tok = NULL;

        ASSERT_OK(fl_api_decode_unit_page(p1, strlen(p1), &u, &nu, &tok));
        ASSERT_STREQ(tok, "ZAACAA==");
        free(tok);
        ASSERT_OK(fl_api_decode_unit_page(p2, strlen(p2), &u, &nu, &tok));
        ASSERT_NULL(tok);
        ASSERT_EQ(nu, 1);
        fl_api_units_free(u, nu);

        ASSERT_OK(fl_api_decode_state_page(s1, strlen(s1), &s, &ns, &tok));
        ASSERT_EQ(ns, 1);
        ASSERT_STREQ(s[0].active_state, "active");
        ASSERT_STREQ(s[0].sub_state, "running");
        fl_api_unit_states_free(s, ns);

        ASSERT_OK(fl_api_decode_machine_page(m1, strlen(m1), &m, &nm, &tok));
        ASSERT_EQ(nm, 2);
        ASSERT_EQ(m[0].n_metadata, 2);
        ASSERT_STREQ(m[0].metadata[0], "a"); /* sorted by key */
        ASSERT_STREQ(m[0].metadata[3], "1");
        ASSERT_STREQ(m[0].public_ip, "10.0.0.2");
        ASSERT_NULL(m[1].public_ip);
        fl_api_machines_free(m, nm);
}

TEST(decode_pages_reject) {
        static const char *const bad[] = {
                "{\"units\":{}}",
                "{\"units\":[{\"name\":\"a\"},3]}",
                "{\"nextPageToken\":7}",
        };
        static const char badm[] = "{\"machines\":[{\"id\":\"m\",\"metadata\":{\"k\":1}}]}";
        ApiMachine *m = NULL;
        size_t nm = 0;
        char *tok = NULL;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ApiUnit *u = NULL;
                size_t n = 0;
                if (fl_api_decode_unit_page(bad[i], strlen(bad[i]), &u, &n, &tok) != -EBADMSG)
                        FAIL_AT("accepted %s", bad[i]);
                fl_api_units_free(u, n);
        }
        ASSERT_ERR(fl_api_decode_machine_page(badm, strlen(badm), &m, &nm, &tok), -EBADMSG);
        fl_api_machines_free(m, nm);
}

TEST(encode_unit) {
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL;

        ASSERT_OK(fl_unit_file_new(&u));
        ASSERT_OK(fl_unit_file_add(u, "Service", "ExecStart", "/bin/echo \"hi\""));
        a = fl_api_encode_unit("a@1.service", NULL, u);
        b = fl_api_encode_unit("a@1.service", "launched", NULL);
        ASSERT_STREQ(a, "{\"name\":\"a@1.service\",\"options\":[{\"name\":\"ExecStart\",\"section\":\"Service\","
                        "\"value\":\"/bin/echo \\\"hi\\\"\"}]}");
        ASSERT_STREQ(b, "{\"desiredState\":\"launched\",\"name\":\"a@1.service\"}");
}

TEST(path_escape) {
        _cleanup_free_ char *a = fl_api_path_escape("foo@bar.service");
        _cleanup_free_ char *b = fl_api_path_escape("a b/../c?d");

        ASSERT_STREQ(a, "foo%40bar.service");
        ASSERT_STREQ(b, "a%20b%2F..%2Fc%3Fd");
}

TEST(error_messages) {
        static const char e1[] = "{\"error\":{\"code\":503,\"message\":\"fleet server unable to communicate with etcd\"}}";
        static const char e2[] = "{\"error\":{\"code\":500,\"message\":\"\"}}";
        static const char e3[] = "<html>\x01oops</html>";
        _cleanup_free_ char *a = fl_api_error_message(503, e1, strlen(e1));
        _cleanup_free_ char *b = fl_api_error_message(500, e2, strlen(e2));
        _cleanup_free_ char *c = fl_api_error_message(502, e3, strlen(e3));

        ASSERT_STREQ(a, "googleapi: Error 503: fleet server unable to communicate with etcd");
        ASSERT_STREQ(b, "googleapi: got HTTP response code 500 with body: {\"error\":{\"code\":500,\"message\":\"\"}}");
        ASSERT_STREQ(c, "googleapi: got HTTP response code 502 with body: <html> oops</html>");
}

TEST(endpoints) {
        static const struct {
                const char *ep;
                const char *error;
        } cases[] = {
                { "/var/run/fleet.sock", "URL scheme undefined" },
                { "unix://var/run/fleet.sock", "unable to connect to host \"var\" with scheme \"unix\"" },
                { "ftp://x", "unsupported protocol scheme \"ftp\"" },
                { "unix:///var/run/fleet.sock", NULL },
                { "file:///var/run/fleet.sock", NULL },
                { "http://127.0.0.1:49153", NULL },
                { "http://[::1]:49153/prefix/", NULL },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                ApiClientConfig cfg = { .endpoint = cases[i].ep };
                ApiClient *c = NULL;
                char *err = NULL;
                int r = fl_api_client_new(&cfg, &c, &err);

                if (cases[i].error) {
                        if (r >= 0 || !err || strcmp(err, cases[i].error) != 0)
                                FAIL_AT("%s: got %d '%s'", cases[i].ep, r, err ? err : "");
                } else if (r < 0)
                        FAIL_AT("%s: %d '%s'", cases[i].ep, r, err ? err : "");
                free(err);
                fl_api_client_free(c);
        }
}

TEST(connect_refused_message) {
        ApiClientConfig cfg = { .endpoint = "unix:///nonexistent/fleet.sock", .timeout_usec = 1000000 };
        _cleanup_(fl_api_client_freep) ApiClient *c = NULL;
        _cleanup_free_ char *err = NULL;
        ApiUnit *u = NULL;
        size_t n = 0;

        ASSERT_OK(fl_api_client_new(&cfg, &c, NULL));
        ASSERT_ERR(fl_api_list_units(c, &u, &n, &err), -ENOENT);
        ASSERT_STREQ(err, "Get http://domain-sock/fleet/v1/units?alt=json: dial unix /nonexistent/fleet.sock: "
                          "connect: no such file or directory");
}

TEST_MAIN(T(decode_unit), T(decode_unit_rejects_bad_types), T(decode_pages), T(decode_pages_reject), T(encode_unit),
          T(path_escape), T(error_messages), T(endpoints), T(connect_refused_message))
