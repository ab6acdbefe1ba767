// Devices, contexts, queries and asynchronous events.
#include <arpa/inet.h>
#include <endian.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "verbs/config.h"
#include "verbs/internal.h"

namespace softrdma::verbs {

namespace {

// struct _compat_ibv_port_attr (declared only): ibv_port_attr without port_cap_flags2.
constexpr size_t kCompatPortAttrSize = offsetof(ibv_port_attr, port_cap_flags2);
static_assert(kCompatPortAttrSize == 48);

// What mlx5dv_* / efadv_* find at verbs_device->ops: not theirs.
const char kNotAProvider[] = "softrdma";

struct DeviceTable {
  std::vector<SrDevice*> devices;
};

std::atomic<DeviceTable*> g_table{nullptr};  // set once table() has read the configuration

DeviceTable& table() {
  static DeviceTable* t = [] {
    auto* tab = new DeviceTable;
    std::vector<std::string> warnings;
    auto entries = load_device_config(&warnings);
    for (const auto& w : warnings) std::fprintf(stderr, "softrdma: %s\n", w.c_str());
    int index = 0;
    for (auto& e : entries) {
      auto* sd = new SrDevice{};
      sd->ops = kNotAProvider;
      sd->st = new DevState;
      sd->st->cfg = e.cfg;
      sd->st->source = e.source;
      sd->st->index = index++;
      // A stable node GUID: from the name and the configured address, or from the name and
      // the process when the address is picked at open (two processes, two GUIDs).
      uint64_t h = 0xcbf29ce484222325ull;
      auto mix = [&h](const void* p, size_t n) {
        for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 0x100000001b3ull;
      };
      mix(e.cfg.name.data(), e.cfg.name.size());
      if (e.cfg.address) {
        mix(e.cfg.address->bytes.data(), 16);
      } else {
        pid_t pid = getpid();
        mix(&pid, sizeof pid);
      }
      sd->st->guid = (h & 0x0000ffffffffffffull) | 0x0253000000000000ull;  // locally administered
      ibv_device& d = sd->dev;
      d.node_type = IBV_NODE_CA;
      d.transport_type = IBV_TRANSPORT_IB;
      std::snprintf(d.name, sizeof d.name, "%s", e.cfg.name.c_str());
      std::snprintf(d.dev_name, sizeof d.dev_name, "%s", e.cfg.name.c_str());
      std::snprintf(d.dev_path, sizeof d.dev_path, "/sys/class/infiniband_verbs/%s", e.cfg.name.c_str());
      std::snprintf(d.ibdev_path, sizeof d.ibdev_path, "/sys/class/infiniband/%s", e.cfg.name.c_str());
      tab->devices.push_back(sd);
    }
    g_table.store(tab, std::memory_order_release);
    return tab;
  }();
  return *t;
}

// A program that exits with contexts open never closes its adapters; they need no cleanup
// except the statistics file each one publishes in /dev/shm. Only that is removed here: other
// threads may still be inside the library while the process exits.
[[gnu::destructor]] void remove_stats_files_at_exit() {
  DeviceTable* t = g_table.load(std::memory_order_acquire);
  if (t == nullptr) return;
  for (SrDevice* sd : t->devices) {
    std::unique_lock<std::mutex> g(sd->st->mu, std::try_to_lock);
    if (g.owns_lock() && sd->st->device && !sd->st->device->stats_path().empty())
      unlink(sd->st->device->stats_path().c_str());
  }
}

SrDevice* find_device(ibv_device* d) {
  for (SrDevice* sd : table().devices)
    if (&sd->dev == d) return sd;
  return nullptr;
}

// The interface that holds addr (0 if none): ibv_gid_entry.ndev_ifindex.
uint32_t ifindex_of(const wire::IpAddr& addr) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return 0;
  uint32_t idx = 0;
  for (ifaddrs* i = list; i != nullptr && idx == 0; i = i->ifa_next) {
    if (i->ifa_addr == nullptr) continue;
    auto ep = wire::Endpoint::from_sockaddr(i->ifa_addr);
    if (ep && ep->ip == addr) idx = if_nametoindex(i->ifa_name);
  }
  freeifaddrs(list);
  // 127.0.0.0/8 is all on the loopback interface even where only 127.0.0.1 is listed.
  if (idx == 0 && addr.is_v4() && (ntohl(addr.v4_be()) >> 24) == 127) idx = if_nametoindex("lo");
  return idx;
}

void on_async_event(const AsyncEvent& ev) {
  switch (ev.type) {
    case AsyncEvent::Type::kSrqLimitReached: {
      auto* s = static_cast<SrSrq*>(ev.srq->user_context);
      if (s == nullptr) return;
      ibv_async_event e{};
      e.element.srq = &s->srq;
      e.event_type = IBV_EVENT_SRQ_LIMIT_REACHED;
      push_async_event(s->ctx, e);
      break;
    }
  }
}

// ---- queries -----------------------------------------------------------------------------------

void fill_device_attr(SrContext* ctx, ibv_device_attr* out) {
  const DeviceAttr& a = ctx->dev->attr();
  ibv_device_attr d{};
  std::snprintf(d.fw_ver, sizeof d.fw_ver, "%s", a.fw_ver.c_str());
  d.node_guid = htobe64(ctx->sdev->st->guid);
  d.sys_image_guid = htobe64(ctx->sdev->st->guid);
  d.max_mr_size = a.max_mr_size;
  d.page_size_cap = a.page_size_cap;
  d.vendor_id = a.vendor_id;
  d.vendor_part_id = a.vendor_part_id;
  d.hw_ver = a.hw_ver;
  d.max_qp = static_cast<int>(a.max_qp);
  d.max_qp_wr = static_cast<int>(a.max_qp_wr);
  // Memory windows of type 1 and 2B (a type-2 window is tied to the QP that bound it), and the
  // base memory management extensions: local invalidation, SEND with Invalidate, and fast
  // registration (through softrdma's SOFTRDMA_WR_REG_MR, verbs_ext.h).
  d.device_cap_flags = IBV_DEVICE_SYS_IMAGE_GUID | IBV_DEVICE_RC_RNR_NAK_GEN | IBV_DEVICE_PORT_ACTIVE_EVENT |
                       IBV_DEVICE_MEM_WINDOW | IBV_DEVICE_MEM_WINDOW_TYPE_2B | IBV_DEVICE_MEM_MGT_EXTENSIONS;
  d.max_sge = static_cast<int>(a.max_sge);
  d.max_sge_rd = static_cast<int>(a.max_sge_rd);
  d.max_cq = static_cast<int>(a.max_cq);
  d.max_cqe = static_cast<int>(std::min(a.max_cqe, kMaxCqe));
  d.max_mr = static_cast<int>(a.max_mr);
  d.max_pd = static_cast<int>(a.max_pd);
  d.max_mw = static_cast<int>(a.max_mr);  // regions and windows share the adapter's one key table
  d.max_qp_rd_atom = static_cast<int>(a.max_qp_rd_atom);
  d.max_res_rd_atom = static_cast<int>(a.max_res_rd_atom);
  d.max_qp_init_rd_atom = static_cast<int>(a.max_qp_init_rd_atom);
  d.atomic_cap = IBV_ATOMIC_HCA;
  d.max_ah = static_cast<int>(a.max_ah);
  d.max_srq = static_cast<int>(a.max_srq);
  d.max_srq_wr = static_cast<int>(a.max_srq_wr);
  d.max_srq_sge = static_cast<int>(a.max_srq_sge);
  d.max_pkeys = a.max_pkeys;
  d.local_ca_ack_delay = 15;
  d.phys_port_cnt = a.phys_port_cnt;
  *out = d;
}

void fill_port_attr(SrContext* ctx, ibv_port_attr* out) {
  PortAttr p = ctx->dev->port_attr();
  ibv_port_attr a{};
  a.state = static_cast<ibv_port_state>(p.state);
  a.max_mtu = static_cast<ibv_mtu>(p.max_mtu);
  a.active_mtu = static_cast<ibv_mtu>(p.active_mtu);
  a.gid_tbl_len = static_cast<int>(kGidTableLen);
  a.port_cap_flags = IBV_PORT_IP_BASED_GIDS;
  a.max_msg_sz = p.max_msg_sz;
  a.pkey_tbl_len = p.pkey_tbl_len;
  a.lid = 0;
  a.sm_lid = 0;
  a.max_vl_num = 1;
  a.subnet_timeout = 0;
  a.active_width = p.active_width;
  a.active_speed = p.active_speed;
  a.phys_state = p.phys_state;
  a.link_layer = IBV_LINK_LAYER_ETHERNET;
  a.flags = IBV_QPF_GRH_REQUIRED;
  *out = a;
}

int query_port_op(ibv_context* c, uint8_t port, ibv_port_attr* attr, size_t len) {
  if (attr == nullptr) return EINVAL;
  SrContext* ctx = to_ctx(c);
  if (port != 1) return EINVAL;
  ibv_port_attr a;
  fill_port_attr(ctx, &a);
  std::memcpy(attr, &a, std::min(len, sizeof a));
  return 0;
}

int query_device_ex_op(ibv_context* c, const ibv_query_device_ex_input* input, ibv_device_attr_ex* attr,
                       size_t attr_size) {
  if (input != nullptr && input->comp_mask != 0) return EINVAL;
  if (attr == nullptr || attr_size < sizeof(ibv_device_attr)) return EINVAL;
  SrContext* ctx = to_ctx(c);
  ibv_device_attr_ex ex{};
  fill_device_attr(ctx, &ex.orig_attr);
  ex.comp_mask = 0;
  ex.phys_port_cnt_ex = ex.orig_attr.phys_port_cnt;
  // On-demand paging (IBV_ACCESS_ON_DEMAND), explicit and implicit: the adapter reads and writes
  // process memory itself, so an absent page is faulted in (by a background worker, the peer
  // being told to retry by an RNR NAK) wherever RC touches memory. UD sends read local memory;
  // a UD receive has no retry, so it needs resident (or pinned) buffers.
  ex.odp_caps.general_caps = IBV_ODP_SUPPORT | IBV_ODP_SUPPORT_IMPLICIT;
  ex.odp_caps.per_transport_caps.rc_odp_caps = IBV_ODP_SUPPORT_SEND | IBV_ODP_SUPPORT_RECV | IBV_ODP_SUPPORT_WRITE |
                                               IBV_ODP_SUPPORT_READ | IBV_ODP_SUPPORT_ATOMIC |
                                               IBV_ODP_SUPPORT_SRQ_RECV;
  ex.odp_caps.per_transport_caps.uc_odp_caps = 0;
  ex.odp_caps.per_transport_caps.ud_odp_caps = IBV_ODP_SUPPORT_SEND;
  std::memcpy(attr, &ex, std::min(attr_size, sizeof ex));
  return 0;
}

int query_gid_checked(SrContext* ctx, uint8_t port, uint32_t index, uint8_t out[16], bool* empty) {
  if (port != 1 || index >= kGidTableLen) return EINVAL;
  std::memset(out, 0, 16);
  *empty = index != 0;
  if (index == 0) {
    wire::IpAddr g = ctx->dev->gid();
    std::memcpy(out, g.bytes.data(), 16);
  }
  return 0;
}

}  // namespace

