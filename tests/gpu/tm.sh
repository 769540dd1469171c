#!/usr/bin/env bash
# tests/gpu/tm.sh: the time-major CUDA linear-scan kernels on the H200 in <= 60 s, from the repo
# root after `pip install --no-build-isolation -e .` (which leaves build/liblrnn_cuda_kernels.a).
#  1. links the C-level benchmark (benchmarks/cuda/linear_scan_c.cu) against the kernels of that
#     build ("cur"), while nvcc compiles, with renamed entry points, main's kernels
#     (benchmarks/cuda/linear_scan_base.cu, "base") and variants of the current ones built with
#     other -D flags (see `builds` below) in the background;
#  2. ncu of the pipelined forward (scan_fwd_tp) at (8, 4096, 1536) bf16 time-major: stall
#     reasons of the whole kernel and the SASS lines with the most stall samples;
#  3. all builds side by side in one run on every time-major case of (8, 4096, 1536) and
#     (2, 65536, 1536) and the bf16 channel-major time-invariant ones (each checked against the
#     CPU kernel on 7 rows: the worst max rel), one "=" line per case; then the same for main's
#     kernels against the warp-sequential time-major ones (scan_{fwd,bwd}_tw, -DLRNN_TW), with 64
#     and 128 KB of loads in flight per SM.
# Logs in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/lrnn_gpu_out}
mkdir -p "$OUT" build
T0=$SECONDS
NV="nvcc -O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include"
NVP="$NV -split-compile 3"  # the background builds: cicc and ptxas on 3 threads each
# builds of the kernels linked next to the current ones: name, source, nvcc flags
# (knobs of disjoint cases share a build: the LRNN_CM_* ones only touch bf16 channel-major inv)
VARIANTS="nocl,s16+cmv4,deep+cmb4"
builds=("base benchmarks/cuda/linear_scan_base.cu"
        "v1 csrc/cuda/linear_scan.cu -DLRNN_TP_MAXCL=1"
        "v2 csrc/cuda/linear_scan.cu -DLRNN_TP_STEPS=16 -DLRNN_CM_INV16_VECTORS=4"
        "v3 csrc/cuda/linear_scan.cu -DLRNN_TP_INFLIGHT_KB=128 -DLRNN_CM_INV16_BLOCKS=4")
for b in "${builds[@]}"; do
  set -- $b; name=$1; src=$2; shift 2
  (timeout 52 $NVP -Xptxas -v "$@" -Dlrnn_linear_scan_fwd_cuda=lrnn_${name}_linear_scan_fwd_cuda \
     -Dlrnn_linear_scan_bwd_cuda=lrnn_${name}_linear_scan_bwd_cuda -c $src -o build/lsc_$name.o \
     > "$OUT/build_$name.log" 2>&1; echo $? > "$OUT/build_$name.rc") &
done
# the warp-sequential time-major kernels (-DLRNN_TW) as the current ones of a second binary, run
# last and alone with base (a fault there cannot cost the other numbers)
(timeout 52 $NVP -Xptxas -v -DLRNN_TW -c csrc/cuda/linear_scan.cu -o build/lsc_tw.o > "$OUT/build_tw.log" 2>&1
 echo $? > "$OUT/build_tw.rc") &
(timeout 52 $NVP -DLRNN_TW -DLRNN_TP_INFLIGHT_KB=128 -Dlrnn_linear_scan_fwd_cuda=lrnn_v1_linear_scan_fwd_cuda \
   -Dlrnn_linear_scan_bwd_cuda=lrnn_v1_linear_scan_bwd_cuda -c csrc/cuda/linear_scan.cu -o build/lsc_twdeep.o \
   > "$OUT/build_twdeep.log" 2>&1; echo $? > "$OUT/build_twdeep.rc") &
CPU="csrc/cpu/linear_scan.c csrc/cpu/common.c"
if [ -f build/liblrnn_cuda_kernels.a ]; then CUR="build/liblrnn_cuda_kernels.a"; else CUR="csrc/cuda/linear_scan.cu"; fi
$NV -c benchmarks/cuda/linear_scan_c.cu -o build/lsc_main.o > "$OUT/build_cur.log" 2>&1 &&
  $NVP build/lsc_main.o $CUR $CPU -o build/lsc_cur >> "$OUT/build_cur.log" 2>&1
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

# 3. every build side by side, one run
spills() {  # ptxas log, kernel kinds: per kind, the f32/bf16/c64 kernels that spill
  local log=$1 k out=""; shift
  for k in "$@"; do
    out="$out $k=$(grep -A2 -E "Compiling entry function '.*scan_(fwd|bwd)_${k}I(f|13__nv_bfloat16|NS_6cfloat)" "$log" |
      grep -cE " [1-9][0-9]* bytes spill stores")"
  done
  echo "$out"
}
wait
objs=""
for b in "${builds[@]}"; do
  set -- $b
  rc=$(cat "$OUT/build_$1.rc" 2> /dev/null || echo none)
  echo "build $1 rc=$rc, kernels with spills (f32/bf16/c64):$(spills "$OUT/build_$1.log" tp cm)"
  [ "$rc" = 0 ] && objs="$objs build/lsc_$1.o"
done
echo "builds done ($((SECONDS - T0)) s)"
$NV build/lsc_main.o $objs $CUR $CPU -o build/lsc_all >> "$OUT/build_cur.log" 2>&1 && BIN=./build/lsc_all || BIN=./build/lsc_cur
export VARIANTS
s=$SECONDS
left() { local l=$(( $1 - (SECONDS - T0) )); echo $(( l < 6 ? 6 : l )); }  # seconds until T0 + $1
ONLY=" tm " REPS=${REPS:-5} timeout $(left 44) $BIN 8 4096 1536 2 65536 1536 > "$OUT/tm_bench.log" 2>&1
ONLY="bfloat16 cm inv" REPS=${REPS:-5} timeout $(left 48) $BIN 8 4096 1536 2 65536 1536 >> "$OUT/tm_bench.log" 2>&1
echo "bench rc=$? ($((SECONDS - s)) s)"
grep -E "^#|^= b" "$OUT/tm_bench.log" | sort -u
grep -E "^= \(|rror|failed" "$OUT/tm_bench.log"
echo "build tw rc=$(cat "$OUT/build_tw.rc"), kernels with spills (f32/bf16/c64):$(spills "$OUT/build_tw.log" tw)"
twobjs="build/lsc_base.o build/lsc_tw.o"
[ "$(cat "$OUT/build_twdeep.rc")" = 0 ] && twobjs="$twobjs build/lsc_twdeep.o"
if [ "$(cat "$OUT/build_tw.rc")" = 0 ] && $NV build/lsc_main.o $twobjs $CPU -o build/lsc_tw >> "$OUT/build_cur.log" 2>&1; then
  s=$SECONDS
  ONLY=" tm " REPS=${REPS:-5} VARIANTS=twdeep timeout $(left 58) ./build/lsc_tw 8 4096 1536 2 65536 1536 \
    > "$OUT/tw_bench.log" 2>&1
  echo "tw bench rc=$? ($((SECONDS - s)) s): $(grep "^= b" "$OUT/tw_bench.log" | sed 's/cur/tw/')"
  grep -E "^= \(|rror|failed" "$OUT/tw_bench.log"
fi
echo "total $((SECONDS - T0)) s"
