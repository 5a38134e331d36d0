"""``collate``: a DataLoader ``collate_fn`` that stacks and applies the dtype policy in one pass.

``default_collate`` followed by ``.float()`` reads every sample twice and writes
the batch twice (stack in float64, then cast). Here each array leaf is written
once: the output is allocated in its final dtype (in shared memory inside a
DataLoader worker, so the batch crosses to the main process without a copy)
and NumPy casts each sample straight into its slot.
"""

from __future__ import annotations

import copy as copy_module
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import get_worker_info

from . import _parallel
from ._convert import array_to_tensor, tensor_to_tensor
from ._device import CPU, device_to_host, host_to_device, same_device
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
)
from ._inputs import check_tensor_has_data, sequence_to_array, unmask
from ._kernels import (
    cast_cpu_tensor,
    cast_device_tensor,
    cast_into,
    cast_tensor,
    copy_to_tensor,
    share_ndarray,
    share_tensor,
    torch_strides_ok,
)
from ._paths import DtypeTree, Field, LeafDtypes, format_path
from ._plan import Options, Plan, plan_for, tensor_options
from ._transfer import batch_transfer, open_batch
from ._tree import check_used, per_leaf, rebuild_list, rebuild_mapping, recursion_error

__all__ = ["collate"]

_NUMBERS: Final = (bool, int, float, complex)
_NEW_MEMORY: Final = "collate stacks samples into new memory, so the batch never shares"


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
    policy applies: Python floats become float32 by default), strings become
    lists, and sequences are transposed into lists, as ``default_collate`` does.

    Args:
        samples: the samples of one batch.
        dtype: a policy or dtype, as for ``to_tensor``, applied while stacking.
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
    options, dtypes = per_leaf(
        dtype, lambda each: tensor_options(each, device, copy, casting, pin_memory, non_blocking)
    )
    if options.copy is False:
        raise ShareError(f"cannot share memory: {_NEW_MEMORY}; pass copy=None")
    # The cast: the annotation says Sequence, but callers without a type checker
    # may pass anything, so the check stays. An ndarray's rows are samples too,
    # as default_collate indexes any batch.
    given = cast(object, samples)
    if isinstance(given, np.ndarray) and given.ndim > 0:
        samples = list(cast("npt.NDArray[Any]", given))
    elif isinstance(given, (str, bytes)) or not isinstance(given, Sequence):
        raise InvalidInputError(
            f"collate takes a list of samples, and received a {type(samples).__name__}"
        )
    if len(samples) == 0:
        raise InvalidArgumentError("collate received no samples; a batch needs at least one")
    try:
        with batch_transfer(options.device, options.non_blocking):
            batch = _collate(list(samples), options, (), dtypes)
    except RecursionError:
        # A sample that contains itself, or one nested deeper than the stack allows.
        trees = [(f"collate: in sample {index}, ", sample) for index, sample in enumerate(samples)]
        raise recursion_error(trees) from None
    check_used(dtypes, "collate")
    return batch


def _at(
    options: Options, dtypes: DtypeTree | None, path: tuple[object, ...], step: object
) -> tuple[Options, tuple[object, ...], DtypeTree | None]:
    """The options, path and per-leaf dtypes of the child at ``step``."""
    below = None if dtypes is None else dtypes.child(step)
    if below is None:
        return options, (*path, step), None
    below.used = True
    return cast(Options, below.dtype or options), (*path, step), below if below.children else None


