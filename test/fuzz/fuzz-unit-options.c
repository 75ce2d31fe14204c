/* SPDX-License-Identifier: MIT */
/* fuzz-unit-options: the [X-Fleet] section (spec §7.4, §7.5): requirements, ValidateOptions,
 * metadata expressions (fleet's k=v and our != < <= > >=), conflicts and replaces globs,
 * evaluated against a few fixed machines. The input is unit file text; seeds carry [X-Fleet]
 * sections. */
#include "fuzz.h"
#include "strv.h"
#include "unit-file.h"
#include "unit-options.h"

#define MACHINE_ID "4e5a1d4f0f3c4b8a9b7e0c2d1a3f5e6d"

typedef struct Machine {
        char *const *keys;
        char *const *values;
        size_t n;
} Machine;

static char *keys1[] = { "region", "disk", "cpus", "ram", "role" };
static char *values1[] = { "us-west", "ssd", "4", "16.5", "web" };
static char *keys2[] = { "region", "cpus", "" };
static char *values2[] = { "eu-central", "32", "" };

static const Machine machines[] = {
        { NULL, NULL, 0 },
        { keys1, values1, ELEMENTSOF(keys1) },
        { keys2, values2, ELEMENTSOF(keys2) },
};

static void check_requirements(const UnitFile *u, const UnitRequirements *r, const char *name) {
        _cleanup_free_ char *explain = NULL;
        bool only_eq = true;

        for (size_t i = 0; i < r->n_metadata; i++) {
                const MetaReq *m = &r->metadata[i];
                FUZZ_CHECK(m->key && m->value && *m->key && *m->value);
                FUZZ_CHECK(m->op >= META_EQ && m->op <= META_GE);
                FUZZ_CHECK(!strpbrk(m->key, "=!<>"));
                FUZZ_CHECK(!strchr(m->value, '='));
                /* grouped by key */
                if (i > 0 && !streq(m->key, r->metadata[i - 1].key))
                        for (size_t j = 0; j + 1 < i; j++)
                                FUZZ_CHECK(!streq(r->metadata[j].key, m->key));
                only_eq = only_eq && m->op == META_EQ;
        }
        STRV_FOREACH(c, r->conflicts)
                FUZZ_CHECK(**c);
        STRV_FOREACH(k, r->unknown_keys)
                FUZZ_CHECK(!fl_unit_option_known(*k));

        explain = fl_metadata_explain(r);
        FUZZ_CHECK(explain);
        FUZZ_CHECK((r->n_metadata == 0) == (explain[0] == 0));

        for (size_t i = 0; i < ELEMENTSOF(machines); i++) {
                bool m = fl_metadata_match(r, machines[i].keys, machines[i].values, machines[i].n);
                if (r->n_metadata == 0)
                        FUZZ_CHECK(m);
                if (only_eq && r->n_metadata > 0 && machines[i].n == 0)
                        FUZZ_CHECK(!m);
        }
        FUZZ_CHECK(fl_metadata_match(NULL, NULL, NULL, 0));

        /* A machine built from the first '=' value of every key satisfies an '='-only list. */
        if (only_eq && r->n_metadata > 0) {
                _cleanup_free_ char **k = new0(char *, r->n_metadata);
                _cleanup_free_ char **v = new0(char *, r->n_metadata);
                size_t n = 0;
                FUZZ_CHECK(k && v);
                for (size_t i = 0; i < r->n_metadata; i++)
                        if (i == 0 || !streq(r->metadata[i].key, r->metadata[i - 1].key)) {
                                k[n] = r->metadata[i].key;
                                v[n] = r->metadata[i].value;
                                n++;
                        }
                FUZZ_CHECK(fl_metadata_match(r, k, v, n));
                /* ... and dropping any one key breaks it */
                if (n > 1)
                        FUZZ_CHECK(!fl_metadata_match(r, k + 1, v + 1, n - 1));
        }

        if (r->machine_id) {
                (void) fl_machine_id_match(r->machine_id, MACHINE_ID);
                FUZZ_CHECK(fl_machine_id_match(r->machine_id, r->machine_id));
        }
        FUZZ_CHECK(!fl_machine_id_match(NULL, MACHINE_ID));

        /* Conflicts are symmetric; a name is matched by its own escaped form. */
        const char *others[] = { "hello.service", "web@1.service", "a/b.service", "" };
        for (size_t i = 0; i < ELEMENTSOF(others); i++) {
                bool a = fl_unit_conflicts_with(name, r, others[i], NULL);
                bool b = fl_unit_conflicts_with(others[i], NULL, name, r);
                FUZZ_CHECK(a == b);
                (void) fl_unit_replaces(r, others[i]);
        }
        (void) u;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const names[] = { NULL, "web@1.service", "plain.service", "noext" };
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;

        if (size > 64 * 1024) /* metadata matching is per key: keep runs fast */
                return 0;
        if (fl_unit_file_parse((const char *) data, size, &u, NULL) < 0)
                return 0;

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_(fl_unit_requirements_done) UnitRequirements r = {};
                _cleanup_free_ char *msg = NULL;
                int k;

                FUZZ_CHECK(fl_unit_requirements_parse(u, names[i], &r) == 0);
                check_requirements(u, &r, names[i] ?: "x.service");

                k = fl_unit_options_validate(u, names[i], &msg);
                FUZZ_CHECK(k == 0 || k == -EINVAL);
                FUZZ_CHECK((k == 0) == !msg);
                if (k == 0) {
                        /* ValidateOptions passed: none of fleet's forbidden combinations */
                        FUZZ_CHECK(!(r.machine_id && (r.machine_of || r.conflicts || r.global || r.replaces)));
                        FUZZ_CHECK(!(r.global && (r.machine_of || r.replaces)));
                        FUZZ_CHECK(!(r.conflicts && r.replaces));
                }
        }
        return 0;
}
