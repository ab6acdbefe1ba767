// Queue pairs: attributes, the IBTA state machine, and the per-stage transport state.
//
// A QP is driven by three pipeline stages (IBA chapter 9), each in its own file:
//   requester.cc  turns send WQEs into request packets (and retransmits them),
//   responder.cc  executes incoming requests and produces ACK/NAK/read/atomic responses,
//   completer.cc  matches responses to send WQEs and produces send completions.
// Each stage's state below is touched only by that stage and only under the engine lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

#include "mem/mr_table.h"
#include "queue/cq.h"
#include "queue/work_queue.h"
#include "transport/counters.h"
#include "wire/address.h"

namespace softrdma::transport {

enum class QpType : uint8_t { kRc = 2, kUc = 3, kUd = 4 };
std::string_view name(QpType t);

enum class QpState : uint8_t { kReset = 0, kInit, kRtr, kRts, kSqd, kSqe, kErr };
std::string_view name(QpState s);

// Which QpAttr fields a modify/query names; values equal IBV_QP_*.
enum QpAttrMask : uint32_t {
  kAttrState = 1u << 0,
  kAttrCurState = 1u << 1,
  kAttrEnSqdAsyncNotify = 1u << 2,
  kAttrAccessFlags = 1u << 3,
  kAttrPkeyIndex = 1u << 4,
  kAttrPort = 1u << 5,
  kAttrQkey = 1u << 6,
  kAttrAv = 1u << 7,
  kAttrPathMtu = 1u << 8,
  kAttrTimeout = 1u << 9,
  kAttrRetryCnt = 1u << 10,
  kAttrRnrRetry = 1u << 11,
  kAttrRqPsn = 1u << 12,
  kAttrMaxQpRdAtomic = 1u << 13,
  kAttrAltPath = 1u << 14,
  kAttrMinRnrTimer = 1u << 15,
  kAttrSqPsn = 1u << 16,
  kAttrMaxDestRdAtomic = 1u << 17,
  kAttrPathMigState = 1u << 18,
  kAttrCap = 1u << 19,
  kAttrDestQpn = 1u << 20,
};

struct QpCaps {
  uint32_t max_send_wr = 0;
  uint32_t max_recv_wr = 0;
  uint32_t max_send_sge = 0;
  uint32_t max_recv_sge = 0;
  uint32_t max_inline_data = 0;
};

// The address vector of a connected QP or an address handle (RoCEv2: the GID is an IP address).
struct AddressVector {
  wire::IpAddr dgid;
  uint8_t sgid_index = 0;
  uint8_t hop_limit = 64;
  uint8_t traffic_class = 0;
  uint32_t flow_label = 0;
  uint8_t sl = 0;
  uint8_t port_num = 1;
  bool is_global = true;
};

// Path MTU as the verbs enum (1 = 256 ... 5 = 4096).
constexpr uint32_t mtu_bytes(uint8_t mtu_enum) { return mtu_enum >= 1 && mtu_enum <= 5 ? 128u << mtu_enum : 0; }

struct QpAttr {
  QpState state = QpState::kReset;
  QpState cur_state = QpState::kReset;
  uint8_t path_mtu = 5;  // 1..5
  uint32_t qkey = 0;
  uint32_t rq_psn = 0;
  uint32_t sq_psn = 0;
  uint32_t dest_qpn = 0;
  uint32_t access = 0;  // remote access enabled for incoming requests (mem::Access bits)
  QpCaps cap;
  AddressVector av;
  uint16_t pkey_index = 0;
  bool sq_draining = false;
  uint8_t max_rd_atomic = 1;
  uint8_t max_dest_rd_atomic = 1;
  uint8_t min_rnr_timer = 0;
  uint8_t port_num = 1;
  uint8_t timeout = 14;  // 4.096 us * 2^timeout; 0 = infinite
  uint8_t retry_cnt = 7;
  uint8_t rnr_retry = 7;
};

// Checks a state transition and the attributes it names (IBA 10.3, Table 94 "QP state
// transition properties"). Returns 0 or EINVAL; *why explains a refusal.
int check_modify(QpType type, QpState cur, const QpAttr& attr, uint32_t mask, const char** why);

// A send queue entry: the work request as posted plus what the requester and completer know.
struct SendWqe {
  uint64_t wr_id = 0;
  WrOpcode opcode = WrOpcode::kSend;
  uint32_t flags = 0;
  uint32_t num_sge = 0;
  uint32_t imm = 0;
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;
  uint64_t compare_add = 0;
  uint64_t swap = 0;
  wire::Endpoint ud_dst;
  uint32_t ud_qpn = 0;
  uint32_t ud_qkey = 0;
  uint32_t length = 0;  // payload bytes (or 8 for atomics)
  bool is_inline = false;
  // Memory operations executed by the requester in queue order (bind, fast registration):
  // the keys and range of SendWr::bind / SendWr::reg.
  struct {
    uint32_t key = 0;
    uint32_t new_key = 0;
    uint32_t region = 0;
    uint32_t access = 0;
    uint64_t addr = 0;
    uint64_t length = 0;
  } mem;
  // Requester: PSN of the first packet and number of packets (for READ: response packets).
  uint32_t first_psn = 0;
  uint32_t npkts = 0;
  bool started = false;
  // Completer.
  uint32_t read_received = 0;  // response packets of a READ already placed
  bool acked = false;          // every packet acknowledged (and data arrived, for READ/atomic)
  WcStatus status = WcStatus::kSuccess;
  bool failed = false;
};

// A READ or atomic request the responder has executed, kept to answer duplicates (IBA 9.7.5.1.3
// says a re-requested READ is re-served from memory; an atomic is answered from this record and
// never executed twice).
struct ResponderResource {
  bool valid = false;
  bool atomic = false;
  uint32_t psn = 0;    // PSN of the request
  uint32_t npkts = 0;  // response packets (1 for atomics)
  uint64_t atomic_orig = 0;
  // READ being served: next response to send.
  bool serving = false;
  uint32_t next_psn = 0;
  uint64_t va = 0;
  uint32_t rkey = 0;
  uint32_t remaining = 0;  // bytes left to send
  uint32_t total = 0;
};

// What a send work request that fails before it is sent does to the QP: the two options of
// seed 002 FIG. 11 / FIG. 17A. Errors the peer reports (NAKs, retries exhausted) always take
// the QP to ERR.
enum class SendErrorMode : uint8_t {
  kDefault,         // IBA: ERR for RC, SQE for UC and UD
  kDrainSendQueue,  // option 1: SQE; later send WRs flushed, the receive side keeps working
  kErrorQp,         // option 2: ERR; everything flushed
};

bool is_local_op(WrOpcode o);  // executed by the adapter, nothing on the wire

class Qp {
 public:
  Qp(uint32_t qpn, QpType type, uint32_t pd, const QpCaps& cap, queue::CompletionQueue* send_cq,
     queue::CompletionQueue* recv_cq, queue::RecvQueue* srq, bool sq_sig_all, void* user_context);

