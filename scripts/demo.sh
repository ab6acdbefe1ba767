#!/usr/bin/env bash
# The README's first command: installs what is missing, builds the softrdma tool into build/
# and runs `softrdma demo` (two endpoints on loopback: SEND, RDMA WRITE, RDMA READ, atomics).
# Arguments are passed to the demo, e.g. scripts/demo.sh --help.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

bash scripts/install-deps.sh
configure_main
cmake --build build --target softrdma -j "$(build_jobs)"
exec build/src/tools/softrdma demo "$@"
