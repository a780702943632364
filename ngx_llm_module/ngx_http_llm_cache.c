
/*
 * Copyright (C) ngx_llm authors
 *
 * Response cache, the nginx side.
 *
 * Key: XXH3-128 of the client API, the canonical request hash (see
 * ngx_http_llm_inspect.c: stream, stream_options, user, metadata and
 * request ids do not enter it, so a streaming and a non-streaming request
 * for the same thing share one entry) and the scope: the caller's key
 * (XXH3-64 of it), nothing (shared) or the value of a string.
 *
 * L1: one shared memory zone per llm_cache_zone, slab + rbtree + LRU queue
 * as limit_req does it; an allocation failure evicts from the LRU tail and
 * retries; a reload keeps the zone and its entries. An entry is the
 * encoded message of ngx_http_llm_assemble.c.
 *
 * Lookup runs after inspection (precontent phase). A hit is answered at
 * once, as JSON or as an SSE stream (optionally paced with nginx timers).
 * A miss goes upstream; the answer is assembled on the way (JSON body at
 * its end, SSE events one by one from the stream watcher) and stored when
 * it is complete: a 200 JSON answer, or a stream that reached its
 * terminator without an error event.
 *
 * Coalescing (llm_cache_lock): the first miss puts a lock in the zone (an
 * entry without data, or the expired entry marked updating); identical
 * requests that find the lock wait, polling the zone on a timer, and are
 * served from the stored answer once it is there. When the lock expires
 * or the leader ends without storing, the next waiter becomes the leader.
 *
 * Live streams: a leader whose upstream answers with SSE appends every
 * event it sees to a buffer hung on its lock node (the "live" buffer,
 * records of name and data, at most max_entry bytes). A waiter that asks
 * for a stream and finds a live buffer becomes a follower: it sends its
 * headers at once and, on its timer, renders the records appended since
 * its last visit as SSE (less the OpenAI usage chunk if it did not ask
 * for it). The leader marks the end: complete (stored), ended (whole but
 * not stored) or failed (torn: followers close with an error event). A
 * live buffer is freed with its node, or by its last reader once ended.
 *
 * L2 (llm_cache_zone ... redis=): on an L1 miss the request sends a GET
 * through the module's event-driven Redis client and waits for it, at
 * most redis_timeout, on nginx events; a hit is promoted to L1 and
 * served, anything else goes upstream. Stores also SET the entry (EX
 * redis_ttl), fire and forget. Key "llm:cache:v1:" + the L1 key in hex;
 * value: int64 creation time, then the L1 encoding. Failures are logged
 * at most once per NGX_HTTP_LLM_REDIS_LOG_INTERVAL per worker.
 *
 * Stale-if-error: an expired entry is kept until it is inactive; when the
 * upstream answer has a status named by llm_cache_use_stale, the header
 * filter replaces it (status, headers, body) with the expired entry.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"
#include "ngx_http_llm_redis.h"

#define XXH_INLINE_ALL
#include <xxhash.h>


#define NGX_HTTP_LLM_CACHE_POLL         10      /* ms, waiters */
#define NGX_HTTP_LLM_CACHE_PACE_CHUNK   16      /* bytes a paced event */
#define NGX_HTTP_LLM_CACHE_CHUNK        1024    /* bytes an event */
#define NGX_HTTP_LLM_CACHE_EVICT_MAX    64
#define NGX_HTTP_LLM_CACHE_POLL_IDLE    40      /* ms, idle followers */

/* live buffer states */
#define NGX_HTTP_LLM_LIVE_STREAMING     0
#define NGX_HTTP_LLM_LIVE_COMPLETE      1       /* stored */
#define NGX_HTTP_LLM_LIVE_ENDED         2       /* whole, not stored */
#define NGX_HTTP_LLM_LIVE_FAILED        3       /* torn */

/* a live record: uint32 data length, flags, name length, name, data */
#define NGX_HTTP_LLM_LIVE_HEAD          6
#define NGX_HTTP_LLM_LIVE_USAGE_ONLY    0x01

/* L2 keys: the prefix, then the 128-bit L1 key in hex */
#define NGX_HTTP_LLM_CACHE_L2_PREFIX    "llm:cache:v1:"
#define NGX_HTTP_LLM_CACHE_L2_KEY_LEN   (sizeof(NGX_HTTP_LLM_CACHE_L2_PREFIX) \
                                         - 1 + 32)
#define NGX_HTTP_LLM_CACHE_L2_HEAD      8       /* int64 created */


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;          /* LRU, head: newest */
    ngx_uint_t                  entries;
    uint64_t                    hits;
    uint64_t                    misses;
    uint64_t                    stores;
    uint64_t                    evictions;
} ngx_http_llm_cache_sh_t;


typedef struct {
    ngx_http_llm_cache_sh_t    *sh;
    ngx_slab_pool_t            *shpool;
    size_t                      max_entry;
    time_t                      inactive;
    ngx_str_t                   name;

    /* L2, per worker process */
    ngx_addr_t                 *redis_addr;     /* NULL: no L2 */
    ngx_msec_t                  redis_timeout;
    time_t                      redis_ttl;      /* 0: llm_cache_valid */
    ngx_http_llm_redis_t       *redis;
    ngx_uint_t                  redis_errors;   /* since the last log */
    ngx_msec_t                  redis_logged;
    unsigned                    redis_log_ever:1;
} ngx_http_llm_cache_shctx_t;


/* an L2 GET in flight; outlives the request if it must (r = NULL) */
typedef struct {
    ngx_http_request_t         *r;
} ngx_http_llm_cache_l2_t;


/* the events of a stream in progress, in the zone */
typedef struct {
    uint64_t                    id;             /* of its leader */
    u_char                     *data;           /* records */
    size_t                      len;
    size_t                      cap;
    ngx_uint_t                  readers;        /* followers */
    ngx_uint_t                  state;          /* NGX_HTTP_LLM_LIVE_* */
    ngx_uint_t                  overflow;       /* max_entry reached */
    ngx_http_llm_usage_t        usage;          /* when ended */
} ngx_http_llm_cache_live_t;


/* follows the rbtree node's key, in the same allocation */
typedef struct {
    u_char                      color;
    u_char                      updating;       /* a leader holds the lock */
    u_short                     dummy;
    uint32_t                    len;            /* 0: lock only */
    ngx_queue_t                 queue;
    uint64_t                    key1;
    time_t                      created;
    time_t                      expires;
    time_t                      accessed;
    ngx_msec_t                  lock_until;
    ngx_http_llm_cache_live_t  *live;           /* stream in progress */
    u_char                      data[1];
} ngx_http_llm_cache_node_t;


struct ngx_http_llm_cache_ctx_s {
    ngx_http_llm_cache_shctx_t *shctx;
    uint64_t                    key[2];
    ngx_uint_t                  status;
    time_t                      created;        /* of the entry served */

    u_char                     *data;           /* entry copied from shm */
    size_t                      len;
    ngx_http_llm_entry_t        entry;
    ngx_http_llm_replay_t       replay;
    ngx_chain_t                *stale_out;

    ngx_http_llm_msg_t         *msg;            /* the answer assembled */
    ngx_event_t                 timer;          /* waiting, pacing */
    ngx_msec_t                  wait_until;

    ngx_http_llm_cache_l2_t    *l2;             /* GET in flight */
    ngx_event_t                 l2_timer;

    uint64_t                    live_id;        /* leader: appending */
    ngx_buf_t                  *live_out;       /* records to append */
    size_t                      live_total;
    uint64_t                    follow_id;      /* follower: reading */
    size_t                      follow_pos;
    ngx_msec_t                  poll;

    unsigned                    sse:1;          /* the client streams */
    unsigned                    include_usage:1;
    unsigned                    store:1;
    unsigned                    stored:1;
    unsigned                    leader:1;
    unsigned                    waiting:1;
    unsigned                    stale:1;        /* data: expired entry */
    unsigned                    serving:1;      /* we answer, not upstream */
    unsigned                    stale_sent:1;
    unsigned                    l2_tried:1;
    unsigned                    live_overflow:1;
    unsigned                    live_marked:1;  /* overflow told */
    unsigned                    openai:1;       /* OpenAI stream format */
    unsigned                    fallback:1;     /* stale for the chain */
};


static ngx_int_t ngx_http_llm_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_llm_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_llm_cache_node_t *ngx_http_llm_cache_find(
    ngx_http_llm_cache_shctx_t *shctx, uint64_t *key);
static void ngx_http_llm_cache_delete(ngx_http_llm_cache_shctx_t *shctx,
    ngx_http_llm_cache_node_t *cn);
static ngx_http_llm_cache_node_t *ngx_http_llm_cache_alloc(
    ngx_http_llm_cache_shctx_t *shctx, uint64_t *key, size_t len);
static void ngx_http_llm_cache_expire(ngx_http_llm_cache_shctx_t *shctx,
    ngx_uint_t force);

static ngx_int_t ngx_http_llm_cache_cacheable(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_cache_conf_t *conf);
static ngx_int_t ngx_http_llm_cache_key(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_cache_conf_t *conf,
    ngx_http_llm_cache_ctx_t *c);
static void ngx_http_llm_cache_control(ngx_http_request_t *r,
    ngx_uint_t *no_cache, ngx_uint_t *no_store);
static ngx_int_t ngx_http_llm_cache_lookup(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_cache_ctx_t *c);
static ngx_int_t ngx_http_llm_cache_copy(ngx_http_request_t *r,
    ngx_http_llm_cache_ctx_t *c, ngx_http_llm_cache_node_t *cn);
static void ngx_http_llm_cache_wait_handler(ngx_event_t *ev);
static void ngx_http_llm_cache_resume(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_int_t rc);
static ngx_http_llm_cache_node_t *ngx_http_llm_cache_put(
    ngx_http_llm_cache_shctx_t *shctx, uint64_t *key, u_char *data,
    size_t len, time_t created, time_t expires);
static u_char *ngx_http_llm_cache_l2_key(u_char *p, uint64_t *key);
static ngx_int_t ngx_http_llm_cache_l2_get(ngx_http_request_t *r,
    ngx_http_llm_cache_ctx_t *c);
