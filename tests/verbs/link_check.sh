#!/usr/bin/env bash
# Every Debian binary and library that the verbs tests load binds to our libibverbs.so.1 without
# an undefined symbol or a missing version node. They are all linked with BIND_NOW, so one missing
# symbol makes the program die at start-up with a loader message instead of running; this test
# names the symbol.
#
#   ldd -r PROGRAM       (with our library first in LD_LIBRARY_PATH) for ibverbs-utils, perftest,
#                        librdmacm.so.1, libmlx5.so.1, libefa.so.1 and pyverbs' extension modules
#   python3 -c 'import pyverbs.*'  with LD_BIND_NOW=1
#
# Each must resolve libibverbs.so.1 to our directory. Environment: see lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_library

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
objects=()
for p in ibv_devices ibv_devinfo ibv_rc_pingpong ibv_uc_pingpong ibv_ud_pingpong ibv_srq_pingpong \
  ibv_xsrq_pingpong ibv_asyncwatch ib_send_bw ib_send_lat ib_write_bw ib_write_lat ib_read_bw ib_read_lat \
  ib_atomic_bw ib_atomic_lat; do
  if path=$(command -v "$p"); then
    objects+=("$path")
  else
    echo "note: $p is not installed; not checked"
  fi
done
for l in librdmacm.so.1 libmlx5.so.1 libefa.so.1; do
  [[ -e /usr/lib/$multiarch/$l ]] && objects+=("/usr/lib/$multiarch/$l")
done
if [[ -d /usr/lib/python3/dist-packages/pyverbs ]]; then
  while IFS= read -r -d '' so; do objects+=("$so"); done < <(find /usr/lib/python3/dist-packages/pyverbs -name '*.so' -print0 | sort -z)
fi
((${#objects[@]})) || skip "none of ibverbs-utils, perftest, librdmacm, pyverbs is installed"

for obj in "${objects[@]}"; do
  name=${obj#/usr/}
  log=$VERBS_LOGDIR/ldd.${name//\//_}.log
  LD_LIBRARY_PATH=$SOFTRDMA_LIBDIR ldd -r "$obj" >"$log" 2>&1
  where=$(awk '$1 == "libibverbs.so.1" { print $3 }' "$log")
  if grep -Eq 'undefined symbol|version .* not found|not found' "$log"; then
    case_fail "$name" "unresolved symbols or versions" "$log"
  elif [[ -z $where ]]; then
    _verbs_passed=$((_verbs_passed + 1))  # does not load libibverbs.so.1 itself
  elif [[ $(readlink -f "$where") != "$(readlink -f "$SOFTRDMA_LIBDIR/libibverbs.so.1")" ]]; then
    case_fail "$name" "libibverbs.so.1 resolved to $where, not to $SOFTRDMA_LIBDIR" "$log"
  else
    _verbs_passed=$((_verbs_passed + 1))
  fi
done
echo "ldd -r: ${#objects[@]} objects checked"

if [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import pyverbs' 2>/dev/null; then
  log=$VERBS_LOGDIR/pyverbs-import.log
  # Every module the test suite imports, providers included (they pull in libmlx5 and libefa).
  if LD_LIBRARY_PATH=$SOFTRDMA_LIBDIR LD_BIND_NOW=1 timeout 60 /usr/bin/python3 -c '
import importlib
for m in ["device", "cq", "qp", "mr", "pd", "addr", "srq", "fork", "cmid", "wq", "flow", "xrcd", "wr", "dmabuf",
          "providers.mlx5.mlx5dv", "providers.efa.efadv"]:
    importlib.import_module("pyverbs." + m)
print("imported")' >"$log" 2>&1; then
    case_ok "python3: import pyverbs.* with LD_BIND_NOW=1"
  else
    case_fail "python3: import pyverbs.* with LD_BIND_NOW=1" "import failed" "$log"
  fi
fi
finish
