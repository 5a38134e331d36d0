"""The conversion core: ``to_tensor``, ``to_numpy`` and ``shares_memory``.

Each public function starts with its fast path: the plan of a repeated call
(the same input dtype and options) is remembered, so a call that shares, or
casts with a kernel the plan allows, is a dictionary lookup and the one torch
call it needs. Everything else goes through the general path: turn the input
into an ndarray or tensor (``_inputs``), get its plan (``_plan``: result dtype,
share or copy and why, the dtype that crosses the bus), check the memory of
this input, and execute the plan with the kernels (``_kernels``) and the device
moves (``_device``) in a straight line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, Final, TypeAlias, TypeVar, overload

import numpy as np
import numpy.typing as npt
import torch

from . import _kernels
from ._device import CPU, device_to_host, host_to_device, same_device
from ._dtypes import (
    FLOAT32,
    PRESERVE,
    Casting,
    DType,
    DTypeLike,
    DtypePolicy,
    from_numpy_dtype,
    from_torch_dtype,
)
from ._errors import InvalidArgumentError, InvalidInputError, TensorBridgeError
from ._inputs import INTERNAL_ERRORS, check_tensor_has_data, coerce, internal_error, is_ndarray
from ._kernels import (
    cast_array,
    cast_cpu_tensor,
    cast_device_tensor,
    cast_into,
    cast_tensor,
    copy_to_tensor,
    dtype_method,
    huge_page_elements,
    numpy_cast_below,
    numpy_casts_quietly,
    read_only_view,
    share_ndarray,
    share_tensor,
    torch_cast,
    torch_kernel_safe,
    torch_strides_ok,
)
from ._parallel import PARALLEL_BYTES
from ._plan import (
    Options,
    Plan,
    numpy_options,
    plan_for,
    share_error,
    tensor_options,
)
from ._transfer import open_batch, stage_to_device

__all__ = ["shares_memory", "to_numpy", "to_tensor"]

_S = TypeVar("_S", bound=np.generic)

_Tensor: Final = torch.Tensor
_ndarray: Final = np.ndarray
# torch's stubs leave from_numpy's parameter unannotated.
_from_numpy: Final[Callable[[npt.NDArray[Any]], torch.Tensor]] = torch.from_numpy  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
_STRIDED: Final = torch.strided
_CONTIGUOUS: Final = torch.contiguous_format

# The fast paths' memory of earlier plans, for the default casting rule. One
# table per kind of call (ndarray to tensor, tensor to tensor, tensor to
# NumPy) and per dtype argument, keyed by the input's dtype: SHARE when the
# result shares memory as it is, a FastCast when the cast needs none of the
# general path's care, False when the general path must decide. The tables of
# FLOAT32 and PRESERVE are found by identity; any other dtype argument by its
# id, the entry holding the argument itself (so the id cannot be reused while
# cached). Filled by the general path; bounded.
_SHARE: Final = True


@dataclasses.dataclass(frozen=True, slots=True)
class FastCast:
    """A remembered cast: how a fast path writes the result without asking the plan again."""

    target: DType
    #: Inputs with fewer elements are cast by NumPy's ``astype`` (0: never;
    #: ``numpy_cast_below``).
    below: int
    #: Whether that cast can set no floating-point flag (``numpy_casts_quietly``),
    #: so that it needs no ``np.errstate``.
    quiet: bool
    #: Whether torch's kernel gives NumPy's bits for the pair (larger inputs).
    kernel: bool
    #: ``Tensor.float`` or its sibling for the target: the cheapest call of that
    #: kernel for a C-contiguous input smaller than ``huge`` (None: ``torch_cast``).
    method: Callable[[torch.Tensor], torch.Tensor] | None
    #: From this many elements the result goes into huge pages (``torch_cast``).
    huge: int


Fast: TypeAlias = dict[object, "bool | FastCast"]
_ARRAY_TO_TENSOR: Final = 0
_TENSOR_TO_TENSOR: Final = 1
_TENSOR_TO_NUMPY: Final = 2
_FLOAT32_FAST: Final[tuple[Fast, Fast, Fast]] = ({}, {}, {})
_PRESERVE_FAST: Final[tuple[Fast, Fast, Fast]] = ({}, {}, {})
_NO_FAST: Final[tuple[Fast, Fast, Fast]] = ({}, {}, {})  # never filled
_OTHER_FAST: dict[int, tuple[object, tuple[Fast, Fast, Fast]]] = {}
# The two policies' tables by name: one lookup fewer on the hottest calls.
_FLOAT32_ARRAYS: Final = _FLOAT32_FAST[_ARRAY_TO_TENSOR]
_FLOAT32_TENSORS: Final = _FLOAT32_FAST[_TENSOR_TO_TENSOR]
_FLOAT32_NUMPY: Final = _FLOAT32_FAST[_TENSOR_TO_NUMPY]
_PRESERVE_ARRAYS: Final = _PRESERVE_FAST[_ARRAY_TO_TENSOR]
_PRESERVE_NUMPY: Final = _PRESERVE_FAST[_TENSOR_TO_NUMPY]
_FAST_ENTRIES: Final = 256


def _fast_tables(dtype: object) -> tuple[Fast, Fast, Fast]:
    if dtype is FLOAT32:
        return _FLOAT32_FAST
    if dtype is PRESERVE:
        return _PRESERVE_FAST
    entry = _OTHER_FAST.get(id(dtype))
    return entry[1] if entry is not None and entry[0] is dtype else _NO_FAST


def array_fast_path(options: Options) -> Fast | None:
    """The remembered plans ``to_tensor``'s fast path uses for ndarrays under ``options``.

    None when the options take the general path (a device, page-locked memory,
    copy=True, another casting rule). For trees, which convert many leaves
    under one set of options: the table is the one the general path fills, so
    a leaf that keeps it sees plans remembered later too.
    """
    if (
        options.device is not None
        or options.copy is True
        or options.casting != "same_kind"
        or options.pin_memory
        or options.non_blocking
    ):
        return None
    return _tables_for(options.dtype)[_ARRAY_TO_TENSOR]


def _tables_for(dtype: object) -> tuple[Fast, Fast, Fast]:
    """The fast-path tables of a dtype argument, made (empty) if it has none yet."""
    tables = _fast_tables(dtype)
    if tables is _NO_FAST:
        if len(_OTHER_FAST) >= _FAST_ENTRIES:
            _OTHER_FAST.clear()
        new: tuple[Fast, Fast, Fast] = ({}, {}, {})
        _OTHER_FAST[id(dtype)] = (dtype, new)
        return new
    return tables


def _remember(which: int, key: object, options: Options, value: bool | FastCast) -> None:
    """Let a fast path repeat the plan just made for inputs of dtype ``key``."""
    if options.casting != "same_kind":
        return
    table = _tables_for(options.dtype)[which]
    if len(table) >= _FAST_ENTRIES:
        table.clear()
    table[key] = value


def _forget() -> None:
    for _, tables in _OTHER_FAST.values():
        for table in tables:
            table.clear()  # a tree walk running in another thread may hold one
    for table in (*_FLOAT32_FAST, *_PRESERVE_FAST):
        table.clear()
    _OTHER_FAST.clear()


def _fast_cast(plan: Plan) -> FastCast | None:
    """What a fast path needs to repeat ``plan``'s cast, or None when it cannot."""
    source, target = plan.source, plan.target
    kernel = plan.torch_kernel and target.torch is not None
    if not (source.numpy_builtin and target.numpy_builtin) or (
        source.kind == "c" and target.kind != "c"
    ):
        below = 0  # astype cannot cast it, or not quietly enough to repeat here
    elif kernel:
        below = numpy_cast_below(source, target)
    else:
        # NumPy casts at every size; from PARALLEL_BYTES the general path splits it.
        below = PARALLEL_BYTES // target.itemsize
    if below == 0 and not kernel:
        return None
    return FastCast(
        target,
        below,
        numpy_casts_quietly(source, target),
        kernel,
        dtype_method(target.torch) if kernel else None,
        huge_page_elements(target),
    )


