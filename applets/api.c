/* SPDX-License-Identifier: MIT */
/* api.c: fleetd's HTTP API v1 (spec §3): listeners, routing, the registration gate, the JSON
 * plumbing, pagination, read-your-writes, discovery and metrics. Endpoints are in api-units.c,
 * api-state.c and api-machines.c.
 *
 * Reads never go to etcd: they answer from the registry mirror (fl_registry_snapshot). A
 * client that wrote through us and then reads must see its write, so a read waits (up to
 * FL_API_READ_WAIT_USEC) until the mirror has applied the store index of this server's last
 * write; after that it answers from the mirror as it is. */
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "api.h"
#include "api-client.h"
#include "clock.h"
#include "log.h"
#include "strv.h"

#define API_DEFAULT_SOCKET "/var/run/fleet.sock"
#define API_WAIT_POLL_USEC (20ULL * 1000ULL)

/* ---- JSON output ---- */

int fl_api_json_string(Buf *b, const char *s) {
        static const char hex[] = "0123456789abcdef";
        size_t n = strlen(s);
        int r;

        r = fl_buf_putc(b, '"');
        for (size_t i = 0; r >= 0 && i < n;) {
                unsigned char c = (unsigned char) s[i];
                uint32_t cp;
                size_t l;

                if (c < 0x80) {
                        i++;
                        if (c == '"' || c == '\\') {
                                char e[2] = { '\\', (char) c };
                                r = fl_buf_append(b, e, 2);
                        } else if (c == '\n')
                                r = fl_buf_puts(b, "\\n");
                        else if (c == '\r')
                                r = fl_buf_puts(b, "\\r");
                        else if (c == '\t')
                                r = fl_buf_puts(b, "\\t");
                        else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
                                /* Go's encoder: other controls and HTML-significant bytes as \u00XX */
                                char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
                                r = fl_buf_append(b, e, 6);
                        } else
                                r = fl_buf_putc(b, (char) c);
                        continue;
                }
                l = fl_utf8_decode(s + i, n - i, &cp);
                if (l == 0) {
                        r = fl_buf_puts(b, "\\ufffd"); /* invalid UTF-8, as Go writes it */
                        i++;
                } else if (cp == 0x2028 || cp == 0x2029) {
                        r = fl_buf_printf(b, "\\u%04x", (unsigned) cp);
                        i += l;
                } else {
                        r = fl_buf_append(b, s + i, l);
                        i += l;
                }
        }
        if (r >= 0)
                r = fl_buf_putc(b, '"');
        return r;
}

int fl_api_json_field(Buf *b, bool *first, const char *key, const char *value) {
        int r;

        if (isempty(value))
                return 0;
        r = fl_buf_printf(b, "%s\"%s\":", *first ? "" : ",", key);
        if (r < 0)
                return r;
        *first = false;
        return fl_api_json_string(b, value);
}

static char *error_entity(int status, const char *msg) {
        Buf b = BUF_INIT;

        if (fl_buf_printf(&b, "{\"error\":{\"code\":%d,\"message\":", status) < 0 ||
            fl_api_json_string(&b, strempty(msg)) < 0 || fl_buf_puts(&b, "}}") < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

/* ---- Replies ---- */

static void reply(HttpRequest *req, int status, const char *content_type, const char *body, size_t len) {
        int r;

        r = fl_http_request_reply(req, status, content_type, body, len);
        if (r < 0 && r != -ENOTCONN)
                log_debug("API: failed to queue reply to %s %s: %s", req->method, req->target, strerror(-r));
        else
                log_debug("API: %s %s -> %d", req->method, req->target, status);
}

void fl_api_reply_json(HttpRequest *req, int status, Buf *b) {
        reply(req, status, "application/json", fl_buf_str(b), b->len);
        fl_buf_done(b);
}

void fl_api_reply_error(HttpRequest *req, int status, const char *msg) {
        _cleanup_free_ char *body = error_entity(status, msg);

        if (!body) {
                reply(req, 500, NULL, NULL, 0);
                return;
        }
        reply(req, status, "application/json", body, strlen(body));
}

void fl_api_reply_errorf(HttpRequest *req, int status, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        fl_api_reply_error(req, status, msg);
}

void fl_api_reply_empty(HttpRequest *req, int status, const char *content_type) {
        reply(req, status, content_type, NULL, 0);
}

const char *fl_api_store_error(int error) {
        switch (error) {
        case -ETIMEDOUT:
                return "etcd request timed out";
        case -ECONNREFUSED:
        case -EHOSTUNREACH:
        case -ENETUNREACH:
                return "etcd cluster unreachable";
        case -EBADMSG:
                return "unexpected response from etcd";
        case -ENOENT:
                return "key not found";
        case -ESTALE:
                return "compare failed";
        default:
                return strerror(-error);
        }
}

/* ---- Pagination ---- */

static int b64url_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '-')
                return 62;
        if (c == '_')
                return 63;
        return -1;
}

