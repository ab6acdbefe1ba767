// CRC-32 and RoCEv2 ICRC throughput: what every packet pays, sent or received.
//
//   BM_Crc32/N           wire::crc32_update (carry-less multiply folding where the CPU has it)
//   BM_Crc32Table/N      wire::crc32_update_table, the portable slice-by-8 path
//   BM_Crc32Path_<p>/N   wire::crc32_update_path: one path (pclmul, vpclmul256, vpclmul512)
//                        for every length, whatever crc32_update would pick
//   BM_IcrcCompute/N     wire::icrc_compute over a header part and an N-byte payload part
//   BM_IcrcVerify/N      wire::icrc_verify of a received frame (good ICRC: the common case)
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "wire/fields.h"
#include "wire/icrc.h"
#include "wire/packet.h"

namespace {

using namespace softrdma;

std::vector<uint8_t> random_bytes(size_t n) {
  std::mt19937 rng(42);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

wire::IcrcContext context() {
  return {*wire::IpAddr::parse("127.0.0.2"), *wire::IpAddr::parse("127.0.0.3"), 4791, 4791};
}

template <uint32_t (*Crc)(uint32_t, const void*, size_t)>
void BM_Crc(benchmark::State& state) {
  auto buf = random_bytes(static_cast<size_t>(state.range(0)));
  uint32_t crc = 0xffffffff;
  for (auto _ : state) {
    crc = Crc(crc, buf.data(), buf.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Crc<wire::crc32_update>)->Name("BM_Crc32")->Arg(64)->Arg(256)->Arg(1024)->Arg(4096)->Arg(65536);
BENCHMARK(BM_Crc<wire::crc32_update_table>)
    ->Name("BM_Crc32Table")
    ->Arg(64)
    ->Arg(256)
    ->Arg(1024)
    ->Arg(4096)
    ->Arg(65536);

template <wire::Crc32Path Path>
void BM_CrcPath(benchmark::State& state) {
  if (!wire::crc32_path_available(Path)) {
    state.SkipWithError("this CPU lacks the instructions for the path");
    return;
  }
  auto buf = random_bytes(static_cast<size_t>(state.range(0)));
  uint32_t crc = 0xffffffff;
  for (auto _ : state) {
    crc = wire::crc32_update_path(Path, crc, buf.data(), buf.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
// The sizes around the dispatch thresholds too, to place them.
#define SOFTRDMA_CRC_PATH_BENCH(path, label)   \
  BENCHMARK(BM_CrcPath<wire::Crc32Path::path>) \
      ->Name("BM_Crc32Path_" label)            \
      ->Arg(64)                                \
      ->Arg(128)                               \
      ->Arg(192)                               \
      ->Arg(256)                               \
      ->Arg(512)                               \
      ->Arg(1024)                              \
      ->Arg(4096)                              \
      ->Arg(65536)
SOFTRDMA_CRC_PATH_BENCH(kClmul, "pclmul");
SOFTRDMA_CRC_PATH_BENCH(kVpclmul256, "vpclmul256");
SOFTRDMA_CRC_PATH_BENCH(kVpclmul512, "vpclmul512");
#undef SOFTRDMA_CRC_PATH_BENCH

// A RoCEv2 RDMA WRITE Only frame: BTH + RETH header part, payload part (as the requester
// gathers it from registered memory), pad + ICRC trailer.
struct Frame {
  uint8_t hdr[28] = {};
  std::vector<uint8_t> payload;
  std::vector<uint8_t> wire;  // the frame as received: hdr | payload | pad | icrc
};

Frame make_frame(size_t payload_len) {
  Frame f;
  f.payload = random_bytes(payload_len);
  wire::BthFields b;
  b.opcode = wire::kRcWriteOnly;
  b.dqpn = 0x123;
  b.psn = 77;
  b.ackreq = true;
  b.padcnt = wire::pad_for(static_cast<uint32_t>(payload_len));
  wire::write_bth(f.hdr, b);
  wire::set(f.hdr + wire::bth::kSize, wire::reth::va, 0x1000);
  wire::set(f.hdr + wire::bth::kSize, wire::reth::rkey, 0x4242);
  wire::set(f.hdr + wire::bth::kSize, wire::reth::dmalen, payload_len);
  f.wire.assign(f.hdr, f.hdr + sizeof f.hdr);
  f.wire.insert(f.wire.end(), f.payload.begin(), f.payload.end());
  f.wire.insert(f.wire.end(), b.padcnt, 0);
  iovec parts[1] = {{f.wire.data(), f.wire.size()}};
  uint32_t icrc = wire::icrc_compute(context(), parts, 1, 0);
  f.wire.resize(f.wire.size() + wire::kIcrcSize);
  wire::icrc_store(f.wire.data() + f.wire.size() - wire::kIcrcSize, icrc);
  return f;
}

void BM_IcrcCompute(benchmark::State& state) {
  Frame f = make_frame(static_cast<size_t>(state.range(0)));
  const auto ctx = context();
  iovec parts[2] = {{f.hdr, sizeof f.hdr}, {f.payload.data(), f.payload.size()}};
  for (auto _ : state) {
    uint32_t icrc = wire::icrc_compute(ctx, parts, 2, 0);
    benchmark::DoNotOptimize(icrc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_IcrcCompute)->Arg(64)->Arg(1024)->Arg(4096);

void BM_IcrcVerify(benchmark::State& state) {
  Frame f = make_frame(static_cast<size_t>(state.range(0)));
  const auto ctx = context();
  if (wire::icrc_verify(ctx, f.wire.data(), f.wire.size(), true) != wire::IcrcResult::kGood) {
    state.SkipWithError("test frame does not verify");
    return;
  }
  for (auto _ : state) {
    auto r = wire::icrc_verify(ctx, f.wire.data(), f.wire.size(), true);
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_IcrcVerify)->Arg(64)->Arg(1024)->Arg(4096);

}  // namespace

BENCHMARK_MAIN();
