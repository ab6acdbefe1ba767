#include "link/udp_link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <netpacket/packet.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "link_test_util.h"
#include "wire/icrc.h"

namespace softrdma::link {
namespace {

using test::ep;
using test::frame_bytes;
using test::frame_index;
using test::make_tx;
using test::recv_frames;

std::unique_ptr<UdpLink> must_open(const Endpoint& e) {
  std::string err;
  auto l = UdpLink::open(e, &err);
  EXPECT_TRUE(l) << err;
  return l;
}

// Sends `count` frames (in one send() call) of `len` bytes split into `nparts` pieces.
void send_batch(Link& from, const Endpoint& to, uint32_t first, size_t count, size_t len,
                uint8_t nparts) {
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TxFrame> tx;
  for (size_t i = 0; i < count; ++i) bytes.push_back(frame_bytes(first + uint32_t(i), len));
  for (auto& b : bytes) tx.push_back(make_tx(to, b, nparts));
  ASSERT_EQ(from.send(tx.data(), tx.size()), count);
}

TEST(UdpLink, EphemeralPortsExchangeMultiPartBatches) {
  auto a = must_open(ep("127.0.0.2", 0));
  auto b = must_open(ep("127.0.0.3", 0));
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->local().port, 0);
  EXPECT_NE(b->local().port, 0);
  EXPECT_EQ(a->local().ip, *IpAddr::parse("127.0.0.2"));
  EXPECT_EQ(a->describe(), "udp(" + a->local().str() + ")");

  // 150 frames: more than one sendmmsg batch (64).
  send_batch(*a, b->local(), 0, 150, 300, 3);
  auto got = recv_frames(*b, 150, 3000);
  ASSERT_EQ(got.size(), 150u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].bytes, frame_bytes(uint32_t(i), 300)) << i;  // in order on loopback
    EXPECT_FALSE(got[i].truncated);
    EXPECT_EQ(got[i].src, a->local());
    EXPECT_EQ(got[i].dst, *IpAddr::parse("127.0.0.3"));
  }
  EXPECT_EQ(a->counters().tx_frames, 150u);
  EXPECT_EQ(a->counters().tx_bytes, 150u * 300);
  EXPECT_EQ(b->counters().rx_frames, 150u);
  EXPECT_EQ(b->counters().rx_bytes, 150u * 300);

  // And back, with four parts including an empty one.
  std::vector<uint8_t> x = frame_bytes(7, 100);
  TxFrame f = make_tx(a->local(), x, 3);
  f.parts[3] = iovec{nullptr, 0};
  f.nparts = 4;
  ASSERT_EQ(b->send(&f, 1), 1u);
  auto back = recv_frames(*a, 1, 2000);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].bytes, x);
  EXPECT_EQ(back[0].src, b->local());
}

// Messages that come one at a time are received with one try each (a recvmmsg that asks for
// more tries again before it returns); a backlog is then taken in whole batches. Nothing is
// lost or reordered while the receive size changes.
TEST(UdpLink, ReceiveSizeFollowsTheTraffic) {
  auto a = must_open(ep("127.0.0.2", 0));
  auto b = must_open(ep("127.0.0.3", 0));
  ASSERT_TRUE(a && b);
  for (uint32_t i = 0; i < 3; ++i) {  // lone datagrams: the socket runs dry after each
    send_batch(*a, b->local(), i, 1, 64, 1);
    auto got = recv_frames(*b, 1, 2000);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].bytes, frame_bytes(i, 64));
    RxFrame rx[4];
    EXPECT_EQ(b->recv(rx, 4), 0u);  // a poller looks again and finds nothing
  }
  // 40 datagrams wait (one send each, so none is a GSO group).
  for (uint32_t i = 0; i < 40; ++i) send_batch(*a, b->local(), 100 + i, 1, 64, 1);
  std::vector<size_t> per_call;
  std::vector<std::vector<uint8_t>> got;
  for (int calls = 0; calls < 100 && got.size() < 40; ++calls) {
    RxFrame rx[64];
    const size_t n = b->recv(rx, 64);
    if (n == 0) continue;
    per_call.push_back(n);
    for (size_t i = 0; i < n; ++i) got.emplace_back(rx[i].buf, rx[i].buf + rx[i].len);
  }
  ASSERT_EQ(got.size(), 40u);
  for (uint32_t i = 0; i < 40; ++i) EXPECT_EQ(got[i], frame_bytes(100 + i, 64)) << i;
  // One per call while the link still expects lone messages, then the rest at once.
  EXPECT_EQ(per_call, (std::vector<size_t>{1, 1, 38}));
  RxFrame rx[64];
  EXPECT_EQ(b->recv(rx, 64), 0u);
  EXPECT_EQ(b->counters().rx_frames, 43u);
}

