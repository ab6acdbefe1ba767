// ICRC (IBA Annex A17.8) against the shared pcap vectors, a bitwise reference written from the
// annex, and random packets; IPv4 Identification inference.
#include "wire/icrc.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "vectors.h"
#include "wire/fields.h"

namespace softrdma::wire {
namespace {

using vectors::Frame;
using vectors::load_vectors;

// Bit-at-a-time CRC-32 over the whole masked message, built the long way round.
uint32_t reference_icrc(const IcrcContext& c, const std::vector<uint8_t>& body, uint16_t id) {
  std::vector<uint8_t> m(8, 0xff);  // masked LRH
  const size_t udp_len = 8 + body.size() + 4;
  auto put16 = [&](size_t v) { m.push_back(uint8_t(v >> 8)), m.push_back(uint8_t(v)); };
  if (c.src.is_v4()) {
    m.insert(m.end(), {0x45, 0xff});
    put16(20 + udp_len);
    put16(id);
    m.insert(m.end(), {0x40, 0x00, 0xff, 0x11, 0xff, 0xff});
    m.insert(m.end(), c.src.bytes.begin() + 12, c.src.bytes.end());
    m.insert(m.end(), c.dst.bytes.begin() + 12, c.dst.bytes.end());
  } else {
    m.insert(m.end(), {0x6f, 0xff, 0xff, 0xff});
    put16(udp_len);
    m.insert(m.end(), {0x11, 0xff});
    m.insert(m.end(), c.src.bytes.begin(), c.src.bytes.end());
    m.insert(m.end(), c.dst.bytes.begin(), c.dst.bytes.end());
  }
  put16(c.sport);
  put16(c.dport);
  put16(udp_len);
  put16(0xffff);
  const size_t bth = m.size();
  m.insert(m.end(), body.begin(), body.end());
  if (body.size() > 4) m[bth + 4] = 0xff;
  uint32_t crc = 0xffffffff;
  for (uint8_t b : m) {
    crc ^= b;
    for (int i = 0; i < 8; ++i) crc = (crc >> 1) ^ ((crc & 1) ? 0xEDB88320u : 0);
  }
  return ~crc;
}

uint32_t compute(const IcrcContext& c, const std::vector<uint8_t>& body, uint16_t id = 0) {
  const iovec v{const_cast<uint8_t*>(body.data()), body.size()};
  return icrc_compute(c, &v, 1, id);
}

std::vector<uint8_t> body_of(const Frame& f) { return {f.payload.begin(), f.payload.end() - 4}; }

IcrcContext v4_ctx() {
  IcrcContext c;
  c.src = *IpAddr::parse("10.1.2.3");
  c.dst = *IpAddr::parse("10.1.2.4");
  c.sport = 49153;
  c.dport = kRoceV2Port;
  return c;
}

IcrcContext v6_ctx() {
  IcrcContext c = v4_ctx();
  c.src = *IpAddr::parse("2001:db8::1");
  c.dst = *IpAddr::parse("2001:db8::2");
  return c;
}

// A packet with a plausible BTH, random content and a valid ICRC for the given ID.
std::vector<uint8_t> random_packet(std::mt19937& rng, const IcrcContext& c, size_t body_len, uint16_t id) {
  std::vector<uint8_t> p(body_len + 4);
  for (auto& b : p) b = uint8_t(rng());
  std::vector<uint8_t> body(p.begin(), p.end() - 4);
  icrc_store(p.data() + body_len, compute(c, body, id));
  return p;
}

TEST(Crc32, CheckValue) {
  EXPECT_EQ(~crc32_update(0xffffffffu, "123456789", 9), 0xCBF43926u);
  EXPECT_EQ(crc32_update(0x1234u, nullptr, 0), 0x1234u);
}

TEST(Crc32, SliceBy8MatchesBitwiseAtEveryLengthAndSplit) {
  std::mt19937 rng(1);
  std::vector<uint8_t> buf(300);
  for (auto& b : buf) b = uint8_t(rng());
  for (size_t len = 0; len < 100; ++len) {
    for (size_t start : {0, 1, 3, 7}) {
      uint32_t ref = 0xffffffff;
      for (size_t i = 0; i < len; ++i) {
        ref ^= buf[start + i];
        for (int k = 0; k < 8; ++k) ref = (ref >> 1) ^ ((ref & 1) ? 0xEDB88320u : 0);
      }
      EXPECT_EQ(crc32_update(0xffffffff, buf.data() + start, len), ref) << len << " " << start;
      const size_t cut = len / 3;
      uint32_t split = crc32_update(0xffffffff, buf.data() + start, cut);
      EXPECT_EQ(crc32_update(split, buf.data() + start + cut, len - cut), ref);
    }
  }
}

TEST(Icrc, StoreLoadRoundTripLeastSignificantByteFirst) {
  uint8_t b[4];
  icrc_store(b, 0xcbe9270bu);
  EXPECT_EQ(b[0], 0x0b);
  EXPECT_EQ(b[3], 0xcb);
  EXPECT_EQ(icrc_load(b), 0xcbe9270bu);
  EXPECT_EQ(name(IcrcResult::kGood), "good");
  EXPECT_EQ(name(IcrcResult::kGoodInferredId), "good_inferred_id");
  EXPECT_EQ(name(IcrcResult::kBad), "bad");
}

class Vectors : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    f_ = load_vectors(&err);
    ASSERT_EQ(f_.size(), 5u) << vectors::vectors_path() << " " << err;
  }
  std::vector<Frame> f_;
};

