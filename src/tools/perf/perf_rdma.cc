// The RDMA side of softrdma perf: one adapter, its RC QPs and buffer, and the measurement loops.
//
// Progress: every loop here polls a CQ with Device::poll_cq, which makes progress on the calling
// thread when the CQ is empty (the fast path of the design: no hand-off to the sleeping
// background thread). Where a loop must reap completions without a progress pass it calls the
// CQ's own poll().
//
// Bandwidth and message rate (bw_loop): up to `window` operations outstanding per QP, posted in
// chains of post_list work requests, every cq_mod-th one signaled (and the last one); a signaled
// completion retires every operation before it on that QP (RC completes in order).
//
// Latency: SEND is a ping-pong (the server answers each message; half the round trip is
// reported, like ib_send_lat); WRITE is a ping-pong in memory (each side polls the last byte of
// its buffer for the iteration's tag, then writes back, like ib_write_lat); READ and atomics are
// single outstanding round trips (the full round trip, like ib_read_lat / ib_atomic_lat).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

#include "link/shm_link.h"
#include "tools/perf/perf.h"

namespace softrdma::tools::perf {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kAccess = mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead | mem::kRemoteAtomic;
constexpr uint8_t kAckTimeout = 14;  // 4.096 us * 2^14 = 67 ms, perftest's default
constexpr uint8_t kMaxRdAtomic = 16;  // the device limit
constexpr uint8_t kMinRnrTimer = 1;   // 0.01 ms
constexpr uint64_t kIndexMask = (uint64_t{1} << 48) - 1;
constexpr uint32_t kSignalEvery = 64;  // latency loops: one signaled send in this many
constexpr size_t kMaxSamples = 20'000'000;
constexpr uint32_t kInlineFlag = kInline;
constexpr uint32_t kSignaledFlag = kSignaled;

uint8_t mtu_enum(uint32_t bytes) {
  uint8_t e = 1;
  while (e < 5 && (128u << e) < bytes) ++e;
  return e;
}

// The byte a WRITE ping-pong iteration leaves in the last byte of the buffer: never 0 (the
// buffer starts zeroed) and different from the previous iteration's.
uint8_t tag(uint64_t i) { return static_cast<uint8_t>(i % 255 + 1); }

uint8_t load_byte(const uint8_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void store_byte(uint8_t* p, uint8_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

double micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

WrOpcode wr_opcode(Op op, AtomicKind k) {
  switch (op) {
    case Op::kSend: return WrOpcode::kSend;
    case Op::kWrite: return WrOpcode::kRdmaWrite;
    case Op::kRead: return WrOpcode::kRdmaRead;
    default: return k == AtomicKind::kCompSwap ? WrOpcode::kCompSwap : WrOpcode::kFetchAdd;
  }
}

// Decides when a loop is stuck. Nothing completed for kStallLimit is not enough: under heavy
// injected loss a large message can take longer than that to get through go-back-N, while
// NAKs and retransmissions keep arriving. So a stall is kStallLimit with neither a completion
// nor a received packet; and no single test may run longer than its time limit.
class Watchdog {
 public:
  Watchdog(Device& dev, double duration)
      : dev_(dev), start_(Clock::now()), last_(start_),
        limit_(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration) + kTestLimit)),
        rx_(dev.counters().rx_packets) {}
  void progressed(Clock::time_point now) { last_ = now; }
  // Empty when all is well, else what is wrong.
  std::string check(Clock::time_point now) {
    if (now - start_ > limit_)
      return "the test ran past its time limit of " +
             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(limit_).count()) + " s";
    if (now - last_ < kStallLimit) return {};
    const uint64_t rx = dev_.counters().rx_packets;
    if (rx != rx_) {
      rx_ = rx;
      last_ = now;
      return {};
    }
    return "stalled: no completion and no packet received for " + std::to_string(kStallLimit.count()) + " s";
  }

