/* SPDX-License-Identifier: MIT */
/* engine.c: fleet's engine inside fleetd (spec §5.1): the leader lease and the reconcile loop.
 *
 * Everything runs on the daemon's sd-event loop. A pass:
 *   1. engine version gate: engine/version below ours is raised by compare-and-swap; a cluster
 *      whose version is above ours is left alone;
 *   2. lease: renew ours, take a free one, steal one left by a pre-v1 engine, or follow;
 *   3. as leader: plan on the mirror's snapshot (lib/scheduler.c) and apply the actions.
 * Passes run every engine_reconcile_interval and, coalesced, soon after a registry change that
 * can alter the plan. Reads come from the registry mirror: a pass with nothing to do costs at
 * most the lease renewal, and a prompt pass within one interval of the last renewal not even
 * that. Plans never overlap. The lease is renewed on time while a batch of actions is applied
 * (a batch of 10,000 placements outlives several intervals); a batch goes on until it is done
 * or the lease is no longer ours for sure. A plan never works on a view older than our own
 * writes: the mirror's snapshot is overlaid with what our completed writes changed and the
 * mirror does not show yet (see engine_view()), so the pass after a batch neither waits for the
 * mirror nor issues the same actions again. */
#include <inttypes.h>
#include <time.h>

#include "log.h"
#include "named-array.h"
#include "scheduler.h"
#include "server.h"

#define ENGINE_VERSION 1
#define ENGINE_USEC_PER_MSEC ((uint64_t) 1000)
#define ENGINE_USEC_PER_SEC ((uint64_t) 1000000)
/* A burst of changes (fleetctl start of many units) becomes one pass. */
#define ENGINE_KICK_DELAY_USEC (50 * ENGINE_USEC_PER_MSEC)
/* Longest wait for the mirror to show our writes: a TTL refresh elsewhere in the process can
 * raise the write index without the watch ever reporting it. */
#define ENGINE_MIRROR_WAIT_USEC (1 * ENGINE_USEC_PER_SEC)
#define ENGINE_GC_INTERVAL_USEC (5 * 60 * ENGINE_USEC_PER_SEC)
#define ENGINE_GC_GRACE_USEC (5 * 60 * ENGINE_USEC_PER_SEC)
/* Writes of one pass in flight at once. etcd on a 2-core box took the same ~5,000 requests/s
 * from 8, 16, 32 or 64 concurrent writers (fleet-bench populate); in test/bench.sh 64 placed
 * 10,000 units no faster than 32 (single runs on a shared box). More than the etcd client's
 * idle pool (ETCD_POOL_MAX, lib/etcd.c) would open a new connection per request beyond it. */
#define ENGINE_MAX_IN_FLIGHT 16

typedef enum EngineOpKind {
        ENGINE_OP_VERSION,
        ENGINE_OP_ACQUIRE,
        ENGINE_OP_RENEW,
        ENGINE_OP_STEAL,
        ENGINE_OP_RELEASE,
        ENGINE_OP_ACTION,
        ENGINE_OP_GC,
} EngineOpKind;

/* One registry request in flight. The registry calls back with it; when the engine is freed
 * first, op->engine is cleared and the callback only frees the op. */
typedef struct EngineOp {
        Engine *engine;
        EngineOpKind kind;
        uint64_t started;           /* CLOCK_MONOTONIC when sent */
        size_t action;              /* ENGINE_OP_ACTION: index into engine->actions */
        int old_version;            /* ENGINE_OP_VERSION */
        uint64_t old_ttl_sec;       /* ENGINE_OP_STEAL: the old lease's remaining TTL */
        char *old_leader;           /* ENGINE_OP_STEAL */
        struct EngineOp *prev, *next;
} EngineOp;

/* A completed write of ours (an action), kept until the mirror shows it. */
typedef struct EngineWrite {
        char *unit;                 /* first member: fl_sorted_find() */
        SchedActionType type;
        char *value;                /* SCHEDULE: the machine; SET_REASON: the reason (NULL: none) */
        uint64_t index;             /* the mirror shows it once its index reaches this */
        uint64_t seq;               /* order of completion, for several writes to one unit */
} EngineWrite;

struct Engine {
        Server *s;
        sd_event_source *tick;      /* periodic pass */
        sd_event_source *kick;      /* one-shot: prompt pass after a change */
        uint64_t interval;
        uint64_t lease_ttl_sec;     /* 5 x interval */

        bool leader;
        char *leader_id;            /* last leader logged */
        uint64_t lease_renewed;     /* when the last successful acquire/renew was sent */
        uint64_t lease_until;       /* we act as leader only before this */
        uint64_t hold_until;        /* after a steal: the old leader's lease runs out */
        uint64_t renew_after;       /* after a failed renewal: retry from then on */
        int renew_error;            /* last renewal failure, 0 after a success */
        uint64_t settle_until;      /* see engine_settling() */
        char **settle_seen;         /* machines seen present since settling began, sorted */
        size_t n_settle_seen;
        bool version_ok;            /* raised engine/version ourselves; mirror may lag */
        bool version_warned;

