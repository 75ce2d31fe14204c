/* SPDX-License-Identifier: MIT */
/* test-api-client.c: the fleet API client's pure parts: JSON decoding of the v1 entities
 * (trusting nothing), the PUT body, path escaping, fleet's googleapi error strings, endpoint
 * parsing messages; and batches of creates and lookups against a small forked HTTP server. */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

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

TEST(page_tokens) {
        static const struct { unsigned limit, page; const char *token; } t[] = {
                { 100, 2, "ZAACAA==" },         /* spec 3.5 */
                { 19, 11852, "EwBMLg==" },
                { 2, 1, "AgABAA==" },
        };
        static const char *bad[] = { "", "ZAACAA=", "ZAACAA=x", "ZAAC+A==", "ZAACAB==", "ZAACAAAA", "ZAACAA==x" };
        unsigned limit, page;
        char tok[9];

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                fl_api_page_token(t[i].limit, t[i].page, tok);
                ASSERT_STREQ(tok, t[i].token);
                ASSERT_TRUE(fl_api_page_token_decode(tok, &limit, &page));
                ASSERT_EQ(limit, t[i].limit);
                ASSERT_EQ(page, t[i].page);
        }
        for (unsigned l = 1; l < 70000; l += 997)
                for (unsigned p = 1; p < 70000; p += 1009) {
                        fl_api_page_token(l & 0xffff, p & 0xffff, tok);
                        ASSERT_TRUE(fl_api_page_token_decode(tok, &limit, &page));
                        ASSERT_EQ(limit, l & 0xffff);
                        ASSERT_EQ(page, p & 0xffff);
                }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT_FALSE(fl_api_page_token_decode(bad[i], &limit, &page));
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

/* ---- Batches of creates against a forked server ---- */

typedef struct ServerStats {
        int puts;                /* PUT requests answered */
        int gets;                /* GET requests answered */
        int max_open;            /* most connections open at once */
} ServerStats;

#define FAKE_MAX_CONNS 64

