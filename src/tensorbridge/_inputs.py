"""Inputs: what ``to_tensor`` and ``to_numpy`` accept, and what each one's memory allows.

Every accepted input (ndarrays and their subclasses, tensors, DLPack and
``__array__`` producers, buffers, scalars, nested sequences) becomes an
ndarray or a tensor here (``coerce``), with the reason its memory can never
be shared, if any. Everything else is refused with a message that says what
to pass instead.

``memory_blocker`` is the one check of what a plan cannot know, made on every
call of every path: whether this array's or tensor's memory can be shared
(read-only, strides, conjugate and negative bits), and whether a tensor has
usable memory at all (nested, meta, sparse, fake, ``torch.func``, freed). The
plan decides everything that follows from dtypes and devices.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.dlpack import from_dlpack as _torch_from_dlpack

from ._compat import (
    NUMPY_MAJOR,
    dispatches_to_python,
    in_functorch_transform,
    is_mapping,
    is_masked,
    is_ndarray,
    is_sequence,
    is_tuple,
    is_zerotensor,
    reshape,
    shape_of,
)
from ._dtypes import from_torch_dtype
from ._errors import (
    InvalidArgumentError,
    InvalidInputError,
    a_type,
    first_line,
    share_error,
    short_repr,
    with_article,
)
from ._kernels import seal, share_tensor, shareable_strides

__all__ = [
    "INTERNAL_ERRORS",
    "check_tensor",
    "checked_numbers",
    "coerce",
    "internal_error",
    "memory_blocker",
    "sequence_to_array",
    "unmask",
]

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
        f"torch or NumPy with {type(error).__name__}: {first_line(error)}; pass a plain "
        "ndarray, a dense torch.Tensor or a (nested) list of numbers"
    )


# --------------------------------------------------------------------------- #
# What this input's memory allows
# --------------------------------------------------------------------------- #


def memory_blocker(value: npt.NDArray[Any] | torch.Tensor) -> str | None:
    """Why this array's or tensor's own memory cannot be what the result shares, or None.

    For a tensor, first ``check_tensor``: one without usable memory raises.
    """
    if isinstance(value, torch.Tensor):
        check_tensor(value)
        if value.is_conj():
            return "the tensor has its conjugate bit set (a lazy .conj() view NumPy cannot express)"
        if value.is_neg():
            return "the tensor has its negative bit set (a lazy negated view NumPy cannot express)"
        return None
    if not value.flags.writeable:
        return (
            "the array is read-only (np.load(..., mmap_mode='r'), np.frombuffer(bytes), a "
            "pandas copy-on-write view?), and a writable tensor over it could crash the "
            "process or change immutable data"
        )
    if shareable_strides(value) is None:
        if any(stride < 0 for stride in value.strides):
            return (
                f"the array has negative strides {value.strides} (a reversed view such as "
                "a[::-1]), which a tensor cannot have"
            )
        return (
            f"the array's strides {value.strides} are not multiples of its item size "
            f"{value.itemsize} (a field of a structured array?), which a tensor cannot have"
        )
    return None


_PLAIN_TENSORS: Final = (torch.Tensor, torch.nn.Parameter)


def check_tensor(tensor: torch.Tensor) -> None:
    """Raise unless ``tensor`` has ordinary memory that can be read.

    Raises:
        InvalidArgumentError: nested, sparse (any non-strided layout) or meta tensors.
        InvalidInputError: fake and wrapper-subclass tensors, ZeroTensors, tensors
            inside ``torch.func`` transforms, and tensors whose storage was freed.
    """
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
    if type(tensor) not in _PLAIN_TENSORS and dispatches_to_python(tensor):
        raise InvalidInputError(
            f"the tensor is {a_type(tensor)}, a tensor subclass that dispatches to Python (a "
            "FakeTensor or wrapper subclass) and has no ordinary memory to convert; convert "
            "a plain torch.Tensor (for a wrapper, the tensor it wraps)"
        )
    if in_functorch_transform(tensor):
        raise InvalidInputError(
            "the tensor is inside a torch.func transform (vmap, grad, jacrev, functionalize), "
            "where it has no memory of its own to convert; convert outside the transform, or "
            "use torch operations inside it"
        )
    if is_zerotensor(tensor):
        raise InvalidInputError(
            "the tensor is a ZeroTensor (torch._efficientzerotensor), which has no memory; "
            "pass torch.zeros(...) of the same shape instead"
        )
    _check_storage(tensor)


_PACKED: Final = frozenset(
    value for value in (getattr(torch, name, None) for name in ("quint4x2", "quint2x4")) if value
)


def _check_storage(tensor: torch.Tensor) -> None:
    """Raise when the tensor reaches beyond its storage (freed by ``resize_(0)``, as FSDP does)."""
    numel = tensor.numel()
    if numel == 0 or tensor.dtype in _PACKED:  # several elements a byte: nothing to compare
        return
    steps = zip(tensor.shape, tensor.stride(), strict=True)
    extent = 1 + sum((size - 1) * stride for size, stride in steps)
    needed = (tensor.storage_offset() + extent) * tensor.element_size()
    held = tensor.untyped_storage().nbytes()
    if held < needed:
        raise InvalidInputError(
            f"the tensor needs {needed} bytes of its storage and the storage holds {held}: its "
            "memory was freed under it (untyped_storage().resize_(0), as FSDP does to sharded "
            "parameters); convert it while its storage is allocated (inside "
            "FSDP.summon_full_params, say)"
        )


# --------------------------------------------------------------------------- #
# Turning inputs into arrays or tensors
# --------------------------------------------------------------------------- #


def coerce(
    data: object, function: str, copy: bool | None = None
) -> tuple[torch.Tensor | npt.NDArray[Any], str | None, bool]:
    """Turn any accepted input into an ndarray or tensor.

    Returns the array or tensor; the reason the result can never share memory
    with ``data`` (to give under ``copy=False``), or None; and whether the
    returned memory is new, made here, so a result may wrap it as it is.
    ``copy=False`` makes an ``__array__`` that can only copy raise ``ShareError``.
    """
    if isinstance(data, torch.Tensor):
        return data, None, False
    if type(data) is list or type(data) is tuple:  # before the protocol probes below
        return _from_sequence(cast("Sequence[Any]", data), function)
    if is_ndarray(data):
        if is_masked(data):
            return unmask(data), _MASKED, False
        return np.asarray(data), None, False  # a base-class view
    if isinstance(data, (bool, int, float, complex)):
        reason = (
            f"a Python {type(data).__name__} is not an array, so its value goes into new memory"
        )
        return python_scalar(data), reason, True
    if isinstance(data, np.generic):
        reason = (
            f"a NumPy scalar ({type(cast(object, data)).__name__}) has no memory to share; its "
            "value always goes into new memory"
        )
        return np.asarray(cast(object, data)), reason, True
    _refuse_non_arrays(data, function)
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
        buffer = memoryview(cast(Any, data))
    except TypeError:
        pass
    else:
        try:
            return np.asarray(buffer), None, False
        except (TypeError, ValueError) as error:
            raise InvalidInputError(
                f"{function} received {a_type(data)} whose buffer NumPy cannot read "
                f"({first_line(error)}); pass an ndarray instead"
            ) from None
    if is_sequence(data):  # range, deque (a registered Sequence), user sequences
        return _from_sequence(data, function)
    raise InvalidInputError(
        f"{function} received {a_type(data)}, which is not array data; pass an ndarray, a "
        "tensor, a number, a (nested) list of numbers, or an object with __dlpack__, "
        f"__array__ or the buffer protocol{_sparse_hint(data)}"
    )


_MASKED: Final = "masked arrays are never shared (a tensor has no place for the mask)"


def _refuse_non_arrays(data: object, function: str) -> None:
    """Raise for the inputs that are plainly not array data (strings, None, containers)."""
    if isinstance(data, (str, bytes)):
        raise InvalidInputError(
            f"{function} received {a_type(data)} ({short_repr(data, 40)}), which is not "
            "array data; for raw bytes use np.frombuffer(data, dtype=...) first"
        )
    if data is None:
        raise InvalidInputError(
            f"{function} received None, which is not array data; pass an array, a tensor, "
            "a number or a (nested) list of numbers"
        )
    if is_mapping(data):
        raise InvalidInputError(
            f"{function} received {a_type(data)}, which is a container, not array data; "
            "convert each value, or the whole batch with tree_to_tensor/tree_to_numpy"
        )


def _sparse_hint(data: object) -> str:
    if callable(getattr(data, "toarray", None)):
        return " (for a scipy sparse matrix, call .toarray() first for a dense array)"
    return ""


def unmask(array: np.ma.MaskedArray[Any, Any]) -> npt.NDArray[Any]:
    """The data of a masked array whose mask hides nothing (else it raises)."""
    masked = int(np.count_nonzero(np.ma.getmaskarray(array)))
    if masked:
        raise InvalidArgumentError(
            f"the masked array has {masked} masked element{'s' if masked != 1 else ''}, and "
            "neither a tensor nor a plain ndarray can hold the mask; call .filled(value) to "
            "choose what the masked elements become, or .compressed() to drop them"
        )
    return np.asarray(array.data)


def python_scalar(value: bool | int | float | complex) -> npt.NDArray[Any]:
    """A Python number as a 0-d array: bool, int64, float64 or complex128 (contract 3)."""
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


# --------------------------------------------------------------------------- #
# Sequences
# --------------------------------------------------------------------------- #

#: The deepest nesting a sequence may have: NumPy's own limit on dimensions.
MAX_DEPTH: Final = 64


def _from_sequence(
    data: Sequence[Any], function: str
) -> tuple[torch.Tensor | npt.NDArray[Any], str, bool]:
    reason = f"a Python {type(data).__name__} is not an array, so its values go into new memory"
    items = list(data)
    if items and all(isinstance(item, torch.Tensor) for item in items):
        return _stack_tensors(items, data, function), reason, True
    return sequence_to_array(data, function), reason, True


def _stack_tensors(items: list[torch.Tensor], data: object, function: str) -> torch.Tensor:
    """A list or tuple of tensors, stacked as ``torch.stack`` stacks them (contract 8)."""
    shapes = {tuple(item.shape) for item in items}
    if len(shapes) > 1:
        raise InvalidInputError(_ragged(data, function, [tuple(item.shape) for item in items]))
    for item in items:
        check_tensor(item)
    try:
        return torch.stack(items)
    except RuntimeError as error:
        raise InvalidInputError(
            f"{function} could not stack the {type(data).__name__}'s tensors "
            f"({first_line(error)}); give them one device, or stack them yourself"
        ) from None


def sequence_to_array(data: Sequence[Any], function: str) -> npt.NDArray[Any]:
    """Nested sequences of numbers, arrays or tensors as one ndarray, as ``np.array`` makes it.

    Python ints become int64, and integer-only data that no integer dtype holds
    raises (contract 7).
    """
    if isinstance(_first_leaf(data, MAX_DEPTH + 1), Sequence) and not isinstance(
        _first_leaf(data, MAX_DEPTH + 1), _NOT_NESTING
    ):
        # The first element, MAX_DEPTH levels down, is still a sequence: a sequence that
        # contains itself, whose conversion would never end (NumPy walks every branch).
        raise InvalidInputError(
            f"{function} received {a_type(data)} nested more than {MAX_DEPTH} levels deep (a "
            "sequence that contains itself, or whose __getitem__ returns itself?); arrays "
            "have at most 64 dimensions, so pass rectangular nested lists of numbers"
        )
    items = [_host_array(item) if isinstance(item, torch.Tensor) else item for item in data]
    try:
        array = np.array(items)
    except ValueError as error:
        shapes = [shape_of(item) for item in items]
        if len(set(shapes)) > 1:
            raise InvalidInputError(_ragged(data, function, shapes)) from None
        raise _unreadable(data, function, error) from None
    except (TypeError, RuntimeError, OverflowError, KeyError, IndexError) as error:
        raise _unreadable(data, function, error) from None
    return checked_numbers(array, data, function)


def _host_array(tensor: torch.Tensor) -> npt.NDArray[Any]:
    check_tensor(tensor)
    host = tensor.detach().cpu().resolve_conj().resolve_neg()
    return share_tensor(host, from_torch_dtype(host.dtype))


def checked_numbers(
    array: npt.NDArray[Any], data: Sequence[Any], function: str
) -> npt.NDArray[Any]:
    """``array`` (made by ``np.array(data)``), checked: numeric, integers that fit int64."""
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
            f"{array.dtype}, which is not numeric; nested sequences must hold only numbers, "
            "arrays or tensors"
        )
    if array.dtype == np.uint64 and array.size and array.max() >= 2**63:
        raise InvalidInputError(
            f"the {type(data).__name__} holds integers above 2**63-1, which do not fit int64, "
            "the dtype Python ints become; pass an ndarray with dtype=np.uint64 instead"
        )
    if array.dtype.kind == "i" and array.dtype.itemsize < 8 and _has_python_int(data, array.ndim):
        array = array.astype(np.int64)
    return array


def _ragged(data: object, function: str, shapes: Sequence[tuple[int, ...]]) -> str:
    first = shapes[0]
    index, other = next((i, shape) for i, shape in enumerate(shapes) if shape != first)
    return (
        f"{function} cannot stack the {type(data).__name__}: element 0 has shape {first} and "
        f"element {index} has shape {other} (a ragged sequence); arrays are rectangular, so "
        "pad or crop the elements to one shape, or convert each one"
    )


def _unreadable(data: object, function: str, error: BaseException) -> InvalidInputError:
    return InvalidInputError(
        f"{function} could not turn the {type(data).__name__} into an array "
        f"({first_line(error)}); nested sequences must be rectangular, not "
        "self-referencing, and hold only numbers, arrays or tensors"
    )


_NOT_NESTING: Final = (str, bytes, bytearray, memoryview)


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
        items = reshape(np.array(data, dtype=object), -1)
    except (ValueError, TypeError, RuntimeError, OverflowError, KeyError, IndexError):
        return False
    return all(type(item) is int for item in items.tolist())


# --------------------------------------------------------------------------- #
# DLPack
# --------------------------------------------------------------------------- #

# NumPy 2 imports DLPack memory writable unless the exporter marks it read-only
# (DLPack 1.0); NumPy 1 marks every import read-only, which would force a copy.
_NUMPY_KEEPS_READ_ONLY_FLAG: Final = NUMPY_MAJOR >= 2
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
        device_type = int(data.__dlpack_device__()[0])
    except (BufferError, RuntimeError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise InvalidInputError(
            f"{function} could not read the {type(data).__name__}'s __dlpack_device__ "
            f"({first_line(error)}); it must return (device_type, device_id)"
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
        tensor = _torch_from_dlpack(data)
        if device_type in _KDL_HOST and tensor.device.type == "cpu":
            return share_tensor(tensor.detach(), from_torch_dtype(tensor.dtype), sealed=True)
        return tensor
    except (BufferError, RuntimeError, TypeError, ValueError, AssertionError) as error:
        raise InvalidInputError(
            f"{function} could not import the {type(data).__name__} through DLPack "
            f"({first_line(error)}); convert it to an ndarray or tensor first"
        ) from None


def _read_only_unless_flagged(data: Any) -> npt.NDArray[Any]:
    """NumPy 2's import of a kDLCPU producer: read-only unless a DLPack 1.0 capsule says not."""
    try:
        capsule = data.__dlpack__(max_version=(1, 0))
    except TypeError:  # a producer from before DLPack 1.0: no flag to read
        return seal(np.from_dlpack(data))
    if not _is_versioned_capsule(capsule):
        return seal(np.from_dlpack(_capsule(capsule)))
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
    # Typed Any: NumPy's stubs ask for a __dlpack__ that takes only stream=.
    return _Capsule(capsule)


