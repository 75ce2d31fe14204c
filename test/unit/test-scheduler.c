/* SPDX-License-Identifier: MIT */
/* test-scheduler.c: the engine's decisions (lib/scheduler.c) on hand-built snapshots.
 *
 * Each case describes machines and units in a compact text form, lists the actions the plan
 * must produce, and then checks that the plan is settled: the snapshot with those actions
 * applied must plan to nothing (no reschedule storms, no reason flapping). */
#include <stdio.h>
#include <time.h>

#include "buf.h"
#include "scheduler.h"
#include "strv.h"
#include "tests.h"
#include "unit-file.h"
#include "unit-options.h"

/* ---- Snapshot construction ---- */

static void snap_free(RegSnapshot *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_units; i++) {
                RegUnit *u = &s->units[i];
                free(u->name);
                fl_unit_file_free(u->file);
                fl_unit_requirements_done(&u->req);
                free(u->target);
                free(u->job_state);
                free(u->unschedulable);
        }
        free(s->units);
        for (size_t i = 0; i < s->n_machines; i++) {
                RegMachine *m = &s->machines[i];
                free(m->id);
                fl_strv_free(m->metadata);
        }
        free(s->machines);
        free(s);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(RegSnapshot *, snap_free);

static char *dup_or_null(const char *s) {
        return isempty(s) ? NULL : strdup(s);
}

/* "id" or "id:k=v,k=v". */
static int snap_add_machine(RegSnapshot *s, const char *spec) {
        _cleanup_strv_free_ char **parts = NULL, **kvs = NULL;
        RegMachine *m;
        int r;

        r = fl_strv_split(spec, ":", &parts);
        if (r < 0 || !parts || !parts[0])
                return -EINVAL;
        m = realloc(s->machines, (s->n_machines + 1) * sizeof(RegMachine));
        if (!m)
                return -ENOMEM;
        s->machines = m;
        m = &s->machines[s->n_machines++];
        *m = (RegMachine) { .id = strdup(parts[0]) };
        if (parts[1]) {
                r = fl_strv_split(parts[1], ",", &kvs);
                if (r < 0)
                        return r;
                STRV_FOREACH(kv, kvs) {
                        const char *eq = strchr(*kv, '=');
                        if (!eq)
                                return -EINVAL;
                        _cleanup_free_ char *k = strndup(*kv, eq - *kv);
                        if (fl_strv_extend(&m->metadata, k) < 0 || fl_strv_extend(&m->metadata, eq + 1) < 0)
                                return -ENOMEM;
                        m->n_metadata++;
                }
        }
        return 0;
}

/* "name|state|target|X-Fleet lines separated by ;|unschedulable". Empty state = launched;
 * X-Fleet "!nofile" makes a unit whose file is missing. */
static int snap_add_unit(RegSnapshot *s, const char *spec) {
        char *fields[5] = {};
        _cleanup_free_ char *copy = strdup(spec);
        RegUnit *u;
        int r;

        if (!copy)
                return -ENOMEM;
        char *p = copy;
        for (size_t i = 0; i < 5 && p; i++) {
                fields[i] = p;
                p = strchr(p, '|');
                if (p)
                        *p++ = '\0';
        }
        u = realloc(s->units, (s->n_units + 1) * sizeof(RegUnit));
        if (!u)
                return -ENOMEM;
        s->units = u;
        u = &s->units[s->n_units++];
        *u = (RegUnit) { .name = strdup(fields[0]) };
        memset(u->hash, 'a', 40);
        if (isempty(fields[1]) || streq(fields[1], "launched"))
                u->target_state = JOB_STATE_LAUNCHED;
        else if (streq(fields[1], "loaded"))
                u->target_state = JOB_STATE_LOADED;
        else if (streq(fields[1], "inactive"))
                u->target_state = JOB_STATE_INACTIVE;
        else
                return -EINVAL;
        u->target = dup_or_null(fields[2]);
        u->unschedulable = dup_or_null(fields[4]);
        if (fields[3] && streq(fields[3], "!nofile"))
                return 0;

        Buf b = BUF_INIT;
        r = fl_buf_puts(&b, "[Service]\nExecStart=/bin/true\n[X-Fleet]\n");
        for (const char *x = fields[3]; r >= 0 && x && *x; x++)
                r = fl_buf_putc(&b, *x == ';' ? '\n' : *x);
        if (r >= 0)
                r = fl_buf_putc(&b, '\n');
        if (r < 0) {
                fl_buf_done(&b);
                return r;
        }
        r = fl_unit_file_parse(fl_buf_str(&b), b.len, &u->file, NULL);
        fl_buf_done(&b);
        if (r < 0)
                return r;
        r = fl_unit_requirements_parse(u->file, u->name, &u->req);
        if (r < 0)
                return r;
        u->global = u->req.global;
        return 0;
}

static int cmp_unit(const void *a, const void *b) {
        return strcmp(((const RegUnit *) a)->name, ((const RegUnit *) b)->name);
}

static int cmp_machine(const void *a, const void *b) {
        return strcmp(((const RegMachine *) a)->id, ((const RegMachine *) b)->id);
}

/* machines: space-separated machine specs; units: NULL-terminated unit specs. */
static int snap_build(const char *machines, const char *const *units, RegSnapshot **ret) {
        _cleanup_(snap_freep) RegSnapshot *s = new0(RegSnapshot, 1);
        _cleanup_strv_free_ char **ms = NULL;
        int r;

        if (!s)
                return -ENOMEM;
        r = fl_strv_split(strempty(machines), " ", &ms);
        if (r < 0)
                return r;
        STRV_FOREACH(m, ms) {
                r = snap_add_machine(s, *m);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; units && units[i]; i++) {
                r = snap_add_unit(s, units[i]);
                if (r < 0)
                        return r;
        }
        if (s->n_units > 0)
                qsort(s->units, s->n_units, sizeof(RegUnit), cmp_unit);
        if (s->n_machines > 0)
                qsort(s->machines, s->n_machines, sizeof(RegMachine), cmp_machine);
        *ret = TAKE_PTR(s);
        return 0;
}

static RegUnit *snap_unit(RegSnapshot *s, const char *name) {
        for (size_t i = 0; i < s->n_units; i++)
                if (streq(s->units[i].name, name))
                        return &s->units[i];
        return NULL;
}

/* ---- Plans as text ---- */

/* One line per action: "unschedule U M", "schedule U M", "reason U TEXT" / "reason U -". */
static char *actions_str(const SchedAction *a, size_t n) {
        Buf b = BUF_INIT;
        for (size_t i = 0; i < n; i++) {
                if (a[i].type == SCHED_SET_REASON)
                        (void) fl_buf_printf(&b, "reason %s %s\n", a[i].unit, a[i].reason ?: "-");
                else
                        (void) fl_buf_printf(&b, "%s %s %s\n", fl_sched_action_type_to_string(a[i].type),
                                             a[i].unit, a[i].machine_id);
        }
        return fl_buf_steal(&b);
}

