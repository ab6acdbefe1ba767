// Memory regions as the remote and local side name them: by an I/O virtual address given at
// registration, by offset (zero-based regions), and keys that change with every registration.
#include "common/pair.h"

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

class MrTest : public PairTest {
 protected:
  int write(uint64_t id, const Sge& local, uint64_t raddr, uint32_t rkey, WrOpcode op = WrOpcode::kRdmaWrite) {
    SendWr wr;
    wr.wr_id = id;
    wr.opcode = op;
    wr.flags = kSignaled;
    wr.rdma.remote_addr = raddr;
    wr.rdma.rkey = rkey;
    wr.sg_list = &local;
    wr.num_sge = 1;
    return a.dev->post_send(a.qp, &wr, 1, nullptr);
  }
};

// A region registered at iova 0x7000_0000_0000 is addressed by that iova, remotely and locally.
TEST_F(MrTest, RegionsAreAddressedByTheirIova) {
  make();
  std::vector<uint8_t> rbuf(65536, 0), lbuf(65536, 0);
  int err = 0;
  const uint64_t riova = 0x700000000000ull, liova = 0x123400000000ull;
  Mr* rmr = b.dev->reg_mr(b.pd, rbuf.data(), rbuf.size(), opt.access, &err, riova);
  ASSERT_TRUE(rmr) << err;
  Mr* lmr = a.dev->reg_mr(a.pd, lbuf.data(), lbuf.size(), mem::kLocalWrite, &err, liova);
  ASSERT_TRUE(lmr) << err;
  EXPECT_EQ(rmr->iova, riova);
  fill(lbuf, 0, 5000, 3);
  ASSERT_EQ(0, write(1, Sge{liova + 0, 5000, lmr->lkey}, riova + 1000, rmr->rkey));
  // READ it back elsewhere, by iova on both sides.
  ASSERT_EQ(0, write(2, Sge{liova + 20000, 5000, lmr->lkey}, riova + 1000, rmr->rkey, WrOpcode::kRdmaRead));
  auto sc = wait_for(a, 2, 5s);
  ASSERT_EQ(sc.size(), 2u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  EXPECT_EQ(sc[1].status, WcStatus::kSuccess) << name(sc[1].status);
  EXPECT_EQ(0, std::memcmp(rbuf.data() + 1000, lbuf.data(), 5000));
  EXPECT_EQ(0, std::memcmp(lbuf.data() + 20000, lbuf.data(), 5000));
  // The process address of the buffer is not a valid address for that key.
  ASSERT_EQ(0, write(3, Sge{liova, 8, lmr->lkey}, reinterpret_cast<uint64_t>(rbuf.data()), rmr->rkey));
  sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRemAccessErr) << name(sc[0].status);
}

// A zero-based region is addressed by offset from its start.
TEST_F(MrTest, ZeroBasedRegionIsAddressedByOffset) {
  make();
  std::vector<uint8_t> rbuf(8192, 0);
  int err = 0;
  Mr* rmr = b.dev->reg_mr(b.pd, rbuf.data(), rbuf.size(), opt.access | mem::kZeroBased, &err);
  ASSERT_TRUE(rmr) << err;
  fill(a.buf, 0, 3000, 4);
  ASSERT_EQ(0, write(1, a.sge(0, 3000), 100, rmr->rkey));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  EXPECT_EQ(0, std::memcmp(rbuf.data() + 100, a.buf.data(), 3000));
  // Offset 8192 - 10 + 3000 runs past the end.
  ASSERT_EQ(0, write(2, a.sge(0, 3000), 8192 - 10, rmr->rkey));
  sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRemAccessErr) << name(sc[0].status);
}

// Registering the same memory again gives a different key, and the old one is refused.
TEST_F(MrTest, KeysChangeWithEveryRegistration) {
  make();
  std::vector<uint8_t> rbuf(4096, 0);
  int err = 0;
  Mr* m1 = b.dev->reg_mr(b.pd, rbuf.data(), rbuf.size(), opt.access, &err);
  ASSERT_TRUE(m1);
  uint32_t old_key = m1->rkey;
  ASSERT_EQ(0, b.dev->dereg_mr(m1));
  Mr* m2 = b.dev->reg_mr(b.pd, rbuf.data(), rbuf.size(), opt.access, &err);
  ASSERT_TRUE(m2);
  EXPECT_NE(m2->rkey, old_key);
  EXPECT_EQ(mem::MrTable::index_of(m2->rkey), mem::MrTable::index_of(old_key)) << "same table slot reused";
  ASSERT_EQ(0, write(1, a.sge(0, 64), reinterpret_cast<uint64_t>(rbuf.data()), m2->rkey));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess);
  ASSERT_EQ(0, write(2, a.sge(0, 64), reinterpret_cast<uint64_t>(rbuf.data()), old_key));
  sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRemAccessErr) << "a stale key must be refused";
}

TEST_F(MrTest, RemoteWriteOrAtomicWithoutLocalWriteIsEinval) {
  make();
  std::vector<uint8_t> buf(4096);
  int err = 0;
  EXPECT_EQ(nullptr, a.dev->reg_mr(a.pd, buf.data(), buf.size(), mem::kRemoteWrite, &err));
  EXPECT_EQ(err, EINVAL);
  EXPECT_EQ(nullptr, a.dev->reg_mr(a.pd, buf.data(), buf.size(), mem::kRemoteAtomic, &err));
  EXPECT_EQ(err, EINVAL);
  Mr* ro = a.dev->reg_mr(a.pd, buf.data(), buf.size(), mem::kRemoteRead, &err);
  EXPECT_TRUE(ro) << "remote read alone is allowed";
}

}  // namespace
}  // namespace softrdma::test
