
/*
 * Copyright (C) ngx_llm authors
 *
 * $llm_* variables for log_format, map, proxy_set_header and friends.
 * Usage figures are settled when first read, so they are final in the
 * access log.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"

#if (NGX_LINUX)
#include <sys/random.h>
#endif


#define NGX_HTTP_LLM_VAR_PROMPT         0
#define NGX_HTTP_LLM_VAR_COMPLETION     1
#define NGX_HTTP_LLM_VAR_CACHED         2
#define NGX_HTTP_LLM_VAR_CACHE_WRITE    3
#define NGX_HTTP_LLM_VAR_REASONING      4
#define NGX_HTTP_LLM_VAR_TOTAL          5

#define NGX_HTTP_LLM_VAR_TTFT           0
#define NGX_HTTP_LLM_VAR_TIME           1

#define NGX_HTTP_LLM_VAR_ESTIMATE       0
#define NGX_HTTP_LLM_VAR_MAX_TOKENS     1
#define NGX_HTTP_LLM_VAR_EVENTS         2
#define NGX_HTTP_LLM_VAR_MESSAGES       3


static ngx_int_t ngx_http_llm_var_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_stream(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_api(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_tokens(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_number(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_time(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_usage_source(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_outcome(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_hash(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_request_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_var_set(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, u_char *data, size_t len);


static ngx_http_variable_t  ngx_http_llm_vars[] = {

    { ngx_string("llm_api"), NULL, ngx_http_llm_var_api, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_model"), NULL, ngx_http_llm_var_str,
      offsetof(ngx_http_llm_ctx_t, model), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_key_hash"), NULL, ngx_http_llm_var_str,
      offsetof(ngx_http_llm_ctx_t, key_hash), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_stream"), NULL, ngx_http_llm_var_stream, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_prompt_tokens"), NULL, ngx_http_llm_var_tokens,
      NGX_HTTP_LLM_VAR_PROMPT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_completion_tokens"), NULL, ngx_http_llm_var_tokens,
      NGX_HTTP_LLM_VAR_COMPLETION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_cached_tokens"), NULL, ngx_http_llm_var_tokens,
      NGX_HTTP_LLM_VAR_CACHED, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_cache_write_tokens"), NULL, ngx_http_llm_var_tokens,
      NGX_HTTP_LLM_VAR_CACHE_WRITE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_reasoning_tokens"), NULL, ngx_http_llm_var_tokens,
      NGX_HTTP_LLM_VAR_REASONING, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_total_tokens"), NULL, ngx_http_llm_var_tokens,
      NGX_HTTP_LLM_VAR_TOTAL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_prompt_tokens_estimate"), NULL,
      ngx_http_llm_var_number, NGX_HTTP_LLM_VAR_ESTIMATE,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_max_tokens"), NULL, ngx_http_llm_var_number,
      NGX_HTTP_LLM_VAR_MAX_TOKENS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_events"), NULL, ngx_http_llm_var_number,
      NGX_HTTP_LLM_VAR_EVENTS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_messages"), NULL, ngx_http_llm_var_number,
      NGX_HTTP_LLM_VAR_MESSAGES, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_usage_source"), NULL, ngx_http_llm_var_usage_source,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_outcome"), NULL, ngx_http_llm_var_outcome, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_ttft"), NULL, ngx_http_llm_var_time,
      NGX_HTTP_LLM_VAR_TTFT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_time"), NULL, ngx_http_llm_var_time,
      NGX_HTTP_LLM_VAR_TIME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_request_hash"), NULL, ngx_http_llm_var_hash, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_prefix_hash"), NULL, ngx_http_llm_var_hash, 1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_upstream_peer"), NULL, ngx_http_llm_balancer_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_balance_wait"), NULL,
      ngx_http_llm_balancer_wait_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_retries"), NULL, ngx_http_llm_retry_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_tier"), NULL, ngx_http_llm_tier_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    /* cacheable: one id per request, whoever reads it first */
    { ngx_string("llm_request_id"), NULL, ngx_http_llm_var_request_id, 0,
      0, 0 },

      ngx_http_null_variable
};


