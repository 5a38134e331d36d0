"""``collate``: a DataLoader ``collate_fn`` that stacks and applies the dtype policy in one pass.

``default_collate`` followed by ``.float()`` reads every sample twice and writes
the batch twice (stack in float64, then cast). Here each column of leaves is
stacked by one call: ``np.array`` for arrays, NumPy scalars and Python numbers
(straight into the result dtype, with NumPy's values), ``torch.stack`` for
tensors (into a batch of the result dtype where torch's cast is exact); a
large casting batch is written sample by sample into its slots across
threads. Inside a DataLoader worker the output is allocated in shared memory,
so the batch crosses to the main process without a copy.

Samples that do not match (other shapes, other structures) are found by the
stacking call itself, and only then examined, for a message that names the
leaf path and the samples that differ.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, NoReturn, cast

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import get_worker_info

from . import _threads
from ._compat import (
    dtype_of,
    from_numpy,
    ignore_fp_errors,
    is_list,
    is_mapping,
    is_masked,
    is_ndarray,
    is_numpy_scalar,
    is_sequence,
    restore_fp_errors,
    shape_of,
    shared_storage,
)
from ._convert import array_to_tensor, device_cast, fill, tensor_to_tensor
from ._dtypes import (
    FLOAT32,
    Casting,
    DType,
    DTypeLike,
    DtypePolicy,
    check_cast,
    from_numpy_dtype,
    from_torch_dtype,
)
from ._errors import (
    CastingError,
    InvalidArgumentError,
    InvalidInputError,
    ShareError,
    TensorBridgeError,
    UnsupportedDtypeError,
    a_type,
    first_line,
)
from ._inputs import check_tensor, checked_numbers, unmask
from ._kernels import cast_into, share_ndarray, share_tensor
from ._paths import Field, LeafDtypes, LeafOptions, format_path
from ._plan import CPU, Options, Plan, same_device
from ._transfer import batch_transfer, host_to_device, open_batch
from ._tree import check_used, children, leaf_options, rebuild, recursion_error

__all__ = ["collate"]

_NEW_MEMORY: Final = "collate stacks samples into new memory, so the batch never shares"
_NUMBERS: Final = (bool, int, float, complex)
_Path = tuple[object, ...]


def collate(
    samples: Sequence[Any],
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = FLOAT32,
    device: str | torch.device | int | None = None,
    copy: bool | None = None,
    casting: Casting = "same_kind",
    pin_memory: bool = False,
    non_blocking: bool = False,
) -> Any:
    """Stack a list of samples into one batch, applying the dtype policy while stacking.

    A drop-in ``collate_fn`` for ``torch.utils.data.DataLoader``. Each sample is
    an array, a tensor, a number, a string, or a nested structure of them
    (mappings, lists, tuples, namedtuples, dataclasses), the same in every
    sample. Array and tensor leaves are stacked along a new first dimension
    straight into an output of the result dtype: one pass, no per-sample
    tensors, no second cast. Inside a DataLoader worker the output is allocated
    in shared memory, as ``default_collate`` does. Numbers become tensors (the
    policy applies: Python floats become float32 by default; NumPy scalars and
    Python numbers of one kind batch together), strings become lists, and
    sequences are transposed into lists, as ``default_collate`` does.

    Args:
        samples: the samples of one batch.
        dtype: a policy or dtype, as for ``to_tensor``, applied while stacking;
            or per-leaf dtypes, as for ``tree_to_tensor``.
        device: where the batch goes. An exact widening (uint8 images to
            float32, say) runs there, after the narrow batch has crossed the bus.
        copy: None or True (a batch is always new memory); False raises
            ``ShareError``.
        casting: NumPy's casting rule, checked for every sample's dtype change.
        pin_memory: build the batch in page-locked memory (needs CUDA).
        non_blocking: as for ``to_tensor``.

    Returns:
        The batch, with the structure of one sample.

    Raises:
        TensorBridgeError: samples whose structure, types or shapes differ (the
            message names the leaf path and the shapes), or a leaf that cannot
            be converted.

    >>> import numpy as np, tensorbridge as tb
    >>> samples = [{"x": np.ones(3), "y": 1, "id": "a"}, {"x": np.zeros(3), "y": 0, "id": "b"}]
    >>> batch = tb.collate(samples)
    >>> batch["x"].shape, batch["x"].dtype, batch["y"], batch["id"]
    (torch.Size([2, 3]), torch.float32, tensor([1, 0]), ['a', 'b'])
    """

    def make(each: object) -> Options:
        return Options.for_tensor(each, device, copy, casting, pin_memory, non_blocking)

    options, dtypes = leaf_options(dtype, make)
    if options.copy is False:
        raise ShareError(f"cannot share memory: {_NEW_MEMORY}; pass copy=None")
    column = _sample_list(samples)
    device = options.device
    try:
        if device is None or device.type != "cuda":
            batch = _collate(column, options, (), dtypes)
        else:  # every host leaf crosses the bus in one copy with the others
            with batch_transfer(device, options.non_blocking):
                batch = _collate(column, options, (), dtypes)
    except RecursionError:
        # A sample that contains itself, or one nested deeper than the stack allows.
        trees = [(f"collate: in sample {index}, ", sample) for index, sample in enumerate(column)]
        raise recursion_error(trees) from None
    check_used(dtypes, "collate", column[0])
    return batch


def _sample_list(samples: object) -> list[Any]:
    # Typed as object: callers without a type checker may pass anything. An
    # ndarray's rows are samples too, as default_collate indexes any batch.
    if is_list(samples):  # what a DataLoader hands over
        if not samples:
            raise InvalidArgumentError("collate received no samples; a batch needs at least one")
        return samples
    if is_ndarray(samples) and samples.ndim > 0:
        return list(samples)
    if isinstance(samples, (str, bytes)) or not is_sequence(samples):
        raise InvalidInputError(f"collate takes a list of samples, and received {a_type(samples)}")
    column = list(samples)
    if not column:
        raise InvalidArgumentError("collate received no samples; a batch needs at least one")
    return column


def _collate(column: list[Any], options: Options, path: _Path, dtypes: LeafOptions | None) -> Any:
    first = column[0]
    kinds = list(map(type, column))
    uniform = kinds.count(kinds[0]) == len(kinds)  # one C pass; a mix is examined only then
    if isinstance(first, (str, bytes)):  # np.str_ and np.bytes_ too, as default_collate
        return list(column) if uniform else _same_kind(column, path)
    try:
        if isinstance(first, torch.Tensor):
            return _stack_tensors(column if uniform else _same_kind(column, path), options)
        if isinstance(first, (np.ndarray, np.generic, *_NUMBERS)):
            return _stack_host(column if uniform else _same_kind(column, path), options, uniform)
    except TensorBridgeError as error:
        if str(error).startswith("collate: at "):
            raise
        raise type(error)(f"collate: at {format_path(path)}: {error}") from error
    entries = children(first)
    if entries is None:
        raise InvalidInputError(
            f"collate: at {format_path(path)}, cannot batch {type(first).__name__} leaves; "
            "samples may hold arrays, tensors, numbers, strings, and mappings, sequences or "
            "dataclasses of them (as default_collate does)"
        )
    columns = _transpose(column if uniform else _same_kind(column, path), entries, path)
    values = [
        _collate(each, *_below(options, dtypes, path, step))
        for (step, _), each in zip(entries, columns, strict=True)
    ]
    return rebuild(first, values, tuples_as_lists=True)


def _below(
    options: Options, dtypes: LeafOptions | None, path: _Path, step: object
) -> tuple[Options, _Path, LeafOptions | None]:
    """The options, path and per-leaf options of the child at ``step``."""
    node = None if dtypes is None else dtypes.child(step)
    if node is None:
        return options, (*path, step), None
    node.used = True
    return node.options or options, (*path, step), node if node.children else None


def _transpose(
    column: list[Any], entries: list[tuple[object, object]], path: _Path
) -> list[list[Any]]:
    """One column per child of the first sample, in the order of its children."""
    first = column[0]
    try:
        if is_mapping(first):
            size = len(first)
            if any(len(sample) != size for sample in column):
                raise KeyError(size)
            return [[sample[key] for sample in column] for key, _ in entries]
        if isinstance(first, Sequence):  # lists, tuples, namedtuples, range...
            return [list(each) for each in zip(*column, strict=True)]
        names = [cast(Field, step).name for step, _ in entries]  # a dataclass
        return [[getattr(sample, name) for sample in column] for name in names]
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return _structure_error(column, path)


def _structure_error(column: list[Any], path: _Path) -> NoReturn:
    """Raise for samples whose structure differs from the first sample's."""
    mine = [step for step, _ in children(column[0]) or ()]
    keys = bool(mine) and not isinstance(mine[0], (int, Field))
    for index, sample in enumerate(column):
        theirs = [step for step, _ in children(sample) or ()]
        if len(theirs) != len(mine) or (keys and set(theirs) != set(mine)):
            if keys:
                shown = f"keys {sorted(map(str, mine))}"
                other = f"keys {sorted(map(str, theirs))}"
            else:
                shown, other = _count(len(mine), "element"), _count(len(theirs), "element")
            raise InvalidArgumentError(
                f"collate: at {format_path(path)}, sample 0 has {shown} and sample {index} has "
                f"{other}; every sample needs the same structure (fill in missing entries, or "
                "collate them yourself)"
            )
    raise InvalidInputError(
        f"collate: at {format_path(path)}, the samples' structures differ; every sample must "
        "have the same structure"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _kind(value: object) -> str:
    """What a leaf or container is, as ``default_collate`` tells them apart."""
    if isinstance(value, (str, bytes)):
        return "string"
    if isinstance(value, torch.Tensor):
        return "tensor"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, (np.generic, *_NUMBERS)):
        return "number"  # NumPy scalars and Python numbers batch together
    if isinstance(value, Mapping):
        return "mapping"
    kind = type(value)
    if hasattr(kind, "_fields") and issubclass(kind, tuple):
        return kind.__qualname__  # a namedtuple: only its own type
    if isinstance(value, Sequence):
        return "sequence"
    return type(value).__qualname__


