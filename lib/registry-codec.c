/* SPDX-License-Identifier: MIT */
/* registry-codec.c: the JSON values fleet v1.0.0 keeps in etcd (spec §4.1), written byte for
 * byte as Go's encoding/json writes them (struct field order, no spaces, HTML-safe string
 * escapes, invalid UTF-8 as U+FFFD) and read as leniently as Go reads them (field names match
 * case-insensitively, null leaves a field alone, unknown fields are ignored). */
#include <cJSON.h>
#include <stdio.h>

#include "buf.h"
#include "registry-internal.h"
#include "strv.h"

static const char *const job_state_table[_JOB_STATE_MAX] = {
        [JOB_STATE_INACTIVE] = "inactive",
        [JOB_STATE_LOADED] = "loaded",
        [JOB_STATE_LAUNCHED] = "launched",
};

const char *fl_job_state_to_string(JobState s) {
        if (s < 0 || s >= _JOB_STATE_MAX)
                return NULL;
        return job_state_table[s];
}

JobState fl_job_state_from_string(const char *s) {
        if (!s)
                return _JOB_STATE_INVALID;
        for (int i = 0; i < _JOB_STATE_MAX; i++)
                if (streq(job_state_table[i], s))
                        return (JobState) i;
        return _JOB_STATE_INVALID;
}

/* Length of the valid UTF-8 sequence at s (n bytes available) by Go's utf8.DecodeRune rules
 * (no overlongs, no surrogates, nothing above U+10FFFF), or 0 if it is invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
        unsigned char c = s[0];

        if (c < 0x80)
                return 1;
        if (c < 0xC2)
                return 0;
        if (c < 0xE0) {
                if (n < 2 || (s[1] & 0xC0) != 0x80)
                        return 0;
                return 2;
        }
        if (c < 0xF0) {
                unsigned char lo = 0x80, hi = 0xBF;
                if (c == 0xE0)
                        lo = 0xA0;
                else if (c == 0xED)
                        hi = 0x9F;
                if (n < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80)
                        return 0;
                return 3;
        }
        if (c < 0xF5) {
                unsigned char lo = 0x80, hi = 0xBF;
                if (c == 0xF0)
                        lo = 0x90;
                else if (c == 0xF4)
                        hi = 0x8F;
                if (n < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
                        return 0;
                return 4;
        }
        return 0;
}

int fl_reg_json_string(Buf *b, const char *s) {
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = (const unsigned char *) strempty(s);
        size_t n = strlen((const char *) p);
        int r;

        r = fl_buf_putc(b, '"');
        if (r < 0)
                return r;
        for (size_t i = 0; i < n;) {
                unsigned char c = p[i];
                size_t l;

                if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
                        /* Copy the whole run of plain ASCII at once. */
                        size_t j = i + 1;
                        while (j < n && p[j] >= 0x20 && p[j] < 0x80 && p[j] != '"' && p[j] != '\\' &&
                               p[j] != '<' && p[j] != '>' && p[j] != '&')
                                j++;
                        r = fl_buf_append(b, p + i, j - i);
                        if (r < 0)
                                return r;
                        i = j;
                        continue;
                }
                if (c < 0x80) {
                        char esc[7];
                        switch (c) {
                        case '"':
                        case '\\':
                                esc[0] = '\\', esc[1] = (char) c, esc[2] = 0;
                                break;
                        case '\n':
                                strcpy(esc, "\\n");
                                break;
                        case '\r':
                                strcpy(esc, "\\r");
                                break;
                        case '\t':
                                strcpy(esc, "\\t");
                                break;
                        default:
                                /* Other control characters and the HTML-unsafe <, >, & (Go 1.7
                                 * has no \b or \f short forms). */
                                memcpy(esc, "\\u00", 4);
                                esc[4] = hex[c >> 4];
                                esc[5] = hex[c & 0xF];
                                esc[6] = 0;
                        }
                        r = fl_buf_puts(b, esc);
                        if (r < 0)
                                return r;
                        i++;
                        continue;
                }
                l = utf8_valid_len(p + i, n - i);
                if (l == 0) {
                        r = fl_buf_puts(b, "\\ufffd");
                        i++;
                } else if (l == 3 && p[i] == 0xE2 && p[i + 1] == 0x80 && (p[i + 2] == 0xA8 || p[i + 2] == 0xA9)) {
                        /* U+2028, U+2029: Go escapes them for JSONP safety. */
                        r = fl_buf_puts(b, p[i + 2] == 0xA8 ? "\\u2028" : "\\u2029");
                        i += 3;
                } else {
                        r = fl_buf_append(b, p + i, l);
                        i += l;
                }
                if (r < 0)
                        return r;
        }
        return fl_buf_putc(b, '"');
}

