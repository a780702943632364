
/*
 * Copyright (C) ngx_llm authors
 *
 * Response cache: the nginx side (shared memory zone, lookup, serving a
 * hit as JSON or SSE, storing complete answers, coalescing of identical
 * misses, stale-if-error, headers and $llm_cache_status).
 */


#ifndef _NGX_HTTP_LLM_CACHE_H_INCLUDED_
#define _NGX_HTTP_LLM_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_assemble.h"


/* $llm_cache_status, X-Cache-Status */
#define NGX_HTTP_LLM_CACHE_NONE         0
#define NGX_HTTP_LLM_CACHE_MISS         1
#define NGX_HTTP_LLM_CACHE_BYPASS       2
#define NGX_HTTP_LLM_CACHE_EXPIRED      3
#define NGX_HTTP_LLM_CACHE_STALE        4
#define NGX_HTTP_LLM_CACHE_UPDATING     5
#define NGX_HTTP_LLM_CACHE_HIT          6

/* llm_cache_scope */
#define NGX_HTTP_LLM_CACHE_SCOPE_KEY    0
#define NGX_HTTP_LLM_CACHE_SCOPE_SHARED 1
#define NGX_HTTP_LLM_CACHE_SCOPE_VALUE  2

/* llm_cache_use_stale */
#define NGX_HTTP_LLM_STALE_OFF          0x0002
#define NGX_HTTP_LLM_STALE_ERROR        0x0004
#define NGX_HTTP_LLM_STALE_TIMEOUT      0x0008
#define NGX_HTTP_LLM_STALE_429          0x0010
#define NGX_HTTP_LLM_STALE_500          0x0020
#define NGX_HTTP_LLM_STALE_502          0x0040
#define NGX_HTTP_LLM_STALE_503          0x0080
#define NGX_HTTP_LLM_STALE_504          0x0100
#define NGX_HTTP_LLM_STALE_529          0x0200
#define NGX_HTTP_LLM_STALE_UPDATING     0x0400


/* location configuration, a member of ngx_http_llm_loc_conf_t */
typedef struct {
    ngx_shm_zone_t             *shm_zone;       /* NULL: off */
    ngx_uint_t                  off;            /* "llm_cache off" seen */
    time_t                      valid;
    ngx_uint_t                  scope;
    ngx_http_complex_value_t   *scope_value;
    ngx_array_t                *bypass;         /* predicates */
    ngx_array_t                *no_store;
    ngx_flag_t                  deterministic;
    ngx_flag_t                  lock;
    ngx_msec_t                  lock_timeout;
    ngx_uint_t                  use_stale;
    ngx_uint_t                  replay_rate;    /* tokens/s, 0: off */
} ngx_http_llm_cache_conf_t;


typedef struct ngx_http_llm_cache_ctx_s  ngx_http_llm_cache_ctx_t;


/* directives */
char *ngx_http_llm_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_llm_cache_scope(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

extern ngx_conf_bitmask_t  ngx_http_llm_cache_use_stale_masks[];

void ngx_http_llm_cache_create_conf(ngx_http_llm_cache_conf_t *conf);
char *ngx_http_llm_cache_merge_conf(ngx_conf_t *cf,
    ngx_http_llm_cache_conf_t *prev, ngx_http_llm_cache_conf_t *conf);

ngx_int_t ngx_http_llm_cache_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_llm_cache_init_filters(ngx_conf_t *cf);

/* per worker process: the Redis clients of the zones with an L2 */
ngx_int_t ngx_http_llm_cache_init_process(ngx_cycle_t *cycle);
void ngx_http_llm_cache_exit_process(ngx_cycle_t *cycle);

/*
 * After inspection (and rate limit admission): NGX_DECLINED to go
 * upstream; NGX_DONE when the cache holds the request (waiting, pacing);
 * otherwise the request was answered and rc is for finalization.
 */
ngx_int_t ngx_http_llm_cache_handler(ngx_http_request_t *r);

/* every SSE event of the upstream answer, from the stream watcher */
void ngx_http_llm_cache_event(ngx_http_request_t *r, const u_char *name,
    size_t name_len, const u_char *data, size_t len);


#endif /* _NGX_HTTP_LLM_CACHE_H_INCLUDED_ */
