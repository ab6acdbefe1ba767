#!/usr/bin/env bash
# Runs the softrdma performance suite and writes a markdown report (about 1-2 minutes).
#
#   bench/run.sh [BUILD_DIR] [OUT.md]        defaults: build, BUILD_DIR/perf-results.md
#
# What runs, all over loopback on this machine, one process per tool invocation:
#   softrdma perf --local   latency (SEND/WRITE ping-pong, READ/atomic round trips), WRITE/READ/SEND
#                           bandwidth sweeps and the small-message rate, each with a TCP baseline
#                           over the same run's TCP connection (--tcp-baseline)
#   tcp_pingpong            a stand-alone TCP ping-pong and stream (no softrdma code involved)
#   iperf3                  TCP stream for 5 s (if installed)
#   bench_*                 micro-benchmarks (ICRC, parse, MR check, CQ), short runs
# Environment: SOFTRDMA=path/to/softrdma, REPEAT=N (runs per measurement, median reported; default 3),
# QUICK=1 (fewer sizes, one run each), PLOTS=1 (SVGs beside the report).
set -uo pipefail

# BOOST=1: on a machine shared with other work, run in a scheduler autogroup of our own at nice
# -20 (needs root); with autogroups, plain `nice` does not help against other sessions.
if [[ ${BOOST:-0} == 1 && -z ${SOFTRDMA_BOOSTED:-} ]]; then
  exec setsid -w env SOFTRDMA_BOOSTED=1 bash -c \
    'echo -20 >/proc/self/autogroup 2>/dev/null || echo "[run.sh] BOOST: cannot renice the autogroup" >&2; exec "$0" "$@"' \
    "$0" "$@"
