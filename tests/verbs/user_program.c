/*
 * A verbs program written the way a user writes one: against <infiniband/verbs.h> only, built
 * with `cc ... -libverbs` against the system's libibverbs (Debian's libibverbs-dev), and run
 * with softrdma's drop-in libibverbs.so.1 found first through LD_LIBRARY_PATH. Nothing in here
 * knows about softrdma.
 *
 *   user_program [-d DEVICE] [-g GID_INDEX] [-v] [SECTION...]
 *
 * It opens the device twice (like a server and a client that happen to share a process), and
 * connects queue pairs of the two contexts to each other at the port's GID. Sections (all by
 * default): device, rc (SEND/RECV, SEND with immediate, inline, scatter/gather, RDMA WRITE with
 * and without immediate, RDMA READ), atomic (fetch-and-add, compare-and-swap), events
 * (completion channel), ud (UD SEND with the GRH area, ibv_create_ah_from_wc), ex
 * (ibv_create_cq_ex + ibv_start_poll, ibv_create_qp_ex + ibv_wr_*), misuse (what wrong use must
 * return), sqfull (a send queue kept full: a polled completion must have freed its slot). Every
 * object is destroyed at the end, in a legal order, and every destroy must succeed. Exit status
 * 0 when every check passed, 1 otherwise; each failure prints one line
 * "FAIL section: file:line: what (errno)".
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <infiniband/verbs.h>

#define BUF_SIZE (1u << 20)     /* per side */
#define TIMEOUT_MS 10000        /* any single completion */
#define PORT 1

#include "check.h"

/* One endpoint: its own context, PD, buffer, MR, CQ and queue pairs. */
struct side {
  const char *name;
  struct ibv_context *ctx;
  struct ibv_pd *pd;
  struct ibv_comp_channel *channel; /* side b only: its CQ reports through it */
  struct ibv_cq *cq;
  uint8_t *buf;
  struct ibv_mr *mr;
  struct ibv_qp *rc;
  struct ibv_qp *ud;
  struct ibv_cq_ex *cqx;
  struct ibv_qp *rcx;
  union ibv_gid gid;
  struct ibv_port_attr port;
};

static struct ibv_device **g_list;
static struct ibv_device *g_dev;
static struct ibv_device_attr g_attr;
static int g_gid_index;
static struct side A = {.name = "a"}, B = {.name = "b"};
static unsigned g_events_to_ack; /* completion events taken from B's channel, acked at the end */


/* Polls one completion and checks its status, opcode and wr_id. */
static int expect_wc(struct ibv_cq *cq, enum ibv_wc_opcode opcode, uint64_t wr_id, struct ibv_wc *out) {
  struct ibv_wc wc;
  if (poll_one(cq, &wc)) return -1;
  if (wc.status != IBV_WC_SUCCESS)
    FAIL("completion wr_id %" PRIu64 " status %d (%s), vendor_err %u", wc.wr_id, wc.status,
         ibv_wc_status_str(wc.status), wc.vendor_err);
  if (wc.opcode != opcode) FAIL("completion opcode %d, expected %d", wc.opcode, opcode);
  if (wc.wr_id != wr_id) FAIL("completion wr_id %" PRIu64 ", expected %" PRIu64, wc.wr_id, wr_id);
  if (out) *out = wc;
  return 0;
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 8));
}

static int post_recv(struct ibv_qp *qp, struct side *s, size_t off, uint32_t len, uint64_t wr_id) {
  struct ibv_sge sge = {.addr = (uintptr_t)(s->buf + off), .length = len, .lkey = s->mr->lkey};
  struct ibv_recv_wr wr = {.wr_id = wr_id, .sg_list = &sge, .num_sge = 1}, *bad = NULL;
  CHECK_RC(ibv_post_recv(qp, &wr, &bad));
  return 0;
}

/* ---------------------------------------------------------------------------------------- */

static int open_side(struct side *s) {
  s->ctx = ibv_open_device(g_dev);
  CHECK(s->ctx, "ibv_open_device(%s)", ibv_get_device_name(g_dev));
  CHECK_RC(ibv_query_port(s->ctx, PORT, &s->port));
  CHECK_RC(ibv_query_gid(s->ctx, PORT, g_gid_index, &s->gid));
  s->pd = ibv_alloc_pd(s->ctx);
  CHECK(s->pd, "ibv_alloc_pd");
  s->buf = aligned_alloc(4096, BUF_SIZE);
  CHECK(s->buf, "aligned_alloc");
  memset(s->buf, 0, BUF_SIZE);
  s->mr = ibv_reg_mr(s->pd, s->buf, BUF_SIZE,
                     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ |
                         IBV_ACCESS_REMOTE_ATOMIC);
  CHECK(s->mr, "ibv_reg_mr");
  CHECK(s->mr->addr == s->buf && s->mr->length == BUF_SIZE, "MR fields addr %p length %zu", s->mr->addr,
        s->mr->length);
  if (s == &B) {
    s->channel = ibv_create_comp_channel(s->ctx);
    CHECK(s->channel, "ibv_create_comp_channel");
  }
  s->cq = ibv_create_cq(s->ctx, 256, s, s->channel, 0);
  CHECK(s->cq, "ibv_create_cq(256)");
  CHECK(s->cq->cqe >= 256, "cq->cqe = %d < 256", s->cq->cqe);
  return 0;
}

static int section_device(void) {
  int n = 0;
  g_list = ibv_get_device_list(&n);
  CHECK(g_list, "ibv_get_device_list");
  CHECK(n >= 1, "no devices");
  return 0;
}

