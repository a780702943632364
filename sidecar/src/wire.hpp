// Request bodies of the module's calls, JSON -> domain structs: POST
// /v1/route and POST /v1/usage. Pure (no I/O, no engine): the handlers
// call them, the unit tests and the libFuzzer targets (fuzz/) too.
#pragma once

#include "domain/router.hpp"
#include "domain/types.hpp"

#include <optional>
#include <string>
#include <vector>

namespace llm {

// Why a body is refused as a whole: the API error code and message.
struct WireError {
  std::string code; // invalid_json | invalid_request
  std::string message;
};

// POST /v1/route: nullopt and `out` filled, or why the body is refused.
std::optional<WireError> parse_route_request(const std::string &body,
                                             RouteRequest &out);

// POST /v1/usage: nullopt with the valid records in `records` (their ts
// defaults to `now`) and one message per invalid record in `rejected`, or
// why the whole batch is refused.
std::optional<WireError> parse_usage_batch(const std::string &body, TimeMs now,
                                           std::vector<UsageRecord> &records,
                                           std::vector<std::string> &rejected);

} // namespace llm
