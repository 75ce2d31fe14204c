/* SPDX-License-Identifier: MIT */
/* fuzz-unit-name: unit names from API URLs and fleetctl arguments (spec §7.3, §1.4): fleet's
 * ValidateName, the template/instance split, fleetctl's mangling and the Go %q quoting used in
 * messages (checked by unquoting it again). */
#include "fuzz.h"
#include "unit-file.h"
#include "unit-name.h"

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static size_t put_utf8(char *o, uint32_t cp) {
        if (cp < 0x80) {
                o[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (char) (0xC0 | cp >> 6);
                o[1] = (char) (0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (char) (0xE0 | cp >> 12);
                o[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
                o[2] = (char) (0x80 | (cp & 0x3F));
                return 3;
        }
        o[0] = (char) (0xF0 | cp >> 18);
        o[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char) (0x80 | (cp & 0x3F));
        return 4;
}

/* Go's strconv.Unquote for a "..." string; NULL when malformed. */
static char *go_unquote(const char *q) {
        size_t n = strlen(q), o = 0;
        char *out;

        if (n < 2 || q[0] != '"' || q[n - 1] != '"')
                return NULL;
        out = malloc(n * 4 + 1);
        FUZZ_CHECK(out);
        for (size_t i = 1; i < n - 1;) {
                char c = q[i];
                if (c == '"' || (unsigned char) c < 0x20) {
                        free(out);
                        return NULL;
                }
                if (c != '\\') {
                        out[o++] = c;
                        i++;
                        continue;
                }
                if (i + 1 >= n - 1) {
                        free(out);
                        return NULL;
                }
                c = q[i + 1];
                i += 2;
                switch (c) {
                case 'a': out[o++] = '\a'; break;
                case 'b': out[o++] = '\b'; break;
                case 'f': out[o++] = '\f'; break;
                case 'n': out[o++] = '\n'; break;
                case 'r': out[o++] = '\r'; break;
                case 't': out[o++] = '\t'; break;
                case 'v': out[o++] = '\v'; break;
                case '\\': out[o++] = '\\'; break;
                case '"': out[o++] = '"'; break;
                case 'x':
                case 'u':
                case 'U': {
                        size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
                        uint32_t v = 0;
                        for (size_t k = 0; k < digits; k++) {
                                int h = i + k < n - 1 ? hexval(q[i + k]) : -1;
                                if (h < 0) {
                                        free(out);
                                        return NULL;
                                }
                                v = v << 4 | (uint32_t) h;
                        }
                        i += digits;
                        if (c == 'x')
                                out[o++] = (char) v;
                        else {
                                if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
                                        free(out);
                                        return NULL;
                                }
                                o += put_utf8(out + o, v);
                        }
                        break;
                }
                default:
                        free(out);
                        return NULL;
                }
        }
        out[o] = 0;
        return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *name = fuzz_strndup(data, size), *msg = NULL, *q = NULL, *uq = NULL,
                           *mangled = NULL, *tmpl = NULL;
        _cleanup_(fl_unit_name_info_done) UnitNameInfo info = {};
        bool valid, safe;
        int r;

        FUZZ_CHECK(name);
        r = fl_unit_name_validate(name, &msg);
        FUZZ_CHECK(r == 0 || r == -EINVAL);
        FUZZ_CHECK((r == 0) == !msg);
        valid = r == 0;
        FUZZ_CHECK(fl_unit_name_validate(name, NULL) == r);
        safe = fl_unit_name_is_safe(name);
        if (safe)
                FUZZ_CHECK(valid && !strstr(name, "..") && !strchr(name, '/') && strlen(name) <= 255);
        if (valid)
                FUZZ_CHECK(strlen(name) <= FL_UNIT_NAME_MAX && strchr(name, '.') && name[0] != '@' &&
                           !strchr(name, '/'));

        r = fl_unit_name_info(name, &info);
        FUZZ_CHECK(r == 0 || r == -EINVAL);
        FUZZ_CHECK((r == 0) == !!strchr(name, '.'));
        if (r == 0) {
                size_t ln = strlen(info.name);
                FUZZ_CHECK_STREQ(info.full, name);
                FUZZ_CHECK(strncmp(name, info.name, ln) == 0 && name[ln] == '.');
                FUZZ_CHECK_STREQ(name + ln + 1, info.suffix);
                FUZZ_CHECK(!strchr(info.suffix, '.'));
                FUZZ_CHECK(info.prefix && info.instance);
                FUZZ_CHECK((info.template_name != NULL) == !!strchr(info.name, '@'));
                if (fl_unit_name_is_template(name))
                        FUZZ_CHECK(info.template_name && !*info.instance);
                if (fl_unit_name_is_instance(name)) {
                        FUZZ_CHECK(*info.instance);
                        tmpl = fl_unit_name_template_of(name);
                        FUZZ_CHECK_STREQ(tmpl, info.template_name);
                        FUZZ_CHECK(fl_unit_name_is_template(tmpl));
                }
        }
        FUZZ_CHECK(!(fl_unit_name_is_template(name) && fl_unit_name_is_instance(name)));

        mangled = fl_unit_name_mangle(name);
        FUZZ_CHECK(mangled);
        FUZZ_CHECK(fl_unit_name_agent_manageable(mangled));
        FUZZ_CHECK(!strchr(mangled, '/') || streq(mangled, "/.service"));
        if (fl_unit_name_agent_manageable(name) && !strchr(name, '/'))
                FUZZ_CHECK_STREQ(mangled, name);

        /* %q round trip: Go's Unquote gives back the bytes, also for invalid UTF-8. */
        q = fl_go_quote(name);
        FUZZ_CHECK(q);
        uq = go_unquote(q);
        if (!uq)
                fprintf(stderr, "unquotable: %s\n", q);
        FUZZ_CHECK(uq);
        FUZZ_CHECK_STREQ(uq, name);

        if (size >= 4) {
                uint32_t cp;
                char buf[16];
                memcpy(&cp, data, 4);
                fl_go_quote_rune(cp % 0x110000, buf);
                FUZZ_CHECK(buf[0] == '\'' && strlen(buf) >= 3 && buf[strlen(buf) - 1] == '\'');
        }
        return 0;
}
