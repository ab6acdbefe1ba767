// Unreliable services. UD (IBA 9.8.3 / 10.2.5): one packet per message, an address handle per
// send, Q_Key checking, and the 40-byte GRH area at the start of every receive buffer (RoCEv2:
// the IPv4 header in bytes 20..39). UC (IBA 9.8): no ACKs; a message that loses a packet is
// dropped whole, never delivered in part.
#include "common/pair.h"

#include <set>

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

constexpr uint32_t kGrh = 40;
constexpr uint32_t kQkey = 0x11111111;  // connect() gives every UD QP this Q_Key

class UdTest : public PairTest {
 protected:
  void make_ud() {
    PairOptions o;
    o.type = QpType::kUd;
    make(o);
    AddressVector av;
    av.dgid = b.dev->gid();
    int err = 0;
    ah = a.dev->create_ah(a.pd, av, &err);
    ASSERT_TRUE(ah) << err;
  }
  // A UD SEND from a to b's QP (or to qpn).
  int ud_send(uint64_t id, uint32_t off, uint32_t len, uint32_t qkey = kQkey, bool imm = false, uint32_t qpn = 0) {
    SendWr wr;
    wr.wr_id = id;
    wr.opcode = imm ? WrOpcode::kSendImm : WrOpcode::kSend;
    wr.imm_data = 0xabc00000u + static_cast<uint32_t>(id);
    wr.flags = kSignaled;
    wr.ud.ah = ah;
    wr.ud.remote_qpn = qpn ? qpn : b.qp->qpn();
    wr.ud.remote_qkey = qkey;
    return post(a, wr, a.sge(off, len));
  }
  AddressHandle* ah = nullptr;
};

uint16_t ip_checksum(const uint8_t* h) {
  uint32_t sum = 0;
  for (int i = 0; i < 20; i += 2) sum += uint32_t(h[i]) << 8 | h[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

TEST_F(UdTest, SendRecvCarriesGrhSourceQpAndImmediate) {
  make_ud();
  const uint32_t lens[] = {0, 1, 100, 1024, 4000, 4096};
  fill(a.buf, 0, 4096, 5);
  for (uint32_t i = 0; i < std::size(lens); ++i) {
    uint32_t len = lens[i];
    std::fill(b.buf.begin(), b.buf.begin() + 8192, 0xcc);
    post_recv(b, 100 + i, 0, kGrh + 4096);
    bool imm = i % 2 == 1;
    ASSERT_EQ(0, ud_send(i, 0, len, kQkey, imm));
    auto sc = wait_for(a, 1, 5s);
    ASSERT_EQ(sc.size(), 1u);
    EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
    EXPECT_EQ(sc[0].opcode, WcOpcode::kSend);
    auto rc = wait_for(b, 1, 5s);
    ASSERT_EQ(rc.size(), 1u) << "len " << len;
    const Wc& w = rc[0];
    EXPECT_EQ(w.status, WcStatus::kSuccess) << name(w.status);
    EXPECT_EQ(w.wr_id, 100u + i);
    EXPECT_EQ(w.opcode, WcOpcode::kRecv);
    EXPECT_EQ(w.byte_len, kGrh + len);
    EXPECT_EQ(w.qp_num, b.qp->qpn());
    EXPECT_EQ(w.src_qp, a.qp->qpn());
    EXPECT_TRUE(w.wc_flags & kWcGrh);
    EXPECT_EQ(bool(w.wc_flags & kWcWithImm), imm);
    if (imm) {
      EXPECT_EQ(w.imm_data, 0xabc00000u + i);
    }
    // GRH area: bytes 0..19 unspecified for IPv4, 20..39 the IPv4 header of the packet.
    const uint8_t* ip = b.buf.data() + 20;
    EXPECT_EQ(ip[0], 0x45) << "IPv4, 20-byte header";
    EXPECT_EQ(ip[9], 17) << "UDP";
    EXPECT_EQ(ip_checksum(ip), 0xffff) << "header checksum must verify";
    EXPECT_EQ(0, std::memcmp(ip + 12, &a.dev->gid().bytes[12], 4)) << "source IP = sender's address";
    EXPECT_EQ(0, std::memcmp(ip + 16, &b.dev->gid().bytes[12], 4)) << "destination IP = receiver's address";
    EXPECT_EQ(0, std::memcmp(b.buf.data() + kGrh, a.buf.data(), len)) << "len " << len;
    EXPECT_EQ(b.buf[kGrh + len], 0xcc) << "nothing written past the message";
  }
}

TEST_F(UdTest, WrongQkeyIsDroppedAndCounted) {
  make_ud();
  post_recv(b, 7, 0, kGrh + 100);
  uint64_t before = b.dev->counters().drop_qkey;
  ASSERT_EQ(0, ud_send(1, 0, 50, 0x22222222));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << "UD does not learn of remote drops";
  EXPECT_TRUE(drain(b, 30ms).empty());
  EXPECT_EQ(b.dev->counters().drop_qkey, before + 1);
  // The receive WQE was not consumed: the next good message lands in it.
  ASSERT_EQ(0, ud_send(2, 0, 60));
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].wr_id, 7u);
  EXPECT_EQ(rc[0].byte_len, kGrh + 60);
}

