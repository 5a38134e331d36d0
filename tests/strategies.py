"""Hypothesis strategies and small helpers shared by the contract tests.

Everything that generates inputs lives here (dtypes, shapes, arrays with arbitrary
bit patterns, strided / reversed / transposed views, byte order, read-only flags,
the odd objects of contract section 8, the containers the tree tests walk),
together with the helpers that compare results bit for bit without going through
tensorbridge, the helpers that observe a call (sharing shown by mutation, section
6's memory-safety checks), the message helpers, and the helpers that run code in a
fresh interpreter.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import textwrap
import warnings
from collections import namedtuple
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tensorbridge as tb

try:
    import ml_dtypes
except ImportError:  # the optional extra is absent
    ml_dtypes = None

NUMPY_MAJOR = int(np.__version__.split(".")[0])

# ---------------------------------------------------------------------------
# dtype tables (contract section 4)
# ---------------------------------------------------------------------------

BOOL_DTYPES = [np.dtype(np.bool_)]
SIGNED_DTYPES = [np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64)]
UNSIGNED_DTYPES = [np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64)]
INTEGER_DTYPES = SIGNED_DTYPES + UNSIGNED_DTYPES
FLOAT_DTYPES = [np.dtype(t) for t in (np.float16, np.float32, np.float64)]
COMPLEX_DTYPES = [np.dtype(t) for t in (np.complex64, np.complex128)]

#: every dtype that NumPy has natively and torch has under the same name
STANDARD_DTYPES = BOOL_DTYPES + INTEGER_DTYPES + FLOAT_DTYPES + COMPLEX_DTYPES

#: the ml_dtypes types of section 4, as (NumPy dtype, torch dtype) pairs
ML_DTYPE_PAIRS: list[tuple[np.dtype[Any], torch.dtype]] = []
if ml_dtypes is not None:
    ML_DTYPE_PAIRS = [
        (np.dtype(ml_dtypes.bfloat16), torch.bfloat16),
        (np.dtype(ml_dtypes.float8_e4m3fn), torch.float8_e4m3fn),
        (np.dtype(ml_dtypes.float8_e5m2), torch.float8_e5m2),
        (np.dtype(ml_dtypes.float8_e4m3fnuz), torch.float8_e4m3fnuz),
        (np.dtype(ml_dtypes.float8_e5m2fnuz), torch.float8_e5m2fnuz),
    ]
ML_DTYPES = [np_dt for np_dt, _ in ML_DTYPE_PAIRS]

#: every NumPy dtype that has a torch counterpart (the ml_dtypes ones when present)
ALL_DTYPES = STANDARD_DTYPES + ML_DTYPES

#: torch-only dtypes for which NumPy needs ml_dtypes
TORCH_ML_DTYPES = [
    torch.bfloat16,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.float8_e4m3fnuz,
    torch.float8_e5m2fnuz,
]

_TORCH_BY_NAME = {
    "bool": torch.bool,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "uint16": torch.uint16,
    "uint32": torch.uint32,
    "uint64": torch.uint64,
    "float16": torch.float16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
    "bfloat16": torch.bfloat16,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
    "float8_e4m3fnuz": torch.float8_e4m3fnuz,
    "float8_e5m2fnuz": torch.float8_e5m2fnuz,
}

_SIGNED_BY_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_UNSIGNED_NP_BY_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def torch_dtype(dt: Any) -> torch.dtype:
    """The torch dtype of section 4's table for a NumPy dtype (native byte order)."""
    return _TORCH_BY_NAME[np.dtype(dt).newbyteorder("=").name]


def numpy_dtype(dt: torch.dtype) -> np.dtype[Any]:
    """The NumPy dtype of section 4's table for a torch dtype."""
    name = str(dt).removeprefix("torch.")
    if name not in ("bfloat16",) and not name.startswith("float8"):
        return np.dtype(name)  # np.dtype("bool") works on NumPy 1 and 2; np.bool warns on 1
    if ml_dtypes is None:
        raise LookupError(f"{dt} needs ml_dtypes")
    return np.dtype(getattr(ml_dtypes, name))


def numpy_dtype_of(x: Any) -> np.dtype[Any]:
    """The NumPy dtype of a result: an ndarray's own, or section 4's for a tensor's."""
    if isinstance(x, torch.Tensor):
        return numpy_dtype(x.dtype)
    return np.asarray(x).dtype


def default_policy_dtype(dt: Any) -> np.dtype[Any]:
    """Section 3, FLOAT32: real floats become float32, complex become complex64."""
    dt = np.dtype(dt)
    if dt.kind == "c":
        return np.dtype(np.complex64)
    if dt.kind == "f" or dt in ML_DTYPES:
        return np.dtype(np.float32)
    return dt.newbyteorder("=")


# ---------------------------------------------------------------------------
# bit-level comparison helpers (never through tensorbridge)
# ---------------------------------------------------------------------------


