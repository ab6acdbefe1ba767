// RC error semantics (IBA 9.7.5.2.8, 9.9, 10.8.3): RNR NAKs and their retry budget, transport
// retries exceeded, remote access/invalid-request errors (requester's completion, responder's
// QP to ERR) and local errors, each followed by the flush of everything queued behind it.
#include "common/pair.h"

#include <algorithm>
#include <thread>

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

// For everything else: a 67 ms ACK timeout, so that no retransmission (from a timeout on a
// loaded machine) blurs the exact counts and orders these tests check.
PairOptions calm() {
  PairOptions o;
  o.timeout = 14;
  return o;
}


SendWr fadd_wr(uint64_t id, uint64_t raddr, uint32_t rkey, uint64_t add) {
  SendWr wr;
  wr.wr_id = id;
  wr.opcode = WrOpcode::kFetchAdd;
  wr.flags = kSignaled;
  wr.atomic.remote_addr = raddr;
  wr.atomic.rkey = rkey;
  wr.atomic.compare_add = add;
  return wr;
}

// ---- RNR ----------------------------------------------------------------------------------

class RnrTest : public PairTest {};

TEST_F(RnrTest, SendBeforeReceiveIsPostedCompletesAfterRnrRetries) {
  make(calm());  // rnr_retry = 7: retry forever; min_rnr_timer = 1 (10 us)
  fill(a.buf, 0, 5000, 1);
  ASSERT_EQ(0, post(a, send_wr(1), a.sge(0, 5000)));
  std::this_thread::sleep_for(50ms);  // the receiver is not ready for 50 ms
  Wc none;
  EXPECT_EQ(a.dev->poll_cq(a.cq, &none, 1), 0) << "no completion while the receiver is not ready";
  post_recv(b, 9, 0, 8192);
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  EXPECT_EQ(sc[0].wr_id, 1u);
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(rc[0].byte_len, 5000u);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 5000));
  EXPECT_GT(qp_counters_of(*b.dev, b.qp->qpn()).rnr_nak_sent, 0u);
  EXPECT_GT(qp_counters_of(*a.dev, a.qp->qpn()).rnr_nak_received, 0u);
  EXPECT_EQ(a.qp->state(), QpState::kRts);
  EXPECT_EQ(b.qp->state(), QpState::kRts);
}

// RDMA WRITE with immediate consumes a receive WQE only at its last packet: the RNR NAK comes
// for that packet, after the earlier ones were placed, and only it is sent again.
TEST_F(RnrTest, MultiPacketWriteWithImmediateWaitsForReceive) {
  make(calm());
  fill(a.buf, 0, 10000, 2);
  SendWr wr = write_wr(1, b.addr(65536), b.mr->rkey);
  wr.opcode = WrOpcode::kRdmaWriteImm;
  wr.imm_data = 0x1234;
  ASSERT_EQ(0, post(a, wr, a.sge(0, 10000)));
  std::this_thread::sleep_for(20ms);
  post_recv(b, 5, 0, 0);
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(rc[0].opcode, WcOpcode::kRecvRdmaWithImm);
  EXPECT_EQ(rc[0].imm_data, 0x1234u);
  EXPECT_EQ(rc[0].byte_len, 10000u);
  EXPECT_EQ(rc[0].wr_id, 5u);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data() + 65536, 10000));
  EXPECT_GT(qp_counters_of(*b.dev, b.qp->qpn()).rnr_nak_sent, 0u);
}

