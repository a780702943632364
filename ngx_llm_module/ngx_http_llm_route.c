
/*
 * Copyright (C) ngx_llm authors
 *
 * Routing on the request path: after inspection and rate limit admission
 * the sidecar is asked for a decision (POST /v1/route) without blocking
 * the worker; decisions are cached in shared memory for the ttl_ms the
 * sidecar gives, keyed by what they depend on. A slow, dead or garbled
 * sidecar costs at most the timeout, and the request then takes the static
 * route of llm_route (fail-open) or is refused (fail=closed).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"
#include "ngx_http_llm_json.h"


#define NGX_HTTP_LLM_ROUTE_ANSWER_MAX   4096
#define NGX_HTTP_LLM_ROUTE_MAX_EDITS    16

/* Anthropic accepts at most 4 cache_control breakpoints per request */
#define NGX_HTTP_LLM_BREAKPOINTS_MAX    4
/* client breakpoints whose positions go to the sidecar */
#define NGX_HTTP_LLM_SHAPE_PATHS        8

/* the top-level fields a breakpoint can be in */
#define NGX_HTTP_LLM_BP_SYSTEM          1
#define NGX_HTTP_LLM_BP_TOOLS           2
#define NGX_HTTP_LLM_BP_MESSAGES        3

#define NGX_HTTP_LLM_CACHE_CONTROL                                            \
    "\"cache_control\":{\"type\":\"ephemeral\"}"


/*
 * A position in an Anthropic body: field, message index (-1 for system
 * and tools), block index in the content array (-1: the field itself, a
 * plain string). "/messages/3/content/1" is { MESSAGES, 3, 1 }.
 */
typedef struct {
    int32_t                         field;
    int32_t                         index;
    int32_t                         block;
} ngx_http_llm_bp_t;


/* what the sidecar needs to place breakpoints (its prompt_shape) */
struct ngx_http_llm_prompt_shape_s {
    int64_t                         tools_count;
    int64_t                         tools_tokens;
    int64_t                         system_blocks;
    int64_t                         system_tokens;
    int64_t                         last_user_index;
    int64_t                         last_user_blocks;
    int64_t                         client_breakpoints;
    ngx_uint_t                      npaths;
    ngx_http_llm_bp_t               paths[NGX_HTTP_LLM_SHAPE_PATHS];
};

typedef struct ngx_http_llm_prompt_shape_s  ngx_http_llm_prompt_shape_t;


/* a parsed decision */
typedef struct {
    ngx_str_t                       action;
    ngx_str_t                       code;
    ngx_str_t                       reason;
    ngx_str_t                       upstream;
    ngx_str_t                       model;
    ngx_str_t                       prompt_cache_key;
    int64_t                         max_tokens_cap;
    int64_t                         ttl_ms;
    ngx_uint_t                      nbp;
    ngx_http_llm_bp_t               bp[NGX_HTTP_LLM_BREAKPOINTS_MAX];
} ngx_http_llm_decision_t;


typedef struct {
    ngx_rbtree_node_t               node;       /* key: decision key */
    ngx_queue_t                     queue;      /* LRU */
    uint64_t                        key;
    ngx_msec_t                      expire;
    size_t                          len;
    /* parsed once when stored: strings as offsets into data */
    ngx_http_llm_decision_t         decision;
    u_char                          data[1];    /* the sidecar's answer */
} ngx_http_llm_route_node_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     queue;
} ngx_http_llm_route_shctx_t;


typedef struct {
    ngx_http_llm_route_shctx_t     *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_llm_route_zone_t;


/* what a decision depends on besides the caller and the model */
typedef struct {
    uint64_t                        prefix_hash;
    uint32_t                        api;
    uint32_t                        prompt_bits;
    uint32_t                        max_tokens_bits;
    uint8_t                         stream;
    uint8_t                         tools;
    uint8_t                         images;
    uint8_t                         json_mode;
    uint64_t                        shape;      /* Anthropic prompt shape */
} ngx_http_llm_req_class_t;


/* one replacement in the forwarded body */
typedef struct {
    size_t                          start;
    size_t                          end;
    ngx_str_t                       text;
} ngx_http_llm_edit_t;


static uint64_t ngx_http_llm_route_key(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_sidecar_ctx_t *link);
static ngx_int_t ngx_http_llm_route_lookup(ngx_http_request_t *r,
    ngx_shm_zone_t *zone, uint64_t key, ngx_http_llm_decision_t *d);
static void ngx_http_llm_route_store(ngx_shm_zone_t *zone, uint64_t key,
    ngx_msec_t ttl, ngx_str_t *answer, ngx_http_llm_decision_t *d);
static void ngx_http_llm_decision_rebase(ngx_http_llm_decision_t *d,
    u_char *from, u_char *to);
static ngx_int_t ngx_http_llm_route_request(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_str_t *body);
static void ngx_http_llm_route_done(void *data, ngx_int_t status,
    ngx_str_t *body);
static void ngx_http_llm_route_cleanup(void *data);
static ngx_int_t ngx_http_llm_route_parse(ngx_str_t *answer,
    ngx_http_llm_decision_t *d);
static ngx_int_t ngx_http_llm_route_fail(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_int_t status, const char *what);
static ngx_int_t ngx_http_llm_route_apply(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_decision_t *d);
static ngx_int_t ngx_http_llm_route_deny(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_decision_t *d);
static ngx_int_t ngx_http_llm_route_edit_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_decision_t *d);
static ngx_http_llm_prompt_shape_t *ngx_http_llm_route_shape(
    ngx_http_request_t *r);
static int ngx_http_llm_shape_blocks(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_prompt_shape_t *shape, int32_t field, int32_t index);
static int ngx_http_llm_shape_nested(ngx_http_llm_json_cur_t *cur,
    int64_t *count);
static u_char *ngx_http_llm_bp_print(u_char *p, u_char *last,
    ngx_http_llm_bp_t *bp);
static ngx_int_t ngx_http_llm_bp_parse(ngx_http_llm_json_str_t *s,
    ngx_http_llm_bp_t *bp);
static int ngx_http_llm_route_mark_field(ngx_http_llm_json_cur_t *cur,
    const u_char *body, ngx_http_llm_decision_t *d, int32_t field,
    ngx_http_llm_edit_t *edits, ngx_uint_t *n, ngx_uint_t *left);
static int ngx_http_llm_route_mark_content(ngx_http_llm_json_cur_t *cur,
    const u_char *body, ngx_http_llm_decision_t *d, int32_t field,
    int32_t index, ngx_http_llm_edit_t *edits, ngx_uint_t *n,
    ngx_uint_t *left);
static int ngx_http_llm_route_mark_block(ngx_http_llm_json_cur_t *cur,
    const u_char *body, ngx_http_llm_edit_t *edits, ngx_uint_t *n);
