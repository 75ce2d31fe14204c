/* SPDX-License-Identifier: MIT */
/* fuzz-etcd-response: what the etcd client reads from the network: the incremental HTTP/1.1
 * response parser of lib/http.h (status line, headers, Content-Length, chunked,
 * read-until-close, interim 1xx, keep-alive streams), then every response through the etcd v2
 * decoder (fl_etcd_response_decode: nodes, errors, index headers) and the decoded node tree
 * into the registry's key tree and a snapshot, as the mirror does. Input: a flags byte (bit 0:
 * the request was HEAD; bit 1: it was a watch; the rest: how the stream is cut into reads),
 * then the bytes the server sent. Reading in pieces must give the same responses as reading
 * all at once.
 *
 * The request side is checked too, against our own server: a request written by
 * fl_http_client_write_request parses back (lib/http-server.h) to the same method, target,
 * Host and body, and fl_http_client_escape round-trips through fl_http_unescape. */
#include <stdio.h>

#include "etcd.h"
#include "fuzz.h"
#include "http-server.h"
#include "http.h"
#include "registry-internal.h"
#include "strv.h"

#define MAX_HEAD 2048U
#define MAX_BODY 8192U
#define MAX_RESPONSES 32U

typedef struct Outcome {
        Buf log;
        int verdict; /* 1: ended cleanly, 0: cut short, <0: refused */
} Outcome;

static void describe(Buf *log, const HttpResponse *r) {
        FUZZ_CHECK(fl_buf_printf(log, "%d 1.%d ka=%d h=%zu b=%zu:", r->status, r->version_minor, r->keep_alive,
                                 r->n_headers, r->body.len) >= 0);
        for (size_t i = 0; i < r->n_headers; i++)
                FUZZ_CHECK(fl_buf_printf(log, "[%s: %s]", r->headers[i].name, r->headers[i].value) >= 0);
        FUZZ_CHECK(fl_buf_append(log, fl_buf_str(&r->body), r->body.len) >= 0);
        FUZZ_CHECK(fl_buf_putc(log, '\n') >= 0);
}

static void check_response(const HttpResponse *r, bool head) {
        FUZZ_CHECK(r->status >= 200 && r->status <= 599);
        FUZZ_CHECK(r->version_minor == 0 || r->version_minor == 1);
        FUZZ_CHECK(r->body.len <= MAX_BODY);
        if (head || r->status == 204 || r->status == 304)
                FUZZ_CHECK(r->body.len == 0);
        if (r->body.len > 0)
                FUZZ_CHECK(r->body.data[r->body.len] == 0);
        for (size_t i = 0; i < r->n_headers; i++) {
                FUZZ_CHECK(*r->headers[i].name && !strpbrk(r->headers[i].name, ": \t\r\n"));
                FUZZ_CHECK(!strpbrk(r->headers[i].value, "\r\n"));
                FUZZ_CHECK(fl_http_response_header(r, r->headers[i].name));
        }
}

static unsigned node_check(const EtcdNode *n, unsigned depth) {
        unsigned count = 1;

        FUZZ_CHECK(depth <= 64 + 1);
        if (n->dir)
                FUZZ_CHECK(!n->value);
        FUZZ_CHECK(n->n_nodes == 0 || n->nodes);
        for (size_t i = 0; i < n->n_nodes; i++) {
                FUZZ_CHECK(n->nodes[i]);
                count += node_check(n->nodes[i], depth + 1);
        }
        return count;
}

