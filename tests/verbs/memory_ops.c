/*
 * Memory operations through the verbs API, written like a user program: against
 * <infiniband/verbs.h> and softrdma's <softrdma/verbs_ext.h> only, linked against the system's
 * libibverbs (Debian's libibverbs-dev), and run on softrdma's libibverbs.so.1 found through
 * LD_LIBRARY_PATH (tests/verbs/user_program.sh checks that).
 *
 *   memory_ops [-d DEVICE] [-v] [SECTION...]
 *
 * Side A and side B are two contexts on one device, each with its own PD, CQ and buffers; every
 * section connects a fresh pair of RC queue pairs (an access error takes both QPs of a pair to
 * the error state). Sections (all by default):
 *   caps      device capabilities: windows, memory management extensions, ODP
 *   type1     ibv_bind_mw (type-1 window): WRITE and READ through it, unbind, the old key fails;
 *             what ibv_bind_mw refuses
 *   type2     IBV_WR_BIND_MW (type-2 window, zero based): WRITE and READ through it; the peer's
 *             IBV_WR_SEND_WITH_INV invalidates it (IBV_WC_WITH_INV, invalidated_rkey)
 *   localinv  ibv_wr_bind_mw + ibv_wr_local_inv (the ibv_qp_ex builder), rebinding after
 *             IBV_WR_LOCAL_INV under the next key
 *   fastreg   softrdma_alloc_fast_reg_mr + SOFTRDMA_WR_REG_MR: scattered pages under a new key,
 *             used by the peer and, in the same post, locally; invalidation; re-registration
 *   onetouch  a SOFTRDMA_ACCESS_ONE_TOUCH region takes one WRITE, the second is refused
 *   odp       IBV_ACCESS_ON_DEMAND regions on fresh mmap'ed memory: a 1 MiB WRITE (explicit and
 *             implicit region), ibv_advise_mr, a READ from memory the owner never wrote, a
 *             WRITE to unmapped memory (refused)
 *   drain     SOFTRDMA_QP_CREATE_DRAIN_SQ_ON_ERROR: a failed WR puts the QP in SQE, receives go
 *             on, RTS resumes sending
 * Exit status 0 when every check passed, 1 otherwise; each failure prints one line
 * "FAIL section: file:line: what".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <softrdma/verbs_ext.h>

#define BUF_SIZE (2u << 20) /* per side */
#define PAGE 4096u
#define TIMEOUT_MS 10000
#define PORT 1

#include "check.h"

struct side {
  struct ibv_context *ctx;
  struct ibv_pd *pd;
  struct ibv_cq *cq;
  uint8_t *buf;
  struct ibv_mr *mr; /* A: all rights over buf; B: LOCAL_WRITE | MW_BIND only (windows open it) */
  union ibv_gid gid;
  struct ibv_port_attr port;
  struct ibv_qp *qp; /* the current pair's QP */
};

static struct ibv_device **g_list;
static struct ibv_device *g_dev;
static struct ibv_device_attr g_attr;
static struct side A, B;

/* ---- completions ----------------------------------------------------------------------------- */


/* One completion with this status, wr_id and (for successes, when opcode >= 0) opcode. */
static int expect(struct ibv_cq *cq, enum ibv_wc_status status, int opcode, uint64_t wr_id, struct ibv_wc *out) {
  struct ibv_wc wc;
  if (poll_one(cq, &wc)) return -1;
  if (wc.status != status)
    FAIL("wr_id %" PRIu64 ": status %s, expected %s", wc.wr_id, ibv_wc_status_str(wc.status),
         ibv_wc_status_str(status));
  if (wc.wr_id != wr_id) FAIL("wr_id %" PRIu64 ", expected %" PRIu64, wc.wr_id, wr_id);
  if (opcode >= 0 && wc.opcode != (enum ibv_wc_opcode)opcode) FAIL("opcode %d, expected %d", wc.opcode, opcode);
  if (out) *out = wc;
  return 0;
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed * 37 + i * 11 + (i >> 9));
}

/* ---- queue pairs -------------------------------------------------------------------------------- */

static struct ibv_qp *create_rc(struct side *s, uint32_t create_flags) {
  struct ibv_qp_init_attr_ex ia = {
      .send_cq = s->cq,
      .recv_cq = s->cq,
      .cap = {.max_send_wr = 64, .max_recv_wr = 64, .max_send_sge = 4, .max_recv_sge = 4},
      .qp_type = IBV_QPT_RC,
      .comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
      .pd = s->pd,
      .send_ops_flags = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_READ |
                        IBV_QP_EX_WITH_LOCAL_INV | IBV_QP_EX_WITH_BIND_MW | IBV_QP_EX_WITH_SEND_WITH_INV,
  };
  if (create_flags) {
    ia.comp_mask |= IBV_QP_INIT_ATTR_CREATE_FLAGS;
    ia.create_flags = create_flags;
  }
  return ibv_create_qp_ex(s->ctx, &ia);
}

