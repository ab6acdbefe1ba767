#include "link/udp_link.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <errno.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>

#include "wire/icrc.h"

namespace softrdma::link {
namespace {

constexpr int kBufBytes = 8 << 20;
constexpr size_t kIcrcBytes = 4;

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

bool env_off(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && (strcmp(v, "0") == 0 || strcasecmp(v, "off") == 0 || strcasecmp(v, "no") == 0 ||
                          strcasecmp(v, "false") == 0);
}

// Copies f's parts to iov; with `icrc` set, the last 4 bytes (the ICRC) are left out and
// written to icrc[0..4) instead, XORed with `delta`, and icrc becomes the last part. Returns the
// number of iovecs used (at most kMaxTxParts + 1).
size_t gather_frame(const TxFrame& f, iovec* iov, uint8_t* icrc, uint32_t delta) {
  size_t n = f.nparts;
  std::copy(f.parts, f.parts + n, iov);
  if (icrc == nullptr) return n;
  size_t left = kIcrcBytes;  // bytes of the ICRC still to take off the end
  while (left > 0 && n > 0) {
    iovec& last = iov[n - 1];
    const size_t take = std::min(left, last.iov_len);
    last.iov_len -= take;
    std::memcpy(icrc + left - take, static_cast<const uint8_t*>(last.iov_base) + last.iov_len, take);
    left -= take;
    if (last.iov_len == 0) --n;
  }
  wire::icrc_store(icrc, wire::icrc_load(icrc) ^ delta);
  iov[n++] = iovec{icrc, kIcrcBytes};
  return n;
}

}  // namespace

uint32_t UdpLink::IdDeltas::get(size_t body_len, uint16_t id) {
  if (body_len != body) {
    body = body_len;
    known = 0;
  }
  uint32_t d = 0;
  for (unsigned i = 0; id != 0; ++i, id >>= 1) {
    if (!(id & 1)) continue;
    if (!(known >> i & 1)) {
      bit[i] = wire::icrc_ipv4_id_delta(body_len, uint16_t(1u << i));
      known |= 1u << i;
    }
    d ^= bit[i];
  }
  return d;
}

UdpLink::Options UdpLink::Options::from_env() {
  Options o;
  if (env_off("SOFTRDMA_GSO")) o.gso = false;
  if (env_off("SOFTRDMA_GRO")) o.gro = false;
  return o;
}

std::unique_ptr<UdpLink> UdpLink::open(const Endpoint& local, std::string* err) {
  return open(local, Options::from_env(), err);
}

std::unique_ptr<UdpLink> UdpLink::open(const Endpoint& local, const Options& opt, std::string* err) {
  int eno = 0;
  return open_errno(local, opt, err, &eno);
}

std::unique_ptr<UdpLink> UdpLink::open_errno(const Endpoint& local, const Options& opt, std::string* err,
                                             int* eno) {
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
  // Offloads, when asked for and known to the kernel (UDP_SEGMENT since 4.18, UDP_GRO since 5.0).
  // A socket-wide segment size of 0 means "none": each GSO send carries its own in a cmsg.
  const int zero = 0;
  const bool gso = opt.gso && setsockopt(fd, SOL_UDP, UDP_SEGMENT, &zero, sizeof zero) == 0;
  const bool gro = opt.gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
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
  l->gso_ = gso;
  l->gro_ = gro;
  // recvfrom cannot tell the destination address: only where there is just one.
  const bool wildcard = ep->ip.is_v4() ? ep->ip.v4_be() == 0 : ep->ip == IpAddr{};
  l->plain_allowed_ = opt.plain_rx && !wildcard;
  l->plain_ = l->plain_allowed_ && !gro;  // nothing is ever coalesced
  // The whole GSO message is one UDP datagram to the IP layer until it is cut: 65535 bytes of IP
  // payload (IPv4: with the 20-byte header inside them).
  l->max_gso_bytes_ = 65535 - sizeof(udphdr) - (v4 ? sizeof(iphdr) : 0);
  l->rx_slot_bytes_ = std::max<uint32_t>(opt.rx_slot_bytes, 1);
  l->rx_buf_.reset(new uint8_t[kRxSlots * size_t{l->rx_slot_bytes_}]);  // touched only when used
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
  return open_auto_loopback(port, Options::from_env(), err);
}

std::unique_ptr<UdpLink> UdpLink::open_auto_loopback(uint16_t port, const Options& opt, std::string* err) {
  for (uint32_t host = 2; host <= 254; ++host) {
    Endpoint ep;
    ep.ip = IpAddr::from_v4_be(htonl((127u << 24) | host));
    ep.port = port;
    int eno = 0;
    auto l = open_errno(ep, opt, err, &eno);
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

// Fills tx_msgs_ with messages for frames[begin..n): at most kBatch messages and kTxFrames frames.
// Consecutive frames to one destination with one length (the last may be shorter) form a GSO
// message, except those before nogso_until (a GSO message of them just failed). Stops before the
// first malformed frame. Returns the number of frames covered; *nmsgs the number of messages.
size_t UdpLink::build_tx(const TxFrame* frames, size_t begin, size_t n, size_t nogso_until, size_t* nmsgs) {
  const size_t end = std::min(n, begin + kTxFrames);
  size_t i = begin, m = 0, iov_used = 0;
  while (i < end && m < kBatch) {
    const TxFrame& f = frames[i];
    if (!valid_frame(f, family_)) break;
    const size_t len = f.length();
    size_t cnt = 1, total = len;
    if (gso_ && i >= nogso_until && len >= kIcrcBytes && 2 * len <= max_gso_bytes_) {
      while (i + cnt < end && cnt < kMaxGsoSegments) {
        const TxFrame& g = frames[i + cnt];
        if (!valid_frame(g, family_) || !(g.dst == f.dst)) break;
        const size_t glen = g.length();
        if (glen > len || glen < kIcrcBytes || total + glen > max_gso_bytes_) break;
        ++cnt;
        total += glen;
        if (glen < len) break;  // a shorter frame ends the group
      }
    }
    msghdr& h = tx_msgs_[m].msg_hdr;
    h.msg_name = &tx_addr_[m];
    h.msg_namelen = f.dst.to_sockaddr(tx_addr_[m]);
    h.msg_iov = &tx_iov_[iov_used];
    h.msg_flags = 0;
    size_t niov = 0;
    if (cnt == 1) {
      niov = gather_frame(f, &tx_iov_[iov_used], nullptr, 0);
      h.msg_control = nullptr;
      h.msg_controllen = 0;
    } else {
      const bool fix_id = family_ == AF_INET;
      for (size_t k = 0; k < cnt; ++k) {
        const TxFrame& g = frames[i + k];
        uint8_t* icrc = nullptr;
        uint32_t delta = 0;
        if (fix_id && k > 0) {  // the kernel gives this segment IPv4 ID k
          icrc = tx_icrc_[i + k - begin];
          const size_t body = (k + 1 == cnt ? g.length() : len) - kIcrcBytes;
          delta = (body + kIcrcBytes == len ? tx_deltas_ : tx_short_deltas_).get(body, static_cast<uint16_t>(k));
        }
        niov += gather_frame(g, &tx_iov_[iov_used + niov], icrc, delta);
      }
      h.msg_control = tx_ctrl_[m];
      h.msg_controllen = kGsoCtrlLen;
      cmsghdr* c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      const uint16_t gso_size = static_cast<uint16_t>(len);
      std::memcpy(CMSG_DATA(c), &gso_size, sizeof gso_size);
    }
    h.msg_iovlen = niov;
    iov_used += niov;
    tx_msg_frames_[m] = static_cast<uint32_t>(cnt);
    tx_msg_bytes_[m] = total;
    ++m;
    i += cnt;
  }
  *nmsgs = m;
  return i - begin;
}

size_t UdpLink::send(const TxFrame* frames, size_t n) {
  for (size_t i = 0; i < n; ++i)  // left to a link above us that found this path needs one
    if (frames[i].icrc_pending) fill_icrc(frames[i], local_);
  if (n == 1 && valid_frame(frames[0], family_) && frames[0].length() <= kFlatBytes) {
    // A lone small frame: flat, by sendto (see "Lone datagrams" in the header).
    const TxFrame& f = frames[0];
    size_t len = 0;
    for (uint8_t i = 0; i < f.nparts; ++i) {
      if (f.parts[i].iov_len == 0) continue;  // an empty part may have no base at all
      std::memcpy(tx_flat_ + len, f.parts[i].iov_base, f.parts[i].iov_len);
      len += f.parts[i].iov_len;
    }
    const socklen_t tl = f.dst.to_sockaddr(tx_addr_[0]);
    for (;;) {
      if (::sendto(fd_, tx_flat_, len, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&tx_addr_[0]), tl) >= 0) {
        ++counters_.tx_frames;
        counters_.tx_bytes += len;
        return 1;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return 0;
      ++counters_.tx_errors;  // as in the batched path: the transport recovers by retransmit
      return 1;
    }
  }
  size_t done = 0;
  size_t nogso_until = 0;      // frames before this go one per message (a GSO message of them failed)
  size_t probe_at = SIZE_MAX;  // ... the first of them, whose fate decides whether GSO is at fault
  int probe_err = 0;           // ... and the error the GSO message got
  while (done < n) {
    size_t nmsgs = 0;
    build_tx(frames, done, n, nogso_until, &nmsgs);
    if (nmsgs == 0) {  // frames[done] is malformed: skip it
      ++counters_.tx_errors;
      ++done;
      continue;
    }
    int r = ::sendmmsg(fd_, tx_msgs_, static_cast<unsigned>(nmsgs), MSG_DONTWAIT);
    if (r > 0) {
      if (done == probe_at) {
        // The frames of the refused GSO message go out on their own: GSO itself was the problem.
        if (probe_err == EINVAL || probe_err == EIO) {
          gso_ = false;
          counters_.tx_gso_disabled = 1;
        }
        probe_at = SIZE_MAX;
      }
      for (int m = 0; m < r; ++m) {
        const uint32_t k = tx_msg_frames_[m];
        counters_.tx_frames += k;
        counters_.tx_bytes += tx_msg_bytes_[m];
        if (k > 1) {
          ++counters_.tx_gso_sends;
          counters_.tx_gso_frames += k;
        }
        done += k;
      }
      continue;
    }
    // r <= 0: the error belongs to the first message of this batch.
    const int e = r == 0 ? EAGAIN : errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) break;  // full: caller keeps the rest
    if (tx_msg_frames_[0] > 1) {  // a GSO message: send its frames one by one, then judge
      nogso_until = done + tx_msg_frames_[0];
      probe_at = done;
      probe_err = e;
      continue;
    }
    probe_at = SIZE_MAX;
    ++counters_.tx_errors;  // unreachable/refused/too big: the transport recovers by retransmit
    ++done;
  }
  return done;
}

size_t UdpLink::parse_rx(size_t i, uint32_t slot) {
  const msghdr& h = rx_msgs_[i].msg_hdr;
  RxDatagram& d = pending_[(pending_head_ + pending_count_++) % kRxSlots];
  d.slot = slot;
  d.off = 0;
  d.real = rx_msgs_[i].msg_len;  // the real datagram size, thanks to MSG_TRUNC
  d.avail = std::min(d.real, rx_slot_bytes_);
  d.seg = d.real;
  d.index = 0;
  d.coalesced = false;
  if (auto ep = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&rx_addr_[i])))
    d.src = *ep;
  else
    d.src = Endpoint{};
  d.dst = local_.ip;
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      d.dst = IpAddr::from_v4_be(pi.ipi_addr.s_addr);
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      d.dst = IpAddr::from_v6(pi.ipi6_addr);
    } else if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int seg = 0;
      memcpy(&seg, CMSG_DATA(c), sizeof seg);
      if (seg > 0 && uint32_t(seg) < d.real) {
        d.seg = uint32_t(seg);
        d.coalesced = true;
      }
    }
  }
  if (!d.coalesced) return 1;
  const size_t frames = (d.real + d.seg - 1) / d.seg;
  ++counters_.rx_gro_receives;
  counters_.rx_gro_frames += frames;
  return frames;
}

