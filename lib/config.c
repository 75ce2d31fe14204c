/* SPDX-License-Identifier: MIT */
/* config.c: fleetd configuration: defaults, then a goini-syntax file, then FLEET_<KEY>
 * environment variables (spec §2.2). Pure parsing: nothing here logs above debug; messages
 * meant for the user are handed back (ret_error, FleetConfig.warnings). */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "strv.h"

#define USEC_PER_SEC UINT64_C(1000000)

typedef enum KeyType {
        KEY_INT,       /* int, Go strconv base 0 */
        KEY_UINT16,    /* unsigned, 1..65535 */
        KEY_STRING,    /* char * */
        KEY_SERVERS,   /* strv, each item stripped of ` ["` / ` "]` */
        KEY_LIST,      /* strv, comma separated, trimmed, empty items dropped */
        KEY_SECONDS,   /* uint64 usec from a float number of seconds */
        KEY_DURATION,  /* uint64 usec from a Go duration; invalid is fatal */
        KEY_BOOL,      /* bool, Go ParseBool forms */
        KEY_METADATA,  /* strv k, v, k, v ... */
        KEY_DEPRECATED,/* accepted, ignored with a warning */
} KeyType;

typedef struct KeyDef {
        const char *name;
        KeyType type;
        size_t offset;
} KeyDef;

#define K(n, t) { #n, t, offsetof(FleetConfig, n) }
static const KeyDef keys[] = {
        K(verbosity, KEY_INT),
        K(etcd_servers, KEY_SERVERS),
        K(etcd_username, KEY_STRING),
        K(etcd_password, KEY_STRING),
        K(etcd_keyfile, KEY_STRING),
        K(etcd_certfile, KEY_STRING),
        K(etcd_cafile, KEY_STRING),
        K(etcd_key_prefix, KEY_STRING),
        { "etcd_request_timeout", KEY_SECONDS, offsetof(FleetConfig, etcd_request_timeout_usec) },
        { "engine_reconcile_interval", KEY_SECONDS,
          offsetof(FleetConfig, engine_reconcile_interval_usec) },
        K(public_ip, KEY_STRING),
        K(metadata, KEY_METADATA),
        { "agent_ttl", KEY_DURATION, offsetof(FleetConfig, agent_ttl_usec) },
        K(units_directory, KEY_STRING),
        K(systemd_user, KEY_BOOL),
        K(token_limit, KEY_UINT16),
        K(enable_grpc, KEY_BOOL),
        K(disable_engine, KEY_BOOL),
        K(disable_watches, KEY_BOOL),
        K(api_listen, KEY_LIST),
        K(api_socket_group, KEY_STRING),
        K(api_tls_certfile, KEY_STRING),
        K(api_tls_keyfile, KEY_STRING),
        K(api_tls_cafile, KEY_STRING),
        K(api_allow_insecure_tcp, KEY_BOOL),
        { "verify_units", KEY_DEPRECATED, 0 },
        { "authorized_keys_file", KEY_DEPRECATED, 0 },
};
#undef K

/* One key=value of the file's top level. Later entries win. */
typedef struct Entry {
        char *key; /* lower-cased */
        char *value;
        unsigned line;
} Entry;

typedef struct Entries {
        Entry *items;
        size_t n;
} Entries;

static void entries_done(Entries *e) {
        for (size_t i = 0; i < e->n; i++) {
                free(e->items[i].key);
                free(e->items[i].value);
        }
        free(e->items);
        *e = (Entries) {};
}

