// Test fixture: two adapters in one process, each on its own auto-picked 127.0.0.x, with
// helpers to connect QPs and wait for completions (bounded by a deadline, never forever).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "device/device.h"

namespace softrdma::test {

struct Side {
  // Declared first so it is destroyed last: the device (and its progress thread, which may
  // still be answering a late duplicate READ) must be gone before the memory it reads.
  std::vector<uint8_t> buf;
  std::unique_ptr<Device> dev;
  Pd* pd = nullptr;
  Cq* cq = nullptr;
  QueuePair* qp = nullptr;
  Mr* mr = nullptr;

  uint64_t addr(size_t off = 0) { return reinterpret_cast<uint64_t>(buf.data() + off); }
  Sge sge(size_t off, uint32_t len) { return Sge{addr(off), len, mr->lkey}; }
};

struct PairOptions {
  QpType type = QpType::kRc;
  uint32_t mtu = 1024;
  size_t buf_size = 1 << 20;
  uint32_t max_wr = 256;
  uint8_t timeout = 10;  // ~4 ms: fast recovery in tests
  uint8_t retry_cnt = 7;
  uint8_t rnr_retry = 7;
  uint8_t max_rd_atomic = 4;
  uint32_t access = mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead | mem::kRemoteAtomic;
  std::optional<link::FaultConfig> fault_a, fault_b;
  bool progress_thread = true;
  bool infer_ipv4_id = true;
  bool shm = DeviceConfig{}.shm;  // the same-host link (on by default, as for applications)
};

inline std::unique_ptr<Device> open_device(const PairOptions& o, const std::optional<link::FaultConfig>& f) {
  DeviceConfig cfg;
  cfg.mtu = 4096;
  cfg.fault = f;
  cfg.progress_thread = o.progress_thread;
  cfg.engine.infer_ipv4_id = o.infer_ipv4_id;
  cfg.shm = o.shm;
  std::string err;
  auto dev = Device::open(cfg, &err);
  EXPECT_TRUE(dev) << err;
  return dev;
}

// A PD, a CQ, a QP and a registered buffer on s.dev, as o describes. No test assertions (a
// forked child uses it too): false if anything is missing.
inline bool make_objects(Side& s, const PairOptions& o) {
  s.pd = s.dev->alloc_pd();
  int err = 0;
  s.cq = s.dev->create_cq(4 * o.max_wr, nullptr, nullptr, &err);
  if (s.pd == nullptr || s.cq == nullptr) return false;
  QpInitAttr init;
  init.type = o.type;
  init.send_cq = s.cq;
  init.recv_cq = s.cq;
  init.cap = {o.max_wr, o.max_wr, 4, 4, 64};
  s.qp = s.dev->create_qp(s.pd, init, &err);
  s.buf.assign(o.buf_size, 0);
  s.mr = s.dev->reg_mr(s.pd, s.buf.data(), s.buf.size(), o.access, &err);
  return s.qp != nullptr && s.mr != nullptr;
}

inline void setup_side(Side& s, const PairOptions& o, const std::optional<link::FaultConfig>& f) {
  s.dev = open_device(o, f);
  ASSERT_TRUE(s.dev);
  ASSERT_TRUE(make_objects(s, o));
}

inline uint8_t mtu_enum_of(uint32_t bytes) {
  uint8_t e = 1;
  while ((128u << e) < bytes) ++e;
  return e;
}

// RESET -> INIT -> RTR -> RTS toward the peer (UD: no peer needed).
inline void connect(Side& s, const Side& peer, const PairOptions& o, uint32_t sq_psn = 0, uint32_t rq_psn = 0) {
  QpAttr a;
  a.state = QpState::kInit;
  a.access = o.access;
  a.qkey = 0x11111111;
  uint32_t mask = transport::kAttrState | transport::kAttrPkeyIndex | transport::kAttrPort;
  mask |= o.type == QpType::kUd ? transport::kAttrQkey : transport::kAttrAccessFlags;
  ASSERT_EQ(0, s.dev->modify_qp(s.qp, a, mask));
  a.state = QpState::kRtr;
  a.path_mtu = mtu_enum_of(o.mtu);
  a.dest_qpn = peer.qp->qpn();
  a.rq_psn = rq_psn;
  a.av.dgid = peer.dev->gid();
  a.max_dest_rd_atomic = o.max_rd_atomic;
  a.min_rnr_timer = 1;
  if (o.type == QpType::kUd)
    mask = transport::kAttrState;
  else if (o.type == QpType::kUc)
    mask = transport::kAttrState | transport::kAttrAv | transport::kAttrPathMtu | transport::kAttrDestQpn |
           transport::kAttrRqPsn;
  else
    mask = transport::kAttrState | transport::kAttrAv | transport::kAttrPathMtu | transport::kAttrDestQpn |
           transport::kAttrRqPsn | transport::kAttrMaxDestRdAtomic | transport::kAttrMinRnrTimer;
  const char* why = "";
  ASSERT_EQ(0, s.dev->modify_qp(s.qp, a, mask, &why)) << why;
  a.state = QpState::kRts;
  a.sq_psn = sq_psn;
  a.timeout = o.timeout;
  a.retry_cnt = o.retry_cnt;
  a.rnr_retry = o.rnr_retry;
  a.max_rd_atomic = o.max_rd_atomic;
  mask = transport::kAttrState | transport::kAttrSqPsn;
  if (o.type == QpType::kRc)
    mask |= transport::kAttrTimeout | transport::kAttrRetryCnt | transport::kAttrRnrRetry | transport::kAttrMaxQpRdAtomic;
  ASSERT_EQ(0, s.dev->modify_qp(s.qp, a, mask, &why)) << why;
}

// Polls until n completions arrived or the deadline passed; returns what arrived.
inline std::vector<Wc> wait_for(Side& s, size_t n, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  std::vector<Wc> out;
  auto deadline = std::chrono::steady_clock::now() + limit;
  Wc wc[32];
  while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
    int got = s.dev->poll_cq(s.cq, wc, 32);
    for (int i = 0; i < got; ++i) out.push_back(wc[i]);
  }
  return out;
}

