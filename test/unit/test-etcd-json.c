/* SPDX-License-Identifier: MIT */
/* test-etcd-json.c: etcd's success JSON into EtcdNode trees (lib/etcd-json.c): what etcd's Go
 * encoder writes, escapes, members we skip, and what must be refused. */
#include "buf.h"
#include "etcd-json.h"
#include "tests.h"

static int decode(const char *json, EtcdResponse **ret) {
        EtcdResponse *r = calloc(1, sizeof(EtcdResponse));
        int k;

        if (!r)
                return -ENOMEM;
        k = fl_etcd_json_decode_event(json, strlen(json), r);
        *ret = r;
        return k;
}

TEST(reply_and_event) {
        EtcdResponse *r = NULL;

        ASSERT_OK(decode("{\"action\":\"set\",\"node\":{\"key\":\"/a/b\",\"value\":\"v\",\"modifiedIndex\":7,"
                         "\"createdIndex\":5},\"prevNode\":{\"key\":\"/a/b\",\"value\":\"old\",\"modifiedIndex\":5,"
                         "\"createdIndex\":5}}\n", &r));
        ASSERT_STREQ(r->action, "set");
        ASSERT_STREQ(r->node->key, "/a/b");
        ASSERT_STREQ(r->node->value, "v");
        ASSERT_EQ(r->node->modified_index, 7);
        ASSERT_EQ(r->node->created_index, 5);
        ASSERT_STREQ(r->prev_node->value, "old");
        fl_etcd_response_free(r);

        /* a recursive GET: the root dir has no key; ttl, expiration; prevNode null */
        ASSERT_OK(decode(" { \"action\" : \"get\" , \"node\" : { \"dir\" : true , \"nodes\" : [ {\"key\":\"/m\","
                         "\"dir\":true,\"nodes\":[{\"key\":\"/m/x\",\"value\":\"1\",\"expiration\":"
                         "\"2026-11-26T18:00:00.5Z\",\"ttl\":-3,\"modifiedIndex\":9,\"createdIndex\":9}],"
                         "\"modifiedIndex\":8,\"createdIndex\":8}, {\"key\":\"/n\",\"value\":\"\"} ] },"
                         " \"prevNode\" : null } ", &r));
        ASSERT_NULL(r->node->key);
        ASSERT_TRUE(r->node->dir);
        ASSERT_EQ(r->node->n_nodes, 2);
        ASSERT_STREQ(r->node->nodes[0]->key, "/m");
        ASSERT_EQ(r->node->nodes[0]->n_nodes, 1);
        ASSERT_EQ(r->node->nodes[0]->nodes[0]->ttl, -3);
        ASSERT_STREQ(r->node->nodes[0]->nodes[0]->value, "1");
        ASSERT_STREQ(r->node->nodes[1]->value, "");
        ASSERT_NULL(r->prev_node);
        fl_etcd_response_free(r);

        /* a dir's value is dropped; members etcd may add are skipped, whatever they hold */
        ASSERT_OK(decode("{\"x\":[1,-2.5e+3,{\"y\":[true,false,null,\"s\\\"\"]}],\"action\":\"create\","
                         "\"node\":{\"key\":\"/d\",\"dir\":true,\"value\":\"z\",\"nodes\":null,\"q\":{}},"
                         "\"z\":{}}", &r));
        ASSERT_TRUE(r->node->dir);
        ASSERT_NULL(r->node->value);
        ASSERT_EQ(r->node->n_nodes, 0);
        fl_etcd_response_free(r);

        /* integers written as a double could hold them */
        ASSERT_OK(decode("{\"action\":\"get\",\"node\":{\"modifiedIndex\":1e3,\"createdIndex\":5.0,\"ttl\":-0}}", &r));
        ASSERT_EQ(r->node->modified_index, 1000);
        ASSERT_EQ(r->node->created_index, 5);
        fl_etcd_response_free(r);
        ASSERT_OK(decode("{\"action\":\"get\",\"node\":{\"modifiedIndex\":9007199254740992}}", &r));
        ASSERT_EQ(r->node->modified_index, 9007199254740992ULL);
        fl_etcd_response_free(r);
}

