// The `softrdma` command line: one function per subcommand, registered by main.cc.
#pragma once

#include <CLI/CLI.hpp>

namespace softrdma::tools {

void add_demo_command(CLI::App& app);     // cmd_demo.cc
void add_devices_command(CLI::App& app);  // cmd_devices.cc
void add_stat_command(CLI::App& app);     // cmd_stat.cc
void add_perf_command(CLI::App& app);     // perf/cmd_perf.cc
void add_run_command(CLI::App& app);      // cmd_run.cc

}  // namespace softrdma::tools