class PairTest : public ::testing::Test {
 protected:
  void make(const PairOptions& o = {}) {
    opt = o;
    setup_side(a, o, o.fault_a);
    setup_side(b, o, o.fault_b);
    connect(a, b, o);
    connect(b, a, o);
  }
  void post_recv(Side& s, uint64_t wr_id, size_t off, uint32_t len) {
    Sge sg = s.sge(off, len);
    RecvWr wr{wr_id, &sg, 1};
    ASSERT_EQ(0, s.dev->post_recv(s.qp, &wr, 1, nullptr));
  }
  int post(Side& s, SendWr wr, Sge sg) {
    wr.sg_list = &sg;
    wr.num_sge = 1;
    return s.dev->post_send(s.qp, &wr, 1, nullptr);
  }
  PairOptions opt;
  Side a, b;
};

inline void fill(std::vector<uint8_t>& v, size_t off, size_t len, uint32_t seed) {
  for (size_t i = 0; i < len; ++i) v[off + i] = static_cast<uint8_t>((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

}  // namespace softrdma::test

namespace softrdma::test {
// Prints every nonzero device and QP counter (for failure diagnosis).
inline void dump_counters(Device& d, const char* label) {
  auto c = d.counters();
  std::printf("[%s] device:", label);
  for (size_t i = 0; i < std::size(transport::DeviceCounters::kNames); ++i)
    if (c.values()[i]) std::printf(" %s=%lu", std::string(transport::DeviceCounters::kNames[i].name).c_str(), (unsigned long)c.values()[i]);
  std::printf("\n");
  for (auto& q : d.qp_counters()) {
    std::printf("[%s] qp %u %s:", label, q.qpn, std::string(transport::name(q.state)).c_str());
    for (size_t i = 0; i < std::size(transport::QpCounters::kNames); ++i)
      if (q.counters.values()[i]) std::printf(" %s=%lu", std::string(transport::QpCounters::kNames[i].name).c_str(), (unsigned long)q.counters.values()[i]);
    std::printf("\n");
  }
}
}  // namespace softrdma::test

namespace softrdma::test {
// ---- helpers for tests that build more than the one QP pair of a PairTest ----------------

// RESET -> INIT -> RTR -> RTS of any QP toward (peer_dev, peer_qpn), with the attributes of o
// (the same ones connect() uses for a Side).
inline void connect_qp(Device& dev, QueuePair* qp, const Device& peer_dev, uint32_t peer_qpn, const PairOptions& o,
                       uint32_t sq_psn = 0, uint32_t rq_psn = 0) {
  QpType type = qp->init.type;
  QpAttr a;
  a.state = QpState::kInit;
  a.access = o.access;
  a.qkey = 0x11111111;
  uint32_t mask = transport::kAttrState | transport::kAttrPkeyIndex | transport::kAttrPort;
  mask |= type == QpType::kUd ? transport::kAttrQkey : transport::kAttrAccessFlags;
  const char* why = "";
  ASSERT_EQ(0, dev.modify_qp(qp, a, mask, &why)) << why;
  a.state = QpState::kRtr;
  a.path_mtu = mtu_enum_of(o.mtu);
  a.dest_qpn = peer_qpn;
  a.rq_psn = rq_psn;
  a.av.dgid = peer_dev.gid();
  a.max_dest_rd_atomic = o.max_rd_atomic;
  a.min_rnr_timer = 1;
  if (type == QpType::kUd)
    mask = transport::kAttrState;
  else if (type == QpType::kUc)
    mask = transport::kAttrState | transport::kAttrAv | transport::kAttrPathMtu | transport::kAttrDestQpn |
           transport::kAttrRqPsn;
  else
    mask = transport::kAttrState | transport::kAttrAv | transport::kAttrPathMtu | transport::kAttrDestQpn |
           transport::kAttrRqPsn | transport::kAttrMaxDestRdAtomic | transport::kAttrMinRnrTimer;
  ASSERT_EQ(0, dev.modify_qp(qp, a, mask, &why)) << why;
  a.state = QpState::kRts;
  a.sq_psn = sq_psn;
  a.timeout = o.timeout;
  a.retry_cnt = o.retry_cnt;
  a.rnr_retry = o.rnr_retry;
  a.max_rd_atomic = o.max_rd_atomic;
  mask = transport::kAttrState | transport::kAttrSqPsn;
  if (type == QpType::kRc)
    mask |= transport::kAttrTimeout | transport::kAttrRetryCnt | transport::kAttrRnrRetry | transport::kAttrMaxQpRdAtomic;
  ASSERT_EQ(0, dev.modify_qp(qp, a, mask, &why)) << why;
}

// Polls any CQ until n completions arrived or the deadline passed.
inline std::vector<Wc> wait_cq(Device& dev, Cq* cq, size_t n, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  std::vector<Wc> out;
  auto deadline = std::chrono::steady_clock::now() + limit;
  Wc wc[32];
  while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
    int got = dev.poll_cq(cq, wc, 32);
    for (int i = 0; i < got; ++i) out.push_back(wc[i]);
  }
  return out;
}

// Polls a side's CQ for the whole period and returns everything that arrived (to show that
// nothing more comes).
inline std::vector<Wc> drain(Side& s, std::chrono::milliseconds period) {
  return wait_cq(*s.dev, s.cq, SIZE_MAX, period);
}

// Waits (without polling any CQ) until the QP is in state st; false at the deadline.
inline bool wait_state(const QueuePair* qp, QpState st, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (qp->state() != st) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// A snapshot of the counters of QP qpn on dev (all zero if there is no such QP).
inline transport::QpCounters qp_counters_of(Device& dev, uint32_t qpn) {
  for (auto& q : dev.qp_counters())
    if (q.qpn == qpn) return q.counters;
  return {};
}
}  // namespace softrdma::test

namespace softrdma {
// Readable values in test failure messages (found by GoogleTest through ADL).
inline void PrintTo(WcStatus s, std::ostream* os) { *os << name(s); }
inline void PrintTo(WcOpcode o, std::ostream* os) { *os << name(o); }
}  // namespace softrdma
namespace softrdma::transport {
inline void PrintTo(QpState s, std::ostream* os) { *os << name(s); }
}  // namespace softrdma::transport

namespace softrdma::test {
// Options with a ~1 ms local ACK timeout: for tests that wait for transport retries.
inline PairOptions fast() {
  PairOptions o;
  o.timeout = 8;
  return o;
}

// Another QP of the given type on s's device, PD and CQ.
inline QueuePair* add_qp(Side& s, QpType type, uint32_t max_wr = 64, bool sig_all = false) {
  QpInitAttr init;
  init.type = type;
  init.send_cq = s.cq;
  init.recv_cq = s.cq;
  init.cap = {max_wr, max_wr, 4, 4, 64};
  init.sq_sig_all = sig_all;
  int err = 0;
  QueuePair* qp = s.dev->create_qp(s.pd, init, &err);
  EXPECT_TRUE(qp) << err;
  return qp;
}

inline SendWr send_wr(uint64_t id, uint32_t flags = kSignaled) {
  SendWr wr;
  wr.wr_id = id;
  wr.opcode = WrOpcode::kSend;
  wr.flags = flags;
  return wr;
}

inline SendWr write_wr(uint64_t id, uint64_t raddr, uint32_t rkey, uint32_t flags = kSignaled) {
  SendWr wr;
  wr.wr_id = id;
  wr.opcode = WrOpcode::kRdmaWrite;
  wr.flags = flags;
  wr.rdma.remote_addr = raddr;
  wr.rdma.rkey = rkey;
  return wr;
}

inline SendWr read_wr(uint64_t id, uint64_t raddr, uint32_t rkey) {
  SendWr wr = write_wr(id, raddr, rkey);
  wr.opcode = WrOpcode::kRdmaRead;
  return wr;
}

// The next key of an entry (ibv_inc_rkey): same index, next low byte.
inline uint32_t next_key(uint32_t key) { return (key & ~0xffu) | ((key + 1) & 0xffu); }

// Exactly one completion within the limit (an empty Wc, and a test failure, otherwise).
inline Wc wait_one(Side& s, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto wc = wait_for(s, 1, limit);
  EXPECT_EQ(wc.size(), 1u);
  return wc.empty() ? Wc{} : wc[0];
}
}  // namespace softrdma::test
