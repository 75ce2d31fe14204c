/* SPDX-License-Identifier: MIT */
/* clock.h: the monotonic clock in microseconds, for deadlines outside an sd-event loop's own
 * notion of now (blocking clients, timestamps kept across iterations). */
#pragma once

#include <stdint.h>
#include <time.h>

static inline uint64_t fl_now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}
