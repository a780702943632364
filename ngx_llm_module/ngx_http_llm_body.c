
/*
 * Copyright (C) ngx_llm authors
 *
 * Request side: the precontent phase handler reads the body through
 * nginx's own non-blocking machinery, inspects it once, answers bad
 * requests in the client API's error shape, and rewrites the body when
 * the gateway must ask upstream for something (stream usage).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"

#define XXH_INLINE_ALL
#include <xxhash.h>


#define NGX_HTTP_LLM_KEY_HASH_LEN  12


static ngx_uint_t ngx_http_llm_api_from_uri(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_check_content_type(ngx_http_request_t *r);
static void ngx_http_llm_body_read(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_body_process(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_body_rewrite(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, u_char *body, size_t len);
static ngx_int_t ngx_http_llm_key_hash(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);


ngx_http_llm_ctx_t *
ngx_http_llm_get_ctx(ngx_http_request_t *r)
{
    return ngx_http_get_module_ctx(r->main, ngx_http_llm_module);
}


/*
 * The ctx lives in a pool cleanup so that it can be found again after an
 * internal redirect cleared the module contexts (the way the realip
 * module keeps its own): the fallback chain picks it up in the named
 * location, with the body read, inspected and admitted once.
 */

void
ngx_http_llm_ctx_cleanup(void *data)
{
    /* nothing to free: the ctx is in r->pool */
}


ngx_http_llm_ctx_t *
ngx_http_llm_find_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_http_llm_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx || !r->internal) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_llm_ctx_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


