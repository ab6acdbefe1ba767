// What the plain UDP benchmark programs (udp_pingpong, udp_stream; no softrdma library) share:
// a socket with the options softrdma's UDP link sets, and two of them on one loopback address.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace softrdma::bench {

struct UdpSocketOptions {
  bool gro = true;           // UDP_GRO on receive
  bool nonblocking = false;  // SOCK_NONBLOCK
  bool pktinfo = false;      // IP_PKTINFO, as the link asks for it
  bool big_buffers = false;  // 8 MiB socket buffers, as the link asks for them
};

// A UDP socket bound to `self` with DF (IP_PMTUDISC_DO) and GSO by control message, as the link
// opens its own; -1 on failure.
inline int open_udp_socket(const sockaddr_in& self, const UdpSocketOptions& o) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | (o.nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  const int one = 1, zero = 0, pmtu = IP_PMTUDISC_DO, buf = 8 << 20;
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
  if (o.pktinfo) setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
  setsockopt(fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero);
  if (o.gro) setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);
  if (o.big_buffers) {
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0)
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&self), sizeof self) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Control-message room for one UDP_SEGMENT.
struct GsoControl {
  alignas(cmsghdr) unsigned char bytes[CMSG_SPACE(sizeof(uint16_t))] = {};
};

// Makes `h` one UDP GSO send cut into `segment`-byte datagrams, its control message in `ctrl`.
inline void set_gso_segment(msghdr& h, GsoControl& ctrl, uint16_t segment) {
  h.msg_control = ctrl.bytes;
  h.msg_controllen = sizeof ctrl.bytes;
  cmsghdr* c = CMSG_FIRSTHDR(&h);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof segment);
  std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
}

// Two such sockets on ephemeral ports of the IPv4 address `addr`, their bound addresses in *a and
// *b. Returns 0, or the exit status for the caller after a message naming `prog`: 2 for a bad
// address, 1 for a socket error.
inline int open_udp_pair(const char* prog, const std::string& addr, const UdpSocketOptions& o, int* fa,
                         sockaddr_in* a, int* fb, sockaddr_in* b) {
  *a = sockaddr_in{};
  a->sin_family = AF_INET;
  if (inet_pton(AF_INET, addr.c_str(), &a->sin_addr) != 1) {
    std::fprintf(stderr, "%s: bad --addr\n", prog);
    return 2;
  }
  *b = *a;
  *fa = open_udp_socket(*a, o);
  *fb = open_udp_socket(*b, o);
  socklen_t la = sizeof *a, lb = sizeof *b;
  if (*fa < 0 || *fb < 0 || getsockname(*fa, reinterpret_cast<sockaddr*>(a), &la) != 0 ||
      getsockname(*fb, reinterpret_cast<sockaddr*>(b), &lb) != 0) {
    std::fprintf(stderr, "%s: socket: ", prog);
    std::perror(nullptr);
    return 1;
  }
  return 0;
}

}  // namespace softrdma::bench
