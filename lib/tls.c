/* SPDX-License-Identifier: MIT */
/* tls.c: mbedtls 2.28 client connections on non-blocking sockets. */
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "log.h"
#include "tls.h"

#define SYSTEM_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

struct TlsContext {
        mbedtls_entropy_context entropy;
        mbedtls_ctr_drbg_context drbg;
        mbedtls_ssl_config conf;
        mbedtls_x509_crt ca, cert;
        mbedtls_pk_context key;
        bool verify;
};

struct TlsConn {
        TlsContext *ctx;
        mbedtls_ssl_context ssl;
        int fd;
        bool handshake_done;
        /* The host when it is an IP literal: matched against the IP SANs after the handshake. */
        int ip_family;
        unsigned char ip[16];
        uint32_t want;
        int sys_errno;          /* errno of the last failed send/recv */
        const char *error;
};

TlsContext *fl_tls_context_free(TlsContext *t) {
        if (!t)
                return NULL;
        mbedtls_ssl_config_free(&t->conf);
        mbedtls_x509_crt_free(&t->ca);
        mbedtls_x509_crt_free(&t->cert);
        mbedtls_pk_free(&t->key);
        mbedtls_ctr_drbg_free(&t->drbg);
        mbedtls_entropy_free(&t->entropy);
        free(t);
        return NULL;
}

static int file_error(const char *what, const char *path, int mbed, char **ret_error) {
        char e[128];
        int r;

        /* Tell a missing file from a bad one: the former is a configuration typo. */
        if (access(path, R_OK) < 0)
                r = -errno;
        else
                r = mbed == MBEDTLS_ERR_PK_ALLOC_FAILED || mbed == MBEDTLS_ERR_X509_ALLOC_FAILED ? -ENOMEM
                                                                                                : -EINVAL;
        if (r == -ENOENT || r == -EACCES)
                snprintf(e, sizeof(e), "%s", strerror(-r));
        else
                mbedtls_strerror(mbed, e, sizeof(e));
        if (ret_error && asprintf(ret_error, "unable to load %s %s: %s", what, path, e) < 0)
                *ret_error = NULL;
        log_debug("tls: unable to load %s %s: %s", what, path, e);
        return r;
}

int fl_tls_context_new(const char *ca_file, const char *cert_file, const char *key_file, bool insecure,
                       TlsContext **ret, char **ret_error) {
        _cleanup_(fl_tls_context_freep) TlsContext *t = NULL;
        static const char pers[] = "fleet-etcd";
        int m;

        if (ret_error)
                *ret_error = NULL;
        if (!!cert_file != !!key_file)
                return -EINVAL;

        t = new0(TlsContext, 1);
        if (!t)
                return -ENOMEM;
        mbedtls_entropy_init(&t->entropy);
        mbedtls_ctr_drbg_init(&t->drbg);
        mbedtls_ssl_config_init(&t->conf);
        mbedtls_x509_crt_init(&t->ca);
        mbedtls_x509_crt_init(&t->cert);
        mbedtls_pk_init(&t->key);
        t->verify = !insecure;

        m = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy, (const unsigned char *) pers,
                                  sizeof(pers) - 1);
        if (m != 0)
                return -EIO;
        m = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT);
        if (m != 0)
                return -ENOMEM;
        mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
        /* etcd (Go) speaks TLS 1.2 and 1.3; mbedtls 2.28 only 1.2. Nothing older. */
        mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);

        if (t->verify) {
                const char *ca = ca_file ?: SYSTEM_CA_BUNDLE;
                /* A bundle may hold many certificates; parse_file returns > 0 when some of them
                 * were skipped, which is fine as long as at least one loaded. */
                m = mbedtls_x509_crt_parse_file(&t->ca, ca);
                if (m < 0 || t->ca.version == 0)
                        return file_error("CA file", ca, m, ret_error);
                mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
                mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        } else
                mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);

        if (cert_file) {
                m = mbedtls_x509_crt_parse_file(&t->cert, cert_file);
                if (m != 0)
                        return file_error("certificate file", cert_file, m, ret_error);
                m = mbedtls_pk_parse_keyfile(&t->key, key_file, NULL);
                if (m != 0)
                        return file_error("key file", key_file, m, ret_error);
                m = mbedtls_pk_check_pair(&t->cert.pk, &t->key);
                if (m != 0)
                        return file_error("key file (does not match the certificate)", key_file, m,
                                          ret_error);
                m = mbedtls_ssl_conf_own_cert(&t->conf, &t->cert, &t->key);
                if (m != 0)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(t);
        return 0;
}

