// The requester asks for an ACK (BTH AckReq) only when something waits for it: a signaled
// completion, a retransmission, half the send queue held by unacknowledged messages, every
// ackreq_every packets, a local invalidation waiting behind the message. A newest packet that
// asked for nothing is sent again asking (a probe) when an invalidation needs it at once, or
// after kAckProbeNs without an ACK; that also recovers it if it was lost.
#include <atomic>

#include "common/pair.h"
#include "link/udp_link.h"

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

transport::QpCounters counters(Side& s) { return qp_counters_of(*s.dev, s.qp->qpn()); }

class AckRequestTest : public PairTest, public ::testing::WithParamInterface<bool> {
 protected:
  PairOptions options(bool progress_thread) {
    PairOptions o;
    o.shm = GetParam();
    o.progress_thread = progress_thread;
    o.timeout = 14;  // ~67 ms: no timeout on a loaded machine mistaken for a probe
    return o;
  }
  // Polls b, then a, until a has n completions (b's engine runs only when polled).
  std::vector<Wc> pump_for_a(size_t n) {
    std::vector<Wc> out;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    Wc wc[8];
    while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
      EXPECT_EQ(0, b.dev->poll_cq(b.cq, wc, 8));
      int got = a.dev->poll_cq(a.cq, wc, 8);
      for (int i = 0; i < got; ++i) out.push_back(wc[i]);
    }
    return out;
  }
  // Each side SENDs its iteration number to the other and waits for the other's.
  void ping_pong(uint32_t iterations, uint32_t flags) {
    for (uint32_t i = 0; i < iterations; ++i) {
      post_recv(a, 1000 + i, 64, 8);
      post_recv(b, 2000 + i, 64, 8);
    }
    for (uint32_t i = 0; i < iterations; ++i) {
      std::memcpy(a.buf.data(), &i, 4);
      ASSERT_EQ(0, post(a, send_wr(i, flags), a.sge(0, 4)));
      Wc got = wait_recv(b);
      ASSERT_EQ(got.wr_id, 2000u + i);
      uint32_t seen;
      std::memcpy(&seen, b.buf.data() + 64, 4);
      ASSERT_EQ(seen, i) << "b got message " << seen << " at iteration " << i;
      std::memcpy(b.buf.data(), &i, 4);
      ASSERT_EQ(0, post(b, send_wr(i, flags), b.sge(0, 4)));
      got = wait_recv(a);
      ASSERT_EQ(got.wr_id, 1000u + i);
      std::memcpy(&seen, a.buf.data() + 64, 4);
      ASSERT_EQ(seen, i);
    }
  }
  // The next receive completion of s; send completions on the way are checked and skipped.
  Wc wait_recv(Side& s) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    Wc wc{};
    while (std::chrono::steady_clock::now() < deadline) {
      if (s.dev->poll_cq(s.cq, &wc, 1) != 1) continue;
      if (wc.status != WcStatus::kSuccess) break;
      if (wc.opcode == WcOpcode::kRecv) return wc;
    }
    ADD_FAILURE() << "no receive completion: " << name(wc.status);
    return Wc{};
  }
};

TEST_P(AckRequestTest, UnsignaledPingPongAsksForAnAckEvery32Messages) {
  make(options(true));
  constexpr uint32_t kIterations = 256;
  ping_pong(kIterations, 0);
  // One ACK per 32 packets (ackreq_every), plus one per probe if the machine stalled a side
  // for kAckProbeNs; sending one with every message would be 256.
  auto qa = counters(a), qb = counters(b);
  EXPECT_GE(qb.acks_sent, kIterations / 32);
  EXPECT_LE(qb.acks_sent, kIterations / 32 + qa.ack_probes);
  EXPECT_LE(qa.acks_sent, kIterations / 32 + qb.ack_probes);
  EXPECT_EQ(qa.timeouts + qb.timeouts, 0u);
}

