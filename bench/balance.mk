# make bench-balance: the balancers side by side (bench/balance.sh, with
# the open-loop load generator bench/loadgen.c and the traces of
# bench/traces/gen.py); included by the top-level Makefile.

LOADGEN_BIN := $(B)/bench/loadgen

.PHONY: bench-balance loadgen

loadgen: $(LOADGEN_BIN)

$(LOADGEN_BIN): bench/loadgen.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -o $@ $< -lm

bench-balance: deps-bench
	$(MAKE) module mock loadgen
	BENCH_MODULE="$${BENCH_MODULE:-$(CURDIR)/$(MODULE_SO)}" \
	    BENCH_DIR="$${BENCH_DIR:-$(CURDIR)/$(B)/bench/balance}" \
	    bash bench/balance.sh "$(CURDIR)" "$(NGINX)" "$(CURDIR)/$(LOADGEN_BIN)"

# make bench-balance-wait: callgrind instructions per request of the
# wait= check where it does not hold (bench/balance_wait_cg.sh)
.PHONY: bench-balance-wait

bench-balance-wait: deps-bench
	$(MAKE) module mock
	BENCH_MODULE="$${BENCH_MODULE:-$(CURDIR)/$(MODULE_SO)}" \
	    BENCH_DIR="$${BENCH_DIR:-$(CURDIR)/$(B)/bench/balance_wait}" \
	    bash bench/balance_wait_cg.sh "$(CURDIR)" "$(NGINX)"
