/* SPDX-License-Identifier: MIT */
/* fleet-bench.c: load generator for test/bench.sh only (never part of the fleet binary, never used
 * by the functional suites). Links libfleet-core and talks to etcd through the same registry calls
 * as fleetd, so what it puts on etcd is byte-for-byte what real agents would.
 *
 *   fleet-bench populate --etcd URL --prefix P --units N [--start I] [--state S] [--machines M
 *                        --id-prefix X [--schedule] [--ttl SEC]] [--parallel K]
 *       Creates units bench-NNNNN.service (I .. I+N-1) with target state S (inactive, loaded,
 *       launched; default launched) as `fleetctl submit` + set-state would (create_unit). With
 *       --machines, registers M machines (TTL --ttl, default 3600 s); with --schedule, also
 *       schedules unit i to machine i % M and publishes what an agent would: the job-state
 *       heartbeat (launched units) and states/<unit>/<machine> (TTL --ttl). A static cluster for
 *       the list benchmarks: nothing refreshes the TTLs afterwards.
 *
 *   fleet-bench sim --etcd URL --prefix P --machines N --id-prefix X [--ttl SEC] [--parallel K]
 *                   [--metadata K=V] [--presence-only]
 *       N simulated agents in one process (SIMULATION mode). Each registers machines/<id>/object
 *       with TTL and heartbeats it every ttl/2, and, for every unit the registry schedules to it,
 *       does what fleetd's agent does on the registry: the job-state heartbeat of launched units
 *       and states/<unit>/<machine> (loaded/active/running, or loaded/inactive/dead for loaded
 *       units), with TTL ttl, refreshed every ttl*4/5 (ttl/2 for ttl <= 10 s), deleted when the
 *       unit leaves the machine. Units live in memory; systemd is never called. The agents'
 *       timers are spread evenly over the period (real machines are not synchronized). All
 *       agents share one registry mirror and at most --parallel (default 64) etcd requests in
 *       flight, presence first (a real agent has its own connection; one process must not open
 *       thousands). --presence-only: machines only register and heartbeat, nothing is published
 *       about units (isolates the engine from the agents' load on etcd).
 *       Commands on stdin, one per line; events on stdout, "EVENT ARGS... t=<unix time>"
 *       ("registered N t=" once every machine is registered):
 *         expect N      print "placed N t=" once N non-inactive units are scheduled to our live
 *                       machines, and "running N t=" once all their states are written
 *         kill I        power cut of machine I (0-based) right after one last heartbeat: it
 *                       stops beating and publishing, deletes nothing. Prints "killed ID units=K
 *                       t=", then "expired ID dt=" when the registry drops it and "replaced ID
 *                       units=K dt=S after_expiry=S" once all its K units are scheduled to live
 *                       machines again
 *         busiest       print "busiest I units=K" (the live machine with most units)
 *         stats         print "stats ..." (requests, errors, queue)
 *       Exits on SIGTERM/SIGINT or end of stdin.
 *
 *   fleet-bench decode --etcd URL --prefix P [--n N]
 *       Reads the prefix once, then times (CPU) the daemons' mirror (lib/registry-store.c): a
 *       full load, and N single events (default 2,000) each followed by the snapshot read; and,
 *       for comparison, one full decode of all keys (what the mirror did after every change
 *       before it was incremental). Prints "decode keys=.. units=.. states=.. machines=..
 *       full_ms=.. load_ms=.. event_us=..".
 *
 *   fleet-bench rtt --etcd URL --key K [--n N] [--recursive] [--write]
 *       N blocking GETs of K over one keep-alive connection (the etcd client fleet uses); prints
 *       "rtt median_ms=.. p90_ms=.. bytes=..". --write: N blocking PUTs instead, each creating
 *       K/<i> with the {"Raw":...} value of a submitted unit (bytes= is then the value's size).
 *
 *   fleet-bench write --etcd URL --prefix P --workload submit|submit-check|place|refresh
 *                     --units N [--parallel K] [--n REFRESHES] [--ttl SEC] [--watch]
 *       etcd's own write capacity, through fleet's etcd client (lib/etcd.h, async on sd-event)
 *       with at most K units in flight (default 32). Every key and value is built before the
 *       clock starts; the clock runs from the first request to the last answer.
 *         submit        what `fleetctl submit` makes the daemon write for N units (create_unit,
 *                       lib/registry-write.c): per unit unit/<hash> {"Raw":...}, job/<u>/object,
 *                       job/<u>/target-state, the three sequential; units in parallel
 *         submit-check  the same plus create_unit's fourth request, the quorum GET of the object
 *         place         the engine's schedule: one create-only PUT of job/<u>/target per unit
 *         refresh       an agent's heartbeat of an unchanged key: first (untimed) N keys
 *                       job/<u>/job-state with TTL, then REFRESHES (default 10,000) PUTs with
 *                       ttl, refresh=true, prevExist=true and prevValue (as ttl_key_step) over them
 *       --watch: a recursive stream watch on P is open first (as every fleetd holds one on its
 *       prefix; etcd encodes and flushes each event to it), and a run ends only when every
 *       write has also come back as an event, as a daemon's mirror must see them.
 *       Prints "write workload=.. units=.. parallel=.. watch=0|1 events=.. requests=.. errors=..
 *       seconds=.. per_s=.. lat_median_ms=.. lat_p90_ms=.. client_cpu_ms=.. value_bytes=..".
 *       The caller deletes P. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "etcd.h"
#include "log.h"
#include "registry-internal.h" /* decode: times the mirror's own snapshot build */
#include "registry.h"
#include "strv.h"
#include "strv.h"
#include "unit-file.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)
#define SIM_KICK_DELAY_USEC (50 * USEC_PER_MSEC)   /* as the agent's */
#define SIM_PASS_INTERVAL_USEC (5 * USEC_PER_SEC) /* as the agent's */
#define SIM_TICK_USEC (100 * USEC_PER_MSEC)
/* One pass serves every simulated agent, but decoding a 10,000-unit snapshot costs 100+ ms of
 * CPU: passes are at least this far apart, and at least 3x the last decoding's CPU time, so the
 * load generator leaves most of the CPU to etcd and the engine. (It bounds how late "placed"
 * and "replaced" are noticed; bench.sh reports the gap as the resolution.) */
#define SIM_PASS_GAP_USEC (200 * USEC_PER_MSEC)

typedef struct Opts {
        char **endpoints;
        const char *prefix;
        unsigned units, start, machines, parallel, n;
        const char *id_prefix;
        const char *key;
        const char *metadata;
        JobState state;
        const char *workload;
        bool schedule, recursive, presence_only, write, watch;
        uint64_t ttl_sec;
} Opts;