static ngx_int_t ngx_http_llm_upstream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_route_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_llm_served_model_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_str_t  ngx_http_llm_route_statuses[] = {
    ngx_string(""),
    ngx_string("SIDECAR"),
    ngx_string("CACHED"),
    ngx_string("FAILOPEN"),
    ngx_string("DENIED")
};


static ngx_http_variable_t  ngx_http_llm_route_vars[] = {

    { ngx_string("llm_upstream"), NULL, ngx_http_llm_upstream_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_route_status"), NULL,
      ngx_http_llm_route_status_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("llm_served_model"), NULL,
      ngx_http_llm_served_model_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_http_llm_sidecar_ctx_t *
ngx_http_llm_link_ctx(ngx_http_request_t *r)
{
    ngx_http_llm_ctx_t          *ctx;
    ngx_http_llm_loc_conf_t     *llcf;
    ngx_http_llm_sidecar_ctx_t  *link;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL) {
        return NULL;
    }

    if (ctx->link) {
        return ctx->link;
    }

    link = ngx_pcalloc(r->pool, sizeof(ngx_http_llm_sidecar_ctx_t));
    if (link == NULL) {
        return NULL;
    }

    llcf = ngx_http_get_module_loc_conf(r->main, ngx_http_llm_module);

    if (llcf->link.team
        && ngx_http_complex_value(r->main, llcf->link.team, &link->team)
           != NGX_OK)
    {
        return NULL;
    }

    link->upstream = llcf->link.route;
    ctx->link = link;

    return link;
}


/*
 * NGX_DECLINED: go on (routed, cached, or fail-open); NGX_AGAIN: waiting
 * for the sidecar, the request continues in ngx_http_llm_body_resume();
 * otherwise a status for ngx_http_finalize_request() (deny, fail-closed).
 */

ngx_int_t
ngx_http_llm_route(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_str_t                     body;
    ngx_pool_cleanup_t           *cln;
    ngx_http_llm_decision_t       d;
    ngx_http_llm_loc_conf_t      *llcf;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_sidecar_ctx_t   *link;
    ngx_http_llm_sidecar_call_t  *call;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);
    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_module);

    if (llcf->link.route.len == 0 || lmcf->sidecar.addr == NULL) {
        return NGX_DECLINED;
    }

    link = ngx_http_llm_link_ctx(r);
    if (link == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (NGX_HTTP_LLM_IS_ANTHROPIC(ctx->api) && link->shape == NULL) {
        /* NULL when the body cannot be walked: no breakpoints then */
        link->shape = ngx_http_llm_route_shape(r);
    }

    link->decision_key = ngx_http_llm_route_key(ctx, link);

    if (ngx_http_llm_route_lookup(r, lmcf->sidecar.decisions,
                                  link->decision_key, &d)
        == NGX_OK)
    {
        link->route_status = NGX_HTTP_LLM_ROUTE_CACHED;
        ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_DECISION_CACHE);
        return ngx_http_llm_route_apply(r, ctx, &d);
    }

    if (!ngx_http_llm_sidecar_available()) {
        /* the sidecar failed a moment ago: no call, the static route */
        return ngx_http_llm_route_fail(r, ctx, NGX_ERROR, "route");
    }

    if (ngx_http_llm_route_request(r, ctx, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_ROUTE_CALL);

    call = ngx_http_llm_sidecar_call(lmcf->sidecar.addr, "/v1/route", &body,
                                     lmcf->sidecar.timeout,
                                     ngx_http_llm_route_done, r);

    if (call == NULL) {
        ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_ROUTE_ERROR);
        return ngx_http_llm_route_fail(r, ctx, NGX_ERROR, "route");
    }

    link->call = call;
    cln->handler = ngx_http_llm_route_cleanup;
    cln->data = link;

    return NGX_AGAIN;
}


static void
ngx_http_llm_route_cleanup(void *data)
{
    ngx_http_llm_sidecar_ctx_t  *link = data;

    /* the request went away while its decision was on the way */

    if (link->call) {
        ngx_http_llm_sidecar_cancel(link->call);
        link->call = NULL;
    }
}


static void
ngx_http_llm_route_done(void *data, ngx_int_t status, ngx_str_t *body)
{
    ngx_http_request_t  *r = data;

    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_decision_t    d;
    ngx_http_llm_main_conf_t  *lmcf;

    c = r->connection;
    ctx = ngx_http_llm_get_ctx(r);
    ctx->link->call = NULL;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_module);

    if (status != NGX_HTTP_OK) {
        ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_ROUTE_ERROR);
        rc = ngx_http_llm_route_fail(r, ctx, status, "route");

    } else if (body->len > NGX_HTTP_LLM_ROUTE_ANSWER_MAX
               || ngx_http_llm_route_parse(body, &d) != NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "llm route: answer not understood: \"%V\"", body);

        ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_ROUTE_ERROR);
        rc = ngx_http_llm_route_fail(r, ctx, NGX_ERROR, "route answer");

    } else {
        if (d.ttl_ms > 0) {
            ngx_http_llm_route_store(lmcf->sidecar.decisions,
                                     ctx->link->decision_key,
                                     (ngx_msec_t) d.ttl_ms, body, &d);
        }

        ctx->link->route_status = NGX_HTTP_LLM_ROUTE_SIDECAR;
        ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_DECISION_SIDECAR);
        rc = ngx_http_llm_route_apply(r, ctx, &d);
    }

    ngx_http_llm_body_resume(r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_llm_route_fail(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_int_t status, const char *what)
{
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_module);

    if (lmcf->sidecar.fail_closed) {
        ngx_http_llm_sidecar_log_failure(&lmcf->sidecar, NGX_LOG_ERR, what,
                                         status,
                                         "requests refused with 503 "
                                         "(fail=closed)");

        ctx->link->route_status = NGX_HTTP_LLM_ROUTE_DENIED;
        ctx->outcome = NGX_HTTP_LLM_OUTCOME_REJECTED;

        return ngx_http_llm_send_error(r, ctx->api,
                   NGX_HTTP_SERVICE_UNAVAILABLE, "api_error",
                   "routing_unavailable", NULL,
                   "The gateway cannot route the request now, "
                   "retry later");
    }

    ngx_http_llm_sidecar_log_failure(&lmcf->sidecar, NGX_LOG_WARN, what,
                                     status,
                                     "requests take the static llm_route "
                                     "(fail-open)");

    ctx->link->route_status = NGX_HTTP_LLM_ROUTE_FAILOPEN;
    ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_DECISION_FALLBACK);

    return NGX_DECLINED;
}


/* the decision depends on the caller, the model and the request's class */

