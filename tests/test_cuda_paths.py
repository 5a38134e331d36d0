"""Contract section 10 on every device path of ``to_tensor``, ``tree_to_tensor``,
``collate``, ``to_numpy`` and ``tree_to_numpy``.

The tests marked ``cuda`` skip without a GPU. The race tests overwrite (or drop) the
source right after a ``non_blocking`` call and read the result back at once: the
host memory a pending copy reads from must stay alive and unmodified until the copy is
done, so the values must be those the source had at the call. The first few tests run
everywhere: the options on CPU, and ``pin_memory=True`` without CUDA.
"""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb

N = 1 << 22  # elements per race-test array: large enough for the copy to take a while
REPEATS = 8


@dataclasses.dataclass
class Meta:
    id: Any
    name: str


# ---------------------------------------------------------------------------
# everywhere
# ---------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_pin_memory_without_cuda_raises():
    a = np.arange(4, dtype=np.float64)
    cases = [
        lambda: tb.to_tensor(a, pin_memory=True),
        lambda: tb.tree_to_tensor({"a": a}, pin_memory=True),
        lambda: tb.collate([a, a], pin_memory=True),
    ]
    for call in cases:
        with pytest.raises(tb.TensorBridgeError):
            call()
    np.testing.assert_array_equal(a, np.arange(4, dtype=np.float64))


def test_non_blocking_on_cpu_gives_the_cpu_conversion():
    a = np.linspace(-1, 1, 7)
    expected = a.astype(np.float32)
    t = tb.to_tensor(a, non_blocking=True)
    assert t.device.type == "cpu"
    S.assert_same_bits(t, expected)
    tree = tb.tree_to_tensor({"a": a, "s": "x"}, non_blocking=True)
    S.assert_same_bits(tree["a"], expected)
    assert tree["s"] == "x"
    batch = tb.collate([a, a], non_blocking=True)
    S.assert_same_bits(batch, np.stack([expected, expected]))


def test_pin_memory_false_is_the_default_and_works_without_cuda():
    a = np.arange(3, dtype=np.float32)
    t = tb.to_tensor(a, pin_memory=False, non_blocking=False)
    a[0] = 9.0
    assert t[0].item() == 9.0  # still the share path


# ---------------------------------------------------------------------------
# CUDA: host to device, the source overwritten right after the call
# ---------------------------------------------------------------------------


def _fresh(dt: Any, seed: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dt) == np.uint8:
        return rng.integers(0, 256, n, dtype=np.uint8)
    return rng.standard_normal(n).astype(dt)


def _clobber(a: np.ndarray) -> None:
    """Overwrite every element in place with a value the generator never gives."""
    a[...] = 77 if a.dtype == np.uint8 else -1e4


# (source dtype, dtype option, NumPy dtype of the expected result)
_CASES = [
    (np.uint8, tb.PRESERVE, np.uint8),
    (np.uint8, torch.float32, np.float32),  # widening: cast on the device
    (np.float32, tb.FLOAT32, np.float32),  # no cast: shared on CPU, copied to the device
    (np.float64, tb.FLOAT32, np.float32),  # narrowing: cast before the transfer
    (np.float64, torch.float16, np.float16),
]
_IDS = ["uint8", "uint8->float32", "float32", "float64->float32", "float64->float16"]


@pytest.mark.cuda
@pytest.mark.parametrize("pin_memory", [False, True], ids=["pageable", "pinned"])
@pytest.mark.parametrize("non_blocking", [True, False], ids=["non_blocking", "blocking"])
@pytest.mark.parametrize(("src_dt", "dtype", "out_dt"), _CASES, ids=_IDS)
def test_to_tensor_cuda_source_overwritten_after_call(
    src_dt, dtype, out_dt, non_blocking, pin_memory
):
    for seed in range(REPEATS):
        a = _fresh(src_dt, seed)
        expected = a.astype(out_dt)
        t = tb.to_tensor(
            a, dtype=dtype, device="cuda", non_blocking=non_blocking, pin_memory=pin_memory
        )
        _clobber(a)
        got = t.cpu()
        assert t.device.type == "cuda"
        assert t.dtype == S.torch_dtype(out_dt)
        S.assert_same_bits(got, expected)


@pytest.mark.cuda
@pytest.mark.parametrize("pin_memory", [False, True], ids=["pageable", "pinned"])
@pytest.mark.parametrize(("src_dt", "dtype", "out_dt"), _CASES, ids=_IDS)
def test_to_tensor_cuda_source_dropped_after_call(src_dt, dtype, out_dt, pin_memory):
    for seed in range(REPEATS):
        a = _fresh(src_dt, seed)
        expected = a.astype(out_dt)
        t = tb.to_tensor(a, dtype=dtype, device="cuda", non_blocking=True, pin_memory=pin_memory)
        del a
        gc.collect()
        junk = [np.full(N, 77, dtype=src_dt) for _ in range(3)]  # likely reuses the memory
        got = t.cpu()
        del junk
        S.assert_same_bits(got, expected)


