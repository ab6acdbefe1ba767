# Shared by the tests/verbs/*.sh scripts (sourced, not run): where our libibverbs.so.1 is, how a
# program is run on it, and how a server and a client are paired on one machine.
#
# Environment (ctest sets it, see CMakeLists.txt; set it yourself to run a script by hand):
#   SOFTRDMA_LIBDIR   directory holding our libibverbs.so.1 (build/src/verbs)
#   SOFTRDMA_BIN      the softrdma binary (build/src/tools/softrdma)
#   VERBS_PORT_BASE   first TCP port the out-of-band exchange may use (distinct per test, so tests
#                     can run in parallel); the first free port at or above it is taken
#   VERBS_DEVICE      device name (default softrdma0)
#   VERBS_TIMEOUT     seconds one program may run (default 30)
#   VERBS_LOGDIR      keep every program's output there (default: a temporary directory)
#
# Exit statuses: 0 pass, 1 fail, 77 skip (a program is not installed; ctest SKIP_RETURN_CODE).

# shellcheck disable=SC2034  # VRUN, LDPATH, PRELOAD and PORT are for the scripts that source this
set -uo pipefail

VERBS_DEVICE=${VERBS_DEVICE:-softrdma0}
VERBS_TIMEOUT=${VERBS_TIMEOUT:-30}
VERBS_PORT_BASE=${VERBS_PORT_BASE:-18600}
SOFTRDMA_LIBDIR=${SOFTRDMA_LIBDIR:-}
SOFTRDMA_BIN=${SOFTRDMA_BIN:-}

_verbs_tmp=$(mktemp -d "${TMPDIR:-/tmp}/softrdma-verbs.XXXXXX")
VERBS_LOGDIR=${VERBS_LOGDIR:-$_verbs_tmp}
mkdir -p "$VERBS_LOGDIR"
_verbs_pgids=()
_verbs_failed=0
_verbs_passed=0

# Kills every process group we started (timeout makes each command its own group), then removes
# the temporary directory. Runs on any exit, including a ctest timeout (SIGTERM).
_verbs_cleanup() {
  local g
  for g in "${_verbs_pgids[@]}"; do
    kill -TERM -- "-$g" 2>/dev/null
  done
  for g in "${_verbs_pgids[@]}"; do
    kill -0 -- "-$g" 2>/dev/null || continue
    sleep 1
    kill -KILL -- "-$g" 2>/dev/null
  done
  rm -rf "$_verbs_tmp"
}
trap _verbs_cleanup EXIT
trap 'echo "interrupted"; exit 1' INT TERM

skip() {
  echo "SKIP: $*"
  exit 77
}

die() {
  echo "FAIL: $*"
  exit 1
}

