// The 256-entry opcode table: which headers each BTH opcode carries, and what it means.
//
// The datapath asks the table ("does this packet carry a RETH?", "is it the last packet of a
// message?") instead of switching on opcodes. IBA Vol 1, Table 38 (9.2.1 OpCode field).
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "wire/fields.h"

namespace softrdma::wire {

// Header presence bits. The order of the enumerators is the order of the headers on the wire
// after the BTH (IBA 9.2: BTH, DETH, RETH/AtomicETH, AETH, AtomicAckETH, ImmDt, IETH, payload).
enum Hdr : uint32_t {
  kDeth = 1u << 0,
  kReth = 1u << 1,
  kAtmEth = 1u << 2,
  kAeth = 1u << 3,
  kAtmAck = 1u << 4,
  kImmDt = 1u << 5,
  kIeth = 1u << 6,
  kPayload = 1u << 7,  // carries (possibly empty) payload
};

// What a packet is, independent of its headers.
enum Flag : uint32_t {
  kRequest = 1u << 0,   // travels requester -> responder
  kResponse = 1u << 1,  // travels responder -> requester
  kFirst = 1u << 2,     // first packet of a multi-packet message
  kMiddle = 1u << 3,
  kLast = 1u << 4,
  kOnly = kFirst | kLast,
  kSend = 1u << 5,
  kWrite = 1u << 6,
  kReadReq = 1u << 7,
  kReadResp = 1u << 8,
  kAck = 1u << 9,
  kAtomic = 1u << 10,
  kAtomicAck = 1u << 11,
  kCnp = 1u << 12,
  kWithImm = 1u << 13,
  kWithInv = 1u << 14,
  kCompSwap = 1u << 15,
  kFetchAdd = 1u << 16,
};

enum class Transport : uint8_t { kRc = 0, kUc = 1, kRd = 2, kUd = 3, kCnp = 4, kNone = 7 };

// Opcode numbers (IBA Table 38). Transport prefix in the top three bits.
enum Opcode : uint8_t {
  kRcSendFirst = 0x00,
  kRcSendMiddle = 0x01,
  kRcSendLast = 0x02,
  kRcSendLastImm = 0x03,
  kRcSendOnly = 0x04,
  kRcSendOnlyImm = 0x05,
  kRcWriteFirst = 0x06,
  kRcWriteMiddle = 0x07,
  kRcWriteLast = 0x08,
  kRcWriteLastImm = 0x09,
  kRcWriteOnly = 0x0a,
  kRcWriteOnlyImm = 0x0b,
  kRcReadRequest = 0x0c,
  kRcReadRespFirst = 0x0d,
  kRcReadRespMiddle = 0x0e,
  kRcReadRespLast = 0x0f,
  kRcReadRespOnly = 0x10,
  kRcAck = 0x11,
  kRcAtomicAck = 0x12,
  kRcCompSwap = 0x13,
  kRcFetchAdd = 0x14,
  kRcSendLastInv = 0x16,
  kRcSendOnlyInv = 0x17,
  kUcBase = 0x20,
  kUdSendOnly = 0x64,
  kUdSendOnlyImm = 0x65,
  kCnpOpcode = 0x81,  // named apart from Flag::kCnp: both enums are unscoped in one namespace
};

struct OpcodeInfo {
  std::string_view name;  // empty: opcode not valid
  Transport transport = Transport::kNone;
  uint32_t hdrs = 0;   // Hdr bits
  uint32_t flags = 0;  // Flag bits
  // Byte offset of each header from the start of the BTH; 0 when absent. Payload offset is
  // always valid for valid opcodes (end of headers).
  uint8_t deth = 0, reth = 0, atmeth = 0, aeth = 0, atmack = 0, immdt = 0, ieth = 0;
  uint8_t payload = 0;  // == total header length (BTH included)

  constexpr bool valid() const { return !name.empty(); }
  constexpr bool has(Hdr h) const { return (hdrs & h) != 0; }
  constexpr bool is(Flag f) const { return (flags & f) == f; }
  constexpr bool any(uint32_t f) const { return (flags & f) != 0; }
};

// The table itself; indexed by the BTH opcode byte.
const std::array<OpcodeInfo, 256>& opcode_table();

inline const OpcodeInfo& opcode_info(uint8_t op) { return opcode_table()[op]; }

// Opcode for a message packet, from a transport and the RC-relative opcode (0x00..0x17).
constexpr uint8_t make_opcode(Transport t, uint8_t rc_op) {
  return static_cast<uint8_t>((static_cast<uint8_t>(t) << 5) | rc_op);
}

}  // namespace softrdma::wire
