"""Type-checked, never run: the tree functions keep common container types.

Checked by mypy and pyright. A container whose element type contains ``Any``
(``dict[str, NDArray[Any]]``) resolves to ``Any`` under mypy, because mypy
answers ``Any`` when an argument containing ``Any`` matches several overloads;
that case is pinned for pyright alone in ``check_trees_pyright.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from typing_extensions import assert_type

import tensorbridge as tb

images: dict[str, npt.NDArray[np.float32]] = {"image": np.zeros(3, dtype=np.float32)}
tensors: list[torch.Tensor] = [torch.zeros(3)]
pair: tuple[torch.Tensor, ...] = (torch.zeros(3), torch.ones(3))

assert_type(tb.tree_to_tensor(images), dict[str, torch.Tensor])
assert_type(tb.tree_to_tensor(images, device="cpu", non_blocking=True), dict[str, torch.Tensor])
assert_type(tb.tree_to_tensor(np.zeros(3)), torch.Tensor)
assert_type(tb.tree_to_tensor(tensors), list[torch.Tensor])
assert_type(tb.tree_to_numpy(tensors), list[npt.NDArray[Any]])
assert_type(tb.tree_to_numpy(pair), tuple[npt.NDArray[Any], ...])
assert_type(tb.tree_to_numpy({"logits": torch.zeros(2)}), dict[str, npt.NDArray[Any]])
assert_type(tb.collate([np.zeros(3)]), Any)
