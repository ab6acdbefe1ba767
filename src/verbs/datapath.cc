// The data path: what ctx->ops points at (post_send, post_recv, post_srq_recv, poll_cq,
// req_notify_cq), the ibv_cq_ex polling functions and the ibv_qp_ex work-request builder.
//
// Each call goes from the C struct straight to the Device: work requests and completions are
// converted on the stack (the scatter/gather lists are passed through as they are, the layouts
// being identical), with no allocation and no lock of our own.
#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "verbs/internal.h"

namespace softrdma::verbs {

// The C++ API uses libibverbs' numbering; check it here once.
static_assert(sizeof(ibv_sge) == sizeof(Sge) && offsetof(ibv_sge, addr) == offsetof(Sge, addr) &&
              offsetof(ibv_sge, length) == offsetof(Sge, length) && offsetof(ibv_sge, lkey) == offsetof(Sge, lkey));
static_assert(static_cast<int>(WrOpcode::kRdmaWrite) == IBV_WR_RDMA_WRITE &&
              static_cast<int>(WrOpcode::kRdmaWriteImm) == IBV_WR_RDMA_WRITE_WITH_IMM &&
              static_cast<int>(WrOpcode::kSend) == IBV_WR_SEND && static_cast<int>(WrOpcode::kSendImm) == IBV_WR_SEND_WITH_IMM &&
              static_cast<int>(WrOpcode::kRdmaRead) == IBV_WR_RDMA_READ &&
              static_cast<int>(WrOpcode::kCompSwap) == IBV_WR_ATOMIC_CMP_AND_SWP &&
              static_cast<int>(WrOpcode::kFetchAdd) == IBV_WR_ATOMIC_FETCH_AND_ADD &&
              static_cast<int>(WrOpcode::kLocalInv) == IBV_WR_LOCAL_INV &&
              static_cast<int>(WrOpcode::kBindMw) == IBV_WR_BIND_MW &&
              static_cast<int>(WrOpcode::kSendInv) == IBV_WR_SEND_WITH_INV &&
              static_cast<int>(WrOpcode::kRegMr) == SOFTRDMA_WR_REG_MR);
constexpr bool same(uint64_t a, uint64_t b) { return a == b; }
static_assert(same(kFence, IBV_SEND_FENCE) && same(kSignaled, IBV_SEND_SIGNALED) && same(kSolicited, IBV_SEND_SOLICITED) &&
              same(kInline, IBV_SEND_INLINE));
static_assert(static_cast<int>(WcStatus::kSuccess) == IBV_WC_SUCCESS &&
              static_cast<int>(WcStatus::kWrFlushErr) == IBV_WC_WR_FLUSH_ERR &&
              static_cast<int>(WcStatus::kRemAccessErr) == IBV_WC_REM_ACCESS_ERR &&
              static_cast<int>(WcStatus::kRemOpErr) == IBV_WC_REM_OP_ERR &&
              static_cast<int>(WcStatus::kRnrRetryExcErr) == IBV_WC_RNR_RETRY_EXC_ERR &&
              static_cast<int>(WcStatus::kGeneralErr) == IBV_WC_GENERAL_ERR &&
              static_cast<int>(WcStatus::kMwBindErr) == IBV_WC_MW_BIND_ERR &&
              static_cast<int>(WcStatus::kRemInvReqErr) == IBV_WC_REM_INV_REQ_ERR);
static_assert(static_cast<int>(WcOpcode::kSend) == IBV_WC_SEND && static_cast<int>(WcOpcode::kRdmaWrite) == IBV_WC_RDMA_WRITE &&
              static_cast<int>(WcOpcode::kRdmaRead) == IBV_WC_RDMA_READ &&
              static_cast<int>(WcOpcode::kCompSwap) == IBV_WC_COMP_SWAP &&
              static_cast<int>(WcOpcode::kFetchAdd) == IBV_WC_FETCH_ADD &&
              static_cast<int>(WcOpcode::kBindMw) == IBV_WC_BIND_MW &&
              static_cast<int>(WcOpcode::kLocalInv) == IBV_WC_LOCAL_INV && static_cast<int>(WcOpcode::kRecv) == IBV_WC_RECV &&
              static_cast<int>(WcOpcode::kRecvRdmaWithImm) == IBV_WC_RECV_RDMA_WITH_IMM &&
              static_cast<int>(WcOpcode::kRegMr) == SOFTRDMA_WC_REG_MR);
static_assert(same(kWcGrh, IBV_WC_GRH) && same(kWcWithImm, IBV_WC_WITH_IMM) && same(kWcWithInv, IBV_WC_WITH_INV));
static_assert(static_cast<int>(QpState::kReset) == IBV_QPS_RESET && static_cast<int>(QpState::kRts) == IBV_QPS_RTS &&
              static_cast<int>(QpState::kSqd) == IBV_QPS_SQD && static_cast<int>(QpState::kSqe) == IBV_QPS_SQE &&
              static_cast<int>(QpState::kErr) == IBV_QPS_ERR);
static_assert(same(transport::kAttrState, IBV_QP_STATE) && same(transport::kAttrAv, IBV_QP_AV) &&
              same(transport::kAttrDestQpn, IBV_QP_DEST_QPN) && same(transport::kAttrCap, IBV_QP_CAP) &&
              same(transport::kAttrSqPsn, IBV_QP_SQ_PSN) && same(transport::kAttrAccessFlags, IBV_QP_ACCESS_FLAGS) &&
              same(transport::kAttrPathMtu, IBV_QP_PATH_MTU) && same(transport::kAttrMaxDestRdAtomic, IBV_QP_MAX_DEST_RD_ATOMIC));

namespace {

constexpr int kBatch = 16;

// ---- memory operations on the send queue ------------------------------------------------------
//
// A type-2 bind or a fast registration names the window's / region's key at the time it runs,
// which is the new key of the previous one posted (the send queue runs in order): SrMw::key and
// SrMr::key advance when such a WR is converted, and go back (undo_mem_wr) when it is not posted
// after all.

bool is_mem_wr(const ibv_send_wr* w) { return w->opcode == IBV_WR_BIND_MW || w->opcode == SOFTRDMA_WR_REG_MR; }

// The type-2 bind of ibv_post_send (IBV_WR_BIND_MW) and ibv_wr_bind_mw: false for what is refused
// at once (EINVAL). Everything checked against the region happens when it runs (a failure
// completes with IBV_WC_MW_BIND_ERR).
bool to_bind_wr(ibv_mw* ibmw, uint32_t new_key, const ibv_mw_bind_info& bi, SendWr* o) {
  if (ibmw == nullptr || bi.mr == nullptr) return false;
  if (ibmw->type != IBV_MW_TYPE_2) return false;  // type-1 windows are bound by ibv_bind_mw (IBA 10.6.7.2)
  if (check_mw_access(bi.mw_access_flags) != 0) return false;
  if ((new_key >> 8) != (ibmw->rkey >> 8)) return false;  // the new key keeps the window's index
  SrMw* mw = to_mw(ibmw);
  o->opcode = WrOpcode::kBindMw;
  o->imm_data = 0;
  o->num_sge = 0;
  o->sg_list = nullptr;
  o->flags &= ~static_cast<uint32_t>(kInline);
  o->bind.mw = mw->key.load(std::memory_order_relaxed);
  o->bind.new_key = new_key;
  o->bind.mr = bi.mr->lkey;
  o->bind.addr = bi.addr;
  o->bind.length = bi.length;
  o->bind.access = window_access(bi.mw_access_flags);
  mw->key.store(new_key, std::memory_order_relaxed);
  return true;
}

// IBV_WR_BIND_MW and SOFTRDMA_WR_REG_MR (see include/softrdma/verbs_ext.h for the encoding).
[[gnu::noinline]] bool to_mem_wr(const ibv_send_wr* w, SendWr* o) {
  if (w->opcode == IBV_WR_BIND_MW) return to_bind_wr(w->bind_mw.mw, w->bind_mw.rkey, w->bind_mw.bind_info, o);
  const ibv_mw_bind_info& bi = w->bind_mw.bind_info;
  if (bi.mr == nullptr || !to_mr(bi.mr)->fast_reg) return false;
  if (check_access(bi.mw_access_flags) != 0) return false;
  if (w->num_sge <= 0 || (w->send_flags & IBV_SEND_INLINE)) return false;  // the runs are memory, not data
  SrMr* mr = to_mr(bi.mr);
  const uint32_t key = mr->key.load(std::memory_order_relaxed);
  if ((w->bind_mw.rkey >> 8) != (key >> 8)) return false;
  o->imm_data = 0;
  o->reg.mr = key;
  o->reg.new_key = w->bind_mw.rkey;
  o->reg.iova = bi.addr;
  o->reg.access = region_access(bi.mw_access_flags) & ~static_cast<uint32_t>(IBV_ACCESS_ON_DEMAND);
  mr->key.store(w->bind_mw.rkey, std::memory_order_relaxed);
  return true;
}

// A converted memory WR that was not posted: its window / region gets its key back.
[[gnu::noinline]] void undo_mem_wr(const ibv_send_wr* w, const SendWr& o) {
  if (w->opcode == IBV_WR_BIND_MW)
    to_mw(w->bind_mw.mw)->key.store(o.bind.mw, std::memory_order_relaxed);
  else if (w->opcode == SOFTRDMA_WR_REG_MR)
    to_mr(w->bind_mw.bind_info.mr)->key.store(o.reg.mr, std::memory_order_relaxed);
}

// A registration was posted: the region's ibv_mr shows its new key and extent.
[[gnu::noinline]] void posted_mem_wr(const ibv_send_wr* w, const SendWr& o) {
  if (w->opcode != SOFTRDMA_WR_REG_MR) return;
  ibv_mr* mr = w->bind_mw.bind_info.mr;
  uint64_t length = 0;
  for (uint32_t i = 0; i < o.num_sge; ++i) length += o.sg_list[i].length;
  mr->lkey = mr->rkey = o.reg.new_key;
  mr->addr = reinterpret_cast<void*>(static_cast<uintptr_t>(o.reg.iova));
  mr->length = length;
}

// Converts one work request into *o, writing every field the adapter reads for its opcode (o
// may be uninitialised storage); false for an opcode the adapter does not have, or a work
// request refused at once.
inline bool to_send_wr(const ibv_send_wr* w, bool ud, SendWr* o) {
  o->wr_id = w->wr_id;
  o->flags = w->send_flags & (IBV_SEND_FENCE | IBV_SEND_SIGNALED | IBV_SEND_SOLICITED | IBV_SEND_INLINE);
  o->sg_list = reinterpret_cast<const Sge*>(w->sg_list);
  o->num_sge = w->num_sge < 0 ? 0xffffffffu : static_cast<uint32_t>(w->num_sge);
  o->rdma.remote_addr = w->wr.rdma.remote_addr;
  o->rdma.rkey = w->wr.rdma.rkey;
  o->atomic.remote_addr = 0;
  o->atomic.compare_add = 0;
  o->atomic.swap = 0;
  o->atomic.rkey = 0;
  o->ud.ah = nullptr;
  o->ud.remote_qpn = 0;
  o->ud.remote_qkey = 0;
  if (w->num_sge > 0 && w->sg_list == nullptr) return false;
  switch (w->opcode) {
    case IBV_WR_RDMA_WRITE:
    case IBV_WR_RDMA_WRITE_WITH_IMM:
    case IBV_WR_RDMA_READ:
    case IBV_WR_SEND:
    case IBV_WR_SEND_WITH_IMM:
      o->imm_data = ntohl(w->imm_data);
      break;
    case IBV_WR_ATOMIC_CMP_AND_SWP:
    case IBV_WR_ATOMIC_FETCH_AND_ADD:
      o->atomic.remote_addr = w->wr.atomic.remote_addr;
      o->atomic.compare_add = w->wr.atomic.compare_add;
      o->atomic.swap = w->wr.atomic.swap;
      o->atomic.rkey = w->wr.atomic.rkey;
      o->imm_data = 0;
      break;
    case IBV_WR_SEND_WITH_INV:
    case IBV_WR_LOCAL_INV:
      o->imm_data = w->invalidate_rkey;  // host order, like the C++ API (not byte-swapped)
      break;
    case IBV_WR_BIND_MW:
    case SOFTRDMA_WR_REG_MR:
      if (!to_mem_wr(w, o)) return false;
      break;
    default:
      return false;  // TSO, ATOMIC_WRITE
  }
  o->opcode = static_cast<WrOpcode>(w->opcode);
  // Only sends carry an address (wr.ud overlays wr.rdma: other opcodes' fields are no AH).
  if (ud && (w->opcode == IBV_WR_SEND || w->opcode == IBV_WR_SEND_WITH_IMM)) {
    o->ud.ah = w->wr.ud.ah != nullptr ? to_ah(w->wr.ud.ah)->a : nullptr;
    o->ud.remote_qpn = w->wr.ud.remote_qpn;
    o->ud.remote_qkey = w->wr.ud.remote_qkey;
  }
  return true;
}

// Storage for work requests and completions that the conversion fills completely: no zeroing
// on the fast path. SendWr and Wc are aggregates (implicit-lifetime types), so the storage
// provides the objects (C++20 [intro.object]).
template <typename T, size_t N>
struct Scratch {
  alignas(T) unsigned char raw[sizeof(T) * N];
  T* get() { return reinterpret_cast<T*>(raw); }
};

inline void to_ibv_wc(const Wc& s, ibv_wc* d) {
  d->wr_id = s.wr_id;
  d->status = static_cast<ibv_wc_status>(s.status);
  d->opcode = static_cast<ibv_wc_opcode>(s.opcode);
  d->vendor_err = s.vendor_err;
  d->byte_len = s.byte_len;
  d->imm_data = (s.wc_flags & kWcWithInv) ? s.imm_data : htonl(s.imm_data);
  d->qp_num = s.qp_num;
  d->src_qp = s.src_qp;
  d->wc_flags = s.wc_flags;
  d->pkey_index = s.pkey_index;
  d->slid = s.slid;
  d->sl = s.sl;
  d->dlid_path_bits = s.dlid_path_bits;
}

// Completions set aside by ibv_resize_cq come first.
int poll_stash(SrCq* cq, Wc* out, int n) {
  std::lock_guard<std::mutex> g(cq->st->mu);
  int got = 0;
  auto& s = cq->st->stash;
  while (got < n && !s.empty()) {
    out[got++] = s.front();
    s.pop_front();
  }
  cq->stash_n.store(static_cast<uint32_t>(s.size()), std::memory_order_relaxed);
  return got;
}

// Polls up to n completions into out (Wc form).
inline int poll_wc(SrCq* cq, Wc* out, int n) {
  int got = 0;
  if (cq->stash_n.load(std::memory_order_relaxed) != 0) [[unlikely]] {
    got = poll_stash(cq, out, n);
    if (got == n) return got;
  }
  return got + cq->dev->poll_cq(cq->c, out + got, n - got);
}

// A completion was lost because the CQ was full: IBV_EVENT_CQ_ERR, once per CQ (unless it was
// created with IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN).
[[gnu::noinline]] void report_overrun(SrCq* cq) {
  cq->overrun_reported = true;
  if (cq->ignore_overrun) return;
  ibv_async_event ev{};
  ev.element.cq = reinterpret_cast<ibv_cq*>(&cq->cqx);
  ev.event_type = IBV_EVENT_CQ_ERR;
  push_async_event(cq->ctx, ev);
}

}  // namespace

// ---- ctx->ops ------------------------------------------------------------------------------------

namespace {

// Device::post_send, with one retry of a full send queue after the engine lock has been taken
// once: a completion can become visible (and wake a waiting poller) a moment before the
// engine releases its WQE slot, so a program that polled that completion may legitimately
// post into the slot and find it still taken.
inline int post_to_device(SrQp* qp, const SendWr* wrs, size_t n, size_t* bad) {
  int rc = qp->dev->post_send(qp->q, wrs, n, bad);
  if (rc == ENOMEM) [[unlikely]] {
    size_t done = *bad;
    qp->dev->progress();  // waits for whoever completes work to finish with the queue
    rc = qp->dev->post_send(qp->q, wrs + done, n - done, bad);
    *bad += done;
  }
  return rc;
}

// A list of work requests: converted and posted kBatch at a time.
[[gnu::noinline]] int post_send_list(SrQp* qp, ibv_send_wr* wr, ibv_send_wr** bad, bool ud) {
  while (wr != nullptr) {
    Scratch<SendWr, kBatch> batch;
    ibv_send_wr* src[kBatch];
    int n = 0;
    int conv_err = 0;
    bool mem = false;
    for (; wr != nullptr && n < kBatch; wr = wr->next) {
      if (!to_send_wr(wr, ud, &batch.get()[n])) {
        conv_err = EINVAL;
        break;
      }
      mem |= is_mem_wr(wr);
      src[n++] = wr;
    }
    if (n > 0) {
      size_t b = 0;
      int rc = post_to_device(qp, batch.get(), static_cast<size_t>(n), &b);
      size_t posted = rc != 0 ? b : static_cast<size_t>(n);
      if (mem) [[unlikely]] {
        for (size_t i = 0; i < posted; ++i)
          if (is_mem_wr(src[i])) posted_mem_wr(src[i], batch.get()[i]);
        for (size_t i = static_cast<size_t>(n); i-- > posted;)
          if (is_mem_wr(src[i])) undo_mem_wr(src[i], batch.get()[i]);
      }
      if (rc != 0) {
        *bad = src[b];
        return rc;
      }
    }
    if (conv_err != 0) {
      *bad = wr;
      return conv_err;
    }
  }
  return 0;
}

}  // namespace

int post_send(ibv_qp* ibqp, ibv_send_wr* wr, ibv_send_wr** bad) {
  SrQp* qp = to_qp(ibqp);
  const bool ud = ibqp->qp_type == IBV_QPT_UD;
  if (wr == nullptr || wr->next != nullptr) [[unlikely]]
    return post_send_list(qp, wr, bad, ud);
  // The common case: one work request.
  Scratch<SendWr, 1> w;
  if (!to_send_wr(wr, ud, w.get())) {
    *bad = wr;
    return EINVAL;
  }
  size_t b = 0;
  int rc = post_to_device(qp, w.get(), 1, &b);
  if (is_mem_wr(wr)) [[unlikely]] {
    if (rc == 0)
      posted_mem_wr(wr, *w.get());
    else
      undo_mem_wr(wr, *w.get());
  }
  if (rc != 0) *bad = wr;
  return rc;
}

// Converts a chain of receive WRs in batches of kBatch (on the stack) and hands each batch to
// post(batch, n, &bad_index): the same for a QP's receive queue and an SRQ.
template <typename Post>
int post_recv_chain(ibv_recv_wr* wr, ibv_recv_wr** bad, Post post) {
  while (wr != nullptr) {
    Scratch<RecvWr, kBatch> scratch;
    RecvWr* batch = scratch.get();
    ibv_recv_wr* src[kBatch];
    int n = 0;
    for (; wr != nullptr && n < kBatch; wr = wr->next) {
      if (wr->num_sge < 0 || (wr->num_sge > 0 && wr->sg_list == nullptr)) {
        if (n == 0) {
          *bad = wr;
          return EINVAL;
        }
        break;  // post what came before it; the next round reports it
      }
      batch[n] = RecvWr{wr->wr_id, reinterpret_cast<const Sge*>(wr->sg_list), static_cast<uint32_t>(wr->num_sge)};
      src[n++] = wr;
    }
    size_t b = 0;
    if (int rc = post(batch, static_cast<size_t>(n), &b)) {
      *bad = src[b];
      return rc;
    }
  }
  return 0;
}

int post_recv(ibv_qp* ibqp, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  SrQp* qp = to_qp(ibqp);
  return post_recv_chain(wr, bad, [qp](const RecvWr* batch, size_t n, size_t* b) {
    return qp->dev->post_recv(qp->q, batch, n, b);
  });
}

int post_srq_recv(ibv_srq* ibsrq, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  SrSrq* srq = to_srq(ibsrq);
  return post_recv_chain(wr, bad, [srq](const RecvWr* batch, size_t n, size_t* b) {
    return srq->dev->post_srq_recv(srq->s, batch, n, b);
  });
}

int poll_cq(ibv_cq* ibcq, int n, ibv_wc* wc) {
  SrCq* cq = to_cq(ibcq);
  int total = 0;
  while (total < n) {
    Scratch<Wc, kBatch> scratch;  // poll_wc writes every entry it returns
    Wc* buf = scratch.get();
    int k = std::min(n - total, kBatch);
    int got = poll_wc(cq, buf, k);
    for (int i = 0; i < got; ++i) to_ibv_wc(buf[i], &wc[total + i]);
    total += got;
    if (got < k) {
      if (cq->c->overrun() && !cq->overrun_reported) [[unlikely]]
        report_overrun(cq);
      break;
    }
  }
  return total;
}

int req_notify_cq(ibv_cq* ibcq, int solicited_only) {
  SrCq* cq = to_cq(ibcq);
  cq->dev->req_notify_cq(cq->c, solicited_only != 0);
  return 0;
}

int resize_cq_stash(SrCq* cq, int /*cqe*/) {
  // Let sends posted just before settle into the ring, then count what is unpolled.
  cq->dev->progress();
  std::lock_guard<std::mutex> g(cq->st->mu);
  Wc buf[kBatch];
  for (;;) {
    int got = cq->c->poll(buf, kBatch);
    for (int i = 0; i < got; ++i) cq->st->stash.push_back(buf[i]);
    if (got < kBatch) break;
  }
  cq->stash_n.store(static_cast<uint32_t>(cq->st->stash.size()), std::memory_order_relaxed);
  return static_cast<int>(cq->st->stash.size());
}

void purge_cq(SrCq* cq, uint32_t qpn) {
  std::lock_guard<std::mutex> g(cq->st->mu);
  Wc buf[kBatch];
  for (;;) {
    int got = cq->c->poll(buf, kBatch);
    for (int i = 0; i < got; ++i) cq->st->stash.push_back(buf[i]);
    if (got < kBatch) break;
  }
  auto& s = cq->st->stash;
  s.erase(std::remove_if(s.begin(), s.end(), [qpn](const Wc& w) { return w.qp_num == qpn; }), s.end());
  cq->stash_n.store(static_cast<uint32_t>(s.size()), std::memory_order_relaxed);
}

// ---- ibv_cq_ex ----------------------------------------------------------------------------------

namespace {

inline int poll_one_ex(ibv_cq_ex* x) {
  SrCq* cq = to_cq(x);
  if (poll_wc(cq, &cq->cur, 1) == 0) return ENOENT;
  x->wr_id = cq->cur.wr_id;
  x->status = static_cast<ibv_wc_status>(cq->cur.status);
  return 0;
}

int cq_start_poll(ibv_cq_ex* x, ibv_poll_cq_attr* attr) {
  if (attr != nullptr && attr->comp_mask != 0) return EINVAL;
  return poll_one_ex(x);
}
int cq_next_poll(ibv_cq_ex* x) { return poll_one_ex(x); }
void cq_end_poll(ibv_cq_ex*) {}  // also after a start_poll that found nothing (pyverbs does that)
ibv_wc_opcode cq_read_opcode(ibv_cq_ex* x) { return static_cast<ibv_wc_opcode>(to_cq(x)->cur.opcode); }
uint32_t cq_read_vendor_err(ibv_cq_ex* x) { return to_cq(x)->cur.vendor_err; }
uint32_t cq_read_byte_len(ibv_cq_ex* x) { return to_cq(x)->cur.byte_len; }
__be32 cq_read_imm_data(ibv_cq_ex* x) {
  const Wc& w = to_cq(x)->cur;
  return (w.wc_flags & kWcWithInv) ? w.imm_data : htonl(w.imm_data);  // the invalidated rkey is host order
}
uint32_t cq_read_qp_num(ibv_cq_ex* x) { return to_cq(x)->cur.qp_num; }
uint32_t cq_read_src_qp(ibv_cq_ex* x) { return to_cq(x)->cur.src_qp; }
unsigned int cq_read_wc_flags(ibv_cq_ex* x) { return to_cq(x)->cur.wc_flags; }
uint32_t cq_read_slid(ibv_cq_ex* x) { return to_cq(x)->cur.slid; }
uint8_t cq_read_sl(ibv_cq_ex* x) { return to_cq(x)->cur.sl; }
uint8_t cq_read_dlid_path_bits(ibv_cq_ex* x) { return to_cq(x)->cur.dlid_path_bits; }
// Fields no CQ is created with (their wc_flags are refused); they read as 0 rather than crash.
uint64_t cq_read_zero64(ibv_cq_ex*) { return 0; }
uint16_t cq_read_zero16(ibv_cq_ex*) { return 0; }
uint32_t cq_read_zero32(ibv_cq_ex*) { return 0; }
void cq_read_tm_info(ibv_cq_ex*, ibv_wc_tm_info* info) {
  if (info != nullptr) *info = ibv_wc_tm_info{};
}

}  // namespace

void init_cq_ex_ops(SrCq* cq) {
  ibv_cq_ex& x = cq->cqx;
  x.start_poll = cq_start_poll;
  x.next_poll = cq_next_poll;
  x.end_poll = cq_end_poll;
  x.read_opcode = cq_read_opcode;
  x.read_vendor_err = cq_read_vendor_err;
  x.read_wc_flags = cq_read_wc_flags;
  // IBV_WC_STANDARD_FLAGS, the only ones a CQ is created with.
  x.read_byte_len = cq_read_byte_len;
  x.read_imm_data = cq_read_imm_data;
  x.read_qp_num = cq_read_qp_num;
  x.read_src_qp = cq_read_src_qp;
  x.read_slid = cq_read_slid;
  x.read_sl = cq_read_sl;
  x.read_dlid_path_bits = cq_read_dlid_path_bits;
  x.read_completion_ts = cq_read_zero64;
  x.read_completion_wallclock_ns = cq_read_zero64;
  x.read_cvlan = cq_read_zero16;
  x.read_flow_tag = cq_read_zero32;
  x.read_tm_info = cq_read_tm_info;
}

// ---- ibv_qp_ex: the ibv_wr_* builder -----------------------------------------------------------

namespace {

inline WrBuilder& wb(ibv_qp_ex* x) { return *to_qp(x)->wb; }

// Starts a work request of this opcode with the caller's wr_id and wr_flags.
inline WrBuilder::Pending* begin_wr(ibv_qp_ex* x, WrOpcode op) {
  WrBuilder& b = wb(x);
  WrBuilder::Pending& p = b.wrs.emplace_back();
  p.wr.wr_id = x->wr_id;
  p.wr.opcode = op;
  p.wr.flags = x->wr_flags & (IBV_SEND_FENCE | IBV_SEND_SIGNALED | IBV_SEND_SOLICITED | IBV_SEND_INLINE);
  p.sge_begin = static_cast<uint32_t>(b.sges.size());
  return &p;
}

inline WrBuilder::Pending* current(ibv_qp_ex* x) {
  WrBuilder& b = wb(x);
  if (b.wrs.empty()) {
    if (b.err == 0) b.err = EINVAL;
    return nullptr;
  }
  return &b.wrs.back();
}

void wr_start(ibv_qp_ex* x) {
  WrBuilder& b = wb(x);
  b.mu.lock();
  b.wrs.clear();
  b.sges.clear();
  b.inline_buf.clear();
  b.err = 0;
}

// Windows bound by work requests that were built but not posted get their keys back, latest
// first.
void undo_binds(WrBuilder& b, size_t from) {
  for (size_t i = b.wrs.size(); i-- > from;)
    if (b.wrs[i].mw != nullptr) b.wrs[i].mw->key.store(b.wrs[i].wr.bind.mw, std::memory_order_relaxed);
}

void wr_abort(ibv_qp_ex* x) {
  WrBuilder& b = wb(x);
  undo_binds(b, 0);
  b.wrs.clear();
  b.sges.clear();
  b.inline_buf.clear();
  b.err = 0;
  b.mu.unlock();
}

int wr_complete(ibv_qp_ex* x) {
  SrQp* qp = to_qp(x);
  WrBuilder& b = *qp->wb;
  int rc = b.err;
  if (rc == 0 && !b.wrs.empty()) {
    // The vectors no longer move: inline pieces get their addresses in inline_buf, and each
    // work request its slice of the flat Sge array.
    const auto base = reinterpret_cast<uintptr_t>(b.inline_buf.data());
    b.out.clear();
    for (auto& p : b.wrs) {
      if (p.staged_inline)
        for (uint32_t i = 0; i < p.sge_count; ++i) b.sges[p.sge_begin + i].addr += base;
      SendWr w = p.wr;
      w.sg_list = p.sge_count != 0 ? &b.sges[p.sge_begin] : nullptr;
      w.num_sge = p.sge_count;
      b.out.push_back(w);
    }
    size_t bad = 0;
    rc = post_to_device(qp, b.out.data(), b.out.size(), &bad);
    if (rc != 0) undo_binds(b, bad);
  } else if (rc != 0) {
    undo_binds(b, 0);
  } else {
    // Nothing to post: still report a QP that cannot send (IBA: posting in RESET/INIT/RTR).
    QpState s = qp->q->state();
    if (s == QpState::kReset || s == QpState::kInit || s == QpState::kRtr) rc = EINVAL;
  }
  b.wrs.clear();
  b.sges.clear();
  b.inline_buf.clear();
  b.err = 0;
  b.mu.unlock();
  return rc;
}

void wr_send(ibv_qp_ex* x) { begin_wr(x, WrOpcode::kSend); }
void wr_send_imm(ibv_qp_ex* x, __be32 imm) { begin_wr(x, WrOpcode::kSendImm)->wr.imm_data = ntohl(imm); }
void wr_rdma_write(ibv_qp_ex* x, uint32_t rkey, uint64_t addr) {
  auto* p = begin_wr(x, WrOpcode::kRdmaWrite);
  p->wr.rdma.rkey = rkey;
  p->wr.rdma.remote_addr = addr;
}
void wr_rdma_write_imm(ibv_qp_ex* x, uint32_t rkey, uint64_t addr, __be32 imm) {
  auto* p = begin_wr(x, WrOpcode::kRdmaWriteImm);
  p->wr.rdma.rkey = rkey;
  p->wr.rdma.remote_addr = addr;
  p->wr.imm_data = ntohl(imm);
}
void wr_rdma_read(ibv_qp_ex* x, uint32_t rkey, uint64_t addr) {
  auto* p = begin_wr(x, WrOpcode::kRdmaRead);
  p->wr.rdma.rkey = rkey;
  p->wr.rdma.remote_addr = addr;
}
void wr_atomic_cmp_swp(ibv_qp_ex* x, uint32_t rkey, uint64_t addr, uint64_t compare, uint64_t swap) {
  auto* p = begin_wr(x, WrOpcode::kCompSwap);
  p->wr.atomic.rkey = rkey;
  p->wr.atomic.remote_addr = addr;
  p->wr.atomic.compare_add = compare;
  p->wr.atomic.swap = swap;
}
void wr_atomic_fetch_add(ibv_qp_ex* x, uint32_t rkey, uint64_t addr, uint64_t add) {
  auto* p = begin_wr(x, WrOpcode::kFetchAdd);
  p->wr.atomic.rkey = rkey;
  p->wr.atomic.remote_addr = addr;
  p->wr.atomic.compare_add = add;
}

void wr_set_ud_addr(ibv_qp_ex* x, ibv_ah* ah, uint32_t remote_qpn, uint32_t remote_qkey) {
  auto* p = current(x);
  if (p == nullptr) return;
  if (ah == nullptr) {
    if (wb(x).err == 0) wb(x).err = EINVAL;
    return;
  }
  p->wr.ud.ah = to_ah(ah)->a;
  p->wr.ud.remote_qpn = remote_qpn;
  p->wr.ud.remote_qkey = remote_qkey;
}

void set_sges(ibv_qp_ex* x, size_t n, const ibv_sge* list) {
  auto* p = current(x);
  if (p == nullptr) return;
  WrBuilder& b = wb(x);
  p->sge_begin = static_cast<uint32_t>(b.sges.size());
  p->sge_count = static_cast<uint32_t>(n);
  p->staged_inline = false;
  for (size_t i = 0; i < n; ++i) b.sges.push_back(Sge{list[i].addr, list[i].length, list[i].lkey});
}
void wr_set_sge(ibv_qp_ex* x, uint32_t lkey, uint64_t addr, uint32_t length) {
  ibv_sge s{addr, length, lkey};
  set_sges(x, 1, &s);
}
void wr_set_sge_list(ibv_qp_ex* x, size_t n, const ibv_sge* list) { set_sges(x, n, list); }

// Inline data is copied now (the caller may reuse its buffer at once); its Sges hold offsets
// into inline_buf until wr_complete turns them into addresses.
void set_inline(ibv_qp_ex* x, size_t n, const ibv_data_buf* bufs) {
  auto* p = current(x);
  if (p == nullptr) return;
  WrBuilder& b = wb(x);
  p->sge_begin = static_cast<uint32_t>(b.sges.size());
  p->sge_count = 0;
  p->staged_inline = true;
  p->wr.flags |= kInline;
  for (size_t i = 0; i < n; ++i) {
    if (bufs[i].length == 0) continue;
    size_t off = b.inline_buf.size();
    const auto* src = static_cast<const uint8_t*>(bufs[i].addr);
    b.inline_buf.insert(b.inline_buf.end(), src, src + bufs[i].length);
    b.sges.push_back(Sge{off, static_cast<uint32_t>(bufs[i].length), 0});
    ++p->sge_count;
  }
}
void wr_set_inline_data(ibv_qp_ex* x, void* addr, size_t length) {
  ibv_data_buf d{addr, length};
  set_inline(x, 1, &d);
}
void wr_set_inline_data_list(ibv_qp_ex* x, size_t n, const ibv_data_buf* bufs) { set_inline(x, n, bufs); }

// Memory windows and invalidation (the invalidated key is host order, not byte-swapped).
void wr_bind_mw(ibv_qp_ex* x, ibv_mw* mw, uint32_t rkey, const ibv_mw_bind_info* info) {
  auto* p = begin_wr(x, WrOpcode::kBindMw);
  if (info == nullptr || !to_bind_wr(mw, rkey, *info, &p->wr)) {
    WrBuilder& b = wb(x);
    b.wrs.pop_back();  // nothing to undo: a refused bind changed no key
    if (b.err == 0) b.err = EINVAL;
    return;
  }
  p->mw = to_mw(mw);
}
void wr_local_inv(ibv_qp_ex* x, uint32_t rkey) { begin_wr(x, WrOpcode::kLocalInv)->wr.imm_data = rkey; }
void wr_send_inv(ibv_qp_ex* x, uint32_t rkey) { begin_wr(x, WrOpcode::kSendInv)->wr.imm_data = rkey; }

// Work requests this adapter cannot build: the batch fails at wr_complete with EOPNOTSUPP
// (a QP is never created with these send_ops_flags; this only keeps a stray call harmless).
void fail_batch(ibv_qp_ex* x) {
  WrBuilder& b = wb(x);
  if (b.err == 0) b.err = EOPNOTSUPP;
}
void wr_send_tso(ibv_qp_ex* x, void*, uint16_t, uint16_t) { fail_batch(x); }
void wr_set_xrc_srqn(ibv_qp_ex* x, uint32_t) { fail_batch(x); }
void wr_atomic_write(ibv_qp_ex* x, uint32_t, uint64_t, const void*) { fail_batch(x); }

}  // namespace

// Every entry is filled, whatever send_ops_flags asked for, so no ibv_wr_* call can jump
// through a NULL pointer.
void init_qp_ex_ops(SrQp* qp, uint64_t /*ops*/) {
  ibv_qp_ex& x = qp->qpx;
  x.comp_mask = 0;
  x.wr_start = wr_start;
  x.wr_complete = wr_complete;
  x.wr_abort = wr_abort;
  x.wr_set_sge = wr_set_sge;
  x.wr_set_sge_list = wr_set_sge_list;
  x.wr_set_inline_data = wr_set_inline_data;
  x.wr_set_inline_data_list = wr_set_inline_data_list;
  x.wr_set_ud_addr = wr_set_ud_addr;
  x.wr_send = wr_send;
  x.wr_send_imm = wr_send_imm;
  x.wr_rdma_write = wr_rdma_write;
  x.wr_rdma_write_imm = wr_rdma_write_imm;
  x.wr_rdma_read = wr_rdma_read;
  x.wr_atomic_cmp_swp = wr_atomic_cmp_swp;
  x.wr_atomic_fetch_add = wr_atomic_fetch_add;
  x.wr_bind_mw = wr_bind_mw;
  x.wr_local_inv = wr_local_inv;
  x.wr_send_inv = wr_send_inv;
  x.wr_send_tso = wr_send_tso;
  x.wr_set_xrc_srqn = wr_set_xrc_srqn;
  x.wr_atomic_write = wr_atomic_write;
}

}  // namespace softrdma::verbs
