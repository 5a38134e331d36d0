"""The conversion core: ``to_tensor``, ``to_numpy`` and ``shares_memory``.

Each public function starts with the common case (an array or tensor that can
be shared as it is) in a few lines, then hands everything else to the general
path, which decides in one place whether the result may share memory and says
why not when it cannot.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.dlpack import from_dlpack as _torch_from_dlpack
from typing_extensions import TypeIs

from ._device import CPU, device_to_host, host_to_device, move, parse_device, same_device
from ._dtypes import (
    FLOAT32,
    Casting,
    DType,
    DTypeLike,
    DtypePolicy,
    cast_array,
    cast_into,
    cast_tensor,
    check_cast,
    check_casting_value,
    from_numpy_dtype,
    from_torch_dtype,
    ml_dtypes_module,
    resolve_dtype,
    widens_exactly,
)
from ._errors import (
    InvalidArgumentError,
    InvalidInputError,
    ShareError,
    TensorBridgeError,
    UnsupportedDtypeError,
)

__all__ = ["shares_memory", "to_numpy", "to_tensor"]

_S = TypeVar("_S", bound=np.generic)

# Hot-path constants. Any other spelling of "same_kind" (a string built at run
# time) is still accepted: it only takes the general path.
_SAME_KIND: Final = "same_kind"
_ndarray: Final = np.ndarray
_Tensor: Final = torch.Tensor
_NUMPY_FLOAT32: Final = np.dtype(np.float32)

# The dtypes the default policy keeps as they are, on each side: the hot paths
# only need one set lookup to know that no cast is asked for.
FLOAT32_KEEPS_NUMPY: Final = frozenset(
    np.dtype(name)
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float32", "complex64",
    )
)  # fmt: skip


def is_tensor(value: object) -> TypeIs[torch.Tensor]:
    return isinstance(value, torch.Tensor)


def is_ndarray(value: object) -> TypeIs[npt.NDArray[Any]]:
    return isinstance(value, np.ndarray)


def is_numpy_scalar(value: object) -> TypeIs[np.generic[Any]]:
    return isinstance(value, np.generic)


def is_list_or_tuple(value: object) -> TypeIs[list[Any] | tuple[Any, ...]]:
    return isinstance(value, (list, tuple))


class Options:
    """The keyword options of one call, checked once (a tree reuses them for every leaf).

    A plain slotted class rather than a frozen dataclass: it is built on every
    general-path call, and frozen dataclasses are several times slower to build.
    """

    __slots__ = (
        "casting",
        "copy",
        "device",
        "dtype",
        "exact",
        "fixed",
        "non_blocking",
        "pin_memory",
        "policy",
    )

    def __init__(
        self,
        dtype: object,
        policy: DtypePolicy | None,
        fixed: DType | None,
        device: torch.device | None,
        copy: bool | None,
        casting: str,
        pin_memory: bool = False,
        non_blocking: bool = False,
    ) -> None:
        self.dtype = dtype  # the DtypePolicy or dtype-like as given, for messages
        self.policy = policy
        self.fixed = fixed
        self.device = device
        self.copy = copy
        self.casting = casting
        self.pin_memory = pin_memory
        self.non_blocking = non_blocking
        #: the NumPy dtype asked for when its byte order is not native (to_numpy
        #: honours it; torch holds native byte order only), else None
        self.exact: np.dtype[Any] | None = None

    def result_dtype(self, source: DType) -> DType:
        if self.policy is not None:
            return self.policy.apply(source)
        assert self.fixed is not None
        return self.fixed


_DEFAULT_OPTIONS: Final = Options(FLOAT32, FLOAT32, None, None, None, "same_kind")


def tensor_options(
    dtype: object,
    device: object,
    copy: object,
    casting: object,
    pin_memory: object = False,
    non_blocking: object = False,
) -> Options:
    """Check every option of ``to_tensor`` and resolve the dtype and device once."""
    if (
        dtype is FLOAT32
        and device is None
        and copy is None
        and casting == "same_kind"
        and pin_memory is False
        and non_blocking is False
    ):
        return _DEFAULT_OPTIONS
    options = numpy_options(dtype, copy, casting)
    pin_memory = _check_bool("pin_memory", pin_memory)
    non_blocking = _check_bool("non_blocking", non_blocking)
    if pin_memory and not torch.cuda.is_available():
        raise InvalidArgumentError(
            "pin_memory=True needs CUDA (page-locked memory speeds up copies to a GPU), and "
            "torch.cuda.is_available() is False in this process; leave pin_memory=False"
        )
    return Options(
        options.dtype,
        options.policy,
        options.fixed,
        parse_device(device),
        options.copy,
        options.casting,
        pin_memory,
        non_blocking,
    )


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name}={value!r} is not a bool; pass True or False")
    return value


def numpy_options(dtype: object, copy: object, casting: object) -> Options:
    """Check the options of ``to_numpy`` and resolve the dtype once."""
    if dtype is FLOAT32 and copy is None and casting == "same_kind":
        return _DEFAULT_OPTIONS
    if copy is not None and copy is not True and copy is not False:
        raise InvalidArgumentError(
            f"copy={copy!r} is not a copy mode; pass None (share when possible), True "
            "(always copy) or False (share or raise)"
        )
    check_casting_value(casting)
    if isinstance(dtype, DtypePolicy):
        return Options(dtype, dtype, None, None, copy, str(casting))
    options = Options(dtype, None, resolve_dtype(dtype), None, copy, str(casting))
    if isinstance(dtype, (str, np.dtype)) and options.fixed is not None:
        exact = _numpy_dtype_or_none(cast(Any, dtype))
        if exact is not None and not exact.isnative and exact.kind in "biufc":
            options.exact = exact
    return options


def _numpy_dtype_or_none(dtype: str | np.dtype[Any]) -> np.dtype[Any] | None:
    try:
        return np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError):
        return None


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
        type(data) is _ndarray
        and dtype is FLOAT32
        and device is None
        and casting is _SAME_KIND
        and (copy is None or copy is False)
        and ((kept := data.dtype) is _NUMPY_FLOAT32 or kept in FLOAT32_KEEPS_NUMPY)
        and data.flags.writeable
        and pin_memory is False
        and non_blocking is False
    ):
        try:
            # torch's stubs leave from_numpy's parameter unannotated.
            return torch.from_numpy(data)  # pyright: ignore[reportUnknownMemberType]
        except ValueError:
            pass  # negative or uneven strides: the general path explains
    options = tensor_options(dtype, device, copy, casting, pin_memory, non_blocking)
    return convert_to_tensor(data, options)


def convert_to_tensor(data: object, options: Options) -> torch.Tensor:
    """``to_tensor`` with its options checked already."""
    try:
        source, unshareable, owned = _coerce(data, "to_tensor", options.copy)
        if is_tensor(source):
            return tensor_to_tensor(source, options)
        return array_to_tensor(source, options, unshareable, owned)
    except TensorBridgeError:
        raise
    except _INTERNAL_ERRORS as error:
        raise internal_error("to_tensor", data, error) from None


def array_to_tensor(
    array: npt.NDArray[Any], options: Options, unshareable: str | None, owned: bool
) -> torch.Tensor:
    """The ndarray case of ``to_tensor``; ``unshareable`` and ``owned`` as ``_coerce`` says."""
    source = from_numpy_dtype(array.dtype)
    target = options.result_dtype(source)
    if target.torch is None:
        raise no_torch_dtype(target, source, options.dtype)
    check_cast(source, target, options.casting, options.policy)
    device = options.device
    on_cpu = device is None or device.type == "cpu"
    reason = unshareable or _array_share_blocker(array, source, target, options.dtype)
    if reason is None and not on_cpu:
        reason = f"the result goes to {device}, and NumPy memory is CPU memory"
    if reason is None and options.pin_memory:
        reason = "pin_memory=True asks for new page-locked memory"
    if reason is None and not array.flags.writeable:
        reason = (
            "the array is read-only (np.load(..., mmap_mode='r') or np.frombuffer(bytes)?), "
            "and a writable tensor over it could crash the process or change immutable data"
        )
    if reason is None and not _torch_strides_ok(array):
        reason = _stride_problem(array)
    if reason is not None and options.copy is False:
        raise _share_error(reason)
    if reason is None and options.copy is not True:
        return share_ndarray(array, target)
    if on_cpu and not options.pin_memory:
        if owned and target is source:
            return share_ndarray(array, target)  # the memory is new already
        return copy_to_tensor(array, source, target)
    # To a device, or into page-locked memory. An exact widening crosses the bus
    # in the narrow dtype and runs on the device, where it gives NumPy's values;
    # any other cast runs on the host, in NumPy, in the same pass as staging.
    widen_there = source.torch is not None and widens_exactly(source, target) and not on_cpu
    carried = source if widen_there else target
    if options.pin_memory:
        staged = torch.empty(array.shape, dtype=carried.torch, pin_memory=True)
        _fill(staged, array, source, carried)
        ours = True
    elif carried is source:
        staged = share_ndarray(_writable_native(array, source), source)
        ours = False
    else:
        staged = copy_to_tensor(array, source, carried)
        ours = True
    if on_cpu:
        return staged
    assert device is not None
    moved = host_to_device(staged, device, non_blocking=options.non_blocking, ours=ours)
    return cast_tensor(moved, target)


def _fill(out: torch.Tensor, array: npt.NDArray[Any], source: DType, target: DType) -> None:
    """Write ``array``'s values as ``target`` into the CPU tensor ``out``, in one pass."""
    if target.numpy is not None:
        cast_into(share_tensor(out, target), array)
    else:
        out.copy_(copy_to_tensor(array, source, target))


