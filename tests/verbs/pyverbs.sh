#!/usr/bin/env bash
# rdma-core's own Python test suite (python3-pyverbs 44) on softrdma's libibverbs.so.1.
#
#   pyverbs.sh [MODULE...]     default: the 20 vendor-neutral modules of issue 3 (171 tests)
#
# Copies /usr/share/doc/rdma-core/tests to a temporary directory, gunzips it, and runs
#   LD_LIBRARY_PATH=<our lib dir> /usr/bin/python3 tests/run_tests.py --dev softrdma0 -v MODULES
# then prints pass/skip/fail/error counts, per module and in total (a Markdown table, ready for
# the README), the distinct skip reasons, and every failure or error. Fails when anything failed
# or errored, or when the suite crashed (no unittest summary). Every test has to pass, or skip
# because the device reports EOPNOTSUPP for a feature it lacks, like real hardware would.
#
# Two more guards, because a skip can hide a broken device as well as a missing feature: a skip
# whose reason says the device or port itself is unusable ("No supported port is up", ...) is a
# failure, and fewer than PYVERBS_MIN_PASS passing tests is a failure (a feature that used to
# pass now skips; lower the floor in CMakeLists.txt only when that is intended).
#
# Environment: see lib.sh; PYVERBS_TIMEOUT (seconds for the whole suite, default 600),
# PYVERBS_MIN_PASS (default 0), PYVERBS_KEEP=DIR keeps the unpacked suite and its log there.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