static uint64_t
ngx_http_llm_route_key(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_sidecar_ctx_t *link)
{
    uint64_t                   h;
    XXH3_state_t               st;
    ngx_http_llm_req_class_t   cls;

    ngx_memzero(&cls, sizeof(cls));

    cls.api = ctx->api;
    cls.stream = ctx->req.stream == 1;
    cls.tools = ctx->req.tools > 0;
    cls.images = ctx->req.images > 0;
    cls.json_mode = ctx->req.json_mode > 0;
    /* sizes by power of two: a decision fits the requests of its bucket */
    cls.prompt_bits = 64 - (ctx->req.prompt_tokens
                            ? __builtin_clzll(ctx->req.prompt_tokens) : 64);
    cls.max_tokens_bits = ctx->req.max_tokens > 0
                          ? 64 - __builtin_clzll(ctx->req.max_tokens) : 0;
    cls.prefix_hash = ctx->req.prefix_hash;

    /* breakpoints are positions: they hold for bodies of the same layout */
    if (link->shape) {
        cls.shape = XXH3_64bits(link->shape,
                                sizeof(ngx_http_llm_prompt_shape_t));
    }

    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, ctx->key_hash.data, ctx->key_hash.len);
    XXH3_64bits_update(&st, "\0", 1);
    XXH3_64bits_update(&st, link->team.data, link->team.len);
    XXH3_64bits_update(&st, "\0", 1);
    XXH3_64bits_update(&st, ctx->model.data, ctx->model.len);
    XXH3_64bits_update(&st, "\0", 1);
    XXH3_64bits_update(&st, &cls, sizeof(cls));
    h = XXH3_64bits_digest(&st);

    return h;
}


