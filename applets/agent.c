/* SPDX-License-Identifier: MIT */
/* agent.c: fleet's agent inside fleetd (spec §6): this machine's units on systemd.
 *
 * A pass (every 5 s, and soon after a registry change): desired state from the registry mirror
 * (lib/agent-plan.c), current state from our cache (files in units_directory, what we did to
 * them, and systemd's states), and the ordered tasks between them, run one after the other
 * through async D-Bus calls (lib/systemd-bus.c). A failing task skips the rest of its unit's
 * tasks (fleet ended the whole pass); the next pass starts over from fresh state.
 *
 * Beyond fleet v1.0.0:
 *   - a pass only runs while the registry is known good: mirror ready and our last write did
 *     not fail for want of the store. An etcd outage therefore never stops a running unit.
 *   - at startup the files already in units_directory are hashed and their systemd states read;
 *     those with the desired contents that systemd reports running are adopted, not restarted.
 *   - unit states come live from PropertiesChanged signals (plus a ListUnitsByNames after each
 *     pass and on every refresh), not from polling every unit every second.
 *   - files are written atomically (temporary file + rename), only under units_directory, and
 *     only for names that pass fl_unit_name_is_safe().
 *   - the systemd connection is re-established with backoff when it drops. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "agent-plan.h"
#include "agent.h"
#include "log.h"
#include "named-array.h"
#include "strv.h"
#include "systemd-bus.h"
#include "unit-file.h"
#include "unit-name.h"
#include "unit-options.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)
#define AGENT_RECONCILE_INTERVAL_USEC (5 * USEC_PER_SEC)
/* A burst of registry changes (fleetctl start of many units) becomes one pass. */
#define AGENT_KICK_DELAY_USEC (50 * USEC_PER_MSEC)
#define AGENT_RECONNECT_MIN_USEC (1 * USEC_PER_SEC)
#define AGENT_RECONNECT_MAX_USEC (30 * USEC_PER_SEC)
#define TMP_PREFIX ".#fleet-"

#define log_oom() log_error_errno(ENOMEM, "Out of memory")
DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);
DEFINE_TRIVIAL_CLEANUP_FUNC(Agent *, fl_agent_free);

/* A unit file in units_directory, as far as the agent knows. */
typedef struct AgentUnit {
        char *name;
        char hash[41];  /* of the file on disk; "" unknown (unreadable or unparsable) */
        JobState state; /* LOADED/LAUNCHED when we made it so, INACTIVE otherwise */
        bool adoptable; /* found at startup, untouched since */
        char *load_state, *active_state, *sub_state; /* systemd's, NULL until known */
} AgentUnit;

/* One task of a pass, owned (the snapshot it came from may change while it runs). */
typedef struct AgentJob {
        AgentTaskType type;
        char *name;
        char hash[41];
        JobState adopt_state;
        char *text;   /* LOAD: canonical unit text; NULL: the file on disk is right */
        bool install; /* LOAD: has an [Install] section */
        const char *reason;
} AgentJob;

struct Agent {
        Server *s;
        char *units_dir; /* absolute, no trailing slash */
        int dir_fd;

        SystemdBus *bus;
        bool bus_lost;
        sd_event_source *reconnect;
        uint64_t reconnect_backoff;
        bool listed; /* systemd states of the units found at startup are known */

        AgentUnit **units; /* sorted by name */
        size_t n_units, n_allocated;

        sd_event_source *tick, *kick, *refresh, *finish;
        uint64_t refresh_usec;

        /* The pass in progress. */
        bool busy, again;
        bool stepping, advance;
        AgentJob *jobs;
        size_t n_jobs, cur;
        unsigned step;
        char **touched;  /* states to query when the pass ends */
        char **failed;   /* units whose task failed in this pass: their other tasks are skipped */
        bool purge_pass; /* keep going after a failure */

        AgentPublisher pub;
        char **warned;      /* units refused, already logged */
        char **fail_logged; /* "Type name" of failing tasks, already logged */
        bool skip_logged;

        bool purging, units_purged;
        void (*purge_done)(void *userdata);
        void *purge_userdata;
        sd_event_source *purge_defer;
        bool registry_seen; /* a pass has run: later suspensions are worth a log line */
};

static void agent_pass_next(Agent *a);
static void agent_kick(Agent *a, uint64_t delay);
static void purge_continue(Agent *a);
static void pass_end(Agent *a);

/* ---- units cache ---- */

static AgentUnit *unit_free(AgentUnit *u) {
        if (!u)
                return NULL;
        free(u->name);
        free(u->load_state);
        free(u->active_state);
        free(u->sub_state);
        return mfree(u);
}

static AgentUnit *unit_find(Agent *a, const char *name) {
        bool found;
        size_t i = fl_named_array_index(a->units, a->n_units, name, &found);
        return found ? a->units[i] : NULL;
}

