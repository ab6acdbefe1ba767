#include "mem/mr_table.h"

#include <array>
#include <cstring>
#include <random>

namespace softrdma::mem {

std::string_view name(KeyError e) {
  // clang-format off
  static constexpr std::array<std::string_view, 9> kNames = {
      "ok", "invalid key", "wrong entry type", "wrong protection domain", "stale key instance",
      "out of bounds", "access not granted", "window bound to another QP", "entry busy"};
  // clang-format on
  auto i = static_cast<size_t>(e);
  return i < kNames.size() ? kNames[i] : "unknown";
}

uint16_t acl_of(uint32_t access) {
  // Local read is implied by every registration (IBA 10.6.3.1).
  uint16_t a = kAclLocalRead;
  if (access & kLocalWrite) a |= kAclLocalWrite;
  if (access & kRemoteRead) a |= kAclRemoteRead;
  if (access & kRemoteWrite) a |= kAclRemoteWrite;
  if (access & kRemoteAtomic) a |= kAclRemoteAtomic;
  if (access & kMwBind) a |= kAclWindowBind;
  if (access & kOneTouch) a |= kAclOneTouch;
  return a;
}

uint64_t Translation::chunk(uint64_t at, uint8_t** out) const {
  const Entry& e = *entry;
  uint64_t left = length - at;
  if (e.xlate == XlateControl::kDirect) {
    // Integer arithmetic: the implicit on-demand region translates from address 0.
    *out = reinterpret_cast<uint8_t*>(reinterpret_cast<uintptr_t>(e.host) + offset + at);
    return left;
  }
  // FIG. 12: offset from the region start -> page index -> page address + offset in page.
  uint64_t off = e.first_offset + offset + at;
  uint64_t mask = (uint64_t{1} << e.page_shift) - 1;
  *out = PageTable::page(e.xlate, e.xlate_ptr, off >> e.page_shift) + (off & mask);
  uint64_t in_page = mask + 1 - (off & mask);
  return left < in_page ? left : in_page;
}

void Translation::store(const uint8_t* src) const {
  for (uint64_t at = 0; at < length;) {
    uint8_t* host;
    uint64_t n = chunk(at, &host);
    std::memcpy(host, src + at, n);
    at += n;
  }
}

uint8_t Translation::parts(iovec* out, uint8_t max) const {
  uint8_t n = 0;
  for (uint64_t at = 0; at < length; ++n) {
    if (n == max) return 0;
    uint8_t* host;
    uint64_t len = chunk(at, &host);
    out[n] = {host, len};
    at += len;
  }
  return n;
}

MrTable::MrTable(uint32_t max_entries) : max_entries_(max_entries) {
  entries_.reserve(1024);
  tables_.emplace_back();
  fast_reg_tables_.emplace_back();
  entries_.emplace_back();  // index 0 is never handed out: key 0 is always invalid
}

uint32_t MrTable::claim() {
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    if (entries_.size() >= max_entries_) return 0;
    index = static_cast<uint32_t>(entries_.size());
    entries_.emplace_back();
    tables_.emplace_back();
    fast_reg_tables_.emplace_back();
    // A random first instance makes keys differ from run to run, so a peer holding a key of a
    // previous process on this address is refused rather than served.
    static thread_local std::minstd_rand rng{std::random_device{}()};
    entries_.back().instance = static_cast<uint8_t>(rng());
  }
  Entry& e = entries_[index];
  uint8_t instance = static_cast<uint8_t>(e.instance + 1);
  uint32_t seq = e.seq + 1;
  e = Entry{};
  e.instance = instance;
  e.seq = seq;
  e.valid = e.owned = true;
  ++live_;
  return index;
}

void MrTable::set_translation(uint32_t index, uint8_t* host, uint64_t length) {
  Entry& e = entries_[index];
  e.host = host;
  tables_[index].reset();
  e.xlate = XlateControl::kDirect;
  e.xlate_ptr = nullptr;
  e.first_offset = 0;
  e.page_shift = 12;
  // Huge pages are only worth asking the kernel about for regions that could span one.
  if (length >= (uint64_t{2} << 20) && host != nullptr) e.page_shift = page_shift_of(host);
  uint64_t page = uint64_t{1} << e.page_shift;
  uint64_t mask = page - 1;
  e.implicit = e.on_demand && host == nullptr && length == ~uint64_t{0};
  // Within one page there is nothing to translate; on-demand memory is addressed directly so
  // that its residency can be asked of the kernel for the whole range at once.
  if (host == nullptr || e.on_demand || (reinterpret_cast<uintptr_t>(host) & mask) + length <= page) {
    e.xlate = XlateControl::kDirect;
    return;
  }
  // Memory is virtually contiguous in this process, but it is translated through page lists
  // like scattered memory, so both paths are the same code (FIG. 12).
  tables_[index] = PageTable::contiguous(host, length, e.page_shift);
  e.xlate_ptr = tables_[index]->pointer();
  e.xlate = tables_[index]->order();
  e.first_offset = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(host) & mask);
}

uint32_t MrTable::add(uint32_t pd, uint8_t* host, uint64_t iova, uint64_t length, uint32_t access,
                      EntryType type) {
  uint32_t index = claim();
  if (index == 0) return 0;
  Entry& e = entries_[index];
  set_fields(e, pd, iova, length, access, type);
  set_translation(index, host, length);
  return (index << 8) | e.instance;
}