/* What the registry would look like after the actions succeeded. */
static void apply_actions(RegSnapshot *s, const SchedAction *a, size_t n) {
        for (size_t i = 0; i < n; i++) {
                RegUnit *u = snap_unit(s, a[i].unit);
                if (!u)
                        continue;
                switch (a[i].type) {
                case SCHED_UNSCHEDULE:
                        if (streq_ptr(u->target, a[i].machine_id))
                                u->target = mfree(u->target);
                        break;
                case SCHED_SCHEDULE:
                        if (!u->target)
                                u->target = strdup(a[i].machine_id);
                        break;
                case SCHED_SET_REASON:
                        free(u->unschedulable);
                        u->unschedulable = a[i].reason ? strdup(a[i].reason) : NULL;
                        break;
                default:
                        break;
                }
        }
}

static int plan_str(const RegSnapshot *s, char **ret) {
        SchedAction *a = NULL;
        size_t n = 0;
        int r = fl_scheduler_plan(s, &a, &n);
        if (r < 0)
                return r;
        *ret = actions_str(a, n);
        fl_sched_actions_free(a, n);
        return 0;
}

/* ---- The table ---- */

typedef struct Case {
        const char *name;
        const char *machines;
        const char *units[16];
        const char *want;
} Case;

#define M32A "0123456789abcdef0123456789abcdef"
#define M32B "fedcba9876543210fedcba9876543210"