TEST_F(RnrTest, RnrRetryZeroFailsSendAndFlushesTheRest) {
  PairOptions o = calm();
  o.rnr_retry = 0;
  make(o);
  ASSERT_EQ(0, post(a, send_wr(1), a.sge(0, 100)));
  ASSERT_EQ(0, post(a, send_wr(2), a.sge(0, 100)));
  ASSERT_EQ(0, post(a, write_wr(3, b.addr(4096), b.mr->rkey), a.sge(0, 100)));
  auto sc = wait_for(a, 3, 5s);
  ASSERT_EQ(sc.size(), 3u);
  EXPECT_EQ(sc[0].wr_id, 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRnrRetryExcErr) << name(sc[0].status);
  EXPECT_EQ(sc[1].wr_id, 2u);
  EXPECT_EQ(sc[1].status, WcStatus::kWrFlushErr) << name(sc[1].status);
  EXPECT_EQ(sc[2].wr_id, 3u);
  EXPECT_EQ(sc[2].status, WcStatus::kWrFlushErr) << name(sc[2].status);
  EXPECT_EQ(a.qp->state(), QpState::kErr);
  // An RNR condition is not an error of the responder.
  EXPECT_EQ(b.qp->state(), QpState::kRts);
  EXPECT_EQ(qp_counters_of(*a.dev, a.qp->qpn()).rnr_nak_received, 1u);
  // Posting in ERR is accepted and completes flushed, signaled or not.
  ASSERT_EQ(0, post(a, send_wr(4, 0), a.sge(0, 10)));
  sc = wait_for(a, 1, 2s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].wr_id, 4u);
  EXPECT_EQ(sc[0].status, WcStatus::kWrFlushErr);
  EXPECT_TRUE(drain(a, 20ms).empty());
}

// rnr_retry = 2: the first attempt and two retries, three RNR NAKs, each after the RNR timer
// the responder asked for (min_rnr_timer 18 = 5.12 ms).
TEST_F(RnrTest, RnrRetryCountAndTimerAreHonoured) {
  PairOptions o = calm();
  o.rnr_retry = 2;
  make(o);
  QpAttr attr;
  attr.min_rnr_timer = 18;
  const char* why = "";
  ASSERT_EQ(0, b.dev->modify_qp(b.qp, attr, transport::kAttrMinRnrTimer, &why)) << why;  // RTS -> RTS
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(0, post(a, send_wr(1), a.sge(0, 10)));
  auto sc = wait_for(a, 1, 5s);
  auto elapsed = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRnrRetryExcErr) << name(sc[0].status);
  EXPECT_EQ(qp_counters_of(*a.dev, a.qp->qpn()).rnr_nak_received, 3u);
  EXPECT_EQ(qp_counters_of(*b.dev, b.qp->qpn()).rnr_nak_sent, 3u);
  EXPECT_GE(elapsed, 2 * 5120us) << "RNR retries must wait out the RNR NAK timer";
}

// ---- transport retries --------------------------------------------------------------------

class RetryTest : public PairTest {};

void expect_retry_exceeded_then_flush(PairTest& t, Side& a, uint32_t retry_cnt) {
  (void)t;
  Sge sg = a.sge(0, 64);
  SendWr wrs[3] = {send_wr(1), write_wr(2, 0x1000, 0x100), send_wr(3, 0)};
  for (auto& w : wrs) {
    w.sg_list = &sg;
    w.num_sge = 1;
  }
  ASSERT_EQ(0, a.dev->post_send(a.qp, wrs, 3, nullptr));
  auto sc = wait_for(a, 3, 5s);
  ASSERT_EQ(sc.size(), 3u);
  EXPECT_EQ(sc[0].wr_id, 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRetryExcErr) << name(sc[0].status);
  EXPECT_EQ(sc[1].wr_id, 2u);
  EXPECT_EQ(sc[1].status, WcStatus::kWrFlushErr) << name(sc[1].status);
  EXPECT_EQ(sc[2].wr_id, 3u) << "flushed WRs complete even when unsignaled";
  EXPECT_EQ(sc[2].status, WcStatus::kWrFlushErr) << name(sc[2].status);
  EXPECT_EQ(a.qp->state(), QpState::kErr);
  auto c = qp_counters_of(*a.dev, a.qp->qpn());
  EXPECT_EQ(c.timeouts, retry_cnt + 1u) << "retry_cnt retries, then the error";
  EXPECT_GT(c.retransmits, 0u);
  // Posting in ERR still works: the WRs complete flushed at once.
  ASSERT_EQ(0, a.dev->post_send(a.qp, wrs, 2, nullptr));
  sc = wait_for(a, 2, 2s);
  ASSERT_EQ(sc.size(), 2u);
  EXPECT_EQ(sc[0].status, WcStatus::kWrFlushErr);
  EXPECT_EQ(sc[1].status, WcStatus::kWrFlushErr);
  EXPECT_TRUE(drain(a, 10ms).empty());
}

