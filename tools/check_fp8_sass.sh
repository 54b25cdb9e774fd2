#!/usr/bin/env bash
# check_fp8_sass.sh — proves, without a GPU, that the FP8 GEMM runs on FP8 tensor cores: compiles
# kernels/fp8_gemm.cu for sm_89 (Ada; -a for other targets), disassembles the cubin with cuobjdump -sass and
# counts, per kernel, the tensor-core MMA instructions (FP8: the SASS opcode names E4M3 operands), ldmatrix
# (LDSM), cp.async (LDGSTS) and 16-byte global loads (LDG.E.128). Fails unless the e4m3 GEMM kernel has FP8 MMA
# instructions and the bf16 (sm_80/86) path has bf16 HMMA.
#
# Usage: tools/check_fp8_sass.sh [-a 89] [-k]   (-k: keep the SASS in build/fp8_sm_XX.sass)
#   NVCC=/path/to/nvcc, CUOBJDUMP=/path/to/cuobjdump override the tools. cuobjdump: $CUOBJDUMP, else next to nvcc,
#   else on PATH, else the copy in the `triton` Python wheel (pip install triton).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
ARCH=89
KEEP=0
while getopts "a:kh" opt; do
  case $opt in
    a) ARCH=$OPTARG ;;
    k) KEEP=1 ;;
    h) sed -n '2,11p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done

find_cuobjdump() {
  if [[ -n ${CUOBJDUMP:-} ]]; then echo "$CUOBJDUMP"; return; fi
  local d; d=$(dirname "$NVCC")
  if [[ -x $d/cuobjdump ]]; then echo "$d/cuobjdump"; return; fi
  if command -v cuobjdump >/dev/null; then command -v cuobjdump; return; fi
  local t
  t=$(python3 -c 'import os, triton; print(os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump"))' 2>/dev/null || true)
  if [[ -n $t && -x $t ]]; then echo "$t"; return; fi
  echo ""
}
[[ -x $NVCC ]] || { echo "check_fp8_sass: nvcc not found (set NVCC)" >&2; exit 2; }
CUOBJDUMP=$(find_cuobjdump)
[[ -n $CUOBJDUMP ]] || { echo "check_fp8_sass: cuobjdump not found (set CUOBJDUMP, or pip install triton)" >&2; exit 2; }
DEMANGLE=$(command -v cu++filt || command -v c++filt || echo cat)

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "# $($NVCC --version | tail -1)"
echo "# $($CUOBJDUMP --version | tail -1) ($CUOBJDUMP)"
"$NVCC" -std=c++20 -arch=sm_$ARCH -I"$ROOT" -cubin -o "$TMP/fp8.cubin" "$ROOT/kernels/fp8_gemm.cu"
"$CUOBJDUMP" -sass "$TMP/fp8.cubin" >"$TMP/fp8.sass"
if [[ $KEEP == 1 ]]; then mkdir -p "$ROOT/build" && cp "$TMP/fp8.sass" "$ROOT/build/fp8_sm_$ARCH.sass"; fi

# Split the listing per function and count the instructions of interest.
awk -v out="$TMP/fn" '
  /Function : / { n++; name = $NF; print name > (out "." n ".name"); next }
  n > 0 { print > (out "." n ".sass") }
' "$TMP/fp8.sass"
status=0
printf "%-44s %6s %6s %6s %6s %6s  %s\n" "kernel (sm_$ARCH)" "MMA" "FP8" "LDSM" "LDGSTS" "LDG128" "MMA opcodes"
for f in "$TMP"/fn.*.name; do
  base=${f%.name}
  name=$(echo "$(cat "$f")" | $DEMANGLE | sed -E 's/^void //; s/infer::cuda::\(anonymous namespace\):://; s/\(.*//')
  sass=$base.sass
  mma=$(grep -cE '\b[HQ]MMA\.' "$sass" || true)
  fp8=$(grep -E '\b[HQ]MMA\.' "$sass" | grep -cE 'E4M3|E5M2' || true)
  ldsm=$(grep -cE '\bLDSM\b' "$sass" || true)
  ldgsts=$(grep -cE '\bLDGSTS\b' "$sass" || true)
  ldg128=$(grep -cE '\bLDG\.E\.(128|U\.128|EL\.128|ENL2\.128|LTC128B\.128)' "$sass" || true)
  ops=$(grep -oE '\b[HQ]MMA\.[A-Z0-9.]+' "$sass" | sort | uniq -c | awk '{printf "%s x%s  ", $2, $1}' || true)
  printf "%-44s %6d %6d %6d %6d %6d  %s\n" "$name" "$mma" "$fp8" "$ldsm" "$ldgsts" "$ldg128" "$ops"
  if [[ $name == *"fp8_gemm_kernel<true>"* && $ARCH -ge 89 && $fp8 -eq 0 ]]; then
    echo "check_fp8_sass: fp8_gemm_kernel<true> has no FP8 MMA instruction for sm_$ARCH" >&2
    status=1
  fi
  if [[ $name == *"fp8_gemm_kernel<false>"* ]] && ! grep -qE '\bHMMA\.16816\.F32\.BF16' "$sass"; then
    echo "check_fp8_sass: fp8_gemm_kernel<false> has no bf16 HMMA for sm_$ARCH" >&2
    status=1
  fi
done
if [[ $status == 0 ]]; then echo "check_fp8_sass: OK"; fi
exit $status