static ngx_int_t
ngx_http_llm_route_request(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_str_t *body)
{
    size_t                        size;
    u_char                       *p, *last;
    ngx_uint_t                    i;
    ngx_http_llm_prompt_shape_t  *sh;
    ngx_http_llm_sidecar_ctx_t   *link;

    link = ctx->link;
    sh = link->shape;

    /* model and team: the model is JSON text already, the team escaped */

    size = 512 + ctx->model.len + 6 * link->team.len
           + (sh ? 256 + NGX_HTTP_LLM_SHAPE_PATHS * 48 : 0);

    body->data = ngx_pnalloc(r->pool, size);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = body->data;
    last = p + size;

    p = ngx_slprintf(p, last, "{\"key_hash\":\"%V\",\"team\":",
                     &ctx->key_hash);
    p = ngx_http_llm_sidecar_json_str(p, last, &link->team);

    p = ngx_slprintf(p, last,
                     ",\"model\":\"%V\",\"prompt_tokens\":%uL,",
                     &ctx->model, ctx->req.prompt_tokens);

    if (ctx->req.max_tokens >= 0) {
        p = ngx_slprintf(p, last, "\"max_tokens\":%L,", ctx->req.max_tokens);
    }

    if (sh) {
        p = ngx_slprintf(p, last,
                         "\"prompt_shape\":{\"tools_count\":%L,"
                         "\"tools_tokens\":%L,\"system_blocks\":%L,"
                         "\"system_tokens\":%L,\"last_user_index\":%L,"
                         "\"last_user_blocks\":%L,"
                         "\"client_breakpoints\":%L,\"client_paths\":[",
                         sh->tools_count, sh->tools_tokens,
                         sh->system_blocks, sh->system_tokens,
                         sh->last_user_index, sh->last_user_blocks,
                         sh->client_breakpoints);

        for (i = 0; i < sh->npaths; i++) {
            if (i) {
                p = ngx_slprintf(p, last, ",");
            }

            p = ngx_http_llm_bp_print(p, last, &sh->paths[i]);
        }

        p = ngx_slprintf(p, last, "]},");
    }

    p = ngx_slprintf(p, last,
                     "\"stream\":%s,\"features\":{\"tools\":%s,"
                     "\"images\":%s,\"json_mode\":%s},"
                     "\"prefix_hash\":\"%016xL\",\"messages\":%ui,"
                     "\"api\":\"%s\"}",
                     ctx->req.stream == 1 ? "true" : "false",
                     ctx->req.tools ? "true" : "false",
                     ctx->req.images ? "true" : "false",
                     ctx->req.json_mode > 0 ? "true" : "false",
                     ctx->req.prefix_hash, (ngx_uint_t) ctx->req.messages,
                     NGX_HTTP_LLM_IS_ANTHROPIC(ctx->api)
                     ? "anthropic" : "openai");

    body->len = p - body->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_route_parse(ngx_str_t *answer, ngx_http_llm_decision_t *d)
{
    int                       rc;
    unsigned                  first, pfirst, afirst;
    ngx_str_t                *s;
    ngx_http_llm_json_cur_t   cur;
    ngx_http_llm_json_str_t   key, str;

    ngx_memzero(d, sizeof(ngx_http_llm_decision_t));
    d->max_tokens_cap = -1;

    ngx_http_llm_json_cur_init(&cur, answer->data, answer->len);

    if (ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return NGX_ERROR;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(&cur, &first, &key)) == 1) {

        s = NULL;

        if (ngx_http_llm_json_str_eq(&key, "action", 6)) {
            s = &d->action;

        } else if (ngx_http_llm_json_str_eq(&key, "code", 4)) {
            s = &d->code;

        } else if (ngx_http_llm_json_str_eq(&key, "reason", 6)) {
            s = &d->reason;

        } else if (ngx_http_llm_json_str_eq(&key, "upstream", 8)) {
            s = &d->upstream;

        } else if (ngx_http_llm_json_str_eq(&key, "model", 5)) {
            s = &d->model;

        } else if (ngx_http_llm_json_str_eq(&key, "max_tokens_cap", 14)) {
            if (ngx_http_llm_json_get_int(&cur, &d->max_tokens_cap) < 0) {
                return NGX_ERROR;
            }

            continue;

        } else if (ngx_http_llm_json_str_eq(&key, "ttl_ms", 6)) {
            if (ngx_http_llm_json_get_int(&cur, &d->ttl_ms) < 0) {
                return NGX_ERROR;
            }

            continue;

        } else if (ngx_http_llm_json_str_eq(&key, "prompt_cache", 12)
                   && ngx_http_llm_json_peek(&cur) == NGX_HTTP_LLM_JSON_OBJECT)
        {
            (void) ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_OBJECT);
            pfirst = 1;

            while ((rc = ngx_http_llm_json_next(&cur, &pfirst, &key)) == 1) {
                if (ngx_http_llm_json_str_eq(&key, "prompt_cache_key", 16)
                    && ngx_http_llm_json_get_string(&cur, &str) == 1
                    && !str.escaped)
                {
                    d->prompt_cache_key.data = (u_char *) str.data;
                    d->prompt_cache_key.len = str.len;
                    continue;
                }

                if (ngx_http_llm_json_str_eq(&key, "breakpoints", 11)
                    && ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_ARRAY)
                       == 1)
                {
                    afirst = 1;

                    while ((rc = ngx_http_llm_json_next(&cur, &afirst, NULL))
                           == 1)
                    {
                        /* pointers not understood, and a fifth, are left */

                        rc = ngx_http_llm_json_get_string(&cur, &str);

                        if (rc < 0) {
                            return NGX_ERROR;
                        }

                        if (rc == 1
                            && d->nbp < NGX_HTTP_LLM_BREAKPOINTS_MAX
                            && ngx_http_llm_bp_parse(&str, &d->bp[d->nbp])
                               == NGX_OK)
                        {
                            d->nbp++;
                        }
                    }

                    if (rc < 0) {
                        return NGX_ERROR;
                    }

                    continue;
                }

                if (ngx_http_llm_json_skip(&cur) < 0) {
                    return NGX_ERROR;
                }
            }

            if (rc < 0) {
                return NGX_ERROR;
            }

            continue;
        }

        if (s == NULL) {
            if (ngx_http_llm_json_skip(&cur) < 0) {
                return NGX_ERROR;
            }

            continue;
        }

        /* strings are kept as JSON text (escapes and all) */

        if (ngx_http_llm_json_get_string(&cur, &str) < 0) {
            return NGX_ERROR;
        }

        s->data = (u_char *) str.data;
        s->len = str.len;
    }

    if (rc < 0) {
        return NGX_ERROR;
    }

    if (d->action.len == 5 && ngx_strncmp(d->action.data, "allow", 5) == 0) {
        return NGX_OK;
    }

    if (d->action.len == 4 && ngx_strncmp(d->action.data, "deny", 4) == 0) {
        return NGX_OK;
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_http_llm_route_apply(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_decision_t *d)
{
    ngx_uint_t                   i;
    ngx_http_llm_sidecar_ctx_t  *link;

    link = ctx->link;

    if (d->action.len == 4) {
        return ngx_http_llm_route_deny(r, ctx, d);
    }

    if (d->upstream.len) {
        for (i = 0; i < d->upstream.len; i++) {
            if (d->upstream.data[i] == '\\' || d->upstream.data[i] == '/') {
                return ngx_http_llm_route_fail(r, ctx, NGX_ERROR,
                                               "route answer");
            }
        }

        link->upstream.data = ngx_pstrdup(r->pool, &d->upstream);
        if (link->upstream.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        link->upstream.len = d->upstream.len;
    }

    if (ngx_http_llm_route_edit_body(r, ctx, d) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm route: upstream:\"%V\" model:\"%V\" (%V)",
                   &link->upstream, &link->served_model,
                   &ngx_http_llm_route_statuses[link->route_status]);

    return NGX_DECLINED;
}


/*
 * budget_exceeded answers 429 (OpenAI's insufficient_quota shape): the
 * client may retry when the budget window resets; context_length_exceeded
 * 400; model_not_allowed 403.
 */

static ngx_int_t
ngx_http_llm_route_deny(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_decision_t *d)
{
    u_char      *code;
    ngx_uint_t   status;
    const char  *type;

    ctx->link->route_status = NGX_HTTP_LLM_ROUTE_DENIED;
    ctx->outcome = NGX_HTTP_LLM_OUTCOME_REJECTED;

    code = ngx_pnalloc(r->pool, d->code.len + 1);
    if (code == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_cpystrn(code, d->code.data, d->code.len + 1);

    if (ngx_strcmp(code, "budget_exceeded") == 0) {
        status = NGX_HTTP_TOO_MANY_REQUESTS;
        type = "insufficient_quota";

    } else if (ngx_strcmp(code, "context_length_exceeded") == 0) {
        status = NGX_HTTP_BAD_REQUEST;
        type = "invalid_request_error";

    } else if (ngx_strcmp(code, "model_not_allowed") == 0) {
        status = NGX_HTTP_FORBIDDEN;
        type = "permission_error";

    } else {
        status = NGX_HTTP_FORBIDDEN;
        type = "permission_error";
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "llm route denied the request with %ui: %s",
                  status, code);

    return ngx_http_llm_send_error(r, ctx->api, status, type, (char *) code,
               NULL, "%V", &d->reason);
}


/*
 * llm_fallback model=: the body forwarded by a hop names that model, which
 * becomes the served model ($llm_served_model, the usage record). The
 * model is compared with what the body holds now, which an earlier hop
 * may have changed already.
 */

ngx_int_t
ngx_http_llm_route_set_model(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_str_t *model)
{
    ngx_int_t                 rc;
    ngx_str_t                 requested;
    ngx_http_llm_decision_t   d;

    if (ngx_http_llm_link_ctx(r) == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(&d, sizeof(ngx_http_llm_decision_t));
    d.model = *model;

    requested = ctx->model;

    if (ctx->link->served_model.len) {
        ctx->model = ctx->link->served_model;
    }

    rc = ngx_http_llm_route_edit_body(r, ctx, &d);

    ctx->model = requested;

    return rc;
}


/*
 * The forwarded body follows the decision: the model the sidecar chose,
 * max tokens no higher than its cap, and for OpenAI-style APIs its
 * prompt_cache_key unless the client set one. Located with one pass over
 * the top-level members of the body as it is now.
 */

static ngx_int_t
ngx_http_llm_route_edit_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_decision_t *d)
{
    int                        rc;
    size_t                     len, size, pos;
    u_char                    *body, *p, *q;
    int32_t                    field;
    int64_t                    v;
    unsigned                   first, has_pck;
    ngx_buf_t                 *b;
    ngx_uint_t                 n, i, left;
    ngx_chain_t               *cl;
    ngx_http_llm_edit_t        edits[NGX_HTTP_LLM_ROUTE_MAX_EDITS];
    ngx_http_llm_json_cur_t    cur;
    ngx_http_llm_json_str_t    key;

    if (d->model.len) {
        ctx->link->served_model.data = ngx_pstrdup(r->pool, &d->model);
        if (ctx->link->served_model.data == NULL) {
            return NGX_ERROR;
        }

        ctx->link->served_model.len = d->model.len;
    }

    if (ngx_http_llm_body_contiguous(r, &body, &len) != NGX_OK) {
        return NGX_ERROR;
    }

    n = 0;
    first = 1;
    has_pck = ctx->req.prompt_cache_key;

    /* breakpoints: Anthropic's limit counts those the client set */

    left = 0;

    if (d->nbp && NGX_HTTP_LLM_IS_ANTHROPIC(ctx->api) && ctx->link->shape) {
        left = NGX_HTTP_LLM_BREAKPOINTS_MAX
               - ngx_min(ctx->link->shape->client_breakpoints,
                         NGX_HTTP_LLM_BREAKPOINTS_MAX);
    }

    /*
     * the usual decision keeps the model, lowers no max_tokens (the
     * inspection read both spellings) and marks nothing: at most a
     * prompt_cache_key to add before the final '}', which the inspection
     * found, like any prompt_cache_key of the client; no second pass over
     * the body while it is the one inspected
     */

    if (left == 0
        && (d->max_tokens_cap <= 0
            || ctx->req.max_tokens_top <= d->max_tokens_cap)
        && (d->model.len == 0
            || (d->model.len == ctx->model.len
                && ngx_strncmp(d->model.data, ctx->model.data, d->model.len)
                   == 0))
        && !ctx->stream_injected
        && !ctx->body_routed
        && !ctx->req.object_empty
        && ctx->req.object_end < len
        && body[ctx->req.object_end] == '}')
    {
        cur.p = body + ctx->req.object_end + 1;
        rc = 0;
        goto add;
    }

    ngx_http_llm_json_cur_init(&cur, body, len);

    if (ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return NGX_ERROR;
    }

    while ((rc = ngx_http_llm_json_next(&cur, &first, &key)) == 1) {

        cur.p = ngx_http_llm_json_skip_ws(cur.p, cur.end);
        pos = cur.p - body;

        if (ngx_http_llm_json_str_eq(&key, "model", 5)
            && d->model.len
            && !(d->model.len == ctx->model.len
                 && ngx_strncmp(d->model.data, ctx->model.data,
                                d->model.len) == 0))
        {
            if (ngx_http_llm_json_skip(&cur) < 0) {
                return NGX_ERROR;
            }

            edits[n].start = pos;
            edits[n].end = cur.p - body;
            edits[n].text.len = d->model.len + 2;
            edits[n].text.data = ngx_pnalloc(r->pool, d->model.len + 2);
            if (edits[n].text.data == NULL) {
                return NGX_ERROR;
            }

            q = edits[n].text.data;
            *q++ = '"';
            q = ngx_cpymem(q, d->model.data, d->model.len);
            *q = '"';
            n++;
            continue;
        }

        if ((ngx_http_llm_json_str_eq(&key, "max_tokens", 10)
             || ngx_http_llm_json_str_eq(&key, "max_completion_tokens", 21))
            && d->max_tokens_cap > 0)
        {
            rc = ngx_http_llm_json_get_int(&cur, &v);

            if (rc < 0) {
                return NGX_ERROR;
            }

            if (rc == 1 && v > d->max_tokens_cap) {
                edits[n].start = pos;
                edits[n].end = cur.p - body;
                edits[n].text.data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
                if (edits[n].text.data == NULL) {
                    return NGX_ERROR;
                }

                edits[n].text.len = ngx_http_llm_uint(edits[n].text.data,
                                                      d->max_tokens_cap)
                                    - edits[n].text.data;
                n++;
            }

            continue;
        }

        field = 0;

        if (left) {
            if (ngx_http_llm_json_str_eq(&key, "system", 6)) {
                field = NGX_HTTP_LLM_BP_SYSTEM;

            } else if (ngx_http_llm_json_str_eq(&key, "tools", 5)) {
                field = NGX_HTTP_LLM_BP_TOOLS;

            } else if (ngx_http_llm_json_str_eq(&key, "messages", 8)) {
                field = NGX_HTTP_LLM_BP_MESSAGES;
            }
        }

        if (field) {
            if (ngx_http_llm_route_mark_field(&cur, body, d, field, edits, &n,
                                              &left)
                < 0)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_http_llm_json_str_eq(&key, "prompt_cache_key", 16)) {
            has_pck = 1;
        }

        if (ngx_http_llm_json_skip(&cur) < 0) {
            return NGX_ERROR;
        }

        if (n >= NGX_HTTP_LLM_ROUTE_MAX_EDITS - 1) {
            break;
        }
    }

    if (rc < 0) {
        return NGX_ERROR;
    }

add:

    if (rc == 0 && !has_pck && d->prompt_cache_key.len
        && !NGX_HTTP_LLM_IS_ANTHROPIC(ctx->api))
    {
        /* before the final '}', which the cursor just passed */
        pos = cur.p - 1 - body;

        edits[n].start = pos;
        edits[n].end = pos;
        edits[n].text.len = sizeof(",\"prompt_cache_key\":\"\"") - 1
                            + d->prompt_cache_key.len;
        edits[n].text.data = ngx_pnalloc(r->pool, edits[n].text.len);
        if (edits[n].text.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(edits[n].text.data, ",\"prompt_cache_key\":\"",
                       sizeof(",\"prompt_cache_key\":\"") - 1);
        p = ngx_cpymem(p, d->prompt_cache_key.data, d->prompt_cache_key.len);
        *p = '"';
        n++;
    }

    if (n == 0) {
        return NGX_OK;
    }

    size = len;

    for (i = 0; i < n; i++) {
        size += edits[i].text.len - (edits[i].end - edits[i].start);
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = b->pos;
    pos = 0;

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, body + pos, edits[i].start - pos);
        p = ngx_cpymem(p, edits[i].text.data, edits[i].text.len);
        pos = edits[i].end;
    }

    p = ngx_cpymem(p, body + pos, len - pos);
    b->last = p;
    b->last_buf = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->request_body->buf = b;
    r->headers_in.content_length_n = size;
    ctx->body_routed = 1;

    if (r->headers_in.content_length) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        r->headers_in.content_length->value.data = p;
        r->headers_in.content_length->value.len =
                                          ngx_http_llm_uint(p, size) - p;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm route: body rewritten, %ui edits, %uz bytes", n, size);

    return NGX_OK;
}


/*
 * Anthropic prompt caching. The module tells the sidecar the layout of the
 * prompt (prompt_shape: system blocks, tools, the last user turn, the
 * cache_control markers the client set and where), the sidecar answers
 * with JSON pointers of the blocks to mark, and the forwarded body gets
 * "cache_control":{"type":"ephemeral"} there.
 */

static ngx_http_llm_prompt_shape_t *
ngx_http_llm_route_shape(ngx_http_request_t *r)
{
    int                           rc, t;
    size_t                        len;
    u_char                       *body;
    int32_t                       index;
    int64_t                       blocks;
    unsigned                      first, mfirst, ofirst, user;
    const u_char                 *start;
    ngx_http_llm_json_cur_t       cur;
    ngx_http_llm_json_str_t       key, str;
    ngx_http_llm_prompt_shape_t  *shape;

    if (ngx_http_llm_body_contiguous(r, &body, &len) != NGX_OK) {
        return NULL;
    }

    shape = ngx_pcalloc(r->pool, sizeof(ngx_http_llm_prompt_shape_t));
    if (shape == NULL) {
        return NULL;
    }

    shape->last_user_index = -1;

    ngx_http_llm_json_cur_init(&cur, body, len);

    if (ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return NULL;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(&cur, &first, &key)) == 1) {

        start = ngx_http_llm_json_skip_ws(cur.p, cur.end);
        t = ngx_http_llm_json_peek(&cur);

        if (ngx_http_llm_json_str_eq(&key, "system", 6)) {
            rc = ngx_http_llm_shape_blocks(&cur, shape, NGX_HTTP_LLM_BP_SYSTEM,
                                           -1);
            if (rc < 0) {
                return NULL;
            }

            shape->system_blocks = rc;
            /* about 4 bytes a token, as the inspector's estimate */
            shape->system_tokens = (cur.p - start + 3) / 4;
            continue;
        }

        if (ngx_http_llm_json_str_eq(&key, "tools", 5)
            && t == NGX_HTTP_LLM_JSON_ARRAY)
        {
            rc = ngx_http_llm_shape_blocks(&cur, shape, NGX_HTTP_LLM_BP_TOOLS,
                                           -1);
            if (rc < 0) {
                return NULL;
            }

            shape->tools_count = rc;
            shape->tools_tokens = (cur.p - start + 3) / 4;
            continue;
        }

        if (!ngx_http_llm_json_str_eq(&key, "messages", 8)
            || t != NGX_HTTP_LLM_JSON_ARRAY)
        {
            if (ngx_http_llm_json_skip(&cur) < 0) {
                return NULL;
            }

            continue;
        }

        (void) ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_ARRAY);
        mfirst = 1;

        for (index = 0;
             (rc = ngx_http_llm_json_next(&cur, &mfirst, NULL)) == 1;
             index++)
        {
            rc = ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_OBJECT);

            if (rc < 0) {
                return NULL;
            }

            if (rc == 0) {
                if (ngx_http_llm_json_skip(&cur) < 0) {
                    return NULL;
                }

                continue;
            }

            user = 0;
            blocks = 0;
            ofirst = 1;

            while ((rc = ngx_http_llm_json_next(&cur, &ofirst, &key)) == 1) {

                if (ngx_http_llm_json_str_eq(&key, "role", 4)) {
                    rc = ngx_http_llm_json_get_string(&cur, &str);
                    user = (rc == 1 && ngx_http_llm_json_str_eq(&str, "user",
                                                                4));

                } else if (ngx_http_llm_json_str_eq(&key, "content", 7)) {
                    rc = ngx_http_llm_shape_blocks(&cur, shape,
                                                   NGX_HTTP_LLM_BP_MESSAGES,
                                                   index);
                    blocks = rc;

                } else {
                    rc = ngx_http_llm_json_skip(&cur);
                }

                if (rc < 0) {
                    return NULL;
                }
            }

            if (rc < 0) {
                return NULL;
            }

            if (user) {
                shape->last_user_index = index;
                shape->last_user_blocks = blocks;
            }
        }

        if (rc < 0) {
            return NULL;
        }
    }

    if (rc < 0) {
        return NULL;
    }

    return shape;
}


