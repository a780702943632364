
/*
 * Copyright (C) ngx_llm authors
 *
 * Balancer arithmetic: least tokens, peak EWMA, power of two choices, the
 * consistent hash ring with bounded load, rate limit header formats.
 */


#include <stdio.h>

#include "llm_test.h"
#include "ngx_http_llm_pick.h"


#define NPEERS  4


static const char *const names[NPEERS] = {
    "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.4:8000"
};


static void
peers_init(ngx_http_llm_pick_peer_t *p, size_t n)
{
    size_t  i;

    memset(p, 0, n * sizeof(*p));

    for (i = 0; i < n; i++) {
        p[i].weight = 1;
        p[i].eligible = 1;
    }
}


static void
test_least(void **state)
{
    ngx_http_llm_pick_peer_t  p[NPEERS];

    peers_init(p, NPEERS);

    /* idle: the fewest picks, then the lowest index */
    assert_int_equal(ngx_http_llm_pick_least(p, NPEERS), 0);
    p[0].picks = 1;
    assert_int_equal(ngx_http_llm_pick_least(p, NPEERS), 1);

    /* tokens per weight decide first */
    p[0].outstanding = 1000;
    p[1].outstanding = 3000;
    p[1].weight = 4;                /* 750 per weight */
    p[2].outstanding = 900;
    p[3].outstanding = 900;
    p[3].inflight = 1;
    assert_int_equal(ngx_http_llm_pick_least(p, NPEERS), 1);

    p[1].eligible = 0;
    assert_int_equal(ngx_http_llm_pick_least(p, NPEERS), 2);

    /* equal tokens: fewer in flight */
    p[2].inflight = 2;
    assert_int_equal(ngx_http_llm_pick_least(p, NPEERS), 3);

    p[0].eligible = p[2].eligible = p[3].eligible = 0;
    assert_int_equal(ngx_http_llm_pick_least(p, NPEERS), -1);
}


static void
test_ewma(void **state)
{
    double  e;

    /* first sample and peaks replace the average */
    e = ngx_http_llm_pick_ewma_observe(0, 0, 1000, 200, 10000);
    assert_true(e == 200);
    e = ngx_http_llm_pick_ewma_observe(e, 1000, 1000, 500, 10000);
    assert_true(e == 500);

    /* a lower sample after one decay period: half way */
    e = ngx_http_llm_pick_ewma_observe(500, 1000, 11000, 100, 10000);
    assert_true(e > 299.9 && e < 300.1);

    /* a lower sample at once barely moves it */
    e = ngx_http_llm_pick_ewma_observe(500, 1000, 1000, 100, 10000);
    assert_true(e == 500);

    /* idle: decays towards 0 */
    e = ngx_http_llm_pick_ewma_current(400, 1000, 11000, 10000);
    assert_true(e > 199.9 && e < 200.1);
    e = ngx_http_llm_pick_ewma_current(400, 1000, 1000, 10000);
    assert_true(e == 400);
}


static void
test_p2c(void **state)
{
    int                       i, k, count[NPEERS];
    ngx_http_llm_pick_peer_t  p[NPEERS];

    peers_init(p, NPEERS);

    for (i = 0; i < NPEERS; i++) {
        p[i].ewma = 100;
        p[i].ewma_at = 1000;
    }

    /* peer 2 is slow: it must lose every draw it is part of */
    p[2].ewma = 5000;

    memset(count, 0, sizeof(count));

    for (i = 0; i < 3000; i++) {
        k = ngx_http_llm_pick_p2c(p, NPEERS, ngx_http_llm_pick_mix(i), 1000,
                                  10000);
        assert_true(k >= 0 && k < NPEERS);
        count[k]++;
    }

    assert_int_equal(count[2], 0);
    assert_true(count[0] > 700 && count[1] > 700 && count[3] > 700);

    /* a peer never measured is tried */
    p[3].ewma_at = 0;
    p[3].inflight = 3;
    p[0].eligible = p[1].eligible = 0;
    assert_int_equal(ngx_http_llm_pick_p2c(p, NPEERS, 12345, 1000, 10000), 3);

    /* in flight multiplies the latency */
    p[3].ewma_at = 1000;
    p[3].ewma = 1000;
    p[3].inflight = 9;              /* 1001 x 10 > 5001 x 1 */
    assert_int_equal(ngx_http_llm_pick_p2c(p, NPEERS, 7, 1000, 10000), 2);

    /* one eligible peer; none */
    p[3].eligible = 0;
    assert_int_equal(ngx_http_llm_pick_p2c(p, NPEERS, 7, 1000, 10000), 2);
    p[2].eligible = 0;
    assert_int_equal(ngx_http_llm_pick_p2c(p, NPEERS, 7, 1000, 10000), -1);
}


