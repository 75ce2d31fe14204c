/* SPDX-License-Identifier: MIT */
/* ctl.c: the 'ctl' applet (fleetctl, spec §1): global options (FLEETCTL_* environment, then
 * the command line, before or after the command), the command table with cobra's prefix
 * matching, help output, and the per-invocation state the commands share (driver, machine
 * cache). Unlike fleet v1.0.0, usage errors exit 2 and -l/-f/-A work as short flags. */
#include <ctype.h>
#include <getopt.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "applets.h"
#include "buf.h"
#include "ctl.h"
#include "log.h"
#include "machine.h"
#include "strv.h"

/* ---- Options ---- */

enum {
        /* global */
        ARG_HELP = 0x100,
        ARG_DEBUG,
        ARG_VERSION,
        ARG_DRIVER,
        ARG_ENDPOINT,
        ARG_ETCD_KEY_PREFIX,
        ARG_KEY_FILE,
        ARG_CERT_FILE,
        ARG_CA_FILE,
        ARG_KNOWN_HOSTS_FILE,
        ARG_STRICT_HOST_KEY_CHECKING,
        ARG_SSH_TIMEOUT,
        ARG_TUNNEL,
        ARG_REQUEST_TIMEOUT,
        ARG_SSH_USERNAME,
        ARG_EXPERIMENTAL_API,
        /* local */
        ARG_FULL,
        ARG_NO_LEGEND,
        ARG_FIELDS,
        ARG_OUTPUT,
        ARG_BLOCK_ATTEMPTS,
        ARG_NO_BLOCK,
        ARG_REPLACE,
        ARG_SIGN,
        ARG_SSH_PORT,
        ARG_LINES,
        ARG_FOLLOW,
        ARG_SUDO,
        ARG_JOURNAL_OUTPUT,
        ARG_MACHINE,
        ARG_UNIT,
        ARG_FORWARD_AGENT,
        ARG_START_TIMEOUT,
};

/* Which local options a command takes. */
enum {
        L_FULL = 1 << 0,           /* --full */
        L_SHORT_L = 1 << 1,        /* -l, --l */
        L_NO_LEGEND = 1 << 2,
        L_FIELDS = 1 << 3,
        L_OUTPUT = 1 << 4,         /* -o, --output json|table */
        L_BLOCK_ATTEMPTS = 1 << 5,
        L_NO_BLOCK = 1 << 6,
        L_REPLACE = 1 << 7,
        L_SIGN = 1 << 8,
        L_SSH_PORT = 1 << 9,
        L_LINES = 1 << 10,
        L_FOLLOW = 1 << 11,        /* --follow, -f, --f */
        L_SUDO = 1 << 12,
        L_JOURNAL_OUTPUT = 1 << 13, /* --output MODE for journalctl */
        L_MACHINE = 1 << 14,
        L_UNIT = 1 << 15,
        L_FORWARD_AGENT = 1 << 16, /* --forward-agent, -A, --A */
        L_START_TIMEOUT = 1 << 17,
};

typedef enum OptType {
        OPT_BOOL,
        OPT_STRING,
        OPT_INT,
        OPT_FLOAT,
} OptType;

typedef struct Opt {
        const char *name;
        char shorthand;
        int id;
        OptType type;
        unsigned local;        /* 0: global; else the L_* bit that enables it */
        const char *def;       /* default for help, NULL: none shown */
        const char *help;
} Opt;

