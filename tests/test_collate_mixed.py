"""Contract section 9: collate of mixed scalar leaves; results under a default device.

Samples that mix NumPy scalars and Python numbers of one kind (``np.int64(1)``
and ``2``, ``np.float64`` and ``float``, ``np.bool_`` and ``bool``) batch as
``default_collate`` batches them: with ``dtype=tb.PRESERVE`` the batch has
``default_collate``'s dtype and values; under the default ``FLOAT32`` policy
floats become float32.

Section 5, rule 3 and section 10: NumPy memory is CPU memory, and a result's
device is the input's device when ``device`` is None. A default device set with
``torch.set_default_device`` or ``with torch.device(...)`` changes where torch's
factory functions allocate; it must not move tensorbridge's results (collate of
complex32, casts, kept dtypes, ``to_tensor``) off the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

import tensorbridge as tb

# ---------------------------------------------------------------------------
# NumPy scalars mixed with Python numbers
# ---------------------------------------------------------------------------

MIXED = {
    "np.int64 then int": [np.int64(1), 2],
    "int then np.int64": [2, np.int64(1)],
    "np.int64, int, np.int64": [np.int64(-3), 4, np.int64(5)],
    "np.float64 then float": [np.float64(1.5), 2.25],
    "float then np.float64": [2.25, np.float64(1.5)],
    "float, np.float64, float": [0.1, np.float64(0.2), 0.3],
    "np.bool_ then bool": [np.bool_(True), False],
    "bool then np.bool_": [True, np.bool_(False)],
}


def _default_policy(t: torch.Tensor) -> torch.Tensor:
    """What FLOAT32 makes of default_collate's batch: floats to float32, the rest kept."""
    return t.to(torch.float32) if t.is_floating_point() else t


@pytest.mark.parametrize("name", list(MIXED))
def test_mixed_numpy_and_python_scalars_collate_as_default_collate(name: str) -> None:
    samples = MIXED[name]
    expected = default_collate(list(samples))
    batch = tb.collate(list(samples), dtype=tb.PRESERVE)
    assert isinstance(batch, torch.Tensor)
    assert batch.dtype == expected.dtype
    assert torch.equal(batch, expected)


@pytest.mark.parametrize("name", list(MIXED))
def test_mixed_numpy_and_python_scalars_follow_the_default_policy(name: str) -> None:
    samples = MIXED[name]
    expected = _default_policy(default_collate(list(samples)))
    batch = tb.collate(list(samples))
    assert batch.dtype == expected.dtype
    assert torch.equal(batch, expected)


@pytest.mark.parametrize("name", list(MIXED))
def test_mixed_scalars_nested_in_dicts_collate_as_default_collate(name: str) -> None:
    values = MIXED[name]
    samples = [{"label": v, "image": np.full(2, i, np.uint8)} for i, v in enumerate(values)]
    expected = default_collate([dict(s) for s in samples])
    batch = tb.collate(samples, dtype=tb.PRESERVE)
    assert set(batch) == {"label", "image"}
    assert batch["label"].dtype == expected["label"].dtype
    assert torch.equal(batch["label"], expected["label"])
    assert torch.equal(batch["image"], expected["image"])

    default = tb.collate(samples)
    assert default["label"].dtype == _default_policy(expected["label"]).dtype
    assert torch.equal(default["label"], _default_policy(expected["label"]))


def test_mixed_scalars_inside_tuples_and_deeper_dicts() -> None:
    samples = [
        {"meta": {"id": np.int64(7), "ok": True}, "pair": (np.float64(0.5), 1)},
        {"meta": {"id": 8, "ok": np.bool_(False)}, "pair": (1.5, np.int64(2))},
    ]
    expected = default_collate([{"meta": dict(s["meta"]), "pair": s["pair"]} for s in samples])
    batch = tb.collate(samples, dtype=tb.PRESERVE)
    for got, want in [
        (batch["meta"]["id"], expected["meta"]["id"]),
        (batch["meta"]["ok"], expected["meta"]["ok"]),
        (batch["pair"][0], expected["pair"][0]),
        (batch["pair"][1], expected["pair"][1]),
    ]:
        assert got.dtype == want.dtype
        assert torch.equal(got, want)
    assert type(batch["pair"]) is type(expected["pair"])


def test_mixed_scalar_batches_are_new_memory_and_leave_the_samples_alone() -> None:
    samples = [np.int64(1), 2, np.int64(3)]
    batch = tb.collate(samples)
    batch.fill_(0)
    assert samples == [np.int64(1), 2, np.int64(3)]
    assert type(samples[0]) is np.int64
    assert type(samples[1]) is int


# ---------------------------------------------------------------------------
# a default device must not move results off the CPU
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _set_default_device(device: str) -> Iterator[None]:
    previous = torch.get_default_device()
    torch.set_default_device(device)
    try:
        yield
    finally:
        torch.set_default_device(previous)


DEFAULT_DEVICE_CONTEXTS: dict[str, Callable[[], Any]] = {
    "with torch.device('meta')": lambda: torch.device("meta"),
    "torch.set_default_device('meta')": lambda: _set_default_device("meta"),
}


# torch warns (once per process) the first time anything makes a complex32 tensor
_COMPLEX32_WARNING = pytest.mark.filterwarnings(
    "ignore:ComplexHalf support is experimental:UserWarning"
)


def _complex_samples() -> list[np.ndarray]:
    return [
        np.array([1 + 2j, -0.5 + 0.25j, 3 - 1j], np.complex64),
        np.array([0.125j, 2.0, -4 + 8j], np.complex64),
    ]


