"""Hypothesis strategies and small helpers shared by the contract tests.

Everything that generates inputs lives here (dtypes, shapes, arrays with arbitrary
bit patterns, strided / reversed / transposed views, byte order, read-only flags),
together with the helpers that compare results bit for bit without going through
tensorbridge.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

try:
    import ml_dtypes
except ImportError:  # the optional extra is absent
    ml_dtypes = None

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


def run_child(code: str, *args: str, warnings: str = "error") -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (warnings as errors): crash-class checks.

    A segfault or hang there is reported by the test, not fatal to the run.
    ``warnings`` is the ``-W`` filter (scripts that fork narrow it: Python 3.12+
    warns when a process with threads forks).
    """
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-W", warnings, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