 private:
  Device& dev_;
  Clock::time_point start_, last_;
  Clock::duration limit_;
  uint64_t rx_;
};

std::string progress_text(uint64_t done, uint64_t posted) {
  return " (" + std::to_string(done) + " of " + std::to_string(posted) + " operations completed)";
}

// Posts wr on qp, then polls cq until one completion arrives: the step of a ping-pong or a
// round trip. False with *err on a post error or a stall (`waiting_for` says what was missing).
bool post_and_wait(Rdma& r, QueuePair* qp, SendWr& wr, Cq* cq, Watchdog& dog, uint64_t i, const char* waiting_for,
                   Wc* wc, std::string* err) {
  if (int rc = r.dev().post_send(qp, &wr, 1, nullptr)) {
    *err = std::string("post_send: ") + strerror(rc);
    return false;
  }
  uint32_t spins = 0;
  while (r.dev().poll_cq(cq, wc, 1) == 0) {
    if ((++spins & 255) == 0) {
      if (std::string why = dog.check(Clock::now()); !why.empty()) {
        *err = why + " (" + waiting_for + ")" + progress_text(i, i + 1) + "\n" + r.describe_counters();
        return false;
      }
    }
  }
  return true;
}

}  // namespace

LatStats lat_stats(std::vector<double>& s) {
  LatStats l;
  if (s.empty()) return l;
  std::sort(s.begin(), s.end());
  auto at = [&](double q) {
    size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(s.size())));
    return s[std::min(s.size() - 1, i == 0 ? 0 : i - 1)];
  };
  double sum = 0;
  for (double v : s) sum += v;
  l.min = s.front();
  l.max = s.back();
  l.median = at(0.5);
  l.p99 = at(0.99);
  l.p999 = at(0.999);
  l.avg = sum / static_cast<double>(s.size());
  return l;
}

// ---- setup ----------------------------------------------------------------------------------

std::unique_ptr<Rdma> Rdma::open(const Options& o, const std::string& dev_name, const std::optional<std::string>& addr,
                                 std::string* err) {
  DeviceConfig cfg;
  cfg.name = dev_name;
  if (addr) {
    auto ip = wire::IpAddr::parse(*addr);
    if (!ip) {
      *err = "--addr: not an IP address: " + *addr;
      return nullptr;
    }
    cfg.address = ip;
  }
  cfg.mtu = o.mtu;
  cfg.busy_poll = o.busy_poll;
  cfg.progress_thread = !o.no_thread;
  cfg.shm = link::ShmLink::enabled_by_env(cfg.shm);  // SOFTRDMA_SHM=0: the UDP link only
  if (o.engine_window) cfg.engine.window_packets = o.engine_window;
  if (o.engine_ackreq) cfg.engine.ackreq_every = o.engine_ackreq;
  if (!o.fault.empty()) {
    std::string e;
    auto f = link::parse_fault_spec(o.fault, &e);
    if (!f) {
      *err = "--fault: " + e;
      return nullptr;
    }
    cfg.fault = f;
  }
  std::unique_ptr<Rdma> r(new Rdma());
  r->dev_ = Device::open(cfg, err);
  if (!r->dev_) return nullptr;
  return r;
}

Rdma::~Rdma() {
  release();
  dev_.reset();  // joins the progress thread before the buffer goes away
  std::free(buf_);
}

void Rdma::release() {
  if (!dev_) return;
  for (QueuePair* qp : qps_) dev_->destroy_qp(qp);
  qps_.clear();
  psns_.clear();
  if (mr_) dev_->dereg_mr(mr_);
  mr_ = nullptr;
  if (scq_) dev_->destroy_cq(scq_);
  if (rcq_) dev_->destroy_cq(rcq_);
  scq_ = rcq_ = nullptr;
  if (pd_) dev_->dealloc_pd(pd_);
  pd_ = nullptr;
  std::free(buf_);
  buf_ = nullptr;
}

