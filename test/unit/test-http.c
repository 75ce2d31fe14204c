/* SPDX-License-Identifier: MIT */
/* test-http.c: the HTTP/1.1 client message layer: response parser (table-driven, every case
 * also fed split at every byte boundary and byte by byte), request writer, escaping. */
#include "http.h"
#include "tests.h"

typedef struct ParseCase {
        const char *name;
        const char *input;
        size_t len;             /* 0: strlen(input) */
        bool head;              /* answer to HEAD */
        size_t max_body;        /* 0: default */
        bool eof;               /* the server closes after input */
        int want;               /* 1 complete, or the error */
        int status;
        const char *body;       /* NULL: not checked */
        bool keep_alive;
        size_t consumed;        /* 0: all of input */
} ParseCase;

#define OK200 "HTTP/1.1 200 OK\r\n"

static const ParseCase cases[] = {
        /* Well-formed. */
        { "content-length", OK200 "Content-Length: 5\r\n\r\nhello", .want = 1, .status = 200, .body = "hello",
          .keep_alive = true },
        { "chunked", OK200 "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: y\r\n\r\n",
          .want = 1, .status = 200, .body = "hello world", .keep_alive = true },
        { "chunked-upper-hex", OK200 "Transfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", .want = 1,
          .status = 200, .body = "0123456789", .keep_alive = true },
        { "chunked-empty", OK200 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .want = 1, .status = 200, .body = "",
          .keep_alive = true },
        { "until-eof", "HTTP/1.0 200 OK\r\n\r\nabc", .eof = true, .want = 1, .status = 200, .body = "abc",
          .keep_alive = false },
        { "until-eof-1.1", OK200 "X: y\r\n\r\nabc", .eof = true, .want = 1, .status = 200, .body = "abc",
          .keep_alive = false },
        { "connection-close", OK200 "Connection: close\r\nContent-Length: 2\r\n\r\nhi", .want = 1, .status = 200,
          .body = "hi", .keep_alive = false },
        { "connection-list", OK200 "Connection: foo, Close\r\nContent-Length: 0\r\n\r\n", .want = 1, .status = 200,
          .body = "", .keep_alive = false },
        { "1.0-keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", .want = 1,
          .status = 200, .body = "x", .keep_alive = true },
        { "1.0-default-close", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", .want = 1, .status = 200, .body = "x",
          .keep_alive = false },
        { "204", "HTTP/1.1 204 No Content\r\n\r\n", .want = 1, .status = 204, .body = "", .keep_alive = true },
        { "304-ignores-length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", .want = 1, .status = 304,
          .keep_alive = true },
        { "head", OK200 "Content-Length: 100\r\n\r\n", .head = true, .want = 1, .status = 200, .body = "",
          .keep_alive = true },
        { "100-continue", "HTTP/1.1 100 Continue\r\n\r\n" OK200 "Content-Length: 1\r\n\r\nz", .want = 1,
          .status = 200, .body = "z", .keep_alive = true },
        { "bare-lf", "HTTP/1.1 201 Created\nContent-Length: 2\n\nok", .want = 1, .status = 201, .body = "ok",
          .keep_alive = true },
        { "no-reason", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", .want = 1, .status = 404, .body = "",
          .keep_alive = true },
        { "empty-lines-before", "\r\n\r\n" OK200 "Content-Length: 0\r\n\r\n", .want = 1, .status = 200, .body = "",
          .keep_alive = true },
        { "same-length-twice", OK200 "Content-Length: 1\r\nContent-Length: 1\r\n\r\nq", .want = 1, .status = 200,
          .body = "q", .keep_alive = true },
        { "extra-after", OK200 "Content-Length: 1\r\n\r\nqHTTP/1.1", .want = 1, .status = 200, .body = "q",
          .keep_alive = true, .consumed = sizeof(OK200 "Content-Length: 1\r\n\r\nq") - 1 },
        { "binary-body", OK200 "Content-Length: 3\r\n\r\na\0b", .len = sizeof(OK200 "Content-Length: 3\r\n\r\na\0b") - 1,
          .want = 1, .status = 200, .keep_alive = true },
        { "500", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nerr", .want = 1, .status = 500,
          .body = "err", .keep_alive = true },

        /* Malformed. */
        { "http2", "HTTP/2 200 OK\r\n\r\n", .want = -EBADMSG },
        { "http-1.2", "HTTP/1.2 200 OK\r\n\r\n", .want = -EBADMSG },
        { "short-status", "HTTP/1.1 20 OK\r\n\r\n", .want = -EBADMSG },
        { "long-status", "HTTP/1.1 2000 OK\r\n\r\n", .want = -EBADMSG },
        { "status-099", "HTTP/1.1 099 Low\r\n\r\n", .want = -EBADMSG },
        { "status-600", "HTTP/1.1 600 High\r\n\r\n", .want = -EBADMSG },
        { "status-glued", "HTTP/1.1 200OK\r\n\r\n", .want = -EBADMSG },
        { "garbage", "garbage\r\n", .want = -EBADMSG },
        { "lowercase-proto", "http/1.1 200 OK\r\n\r\n", .want = -EBADMSG },
        { "ctl-in-reason", "HTTP/1.1 200 O\x01K\r\n\r\n", .want = -EBADMSG },
        { "no-colon", OK200 "NoColon\r\n\r\n", .want = -EBADMSG },
        { "empty-name", OK200 ": x\r\n\r\n", .want = -EBADMSG },
        { "space-in-name", OK200 "Bad Name: x\r\n\r\n", .want = -EBADMSG },
        { "space-before-colon", OK200 "Name : x\r\n\r\n", .want = -EBADMSG },
        { "folded", OK200 "A: b\r\n c\r\n\r\n", .want = -EBADMSG },
        { "nul-in-header", OK200 "A: b\0c\r\n\r\n", .len = sizeof(OK200 "A: b\0c\r\n\r\n") - 1, .want = -EBADMSG },
        { "bare-cr", OK200 "A: b\rc\r\n\r\n", .want = -EBADMSG },
        { "ctl-in-value", OK200 "A: b\x7f\x02\r\n\r\n", .want = -EBADMSG },
        { "length-alpha", OK200 "Content-Length: 12a\r\n\r\n", .want = -EBADMSG },
        { "length-negative", OK200 "Content-Length: -1\r\n\r\n", .want = -EBADMSG },
        { "length-empty", OK200 "Content-Length:\r\n\r\n", .want = -EBADMSG },
        { "length-plus", OK200 "Content-Length: +5\r\n\r\nhello", .want = -EBADMSG },
        { "length-conflict", OK200 "Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", .want = -EBADMSG },
        { "length-overflow", OK200 "Content-Length: 99999999999999999999999\r\n\r\n", .want = -EBADMSG },
        { "te-gzip", OK200 "Transfer-Encoding: gzip\r\n\r\n", .want = -EBADMSG },
        { "te-gzip-chunked", OK200 "Transfer-Encoding: gzip, chunked\r\n\r\n", .want = -EBADMSG },
        { "te-twice", OK200 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", .want = -EBADMSG },
        { "te-and-length", OK200 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
          .want = -EBADMSG },
        { "chunk-bad-hex", OK200 "Transfer-Encoding: chunked\r\n\r\nzz\r\n", .want = -EBADMSG },
        { "chunk-empty-size", OK200 "Transfer-Encoding: chunked\r\n\r\n\r\n", .want = -EBADMSG },
        { "chunk-negative", OK200 "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n", .want = -EBADMSG },
        { "chunk-junk-after-size", OK200 "Transfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n",
          .want = -EBADMSG },
        { "chunk-too-long", OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n", .want = -EBADMSG },
        { "chunk-overflow", OK200 "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", .want = -EBADMSG },
        { "chunk-bad-trailer", OK200 "Transfer-Encoding: chunked\r\n\r\n0\r\nnot a trailer\r\n\r\n",
          .want = -EBADMSG },
        { "switching-protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", .want = -EBADMSG },

        /* Over the limits. */
        { "body-over-limit", OK200 "Content-Length: 11\r\n\r\n", .max_body = 10, .want = -EMSGSIZE },
        { "chunked-over-limit", OK200 "Transfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
          .max_body = 10, .want = -EMSGSIZE },
        { "eof-body-over-limit", "HTTP/1.0 200 OK\r\n\r\n0123456789A", .max_body = 10, .want = -EMSGSIZE },
        { "body-at-limit", OK200 "Content-Length: 10\r\n\r\n0123456789", .max_body = 10, .want = 1, .status = 200,
          .body = "0123456789", .keep_alive = true },

        /* Cut short by the server. */
        { "truncated-status", "HTTP/1.1 20", .eof = true, .want = -EBADMSG },
        { "truncated-headers", OK200 "Content-Length: 5\r\n", .eof = true, .want = -EBADMSG },
        { "truncated-body", OK200 "Content-Length: 5\r\n\r\nhel", .eof = true, .want = -EBADMSG },
        { "truncated-chunk", OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", .eof = true, .want = -EBADMSG },
        { "truncated-last-chunk", OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", .eof = true,
          .want = -EBADMSG },
        { "nothing", "", .eof = true, .want = -EBADMSG },
};

/* Feeds input in pieces ending at the offsets in cuts (then the rest); returns the result. */
static int run_pieces(const ParseCase *c, const size_t *cuts, size_t n_cuts, HttpResponse **ret,
                      size_t *ret_consumed) {
        HttpResponseParser p;
        size_t len = c->len ?: strlen(c->input), off = 0, total = 0;
        int r = 0;

        fl_http_response_parser_init(&p, 0, c->max_body, c->head);
        for (size_t i = 0; i <= n_cuts && r == 0; i++) {
                size_t end = i < n_cuts ? cuts[i] : len, consumed = 0;
                if (end < off)
                        continue;
                r = fl_http_response_parser_feed(&p, c->input + off, end - off, &consumed);
                if (r == 0 && consumed != end - off)
                        r = -999;       /* must consume everything while incomplete */
                total += consumed;
                off = end;
        }
        if (r == 0 && c->eof)
                r = fl_http_response_parser_eof(&p);
        *ret = r == 1 ? fl_http_response_parser_take(&p) : NULL;
        *ret_consumed = total;
        fl_http_response_parser_done(&p);
        return r;
}

static bool check_result(const ParseCase *c, int r, HttpResponse *h, size_t consumed, const char *how) {
        size_t len = c->len ?: strlen(c->input);
        bool ok = r == c->want;

        if (ok && r == 1) {
                ok = h && h->status == c->status && h->keep_alive == c->keep_alive &&
                     (!c->body || (h->body.len == strlen(c->body) && memcmp(fl_buf_str(&h->body), c->body, h->body.len) == 0)) &&
                     consumed == (c->consumed ?: len);
        }
        if (!ok)
                fprintf(stderr, "case %s (%s): r=%d want %d status=%d body=\"%s\" keep_alive=%d consumed=%zu\n",
                        c->name, how, r, c->want, h ? h->status : 0, h ? fl_buf_str(&h->body) : "",
                        h ? h->keep_alive : -1, consumed);
        return ok;
}

TEST(parse_table) {
        int bad = 0;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const ParseCase *c = &cases[i];
                size_t len = c->len ?: strlen(c->input), consumed;
                HttpResponse *h;
                int r;

                /* At once. */
                r = run_pieces(c, NULL, 0, &h, &consumed);
                bad += !check_result(c, r, h, consumed, "whole");
                fl_http_response_free(h);

                /* Split in two at every position. */
                for (size_t cut = 0; cut <= len; cut++) {
                        char how[32];
                        r = run_pieces(c, &cut, 1, &h, &consumed);
                        snprintf(how, sizeof(how), "cut at %zu", cut);
                        bad += !check_result(c, r, h, consumed, how);
                        fl_http_response_free(h);
                }

                /* Byte by byte. */
                size_t *cuts = new(size_t, len + 1);
                ASSERT_NOT_NULL(cuts);
                for (size_t k = 0; k < len; k++)
                        cuts[k] = k + 1;
                r = run_pieces(c, cuts, len, &h, &consumed);
                free(cuts);
                bad += !check_result(c, r, h, consumed, "bytewise");
                fl_http_response_free(h);
        }
        ASSERT_EQ(bad, 0);
}

TEST(parse_headers_access) {
        static const char in[] = OK200 "X-Etcd-Index:   42  \r\ncontent-length: 0\r\nX-Empty:\r\n\r\n";
        HttpResponseParser p;
        size_t consumed;
        _cleanup_(fl_http_response_freep) HttpResponse *h = NULL;

        fl_http_response_parser_init(&p, 0, 0, false);
        ASSERT_FALSE(fl_http_response_parser_started(&p));
        ASSERT_EQ(fl_http_response_parser_feed(&p, in, 4, &consumed), 0);
        ASSERT_TRUE(fl_http_response_parser_started(&p));
        ASSERT_EQ(fl_http_response_parser_feed(&p, in + 4, sizeof(in) - 5, &consumed), 1);
        h = fl_http_response_parser_take(&p);
        ASSERT_NOT_NULL(h);
        ASSERT_STREQ(fl_http_response_header(h, "x-etcd-index"), "42");
        ASSERT_STREQ(fl_http_response_header(h, "X-EMPTY"), "");
        ASSERT_NULL(fl_http_response_header(h, "X-Missing"));
        ASSERT_EQ(h->n_headers, 3);

        /* The parser is ready for the next response on the same connection. */
        _cleanup_(fl_http_response_freep) HttpResponse *h2 = NULL;
        static const char in2[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx";
        ASSERT_EQ(fl_http_response_parser_feed(&p, in2, sizeof(in2) - 1, &consumed), 1);
        h2 = fl_http_response_parser_take(&p);
        ASSERT_EQ(h2->status, 404);
        fl_http_response_parser_done(&p);
}

TEST(parse_error_sticks) {
        HttpResponseParser p;
        size_t consumed;

        fl_http_response_parser_init(&p, 0, 0, false);
        ASSERT_ERR(fl_http_response_parser_feed(&p, "nonsense\r\n", 10, &consumed), -EBADMSG);
        ASSERT_ERR(fl_http_response_parser_feed(&p, OK200 "\r\n", sizeof(OK200), &consumed), -EBADMSG);
        ASSERT_ERR(fl_http_response_parser_eof(&p), -EBADMSG);
        ASSERT_NULL(fl_http_response_parser_take(&p));
        fl_http_response_parser_done(&p);
}

/* Status line and headers bigger than 64 KiB, in one piece and as an endless trickle. */
TEST(parse_head_limit) {
        HttpResponseParser p;
        size_t consumed;
        Buf b = BUF_INIT;
        int r = 0;

        ASSERT_OK(fl_buf_puts(&b, OK200));
        for (int i = 0; b.len < FL_HTTP_CLIENT_MAX_HEADER_BYTES + 100; i++)
                ASSERT_OK(fl_buf_printf(&b, "X-Pad-%d: %0100d\r\n", i, 0));
        fl_http_response_parser_init(&p, 0, 0, false);
        ASSERT_ERR(fl_http_response_parser_feed(&p, b.data, b.len, &consumed), -EMSGSIZE);
        fl_http_response_parser_done(&p);

        /* One endless header line, fed in small pieces. */
        fl_http_response_parser_init(&p, 0, 0, false);
        ASSERT_EQ(fl_http_response_parser_feed(&p, OK200 "X: ", sizeof(OK200 "X: ") - 1, &consumed), 0);
        for (int i = 0; i < 100000 && r == 0; i++)
                r = fl_http_response_parser_feed(&p, "aaaaaaaaaa", 10, &consumed);
        ASSERT_ERR(r, -EMSGSIZE);
        fl_http_response_parser_done(&p);

        /* An endless chunk-size line (chunk extensions). */
        fl_http_response_parser_init(&p, 0, 0, false);
        static const char head[] = OK200 "Transfer-Encoding: chunked\r\n\r\n5;";
        ASSERT_EQ(fl_http_response_parser_feed(&p, head, sizeof(head) - 1, &consumed), 0);
        r = 0;
        for (int i = 0; i < 100000 && r == 0; i++)
                r = fl_http_response_parser_feed(&p, "e=xxxxxxxx", 10, &consumed);
        ASSERT_ERR(r, -EMSGSIZE);
        fl_http_response_parser_done(&p);

        /* Many small chunks are fine: each size line is bounded on its own. */
        fl_http_response_parser_init(&p, 0, 0, false);
        ASSERT_EQ(fl_http_response_parser_feed(&p, head, sizeof(head) - 2, &consumed), 0);
        ASSERT_EQ(fl_http_response_parser_feed(&p, "\r\n", 2, &consumed), 0);
        ASSERT_EQ(fl_http_response_parser_feed(&p, "abcde\r\n", 7, &consumed), 0);
        for (int i = 0; i < 20000; i++)
                ASSERT_EQ(fl_http_response_parser_feed(&p, "1\r\nx\r\n", 6, &consumed), 0);
        ASSERT_EQ(fl_http_response_parser_feed(&p, "0\r\n\r\n", 5, &consumed), 1);
        _cleanup_(fl_http_response_freep) HttpResponse *h = fl_http_response_parser_take(&p);
        ASSERT_EQ(h->body.len, 20005);
        fl_http_response_parser_done(&p);
        fl_buf_done(&b);
}

/* A big body at the default limit passes; one byte more does not. */
TEST(parse_default_body_limit) {
        HttpResponseParser p;
        size_t consumed;
        char head[128];

        snprintf(head, sizeof(head), OK200 "Content-Length: %u\r\n\r\n", FL_HTTP_CLIENT_DEFAULT_MAX_BODY_BYTES + 1);
        fl_http_response_parser_init(&p, 0, 0, false);
        ASSERT_ERR(fl_http_response_parser_feed(&p, head, strlen(head), &consumed), -EMSGSIZE);
        fl_http_response_parser_done(&p);
}

TEST(write_request) {
        Buf b = BUF_INIT;
        char *h[] = { (char *) "Authorization: Basic eDp5", NULL };

        ASSERT_OK(fl_http_client_write_request(&b, "GET", "/v2/keys/a?recursive=true", "127.0.0.1:2379", h, NULL,
                                               NULL, 0));
        ASSERT_STREQ(fl_buf_str(&b), "GET /v2/keys/a?recursive=true HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"
                                     "Authorization: Basic eDp5\r\n\r\n");
        fl_buf_reset(&b);
        ASSERT_OK(fl_http_client_write_request(&b, "PUT", "/v2/keys/a", "h", NULL,
                                               "application/x-www-form-urlencoded", "value=1", 7));
        ASSERT_STREQ(fl_buf_str(&b), "PUT /v2/keys/a HTTP/1.1\r\nHost: h\r\n"
                                     "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\n"
                                     "value=1");
        fl_buf_reset(&b);
        ASSERT_OK(fl_http_client_write_request(&b, "PUT", "/x", "h", NULL, NULL, "", 0));
        ASSERT_STREQ(fl_buf_str(&b), "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");

        /* Header injection is refused and leaves the buffer as it was. */
        fl_buf_reset(&b);
        ASSERT_OK(fl_buf_puts(&b, "keep"));
        ASSERT_ERR(fl_http_client_write_request(&b, "GET", "/a\r\nX: y", "h", NULL, NULL, NULL, 0), -EINVAL);
        ASSERT_ERR(fl_http_client_write_request(&b, "GET", "/a b", "h", NULL, NULL, NULL, 0), -EINVAL);
        ASSERT_ERR(fl_http_client_write_request(&b, "GET", "/a", "h\n", NULL, NULL, NULL, 0), -EINVAL);
        char *bad[] = { (char *) "X: a\r\nY: b", NULL };
        ASSERT_ERR(fl_http_client_write_request(&b, "GET", "/a", "h", bad, NULL, NULL, 0), -EINVAL);
        ASSERT_STREQ(fl_buf_str(&b), "keep");
        fl_buf_done(&b);
}

TEST(escape) {
        Buf b = BUF_INIT;

        ASSERT_OK(fl_http_client_escape(&b, "/_coreos.com/fleet/job/foo@bar\\x2d1:2.service/object", false));
        ASSERT_STREQ(fl_buf_str(&b), "/_coreos.com/fleet/job/foo%40bar%5Cx2d1%3A2.service/object");
        fl_buf_reset(&b);
        ASSERT_OK(fl_http_client_escape(&b, "a b&c=d/e+f%~", true));
        ASSERT_STREQ(fl_buf_str(&b), "a+b%26c%3Dd%2Fe%2Bf%25~");
        fl_buf_reset(&b);
        ASSERT_OK(fl_http_client_escape(&b, "\xc3\xa9\n?#", false));
        ASSERT_STREQ(fl_buf_str(&b), "%C3%A9%0A%3F%23");
        fl_buf_done(&b);
}

/* Streamed bodies: drained by the caller while they arrive; the limit bounds what is buffered,
 * not the whole body; framing is checked as usual. */
TEST(parse_stream_body) {
        static const char head[] = OK200 "Transfer-Encoding: chunked\r\nX-Etcd-Index: 3\r\n\r\n";
        HttpResponseParser p;
        HttpResponse *h;
        size_t consumed, total = 0;
        int r = 0;

        fl_http_response_parser_init(&p, 0, 64, false);
        fl_http_response_parser_stream_body(&p);
        ASSERT_EQ(fl_http_response_parser_feed(&p, head, 10, &consumed), 0);
        ASSERT_NULL(fl_http_response_parser_head(&p));
        ASSERT_EQ(fl_http_response_parser_feed(&p, head + 10, sizeof(head) - 11, &consumed), 0);
        h = fl_http_response_parser_head(&p);
        ASSERT_NOT_NULL(h);
        ASSERT_EQ(h->status, 200);
        ASSERT_STREQ(fl_http_response_header(h, "X-Etcd-Index"), "3");
        ASSERT_EQ(h->body.len, 0);
        /* 1000 chunks of 40 bytes: 40,000 bytes through a 64-byte limit, drained each time. */
        for (int i = 0; i < 1000; i++) {
                char c[64];
                snprintf(c, sizeof(c), "28\r\n%039d\n\r\n", i);
                ASSERT_EQ(fl_http_response_parser_feed(&p, c, strlen(c), &consumed), 0);
                ASSERT_EQ(h->body.len, 40);
                ASSERT_EQ(atoi(h->body.data), i);
                total += h->body.len;
                fl_buf_consume(&h->body, h->body.len);
        }
        ASSERT_EQ(total, 40000);
        /* A chunk size beyond the limit is fine by itself (drained in pieces)... */
        ASSERT_EQ(fl_http_response_parser_feed(&p, "50\r\n", 4, &consumed), 0);
        ASSERT_EQ(fl_http_response_parser_feed(&p, "0123456789012345678901234567890123456789", 40, &consumed), 0);
        fl_buf_consume(&h->body, h->body.len);
        ASSERT_EQ(fl_http_response_parser_feed(&p, "0123456789012345678901234567890123456789\r\n", 42, &consumed), 0);
        fl_buf_consume(&h->body, h->body.len);
        /* ...and the end is checked as usual. */
        ASSERT_EQ(fl_http_response_parser_feed(&p, "0\r\n\r\nHTTP", 9, &consumed), 1);
        ASSERT_EQ(consumed, 5);
        ASSERT_NOT_NULL(fl_http_response_parser_head(&p));
        _cleanup_(fl_http_response_freep) HttpResponse *done = fl_http_response_parser_take(&p);
        ASSERT_TRUE(done->keep_alive);
        ASSERT_EQ(done->body.len, 0);
        fl_http_response_parser_done(&p);

        /* Not drained: over the limit. */
        fl_http_response_parser_init(&p, 0, 64, false);
        fl_http_response_parser_stream_body(&p);
        ASSERT_EQ(fl_http_response_parser_feed(&p, head, sizeof(head) - 1, &consumed), 0);
        for (int i = 0; i < 10 && r == 0; i++)
                r = fl_http_response_parser_feed(&p, "a\r\n0123456789\r\n", 15, &consumed);
        ASSERT_ERR(r, -EMSGSIZE);
        ASSERT_NULL(fl_http_response_parser_head(&p));
        fl_http_response_parser_done(&p);

        /* Content-Length beyond the limit, and a read-until-close body, drained. */
        fl_http_response_parser_init(&p, 0, 8, false);
        fl_http_response_parser_stream_body(&p);
        ASSERT_EQ(fl_http_response_parser_feed(&p, OK200 "Content-Length: 12\r\n\r\nabcdef", sizeof(OK200) + 27, &consumed), 0);
        h = fl_http_response_parser_head(&p);
        ASSERT_STREQ(h->body.data, "abcdef");
        fl_buf_consume(&h->body, 6);
        ASSERT_EQ(fl_http_response_parser_feed(&p, "ghijkl", 6, &consumed), 1);
        ASSERT_STREQ(h->body.data, "ghijkl");
        fl_http_response_parser_done(&p);

        /* Bad framing after streamed data is still an error. */
        fl_http_response_parser_init(&p, 0, 0, false);
        fl_http_response_parser_stream_body(&p);
        ASSERT_EQ(fl_http_response_parser_feed(&p, head, sizeof(head) - 1, &consumed), 0);
        ASSERT_EQ(fl_http_response_parser_feed(&p, "2\r\n{}\r\n", 7, &consumed), 0);
        ASSERT_ERR(fl_http_response_parser_feed(&p, "zz\r\n", 4, &consumed), -EBADMSG);
        fl_http_response_parser_done(&p);
        fl_http_response_parser_init(&p, 0, 0, false);
        fl_http_response_parser_stream_body(&p);
        ASSERT_EQ(fl_http_response_parser_feed(&p, head, sizeof(head) - 1, &consumed), 0);
        ASSERT_EQ(fl_http_response_parser_feed(&p, "2\r\n{}", 5, &consumed), 0);
        ASSERT_ERR(fl_http_response_parser_eof(&p), -EBADMSG);
        fl_http_response_parser_done(&p);
}

TEST_MAIN(T(parse_table), T(parse_headers_access), T(parse_error_sticks), T(parse_head_limit),
          T(parse_default_body_limit), T(parse_stream_body), T(write_request), T(escape))
