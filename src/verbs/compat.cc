// The rest of Debian's libibverbs.so.1 ABI: string and rate helpers, the kernel-structure copy
// helpers librdmacm uses, the IBVERBS_1.0 compat twins, and the provider-private
// IBVERBS_PRIVATE_34 interface, which has no meaning without a kernel driver and fails cleanly.
#include <endian.h>
#include <rdma/ib_user_sa.h>
#include <rdma/ib_user_verbs.h>
#include <infiniband/sa.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "verbs/internal.h"

// ---- strings -----------------------------------------------------------------------------------

SR_EXPORT const char* ibv_node_type_str(ibv_node_type t) {
  switch (t) {
    case IBV_NODE_CA: return "InfiniBand channel adapter";
    case IBV_NODE_SWITCH: return "InfiniBand switch";
    case IBV_NODE_ROUTER: return "InfiniBand router";
    case IBV_NODE_RNIC: return "iWARP NIC";
    case IBV_NODE_USNIC: return "usNIC";
    case IBV_NODE_USNIC_UDP: return "usNIC UDP";
    case IBV_NODE_UNSPECIFIED: return "unspecified";
    default: return "unknown";
  }
}

SR_EXPORT const char* ibv_port_state_str(ibv_port_state s) {
  switch (s) {
    case IBV_PORT_NOP: return "PORT_NOP";
    case IBV_PORT_DOWN: return "PORT_DOWN";
    case IBV_PORT_INIT: return "PORT_INIT";
    case IBV_PORT_ARMED: return "PORT_ARMED";
    case IBV_PORT_ACTIVE: return "PORT_ACTIVE";
    case IBV_PORT_ACTIVE_DEFER: return "PORT_ACTIVE_DEFER";
    default: return "invalid state";
  }
}

SR_EXPORT const char* ibv_event_type_str(ibv_event_type e) {
  switch (e) {
    case IBV_EVENT_CQ_ERR: return "CQ error";
    case IBV_EVENT_QP_FATAL: return "local work queue catastrophic error";
    case IBV_EVENT_QP_REQ_ERR: return "invalid request local work queue error";
    case IBV_EVENT_QP_ACCESS_ERR: return "local access violation work queue error";
    case IBV_EVENT_COMM_EST: return "communication established";
    case IBV_EVENT_SQ_DRAINED: return "send queue drained";
    case IBV_EVENT_PATH_MIG: return "path migrated";
    case IBV_EVENT_PATH_MIG_ERR: return "path migration request error";
    case IBV_EVENT_DEVICE_FATAL: return "local catastrophic error";
    case IBV_EVENT_PORT_ACTIVE: return "port active";
    case IBV_EVENT_PORT_ERR: return "port error";
    case IBV_EVENT_LID_CHANGE: return "LID change";
    case IBV_EVENT_PKEY_CHANGE: return "P_Key change";
    case IBV_EVENT_SM_CHANGE: return "SM change";
    case IBV_EVENT_SRQ_ERR: return "SRQ catastrophic error";
    case IBV_EVENT_SRQ_LIMIT_REACHED: return "SRQ limit reached";
    case IBV_EVENT_QP_LAST_WQE_REACHED: return "last WQE reached";
    case IBV_EVENT_CLIENT_REREGISTER: return "client reregistration";
    case IBV_EVENT_GID_CHANGE: return "GID table change";
    case IBV_EVENT_WQ_FATAL: return "WQ fatal";
    default: return "unknown";
  }
}

SR_EXPORT const char* ibv_wc_status_str(ibv_wc_status s) {
  switch (s) {
    case IBV_WC_SUCCESS: return "success";
    case IBV_WC_LOC_LEN_ERR: return "local length error";
    case IBV_WC_LOC_QP_OP_ERR: return "local QP operation error";
    case IBV_WC_LOC_EEC_OP_ERR: return "local EE context operation error";
    case IBV_WC_LOC_PROT_ERR: return "local protection error";
    case IBV_WC_WR_FLUSH_ERR: return "Work Request Flushed Error";
    case IBV_WC_MW_BIND_ERR: return "memory window bind error";
    case IBV_WC_BAD_RESP_ERR: return "bad response error";
    case IBV_WC_LOC_ACCESS_ERR: return "local access error";
    case IBV_WC_REM_INV_REQ_ERR: return "remote invalid request error";
    case IBV_WC_REM_ACCESS_ERR: return "remote access error";
    case IBV_WC_REM_OP_ERR: return "remote operation error";
    case IBV_WC_RETRY_EXC_ERR: return "transport retry counter exceeded";
    case IBV_WC_RNR_RETRY_EXC_ERR: return "RNR retry counter exceeded";
    case IBV_WC_LOC_RDD_VIOL_ERR: return "local RDD violation error";
    case IBV_WC_REM_INV_RD_REQ_ERR: return "remote invalid RD request";
    case IBV_WC_REM_ABORT_ERR: return "aborted error";
    case IBV_WC_INV_EECN_ERR: return "invalid EE context number";
    case IBV_WC_INV_EEC_STATE_ERR: return "invalid EE context state";
    case IBV_WC_FATAL_ERR: return "fatal error";
    case IBV_WC_RESP_TIMEOUT_ERR: return "response timeout error";
    case IBV_WC_GENERAL_ERR: return "general error";
    case IBV_WC_TM_ERR: return "tag matching error";
    case IBV_WC_TM_RNDV_INCOMPLETE: return "tag matching rendezvous incomplete";
    default: return "unknown";
  }
}

