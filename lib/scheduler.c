/* SPDX-License-Identifier: MIT */
/* scheduler.c: fleet's reconcile pass (spec §5.2-§5.8) as a pure function of a snapshot.
 *
 * The plan works on its own copy of the schedule: every unit has a current machine, starting
 * from the snapshot's target, and every machine an agent view (the units fleet's AbleToRun sees
 * there), refreshed whenever a decision touches that machine. At the end the difference between
 * the snapshot and the plan's schedule becomes the actions.
 *
 * The agent view of a machine is built exactly the way our agent builds its desired state
 * (lib/agent-plan.c, §6.2): units in name order, each non-inactive job targeted there and each
 * non-inactive global unit whose MachineMetadata the machine has, skipping names the agent
 * refuses and any unit that conflicts with one already taken. So a unit the agent would not run
 * is not "on" the machine for the engine either, and gets moved instead of hanging there
 * unnoticed. (fleet's engine counted inactive global units too; its agent did not.)
 *
 * Differences from fleet, all deterministic and all aimed at settling in one pass without
 * moving anything that is fine:
 *   - Replaces always moves the replaced unit (fleet moved either, depending on map order), to
 *     the least-loaded machine able to run it (fleet did not check constraints there), and a
 *     machine where some unit replaces X is never offered to X (fleet could put it back).
 *   - A placement that replaces units moves them at once, in the same plan. To keep that finite
 *     and free of ping-pong, a unit is moved away at most once per plan, and a unit that was
 *     moved away and then found no machine is not allowed to push others away until it gets
 *     placed (its unschedulable reason, which starts with FL_SCHED_DISPLACED, is the memory
 *     across passes). Without that a cycle of Replaces on too few machines would move units on
 *     every pass forever. Nor does a unit push away one it needs (its MachineOf peers, theirs).
 *   - Pass 1 first removes the units that fail their own requirements, then moves replaced
 *     units, so a unit that is about to leave replaces nothing on its way out.
 *   - Rounds (pass 1 + pass 2) repeat within a plan while they change something, so MachineOf
 *     followers reach a peer placed later in name order, or one that moved, in the same plan.
 *   - A unit nothing can place gets a reason (job/<name>/unschedulable, our extension). */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "buf.h"
#include "named-array.h"
#include "scheduler.h"
#include "strv.h"
#include "unit-name.h"
#include "unit-options.h"

/* Reason prefix of a unit that was moved away by a unit replacing it and found no machine. */
#define FL_SCHED_DISPLACED "replaced by "
/* Plenty: the second round picks up followers, a third is rare. */
#define SCHED_MAX_ROUNDS 4
/* fleet's log wording for a unit leaving its machine: "... unit: <why>". */
#define SCHED_UNABLE "target Machine(%s) unable to run unit: "
/* Longest list of unit names in a reason. */
#define SCHED_MAX_NAMES 5

typedef enum Fit {
        FIT_OK,          /* can run it */
        FIT_DISPLACE,    /* can run it, moving away the units it replaces there */
        FIT_MACHINE_ID,  /* failures, in the order of the checks (§5.4) */
        FIT_METADATA,
        FIT_PEER,
        FIT_CONFLICT,
        FIT_REPLACED,    /* a unit there replaces it */
        FIT_BLOCKED,     /* it replaces a unit there that cannot be moved now */
} Fit;

typedef struct PUnit {
        const RegUnit *u;
        const UnitRequirements *req;
        bool job;             /* not global: placed by the engine */
        bool schedulable;     /* job with a unit file and a name the agent accepts */
        const char *refusal;  /* why the agent would not run it, NULL if it would */
        bool active;          /* target state is not inactive */
        bool damped;          /* may not move others (see FL_SCHED_DISPLACED) */
        int cur;              /* machine index in the plan, -1 when unscheduled */
        int displaced_from;   /* machine it was replaced on in this plan, -1 */
        const char *displaced_by;
        char *why;            /* why it left its snapshot target (log) */
} PUnit;

typedef struct PMachine {
        const RegMachine *m;
        char **keys, **values;   /* metadata as parallel arrays (borrowed strings) */
        size_t *jobs;            /* unit indices, ascending = name order */
        size_t n_jobs, cap_jobs;
        size_t *globals;         /* global units whose metadata it has, ascending */
        size_t n_globals, cap_globals;
        size_t *view;            /* the agent view, ascending */
        size_t n_view, cap_view;
        bool dirty;
} PMachine;

typedef struct Plan {
        const RegSnapshot *s;
        PUnit *units;
        size_t n_units;
        PMachine *machines;
        size_t n_machines;
        size_t *order;           /* scratch for least-loaded ordering */
        size_t *queue;           /* displaced units waiting for a machine */
        size_t n_queue;
        bool changed;            /* this round decided something */
} Plan;

static const char *const action_names[_SCHED_ACTION_MAX] = {
        [SCHED_UNSCHEDULE] = "unschedule",
        [SCHED_SCHEDULE] = "schedule",
        [SCHED_SET_REASON] = "set-reason",
};

