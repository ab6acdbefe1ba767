// Memory operations through the send queue, end to end between two adapters: windows bound by
// the bind verb (type 1) and by work requests (type 2), fast registration, local invalidation,
// SEND with Invalidate (seed 002 FIG. 11, 15, 17A) and one-touch entries (FIG. 18B).
#include "common/pair.h"

#include <thread>

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kPage = 4096;

SendWr bind_wr(uint64_t id, Mw* mw, uint32_t new_key, Mr* mr, uint64_t addr, uint64_t len, uint32_t access) {
  SendWr wr;
  wr.wr_id = id;
  wr.opcode = WrOpcode::kBindMw;
  wr.flags = kSignaled;
  wr.bind.mw = mw->rkey;
  wr.bind.new_key = new_key;
  wr.bind.mr = mr->lkey;
  wr.bind.addr = addr;
  wr.bind.length = len;
  wr.bind.access = access;
  return wr;
}

SendWr inv_wr(uint64_t id, uint32_t key, WrOpcode op = WrOpcode::kLocalInv) {
  SendWr wr;
  wr.wr_id = id;
  wr.opcode = op;
  wr.flags = kSignaled;
  wr.imm_data = key;
  return wr;
}

// No loss is injected here, so a retransmission can only come from a timeout on a loaded
// machine, and one that arrives after a key changed would (rightly) fail the test's next step:
// a 1 s ACK timeout keeps them out.
PairOptions calm() {
  PairOptions o;
  o.timeout = 18;
  return o;
}

class MemoryOpsTest : public PairTest {
 protected:
  // A region on b that grants no remote access of its own: only windows open it up.
  Mr* local_region(Side& s, size_t off, size_t len, uint32_t access = mem::kLocalWrite | mem::kMwBind) {
    int err = 0;
    Mr* mr = s.dev->reg_mr(s.pd, s.buf.data() + off, len, access, &err);
    EXPECT_TRUE(mr) << err;
    return mr;
  }
  Mw* window(Side& s, uint8_t type) {
    int err = 0;
    Mw* mw = s.dev->alloc_mw(s.pd, type, &err);
    EXPECT_TRUE(mw) << err;
    return mw;
  }
  void expect_ok(Side& s, uint64_t wr_id) {
    Wc wc = wait_one(s);
    EXPECT_EQ(wc.wr_id, wr_id);
    EXPECT_EQ(wc.status, WcStatus::kSuccess) << name(wc.status);
  }
};

// A type-2 window opens exactly its range with exactly its rights to the peer; the region
// under it grants nothing remotely.
TEST_F(MemoryOpsTest, Type2WindowGrantsItsRangeAndRightsOnly) {
  make(calm());
  Mr* region = local_region(b, 0, 64 * 1024);
  Mw* mw = window(b, 2);
  uint32_t key = next_key(mw->rkey);
  uint64_t win = b.addr(8192);
  ASSERT_EQ(0, post(b, bind_wr(1, mw, key, region, win, 16384, mem::kRemoteWrite | mem::kRemoteRead), {}));
  Wc bound = wait_one(b);
  EXPECT_EQ(bound.status, WcStatus::kSuccess) << name(bound.status);
  EXPECT_EQ(bound.opcode, WcOpcode::kBindMw);
  fill(a.buf, 0, 16384, 3);
  ASSERT_EQ(0, post(a, write_wr(2, win, key), a.sge(0, 16384)));
  expect_ok(a, 2);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data() + 8192, 16384));
  ASSERT_EQ(0, post(a, read_wr(3, win + 100, key), a.sge(20000, 5000)));
  expect_ok(a, 3);
  EXPECT_EQ(0, std::memcmp(a.buf.data() + 20000, b.buf.data() + 8192 + 100, 5000));
  EXPECT_EQ(EBUSY, b.dev->dereg_mr(region)) << "a window is bound to it";
  // One byte past the window, though inside the region: remote access error.
  ASSERT_EQ(0, post(a, write_wr(4, win + 16384 - 8, key), a.sge(0, 9)));
  Wc bad = wait_one(a);
  EXPECT_EQ(bad.status, WcStatus::kRemAccessErr) << name(bad.status);
  EXPECT_TRUE(wait_state(b.qp, QpState::kErr));
  EXPECT_EQ(0, b.dev->dealloc_mw(mw));
  EXPECT_EQ(0, b.dev->dereg_mr(region));
}