TEST(UdpLink, SameFixedPortOnTwoLoopbackAddresses) {
  auto a = must_open(ep("127.0.0.2", 0));
  ASSERT_TRUE(a);
  const uint16_t port = a->local().port;
  auto b = must_open(ep("127.0.0.3", port));
  ASSERT_TRUE(b);
  EXPECT_EQ(b->local().port, port);
  std::string err;
  EXPECT_FALSE(UdpLink::open(ep("127.0.0.2", port), &err));  // taken, no SO_REUSEADDR
  EXPECT_NE(err.find("bind"), std::string::npos) << err;

  send_batch(*a, b->local(), 0, 10, 64, 1);
  send_batch(*b, a->local(), 100, 10, 64, 2);
  auto at_b = recv_frames(*b, 10, 2000);
  auto at_a = recv_frames(*a, 10, 2000);
  ASSERT_EQ(at_b.size(), 10u);
  ASSERT_EQ(at_a.size(), 10u);
  for (auto& r : at_b) {
    EXPECT_EQ(r.src, ep("127.0.0.2", port));
    EXPECT_EQ(r.dst, *IpAddr::parse("127.0.0.3"));
  }
  for (auto& r : at_a) {
    EXPECT_EQ(r.src, ep("127.0.0.3", port));
    EXPECT_EQ(r.dst, *IpAddr::parse("127.0.0.2"));
    EXPECT_GE(frame_index(r.bytes), 100u);
  }
}

TEST(UdpLink, WildcardBindReportsDestinationFromPktinfo) {
  auto any = must_open(ep("0.0.0.0", 0));
  auto a = must_open(ep("127.0.0.2", 0));
  ASSERT_TRUE(any && a);
  const uint16_t port = any->local().port;
  send_batch(*a, ep("127.0.0.5", port), 0, 1, 40, 1);
  send_batch(*a, ep("127.0.0.6", port), 1, 1, 40, 1);
  auto got = recv_frames(*any, 2, 2000);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].dst, *IpAddr::parse("127.0.0.5"));
  EXPECT_EQ(got[1].dst, *IpAddr::parse("127.0.0.6"));
}

// Frame k of a GSO send that the kernel cut up (GRO off at the receiver): the sender moved its
// last 4 bytes, the ICRC's place, to IPv4 ID k (udp_link.h); the rest is untouched.
std::vector<uint8_t> as_cut_segment(std::vector<uint8_t> b, uint16_t k) {
  uint8_t* icrc = b.data() + b.size() - 4;
  if (k > 0) wire::icrc_store(icrc, wire::icrc_load(icrc) ^ wire::icrc_ipv4_id_delta(b.size() - 4, k));
  return b;
}

// Whether UDP_GRO is set on the socket right now (-1: cannot tell).
int gro_set(const UdpLink& l) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(l.fd(), SOL_UDP, UDP_GRO, &v, &len) != 0) return -1;
  return v;
}

// One burst of a ping-pong at `to`: frame `idx` of `len` bytes from `from`, received and checked,
// then an empty look (the poller finds the socket dry).
void lone_burst(UdpLink& from, UdpLink& to, uint32_t idx, size_t len, uint8_t parts) {
  send_batch(from, to.local(), idx, 1, len, parts);
  auto got = recv_frames(to, 1, 2000);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].bytes, frame_bytes(idx, len)) << idx;
  EXPECT_EQ(got[0].src, from.local());
  EXPECT_EQ(got[0].dst, to.local().ip);
  RxFrame rx[4];
  EXPECT_EQ(to.recv(rx, 4), 0u);
}