TEST_F(Vectors, ComputeMatchesWireWithTheRealIpv4Id) {
  for (size_t i : {0, 2, 3, 4}) {
    const Frame& f = f_[i];
    const uint32_t wire = icrc_load(f.payload.data() + f.payload.size() - 4);
    EXPECT_EQ(compute(f.ctx, body_of(f), f.ipv4_id), wire) << "vector " << i + 1;
    EXPECT_EQ(reference_icrc(f.ctx, body_of(f), f.ipv4_id), wire) << "vector " << i + 1;
  }
  // Vector 1: ICRC bytes 0b 27 e9 cb on the wire, i.e. the CRC 0xcbe9270b sent LSB first.
  EXPECT_EQ(compute(f_[0].ctx, body_of(f_[0]), f_[0].ipv4_id), 0xcbe9270bu);
  // Vector 5 (ConnectX-4 Lx CNP): 82 fd 00 2a on the wire.
  uint8_t b[4];
  icrc_store(b, compute(f_[4].ctx, body_of(f_[4]), f_[4].ipv4_id));
  EXPECT_EQ(std::vector<uint8_t>(b, b + 4), (std::vector<uint8_t>{0x82, 0xfd, 0x00, 0x2a}));
}

TEST_F(Vectors, VerifyWithoutInference) {
  // Vectors 1, 2, 4 and 5 were sent with a nonzero IPv4 ID (0x1234, 0x1234, 0x1234, 0x718c).
  EXPECT_NE(f_[0].ipv4_id, 0);
  EXPECT_NE(f_[4].ipv4_id, 0);
  const IcrcResult want[] = {IcrcResult::kBad, IcrcResult::kBad, IcrcResult::kGood, IcrcResult::kBad,
                             IcrcResult::kBad};
  for (size_t i = 0; i < 5; ++i)
    EXPECT_EQ(icrc_verify(f_[i].ctx, f_[i].payload.data(), f_[i].payload.size(), false), want[i])
        << "vector " << i + 1;
}

