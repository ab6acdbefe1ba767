// Addresses on the RoCEv2 fabric: an IPv4 or IPv6 address and a UDP port.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace softrdma::wire {

// An IP address kept in IPv6 form; IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d),
// which is also exactly the RoCEv2 GID of an IPv4 address (Annex A17.4.5.1).
struct IpAddr {
  std::array<uint8_t, 16> bytes{};

  bool is_v4() const;
  // The IPv4 address in network byte order; only meaningful when is_v4().
  uint32_t v4_be() const;
  static IpAddr from_v4_be(uint32_t addr_be);
  static IpAddr from_v6(const in6_addr& a);
  static std::optional<IpAddr> parse(std::string_view text);  // "127.0.0.2" or "::1"
  std::string str() const;
  bool operator==(const IpAddr&) const = default;
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
