/* SPDX-License-Identifier: MIT */
/* registry-mirror.c: an in-memory copy of the registry kept current by one recursive watch,
 * decoded lazily into snapshots; and the garbage collection of unreferenced unit files. */
#include <malloc.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "registry-internal.h"
#include "strv.h"

#define MIRROR_BACKOFF_MIN_USEC (100 * 1000ULL)
#define MIRROR_BACKOFF_MAX_USEC (5 * 1000 * 1000ULL)
/* A stream silent this long is restarted, so a dead connection is noticed (an idle registry is
 * silent: heartbeats are TTL refreshes, which etcd does not report). */
#define MIRROR_WATCH_TIMEOUT_USEC (30 * 1000 * 1000ULL)
/* Silence this long right after a burst of events restarts the stream once (quiet_timer()).
 * Short: the burst that makes etcd drop a stream is typically a lost machine's keys expiring in
 * one sweep (over 100 events for 50 units), and the engine must see that expiry at once. */
#define MIRROR_QUIET_USEC (500 * 1000ULL)
/* etcd drops a watcher whose queue of 100 events is full, and the stream then still delivers
 * those 100: only a burst can end in a drop. Events further apart than MIRROR_QUIET_USEC (the
 * leader's lease renewals, say) are no burst and restart nothing. */
#define MIRROR_QUIET_BURST 64U
/* How long the stream may bring nothing at all while our own acknowledged write is unseen
 * before it is taken for dropped (etcd reports every write to its watchers before it answers
 * the writer, so a live stream is never that far behind without showing other events). */
#define MIRROR_STALL_USEC (300 * 1000ULL)

static int mirror_read(Registry *r);
static int mirror_watch(Registry *r);
static int mirror_watch_from(Registry *r, uint64_t wait_index);
static bool apply_event(Registry *r, const EtcdResponse *resp);

static int change_dispatch(sd_event_source *s, void *userdata) {
        Registry *r = userdata;
        if (r->on_change)
                r->on_change(r, r->on_change_userdata);
        return 0;
}

static void mirror_changed(Registry *r) {
        int k;

        if (r->change_defer) {
                k = sd_event_source_set_enabled(r->change_defer, SD_EVENT_ONESHOT);
                if (k >= 0)
                        return;
                r->change_defer = sd_event_source_disable_unref(r->change_defer);
        }
        k = sd_event_add_defer(r->event, &r->change_defer, change_dispatch, r);
        if (k >= 0)
                k = sd_event_source_set_enabled(r->change_defer, SD_EVENT_ONESHOT);
        if (k < 0)
                log_debug("registry: cannot schedule change notification: %s", strerror(-k));
}

static int retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Registry *r = userdata;
        int k;

        k = fl_reg_mirror_resume(r);
        if (k < 0)
                log_debug("registry: mirror retry failed: %s", strerror(-k));
        return 0;
}

/* Runs read (or watch, once loaded) again after the current backoff. */
static int timer_arm(Registry *r, sd_event_source **s, uint64_t usec, sd_event_time_handler_t handler);

static void mirror_retry(Registry *r, int error) {
        int k;

        r->backoff_usec = r->backoff_usec ? MIN(r->backoff_usec * 2, MIRROR_BACKOFF_MAX_USEC) : MIRROR_BACKOFF_MIN_USEC;
        log_debug("registry: mirror %s failed (%s), retrying in %" PRIu64 " ms", r->need_read ? "read" : "watch",
                  strerror(-error), r->backoff_usec / 1000);
        k = timer_arm(r, &r->mirror_timer, r->backoff_usec, retry_timer);
        if (k < 0)
                log_debug("registry: cannot arm mirror retry timer: %s", strerror(-k));
}

/* A full read, flattened: every leaf as key NUL value NUL + modified index + TTL, in one
 * buffer that is mapped, not on the heap (see mallopt in fleet.c). */
typedef struct Flat {
        Buf buf;
        size_t n;
} Flat;

static int flatten(const char *rel, const char *value, uint64_t modified_index, uint64_t ttl_sec, void *userdata) {
        Flat *f = userdata;
        uint64_t nums[2] = { modified_index, ttl_sec };
        int k;

        if ((k = fl_buf_append(&f->buf, nums, sizeof(nums))) < 0 ||
            (k = fl_buf_append(&f->buf, rel, strlen(rel) + 1)) < 0 ||
            (k = fl_buf_append(&f->buf, value, strlen(value) + 1)) < 0)
                return k;
        f->n++;
        return 0;
}