def _array_share_blocker(
    array: npt.NDArray[Any], source: DType, target: DType, dtype: object
) -> str | None:
    """Why the result cannot share memory for dtype reasons (dtype, byte order)."""
    if target is not source:
        return _dtype_change_reason(source, target, dtype)
    if not array.dtype.isnative:
        # numpy's stubs type dtype.str as typing.LiteralString, which pyright cannot
        # resolve under pythonVersion 3.10.
        return (
            f"the array's byte order is non-native (dtype {array.dtype.str!r}), "  # pyright: ignore[reportUnknownMemberType]
            "and torch holds native byte order only"
        )
    return None


def _torch_strides_ok(array: npt.NDArray[Any]) -> bool:
    itemsize = array.itemsize
    return all(stride >= 0 and stride % itemsize == 0 for stride in array.strides)


def _stride_problem(array: npt.NDArray[Any]) -> str:
    if any(stride < 0 for stride in array.strides):
        return (
            f"the array has negative strides {array.strides} (a reversed view such as "
            "a[::-1]), which a tensor cannot have"
        )
    return (
        f"the array's strides {array.strides} are not multiples of its item size "
        f"{array.itemsize} (a field of a structured array?), which a tensor cannot have"
    )


def _writable_native(array: npt.NDArray[Any], source: DType) -> npt.NDArray[Any]:
    """The array itself when torch may wrap it, else a C-contiguous native copy."""
    if array.flags.writeable and array.dtype.isnative and _torch_strides_ok(array):
        return array
    assert source.numpy is not None
    return np.array(array, dtype=source.numpy, order="C", copy=True)


