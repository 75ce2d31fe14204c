/* SPDX-License-Identifier: MIT */
/* test-ctl-output.c: fleetctl's output pieces (applets/ctl-output.c): the tab writer against
 * goldens computed with Go text/tabwriter's rules (minwidth 0, tabwidth 8, padding 1, '\t'),
 * --fields parsing, machine legends, metadata, shell quoting. */
#include "tests.h"

/* The module lives with the applet; it is pure, so it is compiled into the test directly. */
#include "../../applets/ctl-output.c"

static char *table(size_t cols, const char *const *cells) {
        _cleanup_(fl_ctl_table_freep) CtlTable *t = NULL;

        if (fl_ctl_table_new(cols, &t) < 0)
                return NULL;
        for (size_t i = 0; cells[i]; i++)
                if (fl_ctl_table_add(t, cells[i]) < 0)
                        return NULL;
        return fl_ctl_table_format(t);
}

TEST(list_units_golden) {
        /* Spec §1.3's example line: UNIT^I^IMACHINE^I^I^I^IACTIVE^I^ISUB */
        static const char *const cells[] = {
                "UNIT", "MACHINE", "ACTIVE", "SUB",
                "hello.service", "113f16a7.../172.17.8.103", "inactive", "dead",
                "ping.service", "2b8c1b2a.../172.17.8.101", "active", "running",
                NULL,
        };
        _cleanup_free_ char *s = table(4, cells);

        ASSERT_STREQ(s, "UNIT\t\tMACHINE\t\t\t\tACTIVE\t\tSUB\n"
                        "hello.service\t113f16a7.../172.17.8.103\tinactive\tdead\n"
                        "ping.service\t2b8c1b2a.../172.17.8.101\tactive\t\trunning\n");
}

TEST(width_multiple_of_eight) {
        /* 8 characters need 9 with the padding: the column grows to 16. */
        static const char *const cells[] = { "12345678", "x", "1234567", "y", NULL };
        _cleanup_free_ char *s = table(2, cells);

        ASSERT_STREQ(s, "12345678\tx\n1234567\t\ty\n");
}

TEST(seven_chars_one_tab) {
        static const char *const cells[] = { "1234567", "x", "a", "y", NULL };
        _cleanup_free_ char *s = table(2, cells);

        ASSERT_STREQ(s, "1234567\tx\na\ty\n");
}

TEST(list_unit_files_golden) {
        static const char *const cells[] = {
                "UNIT", "HASH", "DSTATE", "STATE", "TARGET",
                "global.service", "e55c0ae", "launched", "-", "global",
                "hello.service", "0d1c468", "launched", "launched", "113f16a7.../172.17.8.103",
                "long-unit-name-for-width@1.service", "0d1c468", "inactive", "inactive", "-",
                NULL,
        };
        _cleanup_free_ char *s = table(5, cells);

        ASSERT_STREQ(s,
                     "UNIT\t\t\t\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n"
                     "global.service\t\t\t\te55c0ae\tlaunched\t-\t\tglobal\n"
                     "hello.service\t\t\t\t0d1c468\tlaunched\tlaunched\t113f16a7.../172.17.8.103\n"
                     "long-unit-name-for-width@1.service\t0d1c468\tinactive\tinactive\t-\n");
}

TEST(header_only) {
        static const char *const cells[] = { "MACHINE", "IP", "METADATA", NULL };
        _cleanup_free_ char *s = table(3, cells);

        ASSERT_STREQ(s, "MACHINE\tIP\tMETADATA\n");
}

TEST(empty_table) {
        static const char *const cells[] = { NULL };
        _cleanup_free_ char *s = table(3, cells);

        ASSERT_STREQ(s, "");
}

TEST(single_column) {
        static const char *const cells[] = { "MACHINE", "113f16a7...", "deadbeef...", NULL };
        _cleanup_free_ char *s = table(1, cells);

        ASSERT_STREQ(s, "MACHINE\n113f16a7...\ndeadbeef...\n");
}

TEST(utf8_counts_runes) {
        /* "é" is two bytes but one column, like Go's rune count. */
        static const char *const cells[] = { "ééééééé", "x", "a", "y", NULL };
        _cleanup_free_ char *s = table(2, cells);

        ASSERT_STREQ(s, "ééééééé\tx\na\ty\n");
}

TEST(control_characters_flattened) {
        static const char *const cells[] = { "a\tb", "c\nd", "\x1b[31m", "e", NULL };
        _cleanup_free_ char *s = table(2, cells);

        ASSERT_STREQ(s, "a b\tc d\n [31m\te\n");
}

TEST(empty_cells_padded) {
        static const char *const cells[] = { "", "x", "abc", "", NULL };
        _cleanup_free_ char *s = table(2, cells);

        ASSERT_STREQ(s, "\tx\nabc\t\n");
}

TEST(tabwrite_blocks) {
        /* A line without a cell in a column ends that column's block: "NAME:" lines separate
         * the two aligned blocks, each with its own width (help output). */
        _cleanup_free_ char *s = fl_ctl_tabwrite("A:\n\tx\tshort\n\tlonger-name\tdesc\nB:\n\ty\tz\n");

        ASSERT_STREQ(s, "A:\n\tx\t\tshort\n\tlonger-name\tdesc\nB:\n\ty\tz\n");
}

