/* SPDX-License-Identifier: MIT */
/* ctl-units.c: submit, load, start, stop, unload, destroy, restart (spec §1.4-§1.6). They
 * share the lazy creation of units from local files or templates and the wait for units to
 * reach a state. Departures from fleet v1.0.0, on purpose:
 *   - every wait polls all units in one loop (250 ms), an attempt is 2 s as in fleet;
 *   - while a unit waits to be placed, the reason the engine recorded for not placing it
 *     (unschedulableReason) is shown, and the timeout error repeats it;
 *   - start waits up to --start-timeout (30 s) for systemd to report the unit active, instead
 *     of failing after 2 s; --no-block prints one "Triggered" line per unit;
 *   - restart really stops (waits for "loaded") before starting again, and restarts global
 *     units with systemctl on every machine running them;
 *   - stop/unload report a failure to set the target state instead of ignoring it;
 *   - destroy waits (unless --no-block) until the units are gone;
 *   - --replace of an instance uses the local template it was compared with;
 *   - up to 64 units are looked up with their GETs sent at once, more with one list request
 *     (fleet: one GET after the other); units are written several at once (a failed write
 *     reports the first unit in argument order that failed; writes already under way for
 *     later units may have happened) and waited for with the same lookups, one per poll;
 *   - units just created are not polled: they are inactive once written. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "buf.h"
#include "ctl.h"
#include "strv.h"
#include "unit-name.h"
#include "unit-options.h"

#define POLL_USEC (250ULL * 1000ULL)
#define ATTEMPT_USEC (2ULL * 1000ULL * 1000ULL)

/* ---- Local unit files ---- */

/* Reads and parses a local unit file. 0, -ENOENT if it does not exist, or another error with
 * *ret_error set. */
static int read_unit_file(const char *path, UnitFile **ret, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *data = NULL;
        size_t len = 0, cap = 0;
        struct stat st;
        int r;

        /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below). */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                r = -errno;
                if (r != -ENOENT)
                        *ret_error = fl_ctl_asprintf("open %s: %s", path, strerror(-r));
                return r;
        }
        if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
                *ret_error = fl_ctl_asprintf("read %s: is a directory", path);
                return -EISDIR;
        }
        /* A FIFO, socket or device (/dev/zero) is no unit file: refuse it rather than block
         * or read without end. */
        if (!S_ISREG(st.st_mode)) {
                *ret_error = fl_ctl_asprintf("read %s: not a regular file", path);
                return -EINVAL;
        }
        for (;;) {
                ssize_t n;

                if (len == cap) {
                        char *p;
                        if (cap > FL_UNIT_FILE_MAX) {
                                *ret_error = fl_ctl_asprintf("%s: unit file too large", path);
                                return -E2BIG;
                        }
                        cap = cap ? cap * 2 : 4096;
                        p = realloc(data, cap + 1);
                        if (!p)
                                return -ENOMEM;
                        data = p;
                }
                n = read(fd, data + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        *ret_error = fl_ctl_asprintf("read %s: %s", path, strerror(-r));
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        r = fl_unit_file_parse(data ?: "", len, ret, ret_error);
        if (r == -ENOMEM)
                return r;
        return r;
}

/* fleet's maybeAppendDefaultUnitType on the whole argument (a path keeps its directory). */
static char *arg_with_type(const char *arg) {
        _cleanup_free_ char *name = fl_unit_name_mangle(arg);

        if (!name)
                return NULL;
        if (endswith(arg, name))
                return strdup(arg);
        return fl_ctl_asprintf("%s.service", arg);
}

/* path.Join(path.Dir(arg), file). */
static char *sibling_path(const char *arg, const char *file) {
        const char *slash = strrchr(arg, '/');

        if (!slash)
                return strdup(file);
        return fl_ctl_asprintf("%.*s/%s", (int) (slash - arg), arg, file);
}

/* ---- The registry's units, read at once ---- */

/* Many units are looked up with one list request (a few with their GETs at once) instead of one
 * GET after the other; lookups bsearch the units sorted by name. */
typedef struct UnitIndex {
        ApiUnit *units;
        size_t n;
} UnitIndex;

static void unit_index_done(UnitIndex *ix) {
        fl_api_units_free(ix->units, ix->n);
        *ix = (UnitIndex) {};
}

static int cmp_unit_name(const void *a, const void *b) {
        return strcmp(((const ApiUnit *) a)->name, ((const ApiUnit *) b)->name);
}

/* Lists the units (replacing what ix held). On failure d->error says why. */
static int unit_index_load(CtlDriver *d, UnitIndex *ix) {
        ApiUnit *l = NULL;
        size_t n = 0;
        int r;

        r = d->ops->list_units(d, &l, &n);
        if (r < 0)
                return r;
        unit_index_done(ix);
        /* Servers list by name already; anything else is sorted here. */
        for (size_t i = 1; i < n; i++)
                if (strcmp(l[i - 1].name, l[i].name) > 0) {
                        qsort(l, n, sizeof(ApiUnit), cmp_unit_name);
                        break;
                }
        ix->units = l;
        ix->n = n;
        return 0;
}

/* Up to this many units are asked for one by one (all at once) rather than found in a list of the
 * whole registry: a few units of 10,000 cost a few requests instead of ~150 ms of listing. */
#define CTL_GET_MAX 64U

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool strv_sorted_contains(char *const *l, size_t n, const char *s) {
        return n > 0 && bsearch(&s, l, n, sizeof(char *), cmp_str);
}

/* Like unit_index_load(), but ix only needs to hold the units named (and, for instances, their
 * templates): few names are asked for with the driver's get_units when it has one. expect_new:
 * most names are not expected to exist (a submit), so with many names a list of the names in
 * the registry comes first and only the ones there are read (1,000 units submitted into 4,000:
 * 4,000 names listed instead of 4,000 whole units). */
static int unit_index_load_names(CtlDriver *d, char *const *names, size_t n, bool expect_new, UnitIndex *ix) {
        _cleanup_strv_free_ char **want = NULL, **have = NULL;
        size_t k = 0, u = 0;
        ApiUnit *l = NULL;
        size_t n_l = 0;
        int r;

        if (!d->ops->get_units || (n > 2 * CTL_GET_MAX && !(expect_new && d->ops->list_names)))
                return unit_index_load(d, ix);
        want = new0(char *, 2 * n + 1);
        if (!want)
                return fl_ctl_driver_fail(d, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                _cleanup_(fl_unit_name_info_done) UnitNameInfo info = {};

                want[k] = strdup(names[i]);
                if (!want[k])
                        return fl_ctl_driver_fail(d, -ENOMEM, "out of memory");
                k++;
                if (fl_unit_name_is_instance(names[i]) && fl_unit_name_info(names[i], &info) >= 0 &&
                    info.template_name) {
                        want[k] = strdup(info.template_name);
                        if (!want[k])
                                return fl_ctl_driver_fail(d, -ENOMEM, "out of memory");
                        k++;
                }
        }
        /* Each name once. */
        fl_strv_sort(want);
        for (size_t i = 0; i < k; i++)
                if (u > 0 && streq(want[i], want[u - 1]))
                        free(want[i]);
                else
                        want[u++] = want[i];
        for (size_t i = u; i < k; i++)
                want[i] = NULL;
        if (u > CTL_GET_MAX && expect_new && d->ops->list_names) {
                size_t n_have, kept = 0;

                r = d->ops->list_names(d, &have);
                if (r < 0)
                        return r;
                fl_strv_sort(have);
                n_have = fl_strv_length(have);
                for (size_t i = 0; i < u; i++)
                        if (strv_sorted_contains(have, n_have, want[i]))
                                want[kept++] = want[i];
                        else
                                want[i] = mfree(want[i]);
                for (size_t i = kept; i < u; i++)
                        want[i] = NULL;
                u = kept;
        }
        if (u > CTL_GET_MAX)
                return unit_index_load(d, ix);
        if (u > 0) {
                r = d->ops->get_units(d, want, u, &l, &n_l);
                if (r < 0)
                        return r;
        }
        unit_index_done(ix);
        if (n_l > 0)
                qsort(l, n_l, sizeof(ApiUnit), cmp_unit_name);
        ix->units = l;
        ix->n = n_l;
        return 0;
}

static const ApiUnit *unit_index_find(const UnitIndex *ix, const char *name) {
        ApiUnit key = { .name = (char *) name };

        if (!ix || ix->n == 0)
                return NULL;
        return bsearch(&key, ix->units, ix->n, sizeof(ApiUnit), cmp_unit_name);
}

/* A unit from ix when given, else by its own request (into *buf, which the caller owns).
 * 0 with *ret set, -ENOENT, or another error with d->error set. */
static int lookup_unit(CtlDriver *d, const UnitIndex *ix, const char *name, ApiUnit *buf, const ApiUnit **ret) {
        int r;

        if (ix) {
                *ret = unit_index_find(ix, name);
                return *ret ? 0 : -ENOENT;
        }
        r = d->ops->get_unit(d, name, buf);
        if (r < 0)
                return r;
        *ret = buf;
        return 0;
}

/* ---- Waiting ---- */

typedef struct Wait {
        const char *name;
        bool done;
        bool gone;             /* destroyed (by someone else) while we waited */
        uint64_t missing_since; /* not found since then; 0: found last time */
        char *machine_id;      /* where the unit ended up */
        char *reason;          /* last unschedulable reason shown */
} Wait;

static void waits_free(Wait *w, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(w[i].machine_id);
                free(w[i].reason);
        }
        free(w);
}