static void ngx_http_llm_cache_l2_reply(ngx_http_llm_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_llm_cache_l2_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_llm_cache_l2_hit(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_cache_ctx_t *c, u_char *p,
    size_t len);
static void ngx_http_llm_cache_l2_set(ngx_http_request_t *r,
    ngx_http_llm_cache_ctx_t *c, u_char *value, size_t len, time_t ttl);
static void ngx_http_llm_cache_l2_set_reply(ngx_http_llm_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_llm_cache_l2_down(ngx_http_llm_cache_shctx_t *shctx,
    ngx_log_t *log, const char *why);
static void ngx_http_llm_cache_cleanup(void *data);
static void ngx_http_llm_cache_unlock(ngx_http_llm_cache_ctx_t *c,
    ngx_uint_t state, ngx_http_llm_usage_t *usage);
static void ngx_http_llm_cache_live_start(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_cache_ctx_t *c);
static void ngx_http_llm_cache_live_add(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_cache_ctx_t *c, const u_char *name,
    size_t name_len, const u_char *data, size_t len);
static void ngx_http_llm_cache_live_flush(ngx_http_request_t *r,
    ngx_http_llm_cache_ctx_t *c);
static void ngx_http_llm_cache_live_end(ngx_http_llm_cache_shctx_t *shctx,
    ngx_http_llm_cache_node_t *cn, ngx_http_llm_cache_ctx_t *c,
    ngx_uint_t state, ngx_http_llm_usage_t *usage);
static void ngx_http_llm_cache_live_free(ngx_http_llm_cache_shctx_t *shctx,
    ngx_http_llm_cache_live_t *live);
static void ngx_http_llm_cache_live_leave(ngx_http_llm_cache_ctx_t *c);
static ngx_int_t ngx_http_llm_cache_follow(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_cache_ctx_t *c);
static void ngx_http_llm_cache_follow_handler(ngx_event_t *ev);
static ngx_chain_t *ngx_http_llm_cache_follow_render(ngx_http_request_t *r,
    ngx_http_llm_cache_ctx_t *c, u_char *p, size_t len, ngx_uint_t state);
static ngx_int_t ngx_http_llm_cache_serve(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_cache_ctx_t *c);
static void ngx_http_llm_cache_account(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_ctx_t *c);
static ngx_chain_t *ngx_http_llm_cache_render(ngx_http_request_t *r,
    ngx_http_llm_cache_ctx_t *c, off_t *size);
static void ngx_http_llm_cache_pace_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_llm_cache_headers(ngx_http_request_t *r,
    ngx_http_llm_cache_ctx_t *c);
static ngx_int_t ngx_http_llm_cache_set_header(ngx_http_request_t *r,
    char *name, ngx_str_t *value);
static ngx_int_t ngx_http_llm_cache_use_stale(ngx_http_request_t *r,
    ngx_http_llm_cache_conf_t *conf);
static void ngx_http_llm_cache_store(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_http_llm_cache_ctx_t *c);
static void *ngx_http_llm_cache_grow(void *data, void *p, size_t old,
    size_t size);
static ngx_int_t ngx_http_llm_cache_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_cache_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_llm_cache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_str_t  ngx_http_llm_cache_statuses[] = {
    ngx_null_string,
    ngx_string("MISS"),
    ngx_string("BYPASS"),
    ngx_string("EXPIRED"),
    ngx_string("STALE"),
    ngx_string("UPDATING"),
    ngx_string("HIT")
};


ngx_conf_bitmask_t  ngx_http_llm_cache_use_stale_masks[] = {
    { ngx_string("off"), NGX_HTTP_LLM_STALE_OFF },
    { ngx_string("error"), NGX_HTTP_LLM_STALE_ERROR },
    { ngx_string("timeout"), NGX_HTTP_LLM_STALE_TIMEOUT },
    { ngx_string("http_429"), NGX_HTTP_LLM_STALE_429 },
    { ngx_string("http_500"), NGX_HTTP_LLM_STALE_500 },
    { ngx_string("http_502"), NGX_HTTP_LLM_STALE_502 },
    { ngx_string("http_503"), NGX_HTTP_LLM_STALE_503 },
    { ngx_string("http_504"), NGX_HTTP_LLM_STALE_504 },
    { ngx_string("http_529"), NGX_HTTP_LLM_STALE_529 },
    { ngx_string("updating"), NGX_HTTP_LLM_STALE_UPDATING },
    { ngx_null_string, 0 }
};


static ngx_uint_t  ngx_http_llm_cache_exiting;

static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/* configuration */


char *
ngx_http_llm_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                      *p;
    size_t                       size, max_entry;
    time_t                       inactive, redis_ttl;
    ngx_str_t                   *value, name, s;
    ngx_uint_t                   i;
    ngx_msec_t                   redis_timeout;
    ngx_addr_t                  *redis;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_llm_cache_shctx_t  *shctx;

    value = cf->args->elts;

    ngx_str_null(&name);
    size = 0;
    max_entry = 256 * 1024;
    inactive = 600;
    redis = NULL;
    redis_ttl = 0;
    redis_timeout = NGX_CONF_UNSET_MSEC;

    for (i = 1; i < cf->args->nelts; i++) {

        if (i == 1) {
            p = (u_char *) ngx_strchr(value[i].data, ':');

            if (p == NULL || p == value[i].data) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"llm_cache_zone\" needs \"name:size\", "
                                   "not \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.data = value[i].data;
            name.len = p - value[i].data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == (size_t) NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < 8 * ngx_pagesize) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small, at least %uzk",
                                   &value[i], 8 * ngx_pagesize / 1024);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_entry=", 10) == 0) {
            s.data = value[i].data + 10;
            s.len = value[i].len - 10;

            max_entry = ngx_parse_size(&s);

            if (max_entry == (size_t) NGX_ERROR || max_entry < 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid max_entry \"%V\", at least 1k",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "inactive=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            inactive = ngx_parse_time(&s, 1);

            if (inactive == (time_t) NGX_ERROR || inactive == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid inactive \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "redis=", 6) == 0) {
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            redis = ngx_pcalloc(cf->pool, sizeof(ngx_addr_t));
            if (redis == NULL) {
                return NGX_CONF_ERROR;
            }

            if (ngx_http_llm_redis_parse_url(cf, &s, redis) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "redis_ttl=", 10) == 0) {
            s.data = value[i].data + 10;
            s.len = value[i].len - 10;

            redis_ttl = ngx_parse_time(&s, 1);

            if (redis_ttl == (time_t) NGX_ERROR || redis_ttl == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid redis_ttl \"%V\", at least 1s",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "redis_timeout=", 14) == 0) {
            s.data = value[i].data + 14;
            s.len = value[i].len - 14;

            redis_timeout = ngx_parse_time(&s, 0);

            if (redis_timeout == (ngx_msec_t) NGX_ERROR || redis_timeout == 0
                || redis_timeout > 60000)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid redis_timeout \"%V\", it must "
                                   "be a time from 1ms to 60s", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (redis == NULL && (redis_ttl || redis_timeout != NGX_CONF_UNSET_MSEC))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"redis_ttl\" and \"redis_timeout\" need "
                           "\"redis=\" in \"llm_cache_zone\"");
        return NGX_CONF_ERROR;
    }

    if (max_entry > size / 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "max_entry %uz is more than half of the zone "
                           "size %uz", max_entry, size);
        return NGX_CONF_ERROR;
    }

    shctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_cache_shctx_t));
    if (shctx == NULL) {
        return NGX_CONF_ERROR;
    }

    shctx->max_entry = max_entry;
    shctx->inactive = inactive;
    shctx->name = name;
    shctx->redis_addr = redis;
    shctx->redis_ttl = redis_ttl;
    shctx->redis_timeout = (redis_timeout == NGX_CONF_UNSET_MSEC)
                           ? 100 : redis_timeout;

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_llm_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already declared", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_llm_cache_init_zone;
    shm_zone->data = shctx;

    return NGX_CONF_OK;
}


char *
ngx_http_llm_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_loc_conf_t *llcf = conf;

    ngx_str_t  *value;

    if (llcf->cache.shm_zone || llcf->cache.off) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        llcf->cache.off = 1;
        return NGX_CONF_OK;
    }

    llcf->cache.shm_zone = ngx_shared_memory_add(cf, &value[1], 0,
                                                 &ngx_http_llm_module);
    if (llcf->cache.shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_llm_cache_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_loc_conf_t *llcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (llcf->cache.scope != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "key") == 0) {
        llcf->cache.scope = NGX_HTTP_LLM_CACHE_SCOPE_KEY;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "shared") == 0) {
        llcf->cache.scope = NGX_HTTP_LLM_CACHE_SCOPE_SHARED;
        return NGX_CONF_OK;
    }

    if (ngx_http_script_variables_count(&value[1]) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_cache_scope\" must be \"key\", \"shared\" "
                           "or a string with variables, not \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    llcf->cache.scope_value = ngx_palloc(cf->pool,
                                         sizeof(ngx_http_complex_value_t));
    if (llcf->cache.scope_value == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = llcf->cache.scope_value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    llcf->cache.scope = NGX_HTTP_LLM_CACHE_SCOPE_VALUE;

    return NGX_CONF_OK;
}


void
ngx_http_llm_cache_create_conf(ngx_http_llm_cache_conf_t *conf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     conf->shm_zone = NULL;
     *     conf->off = 0;
     *     conf->scope_value = NULL;
     *     conf->use_stale = 0;
     */

    conf->valid = NGX_CONF_UNSET;
    conf->scope = NGX_CONF_UNSET_UINT;
    conf->bypass = NGX_CONF_UNSET_PTR;
    conf->no_store = NGX_CONF_UNSET_PTR;
    conf->deterministic = NGX_CONF_UNSET;
    conf->lock = NGX_CONF_UNSET;
    conf->lock_timeout = NGX_CONF_UNSET_MSEC;
    conf->replay_rate = NGX_CONF_UNSET_UINT;
}


char *
ngx_http_llm_cache_merge_conf(ngx_conf_t *cf, ngx_http_llm_cache_conf_t *prev,
    ngx_http_llm_cache_conf_t *conf)
{
    if (conf->shm_zone == NULL && !conf->off) {
        conf->shm_zone = prev->shm_zone;
        conf->off = prev->off;
    }

    ngx_conf_merge_sec_value(conf->valid, prev->valid, 600);

    if (conf->scope == NGX_CONF_UNSET_UINT) {
        conf->scope = (prev->scope == NGX_CONF_UNSET_UINT)
                      ? NGX_HTTP_LLM_CACHE_SCOPE_KEY : prev->scope;
        conf->scope_value = prev->scope_value;
    }

    ngx_conf_merge_ptr_value(conf->bypass, prev->bypass, NULL);
    ngx_conf_merge_ptr_value(conf->no_store, prev->no_store, NULL);
    ngx_conf_merge_value(conf->deterministic, prev->deterministic, 1);
    ngx_conf_merge_value(conf->lock, prev->lock, 1);
    ngx_conf_merge_msec_value(conf->lock_timeout, prev->lock_timeout, 30000);
    ngx_conf_merge_bitmask_value(conf->use_stale, prev->use_stale,
                                 NGX_CONF_BITMASK_SET
                                 | NGX_HTTP_LLM_STALE_OFF);

    if (conf->use_stale & NGX_HTTP_LLM_STALE_OFF) {
        conf->use_stale = NGX_CONF_BITMASK_SET | NGX_HTTP_LLM_STALE_OFF;
    }

    ngx_conf_merge_uint_value(conf->replay_rate, prev->replay_rate, 0);

    if (conf->valid <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_cache_valid\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_llm_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_llm_cache_shctx_t  *octx = data;

    size_t                       len;
    ngx_http_llm_cache_shctx_t  *shctx;

    shctx = shm_zone->data;

    if (octx) {
        /* reload: the entries stay */
        shctx->sh = octx->sh;
        shctx->shpool = octx->shpool;
        return NGX_OK;
    }

    shctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shctx->sh = shctx->shpool->data;
        return NGX_OK;
    }

    shctx->sh = ngx_slab_calloc(shctx->shpool,
                                sizeof(ngx_http_llm_cache_sh_t));
    if (shctx->sh == NULL) {
        return NGX_ERROR;
    }

    shctx->shpool->data = shctx->sh;

    ngx_rbtree_init(&shctx->sh->rbtree, &shctx->sh->sentinel,
                    ngx_http_llm_cache_rbtree_insert);
    ngx_queue_init(&shctx->sh->queue);

    len = sizeof(" in llm_cache_zone \"\"") + shm_zone->shm.name.len;

    shctx->shpool->log_ctx = ngx_slab_alloc(shctx->shpool, len);
    if (shctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shctx->shpool->log_ctx, " in llm_cache_zone \"%V\"%Z",
                &shm_zone->shm.name);

    shctx->shpool->log_nomem = 0;

    return NGX_OK;
}