def np_bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of every element as unsigned ints (complex: a trailing axis of 2).

    Non-native byte order is brought to native first, so equal values give equal bits.
    """
    a = np.asarray(a)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    a = np.array(a, order="C", copy=True)
    if a.dtype.kind == "c":
        part = np.dtype(f"f{a.dtype.itemsize // 2}")
        a = a.reshape((*a.shape, 1)).view(part)
    return a.view(_UNSIGNED_NP_BY_SIZE[a.dtype.itemsize])


def torch_bits(t: torch.Tensor) -> np.ndarray:
    """Like :func:`np_bits` for a tensor (any device, any dtype incl. bfloat16/float8)."""
    t = t.detach()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    if t.is_complex():
        t = torch.view_as_real(t)
    t = t.to("cpu").contiguous()
    t = t.view(torch.uint8 if t.dtype == torch.bool else _SIGNED_BY_SIZE[t.element_size()])
    return t.numpy().view(_UNSIGNED_NP_BY_SIZE[t.element_size()])


def bits(x: Any) -> np.ndarray:
    return torch_bits(x) if isinstance(x, torch.Tensor) else np_bits(x)


def assert_same_bits(result: Any, expected: Any) -> None:
    """Same shape and the same bits in every element (NaN payloads and -0.0 count)."""
    assert tuple(result.shape) == tuple(expected.shape), (tuple(result.shape), expected.shape)
    rb, eb = bits(result), bits(expected)
    mismatch = rb != eb
    assert not mismatch.any(), (
        f"{int(mismatch.sum())} element(s) differ in bits; first: "
        f"got {rb[mismatch][:5]}, expected {eb[mismatch][:5]}"
    )


def assert_same_values(result: Any, expected: np.ndarray) -> None:
    """Bit-exact outside NaN (so -0.0, subnormals, inf count); NaN exactly where NaN.

    Used after a dtype *conversion*, where the contract promises NumPy's values
    (section 7) but says nothing about NaN payloads.
    """
    expected = np.asarray(expected)
    assert tuple(result.shape) == tuple(expected.shape), (tuple(result.shape), expected.shape)
    rb, eb = bits(result), bits(expected)
    if expected.dtype.kind in "fc" or expected.dtype in ML_DTYPES:
        r_nan = _isnan_bits(rb, expected.dtype)
        e_nan = _isnan_bits(eb, expected.dtype)
        assert (r_nan == e_nan).all(), "NaN positions differ"
        rb = np.where(e_nan, 0, rb)
        eb = np.where(e_nan, 0, eb)
    mismatch = rb != eb
    assert not mismatch.any(), (
        f"{int(mismatch.sum())} element(s) differ; first: "
        f"got {rb[mismatch][:5]}, expected {eb[mismatch][:5]}"
    )


def _isnan_bits(b: np.ndarray, dt: np.dtype[Any]) -> np.ndarray:
    part = np.dtype(f"f{dt.itemsize // 2}") if dt.kind == "c" else dt.newbyteorder("=")
    with np.errstate(all="ignore"):
        return np.isnan(b.view(part).astype(np.float64))


def as_float32(a: np.ndarray) -> np.ndarray:
    """NumPy's own conversion, quietly (NumPy warns on overflow in casts)."""
    with np.errstate(all="ignore"):
        return a.astype(default_policy_dtype(a.dtype))


def tensor_from_bits(a: np.ndarray, dt: torch.dtype) -> torch.Tensor:
    """A tensor of dtype ``dt`` holding exactly the bits of the unsigned array ``a``."""
    a = np.ascontiguousarray(a)
    size = a.dtype.itemsize
    signed = torch.from_numpy(a.view(f"i{size}").copy())
    if dt == torch.bool:
        return signed.to(torch.bool)
    return signed.view(dt)


def every_bit_pattern(dtype: Any) -> np.ndarray:
    """Every value of a small dtype, one element per bit pattern (bool: False and True)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.array([False, True])
    patterns = np.arange(2 ** (8 * dtype.itemsize), dtype=np.uint64)
    return patterns.astype(f"u{dtype.itemsize}").view(dtype)


def complex32(real: Any, imag: Any) -> torch.Tensor:
    """A complex32 tensor of these parts (float16 values), without torch's warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ComplexHalf support is experimental"
        return torch.complex(
            torch.tensor(real, dtype=torch.float16), torch.tensor(imag, dtype=torch.float16)
        )


# ---------------------------------------------------------------------------
# layouts of copies (contract section 5)
# ---------------------------------------------------------------------------


