/* SPDX-License-Identifier: MIT */
/* api-client.c: blocking client of fleet's HTTP API (see api-client.h). Layers, bottom up:
 *   - a connection: unix socket, TCP, or a child process's stdio (tunnel), non-blocking fds
 *     driven by poll() against the request's deadline;
 *   - optional TLS (mbedtls) on top, its I/O going through the same deadline-bound calls;
 *   - HTTP/1.1 requests and response parsing (status, headers, Content-Length or chunked
 *     body, keep-alive), every size bounded;
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
#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "api-client.h"
#include "buf.h"
#include "strv.h"

#define HEAD_MAX (64U * 1024U)

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

struct ApiClient {
        bool https;
        bool unix_socket;
        char *unix_path;
        char *host, *port;        /* TCP dial target */
        char *host_header;        /* "domain-sock" for unix sockets, as fleet shows it */
        char *base_path;          /* "<endpoint path>/fleet/v1/" */
        char *url_base;           /* for messages: "http://domain-sock/fleet/v1/" */
        uint64_t timeout_usec;
        char **tunnel_argv;

        /* TLS material, loaded once. */
        bool tls_ready;
        bool verify;
        mbedtls_entropy_context entropy;
        mbedtls_ctr_drbg_context drbg;
        mbedtls_ssl_config conf;
        mbedtls_x509_crt ca, cert;
        mbedtls_pk_context key;
        char *ca_file, *cert_file, *key_file;

        /* The connection. */
        int fd_in, fd_out;        /* equal for sockets */
        pid_t child;
        bool tls_on;
        mbedtls_ssl_context ssl;
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

int fl_api_decode_unit_page(const char *json, size_t len, ApiUnit **units, size_t *n_units, char **ret_next_token) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_free_ char *token = NULL;
        const cJSON *list, *it;
        size_t n = *n_units, add;
        ApiUnit *l;
        int r;

        r = page_begin(json, len, "units", &root, &list, &token);
        if (r < 0)
                return r;
        add = list ? (size_t) cJSON_GetArraySize(list) : 0;
        l = realloc(*units, (n + add + 1) * sizeof(ApiUnit));
        if (!l)
                return -ENOMEM;
        *units = l;
        cJSON_ArrayForEach(it, list) {
                r = decode_unit_object(it, &l[n]);
                if (r < 0)
                        break;
                n++;
        }
        *n_units = n;
        if (r < 0)
                return r;
        *ret_next_token = TAKE_PTR(token);
        return 0;
}

int fl_api_decode_state_page(const char *json, size_t len, ApiUnitState **states, size_t *n_states,
                             char **ret_next_token) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_free_ char *token = NULL;
        const cJSON *list, *it;
        size_t n = *n_states, add;
        ApiUnitState *l;
        int r;

        r = page_begin(json, len, "states", &root, &list, &token);
        if (r < 0)
                return r;
        add = list ? (size_t) cJSON_GetArraySize(list) : 0;
        l = realloc(*states, (n + add + 1) * sizeof(ApiUnitState));
        if (!l)
                return -ENOMEM;
        *states = l;
        cJSON_ArrayForEach(it, list) {
                ApiUnitState s = {};

                if (!cJSON_IsObject(it)) {
                        r = -EBADMSG;
                        break;
                }
                r = json_opt_string(it, "name", &s.name);
                if (r >= 0)
                        r = json_opt_string(it, "machineID", &s.machine_id);
                if (r >= 0)
                        r = json_opt_string(it, "hash", &s.hash);
                if (r >= 0)
                        r = json_opt_string(it, "systemdLoadState", &s.load_state);
                if (r >= 0)
                        r = json_opt_string(it, "systemdActiveState", &s.active_state);
                if (r >= 0)
                        r = json_opt_string(it, "systemdSubState", &s.sub_state);
                if (r >= 0 && !s.name)
                        r = -EBADMSG;
                if (r < 0) {
                        fl_api_unit_state_done(&s);
                        break;
                }
                l[n++] = s;
        }
        *n_states = n;
        if (r < 0)
                return r;
        *ret_next_token = TAKE_PTR(token);
        return 0;
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

