/* SPDX-License-Identifier: MIT */
/* api-units.c: /units and /units/<name> (spec §3.2-3.4), including the PUT decision procedure.
 * Everything a request can get wrong is checked before the first store write, so a refused
 * request leaves the registry untouched. */
#include <cJSON.h>
#include <stdio.h>

#include "api.h"
#include "log.h"
#include "strv.h"
#include "unit-file.h"
#include "unit-name.h"
#include "unit-options.h"

/* A unit's fields, for partial responses (below). */
enum {
        UNIT_CURRENT_STATE = 1 << 0,
        UNIT_DESIRED_STATE = 1 << 1,
        UNIT_MACHINE_ID = 1 << 2,
        UNIT_NAME = 1 << 3,
        UNIT_OPTIONS = 1 << 4,
        UNIT_UNSCHEDULABLE = 1 << 5,
        UNIT_ALL = (1 << 6) - 1,
};

/* Whether the n bytes at s are the word w. */
static bool word_is(const char *s, size_t n, const char *w) {
        return strlen(w) == n && memcmp(s, w, n) == 0;
}

static unsigned unit_field(const char *s, size_t n) {
        static const struct {
                const char *name;
                unsigned bit;
        } fields[] = {
                { "currentState", UNIT_CURRENT_STATE }, { "desiredState", UNIT_DESIRED_STATE },
                { "machineID", UNIT_MACHINE_ID },       { "name", UNIT_NAME },
                { "options", UNIT_OPTIONS },            { "unschedulableReason", UNIT_UNSCHEDULABLE },
        };

        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (word_is(s, n, fields[i].name))
                        return fields[i].bit;
        return 0;
}

/* The unit fields a list asks for with Google's partial-response parameter, e.g.
 * fields=nextPageToken,units/name or fields=units(name,desiredState). fleetctl asks for names
 * alone before a submit: 1,000 units into 4,000 then list 4,000 names, not 4,000 unit files.
 * fleet ignored the parameter, and so do we when it is not of that simple form (UNIT_ALL);
 * nextPageToken is always there. */
static unsigned units_list_fields(HttpRequest *req) {
        _cleanup_strv_free_ char **v = NULL;
        unsigned mask = 0;
        const char *p;

        if (fl_http_query_values(req->query, "fields", &v) != 1)
                return UNIT_ALL;
        for (p = v[0]; *p;) {
                size_t n = strcspn(p, ",(/");

                if (word_is(p, n, "nextPageToken"))
                        p += n;
                else if (word_is(p, n, "units") && (p[n] == '/' || p[n] == '(')) {
                        /* units/<field> or units(<field>,...) */
                        bool list = p[n] == '(';

                        p += n;
                        do {
                                n = strcspn(++p, ",()/");
                                mask |= unit_field(p, n) ?: UNIT_ALL;
                                p += n;
                        } while (list && *p == ',');
                        if (list && *p++ != ')')
                                return UNIT_ALL;
                } else
                        return UNIT_ALL;
                if (*p && *p++ != ',')
                        return UNIT_ALL;
        }
        return mask ?: UNIT_ALL;
}

/* Unit entity, fields in the order fleet's encoder writes them, empty ones omitted. fleet's
 * collection reports currentState "inactive" for global units while a single GET leaves it out
 * (and a global unit never has a machineID); we keep that. unschedulableReason is ours. */