/* RESET -> INIT -> RTR -> RTS, connected to peer_qpn at the peer's GID. */
static int connect_qp(struct side *s, struct ibv_qp *qp, const struct side *peer, uint32_t peer_qpn) {
  struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .port_num = PORT,
                          .qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                                             IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC};
  CHECK_RC(ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS));
  memset(&a, 0, sizeof(a));
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = s->port.active_mtu;
  a.dest_qp_num = peer_qpn;
  a.rq_psn = 0x1000 + peer_qpn;
  a.max_dest_rd_atomic = 4;
  a.min_rnr_timer = 1;
  a.ah_attr = (struct ibv_ah_attr){.is_global = 1, .port_num = PORT,
                                   .grh = {.dgid = peer->gid, .sgid_index = 0, .hop_limit = 64}};
  CHECK_RC(ibv_modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                             IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER));
  memset(&a, 0, sizeof(a));
  a.qp_state = IBV_QPS_RTS;
  a.timeout = 14; /* 67 ms: a retransmitted one-touch WRITE would find its region used up */
  a.retry_cnt = 7;
  a.rnr_retry = 7; /* on-demand pages: retry until they are in */
  a.sq_psn = 0x1000 + qp->qp_num;
  a.max_rd_atomic = 4;
  CHECK_RC(ibv_modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                             IBV_QP_MAX_QP_RD_ATOMIC));
  return 0;
}

static int drop_pair(void) {
  int bad = 0;
  if (A.qp && ibv_destroy_qp(A.qp)) bad++;
  if (B.qp && ibv_destroy_qp(B.qp)) bad++;
  A.qp = B.qp = NULL;
  if (bad) FAIL("ibv_destroy_qp failed");
  return 0;
}

/* A fresh connected pair; a_flags are A's QP create flags. */
static int new_pair(uint32_t a_flags) {
  if (drop_pair()) return -1;
  A.qp = create_rc(&A, a_flags);
  CHECK(A.qp, "ibv_create_qp_ex (A, create_flags 0x%x)", a_flags);
  B.qp = create_rc(&B, 0);
  CHECK(B.qp, "ibv_create_qp_ex (B)");
  if (connect_qp(&A, A.qp, &B, B.qp->qp_num) || connect_qp(&B, B.qp, &A, A.qp->qp_num)) return -1;
  return 0;
}

static int post(struct ibv_qp *qp, struct ibv_send_wr *wr) {
  struct ibv_send_wr *bad = NULL;
  CHECK_RC(ibv_post_send(qp, wr, &bad));
  return 0;
}

/* A signalled RDMA WRITE or READ of len bytes between local and [raddr, raddr + len) under rkey. */
static int rdma(struct ibv_qp *qp, enum ibv_wr_opcode op, void *local, uint32_t len, uint32_t lkey, uint64_t raddr,
                uint32_t rkey, uint64_t id) {
  struct ibv_sge sge = {.addr = (uintptr_t)local, .length = len, .lkey = lkey};
  struct ibv_send_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1, .opcode = op, .send_flags = IBV_SEND_SIGNALED,
                           .wr.rdma = {.remote_addr = raddr, .rkey = rkey}};
  return post(qp, &wr);
}

static int post_recv(struct side *s, void *addr, uint32_t len, uint32_t lkey, uint64_t id) {
  struct ibv_sge sge = {.addr = (uintptr_t)addr, .length = len, .lkey = lkey};
  struct ibv_recv_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1}, *bad = NULL;
  CHECK_RC(ibv_post_recv(s->qp, &wr, &bad));
  return 0;
}

/* A WRITE from A that must fail with a remote access error (the pair is spent afterwards). */
static int write_refused(uint64_t raddr, uint32_t rkey, uint64_t id) {
  if (rdma(A.qp, IBV_WR_RDMA_WRITE, A.buf, 64, A.mr->lkey, raddr, rkey, id)) return -1;
  return expect(A.cq, IBV_WC_REM_ACCESS_ERR, -1, id, NULL);
}

/* ---- sections -------------------------------------------------------------------------------- */

static int section_caps(void) {
  CHECK(softrdma_is_device(A.ctx) == 1, "softrdma_is_device");
  const int want = IBV_DEVICE_MEM_WINDOW | IBV_DEVICE_MEM_WINDOW_TYPE_2B | IBV_DEVICE_MEM_MGT_EXTENSIONS;
  CHECK((g_attr.device_cap_flags & want) == want, "device_cap_flags 0x%x", g_attr.device_cap_flags);
  CHECK(g_attr.max_mw > 0, "max_mw %d", g_attr.max_mw);
  struct ibv_device_attr_ex ax;
  memset(&ax, 0, sizeof(ax));
  CHECK_RC(ibv_query_device_ex(A.ctx, NULL, &ax));
  const struct ibv_odp_caps *o = &ax.odp_caps;
  note("max_mw %d, odp general 0x%" PRIx64 " rc 0x%x ud 0x%x", g_attr.max_mw, o->general_caps,
       o->per_transport_caps.rc_odp_caps, o->per_transport_caps.ud_odp_caps);
  CHECK((o->general_caps & (IBV_ODP_SUPPORT | IBV_ODP_SUPPORT_IMPLICIT)) == (IBV_ODP_SUPPORT | IBV_ODP_SUPPORT_IMPLICIT),
        "odp general_caps 0x%" PRIx64, o->general_caps);
  const uint32_t rc = IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV | IBV_ODP_SUPPORT_WRITE | IBV_ODP_SUPPORT_READ |
                      IBV_ODP_SUPPORT_ATOMIC;
  CHECK((o->per_transport_caps.rc_odp_caps & rc) == rc, "rc_odp_caps 0x%x", o->per_transport_caps.rc_odp_caps);
  CHECK(o->per_transport_caps.ud_odp_caps & IBV_ODP_SUPPORT_SEND, "ud_odp_caps 0x%x",
        o->per_transport_caps.ud_odp_caps);
  errno = 0;
  struct ibv_mw *mw = ibv_alloc_mw(A.pd, (enum ibv_mw_type)3);
  CHECK(!mw && errno == EINVAL, "ibv_alloc_mw(type 3)");
  return 0;
}

