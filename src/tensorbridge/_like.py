"""``convert_like``: give a result back as the kind of array the caller passed in.

A function that accepts NumPy arrays and torch tensors alike converts its input
once, computes, and returns its result as the same kind it was given (and, for
a tensor, on the same device). The dtype policy stays the caller's choice: it is
a required argument, so the call says whether the result keeps its dtype.
"""

from __future__ import annotations

from typing import Any, overload

import numpy as np
import numpy.typing as npt
import torch

from ._convert import to_numpy, to_tensor
from ._dtypes import Casting, DTypeLike, DtypePolicy
from ._errors import InvalidInputError

__all__ = ["convert_like"]


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
        f"convert_like: reference is a {kind.__module__}.{kind.__qualname__}, not a "
        "torch.Tensor or an np.ndarray; pass the array or tensor whose kind the result "
        "should take, or call to_tensor / to_numpy directly"
    )
