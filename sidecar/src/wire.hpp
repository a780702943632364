// Request bodies of the module's calls, JSON -> domain structs: POST
// /v1/route and POST /v1/usage. Pure (no I/O, no engine): the handlers
// call them, the unit tests and the libFuzzer targets (fuzz/) too.
#pragma once

#include "domain/router.hpp"
#include "domain/types.hpp"

#include <cstddef>
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

// The same, for the handler: records[0, used) are this batch's valid
// records; records is reused from batch to batch (its strings keep their
// buffers: a steady stream of batches allocates nothing per record). A
// fast pass reads each record; anything unusual takes the exact path that
// names the error, so the messages are those of parse_usage_batch.
std::optional<WireError>
parse_usage_batch_into(const std::string &body, TimeMs now,
                       std::vector<UsageRecord> &records, std::size_t &used,
                       std::vector<std::string> &rejected);

} // namespace llm
