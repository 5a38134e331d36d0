"""Dtype tables, dtype policies, the casting rule and the proven-exact kernel table.

Every dtype either library knows is described once by a ``DType`` record: its
canonical name, its kind, its torch and NumPy counterparts (either may be
missing) and, for floating types, the exact shape of its number format.
Records are singletons, so they compare by identity and pickle by name.

ml_dtypes (the optional extra that gives NumPy bfloat16 and the float8 types)
costs most of a second to import, so it is imported only when a conversion
first meets one of its types, or at once when the user imported it already.
The records of those types are made then, once.
"""

from __future__ import annotations

import builtins
import dataclasses
import importlib
import math
import sys
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Literal, TypeAlias, cast

import numpy as np
import torch

from ._compat import native
from ._errors import (
    CastingError,
    InvalidArgumentError,
    UnsupportedDtypeError,
    first_line,
    short_repr,
)

__all__ = [
    "FLOAT32",
    "PRESERVE",
    "TORCH_EXACT_CASTS",
    "Casting",
    "DType",
    "DTypeLike",
    "DtypePolicy",
    "all_dtypes",
    "apply_policy",
    "check_cast",
    "check_casting_value",
    "from_numpy_dtype",
    "from_torch_dtype",
    "ml_dtypes_module",
    "numpy_casts_directly",
    "numpy_casts_quietly",
    "resolve_dtype",
    "torch_casts_exactly",
]

TorchDType: TypeAlias = torch.dtype  # for annotations inside DType, whose field is named torch
Casting: TypeAlias = Literal["no", "equiv", "safe", "same_kind", "unsafe"]
CASTING_RULES: Final = ("no", "equiv", "safe", "same_kind", "unsafe")

#: Anything that names a dtype: a torch dtype, a NumPy dtype or scalar type
#: (ml_dtypes types included) or a name such as ``"bfloat16"``.
DTypeLike: TypeAlias = "torch.dtype | np.dtype[Any] | type[Any] | str"


@dataclass(frozen=True, slots=True)
class FloatFormat:
    """The exact value set of a binary floating-point format.

    ``digits`` counts the significand bits including the implicit one;
    ``max_exponent`` is the exponent of the largest finite value and
    ``min_exponent`` the exponent of the smallest positive (subnormal) value.
    """

    digits: int
    max_exponent: int
    min_exponent: int
    has_inf: bool = True
    has_negative_zero: bool = True
    has_negative: bool = True
    has_zero: bool = True

    def holds(self, other: FloatFormat) -> bool:
        """Whether every value of ``other`` is exactly a value of this format."""
        return (
            other.digits <= self.digits
            and other.max_exponent <= self.max_exponent
            and other.min_exponent >= self.min_exponent
            and (self.has_inf or not other.has_inf)
            and (self.has_negative_zero or not other.has_negative_zero)
            and (self.has_negative or not other.has_negative)
            and (self.has_zero or not other.has_zero)
        )

    def holds_integers(self, bits: int, signed: bool) -> bool:
        """Whether every integer of ``bits`` magnitude bits is exactly a value."""
        return (
            bits <= self.digits
            and bits <= self.max_exponent + 1
            and (self.has_negative or not signed)
            and self.has_zero
        )


def _longdouble_format() -> FloatFormat:
    info = np.finfo(np.longdouble)
    return FloatFormat(
        digits=int(info.nmant) + 1,
        max_exponent=int(info.maxexp) - 1,
        min_exponent=int(info.minexp) - int(info.nmant),
    )


# The float8 formats are spelled out because torch.finfo misreports some of them
# (float8_e5m2fnuz reports the epsilon of a 3-bit significand).
_FORMATS: Final[dict[str, FloatFormat]] = {
    "float16": FloatFormat(11, 15, -24),
    "bfloat16": FloatFormat(8, 127, -133),
    "float32": FloatFormat(24, 127, -149),
    "float64": FloatFormat(53, 1023, -1074),
    "longdouble": _longdouble_format(),
    "float8_e4m3fn": FloatFormat(4, 8, -9, has_inf=False),
    "float8_e5m2": FloatFormat(3, 15, -16),
    "float8_e4m3fnuz": FloatFormat(4, 7, -10, has_inf=False, has_negative_zero=False),
    "float8_e5m2fnuz": FloatFormat(3, 15, -17, has_inf=False, has_negative_zero=False),
    "float8_e8m0fnu": FloatFormat(
        1, 127, -127, has_inf=False, has_negative_zero=False, has_negative=False, has_zero=False
    ),
}

