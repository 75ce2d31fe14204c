/* SPDX-License-Identifier: MIT */
/* scheduler.h: the engine's decisions (spec §5.2-§5.8), pure: a registry snapshot in, a list of
 * actions out, no I/O. The engine applies the actions with the registry's async writes.
 *
 * One plan = fleet's reconcile pass, deterministic (units and machines in name order):
 *   pass 1  every scheduled job stays unless its target state is inactive, its machine went
 *           away, it no longer satisfies its constraints there (MachineID, MachineMetadata,
 *           MachineOf, Conflicts, as the agent sees that machine), or a unit there replaces it;
 *   pass 2  every unscheduled, non-inactive, non-global job goes to the least-loaded machine
 *           able to run it (ties: lowest machine ID); a placement that replaces units moves
 *           them away within the same plan; MachineOf followers are retried once their peer
 *           is placed, so a plan settles what fleet needed several passes for;
 *   reasons every non-inactive unit that ends up unplaced gets a precise reason (for
 *           job/<name>/unschedulable, our extension), e.g. "no machine has region=eu",
 *           "conflicts with 'web@1.service' on every machine"; placed and inactive units none.
 * Nothing that can stay where it is moves (no reschedule storms). lib/scheduler.c lists where
 * and why this differs from fleet v1.0.0.
 * Actions are net changes against the snapshot, ordered: all UNSCHEDULEs, then all SCHEDULEs,
 * then SET_REASONs (each group by unit name), SET_REASON only where the reason differs from the
 * snapshot's. Applying every UNSCHEDULE before any SCHEDULE is safe: at most one of each per
 * unit. A snapshot that needs nothing yields no action, so an idle cluster costs no writes. */
#pragma once

#include "macro.h"
#include "registry.h"

typedef enum SchedActionType {
        SCHED_UNSCHEDULE,   /* DELETE job/<unit>/target if it is still machine_id */
        SCHED_SCHEDULE,     /* create job/<unit>/target = machine_id */
        SCHED_SET_REASON,   /* job/<unit>/unschedulable = reason (NULL: clear) */
        _SCHED_ACTION_MAX,
} SchedActionType;

typedef struct SchedAction {
        SchedActionType type;
        char *unit;
        char *machine_id;   /* UNSCHEDULE: the machine it leaves; SCHEDULE: where it goes */
        char *reason;       /* by type:
                             *   UNSCHEDULE  why, for the log, fleet's wording; never NULL
                             *   SCHEDULE    always NULL (scheduler.c passes none)
                             *   SET_REASON  the new value; NULL clears it */
} SchedAction;

const char *fl_sched_action_type_to_string(SchedActionType t);   /* "unschedule", ... */

/* One reconcile pass over s. *ret is an array of *ret_n actions (NULL when none), free with
 * fl_sched_actions_free(). 0, -EINVAL or -ENOMEM. */
int fl_scheduler_plan(const RegSnapshot *s, SchedAction **ret, size_t *ret_n);
SchedAction *fl_sched_actions_free(SchedAction *a, size_t n);

/* Whether the plan can ignore u: inactive, on no machine, no reason to clear, and no MachineOf
 * of its own (such a unit links other units' peer chains; left out to keep the rule plainly
 * safe). A snapshot with or without such units plans the same actions (test-scheduler). */
bool fl_scheduler_unit_inert(const RegUnit *u);

