"""Inputs: what ``to_tensor`` and ``to_numpy`` accept, turned into an ndarray or a tensor.

Every accepted input (ndarrays and their subclasses, tensors, DLPack and
``__array__`` producers, buffers, scalars, nested sequences) becomes an
ndarray or a tensor here, with the reason its memory can never be shared
(if any); everything else is refused with a message that says what to pass
instead. Nothing here decides dtypes or copies: that is the plan's job.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.dlpack import from_dlpack as _torch_from_dlpack
from typing_extensions import TypeIs

from ._dtypes import from_torch_dtype
from ._errors import InvalidArgumentError, InvalidInputError
from ._kernels import read_only_view, share_tensor
from ._plan import share_error


def is_tensor(value: object) -> TypeIs[torch.Tensor]:
    return isinstance(value, torch.Tensor)


def is_ndarray(value: object) -> TypeIs[npt.NDArray[Any]]:
    return isinstance(value, np.ndarray)


def is_numpy_scalar(value: object) -> TypeIs[np.generic[Any]]:
    return isinstance(value, np.generic)


#: What torch and NumPy raise from inside when handed data they cannot handle
#: (nested, fake and wrapper-subclass tensors, lying array interfaces, cycles...).
#: Each becomes a short InvalidInputError; TensorBridgeErrors pass through.
INTERNAL_ERRORS: Final = (
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


def coerce(
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
    if type(data) is list or type(data) is tuple:  # before the protocol probes below
        sequence = cast(Any, data)  # (type() is does not narrow for pyright)
        return sequence_to_array(sequence, function), _sequence_reason(sequence), True
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
        # range, deque (a registered Sequence) and user sequences
        sequence = cast(Any, data)
        return sequence_to_array(sequence, function), _sequence_reason(sequence), True
    raise InvalidInputError(
        f"{function} received a {type(data).__name__}, which is not array data; pass an "
        "ndarray, a tensor, a number, a (nested) list of numbers, or an object with "
        "__dlpack__, __array__ or the buffer protocol"
    )


_MASKED: Final = "masked arrays are never shared (a tensor has no place for the mask)"


def _sequence_reason(data: object) -> str:
    kind = type(data).__name__
    return f"a Python {kind} is not an array, so its values always go into new memory"


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
            raise InvalidInputError(
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
        raise InvalidInputError(
            f"{function} received a {type(data).__name__} nested more than {MAX_DEPTH} levels "
            "deep (a sequence that contains itself, or whose __getitem__ returns itself?); "
            "arrays have at most 64 dimensions, so pass rectangular nested lists of numbers"
        )
    try:
        array = np.array(data)
    except (ValueError, TypeError, RuntimeError, OverflowError, KeyError, IndexError) as error:
        raise InvalidInputError(
            f"{function} could not turn the {type(data).__name__} into an array "
            f"({short_message(error)}); nested sequences must be rectangular, not "
            "self-referencing, and hold only numbers"
        ) from None
    if (
        array.dtype.kind in "fO"
        and array.size
        and (array.dtype.kind == "O" or _has_python_int(data, array.ndim))
        and _only_python_ints(data, array)
    ):
        raise InvalidInputError(
            f"the {type(data).__name__} holds only integers, and no integer dtype holds all "
            "of them (int64 stops at 2**63-1, uint64 has no negatives); pass an ndarray with "
            "the dtype you want (float64 or object), or split the values"
        )
    if array.dtype.kind not in "biufc":
        raise InvalidInputError(
            f"{function} turned the {type(data).__name__} into an array of dtype "
            f"{array.dtype}, which is not numeric; nested sequences must be rectangular "
            "(not ragged) and hold only numbers"
        )
    if array.dtype == np.uint64 and array.size and array.max() >= 2**63:
        raise InvalidInputError(
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
            try:
                return _read_only_unless_flagged(data)
            except (BufferError, RuntimeError, TypeError):
                # A dtype NumPy's importer lacks (bfloat16, float8): torch imports
                # it, and the memory counts as read-only, as below.
                pass
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


def _from_array_protocol(
    data: Any, function: str, copy: bool | None
) -> tuple[npt.NDArray[Any], str | None, bool]:
    if copy is False:
        # NumPy 2's protocol: __array__(copy=False) shares or raises ValueError; an
        # __array__ without the argument (TypeError) cannot promise to share.
        try:
            array = data.__array__(copy=False)
        except (TypeError, ValueError) as error:
            raise share_error(
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