TEST_F(RetryTest, PeerQpDestroyedRetryExceeded) {
  PairOptions o = fast();
  o.retry_cnt = 2;
  make(o);
  ASSERT_EQ(0, b.dev->destroy_qp(b.qp));
  b.qp = nullptr;
  expect_retry_exceeded_then_flush(*this, a, 2);
  EXPECT_GT(b.dev->counters().drop_unknown_qp, 0u);
}

TEST_F(RetryTest, NonexistentDestQpnRetryExceeded) {
  PairOptions o = fast();
  o.retry_cnt = 1;
  opt = o;
  setup_side(a, o, std::nullopt);
  setup_side(b, o, std::nullopt);
  // b's QPN + 7 is not a QP on b (QPNs are allocated consecutively from a random base).
  connect_qp(*a.dev, a.qp, *b.dev, b.qp->qpn() + 7, o);
  expect_retry_exceeded_then_flush(*this, a, 1);
  EXPECT_GT(b.dev->counters().drop_unknown_qp, 0u);
}

TEST_F(RetryTest, PostRecvInErrCompletesFlushed) {
  make(fast());
  QpAttr attr;
  attr.state = QpState::kErr;
  ASSERT_EQ(0, b.dev->modify_qp(b.qp, attr, transport::kAttrState));
  post_recv(b, 77, 0, 100);
  auto rc = wait_for(b, 1, 2s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].wr_id, 77u);
  EXPECT_EQ(rc[0].status, WcStatus::kWrFlushErr);
  EXPECT_EQ(rc[0].opcode, WcOpcode::kRecv);
}

// IBA 9.7.5.2.8 / ibv_modify_qp(3): retry_cnt is a plain count; only rnr_retry = 7 means
// "forever". With retry_cnt = 7 and a dead peer the WQE must fail after 7 retries.
// retry_cnt = 7 retries without limit, like rnr_retry = 7: the issue asks for it ("7 =
// infinite") and Linux rxe does the same; mlx5 stops after 7. retry_cnt = 6 stops after 6.
TEST_F(RetryTest, RetryCountSevenRetriesWithoutLimit) {
  PairOptions o = fast();
  o.retry_cnt = 7;
  make(o);
  ASSERT_EQ(0, b.dev->destroy_qp(b.qp));
  b.qp = nullptr;
  ASSERT_EQ(0, post(a, send_wr(1), a.sge(0, 64)));
  auto sc = wait_for(a, 1, 300ms);  // dozens of ~1 ms timeouts
  auto c = qp_counters_of(*a.dev, a.qp->qpn());
  EXPECT_TRUE(sc.empty()) << "retry_cnt 7 gave up with " << name(sc[0].status);
  EXPECT_GT(c.timeouts, 8u);
  EXPECT_EQ(a.qp->state(), QpState::kRts);
}

TEST_F(RetryTest, RetryCountSixGivesUpAfterSixRetries) {
  PairOptions o = fast();
  o.retry_cnt = 6;
  make(o);
  ASSERT_EQ(0, b.dev->destroy_qp(b.qp));
  b.qp = nullptr;
  ASSERT_EQ(0, post(a, send_wr(1), a.sge(0, 64)));
  auto sc = wait_for(a, 1, 2000ms);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRetryExcErr) << name(sc[0].status);
  EXPECT_EQ(qp_counters_of(*a.dev, a.qp->qpn()).timeouts, 7u);  // 6 retries, then the 7th timeout fails
}

// ---- remote access errors -----------------------------------------------------------------

enum class Op { kWrite, kRead, kFetchAdd, kCompSwap };
enum class Fault {
  kBadRkey,        // no such key
  kStaleRkey,      // the key of a deregistered region
  kOtherPdRkey,    // a region of another protection domain of the responder
  kOutOfBounds,    // range runs past the end of the region
  kBelowStart,     // range starts before the region
  kMrNoAccess,     // region lacks the remote access right
  kQpNoAccess,     // QP's remote access flags lack it
  kMisaligned,     // atomic not on an 8-byte boundary
};

struct AccessCase {
  const char* name;
  Op op;
  Fault fault;
  WcStatus expect;
};

