#include "domain/id_set.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <set>
#include <utility>

using namespace llm;

namespace {

std::pair<std::uint64_t, std::uint64_t> key(const IdDigest &d) {
  return {d.hi, d.lo};
}

} // namespace

TEST(IdSet, InsertFindErase) {
  IdSet s;
  const IdDigest a{1, 2}, b{3, 4};
  EXPECT_FALSE(s.contains(a));
  EXPECT_FALSE(s.erase(a));
  EXPECT_TRUE(s.insert(a));
  EXPECT_FALSE(s.insert(a));
  EXPECT_TRUE(s.contains(a));
  EXPECT_FALSE(s.contains(b));
  EXPECT_TRUE(s.insert(b));
  EXPECT_EQ(s.size(), 2u);
  EXPECT_TRUE(s.erase(a));
  EXPECT_FALSE(s.contains(a));
  EXPECT_TRUE(s.contains(b));
  EXPECT_EQ(s.size(), 1u);
  EXPECT_TRUE(s.insert(a));
  EXPECT_EQ(s.size(), 2u);
}

TEST(IdSet, TheAllZeroDigestIsAnIdLikeAnyOther) {
  IdSet s;
  const IdDigest zero{};
  EXPECT_FALSE(s.contains(zero));
  EXPECT_TRUE(s.insert(zero));
  EXPECT_FALSE(s.insert(zero));
  EXPECT_TRUE(s.contains(zero));
  EXPECT_EQ(s.size(), 1u);
  EXPECT_TRUE(s.insert(IdDigest{0, 1}));
  EXPECT_TRUE(s.erase(zero));
  EXPECT_FALSE(s.contains(zero));
  EXPECT_TRUE(s.contains(IdDigest{0, 1}));
  EXPECT_EQ(s.size(), 1u);
}

TEST(IdSet, GrowsAndStaysAtMostHalfFull) {
  IdSet s;
  for (std::uint64_t i = 1; i <= 10000; ++i) {
    ASSERT_TRUE(s.insert(IdDigest{i, i * 7}));
    ASSERT_LE(s.size() * 2, s.capacity());
  }
  for (std::uint64_t i = 1; i <= 10000; ++i) {
    ASSERT_TRUE(s.contains(IdDigest{i, i * 7}));
  }
  EXPECT_FALSE(s.contains(IdDigest{10001, 70007}));
  EXPECT_EQ(s.size(), 10000u);
}

// a dedup window: ids come in and the oldest leave, as in the ledger; the
// set must agree with std::set at every step (backward-shift deletion
// across wrapped runs included: small values of hi collide a lot)
TEST(IdSet, AgreesWithStdSetUnderASlidingWindow) {
  std::mt19937_64 rng(42);
  IdSet s;
  std::set<std::pair<std::uint64_t, std::uint64_t>> ref;
  std::deque<IdDigest> window;
  for (int step = 0; step < 200000; ++step) {
    IdDigest d{rng() % 4096, rng() % 64};
    const bool added = s.insert(d);
    ASSERT_EQ(added, ref.insert(key(d)).second) << step;
    if (added) {
      window.push_back(d);
    }
    if (window.size() > 300 || (rng() % 3 == 0 && !window.empty())) {
      const IdDigest old = window.front();
      window.pop_front();
      ASSERT_TRUE(s.erase(old)) << step;
      ref.erase(key(old));
      ASSERT_FALSE(s.contains(old)) << step;
    }
    ASSERT_EQ(s.size(), ref.size()) << step;
    if (step % 997 == 0) {
      for (const auto &w : window) {
        ASSERT_TRUE(s.contains(w)) << step;
      }
    }
  }
}
