"""Contract section 8 (messages) and section 3 (dtype names).

Every message says what was received, why it cannot be done and what to do
instead, names the dtype where a dtype is the cause, and is short (a few lines,
never a dump of torch's internals). Pinned here: mixed-dtype frames, read-only
arrays, sparse matrices, per-leaf dtype typos (the real keys listed, the calling
function named), invalid devices, a per-leaf ``None``, and the grammar of
messages that name a type.

Section 3: names prefixed with their library (``"np.float32"``,
``"numpy.float64"``, ``"torch.float"``) mean that library's dtype.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb

# ---------------------------------------------------------------------------
# frames with mixed dtypes
# ---------------------------------------------------------------------------


class Series:
    """Just enough of pandas' Series of dtypes: ``items()``, iteration, ``index``."""

    def __init__(self, data: dict[str, np.dtype]) -> None:
        self._data = data
        self.index = list(data)

    def items(self) -> Iterator[tuple[str, np.dtype]]:
        return iter(self._data.items())

    def __iter__(self) -> Iterator[np.dtype]:
        return iter(self._data.values())

    def __len__(self) -> int:
        return len(self._data)


class DataFrame:
    """A pandas-like frame with an int column and a str column (object dtype)."""

    def __init__(self) -> None:
        self.columns = ["age", "name"]
        self.dtypes = Series({"age": np.dtype("int64"), "name": np.dtype("O")})
        self.shape = (2, 2)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return np.array([[31, "ann"], [42, "bob"]], dtype=object)


def _check_frame_message(message: str) -> None:
    assert re.search(r"object|\bname\b", message), f"names no dtype or column: {message}"
    assert re.search(r"select_dtypes|to_numpy\(dtype=|numeric columns|\.astype\(", message), (
        f"gives no way out: {message}"
    )
    assert message.strip() != "got no numeric array", message


def test_a_mixed_dtype_frame_names_the_dtype_or_column_and_the_way_out() -> None:
    # to_tensor only: NumPy holds object arrays, so to_numpy may hand one back
    message = S.message_of(lambda: tb.to_tensor(DataFrame()))
    assert "DataFrame" in message, f"does not say what was received: {message}"
    _check_frame_message(message)


def test_a_real_mixed_dtype_pandas_frame_names_the_dtype_or_column() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"age": [31, 42], "name": ["ann", "bob"]})
    _check_frame_message(S.message_of(lambda: tb.to_tensor(frame)))


# ---------------------------------------------------------------------------
# read-only arrays under copy=False
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8])
def test_a_read_only_array_under_copy_false_says_read_only_and_lists_pandas(dtype: Any) -> None:
    a = np.arange(6, dtype=dtype)
    a.flags.writeable = False  # what pandas 3 (copy-on-write) hands out from .to_numpy()
    message = S.message_of(lambda: tb.to_tensor(a, copy=False), tb.ShareError)
    assert "read-only" in message, message
    assert "pandas" in message, f"pandas is not among the causes: {message}"
    assert "copy=None" in message or "copy=True" in message, message


# ---------------------------------------------------------------------------
# sparse matrices
# ---------------------------------------------------------------------------


class csr_matrix:  # named as scipy names it: a message may key on the name
    """A scipy.sparse-like matrix: ``toarray`` and ``tocsr``, no ``__array__``."""

    shape = (2, 3)
    ndim = 2
    dtype = np.dtype(np.float64)
    nnz = 1

    def toarray(self) -> np.ndarray:
        out = np.zeros(self.shape)
        out[0, 1] = 1.0
        return out

    def tocsr(self) -> csr_matrix:
        return self


class SparseLike:
    """Another name, the same methods."""

    shape = (2, 2)
    ndim = 2
    dtype = np.dtype(np.float32)

    def toarray(self) -> np.ndarray:
        return np.eye(2, dtype=np.float32)

    def tocsr(self) -> SparseLike:
        return self


@pytest.mark.parametrize("make", [csr_matrix, SparseLike], ids=["csr_matrix", "toarray+tocsr"])
@pytest.mark.parametrize("convert", [tb.to_tensor, tb.to_numpy], ids=lambda f: f.__name__)
def test_a_sparse_matrix_is_told_to_call_toarray(convert: Any, make: Any) -> None:
    message = S.message_of(lambda: convert(make()))
    assert ".toarray()" in message, message


def test_a_real_scipy_sparse_matrix_is_told_to_call_toarray() -> None:
    sparse = pytest.importorskip("scipy.sparse")
    m = sparse.csr_matrix(np.eye(3))
    assert ".toarray()" in S.message_of(lambda: tb.to_tensor(m))
    assert ".toarray()" in S.message_of(lambda: tb.to_numpy(m))


# ---------------------------------------------------------------------------
# per-leaf dtype typos
# ---------------------------------------------------------------------------


def _batch() -> dict[str, Any]:
    return {"image": np.ones((2, 2), np.uint8), "label": np.int64(3)}


