# make bench-cache: response cache figures (bench/cache.sh); included by
# the top-level Makefile.

.PHONY: bench-cache

bench-cache: deps-bench
	$(MAKE) module mock
	bash bench/cache.sh "$(CURDIR)" "$(NGINX)"
