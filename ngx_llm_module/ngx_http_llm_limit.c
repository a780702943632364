
/*
 * Copyright (C) ngx_llm authors
 *
 * Rate limiting glue: the llm_limit_zone / llm_limit directives, the
 * shared memory state (slab + rbtree keyed by a hash of the key, LRU
 * queue, expire-then-retry, reload-safe), admission after inspection,
 * the rate limit response headers, settle / release of reservations,
 * in-stream metering and cut-off, and the Redis synchronisation of
 * global limits. The bucket arithmetic is ngx_http_llm_limiter.c.
 *
 * Keys are never stored nor logged: a node is found by the XXH3-128 of
 * the key (and model), and logs show 12 hex digits of that hash.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"
#include "ngx_http_llm_redis.h"

#define XXH_INLINE_ALL
#include <xxhash.h>


#define NGX_HTTP_LLM_LIMIT_SYNC_BATCH    4096
#define NGX_HTTP_LLM_LIMIT_SYNC_SLACK    1000    /* ms, workers' clocks */
#define NGX_HTTP_LLM_LIMIT_EVICT_SCAN    32


/*
 * One key's state: 120 bytes, a 128 byte slab chunk. The struct overlays
 * the ngx_rbtree_node_t from its "color" member on, as limit_req does.
 */

struct ngx_http_llm_limit_node_s {
    u_char                      color;
    u_char                      dirty;          /* changed since sync */
    u_short                     streams;        /* streams in flight */
    uint32_t                    refs;           /* requests holding it */
    ngx_queue_t                 queue;
    uint64_t                    hash2;
    ngx_http_llm_limiter_t      lim;            /* lim.last: last touch */
    uint32_t                    rate[NGX_HTTP_LLM_LIMITER_DIMS];
    int32_t                     pending[NGX_HTTP_LLM_LIMITER_DIMS];
};


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;
} ngx_http_llm_limit_shctx_t;


struct ngx_http_llm_limit_zone_s {
    ngx_http_llm_limit_shctx_t *sh;
    ngx_slab_pool_t            *shpool;
    ngx_str_t                   name;

    /* Redis sync, in worker 0 only */
    ngx_addr_t                 *sync;
    ngx_msec_t                  sync_interval;
    ngx_http_llm_redis_t       *redis;
    ngx_event_t                 sync_ev;
    ngx_uint_t                  inflight;
    void                       *items;          /* the round in flight */
    ngx_msec_t                  synced;         /* last good batch start */
    ngx_msec_t                  batch_start;
    unsigned                    batch_ok:1;
    unsigned                    batch_partial:1;
    unsigned                    sha_loading:1;
    u_char                      sha[41];
};


typedef struct {
    ngx_http_llm_limit_zone_t  *zone;
    uint64_t                    hash;
    uint64_t                    hash2;
    int64_t                     delta;
    int64_t                     seed;       /* node level before delta */
    int                         dim;
} ngx_http_llm_limit_sync_item_t;


static ngx_int_t ngx_http_llm_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_llm_limit_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_llm_limit_node_t *ngx_http_llm_limit_lookup(
    ngx_http_llm_limit_zone_t *zone, uint64_t hash, uint64_t hash2);
static ngx_http_llm_limit_node_t *ngx_http_llm_limit_get(
    ngx_http_llm_limit_zone_t *zone, ngx_http_llm_limit_t *limit,
    uint64_t hash, uint64_t hash2, ngx_msec_t now);
static void ngx_http_llm_limit_expire(ngx_http_llm_limit_zone_t *zone,
    ngx_msec_t now, ngx_uint_t force);
static ngx_int_t ngx_http_llm_limit_reject(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_limit_t *limit, int dim,
    uint64_t wait, uint64_t hash);
static void ngx_http_llm_limit_charge(ngx_http_llm_limit_hold_t *hold,
    int d, int64_t tokens, ngx_uint_t *over);
static void ngx_http_llm_limit_release(ngx_http_llm_limit_ctx_t *lctx,
    ngx_uint_t rollback);
static void ngx_http_llm_limit_cleanup(void *data);
static void ngx_http_llm_limit_note(ngx_http_llm_limit_ctx_t *lctx,
    ngx_http_llm_limit_t *limit, ngx_http_llm_limit_node_t *node);
static ngx_int_t ngx_http_llm_limit_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_limit_add_header(ngx_http_request_t *r,
    const char *name, u_char *value, size_t len);
static ngx_int_t ngx_http_llm_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_llm_limit_sync_handler(ngx_event_t *ev);
static void ngx_http_llm_limit_sync(ngx_http_llm_limit_zone_t *zone);
static void ngx_http_llm_limit_sync_reply(ngx_http_llm_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_llm_limit_sha_reply(ngx_http_llm_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_llm_limit_sync_done(ngx_http_llm_limit_zone_t *zone);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

/* the shared memory tag: zones of this feature, not of another one */
static ngx_uint_t  ngx_http_llm_limit_tag;

static ngx_str_t  ngx_http_llm_limit_statuses[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("REJECTED"),
    ngx_string("REJECTED_DRY_RUN")
};

ngx_conf_enum_t  ngx_http_llm_limit_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};

ngx_conf_num_bounds_t  ngx_http_llm_limit_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};

static const char  *ngx_http_llm_limit_dim_names[] = {
    "requests per min (RPM)",
    "tokens per min (TPM)",
    "output tokens per min (OTPM)"
};


/*
 * Global bucket in Redis, one hash per key and dimension: refills with
 * Redis's clock, takes the node's delta, returns the level (1/60000
 * tokens). Idle buckets expire after two minutes (full after one). A
 * bucket Redis does not have (first use, or Redis restarted empty after
 * an outage) starts at the sending node's level before its delta, so
 * what the node admitted meanwhile is not forgotten.
 */

static const char  ngx_http_llm_limit_script[] =
    "local rate = tonumber(ARGV[1]) "
    "local cap = rate * 60000 "
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local v = redis.call('HMGET', KEYS[1], 'l', 't') "
    "local l = tonumber(v[1]) or math.min(cap, tonumber(ARGV[3]) or cap) "
    "local ts = tonumber(v[2]) or now "
    "if now > ts then l = math.min(cap, l + (now - ts) * rate) "
    "else now = ts end "
    "l = math.min(cap, l - tonumber(ARGV[2]) * 60000) "
    "redis.call('HSET', KEYS[1], 'l', string.format('%.0f', l), "
    "'t', string.format('%.0f', now)) "
    "redis.call('PEXPIRE', KEYS[1], 120000) "
    "return string.format('%.0f', l)";


