#!/usr/bin/env bash
# Debian's perftest, unmodified, on softrdma's libibverbs.so.1 (run through `softrdma run`).
#
#   perftest.sh PROGRAM      PROGRAM is one of ib_{send,write,read,atomic}_{bw,lat}
#
# Runs the program's cases (RC by default; UD too for ib_send_*; 64 B and 64 KiB messages; -e
# completion events for ib_send_*; both atomic operations for ib_atomic_*), each as a server in
# the background and a client against 127.0.0.1 (-x 0: the RoCEv2 GID index), with few
# iterations. Both sides must exit 0 and the client must report a nonzero bandwidth and message
# rate (bw) or a nonzero latency (lat). The client outputs are kept in VERBS_RESULTS_DIR
# (when set) for docs/performance.md. Environment: see lib.sh.
# shellcheck disable=SC2034  # server/client arrays are read by run_pair through namerefs
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

prog=${1:?usage: perftest.sh ib_send_bw|ib_send_lat|ib_write_bw|ib_write_lat|ib_read_bw|ib_read_lat|ib_atomic_bw|ib_atomic_lat}
require_library
require_softrdma
require_programs "$prog"

bw_iters=${PERFTEST_BW_ITERS:-500}
lat_iters=${PERFTEST_LAT_ITERS:-200}

case $prog in
  ib_send_bw) cases=("-s 64" "-s 65536" "-s 65536 -e" "-c UD -s 64" "-c UD -s 2048") ;;
  ib_send_lat) cases=("-s 64" "-s 65536" "-s 64 -e" "-c UD -s 64" "-c UD -s 2048") ;;
  ib_write_bw | ib_read_bw | ib_write_lat | ib_read_lat) cases=("-s 64" "-s 65536") ;;
  ib_atomic_bw | ib_atomic_lat) cases=("-A FETCH_AND_ADD" "-A CMP_AND_SWAP") ;;
  *) die "unknown perftest program $prog" ;;
esac
case $prog in
  *_bw) iters=$bw_iters ;;
  *) iters=$lat_iters ;;
esac

# The first result row after the "#bytes" header: "bytes iters a b c ..." (bw: peak avg rate;
# lat: t_min t_max t_typical t_avg ...).
result_row() {
  awk '/#bytes/ { hdr = 1; next } hdr && $1 ~ /^[0-9]+$/ && NF >= 5 { print; exit }' "$1"
}

for c in "${cases[@]}"; do
  free_port
  port=$PORT
  # shellcheck disable=SC2206  # the case string is a list of options
  opts=(-d "$VERBS_DEVICE" -x 0 -F -p "$port" -n "$iters" $c)
  server=("${VRUN[@]}" stdbuf -oL "$prog" "${opts[@]}")
  client=("${VRUN[@]}" stdbuf -oL "$prog" "${opts[@]}" 127.0.0.1)
  name="$prog $c -n $iters"
  run_pair "$name" "$port" server client || continue
  row=$(result_row "$CLIENT_LOG")
  read -r -a f <<<"$row"
  if [[ $prog == *_bw ]]; then
    # #bytes #iterations BW peak[MB/sec] BW average[MB/sec] MsgRate[Mpps]
    if [[ ${#f[@]} -lt 5 ]] || ! is_positive "${f[3]}" || ! is_positive "${f[4]}"; then
      case_fail "$name" "no sane bandwidth row in the client output: '$row'" "$SERVER_LOG" "$CLIENT_LOG"
      continue
    fi
    summary="${f[0]} B: ${f[3]} MB/s average, ${f[4]} Mpps"
  else
    # #bytes #iterations t_min t_max t_typical t_avg t_stdev 99% 99.9%
    if [[ ${#f[@]} -lt 6 ]] || ! is_positive "${f[2]}" || ! is_positive "${f[5]}"; then
      case_fail "$name" "no sane latency row in the client output: '$row'" "$SERVER_LOG" "$CLIENT_LOG"
      continue
    fi
    summary="${f[0]} B: t_typical ${f[4]} us, t_avg ${f[5]} us"
  fi
  echo "ok    $name: $summary (${PAIR_SECONDS}s)"
  _verbs_passed=$((_verbs_passed + 1))
  if [[ -n ${VERBS_RESULTS_DIR:-} ]]; then
    mkdir -p "$VERBS_RESULTS_DIR"
    cp "$CLIENT_LOG" "$VERBS_RESULTS_DIR/${name//[^A-Za-z0-9_.-]/_}.txt"
  fi
done
finish
