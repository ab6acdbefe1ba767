// The memory translation and protection table (seed 002, FIG. 13).
//
// Each entry describes one registered region: where it starts in the consumer's address space
// (its I/O virtual address), how long it is, which protection domain owns it, what access it
// grants, and the key instance. A key is the entry index in the upper 24 bits and the 8-bit
// instance (the consumer key) in the lower 8, so a lookup is one array index, and a key that
// outlived its registration fails the instance comparison.
//
// Not thread-safe: the engine serialises all access (registration happens under its lock).
#pragma once

#include <cstdint>
#include <vector>

#include "mem/access.h"

namespace softrdma::mem {

enum class EntryType : uint8_t { kRegion, kWindow, kZeroBasedRegion };

struct Entry {
  uint64_t iova = 0;      // address of the first byte as the consumer names it
  uint64_t length = 0;
  uint8_t* host = nullptr;  // process address of that first byte
  uint32_t pd = 0;
  uint32_t access = 0;
  uint8_t instance = 0;
  EntryType type = EntryType::kRegion;
  bool valid = false;
};

struct Translation {
  uint8_t* host = nullptr;  // process address of the requested first byte
  const Entry* entry = nullptr;
};

class MrTable {
 public:
  explicit MrTable(uint32_t max_entries = 1u << 16);

  // Registers a region; returns its key, or 0 when the table is full.
  uint32_t add(uint32_t pd, uint8_t* host, uint64_t iova, uint64_t length, uint32_t access,
               EntryType type = EntryType::kRegion);
  // Invalidates the entry of key; the next add() of that index uses a new instance.
  bool remove(uint32_t key);
  const Entry* find(uint32_t key) const;

  // Validation in the order of FIG. 15 (local) / FIG. 18 (remote): valid, type, PD, instance,
  // bounds, access. A zero-length access is validated too; callers that may skip it (IBA
  // C9-88: zero-length RDMA needs no valid R_Key) do so themselves.
  KeyError check(uint32_t key, uint32_t pd, uint64_t addr, uint64_t length, Need need, Translation* out) const;

  size_t live() const { return live_; }

  static uint32_t index_of(uint32_t key) { return key >> 8; }

 private:
  std::vector<Entry> entries_;
  std::vector<uint32_t> free_;
  uint32_t max_entries_;
  size_t live_ = 0;
};

}  // namespace softrdma::mem
