"""Contract section 3 (last sentences) and section 6: a call never depends on the calls
before it, and memory safety holds on every call.

"What a call does never depends on which calls came before it in the process
(result, sharing, writeability, strides and message alike)." Every public path is
called twice with the same input and options, and again after a *different*
conversion (the kind of call that used to fill hidden caches), under each grad /
errstate context; everything observable must match: result type, dtype, bits,
shape, strides, sharing with the input (shown by mutating the input's memory and
reading the result), ``flags.writeable``, and for errors the class and the message.
A few key cases also compare the very first call of a fresh interpreter with a call
after a warm-up (``strategies.run_child``).
"""

from __future__ import annotations

import ast
import contextlib
import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import strategies as S
import tensorbridge as tb

pytestmark = [
    # NumPy warns when a cast overflows; the values are what this file compares
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning"),
]

_TESTS_DIR = str(Path(__file__).resolve().parent)

# ---------------------------------------------------------------------------
# helpers (candidates for tests/strategies.py)
# ---------------------------------------------------------------------------


def memory_handle(x: Any) -> Any:
    """A writable uint8 handle over all the memory ``x`` lives in (its storage / base).

    For an ndarray pass the writable array that owns the memory; for a tensor, its
    untyped storage is aliased as a flat uint8 tensor (no autograd involved).
    """
    if isinstance(x, torch.Tensor):
        return torch.empty(0, dtype=torch.uint8).set_(x.untyped_storage())
    assert x.flags.writeable, "pass the owning, writable base"
    assert x.flags.c_contiguous, "pass the owning, writable base"
    return x.reshape(-1).view(np.uint8)


def flip_bits(memory: Any) -> None:
    """Toggle the lowest bit of every byte (twice restores it; bool stays a valid bool)."""
    if isinstance(memory, torch.Tensor):
        memory.bitwise_xor_(1)
    else:
        np.bitwise_xor(memory, 1, out=memory)


def raw_bits(x: Any) -> bytes:
    """``strategies.bits`` as bytes; longdouble / clongdouble (whose padding bytes are
    undefined) by the exact repr of each element instead."""
    if (
        isinstance(x, np.ndarray)
        and x.dtype.kind in "fc"
        and x.dtype.itemsize > 8 * (1 + (x.dtype.kind == "c"))
    ):
        return repr([repr(v) for v in x.ravel()]).encode()
    return S.bits(x).tobytes()


def _leaf_record(x: Any) -> tuple[Any, ...]:
    if isinstance(x, torch.Tensor):
        return (
            "tensor",
            type(x).__qualname__,
            str(x.dtype),
            str(x.device),
            tuple(x.shape),
            tuple(x.stride()),
            bool(x.requires_grad),
            bool(x.is_inference()),
            bool(x.is_conj()),
            bool(x.is_neg()),
            raw_bits(x),
        )
    return (
        "ndarray",
        type(x).__qualname__,
        x.dtype.str,
        tuple(x.shape),
        tuple(x.strides),
        bool(x.flags.writeable),
        raw_bits(x),
    )


