// The device's datapath entry points: the progress thread, inline progress from post and poll
// with the engine-lock handoff, and posting work requests. (device.cc holds object lifetimes.)
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "device/device.h"

namespace softrdma {

namespace {

// While the application polled within this window, the background thread leaves the socket to
// the application's thread instead of waking for every packet (a wake-up costs 20-25 us).
constexpr uint64_t kAppActiveNs = 200'000;
// While the application keeps polling, the thread looks again after twice as long each time, up
// to this: each look is a wake-up that can preempt the application's thread on a busy machine.
// The price is a later takeover (at most this long) when the application stops polling.
constexpr uint64_t kAppActiveMaxNs = 1'600'000;
// How long the background thread keeps polling after the last packet it received.
constexpr uint64_t kLingerNs = 50'000;

}  // namespace

// ---- progress ---------------------------------------------------------------------------

void Device::thread_main() {
  auto& mu = engine_->mutex();
  uint64_t linger_until = 0;
  uint64_t app_window = kAppActiveNs;
  bool app_sleep = false;      // the last sleep was for an application that polls
  uint64_t calls_at_sleep = 0;  // app_calls_ when it began
  auto sleep_until = [&](uint64_t until, bool on_link) {
    pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {engine_->link().fd(), POLLIN, 0}};
    uint64_t now = transport::now_ns();
    timespec ts{}, *tsp = nullptr;
    if (until != 0) {
      uint64_t d = until > now ? until - now : 0;
      ts.tv_sec = static_cast<time_t>(d / 1000000000ull);
      ts.tv_nsec = static_cast<long>(d % 1000000000ull);
      tsp = &ts;
    }
    // A link with frames the fd does not show (shared memory) may veto the sleep or arrange a
    // wake-up through the fd (Link::prepare_sleep).
    if (!pending_.load()) {
      if (!on_link) {
        ppoll(fds, 1, tsp, nullptr);
      } else if (engine_->link().prepare_sleep()) {
        ppoll(fds, 2, tsp, nullptr);
        engine_->link().after_wake();
      }
    }
    thread_wakes_at_.store(transport::now_ns(), std::memory_order_relaxed);
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      ssize_t r = read(wake_fd_, &v, sizeof v);
      (void)r;
    }
  };
  while (!stop_.load(std::memory_order_acquire)) {
    uint64_t now = transport::now_ns();
    uint64_t last_poll = last_app_poll_.load(std::memory_order_relaxed);
    const uint64_t calls = app_calls_.load(std::memory_order_relaxed);
    // Polled an empty CQ lately, or (while we sleep for it) went on polling or posting at all.
    const bool app_active = now - last_poll < kAppActiveNs || (app_sleep && calls != calls_at_sleep);
    if (!cfg_.busy_poll && app_active && !pending_.load()) {
      // The application is polling and makes progress (timers included) on its own thread:
      // stay off the lock and the socket until it stops, instead of competing with it.
      app_sleep = true;
      calls_at_sleep = calls;
      uint64_t until = std::max(last_poll, now) + app_window;
      app_window = std::min(app_window * 2, kAppActiveMaxNs);
      thread_wakes_at_.store(until, std::memory_order_seq_cst);
      thread_for_app_.store(true, std::memory_order_relaxed);
      sleep_until(until, false);
      thread_for_app_.store(false, std::memory_order_relaxed);
      continue;
    }
    app_window = kAppActiveNs;
    app_sleep = false;
    uint64_t next;
    bool received;
    {
      std::lock_guard<std::mutex> g(mu);
      pending_.store(false);
      uint64_t before = engine_->counters().rx_packets;
      next = engine_->progress();
      received = engine_->counters().rx_packets != before;
      after_progress();
    }
    if (cfg_.busy_poll) continue;
    now = transport::now_ns();
    // While packets keep coming and nobody else polls, stay awake a little: the next request
    // of a one-sided stream usually arrives within microseconds, and a wake-up costs 20-25 us.
    if (received) linger_until = now + kLingerNs;
    if (now < linger_until) continue;
    thread_wakes_at_.store(next, std::memory_order_seq_cst);
    // A post that armed an earlier timer after progress() returned must not be slept through.
    uint64_t earliest;
    {
      std::lock_guard<std::mutex> g(mu);
      earliest = engine_->earliest_timer();
    }
    if (earliest != 0 && (next == 0 || earliest < next)) next = earliest;
    sleep_until(next, true);
  }
}

