// RC traffic over the same-host shared-memory link (link/shm_link.h): in one process and between
// two, data intact, frames counted on the shm path, keys still checked by the owner's table, a
// sleeping progress thread woken, and a process of another user kept on UDP.
#include <sys/wait.h>
#include <unistd.h>

#include <thread>

#include "common/pair.h"
#include "link/fault_link.h"
#include "link/shm_link.h"

namespace softrdma::test {
namespace {

// A device over an explicit ShmLink, so the test can read the link's counters.
// With `fault`, a fault injector sits above the shared-memory link, as SOFTRDMA_FAULT puts it.
std::unique_ptr<Device> open_shm_device(link::ShmLink** out, bool progress_thread = true,
                                        const link::FaultConfig* fault = nullptr) {
  std::string err;
  auto udp = link::UdpLink::open_auto_loopback(wire::kRoceV2Port, &err);
  EXPECT_TRUE(udp) << err;
  if (!udp) return nullptr;
  auto shm = std::make_unique<link::ShmLink>(std::move(udp));
  *out = shm.get();
  std::unique_ptr<link::Link> l = std::move(shm);
  if (fault != nullptr) l = std::make_unique<link::FaultLink>(std::move(l), *fault);
  DeviceConfig cfg;
  cfg.mtu = 4096;
  cfg.progress_thread = progress_thread;
  auto dev = Device::open_with_link(cfg, std::move(l), &err);
  EXPECT_TRUE(dev) << err;
  return dev;
}

void setup_shm_side(Side& s, const PairOptions& o, link::ShmLink** l, const link::FaultConfig* fault) {
  s.dev = open_shm_device(l, o.progress_thread, fault);
  ASSERT_TRUE(s.dev);
  ASSERT_TRUE(make_objects(s, o));
}

uint64_t retransmits(Device& d) {
  uint64_t n = 0;
  for (auto& q : d.qp_counters()) n += q.counters.retransmits;
  return n;
}

class ShmPairTest : public PairTest {
 protected:
  void make_shm(const PairOptions& o = {}, const link::FaultConfig* fault = nullptr) {
    opt = o;
    setup_shm_side(a, o, &la, fault);
    setup_shm_side(b, o, &lb, fault);
    connect(a, b, o);
    connect(b, a, o);
  }
  link::ShmLink* la = nullptr;
  link::ShmLink* lb = nullptr;
};

TEST_F(ShmPairTest, RcTrafficGoesThroughSharedMemoryIntact) {
  PairOptions o;
  o.mtu = 4096;
  o.buf_size = 4 << 20;
  make_shm(o);
  EXPECT_NE(a.dev->describe_link().find("shm+udp("), std::string::npos) << a.dev->describe_link();
  // WRITEs of several sizes, a SEND and a READ back.
  size_t off = 0;
  for (uint32_t len : {1u, 4096u, 4097u, 65536u, 1000000u}) {
    fill(a.buf, off, len, len);
    ASSERT_EQ(0, post(a, write_wr(len, b.addr(off), b.mr->rkey), a.sge(off, len)));
    auto wc = wait_for(a, 1);
    ASSERT_EQ(wc.size(), 1u);
    ASSERT_EQ(wc[0].status, WcStatus::kSuccess) << name(wc[0].status);
    ASSERT_EQ(0, std::memcmp(a.buf.data() + off, b.buf.data() + off, len)) << len;
    off += len;
  }
  post_recv(b, 7, 2 << 20, 65536);
  fill(a.buf, 3 << 20, 50000, 5);
  SendWr s;
  s.wr_id = 8;
  s.opcode = WrOpcode::kSend;
  s.flags = kSignaled;
  ASSERT_EQ(0, post(a, s, a.sge(3 << 20, 50000)));
  auto rc = wait_for(b, 1);
  ASSERT_EQ(rc.size(), 1u);
  EXPECT_EQ(rc[0].status, WcStatus::kSuccess);
  EXPECT_EQ(rc[0].byte_len, 50000u);
  EXPECT_EQ(0, std::memcmp(a.buf.data() + (3 << 20), b.buf.data() + (2 << 20), 50000));
  ASSERT_EQ(wait_for(a, 1).size(), 1u);
  ASSERT_EQ(0, post(a, read_wr(9, b.addr(0), b.mr->rkey), a.sge(3 << 20, 300000)));
  auto rw = wait_for(a, 1);
  ASSERT_EQ(rw.size(), 1u);
  EXPECT_EQ(rw[0].status, WcStatus::kSuccess);
  EXPECT_EQ(0, std::memcmp(a.buf.data() + (3 << 20), b.buf.data(), 300000));

  // Everything went through the rings: nothing but (possibly) doorbells on the sockets.
  EXPECT_GT(la->shm_counters().tx_frames, 250u);
  EXPECT_GT(lb->shm_counters().tx_frames, 0u);
  EXPECT_GT(lb->shm_counters().rx_frames, 250u);
  EXPECT_EQ(la->udp().counters().tx_frames, la->shm_counters().tx_doorbells);
  EXPECT_EQ(lb->udp().counters().tx_frames, lb->shm_counters().tx_doorbells);
  EXPECT_EQ(a.dev->counters().drop_icrc + b.dev->counters().drop_icrc, 0u);
}

// Frames through shared memory carry no ICRC (nothing there corrupts them). Under a fault
// injector the engine computes ICRCs again, so corrupted frames are still caught and dropped.
TEST_F(ShmPairTest, CorruptionInjectedAboveSharedMemoryIsCaught) {
  PairOptions o;
  o.mtu = 4096;
  o.buf_size = 2 << 20;
  link::FaultConfig fault;
  fault.seed = 11;
  fault.corrupt = 0.03;
  make_shm(o, &fault);
  const uint32_t kLen = 1 << 20;
  fill(a.buf, 0, kLen, 9);
  ASSERT_EQ(0, post(a, write_wr(1, b.addr(0), b.mr->rkey), a.sge(0, kLen)));
  auto wc = wait_for(a, 1);
  ASSERT_EQ(wc.size(), 1u);
  ASSERT_EQ(wc[0].status, WcStatus::kSuccess) << name(wc[0].status);
  EXPECT_EQ(0, std::memcmp(a.buf.data(), b.buf.data(), kLen));
  EXPECT_GT(la->shm_counters().tx_frames, 256u);
  EXPECT_GT(b.dev->counters().drop_icrc, 0u);
}

TEST_F(ShmPairTest, BadRkeyStillGetsRemoteAccessError) {
  make_shm();
  const uint32_t bad = b.mr->rkey ^ 0x5a5a00;  // not a key of b's table
  ASSERT_EQ(0, post(a, write_wr(1, b.addr(0), bad), a.sge(0, 100)));
  auto wc = wait_for(a, 1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].status, WcStatus::kRemAccessErr) << name(wc[0].status);
  EXPECT_GT(la->shm_counters().tx_frames, 0u);
  EXPECT_GT(lb->shm_counters().rx_frames, 0u);
}

TEST_F(ShmPairTest, OutOfBoundsReadGetsRemoteAccessError) {
  make_shm();
  ASSERT_EQ(0, post(a, read_wr(2, b.addr(b.buf.size() - 10), b.mr->rkey), a.sge(0, 100)));
  auto wc = wait_for(a, 1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].status, WcStatus::kRemAccessErr) << name(wc[0].status);
  EXPECT_GT(lb->shm_counters().rx_frames, 0u);
}

