/* SPDX-License-Identifier: MIT */
/* named-array.h: arrays kept sorted by a string name (strcmp order). */
#pragma once

#include "macro.h"

/* Arrays of pointers (T **) to structs whose first member is `char *name`. The array is passed
 * as void * so one helper serves every T; elements are moved as pointers, never dereferenced
 * but for the name. */

/* Binary search: the index of name, or where it would be inserted; *ret_found says which. */
size_t fl_named_array_index(const void *items, size_t n, const char *name, bool *ret_found);
/* Inserts item at index i of *items_ptr (a T ** variable), growing it (doubling, at least 16).
 * Returns 0 or -ENOMEM (then nothing changed; item is not freed). */
int fl_named_array_insert(void *items_ptr, size_t *n, size_t *n_allocated, size_t i, void *item);
/* Takes the element at index i out of items and returns it (the caller frees it). */
void *fl_named_array_remove(void *items, size_t *n, size_t i);

/* Arrays of structs (T *, each `size` bytes) whose first member is the `char *` key, sorted by
 * it. The index of the first element whose key is key, or -1 (also when key is NULL). */
ssize_t fl_sorted_find(const void *base, size_t n, size_t size, const char *key);
