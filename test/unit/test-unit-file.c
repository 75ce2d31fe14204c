/* SPDX-License-Identifier: MIT */
/* test-unit-file.c: the go-systemd lexer, canonical serialization and SHA-1 (spec §7.1, §7.2).
 * Hashes were computed independently with `printf '<canonical text>' | sha1sum`. */
#include <time.h>

#include "buf.h"
#include "unit-file.h"
#include "tests.h"

/* Parses in and checks that the canonical text is want (and, when given, its hash). */
static int check_canonical(const char *in, size_t len, const char *want, const char *want_hash) {
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;
        _cleanup_free_ char *err = NULL, *s = NULL;
        uint8_t h[20];
        char hex[41];

        if (fl_unit_file_parse(in, len, &u, &err) < 0) {
                fprintf(stderr, "parse failed: %s\n", strempty(err));
                return -1;
        }
        s = fl_unit_file_serialize(u);
        if (!s || !streq(s, want)) {
                fprintf(stderr, "canonical text:\n%s---\nwant:\n%s---\n", strempty(s), want);
                return -1;
        }
        if (want_hash) {
                if (fl_unit_file_hash(u, h) < 0)
                        return -1;
                fl_hash_to_hex(h, hex);
                if (!streq(hex, want_hash)) {
                        fprintf(stderr, "hash %s, want %s\n", hex, want_hash);
                        return -1;
                }
        }
        return 0;
}

#define CANON(in, want, hash) check_canonical(in, sizeof(in) - 1, want, hash)

TEST(spec_hash_vector) {
        ASSERT_OK(CANON("[Service]\nExecStart=/bin/bash -c \"while true; do echo Hello, World!; "
                        "sleep 1; done\"\n",
                        "[Service]\nExecStart=/bin/bash -c \"while true; do echo Hello, World!; "
                        "sleep 1; done\"\n",
                        "3750b3e9f3962a56c7582929426e9abb012754cf"));
}

