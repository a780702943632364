
/*
 * Copyright (C) ngx_llm authors
 *
 * LLM-aware balancers in upstream{}:
 *
 *     llm_balance least_tokens | peak_ewma | prefix [decay=time]
 *                 [epsilon=number] [slack=number] [tokens=number]
 *                 [wait=time [cold_wait=time|auto]]
 *                 [output_tokens=number]
 *                 [cooldown=time]
 *                 [seed=number];
 *
 * Built on the round-robin peer structures the way least_conn is: the
 * round-robin init sets up peers (weight, max_fails, fail_timeout,
 * max_conns, down, backup), our get replaces the choice and our free wraps
 * round robin's. The LLM figures of each peer (outstanding tokens, in
 * flight, peak-EWMA TTFT, cool-down, provider budget) live in one small
 * shared memory zone per upstream, "llm_balance:<upstream>", so every
 * worker balances on the same figures; it survives reloads (state is
 * carried over by server name).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"
#include "ngx_http_llm_pick.h"


#define NGX_HTTP_LLM_BALANCE_OUTPUT     256         /* tokens */
#define NGX_HTTP_LLM_BALANCE_MAX_COOL   3600000     /* ms */
#define NGX_HTTP_LLM_BALANCE_STEP       16          /* tokens per update */
#define NGX_HTTP_LLM_BALANCE_RECENT     1024        /* prefixes remembered */
#define NGX_HTTP_LLM_BALANCE_POLL       1           /* ms, wait= re-checks */
#define NGX_HTTP_LLM_BALANCE_WAKE       8           /* checks a release */
#define NGX_HTTP_LLM_BALANCE_RECHECK    10          /* ms, full poll */
#define NGX_HTTP_LLM_BALANCE_LINE       4           /* held per home slot */
#define NGX_HTTP_LLM_BALANCE_MAX_WAIT   60000       /* ms */

/* cold_wait=auto holds cold prefixes while the reuse share is this high */
#define NGX_HTTP_LLM_BALANCE_REUSE      (NGX_HTTP_LLM_PICK_REUSE_ONE / 4)


/* one peer's figures in shared memory */
typedef struct {
    uint64_t                        name_hash;
    uint64_t                        outstanding;    /* tokens */
    uint64_t                        picks;
    uint64_t                        cooldowns;
    uint64_t                        failures;
    double                          ewma;           /* ms */
    uint64_t                        ewma_at;        /* monotonic ms */
    uint64_t                        cool_until;     /* Unix ms */
    uint64_t                        budget_until;   /* Unix ms */
    int64_t                         remaining_requests;
    int64_t                         remaining_tokens;
    uint32_t                        inflight;
    uint32_t                        held;   /* wait=: held for it as home */
} ngx_http_llm_balancer_node_t;


typedef struct {
    ngx_uint_t                      nslots;
    uint64_t                        draws;          /* p2c sequence */
    ngx_http_llm_balancer_node_t   *node;           /* nslots, by name */

    /* prefix: who served each prefix last, direct-mapped by its key */
    ngx_http_llm_pick_recent_t     *recent;

    /* prefix: history entries per server (its front), by ring index */
    uint32_t                       *foot;
    ngx_uint_t                      nfoot;

    /* prefix wait=: holds that ended at home, that ended in a spill */
    uint64_t                        waits[2];

    /* prefix: picks whose prefix was in the history, 1/65536 units */
    uint32_t                        reuse;

    /*
     * prefix wait=: bumped by what can make room for a held request: a
     * release, and a pick (one more in flight raises every bound); a
     * poll that finds it unchanged skips the check. Written under the
     * mutex, read without it
     */
    ngx_atomic_t                    changes;
} ngx_http_llm_balancer_shctx_t;


struct ngx_http_llm_balancer_conf_s {
    ngx_uint_t                      method;
    ngx_msec_t                      decay;
    double                          epsilon;
    ngx_uint_t                      slack;          /* requests */
    ngx_uint_t                      tokens;         /* prefix key: K */
    ngx_msec_t                      wait;           /* prefix: hold, 0 */
    ngx_msec_t                      cold_wait;      /* a prefix unseen */
    ngx_flag_t                      cold_auto;      /* cold_wait=auto */
    ngx_uint_t                      output_tokens;
    ngx_msec_t                      cooldown;
    uint64_t                        seed;
    unsigned                        seeded:1;

    ngx_str_t                      *upstream;       /* its name */
    ngx_http_upstream_srv_conf_t   *uscf;
    ngx_str_t                      *names;          /* server per ordinal */
    ngx_uint_t                      nprimary;
    ngx_uint_t                      npeers;         /* primary + backup */
    uint64_t                       *name_hash;      /* per ordinal */
    ngx_uint_t                     *slot;           /* per ordinal */
    ngx_http_llm_pick_ring_t        ring;           /* primary peers */

    ngx_shm_zone_t                 *shm_zone;
    ngx_slab_pool_t                *shpool;
    ngx_http_llm_balancer_shctx_t  *sh;

    /* wait=: this worker's held requests, first held first */
    ngx_queue_t                     held;
    ngx_uint_t                      waking;         /* woken, not run */
};


struct ngx_http_llm_balancer_pd_s {
    /* the round-robin peer data must come first */
    ngx_http_upstream_rr_peer_data_t  rrp;

    ngx_http_request_t             *r;
    ngx_http_llm_balancer_conf_t   *conf;
    ngx_http_llm_ctx_t             *ctx;            /* or NULL */
    ngx_http_llm_pick_peer_t       *pick;           /* scratch */

    ngx_uint_t                      ordinal;
    uint64_t                        key;            /* prefix affinity */
    uint64_t                        prompt;         /* still charged */
    uint64_t                        output;         /* still charged */
    uint64_t                        released;       /* output released */
    ngx_msec_t                      started;
    unsigned                        charged:1;
    unsigned                        backup:1;       /* rrp->peers: backup */
    unsigned                        first:1;        /* first token seen */
    unsigned                        counted:1;      /* in the reuse share */
};


/* what the failed or finished attempt's response headers said */
typedef struct {
    int64_t                         retry_after;    /* ms, -1 */
    int64_t                         reset_requests; /* ms, -1 */
    int64_t                         reset_tokens;   /* ms, -1 */
    int64_t                         remaining_requests;
    int64_t                         remaining_tokens;
} ngx_http_llm_balancer_hints_t;


static ngx_int_t ngx_http_llm_balancer_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_llm_balancer_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_llm_balancer_foot(ngx_http_llm_balancer_conf_t *bcf,
    ngx_http_llm_balancer_shctx_t *sh, ngx_slab_pool_t *shpool);
static ngx_int_t ngx_http_llm_balancer_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_llm_balancer_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_llm_balancer_free_peer(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static void ngx_http_llm_balancer_hints(ngx_http_request_t *r,
    ngx_http_llm_balancer_hints_t *h, uint64_t wall);
static uint64_t ngx_http_llm_balancer_wall(void);
static ngx_uint_t ngx_http_llm_balancer_sick(ngx_http_upstream_rr_peer_t *peer,
    ngx_http_llm_balancer_node_t *node, time_t now, uint64_t wall);
static ngx_uint_t ngx_http_llm_balancer_spent(
    ngx_http_llm_balancer_node_t *node, uint64_t wall, uint64_t tokens);
static uint64_t ngx_http_llm_balancer_key(ngx_http_llm_balancer_conf_t *bcf,
    ngx_http_llm_ctx_t *ctx);
static void ngx_http_llm_balancer_expect(ngx_http_llm_balancer_conf_t *bcf,
    ngx_http_llm_ctx_t *ctx, uint64_t *prompt, uint64_t *output);
static ngx_http_llm_balancer_conf_t *ngx_http_llm_balancer_waits(
    ngx_http_upstream_srv_conf_t *uscf);
static ngx_int_t ngx_http_llm_balancer_spills(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_msec_t *wait, ngx_uint_t *home,
    uint32_t *bound);
static void ngx_http_llm_balancer_wake(ngx_http_llm_balancer_conf_t *bcf,
    ngx_uint_t checks);
static void ngx_http_llm_balancer_unqueue(ngx_http_llm_ctx_t *ctx);
static void ngx_http_llm_balancer_unhold(void *data);
static void ngx_http_llm_balancer_wait_handler(ngx_http_request_t *r);


void *
ngx_http_llm_balancer_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_llm_balancer_conf_t  *bcf;

    bcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_balancer_conf_t));
    if (bcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     bcf->method = 0;      llm_balance not used in this upstream
     *     bcf->shm_zone = NULL;
     */

    ngx_queue_init(&bcf->held);

    return bcf;
}