fi

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
out=${2:-$build/perf-results.md}
softrdma=${SOFTRDMA:-$build/src/tools/softrdma}
tcp=$build/bench/tcp_pingpong
work=$(mktemp -d /tmp/softrdma-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [[ ! -x $softrdma ]]; then
  echo "run.sh: $softrdma not found (build first, or set SOFTRDMA=)" >&2
  exit 1
fi
quick=${QUICK:-0}
plots=${PLOTS:-0}
repeat=${REPEAT:-3}
sweep="8,64,1K,4K,64K,1M"
[[ $quick == 1 ]] && sweep="8,4K,64K" && repeat=1

log() { echo "[run.sh] $*" >&2; }

# perf NAME KEY ARGS...: `softrdma perf --local ARGS` REPEAT times, bounded; each run's CSV goes to
# $work/NAME.rK.csv and $work/NAME.csv gets, per size, the row with the median KEY column.
perf() {
  local name=$1 key=$2
  shift 2
  local extra=()
  [[ $plots == 1 ]] && extra+=(--plot "$(dirname "$out")/$name.svg")
  for ((k = 1; k <= repeat; k++)); do
    log "softrdma perf --local $* ($k/$repeat)"
    if ! timeout 90 "$softrdma" perf --local --csv "$work/$name.r$k.csv" "${extra[@]}" "$@" >"$work/$name.txt" 2>&1; then
      log "FAILED: softrdma perf --local $* (output follows)"
      cat "$work/$name.txt" >&2
      echo "FAILED" >"$work/$name.failed"
      rm -f "$work/$name.r$k.csv"
    fi
  done
  ls "$work/$name".r*.csv >/dev/null 2>&1 || return 0
  awk -F, -v key="$key" '
    FNR == 1 { if (!hdr) { print; hdr = 1 } for (i = 1; i <= NF; i++) h[$i] = i; next }
    {
      b = $3; m = ++n[b]; row[b, m] = $0; val[b, m] = $(h[key]) + 0
      if (!(b in seen)) { seen[b] = 1; sizes[++ns] = b }
    }
    END {
      for (s = 1; s <= ns; s++) {
        b = sizes[s]; m = n[b]
        for (i = 1; i <= m; i++) idx[i] = i
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (val[b, idx[j]] < val[b, idx[i]]) { t = idx[i]; idx[i] = idx[j]; idx[j] = t }
        print row[b, idx[int((m + 1) / 2)]] "," val[b, idx[1]] "," val[b, idx[m]] "," m
      }
    }' "$work/$name".r*.csv | sed '1s/$/,key_min,key_max,runs/' >"$work/$name.csv"
}

# col NAME BYTES FIELD: a field of the CSV row with that size (header names as in the CSV).
col() {
  local f=$work/$1.csv
  [[ -f $f ]] || { echo "n/a"; return; }
  awk -F, -v b="$2" -v want="$3" 'NR==1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $3 == b { printf "%s", $(h[want]); exit }' "$f"
}

fmt() { awk -v v="$1" -v p="${2:-2}" 'BEGIN { if (v == "" || v == "n/a") print "n/a"; else printf "%.*f", p, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }

start=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- softrdma perf --------------------------------------------------------------------------
perf send_lat lat_median_us --op send --mode lat --size 8 --tcp-baseline
perf write_lat lat_median_us --op write --mode lat --size 8
perf read_lat lat_median_us --op read --mode lat --size 8
perf atomic_lat lat_median_us --op atomic --mode lat
perf write_bw MBps --op write --mode bw --sizes "$sweep" --tcp-baseline
perf read_bw MBps --op read --mode bw --sizes 4K,64K
perf send_bw MBps --op send --mode bw --sizes 4K,64K
perf atomic_bw Mpps --op atomic --mode bw
perf write_rate Mpps --op write --mode rate --size 8 --window 256 --tcp-baseline
perf send_rate Mpps --op send --mode rate --size 8 --window 256
[[ $quick == 1 ]] || perf write_rate_2qp Mpps --op write --mode rate --size 8 --window 256 --qps 2
[[ $quick == 1 ]] || perf write_lat_sweep lat_median_us --op write --mode lat --sizes "$sweep"

# ---- TCP baselines --------------------------------------------------------------------------
tcp_ok=0
if [[ -x $tcp ]]; then
  log "tcp_pingpong"
  timeout 60 "$tcp" --size 8 --iters 20000 --stream 4096,65536 --bytes $((1 << 30)) >"$work/tcp.txt" 2>&1 && tcp_ok=1
fi
tcpv() { [[ $tcp_ok == 1 ]] && awk -v k="$1" '$1 == k { print $2 }' "$work/tcp.txt" || echo "n/a"; }

iperf="n/a"
if command -v iperf3 >/dev/null; then
  log "iperf3 (5 s)"
  port=$((20000 + RANDOM % 20000))
  iperf3 -s -B 127.0.0.1 -p "$port" -1 >/dev/null 2>&1 &
  srv=$!
  sleep 0.5
  if timeout 20 iperf3 -c 127.0.0.1 -p "$port" -t 5 -f m >"$work/iperf.txt" 2>&1; then
    iperf=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) / 1000 }' "$work/iperf.txt")
  fi
  kill "$srv" 2>/dev/null
  wait "$srv" 2>/dev/null
fi

# ---- micro-benchmarks -----------------------------------------------------------------------
micro=""
for b in bench_icrc bench_parse bench_mr bench_cq; do
  [[ -x $build/bench/$b ]] || continue
  log "$b"
  timeout 60 "$build/bench/$b" --benchmark_min_time=0.1 --benchmark_format=csv >"$work/$b.csv" 2>/dev/null || continue
  micro+=$(awk -F, 'NR > 1 && $1 ~ /^"BM_/ {
      gsub(/"/, "", $1); cpu = $4; unit = $5; gsub(/"/, "", unit)
      extra = ""
      if ($6 != "") extra = sprintf("%.2f GB/s", $6 / 1e9)
      else if ($7 != "") extra = sprintf("%.1f M/s", $7 / 1e6)
      printf "| %s | %.1f %s | %s |\n", $1, cpu, unit, extra }' "$work/$b.csv")
  micro+=$'\n'
