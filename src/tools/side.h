// One end of a connection for the tools (`softrdma demo`, usable by `softrdma perf`): a device
// with a PD, a send CQ, a receive CQ, one QP and one registered buffer, plus helpers to connect
// it (RESET -> INIT -> RTR -> RTS) and to wait for completions with a deadline.
//
// Everything that goes wrong throws ToolError with a message naming what failed (QP number,
// work completion status, first differing byte); commands catch it and exit 1.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "device/device.h"

namespace softrdma::tools {

// The Q_Key every tools QP uses for UD.
inline constexpr uint32_t kToolQkey = 0x11111111;

struct ToolError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a peer needs to reach a QP and its buffer (exchanged in process, or over TCP).
struct PeerInfo {
  wire::IpAddr gid;
  uint32_t qpn = 0;
  uint32_t psn = 0;
  uint32_t rkey = 0;
  uint64_t addr = 0;
  uint64_t length = 0;
};

struct SideOptions {
  QpType type = QpType::kRc;
  size_t buf_size = 1 << 20;
  uint32_t max_wr = 256;     // send and receive queue depth
  uint8_t timeout = 10;      // local ACK timeout 4.096 us * 2^10 = 4 ms: quick recovery on loopback
  uint8_t max_rd_atomic = 16;
  std::chrono::milliseconds wait_limit{10'000};  // longest wait for one completion
};

class Side {
 public:
  Side(const DeviceConfig& cfg, const SideOptions& opt);  // opens (and owns) a device; throws ToolError
  Side(Device& shared, const SideOptions& opt);            // another QP on a device some Side owns
  ~Side();
  Side(const Side&) = delete;
  Side& operator=(const Side&) = delete;

  PeerInfo info() const;
  // Moves the QP to RTS toward peer (RC) or to RTS for datagrams (UD, peer unused).
  void connect(const PeerInfo& peer);

  uint8_t* data(size_t off = 0) { return buf_.data() + off; }
  size_t size() const { return buf_.size(); }
  uint64_t addr(size_t off = 0) const { return reinterpret_cast<uint64_t>(buf_.data() + off); }
  Sge sge(size_t off, uint32_t len) const { return Sge{addr(off), len, mr->lkey}; }

  void post_send(const SendWr& wr);
  // A receive of len bytes at buffer offset off (len 0: no scatter list, e.g. for WRITE w/ imm).
  void post_recv(uint64_t wr_id, size_t off, uint32_t len);
  // Polls up to n completions without waiting; a completion in error throws.
  int poll(Cq* cq, Wc* out, int n);
  // Waits for one successful completion on cq, at most wait_limit.
  Wc wait(Cq* cq);

  Device* dev = nullptr;
  Pd* pd = nullptr;
  Cq* scq = nullptr;
  Cq* rcq = nullptr;
  QueuePair* qp = nullptr;
  Mr* mr = nullptr;
  AddressHandle* ah = nullptr;  // UD: the address handle made by connect()
  SideOptions opt;

 private:
  void init();
  // buf_ first, so it outlives the device: a late duplicate READ may still be served from it
  // by the device's progress thread until the device is closed.
  std::vector<uint8_t> buf_;
  std::unique_ptr<Device> owned_;
};

// The verbs MTU enum (1..5) of a port MTU in bytes, 0 if it is not one of 256 .. 4096.
uint8_t mtu_enum_of(uint32_t bytes);

// Deterministic test data: the same seed gives the same bytes.
void fill_pattern(uint8_t* p, size_t len, uint64_t seed);
// Throws ToolError naming what and the first differing byte if got != want.
void check_bytes(const uint8_t* got, const uint8_t* want, size_t len, const std::string& what);

// Median and 99th percentile of samples in nanoseconds, in microseconds (NaN if empty).
struct LatencySummary {
  double median_us;
  double p99_us;
};
LatencySummary summarize(std::vector<double> ns);

inline double elapsed_ns(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace softrdma::tools