// Seed 002: a key that was valid before re-registration is refused afterwards.
TEST_F(MemoryOpsTest, ReRegistrationRetiresTheOldRkey) {
  make(calm());
  uint32_t old_rkey = b.mr->rkey;
  ASSERT_EQ(0, b.dev->rereg_mr(b.mr, b.pd, b.buf.data(), 8192, b.addr(0), mem::kLocalWrite | mem::kRemoteWrite));
  EXPECT_NE(old_rkey, b.mr->rkey);
  ASSERT_EQ(0, post(a, write_wr(1, b.addr(0), b.mr->rkey), a.sge(0, 64)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kSuccess);
  ASSERT_EQ(0, post(a, write_wr(2, b.addr(0), old_rkey), a.sge(0, 64)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kRemAccessErr);
}

TEST_F(MemoryOpsTest, RegionWithoutRemoteRightsIsNotReachable) {
  make(calm());
  Mr* region = local_region(b, 0, 4096);
  ASSERT_EQ(0, post(a, write_wr(1, b.addr(0), region->rkey), a.sge(0, 8)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kRemAccessErr);
}

TEST_F(MemoryOpsTest, Type2WindowWorksOnlyThroughTheQpItIsBoundTo) {
  make(calm());
  // A second connection between the same two adapters.
  QueuePair* a2 = add_qp(a, QpType::kRc);
  QueuePair* b2 = add_qp(b, QpType::kRc);
  connect_qp(*a.dev, a2, *b.dev, b2->qpn(), opt);
  connect_qp(*b.dev, b2, *a.dev, a2->qpn(), opt);
  Mr* region = local_region(b, 0, 8192);
  Mw* mw = window(b, 2);
  uint32_t key = next_key(mw->rkey);
  ASSERT_EQ(0, post(b, bind_wr(1, mw, key, region, b.addr(0), 8192, mem::kRemoteWrite), {}));
  expect_ok(b, 1);
  SendWr wr = write_wr(2, b.addr(0), key);
  Sge sg = a.sge(0, 64);
  wr.sg_list = &sg;
  wr.num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(a2, &wr, 1, nullptr));
  Wc wc = wait_one(a);
  EXPECT_EQ(wc.status, WcStatus::kRemAccessErr) << name(wc.status);
  ASSERT_EQ(0, post(a, write_wr(3, b.addr(0), key), a.sge(0, 64)));
  expect_ok(a, 3);
}

// The bind verb (type 1): every bind gives the window a new key and the old one stops working.
TEST_F(MemoryOpsTest, Type1WindowRebindRetiresTheOldKey) {
  make(calm());
  Mr* region = local_region(b, 0, 8192);
  Mw* mw = window(b, 1);
  ASSERT_EQ(0, b.dev->bind_mw(b.qp, mw, 1, kSignaled, region, b.addr(0), 4096, mem::kRemoteRead));
  expect_ok(b, 1);
  uint32_t first = mw->rkey;
  fill(b.buf, 0, 8192, 9);
  ASSERT_EQ(0, post(a, read_wr(2, b.addr(0), first), a.sge(0, 4096)));
  expect_ok(a, 2);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 4096));
  ASSERT_EQ(0, b.dev->bind_mw(b.qp, mw, 3, kSignaled, region, b.addr(4096), 4096, mem::kRemoteRead));
  expect_ok(b, 3);
  EXPECT_NE(first, mw->rkey);
  ASSERT_EQ(0, post(a, read_wr(4, b.addr(4096), mw->rkey), a.sge(0, 4096)));
  expect_ok(a, 4);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data() + 4096, 4096));
  ASSERT_EQ(0, post(a, read_wr(5, b.addr(0), first), a.sge(0, 8)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kRemAccessErr);
}

TEST_F(MemoryOpsTest, BindErrorsCompleteWithMwBindErr) {
  make(calm());
  Mr* no_bind = local_region(b, 0, 4096, mem::kLocalWrite);
  Mw* mw = window(b, 2);
  ASSERT_EQ(0, post(b, bind_wr(1, mw, next_key(mw->rkey), no_bind, b.addr(0), 4096, mem::kRemoteRead), {}));
  ASSERT_EQ(0, post(b, send_wr(2), b.sge(0, 8)));
  auto wc = wait_for(b, 2, 5s);
  ASSERT_EQ(wc.size(), 2u);
  EXPECT_EQ(wc[0].status, WcStatus::kMwBindErr) << name(wc[0].status);
  EXPECT_EQ(wc[1].status, WcStatus::kWrFlushErr) << name(wc[1].status);
  EXPECT_EQ(b.qp->state(), QpState::kErr) << "RC default: option 2";
}

