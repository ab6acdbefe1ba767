// Counters are per device and per QP: two adapters in one process (the fixture's case, both
// with the default name) must not see each other's traffic in their counters.
#include "common/pair.h"

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

class CountersTest : public PairTest {};

TEST_F(CountersTest, TwoDevicesInOneProcessCountSeparately) {
  make();
  ASSERT_EQ(a.dev->name(), b.dev->name()) << "the fixture's devices share the default name";
  fill(a.buf, 0, 10 * 4096, 1);
  for (int i = 0; i < 10; ++i) {
    SendWr w;
    w.wr_id = i;
    w.opcode = WrOpcode::kRdmaWrite;
    w.flags = kSignaled;
    w.rdma.remote_addr = b.addr(size_t(i) * 4096);
    w.rdma.rkey = b.mr->rkey;
    ASSERT_EQ(0, post(a, w, a.sge(size_t(i) * 4096, 4096)));
  }
  auto sc = wait_for(a, 10, 5s);
  ASSERT_EQ(sc.size(), 10u);
  auto da = a.dev->counters();
  auto db = b.dev->counters();
  auto qa = qp_counters_of(*a.dev, a.qp->qpn());
  auto qb = qp_counters_of(*b.dev, b.qp->qpn());
  // a sent 40 KiB of payload, b only ACKs.
  EXPECT_GE(da.tx_bytes, 40960u);
  EXPECT_LT(db.tx_bytes, 40960u / 4) << "b's device counters show a's traffic (shared stats area?)";
  EXPECT_GE(db.rx_bytes, 40960u);
  EXPECT_LT(da.rx_bytes, 40960u / 4);
  EXPECT_GE(qa.tx_bytes, 40960u);  // more if a spurious timeout resent some
  EXPECT_EQ(qb.tx_bytes, 0u) << "b's QP counters show a's QP's traffic";
  EXPECT_GE(qb.rx_bytes, 40960u);
  EXPECT_EQ(qa.rx_bytes, 0u);
  EXPECT_GT(qb.acks_sent, 0u);
  EXPECT_EQ(qa.acks_sent, 0u);
  EXPECT_GT(qa.acks_received, 0u);
  EXPECT_EQ(qb.acks_received, 0u);
}

}  // namespace
}  // namespace softrdma::test