char *
ngx_http_llm_balance(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_balancer_conf_t *bcf = conf;

    ngx_int_t                      n;
    ngx_str_t                     *value, s;
    ngx_uint_t                     i, cold;
    ngx_msec_t                     ms;
    ngx_http_upstream_srv_conf_t  *uscf;

    if (bcf->method) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "least_tokens") == 0) {
        bcf->method = NGX_HTTP_LLM_BALANCE_TOKENS;

    } else if (ngx_strcmp(value[1].data, "peak_ewma") == 0) {
        bcf->method = NGX_HTTP_LLM_BALANCE_EWMA;

    } else if (ngx_strcmp(value[1].data, "prefix") == 0) {
        bcf->method = NGX_HTTP_LLM_BALANCE_PREFIX;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid method \"%V\" in \"llm_balance\": use "
                           "least_tokens, peak_ewma or prefix", &value[1]);
        return NGX_CONF_ERROR;
    }

    /* the defaults, written once */

    bcf->decay = 10000;
    bcf->epsilon = 0.25;
    bcf->slack = 0;
    bcf->output_tokens = NGX_HTTP_LLM_BALANCE_OUTPUT;
    bcf->cooldown = 1000;
    bcf->cold_wait = NGX_CONF_UNSET_MSEC;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "decay=", 6) == 0) {
            if (bcf->method != NGX_HTTP_LLM_BALANCE_EWMA) {
                goto only;
            }

            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

            bcf->decay = ngx_parse_time(&s, 0);
            if (bcf->decay == (ngx_msec_t) NGX_ERROR || bcf->decay == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "epsilon=", 8) == 0) {
            if (bcf->method != NGX_HTTP_LLM_BALANCE_PREFIX) {
                goto only;
            }

            /* fixed point, 3 decimals: 0.001 .. 100 */

            n = ngx_atofp(value[i].data + 8, value[i].len - 8, 3);
            if (n <= 0 || n > 100000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"llm_balance\": "
                                   "epsilon must be a number above 0 and at "
                                   "most 100, e.g. epsilon=0.25", &value[i]);
                return NGX_CONF_ERROR;
            }

            bcf->epsilon = (double) n / 1000;
            continue;
        }

        if (ngx_strncmp(value[i].data, "slack=", 6) == 0) {
            if (bcf->method != NGX_HTTP_LLM_BALANCE_PREFIX) {
                goto only;
            }

            n = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (n == NGX_ERROR || n > 1000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"llm_balance\": "
                                   "slack must be a number of requests from "
                                   "0 to 1000, e.g. slack=1", &value[i]);
                return NGX_CONF_ERROR;
            }

            bcf->slack = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "tokens=", 7) == 0) {
            if (bcf->method != NGX_HTTP_LLM_BALANCE_PREFIX) {
                goto only;
            }

            n = ngx_atoi(value[i].data + 7, value[i].len - 7);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            bcf->tokens = n;
            continue;
        }

        /* wait= and cold_wait=: prefix only, a time up to 60s */

        if (ngx_strncmp(value[i].data, "wait=", 5) == 0
            || ngx_strncmp(value[i].data, "cold_wait=", 10) == 0)
        {
            if (bcf->method != NGX_HTTP_LLM_BALANCE_PREFIX) {
                goto only;
            }

            cold = (value[i].data[0] == 'c');

            s.data = (u_char *) ngx_strlchr(value[i].data,
                                            value[i].data + value[i].len, '=')
                     + 1;
            s.len = value[i].data + value[i].len - s.data;

            if (cold && s.len == 4 && ngx_strncmp(s.data, "auto", 4) == 0) {
                bcf->cold_wait = NGX_CONF_UNSET_MSEC;
                bcf->cold_auto = 1;
                continue;
            }

            ms = ngx_parse_time(&s, 0);
            if (ms == (ngx_msec_t) NGX_ERROR
                || ms > NGX_HTTP_LLM_BALANCE_MAX_WAIT)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"llm_balance\": "
                                   "%s must be %sa time from 0 to 60s, "
                                   "e.g. %s", &value[i],
                                   cold ? "cold_wait" : "wait",
                                   cold ? "\"auto\" or " : "",
                                   cold ? "cold_wait=10ms" : "wait=20ms");
                return NGX_CONF_ERROR;
            }

            if (cold) {
                bcf->cold_wait = ms;
                bcf->cold_auto = 0;

            } else {
                bcf->wait = ms;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "output_tokens=", 14) == 0) {
            n = ngx_atoi(value[i].data + 14, value[i].len - 14);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            bcf->output_tokens = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "cooldown=", 9) == 0) {
            s.data = value[i].data + 9;
            s.len = value[i].len - 9;

            bcf->cooldown = ngx_parse_time(&s, 0);
            if (bcf->cooldown == (ngx_msec_t) NGX_ERROR) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "seed=", 5) == 0) {
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (n == NGX_ERROR) {
                goto invalid;
            }

            bcf->seed = (uint64_t) n;
            bcf->seeded = 1;
            continue;
        }

        goto invalid;
    }

    /*
     * a prefix no server served lately waits as long as any while most
     * prefixes recur (cold_wait=auto, the default), or as long as set
     */

    if (bcf->cold_auto && bcf->wait == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"cold_wait=auto\" of \"llm_balance\" needs "
                           "\"wait=\"");
        return NGX_CONF_ERROR;
    }

    if (bcf->cold_wait == NGX_CONF_UNSET_MSEC) {
        bcf->cold_wait = bcf->wait;
        bcf->cold_auto = 1;

    } else if (bcf->cold_wait > bcf->wait) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"cold_wait=\" of \"llm_balance\" must not be "
                           "longer than \"wait=\" (which is %M ms)",
                           bcf->wait);
        return NGX_CONF_ERROR;
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined by "
                           "\"llm_balance\": put \"keepalive\" after "
                           "\"llm_balance\" or it is switched off");
    }

    uscf->peer.init_upstream = ngx_http_llm_balancer_init_upstream;

    uscf->flags = NGX_HTTP_UPSTREAM_CREATE
                  |NGX_HTTP_UPSTREAM_WEIGHT
                  |NGX_HTTP_UPSTREAM_MAX_CONNS
                  |NGX_HTTP_UPSTREAM_MAX_FAILS
                  |NGX_HTTP_UPSTREAM_FAIL_TIMEOUT
                  |NGX_HTTP_UPSTREAM_DOWN
                  |NGX_HTTP_UPSTREAM_BACKUP;

    bcf->upstream = &uscf->host;

    return NGX_CONF_OK;

only:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" does not apply to \"llm_balance %V\": decay= "
                       "is for peak_ewma, epsilon=, slack=, tokens=, "
                       "wait= and cold_wait= for prefix",
                       &value[i], &value[1]);
    return NGX_CONF_ERROR;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"llm_balance\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_llm_balancer_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    size_t                          size, *lens;
    u_char                         *p;
    uint32_t                       *weights;
    ngx_str_t                       name, key;
    ngx_uint_t                      i, dup;
    const char                    **names;
    ngx_http_upstream_rr_peer_t    *peer, *other;
    ngx_http_upstream_rr_peers_t   *peers, *group;
    ngx_http_llm_balancer_conf_t   *bcf;

    if (ngx_http_upstream_init_round_robin(cf, us) != NGX_OK) {
        return NGX_ERROR;
    }

    us->peer.init = ngx_http_llm_balancer_init_peer;

    bcf = ngx_http_conf_upstream_srv_conf(us, ngx_http_llm_module);
    bcf->uscf = us;

    peers = us->peer.data;

    bcf->nprimary = peers->number;
    bcf->npeers = peers->number + (peers->next ? peers->next->number : 0);

    bcf->name_hash = ngx_palloc(cf->pool, bcf->npeers * sizeof(uint64_t));
    bcf->names = ngx_palloc(cf->pool, bcf->npeers * sizeof(ngx_str_t));
    bcf->slot = ngx_palloc(cf->pool, bcf->npeers * sizeof(ngx_uint_t));
    names = ngx_palloc(cf->pool, bcf->npeers * sizeof(char *));
    lens = ngx_palloc(cf->pool, bcf->npeers * sizeof(size_t));
    weights = ngx_palloc(cf->pool, bcf->npeers * sizeof(uint32_t));

    if (bcf->name_hash == NULL || bcf->names == NULL || bcf->slot == NULL
        || names == NULL
        || lens == NULL
        || weights == NULL)
    {
        return NGX_ERROR;
    }

    /*
     * identity of a peer: its server name as written in the configuration,
     * plus "#n" for the n-th address of a name resolving to several; never
     * its position, so every worker and node builds the same ring
     */

    i = 0;

    for (group = peers; group; group = group->next) {
        for (peer = group->peer; peer; peer = peer->next, i++) {

            dup = 0;

            for (other = group->peer; other != peer; other = other->next) {
                if (other->server.len == peer->server.len
                    && ngx_strncmp(other->server.data, peer->server.data,
                                   peer->server.len) == 0)
                {
                    dup++;
                }
            }

            key.len = peer->server.len + sizeof("#backup#") + NGX_INT_T_LEN;
            key.data = ngx_pnalloc(cf->pool, key.len);
            if (key.data == NULL) {
                return NGX_ERROR;
            }

            key.len = ngx_sprintf(key.data, "%V%s#%ui", &peer->server,
                                  group == peers ? "" : "#backup", dup)
                      - key.data;

            bcf->names[i] = peer->server;
            names[i] = (const char *) key.data;
            lens[i] = key.len;
            weights[i] = (uint32_t) peer->weight;
            bcf->name_hash[i] = ngx_http_llm_pick_hash(key.data, key.len, 0)
                                | 1;    /* 0 marks a free slot */
        }
    }

    if (bcf->method == NGX_HTTP_LLM_BALANCE_PREFIX) {
        size = ngx_http_llm_pick_ring_size(weights, bcf->nprimary);

        bcf->ring.points = ngx_palloc(cf->pool, size * sizeof(uint64_t));
        bcf->ring.owners = ngx_palloc(cf->pool, size * sizeof(uint32_t));
        if (bcf->ring.points == NULL || bcf->ring.owners == NULL) {
            return NGX_ERROR;
        }

        ngx_http_llm_pick_ring_build(&bcf->ring, names, lens, weights,
                                     bcf->nprimary, bcf->seed);
    }

    /* one zone per upstream, sized for its servers and later ones */

    name.len = sizeof("llm_balance:") - 1 + us->host.len;
    name.data = ngx_pnalloc(cf->pool, name.len);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(name.data, "llm_balance:", sizeof("llm_balance:") - 1);
    ngx_memcpy(p, us->host.data, us->host.len);

    size = 8 * ngx_pagesize
           + 4 * bcf->npeers * sizeof(ngx_http_llm_balancer_node_t);

    if (bcf->method == NGX_HTTP_LLM_BALANCE_PREFIX) {
        size += NGX_HTTP_LLM_BALANCE_RECENT
                * sizeof(ngx_http_llm_pick_recent_t)
                + 2 * (bcf->nprimary + 64) * sizeof(uint32_t);
    }

    size = ngx_align(size, ngx_pagesize);

    bcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                          &ngx_http_llm_module);
    if (bcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    if (bcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "llm_balance: zone \"%V\" is already used",
                           &name);
        return NGX_ERROR;
    }

    bcf->shm_zone->init = ngx_http_llm_balancer_init_zone;
    bcf->shm_zone->data = bcf;

    return NGX_OK;
}