# NumPy's order of kinds for "same_kind" casting: a cast may go up, never down.
_KIND_ORDER: Final = {"b": 0, "u": 1, "i": 2, "f": 3, "c": 4}


@dataclass(frozen=True, slots=True, eq=False)
class DType:
    """One dtype as tensorbridge sees it, with its counterpart on each side.

    ``kind`` is NumPy's letter for numeric kinds (b, u, i, f, c), ``"q"`` for
    torch's quantized dtypes and ``"x"`` for dtypes with no numeric meaning
    here (str, object, datetime, structured, bit and sub-byte dtypes).
    """

    name: str
    kind: str
    itemsize: int
    torch: TorchDType | None
    numpy: np.dtype[Any] | None
    #: True when ``numpy`` is a dtype NumPy itself defines, so NumPy's own
    #: casting tables apply (False for the ml_dtypes types).
    numpy_builtin: bool = False
    #: For types NumPy only knows through ml_dtypes: the integer dtypes of the
    #: same width that carry the bits across.
    bits_torch: TorchDType | None = None
    bits_numpy: np.dtype[Any] | None = None
    format: FloatFormat | None = None

    def __repr__(self) -> str:
        return f"DType({self.name})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Records are singletons: an unpickled one is this process's record.
        return (_unpickle_record, (self.name, self.torch, self.numpy))

    def component_format(self) -> FloatFormat | None:
        """The format of a real value, or of one part of a complex value."""
        if self.kind == "c":
            return _FORMATS[_COMPLEX_PARTS[self.name]]
        return self.format


_COMPLEX_PARTS: Final = {
    "complex32": "float16",
    "complex64": "float32",
    "complex128": "float64",
    "clongdouble": "longdouble",
}

_BUILTIN_NAMES: Final = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
)
# Floating types torch has and NumPy knows only through ml_dtypes.
_ML_NAMES: Final = (
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
)
_ML_TORCH: Final = frozenset(
    value for value in (getattr(torch, name, None) for name in _ML_NAMES) if value is not None
)
# Floating types only ml_dtypes defines (0.5 to 0.7): NumPy holds them, torch does not.
_ML_ONLY_NAMES: Final = (
    "float8_e4m3",
    "float8_e3m4",
    "float8_e4m3b11fnuz",
    "float6_e2m3fn",
    "float6_e3m2fn",
    "float4_e2m1fn",
)
_QUANTIZED_NAMES: Final = ("qint8", "quint8", "qint32", "quint4x2", "quint2x4")

_BY_NAME: dict[str, DType] = {}
_BY_TORCH: dict[torch.dtype, DType] = {}
_BY_NUMPY: dict[np.dtype[Any], DType] = {}


def _register(record: DType) -> DType:
    _BY_NAME[record.name] = record
    if record.torch is not None:
        _BY_TORCH[record.torch] = record
    if record.numpy is not None:
        _BY_NUMPY[record.numpy] = record
    return record


def _register_builtins() -> None:
    # NumPy's own dtypes; longdouble and clongdouble have no torch counterpart.
    for name in (*_BUILTIN_NAMES, "longdouble", "clongdouble"):
        np_dtype = np.dtype(name)
        _register(
            DType(
                name=name,
                kind=np_dtype.kind,
                itemsize=np_dtype.itemsize,
                torch=getattr(torch, name, None),
                numpy=np_dtype,
                numpy_builtin=True,
                format=_FORMATS.get(name),
            )
        )
    _register(DType("complex32", "c", 4, torch.complex32, None))
    for name in _QUANTIZED_NAMES:
        torch_dtype = getattr(torch, name, None)
        if torch_dtype is not None:
            _register(DType(name, "q", torch_dtype.itemsize, torch_dtype, None))
    # Whatever else torch defines (bits8, uint1..7, int1..7, float4_e2m1fn_x2, ...)
    # exists only as storage: no arithmetic, no casts, no NumPy counterpart.
    for attribute in dir(torch):
        value = getattr(torch, attribute)
        if isinstance(value, torch.dtype) and value not in _BY_TORCH and value not in _ML_TORCH:
            _register(DType(str(value).removeprefix("torch."), "x", value.itemsize, value, None))