done

end=$(date +%s)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- report ---------------------------------------------------------------------------------
sl_med=$(col send_lat 8 lat_median_us); sl_p99=$(col send_lat 8 lat_p99_us)
tl_med=$(col send_lat 8 tcp_ref); tl_p99=$(col send_lat 8 tcp_p99_us)
wl_med=$(col write_lat 8 lat_median_us); wl_p99=$(col write_lat 8 lat_p99_us)
rl_med=$(col read_lat 8 lat_median_us); rl_p99=$(col read_lat 8 lat_p99_us)
al_med=$(col atomic_lat 8 lat_median_us); al_p99=$(col atomic_lat 8 lat_p99_us)
w4=$(col write_bw 4096 MBps); w4t=$(col write_bw 4096 tcp_ref)
w64=$(col write_bw 65536 MBps); w64t=$(col write_bw 65536 tcp_ref)
r4=$(col read_bw 4096 MBps); r64=$(col read_bw 65536 MBps)
s4=$(col send_bw 4096 MBps); s64=$(col send_bw 65536 MBps)
ab=$(col atomic_bw 8 Mpps)
rate=$(col write_rate 8 Mpps); rate_t=$(col write_rate 8 tcp_ref)
srate=$(col send_rate 8 Mpps)
rate2=$(col write_rate_2qp 8 Mpps)
rtt_tcp=$(awk -v m="$tl_med" 'BEGIN { if (m == "" || m == "n/a") print "n/a"; else printf "%.2f", 2 * m }')

