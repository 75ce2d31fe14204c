/* SPDX-License-Identifier: MIT */
/* http-server.h: the server side of HTTP/1.1 on sd-event, for fleetd's API.
 *
 * Two layers:
 *   - HttpParser: a pure, incremental request parser (request line, headers, Content-Length
 *     and chunked bodies) with size limits. It never does IO, so tests feed it tables of
 *     byte strings split at every position.
 *   - HttpServer: accepts on listening fds, reads requests with the parser, hands each complete
 *     request to one handler and writes the reply. Keep-alive and pipelining are supported;
 *     requests of one connection are answered strictly in order (the next is parsed only once
 *     the current one is answered). Malformed requests get an error reply and the connection
 *     is closed; a slow or idle client is dropped after the timeout.
 *
 * The handler may answer at once or later (after an async store write): it takes a reference
 * with fl_http_request_ref() and calls fl_http_request_reply() from any later loop iteration.
 * If the client went away meanwhile the reply is dropped (-ENOTCONN). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "buf.h"
#include "macro.h"

#define FL_HTTP_DEFAULT_MAX_HEADER_BYTES (16U * 1024U)
#define FL_HTTP_DEFAULT_MAX_BODY_BYTES (1024U * 1024U)
#define FL_HTTP_DEFAULT_MAX_CONNECTIONS 256U
#define FL_HTTP_DEFAULT_TIMEOUT_USEC (30ULL * 1000000ULL)

typedef struct HttpConn HttpConn;
typedef struct HttpServer HttpServer;

typedef struct HttpHeader {
        char *name;     /* as sent */
        char *value;    /* surrounding whitespace removed */
} HttpHeader;

typedef struct HttpRequest {
        unsigned n_ref;
        HttpConn *conn;         /* NULL once the connection is gone (or for parser-only use) */
        char *method;           /* "GET", case-sensitive as RFC 9110 wants */
        char *target;           /* request-target as sent */
        char *path;             /* path part of target, still percent-encoded */
        char *query;            /* after '?', NULL if none */
        int version_minor;      /* HTTP/1.<minor> */
        HttpHeader *headers;
        size_t n_headers;
        Buf body;               /* de-chunked */
        bool keep_alive;        /* the client allows another request on this connection */
        bool expect_continue;   /* "Expect: 100-continue" */
        bool replied;
        Buf reply_headers;      /* extra "Name: value\r\n" lines for the reply */
} HttpRequest;

HttpRequest *fl_http_request_ref(HttpRequest *r);
HttpRequest *fl_http_request_unref(HttpRequest *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpRequest *, fl_http_request_unref);

/* First value of header name (case-insensitive), borrowed; NULL if absent. */
const char *fl_http_request_header(const HttpRequest *r, const char *name);
/* How many times header name occurs. */
size_t fl_http_request_header_count(const HttpRequest *r, const char *name);
/* Adds "name: value" to the reply to come. 0 or -ENOMEM. */
int fl_http_request_add_header(HttpRequest *r, const char *name, const char *value);
/* Queues the reply: status line, Server, Date, Content-Type (if content_type is not NULL),
 * Content-Length (not for 1xx/204/304), the extra headers and body (not for HEAD, 204, 304).
 * Returns 0, -EALREADY if r was already answered, -ENOTCONN if the client is gone (the reply
 * is dropped; that is not an error for the handler), -ENOMEM. */
int fl_http_request_reply(HttpRequest *r, int status, const char *content_type, const void *body,
                          size_t len);
/* True once the connection of r was closed: nobody will read a reply. */
bool fl_http_request_is_orphan(const HttpRequest *r);

/* ---- Parser ---- */

typedef enum HttpParseState {
        HTTP_PARSE_REQUEST_LINE,
        HTTP_PARSE_HEADERS,
        HTTP_PARSE_BODY,
        HTTP_PARSE_CHUNK_SIZE,
        HTTP_PARSE_CHUNK_DATA,
        HTTP_PARSE_CHUNK_END,
        HTTP_PARSE_TRAILERS,
        HTTP_PARSE_DONE,
        HTTP_PARSE_ERROR,
} HttpParseState;

typedef struct HttpParser {
        HttpParseState state;
        size_t max_header_bytes;    /* request line + header lines (and trailer lines) */
        size_t max_body_bytes;
        size_t header_bytes;        /* consumed so far for the current head/trailer section */
        uint64_t remaining;         /* body bytes (Content-Length) or chunk bytes still to come */
        HttpRequest *req;           /* the request being parsed */
        int status;                 /* after an error: the status to answer with */
        const char *error;          /* after an error: why (static string) */
} HttpParser;

