#include "domain/pricing.hpp"

#include <algorithm>

namespace llm {

Micros usage_cost(const ModelPrice &price, std::int64_t prompt_tokens,
                  std::int64_t cached_tokens, std::int64_t cache_write_tokens,
                  std::int64_t completion_tokens) {
  const std::int64_t cached = std::max<std::int64_t>(cached_tokens, 0);
  const std::int64_t written = std::max<std::int64_t>(cache_write_tokens, 0);
  const std::int64_t uncached =
      std::max<std::int64_t>(prompt_tokens - cached - written, 0);
  const std::int64_t output = std::max<std::int64_t>(completion_tokens, 0);
  const __int128 sum =
      static_cast<__int128>(uncached) * price.input_per_mtok +
      static_cast<__int128>(cached) * price.cache_read_per_mtok +
      static_cast<__int128>(written) * price.cache_write_per_mtok +
      static_cast<__int128>(output) * price.output_per_mtok;
  return static_cast<Micros>((sum + 500'000) / 1'000'000);
}

Micros usage_cost(const ModelPrice &price, const UsageRecord &r) {
  return usage_cost(price, r.prompt_tokens, r.cached_tokens,
                    r.cache_write_tokens, r.completion_tokens);
}

Micros estimated_cost(const ModelPrice &price, std::int64_t prompt_tokens,
                      std::int64_t output_tokens) {
  return usage_cost(price, prompt_tokens, 0, 0, output_tokens);
}

void Totals::add(const UsageRecord &r) {
  ++requests;
  if (r.status < 200 || r.status >= 400) {
    ++errors;
  }
  prompt_tokens += r.prompt_tokens;
  cached_tokens += r.cached_tokens;
  cache_write_tokens += r.cache_write_tokens;
  completion_tokens += r.completion_tokens;
  reasoning_tokens += r.reasoning_tokens;
  cost += r.cost;
}

void Totals::add(const Totals &t) {
  requests += t.requests;
  errors += t.errors;
  prompt_tokens += t.prompt_tokens;
  cached_tokens += t.cached_tokens;
  cache_write_tokens += t.cache_write_tokens;
  completion_tokens += t.completion_tokens;
  reasoning_tokens += t.reasoning_tokens;
  cost += t.cost;
}

} // namespace llm