ngx_int_t
ngx_http_llm_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_uint_t                api;
    ngx_time_t               *tp;
    ngx_msec_int_t            elapsed;
    ngx_pool_cleanup_t       *cln;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_loc_conf_t  *llcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    if (r->internal
        && ngx_http_get_module_ctx(r, ngx_http_llm_module) == NULL)
    {
        /* a hop of the fallback chain goes on with the request's ctx */
        rc = ngx_http_llm_fallback_enter(r);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (!llcf->enable) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx) {
        /* phases run again after the body was read */
        return ctx->status;
    }

    if (r->method != NGX_HTTP_POST) {
        /* GET /v1/models and friends pass through untouched */
        return NGX_DECLINED;
    }

    api = llcf->api;

    if (api == NGX_HTTP_LLM_API_AUTO) {
        api = ngx_http_llm_api_from_uri(r);

        if (api == NGX_HTTP_LLM_API_UNKNOWN) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "llm: \"%V\" is not an LLM API path, passed",
                           &r->uri);
            return NGX_DECLINED;
        }
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_llm_ctx_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_llm_ctx_t));
    cln->handler = ngx_http_llm_ctx_cleanup;

    ctx->api = api;
    ctx->fb.from = llcf;
    /* the request start on the monotonic clock of ngx_current_msec */

    tp = ngx_timeofday();
    elapsed = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                                + (tp->msec - r->start_msec));
    ctx->start = ngx_current_msec - ngx_max(elapsed, 0);
    ctx->status = NGX_DONE;
    ngx_http_llm_usage_init(&ctx->usage);

    ngx_http_set_ctx(r, ctx, ngx_http_llm_module);

    if (ngx_http_llm_key_hash(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_llm_check_content_type(r) != NGX_OK) {
        ctx->outcome = NGX_HTTP_LLM_OUTCOME_REJECTED;

        rc = ngx_http_llm_send_error(r, api, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                 "invalid_request_error", "unsupported_media_type", NULL,
                 "Content-Type must be application/json");

        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    if (r->headers_in.content_length_n > (off_t) llcf->max_body_size) {
        ctx->outcome = NGX_HTTP_LLM_OUTCOME_REJECTED;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm request body of %O bytes exceeds "
                      "llm_max_body_size %uz, rejected with 413",
                      r->headers_in.content_length_n, llcf->max_body_size);

        rc = ngx_http_llm_send_error(r, api,
                 NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "invalid_request_error",
                 "request_too_large", NULL,
                 "Request body of %O bytes exceeds the limit of %uz bytes",
                 r->headers_in.content_length_n, llcf->max_body_size);

        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    /* inspect the body from one buffer when it fits, with no copy */

    r->request_body_in_single_buf = 1;
    ctx->waiting_body = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_llm_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


static void
ngx_http_llm_body_read(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    ctx->waiting_body = 0;

    rc = ngx_http_llm_body_process(r, ctx);

    if (rc == NGX_DECLINED) {
        rc = ngx_http_llm_limit_admit(r, ctx);
    }

    if (rc == NGX_DECLINED) {
        rc = ngx_http_llm_route(r, ctx);

        if (rc == NGX_AGAIN) {
            /* the sidecar's answer calls ngx_http_llm_body_resume() */
            return;
        }
    }

    ngx_http_llm_body_resume(r, rc);
}


void
ngx_http_llm_body_resume(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_loc_conf_t  *llcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (rc == NGX_DECLINED) {
        rc = ngx_http_llm_cache_handler(r);
    }

    if (rc != NGX_DECLINED) {
        /* the request was answered here, or failed */
        ctx->status = NGX_DONE;
        ngx_http_finalize_request(r, rc);
        return;
    }

    ctx->status = NGX_DECLINED;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (llcf->retry.enable && ctx->req.stream == 1
        && ngx_http_llm_retry_install(r) != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (llcf->balance_wait
        && ngx_http_llm_balancer_hold(r, ctx) == NGX_AGAIN)
    {
        /* the prefix's home is full: a timer runs the phases */
        return;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_http_llm_body_process(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    int                       rc;
    size_t                    len;
    u_char                   *body;
    const char               *type;
    ngx_uint_t                status;
    ngx_http_llm_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (r->request_body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_llm_body_contiguous(r, &body, &len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (len > llcf->max_body_size) {
        /* chunked bodies: the size is known only now */
        ctx->outcome = NGX_HTTP_LLM_OUTCOME_REJECTED;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm request body of %uz bytes exceeds "
                      "llm_max_body_size %uz, rejected with 413",
                      len, llcf->max_body_size);

        return ngx_http_llm_send_error(r, ctx->api,
                   NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "invalid_request_error",
                   "request_too_large", NULL,
                   "Request body of %uz bytes exceeds the limit of %uz bytes",
                   len, llcf->max_body_size);
    }

    ctx->req.max_depth = llcf->max_json_depth;

    rc = ngx_http_llm_inspect(&ctx->req, (int) ctx->api, body, len);

    if (rc != NGX_HTTP_LLM_INSPECT_OK) {
        ctx->outcome = NGX_HTTP_LLM_OUTCOME_REJECTED;
        status = NGX_HTTP_BAD_REQUEST;
        type = "invalid_request_error";

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm rejected %s request: %s at byte %uz",
                      ngx_http_llm_api_name(ctx->api), ctx->req.error,
                      ctx->req.error_offset);

        return ngx_http_llm_send_error(r, ctx->api, status, type,
                   rc == NGX_HTTP_LLM_INSPECT_EJSON ? "invalid_json" : NULL,
                   ctx->req.error_param, "%s", ctx->req.error);
    }

    ctx->inspected = 1;

    /* the model name as written in the JSON text, escapes kept */

    ctx->model.data = (u_char *) ctx->req.model.data;
    ctx->model.len = ctx->req.model.len;

    ngx_log_debug7(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm: %s model:\"%V\" stream:%d max_tokens:%L "
                   "messages:%ui tools:%ui prompt~%uL",
                   ngx_http_llm_api_name(ctx->api), &ctx->model,
                   ctx->req.stream, ctx->req.max_tokens,
                   (ngx_uint_t) ctx->req.messages,
                   (ngx_uint_t) ctx->req.tools, ctx->req.prompt_tokens);

    if (ngx_http_llm_body_rewrite(r, ctx, body, len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the module watches the response: ask upstream for identity coding */

    if (r->headers_in.accept_encoding) {
        ngx_str_set(&r->headers_in.accept_encoding->value, "identity");
    }

    return NGX_DECLINED;
}


static ngx_uint_t
ngx_http_llm_api_from_uri(ngx_http_request_t *r)
{
    size_t   len;
    u_char  *p;

    p = r->uri.data;
    len = r->uri.len;

    while (len && p[len - 1] == '/') {
        len--;
    }

#define ngx_http_llm_ends(s)                                                  \
    (len >= sizeof(s) - 1                                                     \
     && ngx_strncmp(p + len - (sizeof(s) - 1), s, sizeof(s) - 1) == 0)

    if (ngx_http_llm_ends("/chat/completions")) {
        return NGX_HTTP_LLM_API_CHAT;
    }

    if (ngx_http_llm_ends("/completions")) {
        return NGX_HTTP_LLM_API_COMPLETIONS;
    }

    if (ngx_http_llm_ends("/embeddings")) {
        return NGX_HTTP_LLM_API_EMBEDDINGS;
    }

    if (ngx_http_llm_ends("/messages")) {
        return NGX_HTTP_LLM_API_MESSAGES;
    }

#undef ngx_http_llm_ends

    return NGX_HTTP_LLM_API_UNKNOWN;
}


static ngx_int_t
ngx_http_llm_check_content_type(ngx_http_request_t *r)
{
    size_t            len;
    u_char           *p, *last;
    ngx_table_elt_t  *h;

    h = r->headers_in.content_type;

    if (h == NULL) {
        return NGX_DECLINED;
    }

    p = h->value.data;
    last = p + h->value.len;

    while (p < last && *p != ';' && *p != ' ') {
        p++;
    }

    len = p - h->value.data;

    /* application/json, or any application/...+json */

    /* the usual spelling first: one memcmp(), not a byte loop */

    if (len == sizeof("application/json") - 1
        && (ngx_memcmp(h->value.data, "application/json", len) == 0
            || ngx_strncasecmp(h->value.data, (u_char *) "application/json",
                               len)
               == 0))
    {
        return NGX_OK;
    }

    if (len > sizeof("application/+json") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "application/", 12) == 0
        && ngx_strncasecmp(p - 5, (u_char *) "+json", 5) == 0)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/*
 * Returns the body as one contiguous piece: in place when nginx kept it in
 * one memory buffer, else copied from its buffers and, for bodies nginx
 * spooled to a temporary file, read back from that file (just written,
 * so normally from the page cache).
 */

ngx_int_t
ngx_http_llm_body_contiguous(ngx_http_request_t *r, u_char **data,
    size_t *len)
{
    off_t         size;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = r->request_body->bufs;

    if (cl == NULL) {
        *data = (u_char *) "";
        *len = 0;
        return NGX_OK;
    }

    if (cl->next == NULL && !cl->buf->in_file) {
        /* an empty body may come as a buffer with no memory at all */
        *data = cl->buf->pos ? cl->buf->pos : (u_char *) "";
        *len = cl->buf->last - cl->buf->pos;
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm: body buf file:%d %O-%O mem:%z",
                       (int) b->in_file, b->file_pos, b->file_last,
                       b->last - b->pos);

        if (b->in_file) {
            n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                              b->file_pos);

            if (n != b->file_last - b->file_pos) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "llm could not read the request body back "
                              "from \"%V\"", &b->file->name);
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        /* chunked bodies end with an empty last_buf whose pos is NULL */

        if (b->last != b->pos) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    *len = p - *data;

    return NGX_OK;
}


/*
 * For an OpenAI stream the gateway asks upstream for the usage chunk
 * (stream_options.include_usage) when the client did not, and strips that
 * chunk from the response again, so the client sees what it asked for.
 */

static ngx_int_t
ngx_http_llm_body_rewrite(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    u_char *body, size_t len)
{
    size_t                    size, head, tail;
    u_char                   *p;
    ngx_buf_t                *b;
    ngx_str_t                 add;
    ngx_chain_t              *cl;
    ngx_http_llm_loc_conf_t  *llcf;

    static ngx_str_t  stream_options =
        ngx_string(",\"stream_options\":{\"include_usage\":true}");

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (!llcf->stream_usage
        || ctx->req.stream != 1
        || ctx->req.include_usage == 1
        || (ctx->api != NGX_HTTP_LLM_API_CHAT
            && ctx->api != NGX_HTTP_LLM_API_COMPLETIONS))
    {
        return NGX_OK;
    }

    if (ctx->req.stream_options_start >= 0) {
        /* replace the client's stream_options value */
        head = (size_t) ctx->req.stream_options_start;
        tail = (size_t) ctx->req.stream_options_end;
        ngx_str_set(&add, "{\"include_usage\":true}");

    } else {
        /* append the member before the final '}' */
        head = ctx->req.object_end;
        tail = ctx->req.object_end;
        add = stream_options;

        if (ctx->req.object_empty) {
            add.data++;
            add.len--;
        }
    }

    size = head + add.len + (len - tail);

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->pos, body, head);
    p = ngx_cpymem(p, add.data, add.len);
    p = ngx_cpymem(p, body + tail, len - tail);
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
                                          ngx_http_llm_uint(p, size) - p;
    }

    ctx->stream_injected = 1;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm: asked upstream for stream usage, body %uz bytes "
                   "(%uz + %uz + %uz)", size, head, add.len, len - tail);

    return NGX_OK;
}


/*
 * The caller is named by llm_key, or by the bearer token / x-api-key /
 * api-key header. Only a short hash of it is kept, never the key.
 */

static ngx_int_t
ngx_http_llm_key_hash(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    u_char                   *p;
    uint64_t                  h;
    ngx_str_t                 key;
    ngx_uint_t                i;
    ngx_list_part_t          *part;
    ngx_table_elt_t          *hdr;
    ngx_http_llm_loc_conf_t  *llcf;

    static u_char  hex[] = "0123456789abcdef";

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    ngx_str_null(&key);

    if (llcf->key) {
        if (ngx_http_complex_value(r, llcf->key, &key) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (r->headers_in.authorization) {
        key = r->headers_in.authorization->value;

        if (key.len > 7
            && ngx_strncasecmp(key.data, (u_char *) "Bearer ", 7) == 0)
        {
            key.data += 7;
            key.len -= 7;
        }

    } else {
        part = &r->headers_in.headers.part;
        hdr = part->elts;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                hdr = part->elts;
                i = 0;
            }

            if (hdr[i].hash == 0) {
                continue;
            }

            if ((hdr[i].key.len == sizeof("x-api-key") - 1
                 && ngx_strncasecmp(hdr[i].lowcase_key,
                                    (u_char *) "x-api-key", 9) == 0)
                || (hdr[i].key.len == sizeof("api-key") - 1
                    && ngx_strncasecmp(hdr[i].lowcase_key,
                                       (u_char *) "api-key", 7) == 0))
            {
                key = hdr[i].value;
                break;
            }
        }
    }

    if (key.len == 0) {
        return NGX_OK;
    }

    h = XXH3_64bits(key.data, key.len);
    ctx->key_id = h;

    p = ngx_pnalloc(r->pool, 16);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* the first 12 hex digits of XXH3-64 of the key */

    for (i = 0; i < 16; i++) {
        p[i] = hex[(h >> (60 - 4 * i)) & 0xf];
    }

    ctx->key_hash.data = p;
    ctx->key_hash.len = NGX_HTTP_LLM_KEY_HASH_LEN;

    return NGX_OK;
}