/* Appends "name": for a field; the comma is the caller's. */
static int json_key(Buf *b, const char *name) {
        int r = fl_reg_json_string(b, name);
        if (r < 0)
                return r;
        return fl_buf_putc(b, ':');
}

static char *buf_finish(Buf *b, int r) {
        if (r < 0) {
                fl_buf_done(b);
                return NULL;
        }
        return fl_buf_steal(b);
}

char *fl_reg_encode_job_object(const char *name, const uint8_t hash[20]) {
        Buf b = BUF_INIT;
        int r;

        r = fl_buf_puts(&b, "{\"Name\":");
        if (r >= 0)
                r = fl_reg_json_string(&b, name);
        if (r >= 0)
                r = fl_buf_puts(&b, ",\"UnitHash\":[");
        for (size_t i = 0; r >= 0 && i < 20; i++) {
                if (i > 0)
                        r = fl_buf_putc(&b, ',');
                if (r >= 0)
                        r = fl_buf_put_u64(&b, hash[i]);
        }
        if (r >= 0)
                r = fl_buf_puts(&b, "]}");
        return buf_finish(&b, r);
}

/* Parses a complete JSON document (trailing garbage is an error, as in Go); NULL on error. */
static cJSON *json_parse(const char *json) {
        if (!json)
                return NULL;
        return cJSON_ParseWithOpts(json, NULL, true);
}

/* A string field: missing or null leaves *ret alone (0); another type is -EBADMSG. */
static int json_get_string(const cJSON *obj, const char *field, const char **ret) {
        const cJSON *v = cJSON_GetObjectItem(obj, field);
        if (!v || cJSON_IsNull(v))
                return 0;
        if (!cJSON_IsString(v) || !v->valuestring)
                return -EBADMSG;
        *ret = v->valuestring;
        return 0;
}

static int json_get_bool(const cJSON *obj, const char *field, bool *ret) {
        const cJSON *v = cJSON_GetObjectItem(obj, field);
        if (!v || cJSON_IsNull(v))
                return 0;
        if (!cJSON_IsBool(v))
                return -EBADMSG;
        *ret = cJSON_IsTrue(v);
        return 0;
}

/* Integral JSON number in [min, max]. */
static int json_number_int(const cJSON *v, double min, double max, long long *ret) {
        double d;
        if (!cJSON_IsNumber(v))
                return -EBADMSG;
        d = v->valuedouble;
        if (d < min || d > max || d != (double) (long long) d)
                return -EBADMSG;
        *ret = (long long) d;
        return 0;
}

static int strdup_or_null(const char *s, char **ret) {
        char *c = NULL;
        if (s) {
                c = strdup(s);
                if (!c)
                        return -ENOMEM;
        }
        free(*ret);
        *ret = c;
        return 0;
}

/* The exact text Go's encoder (and fl_reg_encode_job_object()) writes for a name without
 * escapes: {"Name":"<name>","UnitHash":[20 numbers 0-255]}. Every daemon decodes one per unit
 * event, and the general parser costs ~20 times as much (numbers go through strtod). false
 * for anything else, which the general parser then decides on. */
