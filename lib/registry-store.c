/* SPDX-License-Identifier: MIT */
/* registry-store.c: the daemons' mirror of the registry, decoded as each event arrives, so its
 * snapshot is always current at the cost of the one unit or state the event touched. (The full
 * build of registry-snapshot.c costs O(all keys), ~100 ms at 10,000 units, and ran after every
 * change: O(N²) for a submit of N units.)
 *
 * It is also what keeps a daemon small: raw JSON values are not kept, only what they decode to;
 * machine IDs and systemd's state words are interned (10,000 units point at a few hundred
 * machines); the snapshot's strings are borrowed from the records below, not copied.
 *
 * job/, states/ and unit/ are decoded here. The legacy state/<unit> (written by fleet v1, never
 * read) is dropped. Every other key (machines, lease, engine version, anything unknown: few)
 * stays raw in a small key tree that the full builder decodes when it changed.
 *
 * The result must equal fl_reg_snapshot_build() on the same keys, whatever they hold:
 * test-registry and the registry-snapshot fuzzer compare the two. */
#include <assert.h>

#include "log.h"
#include "registry-internal.h"

enum {
        JOB_OBJECT = 1 << 0,
        JOB_TARGET_STATE = 1 << 1,
        JOB_TARGET = 1 << 2,
        JOB_JOB_STATE = 1 << 3,
        JOB_UNSCHEDULABLE = 1 << 4,
};

/* job/<name>/: what its keys say. Kept while any of them exists, even without an object (the
 * unit then does not exist, but the other keys count once an object appears). */
typedef struct JobRec {
        unsigned fields;                /* JOB_* present */
        bool object_ok;                 /* the object decodes: the unit exists */
        bool fileless;                  /* counted in RegStore.n_fileless */
        uint8_t hash[20];
        JobState target_state;          /* INACTIVE when absent or not a state */
        const char *target, *job_state; /* interned; NULL when absent or "" */
        char *unschedulable;            /* NULL when absent or "" */
        UnitFile *file;                 /* borrowed from its FileRec; NULL: none or unparsable */
        UnitRequirements req;           /* of file for this name */
} JobRec;

/* unit/<hex> */
typedef struct FileRec {
        uint64_t modified_index;
        UnitFile *file;                 /* NULL: does not parse */
        bool compact;                   /* file is one block (compact_file()): free() it */
} FileRec;

/* States are kept sorted by (name, machine_id, key machine); the <machine> of each one's key
 * sits in a parallel array (it is normally machine_id, but the JSON may say otherwise). */
struct RegStore {
        RegTree jobs;                   /* name -> JobRec */
        RegTree files;                  /* hex -> FileRec */
        RegTree bad_states;             /* "name/machine" whose value does not decode */
        RegTree intern;                 /* string -> reference count (in data) */
        RegTree other;                  /* everything else, raw */
        bool other_dirty;
        bool bulk;                      /* loading: arrays are built at the end */
        size_t n_fileless;              /* units (object_ok) without a parsed file */
        RegSnapshot snap;
        const char **state_keys;
        size_t units_alloc, states_alloc;
};

/* ---- Interned strings ---- */

static const char *intern(RegStore *s, const char *str) {
        RegNode *n;

        if (!str)
                return NULL;
        n = fl_reg_tree_ensure(&s->intern, str);
        if (!n)
                return NULL;
        n->data = (void *) ((uintptr_t) n->data + 1);
        return n->key;
}

static void unintern(RegStore *s, const char *str) {
        RegNode *n;

        if (!str)
                return;
        n = fl_reg_tree_find(&s->intern, str);
        if (!n)
                return;
        n->data = (void *) ((uintptr_t) n->data - 1);
        if (!n->data)
                fl_reg_tree_remove(&s->intern, n->key);
}

/* ---- Records ---- */

static void file_rec_file_free(FileRec *f) {
        if (f->compact)
                free(f->file);
        else
                fl_unit_file_free(f->file);
        f->file = NULL;
        f->compact = false;
}

static void file_rec_free(void *p) {
        FileRec *f = p;
        file_rec_file_free(f);
        free(f);
}

