// Fuzzes the receive path of the wire layer: parse() and icrc_verify() on hostile bytes.
//
// Input layout: 36 bytes of addressing, then the UDP payload (BTH .. ICRC).
//   [0..16) source IPv6 address, [16..32) destination IPv6 address, [32..34) sport, [34..36) dport
// The IPv4 context uses the last 4 bytes of each address (as an IPv4-mapped address would), so
// the seeds in corpus/wire carry ::ffff:a.b.c.d addresses and pass the ICRC in one of the two
// contexts. Shorter inputs are zero-padded addressing with an empty packet.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "wire/icrc.h"
#include "wire/packet.h"

using namespace softrdma::wire;

namespace {

constexpr size_t kPrefix = 36;

volatile uint8_t g_sink;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Reads every byte of [p, p + n): ASan reports any byte outside the packet buffer.
void touch(const uint8_t* p, size_t n) {
  uint8_t x = 0;
  for (size_t i = 0; i < n; ++i) x ^= p[i];
  g_sink = x;
}

size_t hdr_size(Hdr h) {
  switch (h) {
    case kDeth: return deth::kSize;
    case kReth: return reth::kSize;
    case kAtmEth: return atmeth::kSize;
    case kAeth: return aeth::kSize;
    case kAtmAck: return atmack::kSize;
    case kImmDt: return immdt::kSize;
    case kIeth: return ieth::kSize;
    default: return 0;
  }
}

void fuzz_parse(const uint8_t* pkt, uint32_t len) {
  PacketView v;
  const ParseError e = parse(pkt, len, v);
  check(!name(e).empty());
  if (e != ParseError::kOk) return;
  check(v.data == pkt && v.len == len && v.info && v.info->valid());
  touch(v.data, v.len);
  const uint8_t* payload_end = v.payload + v.payload_len;
  check(v.payload >= v.data + bth::kSize);
  check(payload_end + v.padcnt + kIcrcSize <= v.data + v.len);
  touch(v.payload, v.payload_len);
  for (Hdr h : {kDeth, kReth, kAtmEth, kAeth, kAtmAck, kImmDt, kIeth}) {
    const uint8_t* p = v.hdr(h);
    check((p != nullptr) == v.info->has(h));
    if (!p) continue;
    check(p >= v.data + bth::kSize && p + hdr_size(h) <= v.payload);
    touch(p, hdr_size(h));
  }
  check(v.psn <= kPsnMask && v.dqpn <= kQpnMask && v.padcnt < 4);
}

void fuzz_icrc(const IcrcContext& ctx, const uint8_t* pkt, size_t len) {
  const size_t body = len >= kIcrcSize ? len - kIcrcSize : 0;
  // The same body given as three parts must give the same ICRC as one part.
  const iovec whole{const_cast<uint8_t*>(pkt), body};
  const uint32_t one = icrc_compute(ctx, &whole, 1, 0);
  const size_t a = body ? pkt[0] % (body + 1) : 0, b = a + (body - a) / 2;
  const iovec parts[3] = {{const_cast<uint8_t*>(pkt), a},
                          {const_cast<uint8_t*>(pkt) + a, b - a},
                          {const_cast<uint8_t*>(pkt) + b, body - b}};
  check(icrc_compute(ctx, parts, 3, 0) == one);

  for (bool infer : {false, true}) {
    uint16_t id = 0;
    const IcrcResult r = icrc_verify(ctx, pkt, len, infer, &id);
    check(!name(r).empty());
    if (r == IcrcResult::kGood) check(len >= kIcrcSize && one == icrc_load(pkt + body));
    if (r == IcrcResult::kGoodInferredId) {
      // Inference is only for IPv4 and must name an ID that really makes the ICRC match.
      check(infer && ctx.src.is_v4() && id != 0);
      check(icrc_compute(ctx, &whole, 1, id) == icrc_load(pkt + body));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t prefix[kPrefix] = {};
  std::memcpy(prefix, data, size < kPrefix ? size : kPrefix);
  // The packet gets its own exactly sized buffer so an overread by even one byte is reported.
  const size_t len = size > kPrefix ? size - kPrefix : 0;
  std::vector<uint8_t> pkt(data + (size - len), data + size);
  if (len > UINT32_MAX) return 0;

  IcrcContext v6;
  std::memcpy(v6.src.bytes.data(), prefix, 16);
  std::memcpy(v6.dst.bytes.data(), prefix + 16, 16);
  v6.sport = static_cast<uint16_t>(prefix[32] << 8 | prefix[33]);
  v6.dport = static_cast<uint16_t>(prefix[34] << 8 | prefix[35]);
  IcrcContext v4 = v6;
  uint32_t s, d;
  std::memcpy(&s, prefix + 12, 4);
  std::memcpy(&d, prefix + 28, 4);
  v4.src = IpAddr::from_v4_be(s);
  v4.dst = IpAddr::from_v4_be(d);
  if (v6.src.is_v4()) v6.src.bytes[10] = 0;  // keep the "IPv6" context really IPv6

  fuzz_parse(pkt.data(), static_cast<uint32_t>(len));
  fuzz_icrc(v4, pkt.data(), len);
  fuzz_icrc(v6, pkt.data(), len);
  return 0;
}
