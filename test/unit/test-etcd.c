/* SPDX-License-Identifier: MIT */
/* test-etcd.c: the etcd v2 client against real etcd ($FLEET_TEST_ETCD, plus TLS, auth and
 * 3-member clusters started here with test/lib/etcd.sh) and against test/helper/bad-http, a
 * server that misbehaves on request. Reply decoding is also tested offline. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "etcd.h"
#include "http.h"
#include "log.h"
#include "strv.h"
#include "tests.h"

#define USEC 1000000ULL

static char prefix[128];
static char top[PATH_MAX];      /* source tree, for test/lib/etcd.sh */
static char helper_dir[PATH_MAX];

/* ---- Environment ---- */

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC + (uint64_t) ts.tv_nsec / 1000;
}

static const char *state_dir(void) {
        return getenv("FLEET_TEST_STATE") ?: "/tmp/fleet-test";
}

static void find_paths(void) {
        char exe[PATH_MAX];
        ssize_t l = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

        if (l > 0) {
                exe[l] = 0;
                snprintf(helper_dir, sizeof(helper_dir), "%s", dirname(exe));
        }
        /* test/run.sh runs us from the top of the tree; else guess from the build dir (which
         * lives in the tree: <top>/<build>/test/test-etcd). */
        if (access("test/lib/etcd.sh", X_OK) == 0 && getcwd(top, sizeof(top)))
                return;
        if (helper_dir[0]) {
                char t[PATH_MAX * 2];
                snprintf(t, sizeof(t), "%s/../../test/lib/etcd.sh", helper_dir);
                if (access(t, X_OK) == 0) {
                        snprintf(t, sizeof(t), "%s/../..", helper_dir);
                        if (realpath(t, top))
                                return;
                }
        }
        top[0] = 0;
}

static const char *shared_etcd(void) {
        const char *e = getenv("FLEET_TEST_ETCD");
        return isempty(e) ? NULL : e;
}

/* Clusters started by this process, stopped at exit whatever happens. */
static char *clusters[8];

static void cluster_stop(const char *name) {
        char cmd[PATH_MAX + 256];

        snprintf(cmd, sizeof(cmd), "'%s/test/lib/etcd.sh' stop '%s' >/dev/null 2>&1", top, name);
        (void) system(cmd);
        for (size_t i = 0; i < ELEMENTSOF(clusters); i++)
                if (clusters[i] && streq(clusters[i], name))
                        clusters[i] = mfree(clusters[i]);
}

static void stop_all_clusters(void) {
        for (size_t i = 0; i < ELEMENTSOF(clusters); i++)
                if (clusters[i]) {
                        char *n = clusters[i];
                        cluster_stop(n);
                }
}

static void on_signal(int sig) {
        /* Timed out by the runner: still stop what we started. */
        exit(128 + sig);
}

/* Starts etcd.sh start NAME MEMBERS [tls]; returns the endpoint list (owned) or NULL. */
static char *cluster_start(const char *name, int members, bool tls) {
        char cmd[PATH_MAX + 256], line[4096] = "";
        FILE *f;
        int st;

        if (!top[0])
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(clusters); i++)
                if (!clusters[i]) {
                        clusters[i] = strdup(name);
                        break;
                }
        snprintf(cmd, sizeof(cmd), "'%s/test/lib/etcd.sh' start '%s' %d %s", top, name, members, tls ? "tls" : "");
        f = popen(cmd, "r");
        if (!f)
                return NULL;
        if (!fgets(line, sizeof(line), f))
                line[0] = 0;
        st = pclose(f);
        line[strcspn(line, "\n")] = 0;
        if (st != 0 || !line[0]) {
                fprintf(stderr, "etcd.sh start %s failed (%d)\n", name, st);
                return NULL;
        }
        return strdup(line);
}

static int cluster_leader(const char *name) {
        char cmd[PATH_MAX + 256], line[64] = "";
        FILE *f;

        snprintf(cmd, sizeof(cmd), "'%s/test/lib/etcd.sh' leader '%s'", top, name);
        f = popen(cmd, "r");
        if (!f)
                return -1;
        if (!fgets(line, sizeof(line), f))
                line[0] = 0;
        pclose(f);
        return line[0] ? atoi(line) : -1;
}

static void cluster_kill(const char *name, int member) {
        char cmd[PATH_MAX + 256];
        snprintf(cmd, sizeof(cmd), "'%s/test/lib/etcd.sh' kill-member '%s' %d", top, name, member);
        (void) system(cmd);
}

/* ---- Helpers ---- */

static const char *key(const char *suffix) {
        static char ring[16][512];
        static unsigned n;
        char *k = ring[n++ % ELEMENTSOF(ring)];
        snprintf(k, sizeof(ring[0]), "%s/%s", prefix, suffix);
        return k;
}

typedef struct ClientOpts {
        uint64_t timeout_usec;
        const char *ca, *cert, *keyf;
        bool insecure;
        const char *user, *password;
        size_t max_body;
        uint64_t pool_idle_usec;
} ClientOpts;

static int client_new(const char *endpoints, sd_event *e, const ClientOpts *o, EtcdClient **ret) {
        _cleanup_strv_free_ char **l = NULL;
        ClientOpts none = {};
        int r;

        o = o ?: &none;
        r = fl_strv_split(endpoints, ",", &l);
        if (r < 0)
                return r;
        EtcdConfig cfg = {
                .endpoints = l,
                .ca_file = o->ca,
                .cert_file = o->cert,
                .key_file = o->keyf,
                .username = o->user,
                .password = o->password,
                .request_timeout_usec = o->timeout_usec ?: 3 * USEC,
                .insecure_skip_verify = o->insecure,
                .max_body_bytes = o->max_body,
                .pool_idle_usec = o->pool_idle_usec,
        };
        return fl_etcd_client_new(&cfg, e, ret);
}

static int set(EtcdClient *c, const char *k, const char *v) {
        EtcdRequest req = { .method = ETCD_SET, .key = k, .value = v };
        return fl_etcd_call(c, &req, NULL);
}

static int get(EtcdClient *c, const char *k, EtcdResponse **ret) {
        EtcdRequest req = { .method = ETCD_GET, .key = k };
        return fl_etcd_call(c, &req, ret);
}

/* ---- Offline: reply decoding ---- */

typedef struct DecodeCase {
        const char *name;
        int status;
        const char *headers;    /* extra header lines, each ending in \r\n */
        const char *body;
        bool watch;
        int want;
        bool want_resp;
} DecodeCase;

static const DecodeCase decode_cases[] = {
        { "get", 200, "X-Etcd-Index: 12\r\nX-Raft-Index: 30\r\n",
          "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"value\":\"1\",\"modifiedIndex\":12,\"createdIndex\":3}}", false,
          0, true },
        { "root-dir-without-key", 200, "", "{\"action\":\"get\",\"node\":{\"dir\":true,\"nodes\":[]}}", false, 0, true },
        { "null-members", 200, "", "{\"action\":\"get\",\"node\":{\"key\":null,\"nodes\":null},\"prevNode\":null}", false,
          0, true },
        { "unknown-members", 200, "", "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"expiration\":\"x\",\"new\":[1]},\"x\":1}",
          false, 0, true },
        { "negative-ttl", 200, "", "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"ttl\":-1}}", false, 0, true },
        { "empty-body", 200, "", "", false, -EBADMSG, false },
        { "empty-watch", 200, "X-Etcd-Index: 5\r\n", "", true, -EAGAIN, true },
        { "not-json", 200, "", "nope", false, -EBADMSG, false },
        { "trailing-garbage", 200, "", "{\"action\":\"get\",\"node\":{}} x", false, -EBADMSG, false },
        { "two-values", 200, "", "{\"action\":\"get\",\"node\":{}}{}", false, -EBADMSG, false },
        { "array", 200, "", "[]", false, -EBADMSG, false },
        { "no-action", 200, "", "{\"node\":{}}", false, -EBADMSG, false },
        { "action-number", 200, "", "{\"action\":1,\"node\":{}}", false, -EBADMSG, false },
        { "no-node", 200, "", "{\"action\":\"get\"}", false, -EBADMSG, false },
        { "node-string", 200, "", "{\"action\":\"get\",\"node\":\"x\"}", false, -EBADMSG, false },
        { "key-number", 200, "", "{\"action\":\"get\",\"node\":{\"key\":1}}", false, -EBADMSG, false },
        { "value-object", 200, "", "{\"action\":\"get\",\"node\":{\"value\":{}}}", false, -EBADMSG, false },
        { "dir-string", 200, "", "{\"action\":\"get\",\"node\":{\"dir\":\"true\"}}", false, -EBADMSG, false },
        { "index-negative", 200, "", "{\"action\":\"get\",\"node\":{\"modifiedIndex\":-1}}", false, -EBADMSG, false },
        { "index-fraction", 200, "", "{\"action\":\"get\",\"node\":{\"modifiedIndex\":1.5}}", false, -EBADMSG, false },
        { "index-huge", 200, "", "{\"action\":\"get\",\"node\":{\"createdIndex\":1e300}}", false, -EBADMSG, false },
        { "index-string", 200, "", "{\"action\":\"get\",\"node\":{\"createdIndex\":\"1\"}}", false, -EBADMSG, false },
        { "ttl-huge", 200, "", "{\"action\":\"get\",\"node\":{\"ttl\":1e19}}", false, -EBADMSG, false },
        { "nodes-object", 200, "", "{\"action\":\"get\",\"node\":{\"nodes\":{}}}", false, -EBADMSG, false },
        { "nodes-of-strings", 200, "", "{\"action\":\"get\",\"node\":{\"nodes\":[\"a\"]}}", false, -EBADMSG, false },
        { "prevnode-array", 200, "", "{\"action\":\"set\",\"node\":{},\"prevNode\":[]}", false, -EBADMSG, false },
        { "nul-in-body", 200, "", "{\"action\":\"get\",\"node\":{}}\\0", false, 0, true },
        { "bad-index-header", 200, "X-Etcd-Index: 12x\r\n", "{\"action\":\"get\",\"node\":{}}", false, -EBADMSG, false },
        { "index-header-overflow", 200, "X-Etcd-Index: 99999999999999999999999\r\n", "{\"action\":\"get\",\"node\":{}}",
          false, -EBADMSG, false },
        { "error-100", 404, "X-Etcd-Index: 9\r\n", "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/a\",\"index\":9}",
          false, -ENOENT, true },
        { "error-101", 412, "", "{\"errorCode\":101,\"message\":\"Compare failed\",\"index\":9}", false, -ESTALE, true },
        { "error-102", 403, "", "{\"errorCode\":102}", false, -EISDIR, true },
        { "error-104", 400, "", "{\"errorCode\":104}", false, -ENOTDIR, true },
        { "error-105", 412, "", "{\"errorCode\":105}", false, -EEXIST, true },
        { "error-108", 403, "", "{\"errorCode\":108}", false, -ENOTEMPTY, true },
        { "error-209", 400, "", "{\"errorCode\":209}", false, -EINVAL, true },
        { "error-300", 500, "", "{\"errorCode\":300}", false, -EAGAIN, true },
        { "error-301", 500, "", "{\"errorCode\":301}", false, -EAGAIN, true },
        { "error-401", 400, "X-Etcd-Index: 2000\r\n", "{\"errorCode\":401,\"index\":2000}", false, -ERANGE, true },
        { "error-unknown", 400, "", "{\"errorCode\":999}", false, -EPROTO, true },
        { "error-code-string", 400, "", "{\"errorCode\":\"100\"}", false, -EBADMSG, false },
        { "error-code-huge", 400, "", "{\"errorCode\":1e30}", false, -EBADMSG, false },
        { "error-message-number", 404, "", "{\"errorCode\":100,\"message\":5}", false, -EBADMSG, false },
        { "auth-401", 401, "", "{\"message\":\"Insufficient credentials\"}", false, -EACCES, true },
        { "plain-404", 404, "", "404 page not found\n", false, -EPROTO, true },
        { "plain-503", 503, "", "", false, -EAGAIN, true },
        { "redirect", 307, "Location: http://x/\r\n", "", false, -EPROTO, true },
};

