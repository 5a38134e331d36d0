"""Where each cast kernel is fastest on this machine: the measurements behind the plan's sizes.

For the casts tensorbridge runs most (float64, int64, uint8, int32 and float32
sources to float32 and float64), at sizes from 1e3 to 6.4e7 elements, this
times the kernels the plan can choose between, interleaved, medians:

- ``numpy``: NumPy's ``astype``, with the floating-point error state switched
  off where the pair can set a flag, by the switch tensorbridge uses;
- ``torch``: torch's kernel, ``torch.from_numpy(a).to(dtype=...)``;
- ``torch-huge``: torch's kernel writing into memory from NumPy's allocator,
  which asks Linux for huge pages from 4 MB on.

and prints, per pair, the size from which torch beats NumPy (``_NUMPY_BELOW`` in
``src/tensorbridge/_plan.py``, at two torch threads) and the size from which
huge-page memory beats torch's own allocation (``_HUGE_FROM``).

    python benchmarks/crossover.py                 # every pair, every size
    python benchmarks/crossover.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tensorbridge._compat import ignore_fp_errors, restore_fp_errors

PAIRS = [
    ("float64", "float32"),
    ("int64", "float32"),
    ("uint8", "float32"),
    ("int32", "float32"),
    ("float32", "float64"),
    ("uint8", "float64"),
]
SIZES = [1000 * 2**k for k in range(17)]  # 1e3 ... 6.6e7


def _median_seconds(function: Callable[[], object], rounds: int) -> float:
    function()
    start = time.perf_counter()
    function()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(0.01 / once))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            function()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def _kernels(array: np.ndarray, target: str) -> dict[str, Callable[[], object]]:
    numpy_target = np.dtype(target)
    torch_target = getattr(torch, target)
    source = torch.from_numpy(array)

    quiet = array.dtype.kind in "biu"  # integers into float32 or wider set no flag

    def numpy_kernel() -> object:
        if quiet:
            return array.astype(numpy_target)
        token = ignore_fp_errors()
        try:
            return array.astype(numpy_target)
        finally:
            restore_fp_errors(token)

    def torch_kernel() -> object:
        return source.to(dtype=torch_target)

    def torch_huge() -> object:
        out = torch.from_numpy(np.empty(array.shape, dtype=numpy_target))
        return out.copy_(source)

    return {"numpy": numpy_kernel, "torch": torch_kernel, "torch-huge": torch_huge}


def measure(rounds: int, sizes: list[int]) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {}
    rng = np.random.default_rng(0)
    for source_name, target in PAIRS:
        rows = []
        for size in sizes:
            if source_name.startswith("float"):
                array = rng.standard_normal(size).astype(source_name)
            else:
                info = np.iinfo(source_name)
                array = rng.integers(info.min, info.max, size, dtype=source_name, endpoint=True)
            kernels = _kernels(array, target)
            row: dict[str, float] = {"size": size}
            # interleaved: each kernel in turn, the whole set twice
            for _ in range(2):
                for name, kernel in kernels.items():
                    row[name] = min(row.get(name, float("inf")), _median_seconds(kernel, rounds))
            rows.append(row)
            print(
                f"{source_name:>8s} -> {target:<8s} {size:>10d}  "
                + "  ".join(f"{name} {row[name] * 1e6:9.1f}us" for name in kernels),
                flush=True,
            )
        results[f"{source_name}->{target}"] = rows
    return results


def crossovers(results: dict[str, list[dict[str, float]]]) -> None:
    for pair, rows in results.items():
        torch_from = next((r["size"] for r in rows if r["torch"] < r["numpy"]), None)
        huge_from = next(
            (
                r["size"]
                for r in rows
                if all(
                    later["torch-huge"] <= later["torch"]
                    for later in rows
                    if later["size"] >= r["size"]
                )
            ),
            None,
        )
        print(f"{pair:<18s} torch faster from {torch_from}, huge pages pay from {huge_from}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--max-size", type=float, default=7e7)
    args = parser.parse_args()
    sizes = [s for s in SIZES if s <= args.max_size]
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} threads")
    results = measure(args.rounds, sizes)
    crossovers(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
