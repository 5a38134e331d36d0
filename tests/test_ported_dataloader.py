"""PyTorch's own ``default_collate``/``default_convert`` tests, run against tensorbridge.

Ported from pytorch test/test_dataloader.py (contract section 9: those tests, with the
dtype policy set to ``PRESERVE``, are the yardstick). Where PyTorch calls
``default_collate`` these call ``tb.collate(..., dtype=tb.PRESERVE)``; where it calls
``default_convert``, ``tb.tree_to_tensor(..., dtype=tb.PRESERVE)``. The assertions are
PyTorch's; a deliberate difference from it is a comment at the line concerned.
"""

from __future__ import annotations

import functools
import math
import tempfile
from collections import namedtuple
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torch.utils.data import _utils as data_utils

import tensorbridge as tb

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
]

collate = functools.partial(tb.collate, dtype=tb.PRESERVE)
TEST_CUDA = torch.cuda.is_available()


class CustomList(list):  # type: ignore[type-arg]
    pass


class CustomDict(dict):  # type: ignore[type-arg]
    pass


def _assert_equal(got: Any, expected: Any) -> None:
    """What ``TestCase.assertEqual`` checks for the values these tests compare."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            _assert_equal(g, e)
    elif isinstance(expected, dict):
        assert set(got) == set(expected)
        for key in expected:
            _assert_equal(got[key], expected[key])
    else:
        assert got == expected


# ---------------------------------------------------------------------------
# TestDataLoader: default_convert
# ---------------------------------------------------------------------------


def test_default_convert_mapping_keep_type():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_convert_mapping_keep_type."""  # noqa: E501
    data = CustomDict({"a": 1, "b": 2})
    converted = tb.tree_to_tensor(data, dtype=tb.PRESERVE)

    assert converted == data
    assert type(converted) is CustomDict  # added: the name of the test says so


def test_default_convert_sequence_keep_type():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_convert_sequence_keep_type."""  # noqa: E501
    data = CustomList([1, 2, 3])
    converted = tb.tree_to_tensor(data, dtype=tb.PRESERVE)

    assert converted == data
    assert type(converted) is CustomList  # added: the name of the test says so


def test_default_convert_sequence_dont_keep_type():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_convert_sequence_dont_keep_type."""  # noqa: E501
    data = range(2)
    converted = tb.tree_to_tensor(data, dtype=tb.PRESERVE)

    assert converted == [0, 1]


# ---------------------------------------------------------------------------
# TestDataLoader: default_collate
# ---------------------------------------------------------------------------


def test_default_collate_dtype():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_collate_dtype."""
    arr: list[Any] = [1, 2, -1]
    collated = collate(arr)
    _assert_equal(collated, torch.tensor(arr))
    assert collated.dtype == torch.int64

    arr = [1.1, 2.3, -0.9]
    collated = collate(arr)
    _assert_equal(collated, torch.tensor(arr, dtype=torch.float64))

    arr = [True, False]
    collated = collate(arr)
    _assert_equal(collated, torch.tensor(arr))
    assert collated.dtype == torch.bool

    # Should be a no-op
    arr = ["a", "b", "c"]
    assert arr == collate(arr)


def test_default_collate_mapping_keep_type():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_collate_mapping_keep_type."""  # noqa: E501
    batch = [CustomDict({"a": 1, "b": 2}), CustomDict({"a": 3, "b": 4})]
    collated = collate(batch)

    expected = CustomDict({"a": torch.tensor([1, 3]), "b": torch.tensor([2, 4])})
    _assert_equal(collated, expected)
    assert type(collated) is CustomDict  # added: what assertEqual checks for mappings


def test_default_collate_sequence_keep_type():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_collate_sequence_keep_type."""  # noqa: E501
    batch = [CustomList([1, 2, 3]), CustomList([4, 5, 6])]
    collated = collate(batch)

    expected = CustomList(
        [
            torch.tensor([1, 4]),
            torch.tensor([2, 5]),
            torch.tensor([3, 6]),
        ]
    )
    _assert_equal(collated, expected)
    assert type(collated) is CustomList  # added: the name of the test says so


def test_default_collate_sequence_dont_keep_type():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_collate_sequence_dont_keep_type."""  # noqa: E501
    batch = [range(2), range(2)]
    collated = collate(batch)

    _assert_equal(collated, [torch.tensor([0, 0]), torch.tensor([1, 1])])


