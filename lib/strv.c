/* SPDX-License-Identifier: MIT */
/* strv.c: NULL-terminated string arrays. */
#include "strv.h"

char **fl_strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
        return NULL;
}

size_t fl_strv_length(char *const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

int fl_strv_push(char ***l, char *s) {
        size_t n = fl_strv_length(*l);
        char **c = realloc(*l, sizeof(char *) * (n + 2));
        if (!c) {
                free(s);
                return -ENOMEM;
        }
        c[n] = s;
        c[n + 1] = NULL;
        *l = c;
        return 0;
}

int fl_strv_extend(char ***l, const char *s) {
        char *c = strdup(s);
        if (!c)
                return -ENOMEM;
        return fl_strv_push(l, c);
}

bool fl_strv_contains(char *const *l, const char *s) {
        STRV_FOREACH(i, l)
                if (streq(*i, s))
                        return true;
        return false;
}

int fl_strv_split(const char *s, const char *sep, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        int r;

        for (const char *p = s; *p;) {
                size_t n = strcspn(p, sep);
                if (n > 0) {
                        char *piece = strndup(p, n);
                        if (!piece)
                                return -ENOMEM;
                        r = fl_strv_push(&l, piece);
                        if (r < 0)
                                return r;
                }
                p += n;
                p += strspn(p, sep);
        }
        if (!l) {
                l = new0(char *, 1);
                if (!l)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

void fl_strv_sort(char **l) {
        if (l)
                qsort(l, fl_strv_length(l), sizeof(char *), cmp_str);
}

bool fl_strv_equal(char *const *a, char *const *b) {
        size_t n = fl_strv_length(a);

        if (n != fl_strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return true;
}
