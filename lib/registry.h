/* SPDX-License-Identifier: MIT */
/* registry.h: fleet's data model on the cluster store (etcd v2 today), byte-compatible with
 * fleet v1.0.0 (spec §4). Nothing here exposes the etcd v2 wire format: callers see decoded
 * snapshots and intent-level operations, so a v3 backend can follow behind the same interface.
 *
 * Two ways to read:
 *   - fl_registry_load(): one recursive read of the whole prefix, decoded (fleetctl, tests).
 *   - the mirror (daemons): one read, then one recursive watch on the prefix keeps an in-memory
 *     copy current; fl_registry_snapshot() decodes it lazily when it changed. Heartbeats use
 *     TTL refreshes, which etcd does not report to watchers, so an idle cluster is silent.
 *
 * Writes are intent-level (create a unit, schedule it, ...). Each has a blocking form (returns
 * 0 / negative errno) and an async form for the daemons' event loop. */
#pragma once

#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "unit-file.h"
#include "unit-options.h"

#define FL_REGISTRY_DEFAULT_PREFIX "/_coreos.com/fleet/"

typedef enum JobState {
        JOB_STATE_INACTIVE,
        JOB_STATE_LOADED,
        JOB_STATE_LAUNCHED,
        _JOB_STATE_MAX,
        _JOB_STATE_INVALID = -EINVAL,
} JobState;

const char *fl_job_state_to_string(JobState s);   /* "inactive", "loaded", "launched" */
JobState fl_job_state_from_string(const char *s); /* _JOB_STATE_INVALID for anything else */

/* One unit in the registry: job/<name>/{object,target-state,target,job-state} + unit/<hash>. */
typedef struct RegUnit {
        char *name;
        char hash[41];              /* 40 lowercase hex from the job object's UnitHash */
        UnitFile *file;             /* parsed unit/<hash> contents; NULL when missing/unparsable */
        UnitRequirements req;       /* [X-Fleet] of file (zeroed when file == NULL) */
        bool global;                /* req.global */
        JobState target_state;      /* desired state (job/<name>/target-state) */
        char *target;               /* machine the engine scheduled it to, NULL if none */
        char *job_state;            /* machine ID of the launched heartbeat, NULL if none */
        JobState current_state;     /* derived, spec §4.3 */
        char *unschedulable;        /* our extension, job/<name>/unschedulable: why the engine
                                     * could not place it, NULL if placed or not yet tried */
} RegUnit;

/* states/<unit>/<machine>: what systemd reports for a unit on one machine. */
typedef struct RegUnitState {
        char *name;
        char *machine_id;
        char *load_state, *active_state, *sub_state;
        char hash[41];
} RegUnitState;

typedef struct RegMachine {
        char *id;
        char *public_ip;
        char **metadata;            /* k, v, k, v ... sorted by key: config overlaid with
                                     * machines/<id>/metadata/<k> (dynamic wins, "" removes) */
        size_t n_metadata;          /* number of pairs */
        char *version;
        bool disable_engine;
        bool grpc;
} RegMachine;

typedef struct RegLease {
        char *machine_id;           /* NULL when nobody holds it */
        int version;
        uint64_t index;             /* modified index, for CAS renew/steal/release */
        uint64_t ttl_sec;           /* remaining TTL as last seen */
} RegLease;

typedef struct RegSnapshot {
        RegUnit *units;             /* sorted by name */
        size_t n_units;
        RegUnitState *states;       /* sorted by (name, machine_id) */
        size_t n_states;
        RegMachine *machines;       /* live machines only, sorted by id */
        size_t n_machines;
        RegLease lease;             /* lease/engine-leader */
        int engine_version;         /* engine/version, 0 if absent */
        uint64_t index;             /* store index this snapshot reflects */
        bool shared_files;          /* units' file/req belong to the registry's mirror (its
                                     * snapshots); false: fl_reg_snapshot_free frees them */
        /* Dynamic metadata of machines that are not (or no longer) registered is kept too,
         * so PATCH results show up when the machine comes back. */
} RegSnapshot;

