/* SPDX-License-Identifier: MIT */
/* http.c: HTTP/1.1 client messages: request writer and incremental response parser.
 *
 * The parser trusts nothing: it is fed whatever a (possibly hostile or broken) server sends.
 * It is strict where leniency would be ambiguous (conflicting lengths, folded headers, junk in
 * chunk sizes) and bounded everywhere (head size, body size, chunk sizes that overflow). */
#include <strings.h>

#include "http.h"
#include "log.h"

HttpResponse *fl_http_response_free(HttpResponse *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; i < r->n_headers; i++) {
                free(r->headers[i].name);
                free(r->headers[i].value);
        }
        free(r->headers);
        fl_buf_done(&r->body);
        free(r);
        return NULL;
}

const char *fl_http_response_header(const HttpResponse *r, const char *name) {
        for (size_t i = 0; i < r->n_headers; i++)
                if (strcasecmp(r->headers[i].name, name) == 0)
                        return r->headers[i].value;
        return NULL;
}

void fl_http_response_parser_init(HttpResponseParser *p, size_t max_header_bytes, size_t max_body_bytes,
                                  bool head) {
        *p = (HttpResponseParser) {
                .state = HTTP_RESPONSE_STATUS_LINE,
                .max_header_bytes = max_header_bytes ?: FL_HTTP_CLIENT_MAX_HEADER_BYTES,
                .max_body_bytes = max_body_bytes ?: FL_HTTP_CLIENT_DEFAULT_MAX_BODY_BYTES,
                .no_body = head,
                .line = BUF_INIT,
        };
}

void fl_http_response_parser_done(HttpResponseParser *p) {
        fl_buf_done(&p->line);
        p->resp = fl_http_response_free(p->resp);
}

bool fl_http_response_parser_started(const HttpResponseParser *p) {
        return p->resp || p->line.len > 0;
}

void fl_http_response_parser_stream_body(HttpResponseParser *p) {
        p->stream_body = true;
}

HttpResponse *fl_http_response_parser_head(HttpResponseParser *p) {
        switch (p->state) {
        case HTTP_RESPONSE_BODY:
        case HTTP_RESPONSE_BODY_EOF:
        case HTTP_RESPONSE_CHUNK_SIZE:
        case HTTP_RESPONSE_CHUNK_DATA:
        case HTTP_RESPONSE_CHUNK_END:
        case HTTP_RESPONSE_TRAILERS:
        case HTTP_RESPONSE_DONE:
                return p->resp;
        default:
                return NULL;
        }
}

HttpResponse *fl_http_response_parser_take(HttpResponseParser *p) {
        HttpResponse *r;

        if (p->state != HTTP_RESPONSE_DONE)
                return NULL;
        r = TAKE_PTR(p->resp);
        fl_buf_reset(&p->line);
        p->state = HTTP_RESPONSE_STATUS_LINE;
        p->header_bytes = 0;
        p->remaining = 0;
        return r;
}

static int fail(HttpResponseParser *p, int r, const char *why) {
        p->state = HTTP_RESPONSE_ERROR;
        p->error = why;
        log_debug("http: bad response: %s", why);
        return r;
}

