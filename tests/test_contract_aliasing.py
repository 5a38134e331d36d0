"""Contract sections 5 and 6: copy and share, shown by mutation.

Sharing is shown by writing into one side and reading the other; independence by
writing into one side and showing the other did not change.
"""

from __future__ import annotations

import collections
import gc
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import strategies as S
import tensorbridge as tb
from tensorbridge import _convert

# ---------------------------------------------------------------------------
# mutation helpers
# ---------------------------------------------------------------------------


def _writable_alias(a: np.ndarray) -> np.ndarray:
    """A writable view of the same memory (the generated read-only arrays are views
    of a writable base)."""
    if a.flags.writeable:
        return a
    w = a.view()
    w.flags.writeable = True
    return w


def _flip(x, idx) -> None:
    """Flip the lowest bit of element ``idx`` in place (real part for complex)."""
    if isinstance(x, torch.Tensor):
        with torch.no_grad():
            part = torch.view_as_real(x)[..., 0] if x.is_complex() else x
            ints = part.view(
                torch.uint8
                if part.dtype == torch.bool
                else {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[
                    part.element_size()
                ]
            )
            ints[idx] ^= 1
    else:
        a = _writable_alias(x)
        part = a.real if a.dtype.kind == "c" else a
        bits = part.view(f"u{part.dtype.itemsize}")
        bits[idx] ^= bits.dtype.type(1)  # NumPy 1 will not mix uint64 with a Python int


def _element_bits(x, idx) -> np.ndarray:
    return S.bits(x)[idx]


def _indices(x):
    """The first and the last element."""
    shape = tuple(x.shape)
    return [tuple(0 for _ in shape), tuple(n - 1 for n in shape)]


def assert_shares(src, res) -> None:
    """A write to either side is visible in the other, element for element."""
    assert int(np.prod(tuple(src.shape))) > 0
    for idx in _indices(src):
        before = _element_bits(res, idx).copy()
        _flip(src, idx)
        after = _element_bits(res, idx)
        assert not np.array_equal(before, after), f"write to the input at {idx} not seen"
        if tuple(src.shape) == tuple(res.shape):
            assert np.array_equal(S.bits(src), S.bits(res)), "the result aliases other elements"
        before_src = _element_bits(src, idx).copy()
        _flip(res, idx)
        assert not np.array_equal(before_src, _element_bits(src, idx)), (
            f"write to the result at {idx} not seen in the input"
        )
        assert np.array_equal(_element_bits(res, idx), before)


def assert_independent(src, res) -> None:
    """A write to either side leaves the other unchanged."""
    if int(np.prod(tuple(src.shape))) == 0:
        return
    res_before = S.bits(res).copy()
    src_before = S.bits(src).copy()
    for idx in _indices(src):
        _flip(src, idx)
        np.testing.assert_array_equal(S.bits(res), res_before, "result changed with the input")
        _flip(src, idx)
        _flip(res, idx)
        np.testing.assert_array_equal(S.bits(src), src_before, "input changed with the result")
        _flip(res, idx)


def assert_fresh_result(res, src) -> None:
    """A copied result is writable, dense, and in the input's memory order where the input
    is dense, C-contiguous otherwise (section 5)."""
    if isinstance(res, np.ndarray):
        assert res.flags.writeable
    S.assert_layout(res, src)


# ---------------------------------------------------------------------------
# to_tensor: the six conditions, over generated views
# ---------------------------------------------------------------------------


@given(S.array_views(nonempty=True))
def test_to_tensor_preserve_shares_exactly_when_the_contract_allows(inp):
    a = inp.array
    t = tb.to_tensor(a, dtype=tb.PRESERVE)
    S.assert_same_bits(t, a)
    if inp.can_share(a.dtype):
        assert_shares(a, t)
    else:
        assert_independent(a, t)
        assert_fresh_result(t, a)


@given(S.array_views(nonempty=True))
def test_to_tensor_default_policy_shares_exactly_when_the_contract_allows(inp):
    a = inp.array
    t = tb.to_tensor(a)
    if inp.can_share(S.default_policy_dtype(a.dtype)):
        assert_shares(a, t)
    else:
        assert_independent(a, t)
        assert_fresh_result(t, a)


@given(S.array_views(nonempty=True))
def test_to_tensor_copy_false_shares_or_raises(inp):
    a = inp.array
    before = S.np_bits(a)
    writeable = a.flags.writeable
    if inp.can_share(a.dtype):
        t = tb.to_tensor(a, dtype=tb.PRESERVE, copy=False)
        assert_shares(a, t)
    else:
        with pytest.raises(tb.ShareError, match="copy"):
            tb.to_tensor(a, dtype=tb.PRESERVE, copy=False)
        np.testing.assert_array_equal(S.np_bits(a), before)
        assert a.flags.writeable == writeable


@given(S.array_views(nonempty=True), st.sampled_from(["preserve", "default"]))
def test_to_tensor_copy_true_is_independent(inp, policy):
    a = inp.array
    t = tb.to_tensor(a, dtype=tb.PRESERVE if policy == "preserve" else tb.FLOAT32, copy=True)
    assert_fresh_result(t, a)
    assert_independent(a, t)


# ---------------------------------------------------------------------------
# to_numpy: dense strided CPU tensors share, over generated views
# ---------------------------------------------------------------------------


@given(S.tensors(nonempty=True), st.sampled_from([None, False]))
def test_to_numpy_preserve_shares(t, copy):
    if t.dtype in S.TORCH_ML_DTYPES:
        pytest.importorskip("ml_dtypes")
    out = tb.to_numpy(t, dtype=tb.PRESERVE, copy=copy)
    assert out.flags.writeable
    assert_shares(t, out)


@given(S.tensors(nonempty=True))
def test_to_numpy_copy_true_is_independent(t):
    if t.dtype in S.TORCH_ML_DTYPES:
        pytest.importorskip("ml_dtypes")
    out = tb.to_numpy(t, dtype=tb.PRESERVE, copy=True)
    assert_fresh_result(out, t)
    assert_independent(t, out)


@given(S.tensors(nonempty=True))
def test_to_numpy_default_policy_shares_unless_the_dtype_changes(t):
    if t.dtype in S.TORCH_ML_DTYPES:
        pytest.importorskip("ml_dtypes")
    out = tb.to_numpy(t)
    if S.default_policy_dtype(S.numpy_dtype(t.dtype)) == S.numpy_dtype(t.dtype):
        assert_shares(t, out)
    else:
        assert_independent(t, out)
        assert_fresh_result(out, t)


# ---------------------------------------------------------------------------
# explicit cases of section 5
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("copy", [None, False])
def test_float32_array_shares(copy):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = tb.to_tensor(a, copy=copy)
    assert t.dtype == torch.float32
    assert_shares(a, t)
    a[1, 2] = 100.0
    assert t[1, 2].item() == 100.0
    t[2, 3] = -5.0
    assert a[2, 3] == -5.0


def test_float32_array_copy_true_is_independent():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = tb.to_tensor(a, copy=True)
    a[0, 0] = 42.0
    assert t[0, 0].item() == 0.0
    t[1, 1] = -1.0
    assert a[1, 1] == 5.0
    assert t.is_contiguous()


@pytest.mark.parametrize("copy", [None, False])
def test_to_numpy_of_float32_array_shares(copy):
    a = np.arange(6, dtype=np.float32)
    out = tb.to_numpy(a, copy=copy)
    assert_shares(a, out)


def test_to_numpy_of_float32_array_copy_true_is_independent():
    a = np.arange(6, dtype=np.float32)[::-1]
    out = tb.to_numpy(a, copy=True)
    assert_fresh_result(out, a)
    assert_independent(a, out)


def test_to_numpy_of_float64_array_copies_under_default_policy():
    a = np.linspace(0, 1, 7)
    out = tb.to_numpy(a)
    assert out.dtype == np.float32
    assert_fresh_result(out, a)
    assert_independent(a, out)
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_numpy(a, copy=False)


def test_to_numpy_of_non_native_array_copies():
    a = np.arange(6, dtype=np.float32).astype(">f4" if np.little_endian else "<f4")
    out = tb.to_numpy(a, dtype=tb.PRESERVE)
    assert out.dtype == np.dtype(np.float32)
    assert_fresh_result(out, a)
    assert_independent(a, out)
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_numpy(a, dtype=tb.PRESERVE, copy=False)


@pytest.mark.parametrize("dt", S.STANDARD_DTYPES, ids=str)
def test_every_kept_dtype_shares_under_preserve(dt):
    a = np.arange(1, 7).reshape(2, 3).astype(dt)
    assert_shares(a, tb.to_tensor(a, dtype=tb.PRESERVE))
    assert_shares(a, tb.to_tensor(a, dtype=tb.PRESERVE, copy=False))
    t = torch.from_numpy(np.arange(1, 7).reshape(2, 3).astype(dt))
    assert_shares(t, tb.to_numpy(t, dtype=tb.PRESERVE))
    assert_shares(t, tb.to_numpy(t, dtype=tb.PRESERVE, copy=False))


@pytest.mark.parametrize("dt", S.TORCH_ML_DTYPES, ids=str)
def test_ml_dtypes_share_both_ways_under_preserve(dt):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    np_dt = np.dtype(getattr(ml_dtypes, str(dt).removeprefix("torch.")))
    size = np_dt.itemsize
    raw = np.arange(1, 25, dtype=f"u{size}").reshape(4, 6)
    t = S.tensor_from_bits(raw, dt)
    out = tb.to_numpy(t, dtype=tb.PRESERVE, copy=False)
    assert out.dtype == np_dt
    assert_shares(t, out)
    a = raw.copy().view(np_dt)
    back = tb.to_tensor(a, dtype=tb.PRESERVE, copy=False)
    assert back.dtype == dt
    assert_shares(a, back)
    # a strided view shares too
    view = a[::2, 1::3]
    assert_shares(view, tb.to_tensor(view, dtype=tb.PRESERVE))


def test_tensor_input_needing_no_change_is_returned_as_is():
    t = torch.arange(10, dtype=torch.float32)
    out = tb.to_tensor(t)
    assert out is t or (out.data_ptr() == t.data_ptr() and out.shape == t.shape)
    assert_shares(t, out)
    assert_shares(t, tb.to_tensor(t, copy=False))
    view = t[1::3]
    assert_shares(view, tb.to_tensor(view))


def test_tensor_input_copy_true_is_cloned():
    t = torch.arange(10, dtype=torch.float32)
    out = tb.to_tensor(t, copy=True)
    assert out.device == t.device
    assert out.dtype == t.dtype
    assert_fresh_result(out, t)
    assert_independent(t, out)


@pytest.mark.filterwarnings("ignore:.*quantize.*:UserWarning")  # torch deprecates them
def test_quantized_tensor_copy_true_under_preserve_is_a_quantized_clone():
    # PRESERVE keeps every dtype, quantized ones too: copy=True clones, never dequantizes.
    q = torch.quantize_per_tensor(torch.tensor([0.5, 1.0, 1.5]), 0.5, 0, torch.qint8)
    out = tb.to_tensor(q, dtype=tb.PRESERVE, copy=True)
    assert out.dtype == torch.qint8
    assert out.int_repr().tolist() == q.int_repr().tolist()
    assert out.int_repr().data_ptr() != q.int_repr().data_ptr()
    assert tb.to_tensor(q, dtype=tb.PRESERVE) is q


def test_tensor_input_dtype_change_copies():
    t = torch.arange(10, dtype=torch.float64)
    out = tb.to_tensor(t)
    assert out.dtype == torch.float32
    assert_independent(t, out)
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_tensor(t, copy=False)


@pytest.mark.parametrize("shape", [(), (1,), (3,)])
@pytest.mark.parametrize("copy", [None, True])
def test_complex_to_real_never_aliases_the_input(shape: tuple[int, ...], copy: bool | None) -> None:
    complex_tensor = torch.full(shape, 1 + 2j, dtype=torch.complex64)
    real = tb.to_tensor(complex_tensor, dtype=torch.float32, casting="unsafe", copy=copy)
    real.fill_(99.0)
    assert torch.all(complex_tensor == 1 + 2j)
    assert not tb.shares_memory(real, complex_tensor)


# ---------------------------------------------------------------------------
# grad, conj and neg tensors into NumPy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("copy", [None, False])
def test_grad_tensor_shares_as_read_only_view(copy):
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3).requires_grad_()
    out = tb.to_numpy(t, copy=copy)
    assert isinstance(out, np.ndarray)
    assert out.flags.writeable is False
    np.testing.assert_array_equal(out, np.arange(6, dtype=np.float32).reshape(2, 3))
    with torch.no_grad():
        t.add_(10)
    np.testing.assert_array_equal(out, np.arange(6, dtype=np.float32).reshape(2, 3) + 10)
    with pytest.raises(ValueError):
        out[0, 0] = 1.0
    # the view is detached: the tensor still requires grad and is a leaf
    assert t.requires_grad
    assert t.is_leaf


