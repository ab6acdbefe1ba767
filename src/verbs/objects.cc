// The control path: protection domains, memory regions, completion channels and queues, shared
// receive queues, queue pairs and address handles. Errors follow rdma-core: pointer-returning
// verbs give NULL with errno, int-returning ones give the errno value.
#include <arpa/inet.h>
#include <endian.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "verbs/objects_shared.h"

namespace softrdma::verbs {

// Shared with objects_ah.cc (declared in objects_shared.h).
std::atomic<uint32_t> next_handle{1};

void track(SrContext* ctx, std::set<void*> CtxState::*set, void* obj) {
  std::lock_guard<std::mutex> g(ctx->st->mu);
  (ctx->st->*set).insert(obj);
}

void untrack(SrContext* ctx, std::set<void*> CtxState::*set, void* obj) {
  std::lock_guard<std::mutex> g(ctx->st->mu);
  (ctx->st->*set).erase(obj);
}

// Objects made on a parent domain keep it alive (ibv_dealloc_pd of it is EBUSY meanwhile).
void pd_use(ibv_pd* pd) {
  if (pd != nullptr && to_pd(pd)->inner != nullptr) to_pd(pd)->users++;
}
void pd_unuse(ibv_pd* pd) {
  if (pd != nullptr && to_pd(pd)->inner != nullptr) to_pd(pd)->users--;
}

// ---- address vectors ----------------------------------------------------------------------------

// ibv_ah_attr -> AddressVector. RoCE needs a GRH (is_global) naming an existing source GID.
int to_av(SrContext* ctx, const ibv_ah_attr& a, AddressVector* av) {
  if (!a.is_global) return EINVAL;
  if (a.port_num != 1) return EINVAL;
  uint8_t sgid[16];
  if (!query_gid_bytes(ctx, 1, a.grh.sgid_index, sgid)) return EINVAL;
  std::memcpy(av->dgid.bytes.data(), a.grh.dgid.raw, 16);
  av->sgid_index = a.grh.sgid_index;
  av->hop_limit = a.grh.hop_limit;
  av->traffic_class = a.grh.traffic_class;
  av->flow_label = a.grh.flow_label;
  av->sl = a.sl;
  av->port_num = a.port_num;
  av->is_global = true;
  return 0;
}

void from_av(const AddressVector& av, ibv_ah_attr* a) {
  *a = ibv_ah_attr{};
  std::memcpy(a->grh.dgid.raw, av.dgid.bytes.data(), 16);
  a->grh.sgid_index = av.sgid_index;
  a->grh.hop_limit = av.hop_limit;
  a->grh.traffic_class = av.traffic_class;
  a->grh.flow_label = av.flow_label;
  a->sl = av.sl;
  a->port_num = av.port_num;
  a->is_global = 1;
}

namespace {

// ---- CQ -----------------------------------------------------------------------------------------

ibv_cq_ex* create_cq_common(ibv_context* c, int cqe, void* cq_context, ibv_comp_channel* channel, int comp_vector,
                            uint64_t wc_flags, ibv_pd* parent_domain = nullptr) {
  if (c == nullptr) return fail<ibv_cq_ex>(EINVAL);
  SrContext* ctx = to_ctx(c);
  if (cqe < 1 || static_cast<uint32_t>(cqe) > kMaxCqe) return fail<ibv_cq_ex>(EINVAL);
  if (comp_vector < 0 || comp_vector >= c->num_comp_vectors) return fail<ibv_cq_ex>(EINVAL);
  auto* cq = new SrCq{};
  cq->st = new CqState;
  cq->ctx = ctx;
  cq->dev = ctx->dev;
  cq->wc_flags = wc_flags;
  cq->parent_domain = parent_domain;
  int err = 0;
  queue::CompletionChannel* ch = channel != nullptr ? to_channel(channel)->c : nullptr;
  cq->c = ctx->dev->create_cq(std::max(static_cast<uint32_t>(cqe), kMinCqRing), ch, cq, &err);
  if (cq->c == nullptr) {
    delete cq->st;
    delete cq;
    return fail<ibv_cq_ex>(err != 0 ? err : ENOMEM);
  }
  ibv_cq_ex& x = cq->cqx;
  x.context = c;
  x.channel = channel;
  x.cq_context = cq_context;
  x.handle = next_handle++;
  x.cqe = cqe;
  pthread_mutex_init(&x.mutex, nullptr);
  pthread_cond_init(&x.cond, nullptr);
  x.comp_events_completed = 0;
  x.async_events_completed = 0;
  init_cq_ex_ops(cq);
  pd_use(parent_domain);
  if (channel != nullptr) {
    pthread_mutex_lock(&c->mutex);
    ++channel->refcnt;
    pthread_mutex_unlock(&c->mutex);
  }
  track(ctx, &CtxState::cqs, cq);
  return &cq->cqx;
}

int destroy_cq(ibv_cq* ibcq) {
  if (ibcq == nullptr) return EINVAL;
  SrCq* cq = to_cq(ibcq);
  SrContext* ctx = cq->ctx;
  if (int rc = ctx->dev->destroy_cq(cq->c)) return rc;
  ibv_comp_channel* ch = ibcq->channel;
  if (ch != nullptr) {
    pthread_mutex_lock(&ibcq->context->mutex);
    --ch->refcnt;
    pthread_mutex_unlock(&ibcq->context->mutex);
  }
  pd_unuse(cq->parent_domain);
  untrack(ctx, &CtxState::cqs, cq);
  purge_async_events(ctx, ibcq);
  pthread_mutex_destroy(&ibcq->mutex);
  pthread_cond_destroy(&ibcq->cond);
  delete cq->st;
  delete cq;
  return 0;
}

// ---- SRQ ----------------------------------------------------------------------------------------

ibv_srq* create_srq_common(ibv_pd* pd, void* srq_context, ibv_srq_attr* attr, SrCq* cq) {
  if (pd == nullptr || attr == nullptr) return fail<ibv_srq>(EINVAL);
  SrContext* ctx = to_ctx(pd->context);
  const DeviceAttr& da = ctx->dev->attr();
  if (attr->max_wr == 0 || attr->max_wr > da.max_srq_wr || attr->max_sge > da.max_srq_sge)
    return fail<ibv_srq>(EINVAL);
  int err = 0;
  Srq* s = ctx->dev->create_srq(to_pd(pd)->p, attr->max_wr, std::max<uint32_t>(attr->max_sge, 1), &err);
  if (s == nullptr) return fail<ibv_srq>(err != 0 ? err : ENOMEM);
  auto* srq = new SrSrq{};
  srq->dev = ctx->dev;
  srq->s = s;
  srq->ctx = ctx;
  srq->cq = cq;
  s->user_context = srq;
  srq->srq.context = pd->context;
  srq->srq.srq_context = srq_context;
  srq->srq.pd = pd;
  srq->srq.handle = next_handle++;
  pthread_mutex_init(&srq->srq.mutex, nullptr);
  pthread_cond_init(&srq->srq.cond, nullptr);
  srq->srq.events_completed = 0;
  attr->max_wr = s->max_wr();
  attr->max_sge = s->max_sge();
  if (attr->srq_limit != 0) ctx->dev->modify_srq_limit(s, std::min(attr->srq_limit, s->max_wr()));
  pd_use(pd);
  track(ctx, &CtxState::srqs, srq);
  return &srq->srq;
}

int destroy_srq(ibv_srq* ibsrq) {
  if (ibsrq == nullptr) return EINVAL;
  SrSrq* srq = to_srq(ibsrq);
  SrContext* ctx = srq->ctx;
  if (int rc = ctx->dev->destroy_srq(srq->s)) return rc;
  pd_unuse(ibsrq->pd);
  untrack(ctx, &CtxState::srqs, srq);
  purge_async_events(ctx, ibsrq);
  pthread_mutex_destroy(&ibsrq->mutex);
  pthread_cond_destroy(&ibsrq->cond);
  delete srq;
  return 0;
}

// ---- QP -----------------------------------------------------------------------------------------

constexpr uint64_t kSupportedSendOps = IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM |
                                       IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_SEND_WITH_IMM | IBV_QP_EX_WITH_RDMA_READ |
                                       IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP | IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD |
                                       IBV_QP_EX_WITH_LOCAL_INV | IBV_QP_EX_WITH_BIND_MW |
                                       IBV_QP_EX_WITH_SEND_WITH_INV;

// softrdma's create flags (include/softrdma/verbs_ext.h) clash with no IBV_QP_CREATE_* flag.
static_assert(((SOFTRDMA_QP_CREATE_DRAIN_SQ_ON_ERROR | SOFTRDMA_QP_CREATE_ERROR_QP_ON_ERROR) &
               (IBV_QP_CREATE_BLOCK_SELF_MCAST_LB | IBV_QP_CREATE_SCATTER_FCS | IBV_QP_CREATE_CVLAN_STRIPPING |
                IBV_QP_CREATE_SOURCE_QPN | IBV_QP_CREATE_PCI_WRITE_END_PADDING)) == 0);

ibv_qp* create_qp_common(ibv_context* c, ibv_pd* pd, const ibv_qp_init_attr& ia, ibv_qp_cap* cap_out,
                         bool with_ops, uint64_t send_ops,
                         transport::SendErrorMode send_error = transport::SendErrorMode::kDefault) {
  if (c == nullptr || pd == nullptr) return fail<ibv_qp>(EINVAL);
  SrContext* ctx = to_ctx(c);
  QpInitAttr init;
  switch (ia.qp_type) {
    case IBV_QPT_RC: init.type = QpType::kRc; break;
    case IBV_QPT_UC: init.type = QpType::kUc; break;
    case IBV_QPT_UD: init.type = QpType::kUd; break;
    default: return fail<ibv_qp>(EOPNOTSUPP);  // RAW_PACKET, XRC, DRIVER
  }
  if (ia.send_cq == nullptr || ia.recv_cq == nullptr) return fail<ibv_qp>(EINVAL);
  if (with_ops && (send_ops & ~kSupportedSendOps)) return fail<ibv_qp>(EOPNOTSUPP);
  const DeviceAttr& da = ctx->dev->attr();
  const ibv_qp_cap& rc = ia.cap;
  if (rc.max_send_wr > da.max_qp_wr || rc.max_send_sge > da.max_sge || rc.max_inline_data > da.max_inline_data ||
      (ia.srq == nullptr && (rc.max_recv_wr > da.max_qp_wr || rc.max_recv_sge > da.max_sge)))
    return fail<ibv_qp>(EINVAL);
  SrCq* scq = to_cq(ia.send_cq);
  SrCq* rcq = to_cq(ia.recv_cq);
  init.send_cq = scq->c;
  init.recv_cq = rcq->c;
  init.srq = ia.srq != nullptr ? to_srq(ia.srq)->s : nullptr;
  init.cap.max_send_wr = rc.max_send_wr;
  init.cap.max_send_sge = rc.max_send_sge;
  init.cap.max_inline_data = rc.max_inline_data;
  if (ia.srq == nullptr) {
    init.cap.max_recv_wr = rc.max_recv_wr;
    init.cap.max_recv_sge = rc.max_recv_sge;
  }
  init.sq_sig_all = ia.sq_sig_all != 0;
  init.send_error = send_error;
  auto* qp = new SrQp{};
  init.user_context = qp;
  int err = 0;
  qp->q = ctx->dev->create_qp(to_pd(pd)->p, init, &err);
  if (qp->q == nullptr) {
    delete qp;
    return fail<ibv_qp>(err != 0 ? err : ENOMEM);
  }
  qp->dev = ctx->dev;
  qp->ctx = ctx;
  ibv_qp& q = qp->qpx.qp_base;
  q.context = c;
  q.qp_context = ia.qp_context;
  q.pd = pd;
  q.send_cq = ia.send_cq;
  q.recv_cq = ia.recv_cq;
  q.srq = ia.srq;
  q.handle = next_handle++;
  q.qp_num = qp->q->qpn();
  q.state = IBV_QPS_RESET;
  q.qp_type = ia.qp_type;
  pthread_mutex_init(&q.mutex, nullptr);
  pthread_cond_init(&q.cond, nullptr);
  q.events_completed = 0;
  const QpCaps& got = qp->q->init.cap;
  if (cap_out != nullptr) {
    cap_out->max_send_wr = got.max_send_wr;
    cap_out->max_recv_wr = got.max_recv_wr;
    cap_out->max_send_sge = got.max_send_sge;
    cap_out->max_recv_sge = got.max_recv_sge;
    cap_out->max_inline_data = got.max_inline_data;
  }
  if (with_ops) {
    qp->is_ex = true;
    qp->wb = new WrBuilder;
    qp->wb->wrs.reserve(std::min<uint32_t>(got.max_send_wr, 1024));
    init_qp_ex_ops(qp, send_ops);
  }
  pd_use(pd);
  track(ctx, &CtxState::qps, qp);
  return &q;
}

int destroy_qp(ibv_qp* ibqp) {
  if (ibqp == nullptr) return EINVAL;
  SrQp* qp = to_qp(ibqp);
  SrContext* ctx = qp->ctx;
  // One full pass first: an acknowledgement the engine holds back (to leave with a reply) goes
  // out now, or a peer whose last message we received would retransmit to a QP that is gone.
  ctx->dev->progress();
  if (int rc = ctx->dev->destroy_qp(qp->q)) return rc;
  purge_cq(to_cq(ibqp->send_cq), ibqp->qp_num);
  if (ibqp->recv_cq != ibqp->send_cq) purge_cq(to_cq(ibqp->recv_cq), ibqp->qp_num);
  pd_unuse(ibqp->pd);
  untrack(ctx, &CtxState::qps, qp);
  purge_async_events(ctx, ibqp);
  pthread_mutex_destroy(&ibqp->mutex);
  pthread_cond_destroy(&ibqp->cond);
  delete qp->wb;
  delete qp;
  return 0;
}

}  // namespace

// ---- extended creation verbs placed in the verbs_context -----------------------------------------

ibv_cq_ex* create_cq_ex(ibv_context* c, ibv_cq_init_attr_ex* a) {
  if (a == nullptr) return fail<ibv_cq_ex>(EINVAL);
  // What rdma-core's library checks before the provider sees the request.
  if (a->wc_flags & ~static_cast<uint64_t>(IBV_CREATE_CQ_SUP_WC_FLAGS)) return fail<ibv_cq_ex>(EOPNOTSUPP);
  if (a->comp_mask & ~static_cast<uint32_t>(IBV_CQ_INIT_ATTR_MASK_FLAGS | IBV_CQ_INIT_ATTR_MASK_PD))
    return fail<ibv_cq_ex>(EOPNOTSUPP);
  // Timestamps, VLANs, flow tags and tag matching are features this adapter lacks.
  if (a->wc_flags & ~static_cast<uint64_t>(IBV_WC_STANDARD_FLAGS)) return fail<ibv_cq_ex>(EOPNOTSUPP);
  if (a->comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS) {
    if (a->flags & ~static_cast<uint32_t>(IBV_CREATE_CQ_ATTR_SINGLE_THREADED | IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN))
      return fail<ibv_cq_ex>(EOPNOTSUPP);
  }
  ibv_pd* parent = nullptr;
  if (a->comp_mask & IBV_CQ_INIT_ATTR_MASK_PD) {
    // Only a parent domain of this context may be named here.
    parent = a->parent_domain;
    if (parent == nullptr || parent->context != c || to_pd(parent)->inner == nullptr) return fail<ibv_cq_ex>(EINVAL);
  }
  if (a->cqe == 0 || a->cqe > kMaxCqe) return fail<ibv_cq_ex>(EINVAL);
  ibv_cq_ex* cq = create_cq_common(c, static_cast<int>(a->cqe), a->cq_context, a->channel,
                                   static_cast<int>(a->comp_vector), a->wc_flags, parent);
  if (cq != nullptr && (a->comp_mask & IBV_CQ_INIT_ATTR_MASK_FLAGS) && (a->flags & IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN))
    to_cq(cq)->ignore_overrun = true;
  return cq;
}

ibv_qp* create_qp_ex(ibv_context* c, ibv_qp_init_attr_ex* a) {
  if (a == nullptr) return fail<ibv_qp>(EINVAL);
  constexpr uint32_t kKnown = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_XRCD | IBV_QP_INIT_ATTR_CREATE_FLAGS |
                              IBV_QP_INIT_ATTR_MAX_TSO_HEADER | IBV_QP_INIT_ATTR_IND_TABLE |
                              IBV_QP_INIT_ATTR_RX_HASH | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;
  if (a->comp_mask & ~kKnown) return fail<ibv_qp>(EINVAL);
  if (a->comp_mask & (IBV_QP_INIT_ATTR_XRCD | IBV_QP_INIT_ATTR_IND_TABLE | IBV_QP_INIT_ATTR_RX_HASH))
    return fail<ibv_qp>(EOPNOTSUPP);
  // The two send-error options of softrdma (verbs_ext.h); no IBV_QP_CREATE_* flag is offered.
  constexpr uint32_t kErrorFlags = SOFTRDMA_QP_CREATE_DRAIN_SQ_ON_ERROR | SOFTRDMA_QP_CREATE_ERROR_QP_ON_ERROR;
  auto send_error = transport::SendErrorMode::kDefault;
  if (a->comp_mask & IBV_QP_INIT_ATTR_CREATE_FLAGS) {
    if (a->create_flags & ~kErrorFlags) return fail<ibv_qp>(EOPNOTSUPP);
    if ((a->create_flags & kErrorFlags) == kErrorFlags) return fail<ibv_qp>(EINVAL);
    if (a->create_flags & SOFTRDMA_QP_CREATE_DRAIN_SQ_ON_ERROR) send_error = transport::SendErrorMode::kDrainSendQueue;
    if (a->create_flags & SOFTRDMA_QP_CREATE_ERROR_QP_ON_ERROR) send_error = transport::SendErrorMode::kErrorQp;
  }
  if ((a->comp_mask & IBV_QP_INIT_ATTR_MAX_TSO_HEADER) && a->max_tso_header != 0) return fail<ibv_qp>(EOPNOTSUPP);
  if (!(a->comp_mask & IBV_QP_INIT_ATTR_PD) || a->pd == nullptr) return fail<ibv_qp>(EINVAL);
  ibv_qp_init_attr ia{};
  ia.qp_context = a->qp_context;
  ia.send_cq = a->send_cq;
  ia.recv_cq = a->recv_cq;
  ia.srq = a->srq;
  ia.cap = a->cap;
  ia.qp_type = a->qp_type;
  ia.sq_sig_all = a->sq_sig_all;
  bool ops = (a->comp_mask & IBV_QP_INIT_ATTR_SEND_OPS_FLAGS) != 0;
  return create_qp_common(c, a->pd, ia, &a->cap, ops, ops ? a->send_ops_flags : 0, send_error);
}

ibv_srq* create_srq_ex(ibv_context* /*c*/, ibv_srq_init_attr_ex* a) {
  if (a == nullptr) return fail<ibv_srq>(EINVAL);
  constexpr uint32_t kKnown = IBV_SRQ_INIT_ATTR_TYPE | IBV_SRQ_INIT_ATTR_PD | IBV_SRQ_INIT_ATTR_XRCD |
                              IBV_SRQ_INIT_ATTR_CQ | IBV_SRQ_INIT_ATTR_TM;
  if (a->comp_mask & ~kKnown) return fail<ibv_srq>(EINVAL);
  if ((a->comp_mask & IBV_SRQ_INIT_ATTR_TYPE) && a->srq_type != IBV_SRQT_BASIC) return fail<ibv_srq>(EOPNOTSUPP);
  if (a->comp_mask & (IBV_SRQ_INIT_ATTR_XRCD | IBV_SRQ_INIT_ATTR_TM)) return fail<ibv_srq>(EOPNOTSUPP);
  if (!(a->comp_mask & IBV_SRQ_INIT_ATTR_PD) || a->pd == nullptr) return fail<ibv_srq>(EINVAL);
  SrCq* cq = (a->comp_mask & IBV_SRQ_INIT_ATTR_CQ) && a->cq != nullptr ? to_cq(a->cq) : nullptr;
  return create_srq_common(a->pd, a->srq_context, &a->attr, cq);
}

// Parent domains: a PD that stands for another one (and may carry a thread domain and buffer
// allocators). The adapter allocates no buffers in the application's memory, so the allocators
// are accepted and never called, which their contract allows (a provider may always use its
// own allocation).
ibv_pd* alloc_parent_domain(ibv_context* c, ibv_parent_domain_init_attr* a) {
  if (c == nullptr || a == nullptr || a->pd == nullptr || a->pd->context != c) return fail<ibv_pd>(EINVAL);
  constexpr uint32_t kKnown = IBV_PARENT_DOMAIN_INIT_ATTR_ALLOCATORS | IBV_PARENT_DOMAIN_INIT_ATTR_PD_CONTEXT;
  if (a->comp_mask & ~kKnown) return fail<ibv_pd>(EOPNOTSUPP);
  if ((a->comp_mask & IBV_PARENT_DOMAIN_INIT_ATTR_ALLOCATORS) && (a->alloc == nullptr || a->free == nullptr))
    return fail<ibv_pd>(EINVAL);
  SrPd* inner = to_pd(a->pd);
  if (inner->inner != nullptr) return fail<ibv_pd>(EINVAL);  // a parent domain of a parent domain
  if (a->td != nullptr && a->td->context != c) return fail<ibv_pd>(EINVAL);
  auto* pd = new SrPd{};
  pd->p = inner->p;
  pd->inner = inner;
  pd->td = a->td != nullptr ? reinterpret_cast<SrTd*>(a->td) : nullptr;
  pd->pd.context = c;
  pd->pd.handle = next_handle++;
  inner->p->refs++;  // the PD cannot go while a parent domain wraps it
  if (pd->td != nullptr) pd->td->users++;
  track(to_ctx(c), &CtxState::pds, pd);
  return &pd->pd;
}

ibv_td* alloc_td(ibv_context* c, ibv_td_init_attr* a) {
  if (c == nullptr || a == nullptr) return fail<ibv_td>(EINVAL);
  if (a->comp_mask != 0) return fail<ibv_td>(EOPNOTSUPP);
  auto* td = new SrTd{};
  td->td.context = c;
  track(to_ctx(c), &CtxState::tds, td);
  return &td->td;
}

int dealloc_td(ibv_td* ibtd) {
  if (ibtd == nullptr) return EINVAL;
  auto* td = reinterpret_cast<SrTd*>(ibtd);
  if (td->users.load() != 0) return EBUSY;
  untrack(to_ctx(ibtd->context), &CtxState::tds, td);
  delete td;
  return 0;
}

// Context close: what the program left behind goes, dependants first.
void destroy_all_objects(SrContext* ctx) {
  auto take = [ctx](std::set<void*> CtxState::*set) {
    std::lock_guard<std::mutex> g(ctx->st->mu);
    std::vector<void*> v((ctx->st->*set).begin(), (ctx->st->*set).end());
    return v;
  };
  for (void* p : take(&CtxState::qps)) destroy_qp(&static_cast<SrQp*>(p)->qpx.qp_base);
  for (void* p : take(&CtxState::ahs)) {
    auto* ah = static_cast<SrAh*>(p);
    ctx->dev->destroy_ah(ah->a);
    pd_unuse(ah->ah.pd);
    delete ah;
  }
  for (void* p : take(&CtxState::mws)) {  // windows before the regions they are bound to
    auto* mw = static_cast<SrMw*>(p);
    ctx->dev->dealloc_mw(mw->m);
    pd_unuse(mw->mw.pd);
    delete mw;
  }
  for (void* p : take(&CtxState::mrs)) {
    auto* mr = static_cast<SrMr*>(p);
    ctx->dev->dereg_mr(mr->m);
    pd_unuse(mr->mr.pd);
    delete mr;
  }
  for (void* p : take(&CtxState::srqs)) destroy_srq(&static_cast<SrSrq*>(p)->srq);
  for (void* p : take(&CtxState::cqs)) destroy_cq(reinterpret_cast<ibv_cq*>(&static_cast<SrCq*>(p)->cqx));
  auto pds = take(&CtxState::pds);
  for (void* p : pds) {  // parent domains before the PDs they wrap
    auto* pd = static_cast<SrPd*>(p);
    if (pd->inner == nullptr) continue;
    pd->inner->p->refs--;
    if (pd->td != nullptr) pd->td->users--;
    delete pd;
  }
  for (void* p : pds) {
    auto* pd = static_cast<SrPd*>(p);
    if (pd->inner != nullptr) continue;
    ctx->dev->dealloc_pd(pd->p);
    delete pd;
  }
  for (void* p : take(&CtxState::tds)) delete static_cast<SrTd*>(p);
  for (void* p : take(&CtxState::channels)) {
    auto* ch = static_cast<SrChannel*>(p);
    delete ch->c;
    delete ch;
  }
}

}  // namespace softrdma::verbs