def copy_to_tensor(array: npt.NDArray[Any], source: DType, target: DType) -> torch.Tensor:
    """A new C-contiguous CPU tensor holding ``array``'s values as ``target``.

    NumPy does the cast wherever it knows both dtypes, so values are exactly
    those of ``ndarray.astype``; torch casts only into dtypes NumPy lacks
    (complex32, or bfloat16 and float8 without ml_dtypes).
    """
    if target.numpy is not None:
        return share_ndarray(cast_array(array, target), target)
    assert target.torch is not None
    if source.torch is None:
        # longdouble into a torch-only dtype: float64 is the widest type torch reads.
        array = array.astype(np.complex128 if source.kind == "c" else np.float64)
        source = from_numpy_dtype(array.dtype)
    staged = share_ndarray(_writable_native(array, source), source)
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
    """A CPU tensor as ``target`` (itself when it already is).

    Through NumPy wherever NumPy knows both dtypes and autograd need not record
    the cast, so values are exactly ``ndarray.astype``'s (torch's CPU cast from
    float64 to float16, for one, rounds twice, through float32); otherwise torch
    casts, keeping the autograd graph.
    """
    if target is source:
        return tensor
    if source.numpy is None or target.numpy is None:
        return cast_tensor(tensor, target)
    if tensor.requires_grad and target.kind in "fc":
        # NumPy's values, and the autograd graph kept (the gradient flows back as
        # the source dtype). The cast reads the data, not the graph: apply() is
        # given the tensor and records the backward.
        apply: Any = _NumpyCast.apply  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        return cast(torch.Tensor, apply(tensor, source, target))
    return _numpy_cast(tensor.detach(), source, target)


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


def tensor_to_tensor(tensor: torch.Tensor, options: Options) -> torch.Tensor:
    """The tensor case of ``to_tensor``."""
    check_tensor_has_data(tensor)
    source = from_torch_dtype(tensor.dtype)
    target = options.result_dtype(source)
    if target is not source:
        check_cast(source, target, options.casting, options.policy)
    target_device = tensor.device if options.device is None else options.device
    moves = not same_device(tensor.device, target_device)
    pin = options.pin_memory and target_device.type == "cpu" and not tensor.is_pinned()
    if target is source and not moves and not pin:
        if options.copy is True:
            return tensor.clone(memory_format=torch.contiguous_format)
        return tensor
    if options.copy is False:
        if target is not source:
            reason = _dtype_change_reason(source, target, options.dtype)
        elif moves:
            reason = f"the result goes to {target_device}, and the tensor lives on {tensor.device}"
        else:
            reason = "pin_memory=True asks for new page-locked memory"
        raise _share_error(reason)
    if source.kind == "q":
        tensor = tensor.dequantize()
        source = from_torch_dtype(tensor.dtype)
    on_cpu = tensor.device.type == "cpu"
    if not moves:
        result = cast_cpu_tensor(tensor, source, target) if on_cpu else cast_tensor(tensor, target)
        if pin:
            result = result.pin_memory()
        return result
    if on_cpu:
        # Host to device: narrow on the host, widen exactly on the device.
        carried = source if widens_exactly(source, target) else target
        staged = cast_cpu_tensor(tensor, source, carried)
        ours = staged is not tensor
        if options.pin_memory and not staged.is_pinned():
            staged, ours = staged.pin_memory(), True
        moved = host_to_device(staged, target_device, non_blocking=options.non_blocking, ours=ours)
        return cast_tensor(moved, target)
    return move(tensor, source, target, target_device)


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
    if (
        type(data) is _Tensor
        and dtype is FLOAT32
        and casting is _SAME_KIND
        and (copy is None or copy is False)
    ):
        try:
            # numpy() itself refuses grad, conj/neg bits, other devices and layouts,
            # and reading the array's dtype is cheaper than reading the tensor's.
            array = data.numpy()
        except (RuntimeError, TypeError):
            pass
        else:
            if (kept := array.dtype) is _NUMPY_FLOAT32 or kept in FLOAT32_KEEPS_NUMPY:
                return array
    return convert_to_numpy(data, numpy_options(dtype, copy, casting))


