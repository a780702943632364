
/*
 * Copyright (C) ngx_llm authors
 *
 * Metrics in shared memory, served in the Prometheus text format.
 *
 * The zone holds one slot per model: "none" (no model known), up to
 * "models=" models named by clients, first come first served, and "other"
 * for every model after that or whose name is not a plain identifier, so
 * the label cardinality is bounded whatever clients send. Keys never
 * become labels. Every figure is an atomic add: workers never wait for
 * each other; a model's slot is claimed once under the zone's mutex.
 *
 * Upstream attempts are also counted by upstream group, without a model:
 * up to "upstreams=" group names, taken from nginx.conf (never from a
 * request) first come first served, then "other".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"


#define NGX_HTTP_LLM_METRICS_NAME_LEN   64
#define NGX_HTTP_LLM_METRICS_APIS       5       /* NGX_HTTP_LLM_API_* */
#define NGX_HTTP_LLM_METRICS_CLASSES    6       /* none, 1xx .. 5xx */
#define NGX_HTTP_LLM_METRICS_OUTCOMES   6       /* NGX_HTTP_LLM_OUTCOME_* */
#define NGX_HTTP_LLM_METRICS_CACHE      8       /* statuses + coalesced */
#define NGX_HTTP_LLM_METRICS_COALESCED  7
#define NGX_HTTP_LLM_METRICS_LIMIT      4       /* NGX_HTTP_LLM_LIMIT_* */
#define NGX_HTTP_LLM_METRICS_TOKENS     5
#define NGX_HTTP_LLM_METRICS_BUCKETS    12      /* the last one is +Inf */
#define NGX_HTTP_LLM_METRICS_TIERS      4       /* NGX_HTTP_LLM_TIER_* */

#define NGX_HTTP_LLM_METRICS_MAX_MODELS 1000
#define NGX_HTTP_LLM_METRICS_MAX_GROUPS 1000
#define NGX_HTTP_LLM_METRICS_GROUPS     32      /* upstreams= default */
#define NGX_HTTP_LLM_METRICS_LINE       256     /* bytes, one series */


typedef struct {
    ngx_atomic_t                bucket[NGX_HTTP_LLM_METRICS_BUCKETS];
    ngx_atomic_t                sum;            /* ms */
} ngx_http_llm_metrics_hist_t;


typedef struct {
    ngx_atomic_t                hash;           /* 0: slot free */
    size_t                      len;
    u_char                      name[NGX_HTTP_LLM_METRICS_NAME_LEN];

    ngx_atomic_t                requests[NGX_HTTP_LLM_METRICS_APIS]
                                        [NGX_HTTP_LLM_METRICS_CLASSES];
    ngx_atomic_t                outcomes[NGX_HTTP_LLM_METRICS_OUTCOMES];
    ngx_atomic_t                cache[NGX_HTTP_LLM_METRICS_CACHE];
    ngx_atomic_t                limit[NGX_HTTP_LLM_METRICS_LIMIT];
    ngx_atomic_t                tokens[NGX_HTTP_LLM_METRICS_TOKENS];
    ngx_atomic_t                upstream[NGX_HTTP_LLM_METRICS_CLASSES];
    ngx_atomic_t                retries[NGX_HTTP_LLM_RETRY_REASONS];
    ngx_http_llm_metrics_hist_t ttft;
    ngx_http_llm_metrics_hist_t duration;
} ngx_http_llm_metrics_slot_t;


/* an upstream group: attempts by response status class */
typedef struct {
    ngx_atomic_t                hash;           /* 0: group free */
    size_t                      len;
    u_char                      name[NGX_HTTP_LLM_METRICS_NAME_LEN];
    ngx_atomic_t                requests[NGX_HTTP_LLM_METRICS_CLASSES];
} ngx_http_llm_metrics_group_t;


/*
 * slots: [0] "none", [1 .. max] named, [max + 1] "other";
 * groups, after the slots: [0 .. groups_max - 1] named, [groups_max] "other"
 */
typedef struct {
    ngx_uint_t                  max;
    ngx_atomic_t                used;           /* named slots claimed */
    ngx_atomic_t                fallback[NGX_HTTP_LLM_METRICS_TIERS];
    ngx_atomic_t                hops;           /* fallback chain hops */
    ngx_uint_t                  groups_max;
    ngx_atomic_t                groups_used;    /* named groups claimed */
    ngx_http_llm_metrics_group_t  *groups;
    ngx_http_llm_metrics_slot_t slots[1];
} ngx_http_llm_metrics_shctx_t;


struct ngx_http_llm_metrics_zone_s {
    ngx_http_llm_metrics_shctx_t  *sh;
    ngx_slab_pool_t               *shpool;
    ngx_uint_t                     max;
    ngx_uint_t                     groups;      /* upstreams= */
};


/* the zone's layout: the slots, then the groups */
#define ngx_http_llm_metrics_zone_size(max, groups)                          \
    (sizeof(ngx_http_llm_metrics_shctx_t)                                     \
     + ((max) + 1) * sizeof(ngx_http_llm_metrics_slot_t)                      \
     + ((groups) + 1) * sizeof(ngx_http_llm_metrics_group_t))


