
/*
 * Copyright (C) ngx_llm authors
 *
 * Shared declarations of ngx_http_llm_module: configuration, the request
 * context, and the entry points of each runtime part (body, sse, usage,
 * variables, error).
 */


#ifndef _NGX_HTTP_LLM_MODULE_H_INCLUDED_
#define _NGX_HTTP_LLM_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_inspect.h"
#include "ngx_http_llm_event.h"
#include "ngx_http_llm_cache.h"
#include "ngx_http_llm_limit.h"
#include "ngx_http_llm_metrics.h"
#include "ngx_http_llm_sidecar.h"
#include "ngx_http_llm_balancer.h"
#include "ngx_http_llm_retry.h"
#include "ngx_http_llm_fallback.h"


#define NGX_HTTP_LLM_API_AUTO           0xff

/* ctx->outcome */
#define NGX_HTTP_LLM_OUTCOME_NONE       0
#define NGX_HTTP_LLM_OUTCOME_COMPLETE   1   /* terminator / whole JSON */
#define NGX_HTTP_LLM_OUTCOME_INCOMPLETE 2   /* upstream ended early */
#define NGX_HTTP_LLM_OUTCOME_ABORTED    3   /* client went away */
#define NGX_HTTP_LLM_OUTCOME_ERROR      4   /* error status or event */
#define NGX_HTTP_LLM_OUTCOME_REJECTED   5   /* refused by the gateway */

/* ctx->usage_source */
#define NGX_HTTP_LLM_USAGE_NONE         0
#define NGX_HTTP_LLM_USAGE_UPSTREAM     1
#define NGX_HTTP_LLM_USAGE_ESTIMATED    2

/* bytes of output text per estimated token, see the README */
#define NGX_HTTP_LLM_BYTES_PER_TOKEN    4


/* http{} level: shared memory zones and node-wide state of the features */
typedef struct {
    ngx_uint_t                  dummy;      /* features add their fields */
    ngx_http_llm_metrics_conf_t metrics;
    ngx_http_llm_sidecar_conf_t sidecar;
    ngx_array_t                *fallbacks;  /* locations with llm_fallback */
} ngx_http_llm_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_uint_t                  api;            /* NGX_HTTP_LLM_API_* */
    ngx_http_complex_value_t   *key;            /* caller key, or NULL */
    size_t                      max_body_size;
    ngx_uint_t                  max_json_depth;
    ngx_flag_t                  stream_usage;
    size_t                      response_max_size;
    size_t                      sse_event_max_size;
    ngx_http_llm_cache_conf_t   cache;
    ngx_http_llm_limit_conf_t   limit;
    ngx_str_t                   status;         /* llm_status page */
    ngx_http_llm_sidecar_loc_conf_t  link;      /* llm_team, llm_route */
    ngx_http_llm_retry_conf_t   retry;          /* llm_retry */
    ngx_http_llm_fallback_conf_t  fallback;     /* llm_fallback* */
    ngx_flag_t                  balance_wait;   /* may hold: wait= */
} ngx_http_llm_loc_conf_t;


typedef struct {
    ngx_uint_t                  api;
    ngx_http_llm_request_t      req;            /* inspection result */

    ngx_str_t                   model;          /* unescaped, in r->pool */
    ngx_str_t                   key_hash;       /* 12 hex chars or empty */
    uint64_t                    key_id;         /* XXH3-64 of the key, 0 */

    ngx_int_t                   status;         /* phase handler result */

    ngx_msec_t                  start;          /* request start, ms */
    ngx_msec_t                  ttft;           /* first content event */
    ngx_msec_t                  end;            /* response finished */

    /* response watching */
    ngx_http_llm_sse_t          sse;
    ngx_http_llm_usage_t        usage;
    size_t                      content_bytes;
    ngx_uint_t                  events;
    ngx_buf_t                  *json;           /* non-streaming body */
    ngx_buf_t                  *error_body;     /* replaces nginx's page */

    ngx_http_llm_cache_ctx_t   *cache;          /* response cache state */
    ngx_http_llm_limit_ctx_t    limit;          /* rate limit holds */
    ngx_http_llm_sidecar_ctx_t *link;           /* sidecar route, team */
    ngx_http_llm_balancer_ctx_t bal;            /* llm_balance picks */
    ngx_http_llm_retry_t       *retry;          /* llm_retry, or NULL */
    ngx_http_llm_fallback_ctx_t fb;             /* fallback chain */
    ngx_uint_t                  upstream_counted;   /* states by group */

    /* event-aligned output when the usage-only chunk is stripped */
    ngx_buf_t                  *pending;        /* partial event bytes */
    uint64_t                    emitted;        /* stream offset emitted */
    uint64_t                    cut_start;      /* usage chunk to drop */
    uint64_t                    cut_end;
    ngx_chain_t                *free;
    ngx_chain_t                *busy;

    unsigned                    waiting_body:1;
    unsigned                    inspected:1;    /* body understood */
    unsigned                    stream_injected:1;  /* we asked usage */
    unsigned                    body_routed:1;  /* the route rewrote it */
    unsigned                    sse_response:1;
    unsigned                    json_response:1;
    unsigned                    json_overflow:1;
    unsigned                    strip:1;
    unsigned                    got_content:1;
    unsigned                    done:1;         /* terminator seen */
    unsigned                    error_event:1;
    unsigned                    error_replaced:1;   /* upstream failed */
    unsigned                    ended:1;        /* we closed the stream */
    unsigned                    finalized:1;    /* usage settled */
    unsigned                    cache_hit:1;    /* answered by the cache */
    unsigned                    cache_coalesced:1;  /* after a leader */
    unsigned                    outcome:3;
    unsigned                    usage_source:2;
} ngx_http_llm_ctx_t;


