/* SPDX-License-Identifier: MIT */
/* ctl-driver-etcd.c: --driver=etcd: fleetctl reads and writes the registry itself (lib/
 * registry.h), the way fleet's RegistryClient does. Each read is one fl_registry_load of the
 * whole prefix, converted to the API's entities exactly as the HTTP API would present them
 * (a global unit has a currentState only in lists), so commands cannot tell the drivers apart.
 * The machines of the last read are kept for legends, and the first read also checks that no
 * registered fleetd is newer than this fleetctl (fleet's warning box).
 *
 * --tunnel: one `ssh -N -L 127.0.0.1:<free port>:<host>:<port>...` to the bastion forwards
 * every etcd endpoint, and the registry talks to the local ends (fleet dialled through its
 * in-process SSH client). An https endpoint's certificate must then also be valid for
 * 127.0.0.1 when --ca-file asks for verification. */
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "ctl.h"
#include "registry.h"
#include "strv.h"
#include "unit-name.h"

typedef struct EtcdDriver {
        Registry *registry;
        sd_event *event;         /* for batches of writes (fl_registry_*_async) */
        pid_t tunnel;            /* the ssh forwarding the endpoints, 0 if none */
        RegSnapshot *last;       /* most recent read */
        bool version_checked;
} EtcdDriver;

static int fail_store(CtlDriver *d, int r) {
        switch (r) {
        case -ECONNREFUSED:
        case -ETIMEDOUT:
        case -EHOSTUNREACH:
        case -ENETUNREACH:
                return fl_ctl_driver_fail(d, r, "client: etcd cluster is unavailable or misconfigured: %s",
                                          strerror(-r));
        case -EBADMSG:
                return fl_ctl_driver_fail(d, r, "unexpected data in the registry: %s", strerror(-r));
        case -ENOMEM:
                return fl_ctl_driver_fail(d, r, "out of memory");
        default:
                return fl_ctl_driver_fail(d, r, "etcd: %s", strerror(-r));
        }
}

/* Numeric semver compare of "X.Y.Z[-pre]": >0 when a is newer. A pre-release sorts before
 * its release. */
static int semver_cmp(const char *a, const char *b) {
        for (int i = 0; i < 3; i++) {
                char *ea, *eb;
                unsigned long x = strtoul(a, &ea, 10), y = strtoul(b, &eb, 10);

                if (x != y)
                        return x > y ? 1 : -1;
                a = *ea == '.' ? ea + 1 : ea;
                b = *eb == '.' ? eb + 1 : eb;
        }
        if (*a == '-' && *b != '-')
                return -1;
        if (*b == '-' && *a != '-')
                return 1;
        return strcmp(a, b) > 0 ? 1 : strcmp(a, b) < 0 ? -1 : 0;
}

static void check_version(EtcdDriver *e, const RegSnapshot *s) {
        const char *latest = NULL;

        if (e->version_checked)
                return;
        e->version_checked = true;
        for (size_t i = 0; i < s->n_machines; i++) {
                const char *v = s->machines[i].version;
                if (isempty(v) || !(v[0] >= '0' && v[0] <= '9'))
                        continue;
                if (!latest || semver_cmp(v, latest) > 0)
                        latest = v;
        }
        if (latest && semver_cmp(latest, FLEET_VERSION) > 0)
                fprintf(stderr,
                        "####################################################################\n"
                        "WARNING: fleetctl (%s) is older than the latest registered\n"
                        "version of fleet found in the cluster (%s). You are strongly\n"
                        "recommended to upgrade fleetctl to prevent incompatibility issues.\n"
                        "####################################################################\n",
                        FLEET_VERSION, latest);
}

static int load(CtlDriver *d, const RegSnapshot **ret) {
        EtcdDriver *e = d->data;
        RegSnapshot *s = NULL;
        int r;

        r = fl_registry_load(e->registry, &s);
        if (r < 0)
                return fail_store(d, r);
        fl_reg_snapshot_free(e->last);
        e->last = s;
        check_version(e, s);
        *ret = s;
        return 0;
}

