#!/usr/bin/env bash
# run_selective_scan.sh: builds the CUDA selective-scan kernels for the CPU through the emulation
# headers in this folder and runs test_emu_selective_scan (vs the CPU kernels) under
# AddressSanitizer + UBSan. Usage: tests/cuda_emu/run_selective_scan.sh [number of random cases]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${EMU_BUILD:-$root/build/cuda_emu}
mkdir -p "$out"
for f in selective_scan selective_scan_f32 selective_scan_bf16 selective_scan_f16; do
  python3 - "$root/csrc/cuda/$f.cu" "$out/${f}_emu.cpp" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
src = re.sub(r"(\w+)<<<([^;]*?)>>>\(([^;]*?)\);", r"emu::launch(\2, \1, \3);", src)
src = src.replace('#include "selective_scan_kernels.cuh"', '#include "selective_scan_kernels_emu.cuh"')
assert "<<<" not in src
open(sys.argv[2], "w").write(src)
PY
done
python3 - "$root/csrc/cuda/selective_scan_kernels.cuh" "$out/selective_scan_kernels_emu.cuh" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
src = re.sub(r"(\w+)<<<([^;]*?)>>>\(([^;]*?)\);", r"emu::launch(\2, \1, \3);", src)
src = re.sub(r"extern __shared__ __align__\(16\) unsigned char (\w+)\[\];", r"unsigned char *\1 = emu::dyn_smem();", src)
assert "<<<" not in src and "extern __shared__" not in src
open(sys.argv[2], "w").write(src)
PY
flags=(-std=c++20 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -pthread
       -I"$here" -I"$root/csrc/include" -I"$root/csrc/cuda" -I"$out")
objs=()
for f in selective_scan selective_scan_f32 selective_scan_bf16 selective_scan_f16; do
  g++ "${flags[@]}" -c "$out/${f}_emu.cpp" -o "$out/${f}_emu.o"
  objs+=("$out/${f}_emu.o")
done
gcc -std=c11 -O1 -g -I"$root/csrc/include" -c "$root/csrc/cpu/selective_scan.c" -o "$out/cpu_ss.o"
gcc -std=c11 -O1 -g -I"$root/csrc/include" -c "$root/csrc/cpu/common.c" -o "$out/cpu_common.o"
g++ "${flags[@]}" "$here/test_emu_selective_scan.cpp" "${objs[@]}" "$out/cpu_ss.o" "$out/cpu_common.o" \
  -o "$out/test_emu_selective_scan"
"$out/test_emu_selective_scan" "${1:-60}"
