// Same-host link: RoCEv2 frames between processes of one machine through shared memory, with
// the UDP link underneath for every destination that shared memory cannot reach.
//
// Receive area. Each ShmLink publishes one file in /dev/shm named after its endpoint and network
// namespace, "softrdma-ep-<netns inode>-<ip>-<port>", created O_EXCL with mode 0600: only processes of the
// same user can open it (the kernel's check), and a sender also refuses an area whose file is not owned by
// its own effective uid or is open to group/others (so neither root nor a user who pre-created a file under
// someone else's name gets frames through it). The area holds kRings single-producer/single-consumer byte
// rings. A sender claims one ring per destination with a CAS of the ring's owner word from 0 (or from an
// owner whose pid is dead) to (pid << 32 | link serial), and gives it back when the link closes;
// it also sets the ring's bit in the area's `claimed` word, and receivers look only at those rings.
//
// Frames. A ring record is a small header (frame length, the sender's endpoint, flags) and the
// frame's bytes: exactly the UDP payload the socket would have carried, BTH .. ICRC. Memory does
// not corrupt frames, so the ICRC is left out (fills_icrc(): the engine leaves it to us; the
// record says kNoIcrc, the receiver skips the check): two CRC passes per byte were most of this
// path's cost. Frames that arrive with an ICRC keep it and are checked (under a fault injector,
// which does not pass fills_icrc() on, the engine computes them, so corruption is still caught). Frames to UDP destinations get their ICRC in
// UdpLink::send. RoCEv2 semantics do not change: every frame goes
// through the receiver's engine as if it came from the socket, so keys are checked by the owner's
// table; shared memory only replaces the socket. recv() is zero-copy: RxFrame::buf points into
// the ring and the ring space is released on the next recv() call (link.h contract).
//
// Choice of path, per destination (cached in a fixed table, re-checked every kRetryNs): the
// destination's area exists, is ours (uid, mode 0600), is initialized, not closed, its owner pid
// is alive, a ring is free and its pages can be reserved in /dev/shm (posix_fallocate: a write
// to a page a full tmpfs cannot allocate is SIGBUS) -> shared memory; otherwise UDP. A full ring makes send() stop
// (the caller keeps or drops the rest, as with a full socket). Fault injection wraps this link
// (FaultLink outside), so fault tests run over shared memory too.
//
// Wake-ups. fd() is the UDP socket. A receiver about to sleep on it calls prepare_sleep(), which
// sets the area's `sleeping` word and re-checks the rings (a Dekker pair with the sender's "push,
// fence, read sleeping"); a sender that finds the word set swaps it to "doorbell sent" and sends
// one 8-byte UDP doorbell datagram, which makes the socket readable; recv() discards doorbells.
// after_wake() clears the word. Without prepare_sleep() (a caller that only polls) no doorbell
// is ever sent. While rings carry the traffic, recv() looks at the socket (a system call) only
// every 8th call, every 64th while it stays quiet, and at once after a wake-up.
//
// Crashes. A leftover area of this user under our name is marked closed and replaced: holding
// the endpoint's UDP port proves the previous owner is gone (a pid check would not do: an exiting
// process has freed its port while still a zombie). Senders still mapping it see `closed` and
// look again. A ring whose owner pid is dead is reclaimed by the next sender. The receiver unlinks its area
// on destruction (if the name still refers to it).
//
// Switch: Options::enabled; SOFTRDMA_SHM=0/1 in the environment (DeviceConfig).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "link/link.h"
#include "link/udp_link.h"

namespace softrdma::link {

struct ShmCounters {
  uint64_t tx_frames = 0, tx_bytes = 0, tx_ring_full = 0, tx_doorbells = 0;
  uint64_t rx_frames = 0, rx_bytes = 0, rx_doorbells = 0, rx_bad = 0;
  uint64_t peers_shm = 0, peers_udp = 0;  // path decisions taken
  uint64_t no_space = 0;  // a ring could not be reserved in /dev/shm: that destination took UDP
};

class ShmLink final : public Link {
 public:
  static constexpr uint32_t kRings = 16;
  static constexpr uint64_t kRingBytes = 4u << 20;  // per ring; pages are touched only when used
  static constexpr size_t kMaxPeers = 64;
  static constexpr uint64_t kRetryNs = 200'000'000;  // re-check a UDP-only destination

  // Wraps `udp`; publishes the receive area for udp->local(). If the area cannot be created
  // (another live owner, no /dev/shm, ...) the link still sends through shared memory and
  // receives over UDP only; has_area() tells.
  explicit ShmLink(std::unique_ptr<UdpLink> udp);
  ~ShmLink() override;
  ShmLink(const ShmLink&) = delete;
  ShmLink& operator=(const ShmLink&) = delete;

  size_t send(const TxFrame* frames, size_t n) override;
  size_t recv(RxFrame* frames, size_t n) override;
  int fd() const override { return udp_->fd(); }
  Endpoint local() const override { return udp_->local(); }
  uint64_t service(uint64_t now_ns) override { return udp_->service(now_ns); }
  bool prepare_sleep() override;
  void after_wake() override;
  bool fills_icrc() const override { return true; }
  const LinkCounters& counters() const override;
  std::string describe() const override;

  const ShmCounters& shm_counters() const { return sc_; }
  bool has_area() const { return area_ != nullptr; }
  UdpLink& udp() { return *udp_; }
  // "/softrdma-ep-4026531840-127.0.0.5-4791" (the shm_open name; the file is /dev/shm/<name without '/'>).
  static std::string area_name(const Endpoint& ep);
  // Whether the environment allows it: SOFTRDMA_SHM unset or not 0/off/no/false.
  static bool enabled_by_env(bool dflt);

  struct Area;
  struct Ring;

 private:
  struct Peer {
    Endpoint ep;
    bool used = false;
    bool shm = false;
    uint64_t retry_at = 0;  // UDP-only: look for an area again after this
    uint64_t last_use = 0;
    Area* area = nullptr;
    size_t map_len = 0;
    Ring* ring = nullptr;
    uint64_t owner = 0;
    uint64_t head = 0;   // producer position (ours)
    bool dirty = false;  // records written, head not yet published
  };

  bool create_area();
  void close_peer(Peer& p);
  Peer* peer_for(const Endpoint& dst, uint64_t now);
  void open_peer(Peer& p);
  bool push(Peer& p, const TxFrame& f, size_t len);
  void publish(Peer& p);
  size_t drain_rings(RxFrame* frames, size_t n);
  bool rings_have_data() const;

  std::unique_ptr<UdpLink> udp_;
  std::string name_;
  Area* area_ = nullptr;
  size_t area_len_ = 0;
  int area_fd_ = -1;
  uint64_t serial_ = 0;
  std::atomic<uint64_t> rpos_[kRings] = {};  // read position per ring (ours; see prepare_sleep)
  uint64_t released_[kRings] = {};           // tail published to the ring
  uint32_t next_ring_ = 0;
  uint32_t udp_tick_ = 0;
  static constexpr uint32_t kUdpQuietLooks = 64;
  uint32_t udp_quiet_ = 0;     // consecutive looks at the socket that found no frame (capped)
  bool udp_look_now_ = false;  // the next recv() looks at the socket whatever the period
  bool rings_used_ = false;
  Peer peers_[kMaxPeers];
  Peer* last_peer_ = nullptr;
  uint64_t dirty_mask_ = 0;
  ShmCounters sc_;
  uint64_t tx_errors_ = 0;
  mutable LinkCounters sum_;
};

}  // namespace softrdma::link
