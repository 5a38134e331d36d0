"""The casting rule, checked against NumPy and against brute force.

For NumPy's own dtypes the rule must equal ``np.can_cast``. For bfloat16 and the
float8 types the contract says "only exact widenings are safe": every bit
pattern of each small source type is cast and compared, so "safe" is derived
from the values, not from the table the library uses.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb

RULES = ("no", "equiv", "safe", "same_kind", "unsafe")
BUILTIN = S.STANDARD_DTYPES


def _allowed(source: np.dtype, target: object, rule: str) -> bool:
    message = ""
    try:
        tb.to_tensor(np.zeros(2, dtype=source), dtype=target, casting=rule)  # type: ignore[arg-type]
    except tb.CastingError as error:
        message = str(error)
    if message:
        assert f'casting="{rule}"' in message
    return not message


@pytest.mark.parametrize("rule", RULES)
def test_builtin_pairs_follow_np_can_cast(rule: str) -> None:
    for source, target in itertools.product(BUILTIN, BUILTIN):
        assert _allowed(source, target, rule) == np.can_cast(source, target, rule), (
            source,
            target,
            rule,
        )


def test_numpy_target_follows_np_can_cast_too() -> None:
    for source, target in itertools.product(BUILTIN, BUILTIN):
        try:
            tb.to_numpy(
                torch.zeros(2, dtype=getattr(torch, str(source))), dtype=target, casting="safe"
            )
            allowed = True
        except tb.CastingError:
            allowed = False
        assert allowed == np.can_cast(source, target, "safe"), (source, target)


ml_dtypes = pytest.importorskip("ml_dtypes")

ML_NAMES = [
    name
    for name in (
        "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
        "float8_e8m0fnu",
    )
    if hasattr(ml_dtypes, name) and hasattr(torch, name)
]  # fmt: skip
ML = [np.dtype(getattr(ml_dtypes, name)) for name in ML_NAMES]
SMALL_SOURCES = [np.dtype(n) for n in ("bool", "int8", "uint8", "int16", "uint16", "float16")] + ML
FLOAT_TARGETS = [np.dtype(n) for n in ("float16", "float32", "float64", "complex64")] + ML


def _exact(source: np.dtype, target: np.dtype) -> bool:
    """Whether every value of ``source`` survives a cast to ``target`` unchanged."""
    values = S.every_bit_pattern(source)
    with np.errstate(invalid="ignore", over="ignore"):  # ml_dtypes warns on NaN casts
        wide = values.astype(np.float64)
        cast = wide.astype(target)  # wide holds every value exactly
        back = (cast.real if np.iscomplexobj(cast) else cast).astype(np.float64)
    nan = np.isnan(wide)
    if not np.isnan(back[nan]).all():
        return False
    keep = ~nan
    return bool(
        np.array_equal(back[keep], wide[keep])
        and np.array_equal(np.signbit(back[keep]), np.signbit(wide[keep]))
    )


@pytest.mark.parametrize("source", SMALL_SOURCES, ids=str)
def test_safe_means_exact_for_ml_dtypes(source: np.dtype) -> None:
    for target in FLOAT_TARGETS:
        if source not in ML and target not in ML:
            continue  # NumPy's own pairs: covered above
        expected = source == target or _exact(source, target)
        assert _allowed(source, target, "safe") == expected, (source, target)


@pytest.mark.parametrize("target", ML, ids=str)
def test_any_float_to_ml_dtypes_is_same_kind(target: np.dtype) -> None:
    for source in [np.dtype(n) for n in ("float16", "float32", "float64", "longdouble")] + ML:
        assert _allowed(source, target, "same_kind")
    for source in [np.dtype(n) for n in ("int8", "int64", "uint64", "bool")]:
        assert _allowed(source, target, "same_kind")
    assert not _allowed(np.dtype(np.complex64), target, "same_kind")


@pytest.mark.parametrize("source", ML, ids=str)
def test_ml_dtypes_to_integers_is_unsafe(source: np.dtype) -> None:
    assert not _allowed(source, np.dtype(np.int32), "same_kind")
    assert _allowed(source, np.dtype(np.int32), "unsafe")


def test_wide_floats_never_safely_narrow_to_ml_dtypes() -> None:
    witness = 1 + 2.0**-20  # needs 21 significand bits
    for target in ML:
        assert np.array(witness, dtype=np.float32).astype(target).astype(np.float64) != witness
        assert not _allowed(np.dtype(np.float32), target, "safe")
        assert not _allowed(np.dtype(np.float64), target, "safe")


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental:UserWarning")
def test_complex32_rules() -> None:
    half = torch.zeros(2, dtype=torch.float16)
    assert tb.to_tensor(half, dtype=torch.complex32, casting="safe").dtype == torch.complex32
    with pytest.raises(tb.CastingError, match="float32 to complex32"):
        tb.to_tensor(torch.zeros(2), dtype=torch.complex32, casting="safe")
    assert tb.to_tensor(torch.zeros(2), dtype=torch.complex32).dtype == torch.complex32