// Hands out frames of pending datagrams, oldest first; *used collects the slots they point into.
size_t UdpLink::take_pending(RxFrame* frames, size_t n, uint64_t* used) {
  size_t done = 0;
  while (done < n && pending_count_ > 0) {
    RxDatagram& d = pending_[pending_head_];
    RxFrame& f = frames[done++];
    const uint32_t len = std::min(d.seg, d.real - d.off);
    f.buf = slot_buf(d.slot) + d.off;
    f.len = len;
    f.src = d.src;
    f.dst = d.dst;
    f.icrc_absent = false;
    *used |= uint64_t{1} << d.slot;
    if (d.off + len <= d.avail) {
      f.cap = len;
      f.truncated = false;
      ++counters_.rx_frames;
      counters_.rx_bytes += len;
      if (d.coalesced && d.index > 0 && family_ == AF_INET && len >= kIcrcBytes) {
        // Segment k of a GSO send travelled with IPv4 ID k: back to the ID-0 ICRC (see the header).
        uint8_t* icrc = f.buf + len - kIcrcBytes;
        const uint32_t delta = (len == d.seg ? rx_deltas_ : rx_short_deltas_).get(len - kIcrcBytes, d.index);
        wire::icrc_store(icrc, wire::icrc_load(icrc) ^ delta);
      }
      d.off += len;
      ++d.index;
    } else {
      // It did not fit: report this frame truncated and drop the rest of the receive with it.
      f.cap = d.avail > d.off ? d.avail - d.off : 0;
      f.truncated = true;
      counters_.rx_truncated += (d.real - d.off + d.seg - 1) / d.seg;
      d.off = d.real;
    }
    if (d.off >= d.real) {
      pending_head_ = (pending_head_ + 1) % kRxSlots;
      --pending_count_;
    }
  }
  return done;
}

