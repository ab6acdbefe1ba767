// The progress engine: moves packets between the link and the QPs' pipeline stages.
//
// One pass (progress()) drains received frames through the receive checks (recv.cc) to the
// responder or completer, fires due timers, lets every QP with work emit packets, and flushes
// the transmit batch with one sendmmsg. Everything runs under the engine lock, on whichever
// thread holds it: an application thread inside post/poll (inline progress, the fast case) or
// the device's background thread woken by a packet or a timer.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "link/link.h"
#include "mem/mr_table.h"
#include "mem/odp.h"
#include "transport/counters.h"
#include "transport/qp.h"
#include "wire/icrc.h"
#include "wire/packet.h"

namespace softrdma::transport {

struct EngineConfig {
  uint16_t fabric_port = wire::kRoceV2Port;  // UDP port every peer listens on
  uint32_t max_qp = 16384;
  uint32_t window_packets = 256;  // unacknowledged request packets, shared by the RC QPs
  uint32_t ackreq_every = 32;     // ask for an ACK at least this often within a message stream
  bool infer_ipv4_id = true;      // accept IPv4 senders that write a nonzero Identification
  uint32_t rx_batch = 32;
  uint32_t rx_budget = 256;       // frames per progress pass before yielding to timers and TX
};

uint64_t now_ns();
// Local ACK timeout: 4.096 us * 2^timeout (IBA 9.7.6.1.3); 0 means none.
uint64_t ack_timeout_ns(uint8_t timeout);
// Messages nobody waits for ask for no ACK (requester.cc). If the newest packet did not ask,
// the requester asks (completer_probe) after at most this long without an ACK: long enough
// never to fire while the application keeps the QP busy, short enough that an idle QP frees
// its send queue slots soon after. Like the held ACK's bound (Engine::kAckHoldNs), above the
// device thread's longest look-again interval, so it never wakes that thread on its own.
inline constexpr uint64_t kAckProbeNs = 2'000'000;

// The transmit batch. Headers and the pad+ICRC trailer of each frame live in its slot; payload
// parts point into registered memory (or inline data) and are read by sendmmsg directly.
struct TxSlot {
  uint8_t hdr[64];
  uint8_t trailer[8];
  link::TxFrame* frame;  // its place in the batch the link sends from (no copy at flush)
  uint8_t* bounce;  // MTU-sized, for payload spread over more SGEs than a frame can gather
};

class Engine {
 public:
  // stats: where counters are kept (all null: inside the engine).
  Engine(std::unique_ptr<link::Link> link, const EngineConfig& cfg, StatsArea stats = {});
  ~Engine();

  std::mutex& mutex() { return mu_; }
  link::Link& link() { return *link_; }
  const EngineConfig& config() const { return cfg_; }
  mem::MrTable& mrs() { return mrs_; }
  // Brings on-demand pages in off the engine's thread (seed 003).
  mem::FaultWorker& faults() { return faults_; }
  DeviceCounters& counters() { return *counters_; }
  wire::Endpoint local() const { return local_; }

  // Control path (lock held).
  uint32_t alloc_qpn();
  void add_qp(Qp* qp);
  void remove_qp(Qp* qp);
  Qp* find_qp(uint32_t qpn) const;
  const std::vector<Qp*>& qps() const { return qps_; }
  // Each RC QP's share of the window: the peer's socket buffer is one for all QPs, and a
  // window per QP would let many QPs together overrun it (then go-back-N resends everything).
  uint32_t qp_window() const { return qp_window_; }

  // One pass of progress (lock held). Returns the absolute time of the next timer, 0 = none.
  // hold_acks: the application's own poll drives this pass and may answer what it completes at
  // once. The ACK of a QP whose receive completed is then held until the next entry (a post on
  // any QP, or the next pass), so it leaves in one GSO send with the reply instead of as a
  // datagram of its own; kAckHoldNs bounds the wait if the application goes quiet.
  uint64_t progress(bool hold_acks = false);
  // Progress after a post: runs the requester of qp only, then flushes (lock held).
  void kick(Qp* qp);