// Called by application threads after a pass or post. While the thread sleeps for an
// application that polls, a new deadline does not wake it: the application's own passes run
// the timers, and if it stops polling the thread takes over within kAppActiveMaxNs. (Waking it
// each time re-armed its sleep past the deadline, so every poll until the deadline paid a
// write() and a context switch: a 2 ms probe timer made ping-pong iterations 8x slower.)
void Device::wake_if_needed() {
  if (!thread_.joinable() || thread_for_app_.load(std::memory_order_relaxed)) return;
  uint64_t earliest = engine_->earliest_timer();
  uint64_t wakes = thread_wakes_at_.load(std::memory_order_seq_cst);
  if (earliest != 0 && (wakes == 0 || earliest < wakes)) {
    thread_wakes_at_.store(earliest, std::memory_order_relaxed);
    uint64_t one = 1;
    ssize_t r = write(wake_fd_, &one, sizeof one);
    (void)r;
  }
}

// Work left by a thread that could not take the engine lock is done by whoever holds it next:
// the holder re-checks pending_ after unlocking (the flag and the lock form a Dekker pair, hence
// the sequentially consistent accesses).
void Device::after_unlock() {
  while (pending_.load(std::memory_order_seq_cst)) {
    auto& mu = engine_->mutex();
    if (!mu.try_lock()) return;
    pending_.store(false, std::memory_order_seq_cst);
    engine_->progress();
    after_progress();
    wake_if_needed();
    mu.unlock();
  }
}

void Device::kick(transport::Qp* qp) {
  auto& mu = engine_->mutex();
  // Uncontended (the common case): take the lock and do the work, no handoff flag to set and
  // clear (two locked instructions per post). Contended: leave the work, then try once more, in
  // case the holder unlocked before it could see the flag.
  if (!mu.try_lock()) {
    engine_->ring(*qp);
    pending_.store(true, std::memory_order_seq_cst);
    if (!mu.try_lock()) return;  // the holder sees pending_ and runs it
    pending_.store(false, std::memory_order_seq_cst);
  }
  engine_->kick(qp);
  wake_if_needed();
  mu.unlock();
  after_unlock();
}

void Device::try_progress() {
  auto& mu = engine_->mutex();
  if (!mu.try_lock()) {
    last_app_poll_.store(transport::now_ns(), std::memory_order_relaxed);
    return;
  }
  // This pass does what a poster that lost the lock asked for. The flag is mostly clear, and a
  // store to it is a locked instruction: store only if set (one set after the load makes
  // after_unlock run one more pass, as it would anyway).
  if (pending_.load(std::memory_order_relaxed)) pending_.store(false, std::memory_order_seq_cst);
  engine_->progress(/*hold_acks=*/true);  // the application polls: it may reply at once
  last_app_poll_.store(engine_->pass_time(), std::memory_order_relaxed);  // no second clock read
  after_progress();
  wake_if_needed();
  mu.unlock();
  after_unlock();
}

void Device::progress() {
  {
    std::lock_guard<std::mutex> g(engine_->mutex());
    pending_.store(false, std::memory_order_seq_cst);
    engine_->progress();
    after_progress();
    wake_if_needed();
  }
  after_unlock();
}

// ---- posting ----------------------------------------------------------------------------

