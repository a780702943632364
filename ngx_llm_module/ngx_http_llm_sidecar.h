
/*
 * Copyright (C) ngx_llm authors
 *
 * The link to llm-sidecar: a small asynchronous HTTP/1.1 client on its
 * unix socket, the usage spool (a ring in shared memory drained by a
 * per-worker timer into POST /v1/usage), and routing (POST /v1/route on
 * the request path, decisions cached in shared memory, fail-open).
 */


#ifndef _NGX_HTTP_LLM_SIDECAR_H_INCLUDED_
#define _NGX_HTTP_LLM_SIDECAR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* link counters in the spool zone, see ngx_http_llm_sidecar_count() */
#define NGX_HTTP_LLM_LINK_ROUTE_CALL        0   /* POST /v1/route sent */
#define NGX_HTTP_LLM_LINK_ROUTE_ERROR       1   /* ... and failed */
#define NGX_HTTP_LLM_LINK_USAGE_CALL        2   /* POST /v1/usage sent */
#define NGX_HTTP_LLM_LINK_USAGE_ERROR       3   /* ... and failed */
#define NGX_HTTP_LLM_LINK_CONNECT           4   /* connections opened */
#define NGX_HTTP_LLM_LINK_REUSE             5   /* idle connections reused */
#define NGX_HTTP_LLM_LINK_DECISION_SIDECAR  6   /* decisions by source */
#define NGX_HTTP_LLM_LINK_DECISION_CACHE    7
#define NGX_HTTP_LLM_LINK_DECISION_FALLBACK 8
#define NGX_HTTP_LLM_LINK_COUNTERS          9


/* $llm_route_status */
#define NGX_HTTP_LLM_ROUTE_NONE         0   /* not routed (llm_route off) */
#define NGX_HTTP_LLM_ROUTE_SIDECAR      1   /* fresh decision */
#define NGX_HTTP_LLM_ROUTE_CACHED       2   /* from the decision cache */
#define NGX_HTTP_LLM_ROUTE_FAILOPEN     3   /* static route, sidecar failed */
#define NGX_HTTP_LLM_ROUTE_DENIED       4   /* deny answered */


/*
 * The outcome of one call: the HTTP status (> 0), or NGX_ERROR for a
 * connect, I/O or protocol failure, or NGX_ETIMEDOUT. The body lives in
 * memory freed when the handler returns.
 */
typedef void (*ngx_http_llm_sidecar_handler_pt)(void *data, ngx_int_t status,
    ngx_str_t *body);

typedef struct ngx_http_llm_sidecar_call_s  ngx_http_llm_sidecar_call_t;


/* http{} level, a member of ngx_http_llm_main_conf_t */
typedef struct {
    ngx_addr_t                 *addr;           /* NULL: no sidecar */
    ngx_msec_t                  timeout;
    ngx_flag_t                  fail_closed;
    ngx_uint_t                  batch;          /* records per POST */
    ngx_uint_t                  keepalive;      /* idle connections */
    ngx_shm_zone_t             *spool;
    ngx_shm_zone_t             *decisions;
    ngx_int_t                   request_id_index;
    ngx_int_t                   upstream_addr_index;
    ngx_int_t                   cache_status_index;
} ngx_http_llm_sidecar_conf_t;


/* location level, a member of ngx_http_llm_loc_conf_t */
typedef struct {
    ngx_http_complex_value_t   *team;           /* llm_team, or NULL */
    ngx_str_t                   route;          /* llm_route static group */
    ngx_uint_t                  route_set;      /* llm_route seen */
} ngx_http_llm_sidecar_loc_conf_t;


/* per request, hangs off ngx_http_llm_ctx_t */
typedef struct {
    ngx_str_t                   upstream;       /* $llm_upstream */
    ngx_str_t                   served_model;   /* model sent upstream */
    ngx_str_t                   team;
    ngx_http_llm_sidecar_call_t *call;          /* route call in flight */
    uint64_t                    decision_key;
    ngx_uint_t                  route_status;   /* NGX_HTTP_LLM_ROUTE_* */
    struct ngx_http_llm_prompt_shape_s *shape;  /* Anthropic: the layout */
} ngx_http_llm_sidecar_ctx_t;


/* the client */
ngx_http_llm_sidecar_call_t *ngx_http_llm_sidecar_call(ngx_addr_t *addr,
    const char *path, ngx_str_t *body, ngx_msec_t timeout,
    ngx_http_llm_sidecar_handler_pt handler, void *data);
void ngx_http_llm_sidecar_cancel(ngx_http_llm_sidecar_call_t *call);

/* configuration */
char *ngx_http_llm_sidecar_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_route_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_sidecar_merge_conf(ngx_conf_t *cf,
    ngx_http_llm_sidecar_loc_conf_t *prev,
    ngx_http_llm_sidecar_loc_conf_t *conf);
ngx_int_t ngx_http_llm_sidecar_add_variables(ngx_conf_t *cf);

/* per worker: the spool delivery timer */
ngx_int_t ngx_http_llm_sidecar_init_process(ngx_cycle_t *cycle);

/* master exit: logs what the spool still holds (lost) or that it is empty */
void ngx_http_llm_sidecar_exit_master(ngx_cycle_t *cycle);

/* log phase: one usage record per finished inspected request */
void ngx_http_llm_sidecar_record(ngx_http_request_t *r);

/* llm_metrics: the usage spool families; NULL on error */
ngx_chain_t **ngx_http_llm_sidecar_metrics(ngx_http_request_t *r,
    ngx_chain_t **ll, off_t *len);

/* s as a JSON string, quotes included; returns last when it does not fit */
u_char *ngx_http_llm_sidecar_json_str(u_char *p, u_char *last, ngx_str_t *s);

/* 0 for a while after a failed exchange: route requests fail open at once */
ngx_uint_t ngx_http_llm_sidecar_available(void);

/* counts one event of the link (NGX_HTTP_LLM_LINK_*) for llm_metrics */
void ngx_http_llm_sidecar_count(ngx_uint_t counter);

/*
 * failures of the link, logged once per interval per worker: at "warn"
 * while requests are served and records kept (fail-open, spooled), at
 * "error" when requests are refused (fail=closed)
 */
const char *ngx_http_llm_sidecar_strerror(ngx_int_t status);
void ngx_http_llm_sidecar_log_failure(ngx_http_llm_sidecar_conf_t *scf,
    ngx_uint_t level, const char *what, ngx_int_t status, const char *then);

/* routing (ngx_http_llm_route.c): the decision cache zone, the ctx */
ngx_int_t ngx_http_llm_route_init_zone(ngx_shm_zone_t *shm_zone, void *data);
void *ngx_http_llm_route_zone_data(ngx_conf_t *cf);
ngx_http_llm_sidecar_ctx_t *ngx_http_llm_link_ctx(ngx_http_request_t *r);


#endif /* _NGX_HTTP_LLM_SIDECAR_H_INCLUDED_ */
