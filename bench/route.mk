# make bench-route: routing figures (bench/route.sh): the full miss path
# (limit + cached route decision + llm_balance + usage to the sidecar)
# against plain proxy_pass on the same mock, and the gateway with the
# sidecar stopped against it running. Included by the top-level Makefile.
# BENCH_SECONDS x BENCH_ROUNDS per comparison (default 5 x 10);
# BENCH_PORT_BASE (3 ports, default 18110) moves the ports.

.PHONY: bench-route

bench-route: deps-bench
	$(MAKE) module mock sidecar
	BENCH_MODULE="$${BENCH_MODULE:-$(CURDIR)/$(MODULE_SO)}" \
	    BENCH_DIR="$${BENCH_DIR:-$(CURDIR)/$(B)/bench/route}" \
	    bash bench/route.sh "$(CURDIR)" "$(NGINX)"
