/* SPDX-License-Identifier: MIT */
/* fuzz-registry-snapshot: decoding the whole registry (spec §4.1, §4.3) and the pure decision
 * logic fed from it: the engine's reconcile plan (§5) and the agent's desired state and task
 * list (§6). The cluster store is shared by every machine, so its contents are untrusted.
 *
 * Input: lines "key<TAB>value" (keys relative to the prefix, e.g. "job/a.service/object"); the
 * line number is the modified index; a value "-" deletes a key or directory. Properties: the
 * daemons' incremental store, fed the same keys event by event or loaded at once, says what a
 * full decode says; a plan's actions refer to units and
 * machines of the snapshot; applying a plan and planning again changes no placement; an agent
 * that already runs its desired state has nothing to do. */
#include <stdio.h>

#include "agent-plan.h"
#include "fuzz.h"
#include "registry-internal.h"
#include "scheduler.h"

static void check_snapshot(const RegSnapshot *s) {
        for (size_t i = 0; i < s->n_units; i++) {
                const RegUnit *u = &s->units[i];
                FUZZ_CHECK(u->name && *u->name);
                if (i > 0)
                        FUZZ_CHECK(strcmp(s->units[i - 1].name, u->name) < 0);
                FUZZ_CHECK(fl_reg_snapshot_find_unit(s, u->name) == u);
                FUZZ_CHECK(strlen(u->hash) == 40);
                FUZZ_CHECK(u->target_state >= 0 && u->target_state < _JOB_STATE_MAX);
                FUZZ_CHECK(u->current_state >= 0 && u->current_state < _JOB_STATE_MAX);
                FUZZ_CHECK(u->global == u->req.global);
                if (!u->file)
                        FUZZ_CHECK(!u->req.machine_id && !u->req.n_metadata && !u->global);
        }
        for (size_t i = 0; i < s->n_states; i++) {
                const RegUnitState *st = &s->states[i];
                ssize_t f = fl_reg_snapshot_find_states(s, st->name);
                FUZZ_CHECK(st->name && st->machine_id);
                FUZZ_CHECK(f >= 0 && (size_t) f <= i && streq(s->states[f].name, st->name));
                if (i > 0) {
                        int c = strcmp(s->states[i - 1].name, st->name);
                        FUZZ_CHECK(c < 0 || (c == 0 && strcmp(s->states[i - 1].machine_id, st->machine_id) <= 0));
                }
        }
        for (size_t i = 0; i < s->n_machines; i++) {
                const RegMachine *m = &s->machines[i];
                FUZZ_CHECK(m->id);
                if (i > 0)
                        FUZZ_CHECK(strcmp(s->machines[i - 1].id, m->id) < 0);
                FUZZ_CHECK(fl_reg_snapshot_find_machine(s, m->id) == m);
                for (size_t k = 0; k < m->n_metadata; k++)
                        FUZZ_CHECK(fl_reg_machine_metadata(m, m->metadata[2 * k]));
        }
}

static void same_snapshot(const char *how, const RegSnapshot *store, const RegSnapshot *plain) {
        _cleanup_free_ char *why = NULL;

        if (fl_reg_snapshot_compare(store, plain, &why) == 0)
                return;
        fprintf(stderr, "store (%s) and full decode differ: %s\n", how, strempty(why));
        FUZZ_CHECK(!"store and full decode differ");
}

static char *set_str(char *old, const char *s) {
        free(old);
        if (!s)
                return NULL;
        char *c = strdup(s);
        FUZZ_CHECK(c);
        return c;
}

static void check_plan(RegSnapshot *s) {
        SchedAction *a = NULL, *a2 = NULL;
        size_t n = 0, n2 = 0;

        FUZZ_CHECK(fl_scheduler_plan(s, &a, &n) == 0);
        for (size_t i = 0; i < n; i++) {
                RegUnit *u = (RegUnit *) fl_reg_snapshot_find_unit(s, a[i].unit);
                if (getenv("FUZZ_DEBUG"))
                        fprintf(stderr, "plan: %s %s %s (%s)\n", fl_sched_action_type_to_string(a[i].type), a[i].unit,
                                strempty(a[i].machine_id), strempty(a[i].reason));
                FUZZ_CHECK(a[i].type >= 0 && a[i].type < _SCHED_ACTION_MAX);
                FUZZ_CHECK(fl_sched_action_type_to_string(a[i].type));
                FUZZ_CHECK(u);
                if (i > 0)
                        FUZZ_CHECK(a[i - 1].type <= a[i].type);
                switch (a[i].type) {
                case SCHED_UNSCHEDULE:
                        FUZZ_CHECK(a[i].machine_id && a[i].reason && streq_ptr(u->target, a[i].machine_id));
                        break;
                case SCHED_SCHEDULE:
                        /* (scheduler.h says the reason is never NULL; for SCHEDULE it is) */
                        FUZZ_CHECK(a[i].machine_id && fl_reg_snapshot_find_machine(s, a[i].machine_id));
                        FUZZ_CHECK(!u->global && u->target_state != JOB_STATE_INACTIVE);
                        break;
                default:
                        break;
                }
        }

        /* Apply the plan the way the engine's writes would, then plan again: nothing moves. */
        for (size_t i = 0; i < n; i++) {
                RegUnit *u = (RegUnit *) fl_reg_snapshot_find_unit(s, a[i].unit);
                if (a[i].type == SCHED_UNSCHEDULE)
                        u->target = set_str(u->target, NULL);
                else if (a[i].type == SCHED_SCHEDULE) {
                        FUZZ_CHECK(!u->target); /* unscheduled first, or it had none */
                        u->target = set_str(u->target, a[i].machine_id);
                } else
                        u->unschedulable = set_str(u->unschedulable, a[i].reason);
        }
        FUZZ_CHECK(fl_scheduler_plan(s, &a2, &n2) == 0);
        for (size_t i = 0; i < n2; i++)
                if (a2[i].type != SCHED_SET_REASON) {
                        fprintf(stderr, "second plan: %s %s %s (%s)\n", fl_sched_action_type_to_string(a2[i].type),
                                a2[i].unit, strempty(a2[i].machine_id), strempty(a2[i].reason));
                        FUZZ_CHECK(a2[i].type == SCHED_SET_REASON);
                }
        fl_sched_actions_free(a, n);
        fl_sched_actions_free(a2, n2);
}

