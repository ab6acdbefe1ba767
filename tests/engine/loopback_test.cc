// QPs of one device connected to each other (the device talks to itself), over IPv4 and IPv6.
#include "common/pair.h"

namespace softrdma::test {
namespace {

class SelfLoopTest : public ::testing::TestWithParam<const char*> {};

TEST_P(SelfLoopTest, SendWriteReadAtomicToItself) {
  DeviceConfig cfg;
  cfg.address = wire::IpAddr::parse(GetParam());
  cfg.port = 0;
  std::string err;
  auto dev = Device::open(cfg, &err);
  if (!dev) GTEST_SKIP() << "no " << GetParam() << ": " << err;
  PairOptions o;
  Side a, b;
  // Both sides share the device: build them by hand.
  for (Side* s : {&a, &b}) {
    s->pd = dev->alloc_pd();
    int e = 0;
    s->cq = dev->create_cq(256, nullptr, nullptr, &e);
    QpInitAttr init;
    init.send_cq = init.recv_cq = s->cq;
    init.cap = {64, 64, 2, 2, 0};
    s->qp = dev->create_qp(s->pd, init, &e);
    s->buf.assign(1 << 16, 0);
    s->mr = dev->reg_mr(s->pd, s->buf.data(), s->buf.size(), o.access, &e);
    ASSERT_TRUE(s->qp && s->mr);
  }
  // connect() wants a unique_ptr per side; lend the device to both. The guard, destroyed
  // before the sides (on every exit path), takes the loan back and closes the device while
  // both buffers still exist.
  a.dev.reset(dev.release());
  b.dev.reset(a.dev.get());
  struct Loan {
    Side& a;
    Side& b;
    ~Loan() {
      (void)b.dev.release();
      a.dev.reset();
    }
  } loan{a, b};
  connect(a, b, o, 100, 200);
  connect(b, a, o, 200, 100);
  fill(a.buf, 0, 5000, 1);
  Sge rs = b.sge(0, 8192);
  RecvWr rwr{1, &rs, 1};
  ASSERT_EQ(0, b.dev->post_recv(b.qp, &rwr, 1, nullptr));
  Sge sg = a.sge(0, 5000);
  SendWr wr;
  wr.opcode = WrOpcode::kSend;
  wr.flags = kSignaled;
  wr.sg_list = &sg;
  wr.num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(a.qp, &wr, 1, nullptr));
  auto got = wait_for(a, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status, WcStatus::kSuccess);
  auto rgot = wait_for(b, 1);
  ASSERT_EQ(rgot.size(), 1u);
  EXPECT_EQ(rgot[0].byte_len, 5000u);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 5000));
  // READ it back into another place of a.
  wr.opcode = WrOpcode::kRdmaRead;
  wr.rdma.remote_addr = b.addr(0);
  wr.rdma.rkey = b.mr->rkey;
  sg = a.sge(20000, 5000);
  ASSERT_EQ(0, a.dev->post_send(a.qp, &wr, 1, nullptr));
  got = wait_for(a, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status, WcStatus::kSuccess);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), a.buf.data() + 20000, 5000));
}

INSTANTIATE_TEST_SUITE_P(Families, SelfLoopTest, ::testing::Values("127.0.0.1", "::1"),
                         [](const auto& info) { return std::string(info.param)[0] == ':' ? "IPv6" : "IPv4"; });

}  // namespace
}  // namespace softrdma::test
