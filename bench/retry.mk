# make bench-retry: what llm_retry costs on streams that do not fail
# (bench/retry.sh): wrk A/B rounds off / on, and callgrind instructions per
# request. BENCH_SECONDS x BENCH_ROUNDS (default 5 x 4), BENCH_CG_REQUESTS
# (200), BENCH_PORT_BASE (4 ports, default 18120). Included by the
# top-level Makefile.

.PHONY: bench-retry

bench-retry: deps-bench
	$(MAKE) module mock
	BENCH_MODULE="$${BENCH_MODULE:-$(CURDIR)/$(MODULE_SO)}" \
	    BENCH_DIR="$${BENCH_DIR:-$(CURDIR)/$(B)/bench/retry}" \
	    bash bench/retry.sh "$(CURDIR)" "$(NGINX)"