static const Opt opts[] = {
        { "help", 'h', ARG_HELP, OPT_BOOL, 0, NULL, "Print usage information and exit" },
        { "h", 0, ARG_HELP, OPT_BOOL, 0, NULL, "Print usage information and exit" },
        { "debug", 0, ARG_DEBUG, OPT_BOOL, 0, NULL, "Print out more debug information to stderr" },
        { "version", 0, ARG_VERSION, OPT_BOOL, 0, NULL, "Print the version and exit" },
        { "driver", 0, ARG_DRIVER, OPT_STRING, 0, "API",
          "Adapter used to execute fleetctl commands. Options include \"API\" and \"etcd\"." },
        { "endpoint", 0, ARG_ENDPOINT, OPT_STRING, 0, FL_CTL_DEFAULT_ENDPOINT,
          "Location of the fleet API if --driver=API. Alternatively, if --driver=etcd, location of the etcd API." },
        { "etcd-key-prefix", 0, ARG_ETCD_KEY_PREFIX, OPT_STRING, 0, "/_coreos.com/fleet/",
          "Keyspace for fleet data in etcd (development use only!)" },
        { "key-file", 0, ARG_KEY_FILE, OPT_STRING, 0, NULL,
          "Location of TLS key file used to secure communication with the fleet API or etcd" },
        { "cert-file", 0, ARG_CERT_FILE, OPT_STRING, 0, NULL,
          "Location of TLS cert file used to secure communication with the fleet API or etcd" },
        { "ca-file", 0, ARG_CA_FILE, OPT_STRING, 0, NULL,
          "Location of TLS CA file used to secure communication with the fleet API or etcd; when given, the server's certificate is verified against it" },
        { "known-hosts-file", 0, ARG_KNOWN_HOSTS_FILE, OPT_STRING, 0, "~/.fleetctl/known_hosts",
          "File used to store remote machine fingerprints. Ignored if strict host key checking is disabled." },
        { "strict-host-key-checking", 0, ARG_STRICT_HOST_KEY_CHECKING, OPT_BOOL, 0, "true",
          "Verify host keys presented by remote machines before initiating SSH connections." },
        { "ssh-timeout", 0, ARG_SSH_TIMEOUT, OPT_FLOAT, 0, "10",
          "Amount of time in seconds to allow for SSH connection initialization before failing." },
        { "tunnel", 0, ARG_TUNNEL, OPT_STRING, 0, NULL,
          "Establish an SSH tunnel through the provided address for communication with fleet and etcd." },
        { "request-timeout", 0, ARG_REQUEST_TIMEOUT, OPT_FLOAT, 0, "3",
          "Amount of time in seconds to allow a single request before considering it failed." },
        { "ssh-username", 0, ARG_SSH_USERNAME, OPT_STRING, 0, "core",
          "Username to use when connecting to CoreOS instance." },
        { "experimental-api", 0, ARG_EXPERIMENTAL_API, OPT_BOOL, 0, NULL, NULL },
        { "etcd-keyfile", 0, ARG_KEY_FILE, OPT_STRING, 0, NULL, NULL },
        { "etcd-certfile", 0, ARG_CERT_FILE, OPT_STRING, 0, NULL, NULL },
        { "etcd-cafile", 0, ARG_CA_FILE, OPT_STRING, 0, NULL, NULL },

        { "full", 0, ARG_FULL, OPT_BOOL, L_FULL, NULL, "Do not ellipsize fields on output" },
        { "l", 'l', ARG_FULL, OPT_BOOL, L_SHORT_L, NULL, "Shorthand for --full" },
        { "no-legend", 0, ARG_NO_LEGEND, OPT_BOOL, L_NO_LEGEND, NULL, "Do not print a legend (column headers)" },
        { "fields", 0, ARG_FIELDS, OPT_STRING, L_FIELDS, NULL, "Columns to print" },
        { "output", 'o', ARG_OUTPUT, OPT_STRING, L_OUTPUT, "table",
          "Output format: \"table\" or \"json\" (machine-readable, all fields, full values)" },
        { "block-attempts", 0, ARG_BLOCK_ATTEMPTS, OPT_INT, L_BLOCK_ATTEMPTS, NULL,
          "Wait until the units reach their state, performing up to N attempts before giving up. A value of 0 indicates no limit. Does not apply to global units." },
        { "no-block", 0, ARG_NO_BLOCK, OPT_BOOL, L_NO_BLOCK, NULL,
          "Do not wait until the units reach their state before exiting. Always the case for global units." },
        { "replace", 0, ARG_REPLACE, OPT_BOOL, L_REPLACE, NULL,
          "Replace the units in the cluster with new versions." },
        { "sign", 0, ARG_SIGN, OPT_BOOL, L_SIGN, NULL, "DEPRECATED - this option cannot be used" },
        { "ssh-port", 0, ARG_SSH_PORT, OPT_INT, L_SSH_PORT, "22",
          "Connect to remote hosts over SSH using this TCP port." },
        { "lines", 'n', ARG_LINES, OPT_INT, L_LINES, "10", "Number of recent log lines to return" },
        { "follow", 'f', ARG_FOLLOW, OPT_BOOL, L_FOLLOW, NULL,
          "Continuously print new entries as they are appended to the journal." },
        { "f", 0, ARG_FOLLOW, OPT_BOOL, L_FOLLOW, NULL, "Shorthand for --follow" },
        { "sudo", 0, ARG_SUDO, OPT_BOOL, L_SUDO, NULL, "Execute journal command with sudo" },
        { "output", 'o', ARG_JOURNAL_OUTPUT, OPT_STRING, L_JOURNAL_OUTPUT, "short",
          "Output mode. This will be passed unaltered to journalctl on the remote host, and hence supports the same modes as that command." },
        { "machine", 0, ARG_MACHINE, OPT_STRING, L_MACHINE, NULL, "Open SSH connection to a specific machine." },
        { "unit", 0, ARG_UNIT, OPT_STRING, L_UNIT, NULL, "Open SSH connection to machine running provided unit." },
        { "forward-agent", 'A', ARG_FORWARD_AGENT, OPT_BOOL, L_FORWARD_AGENT, NULL,
          "Forward local ssh-agent to target machine." },
        { "A", 0, ARG_FORWARD_AGENT, OPT_BOOL, L_FORWARD_AGENT, NULL, "Shorthand for --forward-agent" },
        { "start-timeout", 0, ARG_START_TIMEOUT, OPT_FLOAT, L_START_TIMEOUT, "30",
          "Seconds to wait for systemd to report a started unit active (0: forever, unless --block-attempts limits the wait)." },
};

/* ---- Commands ---- */

typedef int (*VerbFn)(Ctl *c, int argc, char **argv);

enum {
        VERB_NO_DRIVER = 1 << 0,   /* runs without talking to the cluster */
        VERB_STOP_AT_ARG = 1 << 1, /* options end at the first argument (ssh's remote command) */
        VERB_HIDDEN = 1 << 2,      /* not listed in help (deprecated) */
};

typedef struct Verb {
        const char *name;
        int min_args, max_args;    /* max -1: any */
        unsigned flags;
        unsigned local;            /* L_* options */
        VerbFn fn;
        const char *usage;
        const char *summary;
        const char *description;
        const char *fields;        /* --fields: "<default>|<what>|<valid fields>" for help */
} Verb;

static int verb_version(Ctl *c, int argc, char **argv);
static int verb_help(Ctl *c, int argc, char **argv);
static int verb_verify(Ctl *c, int argc, char **argv);

#define L_LIST (L_FULL | L_NO_LEGEND | L_FIELDS | L_OUTPUT)
#define L_CREATE (L_BLOCK_ATTEMPTS | L_NO_BLOCK | L_REPLACE | L_SIGN)

