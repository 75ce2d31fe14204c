/* SPDX-License-Identifier: MIT */
/* registry.c: the Registry object, key paths, the operation runner shared by every write, and
 * one-shot loads. */
#include <stdarg.h>

#include "log.h"
#include "registry-internal.h"
#include "strv.h"
#include "unit-file.h"

int fl_registry_new(const RegistryConfig *cfg, sd_event *event, Registry **ret) {
        _cleanup_(fl_registry_freep) Registry *r = NULL;
        const char *prefix = cfg->prefix ?: FL_REGISTRY_DEFAULT_PREFIX;
        EtcdConfig ec = {
                .endpoints = cfg->endpoints,
                .ca_file = cfg->ca_file,
                .cert_file = cfg->cert_file,
                .key_file = cfg->key_file,
                .username = cfg->username,
                .password = cfg->password,
                .request_timeout_usec = cfg->request_timeout_usec,
        };
        Buf b = BUF_INIT;
        int k;

        r = new0(Registry, 1);
        if (!r)
                return -ENOMEM;
        r->gc_seen.free_data = free;

        /* path.Join semantics for what matters here: one leading '/', no empty elements, no
         * trailing '/'. */
        for (const char *p = prefix; *p;) {
                size_t l;
                while (*p == '/')
                        p++;
                l = strcspn(p, "/");
                if (l == 0)
                        break;
                if ((k = fl_buf_putc(&b, '/')) < 0 || (k = fl_buf_append(&b, p, l)) < 0) {
                        fl_buf_done(&b);
                        return k;
                }
                p += l;
        }
        r->prefix = b.data ? fl_buf_steal(&b) : strdup("");
        if (!r->prefix)
                return -ENOMEM;

        if (event)
                r->event = sd_event_ref(event);
        k = fl_etcd_client_new(&ec, event, &r->etcd);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(r);
        return 0;
}

Registry *fl_registry_free(Registry *r) {
        if (!r)
                return NULL;
        while (r->ops)
                fl_reg_op_free(r->ops);
        fl_reg_mirror_pause(r);
        r->etcd = fl_etcd_client_free(r->etcd);
        r->mirror_timer = sd_event_source_disable_unref(r->mirror_timer);
        r->change_defer = sd_event_source_disable_unref(r->change_defer);
        r->stall_timer = sd_event_source_disable_unref(r->stall_timer);
        r->quiet_timer = sd_event_source_disable_unref(r->quiet_timer);
        fl_reg_store_free(r->store);
        fl_reg_tree_clear(&r->written);
        fl_reg_tree_clear(&r->gc_seen);
        sd_event_unref(r->event);
        free(r->prefix);
        free(r);
        return NULL;
}

