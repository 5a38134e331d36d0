"""Typed wrappers for the calls whose stubs (NumPy's, torch's) the type checkers cannot follow.

Each gap is explained once, here, and the rest of the package calls the
wrapper. Reasons that recur: torch's stubs leave ``from_numpy``'s parameter
and the constructors of ``Stream`` and ``Event`` unannotated; NumPy's stubs type
several ``ndarray`` methods with ``typing.Self``, which pyright cannot resolve
under ``pythonVersion = 3.10``; a few answers exist only as private torch APIs.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import torch
from typing_extensions import TypeIs

__all__ = [
    "NUMPY_MAJOR",
    "base_of",
    "dispatches_to_python",
    "dtype_of",
    "dtype_str",
    "from_numpy",
    "ignore_fp_errors",
    "in_functorch_transform",
    "is_list",
    "is_mapping",
    "is_masked",
    "is_ndarray",
    "is_numpy_scalar",
    "is_sequence",
    "is_tuple",
    "is_zerotensor",
    "native",
    "new_event",
    "new_stream",
    "real_part",
    "reshape",
    "restore_fp_errors",
    "shape_of",
    "shared_storage",
    "view",
]

#: torch's stubs leave the parameter of ``torch.from_numpy`` unannotated.
from_numpy: Final[Callable[[npt.NDArray[Any]], torch.Tensor]] = torch.from_numpy  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]

#: NumPy's major version (its ``__version__`` is typed as ``typing.LiteralString``).
NUMPY_MAJOR: Final = int(np.__version__.split(".")[0])  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]


def view(array: npt.NDArray[Any], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """``array.view(dtype)``: the same bytes read as another dtype."""
    viewer: Any = array
    return cast("npt.NDArray[Any]", viewer.view(dtype))


def base_of(array: npt.NDArray[Any]) -> object:
    """``array.base``: the object whose memory ``array`` views (None when it owns it)."""
    viewer: Any = array
    return cast(object, viewer.base)


def reshape(array: npt.NDArray[Any], shape: Sequence[int] | int) -> npt.NDArray[Any]:
    """``array.reshape(shape)``."""
    reshaper: Any = array
    return cast("npt.NDArray[Any]", reshaper.reshape(shape))


def native(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """``dtype`` in native byte order."""
    swapper: Any = dtype
    return cast("np.dtype[Any]", swapper.newbyteorder("="))


def dtype_str(dtype: np.dtype[Any]) -> str:
    """``dtype.str`` (``'>f4'``), for messages."""
    return str(dtype.str)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]


def real_part(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``array.real``: a view of the real parts of a complex array."""
    complex_array: Any = array
    return cast("npt.NDArray[Any]", complex_array.real)


def new_stream(device: torch.device) -> torch.cuda.Stream:
    """``torch.cuda.Stream(device)``."""
    make: Any = torch.cuda.Stream
    return cast(torch.cuda.Stream, make(device))


def new_event() -> torch.cuda.Event:
    """``torch.cuda.Event()``."""
    make: Any = torch.cuda.Event
    return cast(torch.cuda.Event, make())


def shared_storage(nbytes: int) -> torch.UntypedStorage:
    """New shared-memory storage, as ``default_collate`` allocates inside DataLoader workers."""
    make: Any = getattr(torch.UntypedStorage, "_new_shared")  # noqa: B009 (a private API)
    return cast(torch.UntypedStorage, make(nbytes))


def shape_of(value: object) -> tuple[int, ...]:
    """``np.shape(value)`` of anything array-like."""
    measure: Any = getattr(np, "shape")  # noqa: B009 (its overloads leave pyright types unknown)
    return tuple(measure(value))


# Type guards: isinstance narrows the generic classes below to "partially unknown"
# types for pyright (their type arguments), and casts after it are "redundant" to mypy.


def is_ndarray(value: object) -> TypeIs[npt.NDArray[Any]]:
    return isinstance(value, np.ndarray)


