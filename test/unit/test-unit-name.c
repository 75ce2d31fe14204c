/* SPDX-License-Identifier: MIT */
/* test-unit-name.c: ValidateName messages (spec §7.3), name info, mangling (§1.4), quoting. */
#include "unit-name.h"
#include "tests.h"

#define A10 "aaaaaaaaaa"
#define A100 A10 A10 A10 A10 A10 A10 A10 A10 A10 A10
/* 248 + ".service" = 256 bytes: the longest valid name. */
#define NAME256 A100 A100 A10 A10 A10 A10 "aaaaaaaa.service"

static const struct {
        const char *name;
        const char *msg; /* NULL: valid */
} validate_cases[] = {
        { "hello.service", NULL },
        { "hello@1.service", NULL },
        { "hello@.service", NULL },
        { "metadata@smoke1.service", NULL },
        { "a:b-c_d.e\\x2d@f.socket", NULL },
        { "foo.target", NULL },
        { "foo.snapshot", NULL },
        { "x.busname", NULL },
        { "x.swap", NULL },
        { "x.slice", NULL },
        { "x.scope", NULL },
        { "x.automount", NULL },
        { "x@y.path", NULL },
        { "x@y.timer", NULL },
        { "x@y.target", NULL },
        { ".service", NULL }, /* fleet accepts it; fl_unit_name_is_safe does not */
        { NAME256, NULL },
        { "", "unit name cannot be empty" },
        { "a" NAME256, "unit name exceeds maximum length (256)" },
        { "foo", "unit name must contain \".\"" },
        { "foo.", "unit name cannot end in \".\"" },
        { "foo.service.", "unit name cannot end in \".\"" },
        { "foo.bar", "invalid unit type: \"bar\"" },
        { "foo.Service", "invalid unit type: \"Service\"" },
        { "foo.ser\"vice", "invalid unit type: \"ser\\\"vice\"" },
        { "foo.\x01", "invalid unit type: \"\\x01\"" },
        { "foo.a\tb", "invalid unit type: \"a\\tb\"" },
        { "foo.\xc3\xa9", "invalid unit type: \"\xc3\xa9\"" },
        { "foo.\xff", "invalid unit type: \"\\xff\"" },
        { "foo.\xc2\xa0", "invalid unit type: \"\\u00a0\"" },
        { "foo.service/x", "invalid unit type: \"service/x\"" },
        { "foo@1.mount", "invalid unit type for template: \"mount\"" },
        { "foo@.socket.device", "invalid unit type for template: \"device\"" },
        { "foo/bar.service", "invalid character '/' in unit name" },
        { "foo bar.service", "invalid character ' ' in unit name" },
        { "foo\nbar.service", "invalid character '\\n' in unit name" },
        { "foo'.service", "invalid character '\\'' in unit name" },
        { "foo\".service", "invalid character '\"' in unit name" },
        { "fo\xc3\xa9.service", "invalid character '\xc3\xa9' in unit name" },
        { "a\xff" "b.service", "invalid character '\xef\xbf\xbd' in unit name" },
        { "%i.service", "invalid character '%' in unit name" },
        { "@foo.service", "unit name cannot start in \"@\"" },
        { "@.service", "unit name cannot start in \"@\"" },
        /* order: the character check comes before the '@' check */
        { "@a/b.service", "invalid character '/' in unit name" },
};

TEST(validate_table) {
        for (size_t i = 0; i < ELEMENTSOF(validate_cases); i++) {
                _cleanup_free_ char *msg = NULL;
                int r = fl_unit_name_validate(validate_cases[i].name, &msg);

                if (!validate_cases[i].msg) {
                        if (r < 0)
                                FAIL_AT("\"%s\" rejected: %s", validate_cases[i].name,
                                        strempty(msg));
                        continue;
                }
                if (r != -EINVAL || !msg || !streq(msg, validate_cases[i].msg))
                        FAIL_AT("\"%s\": r=%d msg=\"%s\", want \"%s\"", validate_cases[i].name, r,
                                strempty(msg), validate_cases[i].msg);
        }
        ASSERT_ERR(fl_unit_name_validate("foo", NULL), -EINVAL);
        ASSERT_ERR(fl_unit_name_validate(NULL, NULL), -EINVAL);
}

