/* SPDX-License-Identifier: MIT */
/* registry-write.c: intent-level writes (spec §4.2), each one a small state machine of etcd
 * requests run blocking or on the loop (registry.c). */
#include "log.h"
#include "registry-internal.h"
#include "unit-file.h"

/* ---- TTL keys: refresh when unchanged ----
 * A helper sub-machine over states base and base+1 for key op->key[i] = value op->value[i]:
 * if we wrote this very value last time, refresh the TTL with a compare on the value (so a key
 * someone else rewrote is not kept alive under our name); otherwise, or when the refresh finds
 * the key gone or changed, write it in full. Returns like a step function; on completion of the
 * key returns 0 and leaves op->state alone. */
static int ttl_key_step(RegOp *op, int base, size_t i, uint64_t ttl_sec, int k) {
        Registry *r = op->reg;
        const char *key = op->key[i], *value = op->value[i];

        if (op->state == base) {
                if (streq_ptr(fl_reg_written_get(r, key), value)) {
                        fl_reg_req(op, ETCD_SET, key, NULL);
                        op->req.refresh = true;
                        op->req.prev_exist = ETCD_PREV_EXIST;
                        op->req.prev_value = value;
                        op->req.ttl_sec = ttl_sec;
                        op->state = base + 1;
                        return 1;
                }
                op->state = base + 2;
        } else if (op->state == base + 1) {
                if (k >= 0)
                        return 0;
                if (k != -ENOENT && k != -ESTALE) {
                        fl_reg_written_set(r, key, NULL);
                        return k;
                }
                op->state = base + 2;
        } else if (op->state == base + 2)
                ;
        else if (op->state == base + 3) {
                fl_reg_written_set(r, key, k >= 0 ? value : NULL);
                return k < 0 ? k : 0;
        }
        /* base + 2: full write. */
        fl_reg_req(op, ETCD_SET, key, value);
        op->req.ttl_sec = ttl_sec;
        op->state = base + 3;
        return 1;
}

/* ---- Units ---- */

/* An inactive unit (what fleetctl submit creates): unit/<hash>, then the target-state, then the
 * object. A destroy in between leaves nothing behind (before the object, the object write
 * makes the unit exist with no target-state, which reads as inactive: what was asked), so the
 * read-back of the other order is not needed: 3 requests instead of 4. */
static int create_inactive_step(RegOp *op, int k, const EtcdResponse *resp) {
        switch (op->state++) {
        case 0:
                fl_reg_req(op, ETCD_SET, op->key[0], op->value[0]);
                return 1;
        case 1:
                if (k < 0)
                        return k;
                fl_reg_req(op, ETCD_SET, op->key[2], op->value[2]);   /* target-state */
                return 1;
        case 2:
                if (k < 0)
                        return k;
                fl_reg_req(op, ETCD_SET, op->key[1], op->value[1]);   /* object */
                return 1;
        default:
                return k < 0 ? k : 0;
        }
}

static int create_unit_step(RegOp *op, int k, const EtcdResponse *resp) {
        switch (op->state++) {
        case 0:
                /* Unconditional: re-writing an existing unit/<hash> gives it a new modified
                 * index, which makes a concurrent garbage collection's compare-and-delete
                 * fail (or re-creates what it just deleted). */
                fl_reg_req(op, ETCD_SET, op->key[0], op->value[0]);
                return 1;
        case 1:
                if (k < 0)
                        return k;
                fl_reg_req(op, ETCD_SET, op->key[1], op->value[1]);
                return 1;
        case 2:
                if (k < 0)
                        return k;
                fl_reg_req(op, ETCD_SET, op->key[2], op->value[2]);
                return 1;
        case 3:
                if (k < 0)
                        return k;
                /* A destroy (a recursive delete of job/<name>) between the object and the
                 * target-state writes leaves a job directory holding only the target-state:
                 * see whether the object is still there. */
                op->u64[0] = resp && resp->node ? resp->node->modified_index : 0;
                fl_reg_req(op, ETCD_GET, op->key[1], NULL);
                op->req.quorum = true;
                return 1;
        case 4:
                if (k != -ENOENT || op->u64[0] == 0)
                        return 0; /* still there (or we cannot tell): the unit is created */
                /* Destroyed meanwhile: the create happened before the destroy, so take our
                 * target-state back too, unless a newer create rewrote it since. */
                fl_reg_req(op, ETCD_DELETE, op->key[2], NULL);
                op->req.prev_index = op->u64[0];
                return 1;
        case 5:
                if (k < 0)
                        return 0;
                /* ... and the directory our write re-created, unless it holds something again. */
                fl_reg_req(op, ETCD_DELETE, op->key[3], NULL);
                op->req.dir = true;
                return 1;
        default:
                return 0;
        }
}

