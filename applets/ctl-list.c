/* SPDX-License-Identifier: MIT */
/* ctl-list.c: list-machines, list-units, list-unit-files (spec §1.6): a table through the
 * tab writer with fleet's columns, legends and "-" for missing values, or with --output=json
 * one JSON document with every field at full length (null for missing values). */
#include <stdio.h>

#include "cJSON.h"
#include "ctl.h"
#include "strv.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

static int cmp_machine(const void *a, const void *b) {
        return strcmp(((const ApiMachine *) a)->id, ((const ApiMachine *) b)->id);
}

static int cmp_unit(const void *a, const void *b) {
        return strcmp(((const ApiUnit *) a)->name, ((const ApiUnit *) b)->name);
}

static int cmp_state(const void *a, const void *b) {
        const ApiUnitState *x = a, *y = b;
        int r = strcmp(x->name, y->name);
        return r != 0 ? r : strcmp(strempty(x->machine_id), strempty(y->machine_id));
}

/* Parses --fields (default def) and logs fleet's message on error. Returns <0 (exit 1). */
static int get_fields(Ctl *c, const char *def, const char *const *valid, char ***ret) {
        _cleanup_free_ char *bad = NULL;
        int r;

        r = fl_ctl_fields_parse(c->fields ?: def, valid, ret, &bad);
        if (r == -ENODATA)
                return log_error_errno(r, "Must define output format");
        if (r == -EINVAL)
                return log_error_errno(r, "Invalid key in output format: \"%s\"", bad);
        if (r < 0)
                return log_oom();
        return 0;
}

static int table_header(Ctl *c, CtlTable *t, char **fields) {
        if (c->no_legend)
                return 0;
        STRV_FOREACH(f, fields) {
                char up[32];
                size_t i;

                for (i = 0; (*f)[i] && i + 1 < sizeof(up); i++)
                        up[i] = (char) ((*f)[i] >= 'a' && (*f)[i] <= 'z' ? (*f)[i] - 'a' + 'A' : (*f)[i]);
                up[i] = 0;
                if (fl_ctl_table_add(t, up) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int table_print(CtlTable *t) {
        _cleanup_free_ char *s = fl_ctl_table_format(t);

        if (!s)
                return log_oom();
        return fl_ctl_print(s);
}

/* The text of field f of one item (newly allocated), NULL on OOM. */
typedef char *(*FieldFunc)(Ctl *c, const void *item, const char *f);

/* The table of n items of size bytes: a row an item, a column a field, under the header. */
static int print_table(Ctl *c, char **fields, const void *items, size_t n, size_t size, FieldFunc field) {
        _cleanup_(fl_ctl_table_freep) CtlTable *t = NULL;
        int r;

        r = fl_ctl_table_new(fl_strv_length(fields), &t);
        if (r >= 0)
                r = table_header(c, t, fields);
        for (size_t i = 0; r >= 0 && i < n; i++)
                STRV_FOREACH(f, fields) {
                        _cleanup_free_ char *v = field(c, (const char *) items + i * size, *f);
                        r = v ? fl_ctl_table_add(t, v) : -ENOMEM;
                        if (r < 0)
                                break;
                }
        return r < 0 ? log_oom() : table_print(t);
}

/* Legend of a machine ID: with the IP when the machine is known (fleet's machineFullLegend). */
static char *legend_of(Ctl *c, const char *id, bool full) {
        const ApiMachine *m = fl_ctl_machine_cached(c, id);
        return fl_ctl_machine_legend(id, m ? m->public_ip : NULL, full);
}

/* ---- list-machines ---- */

static const char *const machine_fields[] = { "machine", "ip", "metadata", NULL };

static char *machine_field(Ctl *c, const void *item, const char *f) {
        const ApiMachine *m = item;

        if (streq(f, "machine"))
                return fl_ctl_machine_legend(m->id, NULL, c->full);
        if (streq(f, "ip"))
                return strdup(isempty(m->public_ip) ? "-" : m->public_ip);
        return fl_ctl_format_metadata(m->metadata, m->n_metadata);
}

static int machines_json(ApiMachine *ms, size_t n) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "machines") : NULL;

        if (!arr)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                cJSON *o = cJSON_CreateObject(), *md;

                if (!o || !cJSON_AddItemToArray(arr, o))
                        return log_oom();
                if (!cJSON_AddStringToObject(o, "machine", ms[i].id) ||
                    !cJSON_AddItemToObject(o, "ip", fl_ctl_json_string_or_null(ms[i].public_ip)) ||
                    !(md = cJSON_AddObjectToObject(o, "metadata")))
                        return log_oom();
                for (size_t k = 0; k < ms[i].n_metadata; k++)
                        if (!cJSON_AddStringToObject(md, ms[i].metadata[2 * k], ms[i].metadata[2 * k + 1]))
                                return log_oom();
        }
        return fl_ctl_print_json(root);
}

