// On-demand paging (seed 003): regions registered with IBV_ACCESS_ON_DEMAND are not pinned. The
// engine thread must never block on a page fault, so it checks residency(), and when pages are
// missing it hands them to a FaultWorker and answers the peer with an RNR NAK; the peer retries.
// The implicit region covers the whole address space, where a peer may name any address, so
// copies there go through safe_store()/safe_load(), which fail with EFAULT instead of SIGSEGV.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

namespace softrdma::mem {

enum class Residency : uint8_t { kResident, kMissing, kUnmapped };

// Whether every page of [addr, addr+len) is mapped and resident, by mincore(2): kUnmapped when
// any page has no mapping, else kMissing when any page is not resident. len 0 is kResident.
// Never allocates. Resident is not accessible: a PROT_NONE or read-only page can be resident
// (and untouched PROT_NONE pages are kMissing), so writes into memory the user may have
// protected still need safe_store(). For a file mapping, resident means in the page cache.
Residency residency(const void* addr, uint64_t len);

// Makes [addr, addr+len) resident now, writable if `write`, by MADV_POPULATE_WRITE/READ
// (Linux >= 5.14), else by touch_pages(). Blocks on the faults. Returns 0, EFAULT when part of
// the range is unmapped, inaccessible, or not writable for a write, or another errno (ENOMEM).
int populate(const void* addr, uint64_t len, bool write);
// What populate() falls back to on kernels without MADV_POPULATE_*, exposed so tests cover it:
// faults each page in through the kernel (process_vm_readv, or an atomic OR of 0 by
// FUTEX_WAKE_OP for a write), so a bad page gives EFAULT and a concurrent writer loses nothing.
int touch_pages(const void* addr, uint64_t len, bool write);

// Background page-fault service: one thread, started by the first request and joined by the
// destructor, sleeping on a condition variable while idle. Requests are served in order from
// a ring allocated by the constructor, so a request allocates nothing (except the first, which
// starts the thread).
class FaultWorker {
 public:
  explicit FaultWorker(uint32_t capacity = 256);
  // Abandons queued requests; waits for the one in progress.
  ~FaultWorker();
  FaultWorker(const FaultWorker&) = delete;
  FaultWorker& operator=(const FaultWorker&) = delete;

  // Queues [addr, addr+len) for populate(); returns a non-zero ticket, or 0 when the ring is full
  // (or the thread cannot start): the caller retries later. A queued or in-progress request of
  // the same kind (read or write) that covers the range gives its ticket instead, so a peer that
  // keeps retrying does not queue the same fault again. Thread-safe; never faults itself.
  uint64_t request(const void* addr, uint64_t len, bool write);
  // Non-blocking: true once the ticket's work is finished, with *result = populate()'s result.
  // The ring remembers the last `capacity` tickets; an older ticket, a ticket never issued, and
  // 0 are reported done with ESTALE.
  bool done(uint64_t ticket, int* result) const;
  // Blocks until every request queued before the call is finished (ibv_advise_mr with
  // IBV_ADVISE_MR_FLAG_FLUSH).
  void drain();

  struct Counters {
    uint64_t requests;         // tickets issued
    uint64_t deduplicated;     // requests answered with a queued ticket
    uint64_t pages_populated;  // pages of requests that finished with 0
    uint64_t errors;           // requests that finished with an errno
    uint64_t ring_full;        // requests refused with 0
  };
  Counters counters() const;

 private:
  enum class State : uint8_t { kQueued, kRunning, kDone };
  struct Slot {
    uint64_t ticket = 0;
    uintptr_t lo = 0, hi = 0;  // page-aligned
    bool write = false;
    State state = State::kDone;
    int result = 0;
  };
  Slot& slot(uint64_t ticket) const { return ring_[(ticket - 1) % capacity_]; }
  void run();

  const uint32_t capacity_;
  const std::unique_ptr<Slot[]> ring_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // the worker waits for requests
  std::condition_variable done_cv_;  // drain() waits for the worker
  uint64_t next_ = 1;                // next ticket to issue
  uint64_t head_ = 1;                // next ticket to serve; [head_, next_) are pending
  bool stop_ = false;
  Counters counters_{};
  std::thread thread_;
};

// Fault-safe copies for memory the process may not have mapped (the implicit on-demand region),
// by process_vm_writev/readv on the process itself. Return 0 or an errno (EFAULT when part of
// the other side is unmapped or, for a store, not writable); on failure part of dst may have been
// written. Not atomic with respect to concurrent writers, like memcpy.
int safe_store(void* dst, const void* src, size_t n);
int safe_load(void* dst, const void* src, size_t n);

}  // namespace softrdma::mem
