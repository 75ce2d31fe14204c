/* SPDX-License-Identifier: MIT */
/* agent-publish.c: the agent's writes to the registry (spec §6.6, §6.7): job-state heartbeats
 * of launched units and unit states, with TTL agent_ttl. Changes go out at once; the whole set
 * is re-sent on the refresh cadence. At most AGENT_PUB_MAX_IN_FLIGHT requests run at once and
 * at most one per key, so a delete can never overtake the write before it. */
#include <inttypes.h>
#include <stdio.h>

#include "agent.h"
#include "log.h"
#include "named-array.h"
#include "strv.h"

#define AGENT_PUB_MAX_IN_FLIGHT 16U
#define USEC_PER_SEC UINT64_C(1000000)
#define log_oom_debug() log_debug("Out of memory")

static void pub_pump(AgentPublisher *p);

uint64_t fl_agent_ttl_sec(Server *s) {
        uint64_t t = s->config->agent_ttl_usec;
        /* etcd TTLs are whole seconds; round up, at least 1. */
        return MAX((t + USEC_PER_SEC - 1) / USEC_PER_SEC, UINT64_C(1));
}

/* ---- entries ---- */

static AgentPub *pub_free(AgentPub *e) {
        if (!e)
                return NULL;
        free(e->name);
        free(e->load);
        free(e->active);
        free(e->sub);
        return mfree(e);
}

static AgentPub *pub_find(AgentPublisher *p, const char *name) {
        bool found;
        size_t i = fl_named_array_index(p->pubs, p->n_pubs, name, &found);
        return found ? p->pubs[i] : NULL;
}

static AgentPub *pub_get(AgentPublisher *p, const char *name) {
        AgentPub *e;
        bool found;
        size_t i = fl_named_array_index(p->pubs, p->n_pubs, name, &found);

        if (found)
                return p->pubs[i];
        e = new0(AgentPub, 1);
        if (!e)
                return NULL;
        e->name = strdup(name);
        if (!e->name)
                return pub_free(e);
        if (fl_named_array_insert(&p->pubs, &p->n_pubs, &p->n_allocated, i, e) < 0)
                return pub_free(e);
        return e;
}

static bool pub_idle(const AgentPub *e) {
        return !e->hb_want && !e->hb_exists && !e->load && !e->st_exists && !e->hb_dirty && !e->st_dirty &&
               !e->hb_busy && !e->st_busy;
}

/* Drops entries with nothing left to do. */
static void pub_sweep(AgentPublisher *p) {
        size_t j = 0;

        for (size_t i = 0; i < p->n_pubs; i++) {
                if (pub_idle(p->pubs[i]))
                        pub_free(p->pubs[i]);
                else
                        p->pubs[j++] = p->pubs[i];
        }
        p->n_pubs = j;
}

/* ---- registry requests ---- */

static AgentOp *op_free(AgentOp *op) {
        if (!op)
                return NULL;
        free(op->name);
        return mfree(op);
}

static void op_unlink(AgentPublisher *p, AgentOp *op) {
        if (op->prev)
                op->prev->next = op->next;
        else if (p->ops == op)
                p->ops = op->next;
        if (op->next)
                op->next->prev = op->prev;
        op->prev = op->next = NULL;
}

static bool error_is_unreachable(int error) {
        switch (-error) {
        case ETIMEDOUT:
        case ECONNREFUSED:
        case ECONNRESET:
        case ECONNABORTED:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case ENOTCONN:
        case EPIPE:
        case EAGAIN:
        case EIO:
                return true;
        default:
                return false;
        }
}

static void registry_result(AgentPublisher *p, int error) {
        if (error < 0 && error_is_unreachable(error)) {
                if (!p->registry_down)
                        log_warning_errno(error,
                                          "Lost contact with the registry: %m; units are left as they are "
                                          "until it is back");
                p->registry_down = true;
                p->registry_error = error;
        } else
                fl_agent_pub_registry_contact(p);
}

void fl_agent_pub_registry_contact(AgentPublisher *p) {
        if (p->registry_down)
                log_info("Registry reachable again");
        p->registry_down = false;
        p->registry_error = 0;
}

bool fl_agent_pub_registry_ok(AgentPublisher *p) {
        return !p->registry_down;
}

