// The set of request ids the ledger's dedup window remembers: a flat,
// open-addressing hash table (linear probing, backward-shift deletion) of
// 128-bit digests. One 16-byte slot per id and no allocation per insert,
// where std::unordered_set allocated a node per id and chased pointers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace llm {

// A request id as the dedup window remembers it: 128 bits of hash, not the
// string (see id_digest()).
struct IdDigest {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  bool operator==(const IdDigest &) const = default;
};

class IdSet {
public:
  // false if d was there already
  bool insert(const IdDigest &d);
  bool contains(const IdDigest &d) const;
  // starts loading d's slot into the cache: a batch prefetches all its ids
  // before inserting them, so the misses of a large table overlap
  void prefetch(const IdDigest &d) const {
    if (!m_slots.empty()) {
      __builtin_prefetch(&m_slots[home(d)]);
    }
  }
  // false if d was not there
  bool erase(const IdDigest &d);
  std::size_t size() const { return m_size + (m_has_zero ? 1 : 0); }
  std::size_t capacity() const { return m_slots.size(); }
  void clear();

private:
  std::size_t home(const IdDigest &d) const {
    // the digest is a hash already: mix both halves, keep the top bits
    const std::uint64_t h =
        (d.lo ^ (d.hi * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
    return static_cast<std::size_t>(h >> m_shift);
  }
  // the slot holding d, or the empty slot where it would go
  std::size_t find(const IdDigest &d) const;
  void grow();

  // the all-zero digest marks an empty slot; a real one is kept aside
  std::vector<IdDigest> m_slots;
  std::size_t m_size = 0; // non-zero digests in m_slots
  unsigned m_shift = 64;  // 64 - log2(capacity)
  bool m_has_zero = false;
};

} // namespace llm
