// What the plain benchmark programs (memcpy_bw, core_to_core; no Google Benchmark) share: size
// arguments ("64", "4K", "1M", "256M", "1G", and comma-separated lists of them) and buffers
// touched before timing.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace softrdma::bench {

// Bytes; 0 for a malformed size.
inline uint64_t parse_size(const std::string& s) {
  if (s.empty()) return 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str()) return 0;
  std::string suffix(end);
  if (suffix.empty() || suffix == "B") return v;
  if (suffix == "K" || suffix == "k" || suffix == "KiB") return v << 10;
  if (suffix == "M" || suffix == "m" || suffix == "MiB") return v << 20;
  if (suffix == "G" || suffix == "g" || suffix == "GiB") return v << 30;
  return 0;
}

// "8,64K,1M" into *out (replaced); false on an empty list or a malformed size.
inline bool parse_size_list(const std::string& v, std::vector<uint64_t>* out) {
  out->clear();
  size_t pos = 0;
  while (pos <= v.size()) {
    size_t c = v.find(',', pos);
    if (c == std::string::npos) c = v.size();
    if (c > pos) {
      uint64_t b = parse_size(v.substr(pos, c - pos));
      if (b == 0) return false;
      out->push_back(b);
    }
    pos = c + 1;
  }
  return !out->empty();
}

using Buffer = std::unique_ptr<char, decltype(&std::free)>;

// n bytes, 64-byte aligned, written once (no page faults in the timed loop); exits if there is
// no memory, naming the program.
inline Buffer warm_buffer(uint64_t n, const char* program) {
  void* p = std::aligned_alloc(64, (n + 63) / 64 * 64);
  if (p == nullptr) {
    std::fprintf(stderr, "%s: cannot allocate %llu bytes\n", program, static_cast<unsigned long long>(n));
    std::exit(1);
  }
  std::memset(p, 0x5a, n);
  return Buffer(static_cast<char*>(p), &std::free);
}

}  // namespace softrdma::bench
