/* SPDX-License-Identifier: MIT */
/* http.h: the client side of HTTP/1.1, for the etcd client: a request writer and a pure,
 * incremental response parser (status line, headers, Content-Length, chunked, read-until-close)
 * with strict size limits. No IO here: the caller feeds whatever bytes arrived, so tests can
 * split a response at every byte boundary.
 *
 * The server side (request parser, HttpServer) lives in http-server.h; the names here are kept
 * apart from it (HttpResponse, HttpField, fl_http_client_*, fl_http_response_*). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "macro.h"

/* Status line plus header lines (and, separately, trailer lines). */
#define FL_HTTP_CLIENT_MAX_HEADER_BYTES (64U * 1024U)
#define FL_HTTP_CLIENT_DEFAULT_MAX_BODY_BYTES (64U * 1024U * 1024U)

typedef struct HttpField {
        char *name;     /* as sent */
        char *value;    /* surrounding whitespace removed */
} HttpField;

typedef struct HttpResponse {
        int version_minor;      /* HTTP/1.<minor>: 0 or 1 */
        int status;             /* 100..599 */
        HttpField *headers;
        size_t n_headers;
        Buf body;               /* de-chunked; NUL-terminated when non-empty */
        bool keep_alive;        /* the connection may carry another request afterwards */
} HttpResponse;

HttpResponse *fl_http_response_free(HttpResponse *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpResponse *, fl_http_response_free);
/* First value of header name (case-insensitive), borrowed; NULL if absent. */
const char *fl_http_response_header(const HttpResponse *r, const char *name);

typedef enum HttpResponseState {
        HTTP_RESPONSE_STATUS_LINE,
        HTTP_RESPONSE_HEADERS,
        HTTP_RESPONSE_BODY,             /* Content-Length bytes */
        HTTP_RESPONSE_BODY_EOF,         /* no length: until the server closes */
        HTTP_RESPONSE_CHUNK_SIZE,
        HTTP_RESPONSE_CHUNK_DATA,
        HTTP_RESPONSE_CHUNK_END,        /* the CRLF after chunk data */
        HTTP_RESPONSE_TRAILERS,
        HTTP_RESPONSE_DONE,
        HTTP_RESPONSE_ERROR,
} HttpResponseState;

typedef struct HttpResponseParser {
        HttpResponseState state;
        size_t max_header_bytes;
        size_t max_body_bytes;
        size_t header_bytes;    /* consumed in the current head (or trailer) section */
        uint64_t remaining;     /* Content-Length or chunk bytes still to come */
        bool no_body;           /* answer to HEAD: headers only, whatever they announce */
        bool stream_body;       /* the caller drains the body as it arrives (see below) */
        Buf line;               /* a line not complete yet */
        HttpResponse *resp;
        const char *error;      /* after an error: why (static string), for debug logs */
} HttpResponseParser;

/* max_header_bytes/max_body_bytes 0: the defaults above. head: the request was HEAD. */
void fl_http_response_parser_init(HttpResponseParser *p, size_t max_header_bytes, size_t max_body_bytes,
                                  bool head);
void fl_http_response_parser_done(HttpResponseParser *p);
/* Feeds data[0..len). Every byte is consumed up to the end of the response, lines are buffered
 * internally. Returns 1 when the response is complete (*ret_consumed bytes belong to it; what
 * follows is not ours), 0 when more input is needed (all len bytes consumed), or a negative
 * errno: -EBADMSG for anything malformed, -EMSGSIZE over a limit, -ENOMEM. Interim 1xx
 * responses are skipped. After an error the parser stays failed. */
int fl_http_response_parser_feed(HttpResponseParser *p, const void *data, size_t len, size_t *ret_consumed);
/* The server closed the connection: completes a read-until-close body (returns 1); anything
 * else cut short is -EBADMSG. */
int fl_http_response_parser_eof(HttpResponseParser *p);
/* True once at least the status line was seen. */
bool fl_http_response_parser_started(const HttpResponseParser *p);
/* After 1: the response (owned by the caller); the parser is then reset for another. */
HttpResponse *fl_http_response_parser_take(HttpResponseParser *p);

/* Incremental bodies, for responses that may never end (an etcd watch stream): the caller takes
 * body bytes out of the response while it still arrives, i.e. after each feed it looks at
 * fl_http_response_parser_head()->body and fl_buf_consume()s what it used. max_body_bytes then
 * bounds what is buffered at any time (received, not consumed yet) instead of the whole body,
 * so a large Content-Length or chunk size is no error by itself. Framing (chunks, lengths, the
 * end of the body, trailers) is checked exactly as usual. Call right after init; it stays on
 * across fl_http_response_parser_take(). */
void fl_http_response_parser_stream_body(HttpResponseParser *p);
/* The response being received, borrowed, once its head is complete (also when done); NULL
 * before that and after an error. */
HttpResponse *fl_http_response_parser_head(HttpResponseParser *p);

/* Appends a request to out: request line, Host, the extra header lines ("Name: value", no CRLF),
 * and when body is not NULL Content-Type (if given), Content-Length and the body. Returns 0,
 * -EINVAL for CR/LF/NUL in any field (header injection), -ENOMEM. */
int fl_http_client_write_request(Buf *out, const char *method, const char *target, const char *host,
                                 char *const *extra_headers, const char *content_type, const void *body,
                                 size_t body_len);

/* Percent-encodes s onto out. Path mode keeps '/' and the unreserved characters; form mode
 * (application/x-www-form-urlencoded, like Go's url.QueryEscape) turns ' ' into '+'. */
int fl_http_client_escape(Buf *out, const char *s, bool form);