static int load_flat(const Flat *f, RegStore **ret) {
        _cleanup_(fl_reg_store_freep) RegStore *st = NULL;
        const char *p = f->buf.data;
        int k;

        k = fl_reg_store_new(&st);
        if (k < 0)
                return k;
        fl_reg_store_begin_load(st);
        for (size_t i = 0; i < f->n; i++) {
                uint64_t nums[2];
                const char *key, *value;
                memcpy(nums, p, sizeof(nums));
                key = p + sizeof(nums);
                value = key + strlen(key) + 1;
                p = value + strlen(value) + 1;
                k = fl_reg_store_set(st, key, value, nums[0], nums[1]);
                if (k < 0)
                    return k;
        }
        k = fl_reg_store_end_load(st);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(st);
        return 0;
}

static void held_clear(Registry *r);

static void read_done(EtcdClient *c, int k, EtcdResponse *borrowed, void *userdata) {
        _cleanup_(fl_etcd_response_freep) EtcdResponse *resp = NULL;
        Registry *r = userdata;
        Flat f = { .buf = BUF_INIT };
        RegStore *st = NULL;
        uint64_t index, head;

        r->read_call = NULL;
        if (k == -ENOENT && borrowed)
                /* No prefix yet: an empty registry. */
                index = MAX(borrowed->error_index, borrowed->etcd_index);
        else if (k < 0 || !borrowed) {
                held_clear(r);
                r->mirror_call = fl_etcd_call_cancel(r->mirror_call);
                mirror_retry(r, k < 0 ? k : -EBADMSG);
                return;
        } else
                index = borrowed->etcd_index;
        /* The reply (its body, JSON and node tree: ~5x the registry's size) is gone before the
         * store is built, so the store's many small allocations pack together instead of
         * filling the holes the reply leaves all over the heap, which then never shrinks. */
        resp = fl_etcd_response_steal(borrowed);
        k = resp ? fl_reg_etcd_leaves(r, k == -ENOENT ? NULL : resp->node, flatten, &f) : -ENOMEM;
        resp = fl_etcd_response_free(resp);
        if (k >= 0) {
                r->store = fl_reg_store_free(r->store);
                /* Merges what was just freed (glibc keeps small chunks unmerged in fast bins,
                 * and would hand them out again scattered over the whole heap). */
                (void) malloc_trim(0);
                k = load_flat(&f, &st);
        }
        fl_buf_done(&f.buf);
        if (k < 0) {
                /* The old store may be gone: nobody may read a partial one. */
                r->store = fl_reg_store_free(r->store);
                r->mirror_loaded = false;
                held_clear(r);
                r->mirror_call = fl_etcd_call_cancel(r->mirror_call);
                mirror_retry(r, k);
                return;
        }
        r->store = st;
        r->mirror_index = index;
        r->mirror_loaded = true;
        r->need_read = false;
        r->mirror_ready = true;
        r->n_reads++;
        r->backoff_usec = 0;
        log_debug("registry: mirror read %zu keys at index %" PRIu64, fl_reg_store_size(r->store), index);
        (void) malloc_trim(0);
        mirror_changed(r);

        /* The stream covers what came after its head; the read, everything up to its index.
         * Together they miss nothing if the head is not after the read. */
        if (r->mirror_call && !r->held_lost) {
                head = fl_etcd_call_head_index(r->mirror_call);
                if (head == 0 && r->n_held > 0)
                        head = r->held[0]->etcd_index;
                if (head == 0) {
                        /* Not known yet: the stream's first event tells (stream_event()). */
                        r->resync_index = index;
                        return;
                }
                if (head <= index) {
                        for (size_t i = 0; i < r->n_held && r->mirror_loaded; i++)
                                (void) apply_event(r, r->held[i]);
                        held_clear(r);
                        if (r->mirror_loaded)
                                return;
                }
        }
        /* The stream started late (or broke, or its events did not fit): watch again from the
         * read's index instead. */
        held_clear(r);
        k = r->mirror_loaded ? mirror_watch(r) : mirror_read(r);
        if (k < 0)
                mirror_retry(r, k);
}

static void held_clear(Registry *r) {
        for (size_t i = 0; i < r->n_held; i++)
                fl_etcd_response_free(r->held[i]);
        r->held = mfree(r->held);
        r->n_held = 0;
        r->held_lost = false;
}

/* Reads everything again. A stream started from "now" goes first: restarted from the read's
 * index instead, it would find that index in etcd's history whenever writes keep coming
 * (etcd then answers one event per request, and the stream falls further behind). */
