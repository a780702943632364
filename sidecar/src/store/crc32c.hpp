// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), the journal's
// frame checksum. crc32c() takes the SSE4.2 instruction when the CPU has
// it (checked once, at run time) and a table otherwise; both give the same
// value, so journals move freely between machines.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llm {

std::uint32_t crc32c(const void *data, std::size_t len);

// The two implementations, for tests and benchmarks. crc32c_hw() must only
// be called when crc32c_hw_available().
std::uint32_t crc32c_table(const void *data, std::size_t len);
std::uint32_t crc32c_hw(const void *data, std::size_t len);
bool crc32c_hw_available();

} // namespace llm