// A reply with the ACK held for it: a 24-byte and a 20-byte frame in one send (one GSO message),
// received (checked) and followed by an empty look. `cut`: the receiver has GRO off, so the
// kernel cuts the pair and the second frame keeps the ICRC of IPv4 ID 1.
void pair_burst(UdpLink& from, UdpLink& to, uint32_t idx, bool cut) {
  std::vector<uint8_t> x = frame_bytes(idx, 24), y = frame_bytes(idx + 1, 20);
  TxFrame f[2] = {make_tx(to.local(), x, 2), make_tx(to.local(), y, 1)};
  ASSERT_EQ(from.send(f, 2), 2u);
  auto got = recv_frames(to, 2, 2000);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].bytes, x) << idx;
  EXPECT_EQ(got[1].bytes, cut ? as_cut_segment(y, 1) : y) << idx;
  RxFrame rx[4];
  EXPECT_EQ(to.recv(rx, 4), 0u);
}

// A ping-pong's traffic (one frame per burst) makes the link receive by recvfrom with GRO off;
// lone frames still arrive intact with their addresses, a GSO stream that comes then arrives
// cut up and whole and turns GRO back on, so the next stream is coalesced again.
TEST(UdpLink, LoneFramesGoPlainAndAStreamTurnsGroBackOn) {
  auto a = must_open(ep("127.0.0.2", 0));
  auto b = must_open(ep("127.0.0.3", 0));
  ASSERT_TRUE(a && b);
  if (!b->gro()) GTEST_SKIP() << "no UDP_GRO in this kernel";
  EXPECT_EQ(gro_set(*b), 1);
  uint32_t idx = 0;
  for (; idx + 1 < UdpLink::kPlainWindow; ++idx) lone_burst(*a, *b, idx, 64, 3);
  EXPECT_FALSE(b->plain_rx());
  EXPECT_EQ(b->counters().gro_switches, 0u);
  lone_burst(*a, *b, idx++, 64, 3);  // the window's last burst decides
  ASSERT_TRUE(b->plain_rx());
  EXPECT_EQ(gro_set(*b), 0);
  EXPECT_EQ(b->counters().gro_switches, 1u);
  EXPECT_EQ(b->counters().rx_plain_receives, 0u);
  for (int i = 0; i < 5; ++i) lone_burst(*a, *b, idx++, 40 + size_t(i) * 100, 2);  // large: sendmmsg
  EXPECT_EQ(a->counters().tx_frames, idx);
  EXPECT_EQ(b->counters().rx_frames, idx);
  EXPECT_EQ(b->counters().rx_plain_receives, 5u);

  const uint64_t coalesced_before = b->counters().rx_gro_receives;
  send_batch(*a, b->local(), 1000, 40, 1000, 2);  // one GSO send, cut up by the kernel
  auto stream = recv_frames(*b, 40, 2000);
  ASSERT_EQ(stream.size(), 40u);
  for (uint32_t i = 0; i < 40; ++i) {
    EXPECT_EQ(stream[i].len, 1000u);
    EXPECT_EQ(stream[i].bytes, as_cut_segment(frame_bytes(1000 + i, 1000), uint16_t(i))) << i;
  }
  EXPECT_EQ(b->counters().rx_gro_receives, coalesced_before);
  EXPECT_FALSE(b->plain_rx());
  EXPECT_EQ(gro_set(*b), 1);
  EXPECT_EQ(b->counters().gro_switches, 2u);

  send_batch(*a, b->local(), 2000, 40, 1000, 2);
  auto again = recv_frames(*b, 40, 2000);
  ASSERT_EQ(again.size(), 40u);
  for (uint32_t i = 0; i < 40; ++i) EXPECT_EQ(again[i].bytes, frame_bytes(2000 + i, 1000)) << i;
  EXPECT_GT(b->counters().rx_gro_receives, coalesced_before);
}

