"""Contract section 9 (containers rebuilt intact) and section 8 (deep trees, cycles).

``tree_to_tensor``, ``tree_to_numpy`` and ``collate`` rebuild the containers they
walk with their contents intact: a ``Counter`` keeps its counts (not added twice),
a dataclass is rebuilt from its fields with ``functools.cached_property`` values
dropped (they recompute from the converted fields), an ``init=False`` field that
was never set stays unset, and mapping types are kept where they can be rebuilt.
The input container is never modified (section 8: a call changes nothing but its
result).

Section 8: walking a tree costs time linear in its size, also for very deep ones
(the depth limit is reached quickly), and a tree with a cycle raises a
``TensorBridgeError`` naming the path, never a ``RecursionError``. Those run in
a child process with a timeout.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import subprocess
import sys
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

import strategies as S
import tensorbridge as tb

# ---------------------------------------------------------------------------
# containers used below
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    image: Any
    label: Any

    @functools.cached_property
    def kind(self) -> str:
        """Recomputed from the fields: which library holds the image."""
        return type(self.image).__module__.split(".")[0]


@dataclasses.dataclass
class WithLazyField:
    image: Any
    cache: dict = dataclasses.field(init=False)  # never set


class ReadOnlyMapping(Mapping):
    """A ``Mapping`` that is not a dict, rebuilt from a dict."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


TREE_FUNCTIONS = {
    "tree_to_tensor": (tb.tree_to_tensor, np.ndarray, torch.Tensor),
    "tree_to_numpy": (tb.tree_to_numpy, torch.Tensor, np.ndarray),
}


def _leaf(source: type, values: list[float]) -> Any:
    """A float32 leaf of the source kind (float32 so that no policy cast is in play)."""
    array = np.array(values, dtype=np.float32)
    return torch.from_numpy(array) if source is torch.Tensor else array


def _as_numpy(x: Any) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ---------------------------------------------------------------------------
# Counter
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TREE_FUNCTIONS))
def test_a_counter_of_python_numbers_keeps_its_counts(name: str) -> None:
    convert, _, _ = TREE_FUNCTIONS[name]
    counts = Counter(a=1, b=3)
    result = convert(counts)
    assert type(result) is Counter
    assert dict(result) == {"a": 1, "b": 3}, "the counts were added to, not rebuilt"
    assert dict(counts) == {"a": 1, "b": 3}, "the input Counter changed"


@pytest.mark.parametrize("name", list(TREE_FUNCTIONS))
def test_a_counter_of_arrays_keeps_its_values(name: str) -> None:
    convert, source, target = TREE_FUNCTIONS[name]
    a, b = _leaf(source, [1.0, 2.0]), _leaf(source, [3.0])
    counts = Counter({"a": a, "b": b})
    result = convert(counts)
    assert type(result) is Counter
    assert set(result) == {"a", "b"}
    assert isinstance(result["a"], target)
    np.testing.assert_array_equal(_as_numpy(result["a"]), np.array([1.0, 2.0], np.float32))
    np.testing.assert_array_equal(_as_numpy(result["b"]), np.array([3.0], np.float32))
    assert counts["a"] is a, "the input Counter changed"
    assert counts["b"] is b, "the input Counter changed"


def test_collate_of_counters_stacks_the_counts_without_adding() -> None:
    # default_collate itself copies the first Counter and update()s it, which adds
    # the first sample's counts to the batch; the contract says the counts stay intact
    samples = [Counter(a=1, b=3), Counter(a=2, b=5)]
    batch = tb.collate(samples, dtype=tb.PRESERVE)
    assert type(batch) is Counter
    assert set(batch) == {"a", "b"}
    assert torch.equal(batch["a"], torch.tensor([1, 2]))
    assert torch.equal(batch["b"], torch.tensor([3, 5]))
    assert samples == [Counter(a=1, b=3), Counter(a=2, b=5)], "a sample changed"


