#!/usr/bin/env bash
# Wire check: capture what `softrdma demo` puts on the loopback interface and let tshark judge it.
#   - every frame between the demo's two adapters decodes as RoCE (InfiniBand over UDP 4791) and
#     none is malformed;
#   - every ICRC is right, by an independent checker (../shared/tools/roce_icrc.lua);
#   - every opcode the demo uses (RC SEND/WRITE/WRITE-with-immediate first/middle/last/only, READ
#     request and responses, ACK, atomics and their ACK, UD SEND) is on the wire, at least
#     MIN_FRAMES times each.
#   - the frames that UDP GSO sent as one message left as separate datagrams with IPv4 IDs 1, 2,
#     ... (their ICRCs, checked over the real header, are right for those IDs).
# Usage: wire_capture.sh [SOFTRDMA_BINARY [SHARED_DIR]]. Needs root and tcpdump (else exit 77 = skip).
#
# Where to capture. Leaving a NIC, a GSO send is one datagram per frame, and a capture on the
# wire shows exactly that. The loopback interface does not cut GSO sends (it hands the whole send
# to the receiving socket), so a capture on the host's lo shows each as one large datagram. The
# check therefore runs in a network namespace of its own whose lo cuts them in software before
# the capture point (ethtool -K lo tx-udp-segmentation off): the capture holds the datagrams a NIC
# would send, with the IPv4 IDs it would give them. Without unshare/ethtool, it captures on the
# host's lo with GSO off (SOFTRDMA_GSO=0).
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

gso=1
[[ ${SOFTRDMA_GSO:-1} == 0 ]] && gso=0
if [[ -z ${WIRE_CAPTURE_NETNS:-} && $gso == 1 ]]; then
  if command -v unshare >/dev/null && command -v ethtool >/dev/null && command -v ip >/dev/null &&
    unshare -n true 2>/dev/null; then
    exec unshare -n env WIRE_CAPTURE_NETNS=1 bash "$here/$(basename "${BASH_SOURCE[0]}")" "$softrdma" "$shared"
  fi
  echo "note: no private network namespace (unshare, ethtool, ip): capturing on lo with SOFTRDMA_GSO=0"
  gso=0
elif [[ -n ${WIRE_CAPTURE_NETNS:-} ]]; then
  ip link set lo up
  if ! ethtool -K lo tx-udp-segmentation off 2>/dev/null; then
    echo "note: lo cannot turn off tx-udp-segmentation: capturing with SOFTRDMA_GSO=0"
    gso=0
  fi
  echo "capturing in a private network namespace; lo: $(ethtool -k lo | grep tx-udp-segmentation)"
fi
export SOFTRDMA_GSO=$gso
export SOFTRDMA_SHM=0  # the same-host shared-memory link would bypass the wire

# Two addresses of our own, from the top of 127.0.0.x (adapters that pick their own address
# start at the bottom), so that the capture holds only the demo's frames even while other
# programs use port 4791.
in_use="$(ss -Huan 'sport = :4791' 2>/dev/null || true)"
addrs=()
for x in $(seq 254 -1 200); do
  grep -q "127\.0\.0\.$x:4791 " <<<"$in_use" || addrs+=("127.0.0.$x")
  (( ${#addrs[@]} == 2 )) && break
done
a=${addrs[0]} b=${addrs[1]}

work="$(mktemp -d)"
tcpdump_pid=""
cleanup() {
  [[ -n $tcpdump_pid ]] && kill "$tcpdump_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
pcap="$work/roce.pcap"

# -U: write each packet as it comes; -B: a large kernel buffer so bursts are not dropped;
# -c: a bound on the file size, whatever happens.
tcpdump -i lo -U -s 0 -B 32768 -c 200000 -w "$pcap" "udp port 4791 and host $a and host $b" 2>"$work/tcpdump.err" &
tcpdump_pid=$!
for _ in $(seq 100); do grep -qs "listening on" "$work/tcpdump.err" && break; sleep 0.05; done
grep -q "listening on" "$work/tcpdump.err" || { cat "$work/tcpdump.err"; echo "FAIL: tcpdump did not start"; exit 1; }

# Two runs: MTU 1024 with 3000-byte messages (first/middle/last packets) and small ones, then
# MTU 4096 with 64 KiB messages (full-size frames).
"$softrdma" demo --addr-a "$a" --addr-b "$b" --mtu 1024 --size 8 --size 3000 --iters 10
"$softrdma" demo --addr-a "$a" --addr-b "$b" --size 65536 --iters 3
sleep 0.5
kill -INT "$tcpdump_pid"
wait "$tcpdump_pid" || true
tcpdump_pid=""
cat "$work/tcpdump.err"

filter="udp.srcport==4791 && udp.dstport==4791 && ip.addr==$a && ip.addr==$b"
ts() { tshark --disable-heuristic rpcrdma_infiniband -X "lua_script:$lua" -r "$pcap" "$@" 2>/dev/null; }
# One pass: per frame, the ICRC verdict, the BTH opcode and any malformation or expert error.
ts -Y "$filter" -T fields -E separator=';' -e frame.number -e roce_icrc.good -e infiniband.bth.opcode \
  -e _ws.malformed -e _ws.expert.severity -e ip.id > "$work/frames.txt"
total=$(wc -l < "$work/frames.txt")
all=$(ts -T fields -e frame.number | wc -l)
echo "captured $total RoCEv2 frames between $a and $b ($all frames in the file)"
(( total > 0 )) || { echo "FAIL: no frames captured"; exit 1; }

fail=0
not_roce=$(awk -F';' '$3 == ""' "$work/frames.txt" | wc -l)
malformed=$(awk -F';' '$4 != "" || $5 != ""' "$work/frames.txt" | wc -l)
bad_icrc=$(awk -F';' '$2 != "1"' "$work/frames.txt" | wc -l)
echo "not decoded as InfiniBand: $not_roce   malformed or expert errors: $malformed   bad or unchecked ICRC: $bad_icrc"
if (( not_roce != 0 )); then echo "FAIL: frames that are not RoCE:"; ts -Y "$filter && !infiniband" | head; fail=1; fi
if (( malformed != 0 )); then
  echo "FAIL: malformed frames:"; ts -Y "$filter && (_ws.malformed || _ws.expert.severity == error)" | head; fail=1
fi
if (( bad_icrc != 0 )); then echo "FAIL: frames with a bad ICRC:"; ts -Y "$filter && !(roce_icrc.good == 1)" | head; fail=1; fi
if (( all != total )); then echo "FAIL: $((all - total)) captured frames are not between the demo's adapters"; fail=1; fi
# Segments 1, 2, ... of GSO sends carry IPv4 IDs 1, 2, ...; everything else ID 0.
gso_ids=$(awk -F';' '$6 != "" && $6 != "0x0000" && $6 != "0"' "$work/frames.txt" | wc -l)
echo "frames with a nonzero IPv4 ID (GSO segments after the first): $gso_ids (GSO $( ((gso)) && echo on || echo off))"
if (( gso && gso_ids == 0 )); then echo "FAIL: GSO is on but no frame left as a later segment of a GSO send"; fail=1; fi
if (( !gso && gso_ids != 0 )); then echo "FAIL: GSO is off but $gso_ids frames have a nonzero IPv4 ID"; fail=1; fi

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
while read -r n op; do seen[$op]=$n; done < <(awk -F';' '$3 != "" {print $3}' "$work/frames.txt" | sort -n | uniq -c)
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
echo "wire check passed: $total frames, all RoCEv2, all ICRCs good, all ${#need[@]} opcodes present"
