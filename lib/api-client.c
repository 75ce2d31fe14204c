/* SPDX-License-Identifier: MIT */
/* api-client.c: blocking client of fleet's HTTP API (see api-client.h). Layers, bottom up:
 *   - a connection: unix socket, TCP, or a child process's stdio (tunnel), non-blocking fds
 *     driven by poll() against the request's deadline;
 *   - optional TLS on top (lib/tls.h), its I/O going through the same deadline-bound waits;
 *   - HTTP/1.1 requests and responses through lib/http.h (the writer and the incremental
 *     response parser the etcd client uses too), keep-alive, every size bounded;
 *   - fleet's resources: JSON decoding that checks every member's type.
 *
 * TLS differs from fleet on purpose: when a CA file is given the server's certificate is
 * verified against it (fleet skipped verification unless a client certificate was given);
 * without a CA file the server is not verified, as in fleet. */
#include <arpa/inet.h>
#include <cJSON.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "api-client.h"
#include "buf.h"
#include "clock.h"
#include "http.h"
#include "strv.h"
#include "tls.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

struct ApiClient {
        bool https;
        bool unix_socket;
        char *unix_path;
        char *host, *port;        /* TCP dial target */
        char *host_header;        /* "domain-sock" for unix sockets, as fleet shows it */
        char *base_path;          /* "<endpoint path>/fleet/v1/" */
        char *url_base;           /* for messages: "http://domain-sock/fleet/v1/" */
        uint64_t timeout_usec, connect_timeout_usec;
        char **tunnel_argv;

        /* TLS material, loaded once. */
        TlsContext *tls;
        char *ca_file, *cert_file, *key_file;

        /* The connection. */
        int fd;                   /* socket: unix, TCP, or our end of the tunnel's socketpair */
        pid_t child;
        TlsConn *tconn;
        uint64_t deadline;        /* of the request in progress, 0: none */
        bool used;                /* a response was read on this connection */
        Buf rbuf;                 /* read but not consumed */
};

/* ---- Entities ---- */

void fl_api_unit_done(ApiUnit *u) {
        if (!u)
                return;
        free(u->name);
        free(u->desired_state);
        free(u->current_state);
        free(u->machine_id);
        free(u->unschedulable);
        fl_unit_file_free(u->file);
        *u = (ApiUnit) {};
}

void fl_api_unit_state_done(ApiUnitState *s) {
        if (!s)
                return;
        free(s->name);
        free(s->machine_id);
        free(s->hash);
        free(s->load_state);
        free(s->active_state);
        free(s->sub_state);
        *s = (ApiUnitState) {};
}

void fl_api_machine_done(ApiMachine *m) {
        if (!m)
                return;
        free(m->id);
        free(m->public_ip);
        fl_strv_free(m->metadata);
        *m = (ApiMachine) {};
}

void fl_api_units_free(ApiUnit *u, size_t n) {
        for (size_t i = 0; u && i < n; i++)
                fl_api_unit_done(&u[i]);
        free(u);
}

void fl_api_unit_states_free(ApiUnitState *s, size_t n) {
        for (size_t i = 0; s && i < n; i++)
                fl_api_unit_state_done(&s[i]);
        free(s);
}

void fl_api_machines_free(ApiMachine *m, size_t n) {
        for (size_t i = 0; m && i < n; i++)
                fl_api_machine_done(&m[i]);
        free(m);
}

/* ---- JSON ---- */

/* An optional string member: absent or null -> NULL; any other type -> -EBADMSG. */
static int json_opt_string(const cJSON *o, const char *key, char **ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        *ret = NULL;
        if (!v || cJSON_IsNull(v))
                return 0;
        if (!cJSON_IsString(v) || !v->valuestring)
                return -EBADMSG;
        if (!*v->valuestring)
                return 0;
        *ret = strdup(v->valuestring);
        return *ret ? 0 : -ENOMEM;
}

static int decode_unit_object(const cJSON *o, ApiUnit *ret) {
        ApiUnit u = {};
        const cJSON *opts, *it;
        int r;

        if (!cJSON_IsObject(o))
                return -EBADMSG;
        r = json_opt_string(o, "name", &u.name);
        if (r >= 0)
                r = json_opt_string(o, "desiredState", &u.desired_state);
        if (r >= 0)
                r = json_opt_string(o, "currentState", &u.current_state);
        if (r >= 0)
                r = json_opt_string(o, "machineID", &u.machine_id);
        if (r >= 0)
                r = json_opt_string(o, "unschedulableReason", &u.unschedulable);
        if (r >= 0)
                r = fl_unit_file_new(&u.file);
        if (r >= 0 && !u.name)
                r = -EBADMSG;
        opts = r >= 0 ? cJSON_GetObjectItemCaseSensitive(o, "options") : NULL;
        if (opts && !cJSON_IsNull(opts)) {
                if (!cJSON_IsArray(opts))
                        r = -EBADMSG;
                cJSON_ArrayForEach(it, opts) {
                        _cleanup_free_ char *sec = NULL, *name = NULL, *value = NULL;

                        if (r < 0)
                                break;
                        if (!cJSON_IsObject(it)) {
                                r = -EBADMSG;
                                break;
                        }
                        r = json_opt_string(it, "section", &sec);
                        if (r >= 0)
                                r = json_opt_string(it, "name", &name);
                        if (r >= 0)
                                r = json_opt_string(it, "value", &value);
                        if (r >= 0)
                                r = fl_unit_file_add(u.file, strempty(sec), strempty(name), strempty(value));
                }
        }
        if (r < 0) {
                fl_api_unit_done(&u);
                return r;
        }
        *ret = u;
        return 0;
}

static int parse_object(const char *json, size_t len, cJSON **ret) {
        cJSON *root = cJSON_ParseWithLength(json, len);

        if (!root)
                return -EBADMSG;
        if (!cJSON_IsObject(root)) {
                cJSON_Delete(root);
                return -EBADMSG;
        }
        *ret = root;
        return 0;
}

int fl_api_decode_unit(const char *json, size_t len, ApiUnit *ret) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        int r;

        r = parse_object(json, len, &root);
        if (r < 0)
                return r;
        return decode_unit_object(root, ret);
}

/* The list member of a page and its nextPageToken. */
static int page_begin(const char *json, size_t len, const char *member, cJSON **ret_root, const cJSON **ret_list,
                      char **ret_next_token) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        const cJSON *list;
        int r;

        r = parse_object(json, len, &root);
        if (r < 0)
                return r;
        list = cJSON_GetObjectItemCaseSensitive(root, member);
        if (list && !cJSON_IsNull(list) && !cJSON_IsArray(list))
                return -EBADMSG;
        r = json_opt_string(root, "nextPageToken", ret_next_token);
        if (r < 0)
                return r;
        *ret_list = list && cJSON_IsArray(list) ? list : NULL;
        *ret_root = TAKE_PTR(root);
        return 0;
}

typedef int (*ItemDecoder)(const cJSON *o, void *ret);

/* Appends the items of a page's list member to *items_ptr (a T * variable holding *n_items
 * elements of size bytes; room for one more is kept) and takes its nextPageToken. Items
 * decoded before a failure stay in the list. */
static int decode_page(const char *json, size_t len, const char *member, void *items_ptr, size_t *n_items,
                       size_t size, ItemDecoder decode, char **ret_next_token) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_free_ char *token = NULL;
        const cJSON *list, *it;
        size_t n = *n_items, add;
        char *l;
        int r;

        r = page_begin(json, len, member, &root, &list, &token);
        if (r < 0)
                return r;
        add = list ? (size_t) cJSON_GetArraySize(list) : 0;
        memcpy(&l, items_ptr, sizeof(l));
        l = realloc(l, (n + add + 1) * size);
        if (!l)
                return -ENOMEM;
        memcpy(items_ptr, &l, sizeof(l));
        cJSON_ArrayForEach(it, list) {
                r = decode(it, l + n * size);
                if (r < 0)
                        break;
                n++;
        }
        *n_items = n;
        if (r < 0)
                return r;
        *ret_next_token = TAKE_PTR(token);
        return 0;
}