// IBA 10.2.5: a Q_Key with the high-order bit set in the WR means "use the QP's own Q_Key".
TEST_F(UdTest, PrivilegedQkeyBitSendsTheQpsQkey) {
  make_ud();
  post_recv(b, 7, 0, kGrh + 100);
  ASSERT_EQ(0, ud_send(1, 0, 50, 0x80000000u));
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(rc[0].byte_len, kGrh + 50);
}

TEST_F(UdTest, PayloadLargerThanMtuIsLocalLengthError) {
  make_ud();
  post_recv(b, 7, 0, kGrh + 8192);
  ASSERT_EQ(0, ud_send(1, 0, 4097));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].wr_id, 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kLocLenErr) << name(sc[0].status);
  EXPECT_TRUE(drain(b, 20ms).empty()) << "nothing may be sent";
}

// The receive buffer cannot hold GRH + payload: that receive completes kLocLenErr, the QP stays
// usable (UD has no connection to break), and the next message is received normally.
TEST_F(UdTest, ReceiveBufferTooSmallIsLocalLengthErrorOnThatWqeOnly) {
  make_ud();
  post_recv(b, 1, 0, kGrh + 10);
  post_recv(b, 2, 4096, kGrh + 100);
  ASSERT_EQ(0, ud_send(1, 0, 100));
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].wr_id, 1u);
  EXPECT_EQ(rc[0].status, WcStatus::kLocLenErr) << name(rc[0].status);
  EXPECT_EQ(b.qp->state(), QpState::kRts);
  fill(a.buf, 0, 100, 3);
  ASSERT_EQ(0, ud_send(2, 0, 100));
  rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].wr_id, 2u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(0, std::memcmp(b.buf.data() + 4096 + kGrh, a.buf.data(), 100));
}

