
/*
 * Copyright (C) ngx_llm authors
 *
 * Body inspection microbenchmark: builds a realistic ~700 KB chat body
 * (and a ~1 KB one) deterministically, and prints the median throughput
 * of validation alone, of the full inspection (validation, extraction,
 * canonical hash) and of a bare XXH3-128 pass over the same bytes; then
 * the inspection of a stress body with three times more escapes.
 *
 *   inspect_bench [runs]
 *   inspect_bench --callgrind    one inspection of the large body, with
 *                                callgrind's instrumentation on around it
 *                                (run with --instr-atstart=no)
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif

#ifndef CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#include "ngx_http_llm_inspect.h"
#include "ngx_http_llm_json.h"
#include "llm_test_body.h"


#define BENCH_LARGE  (700 * 1024)


typedef int (*bench_fn_pt)(const u_char *body, size_t len);


static double
bench_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static int
bench_cmp(const void *a, const void *b)
{
    double  x, y;

    x = *(const double *) a;
    y = *(const double *) b;

    return (x > y) - (x < y);
}


static int
bench_inspect(const u_char *body, size_t len)
{
    ngx_http_llm_request_t  req;

    memset(&req, 0, sizeof(req));

    return ngx_http_llm_inspect(&req, NGX_HTTP_LLM_API_CHAT, body, len);
}


static int
bench_validate(const u_char *body, size_t len)
{
    ngx_http_llm_json_error_t  err;

    return ngx_http_llm_json_validate(body, len, 64, &err);
}


static volatile uint64_t  bench_sink;


static int
bench_xxh3(const u_char *body, size_t len)
{
    bench_sink += XXH3_128bits(body, len).low64;

    return 0;
}


/* median seconds per call; each sample runs the function iters times */

static double
bench_run(bench_fn_pt fn, const u_char *body, size_t len, unsigned runs,
    unsigned iters)
{
    double    t, *samples, median;
    unsigned  i, j;

    samples = malloc(runs * sizeof(double));

    if (samples == NULL) {
        abort();
    }

    for (i = 0; i < runs; i++) {
        t = bench_now();

        for (j = 0; j < iters; j++) {
            if (fn(body, len) != 0) {
                fprintf(stderr, "inspect_bench: the body was rejected\n");
                exit(1);
            }
        }

        samples[i] = (bench_now() - t) / iters;
    }

    qsort(samples, runs, sizeof(double), bench_cmp);
    median = samples[runs / 2];
    free(samples);

    return median;
}


int
main(int argc, char **argv)
{
    u_char                  *large, *heavy, small[8192];
    size_t                   large_len, heavy_len, small_len;
    double                   insp, valid, hash, insp_small, insp_heavy;
    unsigned                 runs;
    ngx_http_llm_request_t   req;

    runs = (argc > 1) ? (unsigned) atoi(argv[1]) : 31;

    if (runs == 0) {
        runs = 1;
    }

    if (argc > 1 && strcmp(argv[1], "--callgrind") == 0) {
        large = malloc(BENCH_LARGE + 4096);

        if (large == NULL) {
            return 1;
        }

        large_len = llm_test_body(large, BENCH_LARGE + 4096, BENCH_LARGE, 1,
                                  0);
        memset(&req, 0, sizeof(req));

        CALLGRIND_START_INSTRUMENTATION;
        ngx_http_llm_inspect(&req, NGX_HTTP_LLM_API_CHAT, large, large_len);
        CALLGRIND_STOP_INSTRUMENTATION;

        printf("%zu\n", large_len);
        free(large);

        return 0;
    }

    large = malloc(BENCH_LARGE + 4096);
    heavy = malloc(BENCH_LARGE + 4096);

    if (large == NULL || heavy == NULL) {
        return 1;
    }

    large_len = llm_test_body(large, BENCH_LARGE + 4096, BENCH_LARGE, 1, 0);
    heavy_len = llm_test_body(heavy, BENCH_LARGE + 4096, BENCH_LARGE, 1, 1);
    small_len = llm_test_body(small, sizeof(small), 1300, 2, 0);

    memset(&req, 0, sizeof(req));

    if (ngx_http_llm_inspect(&req, NGX_HTTP_LLM_API_CHAT, large, large_len)
        != NGX_HTTP_LLM_INSPECT_OK)
    {
        fprintf(stderr, "inspect_bench: %s at %zu\n", req.error,
                req.error_offset);
        return 1;
    }

    printf("body: %zu bytes, %u messages, %u tools, ~%llu prompt tokens\n",
           large_len, req.messages, req.tools,
           (unsigned long long) req.prompt_tokens);

    /* warm up */
    bench_run(bench_inspect, large, large_len, 3, 1);

    valid = bench_run(bench_validate, large, large_len, runs, 1);
    insp = bench_run(bench_inspect, large, large_len, runs, 1);
    hash = bench_run(bench_xxh3, large, large_len, runs, 1);
    insp_small = bench_run(bench_inspect, small, small_len, runs, 2000);
    insp_heavy = bench_run(bench_inspect, heavy, heavy_len, runs, 1);

    printf("inspect (validate + extract + hash): %8.0f MB/s  %8.1f us\n",
           large_len / insp / 1e6, insp * 1e6);
    printf("validate only:                       %8.0f MB/s  %8.1f us\n",
           large_len / valid / 1e6, valid * 1e6);
    printf("bare XXH3-128 over the body:         %8.0f MB/s  %8.1f us\n",
           large_len / hash / 1e6, hash * 1e6);
    printf("hashing + extraction cost:           %8.1f us (%.0f%% of "
           "inspect)\n", (insp - valid) * 1e6, 100 * (insp - valid) / insp);
    printf("small body (%zu bytes):             %8.0f ns per call\n",
           small_len, insp_small * 1e9);
    printf("escape-heavy body (a '\\' every ~20 bytes, %zu bytes): "
           "%.0f MB/s\n", heavy_len, heavy_len / insp_heavy / 1e6);

    free(large);
    free(heavy);

    return 0;
}
