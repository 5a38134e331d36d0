"""The conversion core: ``to_tensor``, ``to_numpy``, ``convert_like`` and ``shares_memory``.

Each public function first looks its plan up (``_plan``): for an ndarray or a
plain tensor with the default casting rule and no device, that is one
dictionary lookup, and the plan is run at once. Every other call checks its
options, turns the input into an ndarray or tensor (``_inputs``), gets the
same plan, and runs it. Runners are straight lines: the plan says what the
result dtype is, whether it may share, which dtype crosses the bus and which
kernel casts; ``_inputs.memory_blocker`` says what this input's memory allows;
the kernels (``_kernels``) and the transfers (``_transfer``) do the work.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar, overload

import numpy as np
import numpy.typing as npt
import torch

from ._compat import dtype_str, from_numpy, is_ndarray
from ._dtypes import (
    FLOAT32,
    PRESERVE,
    Casting,
    DType,
    DTypeLike,
    DtypePolicy,
    from_torch_dtype,
)
from ._errors import (
    InvalidArgumentError,
    InvalidInputError,
    TensorBridgeError,
    a_type,
    share_error,
)
from ._inputs import INTERNAL_ERRORS, check_tensor, coerce, internal_error, memory_blocker
from ._kernels import (
    autograd_numpy_cast,
    cast_into,
    numpy_cast,
    share_ndarray,
    share_tensor,
    shareable_strides,
    torch_cast,
    torch_only_cast,
)
from ._plan import CPU, Options, Plan, memo_for, remembered, same_device
from ._threads import TORCH_GRAIN, threads, torch_threads_safe
from ._transfer import device_to_host, host_to_device, open_batch, stage_to_device

__all__ = [
    "array_to_array",
    "array_to_tensor",
    "convert_like",
    "shares_memory",
    "tensor_to_array",
    "tensor_to_tensor",
    "to_numpy",
    "to_tensor",
]

ScalarT = TypeVar("ScalarT", bound=np.generic)

_Tensor: Final = torch.Tensor
_ndarray: Final = np.ndarray
_STRIDED: Final = torch.strided
_FLOAT32: Final = memo_for(FLOAT32)
_PRESERVE: Final = memo_for(PRESERVE)
# The memos' own tables the fast paths read first (the same dicts, by name: an
# attribute look-up fewer on calls whose whole cost is a microsecond).
_FLOAT32_ARRAYS: Final = _FLOAT32.arrays
_PRESERVE_ARRAYS: Final = _PRESERVE.arrays
_FLOAT32_NUMPY: Final = _FLOAT32.numpy
_PRESERVE_NUMPY: Final = _PRESERVE.numpy
#: A miss for every other argument that has no memo yet (read-only: never filled).
_NOTHING: Final[Mapping[Any, Plan]] = MappingProxyType({})


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
            buffer protocol, a NumPy or Python scalar, or nested lists/tuples
            (of numbers, arrays or tensors, which are stacked).
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
        non_blocking: as in torch, let a host-to-GPU copy run on after the call
            returns. A page-locked source (a tensor of yours, as from
            ``DataLoader(pin_memory=True)``, or tensorbridge's own staging) is
            then copied asynchronously: do not write it until the current stream
            has passed the copy. Pageable data has been read in full when the
            call returns.

    Returns:
        The tensor. When it shares memory with ``data``, an in-place write to
        either is visible in the other; a copy is new, writable memory that
        keeps the input's memory order where the input is dense (C order
        otherwise).

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
    # The fast path: the plan of an ndarray or a tensor that stays where it is, one
    # look-up in the memo of the dtype argument; every other call checks its options.
    if device is None and casting == "same_kind" and pin_memory is False and non_blocking is False:
        if type(data) is _ndarray:
            plans = (
                _FLOAT32_ARRAYS
                if dtype is FLOAT32
                else _PRESERVE_ARRAYS
                if dtype is PRESERVE
                else _arrays_of(dtype)
            )
            plan = plans.get(data.dtype)
            if plan is not None and plan.blocker is None:
                if (copy is None or copy is False) and data.flags.writeable:
                    try:
                        return from_numpy(data)
                    except (ValueError, TypeError):
                        pass  # strides torch refuses, or a bit view: the general path
            elif plan is not None and (copy is None or copy is True):
                return host_copy(data, plan)
        elif type(data) is _Tensor and copy is None:
            memo = (
                _FLOAT32
                if dtype is FLOAT32
                else _PRESERVE
                if dtype is PRESERVE
                else remembered(dtype)
            )
            plan = None if memo is None else memo.tensors.get(data.dtype)
            if (
                plan is not None
                and plan.blocker is None
                and data.layout is _STRIDED
                and not data.is_nested
            ):
                try:
                    # Freed storage and torch.func wrappers: the general path raises.
                    if data.untyped_storage().data_ptr():
                        return data
                except RuntimeError:
                    pass
    return tensor_from(
        data, Options.for_tensor(dtype, device, copy, casting, pin_memory, non_blocking)
    )


def _arrays_of(dtype: object) -> Mapping[Any, Plan]:
    memo = remembered(dtype)
    return _NOTHING if memo is None else memo.arrays


def _numpy_of(dtype: object) -> Mapping[Any, Plan]:
    memo = remembered(dtype)
    # (a byte order asked for, dtype=">f4", is honoured on the general path)
    return _NOTHING if memo is None or memo.exact is not None else memo.numpy


def tensor_from(data: object, options: Options) -> torch.Tensor:
    """``to_tensor`` with its options checked already."""
    try:
        value, unshareable, owned = coerce(data, "to_tensor", options.copy)
        if isinstance(value, torch.Tensor):  # a tensor, or a list of them stacked
            return tensor_to_tensor(value, options, unshareable)
        return array_to_tensor(value, options, unshareable, owned)
    except TensorBridgeError:
        raise
    except INTERNAL_ERRORS as error:
        raise internal_error("to_tensor", data, error) from None


def array_to_tensor(
    array: npt.NDArray[Any], options: Options, unshareable: str | None, owned: bool
) -> torch.Tensor:
    """An ndarray to a tensor; ``unshareable`` and ``owned`` as ``coerce`` says."""
    device = options.device
    moves_to = None if device is None or device.type == "cpu" else device
    plan = options.memo.array_plan(array.dtype, options.casting, moves_to)
    reason = unshareable or plan.blocker or memory_blocker(array)
    if reason is None and options.pin_memory:
        reason = "pin_memory=True asks for new page-locked memory"
    if reason is None and options.copy is not True:
        shareable = shareable_strides(array)
        assert shareable is not None
        return share_ndarray(shareable, plan.target)
    if reason is not None and options.copy is False:
        raise share_error(reason)
    if moves_to is not None:
        return _array_to_device(array, plan, options, moves_to)
    if options.pin_memory:
        pinned = torch.empty(array.shape, dtype=plan.target.torch, pin_memory=True)
        fill(pinned, array, plan)
        return pinned
    if owned and plan.kernel == "none":
        new = shareable_strides(array)
        assert new is not None
        return share_ndarray(new, plan.target)  # the memory is new already
    return host_copy(array, plan)


def _torch_casts(size: int, plan: Plan) -> bool:
    """Whether torch's kernel casts ``size`` elements of the plan's pair here.

    It does where it beats NumPy at this size (see ``Plan.numpy_below``) and can
    run in this process without hanging (``torch_threads_safe``).
    """
    if size < plan.numpy_below and (size < TORCH_GRAIN or size * threads() < 2 * plan.numpy_below):
        return False  # NumPy is faster
    return torch_threads_safe(size)


def host_copy(array: npt.NDArray[Any], plan: Plan) -> torch.Tensor:
    """New host memory holding ``array``'s values as the plan's target, as a tensor."""
    kernel, target = plan.kernel, plan.target
    if kernel == "torch":
        size = array.size
        if array.flags.writeable and _torch_casts(size, plan):
            try:
                source = from_numpy(array)  # refuses other byte orders, strides and bit views
            except (TypeError, ValueError):
                pass
            else:
                return torch_cast(source, target, size >= plan.huge_from)
    elif kernel == "torch-only":
        return torch_only_cast(array, plan.source, target)
    return share_ndarray(numpy_cast(array, target, quiet=plan.quiet, direct=plan.direct), target)


def fill(out: torch.Tensor, array: npt.NDArray[Any], plan: Plan) -> None:
    """Write ``array``'s values, as the plan casts them, into the CPU tensor ``out``."""
    target = from_torch_dtype(out.dtype)
    if target.numpy is not None:
        cast_into(share_tensor(out, target), array)
    else:  # complex32, or bfloat16/float8 without ml_dtypes: torch casts
        out.copy_(torch_only_cast(array, plan.source, target))


