/* SPDX-License-Identifier: MIT */
/* etcd.h: etcd v2 client (HTTP/1.1 keep-alive, TLS via mbedtls, several endpoints with
 * failover). Blocking wrapper for fleetctl, non-blocking calls on sd-event for the daemons.
 *
 * Return values (the response, when there is one, is handed out with every etcd error, so
 * callers can read error_code / error_index / etcd_index):
 *
 *   0              2xx
 *   -ENOENT        etcd 100 key not found
 *   -ESTALE        etcd 101 compare failed (prevValue / prevIndex)
 *   -EISDIR        etcd 102 not a file
 *   -ENOTDIR       etcd 104 not a directory
 *   -EEXIST        etcd 105 node exists (prevExist=false)
 *   -EROFS         etcd 107 root is read only
 *   -ENOTEMPTY     etcd 108 directory not empty
 *   -EACCES        etcd 110, HTTP 401/403 without errorCode (auth), or the TLS server refused
 *                  our client certificate (or its absence)
 *   -EINVAL        etcd 200..299 (malformed request), or a bad EtcdRequest/EtcdConfig
 *   -EAGAIN        etcd 300/301 (raft, leader election), 400 (watcher cleared), any 5xx once
 *                  every endpoint was tried, and a watch ended by an empty 200 (watch again)
 *   -ERANGE        etcd 401 event index cleared: re-GET, then watch from etcd_index + 1
 *   -EPROTO        any other etcd error or non-2xx reply
 *   -ECONNREFUSED  no endpoint accepted a connection; -EHOSTUNREACH/-ENETUNREACH likewise,
 *                  -ECONNRESET when they closed or broke the connection (or spoke no TLS)
 *   -ETIMEDOUT     no answer within the timeout (per endpoint attempt)
 *   -EBADMSG       a malformed reply (HTTP or JSON); -EMSGSIZE when over the size limits
 *   -EPERM         the server certificate does not verify (CA, validity, host name or IP)
 *   -ENOMEM
 * With several endpoints the error of the last one tried is returned.
 *
 * Failover: connect failures, timeouts, broken connections, malformed replies and 5xx move on
 * to the next endpoint (starting from the one that answered last); each endpoint gets the full
 * timeout. Creates (CREATE_INORDER, SET with ETCD_PREV_NOT_EXIST) fail over only while nothing
 * was sent: once the request went out, the member may have applied it, so its error is final
 * (as etcd's Go client does with "one-shot" requests). An idle keep-alive connection the server
 * closed is replaced transparently. Watches: the connect phase and the response head (etcd
 * sends it at once) are bounded by the client's request timeout; then only the watch's own
 * timeout_usec (0: none) counts, and a watch that runs out of it ends with -ETIMEDOUT without
 * failover. */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct EtcdNode {
        char *key;
        char *value;                      /* NULL for dirs */
        bool dir;
        uint64_t created_index, modified_index;
        int64_t ttl;                      /* 0 = none */
        struct EtcdNode **nodes;          /* children (recursive gets) */
        size_t n_nodes;
} EtcdNode;

typedef struct EtcdResponse {
        int http_status;
        char *action;                     /* "get","set","create","update","delete",
                                           * "compareAndSwap","compareAndDelete","expire" */
        EtcdNode *node, *prev_node;
        uint64_t etcd_index;              /* X-Etcd-Index */
        uint64_t raft_index;              /* X-Raft-Index, 0 if absent */
        int error_code;                   /* etcd errorCode, 0 if none */
        char *error_message, *error_cause;
        uint64_t error_index;
} EtcdResponse;

typedef enum EtcdMethod { ETCD_GET, ETCD_SET, ETCD_DELETE, ETCD_CREATE_INORDER, ETCD_WATCH } EtcdMethod;
typedef enum EtcdPrevExist { ETCD_PREV_ANY, ETCD_PREV_EXIST, ETCD_PREV_NOT_EXIST } EtcdPrevExist;