static int entries_add(Entries *e, const char *key, size_t key_len, const char *value, size_t value_len,
                       unsigned line) {
        _cleanup_free_ char *k = strndup(key, key_len), *v = strndup(value, value_len);
        Entry *n;

        if (!k || !v)
                return -ENOMEM;
        for (char *p = k; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        n = realloc(e->items, sizeof(Entry) * (e->n + 1));
        if (!n)
                return -ENOMEM;
        e->items = n;
        e->items[e->n++] = (Entry) { TAKE_PTR(k), TAKE_PTR(v), line };
        return 0;
}

static const Entry *entries_find(const Entries *e, const char *key) {
        for (size_t i = e->n; i > 0; i--)
                if (streq(e->items[i - 1].key, key))
                        return &e->items[i - 1];
        return NULL;
}

/* Trims ASCII whitespace from both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n) {
        while (*n > 0 && isspace((unsigned char) **s)) {
                (*s)++;
                (*n)--;
        }
        while (*n > 0 && isspace((unsigned char) (*s)[*n - 1]))
                (*n)--;
}

static bool is_comment_start(char c) {
        return c == '#' || c == ';';
}

/* Parses the value part (after '=', untrimmed) of a key=value line: "..." or '...' (the whole
 * value, an optional comment may follow), or unquoted up to the first '#' or ';'. */
static bool parse_value(const char *s, size_t n, const char **ret, size_t *ret_len) {
        trim(&s, &n);
        if (n > 0 && (s[0] == '"' || s[0] == '\'')) {
                char q = s[0];
                /* The closing quote is the last one that is followed only by a comment. */
                for (size_t i = n; i > 1; i--) {
                        const char *rest;
                        size_t rest_len;

                        if (s[i - 1] != q)
                                continue;
                        rest = s + i;
                        rest_len = n - i;
                        trim(&rest, &rest_len);
                        if (rest_len == 0 || is_comment_start(rest[0])) {
                                *ret = s + 1;
                                *ret_len = i - 2;
                                return true;
                        }
                }
                return false;
        }
        *ret = s;
        *ret_len = strcspn(s, "#;");
        if (*ret_len > n)
                *ret_len = n;
        trim(ret, ret_len);
        return true;
}

/* One logical line (continuations joined). Returns 0, or -EINVAL for a syntax error. */
static int parse_line(const char *s, unsigned line, bool *in_section, Entries *e) {
        size_t n = strlen(s);
        const char *eq, *v;
        size_t key_len, v_len;

        trim(&s, &n);
        if (n == 0 || is_comment_start(s[0]))
                return 0;
        if (s[0] == '[') {
                if (s[n - 1] != ']' || n < 3)
                        return -EINVAL;
                /* Only keys outside any section are configuration. */
                *in_section = true;
                return 0;
        }
        eq = memchr(s, '=', n);
        if (!eq)
                return -EINVAL;
        key_len = (size_t) (eq - s);
        trim(&s, &key_len);
        if (key_len == 0)
                return -EINVAL;
        if (!parse_value(eq + 1, n - (size_t) (eq + 1 - s), &v, &v_len))
                return -EINVAL;
        if (*in_section)
                return 0;
        return entries_add(e, s, key_len, v, v_len, line);
}

static int parse_file(FILE *f, const char *path, Entries *e, char **ret_error) {
        _cleanup_free_ char *raw = NULL;
        size_t cap = 0;
        Buf logical = BUF_INIT;
        unsigned lineno = 0, start = 0;
        bool in_section = false;
        ssize_t len;
        int r = 0;

        for (;;) {
                const char *s;
                size_t n;
                bool cont;

                len = getline(&raw, &cap, f);
                if (len < 0)
                        break;
                lineno++;
                s = raw;
                n = (size_t) len;
                if (lineno == 1 && n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
                        s += 3;
                        n -= 3;
                }
                trim(&s, &n);
                cont = n > 0 && s[n - 1] == '\\';
                if (cont)
                        n--;
                if (logical.len == 0)
                        start = lineno;
                r = fl_buf_append(&logical, s, n);
                if (r < 0)
                        goto finish;
                if (cont)
                        continue;
                r = parse_line(fl_buf_str(&logical), start, &in_section, e);
                if (r < 0)
                        goto fail;
                fl_buf_reset(&logical);
        }
        if (ferror(f)) {
                r = -errno ?: -EIO;
                if (ret_error && asprintf(ret_error, "Unable to read config file %s: %s", path,
                                          strerror(-r)) < 0)
                        *ret_error = NULL;
                goto finish;
        }
        /* A trailing backslash on the last line continues into nothing. */
        if (logical.len > 0) {
                r = parse_line(fl_buf_str(&logical), start, &in_section, e);
                if (r < 0)
                        goto fail;
        }
        r = 0;
        goto finish;
fail:
        if (r == -EINVAL && ret_error &&
            asprintf(ret_error, "iniparser: syntax error at '%s:%u'.", path, start) < 0)
                *ret_error = NULL;
finish:
        fl_buf_done(&logical);
        return r;
}

/* ---- value parsers ---- */

static bool parse_go_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
        static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (streq(s, yes[i])) {
                        *ret = true;
                        return true;
                }
                if (streq(s, no[i])) {
                        *ret = false;
                        return true;
                }
        }
        return false;
}

