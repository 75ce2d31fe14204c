/* SPDX-License-Identifier: MIT */
/* daemon.c: fleetd itself (spec §2): command line, configuration, identity, the one sd-event
 * loop, signals, socket activation, machine presence (register, heartbeat, monitor) and the
 * lifecycle of the components (API, engine, agent) that live in the Server. Also the entry
 * points of the standalone roles `fleet agent` and `fleet scheduler`.
 *
 * Presence, as fleet does it: create machines/<id>/object (create-only, TTL agent_ttl) until
 * that succeeds, retrying with backoff; only then start the components and let the API answer.
 * A duplicate machine ID therefore keeps the daemon waiting (API 503) instead of fighting over
 * the key. Heartbeats refresh the TTL every ttl/2; when they keep failing, the monitor stops the
 * components (units are left alone) and presence starts over. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include <cJSON.h>

#include "applets.h"
#include "daemon.h"
#include "log.h"
#include "machine.h"
#include "server.h"
#include "strv.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define REGISTER_BACKOFF_MIN_USEC (1 * USEC_PER_SEC)
#define REGISTER_BACKOFF_MAX_USEC (60 * USEC_PER_SEC)
#define SHUTDOWN_TIMEOUT_USEC (60 * USEC_PER_SEC)
#define BEAT_TRIES 4

#define log_oom() log_error_errno(ENOMEM, "Out of memory")
DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

typedef enum Phase {
        PHASE_RUNNING,
        PHASE_RELOADING, /* SIGHUP: old components stopping, new ones not yet started */
        PHASE_STOPPING,  /* SIGTERM: purge in progress */
} Phase;

typedef enum Presence {
        PRESENCE_OFF,         /* role without presence, or stopped */
        PRESENCE_REGISTERING, /* create (or, after the monitor fired, beat) until it works */
        PRESENCE_UP,          /* registered, heartbeat rounds every ttl/2 */
} Presence;

typedef struct Daemon {
        Server server;
        unsigned roles;
        char *config_arg;    /* -config PATH, NULL for the default */
        Phase phase;
        int exit_status;

        /* Listening sockets, owned here for the life of the process: each Api gets dup()s, so a
         * reload replaces the Api without ever closing a listener. */
        int *listen_fds;
        size_t n_listen_fds;

        Presence presence;
        sd_event_source *presence_timer;
        uint64_t presence_gen;     /* bumped to orphan in-flight presence requests */
        bool owns_key;             /* machines/<id>/object is ours: beat to re-register, delete at exit */
        uint64_t backoff_usec;
        unsigned beat_tries;
        uint64_t last_beat_ok;     /* CLOCK_MONOTONIC of the last successful register/beat */
        int last_register_error;
        struct PresenceOp *ops;    /* in flight; freed at exit if the registry dropped them */

        FleetConfig *new_config;   /* during PHASE_RELOADING */
        bool stop_after_reload;
        unsigned stop_pending;     /* engine stop + agent purge in flight */
        sd_event_source *stop_timer;
} Daemon;

/* One in-flight presence request; the callback ignores it once presence moved on. A freed
 * registry drops its requests without calling back, so they are listed here to be freed. */
typedef struct PresenceOp {
        Daemon *d;
        uint64_t gen;
        struct PresenceOp *prev, *next;
} PresenceOp;

static PresenceOp *presence_op_new(Daemon *d) {
        PresenceOp *op = new0(PresenceOp, 1);

        if (!op)
                return NULL;
        *op = (PresenceOp) { .d = d, .gen = d->presence_gen, .next = d->ops };
        if (d->ops)
                d->ops->prev = op;
        d->ops = op;
        return op;
}