def _same_kind(column: list[Any], path: _Path) -> list[Any]:
    """A column of mixed types that batches all the same (NumPy scalars with Python
    numbers, masked arrays with plain ones), else the error naming the samples."""
    first = column[0]
    for index, sample in enumerate(column):
        if _kind(sample) != _kind(first):
            raise InvalidInputError(
                f"collate: at {format_path(path)}, sample 0 holds {a_type(first)} and sample "
                f"{index} {a_type(sample)}; every sample must have the same structure"
            )
    return column


# --------------------------------------------------------------------------- #
# Arrays, NumPy scalars and Python numbers: np.array
# --------------------------------------------------------------------------- #


_PYTHON_DTYPES: Final = {
    bool: np.dtype(np.bool_),
    float: np.dtype(np.float64),
    complex: np.dtype(np.complex128),
}


def _stack_host(column: list[Any], options: Options, uniform: bool) -> torch.Tensor:
    """A column of arrays, NumPy scalars or Python numbers, stacked by one ``np.array``."""
    first = column[0]
    if is_masked(first) or not uniform:  # (one type in every sample: the first's)
        column = [unmask(each) if is_masked(each) else each for each in column]
    if is_ndarray(first):
        try:
            source = np.result_type(*column)
        except (TypeError, ValueError) as error:
            raise _unstackable(column, error) from None
        if source != first.dtype:
            _check_promotion(column, from_numpy_dtype(source), options)
    elif uniform and is_numpy_scalar(first):
        source = dtype_of(first)
    elif uniform and type(first) in _PYTHON_DTYPES:
        source = _PYTHON_DTYPES[type(first)]  # bool, float64, complex128 (contract 3)
    else:
        # Python ints (int64 first, so that a cast rounds once, as astype does) and
        # mixes of NumPy scalars and Python numbers, which NumPy promotes.
        try:
            numbers = np.array(column, dtype=np.int64 if type(first) is int and uniform else None)
        except (ValueError, TypeError, OverflowError) as error:
            raise _unstackable(column, error) from None
        return array_to_tensor(
            checked_numbers(numbers, column, "collate"), options, _NEW_MEMORY, True
        )
    device = options.device
    moves_to = None if device is None or device.type == "cpu" else device
    plan = options.memo.array_plan(source, options.casting, moves_to)
    return _write_batch(column, plan, options, moves_to)


