#include "domain/prompt_cache.hpp"

#include <gtest/gtest.h>

using namespace llm;

namespace {
PromptShape shape() {
  PromptShape s;
  s.tools_count = 3;
  s.tools_tokens = 1500;
  s.system_blocks = 2;
  s.system_tokens = 2000;
  s.last_user_index = 4;
  s.last_user_blocks = 1;
  return s;
}
const PromptCacheParams k_params{};
} // namespace

TEST(PromptCache, PlacesSystemRollingTurnAndTools) {
  auto bp = anthropic_breakpoints(shape(), 9000, 5, 1024, k_params);
  ASSERT_EQ(bp.size(), 3u);
  EXPECT_EQ(bp[0], "/system/1");
  EXPECT_EQ(bp[1], "/messages/4/content/0");
  EXPECT_EQ(bp[2], "/tools/2");
}

TEST(PromptCache, OnlyWhereThePrefixReachesTheMinimum) {
  auto s = shape();
  s.tools_tokens = 500;   // tools prefix 500 < 2048
  s.system_tokens = 1000; // system prefix 1500 < 2048
  auto bp = anthropic_breakpoints(s, 9000, 5, 2048, k_params);
  ASSERT_EQ(bp.size(), 1u);
  EXPECT_EQ(bp[0], "/messages/4/content/0");
  EXPECT_TRUE(anthropic_breakpoints(s, 1800, 5, 2048, k_params).empty());
}

TEST(PromptCache, CountsClientMarkersTowardTheLimit) {
  auto s = shape();
  s.client_breakpoints = 3;
  auto bp = anthropic_breakpoints(s, 9000, 5, 1024, k_params);
  ASSERT_EQ(bp.size(), 1u);
  EXPECT_EQ(bp[0], "/system/1");
  s.client_breakpoints = 4;
  EXPECT_TRUE(anthropic_breakpoints(s, 9000, 5, 1024, k_params).empty());
}

TEST(PromptCache, NeverOnAClientMarker) {
  auto s = shape();
  s.client_breakpoints = 1;
  s.client_paths = {"/system/1"};
  auto bp = anthropic_breakpoints(s, 9000, 5, 1024, k_params);
  ASSERT_EQ(bp.size(), 2u);
  EXPECT_EQ(bp[0], "/messages/4/content/0");
  EXPECT_EQ(bp[1], "/tools/2");
}

TEST(PromptCache, RollingTurnOnlyForConversations) {
  auto bp = anthropic_breakpoints(shape(), 9000, 1, 1024, k_params);
  ASSERT_EQ(bp.size(), 2u);
  EXPECT_EQ(bp[0], "/system/1");
  EXPECT_EQ(bp[1], "/tools/2");
}

TEST(PromptCache, StringFieldsPointAtTheField) {
  PromptShape s;
  s.system_tokens = 3000; // "system": "..." as a plain string
  s.last_user_index = 2;  // content as a plain string
  auto bp = anthropic_breakpoints(s, 8000, 3, 1024, k_params);
  ASSERT_EQ(bp.size(), 2u);
  EXPECT_EQ(bp[0], "/system");
  EXPECT_EQ(bp[1], "/messages/2/content");
}

TEST(PromptCache, DisabledPlacesNothing) {
  PromptCacheParams p;
  p.enabled = false;
  EXPECT_TRUE(anthropic_breakpoints(shape(), 9000, 5, 1024, p).empty());
}

TEST(PromptCache, KeyIsStablePerTenantAndPrefix) {
  const auto a = prompt_cache_key("t1", "abc");
  EXPECT_EQ(a, prompt_cache_key("t1", "abc"));
  EXPECT_NE(a, prompt_cache_key("t2", "abc"));
  EXPECT_NE(a, prompt_cache_key("t1", "abd"));
  EXPECT_EQ(a.size(), 20u);
  EXPECT_EQ(a.rfind("pck_", 0), 0u);
  EXPECT_TRUE(prompt_cache_key("t1", "").empty());
}
