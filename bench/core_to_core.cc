// Two-core probes: what moving data from one core to another costs on this machine, the floor
// under a same-host transport whose receiving process must write the data itself (softrdma's
// shared-memory link copies into a ring on the sender's core and out of it on the receiver's).
//
//   core_to_core [--sizes 8,64,1K,4K,64K,1M] [--seconds 0.3] [--ring 4M]
//
// Two threads pinned to the first two CPUs this process may use. Output: a header line, then
// whitespace-separated rows:
//   rtt 64 ROUNDS SECONDS NS      one cache line bounced between the two threads: ns per round trip
//   ring BYTES MESSAGES SECONDS GBps
//                                 a single-producer/single-consumer ring of --ring bytes: the first
//                                 thread copies BYTES from a cache-warm buffer into the next slot,
//                                 the second copies them out into a cache-warm buffer (GB = 10^9
//                                 bytes, each byte counted once)
// On a virtual machine the round trip tells where the host put the two vCPUs (tens of ns: one
// core complex; hundreds: two), which moves every same-host figure with it; bench/compare.sh
// records it with each repetition. With one CPU there is nothing to measure: it says so, exits 0.
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "plain_util.h"

namespace {

using Clock = std::chrono::steady_clock;

// The first two CPUs in our affinity mask; -1 where there is none.
void pick_cpus(int* a, int* b) {
  *a = *b = -1;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set)) continue;
    if (*a < 0) {
      *a = c;
    } else {
      *b = c;
      return;
    }
  }
}

void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

inline void clobber(void* p) { asm volatile("" : : "r"(p) : "memory"); }

// One cache line bounced: the first thread writes 1 and waits for 0, the second the reverse.
void measure_rtt(int cpu_a, int cpu_b, double min_seconds) {
  alignas(64) static std::atomic<uint32_t> line{0};
  line.store(0);
  std::thread echo([cpu_b] {
    pin(cpu_b);
    for (;;) {
      uint32_t v;
      while ((v = line.load(std::memory_order_acquire)) != 1)
        if (v == 2) return;
      line.store(0, std::memory_order_release);
    }
  });
  pin(cpu_a);
  constexpr uint64_t kBatch = 1000;
  uint64_t rounds = 0;
  const auto start = Clock::now();
  double secs = 0;
  while (secs < min_seconds) {
    for (uint64_t i = 0; i < kBatch; ++i) {
      line.store(1, std::memory_order_release);
      while (line.load(std::memory_order_acquire) != 0) {
      }
    }
    rounds += kBatch;
    secs = std::chrono::duration<double>(Clock::now() - start).count();
  }
  line.store(2, std::memory_order_release);
  echo.join();
  std::printf("rtt 64 %llu %.4f %.1f\n", static_cast<unsigned long long>(rounds), secs, secs * 1e9 / double(rounds));
}

// A ring of `ring_bytes / size` slots of `size` bytes (at least two).
void measure_ring(int cpu_a, int cpu_b, uint64_t size, uint64_t ring_bytes, double min_seconds) {
  const uint64_t slots = std::max<uint64_t>(2, ring_bytes / size);
  auto ring = softrdma::bench::warm_buffer(slots * size, "core_to_core");
  auto src = softrdma::bench::warm_buffer(size, "core_to_core");
  alignas(64) std::atomic<uint64_t> head{0};  // messages produced
  alignas(64) std::atomic<uint64_t> tail{0};  // messages consumed
  alignas(64) std::atomic<uint64_t> end{UINT64_MAX};  // messages in the run, once the producer stops
  char* r = ring.get();
  std::thread consumer([&] {
    pin(cpu_b);
    auto dst = softrdma::bench::warm_buffer(size, "core_to_core");
    uint64_t t = 0;
    for (;;) {
      uint64_t h;
      while ((h = head.load(std::memory_order_acquire)) == t)
        if (end.load(std::memory_order_acquire) == t) return;
      for (; t < h; ++t) {
        std::memcpy(dst.get(), r + (t % slots) * size, size);
        clobber(dst.get());
        tail.store(t + 1, std::memory_order_release);
      }
    }
  });
  pin(cpu_a);
  uint64_t h = 0;
  const auto start = Clock::now();
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      while (h - tail.load(std::memory_order_acquire) >= slots) {
      }
      std::memcpy(r + (h % slots) * size, src.get(), size);
      head.store(++h, std::memory_order_release);
    }
    if (std::chrono::duration<double>(Clock::now() - start).count() >= min_seconds) break;
  }
  end.store(h, std::memory_order_release);
  consumer.join();  // every message copied out
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("ring %llu %llu %.4f %.3f\n", static_cast<unsigned long long>(size), static_cast<unsigned long long>(h),
              secs, double(size) * double(h) / secs / 1e9);
}

int usage() {
  std::fprintf(stderr, "usage: core_to_core [--sizes 8,64,1K,4K,64K,1M] [--seconds 0.3] [--ring 4M]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<uint64_t> sizes = {8, 64, 1 << 10, 4 << 10, 64 << 10, 1 << 20};
  double seconds = 0.3;
  uint64_t ring_bytes = 4 << 20;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    std::string v = argv[++i];
    if (a == "--sizes") {
      if (!softrdma::bench::parse_size_list(v, &sizes)) return usage();
    } else if (a == "--seconds") {
      seconds = std::atof(v.c_str());
      if (!(seconds > 0)) return usage();
    } else if (a == "--ring") {
      ring_bytes = softrdma::bench::parse_size(v);
      if (ring_bytes == 0) return usage();
    } else {
      return usage();
    }
  }
  int cpu_a, cpu_b;
  pick_cpus(&cpu_a, &cpu_b);
  if (cpu_b < 0) {
    std::printf("# one CPU: no core-to-core figures\n");
    return 0;
  }
  std::printf("# test bytes count seconds value (rtt: ns per round trip; ring: GBps) cpus %d,%d\n", cpu_a, cpu_b);
  measure_rtt(cpu_a, cpu_b, std::min(seconds, 0.2));
  for (uint64_t s : sizes) measure_ring(cpu_a, cpu_b, s, ring_bytes, seconds);
  return 0;
}
