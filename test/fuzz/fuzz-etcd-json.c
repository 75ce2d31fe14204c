/* SPDX-License-Identifier: MIT */
/* fuzz-etcd-json: lib/etcd-json.c, the decoder every etcd reply and watch event goes through,
 * against a reference made of cJSON (a general JSON parser) and a straightforward walk of its
 * tree (what the etcd client did before). Whatever our decoder accepts, the reference must
 * accept too and read the same way: action, and every node's key, value, dir, indexes, ttl and
 * children. Our decoder may refuse more (it is strict JSON where cJSON is lenient: raw control
 * characters, leading zeros, a member twice) and refuses any NUL byte. Input: the body, as it
 * came. */
#include <math.h>

#include "cJSON.h"
#include "etcd-json.h"
#include "fuzz.h"

static const cJSON *member(const cJSON *o, const char *name) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
        return cJSON_IsNull(j) ? NULL : j;
}

static bool ref_int(const cJSON *j, double *ret) {
        double d;

        if (!cJSON_IsNumber(j))
                return false;
        d = j->valuedouble;
        if (!isfinite(d) || fabs(d) > FL_JSON_MAX_INT || d != floor(d))
                return false;
        *ret = d;
        return true;
}

/* Our node n read the same as the reference's j. */
static void same_node(const EtcdNode *n, const cJSON *j, unsigned depth) {
        const cJSON *x;
        size_t i = 0;
        double d;

        FUZZ_CHECK(n && cJSON_IsObject(j) && depth <= 64);
        x = member(j, "key");
        FUZZ_CHECK(x ? cJSON_IsString(x) && streq_ptr(n->key, x->valuestring) : !n->key);
        x = member(j, "dir");
        FUZZ_CHECK(x ? cJSON_IsBool(x) && n->dir == cJSON_IsTrue(x) : !n->dir);
        x = member(j, "value");
        if (n->dir)
                FUZZ_CHECK(!n->value && (!x || cJSON_IsString(x)));
        else
                FUZZ_CHECK(x ? cJSON_IsString(x) && streq_ptr(n->value, x->valuestring) : !n->value);
        x = member(j, "createdIndex");
        FUZZ_CHECK(x ? ref_int(x, &d) && d >= 0 && (double) n->created_index == d : n->created_index == 0);
        x = member(j, "modifiedIndex");
        FUZZ_CHECK(x ? ref_int(x, &d) && d >= 0 && (double) n->modified_index == d : n->modified_index == 0);
        x = member(j, "ttl");
        FUZZ_CHECK(x ? ref_int(x, &d) && (double) n->ttl == d : n->ttl == 0);
        x = member(j, "nodes");
        if (!x) {
                FUZZ_CHECK(n->n_nodes == 0);
                return;
        }
        FUZZ_CHECK(cJSON_IsArray(x) && (size_t) cJSON_GetArraySize(x) == n->n_nodes);
        for (const cJSON *c = x->child; c; c = c->next)
                same_node(n->nodes[i++], c, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *s = NULL;
        EtcdResponse *resp;
        cJSON *j;
        const cJSON *x;
        int r;

        if (size > 65536)
                return 0;
        s = fuzz_strndup(data, size);
        resp = calloc(1, sizeof(*resp));
        FUZZ_CHECK(s && resp);
        r = fl_etcd_json_decode_event(s, size, resp);
        FUZZ_CHECK(r == 0 || r == -EBADMSG);
        /* a NUL never ends the body early (cJSON below would stop there) */
        if (memchr(data, 0, size))
                FUZZ_CHECK(r == -EBADMSG);
        if (r < 0) {
                fl_etcd_response_free(resp);
                return 0;
        }
        FUZZ_CHECK(resp->action && resp->node);

        j = cJSON_ParseWithLengthOpts(s, size + 1, NULL, true);
        FUZZ_CHECK(cJSON_IsObject(j));
        x = member(j, "action");
        FUZZ_CHECK(cJSON_IsString(x) && streq(x->valuestring, resp->action));
        same_node(resp->node, member(j, "node"), 0);
        x = member(j, "prevNode");
        if (x)
                same_node(resp->prev_node, x, 0);
        else
                FUZZ_CHECK(!resp->prev_node);
        cJSON_Delete(j);
        fl_etcd_response_free(resp);
        return 0;
}