static int create_unit_op(Registry *r, const char *name, const UnitFile *u, JobState target, RegOp **ret) {
        _cleanup_(fl_reg_op_freep) RegOp *op = NULL;
        _cleanup_free_ char *raw = NULL;
        uint8_t hash[20];
        char hex[41];
        int k;

        if (!fl_reg_valid_part(name) || !u || !fl_job_state_to_string(target))
                return -EINVAL;
        raw = fl_unit_file_serialize(u);
        if (!raw)
                return -ENOMEM;
        k = fl_unit_file_hash_serialized(raw, hash);
        if (k < 0)
                return k;
        fl_hash_to_hex(hash, hex);
        k = fl_reg_op_new(r, target == JOB_STATE_INACTIVE ? create_inactive_step : create_unit_step, &op);
        if (k < 0)
                return k;
        op->key[0] = reg_key(r, "unit", hex);
        op->value[0] = fl_reg_encode_unit_contents(raw);
        op->key[1] = reg_key(r, "job", name, "object");
        op->value[1] = fl_reg_encode_job_object(name, hash);
        op->key[2] = reg_key(r, "job", name, "target-state");
        op->value[2] = strdup(fl_job_state_to_string(target));
        op->key[3] = reg_key(r, "job", name);
        for (size_t i = 0; i < 3; i++)
                if (!op->key[i] || !op->value[i])
                        return -ENOMEM;
        if (!op->key[3])
                return -ENOMEM;
        *ret = TAKE_PTR(op);
        return 0;
}

int fl_registry_create_unit(Registry *r, const char *name, const UnitFile *u, JobState target) {
        RegOp *op;
        int k = create_unit_op(r, name, u, target, &op);
        return k < 0 ? k : fl_reg_op_run(op);
}

int fl_registry_create_unit_async(Registry *r, const char *name, const UnitFile *u, JobState target,
                                  RegDoneFn done, void *userdata) {
        RegOp *op;
        int k = create_unit_op(r, name, u, target, &op);
        return k < 0 ? k : fl_reg_op_start(op, done, userdata);
}

/* A single request described by op->req once; the result is the answer, with -ENOENT mapped
 * to 0 when op->u64[0] says so. */
static int single_step(RegOp *op, int k, const EtcdResponse *resp) {
        if (op->state++ == 0)
                return 1;
        if (k == -ENOENT && op->u64[0])
                return 0;
        return k < 0 ? k : 0;
}

static int single_op(Registry *r, EtcdMethod m, char *key, const char *value, RegOp **ret) {
        _cleanup_(fl_reg_op_freep) RegOp *op = NULL;
        int k;

        if (!key)
                return -ENOMEM;
        k = fl_reg_op_new(r, single_step, &op);
        if (k < 0) {
                free(key);
                return k;
        }
        op->key[0] = key;
        if (value) {
                op->value[0] = strdup(value);
                if (!op->value[0])
                        return -ENOMEM;
        }
        fl_reg_req(op, m, op->key[0], op->value[0]);
        *ret = TAKE_PTR(op);
        return 0;
}

static int target_state_op(Registry *r, const char *name, JobState s, RegOp **ret) {
        int k;
        if (!fl_reg_valid_part(name) || !fl_job_state_to_string(s))
                return -EINVAL;
        k = single_op(r, ETCD_SET, reg_key(r, "job", name, "target-state"), fl_job_state_to_string(s), ret);
        if (k < 0)
                return k;
        /* Every unit has a target-state from its creation: updating only an existing one keeps
         * a destroyed unit from coming back as a job directory without object. */
        (*ret)->req.prev_exist = ETCD_PREV_EXIST;
        return 0;
}

