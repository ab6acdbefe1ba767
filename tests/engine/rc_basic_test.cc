// RC data movement between two adapters: every operation, checked byte for byte.
#include "common/pair.h"

namespace softrdma::test {
namespace {

class RcTest : public PairTest {};

TEST_F(RcTest, SendRecvSingleAndMultiPacket) {
  make();
  for (uint32_t len : {0u, 1u, 3u, 1024u, 1025u, 10000u, 65536u}) {
    post_recv(b, len, 0, 65536);
    fill(a.buf, 0, len, len);
    SendWr wr;
    wr.wr_id = 100 + len;
    wr.opcode = WrOpcode::kSend;
    wr.flags = kSignaled;
    ASSERT_EQ(0, post(a, wr, a.sge(0, len)));
    auto sc = wait_for(a, 1);
    ASSERT_EQ(sc.size(), 1u);
    EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
    EXPECT_EQ(sc[0].wr_id, 100 + len);
    EXPECT_EQ(sc[0].opcode, WcOpcode::kSend);
    auto rc = wait_for(b, 1);
    ASSERT_EQ(rc.size(), 1u);
    EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
    EXPECT_EQ(rc[0].opcode, WcOpcode::kRecv);
    EXPECT_EQ(rc[0].byte_len, len);
    EXPECT_EQ(rc[0].wr_id, len);
    EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), len)) << "len " << len;
  }
}

TEST_F(RcTest, SendWithImmediateAndInline) {
  make();
  post_recv(b, 1, 0, 128);
  std::memcpy(a.buf.data(), "hello", 5);
  SendWr wr;
  wr.opcode = WrOpcode::kSendImm;
  wr.flags = kSignaled | kInline;
  wr.imm_data = 0xdeadbeef;
  ASSERT_EQ(0, post(a, wr, a.sge(0, 5)));
  std::memset(a.buf.data(), 0, 5);  // inline data was copied at post time
  auto rc = wait_for(b, 1);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
  EXPECT_TRUE(rc[0].wc_flags & kWcWithImm);
  EXPECT_EQ(rc[0].imm_data, 0xdeadbeefu);
  EXPECT_EQ(0, std::memcmp(b.buf.data(), "hello", 5));
  EXPECT_EQ(wait_for(a, 1).size(), 1u);
}

TEST_F(RcTest, RdmaWriteAndWriteWithImmediate) {
  make();
  fill(a.buf, 0, 200000, 9);
  SendWr wr;
  wr.opcode = WrOpcode::kRdmaWrite;
  wr.flags = kSignaled;
  wr.rdma.remote_addr = b.addr(4096);
  wr.rdma.rkey = b.mr->rkey;
  ASSERT_EQ(0, post(a, wr, a.sge(0, 200000)));
  auto sc = wait_for(a, 1);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(sc[0].opcode, WcOpcode::kRdmaWrite);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data() + 4096, 200000));
  EXPECT_EQ(b.dev->poll_cq(b.cq, sc.data(), 1), 0) << "a plain WRITE consumes no receive WQE";

  post_recv(b, 7, 0, 0);
  wr.opcode = WrOpcode::kRdmaWriteImm;
  wr.imm_data = 42;
  ASSERT_EQ(0, post(a, wr, a.sge(0, 3000)));
  auto rc = wait_for(b, 1);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(rc[0].opcode, WcOpcode::kRecvRdmaWithImm);
  EXPECT_EQ(rc[0].imm_data, 42u);
  EXPECT_EQ(rc[0].byte_len, 3000u);
  EXPECT_EQ(rc[0].wr_id, 7u);
}

