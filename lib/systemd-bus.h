/* SPDX-License-Identifier: MIT */
/* systemd-bus.h: the agent's D-Bus connection to a systemd manager (spec §6.5, house style
 * §2 and §4.7). Everything is asynchronous on the caller's sd-event loop: a daemon never blocks
 * on systemd once its loop runs.
 *
 * On connect the bus installs its matches first (JobRemoved, PropertiesChanged under
 * /org/freedesktop/systemd1/unit, the local Disconnected signal) and then calls Subscribe, so a
 * state query issued afterwards (ListUnitsByNames) cannot miss a change: match first, then
 * query. Messages on one connection are processed in order, so callers may issue calls right
 * after fl_systemd_bus_new().
 *
 * Ownership: every pending call is owned by the SystemdBus. Freeing it cancels them; their
 * callbacks are then never called. Callbacks must not free the bus (defer that). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macro.h"

typedef struct SystemdBus SystemdBus;

typedef struct SystemdBusEvents {
        /* PropertiesChanged of org.freedesktop.systemd1.Unit for unit name: the values that
         * changed (NULL: not part of this signal). systemd announces ActiveState and SubState
         * this way; LoadState is constant per load and only comes from queries. */
        void (*unit_changed)(SystemdBus *b, const char *name, const char *load_state,
                             const char *active_state, const char *sub_state, void *userdata);
        /* A job of ours ended (JobRemoved): unit and systemd's result ("done", "failed", ...). */
        void (*job_removed)(SystemdBus *b, const char *unit, const char *result, void *userdata);
        /* The connection is gone (systemd restarted, bus died). Pending calls have failed or fail
         * with -ECONNRESET; the caller drops this bus (not from the callback) and connects anew. */
        void (*disconnected)(SystemdBus *b, void *userdata);
} SystemdBusEvents;

typedef enum SystemdBusKind {
        SYSTEMD_BUS_SYSTEM, /* the system bus; as root, systemd's private socket when it fails */
        SYSTEMD_BUS_USER,   /* a user manager: $DBUS_SESSION_BUS_ADDRESS, else (or when that
                             * fails) $XDG_RUNTIME_DIR/systemd/private */
} SystemdBusKind;

/* Connects, attaches to event and sets up matches and Subscribe. 0, or a negative errno when no
 * address could be connected to (-ENOENT: nothing listening / no address known, -ENOMEM, ...).
 * events and userdata are kept (events is copied). */
int fl_systemd_bus_new(sd_event *event, SystemdBusKind kind, const SystemdBusEvents *events, void *userdata,
                       SystemdBus **ret);
SystemdBus *fl_systemd_bus_free(SystemdBus *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(SystemdBus *, fl_systemd_bus_free);

/* The address in use ("unix:path=..."), for logs. */
const char *fl_systemd_bus_address(SystemdBus *b);
/* Subscribe succeeded: signals flow. */
bool fl_systemd_bus_subscribed(SystemdBus *b);
/* Calls still pending. */
size_t fl_systemd_bus_pending(SystemdBus *b);

/* Completion of a call: error is 0 or a negative errno (-ENOENT for systemd's NoSuchUnit,
 * -ECONNRESET when the connection went away, -ETIMEDOUT, -EIO for a failed job, ...); message
 * is systemd's error text or the job result (borrowed, may be NULL). */
typedef void (*SystemdDoneFn)(SystemdBus *b, int error, const char *message, void *userdata);

typedef struct SystemdUnitInfo {
        const char *name, *load_state, *active_state, *sub_state;
} SystemdUnitInfo;
/* units are borrowed for the duration of the callback. */
typedef void (*SystemdListFn)(SystemdBus *b, int error, const char *message, const SystemdUnitInfo *units,
                              size_t n_units, void *userdata);

/* Each returns 0 when the call was queued (done runs exactly once later, unless the bus is freed
 * first) or a negative errno (done never runs). */

/* LinkUnitFiles(paths, runtime, force) / EnableUnitFiles(paths, runtime, force):
 * absolute paths of unit files. */
int fl_systemd_link_unit_files_async(SystemdBus *b, char **paths, bool runtime, bool force,
                                     SystemdDoneFn done, void *userdata);
int fl_systemd_enable_unit_files_async(SystemdBus *b, char **paths, bool runtime, bool force,
                                       SystemdDoneFn done, void *userdata);
/* DisableUnitFiles(names, runtime). */
int fl_systemd_disable_unit_files_async(SystemdBus *b, char **names, bool runtime, SystemdDoneFn done,
                                        void *userdata);
/* Reload() (daemon-reload), with a long timeout: generators run again. */
int fl_systemd_reload_async(SystemdBus *b, SystemdDoneFn done, void *userdata);

/* StartUnit/StopUnit(name, mode). Without wait, done runs once the job is queued; with wait,
 * once its JobRemoved arrived: 0 for "done" (and "skipped"), else a negative errno with the
 * result as message (-ECANCELED canceled, -ETIMEDOUT timeout, -EIO failed/dependency/...). */
int fl_systemd_start_unit_async(SystemdBus *b, const char *name, const char *mode, bool wait,
                                SystemdDoneFn done, void *userdata);
int fl_systemd_stop_unit_async(SystemdBus *b, const char *name, const char *mode, bool wait,
                               SystemdDoneFn done, void *userdata);
int fl_systemd_reset_failed_unit_async(SystemdBus *b, const char *name, SystemdDoneFn done, void *userdata);

/* States of the named units: ListUnitsByNames (systemd >= 230; it also answers for units that
 * are not loaded), falling back to ListUnits filtered to names on older managers (units it does
 * not list are then absent from the answer). */
int fl_systemd_list_units_by_names_async(SystemdBus *b, char **names, SystemdListFn done, void *userdata);

/* Maps a job result string to 0 or a negative errno as described above. */
int fl_systemd_job_result_to_errno(const char *result);