int fl_registry_set_target_state(Registry *r, const char *name, JobState s) {
        RegOp *op;
        int k = target_state_op(r, name, s, &op);
        return k < 0 ? k : fl_reg_op_run(op);
}

int fl_registry_set_target_state_async(Registry *r, const char *name, JobState s, RegDoneFn done,
                                       void *userdata) {
        RegOp *op;
        int k = target_state_op(r, name, s, &op);
        return k < 0 ? k : fl_reg_op_start(op, done, userdata);
}

static int destroy_op(Registry *r, const char *name, RegOp **ret) {
        int k;
        if (!fl_reg_valid_part(name))
                return -EINVAL;
        k = single_op(r, ETCD_DELETE, reg_key(r, "job", name), NULL, ret);
        if (k < 0)
                return k;
        (*ret)->req.recursive = true;
        return 0;
}

int fl_registry_destroy_unit(Registry *r, const char *name) {
        RegOp *op;
        int k = destroy_op(r, name, &op);
        return k < 0 ? k : fl_reg_op_run(op);
}

int fl_registry_destroy_unit_async(Registry *r, const char *name, RegDoneFn done, void *userdata) {
        RegOp *op;
        int k = destroy_op(r, name, &op);
        return k < 0 ? k : fl_reg_op_start(op, done, userdata);
}

/* ---- Engine ---- */

int fl_registry_schedule_async(Registry *r, const char *name, const char *machine_id, RegDoneFn done,
                               void *userdata) {
        RegOp *op;
        int k;

        if (!fl_reg_valid_part(name) || isempty(machine_id))
                return -EINVAL;
        k = single_op(r, ETCD_SET, reg_key(r, "job", name, "target"), machine_id, &op);
        if (k < 0)
                return k;
        op->req.prev_exist = ETCD_PREV_NOT_EXIST;
        return fl_reg_op_start(op, done, userdata);
}

int fl_registry_unschedule_async(Registry *r, const char *name, const char *machine_id, RegDoneFn done,
                                 void *userdata) {
        RegOp *op;
        int k;

        if (!fl_reg_valid_part(name) || isempty(machine_id))
                return -EINVAL;
        k = single_op(r, ETCD_DELETE, reg_key(r, "job", name, "target"), NULL, &op);
        if (k < 0)
                return k;
        op->value[0] = strdup(machine_id);
        if (!op->value[0]) {
                fl_reg_op_free(op);
                return -ENOMEM;
        }
        op->req.prev_value = op->value[0];
        op->u64[0] = true;   /* already unscheduled: fine */
        return fl_reg_op_start(op, done, userdata);
}

int fl_registry_set_unschedulable_async(Registry *r, const char *name, const char *reason,
                                        RegDoneFn done, void *userdata) {
        RegOp *op;
        int k;

        if (!fl_reg_valid_part(name))
                return -EINVAL;
        k = single_op(r, reason ? ETCD_SET : ETCD_DELETE, reg_key(r, "job", name, "unschedulable"), reason, &op);
        if (k < 0)
                return k;
        op->u64[0] = !reason;
        return fl_reg_op_start(op, done, userdata);
}

/* The lease's compare index. prev_index FL_REG_LEASE_OWN_INDEX (which no store reaches) asks
 * for a compare against the index of this registry's own last successful write of the lease,
 * remembered here (in r->written, under the lease key, as a decimal number); -ESTALE when there is none.
 * The engine renews that way: its mirror may not show its previous renewal yet, and a compare
 * against the mirror's older index failed with -ESTALE (fleet's Go lease kept the index of its
 * last write the same way). Any other prev_index is compared as it is. */

static uint64_t lease_own_index(Registry *r, const char *key) {
        const char *v = fl_reg_written_get(r, key);
        return v ? strtoull(v, NULL, 10) : 0;
}

static void lease_own_index_set(Registry *r, const char *key, uint64_t index) {
        char buf[24];   /* 20 digits at most */

        if (index == 0) {
                fl_reg_written_set(r, key, NULL);
                return;
        }
        (void) snprintf(buf, sizeof(buf), "%" PRIu64, index);
        fl_reg_written_set(r, key, buf);
}

