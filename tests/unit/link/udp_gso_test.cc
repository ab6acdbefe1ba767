// UDP GSO on transmit and GRO on receive (udp_link.h): what goes on the wire is one datagram per
// frame, whatever the grouping; coalesced receives come back as the exact frames, in order; the
// fallbacks (switched off, or refused by the kernel) send frame by frame.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "link/udp_link.h"
#include "link_test_util.h"
#include "wire/icrc.h"

namespace softrdma::link {
namespace {

using test::ep;
using test::recv_frames;

std::unique_ptr<UdpLink> must_open(const Endpoint& e, const UdpLink::Options& o = {}) {
  std::string err;
  auto l = UdpLink::open(e, o, &err);
  EXPECT_TRUE(l) << err;
  return l;
}

// A plain UDP socket (no GRO): it sees every datagram on its own, as a remote peer would.
class PlainSocket {
 public:
  explicit PlainSocket(const Endpoint& at) {
    fd_ = ::socket(at.ip.is_v4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int big = 4 << 20;  // room for a whole test batch (capped by net.core.rmem_max without root)
    if (::setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) != 0)
      (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    sockaddr_storage ss{};
    socklen_t sl = at.to_sockaddr(ss);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&ss), sl), 0) << strerror(errno);
    sockaddr_storage b{};
    socklen_t bl = sizeof b;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&b), &bl);
    local_ = *Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&b));
  }
  ~PlainSocket() { ::close(fd_); }
  int fd() const { return fd_; }
  Endpoint local() const { return local_; }

  // The next datagram within 2 s, or nothing.
  std::optional<std::vector<uint8_t>> recv() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 2000) != 1) return std::nullopt;
    std::vector<uint8_t> b(70000);
    ssize_t n = ::recv(fd_, b.data(), b.size(), 0);
    if (n < 0) return std::nullopt;
    b.resize(size_t(n));
    return b;
  }
  // One GSO send of `frames` (all but the last of one length) to `to`.
  void send_gso(const Endpoint& to, const std::vector<std::vector<uint8_t>>& frames) {
    std::vector<uint8_t> all;
    for (auto& f : frames) all.insert(all.end(), f.begin(), f.end());
    sockaddr_storage ss{};
    socklen_t sl = to.to_sockaddr(ss);
    iovec iov{all.data(), all.size()};
    alignas(cmsghdr) unsigned char ctrl[CMSG_SPACE(sizeof(uint16_t))] = {};
    msghdr h{};
    h.msg_name = &ss;
    h.msg_namelen = sl;
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = ctrl;
    h.msg_controllen = sizeof ctrl;
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    const uint16_t seg = uint16_t(frames[0].size());
    std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
    ASSERT_EQ(::sendmsg(fd_, &h, 0), ssize_t(all.size())) << strerror(errno);
  }

 private:
  int fd_ = -1;
  Endpoint local_;
};

// A frame with a RoCEv2 ICRC for IPv4 ID `id` over its first len-4 bytes (the bytes themselves
// are a pattern that starts with the frame's index; the ICRC does not care what they mean).
std::vector<uint8_t> icrc_frame(uint32_t index, size_t len, const Endpoint& from, const Endpoint& to,
                                uint16_t id = 0) {
  std::vector<uint8_t> b = test::frame_bytes(index, len);
  wire::IcrcContext ctx{from.ip, to.ip, from.port, to.port};
  iovec body{b.data(), len - 4};
  wire::icrc_store(b.data() + len - 4, wire::icrc_compute(ctx, &body, 1, id));
  return b;
}

struct Want {
  uint32_t index;
  size_t len;
  Endpoint dst;
  uint16_t id;  // the IPv4 ID the kernel gives it: its position in its GSO group
};

