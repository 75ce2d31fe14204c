/* SPDX-License-Identifier: MIT */
/* systemd-bus.c: async sd-bus client of the systemd manager for the agent. */
#include <stdio.h>

#include "log.h"
#include "strv.h"
#include "systemd-bus.h"

#define SD_DESTINATION "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"
#define SD_UNIT_IFACE "org.freedesktop.systemd1.Unit"
#define SD_UNIT_PATH_PREFIX "/org/freedesktop/systemd1/unit"
#define SD_ERROR_NO_SUCH_UNIT "org.freedesktop.systemd1.NoSuchUnit"
#define SD_ERROR_UNIT_MASKED "org.freedesktop.systemd1.UnitMasked"

#define USEC_PER_SEC UINT64_C(1000000)
/* Reload re-runs generators and re-reads every unit: systemctl gives it twice the default. */
#define RELOAD_TIMEOUT_USEC (90 * USEC_PER_SEC)
#define CALL_TIMEOUT_USEC (30 * USEC_PER_SEC)

typedef enum CallKind {
        CALL_PLAIN,         /* reply content ignored */
        CALL_JOB,           /* reply is a job path; then JobRemoved */
        CALL_LIST,          /* ListUnitsByNames */
        CALL_LIST_FALLBACK, /* ListUnits, filtered to names */
} CallKind;

typedef struct SystemdCall {
        SystemdBus *bus;
        sd_bus_slot *slot;
        CallKind kind;
        const char *method; /* static */
        bool wait;          /* CALL_JOB: done only at JobRemoved */
        bool done_called;   /* CALL_JOB without wait: reported when queued, now only watched */
        char *job_path;     /* CALL_JOB: once queued */
        char **names;       /* CALL_LIST*: the names asked for */
        SystemdDoneFn done;
        SystemdListFn list_done;
        void *userdata;
        struct SystemdCall *prev, *next;
} SystemdCall;

struct SystemdBus {
        sd_event *event;
        sd_bus *bus;
        char *address;
        bool bus_client;
        bool subscribed;
        bool disconnected;
        SystemdBusEvents events;
        void *userdata;
        sd_bus_slot *match_job_removed, *match_properties, *match_disconnected, *subscribe_slot;
        SystemdCall *calls;
        size_t n_calls;
};

/* ---- calls ---- */

static SystemdCall *call_free(SystemdCall *c) {
        if (!c)
                return NULL;
        sd_bus_slot_unref(c->slot);
        free(c->job_path);
        fl_strv_free(c->names);
        free(c);
        return NULL;
}

static void call_unlink(SystemdCall *c) {
        SystemdBus *b = c->bus;

        if (c->prev)
                c->prev->next = c->next;
        else if (b->calls == c)
                b->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        b->n_calls--;
}

static SystemdCall *call_new(SystemdBus *b, CallKind kind, const char *method) {
        SystemdCall *c = new0(SystemdCall, 1);

        if (!c)
                return NULL;
        *c = (SystemdCall){.bus = b, .kind = kind, .method = method};
        c->next = b->calls;
        if (b->calls)
                b->calls->prev = c;
        b->calls = c;
        b->n_calls++;
        return c;
}

/* Reports the end of a call and frees it. The call is unlinked first: the callback may start
 * new calls. */
static void call_finish(SystemdCall *c, int error, const char *message, const SystemdUnitInfo *units,
                        size_t n) {
        SystemdBus *b = c->bus;

        call_unlink(c);
        if (c->list_done)
                c->list_done(b, error, message, units, n, c->userdata);
        else if (c->done && !c->done_called)
                c->done(b, error, message, c->userdata);
        call_free(c);
}

static int error_from_reply(SystemdBus *b, sd_bus_message *m) {
        const sd_bus_error *e = sd_bus_message_get_error(m);

        if (sd_bus_is_open(b->bus) <= 0)
                return -ECONNRESET;
        if (sd_bus_error_has_name(e, SD_ERROR_NO_SUCH_UNIT))
                return -ENOENT;
        if (sd_bus_error_has_name(e, SD_ERROR_UNIT_MASKED))
                return -ERFKILL;
        return -abs(sd_bus_message_get_errno(m) ?: EIO);
}

