// The TCP baseline, run over the session's own TCP connection (TCP_NODELAY) so that RDMA and
// TCP figures come from the same run, the same addresses and the same machine state.
//
// Latency: a ping-pong of `size`-byte messages; half the round trip is reported, exactly like
// the SEND ping-pong. Both ends busy-poll the socket (non-blocking reads in a loop), as the RDMA
// side polls its CQ: a blocking TCP ping-pong measures thread wake-ups instead (on this kind of
// virtual machine 7 to 20 us per wake-up, depending on where the scheduler puts the threads),
// which bench/tcp_pingpong reports separately. Bandwidth: the client streams `bytes` in write() calls of `size` bytes;
// the clock stops when the server has read the last byte and answered with one byte.
#include <algorithm>
#include <vector>

#include "tools/perf/perf.h"

namespace softrdma::tools::perf {

namespace {
using Clock = std::chrono::steady_clock;
constexpr char kAck = 'A';
}  // namespace

bool tcp_lat(Channel& ch, uint32_t size, uint64_t iters, uint64_t warmup, Result* r, std::string* err) {
  std::vector<uint8_t> buf(size, 0x5a);
  std::vector<double> samples;
  samples.reserve(iters);
  const auto start = Clock::now();
  for (uint64_t i = 0; i < iters + warmup; ++i) {
    const auto t0 = Clock::now();
    if (!ch.write_all(buf.data(), size) || !ch.read_all_spin(buf.data(), size)) {
      *err = "TCP ping-pong: connection lost";
      return false;
    }
    const auto t1 = Clock::now();
    if (i >= warmup) samples.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / 2);
  }
  r->seconds = seconds_since(start);
  r->iters = samples.size();
  r->lat = lat_stats(samples);
  return true;
}

bool tcp_bw(Channel& ch, uint32_t size, uint64_t bytes, Result* r, std::string* err) {
  std::vector<uint8_t> buf(size, 0x5a);
  const auto t0 = Clock::now();
  uint64_t writes = 0;
  for (uint64_t left = bytes; left > 0; ++writes) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, size));
    if (!ch.write_all(buf.data(), n)) {
      *err = "TCP stream: connection lost";
      return false;
    }
    left -= n;
  }
  char ack = 0;
  if (!ch.read_all(&ack, 1) || ack != kAck) {
    *err = "TCP stream: no acknowledgment from the server";
    return false;
  }
  const double secs = seconds_since(t0);
  r->iters = writes;
  r->seconds = secs;
  r->mbytes_per_s = static_cast<double>(bytes) / secs / 1e6;
  r->gbits_per_s = static_cast<double>(bytes) * 8 / secs / 1e9;
  r->mpps = static_cast<double>(writes) / secs / 1e6;
  return true;
}

bool tcp_serve(Channel& ch, Mode mode, uint32_t size, uint64_t count, std::string* err) {
  if (mode == Mode::kLat) {
    std::vector<uint8_t> buf(size);
    for (uint64_t i = 0; i < count; ++i) {
      if (!ch.read_all_spin(buf.data(), size) || !ch.write_all(buf.data(), size)) {
        *err = "TCP ping-pong: connection lost";
        return false;
      }
    }
    return true;
  }
  std::vector<uint8_t> buf(256 * 1024);
  for (uint64_t left = count; left > 0;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    if (!ch.read_all(buf.data(), n)) {
      *err = "TCP stream: connection lost";
      return false;
    }
    left -= n;
  }
  if (!ch.write_all(&kAck, 1)) {
    *err = "TCP stream: connection lost";
    return false;
  }
  return true;
}

}  // namespace softrdma::tools::perf