// Frames to two destinations with varying lengths, sent in one send() call. The groups follow
// the rules: same destination and length, the last one may be shorter, at most 64 frames.
std::vector<Want> mixed_batch(const Endpoint& d1, const Endpoint& d2) {
  std::vector<Want> w;
  uint32_t i = 0;
  auto add = [&](const Endpoint& d, size_t len, int count, uint16_t first_id) {
    for (int k = 0; k < count; ++k) w.push_back({i++, len, d, uint16_t(first_id + k)});
  };
  add(d1, 1000, 5, 0);  // a group of five...
  add(d1, 700, 1, 5);   // ...ended by a shorter frame
  add(d1, 1000, 3, 0);  // a new group after the short one
  add(d2, 1000, 2, 0);  // another destination: another group
  add(d1, 1000, 1, 0);  // alone: its neighbours go elsewhere or are longer
  add(d1, 1200, 1, 0);
  add(d2, 300, 64, 0);   // the segment limit: 64 ...
  add(d2, 300, 6, 0);    // ... then a new group
  add(d1, 16, 1, 0);     // a lone short frame
  add(d1, 4136, 15, 0);  // 15 x 4136 = 62040 bytes, the most below 64 KiB...
  add(d1, 4136, 2, 0);   // ...so the next two start a new group
  return w;
}

TEST(UdpGso, GroupsArriveAsSeparateDatagramsWithTheirOwnIds) {
  UdpLink::Options o;
  o.gso = true;
  auto a = must_open(ep("127.0.0.2", 0), o);
  ASSERT_TRUE(a);
  if (!a->gso()) GTEST_SKIP() << "no UDP GSO in this kernel";
  PlainSocket r1(ep("127.0.0.3", 0)), r2(ep("127.0.0.4", 0));
  const std::vector<Want> want = mixed_batch(r1.local(), r2.local());
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TxFrame> tx;
  for (const Want& w : want) bytes.push_back(icrc_frame(w.index, w.len, a->local(), w.dst));
  for (size_t i = 0; i < want.size(); ++i)
    tx.push_back(test::make_tx(want[i].dst, bytes[i], uint8_t(1 + i % 4)));
  const std::vector<std::vector<uint8_t>> original = bytes;
  ASSERT_EQ(a->send(tx.data(), tx.size()), tx.size());
  EXPECT_EQ(bytes, original) << "send() must not write the caller's frames";

  size_t total = 0;
  for (const Want& w : want) total += w.len;
  EXPECT_EQ(a->counters().tx_frames, want.size());
  EXPECT_EQ(a->counters().tx_bytes, total);
  EXPECT_EQ(a->counters().tx_errors, 0u);
  // Groups of 6, 3, 2, 64, 6, 15, 2 frames; the rest went alone.
  EXPECT_EQ(a->counters().tx_gso_sends, 7u);
  EXPECT_EQ(a->counters().tx_gso_frames, 6u + 3 + 2 + 64 + 6 + 15 + 2);

  // Each receiver sees its frames one by one, in order, with the right length and bytes; the
  // ICRC is right for the IPv4 ID that segment carried on the wire.
  for (PlainSocket* r : {&r1, &r2}) {
    for (const Want& w : want) {
      if (!(w.dst == r->local())) continue;
      auto got = r->recv();
      ASSERT_TRUE(got) << "frame " << w.index << " missing";
      ASSERT_EQ(got->size(), w.len) << "frame " << w.index;
      EXPECT_EQ(test::frame_index(*got), w.index);
      EXPECT_TRUE(std::equal(got->begin(), got->end() - 4, original[w.index].begin())) << w.index;
      wire::IcrcContext ctx{a->local().ip, r->local().ip, a->local().port, r->local().port};
      uint16_t id = 0;
      const auto res = wire::icrc_verify(ctx, got->data(), got->size(), true, &id);
      if (w.id == 0) {
        EXPECT_EQ(res, wire::IcrcResult::kGood) << "frame " << w.index;
      } else {
        EXPECT_EQ(res, wire::IcrcResult::kGoodInferredId) << "frame " << w.index;
        EXPECT_EQ(id, w.id) << "frame " << w.index;
      }
    }
  }
}