const char *fl_sched_action_type_to_string(SchedActionType t) {
        if ((unsigned) t >= _SCHED_ACTION_MAX)
                return NULL;
        return action_names[t];
}

SchedAction *fl_sched_actions_free(SchedAction *a, size_t n) {
        for (size_t i = 0; a && i < n; i++) {
                free(a[i].unit);
                free(a[i].machine_id);
                free(a[i].reason);
        }
        free(a);
        return NULL;
}

/* ---- Plan setup ---- */

static void plan_done(Plan *p) {
        for (size_t i = 0; p->units && i < p->n_units; i++)
                free(p->units[i].why);
        for (size_t i = 0; p->machines && i < p->n_machines; i++) {
                PMachine *m = &p->machines[i];
                free(m->keys);
                free(m->values);
                free(m->jobs);
                free(m->globals);
                free(m->view);
        }
        free(p->units);
        free(p->machines);
        free(p->order);
        free(p->queue);
}

static int plan_machine_index(const Plan *p, const char *id) {
        return (int) fl_sorted_find(p->s->machines, p->s->n_machines, sizeof(RegMachine), id);
}

static ssize_t plan_unit_index(const Plan *p, const char *name) {
        return fl_sorted_find(p->s->units, p->s->n_units, sizeof(RegUnit), name);
}

static bool plan_metadata_match(const Plan *p, const UnitRequirements *req, size_t mi) {
        const PMachine *m = &p->machines[mi];
        return fl_metadata_match(req, m->keys, m->values, m->m->n_metadata);
}

/* The agent's refusals (lib/agent-plan.c): it never runs such a unit, so it is never placed. */
static const char *name_refusal(const char *name) {
        if (fl_unit_name_validate(name, NULL) < 0 || !fl_unit_name_is_safe(name))
                return "invalid unit name";
        if (fl_unit_name_is_template(name))
                return "templates cannot be scheduled";
        if (!fl_unit_name_agent_manageable(name))
                return "unit type not managed by the agent";
        return NULL;
}

static int set_why(PUnit *pu, const char *fmt, ...) _printf_(2, 3);
static int set_why(PUnit *pu, const char *fmt, ...) {
        va_list ap;
        char *s;
        int r;

        if (pu->why)
                return 0;   /* the first reason is the one that made it leave */
        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        pu->why = s;
        return 0;
}

static int grow(size_t **a, size_t *cap, size_t need) {
        if (need <= *cap)
                return 0;
        size_t c = MAX(need, MAX(*cap * 2, 8U));
        size_t *n = realloc(*a, c * sizeof(size_t));
        if (!n)
                return -ENOMEM;
        *a = n;
        *cap = c;
        return 0;
}

static int plan_init(Plan *p, const RegSnapshot *s) {
        size_t nu = s->n_units, nm = s->n_machines;

        *p = (Plan) { .s = s, .n_units = nu, .n_machines = nm };
        p->units = new0(PUnit, MAX(nu, 1U));
        p->machines = new0(PMachine, MAX(nm, 1U));
        p->order = new0(size_t, MAX(nm, 1U));
        p->queue = new0(size_t, MAX(nu, 1U));
        if (!p->units || !p->machines || !p->order || !p->queue)
                return -ENOMEM;
        for (size_t i = 0; i < nm; i++)
                p->order[i] = i;   /* by ID: plan_order_machines() sorts from here */

        for (size_t i = 0; i < nm; i++) {
                PMachine *m = &p->machines[i];
                size_t n = s->machines[i].n_metadata;

                m->m = &s->machines[i];
                m->keys = new0(char *, n + 1);
                m->values = new0(char *, n + 1);
                if (!m->keys || !m->values)
                        return -ENOMEM;
                for (size_t j = 0; j < n; j++) {
                        m->keys[j] = s->machines[i].metadata[2 * j];
                        m->values[j] = s->machines[i].metadata[2 * j + 1];
                }
                m->dirty = true;
        }

        for (size_t i = 0; i < nu; i++) {
                const RegUnit *u = &s->units[i];
                PUnit *pu = &p->units[i];

                pu->u = u;
                pu->req = &u->req;
                pu->job = !u->global;
                pu->active = u->target_state != JOB_STATE_INACTIVE;
                pu->refusal = name_refusal(u->name);
                pu->schedulable = pu->job && u->file && !pu->refusal;
                pu->damped = u->unschedulable && startswith(u->unschedulable, FL_SCHED_DISPLACED);
                pu->cur = -1;
                pu->displaced_from = -1;

                if (u->global) {
                        /* Global is read from the file, so u->file is set. */
                        if (!pu->active || pu->refusal)
                                continue;
                        for (size_t j = 0; j < nm; j++)
                                if (plan_metadata_match(p, pu->req, j)) {
                                        PMachine *m = &p->machines[j];
                                        if (grow(&m->globals, &m->cap_globals, m->n_globals + 1) < 0)
                                                return -ENOMEM;
                                        m->globals[m->n_globals++] = i;
                                }
                        continue;
                }
                if (!u->target)
                        continue;

                /* Pass 1, the cases that need no agent view. */
                int mi = plan_machine_index(p, u->target);
                if (!pu->active) {
                        if (set_why(pu, "target state inactive") < 0)
                                return -ENOMEM;
                } else if (mi < 0) {
                        if (set_why(pu, "target Machine(%s) went away", u->target) < 0)
                                return -ENOMEM;
                } else if (pu->refusal) {
                        if (set_why(pu, "%s", pu->refusal) < 0)
                                return -ENOMEM;
                } else {
                        /* A unit whose file is missing stays where it is: we cannot tell
                         * whether it fits, and moving it would not make it runnable. */
                        PMachine *m = &p->machines[mi];
                        if (grow(&m->jobs, &m->cap_jobs, m->n_jobs + 1) < 0)
                                return -ENOMEM;
                        pu->cur = mi;
                        m->jobs[m->n_jobs++] = i;
                }
        }
        return 0;
}

