// The QP state machine (IBA 10.3, Table 94) and object lifetime rules (EBUSY while in use).
#include "common/pair.h"

#include <thread>

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;
using namespace transport;  // kAttr* masks

// Attributes and masks of each step of the legal path, per QP type.
QpAttr init_attr() {
  QpAttr a;
  a.state = QpState::kInit;
  a.access = mem::kRemoteAccess;
  a.qkey = 0x11111111;
  return a;
}
uint32_t init_mask(QpType t) {
  return kAttrState | kAttrPkeyIndex | kAttrPort | (t == QpType::kUd ? kAttrQkey : kAttrAccessFlags);
}
QpAttr rtr_attr(const Side& peer, uint32_t dest_qpn) {
  QpAttr a;
  a.state = QpState::kRtr;
  a.path_mtu = 3;
  a.dest_qpn = dest_qpn;
  a.rq_psn = 0;
  a.av.dgid = peer.dev->gid();
  a.max_dest_rd_atomic = 4;
  a.min_rnr_timer = 1;
  return a;
}
uint32_t rtr_mask(QpType t) {
  if (t == QpType::kUd) return kAttrState;
  uint32_t m = kAttrState | kAttrAv | kAttrPathMtu | kAttrDestQpn | kAttrRqPsn;
  return t == QpType::kRc ? m | kAttrMaxDestRdAtomic | kAttrMinRnrTimer : m;
}
QpAttr rts_attr() {
  QpAttr a;
  a.state = QpState::kRts;
  a.sq_psn = 0;
  a.timeout = 8;
  a.retry_cnt = 7;
  a.rnr_retry = 7;
  a.max_rd_atomic = 4;
  return a;
}
uint32_t rts_mask(QpType t) {
  uint32_t m = kAttrState | kAttrSqPsn;
  return t == QpType::kRc ? m | kAttrTimeout | kAttrRetryCnt | kAttrRnrRetry | kAttrMaxQpRdAtomic : m;
}

// ---- the state machine --------------------------------------------------------------------

class QpStateTest : public PairTest {
 protected:
  // modify must fail with EINVAL and leave the state as it was.
  void refused(QueuePair* qp, const QpAttr& at, uint32_t mask, const char* what) {
    QpState before = qp->state();
    const char* why = "";
    EXPECT_EQ(EINVAL, a.dev->modify_qp(qp, at, mask, &why)) << what;
    EXPECT_EQ(qp->state(), before) << what;
  }
};