char *fl_reg_key(Registry *r, ...) {
        Buf b = BUF_INIT;
        va_list ap;
        int k;

        k = fl_buf_puts(&b, r->prefix);
        va_start(ap, r);
        for (const char *p; k >= 0 && (p = va_arg(ap, const char *));) {
                k = fl_buf_putc(&b, '/');
                if (k >= 0)
                        k = fl_buf_puts(&b, p);
        }
        va_end(ap);
        if (k < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

const char *fl_reg_key_rel(Registry *r, const char *key) {
        const char *rest;
        if (!key)
                return NULL;
        rest = startswith(key, r->prefix);
        if (!rest || *rest != '/')
                return NULL;
        return rest + 1;
}

int fl_reg_etcd_leaves(Registry *r, const EtcdNode *n, RegLeafFn f, void *userdata) {
        const char *rel;
        int k;

        if (!n)
                return 0;
        if (n->dir) {
                for (size_t i = 0; i < n->n_nodes; i++) {
                        k = fl_reg_etcd_leaves(r, n->nodes[i], f, userdata);
                        if (k < 0)
                                return k;
                }
                return 0;
        }
        rel = fl_reg_key_rel(r, n->key);
        if (!rel || !*rel)
                return 0;
        k = f(rel, strempty(n->value), n->modified_index, n->ttl > 0 ? (uint64_t) n->ttl : 0, userdata);
        return k < 0 ? k : 0;
}

static int tree_leaf(const char *rel, const char *value, uint64_t modified_index, uint64_t ttl_sec, void *t) {
        return fl_reg_tree_set(t, rel, value, modified_index, ttl_sec);
}

int fl_reg_tree_add_etcd(Registry *r, RegTree *t, const EtcdNode *n) {
        return fl_reg_etcd_leaves(r, n, tree_leaf, t);
}

static int store_leaf(const char *rel, const char *value, uint64_t modified_index, uint64_t ttl_sec, void *s) {
        return fl_reg_store_set(s, rel, value, modified_index, ttl_sec);
}

int fl_reg_store_add_etcd(Registry *r, RegStore *s, const EtcdNode *n) {
        return fl_reg_etcd_leaves(r, n, store_leaf, s);
}

/* ---- Remembered heartbeat values ---- */

const char *fl_reg_written_get(Registry *r, const char *key) {
        RegNode *n = fl_reg_tree_find(&r->written, key);
        return n ? n->value : NULL;
}

void fl_reg_written_set(Registry *r, const char *key, const char *value) {
        if (!value) {
                fl_reg_tree_remove(&r->written, key);
                return;
        }
        if (fl_reg_tree_set(&r->written, key, value, 0, 0) < 0)
                /* Without memory of it the next beat is a full write: correct, just dearer. */
                fl_reg_tree_remove(&r->written, key);
}

/* ---- Operations ---- */

int fl_reg_op_new(Registry *r, RegStepFn step, RegOp **ret) {
        RegOp *op = new0(RegOp, 1);
        if (!op)
                return -ENOMEM;
        op->reg = r;
        op->step = step;
        op->next = r->ops;
        if (r->ops)
                r->ops->prev = op;
        r->ops = op;
        *ret = op;
        return 0;
}

RegOp *fl_reg_op_free(RegOp *op) {
        if (!op)
                return NULL;
        if (op->prev)
                op->prev->next = op->next;
        else
                op->reg->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->call = fl_etcd_call_cancel(op->call);
        op->defer = sd_event_source_disable_unref(op->defer);
        for (size_t i = 0; i < ELEMENTSOF(op->key); i++) {
                free(op->key[i]);
                free(op->value[i]);
        }
        if (op->data && op->free_data)
                op->free_data(op->data);
        free(op);
        return NULL;
}

void fl_reg_req(RegOp *op, EtcdMethod m, const char *key, const char *value) {
        op->req = (EtcdRequest) {
                .method = m,
                .key = key,
                .value = value,
        };
}

/* Bookkeeping common to every response. */
static void op_account(RegOp *op, int k, const EtcdResponse *resp) {
        Registry *r = op->reg;

        /* The index the mirror will see our write at. Refreshes are not reported to watchers,
         * so waiting for them would never end. */
        if (k >= 0 && resp && resp->node && op->req.method != ETCD_GET && op->req.method != ETCD_WATCH &&
            !op->req.refresh) {
                r->write_index = MAX(r->write_index, resp->node->modified_index);
                fl_reg_mirror_wrote(r, resp->node->modified_index);
        }
}

int fl_reg_op_run(RegOp *op) {
        _cleanup_(fl_reg_op_freep) RegOp *o = op;
        int k = 0;
        EtcdResponse *resp = NULL;

        for (;;) {
                int s = o->step(o, k, resp);
                resp = fl_etcd_response_free(resp);
                if (s <= 0)
                        return s;
                k = fl_etcd_call(o->reg->etcd, &o->req, &resp);
                op_account(o, k, resp);
        }
}

static int op_defer_done(sd_event_source *s, void *userdata) {
        RegOp *op = userdata;
        RegDoneFn done = op->done;
        void *ud = op->userdata;
        Registry *r = op->reg;
        int result = op->result;

        fl_reg_op_free(op);
        if (done)
                done(r, result, ud);
        return 0;
}

static void op_finish(RegOp *op, int result) {
        int k;

        op->result = result;
        if (!op->reg->event) {
                fl_reg_op_free(op);
                return;
        }
        k = sd_event_add_defer(op->reg->event, &op->defer, op_defer_done, op);
        if (k < 0) {
                /* Cannot defer (OOM): report now rather than never. */
                op_defer_done(NULL, op);
        }
}

static void op_advance(RegOp *op, int k, const EtcdResponse *resp);

static void op_callback(EtcdClient *c, int k, EtcdResponse *resp, void *userdata) {
        RegOp *op = userdata;
        op->call = NULL;
        op_account(op, k, resp);
        op_advance(op, k, resp);
}

static void op_advance(RegOp *op, int k, const EtcdResponse *resp) {
        for (;;) {
                int s = op->step(op, k, resp);
                if (s <= 0) {
                        op_finish(op, s);
                        return;
                }
                k = fl_etcd_call_async(op->reg->etcd, &op->req, op_callback, op, &op->call);
                if (k >= 0)
                        return;
                op->call = NULL;
                resp = NULL;
        }
}

int fl_reg_op_start(RegOp *op, RegDoneFn done, void *userdata) {
        if (!op->reg->event) {
                fl_reg_op_free(op);
                return -ENOTCONN;
        }
        op->done = done;
        op->userdata = userdata;
        op_advance(op, 0, NULL);
        return 0;
}

/* ---- Loading ---- */

/* Adds what a GET of key holds to t (nothing when it is missing); *index: the highest etcd
 * index seen. */
static int load_add(Registry *r, RegTree *t, const char *key, bool recursive, uint64_t *index) {
        _cleanup_(fl_etcd_response_freep) EtcdResponse *resp = NULL;
        EtcdRequest req = { .method = ETCD_GET, .key = key, .recursive = recursive, .quorum = true };
        int k;

        k = fl_etcd_call(r->etcd, &req, &resp);
        if (k == -ENOENT) {
                if (resp)
                        *index = MAX(*index, MAX(resp->error_index, resp->etcd_index));
                return 0;
        }
        if (k < 0)
                return k;
        if (!resp)
                return -EBADMSG;
        *index = MAX(*index, resp->etcd_index);
        return fl_reg_tree_add_etcd(r, t, resp->node);
}

int fl_registry_load(Registry *r, RegSnapshot **ret) {
        RegTree t = {};
        uint64_t index = 0;
        int k;

        k = load_add(r, &t, r->prefix[0] ? r->prefix : "/", true, &index);
        if (k >= 0)
                k = fl_reg_snapshot_build(&t, index, ret);
        fl_reg_tree_clear(&t);
        return k;
}

int fl_registry_list_unit_names(Registry *r, char ***ret) {
        _cleanup_(fl_etcd_response_freep) EtcdResponse *resp = NULL;
        _cleanup_free_ char *key = reg_key(r, "job");
        EtcdRequest req = { .method = ETCD_GET, .key = key, .quorum = true };
        char **l;
        size_t k = 0;
        int e;

        if (!key)
                return -ENOMEM;
        e = fl_etcd_call(r->etcd, &req, &resp);
        if (e == -ENOENT) {
                *ret = new0(char *, 1);
                return *ret ? 0 : -ENOMEM;
        }
        if (e < 0)
                return e;
        if (!resp || !resp->node)
                return -EBADMSG;
        l = new0(char *, resp->node->n_nodes + 1);
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < resp->node->n_nodes; i++) {
                const char *name = strrchr(resp->node->nodes[i]->key, '/');

                if (!resp->node->nodes[i]->dir || !name || !fl_reg_valid_part(name + 1))
                        continue;
                l[k] = strdup(name + 1);
                if (!l[k++]) {
                        fl_strv_free(l);
                        return -ENOMEM;
                }
        }
        *ret = l;
        return 0;
}

int fl_registry_load_units(Registry *r, char *const *names, size_t n, RegSnapshot **ret) {
        RegTree t = {};
        uint64_t index = 0;
        int k = 0;

        for (size_t i = 0; k >= 0 && i < n; i++) {
                _cleanup_free_ char *job = NULL, *states = NULL, *object = NULL, *unit = NULL, *oname = NULL;
                uint8_t hash[20];
                char hex[41];
                RegNode *o;

                /* A name that is no single path element would read other keys: no such unit. */
                if (!fl_reg_valid_part(names[i]))
                        continue;
                job = reg_key(r, "job", names[i]);
                states = reg_key(r, "states", names[i]);
                if (asprintf(&object, "job/%s/object", names[i]) < 0)
                        object = NULL;
                if (!job || !states || !object) {
                        k = -ENOMEM;
                        break;
                }
                /* states/ first: when the engine moves a unit away (unschedules it, then the
                 * old agent unloads it), a job/ read later never pairs the gone state with the
                 * removed target. An unload can go the other way round (the agent is first):
                 * fleetctl never prints a machine for "inactive" (print_reached). */
                k = load_add(r, &t, states, true, &index);
                if (k >= 0)
                        k = load_add(r, &t, job, true, &index);
                if (k < 0)
                        break;
                o = fl_reg_tree_find(&t, object);
                if (!o || !o->value || fl_reg_decode_job_object(o->value, &oname, hash) < 0)
                        continue;   /* no unit, or one the snapshot skips as unreadable */
                fl_hash_to_hex(hash, hex);
                unit = reg_key(r, "unit", hex);
                k = unit ? load_add(r, &t, unit, false, &index) : -ENOMEM;
        }
        if (k >= 0)
                k = fl_reg_snapshot_build(&t, index, ret);
        fl_reg_tree_clear(&t);
        return k;
}

void fl_registry_stats(Registry *r, uint64_t *ret_requests, uint64_t *ret_bytes_in, uint64_t *ret_bytes_out) {
        fl_etcd_client_stats(r->etcd, ret_requests, ret_bytes_in, ret_bytes_out);
}

uint64_t fl_registry_write_index(Registry *r) {
        return r->write_index;
}
