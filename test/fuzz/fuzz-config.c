/* SPDX-License-Identifier: MIT */
/* fuzz-config: fleet.conf (goini syntax, spec §2.2) and the FLEET_<KEY> environment, through
 * fl_config_load on a memfd. Input: file text, then optionally a NUL and NUL-separated
 * environment entries ("FLEET_METADATA=a=b"). Also checks fl_parse_go_duration against an exact
 * reference on every line of the input. */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>

#include "config.h"
#include "fuzz.h"
#include "strv.h"

/* Go's time.ParseDuration in exact arithmetic (-1: invalid, -2: out of range), in usec. */
static int64_t ref_duration(const char *s) {
        static const struct {
                const char *unit;
                uint64_t ns;
        } units[] = {
                { "ns", 1 }, { "us", 1000 }, { "\xc2\xb5s", 1000 }, { "\xce\xbcs", 1000 },
                { "ms", 1000000 }, { "s", UINT64_C(1000000000) }, { "m", UINT64_C(60000000000) },
                { "h", UINT64_C(3600000000000) },
        };
        unsigned __int128 total = 0;
        bool neg = false;

        if (*s == '+' || *s == '-')
                neg = *s++ == '-';
        if (streq(s, "0"))
                return 0;
        if (!*s)
                return -1;
        while (*s) {
                unsigned __int128 whole = 0, frac = 0, scale = 1, unit = 0;
                bool digits = false;
                size_t ul = 0;

                for (; isdigit((unsigned char) *s); s++) {
                        /* the same (conservative) overflow test as lib/config.c */
                        if (whole > (UINT64_MAX - 9) / 10)
                                return -2;
                        whole = whole * 10 + (unsigned) (*s - '0');
                        digits = true;
                }
                if (*s == '.')
                        for (s++; isdigit((unsigned char) *s); s++) {
                                digits = true;
                                if (scale < (unsigned __int128) 1000000000000000000ULL * 1000) {
                                        frac = frac * 10 + (unsigned) (*s - '0');
                                        scale *= 10;
                                }
                        }
                if (!digits)
                        return -1;
                /* The unit: the run up to the next digit or '.', as Go cuts it. */
                while (s[ul] && s[ul] != '.' && !isdigit((unsigned char) s[ul]))
                        ul++;
                for (size_t i = 0; i < ELEMENTSOF(units); i++)
                        if (strlen(units[i].unit) == ul && strncmp(s, units[i].unit, ul) == 0)
                                unit = units[i].ns;
                if (unit == 0)
                        return -1;
                s += ul;
                total += whole * unit + frac * unit / scale;
                if (total > UINT64_MAX)
                        return -2;
        }
        if (neg && total > 0)
                return -2;
        return (int64_t) (total / 1000);
}

static void check_duration(const char *s) {
        uint64_t usec = 0;
        int64_t want = ref_duration(s);
        int r = fl_parse_go_duration(s, &usec);

        /* Both refuse; which error (garbage or out of range) may differ: Go checks the
         * whole unit word first, lib/config.c overflow first. */
        if (want < 0) {
                if (r >= 0)
                        fprintf(stderr, "duration \"%s\": got %" PRIu64 " usec, want an error\n", s, usec);
                FUZZ_CHECK(r == -EINVAL || r == -ERANGE);
        } else {
                if (r < 0 || (usec != (uint64_t) want && usec + 1 != (uint64_t) want &&
                              usec != (uint64_t) want + 1))
                        fprintf(stderr, "duration \"%s\": got %d %" PRIu64 ", want %" PRId64 "\n", s, r,
                                usec, want);
                FUZZ_CHECK(r == 0);
                /* ours drops fraction digits beyond 1e-15 of the unit: 1 usec of slack */
                FUZZ_CHECK(usec == (uint64_t) want || usec + 1 == (uint64_t) want ||
                           usec == (uint64_t) want + 1);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(fl_config_freep) FleetConfig *c = NULL;
        _cleanup_strv_free_ char **env = NULL;
        _cleanup_free_ char *error = NULL, *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        char path[64];
        const uint8_t *b;
        size_t al, bl;
        int r;

        if (size > 64 * 1024)
                return 0;
        fuzz_split(data, size, &al, &b, &bl);

        env = new0(char *, 1);
        FUZZ_CHECK(env);
        for (size_t i = 0; i < bl;) {
                const uint8_t *z = memchr(b + i, 0, bl - i);
                size_t l = z ? (size_t) (z - (b + i)) : bl - i;
                char *e = fuzz_strndup(b + i, l);
                FUZZ_CHECK(e && fl_strv_push(&env, e) == 0);
                i += l + 1;
        }

        fd = memfd_create("fleet.conf", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(write(fd, data, al) == (ssize_t) al);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

        r = fl_config_load(path, env, &c, &error);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL);
                FUZZ_CHECK(error);
                FUZZ_CHECK(startswith(error, "iniparser: syntax error at '/proc/self/fd/") ||
                           startswith(error, "Failed creating Server: invalid agent_ttl"));
                FUZZ_CHECK(!c);
        } else {
                FUZZ_CHECK(c && !error);
                FUZZ_CHECK(c->token_limit >= 1 && c->token_limit <= 65535);
                FUZZ_CHECK(c->agent_ttl_usec > 0);
                FUZZ_CHECK(c->etcd_request_timeout_usec > 0 && c->engine_reconcile_interval_usec > 0);
                FUZZ_CHECK(c->etcd_servers && c->metadata && c->api_listen && c->warnings);
                FUZZ_CHECK(c->etcd_key_prefix && c->units_directory);
                STRV_FOREACH(s, c->etcd_servers)
                        FUZZ_CHECK(**s && !strchr(" [\"", (*s)[0]) && !strchr(" \"]", (*s)[strlen(*s) - 1]) &&
                                   !strchr(*s, ','));
                STRV_FOREACH(s, c->api_listen)
                        FUZZ_CHECK(**s && !strchr(*s, ','));
                FUZZ_CHECK(fl_strv_length(c->metadata) % 2 == 0);
                for (size_t i = 0; c->metadata[i]; i += 2) {
                        FUZZ_CHECK(*c->metadata[i]);
                        for (size_t j = 0; j < i; j += 2)
                                FUZZ_CHECK(!streq(c->metadata[i], c->metadata[j]));
                }
        }

        /* Durations: every short line of the file part on its own. */
        text = fuzz_strndup(data, al);
        FUZZ_CHECK(text);
        for (char *line = text, *next; line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (strlen(line) <= 64)
                        check_duration(line);
        }
        return 0;
}