static int page_token_corrupt(size_t offset, char **ret_msg) {
        if (asprintf(ret_msg, "illegal base64 data at input byte %zu", offset) < 0)
                *ret_msg = NULL;
        return -EINVAL;
}

/* Go's base64.URLEncoding.DecodeString followed by binary.Read of two little-endian uint16:
 * same acceptance and the same error texts. The loop follows Go 1.7's decode() step by step,
 * since the reported offsets depend on where it notices a problem: a short last quantum at its
 * start, a bad character where it is, data after the padding where that data starts. */
int fl_api_page_token_parse(const char *token, ApiPage *ret, char **ret_msg) {
        uint8_t d[4];
        size_t nd = 0, n = 0, si = 0, len = strlen(token);
        ssize_t garbage = -1;
        bool end = false;
        _cleanup_free_ char *clean = new(char, len + 1);

        if (!clean)
                return -ENOMEM;
        /* DecodeString drops CR and LF first; offsets count in what is left. */
        for (size_t i = 0; i < len; i++)
                if (token[i] != '\r' && token[i] != '\n')
                        clean[n++] = token[i];
        clean[n] = 0;

        while (si < n && !end) {
                int v[4] = {};
                size_t dlen = 4;

                for (size_t j = 0; j < 4; j++) {
                        char c;

                        if (si == n)
                                return page_token_corrupt(si - j, ret_msg);
                        c = clean[si++];
                        if (c == '=') {
                                if (j < 2)
                                        return page_token_corrupt(si - 1, ret_msg);
                                if (j == 2) {
                                        /* "==" expected, the first one is consumed. */
                                        if (si == n)
                                                return page_token_corrupt(n, ret_msg);
                                        if (clean[si] != '=')
                                                return page_token_corrupt(si - 1, ret_msg);
                                        si++;
                                }
                                if (si < n)
                                        garbage = (ssize_t) si;
                                dlen = j;
                                end = true;
                                break;
                        }
                        v[j] = b64url_value(c);
                        if (v[j] < 0)
                                return page_token_corrupt(si - 1, ret_msg);
                }
                {
                        uint32_t x = (uint32_t) v[0] << 18 | (uint32_t) v[1] << 12 | (uint32_t) v[2] << 6 |
                                     (uint32_t) v[3];
                        uint8_t o[3] = { (x >> 16) & 0xff, (x >> 8) & 0xff, x & 0xff };
                        for (size_t k = 0; k + 1 < dlen; k++)
                                if (nd < 4)
                                        d[nd++] = o[k];
                }
        }
        if (garbage >= 0)
                return page_token_corrupt((size_t) garbage, ret_msg);
        if (nd < 4) {
                *ret_msg = strdup(nd == 0 ? "EOF" : "unexpected EOF");
                return -EINVAL;
        }
        ret->limit = d[0] | (unsigned) d[1] << 8;
        ret->page = d[2] | (unsigned) d[3] << 8;
        return 0;
}

static unsigned token_limit(Api *a) {
        unsigned l = a->server->config ? a->server->config->token_limit : 0;
        return l > 0 && l <= 0xffff ? l : 100;
}

int fl_api_page_from_request(Api *a, HttpRequest *req, ApiPage *ret) {
        _cleanup_strv_free_ char **tokens = NULL;
        _cleanup_free_ char *msg = NULL;
        ApiPage p;
        int n;

        n = fl_http_query_values(req->query, "nextPageToken", &tokens);
        if (n < 0) {
                fl_api_reply_error(req, 500, "");
                return -ENOMEM;
        }
        if (n == 0) {
                *ret = (ApiPage) { .limit = token_limit(a), .page = 1 };
                return 0;
        }
        if (n > 1) {
                fl_api_reply_error(req, 400, "too many values for page token");
                return -EINVAL;
        }
        if (fl_api_page_token_parse(tokens[0], &p, &msg) < 0) {
                fl_api_reply_error(req, 400, msg ?: "");
                return -EINVAL;
        }
        if (p.limit != token_limit(a)) {
                fl_api_reply_errorf(req, 400, "token limit must be %u", token_limit(a));
                return -EINVAL;
        }
        if (p.page == 0) {
                fl_api_reply_error(req, 400, "token page must be greater than zero");
                return -EINVAL;
        }
        *ret = p;
        return 0;
}

