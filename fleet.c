/* SPDX-License-Identifier: MIT */
/* fleet.c: main() of the multicall binary: pick the applet from argv[0] or argv[1], prepare
 * the process for it, map its result to an exit status. The only place that exits. */
#include <nss.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/stat.h>

#include "applets.h"
#include "log.h"

typedef struct Applet {
        const char *name;
        const char *alias;
        int flags;
        const char *summary;
        int (*main)(int argc, char *argv[]);
} Applet;

static const Applet applets[] = {
#define X(n, a, f, s) { #n, a, f, s, applet_##n##_main },
        APPLETS(X)
#undef X
};

static const Applet *applet_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(applets); i++)
                if (streq(applets[i].name, name) || streq_ptr(applets[i].alias, name))
                        return &applets[i];
        return NULL;
}

static void usage(void) {
        printf("Usage: fleet APPLET [ARGS...]\n"
               "       fleetctl [ARGS...]    (same as: fleet ctl)\n"
               "       fleetd [ARGS...]      (same as: fleet daemon)\n"
               "\n"
               "fleet %s: a cluster-wide init system on systemd and etcd, in one binary.\n"
               "\n"
               "Applets:\n",
               FLEET_VERSION);
        for (size_t i = 0; i < ELEMENTSOF(applets); i++)
                printf("  %-10s %s\n", applets[i].name, applets[i].summary);
        printf("\nOptions:\n"
               "  --help      show this help\n"
               "  --version   show the version\n"
               "  --list      list the applet names\n"
               "\nRun 'fleet APPLET --help' for an applet's options.\n");
}

static void setup_process(const Applet *a) {
        /* Static glibc has only the built-in "files" and "dns" NSS modules; anything else named
         * in /etc/nsswitch.conf would be dlopen()ed and drag a second, shared libc into the
         * process. Pin the databases we use to the built-in modules. */
        if (!getenv("FLEET_HOST_NSS")) {
                (void) __nss_configure_lookup("passwd", "files");
                (void) __nss_configure_lookup("group", "files");
                (void) __nss_configure_lookup("shadow", "files");
                (void) __nss_configure_lookup("hosts", "files dns");
        }
        if (a->flags & APPLET_DAEMON) {
                fl_log_setup(LOG_TARGET_DAEMON, LOG_INFO);
                umask(022);
        } else
                fl_log_setup(LOG_TARGET_CONSOLE, LOG_INFO);
}

static int run_applet(const Applet *a, int argc, char *argv[]) {
        int r;

        setup_process(a);
        r = a->main(argc, argv);
        if (a->flags & APPLET_CLIENT) {
                /* A full disk or a closed pipe must not look like success (git run_builtin). */
                if (fflush(stdout) != 0 || ferror(stdout)) {
                        fprintf(stderr, "fleet %s: failed to write output: %m\n", a->name);
                        return 1;
                }
        }
        if (r < 0)
                return 1;
        return r > 255 ? 255 : r;
}

int main(int argc, char *argv[]) {
        const char *base = argv[0] ? strrchr(argv[0], '/') : NULL;
        const Applet *a;

        /* A fixed threshold: buffers over 64 KiB (an etcd reply of a whole registry, the
         * snapshot's arrays) are mapped and unmapped, so a daemon's memory falls back after a
         * full read instead of staying at its peak (glibc's sliding threshold would otherwise
         * grow to the largest freed block and keep such blocks in the heap). */
        (void) mallopt(M_MMAP_THRESHOLD, 64 * 1024);

        base = base ? base + 1 : (argv[0] ?: "fleet");
        a = applet_find(base);
        if (a)
                return run_applet(a, argc, argv);

        if (argc < 2) {
                usage();
                return 0;
        }
        if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
                usage();
                return 0;
        }
        if (streq(argv[1], "--version")) {
                printf("fleet version %s\n", FLEET_VERSION);
                return 0;
        }
        if (streq(argv[1], "--list")) {
                for (size_t i = 0; i < ELEMENTSOF(applets); i++)
                        printf("%s\n", applets[i].name);
                return 0;
        }
        a = applet_find(argv[1]);
        if (!a || streq_ptr(a->alias, argv[1])) {
                if (argv[1][0] == '-')
                        fprintf(stderr, "fleet: unknown option '%s'\n", argv[1]);
                else
                        fprintf(stderr, "fleet: unknown applet '%s'\n", argv[1]);
                return 2;
        }
        return run_applet(a, argc - 1, argv + 1);
}