static ngx_int_t ngx_http_llm_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_llm_metrics_slot_t *ngx_http_llm_metrics_slot(
    ngx_http_llm_metrics_zone_t *zone, ngx_str_t *model);
static ngx_http_llm_metrics_group_t *ngx_http_llm_metrics_group(
    ngx_http_llm_metrics_zone_t *zone, ngx_http_upstream_srv_conf_t *uscf);
static void ngx_http_llm_metrics_count_upstreams(ngx_http_request_t *r,
    ngx_http_llm_metrics_zone_t *zone, ngx_http_llm_ctx_t *ctx);
static void ngx_http_llm_metrics_observe(ngx_http_llm_metrics_hist_t *h,
    ngx_msec_int_t ms);
static ngx_uint_t ngx_http_llm_metrics_class(ngx_uint_t status);
static ngx_uint_t ngx_http_llm_metrics_cache_status(ngx_http_request_t *r,
    ngx_http_llm_metrics_conf_t *mcf);
static ngx_int_t ngx_http_llm_metrics_handler(ngx_http_request_t *r);
static u_char *ngx_http_llm_metrics_hist(u_char *p, const char *name,
    ngx_http_llm_metrics_slot_t *slot, ngx_http_llm_metrics_hist_t *h);
static ngx_int_t ngx_http_llm_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_metrics_send(ngx_http_request_t *r,
    ngx_str_t *type, ngx_chain_t *out, off_t len);


/* the shared memory tag: zones of this feature, not of another one */
static ngx_uint_t  ngx_http_llm_metrics_tag;


/* upper bounds of the histogram buckets, ms; the last one is +Inf */
static ngx_msec_int_t  ngx_http_llm_metrics_bounds[] = {
    25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, -1
};

static const char  *ngx_http_llm_metrics_le[] = {
    "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",
    "60", "+Inf"
};

static const char  *ngx_http_llm_metrics_apis[] = {
    "unknown", "chat", "completions", "embeddings", "messages"
};

static const char  *ngx_http_llm_metrics_classes[] = {
    "none", "1xx", "2xx", "3xx", "4xx", "5xx"
};

static const char  *ngx_http_llm_metrics_outcomes[] = {
    "none", "complete", "incomplete", "aborted", "error", "rejected"
};

/* the $llm_cache_status values, in the order of NGX_HTTP_LLM_CACHE_* */
static ngx_str_t  ngx_http_llm_metrics_cache_statuses[] = {
    ngx_null_string,
    ngx_string("MISS"),
    ngx_string("BYPASS"),
    ngx_string("EXPIRED"),
    ngx_string("STALE"),
    ngx_string("UPDATING"),
    ngx_string("HIT")
};

static const char  *ngx_http_llm_metrics_cache_labels[] = {
    "none", "miss", "bypass", "expired", "stale", "updating", "hit",
    "coalesced"
};

static const char  *ngx_http_llm_metrics_limits[] = {
    "none", "passed", "rejected", "rejected_dry_run"
};

static const char  *ngx_http_llm_metrics_tiers[] = {
    "primary", "fallback", "stale", "template"
};

static const char  *ngx_http_llm_metrics_directions[] = {
    "prompt", "cached", "cache_write", "completion", "reasoning"
};


/* the most series one slot adds to each family */
static ngx_uint_t  ngx_http_llm_metrics_series[] = {
    NGX_HTTP_LLM_METRICS_APIS * NGX_HTTP_LLM_METRICS_CLASSES,
    NGX_HTTP_LLM_METRICS_OUTCOMES,
    NGX_HTTP_LLM_METRICS_CACHE,
    NGX_HTTP_LLM_METRICS_LIMIT,
    NGX_HTTP_LLM_METRICS_TOKENS,
    NGX_HTTP_LLM_METRICS_CLASSES,
    NGX_HTTP_LLM_METRICS_BUCKETS + 2,
    NGX_HTTP_LLM_METRICS_BUCKETS + 2,
    NGX_HTTP_LLM_RETRY_REASONS,
    0,                          /* per group: see the handler */
    0,
    0,
    0,
    0,
    0
};


static ngx_http_llm_metrics_family_t  ngx_http_llm_metrics_families[] = {
    { "llm_requests_total", "counter",
      "Requests by model, client API and response status class." },
    { "llm_request_outcomes_total", "counter",
      "Requests by how the answer ended." },
    { "llm_cache_requests_total", "counter",
      "Response cache lookups by result; coalesced also counts as hit." },
    { "llm_rate_limit_decisions_total", "counter",
      "Rate limit admission results." },
    { "llm_tokens_total", "counter",
      "Tokens by direction; prompt includes cached and cache_write, "
      "completion includes reasoning." },
    { "llm_upstream_responses_total", "counter",
      "Upstream attempts by response status class (none: no response)." },
    { "llm_ttft_seconds", "histogram",
      "Time from the request to the first output token." },
    { "llm_request_duration_seconds", "histogram",
      "Time from the request to the end of the answer." },
    { "llm_upstream_retries_total", "counter",
      "Tries given up for the next upstream server (llm_retry), by "
      "reason." },
    { "llm_upstream_requests_total", "counter",
      "Upstream attempts by upstream group and response status class "
      "(none: no response); groups past upstreams= count as \"other\"." },
    { "llm_metrics_models", "gauge",
      "Models with their own label; later ones count as \"other\"." },
    { "llm_metrics_models_limit", "gauge",
      "The models= limit of llm_metrics_zone." },
    { "llm_fallback_total", "counter",
      "Requests answered by a tier past the primary upstream group." },
    { "llm_fallback_hops_total", "counter",
      "Moves to the next location of an llm_fallback chain." }
};