static int check_device(void) {
  struct ibv_context *ctx = A.ctx;
  CHECK_RC(ibv_query_device(ctx, &g_attr));
  note("device %s: vendor 0x%x part %u fw %s, max_qp %d max_qp_wr %d max_sge %d max_cqe %d atomic %d",
       ibv_get_device_name(g_dev), g_attr.vendor_id, g_attr.vendor_part_id, g_attr.fw_ver, g_attr.max_qp,
       g_attr.max_qp_wr, g_attr.max_sge, g_attr.max_cqe, g_attr.atomic_cap);
  CHECK(g_attr.vendor_id != 0, "vendor_id 0");
  CHECK(g_attr.node_guid != 0, "node_guid 0");
  CHECK(ibv_get_device_guid(g_dev) == g_attr.node_guid, "ibv_get_device_guid != node_guid");
  CHECK(g_attr.phys_port_cnt >= 1, "phys_port_cnt %d", g_attr.phys_port_cnt);
  CHECK(g_attr.max_qp > 2 && g_attr.max_qp_wr >= 256 && g_attr.max_sge >= 3 && g_attr.max_cqe >= 256,
        "limits too small");
  struct ibv_device_attr_ex ax;
  memset(&ax, 0, sizeof(ax));
  CHECK_RC(ibv_query_device_ex(ctx, NULL, &ax));
  CHECK(ax.orig_attr.node_guid == g_attr.node_guid, "query_device_ex node_guid differs");
  CHECK(ax.phys_port_cnt_ex == g_attr.phys_port_cnt, "phys_port_cnt_ex %u", ax.phys_port_cnt_ex);

  struct ibv_port_attr *p = &A.port;
  note("port %d: state %s, mtu %d/%d, link_layer %d, gid_tbl_len %d", PORT, ibv_port_state_str(p->state),
       p->active_mtu, p->max_mtu, p->link_layer, p->gid_tbl_len);
  CHECK(p->state == IBV_PORT_ACTIVE, "port state %d", p->state);
  CHECK(p->link_layer == IBV_LINK_LAYER_ETHERNET, "link layer %d", p->link_layer);
  CHECK(p->gid_tbl_len > g_gid_index, "gid_tbl_len %d", p->gid_tbl_len);
  CHECK(p->active_mtu >= IBV_MTU_256 && p->active_mtu <= IBV_MTU_4096, "active_mtu %d", p->active_mtu);

  static const uint8_t zero[16];
  CHECK(memcmp(A.gid.raw, zero, 16) != 0, "GID %d is zero", g_gid_index);
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, A.gid.raw, text, sizeof(text));
  note("gid[%d] = %s", g_gid_index, text);
  struct ibv_gid_entry ge;
  CHECK_RC(ibv_query_gid_ex(ctx, PORT, g_gid_index, &ge, 0));
  CHECK(ge.gid_type == IBV_GID_TYPE_ROCE_V2, "gid type %u, expected RoCEv2", ge.gid_type);
  CHECK(memcmp(ge.gid.raw, A.gid.raw, 16) == 0, "ibv_query_gid_ex and ibv_query_gid differ");
  uint16_t pkey = 0;
  CHECK_RC(ibv_query_pkey(ctx, PORT, 0, &pkey));
  CHECK(ntohs(pkey) == 0xffff, "pkey[0] = 0x%x", ntohs(pkey));
  return 0;
}

static struct ibv_qp *create_qp(struct side *s, enum ibv_qp_type type, struct ibv_cq *cq) {
  struct ibv_qp_init_attr ia = {
      .send_cq = cq,
      .recv_cq = cq,
      .cap = {.max_send_wr = 64, .max_recv_wr = 64, .max_send_sge = 3, .max_recv_sge = 3,
              .max_inline_data = 64},
      .qp_type = type,
      .sq_sig_all = 0,
  };
  struct ibv_qp *qp = ibv_create_qp(s->pd, &ia);
  if (!qp && errno) {
    /* Inline data is optional: retry without it. */
    ia.cap.max_inline_data = 0;
    qp = ibv_create_qp(s->pd, &ia);
  }
  return qp;
}

static int to_init(struct ibv_qp *qp, enum ibv_qp_type type) {
  struct ibv_qp_attr a = {.qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = PORT};
  int mask = IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT;
  if (type == IBV_QPT_UD) {
    a.qkey = 0x11111111;
    mask |= IBV_QP_QKEY;
  } else {
    a.qp_access_flags =
        IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;
    mask |= IBV_QP_ACCESS_FLAGS;
  }
  CHECK_RC(ibv_modify_qp(qp, &a, mask));
  CHECK(qp->state == IBV_QPS_INIT, "qp->state %d after INIT", qp->state);
  return 0;
}

/* RESET -> INIT -> RTR -> RTS, connected to the remote QP at the remote GID. */
static int connect_rc(struct side *s, struct ibv_qp *qp, const struct side *peer, uint32_t peer_qpn) {
  if (to_init(qp, IBV_QPT_RC)) return -1;
  struct ibv_qp_attr a = {
      .qp_state = IBV_QPS_RTR,
      .path_mtu = s->port.active_mtu,
      .dest_qp_num = peer_qpn,
      .rq_psn = 0x123456 ^ peer_qpn,
      .max_dest_rd_atomic = 4,
      .min_rnr_timer = 12,
      .ah_attr = {.is_global = 1, .dlid = 0, .sl = 0, .port_num = PORT,
                  .grh = {.dgid = peer->gid, .sgid_index = (uint8_t)g_gid_index, .hop_limit = 64}},
  };
  if (g_attr.max_qp_rd_atom < 4) a.max_dest_rd_atomic = (uint8_t)g_attr.max_qp_rd_atom;
  CHECK_RC(ibv_modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                             IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER));
  memset(&a, 0, sizeof(a));
  a.qp_state = IBV_QPS_RTS;
  a.timeout = 14;
  a.retry_cnt = 7;
  a.rnr_retry = 7;
  a.sq_psn = 0x123456 ^ qp->qp_num;
  a.max_rd_atomic = g_attr.max_qp_rd_atom < 4 ? (uint8_t)g_attr.max_qp_rd_atom : 4;
  CHECK_RC(ibv_modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                             IBV_QP_MAX_QP_RD_ATOMIC));
  CHECK(qp->state == IBV_QPS_RTS, "qp->state %d after RTS", qp->state);
  struct ibv_qp_attr q;
  struct ibv_qp_init_attr qi;
  CHECK_RC(ibv_query_qp(qp, &q, IBV_QP_STATE | IBV_QP_DEST_QPN | IBV_QP_PATH_MTU, &qi));
  CHECK(q.qp_state == IBV_QPS_RTS && q.dest_qp_num == peer_qpn, "ibv_query_qp: state %d dest %u", q.qp_state,
        q.dest_qp_num);
  return 0;
}

/* A sends `len` bytes from offset 0 (one SGE, or three when sges == 3); B receives at 512 KiB. */
static int send_recv(uint32_t len, int sges, bool imm, bool inl, uint64_t id) {
  const size_t roff = BUF_SIZE / 2;
  fill(A.buf, len, (unsigned)id);
  memset(B.buf + roff, 0xee, len + 16);
  if (post_recv(B.rc, &B, roff, len + 16, id)) return -1;

  struct ibv_sge sg[3];
  uint32_t part = len / 3, off = 0;
  for (int i = 0; i < sges; i++) {
    uint32_t n = i == sges - 1 ? len - off : part;
    sg[i] = (struct ibv_sge){.addr = (uintptr_t)(A.buf + off), .length = n, .lkey = A.mr->lkey};
    off += n;
  }
  struct ibv_send_wr wr = {.wr_id = id, .sg_list = sg, .num_sge = len ? sges : 0,
                           .opcode = imm ? IBV_WR_SEND_WITH_IMM : IBV_WR_SEND,
                           .send_flags = IBV_SEND_SIGNALED | (inl ? IBV_SEND_INLINE : 0)};
  if (imm) wr.imm_data = htonl(0xabc00000u | (uint32_t)id);
  struct ibv_send_wr *bad = NULL;
  CHECK_RC(ibv_post_send(A.rc, &wr, &bad));
  if (expect_wc(A.cq, IBV_WC_SEND, id, NULL)) return -1;
  struct ibv_wc wc;
  /* B's CQ is on a channel; polling it directly is allowed too. */
  if (expect_wc(B.cq, IBV_WC_RECV, id, &wc)) return -1;
  if (wc.byte_len != len) FAIL("recv byte_len %u, expected %u", wc.byte_len, len);
  if (wc.qp_num != B.rc->qp_num) FAIL("recv qp_num %u, expected %u", wc.qp_num, B.rc->qp_num);
  if (imm && (!(wc.wc_flags & IBV_WC_WITH_IMM) || wc.imm_data != wr.imm_data))
    FAIL("immediate: wc_flags 0x%x imm 0x%x", wc.wc_flags, ntohl(wc.imm_data));
  if (!imm && (wc.wc_flags & IBV_WC_WITH_IMM)) FAIL("IBV_WC_WITH_IMM without immediate");
  if (memcmp(A.buf, B.buf + roff, len) != 0) FAIL("SEND of %u bytes: data differs", len);
  if (B.buf[roff + len] != 0xee) FAIL("SEND of %u bytes wrote past its length", len);
  return 0;
}