// ---- rates -------------------------------------------------------------------------------------

namespace {
// Each rate: its nominal speed as a multiple of 2.5 Gb/s (-1 when it is not one) and its
// data rate in Mb/s (the 64b/66b-coded rates have their exact values).
struct RateRow {
  ibv_rate rate;
  int mult;
  int mbps;
};
constexpr RateRow kRates[] = {
    {IBV_RATE_2_5_GBPS, 1, 2500},      {IBV_RATE_5_GBPS, 2, 5000},        {IBV_RATE_10_GBPS, 4, 10000},
    {IBV_RATE_20_GBPS, 8, 20000},      {IBV_RATE_30_GBPS, 12, 30000},     {IBV_RATE_40_GBPS, 16, 40000},
    {IBV_RATE_60_GBPS, 24, 60000},     {IBV_RATE_80_GBPS, 32, 80000},     {IBV_RATE_120_GBPS, 48, 120000},
    {IBV_RATE_14_GBPS, -1, 14062},     {IBV_RATE_56_GBPS, -1, 56250},     {IBV_RATE_112_GBPS, -1, 112500},
    {IBV_RATE_168_GBPS, -1, 168750},   {IBV_RATE_25_GBPS, 10, 25781},     {IBV_RATE_100_GBPS, 40, 103125},
    {IBV_RATE_200_GBPS, 80, 206250},   {IBV_RATE_300_GBPS, 120, 309375},  {IBV_RATE_28_GBPS, -1, 28125},
    {IBV_RATE_50_GBPS, 20, 53125},     {IBV_RATE_400_GBPS, 160, 425000},  {IBV_RATE_600_GBPS, 240, 637500},
    {IBV_RATE_800_GBPS, 320, 850000},  {IBV_RATE_1200_GBPS, 480, 1275000},
};
}  // namespace

SR_EXPORT int ibv_rate_to_mult(ibv_rate rate) {
  for (const auto& r : kRates)
    if (r.rate == rate) return r.mult;
  return -1;
}

SR_EXPORT ibv_rate mult_to_ibv_rate(int mult) {
  if (mult <= 0) return IBV_RATE_MAX;
  for (const auto& r : kRates)
    if (r.mult == mult) return r.rate;
  return IBV_RATE_MAX;
}

SR_EXPORT int ibv_rate_to_mbps(ibv_rate rate) {
  for (const auto& r : kRates)
    if (r.rate == rate) return r.mbps;
  return -1;
}

SR_EXPORT ibv_rate mbps_to_ibv_rate(int mbps) {
  if (mbps <= 0) return IBV_RATE_MAX;
  for (const auto& r : kRates)
    if (r.mbps == mbps) return r.rate;
  return IBV_RATE_MAX;
}

// ---- kernel structure copies (librdmacm) --------------------------------------------------------

SR_EXPORT void ibv_copy_ah_attr_from_kern(ibv_ah_attr* dst, ib_uverbs_ah_attr* src) {
  std::memcpy(dst->grh.dgid.raw, src->grh.dgid, sizeof dst->grh.dgid);
  dst->grh.flow_label = src->grh.flow_label;
  dst->grh.sgid_index = src->grh.sgid_index;
  dst->grh.hop_limit = src->grh.hop_limit;
  dst->grh.traffic_class = src->grh.traffic_class;
  dst->dlid = src->dlid;
  dst->sl = src->sl;
  dst->src_path_bits = src->src_path_bits;
  dst->static_rate = src->static_rate;
  dst->is_global = src->is_global;
  dst->port_num = src->port_num;
}

