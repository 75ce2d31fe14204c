/* SPDX-License-Identifier: MIT */
/* registry-tree.c: the registry's keys (relative to the prefix) in an AVL tree sorted by byte
 * order. Sorted because etcd deletes whole directories (job/<unit>) and those are key ranges;
 * a hash map would need a scan of every key per deleted unit. */
#include "registry-internal.h"

static int height(const RegNode *n) {
        return n ? n->height : 0;
}

static void fix(RegNode *n) {
        n->height = 1 + MAX(height(n->left), height(n->right));
}

static RegNode *rotate_right(RegNode *n) {
        RegNode *l = n->left;
        n->left = l->right;
        l->right = n;
        fix(n);
        fix(l);
        return l;
}

static RegNode *rotate_left(RegNode *n) {
        RegNode *r = n->right;
        n->right = r->left;
        r->left = n;
        fix(n);
        fix(r);
        return r;
}

static RegNode *balance(RegNode *n) {
        int b;

        fix(n);
        b = height(n->left) - height(n->right);
        if (b > 1) {
                if (height(n->left->left) < height(n->left->right))
                        n->left = rotate_left(n->left);
                return rotate_right(n);
        }
        if (b < -1) {
                if (height(n->right->right) < height(n->right->left))
                        n->right = rotate_right(n->right);
                return rotate_left(n);
        }
        return n;
}

static void node_free(RegTree *t, RegNode *n) {
        if (n->data && t->free_data)
                t->free_data(n->data);
        free(n->key);
        free(n->value);
        free(n);
}

void fl_reg_tree_clear(RegTree *t) {
        /* Iterative post-order by rotating left children up: no recursion on huge trees. */
        RegNode *n = t->root;
        while (n) {
                if (n->left) {
                        RegNode *l = n->left;
                        n->left = l->right;
                        l->right = n;
                        n = l;
                } else {
                        RegNode *r = n->right;
                        node_free(t, n);
                        n = r;
                }
        }
        t->root = NULL;
        t->n = 0;
}

RegNode *fl_reg_tree_find(const RegTree *t, const char *key) {
        RegNode *n = t->root;
        while (n) {
                int c = strcmp(key, n->key);
                if (c == 0)
                        return n;
                n = c < 0 ? n->left : n->right;
        }
        return NULL;
}

static RegNode *insert(RegTree *t, RegNode *n, RegNode *new_node, RegNode **ret_existing) {
        int c;

        if (!n) {
                t->n++;
                return new_node;
        }
        c = strcmp(new_node->key, n->key);
        if (c == 0) {
                *ret_existing = n;
                return n;
        }
        if (c < 0)
                n->left = insert(t, n->left, new_node, ret_existing);
        else
                n->right = insert(t, n->right, new_node, ret_existing);
        return *ret_existing ? n : balance(n);
}

RegNode *fl_reg_tree_ensure(RegTree *t, const char *key) {
        RegNode *existing = fl_reg_tree_find(t, key), *n;

        if (existing)
                return existing;
        n = new0(RegNode, 1);
        if (!n)
                return NULL;
        n->key = strdup(key);
        if (!n->key) {
                free(n);
                return NULL;
        }
        n->height = 1;
        t->root = insert(t, t->root, n, &existing);
        return n;
}

int fl_reg_tree_set(RegTree *t, const char *key, const char *value, uint64_t modified_index,
                    uint64_t ttl_sec) {
        RegNode *n;
        char *v;

        v = strdup(strempty(value));
        if (!v)
                return -ENOMEM;
        n = fl_reg_tree_ensure(t, key);
        if (!n) {
                free(v);
                return -ENOMEM;
        }
        if (n->data && t->free_data && !streq_ptr(n->value, v)) {
                /* Whatever was derived from the old value is stale now. */
                t->free_data(n->data);
                n->data = NULL;
        }
        free(n->value);
        n->value = v;
        n->modified_index = modified_index;
        n->ttl_sec = ttl_sec;
        return 0;
}

static RegNode *remove_min(RegNode *n, RegNode **ret_min) {
        if (!n->left) {
                *ret_min = n;
                return n->right;
        }
        n->left = remove_min(n->left, ret_min);
        return balance(n);
}

static RegNode *remove_node(RegTree *t, RegNode *n, const char *key, bool *found) {
        int c;

        if (!n)
                return NULL;
        c = strcmp(key, n->key);
        if (c < 0)
                n->left = remove_node(t, n->left, key, found);
        else if (c > 0)
                n->right = remove_node(t, n->right, key, found);
        else {
                RegNode *l = n->left, *r = n->right, *m;
                *found = true;
                t->n--;
                node_free(t, n);
                if (!r)
                        return l;
                r = remove_min(r, &m);
                m->left = l;
                m->right = r;
                return balance(m);
        }
        return balance(n);
}

bool fl_reg_tree_remove(RegTree *t, const char *key) {
        bool found = false;
        t->root = remove_node(t, t->root, key, &found);
        return found;
}

/* First node with key >= k, or NULL. */
RegNode *fl_reg_tree_lower_bound(const RegTree *t, const char *k) {
        RegNode *n = t->root, *best = NULL;
        while (n) {
                if (strcmp(n->key, k) >= 0) {
                        best = n;
                        n = n->left;
                } else
                        n = n->right;
        }
        return best;
}

/* First node with key > k, or NULL. */
RegNode *fl_reg_tree_next(const RegTree *t, const char *k) {
        RegNode *n = t->root, *best = NULL;
        while (n) {
                if (strcmp(n->key, k) > 0) {
                        best = n;
                        n = n->left;
                } else
                        n = n->right;
        }
        return best;
}

size_t fl_reg_tree_remove_dir(RegTree *t, const char *dir) {
        _cleanup_free_ char *p = NULL;
        size_t removed = 0;
        RegNode *n;

        if (asprintf(&p, "%s/", dir) < 0)
                return 0;
        while ((n = fl_reg_tree_lower_bound(t, p)) && startswith(n->key, p)) {
                _cleanup_free_ char *k = strdup(n->key);
                if (!k)
                        break;
                fl_reg_tree_remove(t, k);
                removed++;
        }
        return removed;
}

static int walk(RegNode *n, int (*f)(RegNode *n, void *userdata), void *userdata) {
        int r;
        /* Depth is O(log n), recursion is fine. */
        if (!n)
                return 0;
        r = walk(n->left, f, userdata);
        if (r != 0)
                return r;
        r = f(n, userdata);
        if (r != 0)
                return r;
        return walk(n->right, f, userdata);
}

int fl_reg_tree_walk(const RegTree *t, int (*f)(RegNode *n, void *userdata), void *userdata) {
        return walk(t->root, f, userdata);
}
