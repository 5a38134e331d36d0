"""Contract section 7 (and the byte-order rule of section 3): the ``casting`` parameter.

The rule is NumPy's (``np.can_cast``) for NumPy's own dtypes; for bfloat16 and the
float8 types the contract's own sentences are checked. Values of allowed casts are
compared with ``ndarray.astype``.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import strategies as S
import tensorbridge as tb

# The contract promises NumPy's values for casts and is silent on NumPy's
# "overflow / invalid value encountered in cast" RuntimeWarnings.
pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning"),
]

RULES = ["no", "equiv", "safe", "same_kind", "unsafe"]


def _names(msg: str, name: str) -> bool:
    """``name`` appears as a dtype name (so "int8" is not found inside "uint8")."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![0-9])", msg) is not None


def assert_casting_message(msg: str, src: str, dst: str, rule: str) -> None:
    assert _names(msg, src), f"source dtype {src!r} not named in: {msg}"
    assert _names(msg, dst), f"target dtype {dst!r} not named in: {msg}"
    assert re.search(rf"\b{rule}\b", msg), f"rule {rule!r} not named in: {msg}"
    assert "unsafe" in msg, f'no suggestion of casting="unsafe" in: {msg}'


def _values(dt) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([0, 1, 2, 3, 1, 0], dtype=np.int64).astype(dt)


def _astype(a: np.ndarray, dt) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPy's ComplexWarning on complex -> real
        return a.astype(dt)