modules=("$@")
if ((${#modules[@]} == 0)); then
  modules=(test_addr test_atomic test_cq test_cq_events test_cqex test_cuda_dmabuf test_device test_flow
    test_fork test_mr test_odp test_parent_domain test_pd test_qp test_qpex test_rdmacm
    test_relaxed_ordering test_rss_traffic test_shared_pd test_tag_matching)
fi

require_library
python=/usr/bin/python3  # the system interpreter: pyverbs is a Debian package (a pyenv python has none)
[[ -x $python ]] || skip "$python is missing"
$python -c 'import pyverbs' 2>/dev/null || skip "python3-pyverbs is not installed"
src=/usr/share/doc/rdma-core/tests
[[ -f $src/run_tests.py ]] ||
  die "$src/run_tests.py is missing: python3-pyverbs is installed without its documentation (a dpkg path-exclude for /usr/share/doc?)"

work=${PYVERBS_KEEP:-$_verbs_tmp/suite}
rm -rf "$work/tests"
mkdir -p "$work"
cp -r "$src" "$work/tests"
find "$work/tests" -name '*.gz' -exec gunzip -f {} +
log=$work/pyverbs.log

echo "running: LD_LIBRARY_PATH=$SOFTRDMA_LIBDIR $python tests/run_tests.py --dev $VERBS_DEVICE -v ${modules[*]}"
t0=$SECONDS
# faulthandler: a crash in the library prints the Python stack of the test that was running.
(cd "$work" && LD_LIBRARY_PATH="$SOFTRDMA_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" PYTHONFAULTHANDLER=1 \
  timeout -k 10 "${PYVERBS_TIMEOUT:-600}" "$python" tests/run_tests.py --dev "$VERBS_DEVICE" -v "${modules[@]}") \
  >"$log" 2>&1 </dev/null
rc=$?
secs=$((SECONDS - t0))

# Per-test results from the verbose lines:
#   test_name (tests.test_mod.Class.test_name)
#   Docstring ... ok | FAIL | ERROR | skipped 'reason' | expected failure | unexpected success
# (the result may come on the same line as the test name, or after its docstring line).
$python - "$log" "${modules[@]}" <<'EOF'
import re, sys, collections
log, mods = sys.argv[1], sys.argv[2:]
text = open(log, errors='replace').read().splitlines()
start = re.compile(r'^(test\w*) \((?:tests\.)?(\w+)\.(\w+)\.(\w+)\)')
# (a test that prints leaves its result alone on a later line)
res = re.compile(r'(?:^| \.\.\. )(ok|FAIL|ERROR|skipped(?: .*)?|expected failure|unexpected success)$')
cur, results = None, collections.OrderedDict()
for line in text:
    m = start.match(line)
    if m:
        cur = (m.group(2), m.group(3) + '.' + m.group(1))
    r = res.search(line)
    if r and cur:
        results[cur] = r.group(1)
        cur = None
counts = collections.OrderedDict((m, collections.Counter()) for m in mods)
reasons = collections.Counter()
for (mod, name), r in results.items():
    kind = 'skip' if r.startswith('skipped') else {'ok': 'pass', 'FAIL': 'fail', 'ERROR': 'error',
                                                   'expected failure': 'pass', 'unexpected success': 'fail'}[r]
    counts.setdefault(mod, collections.Counter())[kind] += 1
    if kind == 'skip':
        reasons[r[len('skipped'):].strip()] += 1
print('| module | tests | pass | skip | fail | error |')
print('|---|---:|---:|---:|---:|---:|')
tot = collections.Counter()
for mod, c in counts.items():
    n = sum(c.values())
    tot.update(c)
    print(f'| {mod} | {n} | {c["pass"]} | {c["skip"]} | {c["fail"]} | {c["error"]} |')
print(f'| **total** | **{sum(tot.values())}** | **{tot["pass"]}** | **{tot["skip"]}** | **{tot["fail"]}** | **{tot["error"]}** |')
print()
print('skip reasons (count):')
for r, n in reasons.most_common():
    print(f'  {n:4d}  {r[:150]}')
bad = [(m, t, r) for (m, t), r in results.items() if r in ('FAIL', 'ERROR', 'unexpected success')]
if bad:
    print()
    print('failed / errored tests:')
    for m, t, r in bad:
        print(f'  {r:5s} {m}.{t}')
EOF

# The unittest summary is authoritative: "Ran 171 tests in 12.3s" and "OK (skipped=89)" or
# "FAILED (failures=1, errors=2, skipped=80)".
ran=$(sed -nE 's/^Ran ([0-9]+) tests? in .*/\1/p' "$log" | tail -n 1)
verdict=$(grep -E '^(OK|FAILED)( \(.*\))?$' "$log" | tail -n 1)
count() { sed -nE "s/.*[(, ]$1=([0-9]+).*/\1/p" <<<"$verdict"; }
failures=$(count failures)
errors=$(count errors)
skipped=$(count skipped)
xfail=$(count 'expected failures')
usucc=$(count 'unexpected successes')
failures=${failures:-0} errors=${errors:-0} skipped=${skipped:-0} xfail=${xfail:-0} usucc=${usucc:-0}

echo
if [[ -z $ran || -z $verdict ]]; then
  echo "----- the end of the suite's output"
  tail -n 60 "$log" | sed 's/^/  | /'
  last=$(grep -E '^test\w* \(' "$log" | tail -n 1)
  die "no unittest summary: the suite crashed or hung (exit $rc after ${secs}s; last test started: ${last:-none})"
fi
passed=$((ran - failures - errors - skipped - usucc))
echo "pyverbs: $ran tests, $passed passed, $skipped skipped, $failures failed, $errors errors (${secs}s, exit $rc)"
bad_skips=$(grep -E " \.\.\. skipped |^skipped " "$log" |
  grep -iE "No supported port is up|no (rdma |ib )?devices|Failed to get device|Failed to open|Couldn't" | sort | uniq -c)
if [[ -n $bad_skips ]]; then
  printf '%s\n' "$bad_skips" | sed 's/^/  /'
  die "pyverbs: tests skipped because the device itself is unusable, not because a feature is missing"
fi
min_pass=${PYVERBS_MIN_PASS:-0}
if ((${#modules[@]} == 20 && passed < min_pass)); then
  die "pyverbs: only $passed tests passed, expected at least $min_pass (PYVERBS_MIN_PASS): something that passed now skips"
fi
if ((failures + errors + usucc > 0 || rc != 0)); then
  echo
  echo "----- tracebacks"
  # unittest prints each failure between a line of '=' and the next one, ending with the summary.
  awk '/^=====+$/ { p = 1 } /^Ran [0-9]+ tests? in / { p = 0 } p' "$log" | head -n 400 | sed 's/^/  | /'
  die "pyverbs: $failures failures, $errors errors, $usucc unexpected successes (exit $rc)"
fi
echo "PASS"
