#include "mem/page_table.h"

#include <cstdio>
#include <algorithm>
#include <cstring>

namespace softrdma::mem {

std::shared_ptr<PageTable> PageTable::build(const std::vector<uint8_t*>& pages, uint8_t page_shift) {
  auto t = std::make_shared<PageTable>();
  t->page_shift_ = page_shift;
  t->npages_ = pages.size();
  if (pages.size() <= kListEntries) {
    t->order_ = XlateControl::kIndirect1;
    t->lists_.emplace_back(pages);
    return t;
  }
  t->order_ = XlateControl::kIndirect2;
  for (size_t i = 0; i < pages.size(); i += kListEntries) {
    size_t n = std::min<size_t>(kListEntries, pages.size() - i);
    t->lists_.emplace_back(pages.begin() + static_cast<std::ptrdiff_t>(i),
                           pages.begin() + static_cast<std::ptrdiff_t>(i + n));
  }
  for (const auto& l : t->lists_) t->dir_.push_back(l.data());
  return t;
}

std::shared_ptr<PageTable> PageTable::contiguous(uint8_t* host, uint64_t length, uint8_t page_shift) {
  uint64_t size = uint64_t{1} << page_shift;
  auto base = reinterpret_cast<uintptr_t>(host) & ~(size - 1);
  uint64_t end = reinterpret_cast<uintptr_t>(host) + length;
  std::vector<uint8_t*> pages;
  pages.reserve((end - base + size - 1) >> page_shift);
  for (uint64_t a = base; a < end || pages.empty(); a += size) pages.push_back(reinterpret_cast<uint8_t*>(a));
  return build(pages, page_shift);
}

std::shared_ptr<PageTable> PageTable::with_capacity(uint64_t max_pages) {
  auto t = std::make_shared<PageTable>();
  t->capacity_ = max_pages;
  if (max_pages <= kListEntries) {
    t->order_ = XlateControl::kIndirect1;
    t->lists_.emplace_back(std::max<uint64_t>(max_pages, 1));
    return t;
  }
  t->order_ = XlateControl::kIndirect2;
  for (uint64_t i = 0; i < max_pages; i += kListEntries) t->lists_.emplace_back(kListEntries);
  for (const auto& l : t->lists_) t->dir_.push_back(l.data());
  return t;
}

bool PageTable::assign(const iovec* segs, uint32_t nsegs, uint8_t page_shift, uint64_t* first_offset) {
  uint64_t size = uint64_t{1} << page_shift, mask = size - 1;
  uint64_t n = 0;
  for (uint32_t i = 0; i < nsegs; ++i) {
    auto start = reinterpret_cast<uintptr_t>(segs[i].iov_base);
    uint64_t end = start + segs[i].iov_len;
    if ((i > 0 && (start & mask) != 0) || (i + 1 < nsegs && (end & mask) != 0) || segs[i].iov_len == 0)
      return false;
    n += ((end + mask) >> page_shift) - (start >> page_shift);
  }
  if (n == 0 || n > capacity_) return false;
  uint64_t k = 0;
  for (uint32_t i = 0; i < nsegs; ++i) {
    auto start = reinterpret_cast<uintptr_t>(segs[i].iov_base) & ~mask;
    uint64_t end = reinterpret_cast<uintptr_t>(segs[i].iov_base) + segs[i].iov_len;
    for (uint64_t a = start; a < end; a += size, ++k) lists_[k >> kListShift][k & (kListEntries - 1)] = reinterpret_cast<uint8_t*>(a);
  }
  page_shift_ = page_shift;
  npages_ = n;
  *first_offset = reinterpret_cast<uintptr_t>(segs[0].iov_base) & mask;
  return true;
}

uint8_t page_shift_of(const void* addr) {
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (f == nullptr) return 12;
  auto a = reinterpret_cast<uintptr_t>(addr);
  char line[512];
  bool inside = false;
  uint8_t shift = 12;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long lo, hi;
    // Mapping header lines start with "lo-hi "; attribute lines with "Name:".
    if (std::sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      inside = a >= lo && a < hi;
      continue;
    }
    unsigned long kb;
    if (inside && std::sscanf(line, "KernelPageSize: %lu kB", &kb) == 1) {
      for (shift = 10; (1ul << shift) < kb * 1024; ++shift) {
      }
      break;
    }
  }
  std::fclose(f);
  return shift < 12 ? 12 : shift;
}

}  // namespace softrdma::mem
