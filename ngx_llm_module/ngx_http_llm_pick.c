
/*
 * Copyright (C) ngx_llm authors
 *
 * Peer selection arithmetic of the LLM balancers, see ngx_http_llm_pick.h.
 */


#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_pick.h"


static int ngx_http_llm_pick_cmp_tokens(const ngx_http_llm_pick_peer_t *a,
    const ngx_http_llm_pick_peer_t *b);
static double ngx_http_llm_pick_p2c_cost(const ngx_http_llm_pick_peer_t *p,
    uint64_t now, uint64_t decay);
static void ngx_http_llm_pick_ring_sort(uint64_t *points, uint32_t *owners,
    size_t n);


uint64_t
ngx_http_llm_pick_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;

    return x ^ (x >> 31);
}


uint64_t
ngx_http_llm_pick_hash(const void *data, size_t len, uint64_t seed)
{
    size_t          i;
    uint64_t        h;
    const uint8_t  *p = data;

    /* FNV-1a, then a full mix: cheap, portable, stable across builds */

    h = 0xcbf29ce484222325ULL ^ ngx_http_llm_pick_mix(seed);

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }

    return ngx_http_llm_pick_mix(h);
}


/* < 0 when a is cheaper than b */

static int
ngx_http_llm_pick_cmp_tokens(const ngx_http_llm_pick_peer_t *a,
    const ngx_http_llm_pick_peer_t *b)
{
    double  ca, cb;

    ca = (double) a->outstanding / a->weight;
    cb = (double) b->outstanding / b->weight;

    if (ca != cb) {
        return ca < cb ? -1 : 1;
    }

    /* inflight / weight compared without division */

    if ((uint64_t) a->inflight * b->weight
        != (uint64_t) b->inflight * a->weight)
    {
        return (uint64_t) a->inflight * b->weight
               < (uint64_t) b->inflight * a->weight ? -1 : 1;
    }

    if ((double) a->picks / a->weight != (double) b->picks / b->weight) {
        return (double) a->picks / a->weight < (double) b->picks / b->weight
               ? -1 : 1;
    }

    return 0;
}


int
ngx_http_llm_pick_least(const ngx_http_llm_pick_peer_t *peers, size_t n)
{
    int     best;
    size_t  i;

    best = -1;

    for (i = 0; i < n; i++) {
        if (!peers[i].eligible) {
            continue;
        }

        if (best < 0 || ngx_http_llm_pick_cmp_tokens(&peers[i],
                                                     &peers[best]) < 0)
        {
            best = (int) i;
        }
    }

    return best;
}


double
ngx_http_llm_pick_ewma_current(double ewma, uint64_t at, uint64_t now,
    uint64_t decay)
{
    uint64_t  dt;

    if (now <= at || decay == 0) {
        return ewma;
    }

    dt = now - at;

    return ewma * (double) decay / (double) (decay + dt);
}


double
ngx_http_llm_pick_ewma_observe(double ewma, uint64_t at, uint64_t now,
    double sample, uint64_t decay)
{
    double    w;
    uint64_t  dt;

    if (at == 0 || sample >= ewma) {
        return sample;      /* first sample, or a peak */
    }

    dt = (now > at) ? now - at : 0;

    if (decay == 0) {
        return sample;
    }

    /* weight of the old average: 1 for dt = 0, 1/2 for dt = decay */

    w = (double) decay / (double) (decay + dt);

    return ewma * w + sample * (1.0 - w);
}


static double
ngx_http_llm_pick_p2c_cost(const ngx_http_llm_pick_peer_t *p, uint64_t now,
    uint64_t decay)
{
    double  ewma;

    if (p->ewma_at == 0) {
        return 0.0;         /* never measured: try it */
    }

    ewma = ngx_http_llm_pick_ewma_current(p->ewma, p->ewma_at, now, decay);

    return (ewma + 1.0) * (1.0 + p->inflight) / p->weight;
}