bool fl_api_page_range(const ApiPage *p, size_t n, size_t *ret_start, size_t *ret_end) {
        uint64_t start = (uint64_t) (p->page - 1) * p->limit, end = (uint64_t) p->page * p->limit;

        *ret_start = (size_t) MIN(start, (uint64_t) n);
        *ret_end = (size_t) MIN(end, (uint64_t) n);
        /* fleet emits a token whenever the page ended at or before the last item, so an exactly
         * full last page is followed by an empty one. */
        return end <= n;
}

static int page_token_field(Buf *b, bool *first, const ApiPage *p) {
        char token[9];

        fl_api_page_token(p->limit, (p->page + 1) & 0xffff, token);
        return fl_api_json_field(b, first, "nextPageToken", token);
}

void fl_api_reply_page(ApiCall *call, const ApiPage *p, size_t n, const char *member, bool token_last,
                       ApiItemJson item_json, const void *userdata) {
        Buf b = BUF_INIT;
        size_t start, end;
        bool more, first = true;
        int r;

        more = fl_api_page_range(p, n, &start, &end);
        r = fl_buf_putc(&b, '{');
        if (r >= 0 && more && !token_last)
                r = page_token_field(&b, &first, p);
        if (r >= 0 && end > start) {
                r = fl_buf_printf(&b, "%s\"%s\":[", first ? "" : ",", member);
                first = false;
                for (size_t i = start; r >= 0 && i < end; i++) {
                        if (i > start)
                                r = fl_buf_putc(&b, ',');
                        if (r >= 0)
                                r = item_json(&b, userdata, i);
                }
                if (r >= 0)
                        r = fl_buf_putc(&b, ']');
        }
        if (r >= 0 && more && token_last)
                r = page_token_field(&b, &first, p);
        if (r >= 0)
                r = fl_buf_putc(&b, '}');
        if (r < 0) {
                fl_buf_done(&b);
                fl_api_reply_error(call->req, 500, "");
        } else
                fl_api_reply_json(call->req, 200, &b);
        fl_api_call_free(call);
}

/* ---- Calls ---- */

ApiCall *fl_api_call_new(Api *a, HttpRequest *req, const char *item) {
        ApiCall *c = new0(ApiCall, 1);

        if (!c)
                return NULL;
        c->api = a;
        c->req = fl_http_request_ref(req);
        if (item) {
                c->item = strdup(item);
                if (!c->item)
                        return fl_api_call_free(c);
        }
        return c;
}

ApiCall *fl_api_call_free(ApiCall *c) {
        if (!c)
                return NULL;
        fl_http_request_unref(c->req);
        free(c->item);
        fl_unit_file_free(c->unit);
        fl_strv_free(c->patch);
        return mfree(c);
}

static void list_add_tail(ApiCall **head, ApiCall *c) {
        ApiCall *t = *head;

        c->prev = c->next = NULL;
        if (!t) {
                *head = c;
                return;
        }
        while (t->next)
                t = t->next;
        t->next = c;
        c->prev = t;
}

static void list_remove(ApiCall **head, ApiCall *c) {
        if (c->prev)
                c->prev->next = c->next;
        else if (*head == c)
                *head = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
}

void fl_api_call_start_write(ApiCall *c) {
        c->api->stat_writes++;
        /* Writes are few and short; the head insert keeps this O(1). */
        c->prev = NULL;
        c->next = c->api->writing;
        if (c->next)
                c->next->prev = c;
        c->api->writing = c;
}

bool fl_api_call_finish_write(ApiCall *c) {
        if (!c->api) {
                fl_api_call_free(c);
                return false;
        }
        list_remove(&c->api->writing, c);
        /* (Out of memory, this unit's next read may not wait for this write.) */
        if (c->item)
                (void) fl_pending_writes_add(&c->api->pending, c->item,
                                             fl_registry_write_index(c->api->server->registry),
                                             fl_registry_mirror_index(c->api->server->registry));
        return true;
}

/* ---- Read-your-writes ---- */

static void waiting_rearm(Api *a) {
        uint64_t next;

        if (!a->waiting) {
                (void) sd_event_source_set_enabled(a->wait_timer, SD_EVENT_OFF);
                return;
        }
        /* FIFO with one fixed wait: the head has the earliest deadline. The mirror tells us
         * about changed content, but its index can also move without a change (an event for a
         * key it does not keep), so waiting reads look again every few milliseconds too. */
        next = MIN(a->waiting->deadline, fl_now_usec() + API_WAIT_POLL_USEC);
        (void) sd_event_source_set_time(a->wait_timer, next);
        (void) sd_event_source_set_enabled(a->wait_timer, SD_EVENT_ONESHOT);
}

