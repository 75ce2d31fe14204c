/* SPDX-License-Identifier: MIT */
/* api-machines.c: /machines (spec §3.3): the live machines with their metadata, and PATCH of
 * dynamic metadata (machines/<id>/metadata/<key>). */
#include <stdio.h>

#include "api.h"
#include "log.h"
#include "strv.h"

static int machine_json(Buf *b, const RegMachine *m) {
        bool first = true;
        int r;

        r = fl_buf_putc(b, '{');
        if (r >= 0)
                r = fl_api_json_field(b, &first, "id", m->id);
        if (r >= 0 && m->n_metadata > 0) {
                /* pairs are sorted by key, which is the order Go's encoder writes a map in */
                r = fl_buf_printf(b, "%s\"metadata\":{", first ? "" : ",");
                first = false;
                for (size_t i = 0; r >= 0 && i < m->n_metadata; i++) {
                        if (i > 0)
                                r = fl_buf_putc(b, ',');
                        if (r >= 0)
                                r = fl_api_json_string(b, m->metadata[2 * i]);
                        if (r >= 0)
                                r = fl_buf_putc(b, ':');
                        if (r >= 0)
                                r = fl_api_json_string(b, strempty(m->metadata[2 * i + 1]));
                }
                if (r >= 0)
                        r = fl_buf_putc(b, '}');
        }
        if (r >= 0)
                r = fl_api_json_field(b, &first, "primaryIP", m->public_ip);
        if (r >= 0)
                r = fl_buf_putc(b, '}');
        return r;
}

static int machines_item_json(Buf *b, const void *userdata, size_t i) {
        const RegSnapshot *snap = userdata;
        return machine_json(b, &snap->machines[i]);
}

void fl_api_machines_list(ApiCall *call, const RegSnapshot *snap) {
        ApiPage p;

        if (fl_api_page_from_request(call->api, call->req, &p) < 0) {
                fl_api_call_free(call);
                return;
        }
        /* fleet's MachinePage has its token after the list */
        fl_api_reply_page(call, &p, snap->n_machines, "machines", true, machines_item_json, snap);
}

/* ---- PATCH ---- */

static bool metadata_key_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '-';
}

/* fleet's ^/([^/]+)/metadata/([A-Za-z0-9_.-]+)$, plus: neither the machine part nor the key
 * may be "." or "..", and the machine part may not contain control characters or spaces: they
 * would address keys outside machines/<id>/metadata/ in the store. */
static int parse_metadata_path(const char *path, char **ret_machine, char **ret_key) {
        const char *m, *slash, *key;
        char *a, *b;

        if (path[0] != '/')
                return -EINVAL;
        m = path + 1;
        slash = strchr(m, '/');
        if (!slash || slash == m)
                return -EINVAL;
        key = startswith(slash, "/metadata/");
        if (!key || !*key)
                return -EINVAL;
        for (const char *c = key; *c; c++)
                if (!metadata_key_char(*c))
                        return -EINVAL;
        if (streq(key, ".") || streq(key, ".."))
                return -EINVAL;
        for (const char *c = m; c < slash; c++)
                if ((unsigned char) *c <= 0x20 || *c == 0x7f)
                        return -EINVAL;
        if ((slash - m == 1 && m[0] == '.') || (slash - m == 2 && m[0] == '.' && m[1] == '.'))
                return -EINVAL;
        a = strndup(m, slash - m);
        b = strdup(key);
        if (!a || !b) {
                free(a);
                free(b);
                return -ENOMEM;
        }
        *ret_machine = a;
        *ret_key = b;
        return 0;
}

static void patch_next(ApiCall *c);

static void on_metadata_written(Registry *reg, int error, void *userdata) {
        ApiCall *c = userdata;

        if (!fl_api_call_finish_write(c))
                return;
        if (error < 0) {
                const char *msg = fl_api_store_error(error);
                c->api->stat_write_errors++;
                log_error_errno(error, "Failed to set metadata '%s' of machine '%s' for the API: %s",
                                c->patch[3 * c->patch_next + 1], c->patch[3 * c->patch_next], msg);
                fl_api_reply_error(c->req, 500, msg);
                fl_api_call_free(c);
                return;
        }
        c->patch_next++;
        patch_next(c);
}

