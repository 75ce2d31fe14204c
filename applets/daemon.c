/* SPDX-License-Identifier: MIT */
/* daemon.c: the 'daemon' applet. */
#include <stdio.h>

#include "applets.h"
#include "log.h"

int applet_daemon_main(int argc, char *argv[]) {
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
                printf("Usage: fleet daemon [OPTIONS]\n");
                return 0;
        }
        log_error("fleet daemon: not implemented yet");
        return 1;
}

/* The standalone roles live here too (applets/agent.c holds the Agent component itself). */
int applet_agent_main(int argc, char *argv[]) {
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
                printf("Usage: fleet agent [OPTIONS]\n");
                return 0;
        }
        log_error("fleet agent: not implemented yet");
        return 1;
}