int fl_api_decode_machine_page(const char *json, size_t len, ApiMachine **machines, size_t *n_machines,
                               char **ret_next_token) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_free_ char *token = NULL;
        const cJSON *list, *it;
        size_t n = *n_machines, add;
        ApiMachine *l;
        int r;

        r = page_begin(json, len, "machines", &root, &list, &token);
        if (r < 0)
                return r;
        add = list ? (size_t) cJSON_GetArraySize(list) : 0;
        l = realloc(*machines, (n + add + 1) * sizeof(ApiMachine));
        if (!l)
                return -ENOMEM;
        *machines = l;
        cJSON_ArrayForEach(it, list) {
                ApiMachine m = {};

                if (!cJSON_IsObject(it)) {
                        r = -EBADMSG;
                        break;
                }
                r = json_opt_string(it, "id", &m.id);
                if (r >= 0)
                        r = json_opt_string(it, "primaryIP", &m.public_ip);
                if (r >= 0)
                        r = decode_metadata(cJSON_GetObjectItemCaseSensitive(it, "metadata"), &m);
                if (r >= 0 && !m.id)
                        r = -EBADMSG;
                if (r < 0) {
                        fl_api_machine_done(&m);
                        break;
                }
                l[n++] = m;
        }
        *n_machines = n;
        if (r < 0)
                return r;
        *ret_next_token = TAKE_PTR(token);
        return 0;
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

/* ---- TLS material ---- */

static char *tls_error_text(int err) {
        char buf[256];

        mbedtls_strerror(err, buf, sizeof(buf));
        return strdup(buf);
}

static int tls_setup(ApiClient *c, char **ret_error) {
        static const char pers[] = "fleetctl";
        int r;

        mbedtls_entropy_init(&c->entropy);
        mbedtls_ctr_drbg_init(&c->drbg);
        mbedtls_ssl_config_init(&c->conf);
        mbedtls_x509_crt_init(&c->ca);
        mbedtls_x509_crt_init(&c->cert);
        mbedtls_pk_init(&c->key);
        c->tls_ready = true;

        r = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, (const unsigned char *) pers,
                                  sizeof(pers) - 1);
        if (r == 0)
                r = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                                MBEDTLS_SSL_PRESET_DEFAULT);
        if (r != 0) {
                *ret_error = tls_error_text(r);
                return -EIO;
        }
        mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
        if (c->ca_file) {
                r = mbedtls_x509_crt_parse_file(&c->ca, c->ca_file);
                if (r < 0) {
                        _cleanup_free_ char *t = tls_error_text(r);
                        *ret_error = errorf("unable to load CA file %s: %s", c->ca_file, strempty(t));
                        return -EINVAL;
                }
                mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
                mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
                c->verify = true;
        } else
                mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
        if (c->cert_file || c->key_file) {
                if (!c->cert_file || !c->key_file) {
                        *ret_error = strdup("tls: both a certificate and a key file are needed");
                        return -EINVAL;
                }
                r = mbedtls_x509_crt_parse_file(&c->cert, c->cert_file);
                if (r == 0)
                        r = mbedtls_pk_parse_keyfile(&c->key, c->key_file, NULL);
                if (r == 0)
                        r = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key);
                if (r != 0) {
                        _cleanup_free_ char *t = tls_error_text(r);
                        *ret_error = errorf("tls: failed to load key pair: %s", strempty(t));
                        return -EINVAL;
                }
        }
        return 0;
}