def _collate(
    leaves: list[Any], options: Options, path: tuple[object, ...], dtypes: DtypeTree | None
) -> Any:
    first = leaves[0]
    kind = _kind(first)
    # One type for every sample is the rule; only a mix needs the per-sample look.
    mixed = len({type(cast(object, leaf)) for leaf in leaves}) > 1
    for index, leaf in enumerate(leaves if mixed else ()):
        if _kind(leaf) != kind:
            raise InvalidInputError(
                f"collate: at {format_path(path)}, sample 0 holds a {type(first).__name__} "
                f"and sample {index} a {type(leaf).__name__}; every sample must have the "
                "same structure"
            )
    try:
        if kind == "array":
            return _stack_arrays(leaves, options, path)
        if kind == "tensor":
            return _stack_tensors(leaves, options, path)
        if kind == "number":
            array = sequence_to_array(leaves, "collate")
            return array_to_tensor(array, options, _NEW_MEMORY, True)
    except TensorBridgeError as error:
        if str(error).startswith("collate: at "):
            raise
        raise type(error)(f"collate: at {format_path(path)}: {error}") from error
    if kind == "string":
        return list(leaves)
    if kind == "mapping":
        keys = list(first.keys())
        for index, leaf in enumerate(leaves):
            if list(leaf.keys()) != keys and set(leaf.keys()) != set(keys):
                raise InvalidArgumentError(
                    f"collate: at {format_path(path)}, sample 0 has keys {sorted(map(str, keys))} "
                    f"and sample {index} has {sorted(map(str, leaf.keys()))}; every sample "
                    "needs the same keys (fill in missing ones, or collate them yourself)"
                )
        items = {
            key: _collate([leaf[key] for leaf in leaves], *_at(options, dtypes, path, key))
            for key in keys
        }
        return rebuild_mapping(first, items)
    if kind == "dataclass":
        batch = copy_module.copy(first)
        for field in dataclasses.fields(first):
            column = [getattr(leaf, field.name) for leaf in leaves]
            step = Field(field.name)
            object.__setattr__(
                batch, field.name, _collate(column, *_at(options, dtypes, path, step))
            )
        return batch
    if kind in ("namedtuple", "sequence"):
        length = len(first)
        for index, leaf in enumerate(leaves):
            if len(leaf) != length:
                raise InvalidArgumentError(
                    f"collate: at {format_path(path)}, sample 0 has {length} elements and "
                    f"sample {index} has {len(leaf)}; each must have the same length"
                )
        columns = [
            _collate([leaf[position] for leaf in leaves], *_at(options, dtypes, path, step))
            for position, step in enumerate(
                map(Field, first._fields) if kind == "namedtuple" else range(length)
            )
        ]
        if kind == "namedtuple":
            return type(first)(*columns)
        if isinstance(first, tuple):
            return columns  # as default_collate: tuples (torch.return_types too) become lists
        return rebuild_list(first, columns)  # list subclasses kept, range becomes a list
    raise InvalidInputError(
        f"collate: at {format_path(path)}, cannot batch {type(first).__name__} leaves; "
        "samples may hold arrays, tensors, numbers, strings, and mappings, sequences or "
        "dataclasses of them (as default_collate does)"
    )


def _kind(leaf: object) -> str:
    if isinstance(leaf, (str, bytes)):  # np.str_ and np.bytes_ too, as default_collate
        return "string"
    if isinstance(leaf, (np.ndarray, np.generic)):
        return "array"
    if isinstance(leaf, torch.Tensor):
        return "tensor"
    if isinstance(leaf, _NUMBERS):
        return "number"
    if isinstance(leaf, Mapping):
        return "mapping"
    # The cast: isinstance leaves the tuple's item type unknown to pyright.
    if isinstance(leaf, tuple) and hasattr(type(cast(object, leaf)), "_fields"):
        return "namedtuple"
    if isinstance(leaf, (list, tuple)):
        return "sequence"
    if dataclasses.is_dataclass(leaf) and not isinstance(leaf, type):
        return "dataclass"
    if isinstance(leaf, Sequence):  # range and other sequences, as default_collate
        return "sequence"
    return type(leaf).__name__


def _check_shapes(shapes: list[tuple[int, ...]], path: tuple[object, ...]) -> tuple[int, ...]:
    first = shapes[0]
    for index, shape in enumerate(shapes):
        if shape != first:
            raise InvalidArgumentError(
                f"collate: at {format_path(path)}, sample 0 has shape {first} and sample "
                f"{index} has shape {shape}; stacking needs equal shapes (resize or pad the "
                "samples, or collate this leaf yourself)"
            )
    return first


