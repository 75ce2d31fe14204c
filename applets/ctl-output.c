/* SPDX-License-Identifier: MIT */
/* ctl-output.c: fleetctl's output building blocks: the tab-aligned table (Go's text/tabwriter
 * as fleetctl configures it, spec §1.3), --fields parsing, machine legends, metadata and list
 * formatting, shell quoting for remote commands. Pure: no driver, no I/O but fl_ctl_print. */
#include <stdarg.h>
#include <stdio.h>

#include "buf.h"
#include "cJSON.h"
#include "ctl.h"
#include "strv.h"
#include "unit-file.h"
#include "unit-options.h"

struct CtlTable {
        size_t n_cols;
        char **cells;
        size_t n_cells;
        size_t n_allocated;
};

int fl_ctl_table_new(size_t n_cols, CtlTable **ret) {
        CtlTable *t;

        if (n_cols == 0)
                return -EINVAL;
        t = new0(CtlTable, 1);
        if (!t)
                return -ENOMEM;
        t->n_cols = n_cols;
        *ret = t;
        return 0;
}

CtlTable *fl_ctl_table_free(CtlTable *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        return mfree(t);
}

int fl_ctl_table_add(CtlTable *t, const char *cell) {
        char *c;

        if (t->n_cells == t->n_allocated) {
                size_t n = MAX(t->n_allocated * 2, (size_t) 16);
                char **l = realloc(t->cells, n * sizeof(char *));
                if (!l)
                        return -ENOMEM;
                t->cells = l;
                t->n_allocated = n;
        }
        c = strdup(strempty(cell));
        if (!c)
                return -ENOMEM;
        /* A tab or newline inside a value would shift every following column (and a terminal
         * escape would reach the user's terminal): flatten control characters. */
        for (char *p = c; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7F)
                        *p = ' ';
        t->cells[t->n_cells++] = c;
        return 0;
}

/* Go's tabwriter counts runes, not bytes; invalid bytes count one each. */
static size_t text_width(const char *s, size_t len) {
        size_t n = 0;

        for (size_t i = 0; i < len;) {
                uint32_t cp;
                size_t l = fl_utf8_decode(s + i, len - i, &cp);
                i += l > 0 ? l : 1;
                n++;
        }
        return n;
}

typedef struct TwCell {
        const char *text;
        size_t size;  /* bytes */
        size_t width; /* runes */
} TwCell;

typedef struct TwLine {
        TwCell *cells;
        size_t n_cells; /* tab-terminated cells plus the trailing text */
} TwLine;

typedef struct TwState {
        const TwLine *lines;
        size_t n_lines;
        size_t *widths; /* stack of column widths of the enclosing blocks */
        size_t n_widths;
        bool final_newline;
        Buf *out;
        int r;
} TwState;

static void tw_write_lines(TwState *s, size_t line0, size_t line1) {
        for (size_t i = line0; i < line1 && s->r >= 0; i++) {
                const TwLine *l = &s->lines[i];

                for (size_t j = 0; j < l->n_cells && s->r >= 0; j++) {
                        const TwCell *c = &l->cells[j];

                        s->r = fl_buf_append(s->out, c->text, c->size);
                        if (s->r >= 0 && j < s->n_widths) {
                                /* padchar '\t': the cell is widened to a multiple of the tab
                                 * width and filled with as many tabs as that takes. */
                                size_t cellw = (s->widths[j] + 7) / 8 * 8;
                                for (size_t n = (cellw - c->width + 7) / 8; n > 0 && s->r >= 0; n--)
                                        s->r = fl_buf_putc(s->out, '\t');
                        }
                }
                if (s->r >= 0 && (i + 1 < s->n_lines || s->final_newline))
                        s->r = fl_buf_putc(s->out, '\n');
        }
}

/* text/tabwriter's format(): a column block is a run of consecutive lines that have a
 * tab-terminated cell in this column; its width is the widest such cell plus the padding. */