_register_builtins()


# --------------------------------------------------------------------------- #
# ml_dtypes, imported when first needed
# --------------------------------------------------------------------------- #

_ml_lock = threading.Lock()
_ml_loaded = False
_ml_module: ModuleType | None = None


def ml_dtypes_module() -> ModuleType | None:
    """The ``ml_dtypes`` module (imported now if it was not), or None when not installed."""
    _load_ml_dtypes()
    return _ml_module


def _load_ml_dtypes() -> None:
    """Make the records of the types ml_dtypes gives NumPy (once, on first need)."""
    global _ml_loaded, _ml_module
    if _ml_loaded:
        return
    with _ml_lock:
        if _ml_loaded:
            return
        try:
            module: ModuleType | None = importlib.import_module("ml_dtypes")
        except ImportError:
            module = None
        for name in _ML_NAMES:
            torch_dtype = getattr(torch, name, None)
            if torch_dtype is not None:
                _register(_ml_record(name, torch_dtype, getattr(module, name, None)))
        for name in _ML_ONLY_NAMES:
            ml_type = getattr(module, name, None)
            if ml_type is not None:
                np_dtype = np.dtype(ml_type)
                _register(
                    DType(name, "f", np_dtype.itemsize, None, np_dtype, format=_ml_format(np_dtype))
                )
        _ml_module = module
        _ml_loaded = True


def _ml_record(name: str, torch_dtype: torch.dtype, ml_type: object) -> DType:
    itemsize = torch_dtype.itemsize
    return DType(
        name=name,
        kind="f",
        itemsize=itemsize,
        torch=torch_dtype,
        numpy=None if ml_type is None else np.dtype(cast(Any, ml_type)),
        bits_torch=torch.int16 if itemsize == 2 else torch.uint8,
        bits_numpy=np.dtype(np.int16) if itemsize == 2 else np.dtype(np.uint8),
        format=_FORMATS[name],
    )


def _ml_format(dtype: np.dtype[Any]) -> FloatFormat:
    """The format of an ml_dtypes-only floating type, read from its finfo and its casts."""
    assert _ml_module is not None or "ml_dtypes" in sys.modules
    info = importlib.import_module("ml_dtypes").finfo(dtype)

    def through(value: float) -> float:
        return float(np.array(value, np.float32).astype(dtype).astype(np.float32))

    return FloatFormat(
        digits=int(info.nmant) + 1,
        max_exponent=math.frexp(float(info.max))[1] - 1,
        min_exponent=math.frexp(float(info.smallest_subnormal))[1] - 1,
        has_inf=math.isinf(through(math.inf)),
        has_negative_zero=math.copysign(1.0, through(-0.0)) < 0,
        has_negative=through(-1.0) == -1.0,
        has_zero=through(0.0) == 0.0,
    )


if "ml_dtypes" in sys.modules:  # imported by the user already: nothing to wait for
    _load_ml_dtypes()


# --------------------------------------------------------------------------- #
# Looking records up
# --------------------------------------------------------------------------- #


def from_torch_dtype(dtype: torch.dtype) -> DType:
    """The record of a torch dtype (every torch dtype has one)."""
    record = _BY_TORCH.get(dtype)
    if record is not None:
        return record
    if dtype in _ML_TORCH and not _ml_loaded:
        _load_ml_dtypes()
        return _BY_TORCH[dtype]
    return _register(DType(str(dtype).removeprefix("torch."), "x", dtype.itemsize, dtype, None))


