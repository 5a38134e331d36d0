"""The conversion core: ``to_tensor``, ``to_numpy`` and ``shares_memory``.

Each public function starts with the common case (an array or tensor that can
be shared as it is) in a few lines, then hands everything else to the general
path, which decides in one place whether the result may share memory and says
why not when it cannot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeVar, overload

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.dlpack import from_dlpack as _torch_from_dlpack
from typing_extensions import TypeIs

from ._device import CPU, move, parse_device, same_device
from ._dtypes import (
    FLOAT32,
    Casting,
    DType,
    DTypeLike,
    DtypePolicy,
    cast_array,
    cast_tensor,
    check_cast,
    check_casting_value,
    from_numpy_dtype,
    from_torch_dtype,
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
_FLOAT32_KEEPS_NUMPY: Final = frozenset(
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
    >>> a[0]
    np.float64(7.0)
    """
    if (
        type(data) is _ndarray
        and dtype is FLOAT32
        and device is None
        and casting is _SAME_KIND
        and (copy is None or copy is False)
        and ((kept := data.dtype) is _NUMPY_FLOAT32 or kept in _FLOAT32_KEEPS_NUMPY)
        and data.flags.writeable
    ):
        try:
            return torch.from_numpy(data)
        except ValueError:
            pass  # negative or uneven strides: the general path explains
    return _to_tensor(data, dtype, device, copy, casting)


def _to_tensor(
    data: object, dtype: object, device: object, copy: object, casting: object
) -> torch.Tensor:
    _check_copy(copy)
    check_casting_value(casting)
    target_device = parse_device(device)
    source, unshareable, owned = _coerce(data, "to_tensor")
    if is_tensor(source):
        return _tensor_to_tensor(source, dtype, target_device, copy, str(casting))
    return _array_to_tensor(source, dtype, target_device, copy, str(casting), unshareable, owned)


def _array_to_tensor(
    array: npt.NDArray[Any],
    dtype: object,
    device: torch.device | None,
    copy: object,
    casting: str,
    unshareable: str | None,
    owned: bool,
) -> torch.Tensor:
    source = from_numpy_dtype(array.dtype)
    target = _result_dtype(source, dtype)
    if target.torch is None:
        raise _no_torch_dtype(target, source, dtype)
    check_cast(source, target, casting)
    on_cpu = device is None or device.type == "cpu"
    reason = unshareable or _array_share_blocker(array, source, target, dtype)
    if reason is None and not on_cpu:
        reason = f"the result goes to {device}, and NumPy memory is CPU memory"
    if reason is None and not array.flags.writeable:
        reason = (
            "the array is read-only (np.load(..., mmap_mode='r') or np.frombuffer(bytes)?), "
            "and a writable tensor over it could crash the process or change immutable data"
        )
    if reason is None and not _torch_strides_ok(array):
        reason = _stride_problem(array)
    if reason is not None and copy is False:
        raise _share_error(reason)
    if reason is None and copy is not True:
        return _share_ndarray(array, target)
    if owned and target is source and on_cpu:
        return _share_ndarray(array, target)  # the memory is new already
    if on_cpu:
        return _copy_to_tensor(array, source, target)
    assert device is not None
    if target is source or (source.torch is not None and widens_exactly(source, target)):
        # The narrow dtype crosses the bus; an exact widening runs on the device,
        # where it gives the same values NumPy would.
        staged = _share_ndarray(_writable_native(array, source), source)
        return move(staged, source, target, device)
    # Narrowing (or lossy) casts run on the host, in NumPy, before the transfer.
    return _copy_to_tensor(array, source, target).to(device)