typedef struct EtcdRequest {
        EtcdMethod method;
        const char *key;                  /* absolute; escaped by the client */
        const char *value;                /* SET / CREATE_INORDER */
        bool recursive, sorted, quorum, dir;
        uint64_t ttl_sec;                 /* SET: 0 = no ttl */
        bool refresh;                     /* SET with ttl: refresh=true&prevExist=true, no value */
        EtcdPrevExist prev_exist;
        uint64_t prev_index;              /* 0 = unset */
        const char *prev_value;           /* NULL = unset */
        uint64_t wait_index;              /* WATCH: 0 = from now */
        uint64_t timeout_usec;            /* 0 = client default; WATCH: 0 = no timeout */
} EtcdRequest;

typedef struct EtcdConfig {
        char **endpoints;                 /* "http://127.0.0.1:2379", "https://..." */
        const char *ca_file, *cert_file, *key_file;
        const char *username, *password;  /* basic auth when username != NULL */
        uint64_t request_timeout_usec;    /* per endpoint attempt; 0: 1 s */
        bool insecure_skip_verify;        /* no certificate checks at all: only if asked for */
        size_t max_body_bytes;            /* largest reply body; 0: 64 MiB */
        uint64_t pool_idle_usec;          /* surplus idle connections close after; 0: 5 s */
} EtcdConfig;

typedef struct EtcdClient EtcdClient;
typedef struct EtcdCall EtcdCall;

