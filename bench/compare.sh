#!/usr/bin/env bash
# softrdma side by side with the transports people use instead, on loopback, in one run: a markdown
# table of medians and ratios softrdma / peer, and plots (issue 5, "a benchmark suite that anyone can
# rerun"). About 10 minutes with the defaults; QUICK=1 takes 1-2.
#
#   bash bench/compare.sh [BUILD_DIR] [OUTDIR]      defaults: build, BUILD_DIR/compare
#
# Contenders, every one as two processes (server and client) except memcpy and tcp_pingpong:
#   softrdma perf        `softrdma perf --server` / `--client`, RoCEv2 over UDP, each side on its own 127.0.0.x
#   perftest             Debian's ib_send_lat / ib_write_bw / ib_read_bw on our drop-in libibverbs.so.1
#                        (`softrdma run --addr 127.0.0.x -- PROG -d softrdma0 -x 0 ...`)
#   UCX over TCP         ucx_perftest, UCX_TLS=tcp (UCX_NET_DEVICES=lo)
#   UCX shared memory    ucx_perftest, UCX_TLS=sm (override with UCX_SM_TLS, e.g. posix,cma)
#   TCP                  iperf3 (bandwidth, a stream of SIZE-byte writes) and bench/tcp_pingpong (latency)
#   memcpy               bench/memcpy_bw, one core (and a 256 MiB copy)
#   bare UDP stream      bench/udp_stream: SIZE-byte messages as RoCEv2-sized frames by UDP GSO, with
#                        no transport and no ICRC (sizes of 4 KiB and more): the ceiling under
#                        softrdma's bandwidth over UDP
#   two-core ring        bench/core_to_core: SIZE bytes copied into a shared ring on one CPU and out
#                        of it on the other (the ceiling for a two-copy same-host transport), and a
#                        cache line's round trip between the two CPUs, at the start and end of every
#                        repetition (on a VM it moves with the host's placement of the vCPUs, and
#                        every same-host figure with it)
# Operations and the closest equivalent of each (sizes 8, 64, 1K, 4K, 64K, 1M):
#   RC SEND/RECV ping-pong latency   perf --op send --mode lat | ib_send_lat | ucx tag_lat | tcp_pingpong
#   RDMA WRITE bandwidth             perf --op write --mode bw | ib_write_bw | ucx ucp_put_bw | iperf3 -l SIZE | memcpy
#   RDMA READ bandwidth              perf --op read --mode bw  | ib_read_bw  | ucx ucp_get
#   8 B RDMA WRITE message rate      perf --mode rate --window 256 | ib_write_bw -s 8 | ucp_put_bw -s 8 | iperf3 -l 8
#   CPU seconds per GB moved         user+sys of both processes of every WRITE bandwidth run / bytes moved
# Each measurement runs REPEAT times (repetitions interleaved across contenders); the report has the
# medians. A contender whose tool is missing, or whose run fails, shows "n/a"; every run has a timeout
# and no process outlives the script.
#
# Output in OUTDIR: compare.md (the report), raw.csv (every run), medians.csv, logs/ (every tool's
# output), write_bw.svg, read_bw.svg, latency.svg (PLOT_FORMAT=png for PNG; needs gnuplot).
#
# Environment:
#   REPEAT=N          runs per measurement (default 3)          QUICK=1   sizes 8,64K,1M, fewer iterations
#   SIZES=8,4K,...    message sizes (default 8,64,1K,4K,64K,1M)  TOOL_TIMEOUT=S  seconds per tool run (60)
#   SOFTRDMA=PATH     the softrdma binary (default BUILD_DIR/src/tools/softrdma)
#   SOFTRDMA_PERF_ARGS  extra options for both sides of softrdma perf (e.g. --busy-poll)
#   UCX_SM_TLS        UCX_TLS of the shared-memory contender (default sm)
#   SERVER_ADDR / CLIENT_ADDR   loopback addresses of the two sides (default: two free 127.0.0.x)
#   BOOST=1           run in a scheduler autogroup of our own at nice -20 (root; as bench/run.sh)
#   PLOT_FORMAT=svg|png
#   REPORT_ONLY=1     no runs: the report and plots again from OUTDIR/raw.csv
set -uo pipefail

if [[ ${BOOST:-0} == 1 && -z ${SOFTRDMA_BOOSTED:-} ]]; then
  # shellcheck disable=SC2016  # expanded by the inner bash
  exec setsid -w env SOFTRDMA_BOOSTED=1 bash -c \
    'echo -20 >/proc/self/autogroup 2>/dev/null || echo "[compare.sh] BOOST: cannot renice the autogroup" >&2; exec bash "$0" "$@"' \
    "$0" "$@"
fi

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
out=${2:-$build/compare}
softrdma=${SOFTRDMA:-$build/src/tools/softrdma}
tcp_pp=${TCP_PINGPONG:-$build/bench/tcp_pingpong}
memcpy_bw=${MEMCPY_BW:-$build/bench/memcpy_bw}
core_to_core=${CORE_TO_CORE:-$build/bench/core_to_core}
udp_stream=${UDP_STREAM:-$build/bench/udp_stream}
repeat=${REPEAT:-3}
quick=${QUICK:-0}
tmo=${TOOL_TIMEOUT:-60}
ucx_sm_tls=${UCX_SM_TLS:-sm}
plot_format=${PLOT_FORMAT:-svg}
read -r -a perf_extra <<<"${SOFTRDMA_PERF_ARGS:-}"

log() { echo "[compare.sh] $*" >&2; }

# "64K" -> 65536
to_bytes() {
  local s=$1
  case $s in
    *K | *k) echo $((${s%?} << 10)) ;;
    *M | *m) echo $((${s%?} << 20)) ;;
    *) echo $((s)) ;;
  esac
}
human() {
  local b=$1
  if ((b >= 1 << 20 && b % (1 << 20) == 0)); then echo "$((b >> 20)) MiB"
  elif ((b >= 1024 && b % 1024 == 0)); then echo "$((b >> 10)) KiB"
  else echo "$b B"; fi
}

