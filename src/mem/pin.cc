#include "mem/pin.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <utility>
#include <vector>

namespace softrdma::mem {

namespace {

// Page-rounded [lo, hi) of a range.
void page_range(const void* addr, size_t length, uintptr_t* lo, uintptr_t* hi) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  *lo = reinterpret_cast<uintptr_t>(addr) & ~(page - 1);
  *hi = (reinterpret_cast<uintptr_t>(addr) + length + page - 1) & ~(page - 1);
}

// mlock reports both "not mapped" and "over the limit" as ENOMEM; mincore tells them apart.
bool mapped(uintptr_t lo, uintptr_t hi) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  unsigned char v[256];
  for (uintptr_t a = lo; a < hi; a += page * sizeof v) {
    size_t len = std::min<uintptr_t>(hi - a, page * sizeof v);
    if (mincore(reinterpret_cast<void*>(a), len, v) != 0 && errno == ENOMEM) return false;
  }
  return true;
}

// The system calls themselves: AddressSanitizer turns the mlock/munlock wrappers into no-ops.
int sys_mlock(uintptr_t a, size_t n) { return static_cast<int>(syscall(SYS_mlock, a, n)); }
int sys_munlock(uintptr_t a, size_t n) { return static_cast<int>(syscall(SYS_munlock, a, n)); }

// Every pinned range of the process (all devices): mlock does not nest, so unpinning one range
// re-locks what the others still cover.
std::mutex g_mu;
std::vector<std::pair<uintptr_t, uintptr_t>> g_pinned;

// A forked child inherits no memory locks (mlock(2)), so it starts with an empty list.
[[maybe_unused]] const int g_atfork = pthread_atfork([] { g_mu.lock(); }, [] { g_mu.unlock(); },
                                                     [] {
                                                       g_pinned.clear();
                                                       g_mu.unlock();
                                                     });

}  // namespace

int pin(const void* addr, size_t length) {
  if (length == 0) return 0;
  uintptr_t lo, hi;
  page_range(addr, length, &lo, &hi);
  std::lock_guard<std::mutex> g(g_mu);
  if (sys_mlock(lo, hi - lo) == 0) {
    g_pinned.emplace_back(lo, hi);
    return 0;
  }
  int err = errno;
  if (!mapped(lo, hi)) return EFAULT;
  if (err == ENOMEM || err == EPERM || err == EAGAIN) {
    static std::atomic<bool> said{false};
    if (!said.exchange(true)) {
      rlimit rl{};
      getrlimit(RLIMIT_MEMLOCK, &rl);
      std::fprintf(stderr,
                   "softrdma: cannot pin %zu bytes of a memory region: RLIMIT_MEMLOCK is %llu bytes "
                   "(raise it with ulimit -l or limits.conf)\n",
                   length, static_cast<unsigned long long>(rl.rlim_cur));
    }
    return ENOMEM;
  }
  return err;
}

void unpin(const void* addr, size_t length) {
  if (length == 0) return;
  uintptr_t lo, hi;
  page_range(addr, length, &lo, &hi);
  std::lock_guard<std::mutex> g(g_mu);
  auto it = std::find(g_pinned.begin(), g_pinned.end(), std::make_pair(lo, hi));
  if (it == g_pinned.end()) return;
  g_pinned.erase(it);
  sys_munlock(lo, hi - lo);
  for (auto [l, h] : g_pinned) {
    uintptr_t a = std::max(l, lo), b = std::min(h, hi);
    if (a < b) sys_mlock(a, b - a);  // was locked before: within the limit
  }
}

}  // namespace softrdma::mem