void PrintTo(const AccessCase& c, std::ostream* os) { *os << c.name; }

class RemoteAccessTest : public PairTest, public ::testing::WithParamInterface<AccessCase> {};

TEST_P(RemoteAccessTest, RequesterGetsErrorResponderGoesToErr) {
  const AccessCase& c = GetParam();
  make(calm());
  // A receive at b, flushed when b's QP goes to ERR.
  post_recv(b, 500, 0, 64);
  fill(b.buf, 0, b.buf.size(), 3);
  std::vector<uint8_t> b_before = b.buf;
  fill(a.buf, 0, 8192, 4);
  std::vector<uint8_t> a_before = a.buf;

  uint64_t raddr = b.addr(8192);
  uint32_t rkey = b.mr->rkey;
  uint32_t len = c.op == Op::kWrite || c.op == Op::kRead ? 3000 : 8;
  int err = 0;
  std::vector<uint8_t> other(16384, 0);
  switch (c.fault) {
    case Fault::kBadRkey: rkey = b.mr->rkey + (1000u << 8); break;
    case Fault::kStaleRkey: {
      Mr* tmp = b.dev->reg_mr(b.pd, other.data(), other.size(), opt.access, &err);
      ASSERT_TRUE(tmp);
      rkey = tmp->rkey;
      raddr = reinterpret_cast<uint64_t>(other.data());
      ASSERT_EQ(0, b.dev->dereg_mr(tmp));
      break;
    }
    case Fault::kOtherPdRkey: {
      Pd* pd2 = b.dev->alloc_pd();
      Mr* mr2 = b.dev->reg_mr(pd2, other.data(), other.size(), opt.access, &err);
      ASSERT_TRUE(mr2);
      rkey = mr2->rkey;
      raddr = reinterpret_cast<uint64_t>(other.data());
      break;
    }
    case Fault::kOutOfBounds:  // a READ/WRITE running 1500 bytes past the end; an atomic just past it
      raddr = len > 8 ? b.addr(b.buf.size() - 1500) : b.addr(b.buf.size());
      break;
    case Fault::kBelowStart: raddr = b.addr(0) - 8; break;
    case Fault::kMrNoAccess: {
      uint32_t access = mem::kLocalWrite | mem::kRemoteAccess;
      access &= c.op == Op::kWrite ? ~uint32_t(mem::kRemoteWrite)
                : c.op == Op::kRead ? ~uint32_t(mem::kRemoteRead)
                                    : ~uint32_t(mem::kRemoteAtomic);
      Mr* mr2 = b.dev->reg_mr(b.pd, other.data(), other.size(), access, &err);
      ASSERT_TRUE(mr2);
      rkey = mr2->rkey;
      raddr = reinterpret_cast<uint64_t>(other.data());
      break;
    }
    case Fault::kQpNoAccess: {
      QpAttr attr;
      attr.access = mem::kRemoteAccess &
                    (c.op == Op::kWrite ? ~uint32_t(mem::kRemoteWrite)
                     : c.op == Op::kRead ? ~uint32_t(mem::kRemoteRead)
                                         : ~uint32_t(mem::kRemoteAtomic));
      const char* why = "";
      ASSERT_EQ(0, b.dev->modify_qp(b.qp, attr, transport::kAttrAccessFlags, &why)) << why;  // RTS -> RTS
      break;
    }
    case Fault::kMisaligned: raddr = b.addr(8192 + 4); break;
  }
  std::vector<uint8_t> other_before = other;

  SendWr wr;
  switch (c.op) {
    case Op::kWrite: wr = write_wr(1, raddr, rkey); break;
    case Op::kRead: wr = read_wr(1, raddr, rkey); break;
    case Op::kFetchAdd: wr = fadd_wr(1, raddr, rkey, 1); break;
    case Op::kCompSwap:
      wr = fadd_wr(1, raddr, rkey, 0);
      wr.opcode = WrOpcode::kCompSwap;
      wr.atomic.swap = 5;
      break;
  }
  ASSERT_EQ(0, post(a, wr, a.sge(0, len)));
  ASSERT_EQ(0, post(a, send_wr(2), a.sge(0, 10)));
  auto sc = wait_for(a, 2, 5s);
  ASSERT_EQ(sc.size(), 2u);
  EXPECT_EQ(sc[0].wr_id, 1u);
  EXPECT_EQ(sc[0].status, c.expect) << name(sc[0].status);
  EXPECT_EQ(sc[1].wr_id, 2u);
  EXPECT_EQ(sc[1].status, WcStatus::kWrFlushErr) << name(sc[1].status);
  EXPECT_EQ(a.qp->state(), QpState::kErr);
  // The responder: a class C error moves its QP to ERR, and its receive queue is flushed.
  EXPECT_TRUE(wait_state(b.qp, QpState::kErr)) << name(b.qp->state());
  auto rc = wait_for(b, 1, 2s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].wr_id, 500u);
  EXPECT_EQ(rc[0].status, WcStatus::kWrFlushErr);
  auto bc = qp_counters_of(*b.dev, b.qp->qpn());
  EXPECT_EQ(bc.nak_access_sent, c.expect == WcStatus::kRemAccessErr ? 1u : 0u);
  EXPECT_EQ(bc.nak_inv_req_sent, c.expect == WcStatus::kRemInvReqErr ? 1u : 0u);
  EXPECT_EQ(qp_counters_of(*a.dev, a.qp->qpn()).nak_error_received, 1u);
  // Nothing was touched on either side.
  EXPECT_TRUE(b.buf == b_before) << "responder memory modified by a refused request";
  EXPECT_TRUE(other == other_before);
  EXPECT_TRUE(a.buf == a_before) << "requester memory modified by a failed READ/atomic";
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RemoteAccessTest,
    ::testing::Values(AccessCase{"WriteBadRkey", Op::kWrite, Fault::kBadRkey, WcStatus::kRemAccessErr},
                      AccessCase{"ReadBadRkey", Op::kRead, Fault::kBadRkey, WcStatus::kRemAccessErr},
                      AccessCase{"FetchAddBadRkey", Op::kFetchAdd, Fault::kBadRkey, WcStatus::kRemAccessErr},
                      AccessCase{"CompSwapBadRkey", Op::kCompSwap, Fault::kBadRkey, WcStatus::kRemAccessErr},
                      AccessCase{"WriteStaleRkey", Op::kWrite, Fault::kStaleRkey, WcStatus::kRemAccessErr},
                      AccessCase{"ReadOtherPd", Op::kRead, Fault::kOtherPdRkey, WcStatus::kRemAccessErr},
                      AccessCase{"WriteOtherPd", Op::kWrite, Fault::kOtherPdRkey, WcStatus::kRemAccessErr},
                      AccessCase{"WriteOutOfBounds", Op::kWrite, Fault::kOutOfBounds, WcStatus::kRemAccessErr},
                      AccessCase{"ReadOutOfBounds", Op::kRead, Fault::kOutOfBounds, WcStatus::kRemAccessErr},
                      AccessCase{"AtomicOutOfBounds", Op::kFetchAdd, Fault::kOutOfBounds, WcStatus::kRemAccessErr},
                      AccessCase{"WriteBelowStart", Op::kWrite, Fault::kBelowStart, WcStatus::kRemAccessErr},
                      AccessCase{"WriteMrNoRemoteWrite", Op::kWrite, Fault::kMrNoAccess, WcStatus::kRemAccessErr},
                      AccessCase{"ReadMrNoRemoteRead", Op::kRead, Fault::kMrNoAccess, WcStatus::kRemAccessErr},
                      AccessCase{"AtomicMrNoRemoteAtomic", Op::kFetchAdd, Fault::kMrNoAccess, WcStatus::kRemAccessErr},
                      AccessCase{"WriteQpNoRemoteWrite", Op::kWrite, Fault::kQpNoAccess, WcStatus::kRemAccessErr},
                      AccessCase{"ReadQpNoRemoteRead", Op::kRead, Fault::kQpNoAccess, WcStatus::kRemAccessErr},
                      AccessCase{"AtomicQpNoRemoteAtomic", Op::kCompSwap, Fault::kQpNoAccess, WcStatus::kRemAccessErr},
                      AccessCase{"FetchAddMisaligned", Op::kFetchAdd, Fault::kMisaligned, WcStatus::kRemInvReqErr},
                      AccessCase{"CompSwapMisaligned", Op::kCompSwap, Fault::kMisaligned, WcStatus::kRemInvReqErr}),
    [](const auto& info) { return std::string(info.param.name); });

