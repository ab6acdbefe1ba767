// verbs_overhead: what the drop-in library adds on the fast path.
//
// The same work runs twice in one process, once through the C++ API (softrdma::Device) and once
// through libibverbs (ibv_post_send / ibv_poll_cq, i.e. ctx->ops into libibverbs.so.1): an RC QP
// connected to itself on its own device, 8-byte RDMA WRITEs, either one at a time (post one,
// poll until it completes) or in chains of 16 (post 16 as one list, poll all 16). Rounds
// alternate between the two paths; the table shows the median ns per operation.
//
//   build/src/verbs/verbs_overhead [ops-per-round] [rounds] [mem]   (mem: the in-memory rows only)
#include <infiniband/verbs.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "device/device.h"

using namespace softrdma;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "verbs_overhead: %s\n", what);
  std::exit(1);
}

// ---- the C++ API ----

struct CppSide {
  std::unique_ptr<Device> dev;
  Cq* cq = nullptr;
  QueuePair* qp = nullptr;
  Mr* mr = nullptr;
  std::vector<uint8_t> buf = std::vector<uint8_t>(1 << 16);

  void open() {
    std::string err;
    DeviceConfig cfg;
    dev = Device::open(cfg, &err);
    if (!dev) die(err.c_str());
    Pd* pd = dev->alloc_pd();
    int e = 0;
    cq = dev->create_cq(1024, nullptr, nullptr, &e);
    QpInitAttr init;
    init.send_cq = init.recv_cq = cq;
    init.cap = {256, 16, 1, 1, 0};
    qp = dev->create_qp(pd, init, &e);
    mr = dev->reg_mr(pd, buf.data(), buf.size(), mem::kLocalWrite | mem::kRemoteWrite, &e);
    if (!cq || !qp || !mr) die("C++ API setup");
    QpAttr a;
    a.state = QpState::kInit;
    a.access = mem::kRemoteWrite;
    using namespace transport;
    if (dev->modify_qp(qp, a, kAttrState | kAttrPkeyIndex | kAttrPort | kAttrAccessFlags)) die("INIT");
    a.state = QpState::kRtr;
    a.path_mtu = 5;
    a.dest_qpn = qp->qpn();
    a.av.dgid = dev->gid();
    a.max_dest_rd_atomic = 1;
    if (dev->modify_qp(qp, a, kAttrState | kAttrAv | kAttrPathMtu | kAttrDestQpn | kAttrRqPsn | kAttrMaxDestRdAtomic |
                                  kAttrMinRnrTimer))
      die("RTR");
    a.state = QpState::kRts;
    if (dev->modify_qp(qp, a, kAttrState | kAttrSqPsn | kAttrTimeout | kAttrRetryCnt | kAttrRnrRetry | kAttrMaxQpRdAtomic))
      die("RTS");
  }

  void to_err() {
    QpAttr a;
    a.state = QpState::kErr;
    if (dev->modify_qp(qp, a, transport::kAttrState)) die("ERR");
  }

  void run(int ops, int chain, bool flushed = false) {
    Sge sge{reinterpret_cast<uint64_t>(buf.data()), 8, mr->lkey};
    SendWr wrs[16];
    for (int i = 0; i < chain; ++i) {
      wrs[i].opcode = WrOpcode::kRdmaWrite;
      wrs[i].flags = kSignaled;
      wrs[i].sg_list = &sge;
      wrs[i].num_sge = 1;
      wrs[i].rdma.remote_addr = reinterpret_cast<uint64_t>(buf.data()) + 4096;
      wrs[i].rdma.rkey = mr->rkey;
    }
    Wc wc[16];
    for (int done = 0; done < ops; done += chain) {
      if (dev->post_send(qp, wrs, static_cast<size_t>(chain), nullptr) != 0) die("post_send");
      for (int got = 0; got < chain;) {
        int n = dev->poll_cq(cq, wc, 16);
        for (int i = 0; i < n; ++i)
          if (wc[i].status != (flushed ? WcStatus::kWrFlushErr : WcStatus::kSuccess)) die("completion status");
        got += n;
      }
    }
  }
};

// ---- libibverbs ----

struct VerbsSide {
  ibv_context* ctx = nullptr;
  ibv_cq* cq = nullptr;
  ibv_qp* qp = nullptr;
  ibv_mr* mr = nullptr;
  std::vector<uint8_t> buf = std::vector<uint8_t>(1 << 16);

