// RoCEv2 over a plain UDP socket: one non-blocking socket, batched with sendmmsg/recvmmsg, with
// UDP segmentation offload (GSO) on transmit and receive coalescing (GRO) on receive.
//
// GSO. send() groups consecutive frames to the same destination with the same length (the last
// of a group may be shorter) into one message with a UDP_SEGMENT control message whose segment
// size is that length; its iovec is the frames' parts one after the other. The kernel (or the
// NIC) cuts it back into one datagram per frame, so the wire carries exactly the datagrams it
// would carry without GSO: every one a complete RoCEv2 packet. Limits per group: 64 frames
// (UDP_MAX_SEGMENTS, 64 in every kernel with UDP GSO; recent ones accept 128, which would only
// help frames below 512 bytes), and the UDP payload of the whole group at most 65535 minus the
// IP and UDP headers (65507 bytes over IPv4, 65527 over IPv6). One sendmmsg call takes up to
// kBatch messages and up to kTxFrames frames, well below UIO_MAXIOV iovecs per message.
//
// The one thing segmentation changes is the IPv4 Identification: the kernel gives the segments
// of one send IDs 0, 1, 2, ... (0 is what an unconnected socket writes with DF; see the
// architecture notes on the ICRC), and the RoCEv2 ICRC covers the ID. So the frame at position
// k of an IPv4 group goes out with its ICRC moved from ID 0 to ID k (wire::icrc_ipv4_id_delta),
// in a copy: the caller's bytes are never written. A peer that checks the ICRC over the real
// IP header (rxe, a RoCE NIC, tshark) sees a correct packet. IPv6 has no ID: nothing changes.
//
// GRO. With UDP_GRO set, the kernel may hand over several datagrams of one flow in one receive,
// with their segment size in a UDP_GRO control message; recv() cuts it back into frames, in
// order. Their source endpoint and destination address (IP_PKTINFO) are those of the coalesced
// receive. On loopback a coalesced receive is exactly one GSO send of the peer, so the segment
// at position k carried IPv4 ID k: recv() moves its ICRC back to ID 0, and the receiver's ICRC
// check is exact again. (Datagrams coalesced otherwise, e.g. by a NIC's GRO from a peer whose
// IDs do not count 0, 1, 2, ... per receive, come out with an ICRC for some other 16-bit ID:
// the receiver's ID inference accepts them, with 16 check bits, and without inference they are
// dropped. A corrupt frame stays corrupt either way.)
//
// Lone datagrams. A ping-pong sends and receives one datagram at a time, and the message
// header of sendmsg/recvmsg (copied in, its iovec imported) is a measurable part of each call:
// sendto and recvfrom take 0.25-0.3 us less per half round trip on loopback
// (bench/udp_pingpong --plain against --batch 0). So a send of one frame of at most kFlatBytes
// is copied flat and goes by sendto, and receives of one datagram go by recvfrom while the link
// is "plain". recvfrom brings no control messages (no GRO segment size, no IP_PKTINFO), so
// plain receiving needs a socket bound to one address (the destination is then that address)
// and UDP_GRO off. The link watches bursts, the frames that arrive between two moments it finds
// the socket dry: after every kPlainWindow bursts it switches GRO off if at most one in eight
// brought more than one frame (a ping-pong, where an ACK rides with a reply now and then), and
// back on if one in four or more did (a ping-pong whose every reply brings an ACK, as perftest's
// signaled sends do: one coalesced receive costs less than a recvfrom per frame, and a peer's
// GSO pair cut up by the kernel needs ID inference). GRO goes off only while the socket is dry,
// and back on at once if SIOCINQ shows a datagram slipped in: a coalesced datagram read with GRO
// off comes without its segment size. A burst of kGroAgainAt frames or more (a stream)
// switches GRO back on. (A datagram the kernel tested before the switch but queued after the
// check, a window of a few hundred ns in the sending softirq, would be read as one frame made
// of several: it fails the receiver's ICRC and length checks, is dropped and counted, and an RC
// peer resends it.) While GRO is off the kernel cuts a peer's GSO sends up itself, so their
// segments k > 0 arrive with the ICRC of IPv4 ID k: the receiver must infer IDs (the engine's
// default); Options::plain_rx = false keeps GRO on for a receiver that does not.
//
// Receive buffers belong to the link (kRxSlots slots of Options::rx_slot_bytes, allocated in
// open()): RxFrame::buf points into them and stays valid until the next recv() call. Frames of a
// coalesced receive that did not fit in the caller's array wait in the link for the next call;
// fd() does not show them, service() does (it returns `now` while any wait).
//
// Switches: Options (SOFTRDMA_GSO=0 and SOFTRDMA_GRO=0 in the environment turn the defaults
// off). Support is probed in open() (setsockopt); if the kernel later refuses a GSO send with
// EINVAL or EIO while the same frames go out one by one, GSO is switched off for good
// (counters().tx_gso_disabled).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "link/link.h"