static int rdma(enum ibv_wr_opcode op, uint32_t len, uint64_t id) {
  const size_t loff = 4096, roff = BUF_SIZE / 4;
  struct ibv_sge sge = {.addr = (uintptr_t)(A.buf + loff), .length = len, .lkey = A.mr->lkey};
  struct ibv_send_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1, .opcode = op,
                           .send_flags = IBV_SEND_SIGNALED,
                           .wr.rdma = {.remote_addr = (uintptr_t)(B.buf + roff), .rkey = B.mr->rkey}};
  if (op == IBV_WR_RDMA_READ) {
    fill(B.buf + roff, len, (unsigned)id);
    memset(A.buf + loff, 0, len);
  } else {
    fill(A.buf + loff, len, (unsigned)id);
    memset(B.buf + roff, 0, len);
  }
  if (op == IBV_WR_RDMA_WRITE_WITH_IMM) {
    wr.imm_data = htonl((uint32_t)id);
    if (post_recv(B.rc, &B, 0, 0, id)) return -1;  /* consumed without data */
  }
  struct ibv_send_wr *bad = NULL;
  CHECK_RC(ibv_post_send(A.rc, &wr, &bad));
  if (expect_wc(A.cq, op == IBV_WR_RDMA_READ ? IBV_WC_RDMA_READ : IBV_WC_RDMA_WRITE, id, NULL)) return -1;
  if (op == IBV_WR_RDMA_WRITE_WITH_IMM) {
    struct ibv_wc wc;
    if (expect_wc(B.cq, IBV_WC_RECV_RDMA_WITH_IMM, id, &wc)) return -1;
    if (!(wc.wc_flags & IBV_WC_WITH_IMM) || ntohl(wc.imm_data) != (uint32_t)id)
      FAIL("WRITE with immediate: wc_flags 0x%x imm %u", wc.wc_flags, ntohl(wc.imm_data));
    if (wc.byte_len != len) FAIL("WRITE with immediate: byte_len %u, expected %u", wc.byte_len, len);
  }
  if (memcmp(A.buf + loff, B.buf + roff, len) != 0)
    FAIL("%s of %u bytes: data differs", op == IBV_WR_RDMA_READ ? "READ" : "WRITE", len);
  return 0;
}

static int section_rc(void) {
  static const uint32_t sizes[] = {0, 1, 63, 1024, 4096, 4097, 10000, 65536, 262144};
  uint64_t id = 1;
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    note("SEND %u bytes", sizes[i]);
    if (send_recv(sizes[i], 1, false, false, id++)) return -1;
  }
  note("SEND with immediate");
  if (send_recv(300, 1, true, false, id++)) return -1;
  note("SEND with 3 SGEs");
  if (send_recv(9000, 3, false, false, id++)) return -1;
  struct ibv_qp_attr qa;
  struct ibv_qp_init_attr qi;
  CHECK_RC(ibv_query_qp(A.rc, &qa, IBV_QP_CAP, &qi));
  if (qi.cap.max_inline_data >= 64) {
    note("SEND inline (max_inline_data %u)", qi.cap.max_inline_data);
    if (send_recv(64, 1, false, true, id++)) return -1;
  }
  static const uint32_t rsizes[] = {1, 4096, 100000, 524288};
  for (size_t i = 0; i < sizeof(rsizes) / sizeof(rsizes[0]); i++) {
    note("RDMA WRITE / WRITE with immediate / READ %u bytes", rsizes[i]);
    if (rdma(IBV_WR_RDMA_WRITE, rsizes[i], id++)) return -1;
    if (rdma(IBV_WR_RDMA_WRITE_WITH_IMM, rsizes[i], id++)) return -1;
    if (rdma(IBV_WR_RDMA_READ, rsizes[i], id++)) return -1;
  }
  /* Several work requests in one post, only the last signalled: one completion, in order. */
  note("chain of 8 WRITEs, last signalled");
  struct ibv_sge sg[8];
  struct ibv_send_wr wr[8];
  for (int i = 0; i < 8; i++) {
    fill(A.buf + 8192 * i, 8192, 100 + i);
    sg[i] = (struct ibv_sge){.addr = (uintptr_t)(A.buf + 8192 * i), .length = 8192, .lkey = A.mr->lkey};
    wr[i] = (struct ibv_send_wr){.wr_id = 1000 + i, .next = i < 7 ? &wr[i + 1] : NULL, .sg_list = &sg[i],
                                 .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
                                 .send_flags = i == 7 ? IBV_SEND_SIGNALED : 0,
                                 .wr.rdma = {.remote_addr = (uintptr_t)(B.buf + 8192 * i), .rkey = B.mr->rkey}};
  }
  struct ibv_send_wr *bad = NULL;
  CHECK_RC(ibv_post_send(A.rc, wr, &bad));
  if (expect_wc(A.cq, IBV_WC_RDMA_WRITE, 1007, NULL)) return -1;
  if (memcmp(A.buf, B.buf, 8 * 8192) != 0) FAIL("chained WRITEs: data differs");
  struct ibv_wc extra;
  if (ibv_poll_cq(A.cq, 1, &extra) != 0) FAIL("unsignalled WRs produced a completion");
  return 0;
}

static int atomic(enum ibv_wr_opcode op, uint64_t compare_add, uint64_t swap, uint64_t before,
                  uint64_t expect_after, uint64_t id) {
  uint64_t *remote = (uint64_t *)(B.buf + BUF_SIZE - 64);
  uint64_t *result = (uint64_t *)(A.buf + BUF_SIZE - 64);
  *remote = before;
  *result = 0xdeadbeefdeadbeefull;
  struct ibv_sge sge = {.addr = (uintptr_t)result, .length = 8, .lkey = A.mr->lkey};
  struct ibv_send_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1, .opcode = op,
                           .send_flags = IBV_SEND_SIGNALED,
                           .wr.atomic = {.remote_addr = (uintptr_t)remote, .compare_add = compare_add,
                                         .swap = swap, .rkey = B.mr->rkey}};
  struct ibv_send_wr *bad = NULL;
  CHECK_RC(ibv_post_send(A.rc, &wr, &bad));
  if (expect_wc(A.cq, op == IBV_WR_ATOMIC_FETCH_AND_ADD ? IBV_WC_FETCH_ADD : IBV_WC_COMP_SWAP, id, NULL))
    return -1;
  /* The original value comes back in host order, as on hardware. */
  if (*result != before) FAIL("atomic returned 0x%" PRIx64 ", expected 0x%" PRIx64, *result, before);
  if (*remote != expect_after) FAIL("remote value 0x%" PRIx64 ", expected 0x%" PRIx64, *remote, expect_after);
  return 0;
}

