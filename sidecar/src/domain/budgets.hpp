// Budgets per key or team with UTC reset windows, and alert thresholds.
#pragma once

#include "domain/router.hpp"
#include "domain/types.hpp"

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace llm {

enum class Scope { key, team };
enum class Window { day, week, days30, month };

std::optional<Scope> parse_scope(const std::string &s);
std::optional<Window> parse_window(const std::string &s);
const char *scope_name(Scope s);
const char *window_name(Window w); // day | week | 30d | month

struct Budget {
  Scope scope = Scope::team;
  std::string id;
  Micros limit = 0;
  Window window = Window::month;
  std::vector<int> thresholds{50, 80, 100}; // percent, ascending
  TimeMs anchor = 0; // start of the first 30d window (UTC midnight)

  bool operator==(const Budget &) const = default;
};

// [start, end) of the window containing now. day: UTC midnight; week: ISO
// week from Monday 00:00 UTC; 30d: consecutive 30-day periods from the
// anchor's day; month: calendar month.
struct WindowRange {
  TimeMs start;
  TimeMs end;
};
WindowRange window_range(Window w, TimeMs anchor, TimeMs now);

// ok below the downgrade share, near from it, exceeded at 100 %.
BudgetLevel budget_level(Micros spent, Micros limit, int downgrade_permille);

// "1.250000" for 1'250'000 micro-USD; exact, no floating point.
std::string format_usd(Micros m);

// Thresholds reached (spent >= t % of limit) in a window and not yet alerted
// on; each fires once per budget and window.
class AlertTracker {
public:
  std::vector<int> due(const Budget &b, TimeMs window_start,
                       Micros spent) const;
  // Returns false when the mark was already present.
  bool mark(const Budget &b, TimeMs window_start, int threshold);
  bool marked(const std::string &mark_key) const;
  bool insert(const std::string &mark_key);
  // Forget marks of windows that ended before `before`.
  void prune(TimeMs before);
  const std::set<std::string> &marks() const { return m_marks; }

  static std::string mark_key(const Budget &b, TimeMs window_start,
                              int threshold);

private:
  std::set<std::string> m_marks; // "<window_start>|scope|id|threshold"
};

} // namespace llm