/* Sorted by name: help lists them in this order, prefix matching scans them. */
static const Verb verbs[] = {
        { "cat", 0, -1, 0, 0, fl_ctl_verb_cat, "cat UNIT", "Output the contents of a submitted unit",
          "Outputs the unit file that is currently loaded in the cluster. Useful to verify\n"
          "the correct version of a unit is running." },
        { "destroy", 0, -1, 0, L_BLOCK_ATTEMPTS | L_NO_BLOCK, fl_ctl_verb_destroy, "destroy UNIT...",
          "Destroy one or more units in the cluster",
          "Completely remove one or more running or submitted units from the cluster.\n\n"
          "Instructs systemd on the host machine to destroy the unit, deferring to systemd\n"
          "completely for any custom stop directives (i.e. ExecStop option in the unit\n"
          "file).\n\n"
          "Destroyed units are impossible to start unless re-submitted." },
        { "fd-forward", 0, -1, VERB_NO_DRIVER, 0, fl_ctl_verb_fd_forward, "fd-forward SOCKET",
          "Proxy stdin and stdout to a unix domain socket",
          "fleetctl utilizes fd-forward when --tunnel is used and --endpoint is a unix socket. "
          "This command is not intended to be called by users directly." },
        { "help", 0, -1, VERB_NO_DRIVER, 0, verb_help, "help [command]", "Help about any command",
          "Help provides help for any command in the application.\n"
          "Simply type fleetctl help [path to command] for full details." },
        { "journal", 0, -1, 0, L_LINES | L_FOLLOW | L_SSH_PORT | L_SUDO | L_JOURNAL_OUTPUT,
          fl_ctl_verb_journal, "journal [--lines=N] [--ssh-port=N] [-f|--follow] [--output=STRING] <unit>",
          "Print the journal of a unit in the cluster to stdout",
          "Outputs the journal of a unit by connecting to the machine that the unit occupies.\n\n"
          "Read the last 10 lines:\n"
          "fleetctl journal foo.service\n\n"
          "Read the last 100 lines:\n"
          "fleetctl journal --lines 100 foo.service\n\n"
          "For a global unit, the journal of every machine running it is shown, each\n"
          "labelled with its machine (--follow is not supported there)." },
        { "list-machines", 0, 0, 0, L_LIST | L_SHORT_L, fl_ctl_verb_list_machines,
          "list-machines [-l|--full] [--no-legend]", "Enumerate the current hosts in the cluster",
          "Lists all active machines within the cluster. Previously active machines will not appear in this list.\n\n"
          "For easily parsable output, you can remove the column headers:\n"
          "fleetctl list-machines --no-legend\n\n"
          "Output the list without truncation:\n"
          "fleetctl list-machines --full\n",
          "machine,ip,metadata|Machine|ip,machine,metadata" },
        { "list-unit-files", 0, 0, 0, L_LIST, fl_ctl_verb_list_unit_files, "list-unit-files [--fields]",
          "List the units that exist in the cluster.",
          "Lists all unit files that exist in the cluster (whether or not they are loaded onto a machine).\n",
          "unit,hash,dstate,state,target|Unit file|desc,dstate,global,hash,state,target,tmachine,unit" },
        { "list-units", 0, 0, 0, L_LIST | L_SHORT_L, fl_ctl_verb_list_units,
          "list-units [--no-legend] [-l|--full] [--fields]", "List the current state of units in the cluster",
          "Lists the state of all units in the cluster loaded onto a machine.\n\n"
          "For easily parsable output, you can remove the column headers:\n"
          "fleetctl list-units --no-legend\n\n"
          "Output the list without ellipses:\n"
          "fleetctl list-units --full\n\n"
          "Or, choose the columns to display:\n"
          "fleetctl list-units --fields=unit,machine\n",
          "unit,machine,active,sub|Unit|active,hash,load,machine,sub,unit" },
        { "load", 0, -1, 0, L_CREATE, fl_ctl_verb_load, "load [--no-block|--block-attempts=N] UNIT...",
          "Schedule one or more units in the cluster, first submitting them if necessary.",
          "Load one or many units in the cluster into systemd, but do not start.\n\n"
          "Select units to load by glob matching for units in the current working directory\n"
          "or matching the names of previously submitted units.\n\n"
          "For units which are not global, load operations are performed synchronously,\n"
          "which means fleetctl will block until it detects that the unit(s) have\n"
          "transitioned to a loaded state. This behaviour can be configured with the\n"
          "respective --block-attempts and --no-block options. Load operations on global\n"
          "units are always non-blocking." },
        { "restart", 0, -1, 0, L_BLOCK_ATTEMPTS | L_SSH_PORT, fl_ctl_verb_restart,
          "restart [--block-attempts=N] UNIT...",
          "Instruct systemd to rolling restart one or more units in the cluster.",
          "Restarts one or more units in the cluster. If they are stopped it starts them.\n\n"
          "A unit that is not global is stopped (waiting until it is loaded) and started\n"
          "again (waiting until it is launched). A global unit is restarted with\n"
          "\"systemctl restart\" on every machine running it.\n\n"
          "Restart a single unit:\n"
          "\tfleetctl restart foo.service" },
        { "ssh", 0, -1, VERB_STOP_AT_ARG, L_MACHINE | L_UNIT | L_FORWARD_AGENT | L_SSH_PORT, fl_ctl_verb_ssh,
          "ssh [-A|--forward-agent] [--ssh-port=N] [--machine|--unit] {MACHINE|UNIT}",
          "Open interactive shell on a machine in the cluster",
          "Open an interactive shell on a specific machine in the cluster or on the machine\n"
          "where the specified unit is located.\n\n"
          "fleetctl tries to detect whether your first argument is a machine or a unit.\n"
          "To skip this check use the --machine or --unit flags.\n\n"
          "Open a shell on a machine:\n"
          "fleetctl ssh 2444264c-eac2-4eff-a490-32d5e5e4af24\n\n"
          "Run a command on the machine running a unit:\n"
          "fleetctl ssh foo.service -- uptime\n\n"
          "The system's OpenSSH client is used, so ~/.ssh/config, the agent and keys apply.\n"
          "This command does not work with global units." },
        { "start", 0, -1, 0, L_CREATE | L_START_TIMEOUT, fl_ctl_verb_start,
          "start [--no-block|--block-attempts=N] UNIT...",
          "Instruct systemd to start one or more units in the cluster, first submitting and loading if necessary.",
          "Start one or many units on the cluster. Select units to start by glob matching\n"
          "for units in the current working directory or matching names of previously\n"
          "submitted units.\n\n"
          "For units which are not global, start operations are performed synchronously,\n"
          "which means fleetctl will block until it detects that the unit(s) have\n"
          "transitioned to a started state, and then until systemd reports them active\n"
          "(--start-timeout). This behaviour can be configured with the respective\n"
          "--block-attempts and --no-block options. Start operations on global units are\n"
          "always non-blocking. A unit the cluster cannot place is reported with the reason.\n\n"
          "Start a single unit:\n"
          "fleetctl start foo.service\n\n"
          "Start an entire directory of units with glob matching:\n"
          "fleetctl start myservice/*\n\n"
          "You may filter suitable hosts based on metadata provided by the machine.\n"
          "Machine metadata is located in the fleet configuration file." },
        { "status", 0, -1, 0, L_SSH_PORT | L_OUTPUT, fl_ctl_verb_status, "status [--ssh-port=N] UNIT...",
          "Output the status of one or more units in the cluster",
          "Output the status of one or more units currently running in the cluster.\n"
          "Supports glob matching of units in the current working directory or matches\n"
          "previously started units.\n\n"
          "Show status of a single unit:\n"
          "\tfleetctl status foo.service\n\n"
          "For a global unit, the status on every machine running it is shown, each\n"
          "labelled with its machine. --output=json prints the cluster's view of the\n"
          "units instead of running systemctl." },
        { "stop", 0, -1, 0, L_BLOCK_ATTEMPTS | L_NO_BLOCK, fl_ctl_verb_stop,
          "stop [--no-block|--block-attempts=N] UNIT...", "Instruct systemd to stop one or more units in the cluster.",
          "Stop one or more units from running in the cluster, but allow them to be\n"
          "started again in the future.\n\n"
          "Instructs systemd on the host machine to stop the unit, deferring to systemd\n"
          "completely for any custom stop directives (i.e. ExecStop option in the unit\n"
          "file).\n\n"
          "For units which are not global, stop operations are performed synchronously,\n"
          "which means fleetctl will block until it detects that the unit(s) have\n"
          "transitioned to a stopped state. This behaviour can be configured with the\n"
          "respective --block-attempts and --no-block options. Stop operations on global\n"
          "units are always non-blocking.\n\n"
          "Stop a single unit:\n"
          "fleetctl stop foo.service\n\n"
          "Stop an entire directory of units with glob matching, without waiting:\n"
          "fleetctl --no-block stop myservice/*" },
        { "submit", 0, -1, 0, L_REPLACE | L_SIGN, fl_ctl_verb_submit, "submit UNIT...",
          "Upload one or more units to the cluster without starting them",
          "Upload one or more units to the cluster without starting them. Useful\n"
          "for validating units before they are started.\n\n"
          "This operation is idempotent; if a named unit already exists in the cluster, it will not be resubmitted.\n\n"
          "Submit a single unit:\n"
          "fleetctl submit foo.service\n\n"
          "Submit a directory of units with glob matching:\n"
          "fleetctl submit myservice/*" },
        { "unload", 0, -1, 0, L_BLOCK_ATTEMPTS | L_NO_BLOCK, fl_ctl_verb_unload, "unload UNIT...",
          "Unschedule one or more units in the cluster.", NULL },
        { "verify", 0, -1, VERB_NO_DRIVER | VERB_HIDDEN, 0, verb_verify, "verify UNIT", "DEPRECATED - No longer works",
          NULL },
        { "version", 0, -1, VERB_NO_DRIVER, 0, verb_version, "version", "Print the version and exit",
          "Print the version and exit" },
};

