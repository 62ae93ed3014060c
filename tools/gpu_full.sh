#!/usr/bin/env bash
# The `full` profile on a GPU machine that reaches no package index, in one call.
#
# Here (a machine with pip access), once:   make gpu-wheels            (-> .whl/, ignored by git)
#                                optional:  make gpu-wheels GPU_DATA=1 (also .gpu_data/: hard links to
#                                           the real data root, ignored; the data is not in the repo)
# There (the device tool's `run`, carry [".whl", ".gpu_data"]):   bash tools/gpu_full.sh
#
# It installs the wheels offline (pip --no-index --no-deps into /tmp/site), runs the CUDA tests,
# runs `python -m cellnb.reproduce --profile full --device cuda` for every chapter (parallel jobs on
# the one GPU, the comparison last) under a wall-clock cap, and leaves under $OUT (at most 8 files):
#   gpu_full.log        everything printed, with the summary table
#   cuda_tests.log      the CUDA tests (pytest -rs)
#   results.tar.gz      results/full/*.json, results/timings/full.json, the runner summary, _build/logs/
#   notebooks.tar.gz    book/executed/*.ipynb (the executed chapters, for the book)
# Unpack here with:  tar -xzf results.tar.gz && tar -xzf notebooks.tar.gz   (in the repository root)
#
# Knobs (environment): JOBS (default 4: chapters sharing the GPU at once), RUN_CAP_S (default 420:
# the runner's --time-limit; chapters still running then are stopped, the finished ones are packed), TEST_CAP_S (default 120), ONLY ("ssrnet elmgan", default all).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/_build/gpu_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_full.log") 2>&1
export PYTHONUNBUFFERED=1 CELLNB_PROGRESS=0
PY=${PYTHON:-python3}
JOBS=${JOBS:-4}
RUN_CAP_S=${RUN_CAP_S:-420}
TEST_CAP_S=${TEST_CAP_S:-120}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

stamp "installing $(ls .whl/*.whl 2>/dev/null | wc -l) wheels offline"
ls .whl/*.whl >/dev/null 2>&1 || { echo "error: no .whl/ folder: run 'make gpu-wheels' here and carry .whl"; exit 3; }
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "error: offline install failed"; exit 3; }
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export PATH="/tmp/site/bin:$PATH"
$PY - <<'PY' || { echo "error: the environment is not usable"; exit 4; }
import torch, papermill, jupytext, ipykernel, ctc_metrics, cellnb
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
assert torch.cuda.is_available(), "torch sees no CUDA device"
print("device:", torch.cuda.get_device_name(0), "| count", torch.cuda.device_count())
PY
nvidia-smi -L 2>/dev/null || true

stamp "CUDA tests"
timeout "$TEST_CAP_S" $PY -m pytest -q -rs -p no:cacheprovider -o addopts="" \
  tests/test_train.py::test_fit_amp_on_cuda_and_resume tests/test_profile.py::test_cuda_peak_memory_and_benchmark \
  2>&1 | tee "$OUT/cuda_tests.log"
tests_rc=${PIPESTATUS[0]}
stamp "CUDA tests exit $tests_rc"

DATA=()
[ -d .gpu_data ] && DATA=(--data-root "$PWD/.gpu_data") && stamp "real data: .gpu_data ($(du -sh .gpu_data | cut -f1))"
ONLY_ARGS=()
[ -n "${ONLY:-}" ] && ONLY_ARGS=(--only $ONLY)
stamp "python -m cellnb.reproduce --profile full --device cuda --jobs $JOBS (cap ${RUN_CAP_S} s)"
# --time-limit stops what still runs at the cap and keeps every chapter that finished; the outer
# timeout is only a safety net
timeout --kill-after=10 "$(( RUN_CAP_S + 60 ))" $PY -m cellnb.reproduce --profile full --device cuda \
  --jobs "$JOBS" --threads 0 --time-limit "$RUN_CAP_S" "${DATA[@]}" "${ONLY_ARGS[@]}" \
  --summary-json _build/gpu_summary.json
run_rc=$?
stamp "runner exit $run_rc"

files=(results/full results/timings/full.json _build/logs _build/gpu_summary.json)
existing=(); for f in "${files[@]}"; do [ -e "$f" ] && existing+=("$f"); done
tar -czf "$OUT/results.tar.gz" "${existing[@]}" 2>/dev/null
ls book/executed/*.ipynb >/dev/null 2>&1 && tar -czf "$OUT/notebooks.tar.gz" book/executed/*.ipynb
ls -la "$OUT"
stamp "done (tests $tests_rc, runner $run_rc)"
[ "$run_rc" -eq 0 ] && [ "$tests_rc" -eq 0 ]