/* clang-format off */
static const Case cases[] = {
        { "empty cluster", "", { NULL }, "" },
        { "no machines", "", { "a.service||||", NULL }, "reason a.service no machines available\n" },
        { "nothing to do with no units", "m1 m2", { NULL }, "" },

        /* §5.3 least loaded, ties by machine ID */
        { "least loaded spreads", "m1 m2 m3", { "a.service", "b.service", "c.service", NULL },
          "schedule a.service m1\nschedule b.service m2\nschedule c.service m3\n" },
        { "least loaded counts existing units", "m1 m2 m3",
          { "x.service||m1", "y.service||m2", "a.service", NULL }, "schedule a.service m3\n" },
        { "tie break by machine ID as string", "m2 m10 m1", { "a.service", NULL }, "schedule a.service m1\n" },
        { "tie break m10 before m2", "m2 m10", { "a.service", NULL }, "schedule a.service m10\n" },
        { "loaded counts like launched", "m1 m2", { "x.service|loaded|m1", "a.service|loaded", NULL },
          "schedule a.service m2\n" },
        { "inactive units do not count", "m1 m2", { "x.service|inactive", "y.service|launched|m2", "a.service", NULL },
          "schedule a.service m1\n" },

        /* never move what is fine (no storms) */
        { "unbalanced cluster stays", "m1 m2",
          { "a.service||m1", "b.service||m1", "c.service||m1", NULL }, "" },
        { "scheduled unit stays although elsewhere is emptier", "m1 m2 m3",
          { "a.service||m3", "b.service||m3", NULL }, "" },

        /* pass 1 */
        { "inactive unit is unscheduled", "m1", { "a.service|inactive|m1", NULL }, "unschedule a.service m1\n" },
        { "inactive unit on a dead machine", "m1", { "a.service|inactive|gone", NULL },
          "unschedule a.service gone\n" },
        { "inactive unit is not scheduled", "m1", { "a.service|inactive", NULL }, "" },
        { "inactive unit loses its reason", "m1", { "a.service|inactive|||no machines available", NULL },
          "reason a.service -\n" },

        /* §5.7 machine loss: only the lost machine's units move */
        { "machine loss moves only its units", "m1 m3",
          { "a.service||m1", "b.service||m2", "c.service||m3", "d.service||m3", NULL },
          "unschedule b.service m2\nschedule b.service m1\n" },
        { "machine loss moves peer and follower together", "m1 m3",
          { "ping.service||m2", "pong.service||m2|MachineOf=ping.service", "x.service||m1", NULL },
          "unschedule ping.service m2\nunschedule pong.service m2\nschedule ping.service m3\n"
          "schedule pong.service m3\n" },
        { "follower before its peer in name order follows in one plan", "m1 m2 m3",
          { "a-follower.service||m9|MachineOf=z-peer.service", "z-peer.service||m9", "x.service||m1", NULL },
          "unschedule a-follower.service m9\nunschedule z-peer.service m9\nschedule a-follower.service m2\n"
          "schedule z-peer.service m2\n" },
        { "last machine gone", "", { "a.service||m1", NULL },
          "unschedule a.service m1\nreason a.service no machines available\n" },

        /* MachineOf */
        { "follower goes to its peer", "m1 m2",
          { "ping.service||m2", "pong.service|||MachineOf=ping.service", NULL }, "schedule pong.service m2\n" },
        { "follower of a missing peer", "m1 m2", { "pong.service|||MachineOf=ping.service", NULL },
          "reason pong.service required peer 'ping.service' is not scheduled\n" },
        { "follower of an unscheduled peer", "m1",
          { "ping.service|loaded||MachineID=nowhere", "pong.service|||MachineOf=ping.service", NULL },
          "reason ping.service MachineID 'nowhere' does not match any machine\n"
          "reason pong.service required peer 'ping.service' is not scheduled\n" },
        { "follower of an inactive peer", "m1",
          { "ping.service|inactive", "pong.service|||MachineOf=ping.service", NULL },
          "reason pong.service required peer 'ping.service' is not scheduled\n" },
        { "peer unloaded: follower unscheduled", "m1",
          { "ping.service|inactive|m1", "pong.service||m1|MachineOf=ping.service", NULL },
          "unschedule ping.service m1\nunschedule pong.service m1\n"
          "reason pong.service required peer 'ping.service' is not scheduled\n" },
        { "two peers on different machines", "m1 m2",
          { "a.service||m1", "b.service||m2", "c.service|||MachineOf=a.service;MachineOf=b.service", NULL },
          "reason c.service required peers 'a.service' and 'b.service' are on different machines\n" },
        { "two peers on one machine", "m1 m2",
          { "a.service||m2", "b.service||m2", "c.service|||MachineOf=a.service;MachineOf=b.service", NULL },
          "schedule c.service m2\n" },
        { "peer on a machine without the metadata", "m1 m2:region=eu",
          { "ping.service||m1", "pong.service|||MachineOf=ping.service;MachineMetadata=region=eu", NULL },
          "reason pong.service required peer 'ping.service' is on Machine(m1), which does not have region=eu\n" },
        { "bidirectional MachineOf never schedules", "m1",
          { "a.service|||MachineOf=b.service", "b.service|||MachineOf=a.service", NULL },
          "reason a.service required peer 'b.service' is not scheduled\n"
          "reason b.service required peer 'a.service' is not scheduled\n" },
        { "chain of followers in one plan", "m1 m2",
          { "a.service|||MachineOf=b.service", "b.service|||MachineOf=c.service", "c.service||m2", NULL },
          "schedule a.service m2\nschedule b.service m2\n" },

        /* Conflicts */
        { "mutual conflicts spread", "m1 m2 m3",
          { "conflict.0.service|||Conflicts=conflict.*.service", "conflict.1.service|||Conflicts=conflict.*.service",
            "conflict.2.service|||Conflicts=conflict.*.service", "conflict.3.service|||Conflicts=conflict.*.service",
            "conflict.4.service|||Conflicts=conflict.*.service", NULL },
          "schedule conflict.0.service m1\nschedule conflict.1.service m2\nschedule conflict.2.service m3\n"
          "reason conflict.3.service conflicts with 'conflict.0.service', 'conflict.1.service' and "
          "'conflict.2.service' on every machine\n"
          "reason conflict.4.service conflicts with 'conflict.0.service', 'conflict.1.service' and "
          "'conflict.2.service' on every machine\n" },
        { "one-way conflict, declared by the scheduled unit", "m1",
          { "conflicts-with-hello.service||m1|Conflicts=hello.service", "hello.service", NULL },
          "reason hello.service conflicts with 'conflicts-with-hello.service' on every machine\n" },
        { "one-way conflict, declared by the new unit", "m1",
          { "hello.service||m1", "conflicts-with-hello.service|||Conflicts=hello.service", NULL },
          "reason conflicts-with-hello.service conflicts with 'hello.service' on every machine\n" },
        { "one-way conflict resolved by destroy", "m1",
          { "hello.service||||conflicts with 'conflicts-with-hello.service' on every machine", NULL },
          "schedule hello.service m1\nreason hello.service -\n" },
        { "multiple conflicts on one line and repeated", "m1 m2 m3",
          { "a.service|||Conflicts=b.service c.service", "b.service|||Conflicts=a.service;Conflicts=c.service",
            "c.service", NULL },
          "schedule a.service m1\nschedule b.service m2\nschedule c.service m3\n" },
        { "conflict avoids a machine", "m1 m2",
          { "db.service||m1", "web.service|||Conflicts=db.service", NULL }, "schedule web.service m2\n" },
        { "conflicting pair on one machine: later one moves", "m1 m2",
          { "a.service||m1|Conflicts=b.service", "b.service||m1", NULL },
          "unschedule b.service m1\nschedule b.service m2\n" },
        { "many conflicting names are elided", "m1 m2 m3",
          { "w1.service||m1", "w2.service||m1", "w3.service||m2", "w4.service||m2", "w5.service||m3",
            "w6.service||m3", "w7.service||m3", "x.service|||Conflicts=w*.service", NULL },
          "reason x.service conflicts with 'w1.service', 'w2.service', 'w3.service', 'w4.service', "
          "'w5.service' and 2 more on every machine\n" },
        { "conflict on some machines, metadata on others", "m1:r=a m2:r=a m3",
          { "w1.service||m1", "w2.service||m2", "x.service|||Conflicts=w*.service;MachineMetadata=r=a", NULL },
          "reason x.service conflicts with 'w1.service' and 'w2.service' on every machine that meets its "
          "other requirements\n" },

        /* §5.6 global units */
        { "global units are never scheduled", "m1 m2", { "g.service|||Global=true", NULL }, "" },
        { "global unit target is left alone", "m1", { "g.service||m1|Global=true", NULL }, "" },
        { "global units count as load", "m1:role=web m2", { "g.service|||Global=true;MachineMetadata=role=web",
                                                            "a.service", NULL },
          "schedule a.service m2\n" },
        { "inactive global units do not count (as the agent)", "m1:role=web m2",
          { "g.service|inactive||Global=true;MachineMetadata=role=web", "a.service", NULL },
          "schedule a.service m1\n" },
        { "inactive global does not conflict", "m1",
          { "a-global.service|inactive||Global=true;Conflicts=b-job.service", "b-job.service", NULL },
          "schedule b-job.service m1\n" },
        { "unit type the agent does not manage", "m1", { "foo.target", NULL },
          "reason foo.target unit type not managed by the agent\n" },
        { "scheduled unit the agent refuses", "m1", { "foo.target||m1", NULL },
          "unschedule foo.target m1\nreason foo.target unit type not managed by the agent\n" },
        { "refused global unit", "m1", { "foo.target|||Global=true", NULL },
          "reason foo.target unit type not managed by the agent\n" },
        { "global conflicting everywhere", "m1 m2",
          { "conflict-global.0.service|||Global=true;Conflicts=conflict-global.*.service",
            "conflict-global.1.service|||Conflicts=conflict-global.*.service", NULL },
          "reason conflict-global.1.service conflicts with 'conflict-global.0.service' on every machine\n" },
        { "global conflicting on some machines", "m1:region=eu m2:region=us",
          { "g.service|||Global=true;Conflicts=web*;MachineMetadata=region=eu", "web.service", NULL },
          "schedule web.service m2\n" },
        { "global displaces a conflicting job the agent would not run", "m1 m2",
          { "a-global.service|||Global=true;Conflicts=b-job.service", "b-job.service||m1", NULL },
          "unschedule b-job.service m1\nreason b-job.service conflicts with 'a-global.service' on every machine\n" },
        { "job before a conflicting global keeps its machine", "m1 m2",
          { "a-job.service||m1", "b-global.service|||Global=true;Conflicts=a-job.service", NULL }, "" },
        { "global with metadata nobody has", "m1:region=us",
          { "g.service|||Global=true;MachineMetadata=region=eu", NULL },
          "reason g.service no machine has region=eu\n" },
        { "inactive global needs no reason", "m1:region=us",
          { "g.service|inactive||Global=true;MachineMetadata=region=eu", NULL }, "" },
        { "peer may be a global unit", "m1 m2:role=x",
          { "g.service|||Global=true;MachineMetadata=role=x", "f.service|||MachineOf=g.service", NULL },
          "schedule f.service m2\n" },

        /* §5.4.1 MachineID */
        { "MachineID full", M32A " " M32B, { "a.service|||MachineID=" M32B, NULL },
          "schedule a.service " M32B "\n" },
        { "MachineID short", M32A " " M32B, { "a.service|||MachineID=fedcba98", NULL },
          "schedule a.service " M32B "\n" },
        { "MachineID specifier", M32A " " M32B, { "pin@" M32B ".service|||MachineID=%i", NULL },
          "schedule pin@" M32B ".service " M32B "\n" },
        { "MachineID other length is not a short ID", M32A, { "a.service|||MachineID=0123456", NULL },
          "reason a.service MachineID '0123456' does not match any machine\n" },
        { "MachineID mismatch", "m1 m2", { "a.service|||MachineID=abc", NULL },
          "reason a.service MachineID 'abc' does not match any machine\n" },
        { "MachineID machine went away", "m1", { "a.service||m2|MachineID=m2", NULL },
          "unschedule a.service m2\nreason a.service MachineID 'm2' does not match any machine\n" },

        /* §5.4.2 metadata */
        { "metadata OR within a key, AND across keys", "m1:region=eu,disk=hdd m2:region=us,disk=ssd m3:region=ap,disk=ssd",
          { "a.service|||MachineMetadata=region=eu;MachineMetadata=region=us;MachineMetadata=disk=ssd", NULL },
          "schedule a.service m2\n" },
        { "metadata quoted values", "m1:region=eu m2:region=us,disk=ssd",
          { "a.service|||MachineMetadata=\"region=us\" \"disk=ssd\"", NULL }, "schedule a.service m2\n" },
        { "metadata key nobody has", "m1:region=us m2",
          { "a.service|||MachineMetadata=region=eu", NULL }, "reason a.service no machine has region=eu\n" },
        { "metadata alternatives nobody has", "m1:region=ap",
          { "a.service|||MachineMetadata=region=eu;MachineMetadata=region=us", NULL },
          "reason a.service no machine has region=eu or region=us\n" },
        { "metadata met separately but not together", "m1:region=eu m2:disk=ssd",
          { "a.service|||MachineMetadata=region=eu;MachineMetadata=disk=ssd", NULL },
          "reason a.service no machine has region=eu and disk=ssd\n" },
        { "metadata names only the missing key", "m1:region=eu m2:region=eu",
          { "a.service|||MachineMetadata=region=eu;MachineMetadata=disk=ssd", NULL },
          "reason a.service no machine has disk=ssd\n" },
        { "metadata operators", "m1:mem=4 m2:mem=16 m3",
          { "a.service|||MachineMetadata=mem>=8", "b.service|||MachineMetadata=mem!=4", NULL },
          "schedule a.service m2\nschedule b.service m3\n" },
        { "metadata operator unmet", "m1:mem=4", { "a.service|||MachineMetadata=mem>8", NULL },
          "reason a.service no machine has mem>8\n" },
        { "metadata specifier", "m1:host=a m2:host=b", { "md@b.service|||MachineMetadata=host=%i", NULL },
          "schedule md@b.service m2\n" },
        { "metadata changed under a scheduled unit", "m1:region=us m2:region=eu",
          { "a.service||m1|MachineMetadata=region=eu", NULL }, "unschedule a.service m1\nschedule a.service m2\n" },
        { "MachineID and metadata", "m1:region=us m2:region=eu",
          { "a.service|||MachineID=m1;MachineMetadata=region=eu", NULL },
          "reason a.service no machine has region=eu\n" },

        /* §5.5 Replaces */
        { "replace moves the replaced unit", "m1 m2",
          { "replace.0.service||m1", "replace.1.service||m2", "replace.2.service||m2|MachineOf=replace.1.service",
            "replace-kick0.service|||Replaces=replace.0.service", NULL },
          "unschedule replace.0.service m1\nschedule replace-kick0.service m1\nschedule replace.0.service m2\n" },
        { "replaced unit sorted first moves", "m1 m2",
          { "a-replaced.service||m1", "b-replacer.service||m1|Replaces=a-replaced.service", NULL },
          "unschedule a-replaced.service m1\nschedule a-replaced.service m2\n" },
        { "replaced unit sorted last moves", "m1 m2",
          { "a-replacer.service||m1|Replaces=b-replaced.service", "b-replaced.service||m1", NULL },
          "unschedule b-replaced.service m1\nschedule b-replaced.service m2\n" },
        { "circular replace is ignored", "m1 m2",
          { "a.service||m1|Replaces=b.service", "b.service||m1|Replaces=a.service", NULL }, "" },
        { "circular replace places both", "m1",
          { "replace.0.service|||Replaces=replace-kick0.service",
            "replace-kick0.service|||Replaces=replace.0.service", NULL },
          "schedule replace-kick0.service m1\nschedule replace.0.service m1\n" },
        { "replaced unit is never put back", "m1 m2",
          { "j.service||m1|Replaces=r.service", "x.service||m2", "y.service||m2", "r.service", NULL },
          "schedule r.service m2\n" },
        { "replaced unit with nowhere to go", "m1",
          { "r.service||m1", "j.service|||Replaces=r.service", NULL },
          "unschedule r.service m1\nschedule j.service m1\n"
          "reason r.service replaced by 'j.service' on Machine(m1); there is no other machine\n" },
        { "replaced unit respects its constraints", "m1:region=eu m2",
          { "r.service||m1|MachineMetadata=region=eu", "j.service|||Replaces=r.service", NULL },
          "schedule j.service m2\n" },
        { "replaced unit cannot move where it is required", "m1:region=eu m2",
          { "r.service||m1|MachineMetadata=region=eu", "x.service||m2", "j.service|||Replaces=r.service", NULL },
          "unschedule r.service m1\nschedule j.service m1\n"
          "reason r.service replaced by 'j.service' on Machine(m1); no machine has region=eu\n" },
        { "replace chain moves each unit once", "m1 m2",
          { "e.service||m1|Replaces=f.service", "f.service||m2", "j.service|||Replaces=e.service", NULL },
          "unschedule e.service m1\nunschedule f.service m2\nschedule e.service m2\nschedule f.service m1\n"
          "schedule j.service m1\n" },
        { "replace glob", "m1 m2",
          { "old-1.service||m1", "x.service||m2", "new.service|||Replaces=old-*.service", NULL },
          "unschedule old-1.service m1\nschedule new.service m1\nschedule old-1.service m2\n" },
        { "replacer with a follower of the replaced", "m1 m2",
          { "r.service||m1", "f.service||m1|MachineOf=r.service", "j.service|||Replaces=r.service",
            "x.service||m2", "y.service||m2", NULL },
          "unschedule f.service m1\nunschedule r.service m1\nschedule f.service m2\nschedule j.service m1\n"
          "schedule r.service m2\n" },

        /* templates, missing files */
        { "templates are never scheduled", "m1", { "hello@.service|inactive", NULL }, "" },
        { "launched template gets a reason", "m1", { "hello@.service", NULL },
          "reason hello@.service templates cannot be scheduled\n" },
        { "instances are scheduled", "m1", { "hello@1.service", NULL }, "schedule hello@1.service m1\n" },
        { "missing unit file: scheduled stays", "m1", { "a.service||m1|!nofile", NULL }, "" },
        { "missing unit file: not scheduled", "m1", { "a.service|||!nofile", NULL },
          "reason a.service unit file is missing or invalid\n" },

        /* reasons are written only when they change */
        { "same reason is not rewritten", "m1:region=us",
          { "a.service|||MachineMetadata=region=eu|no machine has region=eu", NULL }, "" },
        { "changed reason is rewritten", "m1:region=us",
          { "a.service|||MachineMetadata=region=eu|no machines available", NULL },
          "reason a.service no machine has region=eu\n" },
        { "placed unit clears its reason", "m1", { "a.service||||no machines available", NULL },
          "schedule a.service m1\nreason a.service -\n" },
        { "scheduled unit with a stale reason", "m1", { "a.service||m1||old", NULL }, "reason a.service -\n" },
};
/* clang-format on */