int fl_systemd_job_result_to_errno(const char *result) {
        if (!result)
                return -EIO;
        if (streq(result, "done") || streq(result, "skipped"))
                return 0;
        if (streq(result, "canceled"))
                return -ECANCELED;
        if (streq(result, "timeout"))
                return -ETIMEDOUT;
        return -EIO; /* failed, dependency, invalid, assert, unsupported, collected, once */
}

static int parse_unit_list(sd_bus_message *m, char **filter, SystemdUnitInfo **ret, size_t *ret_n) {
        _cleanup_free_ SystemdUnitInfo *units = NULL;
        size_t n = 0, allocated = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(ssssssouso)");
        if (r < 0)
                return r;
        for (;;) {
                const char *name, *description, *load, *active, *sub;

                r = sd_bus_message_read(m, "(ssssssouso)", &name, &description, &load, &active, &sub, NULL,
                                        NULL, NULL, NULL, NULL);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (filter && !fl_strv_contains(filter, name))
                        continue;
                if (n == allocated) {
                        size_t na = MAX(allocated * 2, (size_t) 8);
                        SystemdUnitInfo *u = realloc(units, na * sizeof(SystemdUnitInfo));
                        if (!u)
                                return -ENOMEM;
                        units = u;
                        allocated = na;
                }
                units[n++] = (SystemdUnitInfo){name, load, active, sub};
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(units);
        *ret_n = n;
        return 0;
}

static int call_send(SystemdCall *c, sd_bus_message *m, uint64_t timeout_usec);
static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error);

/* ListUnitsByNames is systemd >= 230; older managers get ListUnits filtered to the names. */
static int list_fallback(SystemdCall *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        c->slot = sd_bus_slot_unref(c->slot);
        c->kind = CALL_LIST_FALLBACK;
        c->method = "ListUnits";
        r = sd_bus_message_new_method_call(c->bus->bus, &m, SD_DESTINATION, SD_PATH, SD_MANAGER,
                                           "ListUnits");
        if (r < 0)
                return r;
        return call_send(c, m, CALL_TIMEOUT_USEC);
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdCall *c = userdata;
        SystemdBus *b = c->bus;
        int r;

        c->slot = sd_bus_slot_unref(c->slot);

        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);

                if (c->kind == CALL_LIST && sd_bus_error_has_name(e, SD_BUS_ERROR_UNKNOWN_METHOD) &&
                    list_fallback(c) >= 0)
                        return 0;
                r = error_from_reply(b, m);
                log_debug("systemd %s failed: %s", c->method, e && e->message ? e->message : strerror(-r));
                call_finish(c, r, e ? e->message : NULL, NULL, 0);
                return 0;
        }

        switch (c->kind) {
        case CALL_PLAIN:
                call_finish(c, 0, NULL, NULL, 0);
                break;
        case CALL_JOB: {
                const char *path;

                r = sd_bus_message_read(m, "o", &path);
                if (r < 0) {
                        call_finish(c, r, "cannot parse job path", NULL, 0);
                        break;
                }
                c->job_path = strdup(path);
                if (!c->job_path) {
                        call_finish(c, -ENOMEM, NULL, NULL, 0);
                        break;
                }
                /* Without wait the caller hears now; the call stays to report JobRemoved. */
                if (!c->wait) {
                        c->done_called = true;
                        if (c->done)
                                c->done(b, 0, NULL, c->userdata);
                }
                break;
        }
        case CALL_LIST:
        case CALL_LIST_FALLBACK: {
                _cleanup_free_ SystemdUnitInfo *units = NULL;
                size_t n = 0;

                r = parse_unit_list(m, c->kind == CALL_LIST_FALLBACK ? c->names : NULL, &units, &n);
                if (r < 0)
                        call_finish(c, r, "cannot parse unit list", NULL, 0);
                else
                        call_finish(c, 0, NULL, units, n);
                break;
        }
        }
        return 0;
}

static int call_send(SystemdCall *c, sd_bus_message *m, uint64_t timeout_usec) {
        return sd_bus_call_async(c->bus->bus, &c->slot, m, on_reply, c, timeout_usec);
}

/* Builds Manager.<method>; the caller appends arguments. */
static int method_new(SystemdBus *b, const char *method, sd_bus_message **ret) {
        if (!b || !b->bus || b->disconnected)
                return -ENOTCONN;
        return sd_bus_message_new_method_call(b->bus, ret, SD_DESTINATION, SD_PATH, SD_MANAGER, method);
}