int fl_ctl_verb_list_machines(Ctl *c, int argc, char **argv) {
        _cleanup_strv_free_ char **fields = NULL;
        ApiMachine *ms = NULL;
        size_t n = 0;
        CtlDriver *d;
        int r;

        if (c->output == CTL_OUTPUT_TABLE && get_fields(c, "machine,ip,metadata", machine_fields, &fields) < 0)
                return 1;
        r = fl_ctl_driver(c, &d);
        if (r < 0)
                return 1;
        r = d->ops->list_machines(d, &ms, &n);
        if (r < 0) {
                log_error("Error retrieving list of active machines from fleet API (%s)", strempty(d->error));
                log_error("Possible issues:");
                log_error("  etcd is unhealthy and/or lost quorum");
                log_error("  connection cannot be established to any etcd servers");
                return 1;
        }
        qsort(ms, n, sizeof(ApiMachine), cmp_machine);

        if (c->output == CTL_OUTPUT_JSON) {
                r = machines_json(ms, n);
                goto finish;
        }

        r = print_table(c, fields, ms, n, sizeof(ApiMachine), machine_field);
finish:
        fl_api_machines_free(ms, n);
        return r < 0 ? 1 : 0;
}

/* ---- list-units ---- */

static const char *const state_fields[] = { "unit", "load", "active", "sub", "machine", "hash", NULL };

static char *state_field(Ctl *c, const void *item, const char *f) {
        const ApiUnitState *s = item;
        const char *v;

        if (streq(f, "unit"))
                v = s->name;
        else if (streq(f, "load"))
                v = s->load_state;
        else if (streq(f, "active"))
                v = s->active_state;
        else if (streq(f, "sub"))
                v = s->sub_state;
        else if (streq(f, "machine")) {
                if (isempty(s->machine_id))
                        return strdup("-");
                return legend_of(c, s->machine_id, c->full);
        } else {
                if (isempty(s->hash))
                        return strdup("-");
                return strndup(s->hash, c->full ? strlen(s->hash) : 7);
        }
        /* fleet prints systemd's strings as they are, even empty. */
        return strdup(strempty(v));
}

static int states_json(Ctl *c, ApiUnitState *ss, size_t n) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "units") : NULL;

        if (!arr)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                const ApiMachine *m = fl_ctl_machine_cached(c, ss[i].machine_id);
                cJSON *o = cJSON_CreateObject();

                if (!o || !cJSON_AddItemToArray(arr, o))
                        return log_oom();
                if (!cJSON_AddStringToObject(o, "unit", ss[i].name) ||
                    !cJSON_AddItemToObject(o, "machine", fl_ctl_json_string_or_null(ss[i].machine_id)) ||
                    !cJSON_AddItemToObject(o, "ip", fl_ctl_json_string_or_null(m ? m->public_ip : NULL)) ||
                    !cJSON_AddItemToObject(o, "load", fl_ctl_json_string_or_null(ss[i].load_state)) ||
                    !cJSON_AddItemToObject(o, "active", fl_ctl_json_string_or_null(ss[i].active_state)) ||
                    !cJSON_AddItemToObject(o, "sub", fl_ctl_json_string_or_null(ss[i].sub_state)) ||
                    !cJSON_AddItemToObject(o, "hash", fl_ctl_json_string_or_null(ss[i].hash)))
                        return log_oom();
        }
        return fl_ctl_print_json(root);
}

