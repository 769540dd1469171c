#!/usr/bin/env bash
# tests/gpu/tm.sh: the time-major CUDA linear-scan kernels on the H200 in <= 60 s, from the repo
# root after `pip install --no-build-isolation -e .` (which leaves build/liblrnn_cuda_kernels.a).
#  1. links the C-level benchmark (benchmarks/cuda/linear_scan_c.cu) against the kernels of that
#     build, while nvcc compiles main's kernels (benchmarks/cuda/linear_scan_base.cu) with renamed
#     entry points in the background;
#  2. ncu of the pipelined forward (scan_fwd_tp) at (8, 4096, 1536) bf16 time-major: stall
#     reasons of the whole kernel and the SASS lines with the most stall samples;
#  3. base (main) and current side by side in one run on every time-major case of (8, 4096, 1536)
#     and (2, 65536, 1536) plus the bf16 time-invariant channel-major ones (each checked against
#     the CPU kernel on 7 rows: the rel columns).
# Logs in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/lrnn_gpu_out}
mkdir -p "$OUT" build
T0=$SECONDS
NV="nvcc -O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include"
(timeout 50 $NV -Dlrnn_linear_scan_fwd_cuda=lrnn_base_linear_scan_fwd_cuda \
   -Dlrnn_linear_scan_bwd_cuda=lrnn_base_linear_scan_bwd_cuda -c benchmarks/cuda/linear_scan_base.cu \
   -o build/lsc_base.o > "$OUT/build_base.log" 2>&1; echo $? > "$OUT/build_base.rc") &
CPU="csrc/cpu/linear_scan.c csrc/cpu/common.c"
if [ -f build/liblrnn_cuda_kernels.a ]; then CUR="build/liblrnn_cuda_kernels.a"; else CUR="csrc/cuda/linear_scan.cu"; fi
$NV -c benchmarks/cuda/linear_scan_c.cu -o build/lsc_cur_main.o > "$OUT/build_cur.log" 2>&1 &&
  $NV -DLSC_COMPARE -c benchmarks/cuda/linear_scan_c.cu -o build/lsc_cmp_main.o >> "$OUT/build_cur.log" 2>&1 &&
  $NV build/lsc_cur_main.o $CUR $CPU -o build/lsc_cur >> "$OUT/build_cur.log" 2>&1
echo "build cur rc=$? from $CUR ($((SECONDS - T0)) s)"

# 2. ncu: one launch of the bf16 time-major forward
NCU_ONLY="(8,4096,1536) bfloat16 tm full"
if command -v ncu > /dev/null; then
  s=$SECONDS
  ONLY="$NCU_ONLY" REPS=1 timeout 25 ncu --clock-control none -k regex:scan_fwd_tp --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section SchedulerStats --section SourceCounters --section MemoryWorkloadAnalysis \
    --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
    -o "$OUT/ncu_tp_fwd_bf16" -f ./build/lsc_cur 8 4096 1536 > "$OUT/ncu_run.log" 2>&1
  echo "ncu rc=$? ($((SECONDS - s)) s)"
  ncu -i "$OUT/ncu_tp_fwd_bf16.ncu-rep" --page details > "$OUT/ncu_tp_fwd_bf16.txt" 2>&1
  ncu -i "$OUT/ncu_tp_fwd_bf16.ncu-rep" --page raw --csv > "$OUT/ncu_tp_fwd_bf16_raw.csv" 2>&1
  ncu -i "$OUT/ncu_tp_fwd_bf16.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu_tp_fwd_bf16_sass.csv" 2>&1
  grep -E "^  [a-z].*\(|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Block Limit (Reg|Shared)|Warp Cycles Per Issued|Issued Warp|No Eligible|Dynamic Shared" \
    "$OUT/ncu_tp_fwd_bf16.txt" | sed -E 's/ +/ /g' | head -n 14
  python3 - "$OUT/ncu_tp_fwd_bf16_raw.csv" "$OUT/ncu_tp_fwd_bf16_sass.csv" <<'EOF'
import csv, sys
# kernel-level stall reasons (warps per issued instruction), largest first
try:
    rows = list(csv.reader(open(sys.argv[1])))
    hdr, vals = rows[0], rows[-1]
    st = []
    for h, v in zip(hdr, vals):
        if h.startswith("smsp__average_warps_issue_stalled_") and h.endswith("per_issue_active.ratio"):
            try: st.append((float(v.replace(",", "")), h[len("smsp__average_warps_issue_stalled_"):-len("_per_issue_active.ratio")]))
            except ValueError: pass
    st.sort(reverse=True)
    print("stalls/issue:", " ".join(f"{n}={v:.2f}" for v, n in st[:9]))
except Exception as e:
    print("raw page unreadable:", e)
# SASS lines with the most stall samples
try:
    lines = open(sys.argv[2]).read().splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith('"Address"') or '"Source"' in l)
    rows = list(csv.reader(lines[i:]))
    hdr = rows[0]
    tot = next(k for k, h in enumerate(hdr) if "Sampling (All" in h)
    src = hdr.index("Source")
    reasons = [k for k, h in enumerate(hdr) if h.lower().startswith("stall_") or "stalled" in h.lower()]
    def num(x):
        try: return float(x.replace(",", ""))
        except ValueError: return 0.0
    body = [r for r in rows[1:] if len(r) == len(hdr)]
    all_s = sum(num(r[tot]) for r in body) or 1.0
    print(f"sass: {len(body)} lines, {all_s:.0f} samples; columns with reasons: {len(reasons)}")
    for r in sorted(body, key=lambda r: -num(r[tot]))[:12]:
        top = sorted(((num(r[k]), hdr[k]) for k in reasons), reverse=True)[:2]
        print(f"{100 * num(r[tot]) / all_s:5.1f}% {r[src][:46]:46s} " + " ".join(f"{n[:18]}={v:.0f}" for v, n in top if v > 0))
except Exception as e:
    print("source page unreadable:", e, open(sys.argv[2]).read()[:300].replace("\n", " | "))
EOF
fi

# 3. base vs current, one run
wait
echo "build base rc=$(cat "$OUT/build_base.rc") ($((SECONDS - T0)) s)"
if [ "$(cat "$OUT/build_base.rc")" = 0 ] && $NV build/lsc_cmp_main.o build/lsc_base.o $CUR $CPU -o build/lsc_cmp \
     >> "$OUT/build_cur.log" 2>&1; then
  BIN=./build/lsc_cmp
else
  BIN=./build/lsc_cur; echo "no base: current kernels only"
fi
s=$SECONDS
left() { local l=$(( 58 - (SECONDS - T0) )); echo $(( l < 8 ? 8 : l )); }
ONLY=" tm " REPS=${REPS:-5} timeout $(left) $BIN 8 4096 1536 2 65536 1536 > "$OUT/tm_bench.log" 2>&1
echo "bench rc=$? ($((SECONDS - s)) s)"
ONLY="bfloat16 cm inv" REPS=${REPS:-5} timeout $(left) $BIN 8 4096 1536 2 65536 1536 2>&1 | grep -v "^#\|^(B" \
  >> "$OUT/tm_bench.log"
grep -v "^# benchmarks" "$OUT/tm_bench.log"
echo "total $((SECONDS - T0)) s"