def test_non_leaf_grad_tensor_shares_as_read_only_view():
    x = torch.arange(4, dtype=torch.float32, requires_grad=True)
    y = x * 2
    out = tb.to_numpy(y)
    assert not out.flags.writeable
    np.testing.assert_array_equal(out, np.arange(4, dtype=np.float32) * 2)
    with torch.no_grad():
        y.add_(1)
    np.testing.assert_array_equal(out, np.arange(4, dtype=np.float32) * 2 + 1)
    assert y.requires_grad


def test_grad_tensor_view_cannot_be_made_writable():
    t = torch.ones(3, requires_grad=True)
    out = tb.to_numpy(t)
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out.setflags(write=True)


def test_grad_tensor_copy_true_is_independent():
    t = torch.arange(4, dtype=torch.float32).requires_grad_()
    out = tb.to_numpy(t, copy=True)
    np.testing.assert_array_equal(out, np.arange(4, dtype=np.float32))
    with torch.no_grad():
        t.add_(1)
    np.testing.assert_array_equal(out, np.arange(4, dtype=np.float32))


# A read-only view handed out (grad tensors, bfloat16 and float8 bit views included)
# cannot be made writable again, through its ``.base`` either (section 6).


def base_chain(array: np.ndarray[Any, Any]) -> list[np.ndarray[Any, Any]]:
    chain = []
    value: object = array
    while isinstance(value, np.ndarray):
        chain.append(value)
        value = value.base
    return chain


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.float8_e4m3fn]
)
def test_grad_view_cannot_be_made_writable_through_any_base(dtype):
    if dtype in S.TORCH_ML_DTYPES:
        pytest.importorskip("ml_dtypes")
    tensor = torch.ones(4, dtype=torch.float32).to(dtype).requires_grad_()
    array = tb.to_numpy(tensor, dtype=tb.PRESERVE)
    assert not array.flags.writeable
    for each in base_chain(array):
        with pytest.raises(ValueError):
            each.flags.writeable = True
    assert tensor.detach().to(torch.float32).tolist() == [1.0] * 4