def _array_to_device(
    array: npt.NDArray[Any], plan: Plan, options: Options, device: torch.device
) -> torch.Tensor:
    """An ndarray to a device: the bus carries the plan's dtype; an exact widening runs there."""
    bus = plan.bus
    batch = open_batch(device)
    if batch is not None:  # a leaf of a batch going over in one copy (collate, trees)
        placed = batch.place(array.shape, bus, plan.target)
        if placed is not None:
            fill(placed[0], array, plan)
            return placed[1]
    if options.pin_memory:
        staged = torch.empty(array.shape, dtype=bus.torch, pin_memory=True)
        fill(staged, array, plan)
        moved = host_to_device(staged, device, non_blocking=options.non_blocking)
    elif bus.numpy is not None:
        moved = stage_to_device(array, bus, device, non_blocking=options.non_blocking)
    else:  # into complex32, or bfloat16/float8 without ml_dtypes: torch casts on the host
        moved = host_copy(array, plan).to(device, non_blocking=options.non_blocking)
    return _finish_on_device(moved, plan)


def _finish_on_device(moved: torch.Tensor, plan: Plan) -> torch.Tensor:
    """The far half of a cast the plan put after the bus (an exact widening, or a host visit)."""
    return moved if moved.dtype == plan.target.torch else device_cast(moved, plan)


