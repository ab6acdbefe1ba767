#include "transport/qp.h"

#include "wire/fields.h"

#include <array>
#include <cerrno>

namespace softrdma::transport {

std::string_view name(QpType t) {
  switch (t) {
    case QpType::kRc: return "RC";
    case QpType::kUc: return "UC";
    case QpType::kUd: return "UD";
  }
  return "?";
}

std::string_view name(QpState s) {
  static constexpr std::array<std::string_view, 7> kNames = {"RESET", "INIT", "RTR", "RTS", "SQD", "SQE", "ERR"};
  auto i = static_cast<size_t>(s);
  return i < kNames.size() ? kNames[i] : "?";
}

namespace {

// IBA 10.3.1 / Table 94: for each legal transition, the attributes it requires and the ones it
// may change, per service type (columns: RC, UC, UD).
struct Transition {
  QpState from, to;
  uint32_t required[3];
  uint32_t optional[3];
};

constexpr uint32_t kRtsOptionalUd = kAttrCurState | kAttrQkey;
constexpr uint32_t kRtsOptionalUc = kAttrCurState | kAttrAccessFlags | kAttrAltPath | kAttrPathMigState;
constexpr uint32_t kRtsOptionalRc = kRtsOptionalUc | kAttrMinRnrTimer;
constexpr uint32_t kSqdOptionalUc = kRtsOptionalUc | kAttrAv | kAttrPkeyIndex | kAttrPathMtu | kAttrPort;
constexpr uint32_t kSqdOptionalRc = kSqdOptionalUc | kAttrMinRnrTimer | kAttrTimeout | kAttrRetryCnt |
                                    kAttrRnrRetry | kAttrMaxQpRdAtomic | kAttrMaxDestRdAtomic;

constexpr Transition kTransitions[] = {
    {QpState::kReset, QpState::kInit,
     {kAttrPkeyIndex | kAttrPort | kAttrAccessFlags, kAttrPkeyIndex | kAttrPort | kAttrAccessFlags,
      kAttrPkeyIndex | kAttrPort | kAttrQkey},
     {0, 0, 0}},
    {QpState::kInit, QpState::kInit,
     {0, 0, 0},
     {kAttrPkeyIndex | kAttrPort | kAttrAccessFlags, kAttrPkeyIndex | kAttrPort | kAttrAccessFlags,
      kAttrPkeyIndex | kAttrPort | kAttrQkey}},
    {QpState::kInit, QpState::kRtr,
     {kAttrAv | kAttrPathMtu | kAttrDestQpn | kAttrRqPsn | kAttrMaxDestRdAtomic | kAttrMinRnrTimer,
      kAttrAv | kAttrPathMtu | kAttrDestQpn | kAttrRqPsn, 0},
     {kAttrAltPath | kAttrAccessFlags | kAttrPkeyIndex, kAttrAltPath | kAttrAccessFlags | kAttrPkeyIndex,
      kAttrPkeyIndex | kAttrQkey}},
    {QpState::kRtr, QpState::kRts,
     {kAttrSqPsn | kAttrTimeout | kAttrRetryCnt | kAttrRnrRetry | kAttrMaxQpRdAtomic, kAttrSqPsn, kAttrSqPsn},
     {kRtsOptionalRc, kRtsOptionalUc, kRtsOptionalUd}},
    {QpState::kRts, QpState::kRts, {0, 0, 0}, {kRtsOptionalRc, kRtsOptionalUc, kRtsOptionalUd}},
    {QpState::kRts, QpState::kSqd,
     {0, 0, 0},
     {kAttrEnSqdAsyncNotify, kAttrEnSqdAsyncNotify, kAttrEnSqdAsyncNotify}},
    {QpState::kSqd, QpState::kRts, {0, 0, 0}, {kRtsOptionalRc, kRtsOptionalUc, kRtsOptionalUd}},
    {QpState::kSqd, QpState::kSqd,
     {0, 0, 0},
     {kSqdOptionalRc, kSqdOptionalUc, kAttrPkeyIndex | kAttrQkey}},
    {QpState::kSqe, QpState::kRts,
     {0, 0, 0},
     {0, kAttrCurState | kAttrAccessFlags, kAttrCurState | kAttrQkey}},
};

int column(QpType t) { return t == QpType::kRc ? 0 : t == QpType::kUc ? 1 : 2; }

}  // namespace

int check_modify(QpType type, QpState cur, const QpAttr& attr, uint32_t mask, const char** why) {
  auto refuse = [&](const char* reason) {
    if (why != nullptr) *why = reason;
    return EINVAL;
  };
  if ((mask & kAttrCurState) && attr.cur_state != cur) return refuse("cur_qp_state does not match");
  QpState next = (mask & kAttrState) ? attr.state : cur;
  uint32_t named = mask & ~(kAttrState | kAttrCurState);
  // To RESET or ERR from anywhere, naming nothing else (IBA 10.3.1).
  if (next == QpState::kReset || next == QpState::kErr) {
    if (named != 0) return refuse("transition to RESET/ERR takes no other attributes");
    return 0;
  }
  const Transition* t = nullptr;
  for (const Transition& row : kTransitions)
    if (row.from == cur && row.to == next) t = &row;
  if (t == nullptr) return refuse("illegal QP state transition");
  int c = column(type);
  if ((named & t->required[c]) != t->required[c]) return refuse("a required attribute is missing");
  if ((named & ~(t->required[c] | t->optional[c])) != 0) return refuse("an attribute not allowed here");
  if ((mask & kAttrPathMtu) && mtu_bytes(attr.path_mtu) == 0) return refuse("invalid path MTU");
  if ((mask & kAttrTimeout) && attr.timeout > 31) return refuse("invalid timeout");
  if ((mask & kAttrRetryCnt) && attr.retry_cnt > 7) return refuse("invalid retry_cnt");
  if ((mask & kAttrRnrRetry) && attr.rnr_retry > 7) return refuse("invalid rnr_retry");
  if ((mask & kAttrMinRnrTimer) && attr.min_rnr_timer > 31) return refuse("invalid min_rnr_timer");
  if ((mask & kAttrPort) && attr.port_num != 1) return refuse("invalid port number");
  if ((mask & kAttrPkeyIndex) && attr.pkey_index != 0) return refuse("invalid P_Key index");
  if ((mask & kAttrDestQpn) && attr.dest_qpn > wire::kQpnMask) return refuse("invalid destination QPN");
  if ((mask & kAttrRqPsn) && attr.rq_psn > wire::kPsnMask) return refuse("invalid rq_psn");
  if ((mask & kAttrSqPsn) && attr.sq_psn > wire::kPsnMask) return refuse("invalid sq_psn");
  return 0;
}

Qp::Qp(uint32_t qpn_, QpType type_, uint32_t pd_, const QpCaps& cap_, queue::CompletionQueue* send_cq_,
       queue::CompletionQueue* recv_cq_, queue::RecvQueue* srq_, bool sq_sig_all_, void* user_context_)
    : qpn(qpn_), type(type_), pd(pd_), sq_sig_all(sq_sig_all_), user_context(user_context_),
      send_cq(send_cq_), recv_cq(recv_cq_), srq(srq_), cap(cap_), sq(cap_.max_send_wr, cap_.max_send_sge) {
  if (srq == nullptr) rq_owned = std::make_unique<queue::RecvQueue>(cap.max_recv_wr, cap.max_recv_sge);
  if (cap.max_inline_data > 0)
    inline_arena = std::make_unique<uint8_t[]>(size_t{cap.max_send_wr} * cap.max_inline_data);
  uint32_t recv_sge = srq != nullptr ? srq->max_sge() : rq_owned->max_sge();
  resp.recv_sges = std::make_unique<Sge[]>(recv_sge);
}

bool Qp::has_send_work() const {
  return req.next < sq.produced() || resp.serving || (resp.ack_pending && !resp.ack_held);
}

}  // namespace softrdma::transport