/* the zone */


static void
ngx_http_llm_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_llm_cache_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            cn = (ngx_http_llm_cache_node_t *) &node->color;
            cnt = (ngx_http_llm_cache_node_t *) &temp->color;

            p = (cn->key1 < cnt->key1) ? &temp->left : &temp->right;
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


static ngx_http_llm_cache_node_t *
ngx_http_llm_cache_find(ngx_http_llm_cache_shctx_t *shctx, uint64_t *key)
{
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_llm_cache_node_t  *cn;

    node = shctx->sh->rbtree.root;
    sentinel = shctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if ((ngx_rbtree_key_t) key[0] < node->key) {
            node = node->left;
            continue;
        }

        if ((ngx_rbtree_key_t) key[0] > node->key) {
            node = node->right;
            continue;
        }

        cn = (ngx_http_llm_cache_node_t *) &node->color;

        if (key[1] == cn->key1) {
            return cn;
        }

        node = (key[1] < cn->key1) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_llm_cache_delete(ngx_http_llm_cache_shctx_t *shctx,
    ngx_http_llm_cache_node_t *cn)
{
    ngx_rbtree_node_t  *node;

    node = (ngx_rbtree_node_t *)
               ((u_char *) cn - offsetof(ngx_rbtree_node_t, color));

    if (cn->live) {
        ngx_http_llm_cache_live_free(shctx, cn->live);
        cn->live = NULL;
    }

    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&shctx->sh->rbtree, node);
    ngx_slab_free_locked(shctx->shpool, node);

    shctx->sh->entries--;
}


/* called with the zone locked */

static ngx_http_llm_cache_node_t *
ngx_http_llm_cache_alloc(ngx_http_llm_cache_shctx_t *shctx, uint64_t *key,
    size_t len)
{
    size_t                      size;
    ngx_uint_t                  i;
    ngx_rbtree_node_t          *node;
    ngx_http_llm_cache_node_t  *cn;

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_llm_cache_node_t, data) + len;

    ngx_http_llm_cache_expire(shctx, 0);

    node = ngx_slab_alloc_locked(shctx->shpool, size);

    for (i = 0; node == NULL && i < NGX_HTTP_LLM_CACHE_EVICT_MAX; i++) {
        if (ngx_queue_empty(&shctx->sh->queue)) {
            break;
        }

        ngx_http_llm_cache_expire(shctx, 1);
        node = ngx_slab_alloc_locked(shctx->shpool, size);
    }

    if (node == NULL) {
        return NULL;
    }

    node->key = (ngx_rbtree_key_t) key[0];

    cn = (ngx_http_llm_cache_node_t *) &node->color;

    ngx_memzero(cn, offsetof(ngx_http_llm_cache_node_t, data));
    cn->key1 = key[1];
    cn->len = (uint32_t) len;
    cn->accessed = ngx_time();

    ngx_rbtree_insert(&shctx->sh->rbtree, node);
    ngx_queue_insert_head(&shctx->sh->queue, &cn->queue);

    shctx->sh->entries++;

    return cn;
}


/*
 * Removes up to two entries unused for "inactive" (and locks whose leader
 * is long gone) from the LRU tail; with force, the oldest one whatever
 * its age.
 */

static void
ngx_http_llm_cache_expire(ngx_http_llm_cache_shctx_t *shctx,
    ngx_uint_t force)
{
    time_t                      now;
    ngx_uint_t                  n;
    ngx_queue_t                *q;
    ngx_http_llm_cache_node_t  *cn;

    now = ngx_time();

    for (n = 0; n < 2; n++) {

        if (ngx_queue_empty(&shctx->sh->queue)) {
            return;
        }

        q = ngx_queue_last(&shctx->sh->queue);
        cn = ngx_queue_data(q, ngx_http_llm_cache_node_t, queue);

        if (!force && now - cn->accessed <= shctx->inactive) {
            return;
        }

        ngx_http_llm_cache_delete(shctx, cn);

        if (force) {
            shctx->sh->evictions++;
            return;
        }
    }
}


/* the request path */