static void waiting_process(Api *a) {
        Registry *reg = a->server->registry;
        const RegSnapshot *snap = NULL;
        uint64_t idx = fl_registry_mirror_index(reg), now = fl_now_usec();
        bool due = false;
        ApiCall *c, *next;

        /* The mirror changes with every watch event, and decoding a snapshot costs O(units):
         * decode only when some waiting read can be answered (or has waited long enough), not
         * on every event while writes (a batch of PUTs) keep coming. */
        for (c = a->waiting; c && !due; c = c->next)
                due = idx >= c->wait_index || now >= c->deadline;
        if (due)
                snap = fl_registry_snapshot(reg);

        for (c = a->waiting; c; c = next) {
                next = c->next;
                if (fl_http_request_is_orphan(c->req)) {
                        list_remove(&a->waiting, c);
                        fl_api_call_free(c);
                        continue;
                }
                if (snap && idx >= c->wait_index) {
                        list_remove(&a->waiting, c);
                        c->read_fn(c, snap);
                        continue;
                }
                if (now < c->deadline)
                        continue;
                list_remove(&a->waiting, c);
                if (!snap) {
                        fl_api_reply_error(c->req, 503, FL_API_UNAVAILABLE_MESSAGE);
                        fl_api_call_free(c);
                        continue;
                }
                a->stat_stale_reads++;
                log_debug("API: mirror at index %" PRIu64 " did not reach %" PRIu64 " in time, answering %s anyway",
                          idx, c->wait_index, c->req->target);
                c->read_fn(c, snap);
        }
        waiting_rearm(a);
}

static int on_wait_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        waiting_process(userdata);
        return 0;
}

void fl_api_on_registry_change(Api *a) {
        if (!a)
                return;
        fl_pending_writes_prune(&a->pending, fl_registry_mirror_index(a->server->registry));
        if (a->waiting)
                waiting_process(a);
}

static void api_read(Api *a, HttpRequest *req, const char *item, ApiReadFn fn) {
        Registry *reg = a->server->registry;
        const RegSnapshot *snap;
        ApiCall *c;

        c = fl_api_call_new(a, req, item);
        if (!c) {
                fl_api_reply_error(req, 500, "");
                return;
        }
        c->read_fn = fn;
        /* One unit: after our own writes to it (a PUT of a new unit need not wait for the
         * writes of the other PUTs in flight beside it, nor for a mirror that fell behind
         * them). Lists: after all our writes. */
        c->wait_index = item ? fl_pending_writes_get(&a->pending, item) : fl_registry_write_index(reg);
        /* Only decode when the answer can be given now (see waiting_process()). */
        snap = fl_registry_mirror_index(reg) >= c->wait_index ? fl_registry_snapshot(reg) : NULL;
        if (snap) {
                fn(c, snap);
                return;
        }
        /* Behind our own write (or no first read yet): wait for the mirror. */
        a->stat_deferred_reads++;
        c->deadline = fl_now_usec() + FL_API_READ_WAIT_USEC;
        list_add_tail(&a->waiting, c);
        waiting_rearm(a);
}

/* ---- Discovery and metrics ---- */

static void metric(Buf *b, const char *name, const char *type, const char *help, uint64_t value) {
        (void) fl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name, type, name,
                             value);
}

