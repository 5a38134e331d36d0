"""Inputs other than one plain array: sequences of arrays, ``__array__`` objects, views.

Contract section 8: a list or tuple of equal-shaped arrays or tensors given to
``to_tensor`` or ``to_numpy`` is stacked, as ``np.array`` and ``torch.as_tensor``
stack it; ragged ones raise a message about their shapes. Section 3's dtype
policy applies to the stacked result, and section 5 makes it new memory
(``copy=False`` raises ``ShareError``).

Section 6: ``copy=False`` shares or raises; an ``__array__`` that can only copy
raises ``ShareError`` rather than returning memory that is not shared, and one
that hands over a view of its memory is shared.

Section 5, rule 6: strides of size-1 dimensions address nothing and do not
count, so such views share.

Expected values come from NumPy and torch directly, never from tensorbridge.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb

as_strided = np.lib.stride_tricks.as_strided

# ---------------------------------------------------------------------------
# section 8: sequences of arrays and tensors are stacked
# ---------------------------------------------------------------------------

SEQUENCE_TYPES = [list, tuple]


def _stacked_numpy(items: list[Any]) -> np.ndarray:
    """What NumPy makes of the sequence (tensors through ``.numpy()``)."""
    return np.stack([i.numpy() if isinstance(i, torch.Tensor) else np.asarray(i) for i in items])


ARRAY_SEQUENCES = {
    "0-d float64 arrays": [np.array(1.0), np.array(2.0)],
    "1-d float64 arrays": [np.ones(2), np.arange(2.0)],
    "2-d float32 arrays": [
        np.full((2, 3), 1.5, np.float32),
        np.arange(6, dtype=np.float32).reshape(2, 3),
    ],
    "1-d int64 arrays": [np.arange(3), np.arange(3, 6)],
    "1-d uint8 arrays": [np.arange(4, dtype=np.uint8), np.full(4, 255, np.uint8)],
    "0-d bool arrays": [np.array(True), np.array(False)],
    "three 1-d float16 arrays": [
        np.ones(2, np.float16),
        np.zeros(2, np.float16),
        np.ones(2, np.float16),
    ],
}

TENSOR_SEQUENCES = {
    "0-d float32 tensors": [torch.tensor(1.5), torch.tensor(-2.5)],
    "1-d float32 tensors": [torch.ones(2), torch.arange(2.0)],
    "1-d float64 tensors": [
        torch.ones(3, dtype=torch.float64),
        torch.arange(3.0, dtype=torch.float64),
    ],
    "0-d int64 tensors": [torch.tensor(1), torch.tensor(7)],
    "2-d int32 tensors": [
        torch.ones(2, 2, dtype=torch.int32),
        torch.zeros(2, 2, dtype=torch.int32),
    ],
}


@pytest.mark.parametrize("kind", SEQUENCE_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("name", list(ARRAY_SEQUENCES))
def test_to_tensor_stacks_a_sequence_of_equal_shaped_arrays(name: str, kind: type) -> None:
    items = ARRAY_SEQUENCES[name]
    stacked = np.stack(items)
    expected_default = torch.from_numpy(
        np.array(stacked, dtype=S.default_policy_dtype(stacked.dtype))
    )

    result = tb.to_tensor(kind(items))
    assert isinstance(result, torch.Tensor)
    assert result.dtype == expected_default.dtype
    assert torch.equal(result, expected_default)

    preserved = tb.to_tensor(kind(items), dtype=tb.PRESERVE)
    assert preserved.dtype == torch.as_tensor(stacked).dtype
    assert torch.equal(preserved, torch.as_tensor(stacked))


@pytest.mark.parametrize("kind", SEQUENCE_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("name", list(TENSOR_SEQUENCES))
def test_to_numpy_stacks_a_sequence_of_equal_shaped_tensors(name: str, kind: type) -> None:
    items = TENSOR_SEQUENCES[name]
    stacked = _stacked_numpy(items)

    result = tb.to_numpy(kind(items))
    assert isinstance(result, np.ndarray)
    assert result.dtype == S.default_policy_dtype(stacked.dtype)
    np.testing.assert_array_equal(result, stacked.astype(S.default_policy_dtype(stacked.dtype)))

    preserved = tb.to_numpy(kind(items), dtype=tb.PRESERVE)
    assert preserved.dtype == stacked.dtype
    np.testing.assert_array_equal(preserved, stacked)


@pytest.mark.parametrize("kind", SEQUENCE_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("name", list(TENSOR_SEQUENCES))
def test_to_tensor_stacks_a_sequence_of_equal_shaped_tensors(name: str, kind: type) -> None:
    items = TENSOR_SEQUENCES[name]
    expected = torch.stack(items)
    result = tb.to_tensor(kind(items), dtype=tb.PRESERVE)
    assert result.dtype == expected.dtype
    assert torch.equal(result, expected)


@pytest.mark.parametrize("kind", SEQUENCE_TYPES, ids=lambda k: k.__name__)
def test_to_numpy_stacks_a_sequence_of_equal_shaped_arrays(kind: type) -> None:
    items = [np.arange(3.0), np.ones(3)]
    result = tb.to_numpy(kind(items), dtype=tb.PRESERVE)
    assert result.dtype == np.float64
    np.testing.assert_array_equal(result, np.stack(items))
    assert tb.to_numpy(kind(items)).dtype == np.float32


def test_a_list_mixing_0d_tensors_and_python_floats_is_stacked() -> None:
    # torch.as_tensor([torch.tensor(-1.0), 2.0]) is tensor([-1., 2.])
    items = [torch.tensor(-1.0), 2.0]
    expected = torch.as_tensor(items)
    result = tb.to_tensor(items)
    assert result.dtype == torch.float32
    assert torch.equal(result, expected.to(torch.float32))
    as_array = tb.to_numpy(items)
    assert as_array.dtype == np.float32
    np.testing.assert_array_equal(as_array, np.array([-1.0, 2.0], np.float32))


def test_a_list_mixing_0d_arrays_and_python_numbers_is_stacked() -> None:
    items = [np.array(0.5), 1.5, np.float64(2.5)]
    result = tb.to_tensor(items, dtype=tb.PRESERVE)
    assert result.dtype == torch.float64
    assert torch.equal(result, torch.from_numpy(np.array(items)))


def test_a_nested_list_of_arrays_is_stacked_as_numpy_stacks_it() -> None:
    items = [[np.ones(2), np.zeros(2)], [np.arange(2.0), np.full(2, 3.0)]]
    expected = np.array(items)  # shape (2, 2, 2)
    result = tb.to_tensor(items, dtype=tb.PRESERVE)
    assert tuple(result.shape) == (2, 2, 2)
    assert torch.equal(result, torch.from_numpy(expected))


def test_the_dtype_policy_applies_to_the_stacked_result() -> None:
    items = [np.arange(3.0), np.ones(3)]
    expected = np.stack(items)
    assert tb.to_tensor(items).dtype == torch.float32  # the default FLOAT32 policy
    half = tb.to_tensor(items, dtype=torch.float16)
    assert half.dtype == torch.float16
    assert torch.equal(half, torch.from_numpy(expected.astype(np.float16)))
    policy = tb.DtypePolicy(floating="float16")
    assert tb.to_tensor(items, dtype=policy).dtype == torch.float16
    ints = tb.to_numpy([torch.arange(3), torch.arange(3)], dtype=np.int32)
    assert ints.dtype == np.int32
    np.testing.assert_array_equal(ints, np.stack([np.arange(3), np.arange(3)]).astype(np.int32))


def test_the_stacked_result_is_new_memory() -> None:
    a, b = np.arange(3.0), np.ones(3)
    result = tb.to_tensor([a, b], dtype=tb.PRESERVE)
    result.fill_(-7.0)
    np.testing.assert_array_equal(a, np.arange(3.0))
    np.testing.assert_array_equal(b, np.ones(3))

    s, t = torch.arange(3.0), torch.ones(3)
    out = tb.to_numpy([s, t], dtype=tb.PRESERVE)
    out[...] = -7.0
    assert torch.equal(s, torch.arange(3.0))
    assert torch.equal(t, torch.ones(3))


@pytest.mark.parametrize("kind", SEQUENCE_TYPES, ids=lambda k: k.__name__)
def test_copy_false_on_a_sequence_of_arrays_raises_share_error(kind: type) -> None:
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_tensor(kind([np.ones(2), np.ones(2)]), dtype=tb.PRESERVE, copy=False)
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_numpy(kind([torch.ones(2), torch.ones(2)]), dtype=tb.PRESERVE, copy=False)


@pytest.mark.parametrize(
    "call",
    [
        lambda: tb.to_tensor([np.ones(2), np.ones(3)]),
        lambda: tb.to_tensor((np.ones(2), np.ones(3))),
        lambda: tb.to_numpy([torch.ones(2), torch.ones(3)]),
        lambda: tb.to_tensor([torch.ones(2), torch.ones(3)]),
    ],
    ids=["list of arrays", "tuple of arrays", "list of tensors to numpy", "list of tensors"],
)
def test_a_ragged_sequence_of_arrays_names_the_shapes(call: Any) -> None:
    with pytest.raises(tb.TensorBridgeError) as info:
        call()
    assert isinstance(info.value, (TypeError, ValueError))
    message = str(info.value)
    assert "nested more than" not in message, message
    assert "(2,)" in message, message
    assert "(3,)" in message, message


# ---------------------------------------------------------------------------
# section 6: an __array__ that can only copy cannot be shared
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("convert", [tb.to_tensor, tb.to_numpy], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [tb.FLOAT32, tb.PRESERVE], ids=["FLOAT32", "PRESERVE"])
def test_copy_false_on_an_array_that_only_copies_raises_share_error(
    convert: Any, dtype: Any
) -> None:
    obj = S.CopyingArrayLike(np.arange(4, dtype=np.float32))
    with pytest.raises(tb.ShareError, match="copy"):
        convert(obj, dtype=dtype, copy=False)


@pytest.mark.parametrize("convert", [tb.to_tensor, tb.to_numpy], ids=lambda f: f.__name__)
def test_copy_none_on_an_array_that_only_copies_gives_the_values(convert: Any) -> None:
    values = np.arange(4, dtype=np.float32)
    result = convert(S.CopyingArrayLike(values), copy=None)
    got = result.numpy() if isinstance(result, torch.Tensor) else result
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


def test_copy_false_shares_an_array_like_that_hands_over_a_view() -> None:
    values = np.arange(4, dtype=np.float32)
    t = tb.to_tensor(S.ViewArrayLike(values), copy=False)
    assert torch.equal(t, torch.arange(4, dtype=torch.float32))
    t[0] = 42.0
    assert values[0] == 42.0, "the tensor does not alias the array-like's memory"
    values[3] = -1.0
    assert t[3].item() == -1.0

    a = tb.to_numpy(S.ViewArrayLike(values), copy=False)
    a[1] = 7.0
    assert values[1] == 7.0, "the array does not alias the array-like's memory"


# ---------------------------------------------------------------------------
# section 5, rule 6: strides of size-1 dimensions do not count
# ---------------------------------------------------------------------------

SIZE_ONE_VIEWS = [
    # (dtype, the policy that keeps it, shape, byte strides: the odd one on a size-1 axis)
    (np.float64, tb.PRESERVE, (4, 1), (8, 3)),
    (np.float64, tb.PRESERVE, (4, 1), (8, -8)),
    (np.float64, tb.PRESERVE, (1, 4), (5, 8)),
    (np.float64, tb.PRESERVE, (1, 4), (-16, 8)),
    (np.float32, tb.FLOAT32, (4, 1), (4, 3)),
    (np.float32, tb.FLOAT32, (2, 1, 3), (12, -1, 4)),
]


def _size_one_view(dtype: Any, shape: tuple[int, ...], strides: tuple[int, ...]) -> tuple:
    base = np.arange(16, dtype=dtype)
    # start in the middle so a negative stride on the size-1 axis stays inside the base
    # (it addresses nothing anyway: the only index on that axis is 0)
    x = as_strided(base[4:], shape=shape, strides=strides)
    return base, x


@pytest.mark.parametrize(("dtype", "policy", "shape", "strides"), SIZE_ONE_VIEWS)
def test_to_tensor_shares_a_view_whose_odd_stride_is_on_a_size_one_axis(
    dtype: Any, policy: Any, shape: tuple[int, ...], strides: tuple[int, ...]
) -> None:
    base, x = _size_one_view(dtype, shape, strides)
    expected = np.array(x)  # NumPy's own reading of the view
    t = tb.to_tensor(x, dtype=policy, copy=False)
    assert tuple(t.shape) == shape
    np.testing.assert_array_equal(t.numpy(), expected)
    t[(0,) * len(shape)] = 99.0
    assert x[(0,) * len(shape)] == 99.0, "the tensor does not alias the view"
    assert base[4] == 99.0
    x[(-1,) * len(shape)] = -5.0
    assert t[(-1,) * len(shape)].item() == -5.0


@pytest.mark.parametrize(("dtype", "policy", "shape", "strides"), SIZE_ONE_VIEWS)
def test_to_numpy_shares_a_view_whose_odd_stride_is_on_a_size_one_axis(
    dtype: Any, policy: Any, shape: tuple[int, ...], strides: tuple[int, ...]
) -> None:
    base, x = _size_one_view(dtype, shape, strides)
    expected = np.array(x)
    a = tb.to_numpy(x, dtype=policy, copy=False)
    np.testing.assert_array_equal(a, expected)
    a[(0,) * len(shape)] = 99.0
    assert base[4] == 99.0, "the result does not alias the view"
