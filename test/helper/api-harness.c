/* SPDX-License-Identifier: MIT */
/* api-harness.c: test-only program (never part of the fleet binary): serves the real HTTP API
 * (applets/api*.c) on a unix socket over a registry mirror of a real etcd, without presence,
 * engine or agent, so test/suites/api.sh can drive every endpoint.
 *
 *   api-harness --etcd URL --prefix PREFIX --socket PATH [--token-limit N] [--unregistered]
 *               [--listen unix:PATH|tcp:ADDR:PORT]... [--tls-cert F --tls-key F [--tls-ca F]]
 *               [--allow-insecure-tcp]
 *
 * --listen entries go through fl_api_bind_listeners() exactly as fleetd's api_listen does
 * (TLS and the loopback rule included); a refused listener makes the harness exit 1.
 * --unregistered starts with Server.registered false (every request gets 503); SIGUSR1 sets it,
 * SIGUSR2 clears it. SIGTERM/SIGINT exit. Prints "ready" on stdout once the socket listens. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"
#include "server.h"
#include "strv.h"

static void on_registry_change(Registry *r, void *userdata) {
        Server *s = userdata;
        fl_api_on_registry_change(s->api);
}

static int on_signal(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata) {
        Server *s = userdata;

        if (si->ssi_signo == SIGUSR1)
                s->registered = true;
        else if (si->ssi_signo == SIGUSR2)
                s->registered = false;
        else
                return sd_event_exit(s->event, 0);
        return 0;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "etcd", required_argument, NULL, 'e' },
                { "prefix", required_argument, NULL, 'p' },
                { "socket", required_argument, NULL, 's' },
                { "token-limit", required_argument, NULL, 't' },
                { "unregistered", no_argument, NULL, 'u' },
                { "debug", no_argument, NULL, 'd' },
                { "listen", required_argument, NULL, 'l' },
                { "tls-cert", required_argument, NULL, 'C' },
                { "tls-key", required_argument, NULL, 'K' },
                { "tls-ca", required_argument, NULL, 'A' },
                { "allow-insecure-tcp", no_argument, NULL, 'I' },
                {}
        };
        _cleanup_strv_free_ char **endpoints = NULL, **listens = NULL;
        _cleanup_free_ int *fds = NULL;
        size_t n_fds = 0;
        const char *etcd = getenv("FLEET_TEST_ETCD"), *prefix = FL_REGISTRY_DEFAULT_PREFIX, *path = NULL;
        FleetConfig config = { .token_limit = 100 };
        Server s = { .config = &config, .registered = true };
        RegistryConfig rc = {};
        _cleanup_(fl_registry_freep) Registry *reg = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        sigset_t mask;
        int fd, c, r;

        fl_log_setup(LOG_TARGET_DAEMON, LOG_INFO);
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'e':
                        etcd = optarg;
                        break;
                case 'p':
                        prefix = optarg;
                        break;
                case 's':
                        path = optarg;
                        break;
                case 't':
                        config.token_limit = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'u':
                        s.registered = false;
                        break;
                case 'd':
                        fl_log_set_max_level(LOG_DEBUG);
                        break;
                case 'l':
                        if (fl_strv_extend(&listens, optarg) < 0)
                                return 1;
                        break;
                case 'C':
                        config.api_tls_certfile = optarg;
                        break;
                case 'K':
                        config.api_tls_keyfile = optarg;
                        break;
                case 'A':
                        config.api_tls_cafile = optarg;
                        break;
                case 'I':
                        config.api_allow_insecure_tcp = true;
                        break;
                default:
                        return 2;
                }
        if (isempty(etcd) || !path || strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "usage: api-harness --etcd URL --prefix PREFIX --socket PATH [--token-limit N] [--unregistered]\n");
                return 2;
        }
        if (fl_strv_split(etcd, ",", &endpoints) < 0)
                return 1;

        r = sd_event_default(&s.event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m"), 1;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGUSR1);
        sigaddset(&mask, SIGUSR2);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        (void) signal(SIGPIPE, SIG_IGN);
        for (int sig = 0; sig < 64; sig++)
                if (sigismember(&mask, sig) == 1)
                        (void) sd_event_add_signal(s.event, NULL, sig, on_signal, &s);

        rc.endpoints = endpoints;
        rc.prefix = prefix;
        rc.request_timeout_usec = 2 * 1000 * 1000;
        r = fl_registry_new(&rc, s.event, &reg);
        if (r < 0)
                return log_error_errno(r, "Failed to create registry: %m"), 1;
        s.registry = reg;

        /* "activated": the harness's own socket stands in for systemd's, so no default socket */
        config.api_listen = listens;
        r = fl_api_bind_listeners(&config, true, &fds, &n_fds);
        if (r < 0)
                return 1;
        (void) unlink(path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Failed to listen on '%s': %m", path), 1;
        {
                int *a = realloc(fds, sizeof(int) * (n_fds + 1));
                if (!a)
                        return 1;
                fds = a;
                fds[n_fds++] = fd;
        }
        r = fl_api_new(&s, fds, n_fds, &s.api);
        if (r < 0)
                return 1;
        r = fl_registry_mirror_start(reg, on_registry_change, &s);
        if (r < 0)
                return log_error_errno(r, "Failed to start the registry mirror: %m"), 1;

        printf("ready\n");
        fflush(stdout);
        r = sd_event_loop(s.event);
        s.api = fl_api_free(s.api);
        reg = fl_registry_free(reg);
        s.event = sd_event_unref(s.event);
        (void) unlink(path);
        return r < 0 ? 1 : 0;
}
