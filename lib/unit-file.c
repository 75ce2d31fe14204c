/* SPDX-License-Identifier: MIT */
/* unit-file.c: the go-systemd unit lexer, canonical serialization and hash (spec §7.1, §7.2).
 *
 * The lexer reproduces go-systemd's step machine closely because the unit hash is the unit's
 * identity: any difference in how a value is read changes the hash, and a fleetctl talking to
 * a Go fleetd (or the other way round) would see "differs from local unit file" forever. That
 * includes the 2048-byte line guard, which go-systemd only applies when its 4096-byte bufio
 * buffer happens to hold at least 2048 unread bytes at the start of a lexer step; the Reader
 * below models that buffer's fill points so the same lines are accepted and rejected. */
#include <mbedtls/sha1.h>
#include <stdio.h>
#include <stdlib.h>

#include "buf.h"
#include "unit-file.h"

#define BUFIO_SIZE 4096U /* size of go-systemd's bufio.Reader */
#define UTF8_MAX 4U

size_t fl_utf8_decode(const char *str, size_t n, uint32_t *ret_cp) {
        const uint8_t *s = (const uint8_t *) str;
        uint32_t cp, min;
        size_t len;

        if (n == 0)
                return 0;
        if (s[0] < 0x80) {
                *ret_cp = s[0];
                return 1;
        }
        if (s[0] >= 0xC2 && s[0] <= 0xDF) {
                len = 2;
                cp = s[0] & 0x1F;
                min = 0x80;
        } else if ((s[0] & 0xF0) == 0xE0) {
                len = 3;
                cp = s[0] & 0x0F;
                min = 0x800;
        } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
                len = 4;
                cp = s[0] & 0x07;
                min = 0x10000;
        } else
                return 0;
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return 0;
        *ret_cp = cp;
        return len;
}

/* unicode.IsSpace: the Latin-1 spaces plus the White_Space property (Unicode 8, Go 1.7). */
static bool go_is_space(uint32_t c) {
        switch (c) {
        case '\t':
        case '\n':
        case '\v':
        case '\f':
        case '\r':
        case ' ':
        case 0x85:
        case 0xA0:
        case 0x1680:
        case 0x2028:
        case 0x2029:
        case 0x202F:
        case 0x205F:
        case 0x3000:
                return true;
        default:
                return c >= 0x2000 && c <= 0x200A;
        }
}

size_t fl_utf8_space_len(const char *s, size_t n) {
        uint32_t cp;
        size_t l = fl_utf8_decode(s, n, &cp);

        return l > 0 && go_is_space(cp) ? l : 0;
}

/* Go's bytes.TrimSpace on s[*start, *end). */
static void trim_space(const char *s, size_t *start, size_t *end) {
        size_t p = *start, last = *start;
        bool leading = true;

        while (p < *end) {
                uint32_t cp;
                size_t l = fl_utf8_decode(s + p, *end - p, &cp);
                bool space = l > 0 && go_is_space(cp);

                if (l == 0)
                        l = 1;
                if (leading && space)
                        *start = p + l;
                else if (!space) {
                        leading = false;
                        last = p + l;
                }
                p += l;
        }
        *end = MAX(last, *start);
}

/* A model of bufio.Reader over the whole input: pos is the read index and filled the write
 * index, both absolute. Only the amount buffered matters (it decides when the guard looks). */
typedef struct Reader {
        const char *data;
        size_t len;
        size_t pos;
        size_t filled;
        /* There is no CR/LF in [nl_from, nl_at): lets the guard run in O(n) overall. */
        size_t nl_from;
        size_t nl_at;
} Reader;

static size_t reader_buffered(const Reader *r) {
        return r->filled - r->pos;
}

static void reader_fill(Reader *r) {
        size_t room = BUFIO_SIZE - reader_buffered(r);

        r->filled += MIN(room, r->len - r->filled);
}

static size_t utf8_seq_len(uint8_t c) {
        if (c < 0x80)
                return 1;
        if ((c & 0xE0) == 0xC0)
                return 2;
        if ((c & 0xF0) == 0xE0)
                return 3;
        return 4;
}

