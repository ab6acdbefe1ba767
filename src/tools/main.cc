// softrdma: the command line of the software RDMA adapter. Each subcommand lives in its own
// file and registers itself through commands.h.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "tools/commands.h"
#if __has_include("tools/perf/cmd_perf.h")
#include "tools/perf/cmd_perf.h"
#define SOFTRDMA_HAVE_PERF 1
#endif

int main(int argc, char** argv) {
  CLI::App app{
      "softrdma: a software RDMA adapter (RoCEv2 over UDP, IBTA verbs semantics).\n"
      "Start with `softrdma demo`."};
  app.require_subcommand(1);
  softrdma::tools::add_demo_command(app);
  softrdma::tools::add_devices_command(app);
  softrdma::tools::add_stat_command(app);
  softrdma::tools::add_run_command(app);
#ifdef SOFTRDMA_HAVE_PERF
  softrdma::tools::add_perf_command(app);
#endif
  CLI11_PARSE(app, argc, argv);
  return 0;
}
