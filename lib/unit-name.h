/* SPDX-License-Identifier: MIT */
/* unit-name.h: unit names: fleet's ValidateName (spec §7.3), template/instance split (§1.4),
 * fleetctl's name mangling, and Go-style quoting for the messages that embed names. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

#define FL_UNIT_NAME_MAX 256U

/* fleet's ValidateName: 0, or -EINVAL with *ret_msg (owned, if ret_msg != NULL) set to fleet's
 * exact message, e.g. "invalid character '/' in unit name". -ENOMEM on OOM. */
int fl_unit_name_validate(const char *name, char **ret_msg);

typedef struct UnitNameInfo {
        char *full;          /* "foo@bar.service" */
        char *name;          /* without suffix: "foo@bar" */
        char *prefix;        /* before the first '@' ("foo"), or the whole name without '@' */
        char *instance;      /* after the first '@' ("bar"), "" if none */
        char *suffix;        /* after the last '.', without the dot: "service" */
        char *template_name; /* "foo@.service", NULL when the name has no '@' */
} UnitNameInfo;

/* fleet's UnitNameInfo: only needs a '.' (-EINVAL otherwise); does not validate. */
int fl_unit_name_info(const char *name, UnitNameInfo *ret);
void fl_unit_name_info_done(UnitNameInfo *i);

bool fl_unit_name_is_template(const char *name); /* "foo@.service" */
bool fl_unit_name_is_instance(const char *name); /* "foo@1.service" */
/* "foo@1.service" -> "foo@.service"; NULL when not an instance (or OOM). */
char *fl_unit_name_template_of(const char *name);

/* fleetctl's mangling (§1.4): Go path.Base of arg, then ".service" appended unless it already
 * ends in an agent-manageable suffix ("foo.target" -> "foo.target.service", like fleet). */
char *fl_unit_name_mangle(const char *arg);
/* Suffix is service/socket/timer/path/device/mount/automount: the files the agent manages. */
bool fl_unit_name_agent_manageable(const char *name);

/* Hardening beyond fleet, for places that put a name into a file name or a shell command line
 * (agent unit directory, `fleetctl status` over SSH): ValidateName passes and additionally the
 * name fits NAME_MAX (255), has a non-empty stem, does not start with '-' or '.', contains no
 * ".." and no backslash (a systemd \xNN escape changes meaning unquoted in a shell word). */
bool fl_unit_name_is_safe(const char *name);

/* Go's strconv.Quote / %q of a string: owned, NULL on OOM. Used for messages that fleet formats
 * with %q, e.g. `invalid unit type: "foo"`. Printable non-ASCII runes are kept; the printability
 * test is an approximation of Go's tables (controls, spaces, format and private-use characters
 * are escaped). */
char *fl_go_quote(const char *s);
/* %q of a single rune: "'/'", "'\\n'", ... into ret (at least 16 bytes). */
void fl_go_quote_rune(uint32_t cp, char ret[16]);
