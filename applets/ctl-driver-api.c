/* SPDX-License-Identifier: MIT */
/* ctl-driver-api.c: --driver=API (the default): fleet's HTTP API through lib/api-client.h.
 * --request-timeout bounds every request (fleet's API driver had no timeout). With --tunnel
 * the connection is an ssh to the bastion: `fleetctl fd-forward <socket>` there for a unix
 * endpoint, `ssh -W host:port` for a TCP one. */
#include <signal.h>

#include "ctl.h"
#include "strv.h"

static int take_error(CtlDriver *d, int r, char *msg) {
        if (r == -ENOMEM && !msg)
                return fl_ctl_driver_fail(d, r, "out of memory");
        return fl_ctl_driver_fail_take(d, r, msg ?: strdup(strerror(-r)));
}

static int api_list_units(CtlDriver *d, ApiUnit **ret, size_t *ret_n) {
        char *err = NULL;
        int r = fl_api_list_units(d->data, ret, ret_n, &err);
        return r < 0 ? take_error(d, r, err) : 0;
}

static int api_list_names(CtlDriver *d, char ***ret) {
        _cleanup_strv_free_ char **names = NULL;
        ApiUnit *l = NULL;
        size_t n = 0;
        char *err = NULL;
        int r;

        r = fl_api_list_unit_names(d->data, &l, &n, &err);
        if (r < 0)
                return take_error(d, r, err);
        names = new0(char *, n + 1);
        for (size_t i = 0; names && i < n; i++)
                names[i] = TAKE_PTR(l[i].name);
        fl_api_units_free(l, n);
        if (!names)
                return fl_ctl_driver_fail(d, -ENOMEM, "out of memory");
        *ret = TAKE_PTR(names);
        return 0;
}

static int api_get_unit(CtlDriver *d, const char *name, ApiUnit *ret) {
        char *err = NULL;
        int r = fl_api_get_unit(d->data, name, ret, &err);

        if (r == -ENOENT)
                return r;
        return r < 0 ? take_error(d, r, err) : 0;
}

static int api_get_units(CtlDriver *d, char *const *names, size_t n, ApiUnit **ret, size_t *ret_n) {
        char *err = NULL;
        int r = fl_api_get_units(d->data, names, n, ret, ret_n, &err);
        return r < 0 ? take_error(d, r, err) : 0;
}

static int api_list_states(CtlDriver *d, const char *unit, ApiUnitState **ret, size_t *ret_n) {
        char *err = NULL;
        int r = fl_api_list_states(d->data, unit, NULL, ret, ret_n, &err);
        return r < 0 ? take_error(d, r, err) : 0;
}

static int api_list_machines(CtlDriver *d, ApiMachine **ret, size_t *ret_n) {
        char *err = NULL;
        int r = fl_api_list_machines(d->data, ret, ret_n, &err);
        return r < 0 ? take_error(d, r, err) : 0;
}

static int api_create_unit(CtlDriver *d, const char *name, const UnitFile *u) {
        char *err = NULL;
        int r = fl_api_create_unit(d->data, name, u, &err);
        return r < 0 ? take_error(d, r, err) : 0;
}

static int api_create_units(CtlDriver *d, char *const *names, UnitFile *const *files, size_t n, size_t *ret_failed) {
        char *err = NULL;
        int r = fl_api_create_units(d->data, names, files, n, 0, ret_failed, &err);
        return r < 0 ? take_error(d, r, err) : 0;
}

static int api_set_target_state(CtlDriver *d, const char *name, const char *state) {
        char *err = NULL;
        int r = fl_api_set_unit_target_state(d->data, name, state, &err);
        return r < 0 ? take_error(d, r, err) : 0;
}

static int api_destroy_unit(CtlDriver *d, const char *name) {
        char *err = NULL;
        int r = fl_api_destroy_unit(d->data, name, &err);

        if (r == -ENOENT)
                return r;
        return r < 0 ? take_error(d, r, err) : 0;
}

static void api_free(CtlDriver *d) {
        fl_api_client_free(d->data);
}