def dtype_of(value: object) -> np.dtype[Any]:
    """The dtype of an array or a NumPy scalar (its stubs leave a scalar's unknown)."""
    holder: Any = value
    return cast("np.dtype[Any]", holder.dtype)


def is_list(value: object) -> TypeIs[list[Any]]:
    """A list itself, not a subclass (what a DataLoader hands ``collate``)."""
    return type(value) is list


def is_numpy_scalar(value: object) -> TypeIs[np.generic[Any]]:
    return isinstance(value, np.generic)


def is_masked(value: object) -> TypeIs[np.ma.MaskedArray[Any, Any]]:
    return isinstance(value, np.ma.MaskedArray)


def is_mapping(value: object) -> TypeIs[Mapping[Any, Any]]:
    return isinstance(value, Mapping)


def is_sequence(value: object) -> TypeIs[Sequence[Any]]:
    return isinstance(value, Sequence)


def is_tuple(value: object) -> TypeIs[tuple[Any, ...]]:
    return isinstance(value, tuple)


def is_zerotensor(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ZeroTensor (``torch._efficientzerotensor``), which has no memory."""
    check: Any = tensor._is_zerotensor  # pyright: ignore[reportPrivateUsage]
    return bool(check())


_C: Any = torch._C  # pyright: ignore[reportPrivateUsage]


def dispatches_to_python(tensor: torch.Tensor) -> bool:
    """Whether a tensor subclass dispatches to Python (a FakeTensor, a wrapper subclass)."""
    try:
        return bool(_C._dispatch_keys(tensor).has(_C.DispatchKey.Python))
    except (AttributeError, RuntimeError, TypeError):  # pragma: no cover - private API moved
        return True


def in_functorch_transform(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ``torch.func`` wrapper (in ``vmap``, ``grad``, ``functionalize``)."""
    functorch = getattr(_C, "_functorch", None)
    if functorch is None:  # pragma: no cover - private API moved
        return False
    try:
        return bool(
            functorch.is_functorch_wrapped_tensor(tensor) or functorch.is_functionaltensor(tensor)
        )
    except (AttributeError, RuntimeError, TypeError):  # pragma: no cover - private API moved
        return False


def _fp_error_switches() -> tuple[Callable[[], object], Callable[[Any], object]]:
    """Two calls that turn NumPy's floating-point error reports off and back on, cheaply.

    ``np.errstate(all="ignore")`` costs about 0.9 us a use, three times a small
    cast; what it does underneath costs a tenth of that: NumPy 2 keeps the
    error state in a context variable, NumPy 1 in a per-thread error object.
    Both are private, so the public context manager is the fallback.
    """
    try:
        config = importlib.import_module("numpy._core._ufunc_config")
        variable: Any = getattr(config, "_extobj_contextvar")  # noqa: B009 (private)
        make: Any = getattr(importlib.import_module("numpy._core.umath"), "_make_extobj")  # noqa: B009
        return functools.partial(variable.set, make(all="ignore")), variable.reset
    except (ImportError, AttributeError, TypeError):
        pass
    umath_1: Any = getattr(np, "core", None)
    get_object = getattr(getattr(umath_1, "umath", None), "geterrobj", None)
    set_object = getattr(getattr(umath_1, "umath", None), "seterrobj", None)
    if get_object is not None and set_object is not None:

        def ignore_1() -> object:
            old = get_object()
            set_object([old[0], 0, old[2]])  # an error mask of 0: every flag ignored
            return old

        return ignore_1, set_object

    def enter() -> object:  # pragma: no cover - neither private API is there
        state = np.errstate(all="ignore")
        state.__enter__()
        return state

    def leave(state: Any) -> None:  # pragma: no cover
        state.__exit__(None, None, None)

    return enter, leave


#: ``token = ignore_fp_errors()`` ... ``restore_fp_errors(token)``: NumPy reports no
#: floating-point error in between (thread-local, so no global state changes).
ignore_fp_errors, restore_fp_errors = _fp_error_switches()