  void open() {
    int n = 0;
    ibv_device** list = ibv_get_device_list(&n);
    if (list == nullptr || n == 0) die("no verbs device");
    ctx = ibv_open_device(list[0]);
    ibv_free_device_list(list);
    if (ctx == nullptr) die("ibv_open_device");
    ibv_pd* pd = ibv_alloc_pd(ctx);
    cq = ibv_create_cq(ctx, 1024, nullptr, nullptr, 0);
    ibv_qp_init_attr ia{};
    ia.send_cq = ia.recv_cq = cq;
    ia.cap.max_send_wr = 256;
    ia.cap.max_recv_wr = 16;
    ia.cap.max_send_sge = ia.cap.max_recv_sge = 1;
    ia.qp_type = IBV_QPT_RC;
    qp = ibv_create_qp(pd, &ia);
    mr = ibv_reg_mr(pd, buf.data(), buf.size(), IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    if (!cq || !qp || !mr) die("verbs setup");
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_INIT;
    a.port_num = 1;
    a.qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
    if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) die("INIT");
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = IBV_MTU_4096;
    a.dest_qp_num = qp->qp_num;
    a.max_dest_rd_atomic = 1;
    a.ah_attr.is_global = 1;
    a.ah_attr.port_num = 1;
    a.ah_attr.grh.hop_limit = 1;
    ibv_query_gid(ctx, 1, 0, &a.ah_attr.grh.dgid);
    if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
      die("RTR");
    a.qp_state = IBV_QPS_RTS;
    a.timeout = 14;
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.max_rd_atomic = 1;
    if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                                  IBV_QP_MAX_QP_RD_ATOMIC))
      die("RTS");
  }

  void to_err() {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_ERR;
    if (ibv_modify_qp(qp, &a, IBV_QP_STATE)) die("ERR");
  }

  void run(int ops, int chain, bool flushed = false) {
    ibv_sge sge{reinterpret_cast<uint64_t>(buf.data()), 8, mr->lkey};
    ibv_send_wr wrs[16]{};
    for (int i = 0; i < chain; ++i) {
      wrs[i].opcode = IBV_WR_RDMA_WRITE;
      wrs[i].send_flags = IBV_SEND_SIGNALED;
      wrs[i].sg_list = &sge;
      wrs[i].num_sge = 1;
      wrs[i].wr.rdma.remote_addr = reinterpret_cast<uint64_t>(buf.data()) + 4096;
      wrs[i].wr.rdma.rkey = mr->rkey;
      wrs[i].next = i + 1 < chain ? &wrs[i + 1] : nullptr;
    }
    ibv_wc wc[16];
    for (int done = 0; done < ops; done += chain) {
      ibv_send_wr* bad;
      if (ibv_post_send(qp, wrs, &bad) != 0) die("ibv_post_send");
      for (int got = 0; got < chain;) {
        int n = ibv_poll_cq(cq, 16, wc);
        for (int i = 0; i < n; ++i)
          if (wc[i].status != (flushed ? IBV_WC_WR_FLUSH_ERR : IBV_WC_SUCCESS)) die("completion status");
        got += n;
      }
    }
  }
};

template <typename F>
double ns_per_op(int ops, F&& f) {
  auto t0 = Clock::now();
  f();
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / ops;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int ops = argc > 1 ? std::atoi(argv[1]) : 20000;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 7;
  CppSide cpp;
  VerbsSide verbs;
  cpp.open();
  verbs.open();
  std::printf("%-34s %14s %14s %10s\n", "8-byte RDMA WRITE, RC to itself", "C++ API ns/op", "verbs ns/op",
              "verbs/C++");
  auto row = [&](const char* name, int chain, bool flushed) {
    int n = ops / chain * chain;
    cpp.run(n / 10, chain, flushed);  // warm up
    verbs.run(n / 10, chain, flushed);
    std::vector<double> a, b;
    for (int r = 0; r < rounds; ++r) {
      a.push_back(ns_per_op(n, [&] { cpp.run(n, chain, flushed); }));
      b.push_back(ns_per_op(n, [&] { verbs.run(n, chain, flushed); }));
    }
    double ma = median(a), mb = median(b);
    std::printf("%-34s %14.0f %14.0f %9.3fx\n", name, ma, mb, mb / ma);
  };
  bool mem_only = argc > 3 && std::strcmp(argv[3], "mem") == 0;
  if (!mem_only) {
    row("post 1, poll to completion", 1, false);
    row("post 16 as a list, poll 16", 16, false);
  }
  cpp.to_err();
  verbs.to_err();
  row("in memory (ERR): post 1, poll 1", 1, true);
  row("in memory (ERR): post 16, poll 16", 16, true);
  return 0;
}