static int unit_json(Buf *b, const RegUnit *u, bool collection, unsigned fields) {
        bool first = true;
        int r;

        r = fl_buf_putc(b, '{');
        if (r >= 0 && (fields & UNIT_CURRENT_STATE) && (collection || !u->global))
                r = fl_api_json_field(b, &first, "currentState", fl_job_state_to_string(u->current_state));
        if (r >= 0 && (fields & UNIT_DESIRED_STATE))
                r = fl_api_json_field(b, &first, "desiredState", fl_job_state_to_string(u->target_state));
        if (r >= 0 && (fields & UNIT_MACHINE_ID) && (collection || !u->global))
                r = fl_api_json_field(b, &first, "machineID", u->target);
        if (r >= 0 && (fields & UNIT_NAME))
                r = fl_api_json_field(b, &first, "name", u->name);
        if (r >= 0 && (fields & UNIT_OPTIONS) && u->file && u->file->n_options > 0) {
                r = fl_buf_printf(b, "%s\"options\":[", first ? "" : ",");
                first = false;
                for (size_t i = 0; r >= 0 && i < u->file->n_options; i++) {
                        const UnitOption *o = &u->file->options[i];
                        bool f = true;

                        r = fl_buf_puts(b, i > 0 ? ",{" : "{");
                        if (r >= 0)
                                r = fl_api_json_field(b, &f, "name", o->name);
                        if (r >= 0)
                                r = fl_api_json_field(b, &f, "section", o->section);
                        if (r >= 0)
                                r = fl_api_json_field(b, &f, "value", o->value);
                        if (r >= 0)
                                r = fl_buf_putc(b, '}');
                }
                if (r >= 0)
                        r = fl_buf_putc(b, ']');
        }
        if (r >= 0 && (fields & UNIT_UNSCHEDULABLE))
                r = fl_api_json_field(b, &first, "unschedulableReason", u->unschedulable);
        if (r >= 0)
                r = fl_buf_putc(b, '}');
        return r;
}

typedef struct UnitsPage {
        const RegSnapshot *snap;
        unsigned fields;
} UnitsPage;

static int units_item_json(Buf *b, const void *userdata, size_t i) {
        const UnitsPage *up = userdata;
        return unit_json(b, &up->snap->units[i], true, up->fields);
}

void fl_api_units_list(ApiCall *call, const RegSnapshot *snap) {
        UnitsPage up = { .snap = snap, .fields = units_list_fields(call->req) };
        ApiPage p;

        if (fl_api_page_from_request(call->api, call->req, &p) < 0) {
                fl_api_call_free(call);
                return;
        }
        fl_api_reply_page(call, &p, snap->n_units, "units", false, units_item_json, &up);
}

void fl_api_unit_get(ApiCall *call, const RegSnapshot *snap) {
        const RegUnit *u = fl_reg_snapshot_find_unit(snap, call->item);
        Buf b = BUF_INIT;

        if (!u)
                fl_api_reply_error(call->req, 404, "unit does not exist");
        else if (unit_json(&b, u, false, UNIT_ALL) < 0) {
                fl_buf_done(&b);
                fl_api_reply_error(call->req, 500, "");
        } else
                fl_api_reply_json(call->req, 200, &b);
        fl_api_call_free(call);
}

/* ---- PUT ---- */

typedef struct UnitBody {
        const char *name;       /* borrowed from the JSON tree, NULL when absent */
        const char *desired;
        UnitFile *unit;         /* options in body order; NULL when none were given */
} UnitBody;

/* A JSON string or null (-> NULL); anything else is a type error. */
static int json_string_or_null(const cJSON *v, const char **ret) {
        if (cJSON_IsNull(v)) {
                *ret = NULL;
                return 0;
        }
        if (!cJSON_IsString(v))
                return -EINVAL;
        *ret = v->valuestring;
        return 0;
}

/* The Unit entity from the body. Names match case-insensitively and unknown fields are
 * ignored, as Go's decoder does; wrong types are errors. */
