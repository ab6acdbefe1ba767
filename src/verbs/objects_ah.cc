// Address handles (including those made from a received work completion's GRH area) and
// multicast, which this device does not offer.
#include <arpa/inet.h>
#include <endian.h>

#include <cerrno>
#include <cstring>

#include "verbs/objects_shared.h"

using namespace softrdma;
using namespace softrdma::verbs;

// ---- AH -----------------------------------------------------------------------------------------

SR_EXPORT ibv_ah* sr_create_ah_1_1(ibv_pd* pd, ibv_ah_attr* attr) {
  if (pd == nullptr || attr == nullptr) return fail<ibv_ah>(EINVAL);
  SrContext* ctx = to_ctx(pd->context);
  AddressVector av;
  if (int rc = to_av(ctx, *attr, &av)) return fail<ibv_ah>(rc);
  int err = 0;
  AddressHandle* a = ctx->dev->create_ah(to_pd(pd)->p, av, &err);
  if (a == nullptr) return fail<ibv_ah>(err != 0 ? err : ENOMEM);
  auto* ah = new SrAh{};
  ah->a = a;
  ah->ah.context = pd->context;
  ah->ah.pd = pd;
  ah->ah.handle = next_handle++;
  pd_use(pd);
  track(ctx, &CtxState::ahs, ah);
  return &ah->ah;
}
SR_SYMVER(sr_create_ah_1_1, ibv_create_ah@@IBVERBS_1.1);

SR_EXPORT int sr_destroy_ah_1_1(ibv_ah* ibah) {
  if (ibah == nullptr) return EINVAL;
  SrAh* ah = to_ah(ibah);
  SrContext* ctx = to_ctx(ibah->context);
  if (int rc = ctx->dev->destroy_ah(ah->a)) return rc;
  pd_unuse(ibah->pd);
  untrack(ctx, &CtxState::ahs, ah);
  delete ah;
  return 0;
}
SR_SYMVER(sr_destroy_ah_1_1, ibv_destroy_ah@@IBVERBS_1.1);

// The 40-byte GRH area of a UD receive: for RoCEv2 over IPv4 the IPv4 header sits in its last
// 20 bytes (20..39); over IPv6 it is the IPv6 header, laid out like a GRH.
SR_EXPORT int ibv_init_ah_from_wc(ibv_context* c, uint8_t port, ibv_wc* wc, ibv_grh* grh, ibv_ah_attr* ah) {
  if (c == nullptr || wc == nullptr || ah == nullptr) {
    errno = EINVAL;
    return -1;
  }
  SrContext* ctx = to_ctx(c);
  *ah = ibv_ah_attr{};
  ah->dlid = wc->slid;
  ah->sl = wc->sl;
  ah->src_path_bits = wc->dlid_path_bits;
  ah->port_num = port;
  if (!(wc->wc_flags & IBV_WC_GRH) || grh == nullptr) {
    errno = EINVAL;  // RoCE needs the GRH to address the sender
    return -1;
  }
  const auto* b = reinterpret_cast<const uint8_t*>(grh);
  uint8_t src[16] = {}, dst[16] = {};
  if ((b[20] >> 4) == 4) {
    src[10] = src[11] = dst[10] = dst[11] = 0xff;
    std::memcpy(src + 12, b + 32, 4);
    std::memcpy(dst + 12, b + 36, 4);
    ah->grh.traffic_class = b[21];
  } else {
    std::memcpy(src, grh->sgid.raw, 16);
    std::memcpy(dst, grh->dgid.raw, 16);
    uint32_t vtf = be32toh(grh->version_tclass_flow);
    ah->grh.traffic_class = static_cast<uint8_t>(vtf >> 20);
    ah->grh.flow_label = vtf & 0xfffff;
  }
  // The source GID index is the one of ours that the packet was sent to.
  int sgid_index = -1;
  for (uint32_t i = 0; i < gid_table_len() && sgid_index < 0; ++i) {
    uint8_t g[16];
    if (query_gid_bytes(ctx, port, static_cast<int>(i), g) && std::memcmp(g, dst, 16) == 0)
      sgid_index = static_cast<int>(i);
  }
  if (sgid_index < 0) {
    errno = ENOENT;
    return -1;
  }
  ah->is_global = 1;
  std::memcpy(ah->grh.dgid.raw, src, 16);
  ah->grh.sgid_index = static_cast<uint8_t>(sgid_index);
  ah->grh.hop_limit = 0xff;
  return 0;
}

SR_EXPORT ibv_ah* ibv_create_ah_from_wc(ibv_pd* pd, ibv_wc* wc, ibv_grh* grh, uint8_t port) {
  if (pd == nullptr) return fail<ibv_ah>(EINVAL);
  ibv_ah_attr attr;
  if (ibv_init_ah_from_wc(pd->context, port, wc, grh, &attr) != 0) return nullptr;
  return sr_create_ah_1_1(pd, &attr);
}

// ---- multicast ----------------------------------------------------------------------------------

// max_mcast_grp is 0: no multicast groups.
SR_EXPORT int sr_attach_mcast_1_1(ibv_qp*, const ibv_gid*, uint16_t) { return EOPNOTSUPP; }
SR_SYMVER(sr_attach_mcast_1_1, ibv_attach_mcast@@IBVERBS_1.1);
SR_EXPORT int sr_detach_mcast_1_1(ibv_qp*, const ibv_gid*, uint16_t) { return EOPNOTSUPP; }
SR_SYMVER(sr_detach_mcast_1_1, ibv_detach_mcast@@IBVERBS_1.1);
