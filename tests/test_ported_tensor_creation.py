"""PyTorch's ``as_tensor``/``asarray`` tests, ported to tensorbridge with ``dtype=tb.PRESERVE``.

Each test names its original (pytorch/pytorch, test/test_tensor_creation_ops.py,
class TestAsArray, and TestTensorCreation::test_as_tensor) and keeps its
assertions, with ``torch.as_tensor`` / ``torch.asarray`` replaced by
``tb.to_tensor(..., dtype=tb.PRESERVE)`` (or the explicit ``dtype=``, ``copy=``
and ``device=`` the original passes). Where the contract deliberately differs a
comment says so at that line: Python float and complex data stay float64 and
complex128 under ``PRESERVE`` (torch gives float32 and complex64); ``copy=False``
raises ``ShareError`` where sharing is impossible; a dtype change follows the
casting rule (section 7), so the originals' unsafe casts pass
``casting="unsafe"``; a tensor that requires grad keeps its autograd graph.
torch's ``requires_grad=`` option has no counterpart and those checks are
dropped. CPU only: the device-generic and CUDA parts are skipped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.dlpack import to_dlpack

import tensorbridge as tb

P = tb.PRESERVE

# common_dtype.all_types_and_complex_and(torch.half, torch.bool, torch.bfloat16)
ALL_TENSOR_DTYPES = [
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
    torch.float16,
    torch.bool,
    torch.bfloat16,
]
# the same without bool (the originals' DLPack dtypes)
DLPACK_DTYPES = [d for d in ALL_TENSOR_DTYPES if d is not torch.bool]
# set(common_utils.numpy_to_torch_dtype_dict.values())
NUMPY_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.uint16,
    torch.uint32,
    torch.uint64,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
]

NUMPY_1 = int(np.__version__.split(".")[0]) < 2


def _dlpack_params(dtypes: list[torch.dtype]) -> list[Any]:
    return list(dtypes)


def _make(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """torch.testing.make_tensor on the CPU, with no zero elements (so a write shows)."""
    t = torch.testing.make_tensor(shape, dtype=dtype, device="cpu")
    if dtype is torch.bool:
        return t
    return torch.where(t == 0, torch.ones((), dtype=dtype), t)


class _Producer:
    """A DLPack producer over a tensor.

    Contract difference: torch.asarray takes the bare capsule of
    torch.utils.dlpack.to_dlpack; tensorbridge takes objects with ``__dlpack__``
    (section 5, rule 1), so the ported tests hand it a producer.
    """

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.tensor.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self.tensor.__dlpack_device__()


def identity(tensor: torch.Tensor) -> Any:
    return tensor


def to_numpy(tensor: torch.Tensor) -> Any:
    return tensor.numpy()


def to_memview(tensor: torch.Tensor) -> Any:
    return memoryview(to_numpy(tensor))


def to_producer(tensor: torch.Tensor) -> Any:
    return _Producer(tensor)


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The bytes of a tensor, C order (bitwise comparison works for every dtype,
    uint16/32/64 included, which have no arithmetic or equality kernels in torch)."""
    return tensor.contiguous().reshape(-1).view(torch.uint8)


def _flip_first_byte(tensor: torch.Tensor) -> int:
    """Write to a contiguous tensor in place (lowest bit of its first byte); return the new byte."""
    first = tensor.view(-1)[:1].view(torch.uint8)
    first[0] ^= 1
    return int(first[0])


def _check(
    original: torch.Tensor,
    cvt: Any = identity,
    is_alias: bool = True,
    same_dtype: bool = True,
    same_device: bool = True,
    **kwargs: Any,
) -> None:
    """TestAsArray._check, with tb.to_tensor in place of torch.asarray."""
    kwargs.setdefault("dtype", P)
    result = tb.to_tensor(cvt(original), **kwargs)
    assert isinstance(result, torch.Tensor)

    # 1. The storage pointers should be equal only if 'is_alias' is set
    # (and, beyond the original, a write to the result shows in the source only then)
    before = int(_bytes(original)[0])
    if is_alias:
        assert result.data_ptr() == original.data_ptr()
        written = _flip_first_byte(result)
        assert int(_bytes(original)[0]) == written
    else:
        assert result.data_ptr() != original.data_ptr()
        _flip_first_byte(result)  # a copied result is C-contiguous (section 5)
        assert int(_bytes(original)[0]) == before

    # 2. Comparison of the elements only takes place if the original
    # sequence and the resulting tensor have the same data type
    if same_dtype:
        assert result.dtype == original.dtype
        assert result.shape == original.shape
        if is_alias:
            assert torch.equal(_bytes(result), _bytes(original))
        else:
            # the write above went to the copy only: compare the untouched rest
            assert torch.equal(_bytes(result)[1:], _bytes(original)[1:])
    else:
        assert original.shape == result.shape
        assert kwargs["dtype"] == result.dtype

    # 3. Given the specified target device, we first check whether
    # its type is the same, and then if its index is the same (if it is not None)
    device = original.device if same_device else torch.device(kwargs.get("device", "cpu"))
    assert device.type == result.device.type
    if device.index is not None:
        assert device.index == result.device.index

    # 4. By default, 'requires_grad' is unset (torch's requires_grad= has no
    # counterpart in tensorbridge; only the default is checked)
    assert result.requires_grad is False