/* ---- Agent views ---- */

static bool view_contains(const PMachine *m, size_t ui) {
        size_t lo = 0, hi = m->n_view;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (m->view[mid] == ui)
                        return true;
                if (m->view[mid] < ui)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return false;
}

static bool plan_conflict(const Plan *p, size_t a, size_t b) {
        return fl_unit_conflicts_with(p->units[a].u->name, p->units[a].req, p->units[b].u->name,
                                      p->units[b].req);
}

/* Merges jobs and globals in name order, dropping a unit that conflicts with one taken. */
static int plan_view_refresh(Plan *p, size_t mi) {
        PMachine *m = &p->machines[mi];
        size_t i = 0, j = 0;

        if (!m->dirty)
                return 0;
        if (grow(&m->view, &m->cap_view, m->n_jobs + m->n_globals) < 0)
                return -ENOMEM;
        m->n_view = 0;
        while (i < m->n_jobs || j < m->n_globals) {
                size_t ui;
                if (j >= m->n_globals || (i < m->n_jobs && m->jobs[i] < m->globals[j]))
                        ui = m->jobs[i++];
                else
                        ui = m->globals[j++];

                bool ok = true;
                for (size_t k = 0; ok && k < m->n_view; k++)
                        if (plan_conflict(p, ui, m->view[k]))
                                ok = false;
                if (ok)
                        m->view[m->n_view++] = ui;
        }
        m->dirty = false;
        return 0;
}

static int plan_views_refresh(Plan *p) {
        for (size_t i = 0; i < p->n_machines; i++)
                if (plan_view_refresh(p, i) < 0)
                        return -ENOMEM;
        return 0;
}

static int plan_assign(Plan *p, size_t ui, int mi) {
        PUnit *pu = &p->units[ui];

        if (pu->cur == mi)
                return 0;
        if (mi >= 0) {
                PMachine *m = &p->machines[mi];
                if (grow(&m->jobs, &m->cap_jobs, m->n_jobs + 1) < 0)
                        return -ENOMEM;
        }
        if (pu->cur >= 0) {
                PMachine *m = &p->machines[pu->cur];
                size_t k = 0;
                while (k < m->n_jobs && m->jobs[k] != ui)
                        k++;
                if (k < m->n_jobs) {
                        memmove(m->jobs + k, m->jobs + k + 1, (m->n_jobs - k - 1) * sizeof(size_t));
                        m->n_jobs--;
                }
                m->dirty = true;
        }
        if (mi >= 0) {
                PMachine *m = &p->machines[mi];
                size_t k = m->n_jobs;
                while (k > 0 && m->jobs[k - 1] > ui) {
                        m->jobs[k] = m->jobs[k - 1];
                        k--;
                }
                m->jobs[k] = ui;
                m->n_jobs++;
                m->dirty = true;
        }
        pu->cur = mi;
        p->changed = true;
        return 0;
}

/* ---- AbleToRun (§5.4) ---- */

/* Whether unit x needs unit e on its machine: e is a MachineOf peer of x, or of a peer of x... */
static bool plan_needs(const Plan *p, size_t x, size_t e) {
        _cleanup_free_ size_t *stack = new(size_t, p->n_units);
        _cleanup_free_ bool *seen = new0(bool, p->n_units);
        size_t n = 0;

        if (!stack || !seen)
                return true;   /* OOM: the safe answer */
        stack[n++] = x;
        seen[x] = true;
        while (n > 0) {
                size_t u = stack[--n];
                STRV_FOREACH(peer, p->units[u].req->machine_of) {
                        ssize_t pi = plan_unit_index(p, *peer);
                        if (pi < 0 || seen[pi])
                                continue;
                        if ((size_t) pi == e)
                                return true;
                        seen[pi] = true;
                        stack[n++] = (size_t) pi;
                }
        }
        return false;
}