TEST_F(QpStateTest, LegalPathAndQueryReportsWhatWasSet) {
  make(fast());
  QueuePair* qp = add_qp(a, QpType::kRc, 100);
  ASSERT_TRUE(qp);
  QpAttr q;
  QpInitAttr qi;
  ASSERT_EQ(0, a.dev->query_qp(qp, &q, &qi));
  EXPECT_EQ(q.state, QpState::kReset);
  EXPECT_EQ(qi.type, QpType::kRc);
  EXPECT_EQ(qi.send_cq, a.cq);
  EXPECT_EQ(qi.recv_cq, a.cq);
  EXPECT_EQ(q.cap.max_send_wr, 100u);
  EXPECT_EQ(q.cap.max_recv_wr, 100u);
  EXPECT_EQ(q.cap.max_send_sge, 4u);
  EXPECT_EQ(q.cap.max_inline_data, 64u);

  const char* why = "";
  QpAttr at = init_attr();
  at.access = mem::kRemoteRead | mem::kRemoteWrite;
  ASSERT_EQ(0, a.dev->modify_qp(qp, at, init_mask(QpType::kRc), &why)) << why;
  ASSERT_EQ(0, a.dev->query_qp(qp, &q, nullptr));
  EXPECT_EQ(q.state, QpState::kInit);
  EXPECT_EQ(q.access, uint32_t(mem::kRemoteRead | mem::kRemoteWrite));
  // INIT -> INIT may change the access flags.
  at.access = mem::kRemoteAccess;
  ASSERT_EQ(0, a.dev->modify_qp(qp, at, kAttrState | kAttrAccessFlags, &why)) << why;
  EXPECT_EQ(qp->state(), QpState::kInit);

  at = rtr_attr(b, 0x123456);
  at.rq_psn = 0x654321;
  at.max_dest_rd_atomic = 3;
  at.min_rnr_timer = 12;
  at.path_mtu = 4;
  ASSERT_EQ(0, a.dev->modify_qp(qp, at, rtr_mask(QpType::kRc), &why)) << why;
  ASSERT_EQ(0, a.dev->query_qp(qp, &q, nullptr));
  EXPECT_EQ(q.state, QpState::kRtr);
  EXPECT_EQ(q.dest_qpn, 0x123456u);
  EXPECT_EQ(q.rq_psn, 0x654321u);
  EXPECT_EQ(q.max_dest_rd_atomic, 3);
  EXPECT_EQ(q.min_rnr_timer, 12);
  EXPECT_EQ(q.path_mtu, 4);
  EXPECT_TRUE(q.av.dgid == b.dev->gid());

  at = rts_attr();
  at.sq_psn = 0xabcdef;
  at.timeout = 17;
  at.retry_cnt = 5;
  at.rnr_retry = 3;
  at.max_rd_atomic = 2;
  ASSERT_EQ(0, a.dev->modify_qp(qp, at, rts_mask(QpType::kRc), &why)) << why;
  ASSERT_EQ(0, a.dev->query_qp(qp, &q, nullptr));
  EXPECT_EQ(q.state, QpState::kRts);
  EXPECT_EQ(q.cur_state, QpState::kRts);
  EXPECT_EQ(q.sq_psn, 0xabcdefu);
  EXPECT_EQ(q.timeout, 17);
  EXPECT_EQ(q.retry_cnt, 5);
  EXPECT_EQ(q.rnr_retry, 3);
  EXPECT_EQ(q.max_rd_atomic, 2);
  // RTS -> RTS may change min_rnr_timer and the access flags; cur_state must match if named.
  at.min_rnr_timer = 20;
  at.cur_state = QpState::kRts;
  ASSERT_EQ(0, a.dev->modify_qp(qp, at, kAttrMinRnrTimer | kAttrCurState, &why)) << why;
  ASSERT_EQ(0, a.dev->query_qp(qp, &q, nullptr));
  EXPECT_EQ(q.min_rnr_timer, 20);
}

TEST_F(QpStateTest, IllegalTransitionsAreEinval) {
  make(fast());
  QueuePair* qp = add_qp(a, QpType::kRc);
  ASSERT_TRUE(qp);
  const char* why = "";
  QpAttr rtr = rtr_attr(b, b.qp->qpn());
  QpAttr rts = rts_attr();
  QpAttr ini = init_attr();
  QpAttr sqd;
  sqd.state = QpState::kSqd;
  refused(qp, rtr, rtr_mask(QpType::kRc), "RESET -> RTR");
  refused(qp, rts, rts_mask(QpType::kRc), "RESET -> RTS");
  refused(qp, sqd, kAttrState, "RESET -> SQD");
  ASSERT_EQ(0, a.dev->modify_qp(qp, ini, init_mask(QpType::kRc), &why)) << why;
  refused(qp, rts, rts_mask(QpType::kRc), "INIT -> RTS");
  refused(qp, sqd, kAttrState, "INIT -> SQD");
  ASSERT_EQ(0, a.dev->modify_qp(qp, rtr, rtr_mask(QpType::kRc), &why)) << why;
  refused(qp, ini, init_mask(QpType::kRc), "RTR -> INIT");
  refused(qp, rtr, rtr_mask(QpType::kRc), "RTR -> RTR with RTR's attributes");
  ASSERT_EQ(0, a.dev->modify_qp(qp, rts, rts_mask(QpType::kRc), &why)) << why;
  refused(qp, rtr, rtr_mask(QpType::kRc), "RTS -> RTR");
  refused(qp, ini, init_mask(QpType::kRc), "RTS -> INIT");
  QpAttr err;
  err.state = QpState::kErr;
  ASSERT_EQ(0, a.dev->modify_qp(qp, err, kAttrState, &why)) << why;
  refused(qp, rts, rts_mask(QpType::kRc), "ERR -> RTS");
  refused(qp, ini, init_mask(QpType::kRc), "ERR -> INIT");
  refused(qp, rtr, rtr_mask(QpType::kRc), "ERR -> RTR");
}