// Both progress threads asleep (the application does not poll) when each message arrives: the
// doorbell must wake them, without falling back on retransmission timeouts.
TEST_F(ShmPairTest, SleepingProgressThreadsAreWoken) {
  PairOptions o;
  o.timeout = 14;  // ~67 ms: a wake-up delayed by a busy machine is not a lost one
  make_shm(o);
  for (int round = 0; round < 20; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // threads go to sleep
    fill(a.buf, 0, 3000, round);
    ASSERT_EQ(0, post(a, write_wr(round, b.addr(8192), b.mr->rkey), a.sge(0, 3000)));
    // Wait without polling, so the ACK must be handled by a's own thread as well.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    auto wc = wait_for(a, 1);
    ASSERT_EQ(wc.size(), 1u);
    ASSERT_EQ(wc[0].status, WcStatus::kSuccess);
    ASSERT_EQ(0, std::memcmp(a.buf.data(), b.buf.data() + 8192, 3000));
  }
  EXPECT_EQ(retransmits(*a.dev), 0u) << "a wake-up was lost and a timeout recovered it";
  EXPECT_GT(la->shm_counters().tx_doorbells + lb->shm_counters().tx_doorbells, 0u);
}

// ---- two processes -------------------------------------------------------------------

struct Hello {
  uint32_t qpn;
  uint8_t ip[16];
  uint64_t addr;
  uint32_t rkey;
};

