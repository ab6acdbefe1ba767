// Output of softrdma perf: perftest-style header and table, CSV, and a gnuplot plot.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tools/perf/perf.h"

namespace softrdma::tools::perf {

namespace {

constexpr const char* kRule =
    "---------------------------------------------------------------------------------------------";

std::string title(Op op, Mode mode) {
  std::string t;
  switch (op) {
    case Op::kSend: t = "Send"; break;
    case Op::kWrite: t = "RDMA_Write"; break;
    case Op::kRead: t = "RDMA_Read"; break;
    case Op::kAtomic: t = "Atomic"; break;
    case Op::kTcp: return mode == Mode::kLat ? "TCP Ping-Pong Latency Test (baseline)" : "TCP Stream BW Test (baseline)";
  }
  switch (mode) {
    case Mode::kBw: return t + " BW Test";
    case Mode::kLat: return t + " Latency Test";
    case Mode::kRate: return t + " Message Rate Test";
  }
  return t;
}

std::string find_in_path(const char* prog) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string cand = p.substr(start, end - start) + "/" + prog;
    if (access(cand.c_str(), X_OK) == 0) return cand;
    start = end + 1;
  }
  return {};
}

}  // namespace

std::string_view name(Op op) {
  switch (op) {
    case Op::kSend: return "send";
    case Op::kWrite: return "write";
    case Op::kRead: return "read";
    case Op::kAtomic: return "atomic";
    case Op::kTcp: return "tcp";
  }
  return "?";
}

std::string_view name(Mode mode) {
  switch (mode) {
    case Mode::kBw: return "bw";
    case Mode::kLat: return "lat";
    case Mode::kRate: return "rate";
  }
  return "?";
}

std::optional<Op> parse_op(std::string_view s) {
  for (Op op : {Op::kSend, Op::kWrite, Op::kRead, Op::kAtomic, Op::kTcp})
    if (name(op) == s) return op;
  return std::nullopt;
}

