// Posting rules and their errno results (nothing already accepted is lost), and selective
// signaling of send completions.
#include "common/pair.h"

#include <thread>

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;
using namespace transport;

// ---- posting ------------------------------------------------------------------------------

class PostTest : public PairTest {};

TEST_F(PostTest, TooManySgesStopsAtTheBadOneAndKeepsTheRest) {
  make(fast());
  // Receive side: the second WR of the list has 5 SGEs (max 4).
  Sge rsg[5] = {b.sge(0, 100), b.sge(100, 100), b.sge(200, 100), b.sge(300, 100), b.sge(400, 100)};
  RecvWr rwr[3] = {{1, rsg, 1}, {2, rsg, 5}, {3, rsg, 1}};
  size_t bad = 99;
  EXPECT_EQ(EINVAL, b.dev->post_recv(b.qp, rwr, 3, &bad));
  EXPECT_EQ(bad, 1u);
  // Send side likewise.
  Sge ssg[5] = {a.sge(0, 10), a.sge(10, 10), a.sge(20, 10), a.sge(30, 10), a.sge(40, 10)};
  SendWr swr[3];
  for (int i = 0; i < 3; ++i) {
    swr[i].wr_id = 10 + i;
    swr[i].opcode = WrOpcode::kSend;
    swr[i].flags = kSignaled;
    swr[i].sg_list = ssg;
    swr[i].num_sge = i == 1 ? 5 : 4;
  }
  fill(a.buf, 0, 40, 1);
  bad = 99;
  EXPECT_EQ(EINVAL, a.dev->post_send(a.qp, swr, 3, &bad));
  EXPECT_EQ(bad, 1u);
  // The WR before the bad one was accepted and is carried out, into the receive accepted before
  // the bad receive.
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].wr_id, 10u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].wr_id, 1u);
  EXPECT_EQ(rc[0].byte_len, 40u);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 40));
  EXPECT_TRUE(drain(a, 20ms).empty());
  EXPECT_TRUE(drain(b, 1ms).empty());
}

TEST_F(PostTest, FullSendQueueIsEnomemAndLosesNothingAccepted) {
  PairOptions o = fast();
  o.max_wr = 4;
  make(o);
  // No receive is posted at b yet: the SENDs stay in a's send queue (RNR, retried forever).
  Sge sg = a.sge(0, 16);
  SendWr wrs[6];
  for (int i = 0; i < 6; ++i) {
    wrs[i].wr_id = i;
    wrs[i].flags = kSignaled;
    wrs[i].sg_list = &sg;
    wrs[i].num_sge = 1;
  }
  size_t bad = 99;
  EXPECT_EQ(ENOMEM, a.dev->post_send(a.qp, wrs, 6, &bad));
  EXPECT_EQ(bad, 4u);
  bad = 99;
  EXPECT_EQ(ENOMEM, a.dev->post_send(a.qp, &wrs[4], 1, &bad));
  EXPECT_EQ(bad, 0u);
  // Receive queue: 4 slots too.
  Sge rsg = b.sge(0, 64);
  RecvWr rwr[6];
  for (int i = 0; i < 6; ++i) rwr[i] = RecvWr{uint64_t(100 + i), &rsg, 1};
  bad = 99;
  EXPECT_EQ(ENOMEM, b.dev->post_recv(b.qp, rwr, 6, &bad));
  EXPECT_EQ(bad, 4u);
  auto sc = wait_for(a, 4, 5s);
  ASSERT_EQ(sc.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(sc[i].wr_id, uint64_t(i));
    EXPECT_EQ(sc[i].status, WcStatus::kSuccess) << name(sc[i].status);
  }
  auto rc = wait_for(b, 4, 5s);
  ASSERT_EQ(rc.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(rc[i].wr_id, uint64_t(100 + i));
  EXPECT_TRUE(drain(a, 20ms).empty()) << "refused WRs must not be carried out";
  // Space is back.
  EXPECT_EQ(0, a.dev->post_send(a.qp, wrs, 4, nullptr));
  EXPECT_EQ(0, b.dev->post_recv(b.qp, rwr, 4, nullptr));
  EXPECT_EQ(wait_for(a, 4, 5s).size(), 4u);
}

TEST_F(PostTest, InlineLargerThanMaxInlineIsEinval) {
  make(fast());
  QpAttr attr;
  QpInitAttr init;
  ASSERT_EQ(0, a.dev->query_qp(a.qp, &attr, &init));
  ASSERT_EQ(attr.cap.max_inline_data, 64u);
  post_recv(b, 1, 0, 128);
  SendWr wr;
  wr.wr_id = 1;
  wr.flags = kSignaled | kInline;
  Sge big = a.sge(0, 65);
  wr.sg_list = &big;
  wr.num_sge = 1;
  size_t bad = 99;
  EXPECT_EQ(EINVAL, a.dev->post_send(a.qp, &wr, 1, &bad));
  EXPECT_EQ(bad, 0u);
  // Exactly max_inline_data, in two pieces, is fine, and copied at post time.
  fill(a.buf, 0, 64, 8);
  std::vector<uint8_t> sent(a.buf.begin(), a.buf.begin() + 64);
  Sge two[2] = {a.sge(0, 30), a.sge(30, 34)};
  wr.wr_id = 2;
  wr.sg_list = two;
  wr.num_sge = 2;
  ASSERT_EQ(0, a.dev->post_send(a.qp, &wr, 1, &bad));
  std::memset(a.buf.data(), 0, 64);
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].wr_id, 2u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess);
  auto rc = wait_for(b, 1, 5s);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].byte_len, 64u);
  EXPECT_EQ(0, std::memcmp(sent.data(), b.buf.data(), 64));
}