static int decode_unit_body(const cJSON *root, UnitBody *ret, char **ret_err) {
        _cleanup_(fl_unit_file_freep) UnitFile *unit = NULL;
        UnitBody ub = {};
        const cJSON *f;
        int r;

        if (cJSON_IsNull(root)) {
                *ret = ub;
                return 0;
        }
        if (!cJSON_IsObject(root))
                return asprintf(ret_err, "expected a JSON object (Unit)") < 0 ? -ENOMEM : -EINVAL;

        cJSON_ArrayForEach(f, root) {
                const char *k = f->string, *dummy;

                if (strcasecmp(k, "name") == 0 || strcasecmp(k, "desiredState") == 0 ||
                    strcasecmp(k, "currentState") == 0 || strcasecmp(k, "machineID") == 0) {
                        const char **dst = strcasecmp(k, "name") == 0           ? &ub.name
                                            : strcasecmp(k, "desiredState") == 0 ? &ub.desired
                                                                                  : &dummy;
                        if (json_string_or_null(f, dst) < 0)
                                return asprintf(ret_err, "field \"%s\" must be a string", k) < 0 ? -ENOMEM : -EINVAL;
                } else if (strcasecmp(k, "options") == 0) {
                        const cJSON *o;
                        size_t i = 0;

                        if (cJSON_IsNull(f))
                                continue;
                        if (!cJSON_IsArray(f))
                                return asprintf(ret_err, "field \"options\" must be an array") < 0 ? -ENOMEM : -EINVAL;
                        unit = fl_unit_file_free(unit);
                        if (cJSON_GetArraySize(f) == 0)
                                continue;
                        r = fl_unit_file_new(&unit);
                        if (r < 0)
                                return r;
                        cJSON_ArrayForEach(o, f) {
                                const char *sec = NULL, *name = NULL, *value = NULL;
                                const cJSON *of;

                                if (!cJSON_IsObject(o))
                                        return asprintf(ret_err, "options[%zu] must be an object", i) < 0 ? -ENOMEM
                                                                                                     : -EINVAL;
                                cJSON_ArrayForEach(of, o) {
                                        const char **dst = strcasecmp(of->string, "section") == 0 ? &sec
                                                           : strcasecmp(of->string, "name") == 0  ? &name
                                                           : strcasecmp(of->string, "value") == 0 ? &value
                                                                                                  : NULL;
                                        if (dst && json_string_or_null(of, dst) < 0)
                                                return asprintf(ret_err, "options[%zu].%s must be a string", i,
                                                                of->string) < 0
                                                               ? -ENOMEM
                                                               : -EINVAL;
                                }
                                r = fl_unit_file_add(unit, strempty(sec), strempty(name), strempty(value));
                                if (r < 0)
                                        return r;
                                i++;
                        }
                }
        }
        ub.unit = TAKE_PTR(unit);
        *ret = ub;
        return 0;
}

/* A raw control character inside a string: JSON forbids it (Go's decoder refuses it), cJSON
 * takes it, and a raw NUL would silently cut the string short. An escaped NUL ("\u0000" in the
 * body) is valid JSON, but cJSON ends the string there. Only real escapes count: in "\\u0000"
 * the backslash is itself escaped and "u0000" is plain text. */
static void scan_strings(const char *data, size_t len, bool *ret_control, bool *ret_nul) {
        bool in_string = false;

        *ret_control = *ret_nul = false;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) data[i];

                if (!in_string)
                        in_string = c == '"';
                else if (c == '\\') {
                        if (len - i >= 6 && memcmp(data + i + 1, "u0000", 5) == 0)
                                *ret_nul = true;
                        i++;
                } else if (c == '"')
                        in_string = false;
                else if (c < 0x20)
                        *ret_control = true;
        }
}

/* Parses the request body as one JSON value. Stricter than Go's json.Decoder, which ignores
 * what follows the first value: trailing garbage is an error here. */
int fl_api_json_parse(const Buf *body, cJSON **ret, char **ret_err) {
        const char *end = NULL, *data = fl_buf_str(body);
        size_t len = body->len, i = 0;
        bool control, nul;
        cJSON *root;

        /* (strchr() would find the terminator: a NUL byte is no white space) */
        while (i < len && data[i] && strchr(" \t\r\n", data[i]))
                i++;
        if (i == len)
                return (*ret_err = strdup("EOF")) ? -EINVAL : -ENOMEM;
        /* cJSON ends strings at an escaped NUL; refuse it rather than silently truncate. */
        scan_strings(data, len, &control, &nul);
        if (nul)
                return (*ret_err = strdup("NUL character in string")) ? -EINVAL : -ENOMEM;
        if (control)
                return (*ret_err = strdup("invalid control character in string literal")) ? -EINVAL : -ENOMEM;
        root = cJSON_ParseWithLengthOpts(data, len, &end, false);
        if (!root) {
                size_t off = end && end >= data ? (size_t) (end - data) : 0;
                if (off >= len)
                        return (*ret_err = strdup("unexpected EOF")) ? -EINVAL : -ENOMEM;
                return asprintf(ret_err, "invalid JSON at offset %zu", off) < 0 ? -ENOMEM : -EINVAL;
        }
        for (i = (size_t) (end - data); i < len; i++)
                if (!data[i] || !strchr(" \t\r\n", data[i])) {
                        cJSON_Delete(root);
                        return asprintf(ret_err, "invalid character after top-level value at offset %zu", i) < 0
                                       ? -ENOMEM
                                       : -EINVAL;
                }
        *ret = root;
        return 0;
}

