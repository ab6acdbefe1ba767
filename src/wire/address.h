// Addresses on the RoCEv2 fabric: an IPv4 or IPv6 address and a UDP port.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace softrdma::wire {

// An IP address kept in IPv6 form; IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d),
// which is also exactly the RoCEv2 GID of an IPv4 address (Annex A17.4.5.1).
struct IpAddr {
  std::array<uint8_t, 16> bytes{};

  // Inline, as word compares: these run for every packet (ICRC contexts, GSO grouping), and a
  // call to memcmp costs more than the compare.
  bool is_v4() const {  // ::ffff:0:0/96, the IPv4-mapped prefix (RFC 4291 2.5.5.2)
    uint64_t lo;
    uint32_t mid;
    std::memcpy(&lo, bytes.data(), sizeof lo);
    std::memcpy(&mid, bytes.data() + 8, sizeof mid);
    return lo == 0 && mid == kV4MappedMid;
  }
  // The IPv4 address in network byte order; only meaningful when is_v4().
  uint32_t v4_be() const;
  static IpAddr from_v4_be(uint32_t addr_be);
  static IpAddr from_v6(const in6_addr& a);
  static std::optional<IpAddr> parse(std::string_view text);  // "127.0.0.2" or "::1"
  std::string str() const;
  bool operator==(const IpAddr& o) const {
    uint64_t a[2], b[2];
    std::memcpy(a, bytes.data(), sizeof a);
    std::memcpy(b, o.bytes.data(), sizeof b);
    return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
  }

 private:
  // Bytes 8..11 of a mapped address (0, 0, 0xff, 0xff) read as one host-order word.
  static constexpr uint32_t kV4MappedMid = std::endian::native == std::endian::little ? 0xffff0000u : 0x0000ffffu;
};

struct Endpoint {
  IpAddr ip;
  uint16_t port = 0;  // host byte order

  // Fills a sockaddr_in or sockaddr_in6 (by ip.is_v4()); returns its length.
  socklen_t to_sockaddr(sockaddr_storage& ss) const;
  static std::optional<Endpoint> from_sockaddr(const sockaddr* sa);
  std::string str() const;
  bool operator==(const Endpoint&) const = default;
};

}  // namespace softrdma::wire