def _quietly(func, *args, **kwargs):
    """Complex -> real casts warn in NumPy and torch; the contract does not cover that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Casting complex values to real")
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------
# all five rules over NumPy's own dtypes, both directions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dst", S.STANDARD_DTYPES, ids=str)
@pytest.mark.parametrize("src", S.STANDARD_DTYPES, ids=str)
def test_to_tensor_explicit_dtype_follows_can_cast(src, dst, rule):
    a = _values(src)
    before = a.copy()
    if np.can_cast(src, dst, rule):
        t = _quietly(tb.to_tensor, a, dtype=dst, casting=rule)
        assert t.dtype == S.torch_dtype(dst)
        S.assert_same_values(t, _astype(a, dst))
    else:
        with pytest.raises(tb.CastingError) as info:
            tb.to_tensor(a, dtype=dst, casting=rule)
        assert_casting_message(str(info.value), src.name, dst.name, rule)
        np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dst", S.STANDARD_DTYPES, ids=str)
@pytest.mark.parametrize("src", S.STANDARD_DTYPES, ids=str)
def test_to_numpy_explicit_dtype_follows_can_cast(src, dst, rule):
    a = _values(src)
    t = torch.from_numpy(a.copy())
    if np.can_cast(src, dst, rule):
        out = _quietly(tb.to_numpy, t, dtype=S.torch_dtype(dst), casting=rule)
        assert out.dtype == dst
        S.assert_same_values(out, _astype(a, dst))
    else:
        with pytest.raises(tb.CastingError) as info:
            tb.to_numpy(t, dtype=S.torch_dtype(dst), casting=rule)
        assert_casting_message(str(info.value), src.name, dst.name, rule)
        np.testing.assert_array_equal(t.numpy(), a)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("src", S.STANDARD_DTYPES, ids=str)
def test_policy_casts_are_checked_too(src, rule):
    """The rule applies whether the policy or an explicit dtype asked for the change."""
    a = _values(src)
    target = S.default_policy_dtype(src)
    t_in = torch.from_numpy(a.copy())
    if np.can_cast(src, target, rule):
        t = tb.to_tensor(a, casting=rule)
        assert t.dtype == S.torch_dtype(target)
        S.assert_same_values(t, a.astype(target))
        out = tb.to_numpy(t_in, casting=rule)
        assert out.dtype == target
        S.assert_same_values(out, a.astype(target))
    else:
        with pytest.raises(tb.CastingError) as info:
            tb.to_tensor(a, casting=rule)
        assert_casting_message(str(info.value), src.name, target.name, rule)
        with pytest.raises(tb.CastingError) as info:
            tb.to_numpy(t_in, casting=rule)
        assert_casting_message(str(info.value), src.name, target.name, rule)


def test_float64_under_safe_casting_refuses_the_default_policy():
    a = np.array([0.1, 0.2])
    with pytest.raises(tb.CastingError, match="unsafe") as info:
        tb.to_tensor(a, casting="safe")
    assert_casting_message(str(info.value), "float64", "float32", "safe")
    # the way out works
    t = tb.to_tensor(a, casting="same_kind")
    S.assert_same_values(t, a.astype(np.float32))
    assert tb.to_tensor(a, dtype=tb.PRESERVE, casting="no").dtype == torch.float64


def test_casting_error_names_the_policy_that_asked_for_the_cast() -> None:
    with pytest.raises(tb.CastingError, match=r"FLOAT32.*casting=\"safe\".*tb\.PRESERVE"):
        tb.to_tensor(np.zeros(2), casting="safe")


@pytest.mark.parametrize("rule", RULES)
def test_a_custom_policy_is_checked(rule):
    policy = tb.DtypePolicy(floating=np.float16)
    a = np.array([0.5, 1.5], dtype=np.float32)
    if np.can_cast(np.float32, np.float16, rule):
        assert tb.to_tensor(a, dtype=policy, casting=rule).dtype == torch.float16
    else:
        with pytest.raises(tb.CastingError):
            tb.to_tensor(a, dtype=policy, casting=rule)


# ---------------------------------------------------------------------------
# bfloat16 and float8 (section 7)
# ---------------------------------------------------------------------------

ML = S.TORCH_ML_DTYPES
FLOATS = S.FLOAT_DTYPES


def _ml_np(dt):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return np.dtype(getattr(ml_dtypes, str(dt).removeprefix("torch.")))


def _in_range(src):
    """Finite values every one of these types holds (no overflow anywhere)."""
    vals = np.array([0.0, 1.0, -2.0, 0.5, 3.0, -0.0, 0.1, 7.25, -13.0, 100.0], dtype=np.float64)
    return vals.astype(src)


@pytest.mark.parametrize("dst", ML, ids=str)
@pytest.mark.parametrize("src", FLOATS, ids=str)
def test_any_float_to_ml_dtype_is_same_kind(src, dst):
    np_dst = _ml_np(dst)
    a = _in_range(src)
    expected = a.astype(np_dst)
    t = tb.to_tensor(a, dtype=dst, casting="same_kind")
    assert t.dtype == dst
    S.assert_same_values(t, expected)
    out = tb.to_numpy(torch.from_numpy(a.copy()), dtype=dst, casting="same_kind")
    assert out.dtype == np_dst
    S.assert_same_values(out, expected)


@pytest.mark.parametrize("rule", ["safe", "equiv", "no"])
@pytest.mark.parametrize("dst", ML, ids=str)
@pytest.mark.parametrize("src", FLOATS, ids=str)
def test_narrowing_float_to_ml_dtype_is_not_safe(src, dst, rule):
    """float16/32/64 into bfloat16 or float8 loses values, so it is not an exact widening."""
    _ml_np(dst)
    a = _in_range(src)
    dst_name = str(dst).removeprefix("torch.")
    with pytest.raises(tb.CastingError) as info:
        tb.to_tensor(a, dtype=dst, casting=rule)
    assert_casting_message(str(info.value), src.name, dst_name, rule)
    with pytest.raises(tb.CastingError) as info:
        tb.to_numpy(torch.from_numpy(a.copy()), dtype=dst, casting=rule)
    assert_casting_message(str(info.value), src.name, dst_name, rule)


@pytest.mark.parametrize("wide", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("src", ML, ids=str)
def test_exact_widening_from_ml_dtype_is_safe(src, wide):
    np_src = _ml_np(src)
    size = np_src.itemsize
    raw = np.arange(0, 1 << (8 * size), 1 if size == 1 else 61, dtype=f"u{size}")
    a = raw.view(np_src)
    expected = a.astype(wide)
    t = tb.to_tensor(a, dtype=wide, casting="safe")
    assert t.dtype == S.torch_dtype(wide)
    S.assert_same_values(t, expected)
    out = tb.to_numpy(S.tensor_from_bits(raw, src), dtype=wide, casting="safe")
    assert out.dtype == wide
    S.assert_same_values(out, expected)


@pytest.mark.parametrize("src", ML, ids=str)
def test_default_policy_from_ml_dtype_is_safe(src):
    """ml dtype -> float32 is an exact widening, so the default policy passes "safe"."""
    np_src = _ml_np(src)
    a = np.array([1.0, -0.5, 2.0], np.float32).astype(np_src)
    t = tb.to_tensor(a, casting="safe")
    assert t.dtype == torch.float32
    S.assert_same_values(t, a.astype(np.float32))
    out = tb.to_numpy(tb.to_tensor(a, dtype=tb.PRESERVE), casting="safe")
    assert out.dtype == np.float32


def test_bfloat16_to_float16_is_not_safe():
    """bfloat16's range exceeds float16's: not an exact widening."""
    np_src = _ml_np(torch.bfloat16)
    a = np.array([1.0, 1e10], np.float32).astype(np_src)
    with pytest.raises(tb.CastingError) as info:
        tb.to_tensor(a, dtype=np.float16, casting="safe")
    assert_casting_message(str(info.value), "bfloat16", "float16", "safe")


@pytest.mark.parametrize("dst", [np.int32, np.uint8, np.bool_], ids=["int32", "uint8", "bool"])
@pytest.mark.parametrize("src", ML, ids=str)
def test_ml_dtype_to_integer_is_not_same_kind(src, dst):
    """bfloat16 and float8 are floating kinds: float -> int is not same_kind."""
    np_src = _ml_np(src)
    a = np.array([1.0, 2.0], np.float32).astype(np_src)
    with pytest.raises(tb.CastingError) as info:
        tb.to_tensor(a, dtype=dst, casting="same_kind")
    assert_casting_message(
        str(info.value), str(src).removeprefix("torch."), np.dtype(dst).name, "same_kind"
    )
    t = tb.to_tensor(a, dtype=dst, casting="unsafe")
    np.testing.assert_array_equal(t.numpy(), a.astype(dst))


@pytest.mark.parametrize("dst", ML, ids=str)
@pytest.mark.parametrize("src", ML, ids=str)
def test_ml_dtype_to_ml_dtype_is_same_kind(src, dst):
    np_src, np_dst = _ml_np(src), _ml_np(dst)
    a = np.array([1.0, -2.0, 0.5, 3.0], np.float32).astype(np_src)
    t = tb.to_tensor(a, dtype=dst, casting="same_kind")
    assert t.dtype == dst
    S.assert_same_values(t, a.astype(np_dst))


# ---------------------------------------------------------------------------
# byte order alone is never a cast (section 3)
# ---------------------------------------------------------------------------

SWAPPABLE = [d for d in S.STANDARD_DTYPES if d.itemsize > 1]


@pytest.mark.parametrize("dt", SWAPPABLE, ids=str)
def test_byte_order_alone_passes_casting_no(dt):
    a = _values(dt).astype(dt.newbyteorder("S"))
    assert not a.dtype.isnative
    t = tb.to_tensor(a, dtype=tb.PRESERVE, casting="no")
    assert t.dtype == S.torch_dtype(dt)
    S.assert_same_bits(t, a)
    t2 = tb.to_tensor(a, dtype=dt, casting="no")
    assert t2.dtype == S.torch_dtype(dt)
    S.assert_same_bits(t2, a)
    out = tb.to_numpy(a, dtype=tb.PRESERVE, casting="no")
    assert out.dtype == dt
    S.assert_same_bits(out, a)


def test_big_endian_float32_under_default_policy_passes_casting_no():
    a = np.array([1.5, -0.0, 3.25], dtype=">f4" if np.little_endian else "<f4")
    t = tb.to_tensor(a, casting="no")
    assert t.dtype == torch.float32
    S.assert_same_bits(t, a)


def test_big_endian_float64_is_still_a_cast_under_default_policy():
    a = np.array([1.5, 2.5], dtype=">f8" if np.little_endian else "<f8")
    with pytest.raises(tb.CastingError) as info:
        tb.to_tensor(a, casting="no")
    assert_casting_message(str(info.value), "float64", "float32", "no")


# a non-native byte order asked for: NumPy results keep it, tensors are native


@pytest.mark.parametrize("order", [">", "<"])
@pytest.mark.parametrize("source", [np.arange(3, dtype="<f4"), np.arange(3, dtype=">f4")])
def test_to_numpy_honours_an_explicit_byte_order(order, source):
    for data in (source, torch.arange(3, dtype=torch.float32)):
        result = tb.to_numpy(data, dtype=order + "f4")
        assert result.dtype == np.dtype(order + "f4")
        assert result.tolist() == [0.0, 1.0, 2.0]


def test_to_numpy_byte_swap_under_copy_false_raises():
    with pytest.raises(tb.ShareError):
        tb.to_numpy(np.arange(3, dtype="<f4"), dtype=">f4", copy=False)


def test_to_tensor_of_big_endian_target_is_native():
    tensor = tb.to_tensor(np.arange(3, dtype=np.float64), dtype=">f4")
    assert tensor.dtype == torch.float32
    assert tensor.tolist() == [0.0, 1.0, 2.0]


# ---------------------------------------------------------------------------
# values follow NumPy's conversion
# ---------------------------------------------------------------------------

TIES = np.array(
    [
        1 + 2.0**-24,  # halfway between 1 and the next float32: even is 1
        1 + 3 * 2.0**-24,  # halfway, even is above
        -(1 + 2.0**-24),
        float(np.finfo(np.float32).max) * (1 + 2.0**-25),  # halfway to 2**128: inf
        float(np.finfo(np.float32).max) * (1 + 2.0**-26),  # below halfway: max
        2.0**-150,  # halfway between 0 and the smallest subnormal: 0
        3 * 2.0**-150,  # halfway between two subnormals: even one
        -(2.0**-150),
        2.0**-149 * 1.5,
        1e300,
        -1e300,
        0.1,
        -0.0,
        float("inf"),
        float("-inf"),
    ]
)


def test_float64_to_float32_rounds_to_nearest_even_like_astype():
    expected = TIES.astype(np.float32)
    # the ties really are ties: NumPy rounds them to even
    assert expected[0] == np.float32(1.0)
    assert expected[1] == np.float32(1 + 2.0**-22)
    t = tb.to_tensor(TIES)
    S.assert_same_bits(t, expected)
    out = tb.to_numpy(torch.from_numpy(TIES.copy()))
    S.assert_same_bits(out, expected)
    t2 = tb.to_tensor(torch.from_numpy(TIES.copy()), dtype=torch.float32)
    S.assert_same_bits(t2, expected)


@given(st.lists(st.floats(width=64), min_size=1, max_size=20))
def test_float64_to_float32_values_equal_astype(values):
    a = np.array(values, dtype=np.float64)
    expected = a.astype(np.float32)
    S.assert_same_values(tb.to_tensor(a), expected)
    S.assert_same_values(tb.to_numpy(torch.from_numpy(a)), expected)


DOUBLE_ROUNDING = np.array(
    [
        1 + 2.0**-11 + 2.0**-40,  # just above a float16 tie; via float32 it becomes the tie
        -(1 + 2.0**-11 + 2.0**-40),
        1 + 3 * 2.0**-11 - 2.0**-40,
        65519.99999999,  # just below the float16 overflow threshold
    ]
)


def test_float64_to_float16_is_rounded_once_like_astype():
    expected = DOUBLE_ROUNDING.astype(np.float16)
    assert expected[0] == np.float16(1 + 2.0**-10)  # NumPy rounds once
    S.assert_same_bits(tb.to_tensor(DOUBLE_ROUNDING, dtype=np.float16), expected)
    S.assert_same_bits(
        tb.to_numpy(torch.from_numpy(DOUBLE_ROUNDING.copy()), dtype=torch.float16), expected
    )


def test_tensor_casts_follow_numpy_not_torchs_double_rounding() -> None:
    # 1 + 2**-11 + 2**-40 rounds up to float16 directly, but to exactly 1 + 2**-11
    # (a tie, then rounded to even: 1.0) when it goes through float32 first.
    value = np.array([1 + 2**-11 + 2**-40])
    expected = value.astype(np.float16)
    assert expected[0] != np.float16(1.0)
    tensor = torch.from_numpy(value.copy())
    assert tb.to_tensor(tensor, dtype=torch.float16).numpy()[0] == expected[0]
    assert tb.to_numpy(tensor, dtype=np.float16)[0] == expected[0]
    assert tb.collate([tensor, tensor], dtype=torch.float16).numpy()[0, 0] == expected[0]


@given(st.lists(st.floats(width=64), min_size=1, max_size=20))
def test_float64_to_float16_values_equal_astype(values):
    a = np.array(values, dtype=np.float64)
    expected = a.astype(np.float16)
    S.assert_same_values(tb.to_tensor(a, dtype=np.float16), expected)
    S.assert_same_values(tb.to_numpy(torch.from_numpy(a), dtype=np.float16), expected)


@pytest.mark.parametrize("dst", ML, ids=str)
@given(values=st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=20))
def test_float32_to_ml_dtype_values_equal_astype(dst, values):
    np_dst = _ml_np(dst)
    a = np.array(values, dtype=np.float32)
    expected = a.astype(np_dst)
    S.assert_same_values(tb.to_tensor(a, dtype=dst), expected)
    S.assert_same_values(tb.to_numpy(torch.from_numpy(a), dtype=dst), expected)


# ---------------------------------------------------------------------------
# casts of tensors that require grad: NumPy's values, graph kept
# ---------------------------------------------------------------------------

# 1 + 2**-11 + 2**-40 rounds up to float16 directly, but to 1.0 through float32
# (a tie there); likewise 1 + 2**-8 + 2**-40 for bfloat16.
SPECIAL = [0.0, -0.0, 1e300, -1e300, 1 / 3, 65519.99, 2.0**-30, 448.0, 449.0, float("nan"),
           1 + 2.0**-11 + 2.0**-40, 1 + 2.0**-8 + 2.0**-40]  # fmt: skip


@pytest.mark.parametrize(
    "target",
    [torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e8m0fnu],
)
def test_grad_tensor_cast_gives_numpys_values_bit_for_bit(target):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    source = torch.tensor(SPECIAL, dtype=torch.float64, requires_grad=True)
    result = tb.to_tensor(source, dtype=target, casting="unsafe")
    assert result.requires_grad
    assert result.grad_fn is not None
    name = str(target).removeprefix("torch.")
    numpy_target = np.dtype(getattr(ml_dtypes, name, None) or name)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = np.array(SPECIAL, dtype=np.float64).astype(numpy_target)
    got = tb.to_numpy(result, dtype=tb.PRESERVE)
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()


def test_grad_flows_back_through_a_numpy_cast_in_the_source_dtype():
    source = torch.tensor([0.1, 2.5, -3.0], dtype=torch.float64, requires_grad=True)
    result = tb.to_tensor(source, dtype=torch.float16)
    (result.to(torch.float32) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert source.grad is not None
    assert source.grad.dtype == torch.float64
    assert source.grad.tolist() == [1.0, 2.0, 3.0]


def test_default_policy_keeps_the_graph_of_a_float64_grad_tensor():
    source = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    result = tb.to_tensor(source)
    assert result.dtype == torch.float32
    result.sum().backward()
    assert source.grad is not None
    assert source.grad.tolist() == [1.0, 1.0]


def test_tensors_that_require_grad_keep_their_graph_through_a_cast() -> None:
    weights = torch.ones(3, dtype=torch.float64, requires_grad=True)
    tb.to_tensor(weights).sum().backward()  # float32 by the default policy
    assert weights.grad is not None
    assert torch.equal(weights.grad, torch.ones(3, dtype=torch.float64))


# ---------------------------------------------------------------------------
# integer-only input that no integer dtype holds raises; it never becomes floating
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", [[-1, 2**63], [[-(2**63) - 1, 1]], [2**64]])
def test_integers_no_integer_dtype_holds_raise(values):
    with pytest.raises(tb.TensorBridgeError):
        tb.to_tensor(values)


def test_mixed_huge_int_and_float_still_converts():
    assert tb.to_tensor([1.5, 2.0**70], dtype=tb.PRESERVE).dtype == torch.float64