size_t UdpLink::recv(RxFrame* frames, size_t n) {
  static_assert(kRxSlots <= 64, "slot sets are 64-bit masks");
  static_assert(kBatch <= kRxSlots);
  uint64_t used = 0;  // slots that frames handed out by this call point into
  bool last = false;  // no more receives in this call
  size_t done = 0;
  for (;;) {
    done += take_pending(frames + done, n - done, &used);
    if (done == n || last) break;
    // Nothing pending: receive into slots this call has not handed out. A coalesced receive
    // brings several frames: ask for about as many datagrams as make the frames the caller
    // wants, going by the last receive (more would only wait in the link, out of the cache).
    const size_t per = rx_frames_per_msg_;
    const size_t want = std::min((n - done + per - 1) / per, kBatch);
    const size_t ask = std::min(want, rx_ask_);
    size_t m = 0;
    constexpr uint64_t kAll = kRxSlots == 64 ? ~uint64_t{0} : (uint64_t{1} << kRxSlots) - 1;
    for (uint64_t free = ~used & kAll; free != 0 && m < ask; free &= free - 1) {
      const auto slot = static_cast<uint32_t>(std::countr_zero(free));
      rx_msg_slot_[m] = slot;
      rx_iov_[m].iov_base = slot_buf(slot);
      rx_iov_[m].iov_len = rx_slot_bytes_;
      msghdr& h = rx_msgs_[m].msg_hdr;
      h.msg_namelen = sizeof(sockaddr_storage);
      h.msg_controllen = kRxCtrlLen;
      h.msg_flags = 0;
      ++m;
    }
    if (m == 0) break;
    int r;
    if (m == 1 && plain_) {
      // One datagram, nothing coalesced, one destination: recvfrom (see "Lone datagrams").
      socklen_t al = sizeof(sockaddr_storage);
      const ssize_t len = ::recvfrom(fd_, rx_iov_[0].iov_base, rx_iov_[0].iov_len, MSG_DONTWAIT | MSG_TRUNC,
                                     reinterpret_cast<sockaddr*>(&rx_addr_[0]), &al);
      if (len >= 0) {
        rx_msgs_[0].msg_len = static_cast<unsigned>(len);
        ++counters_.rx_plain_receives;
      }
      rx_msgs_[0].msg_hdr.msg_controllen = 0;  // no control messages for parse_rx
      r = len >= 0 ? 1 : -1;
    } else if (m == 1) {
      // One datagram (a ping-pong's steady state): recvmsg costs less than a recvmmsg of one,
      // on every empty poll too (bench/udp_pingpong --batch 0 against 1: 0.1 us per message).
      const ssize_t len = ::recvmsg(fd_, &rx_msgs_[0].msg_hdr, MSG_DONTWAIT | MSG_TRUNC);
      if (len >= 0) rx_msgs_[0].msg_len = static_cast<unsigned>(len);
      r = len >= 0 ? 1 : -1;
    } else {
      r = ::recvmmsg(fd_, rx_msgs_, static_cast<unsigned>(m), MSG_DONTWAIT | MSG_TRUNC, nullptr);
    }
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {  // EAGAIN, or a pending socket error: nothing to deliver now
      rx_filled_ = false;
      note_received(0, true);
      break;
    }
    size_t frames = 0;
    for (int i = 0; i < r; ++i) frames += parse_rx(size_t(i), rx_msg_slot_[i]);
    note_received(frames, static_cast<size_t>(r) < m);  // fewer than asked: it ran dry
    rx_frames_per_msg_ = static_cast<uint32_t>(std::max<size_t>(1, frames / size_t(r)));
    const auto got = static_cast<size_t>(r);
    if (rx_filled_) rx_ask_ = kBatch;  // a backlog: take it in as few calls as it allows
    rx_filled_ = false;
    if (got < m) {  // the socket ran dry
      rx_ask_ = got;
      last = true;
    } else if (m < want) {
      rx_filled_ = true;  // stop here: another try now is what a lone message would pay for
      last = true;
    }
  }
  return done;
}

