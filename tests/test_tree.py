"""Contract section 9, ``tree_to_tensor`` and ``tree_to_numpy``.

The structure comes back with the same container types (where they can be rebuilt);
every array leaf is converted exactly as the single-array functions convert it (dtype
policy, copy and share, casting); every other leaf is returned untouched (the very
same object); an error from a leaf names the leaf's path in the tree.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

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


@dataclasses.dataclass
class Sample:
    image: Any
    label: Any
    name: str = "sample"


class OddMapping(Mapping):
    """A mapping whose constructor cannot take a plain dict."""

    def __init__(self, data: dict, tag: str) -> None:
        self._data = dict(data)
        self.tag = tag

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _path(text: str) -> str:
    """A regex for a leaf path written like ``["image"][2]`` (whatever the root is called)."""
    return re.escape(text)


def _flip_first(x) -> None:
    """Change the first element in place (for sharing shown by mutation)."""
    if isinstance(x, torch.Tensor):
        with torch.no_grad():
            x.view(-1)[0] += 1
    else:
        x.reshape(-1)[0] += 1


def _first(x) -> float:
    return float(x.reshape(-1)[0])


# ---------------------------------------------------------------------------
# structure and container types
# ---------------------------------------------------------------------------


def test_every_container_type_is_walked_and_kept():
    img = np.arange(6, dtype=np.float64).reshape(2, 3)
    tree = {
        "dict": {"a": img},
        "ordered": OrderedDict([("z", img), ("a", img)]),
        "batch": S.Batch(x=img),
        "list": [img, img],
        "tuple": (img, img),
        "pair": S.Pair(img, img),
        "sample": Sample(img, img, "n"),
        "frozen": S.FrozenSample(img, img),
    }
    out = tb.tree_to_tensor(tree)
    expected = torch.from_numpy(img.astype(np.float32))

    assert type(out) is dict
    assert list(out) == list(tree)
    assert type(out["dict"]) is dict
    assert type(out["ordered"]) is OrderedDict
    assert list(out["ordered"]) == ["z", "a"]
    assert type(out["batch"]) is S.Batch
    assert type(out["list"]) is list
    assert len(out["list"]) == 2
    assert type(out["tuple"]) is tuple
    assert len(out["tuple"]) == 2
    assert type(out["pair"]) is S.Pair
    assert type(out["sample"]) is Sample
    assert out["sample"].name == "n"
    assert type(out["frozen"]) is S.FrozenSample

    leaves = [
        out["dict"]["a"],
        *out["ordered"].values(),
        out["batch"]["x"],
        *out["list"],
        *out["tuple"],
        out["pair"].image,
        out["pair"].label,
        out["sample"].image,
        out["sample"].label,
        out["frozen"].image,
        out["frozen"].label,
    ]
    for leaf in leaves:
        assert isinstance(leaf, torch.Tensor)
        assert leaf.dtype == torch.float32
        assert torch.equal(leaf, expected)


def test_tree_to_numpy_keeps_every_container_type():
    t = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    tree = [
        OrderedDict([("b", t), ("a", (t, S.Pair(t, 3)))]),
        S.FrozenSample(t, [t, "x"]),
        Sample(t, None),
    ]
    out = tb.tree_to_numpy(tree)
    expected = np.arange(6, dtype=np.float32).reshape(2, 3)

    assert type(out) is list
    assert type(out[0]) is OrderedDict
    assert list(out[0]) == ["b", "a"]
    assert type(out[0]["a"]) is tuple
    assert type(out[0]["a"][1]) is S.Pair
    assert out[0]["a"][1].label == 3
    assert type(out[1]) is S.FrozenSample
    assert out[1].label[1] == "x"
    assert type(out[2]) is Sample
    assert out[2].label is None
    for leaf in (out[0]["b"], out[0]["a"][0], out[0]["a"][1].image, out[1].image, out[2].image):
        assert type(leaf) is np.ndarray
        assert leaf.dtype == np.float32
        np.testing.assert_array_equal(leaf, expected)
    assert type(out[1].label) is list
    assert type(out[1].label[0]) is np.ndarray


def test_mapping_that_cannot_be_rebuilt_still_gives_a_mapping():
    a = np.arange(3, dtype=np.float64)
    out = tb.tree_to_tensor({"m": OddMapping({"x": a, "s": "keep"}, tag="t")})
    m = out["m"]
    assert isinstance(m, Mapping)
    assert list(m) == ["x", "s"]
    assert m["x"].dtype == torch.float32
    assert torch.equal(m["x"], torch.tensor([0.0, 1.0, 2.0]))
    assert m["s"] == "keep"


def test_input_tree_is_not_modified():
    img = np.arange(4, dtype=np.float64)
    inner = [img]
    tree = {"x": inner, "s": Sample(img, 1)}
    tb.tree_to_tensor(tree)
    tb.tree_to_numpy(tree)
    assert tree["x"] is inner
    assert inner[0] is img
    assert tree["s"].image is img
    np.testing.assert_array_equal(img, np.arange(4, dtype=np.float64))


def test_root_leaf_is_converted_or_returned():
    a = np.arange(3, dtype=np.float64)
    t = tb.tree_to_tensor(a)
    assert isinstance(t, torch.Tensor)
    assert t.dtype == torch.float32
    assert torch.equal(t, torch.tensor([0.0, 1.0, 2.0]))
    back = tb.tree_to_numpy(torch.arange(3, dtype=torch.float64))
    assert type(back) is np.ndarray
    assert back.dtype == np.float32
    s = "just a string"
    assert tb.tree_to_tensor(s) is s
    assert tb.tree_to_numpy(s) is s


# ---------------------------------------------------------------------------
# non-array leaves
# ---------------------------------------------------------------------------

_OTHER_LEAVES = [
    "text",
    b"bytes",
    None,
    0,
    7,
    2.5,
    float("nan"),
    1 + 2j,
    True,
    object(),
    Ellipsis,
]


@pytest.mark.parametrize("convert", [tb.tree_to_tensor, tb.tree_to_numpy], ids=["tensor", "numpy"])
@pytest.mark.parametrize("options", [{}, {"dtype": tb.PRESERVE}, {"copy": True}], ids=str)
def test_other_leaves_are_returned_untouched(convert, options):
    tree = {"leaves": list(_OTHER_LEAVES), "t": tuple(_OTHER_LEAVES), "d": {"v": _OTHER_LEAVES[5]}}
    out = convert(tree, **options)
    assert len(out["leaves"]) == len(_OTHER_LEAVES)
    for got, original in zip(out["leaves"], _OTHER_LEAVES, strict=True):
        assert got is original
    for got, original in zip(out["t"], _OTHER_LEAVES, strict=True):
        assert got is original
    assert out["d"]["v"] is _OTHER_LEAVES[5]


def test_a_list_of_numbers_is_a_container_not_an_array():
    tree = {"xs": [1.5, 2, True]}
    out = tb.tree_to_tensor(tree)
    assert type(out["xs"]) is list
    assert out["xs"][0] == 1.5
    assert type(out["xs"][0]) is float
    assert type(out["xs"][1]) is int
    assert out["xs"][2] is True


def test_numpy_string_scalars_are_strings_in_trees_and_collate() -> None:
    name, tag = np.str_("cat"), np.bytes_(b"x")
    out = tb.tree_to_tensor({"name": name, "tag": tag, "x": np.zeros(2)})
    assert out["name"] is name
    assert out["tag"] is tag
    batch = tb.collate([{"n": np.str_("a")}, {"n": np.str_("b")}])
    assert batch["n"] == ["a", "b"]


# ---------------------------------------------------------------------------
# array leaves: the dtype policy, as in to_tensor / to_numpy
# ---------------------------------------------------------------------------

_array_leaves = S.arrays(shape=S.shapes(max_dims=2, max_side=3))
_other = st.one_of(st.text(max_size=3), st.integers(), st.none(), st.floats())


def _trees(leaves):
    return st.recursive(
        st.one_of(leaves, _other),
        lambda kids: st.one_of(
            st.lists(kids, max_size=3),
            st.tuples(kids, kids),
            st.dictionaries(st.text(max_size=3), kids, max_size=3),
        ),
        max_leaves=8,
    )


def _check_tree(src, out, check_leaf) -> None:
    """Walk ``src`` and ``out`` side by side (a reference walker, not tensorbridge's)."""
    if isinstance(src, (np.ndarray, torch.Tensor)):
        check_leaf(src, out)
    elif isinstance(src, dict):
        assert type(out) is dict
        assert list(out) == list(src)
        for key in src:
            _check_tree(src[key], out[key], check_leaf)
    elif isinstance(src, (list, tuple)):
        assert type(out) is type(src)
        assert len(out) == len(src)
        for s, o in zip(src, out, strict=True):
            _check_tree(s, o, check_leaf)
    else:
        assert out is src


def _default_tensor_leaf(src: np.ndarray, out) -> None:
    expected = S.as_float32(src)
    assert isinstance(out, torch.Tensor)
    assert out.device.type == "cpu"
    assert out.dtype == S.torch_dtype(expected.dtype)
    S.assert_same_values(out, expected)


def _preserve_tensor_leaf(src: np.ndarray, out) -> None:
    assert isinstance(out, torch.Tensor)
    assert out.dtype == S.torch_dtype(src.dtype)
    S.assert_same_bits(out, src)


@given(_trees(_array_leaves))
def test_tree_to_tensor_default_policy_on_every_leaf(tree):
    _check_tree(tree, tb.tree_to_tensor(tree), _default_tensor_leaf)


@given(_trees(_array_leaves))
def test_tree_to_tensor_preserve_on_every_leaf(tree):
    _check_tree(tree, tb.tree_to_tensor(tree, dtype=tb.PRESERVE), _preserve_tensor_leaf)


_REAL_DTYPES = S.BOOL_DTYPES + S.INTEGER_DTYPES + S.FLOAT_DTYPES


@given(_trees(S.arrays(dtype=st.sampled_from(_REAL_DTYPES), shape=S.shapes(max_dims=2))))
def test_tree_to_tensor_explicit_dtype_casts_every_leaf(tree):
    def check(src, out):
        with np.errstate(all="ignore"):
            expected = src.astype(np.float16)
        assert out.dtype == torch.float16
        S.assert_same_values(out, expected)

    _check_tree(tree, tb.tree_to_tensor(tree, dtype=torch.float16), check)


def _default_numpy_leaf(src: torch.Tensor, out) -> None:
    expected = S.as_float32(S.numpy_copy_of(src))
    assert type(out) is np.ndarray
    assert out.dtype == expected.dtype
    S.assert_same_values(out, expected)


@given(_trees(S.tensors()))
def test_tree_to_numpy_default_policy_on_every_leaf(tree):
    pytest.importorskip("ml_dtypes")
    _check_tree(tree, tb.tree_to_numpy(tree), _default_numpy_leaf)


@given(_trees(_array_leaves))
def test_tree_to_numpy_converts_ndarray_leaves_with_the_policy(tree):
    def check(src, out):
        expected = S.as_float32(src)
        assert type(out) is np.ndarray
        assert out.dtype == expected.dtype
        S.assert_same_values(out, expected)

    _check_tree(tree, tb.tree_to_numpy(tree), check)


@pytest.mark.parametrize(
    ("scalar", "dtype", "value"),
    [
        (np.float64(2.5), torch.float32, 2.5),
        (np.float16(-1.5), torch.float32, -1.5),
        (np.int32(7), torch.int32, 7),
        (np.uint8(200), torch.uint8, 200),
        (np.bool_(True), torch.bool, True),
        (np.complex128(1 - 2j), torch.complex64, 1 - 2j),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, np.generic) else str(x),
)
def test_numpy_scalar_leaves_are_converted(scalar, dtype, value):
    out = tb.tree_to_tensor({"s": [scalar]})
    leaf = out["s"][0]
    assert isinstance(leaf, torch.Tensor)
    assert leaf.shape == ()
    assert leaf.dtype == dtype
    assert leaf.item() == value


def test_tensor_leaves_follow_the_policy_in_tree_to_tensor():
    t64 = torch.arange(4, dtype=torch.float64)
    ti = torch.arange(4, dtype=torch.int16)
    tbf = torch.arange(4, dtype=torch.bfloat16)
    out = tb.tree_to_tensor({"f": t64, "i": ti, "b": (tbf,)})
    assert out["f"].dtype == torch.float32
    assert torch.equal(out["f"], torch.arange(4, dtype=torch.float32))
    assert out["i"].dtype == torch.int16
    assert torch.equal(out["i"], ti)
    assert out["b"][0].dtype == torch.float32
    assert torch.equal(out["b"][0], torch.arange(4, dtype=torch.float32))


# ---------------------------------------------------------------------------
# copy and share, shown by mutation
# ---------------------------------------------------------------------------


def test_copy_none_shares_leaves_that_need_no_change():
    f = np.arange(6, dtype=np.float32).reshape(2, 3)
    i = np.arange(4, dtype=np.int64)
    tree = {"f": f, "nested": [S.Pair(i, 0)]}
    out = tb.tree_to_tensor(tree)
    _flip_first(f)
    assert _first(out["f"]) == 1.0
    _flip_first(out["nested"][0].image)
    assert i[0] == 1


def test_copy_none_copies_leaves_that_need_a_cast():
    a = np.arange(4, dtype=np.float64)
    out = tb.tree_to_tensor({"a": a})
    _flip_first(a)
    assert _first(out["a"]) == 0.0


def test_copy_true_gives_independent_leaves():
    f = np.arange(6, dtype=np.float32)
    t = torch.arange(3, dtype=torch.float32)
    out = tb.tree_to_tensor({"f": f, "t": [t]}, copy=True)
    _flip_first(f)
    _flip_first(t)
    assert _first(out["f"]) == 0.0
    assert _first(out["t"][0]) == 0.0
    _flip_first(out["f"])
    assert f[0] == 1.0

    t2 = torch.arange(3, dtype=torch.float32)
    back = tb.tree_to_numpy((t2,), copy=True)
    _flip_first(t2)
    assert back[0][0] == 0.0


def test_copy_false_shares_every_leaf_when_it_can():
    f = np.arange(3, dtype=np.float32)
    u = np.arange(3, dtype=np.uint8)
    out = tb.tree_to_tensor([f, {"u": u}], copy=False)
    _flip_first(out[0])
    _flip_first(out[1]["u"])
    assert f[0] == 1.0
    assert u[0] == 1


def test_tensor_leaf_that_needs_no_change_is_shared():
    t = torch.arange(3, dtype=torch.float32)
    out = tb.tree_to_tensor({"t": t})
    _flip_first(t)
    assert _first(out["t"]) == 1.0


def test_tree_to_numpy_shares_tensor_and_array_leaves():
    t = torch.arange(3, dtype=torch.float32)
    a = np.arange(3, dtype=np.float32)
    out = tb.tree_to_numpy({"t": t, "a": [a]})
    _flip_first(t)
    assert out["t"][0] == 1.0
    _flip_first(out["a"][0])
    assert a[0] == 1.0


def test_tree_to_numpy_grad_leaf_is_a_read_only_view():
    t = torch.arange(3, dtype=torch.float32, requires_grad=True)
    out = tb.tree_to_numpy({"w": t})
    w = out["w"]
    assert w.flags.writeable is False
    np.testing.assert_array_equal(w, np.arange(3, dtype=np.float32))
    with pytest.raises(ValueError):
        w[0] = 5.0


def test_read_only_leaf_is_copied_not_aliased_writable():
    base = np.arange(4, dtype=np.float32)
    ro = base.view()
    ro.flags.writeable = False
    out = tb.tree_to_tensor({"ro": ro})  # the torch "not writable" warning would fail here
    _flip_first(out["ro"])
    np.testing.assert_array_equal(base, np.arange(4, dtype=np.float32))


def test_device_cpu_option_is_accepted():
    f = np.arange(3, dtype=np.float32)
    out = tb.tree_to_tensor({"f": f}, device="cpu")
    assert out["f"].device.type == "cpu"
    _flip_first(f)
    assert _first(out["f"]) == 1.0


# ---------------------------------------------------------------------------
# errors name the leaf's path
# ---------------------------------------------------------------------------


def test_casting_error_names_the_path():
    good = np.arange(3, dtype=np.int64)
    bad = np.linspace(0, 1, 3)
    tree = {"image": [good, good, bad], "label": good}
    with pytest.raises(tb.CastingError, match=_path('["image"][2]')):
        tb.tree_to_tensor(tree, dtype=torch.int32)


def test_casting_error_in_tree_to_numpy_names_the_path():
    tree = {"outputs": (torch.zeros(2, dtype=torch.int64), torch.ones(2))}
    with pytest.raises(tb.CastingError, match=_path('["outputs"][1]')):
        tb.tree_to_numpy(tree, dtype=np.int32)


def test_share_error_names_the_path():
    tree = {"x": np.zeros(3, np.float32), "y": {"z": np.zeros(3, np.float64)}}
    with pytest.raises(tb.ShareError, match=_path('["y"]["z"]')):
        tb.tree_to_tensor(tree, copy=False)


def test_share_error_for_numpy_scalar_leaf_names_the_path():
    tree = {"meta": [np.float32(1.0)]}
    with pytest.raises(tb.ShareError, match=_path('["meta"][0]')):
        tb.tree_to_tensor(tree, copy=False)


def test_unsupported_dtype_names_the_path():
    tree = [{"when": np.array(["2024-01-01"], dtype="datetime64[D]")}]
    with pytest.raises(tb.UnsupportedDtypeError, match=_path('[0]["when"]')):
        tb.tree_to_tensor(tree)


def test_dataclass_field_path():
    tree = {"s": Sample(image=np.zeros(2, np.float64), label=np.ones(2))}
    with pytest.raises(tb.CastingError, match=_path('["s"].image')):
        tb.tree_to_tensor(tree, dtype=torch.int64)


def test_namedtuple_field_path():
    tree = [
        S.Pair(np.zeros(2, np.int64), 1),
        S.Pair(np.zeros(2, np.int64), np.zeros(2, np.float64)),
    ]
    with pytest.raises(tb.CastingError, match=_path("[1].label")):
        tb.tree_to_tensor(tree, dtype=torch.int64)


def test_frozen_dataclass_field_path():
    tree = {"f": S.FrozenSample(np.zeros(2, np.float64), None)}
    with pytest.raises(tb.ShareError, match=_path('["f"].image')):
        tb.tree_to_tensor(tree, copy=False)


def test_failed_call_leaves_the_input_unchanged():
    f = np.arange(3, dtype=np.float32)
    bad = np.linspace(0, 1, 3)
    tree = {"a": f, "b": [bad]}
    with pytest.raises(tb.CastingError):
        tb.tree_to_tensor(tree, dtype=torch.int16)
    assert tree["a"] is f
    assert tree["b"][0] is bad
    np.testing.assert_array_equal(f, np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(bad, np.linspace(0, 1, 3))