ngx_int_t
ngx_http_llm_cache_handler(ngx_http_request_t *r)
{
    ngx_uint_t                 no_cache, no_store;
    ngx_pool_cleanup_t        *cln;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_cache_ctx_t  *c;
    ngx_http_llm_loc_conf_t   *llcf;
    ngx_http_llm_cache_conf_t *conf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);
    conf = &llcf->cache;

    ctx = ngx_http_llm_get_ctx(r);

    if (conf->shm_zone == NULL || ctx == NULL || !ctx->inspected
        || ctx->cache)
    {
        return NGX_DECLINED;
    }

    c = ngx_pcalloc(r->pool, sizeof(ngx_http_llm_cache_ctx_t));
    if (c == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_llm_cache_cleanup;
    cln->data = c;

    ctx->cache = c;

    c->shctx = conf->shm_zone->data;
    c->sse = (ctx->req.stream == 1);
    c->include_usage = (ctx->req.include_usage == 1);
    c->openai = !NGX_HTTP_LLM_IS_ANTHROPIC(ctx->api);
    c->timer.handler = ngx_http_llm_cache_wait_handler;
    c->timer.data = r;
    c->timer.log = r->connection->log;

    if (ngx_http_llm_cache_cacheable(r, ctx, conf) != NGX_OK) {
        c->status = NGX_HTTP_LLM_CACHE_BYPASS;
        return NGX_DECLINED;
    }

    if (ngx_http_llm_cache_key(r, ctx, conf, c) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_llm_cache_control(r, &no_cache, &no_store);

    if (!no_store) {
        switch (ngx_http_test_predicates(r, conf->no_store)) {

        case NGX_ERROR:
            return NGX_ERROR;

        case NGX_DECLINED:
            no_store = 1;
            break;

        default: /* NGX_OK */
            break;
        }
    }

    c->store = !no_store;

    if (!no_cache) {
        switch (ngx_http_test_predicates(r, conf->bypass)) {

        case NGX_ERROR:
            return NGX_ERROR;

        case NGX_DECLINED:
            no_cache = 1;
            break;

        default: /* NGX_OK */
            break;
        }
    }

    if (no_cache) {
        c->status = NGX_HTTP_LLM_CACHE_BYPASS;
        return NGX_DECLINED;
    }

    return ngx_http_llm_cache_lookup(r, ctx, c);
}


/*
 * Deterministic requests only, by default: temperature 0 (an absent
 * temperature means the provider's default, 1, so it is not), n 1.
 * Embeddings always are.
 */

static ngx_int_t
ngx_http_llm_cache_cacheable(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_conf_t *conf)
{
    if (ctx->api == NGX_HTTP_LLM_API_EMBEDDINGS) {
        return ctx->req.stream == 1 ? NGX_DECLINED : NGX_OK;
    }

    if (ctx->req.n > 1) {
        return NGX_DECLINED;
    }

    if (conf->deterministic && ctx->req.temperature != 0.0) {
        /* also NaN: absent */
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_cache_key(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_conf_t *conf, ngx_http_llm_cache_ctx_t *c)
{
    uint64_t       k[5];
    ngx_str_t      value;
    XXH128_hash_t  h;

    k[0] = ctx->api;
    k[1] = ctx->req.hash[0];
    k[2] = ctx->req.hash[1];
    k[3] = conf->scope;

    switch (conf->scope) {

    case NGX_HTTP_LLM_CACHE_SCOPE_KEY:
        k[4] = ctx->key_id;
        break;

    case NGX_HTTP_LLM_CACHE_SCOPE_SHARED:
        k[4] = 0;
        break;

    default: /* NGX_HTTP_LLM_CACHE_SCOPE_VALUE */
        if (ngx_http_complex_value(r, conf->scope_value, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        k[4] = XXH3_64bits(value.data, value.len);
    }

    h = XXH3_128bits(k, sizeof(k));

    c->key[0] = h.low64;
    c->key[1] = h.high64;

    return NGX_OK;
}


static void
ngx_http_llm_cache_control(ngx_http_request_t *r, ngx_uint_t *no_cache,
    ngx_uint_t *no_store)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    *no_cache = 0;
    *no_store = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != sizeof("Cache-Control") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Cache-Control",
                               sizeof("Cache-Control") - 1) != 0)
        {
            continue;
        }

        if (ngx_strcasestrn(h[i].value.data, "no-cache", 8 - 1)) {
            *no_cache = 1;
        }

        if (ngx_strcasestrn(h[i].value.data, "no-store", 8 - 1)) {
            *no_store = 1;
        }
    }
}


/*
 * Returns NGX_DECLINED to go upstream, NGX_DONE (with r->main->count
 * raised) while the request waits for a leader or is paced, or the rc of
 * a served answer.
 */

static ngx_int_t
ngx_http_llm_cache_lookup(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_ctx_t *c)
{
    time_t                       now;
    ngx_int_t                    rc;
    ngx_http_llm_loc_conf_t     *llcf;
    ngx_http_llm_cache_node_t   *cn;
    ngx_http_llm_cache_conf_t   *conf;
    ngx_http_llm_cache_shctx_t  *shctx;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);
    conf = &llcf->cache;
    shctx = c->shctx;
    now = ngx_time();

    ngx_shmtx_lock(&shctx->shpool->mutex);

    cn = ngx_http_llm_cache_find(shctx, c->key);

    if (cn && cn->len && cn->expires > now) {
        rc = ngx_http_llm_cache_copy(r, c, cn);

        if (rc == NGX_OK) {
            cn->accessed = now;
            ngx_queue_remove(&cn->queue);
            ngx_queue_insert_head(&shctx->sh->queue, &cn->queue);
            shctx->sh->hits++;

            ngx_shmtx_unlock(&shctx->shpool->mutex);

            c->status = NGX_HTTP_LLM_CACHE_HIT;
            c->stale = 0;

            return ngx_http_llm_cache_serve(r, ctx, c);
        }

        if (rc == NGX_ERROR) {
            ngx_shmtx_unlock(&shctx->shpool->mutex);
            return NGX_ERROR;
        }

        /* not a valid entry: dropped */
        ngx_http_llm_cache_delete(shctx, cn);
        cn = NULL;
    }

    if (cn && cn->len && !c->stale
        && ((conf->use_stale
             & ~(NGX_CONF_BITMASK_SET|NGX_HTTP_LLM_STALE_OFF))
            || llcf->fallback.stale))
    {
        /* expired: kept for stale-if-error */
        rc = ngx_http_llm_cache_copy(r, c, cn);

        if (rc == NGX_ERROR) {
            ngx_shmtx_unlock(&shctx->shpool->mutex);
            return NGX_ERROR;
        }

        c->stale = (rc == NGX_OK);
    }

    if (conf->lock && cn && cn->updating
        && (ngx_msec_int_t) (cn->lock_until - ngx_current_msec) > 0)
    {
        if (c->sse && cn->live && !cn->live->overflow
            && cn->live->state == NGX_HTTP_LLM_LIVE_STREAMING
            && !(c->stale && (conf->use_stale & NGX_HTTP_LLM_STALE_UPDATING)))
        {
            /* the leader streams: follow it live */

            cn->live->readers++;
            c->follow_id = cn->live->id;
            shctx->sh->hits++;

            ngx_shmtx_unlock(&shctx->shpool->mutex);

            return ngx_http_llm_cache_follow(r, ctx, c);
        }

        ngx_shmtx_unlock(&shctx->shpool->mutex);

        if (c->stale && (conf->use_stale & NGX_HTTP_LLM_STALE_UPDATING)) {
            c->status = NGX_HTTP_LLM_CACHE_UPDATING;
            return ngx_http_llm_cache_serve(r, ctx, c);
        }

        if (!c->waiting) {
            c->waiting = 1;
            c->wait_until = ngx_current_msec + conf->lock_timeout;
        }

        if ((ngx_msec_int_t) (c->wait_until - ngx_current_msec) > 0) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "llm cache: waiting for an identical request");

            r->main->count++;
            ngx_add_timer(&c->timer, NGX_HTTP_LLM_CACHE_POLL);

            return NGX_DONE;
        }

        /* waited long enough: upstream, without the lock */

        shctx->sh->misses++;
        c->status = c->stale ? NGX_HTTP_LLM_CACHE_EXPIRED
                             : NGX_HTTP_LLM_CACHE_MISS;

        return NGX_DECLINED;
    }

    if (conf->lock && c->store) {
        if (cn == NULL) {
            cn = ngx_http_llm_cache_alloc(shctx, c->key, 0);
        }

        if (cn) {
            cn->updating = 1;
            cn->lock_until = ngx_current_msec + conf->lock_timeout;
            c->leader = 1;
        }
    }

    shctx->sh->misses++;

    ngx_shmtx_unlock(&shctx->shpool->mutex);

    c->status = c->stale ? NGX_HTTP_LLM_CACHE_EXPIRED
                         : NGX_HTTP_LLM_CACHE_MISS;

    if (shctx->redis && !c->l2_tried) {
        /* L1 miss: L2 is asked first, the lock (if any) held meanwhile */

        c->l2_tried = 1;

        rc = ngx_http_llm_cache_l2_get(r, c);

        if (rc == NGX_OK) {
            r->main->count++;
            return NGX_DONE;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_DECLINED;
}


/* NGX_OK, NGX_DECLINED for an entry that does not decode, NGX_ERROR */

static ngx_int_t
ngx_http_llm_cache_copy(ngx_http_request_t *r, ngx_http_llm_cache_ctx_t *c,
    ngx_http_llm_cache_node_t *cn)
{
    c->data = ngx_pnalloc(r->pool, cn->len);
    if (c->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(c->data, cn->data, cn->len);
    c->len = cn->len;
    c->created = cn->created;

    if (ngx_http_llm_entry_decode(&c->entry, c->data, c->len) != 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "llm cache entry does not decode, dropped");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_llm_cache_wait_handler(ngx_event_t *ev)
{
    ngx_int_t                  rc;
    ngx_connection_t          *conn;
    ngx_http_request_t        *r;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_cache_ctx_t  *c;

    r = ev->data;
    conn = r->connection;
    ctx = ngx_http_llm_get_ctx(r);
    c = ctx->cache;

    rc = ngx_http_llm_cache_lookup(r, ctx, c);

    ngx_http_llm_cache_resume(r, ctx, rc);

    ngx_http_run_posted_requests(conn);
}


/* after a wait: upstream (NGX_DECLINED), or finalize what was served */

static void
ngx_http_llm_cache_resume(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_int_t rc)
{
    if (rc == NGX_DECLINED) {
        /* upstream: the phases go on after the precontent handler */
        ctx->status = NGX_DECLINED;
        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
        return;
    }

    /* served, or NGX_DONE balancing the count of a new wait */
    ngx_http_finalize_request(r, rc);
}


static void
ngx_http_llm_cache_cleanup(void *data)
{
    ngx_http_llm_cache_ctx_t  *c = data;

    if (c->timer.timer_set) {
        ngx_del_timer(&c->timer);
    }

    if (c->l2_timer.timer_set) {
        ngx_del_timer(&c->l2_timer);
    }

    if (c->l2) {
        /* the GET's answer will find no request */
        c->l2->r = NULL;
        c->l2 = NULL;
    }

    if (c->leader && !c->stored) {
        ngx_http_llm_cache_unlock(c, NGX_HTTP_LLM_LIVE_FAILED, NULL);
    }

    if (c->follow_id) {
        ngx_http_llm_cache_live_leave(c);
    }
}


/*
 * A leader that will not store gives the lock up; its live buffer, if
 * any, ends in the state given and stays while followers read it.
 */

static void
ngx_http_llm_cache_unlock(ngx_http_llm_cache_ctx_t *c, ngx_uint_t state,
    ngx_http_llm_usage_t *usage)
{
    ngx_http_llm_cache_node_t   *cn;
    ngx_http_llm_cache_shctx_t  *shctx;

    shctx = c->shctx;
    c->leader = 0;

    ngx_shmtx_lock(&shctx->shpool->mutex);

    cn = ngx_http_llm_cache_find(shctx, c->key);

    if (cn && c->live_id) {
        ngx_http_llm_cache_live_end(shctx, cn, c, state, usage);
    }

    c->live_id = 0;

    if (cn && cn->updating) {
        if (cn->len == 0 && cn->live == NULL) {
            ngx_http_llm_cache_delete(shctx, cn);

        } else {
            cn->updating = 0;
        }
    }

    ngx_shmtx_unlock(&shctx->shpool->mutex);
}


/* serving */


static ngx_int_t
ngx_http_llm_cache_serve(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_ctx_t *c)
{
    off_t                      size;
    ngx_int_t                  rc;
    ngx_chain_t               *out;
    ngx_http_llm_loc_conf_t   *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    c->serving = 1;
    ngx_http_llm_cache_account(ctx, c);

    /* served after waiting on an identical request: coalesced */
    ctx->cache_coalesced = c->waiting;

    r->headers_out.status = NGX_HTTP_OK;

    if (c->sse) {
        ngx_str_set(&r->headers_out.content_type, "text/event-stream");

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (ngx_http_llm_cache_headers(r, c) != NGX_OK) {
        return NGX_ERROR;
    }

    if (c->sse && llcf->cache.replay_rate) {
        /* paced: one event at a time from a timer */

        rc = ngx_http_send_header(r);

        if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
            return rc;
        }

        r->write_event_handler = ngx_http_request_empty_handler;

        ngx_http_llm_replay_init(&c->replay, &c->entry,
                                 NGX_HTTP_LLM_CACHE_PACE_CHUNK,
                                 c->include_usage);

        c->timer.handler = ngx_http_llm_cache_pace_handler;
        r->main->count++;
        ngx_add_timer(&c->timer, 1);

        return NGX_DONE;
    }

    out = ngx_http_llm_cache_render(r, c, &size);
    if (out == NULL) {
        return NGX_ERROR;
    }

    if (!c->sse) {
        r->headers_out.content_length_n = size;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, out);
}


/* a hit is accounted as such: upstream's figures, no upstream call */

static void
ngx_http_llm_cache_account(ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_ctx_t *c)
{
    ctx->cache_hit = 1;
    ctx->done = 1;
    ctx->outcome = NGX_HTTP_LLM_OUTCOME_COMPLETE;
    ctx->usage = c->entry.usage;
    ctx->usage_source = NGX_HTTP_LLM_USAGE_UPSTREAM;
    ctx->sse_response = c->sse;
    ctx->json_response = !c->sse;
}


/* the whole answer in one buffer: JSON, or every SSE event */

static ngx_chain_t *
ngx_http_llm_cache_render(ngx_http_request_t *r, ngx_http_llm_cache_ctx_t *c,
    off_t *size)
{
    size_t        n, max, cap;
    u_char       *p;
    unsigned      content;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (!c->sse) {
        n = ngx_http_llm_render_json(&c->entry, NULL, 0);

        b = ngx_create_temp_buf(r->pool, n);
        if (b == NULL) {
            return NULL;
        }

        b->last += ngx_http_llm_render_json(&c->entry, b->pos, n);

    } else {
        ngx_http_llm_replay_init(&c->replay, &c->entry,
                                 NGX_HTTP_LLM_CACHE_CHUNK, c->include_usage);

        max = ngx_http_llm_replay_max(&c->replay);
        cap = 2 * c->len + 4 * max;

        b = ngx_create_temp_buf(r->pool, cap);
        if (b == NULL) {
            return NULL;
        }

        for ( ;; ) {
            if ((size_t) (b->end - b->last) < max) {
                cap = 2 * cap;

                p = ngx_pnalloc(r->pool, cap);
                if (p == NULL) {
                    return NULL;
                }

                b->last = ngx_cpymem(p, b->pos, b->last - b->pos);
                b->start = p;
                b->pos = p;
                b->end = p + cap;
            }

            n = ngx_http_llm_replay_next(&c->replay, b->last, max, &content);

            if (n == 0) {
                break;
            }

            b->last += n;
        }
    }

    b->last_buf = 1;
    b->last_in_chain = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    *size = b->last - b->pos;

    return cl;
}


static void
ngx_http_llm_cache_pace_handler(ngx_event_t *ev)
{
    size_t                     n, bytes;
    ngx_int_t                  rc;
    ngx_msec_t                 delay;
    ngx_buf_t                 *b;
    unsigned                   content;
    ngx_chain_t                out;
    ngx_connection_t          *conn;
    ngx_http_request_t        *r;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_cache_ctx_t  *c;
    ngx_http_llm_loc_conf_t   *llcf;

    r = ev->data;
    conn = r->connection;
    ctx = ngx_http_llm_get_ctx(r);
    c = ctx->cache;
    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    /* the events up to and including the next content event */

    b = ngx_create_temp_buf(r->pool, 4 * ngx_http_llm_replay_max(&c->replay));
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        goto done;
    }

    bytes = 0;
    content = 0;

    while (!content && (size_t) (b->end - b->last)
                       >= ngx_http_llm_replay_max(&c->replay))
    {
        n = ngx_http_llm_replay_next(&c->replay, b->last,
                                     b->end - b->last, &content);
        if (n == 0) {
            b->last_buf = 1;
            break;
        }

        b->last += n;

        if (content) {
            bytes = c->replay.chunk;
        }
    }

    b->flush = 1;

    if (b->last == b->pos) {
        b->temporary = 0;
    }

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_output_filter(r, &out);

    if (rc == NGX_ERROR || b->last_buf) {
        ngx_http_finalize_request(r, rc);
        goto done;
    }

    /* about 4 bytes a token */

    delay = (ngx_msec_t) (((bytes + 3) / 4) * 1000 / llcf->cache.replay_rate);

    ngx_add_timer(&c->timer, delay ? delay : 1);

done:

    ngx_http_run_posted_requests(conn);
}


static ngx_int_t
ngx_http_llm_cache_headers(ngx_http_request_t *r, ngx_http_llm_cache_ctx_t *c)
{
    u_char     *p;
    ngx_str_t   v;

    if (c->status == NGX_HTTP_LLM_CACHE_NONE) {
        return NGX_OK;
    }

    if (ngx_http_llm_cache_set_header(r, "X-Cache-Status",
                                      &ngx_http_llm_cache_statuses[c->status])
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (c->sse && c->serving) {
        ngx_str_set(&v, "no-cache");

        if (ngx_http_llm_cache_set_header(r, "Cache-Control", &v) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (!c->serving) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v.data = p;
    v.len = ngx_sprintf(p, "%T", ngx_max(ngx_time() - c->created, 0)) - p;

    return ngx_http_llm_cache_set_header(r, "Age", &v);
}


static ngx_int_t
ngx_http_llm_cache_set_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


/* storing */


static void
ngx_http_llm_cache_store(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_ctx_t *c)
{
    size_t                       len;
    time_t                       now;
    int64_t                      created;
    u_char                      *buf;
    ngx_http_llm_msg_t          *msg;
    ngx_http_llm_loc_conf_t     *llcf;
    ngx_http_llm_cache_node_t   *cn;
    ngx_http_llm_cache_shctx_t  *shctx;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);
    shctx = c->shctx;
    msg = c->msg;

    c->store = 0;

    msg->usage = ctx->usage;

    if (ngx_http_llm_msg_finish(msg) != 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm cache: not stored: %s", msg->uncacheable);
        return;
    }

    len = ngx_http_llm_msg_encode(msg, NULL, 0);

    if (len > shctx->max_entry) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm cache entry of %uz bytes exceeds max_entry %uz, "
                      "not stored", len, shctx->max_entry);
        return;
    }

    now = ngx_time();

    /* the L2 value: creation time, then the entry as L1 holds it */

    buf = ngx_pnalloc(r->pool, NGX_HTTP_LLM_CACHE_L2_HEAD + len);
    if (buf == NULL) {
        return;
    }

    created = now;
    ngx_memcpy(buf, &created, NGX_HTTP_LLM_CACHE_L2_HEAD);
    (void) ngx_http_llm_msg_encode(msg, buf + NGX_HTTP_LLM_CACHE_L2_HEAD,
                                   len);

    if (shctx->redis) {
        ngx_http_llm_cache_l2_set(r, c, buf,
                                  NGX_HTTP_LLM_CACHE_L2_HEAD + len,
                                  shctx->redis_ttl ? shctx->redis_ttl
                                                   : llcf->cache.valid);
    }

    ngx_shmtx_lock(&shctx->shpool->mutex);

    cn = ngx_http_llm_cache_put(shctx, c->key,
                                buf + NGX_HTTP_LLM_CACHE_L2_HEAD, len, now,
                                now + llcf->cache.valid);

    if (cn == NULL) {
        ngx_shmtx_unlock(&shctx->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm cache zone \"%V\" is full even after evictions, "
                      "entry of %uz bytes not stored: increase the zone size",
                      &llcf->cache.shm_zone->shm.name, len);
        return;
    }

    shctx->sh->stores++;

    if (c->live_id) {
        ngx_http_llm_cache_live_end(shctx, cn, c, NGX_HTTP_LLM_LIVE_COMPLETE,
                                    &ctx->usage);
        c->live_id = 0;
    }

    ngx_shmtx_unlock(&shctx->shpool->mutex);

    c->stored = 1;
    c->leader = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm cache: stored %uz bytes", len);
}


/* called with the zone locked; replaces any node of the key */

static ngx_http_llm_cache_node_t *
ngx_http_llm_cache_put(ngx_http_llm_cache_shctx_t *shctx, uint64_t *key,
    u_char *data, size_t len, time_t created, time_t expires)
{
    ngx_http_llm_cache_live_t  *live;
    ngx_http_llm_cache_node_t  *cn;

    live = NULL;

    cn = ngx_http_llm_cache_find(shctx, key);

    if (cn) {
        /* a live stream goes on in the new node, for its followers */
        live = cn->live;
        cn->live = NULL;

        ngx_http_llm_cache_delete(shctx, cn);
    }

    cn = ngx_http_llm_cache_alloc(shctx, key, len);

    if (cn == NULL) {
        if (live) {
            ngx_http_llm_cache_live_free(shctx, live);
        }

        return NULL;
    }

    cn->live = live;

    ngx_memcpy(cn->data, data, len);

    cn->created = created;
    cn->expires = expires;

    return cn;
}


/* L2: Redis, one client per zone and worker process */


ngx_int_t
ngx_http_llm_cache_init_process(ngx_cycle_t *cycle)
{
    char                        *purpose;
    ngx_uint_t                   i;
    ngx_list_part_t             *part;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_llm_cache_shctx_t  *shctx;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
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

        if (shm_zone[i].init != ngx_http_llm_cache_init_zone) {
            continue;
        }

        shctx = shm_zone[i].data;

        if (shctx->redis_addr == NULL) {
            continue;
        }

        purpose = ngx_pnalloc(cycle->pool, shctx->name.len
                                           + sizeof("llm_cache_zone \"\""));
        if (purpose == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf((u_char *) purpose, "llm_cache_zone \"%V\"%Z",
                    &shctx->name);

        shctx->redis = ngx_http_llm_redis_create(cycle->pool, cycle->log,
                                        shctx->redis_addr, purpose, 1000,
                                        ngx_max(shctx->redis_timeout, 1000));
        if (shctx->redis == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* closes the clients, so that no socket is left open at exit */

void
ngx_http_llm_cache_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_list_part_t             *part;
    ngx_shm_zone_t              *shm_zone;
    ngx_http_llm_cache_shctx_t  *shctx;

    ngx_http_llm_cache_exiting = 1;

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

        if (shm_zone[i].init != ngx_http_llm_cache_init_zone) {
            continue;
        }

        shctx = shm_zone[i].data;

        if (shctx->redis) {
            ngx_http_llm_redis_close(shctx->redis);
            shctx->redis = NULL;
        }
    }
}


static u_char *
ngx_http_llm_cache_l2_key(u_char *p, uint64_t *key)
{
    p = ngx_cpymem(p, NGX_HTTP_LLM_CACHE_L2_PREFIX,
                   sizeof(NGX_HTTP_LLM_CACHE_L2_PREFIX) - 1);

    return ngx_sprintf(p, "%016uxL%016uxL", key[1], key[0]);
}


/*
 * NGX_OK: a GET is in flight, its answer or l2_timer resumes the request;
 * NGX_DECLINED: Redis is not there, go upstream at once.
 */

static ngx_int_t
ngx_http_llm_cache_l2_get(ngx_http_request_t *r, ngx_http_llm_cache_ctx_t *c)
{
    u_char                   key[NGX_HTTP_LLM_CACHE_L2_KEY_LEN];
    ngx_int_t                rc;
    ngx_http_llm_cache_l2_t *l2;

    l2 = ngx_alloc(sizeof(ngx_http_llm_cache_l2_t), r->connection->log);
    if (l2 == NULL) {
        return NGX_ERROR;
    }

    l2->r = r;

    (void) ngx_http_llm_cache_l2_key(key, c->key);

    rc = ngx_http_llm_redis_command(c->shctx->redis,
                                    ngx_http_llm_cache_l2_reply, l2,
                                    "GET %b", key, sizeof(key));
    if (rc != NGX_OK) {
        ngx_free(l2);
        ngx_http_llm_cache_l2_down(c->shctx, r->connection->log,
                                   "not connected");
        return NGX_DECLINED;
    }

    c->l2 = l2;

    c->l2_timer.handler = ngx_http_llm_cache_l2_timeout;
    c->l2_timer.data = r;
    c->l2_timer.log = r->connection->log;

    ngx_add_timer(&c->l2_timer, c->shctx->redis_timeout);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm cache: L1 miss, asking redis");

    return NGX_OK;
}


static void
ngx_http_llm_cache_l2_reply(ngx_http_llm_redis_t *rd, redisReply *reply,
    void *data)
{
    ngx_http_llm_cache_l2_t *l2 = data;

    ngx_int_t                  rc;
    ngx_connection_t          *conn;
    ngx_http_request_t        *r;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_cache_ctx_t  *c;

    r = l2->r;
    ngx_free(l2);

    if (r == NULL || ngx_http_llm_cache_exiting) {
        /* timed out or finalized meanwhile, or the process exits */
        return;
    }

    conn = r->connection;
    ctx = ngx_http_llm_get_ctx(r);
    c = ctx->cache;

    c->l2 = NULL;

    if (c->l2_timer.timer_set) {
        ngx_del_timer(&c->l2_timer);
    }

    rc = NGX_DECLINED;

    if (reply == NULL) {
        ngx_http_llm_cache_l2_down(c->shctx, conn->log, "no answer");

    } else if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_llm_cache_l2_down(c->shctx, conn->log, "an error reply");

    } else if (reply->type == REDIS_REPLY_STRING) {
        rc = ngx_http_llm_cache_l2_hit(r, ctx, c, (u_char *) reply->str,
                                       reply->len);
    }

    /* REDIS_REPLY_NIL: not in L2 either */

    ngx_http_llm_cache_resume(r, ctx, rc);

    ngx_http_run_posted_requests(conn);
}


static void
ngx_http_llm_cache_l2_timeout(ngx_event_t *ev)
{
    ngx_connection_t          *conn;
    ngx_http_request_t        *r;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_cache_ctx_t  *c;

    r = ev->data;
    conn = r->connection;
    ctx = ngx_http_llm_get_ctx(r);
    c = ctx->cache;

    if (c->l2) {
        c->l2->r = NULL;
        c->l2 = NULL;
    }

    ngx_http_llm_cache_l2_down(c->shctx, conn->log, "timed out");

    ngx_http_llm_cache_resume(r, ctx, NGX_DECLINED);

    ngx_http_run_posted_requests(conn);
}


/* an L2 value: promoted to L1 and served; NGX_DECLINED when unusable */

static ngx_int_t
ngx_http_llm_cache_l2_hit(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_ctx_t *c, u_char *p, size_t len)
{
    u_char                      *data;
    time_t                       now, expires;
    int64_t                      created;
    ngx_http_llm_entry_t         entry;
    ngx_http_llm_loc_conf_t     *llcf;
    ngx_http_llm_cache_node_t   *cn;
    ngx_http_llm_cache_shctx_t  *shctx;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);
    shctx = c->shctx;

    if (len <= NGX_HTTP_LLM_CACHE_L2_HEAD
        || len - NGX_HTTP_LLM_CACHE_L2_HEAD > shctx->max_entry)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm cache redis value of %uz bytes ignored: not an "
                      "entry of this zone", len);
        return NGX_DECLINED;
    }

    ngx_memcpy(&created, p, NGX_HTTP_LLM_CACHE_L2_HEAD);

    p += NGX_HTTP_LLM_CACHE_L2_HEAD;
    len -= NGX_HTTP_LLM_CACHE_L2_HEAD;

    now = ngx_time();
    expires = (time_t) created + llcf->cache.valid;

    if (expires <= now) {
        return NGX_DECLINED;
    }

    data = ngx_pnalloc(r->pool, len);
    if (data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(data, p, len);

    if (ngx_http_llm_entry_decode(&entry, data, len) != 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm cache redis value does not decode, ignored");
        return NGX_DECLINED;
    }

    c->data = data;
    c->len = len;
    c->entry = entry;
    c->created = (time_t) created;
    c->stale = 0;

    /* promotion: the lock node, if we hold one, becomes the entry */

    ngx_shmtx_lock(&shctx->shpool->mutex);

    cn = ngx_http_llm_cache_put(shctx, c->key, data, len, c->created,
                                expires);
    shctx->sh->hits++;

    ngx_shmtx_unlock(&shctx->shpool->mutex);

    if (cn == NULL) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm cache zone \"%V\" is full even after evictions, "
                      "redis entry of %uz bytes not promoted: increase the "
                      "zone size", &shctx->name, len);
    }

    /* the lock node was replaced or removed: nothing left to unlock */
    c->leader = 0;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm cache: redis hit, promoted");

    c->status = NGX_HTTP_LLM_CACHE_HIT;

    return ngx_http_llm_cache_serve(r, ctx, c);
}