TEST_F(Vectors, VerifyWithInferenceRecoversTheId) {
  for (size_t i : {0, 3, 4}) {
    uint16_t id = 0;
    EXPECT_EQ(icrc_verify(f_[i].ctx, f_[i].payload.data(), f_[i].payload.size(), true, &id),
              IcrcResult::kGoodInferredId)
        << "vector " << i + 1;
    EXPECT_EQ(id, f_[i].ipv4_id) << "vector " << i + 1;
  }
  EXPECT_EQ(f_[4].ipv4_id, 0x718c);
  EXPECT_EQ(icrc_verify(f_[1].ctx, f_[1].payload.data(), f_[1].payload.size(), true), IcrcResult::kBad);
  EXPECT_EQ(icrc_verify(f_[2].ctx, f_[2].payload.data(), f_[2].payload.size(), true), IcrcResult::kGood);
}

TEST_F(Vectors, Ipv6IsNeverInferred) {
  std::vector<uint8_t> p = f_[2].payload;
  p[20] ^= 0x01;
  EXPECT_EQ(icrc_verify(f_[2].ctx, p.data(), p.size(), true), IcrcResult::kBad);
}

TEST(Icrc, MatchesReferenceOnRandomPacketsAndSplits) {
  std::mt19937 rng(2);
  for (int iter = 0; iter < 300; ++iter) {
    const IcrcContext c = (iter & 1) ? v6_ctx() : v4_ctx();
    std::vector<uint8_t> body(rng() % 600);
    for (auto& b : body) b = uint8_t(rng());
    const uint16_t id = uint16_t(rng());
    const uint32_t ref = reference_icrc(c, body, c.src.is_v4() ? id : 0);
    ASSERT_EQ(compute(c, body, c.src.is_v4() ? id : 0), ref);
    // The same bytes in up to 8 parts, some empty, cut anywhere (also inside the BTH).
    iovec parts[8];
    size_t n = 0, off = 0;
    while (n < 7 && off < body.size()) {
      const size_t take = std::min<size_t>(rng() % 14, body.size() - off);
      parts[n++] = {body.data() + off, take};
      off += take;
    }
    parts[n++] = {body.data() + off, body.size() - off};
    ASSERT_EQ(icrc_compute(c, parts, n, c.src.is_v4() ? id : 0), ref);
  }
}

// icrc_compute remembers the pseudo-header register of the last addressing it saw: every change
// of one address, port or family, and every length up to the largest UDP payload, must still
// give the reference ICRC, whichever packet came before.
TEST(Icrc, MatchesReferenceWhenAddressesPortsAndLengthsChange) {
  std::mt19937 rng(9);
  IcrcContext c = v4_ctx();
  for (int iter = 0; iter < 400; ++iter) {
    switch (rng() % 5) {
      case 0: c.sport = uint16_t(rng()); break;
      case 1: c.dport = uint16_t(rng()); break;
      case 2: c.src.bytes[15] = uint8_t(rng()); break;
      case 3: c.dst.bytes[rng() % 16] = uint8_t(rng()); break;
      default: c = (rng() & 1) ? v6_ctx() : v4_ctx(); break;
    }
    const bool v4 = c.src.is_v4() && c.dst.is_v4();
    if (!v4) c.src.bytes[0] = 0x20, c.dst.bytes[0] = 0x20;  // a v6 pair, not one half-mapped
    std::vector<uint8_t> body(iter % 7 == 0 ? 65000 + rng() % 400 : rng() % 300);
    for (auto& b : body) b = uint8_t(rng());
    const uint16_t id = v4 ? uint16_t(rng()) : 0;
    ASSERT_EQ(compute(c, body, id), reference_icrc(c, body, id)) << "iteration " << iter;
  }
}

// A thread that sends and receives alternates between a context and its reverse, and the
// remembered registers must follow any order of three contexts (one more than are kept).
TEST(Icrc, MatchesReferenceInAnyOrderOfThreeContexts) {
  std::mt19937 rng(11);
  IcrcContext ctx[3] = {v4_ctx(), v4_ctx(), v6_ctx()};
  std::swap(ctx[1].src, ctx[1].dst);
  std::swap(ctx[1].sport, ctx[1].dport);
  for (int iter = 0; iter < 600; ++iter) {
    const IcrcContext& c = ctx[iter < 200 ? iter % 2 : rng() % 3];
    std::vector<uint8_t> body(12 + rng() % 80);
    for (auto& b : body) b = uint8_t(rng());
    ASSERT_EQ(compute(c, body), reference_icrc(c, body, 0)) << "iteration " << iter;
  }
}

