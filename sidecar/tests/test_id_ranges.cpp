#include "domain/id_ranges.hpp"
#include "domain/ledger.hpp"
#include "domain/time.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <set>

using namespace llm;

namespace {

std::vector<IdRange> ranges_of(const IdRanges &s, std::uint64_t prefix) {
  auto it = s.all().find(prefix);
  return it == s.all().end() ? std::vector<IdRange>{} : it->second;
}

// "<prefix><counter>", as the module's $llm_request_id
std::string module_id(std::uint64_t prefix, std::uint64_t n) {
  char b[33];
  std::snprintf(b, sizeof(b), "%016llx%016llx",
                static_cast<unsigned long long>(prefix),
                static_cast<unsigned long long>(n));
  return b;
}

UsageRecord rec(std::string id, TimeMs ts) {
  UsageRecord r;
  r.request_id = std::move(id);
  r.key_hash = "k";
  r.team = "t";
  r.model = "m";
  r.ts = ts;
  r.cost = 1;
  r.status = 200;
  return r;
}

} // namespace

TEST(IdRanges, ParsesOnlyTheModuleShape) {
  std::uint64_t p = 0, n = 0;
  EXPECT_TRUE(IdRanges::parse("0123456789abcdef00000000000000ff", p, n));
  EXPECT_EQ(p, 0x0123456789abcdefULL);
  EXPECT_EQ(n, 0xffULL);
  EXPECT_TRUE(IdRanges::parse(module_id(UINT64_MAX, UINT64_MAX), p, n));
  EXPECT_EQ(n, UINT64_MAX);
  EXPECT_FALSE(IdRanges::parse("0123456789ABCDEF00000000000000ff", p, n));
  EXPECT_FALSE(IdRanges::parse("0123456789abcdef00000000000000f", p, n));
  EXPECT_FALSE(IdRanges::parse("0123456789abcdef00000000000000fff", p, n));
  EXPECT_FALSE(IdRanges::parse("0123456789abcdef-0000000000000ff", p, n));
  EXPECT_FALSE(IdRanges::parse("req-1", p, n));
  EXPECT_FALSE(IdRanges::parse("", p, n));
}

TEST(IdRanges, InOrderIsOneInterval) {
  IdRanges s;
  for (std::uint64_t n = 1; n <= 100000; ++n) {
    ASSERT_TRUE(s.insert(7, n, static_cast<TimeMs>(n)));
  }
  EXPECT_EQ(s.ranges(), 1u);
  EXPECT_EQ(s.generations(), 1u);
  EXPECT_EQ(ranges_of(s, 7), (std::vector<IdRange>{{1, 100000, 100000}}));
  EXPECT_TRUE(s.contains(7, 1));
  EXPECT_TRUE(s.contains(7, 100000));
  EXPECT_FALSE(s.contains(7, 0));
  EXPECT_FALSE(s.contains(7, 100001));
  EXPECT_FALSE(s.contains(8, 5));
}

TEST(IdRanges, DuplicatesAreRefused) {
  IdRanges s;
  EXPECT_TRUE(s.insert(1, 5, 10));
  EXPECT_FALSE(s.insert(1, 5, 20));
  EXPECT_TRUE(s.insert(1, 6, 30));
  EXPECT_FALSE(s.insert(1, 5, 40));
  EXPECT_FALSE(s.insert(1, 6, 40));
  EXPECT_TRUE(s.insert(2, 5, 40)); // another worker
  EXPECT_EQ(ranges_of(s, 1), (std::vector<IdRange>{{5, 6, 30}}));
}

TEST(IdRanges, HolesFillAndMerge) {
  IdRanges s;
  for (std::uint64_t n : {1, 2, 5, 9, 10}) {
    ASSERT_TRUE(s.insert(3, n, static_cast<TimeMs>(n)));
  }
  EXPECT_EQ(ranges_of(s, 3),
            (std::vector<IdRange>{{1, 2, 2}, {5, 5, 5}, {9, 10, 10}}));
  EXPECT_FALSE(s.contains(3, 3));
  EXPECT_TRUE(s.insert(3, 4, 40)); // joins the next
  EXPECT_TRUE(s.insert(3, 6, 60)); // joins the previous
  EXPECT_EQ(ranges_of(s, 3),
            (std::vector<IdRange>{{1, 2, 2}, {4, 6, 60}, {9, 10, 10}}));
  EXPECT_TRUE(s.insert(3, 3, 30)); // fills the hole: both sides merge
  EXPECT_EQ(ranges_of(s, 3), (std::vector<IdRange>{{1, 6, 60}, {9, 10, 10}}));
  EXPECT_TRUE(s.insert(3, 8, 1));
  EXPECT_TRUE(s.insert(3, 7, 1));
  EXPECT_EQ(ranges_of(s, 3), (std::vector<IdRange>{{1, 10, 60}}));
  EXPECT_EQ(s.ranges(), 1u);
  EXPECT_TRUE(s.insert(3, 0, 1)); // below the first
  EXPECT_TRUE(s.insert(3, UINT64_MAX, 1));
  EXPECT_TRUE(s.insert(3, UINT64_MAX - 1, 1));
  EXPECT_FALSE(s.insert(3, UINT64_MAX, 1));
  EXPECT_EQ(
      ranges_of(s, 3),
      (std::vector<IdRange>{{0, 10, 60}, {UINT64_MAX - 1, UINT64_MAX, 1}}));
}