static void on_unit_written(Registry *reg, int error, void *userdata) {
        ApiCall *c = userdata;

        if (!fl_api_call_finish_write(c))
                return;
        if (error < 0) {
                c->api->stat_write_errors++;
                log_error_errno(error, "Failed to write unit '%s' for the API: %s", c->item, fl_api_store_error(error));
                fl_api_reply_error(c->req, 500, "");
        } else
                fl_api_reply_empty(c->req, c->status, NULL);
        fl_api_call_free(c);
}

/* Strict check of desiredState: fleet v1.0.0 stores anything here and the unit becomes
 * unreadable later; we refuse with 400 before writing. "" means inactive on creation. */
static int desired_state(HttpRequest *req, const char *s, JobState *ret) {
        JobState js;

        if (isempty(s)) {
                *ret = JOB_STATE_INACTIVE;
                return 0;
        }
        js = fl_job_state_from_string(s);
        if (js < 0) {
                _cleanup_free_ char *q = fl_go_quote(s);
                fl_api_reply_errorf(req, 400, "invalid desiredState %s: expect inactive, loaded or launched",
                                    strempty(q));
                return -EINVAL;
        }
        *ret = js;
        return 0;
}

static void put_create(ApiCall *call, UnitBody *ub) {
        JobState js;
        int r;

        if (desired_state(call->req, ub->desired, &js) < 0) {
                fl_api_call_free(call);
                return;
        }
        call->unit = TAKE_PTR(ub->unit);
        call->status = 201;
        r = fl_registry_create_unit_async(call->api->server->registry, call->item, call->unit, js,
                                          on_unit_written, call);
        if (r < 0) {
                log_error_errno(r, "Failed to create unit '%s' for the API: %m", call->item);
                fl_api_reply_error(call->req, 500, "");
                fl_api_call_free(call);
                return;
        }
        fl_api_call_start_write(call);
}

