// RoCEv2 over a plain UDP socket: one non-blocking socket, batched with sendmmsg/recvmmsg.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <memory>
#include <optional>
#include <string>

#include "link/link.h"

namespace softrdma::link {

class UdpLink final : public Link {
 public:
  static constexpr size_t kBatch = 64;  // frames per sendmmsg/recvmmsg call

  // Binds a non-blocking UDP socket to `local` (port 0 = ephemeral). On failure returns null and
  // describes the problem in *err (if err is not null).
  static std::unique_ptr<UdpLink> open(const Endpoint& local, std::string* err);

  // The first of 127.0.0.2 .. 127.0.0.254 where UDP `port` can be bound right now. Racy: another
  // process may take it before you bind; prefer open_auto_loopback().
  static std::optional<Endpoint> pick_free_loopback(uint16_t port);

  // Binds UDP `port` on the first free address of 127.0.0.2 .. 127.0.0.254 (skipping addresses
  // where the port is in use) and returns the open link: zero-configuration per-process addresses.
  static std::unique_ptr<UdpLink> open_auto_loopback(uint16_t port, std::string* err);

  ~UdpLink() override;
  UdpLink(const UdpLink&) = delete;
  UdpLink& operator=(const UdpLink&) = delete;

  // Stops at EAGAIN/ENOBUFS. Frames failing for other reasons (unreachable, too big, wrong address
  // family, more than kMaxTxParts parts) count tx_errors and are reported as sent.
  size_t send(const TxFrame* frames, size_t n) override;
  // A truncated frame has truncated=true and len = its real size (which exceeds cap).
  size_t recv(RxFrame* frames, size_t n) override;
  int fd() const override { return fd_; }
  Endpoint local() const override { return local_; }
  const LinkCounters& counters() const override { return counters_; }
  std::string describe() const override;

  // Socket buffer sizes the kernel actually granted (for diagnostics).
  int sndbuf() const { return sndbuf_; }
  int rcvbuf() const { return rcvbuf_; }

 private:
  UdpLink() = default;
  static std::unique_ptr<UdpLink> open_errno(const Endpoint& local, std::string* err, int* eno);
  void prepare_rx();

  int fd_ = -1;
  int family_ = AF_INET;
  Endpoint local_;
  LinkCounters counters_;
  int sndbuf_ = 0, rcvbuf_ = 0;

  // Preallocated so send/recv never allocate.
  static constexpr size_t kCtrlLen = CMSG_SPACE(sizeof(in6_pktinfo)) > CMSG_SPACE(sizeof(in_pktinfo))
                                         ? CMSG_SPACE(sizeof(in6_pktinfo))
                                         : CMSG_SPACE(sizeof(in_pktinfo));
  mmsghdr tx_msgs_[kBatch];
  iovec tx_iov_[kBatch * kMaxTxParts];
  sockaddr_storage tx_addr_[kBatch];
  mmsghdr rx_msgs_[kBatch];
  iovec rx_iov_[kBatch];
  sockaddr_storage rx_addr_[kBatch];
  alignas(cmsghdr) unsigned char rx_ctrl_[kBatch][kCtrlLen];
};

}  // namespace softrdma::link
