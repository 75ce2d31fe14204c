/* SPDX-License-Identifier: MIT */
/* http-server.c: HTTP/1.1 server side on sd-event: parser, connections, listeners. */
#include <assert.h>
#include <fcntl.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "http-server.h"
#include "log.h"

/* A chunk-size line ("1a2b;ext=x") longer than this is garbage, not a slow client. */
#define CHUNK_LINE_MAX 4096U
/* Input kept for pipelined requests while one is being handled; reading pauses above it. */
#define PIPELINE_BUFFER_MAX (64U * 1024U)
#define READ_CHUNK (64U * 1024U)
/* After the last reply of a connection we shut our side down and drain the client's input
 * for a moment: closing with unread input would send an RST that can destroy the reply. */
#define LINGER_USEC (2ULL * 1000000ULL)
#define LINGER_DISCARD_MAX (4U * 1024U * 1024U)
/* Connections beyond max_connections are answered 503 on a small side budget, then refused
 * outright. */
#define REJECTING_MAX 32U
#define ACCEPT_RETRY_USEC (100ULL * 1000ULL)

/* ---- Requests ---- */

static HttpRequest *request_new(void) {
        HttpRequest *r = new0(HttpRequest, 1);
        if (!r)
                return NULL;
        r->n_ref = 1;
        return r;
}

HttpRequest *fl_http_request_ref(HttpRequest *r) {
        if (r)
                r->n_ref++;
        return r;
}

HttpRequest *fl_http_request_unref(HttpRequest *r) {
        if (!r || --r->n_ref > 0)
                return NULL;
        free(r->method);
        free(r->target);
        free(r->path);
        free(r->query);
        for (size_t i = 0; i < r->n_headers; i++) {
                free(r->headers[i].name);
                free(r->headers[i].value);
        }
        free(r->headers);
        fl_buf_done(&r->body);
        fl_buf_done(&r->reply_headers);
        return mfree(r);
}

const char *fl_http_request_header(const HttpRequest *r, const char *name) {
        for (size_t i = 0; i < r->n_headers; i++)
                if (strcasecmp(r->headers[i].name, name) == 0)
                        return r->headers[i].value;
        return NULL;
}

size_t fl_http_request_header_count(const HttpRequest *r, const char *name) {
        size_t n = 0;
        for (size_t i = 0; i < r->n_headers; i++)
                if (strcasecmp(r->headers[i].name, name) == 0)
                        n++;
        return n;
}

int fl_http_request_add_header(HttpRequest *r, const char *name, const char *value) {
        return fl_buf_printf(&r->reply_headers, "%s: %s\r\n", name, value);
}

bool fl_http_request_is_orphan(const HttpRequest *r) {
        return !r->conn;
}

/* ---- Parser ---- */

static bool is_tchar(unsigned char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(const char *s, size_t n) {
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!s[i] || !is_tchar((unsigned char) s[i]))
                        return false;
        return true;
}

void fl_http_parser_init(HttpParser *p, size_t max_header_bytes, size_t max_body_bytes) {
        *p = (HttpParser) {
                .state = HTTP_PARSE_REQUEST_LINE,
                .max_header_bytes = max_header_bytes ?: FL_HTTP_DEFAULT_MAX_HEADER_BYTES,
                .max_body_bytes = max_body_bytes ?: FL_HTTP_DEFAULT_MAX_BODY_BYTES,
        };
}

void fl_http_parser_done(HttpParser *p) {
        p->req = fl_http_request_unref(p->req);
}

bool fl_http_parser_in_body(const HttpParser *p) {
        return p->state == HTTP_PARSE_BODY || p->state == HTTP_PARSE_CHUNK_SIZE ||
               p->state == HTTP_PARSE_CHUNK_DATA || p->state == HTTP_PARSE_CHUNK_END ||
               p->state == HTTP_PARSE_TRAILERS;
}

const HttpRequest *fl_http_parser_peek(const HttpParser *p) {
        return p->req;
}

HttpRequest *fl_http_parser_take(HttpParser *p) {
        HttpRequest *r;

        if (p->state != HTTP_PARSE_DONE)
                return NULL;
        r = TAKE_PTR(p->req);
        p->state = HTTP_PARSE_REQUEST_LINE;
        p->header_bytes = 0;
        p->remaining = 0;
        return r;
}

static int status_errno(int status) {
        switch (status) {
        case 413:
        case 414:
        case 431:
                return -EMSGSIZE;
        case 501:
                return -EOPNOTSUPP;
        case 505:
                return -EPROTONOSUPPORT;
        case 500:
                return -ENOMEM;
        default:
                return -EBADMSG;
        }
}

static int parser_fail(HttpParser *p, int status, const char *error) {
        p->state = HTTP_PARSE_ERROR;
        p->status = status;
        p->error = error;
        return status_errno(status);
}