/* fire and forget: a failure is counted and logged once per interval */

static void
ngx_http_llm_cache_l2_set(ngx_http_request_t *r, ngx_http_llm_cache_ctx_t *c,
    u_char *value, size_t len, time_t ttl)
{
    u_char       key[NGX_HTTP_LLM_CACHE_L2_KEY_LEN], ex[NGX_TIME_T_LEN];
    size_t       argvlen[5];
    const char  *argv[5];

    (void) ngx_http_llm_cache_l2_key(key, c->key);

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (const char *) key;
    argvlen[1] = sizeof(key);
    argv[2] = (const char *) value;
    argvlen[2] = len;
    argv[3] = "EX";
    argvlen[3] = 2;
    argv[4] = (const char *) ex;
    argvlen[4] = ngx_sprintf(ex, "%T", ttl) - ex;

    if (ngx_http_llm_redis_command_argv(c->shctx->redis,
                                        ngx_http_llm_cache_l2_set_reply,
                                        c->shctx, 5, argv, argvlen)
        != NGX_OK)
    {
        ngx_http_llm_cache_l2_down(c->shctx, r->connection->log,
                                   "not connected, entry not stored");
    }
}


static void
ngx_http_llm_cache_l2_set_reply(ngx_http_llm_redis_t *rd, redisReply *reply,
    void *data)
{
    ngx_http_llm_cache_shctx_t *shctx = data;

    if (ngx_http_llm_cache_exiting) {
        return;
    }

    if (reply == NULL) {
        ngx_http_llm_cache_l2_down(shctx, ngx_cycle->log,
                                   "no answer to a SET");

    } else if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_llm_cache_l2_down(shctx, ngx_cycle->log,
                                   "an error reply to a SET");
    }
}


