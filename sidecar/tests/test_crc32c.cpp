#include "store/crc32c.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace llm;

namespace {

// RFC 3720 (iSCSI) B.4 test vectors and the usual check value
struct Vector {
  std::vector<unsigned char> data;
  std::uint32_t crc;
};

std::vector<Vector> vectors() {
  std::vector<Vector> v;
  v.push_back({{'1', '2', '3', '4', '5', '6', '7', '8', '9'}, 0xe3069283U});
  v.push_back({std::vector<unsigned char>(32, 0x00), 0x8a9136aaU});
  v.push_back({std::vector<unsigned char>(32, 0xff), 0x62a8ab43U});
  std::vector<unsigned char> inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<unsigned char>(i);
    dec[i] = static_cast<unsigned char>(31 - i);
  }
  v.push_back({inc, 0x46dd794eU});
  v.push_back({dec, 0x113fdb5cU});
  v.push_back({{}, 0x00000000U});
  return v;
}

} // namespace

TEST(Crc32c, KnownVectorsTable) {
  for (const auto &v : vectors()) {
    EXPECT_EQ(crc32c_table(v.data.data(), v.data.size()), v.crc);
  }
}

TEST(Crc32c, KnownVectorsDispatched) {
  for (const auto &v : vectors()) {
    EXPECT_EQ(crc32c(v.data.data(), v.data.size()), v.crc);
  }
}

TEST(Crc32c, KnownVectorsHardware) {
  if (!crc32c_hw_available()) {
    GTEST_SKIP() << "no SSE4.2 on this CPU";
  }
  for (const auto &v : vectors()) {
    EXPECT_EQ(crc32c_hw(v.data.data(), v.data.size()), v.crc);
  }
}

TEST(Crc32c, HardwareMatchesTableAtEveryLengthAndAlignment) {
  if (!crc32c_hw_available()) {
    GTEST_SKIP() << "no SSE4.2 on this CPU";
  }
  std::mt19937 rng(7);
  std::string buf(600, '\0');
  for (auto &c : buf) {
    c = static_cast<char>(rng());
  }
  for (std::size_t off = 0; off < 8; ++off) {
    for (std::size_t len = 0; len + off <= buf.size(); len += 7) {
      ASSERT_EQ(crc32c_hw(buf.data() + off, len),
                crc32c_table(buf.data() + off, len))
          << "off " << off << " len " << len;
    }
  }
}