static int parse_request_line(HttpParser *p, const char *line, size_t n) {
        _cleanup_(fl_http_request_unrefp) HttpRequest *r = NULL;
        const char *sp1, *sp2, *t, *q, *v;
        size_t tlen;

        sp1 = memchr(line, ' ', n);
        sp2 = memrchr(line, ' ', n);
        if (!sp1 || sp1 == sp2)
                return parser_fail(p, 400, "malformed request line");
        if (!is_token(line, sp1 - line))
                return parser_fail(p, 400, "malformed method");

        t = sp1 + 1;
        tlen = sp2 - t;
        if (tlen == 0)
                return parser_fail(p, 400, "malformed request target");
        for (size_t i = 0; i < tlen; i++)
                if ((unsigned char) t[i] <= 0x20 || (unsigned char) t[i] >= 0x7f)
                        return parser_fail(p, 400, "malformed request target");

        v = sp2 + 1;
        if ((size_t) (line + n - v) != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
            v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
                return parser_fail(p, 400, "malformed HTTP version");
        if (v[5] != '1')
                return parser_fail(p, 505, "HTTP version not supported");

        r = request_new();
        if (!r)
                return parser_fail(p, 500, "out of memory");
        r->version_minor = v[7] - '0';
        r->keep_alive = r->version_minor >= 1;
        r->method = strndup(line, sp1 - line);
        r->target = strndup(t, tlen);
        if (!r->method || !r->target)
                return parser_fail(p, 500, "out of memory");

        /* origin-form "/path?query"; absolute-form "http://host/path?query" (RFC 9112 3.2.2
         * says servers must accept it); "*" only for OPTIONS. We are no proxy: no CONNECT. */
        t = r->target;
        if (t[0] != '/') {
                const char *rest = NULL;
                if (strncasecmp(t, "http://", 7) == 0)
                        rest = t + 7;
                else if (strncasecmp(t, "https://", 8) == 0)
                        rest = t + 8;
                if (rest) {
                        t = strchr(rest, '/') ?: "/";
                        if (t == rest)
                                return parser_fail(p, 400, "malformed request target");
                } else if (streq(t, "*") && streq(r->method, "OPTIONS"))
                        t = "*";
                else
                        return parser_fail(p, 400, "malformed request target");
        }
        q = strchr(t, '?');
        r->path = q ? strndup(t, q - t) : strdup(t);
        if (!r->path)
                return parser_fail(p, 500, "out of memory");
        if (q) {
                r->query = strdup(q + 1);
                if (!r->query)
                        return parser_fail(p, 500, "out of memory");
        }
        p->req = TAKE_PTR(r);
        p->state = HTTP_PARSE_HEADERS;
        return 0;
}

/* Splits "Name: value" and checks it; *ret_name/_value point into line. */
static int split_header(HttpParser *p, char *line, size_t n, char **ret_name, char **ret_value) {
        char *colon, *value, *end;

        if (line[0] == ' ' || line[0] == '\t')
                /* obs-fold: RFC 9112 5.2 lets a server reject it with 400. */
                return parser_fail(p, 400, "obsolete header line folding");
        colon = memchr(line, ':', n);
        if (!colon || !is_token(line, colon - line))
                return parser_fail(p, 400, "malformed header line");
        value = colon + 1;
        end = line + n;
        while (value < end && (*value == ' ' || *value == '\t'))
                value++;
        while (end > value && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
        for (char *c = value; c < end; c++) {
                unsigned char u = (unsigned char) *c;
                if ((u < 0x20 && u != '\t') || u == 0x7f)
                        return parser_fail(p, 400, "invalid character in header value");
        }
        *colon = 0;
        *end = 0;
        *ret_name = line;
        *ret_value = value;
        return 0;
}

static int add_header(HttpParser *p, const char *name, const char *value) {
        HttpRequest *r = p->req;
        HttpHeader *h;

        h = realloc(r->headers, sizeof(HttpHeader) * (r->n_headers + 1));
        if (!h)
                return parser_fail(p, 500, "out of memory");
        r->headers = h;
        h[r->n_headers].name = strdup(name);
        h[r->n_headers].value = strdup(value);
        if (!h[r->n_headers].name || !h[r->n_headers].value) {
                free(h[r->n_headers].name);
                free(h[r->n_headers].value);
                return parser_fail(p, 500, "out of memory");
        }
        r->n_headers++;
        return 0;
}

/* Calls fn(token, len, userdata) for every element of a comma-separated header list over all
 * occurrences of name; empty elements are skipped (RFC 9110 5.6.1). */
static int header_list_foreach(const HttpRequest *r, const char *name,
                               int (*fn)(const char *t, size_t n, void *userdata), void *userdata) {
        for (size_t i = 0; i < r->n_headers; i++) {
                const char *s;
                if (strcasecmp(r->headers[i].name, name) != 0)
                        continue;
                s = r->headers[i].value;
                for (;;) {
                        size_t n = strcspn(s, ",");
                        const char *a = s, *b = s + n;
                        int k;
                        while (a < b && (*a == ' ' || *a == '\t'))
                                a++;
                        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                                b--;
                        if (b > a) {
                                k = fn(a, b - a, userdata);
                                if (k != 0)
                                        return k;
                        }
                        if (!s[n])
                                break;
                        s += n + 1;
                }
        }
        return 0;
}

static bool token_eq(const char *t, size_t n, const char *word) {
        return strlen(word) == n && strncasecmp(t, word, n) == 0;
}

typedef struct ConnectionFlags {
        bool close, keep_alive;
} ConnectionFlags;

static int on_connection_token(const char *t, size_t n, void *userdata) {
        ConnectionFlags *f = userdata;
        if (token_eq(t, n, "close"))
                f->close = true;
        else if (token_eq(t, n, "keep-alive"))
                f->keep_alive = true;
        return 0;
}

typedef struct TransferCodings {
        unsigned n, n_chunked;
        bool last_chunked, unknown;
} TransferCodings;

static int on_transfer_coding(const char *t, size_t n, void *userdata) {
        TransferCodings *c = userdata;
        size_t l = strcspn(t, ";");        /* parameters do not matter for the name */
        l = MIN(l, n);
        while (l > 0 && (t[l - 1] == ' ' || t[l - 1] == '\t'))
                l--;
        c->n++;
        c->last_chunked = token_eq(t, l, "chunked");
        if (c->last_chunked)
                c->n_chunked++;
        else
                c->unknown = true;
        return 0;
}

static int finish_head(HttpParser *p) {
        HttpRequest *r = p->req;
        ConnectionFlags cf = {};
        TransferCodings tc = {};
        const char *cl = NULL, *expect;
        uint64_t length = 0;

        if (r->version_minor >= 1 && fl_http_request_header_count(r, "Host") != 1)
                return parser_fail(p, 400, "exactly one Host header required");

        (void) header_list_foreach(r, "Connection", on_connection_token, &cf);
        if (cf.close)
                r->keep_alive = false;
        else if (cf.keep_alive)
                r->keep_alive = true;

        expect = fl_http_request_header(r, "Expect");
        r->expect_continue = r->version_minor >= 1 && expect && strcasecmp(expect, "100-continue") == 0;

        /* Message framing (RFC 9112 6.3). Both Transfer-Encoding and Content-Length is how
         * request smuggling starts: refuse it rather than pick one. */
        (void) header_list_foreach(r, "Transfer-Encoding", on_transfer_coding, &tc);
        for (size_t i = 0; i < r->n_headers; i++) {
                const char *v = r->headers[i].value;
                uint64_t l = 0;

                if (strcasecmp(r->headers[i].name, "Content-Length") != 0)
                        continue;
                if (!*v)
                        return parser_fail(p, 400, "malformed Content-Length");
                for (const char *c = v; *c; c++) {
                        if (*c < '0' || *c > '9')
                                return parser_fail(p, 400, "malformed Content-Length");
                        if (l > (UINT64_MAX - 9) / 10)
                                return parser_fail(p, 413, "request body too large");
                        l = l * 10 + (uint64_t) (*c - '0');
                }
                if (cl && l != length)
                        return parser_fail(p, 400, "conflicting Content-Length headers");
                cl = v;
                length = l;
        }
        if (fl_http_request_header_count(r, "Transfer-Encoding") > 0) {
                if (cl)
                        return parser_fail(p, 400, "both Transfer-Encoding and Content-Length");
                if (r->version_minor == 0)
                        return parser_fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
                if (tc.n == 0 || !tc.last_chunked || tc.n_chunked > 1)
                        return tc.unknown && tc.n_chunked == 0
                                       ? parser_fail(p, 501, "unsupported transfer coding")
                                       : parser_fail(p, 400, "malformed Transfer-Encoding");
                if (tc.unknown)
                        return parser_fail(p, 501, "unsupported transfer coding");
                p->state = HTTP_PARSE_CHUNK_SIZE;
                return 0;
        }
        if (length > p->max_body_bytes)
                return parser_fail(p, 413, "request body too large");
        if (length == 0) {
                p->state = HTTP_PARSE_DONE;
                return 0;
        }
        if (fl_buf_grow(&r->body, (size_t) length) < 0)
                return parser_fail(p, 500, "out of memory");
        p->remaining = length;
        p->state = HTTP_PARSE_BODY;
        return 0;
}

static int parse_chunk_size(HttpParser *p, const char *line, size_t n) {
        uint64_t size = 0;
        size_t i = 0;

        for (; i < n; i++) {
                char c = line[i];
                int d;
                if (c >= '0' && c <= '9')
                        d = c - '0';
                else if (c >= 'a' && c <= 'f')
                        d = c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        d = c - 'A' + 10;
                else
                        break;
                if (i >= 15)
                        return parser_fail(p, 400, "malformed chunk size");
                size = size * 16 + (uint64_t) d;
        }
        if (i == 0)
                return parser_fail(p, 400, "malformed chunk size");
        while (i < n && (line[i] == ' ' || line[i] == '\t'))
                i++;
        if (i < n && line[i] != ';')
                return parser_fail(p, 400, "malformed chunk size");
        for (; i < n; i++) {
                unsigned char u = (unsigned char) line[i];
                if ((u < 0x20 && u != '\t') || u == 0x7f)
                        return parser_fail(p, 400, "malformed chunk extension");
        }

        if (size == 0) {
                p->state = HTTP_PARSE_TRAILERS;
                p->header_bytes = 0;
                return 0;
        }
        if (size > p->max_body_bytes - p->req->body.len)
                return parser_fail(p, 413, "request body too large");
        p->remaining = size;
        p->state = HTTP_PARSE_CHUNK_DATA;
        return 0;
}

/* One complete line (without its LF, a CR before it already removed). */
static int parse_line(HttpParser *p, char *line, size_t n) {
        char *name, *value;
        int r;

        if (memchr(line, '\r', n) || memchr(line, 0, n))
                return parser_fail(p, 400, "stray CR or NUL in request head");

        switch (p->state) {
        case HTTP_PARSE_REQUEST_LINE:
                if (n == 0)
                        return 0; /* RFC 9112 2.2: ignore empty lines before a request */
                return parse_request_line(p, line, n);
        case HTTP_PARSE_HEADERS:
                if (n == 0)
                        return finish_head(p);
                r = split_header(p, line, n, &name, &value);
                if (r < 0)
                        return r;
                return add_header(p, name, value);
        case HTTP_PARSE_TRAILERS:
                /* Trailer fields are checked and dropped: nothing of ours reads them. */
                if (n == 0) {
                        p->state = HTTP_PARSE_DONE;
                        return 0;
                }
                return split_header(p, line, n, &name, &value);
        case HTTP_PARSE_CHUNK_SIZE:
                return parse_chunk_size(p, line, n);
        case HTTP_PARSE_CHUNK_END:
                if (n != 0)
                        return parser_fail(p, 400, "missing CRLF after chunk data");
                p->state = HTTP_PARSE_CHUNK_SIZE;
                return 0;
        default:
                return parser_fail(p, 500, "parser in wrong state");
        }
}

static bool head_state(HttpParseState s) {
        return s == HTTP_PARSE_REQUEST_LINE || s == HTTP_PARSE_HEADERS || s == HTTP_PARSE_TRAILERS;
}

int fl_http_parser_feed(HttpParser *p, const char *data, size_t len, size_t *ret_consumed) {
        size_t pos = 0;
        int r;

        for (;;) {
                switch (p->state) {
                case HTTP_PARSE_DONE:
                        *ret_consumed = pos;
                        return 1;
                case HTTP_PARSE_ERROR:
                        *ret_consumed = pos;
                        return status_errno(p->status);
                case HTTP_PARSE_BODY:
                case HTTP_PARSE_CHUNK_DATA: {
                        size_t n = (size_t) MIN((uint64_t) (len - pos), p->remaining);
                        if (n == 0) {
                                *ret_consumed = pos;
                                return 0;
                        }
                        if (fl_buf_append(&p->req->body, data + pos, n) < 0)
                                return parser_fail(p, 500, "out of memory");
                        pos += n;
                        p->remaining -= n;
                        if (p->remaining == 0)
                                p->state = p->state == HTTP_PARSE_BODY ? HTTP_PARSE_DONE
                                                                       : HTTP_PARSE_CHUNK_END;
                        break;
                }
                default: {
                        const char *nl = memchr(data + pos, '\n', len - pos);
                        size_t avail = nl ? (size_t) (nl - (data + pos)) + 1 : len - pos;
                        size_t limit;
                        _cleanup_free_ char *line = NULL;
                        size_t n;

                        if (head_state(p->state))
                                limit = p->max_header_bytes - p->header_bytes;
                        else if (p->state == HTTP_PARSE_CHUNK_SIZE)
                                limit = CHUNK_LINE_MAX;
                        else
                                limit = 2; /* CRLF after chunk data */
                        /* A line that cannot fit any more is refused at once, before the client
                         * finished sending it. */
                        if (avail > limit) {
                                if (p->state == HTTP_PARSE_REQUEST_LINE)
                                        return parser_fail(p, 414, "request line too long");
                                if (head_state(p->state))
                                        return parser_fail(p, 431, "request header fields too large");
                                return parser_fail(p, 400, p->state == HTTP_PARSE_CHUNK_SIZE
                                                                   ? "chunk size line too long"
                                                                   : "missing CRLF after chunk data");
                        }
                        if (!nl) {
                                *ret_consumed = pos;
                                return 0;
                        }
                        n = avail - 1;
                        if (n > 0 && data[pos + n - 1] == '\r')
                                n--;
                        line = strndup(data + pos, n);
                        if (!line)
                                return parser_fail(p, 500, "out of memory");
                        /* strndup stops at a NUL: compare lengths to catch one. */
                        if (strlen(line) != n)
                                return parser_fail(p, 400, "stray CR or NUL in request head");
                        if (head_state(p->state))
                                p->header_bytes += avail;
                        pos += avail;
                        r = parse_line(p, line, n);
                        if (r < 0)
                                return r;
                        break;
                }
                }
        }
}

/* ---- Pure helpers ---- */

const char *fl_http_status_reason(int status) {
        switch (status) {
        case 100: return "Continue";
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 301: return "Moved Permanently";
        case 304: return "Not Modified";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 411: return "Length Required";
        case 413: return "Request Entity Too Large";
        case 414: return "Request URI Too Long";
        case 415: return "Unsupported Media Type";
        case 417: return "Expectation Failed";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        default: return "Unknown";
        }
}

int fl_http_unescape(const char *s, size_t n, bool plus_as_space, char **ret) {
        _cleanup_free_ char *out = new(char, n + 1);
        size_t j = 0;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '%') {
                        int hi, lo;
                        if (i + 2 >= n)
                                return -EINVAL;
                        hi = fl_unhex_char(s[i + 1]);
                        lo = fl_unhex_char(s[i + 2]);
                        if (hi < 0 || lo < 0)
                                return -EINVAL;
                        c = (char) (hi * 16 + lo);
                        i += 2;
                } else if (c == '+' && plus_as_space)
                        c = ' ';
                if (c == 0)
                        return -EINVAL;
                out[j++] = c;
        }
        out[j] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

int fl_http_query_values(const char *query, const char *key, char ***ret) {
        char **values = NULL;
        size_t n_values = 0;
        const char *s = query;

        while (s && *s) {
                size_t len = strcspn(s, "&;");
                const char *eq = memchr(s, '=', len);
                size_t klen = eq ? (size_t) (eq - s) : len;
                _cleanup_free_ char *k = NULL, *v = NULL;

                if (len > 0 && fl_http_unescape(s, klen, true, &k) >= 0 && streq(k, key) &&
                    fl_http_unescape(eq ? eq + 1 : s + len, eq ? len - klen - 1 : 0, true, &v) >= 0) {
                        char **a = realloc(values, sizeof(char *) * (n_values + 2));
                        if (!a) {
                                for (size_t i = 0; i < n_values; i++)
                                        free(values[i]);
                                free(values);
                                return -ENOMEM;
                        }
                        values = a;
                        values[n_values++] = TAKE_PTR(v);
                        values[n_values] = NULL;
                }
                s += len;
                if (*s)
                        s++;
        }
        *ret = values;
        return (int) n_values;
}

/* ---- TLS ---- */

struct HttpTls {
        unsigned n_ref;
        mbedtls_ssl_config conf;
        mbedtls_x509_crt cert, ca;
        mbedtls_pk_context key;
        mbedtls_entropy_context entropy;
        mbedtls_ctr_drbg_context drbg;
};

HttpTls *fl_http_tls_ref(HttpTls *t) {
        if (t)
                t->n_ref++;
        return t;
}

HttpTls *fl_http_tls_unref(HttpTls *t) {
        if (!t || --t->n_ref > 0)
                return NULL;
        mbedtls_ssl_config_free(&t->conf);
        mbedtls_x509_crt_free(&t->cert);
        mbedtls_x509_crt_free(&t->ca);
        mbedtls_pk_free(&t->key);
        mbedtls_ctr_drbg_free(&t->drbg);
        mbedtls_entropy_free(&t->entropy);
        return mfree(t);
}

static int tls_error(int err, const char *what, const char *file, char **ret_error) {
        char msg[256];

        mbedtls_strerror(err, msg, sizeof(msg));
        if (ret_error && asprintf(ret_error, "%s '%s': %s", what, strempty(file), msg) < 0)
                *ret_error = NULL;
        return -EINVAL;
}

int fl_http_tls_new(const char *cert_file, const char *key_file, const char *ca_file, HttpTls **ret,
                    char **ret_error) {
        _cleanup_(fl_http_tls_unrefp) HttpTls *t = NULL;
        static const char pers[] = "fleet-api";
        int r;

        if (isempty(cert_file) || isempty(key_file)) {
                if (ret_error)
                        *ret_error = strdup("TLS needs both a certificate and a key file");
                return -EINVAL;
        }
        t = new0(HttpTls, 1);
        if (!t)
                return -ENOMEM;
        t->n_ref = 1;
        mbedtls_ssl_config_init(&t->conf);
        mbedtls_x509_crt_init(&t->cert);
        mbedtls_x509_crt_init(&t->ca);
        mbedtls_pk_init(&t->key);
        mbedtls_entropy_init(&t->entropy);
        mbedtls_ctr_drbg_init(&t->drbg);

        r = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy, (const unsigned char *) pers,
                                  sizeof(pers) - 1);
        if (r != 0)
                return tls_error(r, "Failed to seed the random generator for", cert_file, ret_error);
        r = mbedtls_x509_crt_parse_file(&t->cert, cert_file);
        if (r != 0)
                return tls_error(r, "Failed to load certificate", cert_file, ret_error);
        r = mbedtls_pk_parse_keyfile(&t->key, key_file, NULL);
        if (r != 0)
                return tls_error(r, "Failed to load key", key_file, ret_error);
        r = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT);
        if (r != 0)
                return tls_error(r, "Failed to set up TLS for", cert_file, ret_error);
        mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
        mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
        r = mbedtls_ssl_conf_own_cert(&t->conf, &t->cert, &t->key);
        if (r != 0)
                return tls_error(r, "Certificate and key do not go together", cert_file, ret_error);
        if (!isempty(ca_file)) {
                r = mbedtls_x509_crt_parse_file(&t->ca, ca_file);
                if (r != 0)
                        return tls_error(r, "Failed to load CA certificate", ca_file, ret_error);
                mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
                mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        } else
                mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
        *ret = TAKE_PTR(t);
        return 0;
}