def test_grad_view_still_shares_memory():
    pytest.importorskip("ml_dtypes")
    tensor = torch.zeros(3, dtype=torch.bfloat16, requires_grad=True)
    array = tb.to_numpy(tensor, dtype=tb.PRESERVE)
    with torch.no_grad():
        tensor[1] = 2.0
    assert float(array[1]) == 2.0


def _complex_tensor():
    return torch.tensor([1 + 2j, -3 + 0.5j, 4 - 1j], dtype=torch.complex64)


def _conj_view():
    base = _complex_tensor()
    view = base.conj()
    assert view.is_conj()
    return base, view


def _neg_view():
    base = _complex_tensor()
    view = base.conj().imag
    assert view.is_neg()
    return base, view


def test_conj_bit_tensor_is_copied_with_conjugated_values():
    base, view = _conj_view()
    expected = base.detach().numpy().conj()
    out = tb.to_numpy(view)
    np.testing.assert_array_equal(out, expected)
    assert_fresh_result(out, view)
    with torch.no_grad():
        base.add_(1)
    np.testing.assert_array_equal(out, expected)
    assert view.is_conj()


def test_neg_bit_tensor_is_copied_with_negated_values():
    base, view = _neg_view()
    expected = -base.detach().numpy().imag
    out = tb.to_numpy(view)
    np.testing.assert_array_equal(out, expected)
    assert_fresh_result(out, view)
    with torch.no_grad():
        base.add_(1j)
    np.testing.assert_array_equal(out, expected)
    assert view.is_neg()