TEST(name_info) {
        UnitNameInfo i = {};

        ASSERT_OK(fl_unit_name_info("foo@bar.service", &i));
        ASSERT_STREQ(i.full, "foo@bar.service");
        ASSERT_STREQ(i.name, "foo@bar");
        ASSERT_STREQ(i.prefix, "foo");
        ASSERT_STREQ(i.instance, "bar");
        ASSERT_STREQ(i.suffix, "service");
        ASSERT_STREQ(i.template_name, "foo@.service");
        fl_unit_name_info_done(&i);
        ASSERT_NULL(i.full);

        ASSERT_OK(fl_unit_name_info("foo.service", &i));
        ASSERT_STREQ(i.name, "foo");
        ASSERT_STREQ(i.prefix, "foo");
        ASSERT_STREQ(i.instance, "");
        ASSERT_NULL(i.template_name);
        fl_unit_name_info_done(&i);

        ASSERT_OK(fl_unit_name_info("foo@.socket", &i));
        ASSERT_STREQ(i.prefix, "foo");
        ASSERT_STREQ(i.instance, "");
        ASSERT_STREQ(i.template_name, "foo@.socket");
        fl_unit_name_info_done(&i);

        /* First '@' splits, last '.' ends the name. */
        ASSERT_OK(fl_unit_name_info("a@b@c.d.timer", &i));
        ASSERT_STREQ(i.name, "a@b@c.d");
        ASSERT_STREQ(i.prefix, "a");
        ASSERT_STREQ(i.instance, "b@c.d");
        ASSERT_STREQ(i.suffix, "timer");
        ASSERT_STREQ(i.template_name, "a@.timer");
        fl_unit_name_info_done(&i);

        ASSERT_OK(fl_unit_name_info("foo.", &i));
        ASSERT_STREQ(i.suffix, "");
        fl_unit_name_info_done(&i);

        ASSERT_ERR(fl_unit_name_info("nodot", &i), -EINVAL);
        ASSERT_ERR(fl_unit_name_info(NULL, &i), -EINVAL);
        ASSERT_NULL(i.full);
        fl_unit_name_info_done(&i);
}

