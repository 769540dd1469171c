#!/usr/bin/env bash
# run_all.sh: the whole GPU session on the lent H200, in one call from the repository root:
# build with the system compiler (the image's default g++ wrapper yields extensions that crash on
# any C++ exception), run ctest + the full pytest suite on CUDA, then every tests/gpu/<area>.sh.
# Logs go to $OUT (default ./gpu-out); a summary is printed last.
set -uo pipefail
# Everything is logged under $OUT/logs and packed into $OUT/logs.tgz at the end (the device tool
# returns at most 8 files).
FINAL_OUT=${OUT:-$PWD/gpu-out}
OUT=$FINAL_OUT/logs
export OUT
mkdir -p "$OUT"
# nvcc must use the same host compiler (CUDAHOSTCXX) for the .cu files.
export CXX=/usr/bin/g++ CC=/usr/bin/gcc CUDAHOSTCXX=/usr/bin/g++ PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
summary=()
note() { summary+=("$1"); echo "== $1"; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$OUT/machine.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' >> "$OUT/machine.txt"
start=$(date +%s)
if python3 -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
  note "build ok in $(( $(date +%s) - start )) s"
else
  note "BUILD FAILED (see build.log)"; tail -40 "$OUT/build.log"; printf '%s\n' "${summary[@]}"; exit 1
fi
python3 -c 'import lrnn; print(lrnn.build_info())' | tee -a "$OUT/machine.txt"

ctest --test-dir build --output-on-failure > "$OUT/ctest.log" 2>&1
note "ctest: $(grep -E 'tests passed' "$OUT/ctest.log" || tail -1 "$OUT/ctest.log")"
timeout ${PYTEST_TIMEOUT:-420} python3 -m pytest -q tests/python ${PYTEST_ARGS:-} > "$OUT/pytest.log" 2>&1
note "pytest: $(tail -1 "$OUT/pytest.log")"
grep -E "FAILED|Error" "$OUT/pytest.log" | head -20

for script in tests/gpu/*.sh; do
  [ "$(basename "$script")" = run_all.sh ] && continue
  [ -n "${ONLY:-}" ] && [[ "$script" != *"$ONLY"* ]] && continue
  start=$(date +%s)
  timeout ${AREA_TIMEOUT:-240} bash "$script" > "$OUT/$(basename "$script" .sh).log" 2>&1
  note "$(basename "$script"): rc $? in $(( $(date +%s) - start )) s"
  tail -15 "$OUT/$(basename "$script" .sh).log"
done
echo; echo "==== summary"; printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
tar czf "$FINAL_OUT/logs.tgz" -C "$OUT" . && rm -rf "$OUT"