static int section_type1(void) {
  if (new_pair(0)) return -1;
  struct ibv_mw *mw = ibv_alloc_mw(B.pd, IBV_MW_TYPE_1);
  CHECK(mw, "ibv_alloc_mw(type 1)");
  int rc = -1;
  const uint32_t first = mw->rkey;
  uint8_t *win = B.buf + 3 * PAGE;
  struct ibv_mw_bind bind = {.wr_id = 11, .send_flags = IBV_SEND_SIGNALED,
                             .bind_info = {.mr = B.mr, .addr = (uintptr_t)win, .length = 4 * PAGE,
                                           .mw_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ}};
  /* What the bind verb refuses before posting anything. */
  struct ibv_mw_bind bad = bind;
  bad.bind_info.mw_access_flags |= IBV_ACCESS_MW_BIND;
  if (ibv_bind_mw(B.qp, mw, &bad) != EINVAL) FAIL("bind with IBV_ACCESS_MW_BIND in mw_access_flags accepted");
  bad = bind;
  bad.bind_info.mw_access_flags |= IBV_ACCESS_ZERO_BASED;
  if (ibv_bind_mw(B.qp, mw, &bad) != EINVAL) FAIL("zero-based type-1 bind accepted");
  struct ibv_pd *other = ibv_alloc_pd(B.ctx);
  CHECK(other, "ibv_alloc_pd");
  struct ibv_mr *other_mr = ibv_reg_mr(other, B.buf, PAGE, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_MW_BIND);
  bad = bind;
  bad.bind_info.mr = other_mr;
  int eperm = other_mr ? ibv_bind_mw(B.qp, mw, &bad) : -1;
  if (other_mr) ibv_dereg_mr(other_mr);
  ibv_dealloc_pd(other);
  if (eperm != EPERM) FAIL("bind to a region of another PD: %d, expected EPERM", eperm);
  CHECK(mw->rkey == first, "a refused bind changed the key");

  CHECK_RC(ibv_bind_mw(B.qp, mw, &bind));
  if (expect(B.cq, IBV_WC_SUCCESS, IBV_WC_BIND_MW, 11, NULL)) goto out;
  if (mw->rkey == first || (mw->rkey >> 8) != (first >> 8)) {
    fprintf(stderr, "FAIL type1: key 0x%x after bind (was 0x%x)\n", mw->rkey, first);
    g_failures++;
    goto out;
  }
  note("type-1 window bound: key 0x%x -> 0x%x", first, mw->rkey);
  /* The region grants nothing remotely; the window its range, with its rights. */
  fill(A.buf, 4 * PAGE, 1);
  if (rdma(A.qp, IBV_WR_RDMA_WRITE, A.buf, 4 * PAGE - 100, A.mr->lkey, (uintptr_t)win + 100, mw->rkey, 12) ||
      expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_WRITE, 12, NULL))
    goto out;
  if (memcmp(win + 100, A.buf, 4 * PAGE - 100) != 0) {
    fprintf(stderr, "FAIL type1: WRITE through the window: data differs\n");
    g_failures++;
    goto out;
  }
  memset(A.buf + BUF_SIZE / 2, 0, PAGE);
  if (rdma(A.qp, IBV_WR_RDMA_READ, A.buf + BUF_SIZE / 2, PAGE, A.mr->lkey, (uintptr_t)win + PAGE, mw->rkey, 13) ||
      expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_READ, 13, NULL))
    goto out;
  if (memcmp(A.buf + BUF_SIZE / 2, win + PAGE, PAGE) != 0) {
    fprintf(stderr, "FAIL type1: READ through the window: data differs\n");
    g_failures++;
    goto out;
  }
  /* A zero-length bind unbinds: the key stops working. */
  const uint32_t bound = mw->rkey;
  struct ibv_mw_bind unbind = {.wr_id = 14, .send_flags = IBV_SEND_SIGNALED};
  if (ibv_bind_mw(B.qp, mw, &unbind) != 0 || expect(B.cq, IBV_WC_SUCCESS, IBV_WC_BIND_MW, 14, NULL)) goto out;
  if (write_refused((uintptr_t)win, bound, 15)) goto out;
  rc = 0;
out:
  if (drop_pair()) rc = -1;
  CHECK_RC(ibv_dealloc_mw(mw));
  return rc;
}

