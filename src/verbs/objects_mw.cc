// Memory windows (ibv_alloc_mw, ibv_dealloc_mw, the type-1 bind verb ibv_bind_mw) and
// ibv_advise_mr for on-demand regions. Type-2 binds, invalidation and fast registration go
// through the send queue (datapath.cc).
#include <cerrno>

#include "verbs/objects_shared.h"

namespace softrdma::verbs {

ibv_mw* alloc_mw(ibv_pd* pd, ibv_mw_type type) {
  if (pd == nullptr) return fail<ibv_mw>(EINVAL);
  // Any other type is an error, not a missing feature (test_mr's wrong-type test wants that).
  if (type != IBV_MW_TYPE_1 && type != IBV_MW_TYPE_2) return fail<ibv_mw>(EINVAL);
  SrContext* ctx = to_ctx(pd->context);
  int err = 0;
  Mw* m = ctx->dev->alloc_mw(to_pd(pd)->p, static_cast<uint8_t>(type), &err);
  if (m == nullptr) return fail<ibv_mw>(err != 0 ? err : ENOMEM);
  auto* mw = new SrMw{};
  mw->m = m;
  mw->ctx = ctx;
  mw->key.store(m->rkey, std::memory_order_relaxed);
  mw->mw.context = pd->context;
  mw->mw.pd = pd;
  mw->mw.rkey = m->rkey;
  mw->mw.handle = next_handle++;
  mw->mw.type = type;
  pd_use(pd);
  track(ctx, &CtxState::mws, mw);
  return &mw->mw;
}

// Deallocating a window invalidates it (a bound one is unbound from its region first).
int dealloc_mw(ibv_mw* ibmw) {
  if (ibmw == nullptr) return EINVAL;
  SrMw* mw = to_mw(ibmw);
  SrContext* ctx = mw->ctx;
  if (int rc = ctx->dev->dealloc_mw(mw->m)) return rc;
  pd_unuse(ibmw->pd);
  untrack(ctx, &CtxState::mws, mw);
  delete mw;
  return 0;
}

// The bind verb: type-1 windows only. The inline ibv_bind_mw has already checked the type and
// that the region and the window share a PD (EPERM); programs reaching ops.bind_mw directly get
// the same checks here. A zero length unbinds the window. Errors found when the bind executes
// (range outside the region, a region without IBV_ACCESS_MW_BIND, a QP of another PD) complete
// with IBV_WC_MW_BIND_ERR, as the IBA specifies.
int bind_mw(ibv_qp* ibqp, ibv_mw* ibmw, ibv_mw_bind* b) {
  if (ibqp == nullptr || ibmw == nullptr || b == nullptr) return EINVAL;
  if (ibmw->type != IBV_MW_TYPE_1) return EINVAL;
  const ibv_mw_bind_info& bi = b->bind_info;
  if (bi.mr == nullptr && (bi.addr != 0 || bi.length != 0)) return EINVAL;
  if (bi.mr != nullptr && to_pd(bi.mr->pd)->p != to_pd(ibmw->pd)->p) return EPERM;
  if (check_mw_access(bi.mw_access_flags) != 0) return EINVAL;
  // IBA 10.6.7.2.1: type-1 windows are addressed by virtual address, never zero based.
  if (bi.mw_access_flags & IBV_ACCESS_ZERO_BASED) return EINVAL;
  if (bi.mr != nullptr && (bi.mw_access_flags & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) &&
      !to_mr(bi.mr)->fast_reg && !(to_mr(bi.mr)->m->access & IBV_ACCESS_LOCAL_WRITE))
    return EINVAL;  // a window never grants more than its region allows (checked when it runs too)
  SrMw* mw = to_mw(ibmw);
  SrQp* qp = to_qp(ibqp);
  Mr* region = bi.mr != nullptr ? to_mr(bi.mr)->m : nullptr;
  const uint32_t flags = b->send_flags & (IBV_SEND_FENCE | IBV_SEND_SIGNALED | IBV_SEND_SOLICITED);
  const uint32_t access = window_access(bi.mw_access_flags);
  int rc = qp->dev->bind_mw(qp->q, mw->m, b->wr_id, flags, region, bi.addr, bi.length, access);
  if (rc == ENOMEM) {  // a send queue slot freed a moment before its completion was polled
    qp->dev->progress();
    rc = qp->dev->bind_mw(qp->q, mw->m, b->wr_id, flags, region, bi.addr, bi.length, access);
  }
  if (rc != 0) return rc;
  ibmw->rkey = mw->m->rkey;
  mw->key.store(mw->m->rkey, std::memory_order_relaxed);
  return 0;
}

// ibv_advise_mr: PREFETCH / PREFETCH_WRITE bring the pages of on-demand regions in ahead of use
// (with IBV_ADVISE_MR_FLAG_FLUSH before returning, else in the background). PREFETCH_NO_FAULT
// asks to map what is resident without faulting anything in: the adapter reads resident pages
// of on-demand regions directly, so there is nothing to do (and the SGEs are not checked).
int advise_mr(ibv_pd* pd, ibv_advise_mr_advice advice, uint32_t flags, ibv_sge* sg_list, uint32_t num_sge) {
  if (pd == nullptr || sg_list == nullptr || num_sge == 0) return EINVAL;
  if (flags & ~static_cast<uint32_t>(IBV_ADVISE_MR_FLAG_FLUSH)) return EINVAL;
  bool write;
  switch (advice) {
    case IBV_ADVISE_MR_ADVICE_PREFETCH: write = false; break;
    case IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE: write = true; break;
    case IBV_ADVISE_MR_ADVICE_PREFETCH_NO_FAULT: return 0;
    default: return EOPNOTSUPP;
  }
  SrContext* ctx = to_ctx(pd->context);
  return ctx->dev->advise_mr(to_pd(pd)->p, write, (flags & IBV_ADVISE_MR_FLAG_FLUSH) != 0,
                             reinterpret_cast<const Sge*>(sg_list), num_sge);
}

}  // namespace softrdma::verbs
