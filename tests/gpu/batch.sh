#!/usr/bin/env bash
# batch.sh: one device call for kernel work: build, the whole CUDA pytest suite (skipped with
# NO_PYTEST=1), the area scripts tests/gpu/<area>.sh named in $AREAS (each under AREA_TIMEOUT
# seconds, its stdout in <area>.txt), then the benchmarks named in $BENCH (event lti ss lsc lsc2
# harness; lsc2 = a C-benchmark variant built with the nvcc flags in $LSC2; ss times mamba_ssm's
# kernel beside lrnn when its sdist or a prebuilt extension travels in .whl/), logs packed into
# $OUT/logs.tgz. BATCH_DEADLINE (default 560 s) bounds the call: areas are cut to fit it.
set -uo pipefail
export CXX=/usr/bin/g++ CC=/usr/bin/gcc CUDAHOSTCXX=/usr/bin/g++ MAX_JOBS=16 PYTHONUNBUFFERED=1
FINAL=${OUT:-$PWD/gpu-out}; L=$FINAL/logs; mkdir -p "$L"; export OUT=$L
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > "$L/whl.log" 2>&1
  export PYTHONPATH=/tmp/site
fi
T0=$(date +%s)
left() { echo $(( ${BATCH_DEADLINE:-560} - ($(date +%s) - T0) )); }  # seconds left of this call
s=$(date +%s)
if ! python3 -m pip install --no-build-isolation --no-deps -e . > "$L/build.log" 2>&1; then
  tail -40 "$L/build.log"; tar czf "$FINAL/logs.tgz" -C "$L" .; exit 1
fi
echo "build $(( $(date +%s) - s )) s"
# mamba_ssm's kernel for the side-by-side selective-scan benchmark: carried prebuilt in .whl/mamba/,
# else built from its sdist in .whl/ in the background (niced; ~minutes) and returned in $FINAL
MAMBA_DIR=$PWD/.whl/mamba
if [ ! -f "$MAMBA_DIR/selective_scan_cuda.so" ] && ls .whl/mamba_ssm-*.tar.gz > /dev/null 2>&1 && [ -z "${NO_MAMBA:-}" ]; then
  MAMBA_DIR=/tmp/mamba
  (MAX_JOBS=12 nice -n 19 python3 benchmarks/cuda/build_mamba_ref.py .whl/mamba_ssm-*.tar.gz $MAMBA_DIR > "$L/mamba_build.log" 2>&1
   cp $MAMBA_DIR/selective_scan_cuda.so "$FINAL/" 2>/dev/null) &
  MAMBA_PID=$!
elif [ -f "$MAMBA_DIR/selective_scan_cuda.so" ]; then
  export PYTHONPATH=${PYTHONPATH:-}:$MAMBA_DIR
fi
if [ -n "${LSC2:-}" ]; then  # a C-benchmark variant, compiled while the tests run
  (nvcc -O3 -arch=sm_90 --use_fast_math -std=c++17 -Icsrc/include $LSC2 benchmarks/cuda/linear_scan_c.cu \
     csrc/cuda/linear_scan.cu csrc/cpu/linear_scan.c csrc/cpu/common.c -o build/lsc2 > "$L/lsc2_build.log" 2>&1) &
fi
if [ -z "${NO_PYTEST:-}" ]; then
  s=$(date +%s)
  timeout ${PYTEST_TIMEOUT:-240} python3 -m pytest -q -m cuda tests/python -p no:cacheprovider ${PYTEST_ARGS:-} > "$L/pytest.log" 2>&1
  echo "pytest ($(( $(date +%s) - s )) s): $(tail -1 "$L/pytest.log")"; grep -E "^(FAILED|ERROR)" "$L/pytest.log" | head -25
fi
for a in ${AREAS:-}; do
  s=$(date +%s); t=$(( $(left) - 15 )); [ $t -gt ${AREA_TIMEOUT:-75} ] && t=${AREA_TIMEOUT:-75}
  [ $t -lt 10 ] && { echo "== area $a: skipped, the call's deadline is near"; continue; }
  timeout $t bash "tests/gpu/$a.sh" > "$L/$a.txt" 2>&1
  echo "== area $a: rc $? in $(( $(date +%s) - s )) s"
done
for b in ${BENCH:-}; do
  s=$(date +%s)
  case $b in
    event) timeout 100 python3 benchmarks/bench_event_scan.py --device cuda --B 8 --L 65536 --P 128 --iters 10 \
             --json "$L/event.json" --timeout 60 > "$L/event.log" 2>&1; tail -12 "$L/event.log" ;;
    lti) timeout 60 python3 benchmarks/bench_lti_kernels.py --device cuda --json "$L/lti.json" > "$L/lti.log" 2>&1
         grep -E "^cuda|rate" "$L/lti.log" ;;
    ss) [ -n "${MAMBA_PID:-}" ] && { wait $MAMBA_PID; tail -2 "$L/mamba_build.log"; }
        PYTHONPATH=${PYTHONPATH:-}:$MAMBA_DIR timeout 120 python3 benchmarks/bench_selective_scan.py > "$L/ss.log" 2>&1
        tail -24 "$L/ss.log" ;;
    lsc) REPS=10 timeout 150 bash benchmarks/cuda/run.sh > "$L/lsc.log" 2>&1; grep -E "fwd |fwd\+bwd|#" "$L/lsc.log" ;;
    lsc2) wait; REPS=10 ONLY=${LSC2_ONLY:-} timeout 100 ./build/lsc2 > "$L/lsc2.log" 2>&1; grep -E "fwd |fwd\+bwd|#" "$L/lsc2.log" ;;
    harness) timeout 240 python3 benchmarks/bench_linear_scan.py --no-loop --out "$L/bench" > "$L/harness.log" 2>&1
             tail -5 "$L/harness.log" ;;
  esac
  echo "== $b: $(( $(date +%s) - s )) s"
done
while [ -n "${MAMBA_PID:-}" ] && kill -0 $MAMBA_PID 2> /dev/null && [ $(left) -gt 8 ]; do sleep 2; done
[ -n "${MAMBA_PID:-}" ] && echo "mamba build: $(tail -1 "$L/mamba_build.log")"
tar czf "$FINAL/logs.tgz" -C "$L" .
