// Test helper: the RoCEv2 frames of ../shared/testdata/rocev2-vectors.pcap, split into the
// addressing (what a UDP socket would report) and the UDP payload.
#pragma once

#include <pcap/pcap.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "wire/icrc.h"

namespace softrdma::wire::vectors {

struct Frame {
  IcrcContext ctx;
  bool v4 = false;
  uint16_t ipv4_id = 0;          // from the IP header, for checking inference
  std::vector<uint8_t> payload;  // UDP payload: BTH .. ICRC
};

inline std::string vectors_path() { return std::string(SOFTRDMA_SHARED_DIR) + "/testdata/rocev2-vectors.pcap"; }

inline uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// Ethernet / IPv4 or IPv6 / UDP only, which is all the vectors hold; other frames are skipped.
inline std::vector<Frame> load_vectors(std::string* err = nullptr) {
  std::vector<Frame> out;
  char ebuf[PCAP_ERRBUF_SIZE];
  pcap_t* pc = pcap_open_offline(vectors_path().c_str(), ebuf);
  if (!pc) {
    if (err) *err = ebuf;
    return out;
  }
  pcap_pkthdr* h;
  const u_char* d;
  while (pcap_next_ex(pc, &h, &d) == 1) {
    const uint8_t* p = d;
    size_t n = h->caplen;
    if (n < 14) continue;
    const uint16_t et = be16(p + 12);
    p += 14, n -= 14;
    Frame f;
    const uint8_t* udp;
    if (et == 0x0800) {
      if (n < 20 || p[9] != 17) continue;
      const size_t ihl = (p[0] & 0x0f) * 4u;
      f.v4 = true;
      f.ipv4_id = be16(p + 4);
      uint32_t s, t;
      std::memcpy(&s, p + 12, 4);
      std::memcpy(&t, p + 16, 4);
      f.ctx.src = IpAddr::from_v4_be(s);
      f.ctx.dst = IpAddr::from_v4_be(t);
      udp = p + ihl, n -= ihl;
    } else if (et == 0x86dd) {
      if (n < 40 || p[6] != 17) continue;
      in6_addr s, t;
      std::memcpy(&s, p + 8, 16);
      std::memcpy(&t, p + 24, 16);
      f.ctx.src = IpAddr::from_v6(s);
      f.ctx.dst = IpAddr::from_v6(t);
      udp = p + 40, n -= 40;
    } else {
      continue;
    }
    if (n < 8 || be16(udp + 4) > n) continue;
    f.ctx.sport = be16(udp);
    f.ctx.dport = be16(udp + 2);
    f.payload.assign(udp + 8, udp + be16(udp + 4));
    out.push_back(std::move(f));
  }
  pcap_close(pc);
  return out;
}

}  // namespace softrdma::wire::vectors
