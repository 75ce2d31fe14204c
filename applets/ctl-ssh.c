/* SPDX-License-Identifier: MIT */
/* ctl-ssh.c: ssh, status, journal, fd-forward (spec §1.6, §1.7) and running commands on a
 * cluster machine: locally when it is this host (/etc/machine-id), else through the system's
 * OpenSSH client, so ~/.ssh/config, the agent and keys work as they do for the user.
 *
 * Host keys: --strict-host-key-checking=true checks against --known-hosts-file; on a terminal
 * an unknown host is asked about (OpenSSH "ask", which is fleet's prompt), otherwise refused.
 * false disables checking entirely (known hosts /dev/null), as fleet does.
 *
 * Remote commands are built as fleet builds them (program, then each argument in double
 * quotes), but escaped for the remote shell, and unit names and machine addresses that come
 * from the cluster are validated first: a hostile name cannot become shell syntax or an ssh
 * option. Global units are handled per machine, each labelled (fleet v1.0.0 did nothing). */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "buf.h"
#include "cJSON.h"
#include "ctl.h"
#include "strv.h"
#include "unit-name.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete);

/* ---- Processes ---- */

/* Runs argv with our stdio and waits. Returns its exit status (128+N for a signal), or a
 * negative errno if it could not be started. SIGINT/SIGQUIT go to the child (same terminal
 * process group), so we ignore them meanwhile, like system(). */
static int spawn_wait(char *const *argv) {
        struct sigaction ign = { .sa_handler = SIG_IGN }, old_int, old_quit;
        int status, pfd[2];
        pid_t pid;
        ssize_t n;
        int err = 0;

        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
        fflush(stdout);
        fflush(stderr);
        (void) sigaction(SIGINT, &ign, &old_int);
        (void) sigaction(SIGQUIT, &ign, &old_quit);
        pid = fork();
        if (pid < 0) {
                err = -errno;
                goto finish;
        }
        if (pid == 0) {
                (void) sigaction(SIGINT, &old_int, NULL);
                (void) sigaction(SIGQUIT, &old_quit, NULL);
                execvp(argv[0], argv);
                err = errno;
                (void) !write(pfd[1], &err, sizeof(err));
                _exit(127);
        }
        close(pfd[1]);
        pfd[1] = -1;
        /* The exec error, if any, comes through the close-on-exec pipe. */
        do
                n = read(pfd[0], &err, sizeof(err));
        while (n < 0 && errno == EINTR);
        if (n != sizeof(err))
                err = 0;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        err = errno;
                        break;
                }
        if (err)
                err = -err;
        else if (WIFEXITED(status))
                err = WEXITSTATUS(status);
        else if (WIFSIGNALED(status))
                err = 128 + WTERMSIG(status);
finish:
        (void) sigaction(SIGINT, &old_int, NULL);
        (void) sigaction(SIGQUIT, &old_quit, NULL);
        safe_close(pfd[0]);
        if (pfd[1] >= 0)
                safe_close(pfd[1]);
        return err;
}

/* A host name or address from the cluster that may go on ssh's command line: no option
 * syntax, no shell or ssh_config metacharacters. */
static bool host_is_safe(const char *h) {
        if (isempty(h) || h[0] == '-' || strlen(h) > 253)
                return false;
        for (const char *p = h; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr(".:-_%[]", *p)))
                        return false;
        return true;
}

static bool machine_id_is_safe(const char *id) {
        if (isempty(id) || strlen(id) > 128)
                return false;
        for (const char *p = id; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      *p == '-' || *p == '_'))
                        return false;
        return true;
}

