// Helpers shared by the link tests: frame builders, a bounded poll-receive loop, an in-memory Link.
#pragma once

#include <poll.h>
#include <time.h>

#include <cstring>
#include <string>
#include <vector>

#include "link/link.h"

namespace softrdma::link::test {

inline uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

inline Endpoint ep(const char* ip, uint16_t port) {
  Endpoint e;
  e.ip = *IpAddr::parse(ip);
  e.port = port;
  return e;
}

// A frame's bytes: a 4-byte index followed by a pattern derived from it.
inline std::vector<uint8_t> frame_bytes(uint32_t index, size_t len) {
  std::vector<uint8_t> b(len);
  for (size_t i = 0; i < len; ++i) b[i] = uint8_t(index * 31 + i * 7);
  if (len >= 4) std::memcpy(b.data(), &index, 4);
  return b;
}

inline uint32_t frame_index(const std::vector<uint8_t>& b) {
  uint32_t v = UINT32_MAX;
  if (b.size() >= 4) std::memcpy(&v, b.data(), 4);
  return v;
}

// Splits `bytes` into up to `nparts` iovec pieces (the frame must outlive the TxFrame).
inline TxFrame make_tx(const Endpoint& dst, std::vector<uint8_t>& bytes, uint8_t nparts) {
  TxFrame f;
  f.dst = dst;
  size_t off = 0;
  for (uint8_t i = 0; i < nparts; ++i) {
    size_t len = i + 1 == nparts ? bytes.size() - off : (bytes.size() / nparts);
    f.parts[i].iov_base = bytes.data() + off;
    f.parts[i].iov_len = len;
    off += len;
  }
  f.nparts = nparts;
  return f;
}

struct Received {
  std::vector<uint8_t> bytes;
  uint32_t len = 0;
  bool truncated = false;
  Endpoint src;
  IpAddr dst;
};

// Receives until `want` frames arrived or `timeout_ms` passed; drives link.service() meanwhile.
// Copies each frame out before the next recv() (the link owns the bytes until then).
inline std::vector<Received> recv_frames(Link& link, size_t want, int timeout_ms, Link* also_service = nullptr) {
  std::vector<Received> out;
  const uint64_t end = mono_ns() + uint64_t(timeout_ms) * 1'000'000;
  while (out.size() < want) {
    const uint64_t now = mono_ns();
    if (now >= end) break;
    uint64_t next = link.service(now);
    if (also_service) {
      const uint64_t n2 = also_service->service(now);
      if (n2 && (next == 0 || n2 < next)) next = n2;
    }
    RxFrame rx[16];
    size_t n = link.recv(rx, 16);
    for (size_t i = 0; i < n; ++i) {
      Received r;
      r.len = rx[i].len;
      r.truncated = rx[i].truncated;
      r.bytes.assign(rx[i].buf, rx[i].buf + std::min(rx[i].len, rx[i].cap));
      r.src = rx[i].src;
      r.dst = rx[i].dst;
      out.push_back(std::move(r));
    }
    if (n) continue;
    int wait_ms = int((end - now) / 1'000'000) + 1;
    if (next) wait_ms = std::min<int>(wait_ms, int(next > now ? (next - now) / 1'000'000 : 0) + 1);
    pollfd p{link.fd(), POLLIN, 0};
    (void)::poll(&p, 1, wait_ms);
  }
  return out;
}

// An in-memory Link that records every frame sent; `capacity` limits how many more frames it
// accepts (simulating a full socket buffer).
class MemLink final : public Link {
 public:
  struct Sent {
    Endpoint dst;
    std::vector<uint8_t> bytes;
  };
  std::vector<Sent> sent;
  size_t capacity = SIZE_MAX;
  size_t calls = 0;

  size_t send(const TxFrame* frames, size_t n) override {
    ++calls;
    size_t k = std::min(n, capacity);
    if (capacity != SIZE_MAX) capacity -= k;
    for (size_t i = 0; i < k; ++i) {
      Sent s;
      s.dst = frames[i].dst;
      for (uint8_t p = 0; p < frames[i].nparts; ++p) {
        auto* b = static_cast<const uint8_t*>(frames[i].parts[p].iov_base);
        s.bytes.insert(s.bytes.end(), b, b + frames[i].parts[p].iov_len);
      }
      counters_.tx_frames++;
      counters_.tx_bytes += s.bytes.size();
      sent.push_back(std::move(s));
    }
    return k;
  }
  size_t recv(RxFrame*, size_t) override { return 0; }
  int fd() const override { return -1; }
  Endpoint local() const override { return ep("127.0.0.9", 4791); }
  const LinkCounters& counters() const override { return counters_; }
  std::string describe() const override { return "mem"; }

 private:
  LinkCounters counters_;
};

}  // namespace softrdma::link::test