def _test_alias_with_cvt(
    cvt: Any, dtype: torch.dtype, shape: tuple[int, ...] = (5, 5), only_with_dtype: bool = False
) -> None:
    original = _make(shape, dtype)

    def check(**kwargs: Any) -> None:
        _check(original, cvt=cvt, **kwargs)

    if not only_with_dtype:
        check(copy=False)
        check(device="cpu")
        check(device="cpu", copy=False)

    check(dtype=dtype)
    check(dtype=dtype, copy=False)
    # check(requires_grad=..., dtype=dtype): no requires_grad option in tensorbridge
    check(device="cpu", dtype=dtype)
    check(device="cpu", dtype=dtype, copy=False)


@pytest.mark.parametrize("dtype", ALL_TENSOR_DTYPES, ids=str)
def test_alias_from_tensor(dtype: torch.dtype) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_alias_from_tensor."""
    _test_alias_with_cvt(identity, dtype)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
def test_alias_from_numpy(dtype: torch.dtype) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_alias_from_numpy."""
    _test_alias_with_cvt(to_numpy, dtype)


@pytest.mark.parametrize("dtype", _dlpack_params(DLPACK_DTYPES), ids=str)
def test_alias_from_dlpack(dtype: torch.dtype) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_alias_from_dlpack.

    The bare capsule becomes a ``__dlpack__`` producer (see ``_Producer``).
    """
    if NUMPY_1 or dtype is torch.bfloat16:
        # Contract difference (section 6): NumPy 1 cannot read a producer's
        # read-only flag, nor can NumPy 2 import bfloat16 (torch imports it, and
        # cannot read the flag either), so the memory counts as read-only:
        # copied, never aliased.
        original = _make((5, 5), dtype)
        _check(original, cvt=to_producer, is_alias=False)
        with pytest.raises(tb.ShareError):
            tb.to_tensor(to_producer(original), dtype=P, copy=False)
        return
    _test_alias_with_cvt(to_producer, dtype)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
def test_alias_from_buffer(dtype: torch.dtype) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_alias_from_buffer."""
    _test_alias_with_cvt(to_memview, dtype, shape=(5,), only_with_dtype=True)


def _test_copy_with_cvt(
    cvt: Any, dtype: torch.dtype, shape: tuple[int, ...] = (5, 5), only_with_dtype: bool = False
) -> None:
    original = _make(shape, dtype)

    def check(**kwargs: Any) -> None:
        _check(original, cvt=cvt, is_alias=False, **kwargs)

    if not only_with_dtype:
        check(copy=True)
        check(device="cpu", copy=True)

    # check(requires_grad=..., dtype=dtype, copy=True): no requires_grad option
    check(dtype=dtype, copy=True)
    check(device="cpu", dtype=dtype, copy=True)

    # "Copy is forced because of different device": CUDA only, skipped (CPU port)

    # Copy is forced because of different dtype
    if not only_with_dtype:
        for other in ALL_TENSOR_DTYPES:
            if dtype != other:
                # Contract difference (section 7): torch.asarray casts anything;
                # tensorbridge checks the casting rule, so the unsafe casts ask for it.
                check(same_dtype=False, dtype=other, casting="unsafe")
                check(same_dtype=False, dtype=other, copy=True, casting="unsafe")


@pytest.mark.parametrize("dtype", ALL_TENSOR_DTYPES, ids=str)
def test_copy_tensor(dtype: torch.dtype) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_copy_tensor."""
    _test_copy_with_cvt(identity, dtype)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
def test_copy_from_numpy(dtype: torch.dtype) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_copy_from_numpy."""
    _test_copy_with_cvt(to_numpy, dtype)


@pytest.mark.parametrize("dtype", _dlpack_params(DLPACK_DTYPES), ids=str)
def test_copy_from_dlpack(dtype: torch.dtype) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_copy_from_dlpack.

    The bare capsule becomes a ``__dlpack__`` producer (see ``_Producer``).
    """
    _test_copy_with_cvt(to_producer, dtype)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=str)
def test_copy_from_buffer(dtype: torch.dtype) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_copy_from_buffer."""
    _test_copy_with_cvt(to_memview, dtype, shape=(5,), only_with_dtype=True)


