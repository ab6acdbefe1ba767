#include "tools/demo_ops.h"

#include <cstring>

#include <fmt/format.h>

namespace softrdma::tools {

namespace {

constexpr uint32_t kGuard = 64;  // bytes after each message that must stay untouched
constexpr uint8_t kGuardByte = 0x5a;
constexpr uint32_t kGrh = 40;  // UD receive buffers start with the GRH area

size_t slot_bytes(uint32_t max_bytes) { return (size_t{max_bytes} + kGrh + kGuard + 63) / 64 * 64; }

uint64_t load_stamp(const uint8_t* p, uint32_t bytes) {
  uint64_t v = 0;
  std::memcpy(&v, p, std::min<uint32_t>(bytes, 8));
  return v;
}

uint64_t truncate(uint64_t v, uint32_t bytes) { return bytes >= 8 ? v : v & ((1ull << (8 * bytes)) - 1); }

}  // namespace

std::string_view op_name(Op op) {
  switch (op) {
    case Op::kSend: return "SEND";
    case Op::kWrite: return "WRITE";
    case Op::kWriteImm: return "WRITE_IMM";
    case Op::kRead: return "READ";
    case Op::kFetchAdd: return "FETCH_ADD";
    case Op::kCompSwap: return "CMP_SWAP";
    case Op::kUdSend: return "UD SEND";
  }
  return "?";
}

bool is_atomic(Op op) { return op == Op::kFetchAdd || op == Op::kCompSwap; }
bool is_pingpong(Op op) { return op == Op::kSend || op == Op::kWriteImm || op == Op::kUdSend; }

size_t demo_buffer_size(uint32_t max_bytes, uint32_t window) {
  return 2 * window * slot_bytes(max_bytes) + 8 + 8 * size_t{window};
}

OpRunner::OpRunner(Side& a, Side& b, uint32_t max_bytes, uint32_t window, uint32_t signal_every)
    : a_(a), b_(b), w_(window), signal_every_(signal_every), max_bytes_(max_bytes), slot_(slot_bytes(max_bytes)) {
  base_ = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) * 0x9e3779b97f4a7c15ull;
  if (a.size() < demo_buffer_size(max_bytes, window) || b.size() < demo_buffer_size(max_bytes, window))
    throw ToolError("demo buffers are too small for the largest message");
}

void OpRunner::stamp(uint8_t* p, uint32_t bytes, uint64_t k) {
  uint64_t v = base_ + k;
  std::memcpy(p, &v, std::min<uint32_t>(bytes, 8));
}

SendWr OpRunner::make_wr(Op op, Side& from, Side& to, uint64_t k, uint32_t bytes, Sge* sg) {
  SendWr wr;
  wr.wr_id = k;
  wr.imm_data = static_cast<uint32_t>(k);
  wr.sg_list = sg;
  wr.num_sge = 1;
  *sg = from.sge(out_off(k), bytes);
  switch (op) {
    case Op::kSend: wr.opcode = WrOpcode::kSend; break;
    case Op::kUdSend:
      wr.opcode = WrOpcode::kSend;
      wr.ud = {from.ah, to.qp->qpn(), kToolQkey};
      break;
    case Op::kWrite:
    case Op::kWriteImm:
      wr.opcode = op == Op::kWrite ? WrOpcode::kRdmaWrite : WrOpcode::kRdmaWriteImm;
      wr.rdma = {to.addr(in_off(k)), to.mr->rkey};
      break;
    case Op::kRead:
      wr.opcode = WrOpcode::kRdmaRead;
      *sg = from.sge(in_off(k), bytes);
      wr.rdma = {to.addr(out_off(k)), to.mr->rkey};
      break;
    case Op::kFetchAdd:
    case Op::kCompSwap:
      wr.opcode = op == Op::kFetchAdd ? WrOpcode::kFetchAdd : WrOpcode::kCompSwap;
      *sg = from.sge(result_off(k), 8);
      wr.atomic.remote_addr = to.addr(atom_off());
      wr.atomic.rkey = to.mr->rkey;
      wr.atomic.compare_add = op == Op::kFetchAdd ? 1 : base_ + k;
      wr.atomic.swap = base_ + k + 1;
      break;
  }
  return wr;
}

