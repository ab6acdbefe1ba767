// The carry-less-multiply CRC path must agree bit for bit with the table path (and with the
// textbook bitwise CRC) for every length and alignment, including the lane merges and tails.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "wire/icrc.h"

namespace softrdma::wire {

bool crc32_clmul_available();

namespace {

uint32_t bitwise_crc(uint32_t crc, const uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    crc ^= p[i];
    for (int b = 0; b < 8; ++b) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return crc;
}

TEST(Crc32Clmul, AgreesWithBitwiseForAllLengthsAndOffsets) {
  if (!crc32_clmul_available()) GTEST_SKIP() << "no PCLMULQDQ on this CPU: the table path is used";
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(9000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t len : {128ul, 129ul, 143ul, 144ul, 191ul, 192ul, 255ul, 256ul, 1000ul, 4096ul, 4100ul, 8191ul}) {
    for (size_t off = 0; off < 16; ++off) {
      uint32_t init = static_cast<uint32_t>(rng());
      ASSERT_EQ(crc32_update(init, buf.data() + off, len), bitwise_crc(init, buf.data() + off, len))
          << "len " << len << " offset " << off;
    }
  }
  for (int i = 0; i < 2000; ++i) {
    size_t len = rng() % 8000;
    size_t off = rng() % 900;
    uint32_t init = static_cast<uint32_t>(rng());
    ASSERT_EQ(crc32_update(init, buf.data() + off, len), bitwise_crc(init, buf.data() + off, len)) << len;
  }
}

TEST(Crc32Clmul, SplitAnywhereGivesTheSameCrc) {
  std::mt19937 rng(9);
  std::vector<uint8_t> buf(5000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  uint32_t whole = crc32_update(0xffffffffu, buf.data(), buf.size());
  for (size_t cut : {1ul, 63ul, 64ul, 127ul, 128ul, 2048ul, 4999ul}) {
    uint32_t c = crc32_update(0xffffffffu, buf.data(), cut);
    c = crc32_update(c, buf.data() + cut, buf.size() - cut);
    EXPECT_EQ(c, whole) << cut;
  }
}

}  // namespace
}  // namespace softrdma::wire