def convert_to_numpy(data: object, options: Options) -> npt.NDArray[Any]:
    """``to_numpy`` with its options checked already."""
    try:
        source, unshareable, owned = _coerce(data, "to_numpy", options.copy)
        if is_tensor(source):
            result = tensor_to_numpy(source, options)
        else:
            result = array_to_numpy(source, options, unshareable, owned)
    except TensorBridgeError:
        raise
    except _INTERNAL_ERRORS as error:
        raise internal_error("to_numpy", data, error) from None
    exact = options.exact
    if exact is not None and result.dtype != exact:
        if options.copy is False:
            raise _share_error(
                f"dtype={exact.str!r} asks for byte order the data does not have, and "  # pyright: ignore[reportUnknownMemberType]
                "swapping bytes writes new memory"
            )
        result = result.astype(exact)
    return result


#: What torch and NumPy raise from inside when handed data they cannot handle
#: (nested, fake and wrapper-subclass tensors, lying array interfaces, cycles...).
#: Each becomes a short InvalidInputError; TensorBridgeErrors pass through.
_INTERNAL_ERRORS: Final = (
    RuntimeError,  # RecursionError and NotImplementedError included
    AssertionError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    BufferError,
)


def internal_error(function: str, data: object, error: BaseException) -> InvalidInputError:
    """A short message for an error torch or NumPy raised on data they cannot handle."""
    return InvalidInputError(
        f"{function} cannot convert the {type(data).__name__}: converting it failed inside "
        f"torch or NumPy with {type(error).__name__}: {short_message(error)}; pass a plain "
        "ndarray, a dense torch.Tensor or a (nested) list of numbers"
    )


def short_message(error: BaseException, limit: int = 160) -> str:
    """The first line of an error message, cut to ``limit`` characters."""
    text = str(error).strip()
    text = text.split("\n", 1)[0].strip() if text else repr(error)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tensor_to_numpy(tensor: torch.Tensor, options: Options) -> npt.NDArray[Any]:
    """The tensor case of ``to_numpy``."""
    check_tensor_has_data(tensor)
    source = from_torch_dtype(tensor.dtype)
    target = options.result_dtype(source)
    if target.numpy is None:
        raise _no_numpy_dtype(target, source, options.dtype)
    check_cast(source, target, options.casting, options.policy)
    reason = None
    if target is not source:
        reason = _dtype_change_reason(source, target, options.dtype)
    elif tensor.device.type != "cpu":
        reason = f"the tensor lives on {tensor.device}, and NumPy arrays live in CPU memory"
    elif tensor.is_conj():
        reason = "the tensor has its conjugate bit set (a lazy .conj() view NumPy cannot express)"
    elif tensor.is_neg():
        reason = "the tensor has its negative bit set (a lazy negated view NumPy cannot express)"
    if reason is not None and options.copy is False:
        raise _share_error(reason)
    requires_grad = tensor.requires_grad
    tensor = tensor.detach()
    if reason is None and options.copy is not True:
        array = share_tensor(tensor, source)
        if requires_grad:
            return read_only_view(array)  # NumPy writes must not bypass autograd
        return array
    return _copy_tensor_to_numpy(tensor, source, target)


def share_tensor(tensor: torch.Tensor, dtype: DType) -> npt.NDArray[Any]:
    """An array over exactly the CPU tensor's memory (bit views for ml_dtypes types)."""
    if dtype.bits_torch is not None:
        assert dtype.numpy is not None
        # numpy's stubs type one overload of ndarray.view with typing.Self, which
        # pyright cannot resolve under pythonVersion 3.10.
        return tensor.view(dtype.bits_torch).numpy().view(dtype.numpy)  # pyright: ignore[reportUnknownMemberType]
    return tensor.numpy()


_NARROW_ON_DEVICE: Final = frozenset({("float64", "float32"), ("complex128", "complex64")})


def _copy_tensor_to_numpy(tensor: torch.Tensor, source: DType, target: DType) -> npt.NDArray[Any]:
    """New C-contiguous host memory holding the tensor's values as ``target``.

    A tensor on another device crosses to the host first (``device_to_host``
    returns only once the values are there). float64 to float32 (and complex128
    to complex64) narrows on the device before that; every other cast runs on
    the host in NumPy, so a GPU tensor converts to the values its CPU copy would.
    """
    if source.kind == "q":
        tensor = tensor.dequantize()
        source = from_torch_dtype(tensor.dtype)
    fresh = tensor.device.type != "cpu"
    if fresh:
        if (source.name, target.name) in _NARROW_ON_DEVICE:
            # One IEEE rounding in both libraries, so the device gives NumPy's
            # values (NaN stays NaN), and the bus carries half the bytes.
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
    host = share_tensor(tensor, source)
    if source is target and fresh and host.flags.c_contiguous:
        return host
    return cast_array(host, target)