TEST(UdpGso, Ipv6GroupsKeepTheirBytes) {
  std::string err;
  auto a = UdpLink::open(ep("::1", 0), UdpLink::Options{}, &err);
  if (!a) GTEST_SKIP() << "no IPv6: " << err;
  if (!a->gso()) GTEST_SKIP() << "no UDP GSO in this kernel";
  PlainSocket r(ep("::1", 0));
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TxFrame> tx;
  for (uint32_t i = 0; i < 20; ++i) bytes.push_back(test::frame_bytes(i, i == 19 ? 100 : 500));
  for (auto& b : bytes) tx.push_back(test::make_tx(r.local(), b, 2));
  ASSERT_EQ(a->send(tx.data(), tx.size()), tx.size());
  EXPECT_EQ(a->counters().tx_gso_sends, 1u);
  for (uint32_t i = 0; i < 20; ++i) {
    auto got = r.recv();
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, bytes[i]) << i;  // no IPv6 ID, nothing to move
  }
}

TEST(UdpGro, CoalescedReceivesComeBackAsTheExactFramesInOrder) {
  auto b = must_open(ep("127.0.0.3", 0));
  ASSERT_TRUE(b);
  if (!b->gro()) GTEST_SKIP() << "no UDP GRO in this kernel";
  PlainSocket s(ep("127.0.0.2", 0));
  // Three GSO sends (segments carry IPv4 IDs 0..n-1, so their ICRCs are for those IDs), with a
  // plain datagram between them.
  std::vector<std::vector<uint8_t>> sent;  // each frame as it would be with ID 0
  auto gso_send = [&](uint32_t first, int count, size_t len, size_t last_len) {
    std::vector<std::vector<uint8_t>> g;
    for (int k = 0; k < count; ++k) {
      const size_t l = k + 1 == count ? last_len : len;
      g.push_back(icrc_frame(first + uint32_t(k), l, s.local(), b->local(), uint16_t(k)));
      sent.push_back(icrc_frame(first + uint32_t(k), l, s.local(), b->local(), 0));
    }
    s.send_gso(b->local(), g);
  };
  gso_send(0, 10, 1000, 640);
  {
    auto one = icrc_frame(10, 333, s.local(), b->local());
    sent.push_back(one);
    sockaddr_storage ss{};
    socklen_t sl = b->local().to_sockaddr(ss);
    ASSERT_EQ(::sendto(s.fd(), one.data(), one.size(), 0, reinterpret_cast<sockaddr*>(&ss), sl), 333);
  }
  gso_send(11, 40, 300, 300);
  gso_send(51, 15, 4136, 2000);

  // Small batches, so a coalesced receive spans several recv() calls.
  std::vector<std::vector<uint8_t>> got;
  const uint64_t end = test::mono_ns() + 3'000'000'000ull;
  std::vector<std::vector<uint8_t>> previous;  // the last call's frames, as handed out
  std::vector<RxFrame> last;
  while (got.size() < sent.size() && test::mono_ns() < end) {
    // The previous call's frames were still intact right up to this call.
    for (size_t i = 0; i < last.size(); ++i)
      ASSERT_TRUE(std::equal(previous[i].begin(), previous[i].end(), last[i].buf));
    RxFrame rx[3];
    const size_t n = b->recv(rx, 3);
    ASSERT_LE(n, 3u);
    // The first call takes 3 of the first receive's 10 frames; the 7 waiting in the link do not
    // show on the socket, so service() asks to be called now.
    if (got.empty() && n > 0) {
      EXPECT_EQ(n, 3u);
      EXPECT_EQ(b->service(123), 123u);
    }
    last.assign(rx, rx + n);
    previous.clear();
    for (size_t i = 0; i < n; ++i) {
      EXPECT_FALSE(rx[i].truncated);
      EXPECT_EQ(rx[i].cap, rx[i].len);
      EXPECT_EQ(rx[i].src, s.local());
      EXPECT_EQ(rx[i].dst, b->local().ip);
      previous.emplace_back(rx[i].buf, rx[i].buf + rx[i].len);
      got.push_back(previous.back());
    }
    if (n == 0) {
      pollfd p{b->fd(), POLLIN, 0};
      (void)::poll(&p, 1, 100);
    }
  }
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i].size(), sent[i].size()) << i;
    // Exact, ICRC included: the segment's ID is taken back out of its ICRC.
    EXPECT_EQ(got[i], sent[i]) << i;
    wire::IcrcContext ctx{s.local().ip, b->local().ip, s.local().port, b->local().port};
    EXPECT_EQ(wire::icrc_verify(ctx, got[i].data(), got[i].size(), false), wire::IcrcResult::kGood) << i;
  }
  EXPECT_EQ(b->service(123), 0u);  // nothing waits any more
  EXPECT_EQ(b->counters().rx_gro_receives, 3u);
  EXPECT_EQ(b->counters().rx_gro_frames, 65u);
  EXPECT_EQ(b->counters().rx_frames, 66u);
  EXPECT_EQ(b->counters().rx_truncated, 0u);
}

