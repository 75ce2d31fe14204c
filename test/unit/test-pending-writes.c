/* SPDX-License-Identifier: MIT */
/* test-pending-writes.c: read-your-writes per unit name (lib/pending-writes.c). */
#include "pending-writes.h"
#include "tests.h"

TEST(per_name) {
        PendingWrites p = {};

        /* a read waits for our last write to its own unit only */
        ASSERT_OK(fl_pending_writes_add(&p, "b.service", 10, 5));
        ASSERT_OK(fl_pending_writes_add(&p, "a.service", 12, 5));
        ASSERT_OK(fl_pending_writes_add(&p, "b.service", 14, 5));
        ASSERT_OK(fl_pending_writes_add(&p, "b.service", 13, 5));     /* replies can come out of order */
        ASSERT_EQ(fl_pending_writes_get(&p, "a.service"), 12);
        ASSERT_EQ(fl_pending_writes_get(&p, "b.service"), 14);
        ASSERT_EQ(fl_pending_writes_get(&p, "c.service"), 0);
        /* a write the reader has shown already is not kept */
        ASSERT_OK(fl_pending_writes_add(&p, "c.service", 5, 5));
        ASSERT_EQ(fl_pending_writes_get(&p, "c.service"), 0);
        ASSERT_EQ(p.n, 2);

        fl_pending_writes_prune(&p, 11);        /* below the lowest held: nothing to drop */
        ASSERT_EQ(p.n, 2);
        fl_pending_writes_prune(&p, 12);
        ASSERT_EQ(fl_pending_writes_get(&p, "a.service"), 0);
        ASSERT_EQ(fl_pending_writes_get(&p, "b.service"), 14);
        ASSERT_EQ(p.min, 14);
        fl_pending_writes_prune(&p, 100);
        ASSERT_EQ(p.n, 0);
        ASSERT_EQ(p.min, 0);
        fl_pending_writes_done(&p);
}

TEST(many) {
        /* the watch fell behind a burst: every name written meanwhile is held, then let go */
        PendingWrites p = {};
        char name[32];

        for (unsigned i = 0; i < 5000; i++) {
                snprintf(name, sizeof(name), "u%u.service", (i * 7919) % 5000);
                ASSERT_OK(fl_pending_writes_add(&p, name, 100 + i, 99));
        }
        ASSERT_EQ(p.n, 5000);
        ASSERT_EQ(fl_pending_writes_get(&p, "u0.service"), 100);
        fl_pending_writes_prune(&p, 2599);
        ASSERT_EQ(p.n, 2500);
        for (unsigned i = 0; i < 5000; i++) {
                snprintf(name, sizeof(name), "u%u.service", (i * 7919) % 5000);
                ASSERT_EQ(fl_pending_writes_get(&p, name), i < 2500 ? 0 : 100 + i);
        }
        fl_pending_writes_done(&p);
        ASSERT_EQ(p.n, 0);
}

TEST_MAIN(T(per_name), T(many))
