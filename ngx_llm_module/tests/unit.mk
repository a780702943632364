# ngx_llm: cmocka units, the inspection microbenchmark and the fuzz targets
# of the module's pure C parts. Included by the top-level Makefile; also
# usable alone from the repository root:
#
#   make -f ngx_llm_module/tests/unit.mk unit
#   make -f ngx_llm_module/tests/unit.mk inspect-bench   (build only)
#   make -f ngx_llm_module/tests/unit.mk inspect-bench-run
#   make -f ngx_llm_module/tests/unit.mk inspect-callgrind
#   make -f ngx_llm_module/tests/unit.mk unit-asan
#   make -f ngx_llm_module/tests/unit.mk fuzz FUZZ_SECONDS=60
#
# Needs: cc, libcmocka-dev, libxxhash-dev; fuzzing: clang, libjansson-dev;
# callgrind: valgrind.

LLM_UNIT_SAVED_GOAL := $(.DEFAULT_GOAL)

LLM_MOD_DIR      := ngx_llm_module
LLM_TEST_DIR     := $(LLM_MOD_DIR)/tests
LLM_UNIT_DIR     := build/unit
LLM_BENCH_DIR    := build/bench
LLM_FUZZ_DIR     := build/fuzz

LLM_UNIT_CC      ?= cc
LLM_FUZZ_CC      ?= clang
FUZZ_SECONDS     ?= 30

LLM_UNIT_SRCS    := $(LLM_MOD_DIR)/ngx_http_llm_json.c \
                    $(LLM_MOD_DIR)/ngx_http_llm_assemble.c \
                    $(LLM_MOD_DIR)/ngx_http_llm_inspect.c \
                    $(LLM_MOD_DIR)/ngx_http_llm_event.c \
                    $(LLM_MOD_DIR)/ngx_http_llm_limiter.c \
                    $(LLM_MOD_DIR)/ngx_http_llm_pick.c
LLM_UNIT_HDRS    := $(LLM_MOD_DIR)/ngx_http_llm_json.h \
                    $(LLM_MOD_DIR)/ngx_http_llm_assemble.h \
                    $(LLM_MOD_DIR)/ngx_http_llm_inspect.h \
                    $(LLM_MOD_DIR)/ngx_http_llm_event.h \
                    $(LLM_MOD_DIR)/ngx_http_llm_limiter.h \
                    $(LLM_MOD_DIR)/ngx_http_llm_pick.h \
                    $(LLM_TEST_DIR)/llm_test.h \
                    $(LLM_TEST_DIR)/llm_test_body.h

LLM_UNIT_CFLAGS  := -std=gnu99 -O2 -g -Wall -Wextra -Wno-unused-parameter \
                    -Werror -I$(LLM_MOD_DIR) -I$(LLM_TEST_DIR)
LLM_NGX_CFLAGS   := -pipe -O -W -Wall -Wpointer-arith -Wno-unused-parameter \
                    -Werror -g
LLM_ASAN_CFLAGS  := -std=gnu99 -O1 -g -fno-omit-frame-pointer \
                    -fsanitize=address,undefined \
                    -fno-sanitize-recover=undefined \
                    -I$(LLM_MOD_DIR) -I$(LLM_TEST_DIR)
LLM_FUZZ_CFLAGS  := -std=gnu99 -O1 -g -fsanitize=fuzzer,address,undefined \
                    -fno-sanitize-recover=undefined -I$(LLM_MOD_DIR)

LLM_UNIT_TESTS   := test_json test_inspect test_event test_sse test_assemble \
                    test_limiter test_pick
LLM_UNIT_BINS    := $(addprefix $(LLM_UNIT_DIR)/,$(LLM_UNIT_TESTS))
LLM_ASAN_BINS    := $(addprefix $(LLM_UNIT_DIR)/asan/,$(LLM_UNIT_TESTS))
LLM_NGX_OBJS     := $(patsubst $(LLM_MOD_DIR)/%.c,$(LLM_UNIT_DIR)/ngx/%.o,\
                                 $(LLM_UNIT_SRCS))
LLM_BENCH_BIN    := $(LLM_BENCH_DIR)/inspect_bench
LLM_FUZZ_TARGETS := fuzz_inspect fuzz_sse fuzz_response
LLM_FUZZ_BINS    := $(addprefix $(LLM_FUZZ_DIR)/,$(LLM_FUZZ_TARGETS))


.PHONY: unit unit-asan inspect-bench inspect-bench-run inspect-callgrind \
        fuzz fuzz-build $(addprefix fuzz-,$(LLM_FUZZ_TARGETS))