        bool lease_busy;            /* a version/lease request runs */
        bool applying;              /* a batch of actions runs */
        bool pending;               /* a pass was asked for meanwhile */
        SchedAction *actions;
        size_t n_actions, next_action;
        unsigned in_flight;
        bool apply_failed;          /* an action of the batch failed: the mirror knows better */
        uint64_t wait_index;        /* the mirror should reach this before the next plan */
        uint64_t wait_until;

        EngineWrite *writes;        /* see engine_view() */
        size_t n_writes, n_writes_allocated;
        uint64_t writes_seq;
        RegUnit *view_units;        /* the overlaid copy of the snapshot's units */
        size_t n_view_units_allocated;
        RegSnapshot view;

        uint64_t fp_idle;           /* fingerprint of the last snapshot that needed nothing */
        bool fp_idle_valid;

        bool gc_running;
        uint64_t next_gc;

        EngineOp *ops;
        bool stopping;
        void (*stop_done)(void *userdata);
        void *stop_userdata;
};

static void engine_pass(Engine *e);
static void engine_settle_clear(Engine *e);
static void engine_reconcile(Engine *e);
static void engine_apply_pump(Engine *e);
static void engine_finish_stop(Engine *e);
static void engine_stop_done(Engine *e);

static uint64_t engine_now(Engine *e) {
        uint64_t now = 0;
        if (sd_event_now(e->s->event, CLOCK_MONOTONIC, &now) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                now = (uint64_t) ts.tv_sec * ENGINE_USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        }
        return now;
}

static const char *engine_self(Engine *e) {
        return e->s->self.id;
}

/* ---- Fingerprint: everything fl_scheduler_plan() reads ---- */

static uint64_t fp_bytes(uint64_t h, const void *p, size_t n) {
        const unsigned char *c = p;
        for (size_t i = 0; i < n; i++) {
                h ^= c[i];
                h *= UINT64_C(1099511628211);
        }
        return h;
}

static uint64_t fp_str(uint64_t h, const char *s) {
        /* NULL and "" differ; the terminator separates fields. */
        if (!s)
                return fp_bytes(h, "\xff", 1);
        return fp_bytes(h, s, strlen(s) + 1);
}

static uint64_t engine_fingerprint(const RegSnapshot *snap) {
        uint64_t h = UINT64_C(14695981039346656037);

        for (size_t i = 0; i < snap->n_units; i++) {
                const RegUnit *u = &snap->units[i];
                int ts = u->target_state;
                bool has_file = u->file != NULL;

                /* The plan ignores it: a submit of 1,000 units into 5,000 planned ~10 times
                 * for nothing. */
                if (fl_scheduler_unit_inert(u))
                        continue;
                h = fp_str(h, u->name);
                h = fp_str(h, u->hash);
                h = fp_bytes(h, &has_file, sizeof(has_file));
                h = fp_bytes(h, &ts, sizeof(ts));
                h = fp_str(h, u->target);
                h = fp_str(h, u->unschedulable);
        }
        h = fp_bytes(h, "\n", 1);
        for (size_t i = 0; i < snap->n_machines; i++) {
                const RegMachine *m = &snap->machines[i];
                h = fp_str(h, m->id);
                for (size_t j = 0; j < 2 * m->n_metadata; j++)
                        h = fp_str(h, m->metadata[j]);
                h = fp_bytes(h, "\n", 1);
        }
        return h;
}

/* ---- Timers ---- */

static int engine_on_kick(sd_event_source *source, uint64_t usec, void *userdata) {
        engine_pass(userdata);
        return 0;
}

/* Runs a pass delay from now, unless one is already due sooner. */
static void engine_kick(Engine *e, uint64_t delay) {
        uint64_t when = engine_now(e) + delay;
        int r;

        if (e->stopping)
                return;
        if (!e->kick) {
                r = sd_event_add_time(e->s->event, &e->kick, CLOCK_MONOTONIC, when, 0, engine_on_kick, e);
                if (r < 0)
                        log_debug_errno(r, "Failed to add engine kick timer: %m");
                return;
        }
        int enabled = SD_EVENT_OFF;
        uint64_t cur = 0;
        (void) sd_event_source_get_enabled(e->kick, &enabled);
        if (enabled != SD_EVENT_OFF && sd_event_source_get_time(e->kick, &cur) >= 0 && cur <= when)
                return;
        (void) sd_event_source_set_time(e->kick, when);
        (void) sd_event_source_set_enabled(e->kick, SD_EVENT_ONESHOT);
}

static int engine_on_tick(sd_event_source *source, uint64_t usec, void *userdata) {
        Engine *e = userdata;

        (void) sd_event_source_set_time(source, usec + e->interval);
        (void) sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
        engine_pass(e);
        return 0;
}

/* ---- Registry requests ---- */

static EngineOp *engine_op_new(Engine *e, EngineOpKind kind) {
        EngineOp *op = new0(EngineOp, 1);
        if (!op)
                return NULL;
        op->engine = e;
        op->kind = kind;
        op->started = engine_now(e);
        op->next = e->ops;
        if (e->ops)
                e->ops->prev = op;
        e->ops = op;
        return op;
}

static void engine_op_free(EngineOp *op) {
        Engine *e = op->engine;

        if (e) {
                if (op->prev)
                        op->prev->next = op->next;
                else
                        e->ops = op->next;
                if (op->next)
                        op->next->prev = op->prev;
        }
        free(op->old_leader);
        free(op);
}