def _array_share_blocker(
    array: npt.NDArray[Any], source: DType, target: DType, dtype: object
) -> str | None:
    """Why the result cannot share memory for dtype reasons (dtype, byte order)."""
    if target is not source:
        return _dtype_change_reason(source, target, dtype)
    if not array.dtype.isnative:
        return (
            f"the array's byte order is non-native (dtype {array.dtype.str!r}), "
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


def _copy_to_tensor(array: npt.NDArray[Any], source: DType, target: DType) -> torch.Tensor:
    """A new C-contiguous CPU tensor holding ``array``'s values as ``target``.

    NumPy does the cast wherever it knows both dtypes, so values are exactly
    those of ``ndarray.astype``; torch casts only into dtypes NumPy lacks
    (complex32, or bfloat16 and float8 without ml_dtypes).
    """
    if target.numpy is not None:
        return _share_ndarray(cast_array(array, target), target)
    assert target.torch is not None
    if source.torch is None:
        # longdouble into a torch-only dtype: float64 is the widest type torch reads.
        array = array.astype(np.complex128 if source.kind == "c" else np.float64)
        source = from_numpy_dtype(array.dtype)
    staged = _share_ndarray(_writable_native(array, source), source)
    return cast_tensor(staged, target)


def _share_ndarray(array: npt.NDArray[Any], dtype: DType) -> torch.Tensor:
    """A tensor over exactly ``array``'s memory (bit views for ml_dtypes types)."""
    if dtype.bits_numpy is not None:
        assert dtype.torch is not None
        return torch.from_numpy(array.view(dtype.bits_numpy)).view(dtype.torch)
    return torch.from_numpy(array)


def _tensor_to_tensor(
    tensor: torch.Tensor,
    dtype: object,
    device: torch.device | None,
    copy: object,
    casting: str,
) -> torch.Tensor:
    _check_tensor_has_data(tensor)
    source = from_torch_dtype(tensor.dtype)
    target = _result_dtype(source, dtype)
    if target is not source:
        check_cast(source, target, casting)
    target_device = tensor.device if device is None else device
    moves = not same_device(tensor.device, target_device)
    if target is source and not moves:
        if copy is True:
            return tensor.clone(memory_format=torch.contiguous_format)
        return tensor
    if copy is False:
        reason = (
            _dtype_change_reason(source, target, dtype)
            if target is not source
            else f"the result goes to {target_device}, and the tensor lives on {tensor.device}"
        )
        raise _share_error(reason)
    if source.kind == "q":
        tensor = tensor.dequantize()
        source = from_torch_dtype(tensor.dtype)
    if moves:
        return move(tensor, source, target, target_device)
    return cast_tensor(tensor, target)


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
            if (kept := array.dtype) is _NUMPY_FLOAT32 or kept in _FLOAT32_KEEPS_NUMPY:
                return array
    return _to_numpy(data, dtype, copy, casting)


def _to_numpy(data: object, dtype: object, copy: object, casting: object) -> npt.NDArray[Any]:
    _check_copy(copy)
    check_casting_value(casting)
    source, unshareable, owned = _coerce(data, "to_numpy")
    if is_tensor(source):
        return _tensor_to_numpy(source, dtype, copy, str(casting))
    return _array_to_numpy(source, dtype, copy, str(casting), unshareable, owned)


def _tensor_to_numpy(
    tensor: torch.Tensor, dtype: object, copy: object, casting: str
) -> npt.NDArray[Any]:
    _check_tensor_has_data(tensor)
    source = from_torch_dtype(tensor.dtype)
    target = _result_dtype(source, dtype)
    if target.numpy is None:
        raise _no_numpy_dtype(target, source, dtype)
    check_cast(source, target, casting)
    reason = None
    if target is not source:
        reason = _dtype_change_reason(source, target, dtype)
    elif tensor.device.type != "cpu":
        reason = f"the tensor lives on {tensor.device}, and NumPy arrays live in CPU memory"
    elif tensor.is_conj():
        reason = "the tensor has its conjugate bit set (a lazy .conj() view NumPy cannot express)"
    elif tensor.is_neg():
        reason = "the tensor has its negative bit set (a lazy negated view NumPy cannot express)"
    if reason is not None and copy is False:
        raise _share_error(reason)
    requires_grad = tensor.requires_grad
    tensor = tensor.detach()
    if reason is None and copy is not True:
        array = _share_tensor(tensor, source)
        if requires_grad:
            array.flags.writeable = False  # NumPy writes must not bypass autograd
        return array
    return _copy_tensor_to_numpy(tensor, source, target)


def _share_tensor(tensor: torch.Tensor, dtype: DType) -> npt.NDArray[Any]:
    """An array over exactly the CPU tensor's memory (bit views for ml_dtypes types)."""
    if dtype.bits_torch is not None:
        assert dtype.numpy is not None
        return tensor.view(dtype.bits_torch).numpy().view(dtype.numpy)
    return tensor.numpy()


def _copy_tensor_to_numpy(tensor: torch.Tensor, source: DType, target: DType) -> npt.NDArray[Any]:
    """New C-contiguous host memory holding the tensor's values as ``target``.

    A tensor on another device crosses to the host first, in a blocking copy,
    so the call returns only final values; every cast then runs on the host in
    NumPy, so a GPU tensor converts to exactly the values its CPU copy would.
    """
    if source.kind == "q":
        tensor = tensor.dequantize()
        source = from_torch_dtype(tensor.dtype)
    fresh = tensor.device.type != "cpu"
    if fresh:
        tensor = tensor.to(CPU, memory_format=torch.contiguous_format)
    if tensor.is_conj() or tensor.is_neg():
        tensor = tensor.resolve_conj().resolve_neg()
        fresh = True
    if source.numpy is None:
        # complex32 (or bfloat16/float8 without ml_dtypes): widen exactly in torch first.
        source = from_torch_dtype(torch.complex64 if source.kind == "c" else torch.float32)
        tensor = cast_tensor(tensor, source)
        fresh = True
    host = _share_tensor(tensor, source)
    if source is target and fresh and host.flags.c_contiguous:
        return host
    return cast_array(host, target)


def _array_to_numpy(
    array: npt.NDArray[Any],
    dtype: object,
    copy: object,
    casting: str,
    unshareable: str | None,
    owned: bool,
) -> npt.NDArray[Any]:
    source = from_numpy_dtype(array.dtype)
    target = _result_dtype(source, dtype)
    if target.numpy is None:
        raise _no_numpy_dtype(target, source, dtype)
    check_cast(source, target, casting)
    reason = unshareable or _array_share_blocker(array, source, target, dtype)
    if reason is not None and copy is False:
        raise _share_error(reason)
    if reason is None and copy is not True:
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
    if isinstance(data, np.ndarray):
        if isinstance(data, np.ma.MaskedArray):
            return _unmask(data), _MASKED, False
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
    if isinstance(data, np.generic):
        return (
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
        raise InvalidInputError(
            f"{function} received a {type(data).__name__}, which is a container, not array "
            "data; convert each value, or the whole batch with tree_to_tensor/tree_to_numpy"
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
    if isinstance(data, (list, tuple)):
        return (
            _sequence(data, function),
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


def _unmask(array: np.ma.MaskedArray[Any, Any]) -> npt.NDArray[Any]:
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


def _sequence(data: list[Any] | tuple[Any, ...], function: str) -> npt.NDArray[Any]:
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
    while isinstance(data, (list, tuple)) and data:
        data = data[0]
    return isinstance(data, int) and not isinstance(data, bool)


def _from_dlpack(data: Any, function: str) -> torch.Tensor | npt.NDArray[Any]:
    try:
        device_type, _ = data.__dlpack_device__()
        if int(device_type) == 1:  # kDLCPU: NumPy keeps the read-only flag, torch would not
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
    if not isinstance(array, np.ndarray) or array.dtype.kind == "O":
        raise InvalidInputError(
            f"{function} got no numeric array from the {type(data).__name__}'s __array__"
        )
    return array, None, False


def _short(value: str | bytes) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_copy(copy: object) -> None:
    if copy is not None and copy is not True and copy is not False:
        raise InvalidArgumentError(
            f"copy={copy!r} is not a copy mode; pass None (share when possible), True "
            "(always copy) or False (share or raise)"
        )


def _check_tensor_has_data(tensor: torch.Tensor) -> None:
    if tensor.layout is not torch.strided:
        raise InvalidArgumentError(
            f"the tensor has layout {tensor.layout}, and only dense (strided) tensors "
            "convert; call .to_dense() first"
        )
    if tensor.is_meta:
        raise InvalidArgumentError(
            "the tensor is on the meta device and holds no data; create it on a real device"
        )


def _result_dtype(source: DType, dtype: object) -> DType:
    if isinstance(dtype, DtypePolicy):
        return dtype.apply(source)
    return resolve_dtype(dtype)


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


def _no_torch_dtype(target: DType, source: DType, dtype: object) -> UnsupportedDtypeError:
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
    from ._dtypes import ml_dtypes_module

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
    if isinstance(value, np.ndarray):
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
