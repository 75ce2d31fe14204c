/* SPDX-License-Identifier: MIT */
/* ctl-driver.h: what fleetctl's commands need from the cluster, behind one small interface with
 * two implementations: the HTTP API (--driver=api, ctl-driver-api.c) and the etcd registry read
 * and written directly (--driver=etcd, ctl-driver-etcd.c). Every command runs through both.
 *
 * Entities are the API's (lib/api-client.h); the etcd driver converts its snapshot to them so
 * that both drivers report identical data (e.g. currentState of a global unit is NULL).
 * Every operation returns 0 or a negative errno; on failure d->error holds the message fleet
 * would print for it (owned by the driver, valid until the next call). -ENOENT from get_unit
 * and destroy_unit means "no such unit" and sets no message. */
#pragma once

#include "api-client.h"
#include "unit-file.h"

typedef struct CtlDriver CtlDriver;

typedef struct CtlDriverOps {
        const char *name;
        int (*list_units)(CtlDriver *d, ApiUnit **ret, size_t *ret_n);
        int (*get_unit)(CtlDriver *d, const char *name, ApiUnit *ret);
        /* Optional: get_unit for n names at once; the ones that exist, in any order. */
        int (*get_units)(CtlDriver *d, char *const *names, size_t n, ApiUnit **ret, size_t *ret_n);
        /* Optional: the names of the units, a cheap first look where most of the names asked
         * for are not expected to exist (a submit); get_units then reads the ones that do. A
         * name may be one being created or destroyed. A strv, in any order. */
        int (*list_names)(CtlDriver *d, char ***ret);
        /* unit: only that unit's states (NULL: all), sorted by (name, machine). */
        int (*list_states)(CtlDriver *d, const char *unit, ApiUnitState **ret, size_t *ret_n);
        /* Live machines sorted by ID. */
        int (*list_machines)(CtlDriver *d, ApiMachine **ret, size_t *ret_n);
        /* Create or overwrite a unit with desired state inactive (API PUT without
         * desiredState). */
        int (*create_unit)(CtlDriver *d, const char *name, const UnitFile *u);
        /* Optional: create_unit for names[i] with files[i], i < n, several at once. On failure
         * d->error is the message create_unit would have given for the lowest index that
         * failed, *ret_failed that index; nothing more is started after a failure, but units
         * after it may have been created by writes already under way. */
        int (*create_units)(CtlDriver *d, char *const *names, UnitFile *const *files, size_t n,
                            size_t *ret_failed);
        int (*set_target_state)(CtlDriver *d, const char *name, const char *state);
        int (*destroy_unit)(CtlDriver *d, const char *name);
        /* Optional: the machines as of the last read, without another request (the etcd
         * driver reads everything at once). -ENODATA when there is nothing to reuse. */
        int (*peek_machines)(CtlDriver *d, ApiMachine **ret, size_t *ret_n);
        void (*free)(CtlDriver *d);
} CtlDriverOps;

struct CtlDriver {
        const CtlDriverOps *ops;
        char *error;
        void *data;
};

/* Sets d->error (replacing the previous one) and returns -abs(err). */
int fl_ctl_driver_fail(CtlDriver *d, int err, const char *fmt, ...) _printf_(3, 4);
/* Takes ownership of msg (NULL: "out of memory"). */
int fl_ctl_driver_fail_take(CtlDriver *d, int err, char *msg);
CtlDriver *fl_ctl_driver_free(CtlDriver *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(CtlDriver *, fl_ctl_driver_free);

typedef struct Ctl Ctl;
/* Constructors; on failure they return a negative errno with *ret_error set to fleet's
 * message for "Unable to initialize client: <err>". */
int fl_ctl_driver_api_new(Ctl *c, CtlDriver **ret, char **ret_error);
int fl_ctl_driver_etcd_new(Ctl *c, CtlDriver **ret, char **ret_error);
