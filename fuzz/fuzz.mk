# ngx_llm: fuzzing beyond `make fuzz` (ngx_llm_module/tests/unit.mk builds
# the targets and runs each for FUZZ_SECONDS). Included by the Makefile.
#
#   make fuzz-runs      each target until FUZZ_RUNS executions (default
#                       10M, the goal of issue 9) or FUZZ_MAX_SECONDS;
#                       prints the executions done, fails on a crash
#   make fuzz-regress   replays the seed corpus and every saved crash
#                       (fuzz/corpus/<target>/) once: a quick regression
#                       check for CI
#
# A crash lands in build/fuzz/<target>-crash-*: copy it into
# fuzz/corpus/<target>/ (named regress-*) once fixed, so fuzz-regress keeps
# replaying it.

FUZZ_RUNS        ?= 10000000
FUZZ_MAX_SECONDS ?= 3600

# targets of issue 9 beyond unit.mk's: message assembly and the cache
# entry encoding (encode, decode, JSON rendering, SSE replay), then the
# sidecar's parsers (below)

LLM_FUZZ_MORE    := fuzz_assemble fuzz_entry
LLM_FUZZ_TARGETS += $(LLM_FUZZ_MORE)
LLM_FUZZ_BINS    += $(addprefix $(LLM_FUZZ_DIR)/,$(LLM_FUZZ_MORE))

.PHONY: $(addprefix fuzz-,$(LLM_FUZZ_MORE))

fuzz: $(addprefix fuzz-,$(LLM_FUZZ_MORE))
fuzz-build: $(addprefix $(LLM_FUZZ_DIR)/,$(LLM_FUZZ_MORE))

$(addprefix fuzz-,$(LLM_FUZZ_MORE)): fuzz-%: $(LLM_FUZZ_DIR)/%
	@mkdir -p $(LLM_FUZZ_DIR)/corpus/$*
	$(LLM_FUZZ_DIR)/$* -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(LLM_FUZZ_DIR)/$*- \
	    $(LLM_FUZZ_DIR)/corpus/$* fuzz/corpus/$*

$(addprefix $(LLM_FUZZ_DIR)/,$(LLM_FUZZ_MORE)): \
        $(LLM_FUZZ_DIR)/%: fuzz/%.c $(LLM_UNIT_SRCS) $(LLM_UNIT_HDRS)
	@mkdir -p $(dir $@)
	$(LLM_FUZZ_CC) $(LLM_FUZZ_CFLAGS) -o $@ $< $(LLM_UNIT_SRCS)

# the sidecar's parsers (C++): its configuration with the price table, and
# the bodies of POST /v1/route and POST /v1/usage (sidecar/src/wire.cpp);
# the pure sources are built once with the sanitizers, then linked per
# target

LLM_FUZZ_SIDECAR    := fuzz_sidecar_config fuzz_sidecar_route \
                       fuzz_sidecar_usage
LLM_FUZZ_TARGETS    += $(LLM_FUZZ_SIDECAR)
LLM_FUZZ_BINS       += $(addprefix $(LLM_FUZZ_DIR)/,$(LLM_FUZZ_SIDECAR))

LLM_FUZZ_CXX        ?= clang++
LLM_FUZZ_SC_DIR     := $(LLM_FUZZ_DIR)/sidecar
LLM_FUZZ_SC_SRCS    := $(addprefix sidecar/src/,config.cpp json.cpp log.cpp \
                         wire.cpp) $(wildcard sidecar/src/domain/*.cpp)
LLM_FUZZ_SC_OBJS    := $(patsubst sidecar/src/%.cpp,$(LLM_FUZZ_SC_DIR)/%.o,\
                         $(LLM_FUZZ_SC_SRCS))
LLM_FUZZ_CXXFLAGS   := -std=c++20 -O1 -g -fno-sanitize-recover=undefined \
                       -Isidecar/src

.PHONY: $(addprefix fuzz-,$(LLM_FUZZ_SIDECAR))

fuzz: $(addprefix fuzz-,$(LLM_FUZZ_SIDECAR))
fuzz-build: $(addprefix $(LLM_FUZZ_DIR)/,$(LLM_FUZZ_SIDECAR))

$(addprefix fuzz-,$(LLM_FUZZ_SIDECAR)): fuzz-%: $(LLM_FUZZ_DIR)/%
	@mkdir -p $(LLM_FUZZ_DIR)/corpus/$*
	$(LLM_FUZZ_DIR)/$* -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(LLM_FUZZ_DIR)/$*- \
	    $(LLM_FUZZ_DIR)/corpus/$* fuzz/corpus/$*

$(LLM_FUZZ_SC_DIR)/%.o: sidecar/src/%.cpp $(wildcard sidecar/src/*.hpp \
                                          sidecar/src/domain/*.hpp)
	@mkdir -p $(dir $@)
	$(LLM_FUZZ_CXX) $(LLM_FUZZ_CXXFLAGS) \
	    -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

$(addprefix $(LLM_FUZZ_DIR)/,$(LLM_FUZZ_SIDECAR)): \
        $(LLM_FUZZ_DIR)/%: fuzz/%.cpp $(LLM_FUZZ_SC_OBJS)
	$(LLM_FUZZ_CXX) $(LLM_FUZZ_CXXFLAGS) \
	    -fsanitize=fuzzer,address,undefined -o $@ $< $(LLM_FUZZ_SC_OBJS) \
	    -lsimdjson

.PHONY: fuzz-runs fuzz-regress


fuzz-runs: $(LLM_FUZZ_BINS)
	@for t in $(LLM_FUZZ_TARGETS); do \
	    mkdir -p $(LLM_FUZZ_DIR)/corpus/$$t; \
	    $(LLM_FUZZ_DIR)/$$t -runs=$(FUZZ_RUNS) \
	        -max_total_time=$(FUZZ_MAX_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=$(LLM_FUZZ_DIR)/$$t- \
	        $(LLM_FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t \
	        > $(LLM_FUZZ_DIR)/$$t.log 2>&1 \
	    || { tail -40 $(LLM_FUZZ_DIR)/$$t.log; exit 1; }; \
	    echo "fuzz-runs: $$t: $$(sed -n \
	        's/^stat::number_of_executed_units: *//p' \
	        $(LLM_FUZZ_DIR)/$$t.log) executions, no crash"; \
	done

fuzz-regress: $(LLM_FUZZ_BINS)
	@for t in $(LLM_FUZZ_TARGETS); do \
	    $(LLM_FUZZ_DIR)/$$t -runs=0 fuzz/corpus/$$t > /dev/null 2>&1 \
	    || { echo "fuzz-regress: $$t fails on its corpus:"; \
	         $(LLM_FUZZ_DIR)/$$t -runs=0 fuzz/corpus/$$t 2>&1 | tail -30; \
	         exit 1; }; \
	    echo "fuzz-regress: $$t: $$(ls fuzz/corpus/$$t | wc -l) inputs ok"; \
	done