/* Effective attempts: -1 --no-block, 0 forever, else --block-attempts. */
static int block_attempts(Ctl *c) {
        if (c->no_block)
                return -1;
        return c->block_attempts > 0 ? c->block_attempts : 0;
}

/* "inactive" is never "on" a machine: a unit is inactive once the agent has unloaded it, which
 * may be a moment before the engine unschedules it (fleet then printed the machine it was
 * leaving, "Unit X inactive on M", now and then). */
static void print_reached(Ctl *c, const ApiUnit *u, const char *state) {
        _cleanup_free_ char *legend = NULL;

        if (!isempty(u->machine_id) && !streq(state, "inactive")) {
                const ApiMachine *m = fl_ctl_machine_cached(c, u->machine_id);
                if (m)
                        legend = fl_ctl_machine_legend(m->id, m->public_ip, false);
        }
        if (legend)
                printf("Unit %s %s on %s\n", u->name, state, legend);
        else
                printf("Unit %s %s\n", u->name, state);
        fflush(stdout);
}

/* Polls every unit of names until its state is `state` (global units: desired state), printing
 * "Unit <name> <state>[ on <machine>]" for each. attempts as block_attempts() (>= 0). Returns 0,
 * or -ETIMEDOUT (-ENOENT if the first failed unit was destroyed meanwhile) after logging "Error
 * waiting for units: ..." for every unit that timed out or disappeared; *ret_error then holds
 * the first error. ret_waits (optional) gets the per-unit results. */
