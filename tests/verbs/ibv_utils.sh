#!/usr/bin/env bash
# Debian's ibverbs-utils, unmodified, on softrdma's libibverbs.so.1 (run through `softrdma run`).
#
#   ibv_utils.sh devices          ibv_devices lists softrdma0 with a nonzero node GUID
#   ibv_utils.sh devinfo          ibv_devinfo, -v, -l, -d/-i: port ACTIVE, Ethernet, a RoCE v2 GID
#   ibv_utils.sh rc|uc|ud|srq     ibv_<type>_pingpong, server and client on this machine over
#                                 127.0.0.1 (-g 0: the RoCEv2 GID), several sizes and iteration
#                                 counts, with and without -e (completion events), -c (check data)
#
# Every program must exit 0; the pingpongs must report a nonzero rate. Environment: see lib.sh.
# shellcheck disable=SC2034  # server/client arrays are read by run_pair through namerefs
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode=${1:?usage: ibv_utils.sh devices|devinfo|rc|uc|ud|srq}
require_library
require_softrdma
dev=$VERBS_DEVICE

# check_output NAME LOG REGEX...: every REGEX (grep -E) must match a line of LOG.
check_output() {
  local name=$1 log=$2
  shift 2
  local re
  for re in "$@"; do
    if ! grep -Eq -- "$re" "$log"; then
      case_fail "$name" "output has no line matching /$re/" "$log"
      return 1
    fi
  done
  case_ok "$name"
}

# single NAME REGEXES... -- CMD...: one program, exit 0, output matches.
single() {
  local name=$1
  shift
  local res=()
  while [[ $1 != -- ]]; do
    res+=("$1")
    shift
  done
  shift
  local log=$VERBS_LOGDIR/${name//[^A-Za-z0-9_.-]/_}.log
  timeout -k 5 "$VERBS_TIMEOUT" "$@" >"$log" 2>&1 </dev/null
  local rc=$?
  if ((rc != 0)); then
    case_fail "$name" "exit $rc" "$log"
    return 1
  fi
  check_output "$name" "$log" "${res[@]}"
}

# "8192000 bytes in 0.05 seconds = 1310.72 Mbit/sec" and "1000 iters in 0.05 seconds = 50.00 usec/iter".
# With 1-byte messages the Mbit/sec rounds to 0.00, so the check is on bytes moved and usec/iter.
check_pingpong_rates() {
  local name=$1 log=$2 size=$3 iters=$4
  local bytes mbit usec
  bytes=$(sed -nE 's/^([0-9]+) bytes in .* seconds = .*/\1/p' "$log" | tail -n 1)
  mbit=$(sed -nE 's/.* seconds = ([^ ]+) Mbit\/sec.*/\1/p' "$log" | tail -n 1)
  usec=$(sed -nE 's/.* seconds = ([^ ]+) usec\/iter.*/\1/p' "$log" | tail -n 1)
  if [[ $bytes != $((2 * size * iters)) ]] || ! is_positive "$usec" || [[ $mbit == *nan* || $mbit == *inf* ]]; then
    case_fail "$name" "no sane result (bytes '$bytes', expected $((2 * size * iters)); Mbit/sec '$mbit'; usec/iter '$usec')" \
      "$SERVER_LOG" "$CLIENT_LOG"
    return 1
  fi
  echo "ok    $name: $mbit Mbit/s, $usec usec/iter (${PAIR_SECONDS}s)"
  _verbs_passed=$((_verbs_passed + 1))
}

pingpong() {
  local type=$1
  local prog=ibv_${type}_pingpong
  require_programs "$prog"
  local cases
  case $type in
    rc) cases=("-s 1 -n 10" "-s 4096 -n 200 -c" "-s 65536 -n 50 -e -c" "-s 100000 -n 20 -m 4096 -c"
               "-s 4096 -n 100 -N -c" "-s 1024 -n 500 -e -r 16") ;;
    uc) cases=("-s 1 -n 10" "-s 4096 -n 200 -c" "-s 65536 -n 50 -e -c" "-s 16384 -n 100 -m 2048 -c") ;;
    ud) cases=("-s 1 -n 10" "-s 1024 -n 200 -c" "-s 2048 -n 100 -e -c" "-s 4000 -n 20 -c") ;;
    srq) cases=("-s 1 -n 10" "-s 4096 -n 50 -q 4 -c" "-s 4096 -n 20 -e -c" "-s 16384 -n 10 -c") ;;
    *) die "unknown pingpong type $type" ;;
  esac
  local c port
  for c in "${cases[@]}"; do
    free_port
    port=$PORT
    # shellcheck disable=SC2206  # the case string is a list of options
    local opts=(-d "$dev" -g 0 -p "$port" $c)
    local server=("${VRUN[@]}" stdbuf -oL "$prog" "${opts[@]}")
    local client=("${VRUN[@]}" stdbuf -oL "$prog" "${opts[@]}" 127.0.0.1)
    local name="$prog $c"
    run_pair "$name" "$port" server client || continue
    local size iters
    size=$(sed -nE 's/.*-s ([0-9]+).*/\1/p' <<<"$c")
    iters=$(sed -nE 's/.*-n ([0-9]+).*/\1/p' <<<"$c")
    check_pingpong_rates "$name" "$CLIENT_LOG" "$size" "$iters" || continue
  done
}

