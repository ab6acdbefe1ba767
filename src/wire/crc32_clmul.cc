// CRC-32 by carry-less multiplication (PCLMULQDQ), for long runs of payload.
//
// The idea (folding): the CRC of a message only depends on the message polynomial modulo P.
// A 128-bit block X followed by D more bits contributes X(x)·x^D; splitting X into its first
// (higher-degree) 64 bits A and its last 64 bits B, X·x^D ≡ A·(x^(64+D) mod P) + B·(x^D mod P),
// a 128-bit value that can be XORed into the block D bits later without changing the CRC. We
// keep four such 128-bit lanes (64 bytes per step, enough independent multiplies to hide their
// latency), merge the lanes, and finish the last 16 bytes with the table code, which also does
// the final reduction. The folding constants are computed here from P, not tabulated.
//
// Bit order: the CRC is reflected, so the first byte's least significant bit is the message's
// highest-degree coefficient, and a little-endian 64-bit load holds coefficients x^63..x^0 of
// its 64-bit piece in bits 0..63. A carry-less product of two such "reversed" words puts x^k
// at bit (e - k) for some fixed e; the constants are stored pre-multiplied by x and reversed
// so that the product lands exactly in the block layout (x^k at bit 127 - k).
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace softrdma::wire {

namespace {

constexpr uint64_t kPolyNormal = 0x104C11DB7ull;  // x^32 + ... + 1, bit d = coefficient of x^d

// x^n mod P in normal form (bit d = coefficient of x^d).
constexpr uint64_t xpow_mod(unsigned n) {
  uint64_t r = 1;
  for (unsigned i = 0; i < n; ++i) {
    r <<= 1;
    if (r & (1ull << 32)) r ^= kPolyNormal;
  }
  return r;
}

// The 64-bit multiplier for a 64-bit piece that lies `distance` bits before its target: the
// residue R = x^(distance-1) mod P, times x (degree 1..32), stored with x^d at bit 64 - d.
constexpr uint64_t fold_constant(unsigned distance) {
  uint64_t r = xpow_mod(distance - 1) << 1;  // R·x, degrees 1..32
  uint64_t word = 0;
  for (unsigned d = 1; d <= 32; ++d)
    if (r & (1ull << d)) word |= 1ull << (64 - d);
  return word;
}

struct FoldPair {
  uint64_t first;   // for A, the first 64 bits of a block: distance + 64
  uint64_t second;  // for B, the last 64 bits: distance
};

constexpr FoldPair pair_for(unsigned distance) { return {fold_constant(distance + 64), fold_constant(distance)}; }

constexpr FoldPair kBy512 = pair_for(512);  // one lane to the same lane 64 bytes later
constexpr FoldPair kBy128 = pair_for(128);  // one block to the next

__attribute__((target("pclmul,sse4.1"))) inline __m128i fold(__m128i x, __m128i k) {
  // k holds {first, second}: A (low quadword of x) times first, B (high quadword) times second.
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

__attribute__((target("pclmul,sse4.1"))) inline __m128i load(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

}  // namespace

bool crc32_clmul_available() {
  static const bool ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return ok;
}

// Folds p[0..len) (len >= 64) into a 16-byte block whose CRC from register 0 equals the CRC of
// p from register crc; returns how many bytes of p that block stands for (a multiple of 16).
__attribute__((target("pclmul,sse4.1"))) size_t crc32_clmul_fold(uint32_t crc, const uint8_t* p, size_t len,
                                                                 uint8_t out[16]) {
  const __m128i k512 = _mm_set_epi64x(static_cast<long long>(kBy512.second), static_cast<long long>(kBy512.first));
  const __m128i k128 = _mm_set_epi64x(static_cast<long long>(kBy128.second), static_cast<long long>(kBy128.first));
  // The starting register joins the first four message bytes (reflected CRC property).
  __m128i x0 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(crc)));
  __m128i x1 = load(p + 16), x2 = load(p + 32), x3 = load(p + 48);
  size_t done = 64;
  for (; len - done >= 64; done += 64) {
    x0 = _mm_xor_si128(fold(x0, k512), load(p + done));
    x1 = _mm_xor_si128(fold(x1, k512), load(p + done + 16));
    x2 = _mm_xor_si128(fold(x2, k512), load(p + done + 32));
    x3 = _mm_xor_si128(fold(x3, k512), load(p + done + 48));
  }
  x1 = _mm_xor_si128(x1, fold(x0, k128));
  x2 = _mm_xor_si128(x2, fold(x1, k128));
  x3 = _mm_xor_si128(x3, fold(x2, k128));
  for (; len - done >= 16; done += 16) x3 = _mm_xor_si128(fold(x3, k128), load(p + done));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), x3);
  return done;
}

}  // namespace softrdma::wire