/* Whether x may push unit e (which x replaces) off a machine. Not a unit x needs there (fleet's
 * validation forbids replacing a direct peer, but the registry may hold anything, and peers of
 * peers count too): x would follow it and push it again, forever. */
static bool plan_can_displace(const Plan *p, size_t x, size_t e) {
        const PUnit *px = &p->units[x], *pe = &p->units[e];
        return !px->damped && pe->job && pe->schedulable && pe->displaced_from < 0 && !plan_needs(p, x, e);
}

/* First check unit ui fails on machine mi, or FIT_OK / FIT_DISPLACE. *ret_name: the peer, or
 * the unit there that conflicts / replaces / cannot be moved. The view must be fresh. */
static Fit plan_fit(const Plan *p, size_t ui, size_t mi, const char **ret_name) {
        const PUnit *pu = &p->units[ui];
        const UnitRequirements *req = pu->req;
        const PMachine *m = &p->machines[mi];
        const char *name = NULL;
        Fit fit = FIT_OK;

        if (req->machine_id && !fl_machine_id_match(req->machine_id, m->m->id)) {
                fit = FIT_MACHINE_ID;
                goto done;
        }
        if (req->n_metadata > 0 && !plan_metadata_match(p, req, mi)) {
                fit = FIT_METADATA;
                goto done;
        }
        STRV_FOREACH(peer, req->machine_of) {
                ssize_t pi = plan_unit_index(p, *peer);
                if (pi < 0 || !view_contains(m, (size_t) pi)) {
                        fit = FIT_PEER;
                        name = *peer;
                        goto done;
                }
        }
        for (size_t k = 0; k < m->n_view; k++) {
                size_t e = m->view[k];
                if (e != ui && plan_conflict(p, ui, e)) {
                        fit = FIT_CONFLICT;
                        name = p->units[e].u->name;
                        goto done;
                }
        }
        /* Replaces, one direction only: a pair replacing each other is ignored (§5.4). */
        for (size_t k = 0; k < m->n_view; k++) {
                size_t e = m->view[k];
                if (e == ui)
                        continue;
                bool a = fl_unit_replaces(req, p->units[e].u->name);
                bool b = fl_unit_replaces(p->units[e].req, pu->u->name);
                if (b && !a) {
                        fit = FIT_REPLACED;
                        name = p->units[e].u->name;
                        goto done;
                }
        }
        for (size_t k = 0; k < m->n_view; k++) {
                size_t e = m->view[k];
                if (e == ui || !p->units[e].job)
                        continue;   /* a global unit cannot be moved; they share the machine */
                bool a = fl_unit_replaces(req, p->units[e].u->name);
                bool b = fl_unit_replaces(p->units[e].req, pu->u->name);
                if (!a || b)
                        continue;
                if (!plan_can_displace(p, ui, e)) {
                        fit = FIT_BLOCKED;
                        name = p->units[e].u->name;
                        goto done;
                }
                fit = FIT_DISPLACE;
        }
done:
        if (ret_name)
                *ret_name = name;
        return fit;
}

/* ---- Decisions ---- */

static int plan_unschedule(Plan *p, size_t ui, Fit fit, const char *name) {
        PUnit *pu = &p->units[ui];
        const char *mid = p->machines[pu->cur].m->id;
        const char *req_id = pu->req->machine_id;
        int r = 0;

        switch (fit) {
        case FIT_MACHINE_ID:
                r = set_why(pu, SCHED_UNABLE "agent ID \"%s\" does not match required \"%s\"", mid, mid,
                            strempty(req_id));
                break;
        case FIT_METADATA:
                r = set_why(pu, SCHED_UNABLE "local Machine metadata insufficient", mid);
                break;
        case FIT_PEER:
                r = set_why(pu, SCHED_UNABLE "required peer Unit(%s) is not scheduled locally", mid, name);
                break;
        case FIT_CONFLICT:
                r = set_why(pu, SCHED_UNABLE "found conflict with locally-scheduled Unit(%s)", mid, name);
                break;
        case FIT_REPLACED:
                r = set_why(pu, SCHED_UNABLE "replaced by locally-scheduled Unit(%s)", mid, name);
                pu->displaced_from = pu->cur;
                pu->displaced_by = name;
                break;
        default:
                break;
        }
        return r < 0 ? r : plan_assign(p, ui, -1);
}

static int cmp_load(const Plan *p, size_t a, size_t b) {
        const PMachine *ma = &p->machines[a], *mb = &p->machines[b];
        if (ma->n_view != mb->n_view)
                return ma->n_view < mb->n_view ? -1 : 1;
        /* Ties by ID: the snapshot's machines are sorted by ID, so by index. (A strcmp here
         * was half of a plan placing 10,000 units on 1,000 machines, where most loads tie.) */
        return a < b ? -1 : a > b;
}

/* Machines by (load, ID); the views must be fresh. Insertion sort in place, starting from the
 * previous order: between two placements only a few machines' loads changed, so this costs
 * O(machines) per placement. (Sorting from scratch cost O(machines^2) per placement once loads
 * differ: 85% of the engine's time placing 10,000 units on 1,000 machines, test/bench.sh.) */