def test_default_collate_bad_numpy_types():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_collate_bad_numpy_types."""  # noqa: E501
    # Should be a no-op. (default_collate hands back the very array; collate gives
    # the list of its strings, as it does for every batch of strings.)
    arr = np.array(["a", "b", "c"])
    assert list(arr) == collate(arr)

    # PyTorch raises TypeError; tensorbridge's errors here are TypeErrors too.
    arr = np.array([[["a", "b", "c"]]])
    with pytest.raises(TypeError):
        collate(arr)

    arr = np.array([object(), object(), object()])
    with pytest.raises(TypeError):
        collate(arr)

    arr = np.array([[[object(), object(), object()]]])
    with pytest.raises(TypeError):
        collate(arr)


def test_default_collate_numpy_memmap():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_collate_numpy_memmap."""  # noqa: E501
    with tempfile.TemporaryFile() as f:
        arr = np.array([[0, 1], [2, 3], [4, 5], [6, 7]])
        arr_memmap = np.memmap(f, dtype=arr.dtype, mode="w+", shape=arr.shape)
        arr_memmap[:] = arr[:]
        arr_new = np.memmap(f, dtype=arr.dtype, mode="r", shape=arr.shape)
        tensor = collate(list(arr_new))

    assert (tensor == tensor.new_tensor([[0, 1], [2, 3], [4, 5], [6, 7]])).all().item()


def test_default_collate_bad_sequence_type():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_collate_bad_sequence_type."""  # noqa: E501
    batch = [["X"], ["X", "X"]]
    # PyTorch raises RuntimeError; contract 8: a TensorBridgeError that is a ValueError.
    with pytest.raises(tb.TensorBridgeError):
        collate(batch)
    with pytest.raises(ValueError):
        collate(batch[::-1])


def test_default_collate_shared_tensor():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_default_collate_shared_tensor."""  # noqa: E501
    t_in = torch.zeros(1)
    n_in = np.zeros(1)

    assert t_in.is_shared() is False

    assert collate([t_in]).is_shared() is False
    assert collate([n_in]).is_shared() is False

    # FIXME (PyTorch's): the hack that makes collate believe that it is in a worker
    # process (it tests `get_worker_info() is not None`), even though it is not.
    old = data_utils.worker._worker_info
    try:
        data_utils.worker._worker_info = "x"
        assert collate([t_in]).is_shared() is True
        assert collate([n_in]).is_shared() is True
    finally:
        data_utils.worker._worker_info = old


# ---------------------------------------------------------------------------
# TestDataLoader: loaders over TensorDataset (0-d labels), numpy samples and scalars
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tensor_dataset() -> tuple[torch.Tensor, torch.Tensor, TensorDataset]:
    torch.manual_seed(0)
    data = torch.randn(100, 2, 3, 5)
    labels = torch.randperm(50).repeat(2)
    return data, labels, TensorDataset(data, labels)


def _test_sequential(loader: DataLoader[Any], data: torch.Tensor, labels: torch.Tensor) -> None:
    batch_size = loader.batch_size
    assert batch_size is not None
    i = -1
    for i, (sample, target) in enumerate(loader):
        idx = i * batch_size
        _assert_equal(sample, data[idx : idx + batch_size])
        _assert_equal(target, labels[idx : idx + batch_size])
    assert i == math.floor((len(data) - 1) / batch_size)


def test_sequential_batch(tensor_dataset):
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_sequential_batch."""
    data, labels, dataset = tensor_dataset
    _test_sequential(DataLoader(dataset, collate_fn=collate), data, labels)
    _test_sequential(DataLoader(dataset, batch_size=2, collate_fn=collate), data, labels)


def test_seqential_batch_workers(tensor_dataset):
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_seqential_batch_workers."""
    data, labels, dataset = tensor_dataset
    # 2 workers, not PyTorch's 4: the test machines have two cores.
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate, timeout=120)
    _test_sequential(loader, data, labels)


class _NumpyDataset(Dataset[Any]):
    def __getitem__(self, i: int) -> np.ndarray:
        return np.ones((2, 3, 4)) * i

    def __len__(self) -> int:
        return 1000