require_library() {
  [[ -n $SOFTRDMA_LIBDIR ]] || die "SOFTRDMA_LIBDIR is not set (the directory of our libibverbs.so.1)"
  [[ -f $SOFTRDMA_LIBDIR/libibverbs.so.1 ]] ||
    die "no $SOFTRDMA_LIBDIR/libibverbs.so.1: build the softrdma_verbs target"
  SOFTRDMA_LIBDIR=$(cd "$SOFTRDMA_LIBDIR" && pwd -P)
  export SOFTRDMA_LIBDIR
  LDPATH=(env "LD_LIBRARY_PATH=$SOFTRDMA_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  PRELOAD=(env "LD_PRELOAD=$SOFTRDMA_LIBDIR/libibverbs.so.1${LD_PRELOAD:+:$LD_PRELOAD}")
}

require_softrdma() {
  [[ -n $SOFTRDMA_BIN && -x $SOFTRDMA_BIN ]] || die "SOFTRDMA_BIN is not the softrdma binary: '$SOFTRDMA_BIN'"
  VRUN=("$SOFTRDMA_BIN" run --)
}

# require_programs PROG...: skips the test when a program is missing (scripts/install-deps.sh
# installs them; CI always has them).
require_programs() {
  local p
  for p in "$@"; do
    command -v "$p" >/dev/null 2>&1 || skip "$p is not installed (package: ibverbs-utils / perftest / python3-pyverbs)"
  done
}

# The three ways to run a program on softrdma, as command prefixes (usable after `timeout`):
# "${VRUN[@]}" PROG... (softrdma run; what the tests use for Debian's programs), "${LDPATH[@]}"
# PROG... and "${PRELOAD[@]}" PROG... (set by require_library / require_softrdma).
VRUN=()
LDPATH=()
PRELOAD=()

# tcp_listening PORT: true when something listens on TCP PORT (any address).
tcp_listening() {
  ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# free_port: sets PORT to a TCP port nobody listens on (call it directly, not in $(...)). It is
# taken from the test's range, VERBS_PORT_BASE and the 19 above it, each call starting one
# further so that consecutive cases do not meet each other's TIME_WAIT sockets; from the 80
# ports after the range when all of it is busy.
_verbs_port_turn=0
free_port() {
  local i p
  for ((i = 0; i < 100; i++)); do
    if ((i < 20)); then
      p=$((VERBS_PORT_BASE + (_verbs_port_turn + i) % 20))
    else
      p=$((VERBS_PORT_BASE + i))
    fi
    tcp_listening "$p" && continue
    _verbs_port_turn=$((_verbs_port_turn + 1))
    PORT=$p
    return 0
  done
  PORT=$VERBS_PORT_BASE
}

# Starts "timeout ... CMD" in the background, in its own process group; sets BG_PID.
start_bg() {
  local log=$1
  shift
  timeout -k 5 "$VERBS_TIMEOUT" "$@" >"$log" 2>&1 </dev/null &
  BG_PID=$!
  _verbs_pgids+=("$BG_PID")
}

show_log() {
  local title=$1 file=$2
  echo "----- $title ($file)"
  if [[ -s $file ]]; then
    sed 's/^/  | /' "$file" | tail -n 60
  else
    echo "  | (no output)"
  fi
}

# case_result NAME RC LOG...: records one case; prints the logs when it failed.
case_ok() {
  _verbs_passed=$((_verbs_passed + 1))
  echo "ok    $1"
}
case_fail() {
  local name=$1 why=$2
  shift 2
  _verbs_failed=$((_verbs_failed + 1))
  echo "FAIL  $name: $why"
  local f
  for f in "$@"; do show_log "$(basename "$f")" "$f"; done
}

# run_pair NAME PORT SERVER_ARRAY CLIENT_ARRAY: runs a server in the background, waits until
# it listens on PORT, runs the client (which is given the address as its last argument by the
# caller), waits for both, and records the case. Afterwards SERVER_LOG / CLIENT_LOG hold the
# output. Returns 0 when both exited 0.
#   run_pair rc-1k 18600 server_cmd_array_name client_cmd_array_name
run_pair() {
  local name=$1 port=$2
  local -n _srv=$3 _cli=$4
  local tag=${name//[^A-Za-z0-9_.-]/_}
  SERVER_LOG=$VERBS_LOGDIR/$tag.server.log
  CLIENT_LOG=$VERBS_LOGDIR/$tag.client.log
  : >"$CLIENT_LOG"
  local t0=$SECONDS
  start_bg "$SERVER_LOG" "${_srv[@]}"
  local spid=$BG_PID
  # Wait for the server's TCP socket (the program sets up its device first).
  local i
  for ((i = 0; i < 200; i++)); do
    tcp_listening "$port" && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.05
  done
  if ! tcp_listening "$port"; then
    local src=0
    if kill -0 "$spid" 2>/dev/null; then
      kill -TERM -- "-$spid" 2>/dev/null
    fi
    wait "$spid" 2>/dev/null
    src=$?
    case_fail "$name" "the server never listened on TCP port $port (server exit $src)" "$SERVER_LOG"
    return 1
  fi
  timeout -k 5 "$VERBS_TIMEOUT" "${_cli[@]}" >"$CLIENT_LOG" 2>&1 </dev/null
  local crc=$?
  # The server finishes right after the client; give it a moment, then stop it.
  local srv_rc
  for ((i = 0; i < 100; i++)); do
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.05
  done
  local hung=""
  if kill -0 "$spid" 2>/dev/null; then
    ((crc == 0)) && sleep 5  # a server that never returns is a failure, but allow a slow exit
  fi
  if kill -0 "$spid" 2>/dev/null; then
    # Still running: record what its adapter is doing (retransmissions, timeouts) before
    # stopping it. `softrdma stat` reads the counters the process publishes in /dev/shm.
    hung=$VERBS_LOGDIR/$tag.server-stat.log
    if [[ -n $SOFTRDMA_BIN ]]; then
      local pids
      pids=$(pgrep -g "$spid" | tr '\n' ' ')
      {
        echo "server still running ${SECONDS}s into the case; its processes: $pids"
        timeout 5 "$SOFTRDMA_BIN" stat 2>&1 | awk -v pids=" $pids" '
          /^[^ ]/ { show = index(pids, " " $3 " ") > 0 } show'
      } >"$hung"
    fi
    kill -TERM -- "-$spid" 2>/dev/null
  fi
  wait "$spid" 2>/dev/null
  srv_rc=$?
  local secs=$((SECONDS - t0))
  if ((crc != 0 || srv_rc != 0)); then
    local why="client exit $crc, server exit $srv_rc"
    ((crc == 124 || srv_rc == 124)) && why+=" (124 = killed by the ${VERBS_TIMEOUT}s timeout)"
    if [[ -n $hung ]]; then
      if ((crc == 0)); then
        why+=" (the server did not finish after the client had; stopped it)"
      else
        why+=" (the server was still waiting for the failed client; stopped it)"
      fi
    fi
    case_fail "$name" "$why" "$SERVER_LOG" "$CLIENT_LOG" ${hung:+"$hung"}
    return 1
  fi
  PAIR_SECONDS=$secs
  return 0
}

# is_positive NUMBER: true for a finite number > 0.
is_positive() {
  awk -v x="$1" 'BEGIN { exit !(x ~ /^[0-9.eE+-]+$/ && x + 0 > 0) }'
}

# finish: prints the totals and exits 0 only when every case passed.
finish() {
  echo
  echo "$(basename "$0"): $_verbs_passed passed, $_verbs_failed failed ($SECONDS s)"
  ((_verbs_failed == 0 && _verbs_passed > 0))
  exit $?
}
