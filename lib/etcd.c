/* SPDX-License-Identifier: MIT */
/* etcd.c: etcd v2 client over HTTP/1.1 (plain or mbedtls), non-blocking on sd-event.
 *
 * Every request is an EtcdCall: a small state machine (connect, TLS handshake, send, receive)
 * driven by one IO source and one timer on the call's loop. The daemons' calls run on the
 * client's loop; the blocking wrapper runs one call on a private loop, so connections carry no
 * event sources while idle: a call attaches its own to the connection it takes from the pool and
 * drops them when it hands the connection back.
 *
 * A streaming watch is such a call that stays in CALL_RECEIVING: the body of its 200 is drained
 * line by line (one JSON event per line) as it arrives, and it may restart itself from a later
 * index (see fl_etcd_watch_stream_async in etcd.h).
 *
 * Failover: an attempt that cannot connect, times out, breaks, or gets a 5xx moves on to the
 * next endpoint, starting from the one that last worked. etcd v2 members never redirect (a
 * follower proxies to the leader), so any member can serve any request. */
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <mbedtls/base64.h>

#include "cJSON.h"
#include "clock.h"
#include "etcd-json.h"
#include "etcd.h"
#include "http.h"
#include "log.h"
#include "strv.h"
#include "tls.h"

#define USEC_PER_SEC_ULL 1000000ULL
#define ETCD_DEFAULT_TIMEOUT_USEC (1ULL * USEC_PER_SEC_ULL)
/* Idle keep-alive connections per endpoint: what is left over after bursts of parallel requests
 * (a watch holds its own connection while it waits). Up to ETCD_POOL_MAX are kept so that
 * bursts that overlap (the API's 16 requests beside the engine's and the agent's 16 each)
 * reuse them: with 16 kept, 32 in flight reconnected for every request and took 0.30-0.36 s
 * for 3,000 writes instead of 0.20-0.24 s. Those beyond the ETCD_POOL_KEEP most recently used
 * are closed after ETCD_POOL_IDLE_USEC idle, so that a thousand daemons do not each hold a
 * burst's worth of connections to etcd for good. */
#define ETCD_POOL_MAX 64U
#define ETCD_POOL_KEEP 4U
#define ETCD_POOL_IDLE_USEC (5ULL * USEC_PER_SEC_ULL)

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

typedef struct EtcdConn {
        int fd;
        TlsConn *tls;
        size_t endpoint;
        struct EtcdClient *client;
        struct EtcdConn *next;  /* in the idle list */
        /* Stays registered while the connection lives, idle or not: re-registering it for
         * every request cost three epoll_ctl calls each. */
        sd_event_source *io;
        struct EtcdCall *call;  /* using it now; NULL while idle */
        uint64_t idle_since;    /* CLOCK_MONOTONIC, while idle */
} EtcdConn;

typedef struct EtcdEndpoint {
        char *url;
        bool https;
        char *host;             /* for getaddrinfo and certificate checks; IPv6 without [] */
        char *port;
        char *authority;        /* Host: header, as in the URL */
        char *base_path;        /* "" or "/some/path", no trailing '/' */
        EtcdConn *idle;
        unsigned n_idle;
} EtcdEndpoint;

struct EtcdClient {
        sd_event *event;
        EtcdEndpoint *endpoints;
        size_t n_endpoints;
        size_t preferred;       /* the endpoint that answered last */
        TlsContext *tls;
        char *auth_header;
        uint64_t timeout_usec;
        uint64_t pool_idle_usec;
        sd_event_source *pool_timer;    /* closes surplus idle connections (async only) */
        size_t max_body_bytes;
        uint64_t last_index;
        uint64_t n_requests, bytes_in, bytes_out;
        EtcdCall *calls;        /* in flight, async only */
};

typedef enum CallState {
        CALL_CONNECTING,
        CALL_HANDSHAKE,
        CALL_SENDING,
        CALL_RECEIVING,
} CallState;

struct EtcdCall {
        EtcdClient *client;     /* NULL once detached (finished) */
        EtcdCall *prev, *next;
        sd_event *event;
        bool watch, idempotent;

        const char *http_method;
        char *target;           /* "/v2/keys/...?..." (the endpoint's base path goes first) */
        char *body;             /* form body, NULL for none */
        uint64_t timeout_usec;  /* until the response head; for watches only the connect phase */
        uint64_t watch_timeout_usec; /* watches: after the head, 0 = none */

        /* Failover bookkeeping. */
        size_t endpoint;
        size_t n_attempts;
        bool retried_stale;
        int last_error;
        EtcdResponse *last_resp;        /* the last 5xx, handed out if every endpoint fails */

        /* The current attempt. */
        CallState state;
        EtcdConn *conn;
        bool conn_reused;
        bool force_new;
        struct addrinfo *ai, *ai_cur;
        sd_event_source *timer;
        Buf out;
        size_t out_off;
        HttpResponseParser parser;
        bool sent, got_bytes, head_seen;

        sd_event_source *start;
        EtcdCallback cb;
        void *userdata;
        bool in_callback;
        bool cancelled;         /* cancelled from its own callback: freed once that returns */

        /* Streaming watches (fl_etcd_watch_stream_async). */
        bool stream;
        EtcdEventFn on_event;
        char *stream_target;    /* target without waitIndex */
        bool from_now;          /* no waitIndex yet: the first head gives one */
        uint64_t last_event;    /* index of the last event handed out, 0 for none */
        uint64_t head_index, head_raft_index;   /* of the current attempt's head */
        unsigned attempt_events;                /* events of the current attempt */

        /* Blocking calls. */
        bool done;
        int result;
        EtcdResponse *resp;
};

/* ---- Responses ---- */

EtcdResponse *fl_etcd_response_free(EtcdResponse *r) {
        if (!r)
                return NULL;
        free(r->action);
        fl_etcd_node_free(r->node);
        fl_etcd_node_free(r->prev_node);
        free(r->error_message);
        free(r->error_cause);
        free(r);
        return NULL;
}

EtcdResponse *fl_etcd_response_steal(EtcdResponse *r) {
        EtcdResponse *n;

        if (!r)
                return NULL;
        n = new(EtcdResponse, 1);
        if (!n)
                return NULL;
        *n = *r;
        *r = (EtcdResponse) { .http_status = n->http_status };
        return n;
}

int fl_etcd_error_to_errno(int error_code) {
        switch (error_code) {
        case 0:
                return 0;
        case 100: /* Key not found */
                return -ENOENT;
        case 101: /* Compare failed */
                return -ESTALE;
        case 102: /* Not a file */
                return -EISDIR;
        case 104: /* Not a directory */
                return -ENOTDIR;
        case 105: /* Key already exists */
                return -EEXIST;
        case 107: /* Root is read only */
                return -EROFS;
        case 108: /* Directory not empty */
                return -ENOTEMPTY;
        case 110: /* Unauthorized */
                return -EACCES;
        case 300: /* Raft internal error */
        case 301: /* During leader election */
        case 400: /* Watcher cleared due to etcd recovery: watch again */
                return -EAGAIN;
        case 401: /* The event in requested index is outdated and cleared */
                return -ERANGE;
        default:
                /* 200..299: the request itself was malformed (our bug or bad input). */
                if (error_code >= 200 && error_code < 300)
                        return -EINVAL;
                return -EPROTO;
        }
}