int
ngx_http_llm_pick_p2c(const ngx_http_llm_pick_peer_t *peers, size_t n,
    uint64_t rnd, uint64_t now, uint64_t decay)
{
    int     a, b;
    size_t  i, m, ia, ib;
    double  ca, cb;

    m = 0;

    for (i = 0; i < n; i++) {
        m += peers[i].eligible;
    }

    if (m == 0) {
        return -1;
    }

    ia = rnd % m;
    ib = (m > 1) ? (ia + 1 + (ngx_http_llm_pick_mix(rnd) % (m - 1))) % m : ia;

    /* map the eligible ranks ia, ib to indexes */

    a = -1;
    b = -1;

    for (i = 0, m = 0; i < n; i++) {
        if (!peers[i].eligible) {
            continue;
        }

        if (m == ia) {
            a = (int) i;
        }

        if (m == ib) {
            b = (int) i;
        }

        m++;
    }

    ca = ngx_http_llm_pick_p2c_cost(&peers[a], now, decay);
    cb = ngx_http_llm_pick_p2c_cost(&peers[b], now, decay);

    if (ca != cb) {
        return ca < cb ? a : b;
    }

    return ngx_http_llm_pick_cmp_tokens(&peers[b], &peers[a]) < 0 ? b : a;
}


size_t
ngx_http_llm_pick_ring_size(const uint32_t *weights, size_t npeers)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < npeers; i++) {
        n += (size_t) (weights[i] ? weights[i] : 1) * NGX_HTTP_LLM_PICK_VNODES;
    }

    return n;
}


void
ngx_http_llm_pick_ring_build(ngx_http_llm_pick_ring_t *ring,
    const char *const *names, const size_t *lens, const uint32_t *weights,
    size_t npeers, uint64_t seed)
{
    size_t    i, v, k, nv;
    uint64_t  base;

    k = 0;

    for (i = 0; i < npeers; i++) {
        base = ngx_http_llm_pick_hash(names[i], lens[i], seed);
        nv = (size_t) (weights[i] ? weights[i] : 1) * NGX_HTTP_LLM_PICK_VNODES;

        for (v = 0; v < nv; v++) {
            ring->points[k] = ngx_http_llm_pick_mix(base ^ (v * 0x9e37ULL));
            ring->owners[k] = (uint32_t) i;
            k++;
        }
    }

    ring->n = k;

    ngx_http_llm_pick_ring_sort(ring->points, ring->owners, k);

    /* the lookup narrows to one bucket, ~n / 256 points */

    for (k = 0, v = 0; v <= NGX_HTTP_LLM_PICK_BUCKETS; v++) {
        while (k < ring->n && (ring->points[k] >> 56) < v) {
            k++;
        }

        ring->bucket[v] = (uint32_t) k;
    }
}


/* heap sort of points with their owners: no allocation, n log n */

static void
ngx_http_llm_pick_ring_sift(uint64_t *points, uint32_t *owners, size_t i,
    size_t n)
{
    size_t    c;
    uint64_t  tp;
    uint32_t  to;

    for ( ;; ) {
        c = 2 * i + 1;

        if (c >= n) {
            return;
        }

        if (c + 1 < n && points[c + 1] > points[c]) {
            c++;
        }

        if (points[i] >= points[c]) {
            return;
        }

        tp = points[i]; points[i] = points[c]; points[c] = tp;
        to = owners[i]; owners[i] = owners[c]; owners[c] = to;
        i = c;
    }
}


static void
ngx_http_llm_pick_ring_sort(uint64_t *points, uint32_t *owners, size_t n)
{
    size_t    i;
    uint64_t  tp;
    uint32_t  to;

    if (n < 2) {
        return;
    }

    for (i = n / 2; i-- > 0; /* void */) {
        ngx_http_llm_pick_ring_sift(points, owners, i, n);
    }

    for (i = n - 1; i > 0; i--) {
        tp = points[0]; points[0] = points[i]; points[i] = tp;
        to = owners[0]; owners[0] = owners[i]; owners[i] = to;
        ngx_http_llm_pick_ring_sift(points, owners, 0, i);
    }
}


/* total in flight + 1 and total weight of the eligible peers */

static void
ngx_http_llm_pick_totals(const ngx_http_llm_pick_peer_t *peers, size_t n,
    uint64_t *load, uint64_t *weight)
{
    size_t  j;

    *load = 1;          /* the request being placed */
    *weight = 0;

    for (j = 0; j < n; j++) {
        if (peers[j].eligible) {
            *load += peers[j].inflight;
            *weight += peers[j].weight;
        }
    }
}


static uint32_t
ngx_http_llm_pick_cap(uint64_t load, uint64_t weight, uint32_t w,
    double epsilon, uint32_t slack)
{
    double  cap;

    if (weight == 0) {
        return 0;
    }

    cap = (1.0 + epsilon) * (double) load * w / (double) weight;

    /* ceil without libm */

    return (uint32_t) cap + ((double) (uint32_t) cap < cap) + slack;
}


