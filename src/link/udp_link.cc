#include "link/udp_link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/ip.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>

namespace softrdma::link {
namespace {

constexpr int kBufBytes = 8 << 20;

void set_err(std::string* err, const std::string& what, int eno) {
  if (err) *err = what + ": " + strerror(eno);
}

// Ask for a big buffer; the *FORCE variants bypass rmem_max/wmem_max but need CAP_NET_ADMIN.
int grow_buffer(int fd, int force_opt, int opt) {
  int want = kBufBytes;
  if (setsockopt(fd, SOL_SOCKET, force_opt, &want, sizeof want) != 0)
    (void)setsockopt(fd, SOL_SOCKET, opt, &want, sizeof want);  // capped by the sysctl; fine
  int got = 0;
  socklen_t len = sizeof got;
  (void)getsockopt(fd, SOL_SOCKET, opt, &got, &len);
  return got;
}

bool valid_frame(const TxFrame& f, int family) {
  return f.nparts <= kMaxTxParts && (f.dst.ip.is_v4() == (family == AF_INET));
}

}  // namespace

std::unique_ptr<UdpLink> UdpLink::open(const Endpoint& local, std::string* err) {
  int eno = 0;
  return open_errno(local, err, &eno);
}

std::unique_ptr<UdpLink> UdpLink::open_errno(const Endpoint& local, std::string* err, int* eno) {
  const bool v4 = local.ip.is_v4();
  const int family = v4 ? AF_INET : AF_INET6;
  int fd = ::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) {
    *eno = errno;
    set_err(err, "socket", errno);
    return nullptr;
  }
  auto fail = [&](const char* what) -> std::unique_ptr<UdpLink> {
    *eno = errno;
    set_err(err, std::string(what) + " " + local.str(), errno);
    ::close(fd);
    return nullptr;
  };
  const int one = 1;
  if (v4) {
    // DF on every datagram: no fragmentation of RoCEv2 frames, and as a consequence Linux writes
    // IPv4 Identification = 0 for DF datagrams on unconnected sockets. The RoCEv2 ICRC covers the
    // IP ID field, so a peer computing the ICRC over the real header must see a predictable ID.
    int pmtu = IP_PMTUDISC_DO;
    if (setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu) != 0)
      return fail("IP_MTU_DISCOVER");
    if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) != 0) return fail("IP_PKTINFO");
  } else {
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
      return fail("IPV6_V6ONLY");
    int pmtu = IPV6_PMTUDISC_DO;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu) != 0)
      return fail("IPV6_MTU_DISCOVER");
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) != 0)
      return fail("IPV6_RECVPKTINFO");
  }
  const int sndbuf = grow_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
  const int rcvbuf = grow_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF);

  sockaddr_storage ss{};
  socklen_t sl = local.to_sockaddr(ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) != 0) return fail("bind");
  sockaddr_storage bound{};
  socklen_t bl = sizeof bound;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bl) != 0) return fail("getsockname");
  auto ep = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&bound));
  if (!ep) {
    errno = EAFNOSUPPORT;
    return fail("getsockname");
  }

  std::unique_ptr<UdpLink> l(new UdpLink());
  l->fd_ = fd;
  l->family_ = family;
  l->local_ = *ep;
  l->sndbuf_ = sndbuf;
  l->rcvbuf_ = rcvbuf;
  l->prepare_rx();
  *eno = 0;
  return l;
}

std::optional<Endpoint> UdpLink::pick_free_loopback(uint16_t port) {
  for (uint32_t host = 2; host <= 254; ++host) {
    Endpoint ep;
    ep.ip = IpAddr::from_v4_be(htonl((127u << 24) | host));
    ep.port = port;
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0) return std::nullopt;
    sockaddr_storage ss{};
    socklen_t sl = ep.to_sockaddr(ss);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&ss), sl) == 0;
    ::close(fd);
    if (ok) return ep;
  }
  return std::nullopt;
}

std::unique_ptr<UdpLink> UdpLink::open_auto_loopback(uint16_t port, std::string* err) {
  for (uint32_t host = 2; host <= 254; ++host) {
    Endpoint ep;
    ep.ip = IpAddr::from_v4_be(htonl((127u << 24) | host));
    ep.port = port;
    int eno = 0;
    auto l = open_errno(ep, err, &eno);
    if (l) return l;
    if (eno != EADDRINUSE) return nullptr;  // not a "taken" problem: trying others won't help
  }
  if (err) *err = "no free address in 127.0.0.2-254 for UDP port " + std::to_string(port);
  return nullptr;
}