static int wait_for_states(Ctl *c, CtlDriver *d, char *const *names, const char *state, int attempts,
                           Wait **ret_waits, char **ret_error) {
        size_t n = fl_strv_length(names), pending = n;
        uint64_t deadline = attempts > 0 ? fl_now_usec() + (uint64_t) attempts * ATTEMPT_USEC : 0;
        _cleanup_free_ char **pending_names = NULL;   /* borrowed from w */
        Wait *w;
        int r = 0;

        w = new0(Wait, n ?: 1);
        pending_names = new0(char *, n + 1);
        if (!w || !pending_names) {
                free(w);
                return log_oom();
        }
        for (size_t i = 0; i < n; i++)
                w[i].name = names[i];

        while (pending > 0) {
                _cleanup_(unit_index_done) UnitIndex ix = {};
                bool use_list = pending > 1;
                int list_r = 0;

                /* Several units: one list request per attempt (or, for a few, their GETs at
                 * once) rather than one GET after the other. */
                if (use_list) {
                        size_t k = 0;
                        for (size_t i = 0; i < n; i++)
                                if (!w[i].done && !w[i].gone)
                                        pending_names[k++] = (char *) w[i].name;
                        list_r = unit_index_load_names(d, pending_names, k, false, &ix);
                        if (list_r < 0)
                                log_debug("Error retrieving Units from Registry: %s", strempty(d->error));
                }
                for (size_t i = 0; i < n; i++) {
                        _cleanup_(fl_api_unit_done) ApiUnit buf = {};
                        const ApiUnit *u = NULL;
                        const char *have;
                        bool global;

                        if (w[i].done || w[i].gone)
                                continue;
                        r = list_r < 0 ? list_r : lookup_unit(d, use_list ? &ix : NULL, w[i].name, &buf, &u);
                        if (r < 0) {
                                if (!use_list || r == -ENOENT)
                                        log_debug("Error retrieving Unit(%s) from Registry: %s", w[i].name,
                                                  r == -ENOENT ? "not found" : strempty(d->error));
                                /* Not found for a whole attempt: it was destroyed meanwhile and
                                 * will never reach the state (fleet waited for it forever). */
                                if (r == -ENOENT && w[i].missing_since == 0)
                                        w[i].missing_since = fl_now_usec();
                                else if (r == -ENOENT && fl_now_usec() - w[i].missing_since >= ATTEMPT_USEC) {
                                        w[i].gone = true;
                                        pending--;
                                }
                                continue;
                        }
                        w[i].missing_since = 0;
                        global = fl_ctl_unit_is_global(u);
                        have = global ? u->desired_state : u->current_state;
                        if (streq_ptr(have, state)) {
                                w[i].done = true;
                                pending--;
                                free(w[i].machine_id);
                                w[i].machine_id = u->machine_id ? strdup(u->machine_id) : NULL;
                                /* A global unit has no current state of its own: say what we
                                 * waited for rather than fleet's "Unit x " with nothing. */
                                print_reached(c, u, global ? state : strempty(u->current_state));
                        } else if (!isempty(u->unschedulable) && !streq_ptr(u->unschedulable, w[i].reason)) {
                                log_warning("Unit %s cannot be scheduled: %s", w[i].name, u->unschedulable);
                                free(w[i].reason);
                                w[i].reason = strdup(u->unschedulable);
                        } else if (isempty(u->unschedulable))
                                w[i].reason = mfree(w[i].reason);
                }
                if (pending == 0)
                        break;
                if (deadline > 0 && fl_now_usec() >= deadline)
                        break;
                fl_ctl_sleep(POLL_USEC);
        }

        r = 0;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *e = NULL;

                if (w[i].done)
                        continue;
                if (w[i].gone)
                        e = fl_ctl_asprintf("unit %s no longer exists, so it will not report state %s", w[i].name,
                                            state);
                else if (w[i].reason)
                        e = fl_ctl_asprintf("timed out waiting for unit %s to report state %s: %s", w[i].name,
                                            state, w[i].reason);
                else
                        e = fl_ctl_asprintf("timed out waiting for unit %s to report state %s", w[i].name, state);
                log_error("Error waiting for units: %s", strempty(e));
                if (r == 0 && ret_error)
                        *ret_error = TAKE_PTR(e);
                if (r == 0)
                        r = w[i].gone ? -ENOENT : -ETIMEDOUT;
        }
        if (ret_waits)
                *ret_waits = w;
        else
                waits_free(w, n);
        return r;
}

/* fleet's tryWaitForUnitStates: with --no-block only "Triggered unit <name> <verb>". */
static int try_wait_for_states(Ctl *c, CtlDriver *d, char *const *names, const char *verb, const char *state,
                               Wait **ret_waits, char **ret_error) {
        int attempts = block_attempts(c);

        if (attempts < 0) {
                STRV_FOREACH(n, names)
                        printf("Triggered unit %s %s\n", *n, verb);
                return 0;
        }
        return wait_for_states(c, d, names, state, attempts, ret_waits, ret_error);
}

/* After start: systemd on the unit's machine must report it loaded and active. */
static int wait_for_active(Ctl *c, CtlDriver *d, char *const *names, Wait *waits, char **ret_error) {
        size_t n = fl_strv_length(names), pending = n;
        uint64_t deadline = c->start_timeout > 0 ? fl_now_usec() + (uint64_t) (c->start_timeout * 1e6) : 0;
        _cleanup_free_ bool *done = NULL;
        _cleanup_strv_free_ char **last = NULL;
        int r = 0;

        done = new0(bool, n ?: 1);
        last = new0(char *, n + 1);
        if (!done || !last)
                return log_oom();
        while (pending > 0) {
                for (size_t i = 0; i < n; i++) {
                        ApiUnitState *ss = NULL;
                        size_t k = 0;

                        if (done[i])
                                continue;
                        r = d->ops->list_states(d, names[i], &ss, &k);
                        if (r < 0) {
                                log_debug("Error getting unit state of %s: %s", names[i], strempty(d->error));
                                continue;
                        }
                        for (size_t j = 0; j < k; j++) {
                                const char *m = waits ? waits[i].machine_id : NULL;

                                if (!streq(ss[j].name, names[i]))
                                        continue;
                                if (m && !streq_ptr(ss[j].machine_id, m))
                                        continue;
                                free(last[i]);
                                last[i] = fl_ctl_asprintf("%s/%s", strempty(ss[j].active_state),
                                                          strempty(ss[j].sub_state));
                                if (streq_ptr(ss[j].active_state, "active") &&
                                    streq_ptr(ss[j].load_state, "loaded")) {
                                        done[i] = true;
                                        pending--;
                                        break;
                                }
                        }
                        fl_api_unit_states_free(ss, k);
                }
                if (pending == 0 || (deadline > 0 && fl_now_usec() >= deadline))
                        break;
                fl_ctl_sleep(POLL_USEC);
        }

        r = 0;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *e = NULL;

                if (done[i])
                        continue;
                if (last[i])
                        e = fl_ctl_asprintf("Failed to find an active unit %s within %gs (last state %s)", names[i],
                                            c->start_timeout, last[i]);
                else
                        e = fl_ctl_asprintf("Failed to find an active unit %s within %gs (no state reported)",
                                            names[i], c->start_timeout);
                log_error("Error waiting for units: %s", strempty(e));
                if (r == 0)
                        *ret_error = TAKE_PTR(e);
                r = -ETIMEDOUT;
        }
        return r;
}

