/* SPDX-License-Identifier: MIT */
/* unit-name.c: unit name validation, template/instance split, mangling (spec §7.3, §1.4). */
#include <stdio.h>

#include "buf.h"
#include "unit-file.h"
#include "unit-name.h"

/* Unit types fleet's API accepts, and the subset allowed for templates/instances. */
static const char *const unit_types[] = {
        "automount", "busname", "device", "mount", "path", "scope", "service",
        "slice", "snapshot", "socket", "swap", "target", "timer",
};
static const char *const template_types[] = {
        "path", "service", "socket", "target", "timer",
};
/* What fleetctl's mangling recognises and the agent writes to disk. */
static const char *const manageable_types[] = {
        "service", "socket", "timer", "path", "device", "mount", "automount",
};

static bool in_list(const char *s, const char *const *l, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (streq(s, l[i]))
                        return true;
        return false;
}

static bool is_name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               strchr(":-_.\\@", c);
}

/* strconv.IsPrint, approximated without Go's tables: everything is printable except controls,
 * non-ASCII spaces, the common format characters, surrogates, private use and specials. */
static bool go_is_print(uint32_t c) {
        if (c < 0x20 || c == 0x7F)
                return false;
        if (c < 0x7F)
                return true;
        if (c <= 0xA0 || c == 0xAD || c == 0x61C || c == 0x6DD || c == 0x70F || c == 0x180E ||
            c == 0x1680 || c == 0x3000 || c == 0xFEFF)
                return false;
        if ((c >= 0x600 && c <= 0x605) || (c >= 0x2000 && c <= 0x200F) ||
            (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x206F))
                return false;
        /* Surrogates, private use, specials, noncharacters, tags, supplementary private use. */
        if ((c >= 0xD800 && c <= 0xF8FF) || (c >= 0xFFF0 && c <= 0xFFFB) || c == 0xFFFE ||
            c == 0xFFFF || (c >= 0xE0000 && c <= 0xE007F) || c >= 0xF0000)
                return false;
        return true;
}

static int append_escaped_rune(Buf *b, uint32_t cp, char quote) {
        static const char esc[] = "\aa\bb\ff\nn\rr\tt\vv";

        if (cp == (uint32_t) quote || cp == '\\')
                return fl_buf_printf(b, "\\%c", (char) cp);
        if (go_is_print(cp))
                return fl_buf_put_utf8(b, cp);
        for (size_t i = 0; esc[i]; i += 2)
                if ((uint32_t) esc[i] == cp)
                        return fl_buf_printf(b, "\\%c", esc[i + 1]);
        if (cp < 0x20 || cp == 0x7F)
                return fl_buf_printf(b, "\\x%02x", (unsigned) cp);
        if (cp < 0x10000)
                return fl_buf_printf(b, "\\u%04x", (unsigned) cp);
        return fl_buf_printf(b, "\\U%08x", (unsigned) cp);
}

char *fl_go_quote(const char *s) {
        Buf b = BUF_INIT;
        size_t n = strlen(s);
        int r = fl_buf_putc(&b, '"');

        for (size_t p = 0; r >= 0 && p < n;) {
                uint32_t cp;
                size_t l = fl_utf8_decode(s + p, n - p, &cp);

                if (l == 0) {
                        r = fl_buf_printf(&b, "\\x%02x", (unsigned) (uint8_t) s[p]);
                        p++;
                        continue;
                }
                r = append_escaped_rune(&b, cp, '"');
                p += l;
        }
        if (r >= 0)
                r = fl_buf_putc(&b, '"');
        if (r < 0) {
                fl_buf_done(&b);
                return NULL;
        }
        return fl_buf_steal(&b);
}

void fl_go_quote_rune(uint32_t cp, char ret[16]) {
        Buf b = BUF_INIT;

        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                cp = 0xFFFD;
        if (fl_buf_putc(&b, '\'') < 0 || append_escaped_rune(&b, cp, '\'') < 0 ||
            fl_buf_putc(&b, '\'') < 0 || b.len >= 16) {
                /* Only on OOM: still say something sensible. */
                snprintf(ret, 16, "'?'");
                fl_buf_done(&b);
                return;
        }
        memcpy(ret, b.data, b.len + 1);
        fl_buf_done(&b);
}

static int set_msg(char **ret_msg, int err, const char *fmt, ...) _printf_(3, 4);
static int set_msg(char **ret_msg, int err, const char *fmt, ...) {
        va_list ap;
        int r;

        if (!ret_msg)
                return err;
        va_start(ap, fmt);
        r = vasprintf(ret_msg, fmt, ap);
        va_end(ap);
        if (r < 0) {
                *ret_msg = NULL;
                return -ENOMEM;
        }
        return err;
}