def _is_versioned_capsule(capsule: object) -> bool:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    try:
        return bool(get_name(capsule) == b"dltensor_versioned")
    except (TypeError, ValueError, ctypes.ArgumentError):
        return False


# --------------------------------------------------------------------------- #
# __array__ and __array_interface__
# --------------------------------------------------------------------------- #


def _from_array_protocol(
    data: Any, function: str, copy: bool | None
) -> tuple[npt.NDArray[Any], str | None, bool]:
    if copy is False:
        array = _shared_array(data, function)
    else:
        try:
            array = np.asarray(data)
        except (TypeError, ValueError, RuntimeError) as error:
            raise InvalidInputError(
                f"{function} could not get an array from the {type(data).__name__} through "
                f"__array__ ({first_line(error)})"
            ) from None
    if array.dtype.kind not in "biufc" and array.dtype.kind != "V":
        raise InvalidInputError(_not_numeric(data, array, function))
    return array, None, False


def _shared_array(data: Any, function: str) -> npt.NDArray[Any]:
    """``__array__(copy=False)``, trusted only when two calls hand over the same memory.

    NumPy 2's protocol says ``copy=False`` shares or raises ``ValueError``; an
    ``__array__`` without the argument (TypeError) cannot promise to share, and
    one that ignores it returns new memory each time, which two calls show.
    """
    arrays: list[npt.NDArray[Any]] = []
    for _ in range(2):
        try:
            array = data.__array__(copy=False)
        except (TypeError, ValueError) as error:
            raise share_error(
                f"the {type(data).__name__}'s __array__ cannot hand over its memory without "
                f"copying (__array__(copy=False) raised {type(error).__name__}: "
                f"{first_line(error, 100)})"
            ) from None
        if not isinstance(array, np.ndarray):
            raise InvalidInputError(
                f"{function}: the {type(data).__name__}'s __array__ returned "
                f"{a_type(array)}, not an ndarray"
            )
        arrays.append(cast("npt.NDArray[Any]", array))
    first, second = arrays
    if first.size and not np.may_share_memory(first, second):
        raise share_error(
            f"the {type(data).__name__}'s __array__ returns new memory on every call, even "
            "with copy=False, so no result can share the object's memory"
        )
    return first


