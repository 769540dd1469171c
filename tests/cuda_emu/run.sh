#!/usr/bin/env bash
# run.sh: builds the CUDA linear-scan kernels for the CPU through the emulation headers in this
# folder (the <<<>>> launches rewritten as emu::launch calls) and runs test_emu_linear_scan
# under AddressSanitizer + UBSan. Usage: tests/cuda_emu/run.sh [number of random cases]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${EMU_BUILD:-$root/build/cuda_emu}
mkdir -p "$out"
python3 - "$root/csrc/cuda/linear_scan.cu" "$out/linear_scan_emu.cpp" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
src = re.sub(r"(\w+)<<<([^;]*?)>>>\(([^;]*?)\);", r"emu::launch(\2, \1, \3);", src)
src = src.replace("extern __shared__ __align__(16) unsigned char smem[];", "unsigned char *smem = emu::dyn_smem();")
assert "<<<" not in src
open(sys.argv[2], "w").write(src)
PY
flags=(-std=c++20 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -pthread
       -I"$here" -I"$root/csrc/include" -I"$root/csrc/cuda")
g++ "${flags[@]}" -c "$out/linear_scan_emu.cpp" -o "$out/linear_scan_emu.o"
gcc -std=c11 -O1 -g -fsanitize=address,undefined -I"$root/csrc/include" -c "$root/csrc/cpu/linear_scan.c" -o "$out/cpu_scan.o"
gcc -std=c11 -O1 -g -I"$root/csrc/include" -c "$root/csrc/cpu/common.c" -o "$out/cpu_common.o"
g++ "${flags[@]}" "$here/test_emu_linear_scan.cpp" "$out/linear_scan_emu.o" "$out/cpu_scan.o" "$out/cpu_common.o" \
  -o "$out/test_emu_linear_scan"
"$out/test_emu_linear_scan" "${1:-200}"