static void tw_format(TwState *s, size_t line0, size_t line1) {
        size_t column = s->n_widths;

        for (size_t this = line0; this < line1 && s->r >= 0; this++) {
                size_t width = 0;

                if (column + 1 >= s->lines[this].n_cells)
                        continue;
                tw_write_lines(s, line0, this);
                line0 = this;
                for (; this < line1; this++) {
                        const TwLine *l = &s->lines[this];
                        if (column + 1 >= l->n_cells)
                                break;
                        width = MAX(width, l->cells[column].width + 1);
                }
                s->widths[s->n_widths++] = width;
                tw_format(s, line0, this);
                s->n_widths--;
                /* The line that ended the block has no cell in this column: skipping it is
                 * what tabwriter does too. */
                line0 = this;
        }
        if (s->r >= 0)
                tw_write_lines(s, line0, line1);
}

char *fl_ctl_tabwrite(const char *text) {
        _cleanup_free_ TwLine *lines = NULL;
        _cleanup_free_ TwCell *cells = NULL;
        _cleanup_free_ size_t *widths = NULL;
        size_t n_lines = 0, n_cells = 0, max_cells = 0, len = strlen(text), k = 0;
        Buf b = BUF_INIT;
        TwState s;

        for (size_t i = 0; i < len; i++) {
                if (text[i] == '\n')
                        n_lines++;
                else if (text[i] == '\t')
                        n_cells++;
        }
        n_lines++;
        n_cells += n_lines;
        lines = new0(TwLine, n_lines);
        cells = new0(TwCell, n_cells);
        if (!lines || !cells)
                return NULL;

        n_lines = 0;
        for (const char *p = text;;) {
                TwLine *l = &lines[n_lines++];
                const char *eol = strchrnul(p, '\n');

                l->cells = &cells[k];
                for (;;) {
                        const char *e = memchr(p, '\t', eol - p);
                        const char *end = e ?: eol;
                        TwCell *c = &cells[k++];

                        *c = (TwCell) { .text = p, .size = end - p, .width = text_width(p, end - p) };
                        l->n_cells++;
                        if (!e)
                                break;
                        p = e + 1;
                }
                max_cells = MAX(max_cells, l->n_cells);
                if (!*eol)
                        break;
                p = eol + 1;
        }
        /* Text ending in a newline leaves an empty last line that prints nothing. */
        s = (TwState) { .lines = lines, .n_lines = n_lines, .out = &b };
        if (n_lines > 1 && lines[n_lines - 1].n_cells == 1 && lines[n_lines - 1].cells[0].size == 0) {
                s.n_lines--;
                s.final_newline = true;
        }
        widths = new0(size_t, max_cells + 1);
        if (!widths)
                return NULL;
        s.widths = widths;
        tw_format(&s, 0, s.n_lines);
        if (s.r >= 0 && !b.data)
                s.r = fl_buf_puts(&b, "");
        if (s.r < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

char *fl_ctl_table_format(const CtlTable *t) {
        _cleanup_free_ char *text = NULL;
        Buf b = BUF_INIT;

        for (size_t i = 0; i < t->n_cells; i++) {
                bool eol = (i + 1) % t->n_cols == 0 || i + 1 == t->n_cells;
                if (fl_buf_puts(&b, t->cells[i]) < 0 || fl_buf_putc(&b, eol ? '\n' : '\t') < 0) {
                        fl_buf_done(&b);
                        return NULL;
                }
        }
        if (!b.data)
                return strdup("");
        text = fl_buf_steal(&b);
        return text ? fl_ctl_tabwrite(text) : NULL;
}

int fl_ctl_fields_parse(const char *spec, const char *const *valid, char ***ret, char **ret_bad) {
        _cleanup_strv_free_ char **l = NULL;
        const char *p = spec;
        int r;

        if (isempty(spec))
                return -ENODATA;
        for (;;) {
                const char *e = strchr(p, ',');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                char *f = strndup(p, n);
                bool ok = false;

                if (!f)
                        return -ENOMEM;
                for (size_t i = 0; valid[i]; i++)
                        if (streq(valid[i], f))
                                ok = true;
                if (!ok) {
                        if (ret_bad)
                                *ret_bad = f;
                        else
                                free(f);
                        return -EINVAL;
                }
                r = fl_strv_push(&l, f);
                if (r < 0)
                        return r;
                if (!e)
                        break;
                p = e + 1;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

char *fl_ctl_machine_legend(const char *id, const char *ip, bool full) {
        Buf b = BUF_INIT;
        int r;

        id = strempty(id);
        if (full)
                r = fl_buf_puts(&b, id);
        else
                r = fl_buf_printf(&b, "%.8s...", id);
        if (r >= 0 && !isempty(ip))
                r = fl_buf_printf(&b, "/%s", ip);
        if (r < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

char *fl_ctl_format_metadata(char *const *kv, size_t n_pairs) {
        Buf b = BUF_INIT;

        if (n_pairs == 0)
                return strdup("-");
        /* The drivers hand out metadata sorted by key already (Go formatMetadata sorts). */
        for (size_t i = 0; i < n_pairs; i++)
                if (fl_buf_printf(&b, "%s%s=%s", i > 0 ? "," : "", kv[2 * i], kv[2 * i + 1]) < 0) {
                        fl_buf_done(&b);
                        return NULL;
                }
        return fl_buf_steal(&b);
}

bool fl_ctl_unit_is_global(const ApiUnit *u) {
        UnitRequirements req;
        bool g;

        if (!u->file)
                return false;
        if (fl_unit_requirements_parse(u->file, u->name, &req) < 0)
                return false;
        g = req.global;
        fl_unit_requirements_done(&req);
        return g;
}

void fl_ctl_unit_hash(const ApiUnit *u, char ret[41]) {
        uint8_t h[20];

        ret[0] = 0;
        if (u->file && fl_unit_file_hash(u->file, h) >= 0)
                fl_hash_to_hex(h, ret);
}

const char *fl_ctl_unit_description(const ApiUnit *u) {
        const char *d;

        if (!u->file)
                return NULL;
        d = fl_unit_file_get(u->file, "Unit", "Description");
        return isempty(d) ? NULL : d;
}

char *fl_ctl_format_list(char *const *l) {
        Buf b = BUF_INIT;
        int r;

        r = fl_buf_putc(&b, '[');
        for (size_t i = 0; r >= 0 && l && l[i]; i++)
                r = fl_buf_printf(&b, "%s%s", i > 0 ? " " : "", l[i]);
        if (r >= 0)
                r = fl_buf_putc(&b, ']');
        if (r < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

char *fl_ctl_shell_quote(const char *s) {
        Buf b = BUF_INIT;
        int r;

        r = fl_buf_putc(&b, '"');
        for (const char *p = s; r >= 0 && *p; p++) {
                /* Inside double quotes a POSIX shell still interprets these four. */
                if (strchr("\\\"$`", *p))
                        r = fl_buf_putc(&b, '\\');
                if (r >= 0)
                        r = fl_buf_putc(&b, *p);
        }
        if (r >= 0)
                r = fl_buf_putc(&b, '"');
        if (r < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

int fl_ctl_print(const char *s) {
        size_t n = strlen(s);

        if (n > 0 && fwrite(s, 1, n, stdout) != n)
                return -EIO;
        return 0;
}

int fl_ctl_print_json(const cJSON *j) {
        _cleanup_free_ char *s = NULL;

        s = cJSON_PrintUnformatted(j);
        if (!s)
                return -ENOMEM;
        if (fl_ctl_print(s) < 0 || fl_ctl_print("\n") < 0)
                return -EIO;
        return 0;
}

cJSON *fl_ctl_json_string_or_null(const char *s) {
        return isempty(s) ? cJSON_CreateNull() : cJSON_CreateString(s);
}

char *fl_ctl_asprintf(const char *fmt, ...) {
        va_list ap;
        char *s;

        va_start(ap, fmt);
        if (vasprintf(&s, fmt, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}