static void presence_op_free(PresenceOp *op) {
        if (!op)
                return;
        if (op->prev)
                op->prev->next = op->next;
        else
                op->d->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        free(op);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(PresenceOp *, presence_op_free);

static void presence_attempt(Daemon *d);
static void presence_start(Daemon *d);
static void daemon_begin_shutdown(Daemon *d, int status);

static uint64_t now_usec(Daemon *d) {
        uint64_t t = 0;
        (void) sd_event_now(d->server.event, CLOCK_MONOTONIC, &t);
        return t;
}

static uint64_t ttl_usec(Daemon *d) {
        return d->server.config->agent_ttl_usec;
}

/* etcd TTLs are whole seconds; a sub-second agent_ttl still gets one. */
static uint64_t ttl_sec(Daemon *d) {
        return MAX((ttl_usec(d) + USEC_PER_SEC - 1) / USEC_PER_SEC, UINT64_C(1));
}

static void notify_status(Daemon *d, const char *fmt, ...) _printf_(2, 3);
static void notify_status(Daemon *d, const char *fmt, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        if (s)
                (void) sd_notifyf(0, "STATUS=%s", s);
}

/* ---- identity ---- */

typedef struct MetaPair {
        char *key, *value;
} MetaPair;

static int meta_cmp(const void *a, const void *b) {
        return strcmp(((const MetaPair *) a)->key, ((const MetaPair *) b)->key);
}

/* Our machine object: ID, public IP (configured or detected), config metadata sorted by key,
 * version and capabilities. */
static int build_self(const FleetConfig *c, unsigned roles, RegMachine *ret) {
        _cleanup_(fl_reg_machine_done) RegMachine m = {};
        _cleanup_free_ MetaPair *pairs = NULL;
        const char *id_file = getenv("FLEET_MACHINE_ID_FILE");
        size_t n = fl_strv_length(c->metadata) / 2;
        int r;

        r = fl_machine_id_read(id_file, &m.id);
        if (r < 0)
                return log_error_errno(r, "unable to determine local machine ID (%s): %m",
                                       id_file ?: FL_MACHINE_ID_PATH);
        if (!isempty(c->public_ip)) {
                m.public_ip = strdup(c->public_ip);
        } else {
                r = fl_machine_detect_public_ip(&m.public_ip);
                if (r < 0) {
                        log_info_errno(r, "No public IP detected (no global IPv4 address on the default route's "
                                          "interface: %m); publishing none");
                        m.public_ip = strdup("");
                }
        }
        m.version = strdup(FLEET_VERSION);
        if (!m.public_ip || !m.version)
                return log_oom();

        pairs = new0(MetaPair, n + 1);
        m.metadata = new0(char *, 2 * n + 1);
        if (!pairs || !m.metadata)
                return log_oom();
        for (size_t i = 0; i < n; i++)
                pairs[i] = (MetaPair) { c->metadata[2 * i], c->metadata[2 * i + 1] };
        qsort(pairs, n, sizeof(MetaPair), meta_cmp);
        for (size_t i = 0; i < n; i++) {
                m.metadata[2 * i] = strdup(pairs[i].key);
                m.metadata[2 * i + 1] = strdup(pairs[i].value);
                m.n_metadata = i + 1;
                if (!m.metadata[2 * i] || !m.metadata[2 * i + 1])
                        return log_oom();
        }
        m.disable_engine = c->disable_engine || !(roles & FL_ROLE_ENGINE);
        m.grpc = false;
        *ret = m;
        m = (RegMachine) {};
        return 0;
}

/* ---- registry ---- */

static void registry_config_from(const FleetConfig *c, RegistryConfig *ret) {
        *ret = (RegistryConfig) {
                .endpoints = c->etcd_servers,
                .prefix = c->etcd_key_prefix,
                .ca_file = isempty(c->etcd_cafile) ? NULL : c->etcd_cafile,
                .cert_file = isempty(c->etcd_certfile) ? NULL : c->etcd_certfile,
                .key_file = isempty(c->etcd_keyfile) ? NULL : c->etcd_keyfile,
                .username = isempty(c->etcd_username) ? NULL : c->etcd_username,
                .password = isempty(c->etcd_password) ? NULL : c->etcd_password,
                .request_timeout_usec = c->etcd_request_timeout_usec,
        };
}

static bool registry_config_equal(const FleetConfig *a, const FleetConfig *b) {
        return fl_strv_equal(a->etcd_servers, b->etcd_servers) && streq_ptr(a->etcd_key_prefix, b->etcd_key_prefix) &&
               streq(strempty(a->etcd_cafile), strempty(b->etcd_cafile)) &&
               streq(strempty(a->etcd_certfile), strempty(b->etcd_certfile)) &&
               streq(strempty(a->etcd_keyfile), strempty(b->etcd_keyfile)) &&
               streq(strempty(a->etcd_username), strempty(b->etcd_username)) &&
               streq(strempty(a->etcd_password), strempty(b->etcd_password)) &&
               a->etcd_request_timeout_usec == b->etcd_request_timeout_usec;
}

static void on_registry_change(Registry *r, void *userdata) {
        Daemon *d = userdata;
        Server *s = &d->server;

        if (r != s->registry)
                return;
        if (s->api)
                fl_api_on_registry_change(s->api);
        /* Components being stopped or purged must not start new work. */
        if (d->phase != PHASE_RUNNING)
                return;
        if (s->engine)
                fl_engine_on_registry_change(s->engine);
        if (s->agent)
                fl_agent_on_registry_change(s->agent);
}

static int registry_open(Daemon *d) {
        Server *s = &d->server;
        RegistryConfig rc;
        int r;

        if (fl_strv_length(s->config->etcd_servers) == 0)
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "No etcd servers configured (etcd_servers is empty)");
        log_info("Establishing etcd connectivity");
        registry_config_from(s->config, &rc);
        r = fl_registry_new(&rc, s->event, &s->registry);
        if (r < 0)
                return log_error_errno(r, "Failed creating etcd client: %m");
        r = fl_registry_mirror_start(s->registry, on_registry_change, d);
        if (r < 0)
                return log_error_errno(r, "Failed starting the registry watch: %m");
        return 0;
}