def _astype(array: npt.NDArray[Any], cast: FastCast) -> npt.NDArray[Any]:
    """``array`` cast by NumPy into new C-contiguous memory, without NumPy's warnings."""
    if cast.quiet:
        return array.astype(cast.target.numpy, order="C")
    # As in cast_into: the casting rule is where a user consents to overflow.
    with np.errstate(all="ignore"):
        return array.astype(cast.target.numpy, order="C")


def cast_array_fast(array: npt.NDArray[Any], cast: FastCast) -> torch.Tensor | None:
    """A remembered cast of a native-order ndarray into a new C-contiguous tensor.

    None when the general path must run (torch cannot wrap the array, or no
    kernel here fits its size).
    """
    if array.size < cast.below:
        return _from_numpy(_astype(array, cast))
    if (
        not cast.kernel
        or not array.flags.writeable
        or (_kernels.forked and not torch_kernel_safe(array.size))
    ):
        return None
    try:
        source = _from_numpy(array)
    except ValueError:
        return None  # negative or uneven strides: the general path explains
    method = cast.method
    if method is not None and array.size < cast.huge and array.flags.c_contiguous:
        return method(source)
    return torch_cast(source, cast.target)


def _cast_tensor_fast(tensor: torch.Tensor, cast: FastCast) -> npt.NDArray[Any] | None:
    """A remembered cast of a CPU tensor into a new C-contiguous array, or None.

    numpy() refuses tensors with conj/neg bits (the general path resolves them);
    torch's casts resolve them as they write.
    """
    if tensor._is_zerotensor():
        return None  # no memory: the general path raises
    size = tensor.numel()
    try:
        if size < cast.below:
            return _astype(tensor.numpy(), cast)
        if (
            not cast.kernel
            or tensor.requires_grad  # the general path casts through autograd
            or (_kernels.forked and not torch_kernel_safe(size))
        ):
            return None
        method = cast.method
        if method is not None and size < cast.huge and tensor.is_contiguous():
            return method(tensor).numpy()  # (the target has no bit view: remembered so)
        return torch_cast(tensor, cast.target).numpy()
    except (RuntimeError, TypeError):
        return None