// Replies that each bring an ACK (perftest's signaled sends) turn GRO back on within a window,
// after which each pair is one coalesced receive; an ACK now and then (one burst in 32) keeps
// the link plain.
TEST(UdpLink, PairsTurnGroBackOnAndRarePairsDoNot) {
  auto a = must_open(ep("127.0.0.2", 0));
  auto b = must_open(ep("127.0.0.3", 0));
  ASSERT_TRUE(a && b);
  if (!b->gro()) GTEST_SKIP() << "no UDP_GRO in this kernel";
  uint32_t idx = 0;
  for (uint32_t i = 0; i < UdpLink::kPlainWindow; ++i) lone_burst(*a, *b, idx++, 64, 1);
  ASSERT_TRUE(b->plain_rx());
  for (uint32_t i = 0; i < 3 * UdpLink::kPlainWindow; ++i) {  // one pair in 32 bursts
    if (i % 32 == 31) {
      pair_burst(*a, *b, idx, true);
      idx += 2;
    } else {
      lone_burst(*a, *b, idx++, 64, 1);
    }
  }
  EXPECT_TRUE(b->plain_rx());
  for (uint32_t i = 0; i < UdpLink::kPlainWindow; ++i, idx += 2) pair_burst(*a, *b, idx, b->plain_rx());
  EXPECT_FALSE(b->plain_rx());
  EXPECT_EQ(gro_set(*b), 1);
  const uint64_t coalesced_before = b->counters().rx_gro_receives;
  for (uint32_t i = 0; i < 4; ++i, idx += 2) pair_burst(*a, *b, idx, false);
  EXPECT_EQ(b->counters().rx_gro_receives, coalesced_before + 4);
  EXPECT_FALSE(b->plain_rx());
}

// GRO goes off only when the socket is dry: a coalesced datagram queued behind the window's
// last lone frame is still read with its segment size and cut up into its own frames.
TEST(UdpLink, CoalescedDatagramQueuedBehindLoneFramesIsCutUp) {
  auto a = must_open(ep("127.0.0.2", 0));
  auto b = must_open(ep("127.0.0.3", 0));
  ASSERT_TRUE(a && b);
  if (!b->gro()) GTEST_SKIP() << "no UDP_GRO in this kernel";
  uint32_t idx = 0;
  for (; idx + 1 < UdpLink::kPlainWindow; ++idx) lone_burst(*a, *b, idx, 64, 1);
  EXPECT_EQ(gro_set(*b), 1);
  send_batch(*a, b->local(), 100, 1, 64, 1);    // the window's last burst begins: a lone frame
  send_batch(*a, b->local(), 101, 20, 500, 2);  // and, queued behind it, a coalesced datagram
  RxFrame rx[1];
  ASSERT_EQ(b->recv(rx, 1), 1u);
  EXPECT_EQ(rx[0].len, 64u);
  EXPECT_EQ(gro_set(*b), 1);  // not dry: no switch
  for (uint32_t i = 1; i <= 20; ++i) {
    ASSERT_EQ(b->recv(rx, 1), 1u) << i;
    ASSERT_EQ(rx[0].len, 500u) << i;
    EXPECT_EQ(std::vector<uint8_t>(rx[0].buf, rx[0].buf + rx[0].len), frame_bytes(100 + i, 500)) << i;
  }
  EXPECT_EQ(b->recv(rx, 1), 0u);  // dry: the window ends with one burst of many in 64
  EXPECT_EQ(b->counters().rx_gro_receives, 1u);
  EXPECT_TRUE(b->plain_rx());
  EXPECT_EQ(gro_set(*b), 0);
}

