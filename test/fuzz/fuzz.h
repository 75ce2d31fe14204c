/* SPDX-License-Identifier: MIT */
/* fuzz.h: helpers shared by the libFuzzer targets in test/fuzz/fuzz-*.c. A target checks
 * properties (round trips, agreement between two ways of doing the same thing) besides "does
 * not crash"; a violated property aborts through FUZZ_CHECK, which libFuzzer reports as a crash
 * with the message on stderr. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

#define FUZZ_CHECK(e)                                                                         \
        do {                                                                                  \
                if (!(e)) {                                                                   \
                        fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, \
                                #e);                                                          \
                        abort();                                                              \
                }                                                                             \
        } while (0)

#define FUZZ_CHECK_STREQ(a, b)                                                                \
        do {                                                                                  \
                const char *_a = (a), *_b = (b);                                              \
                if (!streq_ptr(_a, _b)) {                                                     \
                        fprintf(stderr, "%s:%d: property violated: %s == %s\n[%s]\n[%s]\n",    \
                                __FILE__, __LINE__, #a, #b, _a ?: "(null)", _b ?: "(null)");  \
                        abort();                                                              \
                }                                                                             \
        } while (0)

/* A NUL-terminated copy of the input (inputs may hold NUL bytes: the copy then ends early,
 * which is what a C string API sees). NULL only on OOM. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                return NULL;
        memcpy(s, data, size);
        s[size] = 0;
        return s;
}

/* Splits the input at the first NUL byte: [data, ret_a_len) and the rest after the NUL (empty
 * when there is none). */
static inline void fuzz_split(const uint8_t *data, size_t size, size_t *ret_a_len,
                              const uint8_t **ret_b, size_t *ret_b_len) {
        const uint8_t *z = memchr(data, 0, size);

        *ret_a_len = z ? (size_t) (z - data) : size;
        *ret_b = z ? z + 1 : data + size;
        *ret_b_len = z ? size - *ret_a_len - 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
