
/*
 * Copyright (C) ngx_llm authors
 *
 * LLM-aware balancers in upstream{}: llm_balance least_tokens | peak_ewma |
 * prefix. The arithmetic is in ngx_http_llm_pick.c.
 */


#ifndef _NGX_HTTP_LLM_BALANCER_H_INCLUDED_
#define _NGX_HTTP_LLM_BALANCER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_pick.h"


#define NGX_HTTP_LLM_BALANCE_TOKENS     1
#define NGX_HTTP_LLM_BALANCE_EWMA       2
#define NGX_HTTP_LLM_BALANCE_PREFIX     3


typedef struct ngx_http_llm_balancer_conf_s  ngx_http_llm_balancer_conf_t;
typedef struct ngx_http_llm_balancer_pd_s    ngx_http_llm_balancer_pd_t;


/* per client request, in the module's request ctx (ctx->bal) */
typedef struct {
    uint64_t                        tried;      /* bit i: ordinal i picked */
    ngx_http_llm_balancer_conf_t   *conf;       /* group of the last pick */
    void                           *peers;      /* its rr peers */
    void                           *peer;       /* the last picked peer */
    ngx_uint_t                      ordinal;    /* of the last picked peer */
    ngx_str_t                       name;       /* of the last picked peer */
    ngx_http_llm_balancer_pd_t     *pd;         /* attempt in progress */
    ngx_uint_t                      picks;      /* attempts so far */

    /* prefix wait=: the hold before the upstream is connected */
    ngx_http_llm_balancer_conf_t   *wait_conf;
    ngx_http_llm_pick_peer_t       *wait_pick;  /* scratch, primary peers */
    uint64_t                        wait_key;
    ngx_msec_t                      wait_start;
    ngx_msec_t                      waited;     /* ms held */
    ngx_msec_t                      wait_max;   /* wait= or cold_wait= */
    ngx_queue_t                     wait_queue; /* in the group's held */
    ngx_http_request_t             *wait_r;
    ngx_uint_t                      wait_slot;  /* its home's node */
    ngx_atomic_uint_t               wait_seen;  /* changes at the check */
    ngx_msec_t                      wait_checked; /* when */
    ngx_uint_t                      wake_chain; /* woken: checks left */

    unsigned                        picked:1;   /* the fields above valid */
    unsigned                        first:1;    /* first token accounted */
    unsigned                        held:1;     /* wait= held it */
    unsigned                        waiting:1;  /* held now */
    unsigned                        queued:1;   /* in wait_queue */
} ngx_http_llm_balancer_ctx_t;


/* upstream{} configuration: create (module ctx) and the directive */
void *ngx_http_llm_balancer_create_srv_conf(ngx_conf_t *cf);
char *ngx_http_llm_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/*
 * prefix wait=: at merge time, whether a location may hold requests (the
 * only cost of the feature elsewhere: one flag test per request); at run
 * time, after routing, NGX_AGAIN when the request is held (a timer runs
 * the phases again), else NGX_DECLINED
 */
ngx_flag_t ngx_http_llm_balancer_wait_conf(ngx_conf_t *cf);
ngx_int_t ngx_http_llm_balancer_hold(ngx_http_request_t *r, void *ctx);

/*
 * a pre-first-token failure the module saw after a 200 header: counts as a
 * failure of the last picked peer (max_fails / fail_timeout); cooldown > 0
 * also keeps it out of rotation for that many seconds
 */
void ngx_http_llm_balancer_peer_failed(ngx_http_request_t *r,
    time_t cooldown);

/* stream progress (sse.c, on content events): releases served tokens and
 * feeds the TTFT into the peak EWMA at the first content event */
void ngx_http_llm_balancer_progress(ngx_http_request_t *r);

/* llm_metrics: appends the balancer families; NULL on error */
ngx_chain_t **ngx_http_llm_balancer_metrics(ngx_http_request_t *r,
    ngx_chain_t **ll, off_t *len);

/* $llm_upstream_peer */
ngx_int_t ngx_http_llm_balancer_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

/* $llm_balance_wait */
ngx_int_t ngx_http_llm_balancer_wait_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#endif /* _NGX_HTTP_LLM_BALANCER_H_INCLUDED_ */
