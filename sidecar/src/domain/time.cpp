#include "domain/time.hpp"

#include <charconv>
#include <chrono>
#include <cstdio>

namespace llm {

std::int64_t day_index(TimeMs t) {
  std::int64_t d = t / k_ms_per_day;
  if (t % k_ms_per_day < 0) {
    --d;
  }
  return d;
}

TimeMs day_start(std::int64_t day) { return day * k_ms_per_day; }

// Howard Hinnant's public-domain civil calendar algorithms.
std::int64_t days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, int &y, unsigned &m, unsigned &d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = static_cast<int>(yoe + era * 400 + (m <= 2));
}

namespace {

bool digits(std::string_view s, size_t pos, size_t n, int &out) {
  if (pos + n > s.size()) {
    return false;
  }
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') {
      return false;
    }
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

} // namespace

std::optional<TimeMs> parse_time(std::string_view s) {
  if (s.empty()) {
    return std::nullopt;
  }
  bool all_digits = true;
  for (char c : s) {
    all_digits = all_digits && c >= '0' && c <= '9';
  }
  if (all_digits) {
    TimeMs v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) {
      return std::nullopt;
    }
    return v;
  }
  int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
  if (!digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' ||
      !digits(s, 5, 2, mo) || s[7] != '-' || !digits(s, 8, 2, d)) {
    return std::nullopt;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31) {
    return std::nullopt;
  }
  size_t p = 10;
  std::int64_t offset_min = 0;
  if (p < s.size()) {
    if ((s[p] != 'T' && s[p] != ' ') || !digits(s, p + 1, 2, h) ||
        s.size() < p + 9 || s[p + 3] != ':' || !digits(s, p + 4, 2, mi) ||
        s[p + 6] != ':' || !digits(s, p + 7, 2, sec)) {
      return std::nullopt;
    }
    if (h > 23 || mi > 59 || sec > 60) {
      return std::nullopt;
    }
    p += 9;
    if (p < s.size() && s[p] == '.') {
      ++p;
      int scale = 100;
      while (p < s.size() && s[p] >= '0' && s[p] <= '9') {
        ms += (s[p] - '0') * scale;
        scale /= 10;
        ++p;
      }
    }
    if (p < s.size()) {
      if (s[p] == 'Z') {
        ++p;
      } else if (s[p] == '+' || s[p] == '-') {
        int oh, om;
        if (!digits(s, p + 1, 2, oh) || s.size() < p + 6 || s[p + 3] != ':' ||
            !digits(s, p + 4, 2, om)) {
          return std::nullopt;
        }
        offset_min = (oh * 60 + om) * (s[p] == '+' ? 1 : -1);
        p += 6;
      }
    }
    if (p != s.size()) {
      return std::nullopt;
    }
  }
  const std::int64_t days =
      days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return days * k_ms_per_day + ((h * 60 + mi) * 60 + sec) * 1000LL + ms -
         offset_min * 60'000;
}

std::string format_day(std::int64_t day) {
  int y;
  unsigned m, d;
  civil_from_days(day, y, m, d);
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", y, m, d);
  return buf;
}

std::string format_time(TimeMs t) {
  const std::int64_t day = day_index(t);
  const std::int64_t rem = t - day * k_ms_per_day;
  char buf[40];
  std::snprintf(
      buf, sizeof buf, "%sT%02d:%02d:%02d.%03dZ", format_day(day).c_str(),
      static_cast<int>(rem / 3'600'000), static_cast<int>(rem / 60'000 % 60),
      static_cast<int>(rem / 1000 % 60), static_cast<int>(rem % 1000));
  return buf;
}

TimeMs now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
      .count();
}

} // namespace llm
