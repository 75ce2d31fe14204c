/* SPDX-License-Identifier: MIT */
/* fuzz-unit-file: the unit file lexer (spec §7.1) and canonical form (§7.2). Whatever parses
 * must serialize to text that parses back to the same canonical text and hash (the hash is the
 * unit's identity in the registry), and the error paths must say where and why. */
#include <stdio.h>

#include "fuzz.h"
#include "unit-file.h"
#include "unit-options.h"

static bool value_ends_in_backslash(const UnitFile *u) {
        for (size_t i = 0; i < u->n_options; i++) {
                size_t l = strlen(u->options[i].value);
                if (l > 0 && u->options[i].value[l - 1] == '\\')
                        return true;
        }
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL, *u2 = NULL, *d = NULL;
        _cleanup_free_ char *error = NULL, *reason = NULL, *reason2 = NULL, *s1 = NULL, *s2 = NULL;
        uint8_t h1[20], h2[20], h3[20];
        char hex[41];
        unsigned line = 0;
        int r, r2;

        r = fl_unit_file_parse((const char *) data, size, &u, &error);
        r2 = fl_unit_file_parse_full((const char *) data, size, NULL, &reason, &line);
        FUZZ_CHECK(r == r2);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL || r == -E2BIG || r == -ENOMEM);
                FUZZ_CHECK(!u);
                if (r == -EINVAL) {
                        /* "line N: reason", N within the input */
                        unsigned n = 1;
                        for (size_t i = 0; i < size; i++)
                                n += data[i] == '\n';
                        FUZZ_CHECK(error && reason);
                        FUZZ_CHECK(line >= 1 && line <= n);
                        FUZZ_CHECK(strncmp(error, "line ", 5) == 0);
                        FUZZ_CHECK(strstr(error, reason));
                }
                return 0;
        }
        FUZZ_CHECK(u && !error);

        s1 = fl_unit_file_serialize(u);
        FUZZ_CHECK(s1);
        FUZZ_CHECK((u->n_options == 0) == (s1[0] == 0));
        FUZZ_CHECK(fl_unit_file_hash(u, h1) == 0);

        /* Canonical text is a fixed point. */
        r = fl_unit_file_parse_full(s1, strlen(s1), &u2, &reason2, NULL);
        if (r == -EINVAL && streq(reason2, "line too long (max 2048 bytes)")) {
                /* go-systemd's line guard depends on where a line falls in its 4096-byte read
                 * buffer, so moving lines around (grouping by section) can trip it; fleet has the
                 * same property and ValidateOptions refuses such a unit. */
                FUZZ_CHECK(fl_unit_options_validate(u, NULL, NULL) == -EINVAL);
                return 0;
        }
        if (r < 0)
                fprintf(stderr, "canonical text does not parse: %s\n", strempty(reason2));
        FUZZ_CHECK(r == 0);
        s2 = fl_unit_file_serialize(u2);
        FUZZ_CHECK(s2);
        if (value_ends_in_backslash(u)) {
                /* Written out, a value's final backslash continues its line: it swallows the
                 * next option, or at the end gains a newline. go-systemd reads it the same way,
                 * so this is fleet's behaviour; the text settles one round later. */
                _cleanup_(fl_unit_file_freep) UnitFile *u3 = NULL;
                _cleanup_free_ char *s3 = NULL;
                uint8_t h4[20];

                _cleanup_free_ char *why = NULL;
                r = fl_unit_file_parse_full(s2, strlen(s2), &u3, &why, NULL);
                if (r == -EINVAL && streq(why, "line too long (max 2048 bytes)"))
                        return 0; /* the line guard again, see above */
                FUZZ_CHECK(r == 0);
                s3 = fl_unit_file_serialize(u3);
                FUZZ_CHECK_STREQ(s2, s3);
                FUZZ_CHECK(fl_unit_file_hash(u2, h2) == 0);
                FUZZ_CHECK(fl_unit_file_hash(u3, h4) == 0);
                FUZZ_CHECK(memcmp(h2, h4, 20) == 0);
        } else {
                FUZZ_CHECK_STREQ(s1, s2);
                FUZZ_CHECK(fl_unit_file_hash(u2, h2) == 0);
                FUZZ_CHECK(memcmp(h1, h2, 20) == 0);
                FUZZ_CHECK(u2->n_options == u->n_options);
                FUZZ_CHECK(fl_unit_file_equal(u, u2));
        }

        /* The hash is stable and survives its hex form. */
        FUZZ_CHECK(fl_unit_file_dup(u, &d) == 0);
        FUZZ_CHECK(fl_unit_file_hash(d, h3) == 0);
        FUZZ_CHECK(memcmp(h1, h3, 20) == 0);
        fl_hash_to_hex(h1, hex);
        FUZZ_CHECK(strlen(hex) == 40);
        FUZZ_CHECK(fl_hash_from_hex(hex, h3) == 0);
        FUZZ_CHECK(memcmp(h1, h3, 20) == 0);

        /* Lookups agree with the option list. */
        for (size_t i = 0; i < u->n_options; i++) {
                const UnitOption *o = &u->options[i];
                const char *v = fl_unit_file_get(u, o->section, o->name);
                FUZZ_CHECK(v);
                FUZZ_CHECK(fl_unit_file_has_section(u, o->section));
                /* no NUL can come through, values are valid UTF-8 like the input */
                for (const char *p = o->value; *p;) {
                        uint32_t cp;
                        size_t l = fl_utf8_decode(p, strlen(p), &cp);
                        FUZZ_CHECK(l > 0);
                        p += l;
                }
        }
        return 0;
}
