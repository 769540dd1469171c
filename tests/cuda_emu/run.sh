#!/usr/bin/env bash
# run.sh: builds CUDA kernels for the CPU through the emulation headers in this folder (the <<<>>>
# launches rewritten as emu::launch calls) and runs their tests against the CPU kernels under
# AddressSanitizer + UBSan: test_emu_linear_scan (csrc/cuda/linear_scan.cu) and
# test_emu_lti_kernels (ssm_kernel.cu, cauchy.cu), test_emu_selective_scan (selective_scan*.cu) and
# test_emu_mimo_selective_scan (mimo_selective_scan.cu, against double loops of its own).
# Usage: tests/cuda_emu/run.sh [number of random cases] [linear_scan|lti|selective_scan|mimo|all] [test args]
# EMU_FLAGS adds compiler flags (e.g. -DLRNN_TW for a variant of the linear-scan launchers).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${EMU_BUILD:-$root/build/cuda_emu}
what=${2:-all}
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -pthread
       -I"$here" -I"$root/csrc/include" -I"$root/csrc/cuda" -I"$out" ${EMU_FLAGS:-})
cflags=(-std=c11 -O1 -g -fsanitize=address,undefined -I"$root/csrc/include")

emulate() {  # $1: csrc/cuda/<name>.cu or .cuh -> $out/<name>_emu.<ext>; a .cu is compiled to .o
  local name ext
  name=$(basename "$1"); ext=${name##*.}; name=${name%.*}
  local dst=$out/${name}_emu.$ext
  [[ $ext == cu ]] && dst=$out/${name}_emu.cpp
  python3 - "$root/$1" "$dst" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
src = re.sub(r"(\w+(?:<\w+>)?)<<<([^;]*?)>>>\(([^;]*?)\);", r"emu::launch(\2, \1, \3);", src)
src = re.sub(r"extern __shared__ __align__\(16\) unsigned char (\w+)\[\];", r"unsigned char *\1 = emu::dyn_smem();", src)
src = re.sub(r'#include "(\w+)_kernels.cuh"', r'#include "\1_kernels_emu.cuh"', src)
assert "<<<" not in src and "extern __shared__" not in src
open(sys.argv[2], "w").write(src)
PY
  if [[ $ext == cu ]]; then g++ "${flags[@]}" -c "$out/${name}_emu.cpp" -o "$out/${name}_emu.o"; fi
}

gcc "${cflags[@]}" -c "$root/csrc/cpu/common.c" -o "$out/cpu_common.o"
if [[ $what == all || $what == linear_scan ]]; then
  emulate csrc/cuda/linear_scan.cu
  gcc "${cflags[@]}" -c "$root/csrc/cpu/linear_scan.c" -o "$out/cpu_scan.o"
  g++ "${flags[@]}" "$here/test_emu_linear_scan.cpp" "$out/linear_scan_emu.o" "$out/cpu_scan.o" "$out/cpu_common.o" \
    -o "$out/test_emu_linear_scan"
  "$out/test_emu_linear_scan" "${1:-200}" ${3:-}
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
if [[ $what == all || $what == selective_scan ]]; then
  emulate csrc/cuda/selective_scan_kernels.cuh
  objs=()
  for f in selective_scan selective_scan_f32 selective_scan_bf16 selective_scan_f16; do
    emulate csrc/cuda/$f.cu
    objs+=("$out/${f}_emu.o")
  done
  gcc "${cflags[@]}" -c "$root/csrc/cpu/selective_scan.c" -o "$out/cpu_ss.o"
  g++ "${flags[@]}" "$here/test_emu_selective_scan.cpp" "${objs[@]}" "$out/cpu_ss.o" "$out/cpu_common.o" \
    -o "$out/test_emu_selective_scan"
  "$out/test_emu_selective_scan" "${1:-60}"
fi
if [[ $what == all || $what == mimo ]]; then
  emulate csrc/cuda/mimo_selective_scan.cu
  g++ "${flags[@]}" "$here/test_emu_mimo_selective_scan.cpp" "$out/mimo_selective_scan_emu.o" \
    -o "$out/test_emu_mimo_selective_scan"
  "$out/test_emu_mimo_selective_scan" "${1:-4}"
fi
