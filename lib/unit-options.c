/* SPDX-License-Identifier: MIT */
/* unit-options.c: [X-Fleet] requirements, ValidateOptions, metadata matching (spec §7.4, §7.5,
 * §5.4). Everything that can grow with the unit's size is kept O(n log n): a 1 MiB unit from
 * a hostile API client has ~50000 X-Fleet values. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>

#include "buf.h"
#include "glob.h"
#include "strv.h"
#include "unit-name.h"
#include "unit-options.h"

#define X_FLEET "X-Fleet"
#define FL_VALIDATE_MAX_PAIRS 1000000U

static const char *const known_keys[] = {
        "MachineID", "X-ConditionMachineID", "X-ConditionMachineBootID",
        "MachineOf", "X-ConditionMachineOf",
        "MachineMetadata", "X-ConditionMachineMetadata",
        "Conflicts", "X-Conflicts",
        "Replaces",
        "Global",
};

bool fl_unit_option_known(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(known_keys); i++)
                if (streq(key, known_keys[i]))
                        return true;
        return false;
}

bool fl_fleet_truthy(const char *s) {
        static const char *const yes[] = { "true", "yes", "1", "on", "t" };

        for (size_t i = 0; s && i < ELEMENTSOF(yes); i++)
                if (strcasecmp(s, yes[i]) == 0)
                        return true;
        return false;
}

/* A NULL-terminated list with a length, so appends are O(1) (fl_strv_push is O(n)). */
typedef struct Vec {
        char **v;
        size_t n;
        size_t cap;
} Vec;

static int vec_push(Vec *l, char *s) {
        if (!s)
                return -ENOMEM;
        if (l->n + 1 >= l->cap) {
                size_t cap = MAX(l->cap * 2, (size_t) 8);
                char **v = realloc(l->v, cap * sizeof(char *));

                if (!v) {
                        free(s);
                        return -ENOMEM;
                }
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++] = s;
        l->v[l->n] = NULL;
        return 0;
}

static void vec_done(Vec *l) {
        l->v = fl_strv_free(l->v);
        l->n = l->cap = 0;
}

static int cmp_str_then_index(const void *a, const void *b, void *userdata) {
        char **v = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;
        int c = strcmp(v[i], v[j]);

        if (c != 0)
                return c;
        return (i > j) - (i < j);
}

/* Drops repeated strings, keeping first occurrences in order. */
static int vec_uniq(Vec *l) {
        _cleanup_free_ size_t *idx = NULL;
        _cleanup_free_ bool *drop = NULL;
        size_t k = 0;

        if (l->n < 2)
                return 0;
        idx = new(size_t, l->n);
        drop = new0(bool, l->n);
        if (!idx || !drop)
                return -ENOMEM;
        for (size_t i = 0; i < l->n; i++)
                idx[i] = i;
        qsort_r(idx, l->n, sizeof(size_t), cmp_str_then_index, l->v);
        for (size_t i = 1; i < l->n; i++)
                if (streq(l->v[idx[i]], l->v[idx[i - 1]]))
                        drop[idx[i]] = true;
        for (size_t i = 0; i < l->n; i++) {
                if (drop[i])
                        free(l->v[i]);
                else
                        l->v[k++] = l->v[i];
        }
        l->n = k;
        l->v[k] = NULL;
        return 0;
}

/* fleet's multi-value rule: a value that starts and ends with '"' is split at spaces outside
 * quotes and loses its quotes; empty pieces are kept. Anything else is one value. */
static int split_multivalue(const char *s, Vec *ret) {
        size_t n = strlen(s);
        Buf cur = BUF_INIT;
        bool quoted = false;
        int r = 0;

        if (n == 0 || s[0] != '"' || s[n - 1] != '"')
                return vec_push(ret, strdup(s));
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (s[i] == '"')
                        quoted = !quoted;
                else if (s[i] == ' ' && !quoted) {
                        r = vec_push(ret, strdup(fl_buf_str(&cur)));
                        fl_buf_reset(&cur);
                } else
                        r = fl_buf_putc(&cur, s[i]);
        }
        if (r >= 0)
                r = vec_push(ret, strdup(fl_buf_str(&cur)));
        fl_buf_done(&cur);
        return r;
}

