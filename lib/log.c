/* SPDX-License-Identifier: MIT */
/* log.c: minimal leveled logging to stderr, journald-friendly for the daemons. */
#include <stdio.h>

#include "log.h"

static LogTarget log_target = LOG_TARGET_CONSOLE;
static int log_max_level = LOG_INFO;

void fl_log_setup(LogTarget target, int max_level) {
        log_target = target;
        log_max_level = max_level;
}

void fl_log_set_max_level(int level) {
        log_max_level = level;
}

int fl_log_get_max_level(void) {
        return log_max_level;
}

static const char *level_name(int level) {
        switch (level) {
        case LOG_DEBUG:
                return "DEBUG";
        case LOG_INFO:
        case LOG_NOTICE:
                return "INFO";
        case LOG_WARNING:
                return "WARN";
        default:
                return "ERROR";
        }
}

int fl_log_internal(int level, int err, const char *file, int line, const char *fmt, ...) {
        char msg[4096];
        va_list ap;

        err = abs(err);
        /* "%m" in fmt expands to the error passed in, not to whatever errno happens to be. */
        errno = err;
        va_start(ap, fmt);
        (void) vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        if (log_target == LOG_TARGET_DAEMON) {
                const char *base = strrchr(file, '/');
                if (log_max_level >= LOG_DEBUG)
                        fprintf(stderr, "<%d>%s %s:%d: %s\n", level, level_name(level),
                                base ? base + 1 : file, line, msg);
                else
                        fprintf(stderr, "<%d>%s %s\n", level, level_name(level), msg);
        } else
                fprintf(stderr, "%s\n", msg);
        errno = err;
        return -err;
}
