// `softrdma perf`: a perftest-like server/client (cmd_perf.cc registers it).
//
// This header declares nothing: its presence tells main.cc (through __has_include) that the
// perf subcommand is built, so it calls softrdma::tools::add_perf_command() from
// tools/commands.h. The implementation's own interfaces are in tools/perf/perf.h.
#pragma once