def element_strides(x: Any) -> tuple[int, ...]:
    """Strides in elements, for an ndarray or a tensor."""
    if isinstance(x, torch.Tensor):
        return tuple(x.stride())
    return tuple(s // x.itemsize for s in x.strides)


def significant(shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, ...]:
    """The strides that address memory: those of dimensions longer than one."""
    return tuple(s for n, s in zip(shape, strides, strict=True) if n > 1)


def is_dense(x: Any) -> bool:
    """Every element stored once, no gaps, in some order of the axes (size-1 axes and
    the sign of a stride do not matter)."""
    shape = tuple(x.shape)
    if math.prod(shape) == 0:
        return True
    if isinstance(x, np.ndarray) and any(s % x.itemsize for s in x.strides):
        return False
    pairs = sorted((abs(s), n) for n, s in zip(shape, element_strides(x), strict=True) if n > 1)
    expected = 1
    for stride, n in pairs:
        if stride != expected:
            return False
        expected *= n
    return True


def is_c_contiguous(x: Any) -> bool:
    return x.is_contiguous() if isinstance(x, torch.Tensor) else bool(x.flags.c_contiguous)


def assert_writable_copy(result: Any, source: Any) -> None:
    """The result can be written, and writing it leaves the source alone."""
    if math.prod(tuple(result.shape)) == 0:
        return
    before = bits(source).copy()
    index = (0,) * result.ndim
    if isinstance(result, np.ndarray):
        assert result.flags.writeable
    result[index] = 1
    assert result[index] == 1
    assert (bits(source) == before).all(), "writing the copy changed the source"


def assert_layout(result: Any, source: Any) -> None:
    """Dense and in the source's memory order where the source is dense (as NumPy's
    ``astype(order="K")`` orders it), C-contiguous otherwise."""
    shape = tuple(source.shape)
    assert tuple(result.shape) == shape
    assert is_dense(result), f"not dense: strides {element_strides(result)}"
    if is_dense(source):
        probe = _layout_probe(source)
        expected = probe.astype(probe.dtype, order="K")  # NumPy's own rule, no cast
        assert significant(shape, element_strides(result)) == significant(
            shape, element_strides(expected)
        ), (
            f"memory order not kept: input strides {element_strides(source)}, result "
            f"{element_strides(result)}, NumPy's astype(order='K') {element_strides(expected)}"
        )
    else:
        assert is_c_contiguous(result), (
            f"input with gaps {element_strides(source)} gave a result that is not "
            f"C-contiguous: {element_strides(result)}"
        )


def _layout_probe(source: Any) -> np.ndarray:
    """An array laid out as ``source`` (an ndarray, or a tensor's element strides)."""
    if isinstance(source, np.ndarray):
        return source
    strides = tuple(source.stride())
    extent = 1 + sum((n - 1) * s for n, s in zip(source.shape, strides, strict=True) if n > 0)
    memory = np.zeros(max(extent, 1), dtype=np.int8)
    return np.lib.stride_tricks.as_strided(memory, tuple(source.shape), strides)


# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------


def dtypes(*, include_ml: bool = True) -> st.SearchStrategy[np.dtype[Any]]:
    return st.sampled_from(ALL_DTYPES if include_ml else STANDARD_DTYPES)


def shapes(*, min_dims: int = 0, max_dims: int = 4, max_side: int = 5) -> st.SearchStrategy:
    """Shapes including 0-d and empty (a side of 0)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=max_side)


def _special_bits(dt: np.dtype[Any]) -> list[int]:
    """Bit patterns worth hitting on purpose: zeros, -0.0, inf, NaNs, subnormals, extremes."""
    if dt.kind == "c":
        dt = np.dtype(f"f{dt.itemsize // 2}")
    size = dt.itemsize
    u = _UNSIGNED_NP_BY_SIZE[size]
    width = 8 * size
    sign = 1 << (width - 1)
    if dt.kind in "iu":
        return [0, 1, sign - 1, sign, (1 << width) - 1]
    finfo = (ml_dtypes.finfo if dt in ML_DTYPES else np.finfo)(dt)
    values = [0.0, -0.0, 1.0, -1.0, float(finfo.max), float(finfo.min), float(finfo.tiny)]
    values.append(float(finfo.smallest_subnormal))
    patterns = {int(np.array(v).astype(dt).view(u)) for v in values}
    patterns |= {1, sign | 1, (1 << width) - 1, sign - 1, sign}
    ieee_like = dt.kind == "f" or dt.name == "bfloat16"
    if ieee_like:
        nmant = finfo.nmant
        exp_all = ((1 << (width - 1)) - 1) ^ ((1 << nmant) - 1)
        patterns |= {
            exp_all,  # +inf
            exp_all | sign,  # -inf
            exp_all | (1 << (nmant - 1)),  # quiet NaN
            exp_all | (1 << (nmant - 1)) | 5,  # quiet NaN with a payload
            exp_all | 1,  # signalling NaN
            exp_all | sign | (1 << (nmant - 1)) | 3,  # negative NaN with a payload
            (1 << nmant) - 1,  # largest subnormal
        }
    return sorted(patterns)


@st.composite
def arrays(
    draw: st.DrawFn,
    dtype: np.dtype[Any] | st.SearchStrategy[np.dtype[Any]] | None = None,
    shape: tuple[int, ...] | st.SearchStrategy | None = None,
) -> np.ndarray:
    """C-contiguous native arrays whose elements are arbitrary bit patterns."""
    if dtype is None:
        dtype = dtypes()
    if isinstance(dtype, st.SearchStrategy):
        dtype = draw(dtype)
    dtype = np.dtype(dtype)
    if shape is None:
        shape = shapes()
    if isinstance(shape, st.SearchStrategy):
        shape = draw(shape)
    n = math.prod(shape)
    if dtype.kind == "b":
        return draw(hnp.arrays(np.bool_, shape))
    part_size = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
    count = 2 * n if dtype.kind == "c" else n
    u = _UNSIGNED_NP_BY_SIZE[part_size]
    elements = st.one_of(
        st.integers(0, (1 << (8 * part_size)) - 1),
        st.sampled_from(_special_bits(dtype)),
    )
    raw = draw(hnp.arrays(u, count, elements=elements))
    return raw.view(dtype).reshape(shape)


@dataclass
class Input:
    """A generated array input and what the contract says about it."""

    array: np.ndarray
    base: np.ndarray  # the writable array that owns the memory ``array`` views

    @property
    def native(self) -> bool:
        return self.array.dtype.isnative

    @property
    def writable(self) -> bool:
        return bool(self.array.flags.writeable)

    @property
    def strides_ok(self) -> bool:
        # Section 5, rule 6: strides of size-1 dimensions address nothing and do not count.
        size = self.array.dtype.itemsize
        return all(
            s >= 0 and s % size == 0
            for n, s in zip(self.array.shape, self.array.strides, strict=True)
            if n != 1
        )

    def can_share(self, result_dtype: Any) -> bool:
        """Section 5, conditions 2 and 4-6 (condition 1 holds for an ndarray)."""
        return (
            np.dtype(result_dtype) == self.array.dtype
            and self.writable
            and self.native
            and self.strides_ok
        )

    def __repr__(self) -> str:
        a = self.array
        return (
            f"Input(dtype={a.dtype.str}, shape={a.shape}, strides={a.strides}, "
            f"writeable={a.flags.writeable}, bits={np_bits(a).ravel().tolist()[:16]})"
        )


@st.composite
def array_views(
    draw: st.DrawFn,
    dtype: np.dtype[Any] | st.SearchStrategy[np.dtype[Any]] | None = None,
    *,
    allow_byteswap: bool = True,
    allow_readonly: bool = True,
    nonempty: bool = False,
) -> Input:
    """Arrays that are views of a bigger base: sliced with steps, reversed, transposed,
    possibly non-native byte order (values preserved) and possibly read-only."""
    if dtype is None:
        dtype = dtypes()
    if isinstance(dtype, st.SearchStrategy):
        dtype = draw(dtype)
    dtype = np.dtype(dtype)
    swap = (
        allow_byteswap
        and dtype.itemsize > 1
        and dtype in STANDARD_DTYPES
        and draw(st.booleans(), label="byteswap")
    )
    base_shape = draw(
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=1 if nonempty else 0, max_side=6)
    )
    values = draw(arrays(dtype, base_shape))
    base = values.astype(dtype.newbyteorder("S")) if swap else values.copy()
    view = base
    if view.ndim:
        index = []
        for side in view.shape:
            # start inside the axis, so a non-empty base gives a non-empty view
            start = draw(st.integers(0, max(side - 1, 0)))
            step = draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
            index.append(slice(start, None, step))
        view = view[tuple(index)]
        if draw(st.booleans(), label="transpose"):
            view = view.transpose(draw(st.permutations(range(view.ndim))))
    if allow_readonly and draw(st.booleans(), label="readonly"):
        view = view.view()
        view.flags.writeable = False
    return Input(array=view, base=base)


#: torch dtypes with a NumPy counterpart, the ml_dtypes ones included (torch always has them)
TORCH_DTYPES = [torch_dtype(d) for d in STANDARD_DTYPES] + TORCH_ML_DTYPES


@st.composite
def tensors(
    draw: st.DrawFn,
    dtype: torch.dtype | st.SearchStrategy[torch.dtype] | None = None,
    *,
    nonempty: bool = False,
) -> torch.Tensor:
    """CPU tensors with arbitrary bits, possibly a strided view (sliced with steps,
    transposed, with a storage offset) of a bigger tensor."""
    if dtype is None:
        dtype = st.sampled_from(TORCH_DTYPES)
    if isinstance(dtype, st.SearchStrategy):
        dtype = draw(dtype)
    base_shape = draw(
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=1 if nonempty else 0, max_side=6)
    )
    if dtype == torch.bool:
        base = torch.from_numpy(draw(hnp.arrays(np.bool_, base_shape)))
    elif dtype.is_complex:
        base = torch.from_numpy(draw(arrays(numpy_dtype(dtype), base_shape)).copy())
    else:
        size = torch.empty((), dtype=dtype).element_size()
        try:
            np_like = numpy_dtype(dtype)
        except LookupError:
            np_like = np.dtype(f"u{size}")
        raw = draw(arrays(np_like, base_shape))
        base = tensor_from_bits(raw.view(f"u{size}"), dtype)
    view = base
    if view.ndim:
        index = []
        for side in view.shape:
            start = draw(st.integers(0, max(side - 1, 0)))
            step = draw(st.sampled_from([1, 1, 2, 3]))
            index.append(slice(start, None, step))
        view = view[tuple(index)]
        if draw(st.booleans(), label="transpose"):
            view = view.permute(*draw(st.permutations(range(view.ndim))))
    return view


def numpy_copy_of(t: torch.Tensor) -> np.ndarray:
    """A NumPy array with exactly the bits and the NumPy dtype of ``t`` (via torch only)."""
    dt = numpy_dtype(t.dtype)
    b = torch_bits(t)
    if dt.kind == "c":
        part = np.dtype(f"f{dt.itemsize // 2}")
        return np.ascontiguousarray(b.view(part)).view(dt).reshape(tuple(t.shape))
    return b.view(dt)


# ---------------------------------------------------------------------------
# odd objects (contract section 8: what torch and NumPy fail on internally)
# ---------------------------------------------------------------------------


class InterfaceObject:
    """An object whose ``__array_interface__`` is whatever it was given (lying ones too)."""

    def __init__(self, interface: object) -> None:
        self.__array_interface__ = interface


class WrapperTensor(torch.Tensor):
    """A wrapper subclass (``_make_wrapper_subclass``) that cannot run any operation."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor) -> WrapperTensor:
        return torch.Tensor._make_wrapper_subclass(cls, elem.shape, dtype=elem.dtype)  # type: ignore[attr-defined,no-any-return]

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("a wrapper subclass that cannot run anything")


def fake_tensor() -> torch.Tensor:
    """A tensor of ``FakeTensorMode``: a shape and a dtype, no memory."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        return torch.zeros(3)


def nested_tensor() -> torch.Tensor:
    """A nested tensor of two rows of lengths 2 and 3."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that nested tensors are a prototype
        return torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])


