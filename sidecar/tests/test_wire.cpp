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

// The module's record shape, every member a distinct value: each key
// lands in its own field on the fast path ("tier" and unknown keys are
// ignored).
TEST(Wire, UsageRecordEveryMemberInItsField) {
  std::vector<UsageRecord> records;
  std::vector<std::string> rejected;
  ASSERT_FALSE(parse_usage_batch(
      R"({"records":[{"request_id":"rid","key_hash":"kh","team":"tm",
          "model":"mo","served_model":"sm","upstream":"up",
          "prompt_tokens":1,"cached_tokens":2,"cache_write_tokens":3,
          "completion_tokens":4,"reasoning_tokens":5,
          "usage_source":"estimated","status":206,"ttft_ms":7,
          "duration_ms":8,"cache_status":"cs","tier":"primary",
          "zzzzzzzzzzzz":1,"ts":1700000000123}]})",
      k_now, records, rejected));
  ASSERT_EQ(records.size(), 1u);
  ASSERT_TRUE(rejected.empty());
  const UsageRecord &r = records[0];
  EXPECT_EQ(r.request_id, "rid");
  EXPECT_EQ(r.key_hash, "kh");
  EXPECT_EQ(r.team, "tm");
  EXPECT_EQ(r.model, "mo");
  EXPECT_EQ(r.served_model, "sm");
  EXPECT_EQ(r.upstream, "up");
  EXPECT_EQ(r.usage_source, "estimated");
  EXPECT_EQ(r.cache_status, "cs");
  EXPECT_EQ(r.prompt_tokens, 1);
  EXPECT_EQ(r.cached_tokens, 2);
  EXPECT_EQ(r.cache_write_tokens, 3);
  EXPECT_EQ(r.completion_tokens, 4);
  EXPECT_EQ(r.reasoning_tokens, 5);
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.ttft_ms, 7);
  EXPECT_EQ(r.duration_ms, 8);
  EXPECT_EQ(r.ts, 1700000000123);
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