def _assert_lists_the_real_keys(message: str) -> None:
    assert "imgae" in message, f"the typo is not named: {message}"
    assert "image" in message, f"the real keys are not listed: {message}"
    assert "label" in message, f"the real keys are not listed: {message}"


def test_a_prefetch_dtype_typo_names_prefetch_and_lists_the_real_keys() -> None:
    message = S.message_of(
        lambda: list(tb.prefetch([_batch()], device="cpu", dtype={"imgae": torch.float32}))
    )
    assert "prefetch" in message, message
    assert "tree_to_tensor" not in message, f"names an internal function: {message}"
    _assert_lists_the_real_keys(message)


@pytest.mark.parametrize(
    "call",
    [
        lambda: tb.tree_to_tensor(_batch(), dtype={"imgae": torch.float32}),
        lambda: tb.tree_to_numpy(_batch(), dtype={"imgae": np.float32}),
        lambda: tb.collate([_batch(), _batch()], dtype={"imgae": torch.float32}),
    ],
    ids=["tree_to_tensor", "tree_to_numpy", "collate"],
)
def test_a_per_leaf_dtype_typo_lists_the_real_keys(call: Any) -> None:
    _assert_lists_the_real_keys(S.message_of(call))


# ---------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="mps is a real device here")
@pytest.mark.parametrize("device", ["mps", "gpu"])
def test_an_unusable_device_gets_a_short_message(device: str) -> None:
    message = S.message_of(lambda: tb.to_tensor(np.ones(2), device=device), tb.InvalidArgumentError)
    assert repr(device) in message, f"does not say what was received: {message}"
    S.assert_short(message)
    assert "..." not in message, f"torch's text is cut off mid-way: {message}"
    assert "aten::" not in message, message
    assert "Expected one of" not in message, f"a dump of torch's device list: {message}"


@pytest.mark.parametrize("device", ["mps", "xla", "ipu", "vulkan", "foo", "cuda:x"])
def test_unavailable_device_message_is_short(device):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("MPS exists here")
    with pytest.raises(tb.InvalidArgumentError) as info:
        tb.to_tensor(np.zeros(2), device=device)
    assert len(str(info.value)) < 400
    assert repr(device) in str(info.value)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="mps is a real device here")
def test_device_gpu_in_trees_and_prefetch_gets_a_short_message() -> None:
    for call in (
        lambda: tb.tree_to_tensor(_batch(), device="gpu"),
        lambda: list(tb.prefetch([_batch()], device="gpu")),
    ):
        message = S.message_of(call, tb.InvalidArgumentError)
        S.assert_short(message)
        assert "Expected one of" not in message, message


@pytest.mark.skipif(torch.cuda.is_available(), reason="device=0 is a real GPU here")
def test_device_zero_without_a_gpu_does_not_suggest_a_cuda_index() -> None:
    message = S.message_of(lambda: tb.to_tensor(np.ones(2), device=0), tb.InvalidArgumentError)
    assert "device=0" in message, f"does not say what was received: {message}"
    assert not re.search(r"cuda index", message, re.IGNORECASE), message
    assert re.search(r"cuda", message, re.IGNORECASE), message
    S.assert_short(message)


# ---------------------------------------------------------------------------
# a per-leaf dtype of None
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: tb.to_tensor(np.ones(2), dtype=None),
        lambda: tb.tree_to_tensor(_batch(), dtype=None),
        lambda: tb.tree_to_tensor(_batch(), dtype={"image": None}),
        lambda: tb.tree_to_numpy(_batch(), dtype={"image": None}),
        lambda: tb.collate([_batch(), _batch()], dtype={"image": None}),
        lambda: list(tb.prefetch([_batch()], device="cpu", dtype={"image": None})),
    ],
    ids=[
        "to_tensor",
        "tree_to_tensor",
        "tree_to_tensor per-leaf",
        "tree_to_numpy per-leaf",
        "collate per-leaf",
        "prefetch per-leaf",
    ],
)
def test_a_dtype_of_none_raises_invalid_argument_error(call: Any) -> None:
    message = S.message_of(call, tb.InvalidArgumentError)
    assert "None" in message, message


# ---------------------------------------------------------------------------
# grammar of messages that name a type
# ---------------------------------------------------------------------------

# calls whose message names a type or a count, with the names it must contain
TYPE_MESSAGES: dict[str, tuple[Callable[[], Any], list[str]]] = {
    "to_tensor(object())": (lambda: tb.to_tensor(object()), ["object"]),
    "to_tensor(Ellipsis)": (lambda: tb.to_tensor(Ellipsis), ["ellipsis"]),
    "to_numpy(object())": (lambda: tb.to_numpy(object()), ["object"]),
    "collate ndarray / str": (lambda: tb.collate([np.ones(2), "x"]), ["ndarray", "str"]),
    "collate int / str": (lambda: tb.collate([1, "x"]), ["int", "str"]),
    "collate np.int64 / str": (lambda: tb.collate([np.int64(1), "x"]), ["int64", "str"]),
    "collate dict int / str": (lambda: tb.collate([{"a": 1}, {"a": "x"}]), ["int", "str"]),
    "collate str / ndarray": (lambda: tb.collate(["x", np.ones(2)]), ["str", "ndarray"]),
    "collate lengths 1 / 2": (lambda: tb.collate([[1], [1, 2]]), ["1", "2"]),
    "to_tensor ragged 1 / 2": (lambda: tb.to_tensor([[1], [1, 2]]), []),
    "to_tensor object array": (lambda: tb.to_tensor(np.array([1], dtype=object)), ["object"]),
}