static int decode_unit_item(const cJSON *o, void *ret) {
        return decode_unit_object(o, ret);
}

int fl_api_decode_unit_page(const char *json, size_t len, ApiUnit **units, size_t *n_units, char **ret_next_token) {
        return decode_page(json, len, "units", units, n_units, sizeof(ApiUnit), decode_unit_item, ret_next_token);
}

static int decode_state_object(const cJSON *o, void *ret) {
        ApiUnitState s = {};
        int r;

        if (!cJSON_IsObject(o))
                return -EBADMSG;
        r = json_opt_string(o, "name", &s.name);
        if (r >= 0)
                r = json_opt_string(o, "machineID", &s.machine_id);
        if (r >= 0)
                r = json_opt_string(o, "hash", &s.hash);
        if (r >= 0)
                r = json_opt_string(o, "systemdLoadState", &s.load_state);
        if (r >= 0)
                r = json_opt_string(o, "systemdActiveState", &s.active_state);
        if (r >= 0)
                r = json_opt_string(o, "systemdSubState", &s.sub_state);
        if (r >= 0 && !s.name)
                r = -EBADMSG;
        if (r < 0) {
                fl_api_unit_state_done(&s);
                return r;
        }
        *(ApiUnitState *) ret = s;
        return 0;
}

int fl_api_decode_state_page(const char *json, size_t len, ApiUnitState **states, size_t *n_states,
                             char **ret_next_token) {
        return decode_page(json, len, "states", states, n_states, sizeof(ApiUnitState),
                           decode_state_object, ret_next_token);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int decode_metadata(const cJSON *md, ApiMachine *m) {
        _cleanup_free_ char **keys = NULL;
        const cJSON *it;
        size_t n = 0, k = 0;

        if (!md || cJSON_IsNull(md))
                return 0;
        if (!cJSON_IsObject(md))
                return -EBADMSG;
        cJSON_ArrayForEach(it, md) {
                if (!cJSON_IsString(it) || !it->valuestring || !it->string)
                        return -EBADMSG;
                n++;
        }
        if (n == 0)
                return 0;
        keys = new(char *, n);
        m->metadata = new0(char *, 2 * n + 1);
        if (!keys || !m->metadata)
                return -ENOMEM;
        cJSON_ArrayForEach(it, md)
                keys[k++] = it->string;
        qsort(keys, n, sizeof(char *), cmp_str);
        for (size_t i = 0; i < n; i++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, keys[i]);
                m->metadata[2 * i] = strdup(keys[i]);
                m->metadata[2 * i + 1] = strdup(v->valuestring);
                if (!m->metadata[2 * i] || !m->metadata[2 * i + 1])
                        return -ENOMEM;
                m->n_metadata++;
        }
        return 0;
}

static int decode_machine_object(const cJSON *o, void *ret) {
        ApiMachine m = {};
        int r;

        if (!cJSON_IsObject(o))
                return -EBADMSG;
        r = json_opt_string(o, "id", &m.id);
        if (r >= 0)
                r = json_opt_string(o, "primaryIP", &m.public_ip);
        if (r >= 0)
                r = decode_metadata(cJSON_GetObjectItemCaseSensitive(o, "metadata"), &m);
        if (r >= 0 && !m.id)
                r = -EBADMSG;
        if (r < 0) {
                fl_api_machine_done(&m);
                return r;
        }
        *(ApiMachine *) ret = m;
        return 0;
}

int fl_api_decode_machine_page(const char *json, size_t len, ApiMachine **machines, size_t *n_machines,
                               char **ret_next_token) {
        return decode_page(json, len, "machines", machines, n_machines, sizeof(ApiMachine),
                           decode_machine_object, ret_next_token);
}

char *fl_api_encode_unit(const char *name, const char *desired_state, const UnitFile *u) {
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
        cJSON *arr;

        if (!o)
                return NULL;
        if (desired_state && !cJSON_AddStringToObject(o, "desiredState", desired_state))
                return NULL;
        if (!cJSON_AddStringToObject(o, "name", name))
                return NULL;
        if (u) {
                arr = cJSON_AddArrayToObject(o, "options");
                if (!arr)
                        return NULL;
                for (size_t i = 0; i < u->n_options; i++) {
                        cJSON *opt = cJSON_CreateObject();
                        if (!opt || !cJSON_AddItemToArray(arr, opt) ||
                            !cJSON_AddStringToObject(opt, "name", u->options[i].name) ||
                            !cJSON_AddStringToObject(opt, "section", u->options[i].section) ||
                            !cJSON_AddStringToObject(opt, "value", u->options[i].value))
                                return NULL;
                }
        }
        return cJSON_PrintUnformatted(o);
}

char *fl_api_path_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        Buf b = BUF_INIT;
        int r = fl_buf_puts(&b, "");

        for (const unsigned char *p = (const unsigned char *) s; r >= 0 && *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("-_.~", *p))
                        r = fl_buf_putc(&b, (char) *p);
                else {
                        char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
                        r = fl_buf_append(&b, e, 3);
                }
        }
        if (r < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

char *fl_api_error_message(int status, const char *body, size_t len) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        const cJSON *err, *code, *msg;
        char *s = NULL;

        root = cJSON_ParseWithLength(body ?: "", len);
        err = root ? cJSON_GetObjectItemCaseSensitive(root, "error") : NULL;
        if (cJSON_IsObject(err)) {
                code = cJSON_GetObjectItemCaseSensitive(err, "code");
                msg = cJSON_GetObjectItemCaseSensitive(err, "message");
                if (cJSON_IsNumber(code) && code->valuedouble >= 1 && code->valuedouble < 1000)
                        status = (int) code->valuedouble;
                if (cJSON_IsString(msg) && !isempty(msg->valuestring)) {
                        if (asprintf(&s, "googleapi: Error %d: %s", status, msg->valuestring) < 0)
                                return NULL;
                        return s;
                }
        }
        {
                /* A body from a broken server can be anything: keep the message one short
                 * printable line. */
                size_t n = MIN(len, (size_t) 512);
                Buf b = BUF_INIT;

                if (fl_buf_printf(&b, "googleapi: got HTTP response code %d with body: ", status) < 0)
                        return NULL;
                for (size_t i = 0; i < n; i++)
                        if (fl_buf_putc(&b, (unsigned char) body[i] < 0x20 || body[i] == 0x7f ? ' ' : body[i]) < 0) {
                                fl_buf_done(&b);
                                return NULL;
                        }
                if (n < len && fl_buf_puts(&b, "...") < 0) {
                        fl_buf_done(&b);
                        return NULL;
                }
                return fl_buf_steal(&b);
        }
}

/* ---- Endpoint ---- */