/* Single lease write: on success remember its index; a release forgets it. */
static int lease_step(RegOp *op, int k, const EtcdResponse *resp) {
        if (op->state++ == 0)
                return 1;
        if (k >= 0)
                lease_own_index_set(op->reg, op->key[0],
                                    op->req.method == ETCD_DELETE || !resp || !resp->node ? 0 :
                                    resp->node->modified_index);
        return k < 0 ? k : 0;
}

/* A compare on index 0 would be no compare at all: fail like a compare. */
static int stale_step(RegOp *op, int k, const EtcdResponse *resp) {
        return -ESTALE;
}

static int lease_set_op(Registry *r, const char *machine_id, int version, uint64_t ttl_sec, RegOp **ret) {
        _cleanup_free_ char *v = NULL;
        int k;

        if (isempty(machine_id) || ttl_sec == 0)
                return -EINVAL;
        v = fl_reg_encode_lease(machine_id, version);
        if (!v)
                return -ENOMEM;
        k = single_op(r, ETCD_SET, reg_key(r, "lease", "engine-leader"), v, ret);
        if (k < 0)
                return k;
        (*ret)->step = lease_step;
        (*ret)->req.ttl_sec = ttl_sec;
        return 0;
}

int fl_registry_lease_acquire_async(Registry *r, const char *machine_id, int version, uint64_t ttl_sec,
                                    RegDoneFn done, void *userdata) {
        RegOp *op;
        int k = lease_set_op(r, machine_id, version, ttl_sec, &op);
        if (k < 0)
                return k;
        op->req.prev_exist = ETCD_PREV_NOT_EXIST;
        return fl_reg_op_start(op, done, userdata);
}

int fl_registry_lease_renew_async(Registry *r, const char *machine_id, int version, uint64_t ttl_sec,
                                  uint64_t prev_index, RegDoneFn done, void *userdata) {
        RegOp *op;
        int k = lease_set_op(r, machine_id, version, ttl_sec, &op);
        if (k < 0)
                return k;
        op->req.prev_index = prev_index == FL_REG_LEASE_OWN_INDEX ? lease_own_index(r, op->key[0]) : prev_index;
        if (op->req.prev_index == 0)
                op->step = stale_step;
        return fl_reg_op_start(op, done, userdata);
}

int fl_registry_lease_release_async(Registry *r, uint64_t prev_index, RegDoneFn done, void *userdata) {
        RegOp *op;
        int k = single_op(r, ETCD_DELETE, reg_key(r, "lease", "engine-leader"), NULL, &op);
        if (k < 0)
                return k;
        op->step = lease_step;
        op->req.prev_index = prev_index == FL_REG_LEASE_OWN_INDEX ? lease_own_index(r, op->key[0]) : prev_index;
        if (op->req.prev_index == 0)
                op->step = stale_step;
        return fl_reg_op_start(op, done, userdata);
}

static int engine_version_step(RegOp *op, int k, const EtcdResponse *resp) {
        switch (op->state++) {
        case 0:
                fl_reg_req(op, ETCD_SET, op->key[0], op->value[0]);
                op->req.prev_value = op->value[1];
                return 1;
        case 1:
                if (k != -ENOENT)
                        return k < 0 ? k : 0;
                /* No version yet: create it. */
                fl_reg_req(op, ETCD_SET, op->key[0], op->value[0]);
                op->req.prev_exist = ETCD_PREV_NOT_EXIST;
                return 1;
        default:
                return k < 0 ? k : 0;
        }
}

int fl_registry_engine_version_set_async(Registry *r, int old_version, int new_version, RegDoneFn done,
                                         void *userdata) {
        _cleanup_(fl_reg_op_freep) RegOp *op = NULL;
        int k;

        k = fl_reg_op_new(r, engine_version_step, &op);
        if (k < 0)
                return k;
        op->key[0] = reg_key(r, "engine", "version");
        if (!op->key[0] || asprintf(&op->value[0], "%d", new_version) < 0 ||
            asprintf(&op->value[1], "%d", old_version) < 0)
                return -ENOMEM;
        return fl_reg_op_start(TAKE_PTR(op), done, userdata);
}

