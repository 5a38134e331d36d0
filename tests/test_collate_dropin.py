"""Contract sections 7, 8 and 9: ``collate`` as a drop-in for ``default_collate``, and the
trees it and ``tree_to_tensor``/``tree_to_numpy`` refuse.

0-d samples (the labels of every ``TensorDataset``), samples that require grad,
``range`` and other sequences, list/tuple/mapping subclasses and ``torch.return_types``
collate as ``default_collate`` collates them; integer samples with no common integer
dtype, trees with cycles, trees too deep to walk and quantized samples without an
explicit floating dtype raise a ``TensorBridgeError`` (never a raw ``RecursionError``
or ``RuntimeError``).
"""

from __future__ import annotations

import functools
import sys
from collections import OrderedDict, UserDict, UserList, defaultdict
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

import strategies as S
import tensorbridge as tb

pytestmark = [
    # Python 3.12+ warns when forking a process that has threads (the DataLoader's workers).
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
    # torch deprecates its quantized dtypes; the tests still need a quantized tensor.
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
]


class TaggedList(list):  # type: ignore[type-arg]
    """A list subclass with an attribute, which a copy keeps."""

    tag = "plain"


class TaggedDict(dict):  # type: ignore[type-arg]
    pass


class Pairish(tuple):  # type: ignore[type-arg]
    """A tuple subclass that is no namedtuple."""


# ---------------------------------------------------------------------------
# 0-d samples: TensorDataset labels
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [torch.tensor, np.array], ids=["tensor", "ndarray"])
def test_zero_dim_int64_samples_stack_to_a_vector_under_preserve(make):
    out = tb.collate([make(1), make(-2), make(2**40)], dtype=tb.PRESERVE)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.int64
    assert out.tolist() == [1, -2, 2**40]