{
  echo "# softrdma performance run"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "- CPU: $(awk -F: '/model name/ { sub(/^ /, "", $2); print $2; exit }' /proc/cpuinfo), $(nproc) cores; kernel $(uname -r)"
  echo "- load average before / after: $load_before / $load_after; wall time $((end - start)) s; scheduling: $(cat /proc/self/autogroup 2>/dev/null || echo default)"
  echo "- all runs over loopback; \`softrdma perf --local\` runs both ends in one process (2 devices, 2 polling threads)"
  echo
  echo "## Summary (same run; ratio = softrdma / TCP)"
  echo
  echo "TCP column: \`softrdma perf --tcp-baseline\` (the same size over the session's TCP connection, both ends"
  echo "busy-polling, like the RDMA side) unless the row says otherwise; latency rows are medians of $repeat runs."
  echo
  echo "| figure | softrdma | TCP | ratio |"
  echo "|---|---|---|---|"
  echo "| 8 B SEND ping-pong latency, median (p99), half round trip | $(fmt "$sl_med") us ($(fmt "$sl_p99") us) | $(fmt "$tl_med") us ($(fmt "$tl_p99") us) | $(ratio "$sl_med" "$tl_med") |"
  echo "| 8 B RDMA WRITE ping-pong latency, median (p99), half round trip | $(fmt "$wl_med") us ($(fmt "$wl_p99") us) | $(fmt "$tl_med") us | $(ratio "$wl_med" "$tl_med") |"
  echo "| 8 B RDMA READ round trip, median (p99) | $(fmt "$rl_med") us ($(fmt "$rl_p99") us) | $rtt_tcp us (TCP RTT) | $(ratio "$rl_med" "$rtt_tcp") |"
  echo "| 8 B fetch-and-add round trip, median (p99) | $(fmt "$al_med") us ($(fmt "$al_p99") us) | $rtt_tcp us (TCP RTT) | $(ratio "$al_med" "$rtt_tcp") |"
  echo "| RDMA WRITE bandwidth, 4 KiB messages | $(fmt "$w4" 1) MB/s | $(fmt "$w4t" 1) MB/s (4 KiB writes) | $(ratio "$w4" "$w4t") |"
  echo "| RDMA WRITE bandwidth, 64 KiB messages | $(fmt "$w64" 1) MB/s | $(fmt "$w64t" 1) MB/s (64 KiB writes) | $(ratio "$w64" "$w64t") |"
  echo "| RDMA READ bandwidth, 4 KiB / 64 KiB | $(fmt "$r4" 1) / $(fmt "$r64" 1) MB/s | | |"
  echo "| SEND bandwidth, 4 KiB / 64 KiB | $(fmt "$s4" 1) / $(fmt "$s64" 1) MB/s | | |"
  echo "| small-message rate, 8 B RDMA WRITE, 1 QP | $(fmt "$rate" 3) Mpps | $(fmt "$rate_t" 3) M writes/s (8 B) | $(ratio "$rate" "$rate_t") |"
  echo "| small-message rate, 8 B SEND, 1 QP | $(fmt "$srate" 3) Mpps | | |"
  echo "| small-message rate, 8 B RDMA WRITE, 2 QPs | $(fmt "$rate2" 3) Mpps | | |"
  echo "| fetch-and-add rate (16 outstanding) | $(fmt "$ab" 3) Mops/s | | |"
  echo "| tcp_pingpong: 8 B latency median (p99), blocking reads | | $(tcpv tcp_lat_median_us) us ($(tcpv tcp_lat_p99_us) us) | |"
  echo "| tcp_pingpong: 8 B latency median (p99), busy-polled reads | | $(tcpv tcp_lat_spin_median_us) us ($(tcpv tcp_lat_spin_p99_us) us) | |"
  echo "| tcp_pingpong: stream 4 KiB / 64 KiB writes | | $(tcpv tcp_stream_4096_MBps) / $(tcpv tcp_stream_65536_MBps) MB/s | |"
  echo "| iperf3 -c 127.0.0.1 -t 5 | | $iperf Gb/s | |"
  echo
  echo "## softrdma perf tables (median of $repeat runs per row; range = min..max of the key figure)"
  for n in send_lat write_lat read_lat atomic_lat write_lat_sweep write_bw read_bw send_bw atomic_bw write_rate send_rate write_rate_2qp; do
    [[ -f $work/$n.csv ]] || continue
    echo
    echo "### $n"
    echo
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
      NR == 2 {
        if ($2 == "lat") { print "| bytes | samples | min us | median us | avg us | p99 us | p99.9 us | max us | median range | TCP median us |"; print "|---|---|---|---|---|---|---|---|---|---|" }
        else { print "| bytes | ops | MB/s | Gb/s | Mpps | key range | TCP |"; print "|---|---|---|---|---|---|---|" }
      }
      {
        tcp = ($(h["tcp_ref"]) + 0 > 0) ? $(h["tcp_ref"]) : ""
        if ($2 == "lat")
          printf "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f..%.2f | %s |\n", $3, $4, $(h["lat_min_us"]), $(h["lat_median_us"]),
            $(h["lat_avg_us"]), $(h["lat_p99_us"]), $(h["lat_p999_us"]), $(h["lat_max_us"]), $(h["key_min"]), $(h["key_max"]), tcp
        else
          printf "| %s | %s | %.1f | %.3f | %.4f | %.4g..%.4g | %s |\n", $3, $4, $(h["MBps"]), $(h["Gbps"]), $(h["Mpps"]),
            $(h["key_min"]), $(h["key_max"]), tcp
      }' "$work/$n.csv"
  done
  if [[ -n $micro ]]; then
    echo
    echo "## Micro-benchmarks (CPU time per iteration)"
    echo
    echo "| benchmark | time | throughput |"
    echo "|---|---|---|"
    printf '%s' "$micro"
  fi
} >"$out"

cat "$out"
log "report written to $out"
failed=$(ls "$work"/*.failed 2>/dev/null | wc -l)
[[ $failed == 0 ]]
