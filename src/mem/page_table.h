// Address translation tables (seed 002, FIG. 12-14): page lists that map a region's page index
// to the process address of that page. First order: one list. Second order: a directory of
// lists, each one page of pointers (kListEntries). Lookup is O(1) in both: one or two loads.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace softrdma::mem {

// Address-translation control of FIG. 13.
enum class XlateControl : uint8_t { kDirect, kIndirect1, kIndirect2 };

class PageTable {
 public:
  static constexpr uint32_t kListShift = 9;  // 512 pointers: one 4 KiB page of page list
  static constexpr uint32_t kListEntries = 1u << kListShift;

  // Builds the table for `pages` (each 1 << page_shift bytes, in region order); the order is
  // chosen by size: up to one page list is first order, more is second order.
  static std::shared_ptr<PageTable> build(const std::vector<uint8_t*>& pages, uint8_t page_shift);
  // The pages of process memory [host, host+length) at page size 1 << page_shift.
  static std::shared_ptr<PageTable> contiguous(uint8_t* host, uint64_t length, uint8_t page_shift);

  // A table with room for max_pages pages whose contents fast registration rewrites in place
  // (no allocation on the send queue): first order up to one page list, else second order.
  static std::shared_ptr<PageTable> with_capacity(uint64_t max_pages);
  // Replaces the pages with those covering the runs of process memory in segs: each run after
  // the first starts on a page boundary and each before the last ends on one. *first_offset is
  // where the first byte lies in page 0. False if the runs break those rules or need more pages
  // than the capacity.
  bool assign(const iovec* segs, uint32_t nsegs, uint8_t page_shift, uint64_t* first_offset);

  XlateControl order() const { return order_; }
  uint8_t page_shift() const { return page_shift_; }
  uint64_t pages() const { return npages_; }
  // The address-translation pointer of FIG. 13: the page list (first order) or the directory of
  // page lists (second order), so that an entry reaches a page in one or two loads.
  const void* pointer() const {
    return order_ == XlateControl::kIndirect1 ? lists_[0].data() : static_cast<const void*>(dir_.data());
  }
  // Process address of page `i` of a table at `pointer` (i < pages()).
  static uint8_t* page(XlateControl order, const void* pointer, uint64_t i) {
    if (order == XlateControl::kIndirect1) return static_cast<uint8_t* const*>(pointer)[i];
    return static_cast<uint8_t* const* const*>(pointer)[i >> kListShift][i & (kListEntries - 1)];
  }
  uint8_t* page(uint64_t i) const { return page(order_, pointer(), i); }

 private:
  XlateControl order_ = XlateControl::kIndirect1;
  uint8_t page_shift_ = 12;
  uint64_t npages_ = 0;
  uint64_t capacity_ = 0;
  std::vector<std::vector<uint8_t*>> lists_;  // order 1: one list; order 2: one per directory slot
  std::vector<uint8_t* const*> dir_;          // order 2: the directory
};

// log2 of the page size backing `addr`: the KernelPageSize of its mapping in /proc/self/smaps
// (hugetlbfs mappings report 2 MiB / 1 GiB), 12 when unknown. Transparent huge pages report 4 KiB
// and may be split at any time, so they are translated at 4 KiB.
uint8_t page_shift_of(const void* addr);

}  // namespace softrdma::mem
