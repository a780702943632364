
/*
 * Copyright (C) ngx_llm authors
 *
 * Peer selection arithmetic of the LLM balancers: pure C, no nginx
 * dependency, linked by the cmocka units as well as by the module.
 *
 *   least tokens   cost = outstanding tokens / weight
 *   peak EWMA      power of two choices on peak-EWMA TTFT x (1 + inflight)
 *   prefix         consistent hash ring with bounded load; over the
 *                  bound, the servers that served the prefix last first,
 *                  then the one holding the fewest prefixes
 *
 * The nginx glue (ngx_http_llm_balancer.c) fills one
 * ngx_http_llm_pick_peer_t per server of a group and calls a pick function;
 * every function returns the index of the chosen peer or -1 when no peer
 * is eligible.
 */


#ifndef _NGX_HTTP_LLM_PICK_H_INCLUDED_
#define _NGX_HTTP_LLM_PICK_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* ring points per unit of server weight */
#define NGX_HTTP_LLM_PICK_VNODES        160

/* ring lookup: buckets by the top 8 bits of a hash */
#define NGX_HTTP_LLM_PICK_BUCKETS       256

/* servers remembered per prefix, most recent first */
#define NGX_HTTP_LLM_PICK_RECENT        3

/* the reuse share: 1.0, and its average over about 2^SHIFT picks */
#define NGX_HTTP_LLM_PICK_REUSE_ONE     65536
#define NGX_HTTP_LLM_PICK_REUSE_SHIFT   5


typedef struct {
    uint64_t                    outstanding;    /* tokens charged */
    uint64_t                    picks;          /* times chosen */
    double                      ewma;           /* peak-EWMA TTFT, ms */
    uint64_t                    ewma_at;        /* last update, ms */
    uint32_t                    inflight;       /* requests */
    uint32_t                    weight;         /* >= 1 */
    unsigned                    eligible:1;
} ngx_http_llm_pick_peer_t;


typedef struct {
    uint64_t                   *points;         /* sorted hashes */
    uint32_t                   *owners;         /* peer index per point */
    size_t                      n;

    /* the first point of each bucket and beyond: n for the last */
    uint32_t                    bucket[NGX_HTTP_LLM_PICK_BUCKETS + 1];
} ngx_http_llm_pick_ring_t;


/*
 * routing history of one prefix key: the servers (index + 1, 0: none)
 * that served it last, most recent first; they hold it in their cache
 */
typedef struct {
    uint64_t                    key;
    uint32_t                    peer[NGX_HTTP_LLM_PICK_RECENT];
    uint32_t                    stamp;      /* last noted, the caller's clock */
} ngx_http_llm_pick_recent_t;


/* 64-bit mixing (splitmix64 finalizer) and a string hash built on it */
uint64_t ngx_http_llm_pick_mix(uint64_t x);
uint64_t ngx_http_llm_pick_hash(const void *data, size_t len, uint64_t seed);

/*
 * least outstanding tokens per weight; ties: fewer in flight, then fewer
 * picks so far (round robin among idle peers), then the lower index
 */
int ngx_http_llm_pick_least(const ngx_http_llm_pick_peer_t *peers, size_t n);

/*
 * peak EWMA: a sample above the average replaces it at once, a lower one
 * is blended with weight dt / (dt + decay); idle time decays the average
 * towards 0 the same way, so idle peers get tried again.
 */
double ngx_http_llm_pick_ewma_observe(double ewma, uint64_t at, uint64_t now,
    double sample, uint64_t decay);
double ngx_http_llm_pick_ewma_current(double ewma, uint64_t at, uint64_t now,
    uint64_t decay);

/*
 * power of two choices between two distinct eligible peers drawn with rnd;
 * cost = (peak EWMA + 1 ms) x (1 + inflight) / weight; a peer never
 * measured costs 0 (it gets tried); ties fall back to least tokens
 */
int ngx_http_llm_pick_p2c(const ngx_http_llm_pick_peer_t *peers, size_t n,
    uint64_t rnd, uint64_t now, uint64_t decay);

