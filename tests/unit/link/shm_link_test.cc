// The same-host shared-memory link: frames through the rings, zero-copy receive, wake-ups of a
// sleeping receiver, the area's permissions, stale areas, and the fall back to UDP.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "link/shm_link.h"
#include "link_test_util.h"
#include "wire/icrc.h"

namespace softrdma::link {
namespace {

using test::ep;
using test::frame_bytes;
using test::make_tx;
using test::mono_ns;

std::unique_ptr<ShmLink> open_shm(const char* ip = "127.0.0.1", uint16_t port = 0) {
  std::string err;
  auto u = UdpLink::open(ep(ip, port), &err);
  EXPECT_TRUE(u) << err;
  if (!u) return nullptr;
  return std::make_unique<ShmLink>(std::move(u));
}

std::string area_path(const ShmLink& l) {
  return "/dev/shm" + ShmLink::area_name(l.local());
}

// Receives until `want` frames arrived (copied out) or 5 s passed.
std::vector<std::vector<uint8_t>> recv_n(Link& l, size_t want, std::vector<Endpoint>* srcs = nullptr) {
  std::vector<std::vector<uint8_t>> out;
  RxFrame rx[64];
  const uint64_t deadline = mono_ns() + 5'000'000'000ull;
  while (out.size() < want && mono_ns() < deadline) {
    size_t n = l.recv(rx, 64);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_FALSE(rx[i].truncated);
      out.emplace_back(rx[i].buf, rx[i].buf + rx[i].len);
      if (srcs) srcs->push_back(rx[i].src);
    }
  }
  return out;
}

TEST(ShmLink, AreaIsPrivateAndRemovedOnClose) {
  auto a = open_shm();
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->has_area());
  struct stat st {};
  const std::string path = area_path(*a);
  ASSERT_EQ(0, stat(path.c_str(), &st)) << path;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_NE(a->describe().find("shm+udp("), std::string::npos) << a->describe();
  a.reset();
  EXPECT_NE(0, stat(path.c_str(), &st));
}

TEST(ShmLink, FramesGoThroughTheRingIntact) {
  auto a = open_shm(), b = open_shm();
  ASSERT_TRUE(a && b);
  std::vector<std::vector<uint8_t>> bytes;
  const size_t kFrames = 3000;  // wraps the 4 MiB ring several times
  std::vector<TxFrame> tx;
  for (uint32_t i = 0; i < kFrames; ++i) bytes.push_back(frame_bytes(i, 16 + (i * 977) % 4200));
  for (uint32_t i = 0; i < kFrames; ++i) tx.push_back(make_tx(b->local(), bytes[i], uint8_t(1 + i % 3)));
  size_t sent = 0;
  std::vector<std::vector<uint8_t>> got;
  std::vector<Endpoint> srcs;
  const uint64_t deadline = mono_ns() + 10'000'000'000ull;
  while ((sent < kFrames || got.size() < kFrames) && mono_ns() < deadline) {
    if (sent < kFrames) sent += a->send(tx.data() + sent, std::min<size_t>(64, kFrames - sent));
    auto more = recv_n(*b, 1, &srcs);
    for (auto& m : more) got.push_back(std::move(m));
  }
  ASSERT_EQ(got.size(), kFrames);
  for (uint32_t i = 0; i < kFrames; ++i) {
    ASSERT_EQ(got[i], bytes[i]) << i;
    ASSERT_EQ(srcs[i], a->local());
  }
  EXPECT_EQ(a->shm_counters().tx_frames, kFrames);
  EXPECT_EQ(b->shm_counters().rx_frames, kFrames);
  EXPECT_EQ(a->udp().counters().tx_frames, 0u);
  EXPECT_EQ(a->counters().tx_frames, kFrames);
  EXPECT_EQ(b->counters().rx_frames, kFrames);
}