# ---------------------------------------------------------------------------
# ShareError under copy=False, one reason at a time
# ---------------------------------------------------------------------------


def _structured_field():
    s = np.zeros(5, dtype=[("a", "u1"), ("b", "<f4")])
    s["b"] = np.arange(5, dtype=np.float32) + 0.5
    f = s["b"]
    assert f.strides == (5,)
    return f


def _odd_strides_on_uint8_buffer():
    buf = np.arange(64, dtype=np.uint8)
    v = buf[1:41].view(np.float32)
    a = np.lib.stride_tricks.as_strided(v, shape=(4,), strides=(6,))
    assert a.flags.writeable
    assert a.strides[0] % a.itemsize != 0
    return a


def _read_only():
    a = np.arange(5, dtype=np.float32).view()  # a read-only view of writable memory
    a.flags.writeable = False
    return a


def _big_endian():
    return np.arange(5, dtype=np.float32).astype(">f4" if np.little_endian else "<f4")


TO_TENSOR_SHARE_FAILURES = {
    "dtype change by policy": (lambda: np.arange(5, dtype=np.float64), tb.FLOAT32),
    "dtype change by dtype": (lambda: np.arange(5, dtype=np.float32), torch.float64),
    "read-only": (_read_only, tb.PRESERVE),
    "non-native byte order": (_big_endian, tb.PRESERVE),
    "negative strides": (lambda: np.arange(5, dtype=np.float32)[::-1], tb.PRESERVE),
    "negative strides 2-d": (
        lambda: np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::-2],
        tb.PRESERVE,
    ),
    "structured field strides": (_structured_field, tb.PRESERVE),
    "strides not a multiple of the item size": (_odd_strides_on_uint8_buffer, tb.PRESERVE),
    "masked array": (lambda: np.ma.masked_array(np.arange(5, dtype=np.float32)), tb.PRESERVE),
}


