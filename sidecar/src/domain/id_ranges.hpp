// The dedup window for the module's request ids ($llm_request_id: 16 hex
// digits of a random prefix drawn once per worker process, then 16 of the
// worker's request counter). Per prefix (one worker lifetime, a
// "generation") it keeps a sorted vector of disjoint counter intervals
// [lo, hi] that merge as holes fill, each with the newest record time it
// absorbed. Records of a worker arrive nearly in counter order, so memory
// is O(generations x holes), not O(records).
//
// Expiry drops an interval that absorbed no record for the window, and a
// generation when its last interval goes: the counters of a running worker
// stay remembered as long as its records keep extending the same interval
// (a window per worker generation), a hole (a counter that never produced
// a record) costs one interval for at most the window.
#pragma once

#include "domain/types.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace llm {

struct IdRange {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0; // inclusive
  TimeMs last = 0;      // newest record time merged in
  bool operator==(const IdRange &) const = default;
};

class IdRanges {
public:
  // A module-shaped id: exactly 32 lowercase hex digits. Any other string
  // (upper case, other lengths) belongs to the digest set.
  static bool parse(std::string_view id, std::uint64_t &prefix,
                    std::uint64_t &counter);

  // false if (prefix, n) was there already
  bool insert(std::uint64_t prefix, std::uint64_t n, TimeMs ts);
  bool contains(std::uint64_t prefix, std::uint64_t n) const;
  // Snapshot restore: merges [lo, hi] (lo <= hi) with what is there.
  void insert_range(std::uint64_t prefix, std::uint64_t lo, std::uint64_t hi,
                    TimeMs ts);
  // Drops the intervals with no record since `before`, then the empty
  // generations.
  void expire(TimeMs before);
  void clear();

  std::size_t generations() const { return m_gens.size(); }
  std::size_t ranges() const { return m_ranges; }
  const std::unordered_map<std::uint64_t, std::vector<IdRange>> &all() const {
    return m_gens;
  }

  // A snapshot entry: "~" + 48 hex digits (prefix, lo, hi).
  static std::string text(std::uint64_t prefix, const IdRange &r);
  // false if `text` is not such an entry
  static bool parse_text(std::string_view text, std::uint64_t &prefix,
                         std::uint64_t &lo, std::uint64_t &hi);

private:
  std::unordered_map<std::uint64_t, std::vector<IdRange>> m_gens;
  std::size_t m_ranges = 0;
};

} // namespace llm
