/* SPDX-License-Identifier: MIT */
/* registry-internal.h: shared between the registry-*.c files; not for other modules. */
#pragma once

#include <inttypes.h>
#include <stdio.h>

#include "buf.h"
#include "registry.h"

/* ---- Sorted key tree (registry-tree.c) ----
 * Keys are relative to the prefix ("job/hello.service/object"). */
typedef struct RegNode {
        char *key;
        char *value;
        uint64_t modified_index;
        uint64_t ttl_sec;
        void *data;                 /* owned, freed with RegTree.free_data */
        struct RegNode *left, *right;
        int height;
} RegNode;

typedef struct RegTree {
        RegNode *root;
        size_t n;
        void (*free_data)(void *data);
} RegTree;

void fl_reg_tree_clear(RegTree *t);
RegNode *fl_reg_tree_find(const RegTree *t, const char *key);
/* Existing node or a new one with value NULL; NULL on OOM. */
RegNode *fl_reg_tree_ensure(RegTree *t, const char *key);
int fl_reg_tree_set(RegTree *t, const char *key, const char *value, uint64_t modified_index,
                    uint64_t ttl_sec);
bool fl_reg_tree_remove(RegTree *t, const char *key);
/* Removes every key below dir ("job/x" removes "job/x/..."); returns how many. */
size_t fl_reg_tree_remove_dir(RegTree *t, const char *dir);
RegNode *fl_reg_tree_lower_bound(const RegTree *t, const char *k);
RegNode *fl_reg_tree_next(const RegTree *t, const char *k);
/* In-order; stops at and returns the first non-zero return of f. f must not modify t. */
int fl_reg_tree_walk(const RegTree *t, int (*f)(RegNode *n, void *userdata), void *userdata);

/* ---- Codec helpers (registry-codec.c) ---- */
/* Appends s as a JSON string exactly as Go's encoding/json writes it. */
int fl_reg_json_string(Buf *b, const char *s);
/* Sets (value != NULL) or removes a metadata pair, keeping m->metadata sorted by key. */
int fl_reg_machine_set_metadata(RegMachine *m, const char *key, const char *value);

/* ---- Decoding (registry-snapshot.c) ---- */
/* Decoded values cached on a key tree's nodes (RegNode.data) when the tree frees them with
 * this: the mirror's small tree of machines decodes each object once. */
void fl_reg_decoded_free(void *p);

/* Decodes t (files and requirements owned by the snapshot). 0 or -ENOMEM. */
int fl_reg_snapshot_build(const RegTree *t, uint64_t index, RegSnapshot **ret);

/* ---- The daemons' mirror, decoded as events arrive (registry-store.c) ----
 * Keys are relative to the prefix. set/remove return 1 when the snapshot may have changed, 0
 * when the key is one nobody reads, -ENOMEM (the store is then incomplete: read it all again).
 * remove takes a key or a directory. A full read goes between begin_load and end_load. */