static const struct {
        const char *name;
        const char *in;
        const char *want;
        const char *hash; /* NULL: not computed */
} canon_cases[] = {
        { "empty input", "", "", "da39a3ee5e6b4b0d3255bfef95601890afd80709" },
        { "comments only", "# a\n; b\n\n", "", "da39a3ee5e6b4b0d3255bfef95601890afd80709" },
        { "comments and spaces around =",
          "# top\n[Unit]\nDescription = Hello \n; c\n[Service]\n  ExecStart=/bin/true\n",
          "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/true\n",
          "6abe518412ef0e18d1c6d81bfce33f496bd51dde" },
        { "interleaved sections regroup", "[A]\na=1\n[B]\nb=1\n[A]\na=2\n",
          "[A]\na=1\na=2\n\n[B]\nb=1\n", "a6f206000e077e57ec6e3d9cf74bbbb70f3c7abc" },
        { "continuation keeps backslash and next line's indent",
          "[Service]\nExecStart=/bin/sh -c \\\n  'echo hi'\n",
          "[Service]\nExecStart=/bin/sh -c \\\n  'echo hi'\n",
          "b6aca594f50ca49a8420d2d812a4b457e2553446" },
        { "continuation ended by blank line keeps one newline", "[S]\nA=x \\\n\nB=y\n",
          "[S]\nA=x \\\n\nB=y\n", "0f5f188e0961ceeba677f33c743438f86c3f2b7f" },
        { "continuation ended by whitespace-only line", "[S]\nA=x\\\n   \t\nB=1\n",
          "[S]\nA=x\\\n\nB=1\n", NULL },
        { "repeated keys kept in order", "[S]\nA=1\nA=2\nA=1\n", "[S]\nA=1\nA=2\nA=1\n",
          "03d19366188837019c3464e1ee3e79b3ddccc121" },
        { "CRLF", "[S]\r\nA=1\r\nB = 2 \r\n", "[S]\nA=1\nB=2\n",
          "cec26f37a87ee96100df824fd476bd2b172555ab" },
        { "CRLF continuation", "[S]\r\nA=x \\\r\n y\r\n", "[S]\nA=x \\\n y\n", NULL },
        { "unterminated continuation at EOF", "[S]\nA=b\\", "[S]\nA=b\\\n\n",
          "8d3fb4a3665dd65e41eccd69adcbe808ee05fe13" },
        { "comment continuation swallows next line", "[S]\n# foo \\\nA=1\nB=2\n", "[S]\nB=2\n",
          NULL },
        { "comment continuation outside sections", "# x \\\n[S]\n[T]\nA=1\n", "[T]\nA=1\n", NULL },
        { "inline # is part of the value", "[S]\nA=1 # x\n", "[S]\nA=1 # x\n", NULL },
        { "text before the first section is skipped", "junk A=b\n[S]\nA=1\n", "[S]\nA=1\n",
          NULL },
        { "a [ anywhere before a section starts one", "a=[S]\nb=1\n", "[S]\nb=1\n", NULL },
        { "section names are verbatim", "[X Y ]\nA=1\n[]\nB=2\n", "[X Y ]\nA=1\n\n[]\nB=2\n",
          NULL },
        { "empty sections vanish", "[A]\n[B]\nb=1\n[C]\n", "[B]\nb=1\n", NULL },
        { "empty value", "[S]\nA=\nB=  \n", "[S]\nA=\nB=\n", NULL },
        { "empty name", "[S]\n=v\n", "[S]\n=v\n", NULL },
        { "only the first = splits", "[S]\nA=b=c\n", "[S]\nA=b=c\n", NULL },
        { "no trailing newline", "[S]\nA=1", "[S]\nA=1\n", NULL },
        { "whitespace after section header", "[S] \t\r\nA=1\n", "[S]\nA=1\n", NULL },
        { "leading tabs and blank lines", "[S]\n\n\t A=1\n\n", "[S]\nA=1\n", NULL },
        { "brackets in values", "[S]\nA=[x]\n", "[S]\nA=[x]\n", NULL },
        { "unicode white space is trimmed", "[S]\nA=\xc2\xa0x\xe2\x80\x83\n", "[S]\nA=x\n", NULL },
        { "non-ASCII kept", "[S]\nDescription=h\xc3\xa9llo \xe2\x98\xba\n",
          "[S]\nDescription=h\xc3\xa9llo \xe2\x98\xba\n", NULL },
        { "lone CR inside a value kept", "[S]\nA=x\ry\n", "[S]\nA=x\ry\n", NULL },
        { "backslash not at the end does not continue", "[S]\nA=x\\ \nB=1\n", "[S]\nA=x\\\nB=1\n",
          NULL },
        { "multi-line continuation", "[S]\nA=a\\\n\\\nb\n", "[S]\nA=a\\\n\\\nb\n", NULL },
        { "x-fleet section is part of the hash",
          "[Unit]\nDescription=x\n[X-Fleet]\nConflicts=x*.service\n"
          "MachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\n[Service]\n"
          "ExecStart=/bin/sleep 1000\n",
          "[Unit]\nDescription=x\n\n[X-Fleet]\nConflicts=x*.service\n"
          "MachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\n\n[Service]\n"
          "ExecStart=/bin/sleep 1000\n",
          NULL },
        { "x-fleet last",
          "[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\n"
          "Conflicts=x*.service\nMachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\n",
          "[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/sleep 1000\n\n[X-Fleet]\n"
          "Conflicts=x*.service\nMachineMetadata=\"region=us-east-1\" \"diskType=SSD\"\n",
          "992ac247947829577bf406de5a1097e48745f99e" },
};

TEST(canonical_table) {
        for (size_t i = 0; i < ELEMENTSOF(canon_cases); i++)
                if (check_canonical(canon_cases[i].in, strlen(canon_cases[i].in),
                                    canon_cases[i].want, canon_cases[i].hash) < 0)
                        FAIL_AT("case \"%s\"", canon_cases[i].name);
}