os.register_at_fork(after_in_child=_forget)  # see _kernels.torch_kernel_safe


# --------------------------------------------------------------------------- #
# to_tensor
# --------------------------------------------------------------------------- #


def to_tensor(
    data: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy = FLOAT32,
    device: str | torch.device | int | None = None,
    copy: bool | None = None,
    casting: Casting = "same_kind",
    pin_memory: bool = False,
    non_blocking: bool = False,
) -> torch.Tensor:
    """Convert an array-like to a ``torch.Tensor`` with a predictable dtype and memory.

    Args:
        data: an ``np.ndarray`` (or subclass), a ``torch.Tensor``, an object
            with ``__dlpack__``, ``__array_interface__``, ``__array__`` or the
            buffer protocol, a NumPy or Python scalar, or nested lists/tuples.
        dtype: a ``DtypePolicy`` (default ``FLOAT32``: floating data becomes
            float32, complex data complex64, the rest is kept) or a concrete
            dtype (torch, NumPy, ml_dtypes or a name) every element is cast to.
        device: where the result lives; None keeps a tensor input on its
            device and puts everything else on the CPU.
        copy: None shares memory when possible and copies otherwise; True
            always copies; False shares or raises ``ShareError``.
        casting: NumPy's casting rule, checked for every dtype change.
        pin_memory: put host data in page-locked memory on its way to a GPU
            (or, with no ``device``, return a page-locked CPU tensor). Needs CUDA.
        non_blocking: let a host-to-GPU copy run on after the call returns, where
            that is safe: from tensorbridge's own page-locked staging buffer, or
            from pageable memory (which the CUDA driver stages before returning).
            A page-locked tensor of yours is still copied synchronously, since
            you may write to it as soon as the call returns.

    Returns:
        The tensor. When it shares memory with ``data``, an in-place write to
        either is visible in the other; a copy is C-contiguous and writable.

    Raises:
        ShareError: ``copy=False`` and the result cannot share memory.
        UnsupportedDtypeError: the result dtype has no torch counterpart.
        CastingError: ``casting`` forbids the dtype change.
        TensorBridgeError: any other bad input (also a TypeError or ValueError).

    >>> import numpy as np, tensorbridge as tb
    >>> a = np.arange(3, dtype=np.float64)
    >>> t = tb.to_tensor(a)            # float64 becomes float32: a copy
    >>> t.dtype, tb.shares_memory(a, t)
    (torch.float32, False)
    >>> t = tb.to_tensor(a, dtype=tb.PRESERVE, copy=False)
    >>> t[0] = 7.0
    >>> float(a[0])
    7.0
    """
    if (
        device is None
        and (copy is None or copy is False)
        and casting == "same_kind"
        and pin_memory is False
        and non_blocking is False
    ):
        if type(data) is _ndarray:
            if dtype is FLOAT32:
                fast = _FLOAT32_ARRAYS.get(data.dtype)
            elif dtype is PRESERVE:
                fast = _PRESERVE_ARRAYS.get(data.dtype)
            else:
                fast = _fast_tables(dtype)[_ARRAY_TO_TENSOR].get(data.dtype)
            if fast is _SHARE:
                if data.flags.writeable:
                    try:
                        return _from_numpy(data)
                    except ValueError:
                        pass  # negative or uneven strides: the general path explains
            elif fast and copy is None:
                result = cast_array_fast(data, fast)
                if result is not None:
                    return result
        elif (
            type(data) is _Tensor
            and copy is None
            and (
                _FLOAT32_TENSORS if dtype is FLOAT32 else _fast_tables(dtype)[_TENSOR_TO_TENSOR]
            ).get(data.dtype)
            is _SHARE
            and data.layout is _STRIDED
            and not data.is_meta
            and not data.is_nested
            and not data._is_zerotensor()
        ):
            return data
        elif type(data) is float and copy is None:
            # A Python float is a float64 value that goes into new memory, as
            # coerce makes it; the remembered plan of float64 arrays applies.
            scalar = np.array(data)
            fast = _fast_tables(dtype)[_ARRAY_TO_TENSOR].get(scalar.dtype)
            if fast is _SHARE:
                return _from_numpy(scalar)
            if fast:
                result = cast_array_fast(scalar, fast)
                if result is not None:
                    return result
    return convert_to_tensor(
        data, tensor_options(dtype, device, copy, casting, pin_memory, non_blocking)
    )


