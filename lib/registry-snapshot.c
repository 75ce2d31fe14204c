/* SPDX-License-Identifier: MIT */
/* registry-snapshot.c: decoding a copy of the registry's keys into a RegSnapshot (spec §4.1,
 * §4.3). Used for one-shot loads and for the mirror. Decoding never fails on content: a value
 * that does not decode drops what it describes (a unit without a readable job object, a state or
 * machine that is garbage) or reads as the default (a bogus target-state is inactive). */
#include <stdio.h>

#include "log.h"
#include "named-array.h"
#include "registry-internal.h"
#include "strv.h"

/* Parses the unit/<hash> value. */
static int parse_unit_node(const RegNode *n, UnitFile **ret) {
        _cleanup_free_ char *raw = NULL;
        int r;

        r = fl_reg_decode_unit_contents(n->value, &raw);
        if (r < 0)
                return r;
        r = fl_unit_file_parse(raw, strlen(raw), ret, NULL);
        if (r < 0)
                log_debug("registry: unit/%s does not parse: %s", n->key, strerror(-r));
        return r;
}


/* ---- Decoded values cached on mirror nodes ---- */

typedef struct RegDecoded {
        int error;                  /* decode result */
        uint8_t hash[20];           /* job/<unit>/object */
        RegUnitState st;            /* states/<unit>/<machine> */
        RegMachine m;               /* machines/<id>/object */
} RegDecoded;

void fl_reg_decoded_free(void *p) {
        RegDecoded *d = p;
        if (!d)
                return;
        fl_reg_unit_state_done(&d->st);
        fl_reg_machine_done(&d->m);
        free(d);
}

static int decode_job(bool cached, RegNode *n, uint8_t ret[20]) {
        RegDecoded *d = n->data;
        if (!cached)
                return fl_reg_decode_job_object(n->value, NULL, ret);
        if (!d) {
                d = new0(RegDecoded, 1);
                if (!d)
                        return -ENOMEM;
                d->error = fl_reg_decode_job_object(n->value, NULL, d->hash);
                if (d->error == -ENOMEM) {
                        free(d);
                        return -ENOMEM;
                }
                n->data = d;
        }
        if (d->error < 0)
                return d->error;
        memcpy(ret, d->hash, 20);
        return 0;
}

