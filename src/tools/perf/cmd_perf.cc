// `softrdma perf`: the command line of the perftest-like benchmark (see perf.h for the parts).
//
//   softrdma perf --server [--addr A]
//   softrdma perf --client SERVER_IP [--addr B] --op send|write|read|atomic|tcp --mode bw|lat|rate
//                 --size S | --sweep | --sizes LIST   [--iters N] [--duration SEC] [--window W]
//                 [--qps Q] [--plot FILE.svg|png] [--csv FILE] [--fault SPEC] [--tcp-baseline]
//   softrdma perf --local ...   both ends in this process (two devices, two threads)
#include <cstdio>
#include <memory>
#include <sstream>

#include "tools/commands.h"
#include "tools/perf/cmd_perf.h"
#include "tools/perf/perf.h"

namespace softrdma::tools {

namespace {

using perf::Mode;
using perf::Op;

// "4096", "4K", "64k", "1M".
std::optional<uint32_t> parse_size(std::string s) {
  if (s.empty()) return std::nullopt;
  uint64_t mult = 1;
  char last = s.back();
  if (last == 'k' || last == 'K') mult = 1024;
  if (last == 'm' || last == 'M') mult = 1024 * 1024;
  if (mult != 1) s.pop_back();
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  uint64_t v = std::stoull(s) * mult;
  if (v == 0 || v > perf::kMaxSize) return std::nullopt;
  return static_cast<uint32_t>(v);
}

std::vector<uint32_t> parse_sizes(const std::string& list, std::string* err) {
  std::vector<uint32_t> out;
  if (list == "pow2") {
    for (uint32_t s = 8; s <= (1u << 20); s *= 2) out.push_back(s);
    return out;
  }
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto v = parse_size(item);
    if (!v) {
      *err = "not a message size (1 B .. 64 MiB, K/M suffixes): '" + item + "'";
      return {};
    }
    out.push_back(*v);
  }
  return out;
}

struct Cli {
  perf::Options o;
  std::string op = "write", mode = "bw", size, sizes, addr, atomic = "fadd", conn = "RC";
  bool sweep = false;
};

int dispatch(Cli& c) {
  perf::Options& o = c.o;
  int roles = int(o.server) + int(o.local) + int(!o.client_host.empty());
  if (roles != 1) {
    std::fprintf(stderr, "softrdma perf: give exactly one of --server, --client SERVER_IP, --local\n");
    return 2;
  }
  o.op = *perf::parse_op(c.op);
  o.mode = *perf::parse_mode(c.mode);
  o.atomic = c.atomic == "cas" ? perf::AtomicKind::kCompSwap : perf::AtomicKind::kFetchAdd;
  o.uc = c.conn == "UC";
  if (o.uc && (o.op == Op::kRead || o.op == Op::kAtomic)) {
    std::fprintf(stderr, "softrdma perf: UC QPs support SEND and RDMA WRITE only\n");
    return 2;
  }
  if (!c.addr.empty()) o.addr = c.addr;
  std::string err;
  if (!c.sizes.empty()) {
    o.sizes = parse_sizes(c.sizes, &err);
  } else if (c.sweep) {
    o.sizes = parse_sizes("8,64,1K,4K,64K,1M", &err);
  } else if (!c.size.empty()) {
    o.sizes = parse_sizes(c.size, &err);
  } else {
    o.sizes = {o.mode == Mode::kBw ? 65536u : 8u};
  }
  if (!err.empty()) {
    std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
    return 2;
  }
  if (o.op == Op::kAtomic) o.sizes = {8};  // atomics are 8 bytes
  if (o.op == Op::kTcp && o.tcp_baseline) o.tcp_baseline = false;
  if (o.duration < 0 || o.duration > 3600) {
    std::fprintf(stderr, "softrdma perf: --duration must be between 0 and 3600 seconds\n");
    return 2;
  }
  if (o.no_thread && o.passive) {
    std::fprintf(stderr, "softrdma perf: --passive needs the target's progress thread\n");
    return 2;
  }
  if (o.server) return perf::run_server(o);
  if (o.local) return perf::run_local(o);
  return perf::run_client(o);
}

}  // namespace