def self_referencing_list(*items: Any) -> list[Any]:
    """``[*items, <the list itself>]``."""
    tree: list[Any] = list(items)
    tree.append(tree)
    return tree


def deeply_nested(leaf: Any, depth: int) -> list[Any]:
    """``[leaf]`` inside ``depth`` more one-element lists."""
    tree: list[Any] = [leaf]
    for _ in range(depth):
        tree = [tree]
    return tree


class Producer:
    """A DLPack producer over an ndarray that may claim another device type."""

    def __init__(self, array: np.ndarray[Any, Any], device_type: int = 1) -> None:
        self.array = array
        self.device_type = device_type

    def __dlpack__(self, **kwargs: Any) -> object:
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return (self.device_type, 0)


class LegacyProducer(Producer):
    """A producer from before DLPack 1.0: no max_version, no read-only flag."""

    def __dlpack__(self, stream: object = None) -> object:  # type: ignore[override]
        # torch exports unversioned capsules (no read-only flag) when asked without max_version
        return torch.from_numpy(self.array).__dlpack__()


class CopyingArrayLike:
    """``__array__`` accepts ``copy=`` but returns a fresh array every call."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.array(self.values, dtype=dtype, copy=True)


class ViewArrayLike:
    """``__array__`` honours ``copy=``: without a copy it hands over a view of its memory."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy:
            return np.array(self.values, dtype=dtype, copy=True)
        if dtype is not None and np.dtype(dtype) != self.values.dtype:
            if copy is False:
                raise ValueError("a dtype change needs a copy")
            return self.values.astype(dtype)
        return self.values[...]


