/* SPDX-License-Identifier: MIT */
/* unit-options.h: the [X-Fleet] section (spec §7.4, §7.5): requirements of a unit, fleet's
 * ValidateOptions, metadata matching and the AbleToRun pieces (§5.4) shared by the engine and
 * the agent. Extension over fleet v1.0.0: MachineMetadata operators != < <= > >=. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "unit-file.h"

typedef enum MetaOp {
        META_EQ,
        META_NE,
        META_LT,
        META_LE,
        META_GT,
        META_GE,
} MetaOp;

typedef struct MetaReq {
        char *key;
        MetaOp op;
        char *value;
} MetaReq;

typedef struct UnitRequirements {
        /* MachineID, else X-ConditionMachineID, else X-ConditionMachineBootID: first value,
         * specifiers applied. NULL when none is set; "" is a (never satisfiable) requirement. */
        char *machine_id;
        char **machine_of;   /* MachineOf + X-ConditionMachineOf, exact names, file order */
        MetaReq *metadata;   /* MachineMetadata + X-ConditionMachineMetadata, see below */
        size_t n_metadata;
        char **conflicts;    /* Conflicts + X-Conflicts, each value split on white space */
        char **replaces;     /* Replaces, values as they are */
        bool global;         /* last Global value is true/yes/1/on/t (any case) */
        char **unknown_keys; /* unrecognised [X-Fleet] keys, distinct, file order */
} UnitRequirements;
/* The char ** lists are NULL-terminated and NULL when empty. metadata is deduplicated and
 * grouped by key (keys in order of first appearance, file order within a key). */

/* Reads the [X-Fleet] section of u. Quoted values ("a" "b") become several values (§7.5);
 * %n %N %p %i are expanded with unit_name when it contains a '.' (fleet's job code); with
 * unit_name == NULL nothing is expanded. A MachineMetadata item is "k=v" (META_EQ, used only if
 * both parts are non-empty and v has no '=', exactly like fleet) or, our extension, "k!=v",
 * "k<v", "k<=v", "k>v", "k>=v": the key ends at the first of = ! < >. Other items are ignored.
 * 0 or -ENOMEM; *ret is filled only on success. */
int fl_unit_requirements_parse(const UnitFile *u, const char *unit_name, UnitRequirements *ret);
void fl_unit_requirements_done(UnitRequirements *r);

/* fleet's ValidateOptions (§7.4): 0, or -EINVAL with *ret_msg (owned, if ret_msg != NULL) set
 * to fleet's exact message ("line too long (max 2048 bytes)", "unresolvable requirements: peer
 * \"a\" matches conflict \"b\"", "MachineID cannot be used with Global", ...). fleet validates
 * without a unit name, so specifiers are NOT expanded there: pass unit_name == NULL to behave
 * like fleet's API and fleetctl; a name expands them first. Our one addition: more than a
 * million MachineOf x (Conflicts + Replaces) pairs to check is refused ("too many MachineOf,
 * Conflicts and Replaces values") instead of stalling the caller. */
int fl_unit_options_validate(const UnitFile *u, const char *unit_name, char **ret_msg);
/* Its first part alone: the options survive being written as a unit file and read back (the
 * go-systemd round trip, and beyond fleet: the same sections and names come back, so a line
 * break cannot inject options). 0 or -EINVAL with *ret_msg, -ENOMEM. */
int fl_unit_options_check_syntax(const UnitFile *u, char **ret_msg);

/* Whether a machine with this metadata (parallel arrays, keys expected to be unique) satisfies
 * r. AND across keys; within a key the META_EQ requirements are alternatives (fleet's OR);
 * every other requirement must hold on its own: != holds when the machine lacks the key,
 * < <= > >= need the key and compare as numbers when both sides are numbers (strtod over the
 * whole string), else as strings (strcmp). No requirements: true. */
bool fl_metadata_match(const UnitRequirements *r, char *const *keys, char *const *values,
                       size_t n);
/* The requirement list for messages: "region=eu, region=us, disk!=hdd"; "" when none; NULL on
 * OOM. */
char *fl_metadata_explain(const UnitRequirements *r);

/* AbleToRun step 1: required equals the machine ID or its 8-character short form. */
bool fl_machine_id_match(const char *required, const char *machine_id);
/* AbleToRun step 4: a Conflicts glob of a matches name_b, or one of b matches name_a. */
bool fl_unit_conflicts_with(const char *name_a, const UnitRequirements *ra, const char *name_b,
                            const UnitRequirements *rb);
/* AbleToRun step 5 (one direction): a Replaces glob of a matches name_b. */
bool fl_unit_replaces(const UnitRequirements *ra, const char *name_b);

/* fleet's truthiness for Global: true, yes, 1, on, t in any case. */
bool fl_fleet_truthy(const char *s);
/* The key is one fleet recognises in [X-Fleet] (including deprecated aliases). */
bool fl_unit_option_known(const char *key);
