"""Contract section 9, ``collate``: stacking samples into a batch.

Array leaves are stacked with the dtype policy applied (values as NumPy's ``astype``
of the stacked arrays); non-array leaves collate as ``default_collate`` collates them;
a batch is always new memory; mismatched shapes raise a ``TensorBridgeError`` naming
the leaf path and both shapes.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import default_collate

import strategies as S
import tensorbridge as tb

pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning"),
]


def _shape_re(shape: tuple[int, ...]) -> str:
    """``(3, 4)`` or ``[3, 4]``, the two ways a shape is usually written."""
    inner = re.escape(", ".join(str(s) for s in shape))
    return rf"(\({inner}\)|\[{inner}\])"


def _assert_tensor(got, expected: np.ndarray) -> None:
    assert isinstance(got, torch.Tensor)
    assert got.device.type == "cpu"
    assert got.dtype == S.torch_dtype(expected.dtype)
    S.assert_same_values(got, expected)


# ---------------------------------------------------------------------------
# arrays: stacking with the dtype policy
# ---------------------------------------------------------------------------


@st.composite
def _samples(draw, dtype=None):
    dt = draw(S.dtypes()) if dtype is None else dtype
    shape = draw(S.shapes(max_dims=3, max_side=4))
    n = draw(st.integers(1, 4))
    return [draw(S.arrays(dt, shape)) for _ in range(n)]


@given(_samples())
def test_default_policy_stacks_with_astype_values(samples):
    out = tb.collate(samples)
    expected = S.as_float32(np.stack(samples))
    assert tuple(out.shape) == (len(samples), *samples[0].shape)
    _assert_tensor(out, expected)


@given(_samples())
def test_preserve_stacks_bits_exactly(samples):
    out = tb.collate(samples, dtype=tb.PRESERVE)
    expected = np.stack(samples)
    assert out.dtype == S.torch_dtype(expected.dtype)
    S.assert_same_bits(out, expected)


@given(_samples(dtype=np.dtype(np.float32)))
def test_explicit_dtype_float16(samples):
    out = tb.collate(samples, dtype=torch.float16)
    _assert_tensor(out, np.stack(samples).astype(np.float16))


@given(S.array_views(nonempty=True))
def test_strided_reversed_byteswapped_read_only_samples(inp):
    a = inp.array
    before = S.np_bits(a)
    samples = [a, a.copy(order="F"), a]
    out = tb.collate(samples)
    _assert_tensor(out, S.as_float32(np.stack(samples)))
    np.testing.assert_array_equal(S.np_bits(a), before)


def test_tensor_samples_are_stacked_with_the_policy():
    samples = [torch.full((2, 3), float(i), dtype=torch.float64) for i in range(3)]
    out = tb.collate(samples)
    expected = np.stack([np.full((2, 3), float(i)) for i in range(3)]).astype(np.float32)
    _assert_tensor(out, expected)


def test_numpy_scalar_samples_stack_to_one_dim():
    out = tb.collate([np.float64(0.5), np.float64(1.5), np.float64(-2.0)])
    _assert_tensor(out, np.array([0.5, 1.5, -2.0], dtype=np.float32))
    out = tb.collate([np.int16(3), np.int16(-4)])
    _assert_tensor(out, np.array([3, -4], dtype=np.int16))


def test_zero_dim_arrays_stack_to_one_dim():
    out = tb.collate([np.array(1.25), np.array(2.5)])
    _assert_tensor(out, np.array([1.25, 2.5], dtype=np.float32))


# ---------------------------------------------------------------------------
# nested samples and non-array leaves
# ---------------------------------------------------------------------------


def _nested_samples(n: int = 3):
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.integers(0, 256, (3, 4, 4), dtype=np.uint8),
            "x": rng.standard_normal(5),
            "mask": rng.random(5) > 0.5,
            "label": i,
            "flag": i % 2 == 0,
            "weight": i / 3,
            "name": f"s{i}",
            "raw": bytes([i]),
            "meta": {"id": np.int64(10 + i), "parts": [rng.standard_normal(2), f"p{i}"]},
        }
        for i in range(n)
    ]


def test_nested_dict_samples_default_policy():
    samples = _nested_samples()
    out = tb.collate(samples)
    assert type(out) is dict
    assert list(out) == list(samples[0])
    _assert_tensor(out["image"], np.stack([s["image"] for s in samples]))
    _assert_tensor(out["x"], np.stack([s["x"] for s in samples]).astype(np.float32))
    _assert_tensor(out["mask"], np.stack([s["mask"] for s in samples]))
    _assert_tensor(out["meta"]["id"], np.array([10, 11, 12], dtype=np.int64))
    parts = out["meta"]["parts"]
    assert isinstance(parts, (list, tuple))
    assert len(parts) == 2
    expected_parts = np.stack([s["meta"]["parts"][0] for s in samples]).astype(np.float32)
    _assert_tensor(parts[0], expected_parts)
    assert list(parts[1]) == ["p0", "p1", "p2"]


def test_non_array_leaves_collate_like_default_collate():
    samples = _nested_samples()
    out = tb.collate(samples)
    reference = default_collate(
        [{k: s[k] for k in ("label", "flag", "name", "raw")} for s in samples]
    )
    assert out["name"] == reference["name"] == ["s0", "s1", "s2"]
    assert out["raw"] == reference["raw"]
    for key in ("label", "flag"):
        assert isinstance(out[key], torch.Tensor)
        assert out[key].dtype == reference[key].dtype
        assert torch.equal(out[key], reference[key])
    assert out["label"].dtype == torch.int64
    assert out["flag"].dtype == torch.bool


def test_python_floats_follow_the_policy():
    samples = [{"w": 0.1}, {"w": 1 / 3}, {"w": 1e300}]
    values = np.array([0.1, 1 / 3, 1e300], dtype=np.float64)
    out = tb.collate(samples)
    _assert_tensor(out["w"], S.as_float32(values))
    kept = tb.collate(samples, dtype=tb.PRESERVE)
    _assert_tensor(kept["w"], values)
    assert torch.equal(kept["w"], default_collate(samples)["w"])


def test_python_ints_under_preserve_are_int64():
    out = tb.collate([1, 2, 3], dtype=tb.PRESERVE)
    _assert_tensor(out, np.array([1, 2, 3], dtype=np.int64))


def test_namedtuple_samples_keep_their_type():
    samples = [S.Pair(np.full(2, i, np.float64), i) for i in range(3)]
    out = tb.collate(samples)
    assert type(out) is S.Pair
    _assert_tensor(out.image, np.stack([s.image for s in samples]).astype(np.float32))
    _assert_tensor(out.label, np.arange(3, dtype=np.int64))


@pytest.mark.parametrize("container", [tuple, list])
def test_sequence_samples_are_transposed(container):
    samples = [container([np.full(2, i, np.float64), f"n{i}", i]) for i in range(3)]
    out = tb.collate(samples)
    assert isinstance(out, (list, tuple))
    assert len(out) == 3
    _assert_tensor(out[0], np.stack([s[0] for s in samples]).astype(np.float32))
    assert list(out[1]) == ["n0", "n1", "n2"]
    _assert_tensor(out[2], np.arange(3, dtype=np.int64))


def test_device_cpu_option():
    samples = [np.arange(3, dtype=np.float64) + i for i in range(2)]
    out = tb.collate(samples, device="cpu")
    _assert_tensor(out, np.stack(samples).astype(np.float32))


# ---------------------------------------------------------------------------
# a batch is always new memory
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("copy", [None, True])
def test_batch_is_new_memory(n, copy):
    samples = [np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * i for i in range(n)]
    expected = np.stack(samples)
    out = tb.collate(samples, copy=copy)
    assert out.is_contiguous()
    for s in samples:
        s[...] = -1
    S.assert_same_bits(out, expected)
    out.fill_(7)
    for s in samples:
        np.testing.assert_array_equal(s, np.full((2, 3), -1, np.float32))


def test_tensor_samples_are_not_aliased():
    samples = [torch.arange(4, dtype=torch.float32)]
    out = tb.collate(samples)
    samples[0].fill_(-1)
    assert torch.equal(out, torch.arange(4, dtype=torch.float32).unsqueeze(0))


def test_copy_false_raises_share_error():
    samples = [np.zeros(3, np.float32), np.ones(3, np.float32)]
    with pytest.raises(tb.ShareError):
        tb.collate(samples, copy=False)
    with pytest.raises(tb.ShareError):
        tb.collate([{"a": np.zeros(2, np.float32)}], copy=False)


# ---------------------------------------------------------------------------
# casting and errors
# ---------------------------------------------------------------------------


def test_casting_rule_applies_to_the_stack():
    samples = [np.array([1.5, -2.25]), np.array([3.0, 4.75])]
    with pytest.raises(tb.CastingError):
        tb.collate(samples, dtype=torch.int32)
    out = tb.collate(samples, dtype=torch.int32, casting="unsafe")
    _assert_tensor(out, np.stack(samples).astype(np.int32))


def test_casting_error_names_the_leaf_path():
    samples = [{"image": np.zeros(2, np.uint8), "x": np.zeros(2)} for _ in range(2)]
    with pytest.raises(tb.CastingError, match=re.escape('["x"]')):
        tb.collate(samples, dtype=torch.int16)


def test_collate_complex_to_real_is_quiet_and_keeps_the_real_part() -> None:
    samples = [torch.tensor([1 + 2j, 3 - 4j]), torch.tensor([5 + 0j, -1j])]
    batch = tb.collate(samples, dtype=torch.float32, casting="unsafe")
    assert batch.tolist() == [[1.0, 3.0], [5.0, 0.0]]


@pytest.mark.parametrize(
    ("kind", "rows"),  # 2 rows: one np.array call; 300_000: slot copies across threads
    [("arrays", 2), ("arrays", 300_000), ("numpy scalars", 1), ("python numbers", 1)],
)
def test_collate_host_complex_to_real_keeps_the_real_part_quietly(kind: str, rows: int) -> None:
    values = [1 + 2j, 3 - 4j, -5 + 0j, 0.5 - 1j]
    if kind == "arrays":
        samples: list[object] = [np.full(rows, value, np.complex64) for value in values]
        expected = np.stack([np.full(rows, value.real, np.float32) for value in values])
    elif kind == "numpy scalars":
        samples = [np.complex128(value) for value in values]
        expected = np.array([value.real for value in values], np.float32)
    else:
        samples = list(values)
        expected = np.array([value.real for value in values], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's ComplexWarning would be an error here
        batch = tb.collate(samples, dtype=torch.float32, casting="unsafe")
    assert batch.dtype == torch.float32
    np.testing.assert_array_equal(batch.numpy(), expected)
    with pytest.raises(tb.CastingError):
        tb.collate(samples, dtype=torch.float32)  # same_kind refuses it


def test_collate_refuses_sparse_tensors() -> None:
    with pytest.raises(tb.TensorBridgeError, match="to_dense"):
        tb.collate([torch.eye(2).to_sparse(), torch.eye(2).to_sparse()])


def test_mismatched_shapes_name_path_and_shapes():
    samples = [
        {"image": np.zeros((3, 4), np.float32), "label": 0},
        {"image": np.zeros((3, 5), np.float32), "label": 1},
    ]
    with pytest.raises(tb.TensorBridgeError) as info:
        tb.collate(samples)
    assert isinstance(info.value, (TypeError, ValueError))
    message = str(info.value)
    assert '["image"]' in message, message
    assert re.search(_shape_re((3, 4)), message), message
    assert re.search(_shape_re((3, 5)), message), message


def test_mismatched_shapes_deep_in_the_tree():
    samples = [
        {"inputs": [np.zeros(2), np.zeros((2, 2))]},
        {"inputs": [np.zeros(2), np.zeros((2, 2))]},
        {"inputs": [np.zeros(2), np.zeros((2, 3))]},
    ]
    with pytest.raises(tb.TensorBridgeError) as info:
        tb.collate(samples)
    message = str(info.value)
    assert '["inputs"][1]' in message, message
    assert re.search(_shape_re((2, 2)), message), message
    assert re.search(_shape_re((2, 3)), message), message


def test_mismatched_ndim_top_level_arrays():
    with pytest.raises(tb.TensorBridgeError) as info:
        tb.collate([np.zeros(3), np.zeros((3, 1))])
    assert isinstance(info.value, (TypeError, ValueError))
    message = str(info.value)
    assert re.search(_shape_re((3, 1)), message), message


def test_failed_collate_leaves_samples_unchanged():
    a = np.arange(4, dtype=np.float64)
    b = np.arange(5, dtype=np.float64)
    with pytest.raises(tb.TensorBridgeError):
        tb.collate([{"v": a}, {"v": b}])
    np.testing.assert_array_equal(a, np.arange(4, dtype=np.float64))
    np.testing.assert_array_equal(b, np.arange(5, dtype=np.float64))
