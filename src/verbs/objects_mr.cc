// Memory regions: registration (plain, iova, iova2; on demand, explicit and implicit; fast-
// registration regions), re-registration and deregistration; the access flags of regions and
// windows; the dma-buf and import verbs this device does not offer.
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "mem/access.h"
#include "verbs/objects_shared.h"

namespace softrdma::verbs {

// The extensions' values are the adapter's (include/softrdma/verbs_ext.h documents them).
static_assert(SOFTRDMA_ACCESS_FAST_REG == mem::kFastReg && SOFTRDMA_ACCESS_ONE_TOUCH == mem::kOneTouch);
static_assert((SOFTRDMA_ACCESS_FAST_REG & IBV_ACCESS_OPTIONAL_RANGE) != 0 &&
              (SOFTRDMA_ACCESS_ONE_TOUCH & IBV_ACCESS_OPTIONAL_RANGE) != 0);
constexpr bool same(uint32_t a, uint32_t b) { return a == b; }
static_assert(same(IBV_ACCESS_ON_DEMAND, mem::kOnDemand) && same(IBV_ACCESS_ZERO_BASED, mem::kZeroBased) &&
              same(IBV_ACCESS_MW_BIND, mem::kMwBind) && same(IBV_ACCESS_LOCAL_WRITE, mem::kLocalWrite) &&
              same(IBV_ACCESS_REMOTE_WRITE, mem::kRemoteWrite) && same(IBV_ACCESS_REMOTE_READ, mem::kRemoteRead) &&
              same(IBV_ACCESS_REMOTE_ATOMIC, mem::kRemoteAtomic));
static_assert(SOFTRDMA_FAST_REG_PAGE_SIZE == 4096);

namespace {

// ibv_access_flags the adapter implements for regions. IBV_ACCESS_OPTIONAL_RANGE bits are hints
// that may be ignored (perftest passes RELAXED_ORDERING) — softrdma's own two live there too;
// anything else unknown is refused (FLUSH_*, ...). HUGETLB is accepted and needs nothing.
constexpr unsigned kRegionAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                                   IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND | IBV_ACCESS_ZERO_BASED |
                                   IBV_ACCESS_ON_DEMAND | IBV_ACCESS_HUGETLB;
// A window grants remote rights only; LOCAL_WRITE is tolerated (pyverbs and other programs pass
// it) and means nothing for a window. ZERO_BASED and ONE_TOUCH shape it.
constexpr unsigned kWindowAccess = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                                   IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_ZERO_BASED;
constexpr unsigned kRemoteWriteOrAtomic = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC;

// softrdma_alloc_fast_reg_mr(): ibv_reg_mr(pd, NULL, max_pages << 12, SOFTRDMA_ACCESS_FAST_REG).
ibv_mr* alloc_fast_reg(ibv_pd* pd, size_t length) {
  const size_t pages = (length + SOFTRDMA_FAST_REG_PAGE_SIZE - 1) >> SOFTRDMA_FAST_REG_PAGE_SHIFT;
  if (pages == 0 || pages > UINT32_MAX) return fail<ibv_mr>(EINVAL);
  SrContext* ctx = to_ctx(pd->context);
  int err = 0;
  Mr* m = ctx->dev->alloc_fast_reg_mr(to_pd(pd)->p, static_cast<uint32_t>(pages), &err);
  if (m == nullptr) return fail<ibv_mr>(err != 0 ? err : ENOMEM);
  auto* mr = new SrMr{};
  mr->m = m;
  mr->fast_reg = true;
  mr->key.store(m->lkey, std::memory_order_relaxed);
  mr->mr.context = pd->context;
  mr->mr.pd = pd;
  mr->mr.addr = nullptr;
  mr->mr.length = pages << SOFTRDMA_FAST_REG_PAGE_SHIFT;
  mr->mr.handle = next_handle++;
  mr->mr.lkey = m->lkey;
  mr->mr.rkey = m->rkey;
  pd_use(pd);
  track(ctx, &CtxState::mrs, mr);
  return &mr->mr;
}

}  // namespace

int check_access(unsigned access) {
  unsigned a = access & ~static_cast<unsigned>(IBV_ACCESS_OPTIONAL_RANGE);
  if (a & ~kRegionAccess) return EOPNOTSUPP;
  if ((a & kRemoteWriteOrAtomic) && !(a & IBV_ACCESS_LOCAL_WRITE)) return EINVAL;
  return 0;
}

int check_mw_access(unsigned access) {
  unsigned a = access & ~static_cast<unsigned>(IBV_ACCESS_OPTIONAL_RANGE);
  return (a & ~kWindowAccess) ? EINVAL : 0;
}

uint32_t region_access(unsigned access) {
  return access & ((kRegionAccess & ~static_cast<unsigned>(IBV_ACCESS_HUGETLB)) | SOFTRDMA_ACCESS_ONE_TOUCH);
}

uint32_t window_access(unsigned access) {
  return access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC |
                   IBV_ACCESS_ZERO_BASED | SOFTRDMA_ACCESS_ONE_TOUCH);
}

uint32_t device_access(unsigned access) {
  return access & (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                   IBV_ACCESS_REMOTE_ATOMIC | IBV_ACCESS_MW_BIND | IBV_ACCESS_ZERO_BASED);
}

// addr NULL with SOFTRDMA_ACCESS_FAST_REG: a fast-registration region; addr NULL, length
// SIZE_MAX and IBV_ACCESS_ON_DEMAND: the implicit on-demand region (the whole address space,
// addressed as itself); otherwise [addr, addr+length) at iova, pinned unless on demand.
ibv_mr* reg_mr_common(ibv_pd* pd, void* addr, size_t length, uint64_t iova, unsigned access) {
  if (pd == nullptr) return fail<ibv_mr>(EINVAL);
  if (addr == nullptr && (access & SOFTRDMA_ACCESS_FAST_REG)) return alloc_fast_reg(pd, length);
  if (int rc = check_access(access)) return fail<ibv_mr>(rc);
  SrPd* p = to_pd(pd);
  SrContext* ctx = to_ctx(pd->context);
  int err = 0;
  Mr* m = ctx->dev->reg_mr(p->p, addr, length, region_access(access), &err, iova);
  if (m == nullptr) return fail<ibv_mr>(err != 0 ? err : ENOMEM);
  auto* mr = new SrMr{};
  mr->m = m;
  mr->mr.context = pd->context;
  mr->mr.pd = pd;
  mr->mr.addr = addr;
  mr->mr.length = length;
  mr->mr.handle = next_handle++;
  mr->mr.lkey = m->lkey;
  mr->mr.rkey = m->rkey;
  pd_use(pd);
  track(ctx, &CtxState::mrs, mr);
  return &mr->mr;
}

}  // namespace softrdma::verbs

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
  // Fast-registration regions change through the send queue; the implicit region is the address
  // space and has nothing to change.
  if (mr->fast_reg || m->implicit) {
    errno = EINVAL;
    return IBV_REREG_MR_ERR_INPUT;
  }
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
    new_access = region_access(static_cast<unsigned>(access));
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
