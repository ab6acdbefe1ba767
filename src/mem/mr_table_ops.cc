// Table entries that change through the send queue or the wire (seed 002): memory windows bound
// to regions (FIG. 15 check g), regions registered by a work request (FIG. 11), invalidation
// (locally, or by an incoming SEND with Invalidate, FIG. 17A), and one-touch entries (FIG. 18B).
#include <algorithm>

#include "mem/mr_table.h"

namespace softrdma::mem {

namespace {

}  // namespace

uint32_t MrTable::alloc_window(uint32_t pd, uint8_t mw_type) {
  if (mw_type != 1 && mw_type != 2) return 0;
  uint32_t index = claim();
  if (index == 0) return 0;
  Entry& e = entries_[index];
  e.type = EntryType::kWindow;
  e.pd = pd;
  e.mw_type = mw_type;
  e.valid = false;  // nothing to reach until bound
  return (index << 8) | e.instance;
}

uint32_t MrTable::alloc_fast_reg(uint32_t pd, uint32_t max_pages) {
  if (max_pages == 0) return 0;
  uint32_t index = claim();
  if (index == 0) return 0;
  Entry& e = entries_[index];
  e.pd = pd;
  e.access = kFastReg;
  e.valid = false;  // registered by a work request later
  fast_reg_tables_[index] = PageTable::with_capacity(max_pages);
  return (index << 8) | e.instance;
}

void MrTable::unbind(Entry& w) {
  if (w.parent != 0 && entries_[w.parent].windows > 0) entries_[w.parent].windows--;
  w.parent = 0;
  w.valid = false;
  w.bind_qpn = 0;
  w.xlate_ptr = nullptr;
  tables_[&w - entries_.data()].reset();
}

KeyError MrTable::bind(const Bind& b) {
  // The window: owned by the consumer, in the binding QP's PD, named by its current key.
  uint32_t wi = index_of(b.window);
  if (wi == 0 || wi >= entries_.size() || !entries_[wi].owned) return KeyError::kInvalidKey;
  Entry& w = entries_[wi];
  if (w.type != EntryType::kWindow) return KeyError::kWrongType;
  if (w.pd != b.pd) return KeyError::kWrongPd;
  // The owner names its window by index: its copy of the key may be ahead of the table after a
  // bind that failed (the key instance guards remote access, not the owner's own operations).
  if (index_of(b.new_key) != wi) return KeyError::kInvalidKey;
  // A type-2 window is bound once, then invalidated before it is bound again (IBA 10.6.7.2.2).
  if (w.mw_type == 2 && w.valid) return KeyError::kBusy;
  if (w.mw_type == 1 && b.length == 0) {  // a zero-length bind unbinds a type-1 window
    unbind(w);
    w.instance = static_cast<uint8_t>(b.new_key);
    return KeyError::kOk;
  }
  // The region: the checks of FIG. 15 with access "window binding".
  Translation t;
  KeyError err = check(b.region, b.pd, b.addr, b.length, Need::kLocalRead, &t);
  if (err != KeyError::kOk) return err;
  const Entry& r = entries_[index_of(b.region)];
  if (r.type == EntryType::kWindow) return KeyError::kWrongType;
  if (!(r.acl & kAclWindowBind)) return KeyError::kNoAccess;
  // Remote write or atomic access through a window needs a region the adapter may write
  // (IBA 10.6.7.2.1): a window never grants more than its region allows.
  if ((b.access & (kRemoteWrite | kRemoteAtomic)) && !(r.acl & kAclLocalWrite)) return KeyError::kNoAccess;
  if (w.valid) unbind(w);  // rebinding a type-1 window
  uint32_t ri = index_of(b.region);
  w.iova = (b.access & kZeroBased) ? 0 : b.addr;
  w.length = b.length;
  w.access = b.access & (kRemoteAccess | kZeroBased | kOneTouch);
  // Windows serve remote access only: their ACL never holds local rights.
  w.acl = static_cast<uint16_t>(acl_of(w.access) & ~kAclLocalRead);
  w.xlate = r.xlate;
  w.page_shift = r.page_shift;
  w.xlate_ptr = r.xlate_ptr;
  w.host = t.host;
  w.first_offset = r.first_offset + t.offset;
  tables_[wi] = tables_[ri];  // FIG. 14: the window translates through its region's table
  w.parent = ri;
  w.parent_seq = r.seq;
  entries_[ri].windows++;
  w.bind_qpn = w.mw_type == 2 ? b.qpn : 0;
  w.touch_qpn = 0;
  w.touch_left = 0;
  w.instance = static_cast<uint8_t>(b.new_key);
  w.seq++;
  w.valid = true;
  return KeyError::kOk;
}

KeyError MrTable::fast_register(uint32_t key, uint32_t new_key, uint32_t pd, const iovec* segs, uint32_t nsegs,
                                uint64_t iova, uint64_t length, uint32_t access) {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size() || !entries_[index].owned || !fast_reg_tables_[index])
    return KeyError::kInvalidKey;
  Entry& e = entries_[index];
  if (e.pd != pd) return KeyError::kWrongPd;
  if (index_of(new_key) != index) return KeyError::kWrongInstance;  // by index, as bind()
  if (e.valid) return KeyError::kBusy;  // invalidate first (IBA 10.6.3.5: fast-register a free entry)
  if ((access & (kRemoteWrite | kRemoteAtomic)) && !(access & kLocalWrite)) return KeyError::kNoAccess;
  PageTable& table = *fast_reg_tables_[index];
  uint64_t first = 0, total = 0;
  for (uint32_t i = 0; i < nsegs; ++i) total += segs[i].iov_len;
  if (nsegs == 0 || total != length || !table.assign(segs, nsegs, 12, &first)) return KeyError::kOutOfBounds;
  EntryType type = (access & kZeroBased) ? EntryType::kZeroBasedRegion : EntryType::kRegion;
  set_fields(e, pd, iova, length, access | kFastReg, type);
  e.xlate = table.order();
  e.page_shift = table.page_shift();
  e.xlate_ptr = table.pointer();
  e.first_offset = first;
  e.host = table.page(0) + first;
  e.instance = static_cast<uint8_t>(new_key);
  e.seq++;
  e.valid = true;
  return KeyError::kOk;
}