TEST_F(QpStateTest, MissingRequiredAttributesAreEinval) {
  make(fast());
  for (QpType t : {QpType::kRc, QpType::kUc, QpType::kUd}) {
    QueuePair* qp = add_qp(a, t);
    ASSERT_TRUE(qp);
    QpAttr ini = init_attr();
    uint32_t im = init_mask(t);
    refused(qp, ini, im & ~kAttrPort, "RESET -> INIT without port");
    refused(qp, ini, im & ~kAttrPkeyIndex, "RESET -> INIT without pkey index");
    refused(qp, ini, im & ~(t == QpType::kUd ? kAttrQkey : kAttrAccessFlags), "RESET -> INIT without qkey/access");
    const char* why = "";
    ASSERT_EQ(0, a.dev->modify_qp(qp, ini, im, &why)) << why;
    QpAttr rtr = rtr_attr(b, b.qp->qpn());
    uint32_t rm = rtr_mask(t);
    if (t != QpType::kUd) {
      refused(qp, rtr, rm & ~kAttrAv, "INIT -> RTR without AV");
      refused(qp, rtr, rm & ~kAttrPathMtu, "INIT -> RTR without path MTU");
      refused(qp, rtr, rm & ~kAttrDestQpn, "INIT -> RTR without dest QPN");
      refused(qp, rtr, rm & ~kAttrRqPsn, "INIT -> RTR without rq_psn");
    }
    if (t == QpType::kRc) {
      refused(qp, rtr, rm & ~kAttrMaxDestRdAtomic, "INIT -> RTR without max_dest_rd_atomic");
      refused(qp, rtr, rm & ~kAttrMinRnrTimer, "INIT -> RTR without min_rnr_timer");
    }
    ASSERT_EQ(0, a.dev->modify_qp(qp, rtr, rm, &why)) << why;
    QpAttr rts = rts_attr();
    uint32_t sm = rts_mask(t);
    refused(qp, rts, sm & ~kAttrSqPsn, "RTR -> RTS without sq_psn");
    if (t == QpType::kRc) {
      refused(qp, rts, sm & ~kAttrTimeout, "RTR -> RTS without timeout");
      refused(qp, rts, sm & ~kAttrRetryCnt, "RTR -> RTS without retry_cnt");
      refused(qp, rts, sm & ~kAttrRnrRetry, "RTR -> RTS without rnr_retry");
      refused(qp, rts, sm & ~kAttrMaxQpRdAtomic, "RTR -> RTS without max_rd_atomic");
    }
    ASSERT_EQ(0, a.dev->modify_qp(qp, rts, sm, &why)) << why;
    EXPECT_EQ(qp->state(), QpState::kRts);
  }
}

TEST_F(QpStateTest, AttributesNotAllowedInATransitionAreEinval) {
  make(fast());
  QueuePair* rc = add_qp(a, QpType::kRc);
  QueuePair* uc = add_qp(a, QpType::kUc);
  QueuePair* ud = add_qp(a, QpType::kUd);
  ASSERT_TRUE(rc && uc && ud);
  QpAttr ini = init_attr();
  refused(rc, ini, init_mask(QpType::kRc) | kAttrSqPsn, "RC RESET -> INIT with sq_psn");
  refused(rc, ini, init_mask(QpType::kRc) | kAttrQkey, "RC RESET -> INIT with qkey");
  refused(ud, ini, init_mask(QpType::kUd) | kAttrAccessFlags, "UD RESET -> INIT with access flags");
  refused(rc, ini, kAttrState | kAttrAccessFlags, "RESET -> RESET/ERR take no attributes");
  QpAttr to_err;
  to_err.state = QpState::kErr;
  refused(rc, to_err, kAttrState | kAttrAccessFlags, "-> ERR with access flags");
  QpAttr to_reset;
  to_reset.state = QpState::kReset;
  refused(rc, to_reset, kAttrState | kAttrQkey, "-> RESET with qkey");
  const char* why = "";
  ASSERT_EQ(0, a.dev->modify_qp(rc, ini, init_mask(QpType::kRc), &why)) << why;
  ASSERT_EQ(0, a.dev->modify_qp(uc, ini, init_mask(QpType::kUc), &why)) << why;
  QpAttr rtr = rtr_attr(b, b.qp->qpn());
  refused(rc, rtr, rtr_mask(QpType::kRc) | kAttrSqPsn, "RC INIT -> RTR with sq_psn");
  refused(rc, rtr, rtr_mask(QpType::kRc) | kAttrTimeout, "RC INIT -> RTR with timeout");
  refused(uc, rtr, rtr_mask(QpType::kUc) | kAttrMaxDestRdAtomic, "UC INIT -> RTR with max_dest_rd_atomic");
  refused(uc, rtr, rtr_mask(QpType::kUc) | kAttrMinRnrTimer, "UC INIT -> RTR with min_rnr_timer");
  ASSERT_EQ(0, a.dev->modify_qp(rc, rtr, rtr_mask(QpType::kRc), &why)) << why;
  ASSERT_EQ(0, a.dev->modify_qp(uc, rtr, rtr_mask(QpType::kUc), &why)) << why;
  QpAttr rts = rts_attr();
  refused(uc, rts, rts_mask(QpType::kUc) | kAttrTimeout, "UC RTR -> RTS with timeout");
  refused(uc, rts, rts_mask(QpType::kUc) | kAttrRetryCnt, "UC RTR -> RTS with retry_cnt");
  refused(rc, rts, rts_mask(QpType::kRc) | kAttrDestQpn, "RC RTR -> RTS with dest QPN");
  ASSERT_EQ(0, a.dev->modify_qp(rc, rts, rts_mask(QpType::kRc), &why)) << why;
  QpAttr same;
  same.state = QpState::kRts;
  same.timeout = 3;
  refused(rc, same, kAttrState | kAttrTimeout, "RC RTS -> RTS with timeout");
  refused(rc, same, kAttrState | kAttrSqPsn, "RC RTS -> RTS with sq_psn");
}