uint32_t
ngx_http_llm_pick_bound(const ngx_http_llm_pick_peer_t *peers, size_t n,
    size_t i, double epsilon, uint32_t slack)
{
    uint64_t  load, weight;

    ngx_http_llm_pick_totals(peers, n, &load, &weight);

    return ngx_http_llm_pick_cap(load, weight, peers[i].weight, epsilon,
                                 slack);
}


/* the first point >= hash, wrapping: within its bucket or the next one */

static size_t
ngx_http_llm_pick_ring_lookup(const ngx_http_llm_pick_ring_t *ring,
    uint64_t hash)
{
    size_t  lo, hi, mid;

    lo = ring->bucket[hash >> 56];
    hi = ring->bucket[(hash >> 56) + 1];

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (ring->points[mid] < hash) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return lo;
}


int
ngx_http_llm_pick_ring_spills(const ngx_http_llm_pick_ring_t *ring,
    const ngx_http_llm_pick_peer_t *peers, size_t n, uint64_t hash,
    double epsilon, uint32_t slack, const ngx_http_llm_pick_recent_t *recent,
    uint32_t *home)
{
    size_t    lo, k, step, r;
    uint32_t  o, owner;
    uint64_t  load, weight;

    if (ring->n == 0) {
        return 0;
    }

    ngx_http_llm_pick_totals(peers, n, &load, &weight);

    lo = ngx_http_llm_pick_ring_lookup(ring, hash);

    /* the owner: the first eligible peer clockwise (none: n) */

    owner = (uint32_t) n;

    for (step = 0; step < ring->n; step++) {
        k = lo + step;
        k = (k >= ring->n) ? k - ring->n : k;
        o = ring->owners[k];

        if (o < n && peers[o].eligible) {
            owner = o;
            break;
        }
    }

    if (owner == n) {
        return 0;
    }

    *home = owner;

    if (peers[owner].inflight + 1
        <= ngx_http_llm_pick_cap(load, weight, peers[owner].weight, epsilon,
                                 slack))
    {
        return 0;
    }

    /* the owner is full: a holder from the history with room will do */

    if (recent && recent->key == hash) {
        for (r = 0; r < NGX_HTTP_LLM_PICK_RECENT; r++) {
            o = recent->peer[r];

            if (o == 0 || o > n || o - 1 == owner || !peers[o - 1].eligible) {
                continue;
            }

            o--;

            if (peers[o].inflight + 1
                <= ngx_http_llm_pick_cap(load, weight, peers[o].weight,
                                         epsilon, slack))
            {
                return 0;
            }
        }
    }

    return 1;
}


int
ngx_http_llm_pick_ring(const ngx_http_llm_pick_ring_t *ring,
    const ngx_http_llm_pick_peer_t *peers, size_t n, uint64_t hash,
    double epsilon, uint32_t slack, const ngx_http_llm_pick_recent_t *recent,
    const uint32_t *foot)
{
    int       best, ties;
    size_t    lo, k, step, r, j;
    int64_t   owner;
    uint32_t  o, least;
    uint64_t  load, weight;

    if (ring->n == 0) {
        return -1;
    }

    ngx_http_llm_pick_totals(peers, n, &load, &weight);

    lo = ngx_http_llm_pick_ring_lookup(ring, hash);

    owner = -1;

    for (step = 0; step < ring->n; step++) {
        k = lo + step;
        k = (k >= ring->n) ? k - ring->n : k;
        o = ring->owners[k];

        if (o >= n || !peers[o].eligible) {
            continue;
        }

        if (peers[o].inflight + 1
            <= ngx_http_llm_pick_cap(load, weight, peers[o].weight, epsilon,
                                     slack))
        {
            return (int) o;
        }

        if (owner >= 0) {
            continue;
        }

        owner = o;

        if (recent == NULL || recent->key != hash) {
            break;
        }

        /*
         * the owner is full: a peer that served this prefix lately still
         * caches it, a peer further on the ring likely does not
         */

        for (r = 0; r < NGX_HTTP_LLM_PICK_RECENT; r++) {
            o = recent->peer[r];

            if (o == 0 || o > n || o - 1 == (uint32_t) owner
                || !peers[o - 1].eligible)
            {
                continue;
            }

            o--;

            if (peers[o].inflight + 1
                <= ngx_http_llm_pick_cap(load, weight, peers[o].weight,
                                         epsilon, slack))
            {
                return (int) o;
            }
        }

        break;
    }

    if (owner < 0) {
        return -1;
    }

    /*
     * no holder has room: the peer within its bound whose cache holds the
     * fewest prefixes of the history, where the spill evicts least;
     * without footprints, or on a tie, the next such peer clockwise
     */

    best = -1;
    ties = 0;
    least = 0;

    if (foot) {
        for (j = 0; j < n; j++) {
            if (!peers[j].eligible
                || peers[j].inflight + 1
                   > ngx_http_llm_pick_cap(load, weight, peers[j].weight,
                                           epsilon, slack))
            {
                continue;
            }

            if (best < 0 || foot[j] < least) {
                best = (int) j;
                least = foot[j];
                ties = 1;

            } else if (foot[j] == least) {
                ties++;
            }
        }

        if (ties <= 1) {
            return best;
        }
    }

    for (step = 1; step < ring->n; step++) {
        k = lo + step;
        k = (k >= ring->n) ? k - ring->n : k;
        o = ring->owners[k];

        if (o >= n || !peers[o].eligible || (foot && foot[o] != least)) {
            continue;
        }

        if (peers[o].inflight + 1
            <= ngx_http_llm_pick_cap(load, weight, peers[o].weight, epsilon,
                                     slack))
        {
            return (int) o;
        }
    }

    return -1;
}


