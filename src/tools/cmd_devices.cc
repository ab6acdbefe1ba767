// `softrdma devices`: what ibv_devinfo shows, for the adapter a program would get with the same
// environment, plus the devices other processes have open right now.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "tools/commands.h"
#include "device/device.h"
#include "tools/table.h"

namespace softrdma::tools {

namespace {

struct DevicesOptions {
  bool verbose = false;
  std::string name, addr;
  std::optional<uint16_t> port;
  std::optional<uint32_t> mtu;
};

std::string guid(uint64_t g) {
  return fmt::format("{:04x}:{:04x}:{:04x}:{:04x}", (g >> 48) & 0xffff, (g >> 32) & 0xffff, (g >> 16) & 0xffff,
                     g & 0xffff);
}

std::string port_state(uint8_t s) {
  static const char* const kNames[] = {"PORT_NOP", "PORT_DOWN", "PORT_INIT", "PORT_ARMED", "PORT_ACTIVE",
                                       "PORT_ACTIVE_DEFER"};
  return fmt::format("{} ({})", s < std::size(kNames) ? kNames[s] : "invalid state", s);
}

std::string mtu(uint8_t e) { return fmt::format("{} ({})", transport::mtu_bytes(e), e); }

// Like ibv_devinfo: `tabs` tabs, "key:", then tabs up to column `col` (tab stops every 8).
void line(int tabs, const char* key, const std::string& value, int col) {
  std::string s(size_t(tabs), '\t');
  s += key;
  s += ':';
  int at = 8 * tabs + int(std::strlen(key)) + 1;
  do {
    s += '\t';
    at = (at / 8 + 1) * 8;
  } while (at < col);
  std::printf("%s%s\n", s.c_str(), value.c_str());
}
void dev_line(const char* key, const std::string& value) { line(1, key, value, 40); }
void port_line(const char* key, const std::string& value) { line(3, key, value, 48); }

void print_device(const Device& d, bool verbose) {
  const DeviceAttr& a = d.attr();
  PortAttr p = d.port_attr();
  std::printf("hca_id:\t%s\n", d.name().c_str());
  dev_line("transport", "RoCEv2 (InfiniBand transport over UDP/IP)");
  dev_line("fw_ver", a.fw_ver);
  dev_line("node_guid", guid(a.node_guid));
  dev_line("sys_image_guid", guid(a.sys_image_guid));
  dev_line("vendor_id", fmt::format("{:#06x}", a.vendor_id));
  dev_line("vendor_part_id", std::to_string(a.vendor_part_id));
  dev_line("hw_ver", fmt::format("{:#x}", a.hw_ver));
  dev_line("phys_port_cnt", std::to_string(a.phys_port_cnt));
  if (verbose) {
    dev_line("max_mr_size", fmt::format("{:#x}", a.max_mr_size));
    dev_line("page_size_cap", fmt::format("{:#x}", a.page_size_cap));
    struct {
      const char* key;
      uint32_t value;
    } const limits[] = {{"max_qp", a.max_qp},
                        {"max_qp_wr", a.max_qp_wr},
                        {"max_sge", a.max_sge},
                        {"max_sge_rd", a.max_sge_rd},
                        {"max_cq", a.max_cq},
                        {"max_cqe", a.max_cqe},
                        {"max_mr", a.max_mr},
                        {"max_pd", a.max_pd},
                        {"max_qp_rd_atom", a.max_qp_rd_atom},
                        {"max_qp_init_rd_atom", a.max_qp_init_rd_atom},
                        {"max_res_rd_atom", a.max_res_rd_atom},
                        {"max_srq", a.max_srq},
                        {"max_srq_wr", a.max_srq_wr},
                        {"max_srq_sge", a.max_srq_sge},
                        {"max_ah", a.max_ah},
                        {"max_inline_data", a.max_inline_data},
                        {"max_pkeys", a.max_pkeys}};
    for (const auto& l : limits) dev_line(l.key, std::to_string(l.value));
  }
  std::printf("\t\tport:\t1\n");
  port_line("state", port_state(p.state));
  port_line("max_mtu", mtu(p.max_mtu));
  port_line("active_mtu", mtu(p.active_mtu));
  port_line("sm_lid", "0");
  port_line("port_lid", "0");
  port_line("port_lmc", "0x00");
  port_line("link_layer", p.link_layer_ethernet ? "Ethernet" : "InfiniBand");
  if (verbose) {
    port_line("max_msg_sz", fmt::format("{:#x}", p.max_msg_sz));
    port_line("gid_tbl_len", std::to_string(p.gid_tbl_len));
    port_line("pkey_tbl_len", std::to_string(p.pkey_tbl_len));
    port_line("phys_state", fmt::format("{} ({})", p.phys_state == 5 ? "LINK_UP" : "other", p.phys_state));
    port_line("active_width", fmt::format("{} ({})", p.active_width == 2 ? "4X" : "other", p.active_width));
    port_line("active_speed", fmt::format("{} ({})", p.active_speed == 32 ? "25.0 Gbps" : "other", p.active_speed));
  }
  port_line("GID[  0]", (d.gid().is_v4() ? "::ffff:" : "") + d.gid().str() + ", RoCE v2");
  port_line("UDP endpoint", d.address().str());
  port_line("link", d.describe_link());  // shm+udp(...): the same-host shared-memory path is on
}

int run_devices(const DevicesOptions& o) {
  std::string err;
  DeviceConfig cfg = DeviceConfig::from_env(&err);
  if (!o.name.empty()) cfg.name = o.name;
  if (!o.addr.empty()) {
    cfg.address = wire::IpAddr::parse(o.addr);
    if (!cfg.address) err = "--addr: not an IP address: " + o.addr;
  }
  if (o.port) cfg.port = *o.port;
  if (o.mtu) cfg.mtu = *o.mtu;
  int rc = 0;
  std::unique_ptr<Device> dev;
  if (err.empty()) dev = Device::open(cfg, &err);
  if (dev) {
    print_device(*dev, o.verbose);
  } else {
    std::fprintf(stderr, "softrdma devices: cannot open %s: %s\n", cfg.name.c_str(), err.c_str());
    rc = 1;
  }
  Table t({"name", "pid", "address", "QPs", "link"});
  t.set_align(4, Table::Align::kLeft);
  for (const auto& s : read_all_stats())
    if (s.pid != static_cast<uint32_t>(getpid()))
      t.add_row({s.name, std::to_string(s.pid), s.address, std::to_string(s.qps.size()), s.link});
  if (t.empty()) {
    std::printf("\nNo other process has a softrdma device open.\n");
  } else {
    std::printf("\nDevices open in other processes (counters: softrdma stat):\n");
    t.print(stdout, "  ");
  }
  return rc;
}

}  // namespace

void add_devices_command(CLI::App& app) {
  auto opt = std::make_shared<DevicesOptions>();
  CLI::App* cmd = app.add_subcommand(
      "devices", "Open an adapter as a program would (SOFTRDMA_* environment) and print its attributes like "
                 "ibv_devinfo; list the devices other processes have open");
  cmd->add_flag("-v,--verbose", opt->verbose, "also print the device limits and more port attributes");
  cmd->add_option("--name", opt->name, "device name (default SOFTRDMA_NAME or softrdma0)");
  cmd->add_option("--addr", opt->addr, "local IP address (default SOFTRDMA_ADDR or the first free 127.0.0.x)");
  cmd->add_option("--port", opt->port, "UDP port (default SOFTRDMA_PORT or 4791)");
  cmd->add_option("--mtu", opt->mtu, "port MTU in bytes (default SOFTRDMA_MTU or 4096)");
  cmd->callback([opt] {
    if (int rc = run_devices(*opt)) throw CLI::RuntimeError(rc);
  });
}

}  // namespace softrdma::tools