# ---------------------------------------------------------------------------
# containers the tree and collate tests walk (contract section 9)
# ---------------------------------------------------------------------------

Pair = namedtuple("Pair", ["image", "label"])


@dataclass(frozen=True)
class FrozenSample:
    image: Any
    label: Any


class Batch(dict):  # type: ignore[type-arg]
    """A plain dict subclass, which can be rebuilt from a dict."""


# ---------------------------------------------------------------------------
# observing a call: everything a user can see (contract sections 3 and 6)
# ---------------------------------------------------------------------------


def memory_handle(x: Any) -> Any:
    """A writable uint8 handle over all the memory ``x`` lives in (its storage / base).

    For an ndarray pass the writable array that owns the memory; for a tensor, its
    untyped storage is aliased as a flat uint8 tensor (no autograd involved).
    """
    if isinstance(x, torch.Tensor):
        return torch.empty(0, dtype=torch.uint8).set_(x.untyped_storage())
    assert x.flags.writeable, "pass the owning, writable base"
    assert x.flags.c_contiguous, "pass the owning, writable base"
    return x.reshape(-1).view(np.uint8)


def flip_bits(memory: Any) -> None:
    """Toggle the lowest bit of every byte (twice restores it; bool stays a valid bool)."""
    if isinstance(memory, torch.Tensor):
        memory.bitwise_xor_(1)
    else:
        np.bitwise_xor(memory, 1, out=memory)