/* ReadRune: fills only while fewer than 4 bytes are buffered and they do not hold a whole rune.
 * Returns the rune's length, 0 at end of input. The input was validated as UTF-8. */
static size_t reader_read_rune(Reader *r, uint32_t *ret_cp) {
        size_t l;

        while (reader_buffered(r) < UTF8_MAX &&
               (reader_buffered(r) == 0 ||
                reader_buffered(r) < utf8_seq_len((uint8_t) r->data[r->pos])) &&
               r->filled < r->len)
                reader_fill(r);
        if (r->pos == r->filled)
                return 0;
        l = fl_utf8_decode(r->data + r->pos, reader_buffered(r), ret_cp);
        if (l == 0) {
                /* Unreachable after validation; behave like Go (U+FFFD, one byte). */
                *ret_cp = 0xFFFD;
                l = 1;
        }
        r->pos += l;
        return l;
}

/* ReadBytes(delim): [*ret_start, *ret_end) is everything up to and including delim, or the rest
 * of the input when delim does not occur (returns false then). */
static bool reader_read_until(Reader *r, char delim, size_t *ret_start, size_t *ret_end) {
        size_t start = r->pos;

        for (;;) {
                const char *p = memchr(r->data + r->pos, delim, reader_buffered(r));

                if (p) {
                        r->pos = (size_t) (p - r->data) + 1;
                        break;
                }
                if (r->filled == r->len) {
                        r->pos = r->filled;
                        *ret_start = start;
                        *ret_end = r->pos;
                        return false;
                }
                if (reader_buffered(r) >= BUFIO_SIZE)
                        r->pos = r->filled; /* ErrBufferFull: ReadBytes keeps the fragment */
                else
                        reader_fill(r);
        }
        *ret_start = start;
        *ret_end = r->pos;
        return true;
}

/* go-systemd's toEOL: one line without its LF and a CR before it (spec §7.1). */
static void reader_to_eol(Reader *r, size_t *ret_start, size_t *ret_end) {
        size_t s, e;

        (void) reader_read_until(r, '\n', &s, &e);
        if (e > s && r->data[e - 1] == '\n')
                e--;
        if (e > s && r->data[e - 1] == '\r')
                e--;
        *ret_start = s;
        *ret_end = e;
}

/* The guard run before every lexer step: at least LINE_MAX bytes buffered and no CR/LF among
 * the next LINE_MAX of them. */
static bool reader_line_too_long(Reader *r) {
        if (reader_buffered(r) < FL_UNIT_LINE_MAX)
                return false;
        if (r->pos < r->nl_from || r->pos > r->nl_at) {
                size_t end = r->pos + FL_UNIT_LINE_MAX, p = r->pos;

                while (p < end && r->data[p] != '\n' && r->data[p] != '\r')
                        p++;
                r->nl_from = r->pos;
                r->nl_at = p;
        }
        return r->nl_at - r->pos >= FL_UNIT_LINE_MAX;
}

typedef enum LexState {
        LEX_NEXT_SECTION,
        LEX_SECTION_NAME,
        LEX_SECTION_SUFFIX,
        LEX_IGNORE_LINE,
        LEX_SECTION_OR_OPTION,
        LEX_OPTION_NAME,
        LEX_OPTION_VALUE,
        LEX_DONE,
} LexState;

typedef struct Lexer {
        Reader rd;
        UnitFile *u;
        char *section;
        char *name;
        Buf value;
        LexState after_ignore; /* where a comment line returns to */
        char *reason;          /* error, owned */
        size_t err_pos;
} Lexer;

static int lex_fail(Lexer *l, size_t pos, const char *reason) {
        l->reason = strdup(reason);
        if (!l->reason)
                return -ENOMEM;
        l->err_pos = pos;
        return -EINVAL;
}

static bool is_comment(uint32_t c) {
        return c == '#' || c == ';';
}