TEST_F(QpStateTest, OutOfRangeValuesAreEinval) {
  make(fast());
  QueuePair* qp = add_qp(a, QpType::kRc);
  ASSERT_TRUE(qp);
  QpAttr ini = init_attr();
  QpAttr bad = ini;
  bad.port_num = 2;
  refused(qp, bad, init_mask(QpType::kRc), "port 2");
  bad = ini;
  bad.pkey_index = 1;
  refused(qp, bad, init_mask(QpType::kRc), "pkey index 1");
  bad = ini;
  bad.cur_state = QpState::kInit;
  refused(qp, bad, init_mask(QpType::kRc) | kAttrCurState, "cur_state does not match");
  const char* why = "";
  ASSERT_EQ(0, a.dev->modify_qp(qp, ini, init_mask(QpType::kRc), &why)) << why;
  QpAttr rtr = rtr_attr(b, b.qp->qpn());
  for (uint8_t mtu : {0, 6}) {
    bad = rtr;
    bad.path_mtu = mtu;
    refused(qp, bad, rtr_mask(QpType::kRc), "path MTU enum out of range");
  }
  bad = rtr;
  bad.dest_qpn = 1u << 24;
  refused(qp, bad, rtr_mask(QpType::kRc), "dest QPN above 24 bits");
  bad = rtr;
  bad.rq_psn = 1u << 24;
  refused(qp, bad, rtr_mask(QpType::kRc), "rq_psn above 24 bits");
  bad = rtr;
  bad.min_rnr_timer = 32;
  refused(qp, bad, rtr_mask(QpType::kRc), "min_rnr_timer 32");
  bad = rtr;
  bad.max_dest_rd_atomic = 17;
  refused(qp, bad, rtr_mask(QpType::kRc), "max_dest_rd_atomic above the device limit");
  bad = rtr;
  bad.av.dgid = *wire::IpAddr::parse("::1");
  refused(qp, bad, rtr_mask(QpType::kRc), "IPv6 destination on an IPv4 port");
  ASSERT_EQ(0, a.dev->modify_qp(qp, rtr, rtr_mask(QpType::kRc), &why)) << why;
  QpAttr rts = rts_attr();
  bad = rts;
  bad.retry_cnt = 8;
  refused(qp, bad, rts_mask(QpType::kRc), "retry_cnt 8");
  bad = rts;
  bad.rnr_retry = 8;
  refused(qp, bad, rts_mask(QpType::kRc), "rnr_retry 8");
  bad = rts;
  bad.timeout = 32;
  refused(qp, bad, rts_mask(QpType::kRc), "timeout 32");
  bad = rts;
  bad.sq_psn = 1u << 24;
  refused(qp, bad, rts_mask(QpType::kRc), "sq_psn above 24 bits");
  bad = rts;
  bad.max_rd_atomic = 17;
  refused(qp, bad, rts_mask(QpType::kRc), "max_rd_atomic above the device limit");
  ASSERT_EQ(0, a.dev->modify_qp(qp, rts, rts_mask(QpType::kRc), &why)) << why;
}