static bool job_object_fast(const char *json, const char **ret_name, size_t *ret_len, uint8_t ret_hash[20]) {
        const char *p = startswith(json, "{\"Name\":\""), *name;

        if (!p)
                return false;
        name = p;
        for (; *p != '"'; p++)
                if (*p == 0 || *p == '\\' || (unsigned char) *p < 0x20)
                        return false;
        *ret_name = name;
        *ret_len = (size_t) (p - name);
        p = startswith(p, "\",\"UnitHash\":[");
        if (!p)
                return false;
        for (size_t i = 0; i < 20; i++) {
                unsigned v = 0;
                const char *d;

                if (i > 0 && *p++ != ',')
                        return false;
                d = p;
                while (*p >= '0' && *p <= '9' && p - d < 3)
                        v = v * 10 + (unsigned) (*p++ - '0');
                /* digits, no leading zero, at most 255 */
                if (p == d || (*d == '0' && p - d > 1) || v > 255)
                        return false;
                ret_hash[i] = (uint8_t) v;
        }
        return streq(p, "]}");
}

int fl_reg_decode_job_object(const char *json, char **ret_name, uint8_t ret_hash[20]) {
        const char *fast_name;
        size_t fast_len;
        uint8_t fast_hash[20];
        cJSON *root;
        const char *name = "";
        const cJSON *h;
        uint8_t hash[20] = {};
        int r;

        if (json && job_object_fast(json, &fast_name, &fast_len, fast_hash)) {
                if (ret_name) {
                        char *n = strndup(fast_name, fast_len);
                        if (!n)
                                return -ENOMEM;
                        *ret_name = n;
                }
                if (ret_hash)
                        memcpy(ret_hash, fast_hash, 20);
                return 0;
        }
        root = json_parse(json);
        if (!root || !cJSON_IsObject(root)) {
                r = -EBADMSG;
                goto finish;
        }
        r = json_get_string(root, "Name", &name);
        if (r < 0)
                goto finish;
        h = cJSON_GetObjectItem(root, "UnitHash");
        if (h && !cJSON_IsNull(h)) {
                /* Go fills a [20]byte from an array: missing elements stay 0, extras are dropped. */
                const cJSON *e;
                size_t i = 0;
                if (!cJSON_IsArray(h)) {
                        r = -EBADMSG;
                        goto finish;
                }
                cJSON_ArrayForEach(e, h) {
                        long long x;
                        r = json_number_int(e, 0, 255, &x);
                        if (r < 0)
                                goto finish;
                        if (i < 20)
                                hash[i] = (uint8_t) x;
                        i++;
                }
        }
        if (ret_name) {
                char *n = strdup(name);
                if (!n) {
                        r = -ENOMEM;
                        goto finish;
                }
                *ret_name = n;
        }
        if (ret_hash)
                memcpy(ret_hash, hash, 20);
        r = 0;
finish:
        cJSON_Delete(root);
        return r;
}

char *fl_reg_encode_unit_contents(const char *raw) {
        Buf b = BUF_INIT;
        int r;

        r = fl_buf_puts(&b, "{\"Raw\":");
        if (r >= 0)
                r = fl_reg_json_string(&b, raw);
        if (r >= 0)
                r = fl_buf_putc(&b, '}');
        return buf_finish(&b, r);
}

int fl_reg_decode_unit_contents(const char *json, char **ret_raw) {
        cJSON *root = json_parse(json);
        const char *raw = "";
        int r;

        if (!root || !cJSON_IsObject(root)) {
                r = -EBADMSG;
                goto finish;
        }
        r = json_get_string(root, "Raw", &raw);
        if (r < 0)
                goto finish;
        if (ret_raw) {
                char *s = strdup(raw);
                if (!s) {
                        r = -ENOMEM;
                        goto finish;
                }
                *ret_raw = s;
        }
finish:
        cJSON_Delete(root);
        return r;
}

