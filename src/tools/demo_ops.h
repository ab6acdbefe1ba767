// The measurements of `softrdma demo`: each operation between two connected Sides in one
// process, checked byte for byte, timed for latency and for bandwidth.
//
// Buffer layout of each Side (slot = the largest message plus a guard, rounded up):
//   [0, W slots)        "out": what this side sends, or what the peer READs
//   [W slots, 2W slots) "in": where messages, WRITEs and READ responses land
//   then 8 bytes of atomic target and W 8-byte atomic results.
// Iteration k of a bandwidth run uses slot k % W; a slot is reused only after the operation
// that used it completed, so every slot can be checked after the run.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tools/side.h"

namespace softrdma::tools {

enum class Op { kSend, kWrite, kWriteImm, kRead, kFetchAdd, kCompSwap, kUdSend };
std::string_view op_name(Op op);
bool is_atomic(Op op);
// Latency method: half the round trip of a ping-pong, or one operation's completion time.
bool is_pingpong(Op op);

// Bytes of buffer each Side needs for messages up to max_bytes with a window of w.
size_t demo_buffer_size(uint32_t max_bytes, uint32_t window);

class OpRunner {
 public:
  // a and b are connected to each other (RC, or UD); a is the requester.
  OpRunner(Side& a, Side& b, uint32_t max_bytes, uint32_t window, uint32_t signal_every);

  // Fresh data each round, every byte compared, guard bytes after each message untouched.
  void verify(Op op, uint32_t bytes, int rounds);
  // One sample (ns) per iteration. UD: lost pings (after loss_wait) are skipped and counted.
  std::vector<double> latency(Op op, uint32_t bytes, uint64_t iters);
  // Seconds from the first post to the last completion, with `window` operations in flight.
  double bandwidth(Op op, uint32_t bytes, uint64_t iters);

  uint64_t ops_checked = 0;    // operations whose data or result was compared
  uint64_t bytes_checked = 0;  // payload bytes compared
  uint64_t ud_lost = 0;        // UD pings or pongs that never arrived
  std::chrono::milliseconds loss_wait{20};

 private:
  uint8_t* out(Side& s, uint64_t k) { return s.data((k % w_) * slot_); }
  uint8_t* in(Side& s, uint64_t k) { return s.data((w_ + k % w_) * slot_); }
  size_t out_off(uint64_t k) const { return (k % w_) * slot_; }
  size_t in_off(uint64_t k) const { return (w_ + k % w_) * slot_; }
  size_t atom_off() const { return 2 * w_ * slot_; }
  size_t result_off(uint64_t k) const { return atom_off() + 8 + (k % w_) * 8; }
  uint64_t& atom(Side& s) { return *reinterpret_cast<uint64_t*>(s.data(atom_off())); }
  uint64_t& result(Side& s, uint64_t k) { return *reinterpret_cast<uint64_t*>(s.data(result_off(k))); }

  SendWr make_wr(Op op, Side& from, Side& to, uint64_t k, uint32_t bytes, Sge* sg);
  void stamp(uint8_t* p, uint32_t bytes, uint64_t k);
  void check_recv(const Wc& wc, Op op, uint32_t bytes, uint64_t k, const char* where);
  std::vector<double> pingpong(Op op, uint32_t bytes, uint64_t iters);
  std::vector<double> ud_pingpong(uint32_t bytes, uint64_t iters);
  void reap_sends();

  Side& a_;
  Side& b_;
  uint32_t w_, signal_every_, max_bytes_;
  size_t slot_;
  bool ud_posted_ = false;
  uint64_t base_ = 0;
  uint64_t signaled_[2] = {0, 0};  // signaled sends posted minus reaped, per side
};

}  // namespace softrdma::tools
