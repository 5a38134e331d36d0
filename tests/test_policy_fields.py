"""Contract section 3, ``DtypePolicy`` fields, with section 7's casting rule.

``DtypePolicy(floating=..., complex=..., signed=..., unsigned=..., bool=...)`` says,
per kind of input dtype, what the result dtype is; a field left ``None`` keeps that
kind as it is. Every dtype change a field asks for goes through the casting rule
(``np.can_cast(source, target, casting)``), and the values are those of
``ndarray.astype``, in both directions, on trees and in ``collate``. Expected dtypes
and values are computed with NumPy here, never with tensorbridge.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import strategies as S
import tensorbridge as tb

#: the kind of input dtype each field applies to (section 3)
SOURCES_BY_FIELD: dict[str, list[np.dtype[Any]]] = {
    "floating": S.FLOAT_DTYPES,
    "complex": S.COMPLEX_DTYPES,
    "signed": S.SIGNED_DTYPES,
    "unsigned": S.UNSIGNED_DTYPES,
    "bool": S.BOOL_DTYPES,
}
FIELDS = list(SOURCES_BY_FIELD)
CASTINGS = ["no", "equiv", "safe", "same_kind", "unsafe"]

#: one example input dtype per kind, to check that the other fields leave it alone
ONE_PER_KIND = {
    "floating": np.dtype(np.float64),
    "complex": np.dtype(np.complex128),
    "signed": np.dtype(np.int64),
    "unsigned": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}


def _field_of(dt: np.dtype[Any]) -> str:
    return next(field for field, sources in SOURCES_BY_FIELD.items() if dt in sources)


def _values(source: np.dtype[Any], target: np.dtype[Any]) -> np.ndarray:
    """Source values whose ``astype(target)`` is defined (no NaN/inf/out-of-range float to
    int, which NumPy leaves to the platform and warns about), with wrap-around, rounding,
    truncation and -0.0 in them where they are defined."""
    if source.kind == "b":
        return np.array([True, False, True, True])
    if source.kind == "i":
        return np.array([0, 1, -1, 5, 100, -100, 127, -128]).astype(source)
    if source.kind == "u":
        return np.array([0, 1, 5, 100, 200, 255]).astype(source)
    if source.kind == "f":
        if target.kind in "fcb":
            return np.array([0.0, -0.0, 0.5, 1.5, 2.5, 100.25, -3.75, 1e-3, 65504.0]).astype(source)
        if target.kind == "u":
            return np.array([0.0, -0.0, 0.5, 1.5, 2.75, 100.25]).astype(source)
        return np.array([0.0, -0.0, 0.5, 1.5, 2.75, 100.25, -3.75, -100.5]).astype(source)
    return np.array([1 + 2j, -0.5j, 3.25 + 0j, -0.0 - 0.0j]).astype(source)


def _convert(direction: str, array: np.ndarray, **options: Any) -> Any:
    """``to_tensor`` of an ndarray, or ``to_numpy`` of the tensor with the same values."""
    if direction == "to_tensor":
        return tb.to_tensor(array, **options)
    return tb.to_numpy(torch.from_numpy(array.copy()), **options)


DIRECTIONS = ["to_tensor", "to_numpy"]


def _check_result(result: Any, direction: str, expected: np.ndarray) -> None:
    assert isinstance(result, torch.Tensor if direction == "to_tensor" else np.ndarray)
    assert S.numpy_dtype_of(result) == expected.dtype, (S.numpy_dtype_of(result), expected.dtype)
    S.assert_same_values(result, expected)


def _field_cases() -> list[Any]:
    return [
        pytest.param(field, source, target, id=f"{field}-{source}-to-{target}")
        for field, sources in SOURCES_BY_FIELD.items()
        for source in sources
        for target in S.STANDARD_DTYPES
    ]


# ---------------------------------------------------------------------------
# each field, each direction, under the default casting rule
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(("field", "source", "target"), _field_cases())
def test_field_gives_its_dtype_where_same_kind_allows_it(direction, field, source, target):
    array = _values(source, target)
    policy = tb.DtypePolicy(**{field: target.name})
    if np.can_cast(source, target, "same_kind"):
        _check_result(_convert(direction, array, dtype=policy), direction, array.astype(target))
    else:
        with pytest.raises(tb.CastingError, match="same_kind"):
            _convert(direction, array, dtype=policy)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(("field", "source", "target"), _field_cases())
def test_field_with_unsafe_casting_gives_astype_values(direction, field, source, target):
    if source.kind == "c" and target.kind != "c":
        pytest.skip("complex to real discards the imaginary part (NumPy warns); not a value test")
    array = _values(source, target)
    result = _convert(direction, array, dtype=tb.DtypePolicy(**{field: target}), casting="unsafe")
    _check_result(result, direction, array.astype(target))


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(("field", "other"), [(f, o) for f in FIELDS for o in FIELDS if f != o])
def test_field_leaves_every_other_kind_as_it_is(direction, field, other):
    # a target of yet another kind, so that applying the field by mistake would show
    target = np.dtype(np.float16) if field in ("signed", "unsigned", "bool") else np.dtype("int16")
    source = ONE_PER_KIND[other]
    array = _values(source, source)
    result = _convert(direction, array, dtype=tb.DtypePolicy(**{field: target}), casting="unsafe")
    _check_result(result, direction, array)


@pytest.mark.parametrize("field", FIELDS)
def test_kept_kind_shares_memory_with_the_input(field):
    other = "floating" if field != "floating" else "signed"
    policy = tb.DtypePolicy(**{other: "float16" if other == "floating" else "int8"})
    array = _values(ONE_PER_KIND[field], ONE_PER_KIND[field]).copy()
    tensor = tb.to_tensor(array, dtype=policy)
    assert tensor.dtype == S.torch_dtype(array.dtype)
    array[0] = _changed(array[0])  # write NumPy, read torch
    assert tensor[0].item() == array[0].item()
    back = tb.to_numpy(tensor, dtype=policy)
    assert back.dtype == array.dtype
    tensor[1] = _changed(tensor[1].item())  # write torch, read NumPy
    assert back[1] == tensor[1].item()
    assert array[1] == tensor[1].item()


def _changed(value: Any) -> Any:
    """A different value of the same kind."""
    if isinstance(value, (bool, np.bool_)):
        return not value
    return value + 9


def test_policy_with_no_field_set_keeps_every_dtype():
    for source in S.STANDARD_DTYPES:
        array = _values(source, source)
        for direction in DIRECTIONS:
            _check_result(_convert(direction, array, dtype=tb.DtypePolicy()), direction, array)


@given(
    source=st.sampled_from(S.STANDARD_DTYPES),
    target=st.sampled_from(S.STANDARD_DTYPES),
    casting=st.sampled_from(CASTINGS),
    direction=st.sampled_from(DIRECTIONS),
)
def test_every_casting_rule_decides_as_np_can_cast(source, target, casting, direction):
    field = _field_of(source)
    array = _values(source, target)
    policy = tb.DtypePolicy(**{field: target})
    if np.can_cast(source, target, casting):
        if source.kind == "c" and target.kind != "c":
            return  # unreachable: no rule but "unsafe" allows it, and that warns in NumPy
        _check_result(
            _convert(direction, array, dtype=policy, casting=casting),
            direction,
            array.astype(target),
        )
    else:
        with pytest.raises(tb.CastingError):
            _convert(direction, array, dtype=policy, casting=casting)


def test_casting_error_from_a_field_names_source_target_and_rule():
    with pytest.raises(tb.CastingError) as info:
        tb.to_tensor(np.arange(3, dtype=np.int64), dtype=tb.DtypePolicy(signed="bool"))
    message = str(info.value)
    assert "int64" in message
    assert "bool" in message
    assert "same_kind" in message
    assert "unsafe" in message
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("field", ["signed", "unsigned"])
def test_narrowing_within_the_kind_is_same_kind_and_wraps_like_astype(field):
    # np.can_cast(int64, int8, "same_kind") is True: a narrowing inside the kind is allowed
    source = np.dtype(np.int64 if field == "signed" else np.uint64)
    target = np.dtype(np.int8 if field == "signed" else np.uint8)
    assert np.can_cast(source, target, "same_kind")
    array = np.array([0, 1, 127, 128, 255, 256, 300, 1000]).astype(source)
    for direction in DIRECTIONS:
        result = _convert(direction, array, dtype=tb.DtypePolicy(**{field: target}))
        _check_result(result, direction, array.astype(target))
    with pytest.raises(tb.CastingError, match="safe"):
        tb.to_tensor(array, dtype=tb.DtypePolicy(**{field: target}), casting="safe")


# ---------------------------------------------------------------------------
# field values: every dtype spelling, invalid values
# ---------------------------------------------------------------------------

#: (field, input dtype, target dtype) allowed under "same_kind", one per field
SPELLING_CASES = {
    "floating": (np.float64, np.float16),
    "complex": (np.complex128, np.complex64),
    "signed": (np.int64, np.int32),
    "unsigned": (np.uint8, np.float32),
    "bool": (np.bool_, np.uint8),
}


def _spellings(target: np.dtype[Any]) -> list[Any]:
    return [S.torch_dtype(target), target.type, target, target.name]


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("field", FIELDS)
def test_field_accepts_every_dtype_spelling(direction, field):
    source, target = (np.dtype(t) for t in SPELLING_CASES[field])
    array = _values(source, target)
    for spelling in _spellings(target):
        result = _convert(direction, array, dtype=tb.DtypePolicy(**{field: spelling}))
        _check_result(result, direction, array.astype(target))


@pytest.mark.parametrize("spelling", ["bfloat16", torch.bfloat16, "ml_dtypes"])
def test_floating_field_takes_bfloat16_in_every_spelling(spelling):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    if spelling == "ml_dtypes":
        spelling = ml_dtypes.bfloat16
    policy = tb.DtypePolicy(floating=spelling, unsigned=spelling)
    array = np.array([0.1, 1.5, -2.25, 1e30], dtype=np.float64)
    expected = array.astype(ml_dtypes.bfloat16)
    tensor = tb.to_tensor(array, dtype=policy)
    assert tensor.dtype == torch.bfloat16
    S.assert_same_values(tensor, expected)
    back = tb.to_numpy(torch.from_numpy(array), dtype=policy)
    assert back.dtype == np.dtype(ml_dtypes.bfloat16)
    S.assert_same_values(back, expected)
    images = np.array([0, 7, 255], dtype=np.uint8)
    S.assert_same_values(tb.to_tensor(images, dtype=policy), images.astype(ml_dtypes.bfloat16))


def _build_and_use(field: str, value: Any) -> None:
    """Build a policy with ``value`` in ``field`` and use it on data of that kind (an
    invalid value may be refused by the constructor or at the latest by the call)."""
    policy = tb.DtypePolicy(**{field: value})
    source = ONE_PER_KIND[field]
    tb.to_tensor(_values(source, source), dtype=policy, casting="unsafe")


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", ["nonsense", "float32x", 42, 1.5, object(), ["int32"]])
def test_invalid_field_value_raises_a_bridge_error(field, value):
    with pytest.raises(tb.TensorBridgeError) as info:
        _build_and_use(field, value)
    assert isinstance(info.value, (TypeError, ValueError))
    if isinstance(value, str):
        assert value in str(info.value)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("name", ["float", "int"])
def test_ambiguous_name_as_field_value_raises_unsupported_dtype(field, name):
    with pytest.raises(tb.UnsupportedDtypeError) as info:
        _build_and_use(field, name)
    assert isinstance(info.value, TypeError)
    assert name in str(info.value)


@pytest.mark.parametrize("field", [f for f in FIELDS if f != "complex"])
@pytest.mark.parametrize(
    ("value", "target"),
    [
        (torch.float, np.float32),
        (np.float64, np.float64),
        (torch.int, np.int32),
        (np.int_, np.int_),
    ],
)
def test_unambiguous_objects_for_float_and_int_are_accepted(field, value, target):
    source = ONE_PER_KIND[field]
    array = _values(source, np.dtype(target))
    policy = tb.DtypePolicy(**{field: value})
    _check_result(
        tb.to_tensor(array, dtype=policy, casting="unsafe"), "to_tensor", array.astype(target)
    )


@pytest.mark.parametrize("field", FIELDS)
def test_field_with_no_torch_counterpart_raises(field):
    with pytest.raises(tb.TensorBridgeError) as info:
        _build_and_use(field, np.str_)
    assert isinstance(info.value, (TypeError, ValueError))


# ---------------------------------------------------------------------------
# the policy object: hashable, immutable, readable
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
def test_policy_is_hashable_and_equal_by_fields(field):
    a = tb.DtypePolicy(**{field: "int32"})
    b = tb.DtypePolicy(**{field: "int32"})
    other_field = FIELDS[(FIELDS.index(field) + 1) % len(FIELDS)]
    c = tb.DtypePolicy(**{other_field: "int32"})
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert len({a, b, c}) == 2
    assert {a: 1}[b] == 1


@pytest.mark.parametrize("field", FIELDS)
def test_policy_is_immutable(field):
    policy = tb.DtypePolicy(**{field: "int32"})
    before = repr(policy)
    for name in (*FIELDS, "anything"):
        with pytest.raises((AttributeError, TypeError)):
            setattr(policy, name, "float64")
    assert repr(policy) == before
    array = _values(ONE_PER_KIND[field], np.dtype(np.int32))
    result = tb.to_tensor(array, dtype=policy, casting="unsafe")
    assert result.dtype == torch.int32


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("spelling", ["int16", torch.int16, np.int16, np.dtype(np.int16)])
def test_policy_repr_names_the_set_fields_and_their_dtypes(field, spelling):
    text = repr(tb.DtypePolicy(**{field: spelling}))
    assert "DtypePolicy" in text
    assert re.search(rf"\b{field}\b", text), text
    assert "int16" in text
    assert " at 0x" not in text
    assert len(text) < 200


def test_policy_repr_names_several_fields():
    text = repr(tb.DtypePolicy(floating="float32", unsigned=torch.float16, bool=np.uint8))
    for part in ("floating", "float32", "unsigned", "float16", "bool", "uint8"):
        assert part in text, text


# ---------------------------------------------------------------------------
# Python scalars and sequences: int64 / float64 / bool first, then the policy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field", "target", "expected"),
    [
        ([1, -2, 3], "signed", "int32", np.array([1, -2, 3], dtype=np.int32)),
        (7, "signed", "int16", np.array(7, dtype=np.int16)),
        ([True, False], "bool", "uint8", np.array([1, 0], dtype=np.uint8)),
        (True, "bool", "float32", np.array(1.0, dtype=np.float32)),
        ([0.1, 2.5], "floating", "float16", np.array([0.1, 2.5]).astype(np.float16)),
        ([1 + 1j], "complex", "complex128", np.array([1 + 1j], dtype=np.complex128)),
    ],
)
def test_python_data_meets_the_policy_after_its_default_dtype(data, field, target, expected):
    policy = tb.DtypePolicy(**{field: target})
    _check_result(tb.to_tensor(data, dtype=policy), "to_tensor", expected)
    _check_result(tb.to_numpy(data, dtype=policy), "to_numpy", expected)


def test_python_ints_are_not_touched_by_the_unsigned_field():
    result = tb.to_tensor([1, 2], dtype=tb.DtypePolicy(unsigned="uint8"))
    assert result.dtype == torch.int64


# ---------------------------------------------------------------------------
# the cross directions: ndarray through to_numpy, tensor through to_tensor
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
def test_ndarray_into_to_numpy_and_tensor_into_to_tensor_follow_the_field(field):
    source, target = (np.dtype(t) for t in SPELLING_CASES[field])
    array = _values(source, target)
    policy = tb.DtypePolicy(**{field: target})
    expected = array.astype(target)
    _check_result(tb.to_numpy(array, dtype=policy), "to_numpy", expected)
    _check_result(tb.to_tensor(torch.from_numpy(array.copy()), dtype=policy), "to_tensor", expected)


# ---------------------------------------------------------------------------
# trees and collate
# ---------------------------------------------------------------------------


def _image_batch() -> dict[str, Any]:
    return {
        "image": np.array([[0, 7], [128, 255]], dtype=np.uint8),
        "label": np.array([3, -1], dtype=np.int64),
        "features": np.array([0.1, 1e-8], dtype=np.float64),
        "mask": np.array([True, False]),
        "spectrum": np.array([1 + 2j], dtype=np.complex128),
    }


def _as_tensors(tree: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.copy()) for k, v in tree.items()}


CONTRACT_EXAMPLE = {
    # DtypePolicy(floating="float32", unsigned="float32"): uint8 images to float32,
    # int64 labels kept; the other fields are None, so complex128 and bool are kept
    "image": np.float32,
    "label": np.int64,
    "features": np.float32,
    "mask": np.bool_,
    "spectrum": np.complex128,
}


def _check_tree(result: dict[str, Any], batch: dict[str, np.ndarray], kind: type) -> None:
    assert set(result) == set(batch)
    for key, expected_dtype in CONTRACT_EXAMPLE.items():
        assert isinstance(result[key], kind), key
        expected = batch[key].astype(expected_dtype)
        assert S.numpy_dtype_of(result[key]) == expected.dtype, key
        S.assert_same_values(result[key], expected)


def test_contract_example_on_tree_to_tensor():
    batch = _image_batch()
    policy = tb.DtypePolicy(floating="float32", unsigned="float32")
    _check_tree(tb.tree_to_tensor(batch, dtype=policy), batch, torch.Tensor)


def test_contract_example_on_tree_to_numpy():
    batch = _image_batch()
    policy = tb.DtypePolicy(floating="float32", unsigned="float32")
    _check_tree(tb.tree_to_numpy(_as_tensors(batch), dtype=policy), batch, np.ndarray)


def test_contract_example_on_collate():
    samples = [_image_batch(), {k: v[::-1].copy() for k, v in _image_batch().items()}]
    stacked = {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    policy = tb.DtypePolicy(floating="float32", unsigned="float32")
    _check_tree(tb.collate(samples, dtype=policy), stacked, torch.Tensor)


@pytest.mark.parametrize("field", FIELDS)
def test_each_field_applies_to_every_leaf_of_its_kind_in_trees_and_collate(field):
    source, target = (np.dtype(t) for t in SPELLING_CASES[field])
    policy = tb.DtypePolicy(**{field: target})
    a, b = _values(source, target), _values(source, target)[::-1].copy()
    # a leaf of another kind, which the policy (every other field None) keeps
    bystander = np.array([1, 2], dtype=np.int64 if field == "floating" else np.float64)
    tree = {"x": a, "nested": {"y": [b, bystander]}}

    out = tb.tree_to_tensor(tree, dtype=policy)
    S.assert_same_values(out["x"], a.astype(target))
    S.assert_same_values(out["nested"]["y"][0], b.astype(target))
    assert out["nested"]["y"][1].dtype == S.torch_dtype(bystander.dtype)

    out = tb.tree_to_numpy(
        {"x": torch.from_numpy(a.copy()), "y": (torch.from_numpy(b),)}, dtype=policy
    )
    assert out["x"].dtype == target
    S.assert_same_values(out["x"], a.astype(target))
    S.assert_same_values(out["y"][0], b.astype(target))

    batch = tb.collate([{"x": a, "b": bystander}, {"x": b, "b": bystander}], dtype=policy)
    S.assert_same_values(batch["x"], np.stack([a, b]).astype(target))
    assert batch["b"].dtype == S.torch_dtype(bystander.dtype)


def test_collate_of_numpy_scalars_follows_the_signed_field():
    samples = [{"label": np.int64(i), "count": np.uint8(i)} for i in range(4)]
    batch = tb.collate(samples, dtype=tb.DtypePolicy(signed="int32"))
    assert batch["label"].dtype == torch.int32
    assert batch["label"].tolist() == [0, 1, 2, 3]
    assert batch["count"].dtype == torch.uint8


def test_collate_of_python_ints_follows_the_signed_field():
    # section 3: a Python int gives int64 before the policy
    batch = tb.collate([(1,), (2,), (3,)], dtype=tb.DtypePolicy(signed="int16"))
    assert batch[0].dtype == torch.int16
    assert batch[0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("call", ["tree_to_tensor", "tree_to_numpy", "collate"])
def test_casting_error_from_a_field_in_a_tree_names_the_leaf_path(call):
    label = np.array([1, 2], dtype=np.int64)
    policy = tb.DtypePolicy(signed="bool")
    calls = {
        "tree_to_tensor": lambda: tb.tree_to_tensor({"meta": {"label": label}}, dtype=policy),
        "tree_to_numpy": lambda: tb.tree_to_numpy(
            {"meta": {"label": torch.from_numpy(label)}}, dtype=policy
        ),
        "collate": lambda: tb.collate([{"meta": {"label": label}}] * 2, dtype=policy),
    }
    with pytest.raises(tb.CastingError) as info:
        calls[call]()
    assert '["meta"]["label"]' in str(info.value)
    assert "int64" in str(info.value)


@pytest.mark.parametrize("call", ["tree_to_tensor", "tree_to_numpy", "collate"])
def test_unsafe_casting_through_a_field_in_trees_gives_astype_values(call):
    label = np.array([-1, 0, 2, 300], dtype=np.int64)
    policy = tb.DtypePolicy(signed="bool", unsigned="int8")
    pixels = np.array([0, 127, 128, 255], dtype=np.uint8)
    if call == "tree_to_tensor":
        out = tb.tree_to_tensor({"l": label, "p": pixels}, dtype=policy, casting="unsafe")
        expected = {"l": label.astype(np.bool_), "p": pixels.astype(np.int8)}
    elif call == "tree_to_numpy":
        tree = {"l": torch.from_numpy(label), "p": torch.from_numpy(pixels)}
        out = tb.tree_to_numpy(tree, dtype=policy, casting="unsafe")
        expected = {"l": label.astype(np.bool_), "p": pixels.astype(np.int8)}
    else:
        samples = [{"l": label, "p": pixels}, {"l": label[::-1], "p": pixels[::-1]}]
        out = tb.collate(samples, dtype=policy, casting="unsafe")
        expected = {
            "l": np.stack([label, label[::-1]]).astype(np.bool_),
            "p": np.stack([pixels, pixels[::-1]]).astype(np.int8),
        }
    for key, value in expected.items():
        assert S.numpy_dtype_of(out[key]) == value.dtype
        S.assert_same_values(out[key], value)