// Without one local address, recvfrom could not tell the destination: such a link keeps recvmsg.
TEST(UdpLink, WildcardBindNeverReceivesPlain) {
  auto any = must_open(ep("0.0.0.0", 0));
  auto a = must_open(ep("127.0.0.2", 0));
  ASSERT_TRUE(any && a);
  const uint16_t port = any->local().port;
  for (uint32_t i = 0; i < 2 * UdpLink::kPlainWindow; ++i) {
    send_batch(*a, ep(i % 2 ? "127.0.0.7" : "127.0.0.8", port), i, 1, 40, 1);
    auto got = recv_frames(*any, 1, 2000);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].dst, *IpAddr::parse(i % 2 ? "127.0.0.7" : "127.0.0.8"));
    RxFrame rx[4];
    EXPECT_EQ(any->recv(rx, 4), 0u);
  }
  EXPECT_FALSE(any->plain_rx());
}

// A link for a receiver that does not infer IPv4 IDs (Options::plain_rx = false) keeps GRO on.
TEST(UdpLink, PlainReceivingCanBeRefused) {
  UdpLink::Options o = UdpLink::Options::from_env();
  o.plain_rx = false;
  std::string err;
  auto a = must_open(ep("127.0.0.2", 0));
  auto b = UdpLink::open(ep("127.0.0.3", 0), o, &err);
  ASSERT_TRUE(a && b) << err;
  for (uint32_t i = 0; i < 2 * UdpLink::kPlainWindow; ++i) lone_burst(*a, *b, i, 64, 1);
  EXPECT_FALSE(b->plain_rx());
  if (b->gro()) {
    EXPECT_EQ(gro_set(*b), 1);
  }
}

TEST(UdpLink, TruncationIsFlaggedWithRealLength) {
  auto a = must_open(ep("127.0.0.2", 0));
  UdpLink::Options small;
  small.rx_slot_bytes = 100;  // receive buffers of 100 bytes
  std::string err;
  auto b = UdpLink::open(ep("127.0.0.3", 0), small, &err);
  ASSERT_TRUE(a && b) << err;
  send_batch(*a, b->local(), 0, 1, 2000, 2);
  send_batch(*a, b->local(), 1, 1, 50, 1);
  auto got = recv_frames(*b, 2, 2000);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].truncated);
  EXPECT_EQ(got[0].len, 2000u);
  EXPECT_EQ(got[0].bytes.size(), 100u);  // what fit
  EXPECT_FALSE(got[1].truncated);
  EXPECT_EQ(got[1].len, 50u);
  EXPECT_EQ(b->counters().rx_truncated, 1u);
  EXPECT_EQ(b->counters().rx_frames, 1u);
}

TEST(UdpLink, Ipv6Loopback) {
  std::string err;
  auto a = UdpLink::open(ep("::1", 0), &err);
  if (!a) GTEST_SKIP() << "no IPv6: " << err;
  auto b = must_open(ep("::1", 0));
  ASSERT_TRUE(b);
  EXPECT_FALSE(a->local().ip.is_v4());
  EXPECT_EQ(a->describe(), "udp([::1]:" + std::to_string(a->local().port) + ")");
  send_batch(*a, b->local(), 0, 70, 500, 4);
  auto got = recv_frames(*b, 70, 2000);
  ASSERT_EQ(got.size(), 70u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].bytes, frame_bytes(uint32_t(i), 500));
    EXPECT_EQ(got[i].src, a->local());
    EXPECT_EQ(got[i].dst, *IpAddr::parse("::1"));
  }
}

TEST(UdpLink, BadFramesCountErrorsAndAreSkipped) {
  auto a = must_open(ep("127.0.0.2", 0));
  auto b = must_open(ep("127.0.0.3", 0));
  ASSERT_TRUE(a && b);
  std::vector<uint8_t> x0 = frame_bytes(0, 80), x1 = frame_bytes(1, 80), x2 = frame_bytes(2, 80),
                       big = frame_bytes(3, 70000);
  TxFrame f[4] = {make_tx(ep("::1", 9), x0, 1),  // wrong family for an IPv4 socket
                  make_tx(b->local(), x1, 1), make_tx(b->local(), big, 2),  // > 64 KiB
                  make_tx(b->local(), x2, 1)};
  EXPECT_EQ(a->send(f, 4), 4u);
  EXPECT_EQ(a->counters().tx_errors, 2u);
  EXPECT_EQ(a->counters().tx_frames, 2u);
  auto got = recv_frames(*b, 2, 2000);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(frame_index(got[0].bytes), 1u);
  EXPECT_EQ(frame_index(got[1].bytes), 2u);
}