std::optional<Mode> parse_mode(std::string_view s) {
  for (Mode m : {Mode::kBw, Mode::kLat, Mode::kRate})
    if (name(m) == s) return m;
  return std::nullopt;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string human_size(uint64_t b) {
  if (b >= (1u << 30) && b % (1u << 30) == 0) return std::to_string(b >> 30) + " GiB";
  if (b >= (1u << 20) && b % (1u << 20) == 0) return std::to_string(b >> 20) + " MiB";
  if (b >= 1024 && b % 1024 == 0) return std::to_string(b >> 10) + " KiB";
  return std::to_string(b) + " B";
}

uint64_t default_iters(Op op, Mode mode, uint32_t size) {
  auto by_bytes = [size](uint64_t bytes, uint64_t lo, uint64_t hi) { return std::clamp<uint64_t>(bytes / size, lo, hi); };
  if (mode == Mode::kLat) return by_bytes(64ull << 20, 100, 5000);
  if (op == Op::kTcp) return by_bytes(512ull << 20, 1000, 200000);
  if (op == Op::kAtomic) return 50000;
  if (mode == Mode::kRate) return by_bytes(256ull << 20, 1000, 200000);
  return by_bytes(256ull << 20, 200, 100000);
}

uint64_t warmup_iters(Mode mode, uint64_t iters) {
  return mode == Mode::kLat ? std::min<uint64_t>(iters / 10 + 1, 200) : iters / 10 + 1;
}

void print_header(const Options& o, Op op, Mode mode, const std::string& local, const std::string& remote, Rdma* rdma) {
  std::printf("%s\n", kRule);
  std::printf("                    %s\n", title(op, mode).c_str());
  if (rdma != nullptr) {
    const uint32_t cq_mod =
        std::clamp<uint32_t>(o.cq_mod ? o.cq_mod : std::min<uint32_t>(64, o.window / 4), 1, o.window);
    // "shm+udp(...)": a peer on this host is reached through shared memory, others over UDP.
    std::printf(" Device          : %-14s Transport type : RoCEv2 (softrdma), link %s\n", rdma->dev().name().c_str(),
                rdma->dev().describe_link().c_str());
    std::printf(" Number of qps   : %-14u Connection type: %s\n", o.qps, o.uc ? "UC" : "RC");
    if (mode == Mode::kLat) {
      std::printf(" TX depth        : %-14d Inline data    : %u[B]\n", 1, o.inline_max);
    } else {
      std::printf(" TX depth        : %-14u CQ Moderation  : %u\n", o.window, cq_mod);
      std::printf(" Post list       : %-14u Inline data    : %u[B]\n", o.post_list, o.inline_max);
    }
    std::printf(" Mtu             : %-14s Progress       : %s\n", (std::to_string(o.mtu) + "[B]").c_str(),
                o.busy_poll    ? "inline + busy-poll thread"
                : o.no_thread  ? "inline only (no progress thread)"
                : o.passive    ? "inline at client, thread at server"
                               : "inline (polling threads)");
    if (op == Op::kAtomic)
      std::printf(" Atomic type     : %s\n", o.atomic == AtomicKind::kCompSwap ? "CMP_AND_SWAP" : "FETCH_AND_ADD");
    if (!o.fault.empty()) std::printf(" Fault injection : %s\n", o.fault.c_str());
    if (o.duration > 0) std::printf(" Duration        : %.1f s per size\n", o.duration);
    std::printf("%s\n", kRule);
    std::printf(" local address:  %s\n", local.c_str());
    std::printf(" remote address: %s\n", remote.c_str());
  }
  if (mode == Mode::kLat) {
    if (op == Op::kSend || op == Op::kWrite || op == Op::kTcp)
      std::printf(" latency = half the ping-pong round trip (like ib_send_lat / ib_write_lat)\n");
    else
      std::printf(" latency = one full round trip, one operation outstanding (like ib_read_lat / ib_atomic_lat)\n");
  }
  if (o.tcp_baseline && op != Op::kTcp)
    std::printf(" TCP = the same size over the session's TCP connection (%s); ratio = RDMA / TCP\n",
                mode == Mode::kLat ? "ping-pong, both ends busy-poll" : "a stream of writes of that size");
  std::printf("%s\n", kRule);
  std::fflush(stdout);
}

void print_row_header(Mode mode, bool tcp) {
  switch (mode) {
    case Mode::kBw:
      std::printf(" %-10s %-13s %-19s %-12s %-14s", "#bytes", "#iterations", "BW average[MB/sec]", "BW[Gb/sec]",
                  "MsgRate[Mpps]");
      if (tcp) std::printf(" %-13s %-6s", "TCP[MB/sec]", "ratio");
      break;
    case Mode::kRate:
      std::printf(" %-10s %-13s %-14s %-19s %-12s", "#bytes", "#iterations", "MsgRate[Mpps]", "BW average[MB/sec]",
                  "BW[Gb/sec]");
      if (tcp) std::printf(" %-15s %-6s", "TCP[Mwrite/s]", "ratio");
      break;
    case Mode::kLat:
      std::printf(" %-8s %-12s %-12s %-15s %-12s %-12s %-14s %-12s", "#bytes", "#iterations", "t_min[usec]",
                  "t_median[usec]", "t_avg[usec]", "t_p99[usec]", "t_p99.9[usec]", "t_max[usec]");
      if (tcp) std::printf(" %-15s %-6s", "TCP_med[usec]", "ratio");
      break;
  }
  std::printf("\n");
  std::fflush(stdout);
}

void print_row(const Result& r, bool tcp) {
  switch (r.mode) {
    case Mode::kBw:
      std::printf(" %-10u %-13" PRIu64 " %-19.2f %-12.3f %-14.4f", r.size, r.iters, r.mbytes_per_s, r.gbits_per_s,
                  r.mpps);
      if (tcp) std::printf(" %-13.2f %-6.2f", r.tcp_ref, r.tcp_ref > 0 ? r.mbytes_per_s / r.tcp_ref : 0);
      break;
    case Mode::kRate:
      std::printf(" %-10u %-13" PRIu64 " %-14.4f %-19.2f %-12.3f", r.size, r.iters, r.mpps, r.mbytes_per_s,
                  r.gbits_per_s);
      if (tcp) std::printf(" %-15.4f %-6.2f", r.tcp_ref, r.tcp_ref > 0 ? r.mpps / r.tcp_ref : 0);
      break;
    case Mode::kLat:
      std::printf(" %-8u %-12" PRIu64 " %-12.2f %-15.2f %-12.2f %-12.2f %-14.2f %-12.2f", r.size, r.iters, r.lat.min,
                  r.lat.median, r.lat.avg, r.lat.p99, r.lat.p999, r.lat.max);
      if (tcp) std::printf(" %-15.2f %-6.2f", r.tcp_ref, r.tcp_ref > 0 ? r.lat.median / r.tcp_ref : 0);
      break;
  }
  std::printf("\n");
  if (r.uc_lost) std::printf("   (UC: %" PRIu64 " messages were not delivered; UC does not retransmit)\n", r.uc_lost);
  std::fflush(stdout);
}

void print_footer() {
  std::printf("%s\n", kRule);
  std::fflush(stdout);
}

bool write_csv(const std::string& path, const std::vector<Result>& rows, std::string* err) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) {
    *err = "cannot write " + path + ": " + strerror(errno);
    return false;
  }
  std::fprintf(f,
               "op,mode,bytes,iterations,seconds,MBps,Gbps,Mpps,lat_min_us,lat_median_us,lat_avg_us,lat_p99_us,"
               "lat_p999_us,lat_max_us,tcp_ref,tcp_p99_us\n");
  for (const Result& r : rows)
    std::fprintf(f, "%s,%s,%u,%" PRIu64 ",%.6f,%.3f,%.4f,%.5f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.4f,%.3f\n",
                 std::string(name(r.op)).c_str(), std::string(name(r.mode)).c_str(), r.size, r.iters, r.seconds,
                 r.mbytes_per_s, r.gbits_per_s, r.mpps, r.lat.min, r.lat.median, r.lat.avg, r.lat.p99, r.lat.p999,
                 r.lat.max, r.tcp_ref, r.tcp_p99);
  std::fclose(f);
  return true;
}