void add_perf_command(CLI::App& app) {
  auto c = std::make_shared<Cli>();
  perf::Options& o = c->o;
  CLI::App* sub = app.add_subcommand(
      "perf", "perftest-like benchmark: RDMA SEND/WRITE/READ/atomic bandwidth, message rate and latency");
  sub->footer(
      "Examples:\n"
      "  softrdma perf --server --addr 127.0.0.2\n"
      "  softrdma perf --client 127.0.0.2 --op write --mode bw --sweep --plot write_bw.svg\n"
      "  softrdma perf --local --op send --mode lat --size 8 --tcp-baseline\n"
      "  softrdma perf --local --op write --mode rate --size 8 --qps 2\n"
      "Latency: SEND and WRITE report half a ping-pong round trip, READ and atomics a full round trip.\n"
      "Bandwidth rows are checked: the data that arrived equals the data sent, exactly once.");

  auto* server = sub->add_flag("--server", o.server, "run the server side (serves one client session, then exits)");
  auto* client = sub->add_option("--client", o.client_host, "run the client side against the server at SERVER_IP");
  auto* local = sub->add_flag("--local", o.local, "run both sides in this process (two devices, two threads)");
  server->excludes(client)->excludes(local);
  client->excludes(local);
  sub->add_option("--addr", c->addr, "local RoCEv2 address (default: a free 127.0.0.x)");
  sub->add_option("--port", o.oob_port, "TCP port of the out-of-band exchange")->capture_default_str();
  sub->add_flag("--persist", o.persist, "server: keep serving sessions until killed");

  sub->add_option("--op", c->op, "operation")->check(CLI::IsMember({"send", "write", "read", "atomic", "tcp"}))
      ->capture_default_str();
  sub->add_option("--mode", c->mode, "bw (bandwidth), lat (latency) or rate (message rate)")
      ->check(CLI::IsMember({"bw", "lat", "rate"}))->capture_default_str();
  sub->add_option("--atomic-type", c->atomic, "fadd or cas")->check(CLI::IsMember({"fadd", "cas"}))
      ->capture_default_str();
  auto* size = sub->add_option("-s,--size", c->size, "message size (K/M suffixes; default 64K for bw, 8 otherwise)");
  auto* sweep = sub->add_flag("-a,--sweep", c->sweep, "sizes 8, 64, 1K, 4K, 64K, 1M");
  auto* sizes = sub->add_option("--sizes", c->sizes, "comma-separated sizes, or 'pow2' for 8 B .. 1 MiB");
  size->excludes(sweep)->excludes(sizes);
  sweep->excludes(sizes);
  sub->add_option("-n,--iters", o.iters, "operations (bw/rate) or samples (lat) per size (default: by size)");
  sub->add_option("-D,--duration", o.duration, "seconds per size instead of --iters (RDMA tests)");
  sub->add_option("-t,--window", o.window, "outstanding operations per QP (bw/rate)")->check(CLI::Range(1, 16384))
      ->capture_default_str();
  sub->add_option("-Q,--cq-mod", o.cq_mod, "signal one operation in this many (default: window/4, at most 64)")
      ->check(CLI::Range(1, 16384));
  sub->add_option("-l,--post-list", o.post_list, "work requests per post_send call")->check(CLI::Range(1, 64))
      ->capture_default_str();
  sub->add_option("-q,--qps", o.qps, "number of QPs (bw/rate spread work over them)")->check(CLI::Range(1, 256))
      ->capture_default_str();
  sub->add_option("-c,--conn", c->conn, "connection type: RC or UC (UC: SEND/WRITE, no ACKs, no retransmission)")
      ->check(CLI::IsMember({"RC", "UC"}))->capture_default_str();
  sub->add_option("-I,--inline", o.inline_max, "send data inline up to this size (0: never)")->check(CLI::Range(0, 512))
      ->capture_default_str();
  sub->add_option("-m,--mtu", o.mtu, "path MTU")->check(CLI::IsMember({256, 512, 1024, 2048, 4096}))
      ->capture_default_str();
  sub->add_flag("--passive", o.passive,
                "the target does not poll during one-sided tests: its progress thread serves the peer");
  auto* busy = sub->add_flag("--busy-poll", o.busy_poll, "the devices' progress threads spin instead of sleeping");
  auto* no_thread = sub->add_flag("--no-progress-thread", o.no_thread,
                                  "devices without a background progress thread (only polling threads make progress)");
  no_thread->excludes(busy);
  sub->add_option("--engine-window", o.engine_window, "engine tuning: unacknowledged packets per RC QP")
      ->check(CLI::Range(1, 65536))->group("Engine tuning (this process's devices)");
  sub->add_option("--engine-ackreq", o.engine_ackreq, "engine tuning: request an ACK at least every N packets")
      ->check(CLI::Range(1, 65536))->group("Engine tuning (this process's devices)");
  sub->add_option("--fault", o.fault, "fault injection on this process's device(s), e.g. loss=1%,reorder=1%");

  sub->add_flag("--tcp-baseline", o.tcp_baseline, "after each row, run the same size over TCP and print the ratio");
  sub->add_option("--plot", o.plot, "write a plot (FILE.svg or FILE.png; needs gnuplot)");
  sub->add_option("--csv", o.csv, "write the rows as CSV");
  sub->add_flag("-v,--verbose", o.verbose, "print the device counters at the end");

  sub->callback([c] {
    int rc = dispatch(*c);
    std::fflush(stdout);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace softrdma::tools