static int mirror_read(Registry *r) {
        EtcdRequest req = {
                .method = ETCD_GET,
                .key = r->prefix[0] ? r->prefix : "/",
                .recursive = true,
                .quorum = true,
        };
        int k;

        r->read_call = fl_etcd_call_cancel(r->read_call);
        held_clear(r);
        r->need_read = true;
        k = mirror_watch_from(r, 0);
        if (k < 0)
                return k;
        k = fl_etcd_call_async(r->etcd, &req, read_done, r, &r->read_call);
        if (k < 0) {
                r->mirror_call = fl_etcd_call_cancel(r->mirror_call);
        }
        return k;
}

/* Applies one watch event; returns whether anything changed. */
static bool apply_event(Registry *r, const EtcdResponse *resp) {
        const EtcdNode *n = resp->node;
        const char *rel;
        int k;

        if (!n || !resp->action)
                return false;
        /* Already in the store: the full read beside a new stream showed it. */
        if (n->modified_index <= r->mirror_index)
                return false;
        rel = fl_reg_key_rel(r, n->key);
        r->mirror_index = n->modified_index;
        if (streq(resp->action, "delete") || streq(resp->action, "compareAndDelete") ||
            streq(resp->action, "expire")) {
                if (!rel || !*rel) {
                        RegStore *st;
                        /* The prefix directory itself: deleting it empties the registry. */
                        if (!n->key || !streq(n->key, r->prefix[0] ? r->prefix : "/"))
                                return false;
                        if (fl_reg_store_new(&st) < 0) {
                                r->mirror_loaded = false;
                                return false;
                        }
                        fl_reg_store_free(r->store);
                        r->store = st;
                        return true;
                }
                k = fl_reg_store_remove(r->store, rel);
        } else if (!rel || !*rel || n->dir)
                return false;   /* an empty directory: we only keep values */
        else
                /* set, create, update, compareAndSwap: all carry the new value. */
                k = fl_reg_store_set(r->store, rel, n->value, n->modified_index, n->ttl > 0 ? (uint64_t) n->ttl : 0);
        if (k < 0) {
                /* Out of memory: the copy is now wrong; read it all again later. */
                r->mirror_loaded = false;
                return false;
        }
        return k > 0;
}

static void quiet_arm(Registry *r);

static int quiet_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Registry *r = userdata;
        int k;

        /* Events were flowing, then nothing: etcd may have dropped the stream (it does so,
         * silently, to a reader that fell 100 events behind, i.e. precisely under load). A new
         * stream from the last event seen costs one request, and catches up if it was. */
        if (r->read_call)
                return 0;
        if (r->mirror_loaded && r->mirror_call && fl_etcd_call_has_unread(r->mirror_call))
                quiet_arm(r);   /* not quiet: this process is behind */
        else if (r->mirror_loaded && r->mirror_call) {
                log_debug("registry: stream quiet after events, watching again from %" PRIu64, r->mirror_index + 1);
                k = mirror_watch(r);
                if (k < 0)
                        mirror_retry(r, k);
        }
        return 0;
}

