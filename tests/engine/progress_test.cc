// Progress without the application: completion channels (the fd becomes readable when an armed
// CQ gets a completion, with nobody polling), and one-sided operations served by a target whose
// application never calls into the adapter after setup (its background thread does everything).
#include "common/pair.h"

#include <poll.h>

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

bool readable(int fd, std::chrono::milliseconds within) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(within.count())) == 1 && (p.revents & POLLIN);
}

// One extra QP on `s` whose CQ has a completion channel.
struct ChannelQp {
  queue::CompletionChannel channel;
  Cq* cq = nullptr;
  QueuePair* qp = nullptr;

  void create(Side& s, uint32_t max_wr = 64) {
    int err = 0;
    cq = s.dev->create_cq(256, &channel, &s, &err);
    ASSERT_TRUE(cq) << err;
    QpInitAttr init;
    init.send_cq = init.recv_cq = cq;
    init.cap = {max_wr, max_wr, 2, 2, 0};
    qp = s.dev->create_qp(s.pd, init, &err);
    ASSERT_TRUE(qp) << err;
  }
};

class ChannelTest : public PairTest {
 protected:
  // a's plain QP `peer` <-> b's channel QP.
  void make_b_channel() {
    make();
    ch.create(b);
    int err = 0;
    QpInitAttr init;
    init.send_cq = init.recv_cq = a.cq;
    init.cap = {64, 64, 2, 2, 0};
    peer = a.dev->create_qp(a.pd, init, &err);
    ASSERT_TRUE(peer);
    connect_qp(*a.dev, peer, *b.dev, ch.qp->qpn(), opt);
    connect_qp(*b.dev, ch.qp, *a.dev, peer->qpn(), opt);
  }
  void recv_at_b(uint64_t id) {
    Sge sg = b.sge(0, 4096);
    RecvWr wr{id, &sg, 1};
    ASSERT_EQ(0, b.dev->post_recv(ch.qp, &wr, 1, nullptr));
  }
  void send_from_a(uint64_t id, uint32_t flags) {
    Sge sg = a.sge(0, 100);
    SendWr wr;
    wr.wr_id = id;
    wr.flags = flags;
    wr.sg_list = &sg;
    wr.num_sge = 1;
    ASSERT_EQ(0, a.dev->post_send(peer, &wr, 1, nullptr));
  }
  // The devices go first: their threads may still touch the channels' CQs.
  void TearDown() override {
    a.dev.reset();
    b.dev.reset();
  }
  ChannelQp ch;  // on b
  ChannelQp c;   // on a
  QueuePair* peer = nullptr;
};

TEST_F(ChannelTest, ArmedCqMakesTheFdReadableAndGetEventReturnsIt) {
  make_b_channel();
  ASSERT_TRUE(ch.channel.valid());
  EXPECT_FALSE(readable(ch.channel.fd(), 0ms));
  b.dev->req_notify_cq(ch.cq, false);
  recv_at_b(1);
  send_from_a(1, kSignaled);
  // b's application does not poll: its background thread must deliver the completion.
  ASSERT_TRUE(readable(ch.channel.fd(), 2000ms)) << "no completion event";
  EXPECT_EQ(ch.channel.get_event(), static_cast<queue::CompletionQueue*>(ch.cq));
  EXPECT_EQ(ch.cq->user_context(), &b);
  EXPECT_FALSE(readable(ch.channel.fd(), 0ms)) << "one event per arm";
  Wc wc[4];
  ASSERT_EQ(b.dev->poll_cq(ch.cq, wc, 4), 1);
  EXPECT_EQ(wc[0].wr_id, 1u);
  EXPECT_EQ(wc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(wc[0].byte_len, 100u);
}

TEST_F(ChannelTest, NotArmedMeansNoEvent) {
  make_b_channel();
  recv_at_b(1);
  send_from_a(1, kSignaled);
  EXPECT_EQ(wait_cq(*b.dev, ch.cq, 1, 2s).size(), 1u);
  EXPECT_FALSE(readable(ch.channel.fd(), 50ms)) << "an unarmed CQ must not notify";
  // Armed once: the first completion notifies, the second does not.
  b.dev->req_notify_cq(ch.cq, false);
  recv_at_b(2);
  recv_at_b(3);
  send_from_a(2, kSignaled);
  ASSERT_TRUE(readable(ch.channel.fd(), 2000ms));
  EXPECT_EQ(ch.channel.get_event(), static_cast<queue::CompletionQueue*>(ch.cq));
  send_from_a(3, kSignaled);
  EXPECT_EQ(wait_cq(*b.dev, ch.cq, 2, 2s).size(), 2u);
  EXPECT_FALSE(readable(ch.channel.fd(), 20ms));
}

TEST_F(ChannelTest, SolicitedOnlyWaitsForASolicitedCompletion) {
  make_b_channel();
  b.dev->req_notify_cq(ch.cq, true);
  recv_at_b(1);
  recv_at_b(2);
  send_from_a(1, kSignaled);  // not solicited
  EXPECT_FALSE(readable(ch.channel.fd(), 50ms)) << "an unsolicited receive must not notify";
  send_from_a(2, kSignaled | kSolicited);
  ASSERT_TRUE(readable(ch.channel.fd(), 2000ms)) << "a solicited receive must notify";
  EXPECT_EQ(ch.channel.get_event(), static_cast<queue::CompletionQueue*>(ch.cq));
  auto rc = wait_cq(*b.dev, ch.cq, 2, 2s);
  ASSERT_EQ(rc.size(), 2u);
  EXPECT_EQ(rc[0].wr_id, 1u);
  EXPECT_EQ(rc[1].wr_id, 2u);
}

// An application that sleeps on the channel must learn of errors too. Here the failed WQE is a
// SEND whose local key is bad; the application never polls, so the error completion must be
// produced by the adapter on its own.
TEST_F(ChannelTest, LocalErrorCompletionNotifiesWithoutPolling) {
  make();
  c.create(a);
  connect_qp(*a.dev, c.qp, *b.dev, b.qp->qpn(), opt);
  a.dev->req_notify_cq(c.cq, false);
  std::this_thread::sleep_for(20ms);  // let the progress threads go idle
  Sge sg{a.addr(0), 100, 0};          // lkey 0 is never valid
  SendWr wr;
  wr.wr_id = 5;
  wr.flags = kSignaled;
  wr.sg_list = &sg;
  wr.num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(c.qp, &wr, 1, nullptr));
  bool notified = readable(c.channel.fd(), 1000ms);
  EXPECT_TRUE(notified) << "BUG: a requester-detected local error moves the QP to ERR (requester.cc fail()), but the "
                           "failed WQE is only completed by flush_errors() on a later progress pass; with no timer "
                           "armed and no packet arriving the background thread never runs one";
  auto sc = wait_cq(*a.dev, c.cq, 1, 2s);  // polling does make progress
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kLocProtErr) << name(sc[0].status);
}