Hello hello_of(Side& s) {
  Hello h{};
  h.qpn = s.qp->qpn();
  std::memcpy(h.ip, s.dev->gid().bytes.data(), 16);
  h.addr = s.addr();
  h.rkey = s.mr->rkey;
  return h;
}

// connect_qp() with the peer known only by its hello.
bool connect_to(Side& s, const Hello& peer, const PairOptions& o) {
  QpAttr a;
  a.state = QpState::kInit;
  a.access = o.access;
  uint32_t mask =
      transport::kAttrState | transport::kAttrPkeyIndex | transport::kAttrPort | transport::kAttrAccessFlags;
  if (s.dev->modify_qp(s.qp, a, mask) != 0) return false;
  a.state = QpState::kRtr;
  a.path_mtu = mtu_enum_of(o.mtu);
  a.dest_qpn = peer.qpn;
  a.rq_psn = 0;
  std::memcpy(a.av.dgid.bytes.data(), peer.ip, 16);
  a.max_dest_rd_atomic = o.max_rd_atomic;
  a.min_rnr_timer = 1;
  mask = transport::kAttrState | transport::kAttrAv | transport::kAttrPathMtu | transport::kAttrDestQpn |
         transport::kAttrRqPsn | transport::kAttrMaxDestRdAtomic | transport::kAttrMinRnrTimer;
  if (s.dev->modify_qp(s.qp, a, mask) != 0) return false;
  a.state = QpState::kRts;
  a.sq_psn = 0;
  a.timeout = o.timeout;
  a.retry_cnt = o.retry_cnt;
  a.rnr_retry = o.rnr_retry;
  a.max_rd_atomic = o.max_rd_atomic;
  mask = transport::kAttrState | transport::kAttrSqPsn | transport::kAttrTimeout | transport::kAttrRetryCnt |
         transport::kAttrRnrRetry | transport::kAttrMaxQpRdAtomic;
  return s.dev->modify_qp(s.qp, a, mask) == 0;
}