static void
ngx_http_llm_cache_l2_down(ngx_http_llm_cache_shctx_t *shctx, ngx_log_t *log,
    const char *why)
{
    shctx->redis_errors++;

    if (shctx->redis_log_ever
        && ngx_current_msec - shctx->redis_logged
           < NGX_HTTP_LLM_REDIS_LOG_INTERVAL)
    {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "llm cache redis %V of zone \"%V\" unavailable (%s; %ui "
                  "failures since the last report): serving from L1 only, "
                  "check the Redis server",
                  &shctx->redis_addr->name, &shctx->name, why,
                  shctx->redis_errors);

    shctx->redis_log_ever = 1;
    shctx->redis_logged = ngx_current_msec;
    shctx->redis_errors = 0;
}


static void *
ngx_http_llm_cache_grow(void *data, void *p, size_t old, size_t size)
{
    ngx_http_request_t  *r = data;

    u_char  *n;

    n = ngx_pnalloc(r->pool, size);

    if (n && old) {
        ngx_memcpy(n, p, old);
    }

    return n;
}


void
ngx_http_llm_cache_event(ngx_http_request_t *r, const u_char *name,
    size_t name_len, const u_char *data, size_t len)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL || ctx->cache == NULL) {
        return;
    }

    if (ctx->cache->live_id) {
        ngx_http_llm_cache_live_add(r, ctx, ctx->cache, name, name_len,
                                    data, len);
    }

    if (ctx->cache->msg == NULL || !ctx->cache->store) {
        return;
    }

    (void) ngx_http_llm_msg_event(ctx->cache->msg, name, name_len, data,
                                  len);
}


/* live streams: the leader's side */


static void
ngx_http_llm_cache_live_start(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_ctx_t *c)
{
    ngx_http_llm_cache_live_t   *live;
    ngx_http_llm_cache_node_t   *cn;
    ngx_http_llm_cache_shctx_t  *shctx;

    static uint32_t  seq;

    shctx = c->shctx;

    ngx_shmtx_lock(&shctx->shpool->mutex);

    cn = ngx_http_llm_cache_find(shctx, c->key);

    if (cn == NULL || !cn->updating) {
        ngx_shmtx_unlock(&shctx->shpool->mutex);
        return;
    }

    if (cn->live) {
        /* an earlier leader's, given up: its followers end */
        ngx_http_llm_cache_live_free(shctx, cn->live);
        cn->live = NULL;
    }

    live = ngx_slab_calloc_locked(shctx->shpool,
                                  sizeof(ngx_http_llm_cache_live_t));
    if (live == NULL) {
        ngx_shmtx_unlock(&shctx->shpool->mutex);

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm cache zone \"%V\" is full, identical requests "
                      "waiting for this stream get it when it is complete: "
                      "increase the zone size", &shctx->name);
        return;
    }

    live->id = ((uint64_t) ngx_pid << 32) | ++seq;
    cn->live = live;

    ngx_shmtx_unlock(&shctx->shpool->mutex);

    c->live_id = live->id;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm cache: live stream started");
}


/* one event into the records waiting for the next flush */

static void
ngx_http_llm_cache_live_add(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_ctx_t *c, const u_char *name, size_t name_len,
    const u_char *data, size_t len)
{
    size_t                      need, used, size;
    u_char                     *p, flags;
    uint32_t                    n;
    ngx_buf_t                  *b;
    ngx_http_llm_event_info_t   info;

    if (c->live_overflow) {
        return;
    }

    need = NGX_HTTP_LLM_LIVE_HEAD + name_len + len;

    if (name_len > 255 || c->live_total + need > c->shctx->max_entry) {
        c->live_overflow = 1;
        return;
    }

    flags = 0;

    if (c->openai) {
        ngx_http_llm_event_analyze((int) ctx->api, name, name_len, data, len,
                                   &info);

        if (info.usage_only) {
            flags |= NGX_HTTP_LLM_LIVE_USAGE_ONLY;
        }
    }

    b = c->live_out;
    used = b ? (size_t) (b->last - b->pos) : 0;

    if (b == NULL || (size_t) (b->end - b->last) < need) {
        size = ngx_max(2 * (used + need), 4096);

        p = ngx_pnalloc(r->pool, size);
        if (p == NULL) {
            c->live_overflow = 1;
            return;
        }

        if (b == NULL) {
            b = ngx_calloc_buf(r->pool);
            if (b == NULL) {
                c->live_overflow = 1;
                return;
            }

            c->live_out = b;

        } else if (used) {
            ngx_memcpy(p, b->pos, used);
        }

        b->start = p;
        b->pos = p;
        b->last = p + used;
        b->end = p + size;
        b->temporary = 1;
    }

    n = (uint32_t) len;

    p = b->last;
    ngx_memcpy(p, &n, sizeof(uint32_t));
    p[4] = flags;
    p[5] = (u_char) name_len;
    p = ngx_cpymem(p + NGX_HTTP_LLM_LIVE_HEAD, name, name_len);
    b->last = ngx_cpymem(p, data, len);

    c->live_total += need;
}


/* the records of this upstream read into the zone, one lock */