bool Rdma::setup(uint32_t nqps, uint32_t window, uint32_t rx_depth, size_t half, uint32_t inline_max, bool uc,
                 std::string* err) {
  release();
  uc_ = uc;
  window_ = window;
  rx_depth_ = rx_depth;
  half_ = half;
  inline_max_ = inline_max;
  unsignaled_lat_ = 0;
  int e = 0;
  pd_ = dev_->alloc_pd();
  const uint32_t send_wr = std::max(window, kSignalEvery);
  scq_ = dev_->create_cq(nqps * (send_wr + 1) + 64, nullptr, nullptr, &e);
  if (scq_) rcq_ = dev_->create_cq(nqps * (rx_depth + 1) + 64, nullptr, nullptr, &e);
  if (!scq_ || !rcq_) {
    *err = std::string("create_cq: ") + strerror(e);
    return false;
  }
  buf_len_ = 2 * half;
  buf_ = static_cast<uint8_t*>(std::aligned_alloc(4096, buf_len_));
  if (!buf_) {
    *err = "out of memory for a " + human_size(buf_len_) + " buffer";
    return false;
  }
  std::memset(buf_, 0, buf_len_);
  mr_ = dev_->reg_mr(pd_, buf_, buf_len_, kAccess, &e);
  if (!mr_) {
    *err = std::string("reg_mr: ") + strerror(e);
    return false;
  }
  std::mt19937 rng{std::random_device{}()};
  for (uint32_t i = 0; i < nqps; ++i) {
    QpInitAttr init;
    init.type = uc ? QpType::kUc : QpType::kRc;
    init.send_cq = scq_;
    init.recv_cq = rcq_;
    init.cap = {send_wr, rx_depth, 1, 1, inline_max};
    QueuePair* qp = dev_->create_qp(pd_, init, &e);
    if (!qp) {
      *err = std::string("create_qp: ") + strerror(e);
      return false;
    }
    qps_.push_back(qp);
    psns_.push_back(rng() & 0xffffff);
  }
  recv_posted_.assign(nqps, 0);
  return true;
}

PeerInfo Rdma::local_info() const {
  PeerInfo p;
  p.gid = dev_->gid();
  p.addr = reinterpret_cast<uint64_t>(buf_);
  p.half = half_;
  p.rkey = mr_->rkey;
  p.mtu = dev_->config().mtu;
  for (QueuePair* qp : qps_) p.qpns.push_back(qp->qpn());
  p.psns = psns_;
  return p;
}

bool Rdma::connect(const PeerInfo& peer, std::string* err) {
  peer_ = peer;
  if (peer.qpns.size() != qps_.size() || peer.psns.size() != qps_.size()) {
    *err = "the peer has " + std::to_string(peer.qpns.size()) + " QPs, we have " + std::to_string(qps_.size());
    return false;
  }
  const uint8_t path_mtu = mtu_enum(std::min(dev_->config().mtu, peer.mtu));
  for (size_t i = 0; i < qps_.size(); ++i) {
    using namespace transport;
    const char* why = "";
    QpAttr a;
    a.state = QpState::kInit;
    a.access = kAccess;
    if (int rc = dev_->modify_qp(qps_[i], a, kAttrState | kAttrPkeyIndex | kAttrPort | kAttrAccessFlags, &why)) {
      *err = std::string("modify_qp(INIT): ") + strerror(rc) + " " + why;
      return false;
    }
    a.state = QpState::kRtr;
    a.path_mtu = path_mtu;
    a.dest_qpn = peer.qpns[i];
    a.rq_psn = peer.psns[i];
    a.av.dgid = peer.gid;
    a.max_dest_rd_atomic = kMaxRdAtomic;
    a.min_rnr_timer = kMinRnrTimer;
    uint32_t mask = kAttrState | kAttrAv | kAttrPathMtu | kAttrDestQpn | kAttrRqPsn;
    if (!uc_) mask |= kAttrMaxDestRdAtomic | kAttrMinRnrTimer;
    if (int rc = dev_->modify_qp(qps_[i], a, mask, &why)) {
      *err = std::string("modify_qp(RTR): ") + strerror(rc) + " " + why;
      return false;
    }
    a.state = QpState::kRts;
    a.sq_psn = psns_[i];
    a.timeout = kAckTimeout;
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.max_rd_atomic = kMaxRdAtomic;
    mask = kAttrState | kAttrSqPsn;
    if (!uc_) mask |= kAttrTimeout | kAttrRetryCnt | kAttrRnrRetry | kAttrMaxQpRdAtomic;
    if (int rc = dev_->modify_qp(qps_[i], a, mask, &why)) {
      *err = std::string("modify_qp(RTS): ") + strerror(rc) + " " + why;
      return false;
    }
    if (!post_recvs(static_cast<uint32_t>(i), rx_depth_, err)) return false;
  }
  return true;
}

