// Which devices the drop-in libibverbs.so.1 shows, and how each one is opened.
//
// Sources, first match wins:
//   1. SOFTRDMA_DEVICES (environment): a list separated by commas or white space of
//        NAME            a device whose address is picked when it is first opened
//        NAME=ADDRESS    a device bound to ADDRESS (IPv4 or IPv6; the RoCEv2 GID)
//      e.g. SOFTRDMA_DEVICES="softrdma0"  or  SOFTRDMA_DEVICES="softrdma0=127.0.0.5,softrdma1=::1"
//   2. a configuration file: $SOFTRDMA_CONFIG if set, else $XDG_CONFIG_HOME/softrdma.conf
//      (XDG_CONFIG_HOME defaults to ~/.config), else /etc/softrdma.conf. One device per line:
//        NAME [ADDRESS] [port=UDP_PORT] [mtu=BYTES]
//      '#' starts a comment; blank lines are ignored. Example:
//        # softrdma.conf
//        softrdma0 192.168.1.10
//        softrdma1 ::1 port=4792 mtu=1024
//   3. none of these: one device, "softrdma0" (or $SOFTRDMA_NAME), at $SOFTRDMA_ADDR if set,
//      else at the first free 127.0.0.x (x >= 2), picked when the device is first opened, so a
//      server and a client on one machine get different addresses and GIDs with no setup.
// SOFTRDMA_PORT, SOFTRDMA_MTU, SOFTRDMA_FAULT and SOFTRDMA_BUSY_POLL (DeviceConfig::from_env)
// apply to every device unless a file line says otherwise.
#pragma once

#include <string>
#include <vector>

#include "device/device.h"

namespace softrdma::verbs {

struct DeviceEntry {
  DeviceConfig cfg;
  std::string source;  // where it was configured, for messages
};

// Reads the configuration. Malformed entries are skipped with a message in *warnings.
std::vector<DeviceEntry> load_device_config(std::vector<std::string>* warnings);

// Parsers, exposed for tests.
bool parse_device_list(const std::string& text, const DeviceConfig& base, std::vector<DeviceEntry>* out,
                       std::vector<std::string>* warnings);
bool parse_config_file(const std::string& text, const std::string& path, const DeviceConfig& base,
                       std::vector<DeviceEntry>* out, std::vector<std::string>* warnings);

}  // namespace softrdma::verbs