static void serve_metrics(Api *a, HttpRequest *req) {
        Registry *reg = a->server->registry;
        const RegSnapshot *snap = fl_registry_snapshot(reg);
        HttpServerStats st;
        uint64_t ops = 0, in = 0, out = 0;
        Buf b = BUF_INIT;

        if (!streq(req->method, "GET") && !streq(req->method, "HEAD")) {
                fl_api_reply_error(req, 405, "only GET supported against this resource");
                return;
        }
        fl_http_server_get_stats(a->http, &st);
        fl_registry_stats(reg, &ops, &in, &out);

        (void) fl_buf_puts(&b, "# HELP fleet_api_responses_total HTTP API responses by status class.\n"
                               "# TYPE fleet_api_responses_total counter\n");
        for (int k = 1; k <= 5; k++)
                (void) fl_buf_printf(&b, "fleet_api_responses_total{code=\"%dxx\"} %" PRIu64 "\n", k,
                                     st.responses[k]);
        metric(&b, "fleet_api_requests_total", "counter", "HTTP API requests handled.", st.requests);
        metric(&b, "fleet_api_bad_requests_total", "counter", "HTTP requests refused as malformed.",
               st.bad_requests);
        metric(&b, "fleet_api_connections_accepted_total", "counter", "HTTP API connections accepted.",
               st.connections_accepted);
        metric(&b, "fleet_api_connections_rejected_total", "counter",
               "HTTP API connections refused over the connection limit.", st.connections_rejected);
        metric(&b, "fleet_api_connections_timed_out_total", "counter",
               "HTTP API connections dropped for sending too slowly.", st.connections_timed_out);
        metric(&b, "fleet_api_connections_open", "gauge", "HTTP API connections open now.", st.connections_open);
        metric(&b, "fleet_api_deferred_reads_total", "counter",
               "Reads that waited for the registry mirror to show this server's writes.", a->stat_deferred_reads);
        metric(&b, "fleet_api_stale_reads_total", "counter",
               "Deferred reads answered after the wait ran out.", a->stat_stale_reads);
        metric(&b, "fleet_api_writes_total", "counter", "Registry writes started by the API.", a->stat_writes);
        metric(&b, "fleet_api_write_failures_total", "counter", "Registry writes by the API that failed.",
               a->stat_write_errors);
        metric(&b, "fleet_registry_operation_count_total", "counter", "Requests sent to etcd by this process.",
               ops);
        metric(&b, "fleet_registry_received_bytes_total", "counter", "Bytes received from etcd.", in);
        metric(&b, "fleet_registry_sent_bytes_total", "counter", "Bytes sent to etcd.", out);
        metric(&b, "fleet_registry_mirror_index", "gauge", "etcd index the registry mirror has applied.",
               fl_registry_mirror_index(reg));
        metric(&b, "fleet_registry_mirror_reads_total", "counter",
               "Full reads of the registry by the mirror (the first, then after falling out of etcd's history).",
               fl_registry_mirror_reads(reg));
        metric(&b, "fleet_machine_registered", "gauge", "1 once this machine's presence is established.",
               a->server->registered ? 1 : 0);
        if (snap) {
                metric(&b, "fleet_units", "gauge", "Units in the registry.", snap->n_units);
                metric(&b, "fleet_unit_states", "gauge", "Unit states published by agents.", snap->n_states);
                metric(&b, "fleet_machines", "gauge", "Machines present in the cluster.", snap->n_machines);
        }
        if (!b.data) {
                fl_api_reply_error(req, 500, "");
                return;
        }
        reply(req, 200, "text/plain; version=0.0.4", b.data, b.len);
        fl_buf_done(&b);
}

static void serve_discovery(HttpRequest *req) {
        if (!streq(req->method, "GET")) {
                fl_api_reply_error(req, 400, "only HTTP GET supported against this resource");
                return;
        }
        reply(req, 200, "application/json", fl_api_discovery_json, strlen(fl_api_discovery_json));
}

/* ---- Routing ---- */

static void route_units(Api *a, HttpRequest *req, const char *item) {
        const char *m = req->method;

        if (!item) {
                if (streq(m, "GET"))
                        api_read(a, req, NULL, fl_api_units_list);
                else
                        fl_api_reply_error(req, 405, "only GET supported against this resource");
                return;
        }
        if (streq(m, "GET"))
                api_read(a, req, item, fl_api_unit_get);
        else if (streq(m, "PUT"))
                /* the decision procedure reads the current unit: same wait as a read */
                api_read(a, req, item, fl_api_unit_put);
        else if (streq(m, "DELETE")) {
                ApiCall *c = fl_api_call_new(a, req, item);
                if (!c)
                        fl_api_reply_error(req, 500, "");
                else
                        fl_api_unit_delete(c);
        } else
                fl_api_reply_error(req, 405, "only GET, PUT and DELETE supported against this resource");
}

static void route_state(Api *a, HttpRequest *req, const char *item) {
        if (!streq(req->method, "GET")) {
                fl_api_reply_error(req, 405, "only GET supported against this resource");
                return;
        }
        api_read(a, req, item, item ? fl_api_state_get : fl_api_state_list);
}

static void route_machines(Api *a, HttpRequest *req) {
        if (streq(req->method, "GET"))
                api_read(a, req, NULL, fl_api_machines_list);
        else if (streq(req->method, "PATCH")) {
                ApiCall *c = fl_api_call_new(a, req, NULL);
                if (!c)
                        fl_api_reply_error(req, 500, "");
                else
                        fl_api_machines_patch(c);
        } else
                fl_api_reply_error(req, 405, "only GET and PATCH supported against this resource");
}