using namespace softrdma;
using namespace softrdma::verbs;

// ---- PD -----------------------------------------------------------------------------------------

SR_EXPORT ibv_pd* sr_alloc_pd_1_1(ibv_context* c) {
  if (c == nullptr) return fail<ibv_pd>(EINVAL);
  SrContext* ctx = to_ctx(c);
  Pd* p = ctx->dev->alloc_pd();
  if (p == nullptr) return fail<ibv_pd>(ENOMEM);
  auto* pd = new SrPd{};
  pd->p = p;
  pd->pd.context = c;
  pd->pd.handle = p->handle;
  track(ctx, &CtxState::pds, pd);
  return &pd->pd;
}
SR_SYMVER(sr_alloc_pd_1_1, ibv_alloc_pd@@IBVERBS_1.1);

SR_EXPORT int sr_dealloc_pd_1_1(ibv_pd* ibpd) {
  if (ibpd == nullptr) return EINVAL;
  SrPd* pd = to_pd(ibpd);
  SrContext* ctx = to_ctx(ibpd->context);
  if (pd->inner != nullptr) {  // a parent domain
    if (pd->users.load() != 0) return EBUSY;
    pd->inner->p->refs--;
    if (pd->td != nullptr) pd->td->users--;
  } else if (int rc = ctx->dev->dealloc_pd(pd->p)) {
    return rc;  // EBUSY while MRs, QPs, SRQs, AHs or parent domains use it
  }
  untrack(ctx, &CtxState::pds, pd);
  delete pd;
  return 0;
}
SR_SYMVER(sr_dealloc_pd_1_1, ibv_dealloc_pd@@IBVERBS_1.1);

