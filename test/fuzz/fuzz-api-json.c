/* SPDX-License-Identifier: MIT */
/* fuzz-api-json: the JSON of the HTTP API (spec §3.2-§3.4) on both sides. Server: the request
 * body parser and the PUT /units body decoder, the PATCH /machines metadata path; client
 * (fleetctl): the Unit, UnitPage, UnitStatePage and MachinePage decoders and the error message.
 * Round trips across the two: a unit the server decoded, encoded by the client's PUT encoder,
 * decodes to the same options; a unit the server encodes decodes in the client to the same
 * options; a server error entity gives fleet's "googleapi: Error N: msg". The list's fields
 * (partial response) parameter.
 *
 * The server side lives in applets/ as static functions, so this file includes those sources
 * (the linker drops what is not reached, with --gc-sections). */
#include "../../applets/api.c"
#include "../../applets/api-machines.c"
#include "../../applets/api-units.c"

#include "api-client.h"
#include "fuzz.h"

static bool utf8_valid(const char *s) {
        for (size_t n = strlen(s); n > 0;) {
                uint32_t cp;
                size_t l = fl_utf8_decode(s, n, &cp);
                if (l == 0)
                        return false;
                s += l;
                n -= l;
        }
        return true;
}

static bool unit_utf8_valid(const UnitFile *u) {
        for (size_t i = 0; u && i < u->n_options; i++)
                if (!utf8_valid(u->options[i].section) || !utf8_valid(u->options[i].name) ||
                    !utf8_valid(u->options[i].value))
                        return false;
        return true;
}

static bool same_options(const UnitFile *a, const UnitFile *b) {
        size_t na = a ? a->n_options : 0, nb = b ? b->n_options : 0;

        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (!streq(a->options[i].section, b->options[i].section) ||
                    !streq(a->options[i].name, b->options[i].name) || !streq(a->options[i].value, b->options[i].value))
                        return false;
        return true;
}

static int server_decode(const char *json, size_t len, cJSON **ret_root, UnitBody *ret, char **ret_err) {
        Buf body = BUF_INIT;
        int r;

        FUZZ_CHECK(fl_buf_append(&body, json, len) == 0 || len == 0);
        r = fl_api_json_parse(&body, ret_root, ret_err);
        fl_buf_done(&body);
        if (r < 0)
                return r;
        r = decode_unit_body(*ret_root, ret, ret_err);
        if (r < 0) {
                cJSON_Delete(*ret_root);
                *ret_root = NULL;
                return r;
        }
        return 0;
}

static void server_side(const uint8_t *data, size_t size) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL, *root2 = NULL;
        _cleanup_free_ char *err = NULL, *err2 = NULL, *client = NULL, *msg = NULL;
        UnitBody ub = {}, ub2 = {};
        int r;

        r = server_decode((const char *) data, size, &root, &ub, &err);
        if (getenv("FUZZ_DEBUG"))
                fprintf(stderr, "server: %d %s\n", r, strempty(err));
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL && err);
                return;
        }
        FUZZ_CHECK(!err);
        if (ub.name)
                (void) fl_unit_name_validate(ub.name, NULL);
        if (ub.unit) {
                r = fl_unit_options_validate(ub.unit, NULL, &msg);
                FUZZ_CHECK((r == 0 && !msg) || (r == -EINVAL && msg));
        }

        /* fleetctl's PUT encoder, read back by the server: the same options. Names and values
         * with a NUL escape are refused by the server on purpose; cJSON cuts them anyway. */
        client = fl_api_encode_unit(ub.name ?: "x.service", ub.desired, ub.unit);
        FUZZ_CHECK(client);
        r = server_decode(client, strlen(client), &root2, &ub2, &err2);
        if (r < 0)
                fprintf(stderr, "server refuses the client's encoding: %s\n%s\n", strempty(err2), client);
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK_STREQ(ub2.name, ub.name ?: "x.service");
        FUZZ_CHECK_STREQ(ub2.desired, ub.desired);
        FUZZ_CHECK(same_options(ub.unit, ub2.unit));

        /* The server's Unit entity, read by the client. */
        if (ub.name && *ub.name) {
                RegUnit u = {
                        .name = (char *) ub.name,
                        .file = ub.unit,
                        .target_state = JOB_STATE_LAUNCHED,
                        .current_state = JOB_STATE_LOADED,
                        .target = (char *) "4e5a1d4f0f3c4b8a9b7e0c2d1a3f5e6d",
                };
                Buf b = BUF_INIT;
                ApiUnit au = {};

                FUZZ_CHECK(unit_json(&b, &u, false, UNIT_ALL) == 0);
                r = fl_api_decode_unit(fl_buf_str(&b), b.len, &au);
                if (r < 0)
                        fprintf(stderr, "client refuses the server's unit: %s\n", fl_buf_str(&b));
                FUZZ_CHECK(r == 0);
                if (utf8_valid(ub.name) && unit_utf8_valid(ub.unit)) {
                        FUZZ_CHECK_STREQ(au.name, ub.name);
                        FUZZ_CHECK_STREQ(au.desired_state, "launched");
                        FUZZ_CHECK_STREQ(au.current_state, "loaded");
                        FUZZ_CHECK(same_options(ub.unit, au.file));
                }
                fl_api_unit_done(&au);
                fl_buf_done(&b);
        }
        fl_unit_file_free(ub.unit);
        fl_unit_file_free(ub2.unit);
}