def array_to_numpy(
    array: npt.NDArray[Any], options: Options, unshareable: str | None, owned: bool
) -> npt.NDArray[Any]:
    """The ndarray case of ``to_numpy``."""
    source = from_numpy_dtype(array.dtype)
    target = options.result_dtype(source)
    if target.numpy is None:
        raise _no_numpy_dtype(target, source, options.dtype)
    check_cast(source, target, options.casting, options.policy)
    reason = unshareable or _array_share_blocker(array, source, target, options.dtype)
    if reason is not None and options.copy is False:
        raise _share_error(reason)
    if reason is None and options.copy is not True:
        return array
    if owned and target is source:
        return array  # the memory is new already
    return cast_array(array, target)


# --------------------------------------------------------------------------- #
# shared pieces
# --------------------------------------------------------------------------- #


def _coerce(
    data: object, function: str, copy: bool | None = None
) -> tuple[torch.Tensor | npt.NDArray[Any], str | None, bool]:
    """Turn any accepted input into an ndarray or tensor.

    Returns the array or tensor; the reason the result can never share memory
    with ``data`` (to give under ``copy=False``), or None; and whether the
    returned array's memory is new, made here, so a result may wrap it as is.
    ``copy=False`` makes an ``__array__`` that can only copy raise ``ShareError``.
    """
    if isinstance(data, torch.Tensor):
        return data, None, False
    if is_ndarray(data):
        if isinstance(data, np.ma.MaskedArray):
            return unmask(data), _MASKED, False
        return np.asarray(data), None, False  # a base-class view of any subclass
    if isinstance(data, (bool, int, float, complex)):
        return (
            _python_scalar(data),
            (
                f"a Python {type(data).__name__} is not an array, so its value always goes into "
                "new memory"
            ),
            True,
        )
    if is_numpy_scalar(data):
        # numpy's stubs type a scalar's array with typing.Self, which pyright cannot
        # resolve under pythonVersion 3.10: its dtype reads as unknown.
        return (  # pyright: ignore[reportUnknownVariableType]
            np.asarray(data),
            (
                f"a NumPy scalar ({type(data).__name__}) has no memory to share; "
                "its value always goes into new memory"
            ),
            True,
        )
    if isinstance(data, (str, bytes)):
        raise InvalidInputError(
            f"{function} received a {type(data).__name__} ({_short(data)}), which is not "
            "array data; for raw bytes use np.frombuffer(data, dtype=...) first"
        )
    if data is None:
        raise InvalidInputError(
            f"{function} received None, which is not array data; pass an array, a tensor, "
            "a number or a (nested) list of numbers"
        )
    if isinstance(data, Mapping):
        # The cast: isinstance leaves the mapping's type arguments unknown to pyright.
        raise InvalidInputError(
            f"{function} received a {type(cast(object, data)).__name__}, which is a "
            "container, not array data; convert each value, or the whole batch with "
            "tree_to_tensor/tree_to_numpy"
        )
    if hasattr(data, "__dlpack__") and hasattr(data, "__dlpack_device__"):
        return _from_dlpack(data, function), None, False
    if hasattr(data, "__array_interface__"):
        _check_array_interface(data, function)
        return np.asarray(data), None, False
    if hasattr(data, "__array_struct__"):
        return np.asarray(data), None, False
    if hasattr(data, "__array__"):
        return _from_array_protocol(data, function, copy)
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        pass
    else:
        try:
            return np.asarray(view), None, False
        except (TypeError, ValueError) as error:
            raise InvalidInputError(
                f"{function} received a {type(data).__name__} whose buffer NumPy cannot read "
                f"({error}); pass an ndarray instead"
            ) from None
    if isinstance(data, Sequence):
        # list, tuple, range, deque (a registered Sequence) and user sequences
        return (
            sequence_to_array(cast(Any, data), function),
            (
                f"a Python {type(cast(object, data)).__name__} is not an array, so its values "
                "always go into new memory"
            ),
            True,
        )
    raise InvalidInputError(
        f"{function} received a {type(data).__name__}, which is not array data; pass an "
        "ndarray, a tensor, a number, a (nested) list of numbers, or an object with "
        "__dlpack__, __array__ or the buffer protocol"
    )


_MASKED: Final = "masked arrays are never shared (a tensor has no place for the mask)"


def unmask(array: np.ma.MaskedArray[Any, Any]) -> npt.NDArray[Any]:
    masked = int(np.count_nonzero(np.ma.getmaskarray(array)))
    if masked:
        raise InvalidArgumentError(
            f"the masked array has {masked} masked element(s), and neither a tensor nor a "
            "plain ndarray can hold the mask; call .filled(value) to choose what the masked "
            "elements become, or .compressed() to drop them"
        )
    return np.asarray(array.data)


def _python_scalar(value: bool | int | float | complex) -> npt.NDArray[Any]:
    if isinstance(value, bool):
        return np.array(value, dtype=np.bool_)
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise InvalidArgumentError(
                f"the Python int {value} does not fit int64, the dtype Python ints become; "
                "pass an ndarray with the dtype you want (uint64, float64, object...)"
            )
        return np.array(value, dtype=np.int64)
    if isinstance(value, float):
        return np.array(value, dtype=np.float64)
    return np.array(value, dtype=np.complex128)