bool Rdma::post_recvs(uint32_t q, uint32_t n, std::string* err) {
  // Every receive takes a whole half: any message size of the session fits.
  const Sge sg{addr(0), static_cast<uint32_t>(half_), mr_->lkey};
  if (recv_wrs_[0].sg_list == nullptr || recv_sge_.addr != sg.addr || recv_sge_.length != sg.length ||
      recv_sge_.lkey != sg.lkey) {
    recv_sge_ = sg;
    for (RecvWr& w : recv_wrs_) w = RecvWr{0, &recv_sge_, 1};
  }
  constexpr uint32_t kChunk = sizeof recv_wrs_ / sizeof recv_wrs_[0];
  while (n > 0) {
    const uint32_t k = std::min(n, kChunk);
    if (int rc = dev_->post_recv(qps_[q], recv_wrs_, k, nullptr)) {
      *err = std::string("post_recv: ") + strerror(rc);
      return false;
    }
    n -= k;
  }
  return true;
}

bool Rdma::repost_from(const Wc* wc, int n, std::string* err) {
  for (uint32_t q = 0; q < qps_.size(); ++q) {
    uint32_t k = 0;
    for (int i = 0; i < n; ++i)
      if (wc[i].opcode == WcOpcode::kRecv && wc[i].qp_num == qps_[q]->qpn()) ++k;
    if (k && !post_recvs(q, k, err)) return false;
  }
  return true;
}

std::string Rdma::describe_counters() {
  std::string s;
  auto c = dev_->counters();
  s += "  device " + dev_->name() + ":";
  for (size_t i = 0; i < std::size(transport::DeviceCounters::kNames); ++i)
    if (c.values()[i])
      s += " " + std::string(transport::DeviceCounters::kNames[i].name) + "=" + std::to_string(c.values()[i]);
  for (auto& q : dev_->qp_counters()) {
    s += "\n  qp " + std::to_string(q.qpn) + " " + std::string(transport::name(q.state)) + ":";
    for (size_t i = 0; i < std::size(transport::QpCounters::kNames); ++i)
      if (q.counters.values()[i])
        s += " " + std::string(transport::QpCounters::kNames[i].name) + "=" + std::to_string(q.counters.values()[i]);
  }
  return s;
}

bool Rdma::check_wc(const Wc& wc, std::string* err) {
  if (wc.status == WcStatus::kSuccess) return true;
  *err = "work completion error: " + std::string(name(wc.status)) + " (" + std::string(name(wc.opcode)) + ", QP " +
         std::to_string(wc.qp_num) + ", wr_id " + std::to_string(wc.wr_id & kIndexMask) + ")\n" + describe_counters();
  return false;
}

bool Rdma::reap_sends(std::string* err) {
  Wc wc[16];
  int n;
  while ((n = scq_->poll(wc, 16)) > 0)
    for (int i = 0; i < n; ++i)
      if (!check_wc(wc[i], err)) return false;
  return true;
}