static int section_type2(void) {
  if (new_pair(0)) return -1;
  struct ibv_mw *mw = ibv_alloc_mw(B.pd, IBV_MW_TYPE_2);
  CHECK(mw, "ibv_alloc_mw(type 2)");
  int rc = -1;
  uint8_t *win = B.buf + 16 * PAGE;
  const uint32_t key = ibv_inc_rkey(mw->rkey);
  struct ibv_send_wr wr = {.wr_id = 21, .opcode = IBV_WR_BIND_MW, .send_flags = IBV_SEND_SIGNALED};
  wr.bind_mw.mw = mw;
  wr.bind_mw.rkey = key;
  wr.bind_mw.bind_info = (struct ibv_mw_bind_info){
      .mr = B.mr, .addr = (uintptr_t)win, .length = 8 * PAGE,
      .mw_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_ZERO_BASED};
  if (post(B.qp, &wr) || expect(B.cq, IBV_WC_SUCCESS, IBV_WC_BIND_MW, 21, NULL)) goto out;
  note("type-2 window bound under 0x%x (zero based)", key);
  fill(A.buf, 8 * PAGE, 2);
  /* Zero based: the peer addresses the window from 0. */
  if (rdma(A.qp, IBV_WR_RDMA_WRITE, A.buf, 8 * PAGE, A.mr->lkey, 0, key, 22) ||
      expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_WRITE, 22, NULL))
    goto out;
  if (memcmp(win, A.buf, 8 * PAGE) != 0) {
    fprintf(stderr, "FAIL type2: WRITE through the window: data differs\n");
    g_failures++;
    goto out;
  }
  memset(A.buf + BUF_SIZE / 2, 0, 3000);
  if (rdma(A.qp, IBV_WR_RDMA_READ, A.buf + BUF_SIZE / 2, 3000, A.mr->lkey, 5000, key, 23) ||
      expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_READ, 23, NULL))
    goto out;
  if (memcmp(A.buf + BUF_SIZE / 2, win + 5000, 3000) != 0) {
    fprintf(stderr, "FAIL type2: READ through the window: data differs\n");
    g_failures++;
    goto out;
  }
  /* The peer is done with the window: SEND with Invalidate. */
  if (post_recv(&B, B.buf, 256, B.mr->lkey, 24)) goto out;
  struct ibv_sge sge = {.addr = (uintptr_t)A.buf, .length = 100, .lkey = A.mr->lkey};
  struct ibv_send_wr inv = {.wr_id = 25, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND_WITH_INV,
                            .send_flags = IBV_SEND_SIGNALED, .invalidate_rkey = key};
  struct ibv_wc wc;
  if (post(A.qp, &inv) || expect(A.cq, IBV_WC_SUCCESS, IBV_WC_SEND, 25, NULL) ||
      expect(B.cq, IBV_WC_SUCCESS, IBV_WC_RECV, 24, &wc))
    goto out;
  if (!(wc.wc_flags & IBV_WC_WITH_INV) || wc.invalidated_rkey != key || wc.byte_len != 100) {
    fprintf(stderr, "FAIL type2: receive of SEND with Invalidate: wc_flags 0x%x invalidated_rkey 0x%x (want 0x%x) byte_len %u\n",
            wc.wc_flags, wc.invalidated_rkey, key, wc.byte_len);
    g_failures++;
    goto out;
  }
  note("SEND with Invalidate: receive has IBV_WC_WITH_INV, invalidated_rkey 0x%x", wc.invalidated_rkey);
  if (write_refused(0, key, 26)) goto out;
  rc = 0;
out:
  if (drop_pair()) rc = -1;
  CHECK_RC(ibv_dealloc_mw(mw));
  return rc;
}

/* ibv_wr_bind_mw / ibv_wr_local_inv, and a second bind of the window under the next key. */
static int section_localinv(void) {
  if (new_pair(0)) return -1;
  struct ibv_mw *mw = ibv_alloc_mw(B.pd, IBV_MW_TYPE_2);
  CHECK(mw, "ibv_alloc_mw(type 2)");
  int rc = -1;
  struct ibv_qp_ex *qx = ibv_qp_to_qp_ex(B.qp);
  uint8_t *win = B.buf + 32 * PAGE;
  struct ibv_mw_bind_info info = {.mr = B.mr, .addr = (uintptr_t)win, .length = PAGE,
                                  .mw_access_flags = IBV_ACCESS_REMOTE_WRITE};
  uint32_t key = mw->rkey;
  for (int round = 0; round < 2; round++) {
    key = ibv_inc_rkey(key);
    uint64_t id = 30 + 10 * (uint64_t)round;
    ibv_wr_start(qx);
    qx->wr_id = id;
    qx->wr_flags = IBV_SEND_SIGNALED;
    ibv_wr_bind_mw(qx, mw, key, &info);
    if (ibv_wr_complete(qx) != 0) {
      fprintf(stderr, "FAIL localinv: ibv_wr_complete(bind, round %d)\n", round);
      g_failures++;
      goto out;
    }
    if (expect(B.cq, IBV_WC_SUCCESS, IBV_WC_BIND_MW, id, NULL)) goto out;
    fill(A.buf, 512, 3 + (unsigned)round);
    if (rdma(A.qp, IBV_WR_RDMA_WRITE, A.buf, 512, A.mr->lkey, (uintptr_t)win + 1000, key, id + 1) ||
        expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_WRITE, id + 1, NULL))
      goto out;
    if (memcmp(win + 1000, A.buf, 512) != 0) {
      fprintf(stderr, "FAIL localinv: WRITE through the window (round %d): data differs\n", round);
      g_failures++;
      goto out;
    }
    ibv_wr_start(qx);
    qx->wr_id = id + 2;
    qx->wr_flags = IBV_SEND_SIGNALED;
    ibv_wr_local_inv(qx, key);
    if (ibv_wr_complete(qx) != 0 || expect(B.cq, IBV_WC_SUCCESS, IBV_WC_LOCAL_INV, id + 2, NULL)) goto out;
    note("round %d: bound under 0x%x, written, invalidated locally", round, key);
  }
  if (write_refused((uintptr_t)win, key, 50)) goto out;
  rc = 0;
