#include "link/fault_link.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <set>

#include "link/udp_link.h"
#include "link_test_util.h"

namespace softrdma::link {
namespace {

using test::ep;
using test::frame_bytes;
using test::frame_index;
using test::make_tx;
using test::MemLink;

constexpr uint64_t kLongHold = 60'000'000'000ull;  // reorder releases by depth only

struct Rig {
  MemLink* mem;
  std::unique_ptr<FaultLink> link;
  explicit Rig(FaultConfig cfg) {
    auto m = std::make_unique<MemLink>();
    mem = m.get();
    link = std::make_unique<FaultLink>(std::move(m), cfg);
  }
};

// Sends frames [first, first+count) in batches of `batch`; returns how many were accepted.
size_t send_frames(Link& l, uint32_t first, size_t count, size_t len = 64, size_t batch = 32) {
  size_t accepted = 0;
  for (size_t off = 0; off < count; off += batch) {
    const size_t k = std::min(batch, count - off);
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<TxFrame> tx;
    for (size_t i = 0; i < k; ++i) bytes.push_back(frame_bytes(first + uint32_t(off + i), len));
    for (auto& b : bytes) tx.push_back(make_tx(ep("127.0.0.3", 4791), b, 2));
    const size_t n = l.send(tx.data(), k);
    accepted += n;
    if (n < k) break;
  }
  return accepted;
}

std::vector<uint32_t> indices(const MemLink& m) {
  std::vector<uint32_t> v;
  for (auto& s : m.sent) v.push_back(frame_index(s.bytes));
  return v;
}

void release_all(FaultLink& l) {
  l.service(test::mono_ns() + kLongHold + 10'000'000'000ull);
  EXPECT_EQ(l.held(), 0u);
}

TEST(FaultSpec, ParsesExampleAndRoundTrips) {
  std::string err;
  auto c = parse_fault_spec("loss=0.05,reorder=0.02,dup=0.01,corrupt=0.01,delay=200us,jitter=50us,seed=7",
                            &err);
  ASSERT_TRUE(c) << err;
  EXPECT_DOUBLE_EQ(c->loss, 0.05);
  EXPECT_DOUBLE_EQ(c->reorder, 0.02);
  EXPECT_DOUBLE_EQ(c->duplicate, 0.01);
  EXPECT_DOUBLE_EQ(c->corrupt, 0.01);
  EXPECT_EQ(c->delay_ns, 200'000u);
  EXPECT_EQ(c->jitter_ns, 50'000u);
  EXPECT_EQ(c->seed, 7u);
  EXPECT_EQ(c->reorder_depth, 3u);
  const std::string text = format_fault_spec(*c);
  EXPECT_EQ(text, "loss=0.05,dup=0.01,reorder=0.02,corrupt=0.01,delay=200us,jitter=50us,seed=7");
  auto again = parse_fault_spec(text, &err);
  ASSERT_TRUE(again) << err;
  EXPECT_EQ(format_fault_spec(*again), text);

  auto d = parse_fault_spec(" loss = 5% , depth=8, hold=2ms, delay=1.5ms, seed=0x10, slots=16,", &err);
  ASSERT_TRUE(d) << err;
  EXPECT_DOUBLE_EQ(d->loss, 0.05);
  EXPECT_EQ(d->reorder_depth, 8u);
  EXPECT_EQ(d->reorder_max_hold_ns, 2'000'000u);
  EXPECT_EQ(d->delay_ns, 1'500'000u);
  EXPECT_EQ(d->seed, 16u);
  EXPECT_EQ(d->pool_slots, 16u);

  auto e = parse_fault_spec("", &err);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->loss, 0);
  EXPECT_EQ(e->delay_ns, 0u);
  EXPECT_TRUE(parse_fault_spec("delay=0", &err));
}

TEST(FaultSpec, RejectsBadInput) {
  std::string err;
  for (const char* bad : {"loss=1.5", "loss=-0.1", "loss=abc", "loss", "delay=200", "delay=5xs",
                          "jitter=-1us", "seed=-3", "frobnicate=1", "dup=", "loss=nan"}) {
    err.clear();
    EXPECT_FALSE(parse_fault_spec(bad, &err)) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
}

TEST(FaultLink, DescribeAndPassThroughAccessors) {
  FaultConfig cfg;
  cfg.loss = 0.05;
  cfg.seed = 9;
  Rig r(cfg);
  EXPECT_EQ(r.link->describe(), "fault(loss=0.05,seed=9)+mem");
  EXPECT_EQ(r.link->fd(), -1);
  EXPECT_EQ(r.link->local(), ep("127.0.0.9", 4791));
  auto a = UdpLink::open(ep("127.0.0.2", 0), nullptr);
  ASSERT_TRUE(a);
  const std::string inner = a->describe();
  const int fd = a->fd();
  FaultLink f(std::move(a), cfg);
  EXPECT_EQ(f.describe(), "fault(loss=0.05,seed=9)+" + inner);
  EXPECT_EQ(f.fd(), fd);
}

TEST(FaultLink, ZeroRatesLoseNothing) {
  Rig r(FaultConfig{});
  ASSERT_EQ(send_frames(*r.link, 0, 5000), 5000u);
  std::vector<uint32_t> want(5000);
  for (uint32_t i = 0; i < 5000; ++i) want[i] = i;
  EXPECT_EQ(indices(*r.mem), want);
  for (size_t i = 0; i < r.mem->sent.size(); ++i)
    ASSERT_EQ(r.mem->sent[i].bytes, frame_bytes(uint32_t(i), 64));
}

TEST(FaultLink, ZeroRatesOverUdpLoseNothing) {
  auto a = UdpLink::open(ep("127.0.0.2", 0), nullptr);
  auto b = UdpLink::open(ep("127.0.0.3", 0), nullptr);
  ASSERT_TRUE(a && b);
  const Endpoint to = b->local();
  FaultLink f(std::move(a), FaultConfig{});
  std::vector<uint32_t> got;
  for (uint32_t round = 0; round < 20; ++round) {
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<TxFrame> tx;
    for (uint32_t i = 0; i < 100; ++i) bytes.push_back(frame_bytes(round * 100 + i, 200));
    for (auto& x : bytes) tx.push_back(make_tx(to, x, 3));
    ASSERT_EQ(f.send(tx.data(), tx.size()), 100u);
    for (auto& rx : test::recv_frames(*b, 100, 2000, &f)) got.push_back(frame_index(rx.bytes));
  }
  ASSERT_EQ(got.size(), 2000u);
  for (uint32_t i = 0; i < 2000; ++i) ASSERT_EQ(got[i], i);
}

TEST(FaultLink, SameSeedSameOutcome) {
  FaultConfig cfg;
  cfg.seed = 42;
  cfg.loss = 0.1;
  cfg.duplicate = 0.05;
  cfg.corrupt = 0.05;
  cfg.reorder = 0.05;
  cfg.reorder_max_hold_ns = kLongHold;
  Rig r1(cfg), r2(cfg);
  send_frames(*r1.link, 0, 3000);
  send_frames(*r2.link, 0, 3000);
  release_all(*r1.link);
  release_all(*r2.link);
  ASSERT_EQ(r1.mem->sent.size(), r2.mem->sent.size());
  for (size_t i = 0; i < r1.mem->sent.size(); ++i)
    ASSERT_EQ(r1.mem->sent[i].bytes, r2.mem->sent[i].bytes) << i;
  EXPECT_EQ(r1.link->fault_counters().dropped, r2.link->fault_counters().dropped);

  cfg.seed = 43;
  Rig r3(cfg);
  send_frames(*r3.link, 0, 3000);
  release_all(*r3.link);
  EXPECT_NE(indices(*r1.mem), indices(*r3.mem));
}

TEST(FaultLink, LossPatternDependsOnlyOnSeedAndLossRate) {
  FaultConfig a;
  a.seed = 5;
  a.loss = 0.2;
  FaultConfig b = a;
  b.duplicate = 0.3;
  b.reorder = 0.1;
  b.reorder_max_hold_ns = kLongHold;
  Rig ra(a), rb(b);
  send_frames(*ra.link, 0, 2000);
  send_frames(*rb.link, 0, 2000);
  release_all(*rb.link);
  auto ia = indices(*ra.mem), ib = indices(*rb.mem);
  EXPECT_EQ(std::set<uint32_t>(ia.begin(), ia.end()), std::set<uint32_t>(ib.begin(), ib.end()));
  EXPECT_EQ(ra.link->fault_counters().dropped, rb.link->fault_counters().dropped);
}

TEST(FaultLink, RatesRoughlyMatchConfiguration) {
  FaultConfig cfg;
  cfg.seed = 1234;
  cfg.loss = 0.05;
  cfg.duplicate = 0.03;
  cfg.corrupt = 0.02;
  cfg.reorder = 0.04;
  cfg.reorder_max_hold_ns = kLongHold;
  Rig r(cfg);
  constexpr size_t kN = 20000;
  ASSERT_EQ(send_frames(*r.link, 0, kN), kN);
  release_all(*r.link);
  const FaultCounters& c = r.link->fault_counters();
  auto near = [](uint64_t got, double expect) { return got > expect * 0.7 && got < expect * 1.3; };
  EXPECT_TRUE(near(c.dropped, kN * 0.05)) << c.dropped;
  const double kept = kN * 0.95;
  EXPECT_TRUE(near(c.duplicated, kept * 0.03)) << c.duplicated;
  EXPECT_TRUE(near(c.corrupted, kept * 0.02)) << c.corrupted;
  EXPECT_TRUE(near(c.reordered, kept * 0.04)) << c.reordered;
  EXPECT_EQ(c.pool_full, 0u);
  EXPECT_EQ(r.mem->sent.size(), kN - c.dropped + c.duplicated);
  // Frames that do not match their original: the corrupted ones (and their duplicates).
  size_t damaged = 0;
  for (auto& s : r.mem->sent) {
    const uint32_t i = frame_index(s.bytes);
    if (i >= kN || s.bytes != frame_bytes(i, 64)) ++damaged;
  }
  EXPECT_GE(damaged, c.corrupted);
  EXPECT_LE(damaged, c.corrupted * 2);
}

TEST(FaultLink, ReorderReallyReordersWithinDepth) {
  FaultConfig cfg;
  cfg.seed = 3;
  cfg.reorder = 0.2;
  cfg.reorder_depth = 3;
  cfg.reorder_max_hold_ns = kLongHold;
  Rig r(cfg);
  ASSERT_EQ(send_frames(*r.link, 0, 1000), 1000u);
  release_all(*r.link);
  auto idx = indices(*r.mem);
  ASSERT_EQ(idx.size(), 1000u);
  std::vector<uint32_t> sorted = idx;
  std::sort(sorted.begin(), sorted.end());
  for (uint32_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);  // nothing lost or doubled
  size_t inversions = 0;
  for (size_t i = 1; i < idx.size(); ++i) inversions += idx[i] < idx[i - 1];
  EXPECT_GT(inversions, 50u);
  EXPECT_GT(r.link->fault_counters().reordered, 100u);
}

TEST(FaultLink, HeldFramesReleaseByTimeInOrder) {
  FaultConfig cfg;
  cfg.reorder = 1.0;  // every frame held, so releases happen only by time
  cfg.reorder_max_hold_ns = kLongHold;
  Rig r(cfg);
  send_frames(*r.link, 0, 5);
  EXPECT_EQ(r.mem->sent.size(), 0u);
  EXPECT_EQ(r.link->held(), 5u);
  const uint64_t next = r.link->service(test::mono_ns());
  EXPECT_GT(next, test::mono_ns() + kLongHold / 2);
  release_all(*r.link);
  EXPECT_EQ(indices(*r.mem), (std::vector<uint32_t>{0, 1, 2, 3, 4}));
}

TEST(FaultLink, HeldFrameIsOvertakenByDepthFrames) {
  // Find a seed whose first frame is held and the next five pass.
  for (uint64_t seed = 1; seed < 2000; ++seed) {
    FaultConfig cfg;
    cfg.seed = seed;
    cfg.reorder = 0.3;
    cfg.reorder_depth = 2;
    cfg.reorder_max_hold_ns = kLongHold;
    Rig r(cfg);
    send_frames(*r.link, 0, 6, 64, 1);
    if (r.link->fault_counters().reordered != 1 || r.mem->sent.size() != 6) continue;
    auto idx = indices(*r.mem);
    if (idx[0] == 0) continue;  // the held frame was not the first
    EXPECT_EQ(idx, (std::vector<uint32_t>{1, 2, 0, 3, 4, 5}));
    return;
  }
  FAIL() << "no suitable seed";
}

TEST(FaultLink, DuplicateSendsTwiceInOrder) {
  FaultConfig cfg;
  cfg.duplicate = 1.0;
  Rig r(cfg);
  ASSERT_EQ(send_frames(*r.link, 0, 100), 100u);
  auto idx = indices(*r.mem);
  ASSERT_EQ(idx.size(), 200u);
  for (uint32_t i = 0; i < 200; ++i) EXPECT_EQ(idx[i], i / 2);
  EXPECT_EQ(r.link->fault_counters().duplicated, 100u);
}

TEST(FaultLink, CorruptFlipsOneToThreeBits) {
  FaultConfig cfg;
  cfg.corrupt = 1.0;
  cfg.seed = 77;
  Rig r(cfg);
  std::vector<uint8_t> orig(256, 0xa5);
  std::vector<std::vector<uint8_t>> copies(200, orig);
  std::vector<TxFrame> tx;
  for (auto& c : copies) tx.push_back(make_tx(ep("127.0.0.3", 4791), c, 3));
  ASSERT_EQ(r.link->send(tx.data(), tx.size()), tx.size());
  ASSERT_EQ(r.mem->sent.size(), 200u);
  int histogram[4] = {};
  for (auto& s : r.mem->sent) {
    int bits = 0;
    for (size_t i = 0; i < orig.size(); ++i) bits += std::popcount(uint8_t(s.bytes[i] ^ orig[i]));
    ASSERT_GE(bits, 1);
    ASSERT_LE(bits, 3);
    ++histogram[bits];
  }
  EXPECT_GT(histogram[1], 0);
  EXPECT_GT(histogram[3], 0);
  for (auto& c : copies) EXPECT_EQ(c, orig);  // the caller's memory is never touched
  EXPECT_EQ(r.link->fault_counters().corrupted, 200u);
}

TEST(FaultLink, DelayReleasesOnlyThroughService) {
  FaultConfig cfg;
  cfg.delay_ns = 5'000'000;
  Rig r(cfg);
  const uint64_t t0 = test::mono_ns();
  ASSERT_EQ(send_frames(*r.link, 0, 10), 10u);
  EXPECT_EQ(r.mem->sent.size(), 0u);
  EXPECT_EQ(r.link->fault_counters().delayed, 10u);
  const uint64_t next = r.link->service(t0);
  EXPECT_GE(next, t0 + cfg.delay_ns);
  EXPECT_EQ(r.mem->sent.size(), 0u);
  EXPECT_EQ(r.link->service(next + 1'000'000), 0u);  // everything released, nothing pending
  EXPECT_EQ(indices(*r.mem), (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(FaultLink, JitterAloneReorders) {
  FaultConfig cfg;
  cfg.jitter_ns = 1'000'000;
  cfg.seed = 11;
  Rig r(cfg);
  ASSERT_EQ(send_frames(*r.link, 0, 200), 200u);
  r.link->service(test::mono_ns() + 2'000'000);
  auto idx = indices(*r.mem);
  ASSERT_EQ(idx.size(), 200u);
  EXPECT_FALSE(std::is_sorted(idx.begin(), idx.end()));
}

TEST(FaultLink, DelayOverUdpArrivesViaService) {
  auto a = UdpLink::open(ep("127.0.0.2", 0), nullptr);
  auto b = UdpLink::open(ep("127.0.0.3", 0), nullptr);
  ASSERT_TRUE(a && b);
  const Endpoint to = b->local();
  FaultConfig cfg;
  cfg.delay_ns = 2'000'000;
  cfg.jitter_ns = 500'000;
  FaultLink f(std::move(a), cfg);
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TxFrame> tx;
  for (uint32_t i = 0; i < 50; ++i) bytes.push_back(frame_bytes(i, 300));
  for (auto& x : bytes) tx.push_back(make_tx(to, x, 2));
  ASSERT_EQ(f.send(tx.data(), tx.size()), 50u);
  EXPECT_EQ(f.counters().tx_frames, 0u);  // nothing on the wire yet
  auto got = test::recv_frames(*b, 50, 3000, &f);
  ASSERT_EQ(got.size(), 50u);
  std::set<uint32_t> seen;
  for (auto& g : got) seen.insert(frame_index(g.bytes));
  EXPECT_EQ(seen.size(), 50u);
  EXPECT_EQ(f.counters().tx_frames, 50u);
}

TEST(FaultLink, PoolExhaustionSendsImmediatelyAndLosesNothing) {
  FaultConfig cfg;
  cfg.reorder = 1.0;
  cfg.pool_slots = 8;  // 4 of them are kept back for backpressure
  cfg.reorder_depth = 1000;
  cfg.reorder_max_hold_ns = kLongHold;
  Rig r(cfg);
  ASSERT_EQ(send_frames(*r.link, 0, 20), 20u);
  EXPECT_EQ(r.link->held(), 4u);
  EXPECT_EQ(r.link->fault_counters().pool_full, 16u);
  release_all(*r.link);
  auto idx = indices(*r.mem);
  std::sort(idx.begin(), idx.end());
  ASSERT_EQ(idx.size(), 20u);
  for (uint32_t i = 0; i < 20; ++i) EXPECT_EQ(idx[i], i);
}

TEST(FaultLink, BackpressureKeepsOrderAndLosesNothing) {
  FaultConfig cfg;
  cfg.duplicate = 1.0;
  Rig r(cfg);
  r.mem->capacity = 30;
  size_t accepted = send_frames(*r.link, 0, 100, 64, 20);
  EXPECT_LT(accepted, 100u);
  EXPECT_GT(r.link->held(), 0u);  // the rest of a batch waits in the backlog
  std::vector<std::vector<uint8_t>> more{frame_bytes(999, 64)};
  TxFrame t = make_tx(ep("127.0.0.3", 4791), more[0], 1);
  EXPECT_EQ(r.link->send(&t, 1), 0u);  // still full: nothing new accepted
  const uint64_t now = test::mono_ns();
  EXPECT_GT(r.link->service(now), now);  // asks to be called back soon
  r.mem->capacity = SIZE_MAX;
  EXPECT_EQ(r.link->service(test::mono_ns()), 0u);
  EXPECT_EQ(r.link->held(), 0u);
  accepted += send_frames(*r.link, uint32_t(accepted), 100 - accepted, 64, 20);
  EXPECT_EQ(accepted, 100u);
  auto idx = indices(*r.mem);
  ASSERT_EQ(idx.size(), 200u);
  for (uint32_t i = 0; i < 200; ++i) ASSERT_EQ(idx[i], i / 2) << i;
  EXPECT_EQ(r.link->fault_counters().lost, 0u);
}

}  // namespace
}  // namespace softrdma::link
