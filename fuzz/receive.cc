// libFuzzer target for the whole receive path: arbitrary frames enter a Device through an
// in-memory link and go through parse, ICRC, the receive checks, the responder and the
// completer, touching registered memory. The harness helps the fuzzer past the checks it cannot
// guess (ICRC, a live QPN, a valid rkey, the expected PSN) when the frame's first byte says so,
// so the deep states (multi-packet messages, READ re-serving, atomics, NAK paths) are reached.
// Bit 0x20 of a frame's third byte delivers it as the shared-memory link does, without an ICRC.
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "device/device.h"
#include "wire/icrc.h"

using namespace softrdma;

namespace {

const wire::Endpoint kLocal{*wire::IpAddr::parse("127.0.0.1"), 4791};
const wire::Endpoint kPeer{*wire::IpAddr::parse("127.0.0.9"), 4791};

class InjectLink final : public link::Link {
 public:
  std::deque<std::vector<uint8_t>> inbox;
  std::deque<bool> no_icrc;  // per inbox frame: arrives as through shared memory, ICRC not checked
  wire::Endpoint src = kPeer;

  size_t send(const link::TxFrame*, size_t n) override {
    counters_.tx_frames += n;
    return n;
  }
  // As UdpLink: the bytes are the link's until the next recv() (kBufs frames at most per call);
  // a frame larger than a receive buffer of kCap bytes arrives truncated.
  size_t recv(link::RxFrame* frames, size_t n) override {
    size_t got = 0;
    while (got < std::min(n, kBufs) && !inbox.empty()) {
      auto& b = inbox.front();
      link::RxFrame& f = frames[got];
      uint8_t* buf = bufs_[got];
      ++got;
      f.truncated = b.size() > kCap;
      f.len = static_cast<uint32_t>(b.size());
      f.cap = static_cast<uint32_t>(std::min<size_t>(b.size(), kCap));
      if (f.cap) std::memcpy(buf, b.data(), f.cap);
      f.buf = buf;
      f.src = src;
      f.dst = kLocal.ip;
      f.icrc_absent = no_icrc.front();
      inbox.pop_front();
      no_icrc.pop_front();
    }
    return got;
  }
  int fd() const override { return -1; }
  wire::Endpoint local() const override { return kLocal; }
  const link::LinkCounters& counters() const override { return counters_; }
  std::string describe() const override { return "inject"; }

 private:
  static constexpr size_t kBufs = 32, kCap = 9216;
  link::LinkCounters counters_;
  uint8_t bufs_[kBufs][kCap];
};

struct Harness {
  InjectLink* link;
  std::unique_ptr<Device> dev;
  Pd* pd;
  Cq* cq;
  Mr* mr;
  std::vector<uint8_t> mem = std::vector<uint8_t>(1 << 16);
  QueuePair* qps[3];  // RC, UC, UD
  // Keys a packet can be aimed at (flag bit 7): the plain region, a type-2 window bound to the
  // RC QP, a one-touch region, an on-demand region over fresh pages, and the implicit
  // on-demand region (remote read only: a fuzzer writing anywhere would corrupt itself).
  std::vector<uint32_t> keys;
  uint8_t* fresh = nullptr;

