"""Contract section 10 on a GPU: batches in one transfer, and one rule for where casts run.

``collate`` and ``tree_to_tensor`` going to a GPU stage every host leaf into one
page-locked block and send it in one copy; the values must be those of the CPU
conversion, for every leaf, under per-leaf dtypes, with the block reused batch
after batch and samples overwritten right after each call. Every dtype pair
converts to the same bits through a GPU as on the CPU, in both directions.
All tests skip without CUDA.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

import tensorbridge as tb

pytestmark = pytest.mark.cuda

_NAMES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
          "complex64", "complex128"]  # fmt: skip


def _values(name: str, size: int = 4096) -> npt.NDArray[Any]:
    rng = np.random.default_rng(len(name))
    dtype = np.dtype(name)
    if dtype.kind == "b":
        return rng.integers(0, 2, size).astype(bool)
    if dtype.kind in "iu":
        # Small magnitudes: float-to-integer casts of out-of-range values are undefined.
        return rng.integers(-100 if dtype.kind == "i" else 0, 100, size).astype(dtype)
    values = rng.standard_normal(size) * 100
    values[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.5, 2.5, 65519.99]
    if dtype.kind == "c":
        complex_values = np.empty(size, dtype=dtype)
        complex_values.real = values
        complex_values.imag = values[::-1]
        return complex_values
    return values.astype(dtype)


def _bits(value: torch.Tensor | npt.NDArray[Any]) -> bytes:
    array = value.cpu().numpy() if isinstance(value, torch.Tensor) else value
    return np.ascontiguousarray(array).tobytes()


@pytest.mark.parametrize(("source", "target"), list(itertools.product(_NAMES, _NAMES)))
def test_to_the_gpu_and_back_gives_the_cpu_bits(source: str, target: str) -> None:
    if np.dtype(source).kind in "fc" and np.dtype(target).kind in "iub":
        values = np.abs(_values(source).real.astype(np.float64)).clip(0, 100)
        values = np.nan_to_num(values, posinf=1, neginf=1).astype(source)
    else:
        values = _values(source)
    options: dict[str, Any] = {"dtype": getattr(torch, target), "casting": "unsafe"}
    on_cpu = tb.to_tensor(values, **options)
    on_gpu = tb.to_tensor(values, device="cuda", **options)
    assert on_gpu.device.type == "cuda"
    assert _bits(on_gpu) == _bits(on_cpu), (source, target)
    # ... and back: a GPU tensor of the source dtype to NumPy as the target.
    gpu_source = tb.to_tensor(values, dtype=tb.PRESERVE, device="cuda")
    cpu_source = tb.to_tensor(values, dtype=tb.PRESERVE)
    back_numpy = {"dtype": np.dtype(target), "casting": "unsafe"}
    assert _bits(tb.to_numpy(gpu_source, **back_numpy)) == _bits(
        tb.to_numpy(cpu_source, **back_numpy)
    ), (source, target)


def _samples(seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "image": rng.integers(0, 256, (3, 16, 16), dtype=np.uint8),
            "depth": rng.standard_normal((1, 16, 16)),
            "label": int(rng.integers(0, 10)),
            "mask": rng.integers(0, 2, 16).astype(bool),
            "name": f"s{seed}",
        }
        for _ in range(8)
    ]


@pytest.mark.parametrize("non_blocking", [False, True])
def test_collate_to_the_gpu_equals_the_cpu_batch_batch_after_batch(non_blocking: bool) -> None:
    dtype = {"image": torch.float32}
    for seed in range(20):
        samples = _samples(seed)
        expected = tb.collate(samples, dtype=dtype)
        got = tb.collate(samples, dtype=dtype, device="cuda", non_blocking=non_blocking)
        for sample in samples:  # overwrite the sources right after the call
            sample["image"][...] = 7
            sample["depth"][...] = 7.0
        for key in ("image", "depth", "label", "mask"):
            assert got[key].device.type == "cuda"
            assert got[key].dtype == expected[key].dtype
            assert _bits(got[key]) == _bits(expected[key]), (seed, key)
        assert got["name"] == expected["name"]


@pytest.mark.parametrize("non_blocking", [False, True])
def test_tree_to_the_gpu_equals_the_cpu_tree(non_blocking: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        batch = {
            "image": rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8),
            "boxes": rng.standard_normal((4, 4)),
            "label": torch.arange(4),
            "nested": [rng.standard_normal(5).astype(np.float16), "text"],
        }
        expected = tb.tree_to_tensor(batch, dtype={"image": torch.float32})
        got = tb.tree_to_tensor(
            batch, dtype={"image": torch.float32}, device="cuda", non_blocking=non_blocking
        )
        batch["image"][...] = 1
        batch["boxes"][...] = 1.0
        for key in ("image", "boxes", "label"):
            assert got[key].device.type == "cuda"
            assert _bits(got[key]) == _bits(expected[key]), key
        assert _bits(got["nested"][0]) == _bits(expected["nested"][0])
        assert got["nested"][1] == "text"


def test_a_batch_larger_than_the_staging_block_still_converts() -> None:
    big = [np.full((3, 1024, 1024), i, dtype=np.float32) for i in range(12)]  # 144 MB
    got = tb.collate(big, device="cuda")
    assert got.shape == (12, 3, 1024, 1024)
    assert torch.equal(got[:, 0, 0, 0].cpu(), torch.arange(12, dtype=torch.float32))


def test_batches_from_several_threads_at_once() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def work(seed: int) -> bool:
        samples = _samples(seed)
        expected = tb.collate(samples)
        got = tb.collate(samples, device="cuda")
        return all(_bits(got[k]) == _bits(expected[k]) for k in ("image", "depth", "mask"))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(32)))