TEST(decode_table) {
        int bad = 0;

        for (size_t i = 0; i < ELEMENTSOF(decode_cases); i++) {
                const DecodeCase *c = &decode_cases[i];
                char raw[4096];
                HttpResponseParser p;
                size_t consumed, blen = strlen(c->body);
                EtcdResponse *resp = NULL;
                int r;

                /* "\\0" in a body stands for an embedded NUL byte. */
                char body[1024];
                snprintf(body, sizeof(body), "%s", c->body);
                char *z = strstr(body, "\\0");
                if (z) {
                        z[0] = 0;
                        blen = (size_t) (z - body) + 1;
                }
                int hl = snprintf(raw, sizeof(raw), "HTTP/1.1 %d X\r\n%sContent-Length: %zu\r\n\r\n", c->status,
                                  c->headers, blen);
                memcpy(raw + hl, body, blen);
                fl_http_response_parser_init(&p, 0, 0, false);
                ASSERT_EQ(fl_http_response_parser_feed(&p, raw, (size_t) hl + blen, &consumed), 1);
                _cleanup_(fl_http_response_freep) HttpResponse *h = fl_http_response_parser_take(&p);
                fl_http_response_parser_done(&p);

                r = fl_etcd_response_decode(h, c->watch, &resp);
                /* An embedded NUL is malformed. */
                int want = z ? -EBADMSG : c->want;
                bool want_resp = z ? false : c->want_resp;
                if (r != want || !!resp != want_resp) {
                        fprintf(stderr, "decode case %s: r=%d (%s) want %d, resp=%p\n", c->name, r, strerror(-r), want,
                                (void *) resp);
                        bad++;
                }
                fl_etcd_response_free(resp);
        }
        ASSERT_EQ(bad, 0);
}

TEST(decode_fields) {
        static const char json[] =
                "{\"action\":\"compareAndSwap\",\"node\":{\"key\":\"/d\",\"dir\":true,\"value\":\"ignored\",\"ttl\":5,"
                "\"nodes\":[{\"key\":\"/d/a\",\"value\":\"x\",\"modifiedIndex\":7,\"createdIndex\":6}]},"
                "\"prevNode\":{\"key\":\"/d\",\"dir\":true}}   ";
        char raw[1024];
        HttpResponseParser p;
        size_t consumed;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *resp = NULL;
        int n = snprintf(raw, sizeof(raw),
                         "HTTP/1.1 201 Created\r\nX-Etcd-Index: 12\r\nX-Raft-Index: 30\r\nTransfer-Encoding: chunked\r\n"
                         "\r\n%zx\r\n%s\r\n0\r\n\r\n",
                         sizeof(json) - 1, json);

        fl_http_response_parser_init(&p, 0, 0, false);
        ASSERT_EQ(fl_http_response_parser_feed(&p, raw, (size_t) n, &consumed), 1);
        _cleanup_(fl_http_response_freep) HttpResponse *h = fl_http_response_parser_take(&p);
        fl_http_response_parser_done(&p);
        ASSERT_OK(fl_etcd_response_decode(h, false, &resp));
        ASSERT_EQ(resp->http_status, 201);
        ASSERT_EQ(resp->etcd_index, 12);
        ASSERT_EQ(resp->raft_index, 30);
        ASSERT_STREQ(resp->action, "compareAndSwap");
        ASSERT_STREQ(resp->node->key, "/d");
        ASSERT_TRUE(resp->node->dir);
        ASSERT_NULL(resp->node->value);
        ASSERT_EQ(resp->node->ttl, 5);
        ASSERT_EQ(resp->node->n_nodes, 1);
        ASSERT_STREQ(resp->node->nodes[0]->value, "x");
        ASSERT_EQ(resp->node->nodes[0]->modified_index, 7);
        ASSERT_EQ(resp->node->nodes[0]->created_index, 6);
        ASSERT_NOT_NULL(resp->prev_node);

        /* Stealing leaves an empty shell behind. */
        _cleanup_(fl_etcd_response_freep) EtcdResponse *mine = fl_etcd_response_steal(resp);
        ASSERT_STREQ(mine->action, "compareAndSwap");
        ASSERT_NULL(resp->node);
        ASSERT_NULL(resp->action);
}

TEST(error_mapping) {
        ASSERT_EQ(fl_etcd_error_to_errno(100), -ENOENT);
        ASSERT_EQ(fl_etcd_error_to_errno(101), -ESTALE);
        ASSERT_EQ(fl_etcd_error_to_errno(102), -EISDIR);
        ASSERT_EQ(fl_etcd_error_to_errno(104), -ENOTDIR);
        ASSERT_EQ(fl_etcd_error_to_errno(105), -EEXIST);
        ASSERT_EQ(fl_etcd_error_to_errno(108), -ENOTEMPTY);
        ASSERT_EQ(fl_etcd_error_to_errno(300), -EAGAIN);
        ASSERT_EQ(fl_etcd_error_to_errno(301), -EAGAIN);
        ASSERT_EQ(fl_etcd_error_to_errno(401), -ERANGE);
        ASSERT_EQ(fl_etcd_error_to_errno(106), -EPROTO);
}

static void on_never(EtcdClient *c, int r, EtcdResponse *resp, void *userdata) {
        abort();
}

TEST(bad_config) {
        static const char *const bad[] = {
                "", "127.0.0.1:2379", "ftp://127.0.0.1", "http://", "http://:2379", "http://h:port",
                "http://h:123456", "http://u:p@h:1", "http://h:1?x=1", "http://[::1:1", "http://h:1/a b",
        };
        EtcdClient *c = NULL;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = client_new(bad[i], NULL, NULL, &c);
                if (r != -EINVAL)
                        FAIL_AT("endpoint \"%s\": %d, want -EINVAL", bad[i], r);
        }
        ASSERT_OK(client_new("http://[::1]:2379,https://localhost,http://h:1/base/", NULL,
                             &(ClientOpts) { .insecure = true }, &c));
        fl_etcd_client_free(c);
        /* A key file without a certificate, or a CA file that does not exist. */
        ASSERT_ERR(client_new("https://h:1", NULL, &(ClientOpts) { .keyf = "/nonexistent" }, &c), -EINVAL);
        ASSERT_ERR(client_new("https://h:1", NULL, &(ClientOpts) { .ca = "/nonexistent" }, &c), -ENOENT);
        /* Requests need a key; async needs a loop. */
        ASSERT_OK(client_new("http://127.0.0.1:1", NULL, NULL, &c));
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_GET }, NULL), -EINVAL);
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = "/a", .refresh = true }, NULL),
                   -EINVAL);
        ASSERT_ERR(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_GET, .key = "/a" }, on_never, NULL, NULL),
                   -ENOTCONN);
        fl_etcd_client_free(c);
}

/* ---- Real etcd: basics ---- */

TEST(get_set_delete) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r1 = NULL, *r2 = NULL, *r3 = NULL, *r4 = NULL;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(client_new(shared_etcd(), NULL, NULL, &c));

        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("a"), .value = "one" }, &r1));
        ASSERT_STREQ(r1->action, "set");
        ASSERT_STREQ(r1->node->key, key("a"));
        ASSERT_STREQ(r1->node->value, "one");
        ASSERT_TRUE(r1->node->modified_index > 0);
        ASSERT_TRUE(r1->etcd_index >= r1->node->modified_index);
        ASSERT_TRUE(r1->raft_index > 0);
        ASSERT_EQ(fl_etcd_client_last_index(c), r1->etcd_index);

        ASSERT_OK(get(c, key("a"), &r2));
        ASSERT_STREQ(r2->action, "get");
        ASSERT_STREQ(r2->node->value, "one");
        ASSERT_EQ(r2->node->modified_index, r1->node->modified_index);
        ASSERT_EQ(r2->node->ttl, 0);

        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("a") }, &r3));
        ASSERT_STREQ(r3->action, "delete");
        ASSERT_STREQ(r3->prev_node->value, "one");

        ASSERT_ERR(get(c, key("a"), &r4), -ENOENT);
        ASSERT_NOT_NULL(r4);
        ASSERT_EQ(r4->error_code, 100);
        ASSERT_EQ(r4->http_status, 404);
        ASSERT_STREQ(r4->error_message, "Key not found");
        ASSERT_STREQ(r4->error_cause, key("a"));
        ASSERT_TRUE(r4->error_index >= r3->node->modified_index);
        ASSERT_TRUE(r4->etcd_index >= r3->node->modified_index);

        /* Empty values survive. */
        ASSERT_OK(set(c, key("empty"), ""));
        r4 = fl_etcd_response_free(r4);
        ASSERT_OK(get(c, key("empty"), &r4));
        ASSERT_STREQ(r4->node->value, "");

        /* Keep-alive: all of this went over one connection (counted as requests). */
        uint64_t req, in, out;
        fl_etcd_client_stats(c, &req, &in, &out);
        ASSERT_EQ(req, 6);
        ASSERT_TRUE(in > 0 && out > 0);
}

TEST(escaping) {
        static const char *const names[] = {
                "foo@bar.service", "a\\x2db@1.service", "x:y", "sp ace", "per%cent", "plus+amp&eq=",
                "q?hash#", "utf8-\xc3\xa9", "semi;colon",
        };
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(client_new(shared_etcd(), NULL, NULL, &c));
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL;
                char k[256], v[256];
                snprintf(k, sizeof(k), "esc/%s/object", names[i]);
                snprintf(v, sizeof(v), "v=%s&x=1+2 %%\n\"{}\"", names[i]);
                ASSERT_OK(set(c, key(k), v));
                ASSERT_OK(get(c, key(k), &r));
                ASSERT_STREQ(r->node->key, key(k));
                ASSERT_STREQ(r->node->value, v);
        }
        _cleanup_(fl_etcd_response_freep) EtcdResponse *all = NULL;
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("esc"), .recursive = true }, &all));
        ASSERT_EQ(all->node->n_nodes, ELEMENTSOF(names));
}

