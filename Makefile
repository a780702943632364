# ngx_llm: an LLM gateway inside NGINX.
#
#   make test    install what is missing, build, run every test
#   make run     install what is missing, build, start the embedded default
#
# Other targets: all (build), unit, bench, lint, fuzz, stop, clean, deps.

SHELL      := /bin/bash
.SHELLFLAGS := -eo pipefail -c

NGX_SRC    ?= /usr/share/nginx/src
NGINX      ?= /usr/sbin/nginx
B          ?= build
NGX_TREE   := $(B)/nginx
MODULE_SO  := $(B)/ngx_http_llm_module.so
MOCK       := mock/llm-mock
ECHO_SO    := /usr/lib/nginx/modules/ngx_http_echo_module.so
RUN        := $(B)/run
RUN_PORT   ?= 8080
MOCK_PORT  ?= 18080

SUDO       := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

# Debian packages, by what needs them
BUILD_PKGS := gcc g++ make cmake pkg-config perl nginx nginx-dev \
              libxxhash-dev libjansson-dev libhiredis-dev \
              libcurl4-openssl-dev libboost-dev libsimdjson-dev libcmocka-dev \
              libgtest-dev
TEST_PKGS  := $(BUILD_PKGS) curl python3 redis-server \
              libnginx-mod-http-echo libtest-base-perl libtext-diff-perl \
              libtest-longstring-perl liblist-moreutils-perl libwww-perl \
              libipc-run-perl libjson-pp-perl prometheus chromium
RUN_PKGS   := $(BUILD_PKGS) curl
BENCH_PKGS := $(TEST_PKGS) wrk valgrind
FUZZ_PKGS  := clang

MODULE_SRCS := config $(wildcard ngx_llm_module/*.c ngx_llm_module/*.h)

# the real Test::Nginx when installed, else the project's compatible runner
PROVE_INC   = $(shell perl -MTest::Nginx::Socket -e1 2>/dev/null \
                      || echo "-I t/lib")

export TEST_NGINX_BINARY ?= $(NGINX)
export TEST_NGINX_LOAD_MODULES ?= $(ECHO_SO) $(CURDIR)/$(MODULE_SO)


.PHONY: all module mock sidecar deps deps-run deps-bench deps-fuzz test unit \
        test-mock test-sidecar test-sdk test-nginx run stop bench lint fuzz clean

all: module mock sidecar

# -- dependencies (idempotent, quiet when everything is there) -------------

define apt_install
	@missing=""; \
	for p in $(1); do \
	    dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null \
	        | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "deps: installing$$missing"; \
	    $(SUDO) apt-get update -qq; \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	        $$missing >/dev/null; \
	fi
endef

# for a recipe line: installs the named packages
apt_install_now = { DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
                    -y -qq $(1) >/dev/null; }

deps:
	$(call apt_install,$(TEST_PKGS))

deps-run:
	$(call apt_install,$(RUN_PKGS))

deps-bench:
	$(call apt_install,$(BENCH_PKGS))

deps-fuzz:
	$(call apt_install,$(BUILD_PKGS) $(FUZZ_PKGS))

# -- build ------------------------------------------------------------------

$(NGX_TREE)/objs/Makefile: config
	@echo "module: configuring nginx $(NGX_SRC) with its own flags"
	rm -rf $(NGX_TREE)
	mkdir -p $(B)
	cp -a $(NGX_SRC) $(NGX_TREE)
	cd $(NGX_TREE) && . ./conf_flags \
	    && ./configure "$${NGX_CONF_FLAGS[@]}" --with-cc-opt="-O2 -g" \
	        --add-dynamic-module=$(CURDIR) > ../configure.log 2>&1 \
	    || { tail -20 ../configure.log; exit 1; }

# the .so is replaced by a new file (cp + mv), never rewritten in place: an
# nginx running the old one (make run, a bench) keeps its mapping instead
# of dying of SIGBUS
$(MODULE_SO): $(NGX_TREE)/objs/Makefile $(MODULE_SRCS)
	$(MAKE) -s -C $(NGX_TREE) -f objs/Makefile modules
	cp $(NGX_TREE)/objs/ngx_http_llm_module.so $@.tmp && mv -f $@.tmp $@

module: $(MODULE_SO)

mock:
	$(MAKE) -s -C mock

sidecar:
	@if [ -f sidecar/CMakeLists.txt ]; then \
	    cmake -S sidecar -B $(B)/sidecar -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	        > /dev/null && cmake --build $(B)/sidecar -j2; \
	fi

# -- tests ------------------------------------------------------------------

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) test-mock
	$(MAKE) test-sidecar
	$(MAKE) test-obs
	$(MAKE) test-sdk
	$(MAKE) test-asan
	$(MAKE) test-nginx

-include ngx_llm_module/tests/unit.mk
-include fuzz/fuzz.mk asan.mk obs.mk bench/limit.mk bench/cache.mk \
         bench/balance.mk bench/route.mk bench/retry.mk

test-mock: mock
	$(MAKE) -s -C mock test

test-sidecar: sidecar
	@if [ -f sidecar/CMakeLists.txt ]; then \
	    ctest --test-dir $(B)/sidecar --output-on-failure; \
	fi

# the official OpenAI and Anthropic SDKs (npm, pinned) against the gateway
test-sdk: module mock
	@command -v node >/dev/null && command -v npm >/dev/null \
	    || $(call apt_install_now,nodejs npm)
	bash t/sdk/run.sh $(CURDIR)/$(MODULE_SO)

test-nginx: module mock
	@if [ -n "$(PROVE_INC)" ] && [ -d t/selftest ]; then \
	    echo "test-nginx: Test::Nginx not installed, using t/lib"; \
	    prove -I t/lib t/selftest; \
	fi
	prove $(PROVE_INC) t/

# -- run the embedded default -------------------------------------------------

run: deps-run
	$(MAKE) all
	@bash conf/run.sh start "$(CURDIR)" "$(NGINX)" $(RUN_PORT) $(MOCK_PORT)

stop:
	@bash conf/run.sh stop "$(CURDIR)" "$(NGINX)" $(RUN_PORT) $(MOCK_PORT)

# -- benchmarks (figures, not tests) ------------------------------------------

bench: deps-bench
	$(MAKE) all inspect-bench
	$(B)/bench/inspect_bench
	bash bench/proxy.sh "$(CURDIR)" "$(NGINX)"

fuzz: deps-fuzz

# -- style --------------------------------------------------------------------

lint:
	@bash .ci/lint ngx_llm_module/*.c ngx_llm_module/*.h \
	    ngx_llm_module/tests/*.c ngx_llm_module/tests/*.h mock/*.c bench/*.c fuzz/*.c

clean:
	rm -rf $(B)
	-$(MAKE) -s -C mock clean