if [[ -n ${SIZES:-} ]]; then
  size_list=${SIZES//,/ }
elif [[ $quick == 1 ]]; then
  size_list="8 64K 1M"
else
  size_list="8 64 1K 4K 64K 1M"
fi
sizes=()
for s in $size_list; do sizes+=("$(to_bytes "$s")"); done

mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
logs=$out/logs
[[ ${REPORT_ONLY:-0} == 1 ]] || rm -rf "$logs"
mkdir -p "$logs"
work=$(mktemp -d /tmp/softrdma-compare.XXXXXX)
raw=$out/raw.csv
report_only=${REPORT_ONLY:-0}
if [[ $report_only == 1 && -s $raw ]]; then
  log "REPORT_ONLY=1: no runs, the report from $raw"
else
  report_only=0
  echo "transport,test,bytes,rep,value,cpu_s,moved_bytes" >"$raw"
fi
failures=0

# ---- processes: every tool run is `timeout` in a process group of its own ----------------------
server_pid=""
client_pid=""
stop_group() {  # stop_group PID: TERM, then KILL, the process group PID leads; reaps it
  local g=$1 i
  [[ -n $g ]] || return 0
  kill -TERM -- "-$g" 2>/dev/null
  for ((i = 0; i < 20; i++)); do
    kill -0 -- "-$g" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$g" 2>/dev/null
  wait "$g" 2>/dev/null
}
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  stop_group "$client_pid"
  stop_group "$server_pid"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# start_timed LOG CPUFILE CMD...: CMD in the background under the tool timeout; CPUFILE receives
# bash's `times` for CMD (second line: user and system time of CMD and its children) if CMD ends by
# itself. Sets STARTED to the pid (= process group) of the `timeout` process.
start_timed() {
  local logf=$1 cpuf=$2
  shift 2
  # shellcheck disable=SC2016  # expanded by the inner bash
  timeout -k 5 "$tmo" bash -c 'c=$1; shift; "$@"; rc=$?; times >"$c"; exit $rc' _ "$cpuf" "$@" \
    >"$logf" 2>&1 </dev/null &
  STARTED=$!
}
# cpu_of FILE: user+sys seconds from a `times` output, or nothing.
cpu_of() {
  [[ -s $1 ]] || return 0
  awk 'function s(x, a) { split(x, a, "m"); sub(/s$/, "", a[2]); return a[1] * 60 + a[2] }
       NR == 2 { printf "%.4f", s($1) + s($2) }' "$1"
}

tcp_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
next_port=$((30000 + RANDOM % 8000))
free_port() {  # sets PORT
  local i
  for ((i = 0; i < 200; i++)); do
    next_port=$((next_port + 1))
    ((next_port > 39999)) && next_port=30001
    tcp_listening "$next_port" || break
  done
  PORT=$next_port
}

# Two loopback addresses that no socket uses (the softrdma devices bind UDP 4791 on them).
pick_addrs() {
  local used x picked=()
  used=" $(ss -Hantu 2>/dev/null | awk '{ a = $5; sub(/:[^:]*$/, "", a); printf "%s ", a }') "
  for ((x = 150; x < 250 && ${#picked[@]} < 2; x++)); do
    [[ $used == *" 127.0.0.$x "* ]] || picked+=("127.0.0.$x")
  done
  SA=${SERVER_ADDR:-${picked[0]:-127.0.0.2}}
  CA=${CLIENT_ADDR:-${picked[1]:-127.0.0.3}}
}
pick_addrs

# pair TAG PORT SERVER_CMD...: runs the server, waits until it listens on TCP PORT, runs the client
# (array `client`), waits for both. Sets CLOG (client output) and PAIR_CPU (user+sys of both sides,
# empty if unknown). Returns 0 when both exited 0.
pair() {
  local tag=$1 port=$2
  shift 2
  local slog=$logs/$tag.server.log scpu=$work/$tag.server.cpu ccpu=$work/$tag.client.cpu i
  CLOG=$logs/$tag.client.log
  PAIR_CPU=""
  start_timed "$slog" "$scpu" "$@"
  server_pid=$STARTED
  for ((i = 0; i < 300; i++)); do
    tcp_listening "$port" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! tcp_listening "$port"; then
    stop_group "$server_pid"
    server_pid=""
    log "FAILED $tag: the server never listened on port $port (log: $slog)"
    tail -n 5 "$slog" | sed 's/^/    /' >&2
    failures=$((failures + 1))
    return 1
  fi
  start_timed "$CLOG" "$ccpu" "${client[@]}"
  client_pid=$STARTED
  wait "$client_pid"
  local crc=$?
  client_pid=""
  for ((i = 0; i < 100; i++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.05
  done
  local src=0
  if kill -0 "$server_pid" 2>/dev/null; then
    stop_group "$server_pid"
    src=124
  else
    wait "$server_pid"
    src=$?
  fi
  server_pid=""
  if ((crc != 0 || src != 0)); then
    log "FAILED $tag: client exit $crc, server exit $src (124 = timeout or did not finish); logs: $logs/$tag.*"
    tail -n 5 "$CLOG" | sed 's/^/    /' >&2
    failures=$((failures + 1))
    return 1
  fi
  local c1 c2
  c1=$(cpu_of "$scpu")
  c2=$(cpu_of "$ccpu")
  [[ -n $c1 && -n $c2 ]] && PAIR_CPU=$(awk -v a="$c1" -v b="$c2" 'BEGIN { printf "%.4f", a + b }')
  return 0
}

# record TRANSPORT TEST BYTES REP VALUE [CPU MOVED]
record() {
  [[ -n $5 ]] || return 0
  echo "$1,$2,$3,$4,$5,${6:-},${7:-}" >>"$raw"
}
is_num() { [[ $1 =~ ^[0-9]+([.][0-9]*)?([eE][-+]?[0-9]+)?$ ]]; }

# ---- iteration counts (the same for every RDMA contender) ------------------------------------
lat_iters() {
  local b=$1 f=1
  [[ $quick == 1 ]] && f=5
  if ((b <= 4096)); then echo $((5000 / f))
  elif ((b <= 65536)); then echo $((1000 / f))
  else echo $((200 / f)); fi
}
bw_iters() {  # about 256 MiB (QUICK: 32 MiB) per run, 64..100000 operations
  local b=$1 budget=$((256 << 20)) max=100000
  [[ $quick == 1 ]] && budget=$((32 << 20)) && max=20000
  local n=$((budget / b))
  ((n > max)) && n=$max
  ((n < 64)) && n=64
  echo "$n"
}

have() { command -v "$1" >/dev/null 2>&1; }
have_softrdma=0; [[ -x $softrdma ]] && have_softrdma=1
have_perftest=0; [[ $have_softrdma == 1 ]] && have ib_send_lat && have ib_write_bw && have ib_read_bw && have_perftest=1
have_ucx=0; have ucx_perftest && have_ucx=1
have_iperf=0; have iperf3 && have_iperf=1
have_tcp_pp=0; [[ -x $tcp_pp ]] && have_tcp_pp=1
have_memcpy=0; [[ -x $memcpy_bw ]] && have_memcpy=1
have_c2c=0; [[ -x $core_to_core ]] && have_c2c=1
have_udp_stream=0; [[ -x $udp_stream ]] && have_udp_stream=1
have_gnuplot=0; have gnuplot && have_gnuplot=1
[[ $have_softrdma == 1 ]] || log "no softrdma binary at $softrdma (build it, or set SOFTRDMA=): softrdma and perftest columns n/a"
[[ $have_perftest == 1 || $have_softrdma == 0 ]] || log "perftest (ib_send_lat, ib_write_bw, ib_read_bw) not installed: column n/a"
[[ $have_ucx == 1 ]] || log "ucx_perftest not installed (Debian package ucx-utils): UCX columns n/a"
[[ $have_iperf == 1 ]] || log "iperf3 not installed: TCP bandwidth n/a"
[[ $have_tcp_pp == 1 ]] || log "no $tcp_pp (cmake --build $build --target tcp_pingpong): TCP latency n/a"
[[ $have_memcpy == 1 ]] || log "no $memcpy_bw (cmake --build $build --target memcpy_bw): memcpy n/a"
[[ $have_c2c == 1 ]] || log "no $core_to_core (cmake --build $build --target core_to_core): two-core ring n/a"
[[ $have_udp_stream == 1 ]] || log "no $udp_stream (cmake --build $build --target udp_stream): bare UDP stream n/a"

# ---- softrdma perf -----------------------------------------------------------------------------
# sr TEST BYTES REP ITERS PERF_OPTIONS...
sr() {
  local test=$1 b=$2 rep=$3 n=$4
  shift 4
  free_port
  local csv=$work/sr.$test.$b.$rep.csv
  client=("$softrdma" perf --client "$SA" --addr "$CA" --port "$PORT" --size "$b" --iters "$n" --csv "$csv" "${perf_extra[@]}" "$@")
  pair "softrdma.$test.$b.r$rep" "$PORT" "$softrdma" perf --server --addr "$SA" --port "$PORT" "${perf_extra[@]}" || return
  [[ -f $csv ]] || { log "softrdma perf wrote no CSV ($CLOG)"; return; }
  local row
  row=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    NR == 2 { printf "%s %s %s %s %s", $(h["iterations"]), $(h["MBps"]), $(h["Mpps"]), $(h["lat_median_us"]), $(h["bytes"]) }' "$csv")
  local it mbps mpps lat bytes
  read -r it mbps mpps lat bytes <<<"$row"
  case $test in
    send_lat) record softrdma "$test" "$b" "$rep" "$lat" ;;
    write_rate) record softrdma "$test" "$b" "$rep" "$mpps" ;;
    *) record softrdma "$test" "$b" "$rep" "$mbps" "$PAIR_CPU" "$((bytes * it))" ;;
  esac
}

# ---- perftest on the drop-in -------------------------------------------------------------------
# pt TEST BYTES REP ITERS PROGRAM
pt() {
  local test=$1 b=$2 rep=$3 n=$4 prog=$5
  free_port
  local opts=(-d softrdma0 -x 0 -F -p "$PORT" -s "$b" -n "$n")
  client=("$softrdma" run --addr "$CA" -- "$prog" "${opts[@]}" "$SA")
  pair "perftest.$test.$b.r$rep" "$PORT" "$softrdma" run --addr "$SA" -- "$prog" "${opts[@]}" || return
  # First result row after the "#bytes" header. bw: bytes iters peak avg[MiB/s] Mpps;
  # lat: bytes iters t_min t_max t_typical t_avg ...
  local f
  read -r -a f <<<"$(awk '/#bytes/ { hdr = 1; next } hdr && $1 ~ /^[0-9]+$/ && NF >= 5 { print; exit }' "$CLOG")"
  if ((${#f[@]} < 5)); then
    log "no result row in $CLOG"
    return
  fi
  case $test in
    send_lat) record perftest "$test" "$b" "$rep" "${f[4]}" ;;
    write_rate) record perftest "$test" "$b" "$rep" "${f[4]}" ;;
    *) record perftest "$test" "$b" "$rep" "$(awk -v v="${f[3]}" 'BEGIN { printf "%.3f", v * 1.048576 }')" \
      "$PAIR_CPU" "$((b * f[1]))" ;;
  esac
  # ib_write_bw -s 8 is the message-rate figure too
  [[ $test == write_bw && $b == 8 ]] && record perftest write_rate 8 "$rep" "${f[4]}"
}

# ---- UCX ---------------------------------------------------------------------------------------
# ucx TRANSPORT(ucx_tcp|ucx_sm) TEST BYTES REP ITERS UCX_TEST
ucx() {
  local tr=$1 test=$2 b=$3 rep=$4 n=$5 t=$6
  local envs=(env UCX_WARN_UNUSED_ENV_VARS=n)
  if [[ $tr == ucx_tcp ]]; then
    envs+=(UCX_TLS=tcp UCX_NET_DEVICES=lo)
  else
    envs+=(UCX_TLS="$ucx_sm_tls")
  fi
  local w=$((n / 10))
  ((w < 10)) && w=10
  ((w > 1000)) && w=1000
  free_port
  client=("${envs[@]}" ucx_perftest "$SA" -p "$PORT" -t "$t" -s "$b" -n "$n" -w "$w" -v)
  pair "$tr.$test.$b.r$rep" "$PORT" "${envs[@]}" ucx_perftest -p "$PORT" || return
  # -v: CSV rows "iterations,lat50,lat_avg,lat_overall,bw_avg,bw_overall[MiB/s],rate_avg,rate_overall";
  # the final one has all the iterations.
  local f
  IFS=, read -r -a f <<<"$(sed 's/^\[thread [0-9]*\]//' "$CLOG" | awk -F, -v n="$n" '$1 == n && NF >= 8 { row = $0 } END { print row }')"
  if ((${#f[@]} < 8)); then
    log "no final result row in $CLOG"
    return
  fi
  case $test in
    send_lat) record "$tr" "$test" "$b" "$rep" "${f[1]}" ;;
    *) record "$tr" "$test" "$b" "$rep" "$(awk -v v="${f[5]}" 'BEGIN { printf "%.3f", v * 1.048576 }')" \
      "$PAIR_CPU" "$((b * (n + w)))" ;;
  esac
  [[ $test == write_bw && $b == 8 ]] && record "$tr" write_rate 8 "$rep" "$(awk -v v="${f[7]}" 'BEGIN { printf "%.4f", v / 1e6 }')"
}

# ---- TCP ---------------------------------------------------------------------------------------
iperf_seconds=${IPERF_SECONDS:-3}
[[ $quick == 1 ]] && iperf_seconds=${IPERF_SECONDS:-1}
# iperf BYTES REP: a stream of BYTES-byte writes for iperf_seconds
iperf() {
  local b=$1 rep=$2
  free_port
  client=(iperf3 -c "$SA" -B "$CA" -p "$PORT" -l "$b" -t "$iperf_seconds" -J)
  pair "tcp.write_bw.$b.r$rep" "$PORT" iperf3 -s -B "$SA" -p "$PORT" -1 || return
  local bytes bps
  read -r bytes bps <<<"$(awk '/"sum_received"/ { f = 1 } f && /"bytes"/ { gsub(/[^0-9.eE+]/, "", $2); by = $2 }
      f && /"bits_per_second"/ { gsub(/[^0-9.eE+]/, "", $2); print by, $2; exit }' "$CLOG")"
  is_num "${bps:-}" || { log "no sum_received in $CLOG"; return; }
  local mbps
  mbps=$(awk -v v="$bps" 'BEGIN { printf "%.3f", v / 8e6 }')
  record tcp write_bw "$b" "$rep" "$mbps" "$PAIR_CPU" "$bytes"
  [[ $b == 8 ]] && record tcp write_rate 8 "$rep" "$(awk -v v="$mbps" 'BEGIN { printf "%.4f", v / 8 }')"
}
# tcp_lat BYTES REP: tcp_pingpong, busy-polled (tcp) and blocking (tcp_block)
tcp_lat() {
  local b=$1 rep=$2 n
  n=$(lat_iters "$b")
  local logf=$logs/tcp.send_lat.$b.r$rep.log
  start_timed "$logf" "$work/tcp_pp.cpu" "$tcp_pp" --size "$b" --iters "$n" --stream "" --addr "$SA"
  client_pid=$STARTED
  wait "$client_pid"
  local rc=$?
  client_pid=""
  if ((rc != 0)); then
    log "FAILED tcp_pingpong --size $b (exit $rc; $logf)"
    failures=$((failures + 1))
    return
  fi
  record tcp send_lat "$b" "$rep" "$(awk '$1 == "tcp_lat_spin_median_us" { print $2 }' "$logf")"
  record tcp_block send_lat "$b" "$rep" "$(awk '$1 == "tcp_lat_median_us" { print $2 }' "$logf")"
}

# ---- memcpy and the two-core probe: one process each -------------------------------------------
# run_probe LOGF NAME CMD...: CMD to LOGF under the timeout; non-zero (and a failure logged) if it failed
run_probe() {
  local logf=$1 name=$2
  shift 2
  start_timed "$logf" "$work/$name.cpu" "$@"
  client_pid=$STARTED
  wait "$client_pid"
  local rc=$?
  client_pid=""
  if ((rc != 0)); then
    log "FAILED $name (exit $rc; $logf)"
    failures=$((failures + 1))
  fi
  return "$rc"
}

memcpy_run() {
  local rep=$1 list
  list=$(IFS=,; echo "${sizes[*]},268435456")
  local logf=$logs/memcpy.r$rep.log secs=0.3
  [[ $quick == 1 ]] && secs=0.1
  run_probe "$logf" memcpy_bw "$memcpy_bw" --sizes "$list" --seconds "$secs" || return
  # bytes iterations seconds GBps; CPU = the copy time itself
  while read -r b it secs gbps; do
    [[ $b =~ ^[0-9]+$ ]] || continue
    record memcpy write_bw "$b" "$rep" "$(awk -v v="$gbps" 'BEGIN { printf "%.1f", v * 1000 }')" "$secs" "$((b * it))"
  done <"$logf"
}

# udp_stream_run REP: the bare UDP stream for every size of at least one 4 KiB frame, as long as iperf3
udp_stream_run() {
  local rep=$1 b val
  for b in "${sizes[@]}"; do
    ((b >= 4096)) || continue
    local logf=$logs/udp_stream.$b.r$rep.log
    run_probe "$logf" udp_stream "$udp_stream" --message "$b" --seconds "$iperf_seconds" --addr "$SA" || continue
    val=$(awk '$1 == "udp_stream_MBps" { print $2 }' "$logf")
    is_num "${val:-}" && record udp write_bw "$b" "$rep" "$val"
  done
}

# c2c_run REP WHEN: rows "rtt 64 ROUNDS SECONDS NS" and "ring BYTES MESSAGES SECONDS GBps"
c2c_run() {
  local rep=$1 when=$2 list
  list=$(IFS=,; echo "${sizes[*]}")
  local logf=$logs/core_to_core.r$rep.$when.log secs=0.3
  [[ $quick == 1 ]] && secs=0.1
  run_probe "$logf" core_to_core "$core_to_core" --sizes "$list" --seconds "$secs" || return
  local test b val
  while read -r test b _ _ val; do
    case $test in
      rtt) record host c2c_rtt_ns 64 "$rep.$when" "$val" ;;
      ring) record ring write_bw "$b" "$rep.$when" "$(awk -v v="$val" 'BEGIN { printf "%.1f", v * 1000 }')" ;;
    esac
  done <"$logf"
}

# ---- the runs ----------------------------------------------------------------------------------
start=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "sizes: ${sizes[*]}; REPEAT=$repeat; server $SA, client $CA; output in $out"
for ((rep = 1; rep <= repeat && report_only == 0; rep++)); do
  log "---- repetition $rep of $repeat"
  if [[ $have_memcpy == 1 ]]; then
    log "memcpy_bw"
    memcpy_run "$rep"
  fi
  if [[ $have_c2c == 1 ]]; then
    log "core_to_core (start of the repetition)"
    c2c_run "$rep" start
  fi
  if [[ $have_softrdma == 1 ]]; then
    log "softrdma perf (two processes)"
    for b in "${sizes[@]}"; do sr send_lat "$b" "$rep" "$(lat_iters "$b")" --op send --mode lat; done
    for b in "${sizes[@]}"; do sr write_bw "$b" "$rep" "$(bw_iters "$b")" --op write --mode bw; done
    for b in "${sizes[@]}"; do sr read_bw "$b" "$rep" "$(bw_iters "$b")" --op read --mode bw; done
    sr write_rate 8 "$rep" "$(bw_iters 8)" --op write --mode rate --window 256
  fi
  if [[ $have_perftest == 1 ]]; then
    log "perftest on the drop-in libibverbs"
    for b in "${sizes[@]}"; do pt send_lat "$b" "$rep" "$(lat_iters "$b")" ib_send_lat; done
    for b in "${sizes[@]}"; do pt write_bw "$b" "$rep" "$(bw_iters "$b")" ib_write_bw; done
    [[ " ${sizes[*]} " == *" 8 "* ]] || pt write_rate 8 "$rep" "$(bw_iters 8)" ib_write_bw
    for b in "${sizes[@]}"; do pt read_bw "$b" "$rep" "$(bw_iters "$b")" ib_read_bw; done
  fi
  if [[ $have_ucx == 1 ]]; then
    for tr in ucx_tcp ucx_sm; do
      log "ucx_perftest, $tr"
      mult=1
      [[ $tr == ucx_sm ]] && mult=10  # shared memory is fast: ten times the bandwidth operations
      for b in "${sizes[@]}"; do ucx "$tr" send_lat "$b" "$rep" "$(lat_iters "$b")" tag_lat; done
      for b in "${sizes[@]}"; do ucx "$tr" write_bw "$b" "$rep" "$(($(bw_iters "$b") * mult))" ucp_put_bw; done
      [[ " ${sizes[*]} " == *" 8 "* ]] || ucx "$tr" write_bw 8 "$rep" "$(($(bw_iters 8) * mult))" ucp_put_bw
      for b in "${sizes[@]}"; do
        n=$(($(bw_iters "$b") * mult))
        # UCP get over TCP is emulated with active messages, about 1 ms per small get here: cap it
        cap=2000
        [[ $quick == 1 ]] && cap=300
        [[ $tr == ucx_tcp ]] && ((n > cap)) && n=$cap
        ucx "$tr" read_bw "$b" "$rep" "$n" ucp_get
      done
    done
  fi
  if [[ $have_tcp_pp == 1 ]]; then
    log "tcp_pingpong"
    for b in "${sizes[@]}"; do tcp_lat "$b" "$rep"; done
  fi
  if [[ $have_iperf == 1 ]]; then
    log "iperf3 (${iperf_seconds} s per size)"
    for b in "${sizes[@]}"; do iperf "$b" "$rep"; done
    [[ " ${sizes[*]} " == *" 8 "* ]] || iperf 8 "$rep"
  fi
  if [[ $have_udp_stream == 1 ]]; then
    log "udp_stream (${iperf_seconds} s per size)"
    udp_stream_run "$rep"
  fi
  if [[ $have_c2c == 1 ]]; then
    log "core_to_core (end of the repetition)"
    c2c_run "$rep" end
  fi
done
end=$(date +%s)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- medians -----------------------------------------------------------------------------------
# medians.csv: transport,test,bytes,median,min,max,runs,cpu_s_per_GB (median over the runs)
awk -F, '
  function median(arr, m,   i, j, t) {
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return (m % 2) ? arr[(m + 1) / 2] : (arr[m / 2] + arr[m / 2 + 1]) / 2
  }
  NR == 1 { next }
  {
    k = $1 "," $2 "," $3
    if (!(k in n)) keys[++nk] = k
    v[k, ++n[k]] = $5 + 0
    if ($6 != "" && $7 + 0 > 0) c[k, ++nc[k]] = $6 / $7 * 1e9
  }
  END {
    print "transport,test,bytes,median,min,max,runs,cpu_s_per_GB"
    for (q = 1; q <= nk; q++) {
      k = keys[q]; m = n[k]
      delete a; for (i = 1; i <= m; i++) a[i] = v[k, i]
      med = median(a, m); lo = a[1]; hi = a[m]
      cpu = ""
      if (nc[k] > 0) { delete a; for (i = 1; i <= nc[k]; i++) a[i] = c[k, i]; cpu = sprintf("%.4g", median(a, nc[k])) }
      printf "%s,%.6g,%.6g,%.6g,%d,%s\n", k, med, lo, hi, m, cpu
    }
  }' "$raw" >"$out/medians.csv"

declare -A MED LO HI CPU
while IFS=, read -r tr test b med lo hi _ cpu; do
  [[ $tr == transport ]] && continue
  MED[$tr,$test,$b]=$med
  LO[$tr,$test,$b]=$lo
  HI[$tr,$test,$b]=$hi
  CPU[$tr,$test,$b]=$cpu
done <"$out/medians.csv"
# tcp_best: the faster of tcp_pingpong's two modes per size (busy polling loses whole scheduler ticks
# at 4 KiB and more when the cores are shared, blocking reads lose the wake-up at 8 B)
for b in "${sizes[@]}"; do
  x=${MED[tcp,send_lat,$b]:-}
  y=${MED[tcp_block,send_lat,$b]:-}
  if [[ -n $y ]] && { [[ -z $x ]] || awk -v x="$x" -v y="$y" 'BEGIN { exit !(y < x) }'; }; then x=$y; fi
  [[ -n $x ]] && MED[tcp_best,send_lat,$b]=$x && LO[tcp_best,send_lat,$b]=$x && HI[tcp_best,send_lat,$b]=$x
done

# num X [PRECISION]: X with PRECISION decimals, or about three significant digits
num() {
  awk -v x="$1" -v p="${2:-}" 'BEGIN {
    if (p != "") { printf "%.*f", p, x; exit }
    ax = x < 0 ? -x : x
    if (ax >= 100) printf "%.0f", x; else if (ax >= 10) printf "%.1f", x; else if (ax >= 1) printf "%.2f", x; else printf "%.3g", x }'
}
# v TRANSPORT TEST BYTES [PRECISION]: the median, formatted, or n/a
v() {
  local x=${MED[$1,$2,$3]:-}
  [[ -n $x ]] && num "$x" "${4:-}" || echo "n/a"
}
# vr TRANSPORT TEST BYTES [PRECISION]: the median and, over several runs, "(min..max)"
vr() {
  local k=$1,$2,$3
  [[ -n ${MED[$k]:-} ]] || { echo "n/a"; return; }
  if [[ ${LO[$k]} == "${HI[$k]}" ]]; then
    num "${MED[$k]}" "${4:-}"
  else
    echo "$(num "${MED[$k]}" "${4:-}") ($(num "${LO[$k]}" "${4:-}")..$(num "${HI[$k]}" "${4:-}"))"
  fi
}
cpu() {
  local x=${CPU[$1,$2,$3]:-}
  [[ -n $x ]] && num "$x" || echo "n/a"
}
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "n/a" || b == "n/a" || a == "" || b == "" || b + 0 == 0) { print "n/a"; exit }
    r = a / b
    if (r >= 10) printf "%.1f", r; else if (r >= 0.1) printf "%.2f", r; else printf "%.2g", r }'
}
# raw median (unformatted) for ratios
m() { echo "${MED[$1,$2,$3]:-n/a}"; }
c() { echo "${CPU[$1,$2,$3]:-n/a}"; }