@pytest.mark.parametrize("case", list(TO_TENSOR_SHARE_FAILURES))
def test_to_tensor_copy_false_raises_share_error(case):
    make, dtype = TO_TENSOR_SHARE_FAILURES[case]
    a = make()
    before = S.np_bits(np.asarray(a)).copy()
    writeable = a.flags.writeable
    with pytest.raises(tb.ShareError, match="copy") as info:
        tb.to_tensor(a, dtype=dtype, copy=False)
    assert isinstance(info.value, tb.TensorBridgeError)
    assert isinstance(info.value, ValueError)
    np.testing.assert_array_equal(S.np_bits(np.asarray(a)), before)
    assert a.flags.writeable == writeable


@pytest.mark.parametrize("case", list(TO_TENSOR_SHARE_FAILURES))
def test_to_tensor_copy_none_copies_where_sharing_is_impossible(case):
    make, dtype = TO_TENSOR_SHARE_FAILURES[case]
    a = make()
    plain = np.asarray(a)
    t = tb.to_tensor(a, dtype=dtype)
    expected_dtype = (
        np.dtype(np.float64)
        if dtype is torch.float64
        else S.default_policy_dtype(plain.dtype)
        if dtype is tb.FLOAT32
        else plain.dtype.newbyteorder("=")
    )
    assert t.dtype == S.torch_dtype(expected_dtype)
    S.assert_same_values(t, plain.astype(expected_dtype))
    assert_fresh_result(t, plain)
    assert_independent(plain, t)


def test_to_tensor_copy_true_of_read_only_gives_writable_independent_tensor():
    base = np.arange(5, dtype=np.float32)
    ro = base.view()
    ro.flags.writeable = False
    t = tb.to_tensor(ro, copy=True)
    t.mul_(2)
    np.testing.assert_array_equal(base, np.arange(5, dtype=np.float32))
    base[0] = 9
    assert t[0].item() == 0.0