// IBA C9-88: a zero-length RDMA WRITE or READ needs no valid R_Key and touches nothing.
TEST_F(RemoteAccessTest, ZeroLengthRdmaNeedsNoValidRkey) {
  make(calm());
  SendWr w = write_wr(1, 0xdead0000, 0x12345);
  SendWr r = read_wr(2, 0xdead0000, 0x12345);
  ASSERT_EQ(0, post(a, w, a.sge(0, 0)));
  ASSERT_EQ(0, post(a, r, a.sge(0, 0)));
  auto sc = wait_for(a, 2, 5s);
  ASSERT_EQ(sc.size(), 2u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  EXPECT_EQ(sc[1].status, WcStatus::kSuccess) << name(sc[1].status);
  EXPECT_EQ(sc[1].byte_len, 0u);
  EXPECT_EQ(b.qp->state(), QpState::kRts);
}

// ---- local errors -------------------------------------------------------------------------

class LocalErrorTest : public PairTest {};

// One SEND whose gather fails: kLocProtErr on it, the WR behind it flushed, nothing reaches b.
void expect_local_send_failure(PairTest& t, Side& a, Side& b, const Sge* sgl, uint32_t nsge, WcStatus expect) {
  (void)t;
  Sge ok = a.sge(0, 8);
  SendWr wrs[2] = {send_wr(1), send_wr(2)};
  wrs[0].sg_list = sgl;
  wrs[0].num_sge = nsge;
  wrs[1].sg_list = &ok;
  wrs[1].num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(a.qp, wrs, 2, nullptr));
  auto sc = wait_for(a, 2, 5s);
  ASSERT_EQ(sc.size(), 2u);
  EXPECT_EQ(sc[0].wr_id, 1u);
  EXPECT_EQ(sc[0].status, expect) << name(sc[0].status);
  EXPECT_EQ(sc[1].wr_id, 2u);
  EXPECT_EQ(sc[1].status, WcStatus::kWrFlushErr) << name(sc[1].status);
  EXPECT_EQ(a.qp->state(), QpState::kErr);
  EXPECT_EQ(b.qp->state(), QpState::kRts) << "a local error is not the responder's";
}

