// Single-core memcpy bandwidth: the machine's ceiling for any transport that copies its data once
// (bench/compare.sh puts it beside softrdma, UCX and TCP).
//
//   memcpy_bw [--sizes 8,64,1K,4K,64K,1M,256M] [--seconds 0.3]
//
// For each size, one thread copies a SIZE-byte source buffer to a SIZE-byte destination buffer
// again and again (both touched first, so no page faults are timed) for at least --seconds and
// at least three copies, and reports bytes copied per second (GB = 10^9 bytes, each byte counted
// once, not read + write). Small sizes stay in the caches, as the reused buffers of a benchmark
// do; 256 MiB goes to memory. Output: a header line, then one whitespace-separated row per size:
//   bytes iterations seconds GBps
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "plain_util.h"

namespace {

using Clock = std::chrono::steady_clock;

// Keeps the compiler from dropping or merging copies whose destination is never read.
inline void clobber(void* p) { asm volatile("" : : "r"(p) : "memory"); }

struct Row {
  uint64_t bytes = 0;
  uint64_t iterations = 0;
  double seconds = 0;
};

Row measure(uint64_t size, double min_seconds) {
  // Separate allocations, touched before timing.
  auto src = softrdma::bench::warm_buffer(size, "memcpy_bw");
  auto dst = softrdma::bench::warm_buffer(size, "memcpy_bw");
  char* s = src.get();
  char* d = dst.get();

  // Warm-up, and a batch size so that one batch takes about a millisecond.
  auto t0 = Clock::now();
  uint64_t batch = 1;
  for (;;) {
    for (uint64_t i = 0; i < batch; i++) {
      std::memcpy(d, s, size);
      clobber(d);
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (secs >= 1e-3 || batch >= (1ull << 30)) break;
    batch *= 2;
    t0 = Clock::now();
  }

  Row r;
  r.bytes = size;
  auto start = Clock::now();
  for (;;) {
    for (uint64_t i = 0; i < batch; i++) {
      std::memcpy(d, s, size);
      clobber(d);
    }
    r.iterations += batch;
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (r.seconds >= min_seconds && r.iterations >= 3) break;
  }
  return r;
}

int usage() {
  std::fprintf(stderr, "usage: memcpy_bw [--sizes 8,64,1K,4K,64K,1M,256M] [--seconds 0.3]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<uint64_t> sizes = {8, 64, 1 << 10, 4 << 10, 64 << 10, 1 << 20, 256 << 20};
  double seconds = 0.3;
  for (int i = 1; i < argc; i++) {
    std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      usage();
      return 0;
    }
    if (i + 1 >= argc) return usage();
    std::string v = argv[++i];
    if (k == "--sizes") {
      if (!softrdma::bench::parse_size_list(v, &sizes)) return usage();
    } else if (k == "--seconds") {
      seconds = std::strtod(v.c_str(), nullptr);
      if (!(seconds > 0)) return usage();
    } else {
      return usage();
    }
  }

  std::printf("bytes iterations seconds GBps\n");
  for (uint64_t size : sizes) {
    Row r = measure(size, seconds);
    double gbps = static_cast<double>(r.bytes) * static_cast<double>(r.iterations) / r.seconds / 1e9;
    std::printf("%llu %llu %.4f %.3f\n", static_cast<unsigned long long>(r.bytes),
                static_cast<unsigned long long>(r.iterations), r.seconds, gbps);
    std::fflush(stdout);
  }
  return 0;
}