// ---- bandwidth and message rate -------------------------------------------------------------

bool Rdma::bw_loop(const Options& o, Op op, uint32_t size, uint64_t per_qp, double duration, uint64_t* done_ops,
                   double* seconds, std::string* err) {
  const uint32_t nq = nqps();
  const uint32_t window = window_;
  const uint32_t cq_mod = std::clamp<uint32_t>(o.cq_mod ? o.cq_mod : std::min<uint32_t>(64, window / 4), 1, window);
  const uint32_t chain = std::clamp<uint32_t>(o.post_list, 1, 64);

  Sge sg{};
  SendWr base;
  base.opcode = wr_opcode(op, o.atomic);
  base.sg_list = &sg;
  base.num_sge = 1;
  switch (op) {
    case Op::kSend:
    case Op::kWrite:
      sg = {addr(half_), size, mr_->lkey};
      base.rdma.remote_addr = peer_.addr;
      base.rdma.rkey = peer_.rkey;
      if (size <= inline_max_) base.flags |= kInline;
      break;
    case Op::kRead:
      sg = {addr(0), size, mr_->lkey};
      base.rdma.remote_addr = peer_.addr + peer_.half;
      base.rdma.rkey = peer_.rkey;
      break;
    default:
      sg = {addr(0), 8, mr_->lkey};
      base.atomic.remote_addr = peer_.addr;
      base.atomic.rkey = peer_.rkey;
      base.atomic.compare_add = 1;
      base.atomic.swap = 2;
      break;
  }

  std::vector<uint64_t> posted(nq, 0), completed(nq, 0);
  std::vector<bool> last_posted(nq, false);
  SendWr wrs[64];
  Wc wc[64];
  const auto t0 = Clock::now();
  const auto stop_at = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  Watchdog dog(*dev_, duration);
  bool expired = false, progressed = false;
  uint32_t spins = 0;
  for (;;) {
    bool all_done = true;
    for (uint32_t q = 0; q < nq; ++q) {
      if (!last_posted[q]) {
        all_done = false;
        uint64_t room = window - (posted[q] - completed[q]);
        if (room == 0) continue;
        uint64_t n = std::min<uint64_t>(room, chain);
        if (per_qp) n = std::min(n, per_qp - posted[q]);
        if (expired) n = 1;  // the final, signaled operation
        for (uint64_t k = 0; k < n; ++k) {
          uint64_t idx = posted[q] + k + 1;  // operations on this QP once this one is posted
          bool last = expired || (per_qp && idx == per_qp);
          wrs[k] = base;
          if (idx % cq_mod == 0 || last) wrs[k].flags |= kSignaled;
          wrs[k].wr_id = (uint64_t{q} << 48) | idx;
          if (last) last_posted[q] = true;
        }
        size_t bad = 0;
        if (int rc = dev_->post_send(qps_[q], wrs, n, &bad)) {
          *err = std::string("post_send: ") + strerror(rc);
          return false;
        }
        posted[q] += n;
      } else if (completed[q] != posted[q]) {
        all_done = false;
      }
    }
    if (all_done) break;
    int n = dev_->poll_cq(scq_, wc, 64);
    for (int i = 0; i < n; ++i) {
      if (!check_wc(wc[i], err)) return false;
      uint32_t q = static_cast<uint32_t>(wc[i].wr_id >> 48);
      if (q < nq) completed[q] = std::max(completed[q], wc[i].wr_id & kIndexMask);
    }
    // The clock is read once in a while only: a clock read per pass is visible in profiles.
    if (n > 0) progressed = true;
    if ((++spins & 31) == 0) {
      const auto now = Clock::now();
      if (progressed) {
        dog.progressed(now);
        progressed = false;
      } else if (std::string why = dog.check(now); !why.empty()) {
        uint64_t d = 0, p = 0;
        for (uint32_t q = 0; q < nq; ++q) d += completed[q], p += posted[q];
        *err = why + progress_text(d, p) + "\n" + describe_counters();
        return false;
      }
      if (duration > 0 && !expired && now >= stop_at) expired = true;
    }
  }
  *seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  *done_ops = 0;
  for (uint32_t q = 0; q < nq; ++q) *done_ops += posted[q];
  return true;
}

