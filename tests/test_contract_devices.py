"""Contract section 10: devices.

The CPU part runs everywhere; the tests marked ``cuda`` run the same properties with
``device="cuda"`` and skip when ``torch.cuda.is_available()`` is False.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import strategies as S
import tensorbridge as tb

pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning"),
]


def _shares(a: np.ndarray, t: torch.Tensor) -> bool:
    """Shown by mutation: a write into the array is seen in the tensor."""
    before = t.detach().cpu().clone()
    a.reshape(-1)[0] += 1
    seen = not torch.equal(t.detach().cpu(), before)
    a.reshape(-1)[0] -= 1
    return seen


# ---------------------------------------------------------------------------
# CPU
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")], ids=["str", "torch.device"])
@pytest.mark.parametrize("copy", [None, False])
def test_cpu_device_keeps_sharing(device, copy):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = tb.to_tensor(a, device=device, copy=copy)
    assert t.device == torch.device("cpu")
    assert _shares(a, t)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), None], ids=str)
def test_cpu_device_values(device):
    a = np.linspace(-1, 1, 9).reshape(3, 3)
    t = tb.to_tensor(a, device=device)
    assert t.device.type == "cpu"
    assert t.dtype == torch.float32
    S.assert_same_bits(t, a.astype(np.float32))


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")], ids=["str", "torch.device"])
def test_cpu_device_copy_true(device):
    a = np.arange(4, dtype=np.float32)
    t = tb.to_tensor(a, device=device, copy=True)
    assert t.device.type == "cpu"
    assert not _shares(a, t)


def test_cpu_tensor_stays_on_cpu():
    t = torch.arange(5, dtype=torch.float32)
    out = tb.to_tensor(t, device="cpu")
    assert out.device.type == "cpu"
    out.add_(1)
    assert t[0].item() == 1.0  # returned as is (or a view of it): shares


@pytest.mark.parametrize("device", ["gpu", "cuda:abc", "cpu:x", "not a device", ""])
def test_invalid_device_string_raises(device):
    a = np.zeros(3, np.float32)
    with pytest.raises(tb.TensorBridgeError) as info:
        tb.to_tensor(a, device=device)
    assert isinstance(info.value, (TypeError, ValueError))
    np.testing.assert_array_equal(a, np.zeros(3, np.float32))


@pytest.mark.parametrize("device", [3.5, object(), b"cpu"], ids=["float", "object", "bytes"])
def test_invalid_device_type_raises(device):
    with pytest.raises(tb.TensorBridgeError) as info:
        tb.to_tensor(np.zeros(3, np.float32), device=device)
    assert isinstance(info.value, (TypeError, ValueError))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize(
    "device", ["cuda", "cuda:0", torch.device("cuda"), 0], ids=["cuda", "cuda:0", "torch", "int"]
)
def test_cuda_without_a_gpu_raises_tensorbridge_error(device):
    a = np.arange(3, dtype=np.float32)
    try:
        tb.to_tensor(a, device=device)
    except tb.TensorBridgeError:
        pass
    except AssertionError as e:  # torch's "Torch not compiled with CUDA enabled"
        pytest.fail(f"torch's AssertionError leaked out: {e}")
    else:
        pytest.fail("device='cuda' without a GPU did not raise")
    np.testing.assert_array_equal(a, np.arange(3, dtype=np.float32))


def test_dlpack_claiming_cuda_without_cuda_raises_tensorbridge_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA exists here")
    with pytest.raises(tb.TensorBridgeError, match="CUDA"):
        tb.to_tensor(S.Producer(np.zeros(3, np.float32), device_type=2))


@pytest.mark.parametrize("device", ["mps", "xpu", "hpu"])
def test_unavailable_backends_raise_a_tensorbridge_error(device: str) -> None:
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("mps is available here")
    with pytest.raises(tb.TensorBridgeError, match="not available") as raised:
        tb.to_tensor(np.ones(2), device=device)
    assert isinstance(raised.value, ValueError)


# ---------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------


@pytest.mark.cuda
@given(S.array_views())
def test_cuda_preserve_values_equal_cpu_conversion(inp):
    a = inp.array
    t = tb.to_tensor(a, dtype=tb.PRESERVE, device="cuda")
    assert t.device.type == "cuda"
    assert t.dtype == S.torch_dtype(a.dtype)
    S.assert_same_bits(t, a)


@pytest.mark.cuda
@given(S.array_views())
def test_cuda_default_policy_values_equal_astype(inp):
    a = inp.array
    t = tb.to_tensor(a, device="cuda")
    expected = S.as_float32(a)
    assert t.device.type == "cuda"
    assert t.dtype == S.torch_dtype(expected.dtype)
    S.assert_same_values(t, expected)


@pytest.mark.cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda:0"), 0], ids=str)
def test_cuda_device_forms(device):
    a = np.arange(6, dtype=np.float32)
    t = tb.to_tensor(a, device=device)
    assert t.device == torch.device("cuda", 0)
    S.assert_same_bits(t, a)


@pytest.mark.cuda
@pytest.mark.parametrize("dt", [np.float32, np.int64, np.uint8, np.bool_], ids=str)
def test_cuda_always_copies(dt):
    a = np.arange(8).astype(dt)
    t = tb.to_tensor(a, device="cuda", dtype=tb.PRESERVE)
    a[0] = 1
    assert t[0].item() == 0
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_tensor(a, device="cuda", copy=False)
    t2 = tb.to_tensor(a, device="cuda", copy=True, dtype=tb.PRESERVE)
    S.assert_same_bits(t2, a)


@pytest.mark.cuda
def test_cpu_tensor_to_cuda_copies_and_copy_false_raises():
    t = torch.arange(4, dtype=torch.float32)
    out = tb.to_tensor(t, device="cuda")
    assert out.device.type == "cuda"
    t.add_(1)
    assert out[0].item() == 0.0
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_tensor(t, device="cuda", copy=False)


@pytest.mark.cuda
def test_cuda_tensor_stays_on_its_device():
    t = torch.arange(10, dtype=torch.float32, device="cuda")
    out = tb.to_tensor(t)
    assert out.device == t.device
    assert out is t or out.data_ptr() == t.data_ptr()
    out.add_(1)
    assert t[0].item() == 1.0
    clone = tb.to_tensor(t, copy=True)
    assert clone.device == t.device
    assert clone.data_ptr() != t.data_ptr()
    clone.add_(5)
    assert t[0].item() == 1.0
    narrowed = tb.to_tensor(t.double())
    assert narrowed.device == t.device
    assert narrowed.dtype == torch.float32


@pytest.mark.cuda
@given(S.tensors())
def test_cuda_tensor_to_numpy_values(t):
    if t.dtype in S.TORCH_ML_DTYPES:
        pytest.importorskip("ml_dtypes")
    expected_exact = S.numpy_copy_of(t)
    g = t.to("cuda")
    out = tb.to_numpy(g, dtype=tb.PRESERVE)
    assert out.dtype == expected_exact.dtype
    S.assert_same_bits(out, expected_exact)
    assert out.flags.c_contiguous
    assert out.flags.writeable
    default = tb.to_numpy(g)
    S.assert_same_values(default, S.as_float32(expected_exact))


@pytest.mark.cuda
def test_cuda_to_numpy_waits_for_pending_work():
    x = torch.zeros(1 << 22, device="cuda")
    for _ in range(50):
        x.add_(1)  # queued asynchronously
    out = tb.to_numpy(x)
    assert (out == 50).all()
    y = torch.ones(1 << 22, device="cuda", dtype=torch.float64)
    for _ in range(30):
        y.mul_(2)
    out = tb.to_numpy(y)
    assert out.dtype == np.float32
    assert (out == 2.0**30).all()


@pytest.mark.cuda
def test_cuda_to_numpy_copy_false_raises_and_copy_true_is_independent():
    g = torch.arange(5, dtype=torch.float32, device="cuda")
    with pytest.raises(tb.ShareError, match="copy"):
        tb.to_numpy(g, copy=False)
    out = tb.to_numpy(g, copy=True)
    g.add_(1)
    np.testing.assert_array_equal(out, np.arange(5, dtype=np.float32))


@pytest.mark.cuda
def test_cuda_tensor_never_shares_memory_with_numpy():
    a = np.arange(5, dtype=np.float32)
    g = torch.from_numpy(a).to("cuda")
    assert tb.shares_memory(a, g) is False
    assert tb.shares_memory(g, a) is False


@pytest.mark.cuda
@given(st.lists(st.integers(0, 255), min_size=1, max_size=64))
def test_widening_uint8_to_float32_on_cuda(values):
    a = np.array(values, dtype=np.uint8)
    t = tb.to_tensor(a, dtype=torch.float32, device="cuda")
    assert t.device.type == "cuda"
    assert t.dtype == torch.float32
    S.assert_same_bits(t, a.astype(np.float32))
    img = np.arange(2 * 3 * 8 * 8).astype(np.uint8).reshape(2, 3, 8, 8)
    t = tb.to_tensor(img, dtype=np.float32, device="cuda")
    S.assert_same_bits(t, img.astype(np.float32))


@pytest.mark.cuda
@given(st.lists(st.floats(width=64), min_size=1, max_size=64))
def test_narrowing_float64_to_float32_on_cuda(values):
    a = np.array(values, dtype=np.float64)
    expected = a.astype(np.float32)
    t = tb.to_tensor(a, device="cuda")
    assert t.device.type == "cuda"
    S.assert_same_values(t, expected)
    t = tb.to_tensor(a, dtype=torch.float32, device="cuda")
    S.assert_same_values(t, expected)


@pytest.mark.cuda
def test_narrowing_float64_to_float16_on_cuda_is_rounded_once():
    a = np.array([1 + 2.0**-11 + 2.0**-40, -(1 + 2.0**-11 + 2.0**-40), 0.1, 65519.99])
    expected = a.astype(np.float16)
    t = tb.to_tensor(a, dtype=torch.float16, device="cuda")
    S.assert_same_bits(t, expected)


@pytest.mark.cuda
def test_cuda_bfloat16_round_trip_under_preserve():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    raw = np.arange(0, 1 << 16, 251, dtype=np.uint16)
    a = raw.view(ml_dtypes.bfloat16)
    g = tb.to_tensor(a, dtype=tb.PRESERVE, device="cuda")
    assert g.dtype == torch.bfloat16
    assert g.device.type == "cuda"
    out = tb.to_numpy(g, dtype=tb.PRESERVE)
    np.testing.assert_array_equal(out.view(np.uint16), raw)


@pytest.mark.cuda
@pytest.mark.parametrize("elements", [1000, 1 << 20])  # below and above the pinned threshold
@pytest.mark.parametrize(
    ("source", "target"),
    [(np.float64, torch.float32), (np.uint8, torch.float32), (np.float32, None)],
)
def test_cuda_tensor_back_to_the_cpu_through_to_tensor(
    elements: int, source: type, target: torch.dtype | None
) -> None:
    host = (np.arange(elements) % 251).astype(source)
    on_gpu = torch.from_numpy(host).to("cuda")
    dtype = target if target is not None else tb.PRESERVE
    back = tb.to_tensor(on_gpu, dtype=dtype, device="cpu")
    expected = tb.to_tensor(torch.from_numpy(host), dtype=dtype)
    assert back.device.type == "cpu"
    assert back.dtype == expected.dtype
    assert torch.equal(back, expected)
    on_gpu.fill_(7)  # the result is a copy, final when the call returned
    assert torch.equal(back, expected)


def test_remembered_devices_still_refuse_lookalike_values():
    # parse_device remembers devices that name an index; a bool that equals an
    # index (True == 1, False == 0) must still be refused, before and after.
    a = np.arange(3, dtype=np.float32)
    for _ in range(2):
        assert tb.to_tensor(a, device="cpu").device.type == "cpu"
        assert tb.to_tensor(a, device=torch.device("cpu")).device.type == "cpu"
        for bad in (True, False, 1.0):
            with pytest.raises(tb.InvalidArgumentError):
                tb.to_tensor(a, device=bad)