def from_numpy_dtype(dtype: np.dtype[Any]) -> DType:
    """The record of a NumPy dtype; non-native byte order maps to the native type."""
    record = _BY_NUMPY.get(dtype)
    if record is not None:
        return record
    if not dtype.isnative:
        return from_numpy_dtype(native(dtype))
    if dtype.kind in "biufc":
        # Aliases such as np.dtype("q") vs np.dtype("l") compare equal but may
        # hash apart on some platforms: look them up by equality instead.
        for each in _BY_NUMPY.values():
            if each.numpy_builtin and each.numpy == dtype:
                return each
    if not _ml_loaded and "ml_dtypes" in sys.modules:  # an ml_dtypes type, imported meanwhile
        _load_ml_dtypes()
        return from_numpy_dtype(dtype)
    return DType(str(dtype), "x", dtype.itemsize, None, dtype)


def _unpickle_record(
    name: str, torch_dtype: torch.dtype | None, numpy: np.dtype[Any] | None
) -> DType:
    if torch_dtype is not None:
        return from_torch_dtype(torch_dtype)
    if name in _ML_ONLY_NAMES:
        _load_ml_dtypes()
    if name in _BY_NAME:
        return _BY_NAME[name]
    assert numpy is not None
    return from_numpy_dtype(numpy)


# Python types NumPy reads as dtypes (np.dtype(float) is float64, and so on).
_PYTHON_TYPES: Final = (bool, int, float, complex, object, str, bytes)
_NOT_A_DTYPE: Final = (
    "pass a torch dtype, a NumPy dtype or scalar type, a dtype name string, or a tb.DtypePolicy"
)


def resolve_dtype(dtype: object) -> DType:
    """Turn any dtype-like value into its record.

    Raises:
        InvalidArgumentError: for an unknown name or a value that is no dtype.
        UnsupportedDtypeError: for a name NumPy and torch read as different dtypes.
    """
    if isinstance(dtype, torch.dtype):
        return from_torch_dtype(dtype)
    if isinstance(dtype, str):
        return _resolve_name(dtype)
    if isinstance(dtype, DtypePolicy):
        raise InvalidArgumentError(
            "a DtypePolicy cannot be used here; pass it as dtype= to to_tensor or to_numpy"
        )
    if dtype is None:
        raise InvalidArgumentError(
            "dtype=None is not a dtype; pass dtype=tb.PRESERVE to keep every dtype as it is"
        )
    if isinstance(dtype, type) and issubclass(dtype, DtypePolicy):
        raise InvalidArgumentError(
            "dtype=tb.DtypePolicy is the class, not a policy; pass an instance like "
            "tb.DtypePolicy(floating='float32'), or tb.FLOAT32 or tb.PRESERVE"
        )
    if isinstance(dtype, type) and not issubclass(dtype, (np.generic, *_PYTHON_TYPES)):
        raise InvalidArgumentError(
            f"dtype={dtype.__name__} is a class, not a dtype; {_NOT_A_DTYPE}"
        )
    try:
        np_dtype = np.dtype(cast(Any, dtype))
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        raise InvalidArgumentError(
            f"dtype={short_repr(dtype)} is not a dtype ({first_line(error)}); {_NOT_A_DTYPE}"
        ) from None
    return from_numpy_dtype(np_dtype)


def _resolve_name(text: str) -> DType:
    """A dtype name; ``torch.``, ``np.`` or ``numpy.`` in front mean that library's name."""
    library, _, name = text.rpartition(".")
    if library and library not in ("torch", "np", "numpy"):
        raise _unknown_name(text)
    if name in _ML_NAMES or name in _ML_ONLY_NAMES:
        _load_ml_dtypes()
    if library == "torch":
        return _torch_name(name) or _raise(_unknown_name(text))
    if library:
        return _numpy_name(name) or _raise(_unknown_name(text))
    if name in _BY_NAME:
        return _BY_NAME[name]
    torch_record, numpy_record = _torch_name(name), _numpy_name(name)
    if numpy_record is not None and torch_record is not None and numpy_record is not torch_record:
        raise UnsupportedDtypeError(
            f"the dtype name {text!r} is ambiguous: NumPy reads it as {numpy_record.name} and "
            f"torch as {torch_record.name}; pass the exact name ({numpy_record.name!r} or "
            f"{torch_record.name!r}), a prefixed one ('np.{name}' or 'torch.{name}') or a "
            f"dtype object such as np.{numpy_record.name} or torch.{torch_record.name}"
        )
    record = numpy_record or torch_record
    if record is None:
        raise _unknown_name(text)
    return record


