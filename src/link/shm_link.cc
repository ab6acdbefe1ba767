#include "link/shm_link.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace softrdma::link {

namespace {

constexpr uint64_t kMagic = 0x31534d4853524f53ull;  // "SORSHMS1"
constexpr uint32_t kVersion = 2;
constexpr uint32_t kAlign = 64;
constexpr uint32_t kSkip = 0xffffffffu;  // record marker: the rest of the ring is unused, wrap
constexpr uint8_t kDoorbell[8] = {'S', 'R', 'D', 'M', 'A', 'D', 'B', 0};

std::atomic<uint32_t> g_serial{0};

// For the path re-checks (kRetryNs) and the table's least-recently-used order: a tick's
// precision is plenty, and the coarse clock costs a fifth of the precise one (5 against 23 ns
// here), read on every send.
uint64_t coarse_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

bool pid_alive(int32_t pid) {
  if (pid <= 0) return false;
  return kill(pid, 0) == 0 || errno == EPERM;
}

// The network namespace: the same address in two namespaces is two endpoints, and /dev/shm is
// often shared between them (`unshare -n`), so the namespace is part of the name.
unsigned long netns_id() {
  static const unsigned long id = [] {
    struct stat st {};
    return stat("/proc/self/ns/net", &st) == 0 ? static_cast<unsigned long>(st.st_ino) : 0ul;
  }();
  return id;
}

// "/softrdma-ep-<netns>-<ip>-<port>" into buf, without allocating.
void format_name(const Endpoint& ep, char* buf, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (ep.ip.is_v4())
    inet_ntop(AF_INET, ep.ip.bytes.data() + 12, ip, sizeof ip);
  else
    inet_ntop(AF_INET6, ep.ip.bytes.data(), ip, sizeof ip);
  std::snprintf(buf, cap, "/softrdma-ep-%lu-%s-%u", netns_id(), ip, unsigned(ep.port));
}

constexpr uint64_t align_up(uint64_t v) {
  return (v + kAlign - 1) & ~uint64_t{kAlign - 1};
}

}  // namespace

// The record before each frame in a ring.
struct RecordHeader {
  uint32_t len;  // frame bytes, or kSkip
  uint16_t port;
  uint16_t flags;  // kNoIcrc
  uint8_t ip[16];
};
constexpr uint16_t kNoIcrc = 1;  // the frame's last 4 bytes are zero, not an ICRC
static_assert(sizeof(RecordHeader) == 24);
constexpr uint32_t kRecHdr = 32;  // header space before the frame (keeps frames 32-aligned)

struct ShmLink::Ring {
  alignas(64) std::atomic<uint64_t> owner;  // pid << 32 | serial, 0 = free
  alignas(64) std::atomic<uint64_t> head;   // producer position (bytes, monotonic)
  alignas(64) std::atomic<uint64_t> tail;   // consumer position
  alignas(64) uint8_t data[kRingBytes];
};

static_assert(ShmLink::kRings < 32, "ring sets are 32-bit masks");

struct ShmLink::Area {
  std::atomic<uint64_t> magic;  // kMagic once initialized
  uint32_t version;
  uint32_t rings;
  uint64_t ring_bytes;
  int32_t owner_pid;
  uint32_t owner_uid;
  uint8_t ip[16];
  uint16_t port;
  alignas(64) std::atomic<uint32_t> closed;
  alignas(64) std::atomic<uint32_t> sleeping;  // 0 awake, 1 may sleep, 2 doorbell sent
  // Bit i: ring i has had a sender (set by the sender before its first record, never cleared),
  // so that each receive looks at the rings in use, not at all of them.
  alignas(64) std::atomic<uint32_t> claimed;
  alignas(64) Ring ring[kRings];
};

bool ShmLink::enabled_by_env(bool dflt) {
  const char* v = std::getenv("SOFTRDMA_SHM");
  if (v == nullptr || *v == 0) return dflt;
  if (strcmp(v, "0") == 0 || strcasecmp(v, "off") == 0 || strcasecmp(v, "no") == 0 ||
      strcasecmp(v, "false") == 0)
    return false;
  return true;
}

std::string ShmLink::area_name(const Endpoint& ep) {
  char buf[96];
  format_name(ep, buf, sizeof buf);
  return buf;
}

ShmLink::ShmLink(std::unique_ptr<UdpLink> udp) : udp_(std::move(udp)) {
  serial_ = (uint64_t(uint32_t(getpid())) << 32) | (g_serial.fetch_add(1) + 1);
  name_ = area_name(udp_->local());
  (void)create_area();
}