def _unstackable(column: list[Any], error: BaseException) -> TensorBridgeError:
    """The error for a column NumPy could not stack: the shapes that differ, if they do."""
    first = shape_of(column[0])
    for index, sample in enumerate(column):
        if shape_of(sample) != first:
            return InvalidArgumentError(
                f"sample 0 has shape {first} and sample {index} has shape {shape_of(sample)}; "
                "stacking needs equal shapes (resize or pad the samples, or collate this leaf "
                "yourself)"
            )
    return InvalidInputError(f"the samples do not stack ({first_line(error)})")


def _check_promotion(column: list[Any], promoted: DType, options: Options) -> None:
    """Raise where integer samples would be batched as floats (int64 with uint64: contract 7)."""
    sources = {from_numpy_dtype(each.dtype) for each in column}
    if (
        options.memo.fixed is None
        and promoted.kind not in "biu"
        and all(each.kind in "biu" for each in sources)
    ):
        raise CastingError(
            f"the samples' dtypes {sorted(each.name for each in sources)} have no common "
            f"integer dtype (NumPy would batch them as {promoted.name}, which rounds "
            "integers above 2**53); give every sample of this leaf one integer dtype, or "
            "pass an explicit dtype= to cast every sample to it"
        )
    target = options.memo.result(promoted)
    for each in sources:
        check_cast(each, target, options.casting, options.memo.policy)


