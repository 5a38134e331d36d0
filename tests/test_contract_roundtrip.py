"""Contract sections 1-4 and 11: public surface, dtype policy, dtype correspondence.

Expected values are computed with NumPy (``astype``, ``view``) or torch, never with
tensorbridge. Bit-exact comparisons go through unsigned views of the same width, so
NaN payloads and -0.0 count.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import inspect
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import strategies as S
import tensorbridge as tb

# The contract promises NumPy's values for casts (section 7) and is silent on NumPy's
# "overflow / invalid value encountered in cast" RuntimeWarnings, so value tests here
# do not fail on them (every other warning still does).
pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning"),
]

# ---------------------------------------------------------------------------
# section 1, 2, 11: the public surface
# ---------------------------------------------------------------------------

PUBLIC_NAMES = [
    "to_tensor",
    "to_numpy",
    "DtypePolicy",
    "FLOAT32",
    "PRESERVE",
    "shares_memory",
    "TensorBridgeError",
    "ShareError",
    "UnsupportedDtypeError",
    "CastingError",
    "__version__",
]


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name_exists(name):
    assert hasattr(tb, name), f"tensorbridge.{name} is missing (section 1)"


def test_version_is_the_installed_version():
    assert isinstance(tb.__version__, str)
    assert tb.__version__ == importlib.metadata.version("tensorbridge")


def test_py_typed_ships():
    assert importlib.resources.files("tensorbridge").joinpath("py.typed").is_file()


def test_policies_are_dtype_policies():
    assert isinstance(tb.FLOAT32, tb.DtypePolicy)
    assert isinstance(tb.PRESERVE, tb.DtypePolicy)


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        ("to_tensor", {"dtype": "FLOAT32", "device": None, "copy": None, "casting": "same_kind"}),
        ("to_numpy", {"dtype": "FLOAT32", "copy": None, "casting": "same_kind"}),
    ],
)
def test_signature(func, expected):
    params = list(inspect.signature(getattr(tb, func)).parameters.values())
    assert params[0].kind is inspect.Parameter.POSITIONAL_ONLY
    by_name = {p.name: p for p in params}
    for name, default in expected.items():
        assert name in by_name, f"{func} lacks the keyword {name!r}"
        param = by_name[name]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, (func, name)
        if default == "FLOAT32":
            assert param.default is tb.FLOAT32
        else:
            assert param.default == default, (func, name, param.default)
    if func == "to_numpy":
        assert "device" not in by_name or by_name["device"].kind is inspect.Parameter.KEYWORD_ONLY
    for param in params[1:]:
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, (func, param.name)


def test_data_is_positional_only():
    with pytest.raises(TypeError):
        tb.to_tensor(data=np.zeros(2, np.float32))


# ---------------------------------------------------------------------------
# NumPy -> torch, every dtype, generated shapes and views, both byte orders
# ---------------------------------------------------------------------------


@given(S.array_views())
def test_to_tensor_preserve_is_bit_exact(inp):
    a = inp.array
    before = S.np_bits(a)
    t = tb.to_tensor(a, dtype=tb.PRESERVE)
    assert isinstance(t, torch.Tensor)
    assert t.dtype == S.torch_dtype(a.dtype)
    assert t.device.type == "cpu"
    S.assert_same_bits(t, a)
    # the input is untouched
    np.testing.assert_array_equal(S.np_bits(a), before)


@given(S.array_views())
def test_to_tensor_default_policy_matches_astype(inp):
    a = inp.array
    t = tb.to_tensor(a)
    expected = S.as_float32(a)
    assert t.dtype == S.torch_dtype(expected.dtype)
    S.assert_same_values(t, expected)


@given(S.array_views(), st.sampled_from(["explicit", "default"]))
def test_to_tensor_default_policy_is_float32(inp, how):
    """FLOAT32 is the default: passing it explicitly gives the same dtype and values."""
    a = inp.array
    t = tb.to_tensor(a, dtype=tb.FLOAT32) if how == "explicit" else tb.to_tensor(a)
    assert t.dtype == S.torch_dtype(S.default_policy_dtype(a.dtype))
    S.assert_same_values(t, S.as_float32(a))


@given(S.array_views())
def test_numpy_round_trip_preserve(inp):
    a = inp.array
    back = tb.to_numpy(tb.to_tensor(a, dtype=tb.PRESERVE), dtype=tb.PRESERVE)
    assert isinstance(back, np.ndarray)
    assert back.dtype == a.dtype.newbyteorder("=")
    assert back.dtype.isnative
    S.assert_same_bits(back, a)


@given(S.array_views())
def test_numpy_round_trip_default(inp):
    a = inp.array
    back = tb.to_numpy(tb.to_tensor(a))
    expected = S.as_float32(a)
    assert back.dtype == expected.dtype
    S.assert_same_values(back, expected)


@given(S.array_views())
def test_to_numpy_of_ndarray_preserve(inp):
    """An ndarray input to to_numpy is handled like to_tensor handles it (section 5)."""
    a = inp.array
    out = tb.to_numpy(a, dtype=tb.PRESERVE)
    assert isinstance(out, np.ndarray)
    assert out.dtype == a.dtype.newbyteorder("=")
    S.assert_same_bits(out, a)


@given(S.array_views())
def test_to_numpy_of_ndarray_default_policy(inp):
    a = inp.array
    out = tb.to_numpy(a)
    expected = S.as_float32(a)
    assert out.dtype == expected.dtype
    S.assert_same_values(out, expected)


@pytest.mark.parametrize("dt", S.STANDARD_DTYPES, ids=str)
@pytest.mark.parametrize("order", [">", "<"])
def test_byte_order_maps_to_native_dtype(dt, order):
    values = np.arange(-3, 9).reshape(3, 4)
    a = values.astype(dt).astype(dt.newbyteorder(order))
    native = a.astype(dt)
    t = tb.to_tensor(a, dtype=tb.PRESERVE)
    assert t.dtype == S.torch_dtype(dt)
    S.assert_same_bits(t, native)
    out = tb.to_numpy(a, dtype=tb.PRESERVE)
    assert out.dtype == dt
    assert out.dtype.isnative
    S.assert_same_bits(out, native)


# ---------------------------------------------------------------------------
# torch -> NumPy, every torch dtype incl. bfloat16 and float8
# ---------------------------------------------------------------------------


@given(S.tensors())
def test_to_numpy_preserve_is_bit_exact(t):
    if t.dtype in S.TORCH_ML_DTYPES:
        pytest.importorskip("ml_dtypes")
    before = S.torch_bits(t)
    out = tb.to_numpy(t, dtype=tb.PRESERVE)
    assert isinstance(out, np.ndarray)
    assert out.dtype == S.numpy_dtype(t.dtype)
    S.assert_same_bits(out, t)
    np.testing.assert_array_equal(S.torch_bits(t), before)


@given(S.tensors())
def test_to_numpy_default_policy_matches_astype(t):
    if t.dtype in S.TORCH_ML_DTYPES:
        pytest.importorskip("ml_dtypes")
    expected = S.as_float32(S.numpy_copy_of(t))
    out = tb.to_numpy(t)
    assert out.dtype == expected.dtype
    S.assert_same_values(out, expected)


@given(S.tensors())
def test_tensor_round_trip_preserve(t):
    if t.dtype in S.TORCH_ML_DTYPES:
        pytest.importorskip("ml_dtypes")
    back = tb.to_tensor(tb.to_numpy(t, dtype=tb.PRESERVE), dtype=tb.PRESERVE)
    assert back.dtype == t.dtype
    S.assert_same_bits(back, t)


@given(S.tensors())
def test_to_tensor_of_tensor_preserve(t):
    out = tb.to_tensor(t, dtype=tb.PRESERVE)
    assert out.dtype == t.dtype
    assert out.device == t.device
    S.assert_same_bits(out, t)


@given(S.tensors())
def test_to_tensor_of_tensor_default_policy(t):
    if t.dtype in S.TORCH_ML_DTYPES:
        pytest.importorskip("ml_dtypes")
    expected = S.as_float32(S.numpy_copy_of(t))
    out = tb.to_tensor(t)
    assert out.dtype == S.torch_dtype(expected.dtype)
    S.assert_same_values(out, expected)


@pytest.mark.parametrize("dt", S.TORCH_ML_DTYPES, ids=str)
def test_ml_dtype_tensors_reach_numpy_bit_exact(dt):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    size = torch.empty((), dtype=dt).element_size()
    every = np.arange(1 << (8 * size), dtype=f"u{size}") if size == 1 else None
    if every is None:  # bfloat16: a spread of patterns, the specials included
        every = np.concatenate(
            [
                np.arange(0, 1 << 16, 257, dtype=np.uint16),
                np.array([0x7F80, 0xFF80, 0x7FC1, 0x8000, 1], np.uint16),
            ]
        )
    t = S.tensor_from_bits(every, dt)
    out = tb.to_numpy(t, dtype=tb.PRESERVE)
    assert out.dtype == np.dtype(getattr(ml_dtypes, str(dt).removeprefix("torch.")))
    np.testing.assert_array_equal(out.view(f"u{size}"), every)
    back = tb.to_tensor(out, dtype=tb.PRESERVE)
    assert back.dtype == dt
    np.testing.assert_array_equal(S.torch_bits(back), every)


@pytest.mark.parametrize("dt", S.TORCH_ML_DTYPES, ids=str)
def test_ml_dtype_tensors_default_policy_give_float32(dt):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    size = torch.empty((), dtype=dt).element_size()
    raw = np.arange(0, 1 << (8 * size), 1 if size == 1 else 97, dtype=f"u{size}")
    t = S.tensor_from_bits(raw, dt)
    expected = raw.view(getattr(ml_dtypes, str(dt).removeprefix("torch."))).astype(np.float32)
    out = tb.to_numpy(t)
    assert out.dtype == np.float32
    S.assert_same_values(out, expected)
    out_t = tb.to_tensor(t)
    assert out_t.dtype == torch.float32
    S.assert_same_values(out_t, expected)


def test_complex32_becomes_complex64_under_default_policy():
    real = [0.0, -0.0, 1.5, 65504.0, float("inf"), 6e-8]
    imag = [1.0, 2.0, -3.25, -65504.0, 0.5, -6e-8]
    c = S.complex32(real, imag)
    expected = np.empty(len(real), np.complex64)
    expected.real = np.array(real, np.float16).astype(np.float32)
    expected.imag = np.array(imag, np.float16).astype(np.float32)
    out = tb.to_numpy(c)
    assert out.dtype == np.complex64
    S.assert_same_values(out, expected)
    out_t = tb.to_tensor(c)
    assert out_t.dtype == torch.complex64
    S.assert_same_values(out_t, expected)


@pytest.mark.parametrize(
    ("ld", "expected"), [(np.longdouble, np.float32), (np.clongdouble, np.complex64)]
)
def test_longdouble_becomes_float32_under_default_policy(ld, expected):
    values = np.array([0.1, -2.5, 1e-3, 3.0], dtype=np.float64)
    a = values.astype(ld)
    want = a.astype(expected)
    t = tb.to_tensor(a)
    assert t.dtype == S.torch_dtype(expected)
    S.assert_same_values(t, want)
    out = tb.to_numpy(a)
    assert out.dtype == expected
    S.assert_same_values(out, want)


# ml_dtypes-only floating types (float8_e4m3, float6, float4 and the like) are floating
# kinds: FLOAT32 makes them float32; torch has no counterpart, so PRESERVE raises

ML_ONLY = [
    name
    for name in (
        "float8_e4m3",
        "float8_e3m4",
        "float8_e4m3b11fnuz",
        "float6_e2m3fn",
        "float6_e3m2fn",
        "float4_e2m1fn",
    )
    if hasattr(S.ml_dtypes, name)
]


@pytest.mark.parametrize("name", ML_ONLY)
def test_ml_dtypes_only_floats_become_float32_under_float32(name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([0.0, 0.5, -1.0, 1.5, 3.0], dtype=np.float32).astype(getattr(ml_dtypes, name))
    expected = values.astype(np.float32)
    tensor = tb.to_tensor(values)
    assert tensor.dtype == torch.float32
    assert tensor.numpy().tobytes() == expected.tobytes()
    array = tb.to_numpy(values)
    assert array.dtype == np.float32
    assert array.tobytes() == expected.tobytes()


@pytest.mark.parametrize("name", ML_ONLY)
def test_ml_dtypes_only_float_under_preserve_into_torch_names_the_dtype(name):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.zeros(3, dtype=getattr(ml_dtypes, name))
    with pytest.raises(tb.UnsupportedDtypeError, match=name) as info:
        tb.to_tensor(values, dtype=tb.PRESERVE)
    assert "no numeric values" not in str(info.value)


# ---------------------------------------------------------------------------
# dtype arguments: every DTypeLike form, policies, concrete dtypes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form", [np.float16, np.dtype("float16"), "float16", torch.float16], ids=repr
)
def test_dtype_forms_to_tensor(form):
    a = np.array([1.0, 2.5, -3.0, 1e-3], dtype=np.float32)
    t = tb.to_tensor(a, dtype=form)
    assert t.dtype == torch.float16
    S.assert_same_values(t, a.astype(np.float16))


@pytest.mark.parametrize("form", [np.int32, np.dtype("int32"), "int32", torch.int32], ids=repr)
def test_dtype_forms_to_numpy(form):
    t = torch.tensor([1, -2, 3], dtype=torch.int64)
    out = tb.to_numpy(t, dtype=form)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.array([1, -2, 3], np.int32))


@pytest.mark.parametrize("form", ["bfloat16", torch.bfloat16, "ml_dtypes"])
def test_bfloat16_dtype_forms(form):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    if form == "ml_dtypes":
        form = ml_dtypes.bfloat16
    a = np.array([1.0, 3.140625, -2.0, 1e30], dtype=np.float32)
    expected = a.astype(ml_dtypes.bfloat16)
    t = tb.to_tensor(a, dtype=form)
    assert t.dtype == torch.bfloat16
    S.assert_same_values(t, expected)
    out = tb.to_numpy(torch.from_numpy(a.copy()), dtype=form)
    assert out.dtype == np.dtype(ml_dtypes.bfloat16)
    S.assert_same_values(out, expected)


def test_to_tensor_numpy_dtype_gives_torch_dtype_for_every_dtype():
    a = np.array([0, 1, 1, 0], dtype=np.uint8)
    for dt in S.STANDARD_DTYPES:
        expected = a.astype(dt)
        t = tb.to_tensor(a, dtype=dt, casting="unsafe")
        assert t.dtype == S.torch_dtype(dt), dt
        S.assert_same_values(t, expected)


def test_to_numpy_torch_dtype_gives_numpy_dtype_for_every_dtype():
    t = torch.tensor([0, 1, 1, 0], dtype=torch.uint8)
    for dt in S.STANDARD_DTYPES:
        out = tb.to_numpy(t, dtype=S.torch_dtype(dt), casting="unsafe")
        assert out.dtype == dt, dt
        S.assert_same_values(out, np.array([0, 1, 1, 0], np.uint8).astype(dt))


# names that mean different dtypes in NumPy and torch raise; dtype objects do not


@pytest.mark.parametrize(
    ("name", "numpy_meaning", "torch_meaning"),
    [("float", "float64", "float32"), ("int", "int64", "int32")],
)
def test_ambiguous_dtype_name_raises_naming_both_meanings(name, numpy_meaning, torch_meaning):
    for function in (tb.to_tensor, tb.to_numpy):
        with pytest.raises(tb.UnsupportedDtypeError) as info:
            function(np.zeros(2), dtype=name)
        assert numpy_meaning in str(info.value)
        assert torch_meaning in str(info.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("double", torch.float64), ("long", torch.int64), ("half", torch.float16),
     ("short", torch.int16), ("bool", torch.bool)],
)  # fmt: skip
def test_dtype_names_both_libraries_agree_on_are_accepted(name, expected):
    assert tb.to_tensor(np.zeros(2), dtype=name, casting="unsafe").dtype == expected


def test_cfloat_is_ambiguous_exactly_where_numpy_reads_it_as_complex128():
    try:
        numpy_meaning = np.dtype("cfloat")
    except TypeError:  # NumPy 2 dropped the name: only torch's meaning is left
        assert tb.to_tensor(np.zeros(2), dtype="cfloat").dtype == torch.complex64
    else:
        assert numpy_meaning == np.complex128
        with pytest.raises(tb.UnsupportedDtypeError, match=r"complex128.*complex64"):
            tb.to_tensor(np.zeros(2), dtype="cfloat")


def test_dtype_objects_stay_accepted():
    assert tb.to_tensor(np.zeros(2), dtype=torch.float).dtype == torch.float32
    assert tb.to_numpy(torch.zeros(2), dtype=np.float64).dtype == np.float64


def test_policy_class_as_dtype_says_to_pass_an_instance():
    with pytest.raises(tb.InvalidArgumentError, match=r"DtypePolicy\(floating="):
        tb.to_tensor(np.zeros(2), dtype=tb.DtypePolicy)  # type: ignore[arg-type]


POLICY_FORMS = [np.float16, "float16", torch.float16]


@pytest.mark.parametrize("form", POLICY_FORMS, ids=repr)
def test_policy_floating_field(form):
    policy = tb.DtypePolicy(floating=form)
    f = np.array([1.0, 0.1, -2.5], dtype=np.float64)
    t = tb.to_tensor(f, dtype=policy)
    assert t.dtype == torch.float16
    S.assert_same_values(t, f.astype(np.float16))
    # complex left None keeps its kind; ints and bool are kept
    c = np.array([1 + 2j, 0.1 - 1j], dtype=np.complex128)
    tc = tb.to_tensor(c, dtype=policy)
    assert tc.dtype == torch.complex128
    S.assert_same_bits(tc, c)
    i = np.array([1, -7, 3], dtype=np.int32)
    assert tb.to_tensor(i, dtype=policy).dtype == torch.int32
    assert tb.to_numpy(torch.from_numpy(f), dtype=policy).dtype == np.float16


@pytest.mark.parametrize("form", [np.complex128, "complex128", torch.complex128], ids=repr)
def test_policy_complex_field(form):
    policy = tb.DtypePolicy(complex=form)
    c = np.array([1 + 2j, 0.1 - 1j], dtype=np.complex64)
    t = tb.to_tensor(c, dtype=policy)
    assert t.dtype == torch.complex128
    S.assert_same_values(t, c.astype(np.complex128))
    f = np.array([0.1, -3.0], dtype=np.float64)
    tf = tb.to_tensor(f, dtype=policy)
    assert tf.dtype == torch.float64
    S.assert_same_bits(tf, f)


def test_policy_with_no_fields_keeps_every_dtype():
    policy = tb.DtypePolicy()
    for dt in S.STANDARD_DTYPES:
        a = np.array([0, 1, 1], dtype=np.uint8).astype(dt)
        t = tb.to_tensor(a, dtype=policy)
        assert t.dtype == S.torch_dtype(dt)
        S.assert_same_bits(t, a)


@pytest.mark.parametrize(
    ("src", "dst", "casting"),
    [
        (np.int32, np.float64, "same_kind"),
        (np.bool_, np.float32, "same_kind"),
        (np.uint8, np.float16, "same_kind"),
        (np.int64, np.complex64, "same_kind"),
        (np.float64, np.int16, "unsafe"),
        (np.complex64, np.int8, "unsafe"),
        (np.float32, np.bool_, "unsafe"),
    ],
)
def test_concrete_dtype_casts_every_element(src, dst, casting):
    values = np.array([0, 1, 2, 3, 7, 100], dtype=np.int64)
    a = values.astype(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex -> real warns in NumPy and torch
        expected = a.astype(dst)
        t = tb.to_tensor(a, dtype=dst, casting=casting)
        out = tb.to_numpy(torch.from_numpy(a.copy()), dtype=dst, casting=casting)
    assert t.dtype == S.torch_dtype(dst)
    S.assert_same_values(t, expected)
    assert out.dtype == np.dtype(dst)
    S.assert_same_values(out, expected)


# ---------------------------------------------------------------------------
# Python scalars, NumPy scalars, nested sequences (section 3)
# ---------------------------------------------------------------------------

SCALARS = [
    (True, tb.FLOAT32, np.bool_),
    (False, tb.PRESERVE, np.bool_),
    (3, tb.FLOAT32, np.int64),
    (-(2**62), tb.PRESERVE, np.int64),
    (1.5, tb.FLOAT32, np.float32),
    (0.1, tb.FLOAT32, np.float32),
    (0.1, tb.PRESERVE, np.float64),
    (-0.0, tb.PRESERVE, np.float64),
    (1e300, tb.PRESERVE, np.float64),
    (1 + 2j, tb.FLOAT32, np.complex64),
    (0.1 - 0.3j, tb.FLOAT32, np.complex64),
    (0.1 - 0.3j, tb.PRESERVE, np.complex128),
]


def _python_expected(value, result_dtype):
    kind = {bool: np.bool_, int: np.int64, float: np.float64, complex: np.complex128}
    return np.array(value, dtype=kind[type(value)]).astype(result_dtype)


@pytest.mark.parametrize(("value", "policy", "dt"), SCALARS, ids=repr)
def test_python_scalar_to_tensor(value, policy, dt):
    t = tb.to_tensor(value, dtype=policy)
    assert t.dtype == S.torch_dtype(dt)
    assert t.shape == ()
    S.assert_same_bits(t, _python_expected(value, dt))


@pytest.mark.parametrize(("value", "policy", "dt"), SCALARS, ids=repr)
def test_python_scalar_to_numpy(value, policy, dt):
    out = tb.to_numpy(value, dtype=policy)
    assert isinstance(out, np.ndarray)
    assert out.dtype == dt
    assert out.shape == ()
    S.assert_same_bits(out, _python_expected(value, dt))


@given(st.floats(allow_nan=False) | st.sampled_from([float("nan"), -0.0]))
def test_python_float_goes_through_float64(x):
    t = tb.to_tensor(x)
    assert t.dtype == torch.float32
    with np.errstate(over="ignore"):
        S.assert_same_values(t, np.array(x, np.float64).astype(np.float32))
    exact = tb.to_tensor(x, dtype=tb.PRESERVE)
    assert exact.dtype == torch.float64
    S.assert_same_bits(exact, np.array(x, np.float64))


NESTED = [
    ([[True, False], [False, True]], tb.FLOAT32, np.bool_),
    ([[1, 2, 3], [4, 5, -6]], tb.FLOAT32, np.int64),
    ((1, 2, 3), tb.PRESERVE, np.int64),
    ([[0.1, 0.2], [0.3, -0.0]], tb.FLOAT32, np.float32),
    ([[0.1, 0.2], [0.3, -0.0]], tb.PRESERVE, np.float64),
    ([0.1 + 1j, 2 - 0.3j], tb.FLOAT32, np.complex64),
    ([0.1 + 1j, 2 - 0.3j], tb.PRESERVE, np.complex128),
    ([[[1.5]], [[2.5]]], tb.FLOAT32, np.float32),
]


def _nested_expected(value, dt):
    flat = value
    while isinstance(flat, (list, tuple)):
        flat = flat[0]
    kind = {bool: np.bool_, int: np.int64, float: np.float64, complex: np.complex128}
    return np.array(value, dtype=kind[type(flat)]).astype(dt)


@pytest.mark.parametrize(("value", "policy", "dt"), NESTED, ids=repr)
def test_nested_sequence_to_tensor(value, policy, dt):
    t = tb.to_tensor(value, dtype=policy)
    assert t.dtype == S.torch_dtype(dt)
    S.assert_same_bits(t, _nested_expected(value, dt))


@pytest.mark.parametrize(("value", "policy", "dt"), NESTED, ids=repr)
def test_nested_sequence_to_numpy(value, policy, dt):
    out = tb.to_numpy(value, dtype=policy)
    assert isinstance(out, np.ndarray)
    assert out.dtype == dt
    S.assert_same_bits(out, _nested_expected(value, dt))


@given(st.lists(st.lists(st.floats(width=64), min_size=3, max_size=3), min_size=1, max_size=4))
def test_nested_float_lists_follow_float64_then_policy(rows):
    with np.errstate(over="ignore"):
        expected = np.array(rows, np.float64).astype(np.float32)
    t = tb.to_tensor(rows)
    assert t.dtype == torch.float32
    S.assert_same_values(t, expected)


@pytest.mark.parametrize(
    ("scalar", "default_dt"),
    [
        (np.float64(0.1), np.float32),
        (np.float16(-2.5), np.float32),
        (np.int16(-7), np.int16),
        (np.uint64(2**63 + 5), np.uint64),
        (np.bool_(True), np.bool_),
        (np.complex128(0.1 + 2j), np.complex64),
    ],
    ids=repr,
)
def test_numpy_scalars(scalar, default_dt):
    t = tb.to_tensor(scalar)
    assert t.shape == ()
    assert t.dtype == S.torch_dtype(default_dt)
    S.assert_same_values(t, np.array(scalar).astype(default_dt))
    exact = tb.to_tensor(scalar, dtype=tb.PRESERVE)
    assert exact.dtype == S.torch_dtype(np.array(scalar).dtype)
    S.assert_same_bits(exact, np.array(scalar))
