/* SPDX-License-Identifier: MIT */
/* ctl.c: the 'ctl' applet. */
#include <stdio.h>

#include "applets.h"
#include "log.h"

int applet_ctl_main(int argc, char *argv[]) {
        if (argc > 1 && (streq(argv[1], "--help") || streq(argv[1], "-h"))) {
                printf("Usage: fleet ctl [OPTIONS]\n");
                return 0;
        }
        log_error("fleet ctl: not implemented yet");
        return 1;
}