// Switches GRO off for plain receiving, or back on. Off is taken only while the socket is dry:
// a coalesced datagram queued before the switch would come out without its segment size (the
// kernel reports it only while GRO is on), so if one arrived meanwhile GRO goes back on.
void UdpLink::set_gro(bool on) {
  const int v = on ? 1 : 0;
  if (setsockopt(fd_, SOL_UDP, UDP_GRO, &v, sizeof v) != 0) {
    plain_allowed_ = false;  // cannot switch: stay as configured
    return;
  }
  ++counters_.gro_switches;
  if (on) {
    plain_ = false;
    return;
  }
  int queued = 0;  // bytes of the first queued datagram, 0 if none
  if (ioctl(fd_, SIOCINQ, &queued) == 0 && queued == 0) {
    plain_ = true;
    return;
  }
  ++counters_.gro_switches;  // back on at once
  const int back = 1;
  if (setsockopt(fd_, SOL_UDP, UDP_GRO, &back, sizeof back) != 0) plain_allowed_ = false;
}

// After each receive call on the socket: the frames it brought (a coalesced datagram counts all
// of its frames) and whether it found the socket dry. The frames between two dry moments form a
// burst; each kPlainWindow bursts decide whether receiving goes plain (see the header).
void UdpLink::note_received(size_t frames, bool dry) {
  if (!plain_allowed_) return;
  burst_ += frames;
  if (plain_ && gro_ && burst_ >= kGroAgainAt) set_gro(true);  // a stream: coalescing pays again
  if (!dry || burst_ == 0) return;
  window_multi_ += burst_ >= 2 ? 1 : 0;
  burst_ = 0;
  if (++window_bursts_ < kPlainWindow) return;
  if (!plain_ && window_multi_ * 8 <= window_bursts_)
    set_gro(false);  // lone frames: go plain (the socket is dry right now)
  else if (plain_ && gro_ && window_multi_ * 4 >= window_bursts_)
    set_gro(true);  // pairs and more: one coalesced receive beats a recvfrom each
  window_bursts_ = 0;
  window_multi_ = 0;
}

}  // namespace softrdma::link
