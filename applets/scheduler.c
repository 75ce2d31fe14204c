/* SPDX-License-Identifier: MIT */
/* scheduler.c: the 'scheduler' applet. */
#include <stdio.h>

#include "applets.h"
#include "log.h"

int applet_scheduler_main(int argc, char *argv[]) {
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
                printf("Usage: fleet scheduler [OPTIONS]\n");
                return 0;
        }
        log_error("fleet scheduler: not implemented yet");
        return 1;
}