static void engine_op_done(Registry *r, int error, void *userdata);

/* Starts the request of op (already filled in); on a synchronous failure frees op and returns
 * the error. */
static int engine_op_start(EngineOp *op) {
        Engine *e = op->engine;
        Registry *reg = e->s->registry;
        /* Only some lease requests need the snapshot (its lease index): decoding it for every
         * action rebuilt it after each watch event, 40% of the engine's time while it placed
         * 10,000 units (test/bench.sh). */
        /* The compare index of a renewal or release. A leader compares against its own last
         * write of the lease, which the registry remembers (FL_REG_LEASE_OWN_INDEX): every
         * acquire, renewal and takeover that made us leader went through it, and the mirror
         * may not show the latest yet (a compare against the mirror's older index failed with
         * -ESTALE). Otherwise (after a restart, after failed renewals) the mirror's index, but
         * only when the mirror shows the lease as ours: a lease in other hands must make the
         * compare fail, not be taken back with their index. A takeover compares against the
         * old holder's, of course. A leader renewing on time needs no snapshot: decoding one
         * per renewal while a batch of 10,000 placements ran cost the batch its speed. */
        bool own = e->leader && e->renew_error == 0 &&
                   (op->kind == ENGINE_OP_RENEW || op->kind == ENGINE_OP_RELEASE);
        bool lease = !own && (op->kind == ENGINE_OP_RENEW || op->kind == ENGINE_OP_STEAL ||
                              op->kind == ENGINE_OP_RELEASE);
        const RegSnapshot *snap = lease ? fl_registry_snapshot(reg) : NULL;
        uint64_t cmp_index = own ? FL_REG_LEASE_OWN_INDEX :
                             snap && streq_ptr(snap->lease.machine_id, engine_self(e)) ? snap->lease.index : 0;
        int r = -EINVAL;

        switch (op->kind) {
        case ENGINE_OP_VERSION:
                r = fl_registry_engine_version_set_async(reg, op->old_version, ENGINE_VERSION,
                                                         engine_op_done, op);
                break;
        case ENGINE_OP_ACQUIRE:
                r = fl_registry_lease_acquire_async(reg, engine_self(e), ENGINE_VERSION, e->lease_ttl_sec,
                                                    engine_op_done, op);
                break;
        case ENGINE_OP_RENEW:
                r = fl_registry_lease_renew_async(reg, engine_self(e), ENGINE_VERSION, e->lease_ttl_sec,
                                                  cmp_index, engine_op_done, op);
                break;
        case ENGINE_OP_STEAL:
                r = fl_registry_lease_renew_async(reg, engine_self(e), ENGINE_VERSION,
                                                  e->lease_ttl_sec + op->old_ttl_sec,
                                                  snap ? snap->lease.index : 0, engine_op_done, op);
                break;
        case ENGINE_OP_RELEASE:
                r = fl_registry_lease_release_async(reg, cmp_index, engine_op_done, op);
                break;
        case ENGINE_OP_ACTION: {
                const SchedAction *a = &e->actions[op->action];
                switch (a->type) {
                case SCHED_UNSCHEDULE:
                        r = fl_registry_unschedule_async(reg, a->unit, a->machine_id, engine_op_done, op);
                        break;
                case SCHED_SCHEDULE:
                        r = fl_registry_schedule_async(reg, a->unit, a->machine_id, engine_op_done, op);
                        break;
                case SCHED_SET_REASON:
                        r = fl_registry_set_unschedulable_async(reg, a->unit, a->reason, engine_op_done, op);
                        break;
                default:
                        break;
                }
                break;
        }
        case ENGINE_OP_GC:
                r = fl_registry_gc_units_async(reg, ENGINE_GC_GRACE_USEC, engine_op_done, op);
                break;
        }
        if (r < 0)
                engine_op_free(op);
        return r;
}

/* ---- Leadership ---- */

static void engine_note_leader(Engine *e, const char *id) {
        if (!id || streq_ptr(id, e->leader_id))
                return;
        if (e->leader_id)
                log_info("Engine leadership changed from %s to %s", e->leader_id, id);
        else
                log_info("Engine leader is %s", id);
        char *c = strdup(id);
        if (!c)
                return;   /* logged again next time: harmless */
        free(e->leader_id);
        e->leader_id = c;
}

static void engine_became_leader(Engine *e, uint64_t sent) {
        /* After a new leadership or a store outage, machines whose presence expired meanwhile
         * may simply not have re-registered yet: see engine_settling(). */
        if (!e->leader || e->renew_error != 0) {
                e->settle_until = sent + e->s->config->agent_ttl_usec;
                engine_settle_clear(e);
        }
        if (!e->leader) {
                log_info("Engine leadership acquired");
                char *c = strdup(engine_self(e));
                if (c) {
                        free(e->leader_id);
                        e->leader_id = c;
                }
                e->next_gc = sent + ENGINE_GC_INTERVAL_USEC;
                /* A new leader plans from scratch. */
                e->fp_idle_valid = false;
        }
        e->leader = true;
        e->renew_after = 0;
        e->renew_error = 0;
        e->lease_renewed = sent;
        e->lease_until = sent + e->lease_ttl_sec * ENGINE_USEC_PER_SEC;
}