static int dup_str(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int convert_unit(const RegUnit *ru, bool collection, ApiUnit *ret) {
        ApiUnit u = {};
        int r;

        r = dup_str(ru->name, &u.name);
        if (r >= 0)
                r = dup_str(fl_job_state_to_string(ru->target_state), &u.desired_state);
        if (r >= 0 && (collection || !ru->global))
                r = dup_str(fl_job_state_to_string(ru->current_state), &u.current_state);
        if (r >= 0 && (collection || !ru->global))
                r = dup_str(ru->target, &u.machine_id);
        if (r >= 0)
                r = dup_str(ru->unschedulable, &u.unschedulable);
        if (r >= 0)
                r = ru->file ? fl_unit_file_dup(ru->file, &u.file) : fl_unit_file_new(&u.file);
        if (r < 0) {
                fl_api_unit_done(&u);
                return r;
        }
        *ret = u;
        return 0;
}

static int etcd_list_units(CtlDriver *d, ApiUnit **ret, size_t *ret_n) {
        const RegSnapshot *s;
        ApiUnit *l;
        int r;

        r = load(d, &s);
        if (r < 0)
                return r;
        l = new0(ApiUnit, s->n_units + 1);
        if (!l)
                return fail_store(d, -ENOMEM);
        for (size_t i = 0; i < s->n_units; i++) {
                r = convert_unit(&s->units[i], true, &l[i]);
                if (r < 0) {
                        fl_api_units_free(l, i);
                        return fail_store(d, r);
                }
        }
        *ret = l;
        *ret_n = s->n_units;
        return 0;
}

/* Whether names can be read one by one: etcd cuts the connection of a request line over ~8 KiB,
 * and no unit has a name over FL_UNIT_NAME_MAX (the API refuses it), but one written into etcd
 * by hand would still show in a read of everything. */
static bool names_short(char *const *names, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (strlen(names[i]) > FL_UNIT_NAME_MAX)
                        return false;
        return true;
}

/* Up to this many units are read one by one (3 reads each, as fleet did) rather than with one
 * read of everything: 10,000 units are a 10 MB read and ~0.8 s of decoding. */
#define ETCD_GET_MAX 8U

/* A snapshot holding at least the units named: their own reads (into *own, the caller's to
 * free) for a few short names, else a read of everything. */
static int load_named(CtlDriver *d, char *const *names, size_t n, RegSnapshot **own, const RegSnapshot **ret) {
        EtcdDriver *e = d->data;
        int r;

        if (n > ETCD_GET_MAX || !names_short(names, n))
                return load(d, ret);
        r = fl_registry_load_units(e->registry, names, n, own);
        if (r < 0)
                return fail_store(d, r);
        *ret = *own;
        return 0;
}

static int etcd_list_names(CtlDriver *d, char ***ret) {
        EtcdDriver *e = d->data;
        int r = fl_registry_list_unit_names(e->registry, ret);
        return r < 0 ? fail_store(d, r) : 0;
}

static int etcd_get_unit(CtlDriver *d, const char *name, ApiUnit *ret) {
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *own = NULL;
        const RegSnapshot *s;
        const RegUnit *u;
        int r;

        r = load_named(d, (char *[]) { (char *) name, NULL }, 1, &own, &s);
        if (r < 0)
                return r;
        u = fl_reg_snapshot_find_unit(s, name);
        if (!u)
                return -ENOENT;
        r = convert_unit(u, false, ret);
        return r < 0 ? fail_store(d, r) : 0;
}

static int etcd_get_units(CtlDriver *d, char *const *names, size_t n, ApiUnit **ret, size_t *ret_n) {
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *own = NULL;
        const RegSnapshot *s;
        ApiUnit *l;
        size_t k = 0;
        int r;

        r = load_named(d, names, n, &own, &s);
        if (r < 0)
                return r;
        l = new0(ApiUnit, n + 1);
        if (!l)
                return fail_store(d, -ENOMEM);
        for (size_t i = 0; i < n; i++) {
                const RegUnit *u = fl_reg_snapshot_find_unit(s, names[i]);

                if (!u)
                        continue;
                r = convert_unit(u, false, &l[k]);
                if (r < 0) {
                        fl_api_units_free(l, k);
                        return fail_store(d, r);
                }
                k++;
        }
        *ret = l;
        *ret_n = k;
        return 0;
}

static int etcd_list_states(CtlDriver *d, const char *unit, ApiUnitState **ret, size_t *ret_n) {
        const RegSnapshot *s;
        ApiUnitState *l;
        size_t n = 0;
        int r;

        r = load(d, &s);
        if (r < 0)
                return r;
        l = new0(ApiUnitState, s->n_states + 1);
        if (!l)
                return fail_store(d, -ENOMEM);
        for (size_t i = 0; i < s->n_states; i++) {
                const RegUnitState *rs = &s->states[i];
                ApiUnitState *o = &l[n];

                if (unit && !streq_ptr(rs->name, unit))
                        continue;
                n++;
                if (dup_str(rs->name, &o->name) < 0 || dup_str(rs->machine_id, &o->machine_id) < 0 ||
                    dup_str(rs->hash[0] ? rs->hash : NULL, &o->hash) < 0 ||
                    dup_str(rs->load_state, &o->load_state) < 0 ||
                    dup_str(rs->active_state, &o->active_state) < 0 || dup_str(rs->sub_state, &o->sub_state) < 0) {
                        fl_api_unit_states_free(l, n);
                        return fail_store(d, -ENOMEM);
                }
        }
        *ret = l;
        *ret_n = n;
        return 0;
}

static int convert_machines(const RegSnapshot *s, ApiMachine **ret, size_t *ret_n) {
        ApiMachine *l = new0(ApiMachine, s->n_machines + 1);

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_machines; i++) {
                const RegMachine *m = &s->machines[i];
                ApiMachine *o = &l[i];

                if (dup_str(m->id, &o->id) < 0 || dup_str(isempty(m->public_ip) ? NULL : m->public_ip, &o->public_ip) < 0)
                        goto oom;
                if (m->n_metadata > 0) {
                        o->metadata = new0(char *, 2 * m->n_metadata + 1);
                        if (!o->metadata)
                                goto oom;
                        for (size_t k = 0; k < 2 * m->n_metadata; k++)
                                if (dup_str(m->metadata[k], &o->metadata[k]) < 0)
                                        goto oom;
                        o->n_metadata = m->n_metadata;
                }
        }
        *ret = l;
        *ret_n = s->n_machines;
        return 0;
oom:
        fl_api_machines_free(l, s->n_machines);
        return -ENOMEM;
}

