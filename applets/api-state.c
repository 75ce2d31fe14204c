/* SPDX-License-Identifier: MIT */
/* api-state.c: /state and /state/<name> (spec §3.3): what systemd reports for each unit on each
 * machine, as the agents published it. */
#include "api.h"
#include "strv.h"

static int state_json(Buf *b, const RegUnitState *st) {
        bool first = true;
        int r;

        r = fl_buf_putc(b, '{');
        if (r >= 0)
                r = fl_api_json_field(b, &first, "hash", st->hash);
        if (r >= 0)
                r = fl_api_json_field(b, &first, "machineID", st->machine_id);
        if (r >= 0)
                r = fl_api_json_field(b, &first, "name", st->name);
        if (r >= 0)
                r = fl_api_json_field(b, &first, "systemdActiveState", st->active_state);
        if (r >= 0)
                r = fl_api_json_field(b, &first, "systemdLoadState", st->load_state);
        if (r >= 0)
                r = fl_api_json_field(b, &first, "systemdSubState", st->sub_state);
        if (r >= 0)
                r = fl_buf_putc(b, '}');
        return r;
}

/* First value of a query parameter, NULL when absent (borrowed from *values). */
static const char *first_value(HttpRequest *req, const char *key, char ***values) {
        int n = fl_http_query_values(req->query, key, values);
        return n > 0 ? (*values)[0] : NULL;
}

typedef struct StateMatches {
        const RegSnapshot *snap;
        const size_t *match; /* indexes into snap->states */
} StateMatches;

static int states_item_json(Buf *b, const void *userdata, size_t i) {
        const StateMatches *m = userdata;
        return state_json(b, &m->snap->states[m->match[i]]);
}

/* Filters (exact match) apply before pagination, so pages count matching states only. */
void fl_api_state_list(ApiCall *call, const RegSnapshot *snap) {
        _cleanup_strv_free_ char **mvals = NULL, **uvals = NULL;
        _cleanup_free_ size_t *match = NULL;
        const char *machine, *unit;
        size_t n = 0;
        ApiPage p;

        if (fl_api_page_from_request(call->api, call->req, &p) < 0) {
                fl_api_call_free(call);
                return;
        }
        machine = first_value(call->req, "machineID", &mvals);
        unit = first_value(call->req, "unitName", &uvals);
        match = new(size_t, snap->n_states + 1);
        if (!match) {
                fl_api_reply_error(call->req, 500, "");
                fl_api_call_free(call);
                return;
        }
        for (size_t i = 0; i < snap->n_states; i++) {
                const RegUnitState *st = &snap->states[i];
                if (machine && !streq_ptr(st->machine_id, machine))
                        continue;
                if (unit && !streq_ptr(st->name, unit))
                        continue;
                match[n++] = i;
        }
        fl_api_reply_page(call, &p, n, "states", false, states_item_json, &(StateMatches) { snap, match });
}

/* fleet v1.0.0 crashes the handler here when there is no state (it dereferences a nil state and
 * the connection drops); we answer the intended 404. */
void fl_api_state_get(ApiCall *call, const RegSnapshot *snap) {
        ssize_t i = fl_reg_snapshot_find_states(snap, call->item);
        Buf b = BUF_INIT;

        if (i < 0)
                fl_api_reply_error(call->req, 404, "unit state does not exist");
        else if (state_json(&b, &snap->states[i]) < 0) {
                fl_buf_done(&b);
                fl_api_reply_error(call->req, 500, "");
        } else
                fl_api_reply_json(call->req, 200, &b);
        fl_api_call_free(call);
}