def _casts_before_bus(plan: Plan) -> bool:
    return plan.bus is plan.target and plan.target is not plan.source


def tensor_to_tensor(
    tensor: torch.Tensor, options: Options, unshareable: str | None = None
) -> torch.Tensor:
    """A tensor to a tensor: returned as it is where nothing needs to change."""
    check_tensor(tensor)
    here = tensor.device
    there = options.device
    moves_to = None if there is None or same_device(here, there) else there
    plan = options.memo.tensor_plan("tensor", tensor.dtype, options.casting, here, moves_to)
    pin = options.pin_memory and (there or here).type == "cpu" and not tensor.is_pinned()
    reason = plan.blocker or unshareable
    if reason is None and pin:
        reason = "pin_memory=True asks for new page-locked memory"
    if reason is None and options.copy is not True:
        return tensor
    if reason is not None and options.copy is False:
        raise share_error(reason)
    if unshareable is not None and plan.kernel == "none" and moves_to is None and not pin:
        return tensor  # a stack of a list's tensors: new memory already
    if moves_to is not None:
        return _tensor_to_device(tensor, plan, options, moves_to)
    result = cpu_cast(tensor, plan) if here.type == "cpu" else device_cast(tensor, plan)
    return result.pin_memory() if pin else result


def cpu_cast(tensor: torch.Tensor, plan: Plan) -> torch.Tensor:
    """New CPU memory holding the tensor's values as the plan's target, graph kept."""
    kernel, target = plan.kernel, plan.target
    if kernel == "dequantize":
        assert plan.after is not None
        return cpu_cast(tensor.dequantize(), plan.after)
    size = tensor.numel()
    if kernel == "torch-only":
        return torch_cast(tensor, target, size >= plan.huge_from)
    if tensor.requires_grad and torch.is_grad_enabled() and target.kind in "fc":
        if kernel == "numpy":
            return autograd_numpy_cast(tensor, plan.source, target)
        return torch_cast(tensor, target, False)  # recorded by autograd
    if kernel != "numpy" and _torch_casts(size, plan):
        return torch_cast(tensor.detach(), target, size >= plan.huge_from)
    host = share_tensor(tensor.detach().resolve_conj().resolve_neg(), plan.source)
    return share_ndarray(numpy_cast(host, target, quiet=plan.quiet, direct=plan.direct), target)