def _torch_name(name: str) -> DType | None:
    value = getattr(torch, name, None) if name.isidentifier() else None
    return from_torch_dtype(value) if isinstance(value, torch.dtype) else None


def _numpy_name(name: str) -> DType | None:
    try:
        return from_numpy_dtype(np.dtype(name))
    except (TypeError, ValueError, SyntaxError, OverflowError):
        return None


def _unknown_name(text: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"unknown dtype name {short_repr(text)}; use a NumPy or torch dtype name such as "
        "'float32', 'int64', 'bfloat16' or 'complex64' ('np.float64' and 'torch.float' "
        "name that library's dtype)"
    )


def _raise(error: Exception) -> DType:
    raise error


def all_dtypes() -> list[DType]:
    """Every known dtype, ml_dtypes' included, in a stable order (for the report and tests)."""
    _load_ml_dtypes()
    return list(_BY_NAME.values())


# --------------------------------------------------------------------------- #
# Policies
# --------------------------------------------------------------------------- #

# (field, NumPy kind letter) of DtypePolicy; the ml_dtypes-only floats are kind "f" too.
_POLICY_FIELDS: Final = (
    ("floating", "f"),
    ("complex", "c"),
    ("signed", "i"),
    ("unsigned", "u"),
    ("bool", "b"),
)


