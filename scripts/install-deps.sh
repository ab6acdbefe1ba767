#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and running softrdma needs.
#
# Idempotent and quick when there is nothing to do: apt is not touched at all when every
# package is already installed. Never asks a question (no terminal is needed), so it runs the
# same by hand, in CI (no stdin) and in a fresh container. Needs root, or sudo.
#
#   scripts/install-deps.sh            install what is missing
#   scripts/install-deps.sh --check    only list what is missing (exit 1 if anything is)
set -euo pipefail

packages=(
  # toolchain and build
  build-essential g++ cmake ninja-build pkg-config
  # clang for the libFuzzer build, with its fuzzer/sanitizer runtimes
  clang libclang-rt-14-dev
  # libraries the tree links against
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libfmt-dev libspdlog-dev libpcap-dev
  libibverbs-dev liburing-dev
  # tests and tools: packet capture and decoding, network namespaces, TCP baseline
  tshark tcpdump iproute2 iperf3
  # verbs programs used as external tests of the drop-in library (planned)
  ibverbs-utils perftest
  # rdma-core's Python test suite (/usr/share/doc/rdma-core/tests) run by tests/verbs/pyverbs.sh
  python3-pyverbs
  # plots written by `softrdma perf --plot` and bench/compare.sh
  gnuplot-nox
  # bench/compare.sh: UCX's ucx_perftest as a peer (over TCP and shared memory); iperf3 is above
  ucx-utils
)

missing=()
for p in "${packages[@]}"; do
  # "ii " = desired install, currently installed, no error.
  if [[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null) != "ii " ]]; then
    missing+=("$p")
  fi
done

if [[ ${1:-} == --check ]]; then
  if ((${#missing[@]})); then
    echo "missing: ${missing[*]}"
    exit 1
  fi
  echo "all ${#packages[@]} packages installed"
  exit 0
fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "install-deps: missing ${missing[*]}; run as root (or install sudo)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# tshark (wireshark-common) asks whether non-root users may capture; answer "no" in advance so
# the question never blocks. Root captures either way.
echo "wireshark-common wireshark-common/install-setuid boolean false" | "${sudo[@]}" debconf-set-selections

apt_opts=(-y -q -o Dpkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

retry() {  # mirrors are sometimes briefly unreachable
  local i
  for i in 1 2 3; do
    "$@" && return 0
    echo "install-deps: attempt $i failed: $*" >&2
    sleep $((i * 5))
  done
  return 1
}

echo "install-deps: installing ${missing[*]}"
retry "${sudo[@]}" apt-get "${apt_opts[@]}" update
retry "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}"
echo "install-deps: done"
