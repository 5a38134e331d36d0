"""The share/copy/raise tables of README.md and docs/semantics.md, row by row.

Each row names a call and an input; this module knows how to build that input,
runs the call, and checks the promised outcome: sharing by writing into one side
and reading the other, errors by their class. A row added to either document
without a builder here fails the suite, so the tables cannot drift from the code.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = {
    "README.md": "## What shares, what copies, what raises",
    "docs/semantics.md": "## What shares, what copies",
}

Value = Any  # an ndarray or a tensor


def _readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view of a writable array, so the test can still write through its base."""
    view = array.view()
    view.flags.writeable = False
    return view


def _structured_field() -> np.ndarray:
    record = np.zeros(4, dtype=[("x", np.float32), ("flag", np.uint8)])
    return record["x"]


def _bfloat16_array() -> np.ndarray:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return np.zeros(4, dtype=ml_dtypes.bfloat16)


def _float8_array() -> np.ndarray:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return np.zeros(4, dtype=ml_dtypes.float8_e4m3fn)


def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")


def _cuda_tensor() -> torch.Tensor:
    _needs_cuda()
    return torch.zeros(4, device="cuda")


def _memmap() -> np.ndarray:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "data.bin"
    np.zeros(4, np.float32).tofile(path)
    return np.memmap(path, dtype=np.float32, mode="r+", shape=(4,))


class _Interface:
    """An object that hands over its memory through ``__array_interface__`` only."""

    def __init__(self) -> None:
        self.base = np.zeros(4, np.float32)
        self.__array_interface__ = self.base.__array_interface__


def _float32_without_cuda() -> np.ndarray:
    if torch.cuda.is_available():
        pytest.skip("checks the error raised without CUDA")
    return np.zeros(4, np.float32)


def _freed_tensor() -> torch.Tensor:
    base = torch.zeros(8)
    view = base[2:6]
    base.untyped_storage().resize_(0)  # as FSDP frees a sharded parameter
    return view


def _grad_tensor() -> torch.Tensor:
    return torch.zeros(4, requires_grad=True)


def _negative_bit_tensor() -> torch.Tensor:
    tensor = torch.zeros(4, dtype=torch.complex64).conj().imag
    assert tensor.is_neg()
    return tensor


def _with_dtype(dtype: object) -> Callable[..., Value]:
    def convert(function: Callable[..., Value], value: Value, **options: Any) -> Value:
        return function(value, dtype=dtype, **options)

    return convert


def _plain(function: Callable[..., Value], value: Value, **options: Any) -> Value:
    return function(value, **options)


def _with_options(**fixed: Any) -> Callable[..., Value]:
    def convert(function: Callable[..., Value], value: Value, **options: Any) -> Value:
        return function(value, **fixed, **options)

    return convert


CALLS: dict[str, tuple[Callable[..., Value], Callable[..., Value]]] = {
    "to_tensor": (tb.to_tensor, _plain),
    'to_tensor(device="cuda")': (tb.to_tensor, _with_options(device="cuda")),
    'to_tensor(device="cpu")': (tb.to_tensor, _with_options(device="cpu")),
    "to_tensor(dtype=torch.int32)": (tb.to_tensor, _with_dtype(torch.int32)),
    'to_tensor(dtype=torch.float16, casting="safe")': (
        tb.to_tensor,
        _with_options(dtype=torch.float16, casting="safe"),
    ),
    'to_tensor(dtype="float33")': (tb.to_tensor, _with_options(dtype="float33")),
    "to_tensor(dtype=PRESERVE)": (tb.to_tensor, _with_dtype(tb.PRESERVE)),
    "to_tensor(dtype=torch.float64)": (tb.to_tensor, _with_dtype(torch.float64)),
    "to_numpy": (tb.to_numpy, _plain),
    "to_numpy(dtype=PRESERVE)": (tb.to_numpy, _with_dtype(tb.PRESERVE)),
}