/* "host[:port]" of --tunnel; fleet appends ":22" when there is no ':'. */
static int split_host_port(const char *s, char **ret_host, int *ret_port) {
        const char *colon = strrchr(s, ':');
        char *end;
        long port = 22;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (!close)
                        return -EINVAL;
                *ret_host = strndup(s + 1, (size_t) (close - s - 1));
                if (close[1] == ':') {
                        port = strtol(close + 2, &end, 10);
                        if (*end || port < 1 || port > 65535)
                                return -EINVAL;
                }
        } else if (colon && strchr(s, ':') == colon) {
                *ret_host = strndup(s, (size_t) (colon - s));
                port = strtol(colon + 1, &end, 10);
                if (*end || port < 1 || port > 65535) {
                        *ret_host = mfree(*ret_host);
                        return -EINVAL;
                }
        } else
                *ret_host = strdup(s);
        if (!*ret_host)
                return -ENOMEM;
        *ret_port = (int) port;
        return 0;
}

int fl_ctl_tunnel_target(Ctl *c, char **ret_host, int *ret_port) {
        _cleanup_free_ char *h = NULL;
        int port, r;

        r = split_host_port(c->tunnel, &h, &port);
        if (r < 0)
                return r;
        if (!host_is_safe(h))
                return -EINVAL;
        *ret_host = TAKE_PTR(h);
        *ret_port = port;
        return 0;
}

/* Options common to every ssh we run (tunnel, ProxyCommand, commands). */
static int ssh_common_opts(Ctl *c, char ***l) {
        _cleanup_free_ char *kh = NULL, *opt1 = NULL, *opt2 = NULL, *opt3 = NULL;
        long t = (long) (c->ssh_timeout + 0.999);

        if (c->strict_host_key_checking) {
                kh = fl_ctl_known_hosts_path(c);
                if (!kh)
                        return -ENOMEM;
                /* OpenSSH does not create the directory of its known hosts file. */
                {
                        char *slash = strrchr(kh, '/');
                        if (slash && slash != kh) {
                                *slash = 0;
                                (void) mkdir(kh, 0700);
                                *slash = '/';
                        }
                }
                opt1 = fl_ctl_asprintf("StrictHostKeyChecking=%s", isatty(STDIN_FILENO) ? "ask" : "yes");
                opt2 = fl_ctl_asprintf("UserKnownHostsFile=%s", kh);
        } else {
                opt1 = strdup("StrictHostKeyChecking=no");
                opt2 = strdup("UserKnownHostsFile=/dev/null");
        }
        opt3 = fl_ctl_asprintf("ConnectTimeout=%ld", t < 1 ? 1 : t);
        if (!opt1 || !opt2 || !opt3)
                return -ENOMEM;
        if (fl_strv_extend(l, "-o") < 0 || fl_strv_extend(l, opt1) < 0 || fl_strv_extend(l, "-o") < 0 ||
            fl_strv_extend(l, opt2) < 0 || fl_strv_extend(l, "-o") < 0 || fl_strv_extend(l, opt3) < 0)
                return -ENOMEM;
        if (!isempty(c->ssh_username) && (fl_strv_extend(l, "-l") < 0 || fl_strv_extend(l, c->ssh_username) < 0))
                return -ENOMEM;
        return 0;
}