TEST_F(RcTest, RdmaRead) {
  make();
  fill(b.buf, 8192, 100000, 3);
  SendWr wr;
  wr.opcode = WrOpcode::kRdmaRead;
  wr.flags = kSignaled;
  wr.rdma.remote_addr = b.addr(8192);
  wr.rdma.rkey = b.mr->rkey;
  ASSERT_EQ(0, post(a, wr, a.sge(100, 100000)));
  auto sc = wait_for(a, 1);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  EXPECT_EQ(sc[0].opcode, WcOpcode::kRdmaRead);
  EXPECT_EQ(sc[0].byte_len, 100000u);
  EXPECT_EQ(0, std::memcmp(a.buf.data() + 100, b.buf.data() + 8192, 100000));
}

TEST_F(RcTest, Atomics) {
  make();
  uint64_t v = 10;
  std::memcpy(b.buf.data() + 64, &v, 8);
  SendWr wr;
  wr.opcode = WrOpcode::kFetchAdd;
  wr.flags = kSignaled;
  wr.atomic.remote_addr = b.addr(64);
  wr.atomic.rkey = b.mr->rkey;
  wr.atomic.compare_add = 5;
  ASSERT_EQ(0, post(a, wr, a.sge(0, 8)));
  auto sc = wait_for(a, 1);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(sc[0].opcode, WcOpcode::kFetchAdd);
  uint64_t got;
  std::memcpy(&got, a.buf.data(), 8);
  EXPECT_EQ(got, 10u);
  std::memcpy(&got, b.buf.data() + 64, 8);
  EXPECT_EQ(got, 15u);

  wr.opcode = WrOpcode::kCompSwap;
  wr.atomic.compare_add = 15;
  wr.atomic.swap = 99;
  ASSERT_EQ(0, post(a, wr, a.sge(8, 8)));
  wr.atomic.compare_add = 15;  // fails now: value is 99
  wr.atomic.swap = 7;
  ASSERT_EQ(0, post(a, wr, a.sge(16, 8)));
  sc = wait_for(a, 2);
  ASSERT_EQ(sc.size(), 2u);
  std::memcpy(&got, a.buf.data() + 8, 8);
  EXPECT_EQ(got, 15u);
  std::memcpy(&got, a.buf.data() + 16, 8);
  EXPECT_EQ(got, 99u);
  std::memcpy(&got, b.buf.data() + 64, 8);
  EXPECT_EQ(got, 99u);
}

TEST_F(RcTest, ManyMixedInFlightCompleteInOrder) {
  make();
  constexpr int kN = 200;
  for (int i = 0; i < kN; ++i) post_recv(b, i, (i % 16) * 4096, 4096);
  fill(a.buf, 0, 1 << 19, 1);
  for (int i = 0; i < kN; ++i) {
    SendWr wr;
    wr.wr_id = i;
    wr.flags = kSignaled;
    uint32_t len = 1 + (i * 37) % 4000;
    switch (i % 3) {
      case 0: wr.opcode = WrOpcode::kSend; break;
      case 1:
        wr.opcode = WrOpcode::kRdmaWrite;
        wr.rdma.remote_addr = b.addr(1 << 19);
        wr.rdma.rkey = b.mr->rkey;
        break;
      case 2:
        wr.opcode = WrOpcode::kRdmaRead;
        wr.rdma.remote_addr = b.addr(0);
        wr.rdma.rkey = b.mr->rkey;
        break;
    }
    Sge sg = wr.opcode == WrOpcode::kRdmaRead ? a.sge(1 << 19, len) : a.sge(0, len);
    while (true) {
      int rc = post(a, wr, sg);
      if (rc == 0) break;
      ASSERT_EQ(rc, ENOMEM);
      Wc wc[8];
      a.dev->poll_cq(a.cq, wc, 0);
    }
  }
  auto sc = wait_for(a, kN);
  ASSERT_EQ(sc.size(), size_t(kN));
  for (int i = 0; i < kN; ++i) {
    EXPECT_EQ(sc[i].wr_id, uint64_t(i));
    EXPECT_EQ(sc[i].status, WcStatus::kSuccess);
  }
}

}  // namespace
}  // namespace softrdma::test