static void client_side(const uint8_t *data, size_t size) {
        /* exact-size copy: an over-read is an ASan report */
        _cleanup_free_ char *json = malloc(size ?: 1), *token = NULL, *msg = NULL;
        ApiUnit u = {}, *units = NULL;
        ApiUnitState *states = NULL;
        ApiMachine *machines = NULL;
        size_t n_units = 0, n_states = 0, n_machines = 0;
        int r;

        FUZZ_CHECK(json);
        memcpy(json, data, size);

        r = fl_api_decode_unit(json, size, &u);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        if (r == 0)
                FUZZ_CHECK(u.name && u.file);
        fl_api_unit_done(&u);

        r = fl_api_decode_unit_page(json, size, &units, &n_units, &token);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        for (size_t i = 0; i < n_units; i++)
                FUZZ_CHECK(units[i].name && units[i].file);
        fl_api_units_free(units, n_units);
        token = mfree(token);

        r = fl_api_decode_state_page(json, size, &states, &n_states, &token);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        for (size_t i = 0; i < n_states; i++)
                FUZZ_CHECK(states[i].name);
        fl_api_unit_states_free(states, n_states);
        token = mfree(token);

        r = fl_api_decode_machine_page(json, size, &machines, &n_machines, &token);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        for (size_t i = 0; i < n_machines; i++) {
                const ApiMachine *m = &machines[i];
                FUZZ_CHECK(m->id);
                FUZZ_CHECK((m->n_metadata == 0) == !m->metadata);
                for (size_t k = 0; k < m->n_metadata; k++) {
                        FUZZ_CHECK(m->metadata[2 * k] && m->metadata[2 * k + 1]);
                        if (k > 0)
                                FUZZ_CHECK(strcmp(m->metadata[2 * k - 2], m->metadata[2 * k]) <= 0);
                }
                if (r == 0) {
                        /* the server's Machine entity of it, decoded again */
                        RegMachine rm = { .id = m->id, .public_ip = m->public_ip, .metadata = m->metadata,
                                          .n_metadata = m->n_metadata };
                        ApiMachine *again = NULL;
                        size_t n_again = 0;
                        _cleanup_free_ char *t2 = NULL;
                        Buf b = BUF_INIT;
                        FUZZ_CHECK(fl_buf_puts(&b, "{\"machines\":[") == 0);
                        FUZZ_CHECK(machine_json(&b, &rm) == 0);
                        FUZZ_CHECK(fl_buf_puts(&b, "]}") == 0);
                        FUZZ_CHECK(fl_api_decode_machine_page(fl_buf_str(&b), b.len, &again, &n_again, &t2) == 0);
                        FUZZ_CHECK(n_again == 1 && again[0].n_metadata == m->n_metadata);
                        fl_api_machines_free(again, n_again);
                        fl_buf_done(&b);
                }
        }
        fl_api_machines_free(machines, n_machines);

        msg = fl_api_error_message(size > 0 ? 400 + data[0] % 200 : 500, json, size);
        FUZZ_CHECK(msg && startswith(msg, "googleapi: "));
}

static void strings(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = fuzz_strndup(data, size), *esc = NULL, *unesc = NULL, *entity = NULL,
                           *msg = NULL, *machine = NULL, *key = NULL;
        int r;

        FUZZ_CHECK(s);
        /* fleetctl path-escapes unit names; the server percent-decodes them */
        esc = fl_api_path_escape(s);
        FUZZ_CHECK(esc);
        FUZZ_CHECK(strspn(esc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~%") == strlen(esc));
        FUZZ_CHECK(fl_http_unescape(esc, strlen(esc), false, &unesc) == 0);
        FUZZ_CHECK_STREQ(unesc, s);

        /* the server's error entity, as fleetctl prints it */
        entity = error_entity(404, s);
        FUZZ_CHECK(entity);
        msg = fl_api_error_message(404, entity, strlen(entity));
        FUZZ_CHECK(msg);
        if (*s && utf8_valid(s)) {
                _cleanup_free_ char *want = NULL;
                FUZZ_CHECK(asprintf(&want, "googleapi: Error 404: %s", s) > 0);
                FUZZ_CHECK_STREQ(msg, want);
        }

        /* PATCH /machines paths */
        r = parse_metadata_path(s, &machine, &key);
        if (r == 0) {
                _cleanup_free_ char *back = NULL;
                FUZZ_CHECK(*machine && !strchr(machine, '/') && !streq(machine, ".") && !streq(machine, ".."));
                FUZZ_CHECK(*key && strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") ==
                                           strlen(key));
                FUZZ_CHECK(asprintf(&back, "/%s/metadata/%s", machine, key) > 0);
                FUZZ_CHECK_STREQ(back, s);
        } else
                FUZZ_CHECK(r == -EINVAL);
}

/* The fields parameter of a unit list: any selection asks for some unit field, and a unit
 * encoded with it still decodes (the name may be left out: the client then refuses it). */
static void fields(const uint8_t *data, size_t size) {
        _cleanup_free_ char *q = NULL;
        HttpRequest req = {};
        unsigned mask;

        if (asprintf(&q, "fields=%.*s", (int) size, (const char *) data) < 0)
                return;
        req.query = q;
        mask = units_list_fields(&req);
        FUZZ_CHECK(mask != 0 && (mask & ~(unsigned) UNIT_ALL) == 0);
        if (mask & UNIT_NAME) {
                RegUnit u = { .name = (char *) "a.service", .target_state = JOB_STATE_LOADED };
                Buf b = BUF_INIT;
                ApiUnit au = {};

                FUZZ_CHECK(unit_json(&b, &u, true, mask) == 0);
                FUZZ_CHECK(fl_api_decode_unit(fl_buf_str(&b), b.len, &au) == 0);
                FUZZ_CHECK_STREQ(au.name, "a.service");
                fl_api_unit_done(&au);
                fl_buf_done(&b);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 256 * 1024)
                return 0;
        server_side(data, size);
        client_side(data, size);
        strings(data, size);
        fields(data, size);
        return 0;
}