TEST_F(LocalErrorTest, SendWithBadLkey) {
  make(calm());
  post_recv(b, 1, 0, 4096);
  Sge sg{a.addr(0), 100, a.mr->lkey + (77u << 8)};
  expect_local_send_failure(*this, a, b, &sg, 1, WcStatus::kLocProtErr);
  EXPECT_TRUE(drain(b, 20ms).empty()) << "the receive at b must not be consumed";
}

TEST_F(LocalErrorTest, SendFromOutsideTheRegion) {
  make(calm());
  post_recv(b, 1, 0, 4096);
  Sge sg = a.sge(a.buf.size() - 50, 100);  // runs 50 bytes past the end of the region
  expect_local_send_failure(*this, a, b, &sg, 1, WcStatus::kLocProtErr);
  EXPECT_TRUE(drain(b, 20ms).empty());
}

TEST_F(LocalErrorTest, SendWithLkeyOfAnotherPd) {
  make(calm());
  Pd* pd2 = a.dev->alloc_pd();
  std::vector<uint8_t> other(4096, 7);
  int err = 0;
  Mr* mr2 = a.dev->reg_mr(pd2, other.data(), other.size(), mem::kLocalWrite, &err);
  ASSERT_TRUE(mr2);
  Sge sg{reinterpret_cast<uint64_t>(other.data()), 100, mr2->lkey};
  expect_local_send_failure(*this, a, b, &sg, 1, WcStatus::kLocProtErr);
}

TEST_F(LocalErrorTest, SendWithStaleLkey) {
  make(calm());
  std::vector<uint8_t> other(4096, 7);
  int err = 0;
  Mr* tmp = a.dev->reg_mr(a.pd, other.data(), other.size(), mem::kLocalWrite, &err);
  ASSERT_TRUE(tmp);
  Sge sg{reinterpret_cast<uint64_t>(other.data()), 100, tmp->lkey};
  ASSERT_EQ(0, a.dev->dereg_mr(tmp));
  expect_local_send_failure(*this, a, b, &sg, 1, WcStatus::kLocProtErr);
}

