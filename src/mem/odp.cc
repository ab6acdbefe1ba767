#include "mem/odp.h"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

namespace softrdma::mem {

namespace {

uintptr_t page_size() {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// Page-rounded [lo, hi) of a range; false when it wraps around the address space, which a peer
// naming addresses in the implicit region can ask for.
bool page_range(const void* addr, uint64_t len, uintptr_t* lo, uintptr_t* hi) {
  const uintptr_t page = page_size(), a = reinterpret_cast<uintptr_t>(addr);
  uintptr_t end;
  if (__builtin_add_overflow(a, len, &end) || end > ~(page - 1)) return false;
  *lo = a & ~(page - 1);
  *hi = len == 0 ? *lo : (end + page - 1) & ~(page - 1);
  return true;
}

// MADV_POPULATE_* arrived in Linux 5.14; before, madvise rejects them with EINVAL. After, EINVAL
// means the mapping refuses the access (PROT_NONE, read-only for a write, VM_IO), so we probe
// once on a page we know is readable to tell the two apart.
bool populate_supported() {
  static std::atomic<int> supported{-1};
  int s = supported.load(std::memory_order_relaxed);
  if (s < 0) {
    const uintptr_t page = reinterpret_cast<uintptr_t>(&supported) & ~(page_size() - 1);
    s = madvise(reinterpret_cast<void*>(page), page_size(), MADV_POPULATE_READ) == 0 || errno != EINVAL;
    supported.store(s, std::memory_order_relaxed);
  }
  return s != 0;
}

// *a |= 0, atomically and inside the kernel: FUTEX_WAKE_OP faults the page in writable or fails
// with EFAULT, where a user-space fetch_or would SIGSEGV on a read-only page. Wakes nobody.
int touch_for_write(uintptr_t a) {
  const uint32_t op = FUTEX_OP(FUTEX_OP_OR, 0, FUTEX_OP_CMP_EQ, 0);
  long rc = syscall(SYS_futex, a, FUTEX_WAKE_OP_PRIVATE, 0, 0UL, a, op);
  return rc < 0 ? errno : 0;
}

// One copy between our buffer and memory that may be bad, through the kernel. A short count
// means the next page faulted; the retry from there reports why.
int vm_copy(bool store, void* dst, const void* src, size_t n) {
  auto* d = static_cast<char*>(dst);
  auto* s = static_cast<char*>(const_cast<void*>(src));
  while (n > 0) {
    iovec local{store ? s : d, n}, remote{store ? d : s, n};
    ssize_t r = store ? process_vm_writev(getpid(), &local, 1, &remote, 1, 0)
                      : process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return EFAULT;
    d += r, s += r, n -= static_cast<size_t>(r);
  }
  return 0;
}

}  // namespace

Residency residency(const void* addr, uint64_t len) {
  if (len == 0) return Residency::kResident;
  constexpr size_t kChunk = 4096;  // pages per mincore call: 4 KiB of stack, 16 MiB of range
  unsigned char vec[kChunk];
  const uintptr_t page = page_size();
  uintptr_t lo, hi;
  if (!page_range(addr, len, &lo, &hi)) return Residency::kUnmapped;
  bool missing = false;
  // Scan to the end even after a missing page: a hole further on turns the answer into an
  // error for the peer instead of an RNR NAK.
  size_t n;
  for (uintptr_t a = lo; a < hi; a += n) {
    n = std::min<uintptr_t>(hi - a, kChunk * page);
    if (mincore(reinterpret_cast<void*>(a), n, vec) != 0) {
      if (errno == ENOMEM) return Residency::kUnmapped;
      missing = true;  // EAGAIN: unknown, so let the worker find out
      continue;
    }
    unsigned char all = 1;
    for (size_t i = 0; i < n / page; ++i) all &= vec[i];  // vectorizes; bit 0 is "resident"
    missing |= all == 0;
  }
  return missing ? Residency::kMissing : Residency::kResident;
}

int populate(const void* addr, uint64_t len, bool write) {
  if (len == 0) return 0;
  if (!populate_supported()) return touch_pages(addr, len, write);
  uintptr_t lo, hi;
  if (!page_range(addr, len, &lo, &hi)) return EFAULT;
  int rc;
  do {
    rc = madvise(reinterpret_cast<void*>(lo), hi - lo, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return 0;
  const int err = errno;
  if (err == EINVAL) return EFAULT;  // the mapping refuses the access (see populate_supported)
  // ENOMEM is both "a hole in the range" and out of memory.
  if (err == ENOMEM) return residency(addr, len) == Residency::kUnmapped ? EFAULT : ENOMEM;
  return err;  // EFAULT (SIGBUS, e.g. past the end of a file), EHWPOISON
}

int touch_pages(const void* addr, uint64_t len, bool write) {
  if (len == 0) return 0;
  uintptr_t lo, hi;
  if (!page_range(addr, len, &lo, &hi)) return EFAULT;
  for (uintptr_t a = lo; a < hi; a += page_size()) {
    char byte;
    int err = write ? touch_for_write(a) : safe_load(&byte, reinterpret_cast<const void*>(a), 1);
    if (err != 0) return err;
  }
  return 0;
}

FaultWorker::FaultWorker(uint32_t capacity)
    : capacity_(std::max<uint32_t>(capacity, 1)), ring_(std::make_unique<Slot[]>(capacity_)) {}

FaultWorker::~FaultWorker() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t FaultWorker::request(const void* addr, uint64_t len, bool write) {
  uintptr_t lo, hi;
  // A wrapping range becomes [1, 0): it covers nothing valid, and populate(1, ~0) is EFAULT.
  if (!page_range(addr, len, &lo, &hi)) lo = 1, hi = 0;
  std::unique_lock<std::mutex> lk(mu_);
  for (uint64_t t = head_; t < next_; ++t) {
    const Slot& s = slot(t);
    // Only the same kind: a write failing on a read-only page must not fail a read.
    if (s.lo <= lo && hi <= s.hi && s.write == write) {
      ++counters_.deduplicated;
      return t;
    }
  }
  if (next_ - head_ == capacity_) {
    ++counters_.ring_full;
    return 0;
  }
  if (!thread_.joinable()) {
    try {
      thread_ = std::thread([this] { run(); });
    } catch (...) {  // std::system_error: no thread, so nothing would serve the ticket
      ++counters_.ring_full;
      return 0;
    }
  }
  const uint64_t t = next_++;
  slot(t) = Slot{t, lo, hi, write, State::kQueued, 0};
  ++counters_.requests;
  lk.unlock();
  work_cv_.notify_one();
  return t;
}

bool FaultWorker::done(uint64_t ticket, int* result) const {
  std::lock_guard<std::mutex> g(mu_);
  if (ticket == 0 || ticket >= next_ || slot(ticket).ticket != ticket) {
    *result = ESTALE;
    return true;
  }
  const Slot& s = slot(ticket);
  if (s.state != State::kDone) return false;
  *result = s.result;
  return true;
}

void FaultWorker::drain() {
  std::unique_lock<std::mutex> lk(mu_);
  const uint64_t last = next_;
  done_cv_.wait(lk, [&] { return head_ >= last || stop_; });
}

FaultWorker::Counters FaultWorker::counters() const {
  std::lock_guard<std::mutex> g(mu_);
  return counters_;
}

void FaultWorker::run() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    work_cv_.wait(lk, [this] { return stop_ || head_ != next_; });
    if (stop_) return;
    // The head's slot cannot be reused while it is pending, so `s` stays ours unlocked.
    Slot& s = slot(head_);
    s.state = State::kRunning;
    lk.unlock();
    const int rc = populate(reinterpret_cast<const void*>(s.lo), s.hi - s.lo, s.write);
    lk.lock();
    s.result = rc;
    s.state = State::kDone;
    if (rc == 0) {
      counters_.pages_populated += (s.hi - s.lo) / page_size();
    } else {
      ++counters_.errors;
    }
    ++head_;
    done_cv_.notify_all();
  }
}

int safe_store(void* dst, const void* src, size_t n) {
  return vm_copy(true, dst, src, n);
}
int safe_load(void* dst, const void* src, size_t n) {
  return vm_copy(false, dst, src, n);
}

}  // namespace softrdma::mem