TEST(UdpGro, LinkToLinkIsExactBothWays) {
  auto a = must_open(ep("127.0.0.2", 0));
  auto b = must_open(ep("127.0.0.3", 0));
  ASSERT_TRUE(a && b);
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TxFrame> tx;
  for (uint32_t i = 0; i < 200; ++i)
    bytes.push_back(icrc_frame(i, i % 50 == 49 ? 1500 : 4136, a->local(), b->local()));
  for (auto& x : bytes) tx.push_back(test::make_tx(b->local(), x, 3));
  ASSERT_EQ(a->send(tx.data(), tx.size()), tx.size());
  auto got = recv_frames(*b, bytes.size(), 3000);
  ASSERT_EQ(got.size(), bytes.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].bytes, bytes[i]) << i;
    EXPECT_EQ(got[i].src, a->local());
  }
  if (a->gso()) {
    EXPECT_GT(a->counters().tx_gso_sends, 0u);
  }
  if (a->gso() && b->gro()) {
    EXPECT_GT(b->counters().rx_gro_receives, 0u);
  }
}

TEST(UdpGro, ReceiveLargerThanTheBufferKeepsTheFramesThatFit) {
  UdpLink::Options o;
  o.rx_slot_bytes = 2500;
  auto b = must_open(ep("127.0.0.3", 0), o);
  ASSERT_TRUE(b);
  if (!b->gro()) GTEST_SKIP() << "no UDP GRO in this kernel";
  PlainSocket s(ep("127.0.0.2", 0));
  std::vector<std::vector<uint8_t>> g;
  for (uint32_t k = 0; k < 5; ++k) g.push_back(test::frame_bytes(k, 1000));
  s.send_gso(b->local(), g);
  auto got = recv_frames(*b, 3, 2000);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_FALSE(got[0].truncated);
  EXPECT_FALSE(got[1].truncated);
  EXPECT_EQ(test::frame_index(got[0].bytes), 0u);
  EXPECT_EQ(test::frame_index(got[1].bytes), 1u);
  EXPECT_TRUE(got[2].truncated);
  EXPECT_EQ(got[2].len, 1000u);
  EXPECT_EQ(got[2].bytes.size(), 500u);  // what fit
  EXPECT_EQ(b->counters().rx_frames, 2u);
  EXPECT_EQ(b->counters().rx_truncated, 3u);  // the cut frame and the two behind it
}

TEST(UdpGso, SwitchedOffSendsOneDatagramPerFrame) {
  UdpLink::Options o;
  o.gso = false;
  o.gro = false;
  auto a = must_open(ep("127.0.0.2", 0), o);
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->gso());
  EXPECT_FALSE(a->gro());
  PlainSocket r(ep("127.0.0.3", 0));
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TxFrame> tx;
  for (uint32_t i = 0; i < 100; ++i) bytes.push_back(test::frame_bytes(i, 800));
  for (auto& b : bytes) tx.push_back(test::make_tx(r.local(), b, 2));
  ASSERT_EQ(a->send(tx.data(), tx.size()), tx.size());
  EXPECT_EQ(a->counters().tx_gso_sends, 0u);
  EXPECT_EQ(a->counters().tx_frames, 100u);
  for (uint32_t i = 0; i < 100; ++i) {
    auto got = r.recv();
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, bytes[i]) << i;  // no ICRC moved: every datagram has ID 0
  }
}

