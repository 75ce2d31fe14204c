/* SPDX-License-Identifier: MIT */
/* tests.h: tiny test framework for test/unit/test-*.c. Each case prints one line:
 * "ok - NAME", "not ok - NAME" or "skip - NAME: REASON"; test/run.sh counts them. */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TestCase {
        const char *name;
        void (*func)(void);
} TestCase;

extern int fl_test_failed_;      /* set by a failing ASSERT in the running case */
extern const char *fl_test_skip_; /* set by SKIP() */

#define TEST(n) static void test_##n(void)
#define T(n) { #n, test_##n }

#define FAIL_AT(...)                                                                  \
        do {                                                                          \
                fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                       \
                fprintf(stderr, __VA_ARGS__);                                         \
                fputc('\n', stderr);                                                  \
                fl_test_failed_ = 1;                                                  \
                return;                                                               \
        } while (0)

#define ASSERT_TRUE(e)                                                                \
        do {                                                                          \
                if (!(e))                                                             \
                        FAIL_AT("assertion failed: %s", #e);                          \
        } while (0)
#define ASSERT_FALSE(e) ASSERT_TRUE(!(e))
#define ASSERT_OK(e)                                                                  \
        do {                                                                          \
                long long _r = (long long) (e);                                       \
                if (_r < 0)                                                           \
                        FAIL_AT("%s failed: %s", #e, strerror((int) -_r));            \
        } while (0)
#define ASSERT_ERR(e, want)                                                           \
        do {                                                                          \
                long long _r = (long long) (e);                                       \
                if (_r != (long long) (want))                                         \
                        FAIL_AT("%s = %lld, want %lld", #e, _r, (long long) (want));  \
        } while (0)
#define ASSERT_EQ(a, b)                                                               \
        do {                                                                          \
                long long _a = (long long) (a), _b = (long long) (b);                 \
                if (_a != _b)                                                         \
                        FAIL_AT("%s = %lld, want %lld", #a, _a, _b);                  \
        } while (0)
#define ASSERT_STREQ(a, b)                                                            \
        do {                                                                          \
                const char *_a = (a), *_b = (b);                                      \
                if (!_a || !_b || strcmp(_a, _b) != 0)                                \
                        FAIL_AT("%s = \"%s\", want \"%s\"", #a, _a ? _a : "(null)",   \
                                _b ? _b : "(null)");                                  \
        } while (0)
#define ASSERT_NULL(p) ASSERT_TRUE((p) == NULL)
#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)
#define SKIP(reason)                                                                  \
        do {                                                                          \
                fl_test_skip_ = (reason);                                             \
                return;                                                               \
        } while (0)

/* Runs every case of the table; returns the process exit status. */
static inline int fl_test_run(const TestCase *cases, size_t n, int argc, char **argv) {
        int failed = 0;
        for (size_t i = 0; i < n; i++) {
                if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
                        continue;
                fl_test_failed_ = 0;
                fl_test_skip_ = NULL;
                cases[i].func();
                if (fl_test_failed_) {
                        printf("not ok - %s\n", cases[i].name);
                        failed++;
                } else if (fl_test_skip_)
                        printf("skip - %s: %s\n", cases[i].name, fl_test_skip_);
                else
                        printf("ok - %s\n", cases[i].name);
                fflush(stdout);
        }
        return failed ? 1 : 0;
}

#define TEST_MAIN(...)                                                                \
        int fl_test_failed_;                                                          \
        const char *fl_test_skip_;                                                    \
        int main(int argc, char **argv) {                                             \
                static const TestCase cases[] = { __VA_ARGS__ };                      \
                return fl_test_run(cases, sizeof(cases) / sizeof(cases[0]), argc, argv); \
        }