uint32_t gid_table_len() { return kGidTableLen; }

bool query_gid_bytes(SrContext* ctx, uint8_t port, int index, uint8_t out[16]) {
  bool empty;
  if (index < 0) return false;
  return query_gid_checked(ctx, port, static_cast<uint32_t>(index), out, &empty) == 0 && !empty;
}

void push_async_event(SrContext* ctx, const ibv_async_event& ev) {
  {
    std::lock_guard<std::mutex> g(ctx->st->mu);
    ctx->st->events.push_back(ev);
  }
  uint64_t one = 1;
  ssize_t r = write(ctx->vctx.context.async_fd, &one, sizeof one);
  (void)r;
}

void purge_async_events(SrContext* ctx, const void* object) {
  std::lock_guard<std::mutex> g(ctx->st->mu);
  auto& q = ctx->st->events;
  q.erase(std::remove_if(q.begin(), q.end(), [object](const ibv_async_event& e) { return e.element.cq == object; }),
          q.end());
}

}  // namespace softrdma::verbs

using namespace softrdma;
using namespace softrdma::verbs;

// ---- device list -------------------------------------------------------------------------------

SR_EXPORT ibv_device** sr_get_device_list_1_1(int* num) {
  auto& t = table();
  auto** list = static_cast<ibv_device**>(std::calloc(t.devices.size() + 1, sizeof(ibv_device*)));
  if (list == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  for (size_t i = 0; i < t.devices.size(); ++i) list[i] = &t.devices[i]->dev;
  if (num != nullptr) *num = static_cast<int>(t.devices.size());
  return list;
}
SR_SYMVER(sr_get_device_list_1_1, ibv_get_device_list@@IBVERBS_1.1);

SR_EXPORT void sr_free_device_list_1_1(ibv_device** list) { std::free(list); }
SR_SYMVER(sr_free_device_list_1_1, ibv_free_device_list@@IBVERBS_1.1);

SR_EXPORT const char* sr_get_device_name_1_1(ibv_device* d) { return d == nullptr ? nullptr : d->name; }
SR_SYMVER(sr_get_device_name_1_1, ibv_get_device_name@@IBVERBS_1.1);

SR_EXPORT __be64 sr_get_device_guid_1_1(ibv_device* d) {
  SrDevice* sd = find_device(d);
  return sd == nullptr ? 0 : htobe64(sd->st->guid);
}
SR_SYMVER(sr_get_device_guid_1_1, ibv_get_device_guid@@IBVERBS_1.1);

SR_EXPORT int ibv_get_device_index(ibv_device* d) {
  SrDevice* sd = find_device(d);
  return sd == nullptr ? -1 : sd->st->index;
}

// ---- open / close ------------------------------------------------------------------------------

SR_EXPORT ibv_context* sr_open_device_1_1(ibv_device* d) {
  SrDevice* sd = find_device(d);
  if (sd == nullptr) {
    errno = ENODEV;
    return nullptr;
  }
  DevState* st = sd->st;
  std::lock_guard<std::mutex> g(st->mu);
  if (!st->device) {
    std::string err;
    st->device = Device::open(st->cfg, &err);
    if (!st->device) {
      std::fprintf(stderr, "softrdma: cannot open %s (%s): %s\n", st->cfg.name.c_str(), st->source.c_str(),
                   err.c_str());
      errno = err.find("in use") != std::string::npos || err.find("no free") != std::string::npos ? EADDRINUSE
                                                                                                  : ENODEV;
      return nullptr;
    }
    st->device->set_async_handler(on_async_event);
  }
  auto* ctx = new (std::nothrow) SrContext{};
  if (ctx == nullptr) {
    if (st->contexts == 0) st->device.reset();
    errno = ENOMEM;
    return nullptr;
  }
  ctx->dev = st->device.get();
  ctx->sdev = sd;
  ctx->st = new CtxState;
  verbs_context& v = ctx->vctx;
  v.sz = sizeof(verbs_context);
  v.query_port = query_port_op;
  v.query_device_ex = query_device_ex_op;
  v.create_cq_ex = create_cq_ex;
  v.create_qp_ex = create_qp_ex;
  v.create_srq_ex = create_srq_ex;
  v.alloc_parent_domain = alloc_parent_domain;
  v.alloc_td = alloc_td;
  v.dealloc_td = dealloc_td;
  v.advise_mr = advise_mr;
  ibv_context& c = v.context;
  c.device = d;
  c.abi_compat = __VERBS_ABI_IS_EXTENDED;
  c.num_comp_vectors = kNumCompVectors;
  c.cmd_fd = eventfd(0, EFD_CLOEXEC);
  c.async_fd = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
  pthread_mutex_init(&c.mutex, nullptr);
  ibv_context_ops& o = c.ops;
  o._compat_query_device = [](ibv_context* cc, ibv_device_attr* a) {
    if (a == nullptr) return EINVAL;
    fill_device_attr(to_ctx(cc), a);
    return 0;
  };
  o._compat_query_port = [](ibv_context* cc, uint8_t port, _compat_ibv_port_attr* a) {
    return query_port_op(cc, port, reinterpret_cast<ibv_port_attr*>(a), kCompatPortAttrSize);
  };
  o.alloc_mw = alloc_mw;
  o.dealloc_mw = dealloc_mw;
  o.bind_mw = bind_mw;
  o.poll_cq = poll_cq;
  o.req_notify_cq = req_notify_cq;
  o.post_srq_recv = post_srq_recv;
  o.post_send = post_send;
  o.post_recv = post_recv;
  st->contexts++;
  return &c;
}
SR_SYMVER(sr_open_device_1_1, ibv_open_device@@IBVERBS_1.1);

SR_EXPORT int sr_close_device_1_1(ibv_context* c) {
  if (c == nullptr) return EINVAL;
  SrContext* ctx = to_ctx(c);
  destroy_all_objects(ctx);
  close(c->cmd_fd);
  close(c->async_fd);
  pthread_mutex_destroy(&c->mutex);
  DevState* st = ctx->sdev->st;
  delete ctx->st;
  delete ctx;
  std::lock_guard<std::mutex> g(st->mu);
  // The last context closes the adapter (its address is picked again at the next open).
  if (--st->contexts == 0) st->device.reset();
  return 0;
}
SR_SYMVER(sr_close_device_1_1, ibv_close_device@@IBVERBS_1.1);

SR_EXPORT ibv_context* ibv_import_device(int /*cmd_fd*/) {
  errno = EOPNOTSUPP;
  return nullptr;
}

// ---- queries -----------------------------------------------------------------------------------

SR_EXPORT int sr_query_device_1_1(ibv_context* c, ibv_device_attr* attr) {
  if (c == nullptr || attr == nullptr) return EINVAL;
  fill_device_attr(to_ctx(c), attr);
  return 0;
}
SR_SYMVER(sr_query_device_1_1, ibv_query_device@@IBVERBS_1.1);

// The exported ibv_query_port takes the old 48-byte struct (no port_cap_flags2); programs
// compiled against today's header reach query_port_op through the verbs_context instead.
SR_EXPORT int sr_query_port_1_1(ibv_context* c, uint8_t port, _compat_ibv_port_attr* attr) {
  if (c == nullptr) return EINVAL;
  return query_port_op(c, port, reinterpret_cast<ibv_port_attr*>(attr), kCompatPortAttrSize);
}
SR_SYMVER(sr_query_port_1_1, ibv_query_port@@IBVERBS_1.1);

SR_EXPORT int sr_query_gid_1_1(ibv_context* c, uint8_t port, int index, ibv_gid* gid) {
  if (c == nullptr || gid == nullptr || index < 0) return -1;
  bool empty;
  if (query_gid_checked(to_ctx(c), port, static_cast<uint32_t>(index), gid->raw, &empty) != 0) return -1;
  return 0;  // an empty slot reads as the zero GID
}
SR_SYMVER(sr_query_gid_1_1, ibv_query_gid@@IBVERBS_1.1);

SR_EXPORT int _ibv_query_gid_ex(ibv_context* c, uint32_t port, uint32_t index, ibv_gid_entry* entry,
                                uint32_t flags, size_t entry_size) {
  if (flags != 0) return EOPNOTSUPP;
  if (c == nullptr || entry == nullptr || entry_size < sizeof(ibv_gid_entry) || port > 255) return EINVAL;
  SrContext* ctx = to_ctx(c);
  ibv_gid_entry e{};
  bool empty;
  if (int rc = query_gid_checked(ctx, static_cast<uint8_t>(port), index, e.gid.raw, &empty)) return rc;
  if (empty) return ENODATA;
  e.gid_index = index;
  e.port_num = port;
  e.gid_type = IBV_GID_TYPE_ROCE_V2;
  e.ndev_ifindex = ifindex_of(ctx->dev->gid());
  std::memcpy(entry, &e, sizeof e);
  return 0;
}

SR_EXPORT ssize_t _ibv_query_gid_table(ibv_context* c, ibv_gid_entry* entries, size_t max_entries,
                                       uint32_t flags, size_t entry_size) {
  if (flags != 0) return -EOPNOTSUPP;
  if (c == nullptr || entry_size < sizeof(ibv_gid_entry)) return -EINVAL;
  SrContext* ctx = to_ctx(c);
  size_t n = 0;
  uint32_t ifindex = ifindex_of(ctx->dev->gid());
  for (uint32_t i = 0; i < kGidTableLen; ++i) {
    ibv_gid_entry e{};
    bool empty;
    query_gid_checked(ctx, 1, i, e.gid.raw, &empty);
    if (empty) continue;
    if (n >= max_entries || entries == nullptr) return -EINVAL;
    e.gid_index = i;
    e.port_num = 1;
    e.gid_type = IBV_GID_TYPE_ROCE_V2;
    e.ndev_ifindex = ifindex;
    std::memcpy(reinterpret_cast<char*>(entries) + n * entry_size, &e, sizeof e);
    ++n;
  }
  return static_cast<ssize_t>(n);
}

// enum ibv_gid_type_sysfs (rdma-core driver.h): 0 = IB/RoCE v1, 1 = RoCE v2.
SR_EXPORT int ibv_query_gid_type(ibv_context* c, uint8_t port, unsigned int index, int* type) {
  if (c == nullptr || type == nullptr || port != 1 || index >= kGidTableLen) {
    errno = EINVAL;
    return -1;
  }
  *type = 1;
  return 0;
}

SR_EXPORT int sr_query_pkey_1_1(ibv_context* c, uint8_t port, int index, __be16* pkey) {
  if (c == nullptr || pkey == nullptr || port != 1 || index != 0) return -1;
  *pkey = htobe16(0xffff);
  return 0;
}
SR_SYMVER(sr_query_pkey_1_1, ibv_query_pkey@@IBVERBS_1.1);

SR_EXPORT int ibv_get_pkey_index(ibv_context* c, uint8_t port, __be16 pkey) {
  if (c == nullptr || port != 1) return -1;
  return pkey == htobe16(0xffff) ? 0 : -1;
}

// ---- asynchronous events -----------------------------------------------------------------------

SR_EXPORT int sr_get_async_event_1_1(ibv_context* c, ibv_async_event* event) {
  if (c == nullptr || event == nullptr) {
    errno = EINVAL;
    return -1;
  }
  SrContext* ctx = to_ctx(c);
  for (;;) {
    uint64_t v;
    ssize_t r = read(c->async_fd, &v, sizeof v);
    if (r != static_cast<ssize_t>(sizeof v)) {
      if (r < 0 && errno == EINTR) continue;
      return -1;  // errno from read (EAGAIN on a non-blocking fd)
    }
    std::lock_guard<std::mutex> g(ctx->st->mu);
    if (ctx->st->events.empty()) continue;  // the event's object was destroyed meanwhile
    *event = ctx->st->events.front();
    ctx->st->events.pop_front();
    return 0;
  }
}
SR_SYMVER(sr_get_async_event_1_1, ibv_get_async_event@@IBVERBS_1.1);

SR_EXPORT void sr_ack_async_event_1_1(ibv_async_event* event) {
  if (event == nullptr) return;
  auto bump = [](pthread_mutex_t* mu, pthread_cond_t* cond, uint32_t* counter) {
    pthread_mutex_lock(mu);
    ++*counter;
    pthread_cond_signal(cond);
    pthread_mutex_unlock(mu);
  };
  switch (event->event_type) {
    case IBV_EVENT_CQ_ERR: {
      ibv_cq* cq = event->element.cq;
      bump(&cq->mutex, &cq->cond, &cq->async_events_completed);
      break;
    }
    case IBV_EVENT_QP_FATAL:
    case IBV_EVENT_QP_REQ_ERR:
    case IBV_EVENT_QP_ACCESS_ERR:
    case IBV_EVENT_COMM_EST:
    case IBV_EVENT_SQ_DRAINED:
    case IBV_EVENT_PATH_MIG:
    case IBV_EVENT_PATH_MIG_ERR:
    case IBV_EVENT_QP_LAST_WQE_REACHED: {
      ibv_qp* qp = event->element.qp;
      bump(&qp->mutex, &qp->cond, &qp->events_completed);
      break;
    }
    case IBV_EVENT_SRQ_ERR:
    case IBV_EVENT_SRQ_LIMIT_REACHED: {
      ibv_srq* srq = event->element.srq;
      bump(&srq->mutex, &srq->cond, &srq->events_completed);
      break;
    }
    default:
      break;
  }
}
SR_SYMVER(sr_ack_async_event_1_1, ibv_ack_async_event@@IBVERBS_1.1);

// ---- sysfs -------------------------------------------------------------------------------------

SR_EXPORT const char* ibv_get_sysfs_path() {
  const char* env = std::getenv("SYSFS_PATH");
  return env != nullptr && *env != '\0' ? env : "/sys";
}

namespace {
// Files under our devices' ibdev_path, which does not exist on disk.
bool virtual_sysfs(const char* dir, const char* file, std::string* out) {
  for (SrDevice* sd : table().devices) {
    if (std::strcmp(dir, sd->dev.ibdev_path) != 0) continue;
    const DevState& st = *sd->st;
    char guid[32];
    uint64_t g = st.guid;
    std::snprintf(guid, sizeof guid, "%04x:%04x:%04x:%04x", static_cast<unsigned>(g >> 48) & 0xffff,
                  static_cast<unsigned>(g >> 32) & 0xffff, static_cast<unsigned>(g >> 16) & 0xffff,
                  static_cast<unsigned>(g) & 0xffff);
    if (std::strcmp(file, "board_id") == 0) *out = "SOFTRDMA_0001\n";
    else if (std::strcmp(file, "node_type") == 0) *out = "1: CA\n";
    else if (std::strcmp(file, "node_guid") == 0 || std::strcmp(file, "sys_image_guid") == 0) *out = std::string(guid) + "\n";
    else if (std::strcmp(file, "hca_type") == 0) *out = "softrdma\n";
    else if (std::strcmp(file, "fw_ver") == 0) *out = "0.1.0\n";
    else if (std::strcmp(file, "node_desc") == 0) *out = "softrdma " + st.cfg.name + "\n";
    else return false;
    return true;
  }
  return false;
}
}  // namespace

SR_EXPORT int ibv_read_sysfs_file(const char* dir, const char* file, char* buf, size_t size) {
  if (dir == nullptr || file == nullptr || buf == nullptr || size == 0) {
    errno = EINVAL;
    return -1;
  }
  std::string content;
  ssize_t len;
  if (virtual_sysfs(dir, file, &content)) {
    len = static_cast<ssize_t>(std::min(size, content.size()));
    std::memcpy(buf, content.data(), static_cast<size_t>(len));
  } else {
    std::string path = std::string(dir) + "/" + file;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    len = read(fd, buf, size);
    int e = errno;
    close(fd);
    errno = e;
    if (len < 0) return -1;
  }
  // Strip one trailing newline and terminate; content that fills the buffer cannot be
  // terminated and fails.
  if (len > 0) {
    if (buf[len - 1] == '\n') {
      buf[--len] = '\0';
    } else if (static_cast<size_t>(len) < size) {
      buf[len] = '\0';
    } else {
      errno = EOVERFLOW;
      return -1;
    }
  }
  return static_cast<int>(len);
}

// ---- fork --------------------------------------------------------------------------------------

// Memory is touched only by this process (no DMA), so fork needs no protection.
SR_EXPORT int ibv_fork_init() { return 0; }
SR_EXPORT ibv_fork_status ibv_is_fork_initialized() { return IBV_FORK_UNNEEDED; }