void OpRunner::check_recv(const Wc& wc, Op op, uint32_t bytes, uint64_t k, const char* where) {
  bool imm = op == Op::kWriteImm;
  uint32_t want_len = op == Op::kUdSend ? bytes + kGrh : bytes;
  bool ok = wc.opcode == (imm ? WcOpcode::kRecvRdmaWithImm : WcOpcode::kRecv) && wc.byte_len == want_len &&
            (!imm || ((wc.wc_flags & kWcWithImm) && wc.imm_data == static_cast<uint32_t>(k)));
  if (!ok)
    throw ToolError(fmt::format("{} {}: receive completion is {} with {} bytes, imm {}; expected {} bytes{}",
                                op_name(op), where, name(wc.opcode), wc.byte_len, wc.imm_data, want_len,
                                imm ? fmt::format(", imm {}", static_cast<uint32_t>(k)) : ""));
}

void OpRunner::reap_sends() {
  Wc wc[32];
  signaled_[0] -= a_.poll(a_.scq, wc, 32);
  signaled_[1] -= b_.poll(b_.scq, wc, 32);
}

void OpRunner::verify(Op op, uint32_t bytes, int rounds) {
  if (op == Op::kUdSend) return;  // every UD message of the latency run is checked
  for (int r = 0; r < rounds; ++r, base_ += 0x1000) {
    Sge sg;
    SendWr wr = make_wr(op, a_, b_, 0, bytes, &sg);
    wr.flags = kSignaled;
    std::string what = fmt::format("{} of {} bytes, check round {}", op_name(op), bytes, r);
    if (is_atomic(op)) {
      uint64_t before = base_ ^ 0x5555, add = 3 + r;
      atom(b_) = before;
      wr.atomic.compare_add = op == Op::kFetchAdd ? add : before;
      wr.atomic.swap = ~before;
      a_.post_send(wr);
      a_.wait(a_.scq);
      uint64_t after = op == Op::kFetchAdd ? before + add : ~before;
      if (result(a_, 0) != before || atom(b_) != after)
        throw ToolError(fmt::format("{}: returned {:#x}, target {:#x}; expected {:#x} and {:#x}", what,
                                    result(a_, 0), atom(b_), before, after));
      if (op == Op::kCompSwap) {  // a compare that does not match leaves the target alone
        wr.atomic.swap = 12345;
        a_.post_send(wr);
        a_.wait(a_.scq);
        if (result(a_, 0) != after || atom(b_) != after)
          throw ToolError(fmt::format("{}: failed compare returned {:#x} and left {:#x}; expected {:#x}", what,
                                      result(a_, 0), atom(b_), after));
      }
      ops_checked += 1 + (op == Op::kCompSwap);
      continue;
    }
    uint8_t* src = op == Op::kRead ? out(b_, 0) : out(a_, 0);
    uint8_t* dst = op == Op::kRead ? in(a_, 0) : in(b_, 0);
    fill_pattern(src, bytes, base_);
    std::memset(dst, 0, bytes);
    std::memset(dst + bytes, kGuardByte, kGuard);
    if (op == Op::kSend || op == Op::kWriteImm) b_.post_recv(7, in_off(0), op == Op::kSend ? bytes + kGuard : 0);
    a_.post_send(wr);
    a_.wait(a_.scq);
    if (op == Op::kSend || op == Op::kWriteImm) check_recv(b_.wait(b_.rcq), op, bytes, 0, what.c_str());
    check_bytes(dst, src, bytes, what);
    for (uint32_t i = 0; i < kGuard; ++i)
      if (dst[bytes + i] != kGuardByte) throw ToolError(fmt::format("{}: wrote past the end (byte {})", what, i));
    ops_checked++;
    bytes_checked += bytes;
  }
}

