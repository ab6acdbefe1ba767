// Receive demultiplexing and the checks every packet passes before a pipeline stage sees it
// (IBA 9.6 "packet transport header validation", in that order). Nothing here touches
// registered memory; a packet that fails a check is counted by reason and dropped.
#include "transport/engine.h"

namespace softrdma::transport {

namespace {

wire::Transport transport_of(QpType t) {
  switch (t) {
    case QpType::kRc: return wire::Transport::kRc;
    case QpType::kUc: return wire::Transport::kUc;
    case QpType::kUd: return wire::Transport::kUd;
  }
  return wire::Transport::kNone;
}

// IBA 10.9.3 (C10-115 ff.): P_Keys match when their low 15 bits are equal and at least one of
// the two is a full member. Our only table entry is the default full-member key 0xFFFF.
bool pkey_ok(uint16_t pkey) { return (pkey & 0x7fff) == 0x7fff; }

bool state_accepts(QpState s, bool request) {
  switch (s) {
    case QpState::kRtr: return request;  // IBA 10.3.1: RTR receives but does not send
    case QpState::kRts:
    case QpState::kSqd:
    case QpState::kSqe: return true;
    default: return false;
  }
}

}  // namespace

void Engine::receive(link::RxFrame& f) {
  counters_->rx_packets++;
  counters_->rx_bytes += f.len;
  if (f.truncated) {
    counters_->drop_truncated++;
    return;
  }
  wire::PacketView p;
  if (wire::parse(f.buf, f.len, p) != wire::ParseError::kOk) {
    counters_->drop_parse++;
    return;
  }
  if (!f.icrc_absent) {
    wire::IcrcContext ctx{f.src.ip, f.dst, f.src.port, local_.port};
    switch (wire::icrc_verify(ctx, f.buf, f.len, cfg_.infer_ipv4_id)) {
      case wire::IcrcResult::kGood: break;
      case wire::IcrcResult::kGoodInferredId: counters_->icrc_inferred_id++; break;
      case wire::IcrcResult::kBad: counters_->drop_icrc++; return;
    }
  }
  if (p.info->transport == wire::Transport::kCnp) {
    counters_->cnp_received++;
    return;
  }
  Qp* qp = find_qp(p.dqpn);
  if (qp == nullptr) {
    counters_->drop_unknown_qp++;
    return;
  }
  if (p.info->transport != transport_of(qp->type)) {
    counters_->drop_qp_type++;
    return;
  }
  bool request = p.info->is(wire::kRequest);
  if (!state_accepts(qp->state.load(std::memory_order_acquire), request)) {
    counters_->drop_qp_state++;
    return;
  }
  if (!pkey_ok(p.pkey)) {
    counters_->drop_pkey++;
    return;
  }
  // A connected QP takes packets only from the peer it was connected to.
  if (qp->type != QpType::kUd && !(f.src.ip == qp->peer.ip)) {
    counters_->drop_source++;
    return;
  }
  activate(*qp);
  qp->stats->rx_packets++;
  qp->stats->rx_bytes += p.payload_len;
  if (request)
    responder_receive(*this, *qp, p, f);
  else
    completer_receive(*this, *qp, p);
}

}  // namespace softrdma::transport