SR_EXPORT ibv_pd* ibv_import_pd(ibv_context*, uint32_t) { return fail<ibv_pd>(EOPNOTSUPP); }
SR_EXPORT void ibv_unimport_pd(ibv_pd*) {}

// ---- completion channels ------------------------------------------------------------------------

SR_EXPORT ibv_comp_channel* ibv_create_comp_channel(ibv_context* c) {
  if (c == nullptr) return fail<ibv_comp_channel>(EINVAL);
  auto* ch = new SrChannel{};
  ch->c = new queue::CompletionChannel;
  if (!ch->c->valid()) {
    int e = errno;
    delete ch->c;
    delete ch;
    return fail<ibv_comp_channel>(e != 0 ? e : EMFILE);
  }
  ch->ch.context = c;
  ch->ch.fd = ch->c->fd();
  ch->ch.refcnt = 0;
  track(to_ctx(c), &CtxState::channels, ch);
  return &ch->ch;
}

SR_EXPORT int ibv_destroy_comp_channel(ibv_comp_channel* channel) {
  if (channel == nullptr) return EINVAL;
  ibv_context* c = channel->context;
  pthread_mutex_lock(&c->mutex);
  bool busy = channel->refcnt != 0;
  pthread_mutex_unlock(&c->mutex);
  if (busy) return EBUSY;
  SrChannel* ch = to_channel(channel);
  untrack(to_ctx(c), &CtxState::channels, ch);
  delete ch->c;
  delete ch;
  return 0;
}