/* ---- Lazy creation (§1.4) ---- */

typedef enum Command {
        CMD_SUBMIT,
        CMD_LOAD,
        CMD_START,
        CMD_OTHER,
} Command;

static Command command_of(Ctl *c) {
        if (streq(c->verb, "submit"))
                return CMD_SUBMIT;
        if (streq(c->verb, "load"))
                return CMD_LOAD;
        if (streq(c->verb, "start"))
                return CMD_START;
        return CMD_OTHER;
}

/* Compares the local file (or, for an instance, the local template next to it) with the unit
 * in the registry. Returns 1 different, 0 same, <0 when there is nothing local to compare
 * (*ret_error set). Warns about a difference unless --replace. */
static int local_unit_differs(Ctl *c, const char *file, const ApiUnit *u, char **ret_error) {
        _cleanup_(fl_unit_file_freep) UnitFile *local = NULL;
        _cleanup_(fl_unit_name_info_done) UnitNameInfo info = {};
        _cleanup_free_ char *tpl_path = NULL, *base = NULL;
        int r;

        r = read_unit_file(file, &local, ret_error);
        if (r >= 0) {
                bool same = fl_unit_file_equal(local, u->file);
                if (!same && !c->replace)
                        log_warning("WARNING: Unit %s in registry differs from local unit file %s. Add --replace to override.",
                                    u->name, file);
                return !same;
        }
        if (r == -ENOMEM)
                return log_oom();
        *ret_error = mfree(*ret_error);

        base = fl_unit_name_mangle(file);
        if (!base)
                return log_oom();
        if (fl_unit_name_info(base, &info) < 0) {
                *ret_error = fl_ctl_asprintf("error extracting information from unit name %s", file);
                return -EINVAL;
        }
        if (!fl_unit_name_is_instance(base)) {
                *ret_error = fl_ctl_asprintf("error Unit %s does not seem to be a template unit", file);
                return -EINVAL;
        }
        tpl_path = sibling_path(file, info.template_name);
        if (!tpl_path)
                return log_oom();
        r = read_unit_file(tpl_path, &local, ret_error);
        if (r < 0) {
                if (r == -ENOENT)
                        *ret_error = fl_ctl_asprintf("stat %s: no such file or directory", tpl_path);
                return r;
        }
        {
                bool same = fl_unit_file_equal(local, u->file);
                if (!same && !c->replace)
                        log_warning("WARNING: Unit %s in registry differs from local template unit file %s. Add --replace to override.",
                                    u->name, tpl_path);
                return !same;
        }
}

/* fleet's checkUnitCreation: 1 to create the unit, 0 to leave it, <0 error (*ret_error). */
static int check_unit_creation(Ctl *c, CtlDriver *d, const UnitIndex *ix, const char *arg, const char *name,
                               char **ret_error) {
        _cleanup_(fl_api_unit_done) ApiUnit buf = {};
        _cleanup_free_ char *error = NULL;
        const ApiUnit *u;
        int r;

        r = lookup_unit(d, ix, name, &buf, &u);
        if (r == -ENOENT)
                return 1;
        if (r < 0) {
                *ret_error = fl_ctl_asprintf("error retrieving Unit(%s) from Registry: %s", name, strempty(d->error));
                return r;
        }

        r = local_unit_differs(c, arg, u, &error);
        if (!c->replace) {
                if (r == 0)
                        log_debug("Found same Unit(%s) in Registry, no need to recreate it", name);
                return 0;
        }
        if (r < 0) {
                *ret_error = TAKE_PTR(error);
                return r;
        }
        if (r == 0) {
                printf("Found same Unit(%s) in Registry, nothing to do\n", name);
                return 0;
        }
        {
                Command cmd = command_of(c);
                const char *ds = strempty(u->desired_state);
                bool ok = streq(ds, "inactive") || (cmd >= CMD_LOAD && streq(ds, "loaded")) ||
                          (cmd == CMD_START && streq(ds, "launched"));

                if (cmd == CMD_OTHER) {
                        *ret_error = strdup("error: replacing units is not supported in this context");
                        return -EINVAL;
                }
                if (!ok) {
                        log_warning("Warning: can not replace Unit(%s) in state '%s', use the appropriate command",
                                    name, ds);
                        return 0;
                }
        }
        return 1;
}

/* The units of a batch validated so far, not written yet. */
typedef struct Batch {
        char **names;
        UnitFile **files;
        size_t n;
        size_t *templates;     /* indexes of the templates among them */
        size_t n_templates;
} Batch;

/* fleet's getUnitFile: the local file, else for an instance the template from the registry,
 * else the local template next to the argument. A template earlier in the same batch (validated,
 * not written yet) counts as being in the registry, as it would be once written. ix: the
 * registry's units when listed beforehand (NULL: ask for the template). */
