// A PCLMULQDQ folding CRC-32 (reflected polynomial 0xEDB88320), as a prototype for the ICRC.
//
// wire::crc32_update is slice-by-8: 8 table lookups per 8 bytes, about 2 GB/s on one core, which
// caps the adapter's bandwidth because every byte sent and received goes through the ICRC. The
// folding method (Gopal et al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
// Instruction", Intel 2009; the same constants as zlib's and Linux's crc32-pclmul) folds 64 bytes
// per step with carry-less multiplications. This file exists so bench_icrc can show the gain on
// this machine and check the result against wire::crc32_update; it is not used by the adapter.
#pragma once

#include <cstddef>
#include <cstdint>

namespace softrdma::bench {

// Same contract as wire::crc32_update: the register before and after, no pre/post inversion.
// Falls back to wire::crc32_update for short inputs and when the CPU lacks PCLMULQDQ/SSE4.1.
uint32_t crc32_update_pclmul(uint32_t crc, const void* data, size_t len);
bool have_pclmul();

}  // namespace softrdma::bench
