// Pinning (seed 001): ordinary regions are mlock'ed while registered, RLIMIT_MEMLOCK is
// enforced as on a real device (ENOMEM), unmapped memory is refused (EFAULT).
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "common/pair.h"

namespace softrdma::test {
namespace {

// VmLck of this process in KiB.
long locked_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmLck:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

void* map(size_t n) {
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

TEST(Pinning, RegionsArePinnedForTheirLifetimeAndSharedPagesStayPinned) {
  auto dev = open_device(PairOptions{}, std::nullopt);
  ASSERT_TRUE(dev);
  Pd* pd = dev->alloc_pd();
  const size_t n = 256 << 10;
  auto* buf = static_cast<uint8_t*>(map(n));
  ASSERT_NE(buf, nullptr);
  long before = locked_kib();
  int err = 0;
  Mr* a = dev->reg_mr(pd, buf, n, mem::kLocalWrite, &err);
  ASSERT_NE(a, nullptr) << err;
  EXPECT_EQ(locked_kib(), before + 256);
  Mr* b = dev->reg_mr(pd, buf + n / 2, n / 2, mem::kLocalWrite, &err);  // overlaps the second half
  ASSERT_NE(b, nullptr) << err;
  EXPECT_EQ(locked_kib(), before + 256);
  ASSERT_EQ(0, dev->dereg_mr(a));
  EXPECT_EQ(locked_kib(), before + 128) << "b's pages stay pinned: mlock does not nest";
  ASSERT_EQ(0, dev->dereg_mr(b));
  EXPECT_EQ(locked_kib(), before);
  munmap(buf, n);
}

TEST(Pinning, UnmappedMemoryIsRefusedWithEfault) {
  auto dev = open_device(PairOptions{}, std::nullopt);
  ASSERT_TRUE(dev);
  Pd* pd = dev->alloc_pd();
  void* p = map(3 * 4096);
  ASSERT_NE(p, nullptr);
  munmap(static_cast<uint8_t*>(p) + 4096, 4096);  // a hole in the middle
  int err = 0;
  EXPECT_EQ(nullptr, dev->reg_mr(pd, p, 3 * 4096, mem::kLocalWrite, &err));
  EXPECT_EQ(err, EFAULT);
  munmap(p, 3 * 4096);
}

// In a child with RLIMIT_MEMLOCK at 64 KiB and without CAP_IPC_LOCK (root drops to nobody):
// registrations are refused with ENOMEM once the limit is reached, and deregistration gives the
// allowance back.
TEST(Pinning, MemlockLimitGivesEnomem) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit rl{64 << 10, 64 << 10};
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) _exit(10);
    if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(77);
    // The device is closed before _exit, so its statistics file in /dev/shm goes with it.
    _exit([]() -> int {
      auto dev = open_device(PairOptions{}, std::nullopt);
      if (!dev) return 11;
      Pd* pd = dev->alloc_pd();
      auto* buf = static_cast<uint8_t*>(map(1 << 20));
      int err = 0;
      if (dev->reg_mr(pd, buf, 1 << 20, mem::kLocalWrite, &err) != nullptr || err != ENOMEM) return 12;
      Mr* first = dev->reg_mr(pd, buf, 48 << 10, mem::kLocalWrite, &err);
      if (first == nullptr) return 13;
      if (dev->reg_mr(pd, buf + (512 << 10), 48 << 10, mem::kLocalWrite, &err) != nullptr || err != ENOMEM)
        return 14;
      if (dev->dereg_mr(first) != 0) return 15;
      if (dev->reg_mr(pd, buf + (512 << 10), 48 << 10, mem::kLocalWrite, &err) == nullptr) return 16;
      return 0;
    }());
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "cannot drop CAP_IPC_LOCK";
  EXPECT_EQ(0, WEXITSTATUS(status)) << "step that failed (see the test)";
}

}  // namespace
}  // namespace softrdma::test
