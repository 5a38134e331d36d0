"""The plan: every decision of a conversion, made once, from dtypes, devices and options.

A plan answers, from the source dtype and device and the call's options alone:

- the result dtype (the policy or the explicit dtype, checked against the
  casting rule and against what the target side can hold);
- whether dtype, byte order and device allow the result to share the input's
  memory, and if not, why, in words ready for ``ShareError``;
- which dtype crosses the bus when the data changes device, and so on which
  side of the bus the cast runs;
- which kernel casts: NumPy's ``astype``, or torch's kernel where it is proven
  bit-identical to NumPy's (``TORCH_EXACT_CASTS``), and from which size;
- the layout of a copy, which is one rule for every path (``copy_strides``).

What a plan cannot know (this input's writeability, strides, conjugate bits,
``requires_grad``, the grad mode, storage) is checked on every call, by
``_inputs.memory_blocker`` and the executors.

Plans are memoised: one ``Memo`` per dtype argument (the argument resolved,
and its plans keyed by the call kind, the source dtype and the option
values). Looking a plan up is the fast path; a repeated call is the same call
as the first, only cheaper. Nothing is remembered about inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, TypeVar, cast

import numpy as np
import torch

from ._compat import dtype_str
from ._dtypes import (
    FLOAT32,
    PRESERVE,
    DType,
    DtypePolicy,
    apply_policy,
    check_cast,
    check_casting_value,
    from_numpy_dtype,
    from_torch_dtype,
    ml_dtypes_module,
    numpy_casts_directly,
    numpy_casts_quietly,
    resolve_dtype,
    torch_casts_exactly,
)
from ._errors import InvalidArgumentError, UnsupportedDtypeError, short_repr

__all__ = [
    "CPU",
    "Kind",
    "Memo",
    "Options",
    "Plan",
    "memo_for",
    "parse_device",
    "remembered",
    "same_device",
]

CPU: Final = torch.device("cpu")

#: The kinds of call a plan is made for.
Kind: TypeAlias = Literal["array", "tensor", "numpy", "array-numpy"]
#: ``"array"``: an ndarray to a tensor; ``"tensor"``: a tensor to a tensor;
#: ``"numpy"``: a tensor to an ndarray; ``"array-numpy"``: an ndarray to an ndarray.

#: Which kernel casts: none (the dtype is kept), NumPy's ``astype``, torch's
#: kernel (a proven pair; NumPy below ``numpy_below`` elements), torch's alone
#: (NumPy lacks one of the dtypes), or a dequantize first (quantized sources).
Kernel: TypeAlias = Literal["none", "numpy", "torch", "torch-only", "dequantize"]


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    """Everything decided about one conversion before any memory is touched."""

    source: DType
    target: DType
    #: Why dtype, byte order or device rule out sharing memory, in words for
    #: ShareError; None when they allow it (the input's memory may still not).
    blocker: str | None
    #: The dtype that crosses the bus when the data moves (the source when it
    #: does not): the narrower side of an exact cast, else the source.
    bus: DType
    kernel: Kernel
    #: For the torch kernel: inputs with fewer elements are cast by NumPy, which
    #: is faster there (at two torch threads; see ``_NUMPY_BELOW``).
    numpy_below: int
    #: From this many elements a torch cast writes into huge pages (``torch_cast``).
    huge_from: int
    #: NumPy's cast of the pair sets no floating-point flag (no error state to set).
    quiet: bool
    #: One ``astype`` casts the pair (not complex to real; not the ml_dtypes pairs
    #: that have no cast between them).
    direct: bool
    #: For ``kernel == "dequantize"``: the plan of the dequantized (float32) data.
    after: Plan | None = None


class Options:
    """The keyword options of one call, checked once (a tree reuses them for every leaf).

    A plain slotted class rather than a frozen dataclass: it is built on every
    call that misses the fast path, and frozen dataclasses are slower to build.
    Never changed once made (the defaults are one shared object).
    """

    __slots__ = ("casting", "copy", "device", "dtype", "memo", "non_blocking", "pin_memory")

    def __init__(
        self,
        dtype: object,
        memo: Memo,
        device: torch.device | None,
        copy: bool | None,
        casting: str,
        pin_memory: bool = False,
        non_blocking: bool = False,
    ) -> None:
        self.dtype = dtype  # the argument as given: leaves of a tree are converted with it
        self.memo = memo
        self.device = device
        self.copy = copy
        self.casting = casting
        self.pin_memory = pin_memory
        self.non_blocking = non_blocking

    @classmethod
    def for_tensor(
        cls,
        dtype: object,
        device: object,
        copy: object,
        casting: object,
        pin_memory: object = False,
        non_blocking: object = False,
    ) -> Options:
        """Check every option of ``to_tensor`` and resolve the dtype and device."""
        if (
            dtype is FLOAT32
            and device is None
            and copy is None
            and casting == "same_kind"
            and pin_memory is False
            and non_blocking is False
        ):
            return _DEFAULTS
        pin = _check_bool("pin_memory", pin_memory)
        if pin and not torch.cuda.is_available():
            raise InvalidArgumentError(
                "pin_memory=True needs CUDA (page-locked memory speeds up copies to a GPU), "
                "and torch.cuda.is_available() is False in this process; leave "
                "pin_memory=False"
            )
        return cls(
            dtype,
            memo_for(dtype),
            parse_device(device),
            _check_copy(copy),
            check_casting_value(casting),
            pin,
            _check_bool("non_blocking", non_blocking),
        )

    @classmethod
    def for_numpy(cls, dtype: object, copy: object, casting: object) -> Options:
        """Check the options of ``to_numpy`` and resolve the dtype."""
        if dtype is FLOAT32 and copy is None and casting == "same_kind":
            return _DEFAULTS
        return cls(dtype, memo_for(dtype), None, _check_copy(copy), check_casting_value(casting))


def _check_copy(copy: object) -> bool | None:
    if copy is not None and copy is not True and copy is not False:
        raise InvalidArgumentError(
            f"copy={short_repr(copy)} is not a copy mode; pass None (share when "
            "possible), True (always copy) or False (share or raise)"
        )
    return copy


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name}={short_repr(value)} is not a bool; pass True or False")
    return value


# --------------------------------------------------------------------------- #
# The memo: one per dtype argument
# --------------------------------------------------------------------------- #


class Memo:
    """A dtype argument, resolved once, and the plans made for it.

    The plans are keyed by the call kind, the source dtype and the option
    values that decide a plan (the casting rule and the devices). The three
    kinds the fast paths look up, with the default casting rule and nothing
    moving, have a table each, keyed by the source dtype alone: ``arrays``
    (an ndarray to a host tensor), ``numpy`` (a CPU tensor to an ndarray) and
    ``tensors`` (a tensor to a tensor on its own device). Every other plan is
    in ``others``, keyed by a tuple.
    """

    __slots__ = ("arrays", "exact", "fixed", "numpy", "others", "policy", "tensors")

    def __init__(self, dtype: object) -> None:
        #: The policy, or else the concrete dtype every element becomes.
        self.policy: DtypePolicy | None = dtype if isinstance(dtype, DtypePolicy) else None
        self.fixed: DType | None = None if self.policy is not None else resolve_dtype(dtype)
        #: The NumPy dtype asked for when its byte order is not native (to_numpy
        #: honours it; torch holds native byte order only), else None.
        self.exact: np.dtype[Any] | None = None
        if self.fixed is not None:
            exact = _numpy_dtype_or_none(dtype)
            if exact is not None and not exact.isnative and exact.kind in "biufc":
                self.exact = exact
        self.arrays: dict[np.dtype[Any], Plan] = {}
        self.numpy: dict[torch.dtype, Plan] = {}
        self.tensors: dict[torch.dtype, Plan] = {}
        self.others: dict[tuple[object, ...], Plan] = {}

    def result(self, source: DType) -> DType:
        """The result dtype for ``source`` data."""
        if self.policy is not None:
            return apply_policy(self.policy, source)
        assert self.fixed is not None
        return self.fixed

    def array_plan(
        self, dtype: np.dtype[Any], casting: str, device: torch.device | None = None
    ) -> Plan:
        """The plan for an ndarray of ``dtype`` going to a tensor (on ``device``, if given)."""
        if casting == "same_kind" and device is None:
            plan = self.arrays.get(dtype)
            if plan is None:
                plan = _store(self.arrays, dtype, _array_plan(self, dtype, "array", casting, None))
            return plan
        key = ("array", dtype, casting, device)
        plan = self.others.get(key)
        if plan is None:
            plan = _store(self.others, key, _array_plan(self, dtype, "array", casting, device))
        return plan

    def numpy_plan(self, dtype: np.dtype[Any], casting: str) -> Plan:
        """The plan for an ndarray of ``dtype`` going to an ndarray."""
        key = ("array-numpy", dtype, casting)
        plan = self.others.get(key)
        if plan is None:
            plan = _store(self.others, key, _array_plan(self, dtype, "array-numpy", casting, None))
        return plan

    def tensor_plan(
        self,
        kind: Literal["tensor", "numpy"],
        dtype: torch.dtype,
        casting: str,
        here: torch.device,
        there: torch.device | None,
    ) -> Plan:
        """The plan for a tensor of ``dtype`` on ``here`` going to a tensor or an ndarray.

        ``there`` is the device the result moves to, or None when it stays
        (for ``"numpy"``: None for a CPU tensor, else the CPU).
        """
        if casting == "same_kind" and there is None:
            # Nothing moves, so the plan is the same on every device (the
            # executors cast on the tensor's own device).
            table = self.numpy if kind == "numpy" else self.tensors
            plan = table.get(dtype)
            if plan is None:
                made = make_plan(self, from_torch_dtype(dtype), kind, casting, here, None)
                plan = _store(table, dtype, made)
            return plan
        key = (kind, dtype, casting, here, there)
        plan = self.others.get(key)
        if plan is None:
            made = make_plan(self, from_torch_dtype(dtype), kind, casting, here, there)
            plan = _store(self.others, key, made)
        return plan


_K = TypeVar("_K")


def _store(table: dict[_K, Plan], key: _K, plan: Plan) -> Plan:
    if len(table) >= _PLANS_PER_ARGUMENT:
        table.clear()
    table[key] = plan
    return plan


_PLANS_PER_ARGUMENT: Final = 256
_FLOAT32_MEMO: Final = Memo(FLOAT32)
_PRESERVE_MEMO: Final = Memo(PRESERVE)
#: The options of a call that passes none (to_tensor's, to_numpy's and every tree's).
_DEFAULTS: Final = Options(FLOAT32, _FLOAT32_MEMO, None, None, "same_kind")
_MEMOS: dict[tuple[type, object], Memo] = {}
_MEMO_ARGUMENTS: Final = 64
# Dtype arguments that are values (equal ones behave alike): memoised by value.
# Anything else (an object with a .dtype attribute, say) is resolved every call.
_VALUE_TYPES: Final = (DtypePolicy, torch.dtype, np.dtype, str, type)


def remembered(dtype: object) -> Memo | None:
    """The memo of a dtype argument if it has one already (a fast path's look-up), else None."""
    try:
        return _MEMOS.get((type(dtype), dtype))
    except TypeError:  # unhashable: no memo, and the general path explains
        return None


def memo_for(dtype: object) -> Memo:
    """The memo of a dtype argument, made (and its argument checked) on first use.

    Raises:
        InvalidArgumentError, UnsupportedDtypeError: the argument names no dtype.
    """
    if dtype is FLOAT32:
        return _FLOAT32_MEMO
    if dtype is PRESERVE:
        return _PRESERVE_MEMO
    if not _is_value(dtype):
        return Memo(dtype)
    key: tuple[type, object] = (type(dtype), dtype)
    memo = _MEMOS.get(key)
    if memo is None:
        memo = Memo(dtype)
        if len(_MEMOS) >= _MEMO_ARGUMENTS:
            _MEMOS.clear()
        _MEMOS[key] = memo
    return memo


def _is_value(dtype: object) -> bool:
    return isinstance(dtype, _VALUE_TYPES)


def _numpy_dtype_or_none(dtype: object) -> np.dtype[Any] | None:
    """The NumPy dtype a string or np.dtype argument names, else None."""
    if not isinstance(dtype, (str, np.dtype)):
        return None
    try:
        named: np.dtype[Any] = np.dtype(cast(Any, dtype))
    except (TypeError, ValueError, SyntaxError):
        return None
    return named


# --------------------------------------------------------------------------- #
# Making a plan
# --------------------------------------------------------------------------- #


def _array_plan(
    memo: Memo,
    dtype: np.dtype[Any],
    kind: Literal["array", "array-numpy"],
    casting: str,
    device: torch.device | None,
) -> Plan:
    plan = make_plan(memo, from_numpy_dtype(dtype), kind, casting, CPU, device)
    if dtype.isnative or plan.blocker is not None:
        return plan
    swapped = (
        f"the array's byte order is non-native (dtype {dtype_str(dtype)!r}), and the result "
        "has native byte order"
    )
    return dataclasses.replace(plan, blocker=swapped)


def make_plan(
    memo: Memo,
    source: DType,
    kind: Kind,
    casting: str,
    here: torch.device,
    there: torch.device | None,
) -> Plan:
    """Decide the conversion of ``source`` data for a call of ``kind``.

    ``there`` is None when the result stays on the source's device (host
    memory for NumPy results), else the device it moves to.

    Raises:
        UnsupportedDtypeError: the result dtype has no counterpart on the target side.
        CastingError: the casting rule forbids the dtype change.
    """
    target = memo.result(source)
    to_numpy = kind in ("numpy", "array-numpy")
    if not to_numpy and target.torch is None:
        raise no_torch_dtype(target, source, memo.policy is not None)
    if to_numpy and target.numpy is None:
        raise no_numpy_dtype(target, source)
    check_cast(source, target, casting, memo.policy)
    if source.kind == "q" and target is not source:
        # Quantized tensors cast by dequantizing to float32, whose plan does the rest.
        after = make_plan(memo, from_torch_dtype(torch.float32), kind, casting, here, there)
        reason = _reason(source, target, memo, there, here)
        return Plan(source, target, reason, after.bus, "dequantize", 0, 0, False, False, after)
    return Plan(
        source,
        target,
        _reason(source, target, memo, there, here),
        _bus(source, target, here, there),
        _kernel(source, target),
        _numpy_below(source, target),
        _huge_from(target),
        numpy_casts_quietly(source, target),
        source.numpy is not None
        and target.numpy is not None
        and numpy_casts_directly(source.numpy, target.numpy),
    )


def _reason(
    source: DType, target: DType, memo: Memo, there: torch.device | None, here: torch.device
) -> str | None:
    if target is not source:
        return dtype_change_reason(source, target, memo.policy)
    if there is not None:
        return f"the result goes to {there}, and the data lives in {here} memory"
    return None


def _kernel(source: DType, target: DType) -> Kernel:
    if target is source:
        return "none"
    if source.numpy is None or target.numpy is None:
        return "torch-only"
    if torch_casts_exactly(source, target):
        return "torch"
    return "numpy"


def _bus(source: DType, target: DType, here: torch.device, there: torch.device | None) -> DType:
    """The dtype that crosses the bus: one rule, both directions.

    On the device only where torch's kernel gives NumPy's bits there and the bus
    then carries fewer bytes (a uint8 image widened to float32 after the copy
    up, float64 narrowed to float32 before the copy down); everywhere else on
    the host.
    """
    if there is None or target is source:
        return source
    up = here.type == "cpu"
    narrowing = target.itemsize < source.itemsize
    on_device = (
        torch_casts_exactly(source, target)
        and narrowing != up
        and target.itemsize != source.itemsize
    )
    casts_first = on_device != up  # on the source's side of the bus
    return target if casts_first else source


# Where NumPy's astype stops being the faster kernel, for the pairs torch's
# kernel may cast, by kind ("i" for bool and integer sources, "f" for floating
# and complex ones) and source item size: elements, at two torch threads
# (scaled by 2 / torch.get_num_threads() above torch's grain size, 32,768,
# below which its kernel runs on one thread). astype costs about 0.3 us a call
# before its first element, torch's .to(dtype=) about 1.3 us; integer sources
# need no floating-point error state, floating ones a switch of 0.2 us.
# Measured on this project's 2-core machine as the size where both take equal
# time: python benchmarks/crossover.py (docs/benchmarks.md).
_NUMPY_BELOW: Final = {
    ("i", 1): 81920,
    ("i", 2): 98304,
    ("i", 4): 49152,
    ("i", 8): 40960,
    ("f", 4): 24576,
    ("f", 8): 24576,
    ("f", 16): 24576,
}
#: torch's casts write into huge-page memory from NumPy's allocator from this
#: many result bytes. Below it glibc reuses freed memory for the next result of
#: the same size, so torch's own allocation is as fast; from 32 MB (glibc's
#: largest mmap threshold) every result is fresh pages, whose faults cost more
#: than the cast (16M float64 to float32: 21 ms through torch's allocator, 8 ms
#: into huge pages). Measured by benchmarks/crossover.py.
_HUGE_FROM_BYTES: Final = 32 << 20


def _numpy_below(source: DType, target: DType) -> int:
    if not (source.numpy_builtin and target.numpy_builtin and torch_casts_exactly(source, target)):
        return 0
    return _NUMPY_BELOW.get(("i" if source.kind in "biu" else "f", source.itemsize), 0)


def _huge_from(target: DType) -> int:
    """From how many elements a torch cast's result goes into huge-page memory."""
    return _HUGE_FROM_BYTES // target.itemsize


# --------------------------------------------------------------------------- #
# Devices
# --------------------------------------------------------------------------- #


def parse_device(device: object) -> torch.device | None:
    """Check and normalise a ``device=`` argument; None stays None.

    ``"cuda"`` becomes the current CUDA device with its index, so that two
    spellings of one device compare equal.

    Raises:
        InvalidArgumentError: the value names no device, or one that is not
            available in this process.
    """
    if device is None:
        return None
    if isinstance(device, torch.device):
        parsed = device
    elif isinstance(device, (str, int)) and not isinstance(device, bool):
        try:
            parsed = torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise InvalidArgumentError(
                f"device={device!r} is not a device torch knows; pass 'cpu', 'cuda', 'cuda:N' "
                "or a torch.device"
            ) from None
    else:
        raise InvalidArgumentError(
            f"device={short_repr(device)} is not a device; pass 'cpu', 'cuda', 'cuda:N' or a "
            "torch.device"
        )
    if parsed.type == "cpu":
        return CPU
    if parsed.type == "meta":
        raise InvalidArgumentError(
            "device='meta' holds no data, so nothing can be converted onto it; "
            "use torch.empty(..., device='meta') to build shape-only tensors"
        )
    if parsed.type == "cuda":
        return _cuda_device(device, parsed)
    try:
        torch.empty(0, device=parsed)  # other backends (mps, xpu...) report themselves
    except (RuntimeError, AssertionError, ImportError, TypeError, ValueError) as error:
        del error  # torch's text here can be its whole dispatcher table
        raise InvalidArgumentError(
            f"device={device!r} is not available in this process (this torch build or "
            f"machine has no {parsed.type} device); pass device=None or 'cpu', or a device "
            "this torch build supports"
        ) from None
    return parsed


def _cuda_device(device: object, parsed: torch.device) -> torch.device:
    named = f"device={device!r}" + (" (CUDA device 0)" if isinstance(device, int) else "")
    if not torch.cuda.is_available():
        raise InvalidArgumentError(
            f"{named} was asked for, but torch.cuda.is_available() is False in this process "
            "(no GPU, or a CPU-only torch build); pass device=None or 'cpu'"
        )
    index = cast("int | None", parsed.index)  # the stubs say int; "cuda" alone has None
    if index is None:
        index = torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise InvalidArgumentError(
            f"{named} was asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    return torch.device("cuda", index)


def same_device(a: torch.device, b: torch.device) -> bool:
    """Device equality that treats 'cuda' and 'cuda:<current>' as one device."""
    if a.type != b.type:
        return False
    if a.index == b.index:
        return True
    if a.type == "cuda":
        current = torch.cuda.current_device()
        first = cast("int | None", a.index)  # as in _cuda_device
        second = cast("int | None", b.index)
        return (current if first is None else first) == (current if second is None else second)
    return False


# --------------------------------------------------------------------------- #
# Messages
# --------------------------------------------------------------------------- #


def dtype_change_reason(source: DType, target: DType, policy: DtypePolicy | None) -> str:
    """Why a dtype change rules sharing out, naming the policy that asked for it."""
    reason = f"the result dtype {target.name} differs from the input dtype {source.name}"
    if policy is None:
        return reason
    if policy == FLOAT32 and source.kind in "fc":
        what = "complex data to complex64" if source.kind == "c" else "floating data to float32"
        return (
            f"{reason} (the default policy tb.FLOAT32 casts {what}; pass dtype=tb.PRESERVE "
            f"to keep {source.name})"
        )
    return f"{reason} (the dtype policy {policy!r} asks for it; pass dtype=tb.PRESERVE to keep it)"


def no_torch_dtype(target: DType, source: DType, from_policy: bool) -> UnsupportedDtypeError:
    how = "the dtype policy" if from_policy else "dtype="
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


def no_numpy_dtype(target: DType, source: DType) -> UnsupportedDtypeError:
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
