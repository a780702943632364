#include "domain/ledger.hpp"
#include "domain/time.hpp"

#include <gtest/gtest.h>

using namespace llm;

namespace {
UsageRecord rec(std::string id, std::string key, std::string team,
                std::string model, const char *ts, Micros cost) {
  UsageRecord r;
  r.request_id = std::move(id);
  r.key_hash = std::move(key);
  r.team = std::move(team);
  r.model = "auto";
  r.served_model = std::move(model);
  r.ts = *parse_time(ts);
  r.cost = cost;
  r.status = 200;
  r.prompt_tokens = 100;
  r.cached_tokens = 25;
  return r;
}
} // namespace

TEST(Ledger, IdempotentByRequestId) {
  Ledger l;
  auto r = rec("r1", "k1", "t1", "mini", "2026-11-22T10:00:00Z", 100);
  EXPECT_EQ(l.apply(r), Ledger::Result::accepted);
  EXPECT_EQ(l.apply(r), Ledger::Result::duplicate);
  EXPECT_EQ(l.total().cost, 100);
  EXPECT_EQ(l.total().requests, 1);
}

TEST(Ledger, AggregatesByEveryDimension) {
  Ledger l;
  l.apply(rec("a", "k1", "t1", "mini", "2026-11-21T10:00:00Z", 100));
  l.apply(rec("b", "k1", "t1", "big", "2026-11-22T10:00:00Z", 1000));
  l.apply(rec("c", "k2", "t2", "mini", "2026-11-22T11:00:00Z", 10));

  SpendQuery q;
  q.group_by = GroupBy::team;
  auto rows = l.query(q);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].group, "t1");
  EXPECT_EQ(rows[0].totals.cost, 1100);
  EXPECT_EQ(rows[1].totals.cost, 10);

  q.group_by = GroupBy::model;
  rows = l.query(q);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].group, "big");
  EXPECT_EQ(rows[1].totals.cost, 110);
  EXPECT_EQ(rows[1].totals.cached_tokens, 50);

  q.group_by = GroupBy::day;
  q.key = "k1";
  rows = l.query(q);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].group, "2026-11-21");
  EXPECT_EQ(rows[1].group, "2026-11-22");

  q.group_by = GroupBy::key;
  q.key.reset();
  q.from_day = day_index(*parse_time("2026-11-22"));
  rows = l.query(q);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].totals.cost, 1000);
}

TEST(Ledger, SpentOverWindowDays) {
  Ledger l;
  l.apply(rec("a", "k1", "t1", "mini", "2026-11-21T10:00:00Z", 100));
  l.apply(rec("b", "k1", "t1", "big", "2026-11-22T10:00:00Z", 1000));
  const auto d22 = day_index(*parse_time("2026-11-22"));
  EXPECT_EQ(l.spent(Scope::key, "k1", d22, d22 + 1), 1000);
  EXPECT_EQ(l.spent(Scope::team, "t1", d22 - 1, d22 + 1), 1100);
  EXPECT_EQ(l.spent(Scope::team, "nobody", 0, d22 + 1), 0);
}

TEST(Ledger, ExpiredIdsAreForgotten) {
  Ledger l;
  l.apply(rec("old", "k", "t", "m", "2026-11-01T00:00:00Z", 1));
  l.apply(rec("new", "k", "t", "m", "2026-11-22T00:00:00Z", 1));
  l.expire_ids(*parse_time("2026-11-10"));
  EXPECT_FALSE(l.seen("old"));
  EXPECT_TRUE(l.seen("new"));
  EXPECT_EQ(l.remembered_ids(), 1u);
}

TEST(Ledger, IdsAreRememberedAsDigests) {
  const IdDigest d = id_digest("req-1");
  EXPECT_EQ(id_digest_text(d).size(), 33u);
  EXPECT_EQ(id_digest_restore(id_digest_text(d)), d);  // snapshot round trip
  EXPECT_EQ(id_digest_restore("req-1"), d);            // older snapshots
  EXPECT_FALSE(id_digest("req-1") == id_digest("req-2"));
  EXPECT_FALSE(id_digest_restore("#0123") == id_digest_restore("#0124"));

  Ledger l;
  l.restore_id(id_digest_text(id_digest("a")), 0);
  EXPECT_TRUE(l.seen("a"));
  EXPECT_EQ(l.apply(rec("a", "k", "t", "m", "2026-11-22T00:00:00Z", 1)),
            Ledger::Result::duplicate);
  EXPECT_EQ(l.apply(rec("b", "k", "t", "m", "2026-11-22T00:00:00Z", 1)),
            Ledger::Result::accepted);
}

TEST(Ledger, RestoreRebuildsIndexes) {
  Ledger a;
  a.apply(rec("x", "k1", "t1", "mini", "2026-11-22T10:00:00Z", 7));
  Ledger b;
  for (const auto &[k, t] : a.cube()) {
    b.restore_cell(k, t);
  }
  b.restore_id("x", 0);
  EXPECT_EQ(b.total(), a.total());
  EXPECT_EQ(b.apply(rec("x", "k1", "t1", "mini", "2026-11-22T10:00:00Z", 7)),
            Ledger::Result::duplicate);
  EXPECT_EQ(b.spent(Scope::team, "t1", 0, INT64_MAX), 7);
}
