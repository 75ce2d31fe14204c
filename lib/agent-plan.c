/* SPDX-License-Identifier: MIT */
/* agent-plan.c: desired state of one machine and the agent's task list (spec §6.2, §6.4). */
#include "agent-plan.h"
#include "unit-name.h"
#include "unit-options.h"

#define REASON_NOT_SCHEDULED "unit loaded but not scheduled here"
#define REASON_NOT_LOADED "unit scheduled here but not loaded"
#define REASON_HASH_DIFFERS "unit loaded but hash differs to expected"
#define REASON_START "unit currently loaded but desired state is launched"
#define REASON_STOP "unit currently launched but desired state is loaded"
#define REASON_RELOAD "always reload unit files"
#define REASON_ADOPT "unit found running with the expected contents"

static const char *const task_type_table[_AGENT_TASK_MAX] = {
        [AGENT_TASK_ADOPT] = "AdoptUnit", [AGENT_TASK_UNLOAD] = "UnloadUnit",
        [AGENT_TASK_LOAD] = "LoadUnit",   [AGENT_TASK_RELOAD] = "ReloadUnitFiles",
        [AGENT_TASK_STOP] = "StopUnit",   [AGENT_TASK_START] = "StartUnit",
};

const char *fl_agent_task_type_to_string(AgentTaskType t) {
        if (t < 0 || t >= _AGENT_TASK_MAX)
                return NULL;
        return task_type_table[t];
}

bool fl_agent_active_state_running(const char *s) {
        return s && (streq(s, "active") || streq(s, "reloading") || streq(s, "activating"));
}

/* ---- desired state ---- */

/* Why the agent refuses a name, or NULL when it can manage it. The name becomes a file name
 * in units_directory, so only safe names get there. */
static const char *name_refusal(const char *name) {
        if (fl_unit_name_validate(name, NULL) < 0 || !fl_unit_name_is_safe(name))
                return "invalid unit name";
        if (fl_unit_name_is_template(name))
                return "unit is a template";
        if (!fl_unit_name_agent_manageable(name))
                return "unit type not managed by the agent";
        return NULL;
}

static bool self_metadata_match(const RegMachine *self, const UnitRequirements *req) {
        _cleanup_free_ char **keys = NULL, **values = NULL;
        size_t n = self ? self->n_metadata : 0;

        if (!req || req->n_metadata == 0)
                return true;
        keys = new0(char *, n + 1);
        values = new0(char *, n + 1);
        if (!keys || !values)
                return false;
        for (size_t i = 0; i < n; i++) {
                keys[i] = self->metadata[2 * i];
                values[i] = self->metadata[2 * i + 1];
        }
        return fl_metadata_match(req, keys, values, n);
}

void fl_agent_desired_state_done(AgentDesiredState *d) {
        if (!d)
                return;
        d->units = mfree(d->units);
        d->skipped = mfree(d->skipped);
        d->n_units = d->n_skipped = 0;
}

int fl_agent_desired_state(const RegSnapshot *s, const RegMachine *self, AgentDesiredState *ret) {
        _cleanup_(fl_agent_desired_state_done) AgentDesiredState d = {};
        size_t n = s ? s->n_units : 0;

        d.units = new0(AgentDesired, n + 1);
        d.skipped = new0(AgentSkipped, n + 1);
        if (!d.units || !d.skipped)
                return -ENOMEM;

        /* The snapshot is sorted by name, so both lists come out sorted. */
        for (size_t i = 0; i < n; i++) {
                const RegUnit *u = &s->units[i];
                const char *why;
                bool conflict = false;

                if (u->target_state != JOB_STATE_LOADED && u->target_state != JOB_STATE_LAUNCHED)
                        continue;
                if (u->global) {
                        /* Global is read from the contents: without them it is false anyway. */
                        if (!u->file || !self_metadata_match(self, &u->req))
                                continue;
                } else if (!self || !u->target || !streq(u->target, self->id))
                        continue;

                why = name_refusal(u->name);
                if (why) {
                        d.skipped[d.n_skipped++] = (AgentSkipped){u->name, why};
                        continue;
                }
                for (size_t j = 0; j < d.n_units && !conflict; j++)
                        conflict = fl_unit_conflicts_with(u->name, u->file ? &u->req : NULL, d.units[j].name,
                                                          d.units[j].req);
                if (conflict) {
                        d.skipped[d.n_skipped++] =
                                (AgentSkipped){u->name, "conflicts with a unit already scheduled here"};
                        continue;
                }
                d.units[d.n_units++] = (AgentDesired){
                        .name = u->name,
                        .hash = u->hash,
                        .state = u->target_state,
                        .file = u->file,
                        .req = u->file ? &u->req : NULL,
                };
        }
        *ret = d;
        d = (AgentDesiredState){};
        return 0;
}

/* ---- tasks ---- */

