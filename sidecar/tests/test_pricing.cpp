#include "domain/budgets.hpp"
#include "domain/pricing.hpp"

#include <gtest/gtest.h>

using namespace llm;

namespace {
// claude-sonnet-like: $3 in, $15 out, $0.30 read, $3.75 write per Mtok.
const ModelPrice k_price{3'000'000, 15'000'000, 300'000, 3'750'000};
} // namespace

TEST(Pricing, EachTokenClassAtItsOwnRate) {
  // 10k prompt of which 6k cached and 2k written: 2k uncached.
  // 2000*3 + 6000*0.3 + 2000*3.75 + 1000*15 = 6000+1800+7500+15000 USD/M
  EXPECT_EQ(usage_cost(k_price, 10'000, 6'000, 2'000, 1'000), 30'300);
}

TEST(Pricing, OneMillionTokensCostTheListPrice) {
  EXPECT_EQ(usage_cost(k_price, 1'000'000, 0, 0, 0), 3'000'000);
  EXPECT_EQ(usage_cost(k_price, 0, 0, 0, 1'000'000), 15'000'000);
}

TEST(Pricing, RoundsHalfUpOnceNoDrift) {
  const ModelPrice p{150'000, 600'000, 75'000, 0}; // gpt-4o-mini
  EXPECT_EQ(usage_cost(p, 10, 0, 0, 0), 2);        // 1.5 -> 2
  EXPECT_EQ(usage_cost(p, 3, 0, 0, 0), 0);         // 0.45 -> 0
  // One big record is exact regardless of rounding.
  EXPECT_EQ(usage_cost(p, 123'456'789, 0, 0, 0), 18'518'518);
}

TEST(Pricing, NegativeAndInconsistentCountsClampToZero) {
  EXPECT_EQ(usage_cost(k_price, 100, 500, 0, -5), 150); // 500 cached @0.3
  EXPECT_EQ(usage_cost(k_price, -1, 0, 0, 0), 0);
}

TEST(Pricing, HugeCountsDoNotOverflow) {
  const ModelPrice p{100'000'000, 400'000'000, 0, 0}; // $100/$400
  EXPECT_EQ(usage_cost(p, 0, 0, 0, 1'000'000'000'000LL), 400'000'000'000'000LL);
}

TEST(Pricing, FormatUsdIsExact) {
  EXPECT_EQ(format_usd(1'250'000), "1.250000");
  EXPECT_EQ(format_usd(7), "0.000007");
  EXPECT_EQ(format_usd(-3'000'001), "-3.000001");
}

TEST(Pricing, TotalsCountErrorsAndTokens) {
  UsageRecord a;
  a.prompt_tokens = 10;
  a.cached_tokens = 4;
  a.completion_tokens = 3;
  a.status = 200;
  a.cost = 5;
  UsageRecord b = a;
  b.status = 503;
  Totals t;
  t.add(a);
  t.add(b);
  EXPECT_EQ(t.requests, 2);
  EXPECT_EQ(t.errors, 1);
  EXPECT_EQ(t.prompt_tokens, 20);
  EXPECT_EQ(t.cached_tokens, 8);
  EXPECT_EQ(t.cost, 10);
}