# ---------------------------------------------------------------------------
# dataclasses
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TREE_FUNCTIONS))
def test_a_dataclass_drops_a_stale_cached_property(name: str) -> None:
    convert, source, target = TREE_FUNCTIONS[name]
    sample = Sample(image=_leaf(source, [1.0, 2.0]), label=3)
    before = sample.kind  # caches the source library's name in the instance
    assert before in ("numpy", "torch")
    result = convert(sample)
    assert type(result) is Sample
    assert isinstance(result.image, target)
    assert result.label == 3
    assert "kind" not in vars(result), "the cached value of the source was carried over"
    expected = type(result.image).__module__.split(".")[0]
    assert expected != before
    assert result.kind == expected, "the cached property was not recomputed"
    assert sample.kind == before, "the input's cached value changed"
    assert isinstance(sample.image, source), "the input dataclass changed"


def test_collate_of_dataclasses_drops_a_stale_cached_property() -> None:
    samples = [Sample(np.ones(2, np.float32), 0), Sample(np.zeros(2, np.float32), 1)]
    assert [s.kind for s in samples] == ["numpy", "numpy"]
    batch = tb.collate(samples)
    assert type(batch) is Sample
    assert torch.equal(batch.image, torch.from_numpy(np.stack([np.ones(2), np.zeros(2)])).float())
    assert torch.equal(batch.label, torch.tensor([0, 1]))
    assert "kind" not in vars(batch)
    assert batch.kind == "torch"
    assert all(isinstance(s.image, np.ndarray) for s in samples), "a sample changed"


@pytest.mark.parametrize("name", list(TREE_FUNCTIONS))
def test_an_init_false_field_that_was_never_set_stays_unset(name: str) -> None:
    convert, source, target = TREE_FUNCTIONS[name]
    sample = WithLazyField(image=_leaf(source, [1.0, 2.0]))
    result = convert(sample)
    assert type(result) is WithLazyField
    assert isinstance(result.image, target)
    np.testing.assert_array_equal(_as_numpy(result.image), np.array([1.0, 2.0], np.float32))
    assert not hasattr(result, "cache"), "a field that was never set was given a value"
    assert not hasattr(sample, "cache")


def test_collate_of_dataclasses_with_an_unset_init_false_field() -> None:
    samples = [WithLazyField(np.ones(2, np.float32)), WithLazyField(np.zeros(2, np.float32))]
    batch = tb.collate(samples)
    assert type(batch) is WithLazyField
    assert torch.equal(batch.image, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    assert not hasattr(batch, "cache")


@pytest.mark.parametrize("name", list(TREE_FUNCTIONS))
def test_a_frozen_dataclass_is_rebuilt(name: str) -> None:
    convert, source, target = TREE_FUNCTIONS[name]
    image = _leaf(source, [1.0, 2.0])
    sample = S.FrozenSample(image=image, label="cat")
    result = convert(sample)
    assert type(result) is S.FrozenSample
    assert isinstance(result.image, target)
    np.testing.assert_array_equal(_as_numpy(result.image), np.array([1.0, 2.0], np.float32))
    assert result.label == "cat"
    assert sample.image is image, "the input dataclass changed"


# ---------------------------------------------------------------------------
# other mappings, namedtuples; the input is never modified
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TREE_FUNCTIONS))
def test_an_ordered_dict_keeps_its_type_and_order(name: str) -> None:
    convert, source, target = TREE_FUNCTIONS[name]
    tree = OrderedDict([("z", _leaf(source, [1.0])), ("a", _leaf(source, [2.0])), ("m", 5)])
    leaves = dict(tree)
    result = convert(tree)
    assert type(result) is OrderedDict
    assert list(result) == ["z", "a", "m"]
    assert isinstance(result["z"], target)
    assert result["m"] == 5
    assert all(tree[k] is leaves[k] for k in leaves), "the input OrderedDict changed"


@pytest.mark.parametrize("name", list(TREE_FUNCTIONS))
def test_a_defaultdict_keeps_its_type_and_factory(name: str) -> None:
    convert, source, target = TREE_FUNCTIONS[name]
    tree = defaultdict(list, image=_leaf(source, [1.0, 2.0]), label=4)
    image = tree["image"]
    result = convert(tree)
    assert type(result) is defaultdict
    assert result.default_factory is list
    assert set(result) == {"image", "label"}
    assert isinstance(result["image"], target)
    assert result["label"] == 4
    assert result["missing"] == []  # the factory works on the result
    assert tree["image"] is image, "the input defaultdict changed"
    assert set(tree) == {"image", "label"}