void fl_http_parser_init(HttpParser *p, size_t max_header_bytes, size_t max_body_bytes);
void fl_http_parser_done(HttpParser *p);
/* Parses data[0..len), which starts where the previous call's consumed bytes ended. Lines are
 * consumed only when complete, so the caller keeps the unconsumed tail and appends to it.
 * Returns 1 when a request is complete (*ret_consumed bytes, not more, belong to it; take it
 * with fl_http_parser_take()), 0 when more input is needed, or a negative errno for a request
 * we refuse: -EBADMSG (400), -EMSGSIZE (413/414/431), -EOPNOTSUPP (501),
 * -EPROTONOSUPPORT (505), -ENOMEM (500); p->status and p->error then tell what to answer and
 * the connection must be closed after that. */
int fl_http_parser_feed(HttpParser *p, const char *data, size_t len, size_t *ret_consumed);
/* True once the head of the current request is parsed (for "100 Continue"). */
bool fl_http_parser_in_body(const HttpParser *p);
/* Current request so far (borrowed), NULL before its request line. */
const HttpRequest *fl_http_parser_peek(const HttpParser *p);
/* After feed() returned 1: the request (owned by the caller); the parser is ready for the next. */
HttpRequest *fl_http_parser_take(HttpParser *p);

/* ---- Helpers for handlers (pure) ---- */

/* Reason phrase of status ("Not Found"); "Unknown" for codes we never send. */
const char *fl_http_status_reason(int status);
/* Percent-decodes s[0..n); plus_as_space for query components. -EINVAL for a bad escape or a
 * decoded NUL, -ENOMEM. */
int fl_http_unescape(const char *s, size_t n, bool plus_as_space, char **ret);
/* Every value of key in query (application/x-www-form-urlencoded, '&' or ';' separated), in
 * order, decoded; pairs that fail to decode are skipped (as Go's url.ParseQuery does). Returns
 * the number of values (0 and *ret = NULL when absent) or -ENOMEM. */
int fl_http_query_values(const char *query, const char *key, char ***ret);

/* ---- TLS ---- */

typedef struct HttpTls HttpTls;
/* Server-side TLS (1.2, mbedtls) with the certificate chain and private key from PEM files.
 * With ca_file, clients must present a certificate signed by it. Returns 0, or a negative
 * errno with *ret_error (owned, may be NULL on OOM) naming the file and mbedtls' reason. */
int fl_http_tls_new(const char *cert_file, const char *key_file, const char *ca_file, HttpTls **ret,
                    char **ret_error);
HttpTls *fl_http_tls_ref(HttpTls *t);
HttpTls *fl_http_tls_unref(HttpTls *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpTls *, fl_http_tls_unref);

/* ---- Server ---- */

typedef void (*HttpHandlerFn)(HttpServer *s, HttpRequest *r, void *userdata);
/* Body of replies the server generates itself (400 for garbage, 503 over the connection limit,
 * ...): returns a malloc()ed body for content_type, or NULL for the built-in plain text. */
typedef char *(*HttpErrorBodyFn)(int status, const char *message, void *userdata);

typedef struct HttpServerOptions {
        const char *server_name;        /* "Server:" header value, NULL for none */
        size_t max_header_bytes;        /* 0: FL_HTTP_DEFAULT_MAX_HEADER_BYTES */
        size_t max_body_bytes;          /* 0: FL_HTTP_DEFAULT_MAX_BODY_BYTES */
        unsigned max_connections;       /* 0: FL_HTTP_DEFAULT_MAX_CONNECTIONS */
        uint64_t timeout_usec;          /* 0: FL_HTTP_DEFAULT_TIMEOUT_USEC */
        HttpErrorBodyFn error_body;
        const char *error_content_type; /* for error_body's output */
} HttpServerOptions;

typedef struct HttpServerStats {
        uint64_t connections_accepted;
        uint64_t connections_rejected;  /* over max_connections: 503 and closed */
        uint64_t connections_timed_out;
        uint64_t requests;              /* complete requests handed to the handler */
        uint64_t bad_requests;          /* refused by the parser */
        uint64_t responses[6];          /* by class: [2] = 2xx ... [5] = 5xx; [1] = 1xx */
        unsigned connections_open;
} HttpServerStats;

int fl_http_server_new(sd_event *event, const HttpServerOptions *opts, HttpHandlerFn handler,
                       void *userdata, HttpServer **ret);
/* Closes every listener and connection; pending requests become orphans. */
HttpServer *fl_http_server_free(HttpServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, fl_http_server_free);
/* Serves on a listening socket, with TLS if tls is not NULL (the server takes a reference); the
 * fd is owned by the server from now on (closed on error too). Returns 0, -ENOTSOCK/-EINVAL if
 * fd is not a listening stream socket, -ENOMEM. */
int fl_http_server_add_listener(HttpServer *s, int fd, HttpTls *tls);
void fl_http_server_get_stats(const HttpServer *s, HttpServerStats *ret);