static int lex_next_section(Lexer *l, LexState *st) {
        uint32_t c;

        if (reader_read_rune(&l->rd, &c) == 0)
                *st = LEX_DONE;
        else if (c == '[')
                *st = LEX_SECTION_NAME;
        else if (is_comment(c)) {
                l->after_ignore = LEX_NEXT_SECTION;
                *st = LEX_IGNORE_LINE;
        }
        return 0;
}

static int lex_section_name(Lexer *l, LexState *st) {
        size_t s, e;
        char *name;

        if (!reader_read_until(&l->rd, ']', &s, &e))
                return lex_fail(l, s > 0 ? s - 1 : 0, "unable to find end of section");
        /* Verbatim: spaces, even newlines, stay part of the name. */
        name = strndup(l->rd.data + s, e - 1 - s);
        if (!name)
                return -ENOMEM;
        free(l->section);
        l->section = name;
        *st = LEX_SECTION_SUFFIX;
        return 0;
}

static int lex_section_suffix(Lexer *l, LexState *st) {
        size_t s, e, ts, te;

        reader_to_eol(&l->rd, &s, &e);
        ts = s;
        te = e;
        trim_space(l->rd.data, &ts, &te);
        if (te > ts) {
                /* go-systemd formats the garbage with %v of a []byte: "[120 121]". */
                Buf b = BUF_INIT;
                int r = fl_buf_printf(&b, "found garbage after section name %s: [", l->section);

                for (size_t i = ts; r >= 0 && i < te; i++)
                        r = fl_buf_printf(&b, "%s%u", i > ts ? " " : "",
                                          (unsigned) (uint8_t) l->rd.data[i]);
                if (r >= 0)
                        r = fl_buf_putc(&b, ']');
                if (r < 0) {
                        fl_buf_done(&b);
                        return r;
                }
                l->reason = fl_buf_steal(&b);
                if (!l->reason)
                        return -ENOMEM;
                l->err_pos = s > 0 ? s - 1 : 0;
                return -EINVAL;
        }
        *st = LEX_SECTION_OR_OPTION;
        return 0;
}

/* A comment; a trailing backslash continues it onto the next line, which is ignored too. */
static int lex_ignore_line(Lexer *l, LexState *st) {
        for (;;) {
                size_t s, e;

                reader_to_eol(&l->rd, &s, &e);
                if (e == s || l->rd.data[e - 1] != '\\')
                        break;
        }
        *st = l->after_ignore;
        return 0;
}

static int lex_section_or_option(Lexer *l, LexState *st) {
        uint32_t c;
        size_t n = reader_read_rune(&l->rd, &c);

        if (n == 0)
                *st = LEX_DONE;
        else if (go_is_space(c))
                *st = LEX_SECTION_OR_OPTION;
        else if (c == '[')
                *st = LEX_SECTION_NAME;
        else if (is_comment(c)) {
                l->after_ignore = LEX_SECTION_OR_OPTION;
                *st = LEX_IGNORE_LINE;
        } else {
                l->rd.pos -= n; /* UnreadRune */
                *st = LEX_OPTION_NAME;
        }
        return 0;
}

static int lex_option_name(Lexer *l, LexState *st) {
        size_t start = l->rd.pos, s, e;

        for (;;) {
                uint32_t c;

                if (reader_read_rune(&l->rd, &c) == 0)
                        return lex_fail(l, start, "EOF");
                if (c == '\n' || c == '\r')
                        return lex_fail(l, start,
                                        "unexpected newline encountered while parsing option name");
                if (c == '=')
                        break;
        }
        s = start;
        e = l->rd.pos - 1;
        trim_space(l->rd.data, &s, &e);
        free(l->name);
        l->name = strndup(l->rd.data + s, e - s);
        if (!l->name)
                return -ENOMEM;
        fl_buf_reset(&l->value);
        *st = LEX_OPTION_VALUE;
        return 0;
}

/* One physical line of a value per step; a line ending in a backslash continues the value
 * (backslash kept, "\n" inserted) unless the next line is blank. */