TEST(Icrc, Resv8aIsMaskedAndNothingElseInTheBthIs) {
  std::mt19937 rng(3);
  std::vector<uint8_t> body(40);
  for (auto& b : body) b = uint8_t(rng());
  const uint32_t base = compute(v4_ctx(), body);
  for (size_t i = 0; i < 12; ++i) {
    std::vector<uint8_t> m = body;
    m[i] ^= 0xc0;  // e.g. FECN and BECN set by a switch at i == 4
    EXPECT_EQ(compute(v4_ctx(), m) == base, i == 4) << i;
  }
}

TEST(Icrc, ShortInputs) {
  uint8_t p[4] = {};
  EXPECT_EQ(icrc_verify(v4_ctx(), p, 3, true), IcrcResult::kBad);
  EXPECT_EQ(icrc_verify(v4_ctx(), nullptr, 0, true), IcrcResult::kBad);
  icrc_store(p, compute(v4_ctx(), {}));
  EXPECT_EQ(icrc_verify(v4_ctx(), p, 4, false), IcrcResult::kGood);
}

TEST(IcrcInference, RecoversRandomNonzeroIds) {
  std::mt19937 rng(4);
  const size_t lens[] = {12, 13, 28, 255, 256, 257, 1024, 4096, 9000, 65000};
  for (int iter = 0; iter < 2000; ++iter) {
    const size_t len = iter < 10 ? lens[iter] : 12 + rng() % 2000;
    uint16_t id = uint16_t(rng());
    if (id == 0) id = 1;
    const std::vector<uint8_t> p = random_packet(rng, v4_ctx(), len, id);
    uint16_t got = 0;
    ASSERT_EQ(icrc_verify(v4_ctx(), p.data(), p.size(), true, &got), IcrcResult::kGoodInferredId) << len;
    ASSERT_EQ(got, id) << len;
    ASSERT_EQ(icrc_verify(v4_ctx(), p.data(), p.size(), false), IcrcResult::kBad);
  }
}

// UDP GSO numbers the segments of one send: the link moves each ICRC from ID 0 to the real ID.
TEST(IcrcIdDelta, MovesTheIcrcFromIdZeroToAnyId) {
  std::mt19937 rng(9);
  const size_t lens[] = {0, 1, 12, 255, 256, 257, 1024, 4132, 9000, 65507};
  for (int iter = 0; iter < 1000; ++iter) {
    const size_t len = iter < 10 ? lens[iter] : rng() % 5000;
    const uint16_t id = iter < 10 ? uint16_t(iter) : uint16_t(rng());
    std::vector<uint8_t> body(len);
    for (auto& b : body) b = uint8_t(rng());
    ASSERT_EQ(compute(v4_ctx(), body, id), compute(v4_ctx(), body, 0) ^ icrc_ipv4_id_delta(len, id))
        << len << " " << id;
  }
  EXPECT_EQ(icrc_ipv4_id_delta(100, 0), 0u);
  EXPECT_EQ(icrc_ipv4_id_delta(70000, 5), 0u);  // no IPv4 datagram is that long
}

TEST(IcrcInference, OversizedBodyIsNotInferred) {
  // No IPv4 datagram carries a UDP payload of 64 KiB or more; such input is simply bad.
  std::mt19937 rng(8);
  const std::vector<uint8_t> p = random_packet(rng, v4_ctx(), 70000, 0x1234);
  EXPECT_EQ(icrc_verify(v4_ctx(), p.data(), p.size(), true), IcrcResult::kBad);
}

