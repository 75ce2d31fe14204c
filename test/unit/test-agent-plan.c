/* SPDX-License-Identifier: MIT */
/* test-agent-plan.c: the agent's desired state (§6.2, §5.6) and task computation (§6.4), with
 * adoption of running units found on disk. */
#include <stdio.h>

#include "agent-plan.h"
#include "buf.h"
#include "strv.h"
#include "tests.h"
#include "unit-options.h"

/* Local stand-ins for the registry codec's names, so this test needs only the plan. */
static const char *state_str(JobState s) {
        return s == JOB_STATE_LAUNCHED ? "launched" : s == JOB_STATE_LOADED ? "loaded" : "inactive";
}
static JobState state_from(const char *s) {
        return streq(s, "launched") ? JOB_STATE_LAUNCHED
               : streq(s, "loaded") ? JOB_STATE_LOADED
                                    : JOB_STATE_INACTIVE;
}

#define H1 "1111111111111111111111111111111111111111"
#define H2 "2222222222222222222222222222222222222222"

/* ---- fl_agent_plan ---- */

/* Keeps a copy of s alive in *keep for the case; returns it. */
static const char *keep_str(char ***keep, const char *s) {
        if (fl_strv_extend(keep, s) < 0)
                abort();
        return (*keep)[fl_strv_length(*keep) - 1];
}

/* "name:hash:state[:nofile]" with state l(oaded)/L(aunched). */
static void parse_desired(const char *spec, AgentDesired *d, char ***keep) {
        _cleanup_strv_free_ char **f = NULL;

        if (fl_strv_split(spec, ":", &f) < 0 || fl_strv_length(f) < 3)
                abort();
        *d = (AgentDesired){
                .name = keep_str(keep, f[0]),
                .hash = streq(f[1], "1") ? H1 : H2,
                .state = streq(f[2], "L") ? JOB_STATE_LAUNCHED : JOB_STATE_LOADED,
                /* Any non-NULL pointer: the plan only looks at whether contents are known. */
                .file = f[3] && streq(f[3], "nofile") ? NULL : (const UnitFile *) d,
        };
}

/* "name:hash:state[:adopt:ActiveState]" with state i(nactive)/l(oaded)/L(aunched). */
static void parse_current(const char *spec, AgentCurrent *c, char ***keep) {
        _cleanup_strv_free_ char **f = NULL;

        if (fl_strv_split(spec, ":", &f) < 0 || fl_strv_length(f) < 3)
                abort();
        *c = (AgentCurrent){
                .name = keep_str(keep, f[0]),
                .hash = streq(f[1], "1")   ? H1
                        : streq(f[1], "2") ? H2
                                           : "",
                .state = streq(f[2], "L")   ? JOB_STATE_LAUNCHED
                         : streq(f[2], "l") ? JOB_STATE_LOADED
                                            : JOB_STATE_INACTIVE,
                .adoptable = f[3] && streq(f[3], "adopt"),
        };
        if (f[3] && f[4])
                c->active_state = keep_str(keep, f[4]);
}

static char *plan_string(const char *desired, const char *current) {
        _cleanup_strv_free_ char **ds = NULL, **cs = NULL, **keep = NULL;
        _cleanup_free_ AgentDesired *d = NULL;
        _cleanup_free_ AgentCurrent *c = NULL;
        _cleanup_free_ AgentTask *t = NULL;
        size_t nd, nc, nt = 0;
        Buf b = BUF_INIT;

        if (fl_strv_split(desired, " ", &ds) < 0 || fl_strv_split(current, " ", &cs) < 0)
                abort();
        nd = fl_strv_length(ds);
        nc = fl_strv_length(cs);
        d = new0(AgentDesired, nd + 1);
        c = new0(AgentCurrent, nc + 1);
        for (size_t i = 0; i < nd; i++)
                parse_desired(ds[i], &d[i], &keep);
        for (size_t i = 0; i < nc; i++)
                parse_current(cs[i], &c[i], &keep);
        if (fl_agent_plan(d, nd, c, nc, &t, &nt) < 0)
                abort();
        for (size_t i = 0; i < nt; i++) {
                if (i > 0)
                        (void) fl_buf_puts(&b, "|");
                (void) fl_buf_puts(&b, fl_agent_task_type_to_string(t[i].type));
                if (t[i].type != AGENT_TASK_RELOAD)
                        (void) fl_buf_printf(&b, " %s", t[i].name);
                if (t[i].type == AGENT_TASK_ADOPT)
                        (void) fl_buf_printf(&b, "=%s", state_str(t[i].adopt_state));
                if ((t[i].type == AGENT_TASK_LOAD || t[i].type == AGENT_TASK_START) &&
                    (!t[i].desired || !streq(t[i].desired->name, t[i].name)))
                        abort();
        }
        return fl_buf_steal(&b) ?: strdup("");
}