/* event may be NULL: blocking use only. */
int fl_etcd_client_new(const EtcdConfig *cfg, sd_event *event, EtcdClient **ret);
/* Cancels in-flight calls without invoking their callbacks. */
EtcdClient *fl_etcd_client_free(EtcdClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(EtcdClient *, fl_etcd_client_free);
EtcdResponse *fl_etcd_response_free(EtcdResponse *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(EtcdResponse *, fl_etcd_response_free);
/* Moves the contents of r (e.g. the borrowed response of a callback) into a new response owned
 * by the caller; r is left empty. NULL on OOM (r untouched). */
EtcdResponse *fl_etcd_response_steal(EtcdResponse *r);

/* Blocking: runs a private sd_event until done or timed out. *ret (may be NULL) is set on
 * success and on etcd errors. */
int fl_etcd_call(EtcdClient *c, const EtcdRequest *req, EtcdResponse **ret);

/* Non-blocking: cb runs exactly once from the loop (unless cancelled or the client is freed).
 * resp is borrowed for the duration of the callback (NULL on transport errors). */
typedef void (*EtcdCallback)(EtcdClient *c, int r, EtcdResponse *resp, void *userdata);
int fl_etcd_call_async(EtcdClient *c, const EtcdRequest *req, EtcdCallback cb, void *userdata,
                       EtcdCall **ret_call);
/* Cancels an async call or stream at any point, also from its own callbacks (on_event or
 * done): no callback runs after it. */
EtcdCall *fl_etcd_call_cancel(EtcdCall *call);

/* Streaming watch (etcd v2 "wait=true&stream=true"): one request, and etcd writes every change
 * under req->key (req->recursive for the subtree) as it happens into one chunked response, so
 * a watcher keeps up with any write rate instead of paying a round trip per event.
 *
 * req: method ETCD_WATCH; wait_index is the first index wanted (0: from now); timeout_usec
 * (0: none) ends the stream with -ETIMEDOUT when that long passes without an event (restarted
 * by every event), so a dead connection or a stalled stream (see below) is noticed.
 *
 * on_event runs once per event, in index order, each index once, as soon as its bytes arrived.
 * event is borrowed for the call (fl_etcd_response_steal() keeps it): action, node, prev_node
 * as for ETCD_WATCH; etcd_index/raft_index are those of the stream's head (the store index
 * when etcd registered the watch), node->modified_index is the event's index. An event is
 * bounded by EtcdConfig.max_body_bytes (-EMSGSIZE); the stream as a whole is not.
 *
 * done runs exactly once, when the stream is over (unless cancelled or the client is freed),
 * with the same codes as an ETCD_WATCH call (resp is borrowed, non-NULL for etcd errors):
 *   0           the server ended the stream cleanly (terminating chunk): watch again from
 *               the last event's index + 1 (or from wait_index if there was none)
 *   -ERANGE     etcd 401: wait_index (or a later index it restarted from) fell out of etcd's
 *               1,000-event history: re-read, then watch from resp->etcd_index + 1
 *   -ETIMEDOUT  no event for timeout_usec: watch again from the last index + 1
 *   -ECONNRESET the connection broke, e.g. the member stopped (etcd cuts its streams without
 *               the terminating chunk): watch again, likewise
 *   others      as for ETCD_WATCH (-EBADMSG for a malformed event, -EMSGSIZE...)
 * Whatever ended it, no event is lost as long as the caller watches again from the last index
 * it saw + 1 (or gets -ERANGE and re-reads).
 *
 * Failover and timeouts follow the rules for watches (top of this file) as long as the current
 * connection delivered no event: connect, TLS and the response head are bounded by the
 * client's request timeout, and failures move on to the next endpoint with the same index.
 * Once events were handed out, an error ends the stream (done) instead.
 *
 * The stream holds a connection of its own for as long as it runs (taken from the idle pool or
 * opened; never blocking other calls), and gives it back only after a clean end.
 *
 * What etcd (3.4, v2 API) does, observed, and how it is handled:
 *   - a waitIndex that finds a matching event in etcd's history gets that one event and then
 *     silence, the stream never joins the live watchers: after such an event (index <= the
 *     head's X-Etcd-Index) the stream reconnects transparently from the next index, so catching
 *     up on history costs one round trip (and connection) per event, like ETCD_WATCH. More than
 *     ETCD_STREAM_CATCHUP_MAX indices behind, the stream ends with -ERANGE instead, as for an
 *     index etcd no longer has: one read of everything is then the cheaper way to catch up;
 *   - a reader so slow that the socket buffers and etcd's 100-event queue per watcher fill up
 *     is dropped silently: the stream stays open with no more events (seen: 937 of 3,000 big
 *     events, then nothing). Only timeout_usec notices that, so set it;
 *   - errors (401 and others) come as ordinary non-streamed replies (400 + Content-Length);
 *   - etcd 3.x never ends a stream on its own (its v2 watch timeout is math.MaxInt64): a clean
 *     end comes only from a proxy or another server; a stopped member cuts the connection. */
#define ETCD_STREAM_CATCHUP_MAX 64U
typedef void (*EtcdEventFn)(EtcdClient *c, EtcdResponse *event, void *userdata);
int fl_etcd_watch_stream_async(EtcdClient *c, const EtcdRequest *req, EtcdEventFn on_event, EtcdCallback done,
                               void *userdata, EtcdCall **ret_call);

/* The X-Etcd-Index of a stream's current response head (events after it are the stream's),
 * 0 before the head arrived. */
uint64_t fl_etcd_call_head_index(EtcdCall *call);
/* Whether the call's connection has received bytes not read yet (a stream that only looks
 * quiet because this process has not got round to it). */
bool fl_etcd_call_has_unread(EtcdCall *call);

/* Highest X-Etcd-Index seen in any reply. */
uint64_t fl_etcd_client_last_index(EtcdClient *c);
void fl_etcd_client_stats(EtcdClient *c, uint64_t *ret_requests, uint64_t *ret_bytes_in,
                          uint64_t *ret_bytes_out);
/* Keep-alive connections open and unused, over all endpoints. */
unsigned fl_etcd_client_idle_connections(const EtcdClient *c);

/* Exposed for tests and callers that map codes themselves. */
int fl_etcd_error_to_errno(int error_code);
typedef struct HttpResponse HttpResponse;
/* Decodes a reply: returns what a call returns; *ret is set for every well-formed reply. */
int fl_etcd_response_decode(const HttpResponse *h, bool watch, EtcdResponse **ret);