def _write_batch(
    column: list[Any], plan: Plan, options: Options, moves_to: torch.device | None
) -> torch.Tensor:
    """The column of arrays in one new batch of the dtype that crosses the bus.

    A small batch is one ``np.array`` call straight into that dtype; a large
    one is written sample by sample into its slots, across threads.
    """
    carried = plan.bus if moves_to is not None else plan.target
    shape = (len(column), *getattr(column[0], "shape", ()))
    stacked = None
    if carried.numpy is not None and math.prod(shape) * carried.itemsize < _threads.PARALLEL_BYTES:
        try:
            stacked = _stacked(column, plan.source, carried)  # NumPy finds samples that differ
        except (ValueError, TypeError, OverflowError) as error:
            raise _unstackable(column, error) from None
        if moves_to is None and not options.pin_memory and not _in_worker():
            return share_ndarray(stacked, carried)
    placed = None
    if moves_to is not None:
        batch = open_batch(moves_to)
        placed = None if batch is None else batch.place(shape, carried, plan.target)
    out = placed[0] if placed is not None else _new_batch(shape, carried, options)
    if stacked is not None:
        np.copyto(share_tensor(out, carried), stacked)
    elif any(sample.shape != shape[1:] for sample in column):  # slot copies would broadcast
        raise _unstackable(column, ValueError("shapes differ"))
    else:
        _fill_batch(out, column, plan, carried)
    if moves_to is None:
        return out
    if placed is not None:
        return placed[1]  # finished on the device when the whole batch is sent
    moved = host_to_device(out, moves_to, non_blocking=options.non_blocking)
    return moved if moved.dtype == plan.target.torch else device_cast(moved, plan)


def _stacked(column: list[Any], source: DType, carried: DType) -> npt.NDArray[Any]:
    """One ``np.array`` call: the samples stacked straight into ``carried``, NumPy's values.

    Quiet, as ``cast_into`` is: a complex-to-real cast keeps the real parts
    without NumPy's ``ComplexWarning`` (``casting`` allowed it already).
    """
    if source.kind == "c" and carried.kind != "c":
        column = [each.real for each in column]
    token = ignore_fp_errors()
    try:
        return np.array(column, dtype=carried.numpy)
    finally:
        restore_fp_errors(token)