#: The deepest nesting a sequence may have: NumPy's own limit on dimensions.
MAX_DEPTH: Final = 64


def sequence_to_array(data: Sequence[Any], function: str) -> npt.NDArray[Any]:
    if not isinstance(_first_leaf(data, MAX_DEPTH + 1), _NOT_NESTING):
        # The first element, MAX_DEPTH levels down, is still a sequence: a sequence that
        # contains itself, whose conversion would never end (NumPy walks every branch).
        raise InvalidArgumentError(
            f"{function} received a {type(data).__name__} nested more than {MAX_DEPTH} levels "
            "deep (a sequence that contains itself, or whose __getitem__ returns itself?); "
            "arrays have at most 64 dimensions, so pass rectangular nested lists of numbers"
        )
    try:
        array = np.array(data)
    except (ValueError, TypeError, RuntimeError, OverflowError, KeyError, IndexError) as error:
        raise InvalidArgumentError(
            f"{function} could not turn the {type(data).__name__} into an array "
            f"({short_message(error)}); nested sequences must be rectangular, not "
            "self-referencing, and hold only numbers"
        ) from None
    if array.dtype.kind in "fO" and array.size and _only_python_ints(data, array):
        raise InvalidArgumentError(
            f"the {type(data).__name__} holds only integers, and no integer dtype holds all "
            "of them (int64 stops at 2**63-1, uint64 has no negatives); pass an ndarray with "
            "the dtype you want (float64 or object), or split the values"
        )
    if array.dtype.kind not in "biufc":
        raise InvalidArgumentError(
            f"{function} turned the {type(data).__name__} into an array of dtype "
            f"{array.dtype}, which is not numeric; nested sequences must be rectangular "
            "(not ragged) and hold only numbers"
        )
    if array.dtype == np.uint64 and array.size and array.max() >= 2**63:
        raise InvalidArgumentError(
            f"the {type(data).__name__} holds integers above 2**63-1, which do not fit int64, "
            "the dtype Python ints become; pass an ndarray with dtype=np.uint64 instead"
        )
    if array.dtype.kind == "i" and array.dtype.itemsize < 8 and _has_python_int(data, array.ndim):
        array = array.astype(np.int64)
    return array


_NOT_NESTING: Final = (str, bytes, bytearray, memoryview, int, float, complex, np.generic)


def _first_leaf(data: Any, depth: int) -> Any:
    """The first element, ``depth`` levels down (bounded: a sequence may contain itself)."""
    for _ in range(depth):
        if not isinstance(data, Sequence) or isinstance(data, _NOT_NESTING):
            break
        try:
            data = cast(Any, data)[0]
        except (IndexError, KeyError, TypeError):
            break
    return cast(Any, data)


def _has_python_int(data: object, depth: int) -> bool:
    """Whether a nested sequence holds a Python int (NumPy 1 on Windows infers int32)."""
    leaf = _first_leaf(data, depth)
    return isinstance(leaf, int) and not isinstance(leaf, bool)


def _only_python_ints(data: Sequence[Any], array: npt.NDArray[Any]) -> bool:
    """Whether a sequence NumPy made floating or object holds only (huge) Python ints.

    Integers beyond int64 and uint64 are the only way integer input becomes
    float64 or object; cheap checks rule every other float array out first.
    """
    if array.dtype.kind == "f":
        if array.dtype != np.float64:
            return False  # Python ints beyond int64 make float64, nothing narrower
        with np.errstate(invalid="ignore"):
            if not float(np.abs(array).max()) >= 2.0**63:  # False for NaN and small values
                return False
    try:
        items: npt.NDArray[Any] = np.array(data, dtype=object).reshape(-1)  # pyright: ignore[reportUnknownMemberType]
    except (ValueError, TypeError, RuntimeError, OverflowError, KeyError, IndexError):
        return False
    return all(type(item) is int for item in items.tolist())


# NumPy 2 imports DLPack memory writable unless the exporter marks it read-only
# (DLPack 1.0); NumPy 1 marks every import read-only, which would force a copy.
# (numpy's stubs type __version__ as typing.LiteralString, which pyright cannot
# resolve under pythonVersion 3.10.)
_NUMPY_KEEPS_READ_ONLY_FLAG: Final = int(np.__version__.split(".")[0]) >= 2  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]


_KDL_CPU: Final = 1
_KDL_CUDA: Final = 2
#: Device types whose memory the CPU can address: kDLCPU, kDLCUDAHost, kDLROCMHost.
_KDL_HOST: Final = frozenset({1, 3, 11})