static int copy_str(const char *s, char **ret) {
        *ret = NULL;
        if (!s)
                return 0;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int decode_state(bool cached, RegNode *n, RegUnitState *ret) {
        RegDecoded *d = n->data;
        if (!cached)
                return fl_reg_decode_unit_state(n->value, ret);
        if (!d) {
                d = new0(RegDecoded, 1);
                if (!d)
                        return -ENOMEM;
                d->error = fl_reg_decode_unit_state(n->value, &d->st);
                if (d->error == -ENOMEM) {
                        free(d);
                        return -ENOMEM;
                }
                n->data = d;
        }
        if (d->error < 0)
                return d->error;
        memcpy(ret->hash, d->st.hash, sizeof(ret->hash));
        if (copy_str(d->st.machine_id, &ret->machine_id) < 0 || copy_str(d->st.load_state, &ret->load_state) < 0 ||
            copy_str(d->st.active_state, &ret->active_state) < 0 || copy_str(d->st.sub_state, &ret->sub_state) < 0) {
                fl_reg_unit_state_done(ret);
                return -ENOMEM;
        }
        return 0;
}

static int decode_machine(bool cached, RegNode *n, RegMachine *ret) {
        RegDecoded *d = n->data;
        RegMachine m = {};
        if (!cached)
                return fl_reg_decode_machine(n->value, ret);
        if (!d) {
                d = new0(RegDecoded, 1);
                if (!d)
                        return -ENOMEM;
                d->error = fl_reg_decode_machine(n->value, &d->m);
                if (d->error == -ENOMEM) {
                        free(d);
                        return -ENOMEM;
                }
                n->data = d;
        }
        if (d->error < 0)
                return d->error;
        m.disable_engine = d->m.disable_engine;
        m.grpc = d->m.grpc;
        if (copy_str(d->m.id, &m.id) < 0 || copy_str(d->m.public_ip, &m.public_ip) < 0 ||
            copy_str(d->m.version, &m.version) < 0)
                goto oom;
        if (d->m.n_metadata > 0) {
                m.metadata = new0(char *, 2 * d->m.n_metadata);
                if (!m.metadata)
                        goto oom;
                m.n_metadata = d->m.n_metadata;
                for (size_t i = 0; i < 2 * d->m.n_metadata; i++)
                        if (copy_str(d->m.metadata[i], &m.metadata[i]) < 0)
                                goto oom;
        }
        *ret = m;
        return 0;
oom:
        fl_reg_machine_done(&m);
        return -ENOMEM;
}

typedef struct Builder {
        const RegTree *tree;
        bool node_cache;    /* decoded values may be kept on the tree's nodes */
        RegSnapshot *s;
        size_t units_alloc, states_alloc, machines_alloc;
        int error; /* -ENOMEM only */

        /* The job/<name>/ group being read. */
        const char *unit_name;
        size_t unit_name_len;
        RegNode *object, *target_state, *target, *job_state, *unschedulable;

        /* The machines/<id>/ group being read. */
        const char *machine_id;
        size_t machine_id_len;
        RegNode *machine_object;
        RegNode **metadata;
        size_t n_metadata, metadata_alloc;
} Builder;

static int grow(void **p, size_t *alloc, size_t need, size_t size) {
        void *q;
        size_t a;
        if (need <= *alloc)
                return 0;
        a = MAX(need, MAX(*alloc * 2, (size_t) 16));
        q = realloc(*p, a * size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *alloc = a;
        return 0;
}

static int strdup_nonempty(const RegNode *n, char **ret) {
        *ret = NULL;
        if (!n || isempty(n->value))
                return 0;
        *ret = strdup(n->value);
        return *ret ? 0 : -ENOMEM;
}

/* Parses the file and requirements of unit name with hash hex. */
static int unit_file_get(Builder *b, const char *name, const char *hex, RegUnit *u) {
        _cleanup_free_ char *key = NULL;
        const RegNode *n;
        UnitFile *f = NULL;
        int r;

        if (asprintf(&key, "unit/%s", hex) < 0)
                return -ENOMEM;
        n = fl_reg_tree_find(b->tree, key);
        if (!n || parse_unit_node(n, &f) < 0)
                return 0;
        r = fl_unit_requirements_parse(f, name, &u->req);
        if (r < 0) {
                fl_unit_file_free(f);
                return r;
        }
        u->file = f;
        return 0;
}

static void reg_unit_done(RegUnit *u, bool shared) {
        free(u->name);
        free(u->target);
        free(u->job_state);
        free(u->unschedulable);
        if (!shared) {
                fl_unit_file_free(u->file);
                fl_unit_requirements_done(&u->req);
        }
        *u = (RegUnit) {};
}

static int flush_unit(Builder *b) {
        _cleanup_free_ char *name = NULL;
        uint8_t hash[20];
        RegUnit u = {};
        int r;

        if (!b->unit_name)
                return 0;
        name = strndup(b->unit_name, b->unit_name_len);
        b->unit_name = NULL;
        if (!name)
                return -ENOMEM;
        if (!b->object)
                return 0;   /* no job object: no unit */
        r = decode_job(b->node_cache, b->object, hash);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return 0;   /* unreadable job object: no unit */

        r = grow((void **) &b->s->units, &b->units_alloc, b->s->n_units + 1, sizeof(RegUnit));
        if (r < 0)
                return r;

        fl_hash_to_hex(hash, u.hash);
        r = unit_file_get(b, name, u.hash, &u);
        if (r < 0)
                return r;
        u.global = u.file && u.req.global;
        u.target_state = b->target_state ? fl_job_state_from_string(b->target_state->value)
                                         : JOB_STATE_INACTIVE;
        if (u.target_state < 0)
                u.target_state = JOB_STATE_INACTIVE;
        if (strdup_nonempty(b->target, &u.target) < 0 || strdup_nonempty(b->job_state, &u.job_state) < 0 ||
            strdup_nonempty(b->unschedulable, &u.unschedulable) < 0) {
                reg_unit_done(&u, false);
                return -ENOMEM;
        }
        u.current_state = JOB_STATE_INACTIVE;
        if (!u.global && u.target) {
                _cleanup_free_ char *sk = NULL;
                if (asprintf(&sk, "states/%s/%s", name, u.target) < 0) {
                        reg_unit_done(&u, false);
                        return -ENOMEM;
                }
                if (fl_reg_tree_find(b->tree, sk))
                        u.current_state = streq_ptr(u.job_state, u.target) ? JOB_STATE_LAUNCHED
                                                                           : JOB_STATE_LOADED;
        }
        u.name = TAKE_PTR(name);
        b->s->units[b->s->n_units++] = u;
        return 0;
}

static int flush_machine(Builder *b) {
        _cleanup_free_ char *key_id = NULL;
        RegMachine m = {};
        int r;

        if (!b->machine_id)
                return 0;
        b->machine_id = NULL;
        r = b->machine_object ? decode_machine(b->node_cache, b->machine_object, &m) : -EBADMSG;
        if (r < 0) {
                b->n_metadata = 0;
                return r == -ENOMEM ? r : 0;
        }
        for (size_t i = 0; i < b->n_metadata; i++) {
                const RegNode *n = b->metadata[i];
                const char *k = strrchr(n->key, '/') + 1;
                r = fl_reg_machine_set_metadata(&m, k, isempty(n->value) ? NULL : n->value);
                if (r < 0) {
                        fl_reg_machine_done(&m);
                        return r;
                }
        }
        b->n_metadata = 0;
        if (isempty(m.id)) {
                /* Use the ID of the key when the object lacks one. */
                key_id = strndup(b->machine_object->key + strlen("machines/"),
                                 strlen(b->machine_object->key) - strlen("machines/") - strlen("/object"));
                if (!key_id) {
                        fl_reg_machine_done(&m);
                        return -ENOMEM;
                }
                free(m.id);
                m.id = TAKE_PTR(key_id);
        }
        r = grow((void **) &b->s->machines, &b->machines_alloc, b->s->n_machines + 1, sizeof(RegMachine));
        if (r < 0) {
                fl_reg_machine_done(&m);
                return r;
        }
        b->s->machines[b->s->n_machines++] = m;
        return 0;
}

/* The first path element of p: its length; *ret_rest points after the '/' (or at the end). */
static size_t path_elem(const char *p, const char **ret_rest) {
        const char *e = strchrnul(p, '/');
        *ret_rest = *e ? e + 1 : e;
        return (size_t) (e - p);
}

static int build_one(RegNode *n, void *userdata) {
        Builder *b = userdata;
        const char *rest, *field;
        size_t l;
        int r;

        if ((rest = startswith(n->key, "job/"))) {
                l = path_elem(rest, &field);
                if (l == 0 || !*field || strchr(field, '/'))
                        return 0;
                if (!b->unit_name || b->unit_name_len != l || memcmp(b->unit_name, rest, l) != 0) {
                        r = flush_unit(b);
                        if (r < 0)
                                return r;
                        b->unit_name = rest;
                        b->unit_name_len = l;
                        b->object = b->target_state = b->target = b->job_state = b->unschedulable = NULL;
                }
                if (streq(field, "object"))
                        b->object = n;
                else if (streq(field, "target-state"))
                        b->target_state = n;
                else if (streq(field, "target"))
                        b->target = n;
                else if (streq(field, "job-state"))
                        b->job_state = n;
                else if (streq(field, "unschedulable"))
                        b->unschedulable = n;
                return 0;
        }
        r = flush_unit(b);
        if (r < 0)
                return r;

        if ((rest = startswith(n->key, "machines/"))) {
                l = path_elem(rest, &field);
                if (l == 0 || !*field)
                        return 0;
                if (!b->machine_id || b->machine_id_len != l || memcmp(b->machine_id, rest, l) != 0) {
                        r = flush_machine(b);
                        if (r < 0)
                                return r;
                        b->machine_id = rest;
                        b->machine_id_len = l;
                        b->machine_object = NULL;
                        b->n_metadata = 0;
                }
                if (streq(field, "object"))
                        b->machine_object = n;
                else if ((rest = startswith(field, "metadata/")) && *rest && !strchr(rest, '/')) {
                        r = grow((void **) &b->metadata, &b->metadata_alloc, b->n_metadata + 1,
                                 sizeof(RegNode *));
                        if (r < 0)
                                return r;
                        b->metadata[b->n_metadata++] = n;
                }
                return 0;
        }
        r = flush_machine(b);
        if (r < 0)
                return r;

        if ((rest = startswith(n->key, "states/"))) {
                RegUnitState st = {};
                l = path_elem(rest, &field);
                if (l == 0 || !*field || strchr(field, '/'))
                        return 0;
                r = decode_state(b->node_cache, n, &st);
                if (r < 0)
                        return r == -ENOMEM ? r : 0;
                st.name = strndup(rest, l);
                if (!st.name || (!st.machine_id && !(st.machine_id = strdup(field)))) {
                        fl_reg_unit_state_done(&st);
                        return -ENOMEM;
                }
                r = grow((void **) &b->s->states, &b->states_alloc, b->s->n_states + 1, sizeof(RegUnitState));
                if (r < 0) {
                        fl_reg_unit_state_done(&st);
                        return r;
                }
                b->s->states[b->s->n_states++] = st;
                return 0;
        }
        if (streq(n->key, "lease/engine-leader")) {
                RegLease *le = &b->s->lease;
                free(le->machine_id);
                le->machine_id = NULL;
                r = fl_reg_decode_lease(n->value, &le->machine_id, &le->version);
                if (r < 0)
                        return r;
                if (isempty(le->machine_id))
                        le->machine_id = mfree(le->machine_id);
                le->index = n->modified_index;
                le->ttl_sec = n->ttl_sec;
                return 0;
        }
        if (streq(n->key, "engine/version")) {
                char *end;
                long v;
                errno = 0;
                v = strtol(n->value, &end, 10);
                b->s->engine_version = errno == 0 && end != n->value && *end == 0 && v >= 0 && v <= INT32_MAX ? (int) v : 0;
                return 0;
        }
        return 0;
}

static int unit_cmp(const void *a, const void *b) {
        return strcmp(((const RegUnit *) a)->name, ((const RegUnit *) b)->name);
}

static int state_cmp(const void *a, const void *b) {
        const RegUnitState *x = a, *y = b;
        int c = strcmp(x->name, y->name);
        return c != 0 ? c : strcmp(x->machine_id, y->machine_id);
}

static int machine_cmp(const void *a, const void *b) {
        return strcmp(((const RegMachine *) a)->id, ((const RegMachine *) b)->id);
}

int fl_reg_snapshot_build(const RegTree *t, uint64_t index, RegSnapshot **ret) {
        _cleanup_(fl_reg_snapshot_freep) RegSnapshot *s = NULL;
        /* Only a tree that frees them can hold decoded values (the mirror's). */
        Builder b = { .tree = t, .node_cache = t->free_data == fl_reg_decoded_free };
        int r;

        s = new0(RegSnapshot, 1);
        if (!s)
                return -ENOMEM;
        s->index = index;
        b.s = s;

        r = fl_reg_tree_walk(t, build_one, &b);
        if (r >= 0)
                r = flush_unit(&b);
        if (r >= 0)
                r = flush_machine(&b);
        free(b.metadata);
        if (r < 0)
                return r;

        if (s->n_units > 1)
                qsort(s->units, s->n_units, sizeof(RegUnit), unit_cmp);
        if (s->n_states > 1)
                qsort(s->states, s->n_states, sizeof(RegUnitState), state_cmp);
        if (s->n_machines > 1)
                qsort(s->machines, s->n_machines, sizeof(RegMachine), machine_cmp);
        /* Two machine directories whose objects claim the same ID: keep the first. */
        for (size_t i = 1; i < s->n_machines;)
                if (streq(s->machines[i - 1].id, s->machines[i].id)) {
                        fl_reg_machine_done(&s->machines[i]);
                        memmove(s->machines + i, s->machines + i + 1, (s->n_machines - i - 1) * sizeof(RegMachine));
                        s->n_machines--;
                } else
                        i++;
        *ret = TAKE_PTR(s);
        return 0;
}

RegSnapshot *fl_reg_snapshot_free(RegSnapshot *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_units; i++)
                reg_unit_done(&s->units[i], s->shared_files);
        free(s->units);
        for (size_t i = 0; i < s->n_states; i++)
                fl_reg_unit_state_done(&s->states[i]);
        free(s->states);
        for (size_t i = 0; i < s->n_machines; i++)
                fl_reg_machine_done(&s->machines[i]);
        free(s->machines);
        free(s->lease.machine_id);
        free(s);
        return NULL;
}

/* Units, machines and states all start with their key (see fl_sorted_find()). */
_Static_assert(offsetof(RegUnit, name) == 0 && offsetof(RegMachine, id) == 0 &&
                       offsetof(RegUnitState, name) == 0,
               "fl_sorted_find() needs the key first");

const RegUnit *fl_reg_snapshot_find_unit(const RegSnapshot *s, const char *name) {
        ssize_t i;
        if (!s)
                return NULL;
        i = fl_sorted_find(s->units, s->n_units, sizeof(RegUnit), name);
        return i < 0 ? NULL : &s->units[i];
}

const RegMachine *fl_reg_snapshot_find_machine(const RegSnapshot *s, const char *id) {
        ssize_t i;
        if (!s)
                return NULL;
        i = fl_sorted_find(s->machines, s->n_machines, sizeof(RegMachine), id);
        return i < 0 ? NULL : &s->machines[i];
}

ssize_t fl_reg_snapshot_find_states(const RegSnapshot *s, const char *name) {
        if (!s)
                return -1;
        /* The first of the states of name (one per machine). */
        return fl_sorted_find(s->states, s->n_states, sizeof(RegUnitState), name);
}

const char *fl_reg_machine_metadata(const RegMachine *m, const char *key) {
        ssize_t i;
        if (!m)
                return NULL;
        /* Pairs k, v: an array of two-pointer elements keyed by k. */
        i = fl_sorted_find(m->metadata, m->n_metadata, 2 * sizeof(char *), key);
        return i < 0 ? NULL : m->metadata[2 * i + 1];
}

/* ---- Comparison (tests and fuzzers: the mirror's store against a full build) ---- */

static const char *strnull(const char *s) {
        return s ?: "(null)";
}

static bool req_same(const UnitRequirements *a, const UnitRequirements *b) {
        if (a->global != b->global || !streq_ptr(a->machine_id, b->machine_id) || a->n_metadata != b->n_metadata ||
            !fl_strv_equal(a->machine_of, b->machine_of) || !fl_strv_equal(a->conflicts, b->conflicts) ||
            !fl_strv_equal(a->replaces, b->replaces) || !fl_strv_equal(a->unknown_keys, b->unknown_keys))
                return false;
        return true;
}

static char *state_line(const RegUnitState *s) {
        char *l = NULL;
        if (asprintf(&l, "%s|%s|%s|%s|%s|%s", s->name, s->machine_id, strnull(s->load_state),
                     strnull(s->active_state), strnull(s->sub_state), s->hash) < 0)
                return NULL;
        return l;
}

static char **state_lines(const RegSnapshot *s) {
        char **l = NULL;
        for (size_t i = 0; i < s->n_states; i++)
                if (fl_strv_push(&l, state_line(&s->states[i])) < 0)
                        return fl_strv_free(l);
        fl_strv_sort(l);
        return l;
}

#define DIFF(...)                                            \
        do {                                                 \
                if (ret_why && asprintf(ret_why, __VA_ARGS__) < 0) \
                        *ret_why = NULL;                     \
                return 1;                                    \
        } while (0)

int fl_reg_snapshot_compare(const RegSnapshot *a, const RegSnapshot *b, char **ret_why) {
        if (a->n_units != b->n_units)
                DIFF("%zu units vs %zu", a->n_units, b->n_units);
        for (size_t i = 0; i < a->n_units; i++) {
                const RegUnit *x = &a->units[i], *y = &b->units[i];
                if (!streq(x->name, y->name))
                        DIFF("unit %zu: %s vs %s", i, x->name, y->name);
                if (!streq(x->hash, y->hash) || x->target_state != y->target_state ||
                    !streq_ptr(x->target, y->target) || !streq_ptr(x->job_state, y->job_state) ||
                    x->current_state != y->current_state || !streq_ptr(x->unschedulable, y->unschedulable) ||
                    x->global != y->global)
                        DIFF("unit %s: fields differ (hash %s/%s ts %d/%d target %s/%s js %s/%s cs %d/%d)", x->name,
                             x->hash, y->hash, x->target_state, y->target_state, strnull(x->target),
                             strnull(y->target), strnull(x->job_state), strnull(y->job_state), x->current_state,
                             y->current_state);
                if (!x->file != !y->file || (x->file && !fl_unit_file_equal(x->file, y->file)))
                        DIFF("unit %s: file differs (%s vs %s)", x->name, x->file ? "file" : "none",
                             y->file ? "file" : "none");
                if (!req_same(&x->req, &y->req))
                        DIFF("unit %s: requirements differ", x->name);
        }
        if (a->n_states != b->n_states)
                DIFF("%zu states vs %zu", a->n_states, b->n_states);
        {
                char **la = state_lines(a), **lb = state_lines(b);
                bool same = fl_strv_equal(la, lb);
                fl_strv_free(la);
                fl_strv_free(lb);
                if (!same)
                        DIFF("states differ");
        }
        for (size_t i = 0; i + 1 < a->n_states; i++)
                if (strcmp(a->states[i].name, a->states[i + 1].name) > 0 ||
                    (streq(a->states[i].name, a->states[i + 1].name) &&
                     strcmp(a->states[i].machine_id, a->states[i + 1].machine_id) > 0))
                        DIFF("states not sorted at %zu", i);
        if (a->n_machines != b->n_machines)
                DIFF("%zu machines vs %zu", a->n_machines, b->n_machines);
        for (size_t i = 0; i < a->n_machines; i++) {
                const RegMachine *x = &a->machines[i], *y = &b->machines[i];
                if (!streq(x->id, y->id) || !streq_ptr(x->public_ip, y->public_ip) ||
                    !streq_ptr(x->version, y->version) || x->n_metadata != y->n_metadata ||
                    x->disable_engine != y->disable_engine || x->grpc != y->grpc)
                        DIFF("machine %s differs", x->id);
                for (size_t k = 0; k < 2 * x->n_metadata; k++)
                        if (!streq_ptr(x->metadata[k], y->metadata[k]))
                                DIFF("machine %s metadata differs", x->id);
        }
        if (!streq_ptr(a->lease.machine_id, b->lease.machine_id) || a->lease.version != b->lease.version ||
            a->lease.index != b->lease.index || a->lease.ttl_sec != b->lease.ttl_sec)
                DIFF("lease differs");
        if (a->engine_version != b->engine_version)
                DIFF("engine version %d vs %d", a->engine_version, b->engine_version);
        return 0;
}
