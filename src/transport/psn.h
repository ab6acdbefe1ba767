// 24-bit packet sequence numbers with wrap-around (IBA 9.7.1).
#pragma once

#include <cstdint>

#include "wire/fields.h"

namespace softrdma::transport {

constexpr uint32_t psn_add(uint32_t psn, uint32_t n) { return (psn + n) & wire::kPsnMask; }
constexpr uint32_t psn_prev(uint32_t psn) { return (psn - 1) & wire::kPsnMask; }

// Signed distance a - b in PSN space: positive when a is after b, within half the space.
constexpr int32_t psn_diff(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(((a - b) & wire::kPsnMask) << 8) >> 8;
}

constexpr bool psn_before(uint32_t a, uint32_t b) { return psn_diff(a, b) < 0; }
constexpr bool psn_after(uint32_t a, uint32_t b) { return psn_diff(a, b) > 0; }

static_assert(psn_diff(0, 0xffffff) == 1);
static_assert(psn_diff(0xffffff, 0) == -1);
static_assert(psn_add(0xfffffe, 3) == 1);
static_assert(psn_before(0xfffff0, 5));

}  // namespace softrdma::transport
