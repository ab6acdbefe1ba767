#include "transport/engine.h"

#include <time.h>

#include <algorithm>
#include <random>

#include "transport/psn.h"

namespace softrdma::transport {

namespace {
constexpr size_t kTxBatch = 64;
constexpr uint32_t kFirstQpn = 0x100;
}  // namespace

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

Engine::Engine(std::unique_ptr<link::Link> link, const EngineConfig& cfg, StatsArea stats)
    : link_(std::move(link)), cfg_(cfg), local_(link_->local()),
      counters_(stats.device ? stats.device : &own_counters_), qp_slots_(stats.qps), tx_(kTxBatch),
      tx_frames_(kTxBatch) {
  // QPNs start at a random point so a peer still addressing a QP of an earlier process on this
  // address finds no QP rather than a different one.
  std::minstd_rand rng{std::random_device{}()};
  qpn_base_ = kFirstQpn + static_cast<uint32_t>(rng() % 0x400000);
  qp_table_.assign(cfg_.max_qp, nullptr);
  held_acks_.reserve(kMaxHeldAcks);
  link_fills_icrc_ = link_->fills_icrc();
  qp_window_ = cfg_.window_packets;
  bounce_ = std::make_unique<uint8_t[]>(kTxBatch * 4096);
  for (size_t i = 0; i < kTxBatch; ++i) {
    tx_[i].bounce = &bounce_[i * 4096];
    tx_[i].frame = &tx_frames_[i];
  }
  rx_.resize(cfg_.rx_batch);  // the link points each received frame at its own buffers
}

Engine::~Engine() = default;

uint32_t Engine::alloc_qpn() {
  for (uint32_t tries = 0; tries < cfg_.max_qp; ++tries) {
    uint32_t i = qpn_cursor_;
    qpn_cursor_ = (qpn_cursor_ + 1) % cfg_.max_qp;
    if (qp_table_[i] == nullptr) return qpn_base_ + i;
  }
  return 0;
}

namespace {
constexpr uint32_t kMinQpWindow = 1;
}

void Engine::add_qp(Qp* qp) {
  if (qp->type == QpType::kRc) qp_window_ = std::max(kMinQpWindow, cfg_.window_packets / ++rc_qps_);
  uint32_t i = qp->qpn - qpn_base_;
  qp_table_[i] = qp;
  if (qp_slots_ != nullptr) {
    QpStatsSlot& s = qp_slots_[i];
    s.counters = *qp->stats;
    s.type = static_cast<uint8_t>(qp->type);
    s.state = static_cast<uint8_t>(qp->state.load());
    s.qpn = qp->qpn;
    qp->slot = &s;
    qp->stats = &s.counters;
  }
  qps_.push_back(qp);
  // The per-pass lists can then hold every QP without growing on the datapath.
  active_.reserve(qps_.size());
  active_scratch_.reserve(qps_.size());
  timer_qps_.reserve(qps_.size());
}

void Engine::remove_qp(Qp* qp) {
  if (qp->type == QpType::kRc) qp_window_ = std::max(kMinQpWindow, cfg_.window_packets / std::max(1u, --rc_qps_));
  qp_table_[qp->qpn - qpn_base_] = nullptr;
  if (qp->slot != nullptr) {
    qp->own_stats = *qp->stats;
    qp->stats = &qp->own_stats;
    qp->slot->qpn = 0;
    qp->slot = nullptr;
  }
  if (qp->resp.ack_held) {  // its last ACK still goes out: the peer would retransmit otherwise
    held_acks_.erase(std::remove(held_acks_.begin(), held_acks_.end(), qp), held_acks_.end());
    send_held_ack(*qp);
    tx_flush();
  }
  qps_.erase(std::remove(qps_.begin(), qps_.end(), qp), qps_.end());
  active_.erase(std::remove(active_.begin(), active_.end(), qp), active_.end());
  timer_qps_.erase(std::remove(timer_qps_.begin(), timer_qps_.end(), qp), timer_qps_.end());
  qp->on_active_list = qp->on_timer_list = false;
}

Qp* Engine::find_qp(uint32_t qpn) const {
  uint32_t i = qpn - qpn_base_;
  return i < qp_table_.size() ? qp_table_[i] : nullptr;
}

TxSlot* Engine::tx_begin() {
  if (tx_count_ == tx_.size()) tx_flush();
  TxSlot* s = &tx_[tx_count_];
  s->frame->nparts = 1;  // part 0 is the header block; payload parts follow
  return s;
}

void Engine::tx_end(TxSlot* s, const wire::Endpoint& dst, uint32_t header_len, uint32_t payload_len) {
  uint8_t pad = wire::pad_for(payload_len);
  wire::set(s->hdr, wire::bth::padcnt, pad);
  link::TxFrame& f = *s->frame;
  f.dst = dst;
  f.parts[0] = {s->hdr, header_len};
  std::fill_n(s->trailer, pad, 0);
  if (pad) f.parts[f.nparts++] = {s->trailer, pad};
  uint8_t* crc_at = s->trailer + pad;
  f.icrc_pending = link_fills_icrc_;
  if (link_fills_icrc_) {
    wire::icrc_store(crc_at, 0);  // the link computes it if the path needs one
  } else {
    wire::IcrcContext ctx{local_.ip, dst.ip, local_.port, dst.port};
    wire::icrc_store(crc_at, wire::icrc_compute(ctx, f.parts, f.nparts, 0));
  }
  if (pad) {
    f.parts[f.nparts - 1].iov_len = pad + wire::kIcrcSize;
  } else {
    f.parts[f.nparts++] = {s->trailer, wire::kIcrcSize};
  }
  counters_->tx_packets++;
  counters_->tx_bytes += f.length();
  ++tx_count_;
}

void Engine::tx_flush() {
  if (tx_count_ != 0) link_moved_ = true;
  size_t done = 0;
  while (done < tx_count_) {
    size_t n = link_->send(&tx_frames_[done], tx_count_ - done);
    if (n == 0) {
      // The socket is full. The frames are dropped here and recovered by the transport
      // (RC retransmits; UC/UD are unreliable by definition).
      counters_->tx_busy_drops += tx_count_ - done;
      break;
    }
    done += n;
  }
  tx_count_ = 0;
}

void Engine::publish_link_counters() {
  // Copied at the end of each pass that moved frames, so that `softrdma stat` sees how frames
  // travel (once per pass: a link may add its counters up on every call).
  if (!link_moved_) return;
  link_moved_ = false;
  const link::LinkCounters& l = link_->counters();
  counters_->link_gso_sends = l.tx_gso_sends;
  counters_->link_gso_frames = l.tx_gso_frames;
  counters_->link_gro_receives = l.rx_gro_receives;
  counters_->link_gro_frames = l.rx_gro_frames;
  counters_->link_shm_tx_frames = l.shm_tx_frames;
  counters_->link_shm_rx_frames = l.shm_rx_frames;
  counters_->link_plain_receives = l.rx_plain_receives;
  counters_->link_gro_switches = l.gro_switches;
}

// Adding up the link's counters waits for a pass that received nothing, or every 64th pass: after
// a pass that received frames the application is about to look for its completions, and after a
// kick it is about to post the next request (up to 10 % of the same-host 8 B message rate).
void Engine::publish_link_counters_when(bool idle) {
  if (idle || ++counter_passes_ >= 64) {
    publish_link_counters();
    counter_passes_ = 0;
  }
}

void Engine::complete(queue::CompletionQueue* cq, const Wc& wc, bool solicited) { cq->push(wc, solicited); }

void Engine::set_error(Qp& qp) {
  activate(qp);
  qp.state.store(QpState::kErr, std::memory_order_release);
  if (qp.slot != nullptr) qp.slot->state = static_cast<uint8_t>(QpState::kErr);
  qp.error_pending = true;
}

void Engine::send_queue_error(Qp& qp) {
  if (qp.send_error != SendErrorMode::kDrainSendQueue) return set_error(qp);
  // Option 1 (FIG. 11): the send queue drains; the WQEs before the failed one still complete,
  // the failed one completes with its error, the rest are flushed; receiving goes on.
  activate(qp);
  qp.state.store(QpState::kSqe, std::memory_order_release);
  if (qp.slot != nullptr) qp.slot->state = static_cast<uint8_t>(QpState::kSqe);
}

void Engine::flush_errors(Qp& qp) {
  // IBA 10.3.1 (Error state): every outstanding and newly posted WR completes with "flushed",
  // signaled or not. The WQE that failed was completed with its own status by the completer.
  completer_retire(*this, qp);
  while (qp.sq.retired() < qp.sq.produced()) flush_head(*this, qp);
  qp.req.next = qp.sq.retired();
  qp.req.offset = 0;
  qp.req.inflight_rd_atomic = 0;
  qp.comp.retry_deadline = 0;
  if (qp.rq_owned) {
    queue::RecvQueue& rq = *qp.rq_owned;
    while (rq.retired() < rq.produced()) {
      Wc wc{};
      wc.wr_id = rq.at(rq.retired()).wr_id;
      wc.status = WcStatus::kWrFlushErr;
      wc.opcode = WcOpcode::kRecv;
      wc.qp_num = qp.qpn;
      rq.retire();
      complete(qp.recv_cq, wc, false);
    }
  }
  if (qp.resp.in_send) {
    Wc wc{};
    wc.wr_id = qp.resp.recv_wr_id;
    wc.status = WcStatus::kWrFlushErr;
    wc.opcode = WcOpcode::kRecv;
    wc.qp_num = qp.qpn;
    complete(qp.recv_cq, wc, false);
    qp.resp.in_send = false;
  }
  qp.resp.serving = false;
  qp.resp.ack_pending = false;
  qp.error_pending = false;
}

void Engine::run_send(Qp& qp) {
  QpState s = qp.state.load(std::memory_order_acquire);
  if (s == QpState::kErr) {
    if (qp.error_pending || qp.sq.retired() < qp.sq.produced() ||
        (qp.rq_owned && qp.rq_owned->outstanding() > 0))
      flush_errors(qp);
    return;
  }
  if (qp.resp.serving) responder_run(*this, qp);
  if (qp.resp.ack_pending && !qp.resp.ack_held) {
    if (hold_acks_ && qp.resp.reply_likely && held_acks_.size() < kMaxHeldAcks) {
      qp.resp.ack_held = true;
      held_acks_.push_back(&qp);
      if (ack_hold_deadline_ == 0) {
        ack_hold_deadline_ = now() + kAckHoldNs;
        if (earliest_timer_ == 0 || ack_hold_deadline_ < earliest_timer_) earliest_timer_ = ack_hold_deadline_;
      }
    } else {
      responder_flush_ack(*this, qp);
    }
  }
  qp.resp.reply_likely = false;
  if (qp.req.next < qp.sq.produced()) requester_run(*this, qp);
  if (qp.state.load(std::memory_order_relaxed) == QpState::kSqe) completer_retire(*this, qp);  // drains
  if (qp.responder_error) {
    qp.responder_error = false;
    set_error(qp);
  }
  // A stage that failed a WQE moved the QP to ERR: complete it and flush the rest now, not on
  // some later pass that nothing may trigger.
  if (qp.error_pending) flush_errors(qp);
}

void Engine::kick(Qp* qp) {
  begin_pass(/*read_clock=*/false);
  qp->doorbell.store(false, std::memory_order_relaxed);
  run_send(*qp);
  if (qp->has_send_work() || qp->error_pending) activate(*qp);
  release_held_acks();  // after the reply: a shorter last frame joins its GSO group
  tx_flush();
  publish_link_counters_when(false);
  in_pass_ = false;
}

void Engine::send_held_ack(Qp& qp) {
  if (!qp.resp.ack_held) return;
  qp.resp.ack_held = false;
  QpState s = qp.state.load(std::memory_order_relaxed);
  if (s == QpState::kRtr || s == QpState::kRts || s == QpState::kSqd || s == QpState::kSqe)
    responder_flush_ack(*this, qp);
}

void Engine::release_held_acks() {
  for (Qp* qp : held_acks_) send_held_ack(*qp);
  held_acks_.clear();
  ack_hold_deadline_ = 0;
}

void Engine::run_timers(uint64_t now, uint64_t* next) {
  auto earliest = [](uint64_t* at, uint64_t t) {
    if (t != 0 && (*at == 0 || t < *at)) *at = t;
  };
  // The QPs' timers are looked at once the earliest of them may be due: qp_timer_due_ is never
  // later than any armed deadline (note_timer lowers it; a deadline that moved later or was
  // disarmed only makes this look early), so most passes skip the list.
  if (qp_timer_due_ != 0 && now >= qp_timer_due_) {
    uint64_t due = 0;
    size_t keep = 0;
    for (size_t i = 0; i < timer_qps_.size(); ++i) {  // grows if a retransmission arms a timer
      Qp* qp = timer_qps_[i];
      if (qp->comp.retry_deadline != 0 && now >= qp->comp.retry_deadline) {
        completer_timeout(*this, *qp, now);
        run_send(*qp);  // the retransmission (or the error completion) goes out now
      }
      if (qp->req.rnr_wait && now >= qp->req.rnr_deadline) {
        qp->req.rnr_wait = false;
        run_send(*qp);
      }
      earliest(&due, qp->comp.retry_deadline);
      if (qp->req.rnr_wait) earliest(&due, qp->req.rnr_deadline);
      bool armed = qp->comp.retry_deadline != 0 || qp->req.rnr_wait;
      if (armed)
        timer_qps_[keep++] = qp;
      else
        qp->on_timer_list = false;
    }
    timer_qps_.resize(keep);
    qp_timer_due_ = due;  // every armed deadline is on a listed QP, those armed just now too
  }
  earliest(next, qp_timer_due_);
  earliest(next, link_->service(now));
  earliest_timer_ = *next;
}

uint64_t Engine::progress(bool hold_acks) {
  begin_pass();
  release_held_acks();  // the application came back without replying on their QPs
  hold_acks_ = hold_acks;
  uint32_t budget = cfg_.rx_budget;
  size_t received = 0;
  while (budget > 0) {
    size_t want = std::min<size_t>(rx_.size(), budget);
    size_t n = link_->recv(rx_.data(), want);
    // The frames' bytes are the link's until the next recv(): each is handled completely here.
    for (size_t i = 0; i < n; ++i) receive(rx_[i]);
    if (n > 0) link_moved_ = true;
    received += n;
    budget -= static_cast<uint32_t>(n);
    if (n < want) break;
  }
  // Everything the received packets made due (ACKs, READ responses, window space) goes out in
  // this pass, batched with the requests posted meanwhile.
  // A plain load first: the exchange is a locked instruction, and most passes find no doorbell.
  if (doorbell_any_.load(std::memory_order_relaxed) && doorbell_any_.exchange(false, std::memory_order_acquire)) {
    for (Qp* qp : qps_)
      if (qp->doorbell.exchange(false, std::memory_order_relaxed)) activate(*qp);
  }
  // run_send may activate QPs (errors): iterate over a copy of the list and rebuild it.
  active_scratch_.swap(active_);
  active_.clear();
  for (Qp* qp : active_scratch_) qp->on_active_list = false;
  for (Qp* qp : active_scratch_) {
    run_send(*qp);
    if (qp->has_send_work() || qp->error_pending) activate(*qp);
  }
  active_scratch_.clear();
  hold_acks_ = false;
  uint64_t next = 0;
  run_timers(pass_now_, &next);
  if (ack_hold_deadline_ != 0 && (next == 0 || ack_hold_deadline_ < next)) next = ack_hold_deadline_;
  earliest_timer_ = next;
  tx_flush();
  publish_link_counters_when(received == 0);
  in_pass_ = false;
  return next;
}

}  // namespace softrdma::transport