// ---- CQ -----------------------------------------------------------------------------------------

SR_EXPORT ibv_cq* sr_create_cq_1_1(ibv_context* c, int cqe, void* cq_context, ibv_comp_channel* channel,
                                   int comp_vector) {
  return reinterpret_cast<ibv_cq*>(create_cq_common(c, cqe, cq_context, channel, comp_vector, IBV_WC_STANDARD_FLAGS));
}
SR_SYMVER(sr_create_cq_1_1, ibv_create_cq@@IBVERBS_1.1);

SR_EXPORT int sr_resize_cq_1_1(ibv_cq* ibcq, int cqe) {
  if (ibcq == nullptr) return EINVAL;
  if (cqe < 1 || static_cast<uint32_t>(cqe) > kMaxCqe) return EINVAL;
  SrCq* cq = to_cq(ibcq);
  // The ring cannot be reallocated under the engine; a size within it is a new accounting
  // limit, beyond it the resize is refused.
  if (static_cast<uint32_t>(cqe) > cq->c->capacity()) return ENOMEM;
  int unpolled = resize_cq_stash(cq, cqe);
  if (unpolled > cqe) return EINVAL;
  ibcq->cqe = cqe;
  return 0;
}
SR_SYMVER(sr_resize_cq_1_1, ibv_resize_cq@@IBVERBS_1.1);

