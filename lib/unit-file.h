/* SPDX-License-Identifier: MIT */
/* unit-file.h: systemd unit files the way fleet sees them (spec §7.1, §7.2): an ordered list of
 * (section, name, value) options, the go-systemd lexer, the canonical serialization and its
 * SHA-1, which is the unit's identity in the registry. Pure logic, no I/O. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* Largest unit text we parse. fleet has no limit; ours keeps a hostile API client or a stray
 * `fleetctl submit /dev/zero` from eating memory. Units are a few hundred bytes in practice. */
#define FL_UNIT_FILE_MAX (1024U * 1024U)
/* go-systemd's guard against lines systemd would truncate. */
#define FL_UNIT_LINE_MAX 2048U

typedef struct UnitOption {
        char *section;
        char *name;
        char *value;
} UnitOption;

typedef struct UnitFile {
        UnitOption *options; /* in file order; duplicates kept */
        size_t n_options;
        size_t n_allocated;
} UnitFile;

/* Parses unit text per spec §7.1 (go-systemd deserializer, including continuation lines and the
 * 2048-byte line guard). data need not be NUL-terminated. On a syntax error returns -EINVAL and,
 * if ret_error != NULL, stores an owned "line N: <reason>" with fleet's reason ("EOF", "unable to
 * find end of section", "line too long (max 2048 bytes)", ...). Deliberately stricter than fleet:
 * NUL bytes ("NUL byte") and invalid UTF-8 ("invalid UTF-8") are -EINVAL too, and more than
 * FL_UNIT_FILE_MAX bytes is -E2BIG ("unit file too large", no line). -ENOMEM sets no message.
 * *ret_error is left alone on success. */
int fl_unit_file_parse(const char *data, size_t len, UnitFile **ret, char **ret_error);

/* The same parse, for callers that need fleet's bare message (API validation returns it
 * verbatim): on error *ret_reason is the reason without "line N: " and *ret_line its line. */
int fl_unit_file_parse_full(const char *data, size_t len, UnitFile **ret, char **ret_reason,
                            unsigned *ret_line);

int fl_unit_file_new(UnitFile **ret);
UnitFile *fl_unit_file_free(UnitFile *u);
DEFINE_TRIVIAL_CLEANUP_FUNC(UnitFile *, fl_unit_file_free);

/* Appends copies of the three strings (all required, may be ""). */
int fl_unit_file_add(UnitFile *u, const char *section, const char *name, const char *value);
int fl_unit_file_dup(const UnitFile *u, UnitFile **ret);

/* Canonical text (§7.2): options grouped by section in order of first appearance, "[S]\n" then
 * "name=value\n" lines, a blank line between sections, "" for no options. NULL only on OOM. */
char *fl_unit_file_serialize(const UnitFile *u);
/* SHA-1 of the canonical text. 0 or -ENOMEM. */
int fl_unit_file_hash(const UnitFile *u, uint8_t ret[20]);
/* The same from the canonical text itself (fl_unit_file_serialize()'s), for who has it already. */
int fl_unit_file_hash_serialized(const char *raw, uint8_t ret[20]);
/* Both serializations equal, i.e. equal hashes ("the units match" in fleet). */
bool fl_unit_file_equal(const UnitFile *a, const UnitFile *b);

void fl_hash_to_hex(const uint8_t h[20], char ret[41]);
/* Exactly 40 hex digits (either case), else -EINVAL. */
int fl_hash_from_hex(const char *s, uint8_t ret[20]);

/* Value of the first option with this section and name, or NULL. */
const char *fl_unit_file_get(const UnitFile *u, const char *section, const char *name);
bool fl_unit_file_has_section(const UnitFile *u, const char *section);

/* Decodes the UTF-8 sequence at s (n bytes available) with Go's rules (no overlong forms, no
 * surrogates, nothing above U+10FFFF): its length, or 0 if it is invalid or truncated. */
size_t fl_utf8_decode(const char *s, size_t n, uint32_t *ret_cp);
/* Go's unicode.IsSpace for the UTF-8 rune at s (n bytes available): the rune's length if it is
 * white space, else 0. Invalid bytes are not space. Shared with the [X-Fleet] code, which splits
 * like Go's strings.Fields. */
size_t fl_utf8_space_len(const char *s, size_t n);