/* ---- Connections ---- */

typedef struct Listener {
        HttpServer *server;
        int fd;
        sd_event_source *source;
        HttpTls *tls;
} Listener;

struct HttpConn {
        HttpServer *server;
        HttpConn *prev, *next;
        int fd;
        sd_event_source *io, *timer, *defer;
        Buf in, out;
        size_t out_off;
        HttpParser parser;
        HttpTls *tls;           /* NULL for plain HTTP */
        mbedtls_ssl_context *ssl;
        size_t tls_write_len;   /* length of a write mbedtls must be called again with */
        bool tls_want_write;    /* mbedtls waits for the socket to take more (handshake) */
        HttpRequest *current;   /* handed to the handler, not answered yet */
        HttpRequest *finished;  /* answered; released at the next safe point */
        uint64_t deadline;      /* CLOCK_MONOTONIC usec: next request must be in by then */
        uint64_t discarded;     /* bytes thrown away while lingering */
        bool rejecting;         /* over the connection limit: only a 503 */
        bool in_handler;
        bool eof;               /* the client shut its side */
        bool closing;           /* close once out is flushed */
        bool lingering;         /* our side is shut; draining input */
        bool continue_sent;
        bool dead;
};

struct HttpServer {
        sd_event *event;
        HttpServerOptions opts;
        char *server_name;
        char *error_content_type;
        HttpHandlerFn handler;
        void *userdata;
        Listener *listeners;
        size_t n_listeners;
        sd_event_source *accept_retry;
        HttpConn *conns;
        unsigned n_conns, n_rejecting;
        HttpServerStats stats;
        time_t date_time;       /* the second date_line was made for */
        char date_line[64];     /* "Date: ...\r\n", made once a second, not per reply */
};