@pytest.mark.parametrize(
    "value",
    [1.5, 3, True, 1 + 2j, [1.0, 2.0], [[1, 2], [3, 4]], (1.0, 2.0), np.float32(1.5), np.int64(3)],
    ids=repr,
)
def test_scalars_and_sequences_never_share(value):
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_tensor(value, dtype=tb.PRESERVE, copy=False)
    t = tb.to_tensor(value, dtype=tb.PRESERVE)
    assert isinstance(t, torch.Tensor)


def test_sequence_result_is_new_memory():
    row = [1.0, 2.0, 3.0]
    t = tb.to_tensor(row)
    t.add_(1)
    assert row == [1.0, 2.0, 3.0]
    assert t.is_contiguous()


def test_range_and_deque_convert_into_new_memory():
    assert tb.to_tensor(range(5)).tolist() == [0, 1, 2, 3, 4]
    assert tb.to_tensor(range(5)).dtype == torch.int64
    values = collections.deque([1.0, 2.0])
    assert tb.to_tensor(values).tolist() == [1.0, 2.0]
    assert tb.to_numpy(collections.deque([1, 2])).tolist() == [1, 2]
    with pytest.raises(tb.ShareError):
        tb.to_tensor(range(3), copy=False)


def _grad_float64():
    return torch.arange(3, dtype=torch.float64).requires_grad_()


TO_NUMPY_SHARE_FAILURES = {
    "conj bit": lambda: _conj_view()[1],
    "neg bit": lambda: _neg_view()[1],
    "dtype change by policy": lambda: torch.arange(5, dtype=torch.float64),
    "dtype change by dtype": lambda: torch.arange(5, dtype=torch.int32),
}


@pytest.mark.parametrize("case", list(TO_NUMPY_SHARE_FAILURES))
def test_to_numpy_copy_false_raises_share_error(case):
    t = TO_NUMPY_SHARE_FAILURES[case]()
    dtype = torch.int64 if case == "dtype change by dtype" else tb.FLOAT32
    before = S.torch_bits(t).copy()
    flags = (t.is_conj(), t.is_neg(), t.requires_grad)
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_numpy(t, dtype=dtype, copy=False)
    np.testing.assert_array_equal(S.torch_bits(t), before)
    assert (t.is_conj(), t.is_neg(), t.requires_grad) == flags


def test_grad_tensor_dtype_change_copy_false_raises_share_error():
    t = _grad_float64()
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_numpy(t, copy=False)
    assert t.requires_grad


# ---------------------------------------------------------------------------
# objects that hand over their buffer (section 5, condition 1)
# ---------------------------------------------------------------------------


class _ArrayInterface:
    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        assert dtype is None or np.dtype(dtype) == self._a.dtype
        if copy:
            return self._a.copy()
        return self._a


@pytest.mark.parametrize(
    "wrap", [_ArrayInterface, S.Producer, memoryview], ids=["__array__", "__dlpack__", "buffer"]
)
def test_buffer_handing_objects_share(wrap):
    a = np.arange(8, dtype=np.float32)
    t = tb.to_tensor(wrap(a))
    assert t.dtype == torch.float32
    if wrap is S.Producer and S.NUMPY_MAJOR < 2:
        # Contract 6: NumPy 1 cannot read a DLPack producer's read-only flag, so
        # the memory counts as read-only: copied, and copy=False raises.
        assert_independent(a, t)
        with pytest.raises(tb.ShareError):
            tb.to_tensor(wrap(a), copy=False)
        return
    assert_shares(a, t)
    t2 = tb.to_tensor(wrap(a), copy=True)
    assert_independent(a, t2)


def test_read_only_buffer_is_copied():
    data = bytes(range(16))
    t = tb.to_tensor(memoryview(data), dtype=tb.PRESERVE)
    assert t.dtype == torch.uint8
    t.add_(1)
    assert data == bytes(range(16))
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_tensor(memoryview(data), dtype=tb.PRESERVE, copy=False)


# ---------------------------------------------------------------------------
# copy=False through __array__ (section 6: it shares or raises)
# ---------------------------------------------------------------------------


class CopyingArray:
    def __init__(self) -> None:
        self.data = np.arange(3, dtype=np.float32)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray[Any, Any]:
        if copy is False:
            raise ValueError("this object can only copy")
        return self.data.copy()


