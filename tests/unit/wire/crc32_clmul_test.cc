// The carry-less-multiply CRC path must agree bit for bit with the table path (and with the
// textbook bitwise CRC) for every length and alignment, including the lane merges and tails.
#include <gtest/gtest.h>

#include <cstdint>
#include <ostream>
#include <random>
#include <string>
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

// Every carry-less path on its own (crc32_update_path), and the dispatching crc32_update, must
// agree with the table path. A path the CPU lacks is skipped; the others still run.
struct PathCase {
  const char* label;
  bool dispatch;  // crc32_update rather than crc32_update_path(path, ...)
  Crc32Path path;
};
void PrintTo(const PathCase& c, std::ostream* os) {
  *os << c.label;
}

class Crc32PathTest : public ::testing::TestWithParam<PathCase> {
 protected:
  void SetUp() override {
    if (!GetParam().dispatch && !crc32_path_available(GetParam().path))
      GTEST_SKIP() << "this CPU lacks the instructions for the " << name(GetParam().path) << " path";
  }
  uint32_t crc(uint32_t init, const uint8_t* p, size_t len) const {
    return GetParam().dispatch ? crc32_update(init, p, len)
                               : crc32_update_path(GetParam().path, init, p, len);
  }
};

std::vector<uint8_t> random_buffer(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST_P(Crc32PathTest, MatchesTableForEveryLengthAndAlignment) {
  constexpr size_t kMaxLen = 8192, kAligns = 64;
  const auto buf = random_buffer(kMaxLen + kAligns + 64, 11);
  // The 64-byte-aligned start of buf's storage, so that offset k really is alignment k.
  const size_t base = (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
  std::mt19937 rng(12);
  for (size_t align = 0; align < kAligns; ++align) {
    const uint8_t* p = buf.data() + base + align;
    const uint32_t init = align == 0 ? 0u : align == 1 ? 0xffffffffu : static_cast<uint32_t>(rng()) | 1u;
    uint32_t want = init;  // the table CRC of p[0..len), extended one byte per length
    for (size_t len = 0; len <= kMaxLen; ++len) {
      ASSERT_EQ(crc(init, p, len), want) << "len " << len << " alignment " << align << " init " << init;
      want = crc32_update_table(want, p + len, 1);
    }
  }
}

TEST_P(Crc32PathTest, MatchesTableOnRandomBuffersUpTo64KiB) {
  const auto buf = random_buffer(65536 + 64, 13);
  std::mt19937 rng(14);
  for (size_t len : {65536ul, 65535ul, 65536ul - 15, 32768ul + 80}) {
    ASSERT_EQ(crc(0xffffffffu, buf.data(), len), crc32_update_table(0xffffffffu, buf.data(), len)) << len;
  }
  for (int i = 0; i < 300; ++i) {
    const size_t len = rng() % 65537, off = rng() % 64;
    const auto init = static_cast<uint32_t>(rng());
    ASSERT_EQ(crc(init, buf.data() + off, len), crc32_update_table(init, buf.data() + off, len))
        << "len " << len << " offset " << off;
  }
}

// Anchors independent of the table code (values from zlib's crc32).
TEST_P(Crc32PathTest, KnownValues) {
  std::vector<uint8_t> buf(65536);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>((i * 131 + 7) >> 3);
  EXPECT_EQ(~crc(0xffffffffu, buf.data(), buf.size()), 0x25bd69a3u);
  EXPECT_EQ(~crc(0xffffffffu, buf.data(), 4099), 0xceaa21c9u);
  const uint8_t check[] = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
  EXPECT_EQ(~crc(0xffffffffu, check, sizeof check), 0xcbf43926u);
}

// A CRC detects every single-bit error: flipping any one bit, in the wide lanes, the lane
// merges, the 16-byte tail or the last bytes, must change the result.
TEST_P(Crc32PathTest, OneBitChangeChangesTheCrc) {
  auto buf = random_buffer(65536, 15);
  std::mt19937 rng(16);
  for (size_t len : {64ul, 65ul, 100ul, 128ul, 255ul, 256ul, 257ul, 1000ul, 4096ul, 4111ul, 65536ul}) {
    const uint32_t before = crc(0xffffffffu, buf.data(), len);
    for (size_t pos : {size_t{0}, len / 2, len - 17, len - 16, len - 1, rng() % len}) {
      const auto bit = static_cast<uint8_t>(1u << (rng() % 8));
      buf[pos] ^= bit;
      const uint32_t after = crc(0xffffffffu, buf.data(), len);
      EXPECT_NE(after, before) << "len " << len << " byte " << pos;
      EXPECT_EQ(after, crc32_update_table(0xffffffffu, buf.data(), len)) << "len " << len << " byte " << pos;
      buf[pos] ^= bit;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Crc32, Crc32PathTest,
                         ::testing::Values(PathCase{"pclmul", false, Crc32Path::kClmul},
                                           PathCase{"vpclmul256", false, Crc32Path::kVpclmul256},
                                           PathCase{"vpclmul512", false, Crc32Path::kVpclmul512},
                                           PathCase{"dispatch", true, Crc32Path::kTable}),
                         [](const ::testing::TestParamInfo<PathCase>& info) {
                           return std::string(info.param.label);
                         });

}  // namespace
}  // namespace softrdma::wire