namespace softrdma::link {

class UdpLink final : public Link {
 public:
  static constexpr size_t kBatch = 64;           // messages per sendmmsg/recvmmsg call
  static constexpr size_t kTxFrames = 256;       // frames per sendmmsg call
  static constexpr size_t kMaxGsoSegments = 64;  // frames per GSO message
  static constexpr size_t kRxSlots = 64;         // receive buffers (one datagram each)
  static constexpr size_t kFlatBytes = 512;      // a lone frame up to this size goes by sendto
  static constexpr uint32_t kPlainWindow = 64;   // bursts per plain-or-not decision
  static constexpr size_t kGroAgainAt = 8;       // frames in one burst that end plain at once

  struct Options {
    bool gso = true;  // UDP_SEGMENT on transmit
    bool gro = true;  // UDP_GRO on receive
    // Bytes per receive buffer. A datagram (or coalesced receive) that does not fit is reported
    // truncated. The default holds any UDP payload.
    uint32_t rx_slot_bytes = 65536;
    // Lone datagrams may be received with recvfrom and GRO off (see above): only for a receiver
    // that accepts IPv4 IDs other than 0.
    bool plain_rx = true;
    // The defaults, with SOFTRDMA_GSO=0 / SOFTRDMA_GRO=0 from the environment applied.
    static Options from_env();
  };

  // Binds a non-blocking UDP socket to `local` (port 0 = ephemeral). On failure returns null and
  // describes the problem in *err (if err is not null). Without options: Options::from_env().
  static std::unique_ptr<UdpLink> open(const Endpoint& local, std::string* err);
  static std::unique_ptr<UdpLink> open(const Endpoint& local, const Options& opt, std::string* err);

  // The first of 127.0.0.2 .. 127.0.0.254 where UDP `port` can be bound right now. Racy: another
  // process may take it before you bind; prefer open_auto_loopback().
  static std::optional<Endpoint> pick_free_loopback(uint16_t port);

  // Binds UDP `port` on the first free address of 127.0.0.2 .. 127.0.0.254 (skipping addresses
  // where the port is in use) and returns the open link: zero-configuration per-process addresses.
  static std::unique_ptr<UdpLink> open_auto_loopback(uint16_t port, std::string* err);
  static std::unique_ptr<UdpLink> open_auto_loopback(uint16_t port, const Options& opt, std::string* err);

  ~UdpLink() override;
  UdpLink(const UdpLink&) = delete;
  UdpLink& operator=(const UdpLink&) = delete;

  // Stops at EAGAIN/ENOBUFS. Frames failing for other reasons (unreachable, too big, wrong address
  // family, more than kMaxTxParts parts) count tx_errors and are reported as sent. A GSO message
  // that fails for any such reason is sent again frame by frame, so the errors fall on single
  // frames as without GSO. Returns the number of whole frames handed over (or dropped as errors).
  size_t send(const TxFrame* frames, size_t n) override;
  // A truncated frame has truncated=true, len = its real size and cap = the bytes that did fit.
  // Returns fewer than n when nothing more is waiting, when n exceeds kRxSlots, or when the
  // receive size learned from the traffic (rx_ask_) was reached: then more may wait in the
  // socket, which stays readable for the next call.
  size_t recv(RxFrame* frames, size_t n) override;
  int fd() const override { return fd_; }
  // Frames of a coalesced receive still waiting in the link do not make fd() readable: while
  // there are any, this asks to be called again at once (so a sleeping caller comes back for them).
  uint64_t service(uint64_t now_ns) override {
    return pending_count_ != 0 ? std::max<uint64_t>(now_ns, 1) : 0;
  }
  Endpoint local() const override { return local_; }
  const LinkCounters& counters() const override { return counters_; }
  std::string describe() const override;

  // Socket buffer sizes the kernel actually granted (for diagnostics).
  int sndbuf() const { return sndbuf_; }
  int rcvbuf() const { return rcvbuf_; }
  // Whether GSO / GRO are in use (asked for, supported, and for GSO not switched off since).
  bool gso() const { return gso_; }
  bool gro() const { return gro_; }
  // Receives of one datagram go by recvfrom, GRO switched off for now (see "Lone datagrams").
  bool plain_rx() const { return plain_; }

 private:
  // One received datagram (or coalesced receive) whose frames are still being handed out.
  struct RxDatagram {
    uint32_t slot = 0;
    uint32_t off = 0;    // next frame starts here
    uint32_t real = 0;   // bytes the kernel had (MSG_TRUNC)
    uint32_t avail = 0;  // bytes in the slot: min(real, slot size)
    uint32_t seg = 0;    // frame size (the GRO segment size, or real)
    uint16_t index = 0;  // position of the next frame in the receive
    bool coalesced = false;
    Endpoint src;
    IpAddr dst;
  };