def _not_numeric(data: Any, array: npt.NDArray[Any], function: str) -> str:
    """The message for an ``__array__`` that gave no numeric array (a mixed DataFrame, say)."""
    name = type(data).__name__
    columns = getattr(data, "dtypes", None)
    items = getattr(columns, "items", None)
    if callable(items):
        odd = [
            f"{column!r} ({kind})" for column, kind in cast("Any", items)() if not _numeric(kind)
        ]
        if odd:
            return (
                f"{function} got an array of dtype {array.dtype} from the {name}, since not "
                f"every column is numeric: {', '.join(odd[:5])}"
                f"{' ...' if len(odd) > 5 else ''}; select the numeric columns "
                "(df.select_dtypes('number')), or convert them first "
                "(df.astype({...}) or df.to_numpy(dtype=np.float32, na_value=np.nan))"
            )
    return (
        f"{function} got {with_article(str(array.dtype))} array from the {name}'s __array__, "
        "which is not numeric; convert the data to numbers first (for a data frame, "
        "df.to_numpy(dtype=np.float32) or select its numeric columns)"
    )


def _numeric(kind: object) -> bool:
    try:
        return np.dtype(cast(Any, kind)).kind in "biufc"
    except TypeError:  # an extension dtype (category, nullable Int64, string...)
        return False


