"""Type-checked, never run: pins the public signatures' result types.

Checked by ``mypy --strict`` and ``pyright --strict`` (see .ci/run).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from typing_extensions import assert_type

import tensorbridge as tb

array = np.zeros(3)
tensor = torch.zeros(3)

assert_type(tb.to_tensor(array), torch.Tensor)
assert_type(tb.to_tensor([1.0, 2.0], dtype=torch.float16, device="cpu", copy=True), torch.Tensor)
assert_type(tb.to_tensor(array, dtype=tb.PRESERVE, casting="safe"), torch.Tensor)
assert_type(tb.to_tensor(array, dtype="bfloat16", device=torch.device("cpu")), torch.Tensor)

assert_type(tb.to_numpy(tensor), npt.NDArray[Any])
assert_type(tb.to_numpy(tensor, dtype=np.float32), npt.NDArray[np.float32])
assert_type(tb.to_numpy(tensor, dtype=np.dtype(np.int16)), npt.NDArray[np.int16])
assert_type(tb.to_numpy(tensor, dtype=torch.float16), npt.NDArray[Any])
assert_type(tb.to_numpy(tensor, dtype="float64", copy=False), npt.NDArray[Any])
assert_type(tb.to_numpy(tensor, dtype=tb.FLOAT32), npt.NDArray[Any])

assert_type(tb.shares_memory(array, tensor), bool)
assert_type(tb.DtypePolicy(floating=torch.float16, complex=None), tb.DtypePolicy)
assert_type(tb.__version__, str)

error: tb.TensorBridgeError = tb.ShareError("x")
value_error: ValueError = tb.ShareError("x")
type_error: TypeError = tb.CastingError("x")
unsupported: TypeError = tb.UnsupportedDtypeError("x")
