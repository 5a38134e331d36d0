"""Type-checked, never run: pins ``convert_like``'s result type to its reference's kind.

Checked by ``mypy --strict`` and ``pyright --strict`` (see .ci/run).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch
from typing_extensions import assert_type

import tensorbridge as tb

array = np.zeros(3)
tensor = torch.zeros(3)
parameter = torch.nn.Parameter(torch.zeros(3))

assert_type(tb.convert_like(array, tensor, dtype=tb.PRESERVE), torch.Tensor)
assert_type(tb.convert_like(tensor, array, dtype=tb.FLOAT32), npt.NDArray[Any])
assert_type(tb.convert_like([1.0], parameter, dtype=torch.float16, copy=True), torch.Tensor)
assert_type(tb.convert_like(tensor, array, dtype=np.float32, casting="safe"), npt.NDArray[Any])


def either_kind(x: torch.Tensor | npt.NDArray[Any]) -> None:
    assert_type(tb.convert_like(array, x, dtype=tb.PRESERVE), torch.Tensor | npt.NDArray[Any])


assert_type(tb.convert_like(array, tensor, dtype=tensor.dtype), torch.Tensor)
assert_type(tb.convert_like(tensor, array, dtype=array.dtype), npt.NDArray[Any])

invalid_input: TypeError = tb.InvalidInputError("x")
invalid_argument: ValueError = tb.InvalidArgumentError("x")
base: tb.TensorBridgeError = tb.InvalidArgumentError("x")


# The pattern docs/getting-started.md shows: a function typed for either kind.
Array = TypeVar("Array", torch.Tensor, npt.NDArray[Any])


def standardize(x: Array) -> Array:
    a = tb.to_numpy(x, dtype=tb.PRESERVE)
    result = (a - a.mean(axis=0)) / a.std(axis=0)
    return tb.convert_like(result, x, dtype=tb.PRESERVE)


assert_type(standardize(array), npt.NDArray[Any])
assert_type(standardize(tensor), torch.Tensor)
