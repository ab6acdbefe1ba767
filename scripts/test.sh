#!/usr/bin/env bash
# The README's second command, and what CI runs (.ci/run): installs what is missing, builds each
# configuration once and runs every test.
#
#   build/       RelWithDebInfo: all tests (ctest), then a smoke run of `softrdma demo`
#   build-asan/  ASan + UBSan: all tests (ctest)
#   build-fuzz/  clang + libFuzzer, fuzz targets only: replay the seeds, then fuzz each target
#                for FUZZ_SECONDS (default 30) from its seed corpus
#
# Every stage runs even when an earlier one failed, so one run shows every failure; the exit
# status is nonzero if anything failed. The last line sums the tests: "summary: N passed, N failed"
# (a stage that fails without running tests, e.g. a build, counts as one failure).
#
# Environment: FUZZ_SECONDS (per fuzz target), CTEST_JOBS (default: number of cores).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh

start=$SECONDS
jobs=$(build_jobs)
ctest_jobs=${CTEST_JOBS:-$jobs}
fuzz_seconds=${FUZZ_SECONDS:-30}
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT

total_passed=0
total_failed=0
report=()

# stage NAME CMD...: runs CMD, records how it went and how long it took.
stage() {
  local name=$1
  shift
  local t0=$SECONDS
  echo
  echo "=== $name"
  if "$@"; then
    report+=("ok    $(printf '%-28s' "$name") $((SECONDS - t0))s")
    return 0
  fi
  report+=("FAIL  $(printf '%-28s' "$name") $((SECONDS - t0))s")
  return 1
}

# run_ctest DIR [ctest args...]: runs the tests of DIR and adds their counts to the totals.
run_ctest() {
  local dir=$1
  shift
  local log="$logdir/ctest.$(basename "$dir").log"
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$ctest_jobs" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  # "97% tests passed, 1 tests failed out of 40"
  local line
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
  if [[ $line =~ ([0-9]+)\ tests?\ failed\ out\ of\ ([0-9]+) ]]; then
    local failed=${BASH_REMATCH[1]} all=${BASH_REMATCH[2]}
    total_passed=$((total_passed + all - failed))
    total_failed=$((total_failed + failed))
    ((rc == 0 || failed > 0)) || total_failed=$((total_failed + 1))
  else
    total_failed=$((total_failed + 1))  # ctest itself failed (no tests, bad directory, ...)
  fi
  return "$rc"
}

# Counts a stage that runs no ctest (a build, the demo) as one failure when it fails.
counted() {
  "$@" && return 0
  total_failed=$((total_failed + 1))
  return 1
}

# LeakSanitizer needs to stop the process it checks (ptrace); some sandboxes forbid that, and
# then every sanitized test would fail at exit. Probe once; keep leak checking wherever it works.
detect_leaks=1
probe=$logdir/lsan_probe
if echo 'int main() { return 0; }' | c++ -x c++ -fsanitize=address -o "$probe" - 2>/dev/null &&
  ! ASAN_OPTIONS=detect_leaks=1 "$probe" >/dev/null 2>&1; then
  detect_leaks=0
  echo "note: LeakSanitizer does not work in this environment; running ASan without leak checks"
fi
# Only the sanitized binaries (build-asan, build-fuzz) read these.
export ASAN_OPTIONS=detect_leaks=$detect_leaks:check_initialization_order=1:strict_init_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

build_main() { configure_main && cmake --build build -j "$jobs"; }
build_asan() { configure_asan && cmake --build build-asan -j "$jobs"; }
build_fuzz() { configure_fuzz "-DSOFTRDMA_FUZZ_SECONDS=$fuzz_seconds" && cmake --build build-fuzz --target fuzz/all -j "$jobs"; }

demo_smoke() {
  if [[ ! -x build/src/tools/softrdma ]]; then
    echo "no build/src/tools/softrdma (the tool is not in the tree yet): skipped"
    return 0
  fi
  timeout --kill-after=10 180 build/src/tools/softrdma demo </dev/null
}

stage "install dependencies" counted bash scripts/install-deps.sh || {
  echo "cannot install the dependencies; nothing else can run"
  echo "summary: 0 passed, 1 failed"
  exit 1
}

if stage "build (RelWithDebInfo)" counted build_main; then
  stage "tests (build)" run_ctest build
  stage "demo smoke run" counted demo_smoke
fi
if stage "build (ASan+UBSan)" counted build_asan; then
  stage "tests (build-asan)" run_ctest build-asan
fi
if stage "build (fuzz, clang)" counted build_fuzz; then
  stage "fuzz (seeds + ${fuzz_seconds}s each)" run_ctest build-fuzz/fuzz
fi

echo
echo "=== summary"
printf '%s\n' "${report[@]}"
elapsed=$((SECONDS - start))
printf 'wall time: %dm%02ds on %s cores\n' $((elapsed / 60)) $((elapsed % 60)) "$jobs"
echo "summary: $total_passed passed, $total_failed failed"
((total_failed == 0))
