#include "tools/demo_remote.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "tools/side.h"
#include "tools/table.h"

namespace softrdma::tools {

namespace {

constexpr uint32_t kRecvs = 16;  // server receive slots
constexpr int kTcpTimeoutMs = 60'000;

// What each side tells the other over TCP (both run on this host: native byte order).
struct WireInfo {
  uint8_t gid[16];
  uint32_t qpn, rkey;
  uint64_t addr, length;  // server: the region the client WRITEs and READs
  uint64_t atom_addr;     // server: the 8-byte FETCH_ADD target
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { if (fd_ >= 0) ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void wait_fd(int fd, short events, const char* what) {
  pollfd p{fd, events, 0};
  int r = ::poll(&p, 1, kTcpTimeoutMs);
  if (r <= 0) throw ToolError(fmt::format("TCP {}: {}", what, r == 0 ? "timed out" : std::strerror(errno)));
}

void read_all(int fd, void* p, size_t n) {
  for (size_t got = 0; got < n;) {
    wait_fd(fd, POLLIN, "read");
    ssize_t r = ::read(fd, static_cast<uint8_t*>(p) + got, n - got);
    if (r <= 0) throw ToolError("TCP read: the peer closed the connection");
    got += size_t(r);
  }
}

void write_all(int fd, const void* p, size_t n) {
  if (::send(fd, p, n, MSG_NOSIGNAL) != ssize_t(n)) throw ToolError(fmt::format("TCP write: {}", std::strerror(errno)));
}

WireInfo exchange(int fd, const WireInfo& mine) {
  write_all(fd, &mine, sizeof mine);
  WireInfo peer;
  read_all(fd, &peer, sizeof peer);
  return peer;
}

PeerInfo to_peer(const WireInfo& w) {
  PeerInfo p;
  std::memcpy(p.gid.bytes.data(), w.gid, 16);
  p.qpn = w.qpn;
  p.rkey = w.rkey;
  p.addr = w.addr;
  p.length = w.length;
  return p;
}

WireInfo from_side(const Side& s, uint64_t addr, uint64_t length, uint64_t atom) {
  WireInfo w{};
  std::memcpy(w.gid, s.dev->gid().bytes.data(), 16);
  w.qpn = s.qp->qpn();
  w.rkey = s.mr->rkey;
  w.addr = addr;
  w.length = length;
  w.atom_addr = atom;
  return w;
}

Side open_side(const RemoteDemoOptions& o, size_t buf) {
  std::string err;
  DeviceConfig cfg = DeviceConfig::from_env(&err);
  if (!err.empty()) throw ToolError(err);
  if (!o.addr.empty()) cfg.address = wire::IpAddr::parse(o.addr);
  if (!o.addr.empty() && !cfg.address) throw ToolError("not an IP address: " + o.addr);
  if (o.mtu) cfg.mtu = o.mtu;
  SideOptions so;
  so.buf_size = buf;
  return Side(cfg, so);
}

void serve(const RemoteDemoOptions& o, size_t slot) {
  Side s = open_side(o, (kRecvs + 1) * slot + 8);
  Fd lfd(::socket(s.dev->gid().is_v4() ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  socklen_t len = wire::Endpoint{s.dev->gid(), o.listen_port}.to_sockaddr(ss);
  if (lfd.get() < 0 || ::bind(lfd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(lfd.get(), 1) != 0 ||
      ::getsockname(lfd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0)
    throw ToolError(fmt::format("TCP listen: {}", std::strerror(errno)));
  auto bound = wire::Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
  std::printf("listening on %s (RoCEv2 device %s at %s, QP %u)\n", bound->str().c_str(), s.dev->name().c_str(),
              s.dev->address().str().c_str(), s.qp->qpn());
  std::fflush(stdout);
  wait_fd(lfd.get(), POLLIN, "accept");
  Fd cfd(::accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (cfd.get() < 0) throw ToolError(fmt::format("TCP accept: {}", std::strerror(errno)));
  uint64_t& counter = *reinterpret_cast<uint64_t*>(s.data((kRecvs + 1) * slot));
  counter = 0;
  s.connect(to_peer(exchange(cfd.get(), from_side(s, s.addr(kRecvs * slot), slot, s.addr((kRecvs + 1) * slot)))));
  for (uint32_t r = 0; r < kRecvs; ++r) s.post_recv(r, r * slot, uint32_t(slot));
  uint64_t echoed = 0;
  Wc wc[16];
  auto next_check = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0, n = s.poll(s.rcq, wc, 16); i < n; ++i, ++echoed) {
      Sge sg = s.sge(wc[i].wr_id * slot, wc[i].byte_len);
      SendWr wr;
      wr.wr_id = wc[i].wr_id;
      wr.flags = kSignaled;
      wr.sg_list = &sg;
      wr.num_sge = 1;
      s.post_send(wr);
    }
    for (int i = 0, n = s.poll(s.scq, wc, 16); i < n; ++i) s.post_recv(wc[i].wr_id, wc[i].wr_id * slot, uint32_t(slot));
    if (std::chrono::steady_clock::now() < next_check) continue;
    next_check += std::chrono::milliseconds(1);
    pollfd p{cfd.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) == 1) break;
  }
  uint64_t expected = 0;
  read_all(cfd.get(), &expected, sizeof expected);
  uint64_t seen = counter;
  write_all(cfd.get(), &seen, sizeof seen);
  if (seen != expected) throw ToolError(fmt::format("counter is {}, the client expected {}", seen, expected));
  std::printf("server: echoed %lu messages; counter %lu as the client expected\n", static_cast<unsigned long>(echoed),
              static_cast<unsigned long>(seen));
}

void run_client(const RemoteDemoOptions& o, size_t slot) {
  Side c = open_side(o, 3 * slot + 8);
  auto colon = o.connect.rfind(':');
  std::string host = o.connect.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  auto ip = wire::IpAddr::parse(host);
  if (colon == std::string::npos || !ip) throw ToolError("--connect needs ADDR:PORT, got " + o.connect);
  Fd fd(::socket(ip->is_v4() ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  socklen_t len = wire::Endpoint{*ip, uint16_t(std::stoi(o.connect.substr(colon + 1)))}.to_sockaddr(ss);
  if (fd.get() < 0 || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    throw ToolError(fmt::format("TCP connect to {}: {}", o.connect, std::strerror(errno)));
  WireInfo srv = exchange(fd.get(), from_side(c, 0, 0, 0));
  if (srv.length < slot) throw ToolError("the server's buffers are smaller than --size");
  c.connect(to_peer(srv));
  std::printf("client: %s at %s, QP %u <-> server QP %u at %s\n", c.dev->name().c_str(), c.dev->address().str().c_str(),
              c.qp->qpn(), srv.qpn, to_peer(srv).gid.str().c_str());

  Table t({"operation", "bytes", "iters", "lat typ us", "lat p99 us", "latency is"});
  t.set_align(5, Table::Align::kLeft);
  auto add = [&](const char* op, uint32_t bytes, std::vector<double> ns, const char* how) {
    LatencySummary l = summarize(std::move(ns));
    t.add_row({op, std::to_string(bytes), std::to_string(o.iters), fixed(l.median_us, 1), fixed(l.p99_us, 1), how});
  };
  uint8_t *out = c.data(0), *in = c.data(slot);
  uint64_t& result = *reinterpret_cast<uint64_t*>(c.data(2 * slot));
  uint64_t checked = 0;
  constexpr uint64_t kWriteTag = 1ull << 63, kReadTag = 1ull << 62;
  auto wait_send = [&](uint64_t id) {  // skips the completions of the signaled SENDs
    while (c.wait(c.scq).wr_id != id) {
    }
  };
  for (uint32_t bytes : o.sizes) {
    std::vector<double> send_ns, write_ns, read_ns;
    fill_pattern(out, bytes, bytes);
    for (uint64_t k = 0; k < o.iters; ++k, checked += 3) {
      std::memcpy(out, &k, std::min<size_t>(8, bytes));
      std::memset(in, 0, bytes);
      c.post_recv(k, slot, bytes);
      SendWr wr;
      Sge sg = c.sge(0, bytes);
      wr.wr_id = k;
      wr.sg_list = &sg;
      wr.num_sge = 1;
      wr.flags = k % 16 == 15 ? uint32_t{kSignaled} : 0u;
      auto t0 = std::chrono::steady_clock::now();
      c.post_send(wr);
      Wc rwc = c.wait(c.rcq);
      send_ns.push_back(elapsed_ns(t0) / 2);
      if (rwc.byte_len != bytes) throw ToolError(fmt::format("SEND echo {}: {} bytes came back", k, rwc.byte_len));
      check_bytes(in, out, bytes, fmt::format("SEND echo {} of {} bytes", k, bytes));
      out[bytes - 1] ^= 0xff;  // the WRITE differs from the echo just received
      wr.opcode = WrOpcode::kRdmaWrite;
      wr.wr_id = k | kWriteTag;
      wr.flags = kSignaled;
      wr.rdma = {srv.addr, srv.rkey};
      t0 = std::chrono::steady_clock::now();
      c.post_send(wr);
      wait_send(k | kWriteTag);
      write_ns.push_back(elapsed_ns(t0));
      std::memset(in, 0, bytes);
      wr.opcode = WrOpcode::kRdmaRead;
      wr.wr_id = k | kReadTag;
      sg = c.sge(slot, bytes);
      t0 = std::chrono::steady_clock::now();
      c.post_send(wr);
      wait_send(k | kReadTag);
      read_ns.push_back(elapsed_ns(t0));
      check_bytes(in, out, bytes, fmt::format("WRITE {} of {} bytes, read back", k, bytes));
    }
    add("SEND (echo)", bytes, send_ns, "half round trip");
    add("WRITE", bytes, write_ns, "post to completion");
    add("READ", bytes, read_ns, "post to completion");
  }
  std::vector<double> fa_ns;
  for (uint64_t k = 0; k < o.iters; ++k, ++checked) {
    SendWr wr;
    Sge sg = c.sge(2 * slot, 8);
    wr.opcode = WrOpcode::kFetchAdd;
    wr.flags = kSignaled;
    wr.sg_list = &sg;
    wr.num_sge = 1;
    wr.wr_id = k | kWriteTag | kReadTag;
    wr.atomic = {srv.atom_addr, 1, 0, srv.rkey};
    auto t0 = std::chrono::steady_clock::now();
    c.post_send(wr);
    wait_send(wr.wr_id);
    fa_ns.push_back(elapsed_ns(t0));
    if (result != k) throw ToolError(fmt::format("FETCH_ADD {} returned {}", k, result));
  }
  add("FETCH_ADD", 8, fa_ns, "post to completion");
  uint64_t expected = o.iters, seen = 0;
  write_all(fd.get(), &expected, sizeof expected);
  read_all(fd.get(), &seen, sizeof seen);
  if (seen != expected) throw ToolError(fmt::format("the server's counter is {}, expected {}", seen, expected));
  t.print();
  std::string recovery;
  for (const auto& q : c.dev->qp_counters())
    for (size_t i = 4; i < std::size(transport::QpCounters::kNames); ++i)  // past the traffic counters
      if (uint64_t v = q.counters.values()[i]; v && !transport::QpCounters::kNames[i].name.starts_with("acks"))
        recovery += fmt::format(" {}={}", transport::QpCounters::kNames[i].name, v);
  if (!recovery.empty()) std::printf("client QP counters:%s\n", recovery.c_str());
  std::printf("client: OK, %lu operations checked across processes\n", static_cast<unsigned long>(checked));
}

}  // namespace

void add_remote_demo_options(CLI::App& demo, RemoteDemoOptions& opt) {
  demo.add_option("--role", opt.role, "server or client: the demo across two processes")
      ->check(CLI::IsMember({"server", "client"}))
      ->group("");
  demo.add_option("--connect", opt.connect, "client: the ADDR:PORT the server printed")->group("");
  demo.add_option("--listen-port", opt.listen_port, "server: TCP port for the setup (default any)")->group("");
}

void run_remote_demo(const RemoteDemoOptions& o) {
  uint32_t max_size = *std::max_element(o.sizes.begin(), o.sizes.end());
  size_t slot = (size_t{max_size} + 63) / 64 * 64;
  if (o.role == "server") {
    serve(o, slot);
  } else {
    if (o.connect.empty()) throw ToolError("--role client needs --connect ADDR:PORT");
    run_client(o, slot);
  }
}

}  // namespace softrdma::tools