char *fl_reg_encode_unit_state(const RegUnitState *st) {
        Buf b = BUF_INIT;
        int r;

        r = fl_buf_puts(&b, "{\"loadState\":");
        if (r >= 0)
                r = fl_reg_json_string(&b, st->load_state);
        if (r >= 0)
                r = fl_buf_puts(&b, ",\"activeState\":");
        if (r >= 0)
                r = fl_reg_json_string(&b, st->active_state);
        if (r >= 0)
                r = fl_buf_puts(&b, ",\"subState\":");
        if (r >= 0)
                r = fl_reg_json_string(&b, st->sub_state);
        if (r >= 0)
                r = fl_buf_puts(&b, ",\"machineState\":");
        if (r >= 0) {
                /* fleet keeps a MachineState with only the ID set, and none without an ID. */
                if (isempty(st->machine_id))
                        r = fl_buf_puts(&b, "null");
                else {
                        r = fl_buf_puts(&b, "{\"ID\":");
                        if (r >= 0)
                                r = fl_reg_json_string(&b, st->machine_id);
                        if (r >= 0)
                                r = fl_buf_puts(&b, ",\"PublicIP\":\"\",\"Metadata\":null,"
                                                    "\"Capabilities\":null,\"Version\":\"\"}");
                }
        }
        if (r >= 0)
                r = fl_buf_puts(&b, ",\"unitHash\":");
        if (r >= 0)
                r = fl_reg_json_string(&b, st->hash);
        if (r >= 0)
                r = fl_buf_putc(&b, '}');
        return buf_finish(&b, r);
}

void fl_reg_unit_state_done(RegUnitState *st) {
        if (!st)
                return;
        st->name = mfree(st->name);
        st->machine_id = mfree(st->machine_id);
        st->load_state = mfree(st->load_state);
        st->active_state = mfree(st->active_state);
        st->sub_state = mfree(st->sub_state);
        memset(st->hash, 0, sizeof(st->hash));
}

int fl_reg_decode_unit_state(const char *json, RegUnitState *ret) {
        cJSON *root = json_parse(json);
        const char *load = "", *active = "", *sub = "", *hash = "", *mid = NULL;
        const cJSON *ms;
        RegUnitState st = {};
        int r;

        if (!root || !cJSON_IsObject(root)) {
                r = -EBADMSG;
                goto finish;
        }
        r = json_get_string(root, "loadState", &load);
        if (r >= 0)
                r = json_get_string(root, "activeState", &active);
        if (r >= 0)
                r = json_get_string(root, "subState", &sub);
        if (r >= 0)
                r = json_get_string(root, "unitHash", &hash);
        if (r < 0)
                goto finish;
        ms = cJSON_GetObjectItem(root, "machineState");
        if (ms && !cJSON_IsNull(ms)) {
                if (!cJSON_IsObject(ms)) {
                        r = -EBADMSG;
                        goto finish;
                }
                r = json_get_string(ms, "ID", &mid);
                if (r < 0)
                        goto finish;
        }
        /* The hash is kept only when it has the form we write; anything else reads as none. */
        if (strlen(hash) == 40 && strspn(hash, "0123456789abcdefABCDEF") == 40)
                for (size_t i = 0; i < 40; i++)
                        st.hash[i] = (char) (hash[i] >= 'A' && hash[i] <= 'F' ? hash[i] - 'A' + 'a' : hash[i]);
        r = -ENOMEM;
        st.load_state = strdup(load);
        st.active_state = strdup(active);
        st.sub_state = strdup(sub);
        if (!st.load_state || !st.active_state || !st.sub_state)
                goto finish;
        if (!isempty(mid) && strdup_or_null(mid, &st.machine_id) < 0)
                goto finish;
        /* The name comes from the key, not the value: keep what the caller had. */
        st.name = ret->name;
        ret->name = NULL;
        fl_reg_unit_state_done(ret);
        *ret = st;
        memset(&st, 0, sizeof(st));
        r = 0;
finish:
        fl_reg_unit_state_done(&st);
        cJSON_Delete(root);
        return r;
}