static void
ring_make(ngx_http_llm_pick_ring_t *ring, const char *const *nm,
    const uint32_t *w, size_t n)
{
    size_t  i, lens[NPEERS], size;

    for (i = 0; i < n; i++) {
        lens[i] = strlen(nm[i]);
    }

    size = ngx_http_llm_pick_ring_size(w, n);
    ring->points = malloc(size * sizeof(uint64_t));
    ring->owners = malloc(size * sizeof(uint32_t));
    assert_non_null(ring->points);
    assert_non_null(ring->owners);

    ngx_http_llm_pick_ring_build(ring, nm, lens, w, n, 0);

    assert_int_equal(ring->n, size);

    for (i = 1; i < size; i++) {
        assert_true(ring->points[i - 1] <= ring->points[i]);
    }
}


static int
ring_at(ngx_http_llm_pick_ring_t *ring, ngx_http_llm_pick_peer_t *p,
    uint64_t h, uint32_t slack, ngx_http_llm_pick_recent_t *rc)
{
    return ngx_http_llm_pick_ring(ring, p, NPEERS, h, 0.25, slack, rc, NULL);
}


static int
ring_foot(ngx_http_llm_pick_ring_t *ring, ngx_http_llm_pick_peer_t *p,
    uint64_t h, ngx_http_llm_pick_recent_t *rc, const uint32_t *foot)
{
    return ngx_http_llm_pick_ring(ring, p, NPEERS, h, 0.25, 0, rc, foot);
}


static void
test_ring_spread_and_stability(void **state)
{
    int                       k, owner[1000], count[NPEERS];
    size_t                    i;
    uint64_t                  h;
    uint32_t                  w[NPEERS] = { 1, 1, 1, 1 };
    const char               *rev[NPEERS];
    ngx_http_llm_pick_ring_t  ring, ring2;
    ngx_http_llm_pick_peer_t  p[NPEERS];

    peers_init(p, NPEERS);
    ring_make(&ring, names, w, NPEERS);

    memset(count, 0, sizeof(count));

    for (i = 0; i < 1000; i++) {
        h = ngx_http_llm_pick_hash(&i, sizeof(i), 1);
        owner[i] = ring_at(&ring, p, h, 0, NULL);
        assert_true(owner[i] >= 0);
        count[owner[i]]++;

        /* the same key, the same peer */
        assert_int_equal(ring_at(&ring, p, h, 0, NULL),
                         owner[i]);
    }

    for (i = 0; i < NPEERS; i++) {
        assert_true(count[i] > 150 && count[i] < 350);
    }

    /* the ring depends on names, not on their order */
    for (i = 0; i < NPEERS; i++) {
        rev[i] = names[NPEERS - 1 - i];
    }

    ring_make(&ring2, rev, w, NPEERS);

    for (i = 0; i < 1000; i++) {
        h = ngx_http_llm_pick_hash(&i, sizeof(i), 1);
        k = ring_at(&ring2, p, h, 0, NULL);
        assert_string_equal(rev[k], names[owner[i]]);
    }

    /* peer 1 leaves: only its keys move */
    p[1].eligible = 0;

    for (i = 0; i < 1000; i++) {
        h = ngx_http_llm_pick_hash(&i, sizeof(i), 1);
        k = ring_at(&ring, p, h, 0, NULL);
        assert_int_not_equal(k, 1);

        if (owner[i] != 1) {
            assert_int_equal(k, owner[i]);
        }
    }

    free(ring.points); free(ring.owners);
    free(ring2.points); free(ring2.owners);
}