def _structure(x: Any, leaves: list[Any]) -> Any:
    """The result's containers, with each array leaf replaced by its index in ``leaves``."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        leaves.append(x)
        return ("leaf", len(leaves) - 1)
    if isinstance(x, dict):
        return (type(x).__qualname__, tuple((repr(k), _structure(v, leaves)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__qualname__, tuple(_structure(v, leaves) for v in x))
    return ("value", type(x).__qualname__, repr(x))


@dataclass
class Outcome:
    """What one call did, as plain values (comparable, printable, literal_eval-able)."""

    record: tuple[Any, ...]
    leaves: list[Any]
    shares: list[bool]


def observe(
    call: Callable[[], Any],
    memory: Any,
    context: Callable[[], Any] = contextlib.nullcontext,
) -> Outcome:
    """Run ``call`` under ``context`` and record everything the contract lets a user see.

    Sharing is shown by mutation: every byte of the input's memory is flipped, each
    result leaf is read again, and the memory is restored.
    """
    try:
        with context():
            result = call()
    except Exception as exc:  # the error itself is the outcome
        return Outcome(("raised", type(exc).__module__, type(exc).__qualname__, str(exc)), [], [])
    leaves: list[Any] = []
    structure = _structure(result, leaves)
    records = [_leaf_record(leaf) for leaf in leaves]
    before = [raw_bits(leaf) for leaf in leaves]
    flip_bits(memory)
    try:
        after = [raw_bits(leaf) for leaf in leaves]
    finally:
        flip_bits(memory)
    shares = [b != a for b, a in zip(before, after, strict=True)]
    return Outcome(("returned", structure, tuple(records), tuple(shares)), leaves, shares)


def assert_memory_safe(data: Any, outcome: Outcome) -> None:
    """Section 6: no writable tensor over read-only memory, no writable NumPy array over a
    tensor that requires grad."""
    read_only = isinstance(data, np.ndarray) and not data.flags.writeable
    needs_grad = isinstance(data, torch.Tensor) and data.requires_grad
    for leaf, shared in zip(outcome.leaves, outcome.shares, strict=True):
        if not shared:
            continue
        if read_only:
            assert not isinstance(leaf, torch.Tensor), "a tensor aliases read-only memory"
            assert not leaf.flags.writeable, "a writable array aliases read-only memory"
        if needs_grad and isinstance(leaf, np.ndarray):
            assert not leaf.flags.writeable, "a writable array aliases a tensor needing grad"


CONTEXTS: dict[str, Callable[[], Any]] = {
    "plain": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,
    "set_grad_enabled(False)": lambda: torch.set_grad_enabled(False),
    "errstate(all='raise')": lambda: np.errstate(all="raise"),
}

#: equal to tb.FLOAT32 (section 3 lists exactly these two changes)
EQUAL_TO_FLOAT32 = tb.DtypePolicy(floating="float32", complex="complex64")

DTYPE_OPTIONS: list[Any] = [
    tb.FLOAT32,
    tb.PRESERVE,
    EQUAL_TO_FLOAT32,
    tb.DtypePolicy(floating="float64", unsigned="float32"),
    tb.DtypePolicy(signed=torch.int32, bool=np.uint8),
    np.float32,
    "float32",
    torch.float32,
    np.dtype("float64"),
    torch.float16,
    "int64",
]
CASTINGS = ["no", "equiv", "safe", "same_kind", "unsafe"]


def _ignore_errors(call: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.suppress(tb.TensorBridgeError):
            call()

    return run


#: other conversions, each of which could fill a cache that a later call then reads
WARM_UPS: dict[str, Callable[[], None]] = {
    "to_numpy float32": lambda: tb.to_numpy(torch.ones(3)),
    "to_numpy float64": lambda: tb.to_numpy(torch.ones(3, dtype=torch.float64)),
    "to_numpy grad": lambda: tb.to_numpy(torch.ones(3, requires_grad=True)),
    "to_tensor (2, 1)": lambda: tb.to_tensor(np.ones((2, 1))),
    "to_tensor float32": lambda: tb.to_tensor(np.ones(3, np.float32)),
    "to_tensor PRESERVE": lambda: tb.to_tensor(np.ones(2), dtype=tb.PRESERVE),
    "to_tensor equal policy": lambda: tb.to_tensor(np.ones(2), dtype=EQUAL_TO_FLOAT32),
    "share error FLOAT32": _ignore_errors(
        lambda: tb.to_tensor(np.ones(2), dtype=tb.FLOAT32, copy=False)
    ),
    "share error equal policy": _ignore_errors(
        lambda: tb.to_tensor(np.ones(2), dtype=EQUAL_TO_FLOAT32, copy=False)
    ),
    "tree_to_tensor": lambda: tb.tree_to_tensor({"x": np.ones(2)}),
    "collate": lambda: tb.collate([np.ones(2), np.ones(2)]),
    "convert_like": lambda: tb.convert_like(torch.ones(2), np.zeros(1), dtype=tb.PRESERVE),
}


def warm_up_everything() -> None:
    for warm_up in WARM_UPS.values():
        warm_up()


# ---------------------------------------------------------------------------
# the property: the same call twice, and again after another conversion
# ---------------------------------------------------------------------------

PATHS = [
    "to_tensor",
    "to_numpy",
    "tree_to_tensor",
    "tree_to_numpy",
    "collate",
    "convert_like",
    "prefetch",
]


class _Omitted:
    """An option left out of the call (the default fast path is a path of its own)."""

    def __repr__(self) -> str:
        return "<omitted>"


OMIT = _Omitted()


def path_call(path: str, data: Any, reference: Any, **options: Any) -> Callable[[], Any]:
    """A call of one public path; options equal to ``OMIT`` are not passed."""
    options = {key: value for key, value in options.items() if value is not OMIT}
    if path == "convert_like":
        options.setdefault("dtype", tb.FLOAT32)  # convert_like has no default dtype
    if path == "to_tensor":
        return lambda: tb.to_tensor(data, **options)
    if path == "to_numpy":
        return lambda: tb.to_numpy(data, **options)
    if path == "tree_to_tensor":
        return lambda: tb.tree_to_tensor({"x": data, "rest": [data, 3, "s", None]}, **options)
    if path == "tree_to_numpy":
        return lambda: tb.tree_to_numpy({"x": data, "rest": (data, 2.5)}, **options)
    if path == "collate":
        return lambda: tb.collate([{"x": data, "y": 1}, {"x": data, "y": 2}], **options)
    if path == "convert_like":
        return lambda: tb.convert_like(data, reference, **options)
    assert path == "prefetch"
    return lambda: list(tb.prefetch([{"x": data}, [data]], device="cpu", **options))


class Source:
    """A drawn input and a writable uint8 handle on the memory it lives in."""

    def __init__(self, data: Any, memory: Any) -> None:
        self.data = data
        self.memory = memory

    def __repr__(self) -> str:
        d = self.data
        if isinstance(d, torch.Tensor):
            return (
                f"Source(tensor dtype={d.dtype}, shape={tuple(d.shape)}, stride={d.stride()}, "
                f"offset={d.storage_offset()}, requires_grad={d.requires_grad})"
            )
        return f"Source({S.Input(d, d)!r})"


#: float32 (the default policy's own dtype, which shares) weighted up
GRAD_DTYPES = [torch.float32] * 3 + [torch.float16, torch.bfloat16, torch.float64, torch.complex64]


@st.composite
def sources(draw: st.DrawFn, kind: str = "any") -> Source:
    """An ndarray view (strided, reversed, byte-swapped, read-only) or a CPU tensor view,
    possibly requiring grad, with a writable handle on its memory.

    ``kind="read_only"``: always a read-only ndarray view; ``kind="grad"``: always a
    floating tensor that requires grad.
    """
    if kind == "read_only" or (kind == "any" and draw(st.booleans(), label="ndarray")):
        inp = draw(S.array_views(allow_readonly=True))
        array = inp.array
        if kind == "read_only" and array.flags.writeable:
            array = array.view()
            array.flags.writeable = False
        return Source(array, memory_handle(inp.base))
    if kind == "grad":
        t = draw(S.tensors(st.sampled_from(GRAD_DTYPES), nonempty=True))
        t = t.detach().requires_grad_()
        return Source(t, memory_handle(t))
    t = draw(S.tensors())
    if (t.dtype.is_floating_point or t.dtype.is_complex) and draw(st.booleans(), label="grad"):
        t = t.detach().requires_grad_()
    return Source(t, memory_handle(t))


REFERENCES = [np.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.float64)]


@pytest.mark.parametrize("path", PATHS)
@given(
    source=sources(),
    dtype=st.sampled_from([OMIT, *DTYPE_OPTIONS]),
    copy=st.sampled_from([OMIT, None, True, False]),
    casting=st.sampled_from([OMIT, *CASTINGS]),
    context=st.sampled_from(list(CONTEXTS)),
    warm_up=st.sampled_from(list(WARM_UPS)),
    reference=st.sampled_from(REFERENCES),
)
def test_a_repeated_call_gives_what_the_first_call_gave(
    path, source, dtype, copy, casting, context, warm_up, reference
):
    call = path_call(path, source.data, reference, dtype=dtype, copy=copy, casting=casting)
    first = observe(call, source.memory, CONTEXTS[context])
    second = observe(call, source.memory, CONTEXTS[context])
    assert second.record == first.record, "the second call differs from the first"
    WARM_UPS[warm_up]()
    third = observe(call, source.memory, CONTEXTS[context])
    assert third.record == first.record, f"the call differs after warm-up {warm_up!r}"
    for outcome in (first, second, third):
        assert_memory_safe(source.data, outcome)


@pytest.mark.parametrize("path", PATHS)
@given(
    source=sources("read_only"),
    dtype=st.sampled_from([OMIT, tb.FLOAT32, tb.PRESERVE, EQUAL_TO_FLOAT32, "float32"]),
    copy=st.sampled_from([OMIT, None, True]),
    casting=st.sampled_from([OMIT, "same_kind", "unsafe"]),
    context=st.sampled_from(list(CONTEXTS)),
    warm_up=st.sampled_from(list(WARM_UPS)),
    reference=st.sampled_from(REFERENCES),
)
def test_read_only_memory_is_never_writable_through_a_result(
    path, source, dtype, copy, casting, context, warm_up, reference
):
    """Section 6, after any other call: nothing writable shares a read-only array."""
    WARM_UPS[warm_up]()
    call = path_call(path, source.data, reference, dtype=dtype, copy=copy, casting=casting)
    assert_memory_safe(source.data, observe(call, source.memory, CONTEXTS[context]))


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("path", ["to_numpy", "tree_to_numpy", "convert_like"])
@given(
    source=sources("grad"),
    dtype=st.sampled_from([OMIT, tb.FLOAT32, EQUAL_TO_FLOAT32, tb.PRESERVE]),
    copy=st.sampled_from([OMIT, None, True]),
    casting=st.sampled_from([OMIT, "same_kind", "unsafe"]),
    warm_up=st.sampled_from(list(WARM_UPS)),
)
def test_a_tensor_that_requires_grad_is_never_writable_through_an_array(
    path, context, source, dtype, copy, casting, warm_up
):
    """Section 6, after any other call and under every grad mode: no writable NumPy
    array over a tensor that requires grad."""
    WARM_UPS[warm_up]()
    call = path_call(path, source.data, np.zeros(1), dtype=dtype, copy=copy, casting=casting)
    assert_memory_safe(source.data, observe(call, source.memory, CONTEXTS[context]))


# ---------------------------------------------------------------------------
# regression (a): grad views stay read-only under every grad context
# ---------------------------------------------------------------------------

GRAD_CONTEXTS = ["plain", "no_grad", "inference_mode", "set_grad_enabled(False)"]


def assert_sealed_read_only(a: np.ndarray, source: torch.Tensor) -> None:
    """Not writable, cannot be made writable (itself or any ndarray ``.base``), and a
    write does not reach the tensor."""
    before = source.detach().clone()
    assert isinstance(a, np.ndarray)
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a.flags.writeable = True
    with pytest.raises(ValueError):
        a[...] = 5
    base = a.base
    while isinstance(base, np.ndarray):
        with pytest.raises(ValueError):
            base.flags.writeable = True
        base = base.base
    if isinstance(base, memoryview):
        assert base.readonly, "the base is a writable memoryview"
    assert torch.equal(source.detach(), before)


@pytest.mark.parametrize("context", GRAD_CONTEXTS)
@pytest.mark.parametrize("path", ["to_numpy", "convert_like"])
def test_grad_view_is_read_only_after_a_float32_to_numpy(path, context):
    w = torch.ones(3, requires_grad=True)  # created outside any context
    tb.to_numpy(torch.ones(3))  # the call that used to switch the seal off
    with CONTEXTS[context]():
        if path == "to_numpy":
            a = tb.to_numpy(w)
        else:
            a = tb.convert_like(w, np.zeros(1), dtype=tb.PRESERVE)
    assert a.dtype == np.float32
    assert_sealed_read_only(a, w)


def test_grad_view_shares_the_tensor_memory_read_only():
    w = torch.ones(3, requires_grad=True)
    tb.to_numpy(torch.ones(3))
    with torch.no_grad():
        a = tb.to_numpy(w)
        w[1] = 7.0  # a write through autograd's own door is visible
    assert a[1] == 7.0


# ---------------------------------------------------------------------------
# regression (b): strides of size-1 dimensions are the same on every call
# ---------------------------------------------------------------------------


_SIZE1_STRIDES_CHILD = """
    import json, sys
    import numpy as np
    import torch
    import tensorbridge as tb

    if sys.argv[1] == "to_tensor":
        a = np.arange(6.0)[:, None]  # NumPy 2: strides (8, 0)
        strides = [list(tb.to_tensor(a).stride()) for _ in range(3)]
    else:
        t = torch.arange(7.0).double().as_strided((3, 1), (1, 7))
        strides = [list(tb.to_numpy(t).strides) for _ in range(3)]
    print(json.dumps(strides))
