/* SPDX-License-Identifier: MIT */
/* test-buf.c: Buf and strv helpers. */
#include "buf.h"
#include "strv.h"
#include "tests.h"

TEST(buf_append_printf) {
        Buf b = BUF_INIT;
        ASSERT_STREQ(fl_buf_str(&b), "");
        ASSERT_OK(fl_buf_puts(&b, "abc"));
        ASSERT_OK(fl_buf_printf(&b, "-%d-", 42));
        ASSERT_STREQ(fl_buf_str(&b), "abc-42-");
        fl_buf_consume(&b, 2);
        ASSERT_STREQ(fl_buf_str(&b), "c-42-");
        ASSERT_EQ(b.len, 5);
        _cleanup_free_ char *s = fl_buf_steal(&b);
        ASSERT_STREQ(s, "c-42-");
        ASSERT_NULL(b.data);
}

TEST(buf_large) {
        Buf b = BUF_INIT;
        for (int i = 0; i < 100000; i++)
                ASSERT_OK(fl_buf_putc(&b, 'x'));
        ASSERT_EQ(b.len, 100000);
        ASSERT_EQ(strlen(b.data), 100000);
        fl_buf_done(&b);
}

TEST(strv_split) {
        _cleanup_strv_free_ char **l = NULL;
        ASSERT_OK(fl_strv_split(" a,,b , c", ", ", &l));
        ASSERT_EQ(fl_strv_length(l), 3);
        ASSERT_STREQ(l[0], "a");
        ASSERT_STREQ(l[2], "c");
        ASSERT_TRUE(fl_strv_contains(l, "b"));
        ASSERT_FALSE(fl_strv_contains(l, "d"));
        _cleanup_strv_free_ char **e = NULL;
        ASSERT_OK(fl_strv_split("", ",", &e));
        ASSERT_EQ(fl_strv_length(e), 0);
}

TEST_MAIN(T(buf_append_printf), T(buf_large), T(strv_split))
