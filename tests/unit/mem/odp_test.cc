// On-demand paging primitives (seed 003): residency checks, population, the background fault
// worker and fault-safe copies, against real mappings. Where a test needs the worker to be
// busy, a userfaultfd range holds it inside its page fault until the test lets go, so nothing
// depends on timing.
#include "mem/odp.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

namespace softrdma::mem {
namespace {

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

struct Anon {
  uint8_t* p;
  size_t len;
  explicit Anon(size_t pages, int prot = PROT_READ | PROT_WRITE) : len(pages * kPage) {
    void* m = mmap(nullptr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    EXPECT_NE(m, MAP_FAILED);
    p = static_cast<uint8_t*>(m);
  }
  ~Anon() { munmap(p, len); }
};

// An address range with nothing mapped: mapped, then unmapped again. Any new mapping may take
// it, so make holes after starting threads (a worker's first request maps its stack).
uint8_t* hole(size_t pages) {
  void* m = mmap(nullptr, pages * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_NE(m, MAP_FAILED);
  munmap(m, pages * kPage);
  return static_cast<uint8_t*>(m);
}

int threads() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

int wait_result(const FaultWorker& w, uint64_t ticket) {
  int result = -1;
  EXPECT_TRUE(w.done(ticket, &result));
  return result;
}

// Anonymous pages whose first fault blocks until the test fills them (userfaultfd needs
// CAP_SYS_PTRACE or vm.unprivileged_userfaultfd; tests skip without it).
struct Stalled {
  Anon mem;
  int uffd = -1;
  explicit Stalled(size_t pages) : mem(pages) {
    int fd = static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
    if (fd < 0) return;
    uffdio_api api{};
    api.api = UFFD_API;
    uffdio_register reg{};
    reg.range = {reinterpret_cast<uint64_t>(mem.p), mem.len};
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(fd, UFFDIO_API, &api) != 0 || ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
      close(fd);
      return;
    }
    uffd = fd;
  }
  ~Stalled() {
    if (uffd >= 0) close(uffd);
  }
  // Until some thread faults on the range (the 30 s only turns a bug into a failure).
  bool wait_fault() const {
    pollfd p{uffd, POLLIN, 0};
    uffd_msg msg{};
    return poll(&p, 1, 30000) == 1 && read(uffd, &msg, sizeof msg) == sizeof msg &&
           msg.event == UFFD_EVENT_PAGEFAULT;
  }
  // Maps every page with `byte`s, which wakes the faulting thread.
  bool fill(uint8_t byte) const {
    std::vector<uint8_t> src(mem.len, byte);
    uffdio_copy c{};
    c.dst = reinterpret_cast<uint64_t>(mem.p);
    c.src = reinterpret_cast<uint64_t>(src.data());
    c.len = mem.len;
    return ioctl(uffd, UFFDIO_COPY, &c) == 0;
  }
};

TEST(OdpResidency, AnonymousPagesArriveOnPopulate) {
  Anon a(64);
  EXPECT_EQ(residency(a.p, a.len), Residency::kMissing);
  EXPECT_EQ(residency(a.p, 0), Residency::kResident);
  EXPECT_EQ(populate(a.p, 0, true), 0);

  ASSERT_EQ(populate(a.p + 5 * kPage + 10, 1, true), 0);
  EXPECT_EQ(residency(a.p + 5 * kPage, kPage), Residency::kResident);
  EXPECT_EQ(residency(a.p, a.len), Residency::kMissing);

  ASSERT_EQ(populate(a.p, a.len, true), 0);
  EXPECT_EQ(residency(a.p, a.len), Residency::kResident);
  for (size_t i = 0; i < a.len; ++i) ASSERT_EQ(a.p[i], 0) << i;
  for (size_t i = 0; i < a.len; ++i) a.p[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < a.len; ++i) ASSERT_EQ(a.p[i], static_cast<uint8_t>(i * 7)) << i;
}

// A read maps the shared zero page, and mincore counts it resident: a later write still faults,
// but only minor (a copy of nothing), never on I/O.
TEST(OdpResidency, ReadFaultedAnonymousPageIsResident) {
  Anon a(4);
  volatile uint8_t x = a.p[kPage];
  (void)x;
  EXPECT_EQ(residency(a.p + kPage, kPage), Residency::kResident);
  EXPECT_EQ(residency(a.p, a.len), Residency::kMissing);
  ASSERT_EQ(populate(a.p, a.len, false), 0);
  EXPECT_EQ(residency(a.p, a.len), Residency::kResident);
}

// More pages than one mincore call covers: a missing page in the second chunk still counts.
TEST(OdpResidency, SpansSeveralChunks) {
  Anon a(4096 + 64);
  ASSERT_EQ(populate(a.p, a.len, true), 0);
  EXPECT_EQ(residency(a.p, a.len), Residency::kResident);
  ASSERT_EQ(madvise(a.p + 4100 * kPage, kPage, MADV_DONTNEED), 0);
  EXPECT_EQ(residency(a.p, a.len), Residency::kMissing);
  EXPECT_EQ(residency(a.p, 4100 * kPage), Residency::kResident);

  Anon huge(262144);  // 1 GiB, reserved only
  EXPECT_EQ(residency(huge.p, huge.len), Residency::kMissing);
}

TEST(OdpResidency, UnmappedRangeFailsWithoutFaulting) {
  uint8_t* h = hole(8);
  EXPECT_EQ(residency(h, 8 * kPage), Residency::kUnmapped);
  EXPECT_EQ(populate(h, 8 * kPage, false), EFAULT);
  EXPECT_EQ(populate(h, 8 * kPage, true), EFAULT);
  EXPECT_EQ(touch_pages(h, 8 * kPage, false), EFAULT);
  EXPECT_EQ(touch_pages(h, 8 * kPage, true), EFAULT);
  uint8_t buf[64] = {1, 2, 3};
  EXPECT_EQ(safe_store(h + 100, buf, sizeof buf), EFAULT);
  EXPECT_EQ(safe_load(buf, h + 100, sizeof buf), EFAULT);

  // Ranges that wrap the address space or lie above user space.
  const auto* top = reinterpret_cast<const uint8_t*>(UINTPTR_MAX - 100);
  EXPECT_EQ(residency(top, 1000), Residency::kUnmapped);
  EXPECT_EQ(populate(top, 1000, true), EFAULT);
  EXPECT_EQ(safe_load(buf, top, 50), EFAULT);
  FaultWorker w;
  const uint64_t t = w.request(top, 1000, false);
  ASSERT_NE(t, 0u);
  w.drain();
  EXPECT_EQ(wait_result(w, t), EFAULT);
  const auto* kernel = reinterpret_cast<const uint8_t*>(uintptr_t{0xffff800000000000});
  EXPECT_EQ(residency(kernel, 64), Residency::kUnmapped);
  EXPECT_EQ(populate(kernel, 64, false), EFAULT);
}

// Resident pages followed by a hole: the hole wins, and copies across it fail.
TEST(OdpResidency, HoleAfterResidentPages) {
  Anon a(8);
  ASSERT_EQ(munmap(a.p + 4 * kPage, 4 * kPage), 0);
  ASSERT_EQ(populate(a.p, 4 * kPage, true), 0);
  EXPECT_EQ(residency(a.p, 4 * kPage), Residency::kResident);
  EXPECT_EQ(residency(a.p, 8 * kPage), Residency::kUnmapped);
  EXPECT_EQ(populate(a.p, 8 * kPage, true), EFAULT);
  std::vector<uint8_t> buf(2 * kPage, 0x33);
  EXPECT_EQ(safe_store(a.p + 3 * kPage, buf.data(), buf.size()), EFAULT);
  EXPECT_EQ(safe_load(buf.data(), a.p + 3 * kPage, buf.size()), EFAULT);
  EXPECT_EQ(safe_store(a.p + 2 * kPage, buf.data(), buf.size()), 0);
  EXPECT_EQ(a.p[3 * kPage + 1], 0x33);
}

// PROT_NONE pages are mapped, so mincore reports them missing; population tells them apart.
TEST(OdpProtection, ProtNoneIsMissingButCannotBePopulated) {
  Anon a(4, PROT_NONE);
  EXPECT_EQ(residency(a.p, a.len), Residency::kMissing);
  EXPECT_EQ(populate(a.p, a.len, false), EFAULT);
  EXPECT_EQ(populate(a.p, a.len, true), EFAULT);
  EXPECT_EQ(touch_pages(a.p, a.len, false), EFAULT);
  EXPECT_EQ(touch_pages(a.p, a.len, true), EFAULT);
  uint8_t buf[16] = {};
  EXPECT_EQ(safe_store(a.p, buf, sizeof buf), EFAULT);
  EXPECT_EQ(safe_load(buf, a.p, sizeof buf), EFAULT);
}

TEST(OdpProtection, ReadOnlyMappingRefusesWrites) {
  Anon a(4);
  memset(a.p, 0x11, a.len);
  ASSERT_EQ(mprotect(a.p, a.len, PROT_READ), 0);
  EXPECT_EQ(residency(a.p, a.len), Residency::kResident);  // resident, yet not writable
  EXPECT_EQ(populate(a.p, a.len, true), EFAULT);
  EXPECT_EQ(populate(a.p, a.len, false), 0);
  EXPECT_EQ(touch_pages(a.p, a.len, true), EFAULT);
  EXPECT_EQ(touch_pages(a.p, a.len, false), 0);
  uint8_t buf[32];
  memset(buf, 0x22, sizeof buf);
  EXPECT_EQ(safe_store(a.p + 8, buf, sizeof buf), EFAULT);
  EXPECT_EQ(a.p[8], 0x11);
  EXPECT_EQ(safe_load(buf, a.p + kPage - 16, sizeof buf), 0);
  EXPECT_EQ(buf[0], 0x11);
  EXPECT_EQ(buf[31], 0x11);
}

// The fallback for kernels before 5.14: pages arrive, contents survive.
TEST(OdpTouchPages, PopulatesAndKeepsContents) {
  Anon a(8);
  memset(a.p, 0x5c, 3 * kPage);
  ASSERT_EQ(touch_pages(a.p + 10, a.len - 20, true), 0);
  EXPECT_EQ(residency(a.p, a.len), Residency::kResident);
  for (size_t i = 0; i < a.len; ++i) ASSERT_EQ(a.p[i], i < 3 * kPage ? 0x5c : 0) << i;
  Anon b(8);
  ASSERT_EQ(touch_pages(b.p, b.len, false), 0);
  EXPECT_EQ(residency(b.p, b.len), Residency::kResident);
}

TEST(OdpSafeCopy, CopiesMappedMemory) {
  std::vector<uint8_t> src(3 * kPage + 123), dst(src.size());
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 13 + 1);
  EXPECT_EQ(safe_store(dst.data(), src.data(), src.size()), 0);
  EXPECT_EQ(dst, src);
  std::vector<uint8_t> back(src.size());
  EXPECT_EQ(safe_load(back.data(), dst.data(), dst.size()), 0);
  EXPECT_EQ(back, src);
  EXPECT_EQ(safe_load(back.data(), nullptr, 0), 0);
}

// A shared file mapping whose pages were dropped from the page cache comes back through the
// worker with the file's bytes.
TEST(OdpFaultWorker, PagesInDroppedFileMapping) {
  constexpr size_t kPages = 16;
  char path[] = "/tmp/softrdma-odp-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  unlink(path);
  std::vector<uint8_t> data(kPages * kPage);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i / kPage * 31 + i);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(fsync(fd), 0);  // clean pages, which the cache may drop
  void* m = mmap(nullptr, data.size(), PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(m, MAP_FAILED);
  auto* f = static_cast<uint8_t*>(m);
  ASSERT_EQ(memcmp(f, data.data(), data.size()), 0);
  EXPECT_EQ(residency(f, data.size()), Residency::kResident);

  // Unmap our page-table entries, then drop the cache pages; a filesystem that cannot drop them
  // (tmpfs without swap) keeps them resident, and only the first check below is skipped.
  madvise(f, data.size(), MADV_DONTNEED);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  const bool dropped = residency(f, data.size()) == Residency::kMissing;

  FaultWorker w;
  const uint64_t t = w.request(f, data.size(), false);
  ASSERT_NE(t, 0u);
  w.drain();
  EXPECT_EQ(wait_result(w, t), 0);
  EXPECT_EQ(residency(f, data.size()), Residency::kResident);
  EXPECT_EQ(memcmp(f, data.data(), data.size()), 0);
  EXPECT_EQ(w.counters().pages_populated, kPages);
  munmap(f, data.size());
  close(fd);
  if (!dropped) GTEST_SKIP() << "the page cache kept the file's pages";
}

TEST(OdpFaultWorker, FailuresAreResults) {
  Anon none(2, PROT_NONE), ro(2, PROT_READ);
  FaultWorker w;
  const uint64_t t0 = w.request(ro.p, kPage, false);  // starts the thread, before the hole
  w.drain();
  EXPECT_EQ(wait_result(w, t0), 0);
  uint8_t* h = hole(4);
  const uint64_t t1 = w.request(h, 4 * kPage, false);
  const uint64_t t2 = w.request(none.p, none.len, false);
  const uint64_t t3 = w.request(ro.p, ro.len, true);
  const uint64_t t4 = w.request(ro.p, ro.len, false);  // not served by the failing write t3
  ASSERT_TRUE(t1 && t2 && t3 && t4);
  w.drain();
  EXPECT_EQ(wait_result(w, t1), EFAULT);
  EXPECT_EQ(wait_result(w, t2), EFAULT);
  EXPECT_EQ(wait_result(w, t3), EFAULT);
  EXPECT_EQ(wait_result(w, t4), 0);
  const FaultWorker::Counters c = w.counters();
  EXPECT_EQ(c.requests, 5u);
  EXPECT_EQ(c.errors, 3u);
  EXPECT_EQ(c.pages_populated, 3u);
}

TEST(OdpFaultWorker, UnknownTicketsAreStale) {
  FaultWorker w(2);
  int result = 0;
  EXPECT_TRUE(w.done(0, &result));
  EXPECT_EQ(result, ESTALE);
  EXPECT_TRUE(w.done(7, &result));
  EXPECT_EQ(result, ESTALE);
  w.drain();  // nothing queued: returns at once
}

// While a request is in progress or queued, a covered request of the same kind gets its ticket.
TEST(OdpFaultWorker, DeduplicatesPendingRequests) {
  Stalled s(8);
  if (s.uffd < 0) GTEST_SKIP() << "userfaultfd unavailable";
  Anon a(4);
  FaultWorker w(4);
  const uint64_t t1 = w.request(s.mem.p, 4 * kPage, true);
  ASSERT_NE(t1, 0u);
  ASSERT_TRUE(s.wait_fault());  // the worker is inside populate(t1)
  EXPECT_EQ(w.request(s.mem.p, 4 * kPage, true), t1);
  EXPECT_EQ(w.request(s.mem.p + kPage + 5, 2 * kPage, true), t1);
  int result;
  EXPECT_FALSE(w.done(t1, &result));

  const uint64_t t2 = w.request(a.p, a.len, false);
  const uint64_t t3 = w.request(a.p, a.len, true);
  EXPECT_NE(t2, t1);
  EXPECT_NE(t3, t2);
  EXPECT_EQ(w.request(a.p + kPage, kPage, false), t2);
  EXPECT_EQ(w.request(a.p + kPage, kPage, true), t3);
  EXPECT_EQ(w.request(s.mem.p, s.mem.len, false), t3 + 1);  // larger than t1

  ASSERT_TRUE(s.fill(0xa5));  // all 8 pages
  w.drain();
  for (uint64_t t : {t1, t2, t3, t3 + 1}) EXPECT_EQ(wait_result(w, t), 0) << t;
  EXPECT_EQ(s.mem.p[s.mem.len - 1], 0xa5);
  const FaultWorker::Counters c = w.counters();
  EXPECT_EQ(c.requests, 4u);
  EXPECT_EQ(c.deduplicated, 4u);
  EXPECT_EQ(c.ring_full, 0u);
  // Finished tickets are history: the same range queues again.
  EXPECT_EQ(w.request(a.p, a.len, true), t3 + 2);
  w.drain();
}

// However the worker interleaves, every call either issued a ticket or was deduplicated.
TEST(OdpFaultWorker, CountersAccountForEveryRequest) {
  Anon a(3);
  FaultWorker w(6);  // room for all 6 kinds of request below at once: never full
  std::set<uint64_t> distinct;
  uint64_t last = 0;
  for (int i = 0; i < 50; ++i) {
    const uint64_t t = w.request(a.p + i % 3 * kPage, kPage, i % 2 == 0);
    ASSERT_NE(t, 0u);
    distinct.insert(t);
    last = std::max(last, t);
  }
  w.drain();
  const FaultWorker::Counters c = w.counters();
  EXPECT_EQ(c.requests, distinct.size());
  EXPECT_EQ(*distinct.rbegin(), c.requests);
  EXPECT_EQ(c.requests + c.deduplicated, 50u);
  EXPECT_EQ(c.ring_full, 0u);
  EXPECT_EQ(wait_result(w, last), 0);
}

TEST(OdpFaultWorker, FullRingRefusesUntilServed) {
  Stalled s(2);
  if (s.uffd < 0) GTEST_SKIP() << "userfaultfd unavailable";
  Anon a(4);
  FaultWorker w(2);
  const uint64_t t1 = w.request(s.mem.p, s.mem.len, true);
  ASSERT_TRUE(s.wait_fault());
  const uint64_t t2 = w.request(a.p, kPage, true);
  EXPECT_NE(t2, 0u);
  EXPECT_EQ(w.request(a.p + kPage, kPage, true), 0u);
  EXPECT_EQ(w.request(s.mem.p, kPage, true), t1);  // dedup needs no room
  EXPECT_EQ(w.counters().ring_full, 1u);
  ASSERT_TRUE(s.fill(1));
  w.drain();
  EXPECT_EQ(wait_result(w, t1), 0);
  EXPECT_EQ(wait_result(w, t2), 0);
  const uint64_t t3 = w.request(a.p + kPage, kPage, true);
  EXPECT_EQ(t3, t2 + 1);
  w.drain();
  EXPECT_EQ(wait_result(w, t3), 0);
  EXPECT_EQ(wait_result(w, t1), ESTALE);  // overwritten: the ring remembers 2 tickets
}

// Without holding the worker: distinct large ranges into a ring of 2.
TEST(OdpFaultWorker, SmallRingUnderLoad) {
  constexpr int kRanges = 10;
  Anon a(kRanges * 256);
  FaultWorker w(2);
  std::vector<uint64_t> tickets;
  int refused = 0;
  for (int i = 0; i < kRanges; ++i) {
    const uint64_t t = w.request(a.p + i * 256 * kPage, 256 * kPage, true);
    if (t == 0) {
      ++refused;
    } else {
      tickets.push_back(t);
    }
  }
  w.drain();
  const FaultWorker::Counters c = w.counters();
  EXPECT_EQ(c.requests, tickets.size());
  EXPECT_EQ(c.ring_full, static_cast<uint64_t>(refused));
  EXPECT_EQ(c.deduplicated, 0u);
  ASSERT_FALSE(tickets.empty());
  for (uint64_t t : tickets) {
    const int r = wait_result(w, t);
    EXPECT_TRUE(r == 0 || r == ESTALE) << r;
  }
  EXPECT_EQ(wait_result(w, tickets.back()), 0);
  EXPECT_EQ(c.pages_populated, 256 * tickets.size());
}

TEST(OdpFaultWorker, ThreadStartsLazilyAndDestructorJoins) {
  const int before = threads();
  {
    FaultWorker idle;
    EXPECT_EQ(threads(), before);
  }
  Anon a(8 * 1024);
  {
    FaultWorker w(8);
    for (int i = 0; i < 8; ++i) EXPECT_NE(w.request(a.p + i * 1024 * kPage, 1024 * kPage, true), 0u);
    EXPECT_EQ(threads(), before + 1);
  }  // queued work abandoned, thread joined
  EXPECT_EQ(threads(), before);
}

}  // namespace
}  // namespace softrdma::mem