# "a" before a vowel sound ("a uint8", "a one-element" are right, so u and "one" are left out)
WRONG_ARTICLE = re.compile(r"\ba (?!one\b|one-)[aeioAEIO]\w*")
SINGULAR_COUNT = re.compile(r"\b1 (elements|dimensions|samples|items|leaves|keys|values|axes)\b")


@pytest.mark.parametrize("name", list(TYPE_MESSAGES))
def test_messages_that_name_a_type_use_the_right_article(name: str) -> None:
    call, names = TYPE_MESSAGES[name]
    message = S.message_of(call)
    for word in names:
        assert word in message, f"{word!r} is not named: {message}"
    wrong = WRONG_ARTICLE.findall(message)
    assert not wrong, f"'a' before a vowel ({wrong}): {message}"
    counts = SINGULAR_COUNT.findall(message)
    assert not counts, f"'1' with a plural ({counts}): {message}"


def test_collate_type_mismatch_reads_an_ndarray_and_an_int() -> None:
    message = S.message_of(lambda: tb.collate([np.ones(2), "x"]))
    if re.search(r"\ba\w* ndarray", message):  # an article is used: it must be "an"
        assert "an ndarray" in message, message
    message = S.message_of(lambda: tb.collate([1, "x"]))
    if re.search(r"\ba\w* int\b", message):
        assert "an int" in message, message


# ---------------------------------------------------------------------------
# section 3: dtype names prefixed with their library
# ---------------------------------------------------------------------------

PREFIXED_NAMES = {
    "np.float32": (torch.float32, np.float32),
    "numpy.float64": (torch.float64, np.float64),
    "numpy.int64": (torch.int64, np.int64),
    "np.int32": (torch.int32, np.int32),
    "np.uint8": (torch.uint8, np.uint8),
    "np.float16": (torch.float16, np.float16),
    "np.double": (torch.float64, np.float64),
    "np.bool_": (torch.bool, np.bool_),
    "torch.float16": (torch.float16, np.float16),
    "torch.float": (torch.float32, np.float32),
    "torch.double": (torch.float64, np.float64),
    "torch.half": (torch.float16, np.float16),
    "torch.long": (torch.int64, np.int64),
    "torch.int": (torch.int32, np.int32),
    "torch.int64": (torch.int64, np.int64),
    "torch.bool": (torch.bool, np.bool_),
}


@pytest.mark.parametrize("name", list(PREFIXED_NAMES))
def test_a_prefixed_dtype_name_means_that_librarys_dtype(name: str) -> None:
    torch_dtype, numpy_dtype = PREFIXED_NAMES[name]
    source = np.array([0.0, 1.0, 2.0, 3.0])
    expected = source.astype(numpy_dtype)

    t = tb.to_tensor(source, dtype=name, casting="unsafe")
    assert t.dtype == torch_dtype
    np.testing.assert_array_equal(t.numpy(), expected)

    a = tb.to_numpy(torch.from_numpy(source), dtype=name, casting="unsafe")
    assert a.dtype == np.dtype(numpy_dtype)
    np.testing.assert_array_equal(a, expected)

    tree = tb.tree_to_tensor({"x": source}, dtype={"x": name}, casting="unsafe")
    assert tree["x"].dtype == torch_dtype


def test_the_examples_of_section_3() -> None:
    assert tb.to_tensor(np.ones(2), dtype="np.float32").dtype == torch.float32
    assert tb.to_tensor(np.ones(2), dtype="numpy.float64").dtype == torch.float64
    assert tb.to_tensor(np.ones(2), dtype="torch.float").dtype == torch.float32
    assert tb.to_numpy(torch.ones(2), dtype="torch.float").dtype == np.float32
    assert tb.to_numpy(torch.ones(2), dtype="np.double").dtype == np.float64


@pytest.mark.parametrize("name", ["float", "int"])
def test_an_unprefixed_ambiguous_name_still_raises_naming_both_meanings(name: str) -> None:
    message = S.message_of(lambda: tb.to_tensor(np.ones(2), dtype=name), tb.UnsupportedDtypeError)
    assert "NumPy" in message, message
    assert "torch" in message, message


@pytest.mark.parametrize("name", ["np.float33", "torch.floaty", "numpy.", "torch.Tensor"])
def test_an_unknown_prefixed_name_raises(name: str) -> None:
    with pytest.raises(tb.TensorBridgeError) as info:
        tb.to_tensor(np.ones(2), dtype=name)
    assert isinstance(info.value, (TypeError, ValueError))
    assert name in str(info.value), str(info.value)