int fl_ctl_verb_list_units(Ctl *c, int argc, char **argv) {
        _cleanup_strv_free_ char **fields = NULL;
        ApiUnitState *ss = NULL;
        size_t n = 0;
        CtlDriver *d;
        int r;

        if (c->output == CTL_OUTPUT_TABLE && get_fields(c, "unit,machine,active,sub", state_fields, &fields) < 0)
                return 1;
        r = fl_ctl_driver(c, &d);
        if (r < 0)
                return 1;
        r = d->ops->list_states(d, NULL, &ss, &n);
        if (r < 0) {
                log_error("Error retrieving list of units from repository: %s", strempty(d->error));
                return 1;
        }
        qsort(ss, n, sizeof(ApiUnitState), cmp_state);

        if (c->output == CTL_OUTPUT_JSON) {
                r = states_json(c, ss, n);
                goto finish;
        }
        r = print_table(c, fields, ss, n, sizeof(ApiUnitState), state_field);
finish:
        fl_api_unit_states_free(ss, n);
        return r < 0 ? 1 : 0;
}

/* ---- list-unit-files ---- */

static const char *const unit_fields[] = { "unit", "hash", "dstate", "state", "target", "tmachine",
                                           "global", "desc", NULL };

static char *unit_field(Ctl *c, const void *item, const char *f) {
        const ApiUnit *u = item;
        bool global;

        if (streq(f, "unit"))
                return strdup(u->name);
        global = fl_ctl_unit_is_global(u);
        if (streq(f, "global"))
                return strdup(global ? "true" : "false");
        if (streq(f, "dstate"))
                return strdup(isempty(u->desired_state) ? "-" : u->desired_state);
        if (streq(f, "state"))
                return strdup(global || isempty(u->current_state) ? "-" : u->current_state);
        if (streq(f, "target") || streq(f, "tmachine")) {
                if (global)
                        return strdup("global");
                if (isempty(u->machine_id))
                        return strdup("-");
                return legend_of(c, u->machine_id, c->full);
        }
        if (streq(f, "hash")) {
                char h[41];
                fl_ctl_unit_hash(u, h);
                return strndup(h, c->full ? 40 : 7);
        }
        /* desc */
        return strdup(fl_ctl_unit_description(u) ?: "-");
}

static int units_json(ApiUnit *us, size_t n) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "unitFiles") : NULL;

        if (!arr)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                bool global = fl_ctl_unit_is_global(&us[i]);
                cJSON *o = cJSON_CreateObject();
                char h[41];

                fl_ctl_unit_hash(&us[i], h);
                if (!o || !cJSON_AddItemToArray(arr, o))
                        return log_oom();
                if (!cJSON_AddStringToObject(o, "unit", us[i].name) ||
                    !cJSON_AddItemToObject(o, "hash", fl_ctl_json_string_or_null(h)) ||
                    !cJSON_AddItemToObject(o, "dstate", fl_ctl_json_string_or_null(us[i].desired_state)) ||
                    !cJSON_AddItemToObject(o, "state",
                                           fl_ctl_json_string_or_null(global ? NULL : us[i].current_state)) ||
                    !cJSON_AddItemToObject(o, "target",
                                           fl_ctl_json_string_or_null(global ? NULL : us[i].machine_id)) ||
                    !cJSON_AddBoolToObject(o, "global", global) ||
                    !cJSON_AddItemToObject(o, "desc", fl_ctl_json_string_or_null(fl_ctl_unit_description(&us[i]))) ||
                    !cJSON_AddItemToObject(o, "unschedulable", fl_ctl_json_string_or_null(us[i].unschedulable)))
                        return log_oom();
        }
        return fl_ctl_print_json(root);
}

int fl_ctl_verb_list_unit_files(Ctl *c, int argc, char **argv) {
        _cleanup_strv_free_ char **fields = NULL;
        ApiUnit *us = NULL;
        size_t n = 0;
        CtlDriver *d;
        int r;

        if (c->output == CTL_OUTPUT_TABLE) {
                if (get_fields(c, "unit,hash,dstate,state,target", unit_fields, &fields) < 0)
                        return 1;
                if (fl_strv_contains(fields, "tmachine"))
                        log_warning("WARNING: The \"tmachine\" field is deprecated. Use \"target\" instead");
        }
        r = fl_ctl_driver(c, &d);
        if (r < 0)
                return 1;
        r = d->ops->list_units(d, &us, &n);
        if (r < 0) {
                log_error("Error retrieving list of units from repository: %s", strempty(d->error));
                return 1;
        }
        qsort(us, n, sizeof(ApiUnit), cmp_unit);

        if (c->output == CTL_OUTPUT_JSON) {
                r = units_json(us, n);
                goto finish;
        }
        r = print_table(c, fields, us, n, sizeof(ApiUnit), unit_field);
finish:
        fl_api_units_free(us, n);
        return r < 0 ? 1 : 0;
}