def raw_bits(x: Any) -> bytes:
    """:func:`bits` as bytes; longdouble / clongdouble (whose padding bytes are
    undefined) by the exact repr of each element instead."""
    if (
        isinstance(x, np.ndarray)
        and x.dtype.kind in "fc"
        and x.dtype.itemsize > 8 * (1 + (x.dtype.kind == "c"))
    ):
        return repr([repr(v) for v in x.ravel()]).encode()
    return bits(x).tobytes()


def _leaf_record(x: Any) -> tuple[Any, ...]:
    if isinstance(x, torch.Tensor):
        return (
            "tensor",
            type(x).__qualname__,
            str(x.dtype),
            str(x.device),
            tuple(x.shape),
            tuple(x.stride()),
            bool(x.requires_grad),
            bool(x.is_inference()),
            bool(x.is_conj()),
            bool(x.is_neg()),
            raw_bits(x),
        )
    return (
        "ndarray",
        type(x).__qualname__,
        x.dtype.str,
        tuple(x.shape),
        tuple(x.strides),
        bool(x.flags.writeable),
        raw_bits(x),
    )


def _structure(x: Any, leaves: list[Any]) -> Any:
    """The result's containers, with each array leaf replaced by its index in ``leaves``."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        leaves.append(x)
        return ("leaf", len(leaves) - 1)
    if isinstance(x, dict):
        return (type(x).__qualname__, tuple((repr(k), _structure(v, leaves)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__qualname__, tuple(_structure(v, leaves) for v in x))
    return ("value", type(x).__qualname__, repr(x))


@dataclass
class Outcome:
    """What one call did, as plain values (comparable, printable, literal_eval-able)."""

    record: tuple[Any, ...]
    leaves: list[Any]
    shares: list[bool]


def observe(
    call: Callable[[], Any],
    memory: Any,
    context: Callable[[], Any] = contextlib.nullcontext,
) -> Outcome:
    """Run ``call`` under ``context`` and record everything the contract lets a user see.

    Sharing is shown by mutation: every byte of the input's memory is flipped, each
    result leaf is read again, and the memory is restored.
    """
    try:
        with context():
            result = call()
    except Exception as exc:  # the error itself is the outcome
        return Outcome(("raised", type(exc).__module__, type(exc).__qualname__, str(exc)), [], [])
    leaves: list[Any] = []
    structure = _structure(result, leaves)
    records = [_leaf_record(leaf) for leaf in leaves]
    before = [raw_bits(leaf) for leaf in leaves]
    flip_bits(memory)
    try:
        after = [raw_bits(leaf) for leaf in leaves]
    finally:
        flip_bits(memory)
    shares = [b != a for b, a in zip(before, after, strict=True)]
    return Outcome(("returned", structure, tuple(records), tuple(shares)), leaves, shares)


def assert_memory_safe(data: Any, outcome: Outcome) -> None:
    """Section 6: no writable tensor over read-only memory, no writable NumPy array over a
    tensor that requires grad."""
    read_only = isinstance(data, np.ndarray) and not data.flags.writeable
    needs_grad = isinstance(data, torch.Tensor) and data.requires_grad
    for leaf, shared in zip(outcome.leaves, outcome.shares, strict=True):
        if not shared:
            continue
        if read_only:
            assert not isinstance(leaf, torch.Tensor), "a tensor aliases read-only memory"
            assert not leaf.flags.writeable, "a writable array aliases read-only memory"
        if needs_grad and isinstance(leaf, np.ndarray):
            assert not leaf.flags.writeable, "a writable array aliases a tensor needing grad"


class Source:
    """A drawn input and a writable uint8 handle on the memory it lives in."""

    def __init__(self, data: Any, memory: Any) -> None:
        self.data = data
        self.memory = memory

    def __repr__(self) -> str:
        d = self.data
        if isinstance(d, torch.Tensor):
            return (
                f"Source(tensor dtype={d.dtype}, shape={tuple(d.shape)}, stride={d.stride()}, "
                f"offset={d.storage_offset()}, requires_grad={d.requires_grad})"
            )
        return f"Source({Input(d, d)!r})"


#: float32 (the default policy's own dtype, which shares) weighted up
GRAD_DTYPES = [torch.float32] * 3 + [torch.float16, torch.bfloat16, torch.float64, torch.complex64]


@st.composite
def sources(draw: st.DrawFn, kind: str = "any") -> Source:
    """An ndarray view (strided, reversed, byte-swapped, read-only) or a CPU tensor view,
    possibly requiring grad, with a writable handle on its memory.

    ``kind="read_only"``: always a read-only ndarray view; ``kind="grad"``: always a
    floating tensor that requires grad.
    """
    if kind == "read_only" or (kind == "any" and draw(st.booleans(), label="ndarray")):
        inp = draw(array_views(allow_readonly=True))
        array = inp.array
        if kind == "read_only" and array.flags.writeable:
            array = array.view()
            array.flags.writeable = False
        return Source(array, memory_handle(inp.base))
    if kind == "grad":
        t = draw(tensors(st.sampled_from(GRAD_DTYPES), nonempty=True))
        t = t.detach().requires_grad_()
        return Source(t, memory_handle(t))
    t = draw(tensors())
    if (t.dtype.is_floating_point or t.dtype.is_complex) and draw(st.booleans(), label="grad"):
        t = t.detach().requires_grad_()
    return Source(t, memory_handle(t))


class _Omitted:
    """An option left out of the call (the default fast path is a path of its own)."""

    def __repr__(self) -> str:
        return "<omitted>"


OMIT = _Omitted()


def path_call(path: str, data: Any, reference: Any, **options: Any) -> Callable[[], Any]:
    """A call of one public path; options equal to ``OMIT`` are not passed."""
    options = {key: value for key, value in options.items() if value is not OMIT}
    if path == "convert_like":
        options.setdefault("dtype", tb.FLOAT32)  # convert_like has no default dtype
    if path == "to_tensor":
        return lambda: tb.to_tensor(data, **options)
    if path == "to_numpy":
        return lambda: tb.to_numpy(data, **options)
    if path == "tree_to_tensor":
        return lambda: tb.tree_to_tensor({"x": data, "rest": [data, 3, "s", None]}, **options)
    if path == "tree_to_numpy":
        return lambda: tb.tree_to_numpy({"x": data, "rest": (data, 2.5)}, **options)
    if path == "collate":
        return lambda: tb.collate([{"x": data, "y": 1}, {"x": data, "y": 2}], **options)
    if path == "convert_like":
        return lambda: tb.convert_like(data, reference, **options)
    assert path == "prefetch"
    return lambda: list(tb.prefetch([{"x": data}, [data]], device="cpu", **options))


# ---------------------------------------------------------------------------
# the calls before a call (contract section 3: they never change what it does)
# ---------------------------------------------------------------------------

CONTEXTS: dict[str, Callable[[], Any]] = {
    "plain": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
    "set_grad_enabled(False)": lambda: torch.set_grad_enabled(False),
    "errstate(all='raise')": lambda: np.errstate(all="raise"),
}

#: equal to tb.FLOAT32 (section 3 lists exactly these two changes)
EQUAL_TO_FLOAT32 = tb.DtypePolicy(floating="float32", complex="complex64")


def _ignore_errors(call: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(tb.TensorBridgeError):
            call()

    return run


#: other conversions, each of which could fill a cache that a later call then reads
WARM_UPS: dict[str, Callable[[], None]] = {
    "to_numpy float32": lambda: tb.to_numpy(torch.ones(3)),
    "to_numpy float64": lambda: tb.to_numpy(torch.ones(3, dtype=torch.float64)),
    "to_numpy grad": lambda: tb.to_numpy(torch.ones(3, requires_grad=True)),
    "to_tensor (2, 1)": lambda: tb.to_tensor(np.ones((2, 1))),
    "to_tensor float32": lambda: tb.to_tensor(np.ones(3, np.float32)),
    "to_tensor PRESERVE": lambda: tb.to_tensor(np.ones(2), dtype=tb.PRESERVE),
    "to_tensor equal policy": lambda: tb.to_tensor(np.ones(2), dtype=EQUAL_TO_FLOAT32),
    "share error FLOAT32": _ignore_errors(
        lambda: tb.to_tensor(np.ones(2), dtype=tb.FLOAT32, copy=False)
    ),
    "share error equal policy": _ignore_errors(
        lambda: tb.to_tensor(np.ones(2), dtype=EQUAL_TO_FLOAT32, copy=False)
    ),
    "tree_to_tensor": lambda: tb.tree_to_tensor({"x": np.ones(2)}),
    "collate": lambda: tb.collate([np.ones(2), np.ones(2)]),
    "convert_like": lambda: tb.convert_like(torch.ones(2), np.zeros(1), dtype=tb.PRESERVE),
}


def warm_up_everything() -> None:
    for warm_up in WARM_UPS.values():
        warm_up()


def _grad_case(context: str, path: str = "to_numpy") -> tuple[Callable[[], Any], Any, str]:
    w = torch.ones(3, requires_grad=True)
    if path == "to_numpy":
        return (lambda: tb.to_numpy(w)), memory_handle(w), context
    return (lambda: tb.convert_like(w, np.zeros(1), dtype=tb.PRESERVE)), memory_handle(w), context


def _array_case(
    a: np.ndarray, call: Callable[[np.ndarray], Any], context: str = "plain"
) -> tuple[Callable[[], Any], Any, str]:
    return (lambda: call(a)), memory_handle(a), context


def _tensor_case(
    t: torch.Tensor, call: Callable[[torch.Tensor], Any], context: str = "plain"
) -> tuple[Callable[[], Any], Any, str]:
    return (lambda: call(t)), memory_handle(t), context


#: the calls whose very first run in a fresh interpreter is compared with a warm one
KEY_CASES: dict[str, Callable[[], tuple[Callable[[], Any], Any, str]]] = {
    "to_numpy grad, plain": lambda: _grad_case("plain"),
    "to_numpy grad, no_grad": lambda: _grad_case("no_grad"),
    "to_numpy grad, inference_mode": lambda: _grad_case("inference_mode"),
    "to_numpy grad, set_grad_enabled(False)": lambda: _grad_case("set_grad_enabled(False)"),
    "convert_like grad, no_grad": lambda: _grad_case("no_grad", "convert_like"),
    "to_tensor (6, 1) float64": lambda: _array_case(np.arange(6.0)[:, None], tb.to_tensor),
    "to_numpy as_strided (3, 1), (1, 7)": lambda: _tensor_case(
        torch.arange(7.0).double().as_strided((3, 1), (1, 7)), tb.to_numpy
    ),
    "to_tensor float32 shares": lambda: _array_case(np.ones(3, np.float32), tb.to_tensor),
    "to_tensor PRESERVE int64 copy=False": lambda: _array_case(
        np.arange(3), lambda a: tb.to_tensor(a, dtype=tb.PRESERVE, copy=False)
    ),
    "to_tensor equal policy copy=False": lambda: _array_case(
        np.ones(2), lambda a: tb.to_tensor(a, dtype=EQUAL_TO_FLOAT32, copy=False)
    ),
}


def cold_and_warm(name: str) -> str:
    """Run in a fresh child: the key case first, then after every warm-up (a repr)."""
    call, memory, context = KEY_CASES[name]()
    cold = observe(call, memory, CONTEXTS[context]).record
    warm_up_everything()
    warm = observe(call, memory, CONTEXTS[context]).record
    return repr((cold, warm))


# ---------------------------------------------------------------------------
# messages (contract section 8)
# ---------------------------------------------------------------------------


def message_of(call: Callable[[], Any], error: type[BaseException] = tb.TensorBridgeError) -> str:
    """The message of the error ``call`` raises (it must raise ``error``)."""
    with pytest.raises(error) as info:
        call()
    return str(info.value)


def assert_short(message: str, limit: int = 300) -> None:
    assert len(message) < limit, f"a {len(message)}-character message: {message}"
    assert message.count("\n") <= 3, f"more than a few lines: {message}"


# ---------------------------------------------------------------------------
# fresh interpreters (crash-class checks)
# ---------------------------------------------------------------------------


def run_child(
    code: str, *args: str, warnings: str = "error", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (warnings as errors): crash-class checks.

    A segfault or hang there is reported by the test, not fatal to the run: the child
    is killed after ``timeout`` seconds (``subprocess.TimeoutExpired``).
    ``warnings`` is the ``-W`` filter (scripts that fork narrow it: Python 3.12+
    warns when a process with threads forks).
    """
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-W", warnings, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def child_output(proc: subprocess.CompletedProcess[str]) -> str:
    """The last stdout line of a child that must have run cleanly."""
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def run_children(jobs: dict[str, tuple[str, ...]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run several :func:`run_child` jobs two at a time (the machine has two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_child, *job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


#: Script text to put before a child script (``ISOLATED + textwrap.dedent(code)``): it
#: defines ``isolated(label, fn, deadline=15.0)``, which runs ``fn`` in a forked
#: grandchild and reports one line, so that a crash or a hang there is reported for
#: that call alone.
ISOLATED = textwrap.dedent(
    """
    import os, signal, sys, time, traceback, warnings
    warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)

    def isolated(label, fn, deadline=15.0):
        # run fn in a forked child; print and judge the line it returns
        sys.stdout.flush()
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                line = fn()
            except BaseException as e:
                line = f"FAIL {label}: {type(e).__name__}: {str(e)[:300]}"
            os.write(write_end, line.encode())
            os._exit(0)
        os.close(write_end)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            print(f"FAIL {label}: hung for {deadline} s", flush=True)
            return False
        with os.fdopen(read_end, "rb") as pipe:
            line = pipe.read().decode()
        if os.WIFSIGNALED(status):
            line = f"FAIL {label}: crashed with signal {os.WTERMSIG(status)}"
        elif os.WEXITSTATUS(status) != 0:
            line = f"FAIL {label}: exit status {os.WEXITSTATUS(status)}"
        print(line, flush=True)
        return line.startswith("ok ")
    """
)