/* llm_metrics_zone name:size [models=number] [upstreams=number] */

char *
ngx_http_llm_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_main_conf_t *lmcf = conf;

    u_char                       *p;
    ssize_t                       size;
    ngx_int_t                     n;
    ngx_str_t                    *value, name, s;
    ngx_uint_t                    i, max, groups;
    ngx_shm_zone_t               *shm_zone;
    ngx_http_llm_metrics_zone_t  *zone;

    if (lmcf->metrics.shm_zone) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_metrics_zone\" is duplicate, one zone "
                           "holds the metrics of every location");
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\" in \"llm_metrics_zone\", "
                           "it must be \"name:size\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - name.data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\" in "
                           "\"llm_metrics_zone\", it must be at least %uz",
                           &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    max = 20;
    groups = NGX_HTTP_LLM_METRICS_GROUPS;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "models=", 7) == 0) {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);

            if (n == NGX_ERROR || n > NGX_HTTP_LLM_METRICS_MAX_MODELS) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"llm_metrics_zone\", "
                                   "it must be a number from 0 to %d",
                                   &value[i],
                                   NGX_HTTP_LLM_METRICS_MAX_MODELS);
                return NGX_CONF_ERROR;
            }

            max = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "upstreams=", 10) == 0) {
            n = ngx_atoi(value[i].data + 10, value[i].len - 10);

            if (n == NGX_ERROR || n > NGX_HTTP_LLM_METRICS_MAX_GROUPS) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"llm_metrics_zone\", "
                                   "it must be a number from 0 to %d",
                                   &value[i],
                                   NGX_HTTP_LLM_METRICS_MAX_GROUPS);
                return NGX_CONF_ERROR;
            }

            groups = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in "
                           "\"llm_metrics_zone\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if ((size_t) size < ngx_http_llm_metrics_zone_size(max, groups)
                        + 4 * ngx_pagesize)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "llm_metrics_zone \"%V\" is too small for "
                           "models=%ui upstreams=%ui, it needs at least %uzk",
                           &name, max, groups,
                           (ngx_http_llm_metrics_zone_size(max, groups)
                            + 4 * ngx_pagesize) / 1024 + 1);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_llm_metrics_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_metrics_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->max = max;
    zone->groups = groups;

    shm_zone->init = ngx_http_llm_metrics_init_zone;
    shm_zone->data = zone;

    lmcf->metrics.shm_zone = shm_zone;

    return NGX_CONF_OK;
}


/* llm_metrics: the location answers with the metrics */

char *
ngx_http_llm_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_llm_module);
    lmcf->metrics.used = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_llm_metrics_handler;

    return NGX_CONF_OK;
}


/*
 * llm_status [metrics=uri] [sidecar=uri]: the location answers with the
 * status page; its script polls "metrics" (default "metrics", relative to
 * the page) and, when given, the sidecar's metrics for the spend
 */

