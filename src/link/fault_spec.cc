// Text form of FaultConfig, for the command line and environment variables.
#include <charconv>
#include <cmath>
#include <cstdio>

#include "link/fault_link.h"

namespace softrdma::link {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool parse_double(std::string_view s, double* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(*out);
}

bool parse_prob(std::string_view s, double* out) {
  double scale = 1;
  if (!s.empty() && s.back() == '%') {
    s.remove_suffix(1);
    scale = 100;
  }
  if (!parse_double(s, out)) return false;
  *out /= scale;
  return *out >= 0 && *out <= 1;
}

bool parse_duration(std::string_view s, uint64_t* out) {
  struct Unit {
    const char* name;
    double ns;
  };
  static constexpr Unit kUnits[] = {{"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}};
  for (const Unit& u : kUnits) {  // "ns"/"us"/"ms" are checked before the bare "s"
    const std::string_view name(u.name);
    if (s.size() > name.size() && s.substr(s.size() - name.size()) == name) {
      double v;
      if (!parse_double(s.substr(0, s.size() - name.size()), &v) || v < 0 || v * u.ns > 1e18)
        return false;
      *out = static_cast<uint64_t>(std::llround(v * u.ns));
      return true;
    }
  }
  double v;
  if (!parse_double(s, &v) || v != 0) return false;  // a bare number must be 0
  *out = 0;
  return true;
}

template <class T>
bool parse_uint(std::string_view s, T* out) {
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s.remove_prefix(2);
    base = 16;
  }
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string format_duration(uint64_t ns) {
  if (ns == 0) return "0";
  if (ns % 1'000'000'000 == 0) return std::to_string(ns / 1'000'000'000) + "s";
  if (ns % 1'000'000 == 0) return std::to_string(ns / 1'000'000) + "ms";
  if (ns % 1'000 == 0) return std::to_string(ns / 1'000) + "us";
  return std::to_string(ns) + "ns";
}

std::string format_prob(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", p);
  // Prefer the short form when it reads back as the same value.
  char shortbuf[32];
  std::snprintf(shortbuf, sizeof shortbuf, "%g", p);
  double back = 0;
  return parse_double(shortbuf, &back) && back == p ? shortbuf : buf;
}

}  // namespace

std::optional<FaultConfig> parse_fault_spec(std::string_view spec, std::string* err) {
  FaultConfig cfg;
  auto fail = [err](std::string_view item, const char* why) -> std::optional<FaultConfig> {
    if (err) *err = "fault spec item '" + std::string(item) + "': " + why;
    return std::nullopt;
  };
  while (!spec.empty()) {
    const size_t comma = spec.find(',');
    const std::string_view item = trim(spec.substr(0, comma));
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) return fail(item, "expected key=value");
    const std::string_view key = trim(item.substr(0, eq)), val = trim(item.substr(eq + 1));
    bool ok;
    if (key == "loss") {
      ok = parse_prob(val, &cfg.loss);
    } else if (key == "dup" || key == "duplicate") {
      ok = parse_prob(val, &cfg.duplicate);
    } else if (key == "reorder") {
      ok = parse_prob(val, &cfg.reorder);
    } else if (key == "corrupt") {
      ok = parse_prob(val, &cfg.corrupt);
    } else if (key == "delay") {
      ok = parse_duration(val, &cfg.delay_ns);
    } else if (key == "jitter") {
      ok = parse_duration(val, &cfg.jitter_ns);
    } else if (key == "hold") {
      ok = parse_duration(val, &cfg.reorder_max_hold_ns);
    } else if (key == "seed") {
      ok = parse_uint(val, &cfg.seed);
    } else if (key == "depth" || key == "reorder_depth") {
      ok = parse_uint(val, &cfg.reorder_depth);
    } else if (key == "slots") {
      ok = parse_uint(val, &cfg.pool_slots) && cfg.pool_slots > 0;
    } else {
      return fail(item, "unknown key (loss, dup, reorder, corrupt, delay, jitter, hold, seed, "
                        "depth, slots)");
    }
    if (!ok) {
      const bool dur = key == "delay" || key == "jitter" || key == "hold";
      const bool num = key == "seed" || key == "depth" || key == "reorder_depth" || key == "slots";
      return fail(item, dur   ? "expected a duration such as 200us (units ns, us, ms, s)"
                        : num ? "expected an unsigned integer"
                              : "expected a probability in [0, 1] or a percentage");
    }
  }
  return cfg;
}

std::string format_fault_spec(const FaultConfig& cfg) {
  const FaultConfig def;
  std::string s;
  auto add = [&s](const char* k, const std::string& v) {
    if (!s.empty()) s += ',';
    s += k;
    s += '=';
    s += v;
  };
  if (cfg.loss != 0) add("loss", format_prob(cfg.loss));
  if (cfg.duplicate != 0) add("dup", format_prob(cfg.duplicate));
  if (cfg.reorder != 0) add("reorder", format_prob(cfg.reorder));
  if (cfg.corrupt != 0) add("corrupt", format_prob(cfg.corrupt));
  if (cfg.delay_ns != 0) add("delay", format_duration(cfg.delay_ns));
  if (cfg.jitter_ns != 0) add("jitter", format_duration(cfg.jitter_ns));
  if (cfg.reorder_depth != def.reorder_depth) add("depth", std::to_string(cfg.reorder_depth));
  if (cfg.reorder_max_hold_ns != def.reorder_max_hold_ns)
    add("hold", format_duration(cfg.reorder_max_hold_ns));
  if (cfg.pool_slots != def.pool_slots) add("slots", std::to_string(cfg.pool_slots));
  add("seed", std::to_string(cfg.seed));
  return s;
}

}  // namespace softrdma::link