@_COMPLEX32_WARNING
@pytest.mark.parametrize("context", list(DEFAULT_DEVICE_CONTEXTS))
def test_collate_to_complex32_under_a_default_device_stays_on_the_cpu(context: str) -> None:
    samples = _complex_samples()
    expected = torch.tensor(np.stack(samples)).to(torch.complex32)  # made outside the context
    with DEFAULT_DEVICE_CONTEXTS[context]():
        batch = tb.collate(samples, dtype=torch.complex32)
    assert torch.get_default_device() == torch.device("cpu"), "the default device leaked"
    assert batch.device == torch.device("cpu")
    assert batch.dtype == torch.complex32
    # compare as complex64: complex32 has few CPU kernels
    assert torch.equal(batch.to(torch.complex64), expected.to(torch.complex64))


BATCH_CASES: dict[str, tuple[Callable[[], list[Any]], dict[str, Any], Callable[[], Any]]] = {
    "float64 arrays cast to float32": (
        lambda: [np.arange(6.0).reshape(2, 3), np.full((2, 3), 0.1)],
        {},
        lambda: torch.from_numpy(np.stack([np.arange(6.0).reshape(2, 3), np.full((2, 3), 0.1)])).to(
            torch.float32
        ),
    ),
    "uint8 arrays kept": (
        lambda: [np.arange(4, dtype=np.uint8), np.full(4, 200, np.uint8)],
        {},
        lambda: torch.tensor([[0, 1, 2, 3], [200, 200, 200, 200]], dtype=torch.uint8),
    ),
    "float32 arrays kept": (
        lambda: [np.ones(3, np.float32), np.zeros(3, np.float32)],
        {},
        lambda: torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]),
    ),
    "float64 tensors cast to float32": (
        lambda: [torch.arange(3, dtype=torch.float64, device="cpu")] * 2,
        {},
        lambda: torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]),
    ),
    "int64 arrays to float16": (
        lambda: [np.arange(3), np.arange(3, 6)],
        {"dtype": torch.float16},
        lambda: torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.float16),
    ),
    "complex128 arrays to complex64": (
        lambda: [np.array([1 + 1j, 2j]), np.array([3.0 + 0j, -1j])],
        {},
        lambda: torch.tensor([[1 + 1j, 2j], [3 + 0j, -1j]], dtype=torch.complex64),
    ),
}


@pytest.mark.parametrize("context", list(DEFAULT_DEVICE_CONTEXTS))
@pytest.mark.parametrize("case", list(BATCH_CASES))
def test_collate_under_a_default_device_stays_on_the_cpu(case: str, context: str) -> None:
    make_samples, options, make_expected = BATCH_CASES[case]
    samples = make_samples()  # built outside the context: CPU data
    expected = make_expected()
    with DEFAULT_DEVICE_CONTEXTS[context]():
        batch = tb.collate(samples, **options)
        nested = tb.collate([{"x": s} for s in samples], **options)
    for result in (batch, nested["x"]):
        assert result.device == torch.device("cpu")
        assert result.dtype == expected.dtype
        assert torch.equal(result, expected)


TO_TENSOR_CASES: dict[str, tuple[Callable[[], Any], dict[str, Any], Callable[[], Any]]] = {
    "float64 array to float32": (
        lambda: np.arange(4.0),
        {},
        lambda: torch.tensor([0.0, 1.0, 2.0, 3.0]),
    ),
    "float32 array shared": (
        lambda: np.arange(4, dtype=np.float32),
        {},
        lambda: torch.tensor([0.0, 1.0, 2.0, 3.0]),
    ),
    "uint8 array to float16": (
        lambda: np.arange(4, dtype=np.uint8),
        {"dtype": torch.float16},
        lambda: torch.tensor([0, 1, 2, 3], dtype=torch.float16),
    ),
    "complex64 array to complex32": (
        lambda: np.array([1 + 2j, -3j], np.complex64),
        {"dtype": torch.complex32},
        lambda: torch.tensor([1 + 2j, -3j], dtype=torch.complex64).to(torch.complex32),
    ),
    "list of floats": (lambda: [1.5, -2.0], {}, lambda: torch.tensor([1.5, -2.0])),
    "list of ints": (lambda: [1, 2, 3], {}, lambda: torch.tensor([1, 2, 3])),
    "python float": (lambda: 2.5, {}, lambda: torch.tensor(2.5)),
    "numpy scalar": (lambda: np.float64(0.1), {}, lambda: torch.tensor(0.1, dtype=torch.float32)),
    "float64 array copied": (
        lambda: np.arange(3.0),
        {"dtype": tb.PRESERVE, "copy": True},
        lambda: torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64),
    ),
}


@_COMPLEX32_WARNING
@pytest.mark.parametrize("context", list(DEFAULT_DEVICE_CONTEXTS))
@pytest.mark.parametrize("case", list(TO_TENSOR_CASES))
def test_to_tensor_under_a_default_device_stays_on_the_cpu(case: str, context: str) -> None:
    make_data, options, make_expected = TO_TENSOR_CASES[case]
    data = make_data()
    expected = make_expected()
    with DEFAULT_DEVICE_CONTEXTS[context]():
        results = [tb.to_tensor(data, **options)]
        if isinstance(data, (np.ndarray, np.generic)):  # trees leave Python data untouched
            results.append(tb.tree_to_tensor({"x": data}, **options)["x"])
    for got in results:
        assert got.device == torch.device("cpu")
        assert got.dtype == expected.dtype
        if got.dtype == torch.complex32:
            got, want = got.to(torch.complex64), expected.to(torch.complex64)
        else:
            want = expected
        assert torch.equal(got, want)