TEST(UdpLink, AutoLoopbackGivesDistinctAddresses) {
  // A fixed port that is currently free on 127.0.0.2 (taken from an ephemeral bind).
  uint16_t port;
  {
    auto probe = must_open(ep("127.0.0.2", 0));
    ASSERT_TRUE(probe);
    port = probe->local().port;
  }
  std::string err;
  auto first = UdpLink::open_auto_loopback(port, &err);
  ASSERT_TRUE(first) << err;
  auto picked = UdpLink::pick_free_loopback(port);
  ASSERT_TRUE(picked);
  EXPECT_NE(picked->ip, first->local().ip);
  auto second = UdpLink::open_auto_loopback(port, &err);
  ASSERT_TRUE(second) << err;
  EXPECT_NE(second->local().ip, first->local().ip);
  EXPECT_EQ(second->local().port, port);
  EXPECT_EQ(first->local().port, port);
  // The two can talk to each other with zero configuration.
  send_batch(*first, second->local(), 0, 3, 100, 2);
  auto got = recv_frames(*second, 3, 2000);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].src, first->local());
}

// The DF bit makes Linux put IPv4 ID 0 on datagrams from unconnected sockets; the ICRC covers the
// ID, so check it on the wire with a packet socket on lo (needs CAP_NET_RAW). Without GSO: the
// segments of a GSO send carry IDs 0, 1, 2, ... (udp_gso_test.cc, tests/system/wire_capture.sh).
TEST(UdpLink, Ipv4DontFragmentAndZeroIdentification) {
  int ps = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK, htons(ETH_P_IP));
  if (ps < 0) GTEST_SKIP() << "no packet socket: " << strerror(errno);
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_IP);
  sll.sll_ifindex = int(if_nametoindex("lo"));
  ASSERT_EQ(::bind(ps, reinterpret_cast<sockaddr*>(&sll), sizeof sll), 0);
  UdpLink::Options no_gso;
  no_gso.gso = false;
  std::string err;
  auto a = UdpLink::open(ep("127.0.0.2", 0), no_gso, &err);
  auto b = must_open(ep("127.0.0.3", 0));
  ASSERT_TRUE(a && b);
  int seen = 0;
  const uint64_t end = test::mono_ns() + 5'000'000'000ull;
  while (seen < 3 && test::mono_ns() < end) {
    // Resend each round: under parallel test load the packet socket may drop some copies.
    send_batch(*a, b->local(), 0, 3, 200, 2);
    pollfd p{ps, POLLIN, 0};
    (void)::poll(&p, 1, 100);
    uint8_t buf[2048];
    ssize_t n;
    sockaddr_ll from{};
    socklen_t fl = sizeof from;
    while ((n = ::recvfrom(ps, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl)) > 0) {
      fl = sizeof from;
      if (from.sll_pkttype == PACKET_OUTGOING) continue;  // lo shows each packet twice
      if (size_t(n) < sizeof(iphdr) + sizeof(udphdr)) continue;
      iphdr ip;
      udphdr udp;
      std::memcpy(&ip, buf, sizeof ip);
      std::memcpy(&udp, buf + ip.ihl * 4, sizeof udp);
      if (ip.protocol != IPPROTO_UDP || ntohs(udp.source) != a->local().port ||
          ntohs(udp.dest) != b->local().port)
        continue;
      EXPECT_TRUE(ntohs(ip.frag_off) & IP_DF);
      EXPECT_EQ(ip.id, 0);
      ++seen;
    }
  }
  ::close(ps);
  EXPECT_GE(seen, 3);
}

}  // namespace
}  // namespace softrdma::link
