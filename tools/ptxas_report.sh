#!/usr/bin/env bash
# ptxas_report.sh — registers, shared memory, stack and spills of every kernel in kernels/*.cu, per GPU target.
#
# Compiles each kernels/*.cu with `nvcc -Xptxas -v` for sm_80, 86, 89, 90 and 120 (no GPU needed) and writes
# one line per (target, kernel). Fails if a compile fails or if a kernel named in the no-spill list spills
# (nonzero spill stores or loads) on any target: new spills in hot kernels are regressions.
#
# Usage: tools/ptxas_report.sh [-o REPORT] [-a "80 86 89 90 120"] [-n NO_SPILL_FILE] [FILE.cu ...]
#   -o  report path (default: build/ptxas_report.txt)
#   -a  targets (default: $INFER_PTXAS_ARCHS or "80 86 89 90 120")
#   -n  extra no-spill patterns, one extended regex per line, matched against demangled kernel names
#   NVCC=/path/to/nvcc overrides the compiler (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
ARCHS=${INFER_PTXAS_ARCHS:-"80 86 89 90 120"}
REPORT=$ROOT/build/ptxas_report.txt
EXTRA_LIST=""

# Kernels that must never spill (extended regexes over demangled names). The hot decode/prefill kernels
# go here as they land; the self-test GEMM keeps the check itself exercised.
NO_SPILL=(
  'simt_selftest_mma_gemm_kernel'
  '(^|::)rmsnorm[a-z_]*_kernel'
  '(^|::)rope[a-z_]*_kernel'
  '(^|::)gemv[a-z0-9_]*_kernel'
  '(^|::)gemm[a-z0-9_]*_kernel'
  '(^|::)(mla_)?attention[a-z0-9_]*_kernel'
  '(^|::)moe[a-z0-9_]*_kernel'
  '(^|::)mla[a-z0-9_]*_kernel'
  '(^|::)(gather_rows|kv_read)_kernel'
  '(^|::)(sample|embed|kv_write|swiglu|add|add_bias|f32_to_bf16)_kernel'
  '(^|::)fp8_[a-z0-9_]*_kernel'  # FP8 block-scaled GEMM, decode GEMV, activation quantisation (fp8_gemm.cu)
)

while getopts "o:a:n:h" opt; do
  case $opt in
    o) REPORT=$OPTARG ;;
    a) ARCHS=$OPTARG ;;
    n) EXTRA_LIST=$OPTARG ;;
    h) sed -n '2,14p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [[ -n $EXTRA_LIST ]]; then
  while IFS= read -r line; do
    [[ -z $line || $line == \#* ]] || NO_SPILL+=("$line")
  done <"$EXTRA_LIST"
fi

if [[ $# -gt 0 ]]; then
  FILES=("$@")
else
  shopt -s nullglob
  FILES=("$ROOT"/kernels/*.cu)
fi
if [[ ${#FILES[@]} -eq 0 ]]; then
  echo "ptxas_report: no kernels/*.cu" >&2
  exit 0
fi
if [[ ! -x $NVCC ]]; then
  echo "ptxas_report: nvcc not found (set NVCC)" >&2
  exit 2
fi
DEMANGLE=$(command -v cu++filt || command -v c++filt || echo cat)

mkdir -p "$(dirname "$REPORT")"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

status=0
{
  echo "# ptxas report: $($NVCC --version | tail -1)"
  echo "# target  regs  smem  stack  spill_st  spill_ld  file  kernel"
} >"$REPORT"

for f in "${FILES[@]}"; do
  for a in $ARCHS; do
    log=$TMP/$(basename "$f").$a.log
    if ! "$NVCC" -std=c++20 -arch=sm_$a -I"$ROOT" -Xptxas -v -c "$f" -o "$TMP/out.o" >"$log" 2>&1; then
      echo "ptxas_report: $f failed for sm_$a:" >&2
      cat "$log" >&2
      status=1
      continue
    fi
    # ptxas prints, per entry: "Compiling entry function 'NAME' for 'sm_XX'", then the stack/spill line,
    # then "Used N registers, ... N bytes smem, ...".
    awk -v file="$(basename "$f")" -v arch="sm_$a" -v q="'" '
      /Compiling entry function/ { split($0, parts, q); name = parts[2]; stack = 0; sst = 0; sld = 0; next }
      /bytes stack frame/ && name != "" {
        for (i = 1; i <= NF; i++) {
          if ($(i + 1) == "bytes" && $(i + 2) == "stack") stack = $i
          if ($(i + 1) == "bytes" && $(i + 2) == "spill" && $(i + 3) ~ /stores/) sst = $i
          if ($(i + 1) == "bytes" && $(i + 2) == "spill" && $(i + 3) ~ /loads/) sld = $i
        }
        next
      }
      /Used [0-9]+ registers/ && name != "" {
        regs = 0; smem = 0
        for (i = 1; i <= NF; i++) {
          if ($(i + 1) ~ /^registers/) regs = $i
          if ($(i + 1) == "bytes" && $(i + 2) ~ /^smem/) smem = $i
        }
        printf "%-7s %5d %6d %6d %9d %9d  %s  %s\n", arch, regs, smem, stack, sst, sld, file, name
        name = ""
      }
    ' "$log" >>"$TMP/lines"
  done
done

# Demangle the kernel names (last field) and append to the report.
if [[ -f $TMP/lines ]]; then
  while IFS= read -r line; do
    mangled=${line##* }
    printf '%s%s\n' "${line% *} " "$(echo "$mangled" | $DEMANGLE)"
  done <"$TMP/lines" >>"$REPORT"
fi

# Spill check over the listed kernels.
while IFS= read -r line; do
  [[ $line == \#* ]] && continue
  read -r arch regs smem stack sst sld file kernel <<<"$line"
  [[ $sst -eq 0 && $sld -eq 0 ]] && continue
  for pat in "${NO_SPILL[@]}"; do
    if [[ $kernel =~ $pat ]]; then
      echo "ptxas_report: SPILL in $kernel ($file, $arch): $sst bytes spill stores, $sld bytes spill loads" >&2
      status=1
      break
    fi
  done
done <"$REPORT"

echo "ptxas_report: $(grep -vc '^#' "$REPORT") kernel builds, report in $REPORT" >&2
exit $status