std::vector<double> OpRunner::latency(Op op, uint32_t bytes, uint64_t iters) {
  if (op == Op::kUdSend) return ud_pingpong(bytes, iters);
  if (is_pingpong(op)) return pingpong(op, bytes, iters);
  base_ += 0x100000;
  std::vector<double> ns;
  ns.reserve(iters);
  std::string what = fmt::format("{} latency run, {} bytes", op_name(op), bytes);
  uint8_t* src = op == Op::kRead ? out(b_, 0) : out(a_, 0);
  uint8_t* dst = op == Op::kRead ? in(a_, 0) : in(b_, 0);
  if (!is_atomic(op)) fill_pattern(src, bytes, base_);
  atom(b_) = base_;
  for (uint64_t k = 0; k < iters; ++k) {
    Sge sg;
    SendWr wr = make_wr(op, a_, b_, 0, bytes, &sg);
    wr.flags = kSignaled;
    if (is_atomic(op)) wr.atomic.compare_add = op == Op::kFetchAdd ? 1 : base_ + k;
    if (op == Op::kCompSwap) wr.atomic.swap = base_ + k + 1;
    if (!is_atomic(op)) stamp(src, bytes, k);
    auto t0 = std::chrono::steady_clock::now();
    a_.post_send(wr);
    a_.wait(a_.scq);
    ns.push_back(elapsed_ns(t0));
    if (is_atomic(op)) {
      if (result(a_, 0) != base_ + k)
        throw ToolError(fmt::format("{}: iteration {} returned {:#x}, expected {:#x}", what, k, result(a_, 0), base_ + k));
    } else {
      check_bytes(dst, src, bytes, fmt::format("{}, iteration {}", what, k));
      bytes_checked += bytes;
    }
    ops_checked++;
  }
  if (is_atomic(op) && atom(b_) != base_ + iters)
    throw ToolError(fmt::format("{}: target ends at {:#x}, expected {:#x}", what, atom(b_), base_ + iters));
  return ns;
}

// Ping-pong: a sends to b; b sends what arrived back to a; a compares it with what it sent.
std::vector<double> OpRunner::pingpong(Op op, uint32_t bytes, uint64_t iters) {
  base_ += 0x100000;
  std::vector<double> ns;
  ns.reserve(iters);
  std::string what = fmt::format("{} ping-pong, {} bytes", op_name(op), bytes);
  uint32_t rlen = op == Op::kSend ? bytes : 0;
  fill_pattern(out(a_, 0), bytes, base_);
  b_.post_recv(0, in_off(0), rlen);
  a_.post_recv(0, in_off(0), rlen);
  for (uint64_t k = 0; k < iters; ++k) {
    bool sig = k % signal_every_ == signal_every_ - 1 || k + 1 == iters;
    stamp(out(a_, 0), bytes, k);
    Sge sg, sg2;
    SendWr ping = make_wr(op, a_, b_, 0, bytes, &sg);
    SendWr pong = make_wr(op, b_, a_, 0, bytes, &sg2);
    sg2 = b_.sge(in_off(0), bytes);  // echo what arrived
    ping.imm_data = pong.imm_data = static_cast<uint32_t>(k);
    ping.flags = pong.flags = sig ? uint32_t{kSignaled} : 0u;
    auto t0 = std::chrono::steady_clock::now();
    a_.post_send(ping);
    Wc rb = b_.wait(b_.rcq);
    b_.post_send(pong);
    Wc ra = a_.wait(a_.rcq);
    ns.push_back(elapsed_ns(t0) / 2);
    signaled_[0] += sig;
    signaled_[1] += sig;
    check_recv(rb, op, bytes, k, "ping");
    check_recv(ra, op, bytes, k, "pong");
    check_bytes(in(a_, 0), out(a_, 0), bytes, fmt::format("{}, iteration {} (round trip)", what, k));
    ops_checked += 2;
    bytes_checked += bytes;
    if (k + 1 < iters) {
      b_.post_recv(0, in_off(0), rlen);
      a_.post_recv(0, in_off(0), rlen);
    }
    reap_sends();
  }
  auto deadline = std::chrono::steady_clock::now() + a_.opt.wait_limit;
  while (signaled_[0] + signaled_[1] > 0 && std::chrono::steady_clock::now() < deadline) reap_sends();
  if (signaled_[0] + signaled_[1] > 0) throw ToolError(what + ": send completions missing");
  return ns;
}

