// UTC time helpers: ISO 8601 parsing and formatting, day arithmetic.
#pragma once

#include "domain/types.hpp"

#include <optional>
#include <string>
#include <string_view>

namespace llm {

inline constexpr TimeMs k_ms_per_day = 86'400'000;

// Days since 1970-01-01 (UTC) for a timestamp; floors negative values.
std::int64_t day_index(TimeMs t);
TimeMs day_start(std::int64_t day);

// Civil date <-> days since epoch (proleptic Gregorian).
std::int64_t days_from_civil(int y, unsigned m, unsigned d);
void civil_from_days(std::int64_t z, int &y, unsigned &m, unsigned &d);

// "2026-11-22", "2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123Z",
// "+hh:mm" offsets accepted; a bare integer is unix milliseconds.
std::optional<TimeMs> parse_time(std::string_view s);
std::string format_time(TimeMs t);        // 2026-11-22T10:00:00.123Z
std::string format_day(std::int64_t day); // 2026-11-22

TimeMs now_ms();

} // namespace llm