# every test binary runs; the target fails if any of them failed

unit: $(LLM_UNIT_BINS) $(LLM_NGX_OBJS)
	@rc=0; for t in $(LLM_UNIT_BINS); do $$t || rc=1; done; exit $$rc

unit-asan: $(LLM_ASAN_BINS)
	@rc=0; for t in $(LLM_ASAN_BINS); do $$t || rc=1; done; exit $$rc

$(LLM_UNIT_BINS): $(LLM_UNIT_DIR)/%: $(LLM_TEST_DIR)/%.c $(LLM_UNIT_SRCS) \
                  $(LLM_UNIT_HDRS)
	@mkdir -p $(dir $@)
	$(LLM_UNIT_CC) $(LLM_UNIT_CFLAGS) -o $@ $< $(LLM_UNIT_SRCS) -lcmocka -lm

$(LLM_ASAN_BINS): $(LLM_UNIT_DIR)/asan/%: $(LLM_TEST_DIR)/%.c \
                  $(LLM_UNIT_SRCS) $(LLM_UNIT_HDRS)
	@mkdir -p $(dir $@)
	$(LLM_UNIT_CC) $(LLM_ASAN_CFLAGS) -o $@ $< $(LLM_UNIT_SRCS) -lcmocka -lm

# the sources also compile cleanly with nginx's own warning flags

$(LLM_NGX_OBJS): $(LLM_UNIT_DIR)/ngx/%.o: $(LLM_MOD_DIR)/%.c $(LLM_UNIT_HDRS)
	@mkdir -p $(dir $@)
	$(LLM_UNIT_CC) -c $(LLM_NGX_CFLAGS) -o $@ $<


inspect-bench: $(LLM_BENCH_BIN)

inspect-bench-run: $(LLM_BENCH_BIN)
	$(LLM_BENCH_BIN)

$(LLM_BENCH_BIN): bench/inspect_bench.c $(LLM_UNIT_SRCS) $(LLM_UNIT_HDRS)
	@mkdir -p $(dir $@)
	$(LLM_UNIT_CC) $(LLM_UNIT_CFLAGS) -o $@ $< $(LLM_UNIT_SRCS) -lm

# instructions per body byte of one inspection of the ~700 KB body

inspect-callgrind: $(LLM_BENCH_BIN)
	@bytes=$$(valgrind --tool=callgrind --instr-atstart=no \
	    --callgrind-out-file=$(LLM_BENCH_DIR)/callgrind.out \
	    $(LLM_BENCH_BIN) --callgrind 2>/dev/null) && \
	ir=$$(callgrind_annotate $(LLM_BENCH_DIR)/callgrind.out \
	    | awk '/PROGRAM TOTALS/ { gsub(",", "", $$1); print $$1 }') && \
	echo "inspect: $$ir instructions for $$bytes bytes:" \
	    "$$(echo "$$ir $$bytes" | awk '{ printf "%.2f", $$1 / $$2 }')" \
	    "instructions/byte"


# libFuzzer targets; crashes land in build/fuzz/<target>-crash-*

fuzz-build: $(LLM_FUZZ_BINS)

fuzz: $(addprefix fuzz-,$(LLM_FUZZ_TARGETS))

$(addprefix fuzz-,$(LLM_FUZZ_TARGETS)): fuzz-%: $(LLM_FUZZ_DIR)/%
	@mkdir -p $(LLM_FUZZ_DIR)/corpus/$*
	$(LLM_FUZZ_DIR)/$* -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(LLM_FUZZ_DIR)/$*- \
	    $(LLM_FUZZ_DIR)/corpus/$* fuzz/corpus/$*

$(LLM_FUZZ_DIR)/fuzz_inspect: fuzz/fuzz_inspect.c $(LLM_UNIT_SRCS) \
                              $(LLM_UNIT_HDRS)
	@mkdir -p $(dir $@)
	$(LLM_FUZZ_CC) $(LLM_FUZZ_CFLAGS) -o $@ $< $(LLM_UNIT_SRCS) -ljansson

$(LLM_FUZZ_DIR)/fuzz_sse $(LLM_FUZZ_DIR)/fuzz_response: \
        $(LLM_FUZZ_DIR)/%: fuzz/%.c $(LLM_UNIT_SRCS) $(LLM_UNIT_HDRS)
	@mkdir -p $(dir $@)
	$(LLM_FUZZ_CC) $(LLM_FUZZ_CFLAGS) -o $@ $< $(LLM_UNIT_SRCS)


.DEFAULT_GOAL := $(LLM_UNIT_SAVED_GOAL)
