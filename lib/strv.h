/* SPDX-License-Identifier: MIT */
/* strv.h: NULL-terminated string arrays. */
#pragma once

#include "macro.h"

char **fl_strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, fl_strv_free);
#define _cleanup_strv_free_ _cleanup_(fl_strv_freep)

size_t fl_strv_length(char *const *l);
/* Appends a copy of s; returns 0 or -ENOMEM. */
int fl_strv_extend(char ***l, const char *s);
/* Appends s itself (ownership moves into the list, freed on failure). */
int fl_strv_push(char ***l, char *s);
bool fl_strv_contains(char *const *l, const char *s);
/* Same strings in the same order (NULL and empty are equal). */
bool fl_strv_equal(char *const *a, char *const *b);
/* Splits s at any character of sep, dropping empty pieces. */
int fl_strv_split(const char *s, const char *sep, char ***ret);
void fl_strv_sort(char **l);

#define STRV_FOREACH(s, l) for (char *const *s = (l); s && *s; s++)