UdpLink::~UdpLink() {
  if (fd_ >= 0) ::close(fd_);
}

std::string UdpLink::describe() const { return "udp(" + local_.str() + ")"; }

void UdpLink::prepare_rx() {
  for (size_t i = 0; i < kBatch; ++i) {
    msghdr& h = rx_msgs_[i].msg_hdr;
    h = msghdr{};
    h.msg_name = &rx_addr_[i];
    h.msg_iov = &rx_iov_[i];
    h.msg_iovlen = 1;
    h.msg_control = rx_ctrl_[i];
  }
}

size_t UdpLink::send(const TxFrame* frames, size_t n) {
  size_t done = 0;
  while (done < n) {
    // Gather the longest run of valid frames (at most kBatch) starting at `done`.
    const size_t limit = std::min(n - done, kBatch);
    size_t cnt = 0;
    for (; cnt < limit; ++cnt) {
      const TxFrame& f = frames[done + cnt];
      if (!valid_frame(f, family_)) break;
      msghdr& h = tx_msgs_[cnt].msg_hdr;
      h.msg_name = &tx_addr_[cnt];
      h.msg_namelen = f.dst.to_sockaddr(tx_addr_[cnt]);
      iovec* iov = &tx_iov_[cnt * kMaxTxParts];
      std::copy(f.parts, f.parts + f.nparts, iov);
      h.msg_iov = iov;
      h.msg_iovlen = f.nparts;
      h.msg_control = nullptr;
      h.msg_controllen = 0;
      h.msg_flags = 0;
    }
    if (cnt == 0) {  // frames[done] is malformed: skip it
      ++counters_.tx_errors;
      ++done;
      continue;
    }
    int r = ::sendmmsg(fd_, tx_msgs_, static_cast<unsigned>(cnt), MSG_DONTWAIT);
    if (r > 0) {
      for (int i = 0; i < r; ++i) counters_.tx_bytes += frames[done + i].length();
      counters_.tx_frames += static_cast<uint64_t>(r);
      done += static_cast<size_t>(r);
      continue;
    }
    // r <= 0: the error belongs to the first message of this batch.
    const int e = r == 0 ? EAGAIN : errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) break;  // full: caller keeps the rest
    ++counters_.tx_errors;  // unreachable/refused/too big: the transport recovers by retransmit
    ++done;
  }
  return done;
}

size_t UdpLink::recv(RxFrame* frames, size_t n) {
  size_t done = 0;
  while (done < n) {
    const size_t cnt = std::min(n - done, kBatch);
    for (size_t i = 0; i < cnt; ++i) {
      rx_iov_[i].iov_base = frames[done + i].buf;
      rx_iov_[i].iov_len = frames[done + i].cap;
      msghdr& h = rx_msgs_[i].msg_hdr;
      h.msg_namelen = sizeof(sockaddr_storage);
      h.msg_controllen = kCtrlLen;
      h.msg_flags = 0;
    }
    int r = ::recvmmsg(fd_, rx_msgs_, static_cast<unsigned>(cnt), MSG_DONTWAIT | MSG_TRUNC,
                       nullptr);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // EAGAIN, or a pending socket error: nothing to deliver now
    for (int i = 0; i < r; ++i) {
      RxFrame& f = frames[done + static_cast<size_t>(i)];
      const msghdr& h = rx_msgs_[i].msg_hdr;
      f.len = rx_msgs_[i].msg_len;  // the real datagram size, thanks to MSG_TRUNC
      f.truncated = (h.msg_flags & MSG_TRUNC) != 0 || f.len > f.cap;
      if (auto ep = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&rx_addr_[i])))
        f.src = *ep;
      else
        f.src = Endpoint{};
      f.dst = local_.ip;
      for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
          in_pktinfo pi;
          memcpy(&pi, CMSG_DATA(c), sizeof pi);
          f.dst = IpAddr::from_v4_be(pi.ipi_addr.s_addr);
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
          in6_pktinfo pi;
          memcpy(&pi, CMSG_DATA(c), sizeof pi);
          f.dst = IpAddr::from_v6(pi.ipi6_addr);
        }
      }
      if (f.truncated) {
        ++counters_.rx_truncated;
      } else {
        ++counters_.rx_frames;
        counters_.rx_bytes += f.len;
      }
    }
    done += static_cast<size_t>(r);
    if (static_cast<size_t>(r) < cnt) break;  // socket drained
  }
  return done;
}

}  // namespace softrdma::link
