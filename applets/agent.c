/* SPDX-License-Identifier: MIT */
/* agent.c: the 'agent' applet. */
#include <stdio.h>

#include "applets.h"
#include "log.h"

int applet_agent_main(int argc, char *argv[]) {
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
                printf("Usage: fleet agent [OPTIONS]\n");
                return 0;
        }
        log_error("fleet agent: not implemented yet");
        return 1;
}