static void on_request(HttpServer *h, HttpRequest *req, void *userdata) {
        Api *a = userdata;
        _cleanup_free_ char *path = NULL;
        const char *rest, *slash;
        _cleanup_free_ char *collection = NULL;
        const char *item = NULL;

        if (!a->server->registered) {
                fl_api_reply_error(req, 503, FL_API_UNAVAILABLE_MESSAGE);
                return;
        }
        if (fl_http_unescape(req->path, strlen(req->path), false, &path) < 0) {
                fl_api_reply_error(req, 400, "invalid URL escape");
                return;
        }
        if (streq(path, "/metrics")) {
                serve_metrics(a, req);
                return;
        }
        if (streq(path, "/")) {
                fl_api_reply_error(req, 405, "");
                return;
        }
        rest = startswith(path, "/fleet/v1") ?: startswith(path, "/v1-alpha");
        if (rest && *rest == 0) {
                fl_api_reply_error(req, 405, "");
                return;
        }
        if (!rest || *rest != '/') {
                fl_api_reply_error(req, 404, "");
                return;
        }
        rest++;
        slash = strchr(rest, '/');
        collection = slash ? strndup(rest, slash - rest) : strdup(rest);
        if (!collection) {
                fl_api_reply_error(req, 500, "");
                return;
        }
        if (slash) {
                item = slash + 1;
                /* "/units/" and "/units/a/b" are no resources (a name never has a '/'). */
                if (isempty(item) || strchr(item, '/') || !(streq(collection, "units") || streq(collection, "state"))) {
                        fl_api_reply_error(req, 404, "");
                        return;
                }
        }
        if (streq(collection, "discovery") && !item)
                serve_discovery(req);
        else if (streq(collection, "units"))
                route_units(a, req, item);
        else if (streq(collection, "state"))
                route_state(a, req, item);
        else if (streq(collection, "machines") && !item)
                route_machines(a, req);
        else
                fl_api_reply_error(req, 404, "");
}

static char *on_http_error(int status, const char *message, void *userdata) {
        return error_entity(status, message);
}

/* ---- Lifecycle ---- */