def test_capsule_is_not_array_data() -> None:
    """Contract difference to TestAsArray's DLPack tests, which pass the bare capsule.

    tensorbridge takes objects with ``__dlpack__`` (section 5, rule 1); a bare
    PyCapsule is refused with an InvalidInputError that names the way out.
    """
    with pytest.raises(tb.InvalidInputError, match="__dlpack__"):
        tb.to_tensor(to_dlpack(torch.ones(3)), dtype=P)


@pytest.mark.parametrize("dtype", ALL_TENSOR_DTYPES, ids=str)
def test_copy_list(dtype: torch.dtype) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_copy_list."""
    original = _make((5, 5), dtype)

    def check(**kwargs: Any) -> None:
        _check(original, torch.Tensor.tolist, is_alias=False, **kwargs)

    # Contract difference (section 7): the list holds Python ints or floats
    # (int64/float64 before the dtype); torch casts them to any dtype, tensorbridge
    # checks the casting rule, so the narrowing ones ask for casting="unsafe".
    check(device="cpu", dtype=dtype, casting="unsafe")
    # check(..., requires_grad=...): no requires_grad option in tensorbridge
    check(device="cpu", dtype=dtype, copy=True, casting="unsafe")


def test_unsupported_alias() -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_unsupported_alias.

    torch raises ValueError; tensorbridge raises ShareError (a ValueError, section 8)
    with its own wording. The other-device case needs CUDA and is skipped.
    """
    original = _make((5, 5), torch.float32)

    with pytest.raises(tb.ShareError, match="dtype float64 differs from the input dtype float32"):
        tb.to_tensor(original, dtype=torch.float64, copy=False)

    with pytest.raises(tb.ShareError, match="list is not an array"):
        tb.to_tensor(original.tolist(), dtype=P, copy=False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64], ids=str)
def test_retain_autograd_history(dtype: torch.dtype) -> None:
    """Ported from pytorch.

    test/test_tensor_creation_ops.py::TestAsArray::test_retain_autograd_history.

    Contract difference (sections 5 and 7): torch.asarray without requires_grad
    drops the history; tensorbridge returns the tensor as is (copy=None) or a copy
    that keeps the autograd graph (copy=True), so gradients flow back. The
    requires_grad=True/False variants have no counterpart and are dropped.
    """
    original = torch.testing.make_tensor((5, 5), dtype=dtype, device="cpu", requires_grad=True)
    # 'cloned' has 'grad_fn=<CloneBackwards>'
    cloned = original.clone()

    for copy in (None, True):
        original.grad = None
        a = tb.to_tensor(cloned, dtype=P, copy=copy)
        assert a.requires_grad
        assert a.grad_fn is not None
        assert (a is cloned) == (copy is None)
        a.real.sum().backward()
        assert original.grad is not None
        assert torch.equal(original.grad, torch.ones((5, 5), dtype=dtype))


# torch.as_tensor's dtype for each example, and what PRESERVE gives instead
# (contract section 3: Python floats are float64, complex numbers complex128,
# before the policy, and PRESERVE keeps them).
PRESERVE_DTYPE_FOR = {torch.float32: torch.float64, torch.complex64: torch.complex128}


def test_astensor_consistency() -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_astensor_consistency.

    The original compares torch.asarray with torch.as_tensor; here tb.to_tensor
    is compared with torch.as_tensor.
    """
    examples: list[Any] = [
        # Scalars
        True,
        42,
        1.0,
        # Homogeneous Lists
        [True, True, False],
        [1, 2, 3, 42],
        [0.0, 1.0, 2.0, 3.0],
        # Mixed Lists
        [True, False, 0],
        [0.0, True, False],
        [0, 1.0, 42],
        [0.0, True, False, 42, 5j],
        # With Complex
        [0.0, True, False, 42, 5j],
        # With Range
        range(5),
    ]

    for e in examples:
        original = torch.as_tensor(e)
        t = tb.to_tensor(e, dtype=P)
        # Contract difference (section 3): float data stays float64 and complex
        # data complex128 under PRESERVE, where torch.as_tensor gives float32/complex64.
        assert t.dtype == PRESERVE_DTYPE_FOR.get(original.dtype, original.dtype), e
        assert torch.equal(t, torch.as_tensor(e, dtype=t.dtype)), e
        assert torch.equal(t.to(original.dtype), original), e


def test_numpy_scalars() -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_numpy_scalars."""
    scalar = np.float64(0.5)

    # torch raises RuntimeError "can't alias NumPy scalars."; the contract
    # (sections 5, 8) says ShareError.
    with pytest.raises(tb.ShareError, match="float64"):
        tb.to_tensor(scalar, dtype=P, copy=False)

    tensor = tb.to_tensor(scalar, dtype=P)
    assert tensor.dim() == 0
    assert tensor.item() == scalar.item()
    assert tensor.dtype == torch.float64
    # Regression test for https://github.com/pytorch/pytorch/issues/97021
    zerodim_arr = np.array(1.0)
    # Contract difference (section 7): float64 to int32 is not same_kind, so the
    # cast torch does silently needs casting="unsafe".
    with pytest.raises(tb.CastingError):
        tb.to_tensor(zerodim_arr, dtype=torch.int32)
    tensor = tb.to_tensor(zerodim_arr, dtype=torch.int32, casting="unsafe")
    assert tensor.dim() == 0
    assert tensor.item() == zerodim_arr.item()
    assert tensor.dtype == torch.int32


