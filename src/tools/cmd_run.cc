// `softrdma run [OPTIONS] -- PROGRAM ARGS`: runs an unmodified verbs program on softrdma. It
// finds our drop-in libibverbs.so.1, puts its directory first in LD_LIBRARY_PATH (or preloads it
// with --preload), turns the options into the SOFTRDMA_* environment the library reads
// (src/verbs/README.md), and execvp()s the program, which then keeps our pid, stdio and signals.
//
// Where the library is found, first match wins:
//   1. --libdir DIR, then $SOFTRDMA_LIBDIR (an error if it holds no libibverbs.so.1);
//   2. next to this binary: <exe>/../verbs (the build tree: build/src/tools/softrdma and
//      build/src/verbs/libibverbs.so.1), <exe>/../lib/softrdma, <exe>/../lib64/softrdma,
//      <exe>/../lib/<multiarch>/softrdma (installed under a prefix);
//   3. the build tree this binary was configured in (SOFTRDMA_VERBS_BUILD_DIR), in case the
//      binary was copied somewhere else.
// The library must never be installed into the system library directory: it has the same soname
// as rdma-core's, and would replace it for every program.
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "link/fault_link.h"
#include "tools/commands.h"
#include "wire/address.h"

#ifndef SOFTRDMA_VERBS_BUILD_DIR
#define SOFTRDMA_VERBS_BUILD_DIR ""
#endif

namespace softrdma::tools {

namespace {

constexpr const char* kLibName = "libibverbs.so.1";

struct RunOptions {
  std::vector<std::string> devices;  // NAME or NAME=ADDR
  std::string config;
  std::string fault;
  std::string name, addr;
  std::optional<uint16_t> port;
  std::optional<uint32_t> mtu;
  bool busy_poll = false;
  std::string libdir;
  bool preload = false;
  bool print_env = false;
  std::string program;
};

bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string dirname_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string canonical(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) ? std::string(buf) : path;
}

std::string self_exe_dir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  buf[n] = '\0';
  return dirname_of(buf);
}

// The directory that holds our libibverbs.so.1, or "" with *err set.
std::string find_libdir(const RunOptions& o, std::string* err) {
  std::string forced = o.libdir;
  const char* from = "--libdir";
  if (forced.empty()) {
    if (const char* v = std::getenv("SOFTRDMA_LIBDIR"); v && *v) {
      forced = v;
      from = "SOFTRDMA_LIBDIR";
    }
  }
  if (!forced.empty()) {
    if (is_file(forced + "/" + kLibName)) return canonical(forced);
    *err = fmt::format("{}={}: no {} there", from, forced, kLibName);
    return "";
  }
  std::vector<std::string> candidates;
  if (std::string exe = self_exe_dir(); !exe.empty()) {
    candidates.push_back(exe + "/../verbs");
    candidates.push_back(exe + "/../lib/softrdma");
    candidates.push_back(exe + "/../lib64/softrdma");
#ifdef SOFTRDMA_MULTIARCH
    candidates.push_back(exe + "/../lib/" SOFTRDMA_MULTIARCH "/softrdma");
#endif
  }
  if (*SOFTRDMA_VERBS_BUILD_DIR) candidates.push_back(SOFTRDMA_VERBS_BUILD_DIR);
  for (const auto& dir : candidates)
    if (is_file(dir + "/" + kLibName)) return canonical(dir);
  std::string tried;
  for (const auto& dir : candidates) tried += "\n  " + canonical(dir);
  *err = fmt::format(
      "cannot find softrdma's {} (build the softrdma_verbs target, or set SOFTRDMA_LIBDIR); looked in:{}",
      kLibName, tried);
  return "";
}

// NAME or NAME=ADDR (src/verbs/config.h: SOFTRDMA_DEVICES), with a valid name and address.
bool check_device(const std::string& spec, std::string* err) {
  auto eq = spec.find('=');
  std::string name = spec.substr(0, eq);
  if (name.empty() || name.size() >= 64 || name.find_first_of(", \t") != std::string::npos) {
    *err = fmt::format("--device {}: expected NAME or NAME=ADDR (e.g. softrdma0=127.0.0.2)", spec);
    return false;
  }
  if (eq != std::string::npos && !wire::IpAddr::parse(spec.substr(eq + 1))) {
    *err = fmt::format("--device {}: '{}' is not an IPv4 or IPv6 address", spec, spec.substr(eq + 1));
    return false;
  }
  return true;
}

// The environment changes the options ask for, in the order they are applied.
std::vector<std::pair<std::string, std::string>> environment(const RunOptions& o, const std::string& libdir) {
  std::vector<std::pair<std::string, std::string>> env;
  auto prepend = [](const char* var, const std::string& value, char sep) {
    const char* old = std::getenv(var);
    return old && *old ? value + sep + old : value;
  };
  if (o.preload)
    env.emplace_back("LD_PRELOAD", prepend("LD_PRELOAD", libdir + "/" + kLibName, ':'));
  // Even with --preload: a program that dlopen()s "libibverbs.so.1" by name must get ours too.
  env.emplace_back("LD_LIBRARY_PATH", prepend("LD_LIBRARY_PATH", libdir, ':'));
  env.emplace_back("SOFTRDMA_LIBDIR", libdir);
  if (!o.devices.empty()) {
    std::string list;
    for (const auto& d : o.devices) list += (list.empty() ? "" : ",") + d;
    env.emplace_back("SOFTRDMA_DEVICES", list);
  }
  if (!o.config.empty()) env.emplace_back("SOFTRDMA_CONFIG", o.config);
  if (!o.name.empty()) env.emplace_back("SOFTRDMA_NAME", o.name);
  if (!o.addr.empty()) env.emplace_back("SOFTRDMA_ADDR", o.addr);
  if (o.port) env.emplace_back("SOFTRDMA_PORT", std::to_string(*o.port));
  if (o.mtu) env.emplace_back("SOFTRDMA_MTU", std::to_string(*o.mtu));
  if (!o.fault.empty()) env.emplace_back("SOFTRDMA_FAULT", o.fault);
  if (o.busy_poll) env.emplace_back("SOFTRDMA_BUSY_POLL", "1");
  return env;
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                        "_-+=/.,:@%") == std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