/* What the etcd client does with a reply, then what the registry mirror does with its nodes. */
static void etcd_decode(const HttpResponse *h, bool watch) {
        _cleanup_(fl_etcd_response_freep) EtcdResponse *e = NULL;
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *snap = NULL;
        Registry reg = { .prefix = (char *) "/_coreos.com/fleet" };
        RegTree tree = {};
        int r;

        r = fl_etcd_response_decode(h, watch, &e);
        if (r == 0)
                FUZZ_CHECK(e && e->action && e->node && h->status >= 200 && h->status < 300);
        if (!e) {
                FUZZ_CHECK(r == -EBADMSG || r == -ENOMEM);
                return;
        }
        FUZZ_CHECK(e->http_status == h->status);
        if (r < 0 && e->error_code != 0)
                FUZZ_CHECK(r == fl_etcd_error_to_errno(e->error_code));
        if (e->node)
                (void) node_check(e->node, 0);
        if (e->prev_node)
                (void) node_check(e->prev_node, 0);

        FUZZ_CHECK(fl_reg_tree_add_etcd(&reg, &tree, e->node) == 0);
        FUZZ_CHECK(fl_reg_snapshot_build(&tree, e->etcd_index, &snap) == 0);
        fl_reg_tree_clear(&tree);
}

static void run(const char *data, size_t size, bool head, bool watch, size_t step, Outcome *out) {
        HttpResponseParser p;
        size_t pos = 0;
        unsigned n = 0;

        fl_http_response_parser_init(&p, MAX_HEAD, MAX_BODY, head);
        *out = (Outcome) { BUF_INIT, 0 };
        for (;;) {
                size_t len = step == 0 ? size - pos : MIN(step, size - pos), consumed = 0;
                int r;

                if (len == 0) {
                        /* the server closed the connection */
                        if (!fl_http_response_parser_started(&p) && p.state == HTTP_RESPONSE_STATUS_LINE) {
                                out->verdict = 1;
                                break;
                        }
                        r = fl_http_response_parser_eof(&p);
                        if (r < 0) {
                                FUZZ_CHECK(p.state == HTTP_RESPONSE_ERROR);
                                out->verdict = r;
                                break;
                        }
                        FUZZ_CHECK(r == 1);
                } else {
                        r = fl_http_response_parser_feed(&p, data + pos, len, &consumed);
                        if (r < 0) {
                                FUZZ_CHECK(p.state == HTTP_RESPONSE_ERROR && p.error);
                                FUZZ_CHECK(fl_http_response_parser_feed(&p, "x", 1, &consumed) < 0);
                                out->verdict = r;
                                break;
                        }
                        FUZZ_CHECK(consumed <= len);
                        if (r == 0)
                                FUZZ_CHECK(consumed == len);
                        pos += consumed;
                }
                if (r == 1) {
                        _cleanup_(fl_http_response_freep) HttpResponse *resp = fl_http_response_parser_take(&p);
                        FUZZ_CHECK(resp);
                        check_response(resp, head);
                        describe(&out->log, resp);
                        if (step == 0)
                                etcd_decode(resp, watch);
                        if (len == 0 || ++n >= MAX_RESPONSES || !resp->keep_alive) {
                                out->verdict = 1;
                                break;
                        }
                }
        }
        fl_http_response_parser_done(&p);
}

static void responses(const uint8_t *data, size_t size) {
        Outcome whole, pieces;
        bool head, watch;
        size_t step;

        if (size < 1)
                return;
        head = data[0] & 1;
        watch = data[0] & 2;
        step = 1 + (data[0] >> 2) % 23;
        run((const char *) data + 1, size - 1, head, watch, 0, &whole);
        run((const char *) data + 1, size - 1, head, watch, step, &pieces);
        if ((whole.verdict < 0) != (pieces.verdict < 0) || !streq(fl_buf_str(&whole.log), fl_buf_str(&pieces.log)))
                fprintf(stderr, "whole: %d\n%s\nin pieces of %zu: %d\n%s\n", whole.verdict, fl_buf_str(&whole.log),
                        step, pieces.verdict, fl_buf_str(&pieces.log));
        /* Errors may differ in kind (a NUL in a line that is also too long), not in existence. */
        FUZZ_CHECK((whole.verdict < 0) == (pieces.verdict < 0));
        FUZZ_CHECK(whole.log.len == pieces.log.len &&
                   memcmp(fl_buf_str(&whole.log), fl_buf_str(&pieces.log), whole.log.len) == 0);
        fl_buf_done(&whole.log);
        fl_buf_done(&pieces.log);
}

