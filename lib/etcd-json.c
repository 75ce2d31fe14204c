/* SPDX-License-Identifier: MIT */
/* etcd-json.c: etcd v2's success JSON ({"action":..,"node":{..},"prevNode":{..}}), read
 * straight into EtcdNode trees. Every reply to a write and every watch event goes through here
 * in every daemon, and a recursive GET of 10,000 units is 17 MB of it: a general JSON tree
 * (cJSON) first and our nodes after cost several times as much, mostly in allocations and
 * strtod. Strict RFC 8259 (what etcd's Go encoder writes): no raw control characters in
 * strings, no leading zeros; a known member twice is an error. */
#include <math.h>
#include <stdlib.h>

#include "buf.h"
#include "etcd-json.h"

/* Deepest node tree we decode: a key depth, far beyond fleet's five levels. */
#define NODE_MAX_DEPTH 64U
/* Nesting of values we skip (members etcd may add): cJSON's limit. */
#define SKIP_MAX_DEPTH 1000U

static void *fl_memdup(const void *p, size_t n) {
        void *d = malloc(n);
        return d ? memcpy(d, p, n) : NULL;
}

typedef struct Parser {
        const char *p, *end;
        Buf tmp;        /* strings with escapes */
} Parser;

EtcdNode *fl_etcd_node_free(EtcdNode *n) {
        if (!n)
                return NULL;
        for (size_t i = 0; i < n->n_nodes; i++)
                fl_etcd_node_free(n->nodes[i]);
        free(n->nodes);
        free(n->key);
        free(n->value);
        return mfree(n);
}

static void ws(Parser *q) {
        while (q->p < q->end && (*q->p == ' ' || *q->p == '\t' || *q->p == '\n' || *q->p == '\r'))
                q->p++;
}

/* Skips white space and takes c if it comes next. */
static bool take(Parser *q, char c) {
        ws(q);
        if (q->p < q->end && *q->p == c) {
                q->p++;
                return true;
        }
        return false;
}

static bool take_word(Parser *q, const char *w, size_t n) {
        if ((size_t) (q->end - q->p) < n || memcmp(q->p, w, n) != 0)
                return false;
        q->p += n;
        return true;
}

static int hex4(const char *s, unsigned *ret) {
        unsigned v = 0;

        for (size_t i = 0; i < 4; i++) {
                int d = fl_unhex_char(s[i]);
                if (d < 0)
                        return -EBADMSG;
                v = v << 4 | (unsigned) d;
        }
        *ret = v;
        return 0;
}

/* The escapes of a string from q->p (after a backslash-free prefix already in q->tmp) to its
 * closing quote, into q->tmp. */
