/* SPDX-License-Identifier: MIT */
/* fuzz-http-request: the API server's HTTP/1.1 request parser (lib/http-server.h). The first
 * input byte picks how the rest, a stream of pipelined requests, is cut into reads; the
 * parser must give the same requests and the same verdict as when it gets the stream at once
 * (it keeps unconsumed tails, as the server does). Parsed requests then go through the
 * handler-side helpers (headers, query values, percent-decoding). */
#include <stdio.h>

#include "buf.h"
#include "fuzz.h"
#include "http-server.h"
#include "strv.h"

#define MAX_HEADER 1024U
#define MAX_BODY 4096U
#define MAX_REQUESTS 64U

typedef struct Outcome {
        Buf log;        /* one line per request, then the verdict */
        int verdict;    /* 0: wants more input, <0: refused */
        int status;
} Outcome;

static void describe(Buf *log, const HttpRequest *r) {
        FUZZ_CHECK(fl_buf_printf(log, "%s %s %s %s 1.%d ka=%d ec=%d h=%zu b=%zu:", r->method,
                                 r->target, r->path, strempty(r->query), r->version_minor,
                                 r->keep_alive, r->expect_continue, r->n_headers, r->body.len) >= 0);
        for (size_t i = 0; i < r->n_headers; i++)
                FUZZ_CHECK(fl_buf_printf(log, "[%s: %s]", r->headers[i].name, r->headers[i].value) >= 0);
        FUZZ_CHECK(fl_buf_append(log, fl_buf_str(&r->body), r->body.len) >= 0);
        FUZZ_CHECK(fl_buf_putc(log, '\n') >= 0);
}

static void check_request(HttpRequest *r) {
        _cleanup_strv_free_ char **values = NULL;
        _cleanup_free_ char *path = NULL;
        int n;

        FUZZ_CHECK(r->method && *r->method && r->target && r->path);
        FUZZ_CHECK(r->path[0] == '/' || streq(r->path, "*"));
        FUZZ_CHECK(r->version_minor >= 0 && r->version_minor <= 9);
        FUZZ_CHECK(r->body.len <= MAX_BODY);
        FUZZ_CHECK(!r->conn && !r->replied);
        if (r->version_minor >= 1)
                FUZZ_CHECK(fl_http_request_header_count(r, "host") == 1);
        for (size_t i = 0; i < r->n_headers; i++) {
                const HttpHeader *h = &r->headers[i];
                const char *first = fl_http_request_header(r, h->name);
                FUZZ_CHECK(*h->name && !strpbrk(h->name, ": \t"));
                FUZZ_CHECK(first);
                FUZZ_CHECK(fl_http_request_header_count(r, h->name) >= 1);
                FUZZ_CHECK(!strchr(h->value, '\r') && !strchr(h->value, '\n'));
        }

        /* What the API does with a request. */
        n = fl_http_query_values(r->query, "nextPageToken", &values);
        FUZZ_CHECK(n >= 0 && (size_t) n == fl_strv_length(values));
        fl_strv_free(values);
        values = NULL;
        n = fl_http_query_values(r->query, "", &values);
        FUZZ_CHECK(n >= 0 && (size_t) n == fl_strv_length(values));
        if (fl_http_unescape(r->path, strlen(r->path), false, &path) == 0)
                FUZZ_CHECK(strlen(path) <= strlen(r->path));
        (void) fl_http_status_reason(r->version_minor * 100 + (int) r->n_headers);
        FUZZ_CHECK(fl_http_request_add_header(r, "X-Test", "1") == 0);
        FUZZ_CHECK(fl_http_request_reply(r, 200, "text/plain", "ok", 2) == -ENOTCONN);
        FUZZ_CHECK(!fl_http_request_is_orphan(r) || !r->conn);
}

/* Feeds data[0..size) in reads of at most step bytes (0: all at once). */
static void run(const char *data, size_t size, size_t step, bool check, Outcome *out) {
        HttpParser p;
        size_t start = 0, end = 0;
        unsigned n_req = 0;

        fl_http_parser_init(&p, MAX_HEADER, MAX_BODY);
        *out = (Outcome) { BUF_INIT, 0, 0 };
        end = step == 0 ? size : MIN(size, step);
        for (;;) {
                size_t consumed = 0;
                int r;

                r = fl_http_parser_feed(&p, data + start, end - start, &consumed);
                if (r < 0) {
                        FUZZ_CHECK(p.state == HTTP_PARSE_ERROR && p.error && p.status >= 400 && p.status < 600);
                        out->verdict = r;
                        out->status = p.status;
                        break;
                }
                FUZZ_CHECK(consumed <= end - start);
                start += consumed;
                if (r == 1) {
                        _cleanup_(fl_http_request_unrefp) HttpRequest *req = fl_http_parser_take(&p);
                        FUZZ_CHECK(req);
                        FUZZ_CHECK(!fl_http_parser_peek(&p) && !fl_http_parser_in_body(&p));
                        describe(&out->log, req);
                        if (check)
                                check_request(req);
                        if (++n_req >= MAX_REQUESTS)
                                break;
                        continue;
                }
                FUZZ_CHECK(r == 0);
                FUZZ_CHECK(!fl_http_parser_take(&p));
                if (end == size)
                        break;
                end = MIN(size, end + step); /* the next read */
        }
        fl_http_parser_done(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Outcome whole, pieces;
        size_t step;

        if (size < 1 || size > 64 * 1024)
                return 0;
        step = 1 + data[0] % 17;
        data++;
        size--;

        run((const char *) data, size, 0, true, &whole);
        run((const char *) data, size, step, false, &pieces);
        if (whole.verdict != pieces.verdict || !streq(fl_buf_str(&whole.log), fl_buf_str(&pieces.log)))
                fprintf(stderr, "whole: %d %d\n%s\nin pieces of %zu: %d %d\n%s\n", whole.verdict,
                        whole.status, fl_buf_str(&whole.log), step, pieces.verdict, pieces.status,
                        fl_buf_str(&pieces.log));
        FUZZ_CHECK(whole.verdict == pieces.verdict && whole.status == pieces.status);
        FUZZ_CHECK(whole.log.len == pieces.log.len &&
                   memcmp(fl_buf_str(&whole.log), fl_buf_str(&pieces.log), whole.log.len) == 0);
        fl_buf_done(&whole.log);
        fl_buf_done(&pieces.log);
        return 0;
}