// The child WRITEs 1 MB into the parent's buffer and SENDs a message; the parent checks both.
// Returns in *parent_shm_rx the frames the parent received through shared memory.
void two_process_exchange(bool child_as_nobody, uint64_t* parent_shm_rx, uint64_t* parent_udp_rx,
                          int* child_status) {
  int up[2], down[2];
  ASSERT_EQ(0, pipe(up));
  ASSERT_EQ(0, pipe(down));
  PairOptions o;
  o.mtu = 4096;
  o.buf_size = 2 << 20;
  const uint32_t kLen = 1 << 20;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: no gtest assertions from here on; the exit code says what failed. The device is
    // closed before _exit (its files in /dev/shm go with it).
    if (child_as_nobody && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(20);
    _exit([&]() -> int {
      Side s;
      link::ShmLink* l = nullptr;
      s.dev = open_shm_device(&l);
      if (!s.dev) return 21;
      if (!make_objects(s, o)) return 22;
      Hello mine = hello_of(s), peer{};
      if (write(up[1], &mine, sizeof mine) != sizeof mine) return 23;
      if (read(down[0], &peer, sizeof peer) != sizeof peer) return 24;
      if (!connect_to(s, peer, o)) return 25;
      fill(s.buf, 0, kLen, 77);
      SendWr wr = write_wr(1, peer.addr, peer.rkey);
      Sge sg = s.sge(0, kLen);
      wr.sg_list = &sg;
      wr.num_sge = 1;
      if (s.dev->post_send(s.qp, &wr, 1, nullptr) != 0) return 26;
      SendWr snd;
      snd.wr_id = 2;
      snd.opcode = WrOpcode::kSend;
      snd.flags = kSignaled;
      Sge sg2 = s.sge(0, 1000);
      snd.sg_list = &sg2;
      snd.num_sge = 1;
      if (s.dev->post_send(s.qp, &snd, 1, nullptr) != 0) return 27;
      auto wc = wait_for(s, 2);
      if (wc.size() != 2 || wc[0].status != WcStatus::kSuccess || wc[1].status != WcStatus::kSuccess)
        return 28;
      const auto& sc = l->shm_counters();
      if (child_as_nobody ? sc.tx_frames != 0 : sc.tx_frames == 0) return 29;
      char done = 1;
      if (read(down[0], &done, 1) != 1) return 30;  // the parent checked: close now
      return 0;
    }());
  }
  Side s;
  link::ShmLink* l = nullptr;
  s.dev = open_shm_device(&l);
  ASSERT_TRUE(s.dev);
  ASSERT_TRUE(make_objects(s, o));
  Hello mine = hello_of(s), peer{};
  ASSERT_EQ(ssize_t(sizeof peer), read(up[0], &peer, sizeof peer));
  ASSERT_TRUE(connect_to(s, peer, o));
  Sge rsg = s.sge(kLen, 1000);
  RecvWr rwr{5, &rsg, 1};
  ASSERT_EQ(0, s.dev->post_recv(s.qp, &rwr, 1, nullptr));
  ASSERT_EQ(ssize_t(sizeof mine), write(down[1], &mine, sizeof mine));
  auto wc = wait_for(s, 1);
  ASSERT_EQ(wc.size(), 1u);
  EXPECT_EQ(wc[0].status, WcStatus::kSuccess);
  std::vector<uint8_t> want(kLen, 0);
  fill(want, 0, kLen, 77);
  EXPECT_EQ(0, std::memcmp(s.buf.data(), want.data(), kLen));
  EXPECT_EQ(0, std::memcmp(s.buf.data() + kLen, want.data(), 1000));
  char done = 1;
  ASSERT_EQ(1, write(down[1], &done, 1));
  waitpid(pid, child_status, 0);
  *parent_shm_rx = l->shm_counters().rx_frames;
  *parent_udp_rx = l->udp().counters().rx_frames - l->shm_counters().rx_doorbells;
  for (int fd : {up[0], up[1], down[0], down[1]}) close(fd);
}

TEST(ShmProcesses, TwoProcessesOfOneUserUseSharedMemory) {
  uint64_t shm_rx = 0, udp_rx = 0;
  int status = -1;
  two_process_exchange(false, &shm_rx, &udp_rx, &status);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_GT(shm_rx, 256u);  // 1 MB in 4 KiB frames, and the SEND
  EXPECT_EQ(udp_rx, 0u);
}

TEST(ShmProcesses, AnotherUserFallsBackToUdpAndWorks) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to switch to user nobody";
  uint64_t shm_rx = 0, udp_rx = 0;
  int status = -1;
  two_process_exchange(true, &shm_rx, &udp_rx, &status);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(shm_rx, 0u);
  EXPECT_GT(udp_rx, 256u);
}

}  // namespace
}  // namespace softrdma::test