uint32_t MrTable::add_table(uint32_t pd, std::shared_ptr<const PageTable> table, uint32_t first_offset,
                            uint64_t iova, uint64_t length, uint32_t access, EntryType type) {
  if (table == nullptr || first_offset + length > (table->pages() << table->page_shift())) return 0;
  uint32_t index = claim();
  if (index == 0) return 0;
  Entry& e = entries_[index];
  set_fields(e, pd, iova, length, access, type);
  e.xlate = table->order();
  e.page_shift = table->page_shift();
  e.first_offset = first_offset;
  e.host = table->page(0) + first_offset;
  e.xlate_ptr = table->pointer();
  tables_[index] = std::move(table);
  return (index << 8) | e.instance;
}

uint32_t MrTable::modify(uint32_t key, uint32_t pd, uint8_t* host, uint64_t iova, uint64_t length,
                         uint32_t access, EntryType type, bool new_key) {
  if (find(key) == nullptr) return 0;
  Entry& e = entries_[index_of(key)];
  set_fields(e, pd, iova, length, access, type);
  e.seq++;  // windows bound to the old registration stop working
  if (new_key) e.instance = static_cast<uint8_t>(e.instance + 1);  // and so do its keys
  set_translation(index_of(key), host, length);
  return (index_of(key) << 8) | e.instance;
}

void MrTable::set_fields(Entry& e, uint32_t pd, uint64_t iova, uint64_t length, uint32_t access, EntryType type) {
  e.iova = iova;
  e.length = length;
  e.pd = pd;
  e.access = access;
  e.acl = acl_of(access);
  e.type = type;
  e.on_demand = (access & kOnDemand) != 0;
  e.touch_qpn = 0;
  e.touch_left = 0;
}

bool MrTable::remove(uint32_t key) {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size() || !entries_[index].owned) return false;
  Entry& e = entries_[index];
  if (e.windows != 0) return false;  // IBA 10.6.7.1: windows first
  if (e.type == EntryType::kWindow) unbind(e);
  e.valid = e.owned = false;
  e.xlate_ptr = nullptr;
  tables_[index].reset();  // the page list lives on while another entry shares it (FIG. 14)
  fast_reg_tables_[index].reset();
  free_.push_back(index);
  --live_;
  return true;
}

uint32_t MrTable::current_key(uint32_t key) const {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size() || !entries_[index].owned) return 0;
  return (index << 8) | entries_[index].instance;
}

const Entry* MrTable::owned(uint32_t key) const {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size()) return nullptr;
  const Entry& e = entries_[index];
  if (!e.owned || e.instance != static_cast<uint8_t>(key)) return nullptr;
  return &e;
}

const Entry* MrTable::find(uint32_t key) const {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size()) return nullptr;
  const Entry& e = entries_[index];
  if (!e.valid || e.instance != static_cast<uint8_t>(key)) return nullptr;
  return &e;
}

KeyError MrTable::check(uint32_t key, uint32_t pd, uint64_t addr, uint64_t length, Need need,
                        Translation* out, uint32_t qpn) const {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size() || !entries_[index].valid) return KeyError::kInvalidKey;
  const Entry& e = entries_[index];
  bool local = need == Need::kLocalRead || need == Need::kLocalWrite;
  if (local && e.type == EntryType::kWindow) return KeyError::kWrongType;
  if (e.pd != pd) return KeyError::kWrongPd;
  if (e.instance != static_cast<uint8_t>(key)) return KeyError::kWrongInstance;
  if (e.type == EntryType::kWindow) {
    if (e.bind_qpn != 0 && e.bind_qpn != qpn) return KeyError::kWrongQp;
    // The region under a window must still be the registration it was bound to.
    const Entry& r = entries_[e.parent];
    if (e.parent != 0 && (!r.valid || r.seq != e.parent_seq)) return KeyError::kInvalidKey;
  }
  // One-touch: while a message is being placed, no other QP gets in (FIG. 18B).
  if ((e.acl & kAclTouched) && e.touch_qpn != qpn) return KeyError::kBusy;
  // Zero-based regions are addressed by offset; others by the address they were registered at.
  uint64_t start = e.type == EntryType::kZeroBasedRegion ? 0 : e.iova;
  if (addr < start || length > e.length || addr - start > e.length - length) return KeyError::kOutOfBounds;
  uint16_t needed = 0;
  switch (need) {
    case Need::kLocalRead:
      needed = kAclLocalRead;
      break;
    case Need::kLocalWrite:
      needed = kAclLocalWrite;
      break;
    case Need::kRemoteRead:
      needed = kAclRemoteRead;
      break;
    case Need::kRemoteWrite:
      needed = kAclRemoteWrite;
      break;
    case Need::kRemoteAtomic:
      needed = kAclRemoteAtomic;
      break;
  }
  if ((e.acl & needed) != needed) return KeyError::kNoAccess;
  if (out != nullptr) {
    out->entry = &e;
    out->offset = addr - start;
    out->length = length;
    if (length == 0 || e.xlate == XlateControl::kDirect) {
      out->host = reinterpret_cast<uint8_t*>(reinterpret_cast<uintptr_t>(e.host) + out->offset);
    } else {
      out->chunk(0, &out->host);
    }
  }
  return KeyError::kOk;
}

}  // namespace softrdma::mem