/* ring size for npeers of the given weights */
size_t ngx_http_llm_pick_ring_size(const uint32_t *weights, size_t npeers);

/*
 * builds the ring into caller-provided arrays of ring_size() entries; the
 * points depend only on the names and weights, never on their order
 */
void ngx_http_llm_pick_ring_build(ngx_http_llm_pick_ring_t *ring,
    const char *const *names, const size_t *lens, const uint32_t *weights,
    size_t npeers, uint64_t seed);

/*
 * consistent hashing with bounded load: the owner of hash (the first
 * eligible peer clockwise) if its in-flight count stays within
 * ceil((1 + epsilon) x (total in flight + 1) x weight / total weight)
 * + slack;
 * else the most recent peer of recent (NULL: none) within its bound, the
 * one most likely to hold the prefix in its cache; else, with foot (the
 * footprint per peer: prefixes of the history it holds, NULL: none), the
 * peer within its bound with the smallest footprint, ties and no foot:
 * the next such peer clockwise
 */
int ngx_http_llm_pick_ring(const ngx_http_llm_pick_ring_t *ring,
    const ngx_http_llm_pick_peer_t *peers, size_t n, uint64_t hash,
    double epsilon, uint32_t slack, const ngx_http_llm_pick_recent_t *recent,
    const uint32_t *foot);

/*
 * 1 when ngx_http_llm_pick_ring() would spill the request to a peer that
 * does not hold the prefix: the owner is over its bound and so is every
 * eligible holder of recent (NULL: none); 0 when it goes home, or when no
 * peer is eligible at all (waiting would not help)
 */
int ngx_http_llm_pick_ring_spills(const ngx_http_llm_pick_ring_t *ring,
    const ngx_http_llm_pick_peer_t *peers, size_t n, uint64_t hash,
    double epsilon, uint32_t slack, const ngx_http_llm_pick_recent_t *recent,
    uint32_t *home);

/*
 * notes that peer (an index) served key: move to front of its history; a
 * history of another key is replaced. With foot (nfoot peers, NULL:
 * none), the entry's count moves from its old front server to peer
 */
/*
 * the entry of key in a history of n entries: each key has two candidate
 * entries (two keys sharing one still both fit); the one holding key, else
 * an empty one, else the one noted longer ago, which a note then takes over
 */
ngx_http_llm_pick_recent_t *ngx_http_llm_pick_recent_slot(
    ngx_http_llm_pick_recent_t *table, size_t n, uint64_t key);

void ngx_http_llm_pick_recent_note(ngx_http_llm_pick_recent_t *recent,
    uint64_t key, uint32_t peer, uint32_t *foot, size_t nfoot);

/*
 * the share of picks whose prefix was in the routing history (some server
 * served it lately), in 1/NGX_HTTP_LLM_PICK_REUSE_ONE units: an
 * exponential average over about the last 2^NGX_HTTP_LLM_PICK_REUSE_SHIFT
 * picks, moved by one pick, warm or not
 */
uint32_t ngx_http_llm_pick_reuse(uint32_t share, int warm);

/* the footprints of nfoot peers counted afresh from a whole history */
void ngx_http_llm_pick_foot_count(const ngx_http_llm_pick_recent_t *recent,
    size_t nrecent, uint32_t *foot, size_t nfoot);

/* the capacity above, for tests and the debug log */
uint32_t ngx_http_llm_pick_bound(const ngx_http_llm_pick_peer_t *peers,
    size_t n, size_t i, double epsilon, uint32_t slack);

/*
 * rate limit header values: an OpenAI duration ("6m0s", "1.5s", "20ms",
 * "1h", a bare number of seconds) to milliseconds; an RFC 3339 timestamp
 * ("2026-11-22T12:00:30Z", fraction and offset allowed) to Unix ms.
 * Both return -1 for a malformed value.
 */
int64_t ngx_http_llm_pick_duration(const unsigned char *p, size_t len);
int64_t ngx_http_llm_pick_rfc3339(const unsigned char *p, size_t len);


#endif /* _NGX_HTTP_LLM_PICK_H_INCLUDED_ */