static int lex_option_value(Lexer *l, LexState *st) {
        size_t s, e, ts, te, vs, ve;
        const char *v;
        int r;

        reader_to_eol(&l->rd, &s, &e);
        ts = s;
        te = e;
        trim_space(l->rd.data, &ts, &te);
        if (te > ts) {
                r = fl_buf_append(&l->value, l->rd.data + s, e - s);
                if (r < 0)
                        return r;
                if (l->rd.data[e - 1] == '\\') {
                        r = fl_buf_putc(&l->value, '\n');
                        if (r < 0)
                                return r;
                        *st = LEX_OPTION_VALUE;
                        return 0;
                }
        }

        v = fl_buf_str(&l->value);
        vs = 0;
        ve = l->value.len;
        trim_space(v, &vs, &ve);
        if (l->value.len > 0 && v[l->value.len - 1] == '\n') {
                /* Ended on an inserted newline: trimmed, then exactly one newline put back. */
                _cleanup_free_ char *t = NULL;

                if (asprintf(&t, "%.*s\n", (int) (ve - vs), v + vs) < 0)
                        return -ENOMEM;
                r = fl_unit_file_add(l->u, l->section, l->name, t);
        } else {
                _cleanup_free_ char *t = strndup(v + vs, ve - vs);

                if (!t)
                        return -ENOMEM;
                r = fl_unit_file_add(l->u, l->section, l->name, t);
        }
        if (r < 0)
                return r;
        *st = LEX_SECTION_OR_OPTION;
        return 0;
}

static unsigned line_of(const char *data, size_t pos) {
        unsigned line = 1;

        for (size_t i = 0; i < pos; i++)
                if (data[i] == '\n')
                        line++;
        return line;
}

/* Our additions to go-systemd: no NUL bytes (C strings, and D-Bus/etcd would mangle them) and
 * valid UTF-8 only (the go lexer silently turned bad bytes in names into U+FFFD). Returns the
 * offset of the first offending byte, or len. */
static size_t find_invalid(const char *data, size_t len, const char **ret_reason) {
        size_t p = 0;

        while (p < len) {
                uint32_t cp;
                size_t l;

                if (data[p] == 0) {
                        *ret_reason = "NUL byte";
                        return p;
                }
                if ((uint8_t) data[p] < 0x80) {
                        p++;
                        continue;
                }
                l = fl_utf8_decode(data + p, len - p, &cp);
                if (l == 0) {
                        *ret_reason = "invalid UTF-8";
                        return p;
                }
                p += l;
        }
        return len;
}

int fl_unit_file_parse_full(const char *data, size_t len, UnitFile **ret, char **ret_reason,
                            unsigned *ret_line) {
        _cleanup_(fl_unit_file_freep) UnitFile *u = NULL;
        const char *why = NULL;
        LexState st = LEX_NEXT_SECTION;
        Lexer l;
        size_t bad;
        int r;

        if (!data) {
                if (len > 0)
                        return -EINVAL;
                data = "";
        }
        if (len > FL_UNIT_FILE_MAX) {
                if (ret_reason) {
                        *ret_reason = strdup("unit file too large");
                        if (!*ret_reason)
                                return -ENOMEM;
                }
                if (ret_line)
                        *ret_line = 0;
                return -E2BIG;
        }

        r = fl_unit_file_new(&u);
        if (r < 0)
                return r;

        l = (Lexer) {
                /* nl_from > nl_at: an empty newline cache, the first guard fills it. */
                .rd = { .data = data, .len = len, .nl_from = 1, .nl_at = 0 },
                .u = u,
                .value = BUF_INIT,
        };

        bad = find_invalid(data, len, &why);
        if (bad < len)
                r = lex_fail(&l, bad, why);

        while (r >= 0 && st != LEX_DONE) {
                if (reader_line_too_long(&l.rd)) {
                        r = lex_fail(&l, l.rd.pos, "line too long (max 2048 bytes)");
                        break;
                }
                switch (st) {
                case LEX_NEXT_SECTION:
                        r = lex_next_section(&l, &st);
                        break;
                case LEX_SECTION_NAME:
                        r = lex_section_name(&l, &st);
                        break;
                case LEX_SECTION_SUFFIX:
                        r = lex_section_suffix(&l, &st);
                        break;
                case LEX_IGNORE_LINE:
                        r = lex_ignore_line(&l, &st);
                        break;
                case LEX_SECTION_OR_OPTION:
                        r = lex_section_or_option(&l, &st);
                        break;
                case LEX_OPTION_NAME:
                        r = lex_option_name(&l, &st);
                        break;
                case LEX_OPTION_VALUE:
                        r = lex_option_value(&l, &st);
                        break;
                case LEX_DONE:
                        break;
                }
        }

        free(l.section);
        free(l.name);
        fl_buf_done(&l.value);
        if (r < 0) {
                if (r == -EINVAL) {
                        if (ret_line)
                                *ret_line = line_of(data, l.err_pos);
                        if (ret_reason)
                                *ret_reason = TAKE_PTR(l.reason);
                }
                free(l.reason);
                return r;
        }
        if (ret)
                *ret = TAKE_PTR(u);
        return 0;
}

