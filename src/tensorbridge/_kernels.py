"""Memory and cast kernels: the operations a plan is executed with.

Sharing (a tensor over an ndarray's memory and back, bit views for the
ml_dtypes types, read-only views that stay read-only) and casting (NumPy's
``astype`` values, split across threads for large arrays; torch's kernel for
the dtype pairs the plan allows; a NumPy cast that autograd records).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import torch

from . import _parallel
from ._dtypes import DType, from_numpy_dtype, from_torch_dtype

# The dtype pairs whose torch CPU cast writes exactly the bits NumPy's astype
# writes (ml_dtypes' for bfloat16). Kept out: every cast from a floating type
# to an integer (out-of-range and NaN values differ), float16 <-> float32/64
# and float32 -> float16 (torch quiets signalling NaNs, NumPy keeps their
# payload), float64 -> float16 (torch rounds twice, through float32) and any
# floating type to bfloat16 (rounding of NaN and ties differ from ml_dtypes).
_INTEGERS: Final = (
    "bool",
    "uint8",
    "int8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
)
_FLOATS: Final = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")
TORCH_EXACT_CASTS: Final[frozenset[tuple[str, str]]] = frozenset(
    {(a, b) for a in _INTEGERS for b in (*_INTEGERS, *_FLOATS) if a != b}
    | {
        ("bfloat16", "float32"),
        ("bfloat16", "float64"),
        ("bfloat16", "complex64"),
        ("bfloat16", "complex128"),
        ("float32", "float64"),
        ("float32", "complex64"),
        ("float32", "complex128"),
        ("float64", "float32"),
        ("float64", "complex64"),
        ("float64", "complex128"),
        ("complex64", "complex128"),
        ("complex128", "complex64"),
    }
)


def torch_casts_exactly(source: DType, target: DType) -> bool:
    """Whether torch's cast from ``source`` to ``target`` gives NumPy's bits."""
    return (source.name, target.name) in TORCH_EXACT_CASTS


#: torch runs a kernel on the calling thread below this many elements
#: (at::internal::GRAIN_SIZE), so such casts are safe even after fork.
_TORCH_GRAIN: Final = 32768

# Where NumPy's astype stops being the faster cast, for the pairs torch's kernel
# may cast. astype costs about 0.4 us a call before its first element, torch's
# .to(dtype=) about 2 us, and below torch's grain size its kernel runs on one
# thread: integer sources (whose casts need no np.errstate, see
# numpy_casts_quietly) cast in NumPy in half torch's time at small sizes, and
# torch's two threads catch up only at the sizes below (measured per source
# width on this project's 2-core machine, the size where both take equal time),
# scaled by 2 / torch.get_num_threads(). Floating sources need np.errstate
# (1.6 us), which makes NumPy no faster than torch at any size: torch casts them.
# See docs/benchmarks.md.
_NUMPY_BELOW_AT_TWO_THREADS: Final = {1: 81920, 2: 98304, 4: 49152, 8: 40960}


def numpy_cast_below(source: DType, target: DType) -> int:
    """The input size (elements) below which NumPy's cast beats torch's kernel here (0: none)."""
    if not numpy_casts_quietly(source, target):
        return 0
    at_two = _NUMPY_BELOW_AT_TWO_THREADS.get(source.itemsize, _TORCH_GRAIN)
    return max(_TORCH_GRAIN, at_two * 2 // max(1, torch.get_num_threads()))


_QUIET_TARGETS: Final = frozenset((*_INTEGERS, "float32", "float64", "complex64", "complex128"))


def numpy_casts_quietly(source: DType, target: DType) -> bool:
    """Whether ``astype`` from ``source`` to ``target`` never sets a floating-point flag.

    Such a cast needs no ``np.errstate`` (which costs more than a small cast):
    it cannot warn or raise whatever the values and the user's error settings.
    Integer and bool sources into integers and into float32 or wider qualify;
    every floating source is out (a float32 signalling NaN widened to float64
    sets the invalid flag), and so is float16 as a target (int64 overflows it).
    """
    return (
        source.kind in "biu"
        and source.numpy_builtin
        and target.numpy_builtin
        and target.name in _QUIET_TARGETS
    )


# torch's intra-op thread pool does not survive fork: in a forked child whose
# parent ran a parallel torch kernel, the next parallel kernel waits forever for
# threads that no longer exist (plain `torch.from_numpy(a).float()` of 4M
# elements hangs there too). DataLoader workers set one torch thread, which is
# safe; anywhere else a forked child casts large arrays in NumPy instead, on
# tensorbridge's own pool (recreated per process).
#: Whether this process is a forked child (read as ``_kernels.forked``: the fast
#: paths skip the ``torch_kernel_safe`` call while it is False).
forked = False


def _note_fork() -> None:
    global forked
    forked = True


os.register_at_fork(after_in_child=_note_fork)


def torch_kernel_safe(numel: int) -> bool:
    """Whether torch's (possibly multi-threaded) cast kernel can run here."""
    return not forked or numel < _TORCH_GRAIN or torch.get_num_threads() == 1