TEST(recursive_sorted) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL, *flat = NULL;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(client_new(shared_etcd(), NULL, NULL, &c));
        ASSERT_OK(set(c, key("tree/b"), "2"));
        ASSERT_OK(set(c, key("tree/a"), "1"));
        ASSERT_OK(set(c, key("tree/c/d"), "3"));
        ASSERT_OK(set(c, key("tree/c/e"), "4"));

        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("tree"), .recursive = true,
                                                   .sorted = true, .quorum = true },
                               &r));
        ASSERT_TRUE(r->node->dir);
        ASSERT_EQ(r->node->n_nodes, 3);
        ASSERT_STREQ(r->node->nodes[0]->key, key("tree/a"));
        ASSERT_STREQ(r->node->nodes[1]->key, key("tree/b"));
        ASSERT_STREQ(r->node->nodes[2]->key, key("tree/c"));
        ASSERT_TRUE(r->node->nodes[2]->dir);
        ASSERT_NULL(r->node->nodes[2]->value);
        ASSERT_EQ(r->node->nodes[2]->n_nodes, 2);
        ASSERT_STREQ(r->node->nodes[2]->nodes[0]->value, "3");
        ASSERT_STREQ(r->node->nodes[2]->nodes[1]->value, "4");

        /* Not recursive: the subdirectory comes without its children. */
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("tree"), .sorted = true }, &flat));
        ASSERT_EQ(flat->node->n_nodes, 3);
        ASSERT_EQ(flat->node->nodes[2]->n_nodes, 0);

        /* Directory semantics. */
        ASSERT_ERR(set(c, key("tree/c"), "x"), -EISDIR);
        ASSERT_ERR(set(c, key("tree/a/sub"), "x"), -ENOTDIR);
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("tree/c"), .dir = true }, NULL),
                   -ENOTEMPTY);
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("tree/emptydir"), .dir = true }, NULL));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("tree/emptydir"), .dir = true },
                               NULL));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("tree"), .recursive = true }, NULL));
        ASSERT_ERR(get(c, key("tree/c/d"), NULL), -ENOENT);
}

TEST(ttl_and_refresh) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(client_new(shared_etcd(), NULL, NULL, &c));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("ttl"), .value = "v", .ttl_sec = 2 },
                               &r));
        ASSERT_TRUE(r->node->ttl > 0 && r->node->ttl <= 2);

        /* Refreshing keeps it alive well past its TTL, without changing its value. */
        for (int i = 0; i < 6; i++) {
                _cleanup_(fl_etcd_response_freep) EtcdResponse *x = NULL;
                usleep(500000);
                ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("ttl"), .ttl_sec = 2,
                                                           .refresh = true },
                                       &x));
                ASSERT_STREQ(x->node->value, "v");
        }
        ASSERT_OK(get(c, key("ttl"), NULL));
        /* Refreshing a missing key fails: refresh implies prevExist. */
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("ttl-none"), .ttl_sec = 2,
                                                    .refresh = true },
                                NULL),
                   -ENOENT);

        /* Left alone, it expires. */
        uint64_t deadline = now_usec() + 6 * USEC;
        int k;
        while ((k = get(c, key("ttl"), NULL)) == 0 && now_usec() < deadline)
                usleep(200000);
        ASSERT_ERR(k, -ENOENT);
}

TEST(conditions) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL, *e = NULL, *cas = NULL, *cad = NULL;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(client_new(shared_etcd(), NULL, NULL, &c));

        /* prevExist=false: create only. */
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("cond"), .value = "1",
                                                   .prev_exist = ETCD_PREV_NOT_EXIST },
                               &r));
        ASSERT_STREQ(r->action, "create");
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("cond"), .value = "2",
                                                    .prev_exist = ETCD_PREV_NOT_EXIST },
                                &e),
                   -EEXIST);
        ASSERT_EQ(e->error_code, 105);
        ASSERT_TRUE(e->error_index >= r->node->modified_index);

        /* prevExist=true: update only. */
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("cond-missing"), .value = "1",
                                                    .prev_exist = ETCD_PREV_EXIST },
                                NULL),
                   -ENOENT);
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("cond"), .value = "2",
                                                   .prev_exist = ETCD_PREV_EXIST },
                               NULL));

        /* prevIndex / prevValue. */
        ASSERT_OK(get(c, key("cond"), &cas));
        uint64_t idx = cas->node->modified_index;
        cas = fl_etcd_response_free(cas);
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("cond"), .value = "3",
                                                    .prev_index = idx + 1000 },
                                NULL),
                   -ESTALE);
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("cond"), .value = "3",
                                                    .prev_value = "nope" },
                                NULL),
                   -ESTALE);
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("cond"), .value = "3",
                                                   .prev_index = idx, .ttl_sec = 60 },
                               &cas));
        ASSERT_STREQ(cas->action, "compareAndSwap");
        ASSERT_TRUE(cas->node->ttl > 0);
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("cond"), .value = "4 & 5",
                                                   .prev_value = "3" },
                               NULL));
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("cond"), .prev_value = "4" },
                                NULL),
                   -ESTALE);
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("cond"), .prev_index = 1 }, NULL),
                   -ESTALE);
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("cond"), .prev_value = "4 & 5" },
                               &cad));
        ASSERT_STREQ(cad->action, "compareAndDelete");
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("cond"), .prev_value = "x" }, NULL),
                   -ENOENT);
}

TEST(create_in_order) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *a = NULL, *b = NULL, *l = NULL;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(client_new(shared_etcd(), NULL, NULL, &c));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_CREATE_INORDER, .key = key("queue"), .value = "first" },
                               &a));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_CREATE_INORDER, .key = key("queue"), .value = "second",
                                                   .ttl_sec = 100 },
                               &b));
        ASSERT_STREQ(a->action, "create");
        ASSERT_EQ(a->http_status, 201);
        ASSERT_TRUE(startswith(a->node->key, key("queue/")) != NULL);
        ASSERT_TRUE(strcmp(a->node->key, b->node->key) < 0);
        ASSERT_TRUE(b->node->ttl > 0);
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("queue"), .recursive = true,
                                                   .sorted = true },
                               &l));
        ASSERT_EQ(l->node->n_nodes, 2);
        ASSERT_STREQ(l->node->nodes[0]->value, "first");
        ASSERT_STREQ(l->node->nodes[1]->value, "second");
}

/* ---- Watches ---- */

typedef struct Waiter {
        sd_event *event;
        EtcdClient *client;
        int calls;
        int r;
        EtcdResponse *resp;
        const char *set_key, *set_value;        /* for on_set_timer */
} Waiter;

static void on_done(EtcdClient *c, int r, EtcdResponse *resp, void *userdata) {
        Waiter *w = userdata;

        w->calls++;
        w->r = r;
        fl_etcd_response_free(w->resp);
        w->resp = fl_etcd_response_steal(resp);
}

static int on_set_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Waiter *w = userdata;
        /* A blocking call from inside the loop of the async client: its own private loop. */
        (void) set(w->client, w->set_key, w->set_value);
        return 0;
}

/* Runs the loop until w->calls reaches want: 0, or -ETIMEDOUT after max_usec. (sd_event_exit
 * would finish the loop for good, and the tests reuse theirs.) */
static int run_until(Waiter *w, int want, uint64_t max_usec) {
        uint64_t deadline = now_usec() + max_usec;

        while (w->calls < want) {
                uint64_t n = now_usec();
                int r;
                if (n >= deadline)
                        return -ETIMEDOUT;
                r = sd_event_run(w->event, deadline - n);
                if (r < 0)
                        return r;
        }
        return 0;
}

TEST(watch_async) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r0 = NULL;
        _cleanup_(sd_event_source_disable_unrefp) sd_event_source *t = NULL;
        Waiter w = {};
        EtcdCall *call = NULL;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        w = (Waiter) { .event = e, .client = c, .set_key = key("watch/x"), .set_value = "changed" };

        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("watch/x"), .value = "before" }, &r0));

        /* From now: the watch waits (beyond the 3 s request timeout: no timeout for watches)
         * until the timer changes the key. */
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("watch"), .recursive = true,
                                                         .wait_index = r0->etcd_index + 1 },
                                     on_done, &w, &call));
        ASSERT_EQ(w.calls, 0);
        ASSERT_OK(sd_event_add_time_relative(e, &t, CLOCK_MONOTONIC, 3500000, 0, on_set_timer, &w));
        uint64_t start = now_usec();
        ASSERT_OK(run_until(&w, 1, 15 * USEC));
        ASSERT_TRUE(now_usec() - start >= 3400000);
        ASSERT_EQ(w.calls, 1);
        ASSERT_OK(w.r);
        ASSERT_STREQ(w.resp->action, "set");
        ASSERT_STREQ(w.resp->node->key, key("watch/x"));
        ASSERT_STREQ(w.resp->node->value, "changed");
        ASSERT_STREQ(w.resp->prev_node->value, "before");
        ASSERT_TRUE(w.resp->node->modified_index > r0->etcd_index);

        /* From a past index: the event is already there. */
        w.resp = fl_etcd_response_free(w.resp);
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("watch/x"),
                                                         .wait_index = r0->node->modified_index },
                                     on_done, &w, NULL));
        ASSERT_OK(run_until(&w, 2, 5 * USEC));
        ASSERT_EQ(w.calls, 2);
        ASSERT_OK(w.r);
        ASSERT_STREQ(w.resp->node->value, "before");
        fl_etcd_response_free(w.resp);
}

TEST(watch_blocking) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r0 = NULL, *r1 = NULL, *del = NULL;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(client_new(shared_etcd(), NULL, &(ClientOpts) { .timeout_usec = 1 * USEC }, &c));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("bw/a"), .value = "1" }, &r0));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("bw/a") }, &del));

        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("bw"), .recursive = true,
                                                   .wait_index = r0->node->modified_index + 1 },
                               &r1));
        ASSERT_STREQ(r1->action, "delete");
        ASSERT_STREQ(r1->node->key, key("bw/a"));

        /* Nothing happens: the watch's own timeout ends it, the request timeout does not. */
        uint64_t start = now_usec();
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("bw"), .recursive = true,
                                                    .timeout_usec = 1500000 },
                                NULL),
                   -ETIMEDOUT);
        uint64_t took = now_usec() - start;
        ASSERT_TRUE(took >= 1400000 && took < 3 * USEC);
        /* The client still works afterwards. */
        ASSERT_OK(set(c, key("bw/b"), "2"));
}

