"""Contract section 3, per-leaf dtypes in trees and ``collate`` (with sections 7-9).

``dtype`` may be a mapping from a top-level key of the batch, or a path written as
errors print it (``'["meta"]["depth"]'``, ``'[0]'``, ``'.image'``), to a dtype or a
policy. The dtype of a key applies to everything under it, a more specific path wins
over a broader one, and every other leaf follows the default policy, ``FLOAT32``. A
key that matches no leaf raises: a typo must not pass silently. Expected dtypes and
values are computed here with NumPy, never with tensorbridge.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
from collections import namedtuple
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

import strategies as S
import tensorbridge as tb

pytestmark = [
    # Python 3.12+ warns when forking a process that has threads (the DataLoader workers)
    pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning"),
]

Pair = namedtuple("Pair", ["image", "label"])


@dataclasses.dataclass
class Sample:
    image: Any
    label: Any


def _batch(seed: int = 0, *, complex_leaf: bool = True) -> dict[str, Any]:
    """A typical batch; without its complex leaf for keys that cast all of ``meta`` to a
    real dtype (NumPy warns when it drops an imaginary part)."""
    rng = np.random.default_rng(seed)
    batch = {
        "image": rng.integers(0, 256, (2, 3), dtype=np.uint8),
        "label": np.array([3, -1], dtype=np.int64),
        "features": rng.standard_normal(3),  # float64
        "meta": {
            "depth": rng.standard_normal(2),  # float64
            "scale": rng.standard_normal(2).astype(np.float16),
            "id": np.array([7, 8], dtype=np.int32),
            "spectrum": np.array([1 + 2j, 0.1j], dtype=np.complex128),
            "name": "sample",
        },
        "boxes": [rng.standard_normal(4), rng.standard_normal(4)],
        "pair": (rng.standard_normal(2), np.array([1, 2], dtype=np.int64)),
    }
    if not complex_leaf:
        del batch["meta"]["spectrum"]
    return batch


def _tensors(tree: Any) -> Any:
    """The same tree with every ndarray leaf replaced by a tensor holding its values."""
    if isinstance(tree, np.ndarray):
        # leaves torch cannot hold (datetime64) stay ndarrays: tree_to_numpy takes both
        return tree if tree.dtype.kind in "mMUSOV" else torch.from_numpy(tree.copy())
    if isinstance(tree, dict):
        return {k: _tensors(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_tensors(v) for v in tree]
    if isinstance(tree, tuple):
        return (
            type(tree)(*map(_tensors, tree))
            if hasattr(tree, "_fields")
            else tuple(map(_tensors, tree))
        )
    return tree


def _get(tree: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        tree = (
            getattr(tree, step[1:])
            if isinstance(step, str) and step.startswith(".")
            else tree[step]
        )
    return tree


def _assert_leaf(result: Any, expected: np.ndarray, *, kind: type, where: str) -> None:
    assert isinstance(result, kind), (where, type(result))
    dtype = S.numpy_dtype_of(result)
    assert dtype == expected.dtype, (where, dtype, expected.dtype)
    S.assert_same_values(result, expected)


def _default(a: np.ndarray) -> np.ndarray:
    """FLOAT32, the default policy, applied with NumPy."""
    return a.astype(S.default_policy_dtype(a.dtype))


#: every call under test: (convert a tree of ndarrays, the result leaf type, reference)
def _via_tree_to_tensor(tree: Any, **options: Any) -> Any:
    return tb.tree_to_tensor(tree, **options)


def _via_tree_to_numpy(tree: Any, **options: Any) -> Any:
    return tb.tree_to_numpy(_tensors(tree), **options)


def _via_collate(tree: Any, **options: Any) -> Any:
    """``collate`` of one sample: the batch has the tree's structure, each leaf gains a
    leading axis of 1 (checked against ``leaf[None]``)."""
    return tb.collate([tree], **options)


CALLS = {
    "tree_to_tensor": (_via_tree_to_tensor, torch.Tensor, lambda a: a),
    "tree_to_numpy": (_via_tree_to_numpy, np.ndarray, lambda a: a),
    "collate": (_via_collate, torch.Tensor, lambda a: a[None]),
}
CALL_NAMES = list(CALLS)


def _check(
    call: str,
    dtype: Any,
    expected: dict[tuple[Any, ...], Any],
    *,
    batch: dict[str, Any] | None = None,
    **options: Any,
) -> Any:
    """Convert ``batch`` (``_batch()``) with ``dtype`` and check the leaves named in
    ``expected`` (path -> NumPy dtype, or ``None`` for the default policy)."""
    convert, kind, shaped = CALLS[call]
    batch = _batch() if batch is None else batch
    out = convert(batch, dtype=dtype, **options)
    for path, target in expected.items():
        if target is None and path not in _paths_of(batch):
            continue
        source = shaped(_get(batch, path))
        want = _default(source) if target is None else source.astype(target)
        _assert_leaf(_get(out, path), want, kind=kind, where=str(path))
    return out


ALL_LEAVES: list[tuple[Any, ...]] = [
    ("image",),
    ("label",),
    ("features",),
    ("meta", "depth"),
    ("meta", "scale"),
    ("meta", "id"),
    ("meta", "spectrum"),
    ("boxes", 0),
    ("boxes", 1),
    ("pair", 0),
    ("pair", 1),
]


def _paths_of(tree: Any) -> set[tuple[Any, ...]]:
    return {path for path, _ in _paths(tree)}


def _expect(**overrides: Any) -> dict[tuple[Any, ...], Any]:
    """Every array leaf under the default policy, except the paths given (joined by '/')."""
    expected: dict[tuple[Any, ...], Any] = dict.fromkeys(ALL_LEAVES)
    for name, target in overrides.items():
        path = tuple(int(p) if p.isdigit() else p for p in name.split("__"))
        expected[path] = np.dtype(target)
    return expected


# ---------------------------------------------------------------------------
# top-level keys
# ---------------------------------------------------------------------------


def test_collate_casts_images_and_leaves_labels_alone():
    samples = [{"image": _batch(i)["image"], "label": np.int64(i - 1)} for i in range(3)]
    batch = tb.collate(samples, dtype={"image": torch.float32})
    images = np.stack([s["image"] for s in samples])
    _assert_leaf(batch["image"], images.astype(np.float32), kind=torch.Tensor, where="image")
    _assert_leaf(
        batch["label"], np.array([-1, 0, 1], dtype=np.int64), kind=torch.Tensor, where="label"
    )


@pytest.mark.parametrize("call", CALL_NAMES)
def test_top_level_key_casts_that_leaf_and_the_rest_follow_float32(call):
    _check(call, {"image": torch.float16}, _expect(image=np.float16))


@pytest.mark.parametrize("call", CALL_NAMES)
def test_top_level_key_written_as_a_path(call):
    _check(call, {'["image"]': torch.float16}, _expect(image=np.float16))


@pytest.mark.parametrize("call", CALL_NAMES)
def test_empty_mapping_is_the_default_policy(call):
    _check(call, {}, _expect())


@pytest.mark.parametrize("call", CALL_NAMES)
@pytest.mark.parametrize(
    "spelling", [torch.float64, np.float64, np.dtype(np.float64), "float64"], ids=repr
)
def test_leaf_dtype_takes_every_dtype_spelling(call, spelling):
    _check(
        call,
        {"features": spelling, "image": spelling},
        _expect(features=np.float64, image=np.float64),
    )


@pytest.mark.parametrize("call", CALL_NAMES)
def test_any_mapping_type_is_accepted(call):
    dtype = types.MappingProxyType({"label": torch.int32})
    _check(call, dtype, _expect(label=np.int32))


# ---------------------------------------------------------------------------
# nested paths, list and tuple indices, fields
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALL_NAMES)
def test_nested_path_key(call):
    _check(call, {'["meta"]["depth"]': torch.float64}, _expect(meta__depth=np.float64))


@pytest.mark.parametrize("call", CALL_NAMES)
def test_path_into_a_list_and_a_tuple(call):
    dtype = {'["boxes"][1]': torch.float16, '["pair"][0]': "float64"}
    _check(call, dtype, _expect(boxes__1=np.float16, pair__0=np.float64))


@pytest.mark.parametrize("call", CALL_NAMES)
@pytest.mark.parametrize("key", ["[0]", 0], ids=["path", "int"])
def test_index_key_of_a_list_or_tuple_batch(call, key):
    convert, kind, shaped = CALLS[call]
    for container in (list, tuple):
        leaves = container([np.arange(3.0), np.arange(3.0) / 7])
        out = convert(leaves, dtype={key: torch.float64})
        assert isinstance(out, (list, tuple))
        _assert_leaf(out[0], shaped(leaves[0]), kind=kind, where="[0]")
        _assert_leaf(out[1], shaped(leaves[1]).astype(np.float32), kind=kind, where="[1]")


@pytest.mark.parametrize("call", CALL_NAMES)
def test_namedtuple_field_keys(call):
    convert, kind, shaped = CALLS[call]
    batch = {"pair": Pair(np.arange(3.0), np.arange(3, dtype=np.int64))}
    out = convert(batch, dtype={'["pair"].image': torch.float64, '["pair"].label': "int16"})
    assert isinstance(out["pair"], Pair)
    _assert_leaf(out["pair"].image, shaped(batch["pair"].image), kind=kind, where="image")
    _assert_leaf(
        out["pair"].label, shaped(batch["pair"].label).astype(np.int16), kind=kind, where="label"
    )
    root = convert(batch["pair"], dtype={".image": torch.float64})
    assert isinstance(root, Pair)
    _assert_leaf(root.image, shaped(batch["pair"].image), kind=kind, where=".image")
    _assert_leaf(root.label, shaped(batch["pair"].label), kind=kind, where=".label")


@pytest.mark.parametrize("call", ["tree_to_tensor", "tree_to_numpy"])
def test_dataclass_field_keys(call):
    convert, kind, _ = CALLS[call]
    sample = Sample(image=np.arange(4, dtype=np.uint8), label=np.arange(2.0))
    out = convert([sample], dtype={"[0].image": torch.float32, "[0].label": np.float64})
    assert isinstance(out[0], Sample)
    _assert_leaf(out[0].image, sample.image.astype(np.float32), kind=kind, where="image")
    _assert_leaf(out[0].label, sample.label, kind=kind, where="label")
    root = convert(sample, dtype={".label": "float16"})
    _assert_leaf(root.label, sample.label.astype(np.float16), kind=kind, where=".label")
    _assert_leaf(root.image, sample.image, kind=kind, where=".image")


# ---------------------------------------------------------------------------
# subtrees, specific over broad, policies as values
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALL_NAMES)
def test_key_naming_a_subtree_applies_to_every_leaf_under_it(call):
    # a concrete dtype casts every element whatever its kind (int32 included)
    out = _check(
        call,
        {"meta": torch.float16, "boxes": "float64"},
        _expect(
            meta__depth=np.float16,
            meta__scale=np.float16,
            meta__id=np.float16,
            boxes__0=np.float64,
            boxes__1=np.float64,
        ),
        batch=_batch(complex_leaf=False),
    )
    if call != "collate":
        assert out["meta"]["name"] == "sample"


@pytest.mark.parametrize("call", CALL_NAMES)
@pytest.mark.parametrize("reverse", [False, True], ids=["broad-first", "specific-first"])
def test_more_specific_path_overrides_a_broader_key(call, reverse):
    items = [
        ("meta", torch.float16),
        ('["meta"]["depth"]', torch.float64),
        ("boxes", tb.PRESERVE),
        ('["boxes"][0]', "float16"),
    ]
    dtype = dict(reversed(items) if reverse else items)
    _check(
        call,
        dtype,
        _expect(
            meta__depth=np.float64,
            meta__scale=np.float16,
            meta__id=np.float16,
            boxes__0=np.float16,
            boxes__1=np.float64,
        ),
        batch=_batch(complex_leaf=False),
    )


@pytest.mark.parametrize("call", CALL_NAMES)
def test_policy_as_a_leaf_value(call):
    dtype = {
        "features": tb.PRESERVE,
        "meta": tb.DtypePolicy(floating="float16"),  # complex and ints kept
        "pair": tb.FLOAT32,
    }
    _check(
        call,
        dtype,
        _expect(
            features=np.float64,
            meta__depth=np.float16,
            meta__scale=np.float16,
            meta__id=np.int32,
            meta__spectrum=np.complex128,
        ),
    )


@pytest.mark.parametrize("call", CALL_NAMES)
def test_policy_with_integer_fields_as_a_leaf_value(call):
    dtype = {"image": tb.DtypePolicy(floating="float32", unsigned="float32")}
    _check(call, dtype, _expect(image=np.float32, label=np.int64))


def test_leaf_that_keeps_its_dtype_shares_memory():
    batch = _batch()
    out = tb.tree_to_tensor(batch, dtype={"features": tb.PRESERVE, '["meta"]["depth"]': np.float64})
    for path in (("features",), ("meta", "depth")):
        array, tensor = _get(batch, path), _get(out, path)
        array[0] = 42.5  # write NumPy, read torch
        assert tensor[0].item() == 42.5
        tensor[1] = -7.25  # write torch, read NumPy
        assert array[1] == -7.25


# ---------------------------------------------------------------------------
# keys that match nothing, malformed keys, bad values
# ---------------------------------------------------------------------------

UNKNOWN_KEYS = [
    "imag",  # a typo
    "Image",
    '["meta"]["dept"]',
    '["image"][0]',  # below an array leaf
    '["boxes"][5]',  # past the end of a list
    '["pair"][2]',
    "[0]",  # an index into a dict
    ".image",  # a field of a dict
    '["meta"].depth',
    7,
]


@pytest.mark.parametrize("call", CALL_NAMES)
@pytest.mark.parametrize("key", UNKNOWN_KEYS, ids=repr)
def test_key_that_matches_no_leaf_raises_and_names_the_key(call, key):
    convert = CALLS[call][0]
    batch = _batch()
    with pytest.raises(tb.TensorBridgeError) as info:
        convert(batch, dtype={"image": torch.float32, key: torch.float16})
    assert isinstance(info.value, (TypeError, ValueError))
    assert str(key) in str(info.value)
    assert _same_tree(batch, _batch())  # a failed call changes nothing


def _same_tree(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b)) and a.dtype == b.dtype
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_same_tree, a, b))
    return bool(a == b)


MALFORMED_KEYS = [
    '["meta"',
    '["meta"]]',
    '["meta"][',
    "[meta]",
    "[]",
    '["meta"]["depth"',
    '["meta"]x',
    "[-x]",
    "[0.5]",
]


@pytest.mark.parametrize("call", CALL_NAMES)
@pytest.mark.parametrize("key", MALFORMED_KEYS)
def test_malformed_path_raises_and_names_the_key(call, key):
    convert = CALLS[call][0]
    with pytest.raises(tb.TensorBridgeError) as info:
        convert(_batch(), dtype={key: torch.float16})
    assert isinstance(info.value, (TypeError, ValueError))
    assert key in str(info.value)


@pytest.mark.parametrize("call", CALL_NAMES)
@pytest.mark.parametrize("value", ["nonsense", 3, object()], ids=repr)
def test_invalid_leaf_dtype_value_raises(call, value):
    with pytest.raises(tb.TensorBridgeError) as info:
        CALLS[call][0](_batch(), dtype={"image": value})
    assert isinstance(info.value, (TypeError, ValueError))


@pytest.mark.parametrize("call", CALL_NAMES)
def test_ambiguous_leaf_dtype_name_raises_unsupported_dtype(call):
    with pytest.raises(tb.UnsupportedDtypeError, match="float"):
        CALLS[call][0](_batch(), dtype={"image": "float"})


# ---------------------------------------------------------------------------
# the casting rule per leaf; errors name the leaf
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALL_NAMES)
@pytest.mark.parametrize(
    ("key", "target", "path"),
    [
        ("label", "uint8", '["label"]'),  # int64 -> uint8: not same_kind
        ('["meta"]["depth"]', "int8", '["meta"]["depth"]'),  # float -> int
        ("boxes", torch.int32, '["boxes"][0]'),
        ('["pair"][0]', np.int16, '["pair"][0]'),
    ],
)
def test_casting_error_from_a_leaf_dtype_names_the_leaf_path(call, key, target, path):
    with pytest.raises(tb.CastingError) as info:
        CALLS[call][0](_batch(), dtype={key: target})
    message = str(info.value)
    assert f"batch{path}" in message, message
    assert "same_kind" in message


@pytest.mark.parametrize("call", CALL_NAMES)
def test_unsafe_casting_with_leaf_dtypes_gives_astype_values(call):
    batch = _batch()
    batch["label"] = np.array([-1, 0, 255, 256], dtype=np.int64)
    batch["meta"]["depth"] = np.array([0.5, -2.75, 100.25, -0.0])
    convert, kind, shaped = CALLS[call]
    out = convert(
        batch, dtype={"label": "uint8", '["meta"]["depth"]': torch.int8}, casting="unsafe"
    )
    _assert_leaf(out["label"], shaped(batch["label"]).astype(np.uint8), kind=kind, where="label")
    depth = shaped(batch["meta"]["depth"]).astype(np.int8)
    _assert_leaf(out["meta"]["depth"], depth, kind=kind, where="depth")


@pytest.mark.parametrize("call", ["tree_to_tensor", "collate"])
def test_error_from_an_unmapped_leaf_still_names_its_path(call):
    batch = _batch()
    batch["meta"]["when"] = np.array(["2024-01-01"], dtype="datetime64[D]")
    with pytest.raises(tb.UnsupportedDtypeError, match=re.escape('["meta"]["when"]')):
        CALLS[call][0](batch, dtype={"image": torch.float32})


@pytest.mark.parametrize("call", ["tree_to_tensor", "tree_to_numpy"])
def test_share_error_from_an_unmapped_leaf_names_its_path(call):
    tree = {"image": np.arange(3, dtype=np.uint8), "meta": {"depth": np.arange(3.0)}}
    with pytest.raises(tb.ShareError, match=re.escape('batch["meta"]["depth"]')):
        CALLS[call][0](tree, dtype={"image": tb.PRESERVE}, copy=False)


@pytest.mark.parametrize("call", ["tree_to_tensor", "tree_to_numpy"])
def test_field_paths_in_errors_match_the_key_syntax(call):
    # the path an error prints is a key that selects that very leaf
    convert = CALLS[call][0]
    tree = {"s": Sample(image=np.arange(3.0), label=np.arange(3, dtype=np.int64))}
    with pytest.raises(tb.CastingError) as info:
        convert(tree, dtype={'["s"].image': "uint8"})
    assert 'batch["s"].image' in str(info.value)
    out = convert(tree, dtype={'["s"].image': "uint8"}, casting="unsafe")
    assert S.numpy_dtype_of(out["s"].image) == np.dtype(np.uint8)


# ---------------------------------------------------------------------------
# collate with several samples, and inside a DataLoader
# ---------------------------------------------------------------------------


def _samples(n: int) -> list[dict[str, Any]]:
    return [_batch(i) for i in range(n)]


def _stacked(samples: list[dict[str, Any]], path: tuple[Any, ...]) -> np.ndarray:
    return np.stack([_get(s, path) for s in samples])


LOADER_DTYPE = {
    "image": torch.float32,
    '["meta"]["depth"]': torch.float64,
    '["boxes"][1]': "float16",
    "pair": tb.PRESERVE,
}
LOADER_EXPECTED = {
    ("image",): np.float32,
    ("label",): np.int64,
    ("features",): np.float32,
    ("meta", "depth"): np.float64,
    ("meta", "scale"): np.float32,
    ("meta", "id"): np.int32,
    ("boxes", 0): np.float32,
    ("boxes", 1): np.float16,
    ("pair", 0): np.float64,
    ("pair", 1): np.int64,
}


def _check_collated(batch: Any, samples: list[dict[str, Any]]) -> None:
    for path, target in LOADER_EXPECTED.items():
        want = _stacked(samples, path).astype(target)
        _assert_leaf(_get(batch, path), want, kind=torch.Tensor, where=str(path))
    assert batch["meta"]["name"] == ["sample"] * len(samples)


def test_collate_of_several_samples_with_leaf_dtypes():
    samples = _samples(5)
    _check_collated(tb.collate(samples, dtype=LOADER_DTYPE), samples)


def test_collate_of_tuple_and_namedtuple_samples_with_index_and_field_keys():
    samples = [(np.arange(3.0) + i, np.int64(i)) for i in range(4)]
    out = tb.collate(samples, dtype={"[0]": torch.float64, "[1]": "int32"})
    _assert_leaf(out[0], np.stack([s[0] for s in samples]), kind=torch.Tensor, where="[0]")
    _assert_leaf(out[1], np.arange(4, dtype=np.int32), kind=torch.Tensor, where="[1]")
    pairs = [Pair(np.full(2, i, dtype=np.uint8), np.float64(i) / 3) for i in range(4)]
    out = tb.collate(pairs, dtype={".image": torch.float16})
    assert isinstance(out, Pair)
    images = np.stack([p.image for p in pairs]).astype(np.float16)
    _assert_leaf(out.image, images, kind=torch.Tensor, where=".image")
    labels = np.array([p.label for p in pairs]).astype(np.float32)
    _assert_leaf(out.label, labels, kind=torch.Tensor, where=".label")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_with_a_partial_collate_and_leaf_dtypes(num_workers):
    dataset = _samples(6)
    loader = DataLoader(
        dataset,
        batch_size=4,
        num_workers=num_workers,
        collate_fn=functools.partial(tb.collate, dtype=LOADER_DTYPE),
        timeout=120 if num_workers else 0,
    )
    batches = list(loader)
    assert len(batches) == 2
    _check_collated(batches[0], dataset[:4])
    _check_collated(batches[1], dataset[4:])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_with_a_typo_in_the_leaf_dtypes_raises(num_workers):
    loader = DataLoader(
        _samples(4),
        batch_size=2,
        num_workers=num_workers,
        collate_fn=functools.partial(tb.collate, dtype={"imgae": torch.float32}),
        timeout=120 if num_workers else 0,
    )
    with pytest.raises(tb.TensorBridgeError, match="imgae"):
        next(iter(loader))


# ---------------------------------------------------------------------------
# property: each leaf follows the longest key that is a prefix of its path
# ---------------------------------------------------------------------------

#: no complex leaves: complex to real under "unsafe" warns in NumPy
LEAF_DTYPES = [d for d in S.STANDARD_DTYPES if d.kind != "c"]
HALF = tb.DtypePolicy(floating="float16")
TARGETS = st.one_of(
    st.sampled_from(S.STANDARD_DTYPES),
    st.sampled_from([tb.PRESERVE, tb.FLOAT32, HALF]),
)


def _resolve(target: Any, dt: np.dtype[Any]) -> np.dtype[Any]:
    """The result dtype of a leaf of dtype ``dt`` under ``target`` (NumPy's view)."""
    if target is tb.PRESERVE:
        return dt
    if target is tb.FLOAT32:
        return S.default_policy_dtype(dt)
    if target is HALF:
        return np.dtype(np.float16) if dt.kind == "f" else dt
    return np.dtype(target)


@st.composite
def _trees(draw: st.DrawFn, depth: int = 0) -> Any:
    """Nested dicts and lists, every container non-empty with an array somewhere below."""
    if depth == 2 or (depth > 0 and draw(st.booleans())):
        dt = draw(st.sampled_from(LEAF_DTYPES))
        shape = draw(st.sampled_from([(), (2,), (1, 3)]))
        values = np.arange(int(np.prod(shape)), dtype=np.int64) % 4
        return values.reshape(shape).astype(dt)
    if draw(st.booleans()):
        keys = draw(
            st.lists(st.sampled_from(["a", "b", "img", "x_1"]), min_size=1, max_size=3, unique=True)
        )
        return {k: draw(_trees(depth + 1)) for k in keys}
    return [draw(_trees(depth + 1)) for _ in range(draw(st.integers(1, 3)))]


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], bool]]:
    """Every node's path, with whether it is an array leaf."""
    if isinstance(tree, np.ndarray):
        return [(prefix, True)]
    if not isinstance(tree, (dict, list, tuple)):
        return [(prefix, False)]
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    found = [(prefix, False)] if prefix else []
    for k, v in items:
        found += _paths(v, (*prefix, k))
    return found


