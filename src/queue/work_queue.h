// Work queues: fixed rings of work queue entries posted by the consumer and taken by the engine.
//
// One producer at a time (posters serialise on the queue's post lock, which only posters take),
// one consumer (the engine, under its own lock). Entries are published by a release store of
// the producer index, so the engine reads them without taking the post lock. Scatter/gather
// lists live in a flat array beside the ring: slot i owns max_sge entries at [i * max_sge].
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "queue/work.h"

namespace softrdma::queue {

template <typename Entry>
class WorkQueue {
 public:
  WorkQueue(uint32_t max_wr, uint32_t max_sge)
      : size_(max_wr), max_sge_(max_sge == 0 ? 1 : max_sge),
        entries_(std::make_unique<Entry[]>(max_wr)),
        sges_(std::make_unique<Sge[]>(size_t{max_wr} * max_sge_)) {}

  uint32_t max_wr() const { return size_; }
  uint32_t max_sge() const { return max_sge_; }
  std::mutex& post_lock() { return post_mu_; }

  // Producer (post lock held): the next free slot, or nullptr when the queue is full.
  Entry* reserve(uint64_t* index) {
    uint64_t p = produced_.load(std::memory_order_relaxed);
    if (p - retired_.load(std::memory_order_acquire) >= size_) return nullptr;
    *index = p;
    return &entries_[p % size_];
  }
  void commit() { produced_.fetch_add(1, std::memory_order_release); }

  // Consumer side.
  uint64_t produced() const { return produced_.load(std::memory_order_acquire); }
  uint64_t retired() const { return retired_.load(std::memory_order_relaxed); }
  void retire(uint64_t n = 1) { retired_.fetch_add(n, std::memory_order_release); }
  Entry& at(uint64_t index) { return entries_[index % size_]; }
  Sge* sges(uint64_t index) { return &sges_[(index % size_) * max_sge_]; }
  uint64_t outstanding() const { return produced() - retired(); }

 private:
  uint32_t size_;
  uint32_t max_sge_;
  std::unique_ptr<Entry[]> entries_;
  std::unique_ptr<Sge[]> sges_;
  std::mutex post_mu_;
  alignas(64) std::atomic<uint64_t> produced_{0};
  alignas(64) std::atomic<uint64_t> retired_{0};
};

// A posted receive: where the next incoming SEND lands.
struct RecvWqe {
  uint64_t wr_id = 0;
  uint32_t num_sge = 0;
  uint64_t length = 0;  // sum of the SGE lengths
};

// A receive queue; also the shared receive queue, which several QPs consume from.
class RecvQueue : public WorkQueue<RecvWqe> {
 public:
  using WorkQueue::WorkQueue;
  // Copies wr into the ring. Returns 0, ENOMEM when full, EINVAL when it has too many SGEs.
  int post(const RecvWr& wr);
  // SRQ limit (armed low-water mark), 0 = disarmed. Checked by the engine after each take.
  std::atomic<uint32_t> limit{0};
};

}  // namespace softrdma::queue