TEST(plan_table) {
        static const struct {
                const char *desired, *current, *want;
        } cases[] = {
                {"", "", ""},
                /* Fresh units. */
                {"b:1:L", "", "LoadUnit b|ReloadUnitFiles|StartUnit b"},
                {"b:1:l", "", "LoadUnit b|ReloadUnitFiles"},
                /* Not wanted any more. */
                {"", "a:1:l", "UnloadUnit a|ReloadUnitFiles"},
                {"", "a:1:L", "UnloadUnit a|ReloadUnitFiles"},
                {"", "a:-:i", "UnloadUnit a|ReloadUnitFiles"},
                /* Same hash: only state changes, never a reload. */
                {"a:1:l", "a:1:l", ""},
                {"a:1:L", "a:1:L", ""},
                {"a:1:L", "a:1:l", "StartUnit a"},
                {"a:1:l", "a:1:L", "StopUnit a"},
                {"a:1:L", "a:1:i", "LoadUnit a|ReloadUnitFiles|StartUnit a"},
                {"a:1:l", "a:1:i", "LoadUnit a|ReloadUnitFiles"},
                /* A changed unit is reloaded: unload, load, start if launched. */
                {"a:2:L", "a:1:L", "UnloadUnit a|LoadUnit a|ReloadUnitFiles|StartUnit a"},
                {"a:2:l", "a:1:L", "UnloadUnit a|LoadUnit a|ReloadUnitFiles"},
                {"a:2:L", "a:-:i", "UnloadUnit a|LoadUnit a|ReloadUnitFiles|StartUnit a"},
                /* Adoption: right file, running. */
                {"a:1:L", "a:1:i:adopt:active", "AdoptUnit a=launched"},
                {"a:1:L", "a:1:i:adopt:activating", "AdoptUnit a=launched"},
                {"a:1:L", "a:1:i:adopt:reloading", "AdoptUnit a=launched"},
                {"a:1:l", "a:1:i:adopt:active", "AdoptUnit a=launched|StopUnit a"},
                /* ...not running, wrong file or not wanted: fleet's way. */
                {"a:1:L", "a:1:i:adopt:failed", "LoadUnit a|ReloadUnitFiles|StartUnit a"},
                {"a:1:L", "a:1:i:adopt:inactive", "LoadUnit a|ReloadUnitFiles|StartUnit a"},
                {"a:1:L", "a:1:i:adopt", "LoadUnit a|ReloadUnitFiles|StartUnit a"},
                {"a:2:L", "a:1:i:adopt:active", "UnloadUnit a|LoadUnit a|ReloadUnitFiles|StartUnit a"},
                {"", "a:1:i:adopt:active", "UnloadUnit a|ReloadUnitFiles"},
                /* Already ours: adoptable no longer matters. */
                {"a:1:L", "a:1:L:adopt:active", ""},
                /* Contents missing from the registry. */
                {"a:1:L:nofile", "", ""},
                {"a:1:L:nofile", "a:1:i", "LoadUnit a|ReloadUnitFiles|StartUnit a"},
                {"a:1:L:nofile", "a:1:l", "StartUnit a"},
                {"a:2:L:nofile", "a:1:L", "UnloadUnit a|ReloadUnitFiles"},
                /* Several units: grouped by type, names in order within a group. */
                {"a:1:L c:1:l d:1:L", "b:1:L c:1:L d:1:l e:2:l",
                 "UnloadUnit b|UnloadUnit e|LoadUnit a|ReloadUnitFiles|StopUnit c|StartUnit a|StartUnit d"},
                {"x:1:L y:2:L", "x:2:L y:1:L z:1:i:adopt:active",
                 "UnloadUnit x|UnloadUnit y|UnloadUnit z|LoadUnit x|LoadUnit y|ReloadUnitFiles|StartUnit x|"
                 "StartUnit y"},
                {"m:1:L n:1:L", "m:1:i:adopt:active n:1:l", "AdoptUnit m=launched|StartUnit n"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *got = plan_string(cases[i].desired, cases[i].current);
                if (!streq(got, cases[i].want))
                        FAIL_AT("case %zu (desired '%s', current '%s'):\n   got  '%s'\n   want '%s'", i,
                                cases[i].desired, cases[i].current, got, cases[i].want);
        }
}

TEST(plan_reasons) {
        AgentDesired d[] = {
                {.name = "a.service", .hash = H2, .state = JOB_STATE_LAUNCHED, .file = (void *) 1}};
        AgentCurrent c[] = {{.name = "a.service", .hash = H1, .state = JOB_STATE_LAUNCHED},
                            {.name = "b.service", .hash = H1, .state = JOB_STATE_LOADED}};
        _cleanup_free_ AgentTask *t = NULL;
        size_t n = 0;

        ASSERT_OK(fl_agent_plan(d, 1, c, 2, &t, &n));
        ASSERT_EQ(n, 5);
        ASSERT_STREQ(t[0].reason, "unit loaded but hash differs to expected");
        ASSERT_STREQ(t[1].reason, "unit loaded but not scheduled here");
        ASSERT_STREQ(t[1].name, "b.service");
        ASSERT_STREQ(t[2].reason, "unit scheduled here but not loaded");
        ASSERT_EQ(t[3].type, AGENT_TASK_RELOAD);
        ASSERT_STREQ(t[4].reason, "unit currently loaded but desired state is launched");
        ASSERT_TRUE(t[4].desired == &d[0]);

        t = mfree(t);
        c[0].hash = H2;
        c[0].state = JOB_STATE_LAUNCHED;
        d[0].state = JOB_STATE_LOADED;
        ASSERT_OK(fl_agent_plan(d, 1, c, 1, &t, &n));
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(t[0].reason, "unit currently launched but desired state is loaded");
        ASSERT_STREQ(fl_agent_task_type_to_string(AGENT_TASK_RELOAD), "ReloadUnitFiles");
        ASSERT_NULL(fl_agent_task_type_to_string(_AGENT_TASK_MAX));
}

/* ---- fl_agent_desired_state ---- */

/* Unit spec: "name|target-state|target|unit text" (target "" = unscheduled). */
typedef struct Fixture {
        RegSnapshot s;
        RegMachine self;
} Fixture;

static void fixture_done(Fixture *f) {
        for (size_t i = 0; i < f->s.n_units; i++) {
                RegUnit *u = &f->s.units[i];
                free(u->name);
                free(u->target);
                fl_unit_file_free(u->file);
                fl_unit_requirements_done(&u->req);
        }
        free(f->s.units);
        fl_strv_free(f->self.metadata);
}

static void fixture_init(Fixture *f, const char *const *units, size_t n, const char *const *metadata) {
        *f = (Fixture){};
        f->s.units = new0(RegUnit, n + 1);
        for (size_t i = 0; i < n; i++) {
                _cleanup_strv_free_ char **p = NULL;
                RegUnit *u = &f->s.units[f->s.n_units++];
                uint8_t h[20];

                if (fl_strv_split(units[i], "|", &p) < 0 || fl_strv_length(p) < 2)
                        abort();
                u->name = strdup(p[0]);
                u->target_state = state_from(p[1]);
                if (p[2] && !streq(p[2], "-"))
                        u->target = strdup(p[2]);
                if (p[2] && p[3]) {
                        _cleanup_free_ char *text = strdup(p[3]);
                        for (char *c = text; *c; c++)
                                if (*c == ';')
                                        *c = '\n';
                        if (fl_unit_file_parse(text, strlen(text), &u->file, NULL) < 0 ||
                            fl_unit_requirements_parse(u->file, u->name, &u->req) < 0 ||
                            fl_unit_file_hash(u->file, h) < 0)
                                abort();
                        fl_hash_to_hex(h, u->hash);
                        u->global = u->req.global;
                } else
                        strcpy(u->hash, H1);
        }
        f->self.id = (char *) "m1";
        if (metadata)
                for (const char *const *m = metadata; *m; m++)
                        if (fl_strv_extend(&f->self.metadata, *m) < 0)
                                abort();
        f->self.n_metadata = fl_strv_length(f->self.metadata) / 2;
}

static char *desired_string(const char *const *units, size_t n, const char *const *metadata) {
        _cleanup_(fl_agent_desired_state_done) AgentDesiredState d = {};
        Fixture f;
        Buf b = BUF_INIT;

        fixture_init(&f, units, n, metadata);
        if (fl_agent_desired_state(&f.s, &f.self, &d) < 0)
                abort();
        for (size_t i = 0; i < d.n_units; i++)
                (void) fl_buf_printf(&b, "%s%s=%s%s", i ? " " : "", d.units[i].name,
                                     state_str(d.units[i].state), d.units[i].file ? "" : "(nofile)");
        for (size_t i = 0; i < d.n_skipped; i++)
                (void) fl_buf_printf(&b, " !%s", d.skipped[i].name);
        fixture_done(&f);
        return fl_buf_steal(&b) ?: strdup("");
}

#define SVC "[Service];ExecStart=/bin/true;"
#define UNITS(...) ((const char *const[]){__VA_ARGS__}), ELEMENTSOF(((const char *const[]){__VA_ARGS__}))

TEST(desired_scheduled) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        a = desired_string(UNITS("a.service|launched|m1|" SVC, "b.service|loaded|m1|" SVC,
                                 "c.service|launched|m2|" SVC, "d.service|launched|-|" SVC,
                                 "e.service|inactive|m1|" SVC),
                           NULL);
        ASSERT_STREQ(a, "a.service=launched b.service=loaded");
        /* Contents missing: still desired (the file on disk may have them); no metadata needed. */
        b = desired_string(UNITS("a.service|launched|m1"), NULL);
        ASSERT_STREQ(b, "a.service=launched(nofile)");
        /* The agent trusts the engine: MachineID/metadata are not re-checked for scheduled units. */
        c = desired_string(UNITS("a.service|launched|m1|[X-Fleet];MachineMetadata=role=db;" SVC), NULL);
        ASSERT_STREQ(c, "a.service=launched");
}