def cast_into(out: npt.NDArray[Any], array: npt.NDArray[Any], *, parallel: bool = True) -> None:
    """Write ``array``'s values into ``out`` (same shape), converted as NumPy converts.

    The values are exactly NumPy's, without NumPy's warnings: the ``casting``
    rule is where a user consents to a lossy cast, so overflow to inf, NaN into
    an integer under ``casting="unsafe"``, or a complex-to-real cast (which keeps
    the real part) pass quietly, as they do on the torch paths. ``np.errstate``
    is thread-local and restored on exit, so no global state changes.

    Large copies are split across threads (``_parallel``); ``parallel=False``
    keeps this one on the calling thread (for callers that parallelise already).
    """
    if array.dtype.kind == "c" and out.dtype.kind != "c":
        # The cast says what the real part of a complex array is; pyright cannot match
        # NDArray[Any] to the self type numpy's stubs give ndarray.real.
        array = cast("npt.NDArray[np.floating[Any]]", array.real)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    if not np.can_cast(array.dtype, out.dtype, "unsafe"):
        # ml_dtypes has no direct cast between some of its types (float8_e8m0fnu
        # and the other float8s); each of them widens exactly into float32.
        with np.errstate(all="ignore"):
            array = array.astype(np.float32)
    pieces = _parallel.chunks(out, array) if parallel else None
    if pieces is None:
        _copy(out, array)
    else:
        _parallel.run([functools.partial(_copy, *piece) for piece in pieces])


def _copy(out: npt.NDArray[Any], array: npt.NDArray[Any]) -> None:
    # np.errstate is per thread, so each worker thread sets its own.
    with np.errstate(all="ignore"):
        np.copyto(out, array, casting="unsafe")


def cast_array(array: npt.NDArray[Any], target: DType) -> npt.NDArray[Any]:
    """New C-contiguous memory holding ``array``'s values as ``target`` (see ``cast_into``)."""
    assert target.numpy is not None
    out = np.empty(array.shape, dtype=target.numpy)
    cast_into(out, array)
    return out


#: Tensor's own conversion methods: ``t.float()`` costs about 0.4 us less a call
#: than ``t.to(dtype=torch.float32)`` and runs the same kernel; it keeps the
#: input's layout (callers use it for C-contiguous inputs only).
_DTYPE_METHODS: Final[dict[torch.dtype, Callable[[torch.Tensor], torch.Tensor]]] = {
    torch.float32: torch.Tensor.float,
    torch.float64: torch.Tensor.double,
    torch.float16: torch.Tensor.half,
    torch.bfloat16: torch.Tensor.bfloat16,
    torch.int64: torch.Tensor.long,
    torch.int32: torch.Tensor.int,
    torch.int16: torch.Tensor.short,
    torch.int8: torch.Tensor.char,
    torch.uint8: torch.Tensor.byte,
    torch.bool: torch.Tensor.bool,
}


