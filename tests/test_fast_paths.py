"""The fast paths give what the general path gives, at every size and for every input.

A repeated call (same input dtype, same options) skips the plan and runs a
remembered cast: NumPy's ``astype`` below a size that depends on the pair and
the torch thread count, torch's kernel above it (only for pairs whose torch
cast is proven bit-exact, tests/test_cast_kernels.py). These tests call each
conversion twice, check that the second call did take the fast path (the
remembered entry exists), and compare both results bit for bit with
``ndarray.astype``: around every size threshold, with values that set
floating-point flags (overflow, signalling NaN) while the caller's NumPy error
state is "raise", for strided, reversed and read-only inputs, and that the
result is new, C-contiguous, writable memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

import strategies as S
import tensorbridge as tb
from tensorbridge import _convert
from tensorbridge._dtypes import from_numpy_dtype
from tensorbridge._kernels import numpy_cast_below, numpy_casts_quietly

# (source, target) pairs a fast path casts: quiet integer casts, a floating
# narrowing and widening that need np.errstate, and a pair torch may not run.
PAIRS = [
    ("uint8", "float32"),
    ("int8", "float32"),
    ("bool", "float32"),
    ("int16", "float32"),
    ("int32", "float32"),
    ("int64", "float32"),
    ("uint64", "float32"),
    ("int64", "int32"),
    ("float64", "float32"),
    ("float32", "float64"),
    ("complex128", "complex64"),
    ("float16", "float32"),
]


@pytest.fixture(autouse=True)
def _fresh_tables() -> Iterator[None]:
    _convert._forget()  # pyright: ignore[reportPrivateUsage]
    yield
    _convert._forget()  # pyright: ignore[reportPrivateUsage]


def values(name: str, size: int) -> npt.NDArray[Any]:
    """``size`` values of dtype ``name`` that include the awkward ones."""
    dtype = np.dtype(name)
    rng = np.random.default_rng(size)
    if dtype.kind == "b":
        return rng.integers(0, 2, size).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out = rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True)
        out[: min(size, 2)] = [info.min, info.max][: min(size, 2)]
        return out
    if dtype.kind == "c":
        part = np.dtype(f"f{dtype.itemsize // 2}")
        out = np.empty(size, dtype)
        out.real = values(part.name, size)
        out.imag = values(part.name, size)[::-1]
        return out
    bits = rng.integers(0, 2 ** (8 * dtype.itemsize) - 1, size, dtype=np.uint64, endpoint=True)
    out = bits.astype(np.dtype(f"u{dtype.itemsize}")).view(dtype)
    specials: dict[str, list[int]] = {
        "float64": [0x7FF0000000000001, 0x7FEFFFFFFFFFFFFF, 0xFFEFFFFFFFFFFFFF],  # sNaN, +-max
        "float32": [0x7F800001, 0x7F7FFFFF, 0xFF800001],
        "float16": [0x7C01, 0x7BFF, 0xFC01],
    }
    raw = np.array(specials[name], dtype=np.uint64).astype(np.dtype(f"u{dtype.itemsize}"))
    head = min(size, raw.size)
    out[:head] = raw[:head].view(dtype)
    return out


def expected(array: npt.NDArray[Any], target: str) -> npt.NDArray[Any]:
    with np.errstate(all="ignore"):
        return array.astype(target)


def assert_bits(got: npt.NDArray[Any], want: npt.NDArray[Any]) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    width = np.dtype(f"u{min(want.itemsize, 8)}")
    np.testing.assert_array_equal(
        np.ascontiguousarray(got).view(width), np.ascontiguousarray(want).view(width)
    )


def sizes(source: str, target: str) -> list[int]:
    below = numpy_cast_below(from_numpy_dtype(np.dtype(source)), from_numpy_dtype(np.dtype(target)))
    # Floating sources have no NumPy size (below == 0): torch casts them at every size.
    return [0, 1, 16, below - 1, below, below + 1] if below else [0, 1, 16, 40000]


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_to_tensor_fast_path_matches_astype_around_the_threshold(source: str, target: str) -> None:
    for size in sizes(source, target):
        array = values(source, size)
        want = expected(array, target)
        with np.errstate(all="raise"):  # the caller's strict error state must not leak in
            first = tb.to_tensor(array, dtype=getattr(torch, target))
            remembered = _convert._fast_tables(getattr(torch, target))[0].get(array.dtype)  # pyright: ignore[reportPrivateUsage]
            second = tb.to_tensor(array, dtype=getattr(torch, target))
        assert remembered not in (None, False), "the second call should take the fast path"
        for result in (first, second):
            assert result.is_contiguous()
            assert_bits(result.numpy(), want)
        if size:
            before = second.clone()
            array[...] = array[::-1].copy()  # the result is new memory
            assert torch.equal(second.view(torch.uint8), before.view(torch.uint8))


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_to_numpy_fast_path_matches_astype_around_the_threshold(source: str, target: str) -> None:
    for size in sizes(source, target):
        array = values(source, size)
        tensor = torch.from_numpy(array.copy())
        want = expected(array, target)
        with np.errstate(all="raise"):
            first = tb.to_numpy(tensor, dtype=np.dtype(target))
            second = tb.to_numpy(tensor, dtype=np.dtype(target))
        for result in (first, second):
            assert result.flags.c_contiguous
            assert result.flags.writeable
            assert not np.shares_memory(result, array)
            assert_bits(result, want)


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_strided_reversed_and_read_only_inputs_on_the_fast_path(source: str, target: str) -> None:
    base = values(source, 4 * 4000)
    inputs = {
        "strided": base[::4],
        "reversed": base[::-1],
        "2-d transposed": base.reshape(40, -1).T,
        "read-only": np.frombuffer(base.tobytes(), dtype=base.dtype),
    }
    for name, array in inputs.items():
        for _ in range(2):
            result = tb.to_tensor(array, dtype=getattr(torch, target))
            assert result.is_contiguous(), name
            assert_bits(result.numpy(), expected(array, target))


def test_trees_take_the_same_fast_path() -> None:
    batch = {"image": values("uint8", 3 * 8 * 8), "depth": values("float64", 64)}
    for _ in range(2):
        with np.errstate(all="raise"):
            out = tb.tree_to_tensor(batch)
        assert_bits(out["image"].numpy(), batch["image"])  # uint8 is kept
        assert_bits(out["depth"].numpy(), expected(batch["depth"], "float32"))


def test_the_numpy_size_follows_the_torch_thread_count() -> None:
    source, target = from_numpy_dtype(np.dtype("uint8")), from_numpy_dtype(np.dtype("float32"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = numpy_cast_below(source, target)
        torch.set_num_threads(2)
        two = numpy_cast_below(source, target)
        torch.set_num_threads(64)
        many = numpy_cast_below(source, target)
    finally:
        torch.set_num_threads(threads)
    assert one > two > many == 32768  # never below torch's grain size: NumPy wins there


def test_only_integer_sources_are_quiet() -> None:
    def quiet(a: str, b: str) -> bool:
        return numpy_casts_quietly(from_numpy_dtype(np.dtype(a)), from_numpy_dtype(np.dtype(b)))

    assert quiet("uint8", "float32")
    assert quiet("int64", "float64")
    assert quiet("bool", "int8")
    assert not quiet("float32", "float64")  # a signalling NaN sets the invalid flag
    assert not quiet("int64", "float16")  # overflows float16
    with pytest.raises(FloatingPointError), np.errstate(all="raise"):
        np.array([2**63 - 1]).astype(np.float16)
    with pytest.raises(FloatingPointError), np.errstate(all="raise"):
        np.array([0x7F800001], dtype=np.uint32).view(np.float32).astype(np.float64)


def test_the_callers_strict_error_state_never_reaches_a_cast() -> None:
    # Underflow, overflow and a signalling NaN, with every NumPy error set to raise:
    # the values are astype's and nothing raises (before, underflow raised
    # FloatingPointError from the general path and from collate).
    samples = [values("float64", 8) for _ in range(3)]
    samples[0][3] = 1e-300
    with np.errstate(all="raise"):
        batch = tb.collate(samples)
        big = tb.to_tensor(np.full(3_000_000, 1e-300))
    assert_bits(batch.numpy(), expected(np.stack(samples), "float32"))
    assert not big.any()


def test_tree_leaves_are_remembered_per_dtype_argument_and_never_for_bad_ones() -> None:
    batch = {"x": np.arange(4.0), "n": np.arange(4)}
    for _ in range(2):
        assert tb.tree_to_tensor(batch)["x"].dtype == torch.float32
        assert tb.tree_to_tensor(batch, dtype=tb.PRESERVE)["x"].dtype == torch.float64
        assert tb.tree_to_tensor(batch, dtype="float16")["n"].dtype == torch.float16
        assert tb.tree_to_tensor(batch, dtype=np.float16)["n"].dtype == torch.float16
        policy = tb.DtypePolicy(floating=torch.float64, signed=torch.int32)
        out = tb.tree_to_tensor(batch, dtype=policy)
        assert (out["x"].dtype, out["n"].dtype) == (torch.float64, torch.int32)
        per_leaf = tb.tree_to_tensor(batch, dtype={"x": torch.float16})
        assert (per_leaf["x"].dtype, per_leaf["n"].dtype) == (torch.float16, torch.int64)
        with pytest.raises(tb.TensorBridgeError):
            tb.tree_to_tensor(batch, dtype="no such dtype")
        with pytest.raises(tb.TensorBridgeError):
            tb.tree_to_tensor(batch, dtype={"missing": torch.float16})
        with pytest.raises(tb.TensorBridgeError):
            tb.tree_to_tensor(batch, pin_memory=1)  # type: ignore[arg-type]
    shared = tb.tree_to_tensor(batch, dtype=tb.PRESERVE)
    shared["x"][0] = 42.0  # the remembered leaf still shares
    assert batch["x"][0] == 42.0


def test_negative_views_keep_their_signs_into_complex_at_every_size() -> None:
    # A real tensor with the negative bit (the .imag of a conjugated view) holds -0.0;
    # cast to complex, both calls (general, then fast) keep the sign, small and large.
    for size in (16, 600_000):
        imag = torch.zeros(size, dtype=torch.complex128).conj().imag
        assert imag.is_neg()
        for _ in range(2):
            array = tb.to_numpy(imag, dtype=np.complex64)
            assert np.signbit(array.real).all()
            tensor = tb.to_tensor(imag, dtype=torch.complex128)
            assert torch.signbit(tensor.real).all()


def test_tensor_subclasses_stay_subclasses_when_cast_at_every_size() -> None:
    class Marked(torch.Tensor):
        pass

    for size in (100, 2_000_000):
        marked = torch.ones(size, dtype=torch.float64).as_subclass(Marked)
        assert type(tb.to_tensor(marked)) is Marked


_FORKED_CHILD = """
import multiprocessing, numpy as np, torch, tensorbridge as tb
torch.set_num_threads(2)
big = np.random.default_rng(0).standard_normal(4_000_000)
tb.to_tensor(big)                         # torch's thread pool runs in the parent
tb.to_numpy(torch.from_numpy(big))

def child(queue):
    # torch's pool does not survive fork: every large cast here must avoid it,
    # also when the thread count goes up after a plan was remembered.
    torch.set_num_threads(1)
    first = tb.to_tensor(big)
    torch.set_num_threads(2)
    again = tb.to_tensor(big)
    back = tb.to_numpy(torch.from_numpy(big))
    # (NumPy sums: torch's own parallel sum would hang here too.)
    queue.put(float(first.numpy().sum()) == float(again.numpy().sum()) == float(back.sum()))

context = multiprocessing.get_context("fork")
queue = context.Queue()
process = context.Process(target=child, args=(queue,))
process.start()
print(queue.get(timeout=60))
process.join(60)
"""


def test_large_casts_in_a_forked_child_never_wait_for_torchs_lost_threads() -> None:
    done = S.run_child(_FORKED_CHILD, warnings="error::RuntimeWarning")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "True"
