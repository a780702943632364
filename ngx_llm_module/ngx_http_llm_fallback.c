
/*
 * Copyright (C) ngx_llm authors
 *
 * Fallback chain.
 *
 * The trigger is nginx's own error_page path: "llm_fallback @name" adds
 * to its location the entries "error_page 502 504 = @name", so a group
 * whose every try failed (refused, reset, timed out, retries exhausted:
 * nginx's 502 / 504) moves to @name exactly as an operator's error_page
 * would. An upstream that answers 429, 500, 502, 503, 504 or 529 is
 * caught in the header filter, before anything reached the client: its
 * headers are dropped and the request is finalized with 502, which takes
 * the same path (the upstream connection is closed by nginx).
 *
 * The request ctx survives the internal redirect (it is kept in a pool
 * cleanup): the named location forwards the body read, inspected and
 * admitted once, with model= written into it, and the log phase writes
 * one usage record for the client request, with the served model and
 * the tier.
 *
 * Where the chain ends (a location without llm_fallback fails), nginx's
 * error page reaches the header filter; it is replaced by the stale
 * cache entry (llm_fallback_stale) or by the configured answer
 * (llm_fallback_template), else by the API-shaped error as before.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"


#define NGX_HTTP_LLM_FALLBACK_TEMPLATE_MAX  (64 * 1024)


/* a location with llm_fallback, for postconfiguration */
typedef struct {
    ngx_http_llm_fallback_conf_t  *conf;
    ngx_http_core_srv_conf_t      *cscf;
} ngx_http_llm_fallback_loc_t;


static char *ngx_http_llm_fallback_error_pages(ngx_conf_t *cf,
    ngx_http_llm_fallback_conf_t *conf);
