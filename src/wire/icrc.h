// RoCEv2 invariant CRC (IBA Annex A17.8) and the plain CRC-32 it is built on.
//
// The ICRC covers the IP header, the UDP header, the BTH and everything up to the ICRC itself,
// with the fields that routers may change replaced by ones (IPv4: TOS, TTL, header checksum;
// IPv6: traffic class, flow label, hop limit; UDP checksum; BTH resv8a byte), preceded by 64 bits
// of ones standing for the masked LRH. A UDP socket does not see the IP header, so the header is
// rebuilt from the socket addresses: version, lengths, protocol, DF flag and addresses are known;
// only the IPv4 Identification is not (see icrc_verify).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "wire/address.h"

namespace softrdma::wire {

// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320) update without pre/post inversion:
// crc32_update(0xffffffff, ...) then ~ gives the usual CRC-32.
// Uses carry-less multiplication (crc32_clmul.cc) for long runs when the CPU has it.
uint32_t crc32_update(uint32_t crc, const void* data, size_t len);
// The portable slice-by-8 table path alone (for tests and benchmarks).
uint32_t crc32_update_table(uint32_t crc, const void* data, size_t len);

// The ways to compute the CRC-32; crc32_update picks the fastest the CPU has (at startup).
enum class Crc32Path : uint8_t {
  kTable,       // slice-by-8, any CPU
  kClmul,       // PCLMULQDQ folding 128-bit lanes
  kVpclmul256,  // VPCLMULQDQ on 256-bit vectors (AVX2)
  kVpclmul512,  // VPCLMULQDQ on 512-bit vectors (AVX-512F/VL)
};
bool crc32_path_available(Crc32Path path);
// crc32_update through one path, for any length (the table does what the path cannot fold):
// for tests and benchmarks. A path the CPU lacks falls back to the table.
uint32_t crc32_update_path(Crc32Path path, uint32_t crc, const void* data, size_t len);
std::string_view name(Crc32Path path);

// The addressing a packet travelled with; addresses are IPv4-mapped for IPv4.
struct IcrcContext {
  IpAddr src;
  IpAddr dst;
  uint16_t sport = 0;  // host byte order
  uint16_t dport = 0;
};

// ICRC of a packet whose UDP payload (BTH .. pad, without the 4 ICRC bytes) is given as parts.
// ipv4_id is the IPv4 Identification the packet carries (softrdma sends 0: see udp_link.cc).
uint32_t icrc_compute(const IcrcContext& ctx, const iovec* parts, size_t nparts, uint16_t ipv4_id = 0);

// The 4 ICRC bytes as they appear on the wire.
void icrc_store(uint8_t* dst, uint32_t icrc);
uint32_t icrc_load(const uint8_t* src);

// How the ICRC changes with the IPv4 Identification: the CRC is affine in the ID bits, so
//   icrc_compute(ctx, parts, n, id) == icrc_compute(ctx, parts, n, 0) ^ icrc_ipv4_id_delta(body, id)
// for every IPv4 packet whose UDP payload without the ICRC is `body` bytes (below 64 KiB; 0 above).
// The link uses it for UDP GSO, where the kernel numbers the segments of one send 0, 1, 2, ...
uint32_t icrc_ipv4_id_delta(size_t body, uint16_t id);

enum class IcrcResult : uint8_t {
  kGood,             // matches with IPv4 ID 0 (or IPv6)
  kGoodInferredId,   // matches for exactly one nonzero IPv4 ID, recovered from the CRC itself
  kBad,
};
std::string_view name(IcrcResult r);

// Verifies the ICRC of a received UDP payload pkt[0..len) whose last 4 bytes are the ICRC.
// For IPv4, a packet from a sender that writes a nonzero Identification (Linux rxe, RoCE NICs)
// fails with ID 0; when infer_ipv4_id is set, the ID is then solved for: the CRC is affine in
// the 16 ID bits, so the mismatch either equals the CRC image of one ID (accept, reporting it
// through *inferred_id) or of none (reject). This trades 16 of the 32 check bits for the ability
// to check packets whose IP header we cannot see.
IcrcResult icrc_verify(const IcrcContext& ctx, const uint8_t* pkt, size_t len, bool infer_ipv4_id,
                       uint16_t* inferred_id = nullptr);

}  // namespace softrdma::wire