static void on_pub_op_done(Registry *r, int error, void *userdata) {
        AgentOp *op = userdata;
        AgentPublisher *p = op->p;
        AgentOpKind kind = op->kind;
        AgentPub *e;

        if (!p) { /* the agent is gone */
                op_free(op);
                return;
        }
        op_unlink(p, op);
        p->in_flight--;
        registry_result(p, error);
        e = pub_find(p, op->name);
        if (e) {
                bool ok = error >= 0 || error == -ENOENT;
                switch (kind) {
                case AGENT_OP_HEARTBEAT:
                        e->hb_busy = false;
                        break;
                case AGENT_OP_CLEAR_HEARTBEAT:
                        e->hb_busy = false;
                        if (ok && !e->hb_want)
                                e->hb_exists = false;
                        break;
                case AGENT_OP_SAVE_STATE:
                        e->st_busy = false;
                        break;
                case AGENT_OP_REMOVE_STATE:
                        e->st_busy = false;
                        if (ok && !e->load)
                                e->st_exists = false;
                        break;
                }
                if (error < 0 && error != -ENOENT)
                        log_debug("Registry write (%d) for %s failed: %s", (int) kind, e->name,
                                  strerror(-error));
        }
        op_free(op);
        pub_pump(p);
}

static int op_send(AgentPublisher *p, AgentPub *e, AgentOpKind kind) {
        Server *s = p->s;
        AgentOp *op;
        int r;

        op = new0(AgentOp, 1);
        if (!op)
                return -ENOMEM;
        *op = (AgentOp){.p = p, .kind = kind, .name = strdup(e->name)};
        if (!op->name)
                return op_free(op), -ENOMEM;
        switch (kind) {
        case AGENT_OP_HEARTBEAT:
                r = fl_registry_job_heartbeat_async(s->registry, e->name, s->self.id, fl_agent_ttl_sec(s),
                                                    on_pub_op_done, op);
                break;
        case AGENT_OP_CLEAR_HEARTBEAT:
                r = fl_registry_job_clear_heartbeat_async(s->registry, e->name, on_pub_op_done, op);
                break;
        case AGENT_OP_SAVE_STATE: {
                RegUnitState st = {
                        .name = e->name,
                        .machine_id = s->self.id,
                        .load_state = e->load,
                        .active_state = e->active,
                        .sub_state = e->sub,
                };
                memcpy(st.hash, e->hash, sizeof(st.hash));
                r = fl_registry_save_unit_state_async(s->registry, &st, fl_agent_ttl_sec(s), on_pub_op_done,
                                                      op);
                break;
        }
        case AGENT_OP_REMOVE_STATE:
                r = fl_registry_remove_unit_state_async(s->registry, e->name, s->self.id, on_pub_op_done,
                                                        op);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                op_free(op);
                return r;
        }
        op->next = p->ops;
        if (p->ops)
                p->ops->prev = op;
        p->ops = op;
        p->in_flight++;
        return 0;
}

static bool pub_has_work(AgentPublisher *p) {
        if (p->in_flight > 0)
                return true;
        for (size_t i = 0; i < p->n_pubs; i++)
                if (p->pubs[i]->hb_dirty || p->pubs[i]->st_dirty)
                        return true;
        return false;
}

/* Sends what is dirty, within the limits. A request that cannot even be queued stays dirty
 * and is retried with the next refresh. */
static void pub_pump(AgentPublisher *p) {
        for (size_t i = 0; i < p->n_pubs && p->in_flight < AGENT_PUB_MAX_IN_FLIGHT; i++) {
                AgentPub *e = p->pubs[i];
                int r;

                if (e->hb_dirty && !e->hb_busy) {
                        e->hb_dirty = false;
                        if (e->hb_want || e->hb_exists) {
                                r = op_send(p, e,
                                            e->hb_want ? AGENT_OP_HEARTBEAT : AGENT_OP_CLEAR_HEARTBEAT);
                                if (r < 0)
                                        log_debug("Cannot send job-state of %s: %s", e->name, strerror(-r));
                                else {
                                        e->hb_busy = true;
                                        if (e->hb_want)
                                                e->hb_exists = true;
                                }
                        }
                }
                if (p->in_flight >= AGENT_PUB_MAX_IN_FLIGHT)
                        break;
                if (e->st_dirty && !e->st_busy) {
                        e->st_dirty = false;
                        if (e->load || e->st_exists) {
                                r = op_send(p, e, e->load ? AGENT_OP_SAVE_STATE : AGENT_OP_REMOVE_STATE);
                                if (r < 0)
                                        log_debug("Cannot send state of %s: %s", e->name, strerror(-r));
                                else {
                                        e->st_busy = true;
                                        if (e->load)
                                                e->st_exists = true;
                                }
                        }
                }
        }
        pub_sweep(p);
        if (p->drained && !pub_has_work(p)) {
                void (*drained)(Agent * a) = p->drained;
                p->drained = NULL;
                drained(p->agent);
        }
}