static int etcd_list_machines(CtlDriver *d, ApiMachine **ret, size_t *ret_n) {
        const RegSnapshot *s;
        int r;

        r = load(d, &s);
        if (r < 0)
                return r;
        r = convert_machines(s, ret, ret_n);
        return r < 0 ? fail_store(d, r) : 0;
}

static int etcd_peek_machines(CtlDriver *d, ApiMachine **ret, size_t *ret_n) {
        EtcdDriver *e = d->data;

        if (!e->last)
                return -ENODATA;
        return convert_machines(e->last, ret, ret_n);
}

static int etcd_create_unit(CtlDriver *d, const char *name, const UnitFile *u) {
        EtcdDriver *e = d->data;
        int r;

        r = fl_registry_create_unit(e->registry, name, u, JOB_STATE_INACTIVE);
        return r < 0 ? fail_store(d, r) : 0;
}

/* Writes at once in a batch of creates; each is three etcd requests in sequence. Measured
 * when lib/etcd.c kept 4 idle connections per endpoint (1,000 units: ~0.8 s at 4 or 8, 1.1-2.2
 * s at 16-32, more writes opening a connection per request); it keeps 16 now, not re-measured. */
#define ETCD_BATCH_PARALLEL 4U

typedef struct EtcdBatch {
        Registry *registry;
        char *const *names;
        UnitFile *const *files;
        size_t n, next, running;
        size_t failed;           /* lowest index that failed, n: none */
        int error;
        struct EtcdBatchItem *items;
} EtcdBatch;

typedef struct EtcdBatchItem {
        EtcdBatch *batch;
        size_t index;
} EtcdBatchItem;

static void batch_failed(EtcdBatch *b, size_t i, int error) {
        if (i < b->failed) {
                b->failed = i;
                b->error = error;
        }
}

static void batch_fill(EtcdBatch *b);

static void on_batch_created(Registry *reg, int error, void *userdata) {
        EtcdBatchItem *it = userdata;

        it->batch->running--;
        if (error < 0)
                batch_failed(it->batch, it->index, error);
        batch_fill(it->batch);
}

/* Starts writes up to the limit; none after a failure. */
static void batch_fill(EtcdBatch *b) {
        while (b->running < ETCD_BATCH_PARALLEL && b->next < b->n && b->failed == b->n) {
                size_t i = b->next++;
                int r;

                b->items[i] = (EtcdBatchItem) { .batch = b, .index = i };
                r = fl_registry_create_unit_async(b->registry, b->names[i], b->files[i], JOB_STATE_INACTIVE,
                                                  on_batch_created, &b->items[i]);
                if (r < 0) {
                        batch_failed(b, i, r);
                        return;
                }
                b->running++;
        }
}

