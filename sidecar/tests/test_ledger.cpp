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

TEST(Ledger, RunsOfTheSameCellAddUpLikeSingleRecords) {
  // apply() keeps the cells of the last record for the next one of the
  // same day, key, team and model: any change of one must leave it
  Ledger l;
  const char *d1 = "2026-11-22T10:00:00Z";
  const char *d2 = "2026-11-23T10:00:00Z";
  l.apply(rec("a", "k1", "t1", "mini", d1, 1));
  l.apply(rec("b", "k1", "t1", "mini", d1, 2));
  l.apply(rec("c", "k1", "t1", "mini", d2, 4));  // day
  l.apply(rec("d", "k2", "t1", "mini", d2, 8));  // key
  l.apply(rec("e", "k2", "t2", "mini", d2, 16)); // team
  l.apply(rec("f", "k2", "t2", "big", d2, 32));  // model
  l.apply(rec("g", "k1", "t1", "mini", d1, 64)); // back to the first
  l.apply(rec("g", "k1", "t1", "mini", d1, 64)); // duplicate
  const std::int64_t day1 = day_index(*parse_time(d1));
  const std::int64_t day2 = day_index(*parse_time(d2));
  EXPECT_EQ(l.spent(Scope::key, "k1", day1, day1 + 1), 67);
  EXPECT_EQ(l.spent(Scope::key, "k1", day2, day2 + 1), 4);
  EXPECT_EQ(l.spent(Scope::key, "k2", day2, day2 + 1), 56);
  EXPECT_EQ(l.spent(Scope::team, "t1", day1, day2 + 1), 79);
  EXPECT_EQ(l.spent(Scope::team, "t2", day1, day2 + 1), 48);
  EXPECT_EQ(l.total().requests, 7);
  EXPECT_EQ(l.total().cost, 127);
  const auto &cube = l.cube();
  EXPECT_EQ(cube.size(), 5u);
  EXPECT_EQ(cube.at(CubeKey{day1, "k1", "t1", "mini"}).requests, 3);
  EXPECT_EQ(cube.at(CubeKey{day1, "k1", "t1", "mini"}).cost, 67);
}

TEST(Ledger, ACopyKeepsItsOwnCells) {
  Ledger a;
  const char *d = "2026-11-22T10:00:00Z";
  a.apply(rec("a", "k1", "t1", "mini", d, 1));
  Ledger b = a;
  b.apply(rec("b", "k1", "t1", "mini", d, 2));
  a.apply(rec("c", "k1", "t1", "mini", d, 4));
  const std::int64_t day = day_index(*parse_time(d));
  EXPECT_EQ(a.spent(Scope::key, "k1", day, day + 1), 5);
  EXPECT_EQ(b.spent(Scope::key, "k1", day, day + 1), 3);
  EXPECT_EQ(a.cube().at(CubeKey{day, "k1", "t1", "mini"}).requests, 2);
  EXPECT_EQ(b.cube().at(CubeKey{day, "k1", "t1", "mini"}).requests, 2);
}

TEST(Ledger, ApplyWithTheCallersDigest) {
  Ledger l;
  auto r = rec("r1", "k1", "t1", "mini", "2026-11-22T10:00:00Z", 100);
  EXPECT_EQ(l.apply(r, id_digest(r.request_id)), Ledger::Result::accepted);
  EXPECT_EQ(l.apply(r), Ledger::Result::duplicate);
  EXPECT_TRUE(l.seen("r1"));
}