static const Verb *verb_find(const char *name, bool *ret_ambiguous) {
        const Verb *match = NULL;
        size_t n = 0;

        *ret_ambiguous = false;
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        return &verbs[i];
        /* cobra.EnablePrefixMatching: a unique prefix selects the command. */
        if (isempty(name))
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (startswith(verbs[i].name, name) && !(verbs[i].flags & VERB_HIDDEN)) {
                        match = &verbs[i];
                        n++;
                }
        if (n > 1) {
                *ret_ambiguous = true;
                return NULL;
        }
        return match;
}

/* ---- Help ---- */

static const char *opt_type_name(const Opt *o) {
        switch (o->type) {
        case OPT_STRING:
                return "string";
        case OPT_INT:
                return "int";
        case OPT_FLOAT:
                return "float";
        default:
                return NULL;
        }
}

static bool opt_applies(const Opt *o, unsigned local, bool globals) {
        if (o->local == 0)
                return globals;
        if (!(o->local & local))
                return false;
        /* --output means two things: journalctl's mode for journal, json|table elsewhere. */
        if (o->id == ARG_OUTPUT && (local & L_JOURNAL_OUTPUT))
                return false;
        return true;
}

/* pflag's FlagUsages: "  -x, --name type" padded to a common column, then the usage. */
static int format_flag_usages(Buf *b, const Verb *v, unsigned local, bool globals) {
        size_t maxlen = 0;
        int r;

        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                        const Opt *o = &opts[i];
                        char line[128];
                        const char *t = opt_type_name(o);
                        size_t len;

                        if (!o->help || !opt_applies(o, local, globals))
                                continue;
                        if (o->shorthand)
                                len = snprintf(line, sizeof(line), "  -%c, --%s%s%s", o->shorthand, o->name,
                                               t ? " " : "", strempty(t));
                        else
                                len = snprintf(line, sizeof(line), "      --%s%s%s", o->name, t ? " " : "",
                                               strempty(t));
                        if (pass == 0) {
                                maxlen = MAX(maxlen, len);
                                continue;
                        }
                        if (o->id == ARG_FIELDS && v && v->fields) {
                                /* fleet's: Columns to print for each Unit. Valid fields are "..." */
                                const char *a = strchr(v->fields, '|'), *w = a + 1, *z = strchr(w, '|');
                                r = fl_buf_printf(b, "%s%*s   Columns to print for each %.*s. Valid fields are \"%s\" (default \"%.*s\")\n",
                                                  line, (int) (maxlen - len), "", (int) (z - w), w, z + 1,
                                                  (int) (a - v->fields), v->fields);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        r = fl_buf_printf(b, "%s%*s   %s", line, (int) (maxlen - len), "", o->help);
                        if (r >= 0 && o->def && o->type == OPT_STRING)
                                r = fl_buf_printf(b, " (default \"%s\")", o->def);
                        else if (r >= 0 && o->def)
                                r = fl_buf_printf(b, " (default %s)", o->def);
                        if (r >= 0)
                                r = fl_buf_putc(b, '\n');
                        if (r < 0)
                                return r;
                }
        return 0;
}