static bool json_uint(const cJSON *j, uint64_t *ret) {
        double d;

        if (!cJSON_IsNumber(j))
                return false;
        d = j->valuedouble;
        if (!isfinite(d) || d < 0 || d > FL_JSON_MAX_INT || d != floor(d))
                return false;
        *ret = (uint64_t) d;
        return true;
}

/* Optional string member: absent or null is fine, anything but a string is not. */
static int json_opt_string(const cJSON *o, const char *name, char **ret) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);

        if (!j || cJSON_IsNull(j))
                return 0;
        if (!cJSON_IsString(j) || !j->valuestring)
                return -EBADMSG;
        *ret = strdup(j->valuestring);
        return *ret ? 0 : -ENOMEM;
}

static int json_opt_uint(const cJSON *o, const char *name, uint64_t *ret) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);

        if (!j || cJSON_IsNull(j))
                return 0;
        return json_uint(j, ret) ? 0 : -EBADMSG;
}

static int parse_index_header(const HttpResponse *h, const char *name, uint64_t *ret) {
        const char *v = fl_http_response_header(h, name);
        uint64_t x = 0;

        if (!v)
                return 0;
        if (!*v)
                return -EBADMSG;
        for (const char *c = v; *c; c++) {
                if (*c < '0' || *c > '9' || x > (UINT64_MAX - 9) / 10)
                        return -EBADMSG;
                x = x * 10 + (uint64_t) (*c - '0');
        }
        *ret = x;
        return 0;
}

static int json_parse_body(const Buf *body, cJSON **ret) {
        cJSON *j;

        /* Exactly one JSON value and nothing else; embedded NULs would cut it short silently. */
        if (body->len == 0 || strlen(body->data) != body->len)
                return -EBADMSG;
        j = cJSON_ParseWithLengthOpts(body->data, body->len + 1, NULL, true);
        if (!j)
                return -EBADMSG;
        *ret = j;
        return 0;
}

/* Decodes an HTTP response into *ret (set whenever the reply was well-formed, also for etcd
 * errors) and returns what the caller gets: 0, a mapped etcd error, or -EBADMSG. */
int fl_etcd_response_decode(const HttpResponse *h, bool watch, EtcdResponse **ret) {
        _cleanup_(fl_etcd_response_freep) EtcdResponse *resp = NULL;
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        const cJSON *x;
        int r;

        *ret = NULL;
        resp = new0(EtcdResponse, 1);
        if (!resp)
                return -ENOMEM;
        resp->http_status = h->status;
        if (parse_index_header(h, "X-Etcd-Index", &resp->etcd_index) < 0 ||
            parse_index_header(h, "X-Raft-Index", &resp->raft_index) < 0)
                return -EBADMSG;

        if (h->status >= 200 && h->status < 300) {
                if (h->body.len == 0) {
                        /* Some etcd versions end a long poll with an empty body (e.g. on
                         * shutdown): nothing happened, watch again. */
                        if (!watch)
                                return -EBADMSG;
                        *ret = TAKE_PTR(resp);
                        return -EAGAIN;
                }
                r = fl_etcd_json_decode_event(h->body.data, h->body.len, resp);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(resp);
                return 0;
        }

        /* An error. etcd explains it in JSON; a proxy or a non-etcd server may not. */
        if (json_parse_body(&h->body, &j) >= 0 && cJSON_IsObject(j)) {
                double d;

                x = cJSON_GetObjectItemCaseSensitive(j, "errorCode");
                if (x) {
                        if (!cJSON_IsNumber(x))
                                return -EBADMSG;
                        d = x->valuedouble;
                        if (!isfinite(d) || d < 1 || d > 100000 || d != floor(d))
                                return -EBADMSG;
                        resp->error_code = (int) d;
                }
                if ((r = json_opt_string(j, "message", &resp->error_message)) < 0 ||
                    (r = json_opt_string(j, "cause", &resp->error_cause)) < 0 ||
                    (r = json_opt_uint(j, "index", &resp->error_index)) < 0)
                        return r;
        }
        if (resp->error_code != 0)
                r = fl_etcd_error_to_errno(resp->error_code);
        else if (h->status == 401 || h->status == 403)
                r = -EACCES;    /* etcd's auth layer: {"message":"Insufficient credentials"} */
        else if (h->status >= 500)
                r = -EAGAIN;
        else
                r = -EPROTO;
        *ret = TAKE_PTR(resp);
        return r;
}

/* ---- Endpoints and connections ---- */

static int parse_endpoint(const char *url, EtcdEndpoint *ep) {
        const char *rest, *slash, *host_end, *port = NULL;
        size_t authority_len;

        if ((rest = startswith(url, "http://")))
                ep->https = false;
        else if ((rest = startswith(url, "https://")))
                ep->https = true;
        else
                return -EINVAL;

        authority_len = strcspn(rest, "/?#");
        if (rest[authority_len] == '?' || rest[authority_len] == '#' || authority_len == 0)
                return -EINVAL;
        if (memchr(rest, '@', authority_len))
                return -EINVAL;     /* credentials go in the config, never in URLs */
        ep->authority = strndup(rest, authority_len);
        if (!ep->authority)
                return -ENOMEM;

        if (rest[0] == '[') {
                host_end = memchr(rest, ']', authority_len);
                if (!host_end)
                        return -EINVAL;
                ep->host = strndup(rest + 1, host_end - rest - 1);
                host_end++;
        } else {
                host_end = memchr(rest, ':', authority_len) ?: rest + authority_len;
                ep->host = strndup(rest, host_end - rest);
        }
        if (!ep->host)
                return -ENOMEM;
        if (!*ep->host)
                return -EINVAL;
        if (host_end < rest + authority_len) {
                if (*host_end != ':')
                        return -EINVAL;
                port = host_end + 1;
                size_t pl = rest + authority_len - port;
                if (pl == 0 || pl > 5 || strspn(port, "0123456789") < pl)
                        return -EINVAL;
                ep->port = strndup(port, pl);
                if (ep->port && atoi(ep->port) > 65535)
                        return -EINVAL;
        } else
                ep->port = strdup(ep->https ? "443" : "80");
        if (!ep->port)
                return -ENOMEM;

        slash = rest + authority_len;
        if (strpbrk(slash, "?# \t\r\n"))
                return -EINVAL;
        ep->base_path = strdup(slash);
        if (!ep->base_path)
                return -ENOMEM;
        for (size_t l = strlen(ep->base_path); l > 0 && ep->base_path[l - 1] == '/'; l--)
                ep->base_path[l - 1] = 0;
        ep->url = strdup(url);
        return ep->url ? 0 : -ENOMEM;
}