/*
 * $llm_request_id: 32 hex digits, a random prefix drawn once per worker
 * (16 digits) and the worker's request counter (16 digits). Unique across
 * workers and restarts as a random $request_id is, without a call into
 * the random generator per request.
 */

static u_char    ngx_http_llm_request_id_prefix[16];
static uint64_t  ngx_http_llm_request_id_seq;


ngx_int_t
ngx_http_llm_request_id_init(ngx_cycle_t *cycle)
{
    uint64_t  seed;

    seed = 0;

#if (NGX_LINUX)
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t) sizeof(seed)) {
        seed = 0;
    }
#endif

    if (seed == 0) {
        seed = ((uint64_t) ngx_random() << 40)
               ^ ((uint64_t) ngx_random() << 20) ^ (uint64_t) ngx_random()
               ^ ((uint64_t) ngx_pid << 32) ^ (uint64_t) ngx_time()
               ^ (uint64_t) ngx_current_msec << 16;
    }

    (void) ngx_hex_dump(ngx_http_llm_request_id_prefix, (u_char *) &seed,
                        sizeof(seed));

    ngx_http_llm_request_id_seq = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_var_request_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char      *p;
    uint64_t     n;
    ngx_uint_t   i;

    static u_char  hex[] = "0123456789abcdef";

    p = ngx_pnalloc(r->pool, 32);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, ngx_http_llm_request_id_prefix, 16);

    n = ++ngx_http_llm_request_id_seq;

    for (i = 32; i > 16; i--) {
        p[i - 1] = hex[n & 0xf];
        n >>= 4;
    }

    v->data = p;
    v->len = 32;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


ngx_int_t
ngx_http_llm_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_llm_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_var_set(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    u_char *data, size_t len)
{
    v->data = data;
    v->len = len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_http_llm_ctx_t *
ngx_http_llm_var_ctx(ngx_http_request_t *r, ngx_http_variable_value_t *v)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL || !ctx->inspected) {
        v->not_found = 1;
        return NULL;
    }

    return ctx;
}


static ngx_int_t
ngx_http_llm_var_str(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t           *s;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((char *) ctx + data);

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    return ngx_http_llm_var_set(r, v, s->data, s->len);
}


static ngx_int_t
ngx_http_llm_var_api(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    const char          *name;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    name = ngx_http_llm_api_name(ctx->api);

    return ngx_http_llm_var_set(r, v, (u_char *) name, ngx_strlen(name));
}


static ngx_int_t
ngx_http_llm_var_stream(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_var_ctx(r, v);

    if (ctx == NULL) {
        return NGX_OK;
    }

    return ngx_http_llm_var_set(r, v,
                                (u_char *) (ctx->req.stream == 1 ? "1" : "0"),
                                1);
}