static ngx_int_t ngx_http_llm_fallback_status(ngx_uint_t status);
static ngx_int_t ngx_http_llm_fallback_reset_headers(ngx_http_request_t *r);
static void ngx_http_llm_fallback_reset(ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_fallback_template(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_fallback_conf_t *fc);
static ngx_int_t ngx_http_llm_fallback_set_header(ngx_http_request_t *r,
    ngx_uint_t tier);
static ngx_uint_t ngx_http_llm_fallback_tier(ngx_http_llm_ctx_t *ctx);


static ngx_str_t  ngx_http_llm_tiers[] = {
    ngx_string("primary"),
    ngx_string("fallback"),
    ngx_string("stale"),
    ngx_string("template"),
    ngx_string("cache")
};


/* nginx's own statuses for a failed upstream group */
static ngx_int_t  ngx_http_llm_fallback_pages[] = {
    NGX_HTTP_BAD_GATEWAY,
    NGX_HTTP_GATEWAY_TIME_OUT
};


/* configuration */


/* llm_fallback @name [model=name] */

char *
ngx_http_llm_fallback_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    size_t                         i;
    ngx_str_t                     *value;
    ngx_uint_t                     n;
    ngx_http_llm_fallback_conf_t  *fc;

    fc = (ngx_http_llm_fallback_conf_t *) ((char *) conf + cmd->offset);

    if (fc->name.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len < 2 || value[1].data[0] != '@') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_fallback\" needs a named location "
                           "(\"@name\"), not \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    fc->name = value[1];

    for (n = 2; n < cf->args->nelts; n++) {

        if (value[n].len > 6
            && ngx_strncmp(value[n].data, "model=", 6) == 0)
        {
            fc->model.data = value[n].data + 6;
            fc->model.len = value[n].len - 6;

            /* written into the forwarded JSON as is */

            for (i = 0; i < fc->model.len; i++) {
                if (fc->model.data[i] < 0x20 || fc->model.data[i] == '"'
                    || fc->model.data[i] == '\\'
                    || fc->model.data[i] == 0x7f)
                {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "invalid model \"%V\" in "
                                       "\"llm_fallback\"", &fc->model);
                    return NGX_CONF_ERROR;
                }
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"llm_fallback\"",
                           &value[n]);
        return NGX_CONF_ERROR;
    }

    fc->file = cf->conf_file->file.name.data;
    fc->line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/* llm_fallback_template "text" | file=path [status=code] */

char *
ngx_http_llm_fallback_template_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    u_char                        *p;
    size_t                         size;
    ssize_t                        n;
    ngx_fd_t                       fd;
    ngx_str_t                     *value, text, path;
    ngx_int_t                      status;
    ngx_uint_t                     i;
    ngx_file_t                     file;
    ngx_file_info_t                fi;
    ngx_http_llm_fallback_conf_t  *fc;

    fc = (ngx_http_llm_fallback_conf_t *) ((char *) conf + cmd->offset);

    if (fc->template_set) {
        return "is duplicate";
    }

    value = cf->args->elts;
    text = value[1];
    status = NGX_HTTP_OK;

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len > 7
            && ngx_strncmp(value[i].data, "status=", 7) == 0)
        {
            status = ngx_atoi(value[i].data + 7, value[i].len - 7);

            if (status < 200 || status > 599) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"llm_fallback_template\" status must "
                                   "be between 200 and 599, not \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in "
                           "\"llm_fallback_template\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (text.len > 5 && ngx_strncmp(text.data, "file=", 5) == 0) {
        path.data = text.data + 5;
        path.len = text.len - 5;

        if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

        if (fd == NGX_INVALID_FILE) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_open_file_n " \"%s\" failed", path.data);
            return NGX_CONF_ERROR;
        }

        ngx_memzero(&file, sizeof(ngx_file_t));
        file.fd = fd;
        file.name = path;
        file.log = cf->log;

        if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_fd_info_n " \"%s\" failed", path.data);
            (void) ngx_close_file(fd);
            return NGX_CONF_ERROR;
        }

        size = (size_t) ngx_file_size(&fi);

        if (size > NGX_HTTP_LLM_FALLBACK_TEMPLATE_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"llm_fallback_template\" file \"%s\" is "
                               "larger than 64k", path.data);
            (void) ngx_close_file(fd);
            return NGX_CONF_ERROR;
        }

        text.data = ngx_pnalloc(cf->pool, size + 1);
        if (text.data == NULL) {
            (void) ngx_close_file(fd);
            return NGX_CONF_ERROR;
        }

        n = ngx_read_file(&file, text.data, size, 0);

        (void) ngx_close_file(fd);

        if (n != (ssize_t) size) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "could not read \"%s\"", path.data);
            return NGX_CONF_ERROR;
        }

        text.len = size;

        /* a file usually ends with a newline the answer does not need */

        while (text.len && (text.data[text.len - 1] == '\n'
                            || text.data[text.len - 1] == '\r'))
        {
            text.len--;
        }
    }

    if (text.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_fallback_template\" text must not be "
                           "empty");
        return NGX_CONF_ERROR;
    }

    /* escaped once, here, for every answer */

    size = text.len * 6 + 10;   /* \u00XX each, the quotes, the margin */

    p = ngx_pnalloc(cf->pool, size);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the body of the JSON string, without its quotes */

    fc->text.data = p + 1;
    fc->text.len = ngx_http_llm_json_string(p, p + size, text.data, text.len)
                   - p - 2;
    fc->status = status;
    fc->template_set = 1;

    return NGX_CONF_OK;
}


void
ngx_http_llm_fallback_create_conf(ngx_http_llm_fallback_conf_t *conf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     conf->name = { 0, NULL };
     *     conf->model = { 0, NULL };
     *     conf->target = NULL;
     *     conf->text = { 0, NULL };
     *     conf->template_set = 0;
     */

    conf->stale = NGX_CONF_UNSET;
    conf->status = NGX_CONF_UNSET_UINT;
}