char *
ngx_http_llm_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_loc_conf_t *llcf = conf;

    u_char                    *p;
    ngx_str_t                 *value, metrics, sidecar, *uri;
    ngx_uint_t                 i, j;
    ngx_http_core_loc_conf_t  *clcf;

    if (llcf->status.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_str_set(&metrics, "metrics");
    ngx_str_null(&sidecar);

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "metrics=", 8) == 0) {
            uri = &metrics;
            uri->data = value[i].data + 8;
            uri->len = value[i].len - 8;

        } else if (ngx_strncmp(value[i].data, "sidecar=", 8) == 0) {
            uri = &sidecar;
            uri->data = value[i].data + 8;
            uri->len = value[i].len - 8;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"llm_status\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        /* the URIs go into the page's script: plain characters only */

        for (j = 0; j < uri->len; j++) {
            if (uri->data[j] <= ' ' || uri->data[j] >= 0x7f
                || ngx_strchr("\"'<>\\`", uri->data[j]))
            {
                break;
            }
        }

        if (uri->len == 0 || j < uri->len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid URI in \"%V\" of \"llm_status\", "
                               "it must be a non-empty URI without quotes, "
                               "angle brackets or spaces", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    /* the page with its settings in front of the script */

    llcf->status.len = sizeof("<script>var LLM_METRICS=\"\",LLM_SIDECAR=\"\";"
                              "</script>\n") - 1
                       + metrics.len + sidecar.len
                       + ngx_http_llm_status_page_len;

    llcf->status.data = ngx_pnalloc(cf->pool, llcf->status.len);
    if (llcf->status.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(llcf->status.data, ngx_http_llm_status_page,
                   ngx_http_llm_status_page_len);
    p = ngx_sprintf(p, "<script>var LLM_METRICS=\"%V\",LLM_SIDECAR=\"%V\";"
                    "</script>\n", &metrics, &sidecar);

    llcf->status.len = p - llcf->status.data;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_llm_status_handler;

    return NGX_CONF_OK;
}


char *
ngx_http_llm_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_llm_metrics_conf_t *mcf)
{
    ngx_str_t                     name;
    ngx_shm_zone_t               *shm_zone;
    ngx_http_llm_metrics_zone_t  *zone;

    if (mcf->shm_zone == NULL && mcf->used) {

        /* "llm_metrics" without a zone: the default one */

        ngx_str_set(&name, "llm_metrics");

        shm_zone = ngx_shared_memory_add(cf, &name, 256 * 1024,
                                         &ngx_http_llm_metrics_tag);
        if (shm_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_metrics_zone_t));
        if (zone == NULL) {
            return NGX_CONF_ERROR;
        }

        zone->max = 20;
        zone->groups = NGX_HTTP_LLM_METRICS_GROUPS;

        shm_zone->init = ngx_http_llm_metrics_init_zone;
        shm_zone->data = zone;

        mcf->shm_zone = shm_zone;
    }

    if (mcf->shm_zone) {
        ngx_str_set(&name, "llm_cache_status");

        mcf->cache_status = ngx_http_get_variable_index(cf, &name);
        if (mcf->cache_status == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_llm_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_llm_metrics_zone_t  *ozone = data;

    size_t                        size;
    ngx_http_llm_metrics_zone_t  *zone;

    zone = shm_zone->data;
    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (ozone) {
        zone->sh = ozone->sh;

    } else if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
    }

    if (zone->sh
        && zone->sh->max == zone->max
        && zone->sh->groups_max == zone->groups)
    {
        /* reload with an unchanged zone: the counters carry on */
        return NGX_OK;
    }

    /*
     * a new zone, or another "models=" or "upstreams=": new slots and
     * groups (old workers finish with the old ones, which stay allocated)
     */

    size = ngx_http_llm_metrics_zone_size(zone->max, zone->groups);

    zone->sh = ngx_slab_calloc(zone->shpool, size);
    if (zone->sh == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "llm_metrics_zone \"%V\" is too small for models=%ui "
                      "upstreams=%ui: increase its size",
                      &shm_zone->shm.name, zone->max, zone->groups);
        return NGX_ERROR;
    }

    zone->sh->max = zone->max;
    zone->sh->groups_max = zone->groups;
    zone->sh->groups = (ngx_http_llm_metrics_group_t *)
                           &zone->sh->slots[zone->max + 2];
    zone->shpool->data = zone->sh;

    ngx_memcpy(zone->sh->groups[zone->groups].name, "other", 5);
    zone->sh->groups[zone->groups].len = 5;
    zone->sh->groups[zone->groups].hash = 1;

    ngx_memcpy(zone->sh->slots[0].name, "none", 4);
    zone->sh->slots[0].len = 4;
    zone->sh->slots[0].hash = 1;

    ngx_memcpy(zone->sh->slots[zone->max + 1].name, "other", 5);
    zone->sh->slots[zone->max + 1].len = 5;
    zone->sh->slots[zone->max + 1].hash = 1;

    return NGX_OK;
}