static int get_unit_file(CtlDriver *d, Ctl *c, const UnitIndex *ix, const char *arg, const char *name,
                         const Batch *batch, UnitFile **ret, char **ret_error) {
        _cleanup_(fl_unit_name_info_done) UnitNameInfo info = {};
        _cleanup_(fl_api_unit_done) ApiUnit buf = {};
        _cleanup_free_ char *error = NULL, *tpl_path = NULL;
        const ApiUnit *tpl = NULL;
        int r;

        r = read_unit_file(arg, ret, &error);
        if (r >= 0)
                return 0;
        if (r != -ENOENT) {
                *ret_error = fl_ctl_asprintf("failed getting Unit(%s) from file: %s", arg, strempty(error));
                return r;
        }
        if (fl_unit_name_info(name, &info) < 0) {
                *ret_error = fl_ctl_asprintf("error extracting information from unit name %s", name);
                return -EINVAL;
        }
        if (!fl_unit_name_is_instance(name)) {
                *ret_error = fl_ctl_asprintf("unable to find Unit(%s) in Registry or on filesystem", name);
                return -ENOENT;
        }

        tpl_path = sibling_path(arg, info.template_name);
        if (!tpl_path)
                return log_oom();
        /* --replace compared the unit with the local template, so that is what replaces it
         * (fleet took the registry's template here, making --replace of instances a no-op). */
        if (c->replace) {
                error = mfree(error);
                r = read_unit_file(tpl_path, ret, &error);
                if (r >= 0)
                        return 0;
                if (r != -ENOENT) {
                        *ret_error = fl_ctl_asprintf("failed getting Unit(%s) from template: unable to load template Unit(%s) from file: %s",
                                                     arg, info.template_name, strempty(error));
                        return r;
                }
        }

        for (size_t i = 0; i < batch->n_templates; i++) {
                size_t k = batch->templates[i];
                if (streq(batch->names[k], info.template_name))
                        return fl_unit_file_dup(batch->files[k], ret) < 0 ? log_oom() : 0;
        }

        r = lookup_unit(d, ix, info.template_name, &buf, &tpl);
        if (r < 0 && r != -ENOENT) {
                *ret_error = fl_ctl_asprintf("failed getting Unit(%s) from template: error retrieving template Unit(%s) from Registry: %s",
                                             arg, info.template_name, strempty(d->error));
                return r;
        }
        if (r >= 0) {
                (void) local_unit_differs(c, arg, tpl, &error);
                r = fl_unit_file_dup(tpl->file, ret);
                return r < 0 ? log_oom() : 0;
        }

        error = mfree(error);
        r = read_unit_file(tpl_path, ret, &error);
        if (r == -ENOENT) {
                *ret_error = fl_ctl_asprintf("failed getting Unit(%s) from template: unable to find template Unit(%s) in Registry or on filesystem",
                                             arg, info.template_name);
                return r;
        }
        if (r < 0) {
                *ret_error = fl_ctl_asprintf("failed getting Unit(%s) from template: unable to load template Unit(%s) from file: %s",
                                             arg, info.template_name, strempty(error));
                return r;
        }
        return 0;
}

/* The API's checks of fleet's createUnit, so both drivers refuse the same units. arg is where
 * the unit came from (named in the error when it is not the unit name itself). */
static int validate_unit(const char *arg, const char *name, const UnitFile *u, char **ret_error) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements req = {};
        _cleanup_free_ char *msg = NULL;
        int r;

        r = fl_unit_name_validate(name, &msg);
        if (r >= 0)
                r = fl_unit_options_validate(u, NULL, &msg);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                if (streq(arg, name))
                        *ret_error = fl_ctl_asprintf("failed creating unit %s: %s", name, strempty(msg));
                else
                        *ret_error = fl_ctl_asprintf("failed creating unit %s (%s): %s", name, arg, strempty(msg));
                return r;
        }
        if (fl_unit_requirements_parse(u, name, &req) >= 0)
                STRV_FOREACH(k, req.unknown_keys)
                        log_warning("Unit %s: unrecognized requirement in [X-Fleet] section: \"%s\"", name, *k);
        return 0;
}

static int create_unit(CtlDriver *d, const char *name, const UnitFile *u, char **ret_error) {
        int r;

        r = d->ops->create_unit(d, name, u);
        if (r < 0) {
                *ret_error = fl_ctl_asprintf("failed creating unit %s: %s", name, strempty(d->error));
                return r;
        }
        log_debug("Created Unit(%s) in Registry", name);
        return 0;
}

