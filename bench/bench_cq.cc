// Completion queue push (the engine, under its lock) and poll (the application, lock-free),
// per completion entry.
#include <benchmark/benchmark.h>

#include "queue/cq.h"

namespace {

using namespace softrdma;

// One completion pushed, then polled: the latency-test pattern.
void BM_CqPushPoll1(benchmark::State& state) {
  queue::CompletionQueue cq(1024, nullptr);
  Wc wc{}, out[1];
  for (auto _ : state) {
    wc.wr_id++;
    cq.push(wc, false);
    int n = cq.poll(out, 1);
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_CqPushPoll1);

// A batch pushed, then polled in one call: the bandwidth-test pattern. Items = entries.
void BM_CqPushPollBatch(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  queue::CompletionQueue cq(4096, nullptr);
  Wc wc{}, out[64];
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      wc.wr_id++;
      cq.push(wc, false);
    }
    int got = 0;
    while (got < batch) got += cq.poll(out, std::min(64, batch - got));
    benchmark::DoNotOptimize(got);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * batch);
}
BENCHMARK(BM_CqPushPollBatch)->Arg(16)->Arg(64);

// Polling an empty CQ (what a spinning consumer does between completions).
void BM_CqPollEmpty(benchmark::State& state) {
  queue::CompletionQueue cq(1024, nullptr);
  Wc out[16];
  for (auto _ : state) {
    int n = cq.poll(out, 16);
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_CqPollEmpty);

}  // namespace

BENCHMARK_MAIN();