static int run_case(const Case *c) {
        _cleanup_(snap_freep) RegSnapshot *s = NULL;
        _cleanup_free_ char *got = NULL, *again = NULL, *third = NULL;
        SchedAction *a = NULL;
        size_t n = 0;
        int r;

        r = snap_build(c->machines, c->units, &s);
        if (r < 0) {
                fprintf(stderr, "%s: bad case: %s\n", c->name, strerror(-r));
                return -1;
        }
        r = fl_scheduler_plan(s, &a, &n);
        if (r < 0) {
                fprintf(stderr, "%s: plan failed: %s\n", c->name, strerror(-r));
                return -1;
        }
        got = actions_str(a, n);
        if (!streq(strempty(got), c->want)) {
                fprintf(stderr, "%s:\n--- want\n%s--- got\n%s---\n", c->name, c->want, strempty(got));
                fl_sched_actions_free(a, n);
                return -1;
        }
        for (size_t i = 0; i < n; i++)
                if (a[i].type != SCHED_SET_REASON && !a[i].machine_id) {
                        fprintf(stderr, "%s: action without machine\n", c->name);
                        return -1;
                }
        for (size_t i = 0; i < n; i++)
                if (a[i].type == SCHED_UNSCHEDULE && isempty(a[i].reason)) {
                        fprintf(stderr, "%s: unschedule without a why\n", c->name);
                        return -1;
                }

        /* Deterministic. */
        r = plan_str(s, &again);
        if (r < 0 || !streq(strempty(again), strempty(got))) {
                fprintf(stderr, "%s: second plan differs:\n%s", c->name, strempty(again));
                fl_sched_actions_free(a, n);
                return -1;
        }

        /* Settled: once applied, nothing more to do. */
        apply_actions(s, a, n);
        fl_sched_actions_free(a, n);
        r = plan_str(s, &third);
        if (r < 0 || !isempty(third)) {
                fprintf(stderr, "%s: not settled, next plan:\n%s", c->name, strempty(third));
                return -1;
        }
        return 0;
}

