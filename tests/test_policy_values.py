"""Contract section 3: policies are plain values.

"Two equal policies behave identically, and a policy that was copied, deep-copied or
pickled (into ``spawn`` DataLoader workers, say) equals the original and behaves as
it does; ``tb.FLOAT32`` and ``tb.PRESERVE`` unpickle to themselves." Behaving
identically means the same result dtype, the same sharing (shown by mutation), and
the same errors with the same messages, for every kind of input.
"""

from __future__ import annotations

import copy
import json
import pickle
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb

pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning"),
]

# ---------------------------------------------------------------------------
# copies of a policy, and what a policy does
# ---------------------------------------------------------------------------

PROTOCOLS = sorted({2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL})

COPIES: dict[str, Callable[[Any], Any]] = {
    **{
        f"pickle protocol {protocol}": (
            lambda p, protocol=protocol: pickle.loads(pickle.dumps(p, protocol=protocol))
        )
        for protocol in PROTOCOLS
    },
    "copy.copy": copy.copy,
    "copy.deepcopy": copy.deepcopy,
    "deepcopy of a config dict": lambda p: copy.deepcopy({"dtype": p, "lr": 0.1})["dtype"],
    "pickled config dict": lambda p: pickle.loads(pickle.dumps({"train": {"dtype": [p]}}))["train"][
        "dtype"
    ][0],
}

USER_POLICIES: dict[str, tb.DtypePolicy] = {
    "equal to FLOAT32": tb.DtypePolicy(floating="float32", complex="complex64"),
    "floating float64, unsigned float32": tb.DtypePolicy(floating="float64", unsigned="float32"),
    "floating float16, signed int32": tb.DtypePolicy(floating=np.float16, signed=torch.int32),
    "bool uint8": tb.DtypePolicy(bool=np.uint8),
    "complex complex128": tb.DtypePolicy(complex=torch.complex128),
    "all fields None": tb.DtypePolicy(),
}


def _array_probe(dtype: Any, *, read_only: bool = False) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        base = np.arange(3).astype(dtype)
        view = base.view()
        if read_only:
            view.flags.writeable = False
        return view, S.memory_handle(base)

    return make


def _tensor_probe(dtype: torch.dtype) -> Callable[[], tuple[Any, Any]]:
    def make() -> tuple[Any, Any]:
        t = torch.arange(3).to(dtype)
        return t, S.memory_handle(t)

    return make


PROBES: dict[str, Callable[[], tuple[Any, Any]]] = {
    **{f"ndarray {np.dtype(dt).name}": _array_probe(dt) for dt in S.STANDARD_DTYPES},
    **{f"ndarray {dt.name}": _array_probe(dt) for dt in S.ML_DTYPES[:2]},
    "ndarray longdouble": _array_probe(np.longdouble),
    "read-only ndarray float32": _array_probe(np.float32, read_only=True),
    "byte-swapped ndarray float64": _array_probe(np.dtype(">f8")),
    **{
        f"tensor {dt}": _tensor_probe(dt)
        for dt in (
            torch.bool,
            torch.uint8,
            torch.int64,
            torch.float16,
            torch.bfloat16,
            torch.float32,
            torch.float64,
            torch.complex64,
        )
    },
}


def behaviour(policy: Any) -> list[tuple[Any, ...]]:
    """Everything a policy makes the two functions do, on every probe: result type,
    dtype, strides, bits, writeability, sharing (by mutation), or the error and its
    message."""
    out = []
    for name, make in PROBES.items():
        for function in (tb.to_tensor, tb.to_numpy):
            for copy_flag in (None, False):
                for casting in ("same_kind", "no"):
                    data, memory = make()
                    outcome = S.observe(
                        lambda data=data, function=function, copy_flag=copy_flag, c=casting: (
                            function(data, dtype=policy, copy=copy_flag, casting=c)
                        ),
                        memory,
                    )
                    out.append((name, function.__name__, copy_flag, casting, outcome.record))
    return out


def assert_same_behaviour(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(expected)
    differ = [(g, e) for g, e in zip(got, expected, strict=True) if g != e]
    assert not differ, f"{len(differ)} call(s) differ; first:\n  got      {differ[0][0]}\n" + (
        f"  expected {differ[0][1]}"
    )


# ---------------------------------------------------------------------------
# the built-in policies
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("name", ["FLOAT32", "PRESERVE"])
def test_builtin_policy_unpickles_to_itself(name, protocol):
    policy = getattr(tb, name)
    assert pickle.loads(pickle.dumps(policy, protocol=protocol)) is policy


@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy])
@pytest.mark.parametrize("name", ["FLOAT32", "PRESERVE"])
def test_builtin_policy_copies_to_itself(name, copier):
    policy = getattr(tb, name)
    assert copier(policy) is policy
    assert copier({"dtype": policy})["dtype"] is policy


