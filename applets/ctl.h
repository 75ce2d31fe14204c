/* SPDX-License-Identifier: MIT */
/* ctl.h: shared state of the 'ctl' applet (fleetctl): parsed options, the driver, the machine
 * cache, and the helpers every verb family (ctl-*.c) uses. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "api-client.h"
#include "clock.h"
#include "ctl-driver.h"
#include "log.h"
#include "macro.h"

/* Program code may log; "out of memory" is logged the same way everywhere. */
#define log_oom() log_error_errno(ENOMEM, "Out of memory")

#define FL_CTL_DEFAULT_ENDPOINT "unix:///var/run/fleet.sock"
#define FL_CTL_DEFAULT_START_TIMEOUT 30.0

typedef enum CtlOutput {
        CTL_OUTPUT_TABLE,
        CTL_OUTPUT_JSON,
} CtlOutput;

struct Ctl {
        /* Global options (FLEETCTL_* environment, then the command line). Strings are borrowed
         * from argv/environ or static. */
        const char *endpoint;
        const char *driver_name;
        const char *etcd_key_prefix;
        const char *key_file, *cert_file, *ca_file;
        const char *tunnel;
        const char *known_hosts_file;
        const char *ssh_username;
        bool strict_host_key_checking;
        bool experimental_api;
        bool debug;
        double ssh_timeout;
        double request_timeout;

        /* Options of the verbs. */
        bool full, no_legend, no_block, replace, follow, sudo, forward_agent;
        int block_attempts;
        int ssh_port;
        int lines;
        const char *fields;            /* NULL: the verb's default */
        CtlOutput output;
        const char *journal_output;    /* journal --output */
        const char *machine, *unit;    /* ssh --machine / --unit */
        double start_timeout;          /* seconds start waits for systemd to report active */

        /* Runtime. */
        const char *verb;
        CtlDriver *driver;
        ApiMachine *machines;          /* cached list-machines, for legends */
        size_t n_machines;
        bool machines_cached;
        char *local_machine_id;
        bool local_machine_id_read;
};

/* ---- ctl.c ---- */
/* The driver, created on first use ("Unable to initialize client: ..." logged on failure). */
int fl_ctl_driver(Ctl *c, CtlDriver **ret);
/* Machines cached for the whole invocation (fleet's cachedMachineState); errors are swallowed
 * (an empty list). */
const ApiMachine *fl_ctl_machine_cached(Ctl *c, const char *id);
/* /etc/machine-id of this host, NULL if unreadable. */
const char *fl_ctl_local_machine_id(Ctl *c);
/* --known-hosts-file with ~ expanded (owned). */
char *fl_ctl_known_hosts_path(Ctl *c);
/* Sleeps for usec (restarting after signals). */
void fl_ctl_sleep(uint64_t usec);