bool write_plot(const std::string& path, const std::vector<Result>& rows, std::string* msg) {
  const bool svg = path.size() > 4 && path.compare(path.size() - 4, 4, ".svg") == 0;
  const bool png = path.size() > 4 && path.compare(path.size() - 4, 4, ".png") == 0;
  if (!svg && !png) {
    *msg = "--plot: the file name must end in .svg or .png; no plot written";
    return false;
  }
  const std::string gnuplot = find_in_path("gnuplot");
  if (gnuplot.empty()) {
    *msg = "gnuplot not found: no plot written (apt-get install gnuplot-nox)";
    return false;
  }
  const Result& first = rows.front();
  const bool tcp = std::any_of(rows.begin(), rows.end(), [](const Result& r) { return r.tcp_ref > 0; });
  char script_path[] = "/tmp/softrdma-perf-plot-XXXXXX";
  int fd = mkstemp(script_path);
  if (fd < 0) {
    *msg = std::string("cannot create a gnuplot script: ") + strerror(errno);
    return false;
  }
  FILE* f = fdopen(fd, "w");
  if (svg)
    std::fprintf(f, "set terminal svg size 900,540 dynamic noenhanced background rgb 'white' font 'Helvetica,12'\n");
  else
    std::fprintf(f, "set terminal pngcairo size 900,540 noenhanced font 'Helvetica,11'\n");
  std::string out = path;
  for (char& c : out)
    if (c == '\'') c = '_';
  std::fprintf(f, "set output '%s'\n", out.c_str());
  std::fprintf(f, "set title 'softrdma perf: %s'\n", title(first.op, first.mode).c_str());
  std::fprintf(f, "set grid\nset key top left\nset xlabel 'message size [bytes]'\n");
  std::fprintf(f, "set offsets graph 0.04, graph 0.04, graph 0.05, 0\n");
  if (rows.size() > 1) {
    std::fprintf(f, "set logscale x 2\nset xtics (");
    for (size_t i = 0; i < rows.size(); ++i)
      std::fprintf(f, "%s'%s' %u", i ? ", " : "", human_size(rows[i].size).c_str(), rows[i].size);
    std::fprintf(f, ")\n");
  }
  std::fprintf(f, "$data << EOD\n");
  for (const Result& r : rows)
    std::fprintf(f, "%u %.4f %.4f %.5f %.3f %.3f %.4f %.3f\n", r.size, r.gbits_per_s, r.mbytes_per_s, r.mpps,
                 r.lat.median, r.lat.p99, r.tcp_ref, r.tcp_p99);
  std::fprintf(f, "EOD\n");
  const std::string label = "softrdma " + std::string(name(first.op)) + (first.op == Op::kTcp ? "" : " (RC)");
  switch (first.mode) {
    case Mode::kBw:
      std::fprintf(f, "set ylabel 'bandwidth [Gb/s]'\nset yrange [0:*]\n");
      std::fprintf(f, "plot $data using 1:2 with linespoints lw 2 pt 7 title '%s'", label.c_str());
      if (tcp) std::fprintf(f, ", $data using 1:($7*8/1000) with linespoints lw 2 pt 5 title 'TCP stream'");
      break;
    case Mode::kRate:
      std::fprintf(f, "set ylabel 'message rate [Mpps]'\nset yrange [0:*]\n");
      std::fprintf(f, "plot $data using 1:4 with linespoints lw 2 pt 7 title '%s'", label.c_str());
      if (tcp) std::fprintf(f, ", $data using 1:7 with linespoints lw 2 pt 5 title 'TCP writes'");
      break;
    case Mode::kLat:
      std::fprintf(f, "set ylabel 'latency [usec]'\nset logscale y\n");
      std::fprintf(f,
                   "plot $data using 1:5 with linespoints lw 2 pt 7 title '%s median', "
                   "$data using 1:6 with linespoints lw 1 pt 6 dt 2 title '%s p99'",
                   label.c_str(), label.c_str());
      if (tcp)
        std::fprintf(f,
                     ", $data using 1:7 with linespoints lw 2 pt 5 title 'TCP median', "
                     "$data using 1:8 with linespoints lw 1 pt 4 dt 2 title 'TCP p99'");
      break;
  }
  std::fprintf(f, "\n");
  std::fclose(f);

  pid_t pid = fork();
  if (pid == 0) {
    execl(gnuplot.c_str(), "gnuplot", script_path, static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  if (pid > 0) waitpid(pid, &status, 0);
  unlink(script_path);
  if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *msg = "gnuplot failed: no plot written to " + path;
    return false;
  }
  *msg = "plot written to " + path;
  return true;
}

}  // namespace softrdma::tools::perf