/* the bucketed lookup finds what a linear scan finds */

static void
test_ring_lookup(void **state)
{
    int                       want;
    size_t                    i, k;
    uint64_t                  h;
    uint32_t                  w[NPEERS] = { 1, 2, 1, 3 };
    ngx_http_llm_pick_ring_t  ring;
    ngx_http_llm_pick_peer_t  p[NPEERS];

    peers_init(p, NPEERS);
    ring_make(&ring, names, w, NPEERS);

    assert_int_equal(ring.bucket[0], 0);
    assert_int_equal(ring.bucket[NGX_HTTP_LLM_PICK_BUCKETS], ring.n);

    for (i = 0; i < 20000; i++) {
        switch (i) {
        case 0:
            h = 0;
            break;
        case 1:
            h = UINT64_MAX;
            break;
        case 2:
            h = ring.points[0];
            break;
        case 3:
            h = ring.points[ring.n - 1];
            break;
        case 4:
            h = ring.points[ring.n - 1] + 1;
            break;
        default:
            h = (i & 1) ? ring.points[i % ring.n] - (i & 2)
                        : ngx_http_llm_pick_mix(i);
        }

        for (k = 0; k < ring.n && ring.points[k] < h; k++) { /* void */ }

        want = (int) ring.owners[k == ring.n ? 0 : k];

        assert_int_equal(ring_at(&ring, p, h, 1000, NULL), want);
    }

    free(ring.points); free(ring.owners);
}


static void
test_ring_bounded_load(void **state)
{
    int                       k, first;
    size_t                    i;
    uint32_t                  w[NPEERS] = { 1, 1, 1, 1 }, max;
    ngx_http_llm_pick_ring_t  ring;
    ngx_http_llm_pick_peer_t  p[NPEERS];

    peers_init(p, NPEERS);
    ring_make(&ring, names, w, NPEERS);

    /* one hot key, 100 concurrent requests: the bound spreads them */
    first = ring_at(&ring, p, 42, 0, NULL);

    for (i = 0; i < 100; i++) {
        k = ring_at(&ring, p, 42, 0, NULL);
        assert_true(k >= 0);
        p[k].inflight++;
    }

    /* bound: ceil(1.25 x 100 / 4) = 32 */
    max = 0;

    for (i = 0; i < NPEERS; i++) {
        max = p[i].inflight > max ? p[i].inflight : max;
    }

    assert_true(max <= 32);
    assert_true(p[first].inflight >= 25);

    /* the capacity formula, weighted */
    peers_init(p, NPEERS);
    p[0].weight = 2;
    p[0].inflight = 3;
    p[1].inflight = 1;
    /* load 5, weight 5: peer 0 cap ceil(1.25 x 5 x 2 / 5) = 3 */
    assert_int_equal(ngx_http_llm_pick_bound(p, NPEERS, 0, 0.25, 0), 3);
    assert_int_equal(ngx_http_llm_pick_bound(p, NPEERS, 1, 0.25, 0), 2);

    /* slack: requests above the multiplicative bound */
    assert_int_equal(ngx_http_llm_pick_bound(p, NPEERS, 0, 0.25, 1), 4);
    assert_int_equal(ngx_http_llm_pick_bound(p, NPEERS, 1, 0.25, 2), 4);

    /*
     * low load: 4 peers, the owner holds 1, load 2: cap ceil(0.625) = 1
     * spills the next request; slack=1 keeps it home
     */
    peers_init(p, NPEERS);
    first = ring_at(&ring, p, 42, 0, NULL);
    p[first].inflight = 1;
    assert_int_not_equal(ring_at(&ring, p, 42, 0, NULL), first);
    assert_int_equal(ring_at(&ring, p, 42, 1, NULL), first);
    p[first].inflight = 2;
    assert_int_not_equal(ring_at(&ring, p, 42, 1, NULL), first);

    free(ring.points); free(ring.owners);
}