static void engine_lost(Engine *e) {
        e->leader = false;
        e->renew_error = 0;
        e->renew_after = 0;
        e->fp_idle_valid = false;
}

/* Returns whether the pass can go on. */
static bool engine_op_done_lease(Engine *e, EngineOp *op, int error) {
        switch (op->kind) {
        case ENGINE_OP_VERSION:
                if (error >= 0)
                        log_info("Updated cluster engine version from %d to %d", op->old_version,
                                 ENGINE_VERSION);
                else if (error == -ESTALE || error == -EEXIST)
                        /* Another engine raised it first. */
                        log_debug_errno(error, "Cluster engine version changed concurrently: %m");
                else {
                        log_warning_errno(error, "Failed to update cluster engine version: %m");
                        return false;
                }
                e->version_ok = true;
                return true;
        case ENGINE_OP_ACQUIRE:
                if (error >= 0) {
                        engine_became_leader(e, op->started);
                        return true;
                }
                if (error == -EEXIST)
                        log_debug("Engine lease taken concurrently by another machine");
                else
                        log_warning_errno(error, "Failed to acquire engine leadership: %m");
                return false;
        case ENGINE_OP_RENEW:
                if (error >= 0) {
                        engine_became_leader(e, op->started);
                        return true;
                }
                if (!e->leader) {
                        log_debug_errno(error, "Failed to renew engine lease: %m");
                        return false;
                }
                /* Still ours until lease_until (nobody can take a key that has not expired), so
                 * a hiccup of the store or a mirror that has not caught up with our previous
                 * renewal (stale index) is retried; a lease the mirror shows in other hands is
                 * lost for good. */
                const RegSnapshot *snap = fl_registry_snapshot(e->s->registry);
                uint64_t now = engine_now(e);
                bool taken = snap && snap->lease.machine_id &&
                             !streq(snap->lease.machine_id, engine_self(e));
                if (!taken && now < e->lease_until) {
                        log_debug_errno(error, "Failed to renew engine lease, will retry: %m");
                        e->renew_error = error;
                        e->renew_after = now + e->interval / 4;
                        engine_kick(e, e->interval / 4);
                        return true;
                }
                log_warning_errno(error, "Engine leadership lost, renewal failed: %m");
                engine_lost(e);
                return false;
        case ENGINE_OP_STEAL:
                if (error < 0) {
                        log_debug_errno(error, "Failed to take over the engine lease: %m");
                        return false;
                }
                log_info("Took over engine leadership from %s (engine version < %d), waiting %" PRIu64
                         "s for its lease to run out",
                         strempty(op->old_leader), ENGINE_VERSION, op->old_ttl_sec);
                engine_became_leader(e, op->started);
                e->hold_until = op->started + op->old_ttl_sec * ENGINE_USEC_PER_SEC;
                e->lease_until = e->hold_until + e->lease_ttl_sec * ENGINE_USEC_PER_SEC;
                /* Renew at the usual pace from here on. */
                return true;
        default:
                return false;
        }
}

/* ---- Applying a plan ---- */

static void engine_actions_clear(Engine *e) {
        e->actions = fl_sched_actions_free(e->actions, e->n_actions);
        e->n_actions = e->next_action = 0;
}

static void engine_apply_finish(Engine *e) {
        engine_actions_clear(e);
        e->applying = false;
        /* The writes that went through are in the overlay (engine_view()). One that failed
         * (someone else changed the unit) tells us that the mirror is behind on something we
         * cannot overlay: plan again only once the mirror shows the store as of now (or after
         * a short wait), rather than issuing the same failing write again. */
        if (e->apply_failed) {
                e->apply_failed = false;
                e->wait_index = fl_registry_write_index(e->s->registry);
                e->wait_until = engine_now(e) + ENGINE_MIRROR_WAIT_USEC;
        }
        if (e->pending) {
                e->pending = false;
                engine_kick(e, 0);
        }
}

/* Remembers a completed action for engine_view(). The registry's write index is at or above
 * the index of this write by now: once the mirror reaches it, the mirror shows the write (or
 * something newer). Without memory for it the next plan may redo the action: harmless, as
 * every action is a compare or a create. */
static void engine_record_write(Engine *e, const SchedAction *a) {
        const char *v = a->type == SCHED_UNSCHEDULE ? NULL : a->type == SCHED_SCHEDULE ? a->machine_id : a->reason;
        _cleanup_free_ char *unit = strdup(a->unit), *value = v ? strdup(v) : NULL;

        if (!unit || (v && !value))
                return;
        if (e->n_writes >= e->n_writes_allocated) {
                size_t n = MAX(e->n_writes_allocated * 2, (size_t) 64);
                EngineWrite *w = reallocarray(e->writes, n, sizeof(EngineWrite));
                if (!w)
                        return;
                e->writes = w;
                e->n_writes_allocated = n;
        }
        e->writes[e->n_writes++] = (EngineWrite) {
                .unit = TAKE_PTR(unit),
                .type = a->type,
                .value = TAKE_PTR(value),
                .index = fl_registry_write_index(e->s->registry),
                .seq = ++e->writes_seq,
        };
}