// The second SGE is bad and lies in the second packet: the error is still the SEND's.
TEST_F(LocalErrorTest, SecondSgeBadInLaterPacket) {
  make(calm());
  post_recv(b, 1, 0, 8192);
  Sge sgl[2] = {a.sge(0, 2000), Sge{a.addr(4096), 2000, 0}};
  expect_local_send_failure(*this, a, b, sgl, 2, WcStatus::kLocProtErr);
}

TEST_F(LocalErrorTest, WriteWithBadLkey) {
  make(calm());
  Sge sg{a.addr(0), 100, 0};
  SendWr wr = write_wr(1, b.addr(0), b.mr->rkey);
  wr.sg_list = &sg;
  wr.num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(a.qp, &wr, 1, nullptr));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kLocProtErr) << name(sc[0].status);
  EXPECT_EQ(a.qp->state(), QpState::kErr);
}

// The READ's data lands in a region the requester did not allow to be written locally.
TEST_F(LocalErrorTest, ReadIntoRegionWithoutLocalWrite) {
  make(calm());
  fill(b.buf, 0, 8192, 9);
  std::vector<uint8_t> ro(8192, 0xee);
  int err = 0;
  Mr* mr_ro = a.dev->reg_mr(a.pd, ro.data(), ro.size(), 0, &err);
  ASSERT_TRUE(mr_ro) << err;
  SendWr wr = read_wr(1, b.addr(0), b.mr->rkey);
  Sge sg{reinterpret_cast<uint64_t>(ro.data()), 3000, mr_ro->lkey};
  wr.sg_list = &sg;
  wr.num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(a.qp, &wr, 1, nullptr));
  ASSERT_EQ(0, post(a, send_wr(2), a.sge(0, 4)));
  auto sc = wait_for(a, 2, 5s);
  ASSERT_EQ(sc.size(), 2u);
  EXPECT_EQ(sc[0].status, WcStatus::kLocProtErr) << name(sc[0].status);
  EXPECT_EQ(sc[1].status, WcStatus::kWrFlushErr) << name(sc[1].status);
  EXPECT_EQ(std::count(ro.begin(), ro.end(), 0xee), 8192) << "read-only region was written";
  EXPECT_EQ(b.qp->state(), QpState::kRts);
}

TEST_F(LocalErrorTest, AtomicResultIntoRegionWithoutLocalWrite) {
  make(calm());
  std::vector<uint8_t> ro(64, 0xee);
  int err = 0;
  Mr* mr_ro = a.dev->reg_mr(a.pd, ro.data(), ro.size(), 0, &err);
  ASSERT_TRUE(mr_ro) << err;
  SendWr wr = fadd_wr(1, b.addr(64), b.mr->rkey, 1);
  Sge sg{reinterpret_cast<uint64_t>(ro.data()), 8, mr_ro->lkey};
  wr.sg_list = &sg;
  wr.num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(a.qp, &wr, 1, nullptr));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kLocProtErr) << name(sc[0].status);
  EXPECT_EQ(std::count(ro.begin(), ro.end(), 0xee), 64);
}

TEST_F(LocalErrorTest, AtomicWithWrongLengthIsLocalLengthError) {
  make(calm());
  SendWr wr = fadd_wr(1, b.addr(64), b.mr->rkey, 1);
  ASSERT_EQ(0, post(a, wr, a.sge(0, 4)));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kLocLenErr) << name(sc[0].status);
  uint64_t v;
  std::memcpy(&v, b.buf.data() + 64, 8);
  EXPECT_EQ(v, 0u) << "the atomic must not have executed";
}

