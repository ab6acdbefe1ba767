// The completer: matches ACKs, NAKs, READ responses and atomic ACKs to send WQEs, places
// READ and atomic results, retires WQEs in order with their completions, and decides when
// to go back and retransmit (IBA 9.7.5.2 requester side of the reliable service).
#include <algorithm>

#include "transport/engine.h"
#include "transport/psn.h"
#include "transport/rnr.h"

namespace softrdma::transport {

namespace {

bool is_rd_atomic(WrOpcode o) {
  return o == WrOpcode::kRdmaRead || o == WrOpcode::kCompSwap || o == WrOpcode::kFetchAdd;
}

uint32_t last_psn(const SendWqe& w) { return psn_add(w.first_psn, w.npkts - 1); }

WcOpcode wc_opcode(WrOpcode o) {
  switch (o) {
    case WrOpcode::kRdmaWrite:
    case WrOpcode::kRdmaWriteImm: return WcOpcode::kRdmaWrite;
    case WrOpcode::kRdmaRead: return WcOpcode::kRdmaRead;
    case WrOpcode::kCompSwap: return WcOpcode::kCompSwap;
    case WrOpcode::kFetchAdd: return WcOpcode::kFetchAdd;
    case WrOpcode::kLocalInv: return WcOpcode::kLocalInv;
    case WrOpcode::kBindMw: return WcOpcode::kBindMw;
    case WrOpcode::kRegMr: return WcOpcode::kRegMr;
    default: return WcOpcode::kSend;
  }
}

// From now: the local ACK timeout, or the probe time if allowed, sooner (or the timeout
// infinite) and the newest packet asked for nothing.
void arm(Engine& e, Qp& qp, bool probe_allowed) {
  uint64_t t = ack_timeout_ns(qp.attr.timeout);
  const bool probe = probe_allowed && qp.req.tail_unasked && (t == 0 || t > kAckProbeNs);
  qp.comp.probe_timer = probe;
  if (probe) t = kAckProbeNs;
  qp.comp.retry_deadline = t != 0 ? e.now() + t : 0;
  e.note_timer(qp, qp.comp.retry_deadline);
}

void restart_timer(Engine& e, Qp& qp) {
  bool outstanding = qp.comp.una_psn != qp.req.fresh_psn || qp.sq.retired() < qp.req.next;
  if (outstanding) {
    arm(e, qp, /*probe_allowed=*/true);
  } else {
    qp.comp.retry_deadline = 0;
    qp.comp.probe_timer = false;
  }
}

// Forward progress resets the retry budgets (IBA 9.7.5.2.8: the counters count consecutive
// failures of the same request).
void progressed(Engine& e, Qp& qp) {
  qp.comp.retry_left = qp.attr.retry_cnt;
  qp.comp.rnr_left = qp.attr.rnr_retry;
  restart_timer(e, qp);
}

// Index of the sent WQE that holds psn, or retired()-1 if none.
bool find_wqe(Qp& qp, uint32_t psn, uint64_t* index) {
  for (uint64_t i = qp.sq.retired(); i < qp.req.next || (i < qp.sq.produced() && qp.sq.at(i).started); ++i) {
    SendWqe& w = qp.sq.at(i);
    if (!w.started) break;
    if (psn_diff(psn, w.first_psn) >= 0 && psn_diff(psn, last_psn(w)) <= 0) {
      *index = i;
      return true;
    }
  }
  return false;
}

// Go back: the requester resends from psn (IBA 9.7.5.2.1 / 9.7.5.2.8).
void rewind(Qp& qp, uint32_t psn) {
  uint64_t i;
  if (!find_wqe(qp, psn, &i)) return;
  SendWqe& w = qp.sq.at(i);
  uint32_t mtu = mtu_bytes(qp.attr.path_mtu);
  qp.req.next = i;
  qp.req.offset = static_cast<uint32_t>(psn_diff(psn, w.first_psn)) * mtu;
  qp.req.psn = psn;
  qp.req.since_ackreq = 0;
  qp.req.probe_pending = false;  // a go-back after a probe: its resends are retransmissions
}

// An RNR NAK for a packet that needs no receive WQE can only mean the responder is paging
// (mlx5 and softrdma answer on-demand page faults this way): RDMA WRITE without immediate,
// READ, atomics, and every packet of a WRITE with immediate but its last.
bool is_page_fault(Qp& qp, uint32_t psn) {
  uint64_t i;
  if (!find_wqe(qp, psn, &i)) return false;
  const SendWqe& w = qp.sq.at(i);
  switch (w.opcode) {
    case WrOpcode::kRdmaWrite:
    case WrOpcode::kRdmaRead:
    case WrOpcode::kCompSwap:
    case WrOpcode::kFetchAdd: return true;
    case WrOpcode::kRdmaWriteImm: return psn != last_psn(w);
    default: return psn != w.first_psn;  // a SEND takes its receive WQE at the first packet
  }
}

void fail_at(Engine& e, Qp& qp, uint32_t psn, WcStatus status) {
  uint64_t i;
  if (find_wqe(qp, psn, &i)) {
    SendWqe& w = qp.sq.at(i);
    w.failed = true;
    w.status = status;
  }
  e.set_error(qp);
}

// Everything up to and including psn is acknowledged. A READ or atomic inside that range
// whose response has not arrived lost it: that is an implied NAK (IBA 9.7.5.2.2 C9-150), and
// the requester goes back to the first missing response.
void ack_through(Engine& e, Qp& qp, uint32_t psn) {
  if (psn_diff(psn, qp.comp.una_psn) < 0) return;  // nothing new
  bool moved = false;
  for (uint64_t i = qp.sq.retired(); i < qp.sq.produced(); ++i) {
    SendWqe& w = qp.sq.at(i);
    if (!w.started || w.failed) break;
    if (w.acked) continue;
    if (is_rd_atomic(w.opcode)) {
      if (psn_diff(psn, w.first_psn) >= 0) {
        uint32_t missing = psn_add(w.first_psn, w.read_received);
        if (psn_diff(missing, qp.comp.una_psn) > 0) {
          qp.comp.una_psn = missing;
          moved = true;
        }
        rewind(qp, missing);
        if (moved) progressed(e, qp);
        return;
      }
      break;
    }
    if (psn_diff(psn, last_psn(w)) < 0) break;
    w.acked = true;
  }
  uint32_t next = psn_add(psn, 1);
  if (psn_diff(next, qp.comp.una_psn) > 0) {
    qp.comp.una_psn = next;
    moved = true;
  }
  if (moved) progressed(e, qp);
}

// The oldest started READ/atomic not yet answered (and its SQ index); the WQEs before it are
// SEND/WRITE.
SendWqe* oldest_rd_atomic(Qp& qp, uint64_t* index = nullptr) {
  for (uint64_t i = qp.sq.retired(); i < qp.sq.produced(); ++i) {
    SendWqe& w = qp.sq.at(i);
    if (!w.started) return nullptr;
    if (is_rd_atomic(w.opcode) && !w.acked) {
      if (index != nullptr) *index = i;
      return &w;
    }
  }
  return nullptr;
}

void read_response(Engine& e, Qp& qp, const wire::PacketView& p) {
  uint64_t index;
  SendWqe* w = oldest_rd_atomic(qp, &index);
  if (w == nullptr || w->opcode != WrOpcode::kRdmaRead || w->failed) {
    qp.stats->stale_responses++;
    return;
  }
  uint32_t expected = psn_add(w->first_psn, w->read_received);
  int32_t d = psn_diff(p.psn, expected);
  if (d < 0 || psn_diff(p.psn, last_psn(*w)) > 0) {
    qp.stats->stale_responses++;  // duplicate of a response already placed, or not ours
    return;
  }
  if (d > 0) {
    // A response was lost: ask again from the first missing one, once per gap.
    if (!(qp.comp.nak_seen && qp.comp.last_nak_psn == expected)) {
      qp.comp.nak_seen = true;
      qp.comp.last_nak_psn = expected;
      rewind(qp, expected);
    }
    return;
  }
  // A response also acknowledges every request before the READ (IBA 9.7.5.2.3).
  ack_through(e, qp, psn_prev(w->first_psn));
  uint32_t mtu = mtu_bytes(qp.attr.path_mtu);
  uint64_t offset = uint64_t{w->read_received} * mtu;
  uint32_t remaining = static_cast<uint32_t>(w->length - offset);
  bool last = p.info->any(wire::kLast);
  uint32_t want = last ? remaining : mtu;
  if (p.payload_len != want || (last != (w->read_received + 1 == w->npkts))) {
    w->failed = true;
    w->status = WcStatus::kBadRespErr;
    e.set_error(qp);
    return;
  }
  WcStatus status;
  if (!scatter(e, qp.pd, qp.sq.sges(index), w->num_sge, offset, p.payload, p.payload_len, &status)) {
    w->failed = true;
    w->status = status;
    e.set_error(qp);
    return;
  }
  w->read_received++;
  qp.comp.nak_seen = false;
  if (w->read_received == w->npkts) w->acked = true;
  uint32_t next = psn_add(p.psn, 1);
  if (psn_diff(next, qp.comp.una_psn) > 0) qp.comp.una_psn = next;
  progressed(e, qp);
}

void atomic_ack(Engine& e, Qp& qp, const wire::PacketView& p) {
  uint64_t index;
  SendWqe* w = oldest_rd_atomic(qp, &index);
  if (w == nullptr || w->opcode == WrOpcode::kRdmaRead || w->failed || p.psn != w->first_psn) {
    qp.stats->stale_responses++;
    return;
  }
  ack_through(e, qp, psn_prev(w->first_psn));
  uint64_t orig = p.get(wire::kAtmAck, wire::atmack::orig);
  WcStatus status;
  if (!scatter(e, qp.pd, qp.sq.sges(index), w->num_sge, 0, reinterpret_cast<const uint8_t*>(&orig), sizeof orig, &status)) {
    w->failed = true;
    w->status = status;
    e.set_error(qp);
    return;
  }
  w->acked = true;
  uint32_t next = psn_add(p.psn, 1);
  if (psn_diff(next, qp.comp.una_psn) > 0) qp.comp.una_psn = next;
  progressed(e, qp);
}

}  // namespace

void completer_receive(Engine& e, Qp& qp, const wire::PacketView& p) {
  if (qp.type != QpType::kRc) return;
  // Nothing we never sent can be acknowledged.
  if (psn_diff(p.psn, qp.req.fresh_psn) >= 0) {
    qp.stats->stale_responses++;
    return;
  }
  if (p.info->is(wire::kReadResp)) {
    read_response(e, qp, p);
  } else if (p.info->is(wire::kAtomicAck)) {
    atomic_ack(e, qp, p);
  } else {
    uint8_t syndrome = static_cast<uint8_t>(p.get(wire::kAeth, wire::aeth::syndrome));
    uint8_t value = syndrome & 0x1f;
    qp.stats->acks_received++;
    switch (syndrome >> 5) {
      case 0:  // ACK
        ack_through(e, qp, p.psn);
        break;
      case 1:  // RNR NAK: no receive WQE for the request at p.psn, or pages not resident
        qp.stats->rnr_nak_received++;
        ack_through(e, qp, psn_prev(p.psn));
        if (is_page_fault(qp, p.psn)) {
          // The responder is bringing in on-demand pages (seed 003): a pause, not a failure,
          // so the retry budget is left alone.
          qp.stats->page_fault_pauses++;
        } else if (qp.comp.rnr_left == 0) {
          fail_at(e, qp, p.psn, WcStatus::kRnrRetryExcErr);
          break;
        } else if (qp.comp.rnr_left != 7) {
          qp.comp.rnr_left--;  // 7 means retry forever (IBA 9.7.5.2.8)
        }
        rewind(qp, p.psn);
        qp.req.rnr_wait = true;
        qp.req.rnr_deadline = e.now() + uint64_t{kRnrTimerUs[value]} * 1000;
        e.note_timer(qp, qp.req.rnr_deadline);
        qp.comp.retry_deadline = 0;  // waiting out an RNR is not a transport timeout
        break;
      case 3:  // NAK
        // About a request already answered in full (a duplicate's late NAK): nothing to fail.
        if (psn_diff(p.psn, qp.comp.una_psn) < 0) {
          qp.stats->stale_responses++;
          break;
        }
        ack_through(e, qp, psn_prev(p.psn));
        if (value == 0) {  // PSN sequence error: resend from the PSN the responder expects
          qp.stats->nak_seq_received++;
          if (qp.comp.retry_left == 0) {
            fail_at(e, qp, p.psn, WcStatus::kRetryExcErr);
            break;
          }
          if (qp.comp.retry_left != 7) qp.comp.retry_left--;
          rewind(qp, p.psn);
          restart_timer(e, qp);
        } else {
          qp.stats->nak_error_received++;
          WcStatus status = value == 1   ? WcStatus::kRemInvReqErr
                            : value == 2 ? WcStatus::kRemAccessErr
                                         : WcStatus::kRemOpErr;
          fail_at(e, qp, p.psn, status);
        }
        break;
      default:
        qp.stats->stale_responses++;  // reserved syndrome
        break;
    }
  }
  completer_retire(e, qp);
}

void arm_retry_timer(Engine& e, Qp& qp) { arm(e, qp, /*probe_allowed=*/true); }

bool completer_probe(Engine& e, Qp& qp) {
  auto& r = qp.req;
  // Mid go-back the walk reaches the newest packet anyway, and resending it asks.
  if (!r.tail_unasked || r.psn != r.fresh_psn || r.rnr_wait) return false;
  uint32_t newest = psn_prev(r.fresh_psn);
  uint64_t i;
  if (!find_wqe(qp, newest, &i)) return false;
  // A duplicate the responder acknowledges without executing it again; if the packet was lost
  // this is its retransmission, and if an earlier one was, the NAK its PSN draws starts the
  // go-back. Nothing has failed, so no retry is counted.
  rewind(qp, newest);
  r.probe_pending = true;
  qp.stats->ack_probes++;
  e.activate(qp);
  return true;
}

void completer_timeout(Engine& e, Qp& qp, uint64_t now) {
  (void)now;
  // An unanswered probe is a timeout from here on (none, if the timeout is infinite); a probe
  // time whose tail has asked since is not one yet either.
  if (completer_probe(e, qp) || qp.comp.probe_timer) {
    arm(e, qp, /*probe_allowed=*/false);
    return;
  }
  qp.stats->timeouts++;
  if (qp.comp.retry_left == 0) {
    qp.comp.retry_deadline = 0;
    fail_at(e, qp, qp.comp.una_psn, WcStatus::kRetryExcErr);
    return;
  }
  if (qp.comp.retry_left != 7) qp.comp.retry_left--;
  // Resume from the oldest unacknowledged packet; an unanswered READ from its first missing
  // response.
  SendWqe* rd = oldest_rd_atomic(qp);
  uint32_t from = qp.comp.una_psn;
  if (rd != nullptr && psn_diff(psn_add(rd->first_psn, rd->read_received), from) < 0)
    from = psn_add(rd->first_psn, rd->read_received);
  rewind(qp, from);
  qp.comp.nak_seen = false;
  restart_timer(e, qp);
}

void flush_head(Engine& e, Qp& qp) {
  SendWqe& w = qp.sq.at(qp.sq.retired());
  Wc wc{};
  wc.wr_id = w.wr_id;
  wc.status = w.failed ? w.status : WcStatus::kWrFlushErr;
  wc.qp_num = qp.qpn;
  qp.sq.retire();  // free the slot before the completion is visible
  e.complete(qp.send_cq, wc, false);
}

void completer_retire(Engine& e, Qp& qp) {
  while (qp.sq.retired() < qp.sq.produced()) {
    SendWqe& w = qp.sq.at(qp.sq.retired());
    if (!w.acked && !w.failed) break;
    bool report = w.failed || w.flags & kSignaled || qp.sq_sig_all;
    Wc wc{};
    wc.wr_id = w.wr_id;
    wc.status = w.failed ? w.status : WcStatus::kSuccess;
    wc.opcode = wc_opcode(w.opcode);
    wc.byte_len = is_local_op(w.opcode) ? 0 : w.length;
    wc.qp_num = qp.qpn;
    if (is_rd_atomic(w.opcode) && w.started && qp.req.inflight_rd_atomic > 0) qp.req.inflight_rd_atomic--;
    bool failed = w.failed, started = w.started;
    uint32_t end_psn = psn_add(w.first_psn, w.npkts);
    // The slot is free before the completion is visible: a consumer that polls it and posts
    // again at once must find room (the WQE is not touched after this).
    qp.sq.retire();
    if (report) e.complete(qp.send_cq, wc, false);
    // A go-back may have pointed the requester at a WQE that has since been answered in full
    // (late responses): it resumes after it.
    if (qp.req.next < qp.sq.retired()) {
      qp.req.next = qp.sq.retired();
      qp.req.offset = 0;
      if (started && !failed) qp.req.psn = end_psn;  // a failed WQE sent nothing (or the QP is in ERR)
    }
    if (failed) break;  // the rest is flushed by the engine
  }
  // SQE (FIG. 11 option 1): once the failed WQE is out, nothing behind it was started; those
  // WQEs, and whatever is posted meanwhile, complete as flushed.
  if (qp.state.load(std::memory_order_relaxed) != QpState::kSqe) return;
  while (qp.sq.retired() < qp.sq.produced() && !qp.sq.at(qp.sq.retired()).started) flush_head(e, qp);
  if (qp.req.next < qp.sq.retired()) {
    qp.req.next = qp.sq.retired();
    qp.req.offset = 0;
  }
}

}  // namespace softrdma::transport
