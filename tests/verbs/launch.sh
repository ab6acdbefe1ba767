#!/usr/bin/env bash
# The three documented ways to run a program on softrdma, and `softrdma run` itself.
#
#   launch.sh USER_PROGRAM
#
#   softrdma run:     environment it sets (--print-env), exit status passed through, 127 for a
#                     missing program, bad options refused, SOFTRDMA_LIBDIR honoured; then
#                     user_program and ibv_devices through it, and ibv_rc_pingpong with a lossy
#                     link (--fault) which RC must hide
#   LD_PRELOAD:       user_program and ibv_devices with our library preloaded
#   LD_LIBRARY_PATH:  an ibv_rc_pingpong server preloaded, its client through LD_LIBRARY_PATH
# Environment: see lib.sh.
# shellcheck disable=SC2016,SC2034,SC2054  # literal $VARs for sh -c; arrays read by run_pair; commas in --fault
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

user_program=${1:?usage: launch.sh USER_PROGRAM}
require_library
require_softrdma
lib=$SOFTRDMA_LIBDIR/libibverbs.so.1

# expect NAME WANT_RC CMD...: runs CMD, compares its exit status; output in $OUT.
expect() {
  local name=$1 want=$2
  shift 2
  local log=$VERBS_LOGDIR/${name//[^A-Za-z0-9_.-]/_}.log
  timeout -k 5 "$VERBS_TIMEOUT" "$@" >"$log" 2>&1 </dev/null
  local rc=$?
  OUT=$(cat "$log")
  if [[ $rc != "$want" ]]; then
    case_fail "$name" "exit $rc, expected $want" "$log"
    return 1
  fi
  return 0
}

contains() {
  local name=$1 what=$2
  if [[ $OUT == *"$what"* ]]; then
    case_ok "$name"
  else
    _verbs_failed=$((_verbs_failed + 1))
    echo "FAIL  $name: output lacks '$what':"
    printf '%s\n' "$OUT" | sed 's/^/  | /'
  fi
}

# --- softrdma run, mechanics
expect "run --print-env" 0 "$SOFTRDMA_BIN" run --print-env --mtu 1024 --fault loss=1%,seed=3 --busy-poll -- \
  ib_send_bw -d x "two words" &&
  contains "run --print-env" "LD_LIBRARY_PATH=$SOFTRDMA_LIBDIR" &&
  contains "run --print-env: SOFTRDMA_MTU" "SOFTRDMA_MTU=1024" &&
  contains "run --print-env: SOFTRDMA_FAULT" "SOFTRDMA_FAULT=loss=1%,seed=3" &&
  contains "run --print-env: SOFTRDMA_BUSY_POLL" "SOFTRDMA_BUSY_POLL=1" &&
  contains "run --print-env: argv" "ib_send_bw -d x 'two words'"
expect "run: environment reaches the program" 0 "$SOFTRDMA_BIN" run --mtu 2048 --addr 127.0.0.9 -- \
  sh -c 'echo "ld=$LD_LIBRARY_PATH mtu=$SOFTRDMA_MTU addr=$SOFTRDMA_ADDR"' &&
  contains "run: environment reaches the program" "ld=$SOFTRDMA_LIBDIR" &&
  contains "run: SOFTRDMA_MTU/ADDR" "mtu=2048 addr=127.0.0.9"
expect "run: without --" 0 "$SOFTRDMA_BIN" run sh -c 'echo "args:$0:$1"' x y &&
  contains "run: without --" "args:x:y"
expect "run: exit status passed through" 7 "$SOFTRDMA_BIN" run -- sh -c 'exit 7' && case_ok "run: exit status passed through"
# exec, not fork: the program has the pid `softrdma run` was started with.
"$SOFTRDMA_BIN" run -- sh -c 'echo "$$"' >"$VERBS_LOGDIR/pid.log" 2>&1 &
started=$!
wait "$started"
if [[ $(cat "$VERBS_LOGDIR/pid.log") == "$started" ]]; then
  case_ok "run: the program replaces softrdma (same pid)"
else
  case_fail "run: the program replaces softrdma (same pid)" "pid $started, the program saw another" "$VERBS_LOGDIR/pid.log"
fi
expect "run: missing program" 127 "$SOFTRDMA_BIN" run -- /nonexistent/program && case_ok "run: missing program -> 127"
expect "run: bad fault spec" 2 "$SOFTRDMA_BIN" run --fault nonsense=3 -- true && case_ok "run: bad --fault refused"
expect "run: bad device" 2 "$SOFTRDMA_BIN" run --device softrdma0=not.an.address -- true && case_ok "run: bad --device refused"
expect "run: bad SOFTRDMA_LIBDIR" 127 env SOFTRDMA_LIBDIR=/nonexistent "$SOFTRDMA_BIN" run -- true &&
  contains "run: bad SOFTRDMA_LIBDIR" "SOFTRDMA_LIBDIR=/nonexistent"
expect "run: --libdir" 0 env -u SOFTRDMA_LIBDIR "$SOFTRDMA_BIN" run --libdir "$SOFTRDMA_LIBDIR" -- \
  sh -c 'echo "ld=$LD_LIBRARY_PATH"' && contains "run: --libdir" "ld=$SOFTRDMA_LIBDIR"
# Found next to the binary without any help (build tree layout).
expect "run: finds the library itself" 0 env -u SOFTRDMA_LIBDIR "$SOFTRDMA_BIN" run -- sh -c 'echo "ld=$LD_LIBRARY_PATH"' &&
  contains "run: finds the library itself" "ld=$SOFTRDMA_LIBDIR"
expect "run --preload" 0 "$SOFTRDMA_BIN" run --preload -- sh -c 'echo "pre=$LD_PRELOAD"' &&
  contains "run --preload" "pre=$lib"

# --- real programs, each way
expect "softrdma run user_program" 0 "$SOFTRDMA_BIN" run -- "$user_program" -d "$VERBS_DEVICE" device rc &&
  contains "softrdma run user_program" "libibverbs: $(readlink -f "$lib")"
expect "LD_PRELOAD user_program" 0 "${PRELOAD[@]}" "$user_program" -d "$VERBS_DEVICE" device rc &&
  contains "LD_PRELOAD user_program" "libibverbs: $(readlink -f "$lib")"
if command -v ibv_devices >/dev/null; then
  expect "softrdma run ibv_devices" 0 "$SOFTRDMA_BIN" run -- ibv_devices && contains "softrdma run ibv_devices" "$VERBS_DEVICE"
  expect "LD_PRELOAD ibv_devices" 0 "${PRELOAD[@]}" ibv_devices && contains "LD_PRELOAD ibv_devices" "$VERBS_DEVICE"
  expect "LD_LIBRARY_PATH ibv_devices" 0 "${LDPATH[@]}" ibv_devices && contains "LD_LIBRARY_PATH ibv_devices" "$VERBS_DEVICE"
fi
# Devices from --device (SOFTRDMA_DEVICES) and from --config (SOFTRDMA_CONFIG).
if command -v ibv_devinfo >/dev/null; then
  expect "run --device" 0 "$SOFTRDMA_BIN" run --device sdev0=127.0.0.21 --device sdev1 -- ibv_devinfo -v &&
    contains "run --device: first device" "hca_id:	sdev0" &&
    contains "run --device: its address is its GID" "::ffff:127.0.0.21" &&
    contains "run --device: second device" "hca_id:	sdev1"
  printf '# softrdma.conf\ncdev0 127.0.0.22 mtu=1024\n' >"$VERBS_LOGDIR/softrdma.conf"
  expect "run --config" 0 "$SOFTRDMA_BIN" run --config "$VERBS_LOGDIR/softrdma.conf" -- ibv_devinfo -v &&
    contains "run --config: device" "hca_id:	cdev0" &&
    contains "run --config: address" "::ffff:127.0.0.22" &&
    contains "run --config: mtu" "active_mtu:		1024 (3)"
fi
if command -v ibv_rc_pingpong >/dev/null; then
  free_port
  port=$PORT
  opts=(-d "$VERBS_DEVICE" -g 0 -p "$port" -s 4096 -n 100 -c)
  server=(env "LD_PRELOAD=$lib" stdbuf -oL ibv_rc_pingpong "${opts[@]}")
  client=(env "LD_LIBRARY_PATH=$SOFTRDMA_LIBDIR" ibv_rc_pingpong "${opts[@]}" 127.0.0.1)
  run_pair "ibv_rc_pingpong: server LD_PRELOAD, client LD_LIBRARY_PATH" "$port" server client &&
    case_ok "ibv_rc_pingpong: server LD_PRELOAD, client LD_LIBRARY_PATH"
  # RC under duplication on both sides: the program must not notice. Not loss: ibv_rc_pingpong
  # exits as soon as its last completion arrives, and when the fault link drops (or holds back)
  # the very last ACK, the peer retransmits to a QP that no longer exists - the teardown race
  # that RDMA CM's disconnect handshake exists for; hardware shows it too. Loss, reordering and
  # corruption are covered by the engine's fault tests, which tear down only after both sides.
  free_port
  port=$PORT
  opts=(-d "$VERBS_DEVICE" -g 0 -p "$port" -s 16384 -n 100 -c)
  server=("$SOFTRDMA_BIN" run --fault dup=3%,seed=11 -- stdbuf -oL ibv_rc_pingpong "${opts[@]}")
  client=("$SOFTRDMA_BIN" run --fault dup=3%,seed=12 -- ibv_rc_pingpong "${opts[@]}" 127.0.0.1)
  run_pair "ibv_rc_pingpong under --fault dup=3%" "$port" server client &&
    case_ok "ibv_rc_pingpong under --fault dup=3%"
fi
finish