TEST(watch_index_cleared) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *first = NULL, *cleared = NULL, *reget = NULL, *ev = NULL;
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("ic/k"), .value = "0" }, &first));
        /* etcd keeps the last 1000 events. */
        for (int i = 1; i <= 1010; i++) {
                char v[16];
                snprintf(v, sizeof(v), "%d", i);
                ASSERT_OK(set(c, key("ic/k"), v));
        }
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("ic"), .recursive = true,
                                                    .wait_index = first->node->modified_index },
                                &cleared),
                   -ERANGE);
        ASSERT_NOT_NULL(cleared);
        ASSERT_EQ(cleared->error_code, 401);
        ASSERT_TRUE(cleared->etcd_index >= first->node->modified_index + 1010);

        /* Recovery as a watcher does it: read again, watch from the read's index + 1, async. */
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("ic"), .recursive = true }, &reget));
        ASSERT_STREQ(reget->node->nodes[0]->value, "1010");
        Waiter w = { .event = e, .client = c, .set_key = key("ic/new"), .set_value = "after" };
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("ic"), .recursive = true,
                                                         .wait_index = reget->etcd_index + 1 },
                                     on_done, &w, NULL));
        _cleanup_(sd_event_source_disable_unrefp) sd_event_source *t = NULL;
        ASSERT_OK(sd_event_add_time_relative(e, &t, CLOCK_MONOTONIC, 200000, 0, on_set_timer, &w));
        ASSERT_OK(run_until(&w, 1, 10 * USEC));
        ASSERT_OK(w.r);
        ASSERT_STREQ(w.resp->node->key, key("ic/new"));
        ASSERT_STREQ(w.resp->node->value, "after");
        fl_etcd_response_free(w.resp);
}

/* Cancelling, freeing the client with calls in flight, and freeing it from a callback. */
static void on_free_client(EtcdClient *c, int r, EtcdResponse *resp, void *userdata) {
        Waiter *w = userdata;
        w->calls++;
        w->r = r;
        w->client = fl_etcd_client_free(w->client);
}

TEST(cancel_and_free) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        EtcdClient *c = NULL;
        EtcdCall *watch = NULL, *get1 = NULL;
        Waiter w = {};

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        w = (Waiter) { .event = e, .client = c };

        /* Cancelled before it started and after it is under way: no callback ever. */
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("nothing") }, on_done, &w, &get1));
        ASSERT_NULL(fl_etcd_call_cancel(get1));
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("cancel") }, on_done, &w,
                                     &watch));
        ASSERT_OK(sd_event_run(e, 100000));
        ASSERT_OK(sd_event_run(e, 100000));
        ASSERT_NULL(fl_etcd_call_cancel(watch));
        ASSERT_EQ(w.calls, 0);

        /* Freed with a watch and a get in flight. */
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("cancel") }, on_done, &w, NULL));
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("nothing") }, on_done, &w, NULL));
        ASSERT_OK(sd_event_run(e, 100000));
        c = fl_etcd_client_free(c);
        ASSERT_ERR(run_until(&w, 1, 500000), -ETIMEDOUT);
        ASSERT_EQ(w.calls, 0);

        /* A callback that frees the client, with another call still in flight. */
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        w = (Waiter) { .event = e, .client = c };
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("cancel") }, on_free_client, &w,
                                     NULL));
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("nothing") }, on_free_client, &w,
                                     NULL));
        ASSERT_OK(run_until(&w, 1, 5 * USEC));
        ASSERT_ERR(run_until(&w, 2, 300000), -ETIMEDOUT);
        ASSERT_EQ(w.calls, 1);
        ASSERT_ERR(w.r, -ENOENT);
        ASSERT_NULL(w.client);
}

/* A burst of parallel calls leaves one idle connection per call (the next burst reuses them);
 * those beyond the few most recently used close after a while idle, and the rest still work. */
TEST(pool_trim) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        Waiter w = {};

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, &(ClientOpts) { .pool_idle_usec = USEC }, &c));
        w = (Waiter) { .event = e, .client = c };
        for (int round = 1; round <= 2; round++) {
                for (int i = 0; i < 12; i++)
                        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("pool") },
                                                     on_done, &w, NULL));
                ASSERT_OK(run_until(&w, 12 * round, 5 * USEC));
                ASSERT_ERR(w.r, -ENOENT);
                /* Freshly idle: all kept (the second burst reused the first's). */
                ASSERT_EQ(fl_etcd_client_idle_connections(c), 12U);
        }
        /* 1 s idle (long enough for the bursts above on a slow box), and the timer may fire up to
         * 0.25 s late: give it 5 s at most. */
        for (int i = 0; i < 50 && fl_etcd_client_idle_connections(c) > 4; i++)
                ASSERT_ERR(run_until(&w, 25, 100000), -ETIMEDOUT);
        ASSERT_EQ(fl_etcd_client_idle_connections(c), 4U);

        /* The kept ones serve the next call (a new connection would leave 5 idle). */
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_GET, .key = key("pool") }, on_done, &w, NULL));
        ASSERT_OK(run_until(&w, 25, 5 * USEC));
        ASSERT_ERR(w.r, -ENOENT);
        ASSERT_EQ(fl_etcd_client_idle_connections(c), 4U);
        w.resp = fl_etcd_response_free(w.resp);
}

/* ---- Failover ---- */

static int dead_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port;

        /* Bind to get a free port, then close: nothing listens there. */
        if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 || getsockname(fd, (struct sockaddr *) &a, &l) < 0)
                return 1;
        port = ntohs(a.sin_port);
        close(fd);
        return port;
}

TEST(failover) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL, *dead = NULL, *noname = NULL;
        _cleanup_free_ char *eps = NULL;
        uint64_t req0, req1, req2;
        char first[256];

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        snprintf(first, sizeof(first), "%s", shared_etcd());
        first[strcspn(first, ",")] = 0;
        ASSERT_TRUE(asprintf(&eps, "http://127.0.0.1:%d,%s", dead_port(), first) > 0);
        ASSERT_OK(client_new(eps, NULL, NULL, &c));
        fl_etcd_client_stats(c, &req0, NULL, NULL);
        ASSERT_OK(set(c, key("fo"), "1"));
        fl_etcd_client_stats(c, &req1, NULL, NULL);
        ASSERT_TRUE(req1 - req0 >= 1 && req1 - req0 <= 2);
        /* The endpoint that worked is remembered: no more detours. */
        ASSERT_OK(get(c, key("fo"), NULL));
        fl_etcd_client_stats(c, &req2, NULL, NULL);
        ASSERT_EQ(req2 - req1, 1);

        /* All dead. */
        free(eps);
        ASSERT_TRUE(asprintf(&eps, "http://127.0.0.1:%d,http://127.0.0.1:%d", dead_port(), dead_port()) > 0);
        ASSERT_OK(client_new(eps, NULL, NULL, &dead));
        ASSERT_ERR(get(dead, key("fo"), NULL), -ECONNREFUSED);

        ASSERT_OK(client_new("http://no-such-host.invalid:2379", NULL, NULL, &noname));
        ASSERT_ERR(get(noname, key("fo"), NULL), -EHOSTUNREACH);
}

/* ---- Garbage servers (test/helper/bad-http) ---- */

/* Helper processes, killed by PID at exit. */
static pid_t helper_pids[8];
static int helper_port;         /* the one without a default mode */

static void helper_stop(void) {
        for (size_t i = 0; i < ELEMENTSOF(helper_pids); i++)
                if (helper_pids[i] > 0) {
                        kill(helper_pids[i], SIGTERM);
                        waitpid(helper_pids[i], NULL, 0);
                        helper_pids[i] = 0;
                }
}

/* Starts bad-http [default_mode]; returns its port or a negative errno. */
static int helper_spawn(const char *default_mode) {
        char path[PATH_MAX + 32], line[32] = "";
        size_t slot = ELEMENTSOF(helper_pids);
        int p[2], port;
        pid_t pid;
        FILE *f;

        for (size_t i = 0; i < ELEMENTSOF(helper_pids); i++)
                if (helper_pids[i] == 0) {
                        slot = i;
                        break;
                }
        if (slot == ELEMENTSOF(helper_pids))
                return -EBUSY;
        snprintf(path, sizeof(path), "%s/bad-http", helper_dir);
        if (access(path, X_OK) < 0)
                return -ENOENT;
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                dup2(p[1], STDOUT_FILENO);
                execl(path, path, default_mode, (char *) NULL);
                _exit(127);
        }
        helper_pids[slot] = pid;
        close(p[1]);
        f = fdopen(p[0], "r");
        if (!f || !fgets(line, sizeof(line), f)) {
                if (f)
                        fclose(f);
                return -EIO;
        }
        fclose(f);
        port = atoi(line);
        return port > 0 ? port : -EIO;
}

static int helper_start(void) {
        int port;

        if (helper_port > 0)
                return 0;
        port = helper_spawn(NULL);
        if (port < 0)
                return port;
        helper_port = port;
        return 0;
}

static char *helper_url(void) {
        char *u;
        if (asprintf(&u, "http://127.0.0.1:%d", helper_port) < 0)
                return NULL;
        return u;
}

TEST(garbage_server) {
        static const struct {
                const char *mode;
                int want;
                bool resp;
        } modes[] = {
                { "ok", 0, true },
                { "bad-status", -EBADMSG, false },
                { "truncated", -EBADMSG, false },
                { "bad-chunked", -EBADMSG, false },
                { "invalid-json", -EBADMSG, false },
                { "wrong-types", -EBADMSG, false },
                { "huge-number", -EBADMSG, false },
                { "deep", -EBADMSG, false },          /* deeper than cJSON's limit */
                { "deep-a", -EBADMSG, false },        /* within cJSON's, beyond ours */
                { "close", -ECONNRESET, false },
                { "raft-error", -EAGAIN, true },
                { "not-found", -ENOENT, true },
                { "plain-404", -EPROTO, true },
                { "auth", -EACCES, true },
                { "big", -EMSGSIZE, false },
        };
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_free_ char *url = NULL;

        if (helper_start() < 0)
                SKIP("test/helper/bad-http not built");
        url = helper_url();
        ASSERT_OK(client_new(url, NULL, &(ClientOpts) { .timeout_usec = 1 * USEC, .max_body = 65536 }, &c));
        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL;
                char k[64];
                snprintf(k, sizeof(k), "/%s", modes[i].mode);
                int got = get(c, k, &r);
                if (got != modes[i].want || !!r != modes[i].resp)
                        FAIL_AT("mode %s: %d (%s), want %d; resp %p", modes[i].mode, got, strerror(-got),
                                modes[i].want, (void *) r);
        }
        /* The etcd error reply comes with its details. */
        _cleanup_(fl_etcd_response_freep) EtcdResponse *nf = NULL;
        ASSERT_ERR(get(c, "/not-found", &nf), -ENOENT);
        ASSERT_EQ(nf->error_index, 7);
        ASSERT_EQ(nf->etcd_index, 7);
        ASSERT_STREQ(nf->error_cause, "/not-found");
}