TEST_F(UdTest, NoReceivePostedIsDroppedAndCounted) {
  make_ud();
  uint64_t before = b.dev->counters().drop_no_recv_wqe;
  ASSERT_EQ(0, ud_send(1, 0, 10));
  EXPECT_EQ(wait_for(a, 1, 5s).size(), 1u);
  auto deadline = std::chrono::steady_clock::now() + 2s;
  while (b.dev->counters().drop_no_recv_wqe == before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(b.dev->counters().drop_no_recv_wqe, before + 1);
  EXPECT_EQ(b.qp->state(), QpState::kRts);
}

TEST_F(UdTest, PostWithoutAddressHandleIsEinval) {
  make_ud();
  SendWr wr;
  wr.flags = kSignaled;
  wr.ud.remote_qpn = b.qp->qpn();
  wr.ud.remote_qkey = kQkey;
  EXPECT_EQ(EINVAL, post(a, wr, a.sge(0, 10)));
}

// One UD QP talks to two QPs of the peer with one address handle; each receive names its QP and
// the sender.
TEST_F(UdTest, OneSenderTwoReceiverQps) {
  make_ud();
  QpInitAttr init;
  init.type = QpType::kUd;
  init.send_cq = init.recv_cq = b.cq;
  init.cap = {16, 16, 1, 1, 0};
  int err = 0;
  QueuePair* b2 = b.dev->create_qp(b.pd, init, &err);
  ASSERT_TRUE(b2);
  connect_qp(*b.dev, b2, *a.dev, 0, opt);
  Sge s1 = b.sge(0, kGrh + 64), s2 = b.sge(4096, kGrh + 64);
  RecvWr r1{1, &s1, 1}, r2{2, &s2, 1};
  ASSERT_EQ(0, b.dev->post_recv(b.qp, &r1, 1, nullptr));
  ASSERT_EQ(0, b.dev->post_recv(b2, &r2, 1, nullptr));
  ASSERT_EQ(0, ud_send(10, 0, 64, kQkey, false, b2->qpn()));
  ASSERT_EQ(0, ud_send(11, 0, 32, kQkey, false, b.qp->qpn()));
  auto rc = wait_for(b, 2, 5s);
  ASSERT_EQ(rc.size(), 2u);
  for (auto& w : rc) {
    EXPECT_EQ(w.status, WcStatus::kSuccess);
    EXPECT_EQ(w.src_qp, a.qp->qpn());
    if (w.wr_id == 2) {
      EXPECT_EQ(w.qp_num, b2->qpn());
      EXPECT_EQ(w.byte_len, kGrh + 64);
    } else {
      EXPECT_EQ(w.wr_id, 1u);
      EXPECT_EQ(w.qp_num, b.qp->qpn());
      EXPECT_EQ(w.byte_len, kGrh + 32);
    }
  }
}

// ---- UC -----------------------------------------------------------------------------------

class UcTest : public PairTest {};

TEST_F(UcTest, SendAndWriteWithImmediate) {
  PairOptions o;
  o.type = QpType::kUc;
  make(o);
  fill(a.buf, 0, 20000, 1);
  post_recv(b, 1, 0, 8192);
  post_recv(b, 2, 8192, 8192);
  post_recv(b, 3, 0, 0);
  SendWr s;
  s.wr_id = 1;
  s.flags = kSignaled;
  ASSERT_EQ(0, post(a, s, a.sge(0, 5000)));  // 5 packets
  s.wr_id = 2;
  s.opcode = WrOpcode::kSendImm;
  s.imm_data = 77;
  ASSERT_EQ(0, post(a, s, a.sge(100, 1000)));
  SendWr w;
  w.wr_id = 3;
  w.opcode = WrOpcode::kRdmaWrite;
  w.flags = kSignaled;
  w.rdma.remote_addr = b.addr(100000);
  w.rdma.rkey = b.mr->rkey;
  ASSERT_EQ(0, post(a, w, a.sge(0, 20000)));
  w.wr_id = 4;
  w.opcode = WrOpcode::kRdmaWriteImm;
  w.imm_data = 88;
  w.rdma.remote_addr = b.addr(200000);
  ASSERT_EQ(0, post(a, w, a.sge(1, 3000)));
  auto sc = wait_for(a, 4, 5s);
  ASSERT_EQ(sc.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(sc[i].wr_id, uint64_t(i + 1));
    EXPECT_EQ(sc[i].status, WcStatus::kSuccess) << name(sc[i].status);
  }
  auto rc = wait_for(b, 3, 5s);
  ASSERT_EQ(rc.size(), 3u);
  EXPECT_EQ(rc[0].wr_id, 1u);
  EXPECT_EQ(rc[0].byte_len, 5000u);
  EXPECT_EQ(rc[0].src_qp, a.qp->qpn());
  EXPECT_EQ(rc[1].wr_id, 2u);
  EXPECT_EQ(rc[1].byte_len, 1000u);
  EXPECT_TRUE(rc[1].wc_flags & kWcWithImm);
  EXPECT_EQ(rc[1].imm_data, 77u);
  EXPECT_EQ(rc[2].wr_id, 3u);
  EXPECT_EQ(rc[2].opcode, WcOpcode::kRecvRdmaWithImm);
  EXPECT_EQ(rc[2].byte_len, 3000u);
  EXPECT_EQ(rc[2].imm_data, 88u);
  EXPECT_EQ(0, std::memcmp(b.buf.data(), a.buf.data(), 5000));
  EXPECT_EQ(0, std::memcmp(b.buf.data() + 8192, a.buf.data() + 100, 1000));
  EXPECT_EQ(0, std::memcmp(b.buf.data() + 100000, a.buf.data(), 20000));
  EXPECT_EQ(0, std::memcmp(b.buf.data() + 200000, a.buf.data() + 1, 3000));
}

// READ and atomics do not exist on UC: refused at post time or completed kLocQpOpErr.
TEST_F(UcTest, ReadIsNotAUcOperation) {
  PairOptions o;
  o.type = QpType::kUc;
  make(o);
  SendWr r;
  r.wr_id = 1;
  r.opcode = WrOpcode::kRdmaRead;
  r.flags = kSignaled;
  r.rdma.remote_addr = b.addr(0);
  r.rdma.rkey = b.mr->rkey;
  int rc = post(a, r, a.sge(0, 100));
  if (rc != 0) {
    EXPECT_EQ(rc, EINVAL);
    return;
  }
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kLocQpOpErr) << name(sc[0].status);
}

