/* SPDX-License-Identifier: MIT */
/* daemon.h: fleetd's main loop, shared by the daemon, agent and scheduler applets. Which parts
 * run is a role mask: fleetd runs all of them; `fleet agent` this machine's presence and agent;
 * `fleet scheduler` only the engine. Every role serves the HTTP API. */
#pragma once

typedef enum DaemonRole {
        FL_ROLE_PRESENCE = 1 << 0, /* machines/<id>/object with TTL heartbeat, monitor */
        FL_ROLE_AGENT = 1 << 1,
        FL_ROLE_ENGINE = 1 << 2,
        FL_ROLE_API = 1 << 3,
        FL_ROLES_DAEMON = FL_ROLE_PRESENCE | FL_ROLE_AGENT | FL_ROLE_ENGINE | FL_ROLE_API,
        FL_ROLES_AGENT = FL_ROLE_PRESENCE | FL_ROLE_AGENT | FL_ROLE_API,
        FL_ROLES_SCHEDULER = FL_ROLE_ENGINE | FL_ROLE_API,
} DaemonRole;

/* Parses the fleetd command line, runs until SIGTERM/SIGINT; returns the exit status (or a
 * negative errno, already logged). name is the applet ("daemon", "agent", "scheduler"). */
int fl_daemon_run(int argc, char *argv[], const char *name, unsigned roles);
