/*
 * softrdma extensions to the verbs API (plain C; usable from C and C++).
 *
 * softrdma's libibverbs.so.1 exports exactly the symbols of Debian's rdma-core 44 library, so
 * everything here is a macro or a static inline function over ordinary verbs: a program built
 * with this header links against any libibverbs. On another device the flags below are ignored
 * (they lie in IBV_ACCESS_OPTIONAL_RANGE, or are create flags a provider refuses) and the fast
 * registration calls fail; softrdma_is_device() tells the cases apart.
 *
 *   #include <infiniband/verbs.h>
 *   #include <softrdma/verbs_ext.h>
 *
 * What the extensions are (see src/verbs/README.md for examples):
 *
 * - One-touch memory: SOFTRDMA_ACCESS_ONE_TOUCH in ibv_reg_mr's access, or in a window bind's
 *   mw_access_flags. The region (window) serves exactly one incoming RDMA message (a WRITE, a
 *   READ, or an atomic); once that message is placed it is invalid, and any later message
 *   naming it fails at the requester with IBV_WC_REM_ACCESS_ERR.
 *
 * - Fast registration through the send queue: softrdma_alloc_fast_reg_mr() makes a region
 *   with room for max_pages pages of 4 KiB and no memory behind it (its keys reach nothing);
 *   a SOFTRDMA_WR_REG_MR work request (built with softrdma_wr_reg_mr()) registers process
 *   memory in it under a new key when the send queue reaches it, so the WRs after it may
 *   already use that key; it completes with opcode SOFTRDMA_WC_REG_MR. IBV_WR_LOCAL_INV (or a
 *   peer's IBV_WR_SEND_WITH_INV) invalidates it again, after which it can be registered anew.
 *
 * - What a failed send WR does to an RC QP: SOFTRDMA_QP_CREATE_DRAIN_SQ_ON_ERROR in
 *   ibv_qp_init_attr_ex.create_flags (with IBV_QP_INIT_ATTR_CREATE_FLAGS) moves the QP to
 *   IBV_QPS_SQE instead of IBV_QPS_ERR when a WR fails before it is sent (a bad lkey, a
 *   failed bind or registration): the failed WR completes with its error, later send WRs are
 *   flushed, receives go on working, and ibv_modify_qp(IBV_QPS_RTS) resumes the send queue.
 *   SOFTRDMA_QP_CREATE_ERROR_QP_ON_ERROR asks for IBV_QPS_ERR (the default of RC; UC and UD
 *   default to SQE, as the IBA specifies).
 */
#ifndef SOFTRDMA_VERBS_EXT_H
#define SOFTRDMA_VERBS_EXT_H

#include <stddef.h>
#include <stdint.h>

#include <infiniband/verbs.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ibv_device_attr.vendor_id of softrdma devices. */
#define SOFTRDMA_VENDOR_ID 0x534f46u

/* Access flags (ibv_access_flags), both in IBV_ACCESS_OPTIONAL_RANGE. */
#define SOFTRDMA_ACCESS_FAST_REG (1u << 28)  /* with addr NULL: a fast-registration region */
#define SOFTRDMA_ACCESS_ONE_TOUCH (1u << 29) /* the region / window serves one RDMA message */

/* QP create flags (ibv_qp_init_attr_ex.create_flags), above every IBV_QP_CREATE_* flag. */
#define SOFTRDMA_QP_CREATE_DRAIN_SQ_ON_ERROR (1u << 30)
#define SOFTRDMA_QP_CREATE_ERROR_QP_ON_ERROR (1u << 31)

/* Fast registration: the work request opcode and its completion opcode. */
#define SOFTRDMA_WR_REG_MR IBV_WR_DRIVER1
#define SOFTRDMA_WC_REG_MR IBV_WC_DRIVER1
/* Fast-registration regions are made of pages of this size. */
#define SOFTRDMA_FAST_REG_PAGE_SHIFT 12
#define SOFTRDMA_FAST_REG_PAGE_SIZE (1u << SOFTRDMA_FAST_REG_PAGE_SHIFT)

/* 1 when ctx is a softrdma device, 0 when it is another device, -1 when the query fails. */
static inline int softrdma_is_device(struct ibv_context *ctx) {
  struct ibv_device_attr attr;
  if (ibv_query_device(ctx, &attr) != 0) return -1;
  return attr.vendor_id == SOFTRDMA_VENDOR_ID;
}

/*
 * A fast-registration region of pd with room for max_pages pages of 4 KiB (1 to 2^20). Its
 * lkey/rkey are valid keys that reach nothing until a SOFTRDMA_WR_REG_MR work request
 * registers memory under a new key. Freed with ibv_dereg_mr(). NULL with errno on failure
 * (EINVAL for 0 or too many pages; on another device whatever its ibv_reg_mr says).
 */
static inline struct ibv_mr *softrdma_alloc_fast_reg_mr(struct ibv_pd *pd, uint32_t max_pages) {
  return ibv_reg_mr(pd, NULL, (size_t)max_pages << SOFTRDMA_FAST_REG_PAGE_SHIFT, SOFTRDMA_ACCESS_FAST_REG);
}

/*
 * Makes *wr a registration of the fast-registration region mr, under new_key (mr's key with a
 * new low byte: ibv_inc_rkey(mr->lkey)), at address iova (0 with IBV_ACCESS_ZERO_BASED), with
 * access rights `access` (IBV_ACCESS_LOCAL_WRITE, _REMOTE_*, _ZERO_BASED, _MW_BIND,
 * SOFTRDMA_ACCESS_ONE_TOUCH). The caller sets wr_id, send_flags (not IBV_SEND_INLINE), next,
 * and sg_list/num_sge: the process memory to register, as runs (addr, length; lkey unused) laid
 * end to end at iova; every run after the first starts on a 4 KiB boundary and every run before
 * the last ends on one; at most the QP's max_send_sge runs; pages in total at most the region's
 * max_pages.
 *
 * The encoding uses the bind_mw members of struct ibv_send_wr (mw NULL): bind_info.mr is the
 * region, rkey the new key, bind_info.addr the iova, bind_info.mw_access_flags the access;
 * bind_info.length is unused (the runs give the length).
 *
 * When ibv_post_send() accepts the WR, the library sets mr->lkey and mr->rkey to new_key (and
 * mr->addr / mr->length to iova and the registered length): later WRs may name new_key at once,
 * since the send queue executes in order. The next registration needs an invalidation first
 * (IBV_WR_LOCAL_INV of new_key, or a peer's IBV_WR_SEND_WITH_INV).
 */
static inline void softrdma_wr_reg_mr(struct ibv_send_wr *wr, struct ibv_mr *mr, uint32_t new_key, uint64_t iova,
                                      unsigned int access) {
  wr->opcode = (enum ibv_wr_opcode)SOFTRDMA_WR_REG_MR;
  wr->bind_mw.mw = NULL;
  wr->bind_mw.rkey = new_key;
  wr->bind_mw.bind_info.mr = mr;
  wr->bind_mw.bind_info.addr = iova;
  wr->bind_mw.bind_info.length = 0;
  wr->bind_mw.bind_info.mw_access_flags = access;
}

#ifdef __cplusplus
}
#endif

#endif /* SOFTRDMA_VERBS_EXT_H */
