/* SPDX-License-Identifier: MIT */
/* etcd-json.h: etcd v2's JSON for a success (a reply or one watch event), decoded into
 * EtcdNode trees without a general JSON tree in between. */
#pragma once

#include "etcd.h"

/* Largest integer a JSON number (a double) holds exactly: what an index or TTL may be. */
#define FL_JSON_MAX_INT 9007199254740992.0

/* data: len bytes, exactly one JSON object (a NUL among them is refused, not read as the end).
 * Fills resp->action, node and prev_node (owned by resp, also on failure). 0, -EBADMSG (not
 * one such object, nodes deeper than 64, a member twice, wrong types) or -ENOMEM. */
int fl_etcd_json_decode_event(const char *data, size_t len, EtcdResponse *resp);

EtcdNode *fl_etcd_node_free(EtcdNode *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(EtcdNode *, fl_etcd_node_free);