/* configuration */

char *
ngx_http_llm_limit_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    u_char                     *p;
    ssize_t                     size;
    ngx_str_t                  *value, name, s;
    ngx_msec_t                  interval;
    ngx_uint_t                  i;
    ngx_addr_t                 *sync;
    ngx_shm_zone_t             *shm_zone;
    ngx_http_llm_limit_zone_t  *zone;

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\" in \"llm_limit_zone\", "
                           "it must be \"name:size\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - name.data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\" in \"llm_limit_zone\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "llm_limit_zone \"%V\" is too small, it must be "
                           "at least %uz", &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    sync = NULL;
    interval = 100;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "sync=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            sync = ngx_pcalloc(cf->pool, sizeof(ngx_addr_t));
            if (sync == NULL) {
                return NGX_CONF_ERROR;
            }

            if (ngx_http_llm_redis_parse_url(cf, &s, sync) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "sync_interval=", 14) == 0) {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;

            interval = ngx_parse_time(&s, 0);

            if (interval == (ngx_msec_t) NGX_ERROR || interval < 10
                || interval > 60000)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"llm_limit_zone\", "
                                   "it must be a time from 10ms to 60s",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"llm_limit_zone\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_llm_limit_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate llm_limit_zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_limit_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->name = name;
    zone->sync = sync;
    zone->sync_interval = interval;

    shm_zone->init = ngx_http_llm_limit_init_zone;
    shm_zone->data = zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_llm_limit_number(ngx_conf_t *cf, ngx_str_t *arg, size_t skip,
    ngx_uint_t max, ngx_uint_t *out)
{
    ngx_int_t  n;

    n = ngx_atoi(arg->data + skip, arg->len - skip);

    if (n == NGX_ERROR || n == 0 || (ngx_uint_t) n > max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"%V\" in \"llm_limit\", it must be a "
                           "number from 1 to %ui", arg, max);
        return NGX_ERROR;
    }

    *out = (ngx_uint_t) n;

    return NGX_OK;
}


char *
ngx_http_llm_limit_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_limit_conf_t *lc = (void *) ((char *) conf + cmd->offset);

    ngx_str_t                         *value, s;
    ngx_uint_t                         i, rpm, tpm, itpm, otpm;
    ngx_http_llm_limit_t              *limit;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (lc->limits == NULL) {
        lc->limits = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_http_llm_limit_t));
        if (lc->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (lc->limits->nelts == NGX_HTTP_LLM_LIMIT_MAX_HOLDS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many \"llm_limit\" directives, at most %d "
                           "per level", NGX_HTTP_LLM_LIMIT_MAX_HOLDS);
        return NGX_CONF_ERROR;
    }

    limit = ngx_array_push(lc->limits);
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(limit, sizeof(ngx_http_llm_limit_t));

    limit->output_default = 512;
    rpm = tpm = itpm = otpm = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            limit->shm_zone = ngx_shared_memory_add(cf, &s, 0,
                                                    &ngx_http_llm_limit_tag);
            if (limit->shm_zone == NULL) {
                return NGX_CONF_ERROR;
            }

            if (limit->shm_zone->data == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "unknown llm_limit_zone \"%V\": declare "
                                   "it with \"llm_limit_zone\" at http "
                                   "level before it is used", &s);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "key=", 4) == 0) {
            ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ccv.cf = cf;
            ccv.value = &s;
            ccv.complex_value = &limit->key;

            if (s.len == 0
                || ngx_http_compile_complex_value(&ccv) != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"llm_limit\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

#define ngx_http_llm_limit_param(p, max, var)                                 \
        if (ngx_strncmp(value[i].data, p, sizeof(p) - 1) == 0) {              \
            if (ngx_http_llm_limit_number(cf, &value[i], sizeof(p) - 1, max,  \
                                          &var)                               \
                != NGX_OK)                                                    \
            {                                                                 \
                return NGX_CONF_ERROR;                                        \
            }                                                                 \
            continue;                                                         \
        }

        ngx_http_llm_limit_param("rpm=", 0xffffffff, rpm);
        ngx_http_llm_limit_param("tpm=", 0xffffffff, tpm);
        ngx_http_llm_limit_param("itpm=", 0xffffffff, itpm);
        ngx_http_llm_limit_param("otpm=", 0xffffffff, otpm);
        ngx_http_llm_limit_param("streams=", 0xffff, limit->streams);
        ngx_http_llm_limit_param("output_default=", 0x7fffffff,
                                 limit->output_default);

#undef ngx_http_llm_limit_param

        if (value[i].len == 9
            && ngx_strncmp(value[i].data, "per_model", 9) == 0)
        {
            limit->per_model = 1;
            continue;
        }

        if (value[i].len == 6
            && ngx_strncmp(value[i].data, "cutoff", 6) == 0)
        {
            limit->cutoff = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"llm_limit\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (limit->shm_zone == NULL || limit->key.value.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_limit\" needs \"zone=\" and \"key=\"");
        return NGX_CONF_ERROR;
    }

    if (tpm && (itpm || otpm)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_limit\" takes \"tpm=\" or "
                           "\"itpm=\" / \"otpm=\", not both");
        return NGX_CONF_ERROR;
    }

    if (rpm == 0 && tpm == 0 && itpm == 0 && otpm == 0
        && limit->streams == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_limit\" needs at least one of \"rpm=\", "
                           "\"tpm=\", \"itpm=\", \"otpm=\", \"streams=\"");
        return NGX_CONF_ERROR;
    }

    if (limit->cutoff && tpm == 0 && otpm == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"cutoff\" in \"llm_limit\" needs \"tpm=\" or "
                           "\"otpm=\"");
        return NGX_CONF_ERROR;
    }

    limit->split = (itpm || otpm);
    limit->seed = XXH3_64bits(limit->key.value.data, limit->key.value.len);

    limit->rate[NGX_HTTP_LLM_LIMITER_REQ] = (uint32_t) rpm;
    limit->rate[NGX_HTTP_LLM_LIMITER_TOK] = (uint32_t) (tpm ? tpm : itpm);
    limit->rate[NGX_HTTP_LLM_LIMITER_OUT] = (uint32_t) otpm;

    return NGX_CONF_OK;
}


void
ngx_http_llm_limit_create_conf(ngx_http_llm_limit_conf_t *conf)
{
    conf->limits = NULL;
    conf->status = NGX_CONF_UNSET_UINT;
    conf->log_level = NGX_CONF_UNSET_UINT;
    conf->dry_run = NGX_CONF_UNSET;
}