/* ---- Agent ---- */

static int job_heartbeat_step(RegOp *op, int k, const EtcdResponse *resp) {
        return ttl_key_step(op, 0, 0, op->u64[0], k);
}

int fl_registry_job_heartbeat_async(Registry *r, const char *name, const char *machine_id, uint64_t ttl_sec,
                                    RegDoneFn done, void *userdata) {
        _cleanup_(fl_reg_op_freep) RegOp *op = NULL;
        int k;

        if (!fl_reg_valid_part(name) || isempty(machine_id))
                return -EINVAL;
        k = fl_reg_op_new(r, job_heartbeat_step, &op);
        if (k < 0)
                return k;
        op->key[0] = reg_key(r, "job", name, "job-state");
        op->value[0] = strdup(machine_id);
        if (!op->key[0] || !op->value[0])
                return -ENOMEM;
        op->u64[0] = ttl_sec;
        return fl_reg_op_start(TAKE_PTR(op), done, userdata);
}

static int forget_single_step(RegOp *op, int k, const EtcdResponse *resp) {
        fl_reg_written_set(op->reg, op->key[0], NULL);
        return single_step(op, k, resp);
}

int fl_registry_job_clear_heartbeat_async(Registry *r, const char *name, RegDoneFn done, void *userdata) {
        RegOp *op;
        int k;

        if (!fl_reg_valid_part(name))
                return -EINVAL;
        k = single_op(r, ETCD_DELETE, reg_key(r, "job", name, "job-state"), NULL, &op);
        if (k < 0)
                return k;
        op->step = forget_single_step;
        op->u64[0] = true;
        return fl_reg_op_start(op, done, userdata);
}

/* states/<unit>/<machine> only. fleet v1.0.0 also wrote the legacy state/<unit> alongside
 * (spec §4.1: "legacy, written alongside, never read"): nothing reads it, not fleet v1.0.0
 * either, and it was a third of every agent's steady writes (each state refresh), so we no
 * longer write it, nor delete it. A state/<unit> written by an older fleet expires with its
 * TTL. */
static int save_state_step(RegOp *op, int k, const EtcdResponse *resp) {
        return ttl_key_step(op, 0, 0, op->u64[0], k);
}

int fl_registry_save_unit_state_async(Registry *r, const RegUnitState *st, uint64_t ttl_sec, RegDoneFn done,
                                      void *userdata) {
        _cleanup_(fl_reg_op_freep) RegOp *op = NULL;
        int k;

        /* fleet refuses states without hash or machine. */
        if (!fl_reg_valid_part(st->name) || !fl_reg_valid_part(st->machine_id) || isempty(st->hash))
                return -EINVAL;
        k = fl_reg_op_new(r, save_state_step, &op);
        if (k < 0)
                return k;
        op->key[0] = reg_key(r, "states", st->name, st->machine_id);
        op->value[0] = fl_reg_encode_unit_state(st);
        if (!op->key[0] || !op->value[0])
                return -ENOMEM;
        op->u64[0] = ttl_sec;
        return fl_reg_op_start(TAKE_PTR(op), done, userdata);
}

static int remove_state_step(RegOp *op, int k, const EtcdResponse *resp) {
        switch (op->state++) {
        case 0:
                fl_reg_written_set(op->reg, op->key[0], NULL);
                fl_reg_req(op, ETCD_DELETE, op->key[0], NULL);
                return 1;
        case 1:
                if (k < 0 && k != -ENOENT)
                        return k;
                /* Drop states/<unit> if that was its last machine (fails when not empty). */
                fl_reg_req(op, ETCD_DELETE, op->key[1], NULL);
                op->req.dir = true;
                return 1;
        default:
                return 0;
        }
}

