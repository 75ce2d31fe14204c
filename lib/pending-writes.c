/* SPDX-License-Identifier: MIT */
/* pending-writes.c: see pending-writes.h. Normally a handful of names (the writes in flight
 * and the watch's lag); after the watch fell behind, all names written meanwhile. */
#include <stdlib.h>

#include "named-array.h"
#include "pending-writes.h"

struct PendingWrite {
        char *name;             /* first: named-array.h */
        uint64_t index;
};

static void item_free(PendingWrite *w) {
        free(w->name);
        free(w);
}

int fl_pending_writes_add(PendingWrites *p, const char *name, uint64_t index, uint64_t applied) {
        PendingWrite *w;
        bool found;
        size_t i;
        int r;

        if (index <= applied)
                return 0;
        i = fl_named_array_index(p->items, p->n, name, &found);
        if (found)
                w = p->items[i];
        else {
                w = new0(PendingWrite, 1);
                if (!w)
                        return -ENOMEM;
                w->name = strdup(name);
                if (!w->name) {
                        item_free(w);
                        return -ENOMEM;
                }
                r = fl_named_array_insert(&p->items, &p->n, &p->n_allocated, i, w);
                if (r < 0) {
                        item_free(w);
                        return r;
                }
        }
        w->index = MAX(w->index, index);
        p->min = p->min == 0 ? w->index : MIN(p->min, w->index);
        return 0;
}

uint64_t fl_pending_writes_get(const PendingWrites *p, const char *name) {
        bool found;
        size_t i = fl_named_array_index(p->items, p->n, name, &found);

        return found ? p->items[i]->index : 0;
}

void fl_pending_writes_prune(PendingWrites *p, uint64_t applied) {
        uint64_t min = 0;
        size_t k = 0;

        if (p->n == 0 || applied < p->min)
                return;
        for (size_t i = 0; i < p->n; i++) {
                PendingWrite *w = p->items[i];

                if (w->index <= applied) {
                        item_free(w);
                        continue;
                }
                min = min == 0 ? w->index : MIN(min, w->index);
                p->items[k++] = w;
        }
        p->n = k;
        p->min = min;
}

void fl_pending_writes_done(PendingWrites *p) {
        for (size_t i = 0; i < p->n; i++)
                item_free(p->items[i]);
        free(p->items);
        *p = (PendingWrites) {};
}