static AgentUnit *unit_get(Agent *a, const char *name) {
        AgentUnit *u;
        bool found;
        size_t i = fl_named_array_index(a->units, a->n_units, name, &found);

        if (found)
                return a->units[i];
        u = new0(AgentUnit, 1);
        if (!u)
                return NULL;
        u->name = strdup(name);
        if (!u->name)
                return unit_free(u);
        u->state = JOB_STATE_INACTIVE;
        if (fl_named_array_insert(&a->units, &a->n_units, &a->n_allocated, i, u) < 0)
                return unit_free(u);
        return u;
}

static void unit_remove(Agent *a, const char *name) {
        bool found;
        size_t i = fl_named_array_index(a->units, a->n_units, name, &found);

        if (found)
                unit_free(fl_named_array_remove(a->units, &a->n_units, i));
}

static bool unit_owned(const AgentUnit *u) {
        return u->state == JOB_STATE_LOADED || u->state == JOB_STATE_LAUNCHED;
}

/* Tells the publisher what to say about u: its state while we own it, nothing otherwise. */
static void unit_publish(Agent *a, AgentUnit *u) {
        if (a->purging)
                return; /* everything is being deleted */
        if (unit_owned(u))
                fl_agent_pub_set_state(&a->pub, u->name, u->load_state, u->active_state, u->sub_state,
                                       u->hash);
        fl_agent_pub_set_launched(&a->pub, u->name, u->state == JOB_STATE_LAUNCHED);
}

static void unit_set_state(Agent *a, AgentUnit *u, JobState st) {
        u->state = st;
        u->adoptable = false;
        unit_publish(a, u);
}

static int set_str(char **p, const char *v) {
        char *n;

        if (!v || streq_ptr(*p, v))
                return 0;
        n = strdup(v);
        if (!n)
                return -ENOMEM;
        free(*p);
        *p = n;
        return 1;
}

static void unit_update_systemd(Agent *a, AgentUnit *u, const char *load, const char *active,
                                const char *sub) {
        int r = 0;

        r |= set_str(&u->load_state, load) > 0;
        r |= set_str(&u->active_state, active) > 0;
        r |= set_str(&u->sub_state, sub) > 0;
        if (r)
                unit_publish(a, u);
}

/* ---- files ---- */

/* Only names we may turn into a file name in units_directory. */
static bool name_ok(const char *name) {
        return fl_unit_name_validate(name, NULL) >= 0 && fl_unit_name_is_safe(name);
}

static int unit_path(Agent *a, const char *name, char **ret) {
        if (!name_ok(name))
                return -EINVAL;
        if (asprintf(ret, "%s/%s", a->units_dir, name) < 0)
                return -ENOMEM;
        return 0;
}