def device_cast(tensor: torch.Tensor, plan: Plan) -> torch.Tensor:
    """A cast that stays on the tensor's device: there where torch's kernel is exact.

    Any other pair visits the host, where NumPy casts, and comes back
    (autograd records both moves).
    """
    if plan.kernel in ("none", "torch", "torch-only"):
        assert plan.target.torch is not None
        return tensor.to(dtype=plan.target.torch, copy=True)
    if plan.kernel == "dequantize":
        assert plan.after is not None
        return device_cast(tensor.dequantize(), plan.after)
    return cpu_cast(tensor.cpu(), plan).to(tensor.device)


def _tensor_to_device(
    tensor: torch.Tensor, plan: Plan, options: Options, device: torch.device
) -> torch.Tensor:
    """A tensor to another device: cast before the bus where the plan says so, then after."""
    target = plan.target
    if tensor.device.type != "cpu":
        near = device_cast(tensor, plan) if _casts_before_bus(plan) else tensor
        if device.type == "cpu":
            host = near.to(CPU) if near.requires_grad else device_to_host(near)
            return cpu_cast(host, plan) if host.dtype != target.torch else host
        return _finish_on_device(near.to(device), plan)
    staged = cpu_cast(tensor, plan) if _casts_before_bus(plan) else tensor
    batch = open_batch(device)
    if batch is not None and not staged.requires_grad:
        placed = batch.place(tuple(staged.shape), plan.bus, target)
        if placed is not None:
            placed[0].copy_(staged)
            return placed[1]
    if options.pin_memory and not staged.is_pinned():
        staged = staged.pin_memory()
    moved = host_to_device(staged, device, non_blocking=options.non_blocking)
    return _finish_on_device(moved, plan)


# --------------------------------------------------------------------------- #
# to_numpy
# --------------------------------------------------------------------------- #


@overload
def to_numpy(
    data: object,
    /,
    *,
    dtype: type[ScalarT] | np.dtype[ScalarT],
    copy: bool | None = None,
    casting: Casting = "same_kind",
) -> npt.NDArray[ScalarT]: ...


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
        as a read-only view of its detached data, in every grad mode. Tensors
        on other devices are copied to host memory, and the call returns only
        when the values are final.

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
    if type(data) is _Tensor and casting == "same_kind":
        plans = (
            _FLOAT32_NUMPY
            if dtype is FLOAT32
            else _PRESERVE_NUMPY
            if dtype is PRESERVE
            else _numpy_of(dtype)
        )
        plan = plans.get(data.dtype)
        if plan is not None:
            # numpy() refuses GPU tensors, conjugate and negative bits, ZeroTensors
            # and other layouts itself: the general path then explains or copies.
            # It would read a storage freed to nothing (FSDP's resize_(0)) and give
            # garbage for torch.func wrappers, whose storage has no data pointer to
            # read (or refuses to be read): both take the general path, which raises.
            try:
                if data.untyped_storage().data_ptr():
                    if plan.blocker is None:
                        if copy is None or copy is False:
                            if not data.requires_grad:
                                return data.numpy()
                            # Read-only: NumPy writes must not bypass autograd.
                            if plan.source.bits_torch is not None:
                                return share_tensor(data.detach(), plan.source, sealed=True)
                            array = data.detach().numpy()
                            array.setflags(write=False)  # for good: its base is a tensor
                            return array
                    elif (copy is None or copy is True) and data.is_cpu:
                        return host_array(data.detach() if data.requires_grad else data, plan)
            except (RuntimeError, TypeError):
                pass
    return array_from(data, Options.for_numpy(dtype, copy, casting))


def array_from(data: object, options: Options) -> npt.NDArray[Any]:
    """``to_numpy`` with its options checked already."""
    try:
        value, unshareable, owned = coerce(data, "to_numpy", options.copy)
        if isinstance(value, torch.Tensor):  # a tensor, or a list of them stacked
            result = tensor_to_array(value, options, unshareable)
        else:
            result = array_to_array(value, options, unshareable, owned)
    except TensorBridgeError:
        raise
    except INTERNAL_ERRORS as error:
        raise internal_error("to_numpy", data, error) from None
    exact = options.memo.exact
    if exact is not None and result.dtype != exact:
        if options.copy is False:
            raise share_error(
                f"dtype={dtype_str(exact)!r} asks for byte order the data does not have, "
                "and swapping bytes writes new memory"
            )
        result = result.astype(exact)
    return result