TEST(IdRanges, OutOfOrderMatchesAPlainSet) {
  // records of many workers, each in a shuffled window of its counters
  // (streams finish out of order), with duplicates: the same answers as a
  // std::set, and a handful of intervals at the end
  std::mt19937_64 rng(42);
  IdRanges s;
  std::set<std::pair<std::uint64_t, std::uint64_t>> ref;
  const std::uint64_t prefixes[] = {rng(), rng(), rng(), 0, UINT64_MAX};
  for (std::uint64_t p : prefixes) {
    std::vector<std::uint64_t> ns(20000);
    std::iota(ns.begin(), ns.end(), 1);
    for (std::size_t i = 0; i + 64 <= ns.size(); i += 64) {
      std::shuffle(ns.begin() + static_cast<std::ptrdiff_t>(i),
                   ns.begin() + static_cast<std::ptrdiff_t>(i + 64), rng);
    }
    for (std::size_t i = 0; i < ns.size(); ++i) {
      const std::uint64_t n = ns[i];
      ASSERT_EQ(s.insert(p, n, 1), ref.insert({p, n}).second);
      if (rng() % 10 == 0) { // a replayed record
        const std::uint64_t d = ns[i - std::min<std::size_t>(i, rng() % 100)];
        ASSERT_EQ(s.insert(p, d, 1), ref.insert({p, d}).second);
      }
    }
  }
  EXPECT_EQ(s.generations(), 5u);
  EXPECT_EQ(s.ranges(), 5u); // every hole filled
  for (int i = 0; i < 10000; ++i) {
    const std::uint64_t p = prefixes[rng() % 5], n = rng() % 20010;
    ASSERT_EQ(s.contains(p, n), ref.count({p, n}) == 1) << p << " " << n;
  }
}

TEST(IdRanges, ManyPrefixes) {
  IdRanges s;
  for (std::uint64_t p = 0; p < 5000; ++p) {
    for (std::uint64_t n = 1; n <= 20; ++n) {
      ASSERT_TRUE(s.insert(p * 0x9e3779b97f4a7c15ULL, n, 1));
    }
    ASSERT_TRUE(s.insert(p * 0x9e3779b97f4a7c15ULL, 30, 1)); // a hole
  }
  EXPECT_EQ(s.generations(), 5000u);
  EXPECT_EQ(s.ranges(), 10000u);
  EXPECT_TRUE(s.contains(4999 * 0x9e3779b97f4a7c15ULL, 20));
  EXPECT_FALSE(s.contains(4999 * 0x9e3779b97f4a7c15ULL, 25));
}

TEST(IdRanges, ExpiryDropsIdleIntervalsThenGenerations) {
  IdRanges s;
  s.insert(1, 1, 100);
  s.insert(1, 2, 200);
  s.insert(1, 4, 150); // hole at 3: [4] idle since 150
  s.insert(2, 1, 50);  // a worker gone since 50
  s.expire(120);
  EXPECT_EQ(s.generations(), 1u);
  EXPECT_FALSE(s.contains(2, 1));
  EXPECT_TRUE(s.contains(1, 1)); // its interval took a record at 200
  s.expire(180);
  EXPECT_EQ(ranges_of(s, 1), (std::vector<IdRange>{{1, 2, 200}}));
  EXPECT_EQ(s.ranges(), 1u);
  s.expire(201);
  EXPECT_EQ(s.generations(), 0u);
  EXPECT_EQ(s.ranges(), 0u);
  EXPECT_TRUE(s.insert(1, 1, 300)); // forgotten: accepted again
}

TEST(IdRanges, TextRoundTrip) {
  const IdRange r{3, UINT64_MAX, 9};
  const std::string t = IdRanges::text(0xfedcba9876543210ULL, r);
  EXPECT_EQ(t, "~fedcba98765432100000000000000003ffffffffffffffff");
  std::uint64_t p, lo, hi;
  ASSERT_TRUE(IdRanges::parse_text(t, p, lo, hi));
  EXPECT_EQ(p, 0xfedcba9876543210ULL);
  EXPECT_EQ(lo, 3u);
  EXPECT_EQ(hi, UINT64_MAX);
  EXPECT_FALSE(IdRanges::parse_text(t.substr(1), p, lo, hi));
  EXPECT_FALSE(IdRanges::parse_text(
      "~fedcba9876543210000000000000000400000000000000003", p, lo, hi));
  EXPECT_FALSE(IdRanges::parse_text(
      "~fedcba98765432100000000000000004000000000000000x", p, lo, hi));
}