SR_EXPORT void ibv_copy_qp_attr_from_kern(ibv_qp_attr* dst, ib_uverbs_qp_attr* src) {
  dst->cur_qp_state = static_cast<ibv_qp_state>(src->cur_qp_state);
  dst->path_mtu = static_cast<ibv_mtu>(src->path_mtu);
  dst->path_mig_state = static_cast<ibv_mig_state>(src->path_mig_state);
  dst->qkey = src->qkey;
  dst->rq_psn = src->rq_psn;
  dst->sq_psn = src->sq_psn;
  dst->dest_qp_num = src->dest_qp_num;
  dst->qp_access_flags = src->qp_access_flags;
  dst->cap.max_send_wr = src->max_send_wr;
  dst->cap.max_recv_wr = src->max_recv_wr;
  dst->cap.max_send_sge = src->max_send_sge;
  dst->cap.max_recv_sge = src->max_recv_sge;
  dst->cap.max_inline_data = src->max_inline_data;
  ibv_copy_ah_attr_from_kern(&dst->ah_attr, &src->ah_attr);
  ibv_copy_ah_attr_from_kern(&dst->alt_ah_attr, &src->alt_ah_attr);
  dst->pkey_index = src->pkey_index;
  dst->alt_pkey_index = src->alt_pkey_index;
  dst->en_sqd_async_notify = src->en_sqd_async_notify;
  dst->sq_draining = src->sq_draining;
  dst->max_rd_atomic = src->max_rd_atomic;
  dst->max_dest_rd_atomic = src->max_dest_rd_atomic;
  dst->min_rnr_timer = src->min_rnr_timer;
  dst->port_num = src->port_num;
  dst->timeout = src->timeout;
  dst->retry_cnt = src->retry_cnt;
  dst->rnr_retry = src->rnr_retry;
  dst->alt_port_num = src->alt_port_num;
  dst->alt_timeout = src->alt_timeout;
}

// The scalar fields of a path record have the same names in the verbs and the kernel layout.
template <typename To, typename From>
void copy_path_rec_fields(To* dst, const From* src) {
  dst->dlid = src->dlid;
  dst->slid = src->slid;
  dst->raw_traffic = static_cast<decltype(dst->raw_traffic)>(src->raw_traffic);
  dst->flow_label = src->flow_label;
  dst->hop_limit = src->hop_limit;
  dst->traffic_class = src->traffic_class;
  dst->reversible = static_cast<decltype(dst->reversible)>(src->reversible);
  dst->numb_path = src->numb_path;
  dst->pkey = src->pkey;
  dst->sl = src->sl;
  dst->mtu_selector = src->mtu_selector;
  dst->mtu = src->mtu;
  dst->rate_selector = src->rate_selector;
  dst->rate = src->rate;
  dst->packet_life_time_selector = src->packet_life_time_selector;
  dst->packet_life_time = src->packet_life_time;
  dst->preference = src->preference;
}

SR_EXPORT void ibv_copy_path_rec_from_kern(ibv_sa_path_rec* dst, ib_user_path_rec* src) {
  std::memcpy(dst->dgid.raw, src->dgid, sizeof dst->dgid);
  std::memcpy(dst->sgid.raw, src->sgid, sizeof dst->sgid);
  copy_path_rec_fields(dst, src);
}

SR_EXPORT void ibv_copy_path_rec_to_kern(ib_user_path_rec* dst, ibv_sa_path_rec* src) {
  std::memcpy(dst->dgid, src->dgid.raw, sizeof src->dgid);
  std::memcpy(dst->sgid, src->sgid.raw, sizeof src->sgid);
  copy_path_rec_fields(dst, src);
}

// ---- fork and Ethernet helpers that providers call ----------------------------------------------

SR_EXPORT int ibv_dontfork_range(void*, size_t) { return 0; }
SR_EXPORT int ibv_dofork_range(void*, size_t) { return 0; }

// A neighbour lookup for hardware that needs the peer's MAC; we address peers by IP.
SR_EXPORT int ibv_resolve_eth_l2_from_gid(ibv_context*, ibv_ah_attr*, uint8_t[6], uint16_t*) { return -EOPNOTSUPP; }

// ---- IBVERBS_1.0 compat twins --------------------------------------------------------------------
// libibverbs 1.0's ABI took struct ibv_device_1_0 / ibv_context_1_0 wrappers. Nothing built in
// the last fifteen years links to these versions; they exist so the version set is complete.

