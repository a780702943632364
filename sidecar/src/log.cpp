#include "log.hpp"

#include "domain/time.hpp"

#include <atomic>
#include <cstdio>

namespace llm {

namespace {
std::atomic<LogLevel> g_level{LogLevel::info};
const char *const k_names[] = {"debug", "info", "warn", "error"};
} // namespace

void set_log_level(LogLevel level) { g_level = level; }

bool parse_log_level(const std::string &s, LogLevel &out) {
  for (int i = 0; i < 4; ++i) {
    if (s == k_names[i]) {
      out = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

void log(LogLevel level, const std::string &msg) {
  if (level < g_level.load(std::memory_order_relaxed)) {
    return;
  }
  // One fprintf per line: stdio locks the stream, lines do not interleave.
  std::fprintf(stderr, "%s llm-sidecar %s: %s\n", format_time(now_ms()).c_str(),
               k_names[static_cast<int>(level)], msg.c_str());
}

} // namespace llm
