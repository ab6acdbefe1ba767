// Memory regions: registration (plain, iova, iova2), re-registration and deregistration; the
// dma-buf and import verbs this device does not offer.
#include <cerrno>
#include <cstring>

#include "verbs/objects_shared.h"

using namespace softrdma;
using namespace softrdma::verbs;

// ---- MR -----------------------------------------------------------------------------------------

SR_EXPORT ibv_mr* sr_reg_mr_1_1(ibv_pd* pd, void* addr, size_t length, int access) {
  return reg_mr_common(pd, addr, length, reinterpret_cast<uintptr_t>(addr), static_cast<unsigned>(access));
}
SR_SYMVER(sr_reg_mr_1_1, ibv_reg_mr@@IBVERBS_1.1);

SR_EXPORT ibv_mr* ibv_reg_mr_iova(ibv_pd* pd, void* addr, size_t length, uint64_t iova, int access) {
  return reg_mr_common(pd, addr, length, iova, static_cast<unsigned>(access));
}

SR_EXPORT ibv_mr* ibv_reg_mr_iova2(ibv_pd* pd, void* addr, size_t length, uint64_t iova, unsigned int access) {
  return reg_mr_common(pd, addr, length, iova, access);
}

SR_EXPORT ibv_mr* ibv_reg_dmabuf_mr(ibv_pd*, uint64_t, size_t, uint64_t, int, int) {
  return fail<ibv_mr>(EOPNOTSUPP);
}

SR_EXPORT int sr_rereg_mr_1_1(ibv_mr* ibmr, int flags, ibv_pd* pd, void* addr, size_t length, int access) {
  if (ibmr == nullptr || flags == 0 || (flags & ~IBV_REREG_MR_FLAGS_SUPPORTED)) {
    errno = EINVAL;
    return IBV_REREG_MR_ERR_INPUT;
  }
  if ((flags & IBV_REREG_MR_CHANGE_TRANSLATION) && (addr == nullptr || length == 0)) {
    errno = EINVAL;
    return IBV_REREG_MR_ERR_INPUT;
  }
  if ((flags & IBV_REREG_MR_CHANGE_PD) && pd == nullptr) {
    errno = EINVAL;
    return IBV_REREG_MR_ERR_INPUT;
  }
  SrMr* mr = to_mr(ibmr);
  SrContext* ctx = to_ctx(ibmr->context);
  Mr* m = mr->m;
  ibv_pd* new_pd = (flags & IBV_REREG_MR_CHANGE_PD) ? pd : ibmr->pd;
  void* new_addr = m->addr;
  size_t new_len = m->length;
  uint64_t new_iova = m->iova;
  if (flags & IBV_REREG_MR_CHANGE_TRANSLATION) {
    new_addr = addr;
    new_len = length;
    new_iova = reinterpret_cast<uintptr_t>(addr);
  }
  unsigned new_access = m->access;
  if (flags & IBV_REREG_MR_CHANGE_ACCESS) {
    if (int rc = check_access(static_cast<unsigned>(access))) {
      errno = rc;
      return IBV_REREG_MR_ERR_INPUT;
    }
    new_access = device_access(static_cast<unsigned>(access));
  }
  if (int rc = ctx->dev->rereg_mr(m, to_pd(new_pd)->p, new_addr, new_len, new_iova, new_access)) {
    errno = rc;
    return IBV_REREG_MR_ERR_CMD;
  }
  if (new_pd != ibmr->pd) {
    pd_unuse(ibmr->pd);
    pd_use(new_pd);
  }
  ibmr->pd = new_pd;
  ibmr->addr = new_addr;
  ibmr->length = new_len;
  ibmr->lkey = m->lkey;
  ibmr->rkey = m->rkey;
  return 0;
}
SR_SYMVER(sr_rereg_mr_1_1, ibv_rereg_mr@@IBVERBS_1.1);

SR_EXPORT int sr_dereg_mr_1_1(ibv_mr* ibmr) {
  if (ibmr == nullptr) return EINVAL;
  SrMr* mr = to_mr(ibmr);
  SrContext* ctx = to_ctx(ibmr->context);
  if (int rc = ctx->dev->dereg_mr(mr->m)) return rc;
  pd_unuse(ibmr->pd);
  untrack(ctx, &CtxState::mrs, mr);
  delete mr;
  return 0;
}
SR_SYMVER(sr_dereg_mr_1_1, ibv_dereg_mr@@IBVERBS_1.1);

SR_EXPORT ibv_mr* ibv_import_mr(ibv_pd*, uint32_t) { return fail<ibv_mr>(EOPNOTSUPP); }
SR_EXPORT void ibv_unimport_mr(ibv_mr*) {}
SR_EXPORT ibv_dm* ibv_import_dm(ibv_context*, uint32_t) { return fail<ibv_dm>(EOPNOTSUPP); }
SR_EXPORT void ibv_unimport_dm(ibv_dm*) {}