/* footprints for this configuration's servers, recounted */

static ngx_int_t
ngx_http_llm_balancer_foot(ngx_http_llm_balancer_conf_t *bcf,
    ngx_http_llm_balancer_shctx_t *sh, ngx_slab_pool_t *shpool)
{
    uint32_t    *foot;
    ngx_uint_t   n;

    ngx_shmtx_lock(&shpool->mutex);

    if (sh->nfoot < bcf->nprimary) {
        n = bcf->nprimary + 64;

        foot = ngx_slab_calloc_locked(shpool, n * sizeof(uint32_t));
        if (foot == NULL) {
            ngx_shmtx_unlock(&shpool->mutex);
            return NGX_ERROR;
        }

        /* workers of an older configuration read it under the mutex */

        if (sh->foot) {
            ngx_slab_free_locked(shpool, sh->foot);
        }

        sh->foot = foot;
        sh->nfoot = n;
    }

    ngx_http_llm_pick_foot_count(sh->recent, NGX_HTTP_LLM_BALANCE_RECENT,
                                 sh->foot, sh->nfoot);

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


/* a slot of a server no longer configured, with nothing in flight */

static ngx_uint_t
ngx_http_llm_balancer_unused(ngx_http_llm_balancer_conf_t *bcf,
    ngx_http_llm_balancer_shctx_t *sh, ngx_uint_t j)
{
    ngx_uint_t  i;

    if (sh->node[j].inflight || sh->node[j].outstanding) {
        return 0;
    }

    for (i = 0; i < bcf->npeers; i++) {
        if (sh->node[j].name_hash == bcf->name_hash[i]) {
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_llm_balancer_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_llm_balancer_conf_t  *obcf = data;

    ngx_uint_t                      i, j, spare;
    ngx_slab_pool_t                *shpool;
    ngx_http_llm_balancer_conf_t   *bcf;
    ngx_http_llm_balancer_node_t   *node;
    ngx_http_llm_balancer_shctx_t  *sh;

    bcf = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    bcf->shpool = shpool;

    if (obcf) {
        sh = obcf->sh;

    } else if (shm_zone->shm.exists) {
        sh = shpool->data;

    } else {
        sh = ngx_slab_alloc(shpool, sizeof(ngx_http_llm_balancer_shctx_t));
        if (sh == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(sh, sizeof(ngx_http_llm_balancer_shctx_t));

        /* until picks tell otherwise, prefixes are taken to recur */
        sh->reuse = NGX_HTTP_LLM_PICK_REUSE_ONE;

        /* room for the servers of this and later configurations */

        sh->nslots = 2 * bcf->npeers + 64;
        sh->node = ngx_slab_calloc(shpool, sh->nslots
                                   * sizeof(ngx_http_llm_balancer_node_t));
        if (sh->node == NULL) {
            return NGX_ERROR;
        }

        shpool->data = sh;
        shpool->log_nomem = 0;

        shpool->log_ctx = ngx_slab_alloc(shpool, sizeof(" in  zone \"\"")
                                         + shm_zone->shm.name.len);
        if (shpool->log_ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(shpool->log_ctx, " in zone \"%V\"%Z",
                    &shm_zone->shm.name);
    }

    bcf->sh = sh;

    /*
     * the routing history of prefixes; a zone kept over a reload that
     * changed the method to prefix gets it now. Its entries name peers
     * by ring index: a reload that changes the servers only makes a few
     * spills look at the wrong server, the ring owner still comes first
     */

    if (bcf->method == NGX_HTTP_LLM_BALANCE_PREFIX && sh->recent == NULL) {
        ngx_shmtx_lock(&shpool->mutex);
        sh->recent = ngx_slab_calloc_locked(shpool,
                                  NGX_HTTP_LLM_BALANCE_RECENT
                                  * sizeof(ngx_http_llm_pick_recent_t));
        ngx_shmtx_unlock(&shpool->mutex);

        if (sh->recent == NULL) {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "llm_balance: zone \"%V\" has no room for the "
                          "prefix history: spills follow the ring only",
                          &shm_zone->shm.name);
        }
    }

    /*
     * the footprints: counted afresh from the history at every start and
     * reload, so the ring indexes of this configuration count
     */

    if (sh->recent
        && ngx_http_llm_balancer_foot(bcf, sh, shpool) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                      "llm_balance: zone \"%V\" has no room for the "
                      "prefix footprints: spills follow the ring",
                      &shm_zone->shm.name);
    }

    /*
     * map each server to its slot, by name: after a reload the old
     * workers' requests in flight and the new workers share the slot of a
     * server that stayed, so its figures carry over and every release
     * lands where its charge went
     */

    ngx_shmtx_lock(&shpool->mutex);

    for (i = 0; i < bcf->npeers; i++) {
        spare = sh->nslots;

        for (j = 0; j < sh->nslots; j++) {
            if (sh->node[j].name_hash == bcf->name_hash[i]) {
                break;
            }

            if (spare == sh->nslots
                && (sh->node[j].name_hash == 0
                    || ngx_http_llm_balancer_unused(bcf, sh, j)))
            {
                spare = j;
            }
        }

        if (j == sh->nslots) {
            if (spare == sh->nslots) {
                ngx_shmtx_unlock(&shpool->mutex);

                ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                              "llm_balance: zone \"%V\" has no spare slot: "
                              "restart nginx", &shm_zone->shm.name);
                return NGX_ERROR;
            }

            j = spare;
            node = &sh->node[j];

            ngx_memzero(node, sizeof(ngx_http_llm_balancer_node_t));
            node->name_hash = bcf->name_hash[i];
            node->remaining_requests = -1;
            node->remaining_tokens = -1;
        }

        bcf->slot[i] = j;
    }

    ngx_shmtx_unlock(&shpool->mutex);

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_balancer_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                     n;
    ngx_http_llm_balancer_pd_t    *pd;
    ngx_http_llm_balancer_conf_t  *bcf;

    bcf = ngx_http_conf_upstream_srv_conf(us, ngx_http_llm_module);

    pd = ngx_pcalloc(r->pool, sizeof(ngx_http_llm_balancer_pd_t));
    if (pd == NULL) {
        return NGX_ERROR;
    }

    n = ngx_max(bcf->nprimary, bcf->npeers - bcf->nprimary);

    pd->pick = ngx_palloc(r->pool, n * sizeof(ngx_http_llm_pick_peer_t));
    if (pd->pick == NULL) {
        return NGX_ERROR;
    }

    r->upstream->peer.data = &pd->rrp;

    if (ngx_http_upstream_init_round_robin_peer(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    r->upstream->peer.get = ngx_http_llm_balancer_get_peer;
    r->upstream->peer.free = ngx_http_llm_balancer_free_peer;

    pd->r = r;
    pd->conf = bcf;
    pd->ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (pd->ctx && pd->ctx->inspected) {
        pd->key = ngx_http_llm_balancer_key(bcf, pd->ctx);
    }

    return NGX_OK;
}


/*
 * the affinity key: the prompt prefix (model, system, tools), extended
 * by the longest run of whole messages within the first tokens=K
 */

static uint64_t
ngx_http_llm_balancer_key(ngx_http_llm_balancer_conf_t *bcf,
    ngx_http_llm_ctx_t *ctx)
{
    uint64_t    key;
    ngx_uint_t  n;

    key = ctx->req.prefix_hash;

    for (n = 0; n < ctx->req.msg_prefixes
                && ctx->req.msg_tokens[n] <= bcf->tokens; n++)
    {
        key = ctx->req.msg_hash[n];
    }

    return key;
}


/* failed max_fails times within fail_timeout, or cooling down */

static ngx_uint_t
ngx_http_llm_balancer_sick(ngx_http_upstream_rr_peer_t *peer,
    ngx_http_llm_balancer_node_t *node, time_t now, uint64_t wall)
{
    return (peer->max_fails && peer->fails >= peer->max_fails
            && now - peer->checked <= peer->fail_timeout)
           || node->cool_until > wall;
}


/* the provider's remaining requests or tokens would not cover this one */

static ngx_uint_t
ngx_http_llm_balancer_spent(ngx_http_llm_balancer_node_t *node, uint64_t wall,
    uint64_t tokens)
{
    return node->budget_until > wall
           && ((node->remaining_requests >= 0
                && (uint64_t) node->remaining_requests <= node->inflight)
               || (node->remaining_tokens >= 0
                   && (uint64_t) node->remaining_tokens
                      < node->outstanding + tokens));
}


static uint64_t
ngx_http_llm_balancer_wall(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* the tokens this request is expected to cost its peer */

static void
ngx_http_llm_balancer_expect(ngx_http_llm_balancer_conf_t *bcf,
    ngx_http_llm_ctx_t *ctx, uint64_t *prompt, uint64_t *output)
{
    if (ctx == NULL || !ctx->inspected) {
        *prompt = 0;
        *output = bcf->output_tokens;
        return;
    }

    *prompt = ctx->req.prompt_tokens;
    *output = (ctx->req.max_tokens > 0) ? (uint64_t) ctx->req.max_tokens
                                        : bcf->output_tokens;
}


static ngx_int_t
ngx_http_llm_balancer_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_llm_balancer_pd_t *pd = data;

    int                             best;
    time_t                          now;
    uint64_t                        wall, prompt, output, rnd;
    uintptr_t                       m;
    ngx_uint_t                      i, n, base, soft, sick, pass, ord;
    ngx_http_llm_ctx_t             *ctx;
    ngx_http_llm_pick_peer_t       *pk;
    ngx_http_llm_pick_recent_t     *recent;
    ngx_http_upstream_rr_peer_t    *peer;
    ngx_http_upstream_rr_peers_t   *peers;
    ngx_http_llm_balancer_conf_t   *bcf;
    ngx_http_llm_balancer_node_t   *node;
    ngx_http_llm_balancer_shctx_t  *sh;

    bcf = pd->conf;
    sh = bcf->sh;
    ctx = pd->ctx;

    pc->cached = 0;
    pc->connection = NULL;

    now = ngx_time();
    wall = ngx_http_llm_balancer_wall();

    ngx_http_llm_balancer_expect(bcf, ctx, &prompt, &output);

again:

    peers = pd->rrp.peers;
    base = pd->backup ? bcf->nprimary : 0;

    ngx_http_upstream_rr_peers_wlock(peers);
    ngx_shmtx_lock(&bcf->shpool->mutex);

    best = -1;
    recent = NULL;

    if (bcf->method == NGX_HTTP_LLM_BALANCE_PREFIX && !pd->backup
        && ctx && ctx->inspected && sh->recent)
    {
        recent = ngx_http_llm_pick_recent_slot(sh->recent,
                                               NGX_HTTP_LLM_BALANCE_RECENT,
                                               pd->key);
    }

    for (pass = 0; pass < 2 && best < 0; pass++) {

        /* pass 0 leaves out the soft exclusions: tried, budget spent */

        n = 0;
        soft = 0;

        for (peer = peers->peer, i = 0; peer; peer = peer->next, i++) {
            pk = &pd->pick[i];
            node = &sh->node[bcf->slot[base + i]];
            ord = base + i;

            pk->outstanding = node->outstanding;
            pk->picks = node->picks;
            pk->ewma = node->ewma;
            pk->ewma_at = node->ewma_at;
            pk->inflight = node->inflight;
            pk->weight = (uint32_t) ngx_max(peer->weight, 1);
            pk->eligible = 0;

            m = (uintptr_t) 1 << i % (8 * sizeof(uintptr_t));

            if ((pd->rrp.tried[i / (8 * sizeof(uintptr_t))] & m)
                || peer->down
                || (peer->max_conns && peer->conns >= peer->max_conns))
            {
                continue;
            }

            sick = ngx_http_llm_balancer_sick(peer, node, now, wall);

            /* a lone server is never left out for failures (as nginx) */

            if (sick && !peers->single) {
                continue;
            }

            if (pass == 0
                && (sick
                    || (ctx && ord < 64 && (ctx->bal.tried & (1ULL << ord)))
                    || ngx_http_llm_balancer_spent(node, wall,
                                                   prompt + output)))
            {
                soft++;
                continue;
            }

            pk->eligible = 1;
        }

        n = i;

        if (bcf->method == NGX_HTTP_LLM_BALANCE_PREFIX && !pd->backup
            && ctx && ctx->inspected)
        {
            best = ngx_http_llm_pick_ring(&bcf->ring, pd->pick, n, pd->key,
                                          bcf->epsilon, bcf->slack, recent,
                                          recent ? sh->foot : NULL);

        } else if (bcf->method == NGX_HTTP_LLM_BALANCE_EWMA) {
            rnd = bcf->seeded ? ngx_http_llm_pick_mix(bcf->seed + sh->draws++)
                              : ((uint64_t) ngx_random() << 31) ^ ngx_random();

            best = ngx_http_llm_pick_p2c(pd->pick, n, rnd, ngx_current_msec,
                                         bcf->decay);
        }

        if (best < 0) {
            best = ngx_http_llm_pick_least(pd->pick, n);
        }

        if (soft == 0) {
            break;
        }
    }

    if (best < 0) {
        ngx_shmtx_unlock(&bcf->shpool->mutex);

        if (!pd->backup && peers->next) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                           "llm balance: backup servers");

            pd->rrp.peers = peers->next;
            pd->backup = 1;

            n = (pd->rrp.peers->number + (8 * sizeof(uintptr_t) - 1))
                / (8 * sizeof(uintptr_t));

            for (i = 0; i < n; i++) {
                pd->rrp.tried[i] = 0;
            }

            ngx_http_upstream_rr_peers_unlock(peers);

            goto again;
        }

        ngx_http_upstream_rr_peers_unlock(peers);

        pc->name = peers->name;

        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "llm balance: no server of upstream \"%V\" is "
                      "available (down, failed, cooling down or at "
                      "max_conns)", bcf->upstream);

        return NGX_BUSY;
    }

    for (peer = peers->peer, i = 0; i < (ngx_uint_t) best; i++) {
        peer = peer->next;
    }

    ord = base + best;
    node = &sh->node[bcf->slot[ord]];

    node->outstanding += prompt + output;
    node->inflight++;
    node->picks++;
    sh->changes++;

    if (recent) {
        if (!pd->counted) {
            /* the share of picks whose prefix a server served lately */
            pd->counted = 1;
            sh->reuse = ngx_http_llm_pick_reuse(sh->reuse,
                                                recent->key == pd->key);
        }

        /* best will hold this prefix: the history a later spill reads */
        ngx_http_llm_pick_recent_note(recent, pd->key, (uint32_t) best,
                                      sh->foot, sh->nfoot);
        recent->stamp = (uint32_t) ngx_current_msec;
    }

    ngx_shmtx_unlock(&bcf->shpool->mutex);

    if (now - peer->checked > peer->fail_timeout) {
        peer->checked = now;    /* the single half-open probe */
    }

    pc->sockaddr = peer->sockaddr;
    pc->socklen = peer->socklen;
    pc->name = &peer->name;

    peer->conns++;

    pd->rrp.current = peer;

    m = (uintptr_t) 1 << best % (8 * sizeof(uintptr_t));
    pd->rrp.tried[best / (8 * sizeof(uintptr_t))] |= m;

    ngx_http_upstream_rr_peers_unlock(peers);

    pd->ordinal = ord;
    pd->prompt = prompt;
    pd->output = output;
    pd->released = 0;
    pd->started = ngx_current_msec;
    pd->charged = 1;
    pd->first = 0;

    if (ctx) {
        if (ord < 64) {
            ctx->bal.tried |= 1ULL << ord;
        }

        ctx->bal.conf = bcf;
        ctx->bal.peers = peers;
        ctx->bal.peer = peer;
        ctx->bal.ordinal = ord;
        ctx->bal.name = peer->server;
        ctx->bal.pd = pd;
        ctx->bal.picks++;
        ctx->bal.picked = 1;
        ctx->bal.first = 0;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "llm balance: \"%V\" picked %V (ordinal %ui), "
                   "charged %uL+%uL tokens", bcf->upstream, &peer->name, ord,
                   prompt, output);

    return NGX_OK;
}


static int64_t
ngx_http_llm_balancer_delta(int64_t at, uint64_t wall)
{
    /* an absolute Unix ms time to a delay from now, at least 0 */

    return (at < 0) ? -1 : ((uint64_t) at > wall ? (int64_t) (at - wall) : 0);
}


static void
ngx_http_llm_balancer_min(int64_t *v, int64_t n)
{
    if (n >= 0 && (*v < 0 || n < *v)) {
        *v = n;
    }
}


static void
ngx_http_llm_balancer_max(int64_t *v, int64_t n)
{
    if (n > *v) {
        *v = n;
    }
}


static void
ngx_http_llm_balancer_hints(ngx_http_request_t *r,
    ngx_http_llm_balancer_hints_t *h, uint64_t wall)
{
    u_char           *name;
    size_t            len;
    time_t            t;
    int64_t           v;
    ngx_int_t         n;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *hdr;

    h->retry_after = -1;
    h->reset_requests = -1;
    h->reset_tokens = -1;
    h->remaining_requests = -1;
    h->remaining_tokens = -1;

    if (r->upstream == NULL) {
        return;
    }

    part = &r->upstream->headers_in.headers.part;
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

        name = hdr[i].key.data;
        len = hdr[i].key.len;

        if (len == sizeof("retry-after") - 1
            && ngx_strncasecmp(name, (u_char *) "retry-after", len) == 0)
        {
            n = ngx_atoi(hdr[i].value.data, hdr[i].value.len);

            if (n != NGX_ERROR) {
                h->retry_after = (int64_t) ngx_min(n, 86400) * 1000;

            } else {
                t = ngx_parse_http_time(hdr[i].value.data, hdr[i].value.len);
                if (t != NGX_ERROR) {
                    h->retry_after = ngx_http_llm_balancer_delta(
                                                   (int64_t) t * 1000, wall);
                }
            }

            continue;
        }

        if (len > sizeof("x-ratelimit-") - 1
            && ngx_strncasecmp(name, (u_char *) "x-ratelimit-",
                               sizeof("x-ratelimit-") - 1) == 0)
        {
            name += sizeof("x-ratelimit-") - 1;
            len -= sizeof("x-ratelimit-") - 1;

            if (len == sizeof("reset-requests") - 1
                && ngx_strncasecmp(name, (u_char *) "reset-requests",
                                   len) == 0)
            {
                h->reset_requests = ngx_http_llm_pick_duration(
                                      hdr[i].value.data, hdr[i].value.len);

            } else if (len == sizeof("reset-tokens") - 1
                       && ngx_strncasecmp(name, (u_char *) "reset-tokens",
                                          len) == 0)
            {
                h->reset_tokens = ngx_http_llm_pick_duration(
                                      hdr[i].value.data, hdr[i].value.len);

            } else if (len == sizeof("remaining-requests") - 1
                       && ngx_strncasecmp(name, (u_char *) "remaining-requests",
                                          len) == 0)
            {
                n = ngx_atoi(hdr[i].value.data, hdr[i].value.len);
                ngx_http_llm_balancer_min(&h->remaining_requests,
                                          n == NGX_ERROR ? -1 : n);

            } else if (len == sizeof("remaining-tokens") - 1
                       && ngx_strncasecmp(name, (u_char *) "remaining-tokens",
                                          len) == 0)
            {
                n = ngx_atoi(hdr[i].value.data, hdr[i].value.len);
                ngx_http_llm_balancer_min(&h->remaining_tokens,
                                          n == NGX_ERROR ? -1 : n);
            }

            continue;
        }

        /* anthropic-ratelimit-{requests,tokens,input-tokens,...}-{remaining,
         * reset} */

        if (len > sizeof("anthropic-ratelimit-") - 1
            && ngx_strncasecmp(name, (u_char *) "anthropic-ratelimit-",
                               sizeof("anthropic-ratelimit-") - 1) == 0)
        {
            name += sizeof("anthropic-ratelimit-") - 1;
            len -= sizeof("anthropic-ratelimit-") - 1;

            if (len > sizeof("-reset") - 1
                && ngx_strncasecmp(name + len - 6, (u_char *) "-reset", 6)
                   == 0)
            {
                v = ngx_http_llm_balancer_delta(
                        ngx_http_llm_pick_rfc3339(hdr[i].value.data,
                                                  hdr[i].value.len), wall);

                if (ngx_strncasecmp(name, (u_char *) "requests", 8) == 0) {
                    h->reset_requests = v;

                } else {
                    ngx_http_llm_balancer_max(&h->reset_tokens, v);
                }

            } else if (len > sizeof("-remaining") - 1
                       && ngx_strncasecmp(name + len - 10,
                                          (u_char *) "-remaining", 10) == 0)
            {
                n = ngx_atoi(hdr[i].value.data, hdr[i].value.len);
                if (n == NGX_ERROR) {
                    continue;
                }

                if (ngx_strncasecmp(name, (u_char *) "requests", 8) == 0) {
                    h->remaining_requests = n;

                } else {
                    ngx_http_llm_balancer_min(&h->remaining_tokens, n);
                }
            }
        }
    }
}


