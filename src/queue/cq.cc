#include "queue/cq.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>

namespace softrdma::queue {

CompletionQueue::CompletionQueue(uint32_t min_entries, CompletionChannel* channel, void* user_context)
    : channel_(channel), user_context_(user_context) {
  uint64_t size = std::bit_ceil(std::max<uint64_t>(uint64_t{min_entries} + 1, 2));
  slots_ = std::make_unique<Slot[]>(size);
  mask_ = size - 1;
  for (uint64_t i = 0; i < size; ++i) slots_[i].seq.store(i, std::memory_order_relaxed);
}

bool CompletionQueue::push(const Wc& wc, bool solicited) {
  Slot& s = slots_[tail_ & mask_];
  if (s.seq.load(std::memory_order_acquire) != tail_) {
    overrun_.store(true, std::memory_order_relaxed);
    return false;
  }
  s.wc = wc;
  s.seq.store(tail_ + 1, std::memory_order_release);
  ++tail_;
  // Dekker pair with arm() + poll(): the completion must be visible before armed_ is read, and
  // the consumer's armed_ store before its poll reads the ring; otherwise (x86 lets a load pass an
  // earlier store) both can miss: no event, and the consumer sleeps in ibv_get_cq_event on a CQ
  // holding a completion.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint8_t armed = armed_.load(std::memory_order_relaxed);
  // A failed completion always notifies, like hardware: the consumer must learn of errors.
  if (armed != 0 && (armed == 1 || solicited || wc.status != WcStatus::kSuccess)) {
    if (armed_.exchange(0, std::memory_order_acq_rel) != 0 && channel_ != nullptr) channel_->notify(this);
  }
  return true;
}

int CompletionQueue::poll(Wc* out, int n) {
  int got = 0;
  while (got < n) {
    uint64_t pos = head_.load(std::memory_order_relaxed);
    Slot& s = slots_[pos & mask_];
    uint64_t seq = s.seq.load(std::memory_order_acquire);
    if (seq != pos + 1) {
      if (seq < pos + 1) break;  // empty
      continue;                  // another consumer moved on; reload head
    }
    if (!head_.compare_exchange_weak(pos, pos + 1, std::memory_order_acq_rel, std::memory_order_relaxed))
      continue;
    out[got++] = s.wc;
    s.seq.store(pos + mask_ + 1, std::memory_order_release);
  }
  return got;
}

bool CompletionQueue::empty() const {
  uint64_t pos = head_.load(std::memory_order_acquire);
  return slots_[pos & mask_].seq.load(std::memory_order_acquire) != pos + 1;
}

void CompletionQueue::arm(bool solicited_only) {
  armed_.store(solicited_only ? 2 : 1, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);  // before the caller's poll (see push)
}

CompletionChannel::CompletionChannel() { fd_ = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE); }

CompletionChannel::~CompletionChannel() {
  if (fd_ >= 0) close(fd_);
}

void CompletionChannel::notify(CompletionQueue* cq) {
  {
    std::lock_guard<std::mutex> g(mu_);
    pending_.push_back(cq);
  }
  uint64_t one = 1;
  ssize_t r = write(fd_, &one, sizeof one);
  (void)r;
}

CompletionQueue* CompletionChannel::get_event() {
  for (;;) {
    uint64_t v;
    ssize_t r = read(fd_, &v, sizeof v);
    if (r != sizeof v) {
      if (r < 0 && errno == EINTR) continue;
      return nullptr;
    }
    std::lock_guard<std::mutex> g(mu_);
    if (pending_.empty()) continue;  // event of a CQ destroyed meanwhile
    CompletionQueue* cq = pending_.front();
    pending_.pop_front();
    return cq;
  }
}

void CompletionChannel::forget(CompletionQueue* cq) {
  std::lock_guard<std::mutex> g(mu_);
  pending_.erase(std::remove(pending_.begin(), pending_.end(), cq), pending_.end());
}

}  // namespace softrdma::queue
