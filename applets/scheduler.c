/* SPDX-License-Identifier: MIT */
/* scheduler.c: the 'scheduler' applet: fleetd with only the engine (and the API). */
#include "applets.h"
#include "daemon.h"

int applet_scheduler_main(int argc, char *argv[]) {
        return fl_daemon_run(argc, argv, "scheduler", FL_ROLES_SCHEDULER);
}