// Invalidation through the send queue and by an incoming SEND with Invalidate.
TEST_F(MemoryOpsTest, LocalAndRemoteInvalidationOfAWindow) {
  make(calm());
  Mr* region = local_region(b, 0, 8192);
  Mw* mw = window(b, 2);
  uint32_t k1 = next_key(mw->rkey);
  ASSERT_EQ(0, post(b, bind_wr(1, mw, k1, region, b.addr(0), 4096, mem::kRemoteWrite), {}));
  expect_ok(b, 1);
  // The peer says "done with it": the window goes when the message arrives.
  post_recv(b, 10, 4096, 64);
  ASSERT_EQ(0, post(a, inv_wr(2, k1, WrOpcode::kSendInv), a.sge(0, 16)));
  expect_ok(a, 2);
  Wc got = wait_one(b);
  EXPECT_EQ(got.status, WcStatus::kSuccess) << name(got.status);
  EXPECT_TRUE(got.wc_flags & kWcWithInv);
  EXPECT_EQ(got.imm_data, k1);
  EXPECT_EQ(qp_counters_of(*b.dev, b.qp->qpn()).remote_invalidations, 1u);
  // Bound again under the next key, then invalidated locally.
  uint32_t k2 = next_key(k1);
  SendWr rebind = bind_wr(3, mw, k2, region, b.addr(0), 4096, mem::kRemoteWrite);
  rebind.bind.mw = k1;
  ASSERT_EQ(0, post(b, rebind, {}));
  expect_ok(b, 3);
  ASSERT_EQ(0, post(a, write_wr(4, b.addr(0), k2), a.sge(0, 64)));
  expect_ok(a, 4);
  ASSERT_EQ(0, post(b, inv_wr(5, k2), {}));
  Wc inv = wait_one(b);
  EXPECT_EQ(inv.status, WcStatus::kSuccess) << name(inv.status);
  EXPECT_EQ(inv.opcode, WcOpcode::kLocalInv);
  ASSERT_EQ(0, post(a, write_wr(6, b.addr(0), k2), a.sge(0, 64)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kRemAccessErr);
}

TEST_F(MemoryOpsTest, SendWithInvalidateOfABadKeyFailsBothSides) {
  make(calm());
  post_recv(b, 10, 0, 64);
  ASSERT_EQ(0, post(a, inv_wr(1, b.mr->rkey, WrOpcode::kSendInv), a.sge(0, 16)));  // an ordinary region
  Wc req = wait_one(a);
  EXPECT_EQ(req.status, WcStatus::kRemInvReqErr) << name(req.status);
  Wc resp = wait_one(b);
  EXPECT_EQ(resp.status, WcStatus::kRemInvReqErr) << name(resp.status);
  EXPECT_TRUE(wait_state(b.qp, QpState::kErr));
}

// FIG. 11: registration through the send queue; the key is good for the very next WQEs.
TEST_F(MemoryOpsTest, FastRegistrationKeyIsUsableByTheNextWorkRequests) {
  make(calm());
  int err = 0;
  Mr* fr = a.dev->alloc_fast_reg_mr(a.pd, 8, &err);
  ASSERT_TRUE(fr) << err;
  uint8_t* base = reinterpret_cast<uint8_t*>((a.addr(0) + kPage - 1) & ~(kPage - 1));
  fill(a.buf, base - a.buf.data(), 16 * kPage, 5);
  // Pages 6 and 2 of the buffer, in that order, as one region at iova 0x10000.
  Sge runs[2] = {{reinterpret_cast<uint64_t>(base + 6 * kPage), uint32_t(kPage), 0},
                 {reinterpret_cast<uint64_t>(base + 2 * kPage), uint32_t(kPage), 0}};
  uint32_t key = next_key(fr->lkey);
  SendWr reg;
  reg.wr_id = 1;
  reg.opcode = WrOpcode::kRegMr;
  reg.flags = kSignaled;
  reg.sg_list = runs;
  reg.num_sge = 2;
  reg.reg = {fr->lkey, key, 0x10000, mem::kLocalWrite};
  post_recv(b, 10, 0, 3 * kPage);
  SendWr wrs[2] = {reg, send_wr(2)};
  Sge data{0x10000 + kPage - 100, 200, key};  // straddles the two pages
  wrs[1].sg_list = &data;
  wrs[1].num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(a.qp, wrs, 2, nullptr));
  auto wc = wait_for(a, 2, 5s);
  ASSERT_EQ(wc.size(), 2u);
  EXPECT_EQ(wc[0].opcode, WcOpcode::kRegMr);
  EXPECT_EQ(wc[0].status, WcStatus::kSuccess) << name(wc[0].status);
  EXPECT_EQ(wc[1].status, WcStatus::kSuccess) << name(wc[1].status);
  Wc got = wait_one(b);
  ASSERT_EQ(got.byte_len, 200u);
  EXPECT_EQ(0, std::memcmp(b.buf.data(), base + 7 * kPage - 100, 100));
  EXPECT_EQ(0, std::memcmp(b.buf.data() + 100, base + 2 * kPage, 100));
  // Invalidate; the old key fails locally with a protection error, and QP goes to ERR.
  ASSERT_EQ(0, post(a, inv_wr(3, key), {}));
  expect_ok(a, 3);
  ASSERT_EQ(0, post(a, send_wr(4), data));
  EXPECT_EQ(wait_one(a).status, WcStatus::kLocProtErr);
}