bool ShmLink::create_area() {
  const size_t len = sizeof(Area);
  for (int attempt = 0; attempt < 2; ++attempt) {
    int fd = shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
      // A leftover of an earlier owner of this endpoint (it exited without closing, or is still
      // exiting). We hold the endpoint's UDP port now, which only one socket can, so the name is
      // ours: mark the old area closed (senders still mapping it look again) and replace it.
      int old = shm_open(name_.c_str(), O_RDWR | O_CLOEXEC, 0);
      if (old < 0) return false;
      struct stat st {};
      const bool mine = fstat(old, &st) == 0 && st.st_uid == geteuid();
      if (mine && size_t(st.st_size) >= sizeof(Area)) {
        void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, old, 0);
        if (m != MAP_FAILED) {
          static_cast<Area*>(m)->closed.store(1, std::memory_order_release);
          munmap(m, len);
        }
      }
      ::close(old);
      // Another user's leftover goes too if we may unlink it (root may, in the sticky /dev/shm);
      // it is never written to.
      if (shm_unlink(name_.c_str()) != 0 && errno != ENOENT) return false;
      continue;
    }
    if (fd < 0) return false;
    (void)fchmod(fd, 0600);
    // The rings stay sparse until a sender reserves one (open_peer); the header is reserved now.
    // Writing to a tmpfs page that cannot be allocated (a full /dev/shm: containers often have
    // 64 MiB) would be SIGBUS, not an error code.
    if (ftruncate(fd, off_t(len)) != 0) {
      ::close(fd);
      shm_unlink(name_.c_str());
      return false;
    }
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
      ::close(fd);
      shm_unlink(name_.c_str());
      return false;
    }
    auto* a = static_cast<Area*>(m);  // the file is zero-filled: every ring free and empty
    const auto header = off_t(reinterpret_cast<uint8_t*>(&a->ring[0]) - reinterpret_cast<uint8_t*>(a));
    if (posix_fallocate(fd, 0, header) != 0) {
      munmap(m, len);
      ::close(fd);
      shm_unlink(name_.c_str());
      return false;
    }
    a->version = kVersion;
    a->rings = kRings;
    a->ring_bytes = kRingBytes;
    a->owner_pid = int32_t(getpid());
    a->owner_uid = uint32_t(geteuid());
    const Endpoint me = udp_->local();
    std::memcpy(a->ip, me.ip.bytes.data(), 16);
    a->port = me.port;
    a->magic.store(kMagic, std::memory_order_release);
    area_ = a;
    area_len_ = len;
    area_fd_ = fd;
    return true;
  }
  return false;
}

ShmLink::~ShmLink() {
  for (Peer& p : peers_)
    if (p.used) close_peer(p);
  if (area_ != nullptr) {
    area_->closed.store(1, std::memory_order_release);
    // Unlink only if the name still refers to our file (a successor may have replaced it).
    struct stat mine {
    }, cur{};
    char path[128];
    std::snprintf(path, sizeof path, "/dev/shm%s", name_.c_str());
    if (fstat(area_fd_, &mine) == 0 && stat(path, &cur) == 0 && mine.st_ino == cur.st_ino &&
        mine.st_dev == cur.st_dev)
      shm_unlink(name_.c_str());
    munmap(area_, area_len_);
    ::close(area_fd_);
  }
}

std::string ShmLink::describe() const {
  return std::string(area_ ? "shm+" : "shm(no area)+") + udp_->describe();
}

const LinkCounters& ShmLink::counters() const {
  sum_ = udp_->counters();
  sum_.tx_frames += sc_.tx_frames;
  sum_.tx_bytes += sc_.tx_bytes;
  sum_.rx_frames += sc_.rx_frames;
  sum_.rx_bytes += sc_.rx_bytes;
  sum_.tx_errors += tx_errors_;
  sum_.shm_tx_frames = sc_.tx_frames;
  sum_.shm_rx_frames = sc_.rx_frames;
  // Doorbells are not frames.
  sum_.tx_frames -= std::min(sum_.tx_frames, sc_.tx_doorbells);
  sum_.tx_bytes -= std::min(sum_.tx_bytes, sc_.tx_doorbells * sizeof kDoorbell);
  sum_.rx_frames -= std::min(sum_.rx_frames, sc_.rx_doorbells);
  sum_.rx_bytes -= std::min(sum_.rx_bytes, sc_.rx_doorbells * sizeof kDoorbell);
  return sum_;
}

// ---- sending ------------------------------------------------------------------------------

