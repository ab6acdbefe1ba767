#include "wire/address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

namespace softrdma::wire {
namespace {

TEST(IpAddr, V4MappedForm) {
  const IpAddr a = *IpAddr::parse("127.0.0.2");
  EXPECT_TRUE(a.is_v4());
  const uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2};
  EXPECT_EQ(std::memcmp(a.bytes.data(), want, 16), 0);
  EXPECT_EQ(a.v4_be(), htonl(0x7f000002));
  EXPECT_EQ(IpAddr::from_v4_be(htonl(0x7f000002)), a);
  EXPECT_EQ(a.str(), "127.0.0.2");
  EXPECT_EQ(*IpAddr::parse("::ffff:10.0.0.1"), *IpAddr::parse("10.0.0.1"));
  EXPECT_EQ(IpAddr::parse("::ffff:10.0.0.1")->str(), "10.0.0.1");
}

TEST(IpAddr, V6) {
  const IpAddr a = *IpAddr::parse("::1");
  EXPECT_FALSE(a.is_v4());
  EXPECT_EQ(a.bytes[15], 1);
  EXPECT_EQ(a.str(), "::1");
  EXPECT_EQ(IpAddr::parse("fe80::1:2")->str(), "fe80::1:2");
  EXPECT_FALSE(IpAddr{}.is_v4());  // :: is not v4-mapped
  EXPECT_FALSE(IpAddr::parse("::fffe:10.0.0.1")->is_v4());
  in6_addr raw{};
  raw.s6_addr[0] = 0x20;
  raw.s6_addr[1] = 0x01;
  EXPECT_EQ(IpAddr::from_v6(raw).str(), "2001::");
}

TEST(IpAddr, ParseRejects) {
  for (const char* s : {"", "1.2.3", "1.2.3.256", "::g", "localhost", "1.2.3.4 ", "1.2.3.4:80",
                        "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000"})
    EXPECT_FALSE(IpAddr::parse(s).has_value()) << s;
  // A string_view need not be NUL-terminated.
  std::string_view sv("10.0.0.12345", 8);
  EXPECT_EQ(IpAddr::parse(sv)->str(), "10.0.0.1");
}

TEST(Endpoint, SockaddrRoundTripV4) {
  const Endpoint e{*IpAddr::parse("127.0.0.2"), 4791};
  sockaddr_storage ss;
  ASSERT_EQ(e.to_sockaddr(ss), sizeof(sockaddr_in));
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
  EXPECT_EQ(sin->sin_family, AF_INET);
  EXPECT_EQ(ntohs(sin->sin_port), 4791);
  EXPECT_EQ(sin->sin_addr.s_addr, htonl(0x7f000002));
  EXPECT_EQ(Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss)), e);
  EXPECT_EQ(e.str(), "127.0.0.2:4791");
}

TEST(Endpoint, SockaddrRoundTripV6) {
  const Endpoint e{*IpAddr::parse("::1"), 4791};
  sockaddr_storage ss;
  ASSERT_EQ(e.to_sockaddr(ss), sizeof(sockaddr_in6));
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
  EXPECT_EQ(sin6->sin6_family, AF_INET6);
  EXPECT_EQ(ntohs(sin6->sin6_port), 4791);
  EXPECT_EQ(sin6->sin6_addr.s6_addr[15], 1);
  EXPECT_EQ(Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss)), e);
  EXPECT_EQ(e.str(), "[::1]:4791");
}

TEST(Endpoint, V4MappedSockaddrBecomesV4) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(1234);
  ASSERT_EQ(inet_pton(AF_INET6, "::ffff:192.168.1.7", &sin6.sin6_addr), 1);
  const auto e = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin6));
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->ip.is_v4());
  EXPECT_EQ(e->port, 1234);
  EXPECT_EQ(e->str(), "192.168.1.7:1234");
  sockaddr_storage ss;
  EXPECT_EQ(e->to_sockaddr(ss), sizeof(sockaddr_in));  // sent back as plain IPv4
}

TEST(Endpoint, RejectsOtherFamilies) {
  sockaddr_storage ss{};
  ss.ss_family = AF_UNIX;
  EXPECT_FALSE(Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss)).has_value());
  EXPECT_FALSE(Endpoint::from_sockaddr(nullptr).has_value());
}

}  // namespace
}  // namespace softrdma::wire