TEST(table) {
        unsigned failed = 0;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                if (run_case(&cases[i]) < 0)
                        failed++;
        if (failed > 0)
                FAIL_AT("%u of %zu cases failed", failed, ELEMENTSOF(cases));
}

/* Runs plans, applying each, until one is empty; returns how many had actions, or -1. */
static int converge(RegSnapshot *s, unsigned max) {
        for (unsigned i = 0; i <= max; i++) {
                SchedAction *a = NULL;
                size_t n = 0;
                if (fl_scheduler_plan(s, &a, &n) < 0)
                        return -1;
                if (n == 0)
                        return (int) i;
                apply_actions(s, a, n);
                fl_sched_actions_free(a, n);
        }
        return -1;
}

TEST(replace_cycle_settles) {
        /* j replaces e replaces f replaces j, two machines: no stable placement has all three
         * running; fleet would move units on every pass forever. */
        static const char *const units[] = {
                "e.service|||Replaces=f.service", "f.service|||Replaces=j.service",
                "j.service|||Replaces=e.service", NULL,
        };
        _cleanup_(snap_freep) RegSnapshot *s = NULL;
        ASSERT_OK(snap_build("m1 m2", units, &s));
        int passes = converge(s, 5);
        ASSERT_TRUE(passes >= 1 && passes <= 3);
        /* Two of them run, on different machines; the third has a reason. */
        unsigned placed = 0, reasons = 0;
        for (size_t i = 0; i < s->n_units; i++) {
                placed += s->units[i].target != NULL;
                reasons += s->units[i].unschedulable != NULL;
        }
        ASSERT_EQ(placed, 2);
        ASSERT_EQ(reasons, 1);
}

TEST(replace_cycle_from_running) {
        static const char *const units[] = {
                "e.service||m1|Replaces=f.service", "f.service||m2|Replaces=j.service",
                "j.service|||Replaces=e.service", NULL,
        };
        _cleanup_(snap_freep) RegSnapshot *s = NULL;
        ASSERT_OK(snap_build("m1 m2", units, &s));
        int passes = converge(s, 5);
        ASSERT_TRUE(passes >= 1 && passes <= 3);
}

TEST(unschedule_whys) {
        static const char *const units[] = {
                "a.service|inactive|m1", "b.service||gone", "c.service||m1|MachineMetadata=region=eu",
                "d.service||m1|MachineOf=nothere.service", "e.service||m1|MachineID=m2",
                "f.service||m1|Conflicts=g.service", "g.service||m1", "h.service|inactive|gone", NULL,
        };
        /* clang-format off */
        static const char *const want[][2] = {
                { "a.service", "target state inactive" },
                { "b.service", "target Machine(gone) went away" },
                { "c.service", "target Machine(m1) unable to run unit: local Machine metadata insufficient" },
                { "d.service", "target Machine(m1) unable to run unit: required peer Unit(nothere.service) is not "
                               "scheduled locally" },
                { "e.service", "target Machine(m1) unable to run unit: agent ID \"m1\" does not match required \"m2\"" },
                { "g.service", "target Machine(m1) unable to run unit: found conflict with locally-scheduled "
                               "Unit(f.service)" },
                { "h.service", "target state inactive" },
        };
        /* clang-format on */
        _cleanup_(snap_freep) RegSnapshot *s = NULL;
        SchedAction *a = NULL;
        size_t n = 0;

        ASSERT_OK(snap_build("m1 m2", units, &s));
        ASSERT_OK(fl_scheduler_plan(s, &a, &n));
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                if (a[i].type != SCHED_UNSCHEDULE)
                        continue;
                if (k >= ELEMENTSOF(want)) {
                        fl_sched_actions_free(a, n);
                        FAIL_AT("unexpected unschedule of %s", a[i].unit);
                }
                bool ok = streq(a[i].unit, want[k][0]) && streq(a[i].reason, want[k][1]);
                if (!ok) {
                        fprintf(stderr, "got %s: %s\n", a[i].unit, a[i].reason);
                        fl_sched_actions_free(a, n);
                        FAIL_AT("want %s: %s", want[k][0], want[k][1]);
                }
                k++;
        }
        fl_sched_actions_free(a, n);
        ASSERT_EQ(k, ELEMENTSOF(want));
}

TEST(replace_why) {
        static const char *const units[] = {
                "r.service||m1", "x.service||m2", "j.service|||Replaces=r.service", NULL,
        };
        _cleanup_(snap_freep) RegSnapshot *s = NULL;
        SchedAction *a = NULL;
        size_t n = 0;

        ASSERT_OK(snap_build("m1 m2", units, &s));
        ASSERT_OK(fl_scheduler_plan(s, &a, &n));
        ASSERT_EQ(n, 3);
        ASSERT_EQ(a[0].type, SCHED_UNSCHEDULE);
        ASSERT_STREQ(a[0].reason, "target Machine(m1) unable to run unit: replaced by Unit(j.service)");
        ASSERT_STREQ(a[1].unit, "j.service");
        ASSERT_STREQ(a[2].unit, "r.service");
        ASSERT_STREQ(a[2].machine_id, "m2");
        fl_sched_actions_free(a, n);
}