static const CtlDriverOps api_ops = {
        .name = "API",
        .list_units = api_list_units,
        .get_unit = api_get_unit,
        .get_units = api_get_units,
        .list_names = api_list_names,
        .list_states = api_list_states,
        .list_machines = api_list_machines,
        .create_unit = api_create_unit,
        .create_units = api_create_units,
        .set_target_state = api_set_target_state,
        .destroy_unit = api_destroy_unit,
        .free = api_free,
};

/* The tunnel command for endpoint ep. */
static int tunnel_argv(Ctl *c, const char *ep, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *bastion = NULL, *fwd = NULL, *cmd = NULL;
        char *extra[3] = {};
        const char *path;
        int port, r;

        r = fl_ctl_tunnel_target(c, &bastion, &port);
        if (r < 0)
                return r;

        if ((path = startswith(ep, "unix://")) || (path = startswith(ep, "file://"))) {
                _cleanup_free_ char *q = fl_ctl_shell_quote(path);
                cmd = q ? fl_ctl_asprintf("fleetctl fd-forward %s", q) : NULL;
                if (!cmd)
                        return -ENOMEM;
        } else {
                /* ssh -W host:port: the bastion connects on to the API's TCP address. */
                const char *hp = strstr(ep, "://");

                hp = hp ? hp + 3 : ep;
                fwd = strndup(hp, strcspn(hp, "/"));
                if (!fwd)
                        return -ENOMEM;
                if (!strchr(fwd, ':') || fwd[strlen(fwd) - 1] == ']') {
                        char *p = fl_ctl_asprintf("%s:%s", fwd, startswith(ep, "https") ? "443" : "80");
                        free(fwd);
                        fwd = p;
                        if (!fwd)
                                return -ENOMEM;
                }
                extra[0] = (char *) "-W";
                extra[1] = fwd;
        }
        r = fl_ctl_ssh_argv(c, bastion, port, 0, extra, &l);
        if (r < 0)
                return r;
        if (cmd && fl_strv_extend(&l, cmd) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

int fl_ctl_driver_api_new(Ctl *c, CtlDriver **ret, char **ret_error) {
        _cleanup_(fl_ctl_driver_freep) CtlDriver *d = NULL;
        _cleanup_strv_free_ char **tun = NULL;
        _cleanup_free_ char *ep = NULL;
        ApiClientConfig cfg;
        ApiClient *client = NULL;
        size_t n;
        int r;

        n = strcspn(c->endpoint, ",");
        if (c->endpoint[n])
                log_warning("multiple endpoints provided but only the first (%.*s) is used", (int) n, c->endpoint);
        ep = strndup(c->endpoint, n);
        if (!ep)
                return -ENOMEM;
        if (c->tunnel) {
                r = tunnel_argv(c, ep, &tun);
                if (r == -EINVAL) {
                        *ret_error = fl_ctl_asprintf("failed initializing SSH client: invalid tunnel address \"%s\"",
                                                     c->tunnel);
                        return r;
                }
                if (r < 0)
                        return r;
        }
        cfg = (ApiClientConfig) {
                .endpoint = ep,
                .ca_file = isempty(c->ca_file) ? NULL : c->ca_file,
                .cert_file = isempty(c->cert_file) ? NULL : c->cert_file,
                .key_file = isempty(c->key_file) ? NULL : c->key_file,
                .timeout_usec = (uint64_t) (c->request_timeout * 1e6),
                /* Opening the tunnel is an SSH connection: --ssh-timeout on top. */
                .connect_timeout_usec = tun ? (uint64_t) (c->ssh_timeout * 1e6) : 0,
                .tunnel_argv = tun,
        };
        r = fl_api_client_new(&cfg, &client, ret_error);
        if (r < 0)
                return r;
        /* A server (or tunnel) that goes away while we write must not kill us. */
        (void) signal(SIGPIPE, SIG_IGN);

        d = new0(CtlDriver, 1);
        if (!d) {
                fl_api_client_free(client);
                return -ENOMEM;
        }
        d->ops = &api_ops;
        d->data = client;
        *ret = TAKE_PTR(d);
        return 0;
}