static int section_atomic(void) {
  if (g_attr.atomic_cap == IBV_ATOMIC_NONE) {
    printf("  atomic: the device reports IBV_ATOMIC_NONE; skipped\n");
    return 0;
  }
  if (atomic(IBV_WR_ATOMIC_FETCH_AND_ADD, 5, 0, 100, 105, 2001)) return -1;
  if (atomic(IBV_WR_ATOMIC_FETCH_AND_ADD, 1, 0, UINT64_MAX, 0, 2002)) return -1;
  if (atomic(IBV_WR_ATOMIC_CMP_AND_SWP, 7, 42, 7, 42, 2003)) return -1;           /* equal: swapped */
  if (atomic(IBV_WR_ATOMIC_CMP_AND_SWP, 8, 42, 7, 7, 2004)) return -1;            /* not equal: kept */
  if (atomic(IBV_WR_ATOMIC_CMP_AND_SWP, 0x1122334455667788ull, 1, 0x1122334455667788ull, 1, 2005)) return -1;
  return 0;
}

/* B's CQ reports through a completion channel: arm, wait on the fd, take the event, poll. */
static int section_events(void) {
  for (int round = 0; round < 5; round++) {
    CHECK_RC(ibv_req_notify_cq(B.cq, 0));
    uint64_t id = 3000 + round;
    if (post_recv(B.rc, &B, BUF_SIZE / 2, 4096, id)) return -1;
    fill(A.buf, 2048, round);
    struct ibv_sge sge = {.addr = (uintptr_t)A.buf, .length = 2048, .lkey = A.mr->lkey};
    struct ibv_send_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
                             .send_flags = IBV_SEND_SIGNALED}, *bad = NULL;
    CHECK_RC(ibv_post_send(A.rc, &wr, &bad));
    struct pollfd pfd = {.fd = B.channel->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, TIMEOUT_MS);
    CHECK(pr == 1, "the completion channel fd did not become readable within %d ms", TIMEOUT_MS);
    struct ibv_cq *ev_cq = NULL;
    void *ev_ctx = NULL;
    CHECK(ibv_get_cq_event(B.channel, &ev_cq, &ev_ctx) == 0, "ibv_get_cq_event");
    g_events_to_ack++;
    CHECK(ev_cq == B.cq && ev_ctx == &B, "event for cq %p ctx %p", (void *)ev_cq, ev_ctx);
    struct ibv_wc wc;
    if (expect_wc(B.cq, IBV_WC_RECV, id, &wc)) return -1;
    if (expect_wc(A.cq, IBV_WC_SEND, id, NULL)) return -1;
    if (memcmp(A.buf, B.buf + BUF_SIZE / 2, 2048) != 0) FAIL("event round %d: data differs", round);
  }
  /* Acknowledge some now, the rest before destroying the CQ. */
  ibv_ack_cq_events(B.cq, 2);
  g_events_to_ack -= 2;
  return 0;
}

/* UD: B's receive buffers start with the 40-byte GRH area; for RoCEv2 over IPv4 the IPv4 header
 * sits in its last 20 bytes. */
static int section_ud(void) {
  A.ud = create_qp(&A, IBV_QPT_UD, A.cq);
  CHECK(A.ud, "ibv_create_qp(UD)");
  B.ud = create_qp(&B, IBV_QPT_UD, B.cq);
  CHECK(B.ud, "ibv_create_qp(UD)");
  struct side *s[2] = {&A, &B};
  for (int i = 0; i < 2; i++) {
    if (to_init(s[i]->ud, IBV_QPT_UD)) return -1;
    struct ibv_qp_attr a = {.qp_state = IBV_QPS_RTR};
    CHECK_RC(ibv_modify_qp(s[i]->ud, &a, IBV_QP_STATE));
    a.qp_state = IBV_QPS_RTS;
    a.sq_psn = 0;
    CHECK_RC(ibv_modify_qp(s[i]->ud, &a, IBV_QP_STATE | IBV_QP_SQ_PSN));
  }
  struct ibv_ah_attr aa = {.is_global = 1, .port_num = PORT,
                           .grh = {.dgid = B.gid, .sgid_index = (uint8_t)g_gid_index, .hop_limit = 64}};
  struct ibv_ah *ah = ibv_create_ah(A.pd, &aa);
  CHECK(ah, "ibv_create_ah");
  uint32_t mtu = 128u << A.port.active_mtu;
  uint32_t sizes[] = {1, 100, mtu};
  const size_t roff = BUF_SIZE / 2;
  int rc = 0;
  for (int i = 0; i < 3 && rc == 0; i++) {
    uint32_t len = sizes[i];
    uint64_t id = 4000 + i;
    memset(B.buf + roff, 0, 40 + len);
    rc = post_recv(B.ud, &B, roff, 40 + len, id);
    if (rc) break;
    fill(A.buf, len, (unsigned)id);
    struct ibv_sge sge = {.addr = (uintptr_t)A.buf, .length = len, .lkey = A.mr->lkey};
    struct ibv_send_wr wr = {.wr_id = id, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
                             .send_flags = IBV_SEND_SIGNALED,
                             .wr.ud = {.ah = ah, .remote_qpn = B.ud->qp_num, .remote_qkey = 0x11111111}},
                       *bad = NULL;
    int prc = ibv_post_send(A.ud, &wr, &bad);
    if (prc) {
      fprintf(stderr, "FAIL ud: ibv_post_send(UD %u bytes) returned %d\n", len, prc);
      g_failures++;
      rc = -1;
      break;
    }
    struct ibv_wc wc;
    if ((rc = expect_wc(A.cq, IBV_WC_SEND, id, NULL)) || (rc = expect_wc(B.cq, IBV_WC_RECV, id, &wc))) break;
    rc = -1;
    if (wc.byte_len != 40 + len) {
      fprintf(stderr, "FAIL ud: byte_len %u, expected %u (40-byte GRH + payload)\n", wc.byte_len, 40 + len);
    } else if (!(wc.wc_flags & IBV_WC_GRH)) {
      fprintf(stderr, "FAIL ud: IBV_WC_GRH not set\n");
    } else if (wc.src_qp != A.ud->qp_num) {
      fprintf(stderr, "FAIL ud: src_qp %u, expected %u\n", wc.src_qp, A.ud->qp_num);
    } else if (memcmp(A.buf, B.buf + roff + 40, len) != 0) {
      fprintf(stderr, "FAIL ud: %u bytes: data differs\n", len);
    } else {
      rc = 0;
    }
    if (rc == 0 && i == 0) {
      const uint8_t *grh = B.buf + roff;
      bool v4 = IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)A.gid.raw);
      if (v4) {
        /* IPv4 header at bytes 20..39: version 4, source and destination addresses. */
        if ((grh[20] >> 4) != 4 || memcmp(grh + 32, A.gid.raw + 12, 4) != 0 ||
            memcmp(grh + 36, B.gid.raw + 12, 4) != 0) {
          fprintf(stderr, "FAIL ud: GRH area does not hold the IPv4 header at bytes 20-39 "
                          "(byte 20 = 0x%02x)\n", grh[20]);
          rc = -1;
        }
      } else if ((grh[0] >> 4) != 6 || memcmp(grh + 8, A.gid.raw, 16) != 0) {
        fprintf(stderr, "FAIL ud: GRH: version %d or source GID differs\n", grh[0] >> 4);
        rc = -1;
      }
      if (rc == 0) {
        /* Answer the sender with an AH built from the completion. */
        struct ibv_ah *back = ibv_create_ah_from_wc(B.pd, &wc, (struct ibv_grh *)grh, PORT);
        if (!back) {
          fprintf(stderr, "FAIL ud: ibv_create_ah_from_wc: %s\n", strerror(errno));
          rc = -1;
        } else {
          if (post_recv(A.ud, &A, roff, 40 + 64, 4100) == 0) {
            fill(B.buf, 64, 77);
            struct ibv_sge s2 = {.addr = (uintptr_t)B.buf, .length = 64, .lkey = B.mr->lkey};
            struct ibv_send_wr w2 = {.wr_id = 4100, .sg_list = &s2, .num_sge = 1, .opcode = IBV_WR_SEND,
                                     .send_flags = IBV_SEND_SIGNALED,
                                     .wr.ud = {.ah = back, .remote_qpn = wc.src_qp, .remote_qkey = 0x11111111}},
                               *b2 = NULL;
            if (ibv_post_send(B.ud, &w2, &b2) || expect_wc(B.cq, IBV_WC_SEND, 4100, NULL) ||
                expect_wc(A.cq, IBV_WC_RECV, 4100, NULL) || memcmp(B.buf, A.buf + roff + 40, 64) != 0) {
              fprintf(stderr, "FAIL ud: reply through the AH from ibv_create_ah_from_wc did not arrive intact\n");
              rc = -1;
            }
          } else {
            rc = -1;
          }
          if (ibv_destroy_ah(back)) {
            fprintf(stderr, "FAIL ud: ibv_destroy_ah\n");
            rc = -1;
          }
        }
      }
    }
    if (rc) g_failures++;
  }
  CHECK_RC(ibv_destroy_ah(ah));
  return rc;
}