TEST(many_units_balance) {
        /* 300 units on 7 machines: spread evenly, settled after one plan. */
        _cleanup_(snap_freep) RegSnapshot *s = NULL;
        char **specs = new0(char *, 301);
        ASSERT_NOT_NULL(specs);
        for (int i = 0; i < 300; i++)
                ASSERT_TRUE(asprintf(&specs[i], "u%03d.service", i) > 0);
        int r = snap_build("m1 m2 m3 m4 m5 m6 m7", (const char *const *) specs, &s);
        fl_strv_free(specs);
        ASSERT_OK(r);
        ASSERT_EQ(converge(s, 3), 1);
        size_t load[7] = {};
        for (size_t i = 0; i < s->n_units; i++) {
                ASSERT_NOT_NULL(s->units[i].target);
                load[s->units[i].target[1] - '1']++;
        }
        for (size_t i = 0; i < 7; i++)
                ASSERT_TRUE(load[i] == 42 || load[i] == 43);
        /* Losing a machine moves exactly its units, spread over the rest. */
        RegMachine gone = s->machines[3];
        memmove(s->machines + 3, s->machines + 4, 3 * sizeof(RegMachine));
        s->n_machines--;
        SchedAction *a = NULL;
        size_t n = 0;
        ASSERT_OK(fl_scheduler_plan(s, &a, &n));
        size_t moved = 0;
        for (size_t i = 0; i < n; i++)
                if (a[i].type == SCHED_UNSCHEDULE) {
                        ASSERT_STREQ(a[i].machine_id, gone.id);
                        moved++;
                }
        ASSERT_EQ(moved, load[3]);
        ASSERT_EQ(n, 2 * load[3]);
        fl_sched_actions_free(a, n);
        free(gone.id);
        fl_strv_free(gone.metadata);
}

/* ---- The benchmark's cluster ---- */

static uint64_t mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

TEST(large_cluster) {
        /* test/bench.sh: 10,000 units on 1,000 machines. One plan places every unit, 10 per
         * machine; the plan of the placed cluster (what the engine computes after each batch)
         * is empty; a lost machine moves exactly its 10 units. The time bound (generous, for
         * sanitizer builds on a busy box) catches a plan that became quadratic. */
        enum { M = 1000, U = 10000 };
        _cleanup_(snap_freep) RegSnapshot *s = NULL;
        static char machines[M * 6 + 1];
        char **specs = new0(char *, U + 1);
        ASSERT_NOT_NULL(specs);
        for (int i = 0; i < M; i++)
                snprintf(machines + 6 * i, sizeof(machines) - 6 * i, "m%04d%s", i, i + 1 < M ? " " : "");
        for (int i = 0; i < U; i++)
                ASSERT_TRUE(asprintf(&specs[i], "u%05d.service", i) > 0);
        int r = snap_build(machines, (const char *const *) specs, &s);
        fl_strv_free(specs);
        ASSERT_OK(r);

        SchedAction *a = NULL;
        size_t n = 0;
        uint64_t t0 = mono_usec();
        ASSERT_OK(fl_scheduler_plan(s, &a, &n));
        uint64_t t1 = mono_usec();
        ASSERT_EQ(n, (size_t) U);
        apply_actions(s, a, n);
        a = fl_sched_actions_free(a, n);
        size_t *load = new0(size_t, M);
        ASSERT_NOT_NULL(load);
        for (size_t i = 0; i < s->n_units; i++) {
                ASSERT_NOT_NULL(s->units[i].target);
                load[atoi(s->units[i].target + 1)]++;
        }
        for (size_t i = 0; i < M; i++)
                ASSERT_EQ(load[i], (size_t) (U / M));
        free(load);

        uint64_t t2 = mono_usec();
        ASSERT_OK(fl_scheduler_plan(s, &a, &n));
        uint64_t t3 = mono_usec();
        ASSERT_EQ(n, (size_t) 0);

        RegMachine gone = s->machines[500];
        memmove(s->machines + 500, s->machines + 501, (M - 501) * sizeof(RegMachine));
        s->n_machines--;
        ASSERT_OK(fl_scheduler_plan(s, &a, &n));
        ASSERT_EQ(n, (size_t) (2 * U / M));
        for (size_t i = 0; i < n; i++)
                if (a[i].type == SCHED_UNSCHEDULE)
                        ASSERT_STREQ(a[i].machine_id, gone.id);
                else
                        ASSERT_TRUE(a[i].type == SCHED_SCHEDULE && !streq(a[i].machine_id, gone.id));
        fl_sched_actions_free(a, n);
        free(gone.id);
        fl_strv_free(gone.metadata);

        fprintf(stderr, "# large_cluster: placing plan %.1f ms, settled plan %.1f ms\n",
                (t1 - t0) / 1000.0, (t3 - t2) / 1000.0);
        ASSERT_TRUE(t1 - t0 < 10 * 1000000);
        ASSERT_TRUE(t3 - t2 < 10 * 1000000);
}

/* ---- Random clusters ---- */



static unsigned rnd_state = 12345;
static unsigned rnd(unsigned n) {
        rnd_state = rnd_state * 1103515245u + 12345u;
        return (rnd_state >> 16) % n;
}

static const RegUnit *find_unit(const RegSnapshot *s, const char *name) {
        for (size_t i = 0; i < s->n_units; i++)
                if (streq(s->units[i].name, name))
                        return &s->units[i];
        return NULL;
}

/* Invariants of a settled schedule, checked independently of the scheduler: every scheduled
 * job is active, on a live machine, where its MachineID and metadata fit, next to its job
 * peers, and shares no machine with a job it conflicts with or that replaces it. */
static int check_settled(const RegSnapshot *s, char **ret_error) {
        for (size_t i = 0; i < s->n_units; i++) {
                const RegUnit *u = &s->units[i];
                const RegMachine *m = NULL;

                if (u->global || !u->target || !u->file)
                        continue;
                for (size_t k = 0; k < s->n_machines; k++)
                        if (streq(s->machines[k].id, u->target))
                                m = &s->machines[k];
                if (!m || u->target_state == JOB_STATE_INACTIVE)
                        return asprintf(ret_error, "%s left on %s", u->name, u->target), -1;
                if (u->req.machine_id && !fl_machine_id_match(u->req.machine_id, m->id))
                        return asprintf(ret_error, "%s: MachineID", u->name), -1;
                char *keys[8] = {}, *values[8] = {};
                for (size_t k = 0; k < m->n_metadata && k < 8; k++) {
                        keys[k] = m->metadata[2 * k];
                        values[k] = m->metadata[2 * k + 1];
                }
                if (!fl_metadata_match(&u->req, keys, values, m->n_metadata))
                        return asprintf(ret_error, "%s: metadata", u->name), -1;
                STRV_FOREACH(peer, u->req.machine_of) {
                        const RegUnit *pu = find_unit(s, *peer);
                        if (!pu || (!pu->global && !streq_ptr(pu->target, u->target)))
                                return asprintf(ret_error, "%s: peer %s", u->name, *peer), -1;
                }
                for (size_t j = 0; j < s->n_units; j++) {
                        const RegUnit *o = &s->units[j];
                        if (j == i || o->global || !o->file || !streq_ptr(o->target, u->target))
                                continue;
                        if (fl_unit_conflicts_with(u->name, &u->req, o->name, &o->req))
                                return asprintf(ret_error, "%s conflicts with %s", u->name, o->name), -1;
                        if (fl_unit_replaces(&o->req, u->name) && !fl_unit_replaces(&u->req, o->name))
                                return asprintf(ret_error, "%s replaced by %s", u->name, o->name), -1;
                }
        }
        return 0;
}

