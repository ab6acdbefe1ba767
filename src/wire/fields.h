// Table-driven wire headers.
//
// Every InfiniBand transport header is described exactly once below, as a list of fields
// (byte offset, width in bytes of the big-endian word holding it, bit shift, bit width).
// The accessors (get/set), the header sizes and the field name tables used by logs and the
// packet printer are all derived from these lists, so a header layout lives in one place.
// IBA Vol 1, chapter 9.2 and 9.3; RoCEv2 Annex A17.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace softrdma::wire {

// One field of a header: a bit range inside a big-endian word of `bytes` bytes at `offset`.
struct Field {
  std::string_view name;
  uint16_t offset;  // byte offset of the big-endian word from the header start
  uint8_t bytes;    // size of that word: 1..8
  uint8_t shift;    // bit position of the field's least significant bit within the word
  uint8_t width;    // bits

  constexpr uint64_t mask() const { return width >= 64 ? ~0ull : ((1ull << width) - 1); }
};

constexpr uint64_t load_be(const uint8_t* p, unsigned bytes) {
  uint64_t v = 0;
  for (unsigned i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

constexpr void store_be(uint8_t* p, unsigned bytes, uint64_t v) {
  for (unsigned i = bytes; i-- > 0;) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

constexpr uint64_t get(const uint8_t* hdr, const Field& f) {
  return (load_be(hdr + f.offset, f.bytes) >> f.shift) & f.mask();
}

constexpr void set(uint8_t* hdr, const Field& f, uint64_t value) {
  uint64_t word = load_be(hdr + f.offset, f.bytes);
  word &= ~(f.mask() << f.shift);
  word |= (value & f.mask()) << f.shift;
  store_be(hdr + f.offset, f.bytes, word);
}

// X(field, byte offset, word bytes, shift, width)
#define SOFTRDMA_BTH_FIELDS(X)   \
  X(opcode, 0, 1, 0, 8)          \
  X(se, 1, 1, 7, 1)              \
  X(migreq, 1, 1, 6, 1)          \
  X(padcnt, 1, 1, 4, 2)          \
  X(tver, 1, 1, 0, 4)            \
  X(pkey, 2, 2, 0, 16)           \
  X(fecn, 4, 1, 7, 1)            \
  X(becn, 4, 1, 6, 1)            \
  X(resv8a, 4, 1, 0, 6)          \
  X(dqpn, 5, 3, 0, 24)           \
  X(ackreq, 8, 1, 7, 1)          \
  X(resv7, 8, 1, 0, 7)           \
  X(psn, 9, 3, 0, 24)

#define SOFTRDMA_RETH_FIELDS(X) \
  X(va, 0, 8, 0, 64)            \
  X(rkey, 8, 4, 0, 32)          \
  X(dmalen, 12, 4, 0, 32)

#define SOFTRDMA_AETH_FIELDS(X) \
  X(syndrome, 0, 1, 0, 8)       \
  X(msn, 1, 3, 0, 24)

#define SOFTRDMA_DETH_FIELDS(X) \
  X(qkey, 0, 4, 0, 32)          \
  X(sqpn, 5, 3, 0, 24)

#define SOFTRDMA_IMMDT_FIELDS(X) X(imm, 0, 4, 0, 32)

#define SOFTRDMA_IETH_FIELDS(X) X(rkey, 0, 4, 0, 32)

#define SOFTRDMA_ATMETH_FIELDS(X) \
  X(va, 0, 8, 0, 64)              \
  X(rkey, 8, 4, 0, 32)            \
  X(swap_add, 12, 8, 0, 64)       \
  X(compare, 20, 8, 0, 64)

#define SOFTRDMA_ATMACK_FIELDS(X) X(orig, 0, 8, 0, 64)

// Each header gets a namespace with one constexpr Field per entry, its size, and a field list.
#define SOFTRDMA_FIELD_DEF(n, off, by, sh, w) inline constexpr Field n{#n, off, by, sh, w};
#define SOFTRDMA_FIELD_REF(n, off, by, sh, w) n,
#define SOFTRDMA_FIELD_END(n, off, by, sh, w) (off + by),

constexpr size_t max_of(std::initializer_list<size_t> l) {
  size_t m = 0;
  for (size_t v : l) m = v > m ? v : m;
  return m;
}

#define SOFTRDMA_HEADER(ns, LIST)                                                       \
  namespace ns {                                                                        \
  LIST(SOFTRDMA_FIELD_DEF)                                                              \
  inline constexpr Field kFields[] = {LIST(SOFTRDMA_FIELD_REF)};                        \
  inline constexpr size_t kSize = max_of({LIST(SOFTRDMA_FIELD_END)});                   \
  }

SOFTRDMA_HEADER(bth, SOFTRDMA_BTH_FIELDS)
SOFTRDMA_HEADER(reth, SOFTRDMA_RETH_FIELDS)
SOFTRDMA_HEADER(aeth, SOFTRDMA_AETH_FIELDS)
SOFTRDMA_HEADER(deth, SOFTRDMA_DETH_FIELDS)
SOFTRDMA_HEADER(immdt, SOFTRDMA_IMMDT_FIELDS)
SOFTRDMA_HEADER(ieth, SOFTRDMA_IETH_FIELDS)
SOFTRDMA_HEADER(atmeth, SOFTRDMA_ATMETH_FIELDS)
SOFTRDMA_HEADER(atmack, SOFTRDMA_ATMACK_FIELDS)

static_assert(bth::kSize == 12);
static_assert(reth::kSize == 16);
static_assert(aeth::kSize == 4);
static_assert(deth::kSize == 8);
static_assert(immdt::kSize == 4);
static_assert(ieth::kSize == 4);
static_assert(atmeth::kSize == 28);
static_assert(atmack::kSize == 8);

inline constexpr size_t kIcrcSize = 4;
inline constexpr uint16_t kRoceV2Port = 4791;
inline constexpr uint16_t kDefaultPkey = 0xffff;
inline constexpr uint32_t kPsnMask = 0xffffff;
inline constexpr uint32_t kQpnMask = 0xffffff;

}  // namespace softrdma::wire