/* ---- components ---- */

static int components_start(Daemon *d) {
        Server *s = &d->server;
        int r;

        log_info("Starting server components");
        if ((d->roles & FL_ROLE_AGENT) && !s->agent) {
                r = fl_agent_new(s, &s->agent);
                if (r < 0)
                        return r; /* logged by the agent */
        }
        if ((d->roles & FL_ROLE_ENGINE) && !s->engine) {
                if (s->config->disable_engine)
                        log_info("Not starting engine; disable-engine is set");
                else {
                        r = fl_engine_new(s, &s->engine);
                        if (r < 0)
                                return log_error_errno(r, "Failed starting the engine: %m");
                }
        }
        /* Let the API re-evaluate now that it may answer. */
        if (s->api)
                fl_api_on_registry_change(s->api);
        notify_status(d, "Running as machine %s%s%s", s->self.id, s->agent ? ", agent" : "",
                      s->engine ? ", engine" : "");
        return 0;
}

/* Stops the components without touching units or the lease (monitor path, reload). */
static void components_drop(Daemon *d) {
        Server *s = &d->server;

        s->engine = fl_engine_free(s->engine);
        s->agent = fl_agent_free(s->agent);
}

/* ---- presence ---- */

static int presence_timer_cb(sd_event_source *es, uint64_t usec, void *userdata) {
        presence_attempt(userdata);
        return 0;
}

static void presence_arm(Daemon *d, uint64_t delay_usec) {
        int r;

        d->presence_timer = sd_event_source_disable_unref(d->presence_timer);
        r = sd_event_add_time_relative(d->server.event, &d->presence_timer, CLOCK_MONOTONIC, delay_usec, 0,
                                       presence_timer_cb, d);
        if (r < 0) {
                /* Without timers the daemon cannot keep its presence: stop cleanly. */
                log_error_errno(r, "Failed to arm presence timer: %m");
                daemon_begin_shutdown(d, EXIT_FAILURE);
        }
}

static void presence_stop(Daemon *d) {
        d->presence_gen++;
        d->presence_timer = sd_event_source_disable_unref(d->presence_timer);
        d->presence = PRESENCE_OFF;
}

static const char *register_error_string(int error) {
        switch (-error) {
        case EEXIST:
                return "machine ID already registered";
        case ETIMEDOUT:
                return "etcd request timed out";
        case ECONNREFUSED:
                return "etcd connection refused";
        default:
                return strerror(abs(error));
        }
}

static void monitor_trigger(Daemon *d) {
        Server *s = &d->server;

        log_error("Server monitor triggered: Monitor timed out before successful heartbeat");
        /* Units keep running: only our components stop, and the API answers 503 meanwhile. */
        s->registered = false;
        components_drop(d);
        if (s->api)
                fl_api_on_registry_change(s->api);
        log_info("Restarting server");
        notify_status(d, "Lost contact with etcd; re-registering machine %s", s->self.id);
        presence_start(d);
}

