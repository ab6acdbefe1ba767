// Published statistics: each open device maps a file in /dev/shm holding its counters, so
// `softrdma stat` in another process reads them live, with no call into the device and no
// cost on the datapath (the engine increments counters in place).
//
// File: /dev/shm/softrdma-<pid>-<n>-<device name> (n numbers the devices of a process); layout: StatsHeader, DeviceCounters, then
// max_qps QpStatsSlot entries. The file is removed when the device closes; readers skip files
// whose process is gone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "transport/counters.h"

namespace softrdma {

struct StatsHeader {
  char magic[8];  // "SRDMAST1"
  uint32_t header_size;
  uint32_t pid;
  uint32_t max_qps;
  uint32_t device_counters;  // number of uint64 device counters (layout check)
  uint32_t qp_counters;      // number of uint64 counters per QP slot
  uint32_t reserved;
  char name[64];
  char address[64];  // "127.0.0.2:4791"
  char link[128];    // link description, e.g. with the fault spec
};

class StatsFile {
 public:
  // Creates the file (or, if /dev/shm is unavailable, anonymous memory of the same layout).
  StatsFile(const std::string& name, uint32_t max_qps);
  ~StatsFile();
  StatsFile(const StatsFile&) = delete;
  StatsFile& operator=(const StatsFile&) = delete;

  void describe(const std::string& address, const std::string& link);
  transport::StatsArea area();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* base_ = nullptr;
  size_t size_ = 0;
};

// A snapshot of another process's device, read from its stats file.
struct StatsSnapshot {
  std::string path;
  uint32_t pid = 0;
  std::string name, address, link;
  transport::DeviceCounters device;
  std::vector<transport::QpStatsSlot> qps;  // used slots only
};

// Reads every live device's stats (optionally only the one called name).
std::vector<StatsSnapshot> read_all_stats(const std::string& only_name = "");

}  // namespace softrdma