static bool is_token(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      strchr("!#$%&'*+-.^_`|~", *s)))
                        return false;
        return true;
}

/* Fields "method\0target\0host\0header\0body": write, then parse with the API server's parser. */
static void request(const uint8_t *data, size_t size) {
        const char *f[5] = {};
        size_t body_len = 0, i = 0, k = 0;
        _cleanup_free_ char *copy = NULL;
        char *extra[2] = {};
        Buf out = BUF_INIT;
        HttpParser p;
        size_t consumed = 0;
        int r;

        copy = malloc(size + 1);
        FUZZ_CHECK(copy);
        memcpy(copy, data, size);
        copy[size] = 0;
        for (; k < 4 && i <= size; k++) {
                f[k] = copy + i;
                i += strlen(copy + i) + 1;
        }
        if (k < 4 || i > size)
                return;
        f[4] = copy + i;
        body_len = size - i;
        if (*f[3])
                extra[0] = (char *) f[3];

        r = fl_http_client_write_request(&out, f[0], f[1], f[2], extra, "application/json", f[4], body_len);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL);
                FUZZ_CHECK(out.len == 0);
                return;
        }
        fl_http_parser_init(&p, 64 * 1024, 64 * 1024);
        r = fl_http_parser_feed(&p, fl_buf_str(&out), out.len, &consumed);
        /* A plain request must come through; odd methods or targets may be refused. */
        if (is_token(f[0]) && f[1][0] == '/' && strspn(f[1], "/abcdefghijklmnopqrstuvwxyz0123456789%?&=.-_") == strlen(f[1]) &&
            strspn(f[2], "abcdefghijklmnopqrstuvwxyz0123456789.:-") == strlen(f[2]) && !extra[0]) {
                if (r != 1)
                        fprintf(stderr, "server refuses our request (%s): %s\n", strempty(p.error), fl_buf_str(&out));
                FUZZ_CHECK(r == 1);
        }
        if (r == 1) {
                _cleanup_(fl_http_request_unrefp) HttpRequest *req = fl_http_parser_take(&p);
                FUZZ_CHECK(consumed == out.len);
                FUZZ_CHECK_STREQ(req->method, f[0]);
                FUZZ_CHECK_STREQ(req->target, f[1]);
                FUZZ_CHECK(req->body.len == body_len && memcmp(fl_buf_str(&req->body), f[4], body_len) == 0);
                if (!extra[0] || strncasecmp(extra[0], "host:", 5) != 0) {
                        /* our value, trimmed the way the server trims it */
                        const char *h = fl_http_request_header(req, "Host");
                        FUZZ_CHECK(h);
                        FUZZ_CHECK(strlen(h) <= strlen(f[2]) && strstr(f[2], h));
                }
        }
        fl_http_parser_done(&p);
        fl_buf_done(&out);
}

static void escaping(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_strndup(data, size), *back = NULL, *back2 = NULL;
        Buf path = BUF_INIT, form = BUF_INIT;

        FUZZ_CHECK(s);
        FUZZ_CHECK(fl_http_client_escape(&path, s, false) == 0);
        FUZZ_CHECK(fl_http_client_escape(&form, s, true) == 0);
        FUZZ_CHECK(!strpbrk(fl_buf_str(&path), " ?#&+\r\n"));
        FUZZ_CHECK(!strpbrk(fl_buf_str(&form), " /?#&=\r\n"));
        FUZZ_CHECK(fl_http_unescape(fl_buf_str(&path), path.len, false, &back) == 0);
        FUZZ_CHECK_STREQ(back, s);
        FUZZ_CHECK(fl_http_unescape(fl_buf_str(&form), form.len, true, &back2) == 0);
        FUZZ_CHECK_STREQ(back2, s);
        fl_buf_done(&path);
        fl_buf_done(&form);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 64 * 1024)
                return 0;
        responses(data, size);
        request(data, size);
        escaping(data, size);
        return 0;
}