static int call_start(SystemdBus *b, sd_bus_message *m, CallKind kind, const char *method,
                      uint64_t timeout_usec, SystemdDoneFn done, SystemdListFn list_done, void *userdata,
                      SystemdCall **ret) {
        SystemdCall *c;
        int r;

        c = call_new(b, kind, method);
        if (!c)
                return -ENOMEM;
        c->done = done;
        c->list_done = list_done;
        c->userdata = userdata;
        r = call_send(c, m, timeout_usec);
        if (r < 0) {
                call_unlink(c);
                call_free(c);
                return r;
        }
        if (ret)
                *ret = c;
        return 0;
}

static int unit_files_call(SystemdBus *b, const char *method, char **files, int runtime, int force,
                           SystemdDoneFn done, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = method_new(b, method, &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append_strv(m, files);
        if (r < 0)
                return r;
        if (force >= 0)
                r = sd_bus_message_append(m, "bb", runtime, force);
        else
                r = sd_bus_message_append(m, "b", runtime);
        if (r < 0)
                return r;
        return call_start(b, m, CALL_PLAIN, method, CALL_TIMEOUT_USEC, done, NULL, userdata, NULL);
}

int fl_systemd_link_unit_files_async(SystemdBus *b, char **paths, bool runtime, bool force,
                                     SystemdDoneFn done, void *userdata) {
        return unit_files_call(b, "LinkUnitFiles", paths, runtime, force, done, userdata);
}

int fl_systemd_enable_unit_files_async(SystemdBus *b, char **paths, bool runtime, bool force,
                                       SystemdDoneFn done, void *userdata) {
        return unit_files_call(b, "EnableUnitFiles", paths, runtime, force, done, userdata);
}

int fl_systemd_disable_unit_files_async(SystemdBus *b, char **names, bool runtime, SystemdDoneFn done,
                                        void *userdata) {
        return unit_files_call(b, "DisableUnitFiles", names, runtime, -1, done, userdata);
}

int fl_systemd_reload_async(SystemdBus *b, SystemdDoneFn done, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = method_new(b, "Reload", &m);
        if (r < 0)
                return r;
        return call_start(b, m, CALL_PLAIN, "Reload", RELOAD_TIMEOUT_USEC, done, NULL, userdata, NULL);
}

static int job_call(SystemdBus *b, const char *method, const char *name, const char *mode, bool wait,
                    SystemdDoneFn done, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        SystemdCall *c;
        int r;

        r = method_new(b, method, &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "ss", name, mode);
        if (r < 0)
                return r;
        r = call_start(b, m, CALL_JOB, method, CALL_TIMEOUT_USEC, done, NULL, userdata, &c);
        if (r < 0)
                return r;
        c->wait = wait;
        return 0;
}

int fl_systemd_start_unit_async(SystemdBus *b, const char *name, const char *mode, bool wait,
                                SystemdDoneFn done, void *userdata) {
        return job_call(b, "StartUnit", name, mode, wait, done, userdata);
}

int fl_systemd_stop_unit_async(SystemdBus *b, const char *name, const char *mode, bool wait,
                               SystemdDoneFn done, void *userdata) {
        return job_call(b, "StopUnit", name, mode, wait, done, userdata);
}

int fl_systemd_reset_failed_unit_async(SystemdBus *b, const char *name, SystemdDoneFn done, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        r = method_new(b, "ResetFailedUnit", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", name);
        if (r < 0)
                return r;
        return call_start(b, m, CALL_PLAIN, "ResetFailedUnit", CALL_TIMEOUT_USEC, done, NULL, userdata,
                          NULL);
}

int fl_systemd_list_units_by_names_async(SystemdBus *b, char **names, SystemdListFn done, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_strv_free_ char **copy = NULL;
        SystemdCall *c;
        int r;

        STRV_FOREACH(n, names)
        if (fl_strv_extend(&copy, *n) < 0)
                return -ENOMEM;
        r = method_new(b, "ListUnitsByNames", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append_strv(m, names);
        if (r < 0)
                return r;
        r = call_start(b, m, CALL_LIST, "ListUnitsByNames", CALL_TIMEOUT_USEC, NULL, done, userdata, &c);
        if (r < 0)
                return r;
        c->names = TAKE_PTR(copy);
        return 0;
}

/* ---- signals ---- */

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdBus *b = userdata;
        const char *path, *unit, *result;
        uint32_t id;
        int r;

        r = sd_bus_message_read(m, "uoss", &id, &path, &unit, &result);
        if (r < 0) {
                log_debug("Cannot parse JobRemoved: %s", strerror(-r));
                return 0;
        }
        for (SystemdCall *c = b->calls; c; c = c->next) {
                if (c->kind != CALL_JOB || !c->job_path || !streq(c->job_path, path))
                        continue;
                if (b->events.job_removed)
                        b->events.job_removed(b, unit, result, b->userdata);
                call_finish(c, fl_systemd_job_result_to_errno(result), result, NULL, 0);
                break;
        }
        return 0;
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdBus *b = userdata;
        _cleanup_free_ char *name = NULL;
        const char *iface, *load = NULL, *active = NULL, *sub = NULL;
        int r;

        r = sd_bus_path_decode(sd_bus_message_get_path(m), SD_UNIT_PATH_PREFIX, &name);
        if (r <= 0)
                return 0;
        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || !streq(iface, SD_UNIT_IFACE))
                return 0;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                goto fail;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, **dst = NULL;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        goto fail;
                if (streq(key, "LoadState"))
                        dst = &load;
                else if (streq(key, "ActiveState"))
                        dst = &active;
                else if (streq(key, "SubState"))
                        dst = &sub;
                if (dst)
                        r = sd_bus_message_read(m, "v", "s", dst);
                else
                        r = sd_bus_message_skip(m, "v");
                if (r < 0)
                        goto fail;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        goto fail;
        }
        if (r < 0)
                goto fail;
        if ((load || active || sub) && b->events.unit_changed)
                b->events.unit_changed(b, name, load, active, sub, b->userdata);
        return 0;
fail:
        log_debug("Cannot parse PropertiesChanged of %s: %s", name, strerror(-r));
        return 0;
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdBus *b = userdata;

        if (b->disconnected)
                return 0;
        b->disconnected = true;
        b->subscribed = false;
        log_debug("Connection to systemd at %s lost", b->address);
        /* Method calls already failed (sd-bus answers them when it closes); jobs we wait for
         * will never see their JobRemoved. */
        for (;;) {
                SystemdCall *c = b->calls;
                if (!c)
                        break;
                call_finish(c, -ECONNRESET, "connection to systemd lost", NULL, 0);
        }
        if (b->events.disconnected)
                b->events.disconnected(b, b->userdata);
        return 0;
}

