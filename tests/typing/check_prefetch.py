"""Type-checked, never run: ``prefetch`` yields the batch type ``tree_to_tensor`` gives.

Checked by mypy and pyright. A ``DataLoader`` is typed by its samples, and its
iterator by ``Any``; a loader of dict samples yields dict batches (the default
collate and ``tb.collate`` keep a mapping a mapping), so its overload comes first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Dataset
from typing_extensions import assert_type

import tensorbridge as tb
from tensorbridge._prefetch import Prefetcher


class Images(Dataset[dict[str, torch.Tensor]]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": torch.zeros(3), "label": torch.tensor(index)}


loader = DataLoader(Images(), batch_size=2)
assert_type(tb.prefetch(loader, device="cpu"), Prefetcher[dict[str, torch.Tensor]])
for batch in tb.prefetch(loader, device="cpu", dtype=torch.float16, depth=3):
    assert_type(batch, dict[str, torch.Tensor])

dict_batches: list[dict[str, npt.NDArray[np.uint8]]] = [{"image": np.zeros(3, dtype=np.uint8)}]
assert_type(next(iter(tb.prefetch(dict_batches, device="cpu"))), dict[str, torch.Tensor])


def tensor_batches() -> Iterator[torch.Tensor]:
    yield torch.zeros(3)


assert_type(next(iter(tb.prefetch(tensor_batches(), device=None))), torch.Tensor)

list_batches: list[list[torch.Tensor]] = [[torch.zeros(3)]]
assert_type(next(iter(tb.prefetch(list_batches, device="cpu"))), list[torch.Tensor])

tuple_batches: list[tuple[torch.Tensor, ...]] = [(torch.zeros(3), torch.ones(3))]
assert_type(
    next(iter(tb.prefetch(tuple_batches, device="cpu", pin_memory=False))),
    tuple[torch.Tensor, ...],
)

mixed: list[dict[str, object]] = [{"image": np.zeros(3), "name": "a"}]
assert_type(next(iter(tb.prefetch(mixed, device="cpu", casting="safe"))), Any)
assert_type(len(tb.prefetch(mixed, device="cpu")), int)