extern ngx_module_t  ngx_http_llm_module;


/* body: the precontent phase handler */
ngx_int_t ngx_http_llm_body_handler(ngx_http_request_t *r);
ngx_http_llm_ctx_t *ngx_http_llm_get_ctx(ngx_http_request_t *r);
ngx_http_llm_ctx_t *ngx_http_llm_find_ctx(ngx_http_request_t *r);
void ngx_http_llm_ctx_cleanup(void *data);
void ngx_http_llm_body_resume(ngx_http_request_t *r, ngx_int_t rc);
ngx_int_t ngx_http_llm_body_contiguous(ngx_http_request_t *r,
    u_char **data, size_t *len);

/* route: the sidecar's decision, after rate limit admission */
ngx_int_t ngx_http_llm_route(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx);
/* the model of the forwarded body, becomes the served model */
ngx_int_t ngx_http_llm_route_set_model(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_str_t *model);

/* fallback: a hop into a named location, the upstream failure caught */
ngx_int_t ngx_http_llm_fallback_enter(ngx_http_request_t *r);
ngx_int_t ngx_http_llm_fallback_header(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
const char *ngx_http_llm_fallback_tier_name(ngx_http_llm_ctx_t *ctx);

/* cache: parts of the response cache the fallback chain uses */
ngx_int_t ngx_http_llm_cache_fallback_stale(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t serve);
ngx_int_t ngx_http_llm_cache_stale_covers(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
void ngx_http_llm_cache_fallback_hop(ngx_http_llm_ctx_t *ctx);

/* metrics: the attempts of the group a fallback hop leaves */
void ngx_http_llm_metrics_upstream_hop(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);

/* sse: response header and body filters */
ngx_int_t ngx_http_llm_sse_init_filters(ngx_conf_t *cf);
ngx_chain_t *ngx_http_llm_sse_end_chain(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_str_t *openai, ngx_str_t *anthropic);

/* usage: settle figures at the log phase */
ngx_int_t ngx_http_llm_usage_log_handler(ngx_http_request_t *r);
void ngx_http_llm_usage_settle(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);

/* limit: admission, settle, in-stream metering and cut-off */
ngx_int_t ngx_http_llm_limit_admit(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
void ngx_http_llm_limit_settle(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
void ngx_http_llm_limit_meter(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx);
void ngx_http_llm_limit_stream_end(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
void ngx_http_llm_limit_release_tokens(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
ngx_chain_t *ngx_http_llm_limit_cutoff(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
ngx_int_t ngx_http_llm_limit_drain(ngx_chain_t *in);

/* variables */
ngx_int_t ngx_http_llm_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_llm_request_id_init(ngx_cycle_t *cycle);

/* error: client API shaped error responses */
ngx_int_t ngx_http_llm_send_error(ngx_http_request_t *r, ngx_uint_t api,
    ngx_uint_t status, const char *type, const char *code,
    const char *param, const char *fmt, ...);
ngx_buf_t *ngx_http_llm_error_body(ngx_http_request_t *r, ngx_uint_t api,
    ngx_uint_t status, const char *type, const char *code,
    const char *param, const char *fmt, ...);
void ngx_http_llm_error_headers(ngx_http_request_t *r, ngx_buf_t *b);
const char *ngx_http_llm_api_name(ngx_uint_t api);
void ngx_http_llm_clear_headers(ngx_http_request_t *r);
u_char *ngx_http_llm_json_string(u_char *p, u_char *last, const u_char *s,
    size_t len);
u_char *ngx_http_llm_uint(u_char *p, uint64_t n);


#endif /* _NGX_HTTP_LLM_MODULE_H_INCLUDED_ */