def test_numpy():
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_numpy."""
    loader = DataLoader(_NumpyDataset(), batch_size=12, collate_fn=collate)
    batch = next(iter(loader))
    assert isinstance(batch, torch.DoubleTensor)
    assert batch.size() == torch.Size([12, 2, 3, 4])


class _ScalarDataset(Dataset[Any]):
    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype

    def __getitem__(self, i: int) -> Any:
        return self.dtype()

    def __len__(self) -> int:
        return 4


@pytest.mark.parametrize(
    ("dt", "tt"),
    [
        (np.float64, torch.DoubleTensor),
        (np.float32, torch.FloatTensor),
        (np.float16, torch.HalfTensor),
        (np.int64, torch.LongTensor),
        (np.int32, torch.IntTensor),
        (np.int16, torch.ShortTensor),
        (np.int8, torch.CharTensor),
        (np.uint8, torch.ByteTensor),
    ],
)
def test_numpy_scalars(dt, tt):
    """Ported from pytorch test/test_dataloader.py::TestDataLoader::test_numpy_scalars."""
    dset = _ScalarDataset(dt)
    loader = DataLoader(dset, batch_size=2, collate_fn=collate)
    batch = next(iter(loader))
    assert isinstance(batch, tt)


# ---------------------------------------------------------------------------
# TestDictDataLoader, TestNamedTupleDataLoader, TestStringDataLoader
# ---------------------------------------------------------------------------


class DictDataset(Dataset[Any]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, ndx: int) -> dict[str, Any]:
        return {
            "a_tensor": torch.empty(4, 2).fill_(ndx),
            "another_dict": {
                "a_number": ndx,
            },
        }


@pytest.mark.parametrize("persistent_workers", [False, True])
def test_dict_sequential_batch(persistent_workers):
    """Ported from pytorch test/test_dataloader.py::TestDictDataLoader::test_sequential_batch."""
    dataset = DictDataset()
    if persistent_workers:
        loader = DataLoader(
            dataset,
            batch_size=2,
            shuffle=False,
            persistent_workers=persistent_workers,
            num_workers=1,
            collate_fn=collate,
            timeout=120,
        )
    else:
        loader = DataLoader(
            dataset,
            batch_size=2,
            shuffle=False,
            persistent_workers=persistent_workers,
            collate_fn=collate,
        )
    batch_size = loader.batch_size
    assert batch_size is not None
    for i, sample in enumerate(loader):
        idx = i * batch_size
        assert set(sample.keys()) == {"a_tensor", "another_dict"}
        assert set(sample["another_dict"].keys()) == {"a_number"}

        t = sample["a_tensor"]
        assert t.size() == torch.Size([batch_size, 4, 2])
        assert (t[0] == idx).all()
        assert (t[1] == idx + 1).all()

        n = sample["another_dict"]["a_number"]
        assert n.size() == torch.Size([batch_size])
        assert n[0] == idx
        assert n[1] == idx + 1


@pytest.mark.cuda
def test_dict_pin_memory():
    """Ported from pytorch test/test_dataloader.py::TestDictDataLoader::test_pin_memory."""
    loader = DataLoader(DictDataset(), batch_size=2, pin_memory=True, collate_fn=collate)
    for sample in loader:
        assert sample["a_tensor"].is_pinned()
        assert sample["another_dict"]["a_number"].is_pinned()


class NamedTupleDataset(Dataset[Any]):
    Batch = namedtuple("Batch", ["data", "label", "random_tensor"])
    Data = namedtuple("Data", ["positive", "negative"])

    def __len__(self) -> int:
        return 4

    def __getitem__(self, ndx: int) -> Any:
        return self.Batch(
            data=self.Data(positive=ndx, negative=-ndx),
            label=str(ndx),
            random_tensor=torch.randn(3),
        )


def test_dataloader_with_namedtuple():
    """Ported from pytorch test/test_dataloader.py::TestNamedTupleDataLoader::test_dataloader_with_namedtuple."""  # noqa: E501
    # auto-collation (the part that calls the collate_fn; the non-collating half
    # of the original, batch_size=None, never reaches it)
    loader = DataLoader(NamedTupleDataset(), batch_size=2, pin_memory=TEST_CUDA, collate_fn=collate)
    for batch in loader:
        assert isinstance(batch, NamedTupleDataset.Batch)
        assert batch.random_tensor.is_pinned() == TEST_CUDA
        assert isinstance(batch.data, NamedTupleDataset.Data)
        assert isinstance(batch.data.positive, torch.Tensor)
        assert batch.data.positive.is_pinned() == TEST_CUDA


class StringDataset(Dataset[Any]):
    def __init__(self) -> None:
        self.s = "12345"

    def __len__(self) -> int:
        return len(self.s)

    def __getitem__(self, ndx: int) -> tuple[str, int]:
        return (self.s[ndx], ndx)


@pytest.mark.cuda
def test_string_shuffle_pin_memory():
    """Ported from pytorch test/test_dataloader.py::TestStringDataLoader::test_shuffle_pin_memory."""  # noqa: E501
    # 2 workers, not PyTorch's 4: the test machines have two cores.
    loader = DataLoader(
        StringDataset(),
        batch_size=2,
        shuffle=True,
        num_workers=2,
        pin_memory=True,
        collate_fn=collate,
        timeout=120,
    )
    for s, n in loader:
        assert isinstance(s[0], str)
        assert n.is_pinned()
