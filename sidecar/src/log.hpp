// Minimal leveled logging to stderr, one line per event, UTC timestamps.
#pragma once

#include <string>

namespace llm {

enum class LogLevel { debug, info, warn, error };

void set_log_level(LogLevel level);
bool parse_log_level(const std::string &s, LogLevel &out);
void log(LogLevel level, const std::string &msg);

inline void log_debug(const std::string &m) { log(LogLevel::debug, m); }
inline void log_info(const std::string &m) { log(LogLevel::info, m); }
inline void log_warn(const std::string &m) { log(LogLevel::warn, m); }
inline void log_error(const std::string &m) { log(LogLevel::error, m); }

} // namespace llm
