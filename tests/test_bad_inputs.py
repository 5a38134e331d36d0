"""Contract section 8: a broad sweep of odd inputs, none of which may escape, hang or crash.

Every input here goes through ``to_tensor``, ``to_numpy`` and ``shares_memory``
under a few option combinations. Each call either converts or raises a
``TensorBridgeError`` that is also a ``TypeError`` or ``ValueError``, with a
short message; never another exception type, never a hang (an alarm ends any
call that runs for seconds). Crash-class inputs (null or dangling pointers)
live in test_contract_subprocess.py, in a child process.
"""

from __future__ import annotations

import array as pyarray
import collections
import ctypes
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb

ml_dtypes = pytest.importorskip("ml_dtypes")

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGALRM"), reason="the hang guard needs signal.alarm (POSIX)"
)


class Hang(Exception):
    pass


@pytest.fixture(autouse=True)
def _alarm() -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise Hang("the call ran for more than 10 seconds")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def quietly(make: Callable[[], object]) -> Callable[[], object]:
    """Build an input with warnings off (torch warns when some odd tensors are made)."""

    def build() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return make()

    return build


# --------------------------------------------------------------------------- #
# the inputs
# --------------------------------------------------------------------------- #


class Loop(list[Any]):
    def __getitem__(self, index: object) -> Any:
        return self


class ArrayRaising:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __array__(self, dtype: object = None, copy: object = None) -> Any:
        raise self.error


class ArrayReturning:
    def __init__(self, value: object) -> None:
        self.value = value

    def __array__(self, dtype: object = None, copy: object = None) -> Any:
        return self.value


class DLPackOdd:
    def __init__(self, device: object, capsule: Callable[[], object]) -> None:
        self.device = device
        self.capsule = capsule

    def __dlpack__(self, **kwargs: Any) -> object:
        return self.capsule()

    def __dlpack_device__(self) -> object:
        return self.device


class SequenceOfItself(collections.abc.Sequence[Any]):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int) and not 0 <= index < 2:
            raise IndexError(index)
        return self


class BrokenLen(list[Any]):
    def __len__(self) -> int:
        raise RuntimeError("no length")


def _raise(error: BaseException) -> Any:
    raise error


def _misaligned() -> np.ndarray[Any, Any]:
    raw = np.zeros(33, dtype=np.uint8)
    return raw[1:].view(np.float64)


def _structured() -> np.ndarray[Any, Any]:
    return np.zeros(3, dtype=[("a", "<f4"), ("b", "<i8")])


def _torch_dtype_tensor(name: str) -> Callable[[], object]:
    def make() -> object:
        dtype = getattr(torch, name, None)
        if dtype is None:
            return torch.zeros(2)
        return torch.empty(4, dtype=dtype)

    return make


_VALID_BUFFER = np.arange(4, dtype=np.float32)

