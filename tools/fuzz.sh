#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time from its committed seed corpus (docs/hardening.md).
#   tools/fuzz.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]
# BUILD_DIR: a build configured with -DINFER_FUZZ=ON (clang, INFER_SANITIZE=address,undefined). New inputs go to
# a scratch corpus (the committed seeds are not modified); a crash, timeout, leak or OOM leaves its input in
# BUILD_DIR/fuzz-findings/ and makes the script exit non-zero. Prints executions (inputs tried) and the new inputs
# (coverage-increasing) per target.
set -euo pipefail
build=${1:?usage: tools/fuzz.sh BUILD_DIR [SECONDS] [TARGET...]}
secs=${2:-30}
shift $(( $# >= 2 ? 2 : 1 ))
src=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=($(ls "$src/tests/fuzz/corpus"))
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
findings="$build/fuzz-findings"
mkdir -p "$findings"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fail=0
printf '%-22s %10s %10s %11s %s\n' target executions exec/s new-inputs result
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/$t"
  [ -x "$bin" ] || { echo "missing $bin (build the 'fuzzers' target)"; exit 2; }
  mkdir -p "$work/$t"
  # Seeds only: the saved findings (regressions/) are replayed by ctest, and their slow, large inputs would eat
  # the time budget here.
  seeds=("$src/tests/fuzz/corpus/$t")
  log="$build/fuzz-$t.log"
  rc=0
  # -timeout: one input running longer is a hang finding; -rss_limit_mb / -malloc_limit_mb: a runaway allocation
  # is an OOM finding. -max_len leaves room above the largest seed for growth.
  "$bin" -max_total_time="$secs" -max_len=32768 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$findings/$t-" "$work/$t" "${seeds[@]}" >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  corpus=$(ls "$work/$t" | wc -l)
  if ((rc == 0)); then res=ok; else res="FAILED (rc $rc, see $log)"; fail=1; fi
  printf '%-22s %10s %10s %11s %s\n' "$t" "$execs" "$rate" "$corpus" "$res"
  if ((rc != 0)); then grep -E "ERROR|SUMMARY|fuzz finding|runtime error|Test unit written" "$log" | head -8; fi
done
exit $fail
