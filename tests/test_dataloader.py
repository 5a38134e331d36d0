"""``tensorbridge.collate`` as the ``collate_fn`` of a real ``DataLoader`` with workers.

Every batch is checked, values and dtypes, against a reference built with NumPy from
the same samples; inside a worker the collated tensors are in shared memory, as
``default_collate`` puts them.
"""

from __future__ import annotations

import functools
import multiprocessing

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, get_worker_info

import tensorbridge as tb

pytestmark = [
    # Python 3.12+ warns when forking a process that has threads (torch may have some);
    # the DataLoader's worker start is the fork in question.
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
]

BATCH_SIZE = 4
N_SAMPLES = 10  # the last batch is short


def _sample(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {
        "image": rng.integers(0, 256, (3, 8, 8), dtype=np.uint8),
        "features": rng.standard_normal(5),  # float64
        "half": rng.standard_normal((2, 2)).astype(np.float16),
        "mask": rng.random(4) > 0.5,
        "count": np.int64(100 + i),
        "label": i % 3,
        "weight": i / 7,
        "name": f"sample-{i}",
        "pair": (rng.integers(-5, 5, 3).astype(np.int32), np.float64(i / 3)),
    }


# a plain list is a map-style dataset, and it pickles under any start method
DATASET = [_sample(i) for i in range(N_SAMPLES)]


def _reference(indices: list[int], preserve: bool) -> dict:
    """The expected batch, built with NumPy from the samples."""
    samples = [DATASET[i] for i in indices]

    def floats(a: np.ndarray) -> np.ndarray:
        return a if preserve else a.astype(np.float32)

    return {
        "image": np.stack([s["image"] for s in samples]),
        "features": floats(np.stack([s["features"] for s in samples])),
        "half": floats(np.stack([s["half"] for s in samples])),
        "mask": np.stack([s["mask"] for s in samples]),
        "count": np.array([s["count"] for s in samples], dtype=np.int64),
        "label": np.array([s["label"] for s in samples], dtype=np.int64),
        "weight": floats(np.array([s["weight"] for s in samples], dtype=np.float64)),
        "name": [s["name"] for s in samples],
        "pair": [
            np.stack([s["pair"][0] for s in samples]),
            floats(np.array([s["pair"][1] for s in samples], dtype=np.float64)),
        ],
    }


def _assert_leaf(got, expected: np.ndarray, where: str) -> None:
    assert isinstance(got, torch.Tensor), where
    assert got.dtype == torch.from_numpy(expected).dtype, (where, got.dtype, expected.dtype)
    assert tuple(got.shape) == expected.shape, (where, tuple(got.shape), expected.shape)
    np.testing.assert_array_equal(got.numpy(), expected, err_msg=where)


def _assert_batch(batch: dict, expected: dict, where: str) -> None:
    assert type(batch) is dict
    assert list(batch) == list(expected)
    for key in ("image", "features", "half", "mask", "count", "label", "weight"):
        _assert_leaf(batch[key], expected[key], f"{where}[{key!r}]")
    assert list(batch["name"]) == expected["name"]
    assert isinstance(batch["pair"], (list, tuple))
    assert len(batch["pair"]) == 2
    _assert_leaf(batch["pair"][0], expected["pair"][0], f"{where}['pair'][0]")
    _assert_leaf(batch["pair"][1], expected["pair"][1], f"{where}['pair'][1]")


def _batches_of_indices() -> list[list[int]]:
    return [
        list(range(start, min(start + BATCH_SIZE, N_SAMPLES)))
        for start in range(0, N_SAMPLES, BATCH_SIZE)
    ]


@pytest.mark.parametrize("preserve", [False, True], ids=["FLOAT32", "PRESERVE"])
def test_dataloader_with_two_workers_matches_numpy_reference(preserve):
    collate_fn = functools.partial(tb.collate, dtype=tb.PRESERVE) if preserve else tb.collate
    loader = DataLoader(
        DATASET,
        batch_size=BATCH_SIZE,
        shuffle=False,
        num_workers=2,
        collate_fn=collate_fn,
        timeout=120,
    )
    batches = list(loader)
    expected_indices = _batches_of_indices()
    assert len(batches) == len(expected_indices)
    for n, (batch, indices) in enumerate(zip(batches, expected_indices, strict=True)):
        _assert_batch(batch, _reference(indices, preserve), f"batch {n}")


#: the leaves stacked from ndarrays (Python numbers collate as default_collate collates
#: them, with torch.tensor, which does not use shared memory either)
_ARRAY_LEAVES = ("image", "features", "half", "mask")


def _collate_and_report(samples):
    """Runs inside the worker: collate, then record where the array leaves live."""
    batch = tb.collate(samples)
    shared = {k: batch[k].is_shared() for k in _ARRAY_LEAVES}
    shared["pair[0]"] = batch["pair"][0].is_shared()
    return batch, get_worker_info() is not None, shared


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_worker_output_is_allocated_in_shared_memory():
    # fork, so that the collate_fn defined in this test module reaches the workers
    loader = DataLoader(
        DATASET,
        batch_size=BATCH_SIZE,
        num_workers=2,
        collate_fn=_collate_and_report,
        multiprocessing_context="fork",
        timeout=120,
    )
    seen = 0
    for (batch, in_worker, shared), indices in zip(loader, _batches_of_indices(), strict=True):
        assert in_worker
        assert all(shared.values()), shared
        _assert_batch(batch, _reference(indices, preserve=False), f"indices {indices}")
        seen += 1
    assert seen == len(_batches_of_indices())


def test_dataloader_without_workers_matches_numpy_reference():
    loader = DataLoader(DATASET, batch_size=BATCH_SIZE, num_workers=0, collate_fn=tb.collate)
    for batch, indices in zip(loader, _batches_of_indices(), strict=True):
        _assert_batch(batch, _reference(indices, preserve=False), f"indices {indices}")