/* ---- interface ---- */

void fl_agent_pub_init(AgentPublisher *p, Agent *a, Server *s) {
        *p = (AgentPublisher){.agent = a, .s = s};
}

void fl_agent_pub_done(AgentPublisher *p) {
        /* Requests still in flight complete later: orphan them. */
        for (AgentOp *op = p->ops; op; op = op->next)
                op->p = NULL;
        p->ops = NULL;
        for (size_t i = 0; i < p->n_pubs; i++)
                pub_free(p->pubs[i]);
        p->pubs = mfree(p->pubs);
        p->n_pubs = p->n_allocated = 0;
        p->drained = NULL;
}

void fl_agent_pub_set_launched(AgentPublisher *p, const char *name, bool launched) {
        AgentPub *e = launched ? pub_get(p, name) : pub_find(p, name);

        if (!e)
                return;
        if (e->hb_want == launched)
                return;
        e->hb_want = launched;
        e->hb_dirty = true;
        pub_pump(p);
}

static bool streq_null(const char *a, const char *b) {
        return streq_ptr(a, b);
}

void fl_agent_pub_set_state(AgentPublisher *p, const char *name, const char *load, const char *active,
                            const char *sub, const char *hash) {
        AgentPub *e;

        /* fleet refuses states without hash; we also wait until systemd told us all three. */
        if (!load || !active || !sub || isempty(hash))
                load = active = sub = NULL;
        e = load ? pub_get(p, name) : pub_find(p, name);
        if (!e)
                return;
        if (streq_null(e->load, load) && streq_null(e->active, active) && streq_null(e->sub, sub) &&
            (!load || streq(e->hash, hash)))
                return;
        free(e->load);
        free(e->active);
        free(e->sub);
        e->load = load ? strdup(load) : NULL;
        e->active = active ? strdup(active) : NULL;
        e->sub = sub ? strdup(sub) : NULL;
        if (load && (!e->load || !e->active || !e->sub)) {
                e->load = mfree(e->load);
                e->active = mfree(e->active);
                e->sub = mfree(e->sub);
        }
        snprintf(e->hash, sizeof(e->hash), "%s", load ? hash : "");
        e->st_dirty = true;
        pub_pump(p);
}

void fl_agent_pub_forget(AgentPublisher *p, const char *name) {
        AgentPub *e = pub_get(p, name);

        if (!e)
                return (void) log_oom_debug();
        e->hb_want = false;
        e->hb_exists = true;
        e->hb_dirty = true;
        e->load = mfree(e->load);
        e->active = mfree(e->active);
        e->sub = mfree(e->sub);
        e->hash[0] = 0;
        e->st_exists = true;
        e->st_dirty = true;
        pub_pump(p);
}

void fl_agent_pub_refresh(AgentPublisher *p) {
        for (size_t i = 0; i < p->n_pubs; i++) {
                AgentPub *e = p->pubs[i];
                if (e->hb_want || e->hb_exists)
                        e->hb_dirty = true;
                if (e->load || e->st_exists)
                        e->st_dirty = true;
        }
        pub_pump(p);
}

void fl_agent_pub_purge(AgentPublisher *p, void (*drained)(Agent *a)) {
        _cleanup_strv_free_ char **names = NULL;

        /* Names first: forgetting may sweep entries under our feet. */
        for (size_t i = 0; i < p->n_pubs; i++)
                if (fl_strv_extend(&names, p->pubs[i]->name) < 0)
                        log_oom_debug();
        STRV_FOREACH(n, names)
        fl_agent_pub_forget(p, *n);
        p->drained = drained;
        pub_pump(p);
}

cJSON *fl_agent_pub_dump(AgentPublisher *p) {
        cJSON *o = cJSON_CreateObject();

        if (!o)
                return NULL;
        for (size_t i = 0; i < p->n_pubs; i++) {
                AgentPub *e = p->pubs[i];
                cJSON *u = cJSON_CreateObject();
                if (!u)
                        break;
                if (e->load) {
                        cJSON_AddStringToObject(u, "loadState", e->load);
                        cJSON_AddStringToObject(u, "activeState", e->active);
                        cJSON_AddStringToObject(u, "subState", e->sub);
                        cJSON_AddStringToObject(u, "unitHash", e->hash);
                }
                cJSON_AddBoolToObject(u, "heartbeat", e->hb_want);
                cJSON_AddBoolToObject(u, "pending", e->hb_dirty || e->st_dirty || e->hb_busy || e->st_busy);
                cJSON_AddItemToObject(o, e->name, u);
        }
        return o;
}