int fl_unit_file_parse(const char *data, size_t len, UnitFile **ret, char **ret_error) {
        _cleanup_free_ char *reason = NULL;
        unsigned line = 0;
        int r;

        r = fl_unit_file_parse_full(data, len, ret, &reason, &line);
        if (r >= 0 || !ret_error || !reason)
                return r;
        if (line == 0)
                *ret_error = TAKE_PTR(reason);
        else if (asprintf(ret_error, "line %u: %s", line, reason) < 0)
                return -ENOMEM;
        return r;
}

int fl_unit_file_new(UnitFile **ret) {
        UnitFile *u = new0(UnitFile, 1);

        if (!u)
                return -ENOMEM;
        *ret = u;
        return 0;
}

UnitFile *fl_unit_file_free(UnitFile *u) {
        if (!u)
                return NULL;
        for (size_t i = 0; i < u->n_options; i++) {
                free(u->options[i].section);
                free(u->options[i].name);
                free(u->options[i].value);
        }
        free(u->options);
        return mfree(u);
}

int fl_unit_file_add(UnitFile *u, const char *section, const char *name, const char *value) {
        UnitOption o;

        if (!u || !section || !name || !value)
                return -EINVAL;
        if (u->n_options == u->n_allocated) {
                size_t n = MAX(u->n_allocated * 2, (size_t) 8);
                UnitOption *p;

                if (n > SIZE_MAX / sizeof(UnitOption))
                        return -ENOMEM;
                p = realloc(u->options, n * sizeof(UnitOption));
                if (!p)
                        return -ENOMEM;
                u->options = p;
                u->n_allocated = n;
        }
        o = (UnitOption) {
                .section = strdup(section),
                .name = strdup(name),
                .value = strdup(value),
        };
        if (!o.section || !o.name || !o.value) {
                free(o.section);
                free(o.name);
                free(o.value);
                return -ENOMEM;
        }
        u->options[u->n_options++] = o;
        return 0;
}