TEST(garbage_timeouts) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_free_ char *url = NULL;
        uint64_t start, took;

        if (helper_start() < 0)
                SKIP("test/helper/bad-http not built");
        url = helper_url();
        ASSERT_OK(client_new(url, NULL, &(ClientOpts) { .timeout_usec = 500000 }, &c));

        /* Accepts, reads, never answers. */
        start = now_usec();
        ASSERT_ERR(get(c, "/silent", NULL), -ETIMEDOUT);
        took = now_usec() - start;
        ASSERT_TRUE(took >= 450000 && took < 2 * USEC);

        /* Half a status line, then nothing. */
        start = now_usec();
        ASSERT_ERR(get(c, "/partial", NULL), -ETIMEDOUT);
        ASSERT_TRUE(now_usec() - start < 2 * USEC);

        /* A watch without timeout still needs the head within the request timeout. */
        start = now_usec();
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = "/silent" }, NULL), -ETIMEDOUT);
        ASSERT_TRUE(now_usec() - start < 2 * USEC);

        /* A long poll ended with an empty body: watch again. */
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL;
        ASSERT_ERR(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = "/empty-watch" }, &r), -EAGAIN);
        ASSERT_EQ(r->etcd_index, 9);
        /* The same empty body for a plain GET is malformed. */
        ASSERT_ERR(get(c, "/empty-watch", NULL), -EBADMSG);

        /* Async: the loop is never blocked, the callback comes after the timeout. */
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *ac = NULL;
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(url, e, &(ClientOpts) { .timeout_usec = 300000 }, &ac));
        Waiter w = { .event = e, .client = ac };
        ASSERT_OK(fl_etcd_call_async(ac, &(EtcdRequest) { .method = ETCD_GET, .key = "/silent" }, on_done, &w, NULL));
        start = now_usec();
        ASSERT_OK(run_until(&w, 1, 5 * USEC));
        ASSERT_EQ(w.calls, 1);
        ASSERT_ERR(w.r, -ETIMEDOUT);
        ASSERT_TRUE(now_usec() - start < 1 * USEC);
}

TEST(keepalive_and_stale) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_free_ char *url = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *a = NULL, *b = NULL, *x = NULL, *y = NULL;
        int pa, na, pb, nb, px, nx, py, ny;

        if (helper_start() < 0)
                SKIP("test/helper/bad-http not built");
        url = helper_url();
        ASSERT_OK(client_new(url, NULL, &(ClientOpts) { .user = "u", .password = "p" }, &c));
        /* Same connection (the helper forks one process per connection), request 1 and 2. */
        ASSERT_OK(get(c, "/ok", &a));
        ASSERT_OK(get(c, "/ok", &b));
        ASSERT_EQ(sscanf(a->node->value, "%d:%d", &pa, &na), 2);
        ASSERT_EQ(sscanf(b->node->value, "%d:%d", &pb, &nb), 2);
        ASSERT_EQ(pa, pb);
        ASSERT_EQ(nb, na + 1);

        /* Basic auth header. */
        ASSERT_OK(get(c, "/auth", NULL));

        /* The server closes the idle connection: the next request notices and reconnects. */
        ASSERT_OK(get(c, "/ok-then-close", &x));
        usleep(300000);
        ASSERT_OK(get(c, "/ok", &y));
        ASSERT_EQ(sscanf(x->node->value, "%d:%d", &px, &nx), 2);
        ASSERT_EQ(sscanf(y->node->value, "%d:%d", &py, &ny), 2);
        ASSERT_TRUE(px != py);
        ASSERT_EQ(ny, 1);
}

TEST(failover_on_5xx_and_garbage) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_free_ char *eps = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL;
        uint64_t n0, n1, n2;
        char first[256];

        if (helper_start() < 0)
                SKIP("test/helper/bad-http not built");
        /* Every endpoint answers 5xx: the last reply comes back with the error. */
        ASSERT_TRUE(asprintf(&eps, "http://127.0.0.1:%d,http://localhost:%d", helper_port, helper_port) > 0);
        ASSERT_OK(client_new(eps, NULL, &(ClientOpts) { .timeout_usec = 500000 }, &c));
        ASSERT_ERR(get(c, "/raft-error", &r), -EAGAIN);
        ASSERT_NOT_NULL(r);
        ASSERT_EQ(r->error_code, 300);
        fl_etcd_client_stats(c, &n0, NULL, NULL);
        ASSERT_EQ(n0, 2);

        /* A real etcd behind a server that is silent, answers 5xx, garbage or resets. */
        if (!shared_etcd())
                return;
        snprintf(first, sizeof(first), "%s", shared_etcd());
        first[strcspn(first, ",")] = 0;
        static const char *const bad[] = { "silent", "raft-error", "invalid-json", "close", "bad-chunked" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(fl_etcd_client_freep) EtcdClient *g = NULL;
                _cleanup_(fl_etcd_response_freep) EtcdResponse *x = NULL;
                _cleanup_free_ char *l = NULL;
                int port = helper_spawn(bad[i]);

                ASSERT_TRUE(port > 0);
                ASSERT_TRUE(asprintf(&l, "http://127.0.0.1:%d,%s", port, first) > 0);
                ASSERT_OK(client_new(l, NULL, &(ClientOpts) { .timeout_usec = 500000 }, &g));
                fl_etcd_client_stats(g, &n0, NULL, NULL);
                if (set(g, key("fo5"), bad[i]) < 0)
                        FAIL_AT("no failover from a \"%s\" server", bad[i]);
                fl_etcd_client_stats(g, &n1, NULL, NULL);
                ASSERT_EQ(n1 - n0, 2);
                /* The good endpoint is remembered. */
                ASSERT_OK(get(g, key("fo5"), &x));
                ASSERT_STREQ(x->node->value, bad[i]);
                fl_etcd_client_stats(g, &n2, NULL, NULL);
                ASSERT_EQ(n2 - n1, 1);
        }

        /* Creates are not repeated elsewhere once sent: the first member may have done it. */
        static const struct {
                const char *mode;
                int want;
        } oneshot[] = { { "silent", -ETIMEDOUT }, { "raft-error", -EAGAIN } };
        for (size_t i = 0; i < ELEMENTSOF(oneshot); i++) {
                _cleanup_(fl_etcd_client_freep) EtcdClient *g = NULL;
                _cleanup_free_ char *l = NULL;
                int port = helper_spawn(oneshot[i].mode);

                ASSERT_TRUE(port > 0);
                ASSERT_TRUE(asprintf(&l, "http://127.0.0.1:%d,%s", port, first) > 0);
                ASSERT_OK(client_new(l, NULL, &(ClientOpts) { .timeout_usec = 500000 }, &g));
                ASSERT_ERR(fl_etcd_call(g, &(EtcdRequest) { .method = ETCD_CREATE_INORDER, .key = key("oneshot"),
                                                            .value = "x" },
                                        NULL),
                           oneshot[i].want);
                ASSERT_ERR(fl_etcd_call(g, &(EtcdRequest) { .method = ETCD_SET, .key = key("oneshot-create"),
                                                            .value = "x", .prev_exist = ETCD_PREV_NOT_EXIST },
                                        NULL),
                           oneshot[i].want);
                /* Not even tried on etcd. */
                ASSERT_ERR(get(g, key("oneshot-create"), NULL), -ENOENT);
        }
        /* A create whose first endpoint refuses connections still fails over. */
        {
                _cleanup_(fl_etcd_client_freep) EtcdClient *g = NULL;
                _cleanup_free_ char *l = NULL;
                ASSERT_TRUE(asprintf(&l, "http://127.0.0.1:%d,%s", dead_port(), first) > 0);
                ASSERT_OK(client_new(l, NULL, NULL, &g));
                ASSERT_OK(fl_etcd_call(g, &(EtcdRequest) { .method = ETCD_CREATE_INORDER, .key = key("oneshot"),
                                                           .value = "x" },
                                       NULL));
        }
}

/* ---- Streaming watches ---- */

typedef struct Stream {
        sd_event *event;
        EtcdClient *client;
        EtcdCall *call;
        uint64_t *indexes;      /* modifiedIndex of every event, as delivered */
        size_t n, cap;
        bool in_order;
        EtcdResponse *events[8]; /* the first events, stolen */
        size_t cancel_after;    /* cancel the call from the n-th event (0: never) */
        size_t free_after;      /* free the client from the n-th event (0: never) */
        int done_calls, r;
        EtcdResponse *done_resp;
        uint64_t done_usec;
} Stream;

static void stream_init(Stream *s, sd_event *e, EtcdClient *c) {
        *s = (Stream) { .event = e, .client = c, .in_order = true };
}

static void stream_done(Stream *s) {
        free(s->indexes);
        for (size_t i = 0; i < ELEMENTSOF(s->events); i++)
                fl_etcd_response_free(s->events[i]);
        fl_etcd_response_free(s->done_resp);
}

static void on_stream_event(EtcdClient *c, EtcdResponse *ev, void *userdata) {
        Stream *s = userdata;
        uint64_t idx = ev->node->modified_index;

        if (s->n > 0 && idx <= s->indexes[s->n - 1])
                s->in_order = false;
        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 64;
                s->indexes = realloc(s->indexes, s->cap * sizeof(uint64_t));
                if (!s->indexes)
                        abort();
        }
        s->indexes[s->n++] = idx;
        if (s->n <= ELEMENTSOF(s->events))
                s->events[s->n - 1] = fl_etcd_response_steal(ev);
        if (s->cancel_after > 0 && s->n == s->cancel_after)
                s->call = fl_etcd_call_cancel(s->call);
        if (s->free_after > 0 && s->n == s->free_after)
                s->client = fl_etcd_client_free(s->client);
}

static void on_stream_done(EtcdClient *c, int r, EtcdResponse *resp, void *userdata) {
        Stream *s = userdata;

        s->done_calls++;
        s->r = r;
        s->call = NULL;
        s->done_usec = now_usec();
        fl_etcd_response_free(s->done_resp);
        s->done_resp = fl_etcd_response_steal(resp);
}

static int stream_start(Stream *s, const EtcdRequest *req) {
        return fl_etcd_watch_stream_async(s->client, req, on_stream_event, on_stream_done, s, &s->call);
}

/* Runs the loop until s has want_events events and want_done done calls; -ETIMEDOUT after
 * max_usec. */
