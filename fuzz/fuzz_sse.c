
/*
 * Copyright (C) ngx_llm authors
 *
 * libFuzzer target for the SSE framer and the event analysis. The stream
 * is fed whole, then split at points taken from the input, then byte by
 * byte: the events (name, data, offsets, truncation) must be identical.
 * Every event also goes through the analysis.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "ngx_http_llm_event.h"
#include "ngx_http_llm_inspect.h"


#define check(cond)                                                           \
    if (!(cond)) {                                                            \
        fprintf(stderr, "fuzz_sse: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        abort();                                                              \
    }


typedef struct {
    uint64_t                    digest;
    uint64_t                    events;
    uint64_t                    last_end;
    int                         analyze;
} fuzz_rec_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
fuzz_on_event(ngx_http_llm_sse_t *sse, const u_char *name, size_t name_len,
    const u_char *data, size_t len, uint64_t start, uint64_t end)
{
    uint64_t                    w[6];
    fuzz_rec_t                 *r;
    ngx_http_llm_event_info_t   info;

    r = sse->data;

    check(len <= sse->cap);
    check(name_len <= NGX_HTTP_LLM_SSE_NAME_MAX);
    check(start < end && end == sse->offset);
    check(start >= r->last_end);

    /*
     * the analysis is a function of the event alone and the split runs
     * must yield the very events of the whole run (the digests below),
     * so analysing them again would only repeat the same work
     */

    if (r->analyze) {
        ngx_http_llm_event_analyze(NGX_HTTP_LLM_API_CHAT, name, name_len,
                                   data, len, &info);

        check(!info.usage_only || info.usage);
        check(info.content_bytes == 0 || info.content);
    }

    w[0] = r->digest;
    w[1] = XXH3_64bits(name, name_len);
    w[2] = XXH3_64bits(data, len);
    w[3] = start;
    w[4] = end;
    w[5] = sse->truncated;

    r->digest = XXH3_64bits(w, sizeof(w));
    r->events++;
    r->last_end = end;

    return 0;
}


static void
fuzz_run(const u_char *p, size_t len, size_t cap, const size_t *cuts,
    size_t ncuts, int analyze, fuzz_rec_t *r)
{
    u_char              *buf;
    size_t               i, from, to;
    ngx_http_llm_sse_t   sse;

    /* exactly cap bytes, so that ASan sees any overflow */
    buf = malloc(cap ? cap : 1);
    check(buf != NULL);

    memset(r, 0, sizeof(fuzz_rec_t));
    r->analyze = analyze;
    ngx_http_llm_sse_init(&sse, buf, cap, fuzz_on_event, r);

    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        check(ngx_http_llm_sse_feed(&sse, p + from, to - from) == 0);
        from = to;
    }

    check(sse.offset == len);
    check(sse.events == r->events);

    free(buf);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t         cap, len, i, j, n, t, *cuts;
    fuzz_rec_t     whole, split;
    const u_char  *p;

    if (size < 3) {
        return 0;
    }

    cap = data[0] % 64 + (data[0] & 0x80 ? 4096 : 0);
    n = data[1] % 8;
    p = data + 2;
    len = size - 2;

    fuzz_run(p, len, cap, NULL, 0, 1, &whole);

    /* split points from the stream's own bytes, sorted */

    cuts = malloc((len + 8) * sizeof(size_t));
    check(cuts != NULL);

    for (i = 0; i < n; i++) {
        cuts[i] = (i < len) ? (p[i] * 131 + i * 17) % (len + 1) : len;
    }

    for (i = 1; i < n; i++) {
        for (j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    }

    fuzz_run(p, len, cap, cuts, n, 0, &split);
    check(split.digest == whole.digest && split.events == whole.events);

    for (i = 0; i < len; i++) {
        cuts[i] = i;
    }

    fuzz_run(p, len, cap, cuts, len, 0, &split);
    check(split.digest == whole.digest && split.events == whole.events);

    free(cuts);

    return 0;
}