/* ---- Connection ---- */

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* Waits until fd is ready for events or the deadline passes (-ETIMEDOUT). */
static int wait_fd(ApiClient *c, int fd, short events) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                int timeout = -1, r;

                if (c->deadline > 0) {
                        uint64_t n = now_usec();
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

static ssize_t raw_read(ApiClient *c, void *buf, size_t n) {
        for (;;) {
                ssize_t k = read(c->fd_in, buf, n);
                int r;

                if (k >= 0)
                        return k;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return -errno;
                r = wait_fd(c, c->fd_in, POLLIN);
                if (r < 0)
                        return r;
        }
}

static int raw_write(ApiClient *c, const void *buf, size_t n) {
        const char *p = buf;

        while (n > 0) {
                ssize_t k = c->fd_in == c->fd_out ? send(c->fd_out, p, n, MSG_NOSIGNAL) : write(c->fd_out, p, n);
                int r;

                if (k >= 0) {
                        p += k;
                        n -= (size_t) k;
                        continue;
                }
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return -errno;
                r = wait_fd(c, c->fd_out, POLLOUT);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* mbedtls BIO: non-blocking, the waiting happens in tls_* below. */
static int bio_send(void *userdata, const unsigned char *buf, size_t n) {
        ApiClient *c = userdata;
        ssize_t k = c->fd_in == c->fd_out ? send(c->fd_out, buf, n, MSG_NOSIGNAL) : write(c->fd_out, buf, n);

        if (k >= 0)
                return (int) k;
        if (errno == EAGAIN || errno == EINTR)
                return MBEDTLS_ERR_SSL_WANT_WRITE;
        return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *userdata, unsigned char *buf, size_t n) {
        ApiClient *c = userdata;
        ssize_t k = read(c->fd_in, buf, n);

        if (k >= 0)
                return (int) k;
        if (errno == EAGAIN || errno == EINTR)
                return MBEDTLS_ERR_SSL_WANT_READ;
        return MBEDTLS_ERR_NET_RECV_FAILED;
}

/* Waits for what mbedtls asked for; r is its return value. */
static int tls_wait(ApiClient *c, int r) {
        if (r == MBEDTLS_ERR_SSL_WANT_READ)
                return wait_fd(c, c->fd_in, POLLIN);
        if (r == MBEDTLS_ERR_SSL_WANT_WRITE)
                return wait_fd(c, c->fd_out, POLLOUT);
        return -EPROTO;
}

static ssize_t conn_read(ApiClient *c, void *buf, size_t n) {
        if (!c->tls_on)
                return raw_read(c, buf, n);
        for (;;) {
                int r = mbedtls_ssl_read(&c->ssl, buf, n);

                if (r >= 0)
                        return r;
                if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
                        return 0;
                if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
                        int k = tls_wait(c, r);
                        if (k < 0)
                                return k;
                        continue;
                }
                return -ECONNRESET;
        }
}

static int conn_write(ApiClient *c, const void *buf, size_t n) {
        const unsigned char *p = buf;

        if (!c->tls_on)
                return raw_write(c, buf, n);
        while (n > 0) {
                int r = mbedtls_ssl_write(&c->ssl, p, n);

                if (r >= 0) {
                        p += r;
                        n -= (size_t) r;
                        continue;
                }
                if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
                        int k = tls_wait(c, r);
                        if (k < 0)
                                return k;
                        continue;
                }
                return -EPIPE;
        }
        return 0;
}

static void conn_close(ApiClient *c) {
        if (c->tls_on) {
                mbedtls_ssl_free(&c->ssl);
                c->tls_on = false;
        }
        if (c->fd_out >= 0 && c->fd_out != c->fd_in)
                safe_close(c->fd_out);
        if (c->fd_in >= 0)
                safe_close(c->fd_in);
        c->fd_in = c->fd_out = -EBADF;
        if (c->child > 0) {
                /* The tunnel's ssh ends when its stdin closes; do not wait for long. */
                for (int i = 0; i < 50; i++) {
                        if (waitpid(c->child, NULL, WNOHANG) != 0)
                                break;
                        if (i == 20)
                                (void) kill(c->child, SIGTERM);
                        struct timespec ts = { 0, 10 * 1000 * 1000 };
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
        c->fd_in = c->fd_out = fd;
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
        c->fd_in = c->fd_out = fd;
        return 0;
}

/* The tunnel: argv's stdin and stdout are our connection, its stderr is the user's. */
static int dial_command(ApiClient *c, char **ret_error) {
        int to_child[2] = { -1, -1 }, from_child[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
        pid_t pid;
        int err = 0;
        ssize_t n;

        if (pipe2(to_child, O_CLOEXEC) < 0 || pipe2(from_child, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
                err = -errno;
                goto fail;
        }
        pid = fork();
        if (pid < 0) {
                err = -errno;
                goto fail;
        }
        if (pid == 0) {
                if (dup2(to_child[0], STDIN_FILENO) < 0 || dup2(from_child[1], STDOUT_FILENO) < 0)
                        _exit(127);
                (void) signal(SIGPIPE, SIG_DFL);
                execvp(c->tunnel_argv[0], c->tunnel_argv);
                err = errno;
                (void) !write(err_pipe[1], &err, sizeof(err));
                _exit(127);
        }
        safe_close(to_child[0]);
        safe_close(from_child[1]);
        safe_close(err_pipe[1]);
        do
                n = read(err_pipe[0], &err, sizeof(err));
        while (n < 0 && errno == EINTR);
        safe_close(err_pipe[0]);
        if (n == sizeof(err)) {
                safe_close(to_child[1]);
                safe_close(from_child[0]);
                (void) waitpid(pid, NULL, 0);
                *ret_error = errorf("failed initializing SSH client: %s: %s", c->tunnel_argv[0], strerror(err));
                return -err;
        }
        c->child = pid;
        c->fd_out = to_child[1];
        c->fd_in = from_child[0];
        if (set_nonblock(c->fd_in) < 0 || set_nonblock(c->fd_out) < 0) {
                conn_close(c);
                return -EIO;
        }
        return 0;
fail:
        for (int i = 0; i < 2; i++) {
                safe_close(to_child[i]);
                safe_close(from_child[i]);
                safe_close(err_pipe[i]);
        }
        *ret_error = errorf("failed initializing SSH client: %s", strerror(-err));
        return err;
}

/* Whether host is an IPv4/IPv6 literal; its bytes into ret (16) and their count. */
static bool host_ip(const char *host, uint8_t *ret, size_t *ret_len) {
        uint8_t a[16];

        if (inet_pton(AF_INET, host, a) == 1) {
                if (ret) {
                        memcpy(ret, a, 4);
                        *ret_len = 4;
                }
                return true;
        }
        if (inet_pton(AF_INET6, host, a) == 1) {
                if (ret) {
                        memcpy(ret, a, 16);
                        *ret_len = 16;
                }
                return true;
        }
        return false;
}

static bool cert_has_ip(const mbedtls_x509_crt *crt, const char *host) {
        uint8_t ip[16];
        size_t n;

        if (!crt || !host_ip(host, ip, &n))
                return false;
        for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s && s->buf.p; s = s->next)
                if ((s->buf.tag & 0x1F) == MBEDTLS_X509_SAN_IP_ADDRESS && s->buf.len == n &&
                    memcmp(s->buf.p, ip, n) == 0)
                        return true;
        return false;
}

static int tls_handshake(ApiClient *c, char **ret_error) {
        int r;

        mbedtls_ssl_init(&c->ssl);
        c->tls_on = true;
        r = mbedtls_ssl_setup(&c->ssl, &c->conf);
        /* mbedtls 2.28 matches only DNS names; an address is checked against the
         * certificate's IP SANs after the handshake instead. */
        if (r == 0 && c->host && !host_ip(c->host, NULL, NULL))
                r = mbedtls_ssl_set_hostname(&c->ssl, c->host);
        if (r != 0) {
                *ret_error = tls_error_text(r);
                return -EIO;
        }
        mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
        for (;;) {
                r = mbedtls_ssl_handshake(&c->ssl);
                if (r == 0) {
                        if (c->verify && c->host && host_ip(c->host, NULL, NULL) &&
                            !cert_has_ip(mbedtls_ssl_get_peer_cert(&c->ssl), c->host)) {
                                *ret_error = errorf("x509: certificate is not valid for IP %s", c->host);
                                return -EPERM;
                        }
                        return 0;
                }
                if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
                        int k = tls_wait(c, r);
                        if (k < 0) {
                                *ret_error = strdup(k == -ETIMEDOUT ? "net/http: TLS handshake timeout"
                                                                    : "tls: handshake failed");
                                return k;
                        }
                        continue;
                }
                if (r == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
                        char info[512];
                        uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
                        mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
                        info[strcspn(info, "\n")] = 0;
                        *ret_error = errorf("x509: certificate verification failed: %s", info);
                        return -EPERM;
                }
                {
                        _cleanup_free_ char *t = tls_error_text(r);
                        *ret_error = errorf("tls: handshake failed: %s", strempty(t));
                }
                return -ECONNRESET;
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

/* One line (without CRLF) from rbuf, reading as needed; at most max bytes. */
static int read_line(ApiClient *c, size_t max, char **ret) {
        for (;;) {
                char *nl = c->rbuf.data ? memchr(c->rbuf.data, '\n', c->rbuf.len) : NULL;
                ssize_t n;

                if (nl) {
                        size_t len = (size_t) (nl - c->rbuf.data);
                        char *l = strndup(c->rbuf.data, len > 0 && nl[-1] == '\r' ? len - 1 : len);
                        if (!l)
                                return -ENOMEM;
                        fl_buf_consume(&c->rbuf, len + 1);
                        *ret = l;
                        return 0;
                }
                if (c->rbuf.len > max)
                        return -EMSGSIZE;
                n = fill(c);
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        return -ECONNRESET;
        }
}

static int read_exact(ApiClient *c, size_t n, Buf *body) {
        while (c->rbuf.len < n) {
                ssize_t k = fill(c);
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        return -ECONNRESET;
        }
        if (fl_buf_append(body, c->rbuf.data, n) < 0)
                return -ENOMEM;
        fl_buf_consume(&c->rbuf, n);
        return 0;
}

typedef struct Response {
        int status;
        Buf body;
        bool close;
} Response;

static int parse_uint(const char *s, int base, uint64_t *ret) {
        char *e;
        unsigned long long v;

        while (*s == ' ' || *s == '\t')
                s++;
        if (!*s || *s == '-' || *s == '+')
                return -EBADMSG;
        errno = 0;
        v = strtoull(s, &e, base);
        while (*e == ' ' || *e == '\t')
                e++;
        if (errno != 0 || (*e && !(base == 16 && *e == ';')))
                return -EBADMSG;
        *ret = v;
        return 0;
}

static int read_response(ApiClient *c, bool head, Response *resp) {
        _cleanup_free_ char *status_line = NULL;
        uint64_t length = 0;
        bool have_length = false, chunked = false, http10;
        size_t head_bytes = 0;
        int r;

        r = read_line(c, HEAD_MAX, &status_line);
        if (r < 0)
                return r;
        /* "HTTP/1.1 200 OK" */
        if (!startswith(status_line, "HTTP/1.") || strlen(status_line) < 12 || status_line[8] != ' ' ||
            !(status_line[9] >= '1' && status_line[9] <= '5'))
                return -EBADMSG;
        for (int i = 9; i < 12; i++)
                if (status_line[i] < '0' || status_line[i] > '9')
                        return -EBADMSG;
        resp->status = (status_line[9] - '0') * 100 + (status_line[10] - '0') * 10 + (status_line[11] - '0');
        http10 = status_line[7] == '0';
        resp->close = http10;

        for (;;) {
                _cleanup_free_ char *line = NULL;
                char *colon, *v;

                r = read_line(c, HEAD_MAX, &line);
                if (r < 0)
                        return r;
                head_bytes += strlen(line) + 2;
                if (head_bytes > HEAD_MAX)
                        return -EMSGSIZE;
                if (!*line)
                        break;
                colon = strchr(line, ':');
                if (!colon)
                        return -EBADMSG;
                *colon = 0;
                v = colon + 1;
                while (*v == ' ' || *v == '\t')
                        v++;
                if (strcasecmp(line, "Content-Length") == 0) {
                        uint64_t l;
                        if (parse_uint(v, 10, &l) < 0 || (have_length && l != length))
                                return -EBADMSG;
                        length = l;
                        have_length = true;
                } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
                        if (strcasecmp(v, "chunked") != 0)
                                return -EBADMSG;
                        chunked = true;
                } else if (strcasecmp(line, "Connection") == 0) {
                        if (strcasecmp(v, "close") == 0)
                                resp->close = true;
                        else if (strcasecmp(v, "keep-alive") == 0 && http10)
                                resp->close = false;
                }
        }
        if (resp->status < 200 && resp->status != 101) {
                /* 100 Continue and friends: the real response follows. */
                return read_response(c, head, resp);
        }
        if (head || resp->status == 204 || resp->status == 304)
                return fl_buf_puts(&resp->body, "");

        if (chunked) {
                for (;;) {
                        _cleanup_free_ char *line = NULL;
                        uint64_t n;

                        r = read_line(c, 1024, &line);
                        if (r < 0)
                                return r;
                        if (parse_uint(line, 16, &n) < 0)
                                return -EBADMSG;
                        if (n == 0)
                                break;
                        if (n > FL_API_MAX_BODY || resp->body.len + n > FL_API_MAX_BODY)
                                return -EMSGSIZE;
                        r = read_exact(c, (size_t) n, &resp->body);
                        if (r < 0)
                                return r;
                        line = mfree(line);
                        r = read_line(c, 2, &line);
                        if (r < 0)
                                return r;
                        if (*line)
                                return -EBADMSG;
                }
                /* Trailers, up to the empty line. */
                for (size_t t = 0;; t++) {
                        _cleanup_free_ char *line = NULL;
                        r = read_line(c, HEAD_MAX, &line);
                        if (r < 0)
                                return r;
                        if (!*line)
                                break;
                        if (t > 100)
                                return -EMSGSIZE;
                }
        } else if (have_length) {
                if (length > FL_API_MAX_BODY)
                        return -EMSGSIZE;
                r = read_exact(c, (size_t) length, &resp->body);
                if (r < 0)
                        return r;
        } else {
                /* Delimited by the end of the connection. */
                resp->close = true;
                for (;;) {
                        ssize_t k;
                        if (fl_buf_append(&resp->body, c->rbuf.data, c->rbuf.len) < 0)
                                return -ENOMEM;
                        fl_buf_reset(&c->rbuf);
                        if (resp->body.len > FL_API_MAX_BODY)
                                return -EMSGSIZE;
                        k = fill(c);
                        if (k < 0)
                                return (int) k;
                        if (k == 0)
                                break;
                }
        }
        return fl_buf_puts(&resp->body, "");
}

static int send_request(ApiClient *c, const char *method, const char *target, const char *body) {
        Buf b = BUF_INIT;
        int r;

        r = fl_buf_printf(&b,
                          "%s %s HTTP/1.1\r\n"
                          "Host: %s\r\n"
                          "User-Agent: fleetctl/%s\r\n"
                          "Accept: application/json\r\n",
                          method, target, c->host_header, FLEET_VERSION);
        if (r >= 0 && body)
                r = fl_buf_printf(&b, "Content-Type: application/json\r\nContent-Length: %zu\r\n", strlen(body));
        if (r >= 0)
                r = fl_buf_puts(&b, "\r\n");
        if (r >= 0 && body)
                r = fl_buf_puts(&b, body);
        if (r >= 0)
                r = conn_write(c, b.data, b.len);
        fl_buf_done(&b);
        return r;
}

int fl_api_client_request(ApiClient *c, const char *method, const char *path, const char *body, int *ret_status,
                          char **ret_body, size_t *ret_len, char **ret_error) {
        _cleanup_free_ char *target = NULL, *url = NULL;
        int r = 0;

        target = errorf("%s%s%salt=json", c->base_path, path, strchr(path, '?') ? "&" : "?");
        if (!target)
                return -ENOMEM;
        /* Go's url.Error prefix: "Get http://domain-sock/fleet/v1/units?alt=json: ..." */
        url = errorf("%s %s://%s%s", streq(method, "GET") ? "Get" : streq(method, "PUT") ? "Put" :
                                     streq(method, "DELETE") ? "Delete" : method,
                     c->https ? "https" : "http", c->host_header, target);
        if (!url)
                return -ENOMEM;
        c->deadline = c->timeout_usec > 0 ? now_usec() + c->timeout_usec : 0;

        /* A kept-alive connection may have been closed by the server meanwhile; then the
         * request is sent once more on a new connection (all our requests are idempotent). */
        for (int attempt = 0; attempt < 2; attempt++) {
                Response resp = {};
                bool reused = c->fd_in >= 0 && c->used;
                _cleanup_free_ char *cerr = NULL;

                if (c->fd_in < 0) {
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
                        fl_buf_done(&resp.body);
                        conn_close(c);
                        if (reused && (r == -ECONNRESET || r == -EPIPE))
                                continue;
                        if (r == -ETIMEDOUT)
                                *ret_error = errorf("%s: net/http: request canceled (Client.Timeout exceeded)", url);
                        else if (r == -EBADMSG || r == -EMSGSIZE)
                                *ret_error = errorf("%s: malformed HTTP response", url);
                        else {
                                _cleanup_free_ char *t = errno_text(r);
                                *ret_error = errorf("%s: %s", url, r == -ECONNRESET ? "EOF" : strempty(t));
                        }
                        c->deadline = 0;
                        return r;
                }
                c->used = true;
                if (resp.close)
                        conn_close(c);
                c->deadline = 0;
                *ret_status = resp.status;
                if (ret_len)
                        *ret_len = resp.body.len;
                *ret_body = fl_buf_steal(&resp.body);
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

static int list_pages(ApiClient *c, const char *base, PageDecoder decode, void *items, size_t *n, char **ret_error) {
        _cleanup_free_ char *token = NULL;

        for (unsigned page = 0;; page++) {
                _cleanup_free_ char *path = NULL, *body = NULL, *next = NULL, *esc = NULL;
                size_t len;
                int status, r;

                if (page >= FL_API_MAX_PAGES) {
                        *ret_error = errorf("Get %s%s: too many pages", c->url_base, base);
                        return -EBADMSG;
                }
                if (token) {
                        esc = fl_api_path_escape(token);
                        if (!esc)
                                return -ENOMEM;
                }
                path = errorf("%s%s%s%s", base, token ? (strchr(base, '?') ? "&" : "?") : "",
                              token ? "nextPageToken=" : "", strempty(esc));
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

int fl_api_list_units(ApiClient *c, ApiUnit **ret, size_t *ret_n, char **ret_error) {
        ApiUnit *l = NULL;
        size_t n = 0;
        int r;

        r = list_pages(c, "units", (PageDecoder) fl_api_decode_unit_page, &l, &n, ret_error);
        if (r < 0) {
                fl_api_units_free(l, n);
                return r;
        }
        *ret = l ?: new0(ApiUnit, 1);
        *ret_n = n;
        return *ret ? 0 : -ENOMEM;
}

int fl_api_get_unit(ApiClient *c, const char *name, ApiUnit *ret, char **ret_error) {
        _cleanup_free_ char *esc = fl_api_path_escape(name), *path = NULL, *body = NULL, *err = NULL;
        size_t len;
        int status, r;

        if (!esc)
                return -ENOMEM;
        path = errorf("units/%s", esc);
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
        _cleanup_free_ char *esc = fl_api_path_escape(name), *path = NULL, *body = NULL;
        int status;

        if (!esc)
                return -ENOMEM;
        path = errorf("units/%s", esc);
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
        _cleanup_free_ char *esc = fl_api_path_escape(name), *path = NULL, *err = NULL;
        int status, r;

        if (!esc)
                return -ENOMEM;
        path = errorf("units/%s", esc);
        if (!path)
                return -ENOMEM;
        r = call(c, "DELETE", path, NULL, &status, NULL, NULL, &err);
        if (r < 0 && r != -ENOENT)
                *ret_error = TAKE_PTR(err);
        return r;
}

/* ---- Client ---- */

int fl_api_client_new(const ApiClientConfig *cfg, ApiClient **ret, char **ret_error) {
        _cleanup_(fl_api_client_freep) ApiClient *c = NULL;
        int r;

        c = new0(ApiClient, 1);
        if (!c)
                return -ENOMEM;
        c->fd_in = c->fd_out = -EBADF;
        c->timeout_usec = cfg->timeout_usec;
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
                r = tls_setup(c, ret_error);
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
        if (c->tls_ready) {
                mbedtls_ssl_config_free(&c->conf);
                mbedtls_x509_crt_free(&c->ca);
                mbedtls_x509_crt_free(&c->cert);
                mbedtls_pk_free(&c->key);
                mbedtls_ctr_drbg_free(&c->drbg);
                mbedtls_entropy_free(&c->entropy);
        }
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
