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
#include <cstddef>
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

// The fields checked per packet come first (64 bytes: one cache line); the rest is consulted
// when entries are bound, registered, invalidated or touched.
struct Entry {
  uint64_t iova = 0;  // address of the first byte as the consumer names it (0: zero-based)
  uint64_t length = 0;
  // Address translation (FIG. 12/13): control, page size, pointer. Direct: `host` is the process
  // address of the first byte. Indirect: the first byte is `first_offset` into page 0 of the
  // table at `xlate_ptr` (PageTable::pointer(), possibly shared with other entries, FIG. 14).
  uint8_t* host = nullptr;
  const void* xlate_ptr = nullptr;
  uint64_t first_offset = 0;
  uint32_t pd = 0;
  uint32_t bind_qpn = 0;  // type-2 window: the only QP its key is good for
  uint16_t acl = 0;       // FIG. 13 access control bits, checked per packet
  uint8_t instance = 0;
  EntryType type = EntryType::kRegion;
  bool valid = false;
  XlateControl xlate = XlateControl::kDirect;
  uint8_t page_shift = 12;

  uint32_t access = 0;  // verbs flags as registered (reported back by the verbs layer)
  uint32_t seq = 0;     // stored sequence number (FIG. 13), bumped on every (re-)registration
  uint32_t parent = 0;  // window: index of the region it is bound to (0: standalone)
  uint32_t parent_seq = 0;
  uint32_t windows = 0;  // region: windows bound to it (deregistration waits for them)
  uint8_t mw_type = 0;   // window: 1 (bound with the bind verb) or 2 (bound on a send queue)
  bool owned = false;    // handed to a consumer; valid or not (an unbound window, an invalidated region)
  bool on_demand = false;  // not pinned: pages may be missing (seed 003); always direct
  bool implicit = false;   // on demand over the whole address space (host == nullptr, iova 0)
  uint32_t touch_qpn = 0;   // one-touch: the QP whose message is being placed
  uint64_t touch_left = 0;  // one-touch: bytes of that message not yet placed
};
static_assert(offsetof(Entry, access) <= 64, "the per-packet fields fit in one cache line");

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
  // Changes a live entry in place (re-registration). With new_key (the memory it translates
  // changed) it gets a new instance, so a key of the old registration is refused from now on;
  // a change of rights or PD alone keeps the key, as HCAs do. Returns the key, 0 if unknown.
  uint32_t modify(uint32_t key, uint32_t pd, uint8_t* host, uint64_t iova, uint64_t length, uint32_t access,
                  EntryType type, bool new_key = true);
  // The key an owned entry answers to now (its index with the current instance), 0 if none:
  // for the owner, whose copy of a key fast registration or binding may have moved on.
  uint32_t current_key(uint32_t key) const;
  // Frees the entry at key's index (deregistration), whatever its instance: the owner frees
  // what it allocated, even after fast registration or binding gave it new keys. The next
  // add() of that index uses a new instance. False if nobody owns the index, or for a region
  // with windows bound to it.
  bool remove(uint32_t key);
  const Entry* find(uint32_t key) const;  // valid entries only
  // The entry at key's index if a consumer owns it, valid or not.
  const Entry* owned(uint32_t key) const;

  // Validation in the order of FIG. 15 (local) / FIG. 18 (remote): valid, type, PD, instance,
  // (for windows) the QP and the region under it, bounds, access. `qpn` is the QP the access
  // comes through. A zero-length access is validated too; callers that may skip it (IBA C9-88:
  // zero-length RDMA needs no valid R_Key) do so themselves.
  KeyError check(uint32_t key, uint32_t pd, uint64_t addr, uint64_t length, Need need,
                 Translation* out, uint32_t qpn = 0) const;

  // ---- entries that change through the send queue (mr_table_ops.cc) ----

  // An entry the consumer owns but that is not valid until bound / registered: a memory window
  // of type 1 or 2, or a region for fast registration through the send queue with room for
  // max_pages pages of translation. Returns its key, 0 when the table is full.
  uint32_t alloc_window(uint32_t pd, uint8_t mw_type);
  uint32_t alloc_fast_reg(uint32_t pd, uint32_t max_pages);

  struct Bind {
    uint32_t window = 0;  // the window's current key
    uint32_t new_key = 0;  // the key to bind under: same index, new low byte (type 1: chosen by the verbs)
    uint32_t region = 0;  // the region's key
    uint32_t pd = 0;      // the binding QP's protection domain
    uint32_t qpn = 0;     // the binding QP (a type-2 window is tied to it)
    uint64_t addr = 0;    // where the window starts, in the region's addressing
    uint64_t length = 0;  // 0 unbinds a type-1 window
    uint32_t access = 0;  // remote rights of the window, kZeroBased, kOneTouch
  };
  // Binds a window to part of a region (FIG. 15, check g: the region allows window binding).
  // On success the window's key is new_key from now on.
  KeyError bind(const Bind& b);

  // Fast registration (FIG. 11): the owned, invalid fast-reg entry of `key` becomes a valid
  // region at iova over the process memory in segs (whole pages between segments), under
  // new_key (same index, new instance). kOutOfBounds when it needs more pages than allocated.
  KeyError fast_register(uint32_t key, uint32_t new_key, uint32_t pd, const iovec* segs, uint32_t nsegs,
                         uint64_t iova, uint64_t length, uint32_t access);

  // Invalidation through the send queue (local) or by an incoming SEND with Invalidate
  // (remote, through QP qpn): a fast-reg region or a type-2 window stops being valid; its index
  // stays owned and the next registration or bind uses a new instance.
  KeyError invalidate(uint32_t key, uint32_t pd, uint32_t qpn, bool remote);

  // One-touch entries (FIG. 18B). touch() is called when the first packet of an RDMA message
  // that targets the entry has passed check(): a second message is refused (and the entry
  // invalidated); placed() counts the bytes placed, in any order, and the entry stops being
  // valid when the whole message is in. Both do nothing for ordinary entries.
  KeyError touch(uint32_t key, uint32_t qpn, uint64_t message_length);
  void placed(uint32_t key, uint64_t bytes);

  size_t live() const { return live_; }

  static uint32_t index_of(uint32_t key) { return key >> 8; }

 private:
  uint32_t claim();
  void set_translation(uint32_t index, uint8_t* host, uint64_t length);
  void set_fields(Entry& e, uint32_t pd, uint64_t iova, uint64_t length, uint32_t access, EntryType type);
  void unbind(Entry& window);

  std::vector<Entry> entries_;
  std::vector<std::shared_ptr<const PageTable>> tables_;  // keeps each entry's table alive
  std::vector<std::shared_ptr<PageTable>> fast_reg_tables_;  // fast-reg entries: rewritten in place
  std::vector<uint32_t> free_;
  uint32_t max_entries_;
  size_t live_ = 0;
};

}  // namespace softrdma::mem