class LegacyCopyingArray:
    def __array__(self, dtype: object = None) -> np.ndarray[Any, Any]:
        return np.arange(3, dtype=np.float32)


class SharingArray:
    def __init__(self) -> None:
        self.data = np.arange(3, dtype=np.float32)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray[Any, Any]:
        return self.data


@pytest.mark.parametrize("factory", [CopyingArray, LegacyCopyingArray])
@pytest.mark.parametrize("function", [tb.to_tensor, tb.to_numpy])
def test_copy_false_with_an_array_protocol_that_can_only_copy_raises(factory, function):
    with pytest.raises(tb.ShareError, match="__array__"):
        function(factory(), copy=False)
    assert function(factory()).tolist() == [0.0, 1.0, 2.0]


def test_copy_false_with_an_array_protocol_that_shares_shares():
    source = SharingArray()
    tensor = tb.to_tensor(source, copy=False)
    tensor[0] = 9.0
    assert source.data[0] == 9.0


# ---------------------------------------------------------------------------
# DLPack producers: the read-only flag (section 6)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("device_type", [1, 3])
def test_dlpack_writable_cpu_memory_is_shared_only_where_the_flag_is_read(device_type):
    array = np.zeros(4, dtype=np.float32)
    tensor = tb.to_tensor(S.Producer(array, device_type), dtype=tb.PRESERVE)
    tensor.add_(1)
    flag_readable = S.NUMPY_MAJOR >= 2 and device_type == 1
    assert array[0] == (1.0 if flag_readable else 0.0)
    if not flag_readable:
        with pytest.raises(tb.ShareError):
            tb.to_tensor(S.Producer(array, device_type), dtype=tb.PRESERVE, copy=False)


def test_dlpack_producer_without_read_only_flag_counts_as_read_only():
    array = np.zeros(4, dtype=np.float32)
    tensor = tb.to_tensor(S.LegacyProducer(array), dtype=tb.PRESERVE)
    tensor.add_(1)
    assert array[0] == 0.0
    with pytest.raises(tb.ShareError):
        tb.to_tensor(S.LegacyProducer(array), dtype=tb.PRESERVE, copy=False)
    shared = tb.to_numpy(S.LegacyProducer(array), dtype=tb.PRESERVE)
    with pytest.raises(ValueError):
        shared.flags.writeable = True


@pytest.mark.skipif(S.NUMPY_MAJOR < 2, reason="NumPy 1 cannot export read-only memory by DLPack")
@pytest.mark.parametrize("device_type", [1, 3])
def test_dlpack_read_only_bytes_are_never_mutated(device_type):
    data = bytes(16)
    source = np.frombuffer(data, dtype=np.float32)
    tensor = tb.to_tensor(S.Producer(source, device_type), dtype=tb.PRESERVE)
    tensor.add_(1)
    assert data == bytes(16)
    with pytest.raises(tb.ShareError):
        tb.to_tensor(S.Producer(source, device_type), dtype=tb.PRESERVE, copy=False)


# ---------------------------------------------------------------------------
# memory safety (section 6)
# ---------------------------------------------------------------------------


def test_read_only_array_never_gives_a_writable_alias():
    base = np.arange(6, dtype=np.float32)
    ro = base.view()
    ro.flags.writeable = False
    t = tb.to_tensor(ro)  # filterwarnings=error: torch's "not writable" warning fails here
    t.fill_(-1)
    np.testing.assert_array_equal(base, np.arange(6, dtype=np.float32))
    base[2] = 50
    assert t[2].item() == -1


def test_frombuffer_on_bytes_is_copied_in_process():
    data = bytes(range(8))
    a = np.frombuffer(data, dtype=np.uint8)
    t = tb.to_tensor(a)
    t.mul_(0)
    assert data == bytes(range(8))


# ---------------------------------------------------------------------------
# results keep their source alive
# ---------------------------------------------------------------------------

_N = 4096  # 16 KiB of float32: small enough for malloc to hand the block straight back


def _churn(make):
    return [make() for _ in range(64)]