static void conn_free(HttpConn *c) {
        HttpServer *s = c->server;

        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (c->rejecting)
                s->n_rejecting--;
        else
                s->n_conns--;

        if (c->current) {
                c->current->conn = NULL;
                c->current = fl_http_request_unref(c->current);
        }
        c->finished = fl_http_request_unref(c->finished);
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timer);
        sd_event_source_disable_unref(c->defer);
        if (c->ssl) {
                mbedtls_ssl_free(c->ssl);
                free(c->ssl);
        }
        fl_http_tls_unref(c->tls);
        safe_close(c->fd);
        fl_http_parser_done(&c->parser);
        fl_buf_done(&c->in);
        fl_buf_done(&c->out);
        free(c);
}

/* Appends the status line and the common headers. */
static int append_head(HttpConn *c, int status, const char *content_type, size_t len, bool keep_alive_1_0,
                       const Buf *extra) {
        HttpServer *s = c->server;
        time_t t = time(NULL);
        struct tm tm;
        int r;

        if (status < 100 || status > 599)
                return -EINVAL;
        if (t != s->date_time) {
                s->date_line[0] = 0;
                if (gmtime_r(&t, &tm) &&
                    strftime(s->date_line, sizeof(s->date_line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm) > 0)
                        s->date_time = t;
        }
        r = fl_buf_puts(&c->out, "HTTP/1.1 ");
        if (r >= 0)
                r = fl_buf_put_u64(&c->out, (unsigned) status);
        if (r >= 0)
                r = fl_buf_cat(&c->out, " ", fl_http_status_reason(status), "\r\n", NULL);
        if (r >= 0 && s->server_name)
                r = fl_buf_cat(&c->out, "Server: ", s->server_name, "\r\n", NULL);
        if (r >= 0)
                r = fl_buf_puts(&c->out, s->date_line);
        if (r >= 0 && content_type)
                r = fl_buf_cat(&c->out, "Content-Type: ", content_type, "\r\n", NULL);
        if (r >= 0 && status >= 200 && status != 204 && status != 304) {
                r = fl_buf_puts(&c->out, "Content-Length: ");
                if (r >= 0)
                        r = fl_buf_put_u64(&c->out, len);
                if (r >= 0)
                        r = fl_buf_puts(&c->out, "\r\n");
        }
        if (r >= 0 && c->closing)
                r = fl_buf_puts(&c->out, "Connection: close\r\n");
        else if (r >= 0 && keep_alive_1_0)
                r = fl_buf_puts(&c->out, "Connection: keep-alive\r\n");
        if (r >= 0 && extra && extra->len > 0)
                r = fl_buf_append(&c->out, extra->data, extra->len);
        if (r >= 0)
                r = fl_buf_puts(&c->out, "\r\n");
        return r;
}

static void count_response(HttpServer *s, int status) {
        int class = status / 100;
        if (class >= 1 && class <= 5)
                s->stats.responses[class]++;
}

/* A reply of our own (the request never reached the handler); the connection closes after. */
static void conn_send_error(HttpConn *c, int status, const char *message) {
        HttpServer *s = c->server;
        _cleanup_free_ char *body = NULL;
        const char *ct = "text/plain; charset=utf-8";

        if (s->opts.error_body) {
                body = s->opts.error_body(status, message, s->userdata);
                if (body)
                        ct = s->error_content_type ?: "application/json";
        }
        if (!body && asprintf(&body, "%s\n", message) < 0) {
                body = NULL;
                c->dead = true;
                return;
        }
        c->closing = true;
        if (append_head(c, status, ct, strlen(body), false, NULL) < 0 ||
            fl_buf_puts(&c->out, body) < 0) {
                c->dead = true;
                return;
        }
        count_response(s, status);
}

static void conn_start_linger(HttpConn *c) {
        if (c->eof) {
                c->dead = true;
                return;
        }
        if (c->ssl)
                (void) mbedtls_ssl_close_notify(c->ssl); /* best effort */
        (void) shutdown(c->fd, SHUT_WR);
        c->lingering = true;
        c->deadline = fl_now_usec() + LINGER_USEC;
        fl_buf_done(&c->in);
}

static void conn_flush(HttpConn *c) {
        while (!c->dead && c->out_off < c->out.len) {
                ssize_t n;

                if (c->ssl) {
                        /* After WANT_WRITE mbedtls must see the same length again: it already
                         * holds that record, and more may have been appended since. */
                        size_t len = c->tls_write_len ?: c->out.len - c->out_off;
                        int k = mbedtls_ssl_write(c->ssl, (const unsigned char *) c->out.data + c->out_off, len);
                        if (k == MBEDTLS_ERR_SSL_WANT_WRITE || k == MBEDTLS_ERR_SSL_WANT_READ) {
                                c->tls_write_len = len;
                                c->tls_want_write = k == MBEDTLS_ERR_SSL_WANT_WRITE;
                                return;
                        }
                        if (k < 0) {
                                c->dead = true;
                                return;
                        }
                        c->tls_write_len = 0;
                        c->out_off += (size_t) k;
                        continue;
                }
                n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                c->dead = true;
                        return;
                }
                c->out_off += (size_t) n;
        }
        if (c->dead || c->out_off < c->out.len)
                return;
        fl_buf_reset(&c->out);
        c->out_off = 0;
        if (c->closing && !c->lingering)
                conn_start_linger(c);
}

