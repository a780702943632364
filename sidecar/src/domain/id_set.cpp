#include "domain/id_set.hpp"

namespace llm {

namespace {

constexpr std::size_t k_min_capacity = 64;

bool empty(const IdDigest &d) { return d.hi == 0 && d.lo == 0; }

} // namespace

std::size_t IdSet::find(const IdDigest &d) const {
  const std::size_t mask = m_slots.size() - 1;
  std::size_t i = home(d);
  while (!empty(m_slots[i]) && !(m_slots[i] == d)) {
    i = (i + 1) & mask;
  }
  return i;
}

bool IdSet::insert(const IdDigest &d) {
  if (empty(d)) {
    const bool added = !m_has_zero;
    m_has_zero = true;
    return added;
  }
  // at most half full: probes stay short
  if ((m_size + 1) * 2 > m_slots.size()) {
    grow();
  }
  const std::size_t i = find(d);
  if (!empty(m_slots[i])) {
    return false;
  }
  m_slots[i] = d;
  ++m_size;
  return true;
}

bool IdSet::contains(const IdDigest &d) const {
  if (empty(d)) {
    return m_has_zero;
  }
  return !m_slots.empty() && !empty(m_slots[find(d)]);
}

bool IdSet::erase(const IdDigest &d) {
  if (empty(d)) {
    const bool had = m_has_zero;
    m_has_zero = false;
    return had;
  }
  if (m_slots.empty()) {
    return false;
  }
  const std::size_t mask = m_slots.size() - 1;
  std::size_t i = find(d);
  if (empty(m_slots[i])) {
    return false;
  }
  // backward shift: move up every later entry of the run that may sit at
  // i (its home is not cyclically within (i, j]), so no tombstones
  for (std::size_t j = (i + 1) & mask; !empty(m_slots[j]);
       j = (j + 1) & mask) {
    const std::size_t k = home(m_slots[j]);
    const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      m_slots[i] = m_slots[j];
      i = j;
    }
  }
  m_slots[i] = IdDigest{};
  --m_size;
  return true;
}

void IdSet::clear() {
  m_slots.clear();
  m_size = 0;
  m_shift = 64;
  m_has_zero = false;
}

void IdSet::grow() {
  std::vector<IdDigest> old;
  old.swap(m_slots);
  const std::size_t cap = old.empty() ? k_min_capacity : old.size() * 2;
  m_slots.assign(cap, IdDigest{});
  m_shift = 64 - static_cast<unsigned>(__builtin_ctzll(cap));
  const std::size_t mask = cap - 1;
  for (const IdDigest &d : old) {
    if (!empty(d)) {
      std::size_t i = home(d);
      while (!empty(m_slots[i])) {
        i = (i + 1) & mask;
      }
      m_slots[i] = d;
    }
  }
}

} // namespace llm