// Same for transport retries exceeded against a dead peer: the timeout that exhausts the retry
// count happens on the background thread, and its error completion must follow on its own.
TEST_F(ChannelTest, RetryExceededCompletionNotifiesWithoutPolling) {
  make();
  c.create(a);
  PairOptions o = opt;
  o.timeout = 8;
  o.retry_cnt = 1;
  connect_qp(*a.dev, c.qp, *b.dev, b.qp->qpn() + 11, o);  // no such QP
  a.dev->req_notify_cq(c.cq, false);
  Sge sg = a.sge(0, 100);
  SendWr wr;
  wr.wr_id = 6;
  wr.flags = kSignaled;
  wr.sg_list = &sg;
  wr.num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(c.qp, &wr, 1, nullptr));
  bool notified = readable(c.channel.fd(), 1000ms);  // ~2 ms of timeouts
  auto cnt = qp_counters_of(*a.dev, c.qp->qpn());
  EXPECT_TRUE(notified) << "BUG: engine.cc run_timers() calls completer_timeout(), which fails the WQE and sets ERR, "
                           "but nothing completes it until the next progress pass, and progress() then returns no "
                           "timer so the background thread sleeps forever (timeouts=" << cnt.timeouts
                        << ", state " << name(c.qp->state()) << ")";
  auto sc = wait_cq(*a.dev, c.cq, 1, 2s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRetryExcErr) << name(sc[0].status);
}

