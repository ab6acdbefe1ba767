// wire::parse() per received packet: the structural checks every frame passes before any
// transport state is looked at (length, version, opcode, headers and pad inside the packet).
#include <benchmark/benchmark.h>

#include <vector>

#include "wire/fields.h"
#include "wire/icrc.h"
#include "wire/packet.h"

namespace {

using namespace softrdma;

std::vector<uint8_t> frame(uint8_t opcode, size_t payload_len) {
  const wire::OpcodeInfo& info = wire::opcode_info(opcode);
  std::vector<uint8_t> f(info.payload + payload_len + wire::pad_for(static_cast<uint32_t>(payload_len)) +
                         wire::kIcrcSize);
  wire::BthFields b;
  b.opcode = opcode;
  b.dqpn = 0x123;
  b.psn = 99;
  b.padcnt = wire::pad_for(static_cast<uint32_t>(payload_len));
  wire::write_bth(f.data(), b);
  if (info.has(wire::kReth)) {
    wire::set(f.data() + info.reth, wire::reth::va, 0x1000);
    wire::set(f.data() + info.reth, wire::reth::rkey, 0x4242);
    wire::set(f.data() + info.reth, wire::reth::dmalen, payload_len);
  }
  if (info.has(wire::kAeth)) wire::set(f.data() + info.aeth, wire::aeth::syndrome, 0x1f);
  return f;
}

void run(benchmark::State& state, uint8_t opcode, size_t payload) {
  auto f = frame(opcode, payload);
  wire::PacketView p;
  if (wire::parse(f.data(), static_cast<uint32_t>(f.size()), p) != wire::ParseError::kOk) {
    state.SkipWithError("test frame does not parse");
    return;
  }
  for (auto _ : state) {
    auto e = wire::parse(f.data(), static_cast<uint32_t>(f.size()), p);
    benchmark::DoNotOptimize(e);
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_ParseSendOnly8(benchmark::State& s) { run(s, wire::kRcSendOnly, 8); }
void BM_ParseWriteOnly4K(benchmark::State& s) { run(s, wire::kRcWriteOnly, 4096); }
void BM_ParseAck(benchmark::State& s) { run(s, wire::kRcAck, 0); }
void BM_ParseReadRequest(benchmark::State& s) { run(s, wire::kRcReadRequest, 0); }
BENCHMARK(BM_ParseSendOnly8);
BENCHMARK(BM_ParseWriteOnly4K);
BENCHMARK(BM_ParseAck);
BENCHMARK(BM_ParseReadRequest);

// A malformed frame is rejected: the cost of dropping garbage.
void BM_ParseRejectShort(benchmark::State& state) {
  uint8_t junk[8] = {0x04};
  wire::PacketView p;
  for (auto _ : state) {
    auto e = wire::parse(junk, sizeof junk, p);
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ParseRejectShort);

}  // namespace

BENCHMARK_MAIN();