TEST(UdpGso, EnvironmentSwitchesThemOff) {
  ::setenv("SOFTRDMA_GSO", "0", 1);
  ::setenv("SOFTRDMA_GRO", "off", 1);
  const UdpLink::Options off = UdpLink::Options::from_env();
  auto a = must_open(ep("127.0.0.2", 0), off);
  std::string err;
  auto b = UdpLink::open(ep("127.0.0.3", 0), &err);  // the plain open() reads the environment
  ::unsetenv("SOFTRDMA_GSO");
  ::unsetenv("SOFTRDMA_GRO");
  EXPECT_FALSE(off.gso);
  EXPECT_FALSE(off.gro);
  ASSERT_TRUE(a && b) << err;
  EXPECT_FALSE(a->gso() || a->gro() || b->gso() || b->gro());
  const UdpLink::Options on = UdpLink::Options::from_env();
  EXPECT_TRUE(on.gso && on.gro);
}

// A kernel that refuses GSO for this socket (here: UDP checksums off, SO_NO_CHECK, which GSO
// needs) gets EINVAL on the GSO message; the frames go out one by one, and GSO stays off.
TEST(UdpGso, RefusedByTheKernelFallsBackForGood) {
  auto a = must_open(ep("127.0.0.2", 0));
  ASSERT_TRUE(a);
  if (!a->gso()) GTEST_SKIP() << "no UDP GSO in this kernel";
  const int one = 1;
  ASSERT_EQ(::setsockopt(a->fd(), SOL_SOCKET, SO_NO_CHECK, &one, sizeof one), 0);
  PlainSocket r(ep("127.0.0.3", 0));
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TxFrame> tx;
  for (uint32_t i = 0; i < 30; ++i) bytes.push_back(test::frame_bytes(i, 600));
  for (auto& b : bytes) tx.push_back(test::make_tx(r.local(), b, 1));
  ASSERT_EQ(a->send(tx.data(), 10), 10u);
  EXPECT_FALSE(a->gso());
  EXPECT_EQ(a->counters().tx_gso_disabled, 1u);
  EXPECT_EQ(a->counters().tx_gso_sends, 0u);
  EXPECT_EQ(a->counters().tx_errors, 0u);
  EXPECT_EQ(a->counters().tx_frames, 10u);
  ASSERT_EQ(a->send(tx.data() + 10, 20), 20u);
  EXPECT_EQ(a->counters().tx_gso_sends, 0u);
  EXPECT_EQ(a->counters().tx_frames, 30u);
  for (uint32_t i = 0; i < 30; ++i) {
    auto got = r.recv();
    ASSERT_TRUE(got) << i;
    EXPECT_EQ(*got, bytes[i]) << i;
  }
}

// A GSO message refused for a reason that is not GSO's (here: broadcast without SO_BROADCAST)
// is sent again frame by frame, so the errors fall on single frames as without GSO; GSO stays on.
TEST(UdpGso, OtherErrorsFallOnSingleFrames) {
  auto a = must_open(ep("127.0.0.2", 0));
  ASSERT_TRUE(a);
  if (!a->gso()) GTEST_SKIP() << "no UDP GSO in this kernel";
  PlainSocket r(ep("127.0.0.3", 0));
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TxFrame> tx;
  for (uint32_t i = 0; i < 8; ++i) bytes.push_back(test::frame_bytes(i, 600));
  for (uint32_t i = 0; i < 8; ++i)
    tx.push_back(test::make_tx(i < 3 ? ep("255.255.255.255", 9) : r.local(), bytes[i], 1));
  EXPECT_EQ(a->send(tx.data(), tx.size()), tx.size());
  EXPECT_EQ(a->counters().tx_errors, 3u);
  EXPECT_TRUE(a->gso());
  EXPECT_EQ(a->counters().tx_gso_disabled, 0u);
  EXPECT_EQ(a->counters().tx_gso_sends, 1u);  // the five to r
  EXPECT_EQ(a->counters().tx_frames, 5u);
  for (uint32_t i = 3; i < 8; ++i) {
    auto got = r.recv();
    ASSERT_TRUE(got) << i;
    ASSERT_EQ(got->size(), 600u);
    // Sent as one GSO group: all but the first have their ICRC moved to their IPv4 ID.
    EXPECT_TRUE(std::equal(got->begin(), got->end() - 4, bytes[i].begin())) << i;
  }
}

}  // namespace
}  // namespace softrdma::link
