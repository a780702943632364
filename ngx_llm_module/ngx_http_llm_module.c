
/*
 * Copyright (C) ngx_llm authors
 *
 * Registration: directives, configuration create / merge (every default is
 * written once, here, in merge), phase handlers and filters.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"


static ngx_int_t ngx_http_llm_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_llm_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_llm_init_process(ngx_cycle_t *cycle);
static void ngx_http_llm_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_llm_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_llm_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_llm_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_llm_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_llm_max_json_depth(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_llm_min_size(ngx_conf_t *cf, void *post, void *data);
static char *ngx_http_llm_set_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_enum_t  ngx_http_llm_apis[] = {
    { ngx_string("auto"), NGX_HTTP_LLM_API_AUTO },
    { ngx_string("chat"), NGX_HTTP_LLM_API_CHAT },
    { ngx_string("completions"), NGX_HTTP_LLM_API_COMPLETIONS },
    { ngx_string("embeddings"), NGX_HTTP_LLM_API_EMBEDDINGS },
    { ngx_string("messages"), NGX_HTTP_LLM_API_MESSAGES },
    { ngx_null_string, 0 }
};


static ngx_conf_post_t  ngx_http_llm_max_json_depth_post =
    { ngx_http_llm_max_json_depth };

static ngx_conf_post_t  ngx_http_llm_min_size_post =
    { ngx_http_llm_min_size };


static ngx_command_t  ngx_http_llm_commands[] = {

    { ngx_string("llm_balance"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ngx_http_llm_balance,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_gateway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, enable),
      NULL },

    { ngx_string("llm_api"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_llm_set_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, api),
      &ngx_http_llm_apis },

    { ngx_string("llm_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, key),
      NULL },

    { ngx_string("llm_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, max_body_size),
      &ngx_http_llm_min_size_post },

    { ngx_string("llm_max_json_depth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, max_json_depth),
      &ngx_http_llm_max_json_depth_post },

    { ngx_string("llm_stream_usage"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, stream_usage),
      NULL },

    { ngx_string("llm_response_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, response_max_size),
      &ngx_http_llm_min_size_post },

    { ngx_string("llm_sse_event_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, sse_event_max_size),
      &ngx_http_llm_min_size_post },

    { ngx_string("llm_cache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_llm_cache_zone,
      0,
      0,
      NULL },

    { ngx_string("llm_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_llm_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_cache_valid"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, cache.valid),
      NULL },

    { ngx_string("llm_cache_scope"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_llm_cache_scope,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_cache_bypass"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_set_predicate_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, cache.bypass),
      NULL },

    { ngx_string("llm_cache_no_store"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_set_predicate_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, cache.no_store),
      NULL },

    { ngx_string("llm_cache_deterministic"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, cache.deterministic),
      NULL },

    { ngx_string("llm_cache_lock"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, cache.lock),
      NULL },

    { ngx_string("llm_cache_lock_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, cache.lock_timeout),
      NULL },

    { ngx_string("llm_cache_use_stale"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, cache.use_stale),
      &ngx_http_llm_cache_use_stale_masks },

    { ngx_string("llm_cache_replay_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, cache.replay_rate),
      NULL },

    { ngx_string("llm_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_llm_limit_zone_directive,
      0,
      0,
      NULL },

    { ngx_string("llm_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_llm_limit_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, limit),
      NULL },

    { ngx_string("llm_limit_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, limit.status),
      &ngx_http_llm_limit_status_bounds },

    { ngx_string("llm_limit_dry_run"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, limit.dry_run),
      NULL },

    { ngx_string("llm_limit_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, limit.log_level),
      &ngx_http_llm_limit_log_levels },

    { ngx_string("llm_metrics_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_llm_metrics_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_llm_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_sidecar"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_llm_sidecar_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("llm_team"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, link.team),
      NULL },

    { ngx_string("llm_route"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_llm_route_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, link),
      NULL },

    { ngx_string("llm_retry"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_http_llm_retry_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, retry.enable),
      NULL },

    { ngx_string("llm_first_token_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, retry.first_token_timeout),
      NULL },

    { ngx_string("llm_fallback"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_llm_fallback_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, fallback),
      NULL },

    { ngx_string("llm_fallback_stale"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, fallback.stale),
      NULL },

    { ngx_string("llm_fallback_template"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_llm_fallback_template_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_llm_loc_conf_t, fallback),
      NULL },

    { ngx_string("llm_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_llm_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_llm_module_ctx = {
    ngx_http_llm_preconfiguration,         /* preconfiguration */
    ngx_http_llm_postconfiguration,        /* postconfiguration */

    ngx_http_llm_create_main_conf,         /* create main configuration */
    ngx_http_llm_init_main_conf,           /* init main configuration */

    ngx_http_llm_balancer_create_srv_conf, /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_llm_create_loc_conf,          /* create location configuration */
    ngx_http_llm_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_llm_module = {
    NGX_MODULE_V1,
    &ngx_http_llm_module_ctx,              /* module context */
    ngx_http_llm_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_llm_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_llm_exit_process,             /* exit process */
    ngx_http_llm_sidecar_exit_master,      /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_llm_preconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_llm_cache_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_llm_limit_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_llm_sidecar_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_llm_add_variables(cf);
}