bool Rdma::run_bw(const Options& o, Op op, uint32_t size, uint64_t iters, double duration, Result* r,
                  std::string* err) {
  const uint32_t nq = nqps();
  uint64_t ops = 0;
  double secs = 0;
  // Warm-up: caches, the socket buffers and the peer's loops get going before the clock starts.
  uint64_t warm = std::max<uint64_t>(1, std::min<uint64_t>(warmup_iters(Mode::kBw, iters) / nq, 2 * window_));
  if (!bw_loop(o, op, size, warm, 0, &ops, &secs, err)) return false;
  const uint64_t warm_ops = ops;
  uint64_t per_qp = duration > 0 ? 0 : std::max<uint64_t>(1, (iters + nq - 1) / nq);
  if (!bw_loop(o, op, size, per_qp, duration, &ops, &secs, err)) return false;
  const double bytes = static_cast<double>(ops) * (op == Op::kAtomic ? 8 : size);
  r->iters = ops;
  r->all_ops = warm_ops + ops;
  r->seconds = secs;
  r->mbytes_per_s = bytes / secs / 1e6;
  r->gbits_per_s = bytes * 8 / secs / 1e9;
  r->mpps = static_cast<double>(ops) / secs / 1e6;
  return true;
}

// ---- latency --------------------------------------------------------------------------------

bool Rdma::ping_pong_send(uint32_t size, uint64_t total, uint64_t warmup, double duration,
                          std::vector<double>* samples, std::string* err) {
  Sge sg{addr(half_), size, mr_->lkey};
  SendWr wr;
  wr.opcode = WrOpcode::kSend;
  wr.sg_list = &sg;
  wr.num_sge = 1;
  const uint32_t inl = size <= inline_max_ ? kInlineFlag : 0u;
  Wc wc[1];
  Clock::time_point timed_start{};
  Watchdog dog(*dev_, duration);
  for (uint64_t i = 0;; ++i) {
    if (total && i >= total) break;
    if (i == warmup) timed_start = Clock::now();
    if (duration > 0 && i > warmup && micros(Clock::now() - timed_start) >= duration * 1e6) break;
    if (samples->size() >= kMaxSamples) break;
    wr.flags = inl | (++unsignaled_lat_ % kSignalEvery == 0 ? kSignaledFlag : 0u);
    wr.wr_id = i;
    const auto t0 = Clock::now();
    if (!post_and_wait(*this, qps_[0], wr, rcq_, dog, i, "no answer to a ping", wc, err)) return false;
    const auto t1 = Clock::now();
    dog.progressed(t1);
    if (!check_wc(wc[0], err)) return false;
    if (i >= warmup) samples->push_back(micros(t1 - t0) / 2);
    if (!repost_from(wc, 1, err) || !reap_sends(err)) return false;
  }
  return true;
}