def test_unpickled_float32_shares_float32_memory():
    policy = pickle.loads(pickle.dumps(tb.FLOAT32))
    a = np.zeros(3, dtype=np.float32)
    t = tb.to_tensor(a, dtype=policy, copy=False)
    t[1] = 5.0
    assert a[1] == 5.0
    back = tb.to_numpy(t, dtype=policy, copy=False)
    back[2] = 6.0
    assert t[2].item() == 6.0
    assert a[2] == 6.0


@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.float32, np.uint8, np.complex128])
@pytest.mark.parametrize("copier", list(COPIES))
def test_copied_preserve_shares_every_dtype(copier, dtype):
    policy = COPIES[copier](tb.PRESERVE)
    a = np.zeros(3, dtype=dtype)
    t = tb.to_tensor(a, dtype=policy, copy=False)
    assert t.dtype == S.torch_dtype(dtype)
    t[0] = 7
    assert a[0] == 7
    source = torch.zeros(3, dtype=S.torch_dtype(dtype))
    back = tb.to_numpy(source, dtype=policy, copy=False)
    assert back.dtype == dtype
    back[2] = 9
    assert source[2].item() == 9


@pytest.mark.parametrize("copier", list(COPIES))
@pytest.mark.parametrize("name", ["FLOAT32", "PRESERVE"])
def test_copied_builtin_policy_behaves_as_the_original(name, copier):
    policy = getattr(tb, name)
    revived = COPIES[copier](policy)
    assert revived == policy
    assert hash(revived) == hash(policy)
    assert_same_behaviour(behaviour(revived), behaviour(policy))


# ---------------------------------------------------------------------------
# user policies
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("copier", list(COPIES))
@pytest.mark.parametrize("name", list(USER_POLICIES))
def test_copied_user_policy_equals_hashes_and_behaves_as_the_original(name, copier):
    policy = USER_POLICIES[name]
    revived = COPIES[copier](policy)
    assert revived == policy
    assert not revived != policy  # noqa: SIM202 (both operators are part of a value type)
    assert hash(revived) == hash(policy)
    assert len({revived, policy}) == 1
    assert_same_behaviour(behaviour(revived), behaviour(policy))


def test_copied_user_policy_shares_where_the_original_shares():
    policy = tb.DtypePolicy(floating="float32", unsigned="float32")
    for revived in (policy, *(copier(policy) for copier in COPIES.values())):
        for dtype in (np.float32, np.int64, np.bool_):
            a = np.zeros(3, dtype=dtype)
            t = tb.to_tensor(a, dtype=revived, copy=False)
            t[1] = 1
            assert a[1] == 1, (revived, dtype)
        with pytest.raises(tb.ShareError):
            tb.to_tensor(np.zeros(3, dtype=np.uint8), dtype=revived, copy=False)


FLOAT32_SPELLINGS = [np.float32, "float32", torch.float32, np.dtype("float32"), "np.float32"]
COMPLEX64_SPELLINGS = [np.complex64, "complex64", torch.complex64, np.dtype("complex64")]


@pytest.mark.parametrize("complex_spelling", COMPLEX64_SPELLINGS, ids=repr)
@pytest.mark.parametrize("floating_spelling", FLOAT32_SPELLINGS, ids=repr)
def test_policy_spelled_differently_equals_float32_and_behaves_identically(
    floating_spelling, complex_spelling
):
    policy = tb.DtypePolicy(floating=floating_spelling, complex=complex_spelling)
    assert policy == tb.FLOAT32
    assert policy == tb.FLOAT32
    assert hash(policy) == hash(tb.FLOAT32)
    assert_same_behaviour(behaviour(policy), behaviour(tb.FLOAT32))


EQUAL_USER_SPELLINGS = [
    ("float32", "int32"),
    (torch.float32, torch.int32),
    (np.dtype("float32"), np.dtype("int32")),
    ("np.float32", "numpy.int32"),
]


@pytest.mark.parametrize(("unsigned", "signed"), EQUAL_USER_SPELLINGS, ids=repr)
def test_equal_user_policies_from_different_spellings_behave_identically(unsigned, signed):
    reference = tb.DtypePolicy(unsigned=np.float32, signed=np.int32)
    policy = tb.DtypePolicy(unsigned=unsigned, signed=signed)
    assert policy == reference
    assert hash(policy) == hash(reference)
    assert_same_behaviour(behaviour(policy), behaviour(reference))


def test_unequal_policies_are_unequal():
    assert tb.DtypePolicy(floating="float64") != tb.FLOAT32
    assert tb.DtypePolicy(floating="float32") != tb.FLOAT32  # complex kept, not complex64
    assert tb.FLOAT32 != tb.PRESERVE
    assert tb.DtypePolicy(unsigned="float32") != tb.DtypePolicy(unsigned="float64")


