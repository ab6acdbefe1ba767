// Parsing a received RoCEv2 packet (the UDP payload) into a validated view.
//
// parse() does every structural check that needs no transport state, before anything touches
// memory: minimum length, transport header version, a valid opcode, headers and pad inside the
// packet, payload no longer than the packet. ICRC is checked separately (wire/icrc.h) because it
// needs the addressing. A PacketView never points outside the buffer it was parsed from.
#pragma once

#include <cstdint>
#include <string_view>

#include "wire/fields.h"
#include "wire/opcode.h"

namespace softrdma::wire {

enum class ParseError : uint8_t {
  kOk,
  kTooShort,       // shorter than BTH + ICRC
  kBadVersion,     // BTH TVer != 0
  kBadOpcode,      // opcode not in the table
  kHeadersTooLong, // the opcode's headers do not fit
  kBadPad,         // pad count larger than the payload, or pad on a packet without payload
  kCount,
};
std::string_view name(ParseError e);

struct PacketView {
  const uint8_t* data = nullptr;  // start of BTH
  uint32_t len = 0;               // whole UDP payload including ICRC
  const OpcodeInfo* info = nullptr;
  uint8_t opcode = 0;
  // Decoded BTH fields used on every packet.
  uint32_t psn = 0;
  uint32_t dqpn = 0;
  uint16_t pkey = 0;
  bool ackreq = false;
  bool se = false;
  bool fecn = false;
  bool becn = false;
  uint8_t padcnt = 0;
  // Payload without pad and ICRC.
  const uint8_t* payload = nullptr;
  uint32_t payload_len = 0;

  // Pointer to a header the opcode carries (offset from the table); nullptr if absent.
  const uint8_t* hdr(Hdr h) const;
  uint64_t get(Hdr h, const Field& f) const { return wire::get(hdr(h), f); }
};

ParseError parse(const uint8_t* data, uint32_t len, PacketView& out);

// Building packets: writes the BTH at dst (12 bytes).
struct BthFields {
  uint8_t opcode = 0;
  bool se = false;
  bool migreq = true;  // RoCE peers send MigReq=1 (no APM); we accept either
  uint8_t padcnt = 0;
  uint16_t pkey = kDefaultPkey;
  bool fecn = false;
  bool becn = false;
  uint32_t dqpn = 0;
  bool ackreq = false;
  uint32_t psn = 0;
};
void write_bth(uint8_t* dst, const BthFields& f);

// Pad count so that payload + pad is a multiple of 4 (IBA 9.2.4).
constexpr uint8_t pad_for(uint32_t payload_len) { return static_cast<uint8_t>((4 - (payload_len & 3)) & 3); }

}  // namespace softrdma::wire