static void
test_ring_recent(void **state)
{
    int                         o, s, x, y, k;
    size_t                      i;
    uint32_t                    w[NPEERS] = { 1, 1, 1, 1 };
    ngx_http_llm_pick_ring_t    ring;
    ngx_http_llm_pick_peer_t    p[NPEERS];
    ngx_http_llm_pick_recent_t  rc;

    peers_init(p, NPEERS);
    ring_make(&ring, names, w, NPEERS);

    /* the history: move to front, index + 1, a new key starts over */
    memset(&rc, 0, sizeof(rc));
    ngx_http_llm_pick_recent_note(&rc, 42, 1, NULL, 0);
    assert_true(rc.key == 42 && rc.peer[0] == 2 && rc.peer[1] == 0);
    ngx_http_llm_pick_recent_note(&rc, 42, 2, NULL, 0);
    assert_true(rc.peer[0] == 3 && rc.peer[1] == 2 && rc.peer[2] == 0);
    ngx_http_llm_pick_recent_note(&rc, 42, 1, NULL, 0);
    assert_true(rc.peer[0] == 2 && rc.peer[1] == 3 && rc.peer[2] == 0);
    ngx_http_llm_pick_recent_note(&rc, 42, 3, NULL, 0);
    ngx_http_llm_pick_recent_note(&rc, 42, 0, NULL, 0);
    assert_true(rc.peer[0] == 1 && rc.peer[1] == 4 && rc.peer[2] == 2);
    ngx_http_llm_pick_recent_note(&rc, 42, 0, NULL, 0);
    assert_true(rc.peer[0] == 1 && rc.peer[1] == 4 && rc.peer[2] == 2);
    ngx_http_llm_pick_recent_note(&rc, 43, 2, NULL, 0);
    assert_true(rc.key == 43 && rc.peer[0] == 3 && rc.peer[1] == 0
                && rc.peer[2] == 0);

    /* the owner within its bound wins over any history */
    o = ring_at(&ring, p, 42, 0, NULL);
    memset(&rc, 0, sizeof(rc));
    ngx_http_llm_pick_recent_note(&rc, 42, (o + 1) % NPEERS, NULL, 0);
    assert_int_equal(ring_at(&ring, p, 42, 0, &rc),
                     o);

    /* owner full (load 3, cap ceil(1.25 x 3 / 4) = 1): the ring's spill */
    p[o].inflight = 2;
    s = ring_at(&ring, p, 42, 0, NULL);
    assert_true(s >= 0 && s != o);

    /* ... unless another peer served the prefix last: it caches it */
    for (x = 0; x == o || x == s; x++) { /* void */ }

    memset(&rc, 0, sizeof(rc));
    ngx_http_llm_pick_recent_note(&rc, 42, x, NULL, 0);
    assert_int_equal(ring_at(&ring, p, 42, 0, &rc),
                     x);

    /* the history of another key (a collision in the table) is ignored */
    rc.key = 41;
    assert_int_equal(ring_at(&ring, p, 42, 0, &rc),
                     s);

    /* the owner itself, unknown and ineligible peers in it are skipped */
    memset(&rc, 0, sizeof(rc));
    rc.key = 42;
    rc.peer[0] = o + 1;
    rc.peer[1] = NPEERS + 7;
    rc.peer[2] = x + 1;
    assert_int_equal(ring_at(&ring, p, 42, 0, &rc),
                     x);
    p[x].eligible = 0;
    k = ring_at(&ring, p, 42, 0, &rc);
    assert_true(k >= 0 && k != x && k != o);
    assert_int_equal(k, ring_at(&ring, p, 42, 0, NULL));
    p[x].eligible = 1;

    /*
     * a recent peer over its own bound is passed over for the next one:
     * load 8, cap ceil(1.25 x 8 / 4) = 3; x holds 3, y nothing
     */
    p[o].inflight = 4;
    p[x].inflight = 3;

    for (y = 0; y == o || y == x; y++) { /* void */ }

    memset(&rc, 0, sizeof(rc));
    ngx_http_llm_pick_recent_note(&rc, 42, y, NULL, 0);
    ngx_http_llm_pick_recent_note(&rc, 42, x, NULL, 0);
    assert_int_equal(ring_at(&ring, p, 42, 0, &rc),
                     y);

    /* no recent peer within its bound: the ring's order */
    memset(&rc, 0, sizeof(rc));
    ngx_http_llm_pick_recent_note(&rc, 42, x, NULL, 0);
    assert_int_equal(ring_at(&ring, p, 42, 0, &rc),
                     ring_at(&ring, p, 42, 0, NULL));

    /* the bound always admits the least loaded; no eligible peer: none */
    for (i = 0; i < NPEERS; i++) {
        p[i].eligible = 0;
    }

    assert_int_equal(ring_at(&ring, p, 42, 0, &rc),
                     -1);

    free(ring.points); free(ring.owners);
}