/*
 * A content-like value (system, tools, a message's content): a string
 * (0 blocks) or an array of blocks, whose cache_control markers are
 * counted. Returns the number of blocks, or -1.
 */

static int
ngx_http_llm_shape_blocks(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_prompt_shape_t *shape, int32_t field, int32_t index)
{
    int                       rc, k;
    int64_t                   nested;
    unsigned                  afirst, ofirst;
    ngx_http_llm_bp_t        *bp;
    ngx_http_llm_json_str_t   key;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_ARRAY);

    if (rc <= 0) {
        return rc < 0 ? -1 : (ngx_http_llm_json_skip(cur) < 0 ? -1 : 0);
    }

    afirst = 1;

    for (k = 0; (rc = ngx_http_llm_json_next(cur, &afirst, NULL)) == 1; k++) {

        rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

        if (rc < 0) {
            return -1;
        }

        if (rc == 0) {
            if (ngx_http_llm_json_skip(cur) < 0) {
                return -1;
            }

            continue;
        }

        ofirst = 1;

        while ((rc = ngx_http_llm_json_next(cur, &ofirst, &key)) == 1) {

            if (ngx_http_llm_json_str_eq(&key, "cache_control", 13)) {
                shape->client_breakpoints++;

                if (shape->npaths < NGX_HTTP_LLM_SHAPE_PATHS) {
                    bp = &shape->paths[shape->npaths++];
                    bp->field = field;
                    bp->index = index;
                    bp->block = k;
                }

                rc = ngx_http_llm_json_skip(cur);

            } else {
                /* markers deeper down (tool_result contents) count too */
                nested = 0;
                rc = ngx_http_llm_shape_nested(cur, &nested);
                shape->client_breakpoints += nested;
            }

            if (rc < 0) {
                return -1;
            }
        }

        if (rc < 0) {
            return -1;
        }
    }

    return rc < 0 ? -1 : k;
}