"""


def child_output(proc: subprocess.CompletedProcess[str]) -> str:
    """The last stdout line of a child that must have run cleanly."""
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def run_children(jobs: dict[str, tuple[str, ...]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run several ``strategies.run_child`` jobs two at a time (the machine has two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(S.run_child, *job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def children() -> dict[str, subprocess.CompletedProcess[str]]:
    """Every fresh-interpreter check of this file, run once per module, in parallel."""
    jobs: dict[str, tuple[str, ...]] = {
        "size1 to_tensor": (_SIZE1_STRIDES_CHILD, "to_tensor"),
        "size1 to_numpy": (_SIZE1_STRIDES_CHILD, "to_numpy"),
        "user_first": (_SHARE_ERROR_ORDER_CHILD, "user_first"),
        "float32_first": (_SHARE_ERROR_ORDER_CHILD, "float32_first"),
        "complex fresh": (_COMPLEX_SHARE_ERROR_CHILD, "fresh"),
        "complex after_float": (_COMPLEX_SHARE_ERROR_CHILD, "after_float"),
    }
    jobs.update({name: (_COLD_CHILD, _TESTS_DIR, name) for name in KEY_CASES})
    return run_children(jobs)


@pytest.mark.parametrize("function", ["to_tensor", "to_numpy"])
def test_size1_dimension_strides_are_the_same_on_every_call_of_a_fresh_process(function, children):
    first, *later = json.loads(child_output(children[f"size1 {function}"]))
    assert all(strides == first for strides in later), (first, later)


def test_to_tensor_of_size1_column_is_a_dense_float32_copy():
    a = np.arange(6.0)[:, None]
    first, second = tb.to_tensor(a), tb.to_tensor(a)
    assert first.stride() == second.stride()
    assert first.dtype == torch.float32
    assert first.is_contiguous()
    S.assert_same_bits(first, a.astype(np.float32))


def test_to_numpy_of_size1_as_strided_is_a_dense_float32_copy():
    t = torch.arange(7.0).double().as_strided((3, 1), (1, 7))
    first, second = tb.to_numpy(t), tb.to_numpy(t)
    assert first.strides == second.strides
    assert first.dtype == np.float32
    assert first.flags.c_contiguous
    S.assert_same_bits(first, t.numpy().astype(np.float32))


# ---------------------------------------------------------------------------
# regression (c): messages do not depend on which equal policy came first
# ---------------------------------------------------------------------------

_SHARE_ERROR_ORDER_CHILD = """
    import json, sys
    import numpy as np
    import tensorbridge as tb

    p = tb.DtypePolicy(floating="float32", complex="complex64")
    order = {"user_first": [p, tb.FLOAT32], "float32_first": [tb.FLOAT32, p]}[sys.argv[1]]
    messages = []
    for policy in order:
        try:
            tb.to_tensor(np.ones(2), dtype=policy, copy=False)
        except tb.ShareError as exc:
            messages.append(str(exc))
        else:
            messages.append("no ShareError")
    print(json.dumps(messages))