static ngx_int_t
ngx_http_llm_var_tokens(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char                *p;
    int64_t                n;
    ngx_http_llm_ctx_t    *ctx;
    ngx_http_llm_usage_t  *u;

    ctx = ngx_http_llm_var_ctx(r, v);

    if (ctx == NULL) {
        return NGX_OK;
    }

    ngx_http_llm_usage_settle(r, ctx);

    if (ctx->usage_source == NGX_HTTP_LLM_USAGE_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    u = &ctx->usage;

    switch (data) {
    case NGX_HTTP_LLM_VAR_PROMPT:
        n = u->prompt_tokens;
        break;
    case NGX_HTTP_LLM_VAR_COMPLETION:
        n = u->completion_tokens;
        break;
    case NGX_HTTP_LLM_VAR_CACHED:
        n = u->cached_tokens;
        break;
    case NGX_HTTP_LLM_VAR_CACHE_WRITE:
        n = u->cache_write_tokens;
        break;
    case NGX_HTTP_LLM_VAR_REASONING:
        n = u->reasoning_tokens;
        break;
    default: /* NGX_HTTP_LLM_VAR_TOTAL */
        n = ngx_max(u->prompt_tokens, 0) + ngx_max(u->completion_tokens, 0);
        break;
    }

    if (n < 0) {
        n = 0;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_llm_var_set(r, v, p, ngx_sprintf(p, "%L", n) - p);
}


static ngx_int_t
ngx_http_llm_var_number(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char              *p;
    int64_t              n;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_var_ctx(r, v);

    if (ctx == NULL) {
        return NGX_OK;
    }

    switch (data) {
    case NGX_HTTP_LLM_VAR_ESTIMATE:
        n = (int64_t) ctx->req.prompt_tokens;
        break;
    case NGX_HTTP_LLM_VAR_MAX_TOKENS:
        n = ctx->req.max_tokens;
        break;
    case NGX_HTTP_LLM_VAR_EVENTS:
        n = (int64_t) ctx->events;
        break;
    default: /* NGX_HTTP_LLM_VAR_MESSAGES */
        n = (int64_t) ctx->req.messages;
        break;
    }

    if (n < 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_llm_var_set(r, v, p, ngx_sprintf(p, "%L", n) - p);
}


static ngx_int_t
ngx_http_llm_var_time(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char              *p;
    ngx_msec_t           at;
    ngx_msec_int_t       ms;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_var_ctx(r, v);

    if (ctx == NULL) {
        return NGX_OK;
    }

    if (data == NGX_HTTP_LLM_VAR_TTFT) {
        if (!ctx->got_content) {
            v->not_found = 1;
            return NGX_OK;
        }

        at = ctx->ttft;

    } else {
        ngx_http_llm_usage_settle(r, ctx);
        at = ctx->end;
    }

    ms = (ngx_msec_int_t) (at - ctx->start);
    ms = ngx_max(ms, 0);

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_llm_var_set(r, v, p,
                                ngx_sprintf(p, "%T.%03M",
                                            (time_t) ms / 1000, ms % 1000)
                                - p);
}


static ngx_int_t
ngx_http_llm_var_usage_source(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_var_ctx(r, v);

    if (ctx == NULL) {
        return NGX_OK;
    }

    ngx_http_llm_usage_settle(r, ctx);

    switch (ctx->usage_source) {
    case NGX_HTTP_LLM_USAGE_UPSTREAM:
        return ngx_http_llm_var_set(r, v, (u_char *) "upstream", 8);
    case NGX_HTTP_LLM_USAGE_ESTIMATED:
        return ngx_http_llm_var_set(r, v, (u_char *) "estimated", 9);
    default:
        v->not_found = 1;
        return NGX_OK;
    }
}


static ngx_int_t
ngx_http_llm_var_outcome(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t           *s;
    ngx_http_llm_ctx_t  *ctx;

    static ngx_str_t  outcomes[] = {
        ngx_string("none"),
        ngx_string("complete"),
        ngx_string("incomplete"),
        ngx_string("aborted"),
        ngx_string("error"),
        ngx_string("rejected")
    };

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_llm_usage_settle(r, ctx);

    s = &outcomes[ctx->outcome];

    return ngx_http_llm_var_set(r, v, s->data, s->len);
}


static ngx_int_t
ngx_http_llm_var_hash(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char              *p;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_var_ctx(r, v);

    if (ctx == NULL) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, 32);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (data == 0) {
        ngx_sprintf(p, "%016uxL%016uxL", ctx->req.hash[0], ctx->req.hash[1]);
        return ngx_http_llm_var_set(r, v, p, 32);
    }

    ngx_sprintf(p, "%016uxL", ctx->req.prefix_hash);

    return ngx_http_llm_var_set(r, v, p, 16);
}
