/* SPDX-License-Identifier: MIT */
/* glob.c: Go's path.Match. The pattern is cut into chunks, each a run of non-star elements
 * preceded by stars; a chunk after a star is tried at every position up to the next '/'. That
 * leftmost search is exact for globs because chunks are separated by stars. */
#include "glob.h"
#include "macro.h"
#include "unit-file.h"

/* Decodes one rune like Go's DecodeRuneInString: invalid bytes are U+FFFD of width 1. */
static size_t decode(const char *s, size_t n, uint32_t *ret_cp) {
        size_t l = fl_utf8_decode(s, n, ret_cp);

        if (l == 0) {
                *ret_cp = 0xFFFD;
                return n > 0 ? 1 : 0;
        }
        return l;
}

/* One class bound (getEsc): a character, or '\' and a character; never '-' or ']' unescaped,
 * never invalid UTF-8, and something must follow it. Returns bytes used, 0 if malformed. */
static size_t class_char(const char *p, size_t n, uint32_t *ret_cp) {
        size_t i = 0, l;

        if (n == 0 || p[0] == '-' || p[0] == ']')
                return 0;
        if (p[0] == '\\') {
                i = 1;
                if (n == 1)
                        return 0;
        }
        l = fl_utf8_decode(p + i, n - i, ret_cp);
        if (l == 0 || i + l >= n)
                return 0;
        return i + l;
}

/* Parses the class starting after '[' and tests cp against it. Returns the bytes of the class
 * after '[' including the closing ']', or 0 if malformed. */
static size_t match_class(const char *p, size_t n, uint32_t cp, bool *ret_match) {
        size_t i = 0, nrange = 0;
        bool negated = false, match = false;

        if (n == 0)
                return 0;
        if (p[0] == '^') {
                negated = true;
                i++;
        }
        for (;;) {
                uint32_t lo, hi;
                size_t l;

                if (i < n && p[i] == ']' && nrange > 0) {
                        i++;
                        break;
                }
                l = class_char(p + i, n - i, &lo);
                if (l == 0)
                        return 0;
                i += l;
                hi = lo;
                if (p[i] == '-') {
                        l = class_char(p + i + 1, n - i - 1, &hi);
                        if (l == 0)
                                return 0;
                        i += 1 + l;
                }
                if (lo <= cp && cp <= hi)
                        match = true;
                nrange++;
        }
        *ret_match = match != negated;
        return i;
}

/* Splits off the next chunk: *ret_star if stars precede it; the chunk is [*ret_chunk, +len). */
static size_t scan_chunk(const char **pattern, size_t *n, bool *ret_star, const char **ret_chunk) {
        const char *p = *pattern;
        size_t len = *n, i;
        bool inrange = false;

        *ret_star = false;
        while (len > 0 && p[0] == '*') {
                p++;
                len--;
                *ret_star = true;
        }
        for (i = 0; i < len; i++) {
                if (p[i] == '\\') {
                        if (i + 1 < len)
                                i++;
                } else if (p[i] == '[')
                        inrange = true;
                else if (p[i] == ']')
                        inrange = false;
                else if (p[i] == '*' && !inrange)
                        break;
        }
        *ret_chunk = p;
        *pattern = p + i;
        *n = len - i;
        return i;
}

/* Matches chunk against a prefix of s; on success stores the unmatched rest of s. */
static bool match_chunk(const char *c, size_t cn, const char *s, size_t sn, size_t *ret_used) {
        size_t ci = 0, si = 0;

        while (ci < cn) {
                uint32_t cp;
                size_t l;
                bool m;

                switch (c[ci]) {
                case '[':
                        if (si == sn)
                                return false;
                        si += decode(s + si, sn - si, &cp);
                        l = match_class(c + ci + 1, cn - ci - 1, cp, &m);
                        if (l == 0 || !m)
                                return false;
                        ci += 1 + l;
                        break;
                case '?':
                        if (si == sn || s[si] == '/')
                                return false;
                        si += decode(s + si, sn - si, &cp);
                        ci++;
                        break;
                case '\\':
                        ci++;
                        if (ci == cn)
                                return false;
                        __attribute__((fallthrough));
                default:
                        if (si == sn || c[ci] != s[si])
                                return false;
                        si++;
                        ci++;
                        break;
                }
        }
        *ret_used = si;
        return true;
}

bool fl_glob_valid(const char *pattern) {
        size_t n, i = 0;

        if (!pattern)
                return false;
        n = strlen(pattern);
        while (i < n) {
                bool m;
                size_t l;

                switch (pattern[i]) {
                case '\\':
                        if (i + 1 == n)
                                return false;
                        i += 2;
                        break;
                case '[':
                        l = match_class(pattern + i + 1, n - i - 1, 0, &m);
                        if (l == 0)
                                return false;
                        i += 1 + l;
                        break;
                default:
                        i++;
                        break;
                }
        }
        return true;
}

bool fl_glob_match(const char *pattern, const char *name) {
        size_t pn, nn;

        if (!pattern || !name || !fl_glob_valid(pattern))
                return false;
        pn = strlen(pattern);
        nn = strlen(name);

        while (pn > 0) {
                const char *chunk;
                size_t cl, used;
                bool star, found = false;

                cl = scan_chunk(&pattern, &pn, &star, &chunk);
                if (star && cl == 0)
                        /* Trailing star: the rest must not cross a '/'. */
                        return !memchr(name, '/', nn);

                /* The last chunk must consume the whole name. */
                if (match_chunk(chunk, cl, name, nn, &used) && (used == nn || pn > 0)) {
                        name += used;
                        nn -= used;
                        continue;
                }
                if (star)
                        for (size_t i = 0; i < nn && name[i] != '/'; i++) {
                                if (!match_chunk(chunk, cl, name + i + 1, nn - i - 1, &used))
                                        continue;
                                if (pn == 0 && used != nn - i - 1)
                                        continue;
                                name += i + 1 + used;
                                nn -= i + 1 + used;
                                found = true;
                                break;
                        }
                if (!found)
                        return false;
        }
        return nn == 0;
}