def _new_batch(shape: tuple[int, ...], dtype: DType, options: Options) -> torch.Tensor:
    """Uninitialised CPU memory for the batch: shared in a worker, pinned if asked."""
    assert dtype.torch is not None
    if get_worker_info() is not None:
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        # What default_collate does too: the batch crosses to the main process for free.
        storage = torch.UntypedStorage._new_shared(nbytes)  # type: ignore[no-untyped-call]
        strides = tuple(
            int(np.prod(shape[axis + 1 :], dtype=np.int64)) for axis in range(len(shape))
        )
        return torch.empty(0, dtype=dtype.torch).set_(storage, 0, shape, strides)
    if options.pin_memory:
        return torch.empty(shape, dtype=dtype.torch, pin_memory=True)
    if dtype.numpy is not None:
        # NumPy's allocator asks for huge pages for large blocks: faster first writes
        # (a float64 batch cast to float32 took half the time of torch.empty's here).
        return share_ndarray(np.empty(shape, dtype=dtype.numpy), dtype)
    return torch.empty(shape, dtype=dtype.torch)


def _stack_arrays(leaves: list[Any], options: Options, path: tuple[object, ...]) -> torch.Tensor:
    arrays: list[npt.NDArray[Any]] = [
        # The cast: isinstance leaves the masked array's type arguments unknown to pyright.
        unmask(cast("np.ma.MaskedArray[Any, np.dtype[Any]]", leaf))
        if isinstance(leaf, np.ma.MaskedArray)
        else np.asarray(leaf)
        for leaf in leaves
    ]
    shape = _check_shapes([array.shape for array in arrays], path)
    sources = {from_numpy_dtype(dtype) for dtype in {array.dtype for array in arrays}}
    source = next(iter(sources)) if len(sources) == 1 else _promote(arrays, sources, options)
    device = options.device
    moves_to = None if device is None or device.type == "cpu" else device
    plan = plan_for(source, options, "torch", CPU, moves_to)
    for each in sources - {source}:
        check_cast(each, plan.target, options.casting, options.policy)
    # Stacked straight into the dtype that crosses the bus (the result dtype when
    # the batch stays here): one pass over the samples, no per-sample tensors.
    carried = plan.bus if moves_to is not None else plan.target
    placed = None if moves_to is None else _place((len(arrays), *shape), carried, plan, options)
    batch = placed[0] if placed is not None else _new_batch((len(arrays), *shape), carried, options)
    if carried.numpy is not None:
        _stack_into(share_tensor(batch, carried), arrays)
    else:
        # complex32, or bfloat16/float8 without ml_dtypes: torch casts each sample.
        for slot, array in zip(batch, arrays, strict=True):
            slot.copy_(copy_to_tensor(array, from_numpy_dtype(array.dtype), carried))
    if moves_to is None:
        return batch
    if placed is not None:
        return placed[1]  # finished on the device when the whole batch is sent
    moved = host_to_device(batch, moves_to, non_blocking=options.non_blocking)
    return cast_tensor(moved, plan.target)


