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
import json
import subprocess
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

DTYPE_OPTIONS: list[Any] = [
    tb.FLOAT32,
    tb.PRESERVE,
    S.EQUAL_TO_FLOAT32,
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


REFERENCES = [np.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.float64)]


@pytest.mark.parametrize("path", PATHS)
@given(
    source=S.sources(),
    dtype=st.sampled_from([S.OMIT, *DTYPE_OPTIONS]),
    copy=st.sampled_from([S.OMIT, None, True, False]),
    casting=st.sampled_from([S.OMIT, *CASTINGS]),
    context=st.sampled_from(list(S.CONTEXTS)),
    warm_up=st.sampled_from(list(S.WARM_UPS)),
    reference=st.sampled_from(REFERENCES),
)
def test_a_repeated_call_gives_what_the_first_call_gave(
    path, source, dtype, copy, casting, context, warm_up, reference
):
    call = S.path_call(path, source.data, reference, dtype=dtype, copy=copy, casting=casting)
    first = S.observe(call, source.memory, S.CONTEXTS[context])
    second = S.observe(call, source.memory, S.CONTEXTS[context])
    assert second.record == first.record, "the second call differs from the first"
    S.WARM_UPS[warm_up]()
    third = S.observe(call, source.memory, S.CONTEXTS[context])
    assert third.record == first.record, f"the call differs after warm-up {warm_up!r}"
    for outcome in (first, second, third):
        S.assert_memory_safe(source.data, outcome)


@pytest.mark.parametrize("path", PATHS)
@given(
    source=S.sources("read_only"),
    dtype=st.sampled_from([S.OMIT, tb.FLOAT32, tb.PRESERVE, S.EQUAL_TO_FLOAT32, "float32"]),
    copy=st.sampled_from([S.OMIT, None, True]),
    casting=st.sampled_from([S.OMIT, "same_kind", "unsafe"]),
    context=st.sampled_from(list(S.CONTEXTS)),
    warm_up=st.sampled_from(list(S.WARM_UPS)),
    reference=st.sampled_from(REFERENCES),
)
def test_read_only_memory_is_never_writable_through_a_result(
    path, source, dtype, copy, casting, context, warm_up, reference
):
    """Section 6, after any other call: nothing writable shares a read-only array."""
    S.WARM_UPS[warm_up]()
    call = S.path_call(path, source.data, reference, dtype=dtype, copy=copy, casting=casting)
    S.assert_memory_safe(source.data, S.observe(call, source.memory, S.CONTEXTS[context]))


@pytest.mark.parametrize("context", list(S.CONTEXTS))
@pytest.mark.parametrize("path", ["to_numpy", "tree_to_numpy", "convert_like"])
@given(
    source=S.sources("grad"),
    dtype=st.sampled_from([S.OMIT, tb.FLOAT32, S.EQUAL_TO_FLOAT32, tb.PRESERVE]),
    copy=st.sampled_from([S.OMIT, None, True]),
    casting=st.sampled_from([S.OMIT, "same_kind", "unsafe"]),
    warm_up=st.sampled_from(list(S.WARM_UPS)),
)
def test_a_tensor_that_requires_grad_is_never_writable_through_an_array(
    path, context, source, dtype, copy, casting, warm_up
):
    """Section 6, after any other call and under every grad mode: no writable NumPy
    array over a tensor that requires grad."""
    S.WARM_UPS[warm_up]()
    call = S.path_call(path, source.data, np.zeros(1), dtype=dtype, copy=copy, casting=casting)
    S.assert_memory_safe(source.data, S.observe(call, source.memory, S.CONTEXTS[context]))


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
    with S.CONTEXTS[context]():
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
    jobs.update({name: (_COLD_CHILD, _TESTS_DIR, name) for name in S.KEY_CASES})
    return S.run_children(jobs)


@pytest.mark.parametrize("function", ["to_tensor", "to_numpy"])
def test_size1_dimension_strides_are_the_same_on_every_call_of_a_fresh_process(function, children):
    first, *later = json.loads(S.child_output(children[f"size1 {function}"]))
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
    assert S.EQUAL_TO_FLOAT32 == tb.FLOAT32
    user_first = json.loads(S.child_output(children["user_first"]))  # [p, FLOAT32]
    float32_first = json.loads(S.child_output(children["float32_first"]))  # [FLOAT32, p]
    assert "no ShareError" not in user_first + float32_first
    assert user_first[0] == user_first[1], "message depends on the policy object"
    assert float32_first[0] == float32_first[1], "message depends on the policy object"
    assert user_first == float32_first, "message depends on which policy came first"


@pytest.mark.parametrize("order", ["fresh", "after_float"])
def test_complex_share_error_names_complex64_not_float32(order, children):
    message = json.loads(S.child_output(children[f"complex {order}"]))
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
# what is remembered per argument is bounded
# ---------------------------------------------------------------------------


def test_memory_stays_bounded_for_ever_new_dtype_arguments():
    # A caller building dtype arguments at run time (distinct structured dtypes, say)
    # must not grow memory without bound: what is remembered per argument is bounded.
    import tracemalloc

    array = np.zeros(2, np.float32)
    tracemalloc.start()
    sizes = []
    for round_ in range(3):
        for i in range(1500):
            with pytest.raises(tb.UnsupportedDtypeError):
                tb.to_numpy(array, dtype=np.dtype([(f"f{round_}_{i}", "f4")]))
        sizes.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    assert sizes[2] - sizes[0] < 1 << 20, sizes


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


_COLD_CHILD = """
    import sys
    sys.path.insert(0, sys.argv[1])
    import strategies as S

    print(S.cold_and_warm(sys.argv[2]))
"""


@pytest.mark.parametrize("name", list(S.KEY_CASES))
def test_first_call_in_a_fresh_process_equals_a_warm_call(name, children):
    cold, warm_in_child = ast.literal_eval(S.child_output(children[name]))
    S.warm_up_everything()
    call, memory, context = S.KEY_CASES[name]()
    warm_here = S.observe(call, memory, S.CONTEXTS[context]).record
    assert warm_in_child == cold, f"fresh first call {cold}\n!= after warm-up {warm_in_child}"
    assert warm_here == cold, f"fresh first call {cold}\n!= warm process {warm_here}"
