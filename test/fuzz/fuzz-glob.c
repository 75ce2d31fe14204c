/* SPDX-License-Identifier: MIT */
/* fuzz-glob: Go's path.Match as used for Conflicts/Replaces globs (spec §5.4). Input is
 * "pattern\0name" (no NUL: the input is both). fl_glob_match is checked against a slow but
 * obviously right backtracking matcher written from path.Match's grammar (equal where
 * path.Match's greedy search is complete, see below), and a pattern that escapes every byte of
 * a name must match exactly that name. */
#include "fuzz.h"
#include "glob.h"
#include "unit-file.h"

#define MAX_LEN 256

/* getEsc: a class bound; bytes used or 0 if malformed (the pattern was checked valid). */
static size_t ref_class_char(const char *p, size_t n, uint32_t *ret) {
        size_t i = 0, l;

        if (n == 0 || p[0] == '-' || p[0] == ']')
                return 0;
        if (p[0] == '\\') {
                i = 1;
                if (n == 1)
                        return 0;
        }
        l = fl_utf8_decode(p + i, n - i, ret);
        if (l == 0 || i + l >= n)
                return 0;
        return i + l;
}

static size_t ref_decode(const char *s, size_t n, uint32_t *cp) {
        size_t l = fl_utf8_decode(s, n, cp);
        if (l == 0) {
                *cp = 0xFFFD;
                return 1;
        }
        return l;
}

typedef struct Ref {
        const char *p, *s;
        size_t pn, sn;
        int8_t *memo; /* (pn + 1) x (sn + 1): -1 unknown */
} Ref;

static bool ref_match(Ref *m, size_t pi, size_t si) {
        int8_t *slot = &m->memo[pi * (m->sn + 1) + si];
        const char *p = m->p + pi, *s = m->s + si;
        size_t pn = m->pn - pi, sn = m->sn - si;
        bool res = false;
        uint32_t cp;

        if (*slot >= 0)
                return *slot;
        if (pn == 0)
                res = sn == 0;
        else
                switch (p[0]) {
                case '*':
                        res = ref_match(m, pi + 1, si) || (sn > 0 && s[0] != '/' && ref_match(m, pi, si + 1));
                        break;
                case '?':
                        if (sn > 0 && s[0] != '/')
                                res = ref_match(m, pi + 1, si + ref_decode(s, sn, &cp));
                        break;
                case '\\':
                        FUZZ_CHECK(pn >= 2);
                        res = sn > 0 && s[0] == p[1] && ref_match(m, pi + 2, si + 1);
                        break;
                case '[': {
                        size_t i = 1, nrange = 0, l;
                        bool neg = false, hit = false;
                        uint32_t c, lo, hi;

                        if (sn == 0)
                                break;
                        l = ref_decode(s, sn, &c);
                        if (i < pn && p[i] == '^') {
                                neg = true;
                                i++;
                        }
                        for (;;) {
                                size_t k;
                                if (i < pn && p[i] == ']' && nrange > 0) {
                                        i++;
                                        break;
                                }
                                k = ref_class_char(p + i, pn - i, &lo);
                                FUZZ_CHECK(k > 0); /* valid pattern */
                                i += k;
                                hi = lo;
                                if (p[i] == '-') {
                                        k = ref_class_char(p + i + 1, pn - i - 1, &hi);
                                        FUZZ_CHECK(k > 0);
                                        i += 1 + k;
                                }
                                if (lo <= c && c <= hi)
                                        hit = true;
                                nrange++;
                        }
                        if (hit != neg)
                                res = ref_match(m, pi + i, si + l);
                        break;
                }
                default:
                        res = sn > 0 && s[0] == p[0] && ref_match(m, pi + 1, si + 1);
                }
        *slot = res;
        return res;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *pattern = NULL, *name = NULL, *esc = NULL, *memo = NULL;
        const uint8_t *b;
        size_t al, bl;
        bool valid, match;

        fuzz_split(data, size, &al, &b, &bl);
        if (al > MAX_LEN || bl > MAX_LEN)
                return 0;
        pattern = fuzz_strndup(data, al);
        name = memchr(data, 0, size) ? fuzz_strndup(b, bl) : fuzz_strndup(data, al);
        FUZZ_CHECK(pattern && name);

        valid = fl_glob_valid(pattern);
        match = fl_glob_match(pattern, name);
        if (!valid)
                FUZZ_CHECK(!match);
        else {
                Ref m = { pattern, name, strlen(pattern), strlen(name), NULL };
                m.memo = malloc((m.pn + 1) * (m.sn + 1));
                FUZZ_CHECK(m.memo);
                memset(m.memo, -1, (m.pn + 1) * (m.sn + 1));
                memo = (char *) m.memo;
                bool ref = ref_match(&m, 0, 0);
                /* path.Match takes the leftmost match of each chunk after a star and does not
                 * backtrack. That is complete unless the name has a '/' (a star cannot cross it,
                 * so a later choice can be the only one that works, e.g. "*[/x]*" against
                 * "a/b/c"): there Go, and we, may say no where a full glob says yes. */
                if (strchr(name, '/') ? match && !ref : match != ref)
                        fprintf(stderr, "pattern [%s] name [%s]: fl_glob_match %d, reference %d\n", pattern, name,
                                match, ref);
                FUZZ_CHECK(strchr(name, '/') ? !match || ref : match == ref);
        }
        FUZZ_CHECK(!fl_glob_match(NULL, name) && !fl_glob_match(pattern, NULL));
        FUZZ_CHECK(fl_glob_match("*", name) == !strchr(name, '/'));

        /* Every byte escaped: matches the name itself and nothing else. */
        esc = malloc(2 * strlen(name) + 1);
        FUZZ_CHECK(esc);
        for (size_t i = 0, n = strlen(name); i <= n; i++) {
                if (i == n) {
                        esc[2 * i] = 0;
                        break;
                }
                esc[2 * i] = '\\';
                esc[2 * i + 1] = name[i];
        }
        FUZZ_CHECK(fl_glob_valid(esc));
        FUZZ_CHECK(fl_glob_match(esc, name));
        FUZZ_CHECK(fl_glob_match(esc, pattern) == streq(pattern, name));
        return 0;
}