// UD ping-pong. Datagrams may be lost (fault injection): a ping without a pong within
// loss_wait is counted in ud_lost and the next iteration starts; late pongs are recognized
// by their stamp. Receive slot r is reposted once the pong sent from it has completed.
std::vector<double> OpRunner::ud_pingpong(uint32_t bytes, uint64_t iters) {
  base_ += 0x100000;
  std::vector<double> ns;
  std::string what = fmt::format("UD ping-pong, {} bytes", bytes);
  constexpr uint32_t kRecvs = 16;
  const uint32_t rlen = kGrh + max_bytes_;  // receives stay posted from one call to the next
  fill_pattern(out(a_, 0), bytes, base_);
  for (uint32_t r = 0; r < kRecvs && !ud_posted_; ++r) {
    a_.post_recv(r, in_off(r), rlen);
    b_.post_recv(r, in_off(r), rlen);
  }
  ud_posted_ = true;
  auto payload_ok = [&](const Wc& wc, Side& s, const Side& peer, const char* dir) {
    check_recv(wc, Op::kUdSend, bytes, 0, dir);
    const uint8_t* p = in(s, wc.wr_id) + kGrh;
    if (wc.src_qp != peer.qp->qpn() || !(wc.wc_flags & kWcGrh))
      throw ToolError(fmt::format("{}: {} from QP {} without GRH flag", what, dir, wc.src_qp));
    if (bytes > 8) check_bytes(p + 8, out(a_, 0) + 8, bytes - 8, what + " " + dir);
    bytes_checked += bytes;
    ops_checked++;
    return load_stamp(p, bytes);
  };
  Wc wc[16];
  for (uint64_t k = 0; k < iters; ++k) {
    stamp(out(a_, 0), bytes, k);
    Sge sg;
    SendWr ping = make_wr(Op::kUdSend, a_, b_, 0, bytes, &sg);
    ping.flags = kSignaled;
    auto t0 = std::chrono::steady_clock::now();
    auto deadline = t0 + loss_wait;
    a_.post_send(ping);
    bool done = false;
    while (!done) {
      for (int i = 0, n = b_.poll(b_.rcq, wc, 16); i < n; ++i) {
        payload_ok(wc[i], b_, a_, "ping");
        Sge s2;
        SendWr pong = make_wr(Op::kUdSend, b_, a_, 0, bytes, &s2);
        s2 = b_.sge(in_off(wc[i].wr_id) + kGrh, bytes);
        pong.wr_id = wc[i].wr_id;
        pong.flags = kSignaled;
        b_.post_send(pong);
      }
      for (int i = 0, n = a_.poll(a_.rcq, wc, 16); i < n; ++i) {
        uint64_t got = payload_ok(wc[i], a_, b_, "pong");
        if (got == truncate(base_ + k, bytes)) {
          ns.push_back(elapsed_ns(t0) / 2);
          done = true;
        }
        a_.post_recv(wc[i].wr_id, in_off(wc[i].wr_id), rlen);
      }
      for (int i = 0, n = b_.poll(b_.scq, wc, 16); i < n; ++i) b_.post_recv(wc[i].wr_id, in_off(wc[i].wr_id), rlen);
      a_.poll(a_.scq, wc, 16);
      if (!done && std::chrono::steady_clock::now() > deadline) {
        ud_lost++;
        break;
      }
    }
  }
  return ns;
}

