# ngx_llm: sanitizer and valgrind runs (issue 9). Included by the Makefile.
#
#   make test-asan       module, mock, cmocka units and sidecar built with
#                        -fsanitize=address,undefined; the units and the
#                        sidecar tests run, then the Test::Nginx suites
#                        t/00*.t t/09*.t against Debian's /usr/sbin/nginx
#                        with the ASan runtime preloaded and the
#                        instrumented module loaded; fails on any report
#   make test-valgrind   memcheck of nginx (single process) over a subset
#                        of the suites; fails on an invalid access anywhere
#                        or a definite leak in the module
#
# Sub-targets: asan-module asan-mock asan-sidecar test-asan-unit
# test-asan-sidecar test-asan-nginx. Ports: TEST_NGINX_PORT (nginx) and
# LLM_MOCK_BASE .. +2 and +10 (the mock), as for make test-nginx.
#
# Needs: clang (its ASan runtime), valgrind.

ASAN_B        := build/asan
ASAN_TREE     := $(ASAN_B)/nginx
ASAN_SO       := $(ASAN_B)/ngx_http_llm_module.so
ASAN_MOCK     := $(ASAN_B)/llm-mock
ASAN_NGINX    := $(ASAN_B)/nginx-asan
ASAN_REPORTS  := $(CURDIR)/$(ASAN_B)/reports
ASAN_SERVROOT ?= $(CURDIR)/t/servroot-asan
ASAN_SUITES   ?= $(wildcard t/0*.t)
ASAN_MOCK_BASE = $(or $(LLM_MOCK_BASE),18080)

ASAN_CFLAGS   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=all
ASAN_LDFLAGS  := -fsanitize=address,undefined
# the module's own ngx_modules[] resolves to the binary's (symbol
# interposition): instrumenting the module's globals would make ASan guard
# the binary's array with the module's size, a false overflow when the
# master re-reads it on reload; heap, stack and use-after-free stay checked
ASAN_MODULE_CFLAGS := -mllvm -asan-globals=0
# clang: its ASan runtime carries UBSan too, so both report to log_path
# (gcc's libubsan writes to stderr, which nginx points at the error log of
# a servroot that Test::Nginx wipes per block)
ASAN_CC       := clang
ASAN_RUNTIME   = $(shell $(ASAN_CC) -print-file-name=libclang_rt.asan-x86_64.so)

# nginx's master never frees its cycle: leaks are valgrind's job. A report
# aborts the process (a worker crash the suites see too) and lands in
# $(ASAN_REPORTS), outside the servroot that Test::Nginx wipes per block.
ASAN_ENV       = ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:$\
                 detect_odr_violation=0:log_path=$(ASAN_REPORTS)/asan \
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

VG_B          := build/valgrind
VG_NGINX      := $(VG_B)/nginx-valgrind
VG_LOGS       := $(CURDIR)/$(VG_B)/logs
VG_SUITES     ?= t/002-openai.t t/003-bad-requests.t t/004-stream.t \
                 t/005-large-body.t t/091-secrets.t
VG_SERVROOT   ?= $(CURDIR)/t/servroot-valgrind

.PHONY: test-asan asan-module asan-mock asan-sidecar test-asan-unit \
        test-asan-sidecar test-asan-nginx test-valgrind


test-asan: test-asan-unit test-asan-sidecar test-asan-nginx
	@echo "test-asan: no sanitizer report"

# -- builds -------------------------------------------------------------------

$(ASAN_TREE)/objs/Makefile: config
	@echo "asan: configuring nginx $(NGX_SRC) with sanitizers"
	rm -rf $(ASAN_TREE)
	mkdir -p $(ASAN_B)
	cp -a $(NGX_SRC) $(ASAN_TREE)
	cd $(ASAN_TREE) && . ./conf_flags \
	    && ./configure "$${NGX_CONF_FLAGS[@]}" --with-cc=$(ASAN_CC) \
	        --with-cc-opt="$(ASAN_CFLAGS) $(ASAN_MODULE_CFLAGS)" \
	        --with-ld-opt="$(ASAN_LDFLAGS)" \
	        --add-dynamic-module=$(CURDIR) > ../configure.log 2>&1 \
	    || { tail -20 ../configure.log; exit 1; }

$(ASAN_SO): $(ASAN_TREE)/objs/Makefile $(MODULE_SRCS)
	$(MAKE) -s -C $(ASAN_TREE) -f objs/Makefile modules
	cp $(ASAN_TREE)/objs/ngx_http_llm_module.so $@.tmp && mv -f $@.tmp $@

asan-module: $(ASAN_SO)

