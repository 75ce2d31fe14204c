/* SPDX-License-Identifier: MIT */
/* buf.c: growable byte buffer. */
#include <stdarg.h>
#include <stdio.h>

#include "buf.h"

int fl_buf_grow(Buf *b, size_t extra) {
        size_t need, cap;
        char *p;

        if (extra > SIZE_MAX / 2 - b->len)
                return -ENOMEM;
        need = b->len + extra + 1;
        if (need <= b->cap)
                return 0;
        cap = MAX(need, b->cap * 2);
        cap = MAX(cap, (size_t) 64);
        p = realloc(b->data, cap);
        if (!p)
                return -ENOMEM;
        b->data = p;
        b->cap = cap;
        return 0;
}

int fl_buf_append(Buf *b, const void *p, size_t n) {
        int r = fl_buf_grow(b, n);
        if (r < 0)
                return r;
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

int fl_buf_puts(Buf *b, const char *s) {
        return fl_buf_append(b, s, strlen(s));
}

int fl_buf_putc(Buf *b, char c) {
        return fl_buf_append(b, &c, 1);
}

int fl_buf_printf(Buf *b, const char *fmt, ...) {
        size_t room = b->cap > b->len ? b->cap - b->len : 0;
        va_list ap;
        int n, r;

        /* Usually it fits in the room there is: format once, not once to measure and again. */
        va_start(ap, fmt);
        n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
                if (b->data)
                        b->data[b->len] = 0;
                return -EINVAL;
        }
        if ((size_t) n >= room) {
                r = fl_buf_grow(b, (size_t) n);
                if (r < 0) {
                        if (b->data)
                                b->data[b->len] = 0;
                        return r;
                }
                va_start(ap, fmt);
                (void) vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
                va_end(ap);
        }
        b->len += (size_t) n;
        return 0;
}

int fl_buf_put_u64(Buf *b, uint64_t v) {
        char d[20];
        size_t i = sizeof(d);

        do
                d[--i] = (char) ('0' + v % 10);
        while ((v /= 10) > 0);
        return fl_buf_append(b, d + i, sizeof(d) - i);
}

int fl_buf_put_utf8(Buf *b, uint32_t cp) {
        char u[4];
        size_t n;

        if (cp < 0x80) {
                u[0] = (char) cp;
                n = 1;
        } else if (cp < 0x800) {
                u[0] = (char) (0xC0 | cp >> 6);
                u[1] = (char) (0x80 | (cp & 0x3F));
                n = 2;
        } else if (cp < 0x10000) {
                u[0] = (char) (0xE0 | cp >> 12);
                u[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
                u[2] = (char) (0x80 | (cp & 0x3F));
                n = 3;
        } else {
                u[0] = (char) (0xF0 | cp >> 18);
                u[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
                u[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
                u[3] = (char) (0x80 | (cp & 0x3F));
                n = 4;
        }
        return fl_buf_append(b, u, n);
}

int fl_buf_cat(Buf *b, ...) {
        const char *s;
        va_list ap;
        int r = 0;

        va_start(ap, b);
        while (r >= 0 && (s = va_arg(ap, const char *)))
                r = fl_buf_puts(b, s);
        va_end(ap);
        return r;
}

void fl_buf_consume(Buf *b, size_t n) {
        if (n >= b->len) {
                fl_buf_reset(b);
                return;
        }
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
        b->data[b->len] = 0;
}

void fl_buf_reset(Buf *b) {
        b->len = 0;
        if (b->data)
                b->data[0] = 0;
}

void fl_buf_done(Buf *b) {
        free(b->data);
        *b = (Buf) BUF_INIT;
}

char *fl_buf_steal(Buf *b) {
        char *p = b->data;
        if (!p)
                p = strdup("");
        *b = (Buf) BUF_INIT;
        return p;
}

const char *fl_buf_str(const Buf *b) {
        return b->data ?: "";
}