@pytest.mark.parametrize(
    "other",
    [
        None,
        0,
        "float32",
        "FLOAT32",
        object(),
        [],
        {},
        np.float32,
        torch.float32,
        types.SimpleNamespace(floating="float32", complex="complex64"),
    ],
    ids=repr,
)
@pytest.mark.parametrize("policy", [tb.FLOAT32, tb.PRESERVE, USER_POLICIES["bool uint8"]], ids=repr)
def test_equality_with_an_unrelated_object_is_false(policy, other):
    assert (policy == other) is False
    assert (policy != other) is True
    assert (other == policy) is False


# ---------------------------------------------------------------------------
# across processes: a spawn-started worker (as DataLoader workers are started)
# ---------------------------------------------------------------------------

_WORKER_MODULE = """
import numpy as np
import torch
import tensorbridge as tb

PROBES = {
    "ndarray float64": lambda: np.arange(3.0),
    "ndarray float32": lambda: np.arange(3, dtype=np.float32),
    "ndarray int64": lambda: np.arange(3),
    "ndarray uint8": lambda: np.arange(3, dtype=np.uint8),
    "ndarray bool": lambda: np.array([True, False, True]),
    "ndarray complex128": lambda: np.arange(3, dtype=np.complex128),
    "ndarray longdouble": lambda: np.arange(3, dtype=np.longdouble),
    "tensor float64": lambda: torch.arange(3, dtype=torch.float64),
    "tensor float32": lambda: torch.arange(3, dtype=torch.float32),
    "tensor uint8": lambda: torch.arange(3, dtype=torch.uint8),
}


def _bytes(x):
    if isinstance(x, torch.Tensor):
        return x.detach().contiguous().view(torch.uint8).clone()
    return np.ascontiguousarray(x).view(np.uint8).copy()


def _flip(x):
    if isinstance(x, torch.Tensor):
        x.view(torch.uint8).bitwise_xor_(1)
    else:
        x.view(np.uint8)[...] ^= 1


def behaviour(policy):
    out = []
    for name, make in PROBES.items():
        for function in (tb.to_tensor, tb.to_numpy):
            for copy in (None, False):
                data = make()
                try:
                    result = function(data, dtype=policy, copy=copy)
                except Exception as exc:
                    out.append([name, function.__name__, copy, type(exc).__name__, str(exc)])
                    continue
                before = _bytes(result)
                _flip(data)
                shares = bool((_bytes(result) != before).any())
                _flip(data)
                out.append([name, function.__name__, copy, type(result).__name__,
                            str(result.dtype), shares, repr(result.tolist())])
    return out


def describe(config):
    policy = config["dtype"]
    return {
        "is FLOAT32": policy is tb.FLOAT32,
        "is PRESERVE": policy is tb.PRESERVE,
        "equals": [policy == tb.FLOAT32, policy == tb.PRESERVE],
        "hash": hash(policy),
        "behaviour": behaviour(policy),
    }
"""

_SPAWN_CHILD = """
    import json, multiprocessing, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import torch
    import tensorbridge as tb
    import policy_worker

    configs = [
        {"dtype": tb.FLOAT32},
        {"dtype": tb.PRESERVE},
        {"dtype": tb.DtypePolicy(floating="float32", complex="complex64")},
        {"dtype": tb.DtypePolicy(floating="float64", unsigned="float32")},
        {"dtype": tb.DtypePolicy(bool=np.uint8, signed=torch.int32)},
    ]
    if __name__ == "__main__":
        here = [policy_worker.describe(c) for c in configs]
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            there = pool.map(policy_worker.describe, configs, chunksize=1)
        print(json.dumps({"here": here, "there": there}))
"""


def test_policies_sent_to_a_spawn_worker_convert_as_in_the_parent(tmp_path):
    (tmp_path / "policy_worker.py").write_text(_WORKER_MODULE)
    result = json.loads(S.child_output(S.run_child(_SPAWN_CHILD, str(tmp_path))))
    here, there = result["here"], result["there"]
    problems = []
    for index, (h, t) in enumerate(zip(here, there, strict=True)):
        if t["behaviour"] != h["behaviour"]:
            first = next(
                (a, b) for a, b in zip(t["behaviour"], h["behaviour"], strict=True) if a != b
            )
            problems.append(f"config {index} converts differently in the worker: {first}")
        if t["equals"] != h["equals"]:
            problems.append(f"config {index} compares differently: {t['equals']} {h['equals']}")
    if [t["is FLOAT32"] for t in there] != [True, False, False, False, False]:
        problems.append("tb.FLOAT32 did not unpickle to itself in the worker")
    if [t["is PRESERVE"] for t in there] != [False, True, False, False, False]:
        problems.append("tb.PRESERVE did not unpickle to itself in the worker")
    assert here[2]["equals"] == [True, False]
    assert here[2]["hash"] == here[0]["hash"]  # an equal policy hashes equal
    assert not problems, "\n".join(problems)