/* the cool-down a 429 / 529 / 503 asks for, in ms; 0: none */

static int64_t
ngx_http_llm_balancer_cooldown(ngx_http_llm_balancer_conf_t *bcf,
    ngx_uint_t status, ngx_http_llm_balancer_hints_t *h)
{
    int64_t  cool;

    if (status != NGX_HTTP_TOO_MANY_REQUESTS && status != 529
        && status != NGX_HTTP_SERVICE_UNAVAILABLE)
    {
        return 0;
    }

    cool = h->retry_after;

    if (cool < 0) {
        if (h->remaining_requests == 0) {
            ngx_http_llm_balancer_max(&cool, h->reset_requests);
        }

        if (h->remaining_tokens == 0) {
            ngx_http_llm_balancer_max(&cool, h->reset_tokens);
        }
    }

    if (cool < 0) {
        ngx_http_llm_balancer_max(&cool, h->reset_requests);
        ngx_http_llm_balancer_max(&cool, h->reset_tokens);
    }

    if (cool < 0) {
        /* no hint: a 503 is a plain failure, 429 / 529 a short pause */
        cool = (status == NGX_HTTP_SERVICE_UNAVAILABLE) ? 0 : bcf->cooldown;
    }

    return ngx_min(cool, NGX_HTTP_LLM_BALANCE_MAX_COOL);
}