/* The parsed file in one allocation (header, options, strings): a parse keeps each option's
 * three strings and a doubling array apart, ~3x the text. Only the store holds these. */
static UnitFile *compact_file(const UnitFile *u) {
        size_t size = sizeof(UnitFile) + u->n_options * sizeof(UnitOption);
        UnitFile *c;
        char *p;

        for (size_t i = 0; i < u->n_options; i++)
                size += strlen(u->options[i].section) + strlen(u->options[i].name) + strlen(u->options[i].value) + 3;
        c = malloc(size);
        if (!c)
                return NULL;
        c->options = u->n_options > 0 ? (UnitOption *) (c + 1) : NULL;
        c->n_options = c->n_allocated = u->n_options;
        p = (char *) ((UnitOption *) (c + 1) + u->n_options);
        for (size_t i = 0; i < u->n_options; i++) {
                c->options[i].section = p;
                p = stpcpy(p, u->options[i].section) + 1;
                c->options[i].name = p;
                p = stpcpy(p, u->options[i].name) + 1;
                c->options[i].value = p;
                p = stpcpy(p, u->options[i].value) + 1;
        }
        return c;
}

static void job_detach_file(RegStore *s, JobRec *j) {
        if (j->fileless)
                s->n_fileless--;
        j->fileless = false;
        fl_unit_requirements_done(&j->req);
        j->file = NULL;
}

/* Points j at the parsed unit/<hash> and reads its requirements for name (as the builder
 * does: no file, or one that does not parse, means no requirements). */
static int job_attach_file(RegStore *s, const char *name, JobRec *j) {
        char hex[41];
        RegNode *fn;
        int r;

        job_detach_file(s, j);
        if (!j->object_ok)
                return 0;
        fl_hash_to_hex(j->hash, hex);
        fn = fl_reg_tree_find(&s->files, hex);
        if (fn && ((FileRec *) fn->data)->file) {
                UnitFile *f = ((FileRec *) fn->data)->file;
                r = fl_unit_requirements_parse(f, name, &j->req);
                if (r >= 0) {
                        j->file = f;
                        return 0;
                }
                j->req = (UnitRequirements) {};
        } else
                r = 0;
        j->fileless = true;
        s->n_fileless++;
        return r;
}

static void job_rec_clear(RegStore *s, JobRec *j) {
        job_detach_file(s, j);
        unintern(s, j->target);
        unintern(s, j->job_state);
        free(j->unschedulable);
        *j = (JobRec) { .target_state = JOB_STATE_INACTIVE };
}

/* ---- The snapshot's arrays ---- */

static int grow(void **p, size_t *alloc, size_t need, size_t size) {
        size_t a;
        void *q;

        if (need <= *alloc)
                return 0;
        /* 1.5x: these arrays are the largest allocations a daemon keeps. */
        a = MAX(need, MAX(*alloc + *alloc / 2, (size_t) 16));
        q = realloc(*p, a * size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *alloc = a;
        return 0;
}

/* First element of a sorted array of structs that start with their char * name whose name is
 * >= name (units and states). */
static size_t lower_bound(const void *base, size_t n, size_t size, const char *name) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
                size_t m = lo + (hi - lo) / 2;
                if (strcmp(*(char *const *) ((const char *) base + m * size), name) < 0)
                        lo = m + 1;
                else
                        hi = m;
        }
        return lo;
}

static size_t unit_lower_bound(const RegStore *s, const char *name) {
        return lower_bound(s->snap.units, s->snap.n_units, sizeof(RegUnit), name);
}

static int state_cmp3(const char *name, const char *mid, const char *key, const RegUnitState *st,
                      const char *st_key) {
        int c = strcmp(name, st->name);
        if (c == 0)
                c = strcmp(mid, st->machine_id);
        if (c == 0)
                c = strcmp(key, st_key);
        return c;
}

/* First state of unit name, or n_states. */
static size_t states_of(const RegStore *s, const char *name) {
        return lower_bound(s->snap.states, s->snap.n_states, sizeof(RegUnitState), name);
}

