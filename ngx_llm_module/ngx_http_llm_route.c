
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
#define NGX_HTTP_LLM_ROUTE_MAX_EDITS    8


typedef struct {
    ngx_rbtree_node_t               node;       /* key: decision key */
    ngx_queue_t                     queue;      /* LRU */
    uint64_t                        key;
    ngx_msec_t                      expire;
    size_t                          len;
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
} ngx_http_llm_decision_t;


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
    ngx_shm_zone_t *zone, uint64_t key, ngx_str_t *answer);
static void ngx_http_llm_route_store(ngx_shm_zone_t *zone, uint64_t key,
    ngx_msec_t ttl, ngx_str_t *answer);
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
    ngx_http_llm_ctx_t *ctx, ngx_str_t *answer);
static ngx_int_t ngx_http_llm_route_deny(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_decision_t *d);
static ngx_int_t ngx_http_llm_route_edit_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_decision_t *d);
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
    ngx_str_t                     body, answer;
    ngx_pool_cleanup_t           *cln;
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

    link->decision_key = ngx_http_llm_route_key(ctx, link);

    if (ngx_http_llm_route_lookup(r, lmcf->sidecar.decisions,
                                  link->decision_key, &answer)
        == NGX_OK)
    {
        link->route_status = NGX_HTTP_LLM_ROUTE_CACHED;
        return ngx_http_llm_route_apply(r, ctx, &answer);
    }

    if (ngx_http_llm_route_request(r, ctx, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    call = ngx_http_llm_sidecar_call(lmcf->sidecar.addr, "/v1/route", &body,
                                     lmcf->sidecar.timeout,
                                     ngx_http_llm_route_done, r);

    if (call == NULL) {
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
        rc = ngx_http_llm_route_fail(r, ctx, status, "route");

    } else if (body->len > NGX_HTTP_LLM_ROUTE_ANSWER_MAX
               || ngx_http_llm_route_parse(body, &d) != NGX_OK)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "llm route: answer not understood: \"%V\"", body);

        rc = ngx_http_llm_route_fail(r, ctx, NGX_ERROR, "route answer");

    } else {
        if (d.ttl_ms > 0) {
            ngx_http_llm_route_store(lmcf->sidecar.decisions,
                                     ctx->link->decision_key,
                                     (ngx_msec_t) d.ttl_ms, body);
        }

        ctx->link->route_status = NGX_HTTP_LLM_ROUTE_SIDECAR;
        rc = ngx_http_llm_route_apply(r, ctx, body);
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
        ngx_http_llm_sidecar_log_failure(&lmcf->sidecar, what, status,
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

    ngx_http_llm_sidecar_log_failure(&lmcf->sidecar, what, status,
                                     "requests take the static llm_route "
                                     "(fail-open)");

    ctx->link->route_status = NGX_HTTP_LLM_ROUTE_FAILOPEN;

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
    u_char                      *p, *last;
    ngx_http_llm_sidecar_ctx_t  *link;

    link = ctx->link;

    /* model and team: the model is JSON text already, the team escaped */

    body->data = ngx_pnalloc(r->pool, 512 + ctx->model.len
                                      + 6 * link->team.len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = body->data;
    last = p + 512 + ctx->model.len + 6 * link->team.len;

    p = ngx_slprintf(p, last, "{\"key_hash\":\"%V\",\"team\":",
                     &ctx->key_hash);
    p = ngx_http_llm_sidecar_json_str(p, last, &link->team);

    p = ngx_slprintf(p, last,
                     ",\"model\":\"%V\",\"prompt_tokens\":%uL,",
                     &ctx->model, ctx->req.prompt_tokens);

    if (ctx->req.max_tokens >= 0) {
        p = ngx_slprintf(p, last, "\"max_tokens\":%L,", ctx->req.max_tokens);
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
    unsigned                  first, pfirst;
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
    ngx_str_t *answer)
{
    ngx_uint_t                   i;
    ngx_http_llm_decision_t      d;
    ngx_http_llm_sidecar_ctx_t  *link;

    link = ctx->link;

    if (ngx_http_llm_route_parse(answer, &d) != NGX_OK) {
        /* a cached answer always parses; be safe anyway */
        return ngx_http_llm_route_fail(r, ctx, NGX_ERROR, "route answer");
    }

    if (d.action.len == 4) {
        return ngx_http_llm_route_deny(r, ctx, &d);
    }

    if (d.upstream.len) {
        for (i = 0; i < d.upstream.len; i++) {
            if (d.upstream.data[i] == '\\' || d.upstream.data[i] == '/') {
                return ngx_http_llm_route_fail(r, ctx, NGX_ERROR,
                                               "route answer");
            }
        }

        link->upstream.data = ngx_pstrdup(r->pool, &d.upstream);
        if (link->upstream.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        link->upstream.len = d.upstream.len;
    }

    if (ngx_http_llm_route_edit_body(r, ctx, &d) != NGX_OK) {
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
    int64_t                    v;
    unsigned                   first, has_pck;
    ngx_buf_t                 *b;
    ngx_uint_t                 n, i;
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

    ngx_http_llm_json_cur_init(&cur, body, len);

    if (ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return NGX_ERROR;
    }

    n = 0;
    first = 1;
    has_pck = 0;

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

                edits[n].text.len = ngx_sprintf(edits[n].text.data, "%L",
                                                d->max_tokens_cap)
                                    - edits[n].text.data;
                n++;
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

        ngx_sprintf(edits[n].text.data, ",\"prompt_cache_key\":\"%V\"",
                    &d->prompt_cache_key);
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

    if (r->headers_in.content_length) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        r->headers_in.content_length->value.data = p;
        r->headers_in.content_length->value.len =
                                          ngx_sprintf(p, "%uz", size) - p;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm route: body rewritten, %ui edits, %uz bytes", n, size);

    return NGX_OK;
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
    uint64_t key, ngx_str_t *answer)
{
    ngx_int_t                   rc;
    ngx_http_llm_route_zone_t  *zone;
    ngx_http_llm_route_node_t  *rn;

    zone = shm_zone->data;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&zone->shpool->mutex);

    rn = ngx_http_llm_route_find(zone, key);

    if (rn && (ngx_msec_int_t) (rn->expire - ngx_current_msec) > 0) {
        answer->data = ngx_pnalloc(r->pool, rn->len);

        if (answer->data) {
            ngx_memcpy(answer->data, rn->data, rn->len);
            answer->len = rn->len;
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
    ngx_msec_t ttl, ngx_str_t *answer)
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

        ngx_rbtree_insert(&zone->sh->rbtree, &rn->node);
        ngx_queue_insert_head(&zone->sh->queue, &rn->queue);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
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
