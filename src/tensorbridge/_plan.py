"""The conversion plan: every decision of one conversion, made once and cached.

A plan answers, from the source dtype and device and the call's options alone:

- the result dtype (the policy or the explicit dtype, checked against the
  casting rule and against what the target side can hold);
- whether dtype and device allow the result to share the input's memory, and
  if not, why, in words ready for ``ShareError``;
- which dtype crosses the bus when the data changes device, and so on which
  side of the bus the cast runs;
- whether torch's cast kernel (vectorised, multi-threaded) may run the cast,
  which it may only for dtype pairs where it is proven bit-identical to
  NumPy's ``astype`` (``tests/test_cast_kernels.py`` checks every bit pattern
  of the 8- and 16-bit sources and special values of the wider ones).

Only facts about one particular input's memory (read-only, byte order,
strides) are left to the code that executes the plan. Plans depend on a few
hashable values, so they are cached: a repeated call decides nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

import torch

from ._dtypes import DType, DtypePolicy, check_cast, ml_dtypes_module
from ._errors import ShareError, UnsupportedDtypeError

__all__ = ["TORCH_EXACT_CASTS", "Plan", "Side", "make_plan", "share_error", "torch_casts_exactly"]

Side = Literal["torch", "numpy"]

CPU: Final = torch.device("cpu")


class PlanOptions(Protocol):
    """What a plan reads of a call's options (``_convert.Options`` has these)."""

    @property
    def dtype(self) -> object: ...  # the policy or dtype-like as the user gave it
    @property
    def policy(self) -> DtypePolicy | None: ...
    @property
    def fixed(self) -> DType | None: ...
    @property
    def casting(self) -> str: ...


# The dtype pairs whose torch CPU cast writes exactly the bits NumPy's astype
# writes (ml_dtypes' for bfloat16). Kept out: every cast from a floating type
# to an integer (out-of-range and NaN values differ), float16 <-> float32/64
# and float32 -> float16 (torch quiets signalling NaNs, NumPy keeps their
# payload), float64 -> float16 (torch rounds twice, through float32) and any
# floating type to bfloat16 (rounding of NaN and ties differ from ml_dtypes).
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
_FLOATS: Final = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")
TORCH_EXACT_CASTS: Final[frozenset[tuple[str, str]]] = frozenset(
    {(a, b) for a in _INTEGERS for b in (*_INTEGERS, *_FLOATS) if a != b}
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


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """Everything decided about one conversion before any memory is touched."""

    source: DType
    target: DType
    #: Where the result lives: None on the source's own device (or host memory
    #: for NumPy results), else the device it moves to.
    device: torch.device | None
    #: Why dtype or device rule out sharing memory, in words for ShareError;
    #: None when they allow it (the input's memory may still rule it out).
    blocker: str | None
    #: The dtype that crosses the bus when the data moves (the narrower of
    #: source and target where the far side casts exactly), else the source.
    bus: DType
    #: Whether torch's kernel may run the cast (see TORCH_EXACT_CASTS).
    torch_kernel: bool

    @property
    def casts(self) -> bool:
        return self.target is not self.source

    @property
    def moves(self) -> bool:
        return self.device is not None


def make_plan(
    source: DType,
    options: PlanOptions,
    to: Side,
    source_device: torch.device = CPU,
    result_device: torch.device | None = None,
) -> Plan:
    """Decide the conversion of ``source`` data under ``options``.

    ``result_device`` is None when the result stays on the source's device;
    else the device it moves to (different from ``source_device``).

    Raises:
        UnsupportedDtypeError: the result dtype has no counterpart on the ``to`` side.
        CastingError: the casting rule forbids the dtype change.
    """
    target = options.policy.apply(source) if options.policy is not None else options.fixed
    assert target is not None
    if to == "torch" and target.torch is None:
        raise no_torch_dtype(target, source, options.dtype)
    if to == "numpy" and target.numpy is None:
        raise no_numpy_dtype(target, source, options.dtype)
    check_cast(source, target, options.casting, options.policy)
    exact = torch_casts_exactly(source, target)
    blocker: str | None = None
    if target is not source:
        blocker = dtype_change_reason(source, target, options.dtype)
    elif result_device is not None:
        blocker = f"the result goes to {result_device}, and the data lives on {source_device}"
    # One rule for where a cast runs when data changes device, in both directions:
    # on the device only where torch's kernel gives NumPy's bits there and the bus
    # then carries fewer bytes (a uint8 image widened to float32 after the copy up,
    # float64 narrowed to float32 before the copy down); everywhere else on the host.
    bus = source
    if result_device is not None and target is not source:
        host_to_device = source_device.type == "cpu"
        narrower_first = target.itemsize < source.itemsize
        on_device = (
            exact and (narrower_first != host_to_device) and target.itemsize != source.itemsize
        )
        casts_before = on_device != host_to_device  # on the source's side of the bus
        bus = target if casts_before else source
    return Plan(source, target, result_device, blocker, bus, exact)


def dtype_change_reason(source: DType, target: DType, dtype: object) -> str:
    reason = f"the result dtype {target.name} differs from the input dtype {source.name}"
    if isinstance(dtype, DtypePolicy) and dtype.apply(source) is target:
        reason += (
            f" (the dtype policy {dtype!r} casts it; pass dtype=tb.PRESERVE to keep {source.name})"
        )
    return reason


def share_error(reason: str) -> ShareError:
    return ShareError(
        f"cannot share memory: {reason}. Pass copy=None to get a copy when sharing is "
        "impossible, or copy=True to always copy"
    )


def no_torch_dtype(target: DType, source: DType, dtype: object) -> UnsupportedDtypeError:
    how = "the dtype policy" if isinstance(dtype, DtypePolicy) else "dtype="
    if target.kind == "x":
        return UnsupportedDtypeError(
            f"cannot convert an array of dtype {source.name} to a tensor: {target.name} has "
            "no torch counterpart (torch holds only numeric data); convert it to a numeric "
            "dtype yourself first"
        )
    return UnsupportedDtypeError(
        f"cannot convert an array of dtype {source.name} to a tensor: {target.name} (from "
        f"{how}) has no torch counterpart; pass a dtype torch has, for example "
        f"dtype=torch.{'complex128' if target.kind == 'c' else 'float32'}, or the default "
        "policy tb.FLOAT32"
    )


def no_numpy_dtype(target: DType, source: DType, dtype: object) -> UnsupportedDtypeError:
    prefix = f"cannot convert a tensor of dtype torch.{source.name} to NumPy: {target.name}"
    if target.bits_torch is not None and ml_dtypes_module() is None:
        return UnsupportedDtypeError(
            f"{prefix} exists in NumPy only through ml_dtypes, which is not installed; "
            "install the extra (pip install 'tensorbridge[ml-dtypes]') or pass "
            "dtype=np.float32 to cast"
        )
    if target.kind == "c":
        hint = "pass dtype=np.complex64 to cast"
    elif target.kind == "q":
        hint = "pass dtype=np.float32 to dequantize, or convert tensor.int_repr()"
    elif target.kind == "f":
        hint = "pass dtype=np.float32 to cast"
    else:
        hint = "it is a storage-only dtype with no NumPy counterpart"
    return UnsupportedDtypeError(f"{prefix} has no NumPy counterpart; {hint}")