static void
test_ring_foot(void **state)
{
    int                         o, s, k, x, y;
    size_t                      i;
    uint32_t                    w[NPEERS] = { 1, 1, 1, 1 };
    uint32_t                    foot[NPEERS];
    ngx_http_llm_pick_ring_t    ring;
    ngx_http_llm_pick_peer_t    p[NPEERS];
    ngx_http_llm_pick_recent_t  rc, hist[3];

    peers_init(p, NPEERS);
    ring_make(&ring, names, w, NPEERS);

    /* an entry counts for its front server only; a replaced key moves */
    memset(foot, 0, sizeof(foot));
    memset(&rc, 0, sizeof(rc));
    ngx_http_llm_pick_recent_note(&rc, 42, 1, foot, NPEERS);
    assert_true(foot[0] == 0 && foot[1] == 1 && foot[2] == 0);
    ngx_http_llm_pick_recent_note(&rc, 42, 1, foot, NPEERS);
    assert_true(foot[1] == 1);
    ngx_http_llm_pick_recent_note(&rc, 42, 2, foot, NPEERS);
    assert_true(foot[1] == 0 && foot[2] == 1);
    ngx_http_llm_pick_recent_note(&rc, 43, 3, foot, NPEERS);
    assert_true(foot[2] == 0 && foot[3] == 1);
    ngx_http_llm_pick_recent_note(&rc, 44, 3, foot, NPEERS);
    assert_true(foot[0] + foot[1] + foot[2] == 0 && foot[3] == 1);

    /* a peer beyond nfoot (a reload removed it) is not counted */
    ngx_http_llm_pick_recent_note(&rc, 44, 3, foot, 2);
    assert_true(foot[3] == 1);
    ngx_http_llm_pick_recent_note(&rc, 44, 0, foot, 2);
    assert_true(foot[0] == 1 && foot[3] == 1);

    /* the recount from a history: fronts only, unknown peers left out */
    memset(hist, 0, sizeof(hist));
    hist[0].key = 1; hist[0].peer[0] = 2; hist[0].peer[1] = 1;
    hist[1].key = 2; hist[1].peer[0] = 2;
    hist[2].key = 3; hist[2].peer[0] = NPEERS + 3;
    ngx_http_llm_pick_foot_count(hist, 3, foot, NPEERS);
    assert_true(foot[0] == 0 && foot[1] == 2 && foot[2] == 0
                && foot[3] == 0);

    /* the owner within its bound: footprints play no part (cold keys) */
    o = ring_at(&ring, p, 42, 0, NULL);
    memset(foot, 0, sizeof(foot));
    foot[o] = 100;
    assert_int_equal(ring_foot(&ring, p, 42, NULL, foot), o);

    /*
     * owner full (load 3, cap 1), no holder with room: the peer with the
     * smallest footprint, not the ring's next one
     */
    p[o].inflight = 2;
    s = ring_at(&ring, p, 42, 0, NULL);
    assert_true(s >= 0 && s != o);

    for (x = 0; x == o || x == s; x++) { /* void */ }

    for (i = 0; i < NPEERS; i++) {
        foot[i] = 10;
    }

    foot[x] = 3;
    assert_int_equal(ring_foot(&ring, p, 42, NULL, foot), x);

    /* a holder with room still comes first */
    for (y = 0; y == o || y == s || y == x; y++) { /* void */ }

    memset(&rc, 0, sizeof(rc));
    ngx_http_llm_pick_recent_note(&rc, 42, y, NULL, 0);
    assert_int_equal(ring_foot(&ring, p, 42, &rc, foot), y);

    /* the smallest footprint over its own bound is passed over */
    p[o].inflight = 4;
    p[x].inflight = 3;      /* load 8, cap 3 */
    foot[y] = 5;
    k = ring_foot(&ring, p, 42, NULL, foot);
    assert_int_equal(k, y);
    p[x].inflight = 0;
    p[o].inflight = 2;

    /* ties: the ring's order, as without footprints */
    for (i = 0; i < NPEERS; i++) {
        foot[i] = 7;
    }

    assert_int_equal(ring_foot(&ring, p, 42, NULL, foot), s);
    foot[s] = 8;
    k = ring_foot(&ring, p, 42, NULL, foot);
    assert_true(k != s && k != o && k >= 0);

    /* no eligible peer: none */
    for (i = 0; i < NPEERS; i++) {
        p[i].eligible = 0;
    }

    assert_int_equal(ring_foot(&ring, p, 42, NULL, foot), -1);

    free(ring.points); free(ring.owners);
}