/* Operations are applied one after the other, in body order. */
static void patch_next(ApiCall *c) {
        int r;

        if (c->patch_next >= c->n_patch) {
                fl_api_reply_empty(c->req, 204, "application/json");
                fl_api_call_free(c);
                return;
        }
        r = fl_registry_set_machine_metadata_async(c->api->server->registry, c->patch[3 * c->patch_next],
                                                   c->patch[3 * c->patch_next + 1],
                                                   c->patch[3 * c->patch_next + 2], on_metadata_written, c);
        if (r < 0) {
                log_error_errno(r, "Failed to set machine metadata for the API: %m");
                fl_api_reply_error(c->req, 500, fl_api_store_error(r));
                fl_api_call_free(c);
                return;
        }
        fl_api_call_start_write(c);
}

static const char *json_str(const cJSON *o, const char *name, bool *bad) {
        const cJSON *v = cJSON_GetObjectItem(o, name); /* case-insensitive, like Go's decoder */

        if (!v || cJSON_IsNull(v))
                return NULL;
        if (!cJSON_IsString(v)) {
                *bad = true;
                return NULL;
        }
        return v->valuestring;
}

void fl_api_machines_patch(ApiCall *call) {
        HttpRequest *req = call->req;
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_free_ char *err = NULL;
        _cleanup_strv_free_ char **triples = NULL;
        const cJSON *op;
        size_t i = 0;
        int r;

        r = fl_api_json_parse(&req->body, &root, &err);
        if (r == -ENOMEM)
                goto oom;
        if (r < 0) {
                fl_api_reply_error(req, 400, err);
                goto done;
        }
        if (!cJSON_IsArray(root) && !cJSON_IsNull(root)) {
                fl_api_reply_error(req, 400, "expected a JSON array of operations");
                goto done;
        }

        /* Validate every operation before the first write. */
        cJSON_ArrayForEach(op, root) {
                const char *o, *path, *value = NULL;
                _cleanup_free_ char *machine = NULL, *key = NULL;
                const cJSON *vo;
                bool bad = false;

                if (!cJSON_IsObject(op)) {
                        fl_api_reply_errorf(req, 400, "operation %zu is not a JSON object", i);
                        goto done;
                }
                o = json_str(op, "op", &bad);
                path = json_str(op, "path", &bad);
                vo = cJSON_GetObjectItem(op, "value");
                if (vo && cJSON_IsObject(vo))
                        value = json_str(vo, "value", &bad);
                else if (vo && !cJSON_IsNull(vo))
                        bad = true;
                if (bad) {
                        fl_api_reply_errorf(req, 400, "operation %zu: op and path must be strings, value an object "
                                                      "{\"value\": string}", i);
                        goto done;
                }
                if (!o || (!streq(o, "add") && !streq(o, "remove") && !streq(o, "replace"))) {
                        fl_api_reply_error(req, 400, "invalid op: expect add, remove, or replace");
                        goto done;
                }
                r = parse_metadata_path(strempty(path), &machine, &key);
                if (r == -ENOMEM)
                        goto oom;
                if (r < 0) {
                        fl_api_reply_error(req, 400, "machine metadata path invalid");
                        goto done;
                }
                if (!streq(o, "remove") && isempty(value)) {
                        fl_api_reply_error(req, 400, "invalid value: add and replace require a value");
                        goto done;
                }
                /* remove is a write of "", which the registry reads as "no such key" */
                if (fl_strv_push(&triples, TAKE_PTR(machine)) < 0 || fl_strv_push(&triples, TAKE_PTR(key)) < 0 ||
                    fl_strv_extend(&triples, streq(o, "remove") ? "" : value) < 0)
                        goto oom;
                i++;
        }

        call->patch = TAKE_PTR(triples);
        call->n_patch = i;
        call->patch_next = 0;
        patch_next(TAKE_PTR(call));
        return;

oom:
        fl_api_reply_error(req, 500, "");
done:
        fl_api_call_free(call);
}