static bool is_tcp_socket(int fd) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);

        return getsockname(fd, (struct sockaddr *) &ss, &sl) == 0 &&
               (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

/* TCP listeners (bound from api_listen or handed over by systemd) speak TLS once api_tls_* is
 * configured; unix sockets never do. The files are loaded once, for the first TCP listener. */
static int api_tls(Api *a, const FleetConfig *c, HttpTls **ret) {
        _cleanup_free_ char *err = NULL;
        int r;

        if (!a->tls) {
                r = fl_http_tls_new(c->api_tls_certfile, c->api_tls_keyfile, c->api_tls_cafile, &a->tls, &err);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up TLS for the API: %s", err ?: "out of memory");
        }
        *ret = a->tls;
        return 0;
}

int fl_api_new(Server *s, const int *fds, size_t n_fds, Api **ret) {
        _cleanup_(fl_api_freep) Api *a = NULL;
        HttpServerOptions o = {
                .server_name = "fleetd/" FLEET_VERSION,
                .error_body = on_http_error,
                .error_content_type = "application/json",
        };
        size_t i = 0;
        int r;

        a = new0(Api, 1);
        if (!a) {
                r = -ENOMEM;
                goto fail;
        }
        a->server = s;
        r = fl_http_server_new(s->event, &o, on_request, a, &a->http);
        if (r < 0)
                goto fail;
        r = sd_event_add_time(s->event, &a->wait_timer, CLOCK_MONOTONIC, 0, 1000, on_wait_timer, a);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(a->wait_timer, SD_EVENT_OFF);
        for (; i < n_fds; i++) {
                HttpTls *tls = NULL;

                if (is_tcp_socket(fds[i]) && (!isempty(s->config->api_tls_certfile) ||
                                              !isempty(s->config->api_tls_keyfile))) {
                        r = api_tls(a, s->config, &tls);
                        if (r < 0)
                                goto fail;
                }
                /* the server owns the fd from here on, even when this fails */
                r = fl_http_server_add_listener(a->http, fds[i], tls);
                if (r < 0) {
                        log_error_errno(r, "Failed to serve the API on fd %d: %m", fds[i]);
                        for (i++; i < n_fds; i++)
                                safe_close(fds[i]);
                        return r;
                }
        }
        *ret = TAKE_PTR(a);
        return 0;

fail:
        for (; i < n_fds; i++)
                safe_close(fds[i]);
        if (r == -EINVAL) /* TLS setup, already logged */
                return r;
        return log_error_errno(r, "Failed to set up the API: %m");
}

Api *fl_api_free(Api *a) {
        if (!a)
                return NULL;
        while (a->waiting) {
                ApiCall *c = a->waiting;
                list_remove(&a->waiting, c);
                fl_api_call_free(c);
        }
        /* Writes in flight finish in the registry; their callbacks then only free the call. */
        while (a->writing) {
                ApiCall *c = a->writing;
                list_remove(&a->writing, c);
                c->api = NULL;
        }
        fl_pending_writes_done(&a->pending);
        sd_event_source_disable_unref(a->wait_timer);
        a->http = fl_http_server_free(a->http);
        a->tls = fl_http_tls_unref(a->tls);
        return mfree(a);
}

/* ---- Listeners ---- */

/* The unix socket is created 0600 (umask around bind(), so there is no window), then opened to
 * the group in api_socket_group with 0660. Anyone who can talk to the API can run arbitrary
 * commands as root on every machine of the cluster (units are root services), so without a
 * configured group only root gets in, unlike systemd's SocketMode default 0666. */
static int bind_unix(const char *path, const char *group, int *ret) {
        union {
                struct sockaddr sa;
                struct sockaddr_un un;
        } sa = { .un.sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        gid_t gid = 0;
        mode_t old;
        int r;

        if (!path || path[0] != '/')
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "API socket path '%s' is not absolute", strempty(path));
        if (strlen(path) >= sizeof(sa.un.sun_path))
                return log_error_errno(SYNTHETIC_ERRNO(ENAMETOOLONG), "API socket path '%s' is too long", path);
        memcpy(sa.un.sun_path, path, strlen(path) + 1);

        if (!isempty(group)) {
                struct group *g = getgrnam(group);
                char *end;
                unsigned long v = strtoul(group, &end, 10);

                if (g)
                        gid = g->gr_gid;
                else if (*end == 0 && end != group)
                        gid = (gid_t) v;
                else
                        return log_error_errno(SYNTHETIC_ERRNO(ESRCH), "Unknown api_socket_group '%s'", group);
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create API socket: %m");

        /* A leftover socket from a dead fleetd is replaced; a live one (another fleetd, or the
         * systemd socket unit while we run unactivated) is not. Other file types stay alone. */
        if (lstat(path, &st) == 0) {
                _cleanup_close_ int probe = -EBADF;

                if (!S_ISSOCK(st.st_mode))
                        return log_error_errno(SYNTHETIC_ERRNO(EEXIST),
                                               "Failed to bind the API to '%s': exists and is not a socket", path);
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe >= 0 && connect(probe, &sa.sa, sizeof(sa.un)) == 0)
                        return log_error_errno(SYNTHETIC_ERRNO(EADDRINUSE),
                                               "Failed to bind the API to '%s': another process serves it", path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return log_error_errno(errno, "Failed to remove stale API socket '%s': %m", path);
        } else {
                _cleanup_free_ char *dir = strdup(path);
                char *p = dir ? strrchr(dir, '/') : NULL;
                if (p && p != dir) {
                        *p = 0;
                        (void) mkdir(dir, 0755);
                }
        }

        old = umask(0177);
        r = bind(fd, &sa.sa, sizeof(sa.un));
        r = r < 0 ? -errno : 0;
        (void) umask(old);
        if (r < 0)
                return log_error_errno(r, "Failed to bind the API to '%s': %m", path);
        if (!isempty(group) &&
            (chown(path, (uid_t) -1, gid) < 0 || chmod(path, 0660) < 0))
                return log_error_errno(errno, "Failed to give group '%s' access to '%s': %m", group, path);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Failed to listen on '%s': %m", path);
        log_info("Serving the API on unix:%s", path);
        *ret = TAKE_FD(fd);
        return 0;
}

/* "ADDR:PORT" with ADDR an IPv4 literal, "[IPv6]", "localhost" or empty (any). */
static int parse_tcp(const char *spec, struct sockaddr_storage *ret, socklen_t *ret_len, bool *ret_loopback) {
        const char *colon = strrchr(spec, ':');
        _cleanup_free_ char *host = NULL;
        char *end;
        unsigned long port;

        if (!colon)
                return -EINVAL;
        port = strtoul(colon + 1, &end, 10);
        if (!colon[1] || *end || port == 0 || port > 65535)
                return -EINVAL;
        host = strndup(spec, colon - spec);
        if (!host)
                return -ENOMEM;

        memset(ret, 0, sizeof(*ret));
        if (host[0] == '[') {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) ret;
                size_t l = strlen(host);
                if (l < 2 || host[l - 1] != ']')
                        return -EINVAL;
                host[l - 1] = 0;
                s6->sin6_family = AF_INET6;
                s6->sin6_port = htons((uint16_t) port);
                if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
                        return -EINVAL;
                *ret_len = sizeof(*s6);
                *ret_loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
                return AF_INET6;
        }
        {
                struct sockaddr_in *s4 = (struct sockaddr_in *) ret;
                s4->sin_family = AF_INET;
                s4->sin_port = htons((uint16_t) port);
                if (streq(host, "localhost"))
                        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                else if (isempty(host) || streq(host, "*"))
                        s4->sin_addr.s_addr = htonl(INADDR_ANY);
                else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
                        return -EINVAL;
                *ret_len = sizeof(*s4);
                *ret_loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
                return AF_INET;
        }
}

static int bind_tcp(const FleetConfig *c, const char *spec, int *ret) {
        struct sockaddr_storage ss;
        socklen_t sl = 0;
        bool loopback = false, tls;
        _cleanup_close_ int fd = -EBADF;
        int family, one = 1;

        family = parse_tcp(spec, &ss, &sl, &loopback);
        if (family < 0)
                return log_error_errno(family == -ENOMEM ? family : SYNTHETIC_ERRNO(EINVAL),
                                       "Invalid api_listen entry 'tcp:%s': expected tcp:ADDR:PORT", spec);
        tls = !isempty(c->api_tls_certfile) || !isempty(c->api_tls_keyfile);
        if (!tls && !loopback && !c->api_allow_insecure_tcp)
                return log_error_errno(SYNTHETIC_ERRNO(EPERM),
                                       "Refusing plain-HTTP API listener 'tcp:%s' on a non-loopback address: the API "
                                       "has no authentication; set api_allow_insecure_tcp=true to allow it", spec);

        fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create API socket: %m");
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &ss, sl) < 0)
                return log_error_errno(errno, "Failed to bind the API to 'tcp:%s': %m", spec);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Failed to listen on 'tcp:%s': %m", spec);
        if (tls)
                log_info("Serving the API over TLS on tcp:%s", spec);
        else if (!loopback)
                log_warning("Serving the unauthenticated API as plain HTTP on tcp:%s", spec);
        else
                log_info("Serving the API on tcp:%s", spec);
        *ret = TAKE_FD(fd);
        return 0;
}