SR_EXPORT int sr_destroy_cq_1_1(ibv_cq* cq) { return destroy_cq(cq); }
SR_SYMVER(sr_destroy_cq_1_1, ibv_destroy_cq@@IBVERBS_1.1);

SR_EXPORT int sr_get_cq_event_1_1(ibv_comp_channel* channel, ibv_cq** cq, void** cq_context) {
  if (channel == nullptr || cq == nullptr || cq_context == nullptr) {
    errno = EINVAL;
    return -1;
  }
  queue::CompletionQueue* base = to_channel(channel)->c->get_event();
  if (base == nullptr) return -1;  // errno from read(): EAGAIN on a non-blocking fd
  auto* scq = static_cast<SrCq*>(base->user_context());
  ibv_cq* c = reinterpret_cast<ibv_cq*>(&scq->cqx);
  *cq = c;
  *cq_context = c->cq_context;
  return 0;
}
SR_SYMVER(sr_get_cq_event_1_1, ibv_get_cq_event@@IBVERBS_1.1);

SR_EXPORT void sr_ack_cq_events_1_1(ibv_cq* cq, unsigned int nevents) {
  if (cq == nullptr) return;
  pthread_mutex_lock(&cq->mutex);
  cq->comp_events_completed += nevents;
  pthread_cond_signal(&cq->cond);
  pthread_mutex_unlock(&cq->mutex);
}
SR_SYMVER(sr_ack_cq_events_1_1, ibv_ack_cq_events@@IBVERBS_1.1);