static void engine_writes_clear(Engine *e) {
        for (size_t i = 0; i < e->n_writes; i++) {
                free(e->writes[i].unit);
                free(e->writes[i].value);
        }
        e->n_writes = 0;
}

static void engine_op_done_action(Engine *e, EngineOp *op, int error) {
        const SchedAction *a = &e->actions[op->action];

        if (error >= 0)
                engine_record_write(e, a);
        else if (!(a->type == SCHED_UNSCHEDULE && error == -ENOENT))
                e->apply_failed = true;

        switch (a->type) {
        case SCHED_UNSCHEDULE:
                if (error >= 0)
                        log_info("Unscheduled Job(%s) from Machine(%s): %s", a->unit, a->machine_id,
                                 strempty(a->reason));
                else if (error == -ENOENT || error == -ESTALE)
                        log_debug_errno(error, "Job(%s) was no longer scheduled to Machine(%s): %m", a->unit,
                                        a->machine_id);
                else
                        log_warning_errno(error, "Failed to unschedule Job(%s) from Machine(%s): %m",
                                          a->unit, a->machine_id);
                break;
        case SCHED_SCHEDULE:
                if (error >= 0)
                        log_info("Scheduled Unit(%s) to Machine(%s)", a->unit, a->machine_id);
                else if (error == -EEXIST || error == -ENOENT)
                        log_debug_errno(error, "Job(%s) changed concurrently, not scheduled: %m", a->unit);
                else
                        log_warning_errno(error, "Failed to schedule Unit(%s) to Machine(%s): %m", a->unit,
                                          a->machine_id);
                break;
        case SCHED_SET_REASON:
                if (error >= 0) {
                        if (a->reason)
                                log_notice("Unable to schedule Unit(%s): %s", a->unit, a->reason);
                        else
                                log_debug("Unit(%s) is schedulable again", a->unit);
                } else if (error == -ENOENT)
                        log_debug_errno(error, "Unit(%s) went away before its scheduling status was saved: "
                                        "%m", a->unit);
                else
                        log_warning_errno(error, "Failed to save scheduling status of Unit(%s): %m",
                                          a->unit);
                break;
        default:
                break;
        }
}

static void engine_op_done(Registry *r, int error, void *userdata) {
        EngineOp *op = userdata;
        Engine *e = op->engine;
        bool proceed;

        if (!e) {
                engine_op_free(op);
                return;
        }

        switch (op->kind) {
        case ENGINE_OP_VERSION:
        case ENGINE_OP_ACQUIRE:
        case ENGINE_OP_RENEW:
        case ENGINE_OP_STEAL:
                proceed = engine_op_done_lease(e, op, error);
                engine_op_free(op);
                e->lease_busy = false;
                if (e->stopping) {
                        engine_finish_stop(e);
                        return;
                }
                /* Go on with the same pass: the next step reads what we just learnt. After a
                 * failure wait for the next tick rather than retrying at once. */
                if (proceed)
                        engine_pass(e);
                else if (e->pending) {
                        e->pending = false;
                        engine_kick(e, ENGINE_KICK_DELAY_USEC);
                }
                return;

        case ENGINE_OP_RELEASE:
                if (error >= 0)
                        log_info("Engine leadership released");
                else
                        log_debug_errno(error, "Failed to release the engine lease: %m");
                engine_op_free(op);
                engine_lost(e);
                engine_stop_done(e);
                return;

        case ENGINE_OP_ACTION:
                engine_op_done_action(e, op, error);
                engine_op_free(op);
                e->in_flight--;
                engine_apply_pump(e);
                return;

        case ENGINE_OP_GC:
                if (error < 0 && error != -ESTALE)
                        log_warning_errno(error, "Failed to remove unused unit files from the registry: %m");
                engine_op_free(op);
                e->gc_running = false;
                return;
        }
}

static void engine_apply_pump(Engine *e) {
        uint64_t now = engine_now(e);

        while (e->next_action < e->n_actions && e->in_flight < ENGINE_MAX_IN_FLIGHT) {
                const SchedAction *a = &e->actions[e->next_action];

                /* Groups run one after the other: every unschedule lands before any schedule,
                 * so a unit moving between machines is never targeted twice. */
                if (e->in_flight > 0 && a->type != e->actions[e->next_action - 1].type)
                        break;
                /* A long batch (thousands of units on a busy store) goes on while the lease is
                 * renewed beside it (engine_pass() runs from the tick meanwhile); it stops as
                 * soon as the lease is not ours for sure any more. */
                if (e->stopping || !e->leader || now >= e->lease_until) {
                        if (!e->stopping)
                                log_warning("Engine lease lost during reconciliation, dropping %zu "
                                            "pending changes", e->n_actions - e->next_action);
                        e->next_action = e->n_actions;
                        break;
                }

                EngineOp *op = engine_op_new(e, ENGINE_OP_ACTION);
                if (!op) {
                        log_warning_errno(-ENOMEM, "Failed to apply engine decisions: %m");
                        e->next_action = e->n_actions;
                        break;
                }
                op->action = e->next_action++;
                int r = engine_op_start(op);
                if (r < 0) {
                        log_warning_errno(r, "Failed to send %s of Unit(%s) to the registry: %m",
                                          fl_sched_action_type_to_string(a->type), a->unit);
                        continue;
                }
                e->in_flight++;
        }

        if (e->in_flight == 0 && e->next_action >= e->n_actions)
                engine_apply_finish(e);
}

