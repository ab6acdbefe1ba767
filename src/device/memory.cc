// Memory objects of the device: regions (pinned, on demand, from page lists, for fast
// registration) and memory windows. The table itself is mem::MrTable, owned by the engine and
// changed only under its lock; this file keeps the objects the API hands out.
#include <cerrno>

#include "device/device.h"
#include "device/owned.h"
#include "mem/odp.h"
#include "mem/pin.h"

namespace softrdma {

Mr* Device::reg_mr(Pd* pd, void* addr, size_t length, uint32_t access, int* err, std::optional<uint64_t> iova) {
  *err = 0;
  // IBA 10.6.3.1 (C10-?): remote write or atomic access requires local write.
  if ((access & (mem::kRemoteWrite | mem::kRemoteAtomic)) && !(access & mem::kLocalWrite)) {
    *err = EINVAL;
    return nullptr;
  }
  access &= ~mem::kFastReg;  // only alloc_fast_reg_mr() makes those
  // The implicit on-demand region (seed 003): the whole address space, addressed as itself.
  bool implicit = (access & mem::kOnDemand) && addr == nullptr && length == SIZE_MAX;
  if (pd == nullptr || (addr == nullptr && length != 0 && !implicit) || (implicit && (access & mem::kZeroBased))) {
    *err = EINVAL;
    return nullptr;
  }
  auto mr = std::make_unique<Mr>();
  mr->pd = pd;
  mr->addr = addr;
  mr->length = length;
  mr->iova = implicit ? 0 : iova.value_or(reinterpret_cast<uint64_t>(addr));
  mr->access = access;
  mr->implicit = implicit;
  mem::EntryType type = (access & mem::kZeroBased) ? mem::EntryType::kZeroBasedRegion : mem::EntryType::kRegion;
  // Ordinary regions stay resident while registered (seed 001); ENOMEM over RLIMIT_MEMLOCK and
  // EFAULT for unmapped memory, as ibv_reg_mr on a real device.
  if (!(access & mem::kOnDemand)) {
    if ((*err = mem::pin(addr, length)) != 0) return nullptr;
    mr->pinned = true;
  } else if (!implicit && mem::residency(addr, length) == mem::Residency::kUnmapped) {
    *err = EFAULT;  // on demand, but it must exist
    return nullptr;
  }
  {
    std::lock_guard<std::mutex> g(engine_->mutex());
    mr->lkey = mr->rkey =
        engine_->mrs().add(pd->handle, static_cast<uint8_t*>(addr), mr->iova, implicit ? ~uint64_t{0} : length,
                           access, type);
  }
  if (mr->lkey == 0) {
    if (mr->pinned) mem::unpin(addr, length);
    *err = ENOMEM;
    return nullptr;
  }
  pd->refs++;
  return keep(mrs_, std::move(mr));
}

Mr* Device::reg_mr_pages(Pd* pd, const std::vector<void*>& pages, uint8_t page_shift, uint64_t iova,
                         size_t length, uint32_t access, int* err) {
  *err = EINVAL;
  if (pd == nullptr || pages.empty() || page_shift < 12 || page_shift > 30) return nullptr;
  if ((access & (mem::kRemoteWrite | mem::kRemoteAtomic)) && !(access & mem::kLocalWrite)) return nullptr;
  std::vector<uint8_t*> list;
  for (void* p : pages) list.push_back(static_cast<uint8_t*>(p));
  auto mr = std::make_unique<Mr>();
  mr->pd = pd;
  mr->addr = pages[0];
  mr->length = length;
  mr->iova = iova;
  mr->access = access;
  mem::EntryType type = (access & mem::kZeroBased) ? mem::EntryType::kZeroBasedRegion : mem::EntryType::kRegion;
  {
    std::lock_guard<std::mutex> g(engine_->mutex());
    auto table = mem::PageTable::build(list, page_shift);
    mr->lkey = mr->rkey = engine_->mrs().add_table(pd->handle, table, 0, iova, length, access, type);
  }
  if (mr->lkey == 0) return nullptr;  // longer than the pages, or the table is full
  *err = 0;
  pd->refs++;
  return keep(mrs_, std::move(mr));
}

int Device::dereg_mr(Mr* mr) {
  std::lock_guard<std::mutex> g(objects_mu_);
  if (!owns(mrs_, mr)) return EINVAL;
  {
    std::lock_guard<std::mutex> eg(engine_->mutex());
    // Windows are unbound or deallocated first (IBA 10.6.7.1).
    if (!engine_->mrs().remove(mr->lkey)) return EBUSY;
  }
  if (mr->pinned) mem::unpin(mr->addr, mr->length);
  mr->pd->refs--;
  erase_owned(mrs_, mr);
  return 0;
}

int Device::rereg_mr(Mr* mr, Pd* pd, void* addr, size_t length, uint64_t iova, uint32_t access) {
  if ((access & (mem::kRemoteWrite | mem::kRemoteAtomic)) && !(access & mem::kLocalWrite)) return EINVAL;
  if (pd == nullptr || (addr == nullptr && length != 0)) return EINVAL;
  std::lock_guard<std::mutex> g(objects_mu_);
  if (!owns(mrs_, mr) || mr->implicit) return EINVAL;
  {
    std::lock_guard<std::mutex> eg(engine_->mutex());
    const mem::Entry* e = engine_->mrs().find(mr->lkey);
    if (e != nullptr && e->windows != 0) return EBUSY;
  }
  mem::EntryType type = (access & mem::kZeroBased) ? mem::EntryType::kZeroBasedRegion : mem::EntryType::kRegion;
  // The new range is pinned before the old one is let go, so shared pages never drop out.
  bool pin = !(access & mem::kOnDemand);
  if (pin)
    if (int rc = mem::pin(addr, length)) return rc;
  {
    // New memory, new key: a peer still holding the old rkey is refused (seed 002). New rights
    // or PD alone keep the key (as mlx5 does; rdma-core's tests rely on it).
    std::lock_guard<std::mutex> eg(engine_->mutex());
    auto* host = static_cast<uint8_t*>(addr);
    bool moved = addr != mr->addr || length != mr->length || iova != mr->iova;
    uint32_t key = engine_->mrs().modify(mr->lkey, pd->handle, host, iova, length, access, type, moved);
    if (key == 0) {
      if (pin) mem::unpin(addr, length);
      return EINVAL;
    }
    mr->lkey = mr->rkey = key;
  }
  if (mr->pinned) mem::unpin(mr->addr, mr->length);
  mr->pinned = pin;
  if (pd != mr->pd) {
    pd->refs++;
    mr->pd->refs--;
    mr->pd = pd;
  }
  mr->addr = addr;
  mr->length = length;
  mr->iova = iova;
  mr->access = access;
  return 0;
}

Mr* Device::alloc_fast_reg_mr(Pd* pd, uint32_t max_pages, int* err) {
  *err = EINVAL;
  if (pd == nullptr || max_pages == 0 || max_pages > (1u << 20)) return nullptr;
  auto mr = std::make_unique<Mr>();
  mr->pd = pd;
  mr->addr = nullptr;
  mr->length = uint64_t{max_pages} << 12;
  mr->iova = 0;
  mr->access = mem::kFastReg;
  {
    std::lock_guard<std::mutex> g(engine_->mutex());
    mr->lkey = mr->rkey = engine_->mrs().alloc_fast_reg(pd->handle, max_pages);
  }
  if (mr->lkey == 0) {
    *err = ENOMEM;
    return nullptr;
  }
  *err = 0;
  pd->refs++;
  return keep(mrs_, std::move(mr));
}

int Device::advise_mr(Pd* pd, bool write, bool flush, const Sge* sges, uint32_t n) {
  if (pd == nullptr || (n > 0 && sges == nullptr)) return EINVAL;
  for (uint32_t i = 0; i < n; ++i) {
    uint8_t* host;
    {
      std::lock_guard<std::mutex> g(engine_->mutex());
      mem::Translation t;
      if (engine_->mrs().check(sges[i].lkey, pd->handle, sges[i].addr, sges[i].length, mem::Need::kLocalRead, &t) !=
              mem::KeyError::kOk ||
          !t.entry->on_demand)
        return EINVAL;
      host = t.host;
    }
    if (sges[i].length == 0) continue;
    if (mem::residency(host, sges[i].length) == mem::Residency::kUnmapped) return EFAULT;
    if (flush) {
      if (int rc = mem::populate(host, sges[i].length, write)) return rc;
    } else if (engine_->faults().request(host, sges[i].length, write) == 0) {
      return EAGAIN;  // the fault worker's queue is full
    }
  }
  return 0;
}

Mw* Device::alloc_mw(Pd* pd, uint8_t type, int* err) {
  *err = EINVAL;
  if (pd == nullptr || (type != 1 && type != 2)) return nullptr;
  auto mw = std::make_unique<Mw>();
  mw->pd = pd;
  mw->type = type;
  {
    std::lock_guard<std::mutex> g(engine_->mutex());
    mw->rkey = engine_->mrs().alloc_window(pd->handle, type);
  }
  if (mw->rkey == 0) {
    *err = ENOMEM;
    return nullptr;
  }
  *err = 0;
  pd->refs++;
  return keep(mws_, std::move(mw));
}

int Device::dealloc_mw(Mw* mw) {
  std::lock_guard<std::mutex> g(objects_mu_);
  if (!owns(mws_, mw)) return EINVAL;
  {
    std::lock_guard<std::mutex> eg(engine_->mutex());
    engine_->mrs().remove(mw->rkey);  // unbinds it from its region
  }
  mw->pd->refs--;
  erase_owned(mws_, mw);
  return 0;
}

int Device::bind_mw(QueuePair* qp, Mw* mw, uint64_t wr_id, uint32_t send_flags, Mr* mr, uint64_t addr,
                    uint64_t length, uint32_t access) {
  if (qp == nullptr || mw == nullptr || mw->type != 1) return EINVAL;
  if (length != 0 && mr == nullptr) return EINVAL;
  uint32_t region_key;
  {
    // The table's current keys: a failed bind leaves the window's key where it was, and a fast
    // registration moves a region's key on without this Mr knowing.
    std::lock_guard<std::mutex> g(engine_->mutex());
    if (uint32_t k = engine_->mrs().current_key(mw->rkey)) mw->rkey = k;
    region_key = mr != nullptr ? engine_->mrs().current_key(mr->lkey) : 0;
  }
  SendWr wr;
  wr.wr_id = wr_id;
  wr.opcode = WrOpcode::kBindMw;
  wr.flags = send_flags;
  wr.bind.mw = mw->rkey;
  // The next key of the window (ibv_inc_rkey): the old one stops working once this executes.
  wr.bind.new_key = (mw->rkey & ~0xffu) | ((mw->rkey + 1) & 0xffu);
  wr.bind.mr = region_key;
  wr.bind.addr = addr;
  wr.bind.length = length;
  wr.bind.access = access;
  size_t bad;
  if (int rc = post_send(qp, &wr, 1, &bad)) return rc;
  mw->rkey = wr.bind.new_key;
  return 0;
}

}  // namespace softrdma
