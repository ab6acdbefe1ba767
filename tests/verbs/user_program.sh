#!/usr/bin/env bash
# Our own verbs program (user_program.c), built the way a user builds one (cc ... -libverbs,
# against Debian's libibverbs-dev), runs on softrdma's libibverbs.so.1 through LD_LIBRARY_PATH.
#
#   user_program.sh PROGRAM [SECTION...]
#
# Checks first that the binary is linked normally: it needs libibverbs.so.1, carries no
# RPATH/RUNPATH, and without LD_LIBRARY_PATH resolves to the system's library; then that with
# LD_LIBRARY_PATH the process really loaded ours; then that every section passed.
# Environment: see lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

prog=${1:?usage: user_program.sh PROGRAM [SECTION...]}
shift
require_library
[[ -x $prog ]] || die "$prog is not built"

dyn=$(readelf -d "$prog")
grep -q 'NEEDED.*\[libibverbs\.so\.1\]' <<<"$dyn" || die "$prog does not need libibverbs.so.1:
$dyn"
if grep -E 'R(UN)?PATH' <<<"$dyn"; then
  die "$prog has an RPATH/RUNPATH; it must find libibverbs.so.1 like any program"
fi
system=$(env -u LD_LIBRARY_PATH ldd "$prog" | awk '$1 == "libibverbs.so.1" { print $3 }')
echo "linked normally: NEEDED libibverbs.so.1, no RPATH; the loader alone picks $system"
[[ $(readlink -f "$system") != "$(readlink -f "$SOFTRDMA_LIBDIR/libibverbs.so.1")" ]] ||
  die "without LD_LIBRARY_PATH the program already resolves to our library; the test would prove nothing"

log=$VERBS_LOGDIR/user_program.log
echo "running: LD_LIBRARY_PATH=$SOFTRDMA_LIBDIR $prog -d $VERBS_DEVICE -v $*"
"${LDPATH[@]}" timeout -k 5 "${VERBS_TIMEOUT}" "$prog" -d "$VERBS_DEVICE" -v "$@" >"$log" 2>&1 </dev/null
rc=$?
cat "$log"
loaded=$(sed -n 's/^libibverbs: //p' "$log")
if [[ $(readlink -f "$loaded") != "$(readlink -f "$SOFTRDMA_LIBDIR/libibverbs.so.1")" ]]; then
  die "the program loaded '$loaded', not $SOFTRDMA_LIBDIR/libibverbs.so.1"
fi
((rc == 0)) || die "user_program exited $rc$( ((rc == 124)) && echo ' (killed by the timeout)')"
echo "PASS"