static int
ngx_http_llm_shape_nested(ngx_http_llm_json_cur_t *cur, int64_t *count)
{
    int                       rc, t;
    unsigned                  first;
    ngx_http_llm_json_str_t   key;

    t = ngx_http_llm_json_peek(cur);

    if (t != NGX_HTTP_LLM_JSON_OBJECT && t != NGX_HTTP_LLM_JSON_ARRAY) {
        return ngx_http_llm_json_skip(cur);
    }

    if (ngx_http_llm_json_enter(cur, t) != 1) {
        return -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first,
                                        t == NGX_HTTP_LLM_JSON_OBJECT
                                        ? &key : NULL))
           == 1)
    {
        if (t == NGX_HTTP_LLM_JSON_OBJECT
            && ngx_http_llm_json_str_eq(&key, "cache_control", 13))
        {
            (*count)++;
        }

        if (ngx_http_llm_shape_nested(cur, count) < 0) {
            return -1;
        }
    }

    return rc;
}


static u_char *
ngx_http_llm_bp_print(u_char *p, u_char *last, ngx_http_llm_bp_t *bp)
{
    static const char  *fields[] = { "", "system", "tools", "messages" };

    if (bp->field == NGX_HTTP_LLM_BP_MESSAGES) {
        p = ngx_slprintf(p, last, "\"/messages/%D/content", bp->index);

    } else {
        p = ngx_slprintf(p, last, "\"/%s", fields[bp->field]);
    }

    if (bp->block >= 0) {
        p = ngx_slprintf(p, last, "/%D", bp->block);
    }

    return ngx_slprintf(p, last, "\"");
}


/* "/system[/N]", "/tools/N", "/messages/I/content[/N]" */

static ngx_int_t
ngx_http_llm_bp_parse(ngx_http_llm_json_str_t *s, ngx_http_llm_bp_t *bp)
{
    u_char        *p, *last, *q;
    ngx_int_t      n;
    ngx_uint_t     i;

    static const struct {
        const char  *prefix;
        size_t       len;
        int32_t      field;
    } fields[] = {
        { "/system", 7, NGX_HTTP_LLM_BP_SYSTEM },
        { "/tools", 6, NGX_HTTP_LLM_BP_TOOLS },
        { "/messages/", 10, NGX_HTTP_LLM_BP_MESSAGES }
    };

    if (s->escaped) {
        return NGX_DECLINED;
    }

    p = (u_char *) s->data;
    last = p + s->len;

    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        if ((size_t) (last - p) >= fields[i].len
            && ngx_strncmp(p, fields[i].prefix, fields[i].len) == 0)
        {
            break;
        }
    }

    if (i == sizeof(fields) / sizeof(fields[0])) {
        return NGX_DECLINED;
    }

    bp->field = fields[i].field;
    bp->index = -1;
    bp->block = -1;
    p += fields[i].len;

    if (bp->field == NGX_HTTP_LLM_BP_MESSAGES) {
        for (q = p; q < last && *q != '/'; q++) { /* void */ }

        n = ngx_atoi(p, q - p);

        if (n == NGX_ERROR || n > 0x7fffffff
            || last - q < 8 || ngx_strncmp(q, "/content", 8) != 0)
        {
            return NGX_DECLINED;
        }

        bp->index = (int32_t) n;
        p = q + 8;
    }

    if (p == last) {
        /* the field itself: tools is always an array */
        return bp->field == NGX_HTTP_LLM_BP_TOOLS ? NGX_DECLINED : NGX_OK;
    }

    if (*p != '/') {
        return NGX_DECLINED;
    }

    n = ngx_atoi(p + 1, last - p - 1);

    if (n == NGX_ERROR || n > 0x7fffffff) {
        return NGX_DECLINED;
    }

    bp->block = (int32_t) n;

    return NGX_OK;
}