TEST(desired_global) {
        static const char *const meta[] = {"az", "1", "role", "web", NULL};
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        a = desired_string(
                UNITS("g1.service|launched|-|[X-Fleet];Global=true;" SVC,
                      "g2.service|loaded|-|[X-Fleet];Global=true;MachineMetadata=role=web;" SVC,
                      "g3.service|launched|-|[X-Fleet];Global=true;MachineMetadata=role=db;" SVC,
                      "g4.service|launched|-|[X-Fleet];Global=true;"
                      "MachineMetadata=role=db;MachineMetadata=role=web;MachineMetadata=az=1;" SVC,
                      "g5.service|inactive|-|[X-Fleet];Global=true;" SVC,
                      "g6.service|launched|-|[X-Fleet];Global=yes;MachineMetadata=az=2;" SVC),
                meta);
        ASSERT_STREQ(a, "g1.service=launched g2.service=loaded g4.service=launched");
        /* No metadata at all: only unconstrained globals. */
        b = desired_string(UNITS("g1.service|launched|-|[X-Fleet];Global=true;" SVC,
                                 "g2.service|loaded|-|[X-Fleet];Global=true;MachineMetadata=role=web;" SVC),
                           NULL);
        ASSERT_STREQ(b, "g1.service=launched");
        /* Global without contents is unknown: left out. */
        c = desired_string(UNITS("g.service|launched|-"), NULL);
        ASSERT_STREQ(c, "");
}