  Harness() {
    auto l = std::make_unique<InjectLink>();
    link = l.get();
    DeviceConfig cfg;
    cfg.progress_thread = false;
    cfg.mtu = 1024;
    cfg.name = "fuzz";
    cfg.engine.max_qp = 64;
    std::string err;
    dev = Device::open_with_link(cfg, std::move(l), &err);
    pd = dev->alloc_pd();
    int e;
    cq = dev->create_cq(4096, nullptr, nullptr, &e);
    mr = dev->reg_mr(pd, mem.data(), mem.size(),
                     mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead | mem::kRemoteAtomic, &e);
    QpType types[3] = {QpType::kRc, QpType::kUc, QpType::kUd};
    for (int i = 0; i < 3; ++i) {
      QpInitAttr init;
      init.type = types[i];
      init.send_cq = init.recv_cq = cq;
      init.cap = {16, 16, 2, 2, 0};
      qps[i] = dev->create_qp(pd, init, &e);
      connect(qps[i]);
    }
    keys.push_back(mr->rkey);
    Mr* bindable = dev->reg_mr(pd, mem.data(), mem.size(), mem::kLocalWrite | mem::kMwBind, &e);
    Mw* mw = dev->alloc_mw(pd, 2, &e);
    SendWr bind;
    bind.opcode = WrOpcode::kBindMw;
    bind.bind = {mw->rkey, mw->rkey + 1, bindable->lkey, reinterpret_cast<uint64_t>(mem.data()) + 512, 4096,
                 mem::kRemoteWrite | mem::kRemoteRead | mem::kRemoteAtomic};
    dev->post_send(qps[0], &bind, 1, nullptr);
    keys.push_back(mw->rkey + 1);
    keys.push_back(dev->reg_mr(pd, mem.data() + 8192, 8192,
                               mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead | mem::kOneTouch, &e)
                       ->rkey);
    fresh = static_cast<uint8_t*>(mmap(nullptr, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    keys.push_back(dev->reg_mr(pd, fresh, 1 << 16,
                               mem::kOnDemand | mem::kLocalWrite | mem::kRemoteWrite | mem::kRemoteRead |
                                   mem::kRemoteAtomic,
                               &e)
                       ->rkey);
    keys.push_back(dev->reg_mr(pd, nullptr, SIZE_MAX, mem::kOnDemand | mem::kRemoteRead, &e)->rkey);
    dev->progress();
  }

  void connect(QueuePair* q) {
    QpAttr a;
    a.state = QpState::kReset;
    dev->modify_qp(q, a, transport::kAttrState);
    a.state = QpState::kInit;
    a.access = mem::kRemoteWrite | mem::kRemoteRead | mem::kRemoteAtomic;
    a.qkey = 0x1234;
    bool ud = q->init.type == QpType::kUd;
    dev->modify_qp(q, a, transport::kAttrState | transport::kAttrPkeyIndex | transport::kAttrPort |
                             (ud ? transport::kAttrQkey : transport::kAttrAccessFlags));
    a.state = QpState::kRtr;
    a.path_mtu = 3;
    a.dest_qpn = 0x77;
    a.av.dgid = kPeer.ip;
    a.max_dest_rd_atomic = 4;
    uint32_t m = transport::kAttrState;
    if (!ud) m |= transport::kAttrAv | transport::kAttrPathMtu | transport::kAttrDestQpn | transport::kAttrRqPsn;
    if (q->init.type == QpType::kRc) m |= transport::kAttrMaxDestRdAtomic | transport::kAttrMinRnrTimer;
    dev->modify_qp(q, a, m);
    a.state = QpState::kRts;
    m = transport::kAttrState | transport::kAttrSqPsn;
    if (q->init.type == QpType::kRc)
      m |= transport::kAttrTimeout | transport::kAttrRetryCnt | transport::kAttrRnrRetry | transport::kAttrMaxQpRdAtomic;
    dev->modify_qp(q, a, m);
  }

  void refill() {
    for (QueuePair* q : qps) {
      if (q->state() == QpState::kErr) connect(q);
      while (q->qp->rq()->outstanding() < 8) {
        Sge sg{reinterpret_cast<uint64_t>(mem.data()) + 4096, 8192, mr->lkey};
        RecvWr wr{1, &sg, 1};
        if (dev->post_recv(q, &wr, 1, nullptr) != 0) break;
      }
    }
    Wc wc[64];
    while (cq->poll(wc, 64) > 0) {
    }
  }
};

// Frame = [flags][len][bytes...]. Flags: bit0 recompute ICRC, bit1 aim at a live QP (bits 2-3
// choose RC/UC/UD), bit4 patch rkeys, bit5 use the expected PSN, bit6 from a stranger.
void shape(Harness& h, uint8_t flags, std::vector<uint8_t>& pkt) {
  if (pkt.size() < wire::bth::kSize + wire::kIcrcSize) return;
  const wire::OpcodeInfo& info = wire::opcode_info(pkt[0]);
  transport::Qp* qp = nullptr;
  if (flags & 2) {
    qp = h.qps[((flags >> 2) & 3) % 3]->qp.get();
    wire::set(pkt.data(), wire::bth::dqpn, qp->qpn);
  }
  if (qp && (flags & 0x20)) wire::set(pkt.data(), wire::bth::psn, qp->resp.epsn);
  if ((flags & 0x10) && info.valid() && info.payload + wire::kIcrcSize <= pkt.size()) {
    uint32_t key = (flags & 0x80) ? h.keys[pkt[pkt.size() - 1] % h.keys.size()] : h.mr->rkey;
    if (info.has(wire::kReth)) wire::set(pkt.data() + info.reth, wire::reth::rkey, key);
    if (info.has(wire::kAtmEth)) wire::set(pkt.data() + info.atmeth, wire::atmeth::rkey, key);
    if (info.has(wire::kIeth)) wire::set(pkt.data() + info.ieth, wire::ieth::rkey, key);
    if (info.has(wire::kDeth)) wire::set(pkt.data() + info.deth, wire::deth::qkey, 0x1234);
  }
  if (flags & 1) {
    iovec part{pkt.data(), pkt.size() - wire::kIcrcSize};
    wire::IcrcContext ctx{(flags & 0x40) ? *wire::IpAddr::parse("127.0.0.66") : kPeer.ip, kLocal.ip, kPeer.port,
                          kLocal.port};
    wire::icrc_store(pkt.data() + pkt.size() - wire::kIcrcSize, wire::icrc_compute(ctx, &part, 1, 0));
  }
}

}  // namespace

Harness* harness = nullptr;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (harness == nullptr) {
    harness = new Harness();
    // libFuzzer ends a time-limited run with exit(): close the device then, or its counters file
    // stays behind in /dev/shm (a crash leaves it, and `softrdma stat` removes it).
    std::atexit([] { delete harness; });
  }
  Harness* h = harness;
  size_t i = 0;
  while (i + 3 <= size) {
    uint8_t flags = data[i];
    size_t len = data[i + 1] | (size_t(data[i + 2] & 0x1f) << 8);
    const bool no_icrc = (data[i + 2] & 0x20) != 0;  // as if through shared memory
    i += 3;
    len = std::min(len, size - i);
    std::vector<uint8_t> pkt(data + i, data + i + len);
    i += len;
    shape(*h, flags, pkt);
    h->link->src = (flags & 0x40) ? wire::Endpoint{*wire::IpAddr::parse("127.0.0.66"), 4791} : kPeer;
    h->link->inbox.push_back(std::move(pkt));
    h->link->no_icrc.push_back(no_icrc);
    h->dev->progress();
  }
  h->refill();
  return 0;
}