def dtype_method(dtype: torch.dtype | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``Tensor.float`` and its siblings: the cheapest call that casts a contiguous tensor."""
    return None if dtype is None else _DTYPE_METHODS.get(dtype)


def cast_tensor(tensor: torch.Tensor, target: DType) -> torch.Tensor:
    """``tensor`` as ``target`` (itself when it already is), C-contiguous, as torch converts."""
    assert target.torch is not None
    if tensor.is_complex() and target.kind != "c":
        # .real is a view, without torch's warning (as in cast_array); copy=True so
        # the result never aliases the complex input, even where .to() could.
        return tensor.real.to(dtype=target.torch, memory_format=torch.contiguous_format, copy=True)
    # (dtype= by keyword: a positional dtype costs torch's argument parser ~1 us more.)
    return tensor.to(dtype=target.torch, memory_format=torch.contiguous_format)


#: NumPy asks Linux for huge pages for blocks from this size on (its allocator's
#: madvise(MADV_HUGEPAGE) threshold, the same in NumPy 1.26 and 2).
_HUGE_PAGES_FROM: Final = 4 << 20


def huge_page_elements(target: DType) -> int:
    """How many elements of ``target`` make a block NumPy asks huge pages for."""
    return _HUGE_PAGES_FROM // target.itemsize


def torch_cast(tensor: torch.Tensor, target: DType) -> torch.Tensor:
    """``tensor`` cast by torch's kernel into new C-contiguous memory.

    From 4 MB of result on, where NumPy has the target dtype, the memory comes
    from NumPy's allocator, which asks Linux for huge pages: the first writes
    fault in 2 MB at a time, and on this project's machine casts of 16M
    elements and more took 0.12 to 0.43 of ``.to()``'s time (0.7 to 1.0 at 4M).
    As with ``torch.from_numpy``, such a tensor cannot be ``resize_()``d.
    Smaller casts, casts that autograd must record, tensor subclasses, negative
    views and complex to real take ``.to()`` (``cast_tensor``).
    """
    if (
        tensor.numel() < huge_page_elements(target)
        or target.numpy is None
        or not target.numpy_builtin
        or type(tensor) is not torch.Tensor  # a subclass keeps its type through .to()
        or tensor.requires_grad
        or tensor.is_neg()  # copy_ of a negative view into complex loses -0.0 and NaN signs
        or (tensor.is_complex() and target.kind != "c")
    ):
        return cast_tensor(tensor, target)
    out = torch.from_numpy(np.empty(tuple(tensor.shape), dtype=target.numpy))  # pyright: ignore[reportUnknownMemberType]
    out.copy_(tensor)
    return out


def torch_strides_ok(array: npt.NDArray[Any]) -> bool:
    """Whether torch can wrap the array: no stride negative or off the item size."""
    itemsize = array.itemsize
    for stride in array.strides:  # noqa: SIM110 (a plain loop: faster, and per sample)
        if stride < 0 or stride % itemsize:
            return False
    return True


def writable_native(array: npt.NDArray[Any], source: DType) -> npt.NDArray[Any]:
    """The array itself when torch may wrap it, else a C-contiguous native copy."""
    if array.flags.writeable and array.dtype.isnative and torch_strides_ok(array):
        return array
    assert source.numpy is not None
    return np.array(array, dtype=source.numpy, order="C", copy=True)


def copy_to_tensor(
    array: npt.NDArray[Any], source: DType, target: DType, torch_kernel: bool = False
) -> torch.Tensor:
    """A new C-contiguous CPU tensor holding ``array``'s values as ``target``.

    ``torch_kernel`` (the plan's word that torch's cast gives NumPy's bits for
    this pair) lets torch's vectorised, multi-threaded kernel cast wherever
    torch can wrap the array; otherwise NumPy casts, so values are exactly
    those of ``ndarray.astype``, and torch casts only into dtypes NumPy lacks
    (complex32, or bfloat16 and float8 without ml_dtypes).
    """
    if (
        torch_kernel
        and array.size >= numpy_cast_below(source, target)
        and torch_kernel_safe(array.size)
        and target.torch is not None
        and source.bits_numpy is None
        and array.flags.writeable
        and array.dtype.isnative
        and torch_strides_ok(array)
    ):
        wrapped = torch.from_numpy(array)  # pyright: ignore[reportUnknownMemberType]
        return torch_cast(wrapped, target)
    if target.numpy is not None:
        return share_ndarray(cast_array(array, target), target)
    assert target.torch is not None
    if source.torch is None:
        # longdouble into a torch-only dtype: float64 is the widest type torch reads.
        array = array.astype(np.complex128 if source.kind == "c" else np.float64)
        source = from_numpy_dtype(array.dtype)
    staged = share_ndarray(writable_native(array, source), source)
    return cast_tensor(staged, target)


def share_ndarray(array: npt.NDArray[Any], dtype: DType) -> torch.Tensor:
    """A tensor over exactly ``array``'s memory (bit views for ml_dtypes types)."""
    # torch's stubs leave from_numpy's parameter unannotated; numpy's type one
    # overload of ndarray.view with typing.Self, which pyright cannot resolve under
    # pythonVersion 3.10.
    if dtype.bits_numpy is not None:
        assert dtype.torch is not None
        return torch.from_numpy(array.view(dtype.bits_numpy)).view(dtype.torch)  # pyright: ignore[reportUnknownMemberType]
    return torch.from_numpy(array)  # pyright: ignore[reportUnknownMemberType]


def cast_cpu_tensor(tensor: torch.Tensor, source: DType, target: DType) -> torch.Tensor:
    """A CPU tensor as ``target`` (itself when it already is), keeping its autograd graph.

    torch's kernel casts where it gives NumPy's bits (``torch_casts_exactly``);
    every other pair NumPy knows is cast by NumPy, so values are exactly
    ``ndarray.astype``'s (torch's CPU cast from float64 to float16, for one,
    rounds twice), through an autograd Function when the tensor requires grad.
    Pairs NumPy lacks (complex32; bfloat16 and float8 without ml_dtypes) are
    cast by torch.
    """
    if target is source:
        return tensor
    if source.numpy is None or target.numpy is None:
        return cast_tensor(tensor, target)
    if torch_casts_exactly(source, target) and torch_kernel_safe(tensor.numel()):
        return torch_cast(tensor, target)
    if tensor.requires_grad and target.kind in "fc":
        # NumPy's values, and the autograd graph kept (the gradient flows back as
        # the source dtype). The cast reads the data, not the graph: apply() is
        # given the tensor and records the backward.
        apply: Any = _NumpyCast.apply  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return cast(torch.Tensor, apply(tensor, source, target))
    return _numpy_cast(tensor.detach(), source, target)


def cast_device_tensor(tensor: torch.Tensor, target: DType) -> torch.Tensor:
    """A device tensor cast to ``target``, with NumPy's values.

    On the device where torch's kernel gives NumPy's bits; otherwise the tensor
    visits the host, where NumPy casts, and comes back.
    """
    source = from_torch_dtype(tensor.dtype)
    if target is source:
        return tensor
    if torch_casts_exactly(source, target) or source.numpy is None or target.numpy is None:
        return cast_tensor(tensor, target)
    # autograd records .cpu() and .to(device); cast_cpu_tensor keeps the graph too.
    return cast_cpu_tensor(tensor.cpu(), source, target).to(tensor.device)


def _numpy_cast(tensor: torch.Tensor, source: DType, target: DType) -> torch.Tensor:
    host = share_tensor(tensor.resolve_conj().resolve_neg(), source)
    return share_ndarray(cast_array(host, target), target)


class _NumpyCast(torch.autograd.Function):
    """A CPU cast whose values are NumPy's and whose backward casts the gradient back."""

    @staticmethod
    def forward(  # pyright: ignore[reportIncompatibleMethodOverride]
        ctx: Any, tensor: torch.Tensor, source: DType, target: DType
    ) -> torch.Tensor:
        ctx.source = source
        return _numpy_cast(tensor.detach(), source, target)

    @staticmethod
    def backward(  # pyright: ignore[reportIncompatibleMethodOverride]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        source: DType = ctx.source
        return cast_tensor(grad, source), None, None


def share_tensor(tensor: torch.Tensor, dtype: DType) -> npt.NDArray[Any]:
    """An array over exactly the CPU tensor's memory (bit views for ml_dtypes types)."""
    if dtype.bits_torch is not None:
        assert dtype.numpy is not None
        # numpy's stubs type one overload of ndarray.view with typing.Self, which
        # pyright cannot resolve under pythonVersion 3.10.
        return tensor.view(dtype.bits_torch).numpy().view(dtype.numpy)  # pyright: ignore[reportUnknownMemberType]
    return tensor.numpy()


def read_only_view(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A view of ``array`` that is read-only and cannot be made writable again.

    Clearing ``flags.writeable`` alone is not enough: NumPy lets a view be made
    writable again when its ``.base`` is writable. Here the view is built on a
    read-only memoryview (of the integer bits, for dtypes the buffer protocol
    cannot describe), so no array in the ``.base`` chain can ever be writable.
    """
    if not array.flags.writeable and _base_chain_read_only(array):
        return array
    dtype = array.dtype
    if dtype.isbuiltin != 1 or dtype.kind not in "biufc":  # ml_dtypes types: share the bits
        bits = np.dtype(f"u{dtype.itemsize}") if dtype.itemsize in (1, 2, 4, 8) else None
        if bits is None:  # pragma: no cover - every ml_dtypes type is 1 or 2 bytes
            private: npt.NDArray[Any] = np.array(array, copy=True)
            private.flags.writeable = False
            return private
        # numpy's stubs type one overload of ndarray.view with typing.Self.
        plain = array.view(bits)  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    else:
        plain = array
    exporter: Any = plain.reshape(1) if plain.ndim == 0 else plain  # pyright: ignore[reportUnknownMemberType]
    view: npt.NDArray[Any] = np.asarray(memoryview(exporter).toreadonly())
    if plain.ndim == 0:
        view = view.reshape(())  # pyright: ignore[reportUnknownMemberType]
    view = view.view(dtype)  # pyright: ignore[reportUnknownMemberType]
    view.flags.writeable = False
    return view


def _base_chain_read_only(array: npt.NDArray[Any]) -> bool:
    base: object = array
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = cast(object, base.base)  # pyright: ignore[reportUnknownMemberType]
    if base is None:
        return True  # owns its memory: writable again only by its owner's choice
    if isinstance(base, memoryview):
        return base.readonly
    return False