static int64_t
dur(const char *s)
{
    return ngx_http_llm_pick_duration((const unsigned char *) s, strlen(s));
}


static int64_t
ts(const char *s)
{
    return ngx_http_llm_pick_rfc3339((const unsigned char *) s, strlen(s));
}


/* wait=: the request would spill exactly when the ring leaves home */

static void
test_ring_spills(void **state)
{
    int                         o, x;
    size_t                      i;
    uint32_t                    w[NPEERS] = { 1, 1, 1, 1 }, home;
    ngx_http_llm_pick_ring_t    ring;
    ngx_http_llm_pick_peer_t    p[NPEERS];
    ngx_http_llm_pick_recent_t  rc;

#define SPILLS(rcp, sl)                                                       \
    ngx_http_llm_pick_ring_spills(&ring, p, NPEERS, 42, 0.25, sl, rcp, &home)

    peers_init(p, NPEERS);
    ring_make(&ring, names, w, NPEERS);

    o = ring_at(&ring, p, 42, 0, NULL);

    /* idle: home */
    assert_int_equal(SPILLS(NULL, 0), 0);

    /* owner full (load 3, cap 1): a spill, unless slack gives room */
    p[o].inflight = 2;
    home = NPEERS;
    assert_int_equal(SPILLS(NULL, 0), 1);
    assert_int_equal(home, o);
    assert_int_not_equal(ring_at(&ring, p, 42, 0, NULL), o);
    assert_int_equal(SPILLS(NULL, 1), 1);
    assert_int_equal(SPILLS(NULL, 2), 0);
    assert_int_equal(ring_at(&ring, p, 42, 2, NULL), o);

    /* a holder of the history with room: no spill, it caches the prefix */
    x = (o + 1) % NPEERS;
    memset(&rc, 0, sizeof(rc));
    ngx_http_llm_pick_recent_note(&rc, 42, x, NULL, 0);
    assert_int_equal(SPILLS(&rc, 0), 0);
    assert_int_equal(ring_at(&ring, p, 42, 0, &rc), x);

    /* the holder full too (load 5, cap 2): a spill */
    p[x].inflight = 2;
    assert_int_equal(SPILLS(&rc, 0), 1);

    /* another key's history does not count */
    p[x].inflight = 0;
    rc.key = 41;
    assert_int_equal(SPILLS(&rc, 0), 1);

    /* a slot freed at home (load 5, cap 2): no spill */
    p[o].inflight = 1;
    p[x].inflight = 3;
    assert_int_equal(SPILLS(NULL, 0), 0);
    assert_int_equal(ring_at(&ring, p, 42, 0, NULL), o);

    /* the owner ineligible: the next peer clockwise is the owner now */
    p[o].inflight = 9;
    p[o].eligible = 0;
    p[x].inflight = 0;
    assert_int_equal(SPILLS(NULL, 0), 0);

    /* ... and the home the request waits for (load 5, cap 3 on 3 peers) */
    x = ring_at(&ring, p, 42, 0, NULL);
    assert_int_not_equal(x, o);
    p[x].inflight = 4;
    home = NPEERS;
    assert_int_equal(SPILLS(NULL, 0), 1);
    assert_int_equal(home, x);

    /* no eligible peer: waiting would not help */
    for (i = 0; i < NPEERS; i++) {
        p[i].eligible = 0;
    }

    assert_int_equal(SPILLS(NULL, 0), 0);

#undef SPILLS

    free(ring.points); free(ring.owners);
}


