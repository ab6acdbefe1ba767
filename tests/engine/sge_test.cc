// Scatter/gather lists: SGE boundaries that do not line up with packet boundaries, on the send
// (gather), receive (scatter) and READ (scatter of responses) sides, up to the device's max_sge.
#include "common/pair.h"

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

class SgeTest : public PairTest {
 protected:
  // A second QP pair whose queues take `sges` SGEs per WR.
  void make_wide(uint32_t sges) {
    make();
    int err = 0;
    for (Side* s : {&a, &b}) {
      QpInitAttr init;
      init.send_cq = init.recv_cq = s->cq;
      init.cap = {64, 64, sges, sges, 0};
      QueuePair* qp = s->dev->create_qp(s->pd, init, &err);
      ASSERT_TRUE(qp) << err;
      (s == &a ? qa : qb) = qp;
    }
    connect_qp(*a.dev, qa, *b.dev, qb->qpn(), opt);
    connect_qp(*b.dev, qb, *a.dev, qa->qpn(), opt);
  }
  // Concatenation of the bytes an SGE list names in `side`'s buffer.
  static std::vector<uint8_t> gathered(const Side& s, const std::vector<Sge>& sgl, uint32_t limit = UINT32_MAX) {
    std::vector<uint8_t> out;
    for (const Sge& g : sgl) {
      const uint8_t* p = reinterpret_cast<const uint8_t*>(g.addr);
      for (uint32_t i = 0; i < g.length && out.size() < limit; ++i) out.push_back(p[i]);
    }
    (void)s;
    return out;
  }
  QueuePair* qa = nullptr;
  QueuePair* qb = nullptr;
};

// 5 SGEs of odd sizes (3 packets at MTU 1024), received into 4 SGEs of other odd sizes.
TEST_F(SgeTest, SendGatherAndReceiveScatterAcrossPacketBoundaries) {
  make_wide(8);
  fill(a.buf, 0, 1 << 16, 11);
  std::vector<Sge> src = {a.sge(10, 700), a.sge(5000, 1), a.sge(9000, 1300), a.sge(20000, 333), a.sge(30000, 2)};
  std::vector<Sge> dst = {b.sge(100, 1000), b.sge(4000, 17), b.sge(8000, 900), b.sge(16000, 1000)};
  RecvWr rw{1, dst.data(), uint32_t(dst.size())};
  ASSERT_EQ(0, b.dev->post_recv(qb, &rw, 1, nullptr));
  SendWr sw;
  sw.wr_id = 2;
  sw.flags = kSignaled;
  sw.sg_list = src.data();
  sw.num_sge = uint32_t(src.size());
  ASSERT_EQ(0, a.dev->post_send(qa, &sw, 1, nullptr));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess);
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(rc[0].byte_len, 2336u);
  EXPECT_TRUE(gathered(a, src) == gathered(b, dst, 2336));
}

TEST_F(SgeTest, ReadScattersResponsesAcrossSges) {
  make_wide(8);
  fill(b.buf, 0, 1 << 16, 12);
  std::vector<Sge> dst = {a.sge(1, 1500), a.sge(7000, 10), a.sge(9000, 2490)};
  SendWr wr;
  wr.wr_id = 1;
  wr.opcode = WrOpcode::kRdmaRead;
  wr.flags = kSignaled;
  wr.rdma.remote_addr = b.addr(333);
  wr.rdma.rkey = b.mr->rkey;
  wr.sg_list = dst.data();
  wr.num_sge = uint32_t(dst.size());
  ASSERT_EQ(0, a.dev->post_send(qa, &wr, 1, nullptr));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  EXPECT_EQ(sc[0].byte_len, 4000u);
  std::vector<uint8_t> expect(b.buf.begin() + 333, b.buf.begin() + 333 + 4000);
  EXPECT_TRUE(gathered(a, dst) == expect);
}

// Many small SGEs all inside one packet: a WR within the QP's max_send_sge (and the device's
// max_sge) must be carried out, however many pieces one packet has to gather.
TEST_F(SgeTest, ManySmallSgesInOnePacket) {
  const uint32_t n = 16;
  make_wide(n);
  ASSERT_LE(n, a.dev->attr().max_sge);
  fill(a.buf, 0, 1 << 16, 13);
  std::vector<Sge> src;
  for (uint32_t i = 0; i < n; ++i) src.push_back(a.sge(i * 100, 16));
  Sge rsg = b.sge(0, 4096);
  RecvWr rw{7, &rsg, 1};
  ASSERT_EQ(0, b.dev->post_recv(qb, &rw, 1, nullptr));
  SendWr sw;
  sw.wr_id = 3;
  sw.flags = kSignaled;
  sw.sg_list = src.data();
  sw.num_sge = n;
  ASSERT_EQ(0, a.dev->post_send(qa, &sw, 1, nullptr));
  // Also an RDMA WRITE gathering the same list.
  SendWr ww = sw;
  ww.wr_id = 4;
  ww.opcode = WrOpcode::kRdmaWrite;
  ww.rdma.remote_addr = b.addr(8192);
  ww.rdma.rkey = b.mr->rkey;
  ASSERT_EQ(0, a.dev->post_send(qa, &ww, 1, nullptr));
  auto sc = wait_for(a, 2, 5s);
  ASSERT_EQ(sc.size(), 2u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess)
      << name(sc[0].status)
      << ": BUG: requester.cc emit_message_packet() gathers at most link::kMaxTxParts - 2 = 6 pieces per "
         "packet (payload.cc gather() then fails with kLocLenErr), while create_qp accepts max_send_sge up to "
         "32 and attr().max_sge says 32";
  EXPECT_EQ(sc[1].status, WcStatus::kSuccess) << name(sc[1].status);
  if (sc[0].status == WcStatus::kSuccess) {
    auto rc = wait_for(b, 1, 5s);
    ASSERT_EQ(rc.size(), 1u);
    EXPECT_EQ(rc[0].byte_len, 16 * n);
    std::vector<uint8_t> got(b.buf.begin(), b.buf.begin() + 16 * n);
    EXPECT_TRUE(got == gathered(a, src));
    std::vector<uint8_t> written(b.buf.begin() + 8192, b.buf.begin() + 8192 + 16 * n);
    EXPECT_TRUE(written == gathered(a, src));
  }
}

// Six pieces per packet is what the link gathers directly; exactly that works today.
TEST_F(SgeTest, SixSgesInOnePacket) {
  make_wide(6);
  fill(a.buf, 0, 1 << 16, 14);
  std::vector<Sge> src;
  for (uint32_t i = 0; i < 6; ++i) src.push_back(a.sge(i * 100, 16));
  Sge rsg = b.sge(0, 4096);
  RecvWr rw{7, &rsg, 1};
  ASSERT_EQ(0, b.dev->post_recv(qb, &rw, 1, nullptr));
  SendWr sw;
  sw.wr_id = 3;
  sw.flags = kSignaled;
  sw.sg_list = src.data();
  sw.num_sge = 6;
  ASSERT_EQ(0, a.dev->post_send(qa, &sw, 1, nullptr));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  std::vector<uint8_t> got(b.buf.begin(), b.buf.begin() + 96);
  EXPECT_TRUE(got == gathered(a, src));
}

}  // namespace
}  // namespace softrdma::test