static int bio_send(void *userdata, const unsigned char *buf, size_t len) {
        TlsConn *c = userdata;
        ssize_t n;

        do
                n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n >= 0)
                return (int) n;
        c->sys_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN) {
                /* ENOTCONN: the non-blocking connect is still in progress. */
                c->want = EPOLLOUT;
                return MBEDTLS_ERR_SSL_WANT_WRITE;
        }
        if (errno == EPIPE || errno == ECONNRESET)
                return MBEDTLS_ERR_NET_CONN_RESET;
        return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *userdata, unsigned char *buf, size_t len) {
        TlsConn *c = userdata;
        ssize_t n;

        do
                n = recv(c->fd, buf, len, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n >= 0)
                return (int) n;
        c->sys_errno = errno;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN) {
                c->want = EPOLLIN;
                return MBEDTLS_ERR_SSL_WANT_READ;
        }
        if (errno == ECONNRESET)
                return MBEDTLS_ERR_NET_CONN_RESET;
        return MBEDTLS_ERR_NET_RECV_FAILED;
}

TlsConn *fl_tls_conn_free(TlsConn *c) {
        if (!c)
                return NULL;
        mbedtls_ssl_free(&c->ssl);
        free(c);
        return NULL;
}

int fl_tls_conn_new(TlsContext *t, int fd, const char *host, TlsConn **ret) {
        _cleanup_(fl_tls_conn_freep) TlsConn *c = NULL;
        int m;

        c = new0(TlsConn, 1);
        if (!c)
                return -ENOMEM;
        mbedtls_ssl_init(&c->ssl);
        c->ctx = t;
        c->fd = fd;
        c->error = "no error";

        m = mbedtls_ssl_setup(&c->ssl, &t->conf);
        if (m != 0)
                return -ENOMEM;
        if (inet_pton(AF_INET, host, c->ip) == 1)
                c->ip_family = AF_INET;
        else if (inet_pton(AF_INET6, host, c->ip) == 1)
                c->ip_family = AF_INET6;
        else {
                /* A name: mbedtls checks it against the DNS SANs (or CN) and sends it as SNI.
                 * IP literals must not be sent as SNI (RFC 6066 §3), so they skip this. */
                m = mbedtls_ssl_set_hostname(&c->ssl, host);
                if (m != 0)
                        return m == MBEDTLS_ERR_SSL_ALLOC_FAILED ? -ENOMEM : -EINVAL;
        }
        mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);

        *ret = TAKE_PTR(c);
        return 0;
}

/* Whether the certificate has an iPAddress SAN equal to ip. mbedtls 2.28 keeps only DNS and
 * otherName SANs in crt->subject_alt_names, so walk the raw extensions (RFC 5280 §4.2.1.6):
 * Extensions ::= SEQUENCE OF SEQUENCE { extnID OID, critical BOOLEAN OPTIONAL,
 * extnValue OCTET STRING { GeneralNames ::= SEQUENCE OF GeneralName } }, iPAddress is [7]. */
#define SEQUENCE (MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE)

static bool cert_has_ip(const mbedtls_x509_crt *crt, const unsigned char *ip, size_t ip_len) {
        unsigned char *p = crt->v3_ext.p, *end;
        size_t len;

        if (!p || crt->v3_ext.len == 0)
                return false;
        end = p + crt->v3_ext.len;
        if (mbedtls_asn1_get_tag(&p, end, &len, SEQUENCE) != 0)
                return false;
        end = p + len;
        while (p < end) {
                unsigned char *ext_end, *names_end;
                mbedtls_x509_buf oid;
                int crit, m;

                if (mbedtls_asn1_get_tag(&p, end, &len, SEQUENCE) != 0)
                        return false;
                ext_end = p + len;
                if (mbedtls_asn1_get_tag(&p, ext_end, &oid.len, MBEDTLS_ASN1_OID) != 0)
                        return false;
                oid.p = p;
                p += oid.len;
                /* critical is optional: its absence is an unexpected tag, not an error. */
                m = mbedtls_asn1_get_bool(&p, ext_end, &crit);
                if (m != 0 && m != MBEDTLS_ERR_ASN1_UNEXPECTED_TAG)
                        return false;
                if (mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0)
                        return false;
                if (oid.len != MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME) ||
                    memcmp(oid.p, MBEDTLS_OID_SUBJECT_ALT_NAME, oid.len) != 0) {
                        p = ext_end;
                        continue;
                }
                if (mbedtls_asn1_get_tag(&p, p + len, &len, SEQUENCE) != 0)
                        return false;
                names_end = p + len;
                if (names_end > ext_end)
                        return false;
                while (p < names_end) {
                        unsigned char tag = *p++;
                        if (mbedtls_asn1_get_len(&p, names_end, &len) != 0)
                                return false;
                        if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && len == ip_len &&
                            memcmp(p, ip, ip_len) == 0)
                                return true;
                        p += len;
                }
                return false;
        }
        return false;
}