/* edits for the breakpoints of one top-level field; the cursor is before
 * its value and ends after it; -1 on error */

static int
ngx_http_llm_route_mark_field(ngx_http_llm_json_cur_t *cur,
    const u_char *body, ngx_http_llm_decision_t *d, int32_t field,
    ngx_http_llm_edit_t *edits, ngx_uint_t *n, ngx_uint_t *left)
{
    int         rc;
    int32_t     index;
    unsigned    afirst, ofirst;
    ngx_uint_t  i;
    ngx_http_llm_json_str_t  key;

    if (field != NGX_HTTP_LLM_BP_MESSAGES) {
        return ngx_http_llm_route_mark_content(cur, body, d, field, -1, edits,
                                               n, left);
    }

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_ARRAY);

    if (rc <= 0) {
        return rc < 0 ? -1 : ngx_http_llm_json_skip(cur);
    }

    afirst = 1;

    for (index = 0; (rc = ngx_http_llm_json_next(cur, &afirst, NULL)) == 1;
         index++)
    {
        for (i = 0; i < d->nbp; i++) {
            if (d->bp[i].field == field && d->bp[i].index == index) {
                break;
            }
        }

        if (i == d->nbp || *left == 0) {
            if (ngx_http_llm_json_skip(cur) < 0) {
                return -1;
            }

            continue;
        }

        rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

        if (rc <= 0) {
            if (rc < 0 || ngx_http_llm_json_skip(cur) < 0) {
                return -1;
            }

            continue;
        }

        ofirst = 1;

        while ((rc = ngx_http_llm_json_next(cur, &ofirst, &key)) == 1) {
            if (ngx_http_llm_json_str_eq(&key, "content", 7)) {
                rc = ngx_http_llm_route_mark_content(cur, body, d, field,
                                                     index, edits, n, left);
            } else {
                rc = ngx_http_llm_json_skip(cur);
            }

            if (rc < 0) {
                return -1;
            }
        }

        if (rc < 0) {
            return -1;
        }
    }

    return rc;
}


/* a string, or an array of blocks, some of which the decision marks */

static int
ngx_http_llm_route_mark_content(ngx_http_llm_json_cur_t *cur,
    const u_char *body, ngx_http_llm_decision_t *d, int32_t field,
    int32_t index, ngx_http_llm_edit_t *edits, ngx_uint_t *n,
    ngx_uint_t *left)
{
    int                       rc, t;
    size_t                    start;
    int32_t                   k;
    unsigned                  afirst;
    ngx_uint_t                i;
    ngx_http_llm_json_str_t   str;

    static ngx_str_t  before = ngx_string("[{\"type\":\"text\",\"text\":");
    static ngx_str_t  after = ngx_string("," NGX_HTTP_LLM_CACHE_CONTROL "}]");

    t = ngx_http_llm_json_peek(cur);

    if (t == NGX_HTTP_LLM_JSON_STRING) {
        for (i = 0; i < d->nbp; i++) {
            if (d->bp[i].field == field && d->bp[i].index == index
                && d->bp[i].block == -1)
            {
                break;
            }
        }

        start = ngx_http_llm_json_skip_ws(cur->p, cur->end) - body;

        if (ngx_http_llm_json_get_string(cur, &str) < 0) {
            return -1;
        }

        /* a plain string becomes one marked text block (never empty) */

        if (i < d->nbp && *left && str.len
            && *n + 2 < NGX_HTTP_LLM_ROUTE_MAX_EDITS - 1)
        {
            edits[*n].start = start;
            edits[*n].end = start;
            edits[*n].text = before;
            (*n)++;

            edits[*n].start = cur->p - body;
            edits[*n].end = cur->p - body;
            edits[*n].text = after;
            (*n)++;

            (*left)--;
        }

        return 1;
    }

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_ARRAY);

    if (rc <= 0) {
        return rc < 0 ? -1 : ngx_http_llm_json_skip(cur);
    }

    afirst = 1;

    for (k = 0; (rc = ngx_http_llm_json_next(cur, &afirst, NULL)) == 1; k++) {

        for (i = 0; i < d->nbp; i++) {
            if (d->bp[i].field == field && d->bp[i].index == index
                && d->bp[i].block == k)
            {
                break;
            }
        }

        if (i == d->nbp || *left == 0
            || *n + 1 >= NGX_HTTP_LLM_ROUTE_MAX_EDITS - 1)
        {
            rc = ngx_http_llm_json_skip(cur);

        } else {
            rc = ngx_http_llm_route_mark_block(cur, body, edits, n);

            if (rc == 1) {
                (*left)--;
            }
        }

        if (rc < 0) {
            return -1;
        }
    }

    return rc;
}


/* adds cache_control to one block object unless it has one; 1 if added */

static int
ngx_http_llm_route_mark_block(ngx_http_llm_json_cur_t *cur,
    const u_char *body, ngx_http_llm_edit_t *edits, ngx_uint_t *n)
{
    int                       rc;
    unsigned                  first, members, marked;
    ngx_http_llm_json_str_t   key;

    static ngx_str_t  mark = ngx_string("," NGX_HTTP_LLM_CACHE_CONTROL);

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

    if (rc <= 0) {
        return rc < 0 ? -1 : (ngx_http_llm_json_skip(cur) < 0 ? -1 : 0);
    }

    first = 1;
    members = 0;
    marked = 0;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {
        members++;

        if (ngx_http_llm_json_str_eq(&key, "cache_control", 13)) {
            marked = 1;
        }

        if (ngx_http_llm_json_skip(cur) < 0) {
            return -1;
        }
    }

    if (rc < 0) {
        return -1;
    }

    if (marked) {
        return 0;
    }

    /* before the closing '}', which the cursor just passed */

    edits[*n].start = cur->p - 1 - body;
    edits[*n].end = edits[*n].start;
    edits[*n].text.data = members ? mark.data : mark.data + 1;
    edits[*n].text.len = members ? mark.len : mark.len - 1;
    (*n)++;

    return 1;
}


/* the decision cache */