@pytest.mark.parametrize("name", list(TREE_FUNCTIONS))
def test_a_namedtuple_keeps_its_type(name: str) -> None:
    convert, source, target = TREE_FUNCTIONS[name]
    pair = S.Pair(image=_leaf(source, [1.0, 2.0]), label=7)
    result = convert(pair)
    assert type(result) is S.Pair
    assert isinstance(result.image, target)
    np.testing.assert_array_equal(_as_numpy(result.image), np.array([1.0, 2.0], np.float32))
    assert result.label == 7


@pytest.mark.parametrize("name", list(TREE_FUNCTIONS))
@pytest.mark.parametrize("kind", [ReadOnlyMapping, S.Batch], ids=lambda k: k.__name__)
def test_a_mapping_subclass_is_walked_and_rebuilt(name: str, kind: type) -> None:
    convert, source, target = TREE_FUNCTIONS[name]
    image = _leaf(source, [1.0, 2.0])
    tree = kind({"image": image, "label": 1})
    result = convert(tree)
    assert isinstance(result, Mapping)
    # the type is kept where it can be rebuilt; both of these rebuild from a dict
    assert type(result) is kind
    assert set(result) == {"image", "label"}
    assert isinstance(result["image"], target)
    np.testing.assert_array_equal(_as_numpy(result["image"]), np.array([1.0, 2.0], np.float32))
    assert tree["image"] is image, "the input mapping changed"


@pytest.mark.parametrize(
    "make",
    [
        lambda: OrderedDict(image=np.ones(2), label=np.int64(1)),
        lambda: defaultdict(list, image=np.ones(2), label=np.int64(1)),
        lambda: S.Pair(np.ones(2), np.int64(1)),
        lambda: S.Batch(image=np.ones(2), label=np.int64(1)),
    ],
    ids=["OrderedDict", "defaultdict", "namedtuple", "dict subclass"],
)
def test_collate_keeps_container_types_as_default_collate_does(make: Any) -> None:
    samples = [make(), make()]
    expected = default_collate([make(), make()])
    batch = tb.collate(samples, dtype=tb.PRESERVE)
    assert type(batch) is type(expected)
    if isinstance(expected, defaultdict):
        assert batch.default_factory is expected.default_factory
    keys = expected._fields if isinstance(expected, tuple) else list(expected)
    for key in keys:
        got = getattr(batch, key) if isinstance(expected, tuple) else batch[key]
        want = getattr(expected, key) if isinstance(expected, tuple) else expected[key]
        assert got.dtype == want.dtype, key
        assert torch.equal(got, want), key
    for sample in samples:  # the samples are untouched
        image = sample.image if isinstance(sample, tuple) else sample["image"]
        assert isinstance(image, np.ndarray)
        assert image.dtype == np.float64


def test_the_input_tree_is_never_modified() -> None:
    image, mask = np.arange(4.0), np.ones((2, 2), np.uint8)
    inner = [mask, "text", None]
    tree = {"image": image, "meta": {"masks": inner, "id": 3}, "pair": (image, 1.5)}
    snapshot = json.dumps(_describe(tree))
    for convert in (tb.tree_to_tensor, tb.tree_to_numpy):
        convert(tree)
        assert json.dumps(_describe(tree)) == snapshot, convert.__name__
    assert tree["image"] is image
    assert tree["meta"]["masks"] is inner
    assert inner[0] is mask
    np.testing.assert_array_equal(image, np.arange(4.0))


def _describe(x: Any) -> Any:
    """A structural fingerprint: container types, leaf ids, leaf dtypes and values."""
    if isinstance(x, dict):
        return ["dict", id(x), {k: _describe(v) for k, v in x.items()}]
    if isinstance(x, (list, tuple)):
        return [type(x).__name__, id(x), [_describe(v) for v in x]]
    if isinstance(x, np.ndarray):
        return ["ndarray", id(x), str(x.dtype), x.tolist()]
    return [type(x).__name__, repr(x)]


# ---------------------------------------------------------------------------
# section 8: deep trees cost linear time; cycles raise naming the path
# ---------------------------------------------------------------------------