// Inference accepts exactly when some ID makes the ICRC match: compare with trying all 65536.
TEST(IcrcInference, AgreesWithExhaustiveSearch) {
  std::mt19937 rng(5);
  for (int iter = 0; iter < 8; ++iter) {
    std::vector<uint8_t> p = random_packet(rng, v4_ctx(), 40 + rng() % 100, uint16_t(rng()));
    if (iter & 1) p[rng() % p.size()] ^= uint8_t(1 + rng() % 255);  // corrupted: normally no ID fits
    const std::vector<uint8_t> body(p.begin(), p.end() - 4);
    const uint32_t wire = icrc_load(p.data() + body.size());
    std::vector<uint16_t> fits;
    for (uint32_t id = 0; id < 65536; ++id)
      if (compute(v4_ctx(), body, uint16_t(id)) == wire) fits.push_back(uint16_t(id));
    uint16_t got = 0;
    const IcrcResult r = icrc_verify(v4_ctx(), p.data(), p.size(), true, &got);
    ASSERT_LE(fits.size(), 1u);  // the ID -> ICRC map is injective
    if (fits.empty()) {
      EXPECT_EQ(r, IcrcResult::kBad);
    } else if (fits[0] == 0) {
      EXPECT_EQ(r, IcrcResult::kGood);
    } else {
      EXPECT_EQ(r, IcrcResult::kGoodInferredId);
      EXPECT_EQ(got, fits[0]);
    }
  }
}

// Random corruption anywhere but the masked resv8a byte (BTH byte 4); never a no-op.
void corrupt_once(std::mt19937& rng, std::vector<uint8_t>& p) {
  const int kind = rng() % 3;
  auto pos = [&] {
    size_t i;
    do i = rng() % p.size(); while (i == 4);
    return i;
  };
  if (kind == 0) {  // 1..3 bit flips: CRC-32 detects all of these at these lengths
    for (int k = 1 + rng() % 3; k > 0; --k) p[pos()] ^= uint8_t(1u << (rng() % 8));
  } else if (kind == 1) {  // a burst of random bytes
    const size_t at = pos();
    for (size_t i = at; i < std::min(p.size(), at + 1 + rng() % 16); ++i)
      if (i != 4) p[i] ^= uint8_t(1 + rng() % 255);
  } else {  // scattered byte garbage
    for (int k = 1 + rng() % 8; k > 0; --k) p[pos()] ^= uint8_t(1 + rng() % 255);
  }
}

void corrupt(std::mt19937& rng, std::vector<uint8_t>& p) {
  const std::vector<uint8_t> orig = p;
  do corrupt_once(rng, p); while (p == orig);  // repeated flips at one place may cancel
}

TEST(IcrcCorruption, AlwaysRejectedWithoutInference) {
  std::mt19937 rng(6);
  for (int iter = 0; iter < 20000; ++iter) {
    const bool v6 = iter & 1;
    const IcrcContext c = v6 ? v6_ctx() : v4_ctx();
    std::vector<uint8_t> p = random_packet(rng, c, 12 + rng() % 300, 0);
    ASSERT_EQ(icrc_verify(c, p.data(), p.size(), false), IcrcResult::kGood);
    corrupt(rng, p);
    ASSERT_EQ(icrc_verify(c, p.data(), p.size(), false), IcrcResult::kBad) << iter;
  }
}

TEST(IcrcCorruption, RarelyAcceptedWithInference) {
  // Inference leaves 16 check bits: expect about 20000 / 65536 false accepts.
  std::mt19937 rng(7);
  int false_accepts = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    const uint16_t id = uint16_t(rng());
    std::vector<uint8_t> p = random_packet(rng, v4_ctx(), 12 + rng() % 300, id);
    corrupt(rng, p);
    if (icrc_verify(v4_ctx(), p.data(), p.size(), true) != IcrcResult::kBad) ++false_accepts;
  }
  RecordProperty("false_accepts", false_accepts);
  EXPECT_LT(false_accepts, 5);
}

}  // namespace
}  // namespace softrdma::wire