#define SR_COMPAT_PTR(name)                                        \
  SR_EXPORT void* sr_##name##_1_0() {                              \
    errno = EOPNOTSUPP;                                            \
    return nullptr;                                                \
  }                                                                \
  SR_SYMVER(sr_##name##_1_0, ibv_##name@IBVERBS_1.0);
#define SR_COMPAT_INT(name)                                        \
  SR_EXPORT int sr_##name##_1_0() {                                \
    errno = EOPNOTSUPP;                                            \
    return -1;                                                     \
  }                                                                \
  SR_SYMVER(sr_##name##_1_0, ibv_##name@IBVERBS_1.0);
#define SR_COMPAT_VOID(name)                                       \
  SR_EXPORT void sr_##name##_1_0() {}                              \
  SR_SYMVER(sr_##name##_1_0, ibv_##name@IBVERBS_1.0);

SR_COMPAT_PTR(alloc_pd)
SR_COMPAT_PTR(create_ah)
SR_COMPAT_PTR(create_cq)
SR_COMPAT_PTR(create_qp)
SR_COMPAT_PTR(create_srq)
SR_COMPAT_PTR(get_device_list)
SR_COMPAT_PTR(get_device_name)
SR_COMPAT_PTR(open_device)
SR_COMPAT_PTR(reg_mr)
SR_COMPAT_VOID(ack_async_event)
SR_COMPAT_VOID(ack_cq_events)
SR_COMPAT_VOID(free_device_list)
SR_COMPAT_INT(attach_mcast)
SR_COMPAT_INT(close_device)
SR_COMPAT_INT(dealloc_pd)
SR_COMPAT_INT(dereg_mr)
SR_COMPAT_INT(destroy_ah)
SR_COMPAT_INT(destroy_cq)
SR_COMPAT_INT(destroy_qp)
SR_COMPAT_INT(destroy_srq)
SR_COMPAT_INT(detach_mcast)
SR_COMPAT_INT(get_async_event)
SR_COMPAT_INT(get_cq_event)
SR_COMPAT_INT(modify_qp)
SR_COMPAT_INT(modify_srq)
SR_COMPAT_INT(query_device)
SR_COMPAT_INT(query_gid)
SR_COMPAT_INT(query_pkey)
SR_COMPAT_INT(query_port)
SR_COMPAT_INT(query_qp)
SR_COMPAT_INT(query_srq)
SR_COMPAT_INT(resize_cq)

SR_EXPORT uint64_t sr_get_device_guid_1_0() { return 0; }
SR_SYMVER(sr_get_device_guid_1_0, ibv_get_device_guid@IBVERBS_1.0);

// Pre-1.1 driver registration: nothing to register with.
SR_EXPORT void sr_register_driver_1_1(const char*, void*) {}
SR_SYMVER(sr_register_driver_1_1, ibv_register_driver@IBVERBS_1.1);

// ---- IBVERBS_PRIVATE_34: the provider interface --------------------------------------------------
// libmlx5 and libefa (which perftest and pyverbs load) import these; their constructors call
// verbs_register_driver_34, and their dv functions answer "not my device" for ours, so nothing
// else here is reached. Kernel commands fail with EOPNOTSUPP.

#define SR_NO_KERNEL(name) \
  SR_EXPORT int name() { return EOPNOTSUPP; }

SR_NO_KERNEL(ibv_cmd_advise_mr)
SR_NO_KERNEL(ibv_cmd_alloc_dm)
SR_NO_KERNEL(ibv_cmd_alloc_mw)
SR_NO_KERNEL(ibv_cmd_alloc_pd)
SR_NO_KERNEL(ibv_cmd_attach_mcast)
SR_NO_KERNEL(ibv_cmd_close_xrcd)
SR_NO_KERNEL(ibv_cmd_create_ah)
SR_NO_KERNEL(ibv_cmd_create_counters)
SR_NO_KERNEL(ibv_cmd_create_cq)
SR_NO_KERNEL(ibv_cmd_create_cq_ex)
SR_NO_KERNEL(ibv_cmd_create_flow)
SR_NO_KERNEL(ibv_cmd_create_flow_action_esp)
SR_NO_KERNEL(ibv_cmd_create_qp)
SR_NO_KERNEL(ibv_cmd_create_qp_ex2)
SR_NO_KERNEL(ibv_cmd_create_qp_ex)
SR_NO_KERNEL(ibv_cmd_create_rwq_ind_table)
SR_NO_KERNEL(ibv_cmd_create_srq)
SR_NO_KERNEL(ibv_cmd_create_srq_ex)
SR_NO_KERNEL(ibv_cmd_create_wq)
SR_NO_KERNEL(ibv_cmd_dealloc_mw)
SR_NO_KERNEL(ibv_cmd_dealloc_pd)
SR_NO_KERNEL(ibv_cmd_dereg_mr)
SR_NO_KERNEL(ibv_cmd_destroy_ah)
SR_NO_KERNEL(ibv_cmd_destroy_counters)
SR_NO_KERNEL(ibv_cmd_destroy_cq)
SR_NO_KERNEL(ibv_cmd_destroy_flow)
SR_NO_KERNEL(ibv_cmd_destroy_flow_action)
SR_NO_KERNEL(ibv_cmd_destroy_qp)
SR_NO_KERNEL(ibv_cmd_destroy_rwq_ind_table)
SR_NO_KERNEL(ibv_cmd_destroy_srq)
SR_NO_KERNEL(ibv_cmd_destroy_wq)
SR_NO_KERNEL(ibv_cmd_detach_mcast)
SR_NO_KERNEL(ibv_cmd_free_dm)
SR_NO_KERNEL(ibv_cmd_get_context)
SR_NO_KERNEL(ibv_cmd_modify_cq)
SR_NO_KERNEL(ibv_cmd_modify_flow_action_esp)
SR_NO_KERNEL(ibv_cmd_modify_qp)
SR_NO_KERNEL(ibv_cmd_modify_qp_ex)
SR_NO_KERNEL(ibv_cmd_modify_srq)
SR_NO_KERNEL(ibv_cmd_modify_wq)
SR_NO_KERNEL(ibv_cmd_open_qp)
SR_NO_KERNEL(ibv_cmd_open_xrcd)
SR_NO_KERNEL(ibv_cmd_poll_cq)
SR_NO_KERNEL(ibv_cmd_post_recv)
SR_NO_KERNEL(ibv_cmd_post_send)
SR_NO_KERNEL(ibv_cmd_post_srq_recv)
SR_NO_KERNEL(ibv_cmd_query_context)
SR_NO_KERNEL(ibv_cmd_query_device_any)
SR_NO_KERNEL(ibv_cmd_query_mr)
SR_NO_KERNEL(ibv_cmd_query_port)
SR_NO_KERNEL(ibv_cmd_query_qp)
SR_NO_KERNEL(ibv_cmd_query_srq)
SR_NO_KERNEL(ibv_cmd_read_counters)
SR_NO_KERNEL(ibv_cmd_reg_dm_mr)
SR_NO_KERNEL(ibv_cmd_reg_dmabuf_mr)
SR_NO_KERNEL(ibv_cmd_reg_mr)
SR_NO_KERNEL(ibv_cmd_req_notify_cq)
SR_NO_KERNEL(ibv_cmd_rereg_mr)
SR_NO_KERNEL(ibv_cmd_resize_cq)
SR_NO_KERNEL(execute_ioctl)

SR_EXPORT unsigned int __ioctl_final_num_attrs(unsigned int num_attrs, void*) { return num_attrs; }

SR_EXPORT void __verbs_log(void*, uint32_t, const char*, ...) {}

// A provider's context constructor: there is no kernel context to build on. Its contract is to
// consume cmd_fd.
SR_EXPORT void* _verbs_init_and_alloc_context(ibv_device*, int cmd_fd, size_t, void*, uint32_t) {
  if (cmd_fd >= 0) close(cmd_fd);
  errno = EOPNOTSUPP;
  return nullptr;
}

SR_EXPORT ibv_context* verbs_open_device(ibv_device*, void*) {
  errno = EOPNOTSUPP;
  return nullptr;
}

SR_EXPORT void verbs_register_driver_34(const void*) {}
SR_EXPORT void verbs_set_ops(void*, const void*) {}
SR_EXPORT void verbs_uninit_context(void*) {}

SR_EXPORT void verbs_init_cq(ibv_cq* cq, ibv_context* context, ibv_comp_channel* channel, void* cq_context) {
  if (cq == nullptr) return;
  cq->context = context;
  cq->channel = channel;
  if (channel != nullptr && context != nullptr) {
    pthread_mutex_lock(&context->mutex);
    ++channel->refcnt;
    pthread_mutex_unlock(&context->mutex);
  }
  cq->cq_context = cq_context;
  cq->comp_events_completed = 0;
  cq->async_events_completed = 0;
  pthread_mutex_init(&cq->mutex, nullptr);
  pthread_cond_init(&cq->cond, nullptr);
}

SR_EXPORT int ibv_read_ibdev_sysfs_file(char*, size_t, void*, const char*, ...) {
  errno = EOPNOTSUPP;
  return -1;
}

extern "C" {
__attribute__((visibility("default"))) bool verbs_allow_disassociate_destroy = false;
}
