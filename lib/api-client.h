/* SPDX-License-Identifier: MIT */
/* api-client.h: a blocking client of fleet's HTTP API v1 (spec §3), what fleetctl's default
 * driver talks to. One keep-alive connection, reused across requests and re-dialled when the
 * server dropped it (a batch of creates adds a few more for its duration): a unix socket, TCP, TLS over TCP, or the stdio of a command (an SSH
 * tunnel: `ssh HOST fleetctl fd-forward SOCKET` or `ssh -W HOST:PORT BASTION`).
 *
 * Requests are what fleet's generated client sends (§3.6): every URL ends in ?alt=json, unit
 * names are path-escaped, lists follow nextPageToken. Error strings are fleet's:
 * "googleapi: Error <code>: <message>", or "googleapi: got HTTP response code <code> with body:
 * <body>" when the server gave no message. Everything the server sends is checked: sizes are
 * bounded, JSON members must have the right types, a page loop must make progress. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "unit-file.h"

/* Largest response body we accept (a page of units with big unit files). */
#define FL_API_MAX_BODY (64U * 1024U * 1024U)
/* Most pages one list may take: a server that keeps handing out tokens is broken. */
#define FL_API_MAX_PAGES 100000U

/* Entities, decoded. Absent JSON fields are NULL. */
typedef struct ApiUnit {
        char *name;
        char *desired_state;
        char *current_state;
        char *machine_id;
        char *unschedulable;   /* "unschedulableReason" (our extension): why the engine could
                                * not place the unit */
        UnitFile *file;        /* the "options", never NULL once decoded (may be empty) */
} ApiUnit;

typedef struct ApiUnitState {
        char *name;
        char *machine_id;
        char *hash;
        char *load_state;      /* systemdLoadState */
        char *active_state;    /* systemdActiveState */
        char *sub_state;       /* systemdSubState */
} ApiUnitState;

typedef struct ApiMachine {
        char *id;
        char *public_ip;       /* "primaryIP" */
        char **metadata;       /* k, v, k, v ... sorted by key, NULL when none */
        size_t n_metadata;     /* pairs */
} ApiMachine;

void fl_api_unit_done(ApiUnit *u);
void fl_api_unit_state_done(ApiUnitState *s);
void fl_api_machine_done(ApiMachine *m);
void fl_api_units_free(ApiUnit *u, size_t n);
void fl_api_unit_states_free(ApiUnitState *s, size_t n);
void fl_api_machines_free(ApiMachine *m, size_t n);

/* Pure decoders, exposed for tests. JSON text in; 0, -EBADMSG (not what the schema says) or
 * -ENOMEM. Page decoders append to *units / *states / *machines and set *ret_next_token (owned,
 * NULL when the page has none). */
int fl_api_decode_unit(const char *json, size_t len, ApiUnit *ret);
int fl_api_decode_unit_page(const char *json, size_t len, ApiUnit **units, size_t *n_units,
                            char **ret_next_token);
int fl_api_decode_state_page(const char *json, size_t len, ApiUnitState **states, size_t *n_states,
                             char **ret_next_token);
int fl_api_decode_machine_page(const char *json, size_t len, ApiMachine **machines,
                               size_t *n_machines, char **ret_next_token);
/* {"name":..,"desiredState":..,"options":[..]}: the PUT body. desired_state and u may be NULL
 * (omitted). NULL on OOM. */
char *fl_api_encode_unit(const char *name, const char *desired_state, const UnitFile *u);
/* Go's url.PathEscape-compatible escaping of one path segment ('@' -> "%40"). NULL on OOM. */
char *fl_api_path_escape(const char *s);
/* The error string fleet's client prints for a failed response; NULL on OOM. */
char *fl_api_error_message(int status, const char *body, size_t len);

typedef struct ApiClientConfig {
        const char *endpoint;          /* unix:///path, file:///path, http://h:p, https://h:p */
        const char *ca_file, *cert_file, *key_file;
        uint64_t timeout_usec;         /* per request, 0: none */
        uint64_t connect_timeout_usec; /* added when the request has to open a connection
                                        * (an SSH tunnel's handshake) */
        /* When set, connections are the stdio of this command (tunnel) instead of a dial; the
         * endpoint still decides http vs https and the Host header. */
        char **tunnel_argv;
} ApiClientConfig;

typedef struct ApiClient ApiClient;