// Each sender has a ring of its own; the receiver looks at the rings senders have claimed, so a
// sender that arrives while the receiver is already polling, and one that takes over the ring a
// closed sender gave back, must both get through, each in its own order.
TEST(ShmLink, SendersThatArriveLaterAreHeard) {
  auto b = open_shm();
  ASSERT_TRUE(b);
  std::vector<std::unique_ptr<ShmLink>> senders;
  std::vector<Endpoint> from;
  std::vector<std::vector<uint8_t>> got;
  auto send_round = [&](uint32_t round) {
    for (size_t s = 0; s < senders.size(); ++s) {
      auto f = frame_bytes(uint32_t(round * 100 + s), 64 + s);
      TxFrame t = make_tx(b->local(), f, 1);
      ASSERT_EQ(1u, senders[s]->send(&t, 1)) << "sender " << s;
      auto one = recv_n(*b, 1, &from);
      ASSERT_EQ(one.size(), 1u) << "round " << round << ", sender " << s;
      EXPECT_EQ(one[0], f);
      EXPECT_EQ(from.back(), senders[s]->local());
    }
  };
  for (uint32_t round = 0; round < 4; ++round) {
    senders.push_back(open_shm());  // a new sender while b polls
    ASSERT_TRUE(senders.back());
    send_round(round);
  }
  senders.erase(senders.begin());  // gives its ring back...
  senders.push_back(open_shm());   // ... which the next sender may take
  ASSERT_TRUE(senders.back());
  send_round(9);
  for (auto& s : senders) EXPECT_EQ(s->udp().counters().tx_frames, 0u) << "every frame through a ring";
}

TEST(ShmLink, SleepingReceiverIsWokenThroughItsSocket) {
  auto a = open_shm(), b = open_shm();
  ASSERT_TRUE(a && b);
  auto f0 = frame_bytes(1, 100);
  TxFrame t = make_tx(b->local(), f0, 1);
  for (int round = 0; round < 50; ++round) {
    ASSERT_TRUE(b->prepare_sleep());  // nothing waiting
    ASSERT_EQ(1u, a->send(&t, 1));
    pollfd p{b->fd(), POLLIN, 0};
    ASSERT_EQ(1, poll(&p, 1, 5000)) << "no doorbell, round " << round;
    b->after_wake();
    auto got = recv_n(*b, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0], f0);
    // The doorbell is drained and not handed out as a frame.
    RxFrame rx[8];
    for (int k = 0; k < 16; ++k) ASSERT_EQ(0u, b->recv(rx, 8));
  }
  EXPECT_GE(a->shm_counters().tx_doorbells, 50u);
  EXPECT_EQ(b->shm_counters().rx_doorbells, a->shm_counters().tx_doorbells);
  // Frames already waiting veto the sleep; a polling receiver gets no doorbells.
  const uint64_t bells = a->shm_counters().tx_doorbells;
  ASSERT_EQ(1u, a->send(&t, 1));
  EXPECT_EQ(a->shm_counters().tx_doorbells, bells);
  EXPECT_FALSE(b->prepare_sleep());
  EXPECT_EQ(recv_n(*b, 1).size(), 1u);
}

TEST(ShmLink, UdpDestinationsStayOnUdp) {
  auto a = open_shm();
  std::string err;
  auto u = UdpLink::open(ep("127.0.0.1", 0), &err);  // a plain UDP link has no area
  ASSERT_TRUE(a && u) << err;
  auto f = frame_bytes(7, 300);
  TxFrame t = make_tx(u->local(), f, 2);
  ASSERT_EQ(1u, a->send(&t, 1));
  RxFrame rx[4];
  const uint64_t deadline = mono_ns() + 5'000'000'000ull;
  size_t n = 0;
  while (n == 0 && mono_ns() < deadline) n = u->recv(rx, 4);
  ASSERT_EQ(n, 1u);
  EXPECT_EQ(0, std::memcmp(rx[0].buf, f.data(), f.size()));
  EXPECT_EQ(a->shm_counters().tx_frames, 0u);
  EXPECT_EQ(a->udp().counters().tx_frames, 1u);
  // And back: a ShmLink receives UDP too.
  TxFrame back = make_tx(a->local(), f, 1);
  ASSERT_EQ(1u, u->send(&back, 1));
  auto got = recv_n(*a, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], f);
}