case $mode in
  devices)
    require_programs ibv_devices
    # "    softrdma0       	0002c9fffe000000" (GUID: 16 hex digits, not all zero)
    single "ibv_devices" "^[[:space:]]*${dev}[[:space:]]+[0-9a-f]{16}\$" -- "${VRUN[@]}" ibv_devices
    if grep -Eq "^[[:space:]]*${dev}[[:space:]]+0{16}\$" "$VERBS_LOGDIR/ibv_devices.log"; then
      case_fail "ibv_devices GUID" "node GUID is zero" "$VERBS_LOGDIR/ibv_devices.log"
    fi
    ;;
  devinfo)
    require_programs ibv_devinfo
    single "ibv_devinfo" "hca_id:[[:space:]]+$dev" "transport:[[:space:]]+InfiniBand" \
      "node_guid:[[:space:]]+[0-9a-f]{4}:" "vendor_id:[[:space:]]+0x[0-9a-f]+" \
      "state:[[:space:]]+PORT_ACTIVE" "link_layer:[[:space:]]+Ethernet" -- "${VRUN[@]}" ibv_devinfo
    if grep -Eq "vendor_id:[[:space:]]+0x(0|02c9|15b3|1d0f)\$" "$VERBS_LOGDIR/ibv_devinfo.log"; then
      case_fail "ibv_devinfo vendor_id" "vendor id must be nonzero and neither Mellanox's nor Amazon's" \
        "$VERBS_LOGDIR/ibv_devinfo.log"
    fi
    single "ibv_devinfo -v" "hca_id:[[:space:]]+$dev" "max_qp:[[:space:]]+[1-9]" "max_cqe:[[:space:]]+[1-9]" \
      "phys_port_cnt:[[:space:]]+[1-9]" "GID\[ *0\]:.*RoCE v2" "active_mtu:[[:space:]]+[0-9]+ \([1-5]\)" \
      -- "${VRUN[@]}" ibv_devinfo -v
    single "ibv_devinfo -l" "$dev" -- "${VRUN[@]}" ibv_devinfo -l
    single "ibv_devinfo -d $dev -i 1" "port:[[:space:]]+1" "PORT_ACTIVE" -- "${VRUN[@]}" ibv_devinfo -d "$dev" -i 1
    ;;
  rc | uc | ud | srq) pingpong "$mode" ;;
  *) die "unknown mode $mode" ;;
esac
finish