@pytest.mark.cuda
@pytest.mark.parametrize("pin_memory", [False, True], ids=["pageable", "pinned"])
@pytest.mark.parametrize("src_dt", [torch.uint8, torch.float32, torch.float64], ids=str)
def test_to_tensor_cuda_from_cpu_tensor_overwritten_after_call(src_dt, pin_memory):
    for seed in range(REPEATS):
        src = torch.from_numpy(_fresh(S.numpy_dtype(src_dt), seed))
        expected = S.as_float32(src.numpy().copy())
        t = tb.to_tensor(src, device="cuda", non_blocking=True, pin_memory=pin_memory)
        src.fill_(77)
        S.assert_same_bits(t.cpu(), expected)


@pytest.mark.cuda
@pytest.mark.parametrize("src_dt", [torch.uint8, torch.float32], ids=str)
def test_to_tensor_cuda_from_pinned_tensor_overwritten_after_call(src_dt):
    # Contract 10: a page-locked tensor of the caller's is copied asynchronously
    # under non_blocking=True, as in torch; the caller may write to it once the
    # current stream has passed the copy (and not before).
    for seed in range(REPEATS):
        src = torch.from_numpy(_fresh(S.numpy_dtype(src_dt), seed)).pin_memory()
        expected = src.numpy().copy()
        t = tb.to_tensor(src, dtype=tb.PRESERVE, device="cuda", non_blocking=True)
        torch.cuda.current_stream().synchronize()
        src.fill_(77)
        S.assert_same_bits(t.cpu(), expected)


@pytest.mark.cuda
def test_to_tensor_cuda_copy_false_raises_with_device_options():
    a = np.zeros(8, np.float32)
    with pytest.raises(tb.ShareError):
        tb.to_tensor(a, device="cuda", copy=False, non_blocking=True)
    with pytest.raises(tb.ShareError):
        tb.tree_to_tensor({"a": a}, device="cuda", copy=False, non_blocking=True)


@pytest.mark.cuda
def test_to_tensor_pin_memory_without_device_gives_cpu_values():
    a = np.linspace(0, 1, 1000)
    t = tb.to_tensor(a, pin_memory=True, non_blocking=True)
    assert t.device.type == "cpu"
    _clobber(a)
    S.assert_same_bits(t, np.linspace(0, 1, 1000).astype(np.float32))


# ---------------------------------------------------------------------------
# CUDA: tree_to_tensor and collate onto the device
# ---------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("pin_memory", [False, True], ids=["pageable", "pinned"])
@pytest.mark.parametrize("non_blocking", [True, False], ids=["non_blocking", "blocking"])
def test_tree_to_tensor_cuda_sources_overwritten_after_call(non_blocking, pin_memory):
    for seed in range(REPEATS):
        image = _fresh(np.uint8, seed)
        x = _fresh(np.float64, seed + 100, N // 4)
        f = _fresh(np.float32, seed + 200, N // 4)
        name = f"tree-{seed}"
        tree = {"image": image, "inputs": [x, (f, 5)], "meta": Meta(np.int64(seed), name)}
        expected = {"image": image.copy(), "x": x.astype(np.float32), "f": f.copy()}
        out = tb.tree_to_tensor(
            tree, device="cuda", non_blocking=non_blocking, pin_memory=pin_memory
        )
        for a in (image, x, f):
            _clobber(a)
        leaves = {"image": out["image"], "x": out["inputs"][0], "f": out["inputs"][1][0]}
        for key, leaf in leaves.items():
            assert leaf.device.type == "cuda", key
            assert leaf.dtype == S.torch_dtype(expected[key].dtype), key
            S.assert_same_bits(leaf.cpu(), expected[key])
        assert out["inputs"][1][1] == 5
        assert type(out["meta"]) is Meta
        assert out["meta"].name is name
        assert out["meta"].id.device.type == "cuda"
        assert out["meta"].id.dtype == torch.int64
        assert out["meta"].id.item() == seed


@pytest.mark.cuda
@pytest.mark.parametrize("pin_memory", [False, True], ids=["pageable", "pinned"])
@pytest.mark.parametrize("non_blocking", [True, False], ids=["non_blocking", "blocking"])
def test_collate_cuda_samples_overwritten_after_call(non_blocking, pin_memory):
    n = 8
    for seed in range(REPEATS):
        rng = np.random.default_rng(seed)
        samples = [
            {
                "image": rng.integers(0, 256, (3, 128, 128), dtype=np.uint8),
                "x": rng.standard_normal(1 << 15),
                "label": i,
                "weight": i / 4,
                "name": f"s{i}",
            }
            for i in range(n)
        ]
        expected_image = np.stack([s["image"] for s in samples])
        expected_x = np.stack([s["x"] for s in samples]).astype(np.float32)
        batch = tb.collate(samples, device="cuda", non_blocking=non_blocking, pin_memory=pin_memory)
        for s in samples:
            _clobber(s["image"])
            _clobber(s["x"])
        assert batch["image"].device.type == "cuda"
        assert batch["image"].dtype == torch.uint8
        S.assert_same_bits(batch["image"].cpu(), expected_image)
        assert batch["x"].device.type == "cuda"
        assert batch["x"].dtype == torch.float32
        S.assert_same_bits(batch["x"].cpu(), expected_x)
        assert batch["label"].device.type == "cuda"
        assert batch["label"].dtype == torch.int64
        assert batch["label"].cpu().tolist() == list(range(n))
        assert batch["weight"].dtype == torch.float32
        S.assert_same_bits(batch["weight"].cpu(), (np.arange(n) / 4).astype(np.float32))
        assert list(batch["name"]) == [f"s{i}" for i in range(n)]


@pytest.mark.cuda
@pytest.mark.parametrize("pin_memory", [False, True], ids=["pageable", "pinned"])
def test_collate_cuda_widening_and_narrowing(pin_memory):
    for seed in range(REPEATS):
        images = [_fresh(np.uint8, seed * 10 + i, 1 << 18).reshape(64, 64, 64) for i in range(4)]
        doubles = [_fresh(np.float64, seed * 10 + i, 1 << 16) for i in range(4)]
        expected_images = np.stack(images).astype(np.float32)
        expected_half = np.stack(doubles).astype(np.float16)
        widened = tb.collate(
            images, dtype=torch.float32, device="cuda", non_blocking=True, pin_memory=pin_memory
        )
        narrowed = tb.collate(
            doubles, dtype=torch.float16, device="cuda", non_blocking=True, pin_memory=pin_memory
        )
        for a in images + doubles:
            _clobber(a)
        assert widened.dtype == torch.float32
        assert widened.device.type == "cuda"
        S.assert_same_bits(widened.cpu(), expected_images)
        assert narrowed.dtype == torch.float16
        assert narrowed.device.type == "cuda"
        S.assert_same_bits(narrowed.cpu(), expected_half)


@pytest.mark.cuda
def test_collate_cuda_copy_false_raises():
    with pytest.raises(tb.ShareError):
        tb.collate([np.zeros(3, np.float32)] * 2, device="cuda", copy=False)


# ---------------------------------------------------------------------------
# CUDA: device to host only with final values
# ---------------------------------------------------------------------------


def _busy_gpu() -> None:
    """Queue a long kernel so that work launched next is still pending for a while."""
    big = torch.ones(4096, 4096, device="cuda")
    for _ in range(4):
        big = big @ big / 4096.0


@pytest.mark.cuda
def test_to_numpy_of_just_launched_matmul_equals_cpu_result():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (1024, 1024), generator=gen).float()
    expected = (a @ a).numpy()  # integer sums below 2**24: exact in float32 on any device
    ga = a.cuda()
    for step in range(REPEATS):
        _busy_gpu()
        y = ga @ ga
        for _ in range(10):
            y.add_(1)
        out = tb.to_numpy(y)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, expected + 10, err_msg=f"step {step}")