// While rings carry the traffic the socket is looked at only every few calls, less often once it
// has been quiet. A UDP frame must still arrive within that period, bring the short period back,
// and a receiver woken through fd() must get it from its very next call.
TEST(ShmLink, UdpFramesArriveWhileRingsCarryTheTraffic) {
  auto a = open_shm(), b = open_shm();
  std::string err;
  auto u = UdpLink::open(ep("127.0.0.1", 0), &err);
  ASSERT_TRUE(a && b && u) << err;
  auto f = frame_bytes(3, 200);
  TxFrame by_ring = make_tx(b->local(), f, 1);
  ASSERT_EQ(1u, a->send(&by_ring, 1));
  ASSERT_EQ(recv_n(*b, 1).size(), 1u);  // b's rings are in use now
  RxFrame rx[8];
  auto go_quiet = [&] {
    for (int i = 0; i < 5000; ++i) ASSERT_EQ(0u, b->recv(rx, 8));
  };
  // Sends one UDP frame, waits until b's socket has it, and counts b's calls until it comes out.
  auto calls_until_udp_frame = [&](bool woken) {
    auto g = frame_bytes(4, 120);
    TxFrame t = make_tx(b->local(), g, 1);
    EXPECT_EQ(1u, u->send(&t, 1));
    pollfd p{b->fd(), POLLIN, 0};
    EXPECT_EQ(1, poll(&p, 1, 5000));
    if (woken) b->after_wake();
    for (int calls = 1; calls <= 1000; ++calls) {
      size_t n = b->recv(rx, 8);
      if (n == 0) continue;
      EXPECT_EQ(n, 1u);
      EXPECT_EQ(std::vector<uint8_t>(rx[0].buf, rx[0].buf + rx[0].len), g);
      EXPECT_EQ(rx[0].src, u->local());
      return calls;
    }
    return 0;
  };
  go_quiet();
  const int quiet = calls_until_udp_frame(false);
  EXPECT_GE(quiet, 1);
  EXPECT_LE(quiet, 64);
  // The socket just brought a frame: back to looking every 8th call.
  const int busy = calls_until_udp_frame(false);
  EXPECT_GE(busy, 1);
  EXPECT_LE(busy, 8);
  go_quiet();
  EXPECT_EQ(calls_until_udp_frame(true), 1);
}

TEST(ShmLink, StaleAreaOfADeadProcessIsReplaced) {
  uint16_t port = 0;
  int fds[2];
  ASSERT_EQ(0, pipe(fds));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto l = open_shm();
    uint16_t p = l && l->has_area() ? l->local().port : 0;
    (void)!write(fds[1], &p, sizeof p);
    _exit(0);  // no destructor: the area is left behind
  }
  ASSERT_EQ(ssize_t(sizeof port), read(fds[0], &port, sizeof port));
  close(fds[0]);
  close(fds[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_NE(port, 0);
  Endpoint e = ep("127.0.0.1", port);
  struct stat st {};
  const std::string path = "/dev/shm" + ShmLink::area_name(e);
  ASSERT_EQ(0, stat(path.c_str(), &st)) << "the leftover should exist";
  auto l = open_shm("127.0.0.1", port);
  ASSERT_TRUE(l);
  EXPECT_TRUE(l->has_area());
  auto a = open_shm();
  auto f = frame_bytes(3, 64);
  TxFrame t = make_tx(l->local(), f, 1);
  ASSERT_EQ(1u, a->send(&t, 1));
  EXPECT_EQ(recv_n(*l, 1).size(), 1u);
  EXPECT_EQ(a->shm_counters().tx_frames, 1u);
}

// Another user can neither open our area nor be sent to through its own: both directions fall
// back to UDP, and still work.
TEST(ShmLink, AnotherUserFallsBackToUdp) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to user nobody";
  auto a = open_shm();
  ASSERT_TRUE(a && a->has_area());
  int to_child[2], to_parent[2];
  ASSERT_EQ(0, pipe(to_child));
  ASSERT_EQ(0, pipe(to_parent));
  const uint16_t aport = a->local().port;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int rc = 0;
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
    rc = [&]() -> int {
      std::string path = "/dev/shm" + ShmLink::area_name(ep("127.0.0.1", aport));
      int fd = open(path.c_str(), O_RDWR);
      if (fd >= 0) return 11;  // must not open the other user's area
      auto c = open_shm();
      if (!c || !c->has_area()) return 12;
      uint16_t cport = c->local().port;
      (void)!write(to_parent[1], &cport, sizeof cport);
      auto f = frame_bytes(42, 500);
      TxFrame t = make_tx(ep("127.0.0.1", aport), f, 1);
      if (c->send(&t, 1) != 1) return 13;
      if (c->shm_counters().tx_frames != 0 || c->udp().counters().tx_frames != 1) return 14;
      auto got = recv_n(*c, 1);  // the parent's answer, over UDP
      if (got.size() != 1 || got[0] != f) rc = 15;
      if (c->shm_counters().rx_frames != 0) rc = 16;
      return rc;  // c closes: its area goes
    }();
    _exit(rc);
  }
  uint16_t cport = 0;
  ASSERT_EQ(ssize_t(sizeof cport), read(to_parent[0], &cport, sizeof cport));
  auto got = recv_n(*a, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], frame_bytes(42, 500));
  EXPECT_EQ(a->shm_counters().rx_frames, 0u);
  // Root could open nobody's 0600 area, but a sender only uses areas of its own uid.
  TxFrame t = make_tx(ep("127.0.0.1", cport), got[0], 1);
  ASSERT_EQ(1u, a->send(&t, 1));
  EXPECT_EQ(a->shm_counters().tx_frames, 0u);
  EXPECT_EQ(a->udp().counters().tx_frames, 1u);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  for (int fd : {to_child[0], to_child[1], to_parent[0], to_parent[1]}) close(fd);
}

