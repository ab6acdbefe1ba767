// Reliability under faults: every message of a long mixed stream arrives exactly once, in
// order, byte-exact, with the right completions, through loss, reordering, duplication and
// corruption on both directions.
#include "common/pair.h"

#include <random>

namespace softrdma::test {
namespace {

struct FaultParam {
  double loss, reorder, dup, corrupt;
  int messages;
};

class FaultTest : public PairTest, public ::testing::WithParamInterface<FaultParam> {};

link::FaultConfig fault_of(const FaultParam& p, uint64_t seed) {
  link::FaultConfig f;
  f.seed = seed;
  f.loss = p.loss;
  f.reorder = p.reorder;
  f.duplicate = p.dup;
  f.corrupt = p.corrupt;
  return f;
}

// Each SEND carries its sequence number and a pattern derived from it; WRITEs and READs move
// a region whose content is checked after the stream; atomics count.
TEST_P(FaultTest, MixedStreamArrivesExactlyOnceInOrder) {
  const FaultParam& p = GetParam();
  PairOptions o;
  o.fault_a = fault_of(p, 11);
  o.fault_b = fault_of(p, 22);
  o.timeout = 8;  // ~1 ms
  o.max_wr = 512;
  o.buf_size = 16 << 20;
  o.infer_ipv4_id = false;
  make(o);
  struct Dump {
    PairTest* t; Side *a, *b;
    ~Dump() { if (::testing::Test::HasFailure()) { dump_counters(*a->dev, "a"); dump_counters(*b->dev, "b"); } }
  } dump{this, &a, &b};
  // Ignore ICRC-inferred IPv4 IDs here: our own peers always send ID 0, and accepting a
  // corrupted packet whose CRC happens to match some ID (1 in 65536) would corrupt data.
  std::mt19937 rng(5);
  const int n = p.messages;
  constexpr size_t kRecvSlot = 16384;
  constexpr int kRecvSlots = 128;
  int recv_posted = 0, recv_done = 0, sends = 0, send_done = 0, posted = 0;
  uint64_t counter_expect = 0;
  // Receive side expectations, in order.
  std::vector<std::pair<uint32_t, uint32_t>> send_meta;  // (seq, len)
  auto post_recvs = [&] {
    while (recv_posted - recv_done < kRecvSlots && recv_posted < n) {
      post_recv(b, recv_posted, (recv_posted % kRecvSlots) * kRecvSlot, kRecvSlot);
      ++recv_posted;
    }
  };
  post_recvs();
  constexpr size_t kSrcSlot = 9216;  // a source buffer is not reused while its WQE is outstanding
  fill(b.buf, 6 << 20, 8192, 77);
  std::vector<uint8_t> scratch(kSrcSlot);
  uint64_t write_area = b.addr(2 << 20);
  Wc wc[64];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  std::vector<uint8_t> expect_write(1 << 20, 0);
  while ((send_done < n || recv_done < sends) && std::chrono::steady_clock::now() < deadline) {
    // Post more work while the send queue has room.
    while (posted < n && posted - send_done < 400) {
      SendWr wr;
      wr.wr_id = posted;
      wr.flags = kSignaled;
      uint32_t len = std::uniform_int_distribution<uint32_t>(0, 9000)(rng);
      int kind = posted % 10;
      Sge sg{};
      if (kind < 5) {  // SEND
        wr.opcode = (kind == 4) ? WrOpcode::kSendImm : WrOpcode::kSend;
        wr.imm_data = posted;
        len = std::max<uint32_t>(len, 4);
        size_t off = (posted % 512) * kSrcSlot;
        fill(a.buf, off, len, posted);
        std::memcpy(a.buf.data() + off, &posted, 4);
        sg = a.sge(off, len);
        send_meta.push_back({uint32_t(posted), len});
        ++sends;
      } else if (kind < 8) {  // WRITE into a distinct 8 KiB area per message slot
        wr.opcode = WrOpcode::kRdmaWrite;
        len = std::min<uint32_t>(len, 8192);
        size_t off = (posted % 128) * 8192;
        size_t src = (5 << 20) + (posted % 512) * 8192;
        fill(a.buf, src, len, posted);
        std::memcpy(expect_write.data() + off, a.buf.data() + src, len);
        wr.rdma.remote_addr = write_area + off;
        wr.rdma.rkey = b.mr->rkey;
        sg = a.sge(src, len);
      } else if (kind == 8) {  // READ back the first 8 KiB of b
        wr.opcode = WrOpcode::kRdmaRead;
        wr.rdma.remote_addr = b.addr(6 << 20);
        wr.rdma.rkey = b.mr->rkey;
        sg = a.sge((10 << 20) + (posted % 64) * 8192, 8192);
      } else {  // FETCH_ADD 1
        wr.opcode = WrOpcode::kFetchAdd;
        wr.atomic.remote_addr = b.addr(7 << 20);
        wr.atomic.rkey = b.mr->rkey;
        wr.atomic.compare_add = 1;
        sg = a.sge((11 << 20) + (posted % 64) * 8, 8);
        ++counter_expect;
      }
      if (post(a, wr, sg) != 0) break;
      ++posted;
    }
    int got = a.dev->poll_cq(a.cq, wc, 64);
    for (int i = 0; i < got; ++i) {
      ASSERT_EQ(wc[i].status, WcStatus::kSuccess) << name(wc[i].status) << " wr " << wc[i].wr_id;
      ASSERT_EQ(wc[i].wr_id, uint64_t(send_done)) << "send completions out of order";
      if (wc[i].opcode == WcOpcode::kRdmaRead) {
        size_t dst = (10 << 20) + (wc[i].wr_id % 64) * 8192;
        ASSERT_EQ(0, std::memcmp(a.buf.data() + dst, b.buf.data() + (6 << 20), 8192)) << "READ data wrong";
      }
      ++send_done;
    }
    got = b.dev->poll_cq(b.cq, wc, 64);
    for (int i = 0; i < got; ++i) {
      ASSERT_EQ(wc[i].status, WcStatus::kSuccess) << name(wc[i].status);
      ASSERT_EQ(wc[i].wr_id, uint64_t(recv_done));
      ASSERT_LT(size_t(recv_done), send_meta.size());
      auto [seq, len] = send_meta[recv_done];
      ASSERT_EQ(wc[i].byte_len, len) << "message " << seq;
      const uint8_t* got_data = b.buf.data() + (recv_done % kRecvSlots) * kRecvSlot;
      std::vector<uint8_t> expect(len);
      fill(expect, 0, len, seq);
      std::memcpy(expect.data(), &seq, 4);
      const uint8_t* sent = expect.data();
      uint32_t first;
      std::memcpy(&first, got_data, 4);
      ASSERT_EQ(first, seq) << "message arrived out of order or twice";
      ASSERT_EQ(0, std::memcmp(got_data + 4, sent + 4, len - 4)) << "message " << seq << " corrupted";
      ++recv_done;
    }
    post_recvs();
  }
  ASSERT_EQ(send_done, n) << "stream did not finish in time";
  ASSERT_EQ(recv_done, sends);
  uint64_t counter;
  std::memcpy(&counter, b.buf.data() + (7 << 20), 8);
  EXPECT_EQ(counter, counter_expect) << "an atomic was executed twice or lost";
  EXPECT_EQ(0, std::memcmp(expect_write.data(), b.buf.data() + (2 << 20), expect_write.size()));
  auto fa = a.dev->fault_counters();
  auto ca = a.dev->counters();
  auto cb = b.dev->counters();
  std::printf("faults a->b: dropped %lu corrupted %lu duplicated %lu reordered %lu; drops at b: icrc %lu\n",
              (unsigned long)fa.dropped, (unsigned long)fa.corrupted, (unsigned long)fa.duplicated,
              (unsigned long)fa.reordered, (unsigned long)cb.drop_icrc);
  (void)ca;
  if (p.loss > 0) {
    EXPECT_GT(fa.dropped, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Faults, FaultTest,
                         ::testing::Values(FaultParam{0.05, 0.02, 0.01, 0.01, 10000},
                                           FaultParam{0.20, 0.0, 0.0, 0.0, 3000}),
                         [](const auto& info) { return info.param.loss > 0.1 ? "Loss20" : "Mixed5"; });

}  // namespace
}  // namespace softrdma::test