def _fill_batch(out: torch.Tensor, column: list[Any], plan: Plan, carried: DType) -> None:
    """Each sample's values, converted as NumPy converts them, into its row of ``out``.

    Where every sample already has the batch's dtype, one ``torch.stack`` into
    ``out`` copies them on torch's threads (the copy ``default_collate`` runs,
    without its per-sample tensors); a batch that casts is cast by NumPy, one
    sample per task across threads (twice as fast here as torch's stack into a
    batch of another dtype, and NumPy's values for every pair).
    """
    dtype = carried.numpy
    if _threads.torch_threads_safe(out.numel()) and all(
        sample.dtype == dtype and sample.flags.writeable for sample in column
    ):
        try:
            torch.stack([from_numpy(sample) for sample in column], 0, out=out)
        except (TypeError, ValueError):
            pass  # byte order, strides or a dtype torch cannot wrap: NumPy below
        else:
            return
    if carried.numpy is None:  # complex32, or bfloat16/float8 without ml_dtypes
        for slot, array in zip(out, column, strict=True):
            fill(slot, array, plan)
        return
    view = share_tensor(out, carried)
    rows = view if view.ndim > 1 else view[:, np.newaxis]  # a 1-d row would be a scalar
    samples = column if view.ndim > 1 else [np.reshape(each, (1,)) for each in column]
    pairs = list(zip(rows, samples, strict=True))
    groups = _threads.threads()  # a run of rows per thread: a task per sample costs more
    edges = [len(pairs) * part // groups for part in range(groups + 1)]
    _threads.run(
        [functools.partial(_cast_rows, pairs[a:b]) for a, b in itertools.pairwise(edges) if b > a]
    )


def _cast_rows(pairs: list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]) -> None:
    for slot, array in pairs:
        cast_into(slot, array, parallel=False)


def _new_batch(shape: tuple[int, ...], dtype: DType, options: Options) -> torch.Tensor:
    """Uninitialised CPU memory for the batch: shared in a worker, pinned if asked."""
    assert dtype.torch is not None
    if _in_worker():
        count = math.prod(shape)
        # What default_collate does too: the batch crosses to the main process for free.
        storage = shared_storage(dtype.itemsize * count)
        strides = tuple(math.prod(shape[axis + 1 :]) for axis in range(len(shape)))
        return torch.empty(0, dtype=dtype.torch, device=CPU).set_(storage, 0, shape, strides)
    if options.pin_memory:
        return torch.empty(shape, dtype=dtype.torch, device=CPU, pin_memory=True)
    if dtype.numpy is not None:
        # NumPy's allocator asks for huge pages for large blocks: faster first writes
        # (a float64 batch cast to float32 took half the time of torch.empty's here).
        return share_ndarray(np.empty(shape, dtype=dtype.numpy), dtype)
    return torch.empty(shape, dtype=dtype.torch, device=CPU)


# --------------------------------------------------------------------------- #
# Tensors: torch.stack
# --------------------------------------------------------------------------- #


def _stack_tensors(column: list[torch.Tensor], options: Options) -> torch.Tensor:
    """A column of tensors, stacked by ``torch.stack`` (graph kept, as ``default_collate``)."""
    if column[0].is_quantized:
        column = _dequantized(column, options)
    _check_storages(column)
    first = column[0]
    here = first.device
    there = options.device
    moves_to = None if there is None or same_device(here, there) else there
    plan = options.memo.tensor_plan("tensor", first.dtype, options.casting, here, moves_to)
    safe = _threads.torch_threads_safe(first.numel() * len(column))
    if (
        moves_to is None
        and (plan.kernel == "torch" or (plan.kernel == "none" and _in_worker()))
        and here.type == "cpu"
        and not (first.requires_grad and torch.is_grad_enabled())  # out= cuts the graph
        and safe
    ):
        # Cast while stacking (torch's cast is exact for the pair), or stack into
        # shared memory in a DataLoader worker, as default_collate does.
        out = _new_batch((len(column), *first.shape), plan.target, options)
        try:
            return torch.stack(column, 0, out=out)  # cast while stacking: torch's is exact
        except RuntimeError:
            pass  # mixed dtypes that do not cast into it, or samples that do not stack
    try:
        # In a forked child torch's threads would hang: NumPy stacks there.
        stacked = torch.stack(column) if safe else _numpy_stack(column)
    except RuntimeError:
        stacked = _mixed_stack(column)
    if stacked.dtype != first.dtype:
        _check_tensor_promotion(column, stacked, options)
    elif plan.kernel == "none" and moves_to is None and not options.pin_memory:
        return stacked  # (the stack's own result: no second look)
    return tensor_to_tensor(stacked, options, _NEW_MEMORY)