static int print_help(const Verb *v) {
        _cleanup_free_ char *out = NULL;
        Buf b = BUF_INIT;
        int r;

        if (!v) {
                r = fl_buf_printf(&b, "NAME:\n\tfleetctl - fleetctl is a command-line interface to fleet, the "
                                      "cluster-wide CoreOS init system.\n\n"
                                      "USAGE:\n\tfleetctl [flags]\n\n"
                                      "VERSION:\n\t%s\n\nCOMMANDS:\n",
                                  FLEET_VERSION);
                for (size_t i = 0; r >= 0 && i < ELEMENTSOF(verbs); i++)
                        if (!(verbs[i].flags & VERB_HIDDEN))
                                r = fl_buf_printf(&b, "\t%s\t%s\n", verbs[i].name, verbs[i].summary);
                if (r >= 0)
                        r = fl_buf_puts(&b, "\nOPTIONS:\n");
                if (r >= 0)
                        r = format_flag_usages(&b, NULL, 0, true);
                if (r >= 0)
                        r = fl_buf_puts(&b, "\nRun 'fleetctl help COMMAND' for a command's options.\n");
        } else {
                r = fl_buf_printf(&b, "NAME:\n\tfleetctl %s - %s\n\nUSAGE:\n\tfleetctl %s\n", v->name, v->summary,
                                  v->usage);
                if (r >= 0 && v->description) {
                        r = fl_buf_puts(&b, "\nDESCRIPTION:\n");
                        for (const char *p = v->description; r >= 0 && *p;) {
                                size_t n = strcspn(p, "\n");

                                r = fl_buf_putc(&b, '\t');
                                if (r >= 0)
                                        r = fl_buf_append(&b, p, n);
                                if (r >= 0)
                                        r = fl_buf_putc(&b, '\n');
                                p += n + (p[n] == '\n');
                        }
                }
                if (r >= 0 && v->local) {
                        r = fl_buf_puts(&b, "\nOPTIONS:\n");
                        if (r >= 0)
                                r = format_flag_usages(&b, v, v->local, false);
                }
                if (r >= 0)
                        r = fl_buf_puts(&b, "\nGLOBAL OPTIONS:\n");
                if (r >= 0)
                        r = format_flag_usages(&b, NULL, 0, true);
        }
        if (r < 0) {
                fl_buf_done(&b);
                return log_oom();
        }
        out = fl_ctl_tabwrite(fl_buf_str(&b));
        fl_buf_done(&b);
        if (!out)
                return log_oom();
        return fl_ctl_print(out);
}

static int verb_help(Ctl *c, int argc, char **argv) {
        const Verb *v;
        bool ambiguous;

        if (argc < 2)
                return print_help(NULL);
        v = verb_find(argv[1], &ambiguous);
        if (!v) {
                log_error("Error: unknown command \"%s\" for \"fleetctl help\"", argv[1]);
                log_error("Run 'fleetctl --help' for usage.");
                return 2;
        }
        return print_help(v);
}

static int verb_version(Ctl *c, int argc, char **argv) {
        printf("fleetctl version %s\n", FLEET_VERSION);
        return 0;
}

static int verb_verify(Ctl *c, int argc, char **argv) {
        printf("Command \"verify\" is deprecated, DEPRECATED - No longer works\n");
        log_error("WARNING: The signed/verified units feature is DEPRECATED and cannot be used.");
        return 2;
}