/* Go's strconv.ParseInt(s, 0, 64) minus underscores: optional sign, 0x/0o/0b/0 prefixes. */
static bool parse_go_int(const char *s, long long *ret) {
        const char *p = s;
        bool neg = false;
        int base = 10;
        unsigned long long v;
        char *end;

        if (*p == '+' || *p == '-')
                neg = *p++ == '-';
        if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
                base = 16;
                p += 2;
        } else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O')) {
                base = 8;
                p += 2;
        } else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B')) {
                base = 2;
                p += 2;
        } else if (p[0] == '0' && p[1])
                base = 8;
        if (!isalnum((unsigned char) *p))
                return false;
        errno = 0;
        v = strtoull(p, &end, base);
        if (errno != 0 || *end || v > (unsigned long long) LLONG_MAX + neg)
                return false;
        *ret = neg ? (long long) (0 - v) : (long long) v;
        return true;
}

/* Go's strconv.ParseFloat, close enough: decimal/exponent forms; rejects NaN and infinities
 * (meaningless as a number of seconds). */
static bool parse_go_float(const char *s, double *ret) {
        char *end;
        double d;

        if (isempty(s) || isspace((unsigned char) s[0]))
                return false;
        errno = 0;
        d = strtod(s, &end);
        if (errno != 0 || *end || !isfinite(d))
                return false;
        *ret = d;
        return true;
}

int fl_parse_go_duration(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *unit;
                uint64_t ns;
        } units[] = {
                { "ns", 1 },
                { "us", 1000 },
                { "\xc2\xb5s", 1000 }, /* U+00B5 micro sign */
                { "\xce\xbcs", 1000 }, /* U+03BC Greek mu */
                { "ms", 1000000 },
                { "s", UINT64_C(1000000000) },
                { "m", UINT64_C(60000000000) },
                { "h", UINT64_C(3600000000000) },
        };
        uint64_t total = 0;
        bool neg = false;
        const char *p = s;

        if (!s)
                return -EINVAL;
        if (*p == '+' || *p == '-')
                neg = *p++ == '-';
        if (streq(p, "0")) {
                *ret_usec = 0;
                return 0;
        }
        if (!*p)
                return -EINVAL;
        while (*p) {
                uint64_t whole = 0, frac = 0, unit_ns = 0, v;
                double scale = 1;
                bool digits = false, frac_full = false;
                size_t ul = 0;

                for (; isdigit((unsigned char) *p); p++) {
                        if (whole > (UINT64_MAX - 9) / 10)
                                return -ERANGE;
                        whole = whole * 10 + (uint64_t) (*p - '0');
                        digits = true;
                }
                if (*p == '.') {
                        p++;
                        for (; isdigit((unsigned char) *p); p++) {
                                digits = true;
                                /* Like Go's leadingFraction: once another digit would overflow
                                 * int64, the rest only needs consuming, it cannot matter. */
                                if (frac_full || frac > ((UINT64_C(1) << 63) - 1) / 10 ||
                                    frac * 10 + (uint64_t) (*p - '0') > (UINT64_C(1) << 63)) {
                                        frac_full = true;
                                        continue;
                                }
                                frac = frac * 10 + (uint64_t) (*p - '0');
                                scale *= 10;
                        }
                }
                if (!digits)
                        return -EINVAL;
                for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                        size_t l = strlen(units[i].unit);
                        /* Longest match: "ms" before "m", "ns" before nothing. */
                        if (strncmp(p, units[i].unit, l) == 0 && l > ul) {
                                ul = l;
                                unit_ns = units[i].ns;
                        }
                }
                if (ul == 0)
                        return -EINVAL;
                p += ul;
                if (whole > UINT64_MAX / unit_ns)
                        return -ERANGE;
                v = whole * unit_ns;
                /* As Go: frac * unit / scale in float64, which is nanosecond accurate even for
                 * fractions of hours (frac / scale < 1, so the term is below unit_ns <= 3.6e12). */
                if (frac > 0)
                        v += (uint64_t) ((double) frac * ((double) unit_ns / scale));
                if (v < whole * unit_ns || total > UINT64_MAX - v)
                        return -ERANGE;
                total += v;
        }
        if (neg && total > 0)
                return -ERANGE;
        *ret_usec = total / 1000;
        return 0;
}

