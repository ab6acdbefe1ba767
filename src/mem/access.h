// Access rights of memory regions and windows, and what a validation failure means.
// The numeric values equal libibverbs' IBV_ACCESS_* so the verbs layer passes them through.
#pragma once

#include <cstdint>
#include <string_view>

namespace softrdma::mem {

enum Access : uint32_t {
  kLocalWrite = 1u << 0,
  kRemoteWrite = 1u << 1,
  kRemoteRead = 1u << 2,
  kRemoteAtomic = 1u << 3,
  kMwBind = 1u << 4,
  kZeroBased = 1u << 5,
  kOnDemand = 1u << 6,
  kHugetlb = 1u << 7,
  kRelaxedOrdering = 1u << 20,
  // softrdma extensions, in the range libibverbs reserves for optional flags (a device that
  // does not know them ignores them). Documented for verbs programs in include/softrdma/verbs_ext.h.
  kFastReg = 1u << 28,   // an entry (re)registered through the send queue (FIG. 11)
  kOneTouch = 1u << 29,  // invalid once the first RDMA message targeting it is placed (FIG. 18B)
};
inline constexpr uint32_t kRemoteAccess = kRemoteWrite | kRemoteRead | kRemoteAtomic;

// What an access needs (seed 002 FIG. 15 / FIG. 18, last check).
enum class Need : uint8_t {
  kLocalRead,    // gather for SEND / WRITE source (always granted to a valid region)
  kLocalWrite,   // scatter for RECV, READ response, atomic result
  kRemoteRead,
  kRemoteWrite,
  kRemoteAtomic,
};

// The checks of FIG. 15 (local) and FIG. 18 (remote), in the order they are made; the first
// failing one is reported. Each maps to one completion status / NAK (see transport/).
enum class KeyError : uint8_t {
  kOk,
  kInvalidKey,     // no entry at that index, or entry not valid
  kWrongType,      // e.g. a window used for local access
  kWrongPd,        // protection domain of the QP differs
  kWrongInstance,  // key instance (low 8 bits) stale: deregistered / re-registered / invalidated
  kOutOfBounds,    // [addr, addr+len) not inside the entry
  kNoAccess,       // the entry does not grant the access
  kWrongQp,        // a type-2 window used through a QP other than the one it is bound to
  kBusy,           // the entry is being touched by another message (one-touch), or has windows
  kCount,
};
std::string_view name(KeyError e);

}  // namespace softrdma::mem
