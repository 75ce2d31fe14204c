/* SPDX-License-Identifier: MIT */
/* test-systemd-bus.c: lib/systemd-bus against a real `systemd --user` manager started by
 * test/lib/systemd.sh (private mount namespace, own cgroup): write a unit, link, reload, start,
 * see it active through PropertiesChanged and `systemctl --user is-active`, stop, unload. Both
 * ways to reach a user manager are exercised: its private socket and the user bus. Skips when
 * the harness cannot run a manager here (not root, no systemd, ...). */
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "strv.h"
#include "systemd-bus.h"
#include "tests.h"

#define USEC_PER_SEC UINT64_C(1000000)

static char *harness;     /* path of test/lib/systemd.sh */
static char instance[64]; /* our manager's name, "" when none runs */
static char *skip_reason;
static char *session_address; /* DBUS_SESSION_BUS_ADDRESS of the manager's user bus, if any */
static char units_dir[PATH_MAX];
static sd_event *event;

/* ---- harness ---- */

static char *find_harness(void) {
        char exe[PATH_MAX], *p;
        ssize_t n;
        const char *top = getenv("FLEET_TOP");

        if (top) {
                if (asprintf(&p, "%s/test/lib/systemd.sh", top) >= 0 && access(p, R_OK) == 0)
                        return p;
        }
        if (access("test/lib/systemd.sh", R_OK) == 0)
                return realpath("test/lib/systemd.sh", NULL);
        /* BUILD/test/test-systemd-bus -> BUILD/../test/lib/systemd.sh */
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n > 0) {
                exe[n] = 0;
                for (int up = 0; up < 3; up++) {
                        char *slash = strrchr(exe, '/');
                        if (!slash)
                                break;
                        *slash = 0;
                        if (asprintf(&p, "%s/test/lib/systemd.sh", exe) >= 0 && access(p, R_OK) == 0)
                                return p;
                }
        }
        return NULL;
}

static void stop_manager(void) {
        _cleanup_free_ char *cmd = NULL;

        if (!instance[0])
                return;
        if (asprintf(&cmd, "bash '%s' stop '%s' >/dev/null 2>&1", harness, instance) >= 0)
                (void) system(cmd);
        instance[0] = 0;
}

/* Starts the manager and takes over its environment (XDG_RUNTIME_DIR, ...). */
static void start_manager(void) {
        _cleanup_free_ char *cmd = NULL, *env_path = NULL, *err = NULL;
        char line[PATH_MAX + 64];
        FILE *f;
        int status;

        harness = find_harness();
        if (!harness) {
                skip_reason = strdup("test/lib/systemd.sh not found (set FLEET_TOP)");
                return;
        }
        snprintf(instance, sizeof(instance), "tsb%d", (int) getpid());
        if (asprintf(&cmd, "bash '%s' start '%s' 2>&1", harness, instance) < 0)
                abort();
        f = popen(cmd, "r");
        if (!f)
                abort();
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = 0;
                if (line[0] == '/' && endswith(line, "/env")) {
                        free(env_path);
                        env_path = strdup(line);
                } else {
                        char *e = NULL;
                        if (asprintf(&e, "%s%s%s", strempty(err), err ? "; " : "", line) >= 0) {
                                free(err);
                                err = e;
                        }
                }
        }
        status = pclose(f);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !env_path) {
                if (asprintf(&skip_reason, "no systemd --user manager: %s", err ?: "harness failed") < 0)
                        abort();
                instance[0] = 0;
                return;
        }
        f = fopen(env_path, "r");
        if (!f)
                abort();
        unsetenv("DBUS_SESSION_BUS_ADDRESS");
        while (fgets(line, sizeof(line), f)) {
                char *kv = line, *eq;
                line[strcspn(line, "\n")] = 0;
                if (startswith(kv, "export "))
                        kv += strlen("export ");
                eq = strchr(kv, '=');
                if (!eq)
                        continue;
                *eq = 0;
                setenv(kv, eq + 1, 1);
        }
        fclose(f);
        session_address =
                getenv("DBUS_SESSION_BUS_ADDRESS") ? strdup(getenv("DBUS_SESSION_BUS_ADDRESS")) : NULL;
}

