/* SPDX-License-Identifier: MIT */
/* tls.h: mbedtls client connections over non-blocking sockets: CA verification, host name
 * verification (DNS names by mbedtls; IP addresses against the certificate's IP SANs by us,
 * since mbedtls 2.28 only matches DNS names), client certificate and key. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

typedef struct TlsContext TlsContext;
typedef struct TlsConn TlsConn;

/* Loads the material once for many connections. ca_file NULL: the system bundle
 * (/etc/ssl/certs/ca-certificates.crt) when verifying. cert_file and key_file go together.
 * insecure: no certificate or name verification at all (only when explicitly asked for).
 * Returns 0, -ENOENT/-EACCES (file), -EINVAL (not parseable, key does not match), -ENOMEM;
 * *ret_error (optional, owned) then says which file and why. */
int fl_tls_context_new(const char *ca_file, const char *cert_file, const char *key_file, bool insecure,
                       TlsContext **ret, char **ret_error);
TlsContext *fl_tls_context_free(TlsContext *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsContext *, fl_tls_context_free);

/* A client connection on the connected (or connecting) socket fd, which stays owned by the
 * caller and must outlive the TlsConn. host: the name or IP literal the server certificate
 * must be valid for (also sent as SNI when it is a name). The context must outlive it. */
int fl_tls_conn_new(TlsContext *t, int fd, const char *host, TlsConn **ret);
TlsConn *fl_tls_conn_free(TlsConn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(TlsConn *, fl_tls_conn_free);

/* Drives the handshake: 0 when done, -EAGAIN (wait for fl_tls_conn_want()), -EPERM when the
 * server certificate does not verify (CA, validity, name), -EACCES when the server refused our
 * certificate (or its absence), -ECONNRESET for other failures (including a peer that does not
 * speak TLS). */
int fl_tls_conn_handshake(TlsConn *c);
/* > 0 bytes read, 0 when the server closed, -EAGAIN, or -ECONNRESET. */
ssize_t fl_tls_conn_read(TlsConn *c, void *buf, size_t n);
/* > 0 bytes written (maybe fewer than n), -EAGAIN (call again with the same buf and n), or
 * -ECONNRESET/-EPIPE. */
ssize_t fl_tls_conn_write(TlsConn *c, const void *buf, size_t n);
/* After -EAGAIN: EPOLLIN or EPOLLOUT, what the connection waits for. */
uint32_t fl_tls_conn_want(const TlsConn *c);
/* A short description of the last failure (static string, never NULL), for debug logs. */
const char *fl_tls_conn_error(const TlsConn *c);