// ---- SRQ ----------------------------------------------------------------------------------------

SR_EXPORT ibv_srq* sr_create_srq_1_1(ibv_pd* pd, ibv_srq_init_attr* attr) {
  if (attr == nullptr) return fail<ibv_srq>(EINVAL);
  return create_srq_common(pd, attr->srq_context, &attr->attr, nullptr);
}
SR_SYMVER(sr_create_srq_1_1, ibv_create_srq@@IBVERBS_1.1);

SR_EXPORT int sr_modify_srq_1_1(ibv_srq* ibsrq, ibv_srq_attr* attr, int mask) {
  if (ibsrq == nullptr || attr == nullptr) return EINVAL;
  SrSrq* srq = to_srq(ibsrq);
  if (mask & ~(IBV_SRQ_MAX_WR | IBV_SRQ_LIMIT)) return EINVAL;
  // No SRQ resize (IBV_DEVICE_SRQ_RESIZE is not reported).
  if (mask & IBV_SRQ_MAX_WR) return EINVAL;
  if (mask & IBV_SRQ_LIMIT) return srq->dev->modify_srq_limit(srq->s, attr->srq_limit);
  return 0;
}
SR_SYMVER(sr_modify_srq_1_1, ibv_modify_srq@@IBVERBS_1.1);