out:
  if (drop_pair()) rc = -1;
  CHECK_RC(ibv_dealloc_mw(mw));
  return rc;
}

static int section_fastreg(void) {
  if (new_pair(0)) return -1;
  struct ibv_mr *fr = softrdma_alloc_fast_reg_mr(B.pd, 16);
  CHECK(fr, "softrdma_alloc_fast_reg_mr(16 pages)");
  int rc = -1;
  /* Pages 40 and 37 of B's buffer, in that order, as one region at iova 0x100000. */
  uint8_t *p40 = B.buf + 40 * PAGE, *p37 = B.buf + 37 * PAGE;
  struct ibv_sge runs[2] = {{.addr = (uintptr_t)p40, .length = PAGE}, {.addr = (uintptr_t)p37, .length = PAGE}};
  const uint32_t k1 = ibv_inc_rkey(fr->lkey);
  struct ibv_send_wr reg = {.wr_id = 60, .sg_list = runs, .num_sge = 2, .send_flags = IBV_SEND_SIGNALED};
  softrdma_wr_reg_mr(&reg, fr, k1, 0x100000,
                     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
  if (post(B.qp, &reg) || expect(B.cq, IBV_WC_SUCCESS, SOFTRDMA_WC_REG_MR, 60, NULL)) goto out;
  if (fr->lkey != k1 || fr->rkey != k1 || fr->length != 2 * PAGE) {
    fprintf(stderr, "FAIL fastreg: after the registration lkey 0x%x rkey 0x%x length %zu (want 0x%x, %u)\n",
            fr->lkey, fr->rkey, fr->length, k1, 2 * PAGE);
    g_failures++;
    goto out;
  }
  fill(A.buf, 2 * PAGE, 5);
  if (rdma(A.qp, IBV_WR_RDMA_WRITE, A.buf, 2 * PAGE - 200, A.mr->lkey, 0x100000 + 100, k1, 61) ||
      expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_WRITE, 61, NULL))
    goto out;
  if (memcmp(p40 + 100, A.buf, PAGE - 100) != 0 || memcmp(p37, A.buf + PAGE - 100, PAGE - 100) != 0) {
    fprintf(stderr, "FAIL fastreg: WRITE across the two registered pages: data differs\n");
    g_failures++;
    goto out;
  }
  note("registered pages 40+37 under 0x%x; the peer wrote across them", k1);
  struct ibv_send_wr inv = {.wr_id = 62, .opcode = IBV_WR_LOCAL_INV, .send_flags = IBV_SEND_SIGNALED,
                            .invalidate_rkey = k1};
  if (post(B.qp, &inv) || expect(B.cq, IBV_WC_SUCCESS, IBV_WC_LOCAL_INV, 62, NULL)) goto out;
  if (write_refused(0x100000, k1, 63)) goto out;
  /* Registered again (zero based, one run of 3 pages) and used by the very next WR in the same
   * post: B sends from it under the new key. */
  if (new_pair(0)) goto out;
  const uint32_t k2 = ibv_inc_rkey(fr->lkey);
  uint8_t *run = B.buf + 48 * PAGE;
  fill(run, 3 * PAGE, 6);
  struct ibv_sge one = {.addr = (uintptr_t)run, .length = 3 * PAGE};
  struct ibv_sge data = {.addr = PAGE - 10, .length = PAGE + 20, .lkey = k2};
  struct ibv_send_wr send = {.wr_id = 65, .sg_list = &data, .num_sge = 1, .opcode = IBV_WR_SEND,
                             .send_flags = IBV_SEND_SIGNALED};
  struct ibv_send_wr reg2 = {.wr_id = 64, .next = &send, .sg_list = &one, .num_sge = 1,
                             .send_flags = IBV_SEND_SIGNALED};
  softrdma_wr_reg_mr(&reg2, fr, k2, 0, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_ZERO_BASED);
  memset(A.buf, 0, 2 * PAGE);
  if (post_recv(&A, A.buf, 2 * PAGE, A.mr->lkey, 66) || post(B.qp, &reg2) ||
      expect(B.cq, IBV_WC_SUCCESS, SOFTRDMA_WC_REG_MR, 64, NULL) || expect(B.cq, IBV_WC_SUCCESS, IBV_WC_SEND, 65, NULL))
    goto out;
  struct ibv_wc wc;
  if (expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RECV, 66, &wc)) goto out;
  if (wc.byte_len != PAGE + 20 || memcmp(A.buf, run + PAGE - 10, PAGE + 20) != 0) {
    fprintf(stderr, "FAIL fastreg: SEND from the re-registered region: byte_len %u, or data differs\n", wc.byte_len);
    g_failures++;
    goto out;
  }
  note("re-registered under 0x%x and sent from it in the same post", k2);
  rc = 0;