TEST_P(AckRequestTest, SignaledMessagesAreEachAcknowledged) {
  make(options(true));
  constexpr uint32_t kIterations = 64;
  ping_pong(kIterations, kSignaled);
  EXPECT_GE(counters(b).acks_sent, kIterations);
  EXPECT_GE(counters(a).acks_sent, kIterations - 1);  // the last may still wait for a reply
}

TEST_P(AckRequestTest, IdleUnaskedMessagesAreProbedAndFreeTheirSlots) {
  PairOptions o = options(true);  // a's device thread runs the probe timer
  o.max_wr = 8;                   // the fourth unacknowledged message would ask on its own
  make(o);
  for (uint32_t i = 0; i < 3; ++i) post_recv(b, i, 64 * i, 64);
  fill(a.buf, 0, 64 * 11, 3);
  for (uint32_t i = 0; i < 3; ++i) ASSERT_EQ(0, post(a, send_wr(i, 0), a.sge(64 * i, 64)));
  ASSERT_EQ(wait_for(b, 3, 10s).size(), 3u);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (counters(a).acks_received == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  EXPECT_EQ(counters(a).ack_probes, 1u);
  EXPECT_EQ(counters(a).timeouts, 0u);
  EXPECT_EQ(counters(a).retransmits, 0u) << "a probe is not a retransmission";
  for (uint32_t i = 3; i < 11; ++i) post_recv(b, i, 64 * i, 64);
  // The three slots are free again: a full queue's worth is accepted.
  SendWr wrs[8];
  Sge sges[8];
  for (uint32_t i = 0; i < 8; ++i) {
    wrs[i] = send_wr(3 + i, 0);
    sges[i] = a.sge(64 * (3 + i), 64);
    wrs[i].sg_list = &sges[i];
    wrs[i].num_sge = 1;
  }
  ASSERT_EQ(0, a.dev->post_send(a.qp, wrs, 8, nullptr));
  auto got = wait_for(b, 8, 10s);
  ASSERT_EQ(got.size(), 8u);
  for (uint32_t i = 0; i < 8; ++i) EXPECT_EQ(got[i].wr_id, 3u + i);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 64 * 11));
  EXPECT_TRUE(drain(a, 5ms).empty()) << "unsignaled WRs complete silently";
}

TEST_P(AckRequestTest, InvalidationBehindAnUnaskedMessageProbesAtOnce) {
  make(options(false));  // only the polls below drive the engines: nothing fires on a timer
  // A region registered through the send queue, to be invalidated behind the SEND.
  int err = 0;
  Mr* fr = a.dev->alloc_fast_reg_mr(a.pd, 1, &err);
  ASSERT_TRUE(fr) << err;
  uint64_t page = (a.addr(0) + 8191) & ~uint64_t{4095};
  Sge run{page, 4096, 0};
  uint32_t key = next_key(fr->lkey);
  SendWr reg;
  reg.wr_id = 0;
  reg.opcode = WrOpcode::kRegMr;
  reg.flags = kSignaled;
  reg.sg_list = &run;
  reg.num_sge = 1;
  reg.reg = {fr->lkey, key, 0x10000, mem::kLocalWrite};
  ASSERT_EQ(0, a.dev->post_send(a.qp, &reg, 1, nullptr));
  auto regc = pump_for_a(1);
  ASSERT_EQ(regc.size(), 1u);
  ASSERT_EQ(regc[0].status, WcStatus::kSuccess) << name(regc[0].status);
  post_recv(b, 1, 0, 64);
  fill(a.buf, 0, 64, 5);
  ASSERT_EQ(0, post(a, send_wr(1, 0), a.sge(0, 64)));
  ASSERT_EQ(wait_for(b, 1, 5s).size(), 1u);
  EXPECT_EQ(counters(a).ack_probes, 0u);
  SendWr inv;
  inv.wr_id = 2;
  inv.opcode = WrOpcode::kLocalInv;
  inv.flags = kSignaled;
  inv.imm_data = key;
  ASSERT_EQ(0, post(a, inv, {}));
  // The post itself found the invalidation waiting and asked; no timer was involved.
  EXPECT_EQ(counters(a).ack_probes, 1u);
  auto wc = pump_for_a(1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].wr_id, 2u);
  EXPECT_EQ(wc[0].status, WcStatus::kSuccess) << name(wc[0].status);
  EXPECT_EQ(counters(b).duplicates, 1u) << "the probe is the message again";
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 64));
}