void ShmLink::close_peer(Peer& p) {
  if (p.ring != nullptr) {
    publish(p);
    uint64_t mine = p.owner;
    p.ring->owner.compare_exchange_strong(mine, 0, std::memory_order_acq_rel);
  }
  if (p.area != nullptr) munmap(p.area, p.map_len);
  p.area = nullptr;
  p.ring = nullptr;
  p.shm = false;
  p.dirty = false;
}

void ShmLink::open_peer(Peer& p) {
  p.shm = false;
  char name[96];
  format_name(p.ep, name, sizeof name);
  int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) return;  // not on this host, or another user's (EACCES)
  struct stat st {};
  const bool ok = fstat(fd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 077) == 0 &&
                  size_t(st.st_size) == sizeof(Area);
  void* m = ok ? mmap(nullptr, sizeof(Area), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
  if (m == MAP_FAILED) {
    ::close(fd);
    return;
  }
  auto* a = static_cast<Area*>(m);
  const bool valid = a->magic.load(std::memory_order_acquire) == kMagic && a->version == kVersion &&
                     a->rings == kRings && a->ring_bytes == kRingBytes && a->owner_uid == geteuid() &&
                     a->closed.load(std::memory_order_acquire) == 0 && a->port == p.ep.port &&
                     std::memcmp(a->ip, p.ep.ip.bytes.data(), 16) == 0 && pid_alive(a->owner_pid);
  if (!valid) {
    munmap(m, sizeof(Area));
    ::close(fd);
    return;
  }
  for (uint32_t i = 0; i < kRings; ++i) {
    Ring& r = a->ring[i];
    uint64_t cur = r.owner.load(std::memory_order_acquire);
    if (cur != 0 && pid_alive(int32_t(cur >> 32))) continue;
    if (!r.owner.compare_exchange_strong(cur, serial_, std::memory_order_acq_rel)) continue;
    // Reserve the ring's pages before writing to them: in a full /dev/shm a write would be SIGBUS.
    const off_t at = off_t(reinterpret_cast<uint8_t*>(&r) - reinterpret_cast<uint8_t*>(a));
    if (posix_fallocate(fd, at, off_t(sizeof(Ring))) != 0) {
      uint64_t mine = serial_;
      r.owner.compare_exchange_strong(mine, 0, std::memory_order_acq_rel);
      ++sc_.no_space;
      break;  // UDP for this destination
    }
    ::close(fd);
    a->claimed.fetch_or(1u << i, std::memory_order_seq_cst);
    p.area = a;
    p.map_len = sizeof(Area);
    p.ring = &r;
    p.owner = serial_;
    p.head = r.head.load(std::memory_order_acquire);
    p.shm = true;
    return;
  }
  munmap(m, sizeof(Area));  // every ring taken, or no space for one
  ::close(fd);
}

ShmLink::Peer* ShmLink::peer_for(const Endpoint& dst, uint64_t now) {
  if (last_peer_ != nullptr && last_peer_->ep == dst) {
    Peer* p = last_peer_;
    if (p->shm || now < p->retry_at) return p;
  }
  Peer* hit = nullptr;
  Peer* victim = nullptr;
  for (Peer& p : peers_) {
    if (p.used && p.ep == dst) {
      hit = &p;
      break;
    }
    if (!p.used) {
      if (victim == nullptr || victim->used) victim = &p;
    } else if (victim == nullptr || (victim->used && p.last_use < victim->last_use)) {
      victim = &p;
    }
  }
  if (hit == nullptr) {
    hit = victim;
    if (hit->used) {
      if (hit->dirty) {
        publish(*hit);
      }
      close_peer(*hit);
    }
    hit->used = true;
    hit->ep = dst;
    hit->retry_at = 0;
    hit->shm = false;
  }
  if (!hit->shm && now >= hit->retry_at) {
    open_peer(*hit);
    if (hit->shm)
      ++sc_.peers_shm;
    else
      ++sc_.peers_udp;
    hit->retry_at = now + kRetryNs;
  }
  last_peer_ = hit;
  return hit;
}