/* Index of the state with key states/<name>/<key>, or -1. */
static ssize_t state_find(const RegStore *s, const char *name, const char *key) {
        for (size_t i = states_of(s, name); i < s->snap.n_states && streq(s->snap.states[i].name, name); i++)
                if (streq(s->state_keys[i], key))
                        return (ssize_t) i;
        return -1;
}

/* Whether the key states/<name>/<machine> exists, decodable or not (the builder's test). */
static bool state_key_exists(RegStore *s, const char *name, const char *machine) {
        _cleanup_free_ char *k = NULL;

        if (state_find(s, name, machine) >= 0)
                return true;
        if (!s->bad_states.root)
                return false;
        if (asprintf(&k, "%s/%s", name, machine) < 0)
                return false;
        return fl_reg_tree_find(&s->bad_states, k);
}

static RegUnit unit_of(RegStore *s, RegNode *jn) {
        JobRec *j = jn->data;
        RegUnit u = {
                .name = jn->key,
                .file = j->file,
                .req = j->req,
                .global = j->file && j->req.global,
                .target_state = j->target_state,
                .target = (char *) j->target,
                .job_state = (char *) j->job_state,
                .unschedulable = j->unschedulable,
                .current_state = JOB_STATE_INACTIVE,
        };

        fl_hash_to_hex(j->hash, u.hash);
        if (!u.global && u.target && state_key_exists(s, u.name, u.target))
                u.current_state = streq_ptr(u.job_state, u.target) ? JOB_STATE_LAUNCHED : JOB_STATE_LOADED;
        return u;
}

/* Makes snap.units agree with the record of jn (present iff its object decodes). */
static int unit_sync(RegStore *s, RegNode *jn) {
        JobRec *j = jn->data;
        size_t i;
        bool found;
        int r;

        if (s->bulk)
                return 0;
        i = unit_lower_bound(s, jn->key);
        found = i < s->snap.n_units && streq(s->snap.units[i].name, jn->key);
        if (!j || !j->object_ok) {
                if (found) {
                        memmove(s->snap.units + i, s->snap.units + i + 1,
                                (s->snap.n_units - i - 1) * sizeof(RegUnit));
                        s->snap.n_units--;
                }
                return 0;
        }
        if (!found) {
                r = grow((void **) &s->snap.units, &s->units_alloc, s->snap.n_units + 1, sizeof(RegUnit));
                if (r < 0)
                        return r;
                memmove(s->snap.units + i + 1, s->snap.units + i, (s->snap.n_units - i) * sizeof(RegUnit));
                s->snap.n_units++;
        }
        s->snap.units[i] = unit_of(s, jn);
        return 0;
}

/* The current state of unit name depends on its states: refresh it after they changed. */
static void unit_sync_state(RegStore *s, const char *name) {
        size_t i;

        if (s->bulk)
                return;
        i = unit_lower_bound(s, name);
        if (i < s->snap.n_units && streq(s->snap.units[i].name, name)) {
                RegNode *jn = fl_reg_tree_find(&s->jobs, name);
                if (jn)
                        s->snap.units[i] = unit_of(s, jn);
        }
}

/* Re-reads the file of every unit whose hash is hex (unit/<hex> appeared, changed or went). */
static int units_refile(RegStore *s, const char *hex) {
        int r, ret = 0;

        if (s->bulk)
                return 0;
        for (size_t i = 0; i < s->snap.n_units; i++) {
                RegNode *jn;
                if (!streq(s->snap.units[i].hash, hex))
                        continue;
                jn = fl_reg_tree_find(&s->jobs, s->snap.units[i].name);
                if (!jn)
                        continue;
                r = job_attach_file(s, jn->key, jn->data);
                if (r < 0)
                        ret = r;
                s->snap.units[i] = unit_of(s, jn);
        }
        return ret;
}

/* ---- job/<name>/<field> ---- */

static void job_node_free(RegStore *s, RegNode *jn) {
        JobRec *j = jn->data;
        if (j)
                job_rec_clear(s, j);
        fl_reg_tree_remove(&s->jobs, jn->key);   /* frees j */
}

