// 24-bit PSN wrap-around (IBA 9.7.1): connections that start just below 0xffffff carry
// multi-packet SENDs, WRITEs, READs (whose responses also take PSNs) and atomics across the wrap
// to 0, in both directions, without and with loss.
#include "common/pair.h"

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

struct WrapParam {
  const char* name;
  uint32_t a_psn, b_psn;  // sq_psn of a (= rq_psn of b), and of b
  double loss;
};

void PrintTo(const WrapParam& p, std::ostream* os) { *os << p.name; }

class PsnWrapTest : public PairTest, public ::testing::WithParamInterface<WrapParam> {};

TEST_P(PsnWrapTest, MixedTrafficCrossesTheWrap) {
  const WrapParam& p = GetParam();
  PairOptions o;
  o.timeout = 8;
  o.mtu = 1024;
  o.buf_size = 8 << 20;
  o.infer_ipv4_id = false;
  if (p.loss > 0) {
    link::FaultConfig fa, fb;
    fa.seed = 3;
    fa.loss = p.loss;
    fb.seed = 4;
    fb.loss = p.loss;
    o.fault_a = fa;
    o.fault_b = fb;
  }
  opt = o;
  setup_side(a, o, o.fault_a);
  setup_side(b, o, o.fault_b);
  connect(a, b, o, p.a_psn, p.b_psn);
  connect(b, a, o, p.b_psn, p.a_psn);
  struct Dump {
    Side *a, *b;
    ~Dump() {
      if (::testing::Test::HasFailure()) {
        dump_counters(*a->dev, "a");
        dump_counters(*b->dev, "b");
      }
    }
  } dump{&a, &b};

  constexpr int kN = 240;          // a -> b: about 1000 PSNs
  constexpr int kBack = 60;        // b -> a WRITEs: 4 packets each
  constexpr size_t kSlot = 8192;   // per-message source slots, never reused
  constexpr size_t kRecvArea = 0, kSrcArea = 2 << 20, kWriteArea = 4 << 20, kReadSrc = 6 << 20;
  constexpr size_t kCounter = (8 << 20) - 64;
  fill(b.buf, kReadSrc, 8192, 0x5a);
  std::vector<uint32_t> lens(kN);
  int recvs = 0;
  for (int i = 0; i < kN; ++i) {
    if (i % 4 == 0) post_recv(b, i, kRecvArea + size_t(recvs++) * 8192, 8192);
  }
  // b -> a WRITEs, started first so both directions cross the wrap at the same time.
  fill(b.buf, kSrcArea, 4096, 0x77);
  for (int i = 0; i < kBack; ++i) {
    SendWr w;
    w.wr_id = i;
    w.opcode = WrOpcode::kRdmaWrite;
    w.flags = kSignaled;
    w.rdma.remote_addr = a.addr(kWriteArea + size_t(i) * 4096);
    w.rdma.rkey = a.mr->rkey;
    ASSERT_EQ(0, post(b, w, b.sge(kSrcArea, 4096)));
  }
  for (int i = 0; i < kN; ++i) {
    SendWr wr;
    wr.wr_id = i;
    wr.flags = kSignaled;
    size_t src = kSrcArea + size_t(i) * kSlot;
    uint32_t len = 1 + uint32_t(i * 7919) % 8192;
    lens[i] = len;
    Sge sg = a.sge(src, len);
    switch (i % 4) {
      case 0:
        wr.opcode = WrOpcode::kSend;
        fill(a.buf, src, len, i);
        break;
      case 1:
        wr.opcode = WrOpcode::kRdmaWrite;
        wr.rdma.remote_addr = b.addr(kWriteArea + size_t(i) * 8192);
        wr.rdma.rkey = b.mr->rkey;
        fill(a.buf, src, len, i);
        break;
      case 2:
        wr.opcode = WrOpcode::kRdmaRead;
        wr.rdma.remote_addr = b.addr(kReadSrc);
        wr.rdma.rkey = b.mr->rkey;
        sg = a.sge(kReadSrc + size_t(i) * 8192 % (1 << 20), 8192);
        lens[i] = 8192;
        break;
      case 3:
        wr.opcode = WrOpcode::kFetchAdd;
        wr.atomic.remote_addr = b.addr(kCounter);
        wr.atomic.rkey = b.mr->rkey;
        wr.atomic.compare_add = 1;
        sg = a.sge(kCounter - 8 * size_t(i), 8);
        break;
    }
    ASSERT_EQ(0, post(a, wr, sg)) << i;
  }
  auto sc = wait_for(a, kN, 30s);
  ASSERT_EQ(sc.size(), size_t(kN));
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(sc[i].wr_id, uint64_t(i)) << "completions out of order";
    ASSERT_EQ(sc[i].status, WcStatus::kSuccess) << name(sc[i].status) << " wr " << i;
  }
  auto bc = wait_for(b, kBack + kN / 4, 30s);
  ASSERT_EQ(bc.size(), size_t(kBack + kN / 4));
  int back = 0, recv = 0;
  for (auto& w : bc) {
    ASSERT_EQ(w.status, WcStatus::kSuccess) << name(w.status);
    if (w.opcode == WcOpcode::kRecv) {
      int i = int(w.wr_id);
      ASSERT_EQ(i, recv * 4) << "receives out of order";
      ASSERT_EQ(w.byte_len, lens[i]);
      std::vector<uint8_t> expect(lens[i]);
      fill(expect, 0, lens[i], i);
      EXPECT_EQ(0, std::memcmp(b.buf.data() + kRecvArea + size_t(recv) * 8192, expect.data(), lens[i])) << i;
      ++recv;
    } else {
      ASSERT_EQ(w.wr_id, uint64_t(back++));
    }
  }
  for (int i = 1; i < kN; i += 4) {
    std::vector<uint8_t> expect(lens[i]);
    fill(expect, 0, lens[i], i);
    EXPECT_EQ(0, std::memcmp(b.buf.data() + kWriteArea + size_t(i) * 8192, expect.data(), lens[i])) << "WRITE " << i;
  }
  for (int i = 2; i < kN; i += 4)
    EXPECT_EQ(0, std::memcmp(a.buf.data() + kReadSrc + size_t(i) * 8192 % (1 << 20), b.buf.data() + kReadSrc, 8192))
        << "READ " << i;
  uint64_t counter;
  std::memcpy(&counter, b.buf.data() + kCounter, 8);
  EXPECT_EQ(counter, uint64_t(kN / 4)) << "an atomic was lost or executed twice";
  for (int i = 0; i < kBack; ++i)
    EXPECT_EQ(0, std::memcmp(a.buf.data() + kWriteArea + size_t(i) * 4096, b.buf.data() + kSrcArea, 4096));
  // Both directions did cross the wrap: far more PSNs were used than were left below 2^24.
  auto ca = qp_counters_of(*a.dev, a.qp->qpn());
  auto cb = qp_counters_of(*b.dev, b.qp->qpn());
  EXPECT_GT(ca.tx_packets, 0x1000000u - p.a_psn);
  EXPECT_GT(cb.tx_packets, 0x1000000u - p.b_psn);
  if (p.loss > 0) {
    EXPECT_GT(a.dev->fault_counters().dropped, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Wrap, PsnWrapTest,
                         ::testing::Values(WrapParam{"NoLoss", 0xfffff0, 0xffff80, 0},
                                           WrapParam{"AtMax", 0xffffff, 0xffffff, 0},
                                           WrapParam{"Loss5", 0xfffff0, 0xffff80, 0.05},
                                           WrapParam{"Loss5AtMax", 0xffffff, 0xfffffe, 0.05}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace softrdma::test