static bool tls_pending(HttpConn *c) {
        return c->ssl && (mbedtls_ssl_get_bytes_avail(c->ssl) > 0 || mbedtls_ssl_check_pending(c->ssl));
}

/* One mbedtls_ssl_read: >0 bytes, 0 EOF, -EAGAIN nothing now, other negative: connection dead. */
static ssize_t tls_read(HttpConn *c, char *buf, size_t len) {
        int k = mbedtls_ssl_read(c->ssl, (unsigned char *) buf, len);

        if (k > 0)
                return k;
        if (k == 0 || k == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || k == MBEDTLS_ERR_SSL_CONN_EOF)
                return 0;
        if (k == MBEDTLS_ERR_SSL_WANT_READ)
                return -EAGAIN;
        if (k == MBEDTLS_ERR_SSL_WANT_WRITE) {
                c->tls_want_write = true;
                return -EAGAIN;
        }
        {
                char msg[128];
                mbedtls_strerror(k, msg, sizeof(msg));
                log_debug("HTTP: TLS connection failed: %s", msg);
        }
        return -ECONNRESET;
}

static void conn_read(HttpConn *c) {
        /* Bounded for plain sockets (epoll reports the rest); TLS keeps decrypted bytes that
         * epoll cannot see, so conn_update() schedules another round for those. */
        for (unsigned i = 0; i < 16 && !c->eof && !c->dead; i++) {
                ssize_t n;

                if (c->lingering) {
                        char sink[4096];
                        n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
                        if (n > 0) {
                                c->discarded += (uint64_t) n;
                                if (c->discarded > LINGER_DISCARD_MAX)
                                        c->dead = true;
                                continue;
                        }
                } else {
                        if (c->current && c->in.len >= PIPELINE_BUFFER_MAX)
                                return;
                        if (c->closing)
                                fl_buf_reset(&c->in); /* nothing more will be parsed */
                        if (fl_buf_grow(&c->in, READ_CHUNK) < 0) {
                                c->dead = true;
                                return;
                        }
                        if (c->ssl) {
                                n = tls_read(c, c->in.data + c->in.len, READ_CHUNK);
                                if (n == -EAGAIN)
                                        return;
                                if (n < 0) {
                                        c->dead = true;
                                        return;
                                }
                        } else
                                n = recv(c->fd, c->in.data + c->in.len, READ_CHUNK, MSG_DONTWAIT);
                        if (n > 0) {
                                c->in.len += (size_t) n;
                                c->in.data[c->in.len] = 0;
                                continue;
                        }
                }
                if (n == 0) {
                        c->eof = true;
                        if (c->lingering)
                                c->dead = true;
                        return;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        c->dead = true; /* reset by peer: any pending request is orphaned */
                return;
        }
}

static void conn_process(HttpConn *c) {
        HttpServer *s = c->server;

        c->finished = fl_http_request_unref(c->finished);
        while (!c->dead && !c->current && !c->closing && !c->lingering) {
                HttpRequest *req;
                size_t consumed = 0;
                int r;

                if (c->in.len == 0) {
                        if (c->eof && c->out.len == 0 && !fl_http_parser_peek(&c->parser))
                                c->dead = true;
                        else if (c->eof)
                                c->closing = true;
                        break;
                }
                r = fl_http_parser_feed(&c->parser, c->in.data, c->in.len, &consumed);
                fl_buf_consume(&c->in, consumed);
                if (r < 0) {
                        s->stats.bad_requests++;
                        log_debug("HTTP: refusing request: %s", c->parser.error);
                        conn_send_error(c, c->parser.status, c->parser.error);
                        break;
                }
                if (r == 0) {
                        const HttpRequest *p = fl_http_parser_peek(&c->parser);
                        if (p && p->expect_continue && !c->continue_sent && fl_http_parser_in_body(&c->parser)) {
                                if (fl_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n") < 0)
                                        c->dead = true;
                                c->continue_sent = true;
                                count_response(s, 100);
                        }
                        if (c->eof) {
                                /* The client stopped sending in the middle of a request. */
                                c->closing = true;
                                c->dead = c->out.len == 0;
                        }
                        break;
                }

                req = fl_http_parser_take(&c->parser);
                req->conn = c;
                c->current = req;
                c->continue_sent = false;
                s->stats.requests++;
                c->in_handler = true;
                s->handler(s, req, s->userdata);
                c->in_handler = false;
                c->finished = fl_http_request_unref(c->finished);
        }
}

static bool conn_wants_read(HttpConn *c) {
        return !c->eof && (c->lingering || !c->current || c->in.len < PIPELINE_BUFFER_MAX);
}

/* Points the io and timer sources at what the connection waits for; frees it when done.
 * Only called from the connection's own event callbacks, never from inside the handler. */
static void conn_update(HttpConn *c) {
        uint32_t events = 0;

        if (c->dead) {
                conn_free(c);
                return;
        }
        if (conn_wants_read(c))
                events |= EPOLLIN;
        if (c->out_off < c->out.len || c->tls_want_write)
                events |= EPOLLOUT;
        /* After a half-close with a request still at the handler nothing else would watch the
         * socket (the timer is off too): stay registered, with no events, since epoll reports
         * HUP/ERR regardless, so a client that then goes away orphans the request. */
        if (events || (c->eof && c->current)) {
                (void) sd_event_source_set_io_events(c->io, events);
                (void) sd_event_source_set_enabled(c->io, SD_EVENT_ON);
        } else
                (void) sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        if (!c->lingering && conn_wants_read(c) && tls_pending(c))
                (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);

        if (c->current && c->out_off >= c->out.len)
                /* The handler owns the time now (its store writes have their own timeouts). */
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        else {
                (void) sd_event_source_set_time(c->timer, c->deadline);
                (void) sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        }
}

static void conn_run(HttpConn *c) {
        if (!c->lingering && conn_wants_read(c) && tls_pending(c))
                conn_read(c);
        conn_process(c);
        conn_flush(c);
        conn_update(c);
}

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        HttpConn *c = userdata;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_read(c);
        if (revents & EPOLLOUT) {
                bool handshake = c->tls_want_write && c->out_off >= c->out.len;
                c->tls_want_write = false;
                conn_flush(c);
                if (handshake)
                        conn_read(c); /* mbedtls continues the handshake from its read side */
        }
        /* HUP means both directions are gone (a unix socket whose peer closed, or a TCP reset):
         * nobody can read a reply, so pending requests become orphans. A mere half-close (FIN,
         * "shutdown(SHUT_WR)") is only EOF: the client still waits for its replies. */
        if (revents & (EPOLLHUP | EPOLLERR))
                c->dead = true;
        conn_run(c);
        return 0;
}

static int on_conn_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        HttpConn *c = userdata;

        if (c->lingering || c->out_off < c->out.len || c->current)
                c->dead = true;
        else if (c->in.len > 0 || fl_http_parser_peek(&c->parser)) {
                /* A request started but did not finish in time: slow or stuck client. */
                c->server->stats.connections_timed_out++;
                conn_send_error(c, 408, "request timeout");
                conn_flush(c);
        } else
                c->dead = true; /* idle keep-alive connection */
        conn_update(c);
        return 0;
}