bool Rdma::ping_pong_write(uint32_t size, uint64_t total, uint64_t warmup, double duration,
                           std::vector<double>* samples, std::string* err) {
  Sge sg{addr(half_), size, mr_->lkey};
  SendWr wr;
  wr.opcode = WrOpcode::kRdmaWrite;
  wr.sg_list = &sg;
  wr.num_sge = 1;
  wr.rdma.remote_addr = peer_.addr;
  wr.rdma.rkey = peer_.rkey;
  const uint32_t inl = size <= inline_max_ ? kInlineFlag : 0u;
  uint8_t* mine = ptr(size - 1);         // where the peer's answer lands
  uint8_t* out = ptr(half_ + size - 1);  // the last byte we send
  Wc wc[16];
  Clock::time_point timed_start{};
  Watchdog dog(*dev_, duration);
  for (uint64_t i = 0;; ++i) {
    if (total && i >= total) break;
    if (i == warmup) timed_start = Clock::now();
    if (duration > 0 && i > warmup && micros(Clock::now() - timed_start) >= duration * 1e6) break;
    if (samples->size() >= kMaxSamples) break;
    const uint8_t t = tag(i);
    wr.flags = inl | (++unsignaled_lat_ % kSignalEvery == 0 ? kSignaledFlag : 0u);
    wr.wr_id = i;
    const auto t0 = Clock::now();
    store_byte(out, t);
    if (int rc = dev_->post_send(qps_[0], &wr, 1, nullptr)) {
      *err = std::string("post_send: ") + strerror(rc);
      return false;
    }
    uint32_t spins = 0;
    while (load_byte(mine) != t) {
      // Polling the (normally empty) send CQ is what makes progress on this thread.
      int n = dev_->poll_cq(scq_, wc, 16);
      for (int k = 0; k < n; ++k)
        if (!check_wc(wc[k], err)) return false;
      if ((++spins & 255) == 0) {
        if (std::string why = dog.check(Clock::now()); !why.empty()) {
          *err = why + " (the peer's WRITE did not arrive)" + progress_text(i, i + 1) + "\n" + describe_counters();
          return false;
        }
      }
    }
    const auto t1 = Clock::now();
    dog.progressed(t1);
    if (i >= warmup) samples->push_back(micros(t1 - t0) / 2);
  }
  return reap_sends(err);
}

bool Rdma::round_trips(const Options& o, Op op, uint32_t size, uint64_t total, uint64_t warmup, double duration,
                       std::vector<double>* samples, std::string* err) {
  Sge sg{addr(0), op == Op::kAtomic ? 8u : size, mr_->lkey};
  SendWr wr;
  wr.opcode = wr_opcode(op, o.atomic);
  wr.sg_list = &sg;
  wr.num_sge = 1;
  wr.flags = kSignaled;
  if (op == Op::kRead) {
    wr.rdma.remote_addr = peer_.addr + peer_.half;
    wr.rdma.rkey = peer_.rkey;
  } else {
    wr.atomic.remote_addr = peer_.addr;
    wr.atomic.rkey = peer_.rkey;
    wr.atomic.compare_add = 1;
    wr.atomic.swap = 2;
  }
  Wc wc[1];
  Clock::time_point timed_start{};
  Watchdog dog(*dev_, duration);
  for (uint64_t i = 0;; ++i) {
    if (total && i >= total) break;
    if (i == warmup) timed_start = Clock::now();
    if (duration > 0 && i > warmup && micros(Clock::now() - timed_start) >= duration * 1e6) break;
    if (samples->size() >= kMaxSamples) break;
    wr.wr_id = i;
    const auto t0 = Clock::now();
    if (!post_and_wait(*this, qps_[0], wr, scq_, dog, i, "no response", wc, err)) return false;
    const auto t1 = Clock::now();
    dog.progressed(t1);
    if (!check_wc(wc[0], err)) return false;
    if (i >= warmup) samples->push_back(micros(t1 - t0));
  }
  return true;
}

bool Rdma::run_lat(const Options& o, Op op, uint32_t size, uint64_t iters, double duration, Result* r,
                   std::string* err) {
  std::vector<double> samples;
  samples.reserve(duration > 0 ? 1 << 16 : iters);
  const uint64_t warm = warmup_iters(Mode::kLat, iters);
  const uint64_t total = duration > 0 ? 0 : iters + warm;
  bool ok;
  const auto t0 = Clock::now();
  switch (op) {
    case Op::kSend: ok = ping_pong_send(size, total, warm, duration, &samples, err); break;
    case Op::kWrite:
      std::memset(ptr(0), 0, size);
      ok = ping_pong_write(size, total, warm, duration, &samples, err);
      break;
    default: ok = round_trips(o, op, size, total, warm, duration, &samples, err); break;
  }
  if (!ok) return false;
  r->seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r->iters = samples.size();
  r->lat = lat_stats(samples);
  return true;
}