// ---- selective signaling ------------------------------------------------------------------

class UnsignaledTest : public PairTest {};

TEST_F(UnsignaledTest, NoCompletionUntilTheNextSignaledOne) {
  make(fast());
  fill(a.buf, 0, 8 * 4096, 3);
  for (int i = 0; i < 8; ++i) {
    SendWr w = write_wr(i, b.addr(i * 4096), b.mr->rkey, 0);
    ASSERT_EQ(0, post(a, w, a.sge(i * 4096, 4096)));
  }
  EXPECT_TRUE(drain(a, 30ms).empty()) << "unsignaled WRs produce no completion";
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 8 * 4096)) << "but they were carried out";
  SendWr w = write_wr(100, b.addr(100000), b.mr->rkey);
  ASSERT_EQ(0, post(a, w, a.sge(0, 10)));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].wr_id, 100u);
  EXPECT_EQ(sc[0].status, WcStatus::kSuccess);
  EXPECT_TRUE(drain(a, 10ms).empty());
}

// More WRs than the send queue holds, signaled every 8th: the queue never stays full, because a
// signaled completion retires the unsignaled WRs before it.
TEST_F(UnsignaledTest, SendQueueSpaceIsRecycled) {
  PairOptions o = fast();
  o.max_wr = 16;
  make(o);
  constexpr int kN = 2000, kEvery = 8, kSlots = 64;
  fill(a.buf, 0, kSlots * 1024, 4);
  std::vector<Wc> done;
  Wc wc[16];
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (int i = 0; i < kN && std::chrono::steady_clock::now() < deadline;) {
    uint32_t flags = (i % kEvery == kEvery - 1) ? uint32_t{kSignaled} : 0u;
    SendWr w = write_wr(i, b.addr((i % kSlots) * 1024), b.mr->rkey, flags);
    int rc = post(a, w, a.sge((i % kSlots) * 1024, 1024));
    if (rc == 0) {
      ++i;
      continue;
    }
    ASSERT_EQ(rc, ENOMEM);
    int got = a.dev->poll_cq(a.cq, wc, 16);
    for (int k = 0; k < got; ++k) done.push_back(wc[k]);
  }
  auto rest = wait_for(a, kN / kEvery - done.size(), 5s);
  done.insert(done.end(), rest.begin(), rest.end());
  ASSERT_EQ(done.size(), size_t(kN / kEvery));
  for (size_t k = 0; k < done.size(); ++k) {
    EXPECT_EQ(done[k].wr_id, k * kEvery + kEvery - 1);
    EXPECT_EQ(done[k].status, WcStatus::kSuccess);
  }
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), kSlots * 1024));
  EXPECT_TRUE(drain(a, 10ms).empty());
}

TEST_F(UnsignaledTest, SqSigAllSignalsEveryWr) {
  make(fast());
  QueuePair* qa = add_qp(a, QpType::kRc, 64, /*sig_all=*/true);
  QueuePair* qb = add_qp(b, QpType::kRc);
  ASSERT_TRUE(qa && qb);
  connect_qp(*a.dev, qa, *b.dev, qb->qpn(), opt);
  connect_qp(*b.dev, qb, *a.dev, qa->qpn(), opt);
  QpInitAttr qi;
  ASSERT_EQ(0, a.dev->query_qp(qa, nullptr, &qi));
  EXPECT_TRUE(qi.sq_sig_all);
  Sge sg = a.sge(0, 100);
  for (int i = 0; i < 5; ++i) {
    SendWr w = write_wr(i, b.addr(0), b.mr->rkey, 0);
    w.sg_list = &sg;
    w.num_sge = 1;
    ASSERT_EQ(0, a.dev->post_send(qa, &w, 1, nullptr));
  }
  auto sc = wait_for(a, 5, 5s);
  ASSERT_EQ(sc.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(sc[i].wr_id, uint64_t(i));
    EXPECT_EQ(sc[i].qp_num, qa->qpn());
    EXPECT_EQ(sc[i].opcode, WcOpcode::kRdmaWrite);
  }
}

// An unsignaled WR that fails is reported (IBA 10.8.3.1: errors always complete).
TEST_F(UnsignaledTest, FailedUnsignaledWrIsReported) {
  PairOptions o = fast();
  o.retry_cnt = 1;
  make(o);
  ASSERT_EQ(0, b.dev->destroy_qp(b.qp));
  b.qp = nullptr;
  for (int i = 0; i < 3; ++i) {
    SendWr w = write_wr(i, 0x1000, 0x100, 0);
    ASSERT_EQ(0, post(a, w, a.sge(0, 100)));
  }
  auto sc = wait_for(a, 3, 5s);
  ASSERT_EQ(sc.size(), 3u);
  EXPECT_EQ(sc[0].wr_id, 0u);
  EXPECT_EQ(sc[0].status, WcStatus::kRetryExcErr) << name(sc[0].status);
  EXPECT_EQ(sc[1].status, WcStatus::kWrFlushErr);
  EXPECT_EQ(sc[2].status, WcStatus::kWrFlushErr);
}

}  // namespace
}  // namespace softrdma::test