/* ---- The pass ---- */

static void engine_maybe_gc(Engine *e, uint64_t now) {
        if (e->gc_running || now < e->next_gc)
                return;
        e->next_gc = now + ENGINE_GC_INTERVAL_USEC;
        EngineOp *op = engine_op_new(e, ENGINE_OP_GC);
        if (!op)
                return;
        int r = engine_op_start(op);
        if (r < 0) {
                log_debug_errno(r, "Failed to start unit file garbage collection: %m");
                return;
        }
        e->gc_running = true;
}

static void engine_settle_clear(Engine *e) {
        for (size_t i = 0; i < e->n_settle_seen; i++)
                free(e->settle_seen[i]);
        e->settle_seen = mfree(e->settle_seen);
        e->n_settle_seen = 0;
}

/* settle_seen |= the snapshot's machines: a merge of two sorted lists, O(seen + machines). */
static int engine_settle_merge(Engine *e, const RegSnapshot *snap) {
        size_t n = e->n_settle_seen, m = snap->n_machines, i = 0, j = 0, k = 0;
        char **merged;

        merged = new(char *, n + m + 1);
        if (!merged)
                return -ENOMEM;
        while (i < n || j < m) {
                int c = i >= n ? 1 : j >= m ? -1 : strcmp(e->settle_seen[i], snap->machines[j].id);
                if (c <= 0) {
                        merged[k++] = e->settle_seen[i++];
                        if (c == 0)
                                j++;
                        continue;
                }
                /* On OOM it is left out: found present again next time. */
                merged[k] = strdup(snap->machines[j++].id);
                if (merged[k])
                        k++;
        }
        free(e->settle_seen);
        e->settle_seen = merged;
        e->n_settle_seen = k;
        return 0;
}

/* After an etcd outage every machine's presence may have expired, and the machines come back
 * one by one: a leader that planned at once would move every unit to the first machine that
 * re-registered and the others would stop theirs (fleet's reschedule storm, spec §9 #5). So
 * for one agent_ttl after taking the lease or recovering from failed renewals, a pass that
 * finds units scheduled to machines it has not seen since then waits for them instead. */
static bool engine_settling(Engine *e, const RegSnapshot *snap, uint64_t now) {
        if (now >= e->settle_until) {
                engine_settle_clear(e);
                return false;
        }
        /* A machine seen since then and gone now is really lost: no waiting for it. */
        if (engine_settle_merge(e, snap) < 0)
                log_debug("Engine: out of memory remembering the machines seen");
        for (size_t i = 0; i < snap->n_units; i++) {
                const RegUnit *u = &snap->units[i];
                if (u->target && !fl_reg_snapshot_find_machine(snap, u->target) &&
                    fl_sorted_find(e->settle_seen, e->n_settle_seen, sizeof(char *), u->target) < 0) {
                        log_debug("Engine waits until %" PRIu64 " for machine %s to re-register",
                                  e->settle_until, u->target);
                        engine_kick(e, e->settle_until - now);
                        return true;
                }
        }
        return false;
}

