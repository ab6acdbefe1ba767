// The drop-in libibverbs.so.1: the objects behind the C structs we hand out.
//
// Every object a program receives (ibv_device, ibv_context, ibv_pd, ...) is the first member
// of one of the wrapper structs below, so the library gets from the C pointer to its own
// state with a cast. The wrappers are standard-layout (static_asserted) and hold only C
// structs, scalars and raw pointers; C++ state (containers, locks) lives in a separately
// allocated *State object. The fast paths (post_send, post_recv, post_srq_recv, poll_cq,
// req_notify_cq) read only the wrapper: the Device pointer and the C++ API object are right
// after the C struct.
//
// This folder is the only place that includes <infiniband/verbs.h>.
#pragma once

#include <infiniband/verbs.h>

// verbs.h turns these into inline wrappers or macros; we define the real functions.
#undef ibv_reg_mr
#undef ibv_reg_mr_iova
#undef ibv_query_port

// The documented extensions (flags, fast registration); their values are checked against the
// adapter's in datapath.cc.
#include "softrdma/verbs_ext.h"

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <type_traits>
#include <vector>

#include "device/device.h"

// Exported ABI functions: default visibility and C linkage; everything else is hidden.
#define SR_EXPORT extern "C" __attribute__((visibility("default")))
// Binds a private definition to a versioned public name (see libibverbs.map).
#define SR_SYMVER(priv, pub) __asm__(".symver " #priv "," #pub)

