/* SPDX-License-Identifier: MIT */
/* applets.h: the one table of applets (X-macro): name, alias (argv[0] that selects it), flags,
 * one-line summary. fleet.c expands it into prototypes and the lookup table. */
#pragma once

enum {
        APPLET_CLIENT = 1 << 0, /* console logging, stdout flushed and checked at exit */
        APPLET_DAEMON = 1 << 1, /* journal-style logging, sd_notify, umask 022 */
};

#define APPLETS(X)                                                                           \
        X(agent, NULL, APPLET_DAEMON, "run only the agent: this machine's units on systemd") \
        X(ctl, "fleetctl", APPLET_CLIENT, "control the cluster (fleetctl)")                  \
        X(daemon, "fleetd", APPLET_DAEMON, "run fleetd: agent, engine and HTTP API")         \
        X(scheduler, NULL, APPLET_DAEMON, "run only the engine: place units on machines")

/* Each applet returns <0 (a negative errno, already logged) or an exit status >= 0. */
#define X(name, alias, flags, summary) int applet_##name##_main(int argc, char *argv[]);
APPLETS(X)
#undef X
