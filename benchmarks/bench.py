"""Benchmark tensorbridge against the raw NumPy/torch calls, as ratios measured in one run.

Each row times tensorbridge and the raw call it replaces, interleaved, in the
same process, and prints ``ratio = tensorbridge time / raw time`` next to the
bar from the contract (section 12). Ratios, not absolute times, are the result:
they carry over between machines far better.

    python benchmarks/bench.py            # all CPU rows
    python benchmarks/bench.py --quick    # fewer repeats, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import tensorbridge as tb


@dataclass
class Row:
    name: str
    ours: float  # seconds per call
    raw: float
    raw_name: str
    bar: float  # the largest acceptable ratio ours / raw
    bar_text: str

    @property
    def ratio(self) -> float:
        return self.ours / self.raw

    @property
    def met(self) -> bool:
        return self.ratio <= self.bar


def per_call(function: Callable[[], object], number: int, repeat: int) -> float:
    """Best of ``repeat`` runs of the time per call, in seconds.

    The minimum is the run least disturbed by the rest of the machine, which is
    what a ratio of two code paths should compare.
    """
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number


def paired(
    ours: Callable[[], object], raw: Callable[[], object], number: int, repeat: int
) -> tuple[float, float]:
    """Time both functions in alternating runs so drifts in machine speed hit both."""
    ours_times, raw_times = [], []
    for _ in range(repeat):
        ours_times.append(per_call(ours, number, 1))
        raw_times.append(per_call(raw, number, 1))
    return min(ours_times), min(raw_times)


def share_rows(repeat: int) -> list[Row]:
    array = np.ones((8, 8), dtype=np.float32)
    tensor = torch.ones(8, 8)
    number = 20_000
    ours, from_numpy = paired(
        lambda: tb.to_tensor(array), lambda: torch.from_numpy(array), number, repeat
    )
    ours2, as_tensor = paired(
        lambda: tb.to_tensor(array), lambda: torch.as_tensor(array), number, repeat
    )
    ours3, numpy_ = paired(lambda: tb.to_numpy(tensor), tensor.numpy, number, repeat)
    return [
        Row("to_tensor share, 8x8 float32", ours, from_numpy, "torch.from_numpy", 1.5, "<= 1.5"),
        Row("to_tensor share, 8x8 float32", ours2, as_tensor, "torch.as_tensor", 1.0, "< 1.0"),
        Row("to_numpy share, 8x8 float32", ours3, numpy_, "Tensor.numpy()", 1.5, "<= 1.5"),
    ]


def cast_rows(repeat: int) -> list[Row]:
    array = np.random.default_rng(0).standard_normal(16 * 2**20)  # float64, 128 MB
    ours, raw = paired(
        lambda: tb.to_tensor(array),
        lambda: torch.as_tensor(array, dtype=torch.float32),
        number=1,
        repeat=max(5, repeat),
    )
    return [
        Row(
            "float64 -> float32 copy, 16M elements",
            ours,
            raw,
            "torch.as_tensor(a, dtype=float32)",
            1.0,
            "<= 1.0 (throughput at least raw)",
        )
    ]


def typical_batch() -> dict[str, object]:
    """A data-loader batch whose array leaves need no copy under the default policy."""
    return {
        "image": np.zeros((32, 3, 64, 64), dtype=np.float32),
        "label": np.zeros(32, dtype=np.int64),
        "mask": np.zeros((32, 64), dtype=np.bool_),
        "boxes": np.zeros((32, 4), dtype=np.float32),
        "weight": np.float32(1.0),
        "index": np.int64(7),
        "name": "sample-0001",
        "meta": {"source": "camera-2", "crop": np.zeros(4, dtype=np.int64)},
    }


def tree_rows(repeat: int) -> list[Row]:
    from torch.utils.data import default_convert

    batch = typical_batch()
    ours, raw = paired(
        lambda: tb.tree_to_tensor(batch), lambda: default_convert(batch), 2_000, repeat
    )
    return [
        Row(
            "tree_to_tensor, typical batch dict",
            ours,
            raw,
            "default_convert",
            0.5,
            "<= 0.5 (2 x faster)",
        )
    ]


def collate_rows(repeat: int) -> list[Row]:
    from torch.utils.data import default_collate

    rng = np.random.default_rng(0)
    samples = [rng.standard_normal((3, 224, 224)) for _ in range(64)]  # float64
    ours, raw = paired(
        lambda: tb.collate(samples),
        lambda: default_collate(samples).float(),
        number=1,
        repeat=max(5, repeat // 2),
    )
    return [
        Row(
            "collate, 64 float64 samples 3x224x224",
            ours,
            raw,
            "default_collate(...).float()",
            1 / 1.5,
            "<= 0.667 (1.5 x faster)",
        )
    ]


def print_rows(rows: list[Row]) -> bool:
    header = (
        f"{'path':40s} {'vs':36s} {'ours':>10s} {'raw':>10s} {'ratio':>7s}  {'bar':34s} verdict"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name:40s} {row.raw_name:36s} {row.ours * 1e6:8.2f}us {row.raw * 1e6:8.2f}us "
            f"{row.ratio:7.3f}  {row.bar_text:34s} {'met' if row.met else 'NOT MET'}"
        )
    return all(row.met for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON to PATH")
    args = parser.parse_args()
    repeat = 3 if args.quick else 15
    print(
        f"tensorbridge {tb.__version__}, numpy {np.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads"
    )
    rows = share_rows(repeat) + cast_rows(repeat) + tree_rows(repeat) + collate_rows(repeat)
    met = print_rows(rows)
    if args.json:
        machine = {
            "tensorbridge": tb.__version__,
            "numpy": np.__version__,
            "torch": str(torch.__version__),
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        }
        payload = {
            "machine": machine,
            "rows": [
                {
                    "path": row.name,
                    "versus": row.raw_name,
                    "ours_s": row.ours,
                    "raw_s": row.raw,
                    "ratio": row.ratio,
                    "bar": row.bar,
                    "met": row.met,
                }
                for row in rows
            ],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print("all bars met" if met else "some bars NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