void
ngx_http_llm_metrics_account(ngx_http_request_t *r)
{
    ngx_uint_t                    i, api, cls, status;
    int64_t                       tokens[NGX_HTTP_LLM_METRICS_TOKENS];
    ngx_http_llm_ctx_t           *ctx;
    ngx_http_upstream_state_t    *state;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_metrics_slot_t  *slot;
    ngx_http_llm_metrics_zone_t  *zone;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_module);

    if (lmcf->metrics.shm_zone == NULL) {
        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL) {
        return;
    }

    zone = lmcf->metrics.shm_zone->data;

    slot = ngx_http_llm_metrics_slot(zone, &ctx->model);

    api = ctx->api < NGX_HTTP_LLM_METRICS_APIS ? ctx->api : 0;
    cls = ngx_http_llm_metrics_class(r->headers_out.status);

    (void) ngx_atomic_fetch_add(&slot->requests[api][cls], 1);
    (void) ngx_atomic_fetch_add(&slot->outcomes[ctx->outcome
                                              % NGX_HTTP_LLM_METRICS_OUTCOMES],
                                1);

    status = ngx_http_llm_metrics_cache_status(r, &lmcf->metrics);

    if (status != NGX_HTTP_LLM_CACHE_NONE) {
        (void) ngx_atomic_fetch_add(&slot->cache[status], 1);
    }

    if (ctx->cache_coalesced) {
        (void) ngx_atomic_fetch_add(
                   &slot->cache[NGX_HTTP_LLM_METRICS_COALESCED], 1);
    }

    if (ctx->limit.status != NGX_HTTP_LLM_LIMIT_NONE) {
        (void) ngx_atomic_fetch_add(&slot->limit[ctx->limit.status], 1);
    }

    if (ctx->usage_source != NGX_HTTP_LLM_USAGE_NONE) {
        tokens[0] = ctx->usage.prompt_tokens;
        tokens[1] = ctx->usage.cached_tokens;
        tokens[2] = ctx->usage.cache_write_tokens;
        tokens[3] = ctx->usage.completion_tokens;
        tokens[4] = ctx->usage.reasoning_tokens;

        for (i = 0; i < NGX_HTTP_LLM_METRICS_TOKENS; i++) {
            if (tokens[i] > 0) {
                (void) ngx_atomic_fetch_add(&slot->tokens[i],
                                            (ngx_atomic_int_t) tokens[i]);
            }
        }
    }

    if (r->upstream_states) {
        state = r->upstream_states->elts;

        for (i = 0; i < r->upstream_states->nelts; i++) {
            if (state[i].peer == NULL) {
                /* a separator between upstream groups */
                continue;
            }

            cls = ngx_http_llm_metrics_class(state[i].status);
            (void) ngx_atomic_fetch_add(&slot->upstream[cls], 1);
        }
    }

    ngx_http_llm_metrics_count_upstreams(r, zone, ctx);

    if (ctx->retry) {
        for (i = 0; i < NGX_HTTP_LLM_RETRY_REASONS; i++) {
            if (ctx->retry->reasons[i]) {
                (void) ngx_atomic_fetch_add(&slot->retries[i],
                                            ctx->retry->reasons[i]);
            }
        }
    }

    if (ctx->fb.tier != NGX_HTTP_LLM_TIER_PRIMARY
        && ctx->fb.tier < NGX_HTTP_LLM_METRICS_TIERS)
    {
        (void) ngx_atomic_fetch_add(&zone->sh->fallback[ctx->fb.tier], 1);
    }

    if (ctx->fb.hops) {
        (void) ngx_atomic_fetch_add(&zone->sh->hops, ctx->fb.hops);
    }

    if (ctx->ttft && ctx->start) {
        ngx_http_llm_metrics_observe(&slot->ttft,
                                     (ngx_msec_int_t) (ctx->ttft
                                                       - ctx->start));
    }

    if (ctx->end && ctx->start) {
        ngx_http_llm_metrics_observe(&slot->duration,
                                     (ngx_msec_int_t) (ctx->end
                                                       - ctx->start));
    }

    /* the usage spool and the link: ngx_http_llm_sidecar_metrics() */
}


/*
 * A hop of the fallback chain, before the next location replaces
 * r->upstream: the attempts so far go to the group that failed.
 */

void
ngx_http_llm_metrics_upstream_hop(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx)
{
    ngx_http_llm_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_module);

    if (lmcf->metrics.shm_zone == NULL) {
        return;
    }

    ngx_http_llm_metrics_count_upstreams(r, lmcf->metrics.shm_zone->data,
                                         ctx);
}


/*
 * The upstream attempts not counted yet (those since the last hop) count
 * for the group of r->upstream: they are its tries, the earlier groups'
 * were counted at their hops.
 */

static void
ngx_http_llm_metrics_count_upstreams(ngx_http_request_t *r,
    ngx_http_llm_metrics_zone_t *zone, ngx_http_llm_ctx_t *ctx)
{
    ngx_uint_t                     i, cls;
    ngx_http_upstream_state_t     *state;
    ngx_http_upstream_srv_conf_t  *uscf;
    ngx_http_llm_metrics_group_t  *group;

    if (r->upstream_states == NULL
        || ctx->upstream_counted >= r->upstream_states->nelts)
    {
        return;
    }

    uscf = r->upstream ? r->upstream->upstream : NULL;
    group = ngx_http_llm_metrics_group(zone, uscf);

    state = r->upstream_states->elts;

    for (i = ctx->upstream_counted; i < r->upstream_states->nelts; i++) {
        if (state[i].peer == NULL) {
            /* a separator between upstream groups */
            continue;
        }

        cls = ngx_http_llm_metrics_class(state[i].status);
        (void) ngx_atomic_fetch_add(&group->requests[cls], 1);
    }

    ctx->upstream_counted = r->upstream_states->nelts;
}


/*
 * The row of an upstream group: its own while there is room, else
 * "other"; so is an address of a proxy_pass with variables that names no
 * group (uscf NULL) and a name that would need escaping as a label. The
 * name of an implicit group (proxy_pass to an address) carries its port.
 */

