# make bench-limit: rate limiting figures (bench/limit.sh): admitted rate
# at 10x overload on one node and on two nodes sharing a limit through
# Redis, the throughput cost of a limit, keys per MB of zone. Included by
# the top-level Makefile. BENCH_SECONDS (default 60) shortens the windows;
# BENCH_PORT_BASE (8 ports, default 18950) and BENCH_REDIS_PORT (default
# 18979) move the ports.

.PHONY: bench-limit

bench-limit: deps-bench
	$(MAKE) module mock
	BENCH_MODULE="$${BENCH_MODULE:-$(CURDIR)/$(MODULE_SO)}" \
	    BENCH_DIR="$${BENCH_DIR:-$(CURDIR)/$(B)/bench/limit}" \
	    bash bench/limit.sh "$(CURDIR)" "$(NGINX)"