/* The extended API: ibv_create_cq_ex with ibv_start_poll / ibv_next_poll / ibv_end_poll, and
 * ibv_create_qp_ex with the ibv_wr_* post-send interface. */
struct wc_ex {
  uint64_t wr_id;
  enum ibv_wc_status status;
  enum ibv_wc_opcode opcode;
  uint32_t qp_num, byte_len;
};

static void read_ex(struct ibv_cq_ex *cq, struct wc_ex *w) {
  w->wr_id = cq->wr_id;
  w->status = cq->status;
  w->opcode = ibv_wc_read_opcode(cq);
  w->qp_num = ibv_wc_read_qp_num(cq);
  w->byte_len = ibv_wc_read_byte_len(cq);
}

/* Reads exactly n completions with ibv_start_poll / ibv_next_poll / ibv_end_poll (several
 * batches if they trickle in), then checks the queue is empty. */
static int poll_ex_n(struct ibv_cq_ex *cq, struct wc_ex *out, int n) {
  struct ibv_poll_cq_attr pa = {0};
  uint64_t deadline = now_ms() + TIMEOUT_MS;
  int got = 0;
  while (got < n) {
    int rc = ibv_start_poll(cq, &pa);
    if (rc == ENOENT) {
      if (now_ms() > deadline) FAIL("%d of %d extended completions within %d ms", got, n, TIMEOUT_MS);
      usleep(10);
      continue;
    }
    if (rc) FAIL("ibv_start_poll returned %d", rc);
    do {
      if (got == n) {
        ibv_end_poll(cq);
        FAIL("more than %d extended completions (extra wr_id %" PRIu64 ")", n, cq->wr_id);
      }
      read_ex(cq, &out[got++]);
    } while ((rc = ibv_next_poll(cq)) == 0);
    ibv_end_poll(cq);
    if (rc != ENOENT) FAIL("ibv_next_poll returned %d, expected 0 or ENOENT", rc);
  }
  return 0;
}

static int poll_ex(struct ibv_cq_ex *cq, enum ibv_wc_opcode op, uint64_t id, uint32_t *byte_len) {
  struct wc_ex w;
  if (poll_ex_n(cq, &w, 1)) return -1;
  if (w.status != IBV_WC_SUCCESS) FAIL("extended completion status %d (%s)", w.status, ibv_wc_status_str(w.status));
  if (w.wr_id != id || w.opcode != op)
    FAIL("extended completion wr_id %" PRIu64 " opcode %d, expected %" PRIu64 " / %d", w.wr_id, w.opcode, id, op);
  if (w.qp_num == 0) FAIL("ibv_wc_read_qp_num returned 0");
  if (byte_len) *byte_len = w.byte_len;
  return 0;
}

