// parse(): every error class in the documented order, valid packets of every opcode, the pcap
// vectors; write_bth(); name tables.
#include "wire/packet.h"

#include <gtest/gtest.h>

#include <vector>

#include "vectors.h"

namespace softrdma::wire {
namespace {

// A packet of opcode op: headers zeroed, `payload` bytes of 0x11.. pattern, pad, 4 ICRC bytes.
std::vector<uint8_t> make(uint8_t op, uint32_t payload = 0, BthFields f = {}) {
  const OpcodeInfo& i = opcode_info(op);
  f.opcode = op;
  f.padcnt = pad_for(payload);
  std::vector<uint8_t> p(i.payload + payload + f.padcnt + kIcrcSize, 0);
  write_bth(p.data(), f);
  for (uint32_t k = 0; k < payload; ++k) p[i.payload + k] = uint8_t(0x11 + k);
  return p;
}

ParseError parse_vec(const std::vector<uint8_t>& p, PacketView& v) { return parse(p.data(), uint32_t(p.size()), v); }

TEST(Parse, Names) {
  EXPECT_EQ(name(ParseError::kOk), "ok");
  EXPECT_EQ(name(ParseError::kTooShort), "too_short");
  EXPECT_EQ(name(ParseError::kBadVersion), "bad_version");
  EXPECT_EQ(name(ParseError::kBadOpcode), "bad_opcode");
  EXPECT_EQ(name(ParseError::kHeadersTooLong), "headers_too_long");
  EXPECT_EQ(name(ParseError::kBadPad), "bad_pad");
  EXPECT_EQ(name(ParseError::kCount), "?");
}

TEST(Parse, TooShort) {
  PacketView v;
  EXPECT_EQ(parse(nullptr, 100, v), ParseError::kTooShort);
  std::vector<uint8_t> p = make(kRcSendOnly);  // 12 + 4: the smallest legal packet
  EXPECT_EQ(parse(p.data(), 15, v), ParseError::kTooShort);
  EXPECT_EQ(parse(p.data(), 0, v), ParseError::kTooShort);
  EXPECT_EQ(parse_vec(p, v), ParseError::kOk);
  set(p.data(), bth::tver, 1);  // length is checked first
  EXPECT_EQ(parse(p.data(), 15, v), ParseError::kTooShort);
}

TEST(Parse, VersionBeforeOpcode) {
  PacketView v;
  std::vector<uint8_t> p = make(kRcSendOnly, 8);
  for (unsigned tver = 1; tver < 16; ++tver) {
    set(p.data(), bth::tver, tver);
    EXPECT_EQ(parse_vec(p, v), ParseError::kBadVersion);
  }
  set(p.data(), bth::opcode, 0x15);
  EXPECT_EQ(parse_vec(p, v), ParseError::kBadVersion);
  set(p.data(), bth::tver, 0);
  EXPECT_EQ(parse_vec(p, v), ParseError::kBadOpcode);
  EXPECT_EQ(v.info, nullptr);  // nothing is reported from a rejected packet
}

TEST(Parse, EveryInvalidOpcode) {
  PacketView v;
  std::vector<uint8_t> p(64, 0);
  for (int op = 0; op < 256; ++op) {
    if (opcode_info(uint8_t(op)).valid()) continue;
    set(p.data(), bth::opcode, unsigned(op));
    EXPECT_EQ(parse_vec(p, v), ParseError::kBadOpcode) << op;
  }
}

TEST(Parse, HeadersMustFitBeforeTheIcrc) {
  PacketView v;
  for (int op = 0; op < 256; ++op) {
    const OpcodeInfo& i = opcode_info(uint8_t(op));
    if (!i.valid()) continue;
    std::vector<uint8_t> p = make(uint8_t(op));
    ASSERT_EQ(p.size(), i.payload + kIcrcSize);
    EXPECT_EQ(parse_vec(p, v), ParseError::kOk) << i.name;
    EXPECT_EQ(v.payload_len, 0u);
    if (i.payload > bth::kSize) {  // one byte short, still >= 16 bytes
      EXPECT_EQ(parse(p.data(), uint32_t(p.size() - 1), v), ParseError::kHeadersTooLong) << i.name;
      set(p.data(), bth::padcnt, 3);  // headers are checked before pad
      EXPECT_EQ(parse(p.data(), uint32_t(p.size() - 1), v), ParseError::kHeadersTooLong) << i.name;
    }
  }
}

TEST(Parse, Pad) {
  PacketView v;
  // Pad on an opcode without payload (IBA 9.2.4: pad only where there is payload).
  for (uint8_t op : {kRcAck, kRcReadRequest, kRcCompSwap, kRcAtomicAck}) {
    std::vector<uint8_t> p = make(op);
    p.resize(p.size() + 4);  // room for the pad bytes does not make it legal
    set(p.data(), bth::padcnt, 1);
    EXPECT_EQ(parse_vec(p, v), ParseError::kBadPad) << int(op);
  }
  // Pad longer than what follows the headers.
  std::vector<uint8_t> p = make(kRcSendOnly);
  for (unsigned pad = 1; pad < 4; ++pad) {
    set(p.data(), bth::padcnt, pad);
    EXPECT_EQ(parse_vec(p, v), ParseError::kBadPad);
  }
  p = make(kRcSendOnly, 2);  // 2 payload + 2 pad
  EXPECT_EQ(parse_vec(p, v), ParseError::kOk);
  EXPECT_EQ(v.payload_len, 2u);
  set(p.data(), bth::padcnt, 3);  // 4 bytes after headers, pad 3: payload 1
  EXPECT_EQ(parse_vec(p, v), ParseError::kOk);
  EXPECT_EQ(v.payload_len, 1u);
  p = make(kRcSendOnly, 1);  // 1 payload + 3 pad
  EXPECT_EQ(parse_vec(p, v), ParseError::kOk);
  EXPECT_EQ(parse(p.data(), uint32_t(p.size() - 2), v), ParseError::kBadPad);  // 2 bytes, pad 3
}

TEST(Parse, EveryValidOpcodeWithPayload) {
  BthFields f;
  f.se = true;
  f.pkey = 0x8001;
  f.fecn = true;
  f.dqpn = 0xabcdef;
  f.ackreq = true;
  f.psn = 0xfffffe;
  for (int op = 0; op < 256; ++op) {
    const OpcodeInfo& i = opcode_info(uint8_t(op));
    if (!i.valid()) continue;
    for (uint32_t len : {0u, 1u, 3u, 4u, 1021u}) {
      if (len && !i.has(kPayload)) continue;
      const std::vector<uint8_t> p = make(uint8_t(op), len, f);
      PacketView v;
      ASSERT_EQ(parse_vec(p, v), ParseError::kOk) << i.name << " " << len;
      EXPECT_EQ(v.data, p.data());
      EXPECT_EQ(v.len, p.size());
      EXPECT_EQ(v.info, &i);
      EXPECT_EQ(v.opcode, op);
      EXPECT_EQ(v.psn, 0xfffffeu);
      EXPECT_EQ(v.dqpn, 0xabcdefu);
      EXPECT_EQ(v.pkey, 0x8001);
      EXPECT_TRUE(v.se && v.ackreq && v.fecn);
      EXPECT_FALSE(v.becn);
      EXPECT_EQ(v.padcnt, pad_for(len));
      EXPECT_EQ(v.payload, p.data() + i.payload);
      EXPECT_EQ(v.payload_len, len);
      if (len) {
        EXPECT_EQ(v.payload[0], 0x11);
      }
      EXPECT_LE(v.payload + v.payload_len + v.padcnt + kIcrcSize, p.data() + p.size());
      // hdr() gives the table's offsets for present headers and nullptr for the rest.
      const std::pair<Hdr, uint8_t> hs[] = {{kDeth, i.deth},   {kReth, i.reth},   {kAtmEth, i.atmeth},
                                            {kAeth, i.aeth},   {kAtmAck, i.atmack}, {kImmDt, i.immdt},
                                            {kIeth, i.ieth}};
      for (auto [h, off] : hs) EXPECT_EQ(v.hdr(h), i.has(h) ? p.data() + off : nullptr) << i.name << " " << h;
      EXPECT_EQ(v.hdr(kPayload), i.has(kPayload) ? v.payload : nullptr);
      EXPECT_EQ(v.hdr(Hdr(kReth | kAeth)), nullptr);
    }
  }
}

TEST(Parse, HeaderAccessThroughTheView) {
  std::vector<uint8_t> p = make(kRcWriteOnlyImm, 8);
  uint8_t* reth = p.data() + opcode_info(kRcWriteOnlyImm).reth;
  set(reth, reth::va, 0x1122334455667788ull);
  set(reth, reth::rkey, 0xcafe);
  set(reth, reth::dmalen, 8);
  set(p.data() + opcode_info(kRcWriteOnlyImm).immdt, immdt::imm, 0xdeadbeef);
  PacketView v;
  ASSERT_EQ(parse_vec(p, v), ParseError::kOk);
  EXPECT_EQ(v.get(kReth, reth::va), 0x1122334455667788ull);
  EXPECT_EQ(v.get(kReth, reth::rkey), 0xcafeu);
  EXPECT_EQ(v.get(kReth, reth::dmalen), 8u);
  EXPECT_EQ(v.get(kImmDt, immdt::imm), 0xdeadbeefu);
}

TEST(Parse, TrailingBytesOnAnOpcodeWithoutPayloadAreReported) {
  std::vector<uint8_t> p = make(kRcAck);
  p.resize(p.size() + 8);
  PacketView v;
  ASSERT_EQ(parse_vec(p, v), ParseError::kOk);
  EXPECT_EQ(v.payload_len, 8u);  // the transport rejects it (ACKs carry no payload)
}

TEST(Parse, PcapVectors) {
  const auto f = vectors::load_vectors();
  ASSERT_EQ(f.size(), 5u);
  PacketView v;
  for (int i : {0, 1, 2}) {
    ASSERT_EQ(parse(f[i].payload.data(), uint32_t(f[i].payload.size()), v), ParseError::kOk);
    EXPECT_EQ(v.opcode, kRcWriteOnly);
    EXPECT_EQ(v.dqpn, 0x11u);
    EXPECT_EQ(v.psn, 0x100u);
    EXPECT_TRUE(v.ackreq);
    EXPECT_EQ(v.get(kReth, reth::va), 0x7f0000001000ull);
    EXPECT_EQ(v.get(kReth, reth::rkey), 0x1234u);
    EXPECT_EQ(v.get(kReth, reth::dmalen), 16u);
    EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(v.payload), v.payload_len), "ABCDEFGHIJKLMNOP");
  }
  ASSERT_EQ(parse(f[3].payload.data(), uint32_t(f[3].payload.size()), v), ParseError::kOk);
  EXPECT_EQ(v.opcode, kRcSendOnly);
  EXPECT_EQ(v.padcnt, 1);
  EXPECT_EQ(std::string_view(reinterpret_cast<const char*>(v.payload), v.payload_len), "abc");
  ASSERT_EQ(parse(f[4].payload.data(), uint32_t(f[4].payload.size()), v), ParseError::kOk);
  EXPECT_EQ(v.opcode, kCnpOpcode);
  EXPECT_EQ(v.dqpn, 0x118u);
  EXPECT_TRUE(v.becn);  // the NIC marks CNPs with BECN
  EXPECT_FALSE(v.fecn);
  EXPECT_EQ(v.payload_len, 16u);
}