static void
ngx_http_llm_balancer_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_llm_balancer_pd_t *pd = data;

    int64_t                         cool;
    uint64_t                        wall;
    ngx_uint_t                      status;
    ngx_http_request_t             *r;
    ngx_http_llm_balancer_conf_t   *bcf;
    ngx_http_llm_balancer_node_t   *node;
    ngx_http_llm_balancer_hints_t   h;

    if (!pd->charged) {
        ngx_http_upstream_free_round_robin_peer(pc, &pd->rrp, state);
        return;
    }

    r = pd->r;
    bcf = pd->conf;
    wall = ngx_http_llm_balancer_wall();

    status = (r->upstream && r->upstream->headers_in.status_n)
             ? r->upstream->headers_in.status_n : 0;

    ngx_http_llm_balancer_hints(r, &h, wall);

    cool = ngx_http_llm_balancer_cooldown(bcf, status, &h);

    ngx_shmtx_lock(&bcf->shpool->mutex);

    node = &bcf->sh->node[bcf->slot[pd->ordinal]];

    /* release exactly what get_peer charged and progress did not */

    node->outstanding -= ngx_min(node->outstanding, pd->prompt + pd->output);
    node->inflight -= (node->inflight > 0);
    bcf->sh->changes++;

    if (cool > 0) {
        node->cool_until = ngx_max(node->cool_until, wall + (uint64_t) cool);
        node->cooldowns++;
    }

    if (h.remaining_requests >= 0 || h.remaining_tokens >= 0) {
        node->remaining_requests = h.remaining_requests;
        node->remaining_tokens = h.remaining_tokens;
        node->budget_until = wall + (uint64_t) ngx_max(1000,
                                 ngx_max(h.reset_requests, h.reset_tokens));
    }

    /* a JSON answer: its latency is the time to its first token */

    if (!pd->first && status == NGX_HTTP_OK && pd->ctx
        && pd->ctx->json_response)
    {
        node->ewma = ngx_http_llm_pick_ewma_observe(node->ewma, node->ewma_at,
                          ngx_current_msec,
                          (double) (ngx_current_msec - pd->started),
                          bcf->decay);
        node->ewma_at = ngx_current_msec ? ngx_current_msec : 1;
    }

    ngx_shmtx_unlock(&bcf->shpool->mutex);

    pd->charged = 0;

    if (!ngx_queue_empty(&bcf->held)) {
        ngx_http_llm_balancer_wake(bcf, NGX_HTTP_LLM_BALANCE_WAKE);
    }

    if (pd->ctx && pd->ctx->bal.pd == pd) {
        pd->ctx->bal.pd = NULL;
    }

    if (cool > 0) {
        ngx_log_error(NGX_LOG_WARN, pc->log, 0,
                      "llm balance: %V answered %ui, cooling it down for "
                      "%L ms as it asked", pc->name, status, cool);

        /* the peer said when to come back: not a failure */
        state &= ~NGX_PEER_FAILED;

    } else if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        /* a 5xx passed to the client still counts for max_fails */
        state |= NGX_PEER_FAILED;

    } else if (status >= NGX_HTTP_BAD_REQUEST) {
        /* the request's fault (400, 401, 404, ...): never eject */
        state &= ~NGX_PEER_FAILED;
    }

    ngx_http_upstream_free_round_robin_peer(pc, &pd->rrp, state);
}


