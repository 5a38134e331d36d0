#!/usr/bin/env bash
# One prepared run on a lent GPU machine (no network there, package not installed):
# the CUDA tests, the report, and the GPU benchmark. Logs go under $OUT.
#   bash benchmarks/gpu_checks.sh            # on the GPU machine, from the repository root
set -uo pipefail
export PYTHONPATH="$PWD/src:$PWD/tests" PYTHONUNBUFFERED=1 HYPOTHESIS_PROFILE=ci
OUT="${OUT:-/tmp/tensorbridge-gpu}"
mkdir -p "$OUT"
not_installed=(
  --deselect tests/test_public_api.py::test_version_matches_installed_metadata
  --deselect tests/test_contract_roundtrip.py::test_version_is_the_installed_version
)
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import sys, torch, numpy, ml_dtypes; print(sys.version.split()[0], torch.__version__, numpy.__version__, ml_dtypes.__version__, torch.cuda.get_device_name(0), torch.get_num_threads(), 'threads')" | tee "$OUT/versions.txt"
python3 -m tensorbridge > "$OUT/report.txt" 2>&1; echo "report exit $?" | tee -a "$OUT/versions.txt"
timeout "${TEST_SECONDS:-240}" python3 -m pytest -q -p no:cacheprovider -p no:benchmark -m cuda "${not_installed[@]}" -rfE tests 2>&1 | tail -40 > "$OUT/cuda_tests.log"
tail -3 "$OUT/cuda_tests.log"
timeout 60 python3 -m pytest -q -p no:cacheprovider -p no:benchmark tests/test_report.py tests/test_prefetch.py 2>&1 | tail -5 > "$OUT/report_tests.log"
tail -1 "$OUT/report_tests.log"
timeout "${BENCH_SECONDS:-200}" python3 benchmarks/bench_gpu.py --repeat "${REPEAT:-9}" > "$OUT/bench_gpu.log" 2>&1
grep -E "NOT MET|met|ratio|x bus" "$OUT/bench_gpu.log" | head -60