_DEEP_TREES = """
    import faulthandler, json, sys, time
    import numpy as np
    import tensorbridge as tb

    kind = sys.argv[1]
    calls = {
        "tree_to_tensor": lambda tree: tb.tree_to_tensor(tree),
        "tree_to_numpy": lambda tree: tb.tree_to_numpy(tree),
        "collate": lambda tree: tb.collate([tree, tree]),
    }

    def deep(depth):
        tree = np.ones(1)
        for _ in range(depth):
            tree = [tree] if kind == "list" else {"a": tree}
        return tree

    for name, call in calls.items():
        for depth in (10_000, 20_000, 40_000):
            tree = deep(depth)
            # a call that takes far longer than linear time kills the child here
            faulthandler.dump_traceback_later(4, exit=True)
            start = time.perf_counter()
            try:
                call(tree)
            except tb.TensorBridgeError as e:
                outcome = ["TensorBridgeError", len(str(e))]
            except BaseException as e:
                outcome = [type(e).__name__, len(str(e))]
            else:
                outcome = ["returned", 0]
            elapsed = time.perf_counter() - start
            faulthandler.cancel_dump_traceback_later()
            print(json.dumps({f"{name} {depth}": [*outcome, elapsed]}), flush=True)
            if elapsed > 2.0:
                sys.exit(3)  # the test fails on this call; the deeper ones would take longer
    print("DONE")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="faulthandler timeouts are POSIX-only here")
@pytest.mark.parametrize("kind", ["list", "dict"])
def test_deep_trees_reach_the_depth_error_in_linear_time(kind: str) -> None:
    try:
        proc = S.run_child(_DEEP_TREES, kind, timeout=90)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the child did not finish in 90 s: {e.stdout!r}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = {k: v for line in lines for k, v in line.items()}
    assert proc.returncode == 0, (
        f"the child exited with {proc.returncode} (it stops after a call over 2 s)\n"
        f"results so far: {results}\nstderr: {proc.stderr[-2000:]}"
    )
    assert proc.stdout.strip().endswith("DONE"), proc.stdout
    for name in ("tree_to_tensor", "tree_to_numpy", "collate"):
        for depth in (10_000, 20_000, 40_000):
            error, length, elapsed = results[f"{name} {depth}"]
            assert error == "TensorBridgeError", (name, depth, error)
            assert elapsed < 2.0, f"{name} at depth {depth} took {elapsed:.2f} s"
            assert length < 2000, f"{name} at depth {depth}: a {length}-character message"
        small = results[f"{name} 10000"][2]
        large = results[f"{name} 40000"][2]
        # linear: four times the depth, about four times the time (plus slack for noise)
        assert large <= 4 * small + 0.25, (
            f"{name}: {small:.3f} s at 10,000, {large:.3f} s at 40,000"
        )


_CYCLES = """
    import re
    import numpy as np
    import tensorbridge as tb

    def self_list():
        tree = [np.ones(2)]
        tree.append(tree)
        return tree, r"\\[1\\]"

    def self_dict():
        tree = {"image": np.ones(2)}
        tree["self"] = tree
        return tree, r"\\[[\\"']self[\\"']\\]"

    def deeper_cycle():
        inner = {"x": np.ones(2)}
        tree = {"meta": [inner]}
        inner["back"] = tree
        return tree, r"back"

    calls = {
        "tree_to_tensor": lambda tree: tb.tree_to_tensor(tree),
        "tree_to_numpy": lambda tree: tb.tree_to_numpy(tree),
        "collate": lambda tree: tb.collate([tree, tree]),
    }
    for make in (self_list, self_dict, deeper_cycle):
        for name, call in calls.items():
            tree, path = make()
            try:
                call(tree)
            except tb.TensorBridgeError as e:
                message = str(e)
                if not re.search(path, message):
                    print(f"FAIL {make.__name__} {name}: the path is not named: {message}")
                elif len(message) > 1000:
                    print(f"FAIL {make.__name__} {name}: a {len(message)}-character message")
                else:
                    print(f"ok {make.__name__} {name}")
            except BaseException as e:
                print(f"FAIL {make.__name__} {name}: {type(e).__name__}: {str(e)[:300]}")
            else:
                print(f"FAIL {make.__name__} {name}: returned without an error")
    print("DONE")
"""


def test_a_tree_with_a_cycle_raises_naming_the_path() -> None:
    try:
        proc = S.run_child(_CYCLES, timeout=60)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"a tree with a cycle hung: {e.stdout!r}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip().endswith("DONE"), proc.stdout
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert not failures, "\n".join(failures)
