#include "wire/opcode.h"

namespace softrdma::wire {
namespace {

struct Row {
  uint8_t rc_op;
  std::string_view name;
  uint32_t hdrs;
  uint32_t flags;
};

// The RC opcodes; UC and UD reuse subsets of them with their own prefix.
constexpr Row kRcRows[] = {
    {kRcSendFirst, "SEND_FIRST", kPayload, kRequest | kSend | kFirst},
    {kRcSendMiddle, "SEND_MIDDLE", kPayload, kRequest | kSend | kMiddle},
    {kRcSendLast, "SEND_LAST", kPayload, kRequest | kSend | kLast},
    {kRcSendLastImm, "SEND_LAST_WITH_IMMEDIATE", kImmDt | kPayload, kRequest | kSend | kLast | kWithImm},
    {kRcSendOnly, "SEND_ONLY", kPayload, kRequest | kSend | kOnly},
    {kRcSendOnlyImm, "SEND_ONLY_WITH_IMMEDIATE", kImmDt | kPayload, kRequest | kSend | kOnly | kWithImm},
    {kRcWriteFirst, "RDMA_WRITE_FIRST", kReth | kPayload, kRequest | kWrite | kFirst},
    {kRcWriteMiddle, "RDMA_WRITE_MIDDLE", kPayload, kRequest | kWrite | kMiddle},
    {kRcWriteLast, "RDMA_WRITE_LAST", kPayload, kRequest | kWrite | kLast},
    {kRcWriteLastImm, "RDMA_WRITE_LAST_WITH_IMMEDIATE", kImmDt | kPayload,
     kRequest | kWrite | kLast | kWithImm},
    {kRcWriteOnly, "RDMA_WRITE_ONLY", kReth | kPayload, kRequest | kWrite | kOnly},
    {kRcWriteOnlyImm, "RDMA_WRITE_ONLY_WITH_IMMEDIATE", kReth | kImmDt | kPayload,
     kRequest | kWrite | kOnly | kWithImm},
    {kRcReadRequest, "RDMA_READ_REQUEST", kReth, kRequest | kReadReq | kOnly},
    {kRcReadRespFirst, "RDMA_READ_RESPONSE_FIRST", kAeth | kPayload, kResponse | kReadResp | kFirst},
    {kRcReadRespMiddle, "RDMA_READ_RESPONSE_MIDDLE", kPayload, kResponse | kReadResp | kMiddle},
    {kRcReadRespLast, "RDMA_READ_RESPONSE_LAST", kAeth | kPayload, kResponse | kReadResp | kLast},
    {kRcReadRespOnly, "RDMA_READ_RESPONSE_ONLY", kAeth | kPayload, kResponse | kReadResp | kOnly},
    {kRcAck, "ACKNOWLEDGE", kAeth, kResponse | kAck | kOnly},
    {kRcAtomicAck, "ATOMIC_ACKNOWLEDGE", kAeth | kAtmAck, kResponse | kAtomicAck | kOnly},
    {kRcCompSwap, "COMPARE_SWAP", kAtmEth, kRequest | kAtomic | kCompSwap | kOnly},
    {kRcFetchAdd, "FETCH_ADD", kAtmEth, kRequest | kAtomic | kFetchAdd | kOnly},
    {kRcSendLastInv, "SEND_LAST_WITH_INVALIDATE", kIeth | kPayload, kRequest | kSend | kLast | kWithInv},
    {kRcSendOnlyInv, "SEND_ONLY_WITH_INVALIDATE", kIeth | kPayload, kRequest | kSend | kOnly | kWithInv},
};

constexpr std::string_view kRcNames[] = {
    "RC_SEND_FIRST", "RC_SEND_MIDDLE", "RC_SEND_LAST", "RC_SEND_LAST_WITH_IMMEDIATE", "RC_SEND_ONLY",
    "RC_SEND_ONLY_WITH_IMMEDIATE", "RC_RDMA_WRITE_FIRST", "RC_RDMA_WRITE_MIDDLE", "RC_RDMA_WRITE_LAST",
    "RC_RDMA_WRITE_LAST_WITH_IMMEDIATE", "RC_RDMA_WRITE_ONLY", "RC_RDMA_WRITE_ONLY_WITH_IMMEDIATE",
    "RC_RDMA_READ_REQUEST", "RC_RDMA_READ_RESPONSE_FIRST", "RC_RDMA_READ_RESPONSE_MIDDLE",
    "RC_RDMA_READ_RESPONSE_LAST", "RC_RDMA_READ_RESPONSE_ONLY", "RC_ACKNOWLEDGE", "RC_ATOMIC_ACKNOWLEDGE",
    "RC_COMPARE_SWAP", "RC_FETCH_ADD", "", "RC_SEND_LAST_WITH_INVALIDATE", "RC_SEND_ONLY_WITH_INVALIDATE"};
constexpr std::string_view kUcNames[] = {
    "UC_SEND_FIRST", "UC_SEND_MIDDLE", "UC_SEND_LAST", "UC_SEND_LAST_WITH_IMMEDIATE", "UC_SEND_ONLY",
    "UC_SEND_ONLY_WITH_IMMEDIATE", "UC_RDMA_WRITE_FIRST", "UC_RDMA_WRITE_MIDDLE", "UC_RDMA_WRITE_LAST",
    "UC_RDMA_WRITE_LAST_WITH_IMMEDIATE", "UC_RDMA_WRITE_ONLY", "UC_RDMA_WRITE_ONLY_WITH_IMMEDIATE"};

// Lays out the headers of one opcode in wire order and records each offset.
constexpr OpcodeInfo layout(std::string_view name, Transport t, uint32_t hdrs, uint32_t flags) {
  OpcodeInfo info{name, t, hdrs, flags};
  uint8_t off = bth::kSize;
  auto place = [&](Hdr h, uint8_t& slot, size_t size) {
    if (hdrs & h) {
      slot = off;
      off = static_cast<uint8_t>(off + size);
    }
  };
  place(kDeth, info.deth, deth::kSize);
  place(kReth, info.reth, reth::kSize);
  place(kAtmEth, info.atmeth, atmeth::kSize);
  place(kAeth, info.aeth, aeth::kSize);
  place(kAtmAck, info.atmack, atmack::kSize);
  place(kImmDt, info.immdt, immdt::kSize);
  place(kIeth, info.ieth, ieth::kSize);
  info.payload = off;
  return info;
}

constexpr std::array<OpcodeInfo, 256> build() {
  std::array<OpcodeInfo, 256> table{};
  for (const Row& r : kRcRows) {
    table[make_opcode(Transport::kRc, r.rc_op)] = layout(kRcNames[r.rc_op], Transport::kRc, r.hdrs, r.flags);
    // UC carries SEND and RDMA WRITE only (IBA 9.2.1, Table 38), no acknowledgements.
    if (r.rc_op <= kRcWriteOnlyImm)
      table[make_opcode(Transport::kUc, r.rc_op)] = layout(kUcNames[r.rc_op], Transport::kUc, r.hdrs, r.flags);
  }
  table[kUdSendOnly] = layout("UD_SEND_ONLY", Transport::kUd, kDeth | kPayload, kRequest | kSend | kOnly);
  table[kUdSendOnlyImm] = layout("UD_SEND_ONLY_WITH_IMMEDIATE", Transport::kUd, kDeth | kImmDt | kPayload,
                                 kRequest | kSend | kOnly | kWithImm);
  // RoCEv2 congestion notification packet: BTH plus 16 reserved bytes (Annex A17.9.2).
  table[kCnpOpcode] = layout("CNP", Transport::kCnp, kPayload, kCnp | kOnly);
  return table;
}

constexpr std::array<OpcodeInfo, 256> kTable = build();

static_assert(kTable[kRcWriteOnlyImm].reth == 12 && kTable[kRcWriteOnlyImm].immdt == 28);
static_assert(kTable[kRcWriteOnlyImm].payload == 32);
static_assert(kTable[kRcAtomicAck].aeth == 12 && kTable[kRcAtomicAck].atmack == 16);
static_assert(kTable[kUdSendOnlyImm].deth == 12 && kTable[kUdSendOnlyImm].immdt == 20);
static_assert(!kTable[0x15].valid() && !kTable[0x2c].valid());

}  // namespace

const std::array<OpcodeInfo, 256>& opcode_table() { return kTable; }

}  // namespace softrdma::wire