def convert_to_tensor(data: object, options: Options) -> torch.Tensor:
    """``to_tensor`` with its options checked already."""
    try:
        source, unshareable, owned = coerce(data, "to_tensor", options.copy)
        if isinstance(source, torch.Tensor):
            return tensor_to_tensor(source, options)
        return array_to_tensor(source, options, unshareable, owned)
    except TensorBridgeError:
        raise
    except INTERNAL_ERRORS as error:
        raise internal_error("to_tensor", data, error) from None


def array_to_tensor(
    array: npt.NDArray[Any], options: Options, unshareable: str | None, owned: bool
) -> torch.Tensor:
    """The ndarray case of ``to_tensor``; ``unshareable`` and ``owned`` as ``coerce`` says."""
    device = options.device
    moves_to = None if device is None or device.type == "cpu" else device
    plan = plan_for(from_numpy_dtype(array.dtype), options, "torch", CPU, moves_to)
    if moves_to is None and not options.pin_memory:
        _remember_tensor_plan(array.dtype, options, plan)
    reason = unshareable or plan.blocker or _memory_blocker(array, options)
    if reason is None:
        if options.copy is not True:
            return share_ndarray(array, plan.target)
    elif options.copy is False:
        raise share_error(reason)
    if moves_to is None:
        if options.pin_memory:
            pinned = torch.empty(array.shape, dtype=plan.target.torch, pin_memory=True)
            _fill(pinned, array, plan)
            return pinned
        if owned and not plan.casts:
            return share_ndarray(array, plan.target)  # the memory is new already
        return copy_to_tensor(array, plan.source, plan.target, plan.torch_kernel)
    # To a device. The bus carries the plan's dtype: an exact widening crosses
    # narrow and runs on the device; any other cast runs here, into the staging.
    bus = plan.bus
    batch = open_batch(moves_to)
    if batch is not None:  # a leaf of a batch going over in one copy (collate, trees)
        placed = batch.place(array.shape, bus, plan.target)
        if placed is not None:
            host, result = placed
            _fill(host, array, plan if bus is plan.target else None)
            return result
        staged = copy_to_tensor(array, plan.source, bus, plan.torch_kernel)
        moved = staged.to(moves_to, non_blocking=options.non_blocking)  # the ring is the batch's
        return cast_tensor(moved, plan.target)
    if options.pin_memory:
        staged = torch.empty(array.shape, dtype=bus.torch, pin_memory=True)
        _fill(staged, array, plan if bus is plan.target else None)
        moved = host_to_device(staged, moves_to, non_blocking=options.non_blocking)
    elif bus.numpy is not None:
        moved = stage_to_device(array, bus, moves_to, non_blocking=options.non_blocking)
    else:  # complex32, or bfloat16/float8 without ml_dtypes: torch casts on the host
        staged = copy_to_tensor(array, plan.source, bus, plan.torch_kernel)
        moved = host_to_device(staged, moves_to, non_blocking=options.non_blocking)
    return cast_tensor(moved, plan.target)


