"""The operations a plan is executed with: share, seal, lay out, cast.

Sharing wraps an ndarray's memory in a tensor and back (bit views for the
ml_dtypes types). Sealing makes a shared array read-only for good. Casting
writes new memory: NumPy's ``astype`` values (split across threads for large
arrays), torch's kernel for the pairs the plan allows, or a NumPy cast that
autograd records. Every copy takes its layout from ``copy_strides``, the one
layout rule (contract section 5): a dense input keeps its memory order, as
``ndarray.astype(order="K")`` keeps it; any other input gives C order.

Nothing here decides: which kernel casts, and when, is the plan's word.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Final, Literal, cast

import numpy as np
import numpy.typing as npt
import torch

from . import _threads
from ._compat import (
    base_of,
    from_numpy,
    ignore_fp_errors,
    is_ndarray,
    real_part,
    restore_fp_errors,
    view,
)
from ._dtypes import DType, from_numpy_dtype, numpy_casts_directly

__all__ = [
    "autograd_numpy_cast",
    "cast_into",
    "copy_strides",
    "is_dense",
    "numpy_cast",
    "seal",
    "share_ndarray",
    "share_tensor",
    "shareable_strides",
    "torch_cast",
    "torch_only_cast",
]

_CONTIGUOUS: Final = torch.contiguous_format


# --------------------------------------------------------------------------- #
# The layout rule
# --------------------------------------------------------------------------- #


def copy_strides(shape: Sequence[int], strides: Sequence[int]) -> tuple[int, ...] | None:
    """The strides (in elements) of a copy of a dense input; None for C order.

    ``strides`` are the input's, in elements. A dense input (every element
    stored once, no gaps, whatever the axis order and stride signs) gives the
    compact strides of its own axis order, exactly as ``ndarray.astype(order=
    "K")`` gives them: C order for C-contiguous inputs, Fortran order for
    Fortran-contiguous ones, else the axes sorted by stride. Strides of size-1
    axes address nothing: they place the axis, never make an input dense or not.
    Anything else (gaps, overlaps, broadcasts) gives None: C order.
    """
    order = _axis_order(shape, strides)
    if order is None:
        return None
    moving = [axis for axis in range(len(shape)) if shape[axis] != 1]
    if [axis for axis in order if shape[axis] != 1] == moving:
        return None  # C order (size-1 axes aside)
    if [axis for axis in reversed(order) if shape[axis] != 1] == moving:
        order = list(reversed(range(len(shape))))  # Fortran order, as NumPy lays it out
    result = [0] * len(shape)
    step = 1
    for axis in reversed(order):
        result[axis] = step
        step *= shape[axis]
    return tuple(result)


def is_dense(array: npt.NDArray[Any]) -> bool:
    """Whether a copy of ``array`` keeps its memory order (NumPy's ``order="K"`` applies)."""
    if array.flags.c_contiguous or array.flags.f_contiguous:
        return True
    itemsize = array.itemsize
    return _axis_order(array.shape, [stride // itemsize for stride in array.strides]) is not None


def _axis_order(shape: Sequence[int], strides: Sequence[int]) -> list[int] | None:
    """The axes from outermost to innermost (by stride), or None when there are gaps."""
    order = sorted(range(len(shape)), key=lambda axis: -abs(strides[axis]))
    expected = 1
    for axis in reversed(order):
        if shape[axis] != 1:
            if abs(strides[axis]) != expected:
                return None
            expected *= shape[axis]
    return order


def _new_array(
    shape: tuple[int, ...], dtype: np.dtype[Any], strides: tuple[int, ...] | None
) -> npt.NDArray[Any]:
    """Uninitialised memory from NumPy's allocator (huge pages from 4 MB) in that layout."""
    if strides is None:
        return np.empty(shape, dtype=dtype)
    flat = np.empty(math.prod(shape), dtype=dtype)
    itemsize = dtype.itemsize
    return _restrided(flat, shape, tuple(step * itemsize for step in strides))


def _restrided(
    array: npt.NDArray[Any], shape: tuple[int, ...], strides: tuple[int, ...]
) -> npt.NDArray[Any]:
    """A view of ``array``'s memory with other strides (in bytes), any dtype.

    ``as_strided`` goes through ``__array_interface__``, whose type strings
    cannot name the ml_dtypes types: it works on raw bytes of the same width.
    """
    raw = view(array, np.dtype(f"V{array.itemsize}"))
    placed = np.lib.stride_tricks.as_strided(
        raw, shape, strides, writeable=bool(array.flags.writeable)
    )
    return view(placed, array.dtype)


# --------------------------------------------------------------------------- #
# Sharing
# --------------------------------------------------------------------------- #


def shareable_strides(array: npt.NDArray[Any]) -> npt.NDArray[Any] | None:
    """``array``, or a view with its size-1 axes' strides normalised, that torch can wrap.

    torch takes strides that are non-negative multiples of the item size. A
    size-1 axis addresses nothing, so its stride may be anything (NumPy's
    ``a[:, None]`` gives 0, ``as_strided`` whatever it was told): such an axis
    gets stride 0 here. None when another axis's stride rules sharing out.
    """
    itemsize = array.itemsize
    odd = False
    for size, stride in zip(array.shape, array.strides, strict=True):
        if stride < 0 or stride % itemsize:
            if size != 1:
                return None
            odd = True
    if not odd:
        return array
    strides = tuple(
        0 if size == 1 else stride for size, stride in zip(array.shape, array.strides, strict=True)
    )
    return _restrided(array, array.shape, strides)


def share_ndarray(array: npt.NDArray[Any], dtype: DType) -> torch.Tensor:
    """A tensor over exactly ``array``'s memory (bit views for the ml_dtypes types)."""
    if dtype.bits_numpy is not None:
        assert dtype.torch is not None
        return from_numpy(view(array, dtype.bits_numpy)).view(dtype.torch)
    return from_numpy(array)


def share_tensor(tensor: torch.Tensor, dtype: DType, *, sealed: bool = False) -> npt.NDArray[Any]:
    """An array over exactly a CPU tensor's memory (bit views for the ml_dtypes types).

    ``sealed`` makes it read-only for good (see ``seal``).
    """
    if dtype.bits_torch is not None:
        assert dtype.numpy is not None
        bits = tensor.view(dtype.bits_torch).numpy()
        if sealed:
            bits.setflags(write=False)
        return view(bits, dtype.numpy)
    array = tensor.numpy()
    if sealed:
        array.setflags(write=False)
    return array


def seal(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A read-only view of ``array`` that cannot be made writable again.

    NumPy lets an array be made writable again when its ``base`` chain ends at
    writable memory: an ndarray that owns its data, or an object exporting a
    buffer. The arrays sealed here (DLPack imports, whose base is the capsule's
    owner) end at neither, so clearing the flag of a new view is final: no copy,
    no buffer-format parsing. Any other array is copied first.
    """
    owner: object = array
    while is_ndarray(owner) and not owner.flags.owndata:
        owner = base_of(owner)
    if is_ndarray(owner) or _exports_buffer(owner):
        sealed: npt.NDArray[Any] = np.array(array, copy=True)
    else:
        sealed = view(array, array.dtype)
    sealed.flags.writeable = False
    return sealed


def _exports_buffer(value: object) -> bool:
    try:
        memoryview(cast(Any, value)).release()
    except TypeError:
        return False
    return True


# --------------------------------------------------------------------------- #
# Casting
# --------------------------------------------------------------------------- #


def numpy_cast(
    array: npt.NDArray[Any], target: DType, *, quiet: bool = False, direct: bool | None = None
) -> npt.NDArray[Any]:
    """New memory holding ``array``'s values as ``target``, as ``astype`` writes them.

    The layout follows ``copy_strides``. ``quiet`` says the pair cannot set a
    floating-point flag (``numpy_casts_quietly``), so the error state is left
    alone; otherwise no flag is reported (see ``cast_into``). ``direct`` says
    one ``astype`` casts the pair (``numpy_casts_directly``; found out here when
    None). Large arrays are split across threads.
    """
    dtype = target.numpy
    assert dtype is not None
    if array.nbytes < _threads.PARALLEL_BYTES:
        order: Literal["K", "C"] = "K" if is_dense(array) else "C"
        if quiet:
            return array.astype(dtype, order=order)
        if direct or (direct is None and numpy_casts_directly(array.dtype, dtype)):
            token = ignore_fp_errors()
            try:
                return array.astype(dtype, order=order)
            finally:
                restore_fp_errors(token)
    out = _new_array(array.shape, dtype, _array_copy_strides(array))
    cast_into(out, array)
    return out


def _array_copy_strides(array: npt.NDArray[Any]) -> tuple[int, ...] | None:
    if array.flags.c_contiguous:
        return None
    itemsize = array.itemsize
    return copy_strides(array.shape, [stride // itemsize for stride in array.strides])


def cast_into(out: npt.NDArray[Any], array: npt.NDArray[Any], *, parallel: bool = True) -> None:
    """Write ``array``'s values into ``out`` (same shape), converted as NumPy converts.

    The values are exactly NumPy's, without NumPy's warnings: the ``casting``
    rule is where a user consents to a lossy cast, so overflow to inf, NaN into
    an integer under ``casting="unsafe"``, or a complex-to-real cast (which keeps
    the real part) pass quietly, as they do on the torch paths. The error state
    is thread-local and restored, so no global state changes.

    Large copies are split across threads (``_threads``); ``parallel=False``
    keeps this one on the calling thread (for callers that parallelise already).
    """
    if array.dtype.kind == "c" and out.dtype.kind != "c":
        array = real_part(array)
    if not np.can_cast(array.dtype, out.dtype, "unsafe"):
        # ml_dtypes has no direct cast between some of its types (float8_e8m0fnu
        # and the other float8s); each of them widens exactly into float32.
        token = ignore_fp_errors()
        try:
            array = array.astype(np.float32)
        finally:
            restore_fp_errors(token)
    pieces = _threads.chunks(out, array) if parallel else None
    if pieces is None:
        _copy(out, array)
    else:
        _threads.run([functools.partial(_copy, *piece) for piece in pieces])


def _copy(out: npt.NDArray[Any], array: npt.NDArray[Any]) -> None:
    # The error state is per thread, so each worker thread sets its own.
    token = ignore_fp_errors()
    try:
        np.copyto(out, array, casting="unsafe")
    finally:
        restore_fp_errors(token)


def torch_cast(tensor: torch.Tensor, target: DType, huge: bool) -> torch.Tensor:
    """``tensor`` cast by torch's kernel into new memory laid out by ``copy_strides``.

    ``huge`` (the plan's word for this size) writes the result into memory from
    NumPy's allocator, which asks Linux for huge pages from 4 MB on: the first
    writes then fault in 2 MB at a time (casts of 16M elements took 0.12 to
    0.43 of ``.to()``'s time on this project's machine). As with
    ``torch.from_numpy``, such a tensor cannot be ``resize_()``d. Casts that
    autograd records, tensor subclasses and negative views take ``Tensor.to``,
    which keeps the graph and the subclass.

    (The common case comes first, in as few steps as can be: each step of
    Python between two parallel kernels lets torch's worker threads fall
    asleep, and waking them costs more than the step.)
    """
    assert target.torch is not None
    if not huge and tensor.is_contiguous() and (target.kind == "c" or not tensor.is_complex()):
        return tensor.to(dtype=target.torch, memory_format=_CONTIGUOUS, copy=True)
    strides = None if tensor.is_contiguous() else copy_strides(tensor.shape, tensor.stride())
    if tensor.is_complex() and target.kind != "c":
        tensor = tensor.real  # a view, without torch's complex-to-real warning
    if (
        huge
        and target.numpy_builtin
        and type(tensor) is torch.Tensor
        and not tensor.requires_grad
        and not tensor.is_neg()  # copy_ of a negative view loses -0.0 and NaN signs
    ):
        assert target.numpy is not None
        out = from_numpy(_new_array(tuple(tensor.shape), target.numpy, strides))
        out.copy_(tensor)
        return out
    if strides is None:
        return tensor.to(dtype=target.torch, memory_format=_CONTIGUOUS, copy=True)
    result = tensor.to(dtype=target.torch, copy=True)  # torch.preserve_format: dense inputs
    if result.stride() != strides:
        # preserve_format copies the strides of size-1 axes verbatim; they address
        # nothing, so the canonical ones make a view of the same elements.
        result = result.as_strided(tuple(result.shape), strides)
    return result


def torch_only_cast(array: npt.NDArray[Any], source: DType, target: DType) -> torch.Tensor:
    """A cast into a dtype NumPy lacks here (complex32; bfloat16 and float8 without ml_dtypes).

    torch casts it, from a tensor over the array (or over a native C copy of it).
    """
    if source.torch is None:
        # longdouble into a torch-only dtype: float64 is the widest type torch reads.
        wide = np.dtype(np.complex128 if source.kind == "c" else np.float64)
        source = from_numpy_dtype(wide)
        array = numpy_cast(array, source)
    wrappable = shareable_strides(array) if array.flags.writeable and array.dtype.isnative else None
    if wrappable is None:
        wrappable = np.array(array, dtype=source.numpy, order="C", copy=True)
    return torch_cast(share_ndarray(wrappable, source), target, False)


def autograd_numpy_cast(tensor: torch.Tensor, source: DType, target: DType) -> torch.Tensor:
    """A CPU cast with NumPy's values that autograd records (the gradient casts back)."""
    apply: Any = getattr(_NumpyCast, "apply")  # noqa: B009 (torch leaves its type unknown)
    return cast(torch.Tensor, apply(tensor, source, target))


def _numpy_cast_of_tensor(tensor: torch.Tensor, source: DType, target: DType) -> torch.Tensor:
    host = share_tensor(tensor.detach().resolve_conj().resolve_neg(), source)
    return share_ndarray(numpy_cast(host, target), target)


class _NumpyCast(torch.autograd.Function):
    """A CPU cast whose values are NumPy's and whose backward casts the gradient back."""

    @staticmethod
    def forward(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        tensor, source, target = args
        ctx.source = source
        return _numpy_cast_of_tensor(tensor, source, target)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        source: DType = ctx.source
        assert source.torch is not None
        (grad,) = grad_outputs
        return grad.to(dtype=source.torch), None, None