INSTANTIATE_TEST_SUITE_P(Links, AckRequestTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "SharedMemory" : "Udp"; });

// A link that loses the next frames it is told to (from any thread: the engine's lock holder).
class DropNextLink final : public link::Link {
 public:
  explicit DropNextLink(std::unique_ptr<link::Link> inner) : inner_(std::move(inner)) {}
  std::atomic<int> drop{0};
  size_t send(const link::TxFrame* frames, size_t n) override {
    size_t skip = 0;
    while (skip < n && drop.load() > 0) {
      drop.fetch_sub(1);
      ++skip;
    }
    return skip == n ? n : skip + inner_->send(frames + skip, n - skip);
  }
  size_t recv(link::RxFrame* frames, size_t n) override { return inner_->recv(frames, n); }
  int fd() const override { return inner_->fd(); }
  link::Endpoint local() const override { return inner_->local(); }
  uint64_t service(uint64_t now_ns) override { return inner_->service(now_ns); }
  const link::LinkCounters& counters() const override { return inner_->counters(); }
  std::string describe() const override { return "drop-next over " + inner_->describe(); }

 private:
  std::unique_ptr<link::Link> inner_;
};

TEST(AckRequestLoss, LostUnaskedLastMessageIsRecoveredByTheProbe) {
  PairOptions o;
  o.timeout = 14;
  o.shm = false;
  Side a, b;
  std::string e;
  auto udp = link::UdpLink::open_auto_loopback(DeviceConfig{}.port, &e);
  ASSERT_TRUE(udp) << e;
  auto dropper = std::make_unique<DropNextLink>(std::move(udp));
  DropNextLink* drop = dropper.get();
  DeviceConfig cfg;
  cfg.mtu = 4096;
  a.dev = Device::open_with_link(cfg, std::move(dropper), &e);
  ASSERT_TRUE(a.dev) << e;
  ASSERT_TRUE(make_objects(a, o));
  setup_side(b, o, std::nullopt);
  connect(a, b, o);
  connect(b, a, o);
  Sge rsg[3] = {b.sge(0, 64), b.sge(64, 64), b.sge(128, 64)};
  for (uint64_t i = 0; i < 3; ++i) {
    RecvWr wr{i, &rsg[i], 1};
    ASSERT_EQ(0, b.dev->post_recv(b.qp, &wr, 1, nullptr));
  }
  fill(a.buf, 0, 192, 9);
  auto send = [&](uint64_t i) {
    SendWr wr = send_wr(i, 0);
    Sge sg = a.sge(64 * i, 64);
    wr.sg_list = &sg;
    wr.num_sge = 1;
    return a.dev->post_send(a.qp, &wr, 1, nullptr);
  };
  ASSERT_EQ(0, send(0));
  ASSERT_EQ(0, send(1));
  ASSERT_EQ(wait_for(b, 2, 5s).size(), 2u);
  drop->drop = 1;
  ASSERT_EQ(0, send(2));  // lost, and it asked for no ACK: only the probe brings it
  auto got = wait_for(b, 1, 10s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].wr_id, 2u);
  EXPECT_EQ(got[0].status, WcStatus::kSuccess) << name(got[0].status);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 192));
  EXPECT_TRUE(drain(b, 5ms).empty()) << "exactly once";
  auto qa = qp_counters_of(*a.dev, a.qp->qpn());
  EXPECT_EQ(qa.ack_probes, 1u);
  EXPECT_EQ(qa.timeouts, 0u);
  EXPECT_EQ(qp_counters_of(*b.dev, b.qp->qpn()).duplicates, 0u);
}

}  // namespace
}  // namespace softrdma::test