static int etcd_create_units(CtlDriver *d, char *const *names, UnitFile *const *files, size_t n,
                             size_t *ret_failed) {
        EtcdDriver *e = d->data;
        _cleanup_free_ EtcdBatch *b = NULL;
        int r = 0, error;
        size_t failed;

        if (n == 0)
                return 0;
        b = new0(EtcdBatch, 1);
        if (b)
                b->items = new0(EtcdBatchItem, n);
        if (!b || !b->items)
                return fail_store(d, -ENOMEM);
        *b = (EtcdBatch) { .registry = e->registry, .names = names, .files = files, .n = n, .failed = n,
                           .items = b->items };
        batch_fill(b);
        while (b->running > 0) {
                r = sd_event_run(e->event, UINT64_MAX);
                if (r < 0)
                        break;
        }
        if (b->running > 0) {
                /* The loop failed with writes in flight: they may still call back, so the
                 * batch is left allocated for them. */
                TAKE_PTR(b);
                return fl_ctl_driver_fail(d, r, "event loop: %s", strerror(-r));
        }
        free(b->items);
        failed = b->failed;
        error = b->error;
        if (failed == n)
                return 0;
        if (ret_failed)
                *ret_failed = failed;
        return fail_store(d, error);
}

static int etcd_set_target_state(CtlDriver *d, const char *name, const char *state) {
        EtcdDriver *e = d->data;
        JobState s = fl_job_state_from_string(state);
        int r;

        /* The API's checks (§3.4), so that both drivers refuse the same requests. */
        if (s < 0)
                return fl_ctl_driver_fail(d, EINVAL, "invalid desired state \"%s\"", state);
        if (fl_unit_name_is_template(name) && s != JOB_STATE_INACTIVE)
                return fl_ctl_driver_fail(d, EINVAL, "cannot activate template \"%s\"", name);
        r = fl_registry_set_target_state(e->registry, name, s);
        if (r == -ENOENT)
                return fl_ctl_driver_fail(d, r, "unit does not exist");
        return r < 0 ? fail_store(d, r) : 0;
}

static int etcd_destroy_unit(CtlDriver *d, const char *name) {
        EtcdDriver *e = d->data;
        int r;

        r = fl_registry_destroy_unit(e->registry, name);
        if (r == -ENOENT)
                return r;
        return r < 0 ? fail_store(d, r) : 0;
}

static void etcd_free(CtlDriver *d) {
        EtcdDriver *e = d->data;

        if (!e)
                return;
        fl_reg_snapshot_free(e->last);
        fl_registry_free(e->registry);
        sd_event_unref(e->event);
        if (e->tunnel > 0) {
                (void) kill(e->tunnel, SIGTERM);
                (void) waitpid(e->tunnel, NULL, 0);
        }
        free(e);
}

static const CtlDriverOps etcd_ops = {
        .name = "etcd",
        .list_units = etcd_list_units,
        .get_unit = etcd_get_unit,
        .get_units = etcd_get_units,
        .list_names = etcd_list_names,
        .list_states = etcd_list_states,
        .list_machines = etcd_list_machines,
        .create_unit = etcd_create_unit,
        .create_units = etcd_create_units,
        .set_target_state = etcd_set_target_state,
        .destroy_unit = etcd_destroy_unit,
        .peek_machines = etcd_peek_machines,
        .free = etcd_free,
};

/* A free local TCP port (the kernel's choice; the race with other programs is accepted). */
static int free_port(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof(sa);
        int fd, port = -EADDRNOTAVAIL;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) >= 0 && getsockname(fd, (struct sockaddr *) &sa, &l) >= 0)
                port = ntohs(sa.sin_port);
        safe_close(fd);
        return port;
}

static bool port_open(int port) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        if (fd < 0)
                return false;
        ok = connect(fd, (struct sockaddr *) &sa, sizeof(sa)) >= 0;
        safe_close(fd);
        return ok;
}

