"""GPU benchmark: tensorbridge's device paths against the hand-written line and the bus.

Skips (exit 0) without CUDA. Every row is timed, interleaved, against the
hand-written torch line it replaces and against the bus limit measured in the
same run (a page-locked DMA of the same bytes); medians of ``--repeat`` rounds.
Then the page-locked memory that kept device-to-host results hold, the
host/device throughput table, and collate. Everything is written as JSON to
``$OUT/bench_gpu.json`` (or ``./bench_gpu.json``).

    python benchmarks/bench_gpu.py [--repeat 15] [--sweep]

``--sweep`` also times the staging ring at several chunk and ring sizes.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tensorbridge as tb
from tensorbridge import _transfer
from tensorbridge._dtypes import from_numpy_dtype

MB = 1 << 20


def _sync() -> None:
    torch.cuda.synchronize()


def compare(
    calls: dict[str, Callable[[], object]], repeat: int, warmup: int = 2
) -> dict[str, float]:
    """Median seconds of each call, the calls interleaved round by round."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    _sync()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            _sync()
            start = time.perf_counter()
            call()
            _sync()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def timed(function: Callable[[], object], repeat: int = 10, warmup: int = 2) -> float:
    """Best wall time of ``function`` in seconds, synchronising the GPU around each run."""
    for _ in range(warmup):
        function()
    _sync()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        _sync()
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


def h2d_dma(nbytes: int) -> Callable[[], object]:
    """A page-locked host-to-device DMA of ``nbytes``: the bus limit."""
    pinned = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    return lambda: device.copy_(pinned, non_blocking=True)


def d2h_dma(nbytes: int) -> Callable[[], object]:
    """A device-to-host DMA of ``nbytes`` into reused page-locked memory: the bus limit."""
    pinned = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    return lambda: pinned.copy_(device, non_blocking=True)


def row(
    title: str,
    ours: dict[str, Callable[[], object]],
    hand: Callable[[], object],
    bus: Callable[[], object],
    repeat: int,
    bars: dict[str, float],
) -> dict[str, Any]:
    """Time each of ``ours`` against ``hand`` and ``bus``; print and return the ratios.

    ``bars`` maps "bus" and/or "hand" to the largest ratio the contract allows.
    """
    seconds = compare({"hand": hand, "bus": bus} | ours, repeat)
    print(f"\n{title}")
    print(f"  {'hand-written':58s} {seconds['hand'] * 1e3:9.3f} ms")
    print(f"  {'bus limit (page-locked DMA)':58s} {seconds['bus'] * 1e3:9.3f} ms")
    out: dict[str, Any] = {"hand_ms": seconds["hand"] * 1e3, "bus_ms": seconds["bus"] * 1e3}
    for name in ours:
        vs_bus = seconds[name] / seconds["bus"]
        vs_hand = seconds[name] / seconds["hand"]
        met = all(
            {"bus": vs_bus, "hand": vs_hand}[against] <= limit for against, limit in bars.items()
        )
        bar_text = ", ".join(f"{k} <= {v}" for k, v in bars.items())
        print(
            f"  {name:58s} {seconds[name] * 1e3:9.3f} ms  x bus {vs_bus:5.2f}  "
            f"x hand {vs_hand:5.2f}  ({bar_text}: {'met' if met else 'NOT MET'})"
        )
        out[name] = {"ms": seconds[name] * 1e3, "x_bus": vs_bus, "x_hand": vs_hand, "met": met}
    return out


