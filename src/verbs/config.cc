#include "verbs/config.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace softrdma::verbs {

namespace {

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 63) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  return true;
}

bool add_entry(DeviceEntry e, std::vector<DeviceEntry>* out, std::vector<std::string>* warnings) {
  for (const auto& d : *out) {
    if (d.cfg.name == e.cfg.name) {
      if (warnings) warnings->push_back(e.source + ": device " + e.cfg.name + " defined twice; the first is kept");
      return false;
    }
  }
  out->push_back(std::move(e));
  return true;
}

bool read_file(const std::string& path, std::string* text) {
  std::ifstream f(path);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *text = ss.str();
  return true;
}

}  // namespace

bool parse_device_list(const std::string& text, const DeviceConfig& base, std::vector<DeviceEntry>* out,
                       std::vector<std::string>* warnings) {
  bool ok = true;
  std::string item;
  auto flush = [&] {
    if (item.empty()) return;
    DeviceEntry e{base, "SOFTRDMA_DEVICES"};
    std::string name = item, addr;
    if (auto eq = item.find('='); eq != std::string::npos) {
      name = item.substr(0, eq);
      addr = item.substr(eq + 1);
    }
    e.cfg.name = name;
    e.cfg.address.reset();
    if (!valid_name(name)) {
      if (warnings) warnings->push_back("SOFTRDMA_DEVICES: bad device name '" + name + "'");
      ok = false;
    } else if (!addr.empty() && !(e.cfg.address = wire::IpAddr::parse(addr))) {
      if (warnings) warnings->push_back("SOFTRDMA_DEVICES: not an IP address: '" + addr + "'");
      ok = false;
    } else {
      add_entry(std::move(e), out, warnings);
    }
    item.clear();
  };
  for (char c : text) {
    if (c == ',' || std::isspace(static_cast<unsigned char>(c)))
      flush();
    else
      item.push_back(c);
  }
  flush();
  return ok;
}

bool parse_config_file(const std::string& text, const std::string& path, const DeviceConfig& base,
                       std::vector<DeviceEntry>* out, std::vector<std::string>* warnings) {
  bool ok = true;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    if (w.empty()) continue;
    std::string where = path + ":" + std::to_string(lineno);
    DeviceEntry e{base, where};
    e.cfg.name = w[0];
    e.cfg.address.reset();
    bool line_ok = valid_name(w[0]);
    if (!line_ok && warnings) warnings->push_back(where + ": bad device name '" + w[0] + "'");
    for (size_t i = 1; i < w.size() && line_ok; ++i) {
      const std::string& x = w[i];
      if (x.rfind("port=", 0) == 0) {
        char* end = nullptr;
        long v = std::strtol(x.c_str() + 5, &end, 10);
        if (*end != '\0' || v < 0 || v > 65535) {
          line_ok = false;
          if (warnings) warnings->push_back(where + ": bad port '" + x + "'");
        } else {
          e.cfg.port = static_cast<uint16_t>(v);
        }
      } else if (x.rfind("mtu=", 0) == 0) {
        char* end = nullptr;
        long v = std::strtol(x.c_str() + 4, &end, 10);
        if (*end != '\0' || !(v == 256 || v == 512 || v == 1024 || v == 2048 || v == 4096)) {
          line_ok = false;
          if (warnings) warnings->push_back(where + ": bad mtu '" + x + "' (256, 512, 1024, 2048 or 4096)");
        } else {
          e.cfg.mtu = static_cast<uint32_t>(v);
        }
      } else if (i == 1 && x.find('=') == std::string::npos) {
        e.cfg.address = wire::IpAddr::parse(x);
        if (!e.cfg.address) {
          line_ok = false;
          if (warnings) warnings->push_back(where + ": not an IP address: '" + x + "'");
        }
      } else {
        line_ok = false;
        if (warnings) warnings->push_back(where + ": unknown setting '" + x + "'");
      }
    }
    if (line_ok)
      add_entry(std::move(e), out, warnings);
    else
      ok = false;
  }
  return ok;
}

std::vector<DeviceEntry> load_device_config(std::vector<std::string>* warnings) {
  std::string err;
  DeviceConfig base = DeviceConfig::from_env(&err);
  if (!err.empty() && warnings) warnings->push_back(err);
  std::vector<DeviceEntry> out;

  if (const char* v = std::getenv("SOFTRDMA_DEVICES"); v != nullptr && *v != '\0') {
    parse_device_list(v, base, &out, warnings);
    return out;
  }

  std::vector<std::string> files;
  if (const char* v = std::getenv("SOFTRDMA_CONFIG"); v != nullptr && *v != '\0') {
    files.push_back(v);
  } else {
    if (const char* x = std::getenv("XDG_CONFIG_HOME"); x != nullptr && *x != '\0')
      files.push_back(std::string(x) + "/softrdma.conf");
    else if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0')
      files.push_back(std::string(h) + "/.config/softrdma.conf");
    files.push_back("/etc/softrdma.conf");
  }
  for (const auto& path : files) {
    std::string text;
    if (!read_file(path, &text)) {
      if (std::getenv("SOFTRDMA_CONFIG") != nullptr && warnings) warnings->push_back(path + ": cannot read");
      continue;
    }
    parse_config_file(text, path, base, &out, warnings);
    return out;  // the first file that exists is the configuration, even if it names no device
  }

  out.push_back(DeviceEntry{base, "default"});
  return out;
}

}  // namespace softrdma::verbs