/* The answer to GET /fleet/v1/units/<name> (see fake_server()). */
static void get_answer(const char *name, bool closing, char *resp, size_t size, ServerStats *st) {
        static const char not_found[] = "{\"error\":{\"code\":404,\"message\":\"unit does not exist\"}}";
        static const char broken[] = "{\"error\":{\"code\":500,\"message\":\"broken\"}}";
        const char *conn = closing ? "Connection: close\r\n" : "";
        unsigned num = 0;
        char json[384];

        st->gets++;
        (void) sscanf(name, "%*[a-z]%u", &num);
        if (startswith(name, "err"))
                snprintf(resp, size, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n%s\r\n%s", strlen(broken), conn, broken);
        else if (num % 2)
                snprintf(resp, size, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n%s\r\n%s", strlen(not_found), conn, not_found);
        else {
                snprintf(json, sizeof(json),
                         "{\"currentState\":\"inactive\",\"desiredState\":\"inactive\",\"name\":\"%s\","
                         "\"options\":[{\"name\":\"ExecStart\",\"section\":\"Service\",\"value\":\"/bin/true\"}]}",
                         name);
                snprintf(resp, size, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
                         strlen(json), conn, json);
        }
}

/* Answers PUT /fleet/v1/units/<name>: 201, 400 for names starting with "bad"; GET of one: the
 * unit for names with an even number, 404 for odd ones, 500 for names starting with "err"; and
 * closes every fifth connection after its answer ("Connection: close"), so that the client
 * re-dials. */
static void fake_server(int lfd, ServerStats *st) {
        struct pollfd p[FAKE_MAX_CONNS + 1] = { { .fd = lfd, .events = POLLIN } };
        char buf[FAKE_MAX_CONNS + 1][8192];
        size_t len[FAKE_MAX_CONNS + 1] = {};
        int n = 1, answered = 0;

        for (;;) {
                if (poll(p, n, -1) < 0)
                        _exit(1);
                if (p[0].revents & POLLIN) {
                        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                        if (fd >= 0 && n <= FAKE_MAX_CONNS) {
                                p[n] = (struct pollfd) { .fd = fd, .events = POLLIN };
                                len[n++] = 0;
                                if (n - 1 > st->max_open)
                                        st->max_open = n - 1;
                        } else if (fd >= 0)
                                close(fd);
                }
                for (int i = 1; i < n; i++) {
                        char *end, *cl, name[256] = "", resp[512];
                        ssize_t k;
                        size_t head, body;
                        bool closing;

                        if (!p[i].revents)
                                continue;
                        k = read(p[i].fd, buf[i] + len[i], sizeof(buf[i]) - 1 - len[i]);
                        if (k > 0) {
                                len[i] += (size_t) k;
                                buf[i][len[i]] = 0;
                        }
                        end = strstr(buf[i], "\r\n\r\n");
                        cl = strcasestr(buf[i], "Content-Length: ");
                        head = end ? (size_t) (end - buf[i]) + 4 : 0;
                        body = cl ? strtoul(cl + 16, NULL, 10) : 0;
                        if (k > 0 && (!end || len[i] < head + body))
                                continue;
                        if (k <= 0) {
                                close(p[i].fd);
                                p[i] = p[--n];
                                len[i] = len[n];
                                memcpy(buf[i], buf[n], len[n] + 1);
                                i--;
                                continue;
                        }
                        closing = ++answered % 5 == 0;
                        if (sscanf(buf[i], "GET /fleet/v1/units/%255[^?]", name) == 1)
                                get_answer(name, closing, resp, sizeof(resp), st);
                        else {
                                (void) sscanf(buf[i], "PUT /fleet/v1/units/%255[^?]", name);
                                st->puts++;
                                if (startswith(name, "bad"))
                                        snprintf(resp, sizeof(resp),
                                                 "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                                                 "Content-Length: %zu\r\n%s\r\n{\"error\":{\"code\":400,\"message\":\"no %s\"}}",
                                                 strlen("{\"error\":{\"code\":400,\"message\":\"no \"}}") + strlen(name),
                                                 closing ? "Connection: close\r\n" : "", name);
                                else
                                        snprintf(resp, sizeof(resp), "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n%s\r\n",
                                                 closing ? "Connection: close\r\n" : "");
                        }
                        /* Let requests pile up on the other connections first. */
                        usleep(2000);
                        if (write(p[i].fd, resp, strlen(resp)) < 0)
                                _exit(1);
                        memmove(buf[i], buf[i] + head + body, len[i] - head - body);
                        len[i] -= head + body;
                        if (closing) {
                                close(p[i].fd);
                                p[i] = p[--n];
                                len[i] = len[n];
                                memcpy(buf[i], buf[n], len[n] + 1);
                                i--;
                        }
                }
        }
}

static pid_t start_fake_server(const char *path, ServerStats *st) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        pid_t pid;

        strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
        (void) unlink(path);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0)
                return -1;
        pid = fork();
        if (pid == 0)
                fake_server(lfd, st);
        close(lfd);
        return pid;
}

static void stop_fake_server(pid_t pid, const char *path) {
        (void) kill(pid, SIGTERM);
        (void) waitpid(pid, NULL, 0);
        (void) unlink(path);
}

static void make_batch(size_t n, const char *bad, char ***ret_names, UnitFile ***ret_files) {
        char **names = calloc(n + 1, sizeof(char *));
        UnitFile **files = calloc(n + 1, sizeof(UnitFile *));

        ASSERT_NOT_NULL(names);
        ASSERT_NOT_NULL(files);
        for (size_t i = 0; i < n; i++) {
                char v[32];

                ASSERT_TRUE(asprintf(&names[i], "u%03zu.service", i) > 0);
                if (bad && streq(names[i], bad)) {
                        free(names[i]);
                        ASSERT_TRUE(asprintf(&names[i], "bad%03zu.service", i) > 0);
                }
                snprintf(v, sizeof(v), "/bin/true %zu", i);
                ASSERT_OK(fl_unit_file_new(&files[i]));
                ASSERT_OK(fl_unit_file_add(files[i], "Service", "ExecStart", v));
        }
        *ret_names = names;
        *ret_files = files;
}

static void free_batch(size_t n, char **names, UnitFile **files) {
        for (size_t i = 0; i < n; i++) {
                free(names[i]);
                fl_unit_file_free(files[i]);
        }
        free(names);
        free(files);
}

TEST(create_units_batch) {
        char path[] = "/tmp/fleet-test-api-client.XXXXXX", sock[64], ep[80];
        ServerStats *st = mmap(NULL, sizeof(ServerStats), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        ApiClientConfig cfg = { .endpoint = ep, .timeout_usec = 10 * 1000000ULL };
        char **names = NULL;
        UnitFile **files = NULL;
        size_t failed = 0;
        pid_t pid;

        ASSERT_TRUE(st != MAP_FAILED);
        ASSERT_NOT_NULL(mkdtemp(path));
        snprintf(sock, sizeof(sock), "%s/api.sock", path);
        snprintf(ep, sizeof(ep), "unix://%s", sock);
        pid = start_fake_server(sock, st);
        ASSERT_TRUE(pid > 0);

        /* 100 units over 16 connections, some of which the server closes on the way. */
        {
                _cleanup_(fl_api_client_freep) ApiClient *c = NULL;
                _cleanup_free_ char *err = NULL;

                make_batch(100, NULL, &names, &files);
                ASSERT_OK(fl_api_client_new(&cfg, &c, NULL));
                ASSERT_OK(fl_api_create_units(c, names, files, 100, 16, &failed, &err));
                ASSERT_NULL(err);
                ASSERT_EQ(st->puts, 100);
                ASSERT_TRUE(st->max_open > 1 && st->max_open <= 16);
                free_batch(100, names, files);
        }

        /* One refused: its error, its index; nothing is started after it. */
        {
                _cleanup_(fl_api_client_freep) ApiClient *c = NULL;
                _cleanup_free_ char *err = NULL;

                st->puts = 0;
                make_batch(200, "u050.service", &names, &files);
                ASSERT_OK(fl_api_client_new(&cfg, &c, NULL));
                ASSERT_ERR(fl_api_create_units(c, names, files, 200, 8, &failed, &err), -EINVAL);
                ASSERT_EQ(failed, (size_t) 50);
                ASSERT_STREQ(err, "googleapi: Error 400: no bad050.service");
                ASSERT_TRUE(st->puts >= 51 && st->puts <= 51 + 8);
                free_batch(200, names, files);
        }
        /* Looking units up at once: the ones that exist, in the order asked, 404s left out. */
        {
                _cleanup_(fl_api_client_freep) ApiClient *c = NULL;
                _cleanup_free_ char *err = NULL;
                ApiUnit *u = NULL;
                size_t n = 0;

                make_batch(40, NULL, &names, &files);
                ASSERT_OK(fl_api_client_new(&cfg, &c, NULL));
                ASSERT_OK(fl_api_get_units(c, names, 40, &u, &n, &err));
                ASSERT_NULL(err);
                ASSERT_EQ(st->gets, 40);
                ASSERT_EQ(n, (size_t) 20);
                for (size_t i = 0; i < n; i++) {
                        ASSERT_STREQ(u[i].name, names[2 * i]);
                        ASSERT_STREQ(u[i].current_state, "inactive");
                        ASSERT_EQ(u[i].file->n_options, 1);
                }
                fl_api_units_free(u, n);
                free_batch(40, names, files);
        }

        /* A server error is the batch's error, with fleet's wording. */
        {
                _cleanup_(fl_api_client_freep) ApiClient *c = NULL;
                _cleanup_free_ char *err = NULL;
                char *want[] = { "u000.service", "err001.service", "u002.service", NULL };
                ApiUnit *u = NULL;
                size_t n = 0;

                ASSERT_OK(fl_api_client_new(&cfg, &c, NULL));
                ASSERT_TRUE(fl_api_get_units(c, want, 3, &u, &n, &err) < 0);
                ASSERT_STREQ(err, "googleapi: Error 500: broken");
                ASSERT_NULL(u);
        }
        stop_fake_server(pid, sock);

        /* Nobody listening: the first unit's dial error. */
        {
                _cleanup_(fl_api_client_freep) ApiClient *c = NULL;
                _cleanup_free_ char *err = NULL, *want = NULL;

                make_batch(5, NULL, &names, &files);
                ASSERT_OK(fl_api_client_new(&cfg, &c, NULL));
                ASSERT_ERR(fl_api_create_units(c, names, files, 5, 0, &failed, &err), -ENOENT);
                ASSERT_EQ(failed, (size_t) 0);
                ASSERT_TRUE(asprintf(&want, "Put http://domain-sock/fleet/v1/units/u000.service?alt=json: dial unix %s: "
                                            "connect: no such file or directory", sock) > 0);
                ASSERT_STREQ(err, want);
                free_batch(5, names, files);
        }
        (void) rmdir(path);
        munmap(st, sizeof(ServerStats));
}

TEST_MAIN(T(decode_unit), T(decode_unit_rejects_bad_types), T(decode_pages), T(decode_pages_reject), T(page_tokens), T(encode_unit),
          T(path_escape), T(error_messages), T(endpoints), T(connect_refused_message), T(create_units_batch))
