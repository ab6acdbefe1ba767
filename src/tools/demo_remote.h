// `softrdma demo --role server|client`: the demo's RC checks between two processes, each with
// its own adapter (and so its own 127.0.0.x). The server prints "listening on ADDR:PORT" (a TCP
// port for the connection setup, as ibv_rc_pingpong does), echoes every SEND and exposes a
// buffer and an atomic counter; the client runs SEND ping-pongs, WRITEs read back with READ and
// FETCH_ADDs, checks every byte and value, and prints their latencies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace softrdma::tools {

struct RemoteDemoOptions {
  std::string role;     // "", "server" or "client"
  std::string connect;  // client: the server's "ADDR:PORT"
  uint16_t listen_port = 0;  // server: TCP port (0 = any free one)
  // Filled by the demo command from its own options:
  std::vector<uint32_t> sizes;
  uint64_t iters = 200;
  std::string addr;
  uint32_t mtu = 0;  // 0: from the environment
};

// Adds the hidden --role, --connect and --listen-port options to the demo command.
void add_remote_demo_options(CLI::App& demo, RemoteDemoOptions& opt);
// Throws ToolError on any failure.
void run_remote_demo(const RemoteDemoOptions& opt);

}  // namespace softrdma::tools
