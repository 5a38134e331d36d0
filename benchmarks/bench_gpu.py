"""GPU benchmark: tensorbridge's device paths against the raw torch calls, in one run.

Skips (exit 0) without CUDA. Prints ratios like benchmarks/bench.py, then the
host/device copy throughput in GB/s for pageable and page-locked memory, next
to the link's nominal figure, and writes everything as JSON to
``$OUT/bench_gpu.json`` (or ``./bench_gpu.json``).

    python benchmarks/bench_gpu.py
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import tensorbridge as tb
from tensorbridge import _device


def timed(function: Callable[[], object], repeat: int = 10, warmup: int = 2) -> float:
    """Best wall time of ``function`` in seconds, synchronising the GPU around each run."""
    for _ in range(warmup):
        function()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def link() -> dict[str, object]:
    query = "pcie.link.gen.current,pcie.link.width.current,pcie.link.gen.max,pcie.link.width.max"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        gen, width, gen_max, width_max = (part.strip() for part in out.splitlines()[0].split(","))
    except (OSError, subprocess.SubprocessError, ValueError):
        return {"nominal_gb_s": None}
    per_lane = {"3": 0.985, "4": 1.969, "5": 3.938}  # GB/s per lane and direction
    nominal = per_lane.get(gen_max, 0.0) * int(width_max) if width_max.isdigit() else None
    return {
        "gen": gen,
        "width": width,
        "gen_max": gen_max,
        "width_max": width_max,
        "nominal_gb_s": nominal,
    }


def copy_throughput(megabytes: int) -> dict[str, float]:
    """GB/s of each way to copy ``megabytes`` between host and device."""
    nbytes = megabytes << 20
    host = torch.empty(nbytes, dtype=torch.uint8)
    pinned = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")

    def fresh_pinned() -> torch.Tensor:
        out = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        out.copy_(device, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return out

    seconds = {
        "h2d_pageable": timed(lambda: device.copy_(host)),
        "h2d_pinned": timed(lambda: device.copy_(pinned, non_blocking=True)),
        "d2h_pageable": timed(lambda: device.to("cpu")),
        "d2h_pinned_reused": timed(lambda: pinned.copy_(device, non_blocking=True)),
        "d2h_pinned_new_buffer": timed(fresh_pinned),
        "d2h_tb_to_numpy": timed(lambda: tb.to_numpy(device)),
    }
    return {"MB": float(megabytes)} | {name: nbytes / s / 1e9 for name, s in seconds.items()}


def main() -> int:
    if not torch.cuda.is_available():
        print("CUDA is not available: GPU benchmark skipped")
        return 0
    results: dict[str, object] = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "link": link(),
    }
    print(f"{results['device']}, torch {torch.__version__}, numpy {np.__version__}")
    print(f"link: {results['link']}")

    # 1. uint8 -> float32 onto the GPU, 64 MB of uint8.
    images = np.random.default_rng(0).integers(0, 255, size=64 << 20, dtype=np.uint8)
    raw = timed(lambda: torch.as_tensor(images, dtype=torch.float32, device="cuda"))
    rows = {
        "to_tensor(device='cuda')": timed(lambda: tb.to_tensor(images, device="cuda")),
        "to_tensor(device='cuda', non_blocking=True)": timed(
            lambda: tb.to_tensor(images, device="cuda", non_blocking=True)
        ),
        "to_tensor(device='cuda', pin_memory=True, non_blocking=True)": timed(
            lambda: tb.to_tensor(images, device="cuda", pin_memory=True, non_blocking=True)
        ),
    }
    print("\nuint8 -> float32 onto the GPU, 64 MB (bar: ratio <= 0.5, i.e. 2 x faster)")
    print(f"  torch.as_tensor(a, dtype=float32, device='cuda')   {raw * 1e3:8.2f} ms")
    uint8_rows = {}
    for name, seconds in rows.items():
        ratio = seconds / raw
        uint8_rows[name] = {"ms": seconds * 1e3, "ratio": ratio, "met": ratio <= 0.5}
        verdict = "met" if ratio <= 0.5 else "NOT MET"
        print(f"  {name:60s} {seconds * 1e3:8.2f} ms  ratio {ratio:.3f}  {verdict}")
    results["uint8_to_float32_64MB"] = {"raw_ms": raw * 1e3, "rows": uint8_rows}

    # 2. Host <-> device throughput, pageable and page-locked.
    print("\nhost <-> device throughput, GB/s (best of 10)")
    print(
        f"  {'size':>8s} {'H2D pageable':>13s} {'H2D pinned':>11s} {'D2H pageable':>13s} "
        f"{'D2H pinned':>11s} {'D2H new pinned':>15s} {'tb.to_numpy':>12s}"
    )
    throughput = [copy_throughput(megabytes) for megabytes in (1, 4, 8, 16, 64, 256)]
    for row in throughput:
        print(
            f"  {row['MB']:6.0f}MB {row['h2d_pageable']:13.1f} {row['h2d_pinned']:11.1f} "
            f"{row['d2h_pageable']:13.1f} {row['d2h_pinned_reused']:11.1f} "
            f"{row['d2h_pinned_new_buffer']:15.1f} {row['d2h_tb_to_numpy']:12.1f}"
        )
    results["throughput_gb_s"] = throughput
    results["pinned_staging_bytes"] = _device.PINNED_STAGING_BYTES
    nominal = results["link"].get("nominal_gb_s") if isinstance(results["link"], dict) else None
    print(
        f"  nominal link bandwidth per direction: {nominal} GB/s; tb.to_numpy stages through "
        f"page-locked memory from {_device.PINNED_STAGING_BYTES >> 20} MB"
    )

    # 3. collate onto the GPU: 64 uint8 images of 3x224x224 to float32.
    samples = [
        np.random.default_rng(i).integers(0, 255, (3, 224, 224), dtype=np.uint8) for i in range(64)
    ]
    from torch.utils.data import default_collate

    raw = timed(lambda: default_collate(samples).to("cuda").float())
    ours = timed(lambda: tb.collate(samples, dtype=torch.float32, device="cuda", non_blocking=True))
    print(
        "\ncollate 64 uint8 3x224x224 to cuda float32: "
        f"default_collate+.to+.float {raw * 1e3:.2f} ms, "
        f"tb.collate {ours * 1e3:.2f} ms, ratio {ours / raw:.3f}"
    )
    results["collate_uint8_cuda"] = {
        "raw_ms": raw * 1e3,
        "ours_ms": ours * 1e3,
        "ratio": ours / raw,
    }

    out_dir = Path(os.environ.get("OUT", "."))
    (out_dir / "bench_gpu.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
