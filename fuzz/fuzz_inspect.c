
/*
 * Copyright (C) ngx_llm authors
 *
 * libFuzzer target for the request inspector. The first input byte picks
 * the API and the depth limit, the rest is the body. Besides the
 * sanitizers, it checks:
 *
 *   - the results are in range and point inside the body;
 *   - the inspector and the standalone validator agree on validity and on
 *     the offset of the first error;
 *   - jansson agrees on validity (known differences are skipped: lone \u
 *     surrogates, which we accept as RFC 8259 allows; numbers too large
 *     for jansson's types; a raw NUL byte, where jansson stops reading);
 *   - inspecting twice gives the same hash.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "ngx_http_llm_inspect.h"
#include "ngx_http_llm_json.h"


#define check(cond)                                                           \
    if (!(cond)) {                                                            \
        fprintf(stderr, "fuzz_inspect: %s:%d: %s\n", __FILE__, __LINE__,     \
                #cond);                                                       \
        abort();                                                              \
    }


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                         rc, vrc;
    size_t                      len;
    json_t                     *j;
    unsigned                    depth;
    uint64_t                    h0, h1;
    json_error_t                jerr;
    const u_char               *body;
    ngx_http_llm_request_t      req;
    ngx_http_llm_json_error_t   err;

    if (size == 0) {
        return 0;
    }

    body = data + 1;
    len = size - 1;

    depth = (data[0] >> 3) % 9;             /* 0 (default) .. 8 */

    if (data[0] & 0x80) {
        depth = 200;                        /* clamped to the maximum */
    }

    memset(&req, 0xa5, sizeof(req));
    req.max_depth = depth;

    rc = ngx_http_llm_inspect(&req, data[0] % 5, body, len);

    check(rc >= NGX_HTTP_LLM_INSPECT_OK && rc <= NGX_HTTP_LLM_INSPECT_EDUP);

    if (rc != NGX_HTTP_LLM_INSPECT_OK) {
        check(req.error != NULL && req.error[0] != '\0');
        check(req.error_offset <= len);

        if (rc == NGX_HTTP_LLM_INSPECT_EDUP) {
            check(req.error_key.data >= body
                  && req.error_key.data + req.error_key.len <= body + len);
        }

    } else {
        check(req.error == NULL);
        check(req.object_end < len && body[req.object_end] == '}');

        if (req.model.data) {
            check(req.model.data > body
                  && req.model.data + req.model.len < body + len);
            check(req.model.data[-1] == '"'
                  && req.model.data[req.model.len] == '"');
        }

        if (req.stream_options_start >= 0) {
            check(req.stream_options_start < req.stream_options_end);
            check((size_t) req.stream_options_end <= len);
            check(body[req.stream_options_start] == '{'
                  || body[req.stream_options_start] == 'n');
        }

        check(req.prompt_tokens >= req.text_bytes / 4);

        h0 = req.hash[0];
        h1 = req.hash[1];

        check(ngx_http_llm_inspect(&req, data[0] % 5, body, len) == rc);
        check(req.hash[0] == h0 && req.hash[1] == h1);
    }

    /* the validator: same verdict, same first error */

    if (depth == 0) {
        depth = NGX_HTTP_LLM_INSPECT_DEFAULT_DEPTH;

    } else if (depth > NGX_HTTP_LLM_INSPECT_MAX_DEPTH) {
        depth = NGX_HTTP_LLM_INSPECT_MAX_DEPTH;
    }

    vrc = ngx_http_llm_json_validate(body, len, depth, &err);

    if (rc == NGX_HTTP_LLM_INSPECT_EJSON
        || rc == NGX_HTTP_LLM_INSPECT_EDEPTH)
    {
        check(vrc == -1);
        check((size_t) (err.pos - body) == req.error_offset);
        check((rc == NGX_HTTP_LLM_INSPECT_EDEPTH)
              == (strcmp(err.msg, "JSON nesting too deep") == 0));

    } else {
        check(vrc == 0);
    }

    /* jansson */

    if (rc == NGX_HTTP_LLM_INSPECT_EDEPTH || memchr(body, '\0', len)) {
        return 0;
    }

    j = json_loadb((const char *) body, len, JSON_DECODE_ANY|JSON_ALLOW_NUL,
                   &jerr);

    if (j != NULL) {
        check(rc != NGX_HTTP_LLM_INSPECT_EJSON);
        json_decref(j);

    } else if (strstr(jerr.text, "Unicode") == NULL
               && strstr(jerr.text, "too big") == NULL
               && strstr(jerr.text, "overflow") == NULL
               && strstr(jerr.text, "NUL") == NULL
               && strstr(jerr.text, "too deep") == NULL)
    {
        if (rc != NGX_HTTP_LLM_INSPECT_EJSON) {
            fprintf(stderr, "fuzz_inspect: jansson rejects (%s), "
                    "we accept\n", jerr.text);
            abort();
        }
    }

    return 0;
}