def _remember_tensor_plan(dtype: np.dtype[Any], options: Options, plan: Plan) -> None:
    """Let ``to_tensor``'s fast path repeat this plan for arrays of ``dtype``."""
    if dtype in _fast_tables(options.dtype)[_ARRAY_TO_TENSOR]:
        return  # remembered already (inputs the fast path skips: lists, scalars...)
    if plan.source.bits_numpy is not None or plan.target.bits_numpy is not None:
        fast: bool | FastCast = False  # bit views: the general path
    elif not dtype.isnative:
        fast = False  # a byte swap: the general path
    elif not plan.casts:
        fast = _SHARE
    else:
        fast = _fast_cast(plan) or False
    _remember(_ARRAY_TO_TENSOR, dtype, options, fast)


def _fill(out: torch.Tensor, array: npt.NDArray[Any], plan: Plan | None) -> None:
    """Write ``array``'s values into the CPU tensor ``out`` (as ``plan`` casts, if given)."""
    target = from_torch_dtype(out.dtype)
    if target.numpy is not None:
        cast_into(share_tensor(out, target), array)
    else:
        source = from_numpy_dtype(array.dtype)
        out.copy_(copy_to_tensor(array, source, target, plan is not None and plan.torch_kernel))


def _memory_blocker(array: npt.NDArray[Any], options: Options) -> str | None:
    """Why this array's memory cannot be wrapped by a tensor (None when it can)."""
    if options.pin_memory:
        return "pin_memory=True asks for new page-locked memory"
    if not array.dtype.isnative:
        # numpy's stubs type dtype.str as typing.LiteralString, which pyright cannot
        # resolve under pythonVersion 3.10.
        return (
            f"the array's byte order is non-native (dtype {array.dtype.str!r}), "  # pyright: ignore[reportUnknownMemberType]
            "and torch holds native byte order only"
        )
    if not array.flags.writeable:
        return (
            "the array is read-only (np.load(..., mmap_mode='r') or np.frombuffer(bytes)?), "
            "and a writable tensor over it could crash the process or change immutable data"
        )
    if not torch_strides_ok(array):
        if any(stride < 0 for stride in array.strides):
            return (
                f"the array has negative strides {array.strides} (a reversed view such as "
                "a[::-1]), which a tensor cannot have"
            )
        return (
            f"the array's strides {array.strides} are not multiples of its item size "
            f"{array.itemsize} (a field of a structured array?), which a tensor cannot have"
        )
    return None


