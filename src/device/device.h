// The adapter: the C++ API of softrdma.
//
// A Device is one RoCEv2 channel adapter with one port, bound to an IP address and UDP port.
// It owns the memory translation and protection table, the QPs, the link and the progress
// engine, and hands out verbs objects (PD, MR, CQ, QP, SRQ, AH) with the lifetime rules of
// the verbs model: an object in use by another cannot be destroyed (EBUSY).
//
// Threading: every call may come from any thread. Posting and polling take no lock that the
// background thread holds for long; polling an empty CQ makes progress on the caller's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "device/stats.h"
#include "link/fault_link.h"
#include "transport/engine.h"

namespace softrdma {

using transport::AddressVector;
using transport::QpAttr;
using transport::QpCaps;
using transport::QpState;
using transport::QpType;

struct DeviceConfig {
  std::string name = "softrdma0";
  // Local address; unset = take the first free 127.0.0.x (x >= 2) for this process.
  std::optional<wire::IpAddr> address;
  uint16_t port = wire::kRoceV2Port;
  uint32_t mtu = 4096;  // port MTU in bytes: 256, 512, 1024, 2048 or 4096
  std::optional<link::FaultConfig> fault;
  bool progress_thread = true;  // background thread sleeping in ppoll for packets and timers
  bool busy_poll = false;       // the background thread spins instead of sleeping
  // Same-host link: frames to devices of this user on this machine go through shared memory
  // (link/shm_link.h), the rest over UDP. SOFTRDMA_SHM=0/1 overrides.
  bool shm = true;
  transport::EngineConfig engine;

  // Reads SOFTRDMA_ADDR, SOFTRDMA_PORT, SOFTRDMA_MTU, SOFTRDMA_FAULT, SOFTRDMA_BUSY_POLL, SOFTRDMA_SHM.
  static DeviceConfig from_env(std::string* err);
};

struct DeviceAttr {
  std::string fw_ver = "0.1.0";
  uint64_t node_guid = 0;
  uint64_t sys_image_guid = 0;
  uint64_t max_mr_size = ~0ull;
  uint64_t page_size_cap = 0xfffff000;
  uint32_t vendor_id = 0;
  uint32_t vendor_part_id = 0;
  uint32_t hw_ver = 1;
  uint32_t max_qp = 0;
  uint32_t max_qp_wr = 0;
  uint32_t max_sge = 0;
  uint32_t max_sge_rd = 0;
  uint32_t max_cq = 0;
  uint32_t max_cqe = 0;
  uint32_t max_mr = 0;
  uint32_t max_pd = 0;
  uint32_t max_qp_rd_atom = 0;
  uint32_t max_qp_init_rd_atom = 0;
  uint32_t max_res_rd_atom = 0;
  uint32_t max_srq = 0;
  uint32_t max_srq_wr = 0;
  uint32_t max_srq_sge = 0;
  uint32_t max_ah = 0;
  uint32_t max_inline_data = 0;
  uint16_t max_pkeys = 1;
  uint8_t phys_port_cnt = 1;
};

struct PortAttr {
  uint8_t state = 4;       // ACTIVE (IBV_PORT_ACTIVE)
  uint8_t max_mtu = 5;     // verbs MTU enum
  uint8_t active_mtu = 5;
  uint32_t gid_tbl_len = 1;
  uint32_t max_msg_sz = 1u << 31;
  uint16_t pkey_tbl_len = 1;
  uint8_t link_layer_ethernet = 1;
  uint8_t phys_state = 5;  // LinkUp
  uint8_t active_width = 2;  // 4x
  uint8_t active_speed = 32;  // 25 Gb/s class, shown as EDR-like
};

class Device;

struct Pd {
  Device* dev;
  uint32_t handle;
  std::atomic<uint32_t> refs{0};
};

struct Mr {
  Pd* pd;
  void* addr;
  size_t length;
  uint64_t iova;
  uint32_t access;
  uint32_t lkey;
  uint32_t rkey;
  bool pinned = false;    // mlock'ed for its lifetime (mem/pin.h)
  bool implicit = false;  // on-demand region over the whole address space
};

// A memory window (IBA 10.6.7): type 1 is bound with bind_mw(), type 2 by a kBindMw work
// request and is then tied to that QP. rkey is its current key.
struct Mw {
  Pd* pd;
  uint8_t type;
  uint32_t rkey;
};

struct Cq : queue::CompletionQueue {
  using CompletionQueue::CompletionQueue;
  Device* dev = nullptr;
  std::atomic<uint32_t> refs{0};
};

struct Srq : queue::RecvQueue {
  using RecvQueue::RecvQueue;
  Pd* pd = nullptr;
  std::atomic<uint32_t> refs{0};
  void* user_context = nullptr;  // the caller's (the verbs layer's ibv_srq)
};

class AddressHandle {
 public:
  Pd* pd;
  AddressVector av;
  wire::Endpoint dst;
};

struct QpInitAttr {
  QpType type = QpType::kRc;
  Cq* send_cq = nullptr;
  Cq* recv_cq = nullptr;
  Srq* srq = nullptr;
  QpCaps cap;
  bool sq_sig_all = false;
  void* user_context = nullptr;
  // What a send WR that fails before it is sent does (FIG. 11 option 1 or 2).
  transport::SendErrorMode send_error = transport::SendErrorMode::kDefault;
};

struct QueuePair {
  Pd* pd;
  QpInitAttr init;
  std::unique_ptr<transport::Qp> qp;
  uint32_t qpn() const { return qp->qpn; }
  QpState state() const { return qp->state.load(std::memory_order_acquire); }
};

// An asynchronous event (IBA 11.6.3 "affiliated asynchronous events").
struct AsyncEvent {
  enum class Type : uint8_t {
    kSrqLimitReached,  // an armed SRQ fell below its limit (the limit is disarmed)
  };
  Type type;
  Cq* cq = nullptr;
  Srq* srq = nullptr;
  QueuePair* qp = nullptr;
};
using AsyncHandler = std::function<void(const AsyncEvent&)>;

class Device {
 public:
  static std::unique_ptr<Device> open(const DeviceConfig& cfg, std::string* err);
  // Over a link the caller made (tests, fuzzers); cfg.address and cfg.fault are ignored.
  static std::unique_ptr<Device> open_with_link(const DeviceConfig& cfg, std::unique_ptr<link::Link> link,
                                                std::string* err);
  // Where `softrdma stat` finds this device's counters ("" if not published).
  const std::string& stats_path() const { return stats_->path(); }
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const std::string& name() const { return cfg_.name; }
  const DeviceConfig& config() const { return cfg_; }
  wire::Endpoint address() const { return engine_->local(); }
  const DeviceAttr& attr() const { return attr_; }
  PortAttr port_attr() const;
  // The RoCEv2 GID of the port: the IP address (IPv4-mapped for IPv4). Only index 0 exists.
  wire::IpAddr gid() const { return engine_->local().ip; }
  std::string describe_link() const;

