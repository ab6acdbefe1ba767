// Sessions: the out-of-band conversation between a perf client and server.
//
//   server -> SOFTRDMA_PERF version (a banner, as soon as the connection is accepted)
//   client -> HELLO  version qps window rx half inline + its PeerInfo (gid addr rkey mtu qpn psn)
//   server -> PARAMS its PeerInfo (its QPs are already in RTS with receives posted)
//   then, per table row:
//   client -> TEST   op mode size seed limit passive [count]
//   server -> GO     crc (of the data a READ will fetch) atom (the atomic target's value)
//             ... the client measures; the server serves (perf_rdma.cc) or echoes TCP ...
//   client -> DONE
//   server -> RESULT recvs bytes crc atom
//   client -> BYE
// Either side may send ERROR why=... instead; the other prints it and ends.
//
// After each bandwidth / rate row the client checks the data: the bytes the server last
// received or had written equal what the client sent (and vice versa for READ), SENDs arrived
// exactly once each, and a fetch-and-add target moved by exactly the number of operations.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <thread>

#include "tools/perf/perf.h"
#include "wire/icrc.h"

namespace softrdma::tools::perf {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
constexpr int kVersion = 1;
constexpr seconds kReplyTimeout{15};
constexpr milliseconds kBannerTimeout{3000};
constexpr uint32_t kMaxQps = 256;

std::string join(const std::vector<uint32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

std::vector<uint32_t> split_u32(const std::string& s) {
  std::vector<uint32_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(static_cast<uint32_t>(std::strtoul(item.c_str(), nullptr, 0)));
  return out;
}

void put_info(Msg& m, const PeerInfo& p) {
  m.kv["gid"] = p.gid.str();
  m.kv["addr"] = std::to_string(p.addr);
  m.kv["half"] = std::to_string(p.half);
  m.kv["rkey"] = std::to_string(p.rkey);
  m.kv["mtu"] = std::to_string(p.mtu);
  m.kv["qpn"] = join(p.qpns);
  m.kv["psn"] = join(p.psns);
}

bool get_info(const Msg& m, PeerInfo* p, std::string* err) {
  auto gid = wire::IpAddr::parse(m.get("gid"));
  if (!gid) {
    *err = "the peer sent no valid GID";
    return false;
  }
  p->gid = *gid;
  p->addr = m.u64("addr");
  p->half = m.u64("half");
  p->rkey = static_cast<uint32_t>(m.u64("rkey"));
  p->mtu = static_cast<uint32_t>(m.u64("mtu", 4096));
  p->qpns = split_u32(m.get("qpn"));
  p->psns = split_u32(m.get("psn"));
  return true;
}

std::string gid_text(const wire::IpAddr& ip) { return ip.is_v4() ? "::ffff:" + ip.str() : ip.str(); }

std::string info_line(const PeerInfo& p, size_t qp) {
  char b[256];
  std::snprintf(b, sizeof b, "QPN 0x%06x PSN 0x%06x RKey 0x%08x VAddr 0x%016" PRIx64 " GID %s", p.qpns[qp],
                p.psns[qp], p.rkey, p.addr, gid_text(p.gid).c_str());
  return b;
}

// The data pattern of a test: the same on both sides for a given seed.
void fill(uint8_t* p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

uint32_t crc_of(const uint8_t* p, size_t n) { return ~wire::crc32_update(0xffffffffu, p, n); }

uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string wire_text(std::string s) {
  for (char& c : s)
    if (c == ' ' || c == '\n' || c == '=') c = '_';
  return s;
}

void send_error(Channel& ch, const std::string& why) {
  std::string ignored;
  ch.send(Msg{"ERROR", {{"why", wire_text(why)}}}, &ignored);
}

// ---- server ---------------------------------------------------------------------------------

int serve_session(Rdma& rdma, Channel& ch, bool quiet) {
  std::string err;
  Msg m;
  auto fail = [&](const std::string& why) {
    send_error(ch, why);
    if (!quiet) std::fprintf(stderr, "softrdma perf server: %s\n", why.c_str());
    return 1;
  };
  // A banner first, so a client that reached some other service on this port finds out at once.
  if (!ch.send(Msg{"SOFTRDMA_PERF", {{"version", std::to_string(kVersion)}}}, &err)) return fail(err);
  if (!ch.expect("HELLO", &m, kReplyTimeout, &err)) return fail(err);
  if (m.u64("version") != kVersion)
    return fail("client speaks protocol version " + m.get("version") + ", this server " + std::to_string(kVersion));
  const uint32_t qps = static_cast<uint32_t>(m.u64("qps", 1));
  const uint32_t window = static_cast<uint32_t>(m.u64("window", 128));
  const uint32_t rx = static_cast<uint32_t>(m.u64("rx", 256));
  const uint64_t half = m.u64("half", 4096);
  const uint32_t inl = static_cast<uint32_t>(m.u64("inline", 0));
  const bool uc = m.get("conn") == "UC";
  if (qps == 0 || qps > kMaxQps || window == 0 || window > 16384 || rx == 0 || rx > 16384 || half == 0 ||
      half > kMaxSize || inl > 512)
    return fail("unreasonable session parameters: " + m.str());
  PeerInfo peer;
  if (!get_info(m, &peer, &err)) return fail(err);
  if (!rdma.setup(qps, window, rx, half, inl, uc, &err) || !rdma.connect(peer, &err)) return fail(err);
  Msg params{"PARAMS", {}};
  put_info(params, rdma.local_info());
  if (!ch.send(params, &err)) return fail(err);
  if (!quiet)
    std::printf("session from %s: %u %s QP(s), window %u, client GID %s\n", ch.peer().c_str(), qps, uc ? "UC" : "RC",
                window, gid_text(peer.gid).c_str());

  for (;;) {
    if (!ch.recv(&m, milliseconds(-1), &err)) {
      if (!quiet) std::printf("session ended: %s\n", err.c_str());
      return 0;
    }
    if (m.verb == "BYE") {
      if (!quiet) std::printf("session ended\n");
      return 0;
    }
    if (m.verb == "ERROR") return 1;
    if (m.verb != "TEST") return fail("protocol error: unexpected '" + m.str() + "'");
    auto op = parse_op(m.get("op"));
    auto mode = parse_mode(m.get("mode"));
    const uint64_t size = m.u64("size");
    const uint64_t seed = m.u64("seed");
    const seconds limit{std::max<uint64_t>(10, m.u64("limit", 120))};
    if (!op || !mode || size == 0 || (*op != Op::kTcp && size > half))
      return fail("bad test request: " + m.str());

    if (*op == Op::kTcp) {
      if (!ch.send(Msg{"GO", {}}, &err)) return fail(err);
      if (!tcp_serve(ch, *mode, static_cast<uint32_t>(size), m.u64("count"), &err)) return fail(err);
      if (!ch.send(Msg{"RESULT", {}}, &err)) return fail(err);
      continue;
    }
    // Prepare the buffer: the pattern a READ fetches; a clean landing zone for WRITE ping-pong.
    fill(rdma.ptr(rdma.half()), size, seed);
    if (*op == Op::kWrite && *mode == Mode::kLat) std::memset(rdma.ptr(0), 0, size);
    Msg go{"GO", {}};
    go.kv["crc"] = std::to_string(crc_of(rdma.ptr(rdma.half()), size));
    go.kv["atom"] = std::to_string(load_u64(rdma.ptr(0)));
    if (!ch.send(go, &err)) return fail(err);

    Rdma::ServeStats st;
    Msg done;
    if (!rdma.serve(ch, *op, *mode, static_cast<uint32_t>(size), m.u64("passive") != 0, limit, &st, &done, &err))
      return fail(err);
    Msg res{"RESULT", {}};
    res.kv["recvs"] = std::to_string(st.recvs);
    res.kv["bytes"] = std::to_string(st.bytes);
    res.kv["echoes"] = std::to_string(st.echoes);
    res.kv["crc"] = std::to_string(crc_of(rdma.ptr(0), size));
    res.kv["atom"] = std::to_string(load_u64(rdma.ptr(0)));
    if (!ch.send(res, &err)) return fail(err);
  }
}

// ---- client ---------------------------------------------------------------------------------

struct Client {
  const Options& o;
  Channel& ch;
  Rdma& rdma;
  uint64_t seed = 0;
  std::string err;

  bool tcp(Mode mode, uint32_t size, uint64_t iters, Result* r) {
    const bool lat = mode == Mode::kLat;
    const uint64_t warm = lat ? warmup_iters(Mode::kLat, iters) : 0;
    const uint64_t count = lat ? iters + warm : iters * uint64_t{size};
    Msg test{"TEST", {{"op", "tcp"}, {"mode", std::string(name(mode))}, {"size", std::to_string(size)},
                      {"count", std::to_string(count)}, {"seed", "0"}}};
    Msg m;
    if (!ch.send(test, &err) || !ch.expect("GO", &m, kReplyTimeout, &err)) return false;
    bool ok = lat ? tcp_lat(ch, size, iters, warm, r, &err) : tcp_bw(ch, size, count, r, &err);
    return ok && ch.expect("RESULT", &m, kReplyTimeout, &err);
  }

  bool rdma_test(Op op, Mode mode, uint32_t size, Result* r) {
    const uint64_t iters = o.iters ? o.iters : default_iters(op, mode, size);
    const uint64_t limit = static_cast<uint64_t>(o.duration) + kTestLimit.count() + 60;
    ++seed;
    Msg test{"TEST",
             {{"op", std::string(name(op))},
              {"mode", std::string(name(mode))},
              {"size", std::to_string(size)},
              {"seed", std::to_string(seed)},
              {"limit", std::to_string(limit)},
              {"passive", o.passive ? "1" : "0"}}};
    Msg go, res;
    if (!ch.send(test, &err) || !ch.expect("GO", &go, kReplyTimeout, &err)) return false;
    fill(rdma.ptr(rdma.half()), size, seed);
    if (op == Op::kRead) std::memset(rdma.ptr(0), 0, size);
    bool ok = mode == Mode::kLat ? rdma.run_lat(o, op, size, iters, o.duration, r, &err)
                                 : rdma.run_bw(o, op, size, iters, o.duration, r, &err);
    if (!ok) {
      send_error(ch, "client failed: " + err);
      return false;
    }
    if (!ch.send(Msg{"DONE", {}}, &err) || !ch.expect("RESULT", &res, kReplyTimeout, &err)) return false;
    if (mode == Mode::kLat) return true;

    // The data check.
    const uint32_t sent_crc = crc_of(rdma.ptr(rdma.half()), size);
    char b[512] = "";
    switch (op) {
      case Op::kSend:
        if (o.uc) {
          if (res.u64("recvs") > r->all_ops)
            std::snprintf(b, sizeof b, "%" PRIu64 " UC SENDs sent but %" PRIu64 " received", r->all_ops,
                          res.u64("recvs"));
          else if (res.u64("recvs") < r->all_ops)
            r->uc_lost = r->all_ops - res.u64("recvs");
        } else if (res.u64("recvs") != r->all_ops)
          std::snprintf(b, sizeof b, "%" PRIu64 " SENDs completed at the client but %" PRIu64 " received",
                        r->all_ops, res.u64("recvs"));
        else if (res.u64("crc") != sent_crc)
          std::snprintf(b, sizeof b, "the last received message differs from what was sent");
        break;
      case Op::kWrite:
        if (res.u64("crc") != sent_crc) std::snprintf(b, sizeof b, "the written bytes differ at the target");
        break;
      case Op::kRead:
        if (crc_of(rdma.ptr(0), size) != go.u64("crc")) std::snprintf(b, sizeof b, "the read bytes differ from the source");
        break;
      default:
        if (o.atomic == AtomicKind::kFetchAdd && res.u64("atom") - go.u64("atom") != r->all_ops)
          std::snprintf(b, sizeof b, "the fetch-and-add target moved by %" PRIu64 " for %" PRIu64 " operations",
                        res.u64("atom") - go.u64("atom"), r->all_ops);
        break;
    }
    if (b[0]) {
      err = std::string("DATA ERROR (") + std::string(name(op)) + " " + std::to_string(size) + " B): " + b;
      return false;
    }
    return true;
  }
};

int client_session(const Options& o, const std::string& host, uint16_t port) {
  std::string err;
  auto ch = Channel::connect(host, port, std::chrono::seconds(3), &err);
  if (!ch) {
    std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
    return 1;
  }
  Msg banner;
  if (!ch->recv(&banner, kBannerTimeout, &err) || banner.verb != "SOFTRDMA_PERF") {
    std::fprintf(stderr,
                 "softrdma perf: connected to %s:%u, but no softrdma perf server answered within %lld s "
                 "(is another service listening on that port?)\n",
                 host.c_str(), port, static_cast<long long>(kBannerTimeout.count() / 1000));
    return 1;
  }
  auto rdma = Rdma::open(o, "perf-client", o.addr, &err);
  if (!rdma) {
    std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
    return 1;
  }
  uint32_t max_size = 8;
  for (uint32_t s : o.sizes) max_size = std::max(max_size, s);
  const size_t half = (std::max<size_t>(max_size, 4096) + 4095) & ~size_t{4095};
  const uint32_t rx = std::clamp<uint32_t>(2 * o.window, 256, 8192);
  const bool uses_rdma = o.op != Op::kTcp;
  if (!rdma->setup(o.qps, o.window, rx, half, o.inline_max, o.uc, &err)) {
    std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
    return 1;
  }
  Msg hello{"HELLO",
            {{"version", std::to_string(kVersion)},
             {"qps", std::to_string(o.qps)},
             {"window", std::to_string(o.window)},
             {"rx", std::to_string(rx)},
             {"inline", std::to_string(o.inline_max)},
             {"conn", o.uc ? "UC" : "RC"}}};
  put_info(hello, rdma->local_info());
  Msg params;
  PeerInfo peer;
  if (!ch->send(hello, &err) || !ch->expect("PARAMS", &params, kReplyTimeout, &err) || !get_info(params, &peer, &err) ||
      !rdma->connect(peer, &err)) {
    std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
    return 1;
  }

  const PeerInfo me = rdma->local_info();
  print_header(o, o.op, o.mode, info_line(me, 0), info_line(peer, 0), uses_rdma ? rdma.get() : nullptr);
  print_row_header(o.mode, o.tcp_baseline && uses_rdma);

  Client c{o, *ch, *rdma};
  std::vector<Result> rows;
  int rc = 0;
  for (uint32_t size : o.sizes) {
    Result r;
    r.op = o.op;
    r.mode = o.mode;
    r.size = o.op == Op::kAtomic ? 8 : size;
    bool ok;
    if (o.op == Op::kTcp) {
      const uint64_t iters = o.iters ? o.iters : default_iters(Op::kTcp, o.mode, size);
      ok = c.tcp(o.mode, size, iters, &r);
    } else {
      ok = c.rdma_test(o.op, o.mode, r.size, &r);
      if (ok && o.tcp_baseline) {
        Result t;
        const uint64_t iters = default_iters(Op::kTcp, o.mode, r.size);
        ok = c.tcp(o.mode, r.size, iters, &t);
        r.tcp_ref = o.mode == Mode::kLat ? t.lat.median : o.mode == Mode::kRate ? t.mpps : t.mbytes_per_s;
        r.tcp_p99 = t.lat.p99;
      }
    }
    if (!ok) {
      std::fflush(stdout);
      std::fprintf(stderr, "softrdma perf: %s\n", c.err.c_str());
      rc = 1;
      break;
    }
    print_row(r, o.tcp_baseline && uses_rdma);
    rows.push_back(r);
  }
  print_footer();
  if (rc == 0) {
    std::string ignored;
    ch->send(Msg{"BYE", {}}, &ignored);
  }
  if (!o.csv.empty() && !rows.empty()) {
    if (!write_csv(o.csv, rows, &err)) std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
  }
  if (!o.plot.empty() && !rows.empty()) {
    std::string msg;
    bool ok = write_plot(o.plot, rows, &msg);
    std::fprintf(ok ? stdout : stderr, "%s\n", msg.c_str());
  }
  if (o.verbose) std::printf("%s\n", rdma->describe_counters().c_str());
  return rc;
}

}  // namespace

int run_server(const Options& o) {
  std::string err;
  auto rdma = Rdma::open(o, "perf-server", o.addr, &err);
  if (!rdma) {
    std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
    return 1;
  }
  auto lst = Listener::open(o.addr ? *o.addr : std::string(), o.oob_port, &err);
  if (!lst) {
    std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
    return 1;
  }
  std::printf("softrdma perf server: RoCEv2 %s (GID %s), waiting for a client on %s:%u\n",
              rdma->dev().address().str().c_str(), gid_text(rdma->dev().gid()).c_str(),
              o.addr ? o.addr->c_str() : "*", lst->port());
  std::fflush(stdout);
  int rc = 0;
  do {
    auto ch = lst->accept(milliseconds(-1), &err);
    if (!ch) {
      std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
      return 1;
    }
    rc = serve_session(*rdma, *ch, false);
    std::fflush(stdout);
  } while (o.persist);
  return rc;
}

int run_client(const Options& o) { return client_session(o, o.client_host, o.oob_port); }

int run_local(const Options& o) {
  std::string err;
  auto lst = Listener::open("127.0.0.1", 0, &err);
  if (!lst) {
    std::fprintf(stderr, "softrdma perf: %s\n", err.c_str());
    return 1;
  }
  int server_rc = 0;
  std::thread server([&] {
    std::string e;
    auto ch = lst->accept(seconds(10), &e);
    if (!ch) {
      std::fprintf(stderr, "softrdma perf (local server): %s\n", e.c_str());
      server_rc = 1;
      return;
    }
    // The server's device takes its own automatic address (and the same fault spec).
    auto rdma = Rdma::open(o, "perf-server", std::nullopt, &e);
    if (!rdma) {
      send_error(*ch, e);
      server_rc = 1;
      return;
    }
    server_rc = serve_session(*rdma, *ch, true);
  });
  int rc = client_session(o, "127.0.0.1", lst->port());
  server.join();
  return rc != 0 ? rc : server_rc;
}

}  // namespace softrdma::tools::perf