/* Sorted, deduplicated copy of a k,v,k,v... list: (key, value) pairs sorted by key with byte
 * order, for duplicate keys the later pair wins. */
typedef struct KV {
        const char *k, *v;
        size_t pos;
} KV;

static int kv_cmp(const void *a, const void *b) {
        const KV *x = a, *y = b;
        int c = strcmp(x->k, y->k);
        if (c != 0)
                return c;
        return x->pos < y->pos ? -1 : x->pos > y->pos;
}

char *fl_reg_encode_machine(const RegMachine *m) {
        _cleanup_free_ KV *kv = NULL;
        Buf b = BUF_INIT;
        size_t n = 0;
        bool first = true;
        int r;

        if (m->n_metadata > 0) {
                kv = new(KV, m->n_metadata);
                if (!kv)
                        return NULL;
                for (size_t i = 0; i < m->n_metadata; i++)
                        if (m->metadata[2 * i])
                                kv[n++] = (KV) { m->metadata[2 * i], strempty(m->metadata[2 * i + 1]), i };
                qsort(kv, n, sizeof(KV), kv_cmp);
        }

        r = fl_buf_puts(&b, "{\"ID\":");
        if (r >= 0)
                r = fl_reg_json_string(&b, m->id);
        if (r >= 0)
                r = fl_buf_puts(&b, ",\"PublicIP\":");
        if (r >= 0)
                r = fl_reg_json_string(&b, m->public_ip);
        if (r >= 0)
                r = fl_buf_puts(&b, ",\"Metadata\":{");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (i + 1 < n && streq(kv[i].k, kv[i + 1].k))
                        continue;
                if (!first)
                        r = fl_buf_putc(&b, ',');
                first = false;
                if (r >= 0)
                        r = json_key(&b, kv[i].k);
                if (r >= 0)
                        r = fl_reg_json_string(&b, kv[i].v);
        }
        if (r >= 0)
                r = fl_buf_printf(&b, "},\"Capabilities\":{\"DISABLE_ENGINE\":%s,\"GRPC\":%s},\"Version\":",
                                  m->disable_engine ? "true" : "false", m->grpc ? "true" : "false");
        if (r >= 0)
                r = fl_reg_json_string(&b, m->version);
        if (r >= 0)
                r = fl_buf_putc(&b, '}');
        return buf_finish(&b, r);
}

void fl_reg_machine_done(RegMachine *m) {
        if (!m)
                return;
        free(m->id);
        free(m->public_ip);
        for (size_t i = 0; i < 2 * m->n_metadata; i++)
                free(m->metadata[i]);
        free(m->metadata);
        free(m->version);
        *m = (RegMachine) {};
}

/* Metadata pairs of a machine: set key to value (replacing an existing key), or remove it
 * when value is NULL. Keeps the list sorted by key. */