@pytest.mark.parametrize("copy", [None, False])
def test_tensor_result_keeps_array_alive(copy):
    a = np.arange(_N, dtype=np.float32)
    t = tb.to_tensor(a[1:], copy=copy)
    del a
    gc.collect()
    junk = _churn(lambda: np.full(_N, -7.0, np.float32))
    np.testing.assert_array_equal(t.numpy(), np.arange(1, _N, dtype=np.float32))
    del junk


@pytest.mark.parametrize("copy", [None, False])
def test_array_result_keeps_tensor_alive(copy):
    t = torch.arange(_N, dtype=torch.float32)
    out = tb.to_numpy(t[1:], copy=copy)
    del t
    gc.collect()
    junk = _churn(lambda: torch.full((_N,), -7.0))
    np.testing.assert_array_equal(out, np.arange(1, _N, dtype=np.float32))
    del junk


def test_grad_view_keeps_tensor_alive():
    t = torch.arange(_N, dtype=torch.float32).requires_grad_()
    out = tb.to_numpy(t)
    del t
    gc.collect()
    junk = _churn(lambda: torch.full((_N,), -7.0))
    np.testing.assert_array_equal(out, np.arange(_N, dtype=np.float32))
    del junk


@pytest.mark.parametrize("dt", [torch.bfloat16, torch.float8_e4m3fn], ids=str)
def test_ml_dtype_views_keep_source_alive(dt):
    pytest.importorskip("ml_dtypes")
    size = torch.empty((), dtype=dt).element_size()
    raw = (np.arange(_N) % 100 + 1).astype(f"u{size}")
    t = S.tensor_from_bits(raw, dt)
    out = tb.to_numpy(t, dtype=tb.PRESERVE)
    del t
    gc.collect()
    junk = _churn(lambda: torch.full((_N,), -7.0))
    np.testing.assert_array_equal(out.view(f"u{size}"), raw)
    a = raw.copy().view(out.dtype)
    back = tb.to_tensor(a, dtype=tb.PRESERVE)
    del a
    gc.collect()
    junk = _churn(lambda: np.full(_N, 255, np.uint8))
    np.testing.assert_array_equal(S.torch_bits(back), raw)
    del junk


# ---------------------------------------------------------------------------
# shares_memory
# ---------------------------------------------------------------------------


def _pairs():
    a = np.arange(20, dtype=np.float32)
    t = torch.arange(20, dtype=torch.float32)
    ta = torch.from_numpy(a)
    m = np.arange(24, dtype=np.float64).reshape(4, 6)
    return [
        ("array and itself", a, a, True),
        ("array and a slice", a, a[3:7], True),
        ("overlapping slices", a[0:10], a[5:15], True),
        ("disjoint slices", a[:10], a[10:], False),
        ("array and its copy", a, a.copy(), False),
        ("row and column", m[1], m[:, 2], True),
        ("different rows", m[1], m[2], False),
        ("array and its tensor", a, ta, True),
        ("array slice and tensor slice, overlapping", a[2:8], ta[6:12], True),
        ("array slice and tensor slice, disjoint", a[:8], ta[8:], False),
        ("array and an unrelated tensor", a, t, False),
        ("tensor and itself", t, t, True),
        ("tensor and a view", t, t[5:9], True),
        ("tensor slices, overlapping", t[:10], t[9:], True),
        ("tensor slices, disjoint", t[:10], t[10:], False),
        ("tensor and its clone", t, t.clone(), False),
        ("tensor and a reshaped view", t, t.view(4, 5)[1], True),
    ]


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [(x, y, e) for _, x, y, e in _pairs()],
    ids=[name for name, *_ in _pairs()],
)
def test_shares_memory(x, y, expected):
    assert tb.shares_memory(x, y) is expected
    assert tb.shares_memory(y, x) is expected


def test_shares_memory_falls_back_conservatively_when_the_work_bound_is_hit(monkeypatch):
    x = np.zeros((4, 5, 6), dtype=np.int8)
    a, b = x[:, ::7, ::3], x[:, ::3, ::7]
    monkeypatch.setattr(_convert, "SHARES_MEMORY_MAX_WORK", 1)
    assert tb.shares_memory(a, b) is True
    assert tb.shares_memory(a, torch.from_numpy(np.ascontiguousarray(b))) is False
