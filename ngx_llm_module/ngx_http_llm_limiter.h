
/*
 * Copyright (C) ngx_llm authors
 *
 * Rate limiter arithmetic, pure C (no nginx dependency): token buckets for
 * up to three dimensions (requests, tokens, output tokens) that refill
 * continuously at N per minute up to one minute's worth, with
 * reservations that are settled or released later.
 *
 * Levels are kept in units of 1/60000 token, so that a rate of N per
 * minute refills exactly N units per millisecond: no rounding drift.
 * A level may go below zero (debt) when real usage exceeds a reservation
 * or when other nodes' consumption is learnt (global limits); the bucket
 * then admits nothing until it has refilled past the debt.
 *
 * The caller serialises access (a shared memory mutex in the module).
 */


#ifndef _NGX_HTTP_LLM_LIMITER_H_INCLUDED_
#define _NGX_HTTP_LLM_LIMITER_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


#define NGX_HTTP_LLM_LIMITER_SCALE   60000      /* units per token */
#define NGX_HTTP_LLM_LIMITER_DIMS    3

#define NGX_HTTP_LLM_LIMITER_REQ     0          /* requests */
#define NGX_HTTP_LLM_LIMITER_TOK     1          /* tokens, or input tokens */
#define NGX_HTTP_LLM_LIMITER_OUT     2          /* output tokens */

/* a clock step back larger than this restarts the refill clock */
#define NGX_HTTP_LLM_LIMITER_CLOCK_JUMP  60000

/* longest duration formatted, e.g. "1h2m3.004s" or "20ms" */
#define NGX_HTTP_LLM_LIMITER_DURATION_LEN  32


typedef struct {
    int64_t                     level[NGX_HTTP_LLM_LIMITER_DIMS];
    uint64_t                    last;           /* refill clock, ms */
} ngx_http_llm_limiter_t;


/*
 * rate[d] is the limit of dimension d per minute; 0 means the dimension
 * is not limited (its level is ignored). The bucket capacity is one
 * minute's worth: rate[d] tokens.
 */

void ngx_http_llm_limiter_init(ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, uint64_t now);

/*
 * Refills to "now". Clock edges: a "now" slightly behind "last" (another
 * process's cached clock) refills nothing and keeps "last"; a step back
 * of more than NGX_HTTP_LLM_LIMITER_CLOCK_JUMP restarts the clock there.
 */
void ngx_http_llm_limiter_refill(ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, uint64_t now);

/*
 * Reserves need[d] tokens in every limited dimension, all or nothing.
 * A need larger than the capacity is admitted only when that bucket is
 * full (it then runs into debt), so that no request waits forever.
 * Returns -1 when reserved; else the dimension that refused (the one
 * with the longest wait) and *wait, the milliseconds until the whole
 * reservation would fit, given no other consumption.
 */
int ngx_http_llm_limiter_reserve(ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, const int64_t *need, uint64_t now,
    uint64_t *wait);

/*
 * Charges "tokens" more to dimension d (a negative figure gives back:
 * settle, release, rollback), the level capped at the capacity.
 * Returns 1 when the level is now below zero (over budget), else 0.
 */
int ngx_http_llm_limiter_charge(ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, int d, int64_t tokens);

/* whole tokens available now in dimension d, never below 0 */
uint64_t ngx_http_llm_limiter_remaining(const ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, int d);

/* milliseconds until dimension d is full again (OpenAI's "reset") */
uint64_t ngx_http_llm_limiter_reset(const ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, int d);

/* 1 when every limited dimension is full after a refill to "now" */
int ngx_http_llm_limiter_idle(ngx_http_llm_limiter_t *lim,
    const uint32_t *rate, uint64_t now);

/*
 * Formats milliseconds the way OpenAI's x-ratelimit-reset-* headers do
 * (Go durations): "0s", "20ms", "1s", "1.5s", "6m0s", "1h2m3.004s".
 * buf holds NGX_HTTP_LLM_LIMITER_DURATION_LEN bytes; returns the length.
 */
size_t ngx_http_llm_limiter_duration(u_char *buf, uint64_t ms);


#endif /* _NGX_HTTP_LLM_LIMITER_H_INCLUDED_ */