INPUTS: dict[str, Callable[[], object]] = {
    # Python values that are not array data
    "str": lambda: "123",
    "bytes": lambda: b"\x00\x01",
    "None": lambda: None,
    "dict": lambda: {"a": 1},
    "set": lambda: {1, 2},
    "frozenset": lambda: frozenset({1}),
    "object": object,
    "function": lambda: len,
    "generator": lambda: (i for i in range(3)),
    "iterator": lambda: iter([1, 2]),
    "type": lambda: int,
    "Ellipsis": lambda: ...,
    "slice": lambda: slice(1, 2),
    "huge int": lambda: 2**80,
    "negative huge int": lambda: -(2**80),
    "nan": lambda: float("nan"),
    "inf": lambda: float("inf"),
    "complex": lambda: 1 + 2j,
    "bool": lambda: True,
    # sequences
    "empty list": list,
    "empty tuple": tuple,
    "nested empty": lambda: [[], []],
    "ragged": lambda: [[1, 2], [3]],
    "ragged deep": lambda: [[[1]], [2]],
    "mixed str": lambda: [1, "a"],
    "list of None": lambda: [None, None],
    "list of dicts": lambda: [{"a": 1}],
    "list of bytes": lambda: [b"a", b"b"],
    "list of objects": lambda: [object()],
    "list of arrays ragged": lambda: [np.zeros(2), np.zeros(3)],
    "list of tensors": lambda: [torch.zeros(2), torch.zeros(2)],
    "list of tensors ragged": lambda: [torch.zeros(2), torch.zeros(3)],
    "list of grad tensors": lambda: [torch.zeros(2, requires_grad=True)],
    "list of huge ints": lambda: [2**64, 2**65],
    "list int overflow": lambda: [-1, 2**63],
    "list mixed huge": lambda: [1.5, 2**70],
    "list of complex": lambda: [1j, 2],
    "list nan int": lambda: [float("nan"), 1],
    "self-referencing list": lambda: S.self_referencing_list(1),
    "self-referencing dict in list": lambda: [collections.defaultdict(list)],
    "deep 40": lambda: S.deeply_nested(1.0, 40),
    "deep 100": lambda: S.deeply_nested(1.0, 100),
    "deep 2000": lambda: S.deeply_nested(1.0, 2000),
    "Loop list": lambda: Loop([1, 2]),
    "Loop int32": lambda: Loop([np.int32(1)]),
    "Sequence of itself": SequenceOfItself,
    "broken len": lambda: BrokenLen([1, 2]),
    "range": lambda: range(4),
    "empty range": lambda: range(0),
    "huge range": lambda: range(2**62, 2**62 + 3),
    "range beyond int64": lambda: range(2**63, 2**63 + 2),
    "deque": lambda: collections.deque([1.0, 2.0]),
    "deque of str": lambda: collections.deque(["a"]),
    "list of numpy scalars": lambda: [np.float16(1), np.int8(2)],
    "list of ml scalars": lambda: [ml_dtypes.bfloat16(1.0)],
    "tuple of lists": lambda: ([1], [2]),
    "list of ranges": lambda: [range(2), range(2)],
    # buffers
    "bytearray": lambda: bytearray(b"\x00\x01"),
    "memoryview": lambda: memoryview(b"abcd"),
    "memoryview cast": lambda: memoryview(bytearray(8)).cast("d"),
    "memoryview 2d": lambda: memoryview(bytearray(8)).cast("B", (2, 4)),
    "memoryview bool": lambda: memoryview(bytearray(2)).cast("?"),
    "memoryview of struct": lambda: memoryview(np.zeros(2, dtype=[("a", "i4")])),
    "array.array": lambda: pyarray.array("d", [1.0, 2.0]),
    "array.array u": lambda: pyarray.array("u", "ab"),
    "ctypes array": lambda: (ctypes.c_double * 3)(1, 2, 3),
    "ctypes struct": lambda: ctypes.c_int(3),
    # NumPy arrays of every odd kind
    "str array": lambda: np.array(["a", "b"]),
    "bytes array": lambda: np.array([b"a"]),
    "object array": lambda: np.array([1, None], dtype=object),
    "object array of ints": lambda: np.array([1, 2], dtype=object),
    "datetime64": lambda: np.array(["2020-01-01"], dtype="datetime64[D]"),
    "timedelta64": lambda: np.array([1], dtype="timedelta64[s]"),
    "void": lambda: np.zeros(2, dtype="V4"),
    "structured": _structured,
    "structured field": lambda: _structured()["a"],
    "record": lambda: np.rec.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    "subarray dtype": lambda: np.zeros(2, dtype=("f4", (2,))),
    "masked": lambda: np.ma.masked_array([1.0, 2.0], mask=[True, False]),
    "masked no mask": lambda: np.ma.masked_array([1.0, 2.0]),
    "matrix": quietly(lambda: np.matrix([[1.0, 2.0]])),
    "0-d": lambda: np.array(3.0),
    "empty": lambda: np.zeros((0, 3)),
    "broadcast": lambda: np.broadcast_to(np.arange(3.0), (1000, 3)),
    "zero strides": lambda: np.broadcast_to(np.float32(1), (1000, 1000)),
    "negative strides": lambda: np.arange(6.0)[::-1],
    "big endian": lambda: np.arange(3, dtype=">f8"),
    "big endian complex": lambda: np.arange(3, dtype=">c16"),
    "misaligned": _misaligned,
    "longdouble": lambda: np.ones(2, dtype=np.longdouble),
    "clongdouble": lambda: np.ones(2, dtype=np.clongdouble),
    "float16 nan": lambda: np.array([np.nan, np.inf], dtype=np.float16),
    "uint64 big": lambda: np.array([2**64 - 1], dtype=np.uint64),
    "read-only": lambda: np.frombuffer(b"\x00" * 8, dtype=np.float32),
    "float8_e4m3": lambda: np.zeros(2, dtype=ml_dtypes.float8_e4m3),
    "float4": lambda: np.zeros(2, dtype=ml_dtypes.float4_e2m1fn),
    "int4": lambda: np.zeros(2, dtype=ml_dtypes.int4),
    "bfloat16 array": lambda: np.ones(2, dtype=ml_dtypes.bfloat16),
    "numpy scalar str": lambda: np.str_("a"),
    "numpy datetime scalar": lambda: np.datetime64("2020-01-01"),
    "numpy void scalar": lambda: np.void(b"ab"),
    "numpy longdouble scalar": lambda: np.longdouble(1),
    # tensors of every odd kind
    "sparse coo": lambda: torch.eye(2).to_sparse(),
    "sparse csr": quietly(lambda: torch.eye(2).to_sparse_csr()),
    "meta": lambda: torch.empty(2, device="meta"),
    "nested": S.nested_tensor,
    "nested jagged": quietly(
        lambda: torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)], layout=torch.jagged)
    ),
    "quantized": quietly(lambda: torch.quantize_per_tensor(torch.ones(2), 0.5, 0, torch.qint8)),
    "quint4x2": quietly(lambda: torch.quantize_per_tensor(torch.ones(2), 0.5, 0, torch.quint4x2)),
    "complex32": quietly(lambda: torch.zeros(2, dtype=torch.complex32)),
    "zero tensor": lambda: torch._efficientzerotensor(2),
    "fake": S.fake_tensor,
    "wrapper": lambda: S.WrapperTensor(torch.zeros(2)),
    "conj": lambda: torch.ones(2, dtype=torch.complex64).conj(),
    "neg bit": lambda: torch.ones(2, dtype=torch.complex64).conj().imag,
    "grad": lambda: torch.ones(2, requires_grad=True),
    "grad complex": lambda: torch.ones(2, dtype=torch.complex128, requires_grad=True),
    "expanded": lambda: torch.ones(1).expand(10**6),
    "overlapping strides": lambda: torch.ones(4).as_strided((3, 2), (1, 1)),
    "storage offset": lambda: torch.arange(10.0)[3:],
    "uint4 tensor": _torch_dtype_tensor("uint4"),
    "int3 tensor": _torch_dtype_tensor("int3"),
    "bits8 tensor": _torch_dtype_tensor("bits8"),
    "bits16 tensor": _torch_dtype_tensor("bits16"),
    "float4 x2 tensor": _torch_dtype_tensor("float4_e2m1fn_x2"),
    "e8m0 tensor": _torch_dtype_tensor("float8_e8m0fnu"),
    "parameter": lambda: torch.nn.Parameter(torch.ones(2)),
    "tensor subclass": lambda: torch.ones(2).as_subclass(type("Sub", (torch.Tensor,), {})),
    "inference tensor": lambda: _inference(),
    # lying array interfaces (the null-pointer one is in test_contract_subprocess.py)
    "interface not dict": lambda: S.InterfaceObject(3),
    "interface None": lambda: S.InterfaceObject(None),
    "interface empty dict": lambda: S.InterfaceObject({}),
    "interface negative shape": lambda: S.InterfaceObject(
        {"shape": (-2,), "typestr": "<f4", "data": (_VALID_BUFFER.ctypes.data, True), "version": 3}
    ),
    "interface shape str": lambda: S.InterfaceObject(
        {"shape": "3", "typestr": "<f4", "data": (_VALID_BUFFER.ctypes.data, True), "version": 3}
    ),
    "interface bad typestr": lambda: S.InterfaceObject(
        {"shape": (1,), "typestr": "?!", "data": (_VALID_BUFFER.ctypes.data, True), "version": 3}
    ),
    "interface typestr int": lambda: S.InterfaceObject(
        {"shape": (1,), "typestr": 4, "data": (_VALID_BUFFER.ctypes.data, True), "version": 3}
    ),
    "interface data str": lambda: S.InterfaceObject(
        {"shape": (1,), "typestr": "<f4", "data": "nope", "version": 3}
    ),
    "interface negative pointer": lambda: S.InterfaceObject(
        {"shape": (1,), "typestr": "<f4", "data": (-8, True), "version": 3}
    ),
    "interface bad version": lambda: S.InterfaceObject(
        {"shape": (1,), "typestr": "<f4", "data": (_VALID_BUFFER.ctypes.data, True), "version": 99}
    ),
    "interface empty null": lambda: S.InterfaceObject(
        {"shape": (0,), "typestr": "<f4", "data": (0, True), "version": 3}
    ),
    "interface bad strides": lambda: S.InterfaceObject(
        {
            "shape": (2,),
            "typestr": "<f4",
            "data": (_VALID_BUFFER.ctypes.data, True),
            "strides": "x",
            "version": 3,
        }
    ),
    "interface raising": lambda: type(
        "Raising", (), {"__array_interface__": property(lambda self: _raise(RuntimeError("x")))}
    )(),
    # __array__ and DLPack that misbehave
    "__array__ raising RuntimeError": lambda: ArrayRaising(RuntimeError("broken")),
    "__array__ raising ValueError": lambda: ArrayRaising(ValueError("broken")),
    "__array__ raising RecursionError": lambda: ArrayRaising(RecursionError("deep")),
    "__array__ returns list": lambda: ArrayReturning([1, 2]),
    "__array__ returns None": lambda: ArrayReturning(None),
    "__array__ returns str array": lambda: ArrayReturning(np.array(["a"])),
    "__array__ returns object array": lambda: ArrayReturning(np.array([None])),
    "__array__ returns itself": lambda: _self_returning(),
    "dlpack device garbage": lambda: DLPackOdd("cpu", lambda: np.zeros(2).__dlpack__()),
    "dlpack device short": lambda: DLPackOdd((1,), lambda: np.zeros(2).__dlpack__()),
    "dlpack device unknown": lambda: DLPackOdd((99, 0), lambda: np.zeros(2).__dlpack__()),
    "dlpack cuda": lambda: DLPackOdd((2, 0), lambda: np.zeros(2).__dlpack__()),
    "dlpack raises": lambda: DLPackOdd((1, 0), lambda: _raise(BufferError("no"))),
    "dlpack runtime error": lambda: DLPackOdd((1, 0), lambda: _raise(RuntimeError("no"))),
    "dlpack returns None": lambda: DLPackOdd((1, 0), lambda: None),
    "dlpack returns int": lambda: DLPackOdd((1, 0), lambda: 5),
    "dlpack host claim": lambda: DLPackOdd((3, 0), lambda: np.zeros(2).__dlpack__()),
    "dlpack used capsule": lambda: _used_capsule(),
}


