/* SPDX-License-Identifier: MIT */
/* test-glob.c: Go path.Match semantics for Conflicts/Replaces globs (spec §5.4). */
#include "glob.h"
#include "macro.h"
#include "tests.h"

#define BAD -1 /* malformed pattern: never matches, fl_glob_valid false */

static const struct {
        const char *pattern, *name;
        int want;
} cases[] = {
        { "abc", "abc", true },
        { "abc", "abd", false },
        { "abc", "ab", false },
        { "abc", "abcd", false },
        { "", "", true },
        { "", "a", false },
        { "*", "", true },
        { "*", "abc", true },
        { "*c", "abc", true },
        { "a*", "a", true },
        { "a*", "abc", true },
        { "a*", "ab/c", false },
        { "a*/b", "abc/b", true },
        { "a*/b", "a/c/b", false },
        { "a*b*c*d*e*/f", "axbxcxdxe/f", true },
        { "a*b*c*d*e*/f", "axbxcxdxexxx/f", true },
        { "a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false },
        { "a*b*c*d*e*/f", "axbxcxdxexxx/fff", false },
        { "a*b?c*x", "abxbbxdbxebxczzx", true },
        { "a*b?c*x", "abxbbxdbxebxczzy", false },
        { "**", "abc", true },
        { "*x", "xxx", true },
        { "*a*", "bab", true },
        { "ab[c]", "abc", true },
        { "ab[b-d]", "abc", true },
        { "ab[e-g]", "abc", false },
        { "ab[^c]", "abc", false },
        { "ab[^b-d]", "abc", false },
        { "ab[^e-g]", "abc", true },
        { "[a-cx-z]", "y", true },
        { "[z-a]", "m", false }, /* reversed range: valid, empty */
        { "a\\*b", "a*b", true },
        { "a\\*b", "ab", false },
        { "a\\?b", "a?b", true },
        { "a\\?b", "axb", false },
        { "\\[a]", "[a]", true },
        { "a?b", "a\xe2\x98\xba" "b", true },       /* ? is one rune */
        { "a[^a]b", "a\xe2\x98\xba" "b", true },
        { "a???b", "a\xe2\x98\xba" "b", false },
        { "a[^a][^a][^a]b", "a\xe2\x98\xba" "b", false },
        { "[a-\xce\xb6]*", "\xce\xb1", true },      /* [a-ζ]* vs α */
        { "*[a-\xce\xb6]", "A", false },
        { "a?b", "a/b", false },
        { "a*b", "a/b", false },
        { "a[/]b", "a/b", true },                    /* classes may match '/' */
        { "a[^x]b", "a/b", true },
        { "[\\]a]", "]", true },
        { "[\\-]", "-", true },
        { "[x\\-]", "x", true },
        { "[x\\-]", "-", true },
        { "[x\\-]", "z", false },
        { "[\\-x]", "x", true },
        { "[\\-x]", "-", true },
        { "[\\-x]", "a", false },
        { "a]", "a]", true },                        /* lone ']' is literal */
        { "[]a]", "]", BAD },
        { "[-]", "-", BAD },
        { "[x-]", "x", BAD },
        { "[x-]", "-", BAD },
        { "[x-]", "z", BAD },
        { "[-x]", "x", BAD },
        { "[-x]", "-", BAD },
        { "[-x]", "a", BAD },
        { "\\", "a", BAD },
        { "a\\", "a", BAD },
        { "[a-b-c]", "a", BAD },
        { "[", "a", BAD },
        { "[^", "a", BAD },
        { "[^bc", "a", BAD },
        { "a[", "a", BAD },
        { "a[", "ab", BAD },
        { "[]", "a", BAD },
        { "[^]", "a", BAD },
        { "*[", "abc", BAD },
        { "abc[", "abc", BAD },                      /* malformed even after a full match */
        { "[\\", "a", BAD },
        { "[a\xff]", "a", BAD },                     /* invalid UTF-8 inside a class */
        /* fleet's own uses */
        { "conflict.*.service", "conflict.3.service", true },
        { "conflict.*.service", "conflict.service", false },
        { "conflict-global.*.service", "conflict-global.0.service", true },
        { "hello.service", "hello.service", true },
        { "replace.0.service", "replace.1.service", false },
        { "app@*.service", "app@1.service", true },
        { "app@*.service", "app@.service", true },
        { "*.service", "foo.socket", false },
};

TEST(match_table) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                bool want = cases[i].want == true;
                bool valid = cases[i].want != BAD;

                if (fl_glob_match(cases[i].pattern, cases[i].name) != want)
                        FAIL_AT("match(\"%s\", \"%s\") != %d", cases[i].pattern, cases[i].name,
                                want);
                if (fl_glob_valid(cases[i].pattern) != valid)
                        FAIL_AT("valid(\"%s\") != %d", cases[i].pattern, valid);
        }
}

TEST(null_and_long) {
        char p[4096], n[4096];

        ASSERT_FALSE(fl_glob_match(NULL, "a"));
        ASSERT_FALSE(fl_glob_match("a", NULL));
        ASSERT_FALSE(fl_glob_valid(NULL));

        /* Many stars against a long non-matching name: the chunk algorithm stays polynomial. */
        for (size_t i = 0; i < 200; i++) {
                p[2 * i] = '*';
                p[2 * i + 1] = 'a';
        }
        p[400] = 'b';
        p[401] = 0;
        memset(n, 'a', 4000);
        n[4000] = 0;
        ASSERT_FALSE(fl_glob_match(p, n));
        n[3999] = 'b';
        ASSERT_TRUE(fl_glob_match(p, n));
}

TEST_MAIN(T(match_table), T(null_and_long))