/* strings.Replace(s, from, to, -1) */
static char *replace_all(const char *s, const char *from, const char *to) {
        Buf b = BUF_INIT;
        size_t fl = strlen(from);
        int r = 0;

        for (const char *p = s, *hit; r >= 0; p = hit + fl) {
                hit = strstr(p, from);
                if (!hit) {
                        r = fl_buf_puts(&b, p);
                        break;
                }
                r = fl_buf_append(&b, p, (size_t) (hit - p));
                if (r >= 0)
                        r = fl_buf_puts(&b, to);
        }
        if (r < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

/* fleet replaces the four specifiers one after the other, over the whole value each time. */
static char *expand_specifiers(const char *v, const UnitNameInfo *i) {
        const char *from[] = { "%n", "%N", "%p", "%i" };
        const char *to[] = { i->full, i->name, i->prefix, i->instance };
        _cleanup_free_ char *cur = strdup(v);

        for (size_t k = 0; cur && k < ELEMENTSOF(from); k++) {
                char *next = replace_all(cur, from[k], to[k]);

                free(cur);
                cur = next;
        }
        return TAKE_PTR(cur);
}

/* strings.Fields: pieces separated by runs of Unicode white space. */
static int push_fields(const char *s, Vec *ret) {
        size_t n = strlen(s), p = 0;
        int r;

        while (p < n) {
                size_t start, l;

                while (p < n && (l = fl_utf8_space_len(s + p, n - p)) > 0)
                        p += l;
                start = p;
                while (p < n && fl_utf8_space_len(s + p, n - p) == 0)
                        p++;
                if (p > start) {
                        r = vec_push(ret, strndup(s + start, p - start));
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Returns true and fills *ret for a usable item, false for one to ignore. */
static bool parse_meta_item(const char *item, MetaReq *ret) {
        size_t k = strcspn(item, "=!<>"), ol = 1;
        MetaOp op;

        if (k == 0 || item[k] == 0)
                return false;
        switch (item[k]) {
        case '=':
                op = META_EQ;
                break;
        case '!':
                if (item[k + 1] != '=')
                        return false;
                op = META_NE;
                ol = 2;
                break;
        case '<':
                op = item[k + 1] == '=' ? META_LE : META_LT;
                ol = op == META_LE ? 2 : 1;
                break;
        default:
                op = item[k + 1] == '=' ? META_GE : META_GT;
                ol = op == META_GE ? 2 : 1;
                break;
        }
        /* Like fleet's "exactly two non-empty parts": nothing empty, no further '='. */
        if (item[k + ol] == 0 || strchr(item + k + ol, '='))
                return false;
        /* Copies; the caller checks them for NULL (OOM). */
        *ret = (MetaReq) {
                .key = strndup(item, k),
                .op = op,
                .value = strdup(item + k + ol),
        };
        return true;
}

static void meta_free(MetaReq *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(m[i].key);
                free(m[i].value);
        }
        free(m);
}

typedef struct MetaSort {
        const MetaReq *m;
        const size_t *key;
} MetaSort;

static int cmp_meta(const void *a, const void *b, void *userdata) {
        const MetaSort *s = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;
        int c = strcmp(s->m[i].key, s->m[j].key);

        if (c == 0)
                c = (s->m[i].op > s->m[j].op) - (s->m[i].op < s->m[j].op);
        if (c == 0)
                c = strcmp(s->m[i].value, s->m[j].value);
        if (c == 0)
                c = (i > j) - (i < j);
        return c;
}

static int cmp_meta_group(const void *a, const void *b, void *userdata) {
        const MetaSort *s = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;

        if (s->key[i] != s->key[j])
                return (s->key[i] > s->key[j]) - (s->key[i] < s->key[j]);
        return (i > j) - (i < j);
}

/* Deduplicates and groups by key (first appearance order), which fl_metadata_match relies on
 * for the OR within a key. Takes ownership of m. */
static int meta_normalize(MetaReq *m, size_t n, MetaReq **ret, size_t *ret_n) {
        _cleanup_free_ size_t *idx = NULL, *key = NULL;
        _cleanup_free_ bool *drop = NULL;
        MetaSort s = { .m = m };
        MetaReq *out;
        size_t k = 0;

        if (n == 0) {
                free(m);
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        idx = new(size_t, n);
        key = new(size_t, n);
        drop = new0(bool, n);
        out = new(MetaReq, n);
        if (!idx || !key || !drop || !out) {
                free(out);
                meta_free(m, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                idx[i] = i;
        qsort_r(idx, n, sizeof(size_t), cmp_meta, &s);
        /* Runs of one key: drop exact repeats, and give every member the index of the key's
         * first appearance (the run's smallest index) to group by. */
        for (size_t i = 0, j; i < n; i = j) {
                size_t first = idx[i];

                for (j = i + 1; j < n && streq(m[idx[j]].key, m[idx[i]].key); j++) {
                        const MetaReq *a = &m[idx[j]], *p = &m[idx[j - 1]];

                        first = MIN(first, idx[j]);
                        if (a->op == p->op && streq(a->value, p->value))
                                drop[idx[j]] = true;
                }
                for (size_t k = i; k < j; k++)
                        key[idx[k]] = first;
        }
        s.key = key;
        qsort_r(idx, n, sizeof(size_t), cmp_meta_group, &s);
        for (size_t i = 0; i < n; i++) {
                MetaReq *a = &m[idx[i]];

                if (drop[idx[i]]) {
                        free(a->key);
                        free(a->value);
                } else
                        out[k++] = *a;
        }
        free(m);
        *ret = out;
        *ret_n = k;
        return 0;
}

void fl_unit_requirements_done(UnitRequirements *r) {
        if (!r)
                return;
        free(r->machine_id);
        fl_strv_free(r->machine_of);
        meta_free(r->metadata, r->n_metadata);
        fl_strv_free(r->conflicts);
        fl_strv_free(r->replaces);
        fl_strv_free(r->unknown_keys);
        *r = (UnitRequirements) {};
}

typedef struct Collect {
        char *machine_id[3]; /* MachineID, X-ConditionMachineID, X-ConditionMachineBootID */
        Vec machine_of, conflicts, replaces, unknown;
        MetaReq *meta;
        size_t n_meta, cap_meta;
        char *global; /* last Global value */
} Collect;

static void collect_done(Collect *c) {
        for (size_t i = 0; i < ELEMENTSOF(c->machine_id); i++)
                free(c->machine_id[i]);
        vec_done(&c->machine_of);
        vec_done(&c->conflicts);
        vec_done(&c->replaces);
        vec_done(&c->unknown);
        meta_free(c->meta, c->n_meta);
        free(c->global);
        *c = (Collect) {};
}

static int collect_value(Collect *c, const char *key, char *v) {
        static const char *const id_keys[] = {
                "MachineID", "X-ConditionMachineID", "X-ConditionMachineBootID",
        };
        MetaReq m;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(id_keys); i++)
                if (streq(key, id_keys[i])) {
                        if (!c->machine_id[i])
                                c->machine_id[i] = TAKE_PTR(v);
                        free(v);
                        return 0;
                }
        if (streq(key, "MachineOf") || streq(key, "X-ConditionMachineOf"))
                return vec_push(&c->machine_of, v);
        if (streq(key, "Replaces"))
                return vec_push(&c->replaces, v);
        if (streq(key, "Global")) {
                free(c->global);
                c->global = v;
                return 0;
        }
        if (streq(key, "Conflicts") || streq(key, "X-Conflicts")) {
                r = push_fields(v, &c->conflicts);
                free(v);
                return r;
        }
        if (streq(key, "MachineMetadata") || streq(key, "X-ConditionMachineMetadata")) {
                bool ok = parse_meta_item(v, &m);

                free(v);
                if (!ok)
                        return 0;
                if (!m.key || !m.value) {
                        free(m.key);
                        free(m.value);
                        return -ENOMEM;
                }
                if (c->n_meta == c->cap_meta) {
                        size_t cap = MAX(c->cap_meta * 2, (size_t) 8);
                        MetaReq *p = realloc(c->meta, cap * sizeof(MetaReq));

                        if (!p) {
                                free(m.key);
                                free(m.value);
                                return -ENOMEM;
                        }
                        c->meta = p;
                        c->cap_meta = cap;
                }
                c->meta[c->n_meta++] = m;
                return 0;
        }
        free(v);
        return 0;
}

int fl_unit_requirements_parse(const UnitFile *u, const char *unit_name, UnitRequirements *ret) {
        _cleanup_(fl_unit_name_info_done) UnitNameInfo info = {};
        Collect c = {};
        bool expand = false;
        int r = 0;

        if (unit_name) {
                r = fl_unit_name_info(unit_name, &info);
                if (r == -ENOMEM)
                        return r;
                /* A name without '.' gives fleet no UnitNameInfo: no expansion. */
                expand = r >= 0;
                r = 0;
        }

        for (size_t i = 0; u && r >= 0 && i < u->n_options; i++) {
                const UnitOption *o = &u->options[i];
                Vec values = {};

                if (!streq(o->section, X_FLEET))
                        continue;
                if (!fl_unit_option_known(o->name)) {
                        r = vec_push(&c.unknown, strdup(o->name));
                        continue;
                }
                r = split_multivalue(o->value, &values);
                for (size_t k = 0; r >= 0 && k < values.n; k++) {
                        char *v = expand ? expand_specifiers(values.v[k], &info)
                                         : strdup(values.v[k]);

                        r = v ? collect_value(&c, o->name, v) : -ENOMEM;
                }
                vec_done(&values);
        }
        if (r >= 0)
                r = vec_uniq(&c.unknown);
        if (r < 0) {
                collect_done(&c);
                return r;
        }

        UnitRequirements req = {
                .machine_of = TAKE_PTR(c.machine_of.v),
                .conflicts = TAKE_PTR(c.conflicts.v),
                .replaces = TAKE_PTR(c.replaces.v),
                .unknown_keys = TAKE_PTR(c.unknown.v),
                .global = fl_fleet_truthy(c.global),
        };
        for (size_t i = 0; i < ELEMENTSOF(c.machine_id); i++)
                if (c.machine_id[i]) {
                        req.machine_id = TAKE_PTR(c.machine_id[i]);
                        break;
                }
        r = meta_normalize(TAKE_PTR(c.meta), c.n_meta, &req.metadata, &req.n_metadata);
        c.n_meta = 0;
        collect_done(&c);
        if (r < 0) {
                fl_unit_requirements_done(&req);
                return r;
        }
        *ret = req;
        return 0;
}

static int set_msg(char **ret_msg, char *msg) {
        if (!msg)
                return -ENOMEM;
        if (ret_msg)
                *ret_msg = msg;
        else
                free(msg);
        return -EINVAL;
}

static int unresolvable(char **ret_msg, const char *peer, const char *what, const char *glob) {
        _cleanup_free_ char *qp = fl_go_quote(peer), *qg = fl_go_quote(glob);
        char *msg;

        if (!qp || !qg)
                return -ENOMEM;
        if (asprintf(&msg, "unresolvable requirements: peer %s matches %s %s", qp, what, qg) < 0)
                return -ENOMEM;
        return set_msg(ret_msg, msg);
}

static int cmp_option_key(const void *a, const void *b) {
        const UnitOption *x = *(const UnitOption *const *) a, *y = *(const UnitOption *const *) b;
        int c = strcmp(x->section, y->section);

        return c != 0 ? c : strcmp(x->name, y->name);
}

/* 1 if a and b have as many options with the same (section, name) pairs, 0 if not. */
static int same_option_keys(const UnitFile *a, const UnitFile *b) {
        _cleanup_free_ const UnitOption **pa = NULL, **pb = NULL;
        size_t n = a->n_options;

        if (n != b->n_options)
                return 0;
        if (n == 0)
                return 1;
        pa = new(const UnitOption *, n);
        pb = new(const UnitOption *, n);
        if (!pa || !pb)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                pa[i] = &a->options[i];
                pb[i] = &b->options[i];
        }
        qsort(pa, n, sizeof(*pa), cmp_option_key);
        qsort(pb, n, sizeof(*pb), cmp_option_key);
        for (size_t i = 0; i < n; i++)
                if (cmp_option_key(&pa[i], &pb[i]) != 0)
                        return 0;
        return 1;
}

int fl_unit_options_check_syntax(const UnitFile *u, char **ret_msg) {
        _cleanup_(fl_unit_file_freep) UnitFile *back = NULL;
        _cleanup_free_ char *text = NULL, *reason = NULL;
        int r;

        /* fleet round-trips the options through go-systemd to catch what would not survive
         * being written out and read back (long lines, newlines in names, ...). */
        text = fl_unit_file_serialize(u);
        if (!text)
                return -ENOMEM;
        r = fl_unit_file_parse_full(text, strlen(text), &back, &reason, NULL);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return set_msg(ret_msg, TAKE_PTR(reason) ?: strdup("invalid unit file"));
        /* fleet stops there, so a line break in a section, name or value (or a ']' in a
         * section, a '=' in a name) injects sections and options of the sender's choosing
         * into what is stored; the options read back must be the ones given. */
        r = same_option_keys(u, back);
        if (r < 0)
                return r;
        if (r == 0)
                return set_msg(ret_msg, strdup("unit options do not survive being written as a unit file "
                                               "(line break in a section, name or value?)"));
        return 0;
}

int fl_unit_options_validate(const UnitFile *u, const char *unit_name, char **ret_msg) {
        _cleanup_(fl_unit_requirements_done) UnitRequirements req = {};
        bool target, peers, conflicts, replaces;
        const char *combo = NULL;
        int r;

        r = fl_unit_options_check_syntax(u, ret_msg);
        if (r < 0)
                return r;

        r = fl_unit_requirements_parse(u, unit_name, &req);
        if (r < 0)
                return r;

        /* Every peer against every glob: bound the work so one hostile PUT cannot stall the
         * daemon's only event loop for minutes. Real units have a handful of each. */
        if (fl_strv_length(req.machine_of) *
            (fl_strv_length(req.conflicts) + fl_strv_length(req.replaces)) > FL_VALIDATE_MAX_PAIRS)
                return set_msg(ret_msg, strdup("too many MachineOf, Conflicts and Replaces values"));

        STRV_FOREACH(p, req.machine_of) {
                STRV_FOREACH(g, req.conflicts)
                        if (fl_glob_match(*g, *p))
                                return unresolvable(ret_msg, *p, "conflict", *g);
                STRV_FOREACH(g, req.replaces)
                        if (fl_glob_match(*g, *p))
                                return unresolvable(ret_msg, *p, "replace", *g);
        }

        target = req.machine_id != NULL;
        peers = !!req.machine_of;
        conflicts = !!req.conflicts;
        replaces = !!req.replaces;
        if (target && peers)
                combo = "MachineID cannot be used with Peers";
        else if (target && conflicts)
                combo = "MachineID cannot be used with Conflicts";
        else if (target && req.global)
                combo = "MachineID cannot be used with Global";
        else if (target && replaces)
                combo = "MachineID cannot be used with Replaces";
        else if (req.global && peers)
                combo = "Global cannot be used with Peers";
        else if (req.global && replaces)
                combo = "Global cannot be used with Replaces";
        else if (conflicts && replaces)
                combo = "Conflicts cannot be used with Replaces";
        if (combo)
                return set_msg(ret_msg, strdup(combo));
        return 0;
}

static bool parse_number(const char *s, double *ret) {
        char *end;
        double d;

        if (isempty(s) || isspace((unsigned char) s[0]))
                return false;
        errno = 0;
        d = strtod(s, &end);
        if (*end != 0 || isnan(d))
                return false;
        *ret = d;
        return true;
}

/* machine value `op` required value */
static bool compare(const char *have, MetaOp op, const char *want) {
        double a, b;
        int c;

        if (parse_number(have, &a) && parse_number(want, &b))
                c = (a > b) - (a < b);
        else
                c = strcmp(have, want);
        switch (op) {
        case META_EQ:
                return c == 0;
        case META_NE:
                return c != 0;
        case META_LT:
                return c < 0;
        case META_LE:
                return c <= 0;
        case META_GT:
                return c > 0;
        case META_GE:
                return c >= 0;
        }
        return false;
}

static const char *lookup(char *const *keys, char *const *values, size_t n, const char *key) {
        for (size_t i = 0; i < n; i++)
                if (keys[i] && streq(keys[i], key))
                        return values[i];
        return NULL;
}

bool fl_metadata_match(const UnitRequirements *r, char *const *keys, char *const *values,
                       size_t n) {
        if (!r)
                return true;
        for (size_t i = 0, j; i < r->n_metadata; i = j) {
                const char *have = lookup(keys, values, n, r->metadata[i].key);
                bool any_eq = false, eq_ok = false;

                for (j = i; j < r->n_metadata && streq(r->metadata[j].key, r->metadata[i].key);
                     j++) {
                        const MetaReq *m = &r->metadata[j];

                        switch (m->op) {
                        case META_EQ:
                                any_eq = true;
                                /* Exact string equality, as in fleet: "1.0" is not "1". */
                                if (have && streq(have, m->value))
                                        eq_ok = true;
                                break;
                        case META_NE:
                                if (have && streq(have, m->value))
                                        return false;
                                break;
                        default:
                                if (!have || !compare(have, m->op, m->value))
                                        return false;
                                break;
                        }
                }
                if (any_eq && !eq_ok)
                        return false;
        }
        return true;
}

static const char *op_str(MetaOp op) {
        static const char *const s[] = {
                [META_EQ] = "=", [META_NE] = "!=", [META_LT] = "<",
                [META_LE] = "<=", [META_GT] = ">", [META_GE] = ">=",
        };

        return (size_t) op < ELEMENTSOF(s) ? s[op] : "?";
}

char *fl_metadata_explain(const UnitRequirements *r) {
        Buf b = BUF_INIT;
        int k = 0;

        for (size_t i = 0; r && k >= 0 && i < r->n_metadata; i++)
                k = fl_buf_printf(&b, "%s%s%s%s", i > 0 ? ", " : "", r->metadata[i].key,
                                  op_str(r->metadata[i].op), r->metadata[i].value);
        if (k < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

bool fl_machine_id_match(const char *required, const char *machine_id) {
        if (!required || !machine_id)
                return false;
        if (streq(required, machine_id))
                return true;
        /* fleet's ShortID: the first 8 characters (the whole ID when shorter). */
        return strlen(machine_id) > 8 && strlen(required) == 8 &&
               strncmp(machine_id, required, 8) == 0;
}

static bool any_glob_matches(char *const *globs, const char *name) {
        STRV_FOREACH(g, globs)
                if (fl_glob_match(*g, name))
                        return true;
        return false;
}

bool fl_unit_conflicts_with(const char *name_a, const UnitRequirements *ra, const char *name_b,
                            const UnitRequirements *rb) {
        return (ra && name_b && any_glob_matches(ra->conflicts, name_b)) ||
               (rb && name_a && any_glob_matches(rb->conflicts, name_a));
}

bool fl_unit_replaces(const UnitRequirements *ra, const char *name_b) {
        return ra && name_b && any_glob_matches(ra->replaces, name_b);
}