typedef struct TaskList {
        AgentTask *tasks;
        size_t n, allocated;
} TaskList;

static int task_add(TaskList *l, AgentTaskType type, const char *name, const AgentDesired *d,
                    const char *reason) {
        if (l->n == l->allocated) {
                size_t na = MAX(l->allocated * 2, (size_t) 16);
                AgentTask *t = realloc(l->tasks, na * sizeof(AgentTask));
                if (!t)
                        return -ENOMEM;
                l->tasks = t;
                l->allocated = na;
        }
        l->tasks[l->n++] = (AgentTask){
                .type = type,
                .name = name,
                .desired = d,
                .adopt_state = JOB_STATE_INACTIVE,
                .reason = reason,
        };
        return 0;
}

/* Load (when the contents are known, or the file on disk already has them) and start if
 * desired launched. */
static int add_load_start(TaskList *l, const AgentDesired *d, bool file_on_disk_matches) {
        int r;

        if (!d->file && !file_on_disk_matches)
                return 0;
        r = task_add(l, AGENT_TASK_LOAD, d->name, d, REASON_NOT_LOADED);
        if (r < 0)
                return r;
        if (d->state == JOB_STATE_LAUNCHED)
                return task_add(l, AGENT_TASK_START, d->name, d, REASON_START);
        return 0;
}

static int plan_one(TaskList *l, const AgentDesired *d, const AgentCurrent *c) {
        JobState cs;
        int r;

        if (!d) /* present but not wanted here */
                return task_add(l, AGENT_TASK_UNLOAD, c->name, NULL, REASON_NOT_SCHEDULED);
        if (!c)
                return add_load_start(l, d, false);
        if (!streq(c->hash, d->hash)) {
                r = task_add(l, AGENT_TASK_UNLOAD, c->name, NULL, REASON_HASH_DIFFERS);
                if (r < 0)
                        return r;
                return add_load_start(l, d, false);
        }

        cs = c->state;
        if (c->adoptable && cs == JOB_STATE_INACTIVE && fl_agent_active_state_running(c->active_state)) {
                /* Right contents and running: take it over instead of restarting it. */
                r = task_add(l, AGENT_TASK_ADOPT, c->name, d, REASON_ADOPT);
                if (r < 0)
                        return r;
                l->tasks[l->n - 1].adopt_state = JOB_STATE_LAUNCHED;
                cs = JOB_STATE_LAUNCHED;
        }

        if (cs == d->state)
                return 0;
        if (cs == JOB_STATE_INACTIVE)
                return add_load_start(l, d, true);
        if (cs == JOB_STATE_LOADED && d->state == JOB_STATE_LAUNCHED)
                return task_add(l, AGENT_TASK_START, d->name, d, REASON_START);
        if (cs == JOB_STATE_LAUNCHED && d->state == JOB_STATE_LOADED)
                return task_add(l, AGENT_TASK_STOP, d->name, NULL, REASON_STOP);
        return 0;
}

static int task_cmp(const void *a, const void *b) {
        const AgentTask *x = a, *y = b;

        if (x->type != y->type)
                return x->type < y->type ? -1 : 1;
        return strcmp(x->name, y->name);
}

int fl_agent_plan(const AgentDesired *desired, size_t n_desired, const AgentCurrent *current,
                  size_t n_current, AgentTask **ret, size_t *ret_n) {
        TaskList l = {};
        size_t i = 0, j = 0;
        bool files_changed = false;
        int r = 0;

        /* Merge walk over the two sorted lists: every name in desired ∪ current once. */
        while (i < n_desired || j < n_current) {
                const AgentDesired *d = i < n_desired ? &desired[i] : NULL;
                const AgentCurrent *c = j < n_current ? &current[j] : NULL;
                int cmp = !d ? 1 : !c ? -1 : strcmp(d->name, c->name);

                if (cmp < 0) {
                        r = plan_one(&l, d, NULL);
                        i++;
                } else if (cmp > 0) {
                        r = plan_one(&l, NULL, c);
                        j++;
                } else {
                        r = plan_one(&l, d, c);
                        i++;
                        j++;
                }
                if (r < 0)
                        goto fail;
        }

        for (size_t k = 0; k < l.n; k++)
                if (l.tasks[k].type == AGENT_TASK_LOAD || l.tasks[k].type == AGENT_TASK_UNLOAD)
                        files_changed = true;
        if (files_changed) {
                r = task_add(&l, AGENT_TASK_RELOAD, "", NULL, REASON_RELOAD);
                if (r < 0)
                        goto fail;
        }
        /* Type order, names in order within a type (the walk produced them in name order, but
         * one name can add several types). */
        if (l.n > 1)
                qsort(l.tasks, l.n, sizeof(AgentTask), task_cmp);

        *ret = l.n > 0 ? l.tasks : mfree(l.tasks);
        *ret_n = l.n;
        return 0;
fail:
        free(l.tasks);
        return r;
}