def _from_dlpack(data: Any, function: str) -> torch.Tensor | npt.NDArray[Any]:
    """Import a DLPack producer; CPU memory whose read-only flag is unknown comes back read-only.

    The flag can be read only by NumPy 2 from a producer that names its memory
    kDLCPU and exports a DLPack 1.0 capsule. NumPy 1 reads no flag; torch's
    importer ignores it; a producer whose ``__dlpack_device__`` says anything
    but kDLCPU for host memory disagrees with its capsule. In each of those
    cases the memory counts as read-only: ``copy=None`` copies and
    ``copy=False`` raises ``ShareError``.
    """
    try:
        device_type, _ = data.__dlpack_device__()
        device_type = int(device_type)
    except (BufferError, RuntimeError, TypeError, ValueError, AttributeError) as error:
        raise InvalidInputError(
            f"{function} could not read the {type(data).__name__}'s __dlpack_device__ "
            f"({short_message(error)}); it must return (device_type, device_id)"
        ) from None
    if device_type == _KDL_CUDA and not torch.cuda.is_available():
        raise InvalidInputError(
            f"the {type(data).__name__} says through __dlpack_device__ that its memory is on a "
            "CUDA device, and torch.cuda.is_available() is False in this process; convert it "
            "to a CPU array (np.asarray) first"
        )
    try:
        if device_type == _KDL_CPU and _NUMPY_KEEPS_READ_ONLY_FLAG:
            return _read_only_unless_flagged(data)
        if device_type in _KDL_HOST:
            tensor = _torch_from_dlpack(data)
            if tensor.device.type == "cpu":
                array = share_tensor(tensor.detach(), from_torch_dtype(tensor.dtype))
                return read_only_view(array)
            return tensor
        return _torch_from_dlpack(data)
    except (BufferError, RuntimeError, TypeError, ValueError, AssertionError) as error:
        raise InvalidInputError(
            f"{function} could not import the {type(data).__name__} through DLPack "
            f"({short_message(error)}); convert it to an ndarray or tensor first"
        ) from None


def _read_only_unless_flagged(data: Any) -> npt.NDArray[Any]:
    """NumPy 2's import of a kDLCPU producer: read-only unless a DLPack 1.0 capsule says not."""
    try:
        capsule = data.__dlpack__(max_version=(1, 0))
    except TypeError:  # a producer from before DLPack 1.0: no flag to read
        return read_only_view(np.from_dlpack(data))
    if not _is_versioned_capsule(capsule):
        return read_only_view(np.from_dlpack(_capsule(capsule)))
    return np.from_dlpack(_capsule(capsule))


class _Capsule:
    """Hands NumPy a capsule taken already, so the producer exports only once."""

    __slots__ = ("capsule",)

    def __init__(self, capsule: object) -> None:
        self.capsule = capsule

    def __dlpack__(self, **_: object) -> object:
        return self.capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (_KDL_CPU, 0)


def _capsule(capsule: object) -> Any:
    return _Capsule(capsule)


def _is_versioned_capsule(capsule: object) -> bool:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    try:
        return bool(get_name(capsule) == b"dltensor_versioned")
    except (TypeError, ValueError, ctypes.ArgumentError):
        return False


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


def _from_array_protocol(
    data: Any, function: str, copy: bool | None
) -> tuple[npt.NDArray[Any], str | None, bool]:
    if copy is False:
        # NumPy 2's protocol: __array__(copy=False) shares or raises ValueError; an
        # __array__ without the argument (TypeError) cannot promise to share.
        try:
            array = data.__array__(copy=False)
        except (TypeError, ValueError) as error:
            raise _share_error(
                f"the {type(data).__name__}'s __array__ cannot hand over its memory without "
                f"copying (__array__(copy=False) raised {type(error).__name__}: "
                f"{short_message(error, 100)})"
            ) from None
        if not is_ndarray(array):
            raise InvalidInputError(
                f"{function}: the {type(data).__name__}'s __array__ returned a "
                f"{type(array).__name__}, not an ndarray"
            )
        if array.dtype.kind == "O":
            raise InvalidInputError(
                f"{function} got no numeric array from the {type(data).__name__}'s __array__"
            )
        return array, None, False
    try:
        array = np.asarray(data)
    except (TypeError, ValueError, RuntimeError) as error:
        raise InvalidInputError(
            f"{function} could not get an array from the {type(data).__name__} through "
            f"__array__ ({short_message(error)})"
        ) from None
    if array.dtype.kind == "O":
        raise InvalidInputError(
            f"{function} got no numeric array from the {type(data).__name__}'s __array__"
        )
    return array, None, False


def _check_array_interface(data: object, function: str) -> None:
    """Refuse an ``__array_interface__`` NumPy would turn into a crash or a raw error."""
    interface = getattr(data, "__array_interface__", None)
    problem = None
    if not isinstance(interface, dict):
        problem = f"is a {type(interface).__name__}, not a dict"
    else:
        spec = cast("dict[str, Any]", interface)
        shape = spec.get("shape")
        pointer = spec.get("data")
        dimensions: tuple[Any, ...] = shape if isinstance(shape, tuple) else ()  # pyright: ignore[reportUnknownVariableType]
        if not isinstance(shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in dimensions
        ):
            problem = f"has shape {_short_any(shape)}, not a tuple of non-negative ints"  # pyright: ignore[reportUnknownArgumentType]
        elif not isinstance(spec.get("typestr"), str):
            problem = f"has typestr {_short_any(spec.get('typestr'))}, not a string"
        elif isinstance(pointer, tuple):
            address: Any = pointer[0] if pointer else None  # pyright: ignore[reportUnknownVariableType]
            if not isinstance(address, int) or address < 0:
                problem = (
                    f"has data address {_short_any(cast(object, address))}, not a non-negative int"
                )
            elif address == 0 and _nonempty(dimensions):
                problem = "points at address 0 (a null pointer) for non-empty data"
    if problem is not None:
        raise InvalidInputError(
            f"{function} received a {type(data).__name__} whose __array_interface__ {problem}; "
            "it does not describe readable memory, so nothing can be converted"
        )


