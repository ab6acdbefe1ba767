#include "mem/mr_table.h"

#include <array>
#include <random>

namespace softrdma::mem {

std::string_view name(KeyError e) {
  static constexpr std::array<std::string_view, 7> kNames = {
      "ok", "invalid key", "wrong entry type", "wrong protection domain", "stale key instance",
      "out of bounds", "access not granted"};
  auto i = static_cast<size_t>(e);
  return i < kNames.size() ? kNames[i] : "unknown";
}

MrTable::MrTable(uint32_t max_entries) : max_entries_(max_entries) {
  entries_.reserve(1024);
  entries_.emplace_back();  // index 0 is never handed out: key 0 is always invalid
}

uint32_t MrTable::add(uint32_t pd, uint8_t* host, uint64_t iova, uint64_t length, uint32_t access,
                      EntryType type) {
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    if (entries_.size() >= max_entries_) return 0;
    index = static_cast<uint32_t>(entries_.size());
    entries_.emplace_back();
    // A random first instance makes keys differ from run to run, so a peer holding a key of a
    // previous process on this address is refused rather than served.
    static thread_local std::minstd_rand rng{std::random_device{}()};
    entries_.back().instance = static_cast<uint8_t>(rng());
  }
  Entry& e = entries_[index];
  e.instance = static_cast<uint8_t>(e.instance + 1);
  e.iova = iova;
  e.length = length;
  e.host = host;
  e.pd = pd;
  e.access = access;
  e.type = type;
  e.valid = true;
  ++live_;
  return (index << 8) | e.instance;
}

bool MrTable::remove(uint32_t key) {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size()) return false;
  Entry& e = entries_[index];
  if (!e.valid || e.instance != static_cast<uint8_t>(key)) return false;
  e.valid = false;
  free_.push_back(index);
  --live_;
  return true;
}

const Entry* MrTable::find(uint32_t key) const {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size()) return nullptr;
  const Entry& e = entries_[index];
  if (!e.valid || e.instance != static_cast<uint8_t>(key)) return nullptr;
  return &e;
}

KeyError MrTable::check(uint32_t key, uint32_t pd, uint64_t addr, uint64_t length, Need need,
                        Translation* out) const {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size() || !entries_[index].valid) return KeyError::kInvalidKey;
  const Entry& e = entries_[index];
  bool local = need == Need::kLocalRead || need == Need::kLocalWrite;
  if (local && e.type == EntryType::kWindow) return KeyError::kWrongType;
  if (e.pd != pd) return KeyError::kWrongPd;
  if (e.instance != static_cast<uint8_t>(key)) return KeyError::kWrongInstance;
  // Zero-based regions are addressed by offset; others by the address they were registered at.
  uint64_t start = e.type == EntryType::kZeroBasedRegion ? 0 : e.iova;
  if (addr < start || length > e.length || addr - start > e.length - length) return KeyError::kOutOfBounds;
  uint32_t needed = 0;
  switch (need) {
    case Need::kLocalRead: needed = 0; break;
    case Need::kLocalWrite: needed = kLocalWrite; break;
    case Need::kRemoteRead: needed = kRemoteRead; break;
    case Need::kRemoteWrite: needed = kRemoteWrite; break;
    case Need::kRemoteAtomic: needed = kRemoteAtomic; break;
  }
  if ((e.access & needed) != needed) return KeyError::kNoAccess;
  if (out != nullptr) {
    out->host = e.host + (addr - start);
    out->entry = &e;
  }
  return KeyError::kOk;
}

}  // namespace softrdma::mem