TEST(IdRanges, InsertRangeMerges) {
  IdRanges s;
  s.insert(1, 1, 1);
  s.insert(1, 5, 5);
  s.insert(1, 10, 10);
  s.insert(1, 20, 20);
  s.insert_range(1, 2, 9, 7); // touches [1], [5] and [10]
  EXPECT_EQ(ranges_of(s, 1), (std::vector<IdRange>{{1, 10, 10}, {20, 20, 20}}));
  s.insert_range(1, 30, 40, 3);
  s.insert_range(1, 0, 0, 3);
  EXPECT_EQ(ranges_of(s, 1),
            (std::vector<IdRange>{{0, 10, 10}, {20, 20, 20}, {30, 40, 3}}));
  s.insert_range(1, 12, UINT64_MAX, 50);
  EXPECT_EQ(ranges_of(s, 1),
            (std::vector<IdRange>{{0, 10, 10}, {12, UINT64_MAX, 50}}));
  EXPECT_EQ(s.ranges(), 2u);
}

TEST(LedgerDedup, ModuleIdsUseIntervalsOthersDigests) {
  Ledger l;
  const TimeMs t = *parse_time("2026-11-22T00:00:00Z");
  for (std::uint64_t n = 1; n <= 1000; ++n) {
    ASSERT_EQ(l.apply(rec(module_id(0xabc, n), t)), Ledger::Result::accepted);
  }
  EXPECT_EQ(l.apply(rec(module_id(0xabc, 500), t)), Ledger::Result::duplicate);
  EXPECT_EQ(l.apply(rec("req-1", t)), Ledger::Result::accepted);
  EXPECT_EQ(l.apply(rec("req-1", t)), Ledger::Result::duplicate);
  // upper case hex is another string: the digest set
  std::string up = module_id(0xabc, 0xa);
  std::transform(up.begin(), up.end(), up.begin(), ::toupper);
  EXPECT_EQ(l.apply(rec(up, t)), Ledger::Result::accepted);
  EXPECT_EQ(l.apply(rec(up, t)), Ledger::Result::duplicate);
  EXPECT_EQ(l.id_ranges().ranges(), 1u);
  EXPECT_EQ(l.remembered_ids(), 3u); // one interval, two digests
  EXPECT_TRUE(l.seen(module_id(0xabc, 1000)));
  EXPECT_FALSE(l.seen(module_id(0xabc, 1001)));
  EXPECT_TRUE(l.seen("req-1"));
  EXPECT_EQ(l.total().requests, 1002);
}

TEST(LedgerDedup, SnapshotRoundTrip) {
  Ledger a;
  const TimeMs t = *parse_time("2026-11-22T00:00:00Z");
  for (std::uint64_t n = 1; n <= 100; ++n) {
    if (n % 10 != 3) { // holes
      a.apply(rec(module_id(1, n), t + static_cast<TimeMs>(n)));
    }
    a.apply(rec(module_id(2, n), t));
  }
  a.apply(rec("api-id", t));
  const auto entries = a.id_entries();
  EXPECT_EQ(entries.size(), 11u + 1u + 1u); // intervals of 1, of 2, a digest
  Ledger b;
  for (const auto &[ts, text] : entries) {
    b.restore_id(text, ts);
  }
  EXPECT_EQ(b.id_ranges().all(), a.id_ranges().all());
  EXPECT_EQ(b.remembered_ids(), a.remembered_ids());
  for (std::uint64_t n = 0; n <= 101; ++n) {
    ASSERT_EQ(b.seen(module_id(1, n)), a.seen(module_id(1, n))) << n;
  }
  EXPECT_TRUE(b.seen("api-id"));
  EXPECT_EQ(b.apply(rec(module_id(1, 13), t)), Ledger::Result::accepted);
  EXPECT_EQ(b.apply(rec(module_id(1, 14), t)), Ledger::Result::duplicate);
  a.apply(rec(module_id(1, 13), t));
  // expiry keeps the same clock: interval times survive the round trip
  a.expire_ids(t + 50);
  b.expire_ids(t + 50);
  EXPECT_EQ(b.id_ranges().all(), a.id_ranges().all());
  EXPECT_EQ(a.id_ranges().ranges(), 6u); // [44, 52] .. [94, 100]
}

TEST(LedgerDedup, OlderSnapshotsStillDedup) {
  const TimeMs t = *parse_time("2026-11-22T00:00:00Z");
  Ledger l;
  // a digest of a module id (the previous snapshot format) and a plain
  // module id (older still)
  l.restore_id(id_digest_text(id_digest(module_id(9, 1))), t);
  l.restore_id(module_id(9, 2), t);
  EXPECT_EQ(l.apply(rec(module_id(9, 1), t)), Ledger::Result::duplicate);
  EXPECT_EQ(l.apply(rec(module_id(9, 2), t)), Ledger::Result::duplicate);
  EXPECT_EQ(l.apply(rec(module_id(9, 3), t)), Ledger::Result::accepted);
  EXPECT_EQ(l.id_ranges().ranges(), 1u);
  l.expire_ids(t + 1);
  EXPECT_EQ(l.remembered_ids(), 0u);
  EXPECT_EQ(l.apply(rec(module_id(9, 1), t + 2)), Ledger::Result::accepted);
}