bool ShmLink::push(Peer& p, const TxFrame& f, size_t len) {
  Ring& r = *p.ring;
  const uint64_t need = align_up(kRecHdr + len);
  if (need > kRingBytes / 2) return false;
  const uint64_t tail = r.tail.load(std::memory_order_acquire);
  uint64_t pos = p.head;
  const uint64_t off = pos % kRingBytes;
  const uint64_t to_end = kRingBytes - off;
  const uint64_t skip = to_end < need ? to_end : 0;
  if (pos + skip + need - tail > kRingBytes) return false;  // full
  if (skip != 0) {
    auto* h = reinterpret_cast<RecordHeader*>(r.data + off);
    h->len = kSkip;
    pos += skip;
  }
  uint8_t* rec = r.data + pos % kRingBytes;
  auto* h = reinterpret_cast<RecordHeader*>(rec);
  h->len = uint32_t(len);
  const Endpoint me = udp_->local();
  h->port = me.port;
  h->flags = f.icrc_pending ? kNoIcrc : 0;
  std::memcpy(h->ip, me.ip.bytes.data(), 16);
  uint8_t* d = rec + kRecHdr;
  for (uint8_t i = 0; i < f.nparts; ++i) {
    std::memcpy(d, f.parts[i].iov_base, f.parts[i].iov_len);
    d += f.parts[i].iov_len;
  }
  p.head = pos + need;
  p.dirty = true;
  return true;
}

void ShmLink::publish(Peer& p) {
  if (!p.dirty || p.ring == nullptr) return;
  p.dirty = false;
  p.ring->head.store(p.head, std::memory_order_release);
  // Dekker with the receiver's prepare_sleep(): our head store, then its `sleeping` word.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::atomic<uint32_t>& s = p.area->sleeping;
  uint32_t v = s.load(std::memory_order_relaxed);
  if (v == 1 && s.compare_exchange_strong(v, 2, std::memory_order_seq_cst)) {
    TxFrame db;
    db.dst = p.ep;
    db.parts[0] = {const_cast<uint8_t*>(kDoorbell), sizeof kDoorbell};
    db.nparts = 1;
    if (udp_->send(&db, 1) == 1)
      ++sc_.tx_doorbells;
    else
      s.store(1, std::memory_order_seq_cst);  // not sent: let the next push try again
  }
}

size_t ShmLink::send(const TxFrame* frames, size_t n) {
  const uint64_t now = coarse_ns();
  size_t done = 0;
  while (done < n) {
    // A run of frames to UDP destinations goes to the socket in one call (keeps GSO batches).
    size_t i = done;
    while (i < n) {
      const TxFrame& f = frames[i];
      if (f.nparts > kMaxTxParts) break;
      Peer* p = peer_for(f.dst, now);
      if (p->shm && p->area->closed.load(std::memory_order_acquire) != 0) {
        close_peer(*p);  // the receiver went away: look for a successor next time
        p->retry_at = 0;
        p = peer_for(f.dst, now);
      }
      if (p->shm) break;
      ++i;
    }
    if (i > done) {
      const size_t sent = udp_->send(frames + done, i - done);
      done += sent;
      if (done < i) break;  // the socket is full
      continue;
    }
    if (frames[done].nparts > kMaxTxParts) {
      ++tx_errors_;
      ++done;
      continue;
    }
    // frames[done] goes through shared memory: push it and the following ones that do too.
    bool full = false;
    while (done < n) {
      const TxFrame& f = frames[done];
      if (f.nparts > kMaxTxParts) break;
      Peer* p = peer_for(f.dst, now);
      if (!p->shm) break;
      const size_t len = f.length();
      if (!push(*p, f, len)) {
        ++sc_.tx_ring_full;
        full = true;
        break;
      }
      p->last_use = now;
      const auto idx = size_t(p - peers_);
      dirty_mask_ |= uint64_t{1} << idx;
      ++sc_.tx_frames;
      sc_.tx_bytes += len;
      ++done;
    }
    if (full) break;
  }
  while (dirty_mask_ != 0) {
    const int idx = __builtin_ctzll(dirty_mask_);
    dirty_mask_ &= dirty_mask_ - 1;
    publish(peers_[idx]);
  }
  return done;
}

// ---- receiving ----------------------------------------------------------------------------

