"""The conversion core: ``to_tensor``, ``to_numpy`` and ``shares_memory``.

Each public function starts with the common case (an array or tensor that can
be shared as it is) in a few lines, then hands everything else to the general
path, which decides in one place whether the result may share memory and says
why not when it cannot.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    return Options(dtype, None, resolve_dtype(dtype), None, copy, str(casting))


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
    source, unshareable, owned = _coerce(data, "to_tensor")
    if is_tensor(source):
        return tensor_to_tensor(source, options)
    return array_to_tensor(source, options, unshareable, owned)


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
    if tensor.requires_grad or source.numpy is None or target.numpy is None:
        return cast_tensor(tensor, target)
    host = share_tensor(tensor.resolve_conj().resolve_neg(), source)
    return share_ndarray(cast_array(host, target), target)


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
    source, unshareable, owned = _coerce(data, "to_numpy")
    if is_tensor(source):
        return tensor_to_numpy(source, options)
    return array_to_numpy(source, options, unshareable, owned)


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
            array.flags.writeable = False  # NumPy writes must not bypass autograd
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
    data: object, function: str
) -> tuple[torch.Tensor | npt.NDArray[Any], str | None, bool]:
    """Turn any accepted input into an ndarray or tensor.

    Returns the array or tensor; the reason the result can never share memory
    with ``data`` (to give under ``copy=False``), or None; and whether the
    returned array's memory is new, made here, so a result may wrap it as is.
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
    if hasattr(data, "__array_interface__") or hasattr(data, "__array_struct__"):
        return np.asarray(data), None, False
    if hasattr(data, "__array__"):
        return _from_array_protocol(data, function)
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
    if is_list_or_tuple(data):
        return (
            sequence_to_array(data, function),
            (
                f"a Python {type(data).__name__} is not an array, so its values always go "
                "into new memory"
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


def sequence_to_array(data: list[Any] | tuple[Any, ...], function: str) -> npt.NDArray[Any]:
    try:
        array = np.array(data)
    except (ValueError, TypeError, RuntimeError, OverflowError) as error:
        raise InvalidArgumentError(
            f"{function} could not turn the {type(data).__name__} into an array ({error}); "
            "nested sequences must be rectangular and hold only numbers"
        ) from None
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
    if array.dtype.kind == "i" and array.dtype.itemsize < 8 and _has_python_int(data):
        array = array.astype(np.int64)
    return array


def _has_python_int(data: object) -> bool:
    """Whether a nested sequence holds a Python int (NumPy 1 on Windows infers int32)."""
    while is_list_or_tuple(data) and data:
        data = data[0]
    return isinstance(data, int) and not isinstance(data, bool)


# NumPy 2 imports DLPack memory writable unless the exporter marks it read-only
# (DLPack 1.0); NumPy 1 marks every import read-only, which would force a copy.
# (numpy's stubs type __version__ as typing.LiteralString, which pyright cannot
# resolve under pythonVersion 3.10.)
_NUMPY_KEEPS_READ_ONLY_FLAG: Final = int(np.__version__.split(".")[0]) >= 2  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]


def _from_dlpack(data: Any, function: str) -> torch.Tensor | npt.NDArray[Any]:
    try:
        device_type, _ = data.__dlpack_device__()
        if int(device_type) == 1 and _NUMPY_KEEPS_READ_ONLY_FLAG:  # kDLCPU
            return np.from_dlpack(data)
        return _torch_from_dlpack(data)
    except (BufferError, RuntimeError, TypeError, ValueError) as error:
        raise InvalidInputError(
            f"{function} could not import the {type(data).__name__} through DLPack ({error})"
        ) from None


def _from_array_protocol(data: Any, function: str) -> tuple[npt.NDArray[Any], str | None, bool]:
    try:
        array = np.asarray(data)
    except (TypeError, ValueError, RuntimeError) as error:
        raise InvalidInputError(
            f"{function} could not get an array from the {type(data).__name__} through "
            f"__array__ ({error})"
        ) from None
    if array.dtype.kind == "O":
        raise InvalidInputError(
            f"{function} got no numeric array from the {type(data).__name__}'s __array__"
        )
    return array, None, False


def _short(value: str | bytes) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_tensor_has_data(tensor: torch.Tensor) -> None:
    if tensor.layout is not torch.strided:
        raise InvalidArgumentError(
            f"the tensor has layout {tensor.layout}, and only dense (strided) tensors "
            "convert; call .to_dense() first"
        )
    if tensor.is_meta:
        raise InvalidArgumentError(
            "the tensor is on the meta device and holds no data; create it on a real device"
        )


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
        if value.layout is not torch.strided:
            raise InvalidArgumentError(
                f"shares_memory: {name} is a tensor with layout {value.layout}; only dense "
                "tensors are supported"
            )
        if value.is_meta or value.numel() == 0:
            return value.device, None
        return value.device, np.asarray(_Extent(value))
    raise InvalidInputError(
        f"shares_memory: {name} is a {type(value).__name__}; pass an np.ndarray or a torch.Tensor"
    )


def shares_memory(a: npt.NDArray[Any] | torch.Tensor, b: npt.NDArray[Any] | torch.Tensor) -> bool:
    """Whether two arrays or tensors overlap in memory (exactly, element by element).

    Tensors on a different device than the other argument never overlap with
    it; NumPy memory is CPU memory.

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
        return bool(np.shares_memory(memory_a, memory_b))
    except np.exceptions.TooHardError:  # pragma: no cover - needs pathological strides
        return bool(np.may_share_memory(memory_a, memory_b))