static int stream_run(Stream *s, size_t want_events, int want_done, uint64_t max_usec) {
        uint64_t deadline = now_usec() + max_usec;

        while (s->n < want_events || s->done_calls < want_done) {
                uint64_t n = now_usec();
                int r;
                if (n >= deadline)
                        return -ETIMEDOUT;
                r = sd_event_run(s->event, deadline - n);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Runs the loop for usec whatever happens. */
static void spin(sd_event *e, uint64_t usec) {
        uint64_t deadline = now_usec() + usec;
        for (uint64_t n; (n = now_usec()) < deadline;)
                (void) sd_event_run(e, deadline - n);
}

/* Async writes from a client of their own, window at a time. */
typedef struct Writer {
        EtcdClient *client;
        const char *dir;
        unsigned total, issued, completed, failed, window;
        uint64_t *indexes;
} Writer;

static void writer_issue(Writer *w);

static void on_write(EtcdClient *c, int r, EtcdResponse *resp, void *userdata) {
        Writer *w = userdata;

        if (r < 0 || !resp || !resp->node)
                w->failed++;
        else
                w->indexes[w->completed] = resp->node->modified_index;
        w->completed++;
        writer_issue(w);
}

static void writer_issue(Writer *w) {
        while (w->issued < w->total && w->issued - w->completed < w->window) {
                char k[512], v[32];
                snprintf(k, sizeof(k), "%s/k%u", w->dir, w->issued % 100);
                snprintf(v, sizeof(v), "%u", w->issued);
                if (fl_etcd_call_async(w->client, &(EtcdRequest) { .method = ETCD_SET, .key = k, .value = v },
                                       on_write, w, NULL) < 0)
                        w->failed++;
                w->issued++;
        }
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

TEST(stream_many_writes) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL, *wc = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r0 = NULL;
        _cleanup_free_ uint64_t *want = NULL;
        const unsigned total = 3000;
        uint64_t req0, req1;
        Stream s;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &wc));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("sm/init"), .value = "0" }, &r0));
        stream_init(&s, e, c);
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("sm"), .recursive = true,
                                                    .wait_index = r0->node->modified_index + 1,
                                                    .timeout_usec = 20 * USEC }));
        spin(e, 200000);
        fl_etcd_client_stats(c, &req0, NULL, NULL);

        want = new0(uint64_t, total);
        ASSERT_NOT_NULL(want);
        Writer w = { .client = wc, .dir = key("sm"), .total = total, .window = 16, .indexes = want };
        uint64_t start = now_usec();
        writer_issue(&w);
        ASSERT_OK(stream_run(&s, total, 0, 120 * USEC));
        uint64_t took = now_usec() - start;
        spin(e, 100000);        /* nothing more comes */
        while (w.completed < w.total)
                ASSERT_OK(sd_event_run(e, 100000));
        fprintf(stderr, "stream_many_writes: %u writes streamed in %.2f s (%.0f events/s)\n", total,
                (double) took / USEC, (double) total * USEC / (double) took);

        ASSERT_EQ(w.failed, 0);
        ASSERT_EQ(s.done_calls, 0);
        ASSERT_TRUE(s.in_order);
        ASSERT_EQ(s.n, total);
        qsort(want, total, sizeof(uint64_t), cmp_u64);
        for (unsigned i = 0; i < total; i++)
                if (s.indexes[i] != want[i])
                        FAIL_AT("event %u: index %" PRIu64 ", want %" PRIu64, i, s.indexes[i], want[i]);
        ASSERT_STREQ(s.events[0]->action, "set");
        ASSERT_TRUE(startswith(s.events[0]->node->key, key("sm/k")));
        ASSERT_NOT_NULL(s.events[0]->node->value);
        ASSERT_TRUE(s.events[0]->etcd_index >= r0->node->modified_index);
        /* One request for the whole stream. */
        fl_etcd_client_stats(c, &req1, NULL, NULL);
        ASSERT_EQ(req1 - req0, 0);
        ASSERT_TRUE(fl_etcd_client_last_index(c) >= want[total - 1]);

        ASSERT_NULL(fl_etcd_call_cancel(s.call));
        spin(e, 100000);
        ASSERT_EQ(s.done_calls, 0);
        stream_done(&s);
}

/* A wait index in etcd's history: etcd answers such a stream with one event only; the client
 * asks again from the next index until it is live. */
TEST(stream_history_catchup) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r0 = NULL;
        uint64_t req0, req1;
        Stream s;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("sh/a"), .value = "0" }, &r0));
        for (int i = 1; i < 5; i++)
                ASSERT_OK(set(c, key("sh/a"), "x"));
        ASSERT_OK(set(c, key("other"), "not watched"));
        stream_init(&s, e, c);
        fl_etcd_client_stats(c, &req0, NULL, NULL);
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("sh"), .recursive = true,
                                                    .wait_index = r0->node->modified_index, .timeout_usec = 10 * USEC }));
        ASSERT_OK(stream_run(&s, 5, 0, 10 * USEC));
        fl_etcd_client_stats(c, &req1, NULL, NULL);
        /* Once per history event, then once more to wait live. */
        ASSERT_EQ(req1 - req0, 6);
        ASSERT_EQ(s.indexes[0], r0->node->modified_index);
        ASSERT_STREQ(s.events[0]->node->value, "0");
        spin(e, 100000);
        ASSERT_OK(set(c, key("sh/b"), "live1"));
        ASSERT_OK(set(c, key("sh/b"), "live2"));
        ASSERT_OK(stream_run(&s, 7, 0, 10 * USEC));
        ASSERT_EQ(s.n, 7);
        ASSERT_TRUE(s.in_order);
        ASSERT_STREQ(s.events[6]->node->value, "live2");
        ASSERT_STREQ(s.events[6]->prev_node->value, "live1");
        fl_etcd_client_stats(c, &req1, NULL, NULL);
        ASSERT_EQ(req1 - req0, 6 + 2);  /* the two blocking sets */
        ASSERT_EQ(s.done_calls, 0);
        fl_etcd_call_cancel(s.call);
        stream_done(&s);
}

/* Far behind (more than ETCD_STREAM_CATCHUP_MAX indices of history to walk): the stream hands
 * out the first history event, then ends with -ERANGE for the caller to read everything. */
TEST(stream_history_too_far) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r0 = NULL;
        Stream s;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("sf/a"), .value = "0" }, &r0));
        for (unsigned i = 0; i < ETCD_STREAM_CATCHUP_MAX + 10; i++)
                ASSERT_OK(set(c, key("sf/a"), "x"));
        stream_init(&s, e, c);
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("sf"), .recursive = true,
                                                    .wait_index = r0->node->modified_index, .timeout_usec = 10 * USEC }));
        ASSERT_OK(stream_run(&s, 1, 1, 10 * USEC));
        ASSERT_EQ(s.n, 1);
        ASSERT_EQ(s.indexes[0], r0->node->modified_index);
        ASSERT_EQ(s.r, -ERANGE);
        stream_done(&s);
}

TEST(stream_delete_expire) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        Stream s;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        ASSERT_OK(set(c, key("sd/a"), "doomed"));
        stream_init(&s, e, c);
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("sd"), .recursive = true,
                                                    .timeout_usec = 10 * USEC }));
        spin(e, 200000);
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("sd/t"), .value = "brief", .ttl_sec = 1 },
                               NULL));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_DELETE, .key = key("sd/a") }, NULL));
        ASSERT_OK(stream_run(&s, 3, 0, 10 * USEC));
        ASSERT_TRUE(s.in_order);
        ASSERT_STREQ(s.events[0]->action, "set");
        ASSERT_EQ(s.events[0]->node->ttl, 1);
        ASSERT_STREQ(s.events[1]->action, "delete");
        ASSERT_STREQ(s.events[1]->node->key, key("sd/a"));
        ASSERT_NULL(s.events[1]->node->value);
        ASSERT_STREQ(s.events[1]->prev_node->value, "doomed");
        ASSERT_STREQ(s.events[2]->action, "expire");
        ASSERT_STREQ(s.events[2]->node->key, key("sd/t"));
        ASSERT_STREQ(s.events[2]->prev_node->value, "brief");
        ASSERT_EQ(s.done_calls, 0);
        fl_etcd_call_cancel(s.call);
        stream_done(&s);
}

TEST(stream_cancel) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL, *wc = NULL;
        _cleanup_free_ uint64_t *idx = NULL;
        Stream s;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &wc));
        idx = new0(uint64_t, 200);
        ASSERT_NOT_NULL(idx);

        /* Before it started. */
        stream_init(&s, e, c);
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("sc"), .recursive = true }));
        ASSERT_NULL(fl_etcd_call_cancel(s.call));
        spin(e, 100000);
        ASSERT_EQ(s.done_calls, 0);

        /* While connected and idle, and after events. */
        for (int round = 0; round < 2; round++) {
                stream_init(&s, e, c);
                ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("sc"), .recursive = true }));
                spin(e, 100000);
                if (round == 1) {
                        ASSERT_OK(set(wc, key("sc/x"), "1"));
                        ASSERT_OK(stream_run(&s, 1, 0, 5 * USEC));
                }
                ASSERT_NULL(fl_etcd_call_cancel(s.call));
                ASSERT_OK(set(wc, key("sc/x"), "2"));
                spin(e, 200000);
                ASSERT_EQ(s.n, (size_t) round);
                ASSERT_EQ(s.done_calls, 0);
                stream_done(&s);
        }

        /* From its own event callback, in the middle of a burst. */
        stream_init(&s, e, c);
        s.cancel_after = 3;
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("sc"), .recursive = true }));
        spin(e, 100000);
        Writer w = { .client = wc, .dir = key("sc"), .total = 200, .window = 32, .indexes = idx };
        writer_issue(&w);
        while (w.completed < w.total)
                ASSERT_OK(sd_event_run(e, 100000));
        spin(e, 300000);
        ASSERT_EQ(s.n, 3);
        ASSERT_EQ(s.done_calls, 0);
        ASSERT_NULL(s.call);
        stream_done(&s);

        /* The client freed from an event callback (which cancels the stream too). */
        EtcdClient *own = NULL;
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &own));
        stream_init(&s, e, own);
        s.free_after = 2;
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("sc"), .recursive = true }));
        spin(e, 100000);
        w = (Writer) { .client = wc, .dir = key("sc"), .total = 50, .window = 8, .indexes = idx };
        writer_issue(&w);
        while (w.completed < w.total)
                ASSERT_OK(sd_event_run(e, 100000));
        spin(e, 300000);
        ASSERT_EQ(s.n, 2);
        ASSERT_NULL(s.client);
        ASSERT_EQ(s.done_calls, 0);
        stream_done(&s);
}

TEST(stream_index_cleared) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *first = NULL;
        Stream s;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(shared_etcd(), e, NULL, &c));
        ASSERT_OK(fl_etcd_call(c, &(EtcdRequest) { .method = ETCD_SET, .key = key("sx/k"), .value = "0" }, &first));
        for (int i = 1; i <= 1010; i++)
                ASSERT_OK(set(c, key("sx/other"), "x"));
        stream_init(&s, e, c);
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("sx"), .recursive = true,
                                                    .wait_index = first->node->modified_index }));
        ASSERT_OK(stream_run(&s, 0, 1, 5 * USEC));
        ASSERT_ERR(s.r, -ERANGE);
        ASSERT_EQ(s.n, 0);
        ASSERT_NOT_NULL(s.done_resp);
        ASSERT_EQ(s.done_resp->error_code, 401);
        ASSERT_TRUE(s.done_resp->etcd_index >= first->node->modified_index + 1010);
        stream_done(&s);
}

static int on_write_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        Waiter *w = userdata;
        (void) set(w->client, w->set_key, w->set_value);
        w->calls++;
        return 0;
}

