# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run): the build configurations,
# defined once so the demo and the tests reuse the same build/ instead of reconfiguring it.

# configure DIR [cmake args...]: configures DIR with Ninja (or keeps the generator an existing
# build directory already has).
configure() {
  local dir=$1
  shift
  local gen=()
  [[ -f $dir/CMakeCache.txt ]] || gen=(-G Ninja)
  cmake -S . -B "$dir" "${gen[@]}" "$@"
}

# build/: optimised with debug info; the demo, the tools, the tests and the benchmarks.
configure_main() {
  configure build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOFTRDMA_TESTS=ON -DSOFTRDMA_BENCH=ON
}

# build-asan/: the tests under AddressSanitizer + UndefinedBehaviorSanitizer.
configure_asan() {
  configure build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOFTRDMA_SANITIZE=ON -DSOFTRDMA_TESTS=ON \
    -DSOFTRDMA_BENCH=OFF
}

# build-fuzz/: clang, the libFuzzer targets only (build them with --target fuzz/all).
configure_fuzz() {
  configure build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DSOFTRDMA_FUZZ=ON \
    -DSOFTRDMA_TESTS=OFF -DSOFTRDMA_BENCH=OFF "$@"
}

build_jobs() { nproc 2>/dev/null || echo 2; }