TEST_F(MemoryOpsTest, FastRegistrationForThePeer) {
  make(calm());
  int err = 0;
  Mr* fr = b.dev->alloc_fast_reg_mr(b.pd, 4, &err);
  ASSERT_TRUE(fr) << err;
  uint32_t key = next_key(fr->lkey);
  SendWr reg;
  reg.wr_id = 1;
  reg.opcode = WrOpcode::kRegMr;
  reg.flags = kSignaled;
  reg.reg = {fr->lkey, key, 0, mem::kLocalWrite | mem::kRemoteWrite | mem::kZeroBased};
  ASSERT_EQ(0, post(b, reg, b.sge(100, 3 * kPage)));
  expect_ok(b, 1);
  fill(a.buf, 0, 3 * kPage, 8);
  ASSERT_EQ(0, post(a, write_wr(2, 0, key), a.sge(0, 3 * kPage)));  // zero-based: offset 0
  expect_ok(a, 2);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data() + 100, 3 * kPage));
  EXPECT_EQ(qp_counters_of(*b.dev, b.qp->qpn()).fast_registrations, 1u);
  // Registering a key that is still valid is an error: invalidate first.
  SendWr again = reg;
  again.wr_id = 3;
  again.reg.mr = key;
  again.reg.new_key = next_key(key);
  ASSERT_EQ(0, post(b, again, b.sge(100, kPage)));
  EXPECT_EQ(wait_one(b).status, WcStatus::kLocProtErr);
}