# Input text in the README -> the inputs it stands for (several where it lists several).
INPUTS: dict[str, list[Callable[[], object]]] = {
    "writable float32 ndarray": [lambda: np.zeros((2, 3), np.float32)],
    "writable int64, bool or complex64 ndarray": [
        lambda: np.zeros(4, np.int64),
        lambda: np.zeros(4, np.bool_),
        lambda: np.zeros(4, np.complex64),
    ],
    "float64 ndarray (default policy: becomes float32)": [lambda: np.zeros(4)],
    "float64 ndarray": [lambda: np.zeros(4)],
    "ml_dtypes bfloat16 ndarray": [_bfloat16_array],
    "ml_dtypes float8_e4m3fn ndarray": [_float8_array],
    'memory-mapped file opened `"r+"` (`np.memmap`)': [_memmap],
    "`bytearray` (buffer protocol)": [lambda: bytearray(16)],
    "`memoryview` of `bytes` (read-only buffer)": [lambda: memoryview(bytes(16))],
    "object with `__array_interface__`": [_Interface],
    "float32 ndarray (needs CUDA)": [lambda: (_needs_cuda(), np.zeros(4, np.float32))[1]],
    "float32 CUDA tensor (needs CUDA)": [_cuda_tensor],
    "int64 CPU tensor": [lambda: torch.zeros(4, dtype=torch.int64)],
    "float8_e5m2 CPU tensor": [lambda: torch.zeros(4, dtype=torch.float8_e5m2)],
    "longdouble ndarray": [lambda: np.zeros(4, np.longdouble)],
    "str, datetime64 or object ndarray": [
        lambda: np.array(["a", "b"]),
        lambda: np.zeros(2, dtype="datetime64[s]"),
        lambda: np.array([object(), object()]),
    ],
    "complex32 CPU tensor": [lambda: S.complex32([0.0] * 4, [0.0] * 4)],
    "`str`, `bytes`, `None` or `dict`": [lambda: "abc", lambda: b"abc", lambda: None, dict],
    "ragged nested list": [lambda: [[1.0, 2.0], [3.0]]],
    "masked array with masked elements": [
        lambda: np.ma.masked_array(np.zeros(3, np.float32), mask=[False, True, False])
    ],
    "sparse tensor": [lambda: torch.eye(3).to_sparse()],
    "meta tensor": [lambda: torch.empty(3, device="meta")],
    "float32 ndarray (no CUDA)": [_float32_without_cuda],
    'read-only ndarray (`np.load(mmap_mode="r")`, `np.frombuffer(bytes)`)': [
        lambda: _readonly(np.zeros(4, np.float32)),
        lambda: np.frombuffer(bytes(16), dtype=np.float32),
    ],
    "big-endian float32 ndarray": [lambda: np.zeros(4, dtype=">f4")],
    "reversed view `a[::-1]`": [lambda: np.zeros(4, np.float32)[::-1]],
    "transposed or sliced view `a.T`, `a[::2]`": [
        lambda: np.zeros((2, 3), np.float32).T,
        lambda: np.zeros(6, np.float32)[::2],
    ],
    "field of a structured array (stride not a multiple of the item size)": [_structured_field],
    "view whose only odd stride is on a size-1 axis (`a[:, None]`)": [
        lambda: np.zeros(4, np.float32)[:, None],
        lambda: np.lib.stride_tricks.as_strided(np.zeros(4, np.float32), (4, 1), (4, 3)),
    ],
    "list of equal-shaped float32 ndarrays (stacked)": [
        lambda: [np.zeros(2, np.float32), np.zeros(2, np.float32)]
    ],
    "tensor whose storage was freed (`untyped_storage().resize_(0)`)": [_freed_tensor],
    "masked array without masked elements": [lambda: np.ma.masked_array(np.zeros(4, np.float32))],
    "Python list, Python scalar, NumPy scalar": [
        lambda: [0.0, 0.0],
        lambda: 0.0,
        lambda: np.float32(0.0),
    ],
    "float32 tensor": [lambda: torch.zeros(4)],
    "float32 CPU tensor": [lambda: torch.zeros(4)],
    "float32 CPU tensor that requires grad": [_grad_tensor],
    "bfloat16 CPU tensor": [lambda: torch.zeros(4, dtype=torch.bfloat16)],
    "float64 CPU tensor (default policy: becomes float32)": [
        lambda: torch.zeros(4, dtype=torch.float64)
    ],
    "tensor with the conjugate bit set (`t.conj()`)": [
        lambda: torch.zeros(4, dtype=torch.complex64).conj()
    ],
    "tensor with the negative bit set": [_negative_bit_tensor],
    "float32 ndarray": [lambda: np.zeros(4, np.float32)],
    "read-only float32 ndarray": [lambda: _readonly(np.zeros(4, np.float32))],
}


