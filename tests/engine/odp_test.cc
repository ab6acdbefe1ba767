// On-demand paging (seed 003): regions that are not pinned, and the implicit region over the
// whole address space. A request that targets missing pages gets a page-fault RNR NAK while
// the fault worker brings them in; the requester pauses without spending its RNR budget and
// the data arrives intact, without a retransmission storm.
#include "common/pair.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mem/odp.h"

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

constexpr size_t kMiB = 1 << 20;

struct Mapping {
  uint8_t* p = nullptr;
  size_t len = 0;
  explicit Mapping(size_t n, int prot = PROT_READ | PROT_WRITE, int fd = -1) : len(n) {
    void* m = mmap(nullptr, n, prot, fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED, fd, 0);
    EXPECT_NE(m, MAP_FAILED);
    p = static_cast<uint8_t*>(m);
  }
  ~Mapping() { munmap(p, len); }
  uint64_t addr(size_t off = 0) const { return reinterpret_cast<uint64_t>(p + off); }
};

class OdpTest : public PairTest {
 protected:
  void SetUp() override {
    PairOptions o;
    o.rnr_retry = 0;  // a page-fault pause must not count as an RNR retry
    o.timeout = 14;   // 67 ms: no timeout retransmission blurs the counts
    make(o);
  }
  Mr* odp(Side& s, void* addr, size_t len, uint32_t extra = 0) {
    int err = 0;
    Mr* mr = s.dev->reg_mr(s.pd, addr, len,
                           mem::kOnDemand | mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead | extra, &err);
    EXPECT_TRUE(mr) << err;
    return mr;
  }
};

TEST_F(OdpTest, WriteIntoFreshMemoryPausesOnceAndArrivesIntact) {
  Mapping target(kMiB);
  ASSERT_EQ(mem::Residency::kMissing, mem::residency(target.p, kMiB));
  Mr* mr = odp(b, target.p, kMiB);
  EXPECT_FALSE(mr->pinned);
  std::vector<uint8_t> src(kMiB);
  fill(src, 0, kMiB, 11);
  int err = 0;
  Mr* smr = a.dev->reg_mr(a.pd, src.data(), src.size(), mem::kLocalWrite, &err);
  ASSERT_TRUE(smr);
  SendWr wr = write_wr(1, target.addr(), mr->rkey);
  Sge sg{reinterpret_cast<uint64_t>(src.data()), uint32_t(kMiB), smr->lkey};
  ASSERT_EQ(0, post(a, wr, sg));
  Wc wc = wait_one(a);
  EXPECT_EQ(wc.status, WcStatus::kSuccess) << name(wc.status);
  EXPECT_EQ(0, std::memcmp(src.data(), target.p, kMiB));
  auto resp = qp_counters_of(*b.dev, b.qp->qpn());
  auto req = qp_counters_of(*a.dev, a.qp->qpn());
  std::printf("odp write 1 MiB: page_faults=%lu pf_naks=%lu pauses=%lu retransmits=%lu packets=%lu\n",
              (unsigned long)resp.page_faults, (unsigned long)resp.page_fault_naks_sent,
              (unsigned long)req.page_fault_pauses, (unsigned long)req.retransmits, (unsigned long)req.tx_packets);
  EXPECT_EQ(resp.page_faults, kMiB / 4096) << "the whole message was brought in at once";
  EXPECT_GE(resp.page_fault_naks_sent, 1u);
  EXPECT_EQ(req.page_fault_pauses, resp.page_fault_naks_sent);
  // No storm: each pause costs at most the window of packets sent behind the NAKed one.
  EXPECT_LE(resp.page_fault_naks_sent, 20u);
  EXPECT_LE(req.retransmits, resp.page_fault_naks_sent * a.dev->config().engine.window_packets);
}

TEST_F(OdpTest, ReadFromAFileWhosePagesWereDropped) {
  char path[] = "/tmp/softrdma-odp-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  std::vector<uint8_t> content(256 * 1024);
  fill(content, 0, content.size(), 21);
  ASSERT_EQ(ssize_t(content.size()), write(fd, content.data(), content.size()));
  ASSERT_EQ(0, fsync(fd));
  Mapping file(content.size(), PROT_READ | PROT_WRITE, fd);
  ASSERT_EQ(0, madvise(file.p, file.len, MADV_DONTNEED));
  ASSERT_EQ(0, posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED));
  bool dropped = mem::residency(file.p, file.len) == mem::Residency::kMissing;
  Mr* mr = odp(b, file.p, file.len);
  ASSERT_EQ(0, post(a, read_wr(1, file.addr(), mr->rkey), a.sge(0, uint32_t(content.size()))));
  Wc wc = wait_one(a);
  EXPECT_EQ(wc.status, WcStatus::kSuccess) << name(wc.status);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), content.data(), content.size()));
  auto resp = qp_counters_of(*b.dev, b.qp->qpn());
  if (dropped) {
    EXPECT_GE(resp.page_fault_naks_sent, 1u) << "the READ waited for the file's pages";
  }
  close(fd);
}