TEST(desired_conflicts) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        /* First in name order wins, in either direction of the Conflicts glob. */
        a = desired_string(UNITS("a.service|launched|m1|[X-Fleet];Conflicts=b*;" SVC,
                                 "b.service|launched|m1|" SVC,
                                 "c.service|launched|m1|[X-Fleet];Conflicts=a.service;" SVC,
                                 "d.service|launched|m1|" SVC),
                           NULL);
        ASSERT_STREQ(a, "a.service=launched d.service=launched !b.service !c.service");
        /* A global unit conflicting with one scheduled here (the conflict-global fixtures). */
        b = desired_string(UNITS("conflict-global.0.service|launched|-|[X-Fleet];Global=true;Conflicts="
                                 "conflict-global.*;" SVC,
                                 "conflict-global.1.service|launched|-|[X-Fleet];Global=true;Conflicts="
                                 "conflict-global.*;" SVC),
                           NULL);
        ASSERT_STREQ(b, "conflict-global.0.service=launched !conflict-global.1.service");
        /* Inactive units take no room: they do not block what conflicts with them. */
        c = desired_string(UNITS("a.service|inactive|m1|[X-Fleet];Conflicts=b.service;" SVC,
                                 "b.service|launched|m1|" SVC),
                           NULL);
        ASSERT_STREQ(c, "b.service=launched");
}

TEST(desired_unsafe_names) {
        _cleanup_free_ char *a = NULL;

        a = desired_string(UNITS("-x.service|launched|m1|" SVC, "ok.service|launched|m1|" SVC,
                                 "t@.service|launched|m1|" SVC, "u.target|launched|m1|" SVC,
                                 "v..service|launched|m1|" SVC,
                                 "w.socket|loaded|m1|[Socket];ListenStream=1;",
                                 "x\\x2f.service|launched|m1|" SVC),
                           NULL);
        ASSERT_STREQ(a, "ok.service=launched w.socket=loaded !-x.service !t@.service !u.target !v..service "
                        "!x\\x2f.service");
}

TEST(active_states) {
        ASSERT_TRUE(fl_agent_active_state_running("active"));
        ASSERT_TRUE(fl_agent_active_state_running("activating"));
        ASSERT_TRUE(fl_agent_active_state_running("reloading"));
        ASSERT_FALSE(fl_agent_active_state_running("deactivating"));
        ASSERT_FALSE(fl_agent_active_state_running("failed"));
        ASSERT_FALSE(fl_agent_active_state_running(NULL));
}

TEST_MAIN(T(plan_table), T(plan_reasons), T(desired_scheduled), T(desired_global), T(desired_conflicts),
          T(desired_unsafe_names), T(active_states))
