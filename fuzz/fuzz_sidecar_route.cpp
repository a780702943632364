// libFuzzer target for the sidecar's POST /v1/route body parser
// (sidecar/src/wire.cpp): any bytes give a request or an API error, never
// a crash or another exception; an accepted request keeps the ranges the
// parser promises, and parsing the same body twice gives the same result
// (the parser object is reused per thread).

#include "wire.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#define check(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "fuzz_sidecar_route: %s:%d: %s\n", __FILE__,        \
                   __LINE__, #cond);                                           \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string body(reinterpret_cast<const char *>(data), size);

  llm::RouteRequest r;
  const auto err = llm::parse_route_request(body, r);

  llm::RouteRequest again;
  const auto err2 = llm::parse_route_request(body, again);
  check(err.has_value() == err2.has_value());

  if (err) {
    check(err->code == "invalid_json" || err->code == "invalid_request");
    check(!err->message.empty());
    check(err->message == err2->message);
    return 0;
  }

  check(r.api.empty() || r.api == "openai" || r.api == "anthropic");
  check(r.prompt_tokens >= 0 && r.max_tokens >= 0 && r.messages >= 0);
  check(r.shape.last_user_index >= -1);
  check(r.shape.client_breakpoints >= 0 && r.shape.client_breakpoints <= 4);
  check(r.shape.tools_count >= 0 && r.shape.tools_tokens >= 0);
  check(r.shape.system_blocks >= 0 && r.shape.system_tokens >= 0);
  check(r.shape.last_user_blocks >= 0);

  check(again.model == r.model && again.team == r.team &&
        again.key_hash == r.key_hash && again.api == r.api &&
        again.prompt_tokens == r.prompt_tokens &&
        again.prefix_hash == r.prefix_hash &&
        again.complexity == r.complexity &&
        again.shape.client_paths == r.shape.client_paths);

  return 0;
}