  // Transmit helpers for the stages.
  TxSlot* tx_begin();  // a cleared slot; flushes the batch first if it is full
  // Finishes the frame: payload parts already added; sets pad, ICRC; queues it.
  void tx_end(TxSlot* slot, const wire::Endpoint& dst, uint32_t header_len, uint32_t payload_len);
  void tx_flush();

  // Delivers a completion (lock held); a full CQ is an overrun (reported as a CQ error).
  void complete(queue::CompletionQueue* cq, const Wc& wc, bool solicited);

  // Moves qp to ERR and flushes its queues on the next pass.
  void set_error(Qp& qp);
  // A send WQE failed before it went out: ERR or SQE, as the QP's SendErrorMode says.
  void send_queue_error(Qp& qp);

  // Stages call this when they arm a timer, so the device can wake its sleeping thread if the
  // new deadline is earlier than the one it sleeps until.
  void note_timer(Qp& qp, uint64_t deadline) {
    if (deadline == 0) return;
    if (earliest_timer_ == 0 || deadline < earliest_timer_) earliest_timer_ = deadline;
    if (qp_timer_due_ == 0 || deadline < qp_timer_due_) qp_timer_due_ = deadline;
    if (!qp.on_timer_list) {
      qp.on_timer_list = true;
      timer_qps_.push_back(&qp);
    }
  }
  // Puts qp on the list of QPs the next pass looks at (lock held).
  void activate(Qp& qp) {
    if (!qp.on_active_list) {
      qp.on_active_list = true;
      active_.push_back(&qp);
    }
  }
  // Any thread, no lock: asks the next pass to look at qp (a post that lost the lock race).
  void ring(Qp& qp) {
    qp.doorbell.store(true, std::memory_order_relaxed);
    doorbell_any_.store(true, std::memory_order_release);
  }
  uint64_t earliest_timer() const { return earliest_timer_; }
  // The time for arming timers: read once per pass (progress, kick) instead of once per ACK,
  // a clock read per packet being a measurable share of a bulk transfer; outside a pass, now.
  // A kick reads it only if something asks (most sends arm no timer: 23 ns saved per post).
  uint64_t now() const {
    if (!in_pass_) return now_ns();
    if (pass_now_ == 0) pass_now_ = now_ns();
    return pass_now_;
  }
  // Copies the link's counters into counters() if frames moved since the last copy (passes do it
  // when the application is not waiting; a reader that wants them exact calls this first).
  void publish_link_counters();
  // When the last progress() pass started.
  uint64_t pass_time() const { return pass_now_; }

 private:
  void receive(link::RxFrame& f);
  void run_timers(uint64_t now, uint64_t* next);
  void run_send(Qp& qp);
  void flush_errors(Qp& qp);
  void publish_link_counters_when(bool idle);

  std::mutex mu_;
  std::unique_ptr<link::Link> link_;
  EngineConfig cfg_;
  bool link_fills_icrc_ = false;  // leave ICRCs to the link (Link::fills_icrc)
  wire::Endpoint local_;
  mem::MrTable mrs_;
  mem::FaultWorker faults_;
  DeviceCounters own_counters_;
  DeviceCounters* counters_;
  QpStatsSlot* qp_slots_;