TEST(stream_timeout) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_free_ char *eps = NULL;
        char first[256];
        Stream s;

        if (!shared_etcd())
                SKIP("no etcd (FLEET_TEST_ETCD unset)");
        /* A dead endpoint first: the stream fails over before its head. */
        snprintf(first, sizeof(first), "%s", shared_etcd());
        first[strcspn(first, ",")] = 0;
        ASSERT_TRUE(asprintf(&eps, "http://127.0.0.1:%d,%s", dead_port(), first) > 0);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(eps, e, NULL, &c));

        /* Nothing happens. */
        stream_init(&s, e, c);
        uint64_t start = now_usec();
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("st"), .recursive = true,
                                                    .timeout_usec = 1 * USEC }));
        ASSERT_OK(stream_run(&s, 0, 1, 5 * USEC));
        ASSERT_ERR(s.r, -ETIMEDOUT);
        ASSERT_TRUE(s.done_usec - start >= 900000 && s.done_usec - start < 3 * USEC);
        stream_done(&s);

        /* Each event restarts the timeout: three writes 600 ms apart keep it alive. */
        _cleanup_(fl_etcd_client_freep) EtcdClient *wc = NULL;
        _cleanup_(sd_event_source_disable_unrefp) sd_event_source *t1 = NULL, *t2 = NULL, *t3 = NULL;
        ASSERT_OK(client_new(first, NULL, NULL, &wc));
        Waiter w = { .event = e, .client = wc, .set_key = key("st/x"), .set_value = "tick" };
        stream_init(&s, e, c);
        start = now_usec();
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = key("st"), .recursive = true,
                                                    .timeout_usec = 1 * USEC }));
        ASSERT_OK(sd_event_add_time_relative(e, &t1, CLOCK_MONOTONIC, 600000, 0, on_write_timer, &w));
        ASSERT_OK(sd_event_add_time_relative(e, &t2, CLOCK_MONOTONIC, 1200000, 0, on_write_timer, &w));
        ASSERT_OK(sd_event_add_time_relative(e, &t3, CLOCK_MONOTONIC, 1800000, 0, on_write_timer, &w));
        ASSERT_OK(stream_run(&s, 0, 1, 10 * USEC));
        ASSERT_ERR(s.r, -ETIMEDOUT);
        ASSERT_EQ(s.n, 3);
        ASSERT_TRUE(s.done_usec - start >= 2700000);
        stream_done(&s);
}

TEST(stream_garbage) {
        static const struct {
                const char *mode;
                size_t events;
                int want;
        } modes[] = {
                { "stream-cut", 1, -ECONNRESET },
                { "stream-bad-chunk", 1, -EBADMSG },
                { "stream-bad-json", 1, -EBADMSG },
                { "stream-backwards", 1, -EBADMSG },
                { "stream-huge", 1, -EMSGSIZE },
                { "bad-chunked", 0, -EBADMSG },
                { "not-found", 0, -ENOENT },
                { "raft-error", 0, -EAGAIN },
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *again = NULL;
        _cleanup_free_ char *url = NULL;
        char pid_first[32];
        Stream s;

        if (helper_start() < 0)
                SKIP("test/helper/bad-http not built");
        url = helper_url();
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(url, e, &(ClientOpts) { .max_body = 256 * 1024 }, &c));

        /* A clean end: events split over chunks, several in one chunk, a blank line. */
        stream_init(&s, e, c);
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = "/stream", .recursive = true }));
        ASSERT_OK(stream_run(&s, 3, 1, 5 * USEC));
        ASSERT_OK(s.r);
        ASSERT_NULL(s.done_resp);
        ASSERT_EQ(s.n, 3);
        ASSERT_EQ(s.indexes[0], 11);
        ASSERT_EQ(s.indexes[2], 13);
        ASSERT_STREQ(s.events[0]->node->value, "11");
        ASSERT_EQ(s.events[0]->etcd_index, 10);
        ASSERT_EQ(s.events[0]->raft_index, 20);
        ASSERT_EQ(s.events[0]->http_status, 200);
        ASSERT_STREQ(s.events[2]->action, "delete");
        ASSERT_STREQ(s.events[2]->prev_node->value, "12");
        stream_done(&s);
        /* The connection went back to the pool: the next request is the second on it. */
        ASSERT_OK(get(c, "/ok", &again));
        snprintf(pid_first, sizeof(pid_first), "%s", again->node->value);
        ASSERT_TRUE(endswith(pid_first, ":2"));

        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                _cleanup_free_ char *k = NULL;
                ASSERT_TRUE(asprintf(&k, "/%s", modes[i].mode) > 0);
                stream_init(&s, e, c);
                ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = k, .recursive = true,
                                                            .timeout_usec = 5 * USEC }));
                if (stream_run(&s, 0, 1, 8 * USEC) < 0)
                        FAIL_AT("%s: no end", modes[i].mode);
                if (s.r != modes[i].want || s.n != modes[i].events)
                        FAIL_AT("%s: %d (%s) after %zu events, want %d after %zu", modes[i].mode, s.r, strerror(-s.r),
                                s.n, modes[i].want, modes[i].events);
                if (modes[i].want == -ENOENT)
                        ASSERT_EQ(s.done_resp->error_code, 100);
                stream_done(&s);
        }

        /* A stream that goes quiet after an event ends by its timeout. */
        stream_init(&s, e, c);
        uint64_t start = now_usec();
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = "/stream-quiet", .timeout_usec = 500000 }));
        ASSERT_OK(stream_run(&s, 1, 1, 5 * USEC));
        ASSERT_ERR(s.r, -ETIMEDOUT);
        ASSERT_TRUE(s.done_usec - start >= 500000);
        stream_done(&s);

        /* Bad arguments. */
        ASSERT_ERR(fl_etcd_watch_stream_async(c, &(EtcdRequest) { .method = ETCD_GET, .key = "/x" }, on_stream_event,
                                              on_stream_done, &s, NULL),
                   -EINVAL);
        ASSERT_ERR(fl_etcd_watch_stream_async(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = "/x" }, NULL,
                                              on_stream_done, &s, NULL),
                   -EINVAL);
}

/* ---- TLS ---- */

static bool tls_started;
static char *tls_eps;
static char tls_name[64];

static const char *tls_endpoint(void) {
        if (!tls_started) {
                tls_started = true;
                snprintf(tls_name, sizeof(tls_name), "etcdtest%dtls", (int) getpid());
                tls_eps = cluster_start(tls_name, 1, true);
        }
        return tls_eps;
}

static char *tls_file(const char *name) {
        char *p;
        if (asprintf(&p, "%s/tls/%s", state_dir(), name) < 0)
                return NULL;
        return p;
}

/* A host name other than localhost that resolves to 127.0.0.1 (not in the server cert). */
static bool other_loopback_name(char *ret, size_t size) {
        static const char *const names[] = { "vm", "runsc", "localhost.localdomain", "ip6-localhost" };
        char host[256] = "";

        (void) gethostname(host, sizeof(host) - 1);
        for (size_t i = 0; i <= ELEMENTSOF(names); i++) {
                const char *n = i < ELEMENTSOF(names) ? names[i] : host;
                struct addrinfo *ai = NULL, hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
                bool ok;

                if (!*n || streq(n, "localhost"))
                        continue;
                if (getaddrinfo(n, NULL, &hints, &ai) != 0)
                        continue;
                ok = ((struct sockaddr_in *) ai->ai_addr)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
                freeaddrinfo(ai);
                if (ok) {
                        snprintf(ret, size, "%s", n);
                        return true;
                }
        }
        return false;
}

TEST(tls) {
        _cleanup_free_ char *ca = NULL, *cert = NULL, *keyf = NULL, *other = NULL, *eps = NULL;
        const char *ep;
        int port;

        if (!top[0])
                SKIP("test/lib/etcd.sh not found");
        ep = tls_endpoint();
        if (!ep)
                FAIL_AT("cannot start a TLS etcd");
        ca = tls_file("ca.crt");
        cert = tls_file("client.crt");
        keyf = tls_file("client.key");
        other = tls_file("other-ca.crt");
        ASSERT_EQ(sscanf(ep, "https://127.0.0.1:%d", &port), 1);
        ClientOpts good = { .ca = ca, .cert = cert, .keyf = keyf };

        /* Verified by IP SAN, with a client certificate. */
        {
                _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
                _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL;
                ASSERT_OK(client_new(ep, NULL, &good, &c));
                ASSERT_OK(set(c, "/tls/a", "secret"));
                ASSERT_OK(get(c, "/tls/a", &r));
                ASSERT_STREQ(r->node->value, "secret");
                ASSERT_OK(set(c, "/tls/b", "again"));
        }
        /* Verified by DNS SAN. */
        {
                _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
                ASSERT_TRUE(asprintf(&eps, "https://localhost:%d", port) > 0);
                ASSERT_OK(client_new(eps, NULL, &good, &c));
                ASSERT_OK(get(c, "/tls/a", NULL));
        }
        /* Async over TLS. */
        {
                _cleanup_(sd_event_unrefp) sd_event *e = NULL;
                _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
                ASSERT_OK(sd_event_new(&e));
                ASSERT_OK(client_new(ep, e, &good, &c));
                Waiter w = { .event = e, .client = c };
                ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_GET, .key = "/tls/a" }, on_done, &w, NULL));
                ASSERT_OK(run_until(&w, 1, 5 * USEC));
                ASSERT_OK(w.r);
                ASSERT_STREQ(w.resp->node->value, "secret");
                fl_etcd_response_free(w.resp);
        }
        /* Wrong CA. */
        {
                _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
                ASSERT_OK(client_new(ep, NULL, &(ClientOpts) { .ca = other, .cert = cert, .keyf = keyf }, &c));
                ASSERT_ERR(get(c, "/tls/a", NULL), -EPERM);
        }
        /* Explicitly insecure: the wrong CA does not matter. */
        {
                _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
                ASSERT_OK(client_new(ep, NULL, &(ClientOpts) { .ca = other, .cert = cert, .keyf = keyf, .insecure = true },
                                     &c));
                ASSERT_OK(get(c, "/tls/a", NULL));
        }
        /* No client certificate: the server refuses us. */
        {
                _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
                ASSERT_OK(client_new(ep, NULL, &(ClientOpts) { .ca = ca }, &c));
                ASSERT_ERR(get(c, "/tls/a", NULL), -EACCES);
        }
        /* Plain HTTP to the TLS port: Go may answer 400 in plain text, or just close (and the
         * reset can overtake the 400). Never a success, never a hang. */
        {
                _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
                free(eps);
                ASSERT_TRUE(asprintf(&eps, "http://127.0.0.1:%d", port) > 0);
                ASSERT_OK(client_new(eps, NULL, NULL, &c));
                int k = get(c, "/tls/a", NULL);
                if (k != -EPROTO && k != -ECONNRESET)
                        FAIL_AT("plain HTTP to TLS: %d (%s)", k, strerror(-k));
        }
        /* TLS to a plain HTTP server (Go answers the ClientHello with a 400 in plain text). */
        if (shared_etcd()) {
                _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
                free(eps);
                ASSERT_TRUE(asprintf(&eps, "https%s", startswith(shared_etcd(), "http")) > 0);
                eps[strcspn(eps, ",")] = 0;
                ASSERT_OK(client_new(eps, NULL, &(ClientOpts) { .ca = ca, .timeout_usec = 1 * USEC }, &c));
                ASSERT_ERR(get(c, "/tls/a", NULL), -ECONNRESET);
        }
}