KeyError MrTable::invalidate(uint32_t key, uint32_t pd, uint32_t qpn, bool remote) {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size() || !entries_[index].valid) return KeyError::kInvalidKey;
  Entry& e = entries_[index];
  // Only what the send queue made can the send queue (or a peer) unmake: fast-registered
  // regions and type-2 windows. Type-1 windows and ordinary regions belong to the verbs.
  bool window = e.type == EntryType::kWindow;
  if (window ? e.mw_type != 2 : !(e.access & kFastReg)) return KeyError::kWrongType;
  if (e.pd != pd) return KeyError::kWrongPd;
  if (e.instance != static_cast<uint8_t>(key)) return KeyError::kWrongInstance;
  if (window && remote && e.bind_qpn != qpn) return KeyError::kWrongQp;
  if (window) {
    unbind(e);
  } else {
    e.valid = false;
    e.seq++;  // windows bound to it stop working
  }
  return KeyError::kOk;
}

KeyError MrTable::touch(uint32_t key, uint32_t qpn, uint64_t message_length) {
  const Entry* found = find(key);
  if (found == nullptr) return KeyError::kInvalidKey;
  Entry& e = entries_[index_of(key)];
  if (!(e.acl & kAclOneTouch)) return KeyError::kOk;
  if (e.acl & kAclTouched) {
    // A second message: FIG. 18B invalidates the entry and terminates.
    e.valid = false;
    if (e.type == EntryType::kWindow) unbind(e);
    return KeyError::kBusy;
  }
  e.acl |= kAclTouched;
  e.touch_qpn = qpn;
  e.touch_left = message_length;
  if (message_length == 0) placed(key, 0);
  return KeyError::kOk;
}

void MrTable::placed(uint32_t key, uint64_t bytes) {
  uint32_t index = index_of(key);
  if (index == 0 || index >= entries_.size()) return;
  Entry& e = entries_[index];
  if (!e.valid || e.instance != static_cast<uint8_t>(key) || !(e.acl & kAclTouched)) return;
  e.touch_left -= std::min(bytes, e.touch_left);
  if (e.touch_left != 0) return;
  // The message is all in, whatever order its segments came in: the entry is used up.
  if (e.type == EntryType::kWindow)
    unbind(e);
  else
    e.valid = false;
}

}  // namespace softrdma::mem