ngx_http_llm_pick_recent_t *
ngx_http_llm_pick_recent_slot(ngx_http_llm_pick_recent_t *table, size_t n,
    uint64_t key)
{
    ngx_http_llm_pick_recent_t  *a, *b;

    a = &table[key % n];
    b = &table[ngx_http_llm_pick_mix(key) % n];

    if (a->key == key) {
        return a;
    }

    if (b->key == key) {
        return b;
    }

    if (a->peer[0] == 0) {
        return a;
    }

    if (b->peer[0] == 0) {
        return b;
    }

    return ((int32_t) (a->stamp - b->stamp) <= 0) ? a : b;
}


void
ngx_http_llm_pick_recent_note(ngx_http_llm_pick_recent_t *recent,
    uint64_t key, uint32_t peer, uint32_t *foot, size_t nfoot)
{
    size_t    r;
    uint32_t  front;

    front = recent->peer[0];

    if (recent->key != key) {
        memset(recent, 0, sizeof(ngx_http_llm_pick_recent_t));
        recent->key = key;
    }

    peer++;

    /* move to front: shift those before it (or all) one place down */

    for (r = 0; r < NGX_HTTP_LLM_PICK_RECENT - 1; r++) {
        if (recent->peer[r] == peer) {
            break;
        }
    }

    for ( /* void */ ; r > 0; r--) {
        recent->peer[r] = recent->peer[r - 1];
    }

    recent->peer[0] = peer;

    /* the entry now counts for its new front server, no longer the old */

    if (foot == NULL || front == peer) {
        return;
    }

    if (front && front <= nfoot && foot[front - 1]) {
        foot[front - 1]--;
    }

    if (peer <= nfoot) {
        foot[peer - 1]++;
    }
}


uint32_t
ngx_http_llm_pick_reuse(uint32_t share, int warm)
{
    uint32_t  up;

    /* 1/2^SHIFT of the way to 1.0 or to 0, rounded up: both ends reached */

    up = (1u << NGX_HTTP_LLM_PICK_REUSE_SHIFT) - 1;

    if (warm) {
        return share + ((NGX_HTTP_LLM_PICK_REUSE_ONE - share + up)
                        >> NGX_HTTP_LLM_PICK_REUSE_SHIFT);
    }

    return share - ((share + up) >> NGX_HTTP_LLM_PICK_REUSE_SHIFT);
}


void
ngx_http_llm_pick_foot_count(const ngx_http_llm_pick_recent_t *recent,
    size_t nrecent, uint32_t *foot, size_t nfoot)
{
    size_t  i;

    memset(foot, 0, nfoot * sizeof(uint32_t));

    for (i = 0; i < nrecent; i++) {
        if (recent[i].peer[0] && recent[i].peer[0] <= nfoot) {
            foot[recent[i].peer[0] - 1]++;
        }
    }
}


