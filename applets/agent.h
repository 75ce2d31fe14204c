/* SPDX-License-Identifier: MIT */
/* agent.h: internals of the agent (agent.c: reconciler and systemd side; agent-publish.c: what
 * the agent writes to the registry). Not used outside applets/agent*.c. */
#pragma once

#include <cJSON.h>

#include "registry.h"
#include "server.h"

/* What the agent writes to the registry about one unit (spec §6.6, §6.7): the job-state
 * heartbeat of a launched unit and the unit's systemd state under states/<unit>/<machine>.
 * Each key has at most one request in flight; a change meanwhile is sent after it. Writes are
 * re-sent on the refresh cadence, so their TTLs never run out; failed ones are retried then. */
typedef struct AgentPub {
        char *name;
        bool hb_want;   /* job-state should name us (the unit is launched) */
        bool hb_exists; /* it may (delete it when no longer wanted) */
        bool hb_dirty, hb_busy;
        char *load, *active, *sub; /* state to publish; load == NULL: none (remove) */
        char hash[41];
        bool st_exists;
        bool st_dirty, st_busy;
} AgentPub;

typedef struct AgentPublisher AgentPublisher;

/* One registry request in flight; when the agent goes first, p is cleared and the callback
 * only frees the op. */
typedef enum AgentOpKind {
        AGENT_OP_HEARTBEAT,
        AGENT_OP_CLEAR_HEARTBEAT,
        AGENT_OP_SAVE_STATE,
        AGENT_OP_REMOVE_STATE,
} AgentOpKind;

typedef struct AgentOp {
        AgentPublisher *p;
        AgentOpKind kind;
        char *name;
        struct AgentOp *prev, *next;
} AgentOp;

struct AgentPublisher {
        Agent *agent;
        Server *s;
        AgentPub **pubs; /* sorted by name */
        size_t n_pubs, n_allocated;
        AgentOp *ops;
        unsigned in_flight;
        bool registry_down; /* the last request failed for want of the store */
        int registry_error;
        void (*drained)(Agent *a); /* called once nothing is dirty or in flight, then cleared */
};

void fl_agent_pub_init(AgentPublisher *p, Agent *a, Server *s);
void fl_agent_pub_done(AgentPublisher *p);
/* The unit is launched (heartbeat job-state) or not (delete it). */
void fl_agent_pub_set_launched(AgentPublisher *p, const char *name, bool launched);
/* The state to publish; load NULL: nothing known yet (nothing is written). */
void fl_agent_pub_set_state(AgentPublisher *p, const char *name, const char *load, const char *active,
                            const char *sub, const char *hash);
/* The unit is gone: delete its job-state and unit state whatever we believe about them. */
void fl_agent_pub_forget(AgentPublisher *p, const char *name);
/* Re-send everything wanted and retry what failed (TTL refresh). */
void fl_agent_pub_refresh(AgentPublisher *p);
/* Forget every unit; drained() once the deletions are done (or failed). */
void fl_agent_pub_purge(AgentPublisher *p, void (*drained)(Agent *a));
/* Registry reachable as far as our writes tell. */
bool fl_agent_pub_registry_ok(AgentPublisher *p);
void fl_agent_pub_registry_contact(AgentPublisher *p);
cJSON *fl_agent_pub_dump(AgentPublisher *p);
uint64_t fl_agent_ttl_sec(Server *s);