int fl_unit_name_validate(const char *name, char **ret_msg) {
        _cleanup_free_ char *q = NULL;
        const char *dot, *suffix;
        size_t stem;

        if (isempty(name))
                return set_msg(ret_msg, -EINVAL, "unit name cannot be empty");
        if (strlen(name) > FL_UNIT_NAME_MAX)
                return set_msg(ret_msg, -EINVAL, "unit name exceeds maximum length (%u)",
                               FL_UNIT_NAME_MAX);
        dot = strrchr(name, '.');
        if (!dot)
                return set_msg(ret_msg, -EINVAL, "unit name must contain \".\"");
        suffix = dot + 1;
        if (*suffix == 0)
                return set_msg(ret_msg, -EINVAL, "unit name cannot end in \".\"");
        if (!in_list(suffix, unit_types, ELEMENTSOF(unit_types))) {
                q = fl_go_quote(suffix);
                if (!q)
                        return -ENOMEM;
                return set_msg(ret_msg, -EINVAL, "invalid unit type: %s", q);
        }
        if (strchr(name, '@') && !in_list(suffix, template_types, ELEMENTSOF(template_types))) {
                q = fl_go_quote(suffix);
                if (!q)
                        return -ENOMEM;
                return set_msg(ret_msg, -EINVAL, "invalid unit type for template: %s", q);
        }
        /* Go ranges over runes here, so a bad multi-byte character is reported whole. */
        stem = (size_t) (dot - name);
        for (size_t p = 0; p < stem;) {
                uint32_t cp;
                size_t l = fl_utf8_decode(name + p, stem - p, &cp);
                char qr[16];

                if (l == 1 && is_name_char(name[p])) {
                        p++;
                        continue;
                }
                if (l == 0)
                        cp = 0xFFFD;
                fl_go_quote_rune(cp, qr);
                return set_msg(ret_msg, -EINVAL, "invalid character %s in unit name", qr);
        }
        if (name[0] == '@')
                return set_msg(ret_msg, -EINVAL, "unit name cannot start in \"@\"");
        return 0;
}

void fl_unit_name_info_done(UnitNameInfo *i) {
        if (!i)
                return;
        free(i->full);
        free(i->name);
        free(i->prefix);
        free(i->instance);
        free(i->suffix);
        free(i->template_name);
        *i = (UnitNameInfo) {};
}

int fl_unit_name_info(const char *name, UnitNameInfo *ret) {
        _cleanup_(fl_unit_name_info_done) UnitNameInfo i = {};
        const char *dot, *at;

        if (!name)
                return -EINVAL;
        dot = strrchr(name, '.');
        if (!dot)
                return -EINVAL;
        i.full = strdup(name);
        i.name = strndup(name, (size_t) (dot - name));
        i.suffix = strdup(dot + 1);
        if (!i.full || !i.name || !i.suffix)
                return -ENOMEM;
        at = strchr(i.name, '@');
        if (at) {
                i.prefix = strndup(i.name, (size_t) (at - i.name));
                i.instance = strdup(at + 1);
                if (!i.prefix || !i.instance)
                        return -ENOMEM;
                if (asprintf(&i.template_name, "%s@.%s", i.prefix, i.suffix) < 0) {
                        i.template_name = NULL;
                        return -ENOMEM;
                }
        } else {
                i.prefix = strdup(i.name);
                i.instance = strdup("");
                if (!i.prefix || !i.instance)
                        return -ENOMEM;
        }
        *ret = i;
        i = (UnitNameInfo) {};
        return 0;
}

/* fleet's IsTemplate/IsInstance: the part between the first '@' and the last '.' (before which
 * the '@' must be) is the instance; empty means template. Returns false without an '@'. */
static bool split_instance(const char *name, bool *ret_empty) {
        const char *dot = name ? strrchr(name, '.') : NULL, *at;

        if (!dot)
                return false;
        at = memchr(name, '@', (size_t) (dot - name));
        if (!at)
                return false;
        *ret_empty = at + 1 == dot;
        return true;
}

bool fl_unit_name_is_template(const char *name) {
        bool empty;

        return split_instance(name, &empty) && empty;
}

bool fl_unit_name_is_instance(const char *name) {
        bool empty;

        return split_instance(name, &empty) && !empty;
}

char *fl_unit_name_template_of(const char *name) {
        _cleanup_(fl_unit_name_info_done) UnitNameInfo i = {};

        if (!fl_unit_name_is_instance(name))
                return NULL;
        if (fl_unit_name_info(name, &i) < 0)
                return NULL;
        return TAKE_PTR(i.template_name);
}

bool fl_unit_name_agent_manageable(const char *name) {
        const char *dot = name ? strrchr(name, '.') : NULL;

        return dot && in_list(dot + 1, manageable_types, ELEMENTSOF(manageable_types));
}

char *fl_unit_name_mangle(const char *arg) {
        const char *base = arg;
        size_t n = strlen(strempty(arg));
        char *ret;

        /* Go's path.Base: "" -> ".", trailing slashes dropped, only slashes -> "/". */
        if (n == 0) {
                base = ".";
                n = 1;
        } else {
                while (n > 0 && arg[n - 1] == '/')
                        n--;
                for (size_t i = n; i > 0; i--)
                        if (arg[i - 1] == '/') {
                                base = arg + i;
                                break;
                        }
                n -= (size_t) (base - arg);
                if (n == 0) {
                        base = "/";
                        n = 1;
                }
        }

        for (size_t i = 0; i < ELEMENTSOF(manageable_types); i++) {
                size_t l = strlen(manageable_types[i]);

                if (n > l && base[n - l - 1] == '.' &&
                    memcmp(base + n - l, manageable_types[i], l) == 0)
                        return strndup(base, n);
        }
        if (asprintf(&ret, "%.*s.service", (int) n, base) < 0)
                return NULL;
        return ret;
}

bool fl_unit_name_is_safe(const char *name) {
        const char *dot;

        if (fl_unit_name_validate(name, NULL) < 0)
                return false;
        if (strlen(name) > 255)
                return false;
        dot = strrchr(name, '.');
        if (dot == name || name[0] == '-' || name[0] == '.')
                return false;
        if (strstr(name, "..") || strchr(name, '\\'))
                return false;
        return true;
}