namespace softrdma::verbs {

struct SrContext;
struct SrCq;

// ---- devices --------------------------------------------------------------------------------

struct DevState {
  DeviceConfig cfg;
  std::string source;
  uint64_t guid = 0;  // host order
  int index = 0;
  std::mutex mu;  // guards device and contexts
  std::unique_ptr<Device> device;
  int contexts = 0;
};

// struct ibv_device is 664 bytes; rdma-core allocates it as the head of a struct verbs_device
// whose next member is `ops`, which mlx5dv_* / efadv_* read to recognise their own devices.
// Ours points at a private object, so they answer "not my device".
struct SrDevice {
  ibv_device dev;
  const void* ops;
  DevState* st;
};
static_assert(std::is_standard_layout_v<SrDevice>);
static_assert(offsetof(SrDevice, ops) == 664);

// ---- context --------------------------------------------------------------------------------

struct CtxState {
  std::mutex mu;  // guards everything below
  std::set<void*> pds, mrs, mws, cqs, srqs, qps, ahs, channels, tds;
  std::deque<ibv_async_event> events;  // async events not yet read
};

struct SrContext {
  verbs_context vctx;  // vctx.context is what programs hold
  Device* dev;
  SrDevice* sdev;
  CtxState* st;
};
static_assert(std::is_standard_layout_v<SrContext>);

inline SrContext* to_ctx(ibv_context* c) {
  return reinterpret_cast<SrContext*>(reinterpret_cast<char*>(c) - offsetof(verbs_context, context));
}

// ---- objects --------------------------------------------------------------------------------

struct SrTd {
  ibv_td td;
  std::atomic<uint32_t> users;  // parent domains using it
};
static_assert(std::is_standard_layout_v<SrTd>);

// A protection domain, or a parent domain (ibv_alloc_parent_domain): a PD of its own kind that
// stands for the PD it was made from (inner) in every verb; p is then inner's adapter PD.
struct SrPd {
  ibv_pd pd;
  Pd* p;
  SrPd* inner;                   // parent domain: the PD it wraps; nullptr for a plain PD
  SrTd* td;                      // parent domain: its thread domain, if any
  std::atomic<uint32_t> users;   // parent domain: objects created on it
};
static_assert(std::is_standard_layout_v<SrPd>);

struct SrMr {
  ibv_mr mr;
  Mr* m;
  bool fast_reg;  // softrdma_alloc_fast_reg_mr(): registered by SOFTRDMA_WR_REG_MR work requests
  // Fast registration: the key of the last registration posted (the adapter is told the key the
  // region has when the WR executes, which is this one, since the send queue runs in order).
  std::atomic<uint32_t> key;
};
static_assert(std::is_standard_layout_v<SrMr>);

// A memory window. key: its key once every bind posted so far has executed; a type-2 bind WR
// names it as the window's current key (ibv_mw.rkey of a type-2 window stays the allocated key,
// as on mlx5: the key of a type-2 bind is the one the consumer put in the WR).
struct SrMw {
  ibv_mw mw;
  Mw* m;
  SrContext* ctx;
  std::atomic<uint32_t> key;
};
static_assert(std::is_standard_layout_v<SrMw>);

struct SrChannel {
  ibv_comp_channel ch;
  queue::CompletionChannel* c;
};
static_assert(std::is_standard_layout_v<SrChannel>);

struct CqState {
  std::mutex mu;
  std::deque<Wc> stash;  // completions taken out of the ring by resize, served first
};

// Every CQ is an ibv_cq_ex (its first 128 bytes are the ibv_cq), so ibv_cq_ex_to_cq works both
// ways and CQs from ibv_create_cq can be read with the extended API too.
struct SrCq {
  ibv_cq_ex cqx;
  Device* dev;
  Cq* c;
  std::atomic<uint32_t> stash_n;  // size of st->stash
  SrContext* ctx;
  CqState* st;
  uint64_t wc_flags;  // for ibv_create_cq_ex: what the caller may read
  Wc cur;             // extended polling: the current completion
  ibv_pd* parent_domain;  // ibv_create_cq_ex with IBV_CQ_INIT_ATTR_MASK_PD
  bool overrun_reported;
  bool ignore_overrun;  // IBV_CREATE_CQ_ATTR_IGNORE_OVERRUN
};
static_assert(std::is_standard_layout_v<SrCq>);

struct SrSrq {
  ibv_srq srq;
  Device* dev;
  Srq* s;
  SrContext* ctx;
  SrCq* cq;  // ibv_create_srq_ex with IBV_SRQ_INIT_ATTR_CQ
};
static_assert(std::is_standard_layout_v<SrSrq>);

struct SrAh {
  ibv_ah ah;
  AddressHandle* a;
};
static_assert(std::is_standard_layout_v<SrAh>);

// The ibv_wr_* builder of a QP created with IBV_QP_INIT_ATTR_SEND_OPS_FLAGS.
struct WrBuilder {
  struct Pending {
    SendWr wr;
    uint32_t sge_begin = 0;
    uint32_t sge_count = 0;
    bool staged_inline = false;  // sges hold offsets into inline_buf (ibv_wr_set_inline_data*)
    SrMw* mw = nullptr;          // ibv_wr_bind_mw: the window, whose key goes back if not posted
  };
  std::mutex mu;  // held from wr_start to wr_complete / wr_abort
  std::vector<Pending> wrs;
  std::vector<Sge> sges;
  std::vector<uint8_t> inline_buf;
  std::vector<SendWr> out;
  int err = 0;
};

struct SrQp {
  ibv_qp_ex qpx;  // qpx.qp_base is the ibv_qp
  Device* dev;
  QueuePair* q;
  SrContext* ctx;
  WrBuilder* wb;  // only with IBV_QP_INIT_ATTR_SEND_OPS_FLAGS
  bool is_ex;
};
static_assert(std::is_standard_layout_v<SrQp>);

inline SrPd* to_pd(ibv_pd* p) { return reinterpret_cast<SrPd*>(p); }
inline SrMr* to_mr(ibv_mr* p) { return reinterpret_cast<SrMr*>(p); }
inline SrMw* to_mw(ibv_mw* p) { return reinterpret_cast<SrMw*>(p); }
inline SrCq* to_cq(ibv_cq* p) { return reinterpret_cast<SrCq*>(p); }
inline SrCq* to_cq(ibv_cq_ex* p) { return reinterpret_cast<SrCq*>(p); }
inline SrSrq* to_srq(ibv_srq* p) { return reinterpret_cast<SrSrq*>(p); }
inline SrAh* to_ah(ibv_ah* p) { return reinterpret_cast<SrAh*>(p); }
inline SrQp* to_qp(ibv_qp* p) { return reinterpret_cast<SrQp*>(p); }
inline SrQp* to_qp(ibv_qp_ex* p) { return reinterpret_cast<SrQp*>(p); }
inline SrChannel* to_channel(ibv_comp_channel* p) { return reinterpret_cast<SrChannel*>(p); }

// ---- shared helpers (implemented in the .cc files named) ------------------------------------

// context.cc
void push_async_event(SrContext* ctx, const ibv_async_event& ev);
void purge_async_events(SrContext* ctx, const void* object);
uint32_t gid_table_len();
bool query_gid_bytes(SrContext* ctx, uint8_t port, int index, uint8_t out[16]);  // false: bad port/index

// datapath.cc: the ctx->ops fast paths and the extended CQ / QP function tables.
int post_send(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad);
int post_recv(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** bad);
int post_srq_recv(ibv_srq* srq, ibv_recv_wr* wr, ibv_recv_wr** bad);
int poll_cq(ibv_cq* cq, int n, ibv_wc* wc);
int req_notify_cq(ibv_cq* cq, int solicited_only);
void init_cq_ex_ops(SrCq* cq);
void init_qp_ex_ops(SrQp* qp, uint64_t send_ops_flags);
int resize_cq_stash(SrCq* cq, int cqe);  // takes the ring's completions aside; returns how many are unpolled
// Drops a QP's completions from a CQ (on reset and destroy, as HCA providers clean their CQs).
void purge_cq(SrCq* cq, uint32_t qpn);

// objects_mr.cc: access flags of regions and windows (0 or the errno of a refusal) and their
// adapter form.
int check_access(unsigned access);      // ibv_reg_mr / rereg / registration WRs
int check_mw_access(unsigned access);   // ibv_mw_bind_info.mw_access_flags
uint32_t region_access(unsigned access);
uint32_t window_access(unsigned access);
// objects_mw.cc: memory windows and ibv_advise_mr, placed in ctx->ops / the verbs_context.
ibv_mw* alloc_mw(ibv_pd* pd, ibv_mw_type type);
int dealloc_mw(ibv_mw* mw);
int bind_mw(ibv_qp* qp, ibv_mw* mw, ibv_mw_bind* bind);
int advise_mr(ibv_pd* pd, ibv_advise_mr_advice advice, uint32_t flags, ibv_sge* sg_list, uint32_t num_sge);

// objects.cc: used by context close to release what a program left behind.
void destroy_all_objects(SrContext* ctx);
// extended verbs placed in the verbs_context
ibv_cq_ex* create_cq_ex(ibv_context* ctx, ibv_cq_init_attr_ex* attr);
ibv_qp* create_qp_ex(ibv_context* ctx, ibv_qp_init_attr_ex* attr);
ibv_srq* create_srq_ex(ibv_context* ctx, ibv_srq_init_attr_ex* attr);
ibv_pd* alloc_parent_domain(ibv_context* ctx, ibv_parent_domain_init_attr* attr);
ibv_td* alloc_td(ibv_context* ctx, ibv_td_init_attr* attr);
int dealloc_td(ibv_td* td);

// Limits the verbs layer reports (and enforces) on top of the Device's.
inline constexpr uint32_t kMaxCqe = 65535;
inline constexpr uint32_t kMinCqRing = 1023;  // ring headroom so ibv_resize_cq can grow small CQs
inline constexpr int kNumCompVectors = 1;
inline constexpr uint32_t kGidTableLen = 16;

}  // namespace softrdma::verbs
