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

TEST(buf_printf_room) {
        /* fl_buf_printf formats into the room there is and only grows when it did not fit:
         * both ways must give the same text, NUL-terminated. */
        Buf b = BUF_INIT;
        char big[300];

        memset(big, 'y', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        ASSERT_OK(fl_buf_puts(&b, "a"));
        ASSERT_OK(fl_buf_printf(&b, "%s", "bc"));                /* fits in the first 64 */
        ASSERT_STREQ(fl_buf_str(&b), "abc");
        ASSERT_OK(fl_buf_printf(&b, "<%s>", big));                /* does not */
        ASSERT_EQ(b.len, 3 + 2 + strlen(big));
        ASSERT_EQ(strlen(b.data), b.len);
        ASSERT_TRUE(b.data[3] == '<' && b.data[b.len - 1] == '>');
        fl_buf_done(&b);

        /* At the edge: the text and its NUL just fit, then one byte more. */
        for (size_t extra = 0; extra < 2; extra++) {
                size_t cap;

                ASSERT_OK(fl_buf_putc(&b, 'z'));
                cap = b.cap;
                ASSERT_OK(fl_buf_printf(&b, "%.*s", (int) (cap - 2 + extra), big));
                ASSERT_EQ(b.len, cap - 1 + extra);
                ASSERT_EQ(strlen(b.data), b.len);
                ASSERT_TRUE(extra ? b.cap > cap : b.cap == cap);
                fl_buf_done(&b);
        }
}

TEST(buf_cat_u64) {
        Buf b = BUF_INIT;

        ASSERT_OK(fl_buf_cat(&b, "GET ", "/x", " HTTP/1.1", NULL));
        ASSERT_OK(fl_buf_cat(&b, NULL));
        ASSERT_OK(fl_buf_put_u64(&b, 0));
        ASSERT_OK(fl_buf_putc(&b, ' '));
        ASSERT_OK(fl_buf_put_u64(&b, 255));
        ASSERT_OK(fl_buf_putc(&b, ' '));
        ASSERT_OK(fl_buf_put_u64(&b, UINT64_MAX));
        ASSERT_STREQ(fl_buf_str(&b), "GET /x HTTP/1.10 255 18446744073709551615");
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

TEST_MAIN(T(buf_append_printf), T(buf_large), T(buf_printf_room), T(buf_cat_u64), T(strv_split))