def tensor_to_array(
    tensor: torch.Tensor, options: Options, unshareable: str | None = None
) -> npt.NDArray[Any]:
    """A tensor to an ndarray: shared where the plan and the tensor's memory allow."""
    own = memory_blocker(tensor)
    moves_to = None if tensor.device.type == "cpu" else CPU
    plan = options.memo.tensor_plan("numpy", tensor.dtype, options.casting, tensor.device, moves_to)
    reason = plan.blocker or unshareable or own
    if reason is not None and options.copy is False:
        raise share_error(reason)
    if reason is None and options.copy is not True:
        # NumPy writes must never bypass autograd: a grad tensor's view is read-only.
        return share_tensor(tensor.detach(), plan.source, sealed=tensor.requires_grad)
    if unshareable is not None and plan.kernel == "none" and own is None and moves_to is None:
        return share_tensor(tensor.detach(), plan.source)  # a stack: new memory already
    return host_array(tensor.detach(), plan)


def host_array(tensor: torch.Tensor, plan: Plan) -> npt.NDArray[Any]:
    """New host memory holding a tensor's values as the plan's target.

    A tensor on another device crosses to the host first (``device_to_host``
    returns only once the values are there), cast before the crossing where the
    plan says so (a narrowing the device computes exactly, such as float64 to
    float32); every other cast runs on the host, so a GPU tensor converts to the
    values its CPU copy would.
    """
    kernel, target = plan.kernel, plan.target
    if kernel == "dequantize":
        assert plan.after is not None
        return host_array(tensor.dequantize(), plan.after)
    if not tensor.is_cpu:
        near = device_cast(tensor, plan) if _casts_before_bus(plan) else tensor
        tensor = device_to_host(near)
        if tensor.dtype == target.torch:
            return share_tensor(tensor, target)  # new memory, made by the move
    if plan.source.numpy is None:
        # complex32 (or bfloat16/float8 without ml_dtypes): torch casts it, exactly
        # where the target is wider, else through a widening of its own first.
        return share_tensor(_torch_widened(tensor, target), target)
    if kernel == "torch" and target.bits_torch is None:
        size = tensor.numel()
        if _torch_casts(size, plan):
            return share_tensor(torch_cast(tensor, target, size >= plan.huge_from), target)
    try:
        values = share_tensor(tensor, plan.source)
    except RuntimeError:  # conjugate or negative bits: NumPy holds the plain values
        values = share_tensor(tensor.resolve_conj().resolve_neg(), plan.source)
    return numpy_cast(values, target, quiet=plan.quiet, direct=plan.direct)


def _torch_widened(tensor: torch.Tensor, target: DType) -> torch.Tensor:
    wide = from_torch_dtype(torch.complex64 if tensor.is_complex() else torch.float32)
    widened = torch_cast(tensor, wide, False)
    if wide is target:
        return widened
    host = share_tensor(widened, wide)
    assert target.numpy is not None
    return share_ndarray(numpy_cast(host, target), target)


def array_to_array(
    array: npt.NDArray[Any], options: Options, unshareable: str | None, owned: bool
) -> npt.NDArray[Any]:
    """An ndarray to an ndarray: itself where nothing needs to change."""
    plan = options.memo.numpy_plan(array.dtype, options.casting)
    reason = unshareable or plan.blocker
    if reason is not None and options.copy is False:
        raise share_error(reason)
    if reason is None and options.copy is not True:
        return array
    if owned and plan.kernel == "none" and array.dtype.isnative:
        return array  # the memory is new already
    return numpy_cast(array, plan.target, quiet=plan.quiet, direct=plan.direct)


# --------------------------------------------------------------------------- #
# convert_like
# --------------------------------------------------------------------------- #


