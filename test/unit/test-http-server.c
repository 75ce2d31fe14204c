/* SPDX-License-Identifier: MIT */
/* test-http-server.c: the incremental request parser (tables fed whole, byte by byte and split
 * at every position), the pure helpers, and a live HttpServer on a unix socket. */
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "http-server.h"
#include "strv.h"
#include "tests.h"

#define SMALL_HEADERS 256U
#define SMALL_BODY 64U

/* Feeds input the way a connection does: the unconsumed tail stays, new bytes are appended.
 * step 0 feeds everything at once; otherwise first `split` bytes, then `step` bytes at a time.
 * Returns the feed result of the first request (1, or a negative errno) and its request. */
static int parse_split(const char *input, size_t len, size_t split, size_t step, size_t max_header,
                       size_t max_body, HttpParser *p, HttpRequest **ret, size_t *ret_used) {
        Buf b = BUF_INIT;
        size_t fed = 0, used = 0;
        int r;

        fl_http_parser_init(p, max_header, max_body);
        for (;;) {
                size_t n, consumed = 0;

                if (fed == 0 && split > 0)
                        n = split;
                else if (step > 0)
                        n = step;
                else
                        n = len - fed;
                n = MIN(n, len - fed);
                (void) fl_buf_append(&b, input + fed, n);
                fed += n;
                r = fl_http_parser_feed(p, b.data ?: "", b.len, &consumed);
                if (consumed > b.len)
                        abort();
                fl_buf_consume(&b, consumed);
                used += consumed;
                if (r != 0 || fed >= len)
                        break;
        }
        fl_buf_done(&b);
        if (ret_used)
                *ret_used = used;
        *ret = r == 1 ? fl_http_parser_take(p) : NULL;
        return r;
}

typedef struct GoodCase {
        const char *input;
        const char *method, *path, *query, *body;
        size_t n_headers;
        bool keep_alive;
        const char *header, *header_value;
} GoodCase;

