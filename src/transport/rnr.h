// RNR NAK timer values (IBA Table 45, "RNR NAK timer field encodings"), shared by the responder
// that picks one and the requester that waits it out.
#pragma once

#include <cstdint>

namespace softrdma::transport {

inline constexpr uint32_t kRnrTimerUs[32] = {655360, 10,    20,    30,    40,    60,    80,    120,
                                             160,    240,   320,   480,   640,   960,   1280,  1920,
                                             2560,   3840,  5120,  7680,  10240, 15360, 20480, 30720,
                                             40960,  61440, 81920, 122880, 163840, 245760, 327680, 491520};

// The shortest timer code of at least `us` microseconds (code 0 means 655 ms: never chosen).
inline uint8_t rnr_timer_code(uint64_t us) {
  for (uint8_t code = 1; code < 32; ++code)
    if (kRnrTimerUs[code] >= us) return code;
  return 31;
}

}  // namespace softrdma::transport