static int string_escaped(Parser *q) {
        int r = 0;

        while (r >= 0) {
                const char *s = q->p;
                unsigned cp, lo;

                while (q->p < q->end && *q->p != '"' && *q->p != '\\' && (unsigned char) *q->p >= 0x20)
                        q->p++;
                r = fl_buf_append(&q->tmp, s, (size_t) (q->p - s));
                if (r < 0)
                        return r;
                if (q->p >= q->end || (unsigned char) *q->p < 0x20)
                        return -EBADMSG;
                if (*q->p++ == '"')
                        return 0;
                if (q->p >= q->end)
                        return -EBADMSG;
                switch (*q->p++) {
                case '"':  r = fl_buf_putc(&q->tmp, '"'); break;
                case '\\': r = fl_buf_putc(&q->tmp, '\\'); break;
                case '/':  r = fl_buf_putc(&q->tmp, '/'); break;
                case 'b':  r = fl_buf_putc(&q->tmp, '\b'); break;
                case 'f':  r = fl_buf_putc(&q->tmp, '\f'); break;
                case 'n':  r = fl_buf_putc(&q->tmp, '\n'); break;
                case 'r':  r = fl_buf_putc(&q->tmp, '\r'); break;
                case 't':  r = fl_buf_putc(&q->tmp, '\t'); break;
                case 'u':
                        if (q->end - q->p < 4 || hex4(q->p, &cp) < 0)
                                return -EBADMSG;
                        q->p += 4;
                        if (cp >= 0xdc00 && cp <= 0xdfff)
                                return -EBADMSG;        /* a low surrogate alone */
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                if (q->end - q->p < 6 || q->p[0] != '\\' || q->p[1] != 'u' ||
                                    hex4(q->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
                                        return -EBADMSG;
                                q->p += 6;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        }
                        /* (U+0000 ends the C string there, as it did with cJSON) */
                        r = fl_buf_put_utf8(&q->tmp, cp);
                        break;
                default:
                        return -EBADMSG;
                }
        }
        return r;
}

/* A string at q->p (after white space). ret NULL: checked and skipped. *ret_plain/len: the
 * text in place when it has no escapes (for comparing member names without copying). */
static int string(Parser *q, char **ret, const char **ret_plain, size_t *ret_len) {
        const char *s;
        int r;

        if (q->p >= q->end || *q->p != '"')
                return -EBADMSG;
        s = ++q->p;
        while (q->p < q->end && *q->p != '"' && *q->p != '\\' && (unsigned char) *q->p >= 0x20)
                q->p++;
        if (q->p < q->end && *q->p == '"') {
                size_t n = (size_t) (q->p++ - s);
                if (ret_plain) {
                        *ret_plain = s;
                        *ret_len = n;
                }
                if (ret && !(*ret = strndup(s, n)))
                        return -ENOMEM;
                return 0;
        }
        fl_buf_reset(&q->tmp);
        r = fl_buf_append(&q->tmp, s, (size_t) (q->p - s));
        if (r >= 0)
                r = string_escaped(q);
        if (r < 0)
                return r;
        if (ret_plain) {
                *ret_plain = fl_buf_str(&q->tmp);
                *ret_len = q->tmp.len;
        }
        if (ret && !(*ret = fl_memdup(fl_buf_str(&q->tmp), q->tmp.len + 1)))
                return -ENOMEM;
        return 0;
}

/* A JSON number (RFC 8259 grammar) at q->p. *ret_simple: only digits (and a sign), of which
 * *ret_v holds the value if it has at most 19 of them. */
static int number(Parser *q, bool *ret_neg, bool *ret_simple, uint64_t *ret_v) {
        bool simple = true;
        uint64_t v = 0;

        *ret_neg = q->p < q->end && *q->p == '-';
        if (*ret_neg)
                q->p++;
        if (q->p >= q->end || *q->p < '0' || *q->p > '9')
                return -EBADMSG;
        if (*q->p == '0' && q->end - q->p > 1 && q->p[1] >= '0' && q->p[1] <= '9')
                return -EBADMSG;        /* leading zero */
        for (; q->p < q->end && *q->p >= '0' && *q->p <= '9'; q->p++) {
                if (v >= 1000000000000000000ULL)
                        simple = false;
                else
                        v = v * 10 + (uint64_t) (*q->p - '0');
        }
        if (q->p < q->end && *q->p == '.') {
                simple = false;
                q->p++;
                if (q->p >= q->end || *q->p < '0' || *q->p > '9')
                        return -EBADMSG;
                while (q->p < q->end && *q->p >= '0' && *q->p <= '9')
                        q->p++;
        }
        if (q->p < q->end && (*q->p == 'e' || *q->p == 'E')) {
                simple = false;
                q->p++;
                if (q->p < q->end && (*q->p == '+' || *q->p == '-'))
                        q->p++;
                if (q->p >= q->end || *q->p < '0' || *q->p > '9')
                        return -EBADMSG;
                while (q->p < q->end && *q->p >= '0' && *q->p <= '9')
                        q->p++;
        }
        *ret_simple = simple;
        *ret_v = v;
        return 0;
}

/* A JSON number that must be an integer within a double's exact range (1e3 and 5.0 count,
 * as they did when a double was read first). */
static int integer(Parser *q, bool allow_negative, int64_t *ret) {
        const char *s = q->p;
        bool neg, simple;
        uint64_t v;
        double d;
        int r;

        r = number(q, &neg, &simple, &v);
        if (r < 0)
                return r;
        if (simple) {
                if (v > (uint64_t) FL_JSON_MAX_INT)
                        return -EBADMSG;        /* a double would round it */
                d = (double) v;
        }
        else {
                _cleanup_free_ char *t = strndup(s, (size_t) (q->p - s));
                if (!t)
                        return -ENOMEM;
                d = fabs(strtod(t, NULL));
        }
        if (!isfinite(d) || d > FL_JSON_MAX_INT || d != floor(d) || (neg && d != 0 && !allow_negative))
                return -EBADMSG;
        *ret = neg ? -(int64_t) d : (int64_t) d;
        return 0;
}

static int skip_value(Parser *q, unsigned depth);

static int skip_container(Parser *q, char close, unsigned depth) {
        int r;

        if (depth >= SKIP_MAX_DEPTH)
                return -EBADMSG;
        if (take(q, close))
                return 0;
        do {
                if (close == '}') {
                        ws(q);
                        r = string(q, NULL, NULL, NULL);
                        if (r < 0)
                                return r;
                        if (!take(q, ':'))
                                return -EBADMSG;
                }
                r = skip_value(q, depth + 1);
                if (r < 0)
                        return r;
        } while (take(q, ','));
        return take(q, close) ? 0 : -EBADMSG;
}

static int skip_value(Parser *q, unsigned depth) {
        ws(q);
        if (q->p >= q->end)
                return -EBADMSG;
        switch (*q->p) {
        case '"':
                return string(q, NULL, NULL, NULL);
        case '{':
                q->p++;
                return skip_container(q, '}', depth);
        case '[':
                q->p++;
                return skip_container(q, ']', depth);
        case 't':
                return take_word(q, "true", 4) ? 0 : -EBADMSG;
        case 'f':
                return take_word(q, "false", 5) ? 0 : -EBADMSG;
        case 'n':
                return take_word(q, "null", 4) ? 0 : -EBADMSG;
        default: {
                bool neg, simple;
                uint64_t v;
                return number(q, &neg, &simple, &v);
        }
        }
}

static bool take_null(Parser *q) {
        ws(q);
        return take_word(q, "null", 4);
}

static int node(Parser *q, unsigned depth, EtcdNode **ret);

/* "nodes": an array of node objects (or null). */
static int node_children(Parser *q, unsigned depth, EtcdNode *n) {
        size_t allocated = 0;
        int r;

        if (take_null(q))
                return 0;
        if (!take(q, '['))
                return -EBADMSG;
        if (take(q, ']'))
                return 0;
        do {
                if (n->n_nodes == allocated) {
                        size_t a = MAX(allocated * 2, (size_t) 4);
                        EtcdNode **p = reallocarray(n->nodes, a, sizeof(EtcdNode *));
                        if (!p)
                                return -ENOMEM;
                        n->nodes = p;
                        allocated = a;
                }
                r = node(q, depth + 1, &n->nodes[n->n_nodes]);
                if (r < 0)
                        return r;
                n->n_nodes++;
        } while (take(q, ','));
        return take(q, ']') ? 0 : -EBADMSG;
}

static int opt_string(Parser *q, char **ret) {
        if (take_null(q))
                return 0;
        return string(q, ret, NULL, NULL);
}

static bool name_is(const char *s, size_t n, const char *name) {
        return strlen(name) == n && memcmp(s, name, n) == 0;
}

enum {
        SEEN_KEY = 1 << 0,
        SEEN_VALUE = 1 << 1,
        SEEN_CREATED = 1 << 2,
        SEEN_MODIFIED = 1 << 3,
        SEEN_DIR = 1 << 4,
        SEEN_TTL = 1 << 5,
        SEEN_NODES = 1 << 6,
};

static int node_member(Parser *q, unsigned depth, EtcdNode *n, const char *name, size_t len, unsigned *seen) {
        unsigned bit;
        int64_t x;
        int r;

        if (name_is(name, len, "key"))
                bit = SEEN_KEY;
        else if (name_is(name, len, "value"))
                bit = SEEN_VALUE;
        else if (name_is(name, len, "createdIndex"))
                bit = SEEN_CREATED;
        else if (name_is(name, len, "modifiedIndex"))
                bit = SEEN_MODIFIED;
        else if (name_is(name, len, "dir"))
                bit = SEEN_DIR;
        else if (name_is(name, len, "ttl"))
                bit = SEEN_TTL;
        else if (name_is(name, len, "nodes"))
                bit = SEEN_NODES;
        else
                return skip_value(q, depth);
        if (*seen & bit)
                return -EBADMSG;
        *seen |= bit;

        ws(q);
        switch (bit) {
        case SEEN_KEY:
                return opt_string(q, &n->key);
        case SEEN_VALUE:
                return opt_string(q, &n->value);
        case SEEN_DIR:
                if (take_word(q, "true", 4))
                        n->dir = true;
                else if (!take_word(q, "false", 5) && !take_word(q, "null", 4))
                        return -EBADMSG;
                return 0;
        case SEEN_NODES:
                return node_children(q, depth, n);
        default:
                if (take_null(q))
                        return 0;
                r = integer(q, bit == SEEN_TTL, &x);
                if (r < 0)
                        return r;
                if (bit == SEEN_TTL)
                        n->ttl = x;
                else if (bit == SEEN_CREATED)
                        n->created_index = (uint64_t) x;
                else
                        n->modified_index = (uint64_t) x;
                return 0;
        }
}

/* Calls fn for each member of the object at q->p, with its name (not NUL-terminated). */
static int object(Parser *q, unsigned depth, void *userdata,
                  int (*fn)(Parser *q, unsigned depth, void *userdata, const char *name, size_t len)) {
        int r;

        if (!take(q, '{'))
                return -EBADMSG;
        if (take(q, '}'))
                return 0;
        do {
                _cleanup_free_ char *copy = NULL;
                const char *name;
                size_t len;

                ws(q);
                r = string(q, NULL, &name, &len);
                if (r < 0)
                        return r;
                if (name == fl_buf_str(&q->tmp)) {
                        /* an escaped name: the value may need q->tmp itself */
                        copy = fl_memdup(name, len + 1);
                        if (!copy)
                                return -ENOMEM;
                        name = copy;
                }
                if (!take(q, ':'))
                        return -EBADMSG;
                r = fn(q, depth, userdata, name, len);
                if (r < 0)
                        return r;
        } while (take(q, ','));
        return take(q, '}') ? 0 : -EBADMSG;
}

typedef struct NodeState {
        EtcdNode *n;
        unsigned seen;
} NodeState;

static int node_fn(Parser *q, unsigned depth, void *userdata, const char *name, size_t len) {
        NodeState *s = userdata;
        return node_member(q, depth, s->n, name, len, &s->seen);
}

static int node(Parser *q, unsigned depth, EtcdNode **ret) {
        _cleanup_(fl_etcd_node_freep) EtcdNode *n = NULL;
        NodeState s = {};
        int r;

        if (depth > NODE_MAX_DEPTH)
                return -EBADMSG;
        n = new0(EtcdNode, 1);
        if (!n)
                return -ENOMEM;
        s.n = n;
        r = object(q, depth, &s, node_fn);
        if (r < 0)
                return r;
        if (n->dir)
                n->value = mfree(n->value);
        *ret = TAKE_PTR(n);
        return 0;
}

typedef struct EventState {
        EtcdResponse *resp;
        bool action, node, prev;
} EventState;

static int event_fn(Parser *q, unsigned depth, void *userdata, const char *name, size_t len) {
        EventState *s = userdata;

        ws(q);
        if (name_is(name, len, "action")) {
                if (s->action)
                        return -EBADMSG;
                s->action = true;
                return string(q, &s->resp->action, NULL, NULL);
        }
        if (name_is(name, len, "node")) {
                if (s->node)
                        return -EBADMSG;
                s->node = true;
                return node(q, 0, &s->resp->node);
        }
        if (name_is(name, len, "prevNode")) {
                if (s->prev)
                        return -EBADMSG;
                s->prev = true;
                return take_null(q) ? 0 : node(q, 0, &s->resp->prev_node);
        }
        return skip_value(q, depth);
}

int fl_etcd_json_decode_event(const char *data, size_t len, EtcdResponse *resp) {
        Parser q = { .p = data, .end = data + len };
        EventState s = { .resp = resp };
        int r;

        r = object(&q, 0, &s, event_fn);
        fl_buf_done(&q.tmp);
        if (r < 0)
                return r;
        ws(&q);
        if (q.p != q.end || !resp->action || !resp->node)
                return -EBADMSG;
        return 0;
}