def _rows() -> list[tuple[str, str, str]]:
    rows = []
    for name, heading in DOCUMENTS.items():
        text = (ROOT / name).read_text(encoding="utf-8")
        section = text.split(heading, 1)[1].split("\n## Dtypes", 1)[0].split("\n## dtype", 1)[0]
        for line in section.splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if len(cells) == 3 and cells[0].startswith("`") and cells[0].endswith("`"):
                rows.append((cells[0][1:-1], cells[1], cells[2]))
    return rows


ROWS = _rows()


def _index(value: Value) -> tuple[int, ...]:
    return (0,) * value.ndim


def _memory_owner(value: object) -> Value | None:
    """What a write can be made to, for inputs that have memory of their own."""
    if isinstance(value, np.ma.MaskedArray):
        return value.data
    if isinstance(value, bytearray):
        return np.frombuffer(value, dtype=np.uint8)
    if isinstance(value, _Interface):
        return value.base
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value
    return None


def _read(value: Value) -> complex:
    element = value[_index(value)]
    return complex(element.item() if isinstance(element, torch.Tensor) else element)


def _write(value: Value, number: int) -> None:
    if isinstance(value, torch.Tensor):
        if value.is_neg() or value.is_conj():
            value = value.resolve_neg().resolve_conj()  # a write target of its own
        with torch.no_grad():
            value[_index(value)] = number
    elif not value.flags.writeable and _writable_base(value) is not None:
        _writable_base(value)[_index(value)] = number
    else:
        value[_index(value)] = number


def _writable_base(value: np.ndarray) -> np.ndarray | None:
    base = value.base
    if isinstance(base, np.ndarray) and base.flags.writeable and base.shape == value.shape:
        return base
    return None


def _writable(value: Value) -> bool:
    if isinstance(value, torch.Tensor):
        return not value.is_neg() and not value.is_conj()
    return bool(value.flags.writeable) or _writable_base(value) is not None


def _aliases(source: object, result: Value) -> bool:
    """Whether a write on one side shows on the other (tried in each writable direction)."""
    owner = _memory_owner(source)
    if owner is None:
        return False
    if _writable(result):
        before = _read(owner)
        _write(result, 1)
        if _read(owner) != before:
            return True
    if _writable(owner) and not (isinstance(owner, np.ndarray) and owner.dtype.byteorder == ">"):
        before = _read(result)
        _write(owner, 1)
        return _read(result) != before
    return False


def test_the_tables_have_rows() -> None:
    assert len(ROWS) >= 60


@pytest.mark.parametrize(
    ("call", "input_text", "outcome"), ROWS, ids=[" | ".join(r[:2]) for r in ROWS]
)
def test_row(call: str, input_text: str, outcome: str) -> None:
    assert call in CALLS, f"README row names a call the test does not know: {call!r}"
    assert input_text in INPUTS, f"README row names an input the test does not know: {input_text!r}"
    function, convert = CALLS[call]
    for build in INPUTS[input_text]:
        source = build()
        if "Error" in outcome:
            errors = tuple(
                getattr(tb, n, None) or getattr(builtins, n) for n in outcome.split(", ")
            )
            with pytest.raises(errors[0]) as raised:
                convert(function, source)
            assert all(isinstance(raised.value, error) for error in errors)
            continue
        if outcome.startswith("shares"):
            result = convert(function, source)
            assert _aliases(source, result), f"{call} on {input_text}: expected sharing"
            strict_source = build()
            assert _aliases(strict_source, convert(function, strict_source, copy=False))
            if "returned as is" in outcome:
                assert convert(function, source) is source
            if "read-only" in outcome:
                assert not result.flags.writeable
        else:
            assert outcome == "copies", outcome
            result = convert(function, source)
            assert not _aliases(source, result), f"{call} on {input_text}: expected a copy"
            with pytest.raises(tb.ShareError, match="cannot share memory"):
                convert(function, build(), copy=False)
        fresh = build()
        independent = convert(function, fresh, copy=True)
        assert not _aliases(fresh, independent)
        if isinstance(independent, np.ndarray):
            assert independent.flags.writeable
        if isinstance(fresh, (np.ndarray, torch.Tensor)):
            S.assert_layout(independent, fresh)  # section 5: memory order kept
        else:
            assert S.is_c_contiguous(independent)
