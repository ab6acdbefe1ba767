// Memory operations posted on the send queue (seed 002 FIG. 11, IBA 10.6.3.5 / 10.6.7.2):
// window binding, fast registration and local invalidation. The requester runs them when it
// reaches them in queue order, so a key registered by one WQE is good for the WQEs after it.
// Nothing goes on the wire.
#include "transport/engine.h"

namespace softrdma::transport {

bool is_local_op(WrOpcode o) {
  return o == WrOpcode::kBindMw || o == WrOpcode::kLocalInv || o == WrOpcode::kRegMr;
}

WcStatus execute_local_op(Engine& e, Qp& qp, uint64_t index, SendWqe& w) {
  mem::MrTable& mrs = e.mrs();
  switch (w.opcode) {
    case WrOpcode::kBindMw: {
      mem::MrTable::Bind b;
      b.window = w.mem.key;
      b.new_key = w.mem.new_key;
      b.region = w.mem.region;
      b.pd = qp.pd;
      b.qpn = qp.qpn;
      b.addr = w.mem.addr;
      b.length = w.mem.length;
      b.access = w.mem.access;
      if (mrs.bind(b) != mem::KeyError::kOk) return WcStatus::kMwBindErr;
      qp.stats->mw_binds++;
      return WcStatus::kSuccess;
    }
    case WrOpcode::kLocalInv: {
      const mem::Entry* entry = mrs.find(w.imm);
      bool window = entry != nullptr && entry->type == mem::EntryType::kWindow;
      if (mrs.invalidate(w.imm, qp.pd, qp.qpn, false) != mem::KeyError::kOk)
        return window ? WcStatus::kMwBindErr : WcStatus::kLocProtErr;
      qp.stats->invalidations++;
      return WcStatus::kSuccess;
    }
    case WrOpcode::kRegMr: {
      // The runs of process memory were copied into the WQE's SGE slots when it was posted.
      constexpr uint32_t kMaxRuns = 32;  // the device's max_sge
      iovec runs[kMaxRuns];
      const Sge* sg = qp.sq.sges(index);
      if (w.num_sge > kMaxRuns) return WcStatus::kLocLenErr;
      for (uint32_t i = 0; i < w.num_sge; ++i)
        runs[i] = {reinterpret_cast<void*>(static_cast<uintptr_t>(sg[i].addr)), sg[i].length};
      if (mrs.fast_register(w.mem.key, w.mem.new_key, qp.pd, runs, w.num_sge, w.mem.addr, w.length,
                            w.mem.access) != mem::KeyError::kOk)
        return WcStatus::kLocProtErr;
      qp.stats->fast_registrations++;
      return WcStatus::kSuccess;
    }
    default: return WcStatus::kLocQpOpErr;
  }
}

}  // namespace softrdma::transport