static void plan_order_machines(Plan *p) {
        for (size_t i = 1; i < p->n_machines; i++) {
                size_t x = p->order[i], j = i;
                while (j > 0 && cmp_load(p, p->order[j - 1], x) > 0) {
                        p->order[j] = p->order[j - 1];
                        j--;
                }
                p->order[j] = x;
        }
}

/* Least-loaded placement (§5.3) of unit ui; moves away the units it replaces there, which
 * queue up for placement themselves. Returns whether it was placed. */
static int plan_place(Plan *p, size_t ui) {
        PUnit *pu = &p->units[ui];
        int r;

        r = plan_views_refresh(p);
        if (r < 0)
                return r;
        plan_order_machines(p);
        for (size_t k = 0; k < p->n_machines; k++) {
                size_t mi = p->order[k];
                Fit fit = plan_fit(p, ui, mi, NULL);
                if (fit != FIT_OK && fit != FIT_DISPLACE)
                        continue;

                /* Who goes: collected before the assignment changes the view. */
                PMachine *m = &p->machines[mi];
                size_t first = p->n_queue;
                if (fit == FIT_DISPLACE)
                        for (size_t v = 0; v < m->n_view; v++) {
                                size_t e = m->view[v];
                                const PUnit *pe = &p->units[e];
                                if (e != ui && pe->job && fl_unit_replaces(pu->req, pe->u->name) &&
                                    !fl_unit_replaces(pe->req, pu->u->name))
                                        p->queue[p->n_queue++] = e;
                        }

                r = plan_assign(p, ui, (int) mi);
                if (r < 0)
                        return r;
                for (size_t q = first; q < p->n_queue; q++) {
                        PUnit *pe = &p->units[p->queue[q]];
                        if (set_why(pe, SCHED_UNABLE "replaced by Unit(%s)", m->m->id, pu->u->name) < 0)
                                return -ENOMEM;
                        pe->displaced_from = (int) mi;
                        pe->displaced_by = pu->u->name;
                        r = plan_assign(p, p->queue[q], -1);
                        if (r < 0)
                                return r;
                }
                return 1;
        }
        return 0;
}

/* Places the displaced units queued by plan_place(), and those they displace in turn. Each
 * unit is displaced at most once per plan (see plan_can_displace()), so this
 * ends. */
static int plan_drain_queue(Plan *p) {
        for (size_t q = 0; q < p->n_queue; q++) {
                int r = plan_place(p, p->queue[q]);
                if (r < 0)
                        return r;
        }
        p->n_queue = 0;
        return 0;
}

/* Pass 1: scheduled jobs stay unless they cannot run where they are. First the units that
 * fail their own requirements, until none does (followers of a unit that leaves fail next),
 * then the units replaced where they are: a replacing unit that is about to leave itself does
 * not push anything away. */