/* Creates the batch's units: several at once when the driver can, else one by one. */
static int create_units(CtlDriver *d, const Batch *batch, char **ret_error) {
        size_t failed = 0;
        int r;

        if (batch->n > 1 && d->ops->create_units) {
                r = d->ops->create_units(d, batch->names, batch->files, batch->n, &failed);
                if (r < 0) {
                        *ret_error = fl_ctl_asprintf("failed creating unit %s: %s", batch->names[failed],
                                                     strempty(d->error));
                        return r;
                }
                for (size_t i = 0; i < batch->n; i++)
                        log_debug("Created Unit(%s) in Registry", batch->names[i]);
                return 0;
        }
        for (size_t i = 0; i < batch->n; i++) {
                r = create_unit(d, batch->names[i], batch->files[i], ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int cmp_arg_name(const void *a, const void *b, void *userdata) {
        char **names = userdata;
        size_t x = *(const size_t *) a, y = *(const size_t *) b;
        int k = strcmp(names[x], names[y]);

        return k != 0 ? k : x < y ? -1 : x > y;
}

/* fleet's lazyCreateUnits. Logs "Error creating units: <err>" itself; <0 on failure. Unlike
 * fleet, every argument is read, parsed and validated before the first unit is written: one
 * bad file among several creates none of them. With several units, the registry is asked once
 * for all of them (their GETs at once, or one list for many) instead of about each in turn,
 * they are written several at once, and the new units are not polled for their (known) state
 * afterwards. */
static int lazy_create_units(Ctl *c, CtlDriver *d, char **args) {
        _cleanup_strv_free_ char **arg_names = NULL;
        _cleanup_(unit_index_done) UnitIndex ix = {};
        _cleanup_free_ size_t *order = NULL, *first = NULL;
        _cleanup_free_ bool *added = NULL;
        size_t n_args = fl_strv_length(args), n_unique = 0;
        Batch batch = {};
        int r = 0;

        arg_names = new0(char *, n_args + 1);
        order = new(size_t, n_args ?: 1);
        first = new(size_t, n_args ?: 1);
        added = new0(bool, n_args ?: 1);
        batch.names = new0(char *, n_args + 1);
        batch.files = new0(UnitFile *, n_args + 1);
        batch.templates = new(size_t, n_args ?: 1);
        if (!arg_names || !order || !first || !added || !batch.names || !batch.files || !batch.templates) {
                r = log_oom();
                goto finish;
        }
        /* A unit named twice is created from its first mention (a later one is looked at
         * again only when the first created nothing). */
        for (size_t i = 0; i < n_args; i++) {
                arg_names[i] = fl_unit_name_mangle(args[i]);
                if (!arg_names[i]) {
                        r = log_oom();
                        goto finish;
                }
                order[i] = i;
        }
        qsort_r(order, n_args, sizeof(size_t), cmp_arg_name, arg_names);
        for (size_t i = 0; i < n_args; i++)
                if (i > 0 && streq(arg_names[order[i]], arg_names[order[i - 1]]))
                        first[order[i]] = first[order[i - 1]];
                else {
                        first[order[i]] = order[i];
                        n_unique++;
                }

        if (n_unique > 1) {
                r = unit_index_load_names(d, arg_names, n_args, true, &ix);
                if (r < 0) {
                        const char *first = NULL;
                        for (size_t i = 0; !first && i < n_args; i++)
                                first = arg_names[i];
                        r = log_error_errno(r, "Error creating units: error retrieving Unit(%s) from Registry: %s",
                                            strempty(first), strempty(d->error));
                        goto finish;
                }
        }

        for (size_t i = 0; i < n_args; i++) {
                _cleanup_(fl_unit_file_freep) UnitFile *uf = NULL;
                _cleanup_free_ char *arg = NULL, *error = NULL;
                const char *name = arg_names[i];

                if (added[first[i]])
                        continue;
                arg = arg_with_type(args[i]);
                if (!arg) {
                        r = log_oom();
                        goto finish;
                }
                r = check_unit_creation(c, d, n_unique > 1 ? &ix : NULL, arg, name, &error);
                if (r == 0)
                        continue;
                if (r > 0)
                        r = get_unit_file(d, c, n_unique > 1 ? &ix : NULL, arg, name, &batch, &uf, &error);
                if (r >= 0)
                        r = validate_unit(arg, name, uf, &error);
                if (r < 0) {
                        r = log_error_errno(r, "Error creating units: %s", strempty(error));
                        goto finish;
                }
                batch.names[batch.n] = strdup(name);
                if (!batch.names[batch.n]) {
                        r = log_oom();
                        goto finish;
                }
                added[i] = true;
                if (fl_unit_name_is_template(name))
                        batch.templates[batch.n_templates++] = batch.n;
                batch.files[batch.n++] = TAKE_PTR(uf);
        }
        r = 0;
        /* What the registry held is stale once we write. */
        unit_index_done(&ix);

        if (batch.n > 0) {
                _cleanup_free_ char *error = NULL;

                r = create_units(d, &batch, &error);
                if (r < 0) {
                        r = log_error_errno(r, "Error creating units: %s", strempty(error));
                        goto finish;
                }
                /* fleet polls every unit it created until it reads "inactive", and only then
                 * says so. A unit created without a desired state is inactive the moment the
                 * write succeeds (nothing schedules it), so the poll could only ever answer
                 * that (at 1,000 units it cost one more list of the whole registry). */
                for (size_t i = 0; i < batch.n; i++)
                        printf("Unit %s inactive\n", batch.names[i]);
                fflush(stdout);
        }
finish:
        for (size_t i = 0; i < batch.n; i++)
                fl_unit_file_free(batch.files[i]);
        free(batch.files);
        fl_strv_free(batch.names);
        free(batch.templates);
        return r < 0 ? r : 0;
}

/* ---- Finding units ---- */

static int unit_copy(const ApiUnit *src, ApiUnit *ret) {
        ApiUnit u = {
                .name = strdup(strempty(src->name)),
                .desired_state = src->desired_state ? strdup(src->desired_state) : NULL,
                .current_state = src->current_state ? strdup(src->current_state) : NULL,
                .machine_id = src->machine_id ? strdup(src->machine_id) : NULL,
                .unschedulable = src->unschedulable ? strdup(src->unschedulable) : NULL,
        };

        if (!u.name || (src->desired_state && !u.desired_state) || (src->current_state && !u.current_state) ||
            (src->machine_id && !u.machine_id) || (src->unschedulable && !u.unschedulable) ||
            (src->file ? fl_unit_file_dup(src->file, &u.file) : fl_unit_file_new(&u.file)) < 0) {
                fl_api_unit_done(&u);
                return -ENOMEM;
        }
        *ret = u;
        return 0;
}

/* fleet's findUnits: the units of the registry named by the arguments, in argument order;
 * names not in the registry are skipped. */
static int find_units(CtlDriver *d, char **args, ApiUnit **ret, size_t *ret_n) {
        _cleanup_strv_free_ char **names = NULL;
        size_t n_args = fl_strv_length(args), n = 0;
        UnitIndex ix = {};
        ApiUnit *out;
        int r;

        names = new0(char *, n_args + 1);
        if (!names)
                return log_oom();
        for (size_t i = 0; i < n_args; i++) {
                names[i] = fl_unit_name_mangle(args[i]);
                if (!names[i])
                        return log_oom();
        }
        r = unit_index_load_names(d, names, n_args, false, &ix);
        if (r < 0)
                return log_error_errno(r, "%s", strempty(d->error));
        out = new0(ApiUnit, n_args + 1);
        if (!out) {
                unit_index_done(&ix);
                return log_oom();
        }
        for (size_t i = 0; i < n_args; i++) {
                const ApiUnit *u = unit_index_find(&ix, names[i]);

                if (u) {
                        r = unit_copy(u, &out[n]);
                        if (r < 0)
                                break;
                        n++;
                }
        }
        unit_index_done(&ix);
        if (r < 0) {
                fl_api_units_free(out, n);
                return log_oom();
        }
        *ret = out;
        *ret_n = n;
        return 0;
}

/* ---- Verbs ---- */

int fl_ctl_verb_submit(Ctl *c, int argc, char **argv) {
        CtlDriver *d;

        if (argc < 2) {
                log_error("No units given");
                return 0;
        }
        if (fl_ctl_driver(c, &d) < 0)
                return 1;
        return lazy_create_units(c, d, argv + 1) < 0 ? 1 : 0;
}

/* fleet's setTargetStateOfUnits: the units (by argument) whose desired state was changed go to
 * *ret_triggered (NULL-terminated names) and *ret_global (bool per name). */
static int set_target_state_of_units(CtlDriver *d, char **args, const char *state, char ***ret_triggered,
                                     char ***ret_global, char **ret_error) {
        _cleanup_strv_free_ char **triggered = NULL, **global = NULL;

        STRV_FOREACH(a, args) {
                _cleanup_(fl_api_unit_done) ApiUnit u = {};
                _cleanup_free_ char *name = fl_unit_name_mangle(*a);
                int r;

                if (!name)
                        return log_oom();
                r = d->ops->get_unit(d, name, &u);
                if (r == -ENOENT) {
                        *ret_error = fl_ctl_asprintf("unable to find unit %s", name);
                        return r;
                }
                if (r < 0) {
                        *ret_error = fl_ctl_asprintf("error retrieving unit %s from registry: %s", name,
                                                     strempty(d->error));
                        return r;
                }
                if (streq_ptr(u.desired_state, state)) {
                        log_debug("Unit(%s) already %s, skipping.", name, state);
                        continue;
                }
                log_debug("Setting Unit(%s) target state to %s", name, state);
                r = d->ops->set_target_state(d, name, state);
                if (r < 0) {
                        *ret_error = strdup(strempty(d->error));
                        return r;
                }
                if (fl_strv_contains(triggered, name) || fl_strv_contains(global, name))
                        continue;
                if (fl_strv_extend(fl_ctl_unit_is_global(&u) ? &global : &triggered, name) < 0)
                        return log_oom();
        }
        *ret_triggered = TAKE_PTR(triggered);
        *ret_global = TAKE_PTR(global);
        return 0;
}

static int load_or_start(Ctl *c, int argc, char **argv, bool start) {
        _cleanup_strv_free_ char **triggered = NULL, **global = NULL;
        _cleanup_free_ char *error = NULL;
        const char *verb = start ? "start" : "load", *state = start ? "launched" : "loaded";
        Wait *waits = NULL;
        CtlDriver *d;
        int r;

        if (argc < 2) {
                log_error("No units given");
                return 0;
        }
        if (fl_ctl_driver(c, &d) < 0)
                return 1;
        if (lazy_create_units(c, d, argv + 1) < 0)
                return 1;
        r = set_target_state_of_units(d, argv + 1, state, &triggered, &global, &error);
        if (r < 0) {
                log_error("Error %s units: %s", start ? "starting" : "loading", strempty(error));
                return 1;
        }
        STRV_FOREACH(g, global)
                printf("Triggered global unit %s %s\n", *g, verb);
        if (!triggered)
                return 0;

        r = try_wait_for_states(c, d, triggered, verb, state, &waits, &error);
        if (r < 0) {
                log_error("Error waiting for unit states, exit status: %s", strempty(error));
                return 1;
        }
        if (start && block_attempts(c) >= 0) {
                r = wait_for_active(c, d, triggered, waits, &error);
                waits_free(waits, fl_strv_length(triggered));
                if (r < 0) {
                        log_error("Error waiting for systemd unit states, err: %s", strempty(error));
                        return 1;
                }
        } else if (waits)
                waits_free(waits, fl_strv_length(triggered));
        return 0;
}

int fl_ctl_verb_load(Ctl *c, int argc, char **argv) {
        return load_or_start(c, argc, argv, false);
}

int fl_ctl_verb_start(Ctl *c, int argc, char **argv) {
        return load_or_start(c, argc, argv, true);
}

/* stop (to "loaded") and unload (to "inactive"). */
static int stop_or_unload(Ctl *c, int argc, char **argv, bool stop) {
        _cleanup_strv_free_ char **waiting = NULL;
        _cleanup_free_ char *error = NULL, *list = NULL;
        const char *verb = stop ? "stop" : "unload", *state = stop ? "loaded" : "inactive";
        ApiUnit *units = NULL;
        size_t n = 0;
        CtlDriver *d;
        int r, ret = 0;

        if (argc < 2) {
                log_error("No units given");
                return 0;
        }
        if (fl_ctl_driver(c, &d) < 0)
                return 1;
        if (find_units(d, argv + 1, &units, &n) < 0)
                return 1;
        if (n == 0) {
                log_error("Units not found in registry");
                goto finish;
        }

        for (size_t i = 0; i < n; i++) {
                const ApiUnit *u = &units[i];
                bool global = fl_ctl_unit_is_global(u);

                if (!global) {
                        if (stop && streq_ptr(u->current_state, "inactive")) {
                                log_error("Unable to stop unit %s in state inactive", u->name);
                                ret = 1;
                                goto finish;
                        }
                        if (streq_ptr(u->current_state, state)) {
                                log_debug("Unit(%s) already %s, skipping.", u->name, state);
                                continue;
                        }
                }
                log_debug("Setting target state of Unit(%s) to %s", u->name, state);
                r = d->ops->set_target_state(d, u->name, state);
                if (r < 0) {
                        log_error("Error setting target state for unit %s: %s", u->name, strempty(d->error));
                        ret = 1;
                        goto finish;
                }
                if (global)
                        printf("Triggered global unit %s %s\n", u->name, verb);
                else if (!fl_strv_contains(waiting, u->name) && fl_strv_extend(&waiting, u->name) < 0) {
                        ret = log_oom();
                        goto finish;
                }
        }

        list = fl_ctl_format_list(waiting);
        if (!list) {
                ret = log_oom();
                goto finish;
        }
        r = try_wait_for_states(c, d, waiting, verb, state, NULL, &error);
        if (r < 0) {
                log_error("Failed to %s units %s. err: %s", verb, list, strempty(error));
                ret = 1;
                goto finish;
        }
        log_info("Successfully %s units %s.", stop ? "stopped" : "unloaded", list);
finish:
        fl_api_units_free(units, n);
        return ret;
}

int fl_ctl_verb_stop(Ctl *c, int argc, char **argv) {
        return stop_or_unload(c, argc, argv, true);
}

int fl_ctl_verb_unload(Ctl *c, int argc, char **argv) {
        return stop_or_unload(c, argc, argv, false);
}

int fl_ctl_verb_destroy(Ctl *c, int argc, char **argv) {
        ApiUnit *units = NULL;
        size_t n = 0;
        CtlDriver *d;
        int r, ret = 0;

        if (argc < 2) {
                log_error("No units given");
                return 0;
        }
        if (fl_ctl_driver(c, &d) < 0)
                return 1;
        if (find_units(d, argv + 1, &units, &n) < 0)
                return 1;
        if (n == 0) {
                log_error("Units not found in registry");
                goto finish;
        }
        for (size_t i = 0; i < n; i++) {
                int attempts = block_attempts(c);
                uint64_t deadline = attempts > 0 ? fl_now_usec() + (uint64_t) attempts * ATTEMPT_USEC : 0;

                r = d->ops->destroy_unit(d, units[i].name);
                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        log_error("Error destroying units: %s", strempty(d->error));
                        ret = 1;
                        continue;
                }
                /* The job is gone at once; wait in case a store lags behind its writes. */
                while (attempts >= 0) {
                        ApiUnit u = {};

                        r = d->ops->get_unit(d, units[i].name, &u);
                        if (r == -ENOENT)
                                break;
                        fl_api_unit_done(&u);
                        if (r < 0) {
                                log_error("Error destroying units: %s", strempty(d->error));
                                ret = 1;
                                break;
                        }
                        if (deadline > 0 && fl_now_usec() >= deadline)
                                break;
                        fl_ctl_sleep(POLL_USEC);
                }
                printf("Destroyed %s\n", units[i].name);
        }
finish:
        fl_api_units_free(units, n);
        return ret;
}

/* Set one unit's target state and wait for it (restart's step). 0 or 1 (logged). */
static int set_state_and_wait(Ctl *c, CtlDriver *d, const char *name, const char *state) {
        _cleanup_free_ char *error = NULL;
        char *names[] = { (char *) name, NULL };
        int r;

        r = d->ops->set_target_state(d, name, state);
        if (r < 0) {
                log_error("Error setting target state for unit %s: %s", name, strempty(d->error));
                return 1;
        }
        r = wait_for_states(c, d, names, state, block_attempts(c) < 0 ? 0 : block_attempts(c), NULL, &error);
        if (r < 0) {
                log_error("Error waiting for unit states, exit status: %s", strempty(error));
                return 1;
        }
        return 0;
}

/* Global units: systemctl restart on every machine that reports a state for the unit. */
static int restart_global(Ctl *c, CtlDriver *d, const ApiUnit *u) {
        ApiUnitState *ss = NULL;
        size_t n = 0;
        int r, ret = 0;

        r = d->ops->list_states(d, u->name, &ss, &n);
        if (r < 0) {
                log_error("Error retrieving unit states of %s: %s", u->name, strempty(d->error));
                return 1;
        }
        if (n == 0)
                log_warning("Global unit %s is not running on any machine", u->name);
        for (size_t i = 0; i < n; i++) {
                char *cmd[] = { (char *) "systemctl", (char *) "restart", ss[i].name, NULL };
                _cleanup_free_ char *legend = NULL;
                const ApiMachine *m;

                if (!streq(ss[i].name, u->name) || isempty(ss[i].machine_id))
                        continue;
                m = fl_ctl_machine_cached(c, ss[i].machine_id);
                legend = fl_ctl_machine_legend(ss[i].machine_id, m ? m->public_ip : NULL, false);
                r = fl_ctl_run_on_machine(c, ss[i].machine_id, cmd);
                if (r != 0) {
                        log_error("Error running systemctl restart. machine id=%s, unit name=%s", ss[i].machine_id,
                                  u->name);
                        ret = 1;
                        continue;
                }
                printf("Restarted global unit %s on %s\n", u->name, strempty(legend));
        }
        fl_api_unit_states_free(ss, n);
        return ret;
}

int fl_ctl_verb_restart(Ctl *c, int argc, char **argv) {
        ApiUnit *units = NULL;
        size_t n = 0;
        CtlDriver *d;
        int ret = 0;

        if (argc < 2) {
                log_error("No units given");
                return 0;
        }
        if (fl_ctl_driver(c, &d) < 0)
                return 1;
        if (find_units(d, argv + 1, &units, &n) < 0)
                return 1;
        if (lazy_create_units(c, d, argv + 1) < 0) {
                ret = 1;
                goto finish;
        }

        for (size_t i = 0; i < n; i++) {
                const ApiUnit *u = &units[i];

                if (fl_ctl_unit_is_global(u)) {
                        if (restart_global(c, d, u) != 0)
                                ret = 1;
                        continue;
                }
                if (streq_ptr(u->current_state, "inactive") || isempty(u->current_state)) {
                        log_error("Unable to restart unit %s in state inactive", u->name);
                        ret = 1;
                        continue;
                }
                if (streq(u->current_state, "loaded"))
                        log_info("Unit(%s) already loaded, starting.", u->name);
                else if (set_state_and_wait(c, d, u->name, "loaded") != 0) {
                        ret = 1;
                        goto finish;
                }
                if (set_state_and_wait(c, d, u->name, "launched") != 0) {
                        ret = 1;
                        goto finish;
                }
                log_debug("Unit(%s) was restarted.", u->name);
        }
finish:
        fl_api_units_free(units, n);
        return ret;
}