static ngx_int_t
ngx_http_llm_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /* the named locations of llm_fallback exist now */

    if (ngx_http_llm_fallback_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * the body is read in the precontent phase: after access checks
     * (auth_request, allow / deny) so that unauthenticated callers cannot
     * make the gateway read and parse bodies, and before the content
     * handler (proxy_pass) that forwards it
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_llm_body_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_llm_usage_log_handler;

    /* the cache's filters run after the stream watcher's */

    if (ngx_http_llm_cache_init_filters(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the rate limit headers: on every response of limited locations */

    if (ngx_http_llm_limit_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_llm_sse_init_filters(cf);
}


static ngx_int_t
ngx_http_llm_init_process(ngx_cycle_t *cycle)
{
    if (ngx_http_llm_request_id_init(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_llm_cache_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_llm_sidecar_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_llm_limit_init_process(cycle);
}


static void
ngx_http_llm_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_llm_cache_exit_process(cycle);
    ngx_http_llm_limit_exit_process(cycle);
}


static void *
ngx_http_llm_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    return lmcf;
}


static char *
ngx_http_llm_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_llm_main_conf_t  *lmcf = conf;

    return ngx_http_llm_metrics_init_conf(cf, &lmcf->metrics);
}


static void *
ngx_http_llm_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_llm_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->key = NULL;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->api = NGX_CONF_UNSET_UINT;
    conf->max_body_size = NGX_CONF_UNSET_SIZE;
    conf->max_json_depth = NGX_CONF_UNSET_UINT;
    conf->stream_usage = NGX_CONF_UNSET;
    conf->response_max_size = NGX_CONF_UNSET_SIZE;
    conf->sse_event_max_size = NGX_CONF_UNSET_SIZE;
    ngx_http_llm_cache_create_conf(&conf->cache);
    ngx_http_llm_limit_create_conf(&conf->limit);
    ngx_http_llm_retry_create_conf(&conf->retry);
    ngx_http_llm_fallback_create_conf(&conf->fallback);

    return conf;
}


static char *
ngx_http_llm_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_llm_loc_conf_t *prev = parent;
    ngx_http_llm_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_uint_value(conf->api, prev->api, NGX_HTTP_LLM_API_AUTO);

    if (conf->key == NULL) {
        conf->key = prev->key;
    }

    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size,
                              8 * 1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_json_depth, prev->max_json_depth, 64);
    ngx_conf_merge_value(conf->stream_usage, prev->stream_usage, 1);
    ngx_conf_merge_size_value(conf->response_max_size,
                              prev->response_max_size, 4 * 1024 * 1024);
    ngx_conf_merge_size_value(conf->sse_event_max_size,
                              prev->sse_event_max_size, 64 * 1024);

    if (ngx_http_llm_limit_merge_conf(cf, &prev->limit, &conf->limit)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_llm_sidecar_merge_conf(cf, &prev->link, &conf->link)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_llm_retry_merge_conf(cf, &prev->retry, &conf->retry)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_llm_fallback_merge_conf(cf, &prev->fallback,
                                         &conf->fallback)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    conf->balance_wait = ngx_http_llm_balancer_wait_conf(cf);

    return ngx_http_llm_cache_merge_conf(cf, &prev->cache, &conf->cache);
}


static char *
ngx_http_llm_max_json_depth(ngx_conf_t *cf, void *post, void *data)
{
    ngx_uint_t  *np = data;

    if (*np < 2 || *np > NGX_HTTP_LLM_INSPECT_MAX_DEPTH) {
        return "must be between 2 and 128";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_llm_min_size(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *sp = data;

    if (*sp < 1024) {
        return "must be at least 1k";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_llm_set_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *rv;

    rv = ngx_conf_set_enum_slot(cf, cmd, conf);

    if (rv == NGX_CONF_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_api\" must be \"auto\", \"chat\", "
                           "\"completions\", \"embeddings\" or "
                           "\"messages\"");
    }

    return rv;
}


/*
 * n in decimal at p (NGX_INT64_LEN bytes at most), the end returned:
 * ngx_sprintf("%uL") without the format parsing, for the numbers every
 * request writes (Content-Length, x-ratelimit-*)
 */

u_char *
ngx_http_llm_uint(u_char *p, uint64_t n)
{
    u_char  *d;
    u_char   tmp[NGX_INT64_LEN];

    d = tmp + sizeof(tmp);

    do {
        *--d = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    while (d < tmp + sizeof(tmp)) {
        *p++ = *d++;
    }

    return p;
}