def _check_array_interface(data: object, function: str) -> None:
    """Refuse an ``__array_interface__`` NumPy would turn into a crash or a raw error."""
    interface = getattr(data, "__array_interface__", None)
    problem = None
    if not isinstance(interface, dict):
        problem = f"is {a_type(interface)}, not a dict"
    else:
        spec = cast("dict[str, Any]", interface)
        shape: object = spec.get("shape")
        pointer: object = spec.get("data")
        dimensions = shape if is_tuple(shape) else ()
        if not is_tuple(shape) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in dimensions
        ):
            problem = f"has shape {short_repr(shape, 40)}, not a tuple of non-negative ints"
        elif not isinstance(spec.get("typestr"), str):
            problem = f"has typestr {short_repr(spec.get('typestr'), 40)}, not a string"
        elif is_tuple(pointer):
            address: object = pointer[0] if pointer else None
            if not isinstance(address, int) or address < 0:
                problem = f"has data address {short_repr(address, 40)}, not a non-negative int"
            elif address == 0 and all(n > 0 for n in dimensions):
                problem = "points at address 0 (a null pointer) for non-empty data"
    if problem is not None:
        raise InvalidInputError(
            f"{function} received {a_type(data)} whose __array_interface__ {problem}; it does "
            "not describe readable memory, so nothing can be converted"
        )
