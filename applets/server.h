/* SPDX-License-Identifier: MIT */
/* server.h: the parts of fleetd (daemon.c wires them into one sd-event loop):
 *   presence (daemon.c)  machine object with TTL heartbeat; gates the API (503 until registered)
 *   api     (api*.c)     HTTP API v1 on unix/TCP listeners
 *   engine  (engine.c)   leader lease + reconcile: places units on machines
 *   agent   (agent*.c)   this machine's units on systemd
 * All share the Server: one loop, one registry mirror, one config. Components are told about
 * registry changes through their on_registry_change hooks (called from the mirror callback). */
#pragma once

#include <systemd/sd-event.h>

#include "config.h"
#include "registry.h"

typedef struct Api Api;
typedef struct Engine Engine;
typedef struct Agent Agent;

typedef struct Server {
        sd_event *event;
        FleetConfig *config;
        Registry *registry;
        RegMachine self;          /* our machine object: id, public_ip, config metadata, version */
        bool registered;          /* presence established: the API answers, components run */
        Api *api;
        Engine *engine;
        Agent *agent;
} Server;

/* API. fds: listening sockets (socket activation or bound by the daemon), ownership moves. */
int fl_api_new(Server *s, const int *fds, size_t n_fds, Api **ret);
Api *fl_api_free(Api *a);
/* Binds the listeners from config (api_listen) and the default unix socket when not socket
 * activated; returns fds to pass to fl_api_new. */
int fl_api_bind_listeners(const FleetConfig *c, bool activated, int **ret_fds, size_t *ret_n);
void fl_api_on_registry_change(Api *a);

/* Engine: runs the lease loop; reconciles when leader. */
int fl_engine_new(Server *s, Engine **ret);
void fl_engine_on_registry_change(Engine *e);
/* Graceful stop: release the lease if held; done() when finished (or at once if nothing to do). */
void fl_engine_stop(Engine *e, void (*done)(void *userdata), void *userdata);
Engine *fl_engine_free(Engine *e);

/* Agent: drives systemd to what the registry wants for this machine. */
int fl_agent_new(Server *s, Agent **ret);
void fl_agent_on_registry_change(Agent *a);
/* Graceful shutdown as fleet does: unload every unit this agent loaded and delete its unit
 * states; done() when finished. */
void fl_agent_purge(Agent *a, void (*done)(void *userdata), void *userdata);
/* SIGUSR1: append a JSON description of the agent's state. */
char *fl_agent_dump(Agent *a);
Agent *fl_agent_free(Agent *a);
