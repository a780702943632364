
/*
 * Copyright (C) ngx_llm authors
 *
 * libFuzzer target for the cache entry decoder on arbitrary bytes (an L2
 * entry comes back from Redis, which another node or anybody with access
 * may have written): a valid entry must render as JSON and replay as SSE
 * within the sizes announced, whatever its contents.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_assemble.h"


#define check(cond)                                                           \
    if (!(cond)) {                                                            \
        fprintf(stderr, "fuzz_entry: %s:%d: %s\n", __FILE__, __LINE__,       \
                #cond);                                                       \
        abort();                                                              \
    }


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                *p, *out;
    size_t                 n, max, total;
    unsigned               content, chunk;
    ngx_http_llm_entry_t   e;
    ngx_http_llm_replay_t  rp;

    if (size < 1) {
        return 0;
    }

    chunk = data[0] % 64 + 1;

    /* exactly the bytes, so that ASan sees any read past them */

    p = malloc(size - 1 ? size - 1 : 1);
    check(p != NULL);
    memcpy(p, data + 1, size - 1);

    if (ngx_http_llm_entry_decode(&e, p, size - 1) != 0) {
        free(p);
        return 0;
    }

    check(e.nparts <= NGX_HTTP_LLM_MSG_MAX_PARTS);

    n = ngx_http_llm_render_json(&e, NULL, 0);
    out = malloc(n ? n : 1);
    check(out != NULL);
    check(ngx_http_llm_render_json(&e, out, n) == n);
    free(out);

    if (e.kind == NGX_HTTP_LLM_ENTRY_MESSAGE) {
        ngx_http_llm_replay_init(&rp, &e, chunk, data[0] & 0x80);
        max = ngx_http_llm_replay_max(&rp);
        out = malloc(max ? max : 1);
        check(out != NULL);

        total = 0;

        while ((n = ngx_http_llm_replay_next(&rp, out, max, &content)) != 0) {
            check(n <= max);
            total += n;
            check(total < 64 * 1024 * 1024);
        }

        free(out);
    }

    free(p);

    return 0;
}