@pytest.mark.cuda
def test_to_numpy_of_in_place_chain_equals_cpu_result():
    for step in range(REPEATS):
        _busy_gpu()
        x = torch.zeros(N, device="cuda", dtype=torch.float64)
        for _ in range(20):
            x.add_(3).mul_(2)
        cpu = torch.zeros(N, dtype=torch.float64)
        for _ in range(20):
            cpu.add_(3).mul_(2)
        out = tb.to_numpy(x)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, cpu.numpy().astype(np.float32), err_msg=f"step {step}")
        kept = tb.to_numpy(x, dtype=tb.PRESERVE)
        assert kept.dtype == np.float64
        np.testing.assert_array_equal(kept, cpu.numpy())


@pytest.mark.cuda
def test_tree_to_numpy_of_just_launched_kernels_equals_cpu_result():
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 4, (512, 512), generator=gen).float()
    expected_mm = (a @ a).numpy()
    ga = a.cuda()
    for step in range(REPEATS):
        _busy_gpu()
        counts = torch.zeros(N, device="cuda", dtype=torch.int32)
        for _ in range(25):
            counts.add_(2)
        mm = ga @ ga
        tree = {"mm": mm, "rest": [counts, ("label", 7)], "meta": Meta(mm.double(), "m")}
        out = tb.tree_to_numpy(tree)
        np.testing.assert_array_equal(out["mm"], expected_mm, err_msg=f"step {step}")
        assert out["rest"][0].dtype == np.int32
        np.testing.assert_array_equal(out["rest"][0], np.full(N, 50, np.int32))
        assert out["rest"][1] == ("label", 7)
        assert type(out["meta"]) is Meta
        assert out["meta"].id.dtype == np.float32
        np.testing.assert_array_equal(out["meta"].id, expected_mm)


@pytest.mark.cuda
def test_round_trip_host_device_host_non_blocking():
    for seed in range(REPEATS):
        a = _fresh(np.uint8, seed)
        expected = a.copy()
        g = tb.to_tensor(a, dtype=tb.PRESERVE, device="cuda", non_blocking=True, pin_memory=True)
        _clobber(a)
        g.add_(1)  # a kernel queued behind the copy, still pending at to_numpy
        out = tb.to_numpy(g, dtype=tb.PRESERVE)
        np.testing.assert_array_equal(out, expected + np.uint8(1))
