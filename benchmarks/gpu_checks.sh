#!/usr/bin/env bash
# One prepared run on a lent GPU machine (no network there, package not installed):
# the CUDA tests, the whole suite, the GPU and CPU benchmarks. Logs go under $OUT.
set -uo pipefail
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/tensorbridge-gpu}"
mkdir -p "$OUT"
not_installed=(
  --deselect tests/test_public_api.py::test_version_matches_installed_metadata
  --deselect tests/test_contract_roundtrip.py::test_version_is_the_installed_version
)
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import sys, torch, numpy, ml_dtypes; print(sys.version.split()[0], torch.__version__, numpy.__version__, ml_dtypes.__version__)" | tee "$OUT/versions.txt"
python3 -m tensorbridge > "$OUT/report.txt" 2>&1; echo "report exit $?" | tee -a "$OUT/versions.txt"
python3 benchmarks/bench_gpu.py 2>&1 | tee "$OUT/bench_gpu.log"
python3 -m pytest -q -p no:cacheprovider -m cuda "${not_installed[@]}" -rs 2>&1 | tail -15 | tee "$OUT/cuda_tests.log"
python3 -m pytest -q -p no:cacheprovider "${not_installed[@]}" 2>&1 | tail -15 | tee "$OUT/all_tests.log"
python3 benchmarks/bench.py --quick 2>&1 | tee "$OUT/bench_cpu.log"