TEST_F(QpStateTest, PathMtuAbovePortMtuIsEinval) {
  DeviceConfig cfg;
  cfg.mtu = 1024;
  std::string err;
  auto dev = Device::open(cfg, &err);
  ASSERT_TRUE(dev) << err;
  EXPECT_EQ(dev->port_attr().active_mtu, 3);
  Pd* pd = dev->alloc_pd();
  int e = 0;
  Cq* cq = dev->create_cq(16, nullptr, nullptr, &e);
  ASSERT_TRUE(cq);
  QpInitAttr init;
  init.send_cq = init.recv_cq = cq;
  init.cap = {4, 4, 1, 1, 0};
  QueuePair* qp = dev->create_qp(pd, init, &e);
  ASSERT_TRUE(qp);
  const char* why = "";
  ASSERT_EQ(0, dev->modify_qp(qp, init_attr(), init_mask(QpType::kRc), &why)) << why;
  QpAttr rtr;
  rtr.state = QpState::kRtr;
  rtr.dest_qpn = 0x100;
  rtr.av.dgid = dev->gid();
  rtr.max_dest_rd_atomic = 1;
  rtr.path_mtu = 4;  // 2048 > 1024
  EXPECT_EQ(EINVAL, dev->modify_qp(qp, rtr, rtr_mask(QpType::kRc), &why));
  EXPECT_EQ(qp->state(), QpState::kInit);
  rtr.path_mtu = 3;
  EXPECT_EQ(0, dev->modify_qp(qp, rtr, rtr_mask(QpType::kRc), &why)) << why;
}

TEST_F(QpStateTest, EveryStateGoesToErrAndErrToReset) {
  make(fast());
  const char* why = "";
  QpAttr err, reset;
  err.state = QpState::kErr;
  reset.state = QpState::kReset;
  for (int reached = 0; reached < 4; ++reached) {
    QueuePair* qp = add_qp(a, QpType::kRc);
    ASSERT_TRUE(qp);
    if (reached >= 1) {
      ASSERT_EQ(0, a.dev->modify_qp(qp, init_attr(), init_mask(QpType::kRc), &why)) << why;
    }
    if (reached >= 2) {
      ASSERT_EQ(0, a.dev->modify_qp(qp, rtr_attr(b, 1), rtr_mask(QpType::kRc), &why)) << why;
    }
    if (reached >= 3) {
      ASSERT_EQ(0, a.dev->modify_qp(qp, rts_attr(), rts_mask(QpType::kRc), &why)) << why;
    }
    EXPECT_EQ(0, a.dev->modify_qp(qp, err, kAttrState, &why)) << "from state " << reached << ": " << why;
    EXPECT_EQ(qp->state(), QpState::kErr);
    EXPECT_EQ(0, a.dev->modify_qp(qp, err, kAttrState, &why)) << "ERR -> ERR";
    EXPECT_EQ(0, a.dev->modify_qp(qp, reset, kAttrState, &why)) << why;
    EXPECT_EQ(qp->state(), QpState::kReset);
    // And the legal path again from RESET.
    EXPECT_EQ(0, a.dev->modify_qp(qp, init_attr(), init_mask(QpType::kRc), &why)) << why;
    EXPECT_EQ(0, a.dev->destroy_qp(qp));
  }
}

