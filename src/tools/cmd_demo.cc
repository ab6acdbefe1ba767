// `softrdma demo`: two adapters in one process on loopback, one RC QP pair (and one UD pair),
// every operation checked byte for byte, then timed; a perftest-style table.
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tools/commands.h"
#include "tools/demo_ops.h"
#include "tools/demo_remote.h"
#include "tools/table.h"

namespace softrdma::tools {

namespace {

struct DemoOptions {
  std::vector<uint32_t> sizes{8, 4096, 65536};
  std::optional<uint64_t> iters;
  std::string fault;
  std::optional<uint32_t> mtu;
  std::string addr_a, addr_b;
  uint32_t window = 64;
  RemoteDemoOptions remote;
};

constexpr uint32_t kSignalEvery = 16;
constexpr uint64_t kMaxBuffer = 32ull << 20;  // per side, for the out and in slots together

std::optional<wire::IpAddr> parse_addr(const std::string& text, const char* option) {
  if (text.empty()) return std::nullopt;
  auto ip = wire::IpAddr::parse(text);
  if (!ip) throw ToolError(fmt::format("{}: not an IP address: {}", option, text));
  return ip;
}

// Nonzero error and recovery counters of both devices: what the faults cost, by kind.
void print_recovery(Device& a, Device& b, bool faulty) {
  auto qp_sum = [](Device& d) {
    transport::QpCounters sum;
    auto* s = const_cast<uint64_t*>(sum.values());
    for (auto& q : d.qp_counters())
      for (size_t i = 0; i < std::size(transport::QpCounters::kNames); ++i) s[i] += q.counters.values()[i];
    return sum;
  };
  Table t({"counter", a.name(), b.name(), "meaning"});
  t.set_align(3, Table::Align::kLeft);
  auto fa = a.fault_counters(), fb = b.fault_counters();
  auto fault_row = [&](const char* n, uint64_t x, uint64_t y, const char* d) {
    if (x + y) t.add_row({n, std::to_string(x), std::to_string(y), d});
  };
  fault_row("fault:dropped", fa.dropped, fb.dropped, "frames the fault injector threw away");
  fault_row("fault:corrupted", fa.corrupted, fb.corrupted, "frames it flipped bits in");
  fault_row("fault:duplicated", fa.duplicated, fb.duplicated, "frames it sent twice");
  fault_row("fault:reordered", fa.reordered, fb.reordered, "frames it held back behind later ones");
  fault_row("fault:delayed", fa.delayed, fb.delayed, "frames it delayed");
  auto da = a.counters(), db = b.counters();
  for (size_t i = 4; i < std::size(transport::DeviceCounters::kNames); ++i) {  // past rx/tx packets/bytes
    const auto& n = transport::DeviceCounters::kNames[i];
    fault_row(std::string(n.name).c_str(), da.values()[i], db.values()[i], std::string(n.description).c_str());
  }
  auto qa = qp_sum(a), qb = qp_sum(b);
  for (size_t i = 4; i < std::size(transport::QpCounters::kNames); ++i) {  // past tx/rx packets/bytes
    const auto& n = transport::QpCounters::kNames[i];
    if (n.name == "acks_sent" || n.name == "acks_received") continue;
    fault_row(fmt::format("qp:{}", n.name).c_str(), qa.values()[i], qb.values()[i],
              std::string(n.description).c_str());
  }
  uint64_t resent = qa.retransmits + qb.retransmits;
  if (t.empty() || (!faulty && resent == 0)) return;
  std::printf(faulty ? "\nFaults injected, and how the transport recovered (both directions, all QPs):\n"
                     : "\nNo faults were injected, yet RC sent %lu packets again: frames were lost on loopback "
                       "(usually a full UDP receive buffer, see RcvbufErrors in /proc/net/snmp). Recovery:\n",
              static_cast<unsigned long>(resent));
  t.print(stdout, "  ");
}

void run_demo(const DemoOptions& o) {
  if (!o.remote.role.empty()) {
    RemoteDemoOptions r = o.remote;
    r.sizes = o.sizes;
    r.iters = o.iters.value_or(200);
    r.addr = o.addr_a;
    r.mtu = o.mtu.value_or(0);
    run_remote_demo(r);
    return;
  }
  std::string err;
  DeviceConfig base = DeviceConfig::from_env(&err);
  if (!err.empty()) throw ToolError(err);
  base.address.reset();  // one SOFTRDMA_ADDR cannot serve two devices
  if (o.mtu) base.mtu = *o.mtu;
  if (mtu_enum_of(base.mtu) == 0) throw ToolError("--mtu must be 256, 512, 1024, 2048 or 4096");
  if (!o.fault.empty()) {
    base.fault = link::parse_fault_spec(o.fault, &err);
    if (!base.fault) throw ToolError("--fault: " + err);
  }
  bool faulty = base.fault.has_value();
  uint64_t iters = o.iters.value_or(faulty ? 100 : 1000);
  uint32_t max_size = *std::max_element(o.sizes.begin(), o.sizes.end());
  uint32_t window = static_cast<uint32_t>(std::clamp<uint64_t>(kMaxBuffer / 2 / max_size, 2, o.window));

  DeviceConfig ca = base, cb = base;
  ca.name = "softrdma0";
  cb.name = "softrdma1";
  ca.address = parse_addr(o.addr_a, "--addr-a");
  cb.address = parse_addr(o.addr_b, "--addr-b");
  if (cb.fault) cb.fault->seed += 1;  // the two directions lose different frames
  SideOptions so;
  so.buf_size = demo_buffer_size(max_size, window);
  if (faulty) so.wait_limit = std::chrono::seconds(30);
  Side a(ca, so), b(cb, so);
  a.connect(b.info());
  b.connect(a.info());
  std::vector<uint32_t> ud_sizes;
  for (uint32_t s : o.sizes)
    if (s <= base.mtu) ud_sizes.push_back(s);
  SideOptions uo = so;
  uo.type = QpType::kUd;
  uo.buf_size = demo_buffer_size(base.mtu, 16);
  Side ua(*a.dev, uo), ub(*b.dev, uo);
  ua.connect(ub.info());
  ub.connect(ua.info());

  const bool shm = a.dev->describe_link().find("shm") != std::string::npos;
  std::printf(
      "softrdma demo: two adapters in this process talk RoCEv2 (InfiniBand transport packets as UDP datagrams to "
      "port %u carry them) %s: %s at %s, %s at %s, MTU %u, RC QPs %u <-> %u, UD QPs %u <-> %u.\n",
      base.port,
      shm ? "through the same-host shared-memory link (SOFTRDMA_SHM=0: as UDP over loopback)" : "over loopback UDP",
      a.dev->name().c_str(), a.dev->address().str().c_str(), b.dev->name().c_str(), b.dev->address().str().c_str(),
      base.mtu, a.qp->qpn(), b.qp->qpn(), ua.qp->qpn(), ub.qp->qpn());
  std::printf(
      "Each row: 3 checked transfers, %lu timed one at a time (latency), %lu timed with %u in flight "
      "(bandwidth); every byte and atomic result is compared.%s\n",
      static_cast<unsigned long>(iters), static_cast<unsigned long>(iters), window,
      faulty ? fmt::format(" Fault injection on both sides: {}.", link::format_fault_spec(*base.fault)).c_str()
             : "");
  std::fflush(stdout);

  Table t({"operation", "bytes", "iters", "MB/s", "Gb/s", "Mmsg/s", "lat typ us", "lat p99 us", "latency is"});
  t.set_align(8, Table::Align::kLeft);
  OpRunner rc(a, b, max_size, window, kSignalEvery);
  OpRunner ud(ua, ub, base.mtu, 16, kSignalEvery);
  auto row = [&](OpRunner& r, Op op, uint32_t bytes) {
    r.verify(op, bytes, 3);
    LatencySummary lat = summarize(r.latency(op, bytes, iters));
    double secs = op == Op::kUdSend ? NAN : r.bandwidth(op, bytes, iters);
    double mbps = double(bytes) * double(iters) / secs / 1e6;
    t.add_row({std::string(op_name(op)), std::to_string(bytes), std::to_string(iters), fixed(mbps, 1),
               fixed(mbps * 8 / 1e3, 3), fixed(double(iters) / secs / 1e6, 3), fixed(lat.median_us, 1),
               fixed(lat.p99_us, 1), is_pingpong(op) ? "half round trip" : "post to completion"});
  };
  try {
    for (Op op : {Op::kSend, Op::kWrite, Op::kWriteImm, Op::kRead})
      for (uint32_t s : o.sizes) row(rc, op, s);
    row(rc, Op::kFetchAdd, 8);
    row(rc, Op::kCompSwap, 8);
    for (uint32_t s : ud_sizes) row(ud, Op::kUdSend, s);
  } catch (const ToolError&) {
    if (!t.empty()) std::printf("\nThe rows that passed before the failure:\n%s", t.str().c_str());
    throw;
  }
  std::printf("\n");
  t.print();
  std::printf(
      "MB/s = 10^6 bytes/s. Latency: SEND, WRITE_IMM and UD are ping-pongs (a sends, b answers, half the round "
      "trip); WRITE, READ and atomics are one operation with nothing else in flight, post to completion.\n");
  if (ud.ud_lost > 0 && !faulty) throw ToolError(fmt::format("{} UD datagrams were lost without fault injection", ud.ud_lost));
  print_recovery(*a.dev, *b.dev, faulty);
  if (ud.ud_lost)
    std::printf("  UD is unreliable by design: %lu ping-pongs lost a datagram, which nobody retransmits.\n",
                static_cast<unsigned long>(ud.ud_lost));
  std::printf("\nOK: %lu operations checked, %.1f MB compared, no mismatch%s.\n",
              static_cast<unsigned long>(rc.ops_checked + ud.ops_checked),
              double(rc.bytes_checked + ud.bytes_checked) / 1e6,
              faulty ? "; RC data arrived intact despite the faults" : "");
  std::printf(
      "Next: `softrdma stat` shows live counters of the devices open in other processes, `softrdma perf` measures "
      "between two processes, `softrdma devices` lists adapters.\n");
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto opt = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "Two adapters on loopback do SEND, WRITE, WRITE with immediate, READ, atomics and UD SEND; "
              "every byte checked; a perftest-style table");
  cmd->add_option("--size", opt->sizes, "message sizes in bytes (8 .. 16777216; several allowed)")
      ->capture_default_str()
      ->check(CLI::Range(8u, 16u << 20));
  cmd->add_option("--iters", opt->iters, "timed iterations per row, for latency and again for bandwidth (default 1000, with --fault 100)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}));
  cmd->add_option("--fault", opt->fault, "fault injection on both adapters, e.g. loss=0.05,reorder=0.02");
  cmd->add_option("--mtu", opt->mtu, "path MTU in bytes: 256, 512, 1024, 2048 or 4096 (default 4096)");
  cmd->add_option("--addr-a", opt->addr_a, "address of the first adapter (default: first free 127.0.0.x)");
  cmd->add_option("--addr-b", opt->addr_b, "address of the second adapter (default: next free 127.0.0.x)");
  cmd->add_option("--window", opt->window, "operations in flight in the bandwidth runs")
      ->capture_default_str()
      ->check(CLI::Range(1u, 128u));
  add_remote_demo_options(*cmd, opt->remote);
  cmd->callback([opt] {
    try {
      run_demo(*opt);
    } catch (const ToolError& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "softrdma demo: FAILED: %s\n", e.what());
      throw CLI::RuntimeError(1);
    }
  });
}

}  // namespace softrdma::tools