/* Counts the events of a burst; once it could have ended in a drop, (re)arms quiet_timer. */
static void quiet_note_event(Registry *r) {
        uint64_t now;

        if (sd_event_now(r->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        if (now - r->last_event_usec > MIRROR_QUIET_USEC)
                r->burst = 0;
        r->last_event_usec = now;
        if (++r->burst >= MIRROR_QUIET_BURST)
                quiet_arm(r);
}


static void stream_event(EtcdClient *c, EtcdResponse *ev, void *userdata) {
        Registry *r = userdata;
        int k;

        r->backoff_usec = 0;
        if (r->read_call) {
                /* Kept until the read's store is in place (see read_done()). */
                EtcdResponse *own = fl_etcd_response_steal(ev), **a;
                a = own ? reallocarray(r->held, r->n_held + 1, sizeof(*a)) : NULL;
                if (!a) {
                        fl_etcd_response_free(own);
                        r->held_lost = true;
                        return;
                }
                r->held = a;
                r->held[r->n_held++] = own;
                return;
        }
        if (r->resync_index > 0) {
                bool late = ev->etcd_index > r->resync_index;
                r->resync_index = 0;
                if (late) {
                        /* Started after the read: what came in between is missing. */
                        k = mirror_watch(r);
                        if (k < 0)
                                mirror_retry(r, k);
                        return;
                }
        }
        quiet_note_event(r);
        if (apply_event(r, ev))
                mirror_changed(r);
        if (!r->mirror_loaded) {
                /* Out of memory: the copy is wrong now; read it all again. */
                k = mirror_read(r);
                if (k < 0)
                        mirror_retry(r, k);
        }
}

static void stream_done(EtcdClient *c, int k, EtcdResponse *resp, void *userdata) {
        Registry *r = userdata;

        r->mirror_call = NULL;
        if (r->read_call) {
                /* read_done() watches again from the read's index. */
                r->held_lost = true;
                return;
        }
        if (k == -ERANGE) {
                /* etcd's event history moved past our index ("event index cleared", 401): the
                 * events in between are lost, read everything again. */
                log_debug("registry: watch index %" PRIu64 " cleared, re-reading", r->mirror_index + 1);
                k = mirror_read(r);
        } else if (k == 0 || k == -ETIMEDOUT)
                /* Ended by the server, or silent too long (etcd drops a stream it finds slow
                 * without a word): carry on from the last event seen. */
                k = mirror_watch(r);
        if (k < 0)
                mirror_retry(r, k);
}

static void stall_arm(Registry *r);

/* A stream etcd dropped shows only as silence. Our own writes tell when silence is wrong: one
 * the mirror has not seen while the stream brought nothing at all means the stream is dead.
 * Found within MIRROR_STALL_USEC, not seconds: reads of this server wait for the mirror. */
static int stall_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Registry *r = userdata;
        int k;

        if (!r->mirror_loaded || !r->mirror_call || r->read_call || r->mirror_index >= r->stall_index) {
                r->stall_index = 0;
                return 0;
        }
        if (r->mirror_index != r->stall_seen || fl_etcd_call_has_unread(r->mirror_call)) {
                /* Alive, only behind. */
                r->stall_seen = r->mirror_index;
                stall_arm(r);
                return 0;
        }
        log_debug("registry: mirror at %" PRIu64 " has not seen our write at %" PRIu64 ", watching again",
                  r->mirror_index, r->stall_index);
        r->stall_index = 0;
        k = mirror_watch(r);
        if (k < 0)
                mirror_retry(r, k);
        return 0;
}

/* Tracks our newest write, not the first unseen: once the stream is dead, reads waiting for
 * the mirror can hold back every further write, so no later write may be needed to notice. */
void fl_reg_mirror_wrote(Registry *r, uint64_t index) {
        bool armed = r->stall_index > 0;

        if (!r->mirror_started || !r->event || index <= r->mirror_index || index <= r->stall_index)
                return;
        r->stall_index = index;
        if (armed)
                return;
        r->stall_seen = r->mirror_index;
        stall_arm(r);
}


/* (Re)arms the one-shot timer *s to fire usec from now; a negative errno if it cannot. */
static int timer_arm(Registry *r, sd_event_source **s, uint64_t usec, sd_event_time_handler_t handler) {
        uint64_t now;
        int k;

        k = sd_event_now(r->event, CLOCK_MONOTONIC, &now);
        if (k < 0)
                return k;
        if (*s) {
                if (sd_event_source_set_time(*s, now + usec) >= 0 &&
                    sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT) >= 0)
                        return 0;
                *s = sd_event_source_disable_unref(*s);
        }
        return sd_event_add_time(r->event, s, CLOCK_MONOTONIC, now + usec, 0, handler, r);
}

/* (Re)arms quiet_timer MIRROR_QUIET_USEC from now. */
static void quiet_arm(Registry *r) {
        (void) timer_arm(r, &r->quiet_timer, MIRROR_QUIET_USEC, quiet_timer);
}

static void stall_arm(Registry *r) {
        if (timer_arm(r, &r->stall_timer, MIRROR_STALL_USEC, stall_timer) < 0)
                r->stall_index = 0;
}

static int mirror_watch(Registry *r) {
        return mirror_watch_from(r, r->mirror_index + 1);
}

/* wait_index 0: from now. */
static int mirror_watch_from(Registry *r, uint64_t wait_index) {
        EtcdRequest req = {
                .method = ETCD_WATCH,
                .key = r->prefix[0] ? r->prefix : "/",
                .recursive = true,
                .wait_index = wait_index,
                .timeout_usec = MIRROR_WATCH_TIMEOUT_USEC,
        };
        int k;

        r->mirror_call = fl_etcd_call_cancel(r->mirror_call);
        r->resync_index = 0;
        k = fl_etcd_watch_stream_async(r->etcd, &req, stream_event, stream_done, r, &r->mirror_call);
        if (k >= 0 && r->mirror_loaded)
                r->mirror_ready = true;
        return k;
}