def test_zero_dim_float64_tensors_follow_the_default_policy():
    samples = [torch.tensor(0.1, dtype=torch.float64), torch.tensor(1 / 3, dtype=torch.float64)]
    out = tb.collate(samples)
    assert out.dtype == torch.float32
    expected = np.array([0.1, 1 / 3], dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_zero_dim_samples_with_a_cast_are_exact():
    samples = [torch.tensor(v, dtype=torch.float64) for v in (1e300, -0.0, 2.5)]
    out = tb.collate(samples, dtype=torch.float16, casting="unsafe")
    with np.errstate(over="ignore"):
        expected = np.array([1e300, -0.0, 2.5]).astype(np.float16)
    assert out.dtype == torch.float16
    np.testing.assert_array_equal(out.numpy().view(np.uint16), expected.view(np.uint16))


def test_zero_dim_samples_match_default_collate():
    samples = [torch.tensor(i) for i in range(5)]
    expected = default_collate(samples)
    out = tb.collate(samples, dtype=tb.PRESERVE)
    assert out.dtype == expected.dtype
    assert torch.equal(out, expected)


@pytest.mark.parametrize("preserve", [False, True])
def test_tensordataset_labels_collate_inside_two_workers(preserve):
    images = torch.arange(10 * 3 * 2, dtype=torch.float64).reshape(10, 3, 2)
    labels = torch.arange(10, dtype=torch.int64) * 7
    collate_fn = functools.partial(tb.collate, dtype=tb.PRESERVE) if preserve else tb.collate
    loader = DataLoader(
        TensorDataset(images, labels),
        batch_size=4,
        num_workers=2,
        collate_fn=collate_fn,
        timeout=120,
    )
    got_images, got_labels = [], []
    for image, label in loader:
        assert label.dtype == torch.int64
        assert image.dtype == (torch.float64 if preserve else torch.float32)
        got_images.append(image)
        got_labels.append(label)
    assert torch.cat(got_labels).tolist() == labels.tolist()
    expected = images.numpy() if preserve else images.numpy().astype(np.float32)
    np.testing.assert_array_equal(torch.cat(got_images).numpy(), expected)


def test_zero_dim_tensors_go_to_shared_memory_in_a_worker(monkeypatch):
    # The same stand-in for a worker as PyTorch's own test_default_collate_shared_tensor.
    monkeypatch.setattr(torch.utils.data._utils.worker, "_worker_info", "x")
    out = tb.collate([torch.tensor(3), torch.tensor(4)])
    assert out.is_shared()
    assert out.tolist() == [3, 4]


# ---------------------------------------------------------------------------
# samples that require grad keep the graph
# ---------------------------------------------------------------------------


def test_grad_samples_keep_the_graph_and_gradients_reach_each_sample():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([3.0, 4.0], requires_grad=True)
    out = tb.collate([a, b])
    assert out.requires_grad
    assert out.dtype == torch.float32
    assert out.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    (out * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    assert a.grad is not None
    assert b.grad is not None
    assert a.grad.tolist() == [1.0, 2.0]
    assert b.grad.tolist() == [3.0, 4.0]


def test_grad_samples_match_default_collate_values():
    x = torch.linspace(-1, 1, 6).reshape(2, 3).requires_grad_()
    samples = [x * 2, x + 1]  # non-leaf samples, as a model's outputs are
    expected = default_collate(samples)
    out = tb.collate(samples, dtype=tb.PRESERVE)
    assert torch.equal(out, expected)
    out.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, torch.full((2, 3), 3.0))


def test_grad_float64_samples_under_float32_round_as_numpy_and_grad_is_float64():
    values = [0.1, 1 / 3, 1e-40, 3.4028235677973366e38]
    a = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(values[::-1], dtype=torch.float64, requires_grad=True)
    out = tb.collate([a, b])
    assert out.dtype == torch.float32
    assert out.requires_grad
    with np.errstate(over="ignore"):  # the last value rounds to inf in float32
        expected = np.stack([np.array(values), np.array(values[::-1])]).astype(np.float32)
    np.testing.assert_array_equal(out.detach().numpy(), expected)
    out.sum().backward()
    assert a.grad is not None
    assert a.grad.dtype == torch.float64
    assert a.grad.tolist() == [1.0] * 4


def test_grad_samples_under_no_grad_give_a_plain_batch():
    a = torch.ones(2, requires_grad=True)
    with torch.no_grad():
        out = tb.collate([a, a])
    assert not out.requires_grad
    assert out.tolist() == [[1.0, 1.0], [1.0, 1.0]]


# ---------------------------------------------------------------------------
# sequences and subclasses, as default_collate
# ---------------------------------------------------------------------------


def test_range_samples_become_a_list_of_columns():
    out = tb.collate([range(3), range(3)], dtype=tb.PRESERVE)
    expected = default_collate([range(3), range(3)])
    assert type(out) is list
    assert len(out) == 3
    for got, want in zip(out, expected, strict=True):
        assert torch.equal(got, want)
    assert [column.tolist() for column in out] == [[0, 0], [1, 1], [2, 2]]


def test_list_subclass_keeps_its_type_and_attributes():
    first, second = TaggedList([np.float64(1.5), 1]), TaggedList([np.float64(2.5), 2])
    first.tag = "kept"
    out = tb.collate([first, second], dtype=tb.PRESERVE)
    assert type(out) is TaggedList
    assert out.tag == "kept"
    assert out[0].dtype == torch.float64
    assert out[0].tolist() == [1.5, 2.5]
    assert out[1].tolist() == [1, 2]
    assert list(first) == [np.float64(1.5), 1]  # the sample is unchanged


def test_userlist_keeps_its_type():
    out = tb.collate([UserList([1, 2]), UserList([3, 4])])
    assert type(out) is UserList
    assert [column.tolist() for column in out] == [[1, 3], [2, 4]]


@pytest.mark.parametrize("kind", [tuple, Pairish], ids=["tuple", "tuple-subclass"])
def test_tuples_and_tuple_subclasses_become_lists_as_in_default_collate(kind):
    samples = [kind((np.array([1.0]), 2)), kind((np.array([3.0]), 4))]
    expected = default_collate(samples)
    out = tb.collate(samples, dtype=tb.PRESERVE)
    assert type(out) is type(expected) is list
    assert out[0].tolist() == [[1.0], [3.0]]
    assert out[1].tolist() == [2, 4]


def test_return_types_samples_collate_as_default_collate():
    samples = [torch.max(torch.tensor([[1.0, 5.0], [7.0, 2.0]]), 1) for _ in range(2)]
    expected = default_collate(samples)
    out = tb.collate(samples, dtype=tb.PRESERVE)
    assert type(out) is type(expected)
    assert torch.equal(out[0], expected[0])
    assert torch.equal(out[1], expected[1])


@pytest.mark.parametrize(
    "make",
    [
        TaggedDict,
        OrderedDict,
        UserDict,
        functools.partial(defaultdict, list),
    ],
    ids=["dict-subclass", "OrderedDict", "UserDict", "defaultdict"],
)
def test_mapping_subclasses_keep_their_type(make):
    samples = [make({"x": np.float32(1), "y": 2}), make({"x": np.float32(3), "y": 4})]
    out = tb.collate(samples, dtype=tb.PRESERVE)
    assert type(out) is type(samples[0])
    assert out["x"].tolist() == [1.0, 3.0]
    assert out["y"].tolist() == [2, 4]
    if isinstance(samples[0], defaultdict):
        assert out.default_factory is list
    assert samples[0]["y"] == 2  # the sample is unchanged


def test_tree_to_numpy_keeps_return_types_fields():
    values = torch.tensor([[1.0, 5.0], [7.0, 2.0]], dtype=torch.float64)
    out = tb.tree_to_numpy(torch.max(values, 1))
    assert type(out) is torch.return_types.max
    np.testing.assert_array_equal(out.values, np.array([5.0, 7.0], dtype=np.float32))
    np.testing.assert_array_equal(out.indices, np.array([1, 0], dtype=np.int64))


def test_tree_to_tensor_keeps_return_types_fields():
    values = torch.tensor([[1.0, 5.0], [7.0, 2.0]], dtype=torch.float64)
    out = tb.tree_to_tensor(torch.min(values, 1), dtype=tb.PRESERVE)
    assert type(out) is torch.return_types.min
    assert out.values.tolist() == [1.0, 2.0]
    assert out.indices.tolist() == [0, 1]


def test_tree_keeps_list_and_tuple_subclasses():
    tree = {"l": TaggedList([np.float64(1)]), "t": Pairish((np.float64(2),)), "s": torch.Size([2])}
    out = tb.tree_to_tensor(tree)
    assert type(out["l"]) is TaggedList
    assert type(out["t"]) is Pairish
    assert type(out["s"]) is torch.Size
    assert out["l"][0].dtype == torch.float32
    assert out["t"][0].tolist() == 2.0


def test_tree_turns_a_range_into_a_list_as_default_convert():
    assert tb.tree_to_tensor(range(2)) == [0, 1]


# ---------------------------------------------------------------------------
# integers with no common integer dtype (contract 7)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", ["ndarray", "tensor"])
def test_int64_with_uint64_samples_raise_naming_path_and_dtypes(make):
    big = np.array([2**62 + 1], dtype=np.int64)
    other = np.array([1], dtype=np.uint64)
    samples: list[Any] = [big, other]
    if make == "tensor":
        samples = [torch.from_numpy(big), torch.from_numpy(other)]
    with pytest.raises(tb.CastingError, match=r'batch\["ids"\].*int64.*uint64'):
        tb.collate([{"ids": samples[0]}, {"ids": samples[1]}])


def test_int64_with_uint64_samples_cast_under_an_explicit_dtype():
    samples = [np.array([2**62 + 1], dtype=np.int64), np.array([1], dtype=np.uint64)]
    out = tb.collate(samples, dtype=torch.float64)
    assert out.dtype == torch.float64
    assert out.tolist() == [[float(2**62 + 1)], [1.0]]


def test_mixed_integer_tensors_promote_like_numpy_where_torch_cannot():
    samples = [torch.tensor([-1], dtype=torch.int64), torch.tensor([7], dtype=torch.uint32)]
    out = tb.collate(samples)
    assert out.dtype == torch.int64
    assert out.tolist() == [[-1], [7]]


# ---------------------------------------------------------------------------
# cycles and deep nesting (contract 8)
# ---------------------------------------------------------------------------


def _dict_cycle() -> dict[str, Any]:
    tree: dict[str, Any] = {"image": np.zeros(2)}
    tree["inner"] = {"back": tree}
    return tree


def _list_cycle() -> list[Any]:
    return S.self_referencing_list(np.zeros(2))


@pytest.mark.parametrize("convert", [tb.tree_to_tensor, tb.tree_to_numpy])
def test_tree_with_a_dict_cycle_raises_naming_the_path(convert):
    with pytest.raises(tb.InvalidInputError, match=r'batch\["inner"\]\["back"\] is batch itself'):
        convert(_dict_cycle())


@pytest.mark.parametrize("convert", [tb.tree_to_tensor, tb.tree_to_numpy])
def test_tree_with_a_list_cycle_raises_naming_the_path(convert):
    with pytest.raises(tb.InvalidInputError, match=r"batch\[1\] is batch itself.*cycle"):
        convert(_list_cycle())


@pytest.mark.parametrize("convert", [tb.tree_to_tensor, tb.tree_to_numpy])
def test_a_cycle_is_named_wherever_the_stack_runs_out(convert):
    # Each level of the walk takes a few frames and converting the leaf a few more,
    # so over a run of recursion limits the stack runs out at every point of a
    # level, inside the leaf's conversion too; every one must name the cycle.
    limit = sys.getrecursionlimit()
    try:
        for extra in range(60):
            sys.setrecursionlimit(limit + extra)
            with pytest.raises(tb.InvalidInputError, match=r"batch\[1\] is batch itself"):
                convert(_list_cycle())
    finally:
        sys.setrecursionlimit(limit)


def test_collate_of_samples_with_a_cycle_raises():
    with pytest.raises(tb.InvalidInputError, match=r"sample 0.*\[\"back\"\].*cycle"):
        tb.collate([_dict_cycle(), _dict_cycle()])
    with pytest.raises(TypeError, match="cycle"):
        tb.collate([_list_cycle(), _list_cycle()])


@pytest.mark.parametrize(
    "call",
    [tb.tree_to_tensor, tb.tree_to_numpy, lambda tree: tb.collate([tree, tree])],
    ids=["tree_to_tensor", "tree_to_numpy", "collate"],
)
def test_very_deep_nesting_raises_a_tensorbridge_error(call):
    with pytest.raises(tb.InvalidInputError, match="10000 levels deep"):
        call(S.deeply_nested(np.ones(1), 10000))


def test_moderately_deep_nesting_still_converts():
    out = tb.tree_to_tensor(S.deeply_nested(np.ones(1), 100), dtype=tb.PRESERVE)
    for _ in range(100):
        out = out[0]
    assert out[0].tolist() == [1.0]


def test_shared_subtrees_are_not_cycles():
    leaf = {"x": np.ones(1)}
    out = tb.tree_to_tensor({"a": leaf, "b": leaf, "c": [leaf, leaf]})
    assert out["a"]["x"].tolist() == [1.0]
    assert out["c"][1]["x"].tolist() == [1.0]


# ---------------------------------------------------------------------------
# quantized samples (contract 4)
# ---------------------------------------------------------------------------


def _quantized(values: list[float]) -> torch.Tensor:
    return torch.quantize_per_tensor(torch.tensor(values), 0.5, 0, torch.qint8)


@pytest.mark.parametrize("dtype", [tb.FLOAT32, tb.PRESERVE])
def test_quantized_samples_under_a_policy_raise_a_tensorbridge_error(dtype):
    samples = [_quantized([1.0, 2.0]), _quantized([3.0, 4.0])]
    with pytest.raises(tb.UnsupportedDtypeError, match=r"quantized.*qint8.*dtype=torch.float32"):
        tb.collate(samples, dtype=dtype)


def test_quantized_samples_with_an_explicit_floating_dtype_dequantize():
    samples = [_quantized([1.0, 2.0]), _quantized([3.0, 4.5])]
    out = tb.collate(samples, dtype=torch.float32)
    assert out.dtype == torch.float32
    assert out.tolist() == [[1.0, 2.0], [3.0, 4.5]]


def test_quantized_samples_into_an_integer_dtype_raise():
    with pytest.raises(tb.TensorBridgeError):
        tb.collate([_quantized([1.0]), _quantized([2.0])], dtype=torch.int32)