static const struct {
        const char *in;
        size_t len; /* 0: strlen */
        int err;
        const char *msg;
} error_cases[] = {
        { "[S", 0, -EINVAL, "line 1: unable to find end of section" },
        { "[A]\nx=1\n\n[S\nA=1\n", 0, -EINVAL, "line 4: unable to find end of section" },
        { "[S] x\n", 0, -EINVAL, "line 1: found garbage after section name S: [120]" },
        { "[S]\nA=1\n[T]ab \n", 0, -EINVAL, "line 3: found garbage after section name T: [97 98]" },
        { "[S]\nFoo\nA=1\n", 0, -EINVAL,
          "line 2: unexpected newline encountered while parsing option name" },
        { "[S]\nFoo\r\n", 0, -EINVAL,
          "line 2: unexpected newline encountered while parsing option name" },
        { "[S]\nFoo", 0, -EINVAL, "line 2: EOF" },
        { "[S]\nA=1\n\n  Foo bar", 0, -EINVAL, "line 4: EOF" },
        { "[S]\nA=1\n\0", 9, -EINVAL, "line 3: NUL byte" },
        { "\0", 1, -EINVAL, "line 1: NUL byte" },
        { "[S]\nA=\xff\n", 0, -EINVAL, "line 2: invalid UTF-8" },
        { "[S]\nA=\xc0\xaf\n", 0, -EINVAL, "line 2: invalid UTF-8" },        /* overlong */
        { "[S]\nA=\xed\xa0\x80\n", 0, -EINVAL, "line 2: invalid UTF-8" },    /* surrogate */
        { "[S]\nA=\xf4\x90\x80\x80\n", 0, -EINVAL, "line 2: invalid UTF-8" }, /* > U+10FFFF */
        { "[S]\nA=\xe2\x98", 0, -EINVAL, "line 2: invalid UTF-8" },          /* truncated */
        { "# \xfe\n[S]\n", 0, -EINVAL, "line 1: invalid UTF-8" },
};

TEST(parse_errors) {
        for (size_t i = 0; i < ELEMENTSOF(error_cases); i++) {
                _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;
                _cleanup_free_ char *err = NULL;
                size_t len = error_cases[i].len ?: strlen(error_cases[i].in);
                int r = fl_unit_file_parse(error_cases[i].in, len, &u, &err);

                if (r != error_cases[i].err || !err || !streq(err, error_cases[i].msg))
                        FAIL_AT("case %zu: r=%d err=\"%s\", want \"%s\"", i, r, strempty(err),
                                error_cases[i].msg);
                ASSERT_NULL(u);
        }
}

TEST(parse_full_bare_reason) {
        _cleanup_free_ char *reason = NULL;
        unsigned line = 0;

        ASSERT_ERR(fl_unit_file_parse_full("[S]\n\nFoo", 8, NULL, &reason, &line), -EINVAL);
        ASSERT_STREQ(reason, "EOF");
        ASSERT_EQ(line, 3);
        /* No message wanted: still fails cleanly. */
        ASSERT_ERR(fl_unit_file_parse("[S", 2, NULL, NULL), -EINVAL);
}

static char *make_line_unit(size_t prefix_lines, size_t line_len, bool trailing_newline) {
        Buf b = BUF_INIT;

        (void) fl_buf_puts(&b, "[S]\n");
        for (size_t i = 0; i < prefix_lines; i++)
                (void) fl_buf_puts(&b, "A=1\n");
        (void) fl_buf_puts(&b, "B=");
        for (size_t i = 2; i < line_len; i++)
                (void) fl_buf_putc(&b, 'x');
        if (trailing_newline)
                (void) fl_buf_puts(&b, "\nC=1\n");
        return fl_buf_steal(&b);
}

static int parse_str(const char *s, char **ret_err) {
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;

        return fl_unit_file_parse(s, strlen(s), &u, ret_err);
}

TEST(line_guard) {
        /* A line is rejected when the 2048 bytes from its start hold no newline. */
        static const struct {
                size_t len;
                bool newline;
                bool ok;
        } cases[] = {
                { 2047, true, true },   { 2048, true, false }, { 2100, true, false },
                { 2047, false, true },  { 2048, false, false }, { 100000, true, false },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *s = make_line_unit(0, cases[i].len, cases[i].newline);
                _cleanup_free_ char *err = NULL;
                int r = parse_str(s, &err);

                if (cases[i].ok ? r < 0 : r != -EINVAL)
                        FAIL_AT("line of %zu: r=%d (%s)", cases[i].len, r, strempty(err));
                if (!cases[i].ok)
                        ASSERT_STREQ(err, "line 2: line too long (max 2048 bytes)");
        }
}

TEST(line_guard_bufio_window) {
        /* go-systemd only looks when its 4096-byte buffer holds >= 2048 unread bytes at the
         * start of a step: a long line starting at offset ~3000 of the first buffer load slips
         * through, the same line at the start of the file does not. fleet behaves the same. */
        _cleanup_free_ char *late = make_line_unit(750, 3000, true);
        _cleanup_free_ char *early = make_line_unit(0, 3000, true);
        _cleanup_free_ char *err = NULL;
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;

        ASSERT_OK(fl_unit_file_parse(late, strlen(late), &u, NULL));
        ASSERT_EQ(u->n_options, 752);
        ASSERT_EQ(strlen(fl_unit_file_get(u, "S", "B")), 2998);
        ASSERT_ERR(parse_str(early, &err), -EINVAL);
        ASSERT_STREQ(err, "line 2: line too long (max 2048 bytes)");
}