static int on_conn_defer(sd_event_source *src, void *userdata) {
        conn_run(userdata);
        return 0;
}

int fl_http_request_reply(HttpRequest *r, int status, const char *content_type, const void *body,
                          size_t len) {
        HttpConn *c = r->conn;
        bool head, with_body;
        size_t mark;
        int k;

        if (r->replied)
                return -EALREADY;
        if (!c)
                return -ENOTCONN;
        assert(c->current == r);

        head = streq(r->method, "HEAD");
        with_body = !head && status >= 200 && status != 204 && status != 304;
        if (!r->keep_alive)
                c->closing = true;
        mark = c->out.len;
        k = append_head(c, status, content_type, len, r->keep_alive && r->version_minor == 0,
                        &r->reply_headers);
        if (k >= 0 && with_body && len > 0)
                k = fl_buf_append(&c->out, body, len);
        if (k < 0) {
                c->out.len = mark;
                if (c->out.data)
                        c->out.data[mark] = 0;
                return k;
        }
        count_response(c->server, status);

        r->replied = true;
        r->conn = NULL;
        c->current = NULL;
        c->finished = r; /* the connection's reference, dropped at a safe point */
        c->deadline = fl_now_usec() + c->server->opts.timeout_usec;
        if (!c->in_handler)
                (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
        return 0;
}

static int tls_send_cb(void *ctx, const unsigned char *buf, size_t len) {
        HttpConn *c = ctx;
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n >= 0)
                return (int) n;
        if (errno == EAGAIN || errno == EINTR)
                return MBEDTLS_ERR_SSL_WANT_WRITE;
        return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int tls_recv_cb(void *ctx, unsigned char *buf, size_t len) {
        HttpConn *c = ctx;
        ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);

        if (n >= 0)
                return (int) n;
        if (errno == EAGAIN || errno == EINTR)
                return MBEDTLS_ERR_SSL_WANT_READ;
        return MBEDTLS_ERR_NET_RECV_FAILED;
}