static void
ngx_http_llm_cache_live_flush(ngx_http_request_t *r,
    ngx_http_llm_cache_ctx_t *c)
{
    size_t                       n, cap;
    u_char                      *p;
    ngx_uint_t                   overflow;
    ngx_http_llm_loc_conf_t     *llcf;
    ngx_http_llm_cache_live_t   *live;
    ngx_http_llm_cache_node_t   *cn;
    ngx_http_llm_cache_shctx_t  *shctx;

    n = c->live_out ? (size_t) (c->live_out->last - c->live_out->pos) : 0;
    overflow = c->live_overflow && !c->live_marked;

    if (n == 0 && !overflow) {
        return;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);
    shctx = c->shctx;

    ngx_shmtx_lock(&shctx->shpool->mutex);

    cn = ngx_http_llm_cache_find(shctx, c->key);
    live = cn ? cn->live : NULL;

    if (live == NULL || live->id != c->live_id) {
        /* evicted, or another leader took over after lock_timeout */
        ngx_shmtx_unlock(&shctx->shpool->mutex);

        c->live_id = 0;

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm cache: live stream lost");
        return;
    }

    if (n && !live->overflow && live->len + n > live->cap) {
        cap = ngx_max(ngx_max(2 * live->cap, live->len + n), 4096);
        cap = ngx_min(cap, shctx->max_entry);

        p = ngx_slab_alloc_locked(shctx->shpool, cap);

        if (p == NULL) {
            overflow = 1;

        } else {
            if (live->data) {
                ngx_memcpy(p, live->data, live->len);
                ngx_slab_free_locked(shctx->shpool, live->data);
            }

            live->data = p;
            live->cap = cap;
        }
    }

    if (overflow) {
        live->overflow = 1;
    }

    if (n && !live->overflow) {
        ngx_memcpy(live->data + live->len, c->live_out->pos, n);
        live->len += n;
    }

    /* a streaming leader keeps its lock: lock_timeout bounds its silence */

    if (cn->updating) {
        cn->lock_until = ngx_current_msec + llcf->cache.lock_timeout;
    }

    ngx_shmtx_unlock(&shctx->shpool->mutex);

    if (c->live_out) {
        c->live_out->pos = c->live_out->start;
        c->live_out->last = c->live_out->start;
    }

    if (overflow && !c->live_marked) {
        c->live_marked = 1;
        c->live_overflow = 1;

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm cache live stream exceeds max_entry %uz of zone "
                      "\"%V\": its followers end with an error event, new "
                      "waiters get the stored answer", shctx->max_entry,
                      &shctx->name);
    }
}


/* called with the zone locked */

static void
ngx_http_llm_cache_live_end(ngx_http_llm_cache_shctx_t *shctx,
    ngx_http_llm_cache_node_t *cn, ngx_http_llm_cache_ctx_t *c,
    ngx_uint_t state, ngx_http_llm_usage_t *usage)
{
    ngx_http_llm_cache_live_t  *live;

    live = cn->live;

    if (live == NULL || live->id != c->live_id) {
        return;
    }

    live->state = state;

    if (usage) {
        live->usage = *usage;

    } else {
        ngx_http_llm_usage_init(&live->usage);
    }

    if (live->readers == 0) {
        ngx_http_llm_cache_live_free(shctx, live);
        cn->live = NULL;
    }
}


/* called with the zone locked */

static void
ngx_http_llm_cache_live_free(ngx_http_llm_cache_shctx_t *shctx,
    ngx_http_llm_cache_live_t *live)
{
    if (live->data) {
        ngx_slab_free_locked(shctx->shpool, live->data);
    }

    ngx_slab_free_locked(shctx->shpool, live);
}


/* live streams: the followers' side */


static void
ngx_http_llm_cache_live_leave(ngx_http_llm_cache_ctx_t *c)
{
    ngx_http_llm_cache_live_t   *live;
    ngx_http_llm_cache_node_t   *cn;
    ngx_http_llm_cache_shctx_t  *shctx;

    shctx = c->shctx;

    ngx_shmtx_lock(&shctx->shpool->mutex);

    cn = ngx_http_llm_cache_find(shctx, c->key);
    live = cn ? cn->live : NULL;

    if (live && live->id == c->follow_id) {
        live->readers--;

        if (live->readers == 0
            && live->state != NGX_HTTP_LLM_LIVE_STREAMING)
        {
            ngx_http_llm_cache_live_free(shctx, live);
            cn->live = NULL;

            if (cn->len == 0 && !cn->updating) {
                ngx_http_llm_cache_delete(shctx, cn);
            }
        }
    }

    ngx_shmtx_unlock(&shctx->shpool->mutex);

    c->follow_id = 0;
}


/* a waiter that asked for a stream joins the leader's, headers first */

