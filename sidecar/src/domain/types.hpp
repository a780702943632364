// Shared value types of the sidecar domain: money, time, models, usage.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llm {

// Money is always an integer number of micro-USD (1 USD = 1'000'000).
using Micros = std::int64_t;
// Time is always milliseconds since the Unix epoch, UTC.
using TimeMs = std::int64_t;

// Prices in micro-USD per one million tokens.
struct ModelPrice {
  std::int64_t input_per_mtok = 0;
  std::int64_t output_per_mtok = 0;
  std::int64_t cache_read_per_mtok = 0;
  std::int64_t cache_write_per_mtok = 0;
};

struct ModelInfo {
  std::string name;
  std::string provider; // openai | anthropic | google | ...
  std::string upstream; // NGINX upstream group serving it
  std::string api;      // wire format: openai | anthropic
  ModelPrice price;
  std::int64_t context_window = 0;
  std::int64_t max_output_tokens = 0;
  std::int64_t min_cacheable_tokens = 0;
  int tier = 1; // capability level, higher is more capable
  bool tools = true;
  bool images = false;
  bool json_mode = true;
  std::vector<std::string> fallbacks; // explicit chain, optional
};

// One request's usage as reported by the module.
// prompt_tokens counts every input token, including cached_tokens (read
// from the prompt cache) and cache_write_tokens (written to it).
// completion_tokens includes reasoning_tokens.
struct UsageRecord {
  std::string request_id;
  std::string key_hash;
  std::string team;
  std::string model;        // as requested
  std::string served_model; // as billed
  std::string upstream;
  std::string usage_source; // upstream | estimated
  std::string cache_status;
  std::int64_t prompt_tokens = 0;
  std::int64_t cached_tokens = 0;
  std::int64_t cache_write_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t reasoning_tokens = 0;
  int status = 0;
  std::int64_t ttft_ms = 0;
  std::int64_t duration_ms = 0;
  TimeMs ts = 0;
  Micros cost = 0; // computed at ingestion from the price table

  const std::string &billed_model() const {
    return served_model.empty() ? model : served_model;
  }
};

struct Totals {
  std::int64_t requests = 0;
  std::int64_t errors = 0;
  std::int64_t prompt_tokens = 0;
  std::int64_t cached_tokens = 0;
  std::int64_t cache_write_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::int64_t reasoning_tokens = 0;
  Micros cost = 0;

  void add(const UsageRecord &r);
  void add(const Totals &t);
  bool operator==(const Totals &) const = default;
};

} // namespace llm