/* ---- ctl-output.c ---- */
typedef struct CtlTable CtlTable;
int fl_ctl_table_new(size_t n_cols, CtlTable **ret);
CtlTable *fl_ctl_table_free(CtlTable *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(CtlTable *, fl_ctl_table_free);
/* Appends one cell (copied; control characters become spaces so that a value can neither
 * break the table nor reach the terminal as an escape); rows fill left to right. */
int fl_ctl_table_add(CtlTable *t, const char *cell);
/* Go text/tabwriter with minwidth 0, tabwidth 8, padding 1, padchar '\t' (fleetctl's): a column
 * is as wide as the smallest multiple of 8 above its widest cell; cells are padded with tabs;
 * the last column is not padded. Widths count UTF-8 characters. NULL on OOM. */
char *fl_ctl_table_format(const CtlTable *t);
/* The same writer on free text: cells end at tabs, lines at newlines, a column block is a run
 * of lines with a cell in that column (used for help output too). NULL on OOM. */
char *fl_ctl_tabwrite(const char *text);

/* Splits --fields like Go's strings.Split (empty pieces kept) and checks every name against
 * valid (NULL-terminated). -ENODATA for "" ("Must define output format"), -EINVAL with
 * *ret_bad (owned) set to the first unknown name. */
int fl_ctl_fields_parse(const char *spec, const char *const *valid, char ***ret, char **ret_bad);
/* "113f16a7..." (or the full ID) plus "/<ip>" when ip is set. Owned; NULL on OOM. */
char *fl_ctl_machine_legend(const char *id, const char *ip, bool full);
/* "k=v,k2=v2" of pairs sorted by key, "-" when none. Owned. */
char *fl_ctl_format_metadata(char *const *kv, size_t n_pairs);
/* Whether the unit's [X-Fleet] says Global=true. */
bool fl_ctl_unit_is_global(const ApiUnit *u);
/* 40-hex hash of the unit's canonical text into ret ("" on OOM). */
void fl_ctl_unit_hash(const ApiUnit *u, char ret[41]);
/* First [Unit] Description=, NULL if none. */
const char *fl_ctl_unit_description(const ApiUnit *u);
/* Go fmt's %v of a []string: "[a b c]". Owned. */
char *fl_ctl_format_list(char *const *l);
/* Quotes s for a POSIX shell word inside double quotes: "..." with \ " $ ` escaped. For the
 * names fleet validates this is exactly Go's %q, which fleet uses. Owned. */
char *fl_ctl_shell_quote(const char *s);
/* asprintf() that returns the string, NULL on OOM. */
char *fl_ctl_asprintf(const char *fmt, ...) _printf_(1, 2);
/* Writes a whole string to stdout (no added newline). */
int fl_ctl_print(const char *s);
/* --output=json: one compact JSON document and a newline on stdout. */
typedef struct cJSON cJSON;
int fl_ctl_print_json(const cJSON *j);
/* A JSON string, or null for NULL/"" (values fleet prints as "-"). NULL on OOM. */
cJSON *fl_ctl_json_string_or_null(const char *s);

/* ---- Verbs: return an exit status >= 0, or a negative errno already logged. ---- */
int fl_ctl_verb_list_machines(Ctl *c, int argc, char **argv);
int fl_ctl_verb_list_units(Ctl *c, int argc, char **argv);
int fl_ctl_verb_list_unit_files(Ctl *c, int argc, char **argv);
int fl_ctl_verb_submit(Ctl *c, int argc, char **argv);
int fl_ctl_verb_load(Ctl *c, int argc, char **argv);
int fl_ctl_verb_start(Ctl *c, int argc, char **argv);
int fl_ctl_verb_stop(Ctl *c, int argc, char **argv);
int fl_ctl_verb_unload(Ctl *c, int argc, char **argv);
int fl_ctl_verb_destroy(Ctl *c, int argc, char **argv);
int fl_ctl_verb_restart(Ctl *c, int argc, char **argv);
int fl_ctl_verb_cat(Ctl *c, int argc, char **argv);
int fl_ctl_verb_status(Ctl *c, int argc, char **argv);
int fl_ctl_verb_journal(Ctl *c, int argc, char **argv);
int fl_ctl_verb_ssh(Ctl *c, int argc, char **argv);
int fl_ctl_verb_fd_forward(Ctl *c, int argc, char **argv);

/* ---- ctl-ssh.c, for restart of global units ---- */
/* Runs argv on the machine: locally when it is this host, else over SSH. Returns the command's
 * exit status (255 when SSH itself failed), or a negative errno already logged. */
int fl_ctl_run_on_machine(Ctl *c, const char *machine_id, char *const *argv);
enum {
        FL_CTL_SSH_FORWARD_AGENT = 1 << 0, /* -A */
        FL_CTL_SSH_VIA_TUNNEL = 1 << 1,    /* through --tunnel, if set (ProxyCommand) */
};
/* The ssh command line up to and including the destination: ssh OPTIONS [EXTRA...] -- HOST
 * (owned strv); the remote command, if any, is appended by the caller. port 22 or 0 keeps
 * ssh's own default (~/.ssh/config). -EINVAL for a host that is not a plain address. */
int fl_ctl_ssh_argv(Ctl *c, const char *host, int port, unsigned flags, char *const *extra, char ***ret);
/* --tunnel split into host and port ("host[:port]", fleet's default port 22). -EINVAL if bad. */
int fl_ctl_tunnel_target(Ctl *c, char **ret_host, int *ret_port);