static int job_set(RegStore *s, const char *name, const char *field, const char *value) {
        RegNode *jn;
        JobRec *j;
        unsigned bit;
        int r;

        if (streq(field, "object"))
                bit = JOB_OBJECT;
        else if (streq(field, "target-state"))
                bit = JOB_TARGET_STATE;
        else if (streq(field, "target"))
                bit = JOB_TARGET;
        else if (streq(field, "job-state"))
                bit = JOB_JOB_STATE;
        else if (streq(field, "unschedulable"))
                bit = JOB_UNSCHEDULABLE;
        else
                return 0;   /* the builder reads no other key */

        jn = fl_reg_tree_ensure(&s->jobs, name);
        if (!jn)
                return -ENOMEM;
        if (!jn->data) {
                jn->data = new0(JobRec, 1);
                if (!jn->data) {
                        fl_reg_tree_remove(&s->jobs, name);
                        return -ENOMEM;
                }
                ((JobRec *) jn->data)->target_state = JOB_STATE_INACTIVE;
        }
        j = jn->data;
        j->fields |= bit;
        value = strempty(value);

        switch (bit) {
        case JOB_OBJECT: {
                uint8_t h[20];
                bool ok;
                r = fl_reg_decode_job_object(value, NULL, h);
                if (r == -ENOMEM)
                        return r;
                ok = r >= 0;
                if (ok != j->object_ok || (ok && memcmp(h, j->hash, 20) != 0)) {
                        job_detach_file(s, j);
                        j->object_ok = ok;
                        if (ok)
                                memcpy(j->hash, h, 20);
                        /* Loading: files are attached once every unit/ key is in. */
                        r = s->bulk ? 0 : job_attach_file(s, jn->key, j);
                        if (r < 0)
                                return r;
                }
                break;
        }
        case JOB_TARGET_STATE:
                j->target_state = fl_job_state_from_string(value);
                if (j->target_state < 0)
                        j->target_state = JOB_STATE_INACTIVE;
                break;
        case JOB_TARGET:
        case JOB_JOB_STATE: {
                const char **p = bit == JOB_TARGET ? &j->target : &j->job_state;
                const char *v = NULL;
                if (!isempty(value)) {
                        v = intern(s, value);
                        if (!v)
                                return -ENOMEM;
                }
                unintern(s, *p);
                *p = v;
                break;
        }
        case JOB_UNSCHEDULABLE: {
                char *v = NULL;
                if (!isempty(value)) {
                        v = strdup(value);
                        if (!v)
                                return -ENOMEM;
                }
                free(j->unschedulable);
                j->unschedulable = v;
                break;
        }
        }
        r = unit_sync(s, jn);
        return r < 0 ? r : 1;
}

/* field NULL: the whole job/<name> directory. */
static int job_remove(RegStore *s, const char *name, const char *field) {
        RegNode *jn = fl_reg_tree_find(&s->jobs, name);
        JobRec *j;

        if (!jn)
                return 0;
        j = jn->data;
        if (!field) {
                job_rec_clear(s, j);
                j->fields = 0;
        } else if (streq(field, "object") && (j->fields & JOB_OBJECT)) {
                job_detach_file(s, j);
                j->object_ok = false;
                j->fields &= ~JOB_OBJECT;
        } else if (streq(field, "target-state") && (j->fields & JOB_TARGET_STATE)) {
                j->target_state = JOB_STATE_INACTIVE;
                j->fields &= ~JOB_TARGET_STATE;
        } else if (streq(field, "target") && (j->fields & JOB_TARGET)) {
                unintern(s, j->target);
                j->target = NULL;
                j->fields &= ~JOB_TARGET;
        } else if (streq(field, "job-state") && (j->fields & JOB_JOB_STATE)) {
                unintern(s, j->job_state);
                j->job_state = NULL;
                j->fields &= ~JOB_JOB_STATE;
        } else if (streq(field, "unschedulable") && (j->fields & JOB_UNSCHEDULABLE)) {
                j->unschedulable = mfree(j->unschedulable);
                j->fields &= ~JOB_UNSCHEDULABLE;
        } else
                return 0;
        /* The entry goes before the record it borrows from (a removal never allocates). */
        (void) unit_sync(s, jn);
        if (j->fields == 0)
                job_node_free(s, jn);
        return 1;
}