/* two keys of one entry both keep their history; a third takes the older */

static void
test_recent_slot(void **state)
{
    uint64_t                     k1, k2, k3;
    ngx_http_llm_pick_recent_t   table[8], *e1, *e2, *e3;

    memset(table, 0, sizeof(table));

    /* k1 and k2 share their first entry (the key modulo 8) */
    k1 = 8 * 1 + 3;
    k2 = 8 * 2 + 3;

    e1 = ngx_http_llm_pick_recent_slot(table, 8, k1);
    ngx_http_llm_pick_recent_note(e1, k1, 0, NULL, 0);
    e1->stamp = 1;

    e2 = ngx_http_llm_pick_recent_slot(table, 8, k2);
    assert_ptr_not_equal(e1, e2);
    assert_int_not_equal(e2->key, k2);
    ngx_http_llm_pick_recent_note(e2, k2, 1, NULL, 0);
    e2->stamp = 2;

    /* both found again, each with its server */
    e1 = ngx_http_llm_pick_recent_slot(table, 8, k1);
    e2 = ngx_http_llm_pick_recent_slot(table, 8, k2);
    assert_true(e1->key == k1 && e1->peer[0] == 1);
    assert_true(e2->key == k2 && e2->peer[0] == 2);

    /*
     * a key whose two entries are taken: not found, it gets the one noted
     * longer ago
     */
    for (k3 = 100; ; k3++) {
        e3 = ngx_http_llm_pick_recent_slot(table, 8, k3);

        if ((e3 == e1 || e3 == e2)
            && (&table[k3 % 8] == e1 || &table[k3 % 8] == e2)
            && (&table[ngx_http_llm_pick_mix(k3) % 8] == e1
                || &table[ngx_http_llm_pick_mix(k3) % 8] == e2)
            && &table[k3 % 8] != &table[ngx_http_llm_pick_mix(k3) % 8])
        {
            break;
        }
    }

    assert_int_not_equal(e3->key, k3);
    assert_ptr_equal(e3, e1->stamp < e2->stamp ? e1 : e2);
}


