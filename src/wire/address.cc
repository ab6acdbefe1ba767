#include "wire/address.h"

#include <arpa/inet.h>

#include <cstring>

namespace softrdma::wire {
namespace {

// ::ffff:0:0/96, the IPv4-mapped prefix (RFC 4291 2.5.5.2); also the RoCEv2 GID form of an
// IPv4 address (IBA Annex A17.4.5.1).
constexpr uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

uint32_t IpAddr::v4_be() const {
  uint32_t v;
  std::memcpy(&v, bytes.data() + 12, 4);  // bytes are already in network order
  return v;
}

IpAddr IpAddr::from_v4_be(uint32_t addr_be) {
  IpAddr a;
  std::memcpy(a.bytes.data(), kV4MappedPrefix, sizeof kV4MappedPrefix);
  std::memcpy(a.bytes.data() + 12, &addr_be, 4);
  return a;
}

IpAddr IpAddr::from_v6(const in6_addr& a) {
  IpAddr r;
  std::memcpy(r.bytes.data(), &a, 16);
  return r;
}

std::optional<IpAddr> IpAddr::parse(std::string_view text) {
  // inet_pton needs a NUL-terminated string; longest IPv6 text form is INET6_ADDRSTRLEN - 1.
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  in_addr v4;
  if (inet_pton(AF_INET, buf, &v4) == 1) return from_v4_be(v4.s_addr);
  in6_addr v6;
  if (inet_pton(AF_INET6, buf, &v6) == 1) return from_v6(v6);
  return std::nullopt;
}

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN];
  const char* s = is_v4() ? inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf)
                          : inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  return s ? std::string(s) : std::string("?");
}

socklen_t Endpoint::to_sockaddr(sockaddr_storage& ss) const {
  std::memset(&ss, 0, sizeof ss);
  if (ip.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = ip.v4_be();
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  std::memcpy(&sin6->sin6_addr, ip.bytes.data(), 16);
  return sizeof(sockaddr_in6);
}

std::optional<Endpoint> Endpoint::from_sockaddr(const sockaddr* sa) {
  if (!sa) return std::nullopt;
  Endpoint ep;
  switch (sa->sa_family) {
    case AF_INET: {
      sockaddr_in sin;
      std::memcpy(&sin, sa, sizeof sin);  // sa may be a less aligned sockaddr
      ep.ip = IpAddr::from_v4_be(sin.sin_addr.s_addr);
      ep.port = ntohs(sin.sin_port);
      return ep;
    }
    case AF_INET6: {
      // A v4-mapped address (dual-stack socket) is stored as is, which is our IPv4 form.
      sockaddr_in6 sin6;
      std::memcpy(&sin6, sa, sizeof sin6);
      ep.ip = IpAddr::from_v6(sin6.sin6_addr);
      ep.port = ntohs(sin6.sin6_port);
      return ep;
    }
    default:
      return std::nullopt;
  }
}

std::string Endpoint::str() const {
  // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict, falsely) on "[" + str + "]".
  std::string s;
  if (!ip.is_v4()) s += '[';
  s += ip.str();
  if (!ip.is_v4()) s += ']';
  s += ':';
  s += std::to_string(port);
  return s;
}

}  // namespace softrdma::wire