char *
ngx_http_llm_fallback_merge_conf(ngx_conf_t *cf,
    ngx_http_llm_fallback_conf_t *prev, ngx_http_llm_fallback_conf_t *conf)
{
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_fallback_loc_t  *fl;

    ngx_conf_merge_value(conf->stale, prev->stale, 0);

    if (!conf->template_set && prev->template_set) {
        conf->text = prev->text;
        conf->status = prev->status;
        conf->template_set = 1;
    }

    ngx_conf_merge_uint_value(conf->status, prev->status, NGX_HTTP_OK);

    if (conf->name.data == NULL && prev->name.data) {
        /* nested locations go on with their parent's chain */
        conf->name = prev->name;
        conf->model = prev->model;
        conf->file = prev->file;
        conf->line = prev->line;
    }

    if (conf->name.data == NULL) {
        return NGX_CONF_OK;
    }

    if (ngx_http_llm_fallback_error_pages(cf, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* the named location is known after every location was merged */

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llm_module);

    if (lmcf->fallbacks == NULL) {
        lmcf->fallbacks = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_llm_fallback_loc_t));
        if (lmcf->fallbacks == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    fl = ngx_array_push(lmcf->fallbacks);
    if (fl == NULL) {
        return NGX_CONF_ERROR;
    }

    fl->conf = conf;
    fl->cscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_core_module);

    return NGX_CONF_OK;
}


/*
 * "error_page 502 504 = @name" of this location, after the entries the
 * operator wrote (an error_page of theirs for the same status comes
 * first). The location's array may be its parent's: it is copied.
 */

static char *
ngx_http_llm_fallback_error_pages(ngx_conf_t *cf,
    ngx_http_llm_fallback_conf_t *conf)
{
    ngx_uint_t                 i;
    ngx_array_t               *pages;
    ngx_http_err_page_t       *err;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    pages = ngx_array_create(cf->pool, 4, sizeof(ngx_http_err_page_t));
    if (pages == NULL) {
        return NGX_CONF_ERROR;
    }

    if (clcf->error_pages) {
        err = ngx_array_push_n(pages, clcf->error_pages->nelts);
        if (err == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(err, clcf->error_pages->elts,
                   clcf->error_pages->nelts * sizeof(ngx_http_err_page_t));
    }

    for (i = 0; i < sizeof(ngx_http_llm_fallback_pages) / sizeof(ngx_int_t);
         i++)
    {
        err = ngx_array_push(pages);
        if (err == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(err, sizeof(ngx_http_err_page_t));

        err->status = ngx_http_llm_fallback_pages[i];
        err->overwrite = 0;             /* "=": the status of @name */
        err->value.value = conf->name;
    }

    clcf->error_pages = pages;

    return NGX_CONF_OK;
}


/*
 * Postconfiguration: every llm_fallback names a named location of its
 * server; a chain is at most NGX_HTTP_LLM_FALLBACK_MAX_HOPS long and
 * never comes back to a location it went through.
 */

ngx_int_t
ngx_http_llm_fallback_init(ngx_conf_t *cf)
{
    ngx_uint_t                     i, n, k, hops;
    ngx_http_llm_loc_conf_t       *llcf;
    ngx_http_core_loc_conf_t     **clcfp;
    ngx_http_llm_main_conf_t      *lmcf;
    ngx_http_llm_fallback_loc_t   *fl;
    ngx_http_llm_fallback_conf_t  *fc, *seen[NGX_HTTP_LLM_FALLBACK_MAX_HOPS
                                             + 1];

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llm_module);

    if (lmcf->fallbacks == NULL) {
        return NGX_OK;
    }

    fl = lmcf->fallbacks->elts;
    n = lmcf->fallbacks->nelts;

    for (i = 0; i < n; i++) {
        fc = fl[i].conf;
        clcfp = fl[i].cscf->named_locations;

        for ( /* void */ ; clcfp && *clcfp; clcfp++) {
            if ((*clcfp)->name.len == fc->name.len
                && ngx_strncmp((*clcfp)->name.data, fc->name.data,
                               fc->name.len) == 0)
            {
                fc->target = (*clcfp)->loc_conf;
                break;
            }
        }

        if (fc->target == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "llm_fallback: no named location \"%V\" in the "
                          "server in %s:%ui", &fc->name, fc->file, fc->line);
            return NGX_ERROR;
        }
    }

    for (i = 0; i < n; i++) {
        fc = fl[i].conf;
        seen[0] = fc;
        hops = 0;

        while (fc->target) {
            llcf = fc->target[ngx_http_llm_module.ctx_index];
            fc = &llcf->fallback;
            hops++;

            for (k = 0; k < hops; k++) {
                if (seen[k] == fc) {
                    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                                  "llm_fallback: the chain through \"%V\" "
                                  "comes back to a location it went "
                                  "through in %s:%ui", &fl[i].conf->name,
                                  fl[i].conf->file, fl[i].conf->line);
                    return NGX_ERROR;
                }
            }

            if (fc->name.data == NULL) {
                break;
            }

            if (hops == NGX_HTTP_LLM_FALLBACK_MAX_HOPS) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "llm_fallback: the chain through \"%V\" is "
                              "longer than %d hops in %s:%ui",
                              &fl[i].conf->name,
                              NGX_HTTP_LLM_FALLBACK_MAX_HOPS,
                              fl[i].conf->file, fl[i].conf->line);
                return NGX_ERROR;
            }

            seen[hops] = fc;
        }
    }

    return NGX_OK;
}


