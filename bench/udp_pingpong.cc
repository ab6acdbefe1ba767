// The floor under softrdma's UDP link: a ping-pong of plain UDP datagrams over loopback, with the
// socket options the link uses, busy-polled on both ends. Independent of softrdma.
//
//   udp_pingpong [--iters 20000] [--pair 0|1] [--batch 1] [--connect 0|1] [--plain 0|1] [--addr 127.0.0.50]
//
// One process, two threads (like tcp_pingpong). Each message is a 24-byte datagram (an 8-byte
// RoCEv2 SEND: BTH, payload, ICRC). --pair 1 sends a 20-byte second frame with it as one UDP GSO
// send, as the link sends a reply and the ACK it held for it. --batch N is the vlen of each
// recvmmsg (a call that asks for more than it finds tries once more before it returns); 0 means
// plain recvmsg, which the link uses when it asks for one datagram.
// --plain 1 sends with sendto and receives with recvfrom, GRO off (no message header, no control
// messages), as the link does for lone datagrams once the traffic shows it is a ping-pong.
// --connect 1 connects the sockets: cheaper in the kernel, but a connected socket gives
// datagrams an incrementing IPv4 ID, which the RoCEv2 ICRC covers (see udp_link.cc), so the link
// cannot. Latency is half the round trip; output: "key value" lines.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "udp_util.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  uint64_t iters = 20000;
  bool pair = false;
  unsigned batch = 1;
  bool connect = false;
  bool plain = false;
  std::string addr = "127.0.0.50";
};

constexpr size_t kFrame = 24, kSecond = 20, kSlot = 65536, kMaxBatch = 64;

// One end: sends to `to` and receives into its own buffers.
class End {
 public:
  End(int fd, const sockaddr_in& to, const Options& o) : fd_(fd), to_(to), o_(o), rx_(kMaxBatch * kSlot) {}

  bool send() {
    if (o_.plain && !o_.pair) {
      const sockaddr* to = o_.connect ? nullptr : reinterpret_cast<const sockaddr*>(&to_);
      return ::sendto(fd_, tx_, kFrame, 0, to, to ? sizeof to_ : 0) == static_cast<ssize_t>(kFrame);
    }
    iovec iov[2] = {{tx_, kFrame}, {tx_ + kFrame, kSecond}};
    msghdr h{};
    h.msg_iov = iov;
    h.msg_iovlen = o_.pair ? 2 : 1;
    if (!o_.connect) {
      h.msg_name = &to_;
      h.msg_namelen = sizeof to_;
    }
    softrdma::bench::GsoControl ctrl;
    if (o_.pair) softrdma::bench::set_gso_segment(h, ctrl, kFrame);
    return ::sendmsg(fd_, &h, 0) == static_cast<ssize_t>(kFrame + (o_.pair ? kSecond : 0));
  }

  // Spins until a datagram arrives.
  void receive() {
    if (o_.plain) {
      for (;;) {
        sockaddr_storage from;
        socklen_t fl = sizeof from;
        if (::recvfrom(fd_, rx_.data(), kSlot, MSG_DONTWAIT | MSG_TRUNC, reinterpret_cast<sockaddr*>(&from), &fl) > 0)
          return;
      }
    }
    mmsghdr m[kMaxBatch];
    iovec iov[kMaxBatch];
    sockaddr_storage from[kMaxBatch];
    alignas(cmsghdr) unsigned char ctrl[kMaxBatch][64];
    const unsigned n = std::max(o_.batch, 1u);  // batch 0: one message, by plain recvmsg
    for (;;) {
      for (unsigned i = 0; i < n; ++i) {
        iov[i] = {rx_.data() + i * kSlot, kSlot};
        m[i].msg_hdr = msghdr{};
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
        m[i].msg_hdr.msg_name = &from[i];
        m[i].msg_hdr.msg_namelen = sizeof from[i];
        m[i].msg_hdr.msg_control = ctrl[i];
        m[i].msg_hdr.msg_controllen = sizeof ctrl[i];
      }
      const bool got = o_.batch == 0 ? ::recvmsg(fd_, &m[0].msg_hdr, MSG_DONTWAIT | MSG_TRUNC) > 0
                                     : ::recvmmsg(fd_, m, o_.batch, MSG_DONTWAIT | MSG_TRUNC, nullptr) > 0;
      if (got) return;
    }
  }

 private:
  int fd_;
  sockaddr_in to_;
  const Options& o_;
  unsigned char tx_[kFrame + kSecond] = {};
  std::vector<unsigned char> rx_;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--iters") o.iters = std::stoull(v);
    else if (k == "--pair") o.pair = v != "0";
    else if (k == "--batch") o.batch = static_cast<unsigned>(std::clamp<unsigned long>(std::stoul(v), 0, kMaxBatch));
    else if (k == "--connect") o.connect = v != "0";
    else if (k == "--plain") o.plain = v != "0";
    else if (k == "--addr") o.addr = v;
    else {
      std::fprintf(stderr, "usage: udp_pingpong [--iters N] [--pair 0|1] [--batch N] [--connect 0|1] [--plain 0|1] [--addr A]\n");
      return 2;
    }
  }
  sockaddr_in a{}, b{};
  int fa = -1, fb = -1;  // ephemeral ports on one address
  softrdma::bench::UdpSocketOptions so;
  so.gro = !o.plain;
  so.nonblocking = true;
  so.pktinfo = true;
  if (int rc = softrdma::bench::open_udp_pair("udp_pingpong", o.addr, so, &fa, &a, &fb, &b)) return rc;
  if (o.connect && (::connect(fa, reinterpret_cast<sockaddr*>(&b), sizeof b) != 0 ||
                    ::connect(fb, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)) {
    std::perror("udp_pingpong: connect");
    return 1;
  }
  const uint64_t warm = std::min<uint64_t>(o.iters / 10 + 1, 1000), total = o.iters + warm;
  std::thread echo([&] {
    End e(fb, a, o);
    for (uint64_t i = 0; i < total; ++i) {
      e.receive();
      e.send();
    }
  });
  End me(fa, b, o);
  std::vector<double> s;
  s.reserve(o.iters);
  for (uint64_t i = 0; i < total; ++i) {
    const auto t0 = Clock::now();
    if (!me.send()) {
      std::perror("udp_pingpong: send");
      std::_Exit(1);  // the echo thread waits for pings that will not come
    }
    me.receive();
    const auto t1 = Clock::now();
    if (i >= warm) s.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / 2);
  }
  echo.join();
  std::sort(s.begin(), s.end());
  auto q = [&](double f) { return s[std::min(s.size() - 1, static_cast<size_t>(f * static_cast<double>(s.size())))]; };
  std::printf("udp_lat_pair %d\nudp_lat_batch %u\nudp_lat_connect %d\nudp_lat_plain %d\n", o.pair ? 1 : 0, o.batch,
              o.connect ? 1 : 0, o.plain ? 1 : 0);
  std::printf("udp_lat_min_us %.2f\nudp_lat_median_us %.2f\nudp_lat_p99_us %.2f\n", s.front(), q(0.5), q(0.99));
  ::close(fa);
  ::close(fb);
  return 0;
}