int fl_registry_mirror_start(Registry *r, RegistryChangeFn on_change, void *userdata) {
        int k;

        if (!r->event)
                return -ENOTCONN;
        if (r->mirror_started)
                return -EALREADY;
        r->on_change = on_change;
        r->on_change_userdata = userdata;
        k = mirror_read(r);
        if (k < 0)
                return k;
        r->mirror_started = true;
        return 0;
}

void fl_reg_mirror_pause(Registry *r) {
        r->mirror_call = fl_etcd_call_cancel(r->mirror_call);
        r->read_call = fl_etcd_call_cancel(r->read_call);
        held_clear(r);
        r->mirror_timer = sd_event_source_disable_unref(r->mirror_timer);
}

int fl_reg_mirror_resume(Registry *r) {
        return r->mirror_loaded && !r->need_read ? mirror_watch(r) : mirror_read(r);
}

uint64_t fl_registry_mirror_reads(Registry *r) {
        return r->n_reads;
}

bool fl_registry_mirror_ready(Registry *r) {
        return r && r->mirror_ready;
}

uint64_t fl_registry_mirror_index(Registry *r) {
        return r->mirror_index;
}

const RegSnapshot *fl_registry_snapshot(Registry *r) {
        if (!r->mirror_started || !r->store)
                return NULL;
        return fl_reg_store_snapshot(r->store, r->mirror_index);
}

/* ---- Garbage collection of unit/<hash> ---- */

typedef struct RegGcEntry {
        uint64_t modified_index;
        uint64_t since_usec;
} RegGcEntry;

typedef struct GcData {
        RegTree tree;               /* our own read when there is no mirror */
        char **keys;                /* unit/<hash> to delete ... */
        uint64_t *indexes;          /* ... if still at this modified index */
        size_t n, i;
        uint64_t grace_usec;
} GcData;

static void gc_data_free(void *p) {
        GcData *d = p;
        fl_reg_tree_clear(&d->tree);
        fl_strv_free(d->keys);
        free(d->indexes);
        free(d);
}

typedef struct GcScan {
        RegTree referenced;
        char **gone;                /* gc_seen keys whose unit/<hash> no longer exists */
        RegTree present;            /* unit/<hash> keys seen by this scan */
        Registry *reg;
        GcData *d;
        uint64_t now;
} GcScan;

static int gc_add_ref(const char *hex, uint64_t modified_index, void *userdata) {
        GcScan *g = userdata;
        return fl_reg_tree_ensure(&g->referenced, hex) ? 0 : -ENOMEM;
}

static int gc_consider(const char *hex, uint64_t modified_index, void *userdata) {
        GcScan *g = userdata;
        RegNode *e;
        RegGcEntry *ge;

        if (fl_reg_tree_find(&g->referenced, hex)) {
                fl_reg_tree_remove(&g->reg->gc_seen, hex);
                return 0;
        }
        if (!fl_reg_tree_ensure(&g->present, hex))
                return -ENOMEM;
        e = fl_reg_tree_ensure(&g->reg->gc_seen, hex);
        if (!e)
                return -ENOMEM;
        ge = e->data;
        if (!ge) {
                ge = new0(RegGcEntry, 1);
                if (!ge) {
                        fl_reg_tree_remove(&g->reg->gc_seen, hex);
                        return -ENOMEM;
                }
                e->data = ge;
                ge->modified_index = UINT64_MAX;
        }
        if (ge->modified_index != modified_index) {
                /* New, or re-written since: the grace period starts again. */
                ge->modified_index = modified_index;
                ge->since_usec = g->now;
                return 0;
        }
        if (g->now - ge->since_usec < g->d->grace_usec)
                return 0;
        char **keys;
        uint64_t *idx;
        keys = realloc(g->d->keys, (g->d->n + 2) * sizeof(char *));
        if (!keys)
                return -ENOMEM;
        g->d->keys = keys;
        idx = realloc(g->d->indexes, (g->d->n + 1) * sizeof(uint64_t));
        if (!idx)
                return -ENOMEM;
        g->d->indexes = idx;
        keys[g->d->n] = reg_key(g->reg, "unit", hex);
        if (!keys[g->d->n])
                return -ENOMEM;
        idx[g->d->n] = modified_index;
        keys[++g->d->n] = NULL;
        return 0;
}