void fl_api_unit_put(ApiCall *call, const RegSnapshot *snap) {
        HttpRequest *req = call->req;
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_free_ char *err = NULL, *msg = NULL;
        UnitBody ub = {};
        const RegUnit *existing;
        const char *ct;
        size_t n_ct;
        JobState js;
        int r;

        /* 1. exactly one Content-Type, media type application/json */
        n_ct = fl_http_request_header_count(req, "Content-Type");
        if (n_ct != 1) {
                fl_api_reply_errorf(req, 415, "expected 1 Content-Type, got %zu", n_ct);
                goto done;
        }
        ct = fl_http_request_header(req, "Content-Type");
        {
                size_t l = strcspn(ct, ";");
                while (l > 0 && (ct[l - 1] == ' ' || ct[l - 1] == '\t'))
                        l--;
                while (l > 0 && (*ct == ' ' || *ct == '\t'))
                        ct++, l--;
                if (l != strlen("application/json") || strncasecmp(ct, "application/json", l) != 0) {
                        fl_api_reply_error(req, 415, "only acceptable Content-Type is application/json");
                        goto done;
                }
        }

        /* 2. decode */
        r = fl_api_json_parse(&req->body, &root, &err);
        if (r >= 0)
                r = decode_unit_body(root, &ub, &err);
        if (r < 0) {
                if (r == -ENOMEM)
                        fl_api_reply_error(req, 500, "");
                else
                        fl_api_reply_errorf(req, 400, "unable to decode body: %s", strempty(err));
                goto done;
        }

        /* 3. the body's name, if any, must be the URL's */
        if (!isempty(ub.name) && !streq(ub.name, call->item)) {
                _cleanup_free_ char *qa = fl_go_quote(call->item), *qb = fl_go_quote(ub.name);
                fl_api_reply_errorf(req, 400, "name in URL %s differs from unit name in request body %s",
                                    strempty(qa), strempty(qb));
                goto done;
        }

        /* 4. name */
        r = fl_unit_name_validate(call->item, &msg);
        if (r < 0) {
                fl_api_reply_error(req, r == -ENOMEM ? 500 : 400, r == -ENOMEM ? "" : msg);
                goto done;
        }

        /* 5. existing unit, from the mirror (which has our own last write) */
        existing = fl_reg_snapshot_find_unit(snap, call->item);

        /* 6. new unit */
        if (!existing) {
                if (!ub.unit) {
                        fl_api_reply_error(req, 409, "unit does not exist and options field empty");
                        goto done;
                }
                r = fl_unit_options_validate(ub.unit, NULL, &msg);
                if (r < 0) {
                        fl_api_reply_error(req, r == -ENOMEM ? 500 : 400, r == -ENOMEM ? "" : msg);
                        goto done;
                }
                put_create(TAKE_PTR(call), &ub);
                goto done;
        }

        /* 7. different contents replace the unit (fleet does not validate options here; we do
         * check that they can be stored: a unit that cannot be read back, or reads back as other
         * options than were sent, must not replace a good one) */
        if (ub.unit) {
                uint8_t h[20];
                char hex[41];

                r = fl_unit_options_check_syntax(ub.unit, &msg);
                if (r < 0) {
                        fl_api_reply_error(req, r == -ENOMEM ? 500 : 400, r == -ENOMEM ? "" : msg);
                        goto done;
                }

                r = fl_unit_file_hash(ub.unit, h);
                if (r < 0) {
                        fl_api_reply_error(req, 500, "");
                        goto done;
                }
                fl_hash_to_hex(h, hex);
                if (!streq(hex, existing->hash)) {
                        put_create(TAKE_PTR(call), &ub);
                        goto done;
                }
        }

        /* 8. same contents or none: a desired state change */
        if (isempty(ub.desired)) {
                fl_api_reply_error(req, 409, "must provide DesiredState to update existing unit");
                goto done;
        }
        if (fl_unit_name_is_template(call->item) && !streq(ub.desired, "inactive")) {
                _cleanup_free_ char *q = fl_go_quote(call->item);
                fl_api_reply_errorf(req, 400, "cannot activate template %s", strempty(q));
                goto done;
        }
        if (desired_state(req, ub.desired, &js) < 0)
                goto done;
        call->status = 204;
        r = fl_registry_set_target_state_async(call->api->server->registry, call->item, js, on_unit_written, call);
        if (r < 0) {
                log_error_errno(r, "Failed to set the target state of '%s' for the API: %m", call->item);
                fl_api_reply_error(req, 500, "");
                goto done;
        }
        fl_api_call_start_write(TAKE_PTR(call));

done:
        fl_unit_file_free(ub.unit);
        fl_api_call_free(call);
}

/* ---- DELETE ---- */

static void on_unit_destroyed(Registry *reg, int error, void *userdata) {
        ApiCall *c = userdata;

        if (!fl_api_call_finish_write(c))
                return;
        if (error == -ENOENT)
                fl_api_reply_error(c->req, 404, "unit does not exist");
        else if (error < 0) {
                c->api->stat_write_errors++;
                log_error_errno(error, "Failed to destroy unit '%s' for the API: %s", c->item,
                                fl_api_store_error(error));
                fl_api_reply_error(c->req, 500, "");
        } else
                fl_api_reply_empty(c->req, 204, NULL);
        fl_api_call_free(c);
}

void fl_api_unit_delete(ApiCall *call) {
        int r;

        /* No unit can have an invalid name, and names like ".." must never reach a recursive
         * delete in the store: answer without asking it. */
        if (fl_unit_name_validate(call->item, NULL) < 0) {
                fl_api_reply_error(call->req, 404, "unit does not exist");
                fl_api_call_free(call);
                return;
        }

        r = fl_registry_destroy_unit_async(call->api->server->registry, call->item, on_unit_destroyed, call);
        if (r < 0) {
                log_error_errno(r, "Failed to destroy unit '%s' for the API: %m", call->item);
                fl_api_reply_error(call->req, 500, "");
                fl_api_call_free(call);
                return;
        }
        fl_api_call_start_write(call);
}
