#include "device/device.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "device/owned.h"
#include "link/shm_link.h"
#include "link/udp_link.h"
#include "mem/pin.h"

namespace softrdma {

namespace {

// A vendor id that is not a real vendor's OUI (notably neither Mellanox's 0x02c9 nor
// Amazon's 0x1d0f), so providers keyed on vendor ids never claim this device.
constexpr uint32_t kVendorId = 0x534f46;  // "SOF"
constexpr uint32_t kVendorPartId = 0x0001;
constexpr uint32_t kMaxQpWr = 16384;
constexpr uint32_t kMaxSge = 32;
constexpr uint32_t kMaxInline = 512;
constexpr uint32_t kMaxCqe = 1u << 20;
constexpr uint32_t kMaxRdAtomic = 16;

uint8_t mtu_enum(uint32_t bytes) {
  switch (bytes) {
    case 256: return 1;
    case 512: return 2;
    case 1024: return 3;
    case 2048: return 4;
    case 4096: return 5;
  }
  return 0;
}

}  // namespace

DeviceConfig DeviceConfig::from_env(std::string* err) {
  DeviceConfig cfg;
  if (const char* v = std::getenv("SOFTRDMA_NAME")) cfg.name = v;
  if (const char* v = std::getenv("SOFTRDMA_ADDR")) {
    cfg.address = wire::IpAddr::parse(v);
    if (!cfg.address && err) *err = std::string("SOFTRDMA_ADDR: not an IP address: ") + v;
  }
  if (const char* v = std::getenv("SOFTRDMA_PORT")) cfg.port = static_cast<uint16_t>(std::atoi(v));
  if (const char* v = std::getenv("SOFTRDMA_MTU")) cfg.mtu = static_cast<uint32_t>(std::atoi(v));
  if (const char* v = std::getenv("SOFTRDMA_FAULT")) {
    std::string e;
    cfg.fault = link::parse_fault_spec(v, &e);
    if (!cfg.fault && err) *err = "SOFTRDMA_FAULT: " + e;
  }
  if (const char* v = std::getenv("SOFTRDMA_BUSY_POLL")) cfg.busy_poll = std::atoi(v) != 0;
  cfg.shm = link::ShmLink::enabled_by_env(cfg.shm);
  return cfg;
}

Device::Device(const DeviceConfig& cfg) : cfg_(cfg) {}

std::unique_ptr<Device> Device::open(const DeviceConfig& cfg, std::string* err) {
  std::unique_ptr<link::UdpLink> udp;
  std::string e;
  auto opt = link::UdpLink::Options::from_env();
  opt.plain_rx = cfg.engine.infer_ipv4_id;  // GRO off for a while needs ID inference (udp_link.h)
  if (cfg.address) {
    udp = link::UdpLink::open(wire::Endpoint{*cfg.address, cfg.port}, opt, &e);
  } else {
    udp = link::UdpLink::open_auto_loopback(cfg.port, opt, &e);
  }
  if (!udp) {
    if (err) *err = "cannot open the RoCEv2 link: " + e;
    return nullptr;
  }
  std::unique_ptr<link::Link> link;
  if (cfg.shm)
    link = std::make_unique<link::ShmLink>(std::move(udp));
  else
    link = std::move(udp);
  if (cfg.fault) link = std::make_unique<link::FaultLink>(std::move(link), *cfg.fault);
  return open_with_link(cfg, std::move(link), err);
}

std::unique_ptr<Device> Device::open_with_link(const DeviceConfig& cfg, std::unique_ptr<link::Link> link,
                                               std::string* err) {
  if (mtu_enum(cfg.mtu) == 0) {
    if (err) *err = "MTU must be 256, 512, 1024, 2048 or 4096";
    return nullptr;
  }
  std::unique_ptr<Device> dev(new Device(cfg));
  dev->fault_ = dynamic_cast<link::FaultLink*>(link.get());
  // Port 0 asks for an ephemeral port: the fabric is then this device alone (QPs connected to
  // each other), which tests use to avoid sharing 4791.
  if (dev->cfg_.port == 0) dev->cfg_.port = link->local().port;
  transport::EngineConfig ecfg = cfg.engine;
  ecfg.fabric_port = dev->cfg_.port;
  // The RC window must fit the receiver's socket buffer or the excess is dropped and resent.
  // Peers are assumed to be configured like us; the kernel charges about twice the payload
  // for each datagram. Unprivileged processes get rmem_max (often 208 KiB) and a smaller window.
  link::Link* base = link.get();
  if (auto* fl = dynamic_cast<link::FaultLink*>(base)) base = &fl->inner();
  if (auto* sl = dynamic_cast<link::ShmLink*>(base)) base = &sl->udp();  // UDP peers still need it
  if (auto* udp = dynamic_cast<link::UdpLink*>(base)) {
    uint32_t per_packet = 2 * (cfg.mtu + 128);
    uint32_t fits = static_cast<uint32_t>(udp->rcvbuf()) / per_packet;
    ecfg.window_packets = std::min(ecfg.window_packets, std::max<uint32_t>(fits, 16));
  }
  dev->stats_ = std::make_unique<StatsFile>(cfg.name, ecfg.max_qp);
  std::string link_desc = link->describe();
  dev->engine_ = std::make_unique<transport::Engine>(std::move(link), ecfg, dev->stats_->area());
  dev->stats_->describe(dev->engine_->local().str(), link_desc);

  DeviceAttr& a = dev->attr_;
  // GUIDs from the address, EUI-64 style, so they are stable for a given address.
  const auto& ip = dev->engine_->local().ip.bytes;
  uint64_t g = 0x02534f0000000000ull;
  for (int i = 0; i < 16; ++i) g = (g ^ ip[i]) * 0x100000001b3ull;
  a.node_guid = (g & 0x0000ffffffffffffull) | 0x0253000000000000ull;
  a.sys_image_guid = a.node_guid;
  a.vendor_id = kVendorId;
  a.vendor_part_id = kVendorPartId;
  a.max_qp = ecfg.max_qp;
  a.max_qp_wr = kMaxQpWr;
  a.max_sge = kMaxSge;
  a.max_sge_rd = kMaxSge;
  a.max_cq = 1u << 16;
  a.max_cqe = kMaxCqe;
  a.max_mr = 1u << 16;
  a.max_pd = 1u << 16;
  a.max_qp_rd_atom = kMaxRdAtomic;
  a.max_qp_init_rd_atom = kMaxRdAtomic;
  a.max_res_rd_atom = kMaxRdAtomic * ecfg.max_qp;
  a.max_srq = 1u << 16;
  a.max_srq_wr = kMaxQpWr;
  a.max_srq_sge = kMaxSge;
  a.max_ah = 1u << 16;
  a.max_inline_data = kMaxInline;

  dev->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (cfg.progress_thread) dev->thread_ = std::thread([d = dev.get()] { d->thread_main(); });
  return dev;
}

Device::~Device() {
  stop_.store(true);
  if (thread_.joinable()) {
    uint64_t one = 1;
    ssize_t r = write(wake_fd_, &one, sizeof one);
    (void)r;
    thread_.join();
  }
  if (wake_fd_ >= 0) close(wake_fd_);
  // Regions still registered go with the device, as a closed context releases its pinned memory.
  for (const auto& m : mrs_)
    if (m->pinned) mem::unpin(m->addr, m->length);
}

PortAttr Device::port_attr() const {
  PortAttr p;
  p.max_mtu = p.active_mtu = mtu_enum(cfg_.mtu);
  return p;
}

std::string Device::describe_link() const { return engine_->link().describe(); }

// ---- objects ----------------------------------------------------------------------------

Pd* Device::alloc_pd() {
  std::lock_guard<std::mutex> g(objects_mu_);
  auto pd = std::make_unique<Pd>();
  pd->dev = this;
  pd->handle = next_pd_++;
  Pd* raw = pd.get();
  pds_.insert(std::move(pd));
  return raw;
}

int Device::dealloc_pd(Pd* pd) {
  std::lock_guard<std::mutex> g(objects_mu_);
  auto it = std::find_if(pds_.begin(), pds_.end(), [pd](const auto& u) { return u.get() == pd; });
  if (it == pds_.end()) return EINVAL;
  if (pd->refs.load() != 0) return EBUSY;
  pds_.erase(it);
  return 0;
}

Cq* Device::create_cq(uint32_t min_entries, queue::CompletionChannel* channel, void* user_context, int* err) {
  *err = 0;
  if (min_entries == 0 || min_entries > kMaxCqe) {
    *err = EINVAL;
    return nullptr;
  }
  auto cq = std::make_unique<Cq>(min_entries, channel, user_context);
  cq->dev = this;
  return keep(cqs_, std::move(cq));
}

int Device::destroy_cq(Cq* cq) {
  std::lock_guard<std::mutex> g(objects_mu_);
  if (!owns(cqs_, cq)) return EINVAL;
  if (cq->refs.load() != 0) return EBUSY;
  if (cq->channel() != nullptr) cq->channel()->forget(cq);
  erase_owned(cqs_, cq);
  return 0;
}

int Device::poll_cq(Cq* cq, Wc* out, int n) {
  note_app_call();
  int got = cq->poll(out, n);
  if (got > 0) return got;
  try_progress();  // stamps last_app_poll_
  return cq->poll(out, n);
}

void Device::req_notify_cq(Cq* cq, bool solicited_only) { cq->arm(solicited_only); }

Srq* Device::create_srq(Pd* pd, uint32_t max_wr, uint32_t max_sge, int* err) {
  *err = 0;
  if (pd == nullptr || max_wr == 0 || max_wr > kMaxQpWr || max_sge > kMaxSge) {
    *err = EINVAL;
    return nullptr;
  }
  auto srq = std::make_unique<Srq>(max_wr, max_sge);
  srq->pd = pd;
  pd->refs++;
  return keep(srqs_, std::move(srq));
}

int Device::destroy_srq(Srq* srq) {
  std::lock_guard<std::mutex> g(objects_mu_);
  if (!owns(srqs_, srq)) return EINVAL;
  if (srq->refs.load() != 0) return EBUSY;
  {
    std::lock_guard<std::mutex> eg(engine_->mutex());
    std::erase_if(armed_srqs_, [srq](const ArmedSrq& a) { return a.srq == srq; });
  }
  srq->pd->refs--;
  erase_owned(srqs_, srq);
  return 0;
}

int Device::post_srq_recv(Srq* srq, const RecvWr* wrs, size_t n, size_t* bad) {
  std::lock_guard<std::mutex> g(srq->post_lock());
  for (size_t i = 0; i < n; ++i) {
    if (int rc = srq->post(wrs[i])) {
      if (bad) *bad = i;
      return rc;
    }
  }
  return 0;
}

AddressHandle* Device::create_ah(Pd* pd, const AddressVector& av, int* err) {
  *err = 0;
  if (pd == nullptr || av.dgid.is_v4() != gid().is_v4()) {
    *err = EINVAL;
    return nullptr;
  }
  auto ah = std::make_unique<AddressHandle>();
  ah->pd = pd;
  ah->av = av;
  ah->dst = wire::Endpoint{av.dgid, cfg_.port};
  pd->refs++;
  return keep(ahs_, std::move(ah));
}

int Device::destroy_ah(AddressHandle* ah) {
  std::lock_guard<std::mutex> g(objects_mu_);
  if (!owns(ahs_, ah)) return EINVAL;
  ah->pd->refs--;
  erase_owned(ahs_, ah);
  return 0;
}

QueuePair* Device::create_qp(Pd* pd, const QpInitAttr& init, int* err) {
  *err = 0;
  const QpCaps& c = init.cap;
  bool bad = pd == nullptr || init.send_cq == nullptr || init.recv_cq == nullptr ||
             c.max_send_wr > kMaxQpWr || c.max_recv_wr > kMaxQpWr || c.max_send_sge > kMaxSge ||
             c.max_recv_sge > kMaxSge || c.max_inline_data > kMaxInline ||
             (init.type != QpType::kRc && init.type != QpType::kUc && init.type != QpType::kUd) ||
             (init.srq != nullptr && init.type == QpType::kUc && false);
  if (bad) {
    *err = EINVAL;
    return nullptr;
  }
  auto qp = std::make_unique<QueuePair>();
  qp->pd = pd;
  qp->init = init;
  // Report what we give: at least one of everything, so a zero-sized queue still works.
  QpCaps& cap = qp->init.cap;
  cap.max_send_wr = std::max<uint32_t>(cap.max_send_wr, 1);
  cap.max_recv_wr = init.srq ? 0 : std::max<uint32_t>(cap.max_recv_wr, 1);
  cap.max_send_sge = std::max<uint32_t>(cap.max_send_sge, 1);
  cap.max_recv_sge = init.srq ? 0 : std::max<uint32_t>(cap.max_recv_sge, 1);
  {
    std::lock_guard<std::mutex> g(engine_->mutex());
    uint32_t qpn = engine_->alloc_qpn();
    if (qpn == 0) {
      *err = ENOMEM;
      return nullptr;
    }
    qp->qp = std::make_unique<transport::Qp>(qpn, init.type, pd->handle, cap, init.send_cq, init.recv_cq,
                                             init.srq, init.sq_sig_all, init.user_context);
    using transport::SendErrorMode;
    SendErrorMode mode = init.send_error;
    if (mode == SendErrorMode::kDefault)  // IBA: SQE exists for UC and UD only
      mode = init.type == QpType::kRc ? SendErrorMode::kErrorQp : SendErrorMode::kDrainSendQueue;
    qp->qp->send_error = mode;
    engine_->add_qp(qp->qp.get());
  }
  pd->refs++;
  init.send_cq->refs++;
  init.recv_cq->refs++;
  if (init.srq) init.srq->refs++;
  return keep(qps_, std::move(qp));
}

int Device::modify_qp(QueuePair* qpair, const QpAttr& a, uint32_t mask, const char** why) {
  transport::Qp& qp = *qpair->qp;
  std::lock_guard<std::mutex> g(engine_->mutex());
  QpState cur = qp.state.load();
  if (int rc = transport::check_modify(qp.type, cur, a, mask, why)) return rc;
  if ((mask & transport::kAttrPathMtu) && a.path_mtu > mtu_enum(cfg_.mtu)) {
    if (why) *why = "path MTU larger than the port MTU";
    return EINVAL;
  }
  if (((mask & transport::kAttrMaxQpRdAtomic) && a.max_rd_atomic > kMaxRdAtomic) ||
      ((mask & transport::kAttrMaxDestRdAtomic) && a.max_dest_rd_atomic > kMaxRdAtomic)) {
    if (why) *why = "max_rd_atomic / max_dest_rd_atomic above the device limit";
    return EINVAL;
  }
  if ((mask & transport::kAttrAv) && a.av.dgid.is_v4() != gid().is_v4()) {
    if (why) *why = "destination GID of another IP family than the port";
    return EINVAL;
  }
  QpAttr& q = qp.attr;
  using namespace transport;
  if (mask & kAttrAccessFlags) q.access = a.access;
  if (mask & kAttrPkeyIndex) q.pkey_index = a.pkey_index;
  if (mask & kAttrPort) q.port_num = a.port_num;
  if (mask & kAttrQkey) q.qkey = a.qkey;
  if (mask & kAttrAv) {
    q.av = a.av;
    qp.peer = wire::Endpoint{a.av.dgid, cfg_.port};
  }
  if (mask & kAttrPathMtu) q.path_mtu = a.path_mtu;
  if (mask & kAttrTimeout) q.timeout = a.timeout;
  if (mask & kAttrRetryCnt) q.retry_cnt = a.retry_cnt;
  if (mask & kAttrRnrRetry) q.rnr_retry = a.rnr_retry;
  if (mask & kAttrRqPsn) q.rq_psn = a.rq_psn;
  if (mask & kAttrMaxQpRdAtomic) q.max_rd_atomic = a.max_rd_atomic;
  if (mask & kAttrMinRnrTimer) q.min_rnr_timer = a.min_rnr_timer;
  if (mask & kAttrSqPsn) q.sq_psn = a.sq_psn;
  if (mask & kAttrMaxDestRdAtomic) q.max_dest_rd_atomic = a.max_dest_rd_atomic;
  if (mask & kAttrDestQpn) q.dest_qpn = a.dest_qpn;
  if (qp.type == QpType::kUd) q.path_mtu = mtu_enum(cfg_.mtu);

  QpState next = (mask & kAttrState) ? a.state : cur;
  if (next == QpState::kReset) {
    // Back to a clean QP: queues emptied without completions (IBA 10.3.1 Reset state).
    while (qp.sq.retired() < qp.sq.produced()) qp.sq.retire();
    if (qp.rq_owned)
      while (qp.rq_owned->retired() < qp.rq_owned->produced()) qp.rq_owned->retire();
    qp.req = {};
    qp.comp = {};
    auto resources = std::move(qp.resp.resources);
    auto sges = std::move(qp.resp.recv_sges);
    qp.resp = {};
    qp.resp.recv_sges = std::move(sges);
    qp.error_pending = qp.responder_error = false;
  }
  if (cur == QpState::kInit && next == QpState::kRtr) {
    qp.resp.epsn = q.rq_psn;
    qp.resp.nresources = std::max<uint32_t>(16, q.max_dest_rd_atomic);
    qp.resp.resources = std::make_unique<transport::ResponderResource[]>(qp.resp.nresources);
  }
  if (cur == QpState::kRtr && next == QpState::kRts) {
    qp.req.psn = qp.req.fresh_psn = qp.comp.una_psn = q.sq_psn;
    qp.req.next = qp.sq.retired();
    qp.comp.retry_left = q.retry_cnt;
    qp.comp.rnr_left = q.rnr_retry;
  }
  q.state = next;
  qp.state.store(next, std::memory_order_release);
  if (qp.slot != nullptr) qp.slot->state = static_cast<uint8_t>(next);
  if (next == QpState::kErr) {
    engine_->set_error(qp);
    engine_->kick(&qp);
  } else if (next == QpState::kRts) {
    engine_->kick(&qp);  // WQEs posted in RTR go out now
  }
  return 0;
}

int Device::query_qp(QueuePair* qp, QpAttr* attr, QpInitAttr* init) {
  std::lock_guard<std::mutex> g(engine_->mutex());
  if (attr) {
    *attr = qp->qp->attr;
    attr->state = attr->cur_state = qp->state();
    attr->cap = qp->init.cap;
  }
  if (init) *init = qp->init;
  return 0;
}

int Device::destroy_qp(QueuePair* qp) {
  std::lock_guard<std::mutex> g(objects_mu_);
  if (!owns(qps_, qp)) return EINVAL;
  {
    std::lock_guard<std::mutex> eg(engine_->mutex());
    engine_->remove_qp(qp->qp.get());
  }
  qp->pd->refs--;
  qp->init.send_cq->refs--;
  qp->init.recv_cq->refs--;
  if (qp->init.srq) qp->init.srq->refs--;
  erase_owned(qps_, qp);
  return 0;
}

// ---- for the verbs layer ----------------------------------------------------------------

void Device::set_async_handler(AsyncHandler h) {
  std::lock_guard<std::mutex> g(engine_->mutex());
  async_handler_ = std::move(h);
}

// Engine lock held. One size check per pass when nothing is armed.
void Device::after_progress() {
  if (armed_srqs_.empty()) return;
  for (size_t i = 0; i < armed_srqs_.size();) {
    Srq* srq = armed_srqs_[i].srq;
    uint32_t limit = srq->limit.load(std::memory_order_relaxed);
    // Like an HCA, the event comes from consuming a WQE, not from arming below the limit.
    if (limit != 0 && (srq_outstanding(srq) >= limit || srq->retired() == armed_srqs_[i].retired_at_arm)) {
      ++i;
      continue;
    }
    armed_srqs_.erase(armed_srqs_.begin() + static_cast<std::ptrdiff_t>(i));
    if (limit == 0) continue;
    srq->limit.store(0, std::memory_order_relaxed);
    if (async_handler_) {
      AsyncEvent ev{AsyncEvent::Type::kSrqLimitReached};
      ev.srq = srq;
      async_handler_(ev);
    }
  }
}

int Device::modify_srq_limit(Srq* srq, uint32_t limit) {
  if (limit > srq->max_wr()) return EINVAL;
  std::lock_guard<std::mutex> g(engine_->mutex());
  srq->limit.store(limit, std::memory_order_relaxed);
  std::erase_if(armed_srqs_, [srq](const ArmedSrq& a) { return a.srq == srq; });
  if (limit != 0) armed_srqs_.push_back(ArmedSrq{srq, srq->retired()});
  return 0;
}

// ---- counters ---------------------------------------------------------------------------

transport::DeviceCounters Device::counters() {
  std::lock_guard<std::mutex> g(engine_->mutex());
  engine_->publish_link_counters();
  return engine_->counters();
}

link::FaultCounters Device::fault_counters() {
  std::lock_guard<std::mutex> g(engine_->mutex());
  return fault_ ? fault_->fault_counters() : link::FaultCounters{};
}

std::vector<Device::QpSnapshot> Device::qp_counters() {
  std::lock_guard<std::mutex> g(engine_->mutex());
  std::vector<QpSnapshot> out;
  for (transport::Qp* qp : engine_->qps()) out.push_back({qp->qpn, qp->type, qp->state.load(), *qp->stats});
  return out;
}

}  // namespace softrdma
