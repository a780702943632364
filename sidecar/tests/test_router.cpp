#include "domain/router.hpp"

#include <gtest/gtest.h>

using namespace llm;

namespace {

ModelInfo model(std::string name, std::string api, int tier, std::int64_t in,
                std::int64_t out, std::int64_t ctx) {
  ModelInfo m;
  m.name = std::move(name);
  m.api = std::move(api);
  m.provider = m.api;
  m.upstream = m.api + "_pool";
  m.tier = tier;
  m.price = {in, out, in / 10, in + in / 4};
  m.context_window = ctx;
  m.max_output_tokens = 16384;
  m.min_cacheable_tokens = 1024;
  m.images = true;
  return m;
}

RouterConfig config() {
  RouterConfig c;
  c.models = {
      model("mini", "openai", 1, 150'000, 600'000, 128'000),
      model("mini-b", "openai", 1, 160'000, 640'000, 128'000),
      model("big", "openai", 3, 2'500'000, 10'000'000, 128'000),
      model("huge-ctx", "openai", 3, 2'000'000, 8'000'000, 1'000'000),
      model("sonnet", "anthropic", 3, 3'000'000, 15'000'000, 200'000),
      model("haiku", "anthropic", 1, 1'000'000, 5'000'000, 200'000),
  };
  c.models[4].min_cacheable_tokens = 1024;
  c.aliases = {{"auto", "", ""},
               {"fast", "", "small"},
               {"smart", "", "large"},
               {"default", "mini", ""}};
  c.classes = {
      {"small", 1, 4000, {Complexity::low, Complexity::medium}, false, {}},
      {"large", 3, 0, {}, {}, {}},
  };
  c.allow = {{"*", {"*"}}, {"restricted", {"mini*", "haiku"}}};
  return c;
}

RouteRequest request(std::string model, std::int64_t prompt = 1000) {
  RouteRequest r;
  r.key_hash = "ab12cd34";
  r.team = "t1";
  r.model = std::move(model);
  r.prompt_tokens = prompt;
  r.max_tokens = 256;
  return r;
}

const BudgetStatus k_ok{};
const StatsTable k_no_stats{};

} // namespace

TEST(Router, AutoPicksCheapestModelOfTheClass) {
  Router r(config());
  auto d = r.decide(request("auto"), k_ok, k_no_stats);
  ASSERT_TRUE(d.allow);
  EXPECT_EQ(d.target.model, "mini");
  EXPECT_EQ(d.target.upstream, "openai_pool");
  EXPECT_EQ(d.class_name, "small");
  EXPECT_EQ(d.ttl_ms, 5000);
  ASSERT_FALSE(d.fallbacks.empty());
  EXPECT_EQ(d.fallbacks.front().model, "mini-b");
}

TEST(Router, DeclaredComplexityAndToolsRaiseTheClass) {
  Router r(config());
  auto req = request("auto");
  req.complexity = Complexity::high;
  req.api = "openai";
  auto d = r.decide(req, k_ok, k_no_stats);
  ASSERT_TRUE(d.allow);
  EXPECT_EQ(d.class_name, "large");
  EXPECT_EQ(d.target.model, "huge-ctx"); // cheapest tier-3 openai model
}

TEST(Router, ApiRestrictsCandidates) {
  Router r(config());
  auto req = request("smart");
  req.api = "anthropic";
  auto d = r.decide(req, k_ok, k_no_stats);
  ASSERT_TRUE(d.allow);
  EXPECT_EQ(d.target.model, "sonnet");
  EXPECT_TRUE(d.fallbacks.empty());
}

TEST(Router, AliasToFixedModel) {
  Router r(config());
  auto d = r.decide(request("default"), k_ok, k_no_stats);
  ASSERT_TRUE(d.allow);
  EXPECT_EQ(d.target.model, "mini");
  EXPECT_EQ(d.reason, "requested model");
}

TEST(Router, TeamAllowList) {
  Router r(config());
  auto req = request("big");
  req.team = "restricted";
  auto d = r.decide(req, k_ok, k_no_stats);
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.code, DenyCode::model_not_allowed);
  EXPECT_NE(d.reason.find("restricted"), std::string::npos);

  // Aliases only route among allowed models.
  req.model = "smart";
  d = r.decide(req, k_ok, k_no_stats);
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.code, DenyCode::model_not_allowed);
}

TEST(Router, UnknownModelIsDenied) {
  Router r(config());
  auto d = r.decide(request("gpt-9"), k_ok, k_no_stats);
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.code, DenyCode::model_not_allowed);
}

TEST(Router, ContextFallbackToLargerModel) {
  Router r(config());
  auto d = r.decide(request("big", 300'000), k_ok, k_no_stats);
  ASSERT_TRUE(d.allow);
  EXPECT_EQ(d.target.model, "huge-ctx");
  EXPECT_NE(d.reason.find("context_fallback"), std::string::npos);
}

TEST(Router, ContextDeniedEarlyWhenNothingFits) {
  Router r(config());
  auto d = r.decide(request("big", 2'000'000), k_ok, k_no_stats);
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.code, DenyCode::context_length_exceeded);
  d = r.decide(request("auto", 2'000'000), k_ok, k_no_stats);
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.code, DenyCode::context_length_exceeded);
}

TEST(Router, MaxTokensCapFromModelAndContext) {
  Router r(config());
  auto d = r.decide(request("mini", 120'000), k_ok, k_no_stats);
  ASSERT_TRUE(d.allow);
  EXPECT_EQ(d.max_tokens_cap, 8'000); // 128000 - 120000
  d = r.decide(request("mini", 10), k_ok, k_no_stats);
  EXPECT_EQ(d.max_tokens_cap, 16'384);
}

TEST(Router, AdaptiveChoiceAvoidsFailingEquivalent) {
  Router r(config());
  StatsTable stats;
  for (int i = 0; i < 20; ++i) {
    stats["mini"].observe(503, 0);
    stats["mini-b"].observe(200, 300);
  }
  auto d = r.decide(request("auto"), k_ok, stats);
  ASSERT_TRUE(d.allow);
  EXPECT_EQ(d.target.model, "mini-b");
  EXPECT_EQ(d.fallbacks.front().model, "mini");
}

TEST(Router, AdaptiveChoicePrefersLowerLatency) {
  Router r(config());
  StatsTable stats;
  for (int i = 0; i < 20; ++i) {
    stats["mini"].observe(200, 4000);
    stats["mini-b"].observe(200, 200);
  }
  EXPECT_EQ(r.decide(request("auto"), k_ok, stats).target.model, "mini-b");
}

TEST(Router, NonEquivalentCostIsNotTradedForLatency) {
  auto cfg = config();
  cfg.routing.equivalence_cost_ratio = 1.0;
  Router r(cfg);
  StatsTable stats;
  stats["mini"].observe(200, 9000);
  EXPECT_EQ(r.decide(request("auto"), k_ok, stats).target.model, "mini");
}

TEST(Router, BudgetExceededDenies) {
  Router r(config());
  BudgetStatus b{BudgetLevel::exceeded, "team t1 budget exhausted"};
  auto d = r.decide(request("auto"), b, k_no_stats);
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.code, DenyCode::budget_exceeded);
  EXPECT_EQ(d.ttl_ms, 1000);
}

TEST(Router, BudgetNearDowngradesExplicitModelWithinClass) {
  Router r(config());
  BudgetStatus b{BudgetLevel::near, "team t1 budget at 85%"};
  auto d = r.decide(request("big"), b, k_no_stats);
  ASSERT_TRUE(d.allow);
  EXPECT_TRUE(d.downgraded);
  EXPECT_EQ(d.target.model, "mini"); // request classifies as small
  EXPECT_NE(d.reason.find("budget_downgrade"), std::string::npos);
  EXPECT_EQ(d.ttl_ms, 1000);
}

TEST(Router, BudgetNearDowngradesSmartAlias) {
  Router r(config());
  BudgetStatus b{BudgetLevel::near, "key budget at 90%"};
  auto d = r.decide(request("smart"), b, k_no_stats);
  ASSERT_TRUE(d.allow);
  EXPECT_TRUE(d.downgraded);
  EXPECT_EQ(d.target.model, "mini");
  // A large request stays in its class.
  auto big = request("smart", 10'000);
  big.api = "openai";
  d = r.decide(big, b, k_no_stats);
  EXPECT_EQ(d.target.model, "huge-ctx");
  EXPECT_FALSE(d.downgraded);
}

TEST(Router, PromptCacheKeyForOpenAIBreakpointsForAnthropic) {
  Router r(config());
  auto req = request("mini");
  req.prefix_hash = "deadbeef";
  auto d = r.decide(req, k_ok, k_no_stats);
  EXPECT_EQ(d.prompt_cache_key, prompt_cache_key("t1", "deadbeef"));
  EXPECT_TRUE(d.breakpoints.empty());

  req = request("sonnet", 5000);
  req.shape.system_blocks = 1;
  req.shape.system_tokens = 2000;
  d = r.decide(req, k_ok, k_no_stats);
  EXPECT_TRUE(d.prompt_cache_key.empty());
  ASSERT_EQ(d.breakpoints.size(), 1u);
  EXPECT_EQ(d.breakpoints[0], "/system/0");
}

TEST(Router, StatsIgnoreClientErrors) {
  ModelStats s;
  s.observe(400, 100);
  EXPECT_EQ(s.samples, 0);
  EXPECT_DOUBLE_EQ(s.success, 1.0);
  s.observe(429, 0);
  EXPECT_LT(s.success, 1.0);
}