static void presence_done(Registry *r, int error, void *userdata) {
        _cleanup_(presence_op_freep) PresenceOp *op = userdata;
        Daemon *d = op->d;
        Server *s = &d->server;
        uint64_t delay;

        if (op->gen != d->presence_gen)
                return;
        /* A registration that lands while a reload is underway still made the key ours. */
        if (error >= 0 && d->presence == PRESENCE_REGISTERING)
                d->owns_key = true;
        if (d->phase != PHASE_RUNNING)
                return;

        if (d->presence == PRESENCE_REGISTERING) {
                if (error >= 0) {
                        if (d->last_register_error == -EEXIST)
                                log_info("Machine ID %s is free again", s->self.id);
                        d->last_register_error = 0;
                        d->owns_key = true;
                        d->last_beat_ok = now_usec(d);
                        d->presence = PRESENCE_UP;
                        d->beat_tries = 0;
                        log_info("Registered machine %s (%s) with TTL %" PRIu64 "s", s->self.id,
                                 isempty(s->self.public_ip) ? "no public IP" : s->self.public_ip, ttl_sec(d));
                        s->registered = true;
                        if (components_start(d) < 0) {
                                daemon_begin_shutdown(d, EXIT_FAILURE);
                                return;
                        }
                        presence_arm(d, ttl_usec(d) / 2);
                        return;
                }
                delay = d->backoff_usec;
                d->backoff_usec = MIN(d->backoff_usec * 2, REGISTER_BACKOFF_MAX_USEC);
                log_warning("Server register machine failed: %s, retrying in %" PRIu64 " sec.",
                            register_error_string(error), delay / USEC_PER_SEC);
                if (error == -EEXIST && d->last_register_error != -EEXIST) {
                        log_error("Another machine is registered with our machine ID %s (cloned /etc/machine-id?), "
                                  "or this machine's previous registration has not expired yet. Not starting until "
                                  "it is gone; the API answers 503 meanwhile.",
                                  s->self.id);
                        notify_status(d, "Machine ID %s is registered by another machine; waiting", s->self.id);
                } else if (error != -EEXIST)
                        notify_status(d, "Registering machine %s: %s", s->self.id, register_error_string(error));
                d->last_register_error = error;
                presence_arm(d, delay);
                return;
        }

        /* PRESENCE_UP: a heartbeat. */
        if (error >= 0) {
                d->last_beat_ok = now_usec(d);
                if (d->beat_tries > 0)
                        log_info("Heartbeat succeeded after %u failed attempts", d->beat_tries);
                d->beat_tries = 0;
                presence_arm(d, ttl_usec(d) / 2);
                return;
        }
        d->beat_tries++;
        log_warning_errno(error, "Heartbeat of machine %s failed (attempt %u/%u): %m", s->self.id, d->beat_tries,
                          BEAT_TRIES);
        /* Up to four tries spaced ttl/12; past the TTL the key is gone anyway. */
        if (d->beat_tries >= BEAT_TRIES || now_usec(d) - d->last_beat_ok >= ttl_usec(d)) {
                monitor_trigger(d);
                return;
        }
        presence_arm(d, ttl_usec(d) / 12);
}

static void presence_attempt(Daemon *d) {
        Server *s = &d->server;
        PresenceOp *op;
        int r;

        op = presence_op_new(d);
        if (!op) {
                log_oom();
                presence_arm(d, REGISTER_BACKOFF_MIN_USEC);
                return;
        }
        /* Re-registering a key we already own (monitor restart, reload) beats instead of
         * creating: our own key is still there until its TTL runs out. */
        if (d->presence == PRESENCE_REGISTERING && !d->owns_key)
                r = fl_registry_machine_register_async(s->registry, &s->self, ttl_sec(d), presence_done, op);
        else
                r = fl_registry_machine_beat_async(s->registry, &s->self, ttl_sec(d), presence_done, op);
        if (r < 0) {
                /* Not even queued: take the failure path (retry, monitor) right away. */
                log_debug_errno(r, "Presence request failed to start: %m");
                presence_done(s->registry, r, op);
        }
}

static void presence_start(Daemon *d) {
        presence_stop(d);
        d->presence = PRESENCE_REGISTERING;
        d->backoff_usec = REGISTER_BACKOFF_MIN_USEC;
        d->beat_tries = 0;
        notify_status(d, "Registering machine %s", d->server.self.id);
        presence_attempt(d);
}

/* ---- API ---- */

static int api_start(Daemon *d) {
        Server *s = &d->server;
        _cleanup_free_ int *fds = NULL;
        int r;

        if (!(d->roles & FL_ROLE_API))
                return 0;
        fds = new(int, d->n_listen_fds + 1);
        if (!fds)
                return log_oom();
        for (size_t i = 0; i < d->n_listen_fds; i++) {
                fds[i] = fcntl(d->listen_fds[i], F_DUPFD_CLOEXEC, 3);
                if (fds[i] < 0) {
                        r = -errno;
                        for (size_t j = 0; j < i; j++)
                                safe_close(fds[j]);
                        return log_error_errno(r, "Failed to duplicate API listener: %m");
                }
        }
        /* fl_api_* log their own errors. */
        return fl_api_new(s, fds, d->n_listen_fds, &s->api);
}