// ---- the server's half of a test ------------------------------------------------------------

bool Rdma::serve(Channel& ch, Op op, Mode mode, uint32_t size, bool passive, std::chrono::seconds limit,
                 ServeStats* st, Msg* done, std::string* err) {
  const auto t0 = Clock::now();
  const auto deadline = t0 + limit;
  const bool write_pingpong = op == Op::kWrite && mode == Mode::kLat;
  if (passive && op != Op::kSend && !write_pingpong) {
    // The target application does nothing: only the device's progress thread serves the peer.
    return ch.expect("DONE", done, limit, err);
  }
  Wc wc[64];
  Sge sg{addr(half_), size, mr_->lkey};
  SendWr echo;
  echo.sg_list = &sg;
  echo.num_sge = 1;
  echo.opcode = write_pingpong ? WrOpcode::kRdmaWrite : WrOpcode::kSend;
  echo.rdma.remote_addr = peer_.addr;
  echo.rdma.rkey = peer_.rkey;
  const uint32_t inl = size <= inline_max_ ? kInlineFlag : 0u;
  uint64_t expect = 0;
  uint8_t* mine = ptr(size - 1);
  uint8_t* out = ptr(half_ + size - 1);
  auto next_check = t0;
  for (uint32_t spins = 1;; ++spins) {
    if (op == Op::kSend) {
      int n = dev_->poll_cq(rcq_, wc, 64);
      for (int i = 0; i < n; ++i) {
        if (!check_wc(wc[i], err)) return false;
        if (wc[i].opcode != WcOpcode::kRecv) continue;
        st->recvs++;
        st->bytes += wc[i].byte_len;
        if (mode == Mode::kLat) {
          sg.length = wc[i].byte_len;
          echo.flags = (sg.length <= inline_max_ ? kInlineFlag : 0u) |
                       (++unsignaled_lat_ % kSignalEvery == 0 ? kSignaledFlag : 0u);
          QueuePair* qp = qps_[0];
          for (QueuePair* q : qps_)
            if (q->qpn() == wc[i].qp_num) qp = q;
          if (int rc = dev_->post_send(qp, &echo, 1, nullptr)) {
            *err = std::string("post_send (echo): ") + strerror(rc);
            return false;
          }
          st->echoes++;
        }
      }
      if (n > 0 && !repost_from(wc, n, err)) return false;
      if (mode == Mode::kLat && !reap_sends(err)) return false;
    } else if (write_pingpong && load_byte(mine) == tag(expect)) {
      store_byte(out, tag(expect));
      echo.flags = inl | (++unsignaled_lat_ % kSignalEvery == 0 ? kSignaledFlag : 0u);
      if (int rc = dev_->post_send(qps_[0], &echo, 1, nullptr)) {
        *err = std::string("post_send (echo): ") + strerror(rc);
        return false;
      }
      ++expect;
      st->echoes++;
    } else {
      // One-sided work needs nothing from us but progress: an empty poll makes it.
      int n = dev_->poll_cq(scq_, wc, 16);
      for (int i = 0; i < n; ++i)
        if (!check_wc(wc[i], err)) return false;
    }
    if ((spins & 63) == 0) {
      const auto now = Clock::now();
      if (now >= next_check) {
        next_check = now + std::chrono::microseconds(200);
        if (ch.readable()) return ch.expect("DONE", done, std::chrono::seconds(5), err) && reap_sends(err);
        if (now > deadline) {
          *err = "the test exceeded its time limit of " + std::to_string(limit.count()) + " s";
          return false;
        }
      }
    }
  }
}

}  // namespace softrdma::tools::perf