// FIG. 11 option 1: the send queue drains, receiving goes on, and RTS resumes it.
TEST_F(MemoryOpsTest, DrainOptionKeepsTheReceiveSideWorking) {
  make(calm());
  QpInitAttr init;
  init.type = QpType::kRc;
  init.send_cq = a.cq;
  init.recv_cq = a.cq;
  init.cap = {16, 16, 4, 4, 0};
  init.send_error = transport::SendErrorMode::kDrainSendQueue;
  int err = 0;
  QueuePair* qa = a.dev->create_qp(a.pd, init, &err);
  ASSERT_TRUE(qa) << err;
  QueuePair* qb = add_qp(b, QpType::kRc);
  connect_qp(*a.dev, qa, *b.dev, qb->qpn(), opt);
  connect_qp(*b.dev, qb, *a.dev, qa->qpn(), opt);
  auto post_on = [&](QueuePair* qp, Side& s, SendWr wr, Sge sg) {
    wr.sg_list = &sg;
    wr.num_sge = 1;
    return s.dev->post_send(qp, &wr, 1, nullptr);
  };
  Sge bad = a.sge(0, 64);
  bad.lkey ^= 0x55;
  ASSERT_EQ(0, post_on(qa, a, write_wr(1, b.addr(0), b.mr->rkey), a.sge(0, 64)));
  ASSERT_EQ(0, post_on(qa, a, write_wr(2, b.addr(0), b.mr->rkey), bad));
  ASSERT_EQ(0, post_on(qa, a, write_wr(3, b.addr(0), b.mr->rkey), a.sge(0, 64)));
  auto wc = wait_for(a, 3, 5s);
  ASSERT_EQ(wc.size(), 3u);
  EXPECT_EQ(wc[0].status, WcStatus::kSuccess) << name(wc[0].status);
  EXPECT_EQ(wc[1].status, WcStatus::kLocProtErr) << name(wc[1].status);
  EXPECT_EQ(wc[2].status, WcStatus::kWrFlushErr) << name(wc[2].status);
  EXPECT_EQ(qa->state(), QpState::kSqe);
  // Posted in SQE: flushed, never sent.
  ASSERT_EQ(0, post_on(qa, a, write_wr(5, b.addr(0), b.mr->rkey), a.sge(0, 64)));
  Wc flushed = wait_one(a);
  EXPECT_EQ(flushed.wr_id, 5u);
  EXPECT_EQ(flushed.status, WcStatus::kWrFlushErr) << name(flushed.status);
  // Receiving still works in SQE.
  Sge rsg = a.sge(4096, 64);
  RecvWr rwr{20, &rsg, 1};
  ASSERT_EQ(0, a.dev->post_recv(qa, &rwr, 1, nullptr));
  ASSERT_EQ(0, post_on(qb, b, send_wr(21), b.sge(0, 32)));
  auto both = wait_for(a, 1, 5s);
  ASSERT_EQ(both.size(), 1u);
  EXPECT_EQ(both[0].wr_id, 20u);
  EXPECT_EQ(both[0].status, WcStatus::kSuccess) << name(both[0].status);
  // And the consumer resumes the send queue.
  QpAttr rts;
  rts.state = QpState::kRts;
  ASSERT_EQ(0, a.dev->modify_qp(qa, rts, transport::kAttrState));
  ASSERT_EQ(0, post_on(qa, a, write_wr(4, b.addr(0), b.mr->rkey), a.sge(0, 64)));
  auto after = wait_for(a, 1, 5s);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].status, WcStatus::kSuccess) << name(after[0].status);
}

TEST_F(MemoryOpsTest, ErrorOptionFlushesBothQueues) {
  make(calm());  // RC default: option 2
  post_recv(a, 20, 4096, 64);
  Sge bad = a.sge(0, 64);
  bad.lkey ^= 0x55;
  ASSERT_EQ(0, post(a, write_wr(1, b.addr(0), b.mr->rkey), bad));
  auto wc = wait_for(a, 2, 5s);
  ASSERT_EQ(wc.size(), 2u);
  EXPECT_EQ(a.qp->state(), QpState::kErr);
  int flushed_recv = 0;
  for (const Wc& w : wc)
    if (w.wr_id == 20 && w.status == WcStatus::kWrFlushErr) flushed_recv++;
  EXPECT_EQ(flushed_recv, 1);
}

// FIG. 18B: a one-touch region takes one RDMA message, then it is gone.
TEST_F(MemoryOpsTest, OneTouchRegionTakesOneMessage) {
  make(calm());
  int err = 0;
  Mr* once = b.dev->reg_mr(b.pd, b.buf.data(), 64 * 1024,
                           mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead | mem::kOneTouch, &err);
  ASSERT_TRUE(once) << err;
  fill(a.buf, 0, 10000, 4);
  ASSERT_EQ(0, post(a, write_wr(1, b.addr(0), once->rkey), a.sge(0, 10000)));  // 10 packets
  expect_ok(a, 1);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 10000));
  ASSERT_EQ(0, post(a, write_wr(2, b.addr(20000), once->rkey), a.sge(0, 8)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kRemAccessErr);
  EXPECT_EQ(0, b.dev->dereg_mr(once));
}

TEST_F(MemoryOpsTest, OneTouchWindowServesOneRead) {
  // A timeout retransmission of the READ would find the window used up (and rightly get a
  // remote access error): calm() keeps it out.
  make(calm());
  Mr* region = local_region(b, 0, 8192);
  Mw* mw = window(b, 2);
  uint32_t key = next_key(mw->rkey);
  ASSERT_EQ(0, post(b, bind_wr(1, mw, key, region, b.addr(0), 8192, mem::kRemoteRead | mem::kOneTouch), {}));
  expect_ok(b, 1);
  fill(b.buf, 0, 8192, 6);
  ASSERT_EQ(0, post(a, read_wr(2, b.addr(0), key), a.sge(0, 8192)));
  expect_ok(a, 2);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 8192));
  ASSERT_EQ(0, post(a, read_wr(3, b.addr(0), key), a.sge(0, 8)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kRemAccessErr);
}

}  // namespace
}  // namespace softrdma::test
