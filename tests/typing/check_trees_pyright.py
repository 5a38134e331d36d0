"""Type-checked by pyright only (mypy answers Any here; see check_trees.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from typing_extensions import assert_type

import tensorbridge as tb

batch: dict[str, npt.NDArray[Any]] = {"image": np.zeros(3), "label": np.zeros(3, dtype=np.int64)}

assert_type(tb.tree_to_tensor(batch), dict[str, torch.Tensor])
assert_type(tb.tree_to_numpy(batch), dict[str, npt.NDArray[Any]])
