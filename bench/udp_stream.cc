// The ceiling under softrdma's UDP bandwidth: a stream of RoCEv2-sized UDP datagrams over
// loopback, sent and received the way the link does it and nothing else (no transport, no ICRC,
// no copy into registered memory). Independent of softrdma.
//
//   udp_stream [--seconds 2] [--message 1048576] [--mtu 4096] [--poll 1] [--addr 127.0.0.52]
//
// One process, two threads. The sender walks a --message-byte buffer in --mtu payloads; each
// frame is [28-byte header][payload][4-byte trailer], as a RoCEv2 RDMA WRITE packet with RETH
// (BTH, RETH, payload, ICRC), and up to 64 KiB of consecutive frames go out as one UDP GSO send
// whose iovec points at the header, the payload in the buffer and the trailer (the link's
// gather). The receiver has UDP_GRO on and takes whole coalesced receives into one 64 KiB buffer,
// busy-polling as the link's receiver does while a stream lasts (--poll 0: blocking receives).
// Output: "key value" lines: payload MB/s (10^6 bytes) that arrived, and each thread's CPU use.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "udp_util.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  double seconds = 2;
  size_t message = 1 << 20;
  size_t mtu = 4096;
  bool poll = true;
  std::string addr = "127.0.0.52";
};

constexpr size_t kHeader = 28, kTrailer = 4, kMaxUdpPayload = 65507, kMaxSegments = 64;

double thread_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--seconds") o.seconds = std::stod(v);
    else if (k == "--message") o.message = std::stoull(v);
    else if (k == "--mtu") o.mtu = std::stoull(v);
    else if (k == "--poll") o.poll = v != "0";
    else if (k == "--addr") o.addr = v;
    else {
      std::fprintf(stderr, "usage: udp_stream [--seconds S] [--message BYTES] [--mtu BYTES] [--poll 0|1] [--addr A]\n");
      return 2;
    }
  }
  const size_t frame = kHeader + o.mtu + kTrailer;
  if (o.mtu == 0 || o.message < o.mtu || 2 * frame > kMaxUdpPayload) {
    std::fprintf(stderr, "udp_stream: need 0 < --mtu <= --message and two frames in a UDP datagram\n");
    return 2;
  }
  sockaddr_in a{}, b{};
  int tx = -1, rx = -1;  // ephemeral ports on one address
  softrdma::bench::UdpSocketOptions so;
  so.big_buffers = true;
  if (int rc = softrdma::bench::open_udp_pair("udp_stream", o.addr, so, &tx, &a, &rx, &b)) return rc;
  timeval tv{0, 200000};  // a blocking receiver stops 0.2 s after the last datagram
  setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::atomic<bool> sending{true};

  std::atomic<bool> started{false};
  size_t received = 0;
  double rx_cpu = 0;
  Clock::time_point first{}, last{};
  std::thread receiver([&] {
    std::vector<unsigned char> buf(65536);
    const double c0 = thread_cpu_seconds();
    started = true;
    for (;;) {
      const ssize_t r = ::recv(rx, buf.data(), buf.size(), o.poll ? MSG_DONTWAIT : 0);
      if (r <= 0 && o.poll && (sending || Clock::now() - last < std::chrono::milliseconds(200))) continue;
      if (r <= 0) break;
      last = Clock::now();
      if (received == 0) first = last;
      received += size_t(r);
    }
    rx_cpu = thread_cpu_seconds() - c0;
  });
  while (!started) std::this_thread::yield();

  std::vector<unsigned char> message(o.message, 0x5a), header(kHeader * kMaxSegments, 0x11),
      trailer(kTrailer * kMaxSegments, 0x22);
  const size_t per_send = std::min(kMaxSegments, kMaxUdpPayload / frame);
  std::vector<iovec> iov(3 * per_send);
  softrdma::bench::GsoControl ctrl;
  msghdr h{};
  h.msg_name = &b;
  h.msg_namelen = sizeof b;
  h.msg_iov = iov.data();
  softrdma::bench::set_gso_segment(h, ctrl, static_cast<uint16_t>(frame));

  const double c0 = thread_cpu_seconds();
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  size_t off = 0, sent = 0;
  while (Clock::now() < end) {
    for (int burst = 0; burst < 16; ++burst) {
      size_t n = 0;
      for (; n < per_send && off + o.mtu <= o.message; ++n, off += o.mtu) {
        iov[3 * n] = {header.data() + kHeader * n, kHeader};
        iov[3 * n + 1] = {message.data() + off, o.mtu};
        iov[3 * n + 2] = {trailer.data() + kTrailer * n, kTrailer};
      }
      if (off + o.mtu > o.message) off = 0;  // the next message starts over the same buffer
      if (n == 0) continue;
      h.msg_iovlen = 3 * n;
      if (::sendmsg(tx, &h, 0) > 0) sent += n * o.mtu;
    }
  }
  const double tx_cpu = thread_cpu_seconds() - c0;
  sending = false;
  const double tx_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  receiver.join();
  const double rx_seconds = std::chrono::duration<double>(last - first).count();
  const size_t payload = received / frame * o.mtu;  // whole frames, headers not counted
  std::printf("udp_stream_mtu %zu\nudp_stream_message %zu\n", o.mtu, o.message);
  std::printf("udp_stream_sent_MBps %.0f\nudp_stream_MBps %.0f\n", double(sent) / tx_seconds / 1e6,
              rx_seconds > 0 ? double(payload) / rx_seconds / 1e6 : 0.0);
  std::printf("udp_stream_sender_cpu %.2f\nudp_stream_receiver_cpu %.2f\n", tx_cpu / tx_seconds,
              rx_seconds > 0 ? rx_cpu / rx_seconds : 0.0);
  ::close(tx);
  ::close(rx);
  return 0;
}