int64_t
ngx_http_llm_pick_duration(const unsigned char *p, size_t len)
{
    size_t          i;
    double          v, frac, scale, total;
    unsigned        digits, units;
    const unsigned char  *end;

    end = p + len;
    total = 0;
    units = 0;

    if (len == 0) {
        return -1;
    }

    while (p < end) {
        v = 0;
        frac = 0;
        scale = 1;
        digits = 0;

        while (p < end && *p >= '0' && *p <= '9') {
            v = v * 10 + (*p++ - '0');
            digits++;
        }

        if (p < end && *p == '.') {
            p++;

            while (p < end && *p >= '0' && *p <= '9') {
                scale /= 10;
                frac += (*p++ - '0') * scale;
                digits++;
            }
        }

        if (digits == 0) {
            return -1;
        }

        v += frac;

        i = (size_t) (end - p);

        if (i == 0) {
            if (units) {
                return -1;      /* "1m30": a unit is missing */
            }

            total += v * 1000;  /* a bare number: seconds */
            break;
        }

        if (i >= 2 && p[0] == 'm' && p[1] == 's') {
            total += v;
            p += 2;

        } else if (i >= 2 && (p[0] == 'u' || p[0] == 'n') && p[1] == 's') {
            total += v / (p[0] == 'u' ? 1000 : 1000000);
            p += 2;

        } else if (*p == 'h') {
            total += v * 3600000;
            p++;

        } else if (*p == 'm') {
            total += v * 60000;
            p++;

        } else if (*p == 's') {
            total += v * 1000;
            p++;

        } else {
            return -1;
        }

        units++;
    }

    if (total > 1e15) {
        return -1;
    }

    /* round up: never come back before the provider said */

    return (int64_t) total + ((double) (int64_t) total < total);
}


static int
ngx_http_llm_pick_num(const unsigned char **pp, const unsigned char *end,
    size_t n)
{
    int                   v;
    size_t                i;
    const unsigned char  *p = *pp;

    if ((size_t) (end - p) < n) {
        return -1;
    }

    v = 0;

    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        v = v * 10 + (p[i] - '0');
    }

    *pp = p + n;

    return v;
}


int64_t
ngx_http_llm_pick_rfc3339(const unsigned char *p, size_t len)
{
    int                   y, mo, d, h, mi, s, oh, om, sign;
    int64_t               days, ms;
    double                scale;
    const unsigned char  *end = p + len;

    y = ngx_http_llm_pick_num(&p, end, 4);
    if (y < 1970 || p >= end || *p++ != '-') {
        return -1;
    }

    mo = ngx_http_llm_pick_num(&p, end, 2);
    if (mo < 1 || mo > 12 || p >= end || *p++ != '-') {
        return -1;
    }

    d = ngx_http_llm_pick_num(&p, end, 2);
    if (d < 1 || d > 31 || p >= end || (*p != 'T' && *p != 't' && *p != ' '))
    {
        return -1;
    }

    p++;

    h = ngx_http_llm_pick_num(&p, end, 2);
    if (h < 0 || h > 23 || p >= end || *p++ != ':') {
        return -1;
    }

    mi = ngx_http_llm_pick_num(&p, end, 2);
    if (mi < 0 || mi > 59 || p >= end || *p++ != ':') {
        return -1;
    }

    s = ngx_http_llm_pick_num(&p, end, 2);
    if (s < 0 || s > 60) {
        return -1;
    }

    ms = 0;

    if (p < end && *p == '.') {
        p++;
        scale = 100;

        if (p >= end || *p < '0' || *p > '9') {
            return -1;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            ms += (int64_t) ((*p++ - '0') * scale);
            scale /= 10;
        }
    }

    if (p >= end) {
        return -1;
    }

    oh = 0;
    om = 0;

    if (*p == 'Z' || *p == 'z') {
        p++;

    } else if (*p == '+' || *p == '-') {
        sign = (*p++ == '-') ? -1 : 1;

        oh = ngx_http_llm_pick_num(&p, end, 2);
        if (oh < 0 || oh > 23 || p >= end || *p++ != ':') {
            return -1;
        }

        om = ngx_http_llm_pick_num(&p, end, 2);
        if (om < 0 || om > 59) {
            return -1;
        }

        oh *= sign;
        om *= sign;

    } else {
        return -1;
    }

    if (p != end) {
        return -1;
    }

    /* days from the civil date (proleptic Gregorian), 1970-01-01 = 0 */

    y -= (mo <= 2);
    days = (int64_t) 365 * y + y / 4 - y / 100 + y / 400
           + (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1 - 719468;

    return ((((days * 24 + h - oh) * 60 + mi - om) * 60) + s) * 1000 + ms;
}
