#include "domain/id_ranges.hpp"

#include <algorithm>

namespace llm {

namespace {

bool hex64(std::string_view s, std::uint64_t &v) {
  v = 0;
  for (const char c : s) {
    std::uint64_t d;
    if (c >= '0' && c <= '9') {
      d = static_cast<std::uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      d = static_cast<std::uint64_t>(c - 'a' + 10);
    } else {
      return false;
    }
    v = (v << 4) | d;
  }
  return true;
}

void put_hex64(std::string &s, std::size_t at, std::uint64_t v) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) {
    s[at + static_cast<std::size_t>(i)] = hex[(v >> (60 - 4 * i)) & 0xf];
  }
}

// the first interval whose lo is above n
std::vector<IdRange>::iterator after(std::vector<IdRange> &v, std::uint64_t n) {
  if (v.empty() || v.back().lo <= n) {
    return v.end(); // the common case: n extends the newest interval
  }
  return std::upper_bound(
      v.begin(), v.end(), n,
      [](std::uint64_t x, const IdRange &r) { return x < r.lo; });
}

} // namespace

bool IdRanges::parse(std::string_view id, std::uint64_t &prefix,
                     std::uint64_t &counter) {
  return id.size() == 32 && hex64(id.substr(0, 16), prefix) &&
         hex64(id.substr(16), counter);
}

bool IdRanges::insert(std::uint64_t prefix, std::uint64_t n, TimeMs ts) {
  std::vector<IdRange> &v = m_gens[prefix];
  auto it = after(v, n);
  const bool has_prev = it != v.begin();
  if (has_prev && std::prev(it)->hi >= n) {
    return false;
  }
  // prev->hi < n <= UINT64_MAX and n < it->lo: no overflow below
  const bool join_prev = has_prev && std::prev(it)->hi + 1 == n;
  const bool join_next = it != v.end() && it->lo == n + 1;
  if (join_prev && join_next) {
    IdRange &p = *std::prev(it);
    p.hi = it->hi;
    p.last = std::max({p.last, it->last, ts});
    v.erase(it);
    --m_ranges;
  } else if (join_prev) {
    IdRange &p = *std::prev(it);
    p.hi = n;
    p.last = std::max(p.last, ts);
  } else if (join_next) {
    it->lo = n;
    it->last = std::max(it->last, ts);
  } else {
    v.insert(it, IdRange{n, n, ts});
    ++m_ranges;
  }
  return true;
}

bool IdRanges::contains(std::uint64_t prefix, std::uint64_t n) const {
  auto g = m_gens.find(prefix);
  if (g == m_gens.end()) {
    return false;
  }
  const std::vector<IdRange> &v = g->second;
  auto it = std::upper_bound(
      v.begin(), v.end(), n,
      [](std::uint64_t x, const IdRange &r) { return x < r.lo; });
  return it != v.begin() && std::prev(it)->hi >= n;
}

void IdRanges::insert_range(std::uint64_t prefix, std::uint64_t lo,
                            std::uint64_t hi, TimeMs ts) {
  if (lo > hi) {
    return;
  }
  std::vector<IdRange> &v = m_gens[prefix];
  // the first interval touching [lo, hi]: its hi reaches lo - 1
  // (the intervals are disjoint and sorted: their his are sorted too)
  auto first = std::partition_point(v.begin(), v.end(), [lo](const IdRange &r) {
    return lo != 0 && r.hi < lo - 1;
  });
  IdRange m{lo, hi, ts};
  auto last = first;
  while (last != v.end() && (hi == UINT64_MAX || last->lo <= hi + 1)) {
    m.lo = std::min(m.lo, last->lo);
    m.hi = std::max(m.hi, last->hi);
    m.last = std::max(m.last, last->last);
    ++last;
  }
  m_ranges -= static_cast<std::size_t>(last - first);
  first = v.erase(first, last);
  v.insert(first, m);
  ++m_ranges;
}

void IdRanges::expire(TimeMs before) {
  for (auto g = m_gens.begin(); g != m_gens.end();) {
    std::vector<IdRange> &v = g->second;
    const std::size_t n = v.size();
    std::erase_if(v, [before](const IdRange &r) { return r.last < before; });
    m_ranges -= n - v.size();
    if (v.empty()) {
      g = m_gens.erase(g);
    } else {
      if (v.capacity() > 2 * v.size() + 8) {
        v.shrink_to_fit();
      }
      ++g;
    }
  }
}

void IdRanges::clear() {
  m_gens.clear();
  m_ranges = 0;
}

std::string IdRanges::text(std::uint64_t prefix, const IdRange &r) {
  std::string s(49, '~');
  put_hex64(s, 1, prefix);
  put_hex64(s, 17, r.lo);
  put_hex64(s, 33, r.hi);
  return s;
}

bool IdRanges::parse_text(std::string_view text, std::uint64_t &prefix,
                          std::uint64_t &lo, std::uint64_t &hi) {
  return text.size() == 49 && text[0] == '~' &&
         hex64(text.substr(1, 16), prefix) && hex64(text.substr(17, 16), lo) &&
         hex64(text.substr(33, 16), hi) && lo <= hi;
}

} // namespace llm
