// A Link decorator that injects faults on transmit: loss, corruption, duplication, reordering and
// delay, decided by a seeded PRNG so a run can be replayed.
//
// Per frame, in this order: lost (loss) -> else bits flipped in a private copy (corrupt) -> sent
// twice (duplicate) -> held back until reorder_depth later frames have passed or 1 ms has passed
// (reorder) -> if delay_ns or jitter_ns is set, every emitted frame waits delay_ns + U[0, jitter_ns)
// (jitter alone also reorders). Each frame consumes the same number of PRNG draws whatever its fate,
// so e.g. the loss pattern depends only on the seed and the loss rate.
//
// Held frames own their bytes (copied into a preallocated slot pool). When the pool is exhausted or
// a frame is larger than a slot, the fault that needs a copy is skipped (counted as pool_full).
// Delayed and held frames are released by service(now), which the caller must drive with the
// deadline it returns; send() and recv() also release due frames opportunistically.
//
// Receiving is not faulted: recv() hands out the inner link's frames as they are, with their
// bytes still owned by the inner link (valid until the next recv(), link.h). Nothing is kept
// from them; only transmitted frames are ever held, and those are copied.
//
// Backpressure: if the inner link accepts only part of a batch, the unsent rest of that batch is
// copied into the pool (a reserve guarantees room) and sent first later; while that backlog is not
// empty, send() accepts nothing new (returns 0).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "link/link.h"

namespace softrdma::link {

struct FaultConfig {
  uint64_t seed = 1;
  double loss = 0, duplicate = 0, reorder = 0, corrupt = 0;  // probabilities in [0, 1]
  uint64_t delay_ns = 0;   // fixed extra delay for every frame, 0 = none
  uint64_t jitter_ns = 0;  // extra uniform random delay in [0, jitter_ns)
  uint32_t reorder_depth = 3;  // later frames that may overtake a held frame
  uint64_t reorder_max_hold_ns = 1'000'000;  // a held frame is released after this at the latest
  uint32_t pool_slots = 4096;  // frames that can be held at once
  uint32_t slot_bytes = 9216;  // largest frame that can be held
};

struct FaultCounters {
  uint64_t dropped = 0, corrupted = 0, duplicated = 0, reordered = 0, delayed = 0;
  uint64_t pool_full = 0;  // faults skipped because no slot was free or the frame was too large
  uint64_t lost = 0;       // unsent under backpressure and too large to keep (frame > slot_bytes)
};

// "loss=0.05,reorder=0.02,dup=0.01,corrupt=0.01,delay=200us,jitter=50us,seed=7,depth=3".
// Probabilities may be written as fractions or percentages ("5%"); durations need a unit
// (ns, us, ms, s) unless 0. An empty spec is a fault-free config.
std::optional<FaultConfig> parse_fault_spec(std::string_view spec, std::string* err);
// The inverse of parse_fault_spec (only non-default fields, always the seed).
std::string format_fault_spec(const FaultConfig& cfg);

class FaultLink final : public Link {
 public:
  FaultLink(std::unique_ptr<Link> inner, const FaultConfig& cfg);
  ~FaultLink() override;

  size_t send(const TxFrame* frames, size_t n) override;
  size_t recv(RxFrame* frames, size_t n) override;
  int fd() const override { return inner_->fd(); }
  Endpoint local() const override { return inner_->local(); }
  uint64_t service(uint64_t now_ns) override;
  bool prepare_sleep() override { return inner_->prepare_sleep(); }
  void after_wake() override { inner_->after_wake(); }
  const LinkCounters& counters() const override { return inner_->counters(); }
  std::string describe() const override;

  const FaultCounters& fault_counters() const { return fc_; }
  const FaultConfig& config() const { return cfg_; }
  Link& inner() { return *inner_; }
  // Frames currently held (reorder, delay or backlog).
  size_t held() const { return reorder_q_.size() + delay_heap_.size() + backlog_.size(); }

 private:
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  static constexpr size_t kOut = 64;  // out-batch size handed to the inner link

  struct Slot {
    Endpoint dst;
    uint32_t len = 0;
    uint8_t copies = 1;        // duplicate of a reorder-held frame: emit twice on release
    uint64_t release_ns = 0;   // delay / reorder deadline
    uint64_t release_seq = 0;  // reorder: release once passed_ reaches this
    uint64_t order = 0;        // tie-break for equal release times
  };
  // Fixed-capacity FIFO of slot indices (no allocation after construction).
  struct Ring {
    std::vector<uint32_t> v;
    size_t head = 0, count = 0;
    void init(size_t cap) { v.assign(cap, 0); }
    size_t size() const { return count; }
    bool empty() const { return count == 0; }
    uint32_t front() const { return v[head]; }
    uint32_t at(size_t i) const { return v[(head + i) % v.size()]; }
    void push(uint32_t x) { v[(head + count++) % v.size()] = x; }
    void pop() { head = (head + 1) % v.size(); --count; }
  };

  uint64_t next_u64();
  double next_unit();  // uniform in [0, 1)
  uint32_t alloc_slot(bool reserve_ok);
  void free_slot(uint32_t s) { free_.push_back(s); }
  uint8_t* slot_data(uint32_t s) { return pool_.get() + size_t(s) * cfg_.slot_bytes; }
  uint32_t copy_to_slot(const TxFrame& f, bool reserve_ok);
  TxFrame slot_frame(uint32_t s);
  void corrupt_slot(uint32_t s);
  auto heap_later() const {  // std heap comparator giving a min-heap on (release_ns, order)
    return [this](uint32_t a, uint32_t b) {
      const Slot &x = slots_[a], &y = slots_[b];
      return x.release_ns != y.release_ns ? x.release_ns > y.release_ns : x.order > y.order;
    };
  }

  // A frame leaving the fault stages goes to the delay heap or the out-batch. `slot` (if any)
  // holds the frame's bytes and is owned by whoever takes the frame next.
  void emit_copies(const TxFrame& f, uint32_t slot, uint8_t copies, uint64_t now);
  void emit_frame(const TxFrame& f, uint32_t slot, uint64_t now);
  void push_out(const TxFrame& f, uint32_t slot);
  void push_delay(uint32_t slot, uint64_t now);
  void to_backlog(const TxFrame& f, uint32_t slot);
  void release_reorder(uint64_t now);
  void release_delayed(uint64_t now);
  bool flush_out();      // false if the inner link did not take everything (rest -> backlog)
  bool flush_backlog();  // false if some backlog remains
  void release_due(uint64_t now);
  bool fault_free() const;
  static uint64_t now_ns();

  std::unique_ptr<Link> inner_;
  FaultConfig cfg_;
  FaultCounters fc_;
  uint64_t rng_[4];  // xoshiro256** for the per-frame decisions
  uint64_t aux_[4];  // separate stream for corruption details and jitter

  std::unique_ptr<uint8_t[]> pool_;  // not zero-filled: pages are touched only when used
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
  uint32_t reserve_ = 0;  // slots kept back for the backpressure backlog
  Ring reorder_q_, backlog_;
  std::vector<uint32_t> delay_heap_;  // min-heap on (release_ns, order)
  uint64_t passed_ = 0;  // frames that went through the reorder stage without being held
  uint64_t order_ = 0;

  TxFrame out_[kOut];
  uint32_t out_slot_[kOut];  // slot backing out_[i] (freed once sent) or kNoSlot
  size_t nout_ = 0;
};

}  // namespace softrdma::link