int Device::post_one_send(QueuePair* qpair, const SendWr& wr) {
  transport::Qp& qp = *qpair->qp;
  if (wr.num_sge > qp.sq.max_sge()) return EINVAL;
  bool inl = (wr.flags & kInline) != 0;
  uint64_t total = 0;
  for (uint32_t i = 0; i < wr.num_sge; ++i) total += wr.sg_list[i].length;
  if (total > PortAttr{}.max_msg_sz) return EINVAL;  // a constant: no port query per post
  if (inl && total > qp.cap.max_inline_data) return EINVAL;
  if (qp.type == QpType::kUd && wr.ud.ah == nullptr && !transport::is_local_op(wr.opcode)) return EINVAL;
  // A registration's sg_list is the memory to register, not data: never inline.
  if (wr.opcode == WrOpcode::kRegMr && inl) return EINVAL;
  uint64_t index;
  transport::SendWqe* w = qp.sq.reserve(&index);
  if (w == nullptr) return ENOMEM;
  *w = transport::SendWqe{};
  w->wr_id = wr.wr_id;
  w->opcode = wr.opcode;
  w->flags = wr.flags;
  w->imm = wr.imm_data;
  w->length = static_cast<uint32_t>(total);
  w->is_inline = inl;
  switch (wr.opcode) {
    case WrOpcode::kCompSwap:
    case WrOpcode::kFetchAdd:
      w->remote_addr = wr.atomic.remote_addr;
      w->rkey = wr.atomic.rkey;
      w->compare_add = wr.atomic.compare_add;
      w->swap = wr.atomic.swap;
      break;
    case WrOpcode::kBindMw:
      w->mem = {wr.bind.mw, wr.bind.new_key, wr.bind.mr, wr.bind.access, wr.bind.addr, wr.bind.length};
      break;
    case WrOpcode::kRegMr:
      w->mem = {wr.reg.mr, wr.reg.new_key, 0, wr.reg.access, wr.reg.iova, total};
      break;
    default:
      w->remote_addr = wr.rdma.remote_addr;
      w->rkey = wr.rdma.rkey;
  }
  if (qp.type == QpType::kUd && wr.ud.ah != nullptr) {
    w->ud_dst = wr.ud.ah->dst;
    w->ud_qpn = wr.ud.remote_qpn;
    w->ud_qkey = wr.ud.remote_qkey;
  }
  if (inl) {
    uint8_t* dst = qp.inline_data(index);
    for (uint32_t i = 0; i < wr.num_sge; ++i) {
      std::memcpy(dst, reinterpret_cast<const void*>(wr.sg_list[i].addr), wr.sg_list[i].length);
      dst += wr.sg_list[i].length;
    }
  } else {
    std::copy_n(wr.sg_list, wr.num_sge, qp.sq.sges(index));
    w->num_sge = wr.num_sge;
  }
  qp.sq.commit();
  return 0;
}

int Device::post_send(QueuePair* qpair, const SendWr* wrs, size_t n, size_t* bad) {
  note_app_call();
  transport::Qp& qp = *qpair->qp;
  QpState s = qp.state.load(std::memory_order_acquire);
  if (s == QpState::kReset || s == QpState::kInit || s == QpState::kRtr) {
    if (bad) *bad = 0;
    return EINVAL;
  }
  int rc = 0;
  {
    std::lock_guard<std::mutex> g(qp.sq.post_lock());
    for (size_t i = 0; i < n; ++i) {
      rc = post_one_send(qpair, wrs[i]);
      if (rc != 0) {
        if (bad) *bad = i;
        break;
      }
    }
  }
  kick(&qp);
  return rc;
}

int Device::post_recv(QueuePair* qpair, const RecvWr* wrs, size_t n, size_t* bad) {
  note_app_call();
  transport::Qp& qp = *qpair->qp;
  if (qp.srq != nullptr || qp.state.load() == QpState::kReset) {
    if (bad) *bad = 0;
    return EINVAL;
  }
  int rc = 0;
  {
    std::lock_guard<std::mutex> g(qp.rq_owned->post_lock());
    for (size_t i = 0; i < n; ++i) {
      rc = qp.rq_owned->post(wrs[i]);
      if (rc != 0) {
        if (bad) *bad = i;
        break;
      }
    }
  }
  if (qp.state.load() == QpState::kErr) kick(&qp);  // flushed at once
  return rc;
}

}  // namespace softrdma