static ngx_int_t
ngx_http_llm_cache_follow(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_http_llm_cache_ctx_t *c)
{
    ngx_int_t                 rc;
    ngx_http_llm_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm cache: following a live stream");

    c->status = NGX_HTTP_LLM_CACHE_HIT;
    c->serving = 1;
    c->stale = 0;
    c->created = ngx_time();
    c->follow_pos = 0;
    c->poll = NGX_HTTP_LLM_CACHE_POLL;
    c->wait_until = ngx_current_msec + llcf->cache.lock_timeout;

    ctx->cache_hit = 1;
    ctx->cache_coalesced = 1;
    ctx->sse_response = 1;
    ctx->json_response = 0;

    r->headers_out.status = NGX_HTTP_OK;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    if (ngx_http_llm_cache_headers(r, c) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    c->timer.handler = ngx_http_llm_cache_follow_handler;
    r->main->count++;
    ngx_add_timer(&c->timer, 1);

    return NGX_DONE;
}


static void
ngx_http_llm_cache_follow_handler(ngx_event_t *ev)
{
    size_t                       n;
    u_char                      *p;
    ngx_int_t                    rc;
    ngx_uint_t                   state;
    ngx_chain_t                 *out;
    ngx_connection_t            *conn;
    ngx_http_request_t          *r;
    ngx_http_llm_ctx_t          *ctx;
    ngx_http_llm_usage_t         usage;
    ngx_http_llm_cache_ctx_t    *c;
    ngx_http_llm_loc_conf_t     *llcf;
    ngx_http_llm_cache_live_t   *live;
    ngx_http_llm_cache_node_t   *cn;
    ngx_http_llm_cache_shctx_t  *shctx;

    r = ev->data;
    conn = r->connection;
    ctx = ngx_http_llm_get_ctx(r);
    c = ctx->cache;
    shctx = c->shctx;
    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (conn->buffered & NGX_HTTP_WRITE_BUFFERED) {
        /* the client is slower than the stream: nothing read meanwhile */

        rc = ngx_http_output_filter(r, NULL);

        if (rc == NGX_ERROR) {
            ngx_http_finalize_request(r, NGX_ERROR);
            goto done;
        }

        if (conn->buffered & NGX_HTTP_WRITE_BUFFERED) {
            ngx_add_timer(&c->timer, NGX_HTTP_LLM_CACHE_POLL_IDLE);
            goto done;
        }
    }

    p = NULL;
    n = 0;
    ngx_http_llm_usage_init(&usage);

    ngx_shmtx_lock(&shctx->shpool->mutex);

    cn = ngx_http_llm_cache_find(shctx, c->key);
    live = cn ? cn->live : NULL;

    if (live == NULL || live->id != c->follow_id) {
        /* evicted, or replaced by a new leader's after a failure */
        state = NGX_HTTP_LLM_LIVE_FAILED;
        c->follow_id = 0;

    } else {
        state = live->state;
        usage = live->usage;
        n = live->len - c->follow_pos;

        if (n) {
            p = ngx_pnalloc(r->pool, n);
            if (p == NULL) {
                ngx_shmtx_unlock(&shctx->shpool->mutex);
                ngx_http_finalize_request(r, NGX_ERROR);
                goto done;
            }

            ngx_memcpy(p, live->data + c->follow_pos, n);
            c->follow_pos += n;
        }

        if (live->overflow) {
            /* what came before the limit, then the end */
            state = n ? NGX_HTTP_LLM_LIVE_STREAMING
                      : NGX_HTTP_LLM_LIVE_FAILED;
        }
    }

    ngx_shmtx_unlock(&shctx->shpool->mutex);

    if (n) {
        c->poll = NGX_HTTP_LLM_CACHE_POLL;
        c->wait_until = ngx_current_msec + llcf->cache.lock_timeout;

    } else if (state == NGX_HTTP_LLM_LIVE_STREAMING) {

        if ((ngx_msec_int_t) (c->wait_until - ngx_current_msec) > 0) {
            /* nothing new: poll less often while the stream is idle */
            c->poll = ngx_min(2 * c->poll, NGX_HTTP_LLM_CACHE_POLL_IDLE);
            ngx_add_timer(&c->timer, c->poll);
            goto done;
        }

        ngx_log_error(NGX_LOG_WARN, conn->log, 0,
                      "llm cache live stream silent for "
                      "llm_cache_lock_timeout %M ms, follower closed with "
                      "an error event", llcf->cache.lock_timeout);

        state = NGX_HTTP_LLM_LIVE_FAILED;
    }

    if (state != NGX_HTTP_LLM_LIVE_STREAMING) {
        if (c->follow_id) {
            ngx_http_llm_cache_live_leave(c);
        }

        ctx->end = ngx_current_msec;

        if (state == NGX_HTTP_LLM_LIVE_FAILED) {
            ctx->ended = 1;
            ctx->outcome = NGX_HTTP_LLM_OUTCOME_ERROR;

        } else {
            ctx->done = 1;
            ctx->outcome = NGX_HTTP_LLM_OUTCOME_COMPLETE;
            ctx->usage = usage;
            ctx->usage_source = NGX_HTTP_LLM_USAGE_UPSTREAM;
        }
    }

    out = ngx_http_llm_cache_follow_render(r, c, p, n, state);
    if (out == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        goto done;
    }

    rc = ngx_http_output_filter(r, out);

    if (rc == NGX_ERROR || state != NGX_HTTP_LLM_LIVE_STREAMING) {
        ngx_http_finalize_request(r, rc);
        goto done;
    }

    ngx_add_timer(&c->timer, c->poll);

done:

    ngx_http_run_posted_requests(conn);
}


/*
 * Records as SSE events in the follower's own form: without the OpenAI
 * usage chunk (and the "usage":null members) unless it asked for usage;
 * a torn stream ends with an error event as the stream watcher writes it.
 */

static ngx_chain_t *
ngx_http_llm_cache_follow_render(ngx_http_request_t *r,
    ngx_http_llm_cache_ctx_t *c, u_char *p, size_t len, ngx_uint_t state)
{
    size_t        size, dlen, nlen, i;
    u_char       *q, *d, *e, *nl, *last;
    uint32_t      n;
    ngx_str_t    *t;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    static ngx_str_t  openai_error = ngx_string(
        "data: {\"error\":{\"message\":\"The upstream model server "
        "ended the stream before it was complete.\",\"type\":"
        "\"server_error\",\"param\":null,\"code\":\"upstream_incomplete\"}}"
        "\n\ndata: [DONE]\n\n");

    static ngx_str_t  anthropic_error = ngx_string(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
        "\"api_error\",\"message\":\"The upstream model server ended the "
        "stream before it was complete.\"}}\n\n");

    static ngx_str_t  usage_null[] = {
        ngx_string(",\"usage\":null}"),
        ngx_string(", \"usage\": null}")
    };

    t = c->openai ? &openai_error : &anthropic_error;
    last = len ? p + len : p;     /* p is NULL when nothing is new */

    /* an upper bound: every data line gets "data: " and "\n" */

    size = (state == NGX_HTTP_LLM_LIVE_FAILED) ? t->len : 0;

    for (q = p; q < last; q = d + n) {
        ngx_memcpy(&n, q, sizeof(uint32_t));
        nlen = q[5];
        d = q + NGX_HTTP_LLM_LIVE_HEAD + nlen;

        size += sizeof("event: \n") + nlen + sizeof("data: \n\n") + n;

        for (e = d; (nl = ngx_strlchr(e, d + n, '\n')) != NULL; e = nl + 1) {
            size += sizeof("data: ");
        }
    }

    b = ngx_create_temp_buf(r->pool, ngx_max(size, 1));
    if (b == NULL) {
        return NULL;
    }

    for (q = p; q < last; q = d + n) {
        ngx_memcpy(&n, q, sizeof(uint32_t));
        nlen = q[5];
        d = q + NGX_HTTP_LLM_LIVE_HEAD + nlen;
        dlen = n;

        if (!c->include_usage && c->openai) {
            if (q[4] & NGX_HTTP_LLM_LIVE_USAGE_ONLY) {
                continue;
            }

            for (i = 0; i < 2; i++) {
                if (dlen >= usage_null[i].len
                    && ngx_memcmp(d + dlen - usage_null[i].len,
                                  usage_null[i].data, usage_null[i].len)
                       == 0)
                {
                    /* all but the '}' goes */
                    dlen -= usage_null[i].len - 1;
                    d[dlen - 1] = '}';
                    break;
                }
            }
        }

        if (nlen) {
            b->last = ngx_cpymem(b->last, "event: ", sizeof("event: ") - 1);
            b->last = ngx_cpymem(b->last, q + NGX_HTTP_LLM_LIVE_HEAD, nlen);
            *b->last++ = '\n';
        }

        for (e = d; /* void */; e = nl + 1) {
            nl = ngx_strlchr(e, d + dlen, '\n');

            b->last = ngx_cpymem(b->last, "data: ", sizeof("data: ") - 1);
            b->last = ngx_cpymem(b->last, e, (nl ? nl : d + dlen) - e);
            *b->last++ = '\n';

            if (nl == NULL) {
                break;
            }
        }

        *b->last++ = '\n';
    }

    if (state == NGX_HTTP_LLM_LIVE_FAILED) {
        b->last = ngx_cpymem(b->last, t->data, t->len);
    }

    b->flush = 1;

    if (state != NGX_HTTP_LLM_LIVE_STREAMING) {
        b->last_buf = 1;
        b->last_in_chain = 1;
    }

    if (b->last == b->pos) {
        b->temporary = 0;
        b->sync = 1;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


/* stale-if-error */


static ngx_int_t
ngx_http_llm_cache_use_stale(ngx_http_request_t *r,
    ngx_http_llm_cache_conf_t *conf)
{
    ngx_uint_t  mask;

    switch (r->headers_out.status) {

    case NGX_HTTP_TOO_MANY_REQUESTS:
        mask = NGX_HTTP_LLM_STALE_429;
        break;

    case NGX_HTTP_INTERNAL_SERVER_ERROR:
        mask = NGX_HTTP_LLM_STALE_500 | NGX_HTTP_LLM_STALE_ERROR;
        break;

    case NGX_HTTP_BAD_GATEWAY:
        mask = NGX_HTTP_LLM_STALE_502 | NGX_HTTP_LLM_STALE_ERROR;
        break;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        mask = NGX_HTTP_LLM_STALE_503;
        break;

    case NGX_HTTP_GATEWAY_TIME_OUT:
        mask = NGX_HTTP_LLM_STALE_504 | NGX_HTTP_LLM_STALE_TIMEOUT;
        break;

    case 529:
        mask = NGX_HTTP_LLM_STALE_529;
        break;

    default:
        return NGX_DECLINED;
    }

    return (conf->use_stale & mask) ? NGX_OK : NGX_DECLINED;
}


/*
 * The fallback chain's stale tier: when the chain ends in failure, the
 * expired entry found at lookup (any age still in the zone) replaces
 * nginx's error page; serve 0 only asks whether there is one.
 */

ngx_int_t
ngx_http_llm_cache_fallback_stale(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_uint_t serve)
{
    ngx_http_llm_cache_ctx_t  *c;

    c = ctx->cache;

    if (c == NULL || !c->stale || c->serving || c->data == NULL) {
        return NGX_DECLINED;
    }

    if (serve) {
        c->fallback = 1;
    }

    return NGX_OK;
}


/* llm_cache_use_stale replaces this upstream answer itself */

ngx_int_t
ngx_http_llm_cache_stale_covers(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx)
{
    ngx_http_llm_loc_conf_t   *llcf;
    ngx_http_llm_cache_ctx_t  *c;

    c = ctx->cache;

    if (c == NULL || !c->stale || c->serving) {
        return 0;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    return ngx_http_llm_cache_use_stale(r, &llcf->cache) == NGX_OK;
}


/*
 * A hop of the fallback chain: another model's answer is not stored
 * under the key of the request, and waiters stop waiting for it.
 */

void
ngx_http_llm_cache_fallback_hop(ngx_http_llm_ctx_t *ctx)
{
    ngx_http_llm_cache_ctx_t  *c;

    c = ctx->cache;

    if (c == NULL) {
        return;
    }

    c->store = 0;

    if (c->leader && !c->stored) {
        ngx_http_llm_cache_unlock(c, NGX_HTTP_LLM_LIVE_ENDED, &ctx->usage);
    }
}


/* filters */


ngx_int_t
ngx_http_llm_cache_init_filters(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_llm_cache_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_llm_cache_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_cache_header_filter(ngx_http_request_t *r)
{
    off_t                       size;
    ngx_str_t                   v;
    ngx_http_llm_ctx_t         *ctx;
    ngx_http_llm_cache_ctx_t   *c;
    ngx_http_llm_loc_conf_t    *llcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL || ctx->cache == NULL || ctx->cache->serving) {
        return ngx_http_next_header_filter(r);
    }

    c = ctx->cache;
    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (c->stale
        && (c->fallback
            || ngx_http_llm_cache_use_stale(r, &llcf->cache) == NGX_OK))
    {
        /* the upstream answer is replaced by the expired entry */

        if (!c->fallback) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "llm upstream answered %ui, served a stale cache "
                          "entry of age %T s instead",
                          r->headers_out.status, ngx_time() - c->created);
        }

        c->stale_out = ngx_http_llm_cache_render(r, c, &size);
        if (c->stale_out == NULL) {
            return NGX_ERROR;
        }

        ngx_http_llm_clear_headers(r);

        c->status = NGX_HTTP_LLM_CACHE_STALE;
        c->serving = 1;
        c->store = 0;
        ngx_http_llm_cache_account(ctx, c);
        ctx->fb.tier = NGX_HTTP_LLM_TIER_STALE;

        r->headers_out.status = NGX_HTTP_OK;
        r->headers_out.status_line.len = 0;
        r->err_status = 0;
        r->headers_out.content_length = NULL;
        r->headers_out.content_length_n = c->sse ? -1 : size;
        r->headers_out.content_encoding = NULL;
        r->headers_out.location = NULL;
        r->headers_out.refresh = NULL;
        r->headers_out.last_modified_time = -1;
        r->headers_out.last_modified = NULL;
        r->headers_out.etag = NULL;
        r->headers_out.www_authenticate = NULL;

        if (c->sse) {
            ngx_str_set(&r->headers_out.content_type, "text/event-stream");

        } else {
            ngx_str_set(&r->headers_out.content_type, "application/json");
        }

        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.charset.len = 0;

        if (ngx_http_llm_cache_headers(r, c) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_str_set(&v, "stale");

        if (ngx_http_llm_cache_set_header(r, "x-llm-fallback", &v) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    if (ngx_http_llm_cache_headers(r, c) != NGX_OK) {
        return NGX_ERROR;
    }

    if (r->headers_out.status != NGX_HTTP_OK) {
        c->store = 0;
    }

    if (c->store && (ctx->sse_response || ctx->json_response)) {
        c->msg = ngx_palloc(r->pool, sizeof(ngx_http_llm_msg_t));
        if (c->msg == NULL) {
            return NGX_ERROR;
        }

        ngx_http_llm_msg_init(c->msg, (int) ctx->api,
                              ngx_http_llm_cache_grow, r);

        if (c->leader && ctx->sse_response) {
            ngx_http_llm_cache_live_start(r, ctx, c);
        }

    } else {
        c->store = 0;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_llm_cache_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_uint_t                 last;
    ngx_chain_t               *cl;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_cache_ctx_t  *c;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL || ctx->cache == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    c = ctx->cache;

    if (c->stale_out) {
        /* the upstream body goes nowhere; the stale answer goes once */

        for (cl = in; cl; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            cl->buf->file_pos = cl->buf->file_last;
        }

        if (c->stale_sent) {
            return NGX_OK;
        }

        c->stale_sent = 1;

        return ngx_http_next_body_filter(r, c->stale_out);
    }

    if (c->live_id) {
        ngx_http_llm_cache_live_flush(r, c);
    }

    if (c->store && c->msg) {
        last = 0;

        for (cl = in; cl; cl = cl->next) {
            last |= cl->buf->last_buf;
        }

        if (ctx->sse_response) {
            if (ctx->done && !ctx->error_event && !ctx->ended) {
                ngx_http_llm_cache_store(r, ctx, c);

            } else if (ctx->error_event || ctx->ended || last) {
                c->store = 0;
            }

        } else if (last) {
            if (ctx->done && ctx->json && !ctx->json_overflow
                && ngx_http_llm_msg_response(c->msg, ctx->json->pos,
                                             ctx->json->last - ctx->json->pos)
                   == 0)
            {
                ngx_http_llm_cache_store(r, ctx, c);
            }

            c->store = 0;
        }

        if (!c->store && !c->stored && c->leader) {
            ngx_http_llm_cache_unlock(c, ctx->done ? NGX_HTTP_LLM_LIVE_ENDED
                                                   : NGX_HTTP_LLM_LIVE_FAILED,
                                      &ctx->usage);
        }
    }

    return ngx_http_next_body_filter(r, in);
}


/* $llm_cache_status */


ngx_int_t
ngx_http_llm_cache_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    static ngx_str_t  name = ngx_string("llm_cache_status");

    var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_llm_cache_status_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_cache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL || ctx->cache == NULL
        || ctx->cache->status == NGX_HTTP_LLM_CACHE_NONE)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_http_llm_cache_statuses[ctx->cache->status].data;
    v->len = ngx_http_llm_cache_statuses[ctx->cache->status].len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
