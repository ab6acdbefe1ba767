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
//
// The wide paths (VPCLMULQDQ) run the same fold on every 128-bit lane of a 256- or 512-bit
// vector at once: lane j of a vector is the block 16·j bytes into it, so a whole vector folds
// onto the vector `distance` bits later with the same pair of constants in every lane, and the
// lanes of the last vector fold onto its top lane by 128·(lanes-1-j) bits at the end.
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

// A second derivation, in the reflected register arithmetic icrc.cc uses (x^j at bit 31 - j,
// multiplying by x is a shift right and a conditional XOR of 0xEDB88320): the word above is the
// reflected residue x^(distance-1) mod P in its high half. The wide paths take their constants
// from here; the asserts tie it to the 128-bit path's constants at the distances that path uses.
constexpr uint64_t reflected_constant(unsigned distance) {
  uint32_t r = 0x80000000u;  // the polynomial 1
  for (unsigned i = 1; i < distance; ++i) r = (r >> 1) ^ (0xEDB88320u & (0u - (r & 1u)));
  return uint64_t{r} << 32;
}

constexpr FoldPair wide_pair(unsigned distance) {
  return {reflected_constant(distance + 64), reflected_constant(distance)};
}

static_assert(wide_pair(128).first == kBy128.first && wide_pair(128).second == kBy128.second);
static_assert(wide_pair(512).first == kBy512.first && wide_pair(512).second == kBy512.second);
static_assert(reflected_constant(1000) == fold_constant(1000) &&
              reflected_constant(4160) == fold_constant(4160));

__attribute__((target("pclmul,sse4.1"))) inline __m128i fold(__m128i x, __m128i k) {
  // k holds {first, second}: A (low quadword of x) times first, B (high quadword) times second.
  return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

__attribute__((target("pclmul,sse4.1"))) inline __m128i load(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

// The common end of every fold: the 16-byte blocks left after p[0..done) go into the one
// 128-bit lane x, which is stored to out; returns the bytes out stands for.
__attribute__((target("pclmul,sse4.1"))) inline size_t fold_rest_128(__m128i x, const uint8_t* p, size_t len,
                                                                     size_t done, uint8_t out[16]) {
  const __m128i k128 = _mm_set_epi64x(static_cast<long long>(kBy128.second), static_cast<long long>(kBy128.first));
  for (; len - done >= 16; done += 16) x = _mm_xor_si128(fold(x, k128), load(p + done));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), x);
  return done;
}

}  // namespace

bool crc32_clmul_available() {
  static const bool ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
  return ok;
}

// Folds p[0..len) (len >= 16) into a 16-byte block whose CRC from register 0 equals the CRC of
// p from register crc; returns how many bytes of p that block stands for (a multiple of 16).
// Below 64 bytes it folds one lane (the headers of small packets: fewer bytes for the table).
__attribute__((target("pclmul,sse4.1"))) size_t crc32_clmul_fold(uint32_t crc, const uint8_t* p, size_t len,
                                                                 uint8_t out[16]) {
  const __m128i k512 = _mm_set_epi64x(static_cast<long long>(kBy512.second), static_cast<long long>(kBy512.first));
  const __m128i k128 = _mm_set_epi64x(static_cast<long long>(kBy128.second), static_cast<long long>(kBy128.first));
  // The starting register joins the first four message bytes (reflected CRC property).
  __m128i x0 = _mm_xor_si128(load(p), _mm_cvtsi32_si128(static_cast<int>(crc)));
  if (len < 64) return fold_rest_128(x0, p, len, 16, out);
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
  return fold_rest_128(x3, p, len, done, out);
}

// ---- VPCLMULQDQ on 512-bit vectors: four 128-bit lanes per instruction. ----
#define SOFTRDMA_V512 __attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.1")))

namespace {

// Per-lane constant pairs, laid out as one 512-bit load.
struct alignas(64) Lanes {
  uint64_t q[8];
};

constexpr Lanes repeat(FoldPair k) {
  return {{k.first, k.second, k.first, k.second, k.first, k.second, k.first, k.second}};
}

constexpr Lanes kV512By2048 = repeat(wide_pair(2048));  // four vectors (256 bytes) ahead
constexpr Lanes kV512By1536 = repeat(wide_pair(1536));
constexpr Lanes kV512By1024 = repeat(wide_pair(1024));
constexpr Lanes kV512By512 = repeat(wide_pair(512));  // one vector ahead
// Lanes 0..2 of the last vector onto lane 3; zero for lane 3, which is XORed in as it is.
constexpr Lanes kV512Lanes = {{wide_pair(384).first, wide_pair(384).second, wide_pair(256).first,
                               wide_pair(256).second, wide_pair(128).first, wide_pair(128).second, 0, 0}};

SOFTRDMA_V512 inline __m512i zload(const uint8_t* p) {
  return _mm512_loadu_si512(p);
}
SOFTRDMA_V512 inline __m512i zconst(const Lanes& k) {
  return _mm512_load_si512(k.q);
}

SOFTRDMA_V512 inline __m512i zfold(__m512i x, __m512i k) {
  return _mm512_xor_si512(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11));
}

// fold(x, k) ^ y with one three-way XOR.
SOFTRDMA_V512 inline __m512i zfold_xor(__m512i x, __m512i k, __m512i y) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11),
                                   y, 0x96);
}

}  // namespace