// Moving a QP to ERR flushes what is posted on both queues, each WR once, in order.
TEST_F(QpStateTest, ModifyToErrFlushesBothQueues) {
  make(fast());
  for (int i = 0; i < 3; ++i) post_recv(b, 10 + i, i * 100, 100);
  // Two SENDs from b to a, which has no receive: they wait in b's send queue (RNR).
  Sge sg = b.sge(0, 8);
  SendWr wrs[2];
  for (int i = 0; i < 2; ++i) {
    wrs[i].wr_id = 20 + i;
    wrs[i].flags = i == 0 ? uint32_t{kSignaled} : 0u;
    wrs[i].sg_list = &sg;
    wrs[i].num_sge = 1;
  }
  ASSERT_EQ(0, b.dev->post_send(b.qp, wrs, 2, nullptr));
  std::this_thread::sleep_for(5ms);
  QpAttr err;
  err.state = QpState::kErr;
  const char* why = "";
  ASSERT_EQ(0, b.dev->modify_qp(b.qp, err, kAttrState, &why)) << why;
  auto wc = wait_for(b, 5, 5s);
  ASSERT_EQ(wc.size(), 5u);
  std::vector<uint64_t> recv_ids, send_ids;
  for (auto& w : wc) {
    EXPECT_EQ(w.status, WcStatus::kWrFlushErr) << w.wr_id << " " << name(w.status);
    EXPECT_EQ(w.qp_num, b.qp->qpn());
    (w.wr_id < 20 ? recv_ids : send_ids).push_back(w.wr_id);
  }
  EXPECT_EQ(recv_ids, (std::vector<uint64_t>{10, 11, 12}));
  EXPECT_EQ(send_ids, (std::vector<uint64_t>{20, 21})) << "an unsignaled WR is flushed with a completion too";
  EXPECT_TRUE(drain(b, 20ms).empty());
}

// RESET empties both queues without completions (IBA 10.3.1); after reconnecting, only what is
// posted afterwards is used.
TEST_F(QpStateTest, ResetDiscardsQueuesSilentlyAndReconnectWorks) {
  make(fast());
  post_recv(b, 1, 0, 100);
  post_recv(b, 2, 0, 100);
  QpAttr reset;
  reset.state = QpState::kReset;
  const char* why = "";
  ASSERT_EQ(0, b.dev->modify_qp(b.qp, reset, kAttrState, &why)) << why;
  ASSERT_EQ(0, a.dev->modify_qp(a.qp, reset, kAttrState, &why)) << why;
  EXPECT_TRUE(drain(b, 20ms).empty()) << "RESET completes nothing";
  EXPECT_TRUE(drain(a, 1ms).empty());
  // Reconnect with fresh PSNs (each side's rq_psn is the other's sq_psn).
  connect(a, b, opt, 0x1000, 0x2000);
  connect(b, a, opt, 0x2000, 0x1000);
  post_recv(b, 3, 200, 100);
  std::memcpy(a.buf.data(), "again", 5);
  SendWr wr;
  wr.wr_id = 9;
  wr.flags = kSignaled;
  ASSERT_EQ(0, post(a, wr, a.sge(0, 5)));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].wr_id, 3u) << "receives posted before RESET must be gone";
  EXPECT_EQ(0, std::memcmp(b.buf.data() + 200, "again", 5));
}

// A QP that failed (ERR) is reset and reconnected, and carries all operations again.
TEST_F(QpStateTest, ResetAfterErrorAndReconnectWorksAgain) {
  make(fast());
  SendWr bad = write_wr(1, b.addr(0), 0xbad00);  // remote access error: both QPs to ERR
  ASSERT_EQ(0, post(a, bad, a.sge(0, 100)));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRemAccessErr) << name(sc[0].status);
  ASSERT_TRUE(wait_state(b.qp, QpState::kErr));
  QpAttr reset;
  reset.state = QpState::kReset;
  const char* why = "";
  ASSERT_EQ(0, a.dev->modify_qp(a.qp, reset, kAttrState, &why)) << why;
  ASSERT_EQ(0, b.dev->modify_qp(b.qp, reset, kAttrState, &why)) << why;
  drain(a, 1ms);
  drain(b, 1ms);
  connect(a, b, opt, 0x777, 0x999);
  connect(b, a, opt, 0x999, 0x777);
  fill(a.buf, 0, 20000, 6);
  SendWr w = write_wr(2, b.addr(100000), b.mr->rkey);
  ASSERT_EQ(0, post(a, w, a.sge(0, 20000)));
  fill(b.buf, 300000, 5000, 7);
  SendWr r = write_wr(3, b.addr(300000), b.mr->rkey);
  r.opcode = WrOpcode::kRdmaRead;
  ASSERT_EQ(0, post(a, r, a.sge(500000, 5000)));
  post_recv(b, 50, 0, 1000);
  SendWr s;
  s.wr_id = 4;
  s.flags = kSignaled;
  ASSERT_EQ(0, post(a, s, a.sge(0, 1000)));
  sc = wait_for(a, 3, 5s);
  ASSERT_EQ(sc.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(sc[i].wr_id, uint64_t(2 + i));
    EXPECT_EQ(sc[i].status, WcStatus::kSuccess) << name(sc[i].status);
  }
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data() + 100000, 20000));
  EXPECT_EQ(0, std::memcmp(a.buf.data() + 500000, b.buf.data() + 300000, 5000));
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(rc[0].byte_len, 1000u);
}