/* Parses the endpoint and prepares TLS material; does not connect. On failure *ret_error (if
 * not NULL) gets fleet's message ("URL scheme undefined", "unable to connect to host \"var\"
 * with scheme \"unix\"", ...). */
int fl_api_client_new(const ApiClientConfig *cfg, ApiClient **ret, char **ret_error);
ApiClient *fl_api_client_free(ApiClient *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(ApiClient *, fl_api_client_free);

/* One request: path is relative to <endpoint>/fleet/v1/ and already escaped; "?alt=json" (or
 * "&alt=json") is added. body may be NULL. Returns 0 with the status and body (owned,
 * NUL-terminated) of any HTTP response, or a negative errno when none was had (-ETIMEDOUT,
 * -ECONNREFUSED, -EPROTO for garbage, ...) with *ret_error describing it. */
int fl_api_client_request(ApiClient *c, const char *method, const char *path, const char *body,
                          int *ret_status, char **ret_body, size_t *ret_len, char **ret_error);

/* The operations fleetctl needs. All return 0 or a negative errno with *ret_error set (owned,
 * fleet's wording). */
int fl_api_list_units(ApiClient *c, ApiUnit **ret, size_t *ret_n, char **ret_error);
/* The units listed with their names only (Google's partial response, fields=units/name): a
 * server of ours sends nothing else, fleet's sends whole units, which decode the same. */
int fl_api_list_unit_names(ApiClient *c, ApiUnit **ret, size_t *ret_n, char **ret_error);
/* -ENOENT when the unit does not exist (404), *ret_error not set then. */
int fl_api_get_unit(ApiClient *c, const char *name, ApiUnit *ret, char **ret_error);
/* The units among names[0..n) that exist, asked for at once (GET units/<name> each, as many in
 * parallel as fl_api_create_units()), in names' order, missing ones left out (*ret_n <= n). A
 * few units of a big registry cost a few requests instead of listing all of it. */
int fl_api_get_units(ApiClient *c, char *const *names, size_t n, ApiUnit **ret, size_t *ret_n, char **ret_error);
/* unit_name, machine_id: exact filters, NULL for none. */
int fl_api_list_states(ApiClient *c, const char *unit_name, const char *machine_id,
                       ApiUnitState **ret, size_t *ret_n, char **ret_error);
int fl_api_list_machines(ApiClient *c, ApiMachine **ret, size_t *ret_n, char **ret_error);
/* fleet's page tokens (spec 3.5): URL-safe base64 with padding of little-endian uint16 limit
 * and page. ret: at least 9 bytes. decode accepts only what fl_api_page_token() writes. */
void fl_api_page_token(unsigned limit, unsigned page, char ret[static 9]);
bool fl_api_page_token_decode(const char *token, unsigned *ret_limit, unsigned *ret_page);
/* PUT units/<name> with options and no desiredState. */
int fl_api_create_unit(ApiClient *c, const char *name, const UnitFile *u, char **ret_error);
/* Creates names[i] from files[i] (as fl_api_create_unit) for i < n, parallel requests at once
 * (0: FL_API_BATCH_PARALLEL, FL_API_BATCH_PARALLEL_TUNNEL through a tunnel), each on its own
 * keep-alive connection (the client's own one among them). After a failure no further request
 * is sent; those in flight finish. On failure *ret_failed is the lowest index that failed and
 * *ret_error its message; units after it may have been created by requests in flight.
 * 16 at once: fleetd writes each unit with 3 sequential etcd requests, and etcd on a 2-core box
 * takes as many writes per second at 16 in flight as at 32 or 64 (1,000 units: ~0.36 s either
 * way, ~0.8 s at 1) while wider bursts make it drop watchers: it applies a raft batch's writes
 * at once, and a watcher whose queue of 100 events fills is dropped (every daemon's mirror
 * must then catch up). fleet-bench, 15 interleaved runs each: no drop at 16, one at 32. */
#define FL_API_BATCH_PARALLEL 16U
#define FL_API_BATCH_PARALLEL_TUNNEL 4U
int fl_api_create_units(ApiClient *c, char *const *names, UnitFile *const *files, size_t n, size_t parallel,
                        size_t *ret_failed, char **ret_error);
/* PUT units/<name> with only desiredState. */
int fl_api_set_unit_target_state(ApiClient *c, const char *name, const char *state, char **ret_error);
/* DELETE units/<name>; -ENOENT for 404 (no *ret_error). */
int fl_api_destroy_unit(ApiClient *c, const char *name, char **ret_error);
