// Property: random keys, addresses and lengths against regions surrounded by PROT_NONE guard
// pages. Whatever check() lets through lands inside the region the key names, and only there;
// every allowed byte is also touched, so an escape would fault on a guard page.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <random>
#include <vector>

#include "mem/mr_table.h"

namespace softrdma::mem {
namespace {

constexpr uint64_t kPage = 4096;

struct Region {
  uint8_t* map = nullptr;  // guard page, then `pages` pages, then guard page
  size_t pages = 0;
  uint8_t* host = nullptr;  // first registered byte (direct / contiguous regions)
  uint64_t length = 0, iova = 0;
  uint32_t key = 0, pd = 0;
  std::vector<uint8_t*> scattered;  // page order of a page-list registration
  uint32_t first_offset = 0;

  bool inside(const uint8_t* p, uint64_t n) const {
    const uint8_t* lo = map + kPage;
    return p >= lo && p + n <= lo + pages * kPage;
  }
};

TEST(MrTableProperty, NoAccessEscapesItsRegion) {
  std::mt19937_64 rng(20261121);
  MrTable t;
  std::vector<Region> regions;
  for (int i = 0; i < 24; ++i) {
    Region r;
    r.pages = 1 + rng() % (i % 3 == 2 ? 1100 : 40);  // some need a second-order table
    void* m = mmap(nullptr, (r.pages + 2) * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    r.map = static_cast<uint8_t*>(m);
    ASSERT_EQ(0, mprotect(r.map + kPage, r.pages * kPage, PROT_READ | PROT_WRITE));
    r.pd = 1 + rng() % 3;
    uint64_t skip = rng() % (r.pages * kPage);
    r.length = 1 + rng() % (r.pages * kPage - skip);
    r.iova = rng() % 2 ? reinterpret_cast<uint64_t>(r.map + kPage + skip) : (rng() & ~uint64_t{0xfff}) + skip;
    EntryType type = rng() % 4 == 0 ? EntryType::kZeroBasedRegion : EntryType::kRegion;
    if (type == EntryType::kZeroBasedRegion) r.iova = 0;
    uint32_t access = kLocalWrite | kRemoteRead | kRemoteWrite;
    if (i % 2 == 0) {
      r.host = r.map + kPage + skip;
      r.key = t.add(r.pd, r.host, r.iova, r.length, access, type);
    } else {
      // The same pages by page list, in a shuffled order.
      for (size_t p = 0; p < r.pages; ++p) r.scattered.push_back(r.map + kPage + p * kPage);
      std::shuffle(r.scattered.begin(), r.scattered.end(), rng);
      r.first_offset = static_cast<uint32_t>(skip);
      r.key = t.add_table(r.pd, PageTable::build(r.scattered, 12), r.first_offset, r.iova, r.length, access,
                          type);
    }
    ASSERT_NE(r.key, 0u);
    regions.push_back(r);
  }
  // Half of the regions are deregistered again: their old keys must fail from now on.
  for (size_t i = 0; i < regions.size(); i += 4) t.remove(regions[i].key);

  uint64_t allowed = 0;
  for (int n = 0; n < 200000; ++n) {
    const Region& r = regions[rng() % regions.size()];
    uint32_t key = r.key;
    switch (rng() % 8) {
      case 0:
        key ^= 1 + rng() % 255;
        break;  // stale instance
      case 1:
        key = static_cast<uint32_t>(rng());
        break;
      default:
        break;
    }
    uint32_t pd = rng() % 5 == 0 ? 1 + rng() % 3 : r.pd;
    uint64_t start = r.iova == 0 ? 0 : r.iova;
    uint64_t addr = start + (rng() % (r.length + 8192)) - 4096;
    uint64_t len = rng() % 3 == 0 ? rng() % (r.length + 2) : rng() % 9000;
    Translation tr;
    KeyError err = t.check(key, pd, addr, len, rng() % 2 ? Need::kRemoteWrite : Need::kLocalRead, &tr);
    if (err != KeyError::kOk) continue;
    // Allowed: the key is a live one, and its own region, PD and bounds were matched.
    const Region* owner = nullptr;
    for (size_t i = 0; i < regions.size(); ++i)
      if (regions[i].key == key && i % 4 != 0) owner = &regions[i];
    ASSERT_NE(owner, nullptr) << "a dead or foreign key was accepted";
    ASSERT_EQ(pd, owner->pd);
    uint64_t ostart = owner->iova;
    ASSERT_GE(addr, ostart);
    ASSERT_LE(addr - ostart + len, owner->length);
    for (uint64_t at = 0; at < len;) {
      uint8_t* p;
      uint64_t c = tr.chunk(at, &p);
      ASSERT_GT(c, 0u);
      ASSERT_TRUE(owner->inside(p, c));
      // The exact page: what direct addressing over the owner's page order gives.
      uint64_t off = owner->first_offset + (addr - ostart) + at;
      uint8_t* want = owner->scattered.empty() ? owner->host + (addr - ostart) + at
                                               : owner->scattered[off / kPage] + off % kPage;
      ASSERT_EQ(p, want);
      p[0] ^= 1;  // touch both ends: a guard page would fault
      p[c - 1] ^= 1;
      at += c;
    }
    ++allowed;
  }
  EXPECT_GT(allowed, 10000u);
  for (Region& r : regions) munmap(r.map, (r.pages + 2) * kPage);
}

// The same property through windows: random binds over random parts of regions, some windows
// invalidated, some regions re-registered under them. Whatever a window key lets through lies
// inside the window's range of its region's memory, and never outside the region.
TEST(MrTableProperty, NoAccessEscapesItsWindow) {
  std::mt19937_64 rng(7);
  MrTable t;
  struct Window {
    uint32_t key = 0;
    size_t region = 0;
    uint64_t offset = 0, length = 0;  // within the region
    bool zero_based = false, live = false;
  };
  std::vector<Region> regions;
  std::vector<bool> region_live;
  for (int i = 0; i < 8; ++i) {
    Region r;
    r.pages = 1 + rng() % 24;
    void* m = mmap(nullptr, (r.pages + 2) * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(m, MAP_FAILED);
    r.map = static_cast<uint8_t*>(m);
    ASSERT_EQ(0, mprotect(r.map + kPage, r.pages * kPage, PROT_READ | PROT_WRITE));
    r.pd = 1;
    r.host = r.map + kPage;
    r.length = r.pages * kPage;
    r.iova = reinterpret_cast<uint64_t>(r.host);
    r.key = t.add(r.pd, r.host, r.iova, r.length, kLocalWrite | kMwBind);
    regions.push_back(r);
    region_live.push_back(true);
  }
  std::vector<Window> windows;
  for (int i = 0; i < 32; ++i) {
    Window w;
    w.key = t.alloc_window(1, i % 2 ? 2 : 1);
    w.region = rng() % regions.size();
    const Region& r = regions[w.region];
    w.offset = rng() % r.length;
    w.length = 1 + rng() % (r.length - w.offset);
    w.zero_based = rng() % 3 == 0;
    MrTable::Bind b;
    b.window = w.key;
    b.new_key = (w.key & ~0xffu) | ((w.key + 1) & 0xffu);
    b.region = r.key;
    b.pd = 1;
    b.qpn = 9;
    b.addr = r.iova + w.offset;
    b.length = w.length;
    b.access = kRemoteWrite | kRemoteRead | (w.zero_based ? uint32_t{kZeroBased} : 0u);
    ASSERT_EQ(KeyError::kOk, t.bind(b));
    w.key = b.new_key;
    w.live = true;
    windows.push_back(w);
  }
  // A few type-2 windows invalidated; one region re-registered (its windows go stale).
  for (size_t i = 1; i < windows.size(); i += 6)
    if (t.invalidate(windows[i].key, 1, 9, true) == KeyError::kOk) windows[i].live = false;
  ASSERT_TRUE(t.modify(regions[0].key, 1, regions[0].host, regions[0].iova, regions[0].length, kLocalWrite | kMwBind,
                       EntryType::kRegion));
  for (Window& w : windows)
    if (w.region == 0) w.live = false;

  uint64_t allowed = 0;
  for (int n = 0; n < 100000; ++n) {
    const Window& w = windows[rng() % windows.size()];
    uint32_t key = rng() % 8 == 0 ? w.key ^ (1 + rng() % 255) : w.key;
    uint64_t start = w.zero_based ? 0 : regions[w.region].iova + w.offset;
    uint64_t addr = start + rng() % (w.length + 8192) - 4096;
    uint64_t len = rng() % 5000;
    Translation tr;
    if (t.check(key, 1, addr, len, Need::kRemoteWrite, &tr, 9) != KeyError::kOk) continue;
    ASSERT_EQ(key, w.key);
    ASSERT_TRUE(w.live) << "an invalidated or stale window was accepted";
    ASSERT_GE(addr, start);
    ASSERT_LE(addr - start + len, w.length);
    const Region& r = regions[w.region];
    for (uint64_t at = 0; at < len;) {
      uint8_t* p;
      uint64_t c = tr.chunk(at, &p);
      ASSERT_GT(c, 0u);
      ASSERT_EQ(p, r.host + w.offset + (addr - start) + at);
      ASSERT_TRUE(r.inside(p, c));
      p[0] ^= 1;
      p[c - 1] ^= 1;
      at += c;
    }
    ++allowed;
  }
  EXPECT_GT(allowed, 5000u);
  for (Region& r : regions) munmap(r.map, (r.pages + 2) * kPage);
}

}  // namespace
}  // namespace softrdma::mem