/* ---- states/<name>/<machine> ---- */

static void state_entry_done(RegStore *s, RegUnitState *st, const char *key) {
        free(st->name);
        unintern(s, st->machine_id);
        unintern(s, st->load_state);
        unintern(s, st->active_state);
        unintern(s, st->sub_state);
        unintern(s, key);
}

static void state_delete_at(RegStore *s, size_t i) {
        state_entry_done(s, &s->snap.states[i], s->state_keys[i]);
        memmove(s->snap.states + i, s->snap.states + i + 1, (s->snap.n_states - i - 1) * sizeof(RegUnitState));
        memmove(s->state_keys + i, s->state_keys + i + 1, (s->snap.n_states - i - 1) * sizeof(char *));
        s->snap.n_states--;
}

/* Removes states/<name>/<machine> (decodable or not); whether there was one. */
static bool state_drop(RegStore *s, const char *name, const char *machine) {
        _cleanup_free_ char *k = NULL;
        ssize_t i;

        if (!s->bulk) {
                i = state_find(s, name, machine);
                if (i >= 0) {
                        state_delete_at(s, (size_t) i);
                        return true;
                }
        }
        if (!s->bad_states.root || asprintf(&k, "%s/%s", name, machine) < 0)
                return false;
        return fl_reg_tree_remove(&s->bad_states, k);
}

static int state_set(RegStore *s, const char *name, const char *machine, const char *value) {
        RegUnitState d = {}, st = {};
        const char *key;
        size_t i;
        int r;

        r = fl_reg_decode_unit_state(strempty(value), &d);
        if (r == -ENOMEM)
                return r;
        (void) state_drop(s, name, machine);
        if (r < 0) {
                _cleanup_free_ char *k = NULL;
                if (asprintf(&k, "%s/%s", name, machine) < 0 || !fl_reg_tree_ensure(&s->bad_states, k))
                        return -ENOMEM;
                unit_sync_state(s, name);
                return 1;
        }

        memcpy(st.hash, d.hash, sizeof(st.hash));
        st.name = strdup(name);
        st.machine_id = (char *) intern(s, d.machine_id ?: machine);
        st.load_state = (char *) intern(s, d.load_state);
        st.active_state = (char *) intern(s, d.active_state);
        st.sub_state = (char *) intern(s, d.sub_state);
        key = intern(s, machine);
        fl_reg_unit_state_done(&d);
        if (!st.name || !st.machine_id || !key || (d.load_state && !st.load_state) ||
            (d.active_state && !st.active_state) || (d.sub_state && !st.sub_state))
                goto oom;
        if (grow((void **) &s->snap.states, &s->states_alloc, s->snap.n_states + 1, sizeof(RegUnitState)) < 0)
                goto oom;
        {
                /* state_keys follows states' allocation. */
                const char **ks = realloc(s->state_keys, s->states_alloc * sizeof(char *));
                if (!ks)
                        goto oom;
                s->state_keys = ks;
        }
        if (s->bulk)
                i = s->snap.n_states;   /* sorted once loaded */
        else {
                i = states_of(s, name);
                while (i < s->snap.n_states && state_cmp3(name, st.machine_id, key, &s->snap.states[i],
                                                          s->state_keys[i]) > 0)
                        i++;
                memmove(s->snap.states + i + 1, s->snap.states + i, (s->snap.n_states - i) * sizeof(RegUnitState));
                memmove(s->state_keys + i + 1, s->state_keys + i, (s->snap.n_states - i) * sizeof(char *));
        }
        s->snap.states[i] = st;
        s->state_keys[i] = key;
        s->snap.n_states++;
        unit_sync_state(s, name);
        return 1;
oom:
        state_entry_done(s, &st, key);
        return -ENOMEM;
}

