#!/usr/bin/env bash
# tests/gpu/linear_scan.sh: the CUDA linear-scan checks for the H200, run from the repo root after
# `pip install --no-build-isolation -e .` (tests/gpu/run_all.sh calls it with a 240 s budget).
# Logs and the benchmark table/plot go to $OUT.
#   1. pytest tests/python/test_linear_scan_cuda.py — skipped when run_all's full pytest run
#      (which includes it) already passed
#   2. benchmarks/bench_linear_scan.py -> $OUT/bench/linear_scan_cuda.{md,json,png}
#      (anchors used when importable: accelerated_scan, fla)
#   3. compute-sanitizer memcheck and racecheck on tests/gpu/linear_scan_sanitize.py
# Prints a compact summary last.
set -uo pipefail
OUT=${OUT:-/tmp/lrnn_gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
summary=()
budget=${LINEAR_SCAN_BUDGET:-230}
left() { echo $(( budget - SECONDS )); }

# 1. tests
if [ -f "$OUT/pytest.log" ] && tail -n 1 "$OUT/pytest.log" | grep -q "passed" &&
   ! tail -n 1 "$OUT/pytest.log" | grep -qE "failed|error"; then
  summary+=("pytest cuda: covered by the full pytest run ($(tail -n 1 "$OUT/pytest.log"))")
else
  timeout 110 python -m pytest tests/python/test_linear_scan_cuda.py -q --maxfail=20 -p no:cacheprovider \
    > "$OUT/pytest_linear_scan_cuda.log" 2>&1
  rc=$?
  summary+=("pytest cuda (rc=$rc): $(tail -n 1 "$OUT/pytest_linear_scan_cuda.log")")
  [ $rc -ne 0 ] && grep -E "^(FAILED|ERROR)" "$OUT/pytest_linear_scan_cuda.log" | head -n 10
fi

# 2. benchmark (the table is rewritten after every cell: a timeout still leaves the rows done)
anchors=""
python -c "import accelerated_scan" 2> /dev/null && anchors+="accelerated_scan "
python -c "import fla" 2> /dev/null && anchors+="fla "
t=$(( $(left) - 90 )); [ $t -lt 60 ] && t=60
timeout $t python benchmarks/bench_linear_scan.py --out "$OUT/bench" > "$OUT/bench_linear_scan.log" 2>&1
summary+=("benchmark (rc=$?, ${t}s limit, anchors importable: ${anchors:-none}): $OUT/bench/linear_scan_cuda.md")

# 3. sanitizers (only the lrnn scan kernels are instrumented)
sanitize() {  # seconds, tool, log, script args...
  local secs=$1 tool=$2 log=$3
  shift 3
  # instrument only the lrnn scan kernels; torch's own CUDA API probing is not our finding
  local extra=(--kernel-name kns=scan_ --report-api-errors no)
  timeout "$secs" compute-sanitizer --tool "$tool" --error-exitcode 9 "${extra[@]}" \
    python tests/gpu/linear_scan_sanitize.py "$@" > "$log" 2>&1
  local rc=$?
  if grep -qiE "unrecognized|unknown option|invalid option" "$log"; then  # an older sanitizer: plain run
    timeout "$secs" compute-sanitizer --tool "$tool" --error-exitcode 9 python tests/gpu/linear_scan_sanitize.py "$@" \
      > "$log" 2>&1
    rc=$?
  fi
  echo "$rc"
}
if command -v compute-sanitizer > /dev/null; then
  t=$(( $(left) * 11 / 20 )); [ $t -lt 30 ] && t=30
  rc=$(sanitize $t memcheck "$OUT/memcheck.log")
  summary+=("memcheck (rc=$rc, ${t}s limit): $(grep -E "ERROR SUMMARY|ran [0-9]+" "$OUT/memcheck.log" | tr '\n' ' ')")
  t=$(left); [ $t -lt 30 ] && t=30
  rc=$(sanitize $t racecheck "$OUT/racecheck.log" --small)
  summary+=("racecheck (rc=$rc, ${t}s limit): $(grep -E "RACECHECK SUMMARY|ERROR SUMMARY|ran [0-9]+" "$OUT/racecheck.log" | tr '\n' ' ')")
else
  summary+=("compute-sanitizer: not found on PATH (skipped)")
fi

echo "---- lrnn rows (time, % of floor) ----"
grep -E "lrnn \(CUDA\)" "$OUT/bench_linear_scan.log" | sed -E 's/ +/ /g' | cut -c1-150
echo "---- anchors ----"
grep -vE "lrnn \(CUDA\)|skipped|speed-up|wrote" "$OUT/bench_linear_scan.log" | sed -E 's/ +/ /g' | cut -c1-150 | head -n 40
echo "================ linear_scan GPU summary ($SECONDS s) ================"
for line in "${summary[@]}"; do echo "$line"; done
