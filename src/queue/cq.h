// Completion queues: rings polled from user memory without locks or system calls.
//
// Seed 003 (interrupt-free I/O): the adapter writes completion entries into a ring in the
// consumer's memory and the consumer polls it. Each slot carries a sequence number that says
// whose turn it is (the "owner/valid bit" generalised to a lap counter), so producer and
// consumers never share a lock: the engine appends under its own lock (one producer at a
// time), any number of application threads poll (a CAS on the head per entry).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <deque>

#include "queue/work.h"

namespace softrdma::queue {

class CompletionChannel;

class CompletionQueue {
 public:
  CompletionQueue(uint32_t min_entries, CompletionChannel* channel, void* user_context = nullptr);
  CompletionQueue(const CompletionQueue&) = delete;
  CompletionQueue& operator=(const CompletionQueue&) = delete;

  // Producer (the engine; callers serialise). Returns false when the ring is full: the CQ
  // has overrun, which the caller reports as an asynchronous CQ error.
  bool push(const Wc& wc, bool solicited);

  // Consumer: copies up to n completions to out; returns how many. Never blocks.
  int poll(Wc* out, int n);

  bool empty() const;
  uint32_t capacity() const { return static_cast<uint32_t>(mask_ + 1) - 1; }

  // Arms the CQ: the next completion (or next solicited one) notifies the channel once.
  void arm(bool solicited_only);
  CompletionChannel* channel() const { return channel_; }
  void* user_context() const { return user_context_; }
  bool overrun() const { return overrun_.load(std::memory_order_relaxed); }

 private:
  struct Slot {
    std::atomic<uint64_t> seq;
    Wc wc;
  };
  std::unique_ptr<Slot[]> slots_;
  uint64_t mask_;
  CompletionChannel* channel_;
  void* user_context_;
  alignas(64) uint64_t tail_ = 0;  // producer only
  std::atomic<bool> overrun_{false};
  alignas(64) std::atomic<uint64_t> head_{0};
  // 0: not armed, 1: any completion, 2: solicited only.
  alignas(64) std::atomic<uint8_t> armed_{0};
};

// A completion channel: a pollable fd that becomes readable when an armed CQ gets a completion.
// One readable unit per event (eventfd in semaphore mode), so events are never merged away.
class CompletionChannel {
 public:
  CompletionChannel();
  ~CompletionChannel();
  CompletionChannel(const CompletionChannel&) = delete;
  CompletionChannel& operator=(const CompletionChannel&) = delete;

  int fd() const { return fd_; }
  // Waits for (or, if the fd is non-blocking and nothing is pending, fails with EAGAIN) the next
  // event and returns its CQ. Returns nullptr with errno set on failure.
  CompletionQueue* get_event();
  void notify(CompletionQueue* cq);
  // Drops pending events of a CQ that is being destroyed.
  void forget(CompletionQueue* cq);
  bool valid() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  std::mutex mu_;
  std::deque<CompletionQueue*> pending_;
};

}  // namespace softrdma::queue