/* machine NULL: every state of name. */
static int state_remove(RegStore *s, const char *name, const char *machine) {
        bool changed = false;

        if (machine)
                changed = state_drop(s, name, machine);
        else {
                _cleanup_free_ char *dir = NULL;
                size_t i = states_of(s, name);
                while (i < s->snap.n_states && streq(s->snap.states[i].name, name)) {
                        state_delete_at(s, i);
                        changed = true;
                }
                if (s->bad_states.root && asprintf(&dir, "%s", name) >= 0)
                        changed = fl_reg_tree_remove_dir(&s->bad_states, dir) > 0 || changed;
        }
        if (changed)
                unit_sync_state(s, name);
        return changed;
}

/* ---- unit/<hex> ---- */

static int file_set(RegStore *s, const char *hex, const char *value, uint64_t modified_index) {
        _cleanup_free_ char *raw = NULL;
        UnitFile *f = NULL;
        RegNode *fn;
        FileRec *fr;
        bool had;
        int r;

        fn = fl_reg_tree_ensure(&s->files, hex);
        if (!fn)
                return -ENOMEM;
        fr = fn->data;
        if (!fr) {
                fr = fn->data = new0(FileRec, 1);
                if (!fr) {
                        fl_reg_tree_remove(&s->files, hex);
                        return -ENOMEM;
                }
        }
        fr->modified_index = modified_index;
        r = fl_reg_decode_unit_contents(strempty(value), &raw);
        if (r == -ENOMEM)
                return r;
        if (r >= 0) {
                r = fl_unit_file_parse(raw, strlen(raw), &f, NULL);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        log_debug("registry: unit/%s does not parse: %s", hex, strerror(-r));
        }
        /* Content-addressed: a rewrite normally carries the same text; keep the old parse. */
        if (f && fr->file && fl_unit_file_equal(f, fr->file)) {
                fl_unit_file_free(f);
                return 1;
        }
        had = fr->file;
        file_rec_file_free(fr);
        if (f) {
                UnitFile *c = compact_file(f);
                if (c) {
                        fl_unit_file_free(f);
                        f = c;
                        fr->compact = true;
                }
        }
        fr->file = f;
        /* A new file matters only to units that have none (usually: it is written before the
         * job object that names it, and nobody needs a scan); a changed one to its users. */
        if (!had && (!f || s->n_fileless == 0))
                return 1;
        return units_refile(s, hex) < 0 ? -ENOMEM : 1;
}

static int file_remove(RegStore *s, const char *hex) {
        RegNode *fn = fl_reg_tree_find(&s->files, hex);
        bool had;

        if (!fn)
                return 0;
        had = ((FileRec *) fn->data)->file;
        fl_reg_tree_remove(&s->files, hex);
        if (had && units_refile(s, hex) < 0)
                return -ENOMEM;
        return 1;
}

/* ---- Entry points ---- */

static void job_rec_free(void *p) {
        JobRec *j = p;
        fl_unit_requirements_done(&j->req);
        free(j->unschedulable);
        free(j);
}

int fl_reg_store_new(RegStore **ret) {
        RegStore *s = new0(RegStore, 1);

        if (!s)
                return -ENOMEM;
        s->jobs.free_data = job_rec_free;
        s->files.free_data = file_rec_free;
        s->other.free_data = fl_reg_decoded_free;
        s->snap.shared_files = true;
        *ret = s;
        return 0;
}

RegStore *fl_reg_store_free(RegStore *s) {
        if (!s)
                return NULL;
        /* Strings of the arrays are the records' and the intern table's. */
        for (size_t i = 0; i < s->snap.n_states; i++)
                free(s->snap.states[i].name);
        free(s->snap.states);
        free(s->state_keys);
        free(s->snap.units);
        for (size_t i = 0; i < s->snap.n_machines; i++)
                fl_reg_machine_done(&s->snap.machines[i]);
        free(s->snap.machines);
        free(s->snap.lease.machine_id);
        fl_reg_tree_clear(&s->jobs);
        fl_reg_tree_clear(&s->files);
        fl_reg_tree_clear(&s->bad_states);
        fl_reg_tree_clear(&s->intern);
        fl_reg_tree_clear(&s->other);
        free(s);
        return NULL;
}