  UdpLink() = default;
  static std::unique_ptr<UdpLink> open_errno(const Endpoint& local, const Options& opt, std::string* err,
                                             int* eno);
  void prepare_rx();
  size_t build_tx(const TxFrame* frames, size_t begin, size_t n, size_t nogso_until, size_t* nmsgs);
  size_t take_pending(RxFrame* frames, size_t n, uint64_t* used);
  // wire::icrc_ipv4_id_delta(body, id), remembered for the last body length: the delta is linear
  // in the ID bits, so the deltas of the single bits, computed as needed, give every ID by XOR.
  struct IdDeltas {
    size_t body = SIZE_MAX;
    uint32_t known = 0;     // which bit[] are computed
    uint32_t bit[16] = {};  // the delta of ID 1 << i
    uint32_t get(size_t len, uint16_t id);
  };
  size_t parse_rx(size_t i, uint32_t slot);  // queues message i; returns its frame count
  uint8_t* slot_buf(uint32_t slot) { return rx_buf_.get() + size_t{slot} * rx_slot_bytes_; }

  int fd_ = -1;
  int family_ = AF_INET;
  Endpoint local_;
  LinkCounters counters_;
  int sndbuf_ = 0, rcvbuf_ = 0;
  bool gso_ = false, gro_ = false;
  bool plain_ = false;          // receives of one datagram by recvfrom, GRO off ("Lone datagrams")
  bool plain_allowed_ = false;  // Options::plain_rx, and the socket is bound to one address
  size_t burst_ = 0;             // frames received since the socket was last found dry
  uint32_t window_bursts_ = 0;   // bursts (of at least one frame) in this decision window
  uint32_t window_multi_ = 0;    // ... of them with two frames or more
  void set_gro(bool on);
  void note_received(size_t frames, bool dry);
  alignas(64) uint8_t tx_flat_[kFlatBytes];  // a lone frame, copied flat for sendto
  uint32_t max_gso_bytes_ = 0;  // UDP payload limit of one GSO message
  uint32_t rx_slot_bytes_ = 0;

  // Preallocated so send/recv never allocate.
  static constexpr size_t kGsoCtrlLen = CMSG_SPACE(sizeof(uint16_t));
  static constexpr size_t kPktinfoLen = CMSG_SPACE(sizeof(in6_pktinfo)) > CMSG_SPACE(sizeof(in_pktinfo))
                                            ? CMSG_SPACE(sizeof(in6_pktinfo))
                                            : CMSG_SPACE(sizeof(in_pktinfo));
  static constexpr size_t kRxCtrlLen = kPktinfoLen + CMSG_SPACE(sizeof(int));
  mmsghdr tx_msgs_[kBatch];
  uint32_t tx_msg_frames_[kBatch];  // frames in each message
  size_t tx_msg_bytes_[kBatch];
  sockaddr_storage tx_addr_[kBatch];
  alignas(cmsghdr) unsigned char tx_ctrl_[kBatch][kGsoCtrlLen];
  iovec tx_iov_[kTxFrames * (kMaxTxParts + 1)];
  uint8_t tx_icrc_[kTxFrames][4];  // ICRCs moved to the segment's IPv4 ID
  // For the frames of a group of the group's size, and for a shorter last one (an ACK after a
  // reply, the last packet of a message): each keeps its length from group to group.
  IdDeltas tx_deltas_, rx_deltas_, tx_short_deltas_, rx_short_deltas_;

  mmsghdr rx_msgs_[kBatch];
  iovec rx_iov_[kBatch];
  uint32_t rx_msg_slot_[kBatch];
  sockaddr_storage rx_addr_[kBatch];
  alignas(cmsghdr) unsigned char rx_ctrl_[kBatch][kRxCtrlLen];
  std::unique_ptr<uint8_t[]> rx_buf_;  // kRxSlots * rx_slot_bytes_
  RxDatagram pending_[kRxSlots];       // FIFO ring
  size_t pending_head_ = 0, pending_count_ = 0;
  uint32_t rx_frames_per_msg_ = 1;  // of the last receive call: sizes the next recvmmsg
  // Datagrams one recvmmsg asks for. A recvmmsg that gets fewer than it asked for tries once
  // more before it returns, a failed receive of a few hundred ns on the path of every reply
  // when messages come one at a time: so ask for as many as came last time the socket ran dry,
  // and for a full batch once a call that got all it asked for is followed by one that finds more.
  size_t rx_ask_ = kBatch;
  bool rx_filled_ = false;  // the last recvmmsg got all it asked for, and fewer than wanted
};

}  // namespace softrdma::link