TEST_F(OdpTest, ImplicitRegionReachesAnyMappedAddressAndRefusesTheRest) {
  int err = 0;
  Mr* all = b.dev->reg_mr(b.pd, nullptr, SIZE_MAX,
                          mem::kOnDemand | mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead, &err);
  ASSERT_TRUE(all) << err;
  Mapping fresh(64 * 1024);
  fill(a.buf, 0, 64 * 1024, 31);
  ASSERT_EQ(0, post(a, write_wr(1, fresh.addr(), all->rkey), a.sge(0, 64 * 1024)));
  Wc wc = wait_one(a);
  EXPECT_EQ(wc.status, WcStatus::kSuccess) << name(wc.status);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), fresh.p, 64 * 1024));
  // An address with nothing mapped: the peer gets an access error and this process lives on.
  uint64_t hole;
  {
    Mapping gone(4096);
    hole = gone.addr();
  }
  ASSERT_EQ(0, post(a, write_wr(2, hole, all->rkey), a.sge(0, 64)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kRemAccessErr);
}

TEST_F(OdpTest, ImplicitRegionRefusesWritesToReadOnlyMemory) {
  int err = 0;
  Mr* all = b.dev->reg_mr(b.pd, nullptr, SIZE_MAX,
                          mem::kOnDemand | mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead, &err);
  ASSERT_TRUE(all) << err;
  Mapping ro(4096, PROT_READ);
  ASSERT_EQ(0, post(a, write_wr(1, ro.addr(), all->rkey), a.sge(0, 64)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kRemAccessErr);
}

TEST_F(OdpTest, ImplicitRegionRefusesAtomicsOnReadOnlyMemory) {
  int err = 0;
  Mr* all = b.dev->reg_mr(b.pd, nullptr, SIZE_MAX, mem::kOnDemand | mem::kLocalWrite | mem::kRemoteAtomic, &err);
  ASSERT_TRUE(all) << err;
  Mapping ro(4096, PROT_READ);
  volatile uint8_t touch = ro.p[0];  // resident (the zero page), and still read-only
  (void)touch;
  SendWr wr;
  wr.wr_id = 1;
  wr.opcode = WrOpcode::kFetchAdd;
  wr.flags = kSignaled;
  wr.atomic.remote_addr = ro.addr();
  wr.atomic.rkey = all->rkey;
  wr.atomic.compare_add = 1;
  ASSERT_EQ(0, post(a, wr, a.sge(0, 8)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kRemAccessErr);
}

TEST_F(OdpTest, PrefetchedRegionNeedsNoPause) {
  Mapping target(256 * 1024);
  Mr* mr = odp(b, target.p, target.len);
  Sge whole{target.addr(), uint32_t(target.len), mr->lkey};
  ASSERT_EQ(0, b.dev->advise_mr(b.pd, true, true, &whole, 1));
  EXPECT_EQ(mem::Residency::kResident, mem::residency(target.p, target.len));
  Sge bad{target.addr(), 8, b.mr->lkey};  // a pinned region: nothing to advise
  EXPECT_EQ(EINVAL, b.dev->advise_mr(b.pd, true, true, &bad, 1));
  fill(a.buf, 0, target.len, 41);
  ASSERT_EQ(0, post(a, write_wr(1, target.addr(), mr->rkey), a.sge(0, uint32_t(target.len))));
  EXPECT_EQ(wait_one(a).status, WcStatus::kSuccess);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), target.p, target.len));
  EXPECT_EQ(qp_counters_of(*b.dev, b.qp->qpn()).page_fault_naks_sent, 0u);
}

TEST_F(OdpTest, AtomicOnAFreshPage) {
  Mapping target(4096);
  Mr* mr = odp(b, target.p, target.len, mem::kRemoteAtomic);
  SendWr wr;
  wr.wr_id = 1;
  wr.opcode = WrOpcode::kFetchAdd;
  wr.flags = kSignaled;
  wr.atomic.remote_addr = target.addr(8);
  wr.atomic.rkey = mr->rkey;
  wr.atomic.compare_add = 5;
  ASSERT_EQ(0, post(a, wr, a.sge(0, 8)));
  EXPECT_EQ(wait_one(a).status, WcStatus::kSuccess);
  uint64_t v;
  std::memcpy(&v, target.p + 8, 8);
  EXPECT_EQ(v, 5u);
}

TEST_F(OdpTest, RegistrationOfUnmappedMemoryFails) {
  uint8_t* hole;
  {
    Mapping gone(8192);
    hole = gone.p;
  }
  int err = 0;
  EXPECT_EQ(nullptr, b.dev->reg_mr(b.pd, hole, 8192, mem::kOnDemand | mem::kLocalWrite, &err));
  EXPECT_EQ(err, EFAULT);
}

}  // namespace
}  // namespace softrdma::test
