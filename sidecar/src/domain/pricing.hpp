// Cost of a usage record in integer micro-USD.
#pragma once

#include "domain/types.hpp"

namespace llm {

// Each token class is billed at its own rate: uncached input
// (prompt - cached - cache_write), cache reads, cache writes, and output
// (completion, reasoning included). The sum of token*rate products is
// computed exactly and divided by 1e6 once, rounded half up, so a record's
// cost is off by at most 0.5 micro-USD.
Micros usage_cost(const ModelPrice &price, std::int64_t prompt_tokens,
                  std::int64_t cached_tokens, std::int64_t cache_write_tokens,
                  std::int64_t completion_tokens);

Micros usage_cost(const ModelPrice &price, const UsageRecord &r);

// Estimate used to rank models: prompt at the input rate plus the expected
// output at the output rate.
Micros estimated_cost(const ModelPrice &price, std::int64_t prompt_tokens,
                      std::int64_t output_tokens);

} // namespace llm