def tensor_to_tensor(tensor: torch.Tensor, options: Options) -> torch.Tensor:
    """The tensor case of ``to_tensor``."""
    check_tensor_has_data(tensor)
    here = tensor.device
    there = options.device
    moves_to = None if there is None or same_device(here, there) else there
    plan = plan_for(from_torch_dtype(tensor.dtype), options, "torch", here, moves_to)
    pin = options.pin_memory and (there or here).type == "cpu" and not tensor.is_pinned()
    if moves_to is None and not options.pin_memory:
        _remember(_TENSOR_TO_TENSOR, tensor.dtype, options, _SHARE if not plan.casts else False)
    if not plan.casts and moves_to is None and not pin:
        if options.copy is True:
            return tensor.clone(memory_format=_CONTIGUOUS)
        return tensor
    if options.copy is False:
        raise share_error(plan.blocker or "pin_memory=True asks for new page-locked memory")
    if plan.source.kind == "q":
        tensor = tensor.dequantize()
        plan = plan_for(from_torch_dtype(tensor.dtype), options, "torch", here, moves_to)
    if moves_to is None:
        if here.type == "cpu":
            result = cast_cpu_tensor(tensor, plan.source, plan.target)
        else:
            result = cast_device_tensor(tensor, plan.target)
        return result.pin_memory() if pin else result
    if here.type == "cpu":
        # Host to device: the cast runs before or after the bus as the plan says.
        staged = cast_cpu_tensor(tensor, plan.source, plan.bus)
        batch = open_batch(moves_to)
        if batch is not None and not staged.requires_grad:
            placed = batch.place(tuple(staged.shape), plan.bus, plan.target)
            if placed is not None:
                placed[0].copy_(staged)
                return placed[1]
            moved = staged.to(moves_to, non_blocking=options.non_blocking)
            return cast_tensor(moved, plan.target)
        if options.pin_memory and not staged.is_pinned():
            staged = staged.pin_memory()
        moved = host_to_device(staged, moves_to, non_blocking=options.non_blocking)
        return cast_tensor(moved, plan.target)
    # From a device: cast on it first where the plan says so (a narrowing the
    # device computes exactly), then cross, then cast on the far side.
    near = cast_device_tensor(tensor, plan.bus)
    if moves_to.type == "cpu":
        if near.requires_grad:
            return cast_cpu_tensor(near.to(CPU), plan.bus, plan.target)
        return cast_cpu_tensor(device_to_host(near), plan.bus, plan.target)
    return cast_device_tensor(near.to(moves_to, memory_format=_CONTIGUOUS), plan.target)


# --------------------------------------------------------------------------- #
# to_numpy
# --------------------------------------------------------------------------- #


@overload
def to_numpy(
    data: object,
    /,
    *,
    dtype: type[_S] | np.dtype[_S],
    copy: bool | None = None,
    casting: Casting = "same_kind",
) -> npt.NDArray[_S]: ...


@overload
def to_numpy(
    data: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy = FLOAT32,
    copy: bool | None = None,
    casting: Casting = "same_kind",
) -> npt.NDArray[Any]: ...


def to_numpy(
    data: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy = FLOAT32,
    copy: bool | None = None,
    casting: Casting = "same_kind",
) -> npt.NDArray[Any]:
    """Convert a tensor or array-like to an ``np.ndarray`` with a predictable dtype and memory.

    Args:
        data: a ``torch.Tensor`` on any device, an ``np.ndarray``, or anything
            ``to_tensor`` accepts.
        dtype: a ``DtypePolicy`` (default ``FLOAT32``) or a concrete dtype.
        copy: None shares memory when possible and copies otherwise; True
            always copies; False shares or raises ``ShareError``.
        casting: NumPy's casting rule, checked for every dtype change.

    Returns:
        The array. A CPU tensor that needs no change is shared (bfloat16 and
        float8 through ml_dtypes bit views); one that requires grad is shared
        as a read-only view of its detached data. Tensors on other devices are
        copied to host memory, and the call returns only when the values are
        final.

    Raises:
        ShareError: ``copy=False`` and the result cannot share memory.
        UnsupportedDtypeError: the result dtype has no NumPy counterpart
            (bfloat16 and float8 need the ``ml-dtypes`` extra).
        CastingError: ``casting`` forbids the dtype change.
        TensorBridgeError: any other bad input (also a TypeError or ValueError).

    >>> import torch, tensorbridge as tb
    >>> t = torch.zeros(3)
    >>> a = tb.to_numpy(t)             # float32 on the CPU: shared
    >>> a[0] = 1.0
    >>> t
    tensor([1., 0., 0.])
    >>> tb.to_numpy(torch.ones(2, dtype=torch.float64)).dtype
    dtype('float32')
    """
    if type(data) is _Tensor and (copy is None or copy is False) and casting == "same_kind":
        if dtype is FLOAT32:
            fast = _FLOAT32_NUMPY.get(data.dtype)
        elif dtype is PRESERVE:
            fast = _PRESERVE_NUMPY.get(data.dtype)
        else:
            fast = _fast_tables(dtype)[_TENSOR_TO_NUMPY].get(data.dtype)
        if fast is _SHARE:
            if data.is_cpu:  # (a GPU tensor would raise: an exception costs more)
                try:
                    # numpy() itself refuses grad, conj/neg bits, ZeroTensors and
                    # other layouts: the general path then explains or shares.
                    return data.numpy()
                except (RuntimeError, TypeError):
                    pass
        elif fast and copy is None and data.is_cpu:
            array = _cast_tensor_fast(data, fast)
            if array is not None:
                return array
    return convert_to_numpy(data, numpy_options(dtype, copy, casting))