static char *errorf(const char *fmt, ...) _printf_(1, 2);
static char *errorf(const char *fmt, ...) {
        va_list ap;
        char *s;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

/* Go's error strings are lower case: "connect: connection refused". */
static char *errno_text(int err) {
        char *s = strdup(strerror(abs(err)));

        if (s && s[0] >= 'A' && s[0] <= 'Z' && !(s[1] >= 'A' && s[1] <= 'Z'))
                s[0] = (char) (s[0] - 'A' + 'a');
        return s;
}

static int parse_endpoint(ApiClient *c, const char *ep, char **ret_error) {
        const char *sep = strstr(ep, "://"), *rest, *slash;
        _cleanup_free_ char *scheme = NULL, *hostport = NULL;
        const char *path;

        if (!sep || sep == ep) {
                *ret_error = strdup("URL scheme undefined");
                return -EINVAL;
        }
        scheme = strndup(ep, (size_t) (sep - ep));
        if (!scheme)
                return -ENOMEM;
        for (char *p = scheme; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char) (*p - 'A' + 'a');
        rest = sep + 3;
        slash = strchr(rest, '/');
        hostport = slash ? strndup(rest, (size_t) (slash - rest)) : strdup(rest);
        if (!hostport)
                return -ENOMEM;
        path = slash ?: "";

        if (streq(scheme, "unix") || streq(scheme, "file")) {
                if (!isempty(hostport)) {
                        *ret_error = errorf("unable to connect to host \"%s\" with scheme \"%s\"", hostport, scheme);
                        return -EINVAL;
                }
                if (isempty(path)) {
                        *ret_error = errorf("no socket path in endpoint \"%s\"", ep);
                        return -EINVAL;
                }
                c->unix_socket = true;
                c->unix_path = strdup(path);
                c->host_header = strdup("domain-sock");
                c->base_path = strdup("/fleet/v1/");
        } else if (streq(scheme, "http") || streq(scheme, "https")) {
                const char *h = hostport, *colon;

                c->https = streq(scheme, "https");
                if (isempty(h)) {
                        *ret_error = errorf("no host in endpoint \"%s\"", ep);
                        return -EINVAL;
                }
                if (h[0] == '[') {
                        const char *close = strchr(h, ']');
                        if (!close) {
                                *ret_error = errorf("invalid endpoint \"%s\"", ep);
                                return -EINVAL;
                        }
                        c->host = strndup(h + 1, (size_t) (close - h - 1));
                        colon = close[1] == ':' ? close + 1 : NULL;
                } else {
                        colon = strrchr(h, ':');
                        c->host = colon ? strndup(h, (size_t) (colon - h)) : strdup(h);
                }
                c->port = strdup(colon && colon[1] ? colon + 1 : (c->https ? "443" : "80"));
                c->host_header = strdup(hostport);
                /* path.Join(ep.Path, "fleet", "v1") + "/" */
                {
                        size_t n = strlen(path);
                        while (n > 0 && path[n - 1] == '/')
                                n--;
                        c->base_path = errorf("%.*s/fleet/v1/", (int) n, path);
                }
        } else {
                *ret_error = errorf("unsupported protocol scheme \"%s\"", scheme);
                return -EINVAL;
        }
        if ((c->unix_socket && !c->unix_path) || !c->host_header || !c->base_path ||
            (!c->unix_socket && (!c->host || !c->port)))
                return -ENOMEM;
        c->url_base = errorf("%s://%s%s", c->https ? "https" : "http", c->host_header, c->base_path);
        return c->url_base ? 0 : -ENOMEM;
}

/* ---- Connection ---- */

/* Waits until fd is ready for events or the deadline passes (-ETIMEDOUT). */
static int wait_fd(ApiClient *c, int fd, short events) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                int timeout = -1, r;

                if (c->deadline > 0) {
                        uint64_t n = fl_now_usec();
                        if (n >= c->deadline)
                                return -ETIMEDOUT;
                        timeout = (int) MIN((c->deadline - n + 999) / 1000, (uint64_t) INT32_MAX);
                }
                r = poll(&p, 1, timeout);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -ETIMEDOUT;
                return 0;
        }
}

static ssize_t conn_read(ApiClient *c, void *buf, size_t n) {
        for (;;) {
                ssize_t k;
                int r;

                if (c->tconn) {
                        k = fl_tls_conn_read(c->tconn, buf, n);
                        if (k != -EAGAIN)
                                return k;
                        r = wait_fd(c, c->fd, fl_tls_conn_want(c->tconn) == EPOLLOUT ? POLLOUT : POLLIN);
                } else {
                        k = read(c->fd, buf, n);
                        if (k >= 0)
                                return k;
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        r = wait_fd(c, c->fd, POLLIN);
                }
                if (r < 0)
                        return r;
        }
}