static EtcdConn *conn_free(EtcdConn *k) {
        if (!k)
                return NULL;
        k->io = sd_event_source_disable_unref(k->io);
        fl_tls_conn_free(k->tls);
        safe_close(k->fd);
        free(k);
        return NULL;
}

static ssize_t conn_read(EtcdConn *k, void *buf, size_t n) {
        ssize_t l;

        if (k->tls)
                return fl_tls_conn_read(k->tls, buf, n);
        do
                l = recv(k->fd, buf, n, MSG_DONTWAIT);
        while (l < 0 && errno == EINTR);
        if (l < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        return l;
}

static ssize_t conn_write(EtcdConn *k, const void *buf, size_t n) {
        ssize_t l;

        if (k->tls)
                return fl_tls_conn_write(k->tls, buf, n);
        do
                l = send(k->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (l < 0 && errno == EINTR);
        if (l < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        return l;
}

/* An idle connection is usable only if the server has neither closed it nor sent anything
 * unasked (which for TLS would be an alert or close_notify). */
static bool conn_alive(EtcdConn *k) {
        char c;
        ssize_t l = recv(k->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return l < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Closes the idle connections beyond each endpoint's ETCD_POOL_KEEP most recently used that
 * have been idle for pool_idle_usec; returns when the next one is due, 0 for none. The idle
 * lists run from the most recently used, so the oldest are at their ends. */
static uint64_t pool_trim(EtcdClient *c, uint64_t now) {
        uint64_t next = 0;

        for (size_t i = 0; i < c->n_endpoints; i++) {
                EtcdEndpoint *ep = &c->endpoints[i];
                unsigned kept = 0;

                for (EtcdConn **p = &ep->idle; *p;) {
                        EtcdConn *k = *p;
                        uint64_t due = k->idle_since + c->pool_idle_usec;

                        if (kept < ETCD_POOL_KEEP || due > now) {
                                if (kept++ >= ETCD_POOL_KEEP)
                                        next = next == 0 ? due : MIN(next, due);
                                p = &k->next;
                                continue;
                        }
                        *p = k->next;
                        ep->n_idle--;
                        conn_free(k);
                }
        }
        return next;
}

static int on_pool_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        EtcdClient *c = userdata;
        uint64_t next = pool_trim(c, fl_now_usec());

        if (next == 0)
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        (void) sd_event_source_set_time(s, next);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* A connection beyond ETCD_POOL_KEEP went idle at now. On the client's loop the timer trims
 * (and re-arms itself for what is not due yet), so that a burst costs no list walk per request;
 * failing to arm it only keeps surplus connections open until it is armed again. A blocking
 * client has no loop and trims here. */
static void pool_schedule_trim(EtcdClient *c, uint64_t now) {
        int enabled = SD_EVENT_OFF;

        if (!c->event) {
                (void) pool_trim(c, now);
                return;
        }
        if (c->pool_timer && sd_event_source_get_enabled(c->pool_timer, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return;
        if (!c->pool_timer) {
                if (sd_event_add_time(c->event, &c->pool_timer, CLOCK_MONOTONIC, now + c->pool_idle_usec,
                                      USEC_PER_SEC_ULL / 4, on_pool_timer, c) >= 0)
                        (void) sd_event_source_set_description(c->pool_timer, "etcd-pool-trim");
                return;
        }
        if (sd_event_source_set_time(c->pool_timer, now + c->pool_idle_usec) >= 0)
                (void) sd_event_source_set_enabled(c->pool_timer, SD_EVENT_ONESHOT);
}

static EtcdConn *pool_take(EtcdClient *c, size_t endpoint) {
        EtcdEndpoint *ep = &c->endpoints[endpoint];

        while (ep->idle) {
                EtcdConn *k = ep->idle;
                ep->idle = k->next;
                ep->n_idle--;
                k->next = NULL;
                /* A plain connection watched while idle was dropped when the server closed
                 * it; a close the loop has not seen yet fails the send or the first read,
                 * and that request is sent again (attempt_failed). TLS may hold an alert. */
                if ((k->io && !k->tls) || conn_alive(k))
                        return k;
                log_debug("etcd: dropping idle connection to %s closed by the server", ep->url);
                conn_free(k);
        }
        return NULL;
}

static void pool_put(EtcdClient *c, EtcdConn *k) {
        EtcdEndpoint *ep = &c->endpoints[k->endpoint];

        k->call = NULL;
        if (ep->n_idle >= ETCD_POOL_MAX) {
                conn_free(k);
                return;
        }
        /* Watched while idle only on the client's own loop (a blocking call's loop is gone
         * once the call returns). */
        if (k->io && (!c->event || sd_event_source_get_event(k->io) != c->event))
                k->io = sd_event_source_disable_unref(k->io);
        else if (k->io && sd_event_source_set_io_events(k->io, EPOLLIN) < 0)
                k->io = sd_event_source_disable_unref(k->io);
        k->idle_since = fl_now_usec();
        k->next = ep->idle;
        ep->idle = k;
        ep->n_idle++;
        if (ep->n_idle > ETCD_POOL_KEEP)
                pool_schedule_trim(c, k->idle_since);
}

/* ---- Client ---- */

EtcdClient *fl_etcd_client_free(EtcdClient *c) {
        if (!c)
                return NULL;
        while (c->calls)
                fl_etcd_call_cancel(c->calls);
        c->pool_timer = sd_event_source_disable_unref(c->pool_timer);
        for (size_t i = 0; i < c->n_endpoints; i++) {
                EtcdEndpoint *ep = &c->endpoints[i];
                while (ep->idle) {
                        EtcdConn *k = ep->idle;
                        ep->idle = k->next;
                        conn_free(k);
                }
                free(ep->url);
                free(ep->host);
                free(ep->port);
                free(ep->authority);
                free(ep->base_path);
        }
        free(c->endpoints);
        fl_tls_context_free(c->tls);
        free(c->auth_header);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

static int make_auth_header(const char *user, const char *password, char **ret) {
        _cleanup_free_ char *plain = NULL, *enc = NULL;
        size_t l, n = 0;

        if (asprintf(&plain, "%s:%s", user, strempty(password)) < 0)
                return -ENOMEM;
        if (strpbrk(plain, "\r\n"))
                return -EINVAL;
        l = strlen(plain);
        (void) mbedtls_base64_encode(NULL, 0, &n, (const unsigned char *) plain, l);
        enc = malloc(n + 1);
        if (!enc)
                return -ENOMEM;
        if (mbedtls_base64_encode((unsigned char *) enc, n + 1, &n, (const unsigned char *) plain, l) != 0)
                return -EINVAL;
        enc[n] = 0;
        if (asprintf(ret, "Authorization: Basic %s", enc) < 0)
                return -ENOMEM;
        return 0;
}

int fl_etcd_client_new(const EtcdConfig *cfg, sd_event *event, EtcdClient **ret) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        size_t n = fl_strv_length(cfg->endpoints);
        bool https = false;
        int r;

        if (n == 0)
                return -EINVAL;
        c = new0(EtcdClient, 1);
        if (!c)
                return -ENOMEM;
        c->endpoints = new0(EtcdEndpoint, n);
        if (!c->endpoints)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                c->n_endpoints++;
                r = parse_endpoint(cfg->endpoints[i], &c->endpoints[i]);
                if (r < 0) {
                        log_debug("etcd: bad endpoint \"%s\"", cfg->endpoints[i]);
                        return r;
                }
                https = https || c->endpoints[i].https;
        }
        c->timeout_usec = cfg->request_timeout_usec ?: ETCD_DEFAULT_TIMEOUT_USEC;
        c->pool_idle_usec = cfg->pool_idle_usec ?: ETCD_POOL_IDLE_USEC;
        c->max_body_bytes = cfg->max_body_bytes ?: FL_HTTP_CLIENT_DEFAULT_MAX_BODY_BYTES;
        if (cfg->username) {
                r = make_auth_header(cfg->username, cfg->password, &c->auth_header);
                if (r < 0)
                        return r;
        }
        if (https) {
                _cleanup_free_ char *err = NULL;
                r = fl_tls_context_new(cfg->ca_file, cfg->cert_file, cfg->key_file,
                                       cfg->insecure_skip_verify, &c->tls, &err);
                if (r < 0) {
                        log_debug("etcd: %s", strempty(err));
                        return r;
                }
        }
        if (event)
                c->event = sd_event_ref(event);
        *ret = TAKE_PTR(c);
        return 0;
}

uint64_t fl_etcd_client_last_index(EtcdClient *c) {
        return c->last_index;
}

unsigned fl_etcd_client_idle_connections(const EtcdClient *c) {
        unsigned n = 0;

        for (size_t i = 0; i < c->n_endpoints; i++)
                n += c->endpoints[i].n_idle;
        return n;
}

void fl_etcd_client_stats(EtcdClient *c, uint64_t *ret_requests, uint64_t *ret_bytes_in,
                          uint64_t *ret_bytes_out) {
        if (ret_requests)
                *ret_requests = c->n_requests;
        if (ret_bytes_in)
                *ret_bytes_in = c->bytes_in;
        if (ret_bytes_out)
                *ret_bytes_out = c->bytes_out;
}

/* ---- Requests ---- */

static int add_param(Buf *b, const char *name, const char *value) {
        int r;

        if (b->len > 0 && (r = fl_buf_putc(b, '&')) < 0)
                return r;
        if ((r = fl_buf_puts(b, name)) < 0 || (r = fl_buf_putc(b, '=')) < 0)
                return r;
        return fl_http_client_escape(b, value, true);
}

static int add_param_u64(Buf *b, const char *name, uint64_t value) {
        char s[32];
        snprintf(s, sizeof(s), "%" PRIu64, value);
        return add_param(b, name, s);
}

/* Fills the method, target and body of a call from req. */
static int call_build(EtcdCall *call, const EtcdRequest *req) {
        Buf path = BUF_INIT, query = BUF_INIT, form = BUF_INIT;
        int r;

        if (!req->key)
                return -EINVAL;

        r = fl_buf_puts(&path, "/v2/keys");
        if (r >= 0 && req->key[0] != '/')
                r = fl_buf_putc(&path, '/');
        if (r >= 0)
                r = fl_http_client_escape(&path, req->key, false);
        if (r < 0)
                goto finish;

        call->idempotent = true;
        switch (req->method) {
        case ETCD_GET:
                call->http_method = "GET";
                if (req->recursive && (r = add_param(&query, "recursive", "true")) < 0)
                        goto finish;
                if (req->sorted && (r = add_param(&query, "sorted", "true")) < 0)
                        goto finish;
                if (req->quorum && (r = add_param(&query, "quorum", "true")) < 0)
                        goto finish;
                break;
        case ETCD_WATCH:
                call->http_method = "GET";
                call->watch = true;
                if ((r = add_param(&query, "wait", "true")) < 0)
                        goto finish;
                if (req->recursive && (r = add_param(&query, "recursive", "true")) < 0)
                        goto finish;
                if (req->wait_index > 0 && (r = add_param_u64(&query, "waitIndex", req->wait_index)) < 0)
                        goto finish;
                break;
        case ETCD_SET:
                call->http_method = "PUT";
                if (req->refresh) {
                        /* A refresh only extends the TTL; watchers are not told. etcd refuses a
                         * value with it and requires prevExist=true. */
                        if (req->ttl_sec == 0 || req->value || req->prev_exist == ETCD_PREV_NOT_EXIST) {
                                r = -EINVAL;
                                goto finish;
                        }
                        if ((r = add_param(&form, "refresh", "true")) < 0)
                                goto finish;
                } else if (req->dir) {
                        if (req->value) {
                                r = -EINVAL;
                                goto finish;
                        }
                        if ((r = add_param(&form, "dir", "true")) < 0)
                                goto finish;
                } else if ((r = add_param(&form, "value", strempty(req->value))) < 0)
                        goto finish;
                if (req->ttl_sec > 0 && (r = add_param_u64(&form, "ttl", req->ttl_sec)) < 0)
                        goto finish;
                if (req->refresh || req->prev_exist == ETCD_PREV_EXIST)
                        r = add_param(&form, "prevExist", "true");
                else if (req->prev_exist == ETCD_PREV_NOT_EXIST) {
                        r = add_param(&form, "prevExist", "false");
                        /* A create: a retry after it went through fails with "exists". */
                        call->idempotent = false;
                }
                if (r < 0)
                        goto finish;
                if (req->prev_index > 0 && (r = add_param_u64(&form, "prevIndex", req->prev_index)) < 0)
                        goto finish;
                if (req->prev_value && (r = add_param(&form, "prevValue", req->prev_value)) < 0)
                        goto finish;
                break;
        case ETCD_DELETE:
                call->http_method = "DELETE";
                /* Go's ParseForm reads no body for DELETE: everything goes in the query. */
                if (req->recursive && (r = add_param(&query, "recursive", "true")) < 0)
                        goto finish;
                if (req->dir && (r = add_param(&query, "dir", "true")) < 0)
                        goto finish;
                if (req->prev_index > 0 && (r = add_param_u64(&query, "prevIndex", req->prev_index)) < 0)
                        goto finish;
                if (req->prev_value && (r = add_param(&query, "prevValue", req->prev_value)) < 0)
                        goto finish;
                break;
        case ETCD_CREATE_INORDER:
                call->http_method = "POST";
                /* Each retry would create another key. */
                call->idempotent = false;
                if ((r = add_param(&form, "value", strempty(req->value))) < 0)
                        goto finish;
                if (req->ttl_sec > 0 && (r = add_param_u64(&form, "ttl", req->ttl_sec)) < 0)
                        goto finish;
                break;
        default:
                r = -EINVAL;
                goto finish;
        }
        if (query.len > 0 &&
            ((r = fl_buf_putc(&path, '?')) < 0 || (r = fl_buf_append(&path, query.data, query.len)) < 0))
                goto finish;
        call->target = fl_buf_steal(&path);
        if (!call->target) {
                r = -ENOMEM;
                goto finish;
        }
        if (streq(call->http_method, "PUT") || streq(call->http_method, "POST")) {
                call->body = fl_buf_steal(&form);
                if (!call->body)
                        r = -ENOMEM;
        }
finish:
        fl_buf_done(&path);
        fl_buf_done(&query);
        fl_buf_done(&form);
        return r;
}

/* ---- Calls ---- */

static void attempt_reset(EtcdCall *call) {
        call->timer = sd_event_source_disable_unref(call->timer);
        call->conn = conn_free(call->conn);
        if (call->ai) {
                freeaddrinfo(call->ai);
                call->ai = call->ai_cur = NULL;
        }
        fl_buf_done(&call->out);
        call->out_off = 0;
        fl_http_response_parser_done(&call->parser);
        call->sent = call->got_bytes = call->head_seen = false;
        call->head_index = call->head_raft_index = 0;
        call->attempt_events = 0;
}

static void call_detach(EtcdCall *call) {
        EtcdClient *c = call->client;

        if (!c)
                return;
        if (call->prev)
                call->prev->next = call->next;
        else if (c->calls == call)
                c->calls = call->next;
        if (call->next)
                call->next->prev = call->prev;
        call->prev = call->next = NULL;
        call->client = NULL;
}

static EtcdCall *call_free(EtcdCall *call) {
        if (!call)
                return NULL;
        call_detach(call);
        attempt_reset(call);
        call->start = sd_event_source_disable_unref(call->start);
        fl_etcd_response_free(call->last_resp);
        fl_etcd_response_free(call->resp);
        free(call->target);
        free(call->stream_target);
        free(call->body);
        sd_event_unref(call->event);
        free(call);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(EtcdCall *, call_free);

EtcdCall *fl_etcd_call_cancel(EtcdCall *call) {
        if (!call)
                return NULL;
        /* Cancelling from its own callback: the call is freed when the callback returns, and
         * no other callback runs. Detached now, so that freeing the client from the callback
         * (which cancels every call it has) works too. */
        if (call->in_callback) {
                call->cancelled = true;
                call_detach(call);
                return NULL;
        }
        call_free(call);
        return NULL;
}

static void call_finish(EtcdCall *call, int r, EtcdResponse *resp) {
        EtcdCallback cb = call->cb;
        EtcdClient *c = call->client;

        attempt_reset(call);
        call_detach(call);
        if (!cb) {
                /* Blocking: fl_etcd_call() picks the result up. */
                call->done = true;
                call->result = r;
                call->resp = resp;
                return;
        }
        call->in_callback = true;
        cb(c, r, resp, call->userdata);
        fl_etcd_response_free(resp);
        call_free(call);
}

static int attempt_start(EtcdCall *call);
static void call_run(EtcdCall *call);

/* What a connection the server closed while idle looks like when we use it. */
static bool is_stale_error(int r) {
        return r == -ECONNRESET || r == -EPIPE || r == -ECONNABORTED || r == -ENOTCONN;
}

/* The current attempt failed with r: retry on a fresh connection if a reused one turned out
 * stale, else move on to the next endpoint. */
static void attempt_failed(EtcdCall *call, int r, EtcdResponse *resp) {
        EtcdClient *c = call->client;
        EtcdEndpoint *ep = &c->endpoints[call->endpoint];

        log_debug("etcd: %s %s on %s failed: %s", call->http_method, call->target, ep->url, strerror(-r));
        if (call->conn_reused && !call->got_bytes && !call->retried_stale && !resp && is_stale_error(r)) {
                /* The server closed the idle connection just as we used it: it cannot have
                 * acted on the request, so it is safe to send it again. */
                call->retried_stale = true;
                call->force_new = true;
                attempt_reset(call);
                call_run(call);
                return;
        }
        if (!call->idempotent && call->sent) {
                /* The member may have applied it (a 5xx from raft can still commit later):
                 * repeating a create elsewhere could create twice or fail falsely. */
                attempt_reset(call);
                call_finish(call, r, resp);
                return;
        }
        attempt_reset(call);
        call->last_error = r;
        if (resp) {
                fl_etcd_response_free(call->last_resp);
                call->last_resp = resp;
        }
        call->n_attempts++;
        call->endpoint = (call->endpoint + 1) % c->n_endpoints;
        call->retried_stale = false;
        call->force_new = false;
        call_run(call);
}

static void call_run(EtcdCall *call) {
        EtcdClient *c = call->client;

        for (;;) {
                int r;

                if (call->n_attempts >= c->n_endpoints) {
                        EtcdResponse *resp = TAKE_PTR(call->last_resp);
                        call_finish(call, call->last_error ?: -ECONNREFUSED, resp);
                        return;
                }
                r = attempt_start(call);
                if (r >= 0)
                        return;
                if (r == -ENOMEM) {
                        call_finish(call, r, NULL);
                        return;
                }
                log_debug("etcd: %s: %s", c->endpoints[call->endpoint].url, strerror(-r));
                attempt_reset(call);
                call->last_error = r;
                call->n_attempts++;
                call->endpoint = (call->endpoint + 1) % c->n_endpoints;
                call->retried_stale = call->force_new = false;
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int send_request(EtcdCall *call);
static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int set_events(EtcdCall *call, uint32_t events) {
        return sd_event_source_set_io_events(call->conn->io, events);
}

/* An idle connection became readable: the server closed it (or sent something unasked,
 * which makes it useless as well). */
static void pool_drop(EtcdConn *k) {
        EtcdEndpoint *ep = &k->client->endpoints[k->endpoint];

        for (EtcdConn **p = &ep->idle; *p; p = &(*p)->next)
                if (*p == k) {
                        *p = k->next;
                        ep->n_idle--;
                        break;
                }
        log_debug("etcd: idle connection to %s closed by the server", ep->url);
        conn_free(k);
}

static int conn_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        EtcdConn *k = userdata;

        if (k->call)
                return on_io(s, fd, revents, k->call);
        pool_drop(k);
        return 0;
}

/* Makes the call the user of its connection, watched on the call's loop for events. */
static int conn_attach(EtcdCall *call, uint32_t events) {
        EtcdConn *k = call->conn;

        k->call = call;
        if (k->io && sd_event_source_get_event(k->io) != call->event)
                k->io = sd_event_source_disable_unref(k->io);
        if (k->io)
                return sd_event_source_set_io_events(k->io, events);
        return sd_event_add_io(call->event, &k->io, k->fd, events, conn_on_io, k);
}

/* Connects to the next address of the current endpoint; 0 when under way. */
static int connect_next(EtcdCall *call) {
        int r = -EHOSTUNREACH;

        for (; call->ai_cur; call->ai_cur = call->ai_cur->ai_next) {
                struct addrinfo *a = call->ai_cur;
                _cleanup_close_ int fd = -EBADF;
                int one = 1;

                fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
                if (fd < 0) {
                        r = -errno;
                        continue;
                }
                /* Requests are small and answered at once: no Nagle delay. */
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
                        r = -errno;
                        continue;
                }
                call->conn = new0(EtcdConn, 1);
                if (!call->conn)
                        return -ENOMEM;
                call->conn->fd = TAKE_FD(fd);
                call->conn->endpoint = call->endpoint;
                call->conn->client = call->client;
                call->ai_cur = a->ai_next;
                call->state = CALL_CONNECTING;
                return 0;
        }
        return r;
}

static int attempt_start(EtcdCall *call) {
        EtcdClient *c = call->client;
        EtcdEndpoint *ep = &c->endpoints[call->endpoint];
        char *headers[3] = {};
        size_t n_headers = 0;
        _cleanup_free_ char *target = NULL;
        int r;

        fl_http_response_parser_init(&call->parser, 0, c->max_body_bytes, false);
        if (call->stream)
                /* Events are taken out as they arrive; max_body_bytes bounds each one. */
                fl_http_response_parser_stream_body(&call->parser);

        if (asprintf(&target, "%s%s", ep->base_path, call->target) < 0)
                return -ENOMEM;
        if (c->auth_header)
                headers[n_headers++] = c->auth_header;
        headers[n_headers++] = (char *) "Accept: application/json";
        r = fl_http_client_write_request(&call->out, call->http_method, target, ep->authority, headers,
                                         call->body ? "application/x-www-form-urlencoded" : NULL, call->body,
                                         call->body ? strlen(call->body) : 0);
        if (r < 0)
                return r;

        call->conn = call->force_new ? NULL : pool_take(c, call->endpoint);
        call->conn_reused = !!call->conn;
        if (call->conn)
                call->state = CALL_SENDING;
        else {
                struct addrinfo hints = {
                        .ai_family = AF_UNSPEC,
                        .ai_socktype = SOCK_STREAM,
                        .ai_flags = AI_NUMERICSERV,
                };
                /* Blocking, but endpoints are nearly always IP literals or /etc/hosts names. */
                r = getaddrinfo(ep->host, ep->port, &hints, &call->ai);
                if (r != 0) {
                        log_debug("etcd: cannot resolve %s: %s", ep->host, gai_strerror(r));
                        call->ai = NULL;
                        return r == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH;
                }
                call->ai_cur = call->ai;
                r = connect_next(call);
                if (r < 0)
                        return r;
        }

        r = sd_event_add_time_relative(call->event, &call->timer, CLOCK_MONOTONIC, call->timeout_usec, 0,
                                       on_timer, call);
        if (r < 0)
                return r;
        c->n_requests++;
        if (call->state == CALL_SENDING && !call->conn->tls) {
                /* A kept connection: send now rather than wait a loop iteration for EPOLLOUT.
                 * A failure shows up again as EPOLLERR and is handled there. */
                r = conn_attach(call, EPOLLIN);
                if (r < 0)
                        return r;
                r = send_request(call);
                if (r != 0)
                        return set_events(call, r == 1 ? EPOLLIN : EPOLLOUT);
        }
        return conn_attach(call, EPOLLOUT);
}

static void response_complete(EtcdCall *call, bool reusable) {
        EtcdClient *c = call->client;
        _cleanup_(fl_http_response_freep) HttpResponse *h = fl_http_response_parser_take(&call->parser);
        EtcdResponse *resp = NULL;
        int r;

        call->timer = sd_event_source_disable_unref(call->timer);
        if (reusable && h->keep_alive)
                pool_put(c, TAKE_PTR(call->conn));
        else
                call->conn = conn_free(call->conn);

        r = fl_etcd_response_decode(h, call->watch, &resp);
        if (resp && resp->etcd_index > c->last_index)
                c->last_index = resp->etcd_index;
        if (h->status >= 500) {
                /* The member is unwell (no leader, raft timeout): another may do better. */
                attempt_failed(call, r < 0 ? r : -EAGAIN, resp);
                return;
        }
        if (r == -EBADMSG && !resp) {
                attempt_failed(call, r, NULL);
                return;
        }
        c->preferred = call->endpoint;
        call_finish(call, r, resp);
}

/* The head of a watch arrived (etcd sends it at once, the events whenever they happen): from
 * here on only the watch's own timeout counts. */
static int watch_arm_timer(EtcdCall *call) {
        call->timer = sd_event_source_disable_unref(call->timer);
        if (call->watch_timeout_usec == 0)
                return 0;
        return sd_event_add_time_relative(call->event, &call->timer, CLOCK_MONOTONIC, call->watch_timeout_usec, 0,
                                          on_timer, call);
}

/* ---- Streaming watches ---- */

static int stream_set_index(EtcdCall *call, uint64_t wait_index) {
        char *t;

        if (wait_index > 0) {
                if (asprintf(&t, "%s&waitIndex=%" PRIu64, call->stream_target, wait_index) < 0)
                        return -ENOMEM;
        } else {
                t = strdup(call->stream_target);
                if (!t)
                        return -ENOMEM;
        }
        free(call->target);
        call->target = t;
        return 0;
}

/* etcd answers a stream whose waitIndex finds an event in its history with that one event and
 * then nothing, ever (the watcher never joins the hub). Ask again from the next index, on the
 * same endpoint, with a fresh failover budget: it answered. */
static void stream_restart(EtcdCall *call, uint64_t wait_index) {
        int r;

        attempt_reset(call);
        r = stream_set_index(call, wait_index);
        if (r < 0) {
                call_finish(call, r, NULL);
                return;
        }
        call->n_attempts = 0;
        call->last_error = 0;
        call->last_resp = fl_etcd_response_free(call->last_resp);
        call->retried_stale = call->force_new = false;
        call_run(call);
}

/* One event line (NUL-terminated at len). Returns 0 to go on, 1 when the call is gone or was
 * restarted (do not touch it), or a negative errno for a malformed event. */
static int stream_event(EtcdCall *call, char *data, size_t len) {
        EtcdClient *c = call->client;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *ev = NULL;
        uint64_t idx;
        bool history;
        int r;

        /* Go's json.Encoder ends every object with a newline; tolerate blank lines. */
        if (strspn(data, " \t\r") == len)
                return 0;
        ev = new0(EtcdResponse, 1);
        if (!ev)
                return -ENOMEM;
        r = fl_etcd_json_decode_event(data, len, ev);
        if (r < 0)
                return r;
        idx = ev->node->modified_index;
        /* Every change has its own index, and etcd sends them in order. */
        if (idx <= call->last_event)
                return -EBADMSG;
        ev->http_status = 200;
        ev->etcd_index = call->head_index;
        ev->raft_index = call->head_raft_index;
        if (idx > c->last_index)
                c->last_index = idx;
        call->last_event = idx;
        call->attempt_events++;
        /* Events of the hub come after the head's index, history hits at or before it. */
        history = call->attempt_events == 1 && idx <= call->head_index;

        call->in_callback = true;
        call->on_event(c, ev, call->userdata);
        call->in_callback = false;
        if (call->cancelled) {
                call_free(call);
                return 1;
        }
        if (history && call->head_index - idx > ETCD_STREAM_CATCHUP_MAX) {
                log_debug("etcd: stream %s is %" PRIu64 " indices behind, giving up", call->target,
                          call->head_index - idx);
                call_finish(call, -ERANGE, NULL);
                return 1;
        }
        if (history) {
                log_debug("etcd: stream %s answered from history, asking again", call->target);
                stream_restart(call, idx + 1);
                return 1;
        }
        return 0;
}

/* The stream's response ended cleanly (etcd's handler returned): the caller watches again. */
static void stream_end(EtcdCall *call, bool reusable) {
        _cleanup_(fl_http_response_freep) HttpResponse *h = fl_http_response_parser_take(&call->parser);

        call->timer = sd_event_source_disable_unref(call->timer);
        if (reusable && h && h->keep_alive)
                pool_put(call->client, TAKE_PTR(call->conn));
        call_finish(call, 0, NULL);
}

/* After each read: hands out the complete events received so far. complete: the response
 * ended (reusable: nothing followed it). Returns 0 to keep reading, 1 when the call finished,
 * was freed or restarted, or a negative errno (the attempt failed). */
static int stream_receive(EtcdCall *call, bool complete, bool reusable) {
        EtcdClient *c = call->client;
        HttpResponse *h = fl_http_response_parser_head(&call->parser);
        size_t off = 0;
        bool any = false;
        int r;

        if (!h)
                return 0;
        if (!call->head_seen) {
                call->head_seen = true;
                r = watch_arm_timer(call);
                if (r < 0)
                        return r;
                if (h->status >= 200 && h->status < 300) {
                        if (parse_index_header(h, "X-Etcd-Index", &call->head_index) < 0 ||
                            parse_index_header(h, "X-Raft-Index", &call->head_raft_index) < 0)
                                return -EBADMSG;
                        if (call->head_index > c->last_index)
                                c->last_index = call->head_index;
                        c->preferred = call->endpoint;
                        /* "From now" means from this head: an attempt after a failure must not
                         * start at a later "now" and skip what came in between. */
                        if (call->from_now) {
                                r = stream_set_index(call, call->head_index + 1);
                                if (r < 0)
                                        return r;
                                call->from_now = false;
                        }
                }
        }
        if (h->status < 200 || h->status >= 300) {
                /* An error (401 index cleared, 5xx...): whole, decoded as for ETCD_WATCH. */
                if (!complete)
                        return 0;
                response_complete(call, reusable);
                return 1;
        }

        while (off < h->body.len) {
                char *s = h->body.data + off, *nl = memchr(s, '\n', h->body.len - off);

                if (!nl)
                        break;
                *nl = 0;
                off += (size_t) (nl - s) + 1;
                r = stream_event(call, s, (size_t) (nl - s));
                if (r != 0)
                        return r;
                any = true;
        }
        fl_buf_consume(&h->body, off);

        if (complete) {
                /* Whatever came without its newline is still one event (or blank). */
                if (h->body.len > 0) {
                        r = stream_event(call, h->body.data, h->body.len);
                        if (r != 0)
                                return r;
                }
                stream_end(call, reusable);
                return 1;
        }
        /* The timeout counts from the last event: a quiet stream may be a dead one. */
        if (any && call->timer) {
                r = sd_event_source_set_time_relative(call->timer, call->watch_timeout_usec);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Writes what is left of the request: 1 when all is sent (the call is then receiving), 0 when
 * the socket is full, or a negative errno. */
static int send_request(EtcdCall *call) {
        while (call->out_off < call->out.len) {
                ssize_t n = conn_write(call->conn, call->out.data + call->out_off, call->out.len - call->out_off);
                if (n == -EAGAIN)
                        return 0;
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        return -ECONNRESET;
                call->out_off += (size_t) n;
                call->sent = true;
                call->client->bytes_out += (uint64_t) n;
        }
        call->state = CALL_RECEIVING;
        return 1;
}

static int do_connecting(EtcdCall *call) {
        EtcdClient *c = call->client;
        EtcdEndpoint *ep = &c->endpoints[call->endpoint];
        int err = 0, r;
        socklen_t l = sizeof(err);

        if (getsockopt(call->conn->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                err = errno;
        if (err != 0) {
                /* Try the endpoint's next address before giving up on it. */
                call->conn = conn_free(call->conn);
                r = connect_next(call);
                if (r < 0)
                        return r == -EHOSTUNREACH ? -err : r;
                r = conn_attach(call, EPOLLOUT);
                return r < 0 ? r : -EINPROGRESS;
        }
        if (ep->https) {
                r = fl_tls_conn_new(c->tls, call->conn->fd, ep->host, &call->conn->tls);
                if (r < 0)
                        return r;
                call->state = CALL_HANDSHAKE;
        } else
                call->state = CALL_SENDING;
        return 0;
}

static int do_io(EtcdCall *call) {
        EtcdClient *c = call->client;
        int r;

        switch (call->state) {
        case CALL_CONNECTING:
                r = do_connecting(call);
                if (r == -EINPROGRESS)
                        return 0;
                if (r < 0)
                        return r;
                /* fall through */
        case CALL_HANDSHAKE:
                if (call->state == CALL_HANDSHAKE) {
                        r = fl_tls_conn_handshake(call->conn->tls);
                        if (r == -EAGAIN)
                                return set_events(call, fl_tls_conn_want(call->conn->tls));
                        if (r < 0)
                                return r;
                        call->state = CALL_SENDING;
                }
                /* fall through */
        case CALL_SENDING:
                r = send_request(call);
                if (r <= 0)
                        return r < 0 ? r : set_events(call, call->conn->tls ? fl_tls_conn_want(call->conn->tls)
                                                                             : EPOLLOUT);
                /* The answer takes etcd a while (raft): wait for it rather than read now. */
                return set_events(call, EPOLLIN);
        case CALL_RECEIVING:
                for (;;) {
                        char buf[16384];
                        size_t consumed;
                        ssize_t n = conn_read(call->conn, buf, sizeof(buf));

                        if (n == -EAGAIN)
                                return set_events(call, call->conn->tls ? fl_tls_conn_want(call->conn->tls)
                                                                        : EPOLLIN);
                        if (n < 0)
                                return (int) n;
                        if (n == 0) {
                                if (!call->got_bytes)
                                        return -ECONNRESET;
                                /* A stream cut between (or inside) events: the connection
                                 * broke, the body is not malformed. */
                                if (call->stream && call->head_seen &&
                                    call->parser.state != HTTP_RESPONSE_BODY_EOF &&
                                    call->parser.state != HTTP_RESPONSE_DONE)
                                        return -ECONNRESET;
                                r = fl_http_response_parser_eof(&call->parser);
                                if (r < 0)
                                        return r;
                                if (call->stream)
                                        return stream_receive(call, true, false) ?: 1;
                                response_complete(call, false);
                                return 1;
                        }
                        call->got_bytes = true;
                        c->bytes_in += (uint64_t) n;
                        r = fl_http_response_parser_feed(&call->parser, buf, (size_t) n, &consumed);
                        if (r < 0)
                                return r;
                        if (call->stream) {
                                r = stream_receive(call, r > 0, consumed == (size_t) n);
                                if (r != 0)
                                        return r;
                                continue;
                        }
                        if (r > 0) {
                                /* Bytes beyond the response were never asked for: the
                                 * connection is out of step, do not reuse it. */
                                response_complete(call, consumed == (size_t) n);
                                return 1;
                        }
                        if (!call->head_seen && call->parser.state != HTTP_RESPONSE_STATUS_LINE &&
                            call->parser.state != HTTP_RESPONSE_HEADERS) {
                                call->head_seen = true;
                                if (call->watch) {
                                        r = watch_arm_timer(call);
                                        if (r < 0)
                                                return r;
                                }
                        }
                }
        }
        return -EINVAL;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        EtcdCall *call = userdata;
        int r = do_io(call);

        if (r >= 0)
                return 0;
        /* Events of this attempt were handed out: sending the request again would repeat
         * them. The caller watches again from its last index + 1. */
        if (call->stream && call->attempt_events > 0)
                call_finish(call, r, NULL);
        else
                attempt_failed(call, r, NULL);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        EtcdCall *call = userdata;

        if (call->watch && call->head_seen) {
                /* A quiet watch is not a failing endpoint. */
                call_finish(call, -ETIMEDOUT, NULL);
                return 0;
        }
        attempt_failed(call, -ETIMEDOUT, NULL);
        return 0;
}

static int call_new(EtcdClient *c, const EtcdRequest *req, sd_event *event, EtcdCall **ret) {
        _cleanup_(call_freep) EtcdCall *call = NULL;
        int r;

        call = new0(EtcdCall, 1);
        if (!call)
                return -ENOMEM;
        call->client = c;
        call->event = sd_event_ref(event);
        call->endpoint = c->preferred % c->n_endpoints;
        r = call_build(call, req);
        if (r < 0)
                return r;
        if (call->watch) {
                call->timeout_usec = c->timeout_usec;
                call->watch_timeout_usec = req->timeout_usec;
        } else
                call->timeout_usec = req->timeout_usec ?: c->timeout_usec;
        *ret = TAKE_PTR(call);
        return 0;
}

int fl_etcd_call(EtcdClient *c, const EtcdRequest *req, EtcdResponse **ret) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(call_freep) EtcdCall *call = NULL;
        int r;

        if (ret)
                *ret = NULL;
        if (!c || !req)
                return -EINVAL;
        r = sd_event_new(&e);
        if (r < 0)
                return r;
        r = call_new(c, req, e, &call);
        if (r < 0)
                return r;
        call_run(call);
        while (!call->done) {
                r = sd_event_run(e, UINT64_MAX);
                if (r < 0)
                        return r;
        }
        if (ret)
                *ret = TAKE_PTR(call->resp);
        return call->result;
}

static int on_start(sd_event_source *s, void *userdata) {
        EtcdCall *call = userdata;

        call->start = sd_event_source_disable_unref(call->start);
        call_run(call);
        return 0;
}

static int call_enqueue(EtcdClient *c, EtcdCall *call_in, EtcdCallback cb, void *userdata, EtcdCall **ret_call);

int fl_etcd_call_async(EtcdClient *c, const EtcdRequest *req, EtcdCallback cb, void *userdata,
                       EtcdCall **ret_call) {
        _cleanup_(call_freep) EtcdCall *call = NULL;
        int r;

        if (!c || !req || !cb)
                return -EINVAL;
        if (!c->event)
                return -ENOTCONN;
        r = call_new(c, req, c->event, &call);
        if (r < 0)
                return r;
        return call_enqueue(c, TAKE_PTR(call), cb, userdata, ret_call);
}

/* Takes call (freed on error). */
static int call_enqueue(EtcdClient *c, EtcdCall *call_in, EtcdCallback cb, void *userdata, EtcdCall **ret_call) {
        _cleanup_(call_freep) EtcdCall *call = call_in;
        int r;

        call->cb = cb;
        call->userdata = userdata;
        /* Start from the loop, never from here: the callback must not run before the caller
         * has stored the call, and failures to connect show up at once for local ports. */
        r = sd_event_add_defer(c->event, &call->start, on_start, call);
        if (r < 0)
                return r;
        call->next = c->calls;
        if (c->calls)
                c->calls->prev = call;
        c->calls = call;
        if (ret_call)
                *ret_call = call;
        TAKE_PTR(call);
        return 0;
}

uint64_t fl_etcd_call_head_index(EtcdCall *call) {
        return call && call->stream && call->head_seen ? call->head_index : 0;
}

bool fl_etcd_call_has_unread(EtcdCall *call) {
        int n = 0;

        return call && call->conn && ioctl(call->conn->fd, FIONREAD, &n) >= 0 && n > 0;
}

int fl_etcd_watch_stream_async(EtcdClient *c, const EtcdRequest *req, EtcdEventFn on_event, EtcdCallback done,
                               void *userdata, EtcdCall **ret_call) {
        _cleanup_(call_freep) EtcdCall *call = NULL;
        EtcdRequest base;
        int r;

        if (!c || !req || !on_event || !done || req->method != ETCD_WATCH)
                return -EINVAL;
        if (!c->event)
                return -ENOTCONN;
        /* The waitIndex goes last, so that a restart can replace it. */
        base = *req;
        base.wait_index = 0;
        r = call_new(c, &base, c->event, &call);
        if (r < 0)
                return r;
        call->stream = true;
        call->on_event = on_event;
        if (asprintf(&call->stream_target, "%s&stream=true", call->target) < 0) {
                call->stream_target = NULL;
                return -ENOMEM;
        }
        r = stream_set_index(call, req->wait_index);
        if (r < 0)
                return r;
        call->from_now = req->wait_index == 0;
        return call_enqueue(c, TAKE_PTR(call), done, userdata, ret_call);
}