def _path_text(path: tuple[Any, ...]) -> str:
    return "".join(f'["{p}"]' if isinstance(p, str) else f"[{p}]" for p in path)


@given(data=st.data())
def test_each_leaf_follows_its_longest_matching_key(data):
    tree = data.draw(_trees(), label="tree")
    call = data.draw(st.sampled_from(CALL_NAMES), label="call")
    nodes = _paths(tree)
    chosen = data.draw(
        st.lists(st.sampled_from([p for p, _ in nodes]), unique=True, max_size=4), label="keys"
    )
    dtype: dict[Any, Any] = {}
    targets: dict[tuple[Any, ...], Any] = {}
    for path in chosen:
        top_level = len(path) == 1 and data.draw(st.booleans(), label="bare key")
        targets[path] = data.draw(TARGETS, label=str(path))
        dtype[path[0] if top_level else _path_text(path)] = targets[path]

    convert, kind, shaped = CALLS[call]
    out = convert(tree, dtype=dtype, casting="unsafe")
    for path, is_leaf in nodes:
        if not is_leaf:
            continue
        matching = [k for k in targets if path[: len(k)] == k]
        source = shaped(_get(tree, path))
        if matching:
            want = source.astype(_resolve(targets[max(matching, key=len)], source.dtype))
        else:
            want = _default(source)
        _assert_leaf(_get(out, path), want, kind=kind, where=_path_text(path))
