#include "wire.hpp"

#include <gtest/gtest.h>

using namespace llm;

namespace {

const TimeMs k_now = 1'700'000'000'000;

std::string route_error(const std::string &body) {
  RouteRequest r;
  auto e = parse_route_request(body, r);
  return e ? e->code + ": " + e->message : "";
}

} // namespace

TEST(Wire, RouteRequestFields) {
  RouteRequest r;
  ASSERT_FALSE(parse_route_request(
      R"({"key_hash":"ab","team":"t1","model":"auto","api":"anthropic",
          "prompt_tokens":1200,"max_tokens":64,"stream":true,"messages":3,
          "features":{"tools":true},"complexity":"high",
          "prompt_shape":{"system_blocks":1,"last_user_index":2,
                          "client_breakpoints":1,"client_paths":["system.0"]}})",
      r));
  EXPECT_EQ(r.model, "auto");
  EXPECT_EQ(r.api, "anthropic");
  EXPECT_EQ(r.prompt_tokens, 1200);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.tools);
  EXPECT_FALSE(r.images);
  ASSERT_TRUE(r.complexity.has_value());
  EXPECT_EQ(r.shape.last_user_index, 2);
  ASSERT_EQ(r.shape.client_paths.size(), 1u);
  EXPECT_EQ(r.shape.client_paths[0], "system.0");
}

TEST(Wire, RouteRequestRefusals) {
  EXPECT_EQ(route_error(R"({"model":"m")").rfind("invalid_json: ", 0), 0u);
  EXPECT_EQ(route_error(R"({"prompt_tokens":1})"),
            "invalid_request: model: required");
  EXPECT_EQ(route_error(R"({"model":"m","prompt_tokens":1,"api":"x"})"),
            "invalid_request: api: must be openai or anthropic");
  EXPECT_EQ(route_error(R"({"model":"m","prompt_tokens":1,
                            "complexity":"huge"})"),
            "invalid_request: complexity: must be low, medium or high");
  EXPECT_NE(route_error(R"({"model":"m","prompt_tokens":1,
                            "prompt_shape":{"client_breakpoints":5}})"),
            "");
  EXPECT_NE(route_error("[]"), "");
}

TEST(Wire, UsageBatchKeepsValidRecordsAndNamesTheOthers) {
  std::vector<UsageRecord> records;
  std::vector<std::string> rejected;
  ASSERT_FALSE(parse_usage_batch(
      R"({"records":[
          {"request_id":"a","model":"m","prompt_tokens":5,"status":499},
          {"request_id":"","model":"m"},
          {"request_id":"b","served_model":"s","ts":"2025-01-01T00:00:00Z"},
          {"request_id":"c","model":"m","ts":"yesterday"},
          {"request_id":"d\u0001","model":"m"},
          3]})",
      k_now, records, rejected));
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].request_id, "a");
  EXPECT_EQ(records[0].status, 499);
  EXPECT_EQ(records[0].ts, k_now);
  EXPECT_EQ(records[0].usage_source, "upstream");
  EXPECT_EQ(records[1].ts, 1'735'689'600'000);
  ASSERT_EQ(rejected.size(), 4u);
  EXPECT_EQ(rejected[0], "records[1].request_id: must not be empty");
  EXPECT_EQ(rejected[1], "records[3].ts: must be ISO 8601 UTC or unix ms");
}

TEST(Wire, UsageBatchRefusedAsAWhole) {
  std::vector<UsageRecord> records;
  std::vector<std::string> rejected;
  auto e = parse_usage_batch(R"({"record":[]})", k_now, records, rejected);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, "invalid_request");
  EXPECT_EQ(e->message, "records: required");
  e = parse_usage_batch("{", k_now, records, rejected);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, "invalid_json");
  EXPECT_TRUE(records.empty() && rejected.empty());
}
