
/*
 * Copyright (C) ngx_llm authors
 *
 * Rate limiter arithmetic: see ngx_http_llm_limiter.h.
 */


#include <stdio.h>
#include <string.h>

#include "ngx_http_llm_limiter.h"


#define ngx_http_llm_cap(rate)                                                \
    ((int64_t) (rate) * NGX_HTTP_LLM_LIMITER_SCALE)


void
ngx_http_llm_limiter_init(ngx_http_llm_limiter_t *lim, const uint32_t *rate,
    uint64_t now)
{
    int  d;

    for (d = 0; d < NGX_HTTP_LLM_LIMITER_DIMS; d++) {
        lim->level[d] = ngx_http_llm_cap(rate[d]);
    }

    lim->last = now;
}


void
ngx_http_llm_limiter_refill(ngx_http_llm_limiter_t *lim, const uint32_t *rate,
    uint64_t now)
{
    int       d;
    int64_t   cap;
    uint64_t  elapsed;

    if (now <= lim->last) {
        if (lim->last - now > NGX_HTTP_LLM_LIMITER_CLOCK_JUMP) {
            lim->last = now;
        }

        return;
    }

    elapsed = now - lim->last;
    lim->last = now;

    for (d = 0; d < NGX_HTTP_LLM_LIMITER_DIMS; d++) {
        if (rate[d] == 0) {
            continue;
        }

        cap = ngx_http_llm_cap(rate[d]);

        /* compared before multiplying: no overflow, debt included */

        if (lim->level[d] >= cap
            || elapsed >= (uint64_t) (cap - lim->level[d]) / rate[d] + 1)
        {
            lim->level[d] = cap;

        } else {
            lim->level[d] += (int64_t) (elapsed * rate[d]);
        }
    }
}


int
ngx_http_llm_limiter_reserve(ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, const int64_t *need, uint64_t now, uint64_t *wait)
{
    int       d, refused;
    int64_t   cap, want;
    uint64_t  w, longest;

    ngx_http_llm_limiter_refill(lim, rate, now);

    refused = -1;
    longest = 0;

    for (d = 0; d < NGX_HTTP_LLM_LIMITER_DIMS; d++) {
        if (rate[d] == 0 || need[d] <= 0) {
            continue;
        }

        cap = ngx_http_llm_cap(rate[d]);

        want = (need[d] > (int64_t) rate[d])
               ? cap : need[d] * NGX_HTTP_LLM_LIMITER_SCALE;

        if (lim->level[d] >= want) {
            continue;
        }

        /* units missing over units refilled per ms, rounded up */

        w = (uint64_t) (want - lim->level[d] + rate[d] - 1) / rate[d];

        if (refused == -1 || w > longest) {
            refused = d;
            longest = w;
        }
    }

    if (refused != -1) {
        *wait = longest;
        return refused;
    }

    for (d = 0; d < NGX_HTTP_LLM_LIMITER_DIMS; d++) {
        if (rate[d] && need[d] > 0) {
            lim->level[d] -= need[d] * NGX_HTTP_LLM_LIMITER_SCALE;
        }
    }

    *wait = 0;

    return -1;
}


int
ngx_http_llm_limiter_charge(ngx_http_llm_limiter_t *lim, const uint32_t *rate,
    int d, int64_t tokens)
{
    int64_t  cap;

    if (rate[d] == 0) {
        return 0;
    }

    cap = ngx_http_llm_cap(rate[d]);

    lim->level[d] -= tokens * NGX_HTTP_LLM_LIMITER_SCALE;

    if (lim->level[d] > cap) {
        lim->level[d] = cap;
    }

    return lim->level[d] < 0;
}


uint64_t
ngx_http_llm_limiter_remaining(const ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, int d)
{
    if (rate[d] == 0 || lim->level[d] <= 0) {
        return 0;
    }

    return (uint64_t) lim->level[d] / NGX_HTTP_LLM_LIMITER_SCALE;
}


uint64_t
ngx_http_llm_limiter_reset(const ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, int d)
{
    int64_t  cap;

    if (rate[d] == 0) {
        return 0;
    }

    cap = ngx_http_llm_cap(rate[d]);

    if (lim->level[d] >= cap) {
        return 0;
    }

    return (uint64_t) (cap - lim->level[d] + rate[d] - 1) / rate[d];
}


int
ngx_http_llm_limiter_idle(ngx_http_llm_limiter_t *lim, const uint32_t *rate,
    uint64_t now)
{
    int  d;

    ngx_http_llm_limiter_refill(lim, rate, now);

    for (d = 0; d < NGX_HTTP_LLM_LIMITER_DIMS; d++) {
        if (rate[d] && lim->level[d] < ngx_http_llm_cap(rate[d])) {
            return 0;
        }
    }

    return 1;
}


/*
 * decimal digits of v at p, returns the end; the duration is formatted
 * on every limited answer (three x-ratelimit-reset-* headers), where
 * snprintf() was a visible cost
 */

static char *
ngx_http_llm_limiter_u64(char *p, uint64_t v)
{
    char   *d;
    char    tmp[20];

    d = tmp + sizeof(tmp);

    do {
        *--d = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    memcpy(p, d, tmp + sizeof(tmp) - d);

    return p + (tmp + sizeof(tmp) - d);
}


size_t
ngx_http_llm_limiter_duration(u_char *buf, uint64_t ms)
{
    char      *p;
    uint64_t   h, m, s, f;

    p = (char *) buf;

    if (ms == 0) {
        memcpy(p, "0s", 2);
        return 2;
    }

    if (ms < 1000) {
        p = ngx_http_llm_limiter_u64(p, ms);
        *p++ = 'm';
        *p++ = 's';
        return (size_t) (p - (char *) buf);
    }

    h = ms / 3600000;
    m = ms / 60000 % 60;
    s = ms / 1000 % 60;
    f = ms % 1000;

    if (h) {
        p = ngx_http_llm_limiter_u64(p, h);
        *p++ = 'h';
    }

    if (h || m) {
        p = ngx_http_llm_limiter_u64(p, m);
        *p++ = 'm';
    }

    p = ngx_http_llm_limiter_u64(p, s);

    if (f) {
        /* milliseconds as a decimal fraction, trailing zeros dropped */

        *p++ = '.';
        *p++ = (char) ('0' + f / 100);

        if (f % 100) {
            *p++ = (char) ('0' + f / 10 % 10);

            if (f % 10) {
                *p++ = (char) ('0' + f % 10);
            }
        }
    }

    *p++ = 's';

    return (size_t) (p - (char *) buf);
}