/* ---- Parsing ---- */

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *ret) {
        static const char *const t[] = { "1", "t", "T", "TRUE", "true", "True" };
        static const char *const f[] = { "0", "f", "F", "FALSE", "false", "False" };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                if (streq(s, t[i])) {
                        *ret = true;
                        return 0;
                }
                if (streq(s, f[i])) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_int(const char *s, int *ret) {
        char *e;
        long v;

        errno = 0;
        v = strtol(s, &e, 10);
        if (errno != 0 || e == s || *e || v < INT32_MIN || v > INT32_MAX)
                return -EINVAL;
        *ret = (int) v;
        return 0;
}

static int parse_float(const char *s, double *ret) {
        char *e;
        double v;

        errno = 0;
        v = strtod(s, &e);
        if (errno != 0 || e == s || *e || v != v || v < 0 || v > 1e9)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Applies one option value. value NULL: a bool given without "=value". Returns 0, or -EINVAL
 * for a value of the wrong type. */
static int opt_set(Ctl *c, const Opt *o, const char *value) {
        bool b = true;
        int r = 0;

        if (o->type == OPT_BOOL && value) {
                r = parse_bool(value, &b);
                if (r < 0)
                        return r;
        }
        switch (o->id) {
        case ARG_HELP:
                /* handled by the caller */
                break;
        case ARG_DEBUG:
                c->debug = b;
                break;
        case ARG_VERSION:
                /* Only honoured as the first argument, like fleetctl. */
                break;
        case ARG_DRIVER:
                c->driver_name = value;
                break;
        case ARG_ENDPOINT:
                c->endpoint = value;
                break;
        case ARG_ETCD_KEY_PREFIX:
                c->etcd_key_prefix = value;
                break;
        case ARG_KEY_FILE:
                c->key_file = value;
                break;
        case ARG_CERT_FILE:
                c->cert_file = value;
                break;
        case ARG_CA_FILE:
                c->ca_file = value;
                break;
        case ARG_KNOWN_HOSTS_FILE:
                c->known_hosts_file = value;
                break;
        case ARG_STRICT_HOST_KEY_CHECKING:
                c->strict_host_key_checking = b;
                break;
        case ARG_SSH_TIMEOUT:
                r = parse_float(value, &c->ssh_timeout);
                break;
        case ARG_TUNNEL:
                c->tunnel = value;
                break;
        case ARG_REQUEST_TIMEOUT:
                r = parse_float(value, &c->request_timeout);
                break;
        case ARG_SSH_USERNAME:
                c->ssh_username = value;
                break;
        case ARG_EXPERIMENTAL_API:
                c->experimental_api = b;
                break;
        case ARG_FULL:
                c->full = b;
                break;
        case ARG_NO_LEGEND:
                c->no_legend = b;
                break;
        case ARG_FIELDS:
                c->fields = value;
                break;
        case ARG_OUTPUT:
                if (streq(value, "json"))
                        c->output = CTL_OUTPUT_JSON;
                else if (streq(value, "table"))
                        c->output = CTL_OUTPUT_TABLE;
                else
                        r = -EINVAL;
                break;
        case ARG_BLOCK_ATTEMPTS:
                r = parse_int(value, &c->block_attempts);
                break;
        case ARG_NO_BLOCK:
                c->no_block = b;
                break;
        case ARG_REPLACE:
                c->replace = b;
                break;
        case ARG_SIGN:
                if (b) {
                        log_error("WARNING: The signed/verified units feature is DEPRECATED and cannot be used.");
                        return -ECANCELED;
                }
                break;
        case ARG_SSH_PORT:
                r = parse_int(value, &c->ssh_port);
                if (r >= 0 && (c->ssh_port < 1 || c->ssh_port > 65535))
                        r = -EINVAL;
                break;
        case ARG_LINES:
                r = parse_int(value, &c->lines);
                break;
        case ARG_FOLLOW:
                c->follow = b;
                break;
        case ARG_SUDO:
                c->sudo = b;
                break;
        case ARG_JOURNAL_OUTPUT:
                c->journal_output = value;
                break;
        case ARG_MACHINE:
                c->machine = value;
                break;
        case ARG_UNIT:
                c->unit = value;
                break;
        case ARG_FORWARD_AGENT:
                c->forward_agent = b;
                break;
        case ARG_START_TIMEOUT:
                r = parse_float(value, &c->start_timeout);
                break;
        }
        return r;
}

/* FLEETCTL_<FLAG> for every global flag (fleet's getFlagsFromEnv); empty values are ignored,
 * the command line wins because it is parsed afterwards. */
static void apply_env(Ctl *c) {
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                const Opt *o = &opts[i];
                char key[64];
                const char *v;
                size_t k;

                if (o->local || o->id == ARG_HELP || o->id == ARG_VERSION)
                        continue;
                k = (size_t) snprintf(key, sizeof(key), "FLEETCTL_%s", o->name);
                for (size_t j = 0; j < k; j++)
                        key[j] = key[j] == '-' ? '_' : (char) toupper((unsigned char) key[j]);
                v = getenv(key);
                if (isempty(v))
                        continue;
                if (opt_set(c, o, v) < 0)
                        log_warning("Ignoring invalid value '%s' of %s", v, key);
        }
}

static const Opt *opt_by_long(const char *name, size_t len, unsigned local, bool any_local) {
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                const Opt *o = &opts[i];
                if (strlen(o->name) != len || strncmp(o->name, name, len) != 0)
                        continue;
                if (any_local ? true : opt_applies(o, local, true))
                        return o;
        }
        return NULL;
}

static const Opt *opt_by_short(char ch, unsigned local, bool any_local) {
        for (size_t i = 0; i < ELEMENTSOF(opts); i++) {
                const Opt *o = &opts[i];
                if (o->shorthand == ch && (any_local || opt_applies(o, local, true)))
                        return o;
        }
        /* -l is the one-letter option "l". */
        if (ch == 'l')
                return opt_by_long("l", 1, local, any_local);
        return NULL;
}

/* The command is the first argument that is neither an option nor an option's value. Local
 * options may come before it (cobra strips flags to find the command), so any option that
 * takes a value is skipped with it. Returns its index or 0. */