static ngx_http_llm_metrics_group_t *
ngx_http_llm_metrics_group(ngx_http_llm_metrics_zone_t *zone,
    ngx_http_upstream_srv_conf_t *uscf)
{
    u_char                         c, *p;
    u_char                         name[NGX_HTTP_LLM_METRICS_NAME_LEN
                                        + sizeof(":65535")];
    size_t                         len;
    ngx_uint_t                     i, used, hash;
    ngx_http_llm_metrics_group_t  *group, *other;
    ngx_http_llm_metrics_shctx_t  *sh;

    sh = zone->sh;
    other = &sh->groups[sh->groups_max];

    if (uscf == NULL || uscf->host.len == 0
        || uscf->host.len >= NGX_HTTP_LLM_METRICS_NAME_LEN)
    {
        return other;
    }

    p = ngx_cpymem(name, uscf->host.data, uscf->host.len);

    if (uscf->port) {
        p = ngx_sprintf(p, ":%d", (int) uscf->port);
    }

    len = p - name;

    if (len >= NGX_HTTP_LLM_METRICS_NAME_LEN) {
        return other;
    }

    for (i = 0; i < len; i++) {
        c = name[i];

        if (c <= ' ' || c >= 0x7f || c == '"' || c == '\\') {
            return other;
        }
    }

    if (len == 5 && ngx_strncmp(name, "other", 5) == 0) {
        return other;
    }

    hash = ngx_hash_key(name, len) | 2;

    for ( ;; ) {
        used = sh->groups_used;

        for (i = 0; i < used; i++) {
            group = &sh->groups[i];

            if (group->hash == hash && group->len == len
                && ngx_strncmp(group->name, name, len) == 0)
            {
                return group;
            }
        }

        if (used >= sh->groups_max) {
            return other;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        if (sh->groups_used != used) {
            /* another worker claimed a row meanwhile: look again */
            ngx_shmtx_unlock(&zone->shpool->mutex);
            continue;
        }

        group = &sh->groups[used];

        ngx_memcpy(group->name, name, len);
        group->len = len;
        group->hash = hash;

        ngx_memory_barrier();

        sh->groups_used = used + 1;

        ngx_shmtx_unlock(&zone->shpool->mutex);

        return group;
    }
}


/*
 * The slot of a model: its own while there is room and its name is a plain
 * identifier, else "other"; "none" without a model.
 */

static ngx_http_llm_metrics_slot_t *
ngx_http_llm_metrics_slot(ngx_http_llm_metrics_zone_t *zone,
    ngx_str_t *model)
{
    u_char                         c;
    ngx_uint_t                     i, used, hash;
    ngx_http_llm_metrics_slot_t   *slot, *other;
    ngx_http_llm_metrics_shctx_t  *sh;

    sh = zone->sh;
    other = &sh->slots[zone->max + 1];

    if (model->len == 0) {
        return &sh->slots[0];
    }

    if (model->len >= NGX_HTTP_LLM_METRICS_NAME_LEN) {
        return other;
    }

    for (i = 0; i < model->len; i++) {
        c = model->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || ngx_strchr("._-:/@+", c)))
        {
            return other;
        }
    }

    if ((model->len == 4 && ngx_strncmp(model->data, "none", 4) == 0)
        || (model->len == 5 && ngx_strncmp(model->data, "other", 5) == 0))
    {
        return other;
    }

    hash = ngx_hash_key(model->data, model->len) | 2;

    for ( ;; ) {
        used = sh->used;

        for (i = 1; i <= used; i++) {
            slot = &sh->slots[i];

            if (slot->hash == hash && slot->len == model->len
                && ngx_strncmp(slot->name, model->data, model->len) == 0)
            {
                return slot;
            }
        }

        if (used >= zone->max) {
            return other;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        if (sh->used != used) {
            /* another worker claimed a slot meanwhile: look again */
            ngx_shmtx_unlock(&zone->shpool->mutex);
            continue;
        }

        slot = &sh->slots[used + 1];

        ngx_memcpy(slot->name, model->data, model->len);
        slot->len = model->len;
        slot->hash = hash;

        ngx_memory_barrier();

        sh->used = used + 1;

        ngx_shmtx_unlock(&zone->shpool->mutex);

        return slot;
    }
}