  Pd* alloc_pd();
  int dealloc_pd(Pd* pd);

  // Registers [addr, addr+length) for access through iova (== addr unless given).
  Mr* reg_mr(Pd* pd, void* addr, size_t length, uint32_t access, int* err,
             std::optional<uint64_t> iova = std::nullopt);
  // Registers pages that lie anywhere in memory as one region of `length` bytes at iova, through
  // a page list (seed 002 FIG. 12): page i holds bytes [i << page_shift, (i+1) << page_shift).
  // Not pinned: the caller keeps the pages mapped while registered.
  Mr* reg_mr_pages(Pd* pd, const std::vector<void*>& pages, uint8_t page_shift, uint64_t iova, size_t length,
                   uint32_t access, int* err);
  // EBUSY while windows are bound to it.
  int dereg_mr(Mr* mr);
  // A region registered later through the send queue (WrOpcode::kRegMr, seed 002 FIG. 11),
  // with translation room for max_pages 4 KiB pages. Invalid until registered.
  Mr* alloc_fast_reg_mr(Pd* pd, uint32_t max_pages, int* err);

  // On-demand paging (seed 003). reg_mr with mem::kOnDemand registers without pinning; with
  // addr nullptr and length SIZE_MAX it registers the implicit region: the whole address space.
  // advise_mr() brings the pages of sges (lkeys of on-demand regions of pd) in ahead of use,
  // writable if `write`; with `flush` it returns when they are resident. EINVAL for a key that is
  // not an on-demand region of pd, EFAULT for memory that is not mapped.
  int advise_mr(Pd* pd, bool write, bool flush, const Sge* sges, uint32_t n);

  // Memory windows (memory.cc).
  Mw* alloc_mw(Pd* pd, uint8_t type, int* err);
  int dealloc_mw(Mw* mw);
  // The bind verb for type-1 windows: posts a kBindMw WR on qp with the window's next key and
  // makes that key mw->rkey. Completes on qp's send CQ like any WR (if signaled).
  int bind_mw(QueuePair* qp, Mw* mw, uint64_t wr_id, uint32_t send_flags, Mr* mr, uint64_t addr, uint64_t length,
              uint32_t access);

  Cq* create_cq(uint32_t min_entries, queue::CompletionChannel* channel, void* user_context, int* err);
  int destroy_cq(Cq* cq);
  // Polls up to n completions; an empty CQ first makes progress on this thread.
  int poll_cq(Cq* cq, Wc* out, int n);
  void req_notify_cq(Cq* cq, bool solicited_only);

  Srq* create_srq(Pd* pd, uint32_t max_wr, uint32_t max_sge, int* err);
  int destroy_srq(Srq* srq);
  int post_srq_recv(Srq* srq, const RecvWr* wrs, size_t n, size_t* bad);