TEST(line_guard_after_comment_and_outside_sections) {
        _cleanup_free_ char *err = NULL, *err2 = NULL;
        Buf b = BUF_INIT;

        /* A long comment is a long line too. */
        ASSERT_OK(fl_buf_puts(&b, "[S]\n#"));
        for (int i = 0; i < 3000; i++)
                ASSERT_OK(fl_buf_putc(&b, 'c'));
        ASSERT_OK(fl_buf_puts(&b, "\nA=1\n"));
        ASSERT_ERR(parse_str(fl_buf_str(&b), &err), -EINVAL);
        ASSERT_STREQ(err, "line 2: line too long (max 2048 bytes)");
        fl_buf_done(&b);

        /* So is junk before the first section. */
        for (int i = 0; i < 3000; i++)
                ASSERT_OK(fl_buf_putc(&b, 'j'));
        ASSERT_OK(fl_buf_puts(&b, "\n[S]\nA=1\n"));
        ASSERT_ERR(parse_str(fl_buf_str(&b), &err2), -EINVAL);
        ASSERT_STREQ(err2, "line 1: line too long (max 2048 bytes)");
        fl_buf_done(&b);
}

TEST(size_limit_fast) {
        size_t n = 10 * 1024 * 1024;
        _cleanup_free_ char *big = malloc(n), *err = NULL;
        UnitFile *u = NULL;
        clock_t t0;

        ASSERT_NOT_NULL(big);
        memset(big, 'a', n);
        t0 = clock();
        ASSERT_ERR(fl_unit_file_parse(big, n, &u, &err), -E2BIG);
        ASSERT_STREQ(err, "unit file too large");
        ASSERT_NULL(u);
        ASSERT_TRUE(clock() - t0 < CLOCKS_PER_SEC / 10);
        /* Exactly at the limit is parsed (and this one is a valid, big unit). */
        free(err);
        err = NULL;
        for (size_t i = 0; i < FL_UNIT_FILE_MAX; i++)
                big[i] = "[S]\nA=1\n"[i % 8];
        ASSERT_OK(fl_unit_file_parse(big, FL_UNIT_FILE_MAX, &u, &err));
        ASSERT_EQ(u->n_options, FL_UNIT_FILE_MAX / 8);
        fl_unit_file_free(u);
}

TEST(big_units_are_not_quadratic) {
        /* 50k one-option sections (25k distinct) and long whitespace runs. */
        Buf b = BUF_INIT;
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;
        _cleanup_free_ char *s = NULL;
        clock_t t0 = clock();

        for (int i = 0; i < 50000; i++)
                ASSERT_OK(fl_buf_printf(&b, "[S%d]\nA=%d\n", i % 25000, i));
        ASSERT_OK(fl_unit_file_parse(b.data, b.len, &u, NULL));
        ASSERT_EQ(u->n_options, 50000);
        s = fl_unit_file_serialize(u);
        ASSERT_NOT_NULL(s);
        ASSERT_TRUE(startswith(s, "[S0]\nA=0\nA=25000\n\n[S1]\nA=1\nA=25001\n\n"));
        ASSERT_TRUE(clock() - t0 < 2 * CLOCKS_PER_SEC);
        fl_buf_done(&b);

        /* Whitespace is read one rune per step: the guard must stay cheap. */
        t0 = clock();
        ASSERT_OK(fl_buf_puts(&b, "[S]\n"));
        for (int i = 0; i < 400000; i++)
                ASSERT_OK(fl_buf_puts(&b, i % 1000 == 999 ? "\n" : " "));
        ASSERT_OK(fl_buf_puts(&b, "A=1\n"));
        fl_unit_file_free(TAKE_PTR(u));
        ASSERT_OK(fl_unit_file_parse(b.data, b.len, &u, NULL));
        ASSERT_STREQ(fl_unit_file_get(u, "S", "A"), "1");
        ASSERT_TRUE(clock() - t0 < 2 * CLOCKS_PER_SEC);
        fl_buf_done(&b);
}