static int find_verb(int argc, char **argv) {
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];

                if (streq(a, "--"))
                        return i + 1 < argc ? i + 1 : 0;
                if (startswith(a, "--")) {
                        const char *eq = strchr(a + 2, '=');
                        const Opt *o = opt_by_long(a + 2, eq ? (size_t) (eq - a - 2) : strlen(a + 2), 0, true);
                        if (o && o->type != OPT_BOOL && !eq)
                                i++;
                        continue;
                }
                if (a[0] == '-' && a[1]) {
                        for (const char *p = a + 1; *p; p++) {
                                const Opt *o = opt_by_short(*p, 0, true);
                                if (o && o->type != OPT_BOOL) {
                                        if (!p[1])
                                                i++;
                                        break;
                                }
                        }
                        continue;
                }
                return i;
        }
        return 0;
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("Error: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nRun 'fleetctl --help' for usage.\n", stderr);
        return 2;
}

/* Parses argv (all of it: options may follow the command). Returns <0 on error (logged), 0 to
 * exit with *ret_exit, >0 to run *ret_verb with the positional arguments in *ret_args. */
static int parse_argv(Ctl *c, int argc, char **argv, const Verb **ret_verb, char ***ret_args, int *ret_exit) {
        _cleanup_strv_free_ char **args = NULL;
        _cleanup_free_ struct option *longopts = NULL;
        const Verb *v = NULL;
        _cleanup_(fl_buf_done) Buf shortopts = BUF_INIT;
        size_t n = 0;
        bool help = false, stop = false;
        int verb_idx, r;

        verb_idx = find_verb(argc, argv);
        if (verb_idx > 0) {
                bool ambiguous;

                v = verb_find(argv[verb_idx], &ambiguous);
                if (!v) {
                        *ret_exit = usage_error("unknown command \"%s\" for \"fleetctl\"%s", argv[verb_idx],
                                                ambiguous ? " (ambiguous prefix)" : "");
                        return 0;
                }
        }

        longopts = new0(struct option, ELEMENTSOF(opts) + 1);
        if (!longopts)
                return log_oom();
        /* "+": stop at the first argument, so we see every positional in order ourselves;
         * ":" distinguishes a missing value from an unknown option. */
        r = fl_buf_puts(&shortopts, "+:");
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(opts); i++) {
                const Opt *o = &opts[i];

                if (!opt_applies(o, v ? v->local : 0, true))
                        continue;
                longopts[n++] = (struct option) {
                        .name = o->name,
                        .has_arg = o->type == OPT_BOOL ? optional_argument : required_argument,
                        .val = (int) i,
                };
                if (o->shorthand)
                        r = fl_buf_printf(&shortopts, "%c%s", o->shorthand, o->type == OPT_BOOL ? "" : ":");
        }
        if (r < 0)
                return log_oom();

        opterr = 0;
        optind = 0; /* full re-initialisation of glibc's getopt */
        for (int pos = 1;;) {
                int ch, longindex = -1;
                const Opt *o;

                optind = pos;
                if (pos >= argc)
                        break;
                if (stop || streq(argv[pos], "--") || argv[pos][0] != '-' || !argv[pos][1]) {
                        if (!stop && streq(argv[pos], "--")) {
                                /* Everything after "--" is an argument (ssh keeps the "--"
                                 * itself out of the remote command). */
                                stop = true;
                                pos++;
                                continue;
                        }
                        if (pos != verb_idx) {
                                r = fl_strv_extend(&args, argv[pos]);
                                if (r < 0)
                                        return log_oom();
                                if (v && (v->flags & VERB_STOP_AT_ARG))
                                        stop = true;
                        }
                        pos++;
                        continue;
                }

                ch = getopt_long(argc, argv, fl_buf_str(&shortopts), longopts, &longindex);
                if (ch == -1) {
                        pos = optind > pos ? optind : pos + 1;
                        continue;
                }
                if (ch == '?' || ch == ':') {
                        const char *a = argv[optind - 1 < pos ? pos : optind - 1];
                        if (ch == ':')
                                *ret_exit = usage_error("flag needs an argument: %s", a);
                        else if (startswith(a, "--"))
                                *ret_exit = usage_error("unknown flag: %s", a);
                        else
                                *ret_exit = usage_error("unknown shorthand flag: '%c' in %s", optopt, a);
                        return 0;
                }
                if (longindex >= 0)
                        o = &opts[longopts[longindex].val];
                else {
                        o = opt_by_short((char) ch, v ? v->local : 0, false);
                        if (!o) {
                                *ret_exit = usage_error("unknown shorthand flag: '%c'", ch);
                                return 0;
                        }
                }
                if (o->id == ARG_HELP) {
                        bool b = true;
                        if (optarg && parse_bool(optarg, &b) < 0) {
                                *ret_exit = usage_error("invalid argument \"%s\" for \"--%s\" flag", optarg, o->name);
                                return 0;
                        }
                        help = help || b;
                } else {
                        r = opt_set(c, o, optarg);
                        if (r == -ECANCELED) {
                                *ret_exit = 2;
                                return 0;
                        }
                        if (r < 0) {
                                *ret_exit = usage_error("invalid argument \"%s\" for \"--%s\" flag", strempty(optarg),
                                                        o->name);
                                return 0;
                        }
                }
                pos = optind;
        }

        if (help || !v) {
                r = print_help(v);
                *ret_exit = r < 0 ? 1 : 0;
                return 0;
        }
        if (fl_strv_length(args) < (size_t) v->min_args ||
            (v->max_args >= 0 && fl_strv_length(args) > (size_t) v->max_args)) {
                *ret_exit = usage_error("wrong number of arguments for \"%s\"", v->name);
                return 0;
        }
        *ret_verb = v;
        *ret_args = TAKE_PTR(args);
        return 1;
}

/* ---- Shared state ---- */

int fl_ctl_driver_fail_take(CtlDriver *d, int err, char *msg) {
        free(d->error);
        d->error = msg;
        return -abs(err);
}