static int conn_new(HttpServer *s, int fd, HttpTls *tls, bool rejecting, HttpConn **ret) {
        HttpConn *c;
        int r;

        c = new0(HttpConn, 1);
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->server = s;
        c->fd = fd;
        c->rejecting = rejecting;
        c->deadline = fl_now_usec() + s->opts.timeout_usec;
        fl_http_parser_init(&c->parser, s->opts.max_header_bytes, s->opts.max_body_bytes);
        c->next = s->conns;
        if (s->conns)
                s->conns->prev = c;
        s->conns = c;
        if (rejecting)
                s->n_rejecting++;
        else
                s->n_conns++;

        if (tls) {
                c->tls = fl_http_tls_ref(tls);
                c->ssl = new0(mbedtls_ssl_context, 1);
                if (!c->ssl) {
                        conn_free(c);
                        return -ENOMEM;
                }
                mbedtls_ssl_init(c->ssl);
                if (mbedtls_ssl_setup(c->ssl, &tls->conf) != 0) {
                        conn_free(c);
                        return -ENOMEM;
                }
                mbedtls_ssl_set_bio(c->ssl, c, tls_send_cb, tls_recv_cb, NULL);
        }
        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, on_conn_io, c);
        if (r >= 0)
                r = sd_event_add_time(s->event, &c->timer, CLOCK_MONOTONIC, c->deadline, 100 * 1000,
                                      on_conn_timer, c);
        if (r >= 0)
                r = sd_event_add_defer(s->event, &c->defer, on_conn_defer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);
        if (r < 0) {
                conn_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* ---- Listeners ---- */

static void listeners_enable(HttpServer *s, int enabled) {
        for (size_t i = 0; i < s->n_listeners; i++)
                (void) sd_event_source_set_enabled(s->listeners[i].source, enabled);
}

static int on_accept_retry(sd_event_source *src, uint64_t usec, void *userdata) {
        listeners_enable(userdata, SD_EVENT_ON);
        return 0;
}

static int on_listener_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        Listener *l = userdata;
        HttpServer *s = l->server;

        /* Bounded, so one busy listener cannot starve the connections. */
        for (unsigned i = 0; i < 64; i++) {
                HttpConn *c;
                int cfd, r;

                cfd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* Out of fds: the listener would stay readable and spin; pause
                                 * accepting for a moment instead. */
                                log_debug("HTTP: accept() failed, pausing: %s", strerror(errno));
                                listeners_enable(s, SD_EVENT_OFF);
                                (void) sd_event_source_set_time_relative(s->accept_retry, ACCEPT_RETRY_USEC);
                                (void) sd_event_source_set_enabled(s->accept_retry, SD_EVENT_ONESHOT);
                                break;
                        }
                        continue; /* ECONNABORTED and friends: that client is gone */
                }
                if (s->n_conns >= s->opts.max_connections) {
                        s->stats.connections_rejected++;
                        if (s->n_rejecting >= REJECTING_MAX) {
                                safe_close(cfd);
                                continue;
                        }
                        if (conn_new(s, cfd, l->tls, true, &c) < 0)
                                continue;
                        conn_send_error(c, 503, "too many connections");
                        conn_flush(c);
                        conn_update(c);
                        continue;
                }
                r = conn_new(s, cfd, l->tls, false, &c);
                if (r < 0) {
                        log_debug("HTTP: failed to set up connection: %s", strerror(-r));
                        continue;
                }
                s->stats.connections_accepted++;
                conn_update(c);
        }
        return 0;
}

