/* SPDX-License-Identifier: MIT */
/* glob.h: Go's path.Match, used for the Conflicts and Replaces globs of [X-Fleet] (spec §5.4). */
#pragma once

#include <stdbool.h>

/* '*' matches any run of non-'/' characters, '?' one non-'/' character, "[...]" a class of
 * characters and ranges ("[^...]" negated; a class may match '/'), '\' escapes the next
 * character; the whole name must match. Matching is by UTF-8 rune. A malformed pattern
 * ("[", "[]", "[a-]", trailing '\', ...) never matches, as fleet ignores path.Match's error. */
bool fl_glob_match(const char *pattern, const char *name);
/* Whether pattern is well-formed by path.Match's grammar. */
bool fl_glob_valid(const char *pattern);
