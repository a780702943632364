// libFuzzer target for the sidecar's POST /v1/usage batch parser
// (sidecar/src/wire.cpp): any bytes give records and per-record
// rejections, or an API error for the whole batch, never a crash or
// another exception. Every accepted record is one the ledger can take:
// a request id, a model, strings of at most 512 bytes without control
// characters, counts >= 0, a status in 0..999; each element of the
// records array is either accepted or rejected, never both or neither.

#include "wire.hpp"

#include <simdjson.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define check(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "fuzz_sidecar_usage: %s:%d: %s\n", __FILE__,        \
                   __LINE__, #cond);                                           \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

namespace {

bool clean(const std::string &s) {
  if (s.size() > 512) {
    return false;
  }
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20) {
      return false;
    }
  }
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string body(reinterpret_cast<const char *>(data), size);
  const llm::TimeMs now = 1'700'000'000'000;

  std::vector<llm::UsageRecord> records;
  std::vector<std::string> rejected;
  const auto err = llm::parse_usage_batch(body, now, records, rejected);

  if (err) {
    check(err->code == "invalid_json" || err->code == "invalid_request");
    check(!err->message.empty());
    check(records.empty() && rejected.empty());
    return 0;
  }

  // the batch parsed: count its elements independently
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  simdjson::dom::array items;
  check(parser.parse(body).get(root) == simdjson::SUCCESS);
  check(root["records"].get_array().get(items) == simdjson::SUCCESS);
  check(records.size() + rejected.size() == items.size());

  for (const llm::UsageRecord &r : records) {
    check(!r.request_id.empty());
    check(!r.model.empty() || !r.served_model.empty());
    for (const std::string *s : {&r.request_id, &r.key_hash, &r.team, &r.model,
                                 &r.served_model, &r.upstream}) {
      check(clean(*s));
    }
    check(r.prompt_tokens >= 0 && r.cached_tokens >= 0 &&
          r.cache_write_tokens >= 0 && r.completion_tokens >= 0 &&
          r.reasoning_tokens >= 0 && r.ttft_ms >= 0 && r.duration_ms >= 0);
    check(r.status >= 0 && r.status <= 999);
    check(r.cost == 0);
  }
  for (const std::string &e : rejected) {
    check(e.rfind("records[", 0) == 0);
  }

  return 0;
}
