#include "device/stats.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace softrdma {

namespace {

constexpr char kMagic[8] = {'S', 'R', 'D', 'M', 'A', 'S', 'T', '1'};
constexpr const char* kDir = "/dev/shm";
constexpr const char* kPrefix = "softrdma-";

size_t layout_size(uint32_t max_qps) {
  return sizeof(StatsHeader) + sizeof(transport::DeviceCounters) + size_t{max_qps} * sizeof(transport::QpStatsSlot);
}

void copy_str(char* dst, size_t cap, const std::string& s) {
  size_t n = std::min(cap - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = 0;
}

}  // namespace

StatsFile::StatsFile(const std::string& name, uint32_t max_qps) {
  size_ = layout_size(max_qps);
  std::string safe = name;
  for (char& c : safe)
    if (c == '/') c = '_';
  // Two devices of one process may share a name: a per-process sequence number keeps them apart.
  static std::atomic<uint32_t> sequence{0};
  path_ = std::string(kDir) + "/" + kPrefix + std::to_string(getpid()) + "-" + std::to_string(sequence++) + "-" + safe;
  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0 && ftruncate(fd, static_cast<off_t>(size_)) == 0) {
    base_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base_ == MAP_FAILED) base_ = nullptr;
  }
  if (fd >= 0) ::close(fd);
  if (base_ == nullptr) {
    if (fd >= 0) unlink(path_.c_str());
    path_.clear();
    base_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) base_ = nullptr;
  }
  if (base_ == nullptr) return;
  auto* h = static_cast<StatsHeader*>(base_);
  std::memset(h, 0, sizeof *h);
  h->header_size = sizeof(StatsHeader);
  h->pid = static_cast<uint32_t>(getpid());
  h->max_qps = max_qps;
  h->device_counters = std::size(transport::DeviceCounters::kNames);
  h->qp_counters = std::size(transport::QpCounters::kNames);
  copy_str(h->name, sizeof h->name, name);
  std::memcpy(h->magic, kMagic, sizeof kMagic);  // last: readers check it
}

StatsFile::~StatsFile() {
  if (base_ != nullptr) munmap(base_, size_);
  if (!path_.empty()) unlink(path_.c_str());
}

void StatsFile::describe(const std::string& address, const std::string& link) {
  if (base_ == nullptr) return;
  auto* h = static_cast<StatsHeader*>(base_);
  copy_str(h->address, sizeof h->address, address);
  copy_str(h->link, sizeof h->link, link);
}

transport::StatsArea StatsFile::area() {
  if (base_ == nullptr) return {};
  auto* p = static_cast<uint8_t*>(base_) + sizeof(StatsHeader);
  auto* dev = new (p) transport::DeviceCounters();
  auto* qps = reinterpret_cast<transport::QpStatsSlot*>(p + sizeof(transport::DeviceCounters));
  return {dev, qps};
}

std::vector<StatsSnapshot> read_all_stats(const std::string& only_name) {
  std::vector<StatsSnapshot> out;
  DIR* d = opendir(kDir);
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (std::strncmp(e->d_name, kPrefix, std::strlen(kPrefix)) != 0) continue;
    std::string path = std::string(kDir) + "/" + e->d_name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    void* base = MAP_FAILED;
    if (fstat(fd, &st) == 0 && size_t(st.st_size) >= sizeof(StatsHeader))
      base = mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) continue;
    const auto* h = static_cast<const StatsHeader*>(base);
    bool ok = std::memcmp(h->magic, kMagic, sizeof kMagic) == 0 && h->header_size == sizeof(StatsHeader) &&
              h->device_counters == std::size(transport::DeviceCounters::kNames) &&
              h->qp_counters == std::size(transport::QpCounters::kNames) &&
              size_t(st.st_size) >= layout_size(h->max_qps);
    bool alive = ok && (kill(static_cast<pid_t>(h->pid), 0) == 0 || errno == EPERM);
    if (ok && !alive) unlink(path.c_str());  // left behind by a process that died
    if (ok && alive && (only_name.empty() || only_name == h->name)) {
      StatsSnapshot s;
      s.path = path;
      s.pid = h->pid;
      s.name = std::string(h->name, strnlen(h->name, sizeof h->name));
      s.address = std::string(h->address, strnlen(h->address, sizeof h->address));
      s.link = std::string(h->link, strnlen(h->link, sizeof h->link));
      const auto* p = reinterpret_cast<const uint8_t*>(base) + sizeof(StatsHeader);
      std::memcpy(&s.device, p, sizeof s.device);
      const auto* slots = reinterpret_cast<const transport::QpStatsSlot*>(p + sizeof(transport::DeviceCounters));
      for (uint32_t i = 0; i < h->max_qps; ++i)
        if (slots[i].qpn != 0) s.qps.push_back(slots[i]);
      out.push_back(std::move(s));
    }
    munmap(base, size_t(st.st_size));
  }
  closedir(d);
  return out;
}

}  // namespace softrdma
