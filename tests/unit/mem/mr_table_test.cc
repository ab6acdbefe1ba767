// The table of seed 002 FIG. 13: validation in the order of FIG. 15 / FIG. 18, and address
// translation through direct, first- and second-order tables (FIG. 12, 14).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "mem/mr_table.h"

namespace softrdma::mem {
namespace {

constexpr uint64_t kPage = 4096;

// Anonymous pages with a PROT_NONE guard page either side: a stray access faults.
struct Guarded {
  uint8_t* base = nullptr;  // first usable page
  size_t pages;
  explicit Guarded(size_t n) : pages(n) {
    void* p = mmap(nullptr, (n + 2) * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    base = static_cast<uint8_t*>(p) + kPage;
    EXPECT_EQ(0, mprotect(base, n * kPage, PROT_READ | PROT_WRITE));
  }
  ~Guarded() { munmap(base - kPage, (pages + 2) * kPage); }
};

uint64_t addr_of(const void* p) {
  return reinterpret_cast<uint64_t>(p);
}

// FIG. 15: a request that breaks every check at once; fixing one at a time reveals the next,
// so each check is seen to come before all later ones.
TEST(MrTableCheck, LocalOrderFig15) {
  MrTable t;
  std::vector<uint8_t> buf(8192);
  uint32_t window = t.add(1, buf.data(), addr_of(buf.data()), 4096, kRemoteRead, EntryType::kWindow);
  uint32_t region = t.add(1, buf.data(), addr_of(buf.data()), 4096, kRemoteRead);  // no local write
  uint32_t writable = t.add(1, buf.data(), addr_of(buf.data()), 4096, kLocalWrite);
  uint64_t in = addr_of(buf.data()), out = in + 4000;
  struct Step {
    uint32_t key, pd;
    uint64_t addr, len;
    Need need;
    KeyError want;
  } steps[] = {
      {0, 2, out, 200, Need::kLocalWrite, KeyError::kInvalidKey},
      {(MrTable::index_of(region) + 100) << 8, 2, out, 200, Need::kLocalWrite, KeyError::kInvalidKey},
      {window ^ 1, 2, out, 200, Need::kLocalWrite, KeyError::kWrongType},
      {window ^ 1, 2, out, 200, Need::kLocalRead, KeyError::kWrongType},
      {region ^ 1, 2, out, 200, Need::kLocalWrite, KeyError::kWrongPd},
      {region ^ 1, 1, out, 200, Need::kLocalWrite, KeyError::kWrongInstance},
      {region, 1, out, 200, Need::kLocalWrite, KeyError::kOutOfBounds},
      {region, 1, in - 1, 2, Need::kLocalWrite, KeyError::kOutOfBounds},
      {region, 1, in, 4097, Need::kLocalWrite, KeyError::kOutOfBounds},
      {region, 1, in, 200, Need::kLocalWrite, KeyError::kNoAccess},
      {region, 1, in, 200, Need::kLocalRead, KeyError::kOk},
      {writable, 1, in + 3896, 200, Need::kLocalWrite, KeyError::kOk},
  };
  for (const Step& s : steps) {
    Translation tr;
    EXPECT_EQ(s.want, t.check(s.key, s.pd, s.addr, s.len, s.need, &tr))
        << "key " << std::hex << s.key << " want " << name(s.want);
  }
  ASSERT_TRUE(t.remove(writable));
  EXPECT_EQ(KeyError::kInvalidKey, t.check(writable, 1, in, 8, Need::kLocalWrite, nullptr));
  uint32_t again = t.add(1, buf.data(), in, 4096, kLocalWrite);
  EXPECT_EQ(MrTable::index_of(again), MrTable::index_of(writable));
  EXPECT_EQ(KeyError::kWrongInstance, t.check(writable, 1, in, 8, Need::kLocalWrite, nullptr));
}

// FIG. 18: the same walk for RDMA READ, WRITE and atomics; windows are fine for remote access.
TEST(MrTableCheck, RemoteOrderFig18) {
  MrTable t;
  std::vector<uint8_t> buf(4096);
  uint64_t in = addr_of(buf.data());
  for (Need need : {Need::kRemoteRead, Need::kRemoteWrite, Need::kRemoteAtomic}) {
    uint32_t grant = need == Need::kRemoteRead    ? kRemoteRead
                     : need == Need::kRemoteWrite ? kRemoteWrite
                                                  : kRemoteAtomic;
    uint32_t other = (kRemoteAccess & ~grant) | kLocalWrite;
    for (EntryType type : {EntryType::kRegion, EntryType::kWindow}) {
      uint32_t denied = t.add(7, buf.data(), in, 64, other, type);
      uint32_t allowed = t.add(7, buf.data(), in, 64, grant | kLocalWrite, type);
      EXPECT_EQ(KeyError::kInvalidKey, t.check(0, 8, in + 60, 8, need, nullptr));
      EXPECT_EQ(KeyError::kWrongPd, t.check(denied ^ 1, 8, in + 60, 8, need, nullptr));
      EXPECT_EQ(KeyError::kWrongInstance, t.check(denied ^ 1, 7, in + 60, 8, need, nullptr));
      EXPECT_EQ(KeyError::kOutOfBounds, t.check(denied, 7, in + 60, 8, need, nullptr));
      EXPECT_EQ(KeyError::kNoAccess, t.check(denied, 7, in + 56, 8, need, nullptr));
      Translation tr;
      EXPECT_EQ(KeyError::kOk, t.check(allowed, 7, in + 56, 8, need, &tr));
      EXPECT_EQ(tr.host, buf.data() + 56);
      t.remove(denied);
      EXPECT_EQ(KeyError::kInvalidKey, t.check(denied, 7, in + 56, 8, need, nullptr));
    }
  }
}

// Every byte of [off, off+len) reached through chunk() equals direct addressing host + off.
void expect_matches(const Translation& tr, const uint8_t* host, uint64_t off) {
  uint64_t at = 0;
  while (at < tr.length) {
    uint8_t* p;
    uint64_t n = tr.chunk(at, &p);
    ASSERT_GT(n, 0u);
    ASSERT_EQ(p, host + off + at);
    at += n;
  }
  EXPECT_EQ(at, tr.length);
}

TEST(MrTableXlate, OrderChosenBySize) {
  Guarded g(1100);  // > 512 pages: a second-order table
  MrTable t;
  struct {
    uint64_t offset, length;
    XlateControl want;
  } cases[] = {{100, 3000, XlateControl::kDirect},
               {100, 4000, XlateControl::kIndirect1},  // crosses one page boundary
               {0, 512 * kPage, XlateControl::kIndirect1},
               {0, 513 * kPage, XlateControl::kIndirect2},
               {77, 1099 * kPage, XlateControl::kIndirect2}};
  std::mt19937_64 rng(1);
  for (auto& c : cases) {
    uint8_t* host = g.base + c.offset;
    uint32_t key = t.add(3, host, 0x1000'0000'0000 + c.offset, c.length, kLocalWrite | kRemoteRead);
    ASSERT_EQ(t.find(key)->xlate, c.want);
    for (int i = 0; i < 200; ++i) {
      uint64_t off = rng() % c.length;
      uint64_t len = std::min<uint64_t>(c.length - off, rng() % 10000);
      Translation tr;
      ASSERT_EQ(KeyError::kOk,
                t.check(key, 3, 0x1000'0000'0000 + c.offset + off, len, Need::kRemoteRead, &tr));
      expect_matches(tr, host, off);
    }
  }
}

// Pages registered by page list in scrambled order: translation really goes through the table,
// and two entries can share one page list (FIG. 14).
TEST(MrTableXlate, ScatteredPagesAndSharedTable) {
  Guarded g(8);
  std::vector<uint8_t*> pages;
  for (size_t i : {5, 2, 7, 0}) pages.push_back(g.base + i * kPage);
  auto table = PageTable::build(pages, 12);
  ASSERT_EQ(table->order(), XlateControl::kIndirect1);
  MrTable t;
  uint32_t a = t.add_table(1, table, 100, 0x5000, 4 * kPage - 100, kLocalWrite | kRemoteWrite);
  uint32_t z = t.add_table(2, table, 0, 0, 4 * kPage, kLocalWrite, EntryType::kZeroBasedRegion);
  ASSERT_NE(a, 0u);
  ASSERT_NE(z, 0u);
  EXPECT_EQ(t.find(a)->xlate_ptr, t.find(z)->xlate_ptr);  // one page list, two entries
  std::vector<uint8_t> src(6000);
  std::iota(src.begin(), src.end(), 1);
  Translation tr;
  // Offset 8000 of `a` is offset 8100 of the list: page 1 (host page 2) at 4004, page 2 (host
  // page 7) whole, then page 3 (host page 0).
  ASSERT_EQ(KeyError::kOk, t.check(a, 1, 0x5000 + 8000, 6000, Need::kRemoteWrite, &tr));
  iovec parts[4];
  ASSERT_EQ(3, tr.parts(parts, 4));
  EXPECT_EQ(0, tr.parts(parts, 2)) << "does not fit";
  EXPECT_EQ(parts[0].iov_base, g.base + 2 * kPage + 4004);
  EXPECT_EQ(parts[0].iov_len, 92u);
  EXPECT_EQ(parts[1].iov_base, g.base + 7 * kPage);
  EXPECT_EQ(parts[1].iov_len, kPage);
  EXPECT_EQ(parts[2].iov_base, g.base);
  tr.store(src.data());
  EXPECT_EQ(0, memcmp(g.base + 2 * kPage + 4004, src.data(), 92));
  EXPECT_EQ(0, memcmp(g.base + 7 * kPage, src.data() + 92, kPage));
  EXPECT_EQ(0, memcmp(g.base, src.data() + 92 + kPage, 6000 - 92 - kPage));
  // The zero-based entry sees the same bytes through the same list.
  ASSERT_EQ(KeyError::kOk, t.check(z, 2, 8100, 6000, Need::kLocalWrite, &tr));
  std::vector<uint8_t> back(6000);
  for (uint64_t at = 0; at < tr.length;) {
    uint8_t* p;
    uint64_t n = tr.chunk(at, &p);
    memcpy(back.data() + at, p, n);
    at += n;
  }
  EXPECT_EQ(back, src);
  // Deregistering one entry leaves the shared list to the other.
  t.remove(a);
  EXPECT_EQ(KeyError::kOk, t.check(z, 2, 0, 4 * kPage, Need::kLocalWrite, &tr));
  EXPECT_EQ(0, t.add_table(1, table, 1, 0, 4 * kPage, 0)) << "beyond the table's pages";
}

TEST(MrTableXlate, SecondOrderScattered) {
  Guarded g(1030);
  std::vector<uint8_t*> pages;
  for (size_t i = 0; i < 1030; ++i) pages.push_back(g.base + ((i * 7) % 1030) * kPage);  // 7 is coprime
  MrTable t;
  uint32_t key = t.add_table(1, PageTable::build(pages, 12), 0, 0, 1030 * kPage, kLocalWrite,
                             EntryType::kZeroBasedRegion);
  ASSERT_EQ(t.find(key)->xlate, XlateControl::kIndirect2);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 2000; ++i) {
    uint64_t off = rng() % (1030 * kPage);
    Translation tr;
    ASSERT_EQ(KeyError::kOk, t.check(key, 1, off, 1, Need::kLocalWrite, &tr));
    EXPECT_EQ(tr.host, pages[off / kPage] + off % kPage);
  }
}

TEST(MrTableXlate, ReRegistrationRetiresTheOldKeyAndRebuildsTable) {
  Guarded g(4);
  MrTable t;
  uint32_t old_key = t.add(1, g.base, addr_of(g.base), 100, kLocalWrite);
  uint32_t seq = t.find(old_key)->seq;
  uint32_t key = t.modify(old_key, 1, g.base + 10, 0x9000, 3 * kPage, kLocalWrite, EntryType::kRegion);
  ASSERT_NE(key, 0u);
  EXPECT_EQ(MrTable::index_of(key), MrTable::index_of(old_key));
  EXPECT_EQ(KeyError::kWrongInstance, t.check(old_key, 1, 0x9000, 8, Need::kLocalWrite, nullptr));
  EXPECT_GT(t.find(key)->seq, seq);
  EXPECT_EQ(t.find(key)->xlate, XlateControl::kIndirect1);
  Translation tr;
  ASSERT_EQ(KeyError::kOk, t.check(key, 1, 0x9000 + 5000, 10, Need::kLocalWrite, &tr));
  EXPECT_EQ(tr.host, g.base + 5010);
  EXPECT_EQ(12, page_shift_of(g.base));
}

// hugetlbfs-backed memory is translated at its real page size (skipped without huge pages).
TEST(MrTableXlate, HugePagesUseTheirPageSize) {
  const size_t n = 4 << 20;
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (p == MAP_FAILED) GTEST_SKIP() << "no huge pages configured (vm.nr_hugepages)";
  auto* host = static_cast<uint8_t*>(p);
  host[0] = 1;  // fault one page in so smaps lists the mapping's page size
  MrTable t;
  uint32_t key = t.add(1, host, addr_of(host), n, kLocalWrite);
  EXPECT_EQ(t.find(key)->page_shift, 21);
  EXPECT_EQ(t.find(key)->xlate, XlateControl::kIndirect1);
  Translation tr;
  ASSERT_EQ(KeyError::kOk, t.check(key, 1, addr_of(host) + (2 << 20) - 100, 200, Need::kLocalWrite, &tr));
  uint8_t* q;
  EXPECT_EQ(tr.chunk(0, &q), 100u);  // the boundary is at 2 MiB, not at 4 KiB
  EXPECT_EQ(q, host + (2 << 20) - 100);
  munmap(p, n);
}

}  // namespace
}  // namespace softrdma::mem