static int gc_find_gone(RegNode *n, void *userdata) {
        GcScan *g = userdata;

        if (!fl_reg_tree_find(&g->present, n->key))
                return fl_strv_extend(&g->gone, n->key);
        return 0;
}

/* The same walks over our own read (a raw key tree). */
typedef struct GcTreeWalk {
        GcScan *g;
        bool refs;
} GcTreeWalk;

static int gc_tree_node(RegNode *n, void *userdata) {
        GcTreeWalk *w = userdata;
        const char *rest;

        if (w->refs) {
                uint8_t h[20];
                char hex[41];
                rest = startswith(n->key, "job/");
                if (!rest || !endswith(rest, "/object"))
                        return 0;
                if (fl_reg_decode_job_object(n->value, NULL, h) < 0)
                        return 0;
                fl_hash_to_hex(h, hex);
                return gc_add_ref(hex, 0, w->g);
        }
        rest = startswith(n->key, "unit/");
        if (!rest || !*rest || strchr(rest, '/'))
                return 0;
        return gc_consider(rest, n->modified_index, w->g);
}

/* Exactly one of t (our own read) and st (the mirror). */
static int gc_scan(Registry *r, const RegTree *t, const RegStore *st, GcData *d) {
        GcScan g = { .reg = r, .d = d, .now = fl_now_usec() };
        int k;

        if (t) {
                GcTreeWalk w = { &g, true };
                k = fl_reg_tree_walk(t, gc_tree_node, &w);
                w.refs = false;
                if (k >= 0)
                        k = fl_reg_tree_walk(t, gc_tree_node, &w);
        } else {
                k = fl_reg_store_walk_refs(st, gc_add_ref, &g);
                if (k >= 0)
                        k = fl_reg_store_walk_files(st, gc_consider, &g);
        }
        if (k >= 0)
                k = fl_reg_tree_walk(&r->gc_seen, gc_find_gone, &g);
        STRV_FOREACH(s, g.gone)
                fl_reg_tree_remove(&r->gc_seen, *s);
        fl_strv_free(g.gone);
        fl_reg_tree_clear(&g.referenced);
        fl_reg_tree_clear(&g.present);
        return k;
}

int fl_reg_gc_step(RegOp *op, int k, const EtcdResponse *resp) {
        Registry *r = op->reg;
        GcData *d = op->data;

        switch (op->state) {
        case 0:
                if (r->mirror_loaded && r->mirror_ready) {
                        op->state = 2;
                        k = gc_scan(r, NULL, r->store, d);
                        if (k < 0)
                                return k;
                        break;
                }
                fl_reg_req(op, ETCD_GET, r->prefix[0] ? r->prefix : "/", NULL);
                op->req.recursive = true;
                op->req.quorum = true;
                op->state = 1;
                return 1;
        case 1:
                if (k == -ENOENT)
                        return 0;
                if (k < 0)
                        return k;
                k = fl_reg_tree_add_etcd(r, &d->tree, resp ? resp->node : NULL);
                if (k >= 0)
                        k = gc_scan(r, &d->tree, NULL, d);
                if (k < 0)
                        return k;
                op->state = 2;
                break;
        case 2:
                break;
        case 3:
                /* Result of a compare-and-delete: gone, or re-written meanwhile (kept). Either
                 * way the grace bookkeeping for it starts over. */
                if (k < 0 && k != -ESTALE && k != -ENOENT)
                        return k;
                fl_reg_tree_remove(&r->gc_seen, d->keys[d->i] + strlen(r->prefix) + strlen("/unit/"));
                d->i++;
                break;
        }
        if (d->i >= d->n)
                return 0;
        log_debug("registry: deleting unreferenced %s", d->keys[d->i]);
        fl_reg_req(op, ETCD_DELETE, d->keys[d->i], NULL);
        op->req.prev_index = d->indexes[d->i];
        op->state = 3;
        return 1;
}

int fl_registry_gc_units_async(Registry *r, uint64_t grace_usec, RegDoneFn done, void *userdata) {
        _cleanup_(fl_reg_op_freep) RegOp *op = NULL;
        GcData *d;
        int k;

        k = fl_reg_op_new(r, fl_reg_gc_step, &op);
        if (k < 0)
                return k;
        d = new0(GcData, 1);
        if (!d)
                return -ENOMEM;
        d->grace_usec = grace_usec;
        op->data = d;
        op->free_data = gc_data_free;
        return fl_reg_op_start(TAKE_PTR(op), done, userdata);
}
