#include "wire/packet.h"

#include <cstring>

namespace softrdma::wire {
namespace {

constexpr std::string_view kParseErrorNames[] = {
    "ok", "too_short", "bad_version", "bad_opcode", "headers_too_long", "bad_pad",
};
static_assert(std::size(kParseErrorNames) == static_cast<size_t>(ParseError::kCount));

}  // namespace

std::string_view name(ParseError e) {
  const auto i = static_cast<size_t>(e);
  return i < std::size(kParseErrorNames) ? kParseErrorNames[i] : "?";
}

const uint8_t* PacketView::hdr(Hdr h) const {
  if (!info || !info->has(h)) return nullptr;
  uint8_t off = 0;
  switch (h) {
    case kDeth: off = info->deth; break;
    case kReth: off = info->reth; break;
    case kAtmEth: off = info->atmeth; break;
    case kAeth: off = info->aeth; break;
    case kAtmAck: off = info->atmack; break;
    case kImmDt: off = info->immdt; break;
    case kIeth: off = info->ieth; break;
    case kPayload: off = info->payload; break;
    default: return nullptr;  // not a single header bit
  }
  return data + off;
}

// Structural checks in a fixed order, each before anything is read that depends on it
// (IBA 9.6, transport header validation; the ICRC is checked by the caller, icrc_verify).
ParseError parse(const uint8_t* data, uint32_t len, PacketView& out) {
  out = PacketView{};
  if (!data || len < bth::kSize + kIcrcSize) return ParseError::kTooShort;
  // TVer must be 0: a receiver drops packets of an unknown transport version (IBA 9.6).
  if (get(data, bth::tver) != 0) return ParseError::kBadVersion;
  const auto op = static_cast<uint8_t>(get(data, bth::opcode));
  const OpcodeInfo& info = opcode_info(op);
  if (!info.valid()) return ParseError::kBadOpcode;
  if (uint32_t{info.payload} + kIcrcSize > len) return ParseError::kHeadersTooLong;

  // IBA 9.2.4: PadCnt bytes of pad precede the ICRC; only packets with payload carry pad.
  const auto padcnt = static_cast<uint8_t>(get(data, bth::padcnt));
  if (padcnt != 0 && !info.has(kPayload)) return ParseError::kBadPad;
  const uint32_t after_hdrs = len - info.payload - static_cast<uint32_t>(kIcrcSize);
  if (padcnt > after_hdrs) return ParseError::kBadPad;

  out.data = data;
  out.len = len;
  out.info = &info;
  out.opcode = op;
  out.psn = static_cast<uint32_t>(get(data, bth::psn));
  out.dqpn = static_cast<uint32_t>(get(data, bth::dqpn));
  out.pkey = static_cast<uint16_t>(get(data, bth::pkey));
  out.ackreq = get(data, bth::ackreq) != 0;
  out.se = get(data, bth::se) != 0;
  out.fecn = get(data, bth::fecn) != 0;
  out.becn = get(data, bth::becn) != 0;
  out.padcnt = padcnt;
  // For opcodes without payload this is whatever trails the headers (normally nothing); the
  // transport decides whether a nonzero length is an error for the opcode (IBA 9.6).
  out.payload = data + info.payload;
  out.payload_len = after_hdrs - padcnt;
  return ParseError::kOk;
}

void write_bth(uint8_t* dst, const BthFields& f) {
  std::memset(dst, 0, bth::kSize);  // TVer 0 and the reserved fields are zero (IBA 9.2)
  set(dst, bth::opcode, f.opcode);
  set(dst, bth::se, f.se);
  set(dst, bth::migreq, f.migreq);
  set(dst, bth::padcnt, f.padcnt);
  set(dst, bth::pkey, f.pkey);
  set(dst, bth::fecn, f.fecn);
  set(dst, bth::becn, f.becn);
  set(dst, bth::dqpn, f.dqpn);
  set(dst, bth::ackreq, f.ackreq);
  set(dst, bth::psn, f.psn);
}

}  // namespace softrdma::wire