TEST(tls_stream) {
        _cleanup_free_ char *ca = NULL, *cert = NULL, *keyf = NULL;
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL, *wc = NULL;
        uint64_t idx[100];
        const char *ep;
        Stream s;

        if (!top[0])
                SKIP("test/lib/etcd.sh not found");
        ep = tls_endpoint();
        if (!ep)
                FAIL_AT("cannot start a TLS etcd");
        ca = tls_file("ca.crt");
        cert = tls_file("client.crt");
        keyf = tls_file("client.key");
        ClientOpts good = { .ca = ca, .cert = cert, .keyf = keyf };
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(ep, e, &good, &c));
        ASSERT_OK(client_new(ep, e, &good, &wc));
        stream_init(&s, e, c);
        ASSERT_OK(stream_start(&s, &(EtcdRequest) { .method = ETCD_WATCH, .key = "/tls/s", .recursive = true,
                                                    .timeout_usec = 10 * USEC }));
        spin(e, 300000);
        Writer w = { .client = wc, .dir = "/tls/s", .total = 100, .window = 8, .indexes = idx };
        writer_issue(&w);
        ASSERT_OK(stream_run(&s, 100, 0, 20 * USEC));
        while (w.completed < w.total)
                ASSERT_OK(sd_event_run(e, 100000));
        ASSERT_EQ(w.failed, 0);
        ASSERT_TRUE(s.in_order);
        ASSERT_EQ(s.n, 100);
        qsort(idx, 100, sizeof(uint64_t), cmp_u64);
        for (unsigned i = 0; i < 100; i++)
                ASSERT_EQ(s.indexes[i], idx[i]);
        fl_etcd_call_cancel(s.call);
        stream_done(&s);
}

TEST(tls_wrong_hostname) {
        _cleanup_free_ char *ca = NULL, *cert = NULL, *keyf = NULL, *eps = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        char name[256];
        const char *ep;
        int port;

        if (!top[0])
                SKIP("test/lib/etcd.sh not found");
        if (!other_loopback_name(name, sizeof(name)))
                SKIP("no host name other than localhost resolves to 127.0.0.1");
        ep = tls_endpoint();
        if (!ep)
                FAIL_AT("cannot start a TLS etcd");
        ASSERT_EQ(sscanf(ep, "https://127.0.0.1:%d", &port), 1);
        ca = tls_file("ca.crt");
        cert = tls_file("client.crt");
        keyf = tls_file("client.key");
        ASSERT_TRUE(asprintf(&eps, "https://%s:%d", name, port) > 0);
        ASSERT_OK(client_new(eps, NULL, &(ClientOpts) { .ca = ca, .cert = cert, .keyf = keyf }, &c));
        ASSERT_ERR(get(c, "/tls/a", NULL), -EPERM);
}

/* ---- Auth against real etcd (v2 auth: root user, guest role revoked) ---- */

TEST(basic_auth) {
        _cleanup_free_ char *ep = NULL;
        char name[64], cmd[2048];

        if (!top[0])
                SKIP("test/lib/etcd.sh not found");
        if (system("command -v curl >/dev/null 2>&1") != 0)
                SKIP("curl not installed");
        snprintf(name, sizeof(name), "etcdtest%dauth", (int) getpid());
        ep = cluster_start(name, 1, false);
        if (!ep)
                FAIL_AT("cannot start etcd");
        snprintf(cmd, sizeof(cmd),
                 "curl -fsS -X PUT %1$s/v2/auth/users/root -d '{\"user\":\"root\",\"password\":\"pw\"}' >/dev/null && "
                 "curl -fsS -X PUT %1$s/v2/auth/enable >/dev/null && "
                 "curl -fsS -u root:pw -X PUT %1$s/v2/auth/roles/guest "
                 "-d '{\"role\":\"guest\",\"revoke\":{\"kv\":{\"read\":[\"/*\"],\"write\":[\"/*\"]}}}' >/dev/null",
                 ep);
        if (system(cmd) != 0) {
                cluster_stop(name);
                FAIL_AT("cannot enable etcd auth");
        }
        {
                _cleanup_(fl_etcd_client_freep) EtcdClient *anon = NULL, *wrong = NULL, *root = NULL;
                _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL;
                ASSERT_OK(client_new(ep, NULL, NULL, &anon));
                ASSERT_OK(client_new(ep, NULL, &(ClientOpts) { .user = "root", .password = "bad" }, &wrong));
                ASSERT_OK(client_new(ep, NULL, &(ClientOpts) { .user = "root", .password = "pw" }, &root));
                ASSERT_ERR(set(anon, "/auth/a", "x"), -EACCES);
                ASSERT_ERR(set(wrong, "/auth/a", "x"), -EACCES);
                ASSERT_OK(set(root, "/auth/a", "x"));
                ASSERT_OK(get(root, "/auth/a", &r));
                ASSERT_STREQ(r->node->value, "x");
                ASSERT_ERR(get(anon, "/auth/a", NULL), -EACCES);
        }
        cluster_stop(name);
}

/* ---- 3 members, the leader dies ---- */

/* Retries what a caller would retry while the cluster elects a new leader. */
static int with_retry(EtcdClient *c, const EtcdRequest *req, EtcdResponse **ret, int *ret_tries) {
        uint64_t deadline = now_usec() + 20 * USEC;
        int r, tries = 0;

        do {
                if (ret)
                        *ret = fl_etcd_response_free(*ret);
                r = fl_etcd_call(c, req, ret);
                tries++;
        } while ((r == -EAGAIN || r == -ETIMEDOUT || r == -ECONNREFUSED || r == -ECONNRESET) && now_usec() < deadline &&
                 (usleep(100000), true));
        if (ret_tries)
                *ret_tries = tries;
        return r;
}

static void cluster_body(const char *name, const char *eps) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        _cleanup_free_ char *ordered = NULL;
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        int leader, tries;

        leader = cluster_leader(name);
        ASSERT_TRUE(leader >= 1 && leader <= 3);
        ASSERT_OK(fl_strv_split(eps, ",", &l));
        ASSERT_EQ(fl_strv_length(l), 3);
        /* Leader first, so that the client talks to it until it dies. */
        ASSERT_TRUE(asprintf(&ordered, "%s,%s,%s", l[leader - 1], l[leader % 3], l[(leader + 1) % 3]) > 0);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(client_new(ordered, e, &(ClientOpts) { .timeout_usec = 2 * USEC }, &c));

        for (int i = 0; i < 10; i++) {
                char k[32], v[32];
                snprintf(k, sizeof(k), "/c/before/%d", i);
                snprintf(v, sizeof(v), "%d", i);
                ASSERT_OK(set(c, k, v));
        }
        _cleanup_(fl_etcd_response_freep) EtcdResponse *r0 = NULL;
        ASSERT_OK(get(c, "/c/before/9", &r0));

        /* A watch from the leader's point of view, then the leader dies. */
        Waiter w = { .event = e, .client = c };
        ASSERT_OK(fl_etcd_call_async(c, &(EtcdRequest) { .method = ETCD_WATCH, .key = "/c/after", .recursive = true,
                                                         .wait_index = r0->etcd_index + 1 },
                                     on_done, &w, NULL));
        ASSERT_OK(sd_event_run(e, 200000));
        cluster_kill(name, leader);

        for (int i = 0; i < 20; i++) {
                char k[32], v[32];
                snprintf(k, sizeof(k), "/c/after/%d", i);
                snprintf(v, sizeof(v), "%d", i);
                ASSERT_OK(with_retry(c, &(EtcdRequest) { .method = ETCD_SET, .key = k, .value = v }, NULL, &tries));
                /* Once a new leader is there, no more retries are needed. */
                if (i >= 5)
                        ASSERT_EQ(tries, 1);
        }
        for (int i = 0; i < 10; i++) {
                _cleanup_(fl_etcd_response_freep) EtcdResponse *r = NULL;
                char k[32];
                snprintf(k, sizeof(k), "/c/before/%d", i);
                ASSERT_OK(with_retry(c, &(EtcdRequest) { .method = ETCD_GET, .key = k, .quorum = true }, &r, NULL));
                ASSERT_EQ(atoi(r->node->value), i);
        }
        _cleanup_(fl_etcd_response_freep) EtcdResponse *all = NULL;
        ASSERT_OK(with_retry(c, &(EtcdRequest) { .method = ETCD_GET, .key = "/c/after", .recursive = true, .sorted = true,
                                                 .quorum = true },
                             &all, NULL));
        ASSERT_EQ(all->node->n_nodes, 20);

        /* The watch moved to a surviving member and saw the first write. */
        ASSERT_OK(run_until(&w, 1, 10 * USEC));
        ASSERT_OK(w.r);
        ASSERT_STREQ(w.resp->node->key, "/c/after/0");
        fl_etcd_response_free(w.resp);
}

TEST(cluster_kill_leader) {
        _cleanup_free_ char *eps = NULL;
        char name[64];

        if (!top[0])
                SKIP("test/lib/etcd.sh not found");
        snprintf(name, sizeof(name), "etcdtest%dc3", (int) getpid());
        eps = cluster_start(name, 3, false);
        if (!eps)
                FAIL_AT("cannot start a 3-member etcd");
        cluster_body(name, eps);
        cluster_stop(name);
}

static void cleanup_all(void) {
        helper_stop();
        stop_all_clusters();
}

static void setup(void) {
        /* FLEET_TEST_DEBUG=1 shows the client's debug log (why a call failed). */
        if (getenv("FLEET_TEST_DEBUG"))
                fl_log_set_max_level(LOG_DEBUG);
        find_paths();
        snprintf(prefix, sizeof(prefix), "/fleet-test-etcd/%d", (int) getpid());
        atexit(cleanup_all);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        signal(SIGPIPE, SIG_IGN);
}

int fl_test_failed_;
const char *fl_test_skip_;
int main(int argc, char **argv) {
        static const TestCase cases[] = {
                T(decode_table), T(decode_fields), T(error_mapping), T(bad_config),
                T(get_set_delete), T(escaping), T(recursive_sorted), T(ttl_and_refresh),
                T(conditions), T(create_in_order), T(watch_async), T(watch_blocking),
                T(watch_index_cleared), T(cancel_and_free), T(pool_trim), T(failover), T(garbage_server),
                T(garbage_timeouts), T(keepalive_and_stale), T(failover_on_5xx_and_garbage),
                T(stream_many_writes), T(stream_history_catchup), T(stream_history_too_far), T(stream_delete_expire), T(stream_cancel),
                T(stream_index_cleared), T(stream_timeout), T(stream_garbage),
                T(tls), T(tls_stream), T(tls_wrong_hostname), T(basic_auth), T(cluster_kill_leader),
        };
        int r;

        setup();
        r = fl_test_run(cases, ELEMENTSOF(cases), argc, argv);
        cleanup_all();
        return r;
}
