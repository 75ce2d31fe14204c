/* SPDX-License-Identifier: MIT */
/* etcd.h: etcd v2 client (HTTP/1.1 keep-alive, TLS via mbedtls, several endpoints with
 * failover). Blocking wrapper for fleetctl, non-blocking calls on sd-event for the daemons.
 *
 * Errors: 0 on 2xx. etcd errors: 100 key not found -ENOENT, 101 compare failed -ESTALE,
 * 102 not a file -EISDIR, 104 not a dir -ENOTDIR, 105 node exists -EEXIST,
 * 108 dir not empty -ENOTEMPTY, 401 event index cleared -ERANGE, 300/301 raft -EAGAIN,
 * others -EPROTO. No endpoint reachable -ECONNREFUSED, timeout -ETIMEDOUT, malformed reply
 * -EBADMSG, TLS verification failure -EPERM. On etcd errors the response is still returned
 * so callers can read error_code / error_index / etcd_index. */
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
        uint64_t request_timeout_usec;
        bool insecure_skip_verify;
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

/* Blocking: runs a private sd_event until done or timed out. *ret (may be NULL) is set on
 * success and on etcd errors. */
int fl_etcd_call(EtcdClient *c, const EtcdRequest *req, EtcdResponse **ret);

/* Non-blocking: cb runs exactly once from the loop (unless cancelled or the client is freed).
 * resp is borrowed for the duration of the callback (NULL on transport errors). */
typedef void (*EtcdCallback)(EtcdClient *c, int r, EtcdResponse *resp, void *userdata);
int fl_etcd_call_async(EtcdClient *c, const EtcdRequest *req, EtcdCallback cb, void *userdata,
                       EtcdCall **ret_call);
EtcdCall *fl_etcd_call_cancel(EtcdCall *call);

uint64_t fl_etcd_client_last_index(EtcdClient *c);
void fl_etcd_client_stats(EtcdClient *c, uint64_t *ret_requests, uint64_t *ret_bytes_in,
                          uint64_t *ret_bytes_out);