@overload
def convert_like(
    value: object,
    reference: torch.Tensor,
    /,
    *,
    dtype: DTypeLike | DtypePolicy,
    copy: bool | None = None,
    casting: Casting = "same_kind",
) -> torch.Tensor: ...
@overload
def convert_like(
    value: object,
    reference: npt.NDArray[Any],
    /,
    *,
    dtype: DTypeLike | DtypePolicy,
    copy: bool | None = None,
    casting: Casting = "same_kind",
) -> npt.NDArray[Any]: ...
def convert_like(
    value: object,
    reference: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy,
    copy: bool | None = None,
    casting: Casting = "same_kind",
) -> torch.Tensor | npt.NDArray[Any]:
    """Convert ``value`` to the kind of ``reference``: a tensor on its device, or an ndarray.

    The pattern for a function that accepts either library's arrays: convert
    the input once, compute, and hand the result back as the kind the caller
    passed in. A tensor ``reference`` gives ``to_tensor(value, device=
    reference.device, ...)``; an ndarray ``reference`` gives ``to_numpy(value,
    ...)`` (a plain ndarray, even for a subclass such as a masked array).

    Args:
        value: anything ``to_tensor`` / ``to_numpy`` accept.
        reference: the value whose kind (and device) the result takes; only its
            type and device are read, never its dtype or data.
        dtype: required, so that every call states its dtype policy:
            ``tb.PRESERVE`` keeps ``value``'s dtype, ``tb.FLOAT32`` is the
            library default, ``reference.dtype`` matches the reference, and any
            other ``DtypePolicy`` or concrete dtype works as in ``to_tensor``.
        copy: None shares memory when possible and copies otherwise; True
            always copies; False shares or raises ``ShareError``.
        casting: NumPy's casting rule, checked for every dtype change.

    Returns:
        A ``torch.Tensor`` on ``reference.device`` when ``reference`` is a
        tensor, an ``np.ndarray`` when it is an ndarray; sharing memory with
        ``value`` under the same rules as ``to_tensor`` and ``to_numpy``.

    Raises:
        InvalidInputError: ``reference`` is neither a tensor nor an ndarray.
        ShareError: ``copy=False`` and the result cannot share memory.
        UnsupportedDtypeError: the result dtype has no counterpart on that side.
        CastingError: ``casting`` forbids the dtype change.

    Examples:
        >>> import numpy as np, torch, tensorbridge as tb
        >>> def scale(x, factor):
        ...     result = tb.to_numpy(x, dtype=tb.PRESERVE) * factor
        ...     return tb.convert_like(result, x, dtype=tb.PRESERVE)
        >>> scale(np.ones(2), 3)
        array([3., 3.])
        >>> scale(torch.ones(2, dtype=torch.float64), 3)
        tensor([3., 3.], dtype=torch.float64)
    """
    if isinstance(reference, torch.Tensor):
        return to_tensor(value, dtype=dtype, device=reference.device, copy=copy, casting=casting)
    if isinstance(reference, np.ndarray):
        return to_numpy(value, dtype=dtype, copy=copy, casting=casting)
    kind = type(reference)
    raise InvalidInputError(
        f"convert_like: reference is {a_type(reference)} ({kind.__module__}.{kind.__qualname__}), "
        "not a torch.Tensor or an np.ndarray; pass the array or tensor whose kind the result "
        "should take, or call to_tensor / to_numpy directly"
    )


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
            check_tensor(value)
        except TensorBridgeError as error:
            raise type(error)(f"shares_memory: {name}: {error}") from None
        if value.numel() == 0:
            return value.device, None
        return value.device, np.asarray(_Extent(value))
    raise InvalidInputError(
        f"shares_memory: {name} is {a_type(value)}; pass an np.ndarray or a torch.Tensor"
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
        max_work: Any = SHARES_MEMORY_MAX_WORK  # the stubs allow only -1 and 0
        return bool(np.shares_memory(memory_a, memory_b, max_work=max_work))
    except _TOO_HARD:
        return bool(np.may_share_memory(memory_a, memory_b))


#: How much work ``shares_memory`` lets NumPy's exact overlap solver do.
SHARES_MEMORY_MAX_WORK: Final = 100_000

# NumPy 1 has no np.exceptions module before 1.25; TooHardError lives on np itself there.
_TOO_HARD: Final[type[Exception]] = getattr(
    getattr(np, "exceptions", np), "TooHardError", getattr(np, "TooHardError", RuntimeError)
)