static char *random_unit_spec(unsigned i, unsigned n_units, unsigned n_machines) {
        Buf b = BUF_INIT;
        static const char *const states[] = { "inactive", "loaded", "launched", "launched" };
        bool global = rnd(10) == 0;

        (void) fl_buf_printf(&b, "u%u.service|%s|", i, states[rnd(4)]);
        if (!global && rnd(3) == 0)
                (void) fl_buf_printf(&b, "m%u", rnd(n_machines + 1));   /* m<n> is dead */
        (void) fl_buf_puts(&b, "|");
        if (global)
                (void) fl_buf_puts(&b, "Global=true;");
        if (!global && rnd(5) == 0)
                (void) fl_buf_printf(&b, "MachineOf=u%u.service;", rnd(n_units));
        if (rnd(5) == 0)
                (void) fl_buf_printf(&b, "Conflicts=u%u.service;", rnd(n_units));
        if (rnd(12) == 0)
                (void) fl_buf_puts(&b, "Conflicts=u*.service;");
        if (!global && rnd(5) == 0)
                (void) fl_buf_printf(&b, "Replaces=u%u.service;", rnd(n_units));
        if (rnd(5) == 0)
                (void) fl_buf_printf(&b, "MachineMetadata=region=%c;", 'a' + rnd(3));
        if (!global && rnd(12) == 0)
                (void) fl_buf_printf(&b, "MachineID=m%u", rnd(n_machines + 1));
        return fl_buf_steal(&b);
}

/* Whether an unschedule is explained by what moved in the same plan: its peer left, a unit
 * replacing it arrived, or a global unit now runs there because the unit that kept it off
 * (a conflict earlier in name order) left. */
static bool unschedule_explained(const RegSnapshot *s, const SchedAction *a, size_t n, size_t i) {
        const char *why = a[i].reason, *p;

        if (strstr(why, "replaced by"))
                return true;
        p = strstr(why, "required peer Unit(");
        if (p) {
                p += strlen("required peer Unit(");
                for (size_t j = 0; j < n; j++) {
                        size_t l = strlen(a[j].unit);
                        if (a[j].type == SCHED_UNSCHEDULE && strncmp(p, a[j].unit, l) == 0 && p[l] == ')')
                                return true;
                }
        }
        p = strstr(why, "locally-scheduled Unit(");
        if (p) {
                p += strlen("locally-scheduled Unit(");
                _cleanup_free_ char *name = strndup(p, strcspn(p, ")"));
                const RegUnit *u = name ? find_unit(s, name) : NULL;
                if (u && u->global)
                        return true;
        }
        return false;
}

/* A machine joins or leaves a settled cluster: nothing that is fine moves. Units leave only the
 * machine that went, or for a reason unschedule_explained() accepts. Then it settles again. */
static int membership_change(RegSnapshot *s, unsigned iter) {
        _cleanup_free_ char *gone = NULL;
        SchedAction *a = NULL;
        size_t n = 0;
        int ret = 0;

        if (s->n_machines > 0 && rnd(2)) {
                /* Moved past the end, still owned by s (and freed with it). */
                size_t k = rnd(s->n_machines);
                RegMachine m = s->machines[k];
                gone = strdup(m.id);
                if (!gone)
                        return -1;
                memmove(s->machines + k, s->machines + k + 1, (s->n_machines - k - 1) * sizeof(RegMachine));
                s->machines[--s->n_machines] = m;
        } else {
                RegMachine *m = realloc(s->machines, (s->n_machines + 1) * sizeof(RegMachine));
                if (!m)
                        return -1;
                s->machines = m;
                s->machines[s->n_machines++] = (RegMachine) { .id = strdup("m9") };
        }

        if (fl_scheduler_plan(s, &a, &n) < 0)
                return -1;
        for (size_t i = 0; i < n; i++) {
                if (a[i].type != SCHED_UNSCHEDULE || streq_ptr(a[i].machine_id, gone) ||
                    unschedule_explained(s, a, n, i))
                        continue;
                _cleanup_free_ char *all = actions_str(a, n);
                fprintf(stderr, "iteration %u: %s moved off %s: %s (machine %s %s)\\n%s", iter, a[i].unit,
                        a[i].machine_id, a[i].reason, gone ? "removed:" : "added", strempty(gone), all);
                ret = -1;
                break;
        }
        apply_actions(s, a, n);
        fl_sched_actions_free(a, n);
        if (ret == 0 && converge(s, 4) < 0) {
                fprintf(stderr, "iteration %u: not settled after a membership change\\n", iter);
                ret = -1;
        }
        if (gone)
                s->n_machines++;   /* so that snap_free() frees it */
        return ret;
}

TEST(random_clusters_settle) {
        unsigned hist[6] = {};
        const char *seed = getenv("SCHED_SEED"), *iters = getenv("SCHED_ITERATIONS");
        unsigned n_iter = iters ? (unsigned) strtoul(iters, NULL, 0) : 5000;

        if (seed)
                rnd_state = (unsigned) strtoul(seed, NULL, 0);

        for (unsigned iter = 0; iter < n_iter; iter++) {
                unsigned n_machines = rnd(5), n_units = 1 + rnd(14);
                char machines[256] = "";
                char *specs[16] = {};
                _cleanup_(snap_freep) RegSnapshot *s = NULL;
                _cleanup_free_ char *error = NULL;

                for (unsigned m = 0; m < n_machines; m++) {
                        size_t l = strlen(machines);
                        if (rnd(2))
                                snprintf(machines + l, sizeof(machines) - l, "m%u:region=%c ", m,
                                         'a' + rnd(3));
                        else
                                snprintf(machines + l, sizeof(machines) - l, "m%u ", m);
                }
                for (unsigned u = 0; u < n_units; u++)
                        specs[u] = random_unit_spec(u, n_units, n_machines);
                int r = snap_build(machines, (const char *const *) specs, &s);
                if (r < 0) {
                        for (unsigned u = 0; u < n_units; u++)
                                fprintf(stderr, "  %s\n", specs[u]);
                        for (unsigned u = 0; u < n_units; u++)
                                free(specs[u]);
                        FAIL_AT("iteration %u: bad snapshot: %s", iter, strerror(-r));
                }

                int passes = converge(s, 4);
                if (passes == 2 && getenv("SCHED_DEBUG")) {
                        _cleanup_(snap_freep) RegSnapshot *d = NULL;
                        _cleanup_free_ char *p1 = NULL, *p2 = NULL;
                        SchedAction *a = NULL;
                        size_t n = 0;
                        if (snap_build(machines, (const char *const *) specs, &d) >= 0 &&
                            fl_scheduler_plan(d, &a, &n) >= 0) {
                                p1 = actions_str(a, n);
                                apply_actions(d, a, n);
                                fl_sched_actions_free(a, n);
                                (void) plan_str(d, &p2);
                        }
                        fprintf(stderr, "== iteration %u: machines %s\n", iter, machines);
                        for (unsigned u = 0; u < n_units; u++)
                                fprintf(stderr, "  %s\n", specs[u]);
                        fprintf(stderr, "-- first\n%s-- second\n%s", strempty(p1), strempty(p2));
                }
                if (passes < 0 || check_settled(s, &error) < 0) {
                        fprintf(stderr, "iteration %u: machines %s\n", iter, machines);
                        for (unsigned u = 0; u < n_units; u++)
                                fprintf(stderr, "  %s\n", specs[u]);
                }
                for (unsigned u = 0; u < n_units; u++)
                        free(specs[u]);
                if (passes < 0)
                        FAIL_AT("iteration %u: not settled after 4 plans", iter);
                if (error)
                        FAIL_AT("iteration %u: %s", iter, error);
                hist[passes]++;

                if (membership_change(s, iter) < 0)
                        FAIL_AT("iteration %u: membership change", iter);
        }
        /* Almost everything settles in one plan; Replaces cycles may take up to three. */
        ASSERT_EQ(hist[4] + hist[5], 0);
        if (getenv("SCHED_DEBUG"))
                fprintf(stderr, "settled after 1/2/3 plans: %u/%u/%u\n", hist[1], hist[2], hist[3]);
        ASSERT_TRUE(hist[2] + hist[3] <= n_iter / 1000);
}

