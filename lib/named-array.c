/* SPDX-License-Identifier: MIT */
/* named-array.c: arrays kept sorted by a string name (strcmp order). Elements of pointer arrays
 * are read and written with memcpy, so a T ** can be handled as untyped memory without
 * breaking aliasing rules. */
#include <assert.h>

#include "named-array.h"

static void *ptr_at(const void *items, size_t i) {
        void *p;
        memcpy(&p, (const char *) items + i * sizeof(void *), sizeof(p));
        return p;
}

size_t fl_named_array_index(const void *items, size_t n, const char *name, bool *ret_found) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                /* A pointer to a struct is a pointer to its first member, `char *name`. */
                int c = strcmp(*(char *const *) ptr_at(items, mid), name);
                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}

int fl_named_array_insert(void *items_ptr, size_t *n, size_t *n_allocated, size_t i, void *item) {
        char *items;

        assert(i <= *n);
        memcpy(&items, items_ptr, sizeof(items));
        if (*n == *n_allocated) {
                size_t na = MAX(*n_allocated * 2, (size_t) 16);
                char *l = realloc(items, na * sizeof(void *));
                if (!l)
                        return -ENOMEM;
                items = l;
                memcpy(items_ptr, &items, sizeof(items));
                *n_allocated = na;
        }
        memmove(items + (i + 1) * sizeof(void *), items + i * sizeof(void *), (*n - i) * sizeof(void *));
        memcpy(items + i * sizeof(void *), &item, sizeof(item));
        (*n)++;
        return 0;
}

void *fl_named_array_remove(void *items, size_t *n, size_t i) {
        char *b = items;
        void *e;

        assert(i < *n);
        e = ptr_at(items, i);
        memmove(b + i * sizeof(void *), b + (i + 1) * sizeof(void *), (*n - i - 1) * sizeof(void *));
        (*n)--;
        return e;
}

ssize_t fl_sorted_find(const void *base, size_t n, size_t size, const char *key) {
        size_t lo = 0, hi = n;
        const char *k;

        if (!key)
                return -1;
        /* Lower bound, so that with repeated keys the first one is found. */
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                memcpy(&k, (const char *) base + mid * size, sizeof(k));
                if (strcmp(k, key) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == n)
                return -1;
        memcpy(&k, (const char *) base + lo * size, sizeof(k));
        return streq(k, key) ? (ssize_t) lo : -1;
}
