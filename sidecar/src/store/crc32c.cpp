#include "store/crc32c.hpp"

#include <array>
#include <cstring>

namespace llm {

namespace {

constexpr std::array<std::uint32_t, 256> make_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) {
      c = (c & 1) ? 0x82f63b78U ^ (c >> 1) : c >> 1;
    }
    t[i] = c;
  }
  return t;
}

constexpr std::array<std::uint32_t, 256> k_table = make_table();

using CrcFn = std::uint32_t (*)(const void *, std::size_t);

CrcFn pick() { return crc32c_hw_available() ? crc32c_hw : crc32c_table; }

} // namespace

std::uint32_t crc32c_table(const void *data, std::size_t len) {
  std::uint32_t c = 0xffffffffU;
  const auto *p = static_cast<const unsigned char *>(data);
  for (std::size_t i = 0; i < len; ++i) {
    c = k_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  }
  return c ^ 0xffffffffU;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

bool crc32c_hw_available() { return __builtin_cpu_supports("sse4.2"); }

__attribute__((target("sse4.2"))) std::uint32_t crc32c_hw(const void *data,
                                                           std::size_t len) {
  const auto *p = static_cast<const unsigned char *>(data);
  std::uint64_t c = 0xffffffffU;
  while (len >= 8) {
    std::uint64_t v;
    std::memcpy(&v, p, 8); // unaligned load
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    len -= 8;
  }
  auto c32 = static_cast<std::uint32_t>(c);
  while (len--) {
    c32 = __builtin_ia32_crc32qi(c32, *p++);
  }
  return c32 ^ 0xffffffffU;
}

#else

bool crc32c_hw_available() { return false; }

std::uint32_t crc32c_hw(const void *data, std::size_t len) {
  return crc32c_table(data, len);
}

#endif

std::uint32_t crc32c(const void *data, std::size_t len) {
  static const CrcFn fn = pick();
  return fn(data, len);
}

} // namespace llm
