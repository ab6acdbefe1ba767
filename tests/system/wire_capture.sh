#!/usr/bin/env bash
# Wire check: capture what `softrdma demo` puts on the loopback interface and let tshark judge it.
#   - every frame between the demo's two adapters decodes as RoCE (InfiniBand over UDP 4791) and
#     none is malformed;
#   - every ICRC is right, by an independent checker (../shared/tools/roce_icrc.lua);
#   - every opcode the demo uses (RC SEND/WRITE/WRITE-with-immediate first/middle/last/only, READ
#     request and responses, ACK, atomics and their ACK, UD SEND) is on the wire, at least
#     MIN_FRAMES times each.
# Usage: wire_capture.sh [SOFTRDMA_BINARY [SHARED_DIR]]. Needs root and tcpdump (else exit 77 = skip).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
softrdma="${1:-$root/build/src/tools/softrdma}"
shared="${2:-${SOFTRDMA_SHARED_DIR:-$root/../shared}}"
MIN_FRAMES=10

if [[ $(id -u) -ne 0 ]]; then echo "SKIP: capturing on lo needs root"; exit 77; fi
if ! command -v tcpdump >/dev/null; then echo "SKIP: tcpdump is not installed"; exit 77; fi
command -v tshark >/dev/null || { echo "FAIL: tshark is not installed (apt-get install tshark)"; exit 1; }
[[ -x $softrdma ]] || { echo "FAIL: no softrdma binary at $softrdma"; exit 1; }
lua="$shared/tools/roce_icrc.lua"
[[ -f $lua ]] || { echo "FAIL: no ICRC checker at $lua (set SOFTRDMA_SHARED_DIR)"; exit 1; }

work="$(mktemp -d)"
tcpdump_pid=""
cleanup() {
  [[ -n $tcpdump_pid ]] && kill "$tcpdump_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
pcap="$work/roce.pcap"

# -U: write each packet as it comes; -B: a large kernel buffer so bursts are not dropped.
tcpdump -i lo -U -s 0 -B 32768 -w "$pcap" 'udp port 4791' 2>"$work/tcpdump.err" &
tcpdump_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/tcpdump.err" && break; sleep 0.05; done
grep -q "listening on" "$work/tcpdump.err" || { cat "$work/tcpdump.err"; echo "FAIL: tcpdump did not start"; exit 1; }

# Two runs: MTU 1024 with 3000-byte messages (first/middle/last packets) and small ones, then
# MTU 4096 with 64 KiB messages (full-size frames).
"$softrdma" demo --mtu 1024 --size 8 --size 3000 --iters 10 | tee "$work/demo1.out"
"$softrdma" demo --size 65536 --iters 3 | tee "$work/demo2.out"
sleep 0.5
kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" || true
tcpdump_pid=""
cat "$work/tcpdump.err"

# Only frames between the demo's own two adapters (other programs may use port 4791 meanwhile).
filter=""
for out in "$work/demo1.out" "$work/demo2.out"; do
  addrs=($(head -1 "$out" | grep -oE '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+:4791' | cut -d: -f1))
  a=${addrs[0]:-} b=${addrs[1]:-}
  [[ -n $a && -n $b ]] || { echo "FAIL: cannot find the demo's addresses in its first line"; exit 1; }
  filter+="${filter:+ || }(ip.addr==$a && ip.addr==$b)"
done
filter="udp.srcport==4791 && udp.dstport==4791 && ($filter)"
ts() { tshark --disable-heuristic rpcrdma_infiniband -r "$pcap" "$@" 2>/dev/null; }
count() { ts -Y "$filter && ($1)" "${@:2}" | wc -l; }

fail=0
total=$(count "frame")
echo "captured $total RoCEv2 frames between the demo's adapters"
(( total > 0 )) || { echo "FAIL: no frames captured"; exit 1; }

not_roce=$(count "!infiniband")
malformed=$(count "_ws.malformed || _ws.expert.severity == error")
bad_icrc=$(count "roce_icrc.good == 0" -X "lua_script:$lua")
good_icrc=$(count "roce_icrc.good == 1" -X "lua_script:$lua")
echo "not decoded as InfiniBand: $not_roce   malformed or expert errors: $malformed"
echo "ICRC good: $good_icrc   ICRC bad: $bad_icrc"
if (( not_roce != 0 )); then echo "FAIL: frames that are not RoCE:"; ts -Y "$filter && !infiniband" | head; fail=1; fi
if (( malformed != 0 )); then echo "FAIL: malformed frames:"; ts -Y "$filter && _ws.malformed" | head; fail=1; fi
if (( bad_icrc != 0 )); then
  echo "FAIL: frames with a bad ICRC:"; ts -X "lua_script:$lua" -Y "$filter && roce_icrc.good == 0" | head; fail=1
fi
if (( good_icrc != total )); then echo "FAIL: the ICRC checker judged $good_icrc of $total frames"; fail=1; fi

# Frames per BTH opcode (IBTA Table 38), each needed at least MIN_FRAMES times.
declare -A need=(
  [0]="RC SEND First" [1]="RC SEND Middle" [2]="RC SEND Last" [4]="RC SEND Only"
  [6]="RC RDMA WRITE First" [7]="RC RDMA WRITE Middle" [8]="RC RDMA WRITE Last"
  [9]="RC RDMA WRITE Last with Immediate" [10]="RC RDMA WRITE Only" [11]="RC RDMA WRITE Only with Immediate"
  [12]="RC RDMA READ Request" [13]="RC RDMA READ Response First" [14]="RC RDMA READ Response Middle"
  [15]="RC RDMA READ Response Last" [16]="RC RDMA READ Response Only" [17]="RC Acknowledge"
  [18]="RC ATOMIC Acknowledge" [19]="RC CmpSwap" [20]="RC FetchAdd" [100]="UD SEND Only"
)
declare -A seen=()
while read -r n op; do seen[$op]=$n; done < <(ts -Y "$filter" -T fields -e infiniband.bth.opcode | sort -n | uniq -c)
printf '%-40s %8s\n' "opcode" "frames"
for op in $(printf '%s\n' "${!need[@]}" | sort -n); do
  n=${seen[$op]:-0}
  mark=""
  if (( n < MIN_FRAMES )); then mark="  FAIL: fewer than $MIN_FRAMES"; fail=1; fi
  printf '%-40s %8d%s\n' "$op ${need[$op]}" "$n" "$mark"
done
for op in "${!seen[@]}"; do
  [[ -v need[$op] ]] || printf '%-40s %8d  (not required)\n' "$op" "${seen[$op]}"
done

if (( fail )); then echo "wire check FAILED"; exit 1; fi
echo "wire check passed: $total frames, all RoCEv2, all ICRCs good, all $((${#need[@]})) opcodes present"