  uint64_t earliest_timer_ = 0;
  uint64_t qp_timer_due_ = 0;  // no later than the earliest deadline of timer_qps_ (0: none armed)
  // ACKs held for the application's reply (progress(hold_acks)); sent at the next entry.
  static constexpr size_t kMaxHeldAcks = 256;
  // A bound for an application that stops entering: longer than the device thread's longest
  // look-again interval while the application polls (1.6 ms), so arming it never wakes that
  // thread; the thread's next pass sends the ACK anyway.
  static constexpr uint64_t kAckHoldNs = 2'000'000;
  bool hold_acks_ = false;
  bool in_pass_ = false;
  bool link_moved_ = false;  // this pass sent or received frames: publish the link's counters
  uint32_t counter_passes_ = 0;  // busy passes since the link's counters were published
  mutable uint64_t pass_now_ = 0;  // 0 in a kick until now() is asked
  void begin_pass(bool read_clock = true) {
    pass_now_ = read_clock ? now_ns() : 0;
    in_pass_ = true;
  }
  std::vector<Qp*> held_acks_;
  uint64_t ack_hold_deadline_ = 0;
  void release_held_acks();
  void send_held_ack(Qp& qp);
  uint32_t rc_qps_ = 0;
  uint32_t qp_window_ = 0;
  uint32_t qpn_base_;
  std::vector<Qp*> qp_table_;  // indexed by qpn - qpn_base_
  std::vector<Qp*> qps_;       // live QPs
  // A pass looks only at QPs with something to do: active_ (packets arrived, work posted,
  // errors) and timer_qps_ (a timer armed), so idle QPs cost nothing per pass.
  std::vector<Qp*> active_;
  std::vector<Qp*> active_scratch_;
  std::vector<Qp*> timer_qps_;
  std::atomic<bool> doorbell_any_{false};
  uint32_t qpn_cursor_ = 0;

  std::vector<TxSlot> tx_;
  std::unique_ptr<uint8_t[]> bounce_;
  std::vector<link::TxFrame> tx_frames_;
  size_t tx_count_ = 0;

  std::vector<link::RxFrame> rx_;  // filled by link_->recv(); the bytes stay the link's
};

// Stage entry points (one file each).
void requester_run(Engine& e, Qp& qp);                               // requester.cc
void responder_receive(Engine& e, Qp& qp, const wire::PacketView& p, const link::RxFrame& f);  // responder.cc
void responder_run(Engine& e, Qp& qp);                               // responder.cc: READ responses
void responder_flush_ack(Engine& e, Qp& qp);                         // responder.cc
void completer_receive(Engine& e, Qp& qp, const wire::PacketView& p);  // completer.cc
void completer_timeout(Engine& e, Qp& qp, uint64_t now);             // completer.cc
// Arms the completer's timer from now: the local ACK timeout, or kAckProbeNs if that is sooner
// (or the timeout infinite) and the newest packet asked for nothing (completer.cc).
void arm_retry_timer(Engine& e, Qp& qp);
// The newest packet sent asked for no ACK and one is wanted now: goes back to send it again,
// asking. False if there is nothing to ask about (completer.cc).
bool completer_probe(Engine& e, Qp& qp);
void completer_retire(Engine& e, Qp& qp);                            // completer.cc
// Retires the oldest send WQE with its own error, or "flushed" (completer.cc).
void flush_head(Engine& e, Qp& qp);
// Runs a bind, fast registration or local invalidation WQE (local_ops.cc).
WcStatus execute_local_op(Engine& e, Qp& qp, uint64_t index, SendWqe& w);

// Payload movement shared by the stages (payload.cc). Gathers [offset, offset+len) of a send
// WQE's data into iovecs, validating every local key (FIG. 15). When the range spans more SGEs
// than max_parts, the pieces are copied into `bounce` (len bytes) and sent as one part.
// False with *status on failure.
bool gather(Engine& e, Qp& qp, uint64_t index, uint32_t offset, uint32_t len, iovec* out, uint8_t max_parts,
            uint8_t* nparts, uint8_t* bounce, WcStatus* status);
// Scatters data into an SGE list at byte offset; needs local write. false with *status.
bool scatter(Engine& e, uint32_t pd, const Sge* sges, uint32_t nsge, uint64_t offset, const uint8_t* data,
             uint32_t len, WcStatus* status);

}  // namespace softrdma::transport