static int listeners_setup(Daemon *d) {
        _cleanup_free_ int *bound = NULL;
        size_t n_bound = 0;
        int n, r;

        if (!(d->roles & FL_ROLE_API))
                return 0;
        n = sd_listen_fds(true);
        if (n < 0)
                return log_error_errno(n, "Failed to read socket activation fds: %m");
        for (int i = 0; i < n; i++)
                (void) fcntl(SD_LISTEN_FDS_START + i, F_SETFD, FD_CLOEXEC);
        r = fl_api_bind_listeners(d->server.config, n > 0, &bound, &n_bound);
        if (r < 0) {
                for (int i = 0; i < n; i++)
                        safe_close(SD_LISTEN_FDS_START + i);
                return r;
        }
        d->listen_fds = new(int, (size_t) n + n_bound + 1);
        if (!d->listen_fds)
                return log_oom();
        for (int i = 0; i < n; i++)
                d->listen_fds[d->n_listen_fds++] = SD_LISTEN_FDS_START + i;
        for (size_t i = 0; i < n_bound; i++)
                d->listen_fds[d->n_listen_fds++] = bound[i];
        if (n > 0)
                log_info("Serving the API on %d socket-activated listener(s)%s", n,
                         n_bound > 0 ? " plus the configured ones" : "");
        else if (d->n_listen_fds == 0)
                log_warning("No API listeners: neither socket activated nor configured");
        return 0;
}

/* ---- signals ---- */

static int stop_timeout_cb(sd_event_source *es, uint64_t usec, void *userdata) {
        Daemon *d = userdata;
        log_error("Timed out waiting for server to shut down. Exiting without cleanup.");
        return sd_event_exit(d->server.event, EXIT_FAILURE);
}

static void shutdown_machine_removed(Registry *r, int error, void *userdata) {
        Daemon *d = userdata;

        if (error < 0 && error != -ENOENT)
                log_warning_errno(error, "Failed removing machine object of %s: %m", d->server.self.id);
        (void) sd_event_exit(d->server.event, d->exit_status);
}

static void shutdown_components_done(Daemon *d) {
        Server *s = &d->server;
        int r;

        /* Delete our presence only if the key is ours: a daemon that never got past a duplicate
         * machine ID must not remove the other machine's object. */
        if ((d->roles & FL_ROLE_PRESENCE) && d->owns_key && s->registry) {
                r = fl_registry_machine_remove_async(s->registry, s->self.id, shutdown_machine_removed, d);
                if (r >= 0)
                        return;
                log_warning_errno(r, "Failed removing machine object of %s: %m", s->self.id);
        }
        (void) sd_event_exit(s->event, d->exit_status);
}

static void shutdown_step_done(void *userdata) {
        Daemon *d = userdata;

        if (d->stop_pending > 0 && --d->stop_pending == 0)
                shutdown_components_done(d);
}

static void daemon_begin_shutdown(Daemon *d, int status) {
        Server *s = &d->server;
        int r;

        if (d->phase == PHASE_STOPPING)
                return;
        d->phase = PHASE_STOPPING;
        d->exit_status = status;
        (void) sd_notify(0, "STOPPING=1\nSTATUS=Shutting down");
        presence_stop(d);
        r = sd_event_add_time_relative(s->event, &d->stop_timer, CLOCK_MONOTONIC, SHUTDOWN_TIMEOUT_USEC, 0,
                                       stop_timeout_cb, d);
        if (r < 0)
                log_warning_errno(r, "Failed to arm shutdown timer: %m");

        /* Both run concurrently: the engine releases its lease, the agent unloads every unit it
         * loaded and deletes their published states. Then the machine object goes. */
        d->stop_pending = 1; /* held until both are started, so a synchronous done() cannot finish early */
        if (s->engine) {
                d->stop_pending++;
                fl_engine_stop(s->engine, shutdown_step_done, d);
        }
        if (s->agent) {
                d->stop_pending++;
                fl_agent_purge(s->agent, shutdown_step_done, d);
        }
        shutdown_step_done(d);
}

static const char *config_display_path(Daemon *d) {
        return d->config_arg ?: FL_CONFIG_DEFAULT_PATH;
}

static void log_config_warnings(const FleetConfig *c) {
        STRV_FOREACH(w, c->warnings)
                log_error("%s", *w);
        if (c->enable_grpc)
                log_warning("Config option enable_grpc is not supported - ignoring");
        fl_log_set_max_level(c->verbosity > 0 ? LOG_DEBUG : LOG_INFO);
}

static void reload_finish(Daemon *d);

static void reload_engine_stopped(void *userdata) {
        reload_finish(userdata);
}

/* Second half of SIGHUP, once the old engine released its lease: replace the config and the
 * components; the listeners (and, when its settings did not change, the registry mirror and
 * our presence) carry over. */