/* Adds one piece (p, n) of a comma list to the strv *l. */
typedef int (*ListPieceFunc)(char ***l, const char *p, size_t n);

/* Splits s at every ',' and hands each piece, empty ones too, to add; *ret: what they added. */
static int parse_comma_list(const char *s, ListPieceFunc add, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        int r;

        l = new0(char *, 1);
        if (!l)
                return -ENOMEM;
        for (const char *p = s;;) {
                size_t n = strcspn(p, ",");

                r = add(&l, p, n);
                if (r < 0)
                        return r;
                if (!p[n])
                        break;
                p += n + 1;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* Appends a copy of (p, n) unless it is empty. */
static int push_nonempty(char ***l, const char *p, size_t n) {
        char *item;

        if (n == 0)
                return 0;
        item = strndup(p, n);
        if (!item)
                return -ENOMEM;
        return fl_strv_push(l, item);
}

/* etcd_servers: comma list whose items are stripped of leading ` ["` and trailing ` "]`, so
 * both `["http://a:2379","http://b:2379"]` and `http://a:2379,http://b:2379` work. */
static int add_server(char ***l, const char *p, size_t n) {
        const char *b = p, *e = p + n;

        while (b < e && strchr(" [\"", *b))
                b++;
        while (e > b && strchr(" \"]", e[-1]))
                e--;
        return push_nonempty(l, b, (size_t) (e - b));
}

static int parse_servers(const char *s, char ***ret) {
        return parse_comma_list(s, add_server, ret);
}

static int add_list_item(char ***l, const char *p, size_t n) {
        trim(&p, &n);
        return push_nonempty(l, p, n);
}

static int parse_list(const char *s, char ***ret) {
        return parse_comma_list(s, add_list_item, ret);
}

/* metadata: `k=v,k=v`; pieces without '=' dropped; key and value trimmed; a later duplicate
 * replaces the value in place. Pieces with an empty key are dropped too: no selector could
 * ever match them. */
static int add_metadata_pair(char ***l, const char *p, size_t n) {
        const char *eq = memchr(p, '=', n);
        const char *k = p, *v;
        size_t kn, vn;
        int r;

        if (!eq)
                return 0;
        v = eq + 1;
        kn = (size_t) (eq - p);
        vn = n - kn - 1;
        trim(&k, &kn);
        trim(&v, &vn);
        if (kn == 0)
                return 0;

        _cleanup_free_ char *key = strndup(k, kn), *value = strndup(v, vn);
        if (!key || !value)
                return -ENOMEM;
        for (size_t i = 0; (*l)[i]; i += 2)
                if (streq((*l)[i], key)) {
                        free((*l)[i + 1]);
                        (*l)[i + 1] = TAKE_PTR(value);
                        return 0;
                }
        r = fl_strv_push(l, TAKE_PTR(key));
        if (r < 0)
                return r;
        return fl_strv_push(l, TAKE_PTR(value));
}

static int parse_metadata(const char *s, char ***ret) {
        return parse_comma_list(s, add_metadata_pair, ret);
}

static int add_warning(FleetConfig *c, const char *fmt, ...) _printf_(2, 3);
static int add_warning(FleetConfig *c, const char *fmt, ...) {
        va_list ap;
        char *m;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&m, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        return fl_strv_push(&c->warnings, m);
}

/* Where a value came from, for messages: "FLEET_X" or "path:line". */
static char *describe_source(const char *env_name, const char *path, const Entry *e) {
        char *s;

        if (env_name)
                return strdup(env_name);
        if (asprintf(&s, "%s:%u", path, e->line) < 0)
                return NULL;
        return s;
}

static int apply_key(FleetConfig *c, const KeyDef *k, const char *v, const char *source,
                     char **ret_error) {
        void *field = (uint8_t *) c + k->offset;
        long long ll;
        double d;
        bool b;
        int r;

        switch (k->type) {
        case KEY_INT:
                /* Invalid numbers keep the default, as fleet's flag parsing did. */
                if (parse_go_int(v, &ll) && ll >= INT_MIN && ll <= INT_MAX)
                        *(int *) field = (int) ll;
                else
                        log_debug("config: ignoring invalid %s \"%s\" (%s)", k->name, v, source);
                return 0;
        case KEY_UINT16:
                if (!parse_go_int(v, &ll))
                        log_debug("config: ignoring invalid %s \"%s\" (%s)", k->name, v, source);
                else if (ll < 1 || ll > UINT16_MAX)
                        return add_warning(c, "Config option %s must be between 1 and %u, got %lld (%s) - ignoring",
                                           k->name, (unsigned) UINT16_MAX, ll, source);
                else
                        *(unsigned *) field = (unsigned) ll;
                return 0;
        case KEY_STRING: {
                char *dup = strdup(v);
                if (!dup)
                        return -ENOMEM;
                free(*(char **) field);
                *(char **) field = dup;
                return 0;
        }
        case KEY_SERVERS:
        case KEY_LIST:
        case KEY_METADATA: {
                char **l = NULL;
                r = k->type == KEY_SERVERS ? parse_servers(v, &l)
                  : k->type == KEY_LIST    ? parse_list(v, &l)
                                           : parse_metadata(v, &l);
                if (r < 0)
                        return r;
                fl_strv_free(*(char ***) field);
                *(char ***) field = l;
                return 0;
        }
        case KEY_SECONDS:
                if (!parse_go_float(v, &d))
                        log_debug("config: ignoring invalid %s \"%s\" (%s)", k->name, v, source);
                else if (d <= 0 || d > 86400.0 * 365)
                        return add_warning(c, "Config option %s must be a positive number of seconds, got %s (%s) - ignoring",
                                           k->name, v, source);
                else
                        *(uint64_t *) field = (uint64_t) (d * (double) USEC_PER_SEC + 0.5);
                return 0;
        case KEY_DURATION: {
                uint64_t usec;
                r = fl_parse_go_duration(v, &usec);
                if (r >= 0 && usec == 0)
                        r = -ERANGE;
                if (r < 0) {
                        if (ret_error &&
                            asprintf(ret_error, "Failed creating Server: invalid %s \"%s\" (%s): %s", k->name, v,
                                     source, r == -ERANGE ? "must be a positive duration"
                                                          : "not a duration like 30s or 1m30s") < 0)
                                *ret_error = NULL;
                        return -EINVAL;
                }
                *(uint64_t *) field = usec;
                return 0;
        }
        case KEY_BOOL:
                if (parse_go_bool(v, &b))
                        *(bool *) field = b;
                else
                        log_debug("config: ignoring invalid %s \"%s\" (%s)", k->name, v, source);
                return 0;
        case KEY_DEPRECATED:
                return add_warning(c, "Config option %s is no longer supported - ignoring", k->name);
        }
        return -EINVAL;
}

static const char *env_lookup(char **envp, const char *name) {
        size_t l = strlen(name);

        for (char **e = envp; e && *e; e++)
                if (strncmp(*e, name, l) == 0 && (*e)[l] == '=')
                        return *e + l + 1;
        return NULL;
}

static int config_defaults(FleetConfig **ret) {
        _cleanup_(fl_config_freep) FleetConfig *c = new0(FleetConfig, 1);
        int r;

        if (!c)
                return -ENOMEM;
        r = parse_servers("http://127.0.0.1:2379,http://127.0.0.1:4001", &c->etcd_servers);
        if (r < 0)
                return r;
        c->etcd_key_prefix = strdup("/_coreos.com/fleet/");
        c->units_directory = strdup("/run/fleet/units/");
        c->metadata = new0(char *, 1);
        c->api_listen = new0(char *, 1);
        c->warnings = new0(char *, 1);
        if (!c->etcd_key_prefix || !c->units_directory || !c->metadata || !c->api_listen || !c->warnings)
                return -ENOMEM;
        c->etcd_request_timeout_usec = 1 * USEC_PER_SEC;
        c->engine_reconcile_interval_usec = 2 * USEC_PER_SEC;
        c->agent_ttl_usec = 30 * USEC_PER_SEC;
        c->token_limit = 100;
        *ret = TAKE_PTR(c);
        return 0;
}

static int set_error(char **ret_error, const char *fmt, ...) _printf_(2, 3);
static int set_error(char **ret_error, const char *fmt, ...) {
        va_list ap;

        if (!ret_error)
                return 0;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return 0;
}

int fl_config_load(const char *path, char **envp, FleetConfig **ret, char **ret_error) {
        _cleanup_(fl_config_freep) FleetConfig *c = NULL;
        _cleanup_(entries_done) Entries entries = {};
        const char *file = path ?: FL_CONFIG_DEFAULT_PATH;
        FILE *f;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!envp)
                envp = environ;

        r = config_defaults(&c);
        if (r < 0)
                return r;

        f = fopen(file, "re");
        if (!f) {
                r = -errno;
                if (r == -ENOENT && !path)
                        goto no_file; /* no default file: defaults and environment only */
                set_error(ret_error, "Unable to open config file %s: %s", file, strerror(-r));
                return r;
        }
        {
                struct stat st;
                if (fstat(fileno(f), &st) < 0) {
                        r = -errno;
                        fclose(f);
                        set_error(ret_error, "Unable to open config file %s: %s", file, strerror(-r));
                        return r;
                }
                if (S_ISDIR(st.st_mode)) {
                        fclose(f);
                        set_error(ret_error, "Unable to use config file %s: %s", file, strerror(EISDIR));
                        return -EISDIR;
                }
        }
        r = parse_file(f, file, &entries, ret_error);
        fclose(f);
        if (r < 0)
                return r;
        c->path = strdup(file);
        if (!c->path)
                return -ENOMEM;

no_file:
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const KeyDef *k = &keys[i];
                const Entry *e = entries_find(&entries, k->name);
                char env_name[64] = "FLEET_";
                const char *env, *value;
                _cleanup_free_ char *source = NULL;

                for (size_t j = 0; k->name[j] && j + 7 < sizeof(env_name); j++)
                        env_name[6 + j] = (char) toupper((unsigned char) k->name[j]);
                /* A set variable wins over the file even when empty. */
                env = env_lookup(envp, env_name);
                value = env ?: (e ? e->value : NULL);
                if (!value)
                        continue;
                source = describe_source(env ? env_name : NULL, file, e);
                if (!source)
                        return -ENOMEM;
                r = apply_key(c, k, value, source, ret_error);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(c);
        return 0;
}

FleetConfig *fl_config_free(FleetConfig *c) {
        if (!c)
                return NULL;
        free(c->path);
        fl_strv_free(c->etcd_servers);
        free(c->etcd_username);
        free(c->etcd_password);
        free(c->etcd_keyfile);
        free(c->etcd_certfile);
        free(c->etcd_cafile);
        free(c->etcd_key_prefix);
        free(c->public_ip);
        fl_strv_free(c->metadata);
        free(c->units_directory);
        fl_strv_free(c->api_listen);
        free(c->api_socket_group);
        free(c->api_tls_certfile);
        free(c->api_tls_keyfile);
        free(c->api_tls_cafile);
        fl_strv_free(c->warnings);
        return mfree(c);
}
