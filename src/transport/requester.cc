// The requester: turns send queue entries into request packets (IBA 9.4, 9.7.2).
//
// It walks the send queue from req.next, emitting one packet at a time, until the queue is
// empty, the RC window is full, or an ordering rule (fence, max_rd_atomic) says wait. A
// retransmission is the same walk started again at an earlier PSN (completer.cc rewinds
// req.next/offset/psn): payload is gathered from registered memory again, never from a copy.
#include <algorithm>

#include "transport/engine.h"
#include "transport/psn.h"

namespace softrdma::transport {

namespace {

using wire::Transport;

uint32_t packets_for(uint32_t len, uint32_t mtu) { return len == 0 ? 1 : (len + mtu - 1) / mtu; }

bool is_send(WrOpcode o) { return o == WrOpcode::kSend || o == WrOpcode::kSendImm || o == WrOpcode::kSendInv; }
bool is_write(WrOpcode o) { return o == WrOpcode::kRdmaWrite || o == WrOpcode::kRdmaWriteImm; }
bool is_atomic(WrOpcode o) { return o == WrOpcode::kCompSwap || o == WrOpcode::kFetchAdd; }

Transport transport_of(QpType t) {
  return t == QpType::kRc ? Transport::kRc : t == QpType::kUc ? Transport::kUc : Transport::kUd;
}

uint8_t message_opcode(const Qp& qp, const SendWqe& w, bool first, bool last) {
  using namespace wire;
  bool imm = w.opcode == WrOpcode::kSendImm || w.opcode == WrOpcode::kRdmaWriteImm;
  if (qp.type == QpType::kUd) return imm ? kUdSendOnlyImm : kUdSendOnly;
  uint8_t op;
  if (is_send(w.opcode)) {
    bool inv = w.opcode == WrOpcode::kSendInv;
    if (first && last)
      op = imm ? kRcSendOnlyImm : inv ? kRcSendOnlyInv : kRcSendOnly;
    else if (first)
      op = kRcSendFirst;
    else if (last)
      op = imm ? kRcSendLastImm : inv ? kRcSendLastInv : kRcSendLast;
    else
      op = kRcSendMiddle;
  } else {
    if (first && last)
      op = imm ? kRcWriteOnlyImm : kRcWriteOnly;
    else if (first)
      op = kRcWriteFirst;
    else if (last)
      op = imm ? kRcWriteLastImm : kRcWriteLast;
    else
      op = kRcWriteMiddle;
  }
  return make_opcode(transport_of(qp.type), op);
}

void fail(Engine& e, Qp& qp, SendWqe& w, WcStatus status) {
  w.failed = true;
  w.status = status;
  // Draining the send queue (option 1) keeps the connection, which needs the failed message
  // never to have sent a packet: the peer must not hold any of it (a retransmission that
  // fails, e.g. because its memory was invalidated meanwhile, takes the QP to ERR).
  if (qp.req.offset != 0 || (w.started && psn_diff(qp.req.fresh_psn, w.first_psn) > 0))
    e.set_error(qp);
  else
    e.send_queue_error(qp);
}

enum class Start { kGo, kWait, kFailed, kDone };

bool allowed_on(QpType t, WrOpcode o) {
  switch (t) {
    case QpType::kRc: return true;
    case QpType::kUc: return is_send(o) || is_write(o) || is_local_op(o);
    case QpType::kUd:  // windows are bound through connected QPs only
      return o == WrOpcode::kSend || o == WrOpcode::kSendImm || o == WrOpcode::kLocalInv || o == WrOpcode::kRegMr;
  }
  return false;
}

// First transmission of a WQE: ordering rules, then PSN assignment (IBA 9.4.1, 10.8.3.3).
// Memory operations run here, in queue order, so later WQEs see their effect (FIG. 11).
Start start(Engine& e, Qp& qp, uint64_t index, SendWqe& w) {
  auto& r = qp.req;
  bool rd_atomic = w.opcode == WrOpcode::kRdmaRead || is_atomic(w.opcode);
  // A fenced WQE waits until every earlier READ and atomic has completed.
  if ((w.flags & kFence) && r.inflight_rd_atomic > 0) return Start::kWait;
  if (rd_atomic && r.inflight_rd_atomic >= std::max<uint32_t>(1, qp.attr.max_rd_atomic)) return Start::kWait;
  uint32_t mtu = mtu_bytes(qp.attr.path_mtu);
  if (!allowed_on(qp.type, w.opcode)) {
    fail(e, qp, w, WcStatus::kLocQpOpErr);
    return Start::kFailed;
  }
  if (is_local_op(w.opcode)) {
    // Invalidation waits until everything before it is complete: those WQEs may still have to
    // be retransmitted from the memory it takes away (seed 001).
    if (w.opcode == WrOpcode::kLocalInv && index != qp.sq.retired()) return Start::kWait;
    WcStatus status = execute_local_op(e, qp, index, w);
    if (status != WcStatus::kSuccess) {
      fail(e, qp, w, status);
      return Start::kFailed;
    }
    w.first_psn = r.psn;
    w.npkts = 0;  // no PSNs: nothing to acknowledge, never resent
    w.started = w.acked = true;
    return Start::kDone;
  }
  if ((qp.type == QpType::kUd && w.length > mtu) || (is_atomic(w.opcode) && w.length != 8)) {
    fail(e, qp, w, WcStatus::kLocLenErr);
    return Start::kFailed;
  }
  w.first_psn = r.psn;
  w.npkts = is_atomic(w.opcode) ? 1 : packets_for(w.length, mtu);
  w.started = true;
  if (rd_atomic) r.inflight_rd_atomic++;
  return Start::kGo;
}

// Someone waits for the ACK of the message that ends with this packet: a completion is due
// (signaled), a retransmission wants its outcome at once, half the send queue would otherwise
// be held by messages nobody asked about (their slots free only when acknowledged), or the
// next WQE waits for this one to retire (a local invalidation).
bool ack_wanted(Qp& qp, uint64_t index, const SendWqe& w) {
  const auto& r = qp.req;
  if ((w.flags & kSignaled) || qp.sq_sig_all || psn_diff(r.psn, r.fresh_psn) < 0) return true;
  if (r.unasked_msgs + 1 >= std::max<uint32_t>(1, qp.sq.max_wr() / 2)) return true;
  return index + 1 < qp.sq.produced() && qp.sq.at(index + 1).opcode == WrOpcode::kLocalInv;
}

// A probe (completer_probe) or a go-back resending the newest packet ever sent always asks.
bool resends_newest(const Qp::Requester& r) { return psn_add(r.psn, 1) == r.fresh_psn; }

// Keeps the record ack_wanted and completer_probe work from: whether the newest packet asked
// for an ACK, and how many messages ended since one did.
void note_asked(Qp::Requester& r, uint32_t last_psn, bool asked, bool message_end) {
  if (asked) {
    r.since_ackreq = 0;
    r.unasked_msgs = 0;
  } else if (message_end) {
    r.unasked_msgs++;
  }
  if (psn_diff(psn_add(last_psn, 1), r.fresh_psn) >= 0) r.tail_unasked = !asked;
}

void note_sent(Qp& qp, uint32_t psn, uint32_t npsn, uint32_t payload) {
  auto& r = qp.req;
  qp.stats->tx_packets++;
  qp.stats->tx_bytes += payload;
  if (psn_before(psn, r.fresh_psn)) {
    if (r.probe_pending)
      r.probe_pending = false;  // counted as ack_probes: nothing was found lost
    else
      qp.stats->retransmits++;
  }
  uint32_t end = psn_add(psn, npsn);
  if (psn_after(end, r.fresh_psn)) r.fresh_psn = end;
}

// Emits the next packet of a SEND or RDMA WRITE (or a UD/UC message). False on failure.
bool emit_message_packet(Engine& e, Qp& qp, uint64_t index, SendWqe& w) {
  auto& r = qp.req;
  uint32_t mtu = mtu_bytes(qp.attr.path_mtu);
  uint32_t chunk = std::min(mtu, w.length - r.offset);
  bool first = r.offset == 0;
  bool last = r.offset + chunk >= w.length;
  uint8_t opcode = message_opcode(qp, w, first, last);
  const wire::OpcodeInfo& info = wire::opcode_info(opcode);

  TxSlot* s = e.tx_begin();
  uint8_t n = 0;
  WcStatus status;
  if (!gather(e, qp, index, r.offset, chunk, &s->frame->parts[1], link::kMaxTxParts - 2, &n, s->bounce, &status)) {
    fail(e, qp, w, status);
    return false;
  }
  s->frame->nparts = static_cast<uint8_t>(1 + n);

  bool rc = qp.type == QpType::kRc;
  wire::BthFields b;
  b.opcode = opcode;
  b.se = (w.flags & kSolicited) && last;
  b.dqpn = qp.type == QpType::kUd ? w.ud_qpn : qp.attr.dest_qpn;
  b.psn = r.psn;
  // Ask for an ACK every ackreq_every packets and when the window is about to close, so the
  // requester never waits for a timeout to learn of progress; and at the end of a message only
  // when something waits for its ACK (ack_wanted). A ping-pong of unsignaled SENDs then sends
  // one ACK per 32 messages instead of a second frame with every reply.
  ++r.since_ackreq;
  b.ackreq = rc && (r.since_ackreq >= e.config().ackreq_every ||
                    psn_diff(r.psn, qp.comp.una_psn) + 1 >= static_cast<int32_t>(e.qp_window()) ||
                    (last && ack_wanted(qp, index, w)) || resends_newest(r));
  if (rc) note_asked(r, r.psn, b.ackreq, last);
  wire::write_bth(s->hdr, b);
  if (info.has(wire::kReth)) {
    uint8_t* h = s->hdr + info.reth;
    wire::set(h, wire::reth::va, w.remote_addr);
    wire::set(h, wire::reth::rkey, w.rkey);
    wire::set(h, wire::reth::dmalen, w.length);
  }
  if (info.has(wire::kImmDt)) wire::set(s->hdr + info.immdt, wire::immdt::imm, w.imm);
  if (info.has(wire::kIeth)) wire::set(s->hdr + info.ieth, wire::ieth::rkey, w.imm);
  if (info.has(wire::kDeth)) {
    uint8_t* h = s->hdr + info.deth;
    // IBA 10.2.5: a Q_Key with the high bit set means "use the QP's own Q_Key".
    wire::set(h, wire::deth::qkey, (w.ud_qkey & 0x80000000u) ? qp.attr.qkey : w.ud_qkey);
    wire::set(h, wire::deth::sqpn, qp.qpn);
  }
  e.tx_end(s, qp.type == QpType::kUd ? w.ud_dst : qp.peer, info.payload, chunk);
  note_sent(qp, r.psn, 1, chunk);

  r.offset += chunk;
  r.psn = psn_add(r.psn, 1);
  if (last) {
    r.next++;
    r.offset = 0;
    if (!rc) w.acked = true;  // UC and UD complete once sent
  }
  return true;
}

void emit_read_request(Engine& e, Qp& qp, SendWqe& w) {
  auto& r = qp.req;
  uint32_t mtu = mtu_bytes(qp.attr.path_mtu);
  // Responses already placed need not be asked for again.
  uint32_t from_pkt = std::max(r.offset / mtu, w.read_received);
  uint32_t offset = std::min(from_pkt * mtu, w.length);
  uint32_t psn = psn_add(w.first_psn, from_pkt);
  TxSlot* s = e.tx_begin();
  const wire::OpcodeInfo& info = wire::opcode_info(wire::kRcReadRequest);
  wire::BthFields b;
  b.opcode = wire::kRcReadRequest;
  b.dqpn = qp.attr.dest_qpn;
  b.psn = psn;
  b.ackreq = true;
  note_asked(r, psn_add(w.first_psn, w.npkts - 1), true, true);
  wire::write_bth(s->hdr, b);
  uint8_t* h = s->hdr + info.reth;
  wire::set(h, wire::reth::va, w.remote_addr + offset);
  wire::set(h, wire::reth::rkey, w.rkey);
  wire::set(h, wire::reth::dmalen, w.length - offset);
  e.tx_end(s, qp.peer, info.payload, 0);
  note_sent(qp, psn, w.npkts - from_pkt, 0);
  r.psn = psn_add(w.first_psn, w.npkts);
  r.next++;
  r.offset = 0;
}

void emit_atomic(Engine& e, Qp& qp, SendWqe& w) {
  auto& r = qp.req;
  uint8_t opcode = w.opcode == WrOpcode::kCompSwap ? wire::kRcCompSwap : wire::kRcFetchAdd;
  const wire::OpcodeInfo& info = wire::opcode_info(opcode);
  TxSlot* s = e.tx_begin();
  wire::BthFields b;
  b.opcode = opcode;
  b.dqpn = qp.attr.dest_qpn;
  b.psn = r.psn;
  b.ackreq = true;
  note_asked(r, r.psn, true, true);
  wire::write_bth(s->hdr, b);
  uint8_t* h = s->hdr + info.atmeth;
  wire::set(h, wire::atmeth::va, w.remote_addr);
  wire::set(h, wire::atmeth::rkey, w.rkey);
  wire::set(h, wire::atmeth::swap_add, w.opcode == WrOpcode::kCompSwap ? w.swap : w.compare_add);
  wire::set(h, wire::atmeth::compare, w.opcode == WrOpcode::kCompSwap ? w.compare_add : 0);
  e.tx_end(s, qp.peer, info.payload, 0);
  note_sent(qp, r.psn, 1, 0);
  r.psn = psn_add(r.psn, 1);
  r.next++;
  r.offset = 0;
}

}  // namespace

uint64_t ack_timeout_ns(uint8_t timeout) { return timeout == 0 ? 0 : 4096ull << timeout; }

void requester_run(Engine& e, Qp& qp) {
  QpState state = qp.state.load(std::memory_order_acquire);
  // In SQE the WQEs before the failed one are still sent (and resent) until they complete.
  if ((state != QpState::kRts && state != QpState::kSqe) || qp.req.rnr_wait) return;
  auto& r = qp.req;
  bool rc = qp.type == QpType::kRc;
  bool sent = false;
  bool local_done = false;
  while (r.next < qp.sq.produced()) {
    uint64_t index = r.next;
    SendWqe& w = qp.sq.at(index);
    if (w.failed) break;  // SQE: the WQEs after it are flushed, not sent
    if (w.started && is_local_op(w.opcode)) {  // done once; a go-back walks past it
      r.next++;
      continue;
    }
    if (!w.started) {
      if (state == QpState::kSqe) break;  // drained: new WQEs are flushed, not sent
      Start st = start(e, qp, index, w);
      // An invalidation waits for every earlier WQE to retire; if the newest packet did not
      // ask for its ACK, it is sent again asking, and the walk goes back to send it.
      if (st == Start::kWait && w.opcode == WrOpcode::kLocalInv && completer_probe(e, qp)) continue;
      if (st == Start::kWait || st == Start::kFailed) break;
      if (st == Start::kDone) {
        r.next++;
        r.offset = 0;
        local_done = true;
        continue;
      }
    }
    if (rc && psn_diff(r.psn, qp.comp.una_psn) >= static_cast<int32_t>(e.qp_window())) break;
    if (w.opcode == WrOpcode::kRdmaRead) {
      emit_read_request(e, qp, w);
    } else if (is_atomic(w.opcode)) {
      emit_atomic(e, qp, w);
    } else if (!emit_message_packet(e, qp, index, w)) {
      break;
    }
    sent = true;
  }
  if (rc && sent) {
    // Armed at the first packet outstanding; an unasked tail brings it forward to a probe.
    if (qp.comp.retry_deadline == 0 ||
        (r.tail_unasked && !qp.comp.probe_timer && qp.comp.retry_deadline > e.now() + kAckProbeNs))
      arm_retry_timer(e, qp);
  }
  if (!rc || local_done) completer_retire(e, qp);
}

}  // namespace softrdma::transport
