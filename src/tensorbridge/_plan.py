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
from typing import Any, Final, Literal, cast

import numpy as np
import torch

from ._device import parse_device
from ._dtypes import (
    FLOAT32,
    DType,
    DtypePolicy,
    apply_policy,
    check_cast,
    check_casting_value,
    ml_dtypes_module,
    resolve_dtype,
)
from ._errors import InvalidArgumentError, ShareError, UnsupportedDtypeError
from ._kernels import torch_casts_exactly

__all__ = [
    "Options",
    "Plan",
    "Side",
    "dtype_change_reason",
    "make_plan",
    "no_numpy_dtype",
    "no_torch_dtype",
    "numpy_options",
    "plan_for",
    "share_error",
    "tensor_options",
]

Side = Literal["torch", "numpy"]

CPU: Final = torch.device("cpu")


class Options:
    """The keyword options of one call, checked once (a tree reuses them for every leaf).

    A plain slotted class rather than a frozen dataclass: it is built on every
    general-path call, and frozen dataclasses are several times slower to build.
    """

    __slots__ = (
        "casting",
        "copy",
        "device",
        "dtype",
        "exact",
        "fixed",
        "non_blocking",
        "pin_memory",
        "policy",
    )

    def __init__(
        self,
        dtype: object,
        policy: DtypePolicy | None,
        fixed: DType | None,
        device: torch.device | None,
        copy: bool | None,
        casting: str,
        pin_memory: bool = False,
        non_blocking: bool = False,
    ) -> None:
        self.dtype = dtype  # the DtypePolicy or dtype-like as given, for messages
        self.policy = policy
        self.fixed = fixed
        self.device = device
        self.copy = copy
        self.casting = casting
        self.pin_memory = pin_memory
        self.non_blocking = non_blocking
        #: the NumPy dtype asked for when its byte order is not native (to_numpy
        #: honours it; torch holds native byte order only), else None
        self.exact: np.dtype[Any] | None = None

    def result_dtype(self, source: DType) -> DType:
        if self.policy is not None:
            return apply_policy(self.policy, source)
        assert self.fixed is not None
        return self.fixed


_DEFAULT_OPTIONS: Final = Options(FLOAT32, FLOAT32, None, None, None, "same_kind")


def tensor_options(
    dtype: object,
    device: object,
    copy: object,
    casting: object,
    pin_memory: object = False,
    non_blocking: object = False,
) -> Options:
    """Check every option of ``to_tensor`` and resolve the dtype and device once."""
    if (
        dtype is FLOAT32
        and device is None
        and copy is None
        and casting == "same_kind"
        and pin_memory is False
        and non_blocking is False
    ):
        return _DEFAULT_OPTIONS
    options = numpy_options(dtype, copy, casting)
    pin_memory = check_bool("pin_memory", pin_memory)
    non_blocking = check_bool("non_blocking", non_blocking)
    if pin_memory and not torch.cuda.is_available():
        raise InvalidArgumentError(
            "pin_memory=True needs CUDA (page-locked memory speeds up copies to a GPU), and "
            "torch.cuda.is_available() is False in this process; leave pin_memory=False"
        )
    return Options(
        options.dtype,
        options.policy,
        options.fixed,
        parse_device(device),
        options.copy,
        options.casting,
        pin_memory,
        non_blocking,
    )


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name}={value!r} is not a bool; pass True or False")
    return value


def numpy_options(dtype: object, copy: object, casting: object) -> Options:
    """Check the options of ``to_numpy`` and resolve the dtype once."""
    if dtype is FLOAT32 and copy is None and casting == "same_kind":
        return _DEFAULT_OPTIONS
    if copy is not None and copy is not True and copy is not False:
        raise InvalidArgumentError(
            f"copy={copy!r} is not a copy mode; pass None (share when possible), True "
            "(always copy) or False (share or raise)"
        )
    check_casting_value(casting)
    if isinstance(dtype, DtypePolicy):
        return Options(dtype, dtype, None, None, copy, str(casting))
    options = Options(dtype, None, resolve_dtype(dtype), None, copy, str(casting))
    if isinstance(dtype, (str, np.dtype)) and options.fixed is not None:
        exact = _numpy_dtype_or_none(cast(Any, dtype))
        if exact is not None and not exact.isnative and exact.kind in "biufc":
            options.exact = exact
    return options


def _numpy_dtype_or_none(dtype: str | np.dtype[Any]) -> np.dtype[Any] | None:
    try:
        return np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError):
        return None


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


def make_plan(
    source: DType,
    options: Options,
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
    target = apply_policy(options.policy, source) if options.policy is not None else options.fixed
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
        blocker = (
            f"the result goes to {result_device}, and the data lives in {source_device} memory"
        )
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


_PLANS: dict[tuple[object, ...], Plan] = {}
_PLAN_ENTRIES: Final = 1024


def plan_for(
    source: DType,
    options: Options,
    to: Side,
    source_device: torch.device = CPU,
    result_device: torch.device | None = None,
) -> Plan:
    """``make_plan``, remembered: a repeated call decides nothing again."""
    key = (source, options.dtype, options.casting, to, source_device, result_device)
    try:
        return _PLANS[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable dtype argument
        return make_plan(source, options, to, source_device, result_device)
    plan = make_plan(source, options, to, source_device, result_device)
    if len(_PLANS) >= _PLAN_ENTRIES:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


def dtype_change_reason(source: DType, target: DType, dtype: object) -> str:
    reason = f"the result dtype {target.name} differs from the input dtype {source.name}"
    if dtype is FLOAT32:
        reason += (
            f" (the default policy FLOAT32 casts floating data to float32; pass "
            f"dtype=tb.PRESERVE to keep {source.name})"
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
        f"dtype=torch.{'complex128' if target.kind == 'c' else 'float64'}, or the default "
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
