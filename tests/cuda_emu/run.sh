#!/usr/bin/env bash
# run.sh: builds CUDA kernels for the CPU through the emulation headers in this folder (the <<<>>>
# launches rewritten as emu::launch calls) and runs their tests against the CPU kernels under
# AddressSanitizer + UBSan: test_emu_linear_scan (csrc/cuda/linear_scan.cu) and
# test_emu_lti_kernels (ssm_kernel.cu, cauchy.cu).
# Usage: tests/cuda_emu/run.sh [number of random linear-scan cases] [linear_scan|lti|all]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${EMU_BUILD:-$root/build/cuda_emu}
what=${2:-all}
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -pthread
       -I"$here" -I"$root/csrc/include" -I"$root/csrc/cuda")
cflags=(-std=c11 -O1 -g -fsanitize=address,undefined -I"$root/csrc/include")

emulate() {  # $1: csrc/cuda/<name>.cu -> $out/<name>_emu.o
  local name
  name=$(basename "$1" .cu)
  python3 - "$root/$1" "$out/${name}_emu.cpp" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
src = re.sub(r"(\w+(?:<\w+>)?)<<<([^;]*?)>>>\(([^;]*?)\);", r"emu::launch(\2, \1, \3);", src)
src = src.replace("extern __shared__ __align__(16) unsigned char smem[];", "unsigned char *smem = emu::dyn_smem();")
assert "<<<" not in src
open(sys.argv[2], "w").write(src)
PY
  g++ "${flags[@]}" -c "$out/${name}_emu.cpp" -o "$out/${name}_emu.o"
}

gcc "${cflags[@]}" -c "$root/csrc/cpu/common.c" -o "$out/cpu_common.o"
if [[ $what == all || $what == linear_scan ]]; then
  emulate csrc/cuda/linear_scan.cu
  gcc "${cflags[@]}" -c "$root/csrc/cpu/linear_scan.c" -o "$out/cpu_scan.o"
  g++ "${flags[@]}" "$here/test_emu_linear_scan.cpp" "$out/linear_scan_emu.o" "$out/cpu_scan.o" "$out/cpu_common.o" \
    -o "$out/test_emu_linear_scan"
  "$out/test_emu_linear_scan" "${1:-200}"
fi
if [[ $what == all || $what == lti ]]; then
  emulate csrc/cuda/ssm_kernel.cu
  emulate csrc/cuda/cauchy.cu
  gcc "${cflags[@]}" -c "$root/csrc/cpu/ssm_kernel.c" -o "$out/cpu_ssm_kernel.o"
  gcc "${cflags[@]}" -c "$root/csrc/cpu/cauchy.c" -o "$out/cpu_cauchy.o"
  g++ "${flags[@]}" "$here/test_emu_lti_kernels.cpp" "$out/ssm_kernel_emu.o" "$out/cauchy_emu.o" \
    "$out/cpu_ssm_kernel.o" "$out/cpu_cauchy.o" "$out/cpu_common.o" -o "$out/test_emu_lti_kernels"
  "$out/test_emu_lti_kernels"
fi