char *
ngx_http_llm_limit_merge_conf(ngx_conf_t *cf, ngx_http_llm_limit_conf_t *prev,
    ngx_http_llm_limit_conf_t *conf)
{
    if (conf->limits == NULL) {
        conf->limits = prev->limits;
    }

    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_ERR);
    ngx_conf_merge_value(conf->dry_run, prev->dry_run, 0);

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_llm_limit_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_llm_limit_header_filter;

    return NGX_OK;
}


ngx_int_t
ngx_http_llm_limit_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    static ngx_str_t  name = ngx_string("llm_limit_status");

    var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_llm_limit_status_variable;

    return NGX_OK;
}


/* shared memory */

static ngx_int_t
ngx_http_llm_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_llm_limit_zone_t  *ozone = data;

    size_t                      len;
    ngx_http_llm_limit_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        /* reload with an unchanged zone: the state carries on */
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
                              sizeof(ngx_http_llm_limit_shctx_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_llm_limit_rbtree_insert_value);
    ngx_queue_init(&zone->sh->queue);

    len = sizeof(" in llm_limit_zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in llm_limit_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone evicts the oldest idle key: not worth a log line */
    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_llm_limit_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_llm_limit_node_t   *n, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            n = (ngx_http_llm_limit_node_t *) &node->color;
            t = (ngx_http_llm_limit_node_t *) &temp->color;

            p = (n->hash2 < t->hash2) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_http_llm_limit_node_t *
ngx_http_llm_limit_lookup(ngx_http_llm_limit_zone_t *zone, uint64_t hash,
    uint64_t hash2)
{
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_llm_limit_node_t  *ln;

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        ln = (ngx_http_llm_limit_node_t *) &node->color;

        if (hash2 == ln->hash2) {
            return ln;
        }

        node = (hash2 < ln->hash2) ? node->left : node->right;
    }

    return NULL;
}


/* finds or creates the node of a key; the zone is locked */

static ngx_http_llm_limit_node_t *
ngx_http_llm_limit_get(ngx_http_llm_limit_zone_t *zone,
    ngx_http_llm_limit_t *limit, uint64_t hash, uint64_t hash2,
    ngx_msec_t now)
{
    size_t                      size;
    ngx_rbtree_node_t          *node;
    ngx_http_llm_limit_node_t  *ln;

    ln = ngx_http_llm_limit_lookup(zone, hash, hash2);

    if (ln) {
        ngx_queue_remove(&ln->queue);
        ngx_queue_insert_head(&zone->sh->queue, &ln->queue);
        ngx_memcpy(ln->rate, limit->rate, sizeof(ln->rate));
        return ln;
    }

    ngx_http_llm_limit_expire(zone, now, 0);

    size = offsetof(ngx_rbtree_node_t, color)
           + sizeof(ngx_http_llm_limit_node_t);

    node = ngx_slab_alloc_locked(zone->shpool, size);

    if (node == NULL) {
        ngx_http_llm_limit_expire(zone, now, 1);

        node = ngx_slab_alloc_locked(zone->shpool, size);
        if (node == NULL) {
            return NULL;
        }
    }

    node->key = hash;

    ln = (ngx_http_llm_limit_node_t *) &node->color;

    ln->dirty = 0;
    ln->streams = 0;
    ln->refs = 0;
    ln->hash2 = hash2;
    ngx_memcpy(ln->rate, limit->rate, sizeof(ln->rate));
    ngx_memzero(ln->pending, sizeof(ln->pending));
    ngx_http_llm_limiter_init(&ln->lim, ln->rate, now);

    ngx_rbtree_insert(&zone->sh->rbtree, node);
    ngx_queue_insert_head(&zone->sh->queue, &ln->queue);

    return ln;
}


/*
 * Idle keys (full buckets, nothing in flight, nothing to sync) go from
 * the tail of the LRU, two at a time; "force" (the zone is full) evicts
 * the oldest key that no request holds, idle or not.
 */

static void
ngx_http_llm_limit_expire(ngx_http_llm_limit_zone_t *zone, ngx_msec_t now,
    ngx_uint_t force)
{
    ngx_uint_t                  n, scanned;
    ngx_queue_t                *q, *prev;
    ngx_rbtree_node_t          *node;
    ngx_http_llm_limit_node_t  *ln;

    n = 0;
    scanned = 0;

    for (q = ngx_queue_last(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue) && n < 2;
         q = prev)
    {
        prev = ngx_queue_prev(q);

        ln = ngx_queue_data(q, ngx_http_llm_limit_node_t, queue);

        if (ln->refs || ln->streams) {
            if (!force || ++scanned == NGX_HTTP_LLM_LIMIT_EVICT_SCAN) {
                return;
            }

            continue;
        }

        if (!force
            && (ln->dirty
                || !ngx_http_llm_limiter_idle(&ln->lim, ln->rate, now)))
        {
            return;
        }

        ngx_queue_remove(q);

        node = (ngx_rbtree_node_t *)
                   ((u_char *) ln - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&zone->sh->rbtree, node);
        ngx_slab_free_locked(zone->shpool, node);

        n++;

        if (force) {
            return;
        }
    }
}


/* admission: after inspection, before the cache and proxy_pass */

