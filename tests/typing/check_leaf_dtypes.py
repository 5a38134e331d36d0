"""Type-checked, never run: per-leaf dtypes and the policy fields (contract section 3).

Checked by mypy and pyright. A ``dtype=`` mapping from keys or paths to dtypes or
policies is accepted by the tree functions and ``collate`` and changes no result
type; ``DtypePolicy`` takes every field in every dtype spelling. A batch whose leaf
type contains ``Any`` resolves to ``Any`` under mypy (see ``check_trees.py``), so the
batches here have precise leaf types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from typing_extensions import assert_type

import tensorbridge as tb

images: npt.NDArray[np.float32] = np.zeros((2, 3), dtype=np.float32)
labels: npt.NDArray[np.float32] = np.zeros(2, dtype=np.float32)
batch: dict[str, npt.NDArray[np.float32]] = {"image": images, "label": labels}
outputs: dict[str, torch.Tensor] = {"logits": torch.zeros(2)}
samples: list[dict[str, npt.NDArray[np.float32]]] = [batch, batch]

assert_type(tb.tree_to_tensor({"image": images, "label": labels}), dict[str, torch.Tensor])
assert_type(
    tb.tree_to_tensor({"image": images, "label": labels}, dtype={"image": torch.float32}),
    dict[str, torch.Tensor],
)
assert_type(tb.tree_to_tensor(batch, dtype={"image": torch.float32}), dict[str, torch.Tensor])
assert_type(
    tb.tree_to_tensor(batch, dtype={'["meta"]["depth"]': "float64", "image": tb.PRESERVE}),
    dict[str, torch.Tensor],
)
assert_type(tb.tree_to_tensor([images, labels], dtype={0: np.float16}), list[torch.Tensor])
assert_type(tb.tree_to_numpy(outputs, dtype={"logits": np.float64}), dict[str, npt.NDArray[Any]])
assert_type(
    tb.tree_to_numpy(outputs, dtype={"logits": tb.DtypePolicy(floating="float16")}),
    dict[str, npt.NDArray[Any]],
)
assert_type(tb.collate(samples, dtype={"image": torch.float32}), Any)
assert_type(tb.collate(samples, dtype={"image": tb.FLOAT32, "[0]": "int64"}), Any)

leaf_dtypes: Mapping[str, torch.dtype] = {"image": torch.float32}
assert_type(tb.collate(samples, dtype=leaf_dtypes), Any)
assert_type(tb.tree_to_tensor(batch, dtype=leaf_dtypes), dict[str, torch.Tensor])

assert_type(tb.DtypePolicy(floating="float32", unsigned=torch.float32), tb.DtypePolicy)
assert_type(
    tb.DtypePolicy(
        floating=np.float16,
        complex=np.dtype(np.complex64),
        signed="int32",
        unsigned=torch.float32,
        bool=None,
    ),
    tb.DtypePolicy,
)
assert_type(tb.to_tensor(images, dtype=tb.DtypePolicy(bool=torch.uint8)), torch.Tensor)
assert_type(tb.to_numpy(outputs["logits"], dtype=tb.DtypePolicy(signed=np.int32)), npt.NDArray[Any])