out:
  if (drop_pair()) rc = -1;
  CHECK_RC(ibv_dereg_mr(fr));
  return rc;
}

static int section_onetouch(void) {
  if (new_pair(0)) return -1;
  uint8_t *base = B.buf + 64 * PAGE;
  struct ibv_mr *once = ibv_reg_mr(B.pd, base, 16 * PAGE,
                                   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | SOFTRDMA_ACCESS_ONE_TOUCH);
  CHECK(once, "ibv_reg_mr(ONE_TOUCH)");
  int rc = -1;
  fill(A.buf, 10000, 7);
  if (rdma(A.qp, IBV_WR_RDMA_WRITE, A.buf, 10000, A.mr->lkey, (uintptr_t)base, once->rkey, 70) ||
      expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_WRITE, 70, NULL))
    goto out;
  if (memcmp(base, A.buf, 10000) != 0) {
    fprintf(stderr, "FAIL onetouch: the one WRITE: data differs\n");
    g_failures++;
    goto out;
  }
  if (write_refused((uintptr_t)base + 20000, once->rkey, 71)) goto out;
  note("one-touch region: first WRITE placed, second refused");
  rc = 0;
out:
  if (drop_pair()) rc = -1;
  CHECK_RC(ibv_dereg_mr(once));
  return rc;
}

static bool all_resident(void *addr, size_t len) {
  unsigned char vec[512];
  size_t pages = len / PAGE;
  if (pages > sizeof(vec) || mincore(addr, len, vec) != 0) return false;
  for (size_t i = 0; i < pages; i++)
    if (!(vec[i] & 1)) return false;
  return true;
}

/* A 1 MiB WRITE from A into fresh memory of B (mmap'ed, never touched), registered on demand:
 * an explicit region over it, or the implicit region when implicit_mr is given. */
static int odp_write(struct ibv_mr *implicit_mr, uint64_t id) {
  const size_t len = 1u << 20;
  uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(mem != MAP_FAILED, "mmap");
  struct ibv_mr *mr = implicit_mr;
  if (mr == NULL) {
    mr = ibv_reg_mr(B.pd, mem, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_ON_DEMAND);
    if (!mr) {
      munmap(mem, len);
      CHECK(0, "ibv_reg_mr(ON_DEMAND)");
    }
  }
  int rc = -1;
  fill(A.buf, len, (unsigned)id);
  if (rdma(A.qp, IBV_WR_RDMA_WRITE, A.buf, (uint32_t)len, A.mr->lkey, (uintptr_t)mem, mr->rkey, id) ||
      expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_WRITE, id, NULL))
    goto out;
  if (memcmp(mem, A.buf, len) != 0) {
    fprintf(stderr, "FAIL odp: 1 MiB WRITE into %s on-demand memory: data differs\n", implicit_mr ? "implicit" : "explicit");
    g_failures++;
    goto out;
  }
  rc = 0;
out:
  if (mr != implicit_mr && ibv_dereg_mr(mr) != 0) rc = -1;
  munmap(mem, len);
  return rc;
}

static int section_odp(void) {
  if (new_pair(0)) return -1;
  if (odp_write(NULL, 80)) return -1;
  note("1 MiB WRITE into a fresh explicit on-demand region");
  struct ibv_mr *imr = ibv_reg_mr(B.pd, NULL, SIZE_MAX,
                                  IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                                      IBV_ACCESS_ON_DEMAND);
  CHECK(imr, "ibv_reg_mr(NULL, SIZE_MAX, ON_DEMAND): the implicit region");
  int rc = -1;
  if (odp_write(imr, 81)) goto out;
  note("1 MiB WRITE into fresh memory through the implicit region");
  /* ibv_advise_mr: prefetch for writing, flushed; the pages are then resident. */
  const size_t len = 64 * PAGE;
  uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) goto out;
  struct ibv_sge sge = {.addr = (uintptr_t)mem, .length = (uint32_t)len, .lkey = imr->lkey};
  int arc = ibv_advise_mr(B.pd, IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE, IBV_ADVISE_MR_FLAG_FLUSH, &sge, 1);
  bool resident = all_resident(mem, len);
  /* A READ from on-demand memory the owner never wrote: zeros. */
  memset(A.buf, 0xee, PAGE);
  int got = rdma(A.qp, IBV_WR_RDMA_READ, A.buf, PAGE, A.mr->lkey, (uintptr_t)mem + 8 * PAGE, imr->rkey, 82) ||
            expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_READ, 82, NULL);
  bool zeros = true;
  for (unsigned i = 0; i < PAGE; i++) zeros &= A.buf[i] == 0;
  munmap(mem, len);
  if (arc != 0 || !resident) {
    fprintf(stderr, "FAIL odp: ibv_advise_mr(PREFETCH_WRITE, FLUSH) returned %d, pages resident: %d\n", arc, resident);
    g_failures++;
    goto out;
  }
  if (got) goto out;
  if (!zeros) {
    fprintf(stderr, "FAIL odp: READ of untouched on-demand memory is not zeros\n");
    g_failures++;
    goto out;
  }
  note("ibv_advise_mr made 64 pages resident; READ through the implicit region");
  /* Memory that is not mapped (any more): a remote access error, not a fault of the process. */
  if (write_refused((uintptr_t)mem + 4 * PAGE, imr->rkey, 83)) goto out;
  note("WRITE to unmapped memory through the implicit region: remote access error");
  rc = 0;