static int fds_push(int **fds, size_t *n, int fd) {
        int *a = realloc(*fds, sizeof(int) * (*n + 1));
        if (!a) {
                safe_close(fd);
                return -ENOMEM;
        }
        a[(*n)++] = fd;
        *fds = a;
        return 0;
}

/* api_listen entries are bound in any case; the default unix socket only when systemd did not
 * hand us sockets and api_listen names no unix socket of its own ("unix:PATH" moves it). */
int fl_api_bind_listeners(const FleetConfig *c, bool activated, int **ret_fds, size_t *ret_n) {
        _cleanup_free_ int *fds = NULL;
        size_t n = 0;
        bool have_unix = false;
        int r = 0;

        STRV_FOREACH(l, c->api_listen)
                if (startswith(*l, "unix:"))
                        have_unix = true;

        if (!activated && !have_unix) {
                int fd;
                r = bind_unix(API_DEFAULT_SOCKET, c->api_socket_group, &fd);
                if (r >= 0)
                        r = fds_push(&fds, &n, fd);
        }
        STRV_FOREACH(l, c->api_listen) {
                const char *v;
                int fd;

                if (r < 0)
                        break;
                if ((v = startswith(*l, "unix:")))
                        r = bind_unix(v, c->api_socket_group, &fd);
                else if ((v = startswith(*l, "tcp:")))
                        r = bind_tcp(c, v, &fd);
                else
                        r = log_error_errno(SYNTHETIC_ERRNO(EINVAL),
                                            "Invalid api_listen entry '%s': expected unix:PATH or tcp:ADDR:PORT", *l);
                if (r >= 0)
                        r = fds_push(&fds, &n, fd);
        }
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        safe_close(fds[i]);
                if (r == -ENOMEM)
                        log_error_errno(r, "Failed to set up API listeners: %m");
                return r;
        }
        *ret_fds = TAKE_PTR(fds);
        *ret_n = n;
        return 0;
}
