"""Contract section 8 (and the dtype refusals of sections 3-4): errors.

Every bad input raises a TensorBridgeError that is also a TypeError or ValueError,
names the dtype where a dtype is the cause, and leaves its input and the process's
global state unchanged.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb

# ---------------------------------------------------------------------------
# the hierarchy
# ---------------------------------------------------------------------------

HIERARCHY = [
    ("TensorBridgeError", (Exception,)),
    ("ShareError", ("TensorBridgeError", ValueError)),
    ("UnsupportedDtypeError", ("TensorBridgeError", TypeError)),
    ("CastingError", ("TensorBridgeError", TypeError)),
]


@pytest.mark.parametrize(("name", "bases"), HIERARCHY, ids=[h[0] for h in HIERARCHY])
def test_error_bases(name, bases):
    cls = getattr(tb, name)
    assert isinstance(cls, type)
    for base in bases:
        base = getattr(tb, base) if isinstance(base, str) else base
        assert issubclass(cls, base), f"{name} is not a subclass of {base.__name__}"
    assert issubclass(cls, Exception)


@pytest.mark.parametrize("name", [h[0] for h in HIERARCHY])
def test_error_module_is_public(name):
    assert getattr(tb, name).__module__ == "tensorbridge"


def test_sibling_errors_are_distinct():
    assert not issubclass(tb.ShareError, TypeError)
    assert not issubclass(tb.CastingError, tb.UnsupportedDtypeError)
    assert not issubclass(tb.UnsupportedDtypeError, tb.CastingError)
    assert not issubclass(tb.TensorBridgeError, (TypeError, ValueError))


# ---------------------------------------------------------------------------
# snapshots: a failed call changes neither its input nor global state
# ---------------------------------------------------------------------------


def _snapshot(x):
    if isinstance(x, np.ma.MaskedArray):
        return ("masked", _snapshot(x.data), np.ma.getmaskarray(x).tolist())
    if isinstance(x, np.ndarray):
        bits = S.np_bits(x).tolist() if x.dtype.newbyteorder("=") in S.ALL_DTYPES else None
        raw = x.tobytes() if x.dtype.kind != "O" else repr(x.tolist())
        return ("ndarray", x.dtype.str, x.shape, x.strides, bool(x.flags.writeable), bits, raw)
    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided or x.device.type == "meta" or x.is_quantized:
            return ("tensor", x.layout, x.device, x.dtype, tuple(x.shape))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                bits = S.torch_bits(x).tolist()
            except (KeyError, RuntimeError, TypeError):
                bits = None
        return (
            "tensor",
            x.dtype,
            tuple(x.shape),
            x.stride(),
            x.requires_grad,
            x.is_conj(),
            x.is_neg(),
            bits,
        )
    return ("value", copy.deepcopy(x))


def _global_state():
    return (
        list(warnings.filters),
        torch.get_default_dtype(),
        torch.get_num_threads(),
        torch.is_grad_enabled(),
        np.geterr(),
        np.get_printoptions(),
    )


def check_failure(func, data, expected, **kwargs):
    """Call ``func(data, **kwargs)``, which must raise ``expected``; return the error."""
    before = _snapshot(data)
    state = _global_state()
    with pytest.raises(expected) as info:
        func(data, **kwargs)
    err = info.value
    assert isinstance(err, tb.TensorBridgeError)
    assert isinstance(err, (TypeError, ValueError))
    assert str(err), "the message is empty"
    assert _snapshot(data) == before, "the failed call changed its input"
    assert _global_state() == state, "the failed call changed global state"
    return err


# ---------------------------------------------------------------------------
# every other bad input (section 8), one by one
# ---------------------------------------------------------------------------

BAD_DATA_TO_TENSOR = {
    "str": "abc",
    "empty str": "",
    "bytes": b"abc",
    "None": None,
    "dict": {"a": 1},
    "ragged lists": [[1, 2], [3]],
    "ragged floats": [[1.0], [2.0, 3.0]],
    "ragged depth": [1, [2, 3]],
    "masked elements": np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False]),
    "masked int elements": np.ma.masked_array(
        np.arange(4, dtype=np.int32).reshape(2, 2), mask=[[True, False], [False, False]]
    ),
}


@pytest.mark.parametrize("case", list(BAD_DATA_TO_TENSOR))
def test_bad_data_to_tensor(case):
    check_failure(tb.to_tensor, BAD_DATA_TO_TENSOR[case], tb.TensorBridgeError)


def _sparse_coo():
    return torch.eye(3).to_sparse()


def _sparse_csr():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
        return torch.eye(3).to_sparse_csr()


def _meta():
    return torch.empty(3, 2, device="meta")


@pytest.mark.parametrize("make", [_sparse_coo, _sparse_csr, _meta], ids=["coo", "csr", "meta"])
def test_sparse_and_meta_tensors_to_numpy(make):
    check_failure(tb.to_numpy, make(), tb.TensorBridgeError)


@pytest.mark.parametrize("make", [_sparse_coo, _sparse_csr, _meta], ids=["coo", "csr", "meta"])
def test_sparse_and_meta_tensors_to_numpy_with_copy(make):
    check_failure(tb.to_numpy, make(), tb.TensorBridgeError, copy=True)


@pytest.mark.parametrize("name", ["float13", "not_a_dtype", "bfloat17"])
def test_unknown_dtype_name(name):
    err = check_failure(tb.to_tensor, np.zeros(3, np.float32), tb.TensorBridgeError, dtype=name)
    assert name in str(err)
    err = check_failure(tb.to_numpy, torch.zeros(3), tb.TensorBridgeError, dtype=name)
    assert name in str(err)


@pytest.mark.parametrize("device", ["gpu", "banana:0", "cuda:abc", "", "cpu:x"])
def test_invalid_device_string(device):
    check_failure(tb.to_tensor, np.zeros(3, np.float32), tb.TensorBridgeError, device=device)


@pytest.mark.parametrize("casting", ["bogus", "Safe", "", "same-kind", None, 1])
def test_invalid_casting_value(casting):
    err = check_failure(
        tb.to_tensor, np.zeros(3, np.float32), tb.TensorBridgeError, casting=casting
    )
    assert "casting" in str(err)
    err = check_failure(tb.to_numpy, torch.zeros(3), tb.TensorBridgeError, casting=casting)
    assert "casting" in str(err)


def test_invalid_casting_is_refused_even_without_a_dtype_change():
    a = np.zeros(3, np.int32)  # the default policy keeps int32: no cast to check
    check_failure(tb.to_tensor, a, tb.TensorBridgeError, casting="bogus")


# ---------------------------------------------------------------------------
# errors from inside torch and NumPy become short TensorBridgeErrors
# ---------------------------------------------------------------------------

ODD = {
    "nested": S.nested_tensor,
    "wrapper subclass": lambda: S.WrapperTensor(torch.zeros(3)),
    "fake tensor": S.fake_tensor,
    "zero tensor": lambda: torch._efficientzerotensor(3),
    "negative shape": lambda: S.InterfaceObject(
        {"shape": (-1,), "typestr": "<f4", "data": (8, False), "version": 3}
    ),
    "bad typestr": lambda: S.InterfaceObject(
        {"shape": (1,), "typestr": "zz", "data": (np.zeros(1).ctypes.data, False), "version": 3}
    ),
    "interface not a dict": lambda: S.InterfaceObject(5),
    "self-referencing list": S.self_referencing_list,
}


@pytest.mark.parametrize("name", list(ODD))
@pytest.mark.parametrize("function", [tb.to_tensor, tb.to_numpy])
@pytest.mark.parametrize("dtype", [tb.FLOAT32, torch.float64])
def test_odd_input_raises_a_short_tensorbridge_error(name, function, dtype):
    data = ODD[name]()
    with pytest.raises(tb.TensorBridgeError) as info:
        function(data, dtype=dtype)
    assert isinstance(info.value, (TypeError, ValueError))
    assert len(str(info.value)) < 400


@pytest.mark.filterwarnings("ignore:.*quantized tensor creation:UserWarning")
def test_quantized_tensor_to_numpy_is_a_dtype_error():
    quantized = torch.quantize_per_tensor(torch.ones(3), 0.5, 0, torch.qint8)
    with pytest.raises(tb.UnsupportedDtypeError, match="qint8"):
        tb.to_numpy(quantized, dtype=tb.PRESERVE)
    assert tb.to_numpy(quantized, dtype=np.float32).tolist() == [1.0, 1.0, 1.0]


def test_negative_tuple_dtype_is_an_argument_error():
    with pytest.raises(tb.InvalidArgumentError):
        tb.to_tensor(np.zeros(2), dtype=("f4", -1))


# ---------------------------------------------------------------------------
# ShareError and CastingError messages name the dtype and the way out
# ---------------------------------------------------------------------------


def test_share_error_for_a_dtype_change_names_the_dtype():
    err = check_failure(tb.to_tensor, np.zeros(3, np.float64), tb.ShareError, copy=False)
    assert "float64" in str(err)
    assert "copy" in str(err)


def test_share_error_for_read_only_input_names_the_way_out():
    a = np.zeros(3, np.float32)
    a.flags.writeable = False
    err = check_failure(tb.to_tensor, a, tb.ShareError, copy=False)
    assert "copy" in str(err)


def test_casting_error_names_both_dtypes_and_the_rule():
    err = check_failure(
        tb.to_tensor, np.zeros(3, np.float64), tb.CastingError, dtype=np.int32, casting="same_kind"
    )
    msg = str(err)
    assert "float64" in msg
    assert "int32" in msg
    assert "same_kind" in msg
    assert "unsafe" in msg


# ---------------------------------------------------------------------------
# UnsupportedDtypeError
# ---------------------------------------------------------------------------

LONGDOUBLE_IS_WIDER = np.dtype(np.longdouble).itemsize > 8
LONGDOUBLE_NAMES = "longdouble|float128|float96|clongdouble|complex256|complex192"


@pytest.mark.skipif(not LONGDOUBLE_IS_WIDER, reason="longdouble is float64 on this platform")
@pytest.mark.parametrize("dt", [np.longdouble, np.clongdouble], ids=["longdouble", "clongdouble"])
def test_longdouble_under_preserve_into_torch(dt):
    a = np.array([1.0, 2.5], dtype=dt)
    err = check_failure(tb.to_tensor, a, tb.UnsupportedDtypeError, dtype=tb.PRESERVE)
    assert any(name in str(err) for name in LONGDOUBLE_NAMES.split("|"))


NO_COUNTERPART = {
    "str": lambda: np.array(["a", "bc"]),
    "bytes": lambda: np.array([b"a", b"bc"]),
    "object": lambda: np.array([1, 2], dtype=object),
    "datetime64": lambda: np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]"),
    "timedelta64": lambda: np.array([1, 2], dtype="timedelta64[s]"),
    "void": lambda: np.zeros(2, dtype="V4"),
    "structured": lambda: np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]),
}
NAMED = {"object": "object", "datetime64": "datetime64", "timedelta64": "timedelta64"}


@pytest.mark.parametrize("case", list(NO_COUNTERPART))
@pytest.mark.parametrize("policy", ["default", "preserve"])
def test_dtypes_torch_lacks_are_unsupported(case, policy):
    a = NO_COUNTERPART[case]()
    kwargs = {"dtype": tb.PRESERVE} if policy == "preserve" else {}
    err = check_failure(tb.to_tensor, a, tb.UnsupportedDtypeError, **kwargs)
    if case in NAMED:
        assert NAMED[case] in str(err)


@pytest.mark.parametrize("case", list(NO_COUNTERPART))
def test_dtypes_torch_lacks_cannot_be_cast(case):
    """Only longdouble/clongdouble can be cast (section 4)."""
    a = NO_COUNTERPART[case]()
    check_failure(tb.to_tensor, a, tb.UnsupportedDtypeError, dtype=torch.float32, casting="unsafe")


def test_complex32_under_preserve_into_numpy():
    err = check_failure(
        tb.to_numpy, S.complex32([1.0] * 3, [0.0] * 3), tb.UnsupportedDtypeError, dtype=tb.PRESERVE
    )
    assert "complex32" in str(err) or "chalf" in str(err)


def _quantized():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor creation is deprecated in torch
        return torch.quantize_per_tensor(torch.rand(3), 0.1, 0, torch.quint8)


@pytest.mark.parametrize(
    "make",
    [
        _quantized,
        lambda: torch.empty(3, dtype=torch.bits8),
        lambda: torch.empty(3, dtype=torch.uint4),
    ],
    ids=["quint8", "bits8", "uint4"],
)
@pytest.mark.parametrize("policy", ["default", "preserve"])
def test_torch_only_dtypes_without_numpy_counterpart(make, policy):
    t = make()
    kwargs = {"dtype": tb.PRESERVE} if policy == "preserve" else {}
    with warnings.catch_warnings():
        # torch may warn about the deprecated quantized dtypes when they are inspected
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        check_failure(tb.to_numpy, t, tb.UnsupportedDtypeError, **kwargs)


# ---------------------------------------------------------------------------
# without ml_dtypes (simulated in a subprocess)
# ---------------------------------------------------------------------------

_NO_ML_DTYPES_CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    try:
        import ml_dtypes
    except ImportError:
        pass
    else:
        raise SystemExit("the ml_dtypes stub was not picked up")
    import tensorbridge as tb

    results = {}
    for name in ["bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
                 "float8_e5m2fnuz"]:
        dt = getattr(torch, name)
        t = torch.tensor([1.0, -2.0, 0.5]).to(dt)
        try:
            tb.to_numpy(t, dtype=tb.PRESERVE)
        except Exception as e:
            results[name] = {
                "type": type(e).__name__,
                "is_unsupported": isinstance(e, tb.UnsupportedDtypeError),
                "message": str(e),
            }
        else:
            results[name] = {"type": None}
        out = tb.to_numpy(t)  # the default policy needs no ml_dtypes
        results[name]["default"] = [str(out.dtype), out.tolist()]
    print(json.dumps(results))
    """
)


