#!/usr/bin/env bash
# tests/gpu/tm.sh: the time-major CUDA linear-scan kernels on the H200 in <= 60 s, from the repo
# root after `pip install --no-build-isolation -e .` (which leaves build/liblrnn_cuda_kernels.a).
# Prints as it goes (a timeout still leaves numbers); logs in $OUT.
#  1. links the C-level benchmark (benchmarks/cuda/linear_scan_c.cu) against the kernels of that
#     build (another build of the kernels, entry points renamed lrnn_base_..., can be linked next to
#     them: see the benchmark's header);
#  2. every time-major case of (8, 4096, 1536) and (2, 65536, 1536) with each time-major kernel
#     (LRNN_LINEAR_SCAN_TM = tm, tp, tpcl, tw, auto i.e. the launcher's choice), one process each,
#     merged into one line per case: % of the floor fwd | bwd | fwd+bwd per kernel, and the worst
#     max rel against the CPU kernel;
#     then tw and tp with 128 KB of loads in flight per SM (LRNN_LINEAR_SCAN_INFLIGHT_KB; 64 by
#     default), and the bf16 time-invariant channel-major cases with 2 and 4 vectors per thread
#     (LRNN_LINEAR_SCAN_CM = auto, wide);
#  3. the python harness (benchmarks/bench_linear_scan.py: lrnn, the PyTorch loop's forward, a
#     torch.compile'd associative scan, accelerated-scan, fla) into $OUT/harness (md, json, png);
#  4. ncu of the warp-sequential bf16 forward, when time is left.
set -uo pipefail
OUT=${OUT:-/tmp/lrnn_gpu_out}
mkdir -p "$OUT" build
T0=$SECONDS
el() { echo $((SECONDS - T0)); }
left() { local l=$(( $1 - (SECONDS - T0) )); echo $(( l < 3 ? 3 : l )); }  # seconds until T0 + $1
NV="nvcc -O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include"
CPU="csrc/cpu/linear_scan.c csrc/cpu/common.c"
if [ -f build/liblrnn_cuda_kernels.a ]; then CUR="build/liblrnn_cuda_kernels.a"; else CUR="csrc/cuda/linear_scan.cu"; fi
$NV -c benchmarks/cuda/linear_scan_c.cu -o build/lsc_main.o > "$OUT/build_cur.log" 2>&1 &&
  $NV -split-compile 4 build/lsc_main.o $CUR $CPU -o build/lsc_cur >> "$OUT/build_cur.log" 2>&1
echo "build cur rc=$? from $CUR ($(el) s)"

# 2. the time-major kernels side by side: one process per kernel (a fault costs its own rows)
merge() {  # logs of single-build runs -> one line per case: % of the floor fwd | bwd | fwd+bwd per log
  python3 - "$@" <<'EOF'
import sys
names = [a.split("=", 1)[0] for a in sys.argv[1:]]
table, rel = {}, {}
for name, path in (a.split("=", 1) for a in sys.argv[1:]):
    try:
        lines = open(path, errors="replace").readlines()
    except OSError:
        continue
    for line in lines:
        f = line.split()
        if len(f) >= 8 and f[0].startswith("(") and f[4] in ("fwd", "bwd", "fwd+bwd"):
            key = " ".join([f[0], f[1][:4]] + f[2:4])
            table.setdefault(key, {})[(name, f[4])] = f[7].rstrip("%")
            if f[4] == "fwd" and len(f) > 8:
                rel[key] = max(rel.get(key, 0.0), float(f[8]))
print("= kernels:", " ".join(names), "(% of the floor: fwd | bwd | fwd+bwd; worst max rel)")
for key, v in table.items():
    cols = [" ".join(f"{v.get((n, p), '-'):>5}" for n in names) for p in ("fwd", "bwd", "fwd+bwd")]
    print(f"= {key} | " + " | ".join(cols) + f" | {rel.get(key, 0):.1e}")
EOF
}
s=$SECONDS; logs=""
for r in tm tp tpcl tw auto; do
  ONLY=" tm " REPS=${REPS:-5} LRNN_LINEAR_SCAN_TM=$([ $r = auto ] || echo $r) timeout $(left 24) \
    ./build/lsc_cur 8 4096 1536 2 65536 1536 > "$OUT/tm_$r.log" 2>&1
  echo "$r rc=$? ($((SECONDS - s)) s)"; logs="$logs $r=$OUT/tm_$r.log"
done
grep "^#" "$OUT/tm_tm.log"; merge $logs
s=$SECONDS
for r in tw tp; do
  ONLY=" tm " REPS=${REPS:-5} LRNN_LINEAR_SCAN_INFLIGHT_KB=128 LRNN_LINEAR_SCAN_TM=$r timeout $(left 28) \
    ./build/lsc_cur 2 65536 1536 > "$OUT/tm128_$r.log" 2>&1
done
echo "long shape with 128 KB in flight ($((SECONDS - s)) s):"; merge tw=$OUT/tm128_tw.log tp=$OUT/tm128_tp.log | tail -n +2
for r in auto wide; do
  ONLY="bfloat16 cm inv" REPS=${REPS:-5} LRNN_LINEAR_SCAN_CM=$r timeout $(left 31) \
    ./build/lsc_cur 8 4096 1536 2 65536 1536 > "$OUT/cm_$r.log" 2>&1
done
echo "bf16 cm inv, 2 and 4 vectors per thread:"; merge auto=$OUT/cm_auto.log wide=$OUT/cm_wide.log | tail -n +2
grep -hE "rror|failed" "$OUT"/tm_*.log "$OUT"/tm128_*.log "$OUT"/cm_*.log | head -5

# 3. the python harness, interrupted (with its table and plot written) at T0 + 55 s
if ls .whl/accelerated_scan*.whl .whl/fla*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/tm_site \
    .whl/accelerated_scan*.whl .whl/fla*.whl .whl/flash_linear_attention*.whl > "$OUT/whl.log" 2>&1
  echo "wheels rc=$? ($(el) s)"
fi
s=$SECONDS
PYTHONPATH=/tmp/tm_site:${PYTHONPATH:-} LRNN_BENCH_REP_MS=${REP_MS:-30} timeout -s INT -k 4 $(left 55) \
  python3 benchmarks/bench_linear_scan.py --loop-fwd-only --out "$OUT/harness" > "$OUT/harness.log" 2>&1
echo "harness rc=$? ($((SECONDS - s)) s): $(grep -c " ms " "$OUT/harness.log") rows ($(grep -c " ms .*% floor  *$" \
  "$OUT/harness.log") timed); first lrnn time-major rows (all in $OUT/harness):"
grep "lrnn (CUDA)" "$OUT/harness.log" | grep time-major |
  sed -E 's/ +/ /g; s/ lrnn \(CUDA\)//; s/ [0-9]+ GB\/s//; s/ % floor.*/%/' | head -n 4

# 4. ncu of the warp-sequential forward, bf16
if command -v ncu > /dev/null && [ $(el) -lt 52 ]; then
  ONLY="(8,4096,1536) bfloat16 tm full" REPS=1 LRNN_LINEAR_SCAN_TM=tw timeout $(left 60) ncu --clock-control none \
    -k regex:scan_fwd_tw --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy \
    --section LaunchStats ./build/lsc_cur 8 4096 1536 > "$OUT/ncu_tw_fwd_bf16.txt" 2>&1
  grep -E "Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Warp Cycles Per Issued|Dynamic Shared" \
    "$OUT/ncu_tw_fwd_bf16.txt" | sed -E 's/ +/ /g' | head -n 8
fi
echo "total $(el) s"