def test_default_device() -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestAsArray::test_default_device.

    CPU only.
    """
    original = torch.arange(5)

    examples: list[tuple[Any, dict[str, Any]]] = [
        (3, {}),
        (original, {}),
        (to_numpy(original), {}),
        (to_memview(original), {"dtype": original.dtype}),
    ]

    for data, kwargs in examples:
        kwargs.setdefault("dtype", P)
        with torch.device("cpu"):
            tensor = tb.to_tensor(data, **kwargs)
            assert tensor.device == torch.device("cpu")

            # Check the contents of the tensor.
            if isinstance(data, int):
                assert data == tensor.item()
            else:
                assert torch.equal(torch.as_tensor(np.asarray(data)), tensor)


def test_as_tensor() -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestTensorCreation::test_as_tensor."""
    # from python data
    x = [[0, 1], [2, 3]]
    t = tb.to_tensor(x, dtype=P)
    assert t.dtype == torch.tensor(x).dtype
    assert torch.equal(torch.tensor(x), t)
    t = tb.to_tensor(x, dtype=torch.float32)
    assert t.dtype == torch.float32
    assert torch.equal(torch.tensor(x, dtype=torch.float32), t)

    # python data with heterogeneous types
    # torch raises TypeError "invalid data type"; the contract (section 8) asks for
    # a TensorBridgeError that is a TypeError or ValueError (InvalidInputError, see
    # the test below for the exact class)
    z: list[Any] = [0, "torch"]
    with pytest.raises((TypeError, ValueError)) as info:
        tb.to_tensor(z, dtype=P)
    assert isinstance(info.value, tb.TensorBridgeError)

    # python data with self-referential lists
    z = [0]
    z += [z]
    with pytest.raises((TypeError, ValueError)) as info:
        tb.to_tensor(z, dtype=P)
    assert isinstance(info.value, tb.TensorBridgeError)

    z = [[1, 2], z]
    with pytest.raises((TypeError, ValueError)) as info:
        tb.to_tensor(z, dtype=P)
    assert isinstance(info.value, tb.TensorBridgeError)

    # from tensor (doesn't copy unless type is different)
    y = torch.tensor(x)
    assert tb.to_tensor(y, dtype=P) is y
    assert tb.to_tensor(y, dtype=torch.float32) is not y
    # (the CUDA part is skipped: CPU port)

    # doesn't copy
    rng = np.random.default_rng(0)
    for dtype in [np.float64, np.int64, np.int8, np.uint8]:
        n = rng.random((5, 6)).astype(dtype)
        n_astensor = tb.to_tensor(n, dtype=P)
        assert torch.equal(torch.tensor(n), n_astensor)
        n_astensor[0][0] = 25.7
        assert torch.equal(torch.tensor(n), n_astensor)

    # changing dtype causes copy
    n = rng.random((5, 6)).astype(np.float32)
    n_astensor = tb.to_tensor(n, dtype=torch.float64)
    assert torch.equal(torch.tensor(n, dtype=torch.float64), n_astensor)
    n_astensor[0][1] = 250.8
    assert not torch.equal(torch.tensor(n, dtype=torch.float64), n_astensor)

    # changing device causes copy: CUDA only, skipped (CPU port)


def _self_referential() -> list[Any]:
    z: list[Any] = [0]
    z += [z]
    return z


@pytest.mark.parametrize(
    "make",
    [lambda: [0, "torch"], _self_referential, lambda: [[1, 2], _self_referential()]],
    ids=["heterogeneous", "self-referential", "nested self-referential"],
)
def test_as_tensor_bad_list_contents_raise_invalid_input_error(make: Any) -> None:
    """Ported from pytorch test/test_tensor_creation_ops.py::TestTensorCreation::test_as_tensor.

    The original's TypeError checks, held to the exact class section 8 names.
    """
    with pytest.raises(tb.InvalidInputError):
        tb.to_tensor(make(), dtype=P)
