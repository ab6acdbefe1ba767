// mem::MrTable::check() per validation: one per SGE gathered or scattered and one per remote
// access (FIG. 15 / FIG. 18 order: valid, type, PD, instance, bounds, access).
#include <benchmark/benchmark.h>

#include <sys/mman.h>

#include <algorithm>
#include <random>
#include <vector>

#include "mem/mr_table.h"

namespace {

using namespace softrdma;

struct Table {
  mem::MrTable t;
  std::vector<uint32_t> keys;
  std::vector<uint8_t> mem;
  explicit Table(size_t regions) : mem(regions * 4096) {
    for (size_t i = 0; i < regions; ++i)
      keys.push_back(t.add(1, mem.data() + i * 4096, reinterpret_cast<uint64_t>(mem.data() + i * 4096), 4096,
                           mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead));
  }
};

// The same key every time (one busy region, as in a bandwidth test).
void BM_MrCheckHot(benchmark::State& state) {
  Table tb(static_cast<size_t>(state.range(0)));
  const uint32_t key = tb.keys.back();
  const uint64_t addr = reinterpret_cast<uint64_t>(tb.mem.data()) + (tb.keys.size() - 1) * 4096 + 100;
  mem::Translation tr;
  for (auto _ : state) {
    auto e = tb.t.check(key, 1, addr, 1024, mem::Need::kRemoteWrite, &tr);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(tr);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_MrCheckHot)->Arg(1)->Arg(1024);

// Keys spread over many regions (many QPs, many buffers): table entries miss the cache.
void BM_MrCheckSpread(benchmark::State& state) {
  Table tb(static_cast<size_t>(state.range(0)));
  std::vector<std::pair<uint32_t, uint64_t>> probes;
  std::mt19937 rng(7);
  for (int i = 0; i < 4096; ++i) {
    size_t r = rng() % tb.keys.size();
    probes.emplace_back(tb.keys[r], reinterpret_cast<uint64_t>(tb.mem.data()) + r * 4096);
  }
  mem::Translation tr;
  size_t i = 0;
  for (auto _ : state) {
    auto& [key, addr] = probes[i++ & 4095];
    auto e = tb.t.check(key, 1, addr, 64, mem::Need::kRemoteRead, &tr);
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_MrCheckSpread)->Arg(1024)->Arg(65535);

// A refused access (stale instance): what a hostile or late packet costs.
void BM_MrCheckStaleKey(benchmark::State& state) {
  Table tb(16);
  const uint32_t key = tb.keys[3] ^ 1;
  mem::Translation tr;
  for (auto _ : state) {
    auto e = tb.t.check(key, 1, reinterpret_cast<uint64_t>(tb.mem.data()) + 3 * 4096, 8,
                        mem::Need::kRemoteWrite, &tr);
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_MrCheckStaleKey);

// ns per validated translation by region size (FIG. 12): 4 KiB is direct, 2 MiB a first-order
// page list, 1 GiB a second-order directory (MAP_NORESERVE: registered, never touched). Each
// iteration validates one 1 KiB access at a random offset and resolves all its chunks.
void BM_MrTranslate(benchmark::State& state) {
  const uint64_t size = static_cast<uint64_t>(state.range(0));
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    state.SkipWithError("mmap failed");
    return;
  }
  auto* host = static_cast<uint8_t*>(m);
  mem::MrTable t;
  const uint64_t iova = 0x7000'0000'0000;
  uint32_t key = t.add(1, host, iova, size, mem::kLocalWrite | mem::kRemoteWrite);
  std::vector<uint64_t> addrs(4096);
  std::mt19937_64 rng(3);
  const uint64_t len = std::min<uint64_t>(1024, size);
  for (auto& a : addrs) a = iova + rng() % (size - len + 1);
  size_t i = 0;
  for (auto _ : state) {
    mem::Translation tr;
    auto e = t.check(key, 1, addrs[i++ & 4095], len, mem::Need::kRemoteWrite, &tr);
    uint8_t* p = nullptr;
    for (uint64_t at = 0; at < len;) at += tr.chunk(at, &p);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(p);
  }
  state.SetLabel(t.find(key)->xlate == mem::XlateControl::kDirect      ? "direct"
                 : t.find(key)->xlate == mem::XlateControl::kIndirect1 ? "1st-order"
                                                                       : "2nd-order");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  munmap(m, size);
}
BENCHMARK(BM_MrTranslate)->Arg(4 << 10)->Arg(2 << 20)->Arg(int64_t{1} << 30);

}  // namespace

BENCHMARK_MAIN();