size_t ShmLink::drain_rings(RxFrame* frames, size_t n) {
  if (area_ == nullptr) return 0;
  size_t done = 0;
  const IpAddr me = udp_->local().ip;
  const uint32_t claimed = area_->claimed.load(std::memory_order_acquire);
  // The claimed rings from next_ring_ on, then the ones before it (each gets to go first in turn).
  const uint32_t order = uint32_t((uint64_t(claimed) | (uint64_t(claimed) << kRings)) >> next_ring_);
  for (uint32_t left = order & ((1u << kRings) - 1); left != 0 && done < n; left &= left - 1) {
    const uint32_t ri = (next_ring_ + uint32_t(std::countr_zero(left))) % kRings;
    Ring& r = area_->ring[ri];
    uint64_t pos = rpos_[ri].load(std::memory_order_relaxed);
    const uint64_t head = r.head.load(std::memory_order_acquire);
    if (head == pos) continue;
    if (head - pos > kRingBytes || (head - pos) % kAlign != 0) {  // a broken producer
      ++sc_.rx_bad;
      rpos_[ri].store(head, std::memory_order_relaxed);
      continue;
    }
    while (pos != head && done < n) {
      const uint64_t off = pos % kRingBytes;
      const auto* h = reinterpret_cast<const RecordHeader*>(r.data + off);
      const uint32_t len = h->len;
      if (len == kSkip) {
        pos += kRingBytes - off;
        continue;
      }
      const uint64_t need = align_up(kRecHdr + uint64_t(len));
      if (need > kRingBytes - off || need > head - pos) {
        ++sc_.rx_bad;
        pos = head;
        break;
      }
      RxFrame& f = frames[done++];
      f.buf = r.data + off + kRecHdr;
      f.len = len;
      f.cap = len;
      f.truncated = false;
      f.icrc_absent = (h->flags & kNoIcrc) != 0;
      std::memcpy(f.src.ip.bytes.data(), h->ip, 16);
      f.src.port = h->port;
      f.dst = me;
      ++sc_.rx_frames;
      sc_.rx_bytes += len;
      pos += need;
    }
    rpos_[ri].store(pos, std::memory_order_relaxed);
  }
  next_ring_ = (next_ring_ + 1) % kRings;
  if (done != 0) rings_used_ = true;
  return done;
}

bool ShmLink::rings_have_data() const {
  for (uint32_t i = 0; i < kRings; ++i)
    if (area_->ring[i].head.load(std::memory_order_acquire) != rpos_[i].load(std::memory_order_relaxed))
      return true;
  return false;
}

size_t ShmLink::recv(RxFrame* frames, size_t n) {
  if (area_ != nullptr) {
    // The frames handed out by the previous call are done with: give their space back.
    for (uint32_t left = area_->claimed.load(std::memory_order_relaxed); left != 0; left &= left - 1) {
      const auto i = uint32_t(std::countr_zero(left));
      const uint64_t pos = rpos_[i].load(std::memory_order_relaxed);
      if (released_[i] != pos) {
        area_->ring[i].tail.store(pos, std::memory_order_release);
        released_[i] = pos;
      }
    }
  }
  size_t done = drain_rings(frames, n);
  // The socket costs a system call, and a frame arriving in a ring meanwhile waits for it: while
  // rings carry the traffic, look at it every 8th call, and every 64th once it has brought
  // nothing but doorbells for 64 looks (a UDP frame then waits at most 64 passes, a few us, and
  // brings the period back to 8). A thread woken through fd() looks at once (after_wake).
  const uint32_t period_mask = udp_quiet_ < kUdpQuietLooks ? 7 : 63;
  if (done < n && (!rings_used_ || udp_look_now_ || (++udp_tick_ & period_mask) == 0)) {
    udp_look_now_ = false;
    size_t got = udp_->recv(frames + done, n - done);
    size_t keep = done;
    for (size_t i = done; i < done + got; ++i) {
      RxFrame& f = frames[i];
      if (!f.truncated && f.len == sizeof kDoorbell && std::memcmp(f.buf, kDoorbell, sizeof kDoorbell) == 0) {
        ++sc_.rx_doorbells;
        continue;
      }
      if (keep != i) frames[keep] = f;
      ++keep;
    }
    const bool took_bell = keep - done != got;
    udp_quiet_ = keep != done ? 0 : std::min(udp_quiet_ + 1, kUdpQuietLooks);
    done = keep;
    if (took_bell && area_ != nullptr && area_->sleeping.load(std::memory_order_seq_cst) == 2) {
      // This call (the application's thread, say) took a doorbell meant for a thread sleeping
      // on fd(): senders send no other while the word says "sent", so ring it again, or the
      // sleeper could sleep through frames that arrive after this call.
      TxFrame db;
      db.dst = udp_->local();
      db.parts[0] = {const_cast<uint8_t*>(kDoorbell), sizeof kDoorbell};
      db.nparts = 1;
      if (udp_->send(&db, 1) == 1) ++sc_.tx_doorbells;
    }
  }
  return done;
}

bool ShmLink::prepare_sleep() {
  if (area_ == nullptr) return true;
  area_->sleeping.store(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (rings_have_data()) {
    area_->sleeping.store(0, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void ShmLink::after_wake() {
  udp_look_now_ = true;  // fd() woke us: what is waiting on the socket is the reason
  if (area_ != nullptr && area_->sleeping.load(std::memory_order_relaxed) != 0)
    area_->sleeping.store(0, std::memory_order_relaxed);
}

}  // namespace softrdma::link