/* An inert unit's options: anything but MachineOf (what makes a unit a link between others). */
static char *inert_unit_spec(unsigned i, unsigned n_units, unsigned n_machines) {
        Buf b = BUF_INIT;

        (void) fl_buf_printf(&b, "u%u.service|inactive||", i);
        if (rnd(4) == 0)
                (void) fl_buf_puts(&b, "Global=true;");
        if (rnd(3) == 0)
                (void) fl_buf_printf(&b, "Conflicts=u%u.service;", rnd(n_units));
        if (rnd(3) == 0)
                (void) fl_buf_printf(&b, "Replaces=u%u.service;", rnd(n_units));
        if (rnd(3) == 0)
                (void) fl_buf_printf(&b, "MachineMetadata=region=%c;", 'a' + rnd(3));
        if (rnd(4) == 0)
                (void) fl_buf_printf(&b, "MachineID=m%u", rnd(n_machines + 1));
        return fl_buf_steal(&b);
}

/* The engine leaves inert units out of its fingerprint (no plan when only they changed): a
 * cluster plans the same with or without them, also when other units name them as peers,
 * conflicts or replacements, and at every step towards settling. */
TEST(inert_units_change_no_plan) {
        for (unsigned iter = 0; iter < 3000; iter++) {
                unsigned n_machines = rnd(4), n_base = 1 + rnd(10), n_extra = 1 + rnd(5);
                unsigned n_all = n_base + n_extra;
                char machines[256] = "";
                char *specs[16] = {};
                _cleanup_(snap_freep) RegSnapshot *without = NULL, *with = NULL;
                int r;

                for (unsigned m = 0; m < n_machines; m++) {
                        size_t l = strlen(machines);
                        snprintf(machines + l, sizeof(machines) - l, rnd(2) ? "m%u:region=a " : "m%u ", m);
                }
                for (unsigned u = 0; u < n_all; u++)
                        specs[u] = u < n_base ? random_unit_spec(u, n_all, n_machines)
                                              : inert_unit_spec(u, n_all, n_machines);
                char *saved = specs[n_base];
                specs[n_base] = NULL;
                r = snap_build(machines, (const char *const *) specs, &without);
                specs[n_base] = saved;
                if (r >= 0)
                        r = snap_build(machines, (const char *const *) specs, &with);
                for (unsigned u = n_base; r >= 0 && u < n_all; u++) {
                        char name[32];
                        snprintf(name, sizeof(name), "u%u.service", u);
                        if (!fl_scheduler_unit_inert(snap_unit(with, name)))
                                r = -EINVAL;
                }
                for (unsigned step = 0; r >= 0 && step < 4; step++) {
                        _cleanup_free_ char *a = NULL, *b = NULL;
                        SchedAction *act = NULL;
                        size_t n = 0;

                        r = plan_str(without, &a);
                        if (r >= 0)
                                r = fl_scheduler_plan(with, &act, &n);
                        if (r < 0)
                                break;
                        b = actions_str(act, n);
                        if (!streq(strempty(a), strempty(b))) {
                                fprintf(stderr, "iteration %u step %u: machines %s\n", iter, step, machines);
                                for (unsigned u = 0; u < n_all; u++)
                                        fprintf(stderr, "  %s\n", specs[u]);
                                fprintf(stderr, "-- without the inert units\n%s-- with them\n%s", strempty(a),
                                        strempty(b));
                                r = -EBADMSG;
                        } else {
                                apply_actions(without, act, n);
                                apply_actions(with, act, n);
                        }
                        fl_sched_actions_free(act, n);
                        if (r >= 0 && n == 0)
                                break;
                }
                for (unsigned u = 0; u < n_all; u++)
                        free(specs[u]);
                if (r < 0)
                        FAIL_AT("iteration %u: %s", iter, strerror(-r));
        }
}

/* What the engine may leave out: only a unit that is inactive, on no machine, without a reason
 * and without MachineOf. */
TEST(inert_rule) {
        static const struct {
                const char *spec;
                bool inert;
        } t[] = {
                { "a.service|inactive||", true },
                { "a.service|inactive||Conflicts=b.service;Replaces=c.service", true },
                { "a.service|inactive||Global=true", true },
                { "a.service|loaded||", false },
                { "a.service|launched||", false },
                { "a.service|inactive|m1|", false },
                { "a.service|inactive|||no machines", false },
                { "a.service|inactive||MachineOf=b.service", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                _cleanup_(snap_freep) RegSnapshot *s = NULL;

                ASSERT_OK(snap_build("m1", (const char *const[]) { t[i].spec, NULL }, &s));
                if (fl_scheduler_unit_inert(&s->units[0]) != t[i].inert)
                        FAIL_AT("%s: inert should be %s", t[i].spec, t[i].inert ? "true" : "false");
        }
}

TEST(action_names) {
        ASSERT_STREQ(fl_sched_action_type_to_string(SCHED_UNSCHEDULE), "unschedule");
        ASSERT_STREQ(fl_sched_action_type_to_string(SCHED_SCHEDULE), "schedule");
        ASSERT_STREQ(fl_sched_action_type_to_string(SCHED_SET_REASON), "set-reason");
        ASSERT_NULL(fl_sched_action_type_to_string(_SCHED_ACTION_MAX));
        ASSERT_ERR(fl_scheduler_plan(NULL, NULL, NULL), -EINVAL);
}

TEST_MAIN(T(table), T(replace_cycle_settles), T(replace_cycle_from_running), T(unschedule_whys),
          T(replace_why), T(many_units_balance), T(large_cluster), T(random_clusters_settle),
          T(inert_units_change_no_plan), T(inert_rule), T(action_names))