int fl_registry_remove_unit_state_async(Registry *r, const char *name, const char *machine_id,
                                        RegDoneFn done, void *userdata) {
        _cleanup_(fl_reg_op_freep) RegOp *op = NULL;
        int k;

        if (!fl_reg_valid_part(name) || !fl_reg_valid_part(machine_id))
                return -EINVAL;
        k = fl_reg_op_new(r, remove_state_step, &op);
        if (k < 0)
                return k;
        op->key[0] = reg_key(r, "states", name, machine_id);
        op->key[1] = reg_key(r, "states", name);
        if (!op->key[0] || !op->key[1])
                return -ENOMEM;
        return fl_reg_op_start(TAKE_PTR(op), done, userdata);
}

/* ---- Machines ---- */

static int machine_op(Registry *r, const RegMachine *m, RegStepFn step, uint64_t ttl_sec, RegOp **ret) {
        _cleanup_(fl_reg_op_freep) RegOp *op = NULL;
        int k;

        if (!m || !fl_reg_valid_part(m->id) || ttl_sec == 0)
                return -EINVAL;
        k = fl_reg_op_new(r, step, &op);
        if (k < 0)
                return k;
        op->key[0] = reg_key(r, "machines", m->id, "object");
        op->value[0] = fl_reg_encode_machine(m);
        if (!op->key[0] || !op->value[0])
                return -ENOMEM;
        op->u64[0] = ttl_sec;
        *ret = TAKE_PTR(op);
        return 0;
}

static int register_step(RegOp *op, int k, const EtcdResponse *resp) {
        if (op->state++ == 0) {
                fl_reg_req(op, ETCD_SET, op->key[0], op->value[0]);
                op->req.prev_exist = ETCD_PREV_NOT_EXIST;
                op->req.ttl_sec = op->u64[0];
                return 1;
        }
        /* On failure keep what we knew: a beat's refresh compares the value anyway. */
        if (k >= 0)
                fl_reg_written_set(op->reg, op->key[0], op->value[0]);
        return k < 0 ? k : 0;
}

int fl_registry_machine_register_async(Registry *r, const RegMachine *m, uint64_t ttl_sec, RegDoneFn done,
                                       void *userdata) {
        RegOp *op;
        int k = machine_op(r, m, register_step, ttl_sec, &op);
        return k < 0 ? k : fl_reg_op_start(op, done, userdata);
}

static int beat_step(RegOp *op, int k, const EtcdResponse *resp) {
        return ttl_key_step(op, 0, 0, op->u64[0], k);
}

int fl_registry_machine_beat_async(Registry *r, const RegMachine *m, uint64_t ttl_sec, RegDoneFn done,
                                   void *userdata) {
        RegOp *op;
        int k = machine_op(r, m, beat_step, ttl_sec, &op);
        return k < 0 ? k : fl_reg_op_start(op, done, userdata);
}

int fl_registry_machine_remove_async(Registry *r, const char *machine_id, RegDoneFn done, void *userdata) {
        RegOp *op;
        int k;

        if (!fl_reg_valid_part(machine_id))
                return -EINVAL;
        k = single_op(r, ETCD_DELETE, reg_key(r, "machines", machine_id, "object"), NULL, &op);
        if (k < 0)
                return k;
        op->step = forget_single_step;
        op->u64[0] = true;
        return fl_reg_op_start(op, done, userdata);
}

static int metadata_op(Registry *r, const char *machine_id, const char *key, const char *value, RegOp **ret) {
        if (!fl_reg_valid_part(machine_id) || !fl_reg_valid_part(key) || !value)
                return -EINVAL;
        /* fleet removes a key by writing "" (spec §3.3): readers treat "" as absent. */
        return single_op(r, ETCD_SET, reg_key(r, "machines", machine_id, "metadata", key), value, ret);
}

int fl_registry_set_machine_metadata(Registry *r, const char *machine_id, const char *key, const char *value) {
        RegOp *op;
        int k = metadata_op(r, machine_id, key, value, &op);
        return k < 0 ? k : fl_reg_op_run(op);
}

int fl_registry_set_machine_metadata_async(Registry *r, const char *machine_id, const char *key,
                                           const char *value, RegDoneFn done, void *userdata) {
        RegOp *op;
        int k = metadata_op(r, machine_id, key, value, &op);
        return k < 0 ? k : fl_reg_op_start(op, done, userdata);
}
