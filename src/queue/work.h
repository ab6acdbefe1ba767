// Work requests and work completions: the vocabulary between consumers and the adapter.
//
// Enumerator values equal libibverbs' so the verbs layer converts by cast (it static_asserts
// this); everything above the verbs layer uses these types only.
#pragma once

#include <cstdint>
#include <string_view>

namespace softrdma {

class AddressHandle;

enum class WcStatus : uint8_t {
  kSuccess = 0,
  kLocLenErr = 1,
  kLocQpOpErr = 2,
  kLocEecOpErr = 3,
  kLocProtErr = 4,
  kWrFlushErr = 5,
  kMwBindErr = 6,
  kBadRespErr = 7,
  kLocAccessErr = 8,
  kRemInvReqErr = 9,
  kRemAccessErr = 10,
  kRemOpErr = 11,
  kRetryExcErr = 12,
  kRnrRetryExcErr = 13,
  kLocRddViolErr = 14,
  kRemInvRdReqErr = 15,
  kRemAbortErr = 16,
  kInvEecnErr = 17,
  kInvEecStateErr = 18,
  kFatalErr = 19,
  kRespTimeoutErr = 20,
  kGeneralErr = 21,
};
std::string_view name(WcStatus s);

enum class WcOpcode : uint8_t {
  kSend = 0,
  kRdmaWrite = 1,
  kRdmaRead = 2,
  kCompSwap = 3,
  kFetchAdd = 4,
  kBindMw = 5,
  kLocalInv = 6,
  kRecv = 128,
  kRecvRdmaWithImm = 129,
  kRegMr = 135,  // IBV_WC_DRIVER1: a registration through the send queue (softrdma extension)
};
std::string_view name(WcOpcode o);

enum WcFlags : uint32_t {
  kWcGrh = 1u << 0,
  kWcWithImm = 1u << 1,
  kWcWithInv = 1u << 3,
};

enum class WrOpcode : uint8_t {
  kRdmaWrite = 0,
  kRdmaWriteImm = 1,
  kSend = 2,
  kSendImm = 3,
  kRdmaRead = 4,
  kCompSwap = 5,
  kFetchAdd = 6,
  kLocalInv = 7,
  kBindMw = 8,
  kSendInv = 9,
  kRegMr = 11,  // IBV_WR_DRIVER1: registration through the send queue (seed 002 FIG. 11)
};
std::string_view name(WrOpcode o);

enum SendFlags : uint32_t {
  kFence = 1u << 0,
  kSignaled = 1u << 1,
  kSolicited = 1u << 2,
  kInline = 1u << 3,
};

struct Sge {
  uint64_t addr = 0;
  uint32_t length = 0;
  uint32_t lkey = 0;
};

struct SendWr {
  uint64_t wr_id = 0;
  WrOpcode opcode = WrOpcode::kSend;
  uint32_t flags = 0;
  const Sge* sg_list = nullptr;
  uint32_t num_sge = 0;
  uint32_t imm_data = 0;  // host byte order; also the rkey to invalidate for kSendInv/kLocalInv
  struct {
    uint64_t remote_addr = 0;
    uint32_t rkey = 0;
  } rdma;
  struct {
    uint64_t remote_addr = 0;
    uint64_t compare_add = 0;
    uint64_t swap = 0;
    uint32_t rkey = 0;
  } atomic;
  struct {
    const AddressHandle* ah = nullptr;
    uint32_t remote_qpn = 0;
    uint32_t remote_qkey = 0;
  } ud;
  // kBindMw: bind window `mw` (its current key) to [addr, addr+length) of region `mr` (its
  // lkey), under new_key: same index, new low byte (ibv_inc_rkey). access: remote rights,
  // mem::kZeroBased, mem::kOneTouch. Length 0 unbinds a type-1 window.
  struct {
    uint32_t mw = 0;
    uint32_t new_key = 0;
    uint32_t mr = 0;
    uint64_t addr = 0;
    uint64_t length = 0;
    uint32_t access = 0;
  } bind;
  // kRegMr: the fast-registration region `mr` (its current key) becomes valid under new_key over
  // the process memory in sg_list (runs of whole pages between entries; lkeys unused), at iova.
  struct {
    uint32_t mr = 0;
    uint32_t new_key = 0;
    uint64_t iova = 0;
    uint32_t access = 0;
  } reg;
};

struct RecvWr {
  uint64_t wr_id = 0;
  const Sge* sg_list = nullptr;
  uint32_t num_sge = 0;
};

struct Wc {
  uint64_t wr_id = 0;
  WcStatus status = WcStatus::kSuccess;
  WcOpcode opcode = WcOpcode::kSend;
  uint32_t vendor_err = 0;
  uint32_t byte_len = 0;
  uint32_t imm_data = 0;  // host byte order; the invalidated rkey when kWcWithInv
  uint32_t qp_num = 0;
  uint32_t src_qp = 0;
  uint32_t wc_flags = 0;
  uint16_t pkey_index = 0;
  uint16_t slid = 0;
  uint8_t sl = 0;
  uint8_t dlid_path_bits = 0;
};

}  // namespace softrdma