ngx_int_t
ngx_http_llm_limit_admit(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    int                         refused;
    int64_t                     need[NGX_HTTP_LLM_LIMITER_DIMS], in, out;
    uint64_t                    wait, hash, hash2;
    ngx_str_t                   key;
    ngx_msec_t                  now;
    ngx_uint_t                  i, n;
    ngx_pool_cleanup_t         *cln;
    XXH128_hash_t               h;
    ngx_http_llm_limit_t       *limits, *limit;
    ngx_http_llm_limit_ctx_t   *lctx;
    ngx_http_llm_limit_hold_t  *hold;
    ngx_http_llm_limit_zone_t  *zone;
    ngx_http_llm_limit_node_t  *node;
    ngx_http_llm_loc_conf_t    *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (llcf->limit.limits == NULL) {
        return NGX_DECLINED;
    }

    lctx = &ctx->limit;
    limits = llcf->limit.limits->elts;
    n = llcf->limit.limits->nelts;

    lctx->holds = ngx_pcalloc(r->pool, n * sizeof(ngx_http_llm_limit_hold_t));
    if (lctx->holds == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_llm_limit_cleanup;
    cln->data = lctx;

    lctx->status = NGX_HTTP_LLM_LIMIT_PASSED;

    in = (int64_t) ctx->req.prompt_tokens;
    now = ngx_current_msec;

    for (i = 0; i < n; i++) {
        limit = &limits[i];
        zone = limit->shm_zone->data;

        if (ngx_http_complex_value(r, &limit->key, &key) != NGX_OK) {
            ngx_http_llm_limit_release(lctx, 1);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (key.len == 0) {
            /* like limit_req: an empty key is not limited */
            continue;
        }

        /* limits with different key expressions never share a bucket */
        h = XXH3_128bits_withSeed(key.data, key.len, limit->seed);

        if (limit->per_model) {
            h = XXH3_128bits_withSeed(ctx->model.data, ctx->model.len,
                                      h.low64 ^ h.high64);
        }

        hash = h.low64;
        hash2 = h.high64;

        if (ctx->api == NGX_HTTP_LLM_API_EMBEDDINGS) {
            out = 0;

        } else if (ctx->req.max_tokens > 0) {
            out = (int64_t) ctx->req.max_tokens;

        } else {
            out = (int64_t) limit->output_default;
        }

        ngx_memzero(need, sizeof(need));

        need[NGX_HTTP_LLM_LIMITER_REQ] = 1;

        if (limit->split) {
            need[NGX_HTTP_LLM_LIMITER_TOK] = in;
            need[NGX_HTTP_LLM_LIMITER_OUT] = out;

        } else {
            need[NGX_HTTP_LLM_LIMITER_TOK] = in + out;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        node = ngx_http_llm_limit_get(zone, limit, hash, hash2, now);

        if (node == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);

            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "llm limit zone \"%V\" is full of keys in use, "
                          "request not limited: increase its size",
                          &zone->name);
            continue;
        }

        node->dirty = 1;

        if (ctx->req.stream == 1 && limit->streams
            && node->streams >= limit->streams)
        {
            ngx_http_llm_limiter_refill(&node->lim, node->rate, now);
            refused = -2;
            wait = 1000;

        } else {
            refused = ngx_http_llm_limiter_reserve(&node->lim, node->rate,
                                                   need, now, &wait);
        }

        if (refused != -1) {
            ngx_http_llm_limit_note(lctx, limit, node);
            ngx_shmtx_unlock(&zone->shpool->mutex);

            if (llcf->limit.dry_run) {
                lctx->status = NGX_HTTP_LLM_LIMIT_REJECTED_DRY_RUN;

                ngx_log_error(llcf->limit.log_level, r->connection->log, 0,
                              "llm limit would reject (dry run) on %s of "
                              "zone \"%V\", key %012xL, retry in %uL ms",
                              refused == -2 ? "concurrent streams"
                                  : ngx_http_llm_limit_dim_names[refused],
                              &zone->name, hash >> 16, wait);
                continue;
            }

            /* a rejection consumes none of the other limits */
            ngx_http_llm_limit_release(lctx, 1);

            return ngx_http_llm_limit_reject(r, ctx, limit, refused, wait,
                                             hash);
        }

        hold = &lctx->holds[lctx->nholds++];

        hold->limit = limit;
        hold->node = node;
        ngx_memcpy(hold->charged, need, sizeof(need));
        hold->out = out;

        node->refs++;

        if (ctx->req.stream == 1 && limit->streams) {
            node->streams++;
            hold->stream = 1;
            lctx->streams = 1;
        }

        if (zone->sync) {
            node->pending[0] += (int32_t) need[0];
            node->pending[1] += (int32_t) need[1];
            node->pending[2] += (int32_t) need[2];
        }

        ngx_http_llm_limit_note(lctx, limit, node);

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    lctx->headers = 1;

    return NGX_DECLINED;
}


/* the rate limit figures of the tightest limit, for the headers */

static void
ngx_http_llm_limit_note(ngx_http_llm_limit_ctx_t *lctx,
    ngx_http_llm_limit_t *limit, ngx_http_llm_limit_node_t *node)
{
    int       d, k;
    uint64_t  remaining;

    for (d = 0; d < NGX_HTTP_LLM_LIMITER_DIMS; d++) {
        if (limit->rate[d] == 0) {
            continue;
        }

        /* OpenAI has one "tokens" figure: input or output, the tighter */
        k = (d == NGX_HTTP_LLM_LIMITER_REQ) ? 0 : 1;

        remaining = ngx_http_llm_limiter_remaining(&node->lim, node->rate, d);

        if (lctx->hdr_rate[k] && remaining >= lctx->hdr_remaining[k]) {
            continue;
        }

        lctx->hdr_rate[k] = limit->rate[d];
        lctx->hdr_remaining[k] = remaining;
        lctx->hdr_reset[k] = ngx_http_llm_limiter_reset(&node->lim,
                                                        node->rate, d);
    }

    lctx->headers = 1;
}


static ngx_int_t
ngx_http_llm_limit_reject(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_limit_t *limit, int dim, uint64_t wait, uint64_t hash)
{
    size_t                     len;
    u_char                     buf[NGX_HTTP_LLM_LIMITER_DURATION_LEN];
    u_char                    *p;
    ngx_int_t                  rc;
    const char                *what, *type;
    ngx_http_llm_limit_zone_t *zone;
    ngx_http_llm_loc_conf_t   *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);
    zone = limit->shm_zone->data;

    ctx->limit.status = NGX_HTTP_LLM_LIMIT_REJECTED;
    ctx->limit.retry_after = wait;
    ctx->limit.headers = 1;

    if (dim == -2) {
        what = "concurrent streams";
        type = "requests";

    } else {
        what = ngx_http_llm_limit_dim_names[dim];
        type = (dim == NGX_HTTP_LLM_LIMITER_REQ) ? "requests" : "tokens";

        if (dim == NGX_HTTP_LLM_LIMITER_TOK && limit->split) {
            what = "input tokens per min (ITPM)";
        }
    }

    ngx_log_error(llcf->limit.log_level, r->connection->log, 0,
                  "llm limit rejected a %s request on %s of zone \"%V\", "
                  "key %012xL, retry in %uL ms",
                  ngx_http_llm_api_name(ctx->api), what, &zone->name,
                  hash >> 16, wait);

    /* retry-after in whole seconds rounded up, and in milliseconds */

    p = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_sprintf(p, "%uL", (wait + 999) / 1000) - p;

    if (ngx_http_llm_limit_add_header(r, "retry-after", p, len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p += len;
    len = ngx_sprintf(p, "%uL", wait) - p;

    if (ngx_http_llm_limit_add_header(r, "retry-after-ms", p, len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_http_llm_limiter_duration(buf, wait);

    ctx->outcome = NGX_HTTP_LLM_OUTCOME_REJECTED;

    if (dim == -2) {
        rc = ngx_http_llm_send_error(r, ctx->api, llcf->limit.status, type,
                 "rate_limit_exceeded", NULL,
                 "Rate limit reached for concurrent streams: Limit %ui. "
                 "Please try again when a stream has finished.",
                 limit->streams);

    } else {
        rc = ngx_http_llm_send_error(r, ctx->api, llcf->limit.status, type,
                 "rate_limit_exceeded", NULL,
                 "Rate limit reached%s%V on %s: Limit %uD. "
                 "Please try again in %*s.",
                 limit->per_model ? " for " : "",
                 limit->per_model ? &ctx->model
                                  : &ngx_http_llm_limit_statuses[0],
                 what, limit->rate[dim], len, buf);
    }

    ctx->outcome = NGX_HTTP_LLM_OUTCOME_REJECTED;

    return rc;
}


static ngx_int_t
ngx_http_llm_limit_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = value;
    h->value.len = len;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/* charges a hold's node; the zone is locked */

static void
ngx_http_llm_limit_charge(ngx_http_llm_limit_hold_t *hold, int d,
    int64_t tokens, ngx_uint_t *over)
{
    ngx_http_llm_limit_zone_t  *zone;
    ngx_http_llm_limit_node_t  *node;

    node = hold->node;
    zone = hold->limit->shm_zone->data;

    if (ngx_http_llm_limiter_charge(&node->lim, node->rate, d, tokens)
        && over)
    {
        *over = 1;
    }

    hold->charged[d] += tokens;
    node->dirty = 1;

    if (zone->sync) {
        node->pending[d] += (int32_t) tokens;
    }
}


/*
 * Settle at the log phase: the reservation becomes the real usage (from
 * upstream, or estimated); what nothing generated is given back.
 */

void
ngx_http_llm_limit_settle(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    int64_t                     in, out, used[NGX_HTTP_LLM_LIMITER_DIMS];
    ngx_uint_t                  i;
    ngx_http_llm_limit_ctx_t   *lctx;
    ngx_http_llm_limit_hold_t  *hold;
    ngx_http_llm_limit_zone_t  *zone;

    lctx = &ctx->limit;

    if (lctx->settled || lctx->nholds == 0) {
        return;
    }

    lctx->settled = 1;

    in = 0;
    out = 0;

    if (ctx->usage_source != NGX_HTTP_LLM_USAGE_NONE && !ctx->cache_hit) {
        in = ngx_max(ctx->usage.prompt_tokens, 0);
        out = ngx_max(ctx->usage.completion_tokens, 0);
    }

    for (i = 0; i < lctx->nholds; i++) {
        hold = &lctx->holds[i];

        if (hold->node == NULL) {
            continue;
        }

        zone = hold->limit->shm_zone->data;

        used[NGX_HTTP_LLM_LIMITER_REQ] = 1;

        if (hold->limit->split) {
            used[NGX_HTTP_LLM_LIMITER_TOK] = in;
            used[NGX_HTTP_LLM_LIMITER_OUT] = out;

        } else {
            used[NGX_HTTP_LLM_LIMITER_TOK] = in + out;
            used[NGX_HTTP_LLM_LIMITER_OUT] = 0;
        }

        ngx_shmtx_lock(&zone->shpool->mutex);

        ngx_http_llm_limiter_refill(&hold->node->lim, hold->node->rate,
                                    ngx_current_msec);

        ngx_http_llm_limit_charge(hold, NGX_HTTP_LLM_LIMITER_TOK,
                             used[NGX_HTTP_LLM_LIMITER_TOK]
                             - hold->charged[NGX_HTTP_LLM_LIMITER_TOK], NULL);
        ngx_http_llm_limit_charge(hold, NGX_HTTP_LLM_LIMITER_OUT,
                             used[NGX_HTTP_LLM_LIMITER_OUT]
                             - hold->charged[NGX_HTTP_LLM_LIMITER_OUT], NULL);

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm limit: settled to prompt %L completion %L "
                   "in %ui limits", in, out, lctx->nholds);

    ngx_http_llm_limit_release(lctx, 0);
}


/*
 * Lets go of the nodes: stream slots and references; with "rollback"
 * (a later limit refused) the reservations are given back too.
 */

static void
ngx_http_llm_limit_release(ngx_http_llm_limit_ctx_t *lctx,
    ngx_uint_t rollback)
{
    int                         d;
    ngx_uint_t                  i;
    ngx_http_llm_limit_hold_t  *hold;
    ngx_http_llm_limit_zone_t  *zone;
    ngx_http_llm_limit_node_t  *node;

    for (i = 0; i < lctx->nholds; i++) {
        hold = &lctx->holds[i];
        node = hold->node;

        if (node == NULL) {
            continue;
        }

        zone = hold->limit->shm_zone->data;

        ngx_shmtx_lock(&zone->shpool->mutex);

        if (rollback) {
            for (d = 0; d < NGX_HTTP_LLM_LIMITER_DIMS; d++) {
                if (hold->charged[d]) {
                    ngx_http_llm_limit_charge(hold, d, -hold->charged[d],
                                              NULL);
                }
            }
        }

        if (hold->stream && node->streams) {
            node->streams--;
        }

        hold->stream = 0;
        node->refs--;
        node->dirty = 1;

        ngx_shmtx_unlock(&zone->shpool->mutex);

        hold->node = NULL;
    }

    if (rollback) {
        lctx->nholds = 0;
    }
}


/*
 * The response's last buffer is on its way to the client: the stream is
 * over and its slots are free now. The request itself may stay a while
 * longer (a lingering close shuts nginx's side down, then waits for the
 * client's close; a loaded worker gets to it late), after the client has
 * seen the end of the response and may have started its next stream:
 * released only at the log phase, the slot would refuse that stream with
 * a 429. The tokens are settled at the log phase, as before.
 */

void
ngx_http_llm_limit_stream_end(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_uint_t                  i;
    ngx_chain_t                *cl;
    ngx_http_llm_limit_ctx_t   *lctx;
    ngx_http_llm_limit_hold_t  *hold;
    ngx_http_llm_limit_zone_t  *zone;

    lctx = &ctx->limit;

    if (!lctx->streams) {
        return;
    }

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf) {
            break;
        }
    }

    if (cl == NULL) {
        return;
    }

    lctx->streams = 0;

    for (i = 0; i < lctx->nholds; i++) {
        hold = &lctx->holds[i];

        if (hold->node == NULL || !hold->stream) {
            continue;
        }

        zone = hold->limit->shm_zone->data;

        ngx_shmtx_lock(&zone->shpool->mutex);

        if (hold->node->streams) {
            hold->node->streams--;
        }

        hold->node->dirty = 1;

        ngx_shmtx_unlock(&zone->shpool->mutex);

        hold->stream = 0;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm limit: stream slots released at the response's "
                   "end in %ui limits", lctx->nholds);
}


static void
ngx_http_llm_limit_cleanup(void *data)
{
    ngx_http_llm_limit_ctx_t  *lctx = data;

    /* the log phase settled; an aborted request may not have */

    if (!lctx->settled) {
        lctx->settled = 1;
        ngx_http_llm_limit_release(lctx, 1);
        return;
    }

    ngx_http_llm_limit_release(lctx, 0);
}


/*
 * In-stream metering, from the SSE event callback: output beyond the
 * reservation is charged as it passes (content bytes / 4); with
 * "cutoff", a bucket in debt ends the stream.
 */

void
ngx_http_llm_limit_meter(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    int                         d;
    int64_t                     metered, excess;
    ngx_uint_t                  i, over;
    ngx_http_llm_limit_ctx_t   *lctx;
    ngx_http_llm_limit_hold_t  *hold;
    ngx_http_llm_limit_zone_t  *zone;
    ngx_http_llm_loc_conf_t    *llcf;

    lctx = &ctx->limit;

    if (lctx->nholds == 0 || lctx->settled || lctx->cut) {
        return;
    }

    metered = (int64_t) ((ctx->content_bytes
                          + NGX_HTTP_LLM_BYTES_PER_TOKEN - 1)
                         / NGX_HTTP_LLM_BYTES_PER_TOKEN);

    for (i = 0; i < lctx->nholds; i++) {
        hold = &lctx->holds[i];

        if (hold->node == NULL) {
            continue;
        }

        d = hold->limit->split ? NGX_HTTP_LLM_LIMITER_OUT
                               : NGX_HTTP_LLM_LIMITER_TOK;

        if (hold->limit->rate[d] == 0) {
            continue;
        }

        excess = metered - hold->out;

        if (excess <= 0) {
            continue;
        }

        zone = hold->limit->shm_zone->data;
        over = 0;

        ngx_shmtx_lock(&zone->shpool->mutex);

        ngx_http_llm_limiter_refill(&hold->node->lim, hold->node->rate,
                                    ngx_current_msec);
        ngx_http_llm_limit_charge(hold, d, excess, &over);

        ngx_shmtx_unlock(&zone->shpool->mutex);

        hold->out = metered;

        if (over && hold->limit->cutoff) {
            lctx->cut = 1;

            llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

            ngx_log_error(llcf->limit.log_level, r->connection->log,
                          0, "llm limit cut a %s stream off after %L output "
                          "tokens: zone \"%V\" is out of %s",
                          ngx_http_llm_api_name(ctx->api), metered,
                          &zone->name, ngx_http_llm_limit_dim_names[d]);
        }
    }
}


/*
 * The end of a stream cut off by a limit, in the client API's shape: an
 * error event (and, for OpenAI, [DONE]), like the torn-stream end of
 * ngx_http_llm_sse.c, so that SDKs raise a rate limit error.
 */

ngx_chain_t *
ngx_http_llm_limit_cutoff(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    static ngx_str_t  openai = ngx_string(
        "\n\ndata: {\"error\":{\"message\":\"Rate limit reached for tokens "
        "per min (TPM) during the stream: the answer was cut off.\","
        "\"type\":\"tokens\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}"
        "\n\ndata: [DONE]\n\n");

    static ngx_str_t  anthropic = ngx_string(
        "\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
        "\"rate_limit_error\",\"message\":\"Rate limit reached for tokens "
        "per min during the stream: the answer was cut off.\"}}\n\n");

    return ngx_http_llm_sse_end_chain(r, ctx, &openai, &anthropic);
}


/*
 * After a cut-off, what upstream still sends is dropped. NGX_AGAIN when
 * it sent data: the caller then fails the body filter, which makes the
 * upstream module close the upstream request (the client response is
 * already complete).
 */

ngx_int_t
ngx_http_llm_limit_drain(ngx_chain_t *in)
{
    ngx_int_t  rc;

    rc = NGX_OK;

    for ( /* void */ ; in; in = in->next) {
        if (ngx_buf_size(in->buf)) {
            rc = NGX_AGAIN;
        }

        in->buf->pos = in->buf->last;
        in->buf->file_pos = in->buf->file_last;
    }

    return rc;
}


/* for the response cache: a hit costs no tokens */

void
ngx_http_llm_limit_release_tokens(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx)
{
    int                         d;
    ngx_uint_t                  i;
    ngx_http_llm_limit_hold_t  *hold;
    ngx_http_llm_limit_zone_t  *zone;

    for (i = 0; i < ctx->limit.nholds; i++) {
        hold = &ctx->limit.holds[i];

        if (hold->node == NULL) {
            continue;
        }

        zone = hold->limit->shm_zone->data;

        ngx_shmtx_lock(&zone->shpool->mutex);

        for (d = NGX_HTTP_LLM_LIMITER_TOK; d < NGX_HTTP_LLM_LIMITER_DIMS; d++)
        {
            if (hold->charged[d]) {
                ngx_http_llm_limit_charge(hold, d, -hold->charged[d], NULL);
            }
        }

        hold->out = INT64_MAX;

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
}


/* response headers */

static ngx_int_t
ngx_http_llm_limit_header_filter(ngx_http_request_t *r)
{
    size_t                     len;
    u_char                    *p;
    time_t                     t;
    ngx_tm_t                   tm;
    ngx_uint_t                 k, anthropic;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_limit_ctx_t  *lctx;

    static const char  *openai_names[2][3] = {
        { "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
          "x-ratelimit-reset-requests" },
        { "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
          "x-ratelimit-reset-tokens" }
    };

    static const char  *anthropic_names[2][3] = {
        { "anthropic-ratelimit-requests-limit",
          "anthropic-ratelimit-requests-remaining",
          "anthropic-ratelimit-requests-reset" },
        { "anthropic-ratelimit-tokens-limit",
          "anthropic-ratelimit-tokens-remaining",
          "anthropic-ratelimit-tokens-reset" }
    };

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL || !ctx->limit.headers) {
        return ngx_http_next_header_filter(r);
    }

    lctx = &ctx->limit;
    anthropic = NGX_HTTP_LLM_IS_ANTHROPIC(ctx->api);

    for (k = 0; k < 2; k++) {
        if (lctx->hdr_rate[k] == 0) {
            continue;
        }

        p = ngx_pnalloc(r->pool, 2 * NGX_INT64_LEN
                                 + NGX_HTTP_LLM_LIMITER_DURATION_LEN
                                 + sizeof("1970-01-01T00:00:00Z"));
        if (p == NULL) {
            return NGX_ERROR;
        }

        len = ngx_http_llm_uint(p, lctx->hdr_rate[k]) - p;

        if (ngx_http_llm_limit_add_header(r, anthropic
                                             ? anthropic_names[k][0]
                                             : openai_names[k][0], p, len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p += len;
        len = ngx_http_llm_uint(p, lctx->hdr_remaining[k]) - p;

        if (ngx_http_llm_limit_add_header(r, anthropic
                                             ? anthropic_names[k][1]
                                             : openai_names[k][1], p, len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p += len;

        if (anthropic) {
            /* RFC 3339: when the bucket is full again */
            t = ngx_time() + (time_t) ((lctx->hdr_reset[k] + 999) / 1000);
            ngx_gmtime(t, &tm);

            len = ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                              tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                              tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec)
                  - p;

        } else {
            len = ngx_http_llm_limiter_duration(p, lctx->hdr_reset[k]);
        }

        if (ngx_http_llm_limit_add_header(r, anthropic
                                             ? anthropic_names[k][2]
                                             : openai_names[k][2], p, len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_llm_limit_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL || ctx->limit.status == NGX_HTTP_LLM_LIMIT_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_http_llm_limit_statuses[ctx->limit.status].data;
    v->len = ngx_http_llm_limit_statuses[ctx->limit.status].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* global limits: worker 0 of each node syncs the zones with Redis */

ngx_int_t
ngx_http_llm_limit_init_process(ngx_cycle_t *cycle)
{
    char                       *purpose;
    ngx_uint_t                  i;
    ngx_list_part_t            *part;
    ngx_shm_zone_t             *shm_zone;
    ngx_http_llm_limit_zone_t  *zone;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (ngx_worker != 0) {
        return NGX_OK;
    }

    part = &cycle->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].tag != &ngx_http_llm_limit_tag) {
            continue;
        }

        zone = shm_zone[i].data;

        if (zone->sync == NULL) {
            continue;
        }

        purpose = ngx_pnalloc(cycle->pool, zone->name.len
                                           + sizeof("llm_limit_zone \"\""));
        if (purpose == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf((u_char *) purpose, "llm_limit_zone \"%V\"%Z",
                    &zone->name);

        zone->redis = ngx_http_llm_redis_create(cycle->pool, cycle->log,
                                                zone->sync, purpose,
                                                1000, 1000);
        if (zone->redis == NULL) {
            return NGX_ERROR;
        }

        zone->synced = ngx_current_msec;
        zone->sync_ev.handler = ngx_http_llm_limit_sync_handler;
        zone->sync_ev.data = zone;
        zone->sync_ev.log = cycle->log;
        zone->sync_ev.cancelable = 1;

        ngx_add_timer(&zone->sync_ev, zone->sync_interval);
    }

    return NGX_OK;
}


/*
 * A worker that exits (reload, shutdown) closes its Redis connections:
 * nginx reports sockets left open at exit as an alert.
 */

void
ngx_http_llm_limit_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  i;
    ngx_shm_zone_t             *shm_zone;
    ngx_list_part_t            *part;
    ngx_http_llm_limit_zone_t  *zone;

    part = &cycle->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].tag != &ngx_http_llm_limit_tag) {
            continue;
        }

        zone = shm_zone[i].data;

        if (zone->sync_ev.timer_set) {
            ngx_del_timer(&zone->sync_ev);
        }

        if (zone->redis) {
            /* closed clients refuse commands: replies in flight are safe */
            ngx_http_llm_redis_close(zone->redis);
        }
    }
}


static void
ngx_http_llm_limit_sync_handler(ngx_event_t *ev)
{
    ngx_http_llm_limit_zone_t  *zone = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (zone->inflight == 0 && ngx_http_llm_redis_connected(zone->redis)) {
        ngx_http_llm_limit_sync(zone);
    }

    ngx_add_timer(ev, zone->sync_interval);
}


/*
 * One sync round: the deltas of the keys touched since the last good
 * round go to Redis, each answered by the global level of its bucket.
 */

static void
ngx_http_llm_limit_sync(ngx_http_llm_limit_zone_t *zone)
{
    int                              d;
    u_char                           key[128], *p, rate[NGX_INT_T_LEN];
    u_char                           delta[NGX_INT64_LEN];
    u_char                           seed[NGX_INT64_LEN];
    size_t                           argvlen[7];
    ngx_int_t                        rc;
    ngx_uint_t                       i, n;
    ngx_msec_t                       now;
    ngx_queue_t                     *q;
    const char                      *argv[7];
    ngx_rbtree_node_t               *node;
    ngx_http_llm_limiter_t           lim;
    ngx_http_llm_limit_node_t       *ln;
    ngx_http_llm_limit_sync_item_t  *items, *it;

    static ngx_str_t  script = ngx_string(ngx_http_llm_limit_script);

    if (zone->sha[0] == '\0' && !zone->sha_loading) {
        if (ngx_http_llm_redis_command(zone->redis,
                                       ngx_http_llm_limit_sha_reply, zone,
                                       "SCRIPT LOAD %b", script.data,
                                       script.len)
            == NGX_OK)
        {
            zone->sha_loading = 1;
        }
    }

    items = ngx_alloc(NGX_HTTP_LLM_LIMIT_SYNC_BATCH
                      * NGX_HTTP_LLM_LIMITER_DIMS
                      * sizeof(ngx_http_llm_limit_sync_item_t),
                      ngx_cycle->log);
    if (items == NULL) {
        return;
    }

    now = ngx_current_msec;
    n = 0;
    zone->batch_partial = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue);
         q = ngx_queue_next(q))
    {
        ln = ngx_queue_data(q, ngx_http_llm_limit_node_t, queue);

        if (ln->lim.last + NGX_HTTP_LLM_LIMIT_SYNC_SLACK < zone->synced) {
            break;
        }

        /*
         * a key that is in use but unchanged here syncs too (delta 0):
         * it learns what the other nodes took; a full one need not
         */

        if (!ln->dirty) {
            for (d = 0; d < NGX_HTTP_LLM_LIMITER_DIMS; d++) {
                if (ngx_http_llm_limiter_reset(&ln->lim, ln->rate, d)
                    > now - ln->lim.last)
                {
                    break;
                }
            }

            if (d == NGX_HTTP_LLM_LIMITER_DIMS) {
                continue;
            }
        }

        if (n + NGX_HTTP_LLM_LIMITER_DIMS
            > NGX_HTTP_LLM_LIMIT_SYNC_BATCH * NGX_HTTP_LLM_LIMITER_DIMS)
        {
            zone->batch_partial = 1;
            break;
        }

        node = (ngx_rbtree_node_t *)
                   ((u_char *) ln - offsetof(ngx_rbtree_node_t, color));

        /* the node's levels now, for a bucket Redis lost (a copy: the
         * refill clock of the key stays its last use) */

        lim = ln->lim;
        ngx_http_llm_limiter_refill(&lim, ln->rate, now);

        for (d = 0; d < NGX_HTTP_LLM_LIMITER_DIMS; d++) {
            if (ln->rate[d] == 0) {
                continue;
            }

            it = &items[n++];
            it->zone = zone;
            it->hash = node->key;
            it->hash2 = ln->hash2;
            it->dim = d;
            it->delta = ln->pending[d];
            it->seed = lim.level[d]
                       + (int64_t) ln->pending[d] * NGX_HTTP_LLM_LIMITER_SCALE;

            ln->pending[d] = 0;
        }

        ln->dirty = 0;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (n == 0) {
        ngx_free(items);
        zone->synced = now;
        return;
    }

    zone->items = items;
    zone->batch_start = now;
    zone->batch_ok = 1;
    zone->inflight = 1;     /* held until every command is sent */

    for (i = 0; i < n; i++) {
        it = &items[i];

        /* the rate is looked up again: it is the node's current one */

        p = ngx_sprintf(key, "llm:limit:%V:%016xL%016xL:%d", &zone->name,
                        it->hash, it->hash2, it->dim);

        argv[3] = (const char *) key;
        argvlen[3] = p - key;

        ngx_shmtx_lock(&zone->shpool->mutex);
        ln = ngx_http_llm_limit_lookup(zone, it->hash, it->hash2);
        argvlen[4] = ngx_sprintf(rate, "%uD",
                                 ln ? ln->rate[it->dim] : 0) - rate;
        ngx_shmtx_unlock(&zone->shpool->mutex);

        if (ln == NULL) {
            continue;
        }

        argv[4] = (const char *) rate;
        argv[5] = (const char *) delta;
        argvlen[5] = ngx_sprintf(delta, "%L", it->delta) - delta;
        argv[6] = (const char *) seed;
        argvlen[6] = ngx_sprintf(seed, "%L", it->seed) - seed;

        argv[2] = "1";
        argvlen[2] = 1;

        if (zone->sha[0]) {
            argv[0] = "EVALSHA";
            argvlen[0] = 7;
            argv[1] = (const char *) zone->sha;
            argvlen[1] = 40;

        } else {
            argv[0] = "EVAL";
            argvlen[0] = 4;
            argv[1] = (const char *) script.data;
            argvlen[1] = script.len;
        }

        rc = ngx_http_llm_redis_command_argv(zone->redis,
                                             ngx_http_llm_limit_sync_reply,
                                             it, 7, argv, argvlen);

        if (rc == NGX_OK) {
            zone->inflight++;
            continue;
        }

        /* not sent: the delta waits for the next round */

        ngx_shmtx_lock(&zone->shpool->mutex);

        ln = ngx_http_llm_limit_lookup(zone, it->hash, it->hash2);

        if (ln) {
            ln->pending[it->dim] += (int32_t) it->delta;
            ln->dirty = 1;
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);

        zone->batch_ok = 0;
    }

    /* the items are freed with the last reply */

    if (--zone->inflight == 0) {
        ngx_http_llm_limit_sync_done(zone);
    }
}


static void
ngx_http_llm_limit_sync_reply(ngx_http_llm_redis_t *rd, redisReply *reply,
    void *data)
{
    ngx_http_llm_limit_sync_item_t  *it = data;

    u_char                     *p, *last;
    int64_t                     level, cap, sign;
    ngx_http_llm_limit_zone_t  *zone;
    ngx_http_llm_limit_node_t  *ln;

    zone = it->zone;

    level = 0;

    if (reply && reply->type == REDIS_REPLY_STRING && reply->len > 0) {
        p = (u_char *) reply->str;
        last = p + reply->len;
        sign = 1;

        if (*p == '-') {
            sign = -1;
            p++;
        }

        while (p < last && *p >= '0' && *p <= '9') {
            level = level * 10 + (*p++ - '0');
        }

        level *= sign;

    } else {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            if (ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0) {
                zone->sha[0] = '\0';

            } else {
                ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                              "llm limit zone \"%V\": redis answered "
                              "\"%s\", limits are enforced locally",
                              &zone->name, reply->str);
            }
        }

        reply = NULL;
        zone->batch_ok = 0;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    ln = ngx_http_llm_limit_lookup(zone, it->hash, it->hash2);

    if (ln && reply == NULL) {
        /* not counted globally: the delta goes out with the next round */
        ln->pending[it->dim] += (int32_t) it->delta;
        ln->dirty = 1;

    } else if (ln && ln->rate[it->dim]) {
        /* the global level, less what this node took since it was sent */

        ngx_http_llm_limiter_refill(&ln->lim, ln->rate, ngx_current_msec);

        cap = (int64_t) ln->rate[it->dim] * NGX_HTTP_LLM_LIMITER_SCALE;
        level -= (int64_t) ln->pending[it->dim] * NGX_HTTP_LLM_LIMITER_SCALE;

        ln->lim.level[it->dim] = ngx_min(level, cap);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (--zone->inflight == 0) {
        ngx_http_llm_limit_sync_done(zone);
    }
}


static void
ngx_http_llm_limit_sha_reply(ngx_http_llm_redis_t *rd, redisReply *reply,
    void *data)
{
    ngx_http_llm_limit_zone_t  *zone = data;

    zone->sha_loading = 0;

    if (reply && reply->type == REDIS_REPLY_STRING && reply->len == 40) {
        ngx_memcpy(zone->sha, reply->str, 40);
        zone->sha[40] = '\0';
    }
}


static void
ngx_http_llm_limit_sync_done(ngx_http_llm_limit_zone_t *zone)
{
    if (zone->batch_ok && !zone->batch_partial) {
        zone->synced = zone->batch_start;
    }

    ngx_free(zone->items);
    zone->items = NULL;
}