void
ngx_http_llm_balancer_progress(ngx_http_request_t *r)
{
    uint64_t                        served, release;
    ngx_http_llm_ctx_t             *ctx;
    ngx_http_llm_balancer_pd_t     *pd;
    ngx_http_llm_balancer_conf_t   *bcf;
    ngx_http_llm_balancer_node_t   *node;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);
    if (ctx == NULL || ctx->bal.pd == NULL || !ctx->bal.pd->charged) {
        return;
    }

    pd = ctx->bal.pd;
    bcf = pd->conf;

    served = ctx->content_bytes / NGX_HTTP_LLM_BYTES_PER_TOKEN;
    served = ngx_min(served, pd->released + pd->output);

    if (pd->first && served - pd->released < NGX_HTTP_LLM_BALANCE_STEP) {
        return;
    }

    release = served - pd->released;

    ngx_shmtx_lock(&bcf->shpool->mutex);

    node = &bcf->sh->node[bcf->slot[pd->ordinal]];

    if (!pd->first) {
        /* the prompt is prefilled: it no longer loads the peer */
        node->outstanding -= ngx_min(node->outstanding, pd->prompt);

        node->ewma = ngx_http_llm_pick_ewma_observe(node->ewma, node->ewma_at,
                          ngx_current_msec,
                          (double) (ngx_current_msec - pd->started),
                          bcf->decay);
        node->ewma_at = ngx_current_msec ? ngx_current_msec : 1;
    }

    node->outstanding -= ngx_min(node->outstanding, release);

    ngx_shmtx_unlock(&bcf->shpool->mutex);

    if (!pd->first) {
        pd->prompt = 0;
        pd->first = 1;
        ctx->bal.first = 1;
    }

    pd->released += release;
    pd->output -= release;
}


void
ngx_http_llm_balancer_peer_failed(ngx_http_request_t *r, time_t cooldown)
{
    time_t                          now;
    uint64_t                        wall;
    ngx_http_llm_ctx_t             *ctx;
    ngx_http_upstream_rr_peer_t    *peer;
    ngx_http_upstream_rr_peers_t   *peers;
    ngx_http_llm_balancer_conf_t   *bcf;
    ngx_http_llm_balancer_node_t   *node;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);
    if (ctx == NULL || !ctx->bal.picked) {
        return;
    }

    bcf = ctx->bal.conf;
    peers = ctx->bal.peers;
    peer = ctx->bal.peer;
    now = ngx_time();

    ngx_http_upstream_rr_peers_rlock(peers);
    ngx_http_upstream_rr_peer_lock(peers, peer);

    peer->fails++;
    peer->accessed = now;
    peer->checked = now;

    ngx_http_upstream_rr_peer_unlock(peers, peer);
    ngx_http_upstream_rr_peers_unlock(peers);

    wall = ngx_http_llm_balancer_wall();

    ngx_shmtx_lock(&bcf->shpool->mutex);

    node = &bcf->sh->node[bcf->slot[ctx->bal.ordinal]];
    node->failures++;

    if (cooldown > 0) {
        node->cool_until = ngx_max(node->cool_until,
                                   wall + (uint64_t) cooldown * 1000);
        node->cooldowns++;
    }

    ngx_shmtx_unlock(&bcf->shpool->mutex);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "llm balance: %V failed before the first token "
                  "(%ui of max_fails=%ui), cool-down %T s",
                  &peer->name, peer->fails, peer->max_fails, cooldown);
}


ngx_int_t
ngx_http_llm_balancer_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL || !ctx->bal.picked) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ctx->bal.name.data;
    v->len = ctx->bal.name.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * llm_balance prefix wait=: a request whose prefix's home (the ring owner,
 * or a server of its history) is over the load bound is held here, before
 * the upstream is connected, until a slot frees there or the wait expires;
 * a held request is in flight on no server, so the bound still holds
 */


extern ngx_module_t  ngx_http_proxy_module;


/* the upstream's configuration when it has llm_balance prefix wait= */

static ngx_http_llm_balancer_conf_t *
ngx_http_llm_balancer_waits(ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_http_llm_balancer_conf_t  *bcf;

    if (uscf == NULL || uscf->srv_conf == NULL) {
        return NULL;
    }

    bcf = ngx_http_conf_upstream_srv_conf(uscf, ngx_http_llm_module);

    if (bcf->method != NGX_HTTP_LLM_BALANCE_PREFIX || bcf->wait == 0) {
        return NULL;
    }

    return bcf;
}


/*
 * at merge time: does a request of this location possibly wait? Its
 * proxy_pass names an upstream with wait=, or it has variables (such as
 * $llm_upstream) and some upstream has wait=. The proxy's location
 * configuration starts with its ngx_http_upstream_conf_t, merged already
 * (the proxy module comes before this one)
 */

ngx_flag_t
ngx_http_llm_balancer_wait_conf(ngx_conf_t *cf)
{
    ngx_uint_t                      i;
    ngx_http_upstream_conf_t       *ucf;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    ucf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_proxy_module);
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (ucf == NULL || clcf->handler == NULL) {
        return 0;
    }

    if (ucf->upstream) {
        return ngx_http_llm_balancer_waits(ucf->upstream) != NULL;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        if (ngx_http_llm_balancer_waits(uscfp[i])) {
            return 1;
        }
    }

    return 0;
}


ngx_int_t
ngx_http_llm_balancer_hold(ngx_http_request_t *r, void *data)
{
    ngx_http_llm_ctx_t *ctx = data;

    uint32_t                        line, bound;
    ngx_str_t                      *name;
    ngx_uint_t                      i, home;
    ngx_msec_t                      wait;
    ngx_pool_cleanup_t             *cln;
    ngx_http_llm_loc_conf_t        *llcf;
    ngx_http_upstream_conf_t       *ucf;
    ngx_http_upstream_srv_conf_t   *uscf, **uscfp;
    ngx_http_llm_balancer_conf_t   *bcf;
    ngx_http_llm_balancer_node_t   *node;
    ngx_http_upstream_main_conf_t  *umcf;

    if (!ctx->inspected || ctx->bal.held) {
        return NGX_DECLINED;
    }

    /* the upstream: proxy_pass's own, else by name from $llm_upstream */

    ucf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_module);
    uscf = ucf->upstream;

    if (uscf == NULL) {
        llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

        name = (ctx->link && ctx->link->upstream.len) ? &ctx->link->upstream
                                                      : &llcf->link.route;
        if (name->len == 0) {
            return NGX_DECLINED;
        }

        umcf = ngx_http_get_module_main_conf(r, ngx_http_upstream_module);
        uscfp = umcf->upstreams.elts;

        for (i = 0; i < umcf->upstreams.nelts; i++) {
            if (uscfp[i]->host.len == name->len
                && ngx_strncasecmp(uscfp[i]->host.data, name->data,
                                   name->len) == 0)
            {
                uscf = uscfp[i];
                break;
            }
        }
    }

    bcf = ngx_http_llm_balancer_waits(uscf);

    if (bcf == NULL || bcf->sh == NULL) {
        return NGX_DECLINED;
    }

    ctx->bal.wait_conf = bcf;
    ctx->bal.wait_key = ngx_http_llm_balancer_key(bcf, ctx);

    ctx->bal.wait_pick = ngx_palloc(r->pool, bcf->nprimary
                                    * sizeof(ngx_http_llm_pick_peer_t));
    if (ctx->bal.wait_pick == NULL) {
        return NGX_DECLINED;
    }

    if (!ngx_http_llm_balancer_spills(r, ctx, &wait, &home, &bound)) {
        return NGX_DECLINED;
    }

    if (wait == 0) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm balance: prefix %016xL of \"%V\" not held: no "
                       "server served it lately and cold_wait= is 0 now",
                       ctx->bal.wait_key, bcf->upstream);
        return NGX_DECLINED;
    }

    /*
     * the line at the home: up to LINE held for it, in every worker, per
     * slot it has (its bound), about what frees there within a few
     * requests' time; a request behind them would wait longer, it spills
     * now (one hot prefix on a saturated group: the excess goes elsewhere
     * at once, the in-flight total and with it the bound grow)
     */

    bound *= NGX_HTTP_LLM_BALANCE_LINE;
    node = &bcf->sh->node[bcf->slot[home]];

    ngx_shmtx_lock(&bcf->shpool->mutex);

    line = node->held;

    if (line < bound) {
        node->held++;
    }

    ngx_shmtx_unlock(&bcf->shpool->mutex);

    if (line >= bound) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm balance: prefix %016xL of \"%V\" not held: %uD "
                       "held for its home already", ctx->bal.wait_key,
                       bcf->upstream, line);
        return NGX_DECLINED;
    }

    ctx->bal.wait_slot = bcf->slot[home];

    ctx->bal.wait_max = wait;

    /*
     * held: the limit_req delay pattern, polled; a release by this worker
     * wakes it at once (ngx_http_llm_balancer_wake), the poll covers the
     * other workers' releases
     */

    ctx->bal.held = 1;
    ctx->bal.waiting = 1;
    ctx->bal.wait_start = ngx_current_msec;
    ctx->bal.wait_r = r;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_http_llm_balancer_unhold(ctx);
        return NGX_DECLINED;
    }

    cln->handler = ngx_http_llm_balancer_unhold;
    cln->data = ctx;

    ngx_queue_insert_tail(&bcf->held, &ctx->bal.wait_queue);
    ctx->bal.queued = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm balance: prefix %016xL of \"%V\" held, its home is "
                   "full, wait up to %M ms",
                   ctx->bal.wait_key, bcf->upstream, ctx->bal.wait_max);

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_llm_balancer_wait_handler;

    r->connection->write->delayed = 1;
    ngx_add_timer(r->connection->write, NGX_HTTP_LLM_BALANCE_POLL);

    return NGX_AGAIN;
}