static void check_agent(const RegSnapshot *s, const RegMachine *self) {
        _cleanup_(fl_agent_desired_state_done) AgentDesiredState d = {};
        _cleanup_free_ AgentCurrent *cur = NULL;
        AgentTask *tasks = NULL;
        size_t n_tasks = 0;

        FUZZ_CHECK(fl_agent_desired_state(s, self, &d) == 0);
        for (size_t i = 0; i < d.n_units; i++) {
                const AgentDesired *u = &d.units[i];
                FUZZ_CHECK(u->state == JOB_STATE_LOADED || u->state == JOB_STATE_LAUNCHED);
                FUZZ_CHECK(fl_reg_snapshot_find_unit(s, u->name));
                FUZZ_CHECK(!u->file == !u->req);
                if (i > 0)
                        FUZZ_CHECK(strcmp(d.units[i - 1].name, u->name) < 0);
        }

        /* From nothing: every desired unit gets loaded. */
        FUZZ_CHECK(fl_agent_plan(d.units, d.n_units, NULL, 0, &tasks, &n_tasks) == 0);
        for (size_t i = 0; i < n_tasks; i++) {
                FUZZ_CHECK(fl_agent_task_type_to_string(tasks[i].type));
                if (i > 0)
                        FUZZ_CHECK(tasks[i - 1].type <= tasks[i].type);
        }
        free(tasks);
        tasks = NULL;

        /* Already there: nothing to do. */
        cur = new0(AgentCurrent, d.n_units + 1);
        FUZZ_CHECK(cur);
        for (size_t i = 0; i < d.n_units; i++)
                cur[i] = (AgentCurrent) {
                        .name = d.units[i].name,
                        .hash = d.units[i].hash,
                        .state = d.units[i].state,
                        .active_state = d.units[i].state == JOB_STATE_LAUNCHED ? "active" : "inactive",
                };
        FUZZ_CHECK(fl_agent_plan(d.units, d.n_units, cur, d.n_units, &tasks, &n_tasks) == 0);
        for (size_t i = 0; i < n_tasks; i++)
                fprintf(stderr, "steady agent still has: %s %s (%s)\n", fl_agent_task_type_to_string(tasks[i].type),
                        tasks[i].name, strempty(tasks[i].reason));
        FUZZ_CHECK(n_tasks == 0);
        free(tasks);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *plain = NULL;
        _cleanup_free_ char *text = NULL;
        _cleanup_(fl_reg_store_freep) RegStore *live = NULL, *loaded = NULL;
        RegTree tree = {};
        uint64_t index = 0;

        if (size > 64 * 1024)
                return 0;
        text = fuzz_strndup(data, size);
        FUZZ_CHECK(text);
        FUZZ_CHECK(fl_reg_store_new(&live) == 0);
        for (char *line = text, *next; line && *line; line = next) {
                char *tab;
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                tab = strchr(line, '\t');
                index++;
                if (!tab || tab == line)
                        continue;
                *tab = 0;
                /* "-" deletes the key and everything below it (the daemons' store only). */
                if (streq(tab + 1, "-")) {
                        fl_reg_tree_remove(&tree, line);
                        fl_reg_tree_remove_dir(&tree, line);
                        FUZZ_CHECK(fl_reg_store_remove(live, line) >= 0);
                        continue;
                }
                FUZZ_CHECK(fl_reg_tree_set(&tree, line, tab + 1, index, index % 3 == 0 ? 30 : 0) == 0);
                FUZZ_CHECK(fl_reg_store_set(live, line, tab + 1, index, index % 3 == 0 ? 30 : 0) >= 0);
        }
        /* The same keys loaded at once. */
        FUZZ_CHECK(fl_reg_store_new(&loaded) == 0);
        fl_reg_store_begin_load(loaded);
        for (RegNode *n = fl_reg_tree_lower_bound(&tree, ""); n; n = fl_reg_tree_next(&tree, n->key))
                FUZZ_CHECK(fl_reg_store_set(loaded, n->key, n->value, n->modified_index, n->ttl_sec) >= 0);
        FUZZ_CHECK(fl_reg_store_end_load(loaded) == 0);

        FUZZ_CHECK(fl_reg_snapshot_build(&tree, index, &plain) == 0);
        /* The daemons' incremental store, event by event and loaded at once, says the same. */
        same_snapshot("event by event", fl_reg_store_snapshot(live, index), plain);
        same_snapshot("loaded at once", fl_reg_store_snapshot(loaded, index), plain);
        check_snapshot(plain);

        for (size_t i = 0; i < plain->n_machines; i++)
                check_agent(plain, &plain->machines[i]);
        check_plan(plain); /* modifies plain: last */

        fl_reg_tree_clear(&tree);
        return 0;
}