/* the request path */


/*
 * The precontent phase of a named location, its module contexts cleared:
 * when the request's ctx says this is the llm_fallback target of the
 * location that failed, the chain goes on here with that ctx.
 */

ngx_int_t
ngx_http_llm_fallback_enter(ngx_http_request_t *r)
{
    ngx_uint_t                  status;
    ngx_http_llm_ctx_t         *ctx;
    ngx_http_llm_loc_conf_t    *llcf, *from;
    ngx_http_upstream_state_t  *state;

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || ctx->fb.from == NULL) {
        return NGX_DECLINED;
    }

    from = ctx->fb.from;
    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (from->fallback.target == NULL
        || from->fallback.target[ngx_http_llm_module.ctx_index] != llcf)
    {
        /* an error_page of the operator: not a hop of the chain */
        return NGX_DECLINED;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_llm_module);

    /* r->upstream is still the failed group's */
    ngx_http_llm_metrics_upstream_hop(r, ctx);

    if (ctx->fb.intercepted) {
        status = ctx->fb.status;

    } else {
        status = NGX_HTTP_BAD_GATEWAY;

        if (r->upstream_states && r->upstream_states->nelts) {
            state = r->upstream_states->elts;
            state += r->upstream_states->nelts - 1;

            if (state->status) {
                status = state->status;
            }
        }
    }

    ctx->fb.hops++;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "llm fallback: upstream group failed (%ui), trying %V "
                  "(hop %ui)", status, &from->fallback.name, ctx->fb.hops);

    if (ctx->fb.hops > NGX_HTTP_LLM_FALLBACK_MAX_HOPS) {
        /* not reachable with the chains nginx -t accepts */
        return NGX_HTTP_BAD_GATEWAY;
    }

    ngx_http_llm_fallback_reset(ctx);

    ctx->fb.tier = NGX_HTTP_LLM_TIER_FALLBACK;
    ctx->fb.from = llcf;

    if (from->fallback.model.len && ctx->inspected
        && ngx_http_llm_route_set_model(r, ctx, &from->fallback.model)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_llm_cache_fallback_hop(ctx);

    if (ngx_http_llm_retry_hop(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (llcf->fallback.target) {
        /* its own llm_fallback may fire: one error_page per hop */
        r->error_page = 0;
    }

    /* the body was read before the first hop: go on to the content phase */

    return NGX_DECLINED;
}


/* the response of the failed attempt is forgotten; the request's is kept */

static void
ngx_http_llm_fallback_reset(ngx_http_llm_ctx_t *ctx)
{
    ngx_memzero(&ctx->sse, sizeof(ngx_http_llm_sse_t));
    ngx_http_llm_usage_init(&ctx->usage);

    ctx->content_bytes = 0;
    ctx->events = 0;
    ctx->json = NULL;
    ctx->error_body = NULL;
    ctx->pending = NULL;
    ctx->emitted = 0;
    ctx->cut_start = 0;
    ctx->cut_end = 0;
    ctx->free = NULL;
    ctx->busy = NULL;
    ctx->ttft = 0;

    /* another upstream group: the balancer's picks start anew */
    ngx_memzero(&ctx->bal, sizeof(ngx_http_llm_balancer_ctx_t));

    ctx->sse_response = 0;
    ctx->json_response = 0;
    ctx->json_overflow = 0;
    ctx->strip = 0;
    ctx->got_content = 0;
    ctx->done = 0;
    ctx->error_event = 0;
    ctx->error_replaced = 0;
    ctx->ended = 0;
    ctx->outcome = NGX_HTTP_LLM_OUTCOME_NONE;
    ctx->usage_source = NGX_HTTP_LLM_USAGE_NONE;

    ctx->fb.intercepted = 0;
    ctx->fb.status = 0;
}


/*
 * The header filter, first of the module's: NGX_DECLINED to go on as
 * usual, NGX_DONE when the response was replaced (stale, template) and
 * goes on unwatched, else a status to finalize the request with (the
 * upstream answer caught).
 */

ngx_int_t
ngx_http_llm_fallback_header(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_uint_t                     status, chain;
    ngx_http_upstream_t           *u;
    ngx_http_llm_loc_conf_t       *llcf;
    ngx_http_llm_fallback_conf_t  *fc;

    u = r->upstream;
    status = r->headers_out.status;

    if (u == NULL) {
        goto served;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);
    fc = &llcf->fallback;

    if (u->headers_in.status_n && !ctx->fb.intercepted) {

        /* the upstream answered: an overload or server error is caught */

        if (ngx_http_llm_fallback_status(status) != NGX_OK) {
            goto served;
        }

        chain = (fc->target != NULL);

        if (!chain
            && !(fc->stale
                 && ngx_http_llm_cache_fallback_stale(r, ctx, 0) == NGX_OK)
            && !(fc->template_set
                 && ctx->api != NGX_HTTP_LLM_API_EMBEDDINGS))
        {
            goto served;
        }

        if (ngx_http_llm_cache_stale_covers(r, ctx)) {
            /* llm_cache_use_stale answers with its entry right away */
            goto served;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm fallback: upstream answered %ui, caught",
                       status);

        ctx->fb.intercepted = 1;
        ctx->fb.status = status;

        if (ngx_http_llm_fallback_reset_headers(r) != NGX_OK) {
            return NGX_ERROR;
        }

        /* ngx_http_upstream_finalize_request(), then error_page */

        return NGX_HTTP_BAD_GATEWAY;
    }

    if (status < NGX_HTTP_INTERNAL_SERVER_ERROR
        || !(u->headers_in.status_n == 0 || ctx->fb.intercepted))
    {
        goto served;
    }

    /* nginx's error page: the group failed and the chain ends here */

    if (fc->stale
        && ngx_http_llm_cache_fallback_stale(r, ctx, 1) == NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm fallback: serving stale cache entry");

        /* the cache's header filter swaps the answer, tier stale */
        return NGX_DONE;
    }

    if (fc->template_set && ctx->api != NGX_HTTP_LLM_API_EMBEDDINGS) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm fallback: serving template");

        if (ngx_http_llm_fallback_template(r, ctx, fc) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_DONE;
    }

    return NGX_DECLINED;

served:

    if (ctx->fb.tier == NGX_HTTP_LLM_TIER_FALLBACK
        && ngx_http_llm_fallback_set_header(r, ctx->fb.tier) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_llm_fallback_status(ngx_uint_t status)
{
    switch (status) {
    case NGX_HTTP_TOO_MANY_REQUESTS:
    case NGX_HTTP_INTERNAL_SERVER_ERROR:
    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_SERVICE_UNAVAILABLE:
    case NGX_HTTP_GATEWAY_TIME_OUT:
    case 529:                           /* Anthropic: overloaded */
        return NGX_OK;
    default:
        return NGX_DECLINED;
    }
}


/* the caught answer's headers go nowhere: the next one starts clean */

static ngx_int_t
ngx_http_llm_fallback_reset_headers(ngx_http_request_t *r)
{
    ngx_memzero(&r->headers_out, sizeof(ngx_http_headers_out_t));

    if (ngx_list_init(&r->headers_out.headers, r->pool, 20,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_list_init(&r->headers_out.trailers, r->pool, 4,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;

    return NGX_OK;
}


/*
 * The last tier: the configured text as an answer of the client's API,
 * JSON or SSE as it asked, marked: x-llm-fallback: template, ids
 * "chatcmpl-llm-fallback" / "cmpl-llm-fallback" / "msg_llm_fallback",
 * system_fingerprint "llm-fallback-template" (OpenAI), zero usage.
 */

static ngx_int_t
ngx_http_llm_fallback_template(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_fallback_conf_t *fc)
{
    u_char       *p;
    size_t        size;
    time_t        now;
    ngx_buf_t    *b;
    ngx_str_t    *m, *t;
    ngx_chain_t  *cl;

    m = &ctx->model;
    t = &fc->text;
    now = ngx_time();

    size = 2048 + 2 * m->len + t->len;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = b->pos;

    if (ctx->api == NGX_HTTP_LLM_API_MESSAGES && ctx->req.stream == 1) {
        p = ngx_sprintf(p,
                "event: message_start\n"
                "data: {\"type\":\"message_start\",\"message\":"
                "{\"id\":\"msg_llm_fallback\",\"type\":\"message\","
                "\"role\":\"assistant\",\"model\":\"%V\",\"content\":[],"
                "\"stop_reason\":null,\"stop_sequence\":null,"
                "\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n"
                "event: content_block_start\n"
                "data: {\"type\":\"content_block_start\",\"index\":0,"
                "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
                "event: content_block_delta\n"
                "data: {\"type\":\"content_block_delta\",\"index\":0,"
                "\"delta\":{\"type\":\"text_delta\",\"text\":\"%V\"}}\n\n"
                "event: content_block_stop\n"
                "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
                "event: message_delta\n"
                "data: {\"type\":\"message_delta\",\"delta\":"
                "{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},"
                "\"usage\":{\"output_tokens\":0}}\n\n"
                "event: message_stop\n"
                "data: {\"type\":\"message_stop\"}\n\n", m, t);

    } else if (ctx->api == NGX_HTTP_LLM_API_MESSAGES) {
        p = ngx_sprintf(p,
                "{\"id\":\"msg_llm_fallback\",\"type\":\"message\","
                "\"role\":\"assistant\",\"model\":\"%V\",\"content\":"
                "[{\"type\":\"text\",\"text\":\"%V\"}],"
                "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
                "\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}\n",
                m, t);

    } else if (ctx->api == NGX_HTTP_LLM_API_COMPLETIONS
               && ctx->req.stream == 1)
    {
        p = ngx_sprintf(p,
                "data: {\"id\":\"cmpl-llm-fallback\",\"object\":"
                "\"text_completion\",\"created\":%T,\"model\":\"%V\","
                "\"system_fingerprint\":\"llm-fallback-template\","
                "\"choices\":[{\"index\":0,\"text\":\"%V\","
                "\"finish_reason\":null}]}\n\n"
                "data: {\"id\":\"cmpl-llm-fallback\",\"object\":"
                "\"text_completion\",\"created\":%T,\"model\":\"%V\","
                "\"system_fingerprint\":\"llm-fallback-template\","
                "\"choices\":[{\"index\":0,\"text\":\"\","
                "\"finish_reason\":\"stop\"}]}\n\n"
                "data: [DONE]\n\n", now, m, t, now, m);

    } else if (ctx->api == NGX_HTTP_LLM_API_COMPLETIONS) {
        p = ngx_sprintf(p,
                "{\"id\":\"cmpl-llm-fallback\",\"object\":"
                "\"text_completion\",\"created\":%T,\"model\":\"%V\","
                "\"system_fingerprint\":\"llm-fallback-template\","
                "\"choices\":[{\"index\":0,\"text\":\"%V\","
                "\"finish_reason\":\"stop\"}],\"usage\":"
                "{\"prompt_tokens\":0,\"completion_tokens\":0,"
                "\"total_tokens\":0}}\n", now, m, t);

    } else if (ctx->req.stream == 1) {
        p = ngx_sprintf(p,
                "data: {\"id\":\"chatcmpl-llm-fallback\",\"object\":"
                "\"chat.completion.chunk\",\"created\":%T,"
                "\"model\":\"%V\","
                "\"system_fingerprint\":\"llm-fallback-template\","
                "\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                "\"assistant\",\"content\":\"%V\"},"
                "\"finish_reason\":null}]}\n\n"
                "data: {\"id\":\"chatcmpl-llm-fallback\",\"object\":"
                "\"chat.completion.chunk\",\"created\":%T,"
                "\"model\":\"%V\","
                "\"system_fingerprint\":\"llm-fallback-template\","
                "\"choices\":[{\"index\":0,\"delta\":{},"
                "\"finish_reason\":\"stop\"}]}\n\n"
                "data: [DONE]\n\n", now, m, t, now, m);

    } else {
        p = ngx_sprintf(p,
                "{\"id\":\"chatcmpl-llm-fallback\",\"object\":"
                "\"chat.completion\",\"created\":%T,\"model\":\"%V\","
                "\"system_fingerprint\":\"llm-fallback-template\","
                "\"choices\":[{\"index\":0,\"message\":{\"role\":"
                "\"assistant\",\"content\":\"%V\"},"
                "\"finish_reason\":\"stop\"}],\"usage\":"
                "{\"prompt_tokens\":0,\"completion_tokens\":0,"
                "\"total_tokens\":0}}\n", now, m, t);
    }

    b->last = p;
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    ctx->fb.out = cl;
    ctx->fb.tier = NGX_HTTP_LLM_TIER_TEMPLATE;

    /* not an answer to keep under the request's key */
    ngx_http_llm_cache_fallback_hop(ctx);

    /* nothing was generated: no usage, no content */

    ctx->done = 1;
    ctx->outcome = NGX_HTTP_LLM_OUTCOME_COMPLETE;
    ctx->error_replaced = 0;

    /* nginx's page headers go: the answer's own */

    ngx_http_llm_clear_headers(r);

    r->headers_out.status = fc->status;
    r->headers_out.status_line.len = 0;
    r->err_status = 0;
    r->headers_out.content_length = NULL;
    r->headers_out.content_length_n = b->last - b->pos;
    r->headers_out.content_encoding = NULL;
    r->headers_out.location = NULL;
    r->headers_out.refresh = NULL;
    r->headers_out.last_modified_time = -1;
    r->headers_out.last_modified = NULL;
    r->headers_out.etag = NULL;
    r->headers_out.www_authenticate = NULL;

    if (ctx->req.stream == 1) {
        ngx_str_set(&r->headers_out.content_type, "text/event-stream");

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    return ngx_http_llm_fallback_set_header(r, NGX_HTTP_LLM_TIER_TEMPLATE);
}


static ngx_int_t
ngx_http_llm_fallback_set_header(ngx_http_request_t *r, ngx_uint_t tier)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "x-llm-fallback");
    h->value = ngx_http_llm_tiers[tier];
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/* the JSON string content of src: dst has room for 6 bytes a byte */



const char *
ngx_http_llm_fallback_tier_name(ngx_http_llm_ctx_t *ctx)
{
    return (const char *)
           ngx_http_llm_tiers[ngx_http_llm_fallback_tier(ctx)].data;
}


/* a cache hit of the primary location is the cache tier */

static ngx_uint_t
ngx_http_llm_fallback_tier(ngx_http_llm_ctx_t *ctx)
{
    return (ctx->cache_hit && ctx->fb.tier == NGX_HTTP_LLM_TIER_PRIMARY)
           ? NGX_HTTP_LLM_TIER_CACHE : ctx->fb.tier;
}


/* $llm_tier */

ngx_int_t
ngx_http_llm_tier_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_uint_t           tier;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL || !ctx->inspected) {
        v->not_found = 1;
        return NGX_OK;
    }

    tier = ngx_http_llm_fallback_tier(ctx);

    v->data = ngx_http_llm_tiers[tier].data;
    v->len = ngx_http_llm_tiers[tier].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
