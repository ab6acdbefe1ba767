// The memory translation and protection table (seed 002, FIG. 13).
//
// Each entry describes one registered region: where it starts in the consumer's address space
// (its I/O virtual address), how long it is, which protection domain owns it, what access it
// grants, the key instance, and how its bytes are found (FIG. 12: by offset from the region
// start, through an address translation table). A key is the entry index in the upper 24 bits
// and the 8-bit instance (the consumer key) in the lower 8, so a lookup is one array index, and
// a key that outlived its registration fails the instance comparison.
//
// Not thread-safe: the engine serialises all access (registration happens under its lock).
#pragma once

#include <sys/uio.h>
#include <cstdint>

#include <memory>
#include <vector>

#include "mem/access.h"
#include "mem/page_table.h"

namespace softrdma::mem {

enum class EntryType : uint8_t { kRegion, kWindow, kZeroBasedRegion };

// Access control bits of FIG. 13 (the entry's own view; `access` keeps the verbs flags).
enum Acl : uint16_t {
  kAclLocalRead = 1u << 0,
  kAclLocalWrite = 1u << 1,
  kAclRemoteRead = 1u << 2,
  kAclRemoteWrite = 1u << 3,
  kAclRemoteAtomic = 1u << 4,
  kAclWindowBind = 1u << 5,
  kAclOneTouch = 1u << 6,
  kAclTouched = 1u << 7,
};
uint16_t acl_of(uint32_t access);

// Ordered and sized (56 bytes) so that a lookup touches one cache line most of the time.
struct Entry {
  uint64_t iova = 0;  // address of the first byte as the consumer names it
  uint64_t length = 0;
  // Address translation (FIG. 12/13): control, page size, pointer. Direct: `host` is the process
  // address of the first byte. Indirect: the first byte is `first_offset` into page 0 of the
  // table at `xlate_ptr` (PageTable::pointer(), possibly shared with other entries, FIG. 14).
  uint8_t* host = nullptr;
  const void* xlate_ptr = nullptr;
  uint32_t pd = 0;
  uint32_t access = 0;  // verbs flags as registered (reported back by the verbs layer)
  uint32_t seq = 0;     // stored sequence number (FIG. 13), bumped on every (re-)registration
  uint32_t first_offset = 0;
  uint16_t acl = 0;  // FIG. 13 access control bits, checked per packet
  uint8_t instance = 0;
  EntryType type = EntryType::kRegion;
  bool valid = false;
  XlateControl xlate = XlateControl::kDirect;
  uint8_t page_shift = 12;
};

// A validated range: `offset` bytes into `entry`, `length` long. chunk() walks it in pieces
// that are contiguous in the process, at most one page each for indirect entries.
struct Translation {
  const Entry* entry = nullptr;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint8_t* host = nullptr;  // process address of the first byte

  // Host address of byte `at` of the range and how many bytes from there are contiguous.
  uint64_t chunk(uint64_t at, uint8_t** out) const;
  // Copies `length` bytes from src into the range, page by page.
  void store(const uint8_t* src) const;
  // Fills out[] with the range's contiguous pieces; returns how many, 0 if more than max.
  uint8_t parts(iovec* out, uint8_t max) const;
};

class MrTable {
 public:
  explicit MrTable(uint32_t max_entries = 1u << 16);

  // Registers process memory [host, host+length); its translation is chosen by size (FIG. 12):
  // direct within one page, else a first-order page list, else a second-order directory.
  // Returns its key, or 0 when the table is full.
  uint32_t add(uint32_t pd, uint8_t* host, uint64_t iova, uint64_t length, uint32_t access,
               EntryType type = EntryType::kRegion);
  // Registers a region translated by `table` (e.g. scattered pages, or a table another entry
  // uses too, FIG. 14); its first byte is `first_offset` into the table's first page.
  uint32_t add_table(uint32_t pd, std::shared_ptr<const PageTable> table, uint32_t first_offset,
                     uint64_t iova, uint64_t length, uint32_t access, EntryType type = EntryType::kRegion);
  // Changes a live entry in place, keeping its key (re-registration through the verbs layer).
  bool modify(uint32_t key, uint32_t pd, uint8_t* host, uint64_t iova, uint64_t length, uint32_t access,
              EntryType type);
  // Invalidates the entry of key; the next add() of that index uses a new instance.
  bool remove(uint32_t key);
  const Entry* find(uint32_t key) const;

  // Validation in the order of FIG. 15 (local) / FIG. 18 (remote): valid, type, PD, instance,
  // bounds, access. A zero-length access is validated too; callers that may skip it (IBA
  // C9-88: zero-length RDMA needs no valid R_Key) do so themselves.
  KeyError check(uint32_t key, uint32_t pd, uint64_t addr, uint64_t length, Need need,
                 Translation* out) const;

  size_t live() const { return live_; }

  static uint32_t index_of(uint32_t key) { return key >> 8; }

 private:
  uint32_t claim();
  void set_translation(uint32_t index, uint8_t* host, uint64_t length);

  std::vector<Entry> entries_;
  std::vector<std::shared_ptr<const PageTable>> tables_;  // keeps each entry's table alive
  std::vector<uint32_t> free_;
  uint32_t max_entries_;
  size_t live_ = 0;
};

}  // namespace softrdma::mem