@dataclass(frozen=True, slots=True)
class DtypePolicy:
    """Which dtype each kind of input becomes when no concrete dtype is asked for.

    A field left ``None`` keeps that kind of data as it is. The two ready-made
    policies are ``FLOAT32`` (the default: real floating data becomes float32,
    complex data complex64, the rest is kept) and ``PRESERVE`` (every dtype is
    kept exactly). Each field takes any dtype spelling (a torch dtype, a NumPy
    type or dtype, a name); the casting rule still applies to every change.

    Policies are values: two policies that map every kind alike are equal, hash
    alike and behave alike, whichever spelling built them; copies, deep copies
    and pickles (into ``spawn`` DataLoader workers, say) equal the original, and
    ``FLOAT32`` and ``PRESERVE`` unpickle to themselves.

    Args:
        floating: the dtype for every real floating input (float16, bfloat16,
            the float8 and other ml_dtypes floats, float32, float64, longdouble).
        complex: the dtype for every complex input (complex32, complex64,
            complex128, clongdouble).
        signed: the dtype for every signed integer input (int8 to int64).
        unsigned: the dtype for every unsigned integer input (uint8 to uint64).
        bool: the dtype for bool input.

    >>> import tensorbridge as tb, numpy as np
    >>> half = tb.DtypePolicy(floating="float16")
    >>> tb.to_tensor(np.ones(2), dtype=half).dtype
    torch.float16
    >>> images = tb.DtypePolicy(floating="float32", unsigned="float32")
    >>> tb.to_tensor(np.zeros(2, np.uint8), dtype=images).dtype  # uint8 images
    torch.float32
    >>> tb.to_tensor(np.zeros(2, np.int64), dtype=images).dtype   # int64 labels kept
    torch.int64
    >>> images == tb.DtypePolicy(unsigned=np.float32, floating=np.float32)
    True
    """

    floating: DTypeLike | None = None
    complex: DTypeLike | None = None
    signed: DTypeLike | None = None
    unsigned: DTypeLike | None = None
    bool: DTypeLike | None = None
    #: The result record per kind letter, for the kinds this policy changes.
    by_kind: dict[str, DType] = dataclasses.field(init=False, repr=False, compare=False)
    _key: tuple[DType | None, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kind: dict[str, DType] = {}
        for field, kind in _POLICY_FIELDS:
            value = getattr(self, field)
            if value is None:
                continue
            record = resolve_dtype(value)
            if record.kind not in _KIND_ORDER:
                raise UnsupportedDtypeError(
                    f"DtypePolicy({field}={short_repr(value)}): {record.name} is not a numeric "
                    "dtype that data can be cast to"
                )
            by_kind[kind] = record
        object.__setattr__(self, "by_kind", by_kind)
        object.__setattr__(self, "_key", tuple(by_kind.get(kind) for _, kind in _POLICY_FIELDS))

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> builtins.bool:
        if not isinstance(other, DtypePolicy):
            return NotImplemented
        return self._key == other._key

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self is FLOAT32:
            return "FLOAT32"  # unpickled, copied and deep-copied as the module's own object
        if self is PRESERVE:
            return "PRESERVE"
        return (DtypePolicy, tuple(None if each is None else each.name for each in self._key))

    def __repr__(self) -> str:
        # Canonical, from the resolved dtypes: equal policies print alike.
        if self._key == FLOAT32._key:
            return "tb.FLOAT32"
        if self._key == PRESERVE._key:
            return "tb.PRESERVE"
        fields = ", ".join(
            f"{field}={record.name!r}"
            for (field, _), record in zip(_POLICY_FIELDS, self._key, strict=True)
            if record is not None
        )
        return f"tb.DtypePolicy({fields})"


def apply_policy(policy: DtypePolicy, source: DType) -> DType:
    """The result dtype ``policy`` gives for data of dtype ``source``."""
    return policy.by_kind.get(source.kind, source)


FLOAT32: Final = DtypePolicy(floating="float32", complex="complex64")
"""The default policy: real floating data becomes float32, complex data complex64."""

PRESERVE: Final = DtypePolicy()
"""Keep every dtype exactly; a dtype the target side cannot hold raises."""


# --------------------------------------------------------------------------- #
# The casting rule
# --------------------------------------------------------------------------- #


def can_cast(source: DType, target: DType, casting: Casting) -> bool:
    """NumPy's ``np.can_cast`` extended to bfloat16, the float8 types and complex32."""
    if source is target or casting == "unsafe":
        return True
    if casting in ("no", "equiv"):
        return False
    if source.numpy_builtin and target.numpy_builtin:
        assert source.numpy is not None
        assert target.numpy is not None
        return bool(np.can_cast(source.numpy, target.numpy, casting))
    if _safe(source, target):
        return True
    return casting == "same_kind" and _KIND_ORDER[source.kind] <= _KIND_ORDER[target.kind]


def _safe(source: DType, target: DType) -> bool:
    target_format = target.component_format()
    if source.kind == "b":
        return target_format is None or target_format.has_zero
    if target_format is None:
        # Between integer and bool types NumPy's own tables have decided already.
        return False
    if source.kind in "ui":
        bits = 8 * source.itemsize - (source.kind == "i")
        return target_format.holds_integers(bits, signed=source.kind == "i")
    source_format = source.component_format()
    if source_format is None or (source.kind == "c" and target.kind != "c"):
        return False
    return target_format.holds(source_format)


def check_cast(source: DType, target: DType, casting: str, policy: DtypePolicy | None) -> None:
    """Raise unless ``casting`` allows turning ``source`` data into ``target``.

    ``policy`` is the policy that asked for the cast, if one did: the message
    then says so, and how to keep the dtype instead.

    Raises:
        UnsupportedDtypeError: one side is no numeric dtype torch or NumPy can cast.
        CastingError: the rule forbids the cast.
    """
    if source is target:
        return
    if source.kind not in _KIND_ORDER and source.kind != "q":
        raise UnsupportedDtypeError(
            f"cannot convert {source.name} data to {target.name}: {source.name} has no "
            "numeric values to cast; convert it yourself (for example with astype) first"
        )
    if target.kind not in _KIND_ORDER:
        raise UnsupportedDtypeError(
            f"cannot cast {source.name} data to {target.name}: {target.name} is not a numeric "
            "dtype data can be cast to (quantized, bit and sub-byte dtypes have constructors "
            "of their own, and torch holds no strings or objects); pick a numeric dtype"
        )
    if source.kind == "q":
        allowed = target.kind in "fc" and casting in ("same_kind", "unsafe")
    else:
        allowed = can_cast(source, target, cast(Casting, casting))
    if not allowed:
        asked = f" (the dtype policy {policy!r} asks for it)" if policy is not None else ""
        keep = f", dtype=tb.PRESERVE to keep {source.name}," if policy is not None else ""
        raise CastingError(
            f"cannot cast {source.name} to {target.name}{asked} under the casting rule "
            f'casting="{casting}"; pass casting="unsafe" if a lossy cast is what you meant'
            f"{keep} or pick a dtype that holds the values"
        )


def check_casting_value(casting: object) -> str:
    """``casting`` itself, once it is known to be one of NumPy's rules."""
    if not isinstance(casting, str) or casting not in CASTING_RULES:
        raise InvalidArgumentError(
            f"casting={short_repr(casting)} is not a casting rule; use one of "
            "'no', 'equiv', 'safe', 'same_kind' (the default) or 'unsafe'"
        )
    return casting


# --------------------------------------------------------------------------- #
# Which kernel may cast
# --------------------------------------------------------------------------- #

# The dtype pairs whose torch CPU cast writes exactly the bits NumPy's astype
# writes (ml_dtypes' for bfloat16), each proven in tests/test_cast_kernels.py:
# every bit pattern of the 8- and 16-bit sources; special values (NaN payloads,
# ties, subnormals, integer extremes, the integers that round twice through a
# narrower float) and random bits of the wider ones. Kept out: every cast from
# a floating type to an integer (out-of-range and NaN values differ); float16
# <-> float32/64 and float32 -> float16 (torch quiets signalling NaNs, NumPy
# keeps their payload); float64 -> float16 (torch rounds twice, through
# float32); any floating type to bfloat16 (NaN and ties round differently); and
# 32- and 64-bit integers to bfloat16 (torch rounds twice, through float32:
# 2**24 + 2**16 + 1 becomes 2**24 in torch, 2**24 + 2**17 in ml_dtypes).
_INTEGERS: Final = (
    "bool",
    "uint8",
    "int8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
)
_NARROW_INTEGERS: Final = ("bool", "uint8", "int8", "int16", "uint16")
_WIDE_TARGETS: Final = ("float16", "float32", "float64", "complex64", "complex128")
TORCH_EXACT_CASTS: Final[frozenset[tuple[str, str]]] = frozenset(
    {(a, b) for a in _INTEGERS for b in (*_INTEGERS, *_WIDE_TARGETS) if a != b}
    | {(a, "bfloat16") for a in _NARROW_INTEGERS}
    | {
        ("bfloat16", "float32"),
        ("bfloat16", "float64"),
        ("bfloat16", "complex64"),
        ("bfloat16", "complex128"),
        ("float32", "float64"),
        ("float32", "complex64"),
        ("float32", "complex128"),
        ("float64", "float32"),
        ("float64", "complex64"),
        ("float64", "complex128"),
        ("complex64", "complex128"),
        ("complex128", "complex64"),
    }
)


def torch_casts_exactly(source: DType, target: DType) -> bool:
    """Whether torch's cast from ``source`` to ``target`` gives NumPy's bits."""
    return (source.name, target.name) in TORCH_EXACT_CASTS


_QUIET_TARGETS: Final = frozenset((*_INTEGERS, "float32", "float64", "complex64", "complex128"))


def numpy_casts_quietly(source: DType, target: DType) -> bool:
    """Whether ``astype`` from ``source`` to ``target`` never sets a floating-point flag.

    Such a cast needs no ``np.errstate`` (which costs more than a small cast):
    it cannot warn or raise whatever the values and the user's error settings.
    Integer and bool sources into integers and into float32 or wider qualify;
    every floating source is out (a float32 signalling NaN widened to float64
    sets the invalid flag), and so is float16 as a target (int64 overflows it).
    """
    return (
        source.kind in "biu"
        and source.numpy_builtin
        and target.numpy_builtin
        and target.name in _QUIET_TARGETS
    )


def numpy_casts_directly(source: np.dtype[Any], target: np.dtype[Any]) -> bool:
    """Whether one ``astype`` casts the pair (not complex to real, which warns; not the
    ml_dtypes pairs that have no cast between them)."""
    if source.kind == "c" and target.kind != "c":
        return False
    # isbuiltin is 1 for NumPy's own dtypes, 2 for user-defined ones (ml_dtypes).
    return (source.isbuiltin == 1 and target.isbuiltin == 1) or bool(
        np.can_cast(source, target, "unsafe")
    )
