
/*
 * Copyright (C) ngx_llm authors
 *
 * Rate limiting: requests, tokens and concurrent streams per key (and
 * model) in shared memory, reserve-then-settle, in-stream metering and
 * cut-off, OpenAI / Anthropic rate limit headers, global limits across
 * nodes through Redis. Types used by the shared module header; the
 * arithmetic lives in ngx_http_llm_limiter.c.
 */


#ifndef _NGX_HTTP_LLM_LIMIT_H_INCLUDED_
#define _NGX_HTTP_LLM_LIMIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_limiter.h"


/* $llm_limit_status */
#define NGX_HTTP_LLM_LIMIT_NONE             0
#define NGX_HTTP_LLM_LIMIT_PASSED           1
#define NGX_HTTP_LLM_LIMIT_REJECTED         2
#define NGX_HTTP_LLM_LIMIT_REJECTED_DRY_RUN 3

#define NGX_HTTP_LLM_LIMIT_MAX_HOLDS        8


typedef struct ngx_http_llm_limit_node_s  ngx_http_llm_limit_node_t;
typedef struct ngx_http_llm_limit_zone_s  ngx_http_llm_limit_zone_t;


/* one llm_limit directive */
typedef struct {
    ngx_shm_zone_t             *shm_zone;
    ngx_http_complex_value_t    key;
    uint64_t                    seed;           /* hash of the key's text */
    uint32_t                    rate[NGX_HTTP_LLM_LIMITER_DIMS];
    ngx_uint_t                  streams;
    ngx_uint_t                  output_default;
    unsigned                    split:1;        /* itpm / otpm */
    unsigned                    per_model:1;
    unsigned                    cutoff:1;
} ngx_http_llm_limit_t;


/* location configuration */
typedef struct {
    ngx_array_t                *limits;         /* ngx_http_llm_limit_t */
    ngx_uint_t                  status;
    ngx_uint_t                  log_level;
    ngx_flag_t                  dry_run;
} ngx_http_llm_limit_conf_t;


/* what one admitted request holds in one limit */
typedef struct {
    ngx_http_llm_limit_t       *limit;
    ngx_http_llm_limit_node_t  *node;
    int64_t                     charged[NGX_HTTP_LLM_LIMITER_DIMS];
    int64_t                     out;            /* output tokens covered */
    unsigned                    stream:1;       /* holds a stream slot */
} ngx_http_llm_limit_hold_t;


/* request state */
typedef struct {
    ngx_http_llm_limit_hold_t  *holds;
    ngx_uint_t                  nholds;

    /* for the response headers: the tightest limit of each kind */
    uint32_t                    hdr_rate[2];    /* requests, tokens */
    uint64_t                    hdr_remaining[2];
    uint64_t                    hdr_reset[2];   /* ms */
    uint64_t                    retry_after;    /* ms, on rejection */

    unsigned                    status:2;       /* NGX_HTTP_LLM_LIMIT_* */
    unsigned                    headers:1;      /* figures to send */
    unsigned                    settled:1;
    unsigned                    cut:1;          /* stream over budget */
    unsigned                    streams:1;      /* stream slots held */
} ngx_http_llm_limit_ctx_t;


/* registration (ngx_http_llm_module.c) */
extern ngx_conf_enum_t  ngx_http_llm_limit_log_levels[];
extern ngx_conf_num_bounds_t  ngx_http_llm_limit_status_bounds;

char *ngx_http_llm_limit_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_limit_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_llm_limit_create_conf(ngx_http_llm_limit_conf_t *conf);
char *ngx_http_llm_limit_merge_conf(ngx_conf_t *cf,
    ngx_http_llm_limit_conf_t *prev, ngx_http_llm_limit_conf_t *conf);
ngx_int_t ngx_http_llm_limit_init(ngx_conf_t *cf);
ngx_int_t ngx_http_llm_limit_init_process(ngx_cycle_t *cycle);
void ngx_http_llm_limit_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_llm_limit_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_LLM_LIMIT_H_INCLUDED_ */