/*
 * the reuse share: an average over about 32 picks that reaches both ends;
 * from 1.0, cold picks take it under a quarter after 44, a mix of one
 * warm in two settles near a half
 */

static void
test_reuse(void **state)
{
    int       i;
    uint32_t  share;

    share = NGX_HTTP_LLM_PICK_REUSE_ONE;

    assert_int_equal(ngx_http_llm_pick_reuse(share, 1),
                     NGX_HTTP_LLM_PICK_REUSE_ONE);
    assert_int_equal(ngx_http_llm_pick_reuse(0, 0), 0);
    assert_int_equal(ngx_http_llm_pick_reuse(1, 0), 0);
    assert_int_equal(ngx_http_llm_pick_reuse(NGX_HTTP_LLM_PICK_REUSE_ONE - 1,
                                             1),
                     NGX_HTTP_LLM_PICK_REUSE_ONE);

    for (i = 1; i <= 44; i++) {
        share = ngx_http_llm_pick_reuse(share, 0);

        if (i == 43) {
            assert_true(share >= NGX_HTTP_LLM_PICK_REUSE_ONE / 4);
        }
    }

    assert_true(share < NGX_HTTP_LLM_PICK_REUSE_ONE / 4);

    for (i = 0; i < 1000; i++) {
        share = ngx_http_llm_pick_reuse(share, i & 1);
    }

    assert_in_range(share, NGX_HTTP_LLM_PICK_REUSE_ONE * 45 / 100,
                    NGX_HTTP_LLM_PICK_REUSE_ONE * 55 / 100);

    /* all cold: it reaches 0, all warm: 1.0 */
    for (i = 0; i < 2000; i++) {
        share = ngx_http_llm_pick_reuse(share, 0);
    }

    assert_int_equal(share, 0);

    for (i = 0; i < 2000; i++) {
        share = ngx_http_llm_pick_reuse(share, 1);
    }

    assert_int_equal(share, NGX_HTTP_LLM_PICK_REUSE_ONE);
}


static void
test_headers(void **state)
{
    assert_int_equal(dur("6m0s"), 360000);
    assert_int_equal(dur("1.5s"), 1500);
    assert_int_equal(dur("20ms"), 20);
    assert_int_equal(dur("1h2m3s"), 3723000);
    assert_int_equal(dur("2"), 2000);
    assert_int_equal(dur("0.5"), 500);
    assert_int_equal(dur("100us"), 1);     /* rounded up */
    assert_int_equal(dur(""), -1);
    assert_int_equal(dur("s"), -1);
    assert_int_equal(dur("1m30"), -1);
    assert_int_equal(dur("5x"), -1);
    assert_int_equal(dur("-1s"), -1);

    assert_int_equal(ts("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(ts("2026-11-22T12:00:30Z"), 1795348830000LL);
    assert_int_equal(ts("2026-11-22T12:00:30.25Z"), 1795348830250LL);
    assert_int_equal(ts("2026-11-22T13:00:30+01:00"), 1795348830000LL);
    assert_int_equal(ts("2024-02-29T00:00:00Z"), 1709164800000LL);
    assert_int_equal(ts("2026-11-22T12:00:30"), -1);
    assert_int_equal(ts("2026-11-22 12:00"), -1);
    assert_int_equal(ts("2026-13-22T12:00:30Z"), -1);
    assert_int_equal(ts("2026-11-22T12:00:30Zx"), -1);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_least),
        cmocka_unit_test(test_ewma),
        cmocka_unit_test(test_p2c),
        cmocka_unit_test(test_ring_spread_and_stability),
        cmocka_unit_test(test_ring_lookup),
        cmocka_unit_test(test_ring_bounded_load),
        cmocka_unit_test(test_ring_recent),
        cmocka_unit_test(test_ring_foot),
        cmocka_unit_test(test_ring_spills),
        cmocka_unit_test(test_recent_slot),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_headers),
    };

    return cmocka_run_group_tests_name("pick", tests, NULL, NULL);
}