TEST(strings) {
        static const struct {
                const char *json, *value;
        } cases[] = {
                { "\"plain\"", "plain" },
                { "\"\"", "" },
                { "\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\"", "q\"b\\s/\b\f\n\r\t" },
                { "\"\\u003cscript\\u003e \\u0026\"", "<script> &" },
                { "\"\\u00e9\\u20ac\"", "\xc3\xa9\xe2\x82\xac" },
                { "\"\\ud83d\\ude00!\"", "\xf0\x9f\x98\x80!" },
                { "\"caf\xc3\xa9\"", "caf\xc3\xa9" },           /* UTF-8 as is */
                { "\"a\\u0000b\"", "a" },                       /* a C string ends there */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                EtcdResponse *r = NULL;
                char json[256];
                int k;

                snprintf(json, sizeof(json), "{\"action\":\"get\",\"node\":{\"key\":%s,\"value\":%s}}",
                         cases[i].json, cases[i].json);
                k = decode(json, &r);
                if (k < 0)
                        FAIL_AT("case %zu (%s): %d", i, cases[i].json, k);
                ASSERT_STREQ(r->node->key, cases[i].value);
                ASSERT_STREQ(r->node->value, cases[i].value);
                fl_etcd_response_free(r);
        }
}

TEST(refused) {
        static const char *const cases[] = {
                "",
                "   ",
                "[]",
                "null",
                "{}",
                "{\"action\":\"get\"}",                                        /* no node */
                "{\"node\":{}}",                                               /* no action */
                "{\"action\":\"get\",\"node\":null}",
                "{\"action\":5,\"node\":{}}",
                "{\"action\":null,\"node\":{}}",
                "{\"action\":\"get\",\"node\":{}} x",                          /* trailing garbage */
                "{\"action\":\"get\",\"node\":{}}{}",
                "{\"action\":\"get\",\"node\":{}",                             /* cut short */
                "{\"action\":\"get\",\"node\":{\"key\":\"/a",
                "{\"action\":\"get\",\"action\":\"set\",\"node\":{}}",         /* twice */
                "{\"action\":\"get\",\"node\":{\"key\":\"a\",\"key\":\"b\"}}",
                "{\"action\":\"get\",\"node\":{},\"node\":{}}",
                "{\"action\":\"get\",\"node\":{\"key\":5}}",                   /* types */
                "{\"action\":\"get\",\"node\":{\"value\":true}}",
                "{\"action\":\"get\",\"node\":{\"dir\":\"true\"}}",
                "{\"action\":\"get\",\"node\":{\"dir\":1}}",
                "{\"action\":\"get\",\"node\":{\"nodes\":{}}}",
                "{\"action\":\"get\",\"node\":{\"nodes\":[null]}}",
                "{\"action\":\"get\",\"node\":{\"nodes\":[1]}}",
                "{\"action\":\"get\",\"node\":{\"nodes\":[{},]}}",
                "{\"action\":\"get\",\"node\":{},\"prevNode\":5}",
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":\"5\"}}",     /* numbers */
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":-1}}",
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":1.5}}",
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":01}}",
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":1.}}",
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":1e}}",
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":+1}}",
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":9007199254740993}}",
                "{\"action\":\"get\",\"node\":{\"modifiedIndex\":1e400}}",
                "{\"action\":\"get\",\"node\":{\"ttl\":0.5}}",
                "{\"action\":\"get\",\"node\":{\"x\":01}}",                    /* skipped, still JSON */
                "{\"action\":\"get\",\"node\":{\"x\":tru}}",
                "{\"action\":\"get\",\"node\":{\"x\":[1,]}}",
                "{\"action\":\"get\",\"node\":{\"x\":{\"a\"}}}",
                "{\"action\":\"get\",\"node\":{\"x\":{1:2}}}",
                "{\"action\":\"get\",\"node\":{\"key\":\"a\tb\"}}",            /* strings */
                "{\"action\":\"get\",\"node\":{\"key\":\"a\\x\"}}",
                "{\"action\":\"get\",\"node\":{\"key\":\"\\u12\"}}",
                "{\"action\":\"get\",\"node\":{\"key\":\"\\u12G4\"}}",
                "{\"action\":\"get\",\"node\":{\"key\":\"\\ude00\"}}",
                "{\"action\":\"get\",\"node\":{\"key\":\"\\ud83d\"}}",
                "{\"action\":\"get\",\"node\":{\"key\":\"\\ud83d\\u0041\"}}",
                "{\"action\":\"get\",\"node\":{\"key\":\"\\",
                "{'action':'get','node':{}}",
                "{\"action\":\"get\",\"node\":{}\x0b}",                         /* not JSON white space */
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                EtcdResponse *r = NULL;
                int k = decode(cases[i], &r);

                fl_etcd_response_free(r);
                if (k != -EBADMSG)
                        FAIL_AT("case %zu (%s): %d, want -EBADMSG", i, cases[i], k);
        }
}