bool crc32_vpclmul512_available() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("vpclmulqdq") && crc32_clmul_available();
  return ok;
}

// Same contract as crc32_clmul_fold (len >= 64).
SOFTRDMA_V512 size_t crc32_vpclmul512_fold(uint32_t crc, const uint8_t* p, size_t len, uint8_t out[16]) {
  __m512i z0 = _mm512_xor_si512(zload(p), _mm512_zextsi128_si512(_mm_cvtsi32_si128(static_cast<int>(crc))));
  size_t done = 64;
  if (len >= 256) {
    // Four vectors in flight hide the multiply latency; eight were no faster on Zen 4 (the
    // multiplier's issue rate is the limit there).
    __m512i z1 = zload(p + 64), z2 = zload(p + 128), z3 = zload(p + 192);
    const __m512i k2048 = zconst(kV512By2048);
    for (done = 256; len - done >= 256; done += 256) {
      z0 = zfold_xor(z0, k2048, zload(p + done));
      z1 = zfold_xor(z1, k2048, zload(p + done + 64));
      z2 = zfold_xor(z2, k2048, zload(p + done + 128));
      z3 = zfold_xor(z3, k2048, zload(p + done + 192));
    }
    // Each onto the last, independently rather than as a chain.
    z0 = _mm512_ternarylogic_epi64(zfold(z0, zconst(kV512By1536)), zfold(z1, zconst(kV512By1024)),
                                   zfold_xor(z2, zconst(kV512By512), z3), 0x96);
  }
  const __m512i k512 = zconst(kV512By512);
  for (; len - done >= 64; done += 64) z0 = zfold_xor(z0, k512, zload(p + done));
  const __m512i t = zfold_xor(z0, zconst(kV512Lanes), _mm512_maskz_mov_epi64(0xc0, z0));
  // The zero-masking forms: GCC 12 warns that the plain ones read an undefined vector.
  const __m256i y = _mm256_xor_si256(_mm512_maskz_extracti64x4_epi64(0xf, t, 0),
                                     _mm512_maskz_extracti64x4_epi64(0xf, t, 1));
  return fold_rest_128(_mm_xor_si128(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1)), p, len, done, out);
}

#undef SOFTRDMA_V512

// ---- VPCLMULQDQ on 256-bit vectors: for CPUs that have it without AVX-512 (Zen 3, Intel client). ----
#define SOFTRDMA_V256 __attribute__((target("avx2,vpclmulqdq,pclmul,sse4.1")))

namespace {

constexpr Lanes kV256By1024 = repeat(wide_pair(1024));  // four vectors (128 bytes) ahead
constexpr Lanes kV256By768 = repeat(wide_pair(768));
constexpr Lanes kV256By512 = repeat(wide_pair(512));
constexpr Lanes kV256By256 = repeat(wide_pair(256));  // one vector ahead
constexpr Lanes kV256Lanes = {{wide_pair(128).first, wide_pair(128).second, 0, 0, 0, 0, 0, 0}};

SOFTRDMA_V256 inline __m256i yload(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
SOFTRDMA_V256 inline __m256i yconst(const Lanes& k) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(k.q));
}

SOFTRDMA_V256 inline __m256i yfold(__m256i x, __m256i k) {
  return _mm256_xor_si256(_mm256_clmulepi64_epi128(x, k, 0x00), _mm256_clmulepi64_epi128(x, k, 0x11));
}

}  // namespace

bool crc32_vpclmul256_available() {
  static const bool ok =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("vpclmulqdq") && crc32_clmul_available();
  return ok;
}

// Same contract as crc32_clmul_fold (len >= 64).
SOFTRDMA_V256 size_t crc32_vpclmul256_fold(uint32_t crc, const uint8_t* p, size_t len, uint8_t out[16]) {
  __m256i y0 = _mm256_xor_si256(yload(p), _mm256_setr_epi32(static_cast<int>(crc), 0, 0, 0, 0, 0, 0, 0));
  size_t done = 32;
  if (len >= 128) {
    __m256i y1 = yload(p + 32), y2 = yload(p + 64), y3 = yload(p + 96);
    const __m256i k1024 = yconst(kV256By1024);
    for (done = 128; len - done >= 128; done += 128) {
      y0 = _mm256_xor_si256(yfold(y0, k1024), yload(p + done));
      y1 = _mm256_xor_si256(yfold(y1, k1024), yload(p + done + 32));
      y2 = _mm256_xor_si256(yfold(y2, k1024), yload(p + done + 64));
      y3 = _mm256_xor_si256(yfold(y3, k1024), yload(p + done + 96));
    }
    y0 = _mm256_xor_si256(_mm256_xor_si256(yfold(y0, yconst(kV256By768)), yfold(y1, yconst(kV256By512))),
                          _mm256_xor_si256(yfold(y2, yconst(kV256By256)), y3));
  }
  const __m256i k256 = yconst(kV256By256);
  for (; len - done >= 32; done += 32) y0 = _mm256_xor_si256(yfold(y0, k256), yload(p + done));
  // Lane 0 onto lane 1 (the constants' upper lane is zero, so t's upper lane is too).
  const __m256i t = yfold(y0, yconst(kV256Lanes));
  return fold_rest_128(_mm_xor_si128(_mm256_castsi256_si128(t), _mm256_extracti128_si256(y0, 1)), p, len, done, out);
}

#undef SOFTRDMA_V256

}  // namespace softrdma::wire
