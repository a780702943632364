// Ledger logic: idempotent application of usage records and aggregates by
// key, team, model and UTC day. In memory; durability lives in store/.
#pragma once

#include "domain/budgets.hpp"
#include "domain/id_ranges.hpp"
#include "domain/id_set.hpp"
#include "domain/types.hpp"

#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace llm {

// The dedup window. Ids of the module's shape (32 lowercase hex digits: a
// per-worker prefix and counter) are remembered as counter intervals per
// prefix (IdRanges): O(worker lifetimes x holes) memory, not O(records).
// Any other id (API users may post arbitrary strings) is remembered as a
// 128-bit digest (IdSet) with an expiry queue. Snapshots store an interval
// as "~" and 48 hex digits, a digest as "#" and 32 hex digits; a plain id
// (older snapshots) is hashed, or put in its interval if module-shaped.
IdDigest id_digest(std::string_view id);
std::string id_digest_text(const IdDigest &d);
// The digest of a snapshot entry: "#" + 32 hex digits, or a plain id.
IdDigest id_digest_restore(std::string_view text);

struct CubeKey {
  std::int64_t day = 0;
  std::string key;
  std::string team;
  std::string model;
  bool operator==(const CubeKey &) const = default;
};

struct CubeKeyHash {
  std::size_t operator()(const CubeKey &k) const;
};

enum class GroupBy { key, team, model, day };
std::optional<GroupBy> parse_group_by(const std::string &s);

struct SpendQuery {
  GroupBy group_by = GroupBy::team;
  std::optional<std::string> key;
  std::optional<std::string> team;
  std::optional<std::string> model;
  std::int64_t from_day = INT64_MIN; // inclusive
  std::int64_t to_day = INT64_MAX;   // inclusive
};

struct SpendRow {
  std::string group;
  Totals totals;
};

using Cube = std::unordered_map<CubeKey, Totals, CubeKeyHash>;

// Group and filter a cube (local or read back from Redis); rows sorted by
// group name.
std::vector<SpendRow> query_cube(const Cube &cube, const SpendQuery &q);

class Ledger {
public:
  enum class Result { accepted, duplicate };

  // The record's cost must already be set. Duplicates (same request_id
  // within the dedup window) change nothing.
  Result apply(const UsageRecord &r);
  // The same with d = id_digest(r.request_id) computed by the caller.
  Result apply(const UsageRecord &r, const IdDigest &d);
  // A hint before apply()ing a batch: loads the dedup slots of its ids.
  void prefetch(const UsageRecord &r) const {
    std::uint64_t p, n;
    if (!IdRanges::parse(r.request_id, p, n)) {
      m_ids.prefetch(id_digest(r.request_id));
    }
  }
  void prefetch(const IdDigest &d) const { m_ids.prefetch(d); }
  bool seen(const std::string &request_id) const;
  // Forget request ids whose record is older than `before`.
  void expire_ids(TimeMs before);

  // Spend of a key or team over days [from_day, to_day).
  Micros spent(Scope scope, const std::string &id, std::int64_t from_day,
               std::int64_t to_day) const;

  std::vector<SpendRow> query(const SpendQuery &q) const;
  Totals total() const { return m_total; }
  const Cube &cube() const { return m_cube; }
  // digests plus counter intervals: the snapshot entries of the window
  std::size_t remembered_ids() const {
    return m_ids.size() + m_ranges.ranges();
  }
  const IdRanges &id_ranges() const { return m_ranges; }
  // The window as snapshot entries: (time, "~..." or "#..." text), for
  // restore_id().
  std::vector<std::pair<TimeMs, std::string>> id_entries() const;

  // Snapshot restore.
  void restore_cell(const CubeKey &k, const Totals &t);
  void restore_id(const std::string &id, TimeMs ts);

private:
  void add_cell(const CubeKey &k, const Totals &t);

  // The cells the last applied record went to: records of a batch come
  // in runs of the same day, key, team and model, which then skip the
  // three hash lookups and the copy of the key. Nodes of the maps are
  // never erased, so the pointers stay valid.
  struct LastCell {
    const CubeKey *key = nullptr;
    Totals *cell = nullptr;
    Micros *key_day = nullptr;
    Micros *team_day = nullptr;

    LastCell() = default;
    // a copy of a ledger has its own nodes: it starts without
    LastCell(const LastCell &) {}
    LastCell &operator=(const LastCell &) {
      key = nullptr;
      return *this;
    }
  };
  LastCell m_last;

  Cube m_cube;
  std::unordered_map<std::string, std::map<std::int64_t, Micros>> m_key_days;
  std::unordered_map<std::string, std::map<std::int64_t, Micros>> m_team_days;
  IdRanges m_ranges;
  IdSet m_ids;
  std::deque<std::pair<TimeMs, IdDigest>> m_id_order;
  Totals m_total;
};

} // namespace llm