TEST(tabwrite_no_final_newline) {
        _cleanup_free_ char *s = fl_ctl_tabwrite("ab\tc");

        ASSERT_STREQ(s, "ab\tc");
}

TEST(fields_default_and_order) {
        static const char *const valid[] = { "unit", "hash", "dstate", NULL };
        _cleanup_strv_free_ char **l = NULL;

        ASSERT_OK(fl_ctl_fields_parse("hash,unit,hash", valid, &l, NULL));
        ASSERT_EQ(fl_strv_length(l), 3);
        ASSERT_STREQ(l[0], "hash");
        ASSERT_STREQ(l[1], "unit");
        ASSERT_STREQ(l[2], "hash");
}

TEST(fields_errors) {
        static const char *const valid[] = { "unit", "hash", NULL };
        _cleanup_strv_free_ char **l = NULL;
        char *bad = NULL;

        ASSERT_ERR(fl_ctl_fields_parse("", valid, &l, &bad), -ENODATA);
        ASSERT_ERR(fl_ctl_fields_parse("unit,bogus", valid, &l, &bad), -EINVAL);
        ASSERT_STREQ(bad, "bogus");
        free(bad);
        bad = NULL;
        /* Go's strings.Split keeps empty pieces: "unit," names the field "". */
        ASSERT_ERR(fl_ctl_fields_parse("unit,", valid, &l, &bad), -EINVAL);
        ASSERT_STREQ(bad, "");
        free(bad);
        ASSERT_NULL(l);
}

TEST(machine_legend) {
        const char *id = "113f16a7f9e24bdc9a3a2b8c1b2a7b9e";
        _cleanup_free_ char *a = fl_ctl_machine_legend(id, "172.17.8.103", false);
        _cleanup_free_ char *b = fl_ctl_machine_legend(id, NULL, false);
        _cleanup_free_ char *c = fl_ctl_machine_legend(id, "10.0.0.1", true);
        _cleanup_free_ char *d = fl_ctl_machine_legend("abc", "", false);

        ASSERT_STREQ(a, "113f16a7.../172.17.8.103");
        ASSERT_STREQ(b, "113f16a7...");
        ASSERT_STREQ(c, "113f16a7f9e24bdc9a3a2b8c1b2a7b9e/10.0.0.1");
        ASSERT_STREQ(d, "abc...");
}

TEST(metadata) {
        char *kv[] = { (char *) "disk", (char *) "ssd", (char *) "region", (char *) "us-east", NULL };
        _cleanup_free_ char *a = fl_ctl_format_metadata(kv, 2);
        _cleanup_free_ char *b = fl_ctl_format_metadata(NULL, 0);

        ASSERT_STREQ(a, "disk=ssd,region=us-east");
        ASSERT_STREQ(b, "-");
}

TEST(go_list) {
        char *l[] = { (char *) "a.service", (char *) "b.service", NULL };
        _cleanup_free_ char *a = fl_ctl_format_list(l);
        _cleanup_free_ char *b = fl_ctl_format_list(NULL);

        ASSERT_STREQ(a, "[a.service b.service]");
        ASSERT_STREQ(b, "[]");
}

TEST(shell_quote) {
        _cleanup_free_ char *a = fl_ctl_shell_quote("hello.service");
        _cleanup_free_ char *b = fl_ctl_shell_quote("a\"b$(rm -rf /)`x`\\");
        _cleanup_free_ char *c = fl_ctl_shell_quote("");

        /* Plain names come out exactly as fleet's %q. */
        ASSERT_STREQ(a, "\"hello.service\"");
        ASSERT_STREQ(b, "\"a\\\"b\\$(rm -rf /)\\`x\\`\\\\\"");
        ASSERT_STREQ(c, "\"\"");
}

static ApiUnit unit_from(const char *name, const char *text) {
        ApiUnit u = { .name = strdup(name) };

        (void) fl_unit_file_parse(text, strlen(text), &u.file, NULL);
        return u;
}

TEST(unit_helpers) {
        _cleanup_(fl_api_unit_done) ApiUnit a =
                unit_from("hello.service", "[Service]\nExecStart=/bin/bash -c \"while true; do echo Hello, World!; sleep 1; done\"\n");
        _cleanup_(fl_api_unit_done) ApiUnit g =
                unit_from("g.service", "[Unit]\nDescription=Global thing\n[X-Fleet]\nGlobal=true\n");
        char h[41];

        fl_ctl_unit_hash(&a, h);
        ASSERT_STREQ(h, "3750b3e9f3962a56c7582929426e9abb012754cf");
        ASSERT_FALSE(fl_ctl_unit_is_global(&a));
        ASSERT_TRUE(fl_ctl_unit_is_global(&g));
        ASSERT_NULL(fl_ctl_unit_description(&a));
        ASSERT_STREQ(fl_ctl_unit_description(&g), "Global thing");
}

TEST_MAIN(T(list_units_golden), T(width_multiple_of_eight), T(seven_chars_one_tab), T(list_unit_files_golden),
          T(header_only), T(empty_table), T(single_column), T(utf8_counts_runes), T(control_characters_flattened),
          T(empty_cells_padded), T(tabwrite_blocks), T(tabwrite_no_final_newline), T(fields_default_and_order),
          T(fields_errors), T(machine_legend), T(metadata), T(go_list), T(shell_quote), T(unit_helpers))