SR_EXPORT int sr_query_srq_1_1(ibv_srq* ibsrq, ibv_srq_attr* attr) {
  if (ibsrq == nullptr || attr == nullptr) return EINVAL;
  SrSrq* srq = to_srq(ibsrq);
  attr->max_wr = srq->s->max_wr();
  attr->max_sge = srq->s->max_sge();
  attr->srq_limit = srq->s->limit.load(std::memory_order_relaxed);
  return 0;
}
SR_SYMVER(sr_query_srq_1_1, ibv_query_srq@@IBVERBS_1.1);

SR_EXPORT int sr_destroy_srq_1_1(ibv_srq* srq) { return destroy_srq(srq); }
SR_SYMVER(sr_destroy_srq_1_1, ibv_destroy_srq@@IBVERBS_1.1);

// ---- QP -----------------------------------------------------------------------------------------

SR_EXPORT ibv_qp* sr_create_qp_1_1(ibv_pd* pd, ibv_qp_init_attr* attr) {
  if (pd == nullptr || attr == nullptr) return fail<ibv_qp>(EINVAL);
  return create_qp_common(pd->context, pd, *attr, &attr->cap, false, 0);
}
SR_SYMVER(sr_create_qp_1_1, ibv_create_qp@@IBVERBS_1.1);

SR_EXPORT ibv_qp_ex* ibv_qp_to_qp_ex(ibv_qp* qp) {
  if (qp == nullptr) return nullptr;
  SrQp* q = to_qp(qp);
  return q->is_ex ? &q->qpx : nullptr;
}

namespace {
constexpr int kKnownQpAttrMask = (1 << 21) - 1;  // IBV_QP_STATE .. IBV_QP_DEST_QPN
}