// After a local ACK timeout the requester must resend at once, not one more timeout later. The
// target QP is not ready for the first transmission (dropped) and becomes ready soon after; the
// requester's application only waits on the channel.
TEST_F(ChannelTest, RetransmissionFollowsTheTimeoutWithoutPolling) {
  make();
  c.create(a);
  int err = 0;
  QpInitAttr init;
  init.send_cq = init.recv_cq = b.cq;
  init.cap = {16, 16, 1, 1, 0};
  QueuePair* target = b.dev->create_qp(b.pd, init, &err);
  ASSERT_TRUE(target);
  PairOptions o = opt;
  o.timeout = 15;  // 4.096 us * 2^15 = 134 ms
  connect_qp(*a.dev, c.qp, *b.dev, target->qpn(), o);
  a.dev->req_notify_cq(c.cq, false);
  SendWr wr;
  wr.wr_id = 7;
  wr.opcode = WrOpcode::kRdmaWrite;
  wr.flags = kSignaled;
  wr.rdma.remote_addr = b.addr(0);
  wr.rdma.rkey = b.mr->rkey;
  Sge sg = a.sge(0, 100);
  wr.sg_list = &sg;
  wr.num_sge = 1;
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(0, a.dev->post_send(c.qp, &wr, 1, nullptr));  // target in RESET: dropped
  std::this_thread::sleep_for(10ms);
  connect_qp(*b.dev, target, *a.dev, c.qp->qpn(), o);
  ASSERT_TRUE(readable(c.channel.fd(), 2000ms));
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  auto sc = wait_cq(*a.dev, c.cq, 1, 2s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  auto cnt = qp_counters_of(*a.dev, c.qp->qpn());
  EXPECT_LT(elapsed.count(), 200) << "BUG: engine.cc run_timers(): completer_timeout() rewinds the requester but "
                                     "run_send() is not called, so the retransmission waits for the next progress "
                                     "pass, i.e. the next timer, one full timeout later (timeouts=" << cnt.timeouts
                                  << ")";
  EXPECT_GE(elapsed.count(), 130) << "completed before the first timeout could have fired";
}

// ---- a target that never calls the adapter ------------------------------------------------

struct IdleParam {
  const char* name;
  double loss;
};

void PrintTo(const IdleParam& p, std::ostream* os) { *os << p.name; }

class IdleTargetTest : public PairTest, public ::testing::WithParamInterface<IdleParam> {};

TEST_P(IdleTargetTest, OneSidedOperationsServedByTheTargetThreadAlone) {
  PairOptions o;
  o.timeout = 8;
  o.buf_size = 4 << 20;
  o.infer_ipv4_id = false;
  if (GetParam().loss > 0) {
    link::FaultConfig fa, fb;
    fa.seed = 31;
    fa.loss = GetParam().loss;
    fb.seed = 32;
    fb.loss = GetParam().loss;
    o.fault_a = fa;
    o.fault_b = fb;
  }
  make(o);
  // From here on b's application does nothing (b's memory is only read/written by the test).
  for (size_t i = 0; i < (1 << 20); ++i) b.buf[i] = static_cast<uint8_t>(i * 7 + (i >> 10));
  fill(a.buf, 2 << 20, 1 << 20, 9);
  constexpr int kReads = 1000, kWrites = 200, kAtomics = 200;
  constexpr int kTotal = kReads + kWrites + kAtomics;
  int posted = 0, done = 0;
  Wc wc[64];
  WcStatus first_bad = WcStatus::kSuccess;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (done < kTotal && std::chrono::steady_clock::now() < deadline && first_bad == WcStatus::kSuccess) {
    while (posted < kTotal && posted - done < 128) {
      SendWr wr;
      wr.wr_id = posted;
      wr.flags = kSignaled;
      Sge sg;
      int k = posted % 7;
      if (k < 5) {  // READ 4 KiB at a varying offset into a's per-READ slot
        uint32_t off = uint32_t(posted * 4099) % ((1 << 20) - 4096);
        wr.opcode = WrOpcode::kRdmaRead;
        wr.rdma.remote_addr = b.addr(off);
        wr.rdma.rkey = b.mr->rkey;
        sg = a.sge(size_t(posted % 256) * 4096, 4096);
      } else if (k == 5) {
        wr.opcode = WrOpcode::kRdmaWrite;
        wr.rdma.remote_addr = b.addr((2 << 20) + size_t(posted % 128) * 8192);
        wr.rdma.rkey = b.mr->rkey;
        sg = a.sge((2 << 20) + size_t(posted % 128) * 8192, 8192);
      } else {
        wr.opcode = WrOpcode::kFetchAdd;
        wr.atomic.remote_addr = b.addr(3 << 20);
        wr.atomic.rkey = b.mr->rkey;
        wr.atomic.compare_add = 1;
        sg = a.sge((3 << 20) + size_t(posted % 256) * 8, 8);
      }
      if (post(a, wr, sg) != 0) break;
      ++posted;
    }
    int got = a.dev->poll_cq(a.cq, wc, 64);
    for (int i = 0; i < got; ++i) {
      if (wc[i].status != WcStatus::kSuccess) first_bad = wc[i].status;
      if (wc[i].opcode == WcOpcode::kRdmaRead && wc[i].status == WcStatus::kSuccess) {
        int id = int(wc[i].wr_id);
        uint32_t off = uint32_t(id * 4099) % ((1 << 20) - 4096);
        ASSERT_EQ(0, std::memcmp(a.buf.data() + size_t(id % 256) * 4096, b.buf.data() + off, 4096)) << "READ " << id;
      }
      ++done;
    }
  }
  ASSERT_EQ(first_bad, WcStatus::kSuccess) << name(first_bad);
  ASSERT_EQ(done, kTotal) << "the idle target did not serve everything in time";
  EXPECT_EQ(0, std::memcmp(a.buf.data() + (2 << 20), b.buf.data() + (2 << 20), 1 << 20));
  uint64_t counter;
  std::memcpy(&counter, b.buf.data() + (3 << 20), 8);
  // kTotal = 1400 = 200 * 7: posts 5 and 6 of every 7 are the WRITE and the atomic.
  EXPECT_EQ(counter, uint64_t(kAtomics));
  auto cb = qp_counters_of(*b.dev, b.qp->qpn());
  EXPECT_GE(cb.rx_packets, uint64_t(kTotal));
}

INSTANTIATE_TEST_SUITE_P(Idle, IdleTargetTest,
                         ::testing::Values(IdleParam{"NoLoss", 0}, IdleParam{"Loss1", 0.01}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace softrdma::test
