
/*
 * Copyright (C) ngx_llm authors
 *
 * Limiter arithmetic: refill, all-or-nothing reservations, waits, settle
 * and release, debt, oversized requests, clock edges, duration format.
 */


#include <stdio.h>

#include "llm_test.h"
#include "ngx_http_llm_limiter.h"


#define REQ  NGX_HTTP_LLM_LIMITER_REQ
#define TOK  NGX_HTTP_LLM_LIMITER_TOK
#define OUT  NGX_HTTP_LLM_LIMITER_OUT

#define T0   1000000


static void
test_full_then_empty(void **state)
{
    int                     i;
    uint64_t                wait;
    ngx_http_llm_limiter_t  lim;
    uint32_t                rate[3] = { 60, 0, 0 };
    int64_t                 one[3] = { 1, 0, 0 };

    ngx_http_llm_limiter_init(&lim, rate, T0);

    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, REQ), 60);
    assert_int_equal(ngx_http_llm_limiter_reset(&lim, rate, REQ), 0);

    for (i = 0; i < 60; i++) {
        assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, one, T0,
                                                      &wait), -1);
    }

    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, REQ), 0);

    /* 60 per minute: one more in exactly 1000 ms */

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, one, T0,
                                                  &wait), REQ);
    assert_int_equal(wait, 1000);
    assert_int_equal(ngx_http_llm_limiter_reset(&lim, rate, REQ), 60000);

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, one, T0 + 999,
                                                  &wait), REQ);
    assert_int_equal(wait, 1);

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, one, T0 + 1000,
                                                  &wait), -1);
    assert_int_equal(wait, 0);
}


static void
test_steady_rate_exact(void **state)
{
    uint64_t                t, wait, admitted;
    ngx_http_llm_limiter_t  lim;
    uint32_t                rate[3] = { 600, 0, 0 };
    int64_t                 one[3] = { 1, 0, 0 };

    /* 10 attempts per ms for 10 minutes after the first burst */

    ngx_http_llm_limiter_init(&lim, rate, T0);
    lim.level[REQ] = 0;

    admitted = 0;

    for (t = T0; t < T0 + 600000; t++) {
        int  k;

        for (k = 0; k < 10; k++) {
            if (ngx_http_llm_limiter_reserve(&lim, rate, one, t, &wait)
                == -1)
            {
                admitted++;
            }
        }
    }

    /* 600 per minute over 10 minutes, the last one on the boundary */

    assert_true(admitted >= 5999 && admitted <= 6000);
}


static void
test_all_or_nothing(void **state)
{
    uint64_t                wait;
    ngx_http_llm_limiter_t  lim;
    uint32_t                rate[3] = { 100, 1000, 0 };
    int64_t                 need[3] = { 1, 600, 0 };

    ngx_http_llm_limiter_init(&lim, rate, T0);

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need, T0,
                                                  &wait), -1);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, REQ), 99);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, TOK), 400);

    /* tokens refuse: the request is not consumed either */

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need, T0,
                                                  &wait), TOK);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, REQ), 99);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, TOK), 400);

    /* 200 tokens missing at 1000/min: 12 s */

    assert_int_equal(wait, 12000);
}


static void
test_longest_wait_wins(void **state)
{
    uint64_t                wait;
    ngx_http_llm_limiter_t  lim;
    uint32_t                rate[3] = { 60, 6000, 600 };
    int64_t                 need[3] = { 1, 10, 100 };

    ngx_http_llm_limiter_init(&lim, rate, T0);
    lim.level[REQ] = 0;                             /* 1 s to wait */
    lim.level[OUT] = 50 * NGX_HTTP_LLM_LIMITER_SCALE;   /* 5 s to wait */

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need, T0,
                                                  &wait), OUT);
    assert_int_equal(wait, 5000);
}


static void
test_settle_and_release(void **state)
{
    uint64_t                wait;
    ngx_http_llm_limiter_t  lim;
    uint32_t                rate[3] = { 0, 1000, 0 };
    int64_t                 need[3] = { 0, 500, 0 };

    ngx_http_llm_limiter_init(&lim, rate, T0);

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need, T0,
                                                  &wait), -1);

    /* settle: used 120 of the 500 reserved */

    assert_int_equal(ngx_http_llm_limiter_charge(&lim, rate, TOK, 120 - 500),
                     0);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, TOK), 880);

    /* a release never fills beyond the capacity */

    assert_int_equal(ngx_http_llm_limiter_charge(&lim, rate, TOK, -5000), 0);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, TOK), 1000);

    /* usage beyond the reservation: debt, and nothing admitted */

    assert_int_equal(ngx_http_llm_limiter_charge(&lim, rate, TOK, 1500), 1);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, TOK), 0);

    need[TOK] = 1;
    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need, T0,
                                                  &wait), TOK);
    /* 501 tokens missing at 1000/min: 30060 ms */
    assert_int_equal(wait, 30060);

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need,
                                                  T0 + 30060, &wait), -1);
}


