// TCP baseline over loopback, independent of softrdma: ping-pong latency and stream bandwidth.
//
//   tcp_pingpong [--size 8] [--iters 20000] [--stream 4096,65536] [--bytes 1073741824] [--addr 127.0.0.1]
//
// One process, two threads (like `softrdma perf --local`): the server thread echoes pings and
// sinks the stream. Latency is half the round trip (the same definition as the RDMA SEND
// ping-pong); TCP_NODELAY is set on both ends. The ping-pong runs twice: with blocking reads
// (the usual TCP program: every message wakes a sleeping thread) and busy-polled (non-blocking
// reads in a loop on both ends, the discipline of softrdma's polling). Output: one "key value"
// line per figure.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

bool write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::send(fd, c, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool read_all(int fd, void* p, size_t n, bool spin = false) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::recv(fd, c, n, spin ? MSG_DONTWAIT : 0);
    if (r < 0 && spin && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

struct Job {
  char kind;  // 'P' ping-pong (blocking), 'B' ping-pong (busy-polled), 'S' stream
  uint32_t size;
  uint64_t count;  // pings, or stream bytes
};

// Server: for each job header, echo `count` pings of `size` or sink `count` bytes then ack.
void serve(int lfd) {
  int fd = ::accept(lfd, nullptr, nullptr);
  if (fd < 0) return;
  nodelay(fd);
  std::vector<char> buf(1 << 20);
  Job j;
  while (read_all(fd, &j, sizeof j)) {
    if (j.kind == 'P' || j.kind == 'B') {
      for (uint64_t i = 0; i < j.count; ++i)
        if (!read_all(fd, buf.data(), j.size, j.kind == 'B') || !write_all(fd, buf.data(), j.size)) return;
    } else {
      for (uint64_t left = j.count; left > 0;) {
        size_t n = std::min<uint64_t>(left, buf.size());
        if (!read_all(fd, buf.data(), n)) return;
        left -= n;
      }
      char ack = 'A';
      if (!write_all(fd, &ack, 1)) return;
    }
  }
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t size = 8;
  uint64_t iters = 20000;
  uint64_t bytes = 1ull << 30;
  std::string addr = "127.0.0.1";
  std::vector<uint32_t> stream = {4096, 65536};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--size") size = static_cast<uint32_t>(std::stoul(v));
    else if (k == "--iters") iters = std::stoull(v);
    else if (k == "--bytes") bytes = std::stoull(v);
    else if (k == "--addr") addr = v;
    else if (k == "--stream") {
      stream.clear();
      size_t pos = 0;
      while (pos <= v.size()) {
        size_t c = v.find(',', pos);
        if (c == std::string::npos) c = v.size();
        if (c > pos) stream.push_back(static_cast<uint32_t>(std::stoul(v.substr(pos, c - pos))));
        pos = c + 1;
      }
    } else {
      std::fprintf(stderr, "usage: tcp_pingpong [--size B] [--iters N] [--stream S1,S2] [--bytes N] [--addr A]\n");
      return 2;
    }
  }

  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = 0;
  if (inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1 || ::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) ||
      ::listen(lfd, 1)) {
    std::perror("tcp_pingpong: listen");
    return 1;
  }
  socklen_t sl = sizeof sa;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &sl);
  std::thread server(serve, lfd);

  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    std::perror("tcp_pingpong: connect");
    return 1;
  }
  nodelay(fd);

  // Ping-pong, blocking then busy-polled.
  const uint64_t warm = std::min<uint64_t>(iters / 10 + 1, 1000);
  std::vector<char> buf(std::max<size_t>(size, 1 << 20), 0x5a);
  std::printf("tcp_lat_size_bytes %u\n", size);
  for (char kind : {'P', 'B'}) {
    const bool spin = kind == 'B';
    Job j{kind, size, iters + warm};
    write_all(fd, &j, sizeof j);
    std::vector<double> s;
    s.reserve(iters);
    for (uint64_t i = 0; i < iters + warm; ++i) {
      auto t0 = Clock::now();
      if (!write_all(fd, buf.data(), size) || !read_all(fd, buf.data(), size, spin)) return 1;
      auto t1 = Clock::now();
      if (i >= warm) s.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / 2);
    }
    std::sort(s.begin(), s.end());
    auto q = [&](double f) { return s[std::min(s.size() - 1, static_cast<size_t>(f * static_cast<double>(s.size())))]; };
    const char* tag = spin ? "tcp_lat_spin" : "tcp_lat";
    std::printf("%s_min_us %.2f\n%s_median_us %.2f\n%s_p99_us %.2f\n", tag, s.front(), tag, q(0.5), tag, q(0.99));
  }

  // Streams.
  for (uint32_t w : stream) {
    Job sj{'S', w, bytes};
    write_all(fd, &sj, sizeof sj);
    auto t0 = Clock::now();
    for (uint64_t left = bytes; left > 0;) {
      size_t n = std::min<uint64_t>(left, w);
      if (!write_all(fd, buf.data(), n)) return 1;
      left -= n;
    }
    char ack;
    if (!read_all(fd, &ack, 1)) return 1;
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("tcp_stream_%u_MBps %.1f\ntcp_stream_%u_Gbps %.3f\n", w, static_cast<double>(bytes) / secs / 1e6, w,
                static_cast<double>(bytes) * 8 / secs / 1e9);
  }
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
  server.join();
  ::close(lfd);
  return 0;
}
