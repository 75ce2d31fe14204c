/* SPDX-License-Identifier: MIT */
/* test-named-array.c: sorted pointer arrays keyed by a leading `char *name`, and lookups in
 * sorted struct arrays keyed by their first member. */
#include <stdio.h>

#include "macro.h"
#include "named-array.h"
#include "tests.h"

typedef struct Item {
        char *name;
        int value;
} Item;

TEST(insert_find_remove) {
        static const char *const names[] = { "m", "c", "x", "a", "q", "b", "z", "k" };
        Item items[ELEMENTSOF(names)], **l = NULL;
        size_t n = 0, n_allocated = 0, i;
        bool found;

        for (size_t k = 0; k < ELEMENTSOF(names); k++) {
                items[k] = (Item) { .name = (char *) names[k], .value = (int) k };
                i = fl_named_array_index(l, n, names[k], &found);
                ASSERT_FALSE(found);
                ASSERT_OK(fl_named_array_insert(&l, &n, &n_allocated, i, &items[k]));
        }
        ASSERT_EQ(n, ELEMENTSOF(names));
        ASSERT_TRUE(n_allocated >= n);
        for (size_t k = 1; k < n; k++)
                ASSERT_TRUE(strcmp(l[k - 1]->name, l[k]->name) < 0);
        for (size_t k = 0; k < ELEMENTSOF(names); k++) {
                i = fl_named_array_index(l, n, names[k], &found);
                ASSERT_TRUE(found);
                ASSERT_EQ(l[i]->value, (int) k);
        }
        i = fl_named_array_index(l, n, "d", &found);
        ASSERT_FALSE(found);
        ASSERT_STREQ(l[i]->name, "k");
        i = fl_named_array_index(l, n, "zz", &found);
        ASSERT_FALSE(found);
        ASSERT_EQ(i, n);

        i = fl_named_array_index(l, n, "m", &found);
        ASSERT_TRUE(found);
        ASSERT_TRUE(fl_named_array_remove(l, &n, i) == &items[0]);
        ASSERT_EQ(n, ELEMENTSOF(names) - 1);
        fl_named_array_index(l, n, "m", &found);
        ASSERT_FALSE(found);
        ASSERT_STREQ(l[0]->name, "a");
        ASSERT_STREQ(l[n - 1]->name, "z");
        free(l);

        /* empty array */
        ASSERT_EQ(fl_named_array_index(NULL, 0, "a", &found), 0U);
        ASSERT_FALSE(found);
}

/* Past the first allocation (16), inserting in descending order: always at the front. */
TEST(grow) {
        char names[40][4];
        Item items[40], **l = NULL;
        size_t n = 0, n_allocated = 0;
        bool found;

        for (int k = 39; k >= 0; k--) {
                snprintf(names[k], sizeof(names[k]), "%02d", k);
                items[k] = (Item) { .name = names[k], .value = k };
                ASSERT_EQ(fl_named_array_index(l, n, names[k], &found), 0U);
                ASSERT_OK(fl_named_array_insert(&l, &n, &n_allocated, 0, &items[k]));
        }
        ASSERT_EQ(n, 40U);
        ASSERT_EQ(n_allocated, 64U);
        for (size_t k = 0; k < n; k++)
                ASSERT_EQ(l[k]->value, (int) k);
        free(l);
}

TEST(sorted_find) {
        static const Item items[] = { { "a", 0 }, { "b", 1 }, { "b", 2 }, { "d", 3 } };
        static const char *const pairs[] = { "k1", "v1", "k2", "v2", NULL };

        ASSERT_EQ(fl_sorted_find(items, ELEMENTSOF(items), sizeof(Item), "a"), 0);
        ASSERT_EQ(fl_sorted_find(items, ELEMENTSOF(items), sizeof(Item), "b"), 1); /* the first */
        ASSERT_EQ(fl_sorted_find(items, ELEMENTSOF(items), sizeof(Item), "d"), 3);
        ASSERT_EQ(fl_sorted_find(items, ELEMENTSOF(items), sizeof(Item), "c"), -1);
        ASSERT_EQ(fl_sorted_find(items, ELEMENTSOF(items), sizeof(Item), "e"), -1);
        ASSERT_EQ(fl_sorted_find(items, ELEMENTSOF(items), sizeof(Item), NULL), -1);
        ASSERT_EQ(fl_sorted_find(NULL, 0, sizeof(Item), "a"), -1);
        /* flat key, value pairs */
        ASSERT_EQ(fl_sorted_find(pairs, 2, 2 * sizeof(char *), "k2"), 1);
        ASSERT_EQ(fl_sorted_find(pairs, 2, 2 * sizeof(char *), "v1"), -1);
}

TEST_MAIN(T(insert_find_remove), T(grow), T(sorted_find))