static int write_all(int fd, const char *p, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Writes text as units_directory/name, mode 0644, atomically: a temporary file renamed over it,
 * so systemd never reads half a unit. */
static int unit_file_write(Agent *a, const char *name, const char *text) {
        _cleanup_close_ int fd = -EBADF;
        char tmp[64];
        uint64_t rnd = 0;
        int r;

        if (!name_ok(name))
                return -EINVAL;
        (void) getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK);
        snprintf(tmp, sizeof(tmp), TMP_PREFIX "%016" PRIx64 "-%d", rnd, (int) getpid());
        fd = openat(a->dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        r = write_all(fd, text, strlen(text));
        if (r >= 0 && fchmod(fd, 0644) < 0)
                r = -errno;
        if (r >= 0 && renameat(a->dir_fd, tmp, a->dir_fd, name) < 0)
                r = -errno;
        if (r < 0)
                (void) unlinkat(a->dir_fd, tmp, 0);
        return r;
}

static int unit_file_delete(Agent *a, const char *name) {
        if (!name_ok(name))
                return -EINVAL;
        if (unlinkat(a->dir_fd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

/* SHA-1 hex of the canonical form of the file on disk; "" when it cannot be read or parsed. */
static void unit_file_hash(Agent *a, const char *name, char ret[41]) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_(fl_unit_file_freep) UnitFile *uf = NULL;
        _cleanup_free_ char *data = NULL, *error = NULL;
        size_t len = 0, cap = 0;
        uint8_t h[20];
        int r;

        ret[0] = 0;
        fd = openat(a->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                goto fail;
        for (;;) {
                ssize_t n;
                if (cap - len < 4096) {
                        char *d;
                        if (cap > FL_UNIT_FILE_MAX)
                                goto fail;
                        d = realloc(data, cap + 65536);
                        if (!d)
                                goto fail;
                        data = d;
                        cap += 65536;
                }
                n = read(fd, data + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        goto fail;
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        r = fl_unit_file_parse(data ?: "", len, &uf, &error);
        if (r < 0 || fl_unit_file_hash(uf, h) < 0) {
                log_warning("Unit file %s/%s cannot be parsed (%s); it will be replaced or removed",
                            a->units_dir, name, error ?: "unreadable");
                return;
        }
        fl_hash_to_hex(h, ret);
        return;
fail:
        log_warning_errno(errno, "Cannot read unit file %s/%s: %m; it will be replaced or removed",
                          a->units_dir, name);
}

/* The units already on disk: what a previous run (or a crash) left. */
static int scan_units_dir(Agent *a) {
        _cleanup_close_ int fd = -EBADF;
        DIR *d;
        struct dirent *de;

        fd = fcntl(a->dir_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        TAKE_FD(fd);
        while ((de = readdir(d))) {
                AgentUnit *u;
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (startswith(de->d_name, TMP_PREFIX)) {
                        /* Our own temporary file from an interrupted write. */
                        (void) unlinkat(dirfd(d), de->d_name, 0);
                        continue;
                }
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
                    !name_ok(de->d_name) || !fl_unit_name_agent_manageable(de->d_name)) {
                        log_warning("Found unrecognized file in %s/%s, ignoring", a->units_dir, de->d_name);
                        continue;
                }
                u = unit_get(a, de->d_name);
                if (!u) {
                        closedir(d);
                        return -ENOMEM;
                }
                unit_file_hash(a, u->name, u->hash);
                u->adoptable = true;
                log_debug("Found unit file %s/%s with hash %s", a->units_dir, u->name, strempty(u->hash));
        }
        closedir(d);
        return 0;
}

static int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* ---- systemd states ---- */

static void on_list(SystemdBus *b, int error, const char *message, const SystemdUnitInfo *units, size_t n,
                    void *userdata) {
        Agent *a = userdata;

        if (error < 0)
                log_warning_errno(error, "Failed to read unit states from systemd: %s", message ?: "%m");
        for (size_t i = 0; i < n; i++) {
                AgentUnit *u = unit_find(a, units[i].name);
                if (u)
                        unit_update_systemd(a, u, units[i].load_state, units[i].active_state,
                                            units[i].sub_state);
        }
        if (!a->listed && error >= 0) {
                a->listed = true;
                agent_kick(a, 0);
        }
}

/* ListUnitsByNames for names (all units when NULL). */
static void query_states(Agent *a, char **names) {
        _cleanup_strv_free_ char **all = NULL;
        int r;

        if (!a->bus || a->bus_lost)
                return;
        if (!names) {
                for (size_t i = 0; i < a->n_units; i++)
                        if (fl_strv_extend(&all, a->units[i]->name) < 0)
                                return (void) log_oom();
                names = all;
        }
        if (fl_strv_length(names) == 0) {
                if (!a->listed) {
                        a->listed = true;
                        agent_kick(a, 0);
                }
                return;
        }
        r = fl_systemd_list_units_by_names_async(a->bus, names, on_list, a);
        if (r < 0)
                log_warning_errno(r, "Failed to ask systemd for unit states: %m");
}

static void on_unit_changed(SystemdBus *b, const char *name, const char *load, const char *active,
                            const char *sub, void *userdata) {
        Agent *a = userdata;
        AgentUnit *u = unit_find(a, name);

        if (u)
                unit_update_systemd(a, u, load, active, sub);
}

static void on_job_removed(SystemdBus *b, const char *unit, const char *result, void *userdata) {
        Agent *a = userdata;
        AgentUnit *u = unit_find(a, unit);

        if (u && fl_systemd_job_result_to_errno(result) < 0)
                log_warning("Job for unit %s finished with result '%s'", unit, result);
}

static void bus_connect(Agent *a);

static int reconnect_cb(sd_event_source *es, uint64_t usec, void *userdata) {
        Agent *a = userdata;

        a->reconnect = sd_event_source_disable_unref(a->reconnect);
        bus_connect(a);
        return 0;
}

static void reconnect_arm(Agent *a) {
        int r;

        a->reconnect = sd_event_source_disable_unref(a->reconnect);
        r = sd_event_add_time_relative(a->s->event, &a->reconnect, CLOCK_MONOTONIC, a->reconnect_backoff, 0,
                                       reconnect_cb, a);
        if (r < 0)
                log_error_errno(r, "Failed to arm the systemd reconnect timer: %m");
        a->reconnect_backoff = MIN(a->reconnect_backoff * 2, AGENT_RECONNECT_MAX_USEC);
}

static void on_bus_disconnected(SystemdBus *b, void *userdata) {
        Agent *a = userdata;

        log_warning("Lost the connection to systemd (%s); reconnecting", fl_systemd_bus_address(b));
        /* The bus is freed from the timer, not from inside its own callback. */
        a->bus_lost = true;
        a->reconnect_backoff = AGENT_RECONNECT_MIN_USEC;
        reconnect_arm(a);
}

static const SystemdBusEvents bus_events = {
        .unit_changed = on_unit_changed,
        .job_removed = on_job_removed,
        .disconnected = on_bus_disconnected,
};

static SystemdBusKind bus_kind(Agent *a) {
        return a->s->config->systemd_user ? SYSTEMD_BUS_USER : SYSTEMD_BUS_SYSTEM;
}

/* (Re)connects; then reads the states of every known unit before the next pass. */
static void bus_connect(Agent *a) {
        int r;

        /* Calls on the old bus are cancelled with it: a pass waiting for one ends here. */
        if (a->busy)
                pass_end(a);
        a->bus = fl_systemd_bus_free(a->bus);
        a->bus_lost = false;
        r = fl_systemd_bus_new(a->s->event, bus_kind(a), &bus_events, a, &a->bus);
        if (r < 0) {
                log_warning_errno(r, "Failed to connect to systemd: %m; retrying in %" PRIu64 " s",
                                  a->reconnect_backoff / USEC_PER_SEC);
                a->bus_lost = true;
                reconnect_arm(a);
                return;
        }
        log_info("Connected to systemd at %s", fl_systemd_bus_address(a->bus));
        a->reconnect_backoff = AGENT_RECONNECT_MIN_USEC;
        a->listed = false;
        query_states(a, NULL);
}

static bool bus_usable(Agent *a) {
        return a->bus && !a->bus_lost;
}

/* ---- the pass ---- */

static void jobs_free(Agent *a) {
        for (size_t i = 0; i < a->n_jobs; i++) {
                free(a->jobs[i].name);
                free(a->jobs[i].text);
        }
        a->jobs = mfree(a->jobs);
        a->n_jobs = a->cur = 0;
}

static int finish_cb(sd_event_source *es, void *userdata) {
        Agent *a = userdata;

        a->finish = sd_event_source_disable_unref(a->finish);
        if (a->purging)
                purge_continue(a);
        else if (a->again) {
                a->again = false;
                agent_kick(a, 0);
        }
        return 0;
}

static void pass_end(Agent *a) {
        int r;

        if (fl_strv_length(a->touched) > 0)
                query_states(a, a->touched);
        a->touched = fl_strv_free(a->touched);
        a->failed = fl_strv_free(a->failed);
        jobs_free(a);
        a->busy = false;
        a->purge_pass = false;
        /* What follows runs from the loop, never from inside a systemd callback. */
        if (!a->finish) {
                r = sd_event_add_defer(a->s->event, &a->finish, finish_cb, a);
                if (r < 0)
                        log_error_errno(r, "Failed to schedule the end of the agent pass: %m");
        }
}

/* A task that keeps failing (a unit that refuses to stop) is retried every pass: log it once
 * at error level, then at debug until it succeeds. */
static bool fail_seen(Agent *a, const AgentJob *j, bool failed) {
        _cleanup_free_ char *key = NULL;
        bool seen;

        if (asprintf(&key, "%s %s", fl_agent_task_type_to_string(j->type), j->name) < 0)
                return false;
        seen = fl_strv_contains(a->fail_logged, key);
        if (failed && !seen)
                (void) fl_strv_extend(&a->fail_logged, key);
        else if (!failed && seen) {
                char **l = a->fail_logged, **w = l;
                for (char **r = l; *r; r++) {
                        if (streq(*r, key))
                                free(*r);
                        else
                                *w++ = *r;
                }
                *w = NULL;
        }
        return seen;
}

static void job_done(Agent *a, int error, const char *message) {
        AgentJob *j = &a->jobs[a->cur];

        if (error < 0) {
                log_full_errno(fail_seen(a, j, true) ? LOG_DEBUG : LOG_ERR, error,
                               "AgentReconciler task failed: type=%s job=%s reason=\"%s\": %s",
                               fl_agent_task_type_to_string(j->type), j->name, j->reason,
                               message ?: strerror(-error));
                /* fleet ends the pass at the first failure, so one broken unit blocks every
                 * other; we only skip the remaining tasks of that unit. A failed reload (what
                 * follows may need it) or a lost systemd connection ends the pass. */
                if (!a->purge_pass && (j->type == AGENT_TASK_RELOAD || error == -ECONNRESET ||
                                       error == -ENOTCONN || fl_strv_extend(&a->failed, j->name) < 0)) {
                        pass_end(a);
                        return;
                }
        } else {
                (void) fail_seen(a, j, false);
                log_info("AgentReconciler completed task: type=%s job=%s reason=\"%s\"",
                         fl_agent_task_type_to_string(j->type), j->name, j->reason);
        }
        if (!isempty(j->name) && !fl_strv_contains(a->touched, j->name))
                (void) fl_strv_extend(&a->touched, j->name);
        if (a->purging && !a->purge_pass) {
                /* Shutting down: the purge takes over after this task. */
                pass_end(a);
                return;
        }
        a->cur++;
        a->step = 0;
        agent_pass_next(a);
}

static void on_step(SystemdBus *b, int error, const char *message, void *userdata);

/* The task's steps; each asynchronous one comes back through on_step(). */
static void job_run(Agent *a, int error, const char *message) {
        AgentJob *j = &a->jobs[a->cur];
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *path = NULL;
        AgentUnit *u;
        unsigned step = a->step++;
        int r = 0;

        if (!bus_usable(a) && j->type != AGENT_TASK_ADOPT)
                return job_done(a, -ENOTCONN, "no connection to systemd");

        switch (j->type) {
        case AGENT_TASK_ADOPT:
                u = unit_find(a, j->name);
                if (!u)
                        return job_done(a, -ENOENT, "unit vanished");
                unit_set_state(a, u, j->adopt_state);
                return job_done(a, 0, NULL);

        case AGENT_TASK_LOAD:
                switch (step) {
                case 0:
                        u = unit_get(a, j->name);
                        if (!u)
                                return job_done(a, -ENOMEM, NULL);
                        if (j->text) {
                                log_info("Writing systemd unit %s (%zub)", j->name, strlen(j->text));
                                r = unit_file_write(a, j->name, j->text);
                                if (r < 0)
                                        return job_done(a, r, "cannot write the unit file");
                                memcpy(u->hash, j->hash, sizeof(u->hash));
                        }
                        u->adoptable = false;
                        r = unit_path(a, j->name, &path);
                        if (r >= 0)
                                r = fl_strv_push(&l, TAKE_PTR(path));
                        if (r >= 0)
                                r = fl_systemd_link_unit_files_async(a->bus, l, true, true, on_step, a);
                        break;
                case 1:
                        if (error < 0)
                                return job_done(a, error, message);
                        if (!j->install)
                                goto load_done;
                        r = unit_path(a, j->name, &path);
                        if (r >= 0)
                                r = fl_strv_push(&l, TAKE_PTR(path));
                        if (r >= 0)
                                r = fl_systemd_enable_unit_files_async(a->bus, l, true, true, on_step, a);
                        break;
                case 2:
                        if (error < 0) {
                                log_error_errno(error, "Failed to enable systemd unit %s: %s", j->name,
                                                message ?: strerror(-error));
                                /* As fleet does: a unit that cannot be enabled is removed again. */
                                (void) unit_file_delete(a, j->name);
                                unit_remove(a, j->name);
                                return job_done(a, error, message);
                        }
                        goto load_done;
                }
                break;
        load_done:
                u = unit_find(a, j->name);
                if (u) {
                        memcpy(u->hash, j->hash, sizeof(u->hash));
                        unit_set_state(a, u, JOB_STATE_LOADED);
                }
                return job_done(a, 0, NULL);

        case AGENT_TASK_RELOAD:
                if (step == 0)
                        r = fl_systemd_reload_async(a->bus, on_step, a);
                else
                        return job_done(a, error, message);
                break;

        case AGENT_TASK_START:
        case AGENT_TASK_STOP: {
                bool start = j->type == AGENT_TASK_START;

                u = unit_find(a, j->name);
                if (!u)
                        return job_done(a, -ENOENT, "unit not loaded");
                if (step == 0) {
                        unit_set_state(a, u, start ? JOB_STATE_LAUNCHED : JOB_STATE_LOADED);
                        r = start ? fl_systemd_start_unit_async(a->bus, j->name, "replace", false, on_step,
                                                                a)
                                  : fl_systemd_stop_unit_async(a->bus, j->name, "replace", false, on_step,
                                                               a);
                        break;
                }
                if (error < 0)
                        /* Not done: the next pass tries again. */
                        unit_set_state(a, u, start ? JOB_STATE_LOADED : JOB_STATE_LAUNCHED);
                return job_done(a, error, message);
        }

        case AGENT_TASK_UNLOAD:
                switch (step) {
                case 0:
                        u = unit_find(a, j->name);
                        if (u) {
                                u->state = JOB_STATE_INACTIVE;
                                u->adoptable = false;
                        }
                        /* No longer ours: job-state and unit state go, even if the stop fails. */
                        fl_agent_pub_forget(&a->pub, j->name);
                        /* Wait for the stop job: the file goes only once the unit is down. */
                        r = fl_systemd_stop_unit_async(a->bus, j->name, "replace", true, on_step, a);
                        break;
                case 1:
                        /* A unit systemd does not know, or one that is down already (a refused
                         * stop of a dead RefuseManualStop= unit), is stopped as far as we care.
                         * Anything else keeps its file (fleet issue 1216). */
                        u = unit_find(a, j->name);
                        if (error < 0 && error != -ENOENT &&
                            !(u && u->active_state &&
                              (streq(u->active_state, "inactive") || streq(u->active_state, "failed"))))
                                return job_done(a, error, message);
                        r = fl_strv_extend(&l, j->name);
                        if (r >= 0)
                                r = fl_systemd_disable_unit_files_async(a->bus, l, true, on_step, a);
                        break;
                case 2:
                        if (error < 0)
                                log_warning_errno(error, "Failed to disable systemd unit %s, ignoring: %s",
                                                  j->name, message ?: strerror(-error));
                        r = fl_systemd_reset_failed_unit_async(a->bus, j->name, on_step, a);
                        break;
                case 3:
                        if (error < 0 && error != -ENOENT)
                                log_debug("ResetFailedUnit %s: %s", j->name, message ?: strerror(-error));
                        r = unit_file_delete(a, j->name);
                        if (r < 0)
                                return job_done(a, r, "cannot delete the unit file");
                        unit_remove(a, j->name);
                        return job_done(a, 0, NULL);
                }
                break;

        default:
                return job_done(a, -EINVAL, NULL);
        }
        if (r < 0)
                job_done(a, r, NULL);
}

static void on_step(SystemdBus *b, int error, const char *message, void *userdata) {
        job_run(userdata, error, message);
}

/* Runs tasks until one waits for systemd. A loop rather than recursion: tasks that finish at
 * once (adoptions, failures while shutting down) can be many. */
static void agent_pass_next(Agent *a) {
        if (a->stepping) {
                a->advance = true;
                return;
        }
        a->stepping = true;
        do {
                a->advance = false;
                while (a->cur < a->n_jobs && fl_strv_contains(a->failed, a->jobs[a->cur].name))
                        a->cur++;
                if (a->cur >= a->n_jobs) {
                        pass_end(a);
                        break;
                }
                job_run(a, 0, NULL);
        } while (a->advance && a->busy);
        a->stepping = false;
}

/* Copies the plan's tasks: they outlive the snapshot. */
static int jobs_from_plan(Agent *a, const AgentTask *t, size_t n) {
        a->jobs = new0(AgentJob, n + 1);
        if (!a->jobs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                AgentJob *j = &a->jobs[a->n_jobs++];

                *j = (AgentJob){
                        .type = t[i].type,
                        .name = strdup(t[i].name),
                        .adopt_state = t[i].adopt_state,
                        .reason = t[i].reason,
                };
                if (!j->name)
                        return -ENOMEM;
                if (t[i].desired)
                        snprintf(j->hash, sizeof(j->hash), "%s", t[i].desired->hash);
                if (t[i].type == AGENT_TASK_LOAD && t[i].desired->file) {
                        j->text = fl_unit_file_serialize(t[i].desired->file);
                        if (!j->text)
                                return -ENOMEM;
                        j->install = fl_unit_file_has_section(t[i].desired->file, "Install");
                } else if (t[i].type == AGENT_TASK_LOAD) {
                        /* The file on disk is right (same hash): look at it for [Install]. */
                        _cleanup_free_ char *path = NULL;
                        FILE *f;
                        char line[256];

                        if (unit_path(a, j->name, &path) >= 0 && (f = fopen(path, "re"))) {
                                while (fgets(line, sizeof(line), f))
                                        if (startswith(line, "[Install]"))
                                                j->install = true;
                                fclose(f);
                        }
                }
        }
        return 0;
}

static bool registry_ready(Agent *a) {
        Registry *reg = a->s->registry;
        return reg && fl_registry_mirror_ready(reg) && fl_agent_pub_registry_ok(&a->pub) &&
               fl_registry_snapshot(reg);
}

static void log_skipped(Agent *a, const AgentDesiredState *d) {
        for (size_t i = 0; i < d->n_skipped; i++) {
                if (fl_strv_contains(a->warned, d->skipped[i].name))
                        continue;
                log_info("Not running unit %s here: %s", d->skipped[i].name, d->skipped[i].reason);
                (void) fl_strv_extend(&a->warned, d->skipped[i].name);
        }
}

static void agent_reconcile(Agent *a) {
        _cleanup_(fl_agent_desired_state_done) AgentDesiredState d = {};
        _cleanup_free_ AgentCurrent *cur = NULL;
        _cleanup_free_ AgentTask *tasks = NULL;
        const RegSnapshot *snap;
        const RegMachine *self;
        size_t n_tasks = 0;
        int r;

        if (a->purging)
                return;
        if (a->busy) {
                a->again = true;
                return;
        }
        if (!bus_usable(a) || !a->listed)
                return;
        /* Without a trustworthy view of the registry nothing is changed: a stale or missing
         * view must never stop what runs. */
        if (!registry_ready(a)) {
                if (a->registry_seen && !a->skip_logged)
                        log_info("Registry not available; agent reconciliation suspended");
                a->skip_logged = true;
                return;
        }
        if (a->registry_seen && a->skip_logged)
                log_info("Registry available; agent reconciliation resumed");
        a->skip_logged = false;
        a->registry_seen = true;

        snap = fl_registry_snapshot(a->s->registry);
        /* Our registry entry carries the dynamic metadata; until it shows up, the config's. */
        self = fl_reg_snapshot_find_machine(snap, a->s->self.id) ?: &a->s->self;
        r = fl_agent_desired_state(snap, self, &d);
        if (r < 0)
                return (void) log_oom();
        log_skipped(a, &d);

        cur = new0(AgentCurrent, a->n_units + 1);
        if (!cur)
                return (void) log_oom();
        for (size_t i = 0; i < a->n_units; i++)
                cur[i] = (AgentCurrent){
                        .name = a->units[i]->name,
                        .hash = a->units[i]->hash,
                        .state = a->units[i]->state,
                        .adoptable = a->units[i]->adoptable,
                        .active_state = a->units[i]->active_state,
                };
        r = fl_agent_plan(d.units, d.n_units, cur, a->n_units, &tasks, &n_tasks);
        if (r < 0)
                return (void) log_oom();
        if (n_tasks == 0)
                return;
        r = jobs_from_plan(a, tasks, n_tasks);
        if (r < 0) {
                jobs_free(a);
                return (void) log_oom();
        }
        a->busy = true;
        a->step = 0;
        agent_pass_next(a);
}

static int kick_cb(sd_event_source *es, uint64_t usec, void *userdata) {
        Agent *a = userdata;

        a->kick = sd_event_source_disable_unref(a->kick);
        agent_reconcile(a);
        return 0;
}

static void agent_kick(Agent *a, uint64_t delay) {
        int r;

        if (a->kick || a->purging)
                return;
        r = sd_event_add_time_relative(a->s->event, &a->kick, CLOCK_MONOTONIC, delay, 0, kick_cb, a);
        if (r < 0)
                log_warning_errno(r, "Failed to schedule an agent pass: %m");
}

static int tick_cb(sd_event_source *es, uint64_t usec, void *userdata) {
        Agent *a = userdata;

        (void) sd_event_source_set_time_relative(es, AGENT_RECONCILE_INTERVAL_USEC);
        agent_reconcile(a);
        return 0;
}

/* TTL cadence: re-read systemd's view (safety net for missed signals) and re-send every
 * heartbeat and state so their TTLs do not run out. */
static int refresh_cb(sd_event_source *es, uint64_t usec, void *userdata) {
        Agent *a = userdata;

        (void) sd_event_source_set_time_relative(es, a->refresh_usec);
        if (a->purging)
                return 0;
        query_states(a, NULL);
        fl_agent_pub_refresh(&a->pub);
        return 0;
}

/* ---- purge ---- */

static int purge_done_cb(sd_event_source *es, void *userdata) {
        Agent *a = userdata;
        void (*done)(void *) = a->purge_done;

        a->purge_defer = sd_event_source_disable_unref(a->purge_defer);
        a->purge_done = NULL;
        if (done)
                done(a->purge_userdata);
        return 0;
}

static void purge_drained(Agent *a) {
        int r;

        log_info("Agent purge finished");
        /* From the loop: done() may free us. */
        r = sd_event_add_defer(a->s->event, &a->purge_defer, purge_done_cb, a);
        if (r < 0) {
                log_error_errno(r, "Failed to schedule the end of the purge: %m");
                purge_done_cb(NULL, a);
        }
}

/* Unload everything on disk, then one daemon-reload; failures do not stop the others. */
static int purge_unload_all(Agent *a) {
        a->jobs = new0(AgentJob, a->n_units + 2);
        if (!a->jobs)
                return -ENOMEM;
        for (size_t i = 0; i <= a->n_units; i++) {
                bool reload = i == a->n_units;
                AgentJob *j = &a->jobs[a->n_jobs++];

                *j = (AgentJob){
                        .type = reload ? AGENT_TASK_RELOAD : AGENT_TASK_UNLOAD,
                        .name = strdup(reload ? "" : a->units[i]->name),
                        .reason = "agent shutting down",
                };
                if (!j->name) {
                        jobs_free(a);
                        return -ENOMEM;
                }
        }
        a->busy = true;
        a->purge_pass = true;
        a->step = 0;
        agent_pass_next(a);
        return 0;
}

static void purge_continue(Agent *a) {
        if (a->busy)
                return; /* the pass in progress ends first, then comes back here */
        if (!a->units_purged) {
                a->units_purged = true;
                if (a->n_units > 0) {
                        if (bus_usable(a) && purge_unload_all(a) >= 0)
                                return;
                        log_warning("Not unloading %zu unit(s): no connection to systemd", a->n_units);
                }
        }
        fl_agent_pub_purge(&a->pub, purge_drained);
}

void fl_agent_purge(Agent *a, void (*done)(void *userdata), void *userdata) {
        if (!a || a->purging) {
                if (done)
                        done(userdata);
                return;
        }
        log_info("Agent purging: unloading %zu unit(s)", a->n_units);
        a->purging = true;
        a->purge_done = done;
        a->purge_userdata = userdata;
        a->kick = sd_event_source_disable_unref(a->kick);
        a->tick = sd_event_source_disable_unref(a->tick);
        a->refresh = sd_event_source_disable_unref(a->refresh);
        purge_continue(a);
}

/* ---- interface ---- */

void fl_agent_on_registry_change(Agent *a) {
        if (!a)
                return;
        /* Data from the watch: the store is reachable. */
        fl_agent_pub_registry_contact(&a->pub);
        agent_kick(a, AGENT_KICK_DELAY_USEC);
}

int fl_agent_new(Server *s, Agent **ret) {
        _cleanup_(fl_agent_freep) Agent *a = NULL;
        const char *dir = s->config->units_directory;
        uint64_t ttl = s->config->agent_ttl_usec;
        size_t l;
        int r;

        if (isempty(dir))
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "No units_directory configured");
        a = new0(Agent, 1);
        if (!a)
                return log_oom();
        a->s = s;
        a->dir_fd = -EBADF;
        fl_agent_pub_init(&a->pub, a, s);

        r = mkdir_p(dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Failed to create units directory %s: %m", dir);
        a->units_dir = realpath(dir, NULL);
        if (!a->units_dir)
                return log_error_errno(errno, "Failed to resolve units directory %s: %m", dir);
        l = strlen(a->units_dir);
        while (l > 1 && a->units_dir[l - 1] == '/')
                a->units_dir[--l] = 0;
        a->dir_fd = open(a->units_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (a->dir_fd < 0)
                return log_error_errno(errno, "Failed to open units directory %s: %m", a->units_dir);
        r = scan_units_dir(a);
        if (r < 0)
                return log_error_errno(r, "Failed to read units directory %s: %m", a->units_dir);
        if (a->n_units > 0)
                log_info("Found %zu unit file(s) in %s", a->n_units, a->units_dir);

        a->reconnect_backoff = AGENT_RECONNECT_MIN_USEC;
        r = fl_systemd_bus_new(s->event, bus_kind(a), &bus_events, a, &a->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to systemd%s: %m",
                                       s->config->systemd_user ? " (user manager)" : "");
        log_info("Connected to systemd at %s", fl_systemd_bus_address(a->bus));
        query_states(a, NULL);

        a->refresh_usec = ttl > 10 * USEC_PER_SEC ? ttl / 5 * 4 : ttl / 2;
        if (a->refresh_usec == 0)
                a->refresh_usec = USEC_PER_SEC / 2;
        r = sd_event_add_time_relative(s->event, &a->tick, CLOCK_MONOTONIC, AGENT_RECONCILE_INTERVAL_USEC, 0,
                                       tick_cb, a);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->tick, SD_EVENT_ON);
        if (r >= 0)
                r = sd_event_add_time_relative(s->event, &a->refresh, CLOCK_MONOTONIC, a->refresh_usec, 0,
                                               refresh_cb, a);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->refresh, SD_EVENT_ON);
        if (r < 0)
                return log_error_errno(r, "Failed to arm agent timers: %m");
        *ret = TAKE_PTR(a);
        return 0;
}

Agent *fl_agent_free(Agent *a) {
        if (!a)
                return NULL;
        /* Units are left as they are: a later agent adopts them. */
        a->bus = fl_systemd_bus_free(a->bus);
        sd_event_source_disable_unref(a->reconnect);
        sd_event_source_disable_unref(a->tick);
        sd_event_source_disable_unref(a->kick);
        sd_event_source_disable_unref(a->refresh);
        sd_event_source_disable_unref(a->finish);
        sd_event_source_disable_unref(a->purge_defer);
        fl_agent_pub_done(&a->pub);
        jobs_free(a);
        for (size_t i = 0; i < a->n_units; i++)
                unit_free(a->units[i]);
        free(a->units);
        fl_strv_free(a->touched);
        fl_strv_free(a->failed);
        fl_strv_free(a->warned);
        fl_strv_free(a->fail_logged);
        safe_close(a->dir_fd);
        free(a->units_dir);
        return mfree(a);
}

char *fl_agent_dump(Agent *a) {
        _cleanup_(cJSON_Deletep) cJSON *j = cJSON_CreateObject();
        cJSON *cache, *targets, *units, *pub;

        if (!j || !a)
                return NULL;
        cache = cJSON_AddObjectToObject(j, "Cache");
        targets = cache ? cJSON_AddObjectToObject(cache, "TargetStates") : NULL;
        units = cJSON_AddObjectToObject(j, "Units");
        if (!targets || !units)
                return NULL;
        for (size_t i = 0; i < a->n_units; i++) {
                AgentUnit *u = a->units[i];
                cJSON *o;

                if (unit_owned(u))
                        cJSON_AddStringToObject(targets, u->name, fl_job_state_to_string(u->state));
                o = cJSON_AddObjectToObject(units, u->name);
                if (!o)
                        return NULL;
                cJSON_AddStringToObject(o, "hash", u->hash);
                cJSON_AddStringToObject(o, "state", fl_job_state_to_string(u->state));
                cJSON_AddBoolToObject(o, "adoptable", u->adoptable);
                if (u->load_state)
                        cJSON_AddStringToObject(o, "loadState", u->load_state);
                if (u->active_state)
                        cJSON_AddStringToObject(o, "activeState", u->active_state);
                if (u->sub_state)
                        cJSON_AddStringToObject(o, "subState", u->sub_state);
        }
        pub = fl_agent_pub_dump(&a->pub);
        if (pub) {
                cJSON *p = cJSON_AddObjectToObject(j, "UnitStatePublisher");
                if (p)
                        cJSON_AddItemToObject(p, "Cache", pub);
                else
                        cJSON_Delete(pub);
        }
        cJSON_AddStringToObject(j, "Systemd",
                                bus_usable(a) ? fl_systemd_bus_address(a->bus) : "disconnected");
        cJSON_AddStringToObject(j, "UnitsDirectory", a->units_dir);
        cJSON_AddBoolToObject(j, "Busy", a->busy);
        cJSON_AddBoolToObject(j, "Purging", a->purging);
        cJSON_AddBoolToObject(j, "RegistryReachable", fl_agent_pub_registry_ok(&a->pub));
        return cJSON_PrintUnformatted(j);
}