def _nonempty(shape: tuple[Any, ...]) -> bool:
    return all(n > 0 for n in shape)


def _short_any(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real message
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 40 else text[:37] + "..."


def _short(value: str | bytes) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_PLAIN_TENSORS: Final = (torch.Tensor, torch.nn.Parameter)


def check_tensor_has_data(tensor: torch.Tensor) -> None:
    if tensor.is_nested:
        raise InvalidArgumentError(
            "the tensor is a nested (jagged) tensor, whose rows differ in length, and arrays "
            "are rectangular; convert each row (tensor.unbind()) or pad it "
            "(torch.nested.to_padded_tensor) first"
        )
    if tensor.layout is not torch.strided:
        raise InvalidArgumentError(
            f"the tensor has layout {tensor.layout}, and only dense (strided) tensors "
            "convert; call .to_dense() first"
        )
    if tensor.is_meta:
        raise InvalidArgumentError(
            "the tensor is on the meta device and holds no data; create it on a real device"
        )
    if type(tensor) not in _PLAIN_TENSORS and _has_python_dispatch(tensor):
        raise InvalidInputError(
            f"the tensor is a {type(tensor).__name__}, a tensor subclass that dispatches to "
            "Python (a FakeTensor or wrapper subclass) and has no ordinary memory to "
            "convert; convert a plain torch.Tensor (for a wrapper, the tensor it wraps)"
        )
    if tensor._is_zerotensor():  # pyright: ignore[reportPrivateUsage]
        raise InvalidInputError(
            "the tensor is a ZeroTensor (torch._efficientzerotensor), which has no memory; "
            "pass torch.zeros(...) of the same shape instead"
        )


def _has_python_dispatch(tensor: torch.Tensor) -> bool:
    try:
        keys = torch._C._dispatch_keys(tensor)  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
        return bool(keys.has(torch._C.DispatchKey.Python))  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownArgumentType]
    except (AttributeError, RuntimeError, TypeError):  # pragma: no cover - private API moved
        return True


def _dtype_change_reason(source: DType, target: DType, dtype: object) -> str:
    reason = f"the result dtype {target.name} differs from the input dtype {source.name}"
    if dtype is FLOAT32:
        reason += (
            f" (the default policy FLOAT32 casts floating data to float32; pass "
            f"dtype=tb.PRESERVE to keep {source.name})"
        )
    return reason


def _share_error(reason: str) -> ShareError:
    return ShareError(
        f"cannot share memory: {reason}. Pass copy=None to get a copy when sharing is "
        "impossible, or copy=True to always copy"
    )


def no_torch_dtype(target: DType, source: DType, dtype: object) -> UnsupportedDtypeError:
    how = "the dtype policy" if isinstance(dtype, DtypePolicy) else "dtype="
    if target.kind == "x":
        return UnsupportedDtypeError(
            f"cannot convert an array of dtype {source.name} to a tensor: {target.name} has "
            "no torch counterpart (torch holds only numeric data); convert it to a numeric "
            "dtype yourself first"
        )
    return UnsupportedDtypeError(
        f"cannot convert an array of dtype {source.name} to a tensor: {target.name} (from "
        f"{how}) has no torch counterpart; pass a dtype torch has, for example "
        f"dtype=torch.{'complex128' if target.kind == 'c' else 'float64'}, or the default "
        "policy tb.FLOAT32"
    )


def _no_numpy_dtype(target: DType, source: DType, dtype: object) -> UnsupportedDtypeError:
    prefix = f"cannot convert a tensor of dtype torch.{source.name} to NumPy: {target.name}"
    if target.bits_torch is not None and ml_dtypes_module() is None:
        return UnsupportedDtypeError(
            f"{prefix} exists in NumPy only through ml_dtypes, which is not installed; "
            "install the extra (pip install 'tensorbridge[ml-dtypes]') or pass "
            "dtype=np.float32 to cast"
        )
    if target.kind == "c":
        hint = "pass dtype=np.complex64 to cast"
    elif target.kind == "q":
        hint = "pass dtype=np.float32 to dequantize, or convert tensor.int_repr()"
    elif target.kind == "f":
        hint = "pass dtype=np.float32 to cast"
    else:
        hint = "it is a storage-only dtype with no NumPy counterpart"
    return UnsupportedDtypeError(f"{prefix} has no NumPy counterpart; {hint}")


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