static int section_ex(void) {
  struct side *s[2] = {&A, &B};
  for (int i = 0; i < 2; i++) {
    struct ibv_cq_init_attr_ex ca = {
        .cqe = 64,
        .wc_flags = IBV_WC_EX_WITH_BYTE_LEN | IBV_WC_EX_WITH_IMM | IBV_WC_EX_WITH_QP_NUM | IBV_WC_EX_WITH_SRC_QP,
    };
    s[i]->cqx = ibv_create_cq_ex(s[i]->ctx, &ca);
    CHECK(s[i]->cqx, "ibv_create_cq_ex");
    struct ibv_qp_init_attr_ex qa = {
        .send_cq = ibv_cq_ex_to_cq(s[i]->cqx),
        .recv_cq = ibv_cq_ex_to_cq(s[i]->cqx),
        .cap = {.max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1},
        .qp_type = IBV_QPT_RC,
        .sq_sig_all = 1,
        .comp_mask = IBV_QP_INIT_ATTR_PD | IBV_QP_INIT_ATTR_SEND_OPS_FLAGS,
        .pd = s[i]->pd,
        .send_ops_flags = IBV_QP_EX_WITH_SEND | IBV_QP_EX_WITH_RDMA_WRITE | IBV_QP_EX_WITH_RDMA_READ |
                          IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD,
    };
    if (g_attr.atomic_cap == IBV_ATOMIC_NONE) qa.send_ops_flags &= ~(uint64_t)IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD;
    s[i]->rcx = ibv_create_qp_ex(s[i]->ctx, &qa);
    CHECK(s[i]->rcx, "ibv_create_qp_ex(RC, SEND_OPS_FLAGS)");
    CHECK(ibv_qp_to_qp_ex(s[i]->rcx) != NULL, "ibv_qp_to_qp_ex returned NULL");
  }
  if (connect_rc(&A, A.rcx, &B, B.rcx->qp_num) || connect_rc(&B, B.rcx, &A, A.rcx->qp_num)) return -1;
  struct ibv_qp_ex *qx = ibv_qp_to_qp_ex(A.rcx);

  /* SEND */
  const size_t roff = BUF_SIZE / 2;
  if (post_recv(B.rcx, &B, roff, 8192, 5001)) return -1;
  fill(A.buf, 5000, 51);
  ibv_wr_start(qx);
  qx->wr_id = 5001;
  qx->wr_flags = IBV_SEND_SIGNALED;
  ibv_wr_send(qx);
  ibv_wr_set_sge(qx, A.mr->lkey, (uintptr_t)A.buf, 5000);
  CHECK_RC(ibv_wr_complete(qx));
  uint32_t len = 0;
  if (poll_ex(A.cqx, IBV_WC_SEND, 5001, NULL) || poll_ex(B.cqx, IBV_WC_RECV, 5001, &len)) return -1;
  if (len != 5000 || memcmp(A.buf, B.buf + roff, 5000) != 0) FAIL("wr_send: byte_len %u or data differs", len);

  /* WRITE then READ in one batch */
  fill(A.buf, 20000, 52);
  memset(B.buf + roff, 0, 20000);
  memset(A.buf + 65536, 0, 20000);
  ibv_wr_start(qx);
  qx->wr_id = 5002;
  qx->wr_flags = IBV_SEND_SIGNALED;
  ibv_wr_rdma_write(qx, B.mr->rkey, (uintptr_t)(B.buf + roff));
  ibv_wr_set_sge(qx, A.mr->lkey, (uintptr_t)A.buf, 20000);
  qx->wr_id = 5003;
  qx->wr_flags = IBV_SEND_SIGNALED;
  ibv_wr_rdma_read(qx, B.mr->rkey, (uintptr_t)(B.buf + roff));
  ibv_wr_set_sge(qx, A.mr->lkey, (uintptr_t)(A.buf + 65536), 20000);
  CHECK_RC(ibv_wr_complete(qx));
  struct wc_ex two[2];
  if (poll_ex_n(A.cqx, two, 2)) return -1;
  if (two[0].status || two[1].status || two[0].wr_id != 5002 || two[0].opcode != IBV_WC_RDMA_WRITE ||
      two[1].wr_id != 5003 || two[1].opcode != IBV_WC_RDMA_READ)
    FAIL("WRITE+READ batch: completions (%" PRIu64 ", op %d, st %d), (%" PRIu64 ", op %d, st %d)", two[0].wr_id,
         two[0].opcode, two[0].status, two[1].wr_id, two[1].opcode, two[1].status);
  if (memcmp(A.buf, B.buf + roff, 20000) != 0) FAIL("wr_rdma_write: data differs");
  if (memcmp(A.buf, A.buf + 65536, 20000) != 0) FAIL("wr_rdma_read: data differs");

  if (g_attr.atomic_cap != IBV_ATOMIC_NONE) {
    uint64_t *remote = (uint64_t *)(B.buf + roff), *result = (uint64_t *)(A.buf + 8);
    *remote = 1000;
    *result = 0;
    ibv_wr_start(qx);
    qx->wr_id = 5004;
    qx->wr_flags = IBV_SEND_SIGNALED;
    ibv_wr_atomic_fetch_add(qx, B.mr->rkey, (uintptr_t)remote, 24);
    ibv_wr_set_sge(qx, A.mr->lkey, (uintptr_t)result, 8);
    CHECK_RC(ibv_wr_complete(qx));
    if (poll_ex(A.cqx, IBV_WC_FETCH_ADD, 5004, NULL)) return -1;
    if (*result != 1000 || *remote != 1024)
      FAIL("wr_atomic_fetch_add: got %" PRIu64 ", remote %" PRIu64, *result, *remote);
  }
  /* An aborted batch posts nothing. */
  ibv_wr_start(qx);
  qx->wr_id = 5005;
  ibv_wr_send(qx);
  ibv_wr_set_sge(qx, A.mr->lkey, (uintptr_t)A.buf, 16);
  ibv_wr_abort(qx);
  usleep(20000);
  struct ibv_poll_cq_attr pa = {0};
  int rc = ibv_start_poll(A.cqx, &pa);
  if (rc == 0) {
    ibv_end_poll(A.cqx);
    FAIL("ibv_wr_abort: a completion appeared");
  }
  if (rc != ENOENT) FAIL("ibv_start_poll on an empty CQ returned %d, expected ENOENT", rc);
  return 0;
}

/* A send queue slot is free once its completion has been polled: a program that keeps the
 * queue full (post up to max_send_wr, wait for a completion event, poll, post more, as
 * `ib_send_bw -e` does) must never see ENOMEM. Only every 100th WR is signalled; its completion
 * frees it and the unsignalled WRs before it. Waiting on the completion channel matters: the program then
 * wakes the moment the completion is published, while the adapter's own thread completes. */