SR_EXPORT int sr_modify_qp_1_1(ibv_qp* ibqp, ibv_qp_attr* a, int mask) {
  if (ibqp == nullptr || a == nullptr) return EINVAL;
  if (mask & ~kKnownQpAttrMask) return EINVAL;  // rate limit, ...
  SrQp* qp = to_qp(ibqp);
  QpAttr q;
  q.state = static_cast<QpState>(a->qp_state);
  q.cur_state = static_cast<QpState>(a->cur_qp_state);
  if ((mask & IBV_QP_STATE) && a->qp_state > IBV_QPS_ERR) return EINVAL;
  if ((mask & IBV_QP_CUR_STATE) && a->cur_qp_state > IBV_QPS_ERR) return EINVAL;
  q.path_mtu = static_cast<uint8_t>(a->path_mtu);
  q.qkey = a->qkey;
  q.rq_psn = a->rq_psn;
  q.sq_psn = a->sq_psn;
  q.dest_qpn = a->dest_qp_num;
  q.access = device_access(static_cast<unsigned>(a->qp_access_flags));
  q.pkey_index = a->pkey_index;
  q.sq_draining = a->sq_draining != 0;
  q.max_rd_atomic = a->max_rd_atomic;
  q.max_dest_rd_atomic = a->max_dest_rd_atomic;
  q.min_rnr_timer = a->min_rnr_timer;
  q.port_num = a->port_num;
  q.timeout = a->timeout;
  q.retry_cnt = a->retry_cnt;
  q.rnr_retry = a->rnr_retry;
  if (mask & IBV_QP_AV) {
    if (int rc = to_av(qp->ctx, a->ah_attr, &q.av)) return rc;
  }
  if (mask & IBV_QP_CAP) return EINVAL;  // no QP resize
  int rc = qp->dev->modify_qp(qp->q, q, static_cast<uint32_t>(mask));
  if (rc != 0) return rc;
  if (mask & IBV_QP_STATE) {
    ibqp->state = a->qp_state;
    if (a->qp_state == IBV_QPS_ERR && ibqp->srq != nullptr) {
      // IBA 11.6.3.1: a QP on an SRQ that enters Error reports its last WQE (consumers wait
      // for it before destroying the QP). The responder holds no WQE across this call.
      ibv_async_event ev{};
      ev.element.qp = ibqp;
      ev.event_type = IBV_EVENT_QP_LAST_WQE_REACHED;
      push_async_event(qp->ctx, ev);
    }
    if (a->qp_state == IBV_QPS_RESET) {
      purge_cq(to_cq(ibqp->send_cq), ibqp->qp_num);
      if (ibqp->recv_cq != ibqp->send_cq) purge_cq(to_cq(ibqp->recv_cq), ibqp->qp_num);
    }
  }
  return 0;
}
SR_SYMVER(sr_modify_qp_1_1, ibv_modify_qp@@IBVERBS_1.1);

SR_EXPORT int sr_query_qp_1_1(ibv_qp* ibqp, ibv_qp_attr* a, int mask, ibv_qp_init_attr* init) {
  if (ibqp == nullptr || a == nullptr) return EINVAL;
  SrQp* qp = to_qp(ibqp);
  QpAttr q;
  QpInitAttr ia;
  if (int rc = qp->dev->query_qp(qp->q, &q, &ia)) return rc;
  *a = ibv_qp_attr{};
  a->qp_state = static_cast<ibv_qp_state>(q.state);
  a->cur_qp_state = static_cast<ibv_qp_state>(q.cur_state);
  a->path_mtu = static_cast<ibv_mtu>(q.path_mtu);
  a->path_mig_state = IBV_MIG_MIGRATED;
  a->qkey = q.qkey;
  a->rq_psn = q.rq_psn;
  a->sq_psn = q.sq_psn;
  a->dest_qp_num = q.dest_qpn;
  a->qp_access_flags = static_cast<unsigned>(q.access);
  a->cap.max_send_wr = ia.cap.max_send_wr;
  a->cap.max_recv_wr = ia.cap.max_recv_wr;
  a->cap.max_send_sge = ia.cap.max_send_sge;
  a->cap.max_recv_sge = ia.cap.max_recv_sge;
  a->cap.max_inline_data = ia.cap.max_inline_data;
  if (ibqp->qp_type != IBV_QPT_UD) from_av(q.av, &a->ah_attr);
  a->pkey_index = q.pkey_index;
  a->sq_draining = q.sq_draining ? 1 : 0;
  a->max_rd_atomic = q.max_rd_atomic;
  a->max_dest_rd_atomic = q.max_dest_rd_atomic;
  a->min_rnr_timer = q.min_rnr_timer;
  a->port_num = q.port_num;
  a->timeout = q.timeout;
  a->retry_cnt = q.retry_cnt;
  a->rnr_retry = q.rnr_retry;
  if (init != nullptr) {
    *init = ibv_qp_init_attr{};
    init->qp_context = ibqp->qp_context;
    init->send_cq = ibqp->send_cq;
    init->recv_cq = ibqp->recv_cq;
    init->srq = ibqp->srq;
    init->cap = a->cap;
    init->qp_type = ibqp->qp_type;
    init->sq_sig_all = ia.sq_sig_all ? 1 : 0;
  }
  if (mask & IBV_QP_STATE) ibqp->state = a->qp_state;
  return 0;
}
SR_SYMVER(sr_query_qp_1_1, ibv_query_qp@@IBVERBS_1.1);

SR_EXPORT int sr_destroy_qp_1_1(ibv_qp* qp) { return destroy_qp(qp); }
SR_SYMVER(sr_destroy_qp_1_1, ibv_destroy_qp@@IBVERBS_1.1);

// Every QP delivers data in order (one engine, in-order placement).
SR_EXPORT int ibv_query_qp_data_in_order(ibv_qp* qp, ibv_wr_opcode, uint32_t flags) {
  if (qp == nullptr || flags != 0) return 0;
  return 1;
}

SR_EXPORT int ibv_query_ece(ibv_qp*, ibv_ece*) { return EOPNOTSUPP; }
SR_EXPORT int ibv_set_ece(ibv_qp*, ibv_ece*) { return EOPNOTSUPP; }