static void reload_finish(Daemon *d) {
        Server *s = &d->server;
        _cleanup_(fl_config_freep) FleetConfig *old = NULL;
        _cleanup_(fl_reg_machine_done) RegMachine old_self = {};
        RegMachine self = {};
        bool same_registry, same_identity;
        int r;

        components_drop(d);
        s->api = fl_api_free(s->api);

        r = build_self(d->new_config, d->roles, &self);
        if (r < 0)
                goto fatal;
        old = TAKE_PTR(s->config);
        s->config = TAKE_PTR(d->new_config);
        old_self = s->self;
        s->self = self;

        if (!fl_strv_equal(old->api_listen, s->config->api_listen))
                log_warning("api_listen changed: the API keeps its listeners until fleetd restarts");
        same_registry = registry_config_equal(old, s->config);
        same_identity = streq(old_self.id, s->self.id) && streq_ptr(old->etcd_key_prefix, s->config->etcd_key_prefix);
        if (!same_registry) {
                presence_stop(d);
                s->registry = fl_registry_free(s->registry);
                while (d->ops)
                        presence_op_free(d->ops);
                r = registry_open(d);
                if (r < 0)
                        goto fatal;
        }
        if (!same_identity)
                d->owns_key = false; /* a new key: create-only again */

        r = api_start(d);
        if (r < 0)
                goto fatal;

        d->phase = PHASE_RUNNING;
        if (!(d->roles & FL_ROLE_PRESENCE)) {
                r = components_start(d);
                if (r < 0)
                        goto fatal;
        } else if (same_registry && same_identity && d->presence == PRESENCE_UP) {
                /* Still registered: restart the components at once and beat now, which also
                 * publishes any new metadata or public IP. */
                r = components_start(d);
                if (r < 0)
                        goto fatal;
                d->presence_gen++;
                d->beat_tries = 0;
                presence_attempt(d);
        } else {
                s->registered = false;
                presence_start(d);
        }
        (void) sd_notify(0, "READY=1");
        log_info("Configuration reloaded");
        if (d->stop_after_reload)
                daemon_begin_shutdown(d, EXIT_SUCCESS);
        return;
fatal:
        d->phase = PHASE_RUNNING;
        daemon_begin_shutdown(d, EXIT_FAILURE);
}

static void daemon_reload(Daemon *d) {
        Server *s = &d->server;
        _cleanup_free_ char *error = NULL;
        FleetConfig *c = NULL;
        int r;

        if (d->phase != PHASE_RUNNING) {
                log_info("Ignoring SIGHUP: %s", d->phase == PHASE_STOPPING ? "shutting down" : "already reloading");
                return;
        }
        log_info("Reloading configuration from %s", config_display_path(d));
        (void) sd_notify(0, "RELOADING=1\nSTATUS=Reloading configuration");
        r = fl_config_load(d->config_arg, NULL, &c, &error);
        if (r < 0) {
                log_error_errno(r, "%s; keeping the running configuration", error ?: "Failed loading configuration: %m");
                (void) sd_notify(0, "READY=1");
                return;
        }
        log_config_warnings(c);
        log_info("Restarting server components");
        d->new_config = c;
        d->phase = PHASE_RELOADING;
        /* Stop the old components first (fleet v1.0.0 let them run on beside the new ones). */
        if (s->engine)
                fl_engine_stop(s->engine, reload_engine_stopped, d);
        else
                reload_finish(d);
}

static void daemon_dump(Daemon *d) {
        Server *s = &d->server;
        _cleanup_(cJSON_Deletep) cJSON *j = cJSON_CreateObject();
        _cleanup_free_ char *agent = NULL, *out = NULL;
        static const char *const presence_names[] = { "off", "registering", "up" };

        if (!j)
                return (void) log_oom();
        cJSON_AddStringToObject(j, "MachineID", s->self.id);
        cJSON_AddStringToObject(j, "PublicIP", strempty(s->self.public_ip));
        cJSON_AddStringToObject(j, "Presence", presence_names[d->presence]);
        cJSON_AddBoolToObject(j, "Registered", s->registered);
        cJSON_AddBoolToObject(j, "EngineRunning", s->engine != NULL);
        cJSON_AddBoolToObject(j, "AgentRunning", s->agent != NULL);
        cJSON_AddNumberToObject(j, "MirrorIndex", s->registry ? (double) fl_registry_mirror_index(s->registry) : 0);
        if (s->agent)
                agent = fl_agent_dump(s->agent);
        if (agent && *agent)
                cJSON_AddRawToObject(j, "Agent", agent);
        else
                cJSON_AddNullToObject(j, "Agent");
        out = cJSON_PrintUnformatted(j);
        if (!out)
                return (void) log_oom();
        /* Written directly: log lines are capped at 4 KiB, a dump of many units is bigger. */
        fprintf(stderr, "<%d>INFO State dump: %s\n", LOG_INFO, out);
        fflush(stderr);
}