typedef struct RegStore RegStore;
int fl_reg_store_new(RegStore **ret);
RegStore *fl_reg_store_free(RegStore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(RegStore *, fl_reg_store_free);
int fl_reg_store_set(RegStore *s, const char *rel, const char *value, uint64_t modified_index, uint64_t ttl_sec);
int fl_reg_store_remove(RegStore *s, const char *rel);
void fl_reg_store_begin_load(RegStore *s);
int fl_reg_store_end_load(RegStore *s);
/* Always current; owned by the store, valid until its next change. */
const RegSnapshot *fl_reg_store_snapshot(RegStore *s, uint64_t index);
size_t fl_reg_store_size(const RegStore *s);
/* The hashes that readable job objects name (modified_index 0), and every unit/<hex>. */
int fl_reg_store_walk_refs(const RegStore *s, int (*f)(const char *hex, uint64_t modified_index, void *userdata),
                           void *userdata);
int fl_reg_store_walk_files(const RegStore *s, int (*f)(const char *hex, uint64_t modified_index, void *userdata),
                            void *userdata);

/* 0 when a and b say the same (states compared as a set), 1 with *ret_why (owned, may be
 * NULL) naming the first difference. For tests and fuzzers. */
int fl_reg_snapshot_compare(const RegSnapshot *a, const RegSnapshot *b, char **ret_why);

/* ---- The registry object (registry.c) ---- */
#include "etcd.h"

typedef struct RegOp RegOp;

struct Registry {
        EtcdClient *etcd;
        sd_event *event;
        char *prefix;               /* normalized: leading '/', no trailing '/' ("" for "/") */
        uint64_t write_index;       /* highest modified index of our own (non-refresh) writes */

        /* Last value we wrote to each TTL key (heartbeats): unchanged values are refreshed. */
        RegTree written;
        /* unit/<hash> seen unreferenced: data is a RegGcEntry. */
        RegTree gc_seen;

        RegOp *ops;                 /* in flight, freed with the registry */

        /* Mirror (registry-mirror.c). */
        bool mirror_started, mirror_ready, mirror_loaded, dirty;
        RegistryChangeFn on_change;
        void *on_change_userdata;
        RegStore *store;
        uint64_t mirror_index;
        EtcdCall *mirror_call;      /* the stream (or, before the first one, nothing) */
        /* A full read runs beside a stream started from "now" (resync): while read_call is
         * set, the stream's events wait here until the read's store is in place. */
        EtcdCall *read_call;
        EtcdResponse **held;
        size_t n_held;
        bool held_lost, need_read;
        uint64_t resync_index;      /* read's index, until the stream shows its head is not later */
        sd_event_source *mirror_timer, *change_defer, *stall_timer, *quiet_timer;
        uint64_t stall_index;       /* our newest write the stream has not shown (0: none) */
        uint64_t stall_seen;        /* mirror index when stall_timer was armed */
        unsigned burst;             /* events each within MIRROR_QUIET_USEC of the last */
        uint64_t last_event_usec;
        uint64_t backoff_usec;
        uint64_t n_reads;           /* full reads done (first + recoveries) */
};

/* Absolute key: prefix + "/" + parts joined with "/" (NULL-terminated list). NULL on OOM. */
char *fl_reg_key(Registry *r, ...) __attribute__((sentinel));
#define reg_key(r, ...) fl_reg_key(r, __VA_ARGS__, NULL)
/* Whether s is one path element of a key (no '/', not "." or ".."): a unit or machine name. */
static inline bool fl_reg_valid_part(const char *s) {
        return !isempty(s) && !strchr(s, '/') && !streq(s, ".") && !streq(s, "..");
}
/* Key relative to the prefix, or NULL if key is not below it. */
const char *fl_reg_key_rel(Registry *r, const char *key);
/* Calls f for every value below n (keys relative to the prefix, values never NULL) until it
 * fails; the add functions copy them into t or s. */
typedef int (*RegLeafFn)(const char *rel, const char *value, uint64_t modified_index, uint64_t ttl_sec,
                         void *userdata);
int fl_reg_etcd_leaves(Registry *r, const EtcdNode *n, RegLeafFn f, void *userdata);
int fl_reg_tree_add_etcd(Registry *r, RegTree *t, const EtcdNode *n);
int fl_reg_store_add_etcd(Registry *r, RegStore *s, const EtcdNode *n);

/* An intent-level operation: a sequence of etcd requests decided step by step, run either
 * blocking or on the loop. step() is called first with (0, NULL), then with each request's
 * result; it returns 1 after filling op->req (send it), 0 when done, or a negative errno. */
typedef int (*RegStepFn)(RegOp *op, int r, const EtcdResponse *resp);

struct RegOp {
        Registry *reg;
        RegStepFn step;
        RegDoneFn done;
        void *userdata;
        int state;
        int result;
        EtcdRequest req;
        char *key[4], *value[4];    /* owned strings the steps point req at */
        uint64_t u64[2];
        void *data;
        void (*free_data)(void *data);
        EtcdCall *call;
        sd_event_source *defer;
        RegOp *next, *prev;
};

int fl_reg_op_new(Registry *r, RegStepFn step, RegOp **ret);
RegOp *fl_reg_op_free(RegOp *op);
DEFINE_TRIVIAL_CLEANUP_FUNC(RegOp *, fl_reg_op_free);
/* Both take ownership of op. */
int fl_reg_op_run(RegOp *op);
int fl_reg_op_start(RegOp *op, RegDoneFn done, void *userdata);

/* Request helpers for step functions: reset op->req and fill it. */
void fl_reg_req(RegOp *op, EtcdMethod m, const char *key, const char *value);

/* Remembered values of TTL keys. */
const char *fl_reg_written_get(Registry *r, const char *key);
void fl_reg_written_set(Registry *r, const char *key, const char *value);   /* NULL forgets */

/* A write of ours landed at index: the mirror's stream must show it soon (registry-mirror.c). */
void fl_reg_mirror_wrote(Registry *r, uint64_t index);

/* Garbage collection of unit/<hash> (registry-mirror.c). */
int fl_reg_gc_step(RegOp *op, int r, const EtcdResponse *resp);

/* Test hooks (registry-mirror.c): stop the mirror's watch without restarting it; start it
 * again from the last applied index. */
void fl_reg_mirror_pause(Registry *r);
int fl_reg_mirror_resume(Registry *r);
