#!/usr/bin/env bash
# The shorter device run: CUDA tests, the thread-sensitive tests, both benchmarks.
set -uo pipefail
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/tensorbridge-gpu}"
mkdir -p "$OUT"
python3 -c "import sys, torch, numpy, ml_dtypes; print(sys.version.split()[0], torch.__version__, numpy.__version__, ml_dtypes.__version__, torch.get_num_threads())" | tee "$OUT/versions.txt"
python3 benchmarks/bench_gpu.py 2>&1 | tee "$OUT/bench_gpu.log"
python3 benchmarks/bench.py --json "$OUT/bench_cpu.json" 2>&1 | tee "$OUT/bench_cpu.log"
python3 -m pytest -q -p no:cacheprovider -m cuda -rs 2>&1 | tail -6 | tee "$OUT/cuda_tests.log"
python3 -m pytest -q -p no:cacheprovider tests/test_parallel.py tests/test_contract_casting.py tests/test_contract_aliasing.py tests/test_collate.py tests/test_tree.py tests/test_semantics_table.py 2>&1 | tail -4 | tee "$OUT/threaded_tests.log"