static void
ngx_http_llm_balancer_wait_handler(ngx_http_request_t *r)
{
    uint32_t                       bound;
    ngx_uint_t                     spill, chain, home;
    ngx_msec_t                     held, wait;
    ngx_event_t                   *wev;
    ngx_http_llm_ctx_t            *ctx;
    ngx_http_llm_balancer_conf_t  *bcf;

    wev = r->connection->write;

    if (wev->delayed) {
        /* writable, not the timer */

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);
    bcf = ctx->bal.wait_conf;

    held = ngx_current_msec - ctx->bal.wait_start;
    chain = ctx->bal.wake_chain;
    ctx->bal.wake_chain = 0;

    /*
     * a poll (not woken, not expired) is no check while a request woken
     * in this worker is yet to run (it was in line first), or when
     * nothing that makes room happened in any worker since the last
     * check, unless that is old (a cool-down may have ended meanwhile)
     */

    if (chain) {
        bcf->waking--;

    } else if (held < ctx->bal.wait_max
               && (bcf->waking
                   || (bcf->sh->changes == ctx->bal.wait_seen
                       && ngx_current_msec - ctx->bal.wait_checked
                          < NGX_HTTP_LLM_BALANCE_RECHECK)))
    {
        wev->delayed = 1;
        ngx_add_timer(wev, ngx_min(NGX_HTTP_LLM_BALANCE_POLL,
                                   ctx->bal.wait_max - held));
        return;
    }

    spill = ngx_http_llm_balancer_spills(r, ctx, &wait, &home, &bound);

    if (spill && held < ctx->bal.wait_max) {

        /*
         * woken for nothing (the slot freed is not its home's): the next
         * in line gets the check, then this one goes back in line
         */

        if (chain > 1) {
            ngx_http_llm_balancer_wake(bcf, chain - 1);
        }

        if (!ctx->bal.queued) {
            ngx_queue_insert_tail(&bcf->held, &ctx->bal.wait_queue);
            ctx->bal.queued = 1;
        }

        wev->delayed = 1;
        ngx_add_timer(wev, ngx_min(NGX_HTTP_LLM_BALANCE_POLL,
                                   ctx->bal.wait_max - held));
        return;
    }

    ctx->bal.waited = held;

    ngx_http_llm_balancer_unhold(ctx);

    ngx_shmtx_lock(&bcf->shpool->mutex);
    bcf->sh->waits[spill]++;
    ngx_shmtx_unlock(&bcf->shpool->mutex);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm balance: prefix %016xL of \"%V\" held %M ms: %s",
                   ctx->bal.wait_key, bcf->upstream, held,
                   spill ? "wait expired, spilled" : "home has room");

    if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


/*
 * a slot of the group freed in this worker: the first request it holds is
 * checked at once (posted, as if its poll timer had fired), not at its
 * next poll; if the slot is not its home's, it passes the check on to the
 * next, up to "checks" requests a release (one slot, one request: a
 * request that goes home ends the chain)
 */

static void
ngx_http_llm_balancer_wake(ngx_http_llm_balancer_conf_t *bcf,
    ngx_uint_t checks)
{
    ngx_queue_t         *q;
    ngx_event_t         *wev;
    ngx_http_llm_ctx_t  *ctx;

    if (ngx_queue_empty(&bcf->held)) {
        return;
    }

    q = ngx_queue_head(&bcf->held);
    ctx = ngx_queue_data(q, ngx_http_llm_ctx_t, bal.wait_queue);

    ngx_http_llm_balancer_unqueue(ctx);

    ctx->bal.wake_chain = checks;
    bcf->waking++;

    wev = ctx->bal.wait_r->connection->write;

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    wev->delayed = 0;
    ngx_post_event(wev, &ngx_posted_events);
}


/* out of the held queue: woken, the hold ended, or the request did */

static void
ngx_http_llm_balancer_unqueue(ngx_http_llm_ctx_t *ctx)
{
    if (ctx->bal.queued) {
        ngx_queue_remove(&ctx->bal.wait_queue);
        ctx->bal.queued = 0;
    }
}


/*
 * the hold ended: home, expired, or the request ended while held (its
 * pool cleanup: the client went away)
 */

static void
ngx_http_llm_balancer_unhold(void *data)
{
    ngx_http_llm_ctx_t *ctx = data;

    ngx_http_llm_balancer_conf_t  *bcf;
    ngx_http_llm_balancer_node_t  *node;

    ngx_http_llm_balancer_unqueue(ctx);

    if (!ctx->bal.waiting) {
        return;
    }

    ctx->bal.waiting = 0;
    bcf = ctx->bal.wait_conf;

    if (ctx->bal.wake_chain) {
        /* woken, gone before it ran: its posted event went with it */
        ctx->bal.wake_chain = 0;
        bcf->waking--;
    }

    node = &bcf->sh->node[ctx->bal.wait_slot];

    ngx_shmtx_lock(&bcf->shpool->mutex);
    node->held -= (node->held > 0);
    ngx_shmtx_unlock(&bcf->shpool->mutex);
}


/* would get_peer spill this request now? pass 0's view of the servers */

static ngx_int_t
ngx_http_llm_balancer_spills(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_msec_t *wait, ngx_uint_t *home, uint32_t *bound)
{
    int                             spill;
    time_t                          now;
    uint32_t                        owner;
    uint64_t                        wall, prompt, output;
    ngx_uint_t                      i;
    ngx_http_llm_pick_peer_t       *pk;
    ngx_http_llm_pick_recent_t     *recent;
    ngx_http_upstream_rr_peer_t    *peer;
    ngx_http_upstream_rr_peers_t   *peers;
    ngx_http_llm_balancer_conf_t   *bcf;
    ngx_http_llm_balancer_node_t   *node;
    ngx_http_llm_balancer_shctx_t  *sh;

    bcf = ctx->bal.wait_conf;
    sh = bcf->sh;

    now = ngx_time();
    wall = ngx_http_llm_balancer_wall();

    ngx_http_llm_balancer_expect(bcf, ctx, &prompt, &output);

    /* the zone's copy when upstream{} has "zone" */
    peers = bcf->uscf->peer.data;

    ngx_http_upstream_rr_peers_rlock(peers);
    ngx_shmtx_lock(&bcf->shpool->mutex);

    for (peer = peers->peer, i = 0; peer && i < bcf->nprimary;
         peer = peer->next, i++)
    {
        pk = &ctx->bal.wait_pick[i];
        node = &sh->node[bcf->slot[i]];

        pk->inflight = node->inflight;
        pk->weight = (uint32_t) ngx_max(peer->weight, 1);

        pk->eligible = !peer->down
                       && !(peer->max_conns && peer->conns >= peer->max_conns)
                       && !ngx_http_llm_balancer_sick(peer, node, now, wall)
                       && !ngx_http_llm_balancer_spent(node, wall,
                                                       prompt + output);
    }

    recent = sh->recent
             ? ngx_http_llm_pick_recent_slot(sh->recent,
                                             NGX_HTTP_LLM_BALANCE_RECENT,
                                             ctx->bal.wait_key)
             : NULL;

    /*
     * how long it may wait: a prefix some server served lately up to
     * wait=, one no server served up to cold_wait= (a unique prompt gains
     * little from its ring owner, a group's first request avoids a second
     * cached copy); with cold_wait=auto, wait= while at least a quarter
     * of the picks find their prefix served lately, else 0. Without a
     * history (no room for it) every prefix counts as served
     */

    if (recent == NULL || recent->key == ctx->bal.wait_key) {
        *wait = bcf->wait;

    } else if (bcf->cold_auto) {
        *wait = (sh->reuse >= NGX_HTTP_LLM_BALANCE_REUSE) ? bcf->wait : 0;

    } else {
        *wait = bcf->cold_wait;
    }

    spill = ngx_http_llm_pick_ring_spills(&bcf->ring, ctx->bal.wait_pick, i,
                                          ctx->bal.wait_key, bcf->epsilon,
                                          bcf->slack, recent, &owner);

    if (spill) {
        *home = owner;
        *bound = ngx_http_llm_pick_bound(ctx->bal.wait_pick, i, owner,
                                         bcf->epsilon, bcf->slack);
    }

    ctx->bal.wait_seen = sh->changes;
    ctx->bal.wait_checked = ngx_current_msec;

    ngx_shmtx_unlock(&bcf->shpool->mutex);
    ngx_http_upstream_rr_peers_unlock(peers);

    return spill;
}