"""

_COMPLEX_SHARE_ERROR_CHILD = """
    import json, sys
    import numpy as np
    import tensorbridge as tb

    if sys.argv[1] == "after_float":
        try:
            tb.to_tensor(np.ones(2), copy=False)
        except tb.ShareError:
            pass
    try:
        tb.to_tensor(np.ones(2, dtype=np.complex128), copy=False)
    except tb.ShareError as exc:
        print(json.dumps(str(exc)))
    else:
        print(json.dumps("no ShareError"))
"""


def test_share_error_message_does_not_depend_on_which_equal_policy_came_first(children):
    assert EQUAL_TO_FLOAT32 == tb.FLOAT32
    user_first = json.loads(child_output(children["user_first"]))  # [p, FLOAT32]
    float32_first = json.loads(child_output(children["float32_first"]))  # [FLOAT32, p]
    assert "no ShareError" not in user_first + float32_first
    assert user_first[0] == user_first[1], "message depends on the policy object"
    assert float32_first[0] == float32_first[1], "message depends on the policy object"
    assert user_first == float32_first, "message depends on which policy came first"


@pytest.mark.parametrize("order", ["fresh", "after_float"])
def test_complex_share_error_names_complex64_not_float32(order, children):
    message = json.loads(child_output(children[f"complex {order}"]))
    assert message != "no ShareError"
    assert "complex64" in message
    assert "complex128" in message
    assert "casts floating data to float32" not in message


# ---------------------------------------------------------------------------
# regression (d): a dtype given as an object with a .dtype attribute is read each call
# ---------------------------------------------------------------------------


class _HasDtype:
    dtype: Any


def test_dtype_attribute_object_is_read_on_every_call():
    d = _HasDtype()
    d.dtype = np.dtype(np.float16)
    assert np.dtype(d) == np.float16  # NumPy accepts such objects as dtypes
    assert tb.to_tensor(np.ones(2), dtype=d).dtype == torch.float16
    assert tb.to_numpy(torch.ones(2), dtype=d).dtype == np.float16
    d.dtype = np.dtype(np.float64)
    assert np.dtype(d) == np.float64
    assert tb.to_tensor(np.ones(2, np.float32), dtype=d).dtype == torch.float64
    assert tb.to_numpy(torch.ones(2), dtype=d).dtype == np.float64


# ---------------------------------------------------------------------------
# regression (e): integer -> bfloat16 rounds once, as NumPy (ml_dtypes) does, on every path
# ---------------------------------------------------------------------------

_BF16_VALUE = 2**24 + 2**16 + 1  # via float32 first it double-rounds to 2**24

BF16_PATHS = [
    "to_tensor",
    "to_tensor of a tensor",
    "tree_to_tensor",
    "tree_to_numpy",
    "convert_like to tensor",
    "convert_like to ndarray",
    "collate",
    "to_numpy",
    "to_numpy of an ndarray",
    "prefetch",
]


def _bf16_result(path: str, a: np.ndarray, dtype: Any) -> Any:
    opts: dict[str, Any] = {"dtype": dtype, "casting": "unsafe"}
    t = torch.from_numpy(a.copy())
    if path == "to_tensor":
        return tb.to_tensor(a, **opts)
    if path == "to_tensor of a tensor":
        return tb.to_tensor(t, **opts)
    if path == "tree_to_tensor":
        return tb.tree_to_tensor({"x": [a]}, **opts)["x"][0]
    if path == "tree_to_numpy":
        return tb.tree_to_numpy({"x": [t]}, **opts)["x"][0]
    if path == "convert_like to tensor":
        return tb.convert_like(a, torch.zeros(1), **opts)
    if path == "convert_like to ndarray":
        return tb.convert_like(t, np.zeros(1), **opts)
    if path == "collate":
        return tb.collate([a[:1], a[1:]], **opts).reshape(-1)  # (2, 1) stacked
    if path == "to_numpy":
        return tb.to_numpy(t, **opts)
    if path == "to_numpy of an ndarray":
        return tb.to_numpy(a, **opts)
    assert path == "prefetch"
    ((out,),) = tb.prefetch([[a]], device="cpu", **opts)
    return out


@pytest.mark.parametrize("spelling", ["torch", "name", "ml_dtypes"])
@pytest.mark.parametrize("source_dtype", ["int64", "int32", "uint32", "uint64"])
@pytest.mark.parametrize("path", BF16_PATHS)
def test_integer_to_bfloat16_follows_numpy_on_every_path(path, source_dtype, spelling):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dtype = {"torch": torch.bfloat16, "name": "bfloat16", "ml_dtypes": ml_dtypes.bfloat16}[spelling]
    a = np.array([_BF16_VALUE, 3], dtype=source_dtype)
    expected = a.astype(ml_dtypes.bfloat16)
    # ml_dtypes 0.6 and later round once (16908288); 0.5 (with NumPy 1.26) rounds through
    # float32 itself (16777216): either way the result is NumPy's, bit for bit.
    assert float(expected[0]) in (16908288.0, 16777216.0)
    out = _bf16_result(path, a, dtype)
    assert str(out.dtype).endswith("bfloat16")
    S.assert_same_bits(out, expected)


# ---------------------------------------------------------------------------
# the first call of a fresh interpreter equals a call after a warm-up
# ---------------------------------------------------------------------------


def _grad_case(context: str, path: str = "to_numpy") -> tuple[Callable[[], Any], Any, str]:
    w = torch.ones(3, requires_grad=True)
    if path == "to_numpy":
        return (lambda: tb.to_numpy(w)), memory_handle(w), context
    return (lambda: tb.convert_like(w, np.zeros(1), dtype=tb.PRESERVE)), memory_handle(w), context


def _array_case(
    a: np.ndarray, call: Callable[[np.ndarray], Any], context: str = "plain"
) -> tuple[Callable[[], Any], Any, str]:
    return (lambda: call(a)), memory_handle(a), context


def _tensor_case(
    t: torch.Tensor, call: Callable[[torch.Tensor], Any], context: str = "plain"
) -> tuple[Callable[[], Any], Any, str]:
    return (lambda: call(t)), memory_handle(t), context


KEY_CASES: dict[str, Callable[[], tuple[Callable[[], Any], Any, str]]] = {
    "to_numpy grad, plain": lambda: _grad_case("plain"),
    "to_numpy grad, no_grad": lambda: _grad_case("no_grad"),
    "to_numpy grad, inference_mode": lambda: _grad_case("inference_mode"),
    "to_numpy grad, set_grad_enabled(False)": lambda: _grad_case("set_grad_enabled(False)"),
    "convert_like grad, no_grad": lambda: _grad_case("no_grad", "convert_like"),
    "to_tensor (6, 1) float64": lambda: _array_case(np.arange(6.0)[:, None], tb.to_tensor),
    "to_numpy as_strided (3, 1), (1, 7)": lambda: _tensor_case(
        torch.arange(7.0).double().as_strided((3, 1), (1, 7)), tb.to_numpy
    ),
    "to_tensor float32 shares": lambda: _array_case(np.ones(3, np.float32), tb.to_tensor),
    "to_tensor PRESERVE int64 copy=False": lambda: _array_case(
        np.arange(3), lambda a: tb.to_tensor(a, dtype=tb.PRESERVE, copy=False)
    ),
    "to_tensor equal policy copy=False": lambda: _array_case(
        np.ones(2), lambda a: tb.to_tensor(a, dtype=EQUAL_TO_FLOAT32, copy=False)
    ),
}


def cold_and_warm(name: str) -> str:
    """Run in a fresh child: the key case first, then after every warm-up (a repr)."""
    call, memory, context = KEY_CASES[name]()
    cold = observe(call, memory, CONTEXTS[context]).record
    warm_up_everything()
    warm = observe(call, memory, CONTEXTS[context]).record
    return repr((cold, warm))


_COLD_CHILD = """
    import sys
    sys.path.insert(0, sys.argv[1])
    import test_repeat_calls as R

    print(R.cold_and_warm(sys.argv[2]))
"""


@pytest.mark.parametrize("name", list(KEY_CASES))
def test_first_call_in_a_fresh_process_equals_a_warm_call(name, children):
    cold, warm_in_child = ast.literal_eval(child_output(children[name]))
    warm_up_everything()
    call, memory, context = KEY_CASES[name]()
    warm_here = observe(call, memory, CONTEXTS[context]).record
    assert warm_in_child == cold, f"fresh first call {cold}\n!= after warm-up {warm_in_child}"
    assert warm_here == cold, f"fresh first call {cold}\n!= warm process {warm_here}"
