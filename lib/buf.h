/* SPDX-License-Identifier: MIT */
/* buf.h: growable byte buffer, always NUL-terminated (git strbuf style). */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

typedef struct Buf {
        char *data; /* NULL until the first append; then NUL-terminated */
        size_t len;
        size_t cap;
} Buf;

#define BUF_INIT { NULL, 0, 0 }

/* All return 0 or -ENOMEM. */
int fl_buf_grow(Buf *b, size_t extra);
int fl_buf_append(Buf *b, const void *p, size_t n);
int fl_buf_puts(Buf *b, const char *s);
int fl_buf_putc(Buf *b, char c);
int fl_buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3);
/* The UTF-8 encoding of code point cp (at most U+10FFFF; not checked). */
int fl_buf_put_utf8(Buf *b, uint32_t cp);
/* Decimal digits of v. */
int fl_buf_put_u64(Buf *b, uint64_t v);
/* The strings up to the NULL, one after the other: for hot paths, where printf costs. */
int fl_buf_cat(Buf *b, ...) _sentinel_;
void fl_buf_consume(Buf *b, size_t n); /* drop the first n bytes */
void fl_buf_reset(Buf *b);             /* len = 0, memory kept */
void fl_buf_done(Buf *b);              /* free contents */
/* Returns the data (owned by the caller, never NULL unless OOM) and empties b. */
char *fl_buf_steal(Buf *b);
const char *fl_buf_str(const Buf *b); /* "" when empty */
