/* SPDX-License-Identifier: MIT */
/* api.h: internals shared by the HTTP API files (api.c routing and plumbing, api-units.c,
 * api-state.c, api-machines.c). The public entry points are in server.h. */
#pragma once

#include <cJSON.h>

#include "buf.h"
#include "http-server.h"
#include "pending-writes.h"
#include "registry.h"
#include "server.h"

#define FL_API_UNAVAILABLE_MESSAGE "fleet server unable to communicate with etcd"
/* How long a read waits for the mirror to show this server's own last write. */
#define FL_API_READ_WAIT_USEC (1000ULL * 1000ULL)

typedef struct ApiCall ApiCall;
/* Runs a request that reads the registry, once the mirror is current enough. */
typedef void (*ApiReadFn)(ApiCall *call, const RegSnapshot *snap);

/* One request in flight: waiting for the mirror, or for an async store write. */
struct ApiCall {
        Api *api;               /* NULL once the Api is gone (a write still in flight) */
        HttpRequest *req;       /* reference */
        char *item;             /* decoded last path element (unit name), NULL for collections */
        ApiReadFn read_fn;
        uint64_t wait_index;    /* store index the mirror must reach */
        uint64_t deadline;      /* CLOCK_MONOTONIC usec */
        ApiCall *prev, *next;

        /* write state */
        int status;             /* success status of the write (201, 204) */
        UnitFile *unit;
        char **patch;           /* PATCH: machine, key, value triples still to write */
        size_t patch_next, n_patch;
};

/* The Api itself (opaque outside applets/api*.c). */
struct Api {
        Server *server;
        PendingWrites pending;  /* read-your-writes per unit */
        HttpServer *http;
        ApiCall *waiting;       /* reads waiting for the mirror */
        ApiCall *writing;       /* writes waiting for the store */
        sd_event_source *wait_timer;
        HttpTls *tls;           /* for TCP listeners when api_tls_* is set */
        uint64_t stat_deferred_reads, stat_stale_reads, stat_writes, stat_write_errors;
};

DEFINE_TRIVIAL_CLEANUP_FUNC(Api *, fl_api_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

/* The request body as one JSON value: 0, -EINVAL with *ret_err (owned) saying what is wrong
 * ("EOF" for an empty body), or -ENOMEM. */
int fl_api_json_parse(const Buf *body, cJSON **ret, char **ret_err);

/* ---- JSON output the way Go's encoding/json writes it (HTML-safe escaping) ---- */
int fl_api_json_string(Buf *b, const char *s);
/* ,"key":"value" (or without the comma when first): omitted when value is empty/NULL. */
int fl_api_json_field(Buf *b, bool *first, const char *key, const char *value);

/* ---- Replies ---- */
/* 2xx/4xx/5xx with a JSON body b (taken and emptied). */
void fl_api_reply_json(HttpRequest *req, int status, Buf *b);
/* {"error":{"code":status,"message":msg}} */
void fl_api_reply_error(HttpRequest *req, int status, const char *msg);
void fl_api_reply_errorf(HttpRequest *req, int status, const char *fmt, ...) _printf_(3, 4);
/* Empty body (201, 204); content_type NULL for none. */
void fl_api_reply_empty(HttpRequest *req, int status, const char *content_type);

/* ---- Pagination (spec §3.5) ---- */
typedef struct ApiPage {
        unsigned limit, page;   /* page is 1-based */
} ApiPage;
/* Reads nextPageToken from req's query: 0 and *ret, or replies 400 itself and returns -EINVAL. */
int fl_api_page_from_request(Api *a, HttpRequest *req, ApiPage *ret);
/* Decodes a token: 0, or -EINVAL with *ret_msg (owned) set to Go's decoder message. */
int fl_api_page_token_parse(const char *token, ApiPage *ret, char **ret_msg);
/* Range [*ret_start, *ret_end) of n items for page p; whether a next token is due. */
bool fl_api_page_range(const ApiPage *p, size_t n, size_t *ret_start, size_t *ret_end);
/* Writes item i of a collection (userdata: the caller's) as a JSON object. */
typedef int (*ApiItemJson)(Buf *b, const void *userdata, size_t i);
/* Replies 200 with page p of a collection of n items, {"nextPageToken":...,"<member>":[...]}
 * (the token after the list when token_last, as fleet's encoder orders that entity), or 500;
 * frees call. */
void fl_api_reply_page(ApiCall *call, const ApiPage *p, size_t n, const char *member, bool token_last,
                       ApiItemJson item_json, const void *userdata);

/* ---- Calls ---- */
ApiCall *fl_api_call_new(Api *a, HttpRequest *req, const char *item);
ApiCall *fl_api_call_free(ApiCall *c);
/* Puts c on the write list; the registry's done callback must come to fl_api_call_write_done. */
void fl_api_call_start_write(ApiCall *c);
/* Takes c off the write list; returns false if the Api is gone (c is then freed). */
bool fl_api_call_finish_write(ApiCall *c);
/* Message for a failed store operation (for logs and PATCH's 500). */
const char *fl_api_store_error(int error);

/* ---- Endpoints ---- */
void fl_api_units_list(ApiCall *call, const RegSnapshot *snap);
void fl_api_unit_get(ApiCall *call, const RegSnapshot *snap);
void fl_api_unit_put(ApiCall *call, const RegSnapshot *snap);
void fl_api_unit_delete(ApiCall *call);
void fl_api_state_list(ApiCall *call, const RegSnapshot *snap);
void fl_api_state_get(ApiCall *call, const RegSnapshot *snap);
void fl_api_machines_list(ApiCall *call, const RegSnapshot *snap);
void fl_api_machines_patch(ApiCall *call);

/* The discovery document (schema/v1.json, embedded at build time). */
extern const char fl_api_discovery_json[];
