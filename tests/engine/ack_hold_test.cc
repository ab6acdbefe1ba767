// The coalesced ACK of a SEND that the application's own poll completed waits for the
// application's reply and leaves in the same GSO send (Engine::progress(hold_acks)); it still
// leaves when the application polls again without replying, goes quiet, or destroys the QP.
#include "common/pair.h"

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

uint64_t acks_sent(Device& d, const QueuePair* qp) { return qp_counters_of(d, qp->qpn()).acks_sent; }
uint64_t retransmits(Device& d, const QueuePair* qp) { return qp_counters_of(d, qp->qpn()).retransmits; }

class AckHoldTest : public PairTest {
 protected:
  void make_quiet(bool threads) {
    PairOptions o;
    o.progress_thread = threads;
    o.timeout = 14;  // ~67 ms: a late ACK on a loaded machine must not look like a lost one
    o.shm = false;   // GSO is what the ACK rides in
    make(o);
    post_recv(b, 1, 0, 64);
    post_recv(a, 2, 0, 64);
  }
  // a SENDs 8 bytes; b's poll completes the receive (and holds the ACK).
  void send_a_to_b() {
    fill(a.buf, 4096, 8, 3);
    ASSERT_EQ(0, post(a, send_wr(10), a.sge(4096, 8)));
    auto wc = wait_for(b, 1);
    ASSERT_EQ(wc.size(), 1u);
    ASSERT_EQ(wc[0].status, WcStatus::kSuccess);
    ASSERT_EQ(wc[0].opcode, WcOpcode::kRecv);
  }
};

TEST_F(AckHoldTest, AckRidesWithTheReplyInOneGsoSend) {
  make_quiet(false);  // only the applications' polls drive the engines
  send_a_to_b();
  EXPECT_EQ(acks_sent(*b.dev, b.qp), 0u) << "the ACK should wait for the reply";
  const auto before = b.dev->counters();
  ASSERT_EQ(0, post(b, send_wr(20), b.sge(4096, 8)));
  const auto after = b.dev->counters();
  EXPECT_EQ(acks_sent(*b.dev, b.qp), 1u);
  EXPECT_EQ(after.link_gso_sends - before.link_gso_sends, 1u) << "reply and ACK in one send";
  EXPECT_EQ(after.link_gso_frames - before.link_gso_frames, 2u);
  auto wc = wait_for(a, 2);  // a: its SEND acknowledged and b's reply received
  ASSERT_EQ(wc.size(), 2u);
  for (const Wc& w : wc) EXPECT_EQ(w.status, WcStatus::kSuccess) << name(w.status);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data() + 4096, 8));
  EXPECT_EQ(retransmits(*a.dev, a.qp), 0u);
}

TEST_F(AckHoldTest, HeldAckLeavesWhenTheApplicationPollsAgain) {
  make_quiet(false);
  send_a_to_b();
  Wc wc[4];
  EXPECT_EQ(0, b.dev->poll_cq(b.cq, wc, 4));  // polls again instead of replying
  EXPECT_EQ(acks_sent(*b.dev, b.qp), 1u);
  auto got = wait_for(a, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status, WcStatus::kSuccess);
  EXPECT_EQ(got[0].opcode, WcOpcode::kSend);
  EXPECT_EQ(retransmits(*a.dev, a.qp), 0u);
}

TEST_F(AckHoldTest, HeldAckLeavesWhenTheApplicationGoesQuiet) {
  make_quiet(true);  // b's background thread takes over once b stops polling
  send_a_to_b();
  auto got = wait_for(a, 1, 2s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status, WcStatus::kSuccess);
  EXPECT_EQ(acks_sent(*b.dev, b.qp), 1u);
  EXPECT_EQ(retransmits(*a.dev, a.qp), 0u) << "the ACK stayed held until a timeout";
}

TEST_F(AckHoldTest, DestroyingTheQpSendsItsHeldAck) {
  make_quiet(false);
  send_a_to_b();
  ASSERT_EQ(0, b.dev->destroy_qp(b.qp));
  b.qp = nullptr;
  auto got = wait_for(a, 1, 2s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status, WcStatus::kSuccess) << name(got[0].status);
  EXPECT_EQ(retransmits(*a.dev, a.qp), 0u);
}

}  // namespace
}  // namespace softrdma::test