// A frame whose ICRC the sender left to the link (icrc_pending): through shared memory it
// travels without one and is marked icrc_absent; to a UDP destination the link computes it.
// A frame that already has its ICRC is carried as it is and checked as usual.
TEST(ShmLink, IcrcIsLeftOutOnSharedMemoryAndFilledForUdp) {
  auto a = open_shm(), b = open_shm();
  std::string err;
  auto u = UdpLink::open(ep("127.0.0.1", 0), &err);
  ASSERT_TRUE(a && b && u) << err;
  EXPECT_TRUE(a->fills_icrc());
  auto f = frame_bytes(3, 500);  // its last 4 bytes stand for the ICRC
  std::fill(f.end() - 4, f.end(), uint8_t{0});
  auto arrive = [](Link& to) {
    RxFrame rx[4];
    const uint64_t deadline = mono_ns() + 5'000'000'000ull;
    size_t n = 0;
    while (n == 0 && mono_ns() < deadline) n = to.recv(rx, 4);
    EXPECT_EQ(n, 1u);
    return rx[0];
  };

  TxFrame t = make_tx(b->local(), f, 2);
  t.icrc_pending = true;
  ASSERT_EQ(1u, a->send(&t, 1));
  RxFrame r = arrive(*b);
  EXPECT_TRUE(r.icrc_absent);
  ASSERT_EQ(r.len, f.size());
  EXPECT_EQ(0, std::memcmp(r.buf, f.data(), f.size()));  // ICRC bytes left zero

  std::vector<uint8_t> g = f;  // the same bytes to a UDP-only destination
  TxFrame tu = make_tx(u->local(), g, 2);
  tu.icrc_pending = true;
  ASSERT_EQ(1u, a->send(&tu, 1));
  r = arrive(*u);
  EXPECT_FALSE(r.icrc_absent);
  wire::IcrcContext ctx{r.src.ip, r.dst, r.src.port, u->local().port};
  EXPECT_EQ(wire::icrc_verify(ctx, r.buf, r.len, false), wire::IcrcResult::kGood);
  EXPECT_EQ(0, std::memcmp(r.buf, f.data(), f.size() - 4));

  TxFrame plain = make_tx(b->local(), f, 1);  // ICRC already there (zero here): kept, not absent
  ASSERT_EQ(1u, a->send(&plain, 1));
  r = arrive(*b);
  EXPECT_FALSE(r.icrc_absent);
}

// A /dev/shm too small for a ring (containers often give it 64 MiB): the sender cannot reserve a
// ring, takes UDP for that destination and says so; nothing is written to unreserved tmpfs pages
// (which would be SIGBUS). Runs in a child with its own mount namespace and a 1 MiB /dev/shm.
TEST(ShmLink, FullDevShmFallsBackToUdp) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for a private mount namespace";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (unshare(CLONE_NEWNS) != 0) _exit(77);
    if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(77);
    if (mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1m,mode=1777") != 0) _exit(77);
    const int rc = [] {
      auto a = open_shm(), b = open_shm();
      if (!a || !b) return 10;
      if (!b->has_area()) return 11;  // the area's header fits; its rings do not
      auto f = frame_bytes(5, 3000);
      for (int k = 0; k < 20; ++k) {
        TxFrame t = make_tx(b->local(), f, 2);
        if (a->send(&t, 1) != 1) return 12;
        auto got = recv_n(*b, 1);
        if (got.size() != 1 || got[0] != f) return 13;
      }
      if (a->shm_counters().tx_frames != 0) return 14;
      if (a->shm_counters().no_space == 0) return 15;
      if (a->udp().counters().tx_frames != 20) return 16;
      return 0;
    }();
    _exit(rc);
  }
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  ASSERT_TRUE(WIFEXITED(status)) << "the child died (SIGBUS?), status " << status;
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "no private mount namespace here";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace softrdma::link
