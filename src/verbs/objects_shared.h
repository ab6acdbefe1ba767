// Helpers of the control-path verbs shared by objects.cc, objects_ah.cc, objects_mr.cc and
// objects_mw.cc.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <set>

#include "verbs/internal.h"

namespace softrdma::verbs {

extern std::atomic<uint32_t> next_handle;

// rdma-core's convention for pointer-returning verbs: NULL with errno.
template <typename T>
T* fail(int e) {
  errno = e;
  return nullptr;
}

// The objects a context owns, for teardown at ibv_close_device.
void track(SrContext* ctx, std::set<void*> CtxState::*set, void* obj);
void untrack(SrContext* ctx, std::set<void*> CtxState::*set, void* obj);
// Objects made on a parent domain keep it alive.
void pd_use(ibv_pd* pd);
void pd_unuse(ibv_pd* pd);
// QP access flags in the adapter's form (objects_mr.cc).
uint32_t device_access(unsigned access);
// Memory registration (objects_mr.cc): plain, implicit on-demand, or fast-registration.
ibv_mr* reg_mr_common(ibv_pd* pd, void* addr, size_t length, uint64_t iova, unsigned access);
// ibv_ah_attr <-> AddressVector (RoCE: a GRH naming an existing source GID is required).
int to_av(SrContext* ctx, const ibv_ah_attr& a, AddressVector* av);
void from_av(const AddressVector& av, ibv_ah_attr* a);

}  // namespace softrdma::verbs