static void
test_concurrent_reservations_never_overshoot(void **state)
{
    int                     i, admitted;
    uint64_t                wait;
    ngx_http_llm_limiter_t  lim;
    uint32_t                rate[3] = { 0, 10000, 0 };
    int64_t                 need[3] = { 0, 3000, 0 };

    /* after-the-fact counting would admit all 10 */

    ngx_http_llm_limiter_init(&lim, rate, T0);

    admitted = 0;

    for (i = 0; i < 10; i++) {
        if (ngx_http_llm_limiter_reserve(&lim, rate, need, T0, &wait) == -1) {
            admitted++;
        }
    }

    assert_int_equal(admitted, 3);
}


static void
test_oversized_request(void **state)
{
    uint64_t                wait;
    ngx_http_llm_limiter_t  lim;
    uint32_t                rate[3] = { 0, 100, 0 };
    int64_t                 need[3] = { 0, 250, 0 };

    /* larger than the capacity: admitted when full, then debt */

    ngx_http_llm_limiter_init(&lim, rate, T0);

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need, T0,
                                                  &wait), -1);
    assert_true(lim.level[TOK] < 0);

    /* waits until full again, not forever: 250 tokens at 100/min */

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need, T0,
                                                  &wait), TOK);
    assert_int_equal(wait, 150000);

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need,
                                                  T0 + 150000, &wait), -1);
}


static void
test_clock_edges(void **state)
{
    uint64_t                wait;
    ngx_http_llm_limiter_t  lim;
    uint32_t                rate[3] = { 60, 0, 0 };
    int64_t                 one[3] = { 1, 0, 0 };

    ngx_http_llm_limiter_init(&lim, rate, T0);
    lim.level[REQ] = 0;

    /* another worker's clock a few ms behind: nothing refilled, kept */

    ngx_http_llm_limiter_refill(&lim, rate, T0 - 5);
    assert_int_equal(lim.last, T0);
    assert_int_equal(lim.level[REQ], 0);

    /* the same ms twice refills once */

    ngx_http_llm_limiter_refill(&lim, rate, T0 + 500);
    ngx_http_llm_limiter_refill(&lim, rate, T0 + 500);
    assert_int_equal(lim.level[REQ], 500 * 60);

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, one, T0 + 1000,
                                                  &wait), -1);

    /* a big step back restarts the clock there, and refills from it */

    ngx_http_llm_limiter_refill(&lim, rate, T0 - 120000);
    assert_int_equal(lim.last, T0 - 120000);
    ngx_http_llm_limiter_refill(&lim, rate, T0 - 119000);
    assert_int_equal(lim.level[REQ], 1000 * 60);

    /* a long idle period fills up to the capacity, no overflow */

    lim.level[REQ] = -1000000000LL;
    ngx_http_llm_limiter_refill(&lim, rate, UINT64_MAX / 2);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, REQ), 60);
    assert_true(ngx_http_llm_limiter_idle(&lim, rate, UINT64_MAX / 2));
}


static void
test_large_rates(void **state)
{
    uint64_t                wait;
    ngx_http_llm_limiter_t  lim;
    uint32_t                rate[3] = { 0, 4000000000U, 0 };
    int64_t                 need[3] = { 0, 3999999999LL, 0 };

    ngx_http_llm_limiter_init(&lim, rate, T0);

    assert_int_equal(ngx_http_llm_limiter_reserve(&lim, rate, need, T0,
                                                  &wait), -1);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, TOK), 1);

    ngx_http_llm_limiter_refill(&lim, rate, T0 + 30000);
    assert_int_equal(ngx_http_llm_limiter_remaining(&lim, rate, TOK),
                     2000000001ULL);
    assert_false(ngx_http_llm_limiter_idle(&lim, rate, T0 + 30000));
    assert_true(ngx_http_llm_limiter_idle(&lim, rate, T0 + 60000));
}


static void
check_duration(uint64_t ms, const char *expect)
{
    size_t  n;
    u_char  buf[NGX_HTTP_LLM_LIMITER_DURATION_LEN];

    n = ngx_http_llm_limiter_duration(buf, ms);
    assert_int_equal(n, strlen(expect));
    assert_memory_equal(buf, expect, n);
}


static void
test_duration(void **state)
{
    check_duration(0, "0s");
    check_duration(1, "1ms");
    check_duration(20, "20ms");
    check_duration(999, "999ms");
    check_duration(1000, "1s");
    check_duration(1500, "1.5s");
    check_duration(1020, "1.02s");
    check_duration(6500, "6.5s");
    check_duration(1004, "1.004s");
    check_duration(1010, "1.01s");
    check_duration(1100, "1.1s");
    check_duration(1901, "1.901s");
    check_duration(59999, "59.999s");
    check_duration(3600001, "1h0m0.001s");
    check_duration(60000, "1m0s");
    check_duration(360000, "6m0s");
    check_duration(3723004, "1h2m3.004s");
    check_duration(3600000, "1h0m0s");
    check_duration(UINT64_MAX, "5124095576030h25m51.615s");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_then_empty),
        cmocka_unit_test(test_steady_rate_exact),
        cmocka_unit_test(test_all_or_nothing),
        cmocka_unit_test(test_longest_wait_wins),
        cmocka_unit_test(test_settle_and_release),
        cmocka_unit_test(test_concurrent_reservations_never_overshoot),
        cmocka_unit_test(test_oversized_request),
        cmocka_unit_test(test_clock_edges),
        cmocka_unit_test(test_large_rates),
        cmocka_unit_test(test_duration),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