out:
  if (drop_pair()) rc = -1;
  CHECK_RC(ibv_dereg_mr(imr));
  return rc;
}

static int query_state(struct ibv_qp *qp, enum ibv_qp_state want) {
  struct ibv_qp_attr a;
  struct ibv_qp_init_attr ia;
  CHECK_RC(ibv_query_qp(qp, &a, IBV_QP_STATE, &ia));
  if (a.qp_state != want) FAIL("QP state %d, expected %d", a.qp_state, want);
  return 0;
}

static int section_drain(void) {
  errno = 0;
  struct ibv_qp *qp = create_rc(&A, SOFTRDMA_QP_CREATE_DRAIN_SQ_ON_ERROR | SOFTRDMA_QP_CREATE_ERROR_QP_ON_ERROR);
  if (qp) ibv_destroy_qp(qp);
  CHECK(!qp && errno == EINVAL, "both send-error options at once");
  errno = 0;
  qp = create_rc(&A, IBV_QP_CREATE_SCATTER_FCS);
  if (qp) ibv_destroy_qp(qp);
  CHECK(!qp && errno == EOPNOTSUPP, "IBV_QP_CREATE_SCATTER_FCS");

  if (new_pair(SOFTRDMA_QP_CREATE_DRAIN_SQ_ON_ERROR)) return -1;
  const uint32_t bad_lkey = (A.mr->lkey & ~0xffu) | ((A.mr->lkey + 0x80) & 0xffu); /* stale instance */
  if (post_recv(&A, A.buf + BUF_SIZE / 2, 256, A.mr->lkey, 90)) return -1;
  /* One post of two WRITEs: the first fails (its lkey), the second is flushed. */
  struct ibv_sge sg[2] = {{.addr = (uintptr_t)A.buf, .length = 64, .lkey = bad_lkey},
                          {.addr = (uintptr_t)A.buf, .length = 64, .lkey = A.mr->lkey}};
  struct ibv_send_wr w2 = {.wr_id = 92, .sg_list = &sg[1], .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
                           .send_flags = IBV_SEND_SIGNALED, .wr.rdma = {.remote_addr = (uintptr_t)B.buf}};
  struct ibv_send_wr w1 = {.wr_id = 91, .next = &w2, .sg_list = &sg[0], .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
                           .send_flags = IBV_SEND_SIGNALED, .wr.rdma = {.remote_addr = (uintptr_t)B.buf}};
  if (post(A.qp, &w1)) return -1;
  if (expect(A.cq, IBV_WC_LOC_PROT_ERR, -1, 91, NULL) || expect(A.cq, IBV_WC_WR_FLUSH_ERR, -1, 92, NULL)) return -1;
  if (query_state(A.qp, IBV_QPS_SQE)) return -1;
  note("a WR with a bad lkey: LOC_PROT_ERR, the next flushed, QP in SQE");
  /* Receiving goes on in SQE. */
  fill(B.buf, 200, 9);
  struct ibv_sge sge = {.addr = (uintptr_t)B.buf, .length = 200, .lkey = B.mr->lkey};
  struct ibv_send_wr send = {.wr_id = 93, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
                             .send_flags = IBV_SEND_SIGNALED};
  struct ibv_wc wc;
  if (post(B.qp, &send) || expect(B.cq, IBV_WC_SUCCESS, IBV_WC_SEND, 93, NULL) ||
      expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RECV, 90, &wc))
    return -1;
  if (wc.byte_len != 200 || memcmp(A.buf + BUF_SIZE / 2, B.buf, 200) != 0) FAIL("SEND received in SQE: data differs");
  /* SQE -> RTS resumes the send queue. */
  struct ibv_qp_attr a = {.qp_state = IBV_QPS_RTS};
  CHECK_RC(ibv_modify_qp(A.qp, &a, IBV_QP_STATE));
  if (query_state(A.qp, IBV_QPS_RTS)) return -1;
  /* B's region grants no remote rights; a window does (type 1, bound on B's QP). */
  struct ibv_mw *mw = ibv_alloc_mw(B.pd, IBV_MW_TYPE_1);
  CHECK(mw, "ibv_alloc_mw");
  struct ibv_mw_bind bind = {.wr_id = 94, .send_flags = IBV_SEND_SIGNALED,
                             .bind_info = {.mr = B.mr, .addr = (uintptr_t)(B.buf + PAGE), .length = PAGE,
                                           .mw_access_flags = IBV_ACCESS_REMOTE_WRITE}};
  int rc = -1;
  fill(A.buf, 64, 10);
  if (ibv_bind_mw(B.qp, mw, &bind) == 0 && expect(B.cq, IBV_WC_SUCCESS, IBV_WC_BIND_MW, 94, NULL) == 0 &&
      rdma(A.qp, IBV_WR_RDMA_WRITE, A.buf, 64, A.mr->lkey, (uintptr_t)(B.buf + PAGE), mw->rkey, 95) == 0 &&
      expect(A.cq, IBV_WC_SUCCESS, IBV_WC_RDMA_WRITE, 95, NULL) == 0) {
    if (memcmp(B.buf + PAGE, A.buf, 64) == 0)
      rc = 0;
    else
      fprintf(stderr, "FAIL drain: WRITE after SQE -> RTS: data differs\n"), g_failures++;
  }
  note("SQE -> RTS: sending again");
  if (drop_pair()) rc = -1;
  CHECK_RC(ibv_dealloc_mw(mw));
  return rc;
}