/* The first path element of p: its length; *ret_rest points after the '/' (or at the end). */
static size_t path_elem(const char *p, const char **ret_rest) {
        const char *e = strchrnul(p, '/');
        *ret_rest = *e ? e + 1 : e;
        return (size_t) (e - p);
}

int fl_reg_store_set(RegStore *s, const char *rel, const char *value, uint64_t modified_index,
                     uint64_t ttl_sec) {
        _cleanup_free_ char *name = NULL;
        const char *rest, *field;
        size_t l;
        int r;

        if ((rest = startswith(rel, "job/")) || (rest = startswith(rel, "states/"))) {
                bool job = rel[0] == 'j';
                l = path_elem(rest, &field);
                if (l == 0 || !*field || strchr(field, '/'))
                        return 0;   /* not a key the builder reads */
                name = strndup(rest, l);
                if (!name)
                        return -ENOMEM;
                return job ? job_set(s, name, field, value) : state_set(s, name, field, value);
        }
        if ((rest = startswith(rel, "unit/"))) {
                if (!*rest || strchr(rest, '/'))
                        return 0;
                return file_set(s, rest, value, modified_index);
        }
        if (startswith(rel, "state/"))
                return 0;   /* fleet v1's legacy copy of states/, never read */
        r = fl_reg_tree_set(&s->other, rel, value, modified_index, ttl_sec);
        if (r < 0)
                return r;
        s->other_dirty = true;
        return 1;
}

int fl_reg_store_remove(RegStore *s, const char *rel) {
        _cleanup_free_ char *name = NULL;
        const char *rest, *field;
        bool changed;
        size_t l;
        int r = 0;

        assert(!s->bulk);
        if (streq(rel, "job") || streq(rel, "states") || streq(rel, "unit")) {
                /* A whole subtree: rare (an operator's etcdctl rm -r), so one at a time. */
                RegTree *t = rel[0] == 'j' ? &s->jobs : rel[0] == 'u' ? &s->files : NULL;
                changed = false;
                if (t)
                        while (t->root) {
                                _cleanup_free_ char *k = strdup(t->root->key);
                                if (!k)
                                        return -ENOMEM;
                                r = t == &s->jobs ? job_remove(s, k, NULL) : file_remove(s, k);
                                if (r < 0)
                                        return r;
                                changed = true;
                        }
                else {
                        while (s->snap.n_states > 0) {
                                _cleanup_free_ char *k = strdup(s->snap.states[0].name);
                                if (!k)
                                        return -ENOMEM;
                                state_remove(s, k, NULL);
                                changed = true;
                        }
                        while (s->bad_states.root) {
                                _cleanup_free_ char *k = strdup(s->bad_states.root->key);
                                char *slash;
                                if (!k)
                                        return -ENOMEM;
                                fl_reg_tree_remove(&s->bad_states, k);
                                slash = strchr(k, '/');
                                if (slash)
                                        *slash = 0;
                                unit_sync_state(s, k);
                                changed = true;
                        }
                }
                return changed;
        }
        if ((rest = startswith(rel, "job/")) || (rest = startswith(rel, "states/"))) {
                bool job = rel[0] == 'j';
                l = path_elem(rest, &field);
                /* "job/<name>/" names no field and no directory: etcd never sends it, and a
                 * full decode would not drop the unit for it either. */
                if (l == 0 || strchr(field, '/') || (!*field && rest[l] == '/'))
                        return 0;
                name = strndup(rest, l);
                if (!name)
                        return -ENOMEM;
                if (job)
                        return job_remove(s, name, *field ? field : NULL);
                return state_remove(s, name, *field ? field : NULL);
        }
        if ((rest = startswith(rel, "unit/"))) {
                if (!*rest || strchr(rest, '/'))
                        return 0;
                return file_remove(s, rest);
        }
        if (startswith(rel, "state/") || streq(rel, "state"))
                return 0;
        changed = fl_reg_tree_remove(&s->other, rel);
        changed = fl_reg_tree_remove_dir(&s->other, rel) > 0 || changed;
        if (changed)
                s->other_dirty = true;
        return changed;
}

void fl_reg_store_begin_load(RegStore *s) {
        s->bulk = true;
}

