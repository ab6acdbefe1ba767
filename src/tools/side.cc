#include "tools/side.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

namespace softrdma::tools {

namespace {

constexpr uint32_t kAccess = mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead | mem::kRemoteAtomic;

void modify(Side& s, const QpAttr& a, uint32_t mask, const char* step) {
  const char* why = "";
  int rc = s.dev->modify_qp(s.qp, a, mask, &why);
  if (rc != 0)
    throw ToolError(fmt::format("{}: QP {} to {} refused: {} ({})", s.dev->name(), s.qp->qpn(), step, why,
                                std::strerror(rc)));
}

}  // namespace

Side::Side(const DeviceConfig& cfg, const SideOptions& o) : opt(o) {
  std::string err;
  owned_ = Device::open(cfg, &err);
  if (!owned_) throw ToolError(fmt::format("cannot open device {}: {}", cfg.name, err));
  dev = owned_.get();
  init();
}

Side::Side(Device& shared, const SideOptions& o) : dev(&shared), opt(o) { init(); }

void Side::init() {
  const std::string& n = dev->name();
  const SideOptions& o = opt;
  int e = 0;
  pd = dev->alloc_pd();
  scq = dev->create_cq(2 * o.max_wr, nullptr, nullptr, &e);
  if (scq) rcq = dev->create_cq(2 * o.max_wr, nullptr, nullptr, &e);
  if (!pd || !scq || !rcq) throw ToolError(fmt::format("{}: cannot create a CQ: {}", n, std::strerror(e)));
  QpInitAttr init;
  init.type = o.type;
  init.send_cq = scq;
  init.recv_cq = rcq;
  init.cap = {o.max_wr, o.max_wr, 1, 1, 64};
  qp = dev->create_qp(pd, init, &e);
  if (!qp) throw ToolError(fmt::format("{}: cannot create a QP: {}", n, std::strerror(e)));
  buf_.assign(o.buf_size, 0);
  mr = dev->reg_mr(pd, buf_.data(), buf_.size(), kAccess, &e);
  if (!mr) throw ToolError(fmt::format("{}: cannot register memory: {}", n, std::strerror(e)));
}

Side::~Side() {
  if (!dev) return;
  if (qp) dev->destroy_qp(qp);
  if (ah) dev->destroy_ah(ah);
  if (mr) dev->dereg_mr(mr);
  if (scq) dev->destroy_cq(scq);
  if (rcq) dev->destroy_cq(rcq);
  if (pd) dev->dealloc_pd(pd);
}

PeerInfo Side::info() const {
  return PeerInfo{dev->gid(), qp->qpn(), 0, mr->rkey, addr(), buf_.size()};
}

void Side::connect(const PeerInfo& peer) {
  using namespace transport;
  QpAttr a;
  a.state = QpState::kInit;
  a.access = kAccess;
  a.qkey = kToolQkey;
  bool ud = opt.type == QpType::kUd;
  modify(*this, a, kAttrState | kAttrPkeyIndex | kAttrPort | (ud ? kAttrQkey : kAttrAccessFlags), "INIT");
  a.state = QpState::kRtr;
  a.path_mtu = mtu_enum_of(dev->config().mtu);
  a.dest_qpn = peer.qpn;
  a.rq_psn = peer.psn;
  a.av.dgid = peer.gid;
  a.max_dest_rd_atomic = opt.max_rd_atomic;
  a.min_rnr_timer = 1;
  modify(*this, a,
         ud ? kAttrState
            : kAttrState | kAttrAv | kAttrPathMtu | kAttrDestQpn | kAttrRqPsn | kAttrMaxDestRdAtomic |
                  kAttrMinRnrTimer,
         "RTR");
  a.state = QpState::kRts;
  a.sq_psn = 0;
  a.timeout = opt.timeout;
  a.retry_cnt = 7;
  a.rnr_retry = 7;
  a.max_rd_atomic = opt.max_rd_atomic;
  modify(*this, a,
         ud ? kAttrState | kAttrSqPsn
            : kAttrState | kAttrSqPsn | kAttrTimeout | kAttrRetryCnt | kAttrRnrRetry | kAttrMaxQpRdAtomic,
         "RTS");
  if (ud) {
    AddressVector av;
    av.dgid = peer.gid;
    int e = 0;
    ah = dev->create_ah(pd, av, &e);
    if (!ah) throw ToolError(fmt::format("{}: cannot create an address handle: {}", dev->name(), std::strerror(e)));
  }
}

void Side::post_send(const SendWr& wr) {
  size_t bad = 0;
  int rc = dev->post_send(qp, &wr, 1, &bad);
  if (rc != 0)
    throw ToolError(fmt::format("{}: QP {}: post_send {} failed: {}", dev->name(), qp->qpn(), name(wr.opcode),
                                std::strerror(rc)));
}

void Side::post_recv(uint64_t wr_id, size_t off, uint32_t len) {
  Sge sg = sge(off, len);
  RecvWr wr{wr_id, &sg, len ? 1u : 0u};
  int rc = dev->post_recv(qp, &wr, 1, nullptr);
  if (rc != 0)
    throw ToolError(fmt::format("{}: QP {}: post_recv failed: {}", dev->name(), qp->qpn(), std::strerror(rc)));
}

int Side::poll(Cq* cq, Wc* out, int n) {
  int got = dev->poll_cq(cq, out, n);
  for (int i = 0; i < got; ++i)
    if (out[i].status != WcStatus::kSuccess)
      throw ToolError(fmt::format("{}: QP {}: {} completion (wr_id {}) failed: {} (vendor_err {})", dev->name(),
                                  out[i].qp_num, name(out[i].opcode), out[i].wr_id, name(out[i].status),
                                  out[i].vendor_err));
  return got;
}

Wc Side::wait(Cq* cq) {
  Wc wc;
  auto deadline = std::chrono::steady_clock::now() + opt.wait_limit;
  while (poll(cq, &wc, 1) == 0)
    if (std::chrono::steady_clock::now() > deadline)
      throw ToolError(fmt::format("{}: QP {}: no {} completion within {} ms", dev->name(), qp->qpn(),
                                  cq == scq ? "send" : "receive", opt.wait_limit.count()));
  return wc;
}

uint8_t mtu_enum_of(uint32_t bytes) {
  for (uint8_t e = 1; e <= 5; ++e)
    if ((128u << e) == bytes) return e;
  return 0;
}

void fill_pattern(uint8_t* p, size_t len, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    std::memcpy(p + i, &x, 8);
  }
  x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  for (; i < len; ++i, x >>= 8) p[i] = static_cast<uint8_t>(x);
}

void check_bytes(const uint8_t* got, const uint8_t* want, size_t len, const std::string& what) {
  if (std::memcmp(got, want, len) == 0) return;
  size_t i = 0;
  while (got[i] == want[i]) ++i;
  throw ToolError(fmt::format("data mismatch in {}: byte {} of {} is 0x{:02x}, expected 0x{:02x}", what, i, len,
                              got[i], want[i]));
}

LatencySummary summarize(std::vector<double> ns) {
  if (ns.empty()) return {NAN, NAN};
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) { return ns[std::min(ns.size() - 1, static_cast<size_t>(q * double(ns.size())))] / 1e3; };
  return {at(0.5), at(0.99)};
}

}  // namespace softrdma::tools