int fl_unit_file_dup(const UnitFile *u, UnitFile **ret) {
        _cleanup_(fl_unit_file_freep) UnitFile *c = NULL;
        int r;

        if (!u)
                return -EINVAL;
        r = fl_unit_file_new(&c);
        if (r < 0)
                return r;
        for (size_t i = 0; i < u->n_options; i++) {
                r = fl_unit_file_add(c, u->options[i].section, u->options[i].name,
                                     u->options[i].value);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

typedef struct GroupSort {
        const UnitFile *u;
        const size_t *key;
} GroupSort;

static int cmp_by_section(const void *a, const void *b, void *userdata) {
        const GroupSort *g = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;
        int c = strcmp(g->u->options[i].section, g->u->options[j].section);

        if (c != 0)
                return c;
        return (i > j) - (i < j);
}

static int cmp_by_key(const void *a, const void *b, void *userdata) {
        const GroupSort *g = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;

        if (g->key[i] != g->key[j])
                return (g->key[i] > g->key[j]) - (g->key[i] < g->key[j]);
        return (i > j) - (i < j);
}

/* Option indices grouped by section in order of the section's first appearance, original order
 * within a section. Sorting (rather than a scan per section) keeps a hostile unit with
 * hundreds of thousands of one-line sections from going quadratic. */
static int group_by_section(const UnitFile *u, size_t **ret) {
        _cleanup_free_ size_t *idx = NULL, *key = NULL;
        GroupSort g = { .u = u };
        size_t n = u->n_options;

        idx = new(size_t, n);
        key = new(size_t, n);
        if (!idx || !key)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                idx[i] = i;
        qsort_r(idx, n, sizeof(size_t), cmp_by_section, &g);
        for (size_t i = 0, first = 0; i < n; i++) {
                if (i == 0 || !streq(u->options[idx[i]].section, u->options[idx[i - 1]].section))
                        first = idx[i];
                key[idx[i]] = first;
        }
        g.key = key;
        qsort_r(idx, n, sizeof(size_t), cmp_by_key, &g);
        *ret = TAKE_PTR(idx);
        return 0;
}

char *fl_unit_file_serialize(const UnitFile *u) {
        _cleanup_free_ size_t *order = NULL;
        const char *cur = NULL;
        Buf b = BUF_INIT;
        int r;

        if (!u || u->n_options == 0)
                return strdup("");
        r = group_by_section(u, &order);
        if (r < 0)
                return NULL;
        for (size_t i = 0; r >= 0 && i < u->n_options; i++) {
                const UnitOption *o = &u->options[order[i]];

                if (!cur || !streq(cur, o->section)) {
                        if (cur)
                                r = fl_buf_putc(&b, '\n');
                        if (r >= 0)
                                r = fl_buf_cat(&b, "[", o->section, "]\n", NULL);
                        cur = o->section;
                }
                if (r >= 0)
                        r = fl_buf_cat(&b, o->name, "=", o->value, "\n", NULL);
        }
        if (r < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

int fl_unit_file_hash_serialized(const char *raw, uint8_t ret[20]) {
        if (mbedtls_sha1_ret((const unsigned char *) raw, strlen(raw), ret) != 0)
                return -EIO;
        return 0;
}

int fl_unit_file_hash(const UnitFile *u, uint8_t ret[20]) {
        _cleanup_free_ char *s = fl_unit_file_serialize(u);

        if (!s)
                return -ENOMEM;
        return fl_unit_file_hash_serialized(s, ret);
}

bool fl_unit_file_equal(const UnitFile *a, const UnitFile *b) {
        _cleanup_free_ char *sa = fl_unit_file_serialize(a), *sb = fl_unit_file_serialize(b);

        return sa && sb && streq(sa, sb);
}

void fl_hash_to_hex(const uint8_t h[20], char ret[41]) {
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < 20; i++) {
                ret[2 * i] = hex[h[i] >> 4];
                ret[2 * i + 1] = hex[h[i] & 15];
        }
        ret[40] = 0;
}

int fl_hash_from_hex(const char *s, uint8_t ret[20]) {
        uint8_t h[20];

        if (!s || strlen(s) != 40)
                return -EINVAL;
        for (size_t i = 0; i < 20; i++) {
                int hi = fl_unhex_char(s[2 * i]), lo = fl_unhex_char(s[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                h[i] = (uint8_t) (hi << 4 | lo);
        }
        memcpy(ret, h, sizeof(h));
        return 0;
}

const char *fl_unit_file_get(const UnitFile *u, const char *section, const char *name) {
        if (!u)
                return NULL;
        for (size_t i = 0; i < u->n_options; i++)
                if (streq(u->options[i].section, section) && streq(u->options[i].name, name))
                        return u->options[i].value;
        return NULL;
}

bool fl_unit_file_has_section(const UnitFile *u, const char *section) {
        if (!u)
                return false;
        for (size_t i = 0; i < u->n_options; i++)
                if (streq(u->options[i].section, section))
                        return true;
        return false;
}