TEST(embedded_nul) {
        /* a NUL inside the body must not end it early, neither in a string nor after the value */
        static const char a[] = "{\"action\":\"get\",\"node\":{\"key\":\"/a\0b\"}}";
        static const char b[] = "{\"action\":\"get\",\"node\":{}}\0garbage";
        EtcdResponse *r = calloc(1, sizeof(*r));

        ASSERT_ERR(fl_etcd_json_decode_event(a, sizeof(a) - 1, r), -EBADMSG);
        fl_etcd_response_free(r);
        r = calloc(1, sizeof(*r));
        ASSERT_ERR(fl_etcd_json_decode_event(b, sizeof(b) - 1, r), -EBADMSG);
        fl_etcd_response_free(r);
}

TEST(depth) {
        /* nodes 64 deep below the top are fine, 65 are not; skipped values may nest 1,000 deep */
        for (unsigned levels = 64; levels <= 65; levels++) {
                char json[4096] = "{\"action\":\"get\",\"node\":{\"dir\":true";
                EtcdResponse *r = NULL;
                int k;

                for (unsigned i = 0; i < levels; i++)
                        strcat(json, ",\"nodes\":[{\"dir\":true");
                for (unsigned i = 0; i < levels; i++)
                        strcat(json, "}]");
                strcat(json, "}}");
                k = decode(json, &r);
                fl_etcd_response_free(r);
                if (levels == 64)
                        ASSERT_OK(k);
                else
                        ASSERT_ERR(k, -EBADMSG);
        }
        for (unsigned levels = 999; levels <= 1001; levels += 2) {
                static char json[8192];
                EtcdResponse *r = NULL;
                size_t n;
                int k;

                n = (size_t) snprintf(json, sizeof(json), "{\"action\":\"get\",\"node\":{},\"x\":");
                memset(json + n, '[', levels);
                memset(json + n + levels, ']', levels);
                strcpy(json + n + 2 * levels, "}");
                k = decode(json, &r);
                fl_etcd_response_free(r);
                if (levels <= 1000)
                        ASSERT_OK(k);
                else
                        ASSERT_ERR(k, -EBADMSG);
        }
}

TEST(many_children) {
        /* a directory of 10,000 children, as in a recursive GET of a big registry */
        Buf b = BUF_INIT;
        EtcdResponse *r = NULL;

        ASSERT_OK(fl_buf_puts(&b, "{\"action\":\"get\",\"node\":{\"key\":\"/j\",\"dir\":true,\"nodes\":["));
        for (unsigned i = 0; i < 10000; i++)
                ASSERT_OK(fl_buf_printf(&b, "%s{\"key\":\"/j/u%u\",\"value\":\"%u\",\"modifiedIndex\":%u,"
                                        "\"createdIndex\":%u}", i ? "," : "", i, i, i + 1, i + 1));
        ASSERT_OK(fl_buf_puts(&b, "]}}"));
        ASSERT_OK(fl_etcd_json_decode_event(b.data, b.len, r = calloc(1, sizeof(*r))));
        ASSERT_EQ(r->node->n_nodes, 10000);
        ASSERT_STREQ(r->node->nodes[9999]->key, "/j/u9999");
        ASSERT_EQ(r->node->nodes[9999]->modified_index, 10000);
        fl_etcd_response_free(r);
        fl_buf_done(&b);
}

TEST_MAIN(T(reply_and_event), T(strings), T(refused), T(embedded_nul), T(depth), T(many_children))