  AddressHandle* create_ah(Pd* pd, const AddressVector& av, int* err);
  int destroy_ah(AddressHandle* ah);

  QueuePair* create_qp(Pd* pd, const QpInitAttr& init, int* err);
  int modify_qp(QueuePair* qp, const QpAttr& attr, uint32_t mask, const char** why = nullptr);
  int query_qp(QueuePair* qp, QpAttr* attr, QpInitAttr* init);
  int destroy_qp(QueuePair* qp);

  // Posts work requests in order; stops at the first bad one (*bad = its index) with an errno.
  int post_send(QueuePair* qp, const SendWr* wrs, size_t n, size_t* bad);
  int post_recv(QueuePair* qp, const RecvWr* wrs, size_t n, size_t* bad);

  // One progress pass on the calling thread (for callers that drive progress themselves).
  void progress();

  // ---- for the verbs layer ----
  // Where asynchronous events go. The handler runs on whichever thread makes progress, with
  // the engine lock held: it must be short and must not call back into the Device. Set it
  // before creating objects; an empty handler drops events.
  void set_async_handler(AsyncHandler h);
  // Arms the SRQ limit event: when fewer than `limit` receive WQEs are left, one
  // kSrqLimitReached is delivered and the limit is disarmed (0 disarms). EINVAL above max_wr.
  int modify_srq_limit(Srq* srq, uint32_t limit);
  // Re-registers an MR in place (ibv_rereg_mr): new PD, range, iova and access. When the range
  // or iova changes the keys do too (same index, next instance, in mr->lkey/rkey) and the old
  // ones stop working. On error the MR is unchanged.
  int rereg_mr(Mr* mr, Pd* pd, void* addr, size_t length, uint64_t iova, uint32_t access);
  // Number of receive WQEs posted and not yet consumed.
  static uint64_t srq_outstanding(const Srq* srq) { return srq->produced() - srq->retired(); }

  transport::DeviceCounters counters();
  link::FaultCounters fault_counters();
  struct QpSnapshot {
    uint32_t qpn;
    QpType type;
    QpState state;
    transport::QpCounters counters;
  };
  std::vector<QpSnapshot> qp_counters();

 private:
  explicit Device(const DeviceConfig& cfg);
  void thread_main();
  void try_progress();  // the application polled an empty CQ: a pass if the lock is free
  void kick(transport::Qp* qp);
  void after_unlock();
  void wake_if_needed();
  void after_progress();  // engine lock held: events that a pass may have caused
  int post_one_send(QueuePair* qp, const SendWr& wr);
  // Takes ownership of a new object under the objects lock; returns it.
  template <typename T>
  T* keep(std::vector<std::unique_ptr<T>>& v, std::unique_ptr<T> obj) {
    std::lock_guard<std::mutex> g(objects_mu_);
    v.push_back(std::move(obj));
    return v.back().get();
  }

  DeviceConfig cfg_;
  DeviceAttr attr_;
  std::unique_ptr<StatsFile> stats_;
  std::unique_ptr<transport::Engine> engine_;
  link::FaultLink* fault_ = nullptr;  // owned by the engine, when fault injection is on

  std::mutex objects_mu_;
  std::set<std::unique_ptr<Pd>, std::less<>> pds_;
  uint32_t next_pd_ = 1;
  std::vector<std::unique_ptr<Mr>> mrs_;
  std::vector<std::unique_ptr<Mw>> mws_;
  std::vector<std::unique_ptr<Cq>> cqs_;
  std::vector<std::unique_ptr<Srq>> srqs_;
  std::vector<std::unique_ptr<AddressHandle>> ahs_;
  std::vector<std::unique_ptr<QueuePair>> qps_;

  AsyncHandler async_handler_;
  struct ArmedSrq {
    Srq* srq;
    uint64_t retired_at_arm;
  };
  std::vector<ArmedSrq> armed_srqs_;  // SRQs with a limit armed (engine lock)

  std::atomic<bool> pending_{false};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> thread_wakes_at_{0};  // 0 = sleeping without a deadline
  // The thread sleeps while the application polls: the application's passes run the timers, so
  // a timer armed meanwhile is no reason to wake it (wake_if_needed).
  std::atomic<bool> thread_for_app_{false};
  std::atomic<uint64_t> last_app_poll_{0};  // when the application last polled an empty CQ
  // Counts the application's polls and posts (no clock read: a poll that finds completions is
  // too frequent for one). The background thread, sleeping because the application polls, stays
  // asleep while this moves: a bandwidth loop whose polls always find completions still polls.
  std::atomic<uint64_t> app_calls_{0};
  void note_app_call() { app_calls_.store(app_calls_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  int wake_fd_ = -1;
  std::thread thread_;
};

}  // namespace softrdma
