// Entries that change through the send queue (seed 002): windows bound to regions (FIG. 15
// check g), fast registration (FIG. 11), invalidation (FIG. 17A) and one-touch (FIG. 18B).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "mem/mr_table.h"

namespace softrdma::mem {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t addr_of(const void* p) { return reinterpret_cast<uint64_t>(p); }
uint32_t next_key(uint32_t key) { return (key & ~0xffu) | ((key + 1) & 0xffu); }

struct Fixture {
  std::vector<uint8_t> buf = std::vector<uint8_t>(16 * kPage);
  MrTable t;
  uint32_t region = t.add(1, buf.data(), addr_of(buf.data()), buf.size(), kLocalWrite | kMwBind);
  MrTable::Bind bind(uint32_t window, uint64_t off, uint64_t len, uint32_t access, uint32_t qpn = 5) {
    MrTable::Bind b;
    b.window = window;
    b.new_key = next_key(window);
    b.region = region;
    b.pd = 1;
    b.qpn = qpn;
    b.addr = addr_of(buf.data()) + off;
    b.length = len;
    b.access = access;
    return b;
  }
};

// Every bind check of FIG. 15 (and IBA 10.6.7.2), one at a time, each reported as itself.
TEST(MrOpsBind, EachCheckRefusesOnItsOwn) {
  Fixture f;
  uint32_t w2 = f.t.alloc_window(1, 2);
  uint32_t other_pd_window = f.t.alloc_window(2, 2);
  uint32_t no_bind = f.t.add(1, f.buf.data(), addr_of(f.buf.data()), f.buf.size(), kLocalWrite);
  uint32_t read_only = f.t.add(1, f.buf.data(), addr_of(f.buf.data()), f.buf.size(), kMwBind);
  uint32_t a_window = f.t.add(1, f.buf.data(), addr_of(f.buf.data()), f.buf.size(), kLocalWrite | kMwBind,
                              EntryType::kWindow);
  ASSERT_NE(0u, w2);
  struct Case {
    const char* what;
    MrTable::Bind b;
    KeyError want;
  };
  auto with = [&](auto change) {
    MrTable::Bind b = f.bind(w2, 0, kPage, kRemoteWrite);
    change(b);
    return b;
  };
  std::vector<Case> cases = {
      {"unknown window", with([](auto& b) { b.window = 0x7700; b.new_key = 0x7701; }), KeyError::kInvalidKey},
      {"window of another PD", with([&](auto& b) { b.window = other_pd_window; b.new_key = next_key(other_pd_window); }), KeyError::kWrongPd},
      {"new key of another index", with([](auto& b) { b.new_key += 0x100; }), KeyError::kInvalidKey},
      {"region is a window", with([&](auto& b) { b.region = a_window; }), KeyError::kWrongType},
      {"region of another PD", with([](auto& b) { b.pd = 2; }), KeyError::kWrongPd},
      {"stale region key", with([](auto& b) { b.region ^= 1; }), KeyError::kWrongInstance},
      {"beyond the region", with([&](auto& b) { b.addr += 15 * kPage + 1; }), KeyError::kOutOfBounds},
      {"region without window binding", with([&](auto& b) { b.region = no_bind; }), KeyError::kNoAccess},
      {"remote write over a region without local write", with([&](auto& b) { b.region = read_only; }), KeyError::kNoAccess},
  };
  for (const Case& c : cases) EXPECT_EQ(c.want, f.t.bind(c.b)) << c.what;
  // The window was never bound by any of them, and the owner may still bind it, even naming
  // it by a key a failed bind had already moved on to.
  MrTable::Bind late = f.bind(next_key(w2), 0, kPage, kRemoteRead);
  late.new_key = next_key(next_key(w2));
  EXPECT_EQ(KeyError::kOk, f.t.bind(late));
  EXPECT_EQ(KeyError::kOk, f.t.invalidate(late.new_key, 1, 0, false));
  EXPECT_EQ(KeyError::kInvalidKey, f.t.check(next_key(w2), 1, addr_of(f.buf.data()), 8, Need::kRemoteWrite, nullptr, 5));
  // Remote read through a window over a region without local write is fine.
  MrTable::Bind ok = f.bind(w2, 0, kPage, kRemoteRead);
  ok.region = read_only;
  EXPECT_EQ(KeyError::kOk, f.t.bind(ok));
}

TEST(MrOpsBind, WindowGrantsOnlyItsRangeRightsAndQp) {
  Fixture f;
  uint32_t w = f.t.alloc_window(1, 2);
  MrTable::Bind b = f.bind(w, 2 * kPage + 100, 3000, kRemoteRead);
  ASSERT_EQ(KeyError::kOk, f.t.bind(b));
  uint32_t key = b.new_key;
  uint64_t base = b.addr;
  Translation tr;
  EXPECT_EQ(KeyError::kWrongInstance, f.t.check(w, 1, base, 8, Need::kRemoteRead, nullptr, 5)) << "old key";
  ASSERT_EQ(KeyError::kOk, f.t.check(key, 1, base + 2992, 8, Need::kRemoteRead, &tr, 5));
  EXPECT_EQ(tr.host, f.buf.data() + 2 * kPage + 100 + 2992);
  EXPECT_EQ(KeyError::kOutOfBounds, f.t.check(key, 1, base + 2993, 8, Need::kRemoteRead, nullptr, 5));
  EXPECT_EQ(KeyError::kOutOfBounds, f.t.check(key, 1, base - 1, 8, Need::kRemoteRead, nullptr, 5));
  EXPECT_EQ(KeyError::kNoAccess, f.t.check(key, 1, base, 8, Need::kRemoteWrite, nullptr, 5));
  EXPECT_EQ(KeyError::kWrongQp, f.t.check(key, 1, base, 8, Need::kRemoteRead, nullptr, 6)) << "type 2: its QP only";
  EXPECT_EQ(KeyError::kWrongType, f.t.check(key, 1, base, 8, Need::kLocalRead, nullptr, 5)) << "never local";
  // Bound once: a second bind waits for an invalidation.
  MrTable::Bind again = f.bind(key, 0, kPage, kRemoteRead);
  EXPECT_EQ(KeyError::kBusy, f.t.bind(again));
  // The region cannot go while the window is bound; it can after the window is invalidated.
  EXPECT_FALSE(f.t.remove(f.region));
  EXPECT_EQ(KeyError::kWrongQp, f.t.invalidate(key, 1, 6, true)) << "a peer on another QP";
  EXPECT_EQ(KeyError::kOk, f.t.invalidate(key, 1, 5, true));
  EXPECT_EQ(KeyError::kInvalidKey, f.t.check(key, 1, base, 8, Need::kRemoteRead, nullptr, 5));
  EXPECT_EQ(KeyError::kOk, f.t.bind(f.bind(key, 0, kPage, kRemoteRead)));
  EXPECT_EQ(KeyError::kOk, f.t.invalidate(next_key(key), 1, 0, false));
  EXPECT_TRUE(f.t.remove(f.region));
}

TEST(MrOpsBind, ZeroBasedWindowOverIndirectRegionAndStaleRegion) {
  Fixture f;
  uint32_t w = f.t.alloc_window(1, 1);
  MrTable::Bind b = f.bind(w, kPage - 10, 2 * kPage, kRemoteWrite | kZeroBased);
  ASSERT_EQ(KeyError::kOk, f.t.bind(b));
  Translation tr;
  ASSERT_EQ(KeyError::kOk, f.t.check(b.new_key, 1, 5, 100, Need::kRemoteWrite, &tr, 99)) << "type 1: any QP";
  std::vector<uint8_t> data(100, 0xab);
  tr.store(data.data());
  EXPECT_EQ(0, std::memcmp(f.buf.data() + kPage - 5, data.data(), 100)) << "crosses a page of the region";
  // Re-registering the region leaves the window pointing at nothing.
  ASSERT_TRUE(f.t.modify(f.region, 1, f.buf.data(), addr_of(f.buf.data()), kPage, kLocalWrite | kMwBind,
                         EntryType::kRegion));
  EXPECT_EQ(KeyError::kInvalidKey, f.t.check(b.new_key, 1, 5, 100, Need::kRemoteWrite, nullptr, 99));
  EXPECT_EQ(KeyError::kWrongType, f.t.invalidate(b.new_key, 1, 0, false)) << "type 1 windows are not invalidated";
  // A zero-length bind unbinds a type-1 window.
  MrTable::Bind unbind = f.bind(b.new_key, 0, 0, 0);
  EXPECT_EQ(KeyError::kOk, f.t.bind(unbind));
  EXPECT_EQ(nullptr, f.t.find(unbind.new_key));
  EXPECT_NE(nullptr, f.t.owned(unbind.new_key));
  EXPECT_TRUE(f.t.remove(unbind.new_key));
  EXPECT_TRUE(f.t.remove(f.region));
}

TEST(MrOpsFastReg, RegistersScatteredRunsUnderTheNewKeyOnly) {
  std::vector<uint8_t> mem(8 * kPage + kPage);
  uint8_t* base = reinterpret_cast<uint8_t*>((addr_of(mem.data()) + kPage - 1) & ~(kPage - 1));
  MrTable t;
  uint32_t key = t.alloc_fast_reg(3, 4);
  ASSERT_NE(0u, key);
  EXPECT_EQ(nullptr, t.find(key)) << "invalid until registered";
  // Bytes 100.. of page 5, then pages 1 and 2 (in that order): 3 pages of translation.
  iovec runs[] = {{base + 5 * kPage + 100, kPage - 100}, {base + kPage, 2 * kPage}};
  uint64_t len = 3 * kPage - 100;
  uint32_t k1 = next_key(key);
  EXPECT_EQ(KeyError::kWrongPd, t.fast_register(key, k1, 4, runs, 2, 0x1000, len, kLocalWrite));
  EXPECT_EQ(KeyError::kWrongInstance, t.fast_register(key, k1 + 0x100, 3, runs, 2, 0x1000, len, kLocalWrite))
      << "the new key must name the same entry";
  EXPECT_EQ(KeyError::kOutOfBounds, t.fast_register(key, k1, 3, runs, 2, 0x1000, len + 1, kLocalWrite));
  iovec unaligned[] = {{base, 100}, {base + kPage, kPage}};
  EXPECT_EQ(KeyError::kOutOfBounds, t.fast_register(key, k1, 3, unaligned, 2, 0, kPage + 100, kLocalWrite));
  iovec too_many[] = {{base, 5 * kPage}};
  EXPECT_EQ(KeyError::kOutOfBounds, t.fast_register(key, k1, 3, too_many, 1, 0, 5 * kPage, kLocalWrite));
  ASSERT_EQ(KeyError::kOk, t.fast_register(key, k1, 3, runs, 2, 0x1000, len, kLocalWrite | kRemoteRead));
  EXPECT_EQ(KeyError::kWrongInstance, t.check(key, 3, 0x1000, 8, Need::kLocalRead, nullptr));
  Translation tr;
  ASSERT_EQ(KeyError::kOk, t.check(k1, 3, 0x1000 + kPage - 108, 16, Need::kRemoteRead, &tr));
  uint8_t* p;
  EXPECT_EQ(8u, tr.chunk(0, &p));
  EXPECT_EQ(p, base + 6 * kPage - 8);
  EXPECT_EQ(8u, tr.chunk(8, &p));
  EXPECT_EQ(p, base + kPage);
  EXPECT_EQ(KeyError::kBusy, t.fast_register(k1, next_key(k1), 3, runs, 2, 0, len, 0)) << "still valid";
  EXPECT_EQ(KeyError::kWrongPd, t.invalidate(k1, 4, 0, false));
  EXPECT_EQ(KeyError::kOk, t.invalidate(k1, 3, 0, false));
  EXPECT_EQ(KeyError::kInvalidKey, t.check(k1, 3, 0x1000, 8, Need::kLocalRead, nullptr));
  EXPECT_EQ(KeyError::kInvalidKey, t.invalidate(k1, 3, 0, false)) << "already invalid";
  EXPECT_EQ(KeyError::kOk, t.fast_register(k1, next_key(k1), 3, runs, 1, 0, kPage - 100, kLocalWrite));
  EXPECT_TRUE(t.remove(k1)) << "freed by index, whatever its current key";
}

TEST(MrOpsFastReg, OrdinaryRegionsAreNotInvalidated) {
  std::vector<uint8_t> buf(kPage);
  MrTable t;
  uint32_t key = t.add(1, buf.data(), addr_of(buf.data()), buf.size(), kLocalWrite);
  EXPECT_EQ(KeyError::kWrongType, t.invalidate(key, 1, 0, false));
  EXPECT_NE(nullptr, t.find(key));
}

// FIG. 18B: the first message is placed in any order; the entry goes when all of it is in,
// and a second message is refused (and the entry invalidated).
TEST(MrOpsOneTouch, UsedUpByTheFirstMessageWhateverTheOrderOfItsSegments) {
  std::vector<uint8_t> buf(4 * kPage);
  MrTable t;
  uint32_t key = t.add(1, buf.data(), addr_of(buf.data()), buf.size(), kLocalWrite | kRemoteWrite | kOneTouch);
  uint64_t a = addr_of(buf.data());
  ASSERT_EQ(KeyError::kOk, t.check(key, 1, a, 3 * kPage, Need::kRemoteWrite, nullptr, 7));
  ASSERT_EQ(KeyError::kOk, t.touch(key, 7, 3 * kPage));
  EXPECT_EQ(KeyError::kBusy, t.check(key, 1, a, 8, Need::kRemoteWrite, nullptr, 8)) << "another QP meanwhile";
  t.placed(key, kPage);  // the last segment first
  t.placed(key, kPage);
  EXPECT_EQ(KeyError::kOk, t.check(key, 1, a + kPage, kPage, Need::kRemoteWrite, nullptr, 7)) << "still coming in";
  t.placed(key, kPage);
  EXPECT_EQ(KeyError::kInvalidKey, t.check(key, 1, a, 8, Need::kRemoteWrite, nullptr, 7)) << "used up";
  EXPECT_NE(nullptr, t.owned(key)) << "still the consumer's to deregister";

  uint32_t twice = t.add(1, buf.data(), a, buf.size(), kLocalWrite | kRemoteWrite | kOneTouch);
  ASSERT_EQ(KeyError::kOk, t.touch(twice, 7, 100));
  EXPECT_EQ(KeyError::kBusy, t.touch(twice, 7, 100)) << "a second message";
  EXPECT_EQ(nullptr, t.find(twice)) << "FIG. 18B: invalidate and terminate";

  uint32_t plain = t.add(1, buf.data(), a, buf.size(), kLocalWrite | kRemoteWrite);
  EXPECT_EQ(KeyError::kOk, t.touch(plain, 7, 100));
  t.placed(plain, 100);
  EXPECT_EQ(KeyError::kOk, t.touch(plain, 8, 100)) << "multiple-touch entries are not affected";
  EXPECT_NE(nullptr, t.find(plain));
}

}  // namespace
}  // namespace softrdma::mem
