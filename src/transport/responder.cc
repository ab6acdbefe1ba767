// The responder: executes incoming requests (IBA 9.7.5.1 for RC, 9.8 for UC, 9.8.3 for UD).
//
// For RC, every request is first classified by its PSN against the expected PSN: ahead of it
// (sequence error: one NAK per gap), behind it (a duplicate: acknowledge again, re-serve a
// READ from memory, replay an atomic's result), or expected (execute). Execution checks, then
// acts, in the order of seed 002 FIG. 18: the keys and bounds are validated before a byte of
// registered memory is touched, and every failure maps to exactly one NAK.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "transport/engine.h"
#include "transport/psn.h"
#include "transport/rnr.h"

namespace softrdma::transport {

namespace {

// AETH syndromes (IBA Table 44). ACKs carry the "invalid" credit count: no end-to-end credits.
constexpr uint8_t kAck = 0x1f;
constexpr uint8_t kRnrNak = 0x20;
constexpr uint8_t kNakSeq = 0x60;
constexpr uint8_t kNakInvReq = 0x61;
constexpr uint8_t kNakAccess = 0x62;
constexpr uint8_t kNakOp = 0x63;

constexpr uint8_t kPageFault = 0xff;  // internal: answer with a page-fault RNR NAK

constexpr uint32_t kMaxMessage = 1u << 31;
constexpr uint32_t kGrhSize = 40;

uint32_t packets_for(uint32_t len, uint32_t mtu) { return len == 0 ? 1 : (len + mtu - 1) / mtu; }

// A coalesced ACK: one per QP at the end of the pass, covering every request it received.
void request_ack(Qp& qp) { qp.resp.ack_pending = true; }

void emit_ack(Engine& e, Qp& qp, uint8_t syndrome, uint32_t psn) {
  const wire::OpcodeInfo& info = wire::opcode_info(wire::kRcAck);
  TxSlot* s = e.tx_begin();
  wire::BthFields b;
  b.opcode = wire::kRcAck;
  b.dqpn = qp.attr.dest_qpn;
  b.psn = psn;
  wire::write_bth(s->hdr, b);
  wire::set(s->hdr + info.aeth, wire::aeth::syndrome, syndrome);
  wire::set(s->hdr + info.aeth, wire::aeth::msn, qp.resp.msn);
  e.tx_end(s, qp.peer, info.payload, 0);
  qp.stats->acks_sent++;
}

// A NAK that ends the connection (IBA 9.9.2, class C errors): the QP goes to ERR once it is out.
void fatal_nak(Engine& e, Qp& qp, uint8_t syndrome, uint32_t psn) {
  emit_ack(e, qp, syndrome, psn);
  if (syndrome == kNakInvReq) qp.stats->nak_inv_req_sent++;
  if (syndrome == kNakAccess) qp.stats->nak_access_sent++;
  if (syndrome == kNakOp) qp.stats->nak_op_sent++;
  qp.responder_error = true;
}

// Takes the next receive WQE, copying it out of the (possibly shared) queue.
bool take_recv(Qp& qp) {
  auto& r = qp.resp;
  if (r.recv_held) {
    r.recv_held = false;
    return true;
  }
  queue::RecvQueue* q = qp.rq();
  if (q->outstanding() == 0) return false;
  uint64_t i = q->retired();
  const queue::RecvWqe& w = q->at(i);
  r.recv_wr_id = w.wr_id;
  r.recv_nsge = w.num_sge;
  r.recv_length = w.length;
  std::copy_n(q->sges(i), w.num_sge, r.recv_sges.get());
  q->retire();
  r.recv_offset = 0;
  return true;
}

void complete_recv(Engine& e, Qp& qp, Wc wc, bool solicited) {
  wc.wr_id = qp.resp.recv_wr_id;
  wc.qp_num = qp.qpn;
  qp.resp.reply_likely = true;
  if (qp.type != QpType::kUd) wc.src_qp = qp.attr.dest_qpn;
  e.complete(qp.recv_cq, wc, solicited);
}

void fail_recv(Engine& e, Qp& qp, WcStatus status, WcOpcode op) {
  Wc wc{};
  wc.status = status;
  wc.opcode = op;
  complete_recv(e, qp, wc, false);
}

// Resolves [va, va+len) of rkey for a remote access, after the QP's own remote access flags.
mem::KeyError remote_check(Engine& e, Qp& qp, uint32_t rkey, uint64_t va, uint32_t len, mem::Need need,
                           mem::Translation* t) {
  uint32_t qp_flag = need == mem::Need::kRemoteRead    ? mem::kRemoteRead
                     : need == mem::Need::kRemoteWrite ? mem::kRemoteWrite
                                                       : mem::kRemoteAtomic;
  return (qp.attr.access & qp_flag) ? e.mrs().check(rkey, qp.pd, va, len, need, t, qp.qpn) : mem::KeyError::kNoAccess;
}

// The first packet of an RDMA message claims a one-touch entry (FIG. 18B); a second message
// is refused and the entry is gone. False when refused.
bool first_touch(Engine& e, Qp& qp, uint32_t rkey, uint64_t len) {
  if (e.mrs().touch(rkey, qp.qpn, len) == mem::KeyError::kOk) return true;
  qp.stats->one_touch_refused++;
  return false;
}

// On-demand entries (seed 003): the engine touches only resident pages. Missing ones are
// brought in by the fault worker while the peer is told to come back later.
enum class Paging { kGo, kFault, kBad };

Paging page_in(Engine& e, Qp& qp, const mem::Translation& t, uint64_t len, bool write) {
  if (len == 0 || !t.entry->on_demand) return Paging::kGo;
  auto& r = qp.resp;
  switch (mem::residency(t.host, len)) {
    case mem::Residency::kResident: r.fault_ticket = 0; return Paging::kGo;
    case mem::Residency::kUnmapped: return Paging::kBad;
    case mem::Residency::kMissing: break;
  }
  if (r.fault_ticket != 0) {
    int result = 0;
    if (!e.faults().done(r.fault_ticket, &result)) return Paging::kFault;  // still coming in
    r.fault_ticket = 0;
    // Mapped but not accessible that way (e.g. read-only memory for a WRITE).
    if (result != 0 && result != ESTALE) return Paging::kBad;
  }
  r.fault_ticket = e.faults().request(t.host, len, write);
  if (r.fault_ticket != 0) qp.stats->page_faults += (len + 4095) / 4096;
  return Paging::kFault;
}

// The page-fault acknowledgement: an RNR NAK, which any RoCE requester understands and which
// a softrdma requester does not count against its retry budget. Its timer grows with the
// number of pages coming in.
void emit_page_fault_nak(Engine& e, Qp& qp, uint32_t psn, uint64_t len) {
  uint8_t code = rnr_timer_code(20 + (len + 4095) / 4096);
  qp.stats->page_fault_naks_sent++;
  emit_ack(e, qp, static_cast<uint8_t>(kRnrNak | code), psn);
  qp.resp.nak_sent = true;  // the packets behind it are not a sequence error: stay quiet
}

// Writes a packet's payload into a validated range. The implicit region spans memory the
// process may not have mapped: its copies fail with EFAULT instead of faulting the process.
bool place(const mem::Translation& t, const uint8_t* data) {
  if (t.entry->implicit) return mem::safe_store(t.host, data, t.length) == 0;
  t.store(data);
  return true;
}

// Sends READ responses for [va, va+len) starting at psn, read from registered memory now.
void serve_read(Engine& e, Qp& qp, uint32_t psn, uint64_t va, uint32_t rkey, uint32_t len) {
  uint32_t mtu = mtu_bytes(qp.attr.path_mtu);
  uint32_t npkts = packets_for(len, mtu);
  uint32_t off = 0;
  for (uint32_t i = 0; i < npkts; ++i) {
    uint32_t chunk = std::min(mtu, len - off);
    uint8_t opcode = npkts == 1          ? wire::kRcReadRespOnly
                     : i == 0            ? wire::kRcReadRespFirst
                     : i + 1 == npkts    ? wire::kRcReadRespLast
                                         : wire::kRcReadRespMiddle;
    const wire::OpcodeInfo& info = wire::opcode_info(opcode);
    mem::Translation t;
    // The region went away between packets: the rest is not sent; the requester times out.
    if (chunk > 0 && remote_check(e, qp, rkey, va + off, chunk, mem::Need::kRemoteRead, &t) != mem::KeyError::kOk)
      return;
    TxSlot* s = e.tx_begin();
    if (chunk > 0 && t.entry->implicit) {
      // The implicit region may name memory the process cannot read: copy it safely first.
      if (mem::safe_load(s->bounce, t.host, chunk) != 0) return;  // the slot stays unused
      s->frame->parts[s->frame->nparts++] = {s->bounce, chunk};
    } else if (chunk > 0) {
      // One part per page touched (FIG. 12): an MTU spans at most two pages.
      s->frame->nparts += t.parts(s->frame->parts + s->frame->nparts, link::kMaxTxParts - 2);
    }
    wire::BthFields b;
    b.opcode = opcode;
    b.dqpn = qp.attr.dest_qpn;
    b.psn = psn_add(psn, i);
    wire::write_bth(s->hdr, b);
    if (info.has(wire::kAeth)) {
      wire::set(s->hdr + info.aeth, wire::aeth::syndrome, kAck);
      wire::set(s->hdr + info.aeth, wire::aeth::msn, qp.resp.msn);
    }
    e.tx_end(s, qp.peer, info.payload, chunk);
    qp.stats->tx_packets++;
    qp.stats->tx_bytes += chunk;
    off += chunk;
    // A one-touch entry is used up by its last response.
    if (chunk > 0 && (t.entry->acl & mem::kAclOneTouch)) e.mrs().placed(rkey, chunk);
  }
}

void emit_atomic_ack(Engine& e, Qp& qp, uint32_t psn, uint64_t orig) {
  const wire::OpcodeInfo& info = wire::opcode_info(wire::kRcAtomicAck);
  TxSlot* s = e.tx_begin();
  wire::BthFields b;
  b.opcode = wire::kRcAtomicAck;
  b.dqpn = qp.attr.dest_qpn;
  b.psn = psn;
  wire::write_bth(s->hdr, b);
  wire::set(s->hdr + info.aeth, wire::aeth::syndrome, kAck);
  wire::set(s->hdr + info.aeth, wire::aeth::msn, qp.resp.msn);
  wire::set(s->hdr + info.atmack, wire::atmack::orig, orig);
  e.tx_end(s, qp.peer, info.payload, 0);
}

ResponderResource& new_resource(Qp& qp) {
  auto& r = qp.resp;
  ResponderResource& res = r.resources[r.next_resource];
  r.next_resource = (r.next_resource + 1) % r.nresources;
  res = ResponderResource{};
  res.valid = true;
  return res;
}

// A request behind the expected PSN (IBA 9.7.5.1.1 C9-104 ff.).
void duplicate(Engine& e, Qp& qp, const wire::PacketView& p) {
  auto& r = qp.resp;
  qp.stats->duplicates++;
  const wire::OpcodeInfo& info = *p.info;
  if (info.is(wire::kReadReq)) {
    uint64_t va = p.get(wire::kReth, wire::reth::va);
    uint32_t rkey = static_cast<uint32_t>(p.get(wire::kReth, wire::reth::rkey));
    uint32_t len = static_cast<uint32_t>(p.get(wire::kReth, wire::reth::dmalen));
    uint32_t mtu = mtu_bytes(qp.attr.path_mtu);
    for (uint32_t i = 0; i < r.nresources; ++i) {
      ResponderResource& res = r.resources[i];
      if (!res.valid || res.atomic) continue;
      int32_t into = psn_diff(p.psn, res.psn);
      if (into < 0 || static_cast<uint32_t>(into) >= res.npkts) continue;
      // Re-served only within the original request's PSN range, through the same checks.
      if (packets_for(len, mtu) > res.npkts - static_cast<uint32_t>(into)) return;
      mem::Translation t;
      // The memory is gone (deregistered, invalidated, a one-touch entry used up): the READ
      // cannot be answered again, and silence would only make the requester retry forever.
      if (len > 0 && remote_check(e, qp, rkey, va, len, mem::Need::kRemoteRead, &t) != mem::KeyError::kOk)
        return fatal_nak(e, qp, kNakAccess, p.psn);
      if (len > 0 && page_in(e, qp, t, len, false) == Paging::kBad) return fatal_nak(e, qp, kNakAccess, p.psn);
      qp.stats->read_resends++;
      serve_read(e, qp, p.psn, va, rkey, len);
      return;
    }
    return;  // too old to remember: the requester will time out and fail, as IBA allows
  }
  if (info.is(wire::kAtomic)) {
    for (uint32_t i = 0; i < r.nresources; ++i) {
      ResponderResource& res = r.resources[i];
      if (res.valid && res.atomic && res.psn == p.psn) {
        qp.stats->atomic_replays++;
        emit_atomic_ack(e, qp, p.psn, res.atomic_orig);
        return;
      }
    }
    return;
  }
  // SEND / WRITE: acknowledge again, coalesced with whatever else is due.
  if (p.ackreq || info.any(wire::kLast)) request_ack(qp);
}

// Checks shared by RC and UC: message continuity and payload length rules (IBA 9.7.5.1.2,
// C9-87..C9-89). Returns 0 or the NAK syndrome to send.
uint8_t check_sequence_and_length(const Qp& qp, const wire::PacketView& p) {
  const auto& r = qp.resp;
  const wire::OpcodeInfo& info = *p.info;
  bool continues = info.any(wire::kMiddle) || (info.any(wire::kLast) && !info.any(wire::kFirst));
  if (info.is(wire::kSend) && continues != r.in_send) return kNakInvReq;
  if (info.is(wire::kWrite) && continues != r.in_write) return kNakInvReq;
  if (!info.is(wire::kSend) && r.in_send) return kNakInvReq;
  if (!info.is(wire::kWrite) && r.in_write) return kNakInvReq;
  uint32_t mtu = mtu_bytes(qp.attr.path_mtu);
  bool full_packet = info.any(wire::kMiddle) || (info.any(wire::kFirst) && !info.any(wire::kLast));
  if (full_packet && p.payload_len != mtu) return kNakInvReq;
  if (p.payload_len > mtu) return kNakInvReq;
  return 0;
}

// Executes an in-sequence SEND or RDMA WRITE packet. Returns 0, or a syndrome: kRnrNak to
// back off (nothing consumed), or a NAK for an error (the caller decides what it means).
uint8_t execute_message(Engine& e, Qp& qp, const wire::PacketView& p, bool rc) {
  auto& r = qp.resp;
  const wire::OpcodeInfo& info = *p.info;
  bool last = info.any(wire::kLast);
  if (info.is(wire::kSend)) {
    if (info.any(wire::kFirst)) {
      if (!take_recv(qp)) return kRnrNak;
      r.in_send = true;
      r.recv_offset = 0;
    }
    WcStatus status = WcStatus::kSuccess;
    if (uint64_t{r.recv_offset} + p.payload_len > r.recv_length) {
      status = WcStatus::kLocLenErr;
    } else if (!scatter(e, qp.pd, r.recv_sges.get(), r.recv_nsge, r.recv_offset, p.payload, p.payload_len,
                        &status)) {
    }
    if (status != WcStatus::kSuccess) {
      r.in_send = false;
      fail_recv(e, qp, status, WcOpcode::kRecv);
      return status == WcStatus::kLocLenErr || status == WcStatus::kRemInvReqErr ? kNakInvReq : kNakOp;
    }
    r.recv_offset += p.payload_len;
    if (last) {
      Wc wc{};
      wc.opcode = WcOpcode::kRecv;
      wc.byte_len = r.recv_offset;
      if (info.is(wire::kWithImm)) {
        wc.wc_flags |= kWcWithImm;
        wc.imm_data = static_cast<uint32_t>(p.get(wire::kImmDt, wire::immdt::imm));
      }
      if (info.is(wire::kWithInv)) {
        // The message has arrived: now the key it names stops working (FIG. 17A: deregister
        // on an incoming send). A key that cannot be invalidated fails the message.
        uint32_t key = static_cast<uint32_t>(p.get(wire::kIeth, wire::ieth::rkey));
        if (e.mrs().invalidate(key, qp.pd, qp.qpn, true) != mem::KeyError::kOk) {
          r.in_send = false;
          fail_recv(e, qp, WcStatus::kRemInvReqErr, WcOpcode::kRecv);
          return kNakInvReq;
        }
        qp.stats->remote_invalidations++;
        wc.wc_flags |= kWcWithInv;
        wc.imm_data = key;
      }
      r.in_send = false;
      complete_recv(e, qp, wc, p.se);
    }
    return 0;
  }
  // RDMA WRITE.
  if (info.any(wire::kFirst)) {
    uint64_t va = p.get(wire::kReth, wire::reth::va);
    uint32_t rkey = static_cast<uint32_t>(p.get(wire::kReth, wire::reth::rkey));
    uint32_t len = static_cast<uint32_t>(p.get(wire::kReth, wire::reth::dmalen));
    if (len > kMaxMessage) return kNakInvReq;
    mem::Translation t;
    // IBA C9-88: a zero-length WRITE needs no valid R_Key.
    if (len > 0 && remote_check(e, qp, rkey, va, len, mem::Need::kRemoteWrite, &t) != mem::KeyError::kOk)
      return kNakAccess;
    // Bring the whole message in at once: one pause per message, not one per packet.
    if (Paging pg = len > 0 ? page_in(e, qp, t, len, true) : Paging::kGo; pg != Paging::kGo)
      return pg == Paging::kFault ? kPageFault : kNakAccess;
    if (len > 0 && !first_touch(e, qp, rkey, len)) return kNakAccess;
    r.in_write = true;
    r.write_va = va;
    r.write_rkey = rkey;
    r.write_remaining = len;
    r.write_total = len;
  }
  if (p.payload_len > r.write_remaining || (last && p.payload_len != r.write_remaining)) {
    r.in_write = false;
    return kNakInvReq;
  }
  bool imm = info.is(wire::kWithImm);
  mem::Translation t;
  if (p.payload_len > 0) {
    if (remote_check(e, qp, r.write_rkey, r.write_va, p.payload_len, mem::Need::kRemoteWrite, &t) !=
        mem::KeyError::kOk) {
      r.in_write = false;
      if (last && imm && take_recv(qp)) fail_recv(e, qp, WcStatus::kRemAccessErr, WcOpcode::kRecvRdmaWithImm);
      return kNakAccess;
    }
    // Pages of an on-demand region can go again while a message comes in.
    if (Paging pg = page_in(e, qp, t, p.payload_len, true); pg != Paging::kGo) {
      if (pg == Paging::kBad) r.in_write = false;
      return pg == Paging::kFault ? kPageFault : kNakAccess;
    }
  }
  if (last && imm && !take_recv(qp)) return kRnrNak;  // before any byte of this packet lands
  if (p.payload_len > 0) {
    if (!place(t, p.payload)) {
      r.in_write = false;
      if (last && imm) fail_recv(e, qp, WcStatus::kRemAccessErr, WcOpcode::kRecvRdmaWithImm);
      return kNakAccess;
    }
    if (t.entry->acl & mem::kAclOneTouch) e.mrs().placed(r.write_rkey, p.payload_len);
  }
  r.write_va += p.payload_len;
  r.write_remaining -= p.payload_len;
  if (last) {
    r.in_write = false;
    if (imm) {
      Wc wc{};
      wc.opcode = WcOpcode::kRecvRdmaWithImm;
      wc.byte_len = r.write_total;
      wc.wc_flags = kWcWithImm;
      wc.imm_data = static_cast<uint32_t>(p.get(wire::kImmDt, wire::immdt::imm));
      complete_recv(e, qp, wc, p.se);
    }
  }
  (void)rc;
  return 0;
}

void rc_receive(Engine& e, Qp& qp, const wire::PacketView& p) {
  auto& r = qp.resp;
  if (qp.responder_error) return;  // a fatal NAK is out; the QP enters ERR at the end of this pass
  int32_t d = psn_diff(p.psn, r.epsn);
  if (d > 0) {
    // IBA 9.7.5.1.1: one NAK per gap; later packets of the same gap are dropped quietly.
    qp.stats->out_of_sequence++;
    if (!r.nak_sent) {
      r.nak_sent = true;
      emit_ack(e, qp, kNakSeq, r.epsn);
      qp.stats->nak_seq_sent++;
    }
    return;
  }
  if (d < 0) {
    duplicate(e, qp, p);
    return;
  }
  const wire::OpcodeInfo& info = *p.info;
  if (uint8_t nak = check_sequence_and_length(qp, p)) {
    fatal_nak(e, qp, nak, p.psn);
    return;
  }
  if (info.is(wire::kReadReq)) {
    uint64_t va = p.get(wire::kReth, wire::reth::va);
    uint32_t rkey = static_cast<uint32_t>(p.get(wire::kReth, wire::reth::rkey));
    uint32_t len = static_cast<uint32_t>(p.get(wire::kReth, wire::reth::dmalen));
    if (len > kMaxMessage) return fatal_nak(e, qp, kNakInvReq, p.psn);
    mem::Translation t;
    if (len > 0 && remote_check(e, qp, rkey, va, len, mem::Need::kRemoteRead, &t) != mem::KeyError::kOk)
      return fatal_nak(e, qp, kNakAccess, p.psn);
    if (Paging pg = len > 0 ? page_in(e, qp, t, len, false) : Paging::kGo; pg != Paging::kGo)
      return pg == Paging::kFault ? emit_page_fault_nak(e, qp, p.psn, len) : fatal_nak(e, qp, kNakAccess, p.psn);
    if (len > 0 && !first_touch(e, qp, rkey, len)) return fatal_nak(e, qp, kNakAccess, p.psn);
    ResponderResource& res = new_resource(qp);
    res.psn = p.psn;
    res.npkts = packets_for(len, mtu_bytes(qp.attr.path_mtu));
    r.msn = psn_add(r.msn, 1);
    serve_read(e, qp, p.psn, va, rkey, len);
    r.epsn = psn_add(r.epsn, res.npkts);
    r.nak_sent = false;
    return;
  }
  if (info.is(wire::kAtomic)) {
    uint64_t va = p.get(wire::kAtmEth, wire::atmeth::va);
    uint32_t rkey = static_cast<uint32_t>(p.get(wire::kAtmEth, wire::atmeth::rkey));
    if (va & 7) return fatal_nak(e, qp, kNakInvReq, p.psn);  // IBA C9-?: atomics are 8-byte aligned
    mem::Translation t;
    if (remote_check(e, qp, rkey, va, 8, mem::Need::kRemoteAtomic, &t) != mem::KeyError::kOk)
      return fatal_nak(e, qp, kNakAccess, p.psn);
    // The target must be one aligned word in memory (an iova that is aligned may not be).
    if (t.chunk(0, &t.host) != 8 || (reinterpret_cast<uintptr_t>(t.host) & 7))
      return fatal_nak(e, qp, kNakInvReq, p.psn);
    if (Paging pg = page_in(e, qp, t, 8, true); pg != Paging::kGo)
      return pg == Paging::kFault ? emit_page_fault_nak(e, qp, p.psn, 8) : fatal_nak(e, qp, kNakAccess, p.psn);
    // An atomic cannot be done through a fault-safe copy: in the implicit region, make sure the
    // (resident) page may be written before touching it (cheap: nothing is read from disk).
    if (t.entry->implicit && mem::populate(t.host, 8, true) != 0) return fatal_nak(e, qp, kNakAccess, p.psn);
    if (!first_touch(e, qp, rkey, 8)) return fatal_nak(e, qp, kNakAccess, p.psn);
    std::atomic_ref<uint64_t> target(*reinterpret_cast<uint64_t*>(t.host));
    uint64_t operand = p.get(wire::kAtmEth, wire::atmeth::swap_add);
    uint64_t orig;
    if (info.is(wire::kCompSwap)) {
      orig = p.get(wire::kAtmEth, wire::atmeth::compare);
      target.compare_exchange_strong(orig, operand);
    } else {
      orig = target.fetch_add(operand);
    }
    if (t.entry->acl & mem::kAclOneTouch) e.mrs().placed(rkey, 8);
    ResponderResource& res = new_resource(qp);
    res.atomic = true;
    res.psn = p.psn;
    res.npkts = 1;
    res.atomic_orig = orig;
    r.msn = psn_add(r.msn, 1);
    emit_atomic_ack(e, qp, p.psn, orig);
    r.epsn = psn_add(r.epsn, 1);
    r.nak_sent = false;
    return;
  }
  uint8_t result = execute_message(e, qp, p, true);
  if (result == kPageFault) {
    uint64_t len = info.has(wire::kReth) ? p.get(wire::kReth, wire::reth::dmalen) : p.payload_len;
    return emit_page_fault_nak(e, qp, p.psn, len);
  }
  if (result == kRnrNak) {
    qp.stats->rnr_nak_sent++;
    emit_ack(e, qp, static_cast<uint8_t>(kRnrNak | (qp.attr.min_rnr_timer & 0x1f)), p.psn);
    r.nak_sent = true;  // the packets behind it are not a sequence error: stay quiet
    return;
  }
  if (result != 0) return fatal_nak(e, qp, result, p.psn);
  if (info.any(wire::kLast)) r.msn = psn_add(r.msn, 1);
  r.epsn = psn_add(r.epsn, 1);
  r.nak_sent = false;
  if (p.ackreq) request_ack(qp);
}

// UC: no ACKs and no retransmission; a message that lost a packet is dropped whole and the
// receive WQE it was filling is kept for the next message (IBA 9.8.3).
void uc_receive(Engine& e, Qp& qp, const wire::PacketView& p) {
  auto& r = qp.resp;
  const wire::OpcodeInfo& info = *p.info;
  bool first = info.any(wire::kFirst);
  if (p.psn != r.epsn && (r.in_send || r.in_write)) {
    qp.stats->uc_dropped_messages++;
    if (r.in_send) r.recv_held = true;
    r.in_send = r.in_write = false;
    r.uc_drop = true;
  }
  r.epsn = psn_add(p.psn, 1);
  if (r.uc_drop && !first) return;
  r.uc_drop = false;
  if (check_sequence_and_length(qp, p) != 0) {
    if (r.in_send) r.recv_held = true;
    r.in_send = r.in_write = false;
    r.uc_drop = true;
    return;
  }
  uint8_t result = execute_message(e, qp, p, false);
  if (result == kRnrNak) {
    e.counters().drop_no_recv_wqe++;
    r.uc_drop = !info.any(wire::kLast);
  } else if (result != 0) {
    r.uc_drop = !info.any(wire::kLast);
  }
}

// UD: one packet per message; the first 40 bytes of the receive buffer get the GRH area, which
// for RoCEv2 holds the IP header (IPv4 in bytes 20..39), as real RoCE devices deliver it.
void ud_receive(Engine& e, Qp& qp, const wire::PacketView& p, const link::RxFrame& f) {
  uint32_t qkey = static_cast<uint32_t>(p.get(wire::kDeth, wire::deth::qkey));
  if (qkey != qp.attr.qkey) {
    e.counters().drop_qkey++;
    return;
  }
  if (!take_recv(qp)) {
    e.counters().drop_no_recv_wqe++;
    return;
  }
  auto& r = qp.resp;
  uint8_t grh[kGrhSize] = {};
  uint32_t udp_len = 8 + f.len;
  if (f.src.ip.is_v4()) {
    uint8_t* ip = grh + 20;
    ip[0] = 0x45;
    wire::store_be(ip + 2, 2, 20 + udp_len);
    wire::store_be(ip + 6, 2, 0x4000);
    ip[8] = 64;
    ip[9] = 17;
    std::memcpy(ip + 12, &f.src.ip.bytes[12], 4);
    std::memcpy(ip + 16, &f.dst.bytes[12], 4);
    uint32_t sum = 0;
    for (int i = 0; i < 20; i += 2) sum += wire::load_be(ip + i, 2);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    wire::store_be(ip + 10, 2, ~sum & 0xffff);
  } else {
    grh[0] = 0x60;
    wire::store_be(grh + 4, 2, udp_len);
    grh[6] = 17;
    grh[7] = 64;
    std::memcpy(grh + 8, f.src.ip.bytes.data(), 16);
    std::memcpy(grh + 24, f.dst.bytes.data(), 16);
  }
  Wc wc{};
  wc.opcode = WcOpcode::kRecv;
  wc.src_qp = static_cast<uint32_t>(p.get(wire::kDeth, wire::deth::sqpn));
  if (uint64_t{kGrhSize} + p.payload_len > r.recv_length) {
    wc.status = WcStatus::kLocLenErr;
    complete_recv(e, qp, wc, false);
    return;
  }
  WcStatus status;
  if (!scatter(e, qp.pd, r.recv_sges.get(), r.recv_nsge, 0, grh, kGrhSize, &status) ||
      !scatter(e, qp.pd, r.recv_sges.get(), r.recv_nsge, kGrhSize, p.payload, p.payload_len, &status)) {
    wc.status = status;
    complete_recv(e, qp, wc, false);
    return;
  }
  wc.byte_len = kGrhSize + p.payload_len;
  wc.wc_flags = kWcGrh;
  if (p.info->is(wire::kWithImm)) {
    wc.wc_flags |= kWcWithImm;
    wc.imm_data = static_cast<uint32_t>(p.get(wire::kImmDt, wire::immdt::imm));
  }
  complete_recv(e, qp, wc, p.se);
}

}  // namespace

void responder_receive(Engine& e, Qp& qp, const wire::PacketView& p, const link::RxFrame& f) {
  switch (qp.type) {
    case QpType::kRc: rc_receive(e, qp, p); break;
    case QpType::kUc: uc_receive(e, qp, p); break;
    case QpType::kUd: ud_receive(e, qp, p, f); break;
  }
}

void responder_run(Engine& e, Qp& qp) {
  (void)e;
  qp.resp.serving = false;  // READ responses are sent when the request is executed
}

void responder_flush_ack(Engine& e, Qp& qp) {
  if (!qp.resp.ack_pending) return;
  qp.resp.ack_pending = false;
  emit_ack(e, qp, kAck, psn_prev(qp.resp.epsn));
}

}  // namespace softrdma::transport