// Through 10% loss: every SEND / WRITE-with-immediate that is delivered is complete and intact,
// in order; messages that lost a packet are not delivered at all.
TEST_F(UcTest, LossDropsWholeMessagesNeverParts) {
  PairOptions o;
  o.type = QpType::kUc;
  o.max_wr = 1024;
  o.buf_size = 16 << 20;
  link::FaultConfig f;
  f.seed = 99;
  f.loss = 0.10;
  o.fault_a = f;
  make(o);
  constexpr int kN = 600;
  constexpr uint32_t kSlot = 8192;
  constexpr size_t kWriteArea = 8 << 20;
  for (int i = 0; i < kN; ++i) post_recv(b, i, uint32_t(i) * kSlot % (kWriteArea), kSlot);
  std::vector<uint32_t> lens(kN);
  int sent = 0;
  for (int i = 0; i < kN; ++i) {
    uint32_t len = 4 + (uint32_t(i) * 2654435761u) % 6000;  // 1..6 packets
    lens[i] = len;
    size_t src = size_t(i % 64) * kSlot;
    SendWr wr;
    wr.wr_id = i;
    wr.flags = kSignaled;
    wr.imm_data = i;
    if (i % 3 == 2) {
      wr.opcode = WrOpcode::kRdmaWriteImm;
      wr.rdma.remote_addr = b.addr(kWriteArea + size_t(i) * kSlot);
      wr.rdma.rkey = b.mr->rkey;
    } else {
      wr.opcode = WrOpcode::kSendImm;
    }
    // Wait for the source slot to be free (its WQE completed) before rewriting it.
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (i - sent >= 64) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "sends do not complete";
      Wc wc[16];
      int got = a.dev->poll_cq(a.cq, wc, 16);
      for (int k = 0; k < got; ++k) ASSERT_EQ(wc[k].status, WcStatus::kSuccess) << name(wc[k].status);
      sent += got;
    }
    fill(a.buf, src, len, i);
    std::memcpy(a.buf.data() + src, &i, 4);
    ASSERT_EQ(0, post(a, wr, a.sge(src, len)));
  }
  auto sc = wait_for(a, kN - sent, 5s);
  ASSERT_EQ(sc.size(), size_t(kN - sent));
  for (auto& w : sc) EXPECT_EQ(w.status, WcStatus::kSuccess);

  std::vector<Wc> rc = drain(b, 200ms);
  int last_seq = -1, delivered = 0, multi = 0;
  std::vector<uint8_t> expect;
  for (auto& w : rc) {
    ASSERT_EQ(w.status, WcStatus::kSuccess) << name(w.status);
    ASSERT_TRUE(w.wc_flags & kWcWithImm);
    int seq = int(w.imm_data);
    ASSERT_LT(seq, kN);
    ASSERT_GT(seq, last_seq) << "delivered out of order or twice";
    last_seq = seq;
    ASSERT_EQ(w.byte_len, lens[seq]) << "message " << seq << " delivered in part";
    const uint8_t* got;
    if (seq % 3 == 2) {
      ASSERT_EQ(w.opcode, WcOpcode::kRecvRdmaWithImm);
      got = b.buf.data() + kWriteArea + size_t(seq) * kSlot;
    } else {
      ASSERT_EQ(w.opcode, WcOpcode::kRecv);
      got = b.buf.data() + w.wr_id * kSlot % kWriteArea;
    }
    expect.assign(lens[seq], 0);
    fill(expect, 0, lens[seq], seq);
    std::memcpy(expect.data(), &seq, 4);
    ASSERT_EQ(0, std::memcmp(got, expect.data(), lens[seq])) << "message " << seq << " corrupted";
    ++delivered;
    if (lens[seq] > 1024) ++multi;
  }
  auto fa = a.dev->fault_counters();
  std::printf("UC: %d of %d delivered (%d multi-packet), %lu packets lost, %lu UC messages dropped\n", delivered, kN,
              multi, (unsigned long)fa.dropped, (unsigned long)qp_counters_of(*b.dev, b.qp->qpn()).uc_dropped_messages);
  EXPECT_GT(fa.dropped, 0u);
  EXPECT_LT(delivered, kN);
  EXPECT_GT(delivered, kN / 3);
  EXPECT_GT(multi, 0);
  EXPECT_GT(qp_counters_of(*b.dev, b.qp->qpn()).uc_dropped_messages, 0u);
  EXPECT_EQ(b.qp->state(), QpState::kRts);
}

}  // namespace
}  // namespace softrdma::test