double OpRunner::bandwidth(Op op, uint32_t bytes, uint64_t iters) {
  base_ += 0x100000;
  std::string what = fmt::format("{} bandwidth run, {} bytes", op_name(op), bytes);
  bool two_sided = op == Op::kSend || op == Op::kWriteImm;
  uint32_t rlen = op == Op::kSend ? bytes : 0;
  uint64_t used = std::min<uint64_t>(w_, iters);
  for (uint64_t j = 0; j < used && !is_atomic(op); ++j) {
    fill_pattern(op == Op::kRead ? out(b_, j) : out(a_, j), bytes, base_ + j);
    std::memset(op == Op::kRead ? in(a_, j) : in(b_, j), 0, bytes);
  }
  atom(b_) = base_;
  for (uint64_t r = 0; r < used && two_sided; ++r) b_.post_recv(r, in_off(r), rlen);
  uint64_t posted = 0, done = 0, received = 0;
  Wc wc[32];
  auto t0 = std::chrono::steady_clock::now();
  auto last_progress = t0;
  while (done < iters || (two_sided && received < iters)) {
    for (; posted < iters && posted - done < w_ && (!two_sided || posted < received + w_); ++posted) {
      if (!is_atomic(op) && op != Op::kRead) stamp(out(a_, posted), bytes, posted);
      Sge sg;
      SendWr wr = make_wr(op, a_, b_, posted, bytes, &sg);
      if ((posted + 1) % signal_every_ == 0 || posted + 1 == iters) wr.flags = kSignaled;
      a_.post_send(wr);
    }
    int n = a_.poll(a_.scq, wc, 32);
    for (int i = 0; i < n; ++i) done = wc[i].wr_id + 1;
    int m = two_sided ? b_.poll(b_.rcq, wc, 32) : 0;
    for (int i = 0; i < m; ++i, ++received) {
      if (wc[i].wr_id != received)
        throw ToolError(fmt::format("{}: message {} arrived as number {}", what, wc[i].wr_id, received));
      check_recv(wc[i], op, bytes, received, what.c_str());
      if (load_stamp(in(b_, received), bytes) != truncate(base_ + received, bytes))
        throw ToolError(fmt::format("{}: message {} carries the wrong stamp", what, received));
      if (received + w_ < iters) b_.post_recv(received + w_, in_off(received + w_), rlen);
    }
    auto now = std::chrono::steady_clock::now();
    if (n + m > 0) last_progress = now;
    if (now - last_progress > a_.opt.wait_limit)
      throw ToolError(fmt::format("{}: stuck after {} of {} completions", what, done, iters));
  }
  double secs = elapsed_ns(t0) / 1e9;
  ops_checked += two_sided ? iters : used;
  for (uint64_t j = 0; j < used; ++j) {
    uint64_t k = (iters - 1) / w_ * w_ + j;  // the last iteration that used slot j
    if (k >= iters) k -= w_;
    std::string at = fmt::format("{}, slot {} (iteration {})", what, j, k);
    if (is_atomic(op)) {
      if (result(a_, k) != base_ + k)
        throw ToolError(fmt::format("{}: returned {:#x}, expected {:#x}", at, result(a_, k), base_ + k));
      continue;
    }
    if (op == Op::kRead)
      check_bytes(in(a_, j), out(b_, j), bytes, at);
    else
      check_bytes(in(b_, j), out(a_, j), bytes, at);
    bytes_checked += bytes;
  }
  if (is_atomic(op) && atom(b_) != base_ + iters)
    throw ToolError(fmt::format("{}: target ends at {:#x}, expected {:#x}", what, atom(b_), base_ + iters));
  return secs;
}

}  // namespace softrdma::tools