static int handshake_error(TlsConn *c, int m) {
        switch (m) {
        case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
                c->error = "server certificate verification failed";
                return -EPERM;
        case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
                switch (c->ssl.in_msg ? c->ssl.in_msg[1] : 0) {
                case MBEDTLS_SSL_ALERT_MSG_BAD_CERT:
                case MBEDTLS_SSL_ALERT_MSG_UNSUPPORTED_CERT:
                case MBEDTLS_SSL_ALERT_MSG_CERT_REVOKED:
                case MBEDTLS_SSL_ALERT_MSG_CERT_EXPIRED:
                case MBEDTLS_SSL_ALERT_MSG_CERT_UNKNOWN:
                case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_CA:
                case MBEDTLS_SSL_ALERT_MSG_ACCESS_DENIED:
                case MBEDTLS_SSL_ALERT_MSG_NO_CERT:
                        c->error = "server refused our certificate";
                        return -EACCES;
                default:
                        c->error = "fatal alert from server";
                        return -ECONNRESET;
                }
        case MBEDTLS_ERR_SSL_ALLOC_FAILED:
                c->error = "out of memory";
                return -ENOMEM;
        case MBEDTLS_ERR_NET_CONN_RESET:
        case MBEDTLS_ERR_SSL_CONN_EOF:
                /* Go servers send a bad_certificate alert and close at once, while our last
                 * flight is still unread: the kernel answers with a reset that discards the
                 * alert. A server that asked for a certificate and hangs up after seeing ours
                 * (or its absence) refused it. */
                if (c->ssl.client_auth && c->ssl.state > MBEDTLS_SSL_CLIENT_CERTIFICATE) {
                        c->error = "server closed the connection after our certificate";
                        return -EACCES;
                }
                c->error = "connection closed during handshake";
                return -ECONNRESET;
        default:
                c->error = "TLS handshake failed";
                return -ECONNRESET;
        }
}

int fl_tls_conn_handshake(TlsConn *c) {
        int m;

        if (c->handshake_done)
                return 0;
        m = mbedtls_ssl_handshake(&c->ssl);
        if (m == MBEDTLS_ERR_SSL_WANT_READ || m == MBEDTLS_ERR_SSL_WANT_WRITE) {
                c->want = m == MBEDTLS_ERR_SSL_WANT_READ ? EPOLLIN : EPOLLOUT;
                return -EAGAIN;
        }
        if (m != 0) {
                int r = handshake_error(c, m);
                char e[128];
                mbedtls_strerror(m, e, sizeof(e));
                log_debug("tls: handshake failed: %s (%s)", c->error, e);
                return r;
        }
        if (c->ctx->verify && c->ip_family != 0) {
                const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&c->ssl);
                if (!peer || !cert_has_ip(peer, c->ip, c->ip_family == AF_INET ? 4 : 16)) {
                        c->error = "server certificate is not valid for this IP address";
                        log_debug("tls: %s", c->error);
                        return -EPERM;
                }
        }
        c->handshake_done = true;
        return 0;
}

ssize_t fl_tls_conn_read(TlsConn *c, void *buf, size_t n) {
        int m;

        if (!c->handshake_done)
                return -ENOTCONN;
        m = mbedtls_ssl_read(&c->ssl, buf, MIN(n, (size_t) INT32_MAX));
        if (m > 0)
                return m;
        if (m == 0 || m == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || m == MBEDTLS_ERR_SSL_CONN_EOF)
                return 0;
        if (m == MBEDTLS_ERR_SSL_WANT_READ || m == MBEDTLS_ERR_SSL_WANT_WRITE) {
                c->want = m == MBEDTLS_ERR_SSL_WANT_READ ? EPOLLIN : EPOLLOUT;
                return -EAGAIN;
        }
        c->error = m == MBEDTLS_ERR_NET_CONN_RESET ? "connection reset" : "TLS read failed";
        return -ECONNRESET;
}

ssize_t fl_tls_conn_write(TlsConn *c, const void *buf, size_t n) {
        int m;

        if (!c->handshake_done)
                return -ENOTCONN;
        m = mbedtls_ssl_write(&c->ssl, buf, MIN(n, (size_t) INT32_MAX));
        if (m >= 0)
                return m;
        if (m == MBEDTLS_ERR_SSL_WANT_READ || m == MBEDTLS_ERR_SSL_WANT_WRITE) {
                c->want = m == MBEDTLS_ERR_SSL_WANT_READ ? EPOLLIN : EPOLLOUT;
                return -EAGAIN;
        }
        c->error = m == MBEDTLS_ERR_NET_CONN_RESET ? "connection reset" : "TLS write failed";
        return c->sys_errno == EPIPE ? -EPIPE : -ECONNRESET;
}

uint32_t fl_tls_conn_want(const TlsConn *c) {
        return c->want ?: EPOLLIN;
}

const char *fl_tls_conn_error(const TlsConn *c) {
        return c->error;
}