$(ASAN_MOCK): mock/llm_mock.c
	@mkdir -p $(dir $@)
	$(ASAN_CC) -std=c11 -Wall -Wextra -Werror $(ASAN_CFLAGS) $(ASAN_LDFLAGS) \
	    -o $@ $< -ljansson -lxxhash -lm

asan-mock: $(ASAN_MOCK)

asan-sidecar:
	cmake -S sidecar -B $(ASAN_B)/sidecar -DCMAKE_BUILD_TYPE=Debug \
	    -DCMAKE_CXX_FLAGS="$(ASAN_CFLAGS)" \
	    -DCMAKE_EXE_LINKER_FLAGS="$(ASAN_LDFLAGS)" > /dev/null
	cmake --build $(ASAN_B)/sidecar -j2

# -- runs ---------------------------------------------------------------------

test-asan-unit:
	$(MAKE) -f ngx_llm_module/tests/unit.mk unit-asan

test-asan-sidecar: asan-sidecar
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --test-dir $(ASAN_B)/sidecar --output-on-failure

# nginx runs through a wrapper that preloads the ASan runtime (Debian's
# nginx is not instrumented, the module is); the mock is the instrumented
# one, started here on the ports LLM.pm would use and stopped by its PID.

test-asan-nginx: $(ASAN_SO) $(ASAN_MOCK)
	@rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_REPORTS)
	@printf '#!/bin/sh\nexec env LD_PRELOAD=%s %s %s "$$@"\n' \
	    "$(ASAN_RUNTIME)" "$(ASAN_ENV)" "$(NGINX)" > $(ASAN_NGINX)
	@chmod +x $(ASAN_NGINX)
	@base=$(ASAN_MOCK_BASE); \
	env $(ASAN_ENV) $(ASAN_MOCK) --quiet --ttft-ms 5 --itl-ms 2 \
	    --listen 127.0.0.1:$$base,name=mock \
	    --listen 127.0.0.1:$$((base + 1)),name=a \
	    --listen 127.0.0.1:$$((base + 2)),name=b \
	    --listen 127.0.0.1:$$((base + 10)),name=d \
	    --pid-file $(ASAN_REPORTS)/../mock.pid & mock=$$!; \
	for i in $$(seq 100); do \
	    [ -s $(ASAN_REPORTS)/../mock.pid ] && break; sleep 0.05; \
	done; \
	rc=0; \
	TEST_NGINX_BINARY=$(CURDIR)/$(ASAN_NGINX) \
	TEST_NGINX_LOAD_MODULES="$(ECHO_SO) $(CURDIR)/$(ASAN_SO)" \
	TEST_NGINX_SERVROOT=$(ASAN_SERVROOT) \
	TEST_NGINX_MOCK_PORT=$$base TEST_NGINX_MOCK_A=$$((base + 1)) \
	TEST_NGINX_MOCK_B=$$((base + 2)) TEST_NGINX_MOCK_D=$$((base + 10)) \
	    prove $(PROVE_INC) $(ASAN_SUITES) || rc=$$?; \
	kill $$mock; wait $$mock || true; \
	if ls $(ASAN_REPORTS)/* > /dev/null 2>&1; then \
	    echo "test-asan: sanitizer reports:"; \
	    cat $(ASAN_REPORTS)/*; exit 1; \
	fi; \
	exit $$rc

# valgrind: nginx in one process (the runners' default master_process off);
# every process gets its own log, then the logs are judged

test-valgrind: $(MODULE_SO) mock
	@rm -rf $(VG_LOGS) && mkdir -p $(VG_LOGS)
	@printf '#!/bin/sh\nexec valgrind --tool=memcheck --leak-check=full \
	--show-leak-kinds=definite --errors-for-leak-kinds=definite \
	--num-callers=40 --log-file=%s/vg.%%p.log %s "$$@"\n' \
	    "$(VG_LOGS)" "$(NGINX)" > $(VG_NGINX)
	@chmod +x $(VG_NGINX)
	@rc=0; \
	TEST_NGINX_BINARY=$(CURDIR)/$(VG_NGINX) TEST_NGINX_MASTER_PROCESS=off \
	TEST_NGINX_TIMEOUT=$${TEST_NGINX_TIMEOUT:-10} \
	TEST_NGINX_LOAD_MODULES="$(ECHO_SO) $(CURDIR)/$(MODULE_SO)" \
	TEST_NGINX_SERVROOT=$(VG_SERVROOT) \
	    prove $(PROVE_INC) $(VG_SUITES) || rc=$$?; \
	perl t/valgrind-judge.pl $(VG_LOGS) || rc=1; \
	exit $$rc