/* xorshift: deterministic junk. */
static uint32_t rnd(uint32_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        return *s;
}

TEST(binary_junk_never_crashes) {
        uint32_t seed = 12345;
        char buf[512];

        for (int iter = 0; iter < 20000; iter++) {
                size_t n = rnd(&seed) % sizeof(buf);
                UnitFile *u = NULL;
                char *err = NULL;
                int r;

                for (size_t i = 0; i < n; i++)
                        buf[i] = (char) rnd(&seed);
                r = fl_unit_file_parse(buf, n, &u, &err);
                ASSERT_TRUE(r == 0 || r == -EINVAL);
                ASSERT_TRUE(r == 0 ? err == NULL && u != NULL : err != NULL && u == NULL);
                ASSERT_TRUE(r == 0 || startswith(err, "line "));
                free(err);
                fl_unit_file_free(u);
        }
}

static void dump(const char *s) {
        for (; *s; s++)
                fprintf(stderr, (unsigned char) *s < 0x20 ? "\\x%02x" : "%c", (unsigned char) *s);
        fputc('\n', stderr);
}

static bool ends_in_backslash(const UnitFile *u) {
        for (size_t i = 0; i < u->n_options; i++)
                if (endswith(u->options[i].value, "\\"))
                        return true;
        return false;
}

TEST(round_trip_property) {
        /* Whatever parses, its canonical text parses to the same canonical text. Inputs stay
         * under 2048 bytes so the line guard (position dependent) never fires. Values ending
         * in a backslash are the known exception (see trailing_backslash_quirk). */
        static const char alphabet[] = "[]=\\\n\n\n\r #;ab \t\"%@";
        uint32_t seed = 777;
        char buf[300];
        int parsed = 0;

        for (int iter = 0; iter < 50000; iter++) {
                size_t n = rnd(&seed) % sizeof(buf);
                _cleanup_(fl_unit_file_freep) UnitFile *u = NULL, *u2 = NULL;
                _cleanup_free_ char *s = NULL, *s2 = NULL, *err = NULL;

                for (size_t i = 0; i < n; i++)
                        buf[i] = alphabet[rnd(&seed) % (sizeof(alphabet) - 1)];
                if (fl_unit_file_parse(buf, n, &u, NULL) < 0 || ends_in_backslash(u))
                        continue;
                parsed++;
                s = fl_unit_file_serialize(u);
                ASSERT_NOT_NULL(s);
                if (fl_unit_file_parse(s, strlen(s), &u2, &err) < 0)
                        FAIL_AT("canonical text does not parse (%s):\n%s", err, s);
                s2 = fl_unit_file_serialize(u2);
                if (!streq(s, s2)) {
                        dump(s);
                        dump(s2);
                        FAIL_AT("not stable");
                }
        }
        ASSERT_TRUE(parsed > 1000);
}

static int parse_str_into(const char *s, UnitFile **ret) {
        return fl_unit_file_parse(s, strlen(s), ret, NULL);
}

TEST(trailing_backslash_quirk) {
        /* "A=x\\ " is no continuation (the backslash is not last), but trimming leaves "x\\",
         * so go-systemd's canonical text "A=x\\\nB=1\n" reads back as one continued value. fleet
         * hashes that text, so we keep the quirk rather than change hashes. */
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL, *u2 = NULL;
        _cleanup_free_ char *s = NULL;

        ASSERT_OK(parse_str_into("[S]\nA=x\\ \nB=1\n", &u));
        ASSERT_EQ(u->n_options, 2);
        ASSERT_STREQ(fl_unit_file_get(u, "S", "A"), "x\\");
        s = fl_unit_file_serialize(u);
        ASSERT_STREQ(s, "[S]\nA=x\\\nB=1\n");
        ASSERT_OK(fl_unit_file_parse(s, strlen(s), &u2, NULL));
        ASSERT_EQ(u2->n_options, 1);
        ASSERT_STREQ(fl_unit_file_get(u2, "S", "A"), "x\\\nB=1");
}