  const uint32_t qpn;
  const QpType type;
  const uint32_t pd;
  const bool sq_sig_all;
  void* const user_context;
  SendErrorMode send_error = SendErrorMode::kErrorQp;  // resolved: never kDefault
  queue::CompletionQueue* const send_cq;
  queue::CompletionQueue* const recv_cq;
  queue::RecvQueue* const srq;
  QpCaps cap;

  QpAttr attr;
  std::atomic<QpState> state{QpState::kReset};
  wire::Endpoint peer;  // RC/UC: where requests go, and the only source accepted

  queue::WorkQueue<SendWqe> sq;
  std::unique_ptr<queue::RecvQueue> rq_owned;
  queue::RecvQueue* rq() { return srq != nullptr ? srq : rq_owned.get(); }
  std::unique_ptr<uint8_t[]> inline_arena;  // max_inline_data bytes per send slot
  uint8_t* inline_data(uint64_t index) { return &inline_arena[(index % sq.max_wr()) * cap.max_inline_data]; }

  // Points at this QP's slot in the device's shared statistics area once the engine adopts the
  // QP; at its own storage before that.
  QpCounters* stats = &own_stats;
  QpCounters own_stats;
  QpStatsSlot* slot = nullptr;

  // Set by posters (any thread) to ask the engine to look at this QP; cleared by the engine.
  std::atomic<bool> doorbell{false};
  bool on_active_list = false;  // engine lists (engine.h)
  bool on_timer_list = false;

