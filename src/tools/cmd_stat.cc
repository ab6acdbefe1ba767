// `softrdma stat`: the live counters of every softrdma device open on this machine, read from
// /dev/shm (device/stats.h) without disturbing the processes that own them.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "device/stats.h"
#include "tools/commands.h"
#include "tools/table.h"
#include "transport/qp.h"

namespace softrdma::tools {

namespace {

using transport::DeviceCounters;
using transport::QpCounters;
using transport::QpStatsSlot;

struct StatOptions {
  std::string name;
  double watch = 0;  // seconds between refreshes; 0 = print once
  uint64_t count = 0;  // refreshes with --watch; 0 = until Ctrl-C
  bool all = false;
};

std::atomic<bool> g_stop{false};
void on_sigint(int) { g_stop.store(true); }

constexpr size_t kDevN = std::size(DeviceCounters::kNames);
constexpr size_t kQpN = std::size(QpCounters::kNames);

std::string rate(double per_s) { return fixed(per_s, per_s < 100 ? 1 : 0); }

std::string qp_type(uint8_t t) { return std::string(transport::name(static_cast<transport::QpType>(t))); }
std::string qp_state(uint8_t s) { return std::string(transport::name(static_cast<transport::QpState>(s))); }

// One device: its counters (nonzero unless --all), then one row per QP. With prev (watch mode)
// the device table adds the change and the rate, and QP cells are rates per second.
void print_device(const StatsSnapshot& s, const StatsSnapshot* prev, double secs, const StatOptions& o) {
  std::printf("%s  pid %u  %s  %s\n", s.name.c_str(), s.pid, s.address.c_str(), s.link.c_str());
  std::vector<std::string> hdr = {"counter", "value"};
  if (prev) hdr.insert(hdr.end(), {"change", "per s"});
  hdr.push_back("meaning");
  Table dt(hdr);
  dt.set_align(hdr.size() - 1, Table::Align::kLeft);
  for (size_t i = 0; i < kDevN; ++i) {
    uint64_t v = s.device.values()[i];
    if (!o.all && v == 0) continue;
    std::vector<std::string> row = {std::string(DeviceCounters::kNames[i].name), std::to_string(v)};
    if (prev) {
      uint64_t d = v - prev->device.values()[i];
      row.insert(row.end(), {fmt::format("+{}", d), rate(double(d) / secs)});
    }
    row.emplace_back(DeviceCounters::kNames[i].description);
    dt.add_row(std::move(row));
  }
  if (dt.empty())
    std::printf("  (all device counters are zero)\n");
  else
    dt.print(stdout, "  ");

  std::map<uint32_t, const QpStatsSlot*> before;
  if (prev)
    for (const auto& q : prev->qps) before[q.qpn] = &q;
  auto delta = [&](const QpStatsSlot& q, size_t i) -> uint64_t {
    auto it = before.find(q.qpn);
    uint64_t old = it == before.end() ? 0 : it->second->counters.values()[i];
    return q.counters.values()[i] - old;
  };
  std::vector<size_t> cols;  // counters shown: nonzero (or changed, when watching) in some QP
  for (size_t i = 0; i < kQpN; ++i)
    for (const auto& q : s.qps)
      if (o.all || (prev ? delta(q, i) : q.counters.values()[i]) != 0) {
        cols.push_back(i);
        break;
      }
  if (s.qps.empty()) {
    std::printf("  no QPs\n\n");
    return;
  }
  std::vector<std::string> qh = {"qpn", "type", "state"};
  for (size_t i : cols) qh.push_back(std::string(QpCounters::kNames[i].name) + (prev ? "/s" : ""));
  Table qt(qh);
  qt.set_align(1, Table::Align::kLeft);
  qt.set_align(2, Table::Align::kLeft);
  for (const auto& q : s.qps) {
    std::vector<std::string> row = {std::to_string(q.qpn), qp_type(q.type), qp_state(q.state)};
    for (size_t i : cols)
      row.push_back(prev ? rate(double(delta(q, i)) / secs) : std::to_string(q.counters.values()[i]));
    qt.add_row(std::move(row));
  }
  std::printf("\n");
  qt.print(stdout, "  ");
  if (!prev && !cols.empty()) {
    std::printf("\n");
    for (size_t i : cols)
      std::printf("  %-20s %s\n", std::string(QpCounters::kNames[i].name).c_str(),
                  std::string(QpCounters::kNames[i].description).c_str());
  }
  std::printf("\n");
}

bool print_all(const std::vector<StatsSnapshot>& now, const std::vector<StatsSnapshot>* prev, double secs,
               const StatOptions& o) {
  if (now.empty()) {
    std::printf("No softrdma device%s is open (an open device publishes its counters in /dev/shm/softrdma-*).\n",
                o.name.empty() ? "" : (" named " + o.name).c_str());
    return false;
  }
  for (const auto& s : now) {
    const StatsSnapshot* p = nullptr;
    if (prev)
      for (const auto& old : *prev)
        if (old.path == s.path) p = &old;
    if (prev && !p) std::printf("(new) ");
    print_device(s, p, secs, o);
  }
  std::fflush(stdout);
  return true;
}

int run_stat(const StatOptions& o) {
  auto snap = read_all_stats(o.name);
  bool found = print_all(snap, nullptr, 0, o);
  if (o.watch <= 0) return found || o.name.empty() ? 0 : 1;
  g_stop.store(false);
  struct sigaction sa {}, old {};
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, &old);
  auto last = std::chrono::steady_clock::now();
  for (uint64_t n = 0; (o.count == 0 || n < o.count) && !g_stop.load(); ++n) {
    auto until = last + std::chrono::duration<double>(o.watch);
    while (std::chrono::steady_clock::now() < until && !g_stop.load())
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (g_stop.load()) break;
    auto now = std::chrono::steady_clock::now();
    double secs = std::chrono::duration<double>(now - last).count();
    last = now;
    auto cur = read_all_stats(o.name);
    std::printf("--- after %.1f s: changes, and rates per second ---\n", secs);
    print_all(cur, &snap, secs, o);
    snap = std::move(cur);
  }
  sigaction(SIGINT, &old, nullptr);
  return 0;
}

}  // namespace

void add_stat_command(CLI::App& app) {
  auto opt = std::make_shared<StatOptions>();
  CLI::App* cmd = app.add_subcommand(
      "stat", "Counters of every softrdma device open on this machine, per device and per QP");
  cmd->add_option("--name", opt->name, "only the device(s) with this name");
  cmd->add_option("--watch", opt->watch, "refresh every SECONDS, showing changes and rates per second")
      ->check(CLI::Range(0.05, 3600.0));
  cmd->add_option("--count", opt->count, "with --watch: stop after N refreshes (default: at Ctrl-C)");
  cmd->add_flag("--all", opt->all, "also show counters that are zero");
  cmd->callback([opt] {
    if (int rc = run_stat(*opt)) throw CLI::RuntimeError(rc);
  });
}

}  // namespace softrdma::tools