static void
ngx_http_llm_metrics_observe(ngx_http_llm_metrics_hist_t *h,
    ngx_msec_int_t ms)
{
    ngx_uint_t  i;

    if (ms < 0) {
        ms = 0;
    }

    for (i = 0; i < NGX_HTTP_LLM_METRICS_BUCKETS - 1; i++) {
        if (ms <= ngx_http_llm_metrics_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&h->bucket[i], 1);
    (void) ngx_atomic_fetch_add(&h->sum, (ngx_atomic_int_t) ms);
}


static ngx_uint_t
ngx_http_llm_metrics_class(ngx_uint_t status)
{
    return (status >= 100 && status < 600) ? status / 100 : 0;
}


static ngx_uint_t
ngx_http_llm_metrics_cache_status(ngx_http_request_t *r,
    ngx_http_llm_metrics_conf_t *mcf)
{
    ngx_uint_t                  i;
    ngx_http_variable_value_t  *v;

    v = ngx_http_get_indexed_variable(r, mcf->cache_status);

    if (v == NULL || v->not_found || v->len == 0) {
        return NGX_HTTP_LLM_CACHE_NONE;
    }

    for (i = 1; i <= NGX_HTTP_LLM_CACHE_HIT; i++) {
        if (ngx_http_llm_metrics_cache_statuses[i].len == v->len
            && ngx_strncmp(ngx_http_llm_metrics_cache_statuses[i].data,
                           v->data, v->len) == 0)
        {
            return i;
        }
    }

    return NGX_HTTP_LLM_CACHE_NONE;
}


/* the exposition: one family after another, every slot within it */

static ngx_int_t
ngx_http_llm_metrics_handler(ngx_http_request_t *r)
{
    off_t                          len;
    u_char                        *p;
    size_t                         size;
    ngx_buf_t                     *b;
    ngx_str_t                      type;
    ngx_uint_t                     f, i, j, k, nslots, used, groups;
    ngx_chain_t                   *out, **ll;
    ngx_atomic_uint_t              n;
    ngx_http_llm_main_conf_t      *lmcf;
    ngx_http_llm_metrics_slot_t   *slot;
    ngx_http_llm_metrics_zone_t   *zone;
    ngx_http_llm_metrics_group_t  *group;
    ngx_http_llm_metrics_family_t *fam;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_module);
    zone = lmcf->metrics.shm_zone->data;

    used = zone->sh->used;
    nslots = used + 2;

    groups = zone->sh->groups_used;

    out = NULL;
    ll = &out;
    len = 0;

    for (f = 0; f < sizeof(ngx_http_llm_metrics_families)
                    / sizeof(ngx_http_llm_metrics_family_t); f++)
    {
        fam = &ngx_http_llm_metrics_families[f];

        size = 512 + nslots * ngx_http_llm_metrics_series[f]
                     * NGX_HTTP_LLM_METRICS_LINE;

        if (f == 9) {
            size += (groups + 1) * NGX_HTTP_LLM_METRICS_CLASSES
                    * NGX_HTTP_LLM_METRICS_LINE;
        }

        b = ngx_create_temp_buf(r->pool, size);
        if (b == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_http_llm_metrics_family(b->last, fam);

        for (i = 0; i < nslots; i++) {
            slot = (i == nslots - 1) ? &zone->sh->slots[zone->max + 1]
                                     : &zone->sh->slots[i];

            switch (f) {

            case 0:
                for (j = 0; j < NGX_HTTP_LLM_METRICS_APIS; j++) {
                    for (k = 0; k < NGX_HTTP_LLM_METRICS_CLASSES; k++) {
                        n = slot->requests[j][k];
                        if (n) {
                            p = ngx_sprintf(p, "%s{model=\"%*s\",api=\"%s\","
                                            "status=\"%s\"} %uA\n",
                                            fam->name, slot->len, slot->name,
                                            ngx_http_llm_metrics_apis[j],
                                            ngx_http_llm_metrics_classes[k],
                                            n);
                        }
                    }
                }
                break;

            case 1:
                for (j = 0; j < NGX_HTTP_LLM_METRICS_OUTCOMES; j++) {
                    n = slot->outcomes[j];
                    if (n) {
                        p = ngx_sprintf(p, "%s{model=\"%*s\",outcome=\"%s\"}"
                                        " %uA\n", fam->name, slot->len,
                                        slot->name,
                                        ngx_http_llm_metrics_outcomes[j], n);
                    }
                }
                break;

            case 2:
                for (j = 1; j < NGX_HTTP_LLM_METRICS_CACHE; j++) {
                    n = slot->cache[j];
                    if (n) {
                        p = ngx_sprintf(p, "%s{model=\"%*s\",status=\"%s\"}"
                                        " %uA\n", fam->name, slot->len,
                                        slot->name,
                                        ngx_http_llm_metrics_cache_labels[j],
                                        n);
                    }
                }
                break;

            case 3:
                for (j = 1; j < NGX_HTTP_LLM_METRICS_LIMIT; j++) {
                    n = slot->limit[j];
                    if (n) {
                        p = ngx_sprintf(p, "%s{model=\"%*s\",result=\"%s\"}"
                                        " %uA\n", fam->name, slot->len,
                                        slot->name,
                                        ngx_http_llm_metrics_limits[j], n);
                    }
                }
                break;

            case 4:
                for (j = 0; j < NGX_HTTP_LLM_METRICS_TOKENS; j++) {
                    n = slot->tokens[j];
                    if (n) {
                        p = ngx_sprintf(p, "%s{model=\"%*s\","
                                        "direction=\"%s\"} %uA\n", fam->name,
                                        slot->len, slot->name,
                                        ngx_http_llm_metrics_directions[j],
                                        n);
                    }
                }
                break;

            case 5:
                for (j = 0; j < NGX_HTTP_LLM_METRICS_CLASSES; j++) {
                    n = slot->upstream[j];
                    if (n) {
                        p = ngx_sprintf(p, "%s{model=\"%*s\",status=\"%s\"}"
                                        " %uA\n", fam->name, slot->len,
                                        slot->name,
                                        ngx_http_llm_metrics_classes[j], n);
                    }
                }
                break;

            case 6:
                p = ngx_http_llm_metrics_hist(p, fam->name, slot,
                                              &slot->ttft);
                break;

            case 7:
                p = ngx_http_llm_metrics_hist(p, fam->name, slot,
                                              &slot->duration);
                break;

            case 8:
                for (j = 0; j < NGX_HTTP_LLM_RETRY_REASONS; j++) {
                    n = slot->retries[j];
                    if (n) {
                        p = ngx_sprintf(p, "%s{model=\"%*s\",reason=\"%s\"}"
                                        " %uA\n", fam->name, slot->len,
                                        slot->name,
                                        ngx_http_llm_retry_reasons[j], n);
                    }
                }
                break;

            default:
                break;
            }
        }

        if (f == 9) {
            for (i = 0; i <= groups; i++) {
                group = (i == groups) ? &zone->sh->groups[zone->sh->groups_max]
                                      : &zone->sh->groups[i];

                for (j = 0; j < NGX_HTTP_LLM_METRICS_CLASSES; j++) {
                    n = group->requests[j];
                    if (n) {
                        p = ngx_sprintf(p, "%s{upstream=\"%*s\","
                                        "status=\"%s\"} %uA\n", fam->name,
                                        group->len, group->name,
                                        ngx_http_llm_metrics_classes[j], n);
                    }
                }
            }

        } else if (f == 10) {
            p = ngx_sprintf(p, "%s %ui\n", fam->name, used);

        } else if (f == 11) {
            p = ngx_sprintf(p, "%s %ui\n", fam->name, zone->max);

        } else if (f == 12) {
            for (j = NGX_HTTP_LLM_TIER_FALLBACK;
                 j < NGX_HTTP_LLM_METRICS_TIERS;
                 j++)
            {
                p = ngx_sprintf(p, "%s{tier=\"%s\"} %uA\n", fam->name,
                                ngx_http_llm_metrics_tiers[j],
                                zone->sh->fallback[j]);
            }

        } else if (f == 13) {
            p = ngx_sprintf(p, "%s %uA\n", fam->name, zone->sh->hops);
        }

        b->last = p;

        ll = ngx_http_llm_metrics_append(r, ll, b, &len);
        if (ll == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ll = ngx_http_llm_balancer_metrics(r, ll, &len);    /* llm_balance */
    if (ll == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ll = ngx_http_llm_sidecar_metrics(r, ll, &len);     /* usage spool */
    if (ll == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ll = NULL;

    ngx_str_set(&type, "text/plain; version=0.0.4; charset=utf-8");

    return ngx_http_llm_metrics_send(r, &type, out, len);
}


u_char *
ngx_http_llm_metrics_family(u_char *p, ngx_http_llm_metrics_family_t *f)
{
    return ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n",
                       f->name, f->help, f->name, f->type);
}


ngx_chain_t **
ngx_http_llm_metrics_append(ngx_http_request_t *r, ngx_chain_t **ll,
    ngx_buf_t *b, off_t *len)
{
    ngx_chain_t  *cl;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    *ll = cl;
    *len += b->last - b->pos;

    return &cl->next;
}


static u_char *
ngx_http_llm_metrics_hist(u_char *p, const char *name,
    ngx_http_llm_metrics_slot_t *slot, ngx_http_llm_metrics_hist_t *h)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  n, sum;

    n = 0;

    for (i = 0; i < NGX_HTTP_LLM_METRICS_BUCKETS; i++) {
        n += h->bucket[i];
    }

    if (n == 0) {
        return p;
    }

    n = 0;

    for (i = 0; i < NGX_HTTP_LLM_METRICS_BUCKETS; i++) {
        n += h->bucket[i];
        p = ngx_sprintf(p, "%s_bucket{model=\"%*s\",le=\"%s\"} %uA\n",
                        name, slot->len, slot->name,
                        ngx_http_llm_metrics_le[i], n);
    }

    sum = h->sum;

    p = ngx_sprintf(p, "%s_sum{model=\"%*s\"} %uA.%03uA\n",
                    name, slot->len, slot->name, sum / 1000, sum % 1000);

    return ngx_sprintf(p, "%s_count{model=\"%*s\"} %uA\n",
                       name, slot->len, slot->name, n);
}


static ngx_int_t
ngx_http_llm_status_handler(ngx_http_request_t *r)
{
    ngx_buf_t                *b;
    ngx_str_t                 type;
    ngx_chain_t              *out;
    ngx_http_llm_loc_conf_t  *llcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    b = ngx_calloc_buf(r->pool);
    out = ngx_alloc_chain_link(r->pool);

    if (b == NULL || out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = llcf->status.data;
    b->last = llcf->status.data + llcf->status.len;
    b->memory = 1;

    out->buf = b;
    out->next = NULL;

    ngx_str_set(&type, "text/html; charset=utf-8");

    return ngx_http_llm_metrics_send(r, &type, out, llcf->status.len);
}


static ngx_int_t
ngx_http_llm_metrics_send(ngx_http_request_t *r, ngx_str_t *type,
    ngx_chain_t *out, off_t len)
{
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;

    for (cl = out; cl->next; cl = cl->next) { /* void */ }

    cl->buf->last_buf = (r == r->main) ? 1 : 0;
    cl->buf->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}