def convert_to_numpy(data: object, options: Options) -> npt.NDArray[Any]:
    """``to_numpy`` with its options checked already."""
    try:
        source, unshareable, owned = coerce(data, "to_numpy", options.copy)
        if isinstance(source, torch.Tensor):
            result = tensor_to_numpy(source, options)
        else:
            result = array_to_numpy(source, options, unshareable, owned)
    except TensorBridgeError:
        raise
    except INTERNAL_ERRORS as error:
        raise internal_error("to_numpy", data, error) from None
    exact = options.exact
    if exact is not None and result.dtype != exact:
        if options.copy is False:
            raise share_error(
                f"dtype={exact.str!r} asks for byte order the data does not have, and "  # pyright: ignore[reportUnknownMemberType]
                "swapping bytes writes new memory"
            )
        result = result.astype(exact)
    return result


def tensor_to_numpy(tensor: torch.Tensor, options: Options) -> npt.NDArray[Any]:
    """The tensor case of ``to_numpy``."""
    check_tensor_has_data(tensor)
    here = tensor.device
    moves_to = None if here.type == "cpu" else CPU
    plan = plan_for(from_torch_dtype(tensor.dtype), options, "numpy", here, moves_to)
    if moves_to is None and options.exact is None:
        fast: bool | FastCast = False
        if plan.target.bits_torch is None:
            fast = (_fast_cast(plan) or False) if plan.casts else _SHARE
        _remember(_TENSOR_TO_NUMPY, tensor.dtype, options, fast)
    reason = plan.blocker
    if reason is None and tensor.is_conj():
        reason = "the tensor has its conjugate bit set (a lazy .conj() view NumPy cannot express)"
    elif reason is None and tensor.is_neg():
        reason = "the tensor has its negative bit set (a lazy negated view NumPy cannot express)"
    if reason is not None and options.copy is False:
        raise share_error(reason)
    requires_grad = tensor.requires_grad
    tensor = tensor.detach()
    if reason is None and options.copy is not True:
        array = share_tensor(tensor, plan.source)
        if requires_grad:
            return read_only_view(array)  # NumPy writes must not bypass autograd
        return array
    return _copy_tensor_to_numpy(tensor, plan)


def _copy_tensor_to_numpy(tensor: torch.Tensor, plan: Plan) -> npt.NDArray[Any]:
    """New C-contiguous host memory holding the tensor's values as the plan's target.

    A tensor on another device crosses to the host first (``device_to_host``
    returns only once the values are there), cast before the crossing where the
    plan says so (a narrowing the device computes exactly, such as float64 to
    float32); every other cast runs on the host, so a GPU tensor converts to the
    values its CPU copy would.
    """
    source, target = plan.source, plan.target
    if source.kind == "q":
        tensor = tensor.dequantize()
        source = from_torch_dtype(tensor.dtype)
    fresh = tensor.device.type != "cpu"
    if fresh:
        if plan.bus is target and source is not target:
            tensor = cast_tensor(tensor, target)
            source = target
        tensor = device_to_host(tensor)
    if tensor.is_conj() or tensor.is_neg():
        tensor = tensor.resolve_conj().resolve_neg()
        fresh = True
    if source.numpy is None:
        # complex32 (or bfloat16/float8 without ml_dtypes): widen exactly in torch first.
        source = from_torch_dtype(torch.complex64 if source.kind == "c" else torch.float32)
        tensor = cast_tensor(tensor, source)
        fresh = True
    if source is target:
        host = share_tensor(tensor, source)
        return host if fresh and host.flags.c_contiguous else cast_array(host, target)
    if (
        plan.torch_kernel
        and target.bits_torch is None
        and source is plan.source
        and torch_kernel_safe(tensor.numel())
    ):
        return share_tensor(torch_cast(tensor, target), target)
    return cast_array(share_tensor(tensor, source), target)


