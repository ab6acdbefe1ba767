// Pinning of ordinary registered regions (seed 001): their pages stay resident for the lifetime
// of the registration, as a real adapter needs for DMA. We use mlock(2), so the limit is the
// process's RLIMIT_MEMLOCK, unless it holds CAP_IPC_LOCK (root), exactly as ib_umem_get() in the
// kernel checks it for real devices.
#pragma once

#include <cstddef>

namespace softrdma::mem {

// Locks the pages of [addr, addr+length). Returns 0, EFAULT when part of the range is not
// mapped, or ENOMEM when the lock limit would be exceeded (a message says which limit, once).
int pin(const void* addr, size_t length);
// Unlocks the pages of a range pinned before; pages that other pinned ranges of the process
// share stay locked. Thread-safe.
void unpin(const void* addr, size_t length);

}  // namespace softrdma::mem