static double now_real(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static uint64_t now_mono(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* CPU time of this process: on a shared 2-core box wall time says little about a computation. */
static uint64_t now_cpu(void) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void machine_id(const char *prefix, unsigned i, char ret[33]) {
        size_t l = strlen(prefix);
        snprintf(ret, 33, "%s%0*x", prefix, (int) (32 - l), i);
}

static int unit_for(unsigned i, char **ret_name, UnitFile **ret_file, char ret_hash[41]) {
        _cleanup_free_ char *text = NULL, *err = NULL;
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;
        uint8_t h[20];
        int r;

        if (asprintf(ret_name, "bench-%05u.service", i) < 0)
                return -ENOMEM;
        if (asprintf(&text, "[Unit]\nDescription=bench unit %u\n\n[Service]\nExecStart=/bin/sleep infinity\n", i) <
            0)
                return -ENOMEM;
        r = fl_unit_file_parse(text, strlen(text), &u, &err);
        if (r < 0)
                return r;
        r = fl_unit_file_hash(u, h);
        if (r < 0)
                return r;
        fl_hash_to_hex(h, ret_hash);
        *ret_file = TAKE_PTR(u);
        return 0;
}

static int open_registry(const Opts *o, sd_event *e, Registry **ret) {
        RegistryConfig rc = {
                .endpoints = o->endpoints,
                .prefix = o->prefix,
                .request_timeout_usec = 10 * USEC_PER_SEC,
        };
        return fl_registry_new(&rc, e, ret);
}

static int build_machine(const Opts *o, unsigned i, RegMachine *m) {
        char id[33];

        machine_id(o->id_prefix, i, id);
        *m = (RegMachine) {};
        m->id = strdup(id);
        if (asprintf(&m->public_ip, "10.%u.%u.%u", 100 + (i >> 16) % 100, (i >> 8) & 255, i & 255) < 0)
                m->public_ip = NULL;
        m->version = strdup("1.0.0");
        m->metadata = new0(char *, 3);
        if (!m->id || !m->public_ip || !m->version || !m->metadata)
                return -ENOMEM;
        if (o->metadata) {
                const char *eq = strchr(o->metadata, '=');
                if (!eq)
                        return -EINVAL;
                m->metadata[0] = strndup(o->metadata, (size_t) (eq - o->metadata));
                m->metadata[1] = strdup(eq + 1);
                if (!m->metadata[0] || !m->metadata[1])
                        return -ENOMEM;
                m->n_metadata = 1;
        }
        m->disable_engine = true;
        return 0;
}

/* ======================================================================================== */
/* populate                                                                                 */

typedef struct Pop {
        const Opts *o;
        sd_event *event;
        Registry *reg;
        unsigned next, done, in_flight, errors;
        unsigned machines_done;
} Pop;

typedef struct PopUnit {
        Pop *p;
        unsigned i, step;
        char *name;
        UnitFile *file;
        char hash[41];
        char machine[33];
} PopUnit;

static void pop_pump(Pop *p);

static void pop_unit_free(PopUnit *u) {
        free(u->name);
        fl_unit_file_free(u->file);
        free(u);
}

static void pop_unit_step(Registry *r, int error, void *userdata) {
        PopUnit *u = userdata;
        Pop *p = u->p;
        const Opts *o = p->o;
        int k = 0;

        if (error < 0) {
                if (p->errors++ < 5)
                        fprintf(stderr, "fleet-bench: %s step %u: %s\n", u->name, u->step, strerror(-error));
                goto finish;
        }
        /* create_unit, then (scheduled units) schedule, job-state heartbeat (launched units),
         * unit state; step counts the requests done. */
        u->step++;
        if (u->step == 1 && !(o->schedule && o->state != JOB_STATE_INACTIVE))
                goto finish;
        if (u->step == 1)
                k = fl_registry_schedule_async(r, u->name, u->machine, pop_unit_step, u);
        else if (u->step == 2 && o->state == JOB_STATE_LAUNCHED)
                k = fl_registry_job_heartbeat_async(r, u->name, u->machine, o->ttl_sec, pop_unit_step, u);
        else if (u->step <= 3) {
                bool run = o->state == JOB_STATE_LAUNCHED;
                RegUnitState st = {
                        .name = u->name,
                        .machine_id = u->machine,
                        .load_state = (char *) "loaded",
                        .active_state = (char *) (run ? "active" : "inactive"),
                        .sub_state = (char *) (run ? "running" : "dead"),
                };
                memcpy(st.hash, u->hash, sizeof(st.hash));
                u->step = 3;
                k = fl_registry_save_unit_state_async(r, &st, o->ttl_sec, pop_unit_step, u);
        } else
                goto finish;
        if (k >= 0)
                return;
        p->errors++;
finish:
        p->in_flight--;
        p->done++;
        pop_unit_free(u);
        pop_pump(p);
}

static void pop_pump(Pop *p) {
        const Opts *o = p->o;

        while (p->in_flight < o->parallel && p->next < o->units) {
                PopUnit *u = new0(PopUnit, 1);
                int k;

                if (!u)
                        goto oom;
                u->p = p;
                u->i = o->start + p->next++;
                k = unit_for(u->i, &u->name, &u->file, u->hash);
                if (k < 0) {
                        pop_unit_free(u);
                        goto oom;
                }
                if (o->machines > 0)
                        machine_id(o->id_prefix, u->i % o->machines, u->machine);
                k = fl_registry_create_unit_async(p->reg, u->name, u->file, o->state, pop_unit_step, u);
                if (k < 0) {
                        pop_unit_free(u);
                        p->errors++;
                        p->done++;
                        continue;
                }
                p->in_flight++;
        }
        if (p->done == o->units)
                (void) sd_event_exit(p->event, p->errors > 0);
        return;
oom:
        fprintf(stderr, "fleet-bench: out of memory\n");
        (void) sd_event_exit(p->event, 1);
}

typedef struct PopMachine {
        Pop *p;
        RegMachine m;
        bool beat;
} PopMachine;

static void pop_machine_done(Registry *r, int error, void *userdata) {
        PopMachine *pm = userdata;
        Pop *p = pm->p;

        if (error == -EEXIST && !pm->beat) {
                pm->beat = true;
                if (fl_registry_machine_beat_async(r, &pm->m, p->o->ttl_sec, pop_machine_done, pm) >= 0)
                        return;
        } else if (error < 0)
                p->errors++;
        fl_reg_machine_done(&pm->m);
        free(pm);
        if (++p->machines_done == p->o->machines)
                pop_pump(p);
}

static int cmd_populate(const Opts *o) {
        _cleanup_(fl_registry_freep) Registry *reg = NULL;
        sd_event *e = NULL;
        Pop p = { .o = o };
        double t0 = now_real();
        int r;

        if (o->machines > 0 && !o->id_prefix)
                return fprintf(stderr, "fleet-bench: --machines needs --id-prefix\n"), 2;
        if (o->schedule && o->machines == 0)
                return fprintf(stderr, "fleet-bench: --schedule needs --machines\n"), 2;
        r = sd_event_default(&e);
        if (r < 0)
                return 1;
        r = open_registry(o, e, &reg);
        if (r < 0)
                return fprintf(stderr, "fleet-bench: registry: %s\n", strerror(-r)), 1;
        p.event = e;
        p.reg = reg;
        for (unsigned i = 0; i < o->machines; i++) {
                PopMachine *pm = new0(PopMachine, 1);
                if (!pm || build_machine(o, i, &pm->m) < 0)
                        return 1;
                pm->p = &p;
                r = fl_registry_machine_register_async(reg, &pm->m, o->ttl_sec, pop_machine_done, pm);
                if (r < 0)
                        return fprintf(stderr, "fleet-bench: register: %s\n", strerror(-r)), 1;
        }
        if (o->machines == 0)
                pop_pump(&p);
        if (o->units == 0 && o->machines == 0)
                return 0;
        r = sd_event_loop(e);
        reg = fl_registry_free(reg);
        sd_event_unref(e);
        printf("populated units=%u machines=%u errors=%u seconds=%.3f\n", o->units, o->machines, p.errors,
               now_real() - t0);
        return r == 0 && p.errors == 0 ? 0 : 1;
}

/* ======================================================================================== */
/* sim                                                                                      */

typedef struct Sim Sim;

/* What one simulated agent publishes about one unit: job/<unit>/job-state and
 * states/<unit>/<machine>, like applets/agent-publish.c (one request per key at a time). */
typedef struct SimKey {
        char *unit;
        unsigned m;
        bool hb_want, hb_exists, hb_dirty, hb_busy;
        bool st_want, st_exists, st_dirty, st_busy;
        bool st_acked; /* the current wanted state was written */
        bool queued;
        uint64_t seen;
        char hash[41];
        bool running;
        struct SimKey *hnext;          /* hash chain */
        struct SimKey *qnext;          /* send queue */
        struct SimKey *mprev, *mnext;  /* machine's list */
} SimKey;

typedef struct SimMachine {
        RegMachine obj;
        unsigned idx;
        bool registered, beat_busy, beat_queued, alive, dying;
        uint64_t next_beat, next_refresh;
        struct SimMachine *qnext;
        SimKey *keys;
        unsigned n_keys;
} SimMachine;

typedef enum SimOpKind { OP_BEAT, OP_HB, OP_HB_CLEAR, OP_ST_SAVE, OP_ST_REMOVE } SimOpKind;

typedef struct SimOp {
        Sim *sim;
        SimOpKind kind;
        SimKey *key;
        SimMachine *machine;
} SimOp;

typedef struct SimKill {
        unsigned m;
        double t_killed, t_expired;
        char **units;
        bool expired, replaced;
} SimKill;

struct Sim {
        const Opts *o;
        sd_event *event;
        Registry *reg;
        SimMachine *machines;
        unsigned n;
        uint64_t ttl_usec, refresh_usec;

        SimKey **buckets;
        size_t n_buckets, n_keys;
        SimKey *q_head, *q_tail;
        SimMachine *mq_head, *mq_tail;
        unsigned in_flight;
        uint64_t gen;

        sd_event_source *tick, *kick, *pass_timer, *input;
        char inbuf[4096];
        size_t inlen;

        uint64_t ops_sent, ops_failed, beats_failed;
        unsigned expect;
        bool placed_reported, running_reported;
        unsigned n_placed, n_running, n_registered;
        SimKill *kills;
        size_t n_kills;
        uint64_t last_status;
        uint64_t last_pass;                     /* CLOCK_MONOTONIC end of the last pass */
        uint64_t snap_usec, snap_max_usec, n_snaps; /* cost of fl_registry_snapshot() */
        uint64_t snap_last_usec;
};

static void sim_pump(Sim *s);
static void sim_kick(Sim *s);

static void emit(const char *fmt, ...) _printf_(1, 2);
static void emit(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fflush(stdout);
}

static uint64_t hash_str(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037);
        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * UINT64_C(1099511628211);
        return h;
}

static size_t key_bucket(Sim *s, const char *unit, unsigned m) {
        return (size_t) ((hash_str(unit) * 31 + m) % s->n_buckets);
}

static SimKey *key_find(Sim *s, const char *unit, unsigned m) {
        for (SimKey *k = s->buckets[key_bucket(s, unit, m)]; k; k = k->hnext)
                if (k->m == m && streq(k->unit, unit))
                        return k;
        return NULL;
}

static SimKey *key_get(Sim *s, const char *unit, unsigned m) {
        SimKey *k = key_find(s, unit, m);
        SimMachine *mm = &s->machines[m];
        size_t b;

        if (k)
                return k;
        k = new0(SimKey, 1);
        if (!k)
                return NULL;
        k->unit = strdup(unit);
        if (!k->unit)
                return mfree(k);
        k->m = m;
        b = key_bucket(s, unit, m);
        k->hnext = s->buckets[b];
        s->buckets[b] = k;
        k->mnext = mm->keys;
        if (mm->keys)
                mm->keys->mprev = k;
        mm->keys = k;
        mm->n_keys++;
        s->n_keys++;
        return k;
}

static bool key_idle(const SimKey *k) {
        return !k->hb_want && !k->hb_exists && !k->st_want && !k->st_exists && !k->hb_dirty && !k->st_dirty &&
               !k->hb_busy && !k->st_busy && !k->queued;
}

static void key_drop(Sim *s, SimKey *k) {
        SimMachine *mm = &s->machines[k->m];
        SimKey **pp = &s->buckets[key_bucket(s, k->unit, k->m)];

        while (*pp != k)
                pp = &(*pp)->hnext;
        *pp = k->hnext;
        if (k->mprev)
                k->mprev->mnext = k->mnext;
        else
                mm->keys = k->mnext;
        if (k->mnext)
                k->mnext->mprev = k->mprev;
        mm->n_keys--;
        s->n_keys--;
        free(k->unit);
        free(k);
}

static void key_enqueue(Sim *s, SimKey *k) {
        if (k->queued || !(k->hb_dirty || k->st_dirty))
                return;
        k->queued = true;
        k->qnext = NULL;
        if (s->q_tail)
                s->q_tail->qnext = k;
        else
                s->q_head = k;
        s->q_tail = k;
}

static void machine_enqueue(Sim *s, SimMachine *m) {
        if (m->beat_queued || m->beat_busy)
                return;
        m->beat_queued = true;
        m->qnext = NULL;
        if (s->mq_tail)
                s->mq_tail->qnext = m;
        else
                s->mq_head = m;
        s->mq_tail = m;
}

static void sim_op_done(Registry *r, int error, void *userdata);

static int sim_op_send(Sim *s, SimOpKind kind, SimKey *k, SimMachine *m) {
        SimOp *op = new0(SimOp, 1);
        const char *id;
        int r;

        if (!op)
                return -ENOMEM;
        *op = (SimOp) { .sim = s, .kind = kind, .key = k, .machine = m };
        id = k ? s->machines[k->m].obj.id : m->obj.id;
        switch (kind) {
        case OP_BEAT:
                r = m->registered ? fl_registry_machine_beat_async(s->reg, &m->obj, s->o->ttl_sec, sim_op_done, op)
                                  : fl_registry_machine_register_async(s->reg, &m->obj, s->o->ttl_sec, sim_op_done,
                                                                       op);
                break;
        case OP_HB:
                r = fl_registry_job_heartbeat_async(s->reg, k->unit, id, s->o->ttl_sec, sim_op_done, op);
                break;
        case OP_HB_CLEAR:
                r = fl_registry_job_clear_heartbeat_async(s->reg, k->unit, sim_op_done, op);
                break;
        case OP_ST_SAVE: {
                RegUnitState st = {
                        .name = k->unit,
                        .machine_id = (char *) id,
                        .load_state = (char *) "loaded",
                        .active_state = (char *) (k->running ? "active" : "inactive"),
                        .sub_state = (char *) (k->running ? "running" : "dead"),
                };
                memcpy(st.hash, k->hash, sizeof(st.hash));
                r = fl_registry_save_unit_state_async(s->reg, &st, s->o->ttl_sec, sim_op_done, op);
                break;
        }
        case OP_ST_REMOVE:
                r = fl_registry_remove_unit_state_async(s->reg, k->unit, id, sim_op_done, op);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                free(op);
                return r;
        }
        s->in_flight++;
        s->ops_sent++;
        return 0;
}

static void sim_op_done(Registry *r, int error, void *userdata) {
        SimOp *op = userdata;
        Sim *s = op->sim;
        SimKey *k = op->key;
        bool ok = error >= 0 || error == -ENOENT;

        s->in_flight--;
        if (!ok)
                s->ops_failed++;
        switch (op->kind) {
        case OP_BEAT: {
                SimMachine *m = op->machine;
                m->beat_busy = false;
                if ((error >= 0 || error == -EEXIST) && !m->registered) {
                        m->registered = true;
                        if (++s->n_registered == s->n)
                                emit("registered %u t=%.3f\n", s->n, now_real());
                }
                if (error < 0 && error != -EEXIST) {
                        s->beats_failed++;
                        if (m->alive)
                                machine_enqueue(s, m); /* retry at once: presence matters most */
                }
                if (error == -EEXIST)
                        machine_enqueue(s, m);
                if (m->dying) {
                        /* The last beat landed: from now on the machine is silent. */
                        m->dying = false;
                        m->alive = false;
                        for (size_t i = 0; i < s->n_kills; i++)
                                if (s->kills[i].m == m->idx && s->kills[i].t_killed == 0) {
                                        s->kills[i].t_killed = now_real();
                                        emit("killed %s units=%zu t=%.3f\n", m->obj.id,
                                             fl_strv_length(s->kills[i].units), s->kills[i].t_killed);
                                }
                }
                break;
        }
        case OP_HB:
                k->hb_busy = false;
                break;
        case OP_HB_CLEAR:
                k->hb_busy = false;
                if (ok && !k->hb_want)
                        k->hb_exists = false;
                break;
        case OP_ST_SAVE:
                k->st_busy = false;
                if (error >= 0 && k->st_want && !k->st_dirty)
                        k->st_acked = true;
                break;
        case OP_ST_REMOVE:
                k->st_busy = false;
                if (ok && !k->st_want)
                        k->st_exists = false;
                break;
        }
        if (k) {
                if (!s->machines[k->m].alive && !s->machines[k->m].dying)
                        ; /* a dead machine's keys stay as they are */
                else if (key_idle(k))
                        key_drop(s, k);
                else
                        key_enqueue(s, k);
        }
        free(op);
        sim_pump(s);
}

static void sim_pump(Sim *s) {
        while (s->in_flight < s->o->parallel && (s->mq_head || s->q_head)) {
                if (s->mq_head) {
                        SimMachine *m = s->mq_head;
                        s->mq_head = m->qnext;
                        if (!s->mq_head)
                                s->mq_tail = NULL;
                        m->beat_queued = false;
                        if (!m->alive && !m->dying)
                                continue;
                        if (sim_op_send(s, OP_BEAT, NULL, m) >= 0)
                                m->beat_busy = true;
                        continue;
                }
                SimKey *k = s->q_head;
                s->q_head = k->qnext;
                if (!s->q_head)
                        s->q_tail = NULL;
                k->queued = false;
                if (!s->machines[k->m].alive)
                        continue; /* dead: publishes nothing any more */
                if (k->hb_dirty && !k->hb_busy) {
                        k->hb_dirty = false;
                        if (k->hb_want || k->hb_exists) {
                                if (sim_op_send(s, k->hb_want ? OP_HB : OP_HB_CLEAR, k, NULL) >= 0) {
                                        k->hb_busy = true;
                                        if (k->hb_want)
                                                k->hb_exists = true;
                                } else
                                        s->ops_failed++;
                        }
                }
                if (k->st_dirty && !k->st_busy) {
                        k->st_dirty = false;
                        if (k->st_want || k->st_exists) {
                                if (sim_op_send(s, k->st_want ? OP_ST_SAVE : OP_ST_REMOVE, k, NULL) >= 0) {
                                        k->st_busy = true;
                                        if (k->st_want)
                                                k->st_exists = true;
                                } else
                                        s->ops_failed++;
                        }
                }
                if (key_idle(k))
                        key_drop(s, k);
        }
}

/* One pass of every simulated agent over the mirror: what is scheduled where. */
static void sim_pass(Sim *s) {
        uint64_t t0 = now_cpu(), dt;
        const RegSnapshot *snap = fl_registry_snapshot(s->reg);
        size_t plen = strlen(s->o->id_prefix);
        unsigned placed = 0, running = 0;

        dt = now_cpu() - t0;
        if (dt > 1000) { /* a rebuild, not the cached view */
                s->snap_usec += dt;
                s->n_snaps++;
                s->snap_max_usec = MAX(s->snap_max_usec, dt);
                s->snap_last_usec = dt;
        }
        if (!snap)
                return;
        s->gen++;
        for (size_t i = 0; i < snap->n_units; i++) {
                const RegUnit *u = &snap->units[i];
                unsigned long idx;
                char *end;
                SimKey *k;
                bool run;

                if (u->target_state == JOB_STATE_INACTIVE || !u->target || strlen(u->target) != 32 ||
                    !startswith(u->target, s->o->id_prefix))
                        continue;
                idx = strtoul(u->target + plen, &end, 16);
                if (*end || idx >= s->n)
                        continue;
                if (!s->machines[idx].alive)
                        continue;
                placed++;
                if (s->o->presence_only)
                        continue;
                k = key_get(s, u->name, (unsigned) idx);
                if (!k) {
                        fprintf(stderr, "fleet-bench: out of memory\n");
                        continue;
                }
                k->seen = s->gen;
                run = u->target_state == JOB_STATE_LAUNCHED;
                if (k->hb_want != run) {
                        k->hb_want = run;
                        k->hb_dirty = true;
                }
                if (!k->st_want || k->running != run || !streq(k->hash, u->hash)) {
                        k->st_want = true;
                        k->running = run;
                        k->st_acked = false;
                        memcpy(k->hash, u->hash, sizeof(k->hash));
                        k->st_dirty = true;
                }
                if (k->st_acked)
                        running++;
                key_enqueue(s, k);
        }
        /* Units that left a live machine: the agent unloads them and deletes what it wrote. */
        for (unsigned m = 0; m < s->n; m++) {
                if (!s->machines[m].alive)
                        continue;
                for (SimKey *k = s->machines[m].keys, *next; k; k = next) {
                        next = k->mnext;
                        if (k->seen == s->gen)
                                continue;
                        if (k->hb_want || k->st_want) {
                                k->hb_want = false;
                                k->hb_dirty = k->hb_exists;
                                k->st_want = false;
                                k->st_acked = false;
                                k->st_dirty = k->st_exists;
                        }
                        if (key_idle(k))
                                key_drop(s, k);
                        else
                                key_enqueue(s, k);
                }
        }
        s->n_placed = placed;
        s->n_running = running;
        if (s->expect > 0 && !s->placed_reported && placed >= s->expect) {
                s->placed_reported = true;
                emit("placed %u t=%.3f\n", placed, now_real());
        }
        if (s->expect > 0 && !s->running_reported && running >= s->expect) {
                s->running_reported = true;
                emit("running %u t=%.3f\n", running, now_real());
        }
        for (size_t i = 0; i < s->n_kills; i++) {
                SimKill *kl = &s->kills[i];
                const char *id = s->machines[kl->m].obj.id;
                bool all = true;

                if (kl->t_killed == 0 || kl->replaced)
                        continue;
                if (!kl->expired && !fl_reg_snapshot_find_machine(snap, id)) {
                        kl->expired = true;
                        kl->t_expired = now_real();
                        emit("expired %s dt=%.3f\n", id, kl->t_expired - kl->t_killed);
                }
                STRV_FOREACH(n, kl->units) {
                        const RegUnit *u = fl_reg_snapshot_find_unit(snap, *n);
                        if (u && (!u->target || streq(u->target, id) ||
                                  !fl_reg_snapshot_find_machine(snap, u->target))) {
                                all = false;
                                break;
                        }
                }
                if (all && kl->expired) {
                        double t = now_real();
                        kl->replaced = true;
                        emit("replaced %s units=%zu dt=%.3f after_expiry=%.3f\n", id, fl_strv_length(kl->units),
                             t - kl->t_killed, t - kl->t_expired);
                }
        }
        s->last_pass = now_mono();
        sim_pump(s);
}

static int sim_kick_cb(sd_event_source *es, uint64_t usec, void *userdata) {
        Sim *s = userdata;
        s->kick = sd_event_source_disable_unref(s->kick);
        sim_pass(s);
        return 0;
}

static void sim_kick(Sim *s) {
        uint64_t gap = MAX(SIM_PASS_GAP_USEC, 3 * s->snap_last_usec);
        uint64_t when = MAX(now_mono() + SIM_KICK_DELAY_USEC, s->last_pass + gap);

        if (s->kick)
                return;
        (void) sd_event_add_time(s->event, &s->kick, CLOCK_MONOTONIC, when, 0, sim_kick_cb, s);
}

static void sim_on_change(Registry *r, void *userdata) {
        sim_kick(userdata);
}

static int sim_pass_cb(sd_event_source *es, uint64_t usec, void *userdata) {
        (void) sd_event_source_set_time_relative(es, SIM_PASS_INTERVAL_USEC);
        sim_pass(userdata);
        return 0;
}

/* Presence every ttl/2, TTL refresh of every published key every refresh_usec, per machine
 * with its own phase. */
static int sim_tick_cb(sd_event_source *es, uint64_t usec, void *userdata) {
        Sim *s = userdata;
        uint64_t now = now_mono();

        (void) sd_event_source_set_time_relative(es, SIM_TICK_USEC);
        for (unsigned i = 0; i < s->n; i++) {
                SimMachine *m = &s->machines[i];
                if (!m->alive)
                        continue;
                if (now >= m->next_beat) {
                        m->next_beat += s->ttl_usec / 2;
                        if (m->next_beat < now)
                                m->next_beat = now + s->ttl_usec / 2;
                        machine_enqueue(s, m);
                }
                if (now >= m->next_refresh) {
                        m->next_refresh += s->refresh_usec;
                        if (m->next_refresh < now)
                                m->next_refresh = now + s->refresh_usec;
                        for (SimKey *k = m->keys; k; k = k->mnext) {
                                if (k->hb_want || k->hb_exists)
                                        k->hb_dirty = true;
                                if (k->st_want || k->st_exists)
                                        k->st_dirty = true;
                                key_enqueue(s, k);
                        }
                }
        }
        sim_pump(s);
        if (now - s->last_status >= 5 * USEC_PER_SEC) {
                uint64_t req = 0, in = 0, out = 0;
                s->last_status = now;
                fl_registry_stats(s->reg, &req, &in, &out);
                fprintf(stderr,
                        "fleet-bench sim: placed=%u running=%u keys=%zu in_flight=%u ops=%" PRIu64
                        " failed=%" PRIu64 " beats_failed=%" PRIu64 " etcd_requests=%" PRIu64
                        " snapshot_cpu_avg_ms=%.1f snapshot_cpu_max_ms=%.1f\n",
                        s->n_placed, s->n_running, s->n_keys, s->in_flight, s->ops_sent, s->ops_failed,
                        s->beats_failed, req, s->n_snaps ? (double) s->snap_usec / (double) s->n_snaps / 1000.0 : 0.0,
                        (double) s->snap_max_usec / 1000.0);
        }
        return 0;
}

static void sim_command(Sim *s, char *line) {
        unsigned long v;

        if (startswith(line, "expect ")) {
                s->expect = (unsigned) strtoul(line + 7, NULL, 10);
                s->placed_reported = s->running_reported = false;
                sim_kick(s);
        } else if (startswith(line, "kill ")) {
                SimKill *kl;
                SimMachine *m;
                v = strtoul(line + 5, NULL, 10);
                if (v >= s->n || !s->machines[v].alive) {
                        emit("error no live machine %lu\n", v);
                        return;
                }
                m = &s->machines[v];
                kl = realloc(s->kills, (s->n_kills + 1) * sizeof(SimKill));
                if (!kl)
                        return;
                s->kills = kl;
                kl = &s->kills[s->n_kills++];
                *kl = (SimKill) { .m = (unsigned) v };
                for (SimKey *k = m->keys; k; k = k->mnext)
                        if (k->st_want)
                                (void) fl_strv_extend(&kl->units, k->unit);
                /* One last beat (the machine just checked in), then silence. */
                m->dying = true;
                if (!m->beat_busy)
                        machine_enqueue(s, m);
                sim_pump(s);
        } else if (streq(line, "busiest")) {
                unsigned best = 0, n = 0;
                for (unsigned i = 0; i < s->n; i++)
                        if (s->machines[i].alive && s->machines[i].n_keys > n) {
                                n = s->machines[i].n_keys;
                                best = i;
                        }
                emit("busiest %u units=%u\n", best, n);
        } else if (streq(line, "stats")) {
                uint64_t req = 0, in = 0, out = 0;
                unsigned queued = 0;
                fl_registry_stats(s->reg, &req, &in, &out);
                for (SimKey *k = s->q_head; k; k = k->qnext)
                        queued++;
                emit("stats placed=%u running=%u keys=%zu queued=%u in_flight=%u ops=%" PRIu64 " failed=%" PRIu64
                     " beats_failed=%" PRIu64 " etcd_requests=%" PRIu64 " bytes_in=%" PRIu64 " bytes_out=%" PRIu64
                     " snapshot_cpu_avg_ms=%.1f snapshot_cpu_max_ms=%.1f\n",
                     s->n_placed, s->n_running, s->n_keys, queued, s->in_flight, s->ops_sent, s->ops_failed,
                     s->beats_failed, req, in, out,
                     s->n_snaps ? (double) s->snap_usec / (double) s->n_snaps / 1000.0 : 0.0,
                     (double) s->snap_max_usec / 1000.0);
        } else if (*line)
                emit("error unknown command '%s'\n", line);
}

static int sim_input_cb(sd_event_source *es, int fd, uint32_t revents, void *userdata) {
        Sim *s = userdata;
        ssize_t n;
        char *nl;

        n = read(fd, s->inbuf + s->inlen, sizeof(s->inbuf) - 1 - s->inlen);
        if (n <= 0) {
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                return sd_event_exit(s->event, 0);
        }
        s->inlen += (size_t) n;
        s->inbuf[s->inlen] = 0;
        while ((nl = strchr(s->inbuf, '\n'))) {
                *nl = 0;
                sim_command(s, s->inbuf);
                memmove(s->inbuf, nl + 1, s->inlen - (size_t) (nl + 1 - s->inbuf) + 1);
                s->inlen -= (size_t) (nl + 1 - s->inbuf);
        }
        if (s->inlen == sizeof(s->inbuf) - 1)
                s->inlen = 0; /* garbage without newline */
        return 0;
}

static int cmd_sim(const Opts *o) {
        _cleanup_(fl_registry_freep) Registry *reg = NULL;
        sd_event *e = NULL;
        Sim s = { .o = o };
        sigset_t mask;
        uint64_t now;
        int r;

        if (o->machines == 0 || !o->id_prefix || strlen(o->id_prefix) >= 32)
                return fprintf(stderr, "fleet-bench sim: needs --machines N and --id-prefix X\n"), 2;
        r = sd_event_default(&e);
        if (r < 0)
                return 1;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        (void) sd_event_add_signal(e, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(e, NULL, SIGINT, NULL, NULL);
        signal(SIGPIPE, SIG_IGN);
        r = open_registry(o, e, &reg);
        if (r < 0)
                return fprintf(stderr, "fleet-bench: registry: %s\n", strerror(-r)), 1;
        s.event = e;
        s.reg = reg;
        s.n = o->machines;
        s.ttl_usec = o->ttl_sec * USEC_PER_SEC;
        /* As applets/agent.c: re-send every ttl*4/5, or ttl/2 for short TTLs. */
        s.refresh_usec = s.ttl_usec > 10 * USEC_PER_SEC ? s.ttl_usec / 5 * 4 : s.ttl_usec / 2;
        s.n_buckets = 65521;
        s.buckets = new0(SimKey *, s.n_buckets);
        s.machines = new0(SimMachine, s.n);
        if (!s.buckets || !s.machines)
                return 1;
        now = now_mono();
        for (unsigned i = 0; i < s.n; i++) {
                SimMachine *m = &s.machines[i];
                if (build_machine(o, i, &m->obj) < 0)
                        return 1;
                m->idx = i;
                m->alive = true;
                m->next_beat = now + (s.ttl_usec / 2) * i / s.n + s.ttl_usec / 2;
                m->next_refresh = now + s.refresh_usec * i / s.n + s.refresh_usec;
                machine_enqueue(&s, m);
        }
        r = fl_registry_mirror_start(reg, sim_on_change, &s);
        if (r < 0)
                return fprintf(stderr, "fleet-bench: mirror: %s\n", strerror(-r)), 1;
        (void) sd_event_add_time_relative(e, &s.tick, CLOCK_MONOTONIC, SIM_TICK_USEC, 0, sim_tick_cb, &s);
        (void) sd_event_source_set_enabled(s.tick, SD_EVENT_ON);
        (void) sd_event_add_time_relative(e, &s.pass_timer, CLOCK_MONOTONIC, SIM_PASS_INTERVAL_USEC, 0, sim_pass_cb,
                                          &s);
        (void) sd_event_source_set_enabled(s.pass_timer, SD_EVENT_ON);
        r = sd_event_add_io(e, &s.input, STDIN_FILENO, EPOLLIN, sim_input_cb, &s);
        if (r < 0)
                fprintf(stderr, "fleet-bench sim: not reading commands: %s\n", strerror(-r));
        sim_pump(&s);
        emit("started machines=%u t=%.3f\n", s.n, now_real());
        r = sd_event_loop(e);
        /* Exit without cleanup of the keys: a load generator that stops is a power cut. */
        emit("exit ops=%" PRIu64 " failed=%" PRIu64 "\n", s.ops_sent, s.ops_failed);
        _exit(r < 0 ? 1 : 0);
}

/* ======================================================================================== */
/* rtt                                                                                      */

/* The unit bench.sh's `submit` section submits (same text, so the same size). */
static int submit_unit(unsigned i, char **ret_name, char **ret_value, uint8_t ret_hash[20]) {
        _cleanup_free_ char *text = NULL, *err = NULL, *raw = NULL;
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;
        int r;

        if (asprintf(ret_name, "floor-%05u.service", i) < 0)
                return -ENOMEM;
        if (asprintf(&text, "[Unit]\nDescription=bench submit 1-%04u\n\n[Service]\nExecStart=/bin/sleep infinity\n", i) <
            0)
                return -ENOMEM;
        r = fl_unit_file_parse(text, strlen(text), &u, &err);
        if (r < 0)
                return r;
        r = fl_unit_file_hash(u, ret_hash);
        if (r < 0)
                return r;
        raw = fl_unit_file_serialize(u);
        if (!raw)
                return -ENOMEM;
        *ret_value = fl_reg_encode_unit_contents(raw);
        return *ret_value ? 0 : -ENOMEM;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return (x > y) - (x < y);
}

static int cmd_rtt(const Opts *o) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        EtcdConfig ec = { .endpoints = o->endpoints, .request_timeout_usec = 10 * USEC_PER_SEC };
        EtcdRequest req = { .method = ETCD_GET, .key = o->key, .recursive = o->recursive, .sorted = o->recursive };
        _cleanup_free_ char *value = NULL;
        _cleanup_free_ double *t = NULL;
        uint64_t bytes0 = 0, bytes1 = 0, x;
        unsigned n = o->n ?: 200;
        int r;

        if (!o->key)
                return fprintf(stderr, "fleet-bench rtt: needs --key\n"), 2;
        t = new0(double, n);
        if (!t)
                return 1;
        if (o->write) {
                _cleanup_free_ char *name = NULL;
                uint8_t hash[20];
                if (submit_unit(0, &name, &value, hash) < 0)
                        return 1;
                req.method = ETCD_SET;
                req.value = value;
                req.recursive = req.sorted = false;
        }
        r = fl_etcd_client_new(&ec, NULL, &c);
        if (r < 0)
                return 1;
        for (unsigned i = 0; i <= n; i++) {
                _cleanup_(fl_etcd_response_freep) EtcdResponse *resp = NULL;
                _cleanup_free_ char *key = NULL;
                uint64_t t0;
                if (o->write) {
                        /* A new key each time, as a submit's writes are. */
                        if (asprintf(&key, "%s/%u", o->key, i) < 0)
                                return 1;
                        req.key = key;
                }
                t0 = now_mono();
                if (i == 1)
                        fl_etcd_client_stats(c, &x, &bytes0, &x);
                r = fl_etcd_call(c, &req, &resp);
                if (r < 0 && (r != -ENOENT || o->write))
                        return fprintf(stderr, "fleet-bench rtt: %s\n", strerror(-r)), 1;
                if (i > 0) /* the first one opens the connection */
                        t[i - 1] = (double) (now_mono() - t0) / 1000.0;
        }
        fl_etcd_client_stats(c, &x, &bytes1, &x);
        qsort(t, n, sizeof(double), cmp_double);
        printf("rtt median_ms=%.3f p90_ms=%.3f bytes=%" PRIu64 "\n", t[n / 2], t[n * 9 / 10],
               o->write ? (uint64_t) strlen(value) : (bytes1 - bytes0) / n);
        return 0;
}

/* ======================================================================================== */
/* write                                                                                    */

typedef enum WrKind { WR_SUBMIT, WR_SUBMIT_CHECK, WR_PLACE, WR_TTL_CREATE, WR_REFRESH } WrKind;

typedef struct Wr Wr;

/* One of the K units in flight: it runs its unit's requests one after the other, then takes
 * the next unit. */
typedef struct WrSlot {
        Wr *w;
        unsigned item, step;
        uint64_t t0;
} WrSlot;

struct Wr {
        const Opts *o;
        sd_event *event;
        EtcdClient *etcd;
        WrKind kind;
        unsigned n_keyed;        /* units with keys built */
        char **keys, **values;   /* n_keyed * 3: unit/<hash>, object, target-state; or one */
        unsigned n_items, steps; /* this run: units (or refreshes) and requests per unit */
        unsigned next, done, errors, n_lat;
        bool finished;
        EtcdCall *stream;        /* --watch: a recursive stream on the prefix, as a daemon's */
        unsigned events, want_events;
        double *lat;             /* ms, per request */
        WrSlot *slots;
};

/* keys/values for n units: [3i] unit/<hash> {"Raw":..}, [3i+1] job/<u>/object, [3i+2]
 * job/<u>/target-state "inactive" (submit); [3i] job/<u>/target = a machine ID (place); [3i]
 * job/<u>/job-state = a machine ID (refresh). */
static int wr_build(Wr *w, unsigned n) {
        const char *p = w->o->prefix;
        size_t pl = strlen(p);
        const char *sep = pl > 0 && p[pl - 1] == '/' ? "" : "/";

        w->keys = new0(char *, (size_t) n * 3);
        w->values = new0(char *, (size_t) n * 3);
        if (!w->keys || !w->values)
                return -ENOMEM;
        w->n_keyed = n;
        for (unsigned i = 0; i < n; i++) {
                _cleanup_free_ char *name = NULL, *value = NULL;
                char hex[41], mid[33];
                uint8_t hash[20];
                char **k = &w->keys[3 * i], **v = &w->values[3 * i];
                int r;

                r = submit_unit(i, &name, &value, hash);
                if (r < 0)
                        return r;
                machine_id("f100", i % 1000, mid);
                if (w->kind == WR_SUBMIT || w->kind == WR_SUBMIT_CHECK) {
                        fl_hash_to_hex(hash, hex);
                        if (asprintf(&k[0], "%s%sunit/%s", p, sep, hex) < 0 ||
                            asprintf(&k[1], "%s%sjob/%s/object", p, sep, name) < 0 ||
                            asprintf(&k[2], "%s%sjob/%s/target-state", p, sep, name) < 0)
                                return -ENOMEM;
                        v[0] = TAKE_PTR(value);
                        v[1] = fl_reg_encode_job_object(name, hash);
                        v[2] = strdup("inactive");
                        if (!v[1] || !v[2])
                                return -ENOMEM;
                } else {
                        if (asprintf(&k[0], "%s%sjob/%s/%s", p, sep, name,
                                     w->kind == WR_PLACE ? "target" : "job-state") < 0)
                                return -ENOMEM;
                        v[0] = strdup(mid);
                        if (!v[0])
                                return -ENOMEM;
                }
        }
        return 0;
}

static void wr_free(Wr *w) {
        for (size_t i = 0; w->keys && i < (size_t) w->n_keyed * 3; i++) {
                free(w->keys[i]);
                free(w->values[i]);
        }
        free(w->keys);
        free(w->values);
        free(w->lat);
        free(w->slots);
}

static void wr_done(EtcdClient *c, int r, EtcdResponse *resp, void *userdata);

/* Sends the slot's current request; false when it could not be sent (counted as an error). */
static bool wr_send(WrSlot *sl) {
        Wr *w = sl->w;
        unsigned u = sl->item % w->n_keyed;
        size_t i = (size_t) u * 3 + (w->steps > 1 ? (sl->step < 3 ? sl->step : 1) : 0);
        EtcdRequest req = { .method = ETCD_SET, .key = w->keys[i], .value = w->values[i] };
        int r;

        switch (w->kind) {
        case WR_SUBMIT:
        case WR_SUBMIT_CHECK:
                /* create_unit: unit/<hash> unconditionally (see registry-write.c), then the job
                 * keys; submit-check adds its quorum GET of the object. */
                if (sl->step == 3)
                        req = (EtcdRequest) { .method = ETCD_GET, .key = w->keys[i], .quorum = true };
                break;
        case WR_PLACE:
                req.prev_exist = ETCD_PREV_NOT_EXIST;
                break;
        case WR_TTL_CREATE:
                req.ttl_sec = w->o->ttl_sec;
                break;
        case WR_REFRESH:
                req.value = NULL;
                req.refresh = true;
                req.prev_exist = ETCD_PREV_EXIST;
                req.prev_value = w->values[i];
                req.ttl_sec = w->o->ttl_sec;
                break;
        }
        sl->t0 = now_mono();
        r = fl_etcd_call_async(w->etcd, &req, wr_done, sl, NULL);
        if (r < 0 && w->errors++ < 5)
                fprintf(stderr, "fleet-bench write: %s: %s\n", req.key, strerror(-r));
        return r >= 0;
}

/* Starts the next unit on a free slot, or, when none is left, ends the run once all are done. */
static void wr_next(WrSlot *sl) {
        Wr *w = sl->w;

        while (w->next < w->n_items) {
                sl->item = w->next++;
                sl->step = 0;
                if (wr_send(sl))
                        return;
                w->done++;
        }
        if (w->done == w->n_items && w->events >= w->want_events)
                w->finished = true;
}

static void wr_done(EtcdClient *c, int r, EtcdResponse *resp, void *userdata) {
        WrSlot *sl = userdata;
        Wr *w = sl->w;

        w->lat[w->n_lat++] = (double) (now_mono() - sl->t0) / 1000.0;
        if (r < 0) {
                if (w->errors++ < 5)
                        fprintf(stderr, "fleet-bench write: unit %u step %u: %s\n", sl->item, sl->step,
                                strerror(-r));
        } else if (++sl->step < w->steps && wr_send(sl))
                return;
        w->done++;
        wr_next(sl);
}

/* --watch: the daemon's mirror sees every write as an event; a run is over when it has. */
static void wr_event(EtcdClient *c, EtcdResponse *event, void *userdata) {
        Wr *w = userdata;

        if (++w->events >= w->want_events && w->done == w->n_items)
                w->finished = true;
}

static void wr_stream_done(EtcdClient *c, int r, EtcdResponse *resp, void *userdata) {
        Wr *w = userdata;

        fprintf(stderr, "fleet-bench write: watch stream ended: %s\n", strerror(r < 0 ? -r : 0));
        w->stream = NULL;
        w->errors++;
        w->finished = true;
}

/* Opens the stream from "now" and waits until one write of ours shows on it, so the watcher is
 * registered with etcd before the clock starts. */
static int wr_watch(Wr *w) {
        EtcdRequest req = { .method = ETCD_WATCH, .key = w->o->prefix, .recursive = true };
        _cleanup_free_ char *key = NULL;
        int r;

        r = fl_etcd_watch_stream_async(w->etcd, &req, wr_event, wr_stream_done, w, &w->stream);
        if (r < 0)
                return r;
        if (asprintf(&key, "%s%swatch-ready", w->o->prefix, endswith(w->o->prefix, "/") ? "" : "/") < 0)
                return -ENOMEM;
        for (unsigned i = 0; i < 50 && w->events == 0 && w->stream; i++) {
                EtcdRequest put = { .method = ETCD_SET, .key = key, .value = "1" };
                _cleanup_(fl_etcd_response_freep) EtcdResponse *resp = NULL;
                uint64_t until = now_mono() + 100 * USEC_PER_MSEC;

                r = fl_etcd_call(w->etcd, &put, &resp);
                if (r < 0)
                        return r;
                while (w->events == 0 && w->stream && now_mono() < until)
                        if ((r = sd_event_run(w->event, 10 * USEC_PER_MSEC)) < 0)
                                return r;
        }
        if (w->events == 0)
                return -ETIMEDOUT;
        /* The last ready write may still be on its way: let it arrive before counting. */
        for (uint64_t until = now_mono() + 50 * USEC_PER_MSEC; now_mono() < until;)
                if ((r = sd_event_run(w->event, 10 * USEC_PER_MSEC)) < 0)
                        return r;
        return 0;
}

#define WR_QUIET_USEC (5 * USEC_PER_SEC)

/* One timed run of n_items units (steps requests each) at o->parallel in flight. */
static int wr_run(Wr *w, WrKind kind, unsigned n_items, unsigned steps, double *ret_seconds) {
        unsigned k = MIN(w->o->parallel, n_items);
        uint64_t t0;
        int r;

        w->kind = kind;
        w->n_items = n_items;
        w->steps = steps;
        w->next = w->done = w->n_lat = 0;
        w->events = 0;
        /* Every write is an event (the refresh workload's refreshes are not: etcd does not tell
         * watchers about them); GETs are none. */
        w->want_events = w->stream && kind != WR_REFRESH ? n_items * MIN(steps, 3U) : 0;
        w->finished = false;
        free(w->lat);
        w->lat = new0(double, (size_t) n_items * steps);
        if (!w->lat)
                return -ENOMEM;
        t0 = now_mono();
        for (unsigned i = 0; i < k; i++) {
                w->slots[i].w = w;
                wr_next(&w->slots[i]);
        }
        /* Not sd_event_loop(): an exited loop cannot run again, and the refresh workload runs
         * twice on the client's loop. etcd v2 drops a watcher whose event queue overflows
         * without ending its stream (it just goes quiet), so a run whose events stop coming
         * ends after a while. */
        r = 0;
        for (unsigned seen = 0; r >= 0 && !w->finished;) {
                uint64_t quiet_until = now_mono() + WR_QUIET_USEC;

                while (r >= 0 && !w->finished && w->events == seen && now_mono() < quiet_until)
                        r = sd_event_run(w->event, WR_QUIET_USEC);
                if (r < 0 || w->finished)
                        break;
                if (w->events == seen && w->done == w->n_items) {
                        fprintf(stderr, "fleet-bench write: watch stream silent for %u s with %u of %u events: "
                                "etcd dropped the watcher\n", (unsigned) (WR_QUIET_USEC / USEC_PER_SEC), w->events,
                                w->want_events);
                        w->errors++;
                        break;
                }
                seen = w->events;
        }
        *ret_seconds = (double) (now_mono() - t0) / 1e6;
        return r;
}

static int cmd_write(const Opts *o) {
        _cleanup_(fl_etcd_client_freep) EtcdClient *c = NULL;
        EtcdConfig ec = { .endpoints = o->endpoints, .request_timeout_usec = 10 * USEC_PER_SEC };
        sd_event *e = NULL;
        Wr w = { .o = o };
        WrKind kind;
        unsigned steps = 1, n_items = o->units, errors_setup = 0;
        uint64_t cpu0;
        double secs = 0, cpu_ms;
        size_t vbytes = 0;
        int r;

        if (!o->workload || o->units == 0 || o->parallel == 0)
                return fprintf(stderr, "fleet-bench write: needs --workload and --units N\n"), 2;
        if (streq(o->workload, "submit"))
                kind = WR_SUBMIT, steps = 3;
        else if (streq(o->workload, "submit-check"))
                kind = WR_SUBMIT_CHECK, steps = 4;
        else if (streq(o->workload, "place"))
                kind = WR_PLACE;
        else if (streq(o->workload, "refresh"))
                kind = WR_TTL_CREATE, n_items = o->n ?: 10000;
        else
                return fprintf(stderr, "fleet-bench write: unknown workload %s\n", o->workload), 2;
        r = sd_event_new(&e);
        if (r < 0)
                return 1;
        r = fl_etcd_client_new(&ec, e, &c);
        if (r < 0) {
                sd_event_unref(e);
                return 1;
        }
        w.event = e;
        w.etcd = c;
        w.kind = kind;
        w.slots = new0(WrSlot, o->parallel);
        r = w.slots ? wr_build(&w, o->units) : -ENOMEM;
        if (r >= 0 && o->watch)
                r = wr_watch(&w);
        if (r >= 0 && kind == WR_TTL_CREATE) {
                /* The keys the agents keep alive, written in full once (untimed). */
                r = wr_run(&w, WR_TTL_CREATE, o->units, 1, &secs);
                errors_setup = w.errors;
                w.errors = 0;
                kind = WR_REFRESH;
        }
        cpu0 = now_cpu();
        if (r >= 0)
                r = wr_run(&w, kind, n_items, steps, &secs);
        cpu_ms = (double) (now_cpu() - cpu0) / 1000.0;
        if (r >= 0) {
                for (unsigned i = 0; i < MIN(steps, 3U); i++)
                        vbytes += strlen(w.values[i]);
                qsort(w.lat, w.n_lat, sizeof(double), cmp_double);
                printf("write workload=%s units=%u parallel=%u watch=%u events=%u requests=%u errors=%u setup_errors=%u "
                       "seconds=%.3f per_s=%.0f lat_median_ms=%.3f lat_p90_ms=%.3f client_cpu_ms=%.0f value_bytes=%zu\n",
                       o->workload, o->units, o->parallel, o->watch, w.events, w.n_lat, w.errors, errors_setup, secs,
                       secs > 0 ? (double) w.n_lat / secs : 0.0, w.n_lat ? w.lat[w.n_lat / 2] : 0.0,
                       w.n_lat ? w.lat[w.n_lat * 9 / 10] : 0.0, cpu_ms, vbytes);
        } else
                fprintf(stderr, "fleet-bench write: %s\n", strerror(-r));
        w.stream = fl_etcd_call_cancel(w.stream);
        c = fl_etcd_client_free(c);
        sd_event_unref(e);
        r = r >= 0 && w.errors == 0 && errors_setup == 0 ? 0 : 1;
        wr_free(&w);
        return r;
}

/* ======================================================================================== */
/* decode                                                                                   */

static int cmd_decode(const Opts *o) {
        _cleanup_(fl_registry_freep) Registry *reg = NULL;
        _cleanup_(fl_etcd_response_freep) EtcdResponse *resp = NULL;
        _cleanup_(fl_reg_store_freep) RegStore *st = NULL;
        RegTree tree = { .free_data = fl_reg_decoded_free };
        RegSnapshot *snap = NULL;
        const RegSnapshot *ss;
        unsigned events = o->n ?: 2000;
        EtcdRequest req = { .method = ETCD_GET, .recursive = true, .quorum = true };
        char **names = NULL;
        uint64_t t0;
        double full, load, ev;
        int r;

        r = open_registry(o, NULL, &reg);
        if (r < 0)
                return 1;
        req.key = reg->prefix;
        r = fl_etcd_call(reg->etcd, &req, &resp);
        if (r < 0 || !resp)
                return fprintf(stderr, "fleet-bench decode: %s\n", strerror(r < 0 ? -r : EBADMSG)), 1;
        r = fl_reg_tree_add_etcd(reg, &tree, resp->node);
        if (r < 0)
                return 1;
        /* What the mirror did after every change before it was incremental: a full decode. */
        t0 = now_cpu();
        r = fl_reg_snapshot_build(&tree, resp->etcd_index, &snap);
        full = (double) (now_cpu() - t0) / 1000.0;
        if (r < 0)
                return 1;
        /* The daemons' store: one full load, then single events (target-state flips and unit
         * state rewrites of units spread over the registry). */
        t0 = now_cpu();
        r = fl_reg_store_new(&st);
        if (r >= 0) {
                fl_reg_store_begin_load(st);
                r = fl_reg_store_add_etcd(reg, st, resp->node);
        }
        if (r >= 0)
                r = fl_reg_store_end_load(st);
        load = (double) (now_cpu() - t0) / 1000.0;
        if (r < 0)
                return fprintf(stderr, "fleet-bench decode: %s\n", strerror(-r)), 1;
        ss = fl_reg_store_snapshot(st, 1);
        for (size_t i = 0; i < ss->n_units && r >= 0; i++)
                r = fl_strv_extend(&names, ss->units[i].name);
        t0 = now_cpu();
        for (unsigned i = 0; names && r >= 0 && i < events; i++) {
                const char *u = names[(i * 7919u) % fl_strv_length(names)];
                char key[512], val[512];
                if (i % 2 == 0) {
                        snprintf(key, sizeof(key), "job/%s/target-state", u);
                        r = fl_reg_store_set(st, key, i % 4 ? "launched" : "loaded", 1, 0);
                } else {
                        snprintf(key, sizeof(key), "states/%s/%032x", u, i % 100);
                        snprintf(val, sizeof(val),
                                 "{\"loadState\":\"loaded\",\"activeState\":\"active\",\"subState\":\"running\","
                                 "\"machineState\":{\"ID\":\"%032x\"},\"unitHash\":\"\"}", i % 100);
                        r = fl_reg_store_set(st, key, val, 1, 0);
                }
                (void) fl_reg_store_snapshot(st, 1);
        }
        ev = (double) (now_cpu() - t0) / events;
        fl_strv_free(names);
        if (r < 0)
                return fprintf(stderr, "fleet-bench decode: %s\n", strerror(-r)), 1;
        printf("decode keys=%zu units=%zu states=%zu machines=%zu full_ms=%.1f load_ms=%.1f event_us=%.1f\n", tree.n,
               snap->n_units, snap->n_states, snap->n_machines, full, load, ev);
        fl_reg_snapshot_free(snap);
        fl_reg_tree_clear(&tree);
        return 0;
}

/* ======================================================================================== */

static JobState parse_state(const char *s) {
        return fl_job_state_from_string(s);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "etcd", required_argument, NULL, 'e' },      { "prefix", required_argument, NULL, 'p' },
                { "units", required_argument, NULL, 'u' },     { "start", required_argument, NULL, 'S' },
                { "state", required_argument, NULL, 's' },     { "machines", required_argument, NULL, 'm' },
                { "id-prefix", required_argument, NULL, 'i' }, { "schedule", no_argument, NULL, 'c' },
                { "ttl", required_argument, NULL, 't' },       { "parallel", required_argument, NULL, 'P' },
                { "metadata", required_argument, NULL, 'M' },  { "key", required_argument, NULL, 'k' },
                { "n", required_argument, NULL, 'n' },         { "recursive", no_argument, NULL, 'r' },
                { "debug", no_argument, NULL, 'd' },           { "presence-only", no_argument, NULL, 'O' },
                { "write", no_argument, NULL, 'w' },           { "workload", required_argument, NULL, 'W' },
                { "watch", no_argument, NULL, 'A' },
                {}
        };
        _cleanup_strv_free_ char **endpoints = NULL;
        Opts o = { .prefix = FL_REGISTRY_DEFAULT_PREFIX, .state = JOB_STATE_LAUNCHED };
        const char *cmd;
        int c;

        fl_log_setup(LOG_TARGET_CONSOLE, LOG_WARNING);
        if (argc < 2) {
                fprintf(stderr, "usage: fleet-bench populate|sim|rtt|write|decode --etcd URL ... (see test/helper/fleet-bench.c)\n");
                return 2;
        }
        cmd = argv[1];
        optind = 2;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'e':
                        if (fl_strv_split(optarg, ",", &endpoints) < 0)
                                return 1;
                        break;
                case 'p':
                        o.prefix = optarg;
                        break;
                case 'u':
                        o.units = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'S':
                        o.start = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 's':
                        o.state = parse_state(optarg);
                        if (o.state < 0)
                                return fprintf(stderr, "fleet-bench: bad state %s\n", optarg), 2;
                        break;
                case 'm':
                        o.machines = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'i':
                        o.id_prefix = optarg;
                        break;
                case 'c':
                        o.schedule = true;
                        break;
                case 't':
                        o.ttl_sec = strtoull(optarg, NULL, 10);
                        break;
                case 'P':
                        o.parallel = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'M':
                        o.metadata = optarg;
                        break;
                case 'k':
                        o.key = optarg;
                        break;
                case 'n':
                        o.n = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'r':
                        o.recursive = true;
                        break;
                case 'A':
                        o.watch = true;
                        break;
                case 'd':
                        fl_log_set_max_level(LOG_DEBUG);
                        break;
                case 'O':
                        o.presence_only = true;
                        break;
                case 'w':
                        o.write = true;
                        break;
                case 'W':
                        o.workload = optarg;
                        break;
                default:
                        return 2;
                }
        if (!endpoints)
                return fprintf(stderr, "fleet-bench: --etcd URL is required\n"), 2;
        o.endpoints = endpoints;
        if (streq(cmd, "populate")) {
                if (o.ttl_sec == 0)
                        o.ttl_sec = 3600;
                if (o.parallel == 0)
                        o.parallel = 32;
                return cmd_populate(&o);
        }
        if (streq(cmd, "sim")) {
                if (o.ttl_sec == 0)
                        o.ttl_sec = 30;
                if (o.parallel == 0)
                        o.parallel = 64;
                return cmd_sim(&o);
        }
        if (streq(cmd, "rtt"))
                return cmd_rtt(&o);
        if (streq(cmd, "write")) {
                if (o.ttl_sec == 0)
                        o.ttl_sec = 600;
                if (o.parallel == 0)
                        o.parallel = 32;
                return cmd_write(&o);
        }
        if (streq(cmd, "decode"))
                return cmd_decode(&o);
        fprintf(stderr, "fleet-bench: unknown command %s\n", cmd);
        return 2;
}
