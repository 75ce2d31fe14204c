/* SPDX-License-Identifier: MIT */
/* config.h: fleetd configuration (spec §2.2): built-in defaults, then the config file
 * (/etc/fleet/fleet.conf or -config PATH, goini syntax), then FLEET_<KEY> environment
 * variables (a set variable wins even when empty). */
#pragma once

#include <stdint.h>

#include "macro.h"

#define FL_CONFIG_DEFAULT_PATH "/etc/fleet/fleet.conf"

typedef struct FleetConfig {
        char *path;                       /* file actually read, NULL if none */
        int verbosity;
        char **etcd_servers;              /* strv */
        char *etcd_username, *etcd_password;
        char *etcd_keyfile, *etcd_certfile, *etcd_cafile;
        char *etcd_key_prefix;            /* "/_coreos.com/fleet/" */
        uint64_t etcd_request_timeout_usec;     /* 1 s */
        uint64_t engine_reconcile_interval_usec; /* 2 s; lease TTL = 5x */
        char *public_ip;                  /* NULL/"" = detect */
        char **metadata;                  /* k, v, k, v ... in the order given, later dups win */
        uint64_t agent_ttl_usec;          /* 30 s */
        char *units_directory;            /* "/run/fleet/units/" */
        bool systemd_user;
        unsigned token_limit;             /* 100, must fit uint16 */
        bool enable_grpc;                 /* accepted, unsupported: logged */
        bool disable_engine;
        bool disable_watches;
        /* Our additions (documented in README): */
        char **api_listen;                /* extra API listeners "unix:/path", "tcp:ADDR:PORT" */
        char *api_socket_group;           /* group allowed on the unix socket (0660) */
        char *api_tls_certfile, *api_tls_keyfile, *api_tls_cafile;  /* TCP API over TLS */
        bool api_allow_insecure_tcp;      /* plain HTTP on a non-loopback address */
        char **warnings;                  /* messages for the caller to log once (deprecated keys) */
} FleetConfig;

/* Loads defaults, the file (path NULL: the default path if it exists) and the environment.
 * Errors: -ENOENT/-EISDIR for an explicit path that is missing or a directory, -EINVAL for a
 * syntax error or an invalid agent_ttl, with *ret_error naming the file and line. */
int fl_config_load(const char *path, char **envp, FleetConfig **ret, char **ret_error);
FleetConfig *fl_config_free(FleetConfig *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(FleetConfig *, fl_config_free);
/* Go duration ("30s", "1m30s", "500ms") to usec; -EINVAL on garbage. */
int fl_parse_go_duration(const char *s, uint64_t *ret_usec);
