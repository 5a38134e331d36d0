"""PyTorch's NumPy-interop tests, ported to tensorbridge with ``dtype=tb.PRESERVE``.

Each test names its original (pytorch/pytorch, test/test_numpy_interop.py,
class TestNumPyInterop) and keeps its assertions, with ``torch.from_numpy`` /
``Tensor.numpy()`` replaced by ``tb.to_tensor`` / ``tb.to_numpy``. Where the
contract deliberately differs (read-only memory is copied, not aliased;
``copy=False`` raises ``ShareError``; conjugate and grad tensors convert
instead of raising), a comment says so. CPU only; the device-generic
machinery is dropped, its substance kept.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np
import pytest
import torch

import tensorbridge as tb

P = tb.PRESERVE


def _castable(shape: int | tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        info = torch.finfo(dtype)
        low, high = max(info.min, -1e10), min(info.max, 1e10)
        return torch.empty(shape, dtype=torch.float64).uniform_(low, high).to(dtype)
    iinfo = torch.iinfo(dtype)
    low, high = max(iinfo.min, int(-1e10)), min(iinfo.max, int(1e10))
    return torch.empty(shape, dtype=torch.int64).random_(low, high).to(dtype)


def test_numpy_non_writeable():
    """test_numpy_non_writeable.

    Contract difference: torch.from_numpy warns and aliases read-only memory;
    tensorbridge never warns and copies it (copy=False raises ShareError).
    """
    arr = np.zeros(5)
    arr.flags["WRITEABLE"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = tb.to_tensor(arr, dtype=P)
    t.add_(1)
    assert arr.tolist() == [0.0] * 5
    with pytest.raises(tb.ShareError):
        tb.to_tensor(arr, dtype=P, copy=False)


def test_numpy_unresizable():
    """test_numpy_unresizable."""
    x = np.zeros((2, 2))
    y = tb.to_tensor(x, dtype=P)  # noqa: F841
    with pytest.raises(ValueError):
        x.resize((5, 5))

    z = torch.randn(5, 5)
    w = tb.to_numpy(z, dtype=P)
    with pytest.raises(RuntimeError):
        z.resize_(10, 10)
    with pytest.raises(ValueError):
        w.resize((10, 10))


@pytest.mark.parametrize(
    "dtp",
    [torch.uint8, torch.int8, torch.short, torch.int, torch.half, torch.float, torch.double,
     torch.long],
)  # fmt: skip
def test_to_numpy(dtp):
    """test_to_numpy."""
    sz = 10
    x = _castable(sz, dtp)
    y = tb.to_numpy(x, dtype=P)
    for i in range(sz):
        assert x[i].item() == y[i]

    xm = _castable(sz * 2, dtp)
    x = xm.narrow(0, sz - 1, sz)
    assert x.storage_offset() > 0
    y = tb.to_numpy(x, dtype=P)
    for i in range(sz):
        assert x[i].item() == y[i]

    sz1, sz2 = 3, 5

    def check2d(x: torch.Tensor, y: np.ndarray[Any, Any]) -> None:
        for i in range(sz1):
            for j in range(sz2):
                assert x[i][j].item() == y[i][j]

    x = torch.tensor([]).to(dtp)
    y = tb.to_numpy(x, dtype=P)
    assert y.size == 0

    x = _castable((sz1, sz2), dtp)
    y = tb.to_numpy(x, dtype=P)
    check2d(x, y)
    assert y.flags["C_CONTIGUOUS"]

    xm = _castable((sz1 * 2, sz2), dtp)
    x = xm.narrow(0, sz1 - 1, sz1)
    y = tb.to_numpy(x, dtype=P)
    assert x.storage_offset() > 0
    check2d(x, y)
    assert y.flags["C_CONTIGUOUS"]

    x = _castable((sz2, sz1), dtp).t()
    y = tb.to_numpy(x, dtype=P)
    check2d(x, y)
    assert not y.flags["C_CONTIGUOUS"]

    xm = _castable((sz2 * 2, sz1), dtp)
    x = xm.narrow(0, sz2 - 1, sz2).t()
    y = tb.to_numpy(x, dtype=P)
    assert x.storage_offset() > 0
    check2d(x, y)

    xm = _castable((sz2 * 2, sz1 * 2), dtp)
    x = xm.narrow(0, sz2 - 1, sz2).narrow(1, sz1 - 1, sz1).t()
    y = tb.to_numpy(x, dtype=P)
    assert x.storage_offset() > 0
    check2d(x, y)

    if dtp != torch.half:
        x = _castable((3, 4), dtp)
        y = tb.to_numpy(x, dtype=P)
        assert y.flags.writeable
        y[0][1] = 3
        assert x[0][1] == 3
        y = tb.to_numpy(x.t(), dtype=P)
        assert y.flags.writeable
        y[0][1] = 3
        assert x[0][1] == 3


def test_to_numpy_bool():
    """test_to_numpy_bool."""
    x = torch.tensor([True, False], dtype=torch.bool)
    y = tb.to_numpy(x, dtype=P)
    assert y.dtype == np.bool_
    for i in range(len(x)):
        assert x[i].item() == y[i]
    x = torch.tensor([True], dtype=torch.bool)
    y = tb.to_numpy(x, dtype=P)
    assert y.dtype == np.bool_
    assert x[0].item() == y[0]


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("conj", [False, True])
def test_to_numpy_force_argument(requires_grad, sparse, conj):
    """test_to_numpy_force_argument.

    Contract difference: Tensor.numpy() raises for grad and conjugate tensors
    unless force=True; to_numpy converts them (a read-only view for grad, a
    resolved copy for conj), i.e. it behaves like force=True, and a sparse
    tensor raises a TensorBridgeError (numpy(force=True) raises TypeError).
    """
    if sparse and requires_grad:
        return
    data = [[1 + 2j, -2 + 3j], [-1 - 2j, 3 - 2j]]
    x = torch.tensor(data, requires_grad=requires_grad)
    y = x
    if sparse:
        x = x.to_sparse()
    if conj:
        x = x.conj()
        y = x.resolve_conj()
    if sparse:
        with pytest.raises(tb.TensorBridgeError):
            tb.to_numpy(x, dtype=P)
        return
    assert np.array_equal(tb.to_numpy(x, dtype=P), y.detach().numpy(force=True))


@pytest.mark.parametrize(
    "dtype",
    [np.double, np.float64, np.float16, np.complex64, np.complex128, np.int64, np.int32,
     np.int16, np.int8, np.uint8, np.longlong, np.bool_],
)  # fmt: skip
def test_from_numpy(dtype):
    """test_from_numpy (the per-dtype part)."""
    array = np.array([1, 2, 3, 4], dtype=dtype)
    tensor_from_array = tb.to_tensor(array, dtype=P)
    for i in range(len(array)):
        assert tensor_from_array[i].item() == array[i]
    if dtype not in (np.complex64, np.complex128):
        array2 = array % 2
        tensor_from_array2 = tb.to_tensor(array2, dtype=P)
        for i in range(len(array2)):
            assert tensor_from_array2[i].item() == array2[i]


def test_from_numpy_layouts():
    """test_from_numpy (unsupported type, storage offset, strides, zero sizes).

    Contract difference: ill-sized strides, which torch.from_numpy refuses with
    ValueError, are copied under copy=None; copy=False raises ShareError (also a
    ValueError, so the original assertion still holds for it).
    """
    array = np.array(["foo", "bar"], dtype=np.dtype(np.str_))
    with pytest.raises(TypeError):
        tb.to_tensor(array, dtype=P)

    x = np.linspace(1, 125, 125)
    x.shape = (5, 5, 5)
    x = x[1]
    expected = torch.arange(1, 126, dtype=torch.float64).view(5, 5, 5)[1]
    assert torch.equal(tb.to_tensor(x, dtype=P), expected)

    x = np.linspace(1, 25, 25)
    x.shape = (5, 5)
    expected = torch.arange(1, 26, dtype=torch.float64).view(5, 5).t()
    assert torch.equal(tb.to_tensor(x.T, dtype=P), expected)

    x = np.linspace(1, 125, 125)
    x.shape = (5, 5, 5)
    x = x[:, 1]
    expected = torch.arange(1, 126, dtype=torch.float64).view(5, 5, 5)[:, 1]
    assert torch.equal(tb.to_tensor(x, dtype=P), expected)

    assert tb.to_tensor(np.zeros((0, 2)), dtype=P).shape == (0, 2)
    assert tb.to_tensor(np.zeros((2, 0)), dtype=P).shape == (2, 0)

    x = np.array([3.0, 5.0, 8.0])
    x = np.lib.stride_tricks.as_strided(x, shape=(2,), strides=(3,))
    with pytest.raises(ValueError):
        tb.to_tensor(x, dtype=P, copy=False)
    copied = tb.to_tensor(x, dtype=P)
    assert np.array_equal(copied.numpy(), x)


def test_from_numpy_no_leak_on_invalid_dtype():
    """test_from_numpy_no_leak_on_invalid_dtype."""
    import sys

    x = np.array("value".encode("ascii"))
    for _ in range(1000):
        with contextlib.suppress(TypeError):
            tb.to_tensor(x, dtype=P)
    assert sys.getrefcount(x) == 2


def test_ctor_with_invalid_numpy_array_sequence():
    """test_ctor_with_invalid_numpy_array_sequence.

    Contract difference: the errors are TensorBridgeErrors (also ValueError or
    TypeError), not torch's "expected sequence of length" messages.
    """
    rng = np.random.default_rng(0)
    bad = [
        [rng.random((3, 3)), rng.random((3, 0))],
        [[rng.random((3, 3)), rng.random((3, 2))]],
        [
            [rng.random((3, 3)), rng.random((3, 3))],
            [rng.random((3, 3)), rng.random((3, 2))],
        ],
        [[rng.random(3), rng.random()]],
        [[1, 2, 3], rng.random(2)],
    ]
    for data in bad:
        with pytest.raises(tb.TensorBridgeError) as info:
            tb.to_tensor(data, dtype=P)
        assert isinstance(info.value, (TypeError, ValueError))


@pytest.mark.parametrize(
    "dtype", [np.double, np.float64, np.float16, np.int64, np.int32, np.int16, np.uint8, np.bool_]
)
def test_ctor_with_numpy_scalar_ctor(dtype):
    """test_ctor_with_numpy_scalar_ctor."""
    assert dtype(42) == tb.to_tensor(dtype(42), dtype=P).item()