static int conn_write(ApiClient *c, const void *buf, size_t n) {
        const char *p = buf;

        while (n > 0) {
                ssize_t k;
                int r;

                if (c->tconn) {
                        k = fl_tls_conn_write(c->tconn, p, n);
                        if (k == -EAGAIN) {
                                r = wait_fd(c, c->fd, fl_tls_conn_want(c->tconn) == EPOLLIN ? POLLIN : POLLOUT);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        if (k < 0)
                                return (int) k;
                } else {
                        k = send(c->fd, p, n, MSG_NOSIGNAL);
                        if (k < 0) {
                                if (errno == EINTR)
                                        continue;
                                if (errno != EAGAIN)
                                        return -errno;
                                r = wait_fd(c, c->fd, POLLOUT);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static void conn_close(ApiClient *c) {
        c->tconn = fl_tls_conn_free(c->tconn);
        c->fd = safe_close(c->fd);
        if (c->child > 0) {
                /* The tunnel's ssh ends when its stdio closes; do not wait for long. */
                for (int i = 0; i < 50; i++) {
                        struct timespec ts = { 0, 10 * 1000 * 1000 };

                        if (waitpid(c->child, NULL, WNOHANG) != 0)
                                break;
                        if (i == 20)
                                (void) kill(c->child, SIGTERM);
                        nanosleep(&ts, NULL);
                }
                (void) waitpid(c->child, NULL, WNOHANG);
                c->child = 0;
        }
        c->used = false;
        fl_buf_reset(&c->rbuf);
}

static int set_nonblock(int fd) {
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

/* Non-blocking connect bounded by the deadline. */
static int connect_fd(ApiClient *c, int fd, const struct sockaddr *sa, socklen_t len) {
        int r, err = 0;
        socklen_t l = sizeof(err);

        if (connect(fd, sa, len) >= 0)
                return 0;
        if (errno != EINPROGRESS && errno != EAGAIN)
                return -errno;
        r = wait_fd(c, fd, POLLOUT);
        if (r < 0)
                return r;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                return -errno;
        return err ? -err : 0;
}

static int dial_unix(ApiClient *c, char **ret_error) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r;

        if (strlen(c->unix_path) >= sizeof(sa.sun_path)) {
                *ret_error = errorf("dial unix %s: path too long", c->unix_path);
                return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, c->unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        r = connect_fd(c, fd, (struct sockaddr *) &sa, sizeof(sa));
        if (r < 0) {
                _cleanup_free_ char *t = errno_text(r);
                safe_close(fd);
                *ret_error = errorf("dial unix %s: connect: %s", c->unix_path, strempty(t));
                return r;
        }
        c->fd = fd;
        return 0;
}

static int dial_tcp(ApiClient *c, char **ret_error) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG }, *res = NULL;
        int r, fd = -1, last = -ECONNREFUSED;

        r = getaddrinfo(c->host, c->port, &hints, &res);
        if (r != 0) {
                *ret_error = errorf("dial tcp: lookup %s: %s", c->host, gai_strerror(r));
                return -EHOSTUNREACH;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
                if (fd < 0) {
                        last = -errno;
                        continue;
                }
                r = connect_fd(c, fd, ai->ai_addr, ai->ai_addrlen);
                if (r >= 0)
                        break;
                last = r;
                fd = safe_close(fd);
                if (r == -ETIMEDOUT)
                        break;
        }
        freeaddrinfo(res);
        if (fd < 0) {
                _cleanup_free_ char *t = errno_text(last);
                *ret_error = errorf("dial tcp %s:%s: %s%s", c->host, c->port,
                                    last == -ETIMEDOUT ? "i/o timeout" : "connect: ",
                                    last == -ETIMEDOUT ? "" : strempty(t));
                return last;
        }
        {
                int one = 1;
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        c->fd = fd;
        return 0;
}

/* The tunnel: the command's stdin and stdout are one end of a socketpair, so the connection
 * is a socket like the others (one fd for TLS, MSG_NOSIGNAL); its stderr is the user's. */
static int dial_command(ApiClient *c, char **ret_error) {
        int sv[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
        pid_t pid;
        int err = 0;
        ssize_t n;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
                err = -errno;
                goto fail;
        }
        pid = fork();
        if (pid < 0) {
                err = -errno;
                goto fail;
        }
        if (pid == 0) {
                if (dup2(sv[1], STDIN_FILENO) < 0 || dup2(sv[1], STDOUT_FILENO) < 0)
                        _exit(127);
                (void) signal(SIGPIPE, SIG_DFL);
                execvp(c->tunnel_argv[0], c->tunnel_argv);
                err = errno;
                (void) !write(err_pipe[1], &err, sizeof(err));
                _exit(127);
        }
        sv[1] = safe_close(sv[1]);
        err_pipe[1] = safe_close(err_pipe[1]);
        do
                n = read(err_pipe[0], &err, sizeof(err));
        while (n < 0 && errno == EINTR);
        err_pipe[0] = safe_close(err_pipe[0]);
        if (n == sizeof(err)) {
                safe_close(sv[0]);
                (void) waitpid(pid, NULL, 0);
                *ret_error = errorf("failed initializing SSH client: %s: %s", c->tunnel_argv[0], strerror(err));
                return -err;
        }
        c->child = pid;
        c->fd = sv[0];
        if (set_nonblock(c->fd) < 0) {
                conn_close(c);
                return -EIO;
        }
        return 0;
fail:
        for (int i = 0; i < 2; i++) {
                safe_close(sv[i]);
                safe_close(err_pipe[i]);
        }
        *ret_error = errorf("failed initializing SSH client: %s", strerror(-err));
        return err;
}

static int tls_handshake(ApiClient *c, char **ret_error) {
        int r;

        r = fl_tls_conn_new(c->tls, c->fd, c->host, &c->tconn);
        if (r < 0)
                return r;
        for (;;) {
                r = fl_tls_conn_handshake(c->tconn);
                if (r == 0)
                        return 0;
                if (r == -EAGAIN) {
                        r = wait_fd(c, c->fd, fl_tls_conn_want(c->tconn) == EPOLLOUT ? POLLOUT : POLLIN);
                        if (r == -ETIMEDOUT) {
                                *ret_error = strdup("net/http: TLS handshake timeout");
                                return r;
                        }
                        if (r < 0)
                                return r;
                        continue;
                }
                if (r == -EPERM)
                        *ret_error = errorf("x509: %s", fl_tls_conn_error(c->tconn));
                else
                        *ret_error = errorf("remote error: tls: %s", fl_tls_conn_error(c->tconn));
                return r;
        }
}

static int conn_open(ApiClient *c, char **ret_error) {
        int r;

        if (c->tunnel_argv)
                r = dial_command(c, ret_error);
        else if (c->unix_socket)
                r = dial_unix(c, ret_error);
        else
                r = dial_tcp(c, ret_error);
        if (r < 0)
                return r;
        if (c->https) {
                r = tls_handshake(c, ret_error);
                if (r < 0) {
                        conn_close(c);
                        return r;
                }
        }
        return 0;
}

/* ---- HTTP ---- */

/* Reads more into rbuf. 0 at EOF, >0 bytes, <0 error. */
static ssize_t fill(ApiClient *c) {
        ssize_t n;
        int r;

        r = fl_buf_grow(&c->rbuf, 16384);
        if (r < 0)
                return r;
        n = conn_read(c, c->rbuf.data + c->rbuf.len, c->rbuf.cap - c->rbuf.len - 1);
        if (n > 0) {
                c->rbuf.len += (size_t) n;
                c->rbuf.data[c->rbuf.len] = 0;
        }
        return n;
}

/* Reads one response with lib/http.h's parser. -ECONNRESET when the connection ended before
 * the first byte (a kept-alive connection the server had closed). */
static int read_response(ApiClient *c, bool head, HttpResponse **ret) {
        HttpResponseParser p;
        int r;

        fl_http_response_parser_init(&p, 0, FL_API_MAX_BODY, head);
        for (;;) {
                if (c->rbuf.len > 0) {
                        size_t consumed = 0;

                        r = fl_http_response_parser_feed(&p, c->rbuf.data, c->rbuf.len, &consumed);
                        if (r < 0)
                                break;
                        fl_buf_consume(&c->rbuf, r > 0 ? consumed : c->rbuf.len);
                        if (r > 0) {
                                *ret = fl_http_response_parser_take(&p);
                                r = *ret ? 0 : -ENOMEM;
                                break;
                        }
                }
                ssize_t n = fill(c);
                if (n < 0) {
                        r = (int) n;
                        break;
                }
                if (n == 0) {
                        if (!fl_http_response_parser_started(&p)) {
                                r = -ECONNRESET;
                                break;
                        }
                        r = fl_http_response_parser_eof(&p);
                        if (r > 0) {
                                *ret = fl_http_response_parser_take(&p);
                                r = *ret ? 0 : -ENOMEM;
                        } else if (r == 0)
                                r = -EBADMSG;
                        break;
                }
        }
        fl_http_response_parser_done(&p);
        return r;
}

/* A request's bytes, appended to out. */
static int encode_request(ApiClient *c, Buf *out, const char *method, const char *target, const char *body) {
        char *extra[3] = {
                (char *) "User-Agent: fleetctl/" FLEET_VERSION,
                (char *) "Accept: application/json",
        };

        return fl_http_client_write_request(out, method, target, c->host_header, extra,
                                            body ? "application/json" : NULL, body, body ? strlen(body) : 0);
}

static int send_request(ApiClient *c, const char *method, const char *target, const char *body) {
        Buf b = BUF_INIT;
        int r;

        r = encode_request(c, &b, method, target, body);
        if (r >= 0)
                r = conn_write(c, b.data, b.len);
        fl_buf_done(&b);
        return r;
}

/* The message of a request that got no response: Go's url.Error, "<Method> <url>: <what>". */
static char *transport_error(const char *url, int r) {
        _cleanup_free_ char *t = NULL;

        if (r == -ETIMEDOUT)
                return errorf("%s: net/http: request canceled (Client.Timeout exceeded)", url);
        if (r == -EBADMSG || r == -EMSGSIZE)
                return errorf("%s: malformed HTTP response", url);
        t = errno_text(r);
        return errorf("%s: %s", url, r == -ECONNRESET ? "EOF" : strempty(t));
}

/* The request target (path below base_path plus alt=json) and the url.Error prefix of a
 * request: "Get http://domain-sock/fleet/v1/units?alt=json". */
static int request_names(ApiClient *c, const char *method, const char *path, char **ret_target, char **ret_url) {
        _cleanup_free_ char *target = NULL, *url = NULL;

        target = errorf("%s%s%salt=json", c->base_path, path, strchr(path, '?') ? "&" : "?");
        if (!target)
                return -ENOMEM;
        url = errorf("%s %s://%s%s", streq(method, "GET") ? "Get" : streq(method, "PUT") ? "Put" :
                                     streq(method, "DELETE") ? "Delete" : method,
                     c->https ? "https" : "http", c->host_header, target);
        if (!url)
                return -ENOMEM;
        *ret_target = TAKE_PTR(target);
        *ret_url = TAKE_PTR(url);
        return 0;
}

int fl_api_client_request(ApiClient *c, const char *method, const char *path, const char *body, int *ret_status,
                          char **ret_body, size_t *ret_len, char **ret_error) {
        _cleanup_free_ char *target = NULL, *url = NULL;
        int r = 0;

        r = request_names(c, method, path, &target, &url);
        if (r < 0)
                return r;
        c->deadline = c->timeout_usec > 0 ? fl_now_usec() + c->timeout_usec : 0;

        /* A kept-alive connection may have been closed by the server meanwhile; then the
         * request is sent once more on a new connection (all our requests are idempotent). */
        for (int attempt = 0; attempt < 2; attempt++) {
                _cleanup_(fl_http_response_freep) HttpResponse *resp = NULL;
                bool reused = c->fd >= 0 && c->used;
                _cleanup_free_ char *cerr = NULL;

                if (c->fd < 0) {
                        if (c->deadline > 0)
                                c->deadline += c->connect_timeout_usec;
                        r = conn_open(c, &cerr);
                        if (r < 0) {
                                *ret_error = errorf("%s: %s", url, cerr ?: strerror(-r));
                                c->deadline = 0;
                                return r;
                        }
                }
                r = send_request(c, method, target, body);
                if (r >= 0)
                        r = read_response(c, streq(method, "HEAD"), &resp);
                if (r < 0) {
                        conn_close(c);
                        if (reused && (r == -ECONNRESET || r == -EPIPE))
                                continue;
                        *ret_error = transport_error(url, r);
                        c->deadline = 0;
                        return r;
                }
                c->used = true;
                if (!resp->keep_alive)
                        conn_close(c);
                c->deadline = 0;
                *ret_status = resp->status;
                if (fl_buf_puts(&resp->body, "") < 0)
                        return -ENOMEM;
                if (ret_len)
                        *ret_len = resp->body.len;
                *ret_body = fl_buf_steal(&resp->body);
                return *ret_body ? 0 : -ENOMEM;
        }
        return r;
}

/* A request whose answer must be 2xx; other statuses become fleet's googleapi errors. */
static int call(ApiClient *c, const char *method, const char *path, const char *body, int *ret_status,
                char **ret_body, size_t *ret_len, char **ret_error) {
        _cleanup_free_ char *b = NULL;
        size_t len = 0;
        int status, r;

        r = fl_api_client_request(c, method, path, body, &status, &b, &len, ret_error);
        if (r < 0)
                return r;
        *ret_status = status;
        if (status < 200 || status > 299) {
                *ret_error = fl_api_error_message(status, b, len);
                return status == 404 ? -ENOENT : status == 409 ? -EEXIST : status >= 500 ? -EIO : -EINVAL;
        }
        if (ret_body) {
                *ret_body = TAKE_PTR(b);
                *ret_len = len;
        }
        return 0;
}

static char *bad_json(ApiClient *c, const char *path) {
        return errorf("Get %s%s: invalid JSON in response", c->url_base, path);
}

typedef int (*PageDecoder)(const char *json, size_t len, void *items, size_t *n, char **ret_next_token);

static const char token_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void fl_api_page_token(unsigned limit, unsigned page, char ret[static 9]) {
        uint8_t d[4] = { limit & 0xff, (limit >> 8) & 0xff, page & 0xff, (page >> 8) & 0xff };
        uint32_t v = (uint32_t) d[0] << 16 | (uint32_t) d[1] << 8 | d[2];

        ret[0] = token_alphabet[(v >> 18) & 63];
        ret[1] = token_alphabet[(v >> 12) & 63];
        ret[2] = token_alphabet[(v >> 6) & 63];
        ret[3] = token_alphabet[v & 63];
        v = (uint32_t) d[3] << 16;
        ret[4] = token_alphabet[(v >> 18) & 63];
        ret[5] = token_alphabet[(v >> 12) & 63];
        ret[6] = '=';
        ret[7] = '=';
        ret[8] = 0;
}

/* Only the form fl_api_page_token() writes (any other: false). */
bool fl_api_page_token_decode(const char *token, unsigned *ret_limit, unsigned *ret_page) {
        uint32_t v[2] = {};
        char t[9];

        if (strlen(token) != 8 || !streq(token + 6, "=="))
                return false;
        for (size_t i = 0; i < 6; i++) {
                const char *p = strchr(token_alphabet, token[i]);
                if (!p || !*p)
                        return false;
                v[i / 4] = v[i / 4] << 6 | (uint32_t) (p - token_alphabet);
        }
        /* Bytes 0-2 in the first 4 characters, byte 3 and 4 zero bits in the other 2. */
        *ret_limit = (v[0] >> 16) | (v[0] >> 8 & 0xff) << 8;
        *ret_page = (v[0] & 0xff) | (v[1] >> 4) << 8;
        fl_api_page_token(*ret_limit, *ret_page, t);
        return streq(t, token);
}

/* base with the page token (NULL: the first page); NULL on OOM. */
static char *page_path(const char *base, const char *token) {
        _cleanup_free_ char *esc = NULL;

        if (!token)
                return strdup(base);
        esc = fl_api_path_escape(token);
        return esc ? errorf("%s%snextPageToken=%s", base, strchr(base, '?') ? "&" : "?", esc) : NULL;
}

typedef struct Batch Batch;
static int batch_run(Batch *b, size_t parallel, size_t *ret_failed, char **ret_error);
static int pages_ahead(ApiClient *c, const char *base, PageDecoder decode, void *items, size_t *n, unsigned limit,
                       unsigned first, unsigned count, char **token, char **ret_error);

/* Pages asked for at once once a list has a second page, doubling up to this many: a long list
 * is then not one round trip per page (100 items), nor a page fetched while the last one is
 * decoded. Only where a connection is cheap: no TLS handshake, no tunnel. */
#define API_PAGES_AHEAD_MAX 16U

static int list_pages(ApiClient *c, const char *base, PageDecoder decode, void *items, size_t *n, char **ret_error) {
        _cleanup_free_ char *token = NULL;
        unsigned ahead = 2;

        for (unsigned page = 0;; page++) {
                _cleanup_free_ char *path = NULL, *body = NULL, *next = NULL;
                unsigned limit, first;
                size_t len;
                int status, r;

                if (page >= FL_API_MAX_PAGES) {
                        *ret_error = errorf("Get %s%s: too many pages", c->url_base, base);
                        return -EBADMSG;
                }
                if (token && !c->https && !c->tunnel_argv && fl_api_page_token_decode(token, &limit, &first) &&
                    first + ahead <= 0xffff) {
                        r = pages_ahead(c, base, decode, items, n, limit, first, ahead, &token, ret_error);
                        if (r < 0 || !token)
                                return r;
                        page += ahead - 1;
                        ahead = MIN(ahead * 2, API_PAGES_AHEAD_MAX);
                        continue;
                }
                path = page_path(base, token);
                if (!path)
                        return -ENOMEM;
                r = call(c, "GET", path, NULL, &status, &body, &len, ret_error);
                if (r < 0)
                        return r;
                r = decode(body, len, items, n, &next);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        *ret_error = bad_json(c, path);
                        return r;
                }
                if (!next)
                        return 0;
                if (token && streq(next, token)) {
                        *ret_error = errorf("Get %s%s: server repeated the page token", c->url_base, base);
                        return -EBADMSG;
                }
                free(token);
                token = TAKE_PTR(next);
        }
}

static int list_units(ApiClient *c, const char *base, ApiUnit **ret, size_t *ret_n, char **ret_error) {
        ApiUnit *l = NULL;
        size_t n = 0;
        int r;

        r = list_pages(c, base, (PageDecoder) fl_api_decode_unit_page, &l, &n, ret_error);
        if (r < 0) {
                fl_api_units_free(l, n);
                return r;
        }
        *ret = l ?: new0(ApiUnit, 1);
        *ret_n = n;
        return *ret ? 0 : -ENOMEM;
}

int fl_api_list_units(ApiClient *c, ApiUnit **ret, size_t *ret_n, char **ret_error) {
        return list_units(c, "units", ret, ret_n, ret_error);
}

int fl_api_list_unit_names(ApiClient *c, ApiUnit **ret, size_t *ret_n, char **ret_error) {
        return list_units(c, "units?fields=nextPageToken,units/name", ret, ret_n, ret_error);
}

/* "units/<name>", the name escaped as fleet's client does; NULL on OOM. */
static char *unit_path(const char *name) {
        _cleanup_free_ char *esc = fl_api_path_escape(name);

        return esc ? errorf("units/%s", esc) : NULL;
}

int fl_api_get_unit(ApiClient *c, const char *name, ApiUnit *ret, char **ret_error) {
        _cleanup_free_ char *path = unit_path(name), *body = NULL, *err = NULL;
        size_t len;
        int status, r;

        if (!path)
                return -ENOMEM;
        r = call(c, "GET", path, NULL, &status, &body, &len, &err);
        if (r == -ENOENT)
                return r;
        if (r < 0) {
                *ret_error = TAKE_PTR(err);
                return r;
        }
        r = fl_api_decode_unit(body, len, ret);
        if (r == -EBADMSG)
                *ret_error = bad_json(c, path);
        return r;
}

int fl_api_list_states(ApiClient *c, const char *unit_name, const char *machine_id, ApiUnitState **ret,
                       size_t *ret_n, char **ret_error) {
        _cleanup_free_ char *path = NULL, *u = NULL, *m = NULL;
        ApiUnitState *l = NULL;
        size_t n = 0;
        int r;

        u = unit_name ? fl_api_path_escape(unit_name) : NULL;
        m = machine_id ? fl_api_path_escape(machine_id) : NULL;
        if ((unit_name && !u) || (machine_id && !m))
                return -ENOMEM;
        if (u && m)
                path = errorf("state?unitName=%s&machineID=%s", u, m);
        else if (u)
                path = errorf("state?unitName=%s", u);
        else if (m)
                path = errorf("state?machineID=%s", m);
        else
                path = strdup("state");
        if (!path)
                return -ENOMEM;
        r = list_pages(c, path, (PageDecoder) fl_api_decode_state_page, &l, &n, ret_error);
        if (r < 0) {
                fl_api_unit_states_free(l, n);
                return r;
        }
        *ret = l ?: new0(ApiUnitState, 1);
        *ret_n = n;
        return *ret ? 0 : -ENOMEM;
}

int fl_api_list_machines(ApiClient *c, ApiMachine **ret, size_t *ret_n, char **ret_error) {
        ApiMachine *l = NULL;
        size_t n = 0;
        int r;

        r = list_pages(c, "machines", (PageDecoder) fl_api_decode_machine_page, &l, &n, ret_error);
        if (r < 0) {
                fl_api_machines_free(l, n);
                return r;
        }
        *ret = l ?: new0(ApiMachine, 1);
        *ret_n = n;
        return *ret ? 0 : -ENOMEM;
}

static int put_unit(ApiClient *c, const char *name, const char *desired, const UnitFile *u, char **ret_error) {
        _cleanup_free_ char *path = unit_path(name), *body = NULL;
        int status;

        body = fl_api_encode_unit(name, desired, u);
        if (!path || !body)
                return -ENOMEM;
        return call(c, "PUT", path, body, &status, NULL, NULL, ret_error);
}

int fl_api_create_unit(ApiClient *c, const char *name, const UnitFile *u, char **ret_error) {
        return put_unit(c, name, NULL, u, ret_error);
}

int fl_api_set_unit_target_state(ApiClient *c, const char *name, const char *state, char **ret_error) {
        return put_unit(c, name, state, NULL, ret_error);
}

int fl_api_destroy_unit(ApiClient *c, const char *name, char **ret_error) {
        _cleanup_free_ char *path = unit_path(name), *err = NULL;
        int status, r;

        if (!path)
                return -ENOMEM;
        r = call(c, "DELETE", path, NULL, &status, NULL, NULL, &err);
        if (r < 0 && r != -ENOENT)
                *ret_error = TAKE_PTR(err);
        return r;
}

/* ---- Batches of creates ---- */

typedef enum SlotState {
        SLOT_IDLE,
        SLOT_SENDING,
        SLOT_RECEIVING,
} SlotState;

/* One connection of a batch. conn is the client itself for the first slot (its kept-alive
 * connection is reused) and a copy of the client for the others: the settings are borrowed
 * from the client, the connection fields (fd, tunnel child, TLS, rbuf) are the copy's own. */
typedef struct BatchSlot {
        ApiClient *conn;
        bool copy;
        SlotState state;
        size_t item;
        char *url;               /* "Put http://.../units/x?alt=json", for messages */
        Buf out;                 /* the request */
        size_t sent;
        HttpResponseParser parser;
        bool parsing;
        bool reused;             /* sent on a kept-alive connection: may be retried once */
        uint64_t deadline;       /* 0: none */
        short events;            /* what to poll for */
} BatchSlot;

struct Batch {
        ApiClient *client;
        size_t n, next;
        size_t failed;           /* lowest index that failed, n: none */
        int error;
        char *message;
        /* Request i: method, path below the API root, body (NULL: none); *ret_path and
         * *ret_body are the batch's to free. */
        int (*build)(Batch *b, size_t i, const char **ret_method, char **ret_path, char **ret_body);
        /* A 2xx answer to request i (or a 404 with allow_404); may take *resp. */
        int (*answered)(Batch *b, size_t i, HttpResponse **resp);
        bool allow_404;
        void *userdata;
};

static ApiClient *conn_copy(ApiClient *c) {
        ApiClient *k = new(ApiClient, 1);

        if (!k)
                return NULL;
        *k = *c;
        k->fd = -EBADF;
        k->child = 0;
        k->tconn = NULL;
        k->deadline = 0;
        k->used = false;
        k->rbuf = (Buf) BUF_INIT;
        return k;
}

static void slot_done(BatchSlot *s) {
        if (s->parsing)
                fl_http_response_parser_done(&s->parser);
        s->parsing = false;
        s->url = mfree(s->url);
        fl_buf_done(&s->out);
        if (s->copy) {
                conn_close(s->conn);
                fl_buf_done(&s->conn->rbuf);
                free(s->conn);
        }
        s->conn = NULL;
}

/* Records item's failure (msg owned; NULL: out of memory). The lowest index wins: it is the
 * one a sequential run would have stopped at. */
static void batch_fail(Batch *b, size_t item, int r, char *msg) {
        if (item >= b->failed) {
                free(msg);
                return;
        }
        free(b->message);
        b->failed = item;
        b->error = r;
        b->message = msg;
}

static void slot_fail(Batch *b, BatchSlot *s, int r, char *msg) {
        if (s->parsing)
                fl_http_response_parser_done(&s->parser);
        s->parsing = false;
        batch_fail(b, s->item, r, msg);
        s->state = SLOT_IDLE;
        s->url = mfree(s->url);
}

static int status_errno(int status) {
        return status == 404 ? -ENOENT : status == 409 ? -EEXIST : status >= 500 ? -EIO : -EINVAL;
}

/* Opens the slot's connection when it has none; blocking, bounded like a request's. */
static int slot_connect(BatchSlot *s, char **ret_error) {
        ApiClient *k = s->conn;
        int r;

        if (k->fd >= 0)
                return 0;
        k->deadline = s->deadline > 0 ? s->deadline + k->connect_timeout_usec : 0;
        r = conn_open(k, ret_error);
        k->deadline = 0;
        return r;
}

/* Non-blocking I/O on a slot's connection: bytes, 0 at EOF (reads), -EAGAIN with s->events
 * set, or another error. */
static ssize_t slot_read(BatchSlot *s, void *buf, size_t n) {
        ApiClient *k = s->conn;
        ssize_t r;

        if (k->tconn) {
                r = fl_tls_conn_read(k->tconn, buf, n);
                if (r == -EAGAIN)
                        s->events = fl_tls_conn_want(k->tconn) == EPOLLOUT ? POLLOUT : POLLIN;
                return r;
        }
        do
                r = read(k->fd, buf, n);
        while (r < 0 && errno == EINTR);
        if (r >= 0)
                return r;
        if (errno == EAGAIN)
                s->events = POLLIN;
        return -errno;
}

static ssize_t slot_write(BatchSlot *s, const void *buf, size_t n) {
        ApiClient *k = s->conn;
        ssize_t r;

        if (k->tconn) {
                r = fl_tls_conn_write(k->tconn, buf, n);
                if (r == -EAGAIN)
                        s->events = fl_tls_conn_want(k->tconn) == EPOLLIN ? POLLIN : POLLOUT;
                return r;
        }
        do
                r = send(k->fd, buf, n, MSG_NOSIGNAL);
        while (r < 0 && errno == EINTR);
        if (r >= 0)
                return r;
        if (errno == EAGAIN)
                s->events = POLLOUT;
        return -errno;
}

/* The connection failed under the request in flight: once more on a new connection if it was
 * a kept-alive one the server may have closed (a PUT of the same unit is idempotent), else the
 * item fails. */
static void slot_io_error(Batch *b, BatchSlot *s, int r) {
        conn_close(s->conn);
        if (s->parsing)
                fl_http_response_parser_done(&s->parser);
        s->parsing = false;
        if (s->reused && (r == -ECONNRESET || r == -EPIPE)) {
                _cleanup_free_ char *cerr = NULL;

                s->reused = false;
                r = slot_connect(s, &cerr);
                if (r >= 0) {
                        s->sent = 0;
                        s->state = SLOT_SENDING;
                        return;
                }
                slot_fail(b, s, r, errorf("%s: %s", s->url, cerr ?: strerror(-r)));
                return;
        }
        slot_fail(b, s, r, transport_error(s->url, r));
}

/* A complete response for the slot's item. */
static void slot_response(Batch *b, BatchSlot *s, HttpResponse **respp) {
        HttpResponse *resp = *respp;
        int r;

        s->conn->used = true;
        if (!resp->keep_alive)
                conn_close(s->conn);
        if ((resp->status < 200 || resp->status > 299) && !(resp->status == 404 && b->allow_404)) {
                (void) fl_buf_puts(&resp->body, "");
                slot_fail(b, s, status_errno(resp->status),
                          fl_api_error_message(resp->status, resp->body.data, resp->body.len));
                return;
        }
        r = b->answered ? b->answered(b, s->item, respp) : 0;
        if (r < 0) {
                slot_fail(b, s, r, r == -ENOMEM ? NULL : bad_json(b->client, s->url));
                return;
        }
        if (s->parsing)
                fl_http_response_parser_done(&s->parser);
        s->parsing = false;
        s->state = SLOT_IDLE;
        s->url = mfree(s->url);
}

/* Moves the slot's request on as far as it goes without waiting. */
static void slot_progress(Batch *b, BatchSlot *s) {
        ApiClient *k = s->conn;

        for (;;) {
                ssize_t n;
                int r;

                if (s->state == SLOT_SENDING) {
                        n = slot_write(s, s->out.data + s->sent, s->out.len - s->sent);
                        if (n == -EAGAIN)
                                return;
                        if (n < 0) {
                                slot_io_error(b, s, (int) n);
                                if (s->state == SLOT_IDLE)
                                        return;
                                continue;
                        }
                        s->sent += (size_t) n;
                        if (s->sent < s->out.len)
                                continue;
                        fl_http_response_parser_init(&s->parser, 0, FL_API_MAX_BODY, false);
                        s->parsing = true;
                        s->state = SLOT_RECEIVING;
                }
                if (s->state != SLOT_RECEIVING)
                        return;

                if (k->rbuf.len > 0) {
                        size_t consumed = 0;

                        r = fl_http_response_parser_feed(&s->parser, k->rbuf.data, k->rbuf.len, &consumed);
                        if (r < 0) {
                                slot_io_error(b, s, r);
                                return;
                        }
                        fl_buf_consume(&k->rbuf, r > 0 ? consumed : k->rbuf.len);
                        if (r > 0) {
                                _cleanup_(fl_http_response_freep) HttpResponse *resp =
                                        fl_http_response_parser_take(&s->parser);
                                if (!resp)
                                        slot_fail(b, s, -ENOMEM, NULL);
                                else
                                        slot_response(b, s, &resp);
                                return;
                        }
                }
                r = fl_buf_grow(&k->rbuf, 16384);
                if (r < 0) {
                        slot_fail(b, s, r, NULL);
                        return;
                }
                n = slot_read(s, k->rbuf.data + k->rbuf.len, k->rbuf.cap - k->rbuf.len - 1);
                if (n == -EAGAIN)
                        return;
                if (n < 0) {
                        slot_io_error(b, s, (int) n);
                        if (s->state == SLOT_IDLE)
                                return;
                        continue;
                }
                if (n == 0) {
                        if (!fl_http_response_parser_started(&s->parser)) {
                                slot_io_error(b, s, -ECONNRESET);
                                if (s->state == SLOT_IDLE)
                                        return;
                                continue;
                        }
                        r = fl_http_response_parser_eof(&s->parser);
                        if (r > 0) {
                                _cleanup_(fl_http_response_freep) HttpResponse *resp =
                                        fl_http_response_parser_take(&s->parser);
                                if (!resp)
                                        slot_fail(b, s, -ENOMEM, NULL);
                                else
                                        slot_response(b, s, &resp);
                        } else {
                                conn_close(k);
                                slot_fail(b, s, -EBADMSG, transport_error(s->url, -EBADMSG));
                        }
                        return;
                }
                k->rbuf.len += (size_t) n;
                k->rbuf.data[k->rbuf.len] = 0;
        }
}

/* Gives an idle slot the next item and starts sending it. */
static void slot_start(Batch *b, BatchSlot *s) {
        _cleanup_free_ char *path = NULL, *body = NULL, *target = NULL, *cerr = NULL;
        const char *method;
        size_t i = b->next++;
        int r;

        s->item = i;
        r = b->build(b, i, &method, &path, &body);
        if (r < 0) {
                batch_fail(b, i, r, NULL);
                return;
        }
        r = request_names(b->client, method, path, &target, &s->url);
        fl_buf_reset(&s->out);
        if (r >= 0)
                r = encode_request(b->client, &s->out, method, target, body);
        if (r < 0) {
                slot_fail(b, s, r, NULL);
                return;
        }
        s->sent = 0;
        s->deadline = b->client->timeout_usec > 0 ? fl_now_usec() + b->client->timeout_usec : 0;
        s->reused = s->conn->fd >= 0 && s->conn->used;
        r = slot_connect(s, &cerr);
        if (r < 0) {
                slot_fail(b, s, r, errorf("%s: %s", s->url, cerr ?: strerror(-r)));
                return;
        }
        s->state = SLOT_SENDING;
        slot_progress(b, s);
}

/* Runs b's n requests, parallel at once; 0 or the lowest failure (*ret_failed, *ret_error). */
static int batch_run(Batch *b, size_t parallel, size_t *ret_failed, char **ret_error) {
        ApiClient *c = b->client;
        size_t n = b->n;
        _cleanup_free_ struct pollfd *pfd = NULL;
        _cleanup_free_ size_t *busy = NULL;
        BatchSlot *slots;
        size_t n_slots;

        b->failed = n;
        if (n == 0)
                return 0;
        if (parallel == 0)
                parallel = c->tunnel_argv ? FL_API_BATCH_PARALLEL_TUNNEL : FL_API_BATCH_PARALLEL;
        n_slots = MIN(parallel, n);
        slots = new0(BatchSlot, n_slots);
        pfd = new(struct pollfd, n_slots);
        busy = new(size_t, n_slots);
        if (!slots || !pfd || !busy) {
                free(slots);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_slots; i++) {
                slots[i].conn = i == 0 ? c : conn_copy(c);
                slots[i].copy = i > 0;
                if (!slots[i].conn) {
                        batch_fail(b, 0, -ENOMEM, NULL);
                        n_slots = i;
                        break;
                }
        }

        for (;;) {
                uint64_t now, next_deadline = 0;
                size_t n_busy = 0;
                int timeout = -1, k;

                /* After a failure nothing new is sent; what is in flight finishes, so that the
                 * lowest failed index is known. */
                for (size_t i = 0; i < n_slots; i++)
                        while (slots[i].state == SLOT_IDLE && b->failed == b->n && b->next < b->n)
                                slot_start(b, &slots[i]);
                for (size_t i = 0; i < n_slots; i++) {
                        if (slots[i].state == SLOT_IDLE)
                                continue;
                        pfd[n_busy] = (struct pollfd) { .fd = slots[i].conn->fd, .events = slots[i].events };
                        busy[n_busy++] = i;
                        if (slots[i].deadline > 0 && (next_deadline == 0 || slots[i].deadline < next_deadline))
                                next_deadline = slots[i].deadline;
                }
                if (n_busy == 0)
                        break;
                if (next_deadline > 0) {
                        now = fl_now_usec();
                        timeout = next_deadline > now ? (int) MIN((next_deadline - now + 999) / 1000,
                                                                  (uint64_t) INT32_MAX) : 0;
                }
                k = poll(pfd, n_busy, timeout);
                if (k < 0 && errno != EINTR) {
                        k = -errno;
                        for (size_t j = 0; j < n_busy; j++) {
                                conn_close(slots[busy[j]].conn);
                                slot_fail(b, &slots[busy[j]], k, transport_error(slots[busy[j]].url, k));
                        }
                        continue;
                }
                now = fl_now_usec();
                for (size_t j = 0; j < n_busy; j++) {
                        BatchSlot *s = &slots[busy[j]];

                        if (k > 0 && pfd[j].revents != 0)
                                slot_progress(b, s);
                        if (s->state != SLOT_IDLE && s->deadline > 0 && now >= s->deadline) {
                                conn_close(s->conn);
                                slot_fail(b, s, -ETIMEDOUT, transport_error(s->url, -ETIMEDOUT));
                        }
                }
        }

        for (size_t i = 0; i < n_slots; i++)
                slot_done(&slots[i]);
        free(slots);
        if (b->failed == b->n)
                return 0;
        if (ret_failed)
                *ret_failed = b->failed;
        if (b->error == -ENOMEM && !b->message)
                return -ENOMEM;
        *ret_error = TAKE_PTR(b->message);
        return b->error;
}

typedef struct CreateBatch {
        char *const *names;
        UnitFile *const *files;
} CreateBatch;

static int create_build(Batch *b, size_t i, const char **ret_method, char **ret_path, char **ret_body) {
        const CreateBatch *cb = b->userdata;

        *ret_method = "PUT";
        *ret_path = unit_path(cb->names[i]);
        *ret_body = fl_api_encode_unit(cb->names[i], NULL, cb->files[i]);
        return *ret_path && *ret_body ? 0 : -ENOMEM;
}

typedef struct PageBatch {
        const char *base;
        unsigned limit, first;
        HttpResponse **resp;
} PageBatch;

static int page_build(Batch *b, size_t i, const char **ret_method, char **ret_path, char **ret_body) {
        const PageBatch *pb = b->userdata;
        char token[9];

        fl_api_page_token(pb->limit, pb->first + (unsigned) i, token);
        *ret_method = "GET";
        *ret_body = NULL;
        *ret_path = page_path(pb->base, token);
        return *ret_path ? 0 : -ENOMEM;
}

static int page_answered(Batch *b, size_t i, HttpResponse **resp) {
        PageBatch *pb = b->userdata;

        pb->resp[i] = TAKE_PTR(*resp);
        return 0;
}

/* Pages first..first+count-1 at once, decoded in order up to the last one (or the first
 * without a next token). *token: the server's token after them, NULL at the end. */
static int pages_ahead(ApiClient *c, const char *base, PageDecoder decode, void *items, size_t *n, unsigned limit,
                       unsigned first, unsigned count, char **token, char **ret_error) {
        HttpResponse *resp[API_PAGES_AHEAD_MAX] = {};
        PageBatch pb = { .base = base, .limit = limit, .first = first, .resp = resp };
        Batch b = { .client = c, .n = count, .build = page_build, .answered = page_answered, .userdata = &pb };
        size_t failed;
        int r;

        r = batch_run(&b, count, &failed, ret_error);
        *token = mfree(*token);
        for (unsigned i = 0; r >= 0 && i < count; i++) {
                _cleanup_free_ char *next = NULL;
                char want[9];

                r = decode(resp[i]->body.data ?: "", resp[i]->body.len, items, n, &next);
                if (r < 0) {
                        if (r != -ENOMEM)
                                *ret_error = bad_json(c, base);
                        break;
                }
                if (!next)
                        break;
                /* Not the next page we asked for already: carry on from the server's token. */
                fl_api_page_token(limit, first + i + 1, want);
                if (i == count - 1 || !streq(next, want)) {
                        *token = TAKE_PTR(next);
                        break;
                }
        }
        for (unsigned i = 0; i < count; i++)
                fl_http_response_free(resp[i]);
        return r < 0 ? r : 0;
}

int fl_api_create_units(ApiClient *c, char *const *names, UnitFile *const *files, size_t n, size_t parallel,
                        size_t *ret_failed, char **ret_error) {
        CreateBatch cb = { .names = names, .files = files };
        Batch b = { .client = c, .n = n, .build = create_build, .userdata = &cb };

        return batch_run(&b, parallel, ret_failed, ret_error);
}

typedef struct GetBatch {
        char *const *names;
        ApiUnit *units;          /* one per name; name NULL: there is no such unit */
} GetBatch;

static int get_build(Batch *b, size_t i, const char **ret_method, char **ret_path, char **ret_body) {
        const GetBatch *gb = b->userdata;

        *ret_method = "GET";
        *ret_body = NULL;
        *ret_path = unit_path(gb->names[i]);
        return *ret_path ? 0 : -ENOMEM;
}

static int get_answered(Batch *b, size_t i, HttpResponse **resp) {
        GetBatch *gb = b->userdata;
        int r;

        if ((*resp)->status == 404)
                return 0;
        r = fl_api_decode_unit((*resp)->body.data ?: "", (*resp)->body.len, &gb->units[i]);
        if (r >= 0 && !gb->units[i].name) {
                fl_api_unit_done(&gb->units[i]);
                r = -EBADMSG;
        }
        return r;
}

int fl_api_get_units(ApiClient *c, char *const *names, size_t n, ApiUnit **ret, size_t *ret_n, char **ret_error) {
        GetBatch gb = { .names = names, .units = new0(ApiUnit, n + 1) };
        Batch b = { .client = c, .n = n, .build = get_build, .answered = get_answered, .allow_404 = true, .userdata = &gb };
        size_t k = 0;
        int r;

        if (!gb.units)
                return -ENOMEM;
        r = batch_run(&b, 0, NULL, ret_error);
        for (size_t i = 0; i < n; i++)
                if (r < 0)
                        fl_api_unit_done(&gb.units[i]);
                else if (gb.units[i].name)
                        gb.units[k++] = gb.units[i];
        if (r < 0) {
                free(gb.units);
                return r;
        }
        *ret = gb.units;
        *ret_n = k;
        return 0;
}


/* ---- Client ---- */

int fl_api_client_new(const ApiClientConfig *cfg, ApiClient **ret, char **ret_error) {
        _cleanup_(fl_api_client_freep) ApiClient *c = NULL;
        int r;

        c = new0(ApiClient, 1);
        if (!c)
                return -ENOMEM;
        c->fd = -EBADF;
        c->timeout_usec = cfg->timeout_usec;
        c->connect_timeout_usec = cfg->connect_timeout_usec;
        r = parse_endpoint(c, cfg->endpoint, ret_error);
        if (r < 0)
                return r;
        if (cfg->tunnel_argv) {
                STRV_FOREACH(a, cfg->tunnel_argv)
                        if (fl_strv_extend(&c->tunnel_argv, *a) < 0)
                                return -ENOMEM;
        }
        if ((cfg->ca_file && !(c->ca_file = strdup(cfg->ca_file))) ||
            (cfg->cert_file && !(c->cert_file = strdup(cfg->cert_file))) ||
            (cfg->key_file && !(c->key_file = strdup(cfg->key_file))))
                return -ENOMEM;
        if (c->https) {
                /* Verify the server when a CA is given (fleet never did without a client
                 * certificate); without one, no verification, as in fleet. */
                r = fl_tls_context_new(c->ca_file, c->cert_file, c->key_file, !c->ca_file, &c->tls, ret_error);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

ApiClient *fl_api_client_free(ApiClient *c) {
        if (!c)
                return NULL;
        conn_close(c);
        fl_tls_context_free(c->tls);
        fl_buf_done(&c->rbuf);
        free(c->unix_path);
        free(c->host);
        free(c->port);
        free(c->host_header);
        free(c->base_path);
        free(c->url_base);
        free(c->ca_file);
        free(c->cert_file);
        free(c->key_file);
        fl_strv_free(c->tunnel_argv);
        return mfree(c);
}