int fl_ctl_driver_fail(CtlDriver *d, int err, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        return fl_ctl_driver_fail_take(d, err, m);
}

CtlDriver *fl_ctl_driver_free(CtlDriver *d) {
        if (!d)
                return NULL;
        if (d->ops && d->ops->free)
                d->ops->free(d);
        free(d->error);
        return mfree(d);
}

int fl_ctl_driver(Ctl *c, CtlDriver **ret) {
        _cleanup_free_ char *error = NULL;
        int r;

        if (!c->driver) {
                if (strcasecmp(c->driver_name, "api") == 0)
                        r = fl_ctl_driver_api_new(c, &c->driver, &error);
                else if (strcasecmp(c->driver_name, "etcd") == 0)
                        r = fl_ctl_driver_etcd_new(c, &c->driver, &error);
                else
                        r = -EINVAL, error = fl_ctl_asprintf("unrecognized driver \"%s\"", c->driver_name);
                if (r < 0)
                        return log_error_errno(r, "Unable to initialize client: %s", error ?: strerror(-r));
        }
        *ret = c->driver;
        return 0;
}

const ApiMachine *fl_ctl_machine_cached(Ctl *c, const char *id) {
        if (isempty(id))
                return NULL;
        if (!c->machines_cached) {
                CtlDriver *d;

                c->machines_cached = true;
                if (fl_ctl_driver(c, &d) < 0)
                        return NULL;
                /* The etcd driver has them from its last read already: no second request. */
                if ((!d->ops->peek_machines || d->ops->peek_machines(d, &c->machines, &c->n_machines) < 0) &&
                    d->ops->list_machines(d, &c->machines, &c->n_machines) < 0) {
                        c->machines = NULL;
                        c->n_machines = 0;
                        log_debug("Failed to list machines for the legend: %s", strempty(d->error));
                }
        }
        for (size_t i = 0; i < c->n_machines; i++)
                if (streq(c->machines[i].id, id))
                        return &c->machines[i];
        return NULL;
}

const char *fl_ctl_local_machine_id(Ctl *c) {
        if (!c->local_machine_id_read) {
                c->local_machine_id_read = true;
                if (fl_machine_id_read(getenv("FLEET_MACHINE_ID_FILE"), &c->local_machine_id) < 0)
                        c->local_machine_id = NULL;
        }
        return c->local_machine_id;
}

char *fl_ctl_known_hosts_path(Ctl *c) {
        const char *p = c->known_hosts_file, *home;

        if (isempty(p))
                return NULL;
        if (p[0] != '~')
                return strdup(p);
        /* "~" and "~/x" only: "~user" is expanded by the user's shell already. */
        if (p[1] && p[1] != '/')
                return strdup(p);
        home = getenv("HOME");
        if (isempty(home))
                home = "/";
        return fl_ctl_asprintf("%s%s", home, p + 1);
}

void fl_ctl_sleep(uint64_t usec) {
        struct timespec ts = { .tv_sec = (time_t) (usec / 1000000ULL), .tv_nsec = (long) (usec % 1000000ULL) * 1000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void ctl_done(Ctl *c) {
        c->driver = fl_ctl_driver_free(c->driver);
        fl_api_machines_free(c->machines, c->n_machines);
        c->machines = NULL;
        c->local_machine_id = mfree(c->local_machine_id);
}

int applet_ctl_main(int argc, char *argv[]) {
        _cleanup_strv_free_ char **args = NULL;
        const Verb *v = NULL;
        Ctl c = {
                .endpoint = FL_CTL_DEFAULT_ENDPOINT,
                .driver_name = "API",
                .etcd_key_prefix = "/_coreos.com/fleet/",
                .known_hosts_file = "~/.fleetctl/known_hosts",
                .ssh_username = "core",
                .strict_host_key_checking = true,
                .experimental_api = true,
                .ssh_timeout = 10.0,
                .request_timeout = 3.0,
                .ssh_port = 22,
                .lines = 10,
                .journal_output = "short",
                .start_timeout = FL_CTL_DEFAULT_START_TIMEOUT,
        };
        int exit_status = 0, r;

        /* A short-lived process that builds and drops big trees (a list of 10,000 units, a read
         * of the whole registry): growing the heap in big steps and never giving it back saves
         * glibc's many small brk() calls, trims and consolidations, and keeps the 10 MB reply
         * buffer in the heap instead of remapping it: about a quarter of the CPU of such a list.
         * Only touched pages count against memory. */
        (void) mallopt(M_TOP_PAD, 64 << 20);
        (void) mallopt(M_TRIM_THRESHOLD, 256 << 20);
        (void) mallopt(M_MMAP_THRESHOLD, 32 << 20);

        if (argc < 2)
                return print_help(NULL) < 0 ? 1 : 0;
        if (streq(argv[1], "--version") || streq(argv[1], "-v"))
                return verb_version(&c, 0, NULL);

        apply_env(&c);
        r = parse_argv(&c, argc, argv, &v, &args, &exit_status);
        if (r <= 0)
                return r < 0 ? r : exit_status;
        if (c.debug)
                fl_log_set_max_level(LOG_DEBUG);
        if (c.tunnel && isempty(c.tunnel))
                c.tunnel = NULL;

        c.verb = v->name;
        {
                /* argv[0] of the verb is its name, like a command's own main(). */
                _cleanup_strv_free_ char **vargv = NULL;

                if (fl_strv_extend(&vargv, v->name) < 0)
                        return log_oom();
                STRV_FOREACH(a, args)
                        if (fl_strv_extend(&vargv, *a) < 0)
                                return log_oom();
                r = v->fn(&c, (int) fl_strv_length(vargv), vargv);
        }
        ctl_done(&c);
        return r;
}