def _inference() -> torch.Tensor:
    with torch.inference_mode():
        return torch.ones(2)


def _self_returning() -> object:
    class Self:
        def __array__(self, dtype: object = None, copy: object = None) -> object:
            return self

    return Self()


def _used_capsule() -> object:
    capsule = torch.zeros(2).__dlpack__()
    torch.from_dlpack(capsule)
    return DLPackOdd((1, 0), lambda: capsule)


OPTIONS: list[dict[str, Any]] = [
    {},
    {"dtype": tb.PRESERVE, "copy": False},
    {"dtype": "int8", "copy": True, "casting": "unsafe"},
    {"dtype": torch.bfloat16, "casting": "safe"},
]


def _check(call: Callable[[], object]) -> None:
    error: tb.TensorBridgeError | None = None
    try:
        call()
    except tb.TensorBridgeError as raised:
        error = raised
    if error is not None:
        assert isinstance(error, (TypeError, ValueError)), type(error).__mro__
        assert 0 < len(str(error)) < 400, str(error)


@pytest.mark.parametrize("options", OPTIONS, ids=["default", "preserve-share", "int8", "bf16"])
@pytest.mark.parametrize("name", list(INPUTS))
def test_odd_input_converts_or_raises_a_tensorbridge_error(name, options):
    data = INPUTS[name]()
    _check(lambda: tb.to_tensor(data, **options))
    data = INPUTS[name]()
    _check(lambda: tb.to_numpy(data, **options))