// Posting is refused in states that cannot send or receive.
class PostStateTest : public PairTest {};

TEST_F(PostStateTest, PostSendBeforeRtsAndPostRecvInResetAreEinval) {
  make(fast());
  QueuePair* qp = add_qp(a, QpType::kRc);
  ASSERT_TRUE(qp);
  QueuePair* peer = add_qp(b, QpType::kRc);
  ASSERT_TRUE(peer);
  Sge sg = a.sge(0, 8);
  SendWr wr;
  wr.flags = kSignaled;
  wr.sg_list = &sg;
  wr.num_sge = 1;
  Sge rsg = a.sge(0, 64);
  RecvWr rwr{42, &rsg, 1};
  size_t bad = 99;
  EXPECT_EQ(qp->state(), QpState::kReset);
  EXPECT_EQ(EINVAL, a.dev->post_send(qp, &wr, 1, &bad));
  EXPECT_EQ(bad, 0u);
  bad = 99;
  EXPECT_EQ(EINVAL, a.dev->post_recv(qp, &rwr, 1, &bad));
  EXPECT_EQ(bad, 0u);

  const char* why = "";
  QpAttr at = init_attr();
  ASSERT_EQ(0, a.dev->modify_qp(qp, at, init_mask(QpType::kRc), &why)) << why;
  EXPECT_EQ(EINVAL, a.dev->post_send(qp, &wr, 1, &bad));
  EXPECT_EQ(0, a.dev->post_recv(qp, &rwr, 1, &bad)) << "receives may be posted from INIT on";
  at = rtr_attr(b, peer->qpn());
  ASSERT_EQ(0, a.dev->modify_qp(qp, at, rtr_mask(QpType::kRc), &why)) << why;
  EXPECT_EQ(EINVAL, a.dev->post_send(qp, &wr, 1, &bad));
  at = rts_attr();
  ASSERT_EQ(0, a.dev->modify_qp(qp, at, rts_mask(QpType::kRc), &why)) << why;
  // The refused sends left nothing behind; the peer is connected only now.
  connect_qp(*b.dev, peer, *a.dev, qp->qpn(), fast());
  EXPECT_TRUE(drain(a, 20ms).empty());
  // The receive posted in INIT is used by the first SEND from the peer.
  Sge psg = b.sge(0, 5);
  SendWr pwr;
  pwr.wr_id = 7;
  pwr.flags = kSignaled;
  pwr.sg_list = &psg;
  pwr.num_sge = 1;
  std::memcpy(b.buf.data(), "early", 5);
  ASSERT_EQ(0, b.dev->post_send(peer, &pwr, 1, nullptr));
  auto rc = wait_for(a, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].wr_id, 42u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess) << name(rc[0].status);
  EXPECT_EQ(rc[0].qp_num, qp->qpn());
  EXPECT_EQ(0, std::memcmp(a.buf.data(), "early", 5));
  EXPECT_EQ(wait_for(b, 1, 5s).size(), 1u);
}

// ---- object lifetimes ---------------------------------------------------------------------

class DestroyTest : public PairTest {};

