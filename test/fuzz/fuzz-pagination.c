/* SPDX-License-Identifier: MIT */
/* fuzz-pagination: the API's nextPageToken (spec §3.5): URL-safe base64 of little-endian
 * uint16 limit and page, decoded with Go's base64 rules and error texts. Checked against a
 * reference decoder written from Go's encoding/base64 (URLEncoding, padded, CR/LF ignored);
 * what decodes re-encodes to a token that decodes to the same page; page ranges stay inside
 * the collection. */
#include <stdio.h>

#include "api.h"
#include "api-client.h"
#include "fuzz.h"

static int b64(char c) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *p = c ? strchr(alphabet, c) : NULL;
        return p ? (int) (p - alphabet) : -1;
}

/* Go 1.7's base64.URLEncoding.DecodeString (newlines stripped first, then decode(); offsets
 * count in the stripped text) and binary.Read of two little-endian uint16: 0 with limit and
 * page, or -1 with the error text. */
static int ref_parse(const char *token, unsigned *ret_limit, unsigned *ret_page, char **ret_msg) {
        size_t len = strlen(token), olen = 0, si = 0, nd = 0;
        _cleanup_free_ char *s = malloc(len + 1);
        bool end = false;
        long long err = -1;
        uint8_t out[4];

        FUZZ_CHECK(s);
        for (size_t i = 0; i < len; i++)
                if (token[i] != '\r' && token[i] != '\n')
                        s[olen++] = token[i];
        s[olen] = 0;

#define CORRUPT(off)                                                                                  \
        do {                                                                                          \
                FUZZ_CHECK(asprintf(ret_msg, "illegal base64 data at input byte %zu", (size_t) (off)) > 0); \
                return -1;                                                                            \
        } while (0)

        while (si < olen && !end) {
                int dbuf[4] = {};
                size_t dlen = 4;

                for (size_t j = 0; j < 4; j++) {
                        char in;
                        if (si == olen)
                                CORRUPT(olen - j);
                        in = s[si++];
                        if (in == '=') {
                                if (j < 2)
                                        CORRUPT(si - 1);
                                if (j == 2) {
                                        if (si == olen)
                                                CORRUPT(olen);
                                        if (s[si] != '=')
                                                CORRUPT(si - 1);
                                        si++;
                                }
                                if (si < olen)
                                        err = (long long) si; /* trailing garbage */
                                dlen = j;
                                end = true;
                                break;
                        }
                        dbuf[j] = b64(in);
                        if (dbuf[j] < 0)
                                CORRUPT(si - 1);
                }
                {
                        uint8_t o[3] = {
                                (uint8_t) (dbuf[0] << 2 | dbuf[1] >> 4),
                                (uint8_t) (dbuf[1] << 4 | dbuf[2] >> 2),
                                (uint8_t) (dbuf[2] << 6 | dbuf[3]),
                        };
                        for (size_t k = 0; k + 1 < dlen; k++) {
                                if (nd < 4)
                                        out[nd] = o[k];
                                nd++;
                        }
                }
        }
        if (err >= 0)
                CORRUPT(err);
#undef CORRUPT
        if (nd < 4) {
                *ret_msg = strdup(nd == 0 ? "EOF" : "unexpected EOF");
                FUZZ_CHECK(*ret_msg);
                return -1;
        }
        *ret_limit = out[0] | (unsigned) out[1] << 8;
        *ret_page = out[2] | (unsigned) out[3] << 8;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *token = NULL, *msg = NULL, *ref_msg = NULL, *msg2 = NULL;
        unsigned ref_limit = 0, ref_page = 0;
        ApiPage p = {}, p2 = {};
        char again[9];
        int r, rr;

        if (size > 4096)
                return 0;
        token = fuzz_strndup(data, size);
        FUZZ_CHECK(token);

        r = fl_api_page_token_parse(token, &p, &msg);
        rr = ref_parse(token, &ref_limit, &ref_page, &ref_msg);
        if ((r == 0) != (rr == 0) || (r < 0 && !streq_ptr(msg, ref_msg)) ||
            (r == 0 && (p.limit != ref_limit || p.page != ref_page)))
                fprintf(stderr, "token \"%s\": got %d %u/%u \"%s\", Go would give %d %u/%u \"%s\"\n", token, r,
                        p.limit, p.page, strempty(msg), rr, ref_limit, ref_page, strempty(ref_msg));
        FUZZ_CHECK((r == 0) == (rr == 0));
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL && msg);
                FUZZ_CHECK_STREQ(msg, ref_msg);
                return 0;
        }
        FUZZ_CHECK(p.limit == ref_limit && p.page == ref_page);
        FUZZ_CHECK(p.limit <= 0xffff && p.page <= 0xffff);

        fl_api_page_token(p.limit, p.page, again);
        FUZZ_CHECK(strlen(again) == 8);
        FUZZ_CHECK(fl_api_page_token_parse(again, &p2, &msg2) == 0);
        FUZZ_CHECK(p2.limit == p.limit && p2.page == p.page);

        if (p.page > 0) {
                const size_t ns[] = { 0, 1, 99, 100, 101, (size_t) p.limit * p.page, 1000000 };
                for (size_t i = 0; i < ELEMENTSOF(ns); i++) {
                        size_t start = 0, end = 0;
                        bool more = fl_api_page_range(&p, ns[i], &start, &end);
                        FUZZ_CHECK(start <= end && end <= ns[i]);
                        FUZZ_CHECK(end - start <= p.limit);
                        FUZZ_CHECK(more == ((uint64_t) p.page * p.limit <= ns[i]));
                }
        }
        return 0;
}
