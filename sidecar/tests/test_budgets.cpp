#include "domain/budgets.hpp"
#include "domain/time.hpp"

#include <gtest/gtest.h>

using namespace llm;

namespace {
TimeMs at(const char *iso) { return *parse_time(iso); }
} // namespace

TEST(Budgets, DayWindowIsUtcMidnight) {
  auto w = window_range(Window::day, 0, at("2026-11-22T23:59:59.999Z"));
  EXPECT_EQ(w.start, at("2026-11-22T00:00:00Z"));
  EXPECT_EQ(w.end, at("2026-11-23T00:00:00Z"));
}

TEST(Budgets, WeekStartsMonday) {
  // 2026-11-22 is a Sunday: its ISO week began Monday 2026-11-16.
  auto w = window_range(Window::week, 0, at("2026-11-22T10:00:00Z"));
  EXPECT_EQ(w.start, at("2026-11-16T00:00:00Z"));
  EXPECT_EQ(w.end, at("2026-11-23T00:00:00Z"));
  w = window_range(Window::week, 0, at("2026-11-23T00:00:00Z"));
  EXPECT_EQ(w.start, at("2026-11-23T00:00:00Z"));
}

TEST(Budgets, CalendarMonthHandlesDecemberAndLeapYears) {
  auto w = window_range(Window::month, 0, at("2026-12-31T23:00:00Z"));
  EXPECT_EQ(w.start, at("2026-12-01T00:00:00Z"));
  EXPECT_EQ(w.end, at("2027-01-01T00:00:00Z"));
  w = window_range(Window::month, 0, at("2028-02-29T12:00:00Z"));
  EXPECT_EQ(w.end, at("2028-03-01T00:00:00Z"));
}

TEST(Budgets, ThirtyDayWindowsFromAnchor) {
  const TimeMs anchor = at("2026-11-01T15:30:00Z");
  auto w = window_range(Window::days30, anchor, at("2026-11-30T23:00:00Z"));
  EXPECT_EQ(w.start, at("2026-11-01T00:00:00Z"));
  EXPECT_EQ(w.end, at("2026-12-01T00:00:00Z"));
  w = window_range(Window::days30, anchor, at("2026-12-01T00:00:00Z"));
  EXPECT_EQ(w.start, at("2026-12-01T00:00:00Z"));
  EXPECT_EQ(w.end, at("2026-12-31T00:00:00Z"));
}

TEST(Budgets, LevelsAtDowngradeShareAndLimit) {
  EXPECT_EQ(budget_level(79, 100, 800), BudgetLevel::ok);
  EXPECT_EQ(budget_level(80, 100, 800), BudgetLevel::near);
  EXPECT_EQ(budget_level(100, 100, 800), BudgetLevel::exceeded);
  EXPECT_EQ(budget_level(99, 100, 0), BudgetLevel::ok);
  EXPECT_EQ(budget_level(0, 0, 800), BudgetLevel::exceeded);
}

TEST(Budgets, AlertsFireOncePerWindow) {
  Budget b;
  b.scope = Scope::team;
  b.id = "t1";
  b.limit = 1'000'000;
  AlertTracker t;
  const TimeMs w1 = at("2026-11-01T00:00:00Z");
  EXPECT_TRUE(t.due(b, w1, 499'999).empty());
  auto due = t.due(b, w1, 850'000);
  ASSERT_EQ(due, (std::vector<int>{50, 80}));
  for (int th : due) {
    EXPECT_TRUE(t.mark(b, w1, th));
  }
  EXPECT_FALSE(t.mark(b, w1, 50));
  EXPECT_EQ(t.due(b, w1, 900'000), std::vector<int>{});
  EXPECT_EQ(t.due(b, w1, 1'000'000), std::vector<int>{100});
  // A new window starts over.
  const TimeMs w2 = at("2026-12-01T00:00:00Z");
  EXPECT_EQ(t.due(b, w2, 600'000), std::vector<int>{50});
  t.prune(at("2027-02-01T00:00:00Z"));
  EXPECT_TRUE(t.marks().empty());
}

TEST(Budgets, ParseNames) {
  EXPECT_EQ(parse_window("30d"), Window::days30);
  EXPECT_EQ(std::string(window_name(Window::days30)), "30d");
  EXPECT_FALSE(parse_window("year"));
  EXPECT_EQ(parse_scope("key"), Scope::key);
  EXPECT_FALSE(parse_scope("org"));
}
