// Field accessors: every field of every header round-trips and leaves every other bit alone.
#include "wire/fields.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <span>
#include <vector>

namespace softrdma::wire {
namespace {

// The bits a field occupies, as a byte mask over the header.
std::vector<uint8_t> field_mask(const Field& f, size_t hdr_size) {
  std::vector<uint8_t> m(hdr_size, 0);
  for (unsigned b = f.shift; b < unsigned(f.shift) + f.width; ++b) {
    const size_t byte = f.offset + f.bytes - 1 - b / 8;  // big-endian word
    m[byte] |= uint8_t(1u << (b % 8));
  }
  return m;
}

void check_header(std::span<const Field> fields, size_t size) {
  std::mt19937_64 rng(11);
  for (const Field& f : fields) {
    ASSERT_LE(size_t(f.offset) + f.bytes, size) << f.name;
    ASSERT_LE(unsigned(f.shift) + f.width, f.bytes * 8u) << f.name;
    const std::vector<uint8_t> mask = field_mask(f, size);
    for (int iter = 0; iter < 200; ++iter) {
      std::vector<uint8_t> buf(size);
      for (auto& b : buf) b = uint8_t(rng());
      const std::vector<uint8_t> before = buf;
      uint64_t v = rng();
      if (iter == 0) v = 0;
      if (iter == 1) v = ~0ull;
      set(buf.data(), f, v);
      EXPECT_EQ(get(buf.data(), f), v & f.mask()) << f.name;
      for (size_t i = 0; i < size; ++i)
        EXPECT_EQ(buf[i] & ~mask[i], before[i] & ~mask[i]) << f.name << " touched byte " << i;
    }
  }
}

TEST(Fields, EveryFieldRoundTripsAndLeavesNeighboursAlone) {
  check_header(bth::kFields, bth::kSize);
  check_header(reth::kFields, reth::kSize);
  check_header(aeth::kFields, aeth::kSize);
  check_header(deth::kFields, deth::kSize);
  check_header(immdt::kFields, immdt::kSize);
  check_header(ieth::kFields, ieth::kSize);
  check_header(atmeth::kFields, atmeth::kSize);
  check_header(atmack::kFields, atmack::kSize);
}

TEST(Fields, BthFieldsDoNotOverlapAndCoverTheHeader) {
  // IBA 9.2 Figure 91: all 96 BTH bits belong to exactly one field.
  std::vector<uint8_t> seen(bth::kSize, 0);
  for (const Field& f : bth::kFields) {
    const auto m = field_mask(f, bth::kSize);
    for (size_t i = 0; i < bth::kSize; ++i) {
      EXPECT_EQ(seen[i] & m[i], 0) << f.name;
      seen[i] |= m[i];
    }
  }
  for (size_t i = 0; i < bth::kSize; ++i) EXPECT_EQ(seen[i], 0xff) << i;
}

TEST(Fields, PsnAndQpnAre24BitsBigEndian) {
  uint8_t b[12];
  std::memset(b, 0xa5, sizeof b);
  set(b, bth::psn, 0x123456);
  EXPECT_EQ(b[8], 0xa5);  // AckReq / resv7 untouched
  EXPECT_EQ(b[9], 0x12);
  EXPECT_EQ(b[10], 0x34);
  EXPECT_EQ(b[11], 0x56);
  set(b, bth::psn, 0x1ffffff);  // bit 24 does not leak into byte 8
  EXPECT_EQ(get(b, bth::psn), kPsnMask);
  EXPECT_EQ(b[8], 0xa5);
  set(b, bth::dqpn, 0xabcdef);
  EXPECT_EQ(b[4], 0xa5);  // FECN / BECN / resv6 untouched
  EXPECT_EQ(b[5], 0xab);
  EXPECT_EQ(b[7], 0xef);
  set(b, bth::dqpn, 0);
  EXPECT_EQ(get(b, bth::dqpn), 0u);
  EXPECT_EQ(b[4], 0xa5);
  EXPECT_EQ(b[8], 0xa5);
}

TEST(Fields, KnownBthLayout) {
  uint8_t b[12] = {};
  set(b, bth::se, 1);
  EXPECT_EQ(b[1], 0x80);
  set(b, bth::padcnt, 3);
  EXPECT_EQ(b[1], 0xb0);
  set(b, bth::tver, 0xf);
  EXPECT_EQ(b[1], 0xbf);
  set(b, bth::fecn, 1);
  set(b, bth::becn, 1);
  EXPECT_EQ(b[4], 0xc0);
  set(b, bth::ackreq, 1);
  EXPECT_EQ(b[8], 0x80);
  set(b, bth::pkey, 0xffff);
  EXPECT_EQ(b[2], 0xff);
  EXPECT_EQ(b[3], 0xff);
}

TEST(Fields, DethSqpnSkipsTheReservedByte) {
  uint8_t d[8];
  std::memset(d, 0x5a, sizeof d);
  set(d, deth::sqpn, 0xffffff);
  EXPECT_EQ(d[4], 0x5a);  // IBA 9.3.3: byte 4 of the DETH is reserved
  EXPECT_EQ(get(d, deth::qkey), 0x5a5a5a5au);
  EXPECT_EQ(d[5], 0xff);
  EXPECT_EQ(d[7], 0xff);
}

TEST(Fields, SixtyFourBitFields) {
  uint8_t a[28] = {};
  set(a, atmeth::va, 0x0102030405060708ull);
  set(a, atmeth::swap_add, ~0ull);
  set(a, atmeth::compare, 0x8000000000000001ull);
  EXPECT_EQ(a[0], 0x01);
  EXPECT_EQ(a[7], 0x08);
  EXPECT_EQ(get(a, atmeth::va), 0x0102030405060708ull);
  EXPECT_EQ(get(a, atmeth::swap_add), ~0ull);
  EXPECT_EQ(get(a, atmeth::compare), 0x8000000000000001ull);
  EXPECT_EQ(get(a, atmeth::rkey), 0u);
}

}  // namespace
}  // namespace softrdma::wire