static int engine_write_cmp(const void *a, const void *b) {
        const EngineWrite *x = a, *y = b;
        int c = strcmp(x->unit, y->unit);
        return c != 0 ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

/* What the plan reads: the mirror's snapshot, overlaid with our own completed writes that the
 * mirror does not show yet (job/<unit>/target and job/<unit>/unschedulable are written by the
 * engine only). With it the pass after a batch plans at once, on the store as it is after our
 * writes, instead of waiting for the mirror (up to a second per batch while 10,000 units were
 * placed) or planning the same placements again on a stale view: those would only fail as
 * creates of an existing key, but the per-machine constraints (Conflicts, load) of the other
 * decisions would be checked against a wrong schedule. Returns snap itself when nothing is
 * pending, NULL on OOM. */
static const RegSnapshot *engine_view(Engine *e, const RegSnapshot *snap) {
        uint64_t mirror = fl_registry_mirror_index(e->s->registry);
        size_t k = 0;

        for (size_t i = 0; i < e->n_writes; i++) {
                EngineWrite *w = &e->writes[i];
                if (w->index <= mirror) {
                        free(w->unit);
                        free(w->value);
                } else
                        e->writes[k++] = *w;
        }
        e->n_writes = k;
        if (k == 0)
                return snap;

        if (snap->n_units > e->n_view_units_allocated) {
                RegUnit *u = reallocarray(e->view_units, snap->n_units, sizeof(RegUnit));
                if (!u)
                        return NULL;
                e->view_units = u;
                e->n_view_units_allocated = snap->n_units;
        }
        if (snap->n_units > 0)
                memcpy(e->view_units, snap->units, snap->n_units * sizeof(RegUnit));
        qsort(e->writes, e->n_writes, sizeof(EngineWrite), engine_write_cmp);
        for (size_t i = 0; i < e->n_writes; i++) {
                const EngineWrite *w = &e->writes[i];
                ssize_t x = fl_sorted_find(snap->units, snap->n_units, sizeof(RegUnit), w->unit);
                if (x < 0)
                        continue;   /* destroyed meanwhile */
                RegUnit *u = &e->view_units[x];
                switch (w->type) {
                case SCHED_UNSCHEDULE:
                        u->target = NULL;
                        break;
                case SCHED_SCHEDULE:
                        u->target = w->value;
                        break;
                case SCHED_SET_REASON:
                        u->unschedulable = w->value;
                        break;
                default:
                        break;
                }
        }
        e->view = *snap;
        e->view.units = e->view_units;
        return &e->view;
}

static void engine_reconcile(Engine *e) {
        Registry *reg = e->s->registry;
        uint64_t now = engine_now(e);
        int r;

        if (!e->leader || now >= e->lease_until)
                return;
        if (now < e->hold_until) {
                /* After a takeover the old leader may still act until its lease runs out. */
                engine_kick(e, e->hold_until - now);
                return;
        }

        engine_maybe_gc(e, now);

        const RegSnapshot *snap = fl_registry_snapshot(reg);
        if (!snap)
                return;
        if (fl_registry_mirror_index(reg) < e->wait_index && now < e->wait_until) {
                /* The change callback kicks us when the mirror catches up. */
                engine_kick(e, e->wait_until - now);
                return;
        }

        if (engine_settling(e, snap, now))
                return;

        snap = engine_view(e, snap);
        if (!snap) {
                log_warning_errno(-ENOMEM, "Failed to compute the schedule: %m");
                return;
        }

        uint64_t fp = engine_fingerprint(snap);
        if (e->fp_idle_valid && fp == e->fp_idle)
                return;

        SchedAction *actions = NULL;
        size_t n = 0;
        r = fl_scheduler_plan(snap, &actions, &n);
        if (r < 0) {
                log_warning_errno(r, "Failed to compute the schedule: %m");
                return;
        }
        if (n == 0) {
                e->fp_idle = fp;
                e->fp_idle_valid = true;
                return;
        }
        e->fp_idle_valid = false;

        log_debug("Engine pass at registry index %" PRIu64 ": %zu changes", snap->index, n);
        e->actions = actions;
        e->n_actions = n;
        e->next_action = 0;
        e->applying = true;
        engine_apply_pump(e);
}

static int engine_start_lease_op(Engine *e, EngineOpKind kind, const RegLease *l) {
        EngineOp *op = engine_op_new(e, kind);
        if (!op)
                return log_warning_errno(-ENOMEM, "Failed to contact the registry for the engine lease: %m");
        if (kind == ENGINE_OP_STEAL) {
                op->old_ttl_sec = l->ttl_sec;
                op->old_leader = l->machine_id ? strdup(l->machine_id) : NULL;
        }
        int r = engine_op_start(op);
        if (r < 0)
                return log_warning_errno(r, "Failed to contact the registry for the engine lease: %m");
        e->lease_busy = true;
        return 0;
}

static void engine_pass(Engine *e) {
        Registry *reg = e->s->registry;
        uint64_t now = engine_now(e);

        if (e->stopping)
                return;
        if (e->lease_busy) {
                e->pending = true;
                return;
        }
        if (e->applying) {
                /* A batch runs: all there is to do meanwhile is to renew the lease on time, and
                 * plan again after the batch. No snapshot here: a rebuild for every kick (each
                 * watch event, i.e. each of our own writes, kicks) took the engine's loop away
                 * from the batch. */
                e->pending = true;
                if (e->leader && now < e->lease_until && now + e->interval / 4 >= e->lease_renewed + e->interval &&
                    now >= e->renew_after)
                        (void) engine_start_lease_op(e, ENGINE_OP_RENEW, NULL);
                return;
        }
        if (!fl_registry_mirror_ready(reg))
                return;
        const RegSnapshot *snap = fl_registry_snapshot(reg);
        if (!snap)
                return;

        /* 1. Engine version gate. */
        if (snap->engine_version > ENGINE_VERSION) {
                if (!e->version_warned)
                        log_warning("Cluster engine version is %d, newer than ours (%d): not taking part",
                                    snap->engine_version, ENGINE_VERSION);
                e->version_warned = true;
                if (e->leader)
                        engine_lost(e);
                return;
        }
        e->version_warned = false;
        if (snap->engine_version >= ENGINE_VERSION)
                e->version_ok = false;
        else if (!e->version_ok) {
                EngineOp *op = engine_op_new(e, ENGINE_OP_VERSION);
                if (!op)
                        return;
                op->old_version = snap->engine_version;
                int r = engine_op_start(op);
                if (r < 0) {
                        log_warning_errno(r, "Failed to update cluster engine version: %m");
                        return;
                }
                e->lease_busy = true;
                return;   /* the pass goes on from the callback */
        }

        /* 2. Lease. Until lease_until the lease is ours for sure (we set it by compare-and-swap),
         * whatever the mirror shows meanwhile: it may not have seen our last write yet. */
        const RegLease *l = &snap->lease;
        const char *self = engine_self(e);

        if (e->leader && now < e->lease_until) {
                /* Renew once per interval; prompt passes in between ride on the last renewal. */
                if (now + e->interval / 4 >= e->lease_renewed + e->interval && now >= e->renew_after) {
                        (void) engine_start_lease_op(e, ENGINE_OP_RENEW, l);
                        return;
                }
        } else {
                if (e->leader) {
                        if (e->renew_error < 0)
                                log_warning_errno(e->renew_error,
                                                  "Engine leadership lost, renewal failed: %m");
                        else
                                log_warning("Engine leadership lost, lease expired");
                        engine_lost(e);
                }
                if (!l->machine_id)
                        (void) engine_start_lease_op(e, ENGINE_OP_ACQUIRE, l);
                else if (streq(l->machine_id, self))
                        /* Ours from before a restart (or a renewal that failed on a stale index). */
                        (void) engine_start_lease_op(e, ENGINE_OP_RENEW, l);
                else if (l->version < ENGINE_VERSION) {
                        engine_note_leader(e, l->machine_id);
                        (void) engine_start_lease_op(e, ENGINE_OP_STEAL, l);
                } else
                        engine_note_leader(e, l->machine_id);
                return;   /* on success the pass goes on from the callback */
        }

        /* 3. Reconcile. */
        engine_reconcile(e);
}

/* ---- Stopping ---- */

static void engine_stop_done(Engine *e) {
        void (*done)(void *) = e->stop_done;

        e->stop_done = NULL;
        if (done)
                done(e->stop_userdata);
}

/* Releases the lease if we hold it (or the mirror says so), then tells the caller. */
static void engine_finish_stop(Engine *e) {
        const RegSnapshot *snap = fl_registry_snapshot(e->s->registry);
        bool holds = e->leader || (snap && streq_ptr(snap->lease.machine_id, engine_self(e)));

        if (holds) {
                EngineOp *op = engine_op_new(e, ENGINE_OP_RELEASE);
                int r = op ? engine_op_start(op) : -ENOMEM;
                if (r >= 0)
                        return;   /* engine_op_done() calls engine_stop_done() */
                log_debug_errno(r, "Failed to release the engine lease, it will expire: %m");
        }
        engine_lost(e);
        engine_stop_done(e);
}

/* ---- Interface ---- */

void fl_engine_on_registry_change(Engine *e) {
        Registry *reg;

        if (!e || e->stopping)
                return;
        reg = e->s->registry;
        if (e->leader && e->wait_index > 0 && fl_registry_mirror_index(reg) >= e->wait_index) {
                e->wait_index = 0;
                engine_kick(e, 0);
                return;
        }
        /* No decoding here: the mirror reports every watch event, and a snapshot rebuild per
         * event was 64% of the engine's time while it placed 10,000 units (test/bench.sh). One
         * coalesced pass per burst decodes once; a follower looks only at the lease, a leader
         * plans only when the fingerprint of what the plan reads changed (unit states and
         * heartbeats change all the time and do not matter). */
        engine_kick(e, ENGINE_KICK_DELAY_USEC);
}

int fl_engine_new(Server *s, Engine **ret) {
        Engine *e;
        int r;

        if (!s || !s->event || !s->registry || !s->config || isempty(s->self.id) || !ret)
                return -EINVAL;

        e = new0(Engine, 1);
        if (!e)
                return -ENOMEM;
        e->s = s;
        e->interval = s->config->engine_reconcile_interval_usec;
        if (e->interval == 0)
                e->interval = 2 * ENGINE_USEC_PER_SEC;
        /* Lease TTL = 5 x interval, whole seconds (etcd TTLs are). */
        e->lease_ttl_sec = (5 * e->interval + ENGINE_USEC_PER_SEC - 1) / ENGINE_USEC_PER_SEC;

        /* First pass at once, then every interval. */
        r = sd_event_add_time_relative(s->event, &e->tick, CLOCK_MONOTONIC, 0, 0, engine_on_tick, e);
        if (r < 0) {
                fl_engine_free(e);
                return r;
        }
        (void) sd_event_source_set_description(e->tick, "engine-tick");

        *ret = e;
        return 0;
}

void fl_engine_stop(Engine *e, void (*done)(void *userdata), void *userdata) {
        if (!e || e->stopping) {
                if (done)
                        done(userdata);
                return;
        }
        e->stopping = true;
        e->stop_done = done;
        e->stop_userdata = userdata;
        if (e->tick)
                (void) sd_event_source_set_enabled(e->tick, SD_EVENT_OFF);
        if (e->kick)
                (void) sd_event_source_set_enabled(e->kick, SD_EVENT_OFF);
        /* A lease request in flight may yet make us leader: its callback finishes the stop. */
        if (!e->lease_busy)
                engine_finish_stop(e);
}

Engine *fl_engine_free(Engine *e) {
        if (!e)
                return NULL;
        /* Requests still in flight complete into the void. */
        for (EngineOp *op = e->ops; op; op = op->next)
                op->engine = NULL;
        e->tick = sd_event_source_disable_unref(e->tick);
        e->kick = sd_event_source_disable_unref(e->kick);
        engine_actions_clear(e);
        engine_settle_clear(e);
        engine_writes_clear(e);
        free(e->writes);
        free(e->view_units);
        free(e->leader_id);
        free(e);
        return NULL;
}