# ---- plots -------------------------------------------------------------------------------------
# plot NAME TEST YLABEL TITLE TRANSPORT=LABEL...: one line per transport that has data
plots_made=()
plot() {
  local name=$1 test=$2 ylabel=$3 title=$4
  shift 4
  local dat=$out/$name.dat cols=() labels=() spec tr lab b
  for spec in "$@"; do
    tr=${spec%%=*}
    lab=${spec#*=}
    for b in "${sizes[@]}"; do
      if [[ -n ${MED[$tr,$test,$b]:-} ]]; then
        cols+=("$tr")
        labels+=("$lab")
        break
      fi
    done
  done
  ((${#cols[@]})) || return 0
  {
    printf 'bytes'
    for lab in "${labels[@]}"; do printf ' "%s"' "$lab"; done
    echo
    for b in "${sizes[@]}"; do
      printf '%s' "$b"
      for tr in "${cols[@]}"; do printf ' %s' "${MED[$tr,$test,$b]:-NaN}"; done
      echo
    done
  } >"$dat"
  local term="svg size 960,600 dynamic noenhanced font 'sans,12'"
  [[ $plot_format == png ]] && term="pngcairo size 960,600 noenhanced font 'sans,10'"
  local img=$out/$name.$plot_format
  local xt="" s
  for b in "${sizes[@]}"; do
    s=$(human "$b")
    s=${s// B/}
    s=${s// KiB/K}
    s=${s// MiB/M}
    xt+="${xt:+, }\"$s\" $b"
  done
  if timeout 30 gnuplot -e "
      set terminal $term; set output '$img';
      set title '$title'; set xlabel 'message size (bytes)'; set ylabel '$ylabel';
      set logscale xy; set xtics ($xt); set grid; set key outside below;
      set datafile missing 'NaN';
      plot for [i=2:$((${#cols[@]} + 1))] '$dat' using 1:i with linespoints lw 2 pt 7 title columnhead(i)
    " 2>"$logs/gnuplot.$name.log"; then
    plots_made+=("$(basename "$img")")
  else
    log "gnuplot failed for $name (see $logs/gnuplot.$name.log)"
  fi
}
if [[ $have_gnuplot == 1 ]]; then
  plot write_bw write_bw "MB/s (10^6 bytes/s)" "RDMA WRITE bandwidth and equivalents (loopback, median of $repeat)" \
    softrdma="softrdma perf" perftest="ib_write_bw (drop-in)" ucx_tcp="UCX tcp put_bw" ucx_sm="UCX sm put_bw" \
    tcp="iperf3 (TCP)" memcpy="memcpy, 1 core" ring="two-core ring (2 copies)"
  plot read_bw read_bw "MB/s (10^6 bytes/s)" "RDMA READ bandwidth and equivalents (loopback, median of $repeat)" \
    softrdma="softrdma perf" perftest="ib_read_bw (drop-in)" ucx_tcp="UCX tcp ucp_get" ucx_sm="UCX sm ucp_get"
  plot latency send_lat "microseconds (half round trip)" "SEND/RECV ping-pong latency (loopback, median of $repeat)" \
    softrdma="softrdma perf" perftest="ib_send_lat (drop-in)" ucx_tcp="UCX tcp tag_lat" ucx_sm="UCX sm tag_lat" \
    tcp="TCP busy-polled" tcp_block="TCP blocking"
else
  log "gnuplot not installed: no plots"
fi

# ---- report ------------------------------------------------------------------------------------
report=$out/compare.md
{
  echo "# softrdma side by side (bench/compare.sh)"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- CPU: $(awk -F: '/model name/ { sub(/^ /, "", $2); print $2; exit }' /proc/cpuinfo), $(nproc) cores; kernel $(uname -r)"
  if [[ $report_only == 1 ]]; then
    echo "- regenerated from raw.csv (REPORT_ONLY=1): the runs' date, load and failures are not recorded there"
  else
    echo "- load average before / after: $load_before / $load_after; wall time $((end - start)) s; REPEAT=$repeat$([[ $quick == 1 ]] && echo ', QUICK=1'); failed runs: $failures"
  fi
  echo "- tools: $([[ $have_ucx == 1 ]] && ucx_info -v 2>/dev/null | awk '/Version/ { printf "UCX %s", $3 }' || echo 'UCX n/a'), $([[ $have_iperf == 1 ]] && iperf3 -v 2>/dev/null | awk 'NR == 1 { print $1, $2 }' || echo 'iperf3 n/a'), perftest $(dpkg-query -W -f='${Version}' perftest 2>/dev/null || echo n/a); UCX shared memory = UCX_TLS=$ucx_sm_tls"
  if [[ -n ${MED[host,c2c_rtt_ns,64]:-} ]]; then
    echo "- core-to-core round trip (bench/core_to_core, start and end of each repetition), ns: $(awk -F, '$1 == "host" && $2 == "c2c_rtt_ns" { printf "%s%s %s", sep, $4, $5; sep = ", " }' "$raw"). Tens of ns: the two CPUs share a core complex; hundreds: they do not, and same-host figures drop with it (the two-core ring rows show whether the caches were quiet too)"
  fi
  echo "- loopback only: servers on $SA, clients on $CA where the tool can bind (softrdma perf, perftest via \`softrdma run --addr\`, iperf3); UCX's servers listen on every address"
  echo
  echo "Every figure is the median of the runs (REPEAT); ratio = softrdma perf / peer. For latency and CPU cost"
  echo "lower is better (ratio < 1 means softrdma wins); for bandwidth and rate higher is better."
  echo
  echo "## Summary"
  echo
  echo "| figure | softrdma perf | ib_* on drop-in | UCX tcp | UCX sm | TCP | memcpy | ÷ UCX tcp | ÷ UCX sm | ÷ TCP | ÷ memcpy | issue 5 target |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  l8=$(m softrdma send_lat 8)
  echo "| 8 B SEND ping-pong latency, us | $(vr softrdma send_lat 8) | $(v perftest send_lat 8) | $(v ucx_tcp send_lat 8) | $(v ucx_sm send_lat 8) | $(v tcp_best send_lat 8) | | $(ratio "$l8" "$(m ucx_tcp send_lat 8)") | $(ratio "$l8" "$(m ucx_sm send_lat 8)") | $(ratio "$l8" "$(m tcp_best send_lat 8)") | | ≤ 1 vs UCX tcp; ≤ 2 vs UCX sm (same-host link) |"
  for b in 65536 1048576; do
    w=$(m softrdma write_bw "$b")
    tgt="≥ 1 vs UCX tcp and iperf3"
    [[ $b == 65536 ]] && tgt+="; ≥ 1 vs UCX sm (same-host link)"
    [[ $b == 1048576 ]] && tgt+="; ≥ 0.5 vs memcpy (same-host link)"
    echo "| RDMA WRITE bandwidth $(human "$b"), MB/s | $(vr softrdma write_bw "$b") | $(v perftest write_bw "$b") | $(v ucx_tcp write_bw "$b") | $(v ucx_sm write_bw "$b") | $(v tcp write_bw "$b") | $(v memcpy write_bw "$b") | $(ratio "$w" "$(m ucx_tcp write_bw "$b")") | $(ratio "$w" "$(m ucx_sm write_bw "$b")") | $(ratio "$w" "$(m tcp write_bw "$b")") | $(ratio "$w" "$(m memcpy write_bw "$b")") | $tgt |"
  done
  for b in 65536 1048576; do
    r=$(m softrdma read_bw "$b")
    echo "| RDMA READ bandwidth $(human "$b"), MB/s | $(vr softrdma read_bw "$b") | $(v perftest read_bw "$b") | $(v ucx_tcp read_bw "$b") | $(v ucx_sm read_bw "$b") | | | $(ratio "$r" "$(m ucx_tcp read_bw "$b")") | $(ratio "$r" "$(m ucx_sm read_bw "$b")") | | | |"
  done
  rt=$(m softrdma write_rate 8)
  echo "| 8 B RDMA WRITE message rate, M/s | $(vr softrdma write_rate 8 3) | $(v perftest write_rate 8 3) | $(v ucx_tcp write_rate 8 3) | $(v ucx_sm write_rate 8 3) | $(v tcp write_rate 8 3) | | $(ratio "$rt" "$(m ucx_tcp write_rate 8)") | $(ratio "$rt" "$(m ucx_sm write_rate 8)") | $(ratio "$rt" "$(m tcp write_rate 8)") | | reported |"
  for b in 65536 1048576; do
    cs=$(c softrdma write_bw "$b")
    echo "| CPU cost, WRITE $(human "$b"), CPU s per GB | $(cpu softrdma write_bw "$b") | $(cpu perftest write_bw "$b") | $(cpu ucx_tcp write_bw "$b") | $(cpu ucx_sm write_bw "$b") | $(cpu tcp write_bw "$b") | $(cpu memcpy write_bw "$b") | $(ratio "$cs" "$(c ucx_tcp write_bw "$b")") | $(ratio "$cs" "$(c ucx_sm write_bw "$b")") | $(ratio "$cs" "$(c tcp write_bw "$b")") | $(ratio "$cs" "$(c memcpy write_bw "$b")") | reported |"
  done
  echo "| memcpy, 256 MiB (one core), MB/s | | | | | | $(v memcpy write_bw 268435456) | | | | | |"
  echo
  if [[ -n ${MED[ring,write_bw,65536]:-}${MED[ring,write_bw,1048576]:-} ]]; then
    echo "Two-core ring (bench/core_to_core: copied into a ring on one CPU, out of it on the other, the"
    echo "ceiling for a transport whose receiving process writes the data itself), MB/s: 64 KiB"
    echo "$(v ring write_bw 65536), 1 MiB $(v ring write_bw 1048576); softrdma perf ÷ ring: $(ratio "$(m softrdma write_bw 65536)" "$(m ring write_bw 65536)") and $(ratio "$(m softrdma write_bw 1048576)" "$(m ring write_bw 1048576)")."
    echo
  fi
  if [[ -n ${MED[udp,write_bw,65536]:-}${MED[udp,write_bw,1048576]:-} ]]; then
    echo "Bare UDP stream (bench/udp_stream: the messages cut into RoCEv2-sized frames and sent by UDP GSO"
    echo "as the link sends them, with no transport and no ICRC, the ceiling for RoCEv2 over UDP), MB/s:"
    echo "64 KiB $(v udp write_bw 65536), 1 MiB $(v udp write_bw 1048576); softrdma perf ÷ it: $(ratio "$(m softrdma write_bw 65536)" "$(m udp write_bw 65536)") and $(ratio "$(m softrdma write_bw 1048576)" "$(m udp write_bw 1048576)"); iperf3 ÷ it: $(ratio "$(m tcp write_bw 65536)" "$(m udp write_bw 65536)") and $(ratio "$(m tcp write_bw 1048576)" "$(m udp write_bw 1048576)")."
    echo
  fi
  echo "softrdma perf: median (lowest..highest) when REPEAT > 1. TCP latency: the faster of tcp_pingpong's"
  echo "busy-polled and blocking modes. A row whose size is not in SIZES shows n/a."
  echo
  echo "## SEND/RECV ping-pong latency (half round trip, median, microseconds)"
  echo
  echo "softrdma perf \`--op send --mode lat\` | ib_send_lat t_typical | ucx_perftest tag_lat 50th percentile | \`bench/tcp_pingpong\` (TCP_NODELAY, busy-polled and blocking reads)"
  echo
  echo "| size | softrdma perf | ib_send_lat (drop-in) | UCX tcp | UCX sm | TCP busy-polled | TCP blocking | ÷ UCX tcp | ÷ UCX sm | ÷ TCP (faster mode) |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for b in "${sizes[@]}"; do
    s=$(m softrdma send_lat "$b")
    echo "| $(human "$b") | $(v softrdma send_lat "$b") | $(v perftest send_lat "$b") | $(v ucx_tcp send_lat "$b") | $(v ucx_sm send_lat "$b") | $(v tcp send_lat "$b") | $(v tcp_block send_lat "$b") | $(ratio "$s" "$(m ucx_tcp send_lat "$b")") | $(ratio "$s" "$(m ucx_sm send_lat "$b")") | $(ratio "$s" "$(m tcp_best send_lat "$b")") |"
  done
  echo
  echo "## RDMA WRITE bandwidth (MB/s = 10^6 bytes/s, median)"
  echo
  echo "softrdma perf \`--op write --mode bw\` | ib_write_bw BW average | ucx_perftest ucp_put_bw | iperf3 \`-l SIZE\` (a TCP stream of SIZE-byte writes) | memcpy_bw (SIZE-byte copies between two cache-warm buffers, one core) | core_to_core ring (SIZE bytes through a ring between two CPUs, two copies)"
  echo
  echo "| size | softrdma perf | ib_write_bw (drop-in) | UCX tcp | UCX sm | iperf3 | memcpy | two-core ring | ÷ UCX tcp | ÷ UCX sm | ÷ iperf3 | ÷ memcpy | ÷ ring |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for b in "${sizes[@]}"; do
    w=$(m softrdma write_bw "$b")
    echo "| $(human "$b") | $(v softrdma write_bw "$b") | $(v perftest write_bw "$b") | $(v ucx_tcp write_bw "$b") | $(v ucx_sm write_bw "$b") | $(v tcp write_bw "$b") | $(v memcpy write_bw "$b") | $(v ring write_bw "$b") | $(ratio "$w" "$(m ucx_tcp write_bw "$b")") | $(ratio "$w" "$(m ucx_sm write_bw "$b")") | $(ratio "$w" "$(m tcp write_bw "$b")") | $(ratio "$w" "$(m memcpy write_bw "$b")") | $(ratio "$w" "$(m ring write_bw "$b")") |"
  done
  echo
  echo "## RDMA READ bandwidth (MB/s, median)"
  echo
  echo "softrdma perf \`--op read --mode bw\` | ib_read_bw | ucx_perftest ucp_get (over TCP, UCX emulates get with active messages)"
  echo
  echo "| size | softrdma perf | ib_read_bw (drop-in) | UCX tcp | UCX sm | ÷ UCX tcp | ÷ UCX sm |"
  echo "|---|---|---|---|---|---|---|"
  for b in "${sizes[@]}"; do
    r=$(m softrdma read_bw "$b")
    echo "| $(human "$b") | $(v softrdma read_bw "$b") | $(v perftest read_bw "$b") | $(v ucx_tcp read_bw "$b") | $(v ucx_sm read_bw "$b") | $(ratio "$r" "$(m ucx_tcp read_bw "$b")") | $(ratio "$r" "$(m ucx_sm read_bw "$b")") |"
  done
  echo
  echo "## CPU cost (user + system CPU seconds of both processes per GB moved, WRITE bandwidth runs, median)"
  echo
  echo "Includes each process's start-up and connection set-up; softrdma, perftest and UCX poll (a busy core per side"
  echo "whatever the load), iperf3 blocks. memcpy: its copy time per GB, the floor for one copy."
  echo
  echo "| size | softrdma perf | ib_write_bw (drop-in) | UCX tcp | UCX sm | iperf3 | memcpy | ÷ UCX tcp | ÷ UCX sm | ÷ iperf3 |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for b in "${sizes[@]}"; do
    cs=$(c softrdma write_bw "$b")
    echo "| $(human "$b") | $(cpu softrdma write_bw "$b") | $(cpu perftest write_bw "$b") | $(cpu ucx_tcp write_bw "$b") | $(cpu ucx_sm write_bw "$b") | $(cpu tcp write_bw "$b") | $(cpu memcpy write_bw "$b") | $(ratio "$cs" "$(c ucx_tcp write_bw "$b")") | $(ratio "$cs" "$(c ucx_sm write_bw "$b")") | $(ratio "$cs" "$(c tcp write_bw "$b")") |"
  done
  echo
  echo "## How each contender ran"
  echo
  echo "- softrdma perf: \`softrdma perf --server --addr $SA --port P\` and \`softrdma perf --client $SA --addr $CA --port P --size S --iters N --op send|write|read --mode lat|bw\`; the rate row \`--op write --mode rate --size 8 --window 256\` (unsignaled, one completion signaled per 64)"
  echo "- perftest: \`softrdma run --addr $SA -- PROG -d softrdma0 -x 0 -F -p P -s S -n N\` and the same with \`--addr $CA\` and the server address; the rate row is ib_write_bw -s 8"
  echo "- UCX: \`ucx_perftest -p P\` and \`ucx_perftest $SA -p P -t TEST -s S -n N -w N/10 -v\` with UCX_TLS=tcp UCX_NET_DEVICES=lo, or UCX_TLS=$ucx_sm_tls; tests tag_lat, ucp_put_bw, ucp_get; over shared memory the bandwidth runs have ten times the operations"
  echo "- TCP: \`iperf3 -s -B $SA -1\` and \`iperf3 -c $SA -B $CA -l S -t $iperf_seconds\`; \`tcp_pingpong --size S --iters N --addr $SA\`"
  echo "- operations per run: latency $(lat_iters 8) samples up to 4 KiB, $(lat_iters 65536) at 64 KiB, $(lat_iters 1048576) at 1 MiB; bandwidth and rate about $([[ $quick == 1 ]] && echo 32 || echo 256) MiB per run, 64..$(bw_iters 8) operations"
  if ((${#plots_made[@]})); then
    echo
    echo "Plots: $(printf '%s ' "${plots_made[@]}")(data in the .dat files beside them)."
  fi
} >"$report"

cat "$report"
log "report: $report; raw runs: $raw; logs: $logs; $failures failed run(s)"
exit 0