int fl_reg_machine_set_metadata(RegMachine *m, const char *key, const char *value) {
        size_t lo = 0, hi = m->n_metadata;

        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                int c = strcmp(m->metadata[2 * mid], key);
                if (c == 0) {
                        if (value) {
                                char *v = strdup(value);
                                if (!v)
                                        return -ENOMEM;
                                free(m->metadata[2 * mid + 1]);
                                m->metadata[2 * mid + 1] = v;
                        } else {
                                free(m->metadata[2 * mid]);
                                free(m->metadata[2 * mid + 1]);
                                memmove(m->metadata + 2 * mid, m->metadata + 2 * mid + 2,
                                        (m->n_metadata - mid - 1) * 2 * sizeof(char *));
                                m->n_metadata--;
                        }
                        return 0;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (!value)
                return 0;

        _cleanup_free_ char *k = strdup(key), *v = strdup(value);
        char **a;
        if (!k || !v)
                return -ENOMEM;
        a = realloc(m->metadata, (m->n_metadata + 1) * 2 * sizeof(char *));
        if (!a)
                return -ENOMEM;
        m->metadata = a;
        memmove(a + 2 * lo + 2, a + 2 * lo, (m->n_metadata - lo) * 2 * sizeof(char *));
        a[2 * lo] = TAKE_PTR(k);
        a[2 * lo + 1] = TAKE_PTR(v);
        m->n_metadata++;
        return 0;
}

int fl_reg_decode_machine(const char *json, RegMachine *ret) {
        cJSON *root = json_parse(json);
        const char *id = "", *ip = "", *version = "";
        const cJSON *md, *caps;
        RegMachine m = {};
        int r;

        if (!root || !cJSON_IsObject(root)) {
                r = -EBADMSG;
                goto finish;
        }
        r = json_get_string(root, "ID", &id);
        if (r >= 0)
                r = json_get_string(root, "PublicIP", &ip);
        if (r >= 0)
                r = json_get_string(root, "Version", &version);
        if (r < 0)
                goto finish;
        caps = cJSON_GetObjectItem(root, "Capabilities");
        if (caps && !cJSON_IsNull(caps)) {
                if (!cJSON_IsObject(caps)) {
                        r = -EBADMSG;
                        goto finish;
                }
                r = json_get_bool(caps, "DISABLE_ENGINE", &m.disable_engine);
                if (r >= 0)
                        r = json_get_bool(caps, "GRPC", &m.grpc);
                if (r < 0)
                        goto finish;
        }
        r = -ENOMEM;
        m.id = strdup(id);
        m.public_ip = strdup(ip);
        m.version = strdup(version);
        if (!m.id || !m.public_ip || !m.version)
                goto finish;
        md = cJSON_GetObjectItem(root, "Metadata");
        if (md && !cJSON_IsNull(md)) {
                const cJSON *e;
                if (!cJSON_IsObject(md)) {
                        r = -EBADMSG;
                        goto finish;
                }
                cJSON_ArrayForEach(e, md) {
                        if (!e->string) {
                                r = -EBADMSG;
                                goto finish;
                        }
                        if (cJSON_IsNull(e))
                                continue;
                        if (!cJSON_IsString(e) || !e->valuestring) {
                                r = -EBADMSG;
                                goto finish;
                        }
                        r = fl_reg_machine_set_metadata(&m, e->string, e->valuestring);
                        if (r < 0)
                                goto finish;
                }
        }
        fl_reg_machine_done(ret);
        *ret = m;
        m = (RegMachine) {};
        r = 0;
finish:
        fl_reg_machine_done(&m);
        cJSON_Delete(root);
        return r;
}

char *fl_reg_encode_lease(const char *machine_id, int version) {
        Buf b = BUF_INIT;
        int r;

        r = fl_buf_puts(&b, "{\"MachineID\":");
        if (r >= 0)
                r = fl_reg_json_string(&b, machine_id);
        if (r >= 0)
                r = fl_buf_printf(&b, ",\"Version\":%d}", version);
        return buf_finish(&b, r);
}

int fl_reg_decode_lease(const char *value, char **ret_machine_id, int *ret_version) {
        cJSON *root = json_parse(value);
        const char *mid = "";
        long long version = 0;
        int r = 0;

        if (!value)
                return -EBADMSG;
        /* fleet: a value that does not unmarshal into the lease struct is a bare machine ID of
         * a pre-versioning engine, version 0. */
        if (!root || !cJSON_IsObject(root))
                mid = value;
        else {
                const cJSON *v = cJSON_GetObjectItem(root, "Version");
                if (json_get_string(root, "MachineID", &mid) < 0 ||
                    (v && !cJSON_IsNull(v) && json_number_int(v, -2147483648.0, 2147483647.0, &version) < 0)) {
                        mid = value;
                        version = 0;
                }
        }
        if (ret_machine_id) {
                char *s = strdup(mid);
                if (!s)
                        r = -ENOMEM;
                else
                        *ret_machine_id = s;
        }
        if (r >= 0 && ret_version)
                *ret_version = (int) version;
        cJSON_Delete(root);
        return r;
}