_storage_of: Final = torch.Tensor.untyped_storage
_address_of: Final = torch.UntypedStorage.data_ptr


def _check_storages(column: list[torch.Tensor]) -> None:
    """Raise for a sample whose storage was freed (``torch.stack`` would read freed memory).

    One pass in C over the storages' addresses; only a column with a null one
    (an empty sample, or a freed or storage-less tensor) is examined sample by
    sample.
    """
    try:
        if 0 not in map(_address_of, map(_storage_of, column)):
            return
    except RuntimeError:  # no storage to read: sparse tensors, torch.func wrappers
        pass
    for sample in column:
        check_tensor(sample)


def _in_worker() -> bool:
    return get_worker_info() is not None


def _numpy_stack(column: list[torch.Tensor]) -> torch.Tensor:
    """The stack of a column of CPU tensors, by NumPy (a forked child's safe copy)."""
    arrays = [
        share_tensor(each.detach().resolve_conj().resolve_neg(), from_torch_dtype(each.dtype))
        for each in column
    ]
    dtype = from_numpy_dtype(np.result_type(*arrays))
    return share_ndarray(_stacked(arrays, dtype, dtype), dtype)


def _check_tensor_promotion(
    column: list[torch.Tensor], stacked: torch.Tensor, options: Options
) -> None:
    """Raise where integer samples were batched as floats (int64 with uint64: contract 7)."""
    sources = {from_torch_dtype(each.dtype) for each in column}
    if (
        options.memo.fixed is None
        and (stacked.is_floating_point() or stacked.is_complex())
        and all(each.kind in "biu" for each in sources)
    ):
        raise CastingError(
            f"the samples' dtypes {sorted(each.name for each in sources)} have no common "
            "integer dtype (a batch of them would be floating, which rounds integers above "
            "2**53); give every sample of this leaf one integer dtype, or pass an explicit "
            "dtype= to cast every sample to it"
        )


def _mixed_stack(column: list[torch.Tensor]) -> torch.Tensor:
    """A column ``torch.stack`` refused: stacked by NumPy where only torch's promotion was
    missing (uint16 to uint64 promote with nothing in torch), else the clear error."""
    for sample in column:
        check_tensor(sample)
    first = column[0]
    devices = sorted({str(sample.device) for sample in column})
    if len(devices) > 1:
        raise InvalidArgumentError(
            f"the samples' tensors live on different devices {devices}; move them to one "
            "device first"
        )
    for index, sample in enumerate(column):
        if sample.shape != first.shape:
            raise InvalidArgumentError(
                f"sample 0 has shape {tuple(first.shape)} and sample {index} has shape "
                f"{tuple(sample.shape)}; stacking needs equal shapes (resize or pad the "
                "samples, or collate this leaf yourself)"
            )
    sources = {from_torch_dtype(sample.dtype) for sample in column}
    if first.device.type == "cpu" and all(each.numpy is not None for each in sources):
        return _numpy_stack(column)
    names = sorted(each.name for each in sources)
    raise InvalidArgumentError(
        f"the samples' tensors (dtypes {', '.join(names)}) do not stack; give every sample "
        "of this leaf one dtype"
    )


def _dequantized(column: list[torch.Tensor], options: Options) -> list[torch.Tensor]:
    """Quantized samples as floats, where an explicit floating dtype asks for that (contract 4)."""
    target = options.memo.fixed
    names = sorted({str(each.dtype).removeprefix("torch.") for each in column})
    if target is None or target.kind not in "fc":
        raise UnsupportedDtypeError(
            f"the samples are quantized tensors ({', '.join(names)}), and a batch of them "
            "has no dtype the policy can keep; pass an explicit floating dtype "
            "(dtype=torch.float32) to dequantize them, or stack them yourself with torch.stack"
        )
    for name in names:
        check_cast(from_torch_dtype(getattr(torch, name)), target, options.casting, None)
    return [each.dequantize() if each.is_quantized else each for each in column]