def array_to_numpy(
    array: npt.NDArray[Any], options: Options, unshareable: str | None, owned: bool
) -> npt.NDArray[Any]:
    """The ndarray case of ``to_numpy``."""
    plan = plan_for(from_numpy_dtype(array.dtype), options, "numpy")
    reason = unshareable or plan.blocker
    if reason is None and not array.dtype.isnative:
        # numpy's stubs type dtype.str as typing.LiteralString (see _memory_blocker).
        reason = (
            f"the array's byte order is non-native (dtype {array.dtype.str!r}), and the "  # pyright: ignore[reportUnknownMemberType]
            "result has native byte order"
        )
    if reason is not None and options.copy is False:
        raise share_error(reason)
    if reason is None and options.copy is not True:
        return array
    if owned and not plan.casts:
        return array  # the memory is new already
    return cast_array(array, plan.target)


# --------------------------------------------------------------------------- #
# shares_memory
# --------------------------------------------------------------------------- #


class _Extent:
    """An ``__array_interface__`` over a tensor's addresses, for overlap arithmetic only.

    NumPy's overlap solver only reads addresses, shapes and strides, so the
    array built from this is never dereferenced, even for GPU memory.
    """

    __slots__ = ("__array_interface__",)

    def __init__(self, tensor: torch.Tensor) -> None:
        itemsize = tensor.element_size()
        self.__array_interface__ = {
            "version": 3,
            "shape": tuple(tensor.shape),
            "strides": tuple(stride * itemsize for stride in tensor.stride()),
            "typestr": f"|V{itemsize}",
            "data": (tensor.data_ptr(), True),
        }


def _memory(value: object, name: str) -> tuple[torch.device, npt.NDArray[Any] | None]:
    if is_ndarray(value):
        return CPU, value
    if isinstance(value, torch.Tensor):
        if value.layout is not torch.strided and not value.is_nested:
            raise InvalidArgumentError(
                f"shares_memory: {name} is a tensor with layout {value.layout}; only dense "
                "tensors are supported"
            )
        if value.is_meta:
            return value.device, None
        try:
            check_tensor_has_data(value)
        except TensorBridgeError as error:
            raise type(error)(f"shares_memory: {name}: {error}") from None
        if value.numel() == 0:
            return value.device, None
        return value.device, np.asarray(_Extent(value))
    raise InvalidInputError(
        f"shares_memory: {name} is a {type(value).__name__}; pass an np.ndarray or a torch.Tensor"
    )


def shares_memory(a: npt.NDArray[Any] | torch.Tensor, b: npt.NDArray[Any] | torch.Tensor) -> bool:
    """Whether two arrays or tensors overlap in memory (exactly, element by element).

    Tensors on a different device than the other argument never overlap with
    it; NumPy memory is CPU memory.

    The exact answer is an integer problem that can take NumPy seconds for
    views with unusual strides; the work is bounded (``SHARES_MEMORY_MAX_WORK``
    candidate solutions), and where the bound is hit the answer is the
    conservative one: True when the two memory extents overlap at all
    (``np.may_share_memory``), even if no element is actually shared.

    >>> import numpy as np, torch, tensorbridge as tb
    >>> a = np.zeros(4, dtype=np.float32)
    >>> t = torch.from_numpy(a)
    >>> tb.shares_memory(a[:2], t[2:]), tb.shares_memory(a[1:3], t[2:])
    (False, True)
    """
    device_a, memory_a = _memory(a, "a")
    device_b, memory_b = _memory(b, "b")
    if memory_a is None or memory_b is None or not same_device(device_a, device_b):
        return False
    try:
        # numpy's stubs allow only the special values -1 and 0 for max_work.
        max_work: Any = SHARES_MEMORY_MAX_WORK
        return bool(np.shares_memory(memory_a, memory_b, max_work=max_work))
    except _TOO_HARD:
        return bool(np.may_share_memory(memory_a, memory_b))


#: How much work ``shares_memory`` lets NumPy's exact overlap solver do.
SHARES_MEMORY_MAX_WORK: Final = 100_000


# NumPy 1 has no np.exceptions module before 1.25; TooHardError lives on np itself there.
_TOO_HARD: Final[type[Exception]] = getattr(
    getattr(np, "exceptions", np), "TooHardError", getattr(np, "TooHardError", RuntimeError)
)