  // Requester (requester.cc).
  struct Requester {
    uint64_t next = 0;      // next SQ index to (re)transmit
    uint32_t offset = 0;    // bytes of that WQE already sent in this pass
    uint32_t psn = 0;       // PSN of the next packet
    uint32_t inflight_rd_atomic = 0;
    uint32_t since_ackreq = 0;
    // The ACK is asked for only when someone waits for it (ack_wanted in requester.cc): whether
    // the newest packet ever sent did not ask, and how many messages ended since one did.
    bool tail_unasked = false;
    uint32_t unasked_msgs = 0;
    bool probe_pending = false;  // the next packet resent is a probe (completer_probe)
    uint32_t fresh_psn = 0;  // one past the highest PSN ever sent; below it is a retransmission
    bool rnr_wait = false;       // paused by an RNR NAK until rnr_deadline
    uint64_t rnr_deadline = 0;
  } req;

  // Completer (completer.cc).
  struct Completer {
    uint32_t una_psn = 0;    // oldest PSN not yet acknowledged
    uint64_t retry_deadline = 0;  // 0 = timer stopped
    bool probe_timer = false;     // retry_deadline is kAckProbeNs after an unasked packet
    uint8_t retry_left = 7;
    uint8_t rnr_left = 7;
    uint32_t last_nak_psn = 0;
    bool nak_seen = false;
  } comp;

  // Responder (responder.cc).
  struct Responder {
    uint32_t epsn = 0;       // expected PSN
    uint32_t msn = 0;        // message sequence number of the last completed request
    bool nak_sent = false;   // a NAK for epsn is out; stay quiet until epsn moves
    bool ack_pending = false;
    // The coalesced ACK waits for the application's reply to leave with it (Engine::progress
    // with hold_acks): set while the QP is on the engine's held list.
    bool ack_held = false;
    bool reply_likely = false;  // this pass completed a receive: the application may answer now
    uint8_t ack_syndrome = 0;
    uint32_t ack_psn = 0;
    // SEND in progress: the receive WQE it lands in, copied out of the (shared) receive queue
    // when the first packet arrives so SRQ entries always retire in order.
    bool in_send = false;
    uint64_t recv_wr_id = 0;
    uint32_t recv_nsge = 0;
    uint64_t recv_length = 0;
    std::unique_ptr<Sge[]> recv_sges;
    uint32_t recv_offset = 0;
    bool recv_held = false;  // UC: a copied-out WQE whose message was dropped, reused next
    // RDMA WRITE in progress.
    bool in_write = false;
    uint64_t write_va = 0;
    uint32_t write_rkey = 0;
    uint32_t write_remaining = 0;
    uint32_t write_total = 0;
    // UC: a message was broken by loss; drop until the next FIRST/ONLY.
    bool uc_drop = false;
    std::unique_ptr<ResponderResource[]> resources;
    uint32_t nresources = 0;
    uint32_t next_resource = 0;
    bool serving = false;  // some resource has READ responses left to send
    uint64_t fault_ticket = 0;  // on-demand pages being brought in for the request at epsn
  } resp;

  bool has_send_work() const;  // requester or responder has packets to emit
  bool error_pending = false;  // moved to ERR by the transport; flush on the next pass
  bool responder_error = false; // a class C error: move to ERR after the NAK is out
};

}  // namespace softrdma::transport