def host_to_device_rows(repeat: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    cuda = torch.device("cuda", torch.cuda.current_device())
    f32 = from_numpy_dtype(np.dtype(np.float32))
    u8 = from_numpy_dtype(np.dtype(np.uint8))
    results: dict[str, Any] = {}

    images = rng.integers(0, 255, size=64 * MB, dtype=np.uint8)
    results["uint8_to_float32_64MB"] = row(
        "64 MB uint8 -> float32 on the GPU, pageable source, default flags "
        "(bars: 3 x the uint8 DMA, 0.5 x hand-written)",
        {
            "tb.to_tensor(a, device='cuda')": lambda: tb.to_tensor(images, device="cuda"),
            "_transfer.stage_to_device(a, uint8).float()": lambda: _transfer.stage_to_device(
                images, u8, cuda, non_blocking=False
            ).float(),
        },
        lambda: torch.from_numpy(images).to(cuda, non_blocking=True).float(),
        h2d_dma(images.nbytes),
        repeat,
        {"bus": 3.0, "hand": 0.5},
    )

    floats = rng.standard_normal(16 * MB, dtype=np.float32)
    results["float32_64MB"] = row(
        "64 MB float32 to the GPU, pageable source, default flags (bar: 3 x the DMA)",
        {
            "tb.to_tensor(a, device='cuda')": lambda: tb.to_tensor(floats, device="cuda"),
            "_transfer.stage_to_device(a, float32)": lambda: _transfer.stage_to_device(
                floats, f32, cuda, non_blocking=False
            ),
        },
        lambda: torch.from_numpy(floats).to(cuda),
        h2d_dma(floats.nbytes),
        repeat,
        {"bus": 3.0},
    )

    doubles = rng.standard_normal(16 * MB)
    results["float64_to_float32_16M"] = row(
        "16M float64 -> float32 on the GPU, pageable source, default flags "
        "(bar: 6 x the float32 DMA)",
        {
            "tb.to_tensor(a, device='cuda')": lambda: tb.to_tensor(doubles, device="cuda"),
            "_transfer.stage_to_device(a, float32)": lambda: _transfer.stage_to_device(
                doubles, f32, cuda, non_blocking=False
            ),
        },
        lambda: torch.from_numpy(doubles).to(cuda, non_blocking=True).float(),
        h2d_dma(doubles.size * 4),
        repeat,
        {"bus": 6.0},
    )

    pinned = torch.from_numpy(floats).pin_memory()
    results["float32_64MB_page_locked_source"] = row(
        "64 MB float32 to the GPU from a page-locked tensor (bar: 1.2 x the DMA)",
        {
            "tb.to_tensor(t, device='cuda')": lambda: tb.to_tensor(pinned, device="cuda"),
            "tb.to_tensor(t, device='cuda', non_blocking=True)": lambda: tb.to_tensor(
                pinned, device="cuda", non_blocking=True
            ),
        },
        lambda: pinned.to(cuda, non_blocking=True),
        h2d_dma(pinned.numel() * 4),
        repeat,
        {"bus": 1.2},
    )

    small = np.arange(16, dtype=np.float32)
    results["small_to_gpu"] = row(
        "float32[16] to the GPU (bar: 1.2 x hand-written)",
        {"tb.to_tensor(a, device='cuda')": lambda: tb.to_tensor(small, device="cuda")},
        lambda: torch.from_numpy(small).to(cuda),
        h2d_dma(small.nbytes),
        repeat * 20,
        {"hand": 1.2},
    )
    return results


def device_to_host_rows(repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for megabytes in (4, 64, 256):
        tensor = torch.randn(megabytes * MB // 4, device="cuda")
        results[f"to_numpy_{megabytes}MB"] = row(
            f"{megabytes} MB float32 GPU -> NumPy, results dropped (bar: 1.25 x the DMA)",
            {"tb.to_numpy(t)": functools.partial(tb.to_numpy, tensor)},
            functools.partial(lambda t: t.cpu().numpy(), tensor),
            d2h_dma(tensor.numel() * 4),
            repeat,
            {"bus": 1.25},
        )
    small = torch.arange(16, dtype=torch.float32, device="cuda")
    results["small_to_numpy"] = row(
        "float32[16] GPU -> NumPy (bar: 1.2 x hand-written)",
        {"tb.to_numpy(t)": lambda: tb.to_numpy(small)},
        lambda: small.cpu().numpy(),
        d2h_dma(64),
        repeat * 20,
        {"hand": 1.2},
    )
    tiny = torch.arange(1024, dtype=torch.float32, device="cuda")
    results["4KB_to_numpy"] = row(
        "4 KB GPU -> NumPy (bar: 1.2 x hand-written)",
        {"tb.to_numpy(t)": lambda: tb.to_numpy(tiny)},
        lambda: tiny.cpu().numpy(),
        d2h_dma(4096),
        repeat * 20,
        {"hand": 1.2},
    )
    return results


def kept_results(count: int = 16, megabytes: int = 64) -> dict[str, Any]:
    """Keep ``count`` results of ``megabytes``: time each, and the page-locked memory held."""
    gc.collect()
    tensor = torch.randn(megabytes * MB // 4, device="cuda")
    dma = d2h_dma(megabytes * MB)
    bus = timed(dma, repeat=5)
    kept: list[np.ndarray] = []
    times: list[float] = []
    held: list[int] = []
    for _ in range(count):
        _sync()
        start = time.perf_counter()
        kept.append(tb.to_numpy(tensor))
        times.append(time.perf_counter() - start)
        held.append(_transfer.pinned_memory_in_use())
    pinned = [index for index, array in enumerate(kept) if torch.from_numpy(array).is_pinned()]
    print(
        f"\nkeeping {count} results of {megabytes} MB (budget "
        f"{_transfer.pinned_memory_budget() >> 20} MB, ring included): page-locked held "
        f"{max(held) >> 20} MB at most; {len(pinned)} page-locked results, "
        f"x bus {[round(t / bus, 2) for t in times]}"
    )
    del kept
    gc.collect()
    after = _transfer.pinned_memory_in_use()
    print(f"  after dropping them: {after >> 20} MB held (the staging ring)")
    return {
        "count": count,
        "MB": megabytes,
        "budget_MB": _transfer.pinned_memory_budget() >> 20,
        "max_held_MB": max(held) >> 20,
        "held_after_drop_MB": after >> 20,
        "page_locked_results": len(pinned),
        "x_bus": [t / bus for t in times],
    }


def sweep(repeat: int) -> list[dict[str, Any]]:
    """The ring at several chunk and ring sizes: float32 and float64 64 MB, and D2H pageable."""
    rng = np.random.default_rng(1)
    cuda = torch.device("cuda", torch.cuda.current_device())
    f32 = from_numpy_dtype(np.dtype(np.float32))
    floats = rng.standard_normal(16 * MB, dtype=np.float32)
    doubles = rng.standard_normal(16 * MB)
    device = torch.randn(16 * MB, device="cuda")
    bus = timed(h2d_dma(64 * MB))
    out = []
    default_chunk = _transfer.CHUNK_BYTES
    print(
        "\nring sweep (x the 64 MB DMA): chunk MB, ring MB, threads -> f32, f64->f32, D2H pageable"
    )
    for chunk in (2, 4, 8):
        for ring in (16, 32, 64):
            _transfer.CHUNK_BYTES = chunk * MB  # read when a ring is made
            _transfer.set_pinned_memory_budget(ring * MB, staging_bytes=ring * MB)
            seconds = compare(
                {
                    "f32": lambda: _transfer.stage_to_device(floats, f32, cuda, non_blocking=False),
                    "f64": lambda: _transfer.stage_to_device(
                        doubles, f32, cuda, non_blocking=False
                    ),
                    "d2h": lambda: _transfer.tensor_to_host(device),
                },
                repeat,
            )
            entry = {"chunk_MB": chunk, "ring_MB": ring} | {k: v / bus for k, v in seconds.items()}
            print(
                f"  {chunk:3d} {ring:4d} {torch.get_num_threads():3d} -> {entry['f32']:.2f} "
                f"{entry['f64']:.2f} {entry['d2h']:.2f}"
            )
            out.append(entry)
    _transfer.CHUNK_BYTES = default_chunk
    _transfer.set_pinned_memory_budget(
        _transfer.DEFAULT_PINNED_MEMORY_BUDGET, staging_bytes=_transfer.DEFAULT_STAGING_BYTES
    )
    return out


def copy_throughput(megabytes: int) -> dict[str, float]:
    """GB/s of each way to copy ``megabytes`` between host and device."""
    nbytes = megabytes * MB
    host = torch.empty(nbytes, dtype=torch.uint8)
    pinned = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    array = host.numpy()
    seconds = {
        "h2d_pageable": timed(lambda: device.copy_(host)),
        "h2d_pinned": timed(lambda: device.copy_(pinned, non_blocking=True)),
        "h2d_tb": timed(lambda: tb.to_tensor(array, device="cuda")),
        "d2h_pageable": timed(lambda: device.to("cpu")),
        "d2h_pinned_reused": timed(lambda: pinned.copy_(device, non_blocking=True)),
        "d2h_tb_to_numpy": timed(lambda: tb.to_numpy(device)),
    }
    return {"MB": float(megabytes)} | {name: nbytes / s / 1e9 for name, s in seconds.items()}


def prefetch_row(repeat: int) -> dict[str, Any]:
    """``tb.prefetch`` in a loop whose GPU step takes about as long as one batch's copy.

    Batches of 64 uint8 images 3x224x224, to float32 on the GPU. The fake step
    reads the batch and runs a chain of matmuls calibrated in this run to take
    about one batch's transfer. Per iteration: the step alone, the transfer
    alone, the loop without prefetch (about step + transfer) and with it (bar:
    within 1.15 x max(step, transfer)); for a page-locked source (the
    ``DataLoader(pin_memory=True)`` idiom) and a pageable NumPy one.
    """
    device = torch.device("cuda", torch.cuda.current_device())
    shape, distinct, iterations = (64, 3, 224, 224), 8, 48
    rng = np.random.default_rng(0)
    pageable = [rng.integers(0, 255, shape, dtype=np.uint8) for _ in range(distinct)]
    sources: dict[str, list[Any]] = {
        "pinned": [torch.from_numpy(array).pin_memory() for array in pageable],
        "pageable": pageable,
    }

    def median_seconds(loop: Callable[[], object]) -> float:
        loop()
        torch.cuda.synchronize()
        samples = []
        for _ in range(max(3, repeat // 2)):
            start = time.perf_counter()
            loop()
            torch.cuda.synchronize()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    def to_device(batch: Any) -> torch.Tensor:
        return tb.tree_to_tensor(batch, device=device, dtype=torch.float32, non_blocking=True)

    resident = to_device(pageable[0])
    torch.cuda.synchronize()
    rows: dict[str, Any] = {}
    print(f"\nprefetch: {iterations} batches of 64 uint8 3x224x224 to float32 (bar 1.15)")
    for name, batches in sources.items():
        epoch = [batches[i % distinct] for i in range(iterations)]
        transfer = median_seconds(lambda epoch=epoch: [to_device(b) for b in epoch]) / iterations

        # Calibrate the step: the largest matmul that fits in one transfer, repeated
        # to fill it (few launches, so the host stays ahead of the GPU).
        weights, matmul = None, 0.0
        for side in (512, 768, 1024, 1536, 2048, 3072, 4096, 6144):
            candidate = torch.randn(side, side, device=device) / side**0.5
            seconds = median_seconds(lambda c=candidate: [c @ c for _ in range(10)]) / 10
            if weights is None or seconds <= transfer:
                weights, matmul = candidate, seconds
        assert weights is not None
        count = max(1, round(transfer / matmul))

        def step(images: torch.Tensor, w: torch.Tensor = weights, count: int = count) -> None:
            out = w * images.mean()  # reads the whole batch
            for _ in range(count):
                out = out @ w

        step_only = median_seconds(lambda: [step(resident) for _ in range(iterations)])
        step_only /= iterations

        def without(epoch: list[Any] = epoch) -> None:
            for batch in epoch:
                step(to_device(batch))

        def with_prefetch(epoch: list[Any] = epoch) -> None:
            for batch in tb.prefetch(epoch, device=device, dtype=torch.float32):
                step(batch)

        plain = median_seconds(without) / iterations
        ahead = median_seconds(with_prefetch) / iterations
        bound = max(step_only, transfer)
        ratio = ahead / bound
        rows[name] = {
            "step_ms": step_only * 1e3,
            "transfer_ms": transfer * 1e3,
            "matmul_side": weights.shape[0],
            "matmuls_per_step": count,
            "without_prefetch_ms": plain * 1e3,
            "with_prefetch_ms": ahead * 1e3,
            "without_over_step_plus_transfer": plain / (step_only + transfer),
            "ratio_with_over_max_step_transfer": ratio,
            "met": ratio <= 1.15,
        }
        print(
            f"  {name:9s} step {step_only * 1e3:6.2f} ms, transfer {transfer * 1e3:6.2f} ms, "
            f"loop without prefetch {plain * 1e3:6.2f} ms, with {ahead * 1e3:6.2f} ms; "
            f"with / max(step, transfer) {ratio:.3f} {'met' if ratio <= 1.15 else 'NOT MET'}"
        )
    return rows


def batch_rows(repeat: int) -> dict[str, Any]:
    """collate and tree_to_tensor onto the GPU against the hand-written lines."""
    from torch.utils.data import default_collate

    samples = [
        np.random.default_rng(i).integers(0, 255, (3, 224, 224), dtype=np.uint8) for i in range(64)
    ]
    seconds = compare(
        {
            "hand": lambda: (
                default_collate(samples).pin_memory().to("cuda", non_blocking=True).float()
            ),
            "ours": lambda: tb.collate(
                samples, dtype=torch.float32, device="cuda", non_blocking=True
            ),
        },
        repeat,
    )
    collate_ratio = seconds["ours"] / seconds["hand"]
    print(
        "\ncollate 64 uint8 3x224x224 to cuda float32: "
        "default_collate(s).pin_memory().to(dev, non_blocking=True).float() "
        f"{seconds['hand'] * 1e3:.2f} ms, tb.collate {seconds['ours'] * 1e3:.2f} ms, "
        f"ratio {collate_ratio:.3f} (bar 0.5: {'met' if collate_ratio <= 0.5 else 'NOT MET'})"
    )
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 255, (64, 3, 224, 224), dtype=np.uint8),
        "depth": rng.standard_normal((64, 1, 224, 224)).astype(np.float32),
        "label": rng.integers(0, 1000, 64),
        "boxes": rng.standard_normal((64, 4)),
        "name": "batch",
    }

    def per_leaf() -> dict[str, object]:
        return {
            "image": torch.from_numpy(batch["image"]).to("cuda").float(),  # type: ignore[arg-type]
            "depth": torch.from_numpy(batch["depth"]).to("cuda"),  # type: ignore[arg-type]
            "label": torch.from_numpy(batch["label"]).to("cuda"),  # type: ignore[arg-type]
            "boxes": torch.from_numpy(batch["boxes"]).to("cuda").float(),  # type: ignore[arg-type]
            "name": batch["name"],
        }

    tree = compare(
        {
            "hand": per_leaf,
            "ours": lambda: tb.tree_to_tensor(batch, dtype={"image": torch.float32}, device="cuda"),
        },
        repeat,
    )
    tree_ratio = tree["ours"] / tree["hand"]
    print(
        "tree_to_tensor of {uint8 image, float32 depth, int64 label, float64 boxes} to cuda: "
        f"per-leaf .to(dev) {tree['hand'] * 1e3:.2f} ms, tb {tree['ours'] * 1e3:.2f} ms, "
        f"ratio {tree_ratio:.3f} (bar 0.8: {'met' if tree_ratio <= 0.8 else 'NOT MET'})"
    )
    return {
        "collate_uint8_cuda": {
            "hand_ms": seconds["hand"] * 1e3,
            "ours_ms": seconds["ours"] * 1e3,
            "ratio": collate_ratio,
            "bar": 0.5,
        },
        "tree_to_tensor_cuda": {
            "hand_ms": tree["hand"] * 1e3,
            "ours_ms": tree["ours"] * 1e3,
            "ratio": tree_ratio,
            "bar": 0.8,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("CUDA is not available: GPU benchmark skipped")
        return 0
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "threads": torch.get_num_threads(),
        "link": link(),
        "pinned_memory_budget_MB": _transfer.pinned_memory_budget() >> 20,
        "staging_ring_MB": _transfer.DEFAULT_STAGING_BYTES >> 20,
        "chunk_MB": _transfer.CHUNK_BYTES >> 20,
        "direct_below_bytes": _transfer.DIRECT_BYTES,
    }
    print(
        f"{results['device']}, torch {torch.__version__}, numpy {np.__version__}, "
        f"{results['threads']} threads"
    )
    print(f"link: {results['link']}")

    results["host_to_device"] = host_to_device_rows(args.repeat)
    results["device_to_host"] = device_to_host_rows(args.repeat)
    results["kept_results"] = kept_results()

    print("\nhost <-> device throughput, GB/s (best of 10)")
    print(
        f"  {'size':>8s} {'H2D pageable':>13s} {'H2D pinned':>11s} {'H2D tb':>8s} "
        f"{'D2H pageable':>13s} {'D2H pinned':>11s} {'tb.to_numpy':>12s}"
    )
    throughput = [copy_throughput(megabytes) for megabytes in (1, 4, 16, 64)]
    for entry in throughput:
        print(
            f"  {entry['MB']:6.0f}MB {entry['h2d_pageable']:13.1f} {entry['h2d_pinned']:11.1f} "
            f"{entry['h2d_tb']:8.1f} {entry['d2h_pageable']:13.1f} "
            f"{entry['d2h_pinned_reused']:11.1f} {entry['d2h_tb_to_numpy']:12.1f}"
        )
    results["throughput_gb_s"] = throughput

    results["batches"] = batch_rows(args.repeat)

    if args.sweep:
        results["ring_sweep"] = sweep(max(3, args.repeat // 3))

    results["prefetch_uint8_cuda"] = prefetch_row(args.repeat)
    out_dir = Path(os.environ.get("OUT", "."))
    (out_dir / "bench_gpu.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