/* Starts the forwarding ssh and rewrites *endpoints to the local ends. */
static int start_tunnel(Ctl *c, EtcdDriver *e, char ***endpoints, char **ret_error) {
        _cleanup_strv_free_ char **extra = NULL, **local = NULL, **argv = NULL;
        _cleanup_free_ char *bastion = NULL;
        int bport, first = -1, r;
        uint64_t deadline;
        pid_t pid;

        r = fl_ctl_tunnel_target(c, &bastion, &bport);
        if (r < 0) {
                *ret_error = fl_ctl_asprintf("failed initializing SSH client: invalid tunnel address \"%s\"", c->tunnel);
                return r;
        }
        if (fl_strv_extend(&extra, "-N") < 0 || fl_strv_extend(&extra, "-o") < 0 ||
            fl_strv_extend(&extra, "ExitOnForwardFailure=yes") < 0)
                return -ENOMEM;
        STRV_FOREACH(ep, *endpoints) {
                const char *hp = strstr(*ep, "://") + 3;
                _cleanup_free_ char *hostport = strndup(hp, strcspn(hp, "/")), *fwd = NULL, *url = NULL;
                int lp = free_port();

                if (!hostport)
                        return -ENOMEM;
                if (lp < 0)
                        return lp;
                if (first < 0)
                        first = lp;
                if (!strchr(hostport, ':') || hostport[strlen(hostport) - 1] == ']') {
                        char *p = fl_ctl_asprintf("%s:%s", hostport, startswith(*ep, "https") ? "443" : "80");
                        free(hostport);
                        hostport = p;
                        if (!hostport)
                                return -ENOMEM;
                }
                fwd = fl_ctl_asprintf("127.0.0.1:%d:%s", lp, hostport);
                url = fl_ctl_asprintf("%s://127.0.0.1:%d", startswith(*ep, "https") ? "https" : "http", lp);
                if (!fwd || !url || fl_strv_extend(&extra, "-L") < 0 || fl_strv_extend(&extra, fwd) < 0 ||
                    fl_strv_push(&local, TAKE_PTR(url)) < 0)
                        return -ENOMEM;
        }
        r = fl_ctl_ssh_argv(c, bastion, bport, 0, extra, &argv);
        if (r < 0)
                return r;

        fflush(stdout);
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (null >= 0)
                        (void) dup2(null, STDOUT_FILENO);
                execvp(argv[0], argv);
                _exit(127);
        }
        e->tunnel = pid;
        deadline = fl_now_usec() + (uint64_t) ((c->ssh_timeout + 5) * 1e6);
        for (;;) {
                int status;

                if (port_open(first))
                        break;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        e->tunnel = 0;
                        *ret_error = fl_ctl_asprintf("failed initializing SSH client: ssh to %s exited with status %d",
                                                     bastion, WIFEXITED(status) ? WEXITSTATUS(status) : 255);
                        return -ECONNREFUSED;
                }
                if (fl_now_usec() >= deadline) {
                        *ret_error = strdup("timed out while initiating SSH connection");
                        return -ETIMEDOUT;
                }
                fl_ctl_sleep(50 * 1000);
        }
        fl_strv_free(*endpoints);
        *endpoints = TAKE_PTR(local);
        return 0;
}

int fl_ctl_driver_etcd_new(Ctl *c, CtlDriver **ret, char **ret_error) {
        _cleanup_(fl_ctl_driver_freep) CtlDriver *d = NULL;
        _cleanup_strv_free_ char **endpoints = NULL;
        RegistryConfig cfg;
        EtcdDriver *e;
        const char *ep = c->endpoint;
        int r;

        /* --experimental-api=false with the default endpoint meant etcd's old defaults. */
        if (!c->experimental_api && streq(ep, FL_CTL_DEFAULT_ENDPOINT))
                ep = "http://127.0.0.1:2379,http://127.0.0.1:4001";
        r = fl_strv_split(ep, ",", &endpoints);
        if (r < 0)
                return r;
        STRV_FOREACH(p, endpoints)
                if (!startswith(*p, "http://") && !startswith(*p, "https://")) {
                        *ret_error = fl_ctl_asprintf("invalid etcd endpoint \"%s\": only http:// and https:// are supported",
                                                     *p);
                        return -EINVAL;
                }
        if (!endpoints) {
                *ret_error = strdup("no etcd endpoint given");
                return -EINVAL;
        }
        d = new0(CtlDriver, 1);
        if (!d)
                return -ENOMEM;
        d->ops = &etcd_ops;
        e = new0(EtcdDriver, 1);
        if (!e)
                return -ENOMEM;
        d->data = e;
        if (c->tunnel) {
                r = start_tunnel(c, e, &endpoints, ret_error);
                if (r < 0)
                        return r;
        }

        cfg = (RegistryConfig) {
                .endpoints = endpoints,
                .prefix = c->etcd_key_prefix,
                .ca_file = isempty(c->ca_file) ? NULL : c->ca_file,
                .cert_file = isempty(c->cert_file) ? NULL : c->cert_file,
                .key_file = isempty(c->key_file) ? NULL : c->key_file,
                .request_timeout_usec = (uint64_t) (c->request_timeout * 1e6),
        };
        r = sd_event_new(&e->event);
        if (r < 0)
                return r;
        r = fl_registry_new(&cfg, e->event, &e->registry);
        if (r < 0) {
                *ret_error = fl_ctl_asprintf("%s", strerror(-r));
                return r;
        }
        *ret = TAKE_PTR(d);
        return 0;
}
