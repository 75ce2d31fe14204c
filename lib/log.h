/* SPDX-License-Identifier: MIT */
/* log.h: one log line per handled error. lib/ only ever uses log_debug. */
#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"

typedef enum LogTarget {
        LOG_TARGET_CONSOLE, /* plain "message" lines on stderr (fleetctl) */
        LOG_TARGET_DAEMON,  /* "<prio>LEVEL message" on stderr, which journald parses */
} LogTarget;

void fl_log_setup(LogTarget target, int max_level);
void fl_log_set_max_level(int level);
int fl_log_get_max_level(void);

/* Logs at level with errno err (0 for none; "%m" expands to strerror(err)); returns -abs(err). */
int fl_log_internal(int level, int err, const char *file, int line, const char *fmt, ...)
        _printf_(5, 6);

#define log_full_errno(level, err, ...)                                                   \
        ({                                                                                \
                int _l = (level), _e = (err);                                             \
                _l <= fl_log_get_max_level()                                              \
                        ? fl_log_internal(_l, _e, __FILE__, __LINE__, __VA_ARGS__)        \
                        : -abs(_e);                                                       \
        })

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)

/* An errno value for errors that have no system call behind them. */
#define SYNTHETIC_ERRNO(e) (e)
