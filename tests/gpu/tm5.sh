#!/usr/bin/env bash
# tests/gpu/tm5.sh: the time-major CUDA linear-scan kernels and the benchmark harness on the H200 in
# <= 60 s, from the repo root after `pip install --no-build-isolation -e .` (which leaves
# build/liblrnn_cuda_kernels.a). Prints as it goes (a timeout still leaves numbers); logs in $OUT.
#  1. links the C-level benchmark (benchmarks/cuda/linear_scan_c.cu) against the kernels of that
#     build, then starts the JIT build of accelerated_scan.warp in the background (for 3.);
#  2. every time-major case of (8, 4096, 1536) and (2, 65536, 1536) with each time-major kernel
#     forced (LRNN_LINEAR_SCAN_TM = tm, tp, tpcl, tw; tp16 = tp with 16 steps per warp, tpcl8 =
#     tpcl with 8, LRNN_LINEAR_SCAN_TP_STEPS; auto = the launcher's choice), one process each,
#     merged into one line per case: % of the floor fwd | bwd | fwd+bwd per kernel, worst max rel
#     against the CPU kernel; the few-channel shape (8, 65536, 128) (the event benchmark's unfused
#     path runs complex64 there) the same way; bfloat16 on channel pairs (tw2, tp2, tpcl2);
#  3. a subset of the python harness (benchmarks/bench_linear_scan.py) with every provider, to see
#     that each runs and what its setup costs: $OUT/harness (md, json, png);
#  4. fwd+bwd through torch against its kernels alone (tests/gpu/linear_scan_overhead.py).
set -uo pipefail
OUT=${OUT:-/tmp/lrnn_gpu_out}
mkdir -p "$OUT" build
export PYTHONUNBUFFERED=1
T0=$SECONDS
el() { echo $((SECONDS - T0)); }
left() { local l=$(( $1 - (SECONDS - T0) )); echo $(( l < 3 ? 3 : l )); }  # seconds until T0 + $1
cap() { local l=$(left $1); echo $(( l < $2 ? l : $2 )); }  # left, at most $2 (a hung kernel costs its own run)

# 1. the C benchmark against this build's kernels
NV="nvcc -O3 -arch=sm_90 --use_fast_math -lineinfo -std=c++17 -Icsrc/include"
CPU="csrc/cpu/linear_scan.c csrc/cpu/common.c"
if [ -f build/liblrnn_cuda_kernels.a ]; then CUR="build/liblrnn_cuda_kernels.a"; else CUR="csrc/cuda/linear_scan.cu"; fi
$NV -c benchmarks/cuda/linear_scan_c.cu -o build/lsc_main.o > "$OUT/build_cur.log" 2>&1 &&
  $NV -split-compile 4 build/lsc_main.o $CUR $CPU -o build/lsc_cur >> "$OUT/build_cur.log" 2>&1
echo "build cur rc=$? from $CUR ($(el) s)"

# the anchors: importable from PYTHONPATH (batch.sh installs .whl there), else from .whl here; the
# accelerated_scan.warp JIT build starts after the build above (it competes for the cores)
if ! python3 -c "import accelerated_scan, fla" 2> /dev/null && ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/tm5_site \
    .whl/accelerated_scan*.whl .whl/fla*.whl .whl/flash_linear_attention*.whl > "$OUT/whl.log" 2>&1
  export PYTHONPATH=/tmp/tm5_site:${PYTHONPATH:-}
fi
# a torch extension folder of this script's own: an interrupted build's lock stays out of later runs
export TORCH_EXTENSIONS_DIR=/tmp/tm5_torch_ext
( s=$SECONDS; python3 -c "import accelerated_scan.warp"; echo "prebuild rc=$? in $((SECONDS - s)) s" ) \
  > "$OUT/warp_prebuild.log" 2>&1 &
WARP=$!

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
route() {  # name -> the environment that forces it (a trailing 8 / 16: steps per warp of tp, tpcl)
  case $1 in
    auto) echo "LRNN_LINEAR_SCAN_TM=" ;;
    *16) echo "LRNN_LINEAR_SCAN_TM=${1%16} LRNN_LINEAR_SCAN_TP_STEPS=16" ;;
    *8) echo "LRNN_LINEAR_SCAN_TM=${1%8} LRNN_LINEAR_SCAN_TP_STEPS=8" ;;
    *) echo "LRNN_LINEAR_SCAN_TM=$1" ;;
  esac
}
table() {  # tag deadline "routes" "cases" shapes... : the cases of the shapes with each kernel
  local tag=$1 until=$2 routes=$3 only=$4 logs="" s=$SECONDS r
  shift 4
  for r in $routes; do
    env $(route $r) ONLY="$only" REPS=${REPS:-5} timeout $(cap $until 8) ./build/lsc_cur "$@" > "$OUT/${tag}_$r.log" 2>&1
    local rc=$?; [ $rc -ne 0 ] && echo "$tag $r rc=$rc"
    logs="$logs $r=$OUT/${tag}_$r.log"
  done
  echo "$tag: $* ($((SECONDS - s)) s)"
  merge $logs
  grep -hE "rror|failed|FAIL" "$OUT/${tag}"_*.log | head -5
}

# 2. the kernels side by side (auto = this build's routing; tp16 = tp with 16 steps per warp, tpcl8
#    = tpcl with 8; tw2/tp2/tpcl2 = 2-byte types on channel pairs)
table tm 16 "tp tp16 tpcl tpcl8 tw auto" " tm " 8 4096 1536 2 65536 1536
grep -h "^#" "$OUT/tm_tp.log" | head -1
table few 22 "tm tp tpcl tpcl8 auto" " tm " 8 65536 128
table pairs 30 "tw tw2 tp2 tp216 tpcl2 tpcl28 auto" "bfloat16 tm" 8 4096 1536 2 65536 1536 8 65536 128

# 3. the harness on a few cells with every provider (interrupted at T0 + 50 s, its table still written)
s=$SECONDS
LRNN_BENCH_REP_MS=${REP_MS:-30} timeout -s INT -k 3 $(left 50) python3 benchmarks/bench_linear_scan.py \
  --cells '^B=8 .*(float32 (channel|time)-major fwd|bfloat16 (channel|time)-major fwd\+bwd)$' \
  --budget $(( $(left 50) - 4 )) --out "$OUT/harness" > "$OUT/harness.log" 2>&1
echo "harness rc=$? ($((SECONDS - s)) s); warp prebuild: $(kill -0 $WARP 2> /dev/null && echo running ||
  tail -n 1 "$OUT/warp_prebuild.log")"
grep -E "^#" "$OUT/harness.log"
grep -E " ms " "$OUT/harness.log" | grep -v "skipped" | sed -E 's/ +/ /g; s/ GB\/s//' | cut -c1-120 | head -n 14
grep -E "error:" "$OUT/harness.log" | sed -E 's/ +/ /g' | cut -c1-160 | head -n 4
pkill -INT -P $WARP 2> /dev/null  # the build's python (SIGINT: torch removes its lock)
# 4. the fwd+bwd through torch against its two kernels alone (the harness' fwd+bwd rows)
timeout $(cap 59 9) python3 tests/gpu/linear_scan_overhead.py float32 > "$OUT/overhead.log" 2>&1
echo "overhead rc=$? ($(el) s):"; grep " ms" "$OUT/overhead.log"

echo "total $(el) s"