def test_without_ml_dtypes_the_message_names_the_extra(tmp_path):
    stub = tmp_path / "stub" / "ml_dtypes"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("ml_dtypes is absent (test stub)")\n')
    env_path = str(tmp_path / "stub")
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", _NO_ML_DTYPES_CHILD],
        capture_output=True,
        text=True,
        timeout=120,
        env=_child_env(env_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    results = json.loads(proc.stdout)
    for name, result in results.items():
        assert result["type"] is not None, f"{name} crossed to NumPy without ml_dtypes"
        assert result["is_unsupported"], (name, result)
        assert "ml-dtypes" in result["message"], (name, result["message"])
        assert result["default"] == ["float32", [1.0, -2.0, 0.5]], (name, result["default"])


def _child_env(stub: str) -> dict[str, str]:
    """The stub goes first on the path, ahead of the real ml_dtypes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (stub, env.get("PYTHONPATH")) if p)
    env.pop("PYTHONWARNINGS", None)
    return env


# ---------------------------------------------------------------------------
# global state is untouched by successful calls too (section 6)
# ---------------------------------------------------------------------------


def test_successful_calls_change_no_global_state():
    state = _global_state()
    ro = np.arange(4, dtype=np.float32)
    ro.flags.writeable = False
    tb.to_tensor(ro)
    tb.to_tensor(np.arange(4.0))
    tb.to_tensor([1.0, 2.0])
    tb.to_numpy(torch.ones(3, requires_grad=True))
    tb.to_numpy(torch.ones(3, dtype=torch.float64))
    tb.to_tensor(np.arange(3, dtype=">f4"), dtype=tb.PRESERVE)
    assert _global_state() == state