@pytest.mark.parametrize("name", list(INPUTS))
def test_shares_memory_of_odd_input_answers_or_raises_a_tensorbridge_error(name):
    data = INPUTS[name]()
    _check(lambda: tb.shares_memory(data, np.zeros(2)))  # type: ignore[arg-type]
    _check(lambda: tb.shares_memory(torch.zeros(2), data))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"dtype": None},
        {"dtype": "float"},
        {"dtype": ("f4", -1)},
        {"dtype": "not a dtype"},
        {"dtype": tb.DtypePolicy},
        {"dtype": object},
        {"dtype": dict},
        {"dtype": 5},
        {"dtype": [("a", "f4")]},
        {"dtype": "V3"},
        {"dtype": np.dtype("M8[s]")},
        {"dtype": torch.qint8},
        {"dtype": torch.uint4},
        {"copy": "yes"},
        {"copy": 0},
        {"casting": "maybe"},
        {"casting": None},
        {"device": "mps"},
        {"device": "cuda:abc"},
        {"device": -1},
        {"device": 3.5},
        {"device": "meta"},
        {"pin_memory": "yes"},
        {"non_blocking": 1},
        {"unknown_option": 1},
    ],
    ids=lambda options: repr(options)[:40],
)
def test_odd_option_raises_a_tensorbridge_error(options):
    for data in (np.zeros(2), torch.zeros(2), [1.0]):
        with pytest.raises((tb.TensorBridgeError, TypeError)) as info:
            tb.to_tensor(data, **options)
        error = info.value
        if "unknown_option" not in options:
            assert isinstance(error, tb.TensorBridgeError), repr(error)
        assert len(str(error)) < 400


def test_sweep_is_broad():
    assert len(INPUTS) * len(OPTIONS) * 2 + 2 * len(INPUTS) >= 300
    assert sys.getrecursionlimit() > 0