TEST(WriteBth, RoundTripAndReservedZero) {
  uint8_t b[12];
  std::memset(b, 0xee, sizeof b);
  BthFields f;
  f.opcode = kUdSendOnly;
  f.padcnt = 3;
  f.dqpn = 0xffffff;
  f.psn = 0xffffff;
  f.becn = true;
  write_bth(b, f);
  EXPECT_EQ(get(b, bth::opcode), kUdSendOnly);
  EXPECT_EQ(get(b, bth::migreq), 1u);  // default
  EXPECT_EQ(get(b, bth::se), 0u);
  EXPECT_EQ(get(b, bth::padcnt), 3u);
  EXPECT_EQ(get(b, bth::tver), 0u);
  EXPECT_EQ(get(b, bth::pkey), kDefaultPkey);
  EXPECT_EQ(get(b, bth::fecn), 0u);
  EXPECT_EQ(get(b, bth::becn), 1u);
  EXPECT_EQ(get(b, bth::resv8a), 0u);
  EXPECT_EQ(get(b, bth::dqpn), kQpnMask);
  EXPECT_EQ(get(b, bth::ackreq), 0u);
  EXPECT_EQ(get(b, bth::resv7), 0u);
  EXPECT_EQ(get(b, bth::psn), kPsnMask);
  // Byte-exact against vector 1's BTH (0a 00 ff ff 00 00 00 11 80 00 01 00).
  BthFields w;
  w.opcode = kRcWriteOnly;
  w.migreq = false;
  w.dqpn = 0x11;
  w.ackreq = true;
  w.psn = 0x100;
  write_bth(b, w);
  const uint8_t want[12] = {0x0a, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x11, 0x80, 0x00, 0x01, 0x00};
  EXPECT_EQ(std::memcmp(b, want, 12), 0);
}

TEST(PadFor, MultipleOfFour) {
  for (uint32_t n = 0; n < 16; ++n) EXPECT_EQ((n + pad_for(n)) % 4, 0u) << n;
  EXPECT_EQ(pad_for(0), 0);
  EXPECT_EQ(pad_for(3), 1);
}

}  // namespace
}  // namespace softrdma::wire