int run(const RunOptions& o, std::vector<std::string> args) {
  std::string err;
  for (const auto& d : o.devices)
    if (!check_device(d, &err)) {
      std::fprintf(stderr, "softrdma run: %s\n", err.c_str());
      return 2;
    }
  if (!o.fault.empty() && !link::parse_fault_spec(o.fault, &err)) {
    std::fprintf(stderr, "softrdma run: --fault %s: %s\n", o.fault.c_str(), err.c_str());
    return 2;
  }
  if (!o.addr.empty() && !wire::IpAddr::parse(o.addr)) {
    std::fprintf(stderr, "softrdma run: --addr %s: not an IPv4 or IPv6 address\n", o.addr.c_str());
    return 2;
  }
  std::string libdir = find_libdir(o, &err);
  if (libdir.empty()) {
    std::fprintf(stderr, "softrdma run: %s\n", err.c_str());
    return 127;
  }
  auto env = environment(o, libdir);

  // CLI11 leaves the "--" that separated our options from the program's at the front.
  if (!args.empty() && args.front() == "--") args.erase(args.begin());
  args.insert(args.begin(), o.program);

  if (o.print_env) {
    for (const auto& [k, v] : env) std::printf("%s=%s \\\n", k.c_str(), shell_quote(v).c_str());
    std::string line;
    for (const auto& a : args) line += (line.empty() ? "" : " ") + shell_quote(a);
    std::printf("  %s\n", line.c_str());
    return 0;
  }

  for (const auto& [k, v] : env)
    if (::setenv(k.c_str(), v.c_str(), 1) != 0) {
      std::fprintf(stderr, "softrdma run: setenv %s: %s\n", k.c_str(), std::strerror(errno));
      return 126;
    }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  ::execvp(argv[0], argv.data());
  int e = errno;
  std::fprintf(stderr, "softrdma run: %s: %s\n", argv[0], std::strerror(e));
  return e == ENOENT ? 127 : 126;  // what a shell returns
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Run an unmodified verbs program on softrdma (drop-in libibverbs.so.1)");
  cmd->footer(
      "Put -- before PROGRAM when its arguments contain options, e.g.\n"
      "  softrdma run -- ib_send_bw -d softrdma0 -x 0\n"
      "  softrdma run --fault loss=1% -- ibv_rc_pingpong -d softrdma0 -g 0\n"
      "The program runs with our libibverbs.so.1 first in LD_LIBRARY_PATH (or preloaded) and the options\n"
      "as SOFTRDMA_* variables; it replaces this process (same pid, exit status and signals).\n"
      "SOFTRDMA_LIBDIR overrides where the library is looked for.");
  cmd->add_option("--device", o->devices,
                  "a device NAME or NAME=ADDR (repeatable; sets SOFTRDMA_DEVICES, which replaces the "
                  "configuration file), e.g. softrdma0=127.0.0.2")
      ->allow_extra_args(false);
  cmd->add_option("--config", o->config, "device configuration file (SOFTRDMA_CONFIG)")->check(CLI::ExistingFile);
  cmd->add_option("--fault", o->fault, "fault injection spec for every device (SOFTRDMA_FAULT), e.g. loss=1%");
  cmd->add_option("--name", o->name, "name of the default device (SOFTRDMA_NAME)");
  cmd->add_option("--addr", o->addr, "IP address of the default device (SOFTRDMA_ADDR)");
  cmd->add_option("--port", o->port, "UDP port, the same on every peer (SOFTRDMA_PORT)");
  cmd->add_option("--mtu", o->mtu, "port MTU: 256, 512, 1024, 2048 or 4096 (SOFTRDMA_MTU)")
      ->check(CLI::IsMember({256u, 512u, 1024u, 2048u, 4096u}));
  cmd->add_flag("--busy-poll", o->busy_poll, "progress threads spin instead of sleeping (SOFTRDMA_BUSY_POLL=1)");
  cmd->add_option("--libdir", o->libdir, "directory holding our libibverbs.so.1 (default: found next to softrdma)");
  cmd->add_flag("--preload", o->preload, "also LD_PRELOAD the library (for programs with an RPATH/RUNPATH)");
  cmd->add_flag("-n,--print-env", o->print_env, "print the environment and command instead of running it");
  cmd->add_option("program", o->program, "the program to run (looked up in PATH)")->required();
  // Everything after PROGRAM (or after --) is the program's, not ours.
  cmd->prefix_command();
  cmd->callback([o, cmd] {
    // Returns only when the program could not be started (or with --print-env).
    if (int rc = run(*o, cmd->remaining())) throw CLI::RuntimeError(rc);
  });
}

}  // namespace softrdma::tools