typedef struct SortState {
        RegUnitState st;
        const char *key;
} SortState;

static int sort_state_cmp(const void *a, const void *b) {
        const SortState *x = a, *y = b;
        return state_cmp3(x->st.name, x->st.machine_id, x->key, &y->st, y->key);
}

static int load_unit(RegNode *jn, void *userdata) {
        RegStore *s = userdata;
        JobRec *j = jn->data;
        int r;

        if (!j->object_ok)
                return 0;
        r = job_attach_file(s, jn->key, j);
        if (r < 0)
                return r;
        r = grow((void **) &s->snap.units, &s->units_alloc, s->snap.n_units + 1, sizeof(RegUnit));
        if (r < 0)
                return r;
        s->snap.units[s->snap.n_units++] = unit_of(s, jn);
        return 0;
}

/* Ends the load begun with fl_reg_store_begin_load(): sorts the states and lists the units. */
int fl_reg_store_end_load(RegStore *s) {
        size_t n = s->snap.n_states;

        s->bulk = false;
        if (n > 1) {
                _cleanup_free_ SortState *t = new(SortState, n);
                if (!t)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        t[i] = (SortState) { s->snap.states[i], s->state_keys[i] };
                qsort(t, n, sizeof(SortState), sort_state_cmp);
                for (size_t i = 0; i < n; i++) {
                        s->snap.states[i] = t[i].st;
                        s->state_keys[i] = t[i].key;
                }
        }
        /* The jobs tree is sorted by name, as the units are. Files were attached as objects
         * arrived, before every unit/ key was there: attach again. */
        s->snap.n_units = 0;
        return fl_reg_tree_walk(&s->jobs, load_unit, s);
}

const RegSnapshot *fl_reg_store_snapshot(RegStore *s, uint64_t index) {
        if (s->other_dirty) {
                _cleanup_(fl_reg_snapshot_freep) RegSnapshot *o = NULL;
                if (fl_reg_snapshot_build(&s->other, index, &o) < 0)
                        log_debug("registry: cannot decode machines: out of memory");
                else {
                        for (size_t i = 0; i < s->snap.n_machines; i++)
                                fl_reg_machine_done(&s->snap.machines[i]);
                        free(s->snap.machines);
                        free(s->snap.lease.machine_id);
                        s->snap.machines = TAKE_PTR(o->machines);
                        s->snap.n_machines = o->n_machines;
                        o->n_machines = 0;
                        s->snap.lease = o->lease;
                        o->lease.machine_id = NULL;
                        s->snap.engine_version = o->engine_version;
                        s->other_dirty = false;
                }
        }
        s->snap.index = index;
        return &s->snap;
}

size_t fl_reg_store_size(const RegStore *s) {
        return s->jobs.n + s->files.n + s->snap.n_states + s->bad_states.n + s->other.n;
}

/* ---- For the garbage collection of unit/<hash> ---- */

typedef struct WalkCtx {
        int (*f)(const char *hex, uint64_t modified_index, void *userdata);
        void *userdata;
} WalkCtx;

static int walk_ref(RegNode *n, void *userdata) {
        WalkCtx *w = userdata;
        JobRec *j = n->data;
        char hex[41];

        if (!j->object_ok)
                return 0;
        fl_hash_to_hex(j->hash, hex);
        return w->f(hex, 0, w->userdata);
}

static int walk_file(RegNode *n, void *userdata) {
        WalkCtx *w = userdata;
        return w->f(n->key, ((FileRec *) n->data)->modified_index, w->userdata);
}

int fl_reg_store_walk_refs(const RegStore *s, int (*f)(const char *hex, uint64_t modified_index, void *userdata),
                           void *userdata) {
        WalkCtx w = { f, userdata };
        return fl_reg_tree_walk(&s->jobs, walk_ref, &w);
}

int fl_reg_store_walk_files(const RegStore *s, int (*f)(const char *hex, uint64_t modified_index, void *userdata),
                            void *userdata) {
        WalkCtx w = { f, userdata };
        return fl_reg_tree_walk(&s->files, walk_file, &w);
}