TEST(template_instance) {
        static const struct {
                const char *name;
                bool tmpl, inst;
                const char *template_of;
        } cases[] = {
                { "foo@.service", true, false, NULL },
                { "foo@1.service", false, true, "foo@.service" },
                { "foo@bar.baz.service", false, true, "foo@.service" },
                { "foo@.bar.service", false, true, "foo@.service" },
                { "foo.service", false, false, NULL },
                { "foo", false, false, NULL },
                { "foo.b@r", false, false, NULL },
                { "@.service", true, false, NULL },
                { "", false, false, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *t = fl_unit_name_template_of(cases[i].name);

                if (fl_unit_name_is_template(cases[i].name) != cases[i].tmpl ||
                    fl_unit_name_is_instance(cases[i].name) != cases[i].inst ||
                    !streq_ptr(t, cases[i].template_of))
                        FAIL_AT("\"%s\"", cases[i].name);
        }
        ASSERT_FALSE(fl_unit_name_is_template(NULL));
        ASSERT_FALSE(fl_unit_name_is_instance(NULL));
}

TEST(mangle) {
        static const struct {
                const char *arg, *want;
        } cases[] = {
                { "foo", "foo.service" },
                { "foo.service", "foo.service" },
                { "foo.socket", "foo.socket" },
                { "foo.timer", "foo.timer" },
                { "foo.path", "foo.path" },
                { "foo.device", "foo.device" },
                { "foo.mount", "foo.mount" },
                { "foo.automount", "foo.automount" },
                { "foo.target", "foo.target.service" }, /* fleet QUIRK, kept */
                { "foo.slice", "foo.slice.service" },
                { "/tmp/units/hello@1.service", "hello@1.service" },
                { "units/foo", "foo.service" },
                { "foo/", "foo.service" },
                { "a//b//", "b.service" },
                { "", "..service" },
                { "/", "/.service" },
                { "///", "/.service" },
                { ".service", ".service" },
                { "service", "service.service" },
                { "foo.xservice", "foo.xservice.service" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *m = fl_unit_name_mangle(cases[i].arg);

                if (!streq_ptr(m, cases[i].want))
                        FAIL_AT("mangle(\"%s\") = \"%s\", want \"%s\"", cases[i].arg, strempty(m),
                                cases[i].want);
        }
}

TEST(agent_manageable) {
        ASSERT_TRUE(fl_unit_name_agent_manageable("a.service"));
        ASSERT_TRUE(fl_unit_name_agent_manageable("a.socket"));
        ASSERT_TRUE(fl_unit_name_agent_manageable("a.timer"));
        ASSERT_TRUE(fl_unit_name_agent_manageable("a.path"));
        ASSERT_TRUE(fl_unit_name_agent_manageable("a.device"));
        ASSERT_TRUE(fl_unit_name_agent_manageable("a.mount"));
        ASSERT_TRUE(fl_unit_name_agent_manageable("a.automount"));
        ASSERT_FALSE(fl_unit_name_agent_manageable("a.target"));
        ASSERT_FALSE(fl_unit_name_agent_manageable("a.swap"));
        ASSERT_FALSE(fl_unit_name_agent_manageable("a.service.x"));
        ASSERT_FALSE(fl_unit_name_agent_manageable("service"));
        ASSERT_FALSE(fl_unit_name_agent_manageable(NULL));
}

TEST(is_safe) {
        ASSERT_TRUE(fl_unit_name_is_safe("hello.service"));
        ASSERT_TRUE(fl_unit_name_is_safe("hello@1.service"));
        ASSERT_TRUE(fl_unit_name_is_safe("a:b-c_d.e@f.socket"));
        ASSERT_FALSE(fl_unit_name_is_safe("foo/bar.service"));
        ASSERT_FALSE(fl_unit_name_is_safe(".service"));
        ASSERT_FALSE(fl_unit_name_is_safe(".hidden.service"));
        ASSERT_FALSE(fl_unit_name_is_safe("-rf.service"));
        ASSERT_FALSE(fl_unit_name_is_safe("a..service"));
        ASSERT_FALSE(fl_unit_name_is_safe("a\\x2db.service"));
        ASSERT_FALSE(fl_unit_name_is_safe(NAME256)); /* valid, but longer than NAME_MAX */
        ASSERT_TRUE(fl_unit_name_is_safe(NAME256 + 1));
        ASSERT_FALSE(fl_unit_name_is_safe(""));
        ASSERT_FALSE(fl_unit_name_is_safe(NULL));
}

TEST(go_quote) {
        static const struct {
                const char *in, *want;
        } cases[] = {
                { "", "\"\"" },
                { "abc", "\"abc\"" },
                { "a\"b\\c", "\"a\\\"b\\\\c\"" },
                { "\a\b\f\n\r\t\v", "\"\\a\\b\\f\\n\\r\\t\\v\"" },
                { "\x01\x7f", "\"\\x01\\x7f\"" },
                { "h\xc3\xa9 \xe2\x98\xba", "\"h\xc3\xa9 \xe2\x98\xba\"" },
                { "\xc2\x85\xe2\x80\x8b\xef\xbb\xbf", "\"\\u0085\\u200b\\ufeff\"" },
                { "\xf3\xb0\x80\x80", "\"\\U000f0000\"" },
                { "\xff\xc3", "\"\\xff\\xc3\"" },
                { "it's", "\"it's\"" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *q = fl_go_quote(cases[i].in);

                if (!streq_ptr(q, cases[i].want))
                        FAIL_AT("case %zu: %s, want %s", i, strempty(q), cases[i].want);
        }

        char r[16];
        fl_go_quote_rune('/', r);
        ASSERT_STREQ(r, "'/'");
        fl_go_quote_rune('\'', r);
        ASSERT_STREQ(r, "'\\''");
        fl_go_quote_rune('"', r);
        ASSERT_STREQ(r, "'\"'");
        fl_go_quote_rune(0, r);
        ASSERT_STREQ(r, "'\\x00'");
        fl_go_quote_rune(0x10FFFF, r);
        ASSERT_STREQ(r, "'\\U0010ffff'");
        fl_go_quote_rune(0xD800, r); /* not a rune: U+FFFD, printable */
        ASSERT_STREQ(r, "'\xef\xbf\xbd'");
}

TEST_MAIN(T(validate_table), T(name_info), T(template_instance), T(mangle), T(agent_manageable),
          T(is_safe), T(go_quote))
