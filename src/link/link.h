// A Link moves RoCEv2 frames (the UDP payload: BTH ... ICRC) between endpoints.
//
// Links are batch-oriented: one virtual call moves many frames (sendmmsg/recvmmsg underneath),
// so the per-packet cost has no virtual dispatch. Transmit frames are gathered from up to
// kMaxTxParts pieces so payload is sent straight from registered memory, never copied into a
// staging buffer first.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "wire/address.h"

namespace softrdma::link {

using wire::Endpoint;
using wire::IpAddr;

inline constexpr size_t kMaxTxParts = 8;  // headers, up to 6 payload pieces, pad+ICRC

struct TxFrame {
  Endpoint dst;
  iovec parts[kMaxTxParts];
  uint8_t nparts = 0;
  // The last 4 bytes (the ICRC) are not computed yet: the sender left them to a link that
  // fills_icrc(), which computes them for paths that need one (fill_icrc) and leaves them out
  // on paths that cannot corrupt a frame.
  bool icrc_pending = false;

  size_t length() const {
    size_t n = 0;
    for (uint8_t i = 0; i < nparts; ++i) n += parts[i].iov_len;
    return n;
  }
};

// A received frame. The bytes live in memory the link owns: buf stays valid, and the link does
// not touch it, until the next recv() call on the same link, which may reuse it. So a caller
// handles a whole batch before it calls recv() again and keeps no pointer into it afterwards.
struct RxFrame {
  uint8_t* buf = nullptr;  // the frame's bytes, link-owned (see above)
  uint32_t cap = 0;        // bytes readable at buf: len, or fewer when truncated
  uint32_t len = 0;        // bytes received (UDP payload)
  bool truncated = false;  // the datagram did not fit the link's buffer: must be dropped
  Endpoint src;            // sender's address and UDP source port
  IpAddr dst;              // the local address it was sent to
  // Came by a path that cannot corrupt it (shared memory) with no ICRC computed: the last 4
  // bytes are zero and must not be checked. Says nothing about trust: an ICRC is no proof of
  // origin either, every other check still applies.
  bool icrc_absent = false;
};

// Computes the ICRC of a frame whose ICRC was left pending (TxFrame::icrc_pending), sent from
// `src`, and stores it in the frame's last 4 bytes (the end of its last part).
void fill_icrc(const TxFrame& f, const Endpoint& src);

struct LinkCounters {
  uint64_t tx_frames = 0, tx_bytes = 0, tx_errors = 0;
  uint64_t rx_frames = 0, rx_bytes = 0, rx_truncated = 0;
  // UDP segmentation offload (UdpLink): sends that carried several frames, the frames in them,
  // and 1 once GSO was switched off for good after the kernel refused it.
  uint64_t tx_gso_sends = 0, tx_gso_frames = 0, tx_gso_disabled = 0;
  // UDP receive coalescing: receives that carried several frames, and the frames in them.
  uint64_t rx_gro_receives = 0, rx_gro_frames = 0;
  // Plain receiving (UdpLink, "Lone datagrams"): datagrams received by recvfrom with GRO off,
  // and the times GRO was switched off for it or back on.
  uint64_t rx_plain_receives = 0, gro_switches = 0;
  // The same-host link (ShmLink): frames that went through shared memory instead of UDP.
  uint64_t shm_tx_frames = 0, shm_rx_frames = 0;
};

class Link {
 public:
  virtual ~Link() = default;

  // Sends frames[0..n); returns how many were handed to the network (the rest could not be
  // sent now, e.g. the socket buffer is full; the caller keeps them or drops them).
  virtual size_t send(const TxFrame* frames, size_t n) = 0;

  // Receives up to n frames without blocking; returns how many were filled (every field of
  // each). Fewer than n usually means nothing more is waiting right now. The frames' bytes are
  // the link's and stay valid until the next recv() call (RxFrame).
  virtual size_t recv(RxFrame* frames, size_t n) = 0;

  // A file descriptor that becomes readable when recv() may return frames, or -1.
  virtual int fd() const = 0;

  // The local endpoint frames are sent from and received on.
  virtual Endpoint local() const = 0;

  // Time-driven work (the fault injector releases delayed frames here). Returns the absolute
  // CLOCK_MONOTONIC time in ns at which it wants to be called again, or 0 for never.
  virtual uint64_t service(uint64_t now_ns) { (void)now_ns; return 0; }

  // Around a sleep on fd() (the device's progress thread): prepare_sleep() returns false when
  // frames arrived meanwhile that fd() would not show (then do not sleep); after_wake() follows
  // every sleep prepared this way. A link whose frames can arrive without fd() becoming readable
  // (ShmLink) arranges here to be woken through fd().
  virtual bool prepare_sleep() { return true; }
  virtual void after_wake() {}

  // True when send() accepts frames with icrc_pending and computes their ICRC where the path
  // needs one. A sender that finds it true may leave ICRCs to the link (the shared-memory
  // path carries none: two CRC passes per byte are most of its cost).
  virtual bool fills_icrc() const { return false; }

  virtual const LinkCounters& counters() const = 0;
  virtual std::string describe() const = 0;
};

}  // namespace softrdma::link