#define SQFULL_DEPTH 128 /* like perftest's default -t */
#define SQFULL_EVERY 100 /* like perftest's CQ moderation */
#define SQFULL_SIZE 65536
#define SQFULL_TOTAL 3000
static int section_sqfull(void) {
  struct ibv_comp_channel *ch = ibv_create_comp_channel(A.ctx);
  CHECK(ch, "ibv_create_comp_channel");
  struct ibv_cq *cq = ibv_create_cq(A.ctx, 64, NULL, ch, 0);
  if (!cq) ibv_destroy_comp_channel(ch);
  CHECK(cq, "ibv_create_cq");
  struct ibv_qp_init_attr ia = {.send_cq = cq, .recv_cq = cq,
                                .cap = {.max_send_wr = SQFULL_DEPTH, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
                                .qp_type = IBV_QPT_RC};
  struct ibv_qp *qa = ibv_create_qp(A.pd, &ia);
  ia.send_cq = ia.recv_cq = B.cq;
  struct ibv_qp *qb = ibv_create_qp(B.pd, &ia);
  int rc = qa && qb ? 0 : -1;
  if (rc) {
    fprintf(stderr, "FAIL sqfull: ibv_create_qp(max_send_wr 16): %s\n", strerror(errno));
    g_failures++;
  }
  if (rc == 0) rc = connect_rc(&A, qa, &B, qb->qp_num) || connect_rc(&B, qb, &A, qa->qp_num) ? -1 : 0;
  uint32_t depth = 0;
  if (rc == 0) {
    struct ibv_qp_attr at;
    struct ibv_qp_init_attr got;
    rc = ibv_query_qp(qa, &at, IBV_QP_CAP, &got);
    depth = got.cap.max_send_wr;
  }
  const int total = SQFULL_TOTAL, every = SQFULL_EVERY;
  int posted = 0, done = 0; /* done: WRs whose completion (or a later one) was polled */
  unsigned events = 0;
  uint64_t deadline = now_ms() + 30000;
  while (rc == 0 && done < total) {
    while (posted < total && (uint32_t)(posted - done) < depth) {
      struct ibv_sge sge = {.addr = (uintptr_t)A.buf, .length = SQFULL_SIZE, .lkey = A.mr->lkey};
      struct ibv_send_wr wr = {.wr_id = (uint64_t)posted, .sg_list = &sge, .num_sge = 1,
                               .opcode = IBV_WR_RDMA_WRITE,
                               .send_flags = (posted % every == every - 1 || posted == total - 1) ? IBV_SEND_SIGNALED : 0,
                               .wr.rdma = {.remote_addr = (uintptr_t)B.buf, .rkey = B.mr->rkey}},
                         *bad = NULL;
      int prc = ibv_post_send(qa, &wr, &bad);
      if (prc) {
        fprintf(stderr,
                "FAIL sqfull: ibv_post_send of WR %d returned %d (%s) with %d WRs outstanding, after polling the "
                "completion of WR %d (send queue depth %u): a completion was visible before its WQE's slot was "
                "released\n",
                posted, prc, strerror(prc), posted - done, done - 1, depth);
        g_failures++;
        rc = -1;
        break;
      }
      posted++;
    }
    if (rc) break;
    struct ibv_wc wc[8];
    int n = ibv_poll_cq(cq, 8, wc);
    if (n == 0) {
      /* Arm, re-check (a completion may have arrived before arming), then sleep on the channel. */
      if (ibv_req_notify_cq(cq, 0)) {
        fprintf(stderr, "FAIL sqfull: ibv_req_notify_cq\n");
        g_failures++;
        rc = -1;
        break;
      }
      n = ibv_poll_cq(cq, 8, wc);
      if (n == 0) {
        struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
        struct ibv_cq *ecq;
        void *ectx;
        if (poll(&pfd, 1, TIMEOUT_MS) != 1 || ibv_get_cq_event(ch, &ecq, &ectx) != 0) {
          fprintf(stderr, "FAIL sqfull: no completion event within %d ms (%d of %d done)\n", TIMEOUT_MS, done,
                  total);
          g_failures++;
          rc = -1;
          break;
        }
        events++;
        n = ibv_poll_cq(cq, 8, wc);
      }
    }
    if (n < 0) {
      fprintf(stderr, "FAIL sqfull: ibv_poll_cq returned %d\n", n);
      g_failures++;
      rc = -1;
    }
    for (int i = 0; i < n && rc == 0; i++) {
      if (wc[i].status != IBV_WC_SUCCESS) {
        fprintf(stderr, "FAIL sqfull: WR %" PRIu64 " completed with %s\n", wc[i].wr_id,
                ibv_wc_status_str(wc[i].status));
        g_failures++;
        rc = -1;
      }
      done = (int)wc[i].wr_id + 1;
    }
    if (rc == 0 && now_ms() > deadline) {
      fprintf(stderr, "FAIL sqfull: %d of %d WRs completed in 30 s\n", done, total);
      g_failures++;
      rc = -1;
    }
  }
  note("send queue depth %u (asked %d): %d of %d WRs posted, %u completion events", depth, SQFULL_DEPTH, posted, total,
       events);
  if (rc != 0 && qa) {
    /* Flush what is in flight before destroying. */
    struct ibv_qp_attr err = {.qp_state = IBV_QPS_ERR};
    ibv_modify_qp(qa, &err, IBV_QP_STATE);
    struct ibv_wc wc[16];
    uint64_t t = now_ms() + 1000;
    while (now_ms() < t) ibv_poll_cq(cq, 16, wc);
  }
  int d1 = qa ? ibv_destroy_qp(qa) : 0, d2 = qb ? ibv_destroy_qp(qb) : 0;
  ibv_ack_cq_events(cq, events);
  int d3 = ibv_destroy_cq(cq), d4 = ibv_destroy_comp_channel(ch);
  if (rc == 0) {
    CHECK_RC(d1);
    CHECK_RC(d2);
    CHECK_RC(d3);
    CHECK_RC(d4);
  }
  return rc;
}

/* Wrong use gets what rdma-core gives: an error code or NULL + errno, never a crash. */
static int section_misuse(void) {
  struct ibv_port_attr pa;
  int rc = ibv_query_port(A.ctx, (uint8_t)(g_attr.phys_port_cnt + 1), &pa);
  CHECK(rc != 0, "ibv_query_port(port %d) succeeded", g_attr.phys_port_cnt + 1);
  errno = 0;
  struct ibv_cq *cq = ibv_create_cq(A.ctx, g_attr.max_cqe + 1, NULL, NULL, 0);
  CHECK(cq == NULL && errno == EINVAL, "ibv_create_cq(max_cqe + 1): cq %p", (void *)cq);
  errno = 0;
  cq = ibv_create_cq(A.ctx, 4, NULL, NULL, A.ctx->num_comp_vectors);
  CHECK(cq == NULL && errno == EINVAL, "ibv_create_cq(comp_vector = num_comp_vectors): cq %p", (void *)cq);
  /* A PD with a live MR and QP cannot go; a CQ with a live QP cannot go. */
  /* (When one wrongly succeeds, forget the object so teardown does not destroy it twice.) */
  rc = ibv_dealloc_pd(A.pd);
  if (rc == 0) A.pd = NULL, A.mr = NULL, A.rc = A.ud = A.rcx = NULL;
  CHECK(rc == EBUSY, "ibv_dealloc_pd with live MR/QP returned %d, expected EBUSY", rc);
  rc = ibv_destroy_cq(A.cq);
  if (rc == 0) A.cq = NULL;
  CHECK(rc == EBUSY, "ibv_destroy_cq with live QPs returned %d, expected EBUSY", rc);
  rc = ibv_destroy_comp_channel(B.channel);
  if (rc == 0) B.channel = NULL;
  CHECK(rc == EBUSY, "ibv_destroy_comp_channel with a live CQ returned %d, expected EBUSY", rc);
  /* REMOTE_WRITE without LOCAL_WRITE is invalid. */
  errno = 0;
  struct ibv_mr *mr = ibv_reg_mr(A.pd, A.buf, 4096, IBV_ACCESS_REMOTE_WRITE);
  CHECK(mr == NULL && errno != 0, "ibv_reg_mr(REMOTE_WRITE only) succeeded");
  /* UD address handle without GRH on RoCE. */
  struct ibv_ah_attr aa = {.is_global = 0, .dlid = 1, .port_num = PORT};
  struct ibv_ah *ah = ibv_create_ah(A.pd, &aa);
  CHECK(ah == NULL, "ibv_create_ah without GRH succeeded on RoCE");
  /* post_recv on a QP in RESET */
  struct ibv_qp *qp = create_qp(&A, IBV_QPT_RC, A.cq);
  CHECK(qp, "ibv_create_qp");
  struct ibv_sge sge = {.addr = (uintptr_t)A.buf, .length = 16, .lkey = A.mr->lkey};
  struct ibv_recv_wr rwr = {.wr_id = 1, .sg_list = &sge, .num_sge = 1}, *bad = NULL;
  rc = ibv_post_recv(qp, &rwr, &bad);
  int drc = ibv_destroy_qp(qp);
  CHECK(rc != 0 && bad == &rwr, "ibv_post_recv in RESET returned %d (bad_wr %p)", rc, (void *)bad);
  CHECK_RC(drc);
  /* Illegal state transition RESET -> RTS. */
  qp = create_qp(&A, IBV_QPT_RC, A.cq);
  CHECK(qp, "ibv_create_qp");
  struct ibv_qp_attr qa = {.qp_state = IBV_QPS_RTS};
  rc = ibv_modify_qp(qp, &qa, IBV_QP_STATE);
  drc = ibv_destroy_qp(qp);
  CHECK(rc != 0, "ibv_modify_qp(RESET -> RTS) succeeded");
  CHECK_RC(drc);
  CHECK(strcmp(ibv_wc_status_str(IBV_WC_REM_ACCESS_ERR), "remote access error") == 0,
        "ibv_wc_status_str: '%s'", ibv_wc_status_str(IBV_WC_REM_ACCESS_ERR));
  return 0;
}

/* Destroys everything; every destroy must return 0. Safe after a partial setup. */
static int teardown(void) {
  g_section = "teardown";
  int bad = 0;
#define DESTROY(call)                                                                   \
  do {                                                                                  \
    int rc_ = (call);                                                                   \
    if (rc_) {                                                                          \
      fprintf(stderr, "FAIL teardown: %s returned %d (%s)\n", #call, rc_, strerror(rc_)); \
      bad++;                                                                            \
    }                                                                                   \
  } while (0)
  struct side *s[2] = {&A, &B};
  for (int i = 0; i < 2; i++) {
    if (s[i]->rcx) DESTROY(ibv_destroy_qp(s[i]->rcx));
    if (s[i]->cqx) DESTROY(ibv_destroy_cq(ibv_cq_ex_to_cq(s[i]->cqx)));
    if (s[i]->ud) DESTROY(ibv_destroy_qp(s[i]->ud));
    if (s[i]->rc) DESTROY(ibv_destroy_qp(s[i]->rc));
  }
  for (int i = 0; i < 2; i++) {
    if (s[i]->cq) {
      if (s[i] == &B && g_events_to_ack) ibv_ack_cq_events(B.cq, g_events_to_ack);
      DESTROY(ibv_destroy_cq(s[i]->cq));
    }
    if (s[i]->channel) DESTROY(ibv_destroy_comp_channel(s[i]->channel));
    if (s[i]->mr) DESTROY(ibv_dereg_mr(s[i]->mr));
    if (s[i]->pd) DESTROY(ibv_dealloc_pd(s[i]->pd));
    if (s[i]->ctx) DESTROY(ibv_close_device(s[i]->ctx));
    free(s[i]->buf);
  }
  if (g_list) ibv_free_device_list(g_list);
  g_failures += bad;
  return bad ? -1 : 0;
}

/* Prints which libibverbs.so.1 the dynamic linker gave us. */
static void print_library(void) {
  Dl_info info;
  void *sym = (void *)&ibv_get_device_list;
  if (dladdr(sym, &info) && info.dli_fname) {
    char real[4096];
    printf("libibverbs: %s\n", realpath(info.dli_fname, real) ? real : info.dli_fname);
  }
}

struct section {
  const char *name;
  int (*fn)(void);
};

int main(int argc, char **argv) {
  const char *devname = NULL;
  int opt;
  setvbuf(stdout, NULL, _IOLBF, 0);
  while ((opt = getopt(argc, argv, "d:g:vh")) != -1) {
    switch (opt) {
      case 'd': devname = optarg; break;
      case 'g': g_gid_index = atoi(optarg); break;
      case 'v': g_verbose = true; break;
      default:
        fprintf(stderr, "usage: %s [-d DEVICE] [-g GID_INDEX] [-v] [device rc atomic events ud ex misuse sqfull]\n",
                argv[0]);
        return 2;
    }
  }
  static const struct section sections[] = {
      {"device", check_device}, {"rc", section_rc},     {"atomic", section_atomic}, {"events", section_events},
      {"ud", section_ud},       {"ex", section_ex},     {"misuse", section_misuse}, {"sqfull", section_sqfull},
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

  print_library();
  int rc = section_device();
  if (rc == 0) {
    for (int i = 0; g_list[i]; i++)
      if (!devname || strcmp(ibv_get_device_name(g_list[i]), devname) == 0) {
        g_dev = g_list[i];
        break;
      }
    if (!g_dev) {
      fprintf(stderr, "FAIL setup: no device named %s\n", devname);
      g_failures++;
      rc = -1;
    }
  }
  if (rc == 0) {
    printf("device: %s, node GUID 0x%016" PRIx64 "\n", ibv_get_device_name(g_dev),
           (uint64_t)be64toh(ibv_get_device_guid(g_dev)));
    rc = open_side(&A) || open_side(&B) || ibv_query_device(A.ctx, &g_attr) ? -1 : 0;
  }
  if (rc == 0) {
    A.rc = create_qp(&A, IBV_QPT_RC, A.cq);
    B.rc = create_qp(&B, IBV_QPT_RC, B.cq);
    if (!A.rc || !B.rc) {
      fprintf(stderr, "FAIL setup: ibv_create_qp(RC): %s\n", strerror(errno));
      g_failures++;
      rc = -1;
    }
  }
  if (rc == 0) {
    g_section = "connect";
    rc = connect_rc(&A, A.rc, &B, B.rc->qp_num) || connect_rc(&B, B.rc, &A, A.rc->qp_num) ? -1 : 0;
  }
  if (rc == 0) {
    for (size_t i = 0; i < nsec; i++) {
      if (!want[i]) continue;
      g_section = sections[i].name;
      uint64_t t0 = now_ms();
      int r = sections[i].fn();
      printf("%-7s %s (%" PRIu64 " ms)\n", sections[i].name, r == 0 ? "ok" : "FAILED", now_ms() - t0);
      /* A failed data-path section can leave work in flight; don't run more traffic on it. */
      if (r != 0 && strcmp(sections[i].name, "device") != 0 && strcmp(sections[i].name, "misuse") != 0) break;
    }
  }
  int t = teardown();
  printf("teardown %s\n", t == 0 ? "ok" : "FAILED");
  if (g_failures) {
    printf("user_program: %d failure(s)\n", g_failures);
    return 1;
  }
  printf("user_program: all checks passed\n");
  return 0;
}