RegSnapshot *fl_reg_snapshot_free(RegSnapshot *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(RegSnapshot *, fl_reg_snapshot_free);
const RegUnit *fl_reg_snapshot_find_unit(const RegSnapshot *s, const char *name);       /* bsearch */
const RegMachine *fl_reg_snapshot_find_machine(const RegSnapshot *s, const char *id);
/* Index of the first state of unit name (states are contiguous per unit), or -1. */
ssize_t fl_reg_snapshot_find_states(const RegSnapshot *s, const char *name);
/* Value of metadata key on m, or NULL. */
const char *fl_reg_machine_metadata(const RegMachine *m, const char *key);

/* Connection settings; same meaning as fleet.conf's etcd_* keys. */
typedef struct RegistryConfig {
        char **endpoints;
        const char *prefix;               /* default FL_REGISTRY_DEFAULT_PREFIX */
        const char *ca_file, *cert_file, *key_file;
        const char *username, *password;
        uint64_t request_timeout_usec;
} RegistryConfig;

typedef struct Registry Registry;

/* event may be NULL (blocking use only). */
int fl_registry_new(const RegistryConfig *cfg, sd_event *event, Registry **ret);
Registry *fl_registry_free(Registry *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Registry *, fl_registry_free);

/* ---- Reading ---- */

/* One consistent read of everything under the prefix, decoded. -ENOENT never: an empty
 * registry is an empty snapshot. */
int fl_registry_load(Registry *r, RegSnapshot **ret);
/* The same for just the units named (their job/, states/ and unit file: 3 reads each, fleet's
 * per-unit reads), for a few units of a big registry. Machines are not read; names that are
 * no valid key element are skipped like missing units. Each name goes into a request line,
 * which etcd cuts off over ~8 KiB (-ECONNRESET): keep them to unit name length. */
int fl_registry_load_units(Registry *r, char *const *names, size_t n, RegSnapshot **ret);
/* The names under job/ (one read, no unit decoded): every unit, and maybe one being created or
 * destroyed (a directory without its object). A strv in etcd's order. */
int fl_registry_list_unit_names(Registry *r, char ***ret);

/* Mirror for daemons: first read + watch; on_change runs from the loop (coalesced, at most
 * once per loop iteration) after the mirror changed. Watch errors are retried with backoff;
 * "index cleared" (etcd 401) is recovered with a full re-read. */
typedef void (*RegistryChangeFn)(Registry *r, void *userdata);
int fl_registry_mirror_start(Registry *r, RegistryChangeFn on_change, void *userdata);
bool fl_registry_mirror_ready(Registry *r);   /* first read done and watch running */
/* Current decoded view of the mirror, borrowed (valid until the next loop iteration that
 * changes the mirror); NULL before the first read. Decoding is lazy and cached: unit files
 * are parsed once per hash. */
const RegSnapshot *fl_registry_snapshot(Registry *r);
/* Highest store index the mirror has applied / this client has written. An API server that
 * wrote at index N waits until mirror index >= N before answering reads (read-your-writes). */
uint64_t fl_registry_mirror_index(Registry *r);
/* Full reads the mirror did: the first, then one per fall out of etcd's event history. */
uint64_t fl_registry_mirror_reads(Registry *r);
uint64_t fl_registry_write_index(Registry *r);

/* ---- Writing ----
 * Blocking forms return 0 or a negative errno. Async forms call done(r, userdata) exactly once
 * from the loop (never synchronously from inside the call). Errors: -ENOENT missing unit/key,
 * -EEXIST create-only target exists, -ESTALE compare failed, -ETIMEDOUT / -ECONNREFUSED store
 * unreachable, -EBADMSG garbage from the store. */
typedef void (*RegDoneFn)(Registry *r, int error, void *userdata);

/* unit/<hash> (unconditional set: see fl_registry_gc_units), job/<name>/object,
 * job/<name>/target-state. */
int fl_registry_create_unit(Registry *r, const char *name, const UnitFile *u, JobState target);
int fl_registry_create_unit_async(Registry *r, const char *name, const UnitFile *u, JobState target,
                                  RegDoneFn done, void *userdata);
int fl_registry_set_target_state(Registry *r, const char *name, JobState s);
int fl_registry_set_target_state_async(Registry *r, const char *name, JobState s, RegDoneFn done,
                                       void *userdata);
/* DELETE job/<name> recursively; -ENOENT if there is no such unit. */
int fl_registry_destroy_unit(Registry *r, const char *name);
int fl_registry_destroy_unit_async(Registry *r, const char *name, RegDoneFn done, void *userdata);

/* Engine. schedule is create-only (-EEXIST if already scheduled); unschedule deletes only if
 * the target is still machine_id. reason NULL clears job/<name>/unschedulable. */
int fl_registry_schedule_async(Registry *r, const char *name, const char *machine_id, RegDoneFn done,
                               void *userdata);
int fl_registry_unschedule_async(Registry *r, const char *name, const char *machine_id, RegDoneFn done,
                                 void *userdata);
int fl_registry_set_unschedulable_async(Registry *r, const char *name, const char *reason,
                                        RegDoneFn done, void *userdata);
/* Lease (lease/engine-leader, {"MachineID":..,"Version":..}) and engine/version. renew and
 * release compare on prev_index; FL_REG_LEASE_OWN_INDEX compares on the index of this
 * registry's own last successful write of the lease instead (-ESTALE when there is none): a
 * holder's mirror may not show its previous renewal yet. */
#define FL_REG_LEASE_OWN_INDEX UINT64_MAX
int fl_registry_lease_acquire_async(Registry *r, const char *machine_id, int version, uint64_t ttl_sec,
                                    RegDoneFn done, void *userdata);
int fl_registry_lease_renew_async(Registry *r, const char *machine_id, int version, uint64_t ttl_sec,
                                  uint64_t prev_index, RegDoneFn done, void *userdata);
int fl_registry_lease_release_async(Registry *r, uint64_t prev_index, RegDoneFn done, void *userdata);
int fl_registry_engine_version_set_async(Registry *r, int old_version, int new_version, RegDoneFn done,
                                         void *userdata);
/* Delete unit/<hash> nodes no job references any more. Safe against a concurrent submit:
 * a hash is deleted only after it was seen unreferenced and unchanged (same modified index,
 * compare-and-delete) for at least grace_usec, and creating a unit re-writes unit/<hash>. */
int fl_registry_gc_units_async(Registry *r, uint64_t grace_usec, RegDoneFn done, void *userdata);

/* Agent. job-state heartbeat (TTL; refresh when unchanged), unit state publishing (TTL). */
int fl_registry_job_heartbeat_async(Registry *r, const char *name, const char *machine_id, uint64_t ttl_sec,
                                    RegDoneFn done, void *userdata);
int fl_registry_job_clear_heartbeat_async(Registry *r, const char *name, RegDoneFn done, void *userdata);
int fl_registry_save_unit_state_async(Registry *r, const RegUnitState *st, uint64_t ttl_sec, RegDoneFn done,
                                      void *userdata);
/* Removes states/<name>/<machine_id> only (not every machine's, unlike fleet v1). fleet v1's
 * legacy state/<name> (never read) is neither written nor removed. */
int fl_registry_remove_unit_state_async(Registry *r, const char *name, const char *machine_id,
                                        RegDoneFn done, void *userdata);

/* Presence: machines/<id>/object with TTL. register is create-only (-EEXIST: another machine
 * with our ID, or our own previous key not yet expired); beat refreshes the TTL when the
 * object is unchanged, else rewrites it. */
int fl_registry_machine_register_async(Registry *r, const RegMachine *m, uint64_t ttl_sec, RegDoneFn done,
                                       void *userdata);
int fl_registry_machine_beat_async(Registry *r, const RegMachine *m, uint64_t ttl_sec, RegDoneFn done,
                                   void *userdata);
int fl_registry_machine_remove_async(Registry *r, const char *machine_id, RegDoneFn done, void *userdata);
/* Dynamic metadata (API PATCH): value "" means removed, as fleet does. */
int fl_registry_set_machine_metadata(Registry *r, const char *machine_id, const char *key, const char *value);
int fl_registry_set_machine_metadata_async(Registry *r, const char *machine_id, const char *key,
                                           const char *value, RegDoneFn done, void *userdata);

/* Statistics for benchmarks: store requests and bytes so far. */
void fl_registry_stats(Registry *r, uint64_t *ret_requests, uint64_t *ret_bytes_in, uint64_t *ret_bytes_out);

/* ---- Codecs (pure; exposed for tests and for the API's JSON) ----
 * Exactly fleet v1.0.0's JSON (Go encoder field order, no spaces). All return owned strings
 * or NULL on OOM; decoders return 0, -EBADMSG or -ENOMEM. */
char *fl_reg_encode_job_object(const char *name, const uint8_t hash[20]);
int fl_reg_decode_job_object(const char *json, char **ret_name, uint8_t ret_hash[20]);
char *fl_reg_encode_unit_contents(const char *raw);       /* {"Raw":"..."} */
int fl_reg_decode_unit_contents(const char *json, char **ret_raw);
char *fl_reg_encode_unit_state(const RegUnitState *st);   /* states/<unit>/<machine> value */
int fl_reg_decode_unit_state(const char *json, RegUnitState *ret);   /* fills load/active/sub/hash/machine */
void fl_reg_unit_state_done(RegUnitState *st);
char *fl_reg_encode_machine(const RegMachine *m);         /* machines/<id>/object value */
int fl_reg_decode_machine(const char *json, RegMachine *ret);
void fl_reg_machine_done(RegMachine *m);
char *fl_reg_encode_lease(const char *machine_id, int version);
int fl_reg_decode_lease(const char *value, char **ret_machine_id, int *ret_version);