int fl_http_server_new(sd_event *event, const HttpServerOptions *opts, HttpHandlerFn handler,
                       void *userdata, HttpServer **ret) {
        _cleanup_(fl_http_server_freep) HttpServer *s = NULL;
        int r;

        s = new0(HttpServer, 1);
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->handler = handler;
        s->userdata = userdata;
        if (opts)
                s->opts = *opts;
        s->opts.max_header_bytes = s->opts.max_header_bytes ?: FL_HTTP_DEFAULT_MAX_HEADER_BYTES;
        s->opts.max_body_bytes = s->opts.max_body_bytes ?: FL_HTTP_DEFAULT_MAX_BODY_BYTES;
        s->opts.max_connections = s->opts.max_connections ?: FL_HTTP_DEFAULT_MAX_CONNECTIONS;
        s->opts.timeout_usec = s->opts.timeout_usec ?: FL_HTTP_DEFAULT_TIMEOUT_USEC;
        if (s->opts.server_name) {
                s->server_name = strdup(s->opts.server_name);
                if (!s->server_name)
                        return -ENOMEM;
        }
        if (s->opts.error_content_type) {
                s->error_content_type = strdup(s->opts.error_content_type);
                if (!s->error_content_type)
                        return -ENOMEM;
        }
        s->opts.server_name = s->opts.error_content_type = NULL;

        r = sd_event_add_time_relative(event, &s->accept_retry, CLOCK_MONOTONIC, ACCEPT_RETRY_USEC, 0,
                                       on_accept_retry, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(s->accept_retry, SD_EVENT_OFF);
        *ret = TAKE_PTR(s);
        return 0;
}

HttpServer *fl_http_server_free(HttpServer *s) {
        if (!s)
                return NULL;
        while (s->conns)
                conn_free(s->conns);
        for (size_t i = 0; i < s->n_listeners; i++) {
                sd_event_source_disable_unref(s->listeners[i].source);
                safe_close(s->listeners[i].fd);
                fl_http_tls_unref(s->listeners[i].tls);
        }
        free(s->listeners);
        sd_event_source_disable_unref(s->accept_retry);
        sd_event_unref(s->event);
        free(s->server_name);
        free(s->error_content_type);
        return mfree(s);
}

int fl_http_server_add_listener(HttpServer *s, int fd, HttpTls *tls) {
        _cleanup_close_ int owned = fd;
        Listener *l;
        int flags, v = 0, type = 0;
        socklen_t sl = sizeof(v);
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &sl) < 0)
                return -errno;
        sl = sizeof(type);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0)
                return -errno;
        if (!v || type != SOCK_STREAM)
                return -EINVAL;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);

        /* The array never moves once sources point into it... except here: re-point them. */
        l = realloc(s->listeners, sizeof(Listener) * (s->n_listeners + 1));
        if (!l)
                return -ENOMEM;
        s->listeners = l;
        for (size_t i = 0; i < s->n_listeners; i++)
                (void) sd_event_source_set_userdata(l[i].source, &l[i]);
        l = &s->listeners[s->n_listeners];
        *l = (Listener) { .server = s, .fd = fd };
        r = sd_event_add_io(s->event, &l->source, fd, EPOLLIN, on_listener_io, l);
        if (r < 0)
                return r;
        TAKE_FD(owned);
        l->tls = fl_http_tls_ref(tls);
        s->n_listeners++;
        return 0;
}

void fl_http_server_get_stats(const HttpServer *s, HttpServerStats *ret) {
        *ret = s->stats;
        ret->connections_open = s->n_conns;
}