static const GoodCase good_cases[] = {
        { "GET /fleet/v1/units HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/fleet/v1/units", NULL, "", 1, true,
          "host", "x" },
        { "GET /a?b=c&d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET", "/a", "b=c&d", "", 2,
          false, "Connection", "close" },
        { "GET / HTTP/1.0\r\n\r\n", "GET", "/", NULL, "", 0, false, NULL, NULL },
        { "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "GET", "/", NULL, "", 1, true, NULL, NULL },
        /* bare LF line ends, leading empty lines, whitespace around values */
        { "\r\n\nGET /x HTTP/1.1\nHost:   spaced  \t\n\n", "GET", "/x", NULL, "", 1, true, "HOST", "spaced" },
        { "PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "PUT", "/u", NULL, "hello", 2, true,
          "content-length", "5" },
        /* repeated identical Content-Length is allowed */
        { "PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab", "PUT", "/u", NULL,
          "ab", 3, true, NULL, NULL },
        { "PUT /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
          "5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n",
          "PUT", "/u", NULL, "hello 0123456789", 2, true, "transfer-encoding", "chunked" },
        { "PATCH /m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", "PATCH", "/m", NULL,
          "", 2, true, NULL, NULL },
        { "GET http://example.com/fleet/v1/state?unitName=a HTTP/1.1\r\nHost: x\r\n\r\n", "GET",
          "/fleet/v1/state", "unitName=a", "", 1, true, NULL, NULL },
        { "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "OPTIONS", "*", NULL, "", 1, true, NULL, NULL },
        { "GET /q? HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "/q", "", "", 1, true, NULL, NULL },
        /* obs-text in values is allowed, HTTP/1.2 is still 1.x */
        { "GET / HTTP/1.2\r\nHost: x\r\nX-A: caf\xc3\xa9\r\n\r\n", "GET", "/", NULL, "", 2, true, "x-a",
          "caf\xc3\xa9" },
};

static bool check_good(const GoodCase *c, HttpRequest *r) {
        if (!r || !streq(r->method, c->method) || !streq(r->path, c->path) ||
            !streq_ptr(r->query, c->query) || r->n_headers != c->n_headers || r->keep_alive != c->keep_alive)
                return false;
        if (r->body.len != strlen(c->body) || memcmp(fl_buf_str(&r->body), c->body, r->body.len) != 0)
                return false;
        if (c->header && !streq_ptr(fl_http_request_header(r, c->header), c->header_value))
                return false;
        return true;
}

TEST(parser_good_every_split) {
        for (size_t i = 0; i < ELEMENTSOF(good_cases); i++) {
                const GoodCase *c = &good_cases[i];
                size_t len = strlen(c->input);

                /* whole, byte by byte, and two pieces split at every position */
                for (size_t mode = 0; mode <= len + 1; mode++) {
                        HttpParser p;
                        HttpRequest *r = NULL;
                        size_t used = 0;
                        int k;

                        if (mode == 0)
                                k = parse_split(c->input, len, 0, 0, 0, 0, &p, &r, &used);
                        else if (mode == 1)
                                k = parse_split(c->input, len, 0, 1, 0, 0, &p, &r, &used);
                        else
                                k = parse_split(c->input, len, mode - 1, 0, 0, 0, &p, &r, &used);
                        if (k != 1 || !check_good(c, r) || used != len) {
                                fl_http_request_unref(r);
                                fl_http_parser_done(&p);
                                FAIL_AT("case %zu mode %zu: k=%d used=%zu/%zu", i, mode, k, used, len);
                        }
                        fl_http_request_unref(r);
                        fl_http_parser_done(&p);
                }
        }
}

typedef struct BadCase {
        const char *input;
        int status;
        size_t len; /* 0: strlen(input) */
} BadCase;

static const BadCase bad_cases[] = {
        { "GET\r\n\r\n", 400 },
        { "GET /\r\n\r\n", 400 },
        { "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },              /* empty target */
        { "GET / x HTTP/1.1\r\nHost: x\r\n\r\n", 400 },             /* space in target */
        { "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
        { "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400 },
        { "GET / HTTP/11\r\nHost: x\r\n\r\n", 400 },
        { "GET / http/1.1\r\nHost: x\r\n\r\n", 400 },
        { "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505 },
        { "GET / HTTP/0.9\r\n\r\n", 505 },
        { "GET x HTTP/1.1\r\nHost: x\r\n\r\n", 400 },               /* not origin-form */
        { "CONNECT a:1 HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
        { "GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
        { "GET / HTTP/1.1\r\n\r\n", 400 },                           /* no Host */
        { "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
        { "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400 },              /* space before colon */
        { "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400 },
        { "GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400 },
        { "GET / HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n", 400 },
        { "GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400 },             /* stray CR */
        { "GET / HTTP/1.1\r\nHost: x\x7f\r\n\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n", 413 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400 },
        { "PUT / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\r\n", 400 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n", 413 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n"
          "0123456789abcdef0123456789abcdef\r\n21\r\n", 413 },
        { "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n", 400 },
        { "GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n", 400, 28 },
        { "GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n", 400, 29 },
};

TEST(parser_bad_every_split) {
        for (size_t i = 0; i < ELEMENTSOF(bad_cases); i++) {
                const BadCase *c = &bad_cases[i];
                size_t len = c->len ?: strlen(c->input);

                for (size_t mode = 0; mode <= len + 1; mode++) {
                        HttpParser p;
                        HttpRequest *r = NULL;
                        int k;

                        if (mode == 0)
                                k = parse_split(c->input, len, 0, 0, SMALL_HEADERS, SMALL_BODY, &p, &r, NULL);
                        else if (mode == 1)
                                k = parse_split(c->input, len, 0, 1, SMALL_HEADERS, SMALL_BODY, &p, &r, NULL);
                        else
                                k = parse_split(c->input, len, mode - 1, 0, SMALL_HEADERS, SMALL_BODY, &p, &r,
                                                NULL);
                        fl_http_request_unref(r);
                        if (k >= 0 || p.status != c->status) {
                                fl_http_parser_done(&p);
                                FAIL_AT("case %zu mode %zu: k=%d status=%d, want %d", i, mode, k, p.status,
                                        c->status);
                        }
                        fl_http_parser_done(&p);
                }
        }
}

/* Limits at the exact boundary: a head of exactly max bytes passes, one more byte is 431. */
TEST(parser_limits) {
        for (int extra = 0; extra <= 1; extra++) {
                Buf b = BUF_INIT;
                HttpParser p;
                HttpRequest *r = NULL;
                const char *start = "GET / HTTP/1.1\r\nHost: x\r\nX: ";
                size_t pad = SMALL_HEADERS - strlen(start) - 4 + (size_t) extra;
                int k;

                (void) fl_buf_puts(&b, start);
                for (size_t i = 0; i < pad; i++)
                        (void) fl_buf_putc(&b, 'a');
                (void) fl_buf_puts(&b, "\r\n\r\n");
                k = parse_split(b.data, b.len, 0, 1, SMALL_HEADERS, SMALL_BODY, &p, &r, NULL);
                fl_buf_done(&b);
                fl_http_request_unref(r);
                fl_http_parser_done(&p);
                if (extra)
                        ASSERT_TRUE(k < 0 && p.status == 431);
                else
                        ASSERT_EQ(k, 1);
        }

        /* A long line is refused before it is complete: no need to buffer the rest. */
        {
                Buf b = BUF_INIT;
                HttpParser p;
                size_t consumed = 0;
                int k;

                fl_http_parser_init(&p, SMALL_HEADERS, SMALL_BODY);
                (void) fl_buf_puts(&b, "GET /");
                for (size_t i = 0; i < SMALL_HEADERS; i++)
                        (void) fl_buf_putc(&b, 'a');
                k = fl_http_parser_feed(&p, b.data, b.len, &consumed);
                fl_buf_done(&b);
                fl_http_parser_done(&p);
                ASSERT_TRUE(k < 0);
                ASSERT_EQ(p.status, 414);
        }

        /* Bodies: exactly max bytes pass, with Content-Length and chunked. */
        {
                char body[SMALL_BODY + 1];
                Buf b = BUF_INIT;
                HttpParser p;
                HttpRequest *r = NULL;
                int k;

                memset(body, 'z', SMALL_BODY);
                body[SMALL_BODY] = 0;
                (void) fl_buf_printf(&b, "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %u\r\n\r\n%s", SMALL_BODY,
                                     body);
                k = parse_split(b.data, b.len, 0, 7, SMALL_HEADERS, SMALL_BODY, &p, &r, NULL);
                fl_buf_reset(&b);
                ASSERT_EQ(k, 1);
                ASSERT_EQ(r->body.len, SMALL_BODY);
                r = fl_http_request_unref(r);
                fl_http_parser_done(&p);

                (void) fl_buf_printf(&b, "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         "20\r\n%.32s\r\n20\r\n%.32s\r\n0\r\n\r\n", body, body);
                k = parse_split(b.data, b.len, 0, 3, SMALL_HEADERS, SMALL_BODY, &p, &r, NULL);
                fl_buf_done(&b);
                ASSERT_EQ(k, 1);
                ASSERT_EQ(r->body.len, SMALL_BODY);
                fl_http_request_unref(r);
                fl_http_parser_done(&p);
        }
}

TEST(parser_pipelining) {
        const char *in = "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                         "PUT /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                         "POST /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
                         "GET /four HTTP/1.0\r\n\r\n";
        const char *paths[] = { "/one", "/two", "/three", "/four" };
        const char *bodies[] = { "", "abc", "hi", "" };
        HttpParser p;
        size_t off = 0, len = strlen(in);

        fl_http_parser_init(&p, 0, 0);
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                _cleanup_(fl_http_request_unrefp) HttpRequest *r = NULL;
                size_t consumed = 0;
                int k = fl_http_parser_feed(&p, in + off, len - off, &consumed);

                ASSERT_EQ(k, 1);
                off += consumed;
                r = fl_http_parser_take(&p);
                ASSERT_NOT_NULL(r);
                ASSERT_STREQ(r->path, paths[i]);
                ASSERT_STREQ(fl_buf_str(&r->body), bodies[i]);
                ASSERT_EQ(r->keep_alive, i < 3);
        }
        ASSERT_EQ(off, len);
        fl_http_parser_done(&p);
}

TEST(parser_expect_continue) {
        const char *in = "PUT /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        HttpParser p;
        size_t consumed = 0;

        fl_http_parser_init(&p, 0, 0);
        ASSERT_EQ(fl_http_parser_feed(&p, in, strlen(in), &consumed), 0);
        ASSERT_EQ(consumed, strlen(in));
        ASSERT_TRUE(fl_http_parser_in_body(&p));
        ASSERT_TRUE(fl_http_parser_peek(&p)->expect_continue);
        ASSERT_EQ(fl_http_parser_feed(&p, "ok", 2, &consumed), 1);
        fl_http_request_unref(fl_http_parser_take(&p));
        fl_http_parser_done(&p);
}

TEST(unescape_and_query) {
        static const struct {
                const char *in;
                bool plus;
                const char *out; /* NULL: -EINVAL */
        } cases[] = {
                { "abc", false, "abc" },
                { "foo%40bar.service", false, "foo@bar.service" },
                { "a+b", false, "a+b" },
                { "a+b", true, "a b" },
                { "%2f%2F", false, "//" },
                { "%", false, NULL },
                { "%4", false, NULL },
                { "%zz", false, NULL },
                { "%00", false, NULL },
                { "", false, "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *o = NULL;
                int k = fl_http_unescape(cases[i].in, strlen(cases[i].in), cases[i].plus, &o);
                if (cases[i].out) {
                        ASSERT_OK(k);
                        ASSERT_STREQ(o, cases[i].out);
                } else
                        ASSERT_ERR(k, -EINVAL);
        }

        {
                _cleanup_strv_free_ char **v = NULL;
                ASSERT_EQ(fl_http_query_values("a=1&b=2&a=x%20y;a&c=%zz&a=%zz", "a", &v), 3);
                ASSERT_STREQ(v[0], "1");
                ASSERT_STREQ(v[1], "x y");
                ASSERT_STREQ(v[2], "");
        }
        {
                _cleanup_strv_free_ char **v = NULL;
                ASSERT_EQ(fl_http_query_values("alt=json", "nextPageToken", &v), 0);
                ASSERT_NULL(v);
                ASSERT_EQ(fl_http_query_values(NULL, "x", &v), 0);
                ASSERT_EQ(fl_http_query_values("x%3D=1", "x=", &v), 1);
                ASSERT_STREQ(v[0], "1");
        }
        ASSERT_STREQ(fl_http_status_reason(404), "Not Found");
        ASSERT_STREQ(fl_http_status_reason(999), "Unknown");
}

/* ---- Live server on a unix socket ---- */

typedef struct Live {
        sd_event *event;
        HttpServer *server;
        char path[108];
        HttpRequest *held;      /* answered later by the test */
        unsigned handled;
        bool hold;
} Live;

static void live_handler(HttpServer *s, HttpRequest *r, void *userdata) {
        Live *l = userdata;
        char body[512];
        int n;

        l->handled++;
        if (l->hold && !l->held) {
                l->held = fl_http_request_ref(r);
                return;
        }
        n = snprintf(body, sizeof(body), "%s %s %zu %s", r->method, r->path, r->body.len,
                     fl_buf_str(&r->body));
        (void) fl_http_request_add_header(r, "X-Test", "1");
        (void) fl_http_request_reply(r, 200, "text/plain", body, (size_t) n);
}

static char *live_error_body(int status, const char *message, void *userdata) {
        char *s = NULL;
        if (asprintf(&s, "{\"error\":{\"code\":%d,\"message\":\"%s\"}}", status, message) < 0)
                return NULL;
        return s;
}

static int live_setup(Live *l, unsigned max_conns, uint64_t timeout_usec) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        HttpServerOptions o = {
                .server_name = "fleetd/test",
                .max_connections = max_conns,
                .timeout_usec = timeout_usec,
                .error_body = live_error_body,
                .error_content_type = "application/json",
        };
        int fd, r;

        *l = (Live) {};
        snprintf(l->path, sizeof(l->path), "/tmp/fl-test-http-%d.sock", (int) getpid());
        (void) unlink(l->path);
        r = sd_event_new(&l->event);
        if (r < 0)
                return r;
        r = fl_http_server_new(l->event, &o, live_handler, l, &l->server);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        memcpy(sa.sun_path, l->path, strlen(l->path) + 1);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 512) < 0)
                return -errno;
        return fl_http_server_add_listener(l->server, fd, NULL);
}

static void live_done(Live *l) {
        l->held = fl_http_request_unref(l->held);
        l->server = fl_http_server_free(l->server);
        l->event = sd_event_unref(l->event);
        (void) unlink(l->path);
}

static int live_connect(Live *l) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        memcpy(sa.sun_path, l->path, strlen(l->path) + 1);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        return fd;
}

/* Runs the loop until fd has produced `want` occurrences of "HTTP/1.1 " (or EOF if want is 0)
 * or max_usec passed; returns everything read. */
static char *live_exchange(Live *l, int fd, const char *send_data, unsigned want, uint64_t max_usec,
                           bool *ret_eof) {
        Buf b = BUF_INIT;
        uint64_t waited = 0;

        if (send_data && send(fd, send_data, strlen(send_data), MSG_NOSIGNAL) < 0)
                return NULL;
        *ret_eof = false;
        while (waited < max_usec) {
                char buf[4096];
                ssize_t n;
                unsigned seen = 0;

                (void) sd_event_run(l->event, 10 * 1000);
                waited += 10 * 1000;
                for (;;) {
                        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                        if (n > 0)
                                (void) fl_buf_append(&b, buf, (size_t) n);
                        else
                                break;
                }
                if (n == 0) {
                        *ret_eof = true;
                        break;
                }
                for (const char *p = fl_buf_str(&b); (p = strstr(p, "HTTP/1.1 ")); p++)
                        seen++;
                if (want > 0 && seen >= want)
                        break;
        }
        return fl_buf_steal(&b);
}

TEST(server_keepalive_pipelining) {
        Live l;
        _cleanup_free_ char *out = NULL, *out2 = NULL;
        _cleanup_close_ int fd = -EBADF;
        bool eof;

        ASSERT_OK(live_setup(&l, 0, 0));
        fd = live_connect(&l);
        ASSERT_OK(fd);
        out = live_exchange(&l, fd,
                            "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                            "PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"
                            "HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n",
                            3, 2000000, &eof);
        ASSERT_NOT_NULL(out);
        ASSERT_FALSE(eof);
        ASSERT_NOT_NULL(strstr(out, "Server: fleetd/test\r\n"));
        ASSERT_NOT_NULL(strstr(out, "X-Test: 1\r\n"));
        ASSERT_NOT_NULL(strstr(out, "\r\n\r\nGET /a 0 HTTP/1.1 200 OK"));
        ASSERT_NOT_NULL(strstr(out, "\r\n\r\nPUT /b 3 xyzHTTP/1.1 200 OK"));
        /* HEAD: Content-Length of the would-be body, no body */
        ASSERT_TRUE(endswith(out, "Content-Length: 10\r\nX-Test: 1\r\n\r\n"));
        ASSERT_EQ(l.handled, 3);

        /* the same connection still works; Connection: close ends it */
        out2 = live_exchange(&l, fd, "GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 0, 2000000, &eof);
        ASSERT_TRUE(eof);
        ASSERT_NOT_NULL(strstr(out2, "Connection: close\r\n"));
        ASSERT_TRUE(endswith(out2, "GET /d 0 "));
        live_done(&l);
}

TEST(server_bad_request_closes) {
        Live l;
        _cleanup_free_ char *out = NULL;
        _cleanup_close_ int fd = -EBADF;
        bool eof;

        ASSERT_OK(live_setup(&l, 0, 0));
        fd = live_connect(&l);
        ASSERT_OK(fd);
        out = live_exchange(&l, fd, "GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n", 0,
                            3000000, &eof);
        ASSERT_TRUE(eof);
        ASSERT_TRUE(startswith(out, "HTTP/1.1 400 Bad Request\r\n"));
        ASSERT_NOT_NULL(strstr(out, "Content-Type: application/json\r\n"));
        ASSERT_TRUE(endswith(out, "{\"error\":{\"code\":400,\"message\":\"malformed header line\"}}"));
        ASSERT_EQ(l.handled, 0);
        live_done(&l);
}

TEST(server_oversize_body_and_continue) {
        Live l;
        _cleanup_free_ char *out = NULL, *out2 = NULL;
        _cleanup_close_ int fd = -EBADF, fd2 = -EBADF;
        bool eof;

        ASSERT_OK(live_setup(&l, 0, 0));
        fd = live_connect(&l);
        ASSERT_OK(fd);
        out = live_exchange(&l, fd, "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n",
                            0, 3000000, &eof);
        ASSERT_TRUE(eof);
        ASSERT_TRUE(startswith(out, "HTTP/1.1 413 "));

        fd2 = live_connect(&l);
        ASSERT_OK(fd2);
        out2 = live_exchange(&l, fd2, "PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
                             1, 2000000, &eof);
        ASSERT_STREQ(out2, "HTTP/1.1 100 Continue\r\n\r\n");
        free(out2);
        out2 = live_exchange(&l, fd2, "ok", 1, 2000000, &eof);
        ASSERT_TRUE(endswith(out2, "PUT / 2 ok"));
        live_done(&l);
}

TEST(server_async_reply_and_orphan) {
        Live l;
        _cleanup_free_ char *out = NULL;
        int fd;
        bool eof;

        ASSERT_OK(live_setup(&l, 0, 0));
        l.hold = true;
        fd = live_connect(&l);
        ASSERT_OK(fd);
        out = live_exchange(&l, fd, "GET /held HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n", 1,
                            200000, &eof);
        ASSERT_STREQ(out, "");
        ASSERT_NOT_NULL(l.held);
        ASSERT_EQ(l.handled, 1); /* the pipelined one waits for the held one */
        ASSERT_OK(fl_http_request_reply(l.held, 204, NULL, NULL, 0));
        ASSERT_ERR(fl_http_request_reply(l.held, 204, NULL, NULL, 0), -EALREADY);
        l.held = fl_http_request_unref(l.held);
        l.hold = false;
        free(out);
        out = live_exchange(&l, fd, NULL, 2, 2000000, &eof);
        ASSERT_TRUE(startswith(out, "HTTP/1.1 204 No Content\r\n"));
        ASSERT_NULL(strstr(out, "Content-Length: 0\r\nHTTP")); /* 204 has no Content-Length */
        ASSERT_TRUE(endswith(out, "GET /next 0 "));

        /* the client disconnects while its request is held: the reply goes nowhere */
        l.hold = true;
        free(out);
        out = live_exchange(&l, fd, "GET /gone HTTP/1.1\r\nHost: x\r\n\r\n", 1, 100000, &eof);
        ASSERT_NOT_NULL(l.held);
        safe_close(fd);
        for (int i = 0; i < 10; i++)
                (void) sd_event_run(l.event, 10 * 1000);
        ASSERT_TRUE(fl_http_request_is_orphan(l.held));
        ASSERT_ERR(fl_http_request_reply(l.held, 200, NULL, "x", 1), -ENOTCONN);
        live_done(&l);
}

TEST(server_connection_limit) {
        Live l;
        int fds[3];
        _cleanup_free_ char *out = NULL, *ok = NULL;
        bool eof;
        HttpServerStats st;

        ASSERT_OK(live_setup(&l, 2, 0));
        for (int i = 0; i < 3; i++) {
                fds[i] = live_connect(&l);
                ASSERT_OK(fds[i]);
                for (int j = 0; j < 5; j++)
                        (void) sd_event_run(l.event, 1000);
        }
        out = live_exchange(&l, fds[2], "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, 3000000, &eof);
        ASSERT_TRUE(eof);
        ASSERT_TRUE(startswith(out, "HTTP/1.1 503 "));
        ok = live_exchange(&l, fds[0], "GET /fine HTTP/1.1\r\nHost: x\r\n\r\n", 1, 2000000, &eof);
        ASSERT_TRUE(endswith(ok, "GET /fine 0 "));
        fl_http_server_get_stats(l.server, &st);
        ASSERT_EQ(st.connections_rejected, 1);
        ASSERT_EQ(st.connections_open, 2);
        for (int i = 0; i < 3; i++)
                safe_close(fds[i]);
        live_done(&l);
}

TEST(server_slow_client_timeout) {
        Live l;
        _cleanup_free_ char *out = NULL, *idle = NULL;
        _cleanup_close_ int fd = -EBADF, fd2 = -EBADF;
        bool eof;

        ASSERT_OK(live_setup(&l, 0, 200 * 1000));
        fd = live_connect(&l);
        ASSERT_OK(fd);
        /* drip-feeding does not extend the deadline */
        out = live_exchange(&l, fd, "GET / HT", 0, 100000, &eof);
        free(out);
        out = live_exchange(&l, fd, "TP/1.1\r\n", 0, 3000000, &eof);
        ASSERT_TRUE(eof);
        ASSERT_TRUE(startswith(out, "HTTP/1.1 408 "));

        /* an idle connection is closed silently */
        fd2 = live_connect(&l);
        ASSERT_OK(fd2);
        idle = live_exchange(&l, fd2, NULL, 0, 3000000, &eof);
        ASSERT_TRUE(eof);
        ASSERT_STREQ(idle, "");
        live_done(&l);
}

TEST_MAIN(T(parser_good_every_split), T(parser_bad_every_split), T(parser_limits), T(parser_pipelining),
          T(parser_expect_continue), T(unescape_and_query), T(server_keepalive_pipelining),
          T(server_bad_request_closes), T(server_oversize_body_and_continue), T(server_async_reply_and_orphan),
          T(server_connection_limit), T(server_slow_client_timeout))