/* RFC 9110 token characters (header names). */
static bool is_tchar(char c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                return true;
        return c && strchr("!#$%&'*+-.^_`|~", c);
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* Case-insensitive search for token t in a comma separated header value. */
static bool list_has_token(const char *v, const char *t) {
        size_t tl = strlen(t);

        while (*v) {
                size_t l;
                while (*v == ' ' || *v == '\t' || *v == ',')
                        v++;
                l = strcspn(v, ",");
                while (l > 0 && (v[l - 1] == ' ' || v[l - 1] == '\t'))
                        l--;
                if (l == tl && strncasecmp(v, t, tl) == 0)
                        return true;
                v += strcspn(v, ",");
        }
        return false;
}

static int parse_status_line(HttpResponseParser *p, const char *l) {
        const char *s;
        int status;

        s = startswith(l, "HTTP/1.");
        if (!s || (s[0] != '0' && s[0] != '1') || s[1] != ' ')
                return fail(p, -EBADMSG, "bad status line");
        if (!is_digit(s[2]) || !is_digit(s[3]) || !is_digit(s[4]) || (s[5] != 0 && s[5] != ' '))
                return fail(p, -EBADMSG, "bad status code");
        status = (s[2] - '0') * 100 + (s[3] - '0') * 10 + (s[4] - '0');
        if (status < 100 || status > 599)
                return fail(p, -EBADMSG, "status code out of range");
        /* The reason phrase may hold anything printable (and obs-text); control bytes no. */
        for (const char *c = s + 5; *c; c++)
                if ((unsigned char) *c < 0x20 && *c != '\t')
                        return fail(p, -EBADMSG, "control character in reason phrase");

        p->resp = new0(HttpResponse, 1);
        if (!p->resp)
                return fail(p, -ENOMEM, "out of memory");
        p->resp->version_minor = s[0] - '0';
        p->resp->status = status;
        p->state = HTTP_RESPONSE_HEADERS;
        return 0;
}

static int add_header(HttpResponseParser *p, const char *l) {
        HttpResponse *r = p->resp;
        const char *colon = strchr(l, ':'), *v, *e;
        HttpField *h;

        if (!colon || colon == l)
                return fail(p, -EBADMSG, "header line without name");
        for (const char *c = l; c < colon; c++)
                if (!is_tchar(*c))
                        return fail(p, -EBADMSG, "bad character in header name");
        v = colon + 1;
        while (*v == ' ' || *v == '\t')
                v++;
        e = v + strlen(v);
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
        for (const char *c = v; c < e; c++)
                if ((unsigned char) *c < 0x20 && *c != '\t')
                        return fail(p, -EBADMSG, "control character in header value");
        /* The head is bounded by max_header_bytes, so the count of lines is too. */
        h = realloc(r->headers, (r->n_headers + 1) * sizeof(HttpField));
        if (!h)
                return fail(p, -ENOMEM, "out of memory");
        r->headers = h;
        h[r->n_headers] = (HttpField) {
                .name = strndup(l, colon - l),
                .value = strndup(v, e - v),
        };
        r->n_headers++;
        if (!h[r->n_headers - 1].name || !h[r->n_headers - 1].value)
                return fail(p, -ENOMEM, "out of memory");
        return 0;
}

/* The head is complete: decide how the body is framed (RFC 9112 §6.3). */
static int end_of_head(HttpResponseParser *p) {
        HttpResponse *r = p->resp;
        bool chunked = false, have_length = false, close = false, keep_alive = false;
        uint64_t length = 0;

        for (size_t i = 0; i < r->n_headers; i++) {
                const char *n = r->headers[i].name, *v = r->headers[i].value;

                if (strcasecmp(n, "Content-Length") == 0) {
                        uint64_t l = 0;
                        if (!*v)
                                return fail(p, -EBADMSG, "empty Content-Length");
                        for (const char *c = v; *c; c++) {
                                if (!is_digit(*c))
                                        return fail(p, -EBADMSG, "bad Content-Length");
                                if (l > (UINT64_MAX - 9) / 10)
                                        return fail(p, -EBADMSG, "Content-Length overflows");
                                l = l * 10 + (uint64_t) (*c - '0');
                        }
                        /* Repeats are allowed only when they agree (else: smuggling). */
                        if (have_length && l != length)
                                return fail(p, -EBADMSG, "conflicting Content-Length");
                        have_length = true;
                        length = l;
                } else if (strcasecmp(n, "Transfer-Encoding") == 0) {
                        /* Only "chunked", and only once: we never ask for compressed codings. */
                        if (chunked || strcasecmp(v, "chunked") != 0)
                                return fail(p, -EBADMSG, "unsupported Transfer-Encoding");
                        chunked = true;
                } else if (strcasecmp(n, "Connection") == 0) {
                        if (list_has_token(v, "close"))
                                close = true;
                        if (list_has_token(v, "keep-alive"))
                                keep_alive = true;
                }
        }
        if (chunked && have_length)
                return fail(p, -EBADMSG, "both Content-Length and chunked");

        r->keep_alive = !close && (r->version_minor >= 1 || keep_alive);

        if (r->status >= 100 && r->status < 200) {
                if (r->status == 101)
                        return fail(p, -EBADMSG, "unexpected protocol switch");
                /* Interim response (100 Continue, 103 Early Hints): the real one follows. */
                p->resp = fl_http_response_free(p->resp);
                p->state = HTTP_RESPONSE_STATUS_LINE;
                p->header_bytes = 0;
                return 0;
        }
        if (p->no_body || r->status == 204 || r->status == 304) {
                p->state = HTTP_RESPONSE_DONE;
                return 1;
        }
        if (chunked) {
                p->header_bytes = 0;
                p->state = HTTP_RESPONSE_CHUNK_SIZE;
                return 0;
        }
        if (have_length) {
                if (!p->stream_body && length > p->max_body_bytes)
                        return fail(p, -EMSGSIZE, "body too large");
                p->remaining = length;
                if (length == 0) {
                        p->state = HTTP_RESPONSE_DONE;
                        return 1;
                }
                p->state = HTTP_RESPONSE_BODY;
                return 0;
        }
        /* Neither: the body runs until the server closes, and the connection is spent. */
        r->keep_alive = false;
        p->state = HTTP_RESPONSE_BODY_EOF;
        return 0;
}

static int parse_chunk_size(HttpResponseParser *p, const char *l) {
        uint64_t size = 0;
        const char *c = l;

        if (fl_unhex_char(*c) < 0)
                return fail(p, -EBADMSG, "bad chunk size");
        for (; fl_unhex_char(*c) >= 0; c++) {
                if (size > (UINT64_MAX >> 4))
                        return fail(p, -EBADMSG, "chunk size overflows");
                size = (size << 4) | (uint64_t) fl_unhex_char(*c);
        }
        while (*c == ' ' || *c == '\t')
                c++;
        /* Chunk extensions are allowed and ignored; anything else after the size is junk. */
        if (*c != 0 && *c != ';')
                return fail(p, -EBADMSG, "junk after chunk size");
        for (; *c; c++)
                if ((unsigned char) *c < 0x20 && *c != '\t')
                        return fail(p, -EBADMSG, "control character in chunk extension");
        if (size == 0) {
                p->header_bytes = 0;
                p->state = HTTP_RESPONSE_TRAILERS;
                return 0;
        }
        /* Streamed bodies are bounded as they are buffered (see feed), not per chunk. */
        if (!p->stream_body && size > p->max_body_bytes - p->resp->body.len)
                return fail(p, -EMSGSIZE, "body too large");
        p->remaining = size;
        p->state = HTTP_RESPONSE_CHUNK_DATA;
        return 0;
}

/* One complete line (without its line end) in the current state. */
static int handle_line(HttpResponseParser *p, const char *l) {
        switch (p->state) {
        case HTTP_RESPONSE_STATUS_LINE:
                /* RFC 9112 §2.2: a client may ignore empty lines before the status line (left
                 * over CRLF from a previous body some servers send). Bounded by header_bytes. */
                if (!*l)
                        return 0;
                return parse_status_line(p, l);
        case HTTP_RESPONSE_HEADERS:
                if (!*l)
                        return end_of_head(p);
                if (*l == ' ' || *l == '\t')
                        /* obs-fold: RFC 9112 §5.2 lets us reject it, and we do. */
                        return fail(p, -EBADMSG, "folded header line");
                return add_header(p, l);
        case HTTP_RESPONSE_CHUNK_SIZE:
                return parse_chunk_size(p, l);
        case HTTP_RESPONSE_CHUNK_END:
                if (*l)
                        return fail(p, -EBADMSG, "chunk data longer than its size");
                p->state = HTTP_RESPONSE_CHUNK_SIZE;
                return 0;
        case HTTP_RESPONSE_TRAILERS:
                if (!*l) {
                        p->state = HTTP_RESPONSE_DONE;
                        return 1;
                }
                /* Trailer fields are validated like headers but not kept. */
                if (*l == ' ' || *l == '\t' || !strchr(l, ':') || *l == ':')
                        return fail(p, -EBADMSG, "bad trailer line");
                for (const char *c = l; *c != ':'; c++)
                        if (!is_tchar(*c))
                                return fail(p, -EBADMSG, "bad character in trailer name");
                return 0;
        default:
                return fail(p, -EBADMSG, "internal: line in body state");
        }
}

static size_t line_limit(const HttpResponseParser *p) {
        return p->max_header_bytes;
}

int fl_http_response_parser_feed(HttpResponseParser *p, const void *data, size_t len, size_t *ret_consumed) {
        const char *d = data;
        size_t i = 0;
        int r;

        if (p->state == HTTP_RESPONSE_ERROR)
                return -EBADMSG;
        if (p->state == HTTP_RESPONSE_DONE) {
                *ret_consumed = 0;
                return 1;
        }

        while (i < len) {
                switch (p->state) {
                case HTTP_RESPONSE_BODY:
                case HTTP_RESPONSE_CHUNK_DATA: {
                        size_t n = (size_t) MIN((uint64_t) (len - i), p->remaining);
                        if (p->stream_body && n > p->max_body_bytes - MIN(p->max_body_bytes, p->resp->body.len))
                                return fail(p, -EMSGSIZE, "body too large");
                        r = fl_buf_append(&p->resp->body, d + i, n);
                        if (r < 0)
                                return fail(p, r, "out of memory");
                        i += n;
                        p->remaining -= n;
                        if (p->remaining == 0) {
                                if (p->state == HTTP_RESPONSE_BODY) {
                                        p->state = HTTP_RESPONSE_DONE;
                                        *ret_consumed = i;
                                        return 1;
                                }
                                p->state = HTTP_RESPONSE_CHUNK_END;
                        }
                        continue;
                }
                case HTTP_RESPONSE_BODY_EOF: {
                        size_t n = len - i;
                        if (n > p->max_body_bytes - MIN(p->max_body_bytes, p->resp->body.len))
                                return fail(p, -EMSGSIZE, "body too large");
                        r = fl_buf_append(&p->resp->body, d + i, n);
                        if (r < 0)
                                return fail(p, r, "out of memory");
                        i = len;
                        continue;
                }
                case HTTP_RESPONSE_DONE:
                        *ret_consumed = i;
                        return 1;
                case HTTP_RESPONSE_ERROR:
                        return -EBADMSG;
                default:
                        break;
                }

                /* Line states: collect up to LF. */
                const char *nl = memchr(d + i, '\n', len - i);
                size_t n = nl ? (size_t) (nl - (d + i)) + 1 : len - i;

                if (memchr(d + i, 0, n))
                        return fail(p, -EBADMSG, "NUL byte in head");
                /* The head (and each trailer section) is bounded as a whole; a chunk size line
                 * is bounded by the same limit so that a server cannot stream an endless one. */
                if (n > line_limit(p) - MIN(line_limit(p), p->header_bytes + p->line.len))
                        return fail(p, -EMSGSIZE, "head too large");
                r = fl_buf_append(&p->line, d + i, n);
                if (r < 0)
                        return fail(p, r, "out of memory");
                i += n;
                if (!nl)
                        continue;

                /* A complete line: strip LF and an optional CR; a stray CR elsewhere is junk. */
                size_t ll = p->line.len - 1;
                if (ll > 0 && p->line.data[ll - 1] == '\r')
                        ll--;
                if (memchr(p->line.data, '\r', ll))
                        return fail(p, -EBADMSG, "bare CR in head");
                p->line.data[ll] = 0;
                if (p->state == HTTP_RESPONSE_CHUNK_SIZE || p->state == HTTP_RESPONSE_CHUNK_END)
                        p->header_bytes = 0;
                else
                        p->header_bytes += p->line.len;
                r = handle_line(p, p->line.data);
                fl_buf_reset(&p->line);
                if (r < 0)
                        return r;
                if (r > 0) {
                        *ret_consumed = i;
                        return 1;
                }
        }
        *ret_consumed = i;
        return 0;
}

int fl_http_response_parser_eof(HttpResponseParser *p) {
        if (p->state == HTTP_RESPONSE_DONE)
                return 1;
        if (p->state == HTTP_RESPONSE_BODY_EOF) {
                p->state = HTTP_RESPONSE_DONE;
                return 1;
        }
        if (p->state == HTTP_RESPONSE_ERROR)
                return -EBADMSG;
        return fail(p, -EBADMSG, "connection closed before the response was complete");
}

static bool field_ok(const char *s) {
        return !strpbrk(s, "\r\n");
}

int fl_http_client_write_request(Buf *out, const char *method, const char *target, const char *host,
                                 char *const *extra_headers, const char *content_type, const void *body,
                                 size_t body_len) {
        size_t start = out->len;
        int r;

        if (!field_ok(method) || strpbrk(method, " \t") || !field_ok(target) || strpbrk(target, " \t") ||
            !field_ok(host) || (content_type && !field_ok(content_type)))
                return -EINVAL;
        for (char *const *h = extra_headers; h && *h; h++)
                if (!field_ok(*h) || !strchr(*h, ':'))
                        return -EINVAL;

        /* (Every etcd request goes through here: no printf.) */
        r = fl_buf_cat(out, method, " ", target, " HTTP/1.1\r\nHost: ", host, "\r\n", NULL);
        for (char *const *h = extra_headers; r >= 0 && h && *h; h++)
                r = fl_buf_cat(out, *h, "\r\n", NULL);
        if (r >= 0 && body) {
                if (content_type)
                        r = fl_buf_cat(out, "Content-Type: ", content_type, "\r\n", NULL);
                if (r >= 0)
                        r = fl_buf_puts(out, "Content-Length: ");
                if (r >= 0)
                        r = fl_buf_put_u64(out, body_len);
                if (r >= 0)
                        r = fl_buf_puts(out, "\r\n");
        }
        if (r >= 0)
                r = fl_buf_puts(out, "\r\n");
        if (r >= 0 && body)
                r = fl_buf_append(out, body, body_len);
        if (r < 0) {
                /* Leave out as it was: a half-written request must never go on the wire. */
                out->len = start;
                if (out->data)
                        out->data[start] = 0;
        }
        return r;
}

int fl_http_client_escape(Buf *out, const char *s, bool form) {
        static const char hex[] = "0123456789ABCDEF";
        int r = 0;

        for (const unsigned char *c = (const unsigned char *) s; *c && r >= 0; c++) {
                if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                    *c == '-' || *c == '_' || *c == '.' || *c == '~' || (!form && *c == '/'))
                        r = fl_buf_putc(out, (char) *c);
                else if (form && *c == ' ')
                        r = fl_buf_putc(out, '+');
                else {
                        char e[3] = { '%', hex[*c >> 4], hex[*c & 15] };
                        r = fl_buf_append(out, e, 3);
                }
        }
        return r;
}