/* ---- main ---------------------------------------------------------------------------------------- */

static int open_side(struct side *s, unsigned mr_access) {
  s->ctx = ibv_open_device(g_dev);
  CHECK(s->ctx, "ibv_open_device");
  CHECK_RC(ibv_query_port(s->ctx, PORT, &s->port));
  CHECK_RC(ibv_query_gid(s->ctx, PORT, 0, &s->gid));
  s->pd = ibv_alloc_pd(s->ctx);
  CHECK(s->pd, "ibv_alloc_pd");
  s->cq = ibv_create_cq(s->ctx, 256, NULL, NULL, 0);
  CHECK(s->cq, "ibv_create_cq");
  s->buf = aligned_alloc(PAGE, BUF_SIZE);
  CHECK(s->buf, "aligned_alloc");
  memset(s->buf, 0, BUF_SIZE);
  s->mr = ibv_reg_mr(s->pd, s->buf, BUF_SIZE, (int)mr_access);
  CHECK(s->mr, "ibv_reg_mr");
  return 0;
}

static int teardown(void) {
  g_section = "teardown";
  int bad = drop_pair() ? 1 : 0;
  struct side *s[2] = {&A, &B};
  for (int i = 0; i < 2; i++) {
    if (s[i]->mr && ibv_dereg_mr(s[i]->mr)) bad++;
    if (s[i]->cq && ibv_destroy_cq(s[i]->cq)) bad++;
    if (s[i]->pd && ibv_dealloc_pd(s[i]->pd)) bad++;
    if (s[i]->ctx && ibv_close_device(s[i]->ctx)) bad++;
    free(s[i]->buf);
  }
  if (g_list) ibv_free_device_list(g_list);
  if (bad) fprintf(stderr, "FAIL teardown: %d destroy calls failed\n", bad);
  g_failures += bad;
  return bad ? -1 : 0;
}

struct section {
  const char *name;
  int (*fn)(void);
};

int main(int argc, char **argv) {
  const char *devname = NULL;
  int opt;
  setvbuf(stdout, NULL, _IOLBF, 0);
  while ((opt = getopt(argc, argv, "d:vh")) != -1) {
    switch (opt) {
      case 'd': devname = optarg; break;
      case 'v': g_verbose = true; break;
      default:
        fprintf(stderr, "usage: %s [-d DEVICE] [-v] [caps type1 type2 localinv fastreg onetouch odp drain]\n", argv[0]);
        return 2;
    }
  }
  static const struct section sections[] = {
      {"caps", section_caps},         {"type1", section_type1},       {"type2", section_type2},
      {"localinv", section_localinv}, {"fastreg", section_fastreg},   {"onetouch", section_onetouch},
      {"odp", section_odp},           {"drain", section_drain},
  };
  const size_t nsec = sizeof(sections) / sizeof(sections[0]);
  bool want[sizeof(sections) / sizeof(sections[0])];
  for (size_t i = 0; i < nsec; i++) want[i] = optind == argc;
  for (int a = optind; a < argc; a++) {
    size_t i = 0;
    while (i < nsec && strcmp(argv[a], sections[i].name) != 0) i++;
    if (i == nsec) {
      fprintf(stderr, "unknown section %s\n", argv[a]);
      return 2;
    }
    want[i] = true;
  }
  Dl_info info; /* which libibverbs.so.1 the dynamic linker gave us (user_program.sh checks it) */
  if (dladdr((void *)&ibv_get_device_list, &info) && info.dli_fname) {
    char real[4096];
    printf("libibverbs: %s\n", realpath(info.dli_fname, real) ? real : info.dli_fname);
  }
  int rc = 0;
  g_list = ibv_get_device_list(NULL);
  for (int i = 0; g_list && g_list[i]; i++)
    if (!devname || strcmp(ibv_get_device_name(g_list[i]), devname) == 0) {
      g_dev = g_list[i];
      break;
    }
  if (!g_dev) {
    fprintf(stderr, "FAIL setup: no device%s%s\n", devname ? " named " : "", devname ? devname : "");
    g_failures++;
    rc = -1;
  }
  if (rc == 0) {
    const unsigned all = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
    rc = open_side(&A, all) || open_side(&B, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_MW_BIND) ? -1 : 0;
    if (rc == 0 && ibv_query_device(A.ctx, &g_attr) != 0) rc = -1;
  }
  for (size_t i = 0; rc == 0 && i < nsec; i++) {
    if (!want[i]) continue;
    g_section = sections[i].name;
    uint64_t t0 = now_ms();
    int r = sections[i].fn();
    printf("%-9s %s (%" PRIu64 " ms)\n", sections[i].name, r == 0 ? "ok" : "FAILED", now_ms() - t0);
    if (r != 0 && g_failures == 0) g_failures++;
  }
  int t = teardown();
  printf("teardown %s\n", t == 0 ? "ok" : "FAILED");
  if (g_failures) {
    printf("memory_ops: %d failure(s)\n", g_failures);
    return 1;
  }
  printf("memory_ops: all checks passed\n");
  return 0;
}
