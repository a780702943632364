#include "domain/ledger.hpp"

#include "domain/prompt_cache.hpp"
#include "domain/time.hpp"

#include <algorithm>

namespace llm {

std::size_t CubeKeyHash::operator()(const CubeKey &k) const {
  std::uint64_t h =
      fnv1a64(k.key, static_cast<std::uint64_t>(k.day) * 0x9e3779b97f4a7c15ULL);
  h = fnv1a64(k.team, h ^ 0x1f);
  h = fnv1a64(k.model, h ^ 0x1e);
  return static_cast<std::size_t>(h);
}

std::optional<GroupBy> parse_group_by(const std::string &s) {
  if (s == "key") {
    return GroupBy::key;
  }
  if (s == "team") {
    return GroupBy::team;
  }
  if (s == "model") {
    return GroupBy::model;
  }
  if (s == "day") {
    return GroupBy::day;
  }
  return std::nullopt;
}

IdDigest id_digest(std::string_view id) {
  // two FNV-1a passes with unrelated offset bases; request ids are not
  // chosen by clients (the module's $llm_request_id)
  return IdDigest{fnv1a64(id), fnv1a64(id, 0x84222325cbf29ce4ULL)};
}

std::string id_digest_text(const IdDigest &d) {
  static const char hex[] = "0123456789abcdef";
  std::string s(33, '#');
  for (int i = 0; i < 16; ++i) {
    s[1 + i] = hex[(d.hi >> (60 - 4 * i)) & 0xf];
    s[17 + i] = hex[(d.lo >> (60 - 4 * i)) & 0xf];
  }
  return s;
}

IdDigest id_digest_restore(std::string_view text) {
  if (text.size() != 33 || text[0] != '#') {
    return id_digest(text);
  }
  IdDigest d;
  for (std::size_t i = 1; i < 33; ++i) {
    const char c = text[i];
    std::uint64_t v;
    if (c >= '0' && c <= '9') {
      v = static_cast<std::uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v = static_cast<std::uint64_t>(c - 'a' + 10);
    } else {
      return id_digest(text);
    }
    std::uint64_t &half = i < 17 ? d.hi : d.lo;
    half = (half << 4) | v;
  }
  return d;
}

Ledger::Result Ledger::apply(const UsageRecord &r) {
  return apply(r, id_digest(r.request_id));
}

Ledger::Result Ledger::apply(const UsageRecord &r, const IdDigest &d) {
  std::uint64_t p, n;
  if (IdRanges::parse(r.request_id, p, n)) {
    // digests of module ids restored from an older snapshot count until
    // they expire
    if ((m_ids.size() > 0 && m_ids.contains(d)) ||
        !m_ranges.insert(p, n, r.ts)) {
      return Result::duplicate;
    }
  } else {
    if (!m_ids.insert(d)) {
      return Result::duplicate;
    }
    m_id_order.emplace_back(r.ts, d);
  }
  Totals t;
  t.add(r);
  const std::int64_t day = day_index(r.ts);
  const LastCell &l = m_last;
  if (l.key != nullptr && l.key->day == day && l.key->key == r.key_hash &&
      l.key->team == r.team && l.key->model == r.billed_model()) {
    l.cell->add(t);
    *l.key_day += t.cost;
    *l.team_day += t.cost;
    m_total.add(t);
    return Result::accepted;
  }
  add_cell(CubeKey{day, r.key_hash, r.team, r.billed_model()}, t);
  return Result::accepted;
}

void Ledger::add_cell(const CubeKey &k, const Totals &t) {
  auto cell = m_cube.try_emplace(k).first;
  cell->second.add(t);
  Micros &key_day = m_key_days[k.key][k.day];
  Micros &team_day = m_team_days[k.team][k.day];
  key_day += t.cost;
  team_day += t.cost;
  m_total.add(t);
  m_last.key = &cell->first;
  m_last.cell = &cell->second;
  m_last.key_day = &key_day;
  m_last.team_day = &team_day;
}

void Ledger::restore_cell(const CubeKey &k, const Totals &t) { add_cell(k, t); }

void Ledger::restore_id(const std::string &id, TimeMs ts) {
  std::uint64_t p, lo, hi;
  if (IdRanges::parse_text(id, p, lo, hi)) {
    m_ranges.insert_range(p, lo, hi, ts);
    return;
  }
  if (IdRanges::parse(id, p, lo)) {
    m_ranges.insert(p, lo, ts);
    return;
  }
  const IdDigest d = id_digest_restore(id);
  if (m_ids.insert(d)) {
    m_id_order.emplace_back(ts, d);
  }
}

bool Ledger::seen(const std::string &id) const {
  std::uint64_t p, n;
  if (IdRanges::parse(id, p, n) && m_ranges.contains(p, n)) {
    return true;
  }
  return m_ids.contains(id_digest(id));
}

std::vector<std::pair<TimeMs, std::string>> Ledger::id_entries() const {
  std::vector<std::pair<TimeMs, std::string>> out;
  out.reserve(m_ranges.ranges() + m_id_order.size());
  for (const auto &[p, v] : m_ranges.all()) {
    for (const IdRange &r : v) {
      out.emplace_back(r.last, IdRanges::text(p, r));
    }
  }
  for (const auto &[ts, d] : m_id_order) {
    out.emplace_back(ts, id_digest_text(d));
  }
  return out;
}

void Ledger::expire_ids(TimeMs before) {
  // Records arrive roughly in time order; an out-of-order old id simply
  // lives a little longer.
  while (!m_id_order.empty() && m_id_order.front().first < before) {
    m_ids.erase(m_id_order.front().second);
    m_id_order.pop_front();
  }
  m_ranges.expire(before);
}

Micros Ledger::spent(Scope scope, const std::string &id, std::int64_t from_day,
                     std::int64_t to_day) const {
  const auto &index = scope == Scope::key ? m_key_days : m_team_days;
  auto it = index.find(id);
  if (it == index.end()) {
    return 0;
  }
  Micros sum = 0;
  for (auto d = it->second.lower_bound(from_day);
       d != it->second.end() && d->first < to_day; ++d) {
    sum += d->second;
  }
  return sum;
}

std::vector<SpendRow> query_cube(const Cube &cube, const SpendQuery &q) {
  std::map<std::string, Totals> groups;
  for (const auto &[k, t] : cube) {
    if (k.day < q.from_day || k.day > q.to_day || (q.key && *q.key != k.key) ||
        (q.team && *q.team != k.team) || (q.model && *q.model != k.model)) {
      continue;
    }
    switch (q.group_by) {
    case GroupBy::key:
      groups[k.key].add(t);
      break;
    case GroupBy::team:
      groups[k.team].add(t);
      break;
    case GroupBy::model:
      groups[k.model].add(t);
      break;
    case GroupBy::day:
      groups[format_day(k.day)].add(t);
      break;
    }
  }
  std::vector<SpendRow> rows;
  rows.reserve(groups.size());
  for (auto &[g, t] : groups) {
    rows.push_back({g, t});
  }
  return rows;
}

std::vector<SpendRow> Ledger::query(const SpendQuery &q) const {
  return query_cube(m_cube, q);
}

} // namespace llm
