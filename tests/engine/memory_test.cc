// Seed 001: retransmission reads registered memory again; the adapter keeps no copy of data in
// flight. Shown by counting every heap allocation of the process (global operator new is replaced
// in this file, for the whole test binary) while a long stream runs with many packets in flight
// and losses forcing retransmissions: after setup, the data path allocates nothing at all.
#include "common/pair.h"

#include <atomic>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define SOFTRDMA_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOFTRDMA_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef SOFTRDMA_COUNT_ALLOCATIONS
#define SOFTRDMA_COUNT_ALLOCATIONS 1
#endif

namespace softrdma::test::alloc {
std::atomic<bool> counting{false};
std::atomic<uint64_t> bytes{0};
std::atomic<uint64_t> count{0};

inline void note(std::size_t n) {
  if (counting.load(std::memory_order_relaxed)) {
    bytes.fetch_add(n, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
  }
}
inline void* get(std::size_t n) {
  note(n);
  return std::malloc(n == 0 ? 1 : n);
}
inline void* get_aligned(std::size_t n, std::align_val_t al) {
  note(n);
  std::size_t a = static_cast<std::size_t>(al);
  if (a < sizeof(void*)) a = sizeof(void*);
  std::size_t rounded = (n + a - 1) / a * a;
  return std::aligned_alloc(a, rounded == 0 ? a : rounded);
}
}  // namespace softrdma::test::alloc

#if SOFTRDMA_COUNT_ALLOCATIONS
// These ARE the allocation functions: new and free pair up by construction.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace A = softrdma::test::alloc;
void* operator new(std::size_t n) {
  if (void* p = A::get(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = A::get(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return A::get(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return A::get(n); }
void* operator new(std::size_t n, std::align_val_t al) {
  if (void* p = A::get_aligned(n, al)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t al) {
  if (void* p = A::get_aligned(n, al)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept { return A::get_aligned(n, al); }
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return A::get_aligned(n, al);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
#endif

namespace softrdma::test {
namespace {

using namespace std::chrono_literals;

// Counts allocations between start() and stop() (all threads, including the progress threads).
struct AllocWindow {
  void start() {
    alloc::bytes = 0;
    alloc::count = 0;
    alloc::counting = true;
  }
  void stop() {
    alloc::counting = false;
    bytes = alloc::bytes.load();
    count = alloc::count.load();
  }
  uint64_t bytes = 0, count = 0;
};

#define SKIP_UNLESS_COUNTING()                                                          \
  do {                                                                                 \
    if (!SOFTRDMA_COUNT_ALLOCATIONS) GTEST_SKIP() << "operator new is the sanitizer's"; \
  } while (0)

class MemoryTest : public PairTest {
 protected:
  static link::FaultConfig loss(uint64_t seed, double p) {
    link::FaultConfig f;
    f.seed = seed;
    f.loss = p;
    return f;
  }
};

// The allocation counter itself works (otherwise "0 bytes" below would prove nothing).
TEST_F(MemoryTest, CounterSeesAllocations) {
  SKIP_UNLESS_COUNTING();
  AllocWindow w;
  w.start();
  auto* v = new std::vector<int>(1000);
  w.stop();
  delete v;
  EXPECT_GE(w.bytes, 4000u);
  EXPECT_GE(w.count, 2u);
}

// Runs `total` bytes of RDMA WRITEs (or READs) of `chunk` bytes each, with up to `depth`
// outstanding, polling with a fixed array (no allocation of its own). Returns completions seen;
// *bad gets the first failed status.
uint64_t stream(PairTest& t, Side& a, Side& b, bool read, uint64_t total, uint32_t chunk, int depth, size_t area,
                WcStatus* bad, std::chrono::seconds limit) {
  (void)t;
  const uint64_t n = total / chunk;
  uint64_t posted = 0, done = 0;
  Wc wc[64];
  auto deadline = std::chrono::steady_clock::now() + limit;
  *bad = WcStatus::kSuccess;
  while (done < n && std::chrono::steady_clock::now() < deadline) {
    while (posted < n && posted - done < uint64_t(depth)) {
      size_t off = size_t(posted * chunk % area);
      SendWr wr;
      wr.wr_id = posted;
      wr.opcode = read ? WrOpcode::kRdmaRead : WrOpcode::kRdmaWrite;
      wr.flags = kSignaled;
      wr.rdma.remote_addr = b.addr(off);
      wr.rdma.rkey = b.mr->rkey;
      Sge sg = a.sge(off, chunk);
      wr.sg_list = &sg;
      wr.num_sge = 1;
      if (a.dev->post_send(a.qp, &wr, 1, nullptr) != 0) break;
      ++posted;
    }
    int got = a.dev->poll_cq(a.cq, wc, 64);
    for (int i = 0; i < got; ++i) {
      if (wc[i].status != WcStatus::kSuccess && *bad == WcStatus::kSuccess) *bad = wc[i].status;
      ++done;
    }
    if (*bad != WcStatus::kSuccess) break;
  }
  return done;
}

TEST_F(MemoryTest, WriteStreamUnderLossAllocatesNothingAfterSetup) {
  SKIP_UNLESS_COUNTING();
  PairOptions o;
  o.mtu = 4096;
  o.timeout = 8;
  o.buf_size = 16 << 20;
  o.max_wr = 256;
  o.infer_ipv4_id = false;
  o.fault_a = loss(17, 0.01);
  o.fault_b = loss(18, 0.01);
  make(o);
  fill(a.buf, 0, a.buf.size(), 1);
  WcStatus bad;
  // Warm-up: every code path once (loss recovery included) before counting.
  ASSERT_EQ(stream(*this, a, b, false, 8 << 20, 65536, 64, a.buf.size(), &bad, 20s), (8u << 20) / 65536);
  ASSERT_EQ(bad, WcStatus::kSuccess);
  auto before = qp_counters_of(*a.dev, a.qp->qpn());
  AllocWindow w;
  w.start();
  uint64_t done = stream(*this, a, b, false, 64ull << 20, 65536, 64, a.buf.size(), &bad, 60s);
  w.stop();
  ASSERT_EQ(bad, WcStatus::kSuccess) << name(bad);
  ASSERT_EQ(done, (64ull << 20) / 65536);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), a.buf.size()));
  auto after = qp_counters_of(*a.dev, a.qp->qpn());
  std::printf("64 MiB of WRITEs: %lu packets, %lu retransmitted, %lu timeouts; %lu allocations, %lu bytes\n",
              (unsigned long)(after.tx_packets - before.tx_packets),
              (unsigned long)(after.retransmits - before.retransmits), (unsigned long)(after.timeouts - before.timeouts),
              (unsigned long)w.count, (unsigned long)w.bytes);
  EXPECT_GT(after.retransmits, before.retransmits) << "the loss must have forced retransmissions";
  EXPECT_EQ(w.bytes, 0u) << w.count << " allocations while data was in flight";
  EXPECT_EQ(w.count, 0u);
}

TEST_F(MemoryTest, MegabyteReadsUnderLossAreExactAndAllocateNothing) {
  PairOptions o;
  o.mtu = 4096;    // 256 response packets per READ
  o.timeout = 10;  // ~4 ms: re-requests must not outrun the re-served responses still queued
  o.buf_size = 4 << 20;
  o.infer_ipv4_id = false;
  o.fault_a = loss(21, 0.01);
  o.fault_b = loss(22, 0.01);
  make(o);
  for (size_t i = 0; i < b.buf.size(); i += 8) {
    uint64_t v = i * 0x9e3779b97f4a7c15ull;
    std::memcpy(b.buf.data() + i, &v, 8);
  }
  WcStatus bad;
  ASSERT_EQ(stream(*this, a, b, true, 1 << 20, 1 << 20, 1, a.buf.size(), &bad, 20s), 1u);  // warm-up
  ASSERT_EQ(bad, WcStatus::kSuccess) << name(bad);
  std::fill(a.buf.begin(), a.buf.end(), 0);
  auto before = qp_counters_of(*b.dev, b.qp->qpn());
  AllocWindow w;
  w.start();
  uint64_t done = stream(*this, a, b, true, 4 << 20, 1 << 20, 2, a.buf.size(), &bad, 30s);
  w.stop();
  ASSERT_EQ(bad, WcStatus::kSuccess) << name(bad);
  ASSERT_EQ(done, 4u);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), 4 << 20)) << "READ data not byte-exact";
  auto after = qp_counters_of(*b.dev, b.qp->qpn());
  std::printf("4 x 1 MiB READ: %lu READ re-serves from memory; %lu allocations\n",
              (unsigned long)(after.read_resends - before.read_resends), (unsigned long)w.count);
  EXPECT_GT(a.dev->fault_counters().dropped + b.dev->fault_counters().dropped, 0u);
  if (SOFTRDMA_COUNT_ALLOCATIONS) {
    EXPECT_EQ(w.bytes, 0u) << w.count << " allocations while READs were served";
  }
}

}  // namespace
}  // namespace softrdma::test
