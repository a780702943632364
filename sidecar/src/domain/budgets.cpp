#include "domain/budgets.hpp"

#include "domain/time.hpp"

#include <cstdio>

namespace llm {

std::optional<Scope> parse_scope(const std::string &s) {
  if (s == "key") {
    return Scope::key;
  }
  if (s == "team") {
    return Scope::team;
  }
  return std::nullopt;
}

std::optional<Window> parse_window(const std::string &s) {
  if (s == "day") {
    return Window::day;
  }
  if (s == "week") {
    return Window::week;
  }
  if (s == "30d") {
    return Window::days30;
  }
  if (s == "month") {
    return Window::month;
  }
  return std::nullopt;
}

const char *scope_name(Scope s) { return s == Scope::key ? "key" : "team"; }

const char *window_name(Window w) {
  switch (w) {
  case Window::day:
    return "day";
  case Window::week:
    return "week";
  case Window::days30:
    return "30d";
  case Window::month:
    return "month";
  }
  return "month";
}

WindowRange window_range(Window w, TimeMs anchor, TimeMs now) {
  const std::int64_t day = day_index(now);
  switch (w) {
  case Window::day:
    return {day_start(day), day_start(day + 1)};
  case Window::week: {
    // 1970-01-01 was a Thursday: Monday-based weekday is (day + 3) % 7.
    const std::int64_t wd = ((day + 3) % 7 + 7) % 7;
    return {day_start(day - wd), day_start(day - wd + 7)};
  }
  case Window::days30: {
    const std::int64_t a = day_index(anchor);
    std::int64_t k = (day - a) / 30;
    if ((day - a) % 30 < 0) {
      --k;
    }
    return {day_start(a + 30 * k), day_start(a + 30 * (k + 1))};
  }
  case Window::month: {
    int y;
    unsigned m, d;
    civil_from_days(day, y, m, d);
    const std::int64_t first = days_from_civil(y, m, 1);
    const std::int64_t next =
        m == 12 ? days_from_civil(y + 1, 1, 1) : days_from_civil(y, m + 1, 1);
    return {day_start(first), day_start(next)};
  }
  }
  return {day_start(day), day_start(day + 1)};
}

BudgetLevel budget_level(Micros spent, Micros limit, int downgrade_permille) {
  if (spent >= limit) {
    return BudgetLevel::exceeded;
  }
  if (downgrade_permille > 0 &&
      static_cast<__int128>(spent) * 1000 >=
          static_cast<__int128>(limit) * downgrade_permille) {
    return BudgetLevel::near;
  }
  return BudgetLevel::ok;
}

std::string format_usd(Micros m) {
  char buf[40];
  const bool neg = m < 0;
  const unsigned long long a = neg ? 0ULL - static_cast<unsigned long long>(m)
                                   : static_cast<unsigned long long>(m);
  std::snprintf(buf, sizeof buf, "%s%llu.%06llu", neg ? "-" : "", a / 1'000'000,
                a % 1'000'000);
  return buf;
}

std::string AlertTracker::mark_key(const Budget &b, TimeMs window_start,
                                   int threshold) {
  return std::to_string(window_start) + "|" + scope_name(b.scope) + "|" + b.id +
         "|" + std::to_string(threshold);
}

std::vector<int> AlertTracker::due(const Budget &b, TimeMs window_start,
                                   Micros spent) const {
  std::vector<int> out;
  for (int t : b.thresholds) {
    const bool reached = static_cast<__int128>(spent) * 100 >=
                         static_cast<__int128>(b.limit) * t;
    if (reached && !marked(mark_key(b, window_start, t))) {
      out.push_back(t);
    }
  }
  return out;
}

bool AlertTracker::mark(const Budget &b, TimeMs window_start, int threshold) {
  return insert(mark_key(b, window_start, threshold));
}

bool AlertTracker::marked(const std::string &k) const {
  return m_marks.count(k) != 0;
}

bool AlertTracker::insert(const std::string &k) {
  return m_marks.insert(k).second;
}

void AlertTracker::prune(TimeMs before) {
  // Windows last at most 31 days; marks older than that are dead.
  const TimeMs cutoff = before - 32 * 86'400'000LL;
  for (auto it = m_marks.begin(); it != m_marks.end();) {
    const TimeMs start = std::stoll(it->substr(0, it->find('|')));
    it = start < cutoff ? m_marks.erase(it) : std::next(it);
  }
}

} // namespace llm