TEST(build_get_dup_equal) {
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL, *d = NULL, *p = NULL;
        _cleanup_free_ char *s = NULL;

        ASSERT_OK(fl_unit_file_new(&u));
        ASSERT_FALSE(fl_unit_file_has_section(u, "Service"));
        s = fl_unit_file_serialize(u);
        ASSERT_STREQ(s, "");
        ASSERT_OK(fl_unit_file_add(u, "Service", "ExecStart", "/bin/true"));
        ASSERT_OK(fl_unit_file_add(u, "Unit", "Description", "d"));
        ASSERT_OK(fl_unit_file_add(u, "Service", "ExecStart", "/bin/false"));
        ASSERT_ERR(fl_unit_file_add(u, "Service", NULL, "x"), -EINVAL);
        ASSERT_EQ(u->n_options, 3);
        ASSERT_STREQ(fl_unit_file_get(u, "Service", "ExecStart"), "/bin/true");
        ASSERT_NULL(fl_unit_file_get(u, "Service", "Description"));
        ASSERT_TRUE(fl_unit_file_has_section(u, "Unit"));
        free(s);
        s = fl_unit_file_serialize(u);
        ASSERT_STREQ(s, "[Service]\nExecStart=/bin/true\nExecStart=/bin/false\n\n[Unit]\n"
                        "Description=d\n");

        ASSERT_OK(fl_unit_file_dup(u, &d));
        ASSERT_EQ(d->n_options, 3);
        ASSERT_TRUE(d->options[0].value != u->options[0].value);
        ASSERT_TRUE(fl_unit_file_equal(u, d));
        ASSERT_OK(fl_unit_file_parse(s, strlen(s), &p, NULL));
        ASSERT_TRUE(fl_unit_file_equal(u, p));
        ASSERT_OK(fl_unit_file_add(d, "Unit", "After", "x"));
        ASSERT_FALSE(fl_unit_file_equal(u, d));
}

TEST(hash_hex) {
        uint8_t h[20], h2[20];
        char hex[41];

        ASSERT_OK(fl_hash_from_hex("3750b3e9f3962a56c7582929426e9abb012754cf", h));
        fl_hash_to_hex(h, hex);
        ASSERT_STREQ(hex, "3750b3e9f3962a56c7582929426e9abb012754cf");
        ASSERT_OK(fl_hash_from_hex("3750B3E9F3962A56C7582929426E9ABB012754CF", h2));
        ASSERT_EQ(memcmp(h, h2, 20), 0);
        ASSERT_ERR(fl_hash_from_hex("3750b3e", h2), -EINVAL);
        ASSERT_ERR(fl_hash_from_hex("3750b3e9f3962a56c7582929426e9abb012754cf0", h2), -EINVAL);
        ASSERT_ERR(fl_hash_from_hex("3750b3e9f3962a56c7582929426e9abb012754cg", h2), -EINVAL);
        ASSERT_ERR(fl_hash_from_hex("", h2), -EINVAL);
        ASSERT_ERR(fl_hash_from_hex(NULL, h2), -EINVAL);
        /* h2 untouched by failures */
        ASSERT_EQ(memcmp(h, h2, 20), 0);
}

TEST(utf8_helpers) {
        uint32_t cp;

        ASSERT_EQ(fl_utf8_decode("\xe2\x98\xba", 3, &cp), 3);
        ASSERT_EQ(cp, 0x263A);
        ASSERT_EQ(fl_utf8_decode("\xe2\x98", 2, &cp), 0);
        ASSERT_EQ(fl_utf8_space_len(" x", 2), 1);
        ASSERT_EQ(fl_utf8_space_len("\xc2\x85", 2), 2);          /* NEL */
        ASSERT_EQ(fl_utf8_space_len("\xe3\x80\x80", 3), 3);      /* ideographic space */
        ASSERT_EQ(fl_utf8_space_len("\xe2\x80\x8b", 3), 0);      /* zero width space: no */
        ASSERT_EQ(fl_utf8_space_len("\xe1\xa0\x8e", 3), 0);      /* U+180E: not since 6.3 */
        ASSERT_EQ(fl_utf8_space_len("\xff", 1), 0);
}

TEST_MAIN(T(spec_hash_vector), T(canonical_table), T(parse_errors), T(parse_full_bare_reason),
          T(line_guard), T(line_guard_bufio_window),
          T(line_guard_after_comment_and_outside_sections), T(size_limit_fast),
          T(big_units_are_not_quadratic), T(binary_junk_never_crashes), T(round_trip_property),
          T(trailing_backslash_quirk), T(build_get_dup_equal), T(hash_hex), T(utf8_helpers))