static int signal_cb(sd_event_source *es, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;

        switch (si->ssi_signo) {
        case SIGTERM:
        case SIGINT:
                if (d->phase == PHASE_STOPPING) {
                        log_warning("Received %s again, exiting without cleanup", strsignal((int) si->ssi_signo));
                        return sd_event_exit(d->server.event, EXIT_FAILURE);
                }
                if (d->phase == PHASE_RELOADING) {
                        d->stop_after_reload = true;
                        return 0;
                }
                log_info("Gracefully shutting down");
                daemon_begin_shutdown(d, EXIT_SUCCESS);
                return 0;
        case SIGHUP:
                daemon_reload(d);
                return 0;
        case SIGUSR1:
                daemon_dump(d);
                return 0;
        }
        return 0;
}

/* ---- command line ---- */

static void usage(FILE *f, const char *prog, const char *name) {
        if (streq(name, "daemon"))
                fprintf(f, "fleetd is the server component of fleet, a simple orchestration system for scheduling "
                           "systemd units in a cluster.\n\n");
        else if (streq(name, "agent"))
                fprintf(f, "fleet agent runs only the agent part of fleetd: this machine's presence in the cluster and "
                           "its units on systemd.\n\n");
        else
                fprintf(f, "fleet scheduler runs only the engine part of fleetd: it places units on machines.\n\n");
        fprintf(f,
                "Usage: %s [-config PATH] [-version]\n\n"
                "  -config string\n"
                "    \tPath to config file. Defaults to %s.\n"
                "  -version\n"
                "    \tPrint the version and exit\n",
                prog, FL_CONFIG_DEFAULT_PATH);
}

static bool parse_bool_flag(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
        static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (streq(s, yes[i]))
                        return (*ret = true);
                if (streq(s, no[i]))
                        return !(*ret = false);
        }
        return false;
}

/* Go flag syntax: -x or --x, -x=v or -x v (not for booleans), "--" ends the flags, the first
 * non-flag argument ends them too. Sets *ret_run when the daemon should start; otherwise the
 * return value is the exit status. */
static int parse_argv(int argc, char *argv[], const char *prog, const char *name, const char *version_name,
                      char **ret_config, bool *ret_run) {
        bool version = false;
        int i;

        *ret_run = false;

        for (i = 1; i < argc; i++) {
                const char *a = argv[i], *flag, *eq;
                _cleanup_free_ char *fname = NULL;

                if (a[0] != '-' || a[1] == 0)
                        break;
                if (streq(a, "--")) {
                        i++;
                        break;
                }
                flag = a + 1 + (a[1] == '-');
                if (flag[0] == 0 || flag[0] == '-' || flag[0] == '=') {
                        fprintf(stderr, "bad flag syntax: %s\n", a);
                        usage(stderr, prog, name);
                        return 2;
                }
                eq = strchr(flag, '=');
                fname = eq ? strndup(flag, (size_t) (eq - flag)) : strdup(flag);
                if (!fname)
                        return log_oom();
                if (streq(fname, "help") || streq(fname, "h")) {
                        usage(stdout, prog, name);
                        return 0;
                }
                if (streq(fname, "version")) {
                        if (eq && !parse_bool_flag(eq + 1, &version)) {
                                fprintf(stderr, "invalid boolean value \"%s\" for -version: parse error\n", eq + 1);
                                usage(stderr, prog, name);
                                return 2;
                        }
                        if (!eq)
                                version = true;
                } else if (streq(fname, "config")) {
                        const char *v;
                        if (eq)
                                v = eq + 1;
                        else if (i + 1 < argc)
                                v = argv[++i];
                        else {
                                fprintf(stderr, "flag needs an argument: -config\n");
                                usage(stderr, prog, name);
                                return 2;
                        }
                        free(*ret_config);
                        *ret_config = strdup(v);
                        if (!*ret_config)
                                return log_oom();
                } else {
                        fprintf(stderr, "flag provided but not defined: -%s\n", fname);
                        usage(stderr, prog, name);
                        return 2;
                }
        }
        if (argc - i == 1 && streq(argv[i], "version"))
                version = true;
        else if (argc - i > 0) {
                fprintf(stderr, "%s takes no arguments. Did you mean to invoke fleetctl instead?\n", prog);
                usage(stderr, prog, name);
                return 1;
        }
        if (version) {
                printf("%s version %s\n", version_name, FLEET_VERSION);
                return 0;
        }
        *ret_run = true;
        return 0;
}