int fl_ctl_ssh_argv(Ctl *c, const char *host, int port, unsigned flags, char *const *extra, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        int r;

        if (!host_is_safe(host))
                return -EINVAL;
        r = fl_strv_extend(&l, getenv("FLEETCTL_SSH") ?: "ssh");
        if (r < 0)
                return r;
        r = ssh_common_opts(c, &l);
        if (r < 0)
                return r;
        if (c->tunnel && (flags & FL_CTL_SSH_VIA_TUNNEL)) {
                /* The bastion as a ProxyCommand (not -J) so that it gets the same host key
                 * options; ssh runs it through the shell, hence the quoting. */
                _cleanup_strv_free_ char **p = NULL;
                _cleanup_free_ char *bhost = NULL, *pc = NULL;
                Buf b = BUF_INIT;
                int bport;

                r = fl_ctl_tunnel_target(c, &bhost, &bport);
                if (r < 0)
                        return r;
                r = fl_strv_extend(&p, getenv("FLEETCTL_SSH") ?: "ssh");
                if (r >= 0)
                        r = ssh_common_opts(c, &p);
                if (r < 0)
                        return r;
                STRV_FOREACH(a, p) {
                        _cleanup_free_ char *q = fl_ctl_shell_quote(*a);
                        if (!q || fl_buf_printf(&b, "%s ", q) < 0) {
                                fl_buf_done(&b);
                                return -ENOMEM;
                        }
                }
                if (fl_buf_printf(&b, "-p %d -W %%h:%%p -- %s", bport, bhost) < 0) {
                        fl_buf_done(&b);
                        return -ENOMEM;
                }
                pc = fl_ctl_asprintf("ProxyCommand=%s", fl_buf_str(&b));
                fl_buf_done(&b);
                if (!pc || fl_strv_extend(&l, "-o") < 0 || fl_strv_extend(&l, pc) < 0)
                        return -ENOMEM;
        }
        if (port > 0 && port != 22) {
                char p[16];
                snprintf(p, sizeof(p), "%d", port);
                if (fl_strv_extend(&l, "-p") < 0 || fl_strv_extend(&l, p) < 0)
                        return -ENOMEM;
        }
        if ((flags & FL_CTL_SSH_FORWARD_AGENT) && fl_strv_extend(&l, "-A") < 0)
                return -ENOMEM;
        STRV_FOREACH(e, extra)
                if (fl_strv_extend(&l, *e) < 0)
                        return -ENOMEM;
        if (fl_strv_extend(&l, "--") < 0 || fl_strv_extend(&l, host) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

/* fleet's remote command line: the program, then every argument double-quoted. */
static char *remote_command(char *const *argv) {
        Buf b = BUF_INIT;
        int r;

        r = fl_buf_puts(&b, argv[0]);
        for (size_t i = 1; r >= 0 && argv[i]; i++) {
                _cleanup_free_ char *q = fl_ctl_shell_quote(argv[i]);
                r = q ? fl_buf_printf(&b, " %s", q) : -ENOMEM;
        }
        if (r < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

int fl_ctl_run_on_machine(Ctl *c, const char *machine_id, char *const *argv) {
        _cleanup_strv_free_ char **cmd = NULL;
        _cleanup_free_ char *line = NULL;
        const char *local = fl_ctl_local_machine_id(c);
        const ApiMachine *m;
        int r;

        if (!machine_id_is_safe(machine_id)) {
                log_error("Error getting machine IP: invalid machine ID");
                return 1;
        }
        if (local && streq(local, machine_id)) {
                r = spawn_wait(argv);
                if (r < 0)
                        log_error_errno(r, "Error running local command: %m");
                return r < 0 ? 1 : r;
        }
        m = fl_ctl_machine_cached(c, machine_id);
        if (!m || isempty(m->public_ip)) {
                log_error("Error getting machine IP: %s", m ? "machine has no public IP" : "machine not found");
                return 1;
        }
        r = fl_ctl_ssh_argv(c, m->public_ip, c->ssh_port, FL_CTL_SSH_VIA_TUNNEL, NULL, &cmd);
        if (r == -EINVAL) {
                log_error("Unable to SSH to remote host: refusing unsafe address '%s'", m->public_ip);
                return 1;
        }
        if (r < 0)
                return log_oom();
        line = remote_command(argv);
        if (!line || fl_strv_extend(&cmd, line) < 0)
                return log_oom();
        r = spawn_wait(cmd);
        if (r < 0) {
                log_error_errno(r, "Unable to SSH to remote host: %m");
                return 255;
        }
        return r;
}

/* ---- status, journal ---- */

/* A unit name from the command line that will be used on a remote shell or in a command. */
static int safe_unit_name(const char *arg, char **ret) {
        _cleanup_free_ char *name = fl_unit_name_mangle(arg);

        if (!name)
                return log_oom();
        if (!fl_unit_name_is_safe(name)) {
                _cleanup_free_ char *msg = NULL;
                if (fl_unit_name_validate(name, &msg) < 0 && msg)
                        return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "Invalid unit name '%s': %s", name, msg);
                return log_error_errno(SYNTHETIC_ERRNO(EINVAL), "Invalid unit name '%s'", name);
        }
        *ret = TAKE_PTR(name);
        return 0;
}

static char *legend(Ctl *c, const char *machine_id) {
        const ApiMachine *m = fl_ctl_machine_cached(c, machine_id);
        return fl_ctl_machine_legend(machine_id, m ? m->public_ip : NULL, false);
}

/* Runs argv for a global unit on each machine that reports a state for it, labelled. */
static int run_global(Ctl *c, CtlDriver *d, const char *name, char *const *argv) {
        ApiUnitState *ss = NULL;
        size_t n = 0;
        int r, ret = 0;
        bool first = true;

        r = d->ops->list_states(d, name, &ss, &n);
        if (r < 0) {
                log_error("Error retrieving unit states of %s: %s", name, strempty(d->error));
                return 1;
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *l = NULL;

                if (!streq(ss[i].name, name) || isempty(ss[i].machine_id))
                        continue;
                l = legend(c, ss[i].machine_id);
                printf("%s=== %s on %s ===\n", first ? "" : "\n", name, strempty(l));
                first = false;
                r = fl_ctl_run_on_machine(c, ss[i].machine_id, argv);
                if (r != 0 && ret == 0)
                        ret = r;
        }
        if (first)
                log_error("Global unit %s is not running on any machine.", name);
        fl_api_unit_states_free(ss, n);
        return first ? 1 : ret;
}

static int status_json(Ctl *c, CtlDriver *d, char **args) {
        _cleanup_(cJSON_Deletep) cJSON *root = cJSON_CreateObject();
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "units") : NULL;

        if (!arr)
                return log_oom();
        STRV_FOREACH(a, args) {
                _cleanup_(fl_api_unit_done) ApiUnit u = {};
                _cleanup_free_ char *name = fl_unit_name_mangle(*a);
                ApiUnitState *ss = NULL;
                size_t n = 0;
                cJSON *o, *sa;
                bool global;
                char h[41];
                int r;

                if (!name)
                        return log_oom();
                r = d->ops->get_unit(d, name, &u);
                if (r == -ENOENT) {
                        log_error("Unit %s does not exist.", name);
                        return 1;
                }
                if (r < 0) {
                        log_error("Error retrieving unit: %s", strempty(d->error));
                        return 1;
                }
                r = d->ops->list_states(d, name, &ss, &n);
                if (r < 0) {
                        log_error("Error retrieving unit states of %s: %s", name, strempty(d->error));
                        return 1;
                }
                global = fl_ctl_unit_is_global(&u);
                fl_ctl_unit_hash(&u, h);
                o = cJSON_CreateObject();
                if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddStringToObject(o, "unit", name) ||
                    !cJSON_AddItemToObject(o, "hash", fl_ctl_json_string_or_null(h)) ||
                    !cJSON_AddItemToObject(o, "dstate", fl_ctl_json_string_or_null(u.desired_state)) ||
                    !cJSON_AddItemToObject(o, "state", fl_ctl_json_string_or_null(global ? NULL : u.current_state)) ||
                    !cJSON_AddItemToObject(o, "target", fl_ctl_json_string_or_null(global ? NULL : u.machine_id)) ||
                    !cJSON_AddBoolToObject(o, "global", global) ||
                    !cJSON_AddItemToObject(o, "unschedulable", fl_ctl_json_string_or_null(u.unschedulable)) ||
                    !(sa = cJSON_AddArrayToObject(o, "states"))) {
                        fl_api_unit_states_free(ss, n);
                        return log_oom();
                }
                for (size_t i = 0; i < n; i++) {
                        const ApiMachine *m = fl_ctl_machine_cached(c, ss[i].machine_id);
                        cJSON *s = cJSON_CreateObject();

                        if (!s || !cJSON_AddItemToArray(sa, s) ||
                            !cJSON_AddItemToObject(s, "machine", fl_ctl_json_string_or_null(ss[i].machine_id)) ||
                            !cJSON_AddItemToObject(s, "ip", fl_ctl_json_string_or_null(m ? m->public_ip : NULL)) ||
                            !cJSON_AddItemToObject(s, "load", fl_ctl_json_string_or_null(ss[i].load_state)) ||
                            !cJSON_AddItemToObject(s, "active", fl_ctl_json_string_or_null(ss[i].active_state)) ||
                            !cJSON_AddItemToObject(s, "sub", fl_ctl_json_string_or_null(ss[i].sub_state)) ||
                            !cJSON_AddItemToObject(s, "hash", fl_ctl_json_string_or_null(ss[i].hash))) {
                                fl_api_unit_states_free(ss, n);
                                return log_oom();
                        }
                }
                fl_api_unit_states_free(ss, n);
        }
        return fl_ctl_print_json(root) < 0 ? 1 : 0;
}

int fl_ctl_verb_status(Ctl *c, int argc, char **argv) {
        CtlDriver *d;
        int ret = 0;

        if (fl_ctl_driver(c, &d) < 0)
                return 1;
        if (c->output == CTL_OUTPUT_JSON)
                return status_json(c, d, argv + 1);

        for (int i = 1; i < argc; i++) {
                _cleanup_(fl_api_unit_done) ApiUnit u = {};
                _cleanup_free_ char *name = NULL;
                char *cmd[] = { (char *) "systemctl", (char *) "status", (char *) "-l", NULL, NULL };
                int r;

                if (safe_unit_name(argv[i], &name) < 0)
                        return 1;
                r = d->ops->get_unit(d, name, &u);
                if (r == -ENOENT) {
                        log_error("Unit %s does not exist.", name);
                        return 1;
                }
                if (r < 0) {
                        log_error("Error retrieving unit: %s", strempty(d->error));
                        return 1;
                }
                if (i > 1)
                        printf("\n");
                cmd[3] = name;
                if (fl_ctl_unit_is_global(&u))
                        r = run_global(c, d, name, cmd);
                else if (isempty(u.current_state) || streq(u.current_state, "inactive")) {
                        log_error("Unit %s does not appear to be loaded.", name);
                        return 1;
                } else
                        r = fl_ctl_run_on_machine(c, u.machine_id, cmd);
                if (r != 0) {
                        ret = r;
                        break;
                }
        }
        return ret;
}

int fl_ctl_verb_journal(Ctl *c, int argc, char **argv) {
        _cleanup_(fl_api_unit_done) ApiUnit u = {};
        _cleanup_strv_free_ char **cmd = NULL;
        _cleanup_free_ char *name = NULL;
        char lines[32];
        CtlDriver *d;
        int r;

        if (argc != 2) {
                log_error("One unit file must be provided.");
                return 1;
        }
        if (safe_unit_name(argv[1], &name) < 0)
                return 1;
        /* Passed on as one argument, quoted; still, journalctl's modes are plain words. */
        for (const char *p = c->journal_output; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
                        log_error("Invalid journal output mode '%s'", c->journal_output);
                        return 1;
                }
        if (fl_ctl_driver(c, &d) < 0)
                return 1;
        r = d->ops->get_unit(d, name, &u);
        if (r == -ENOENT) {
                log_error("Unit %s does not exist.", name);
                return 1;
        }
        if (r < 0) {
                log_error("Error retrieving unit %s: %s", name, strempty(d->error));
                return 1;
        }

        snprintf(lines, sizeof(lines), "%d", c->lines);
        if ((c->sudo && fl_strv_extend(&cmd, "sudo") < 0) || fl_strv_extend(&cmd, "journalctl") < 0 ||
            fl_strv_extend(&cmd, "--unit") < 0 || fl_strv_extend(&cmd, name) < 0 ||
            fl_strv_extend(&cmd, "--no-pager") < 0 || fl_strv_extend(&cmd, "-n") < 0 ||
            fl_strv_extend(&cmd, lines) < 0 || fl_strv_extend(&cmd, "--output") < 0 ||
            fl_strv_extend(&cmd, c->journal_output) < 0)
                return log_oom();

        if (fl_ctl_unit_is_global(&u)) {
                if (c->follow) {
                        log_error("Unable to follow the journal of global unit %s on several machines.", name);
                        return 1;
                }
                return run_global(c, d, name, cmd);
        }
        if (isempty(u.current_state) || streq(u.current_state, "inactive")) {
                log_error("Unit %s does not appear to be running.", name);
                return 1;
        }
        if (c->follow && fl_strv_extend(&cmd, "-f") < 0)
                return log_oom();
        return fl_ctl_run_on_machine(c, u.machine_id, cmd);
}

/* ---- ssh ---- */

/* Address of the machine whose ID starts with lookup. 1 found, 0 not (with *ret_error). */
static int find_machine(Ctl *c, CtlDriver *d, const char *lookup, char **ret_addr, char **ret_error) {
        ApiMachine *ms = NULL;
        size_t n = 0;
        const ApiMachine *match = NULL;
        int r;

        r = d->ops->list_machines(d, &ms, &n);
        if (r < 0) {
                *ret_error = strdup(strempty(d->error));
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                if (!startswith(ms[i].id, lookup))
                        continue;
                if (match) {
                        *ret_error = strdup("found more than one machine");
                        fl_api_machines_free(ms, n);
                        return 0;
                }
                match = &ms[i];
        }
        if (!match) {
                *ret_error = strdup("machine does not exist");
                r = 0;
        } else {
                *ret_addr = strdup(strempty(match->public_ip));
                r = 1;
        }
        fl_api_machines_free(ms, n);
        return r;
}

/* Address of the machine running unit name. 1 found, 0 not (with *ret_error). */
static int find_unit_machine(Ctl *c, CtlDriver *d, const char *arg, char **ret_addr, char **ret_error) {
        _cleanup_(fl_api_unit_done) ApiUnit u = {};
        _cleanup_free_ char *name = fl_unit_name_mangle(arg);
        const ApiMachine *m;
        int r;

        if (!name)
                return -ENOMEM;
        r = d->ops->get_unit(d, name, &u);
        if (r == -ENOENT) {
                *ret_error = strdup("unit does not exist");
                return 0;
        }
        if (r < 0) {
                *ret_error = strdup(strempty(d->error));
                return r;
        }
        if (fl_ctl_unit_is_global(&u)) {
                *ret_error = strdup("global units unsupported");
                return 0;
        }
        m = fl_ctl_machine_cached(c, u.machine_id);
        if (m && !isempty(m->public_ip)) {
                *ret_addr = strdup(m->public_ip);
                return 1;
        }
        *ret_error = strdup("unit is not running on any machine with a known address");
        return 0;
}

int fl_ctl_verb_ssh(Ctl *c, int argc, char **argv) {
        _cleanup_strv_free_ char **cmd = NULL;
        _cleanup_free_ char *addr = NULL, *error = NULL;
        char **rest = argv + 1;
        CtlDriver *d;
        int r;

        if (c->unit && c->machine) {
                log_error("Both machine and unit flags provided, please specify only one.");
                return 1;
        }
        if (fl_ctl_driver(c, &d) < 0)
                return 1;
        if (c->machine)
                r = find_machine(c, d, c->machine, &addr, &error);
        else if (c->unit)
                r = find_unit_machine(c, d, c->unit, &addr, &error);
        else if (argc < 2) {
                error = strdup("one machine or unit must be provided");
                r = 0;
        } else {
                _cleanup_free_ char *ma = NULL, *ua = NULL, *me = NULL, *ue = NULL;
                int rm = find_machine(c, d, argv[1], &ma, &me);
                int ru = find_unit_machine(c, d, argv[1], &ua, &ue);

                rest++;
                if (rm > 0 && ru > 0) {
                        error = fl_ctl_asprintf("ambiguous argument, both machine and unit found for `%s`.\n"
                                                "Please use flag `--machine` or `--unit` to refine the search",
                                                argv[1]);
                        r = 0;
                } else if (rm > 0) {
                        addr = TAKE_PTR(ma);
                        r = 1;
                } else if (ru > 0) {
                        addr = TAKE_PTR(ua);
                        r = 1;
                } else {
                        error = strdup("could not find matching unit or machine");
                        r = 0;
                }
        }
        if (r <= 0) {
                log_error("Unable to proceed: %s", strempty(error));
                return 1;
        }
        if (isempty(addr)) {
                log_error("Could not determine address of machine.");
                return 1;
        }

        if (*rest && streq(*rest, "--"))
                rest++;
        r = fl_ctl_ssh_argv(c, addr, c->ssh_port,
                            FL_CTL_SSH_VIA_TUNNEL | (c->forward_agent ? FL_CTL_SSH_FORWARD_AGENT : 0), NULL, &cmd);
        if (r == -EINVAL) {
                log_error("Unable to proceed: refusing unsafe address '%s'", addr);
                return 1;
        }
        if (r < 0)
                return log_oom();
        if (*rest) {
                /* The user's own command line: joined with spaces, as fleet does. */
                _cleanup_free_ char *line = NULL;
                Buf b = BUF_INIT;
                for (char **a = rest; *a; a++)
                        if (fl_buf_printf(&b, "%s%s", a == rest ? "" : " ", *a) < 0) {
                                fl_buf_done(&b);
                                return log_oom();
                        }
                line = fl_buf_steal(&b);
                if (!line || fl_strv_extend(&cmd, line) < 0)
                        return log_oom();
        }
        r = spawn_wait(cmd);
        if (r < 0) {
                log_error_errno(r, "Failed building SSH client: %m");
                return 1;
        }
        return r;
}

/* ---- fd-forward ---- */

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int fl_ctl_verb_fd_forward(Ctl *c, int argc, char **argv) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        bool in_open = true;
        char buf[65536];
        int r;

        if (argc != 2) {
                log_error("Provide a single argument");
                return 1;
        }
        if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
                log_error("Unable to use \"%s\" as unix address: path too long", argv[1]);
                return 1;
        }
        strcpy(sa.sun_path, argv[1]);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                log_error_errno(errno, "Failed dialing remote address: %m");
                return 1;
        }
        (void) signal(SIGPIPE, SIG_IGN);

        for (;;) {
                struct pollfd p[2] = {
                        { .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN },
                        { .fd = fd, .events = POLLIN },
                };
                ssize_t n;

                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        log_error_errno(errno, "Encountered error during copy: %m");
                        return 1;
                }
                if (p[0].revents) {
                        n = read(STDIN_FILENO, buf, sizeof(buf));
                        if (n < 0 && errno != EINTR && errno != EAGAIN) {
                                log_error_errno(errno, "Encountered error during copy: %m");
                                return 1;
                        }
                        if (n == 0) {
                                /* The client is done sending; answers may still come. */
                                in_open = false;
                                (void) shutdown(fd, SHUT_WR);
                        } else if (n > 0 && (r = write_all(fd, buf, (size_t) n)) < 0) {
                                log_error_errno(r, "Encountered error during copy: %m");
                                return 1;
                        }
                }
                if (p[1].revents) {
                        n = read(fd, buf, sizeof(buf));
                        if (n < 0 && errno != EINTR && errno != EAGAIN) {
                                log_error_errno(errno, "Encountered error during copy: %m");
                                return 1;
                        }
                        if (n == 0)
                                return 0;
                        if (n > 0 && (r = write_all(STDOUT_FILENO, buf, (size_t) n)) < 0) {
                                log_error_errno(r, "Encountered error during copy: %m");
                                return 1;
                        }
                }
        }
}
