/* SPDX-License-Identifier: MIT */
/* pending-writes.h: read-your-writes per name. The store index after our last write to each
 * name, kept until a reader of the store (the registry mirror) has applied it: a read of one
 * unit waits for our writes to that unit only, not for those to others. */
#pragma once

#include <stdint.h>

#include "macro.h"

typedef struct PendingWrite PendingWrite;

typedef struct PendingWrites {
        PendingWrite **items;   /* sorted by name */
        size_t n, n_allocated;
        uint64_t min;           /* lowest index held: nothing to drop below it */
} PendingWrites;

/* Our write to name ended at store index; applied: what the reader has applied already (a
 * write it has shown is not kept). 0 or -ENOMEM. */
int fl_pending_writes_add(PendingWrites *p, const char *name, uint64_t index, uint64_t applied);
/* The index a read of name must wait for; 0: none. */
uint64_t fl_pending_writes_get(const PendingWrites *p, const char *name);
/* Drops what the reader has applied (cheap while it has not reached the lowest index held). */
void fl_pending_writes_prune(PendingWrites *p, uint64_t applied);
void fl_pending_writes_done(PendingWrites *p);