/* $llm_balance_wait: ms held for the prefix's home; empty: not held */

ngx_int_t
ngx_http_llm_balancer_wait_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char              *p;
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_llm_find_ctx(r);

    if (ctx == NULL || !ctx->bal.held) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    /* a client gone while held is logged with the time it waited */

    v->len = ngx_sprintf(p, "%M", ctx->bal.waiting
                                  ? ngx_current_msec - ctx->bal.wait_start
                                  : ctx->bal.waited)
             - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* metrics families, appended to llm_metrics by ngx_http_llm_metrics.c */


static ngx_http_llm_metrics_family_t  ngx_http_llm_balancer_families[] = {
    { "llm_balancer_picks_total", "counter",
      "Times llm_balance chose the server." },
    { "llm_balancer_cooldowns_total", "counter",
      "Cool-downs of the server: 429/529/503 answers, failures before the "
      "first token." },
    { "llm_balancer_outstanding_tokens", "gauge",
      "Tokens charged to the server and not yet served." },
    { "llm_balancer_inflight", "gauge", "Requests in flight on the server." },
    { "llm_balancer_ttft_ewma_seconds", "gauge",
      "Peak-EWMA time to first token of the server." },
    { "llm_balancer_peer_up", "gauge",
      "1 when the server can be chosen now (not down, failed or cooling "
      "down)." }
};


static ngx_http_llm_metrics_family_t  ngx_http_llm_balancer_waits_family =
    { "llm_balancer_waits_total", "counter",
      "Requests llm_balance prefix wait= held for their prefix's home, by "
      "how the hold ended: home (a slot freed there) or spill (the wait "
      "expired)." };


static ngx_http_llm_metrics_family_t  ngx_http_llm_balancer_reuse_family =
    { "llm_balancer_prefix_reuse_ratio", "gauge",
      "Share of the recent picks (about the last 32) whose prefix a server "
      "had served lately; cold_wait=auto holds cold prefixes while it is "
      "0.25 or more." };


ngx_chain_t **
ngx_http_llm_balancer_metrics(ngx_http_request_t *r, ngx_chain_t **ll,
    off_t *len)
{
    u_char                          *p;
    size_t                           size;
    time_t                           now;
    uint64_t                         wall, v, home;
    ngx_buf_t                       *b;
    ngx_uint_t                       f, i, u, up;
    ngx_http_upstream_rr_peer_t     *peer;
    ngx_http_upstream_rr_peers_t    *peers;
    ngx_http_llm_balancer_conf_t    *bcf;
    ngx_http_llm_balancer_node_t     node;
    ngx_http_upstream_srv_conf_t   **uscfp;
    ngx_http_upstream_main_conf_t   *umcf;
    ngx_http_llm_metrics_family_t  *fam;

    umcf = ngx_http_get_module_main_conf(r, ngx_http_upstream_module);
    uscfp = umcf->upstreams.elts;

    now = ngx_time();
    wall = ngx_http_llm_balancer_wall();

    /* no llm_balance anywhere: no families at all */

    for (u = 0; u < umcf->upstreams.nelts; u++) {
        if (uscfp[u]->srv_conf) {
            bcf = ngx_http_conf_upstream_srv_conf(uscfp[u],
                                                  ngx_http_llm_module);
            if (bcf->method && bcf->sh) {
                break;
            }
        }
    }

    if (u == umcf->upstreams.nelts) {
        return ll;
    }

    for (f = 0; f < sizeof(ngx_http_llm_balancer_families)
                    / sizeof(ngx_http_llm_metrics_family_t); f++)
    {
        fam = &ngx_http_llm_balancer_families[f];
        size = 512;

        for (u = 0; u < umcf->upstreams.nelts; u++) {
            if (uscfp[u]->srv_conf == NULL) {
                continue;
            }

            bcf = ngx_http_conf_upstream_srv_conf(uscfp[u],
                                                  ngx_http_llm_module);
            if (bcf->method == 0 || bcf->sh == NULL) {
                continue;
            }

            for (i = 0; i < bcf->npeers; i++) {
                size += 64 + bcf->upstream->len + bcf->names[i].len
                        + NGX_INT64_LEN;
            }
        }

        b = ngx_create_temp_buf(r->pool, size);
        if (b == NULL) {
            return NULL;
        }

        p = ngx_http_llm_metrics_family(b->last, fam);

        for (u = 0; u < umcf->upstreams.nelts; u++) {
            if (uscfp[u]->srv_conf == NULL) {
                continue;
            }

            bcf = ngx_http_conf_upstream_srv_conf(uscfp[u],
                                                  ngx_http_llm_module);
            if (bcf->method == 0 || bcf->sh == NULL) {
                continue;
            }

            peers = uscfp[u]->peer.data;
            peer = peers->peer;

            for (i = 0; i < bcf->npeers; i++) {

                if (peer == NULL) {
                    if (peers->next == NULL) {
                        break;
                    }

                    peers = peers->next;
                    peer = peers->peer;
                }

                ngx_shmtx_lock(&bcf->shpool->mutex);
                node = bcf->sh->node[bcf->slot[i]];
                ngx_shmtx_unlock(&bcf->shpool->mutex);

                switch (f) {
                case 0:
                    v = node.picks;
                    break;
                case 1:
                    v = node.cooldowns;
                    break;
                case 2:
                    v = node.outstanding;
                    break;
                case 3:
                    v = node.inflight;
                    break;
                case 4:
                    v = (uint64_t) ngx_http_llm_pick_ewma_current(node.ewma,
                                     node.ewma_at, ngx_current_msec,
                                     bcf->decay);
                    break;
                default:
                    up = !peer->down && node.cool_until <= wall
                         && !(peer->max_fails && peer->fails >= peer->max_fails
                              && now - peer->checked <= peer->fail_timeout);
                    v = up;
                    break;
                }

                if (f == 4) {
                    /* ms to seconds */
                    p = ngx_sprintf(p, "%s{upstream=\"%V\",peer=\"%V\"} "
                                    "%uL.%03uL\n", fam->name, bcf->upstream,
                                    &bcf->names[i], v / 1000, v % 1000);

                } else {
                    p = ngx_sprintf(p, "%s{upstream=\"%V\",peer=\"%V\"} "
                                    "%uL\n", fam->name, bcf->upstream,
                                    &bcf->names[i], v);
                }

                peer = peer->next;
            }
        }

        b->last = p;

        ll = ngx_http_llm_metrics_append(r, ll, b, len);
        if (ll == NULL) {
            return NULL;
        }
    }

    /* the holds of wait= and the reuse share, in upstreams with wait= */

    size = 1024;

    for (u = 0; u < umcf->upstreams.nelts; u++) {
        bcf = ngx_http_llm_balancer_waits(uscfp[u]);

        if (bcf && bcf->sh) {
            size += 3 * (96 + bcf->upstream->len + NGX_INT64_LEN);
        }
    }

    if (size == 1024) {
        /* no wait= anywhere: no family */
        return ll;
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NULL;
    }

    fam = &ngx_http_llm_balancer_waits_family;
    p = ngx_http_llm_metrics_family(b->last, fam);

    for (u = 0; u < umcf->upstreams.nelts; u++) {
        bcf = ngx_http_llm_balancer_waits(uscfp[u]);

        if (bcf == NULL || bcf->sh == NULL) {
            continue;
        }

        ngx_shmtx_lock(&bcf->shpool->mutex);
        home = bcf->sh->waits[0];
        v = bcf->sh->waits[1];
        ngx_shmtx_unlock(&bcf->shpool->mutex);

        p = ngx_sprintf(p, "%s{upstream=\"%V\",outcome=\"home\"} %uL\n"
                        "%s{upstream=\"%V\",outcome=\"spill\"} %uL\n",
                        fam->name, bcf->upstream, home,
                        fam->name, bcf->upstream, v);
    }

    fam = &ngx_http_llm_balancer_reuse_family;
    p = ngx_http_llm_metrics_family(p, fam);

    for (u = 0; u < umcf->upstreams.nelts; u++) {
        bcf = ngx_http_llm_balancer_waits(uscfp[u]);

        if (bcf == NULL || bcf->sh == NULL) {
            continue;
        }

        /* a word read: no lock needed for a gauge */
        v = (uint64_t) bcf->sh->reuse * 10000 / NGX_HTTP_LLM_PICK_REUSE_ONE;

        p = ngx_sprintf(p, "%s{upstream=\"%V\"} %uL.%04uL\n",
                        fam->name, bcf->upstream, v / 10000, v % 10000);
    }

    b->last = p;

    return ngx_http_llm_metrics_append(r, ll, b, len);
}
