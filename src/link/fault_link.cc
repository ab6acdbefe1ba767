#include "link/fault_link.h"

#include <time.h>

#include <algorithm>
#include <cstring>

namespace softrdma::link {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t xoshiro_next(uint64_t (&s)[4]) {
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

void seed_state(uint64_t (&s)[4], uint64_t seed) {
  for (auto& w : s) w = splitmix64(seed);
}

}  // namespace

FaultLink::FaultLink(std::unique_ptr<Link> inner, const FaultConfig& cfg)
    : inner_(std::move(inner)), cfg_(cfg) {
  if (cfg_.pool_slots == 0) cfg_.pool_slots = 1;
  seed_state(rng_, cfg_.seed);
  seed_state(aux_, cfg_.seed ^ 0x5deece66dull);
  const size_t nslots = cfg_.pool_slots;
  pool_.reset(new uint8_t[nslots * cfg_.slot_bytes]);
  slots_.resize(nslots);
  free_.reserve(nslots);
  for (size_t i = nslots; i-- > 0;) free_.push_back(static_cast<uint32_t>(i));
  reserve_ = std::min<uint32_t>(2 * kOut, cfg_.pool_slots / 2);
  reorder_q_.init(nslots);
  backlog_.init(nslots);
  delay_heap_.reserve(nslots);
}

FaultLink::~FaultLink() = default;

uint64_t FaultLink::now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

uint64_t FaultLink::next_u64() { return xoshiro_next(rng_); }
double FaultLink::next_unit() { return double(next_u64() >> 11) * 0x1.0p-53; }

bool FaultLink::fault_free() const {
  return cfg_.loss <= 0 && cfg_.duplicate <= 0 && cfg_.reorder <= 0 && cfg_.corrupt <= 0 &&
         cfg_.delay_ns == 0 && cfg_.jitter_ns == 0;
}

uint32_t FaultLink::alloc_slot(bool reserve_ok) {
  if (free_.size() <= (reserve_ok ? 0 : reserve_)) return kNoSlot;
  uint32_t s = free_.back();
  free_.pop_back();
  return s;
}

uint32_t FaultLink::copy_to_slot(const TxFrame& f, bool reserve_ok) {
  const size_t len = f.length();
  if (len > cfg_.slot_bytes || f.nparts > kMaxTxParts) return kNoSlot;
  const uint32_t s = alloc_slot(reserve_ok);
  if (s == kNoSlot) return kNoSlot;
  uint8_t* p = slot_data(s);
  for (uint8_t i = 0; i < f.nparts; ++i) {
    if (f.parts[i].iov_len) std::memcpy(p, f.parts[i].iov_base, f.parts[i].iov_len);
    p += f.parts[i].iov_len;
  }
  slots_[s] = Slot{};
  slots_[s].dst = f.dst;
  slots_[s].len = static_cast<uint32_t>(len);
  return s;
}

TxFrame FaultLink::slot_frame(uint32_t s) {
  TxFrame f;
  f.dst = slots_[s].dst;
  f.parts[0].iov_base = slot_data(s);
  f.parts[0].iov_len = slots_[s].len;
  f.nparts = 1;
  return f;
}

void FaultLink::corrupt_slot(uint32_t s) {
  const uint64_t nbits = uint64_t(slots_[s].len) * 8;
  const int flips = 1 + int(xoshiro_next(aux_) % 3);
  uint64_t done[3];
  for (int i = 0; i < flips; ++i) {
    uint64_t bit;
    do {  // distinct bits, so flips never cancel out
      bit = xoshiro_next(aux_) % nbits;
    } while (std::find(done, done + i, bit) != done + i);
    done[i] = bit;
    slot_data(s)[bit / 8] ^= uint8_t(1u << (bit % 8));
  }
}

void FaultLink::to_backlog(const TxFrame& f, uint32_t slot) {
  if (slot == kNoSlot) slot = copy_to_slot(f, true);
  if (slot == kNoSlot) {
    ++fc_.lost;
    return;
  }
  backlog_.push(slot);
}

void FaultLink::push_out(const TxFrame& f, uint32_t slot) {
  if (!backlog_.empty() || (nout_ == kOut && !flush_out())) {
    to_backlog(f, slot);  // keep order behind what is already waiting
    return;
  }
  out_[nout_] = f;
  out_slot_[nout_] = slot;
  ++nout_;
}

bool FaultLink::flush_out() {
  if (nout_ == 0) return true;
  const size_t n = nout_;
  nout_ = 0;
  const size_t k = inner_->send(out_, n);
  for (size_t i = 0; i < k; ++i)
    if (out_slot_[i] != kNoSlot) free_slot(out_slot_[i]);
  for (size_t i = k; i < n; ++i) to_backlog(out_[i], out_slot_[i]);
  return k == n;
}

bool FaultLink::flush_backlog() {
  while (!backlog_.empty()) {
    const size_t m = std::min(backlog_.size(), kOut);
    TxFrame batch[kOut];
    for (size_t j = 0; j < m; ++j) batch[j] = slot_frame(backlog_.at(j));
    const size_t k = inner_->send(batch, m);
    for (size_t j = 0; j < k; ++j) {
      free_slot(backlog_.front());
      backlog_.pop();
    }
    if (k < m) return false;
  }
  return true;
}

void FaultLink::push_delay(uint32_t slot, uint64_t now) {
  uint64_t d = cfg_.delay_ns;
  if (cfg_.jitter_ns) d += xoshiro_next(aux_) % cfg_.jitter_ns;
  slots_[slot].release_ns = now + d;
  slots_[slot].order = order_++;
  delay_heap_.push_back(slot);
  std::push_heap(delay_heap_.begin(), delay_heap_.end(), heap_later());
  ++fc_.delayed;
}

void FaultLink::emit_frame(const TxFrame& f, uint32_t slot, uint64_t now) {
  if (cfg_.delay_ns || cfg_.jitter_ns) {
    if (slot == kNoSlot) slot = copy_to_slot(f, false);
    if (slot != kNoSlot) {
      push_delay(slot, now);
      return;
    }
    ++fc_.pool_full;  // cannot hold it: send undelayed
  }
  push_out(f, slot);
}

void FaultLink::emit_copies(const TxFrame& f, uint32_t slot, uint8_t copies, uint64_t now) {
  uint32_t second = kNoSlot;
  bool dup = copies > 1;
  if (dup && slot != kNoSlot) {  // each emitted copy owns its own slot
    second = copy_to_slot(f, false);
    if (second == kNoSlot) {
      ++fc_.pool_full;
      dup = false;
    }
  }
  emit_frame(f, slot, now);
  if (dup) {
    ++fc_.duplicated;
    emit_frame(second != kNoSlot ? slot_frame(second) : f, second, now);
  }
}

void FaultLink::release_reorder(uint64_t now) {
  // Both release keys grow in FIFO order, so only the head needs checking.
  while (!reorder_q_.empty()) {
    const uint32_t s = reorder_q_.front();
    if (slots_[s].release_seq > passed_ && slots_[s].release_ns > now) break;
    reorder_q_.pop();
    emit_copies(slot_frame(s), s, slots_[s].copies, now);
  }
}

void FaultLink::release_delayed(uint64_t now) {
  while (!delay_heap_.empty() && slots_[delay_heap_.front()].release_ns <= now) {
    std::pop_heap(delay_heap_.begin(), delay_heap_.end(), heap_later());
    const uint32_t s = delay_heap_.back();
    delay_heap_.pop_back();
    push_out(slot_frame(s), s);
  }
}

void FaultLink::release_due(uint64_t now) {
  flush_backlog();
  release_reorder(now);
  release_delayed(now);
  flush_out();
}

size_t FaultLink::send(const TxFrame* frames, size_t n) {
  const bool busy = held() != 0;
  if (!busy && fault_free()) return inner_->send(frames, n);
  const uint64_t now = now_ns();
  if (busy) release_due(now);
  if (!backlog_.empty()) return 0;  // the inner link is still full

  size_t i = 0;
  while (i < n) {
    const TxFrame& f = frames[i++];
    // Always four draws per frame, so each fault's pattern depends only on seed and its rate.
    const double r_loss = next_unit(), r_corrupt = next_unit();
    const double r_dup = next_unit(), r_reorder = next_unit();
    if (r_loss < cfg_.loss) {
      ++fc_.dropped;
      continue;
    }
    uint32_t slot = kNoSlot;
    if (r_corrupt < cfg_.corrupt && f.length() > 0) {
      slot = copy_to_slot(f, false);
      if (slot == kNoSlot) {
        ++fc_.pool_full;
      } else {
        corrupt_slot(slot);
        ++fc_.corrupted;
      }
    }
    const uint8_t copies = r_dup < cfg_.duplicate ? 2 : 1;
    if (r_reorder < cfg_.reorder) {
      if (slot == kNoSlot) slot = copy_to_slot(f, false);
      if (slot != kNoSlot) {
        slots_[slot].copies = copies;
        slots_[slot].release_seq = passed_ + cfg_.reorder_depth;
        slots_[slot].release_ns = now + cfg_.reorder_max_hold_ns;
        reorder_q_.push(slot);
        ++fc_.reordered;
        continue;
      }
      ++fc_.pool_full;
    }
    emit_copies(slot != kNoSlot ? slot_frame(slot) : f, slot, copies, now);
    ++passed_;
    release_reorder(now);
    if (!backlog_.empty()) break;  // inner link full: accept no more frames now
  }
  flush_out();  // anything it cannot send goes to the backlog; those frames count as sent
  return i;
}

size_t FaultLink::recv(RxFrame* frames, size_t n) {
  if (held() != 0) release_due(now_ns());
  return inner_->recv(frames, n);
}

uint64_t FaultLink::service(uint64_t now) {
  release_due(now);
  uint64_t next = inner_->service(now);
  auto want = [&next](uint64_t t) {
    if (t && (next == 0 || t < next)) next = t;
  };
  if (!backlog_.empty()) want(now + 50'000);  // the inner link was full: retry soon
  if (!reorder_q_.empty()) want(slots_[reorder_q_.front()].release_ns);
  if (!delay_heap_.empty()) want(slots_[delay_heap_.front()].release_ns);
  return next;
}

std::string FaultLink::describe() const {
  return "fault(" + format_fault_spec(cfg_) + ")+" + inner_->describe();
}

}  // namespace softrdma::link