def _place(
    shape: tuple[int, ...], carried: DType, plan: Plan, options: Options
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """This leaf's slot in the batch's single transfer, if one is open and has room."""
    assert options.device is not None
    batch = open_batch(options.device)
    return None if batch is None else batch.place(shape, carried, plan.target)


def _stack_into(view: npt.NDArray[Any], arrays: list[npt.NDArray[Any]]) -> None:
    """Write each sample's values, converted as NumPy converts, into its row of ``view``.

    Samples of the batch's own dtype are copied by one ``torch.stack`` into the
    batch (torch's parallel copy, what ``default_collate`` runs, without its
    per-sample tensors). A large batch that casts is split across threads, one
    sample per task; a small one is one ``np.stack`` call.
    """
    target = view.dtype
    if target.isbuiltin == 1 and all(
        array.dtype == target  # so native byte order too
        and array.flags.writeable
        and torch_strides_ok(array)
        for array in arrays
    ):
        # torch's stubs leave from_numpy's parameter unannotated.
        torch.stack(
            [torch.from_numpy(array) for array in arrays],  # pyright: ignore[reportUnknownMemberType]
            out=torch.from_numpy(view),  # pyright: ignore[reportUnknownMemberType]
        )
        return
    if view.ndim > 1 and view.nbytes >= _parallel.PARALLEL_BYTES:
        _parallel.run(
            [
                functools.partial(cast_into, slot, array, parallel=False)
                for slot, array in zip(view, arrays, strict=True)
            ]
        )
        return
    if all(
        np.can_cast(dtype, target, "unsafe") and (dtype.kind != "c" or target.kind == "c")
        for dtype in {array.dtype for array in arrays}
    ):
        # cast_into's rules in one call: NumPy's values, without its warnings.
        with np.errstate(all="ignore"):
            np.stack(arrays, out=view, casting="unsafe")
        return
    # Complex into real, or ml_dtypes pairs without a direct cast: cast_into knows how.
    # (0-d samples get one-element rows: a row of a 1-d array is a NumPy scalar,
    # which copyto cannot write into.)
    for slot, array in zip(view if view.ndim > 1 else view[:, np.newaxis], arrays, strict=True):
        cast_into(slot, array)


def _promote(arrays: list[npt.NDArray[Any]], sources: set[DType], options: Options) -> DType:
    try:
        promoted = from_numpy_dtype(np.result_type(*arrays))
    except TypeError as error:
        raise InvalidArgumentError(
            f"the samples' dtypes {sorted({str(a.dtype) for a in arrays})} have no common "
            f"dtype ({error}); give every sample of this leaf one numeric dtype"
        ) from None
    _check_integer_promotion(sources, promoted, options)
    return promoted


def _check_integer_promotion(sources: set[DType], promoted: DType, options: Options) -> None:
    """Raise where integer samples would be batched as floats (int64 with uint64: contract 7)."""
    if (
        options.fixed is None
        and promoted.kind not in "biu"
        and all(each.kind in "biu" for each in sources)
    ):
        raise CastingError(
            f"the samples' dtypes {sorted(each.name for each in sources)} have no common "
            f"integer dtype (NumPy would batch them as {promoted.name}, which rounds "
            "integers above 2**53); give every sample of this leaf one integer dtype, or "
            "pass an explicit dtype= to cast every sample to it"
        )


def _promote_tensors(sources: set[DType], options: Options) -> DType:
    """torch's promotion (what torch.stack does), NumPy's where torch has none (uint64)."""
    dtypes = [each.torch for each in sources if each.torch is not None]
    try:
        promoted = from_torch_dtype(functools.reduce(torch.promote_types, dtypes))
    except RuntimeError:
        # torch promotes uint16/32/64 with no other dtype.
        if not all(each.numpy is not None for each in sources):
            raise InvalidArgumentError(
                f"the samples' dtypes {sorted(each.name for each in sources)} have no common "
                "dtype; give every sample of this leaf one dtype"
            ) from None
        promoted = from_numpy_dtype(np.result_type(*(each.numpy for each in sources)))
    _check_integer_promotion(sources, promoted, options)
    return promoted


def _dequantized(leaves: list[torch.Tensor], sources: set[DType], options: Options) -> list[Any]:
    """Quantized samples as floats, where an explicit floating dtype asks for that (contract 4)."""
    target = options.fixed
    names = sorted(each.name for each in sources)
    if target is None or target.kind not in "fc":
        raise UnsupportedDtypeError(
            f"the samples are quantized tensors ({', '.join(names)}), and a batch of them "
            "has no dtype the policy can keep; pass an explicit floating dtype "
            "(dtype=torch.float32) to dequantize them, or stack them yourself with torch.stack"
        )
    for each in sources:
        check_cast(each, target, options.casting, options.policy)
    return [leaf.dequantize() if leaf.is_quantized else leaf for leaf in leaves]


def _stack_with_graph(leaves: list[torch.Tensor], source: DType, options: Options) -> torch.Tensor:
    """Samples that require grad: ``torch.stack`` records the graph, then ``to_tensor``'s cast.

    Writing samples into the slots of a preallocated batch would cut the graph,
    so the batch is stacked as ``default_collate`` stacks it, and the dtype change
    goes through the same path as ``to_tensor`` of a tensor that requires grad.
    """
    assert source.torch is not None
    stacked = torch.stack([leaf.to(dtype=source.torch) for leaf in leaves])
    fresh = Options(
        options.dtype,
        options.policy,
        options.fixed,
        options.device,
        None,  # the stacked batch is new memory already: no second copy for copy=True
        options.casting,
        options.pin_memory,
        options.non_blocking,
    )
    return tensor_to_tensor(stacked, fresh)


def _stack_tensors(
    leaves: list[torch.Tensor], options: Options, path: tuple[object, ...]
) -> torch.Tensor:
    for leaf in leaves:
        check_tensor_has_data(leaf)
    layouts = {(leaf.shape, leaf.device, leaf.dtype) for leaf in leaves}  # one pass
    shape = tuple(leaves[0].shape)
    if len({each[0] for each in layouts}) > 1:
        _check_shapes([tuple(leaf.shape) for leaf in leaves], path)
    devices = {each[1] for each in layouts}
    if len(devices) > 1:
        raise InvalidArgumentError(
            f"the samples' tensors live on different devices {sorted(map(str, devices))}; "
            "move them to one device first (or pass device= to convert them together "
            "after moving)"
        )
    distinct = {from_torch_dtype(each[2]) for each in layouts}
    if any(each.kind == "q" for each in distinct):
        leaves = _dequantized(leaves, distinct, options)
        distinct = {from_torch_dtype(dtype) for dtype in {leaf.dtype for leaf in leaves}}
    source = next(iter(distinct)) if len(distinct) == 1 else _promote_tensors(distinct, options)
    here = leaves[0].device
    there = options.device or here
    moves_to = None if same_device(here, there) else there
    plan = plan_for(source, options, "torch", here, moves_to)
    target = plan.target
    for each in distinct - {source}:
        check_cast(each, target, options.casting, options.policy)
    assert target.torch is not None
    if torch.is_grad_enabled() and any(leaf.requires_grad for leaf in leaves):
        return _stack_with_graph(leaves, source, options)
    carried = plan.bus if moves_to is not None else target
    placed: tuple[torch.Tensor, torch.Tensor] | None = None
    if here.type != "cpu":
        # On a device: stack there (one kernel), then cast with NumPy's values.
        stacked = torch.stack([leaf.to(dtype=source.torch) for leaf in leaves])
        batch = cast_device_tensor(stacked, carried)
    else:
        placed = None if moves_to is None else _place((len(leaves), *shape), carried, plan, options)
        batch = (
            placed[0] if placed is not None else _new_batch((len(leaves), *shape), carried, options)
        )
        if distinct == {carried}:
            torch.stack(leaves, 0, out=batch)  # no dtype change: a copy, as default_collate's
        elif carried.numpy is not None and all(each.numpy is not None for each in distinct):
            # NumPy casts, as for array leaves: NumPy's values, no torch warnings.
            arrays = [
                share_tensor(leaf.resolve_conj().resolve_neg(), from_torch_dtype(leaf.dtype))
                for leaf in leaves
            ]
            _stack_into(share_tensor(batch, carried), arrays)
        else:
            for slot, leaf in zip(batch, leaves, strict=True):
                real = leaf.is_complex() and carried.kind != "c"
                slot.copy_(leaf.real if real else leaf)  # .real: no complex-to-real warning
    if moves_to is None:
        return batch
    if here.type == "cpu":
        if placed is not None:
            return placed[1]  # finished on the device when the whole batch is sent
        moved = host_to_device(batch, moves_to, non_blocking=options.non_blocking)
        return cast_tensor(moved, target)
    if moves_to.type == "cpu":
        return cast_cpu_tensor(device_to_host(batch), carried, target)
    return cast_device_tensor(batch.to(moves_to), target)