// SEND larger than the receive buffer: the receiver's WQE completes kLocLenErr, the sender gets
// kRemInvReqErr (NAK invalid request), the receiver's QP goes to ERR and flushes the rest.
TEST_F(LocalErrorTest, SendLargerThanReceiveBuffer) {
  make(calm());
  post_recv(b, 10, 0, 1000);
  post_recv(b, 11, 4096, 8192);
  fill(a.buf, 0, 3000, 5);
  ASSERT_EQ(0, post(a, send_wr(1), a.sge(0, 3000)));  // 3 packets at MTU 1024
  ASSERT_EQ(0, post(a, send_wr(2), a.sge(0, 10)));
  auto sc = wait_for(a, 2, 5s);
  ASSERT_EQ(sc.size(), 2u);
  EXPECT_EQ(sc[0].status, WcStatus::kRemInvReqErr) << name(sc[0].status);
  EXPECT_EQ(sc[1].status, WcStatus::kWrFlushErr) << name(sc[1].status);
  auto rc = wait_for(b, 2, 5s);
  ASSERT_EQ(rc.size(), 2u);
  EXPECT_EQ(rc[0].wr_id, 10u);
  EXPECT_EQ(rc[0].status, WcStatus::kLocLenErr) << name(rc[0].status);
  EXPECT_EQ(rc[1].wr_id, 11u);
  EXPECT_EQ(rc[1].status, WcStatus::kWrFlushErr) << name(rc[1].status);
  EXPECT_TRUE(wait_state(b.qp, QpState::kErr));
  EXPECT_EQ(a.qp->state(), QpState::kErr);
  EXPECT_EQ(qp_counters_of(*b.dev, b.qp->qpn()).nak_inv_req_sent, 1u);
}

// A request that the responder refused (class C error: its QP goes to ERR) must be the last one
// it executes. Here every packet of a arrives twice, and b's engine runs only when b polls, so
// both copies of the too-long SEND are in the same receive batch: the copy must not take and
// fail a second receive WQE (that one is flushed), and only one NAK goes out.
TEST_F(LocalErrorTest, DuplicateOfARefusedRequestIsNotExecutedAgain) {
  PairOptions o = calm();
  o.progress_thread = false;
  link::FaultConfig dup;
  dup.seed = 5;
  dup.duplicate = 1.0;
  o.fault_a = dup;
  make(o);
  post_recv(b, 10, 0, 100);
  post_recv(b, 11, 4096, 100);
  ASSERT_EQ(0, post(a, send_wr(1), a.sge(0, 500)));  // one packet, longer than the receive
  std::this_thread::sleep_for(20ms);                  // both copies wait in b's socket
  auto rc = wait_for(b, 2, 2s);
  ASSERT_EQ(rc.size(), 2u);
  EXPECT_EQ(rc[0].wr_id, 10u);
  EXPECT_EQ(rc[0].status, WcStatus::kLocLenErr) << name(rc[0].status);
  EXPECT_EQ(rc[1].wr_id, 11u);
  EXPECT_EQ(rc[1].status, WcStatus::kWrFlushErr)
      << name(rc[1].status)
      << ": BUG: responder.cc rc_receive() keeps executing packets of a QP whose fatal_nak() set "
         "responder_error; the QP only goes to ERR in Engine::run_send() after the whole receive batch";
  EXPECT_EQ(qp_counters_of(*b.dev, b.qp->qpn()).nak_inv_req_sent, 1u);
  auto sc = wait_for(a, 1, 2s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRemInvReqErr) << name(sc[0].status);
}

// The receive WQE names memory the receiver cannot write: receiver kLocProtErr, sender
// kRemOpErr (NAK remote operational error), as mlx5 reports it.
TEST_F(LocalErrorTest, ReceiveIntoBadLkey) {
  make(calm());
  Sge bad{b.addr(0), 1000, b.mr->lkey + (55u << 8)};
  RecvWr rw{10, &bad, 1};
  ASSERT_EQ(0, b.dev->post_recv(b.qp, &rw, 1, nullptr));
  ASSERT_EQ(0, post(a, send_wr(1), a.sge(0, 100)));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRemOpErr) << name(sc[0].status);
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].wr_id, 10u);
  EXPECT_EQ(rc[0].status, WcStatus::kLocProtErr) << name(rc[0].status);
  EXPECT_TRUE(wait_state(b.qp, QpState::kErr));
  EXPECT_EQ(qp_counters_of(*b.dev, b.qp->qpn()).nak_op_sent, 1u);
}

}  // namespace
}  // namespace softrdma::test
