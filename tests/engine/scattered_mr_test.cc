// Regions over scattered pages (seed 002 FIG. 12): both ends register pages in a scrambled
// order through a page list, so every byte of a WRITE, a READ and its gather goes through the
// translation tables, across page boundaries in the middle of packets.
#include <sys/mman.h>

#include "common/pair.h"

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;
constexpr size_t kPage = 4096;

struct Scattered {
  uint8_t* map = nullptr;
  std::vector<void*> pages;
  explicit Scattered(std::initializer_list<size_t> order) {
    map = static_cast<uint8_t*>(
        mmap(nullptr, 8 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t i : order) pages.push_back(map + i * kPage);
  }
  ~Scattered() { munmap(map, 8 * kPage); }
  uint8_t& at(size_t i) { return static_cast<uint8_t*>(pages[i / kPage])[i % kPage]; }
};

class ScatteredMrTest : public PairTest {};

TEST_F(ScatteredMrTest, WriteAndReadThroughPageLists) {
  make();
  Scattered remote({4, 1, 7, 0}), local({3, 0, 2, 5});
  const uint64_t riova = 0x500000000000ull, liova = 0x600000000000ull;
  int err = 0;
  Mr* rmr = b.dev->reg_mr_pages(b.pd, remote.pages, 12, riova, 4 * kPage, opt.access, &err);
  ASSERT_TRUE(rmr) << err;
  Mr* lmr = a.dev->reg_mr_pages(a.pd, local.pages, 12, liova, 4 * kPage, mem::kLocalWrite, &err);
  ASSERT_TRUE(lmr) << err;
  for (size_t i = 0; i < 4 * kPage; ++i) local.at(i) = static_cast<uint8_t>(i * 7 + 1);

  SendWr wr;
  Sge src{liova + 100, 10000, lmr->lkey};
  wr.wr_id = 1;
  wr.opcode = WrOpcode::kRdmaWrite;
  wr.flags = kSignaled;
  wr.rdma.remote_addr = riova + 300;
  wr.rdma.rkey = rmr->rkey;
  wr.sg_list = &src;
  wr.num_sge = 1;
  ASSERT_EQ(0, a.dev->post_send(a.qp, &wr, 1, nullptr));
  auto sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  ASSERT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  for (size_t i = 0; i < 10000; ++i) ASSERT_EQ(remote.at(300 + i), local.at(100 + i)) << i;
  EXPECT_EQ(remote.at(299), 0);
  EXPECT_EQ(remote.at(10300), 0);

  // READ it back into the pair's ordinary buffer.
  Sge dst = a.sge(0, 9000);
  wr.wr_id = 2;
  wr.opcode = WrOpcode::kRdmaRead;
  wr.rdma.remote_addr = riova + 500;
  wr.sg_list = &dst;
  ASSERT_EQ(0, a.dev->post_send(a.qp, &wr, 1, nullptr));
  sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  ASSERT_EQ(sc[0].status, WcStatus::kSuccess) << name(sc[0].status);
  for (size_t i = 0; i < 9000; ++i) ASSERT_EQ(a.buf[i], remote.at(500 + i)) << i;

  // Past the pages' end: refused.
  wr.wr_id = 3;
  wr.rdma.remote_addr = riova + 4 * kPage - 8;
  ASSERT_EQ(0, a.dev->post_send(a.qp, &wr, 1, nullptr));
  sc = wait_for(a, 1, 5s);
  ASSERT_EQ(sc.size(), 1u);
  EXPECT_EQ(sc[0].status, WcStatus::kRemAccessErr) << name(sc[0].status);
  int e2 = 0;
  EXPECT_EQ(nullptr, a.dev->reg_mr_pages(a.pd, local.pages, 12, liova, 4 * kPage + 1, 0, &e2));
  EXPECT_EQ(e2, EINVAL);
}

}  // namespace
}  // namespace softrdma::test