static int plan_pass1(Plan *p) {
        int r;

        for (bool again = true; again;) {
                again = false;
                for (size_t ui = 0; ui < p->n_units; ui++) {
                        PUnit *pu = &p->units[ui];
                        const char *name;

                        if (!pu->job || pu->cur < 0 || !pu->u->file)
                                continue;
                        r = plan_view_refresh(p, (size_t) pu->cur);
                        if (r < 0)
                                return r;
                        Fit fit = plan_fit(p, ui, (size_t) pu->cur, &name);
                        if (fit < FIT_MACHINE_ID || fit > FIT_CONFLICT)
                                continue;
                        r = plan_unschedule(p, ui, fit, name);
                        if (r < 0)
                                return r;
                        again = true;
                }
        }
        for (size_t ui = 0; ui < p->n_units; ui++) {
                PUnit *pu = &p->units[ui];
                const char *name;

                if (!pu->job || pu->cur < 0 || !pu->u->file)
                        continue;
                r = plan_view_refresh(p, (size_t) pu->cur);
                if (r < 0)
                        return r;
                if (plan_fit(p, ui, (size_t) pu->cur, &name) != FIT_REPLACED)
                        continue;   /* units it replaces move when their turn comes */
                r = plan_unschedule(p, ui, FIT_REPLACED, name);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int plan_round(Plan *p) {
        int r;

        p->changed = false;
        r = plan_pass1(p);
        if (r < 0)
                return r;

        /* Pass 2: unscheduled jobs that should run go to the least-loaded machine. */
        for (size_t ui = 0; ui < p->n_units; ui++) {
                PUnit *pu = &p->units[ui];

                if (!pu->schedulable || !pu->active || pu->cur >= 0)
                        continue;
                r = plan_place(p, ui);
                if (r < 0)
                        return r;
                r = plan_drain_queue(p);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- Reasons ---- */

static const char *meta_op_str(MetaOp op) {
        switch (op) {
        case META_EQ:
                return "=";
        case META_NE:
                return "!=";
        case META_LT:
                return "<";
        case META_LE:
                return "<=";
        case META_GT:
                return ">";
        case META_GE:
                return ">=";
        }
        return "?";
}

/* "region=eu or region=us and disk!=hdd" for requirements [from, to). */
static int put_metadata_terms(Buf *b, const UnitRequirements *req, size_t from, size_t to) {
        bool first = true;
        int r = 0;

        /* META_EQ items of a key are alternatives; everything else must hold on its own. */
        for (size_t i = from; r >= 0 && i < to; i++) {
                const MetaReq *m = &req->metadata[i];
                bool alt = i > from && m->op == META_EQ && req->metadata[i - 1].op == META_EQ &&
                           streq(m->key, req->metadata[i - 1].key);
                if (!first)
                        r = fl_buf_puts(b, alt ? " or " : " and ");
                if (r >= 0)
                        r = fl_buf_printf(b, "%s%s%s", m->key, meta_op_str(m->op), m->value);
                first = false;
        }
        return r;
}

/* End of the group of requirements on the key of requirement from. */
static size_t key_group_end(const UnitRequirements *req, size_t from) {
        size_t to = from + 1;
        while (to < req->n_metadata && streq(req->metadata[to].key, req->metadata[from].key))
                to++;
        return to;
}

/* The metadata message over the machines with candidate[i]: "no machine has K" for the keys
 * no candidate satisfies on its own, else for all keys (each key is met somewhere, but no
 * machine meets them all). */
static int put_metadata_reason(Buf *b, const Plan *p, const UnitRequirements *req, const bool *candidate) {
        _cleanup_free_ bool *unmet = new0(bool, MAX(req->n_metadata, 1U));
        bool any_unmet = false, first = true;
        int r;

        if (!unmet)
                return -ENOMEM;
        /* Requirements are grouped by key (unit-options.h). */
        for (size_t from = 0, to; from < req->n_metadata; from = to) {
                to = key_group_end(req, from);
                UnitRequirements sub = { .metadata = req->metadata + from, .n_metadata = to - from };
                bool met = false;
                for (size_t mi = 0; !met && mi < p->n_machines; mi++)
                        met = candidate[mi] && plan_metadata_match(p, &sub, mi);
                unmet[from] = !met;
                any_unmet = any_unmet || !met;
        }

        r = fl_buf_puts(b, "no machine has ");
        for (size_t from = 0, to; r >= 0 && from < req->n_metadata; from = to) {
                to = key_group_end(req, from);
                if (any_unmet && !unmet[from])
                        continue;
                if (!first)
                        r = fl_buf_puts(b, " and ");
                if (r >= 0)
                        r = put_metadata_terms(b, req, from, to);
                first = false;
        }
        return r;
}

/* "'a'", "'a' and 'b'", "'a', 'b' and 'c'", "'a', ... 'e' and 3 more": names sorted, unique. */
static int put_names(Buf *b, char **names) {
        size_t n = fl_strv_length(names);
        size_t shown = n > SCHED_MAX_NAMES ? SCHED_MAX_NAMES : n;
        int r = 0;

        for (size_t i = 0; r >= 0 && i < shown; i++) {
                if (i > 0)
                        r = fl_buf_puts(b, i + 1 == shown && shown == n ? " and " : ", ");
                if (r >= 0)
                        r = fl_buf_printf(b, "'%s'", names[i]);
        }
        if (r >= 0 && shown < n)
                r = fl_buf_printf(b, " and %zu more", n - shown);
        return r;
}

static int strv_add_unique(char ***l, const char *s) {
        if (fl_strv_contains(*l, s))
                return 0;
        return fl_strv_extend(l, s);
}

/* Every unit in the view of mi that blocks ui with this kind of fit. */
static int collect_blockers(const Plan *p, size_t ui, size_t mi, Fit fit, char ***names) {
        const PMachine *m = &p->machines[mi];
        const PUnit *pu = &p->units[ui];
        int r = 0;

        for (size_t k = 0; r >= 0 && k < m->n_view; k++) {
                size_t e = m->view[k];
                const PUnit *pe = &p->units[e];
                bool a, b, hit = false;

                if (e == ui)
                        continue;
                switch (fit) {
                case FIT_CONFLICT:
                        hit = plan_conflict(p, ui, e);
                        break;
                case FIT_REPLACED:
                case FIT_BLOCKED:
                        a = fl_unit_replaces(pu->req, pe->u->name);
                        b = fl_unit_replaces(pe->req, pu->u->name);
                        if (fit == FIT_REPLACED)
                                hit = b && !a;
                        else
                                hit = a && !b && pe->job && !plan_can_displace(p, ui, e);
                        break;
                default:
                        break;
                }
                if (hit)
                        r = strv_add_unique(names, pe->u->name);
        }
        return r;
}

/* Why no machine (but exclude, if >= 0) can run job ui; the views must be fresh. Returns 1
 * (and says nothing) when some machine can run it after all: the plan ran out of rounds and
 * the next pass will place it. */
static int plan_explain(Plan *p, size_t ui, int exclude, Buf *b) {
        const PUnit *pu = &p->units[ui];
        const UnitRequirements *req = pu->req;
        _cleanup_free_ Fit *fits = new0(Fit, MAX(p->n_machines, 1U));
        _cleanup_free_ bool *cand = new0(bool, MAX(p->n_machines, 1U));
        size_t n_considered = 0;
        Fit worst = FIT_MACHINE_ID;
        int r = 0;

        if (!fits || !cand)
                return -ENOMEM;
        for (size_t mi = 0; mi < p->n_machines; mi++) {
                if ((int) mi == exclude)
                        continue;
                fits[mi] = plan_fit(p, ui, mi, NULL);
                n_considered++;
                if (fits[mi] == FIT_OK || fits[mi] == FIT_DISPLACE)
                        return 1;
                if (fits[mi] > worst)
                        worst = fits[mi];
        }
        if (n_considered == 0)
                return fl_buf_puts(b, exclude >= 0 ? "there is no other machine" : "no machines available");

        switch (worst) {
        case FIT_OK:
        case FIT_DISPLACE:
                return 1;

        case FIT_MACHINE_ID:
                return fl_buf_printf(b, "MachineID '%s' does not match any machine", req->machine_id);

        case FIT_METADATA:
                for (size_t mi = 0; mi < p->n_machines; mi++)
                        cand[mi] = (int) mi != exclude && fits[mi] >= FIT_METADATA;
                return put_metadata_reason(b, p, req, cand);

        case FIT_PEER: {
                int where = -1;
                const char *first_peer = NULL;

                STRV_FOREACH(peer, req->machine_of) {
                        ssize_t pi = plan_unit_index(p, *peer);
                        int on = -1;
                        for (size_t mi = 0; pi >= 0 && on < 0 && mi < p->n_machines; mi++)
                                if (view_contains(&p->machines[mi], (size_t) pi))
                                        on = (int) mi;
                        if (on < 0)
                                return fl_buf_printf(b, "required peer '%s' is not scheduled", *peer);
                        if (where >= 0 && on != where)
                                return fl_buf_printf(b, "required peers '%s' and '%s' are on different "
                                                     "machines", first_peer, *peer);
                        where = on;
                        if (!first_peer)
                                first_peer = *peer;
                }
                if (where < 0)
                        return fl_buf_puts(b, "required peers are not scheduled");
                const char *mid = p->machines[where].m->id;
                if (where != exclude && fits[where] == FIT_MACHINE_ID)
                        return fl_buf_printf(b, "required peer '%s' is on Machine(%s), which does not match "
                                             "MachineID '%s'", first_peer, mid, req->machine_id);
                if (where != exclude && fits[where] == FIT_METADATA) {
                        r = fl_buf_printf(b, "required peer '%s' is on Machine(%s), which does not have ",
                                          first_peer, mid);
                        return r < 0 ? r : put_metadata_terms(b, req, 0, req->n_metadata);
                }
                return fl_buf_printf(b, "required peer '%s' is on Machine(%s)", first_peer, mid);
        }

        case FIT_CONFLICT:
        case FIT_REPLACED:
        case FIT_BLOCKED: {
                static const char *const verbs[] = {
                        [FIT_CONFLICT] = "conflicts with ",
                        [FIT_REPLACED] = "is replaced by ",
                        [FIT_BLOCKED] = "would have to replace ",
                };
                size_t n_cand = 0;
                bool first = true;

                for (size_t mi = 0; mi < p->n_machines; mi++)
                        if ((int) mi != exclude && fits[mi] >= FIT_CONFLICT)
                                n_cand++;
                for (Fit f = FIT_CONFLICT; r >= 0 && f <= FIT_BLOCKED; f++) {
                        _cleanup_strv_free_ char **names = NULL;
                        for (size_t mi = 0; r >= 0 && mi < p->n_machines; mi++)
                                if ((int) mi != exclude && fits[mi] == f)
                                        r = collect_blockers(p, ui, mi, f, &names);
                        if (r < 0 || !names)
                                continue;
                        fl_strv_sort(names);
                        if (!first)
                                r = fl_buf_puts(b, " or ");
                        if (r >= 0)
                                r = fl_buf_puts(b, verbs[f]);
                        if (r >= 0)
                                r = put_names(b, names);
                        first = false;
                }
                if (r < 0)
                        return r;
                if (n_cand == n_considered)
                        return fl_buf_puts(b, exclude >= 0 ? " on every other machine"
                                                           : " on every machine");
                return fl_buf_puts(b, " on every machine that meets its other requirements");
        }
        }
        return 0;
}

/* The unschedulable reason of unit ui at the end of the plan, NULL when there is none. */
static int plan_reason(Plan *p, size_t ui, char **ret) {
        PUnit *pu = &p->units[ui];
        const RegUnit *u = pu->u;
        Buf b = BUF_INIT;
        int r;

        *ret = NULL;
        if (!pu->active || (pu->job && pu->cur >= 0))
                return 0;
        if (pu->refusal) {
                r = fl_buf_puts(&b, pu->refusal);
                goto out;
        }
        if (!u->file) {
                r = fl_buf_puts(&b, "unit file is missing or invalid");
                goto out;
        }
        if (!pu->job) {
                /* Agents run global units themselves; only "runs nowhere at all" is ours to say. */
                bool any = false;
                for (size_t mi = 0; !any && mi < p->n_machines; mi++)
                        any = plan_metadata_match(p, pu->req, mi);
                if (any)
                        return 0;
                if (p->n_machines == 0)
                        r = fl_buf_puts(&b, "no machines available");
                else {
                        _cleanup_free_ bool *all = new0(bool, p->n_machines);
                        if (!all)
                                return -ENOMEM;
                        for (size_t mi = 0; mi < p->n_machines; mi++)
                                all[mi] = true;
                        r = put_metadata_reason(&b, p, pu->req, all);
                }
                goto out;
        }
        if (pu->damped && pu->displaced_from < 0) {
                /* Still nowhere to go: keep the mark (and write nothing). */
                char *c = strdup(u->unschedulable);
                if (!c)
                        return -ENOMEM;
                *ret = c;
                return 0;
        }
        r = plan_views_refresh(p);
        if (r < 0)
                return r;
        if (pu->displaced_from >= 0) {
                r = fl_buf_printf(&b, FL_SCHED_DISPLACED "'%s' on Machine(%s); ", pu->displaced_by,
                                  p->machines[pu->displaced_from].m->id);
                if (r >= 0)
                        r = plan_explain(p, ui, pu->displaced_from, &b);
        } else
                r = plan_explain(p, ui, -1, &b);
out:
        if (r != 0) {
                /* r > 0: placeable after all, no reason */
                fl_buf_done(&b);
                return r < 0 ? r : 0;
        }
        *ret = fl_buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

/* ---- Actions ---- */

static int push_action(SchedAction **a, size_t *n, SchedActionType type, const char *unit,
                       const char *machine_id, const char *reason) {
        SchedAction *c = realloc(*a, (*n + 1) * sizeof(SchedAction));
        if (!c)
                return -ENOMEM;
        *a = c;
        c[*n] = (SchedAction) { .type = type };
        c[*n].unit = strdup(unit);
        c[*n].machine_id = machine_id ? strdup(machine_id) : NULL;
        c[*n].reason = reason ? strdup(reason) : NULL;
        (*n)++;
        if (!c[*n - 1].unit || (machine_id && !c[*n - 1].machine_id) || (reason && !c[*n - 1].reason))
                return -ENOMEM;
        return 0;
}

bool fl_scheduler_unit_inert(const RegUnit *u) {
        return u->target_state == JOB_STATE_INACTIVE && !u->target && !u->unschedulable &&
               !(u->req.machine_of && u->req.machine_of[0]);
}

int fl_scheduler_plan(const RegSnapshot *s, SchedAction **ret, size_t *ret_n) {
        _cleanup_(plan_done) Plan p = {};
        SchedAction *a = NULL;
        size_t n = 0;
        int r;

        if (!s || !ret || !ret_n)
                return -EINVAL;

        r = plan_init(&p, s);
        for (unsigned round = 0; r >= 0; round++) {
                if (round == SCHED_MAX_ROUNDS) {
                        /* Out of rounds while still changing (never seen in tests): leave
                         * nothing scheduled where it cannot run; the next pass goes on. */
                        r = plan_pass1(&p);
                        break;
                }
                r = plan_round(&p);
                if (r >= 0 && !p.changed)
                        break;
        }

        /* Unschedules first, then schedules, then reasons (see scheduler.h). */
        for (SchedActionType t = 0; r >= 0 && t < _SCHED_ACTION_MAX; t++)
                for (size_t ui = 0; r >= 0 && ui < p.n_units; ui++) {
                        const PUnit *pu = &p.units[ui];
                        const RegUnit *u = pu->u;
                        const char *final = pu->cur >= 0 ? p.machines[pu->cur].m->id : NULL;

                        if (!pu->job && t != SCHED_SET_REASON)
                                continue;   /* a target on a global unit is left alone */
                        if (t == SCHED_UNSCHEDULE && u->target && !streq_ptr(u->target, final))
                                r = push_action(&a, &n, t, u->name, u->target, pu->why ?: "moved");
                        else if (t == SCHED_SCHEDULE && final && !streq_ptr(u->target, final))
                                r = push_action(&a, &n, t, u->name, final, NULL);
                        else if (t == SCHED_SET_REASON) {
                                _cleanup_free_ char *reason = NULL;
                                r = plan_reason(&p, ui, &reason);
                                if (r >= 0 && !streq_ptr(reason, u->unschedulable))
                                        r = push_action(&a, &n, t, u->name, NULL, reason);
                        }
                }
        if (r < 0) {
                fl_sched_actions_free(a, n);
                return r;
        }
        *ret = a;
        *ret_n = n;
        return 0;
}
