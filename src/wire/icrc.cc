#include "wire/icrc.h"

#include <algorithm>
#include <cstring>

#include "wire/fields.h"

namespace softrdma::wire {
namespace {

// Reflected CRC-32 arithmetic. A 32-bit register value r stands for the polynomial with the
// coefficient of x^(31-i) in bit i, reduced modulo P = 0x104C11DB7 (reflected 0xEDB88320).
constexpr uint32_t kPoly = 0xEDB88320u;
constexpr uint32_t kOne = 0x80000000u;  // the polynomial 1

constexpr uint32_t mulx(uint32_t r) { return (r >> 1) ^ (kPoly & (0u - (r & 1u))); }

// Inverse of mulx: x is invertible mod P because P has a constant term. mulx sets bit 31 exactly
// when it folded in the polynomial (kPoly has bit 31, r >> 1 never does).
constexpr uint32_t divx(uint32_t r) { return (r & kOne) ? (((r ^ kPoly) << 1) | 1u) : (r << 1); }

// a * b mod P.
constexpr uint32_t mulmod(uint32_t a, uint32_t b) {
  uint32_t p = 0;
  for (int i = 31; i >= 0; --i) {  // bit 31 of a is x^0, bit 30 is x^1, ...
    p ^= b & (0u - ((a >> i) & 1u));
    b = mulx(b);
  }
  return p;
}

constexpr uint32_t div_pow(uint32_t r, unsigned k) {
  for (unsigned i = 0; i < k; ++i) r = divx(r);
  return r;
}

// Slice-by-8: t[k][b] is the CRC register after byte b followed by k zero bytes.
struct SliceTables {
  uint32_t t[8][256];
};

constexpr SliceTables make_slice_tables() {
  SliceTables s{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t r = b;
    for (int i = 0; i < 8; ++i) r = mulx(r);
    s.t[0][b] = r;
  }
  for (int k = 1; k < 8; ++k)
    for (uint32_t b = 0; b < 256; ++b) {
      uint32_t r = s.t[k - 1][b];
      s.t[k][b] = (r >> 8) ^ s.t[0][r & 0xff];
    }
  return s;
}

constexpr SliceTables kSlice = make_slice_tables();

constexpr uint32_t load_le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

constexpr uint32_t crc_bytewise(uint32_t crc, const uint8_t* p, size_t len) {
  for (size_t i = 0; i < len; ++i) crc = kSlice.t[0][(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return crc;
}

// The register after the 64 bits of ones that stand for the masked LRH (IBA A17.8).
constexpr uint8_t kLrhOnes[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr uint32_t kAfterLrh = crc_bytewise(0xffffffffu, kLrhOnes, 8);

constexpr size_t kIpv4Hdr = 20, kIpv6Hdr = 40, kUdpHdr = 8;
constexpr size_t kBthResv8aOffset = 4;  // FECN, BECN, resv6: changed by switches, masked

// IPv4 ID inference. The ID occupies message bytes 12..13 (after the 8 LRH bytes and 4 IPv4
// bytes) and is followed by 14 more IPv4 header bytes, the UDP header and the ICRC'd body.
// CRC is linear over GF(2): flipping ID bits m(x) changes the CRC by m(x) * x^(32 + 8 * (22 +
// body)) mod P, whatever the rest of the message. Rather than eliminate over the 16 images of
// the ID bits, the mismatch is multiplied by the inverse power (x is invertible mod P), which
// maps the span of those images onto the polynomials of degree < 16: the mismatch is an ID
// change iff the product has no higher terms, and then the product is the ID. A random
// corruption passes with probability 2^-16. The inverse powers come from two 256-entry tables
// (body = hi * 256 + lo), so the cost is two 32-step multiplications, independent of length.
constexpr unsigned kBitsAfterId = 32 + 8 * (kIpv4Hdr - 6 + kUdpHdr);

struct InvTables {
  uint32_t lo[256];  // x^-(kBitsAfterId + 8 * lo)
  uint32_t hi[256];  // x^-(2048 * hi)
};

constexpr InvTables make_inv_tables() {
  InvTables t{};
  t.lo[0] = div_pow(kOne, kBitsAfterId);
  for (int i = 1; i < 256; ++i) t.lo[i] = div_pow(t.lo[i - 1], 8);
  const uint32_t step = div_pow(kOne, 2048);
  t.hi[0] = kOne;
  for (int i = 1; i < 256; ++i) t.hi[i] = mulmod(t.hi[i - 1], step);
  return t;
}

constexpr InvTables kInv = make_inv_tables();

constexpr uint32_t mul_pow(uint32_t r, unsigned k) {
  for (unsigned i = 0; i < k; ++i) r = mulx(r);
  return r;
}

// The forward powers, for icrc_ipv4_id_delta: the inverse of kInv entry by entry.
struct FwdTables {
  uint32_t lo[256];  // x^(kBitsAfterId + 8 * lo)
  uint32_t hi[256];  // x^(2048 * hi)
};

constexpr FwdTables make_fwd_tables() {
  FwdTables t{};
  t.lo[0] = mul_pow(kOne, kBitsAfterId);
  for (int i = 1; i < 256; ++i) t.lo[i] = mul_pow(t.lo[i - 1], 8);
  const uint32_t step = mul_pow(kOne, 2048);
  t.hi[0] = kOne;
  for (int i = 1; i < 256; ++i) t.hi[i] = mulmod(t.hi[i - 1], step);
  return t;
}

static_assert(mulmod(div_pow(kOne, 77), mul_pow(kOne, 77)) == kOne);
static_assert(mulmod(kInv.hi[3], mul_pow(kOne, 3 * 2048)) == kOne);
static_assert(mulmod(kInv.lo[5], mul_pow(kOne, kBitsAfterId + 40)) == kOne);

constexpr FwdTables kFwd = make_fwd_tables();
static_assert(mulmod(kInv.lo[7], kFwd.lo[7]) == kOne && mulmod(kInv.hi[9], kFwd.hi[9]) == kOne);

}  // namespace

// crc32_clmul.cc. Each fold function needs len >= kFoldMin (crc32_clmul_fold: kShortFoldMin)
// and folds p[0..len) into a 16-byte block standing for the bytes it reports (a multiple of
// 16); the table finishes.
bool crc32_clmul_available();
size_t crc32_clmul_fold(uint32_t crc, const uint8_t* p, size_t len, uint8_t out[16]);
bool crc32_vpclmul256_available();
size_t crc32_vpclmul256_fold(uint32_t crc, const uint8_t* p, size_t len, uint8_t out[16]);
bool crc32_vpclmul512_available();
size_t crc32_vpclmul512_fold(uint32_t crc, const uint8_t* p, size_t len, uint8_t out[16]);

namespace {

uint32_t crc32_table(uint32_t crc, const uint8_t* p, size_t len) {
  const auto& t = kSlice.t;
  for (; len >= 8; p += 8, len -= 8) {
    const uint32_t lo = crc ^ load_le32(p);
    const uint32_t hi = load_le32(p + 4);
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
          t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
  }
  return crc_bytewise(crc, p, len);
}

using FoldFn = size_t (*)(uint32_t crc, const uint8_t* p, size_t len, uint8_t out[16]);
constexpr size_t kFoldMin = 64;
// From 32 bytes on, folding one 128-bit lane leaves the table at most 31 bytes instead of up to 63.
constexpr size_t kShortFoldMin = 32;

uint32_t crc32_folded(FoldFn fold, uint32_t crc, const uint8_t* p, size_t len) {
  uint8_t block[16];
  const size_t used = fold(crc, p, len, block);
  return crc32_table(crc32_table(0, block, sizeof block), p + used, len - used);
}

FoldFn fold_for(Crc32Path path) {
  switch (path) {
    case Crc32Path::kTable: return nullptr;
    case Crc32Path::kClmul: return crc32_clmul_available() ? crc32_clmul_fold : nullptr;
    case Crc32Path::kVpclmul256: return crc32_vpclmul256_available() ? crc32_vpclmul256_fold : nullptr;
    case Crc32Path::kVpclmul512: return crc32_vpclmul512_available() ? crc32_vpclmul512_fold : nullptr;
  }
  return nullptr;
}

// The pseudo header before the BTH: the masked LRH (8 bytes of ones), the IP header and the UDP
// header. Besides the addressing, only the lengths (and the IPv4 ID) change from packet to
// packet, and the CRC register is linear in every byte: the register after the prefix is that of
// the prefix with those fields zero, XOR the image of each field byte, a byte b at offset p
// contributing the register after b followed by (prefix length - p - 1) zero bytes, from 0.
// Precomputing the images saves a 36- or 56-byte table CRC on every packet; the zero-field
// register depends on the addressing only and is remembered for the last one seen per thread.
constexpr size_t kPrefixV4 = 8 + kIpv4Hdr + kUdpHdr, kPrefixV6 = 8 + kIpv6Hdr + kUdpHdr;

struct ByteImages {
  uint32_t at[256];
};

constexpr ByteImages byte_images(size_t trailing_zero_bytes) {
  ByteImages im{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t r = kSlice.t[0][b];
    for (size_t i = 0; i < trailing_zero_bytes; ++i) r = kSlice.t[0][r & 0xff] ^ (r >> 8);
    im.at[b] = r;
  }
  return im;
}

// The image of the byte at offset p of a prefix of `len` bytes.
constexpr ByteImages image_at(size_t len, size_t p) { return byte_images(len - p - 1); }

struct PrefixImages {
  // IPv4: total length (offset 8+2), identification (8+4), UDP length (8+20+4); high byte first.
  ByteImages v4_total[2], v4_id[2], v4_udp[2];
  // IPv6: payload length (8+4), UDP length (8+40+4).
  ByteImages v6_payload[2], v6_udp[2];
};

constexpr PrefixImages make_prefix_images() {
  PrefixImages t{};
  for (size_t i = 0; i < 2; ++i) {
    t.v4_total[i] = image_at(kPrefixV4, 10 + i);
    t.v4_id[i] = image_at(kPrefixV4, 12 + i);
    t.v4_udp[i] = image_at(kPrefixV4, 32 + i);
    t.v6_payload[i] = image_at(kPrefixV6, 12 + i);
    t.v6_udp[i] = image_at(kPrefixV6, 52 + i);
  }
  return t;
}

constexpr PrefixImages kPrefixImages = make_prefix_images();

uint32_t image16(const ByteImages (&im)[2], size_t v) { return im[0].at[(v >> 8) & 0xff] ^ im[1].at[v & 0xff]; }

// The register after the prefix with lengths and ID zero.
uint32_t zero_field_register(const IcrcContext& ctx) {
  uint8_t h[kIpv6Hdr + kUdpHdr] = {};
  size_t n = 0;
  if (ctx.src.is_v4()) {
    const uint8_t v4[12] = {0x45, 0xff,  // version/IHL, TOS masked
                            0, 0, 0, 0,  // total length, identification: added by linearity
                            0x40, 0x00,  // DF, fragment offset 0
                            0xff, 17,    // TTL masked, protocol UDP
                            0xff, 0xff};  // header checksum masked
    std::memcpy(h, v4, sizeof v4);
    std::memcpy(h + 12, ctx.src.bytes.data() + 12, 4);
    std::memcpy(h + 16, ctx.dst.bytes.data() + 12, 4);
    n = kIpv4Hdr;
  } else {
    const uint8_t v6[8] = {0x6f, 0xff, 0xff, 0xff,  // version 6; traffic class, flow label masked
                           0, 0,                    // payload length: added by linearity
                           17, 0xff};               // next header UDP, hop limit masked
    std::memcpy(h, v6, sizeof v6);
    std::memcpy(h + 8, ctx.src.bytes.data(), 16);
    std::memcpy(h + 24, ctx.dst.bytes.data(), 16);
    n = kIpv6Hdr;
  }
  const uint8_t udp[kUdpHdr] = {static_cast<uint8_t>(ctx.sport >> 8), static_cast<uint8_t>(ctx.sport),
                                static_cast<uint8_t>(ctx.dport >> 8), static_cast<uint8_t>(ctx.dport),
                                0, 0,         // UDP length: added by linearity
                                0xff, 0xff};  // UDP checksum masked
  std::memcpy(h + n, udp, kUdpHdr);
  return crc32_table(kAfterLrh, h, n + kUdpHdr);
}

uint32_t prefix_register(const IcrcContext& ctx, size_t udp_len, uint16_t ipv4_id) {
  // Two entries: a thread that sends and receives alternates between its frames' context and
  // the reverse one (a ping-pong would miss one entry on every packet).
  struct Entry {
    IcrcContext ctx;
    uint32_t reg = 0;
    bool known = false;
    bool matches(const IcrcContext& c) const {
      return known && c.sport == ctx.sport && c.dport == ctx.dport && c.src == ctx.src && c.dst == ctx.dst;
    }
  };
  struct Last {
    Entry e[2];
    uint8_t older = 0;  // the entry a miss replaces
  };
  thread_local Last last;  // one TLS access (a call in a shared library)
  Last& cache = last;
  Entry* hit = nullptr;
  if (cache.e[0].matches(ctx)) {
    hit = &cache.e[0];
    cache.older = 1;
  } else if (cache.e[1].matches(ctx)) {
    hit = &cache.e[1];
    cache.older = 0;
  } else {
    hit = &cache.e[cache.older];
    cache.older ^= 1;
    hit->ctx = ctx;
    hit->reg = zero_field_register(ctx);
    hit->known = true;
  }
  const Entry& l = *hit;
  const auto& t = kPrefixImages;
  if (ctx.src.is_v4())
    return l.reg ^ image16(t.v4_total, kIpv4Hdr + udp_len) ^ image16(t.v4_udp, udp_len) ^
           (ipv4_id ? image16(t.v4_id, ipv4_id) : 0u);
  return l.reg ^ image16(t.v6_payload, udp_len) ^ image16(t.v6_udp, udp_len);
}

}  // namespace

uint32_t crc32_update(uint32_t crc, const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  // Folding (then 16 bytes of table) beats the table alone from the first full 64 bytes on: on
  // an EPYC (Zen 4) at 64 bytes, 16 ns (512-bit) or 18 ns (PCLMUL) against 30 ns (bench_icrc).
  // The widest path is the fastest at every length there: VPCLMULQDQ issues about as often at
  // any width, so each doubling of width nearly doubles the throughput.
  if (len >= kShortFoldMin) {
    static const FoldFn fold = [] {
      for (auto path : {Crc32Path::kVpclmul512, Crc32Path::kVpclmul256, Crc32Path::kClmul})
        if (FoldFn f = fold_for(path)) return f;
      return FoldFn{nullptr};
    }();
    static const FoldFn short_fold = fold_for(Crc32Path::kClmul);
    if (len >= kFoldMin && fold) return crc32_folded(fold, crc, p, len);
    if (short_fold) return crc32_folded(short_fold, crc, p, len);
  }
  return crc32_table(crc, p, len);
}

uint32_t crc32_update_table(uint32_t crc, const void* data, size_t len) {
  return crc32_table(crc, static_cast<const uint8_t*>(data), len);
}

bool crc32_path_available(Crc32Path path) { return path == Crc32Path::kTable || fold_for(path) != nullptr; }

uint32_t crc32_update_path(Crc32Path path, uint32_t crc, const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  const FoldFn fold = fold_for(path);
  const size_t min = path == Crc32Path::kClmul ? kShortFoldMin : kFoldMin;
  return fold && len >= min ? crc32_folded(fold, crc, p, len) : crc32_table(crc, p, len);
}

std::string_view name(Crc32Path path) {
  switch (path) {
    case Crc32Path::kTable: return "table";
    case Crc32Path::kClmul: return "pclmul";
    case Crc32Path::kVpclmul256: return "vpclmul256";
    case Crc32Path::kVpclmul512: return "vpclmul512";
  }
  return "?";
}

uint32_t icrc_compute(const IcrcContext& ctx, const iovec* parts, size_t nparts, uint16_t ipv4_id) {
  size_t body = 0;
  for (size_t i = 0; i < nparts; ++i) body += parts[i].iov_len;
  const size_t udp_len = kUdpHdr + body + kIcrcSize;  // the UDP payload carries the ICRC too

  // The CRC register after the masked LRH, IP and UDP headers: the addressing's, with the
  // lengths (and IPv4 ID) added in by linearity.
  uint32_t crc = prefix_register(ctx, udp_len, ipv4_id);

  // Then the BTH with its resv8a byte masked (IBA A17.8: FECN, BECN, resv6). It may be split
  // over parts: gather it.
  uint8_t h[bth::kSize] = {};
  size_t part = 0, off = 0, got = 0;
  while (got < bth::kSize && part < nparts) {
    const size_t take = std::min(bth::kSize - got, parts[part].iov_len - off);
    if (take) std::memcpy(h + got, static_cast<const uint8_t*>(parts[part].iov_base) + off, take);
    got += take;
    off += take;
    if (off == parts[part].iov_len) ++part, off = 0;
  }
  if (got > kBthResv8aOffset) h[kBthResv8aOffset] = 0xff;

  crc = crc32_table(crc, h, got);
  for (; part < nparts; ++part, off = 0)
    crc = crc32_update(crc, static_cast<const uint8_t*>(parts[part].iov_base) + off, parts[part].iov_len - off);
  return ~crc;
}

// The ICRC goes on the wire least significant byte first: Linux rxe stores the CRC word in host
// (little-endian) order, and the test vectors and RoCE hardware agree (tests/unit/wire).
void icrc_store(uint8_t* dst, uint32_t icrc) {
  dst[0] = static_cast<uint8_t>(icrc);
  dst[1] = static_cast<uint8_t>(icrc >> 8);
  dst[2] = static_cast<uint8_t>(icrc >> 16);
  dst[3] = static_cast<uint8_t>(icrc >> 24);
}

uint32_t icrc_load(const uint8_t* src) { return load_le32(src); }

uint32_t icrc_ipv4_id_delta(size_t body, uint16_t id) {
  if (id == 0 || body > 0xffff) return 0;
  // The ID bits in the layout icrc_verify recovers them from (first byte on the wire in bits
  // 16..23, the second in bits 24..31), moved to their place in the message.
  const uint32_t m = uint32_t{static_cast<uint8_t>(id >> 8)} << 16 | uint32_t{static_cast<uint8_t>(id)} << 24;
  uint32_t d = mulmod(m, kFwd.lo[body & 0xff]);
  if (body >> 8) d = mulmod(d, kFwd.hi[body >> 8]);
  return d;
}

std::string_view name(IcrcResult r) {
  switch (r) {
    case IcrcResult::kGood: return "good";
    case IcrcResult::kGoodInferredId: return "good_inferred_id";
    case IcrcResult::kBad: return "bad";
  }
  return "?";
}

IcrcResult icrc_verify(const IcrcContext& ctx, const uint8_t* pkt, size_t len, bool infer_ipv4_id,
                       uint16_t* inferred_id) {
  if (len < kIcrcSize) return IcrcResult::kBad;
  const size_t body = len - kIcrcSize;
  const iovec part{const_cast<uint8_t*>(pkt), body};
  const uint32_t want = icrc_load(pkt + body);
  const uint32_t delta = icrc_compute(ctx, &part, 1, 0) ^ want;
  if (delta == 0) return IcrcResult::kGood;
  // An IPv4 UDP payload is below 64 KiB, so body fits the two inverse-power tables.
  if (!infer_ipv4_id || !ctx.src.is_v4() || body > 0xffff) return IcrcResult::kBad;

  // The ICRC inversion cancels in the XOR, so delta is the raw CRC of the ID bits alone.
  uint32_t m = mulmod(delta, kInv.lo[body & 0xff]);
  if (body >> 8) m = mulmod(m, kInv.hi[body >> 8]);  // kInv.hi[0] is 1: skip for short packets
  if ((m & 0xffff) != 0) return IcrcResult::kBad;  // not in the span of the 16 ID bits
  // Bits 16..23 hold the first ID byte on the wire (LSB first), bits 24..31 the second.
  const auto id = static_cast<uint16_t>(((m >> 16) & 0xff) << 8 | (m >> 24));
  if (inferred_id) *inferred_id = id;
  return IcrcResult::kGoodInferredId;
}

}  // namespace softrdma::wire
