
/*
 * Copyright (C) ngx_llm authors
 *
 * Fallback chain: when a whole upstream group fails (nginx's own 502 /
 * 504, or an upstream 429 / 5xx answer before any byte reached the
 * client), the request moves to the named location of llm_fallback (its
 * own upstream group, another model), up to four hops; when the last one
 * fails too, to a stale cache entry (llm_fallback_stale), then to a
 * configured answer (llm_fallback_template). $llm_tier and the
 * x-llm-fallback header tell which tier answered.
 */


#ifndef _NGX_HTTP_LLM_FALLBACK_H_INCLUDED_
#define _NGX_HTTP_LLM_FALLBACK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* ctx->fb.tier, $llm_tier */
#define NGX_HTTP_LLM_TIER_PRIMARY       0
#define NGX_HTTP_LLM_TIER_FALLBACK      1
#define NGX_HTTP_LLM_TIER_STALE         2
#define NGX_HTTP_LLM_TIER_TEMPLATE      3
#define NGX_HTTP_LLM_TIER_CACHE         4   /* a cache hit, from ctx */

#define NGX_HTTP_LLM_FALLBACK_MAX_HOPS  4


/* a member of ngx_http_llm_loc_conf_t */
typedef struct {
    ngx_str_t                   name;           /* "@name", or empty */
    ngx_str_t                   model;          /* model=, or empty */
    void                      **target;         /* loc_conf of @name */
    u_char                     *file;           /* of the directive */
    ngx_uint_t                  line;
    ngx_flag_t                  stale;          /* llm_fallback_stale */
    ngx_str_t                   text;           /* JSON-escaped template */
    ngx_uint_t                  status;         /* of the template */
    unsigned                    template_set:1;
} ngx_http_llm_fallback_conf_t;


/* a member of ngx_http_llm_ctx_t: survives the internal redirects */
typedef struct {
    void                       *from;           /* llcf of the location */
    ngx_chain_t                *out;            /* template answer */
    ngx_uint_t                  hops;
    ngx_uint_t                  status;         /* upstream status caught */
    unsigned                    tier:3;
    unsigned                    intercepted:1;  /* status turned into 502 */
    unsigned                    sent:1;         /* out went */
} ngx_http_llm_fallback_ctx_t;


/* directives */
char *ngx_http_llm_fallback_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_fallback_template_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);

void ngx_http_llm_fallback_create_conf(ngx_http_llm_fallback_conf_t *conf);
char *ngx_http_llm_fallback_merge_conf(ngx_conf_t *cf,
    ngx_http_llm_fallback_conf_t *prev, ngx_http_llm_fallback_conf_t *conf);

/* postconfiguration: named locations resolved, loops rejected */
ngx_int_t ngx_http_llm_fallback_init(ngx_conf_t *cf);

/* $llm_tier */
ngx_int_t ngx_http_llm_tier_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#endif /* _NGX_HTTP_LLM_FALLBACK_H_INCLUDED_ */
