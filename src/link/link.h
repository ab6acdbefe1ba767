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

  size_t length() const {
    size_t n = 0;
    for (uint8_t i = 0; i < nparts; ++i) n += parts[i].iov_len;
    return n;
  }
};

struct RxFrame {
  uint8_t* buf = nullptr;  // caller-owned receive buffer
  uint32_t cap = 0;        // its capacity
  uint32_t len = 0;        // bytes received (UDP payload)
  bool truncated = false;  // datagram was larger than cap: must be dropped
  Endpoint src;            // sender's address and UDP source port
  IpAddr dst;              // the local address it was sent to
};

struct LinkCounters {
  uint64_t tx_frames = 0, tx_bytes = 0, tx_errors = 0;
  uint64_t rx_frames = 0, rx_bytes = 0, rx_truncated = 0;
};

class Link {
 public:
  virtual ~Link() = default;

  // Sends frames[0..n); returns how many were handed to the network (the rest could not be
  // sent now, e.g. the socket buffer is full; the caller keeps them or drops them).
  virtual size_t send(const TxFrame* frames, size_t n) = 0;

  // Receives up to n frames without blocking; returns how many were filled.
  virtual size_t recv(RxFrame* frames, size_t n) = 0;

  // A file descriptor that becomes readable when recv() may return frames, or -1.
  virtual int fd() const = 0;

  // The local endpoint frames are sent from and received on.
  virtual Endpoint local() const = 0;

  // Time-driven work (the fault injector releases delayed frames here). Returns the absolute
  // CLOCK_MONOTONIC time in ns at which it wants to be called again, or 0 for never.
  virtual uint64_t service(uint64_t now_ns) { (void)now_ns; return 0; }

  virtual const LinkCounters& counters() const = 0;
  virtual std::string describe() const = 0;
};

}  // namespace softrdma::link