TEST_F(DestroyTest, ObjectsInUseAreBusyUntilTheirUsersAreGone) {
  make(fast());
  Device& d = *a.dev;
  int err = 0;
  Cq* cq2 = d.create_cq(8, nullptr, nullptr, &err);
  ASSERT_TRUE(cq2);
  Srq* srq = d.create_srq(a.pd, 16, 1, &err);
  ASSERT_TRUE(srq);
  QpInitAttr init;
  init.send_cq = a.cq;
  init.recv_cq = cq2;
  init.srq = srq;
  init.cap = {4, 0, 1, 0, 0};
  QueuePair* qp2 = d.create_qp(a.pd, init, &err);
  ASSERT_TRUE(qp2) << err;
  AddressVector av;
  av.dgid = b.dev->gid();
  AddressHandle* ah = d.create_ah(a.pd, av, &err);
  ASSERT_TRUE(ah) << err;

  EXPECT_EQ(EBUSY, d.destroy_cq(a.cq)) << "send CQ of two QPs";
  EXPECT_EQ(EBUSY, d.destroy_cq(cq2)) << "receive CQ of a QP";
  EXPECT_EQ(EBUSY, d.destroy_srq(srq));
  EXPECT_EQ(EBUSY, d.dealloc_pd(a.pd));

  EXPECT_EQ(0, d.destroy_qp(qp2));
  EXPECT_EQ(EINVAL, d.destroy_qp(qp2)) << "destroyed twice";
  EXPECT_EQ(0, d.destroy_cq(cq2));
  EXPECT_EQ(0, d.destroy_srq(srq));
  EXPECT_EQ(EBUSY, d.destroy_cq(a.cq)) << "still the CQ of a.qp";
  EXPECT_EQ(0, d.destroy_qp(a.qp));
  a.qp = nullptr;
  EXPECT_EQ(0, d.destroy_cq(a.cq));
  a.cq = nullptr;
  EXPECT_EQ(EBUSY, d.dealloc_pd(a.pd)) << "the MR and the AH still use it";
  EXPECT_EQ(0, d.destroy_ah(ah));
  EXPECT_EQ(EBUSY, d.dealloc_pd(a.pd)) << "the MR still uses it";
  EXPECT_EQ(0, d.dereg_mr(a.mr));
  EXPECT_EQ(EINVAL, d.dereg_mr(a.mr));
  a.mr = nullptr;
  EXPECT_EQ(0, d.dealloc_pd(a.pd));
  EXPECT_EQ(EINVAL, d.dealloc_pd(a.pd));
  a.pd = nullptr;
}

// A QP destroyed while its peer keeps sending to it (here: SENDs kept in flight by RNR, b has no
// receive): the peer's packets are dropped as addressed to no QP, the peer's WRs fail with
// retries exceeded and flush, the device keeps working, and a new QP pair on it works.
TEST_F(DestroyTest, DestroyQpWithTrafficInFlight) {
  PairOptions o = fast();
  o.retry_cnt = 6;  // not 7 (treated as infinite); room for a retry spent while RNR-waiting
  make(o);
  for (int i = 0; i < 20; ++i) {
    SendWr w;
    w.wr_id = i;
    w.flags = kSignaled;
    ASSERT_EQ(0, post(a, w, a.sge(0, 3000)));
  }
  std::this_thread::sleep_for(5ms);
  EXPECT_GT(qp_counters_of(*b.dev, b.qp->qpn()).rnr_nak_sent, 0u);
  ASSERT_EQ(0, b.dev->destroy_qp(b.qp));
  b.qp = nullptr;
  auto sc = wait_for(a, 20, 5s);
  ASSERT_EQ(sc.size(), 20u);
  EXPECT_EQ(sc[0].status, WcStatus::kRetryExcErr) << name(sc[0].status);
  for (int i = 1; i < 20; ++i) EXPECT_EQ(sc[i].status, WcStatus::kWrFlushErr) << i;
  // b's progress thread drops the retransmissions it finds; on a loaded machine it may get the
  // CPU only after a has given up, but the packets wait in its link until it does.
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (b.dev->counters().drop_unknown_qp == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  EXPECT_GT(b.dev->counters().drop_unknown_qp, 0u);
  QueuePair* qa = add_qp(a, QpType::kRc);
  QueuePair* qb = add_qp(b, QpType::kRc);
  ASSERT_TRUE(qa && qb);
  connect_qp(*a.dev, qa, *b.dev, qb->qpn(), o);
  connect_qp(*b.dev, qb, *a.dev, qa->qpn(), o);
  SendWr w = write_wr(99, b.addr(0), b.mr->rkey);
  Sge sg = a.sge(0, 5000);
  w.sg_list = &sg;
  w.num_sge = 1;
  fill(a.buf, 0, 5000, 12);
  ASSERT_EQ(0, a.dev->post_send(qa, &w, 1, nullptr));
  sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].wr_id, 99u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 5000));
}

}  // namespace
}  // namespace softrdma::test
