/* SPDX-License-Identifier: MIT */
/* agent-plan.h: the agent's decisions (spec §6.2, §6.4, §5.6), pure: what this machine should
 * run (from a registry snapshot), what it runs (the agent's cache), and the ordered tasks that
 * turn one into the other. No I/O; applets/agent.c executes the tasks against systemd.
 *
 * Beyond fleet v1.0.0: units found on disk when the agent starts whose file matches the desired
 * unit and that systemd reports running are ADOPTED (taken over as launched) instead of being
 * loaded and started again, so a fleetd restart converges without restarting what is right. */
#pragma once

#include "macro.h"
#include "registry.h"

typedef enum AgentTaskType {
        AGENT_TASK_ADOPT,  /* record a running unit found on disk as ours; no systemd call */
        AGENT_TASK_UNLOAD, /* stop, disable, reset-failed, delete the file */
        AGENT_TASK_LOAD,   /* write the file, link, enable if [Install] */
        AGENT_TASK_RELOAD, /* daemon-reload */
        AGENT_TASK_STOP,
        AGENT_TASK_START,
        _AGENT_TASK_MAX,
        _AGENT_TASK_INVALID = -EINVAL,
} AgentTaskType;

/* fleet's names: "LoadUnit", "UnloadUnit", "ReloadUnitFiles", "StartUnit", "StopUnit"; ours:
 * "AdoptUnit". */
const char *fl_agent_task_type_to_string(AgentTaskType t);

/* One unit this machine should have loaded or launched. Pointers are borrowed from the
 * snapshot the list was computed from. */
typedef struct AgentDesired {
        const char *name;
        const char *hash;            /* 40 lowercase hex */
        JobState state;              /* JOB_STATE_LOADED or JOB_STATE_LAUNCHED */
        const UnitFile *file;        /* NULL: contents missing from the registry */
        const UnitRequirements *req; /* NULL when file is NULL */
} AgentDesired;

/* A unit the registry schedules here that the agent leaves alone, and why (static string). */
typedef struct AgentSkipped {
        const char *name;
        const char *reason;
} AgentSkipped;

typedef struct AgentDesiredState {
        AgentDesired *units; /* sorted by name */
        size_t n_units;
        AgentSkipped *skipped; /* sorted by name */
        size_t n_skipped;
} AgentDesiredState;

/* Desired state of machine self (§6.2): in name order, every unit whose target state is not
 * inactive and that is either scheduled to self->id or global with MachineMetadata satisfied by
 * self's metadata; a unit that conflicts with one already taken is skipped, as are names the
 * agent must not turn into files (unsafe, templates, types it does not manage) and global units
 * whose contents are missing (their requirements are unknown). 0 or -ENOMEM. */
int fl_agent_desired_state(const RegSnapshot *s, const RegMachine *self, AgentDesiredState *ret);
void fl_agent_desired_state_done(AgentDesiredState *d);

/* One unit the agent has on disk. */
typedef struct AgentCurrent {
        const char *name;
        const char *hash;         /* of the file on disk, "" when unknown (unreadable) */
        JobState state;           /* JOB_STATE_LOADED/LAUNCHED when this agent made it so;
                                   * JOB_STATE_INACTIVE for a file it found on disk */
        bool adoptable;           /* found on disk at startup and not yet touched */
        const char *active_state; /* systemd's ActiveState, NULL when unknown */
} AgentCurrent;

typedef struct AgentTask {
        AgentTaskType type;
        const char *name;            /* borrowed from the desired or current entry */
        const AgentDesired *desired; /* ADOPT, LOAD, START: the desired entry; else NULL */
        JobState adopt_state;        /* ADOPT: the state to record */
        const char *reason;          /* static, fleet's wording */
} AgentTask;

/* fleet's task computation (§6.4) plus adoption. current must be sorted by name. Tasks come
 * ordered by type (adopt, unload, load, reload, stop, start; each group in name order); the one
 * reload is present iff there is a load or an unload. A LOAD whose desired->file is NULL only
 * happens when the file on disk already has the desired hash (it is linked, not rewritten).
 * *ret is NULL when there is nothing to do. 0 or -ENOMEM. */
int fl_agent_plan(const AgentDesired *desired, size_t n_desired, const AgentCurrent *current,
                  size_t n_current, AgentTask **ret, size_t *ret_n);

/* ActiveState values that count as running for adoption: active, reloading, activating. */
bool fl_agent_active_state_running(const char *active_state);