static int on_subscribed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdBus *b = userdata;

        b->subscribe_slot = sd_bus_slot_unref(b->subscribe_slot);
        if (sd_bus_message_is_method_error(m, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(m);
                log_debug("systemd Subscribe failed: %s", e ? e->message : "?");
                return 0;
        }
        b->subscribed = true;
        return 0;
}

/* ---- connection ---- */

/* D-Bus address value escaping: everything outside [-_/.\\A-Za-z0-9] as %XX. */
static char *address_escape(const char *s) {
        char *r = new (char, strlen(s) * 3 + 1), *p = r;

        if (!r)
                return NULL;
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    strchr("-_/.\\", c))
                        *p++ = (char) c;
                else
                        p += sprintf(p, "%%%02x", c);
        }
        *p = 0;
        return r;
}

static int bus_open(sd_event *event, const char *address, bool bus_client, sd_bus **ret) {
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sd_bus_set_address(bus, address);
        if (r < 0)
                return r;
        r = sd_bus_set_bus_client(bus, bus_client);
        if (r < 0)
                return r;
        (void) sd_bus_set_description(bus, "systemd");
        r = sd_bus_start(bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}

typedef struct Candidate {
        char *address;
        bool bus_client;
} Candidate;

static int candidates(SystemdBusKind kind, Candidate ret[2], size_t *ret_n) {
        size_t n = 0;

        if (kind == SYSTEMD_BUS_USER) {
                const char *session = getenv("DBUS_SESSION_BUS_ADDRESS"), *xdg = getenv("XDG_RUNTIME_DIR");

                if (!isempty(session)) {
                        ret[n].address = strdup(session);
                        ret[n++].bus_client = true;
                        if (!ret[n - 1].address)
                                return -ENOMEM;
                }
                if (!isempty(xdg)) {
                        _cleanup_free_ char *e = address_escape(xdg);
                        if (!e || asprintf(&ret[n].address, "unix:path=%s/systemd/private", e) < 0)
                                return -ENOMEM;
                        ret[n++].bus_client = false;
                }
        } else {
                const char *system = getenv("DBUS_SYSTEM_BUS_ADDRESS");

                ret[n].address = strdup(isempty(system) ? "unix:path=/run/dbus/system_bus_socket" : system);
                ret[n++].bus_client = true;
                if (!ret[n - 1].address)
                        return -ENOMEM;
                if (geteuid() == 0) {
                        ret[n].address = strdup("unix:path=/run/systemd/private");
                        ret[n++].bus_client = false;
                        if (!ret[n - 1].address)
                                return -ENOMEM;
                }
        }
        *ret_n = n;
        return n > 0 ? 0 : -ENOENT;
}

static int bus_setup(SystemdBus *b) {
        _cleanup_free_ char *match = NULL;
        const char *sender = b->bus_client ? SD_DESTINATION : NULL;
        int r;

        /* Matches first, then Subscribe: nothing systemd announces after our first query is lost. */
        r = sd_bus_match_signal_async(b->bus, &b->match_disconnected, "org.freedesktop.DBus.Local", NULL,
                                      "org.freedesktop.DBus.Local", "Disconnected", on_disconnected, NULL,
                                      b);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(b->bus, &b->match_job_removed, sender, SD_PATH, SD_MANAGER,
                                      "JobRemoved", on_job_removed, NULL, b);
        if (r < 0)
                return r;
        if (asprintf(&match,
                     "type='signal',%s%s%sinterface='org.freedesktop.DBus.Properties',member='"
                     "PropertiesChanged',"
                     "path_namespace='" SD_UNIT_PATH_PREFIX "'",
                     sender ? "sender='" : "", strempty(sender), sender ? "'," : "") < 0)
                return -ENOMEM;
        r = sd_bus_add_match_async(b->bus, &b->match_properties, match, on_properties_changed, NULL, b);
        if (r < 0)
                return r;
        return sd_bus_call_method_async(b->bus, &b->subscribe_slot, SD_DESTINATION, SD_PATH, SD_MANAGER,
                                        "Subscribe", on_subscribed, b, NULL);
}

int fl_systemd_bus_new(sd_event *event, SystemdBusKind kind, const SystemdBusEvents *events, void *userdata,
                       SystemdBus **ret) {
        _cleanup_(fl_systemd_bus_freep) SystemdBus *b = NULL;
        Candidate cand[2] = {};
        size_t n = 0;
        int r;

        b = new0(SystemdBus, 1);
        if (!b)
                return -ENOMEM;
        b->event = sd_event_ref(event);
        if (events)
                b->events = *events;
        b->userdata = userdata;

        r = candidates(kind, cand, &n);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                int k = bus_open(event, cand[i].address, cand[i].bus_client, &b->bus);
                if (k >= 0) {
                        b->address = TAKE_PTR(cand[i].address);
                        b->bus_client = cand[i].bus_client;
                        break;
                }
                log_debug("Cannot connect to systemd at %s: %s", cand[i].address, strerror(-k));
                if (k == -ENOMEM || i == n - 1)
                        r = k;
        }
        for (size_t i = 0; i < ELEMENTSOF(cand); i++)
                free(cand[i].address);
        if (r < 0)
                return r;

        r = bus_setup(b);
        if (r < 0)
                return r;
        log_debug("Connected to systemd at %s", b->address);
        *ret = TAKE_PTR(b);
        return 0;
}

SystemdBus *fl_systemd_bus_free(SystemdBus *b) {
        if (!b)
                return NULL;
        while (b->calls) {
                SystemdCall *c = b->calls;
                call_unlink(c);
                call_free(c);
        }
        sd_bus_slot_unref(b->match_job_removed);
        sd_bus_slot_unref(b->match_properties);
        sd_bus_slot_unref(b->match_disconnected);
        sd_bus_slot_unref(b->subscribe_slot);
        if (b->bus) {
                (void) sd_bus_detach_event(b->bus);
                /* Nothing we sent needs to arrive any more; do not block on a dead peer. */
                sd_bus_close(b->bus);
                sd_bus_unref(b->bus);
        }
        sd_event_unref(b->event);
        free(b->address);
        return mfree(b);
}

const char *fl_systemd_bus_address(SystemdBus *b) {
        return b ? b->address : NULL;
}

bool fl_systemd_bus_subscribed(SystemdBus *b) {
        return b && b->subscribed && !b->disconnected;
}

size_t fl_systemd_bus_pending(SystemdBus *b) {
        return b ? b->n_calls : 0;
}