static int systemctl_user(const char *verb, const char *unit) {
        _cleanup_free_ char *cmd = NULL;
        int status;

        if (asprintf(&cmd, "env -u DBUS_SESSION_BUS_ADDRESS systemctl --user %s -q '%s' 2>/dev/null", verb,
                     unit) < 0)
                abort();
        status = system(cmd);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- loop helpers ---- */

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Runs the loop until *flag or the timeout; returns *flag. */
static bool run_until(const bool *flag, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        while (!*flag && now_usec() < end)
                if (sd_event_run(event, 100 * 1000) < 0)
                        break;
        return *flag;
}

typedef struct Result {
        bool done;
        int error;
        char *message;
        SystemdUnitInfo info; /* list: the first unit (strings copied) */
        size_t n;
} Result;

static void result_clear(Result *r) {
        free(r->message);
        free((char *) r->info.name);
        free((char *) r->info.load_state);
        free((char *) r->info.active_state);
        free((char *) r->info.sub_state);
        *r = (Result){};
}

static void on_done(SystemdBus *b, int error, const char *message, void *userdata) {
        Result *r = userdata;
        r->done = true;
        r->error = error;
        r->message = message ? strdup(message) : NULL;
}

static void on_list(SystemdBus *b, int error, const char *message, const SystemdUnitInfo *units, size_t n,
                    void *userdata) {
        Result *r = userdata;
        r->done = true;
        r->error = error;
        r->n = n;
        if (n > 0)
                r->info = (SystemdUnitInfo){strdup(units[0].name), strdup(units[0].load_state),
                                            strdup(units[0].active_state), strdup(units[0].sub_state)};
}

/* Live states seen through PropertiesChanged, for the unit under test. */
typedef struct Watch {
        const char *unit;
        char active[32], sub[32];
        unsigned changes;
        bool disconnected;
        unsigned jobs_removed;
} Watch;

static void ev_unit_changed(SystemdBus *b, const char *name, const char *load, const char *active,
                            const char *sub, void *userdata) {
        Watch *w = userdata;
        if (!w->unit || !streq(name, w->unit))
                return;
        if (active)
                snprintf(w->active, sizeof(w->active), "%s", active);
        if (sub)
                snprintf(w->sub, sizeof(w->sub), "%s", sub);
        w->changes++;
}

static void ev_job_removed(SystemdBus *b, const char *unit, const char *result, void *userdata) {
        Watch *w = userdata;
        w->jobs_removed++;
}

static void ev_disconnected(SystemdBus *b, void *userdata) {
        Watch *w = userdata;
        w->disconnected = true;
}

static const SystemdBusEvents events = {
        .unit_changed = ev_unit_changed,
        .job_removed = ev_job_removed,
        .disconnected = ev_disconnected,
};

static bool active_is(Watch *w, const char *want) {
        return streq(w->active, want);
}

static bool run_until_active(Watch *w, const char *want, uint64_t timeout_usec) {
        uint64_t end = now_usec() + timeout_usec;

        while (!active_is(w, want) && now_usec() < end)
                if (sd_event_run(event, 100 * 1000) < 0)
                        break;
        return active_is(w, want);
}

static int write_unit(const char *name, const char *text, char **ret_path) {
        _cleanup_free_ char *path = NULL;
        FILE *f;

        if (asprintf(&path, "%s/%s", units_dir, name) < 0)
                return -ENOMEM;
        f = fopen(path, "we");
        if (!f)
                return -errno;
        fputs(text, f);
        if (fclose(f) != 0)
                return -errno;
        *ret_path = TAKE_PTR(path);
        return 0;
}

#define CALL(r, expr)                                                                                       \
        do {                                                                                                \
                result_clear(&(r));                                                                         \
                ASSERT_OK(expr);                                                                            \
                if (!run_until(&(r).done, 30 * USEC_PER_SEC))                                               \
                        FAIL_AT("%s: no answer", #expr);                                                    \
        } while (0)

/* The whole life of a unit, over the bus opened with the environment as it is. */
static void unit_lifecycle(const char *tag) {
        _cleanup_(fl_systemd_bus_freep) SystemdBus *b = NULL;
        _cleanup_free_ char *name = NULL, *path = NULL;
        _cleanup_strv_free_ char **paths = NULL, **names = NULL;
        Watch w = {};
        Result r = {};

        if (asprintf(&name, "fltest-%s-%d.service", tag, (int) getpid()) < 0)
                abort();
        w.unit = name;
        ASSERT_OK(fl_systemd_bus_new(event, SYSTEMD_BUS_USER, &events, &w, &b));
        ASSERT_NOT_NULL(fl_systemd_bus_address(b));

        ASSERT_OK(write_unit(name, "[Service]\nExecStart=/bin/sleep 1000\n", &path));
        ASSERT_OK(fl_strv_extend(&paths, path));
        ASSERT_OK(fl_strv_extend(&names, name));

        CALL(r, fl_systemd_link_unit_files_async(b, paths, true, true, on_done, &r));
        ASSERT_OK(r.error);
        CALL(r, fl_systemd_reload_async(b, on_done, &r));
        ASSERT_OK(r.error);
        ASSERT_TRUE(fl_systemd_bus_subscribed(b));

        CALL(r, fl_systemd_list_units_by_names_async(b, names, on_list, &r));
        ASSERT_OK(r.error);
        ASSERT_EQ(r.n, 1);
        ASSERT_STREQ(r.info.name, name);
        ASSERT_STREQ(r.info.load_state, "loaded");
        ASSERT_STREQ(r.info.active_state, "inactive");

        /* Start and wait for the job; the new state arrives as PropertiesChanged. */
        CALL(r, fl_systemd_start_unit_async(b, name, "replace", true, on_done, &r));
        ASSERT_OK(r.error);
        ASSERT_STREQ(r.message, "done");
        if (!run_until_active(&w, "active", 10 * USEC_PER_SEC))
                FAIL_AT("PropertiesChanged never said active (last: '%s')", w.active);
        ASSERT_STREQ(w.sub, "running");
        ASSERT_EQ(systemctl_user("is-active", name), 0);
        ASSERT_TRUE(w.jobs_removed >= 1);

        /* Stop without waiting for the job: done when queued; the state still follows. */
        CALL(r, fl_systemd_stop_unit_async(b, name, "replace", false, on_done, &r));
        ASSERT_OK(r.error);
        if (!run_until_active(&w, "inactive", 10 * USEC_PER_SEC))
                FAIL_AT("PropertiesChanged never said inactive (last: '%s')", w.active);
        ASSERT_TRUE(systemctl_user("is-active", name) != 0);

        /* Unload: disable, reset-failed, delete the file, reload: systemd forgets the unit. */
        CALL(r, fl_systemd_disable_unit_files_async(b, names, true, on_done, &r));
        ASSERT_OK(r.error);
        CALL(r, fl_systemd_reset_failed_unit_async(b, name, on_done, &r));
        ASSERT_TRUE(r.error == 0 || r.error == -ENOENT);
        ASSERT_OK(unlink(path));
        CALL(r, fl_systemd_reload_async(b, on_done, &r));
        ASSERT_OK(r.error);
        CALL(r, fl_systemd_list_units_by_names_async(b, names, on_list, &r));
        ASSERT_OK(r.error);
        ASSERT_EQ(r.n, 1);
        ASSERT_STREQ(r.info.load_state, "not-found");
        ASSERT_EQ(fl_systemd_bus_pending(b), 0);
        result_clear(&r);
}

TEST(lifecycle_private_socket) {
        if (skip_reason)
                SKIP(skip_reason);
        /* Without a bus address the user manager's private socket is used. */
        unsetenv("DBUS_SESSION_BUS_ADDRESS");
        unit_lifecycle("priv");
}

TEST(lifecycle_user_bus) {
        if (skip_reason)
                SKIP(skip_reason);
        if (!session_address)
                SKIP("the manager started no user dbus");
        setenv("DBUS_SESSION_BUS_ADDRESS", session_address, 1);
        unit_lifecycle("bus");
        unsetenv("DBUS_SESSION_BUS_ADDRESS");
}

TEST(bad_session_address_falls_back) {
        _cleanup_(fl_systemd_bus_freep) SystemdBus *b = NULL;

        if (skip_reason)
                SKIP(skip_reason);
        setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus", 1);
        ASSERT_OK(fl_systemd_bus_new(event, SYSTEMD_BUS_USER, NULL, NULL, &b));
        ASSERT_TRUE(endswith(fl_systemd_bus_address(b), "/systemd/private"));
        unsetenv("DBUS_SESSION_BUS_ADDRESS");
}

/* The system-bus code path, pointed at the user manager's bus through DBUS_SYSTEM_BUS_ADDRESS. */
TEST(system_kind_uses_bus_address) {
        _cleanup_(fl_systemd_bus_freep) SystemdBus *b = NULL;
        Result r = {};

        if (skip_reason)
                SKIP(skip_reason);
        if (!session_address)
                SKIP("the manager started no user dbus");
        setenv("DBUS_SYSTEM_BUS_ADDRESS", session_address, 1);
        ASSERT_OK(fl_systemd_bus_new(event, SYSTEMD_BUS_SYSTEM, NULL, NULL, &b));
        unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
        ASSERT_STREQ(fl_systemd_bus_address(b), session_address);
        CALL(r, fl_systemd_list_units_by_names_async(b, (char *[]){(char *) "default.target", NULL}, on_list,
                                                     &r));
        ASSERT_OK(r.error);
        ASSERT_STREQ(r.info.active_state, "active");
        result_clear(&r);
}

TEST(errors) {
        _cleanup_(fl_systemd_bus_freep) SystemdBus *b = NULL;
        _cleanup_free_ char *name = NULL, *path = NULL;
        _cleanup_strv_free_ char **paths = NULL, **names = NULL;
        Watch w = {};
        Result r = {};

        if (skip_reason)
                SKIP(skip_reason);
        ASSERT_OK(fl_systemd_bus_new(event, SYSTEMD_BUS_USER, &events, &w, &b));

        /* No such unit: -ENOENT with systemd's message. */
        CALL(r, fl_systemd_start_unit_async(b, "fltest-nonexistent.service", "replace", true, on_done, &r));
        ASSERT_ERR(r.error, -ENOENT);
        ASSERT_NOT_NULL(r.message);

        /* A failing oneshot: the job fails (-EIO, "failed"), the unit is failed; reset-failed
         * clears that. */
        if (asprintf(&name, "fltest-fail-%d.service", (int) getpid()) < 0)
                abort();
        w.unit = name;
        ASSERT_OK(write_unit(name, "[Service]\nType=oneshot\nExecStart=/bin/false\n", &path));
        ASSERT_OK(fl_strv_extend(&paths, path));
        ASSERT_OK(fl_strv_extend(&names, name));
        CALL(r, fl_systemd_link_unit_files_async(b, paths, true, true, on_done, &r));
        ASSERT_OK(r.error);
        CALL(r, fl_systemd_reload_async(b, on_done, &r));
        ASSERT_OK(r.error);
        CALL(r, fl_systemd_start_unit_async(b, name, "replace", true, on_done, &r));
        ASSERT_ERR(r.error, -EIO);
        ASSERT_STREQ(r.message, "failed");
        ASSERT_TRUE(run_until_active(&w, "failed", 5 * USEC_PER_SEC));
        CALL(r, fl_systemd_reset_failed_unit_async(b, name, on_done, &r));
        ASSERT_OK(r.error);
        ASSERT_TRUE(run_until_active(&w, "inactive", 5 * USEC_PER_SEC));

        /* Enabling a unit with [Install]: runtime enablement works on a user manager. */
        ASSERT_OK(unlink(path));
        path = mfree(path);
        ASSERT_OK(write_unit(name,
                             "[Service]\nExecStart=/bin/sleep 1000\n\n[Install]\nWantedBy=default.target\n",
                             &path));
        CALL(r, fl_systemd_enable_unit_files_async(b, paths, true, true, on_done, &r));
        ASSERT_OK(r.error);
        ASSERT_EQ(systemctl_user("is-enabled", name), 0);
        CALL(r, fl_systemd_disable_unit_files_async(b, names, true, on_done, &r));
        ASSERT_OK(r.error);
        ASSERT_OK(unlink(path));
        CALL(r, fl_systemd_reload_async(b, on_done, &r));
        ASSERT_OK(r.error);

        /* Several names at once, one of them unknown to systemd. */
        ASSERT_OK(fl_strv_extend(&names, "fltest-nonexistent.service"));
        CALL(r, fl_systemd_list_units_by_names_async(b, names, on_list, &r));
        ASSERT_OK(r.error);
        ASSERT_EQ(r.n, 2);
        result_clear(&r);
}

/* Last: the manager goes away under a connected bus. */
TEST(disconnect) {
        _cleanup_(fl_systemd_bus_freep) SystemdBus *b = NULL;
        Watch w = {};
        Result r = {};

        if (skip_reason)
                SKIP(skip_reason);
        ASSERT_OK(fl_systemd_bus_new(event, SYSTEMD_BUS_USER, &events, &w, &b));
        CALL(r, fl_systemd_list_units_by_names_async(b, (char *[]){(char *) "default.target", NULL}, on_list,
                                                     &r));
        ASSERT_OK(r.error);
        ASSERT_STREQ(r.info.active_state, "active");
        stop_manager();
        ASSERT_TRUE(run_until(&w.disconnected, 10 * USEC_PER_SEC));
        ASSERT_FALSE(fl_systemd_bus_subscribed(b));
        ASSERT_ERR(fl_systemd_reload_async(b, on_done, &r), -ENOTCONN);
        result_clear(&r);
}

/* The manager must not outlive us, whatever ends the test. */
static void on_fatal_signal(int sig) {
        stop_manager();
        signal(sig, SIG_DFL);
        raise(sig);
}

static int setup(void) {
        snprintf(units_dir, sizeof(units_dir), "/tmp/fleet-test-sdbus.%d", (int) getpid());
        if (mkdir(units_dir, 0755) < 0)
                return -errno;
        if (sd_event_new(&event) < 0)
                return -1;
        signal(SIGTERM, on_fatal_signal);
        signal(SIGINT, on_fatal_signal);
        signal(SIGABRT, on_fatal_signal);
        signal(SIGSEGV, on_fatal_signal);
        start_manager();
        return 0;
}

static void teardown(void) {
        _cleanup_free_ char *cmd = NULL;

        stop_manager();
        if (asprintf(&cmd, "rm -rf '%s'", units_dir) >= 0)
                (void) system(cmd);
        sd_event_unref(event);
}

static const TestCase cases[] = {
        T(lifecycle_private_socket),
        T(lifecycle_user_bus),
        T(bad_session_address_falls_back),
        T(system_kind_uses_bus_address),
        T(errors),
        T(disconnect),
};
int fl_test_failed_;
const char *fl_test_skip_;

int main(int argc, char **argv) {
        int r;

        if (setup() < 0) {
                fprintf(stderr, "setup failed\n");
                return 1;
        }
        r = fl_test_run(cases, ELEMENTSOF(cases), argc, argv);
        teardown();
        return r;
}