void *
ngx_http_llm_route_zone_data(ngx_conf_t *cf)
{
    return ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_route_zone_t));
}


ngx_int_t
ngx_http_llm_route_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_llm_route_zone_t  *ozone = data;
    ngx_http_llm_route_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_alloc(zone->shpool,
                              sizeof(ngx_http_llm_route_shctx_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&zone->sh->queue);

    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


static ngx_http_llm_route_node_t *
ngx_http_llm_route_find(ngx_http_llm_route_zone_t *zone, uint64_t key)
{
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_llm_route_node_t  *rn;

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if ((ngx_rbtree_key_t) key < node->key) {
            node = node->left;
            continue;
        }

        if ((ngx_rbtree_key_t) key > node->key) {
            node = node->right;
            continue;
        }

        rn = (ngx_http_llm_route_node_t *) node;

        if (rn->key == key) {
            return rn;
        }

        /* same rbtree key, other decision key: look on both sides */
        node = (key < rn->key) ? node->left : node->right;
    }

    return NULL;
}


static ngx_int_t
ngx_http_llm_route_lookup(ngx_http_request_t *r, ngx_shm_zone_t *shm_zone,
    uint64_t key, ngx_http_llm_decision_t *d)
{
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_http_llm_route_zone_t  *zone;
    ngx_http_llm_route_node_t  *rn;

    zone = shm_zone->data;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&zone->shpool->mutex);

    rn = ngx_http_llm_route_find(zone, key);

    if (rn && (ngx_msec_int_t) (rn->expire - ngx_current_msec) > 0) {
        p = ngx_pnalloc(r->pool, rn->len);

        if (p) {
            /* the parsed decision, its strings pointing into the copy */
            ngx_memcpy(p, rn->data, rn->len);
            *d = rn->decision;
            ngx_http_llm_decision_rebase(d, NULL, p);
            rc = NGX_OK;

            ngx_queue_remove(&rn->queue);
            ngx_queue_insert_head(&zone->sh->queue, &rn->queue);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


static void
ngx_http_llm_route_store(ngx_shm_zone_t *shm_zone, uint64_t key,
    ngx_msec_t ttl, ngx_str_t *answer, ngx_http_llm_decision_t *d)
{
    ngx_uint_t                  i;
    ngx_queue_t                *q;
    ngx_http_llm_route_zone_t  *zone;
    ngx_http_llm_route_node_t  *rn;

    zone = shm_zone->data;

    ngx_shmtx_lock(&zone->shpool->mutex);

    rn = ngx_http_llm_route_find(zone, key);

    if (rn) {
        ngx_rbtree_delete(&zone->sh->rbtree, &rn->node);
        ngx_queue_remove(&rn->queue);
        ngx_slab_free_locked(zone->shpool, rn);
    }

    /* expired or least recently used decisions make room */

    for (i = 0; i < 64; i++) {
        rn = ngx_slab_alloc_locked(zone->shpool,
                                   offsetof(ngx_http_llm_route_node_t, data)
                                   + answer->len);
        if (rn) {
            break;
        }

        if (ngx_queue_empty(&zone->sh->queue)) {
            break;
        }

        q = ngx_queue_last(&zone->sh->queue);
        ngx_queue_remove(q);
        rn = ngx_queue_data(q, ngx_http_llm_route_node_t, queue);
        ngx_rbtree_delete(&zone->sh->rbtree, &rn->node);
        ngx_slab_free_locked(zone->shpool, rn);
        rn = NULL;
    }

    if (rn) {
        rn->node.key = (ngx_rbtree_key_t) key;
        rn->key = key;
        rn->expire = ngx_current_msec + ttl;
        rn->len = answer->len;
        ngx_memcpy(rn->data, answer->data, answer->len);
        rn->decision = *d;
        ngx_http_llm_decision_rebase(&rn->decision, answer->data, NULL);

        ngx_rbtree_insert(&zone->sh->rbtree, &rn->node);
        ngx_queue_insert_head(&zone->sh->queue, &rn->queue);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/*
 * The decision's strings point into the answer text at "from"; moves them
 * to the same offsets from "to". NULL as "to" keeps bare offsets (the
 * form stored in the zone), NULL as "from" reads them back.
 */

static void
ngx_http_llm_decision_rebase(ngx_http_llm_decision_t *d, u_char *from,
    u_char *to)
{
    ngx_uint_t   i;
    ngx_str_t   *s[6];

    s[0] = &d->action;
    s[1] = &d->code;
    s[2] = &d->reason;
    s[3] = &d->upstream;
    s[4] = &d->model;
    s[5] = &d->prompt_cache_key;

    for (i = 0; i < 6; i++) {
        if (s[i]->len == 0) {
            s[i]->data = NULL;
            continue;
        }

        s[i]->data = (u_char *) ((uintptr_t) to + ((uintptr_t) s[i]->data
                                                   - (uintptr_t) from));
    }
}


/* configuration */

char *
ngx_http_llm_route_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_sidecar_loc_conf_t  *lcf;

    ngx_str_t  *value;

    lcf = (ngx_http_llm_sidecar_loc_conf_t *) ((u_char *) conf + cmd->offset);

    if (lcf->route_set) {
        return "is duplicate";
    }

    value = cf->args->elts;
    lcf->route_set = 1;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_null(&lcf->route);
        return NGX_CONF_OK;
    }

    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, '/')
        || ngx_strlchr(value[1].data, value[1].data + value[1].len, '$'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "llm_route \"%V\" must name an upstream group "
                           "(the static route) or be \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    lcf->route = value[1];

    return NGX_CONF_OK;
}


char *
ngx_http_llm_sidecar_merge_conf(ngx_conf_t *cf,
    ngx_http_llm_sidecar_loc_conf_t *prev,
    ngx_http_llm_sidecar_loc_conf_t *conf)
{
    ngx_http_llm_main_conf_t  *lmcf;

    if (conf->team == NULL) {
        conf->team = prev->team;
    }

    if (!conf->route_set) {
        conf->route_set = prev->route_set;
        conf->route = prev->route;
    }

    if (conf->route.len) {
        lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llm_module);

        if (lmcf->sidecar.addr == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "llm_route needs \"llm_sidecar\" at the "
                               "http{} level, before it");
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_llm_sidecar_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_llm_route_vars; v->name.len; v++) {
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
ngx_http_llm_upstream_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                *s;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_loc_conf_t  *llcf;

    ctx = ngx_http_llm_get_ctx(r);
    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    s = (ctx && ctx->link && ctx->link->upstream.len) ? &ctx->link->upstream
                                                      : &llcf->link.route;

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_route_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL || ctx->link == NULL || ctx->link->route_status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ngx_http_llm_route_statuses[ctx->link->route_status].len;
    v->data = ngx_http_llm_route_statuses[ctx->link->route_status].data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_served_model_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t           *s;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL || !ctx->inspected) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ctx->link && ctx->link->served_model.len)
        ? &ctx->link->served_model : &ctx->model;

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