/* ---- main ---- */

static void daemon_done(Daemon *d) {
        Server *s = &d->server;

        presence_stop(d);
        d->stop_timer = sd_event_source_disable_unref(d->stop_timer);
        s->api = fl_api_free(s->api);
        components_drop(d);
        /* The registry drops pending requests without calling back: free our contexts. */
        s->registry = fl_registry_free(s->registry);
        while (d->ops)
                presence_op_free(d->ops);
        for (size_t i = 0; i < d->n_listen_fds; i++)
                safe_close(d->listen_fds[i]);
        d->listen_fds = mfree(d->listen_fds);
        fl_reg_machine_done(&s->self);
        s->config = fl_config_free(s->config);
        d->new_config = fl_config_free(d->new_config);
        s->event = sd_event_unref(s->event);
        free(d->config_arg);
}

int fl_daemon_run(int argc, char *argv[], const char *name, unsigned roles) {
        _cleanup_(daemon_done) Daemon d = { .roles = roles };
        _cleanup_free_ char *prog = NULL, *error = NULL, *display = NULL;
        const char *base = argv[0] ? strrchr(argv[0], '/') : NULL;
        Server *s = &d.server;
        static const int signals[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
        bool run;
        int r;

        /* Messages name the program as invoked (fleetd) or as "fleet APPLET"; the version line
         * says "fleetd" for the daemon, as fleet's does. */
        base = base ? base + 1 : strempty(argv[0]);
        if (streq(base, "fleetd"))
                prog = strdup(argv[0]);
        else if (asprintf(&prog, "fleet %s", name) < 0)
                prog = NULL;
        display = streq(name, "daemon") ? strdup("fleetd") : strdup(prog ?: "");
        if (!prog || !display)
                return log_oom();

        r = parse_argv(argc, argv, prog, name, display, &d.config_arg, &run);
        if (!run)
                return r;

        log_info("Starting %s version %s", display, FLEET_VERSION);
        r = fl_config_load(d.config_arg, NULL, &s->config, &error);
        if (r < 0)
                return log_error_errno(r, "%s", error ?: "Failed loading configuration: %m");
        if (s->config->path)
                log_info("Using config file %s", s->config->path);
        else
                log_info("No provided or default config file found - proceeding without");
        log_config_warnings(s->config);

        r = build_self(s->config, roles, &s->self);
        if (r < 0)
                return r;
        log_info("Machine ID %s, public IP %s", s->self.id, isempty(s->self.public_ip) ? "(none)" : s->self.public_ip);

        /* Nobody reads a closed API connection's EPIPE as fatal. */
        (void) signal(SIGPIPE, SIG_IGN);
        /* Not sd_event_default(): that one checks its thread with a gettid() every iteration. */
        r = sd_event_new(&s->event);
        if (r < 0)
                return log_error_errno(r, "Failed to create event loop: %m");
        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                r = sd_event_add_signal(s->event, NULL, signals[i] | SD_EVENT_SIGNAL_PROCMASK, signal_cb, &d);
                if (r < 0)
                        return log_error_errno(r, "Failed to watch signal %s: %m", strsignal(signals[i]));
        }
        r = sd_event_set_watchdog(s->event, true);
        if (r < 0)
                log_warning_errno(r, "Failed to enable the systemd watchdog: %m");

        r = listeners_setup(&d);
        if (r < 0)
                return r;
        r = registry_open(&d);
        if (r < 0)
                return r;
        r = api_start(&d);
        if (r < 0)
                return r;

        if (roles & FL_ROLE_PRESENCE)
                presence_start(&d);
        else {
                /* No presence of our own to wait for: the API answers and the engine runs now. */
                s->registered = true;
                r = components_start(&d);
                if (r < 0)
                        return r;
        }

        (void) sd_notify(0, "READY=1");
        r = sd_event_loop(s->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        if (r == EXIT_SUCCESS)
                log_info("Shut down cleanly");
        return r;
}

int applet_daemon_main(int argc, char *argv[]) {
        return fl_daemon_run(argc, argv, "daemon", FL_ROLES_DAEMON);
}

/* The standalone roles live here too (applets/agent.c holds the Agent component itself). */
int applet_agent_main(int argc, char *argv[]) {
        return fl_daemon_run(argc, argv, "agent", FL_ROLES_AGENT);
}
