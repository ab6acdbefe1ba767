#include <array>

#include "queue/work.h"

namespace softrdma {

std::string_view name(WcStatus s) {
  static constexpr std::array<std::string_view, 22> kNames = {
      "success", "local length error", "local QP operation error", "local EE context operation error",
      "local protection error", "work request flushed error", "memory window bind error",
      "bad response error", "local access error", "remote invalid request error", "remote access error",
      "remote operation error", "transport retry counter exceeded", "RNR retry counter exceeded",
      "local RDD violation error", "remote invalid RD request", "aborted error", "invalid EE context number",
      "invalid EE context state", "fatal error", "response timeout error", "general error"};
  auto i = static_cast<size_t>(s);
  return i < kNames.size() ? kNames[i] : "unknown";
}

std::string_view name(WcOpcode o) {
  switch (o) {
    case WcOpcode::kSend: return "SEND";
    case WcOpcode::kRdmaWrite: return "RDMA_WRITE";
    case WcOpcode::kRdmaRead: return "RDMA_READ";
    case WcOpcode::kCompSwap: return "COMP_SWAP";
    case WcOpcode::kFetchAdd: return "FETCH_ADD";
    case WcOpcode::kBindMw: return "BIND_MW";
    case WcOpcode::kLocalInv: return "LOCAL_INV";
    case WcOpcode::kRecv: return "RECV";
    case WcOpcode::kRecvRdmaWithImm: return "RECV_RDMA_WITH_IMM";
    case WcOpcode::kRegMr: return "REG_MR";
  }
  return "unknown";
}

std::string_view name(WrOpcode o) {
  static constexpr std::array<std::string_view, 12> kNames = {
      "RDMA_WRITE", "RDMA_WRITE_WITH_IMM", "SEND", "SEND_WITH_IMM", "RDMA_READ",
      "ATOMIC_CMP_AND_SWP", "ATOMIC_FETCH_AND_ADD", "LOCAL_INV", "BIND_MW", "SEND_WITH_INV",
      "unknown", "REG_MR"};
  auto i = static_cast<size_t>(o);
  return i < kNames.size() ? kNames[i] : "unknown";
}

}  // namespace softrdma
