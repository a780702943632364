# make bench-balance: the balancers side by side (bench/balance.sh);
# included by the top-level Makefile.

.PHONY: bench-balance

bench-balance: deps-bench
	$(MAKE) module mock
	bash bench/balance.sh "$(CURDIR)" "$(NGINX)"
