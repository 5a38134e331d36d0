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
from ._convert import (
    Options,
    array_to_tensor,
    check_tensor_has_data,
    copy_to_tensor,
    no_torch_dtype,
    sequence_to_array,
    share_ndarray,
    share_tensor,
    tensor_options,
    unmask,
)
from ._device import host_to_device, move
from ._dtypes import (
    FLOAT32,
    Casting,
    DType,
    DTypeLike,
    DtypePolicy,
    cast_into,
    cast_tensor,
    check_cast,
    from_numpy_dtype,
    from_torch_dtype,
    widens_exactly,
)
from ._errors import InvalidArgumentError, InvalidInputError, ShareError, TensorBridgeError
from ._tree import format_path, rebuild_mapping

__all__ = ["collate"]

_NUMBERS: Final = (bool, int, float, complex)
_NEW_MEMORY: Final = "collate stacks samples into new memory, so the batch never shares"


def collate(
    samples: Sequence[Any],
    /,
    *,
    dtype: DTypeLike | DtypePolicy = FLOAT32,
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
    options = tensor_options(dtype, device, copy, casting, pin_memory, non_blocking)
    if options.copy is False:
        raise ShareError(f"cannot share memory: {_NEW_MEMORY}; pass copy=None")
    # The cast: the annotation says Sequence, but callers without a type checker
    # may pass anything, so the check stays.
    if isinstance(samples, (str, bytes)) or not isinstance(cast(object, samples), Sequence):
        raise InvalidInputError(
            f"collate takes a list of samples, and received a {type(samples).__name__}"
        )
    if len(samples) == 0:
        raise InvalidArgumentError("collate received no samples; a batch needs at least one")
    return _collate(list(samples), options, ())


def _collate(leaves: list[Any], options: Options, path: tuple[object, ...]) -> Any:
    first = leaves[0]
    kind = _kind(first)
    for index, leaf in enumerate(leaves):
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
            key: _collate([leaf[key] for leaf in leaves], options, (*path, key)) for key in keys
        }
        return rebuild_mapping(first, items)
    if kind == "dataclass":
        batch = copy_module.copy(first)
        for field in dataclasses.fields(first):
            column = [getattr(leaf, field.name) for leaf in leaves]
            object.__setattr__(batch, field.name, _collate(column, options, (*path, field.name)))
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
            _collate([leaf[position] for leaf in leaves], options, (*path, position))
            for position in range(length)
        ]
        return type(first)(*columns) if kind == "namedtuple" else columns
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
        # NumPy's allocator asks for huge pages for large blocks: faster first writes.
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
    sources = {from_numpy_dtype(array.dtype) for array in arrays}
    source = sources.pop() if len(sources) == 1 else _promote(arrays)
    target = options.result_dtype(source)
    if target.torch is None:
        raise no_torch_dtype(target, source, options.dtype)
    for each in {from_numpy_dtype(array.dtype) for array in arrays}:
        check_cast(each, target, options.casting, options.policy)
    on_device = options.device is not None and options.device.type != "cpu"
    carried = source if on_device and widens_exactly(source, target) else target
    batch = _new_batch((len(arrays), *shape), carried, options)
    if carried.numpy is not None:
        view = share_tensor(batch, carried)
        if not shape:
            cast_into(view, np.asarray(arrays))  # scalars: one call, not one per sample
        elif view.nbytes >= _parallel.PARALLEL_BYTES:
            _parallel.run(
                [
                    functools.partial(cast_into, slot, array, parallel=False)
                    for slot, array in zip(view, arrays, strict=True)
                ]
            )
        else:
            for slot, array in zip(view, arrays, strict=True):
                cast_into(slot, array)
    else:
        # complex32, or bfloat16/float8 without ml_dtypes: torch casts each sample.
        for slot, array in zip(batch, arrays, strict=True):
            slot.copy_(copy_to_tensor(array, from_numpy_dtype(array.dtype), carried))
    if not on_device:
        return batch
    assert options.device is not None
    moved = host_to_device(batch, options.device, non_blocking=options.non_blocking, ours=True)
    return cast_tensor(moved, target)


def _promote(arrays: list[npt.NDArray[Any]]) -> DType:
    try:
        return from_numpy_dtype(np.result_type(*arrays))
    except TypeError as error:
        raise InvalidArgumentError(
            f"the samples' dtypes {sorted({str(a.dtype) for a in arrays})} have no common "
            f"dtype ({error}); give every sample of this leaf one numeric dtype"
        ) from None


def _stack_tensors(
    leaves: list[torch.Tensor], options: Options, path: tuple[object, ...]
) -> torch.Tensor:
    for leaf in leaves:
        check_tensor_has_data(leaf)
    shape = _check_shapes([tuple(leaf.shape) for leaf in leaves], path)
    devices = {leaf.device for leaf in leaves}
    if len(devices) > 1:
        raise InvalidArgumentError(
            f"the samples' tensors live on different devices {sorted(map(str, devices))}; "
            "move them to one device first (or pass device= to convert them together "
            "after moving)"
        )
    promoted = leaves[0].dtype
    for leaf in leaves[1:]:
        promoted = torch.promote_types(promoted, leaf.dtype)
    source = from_torch_dtype(promoted)
    target = options.result_dtype(source)
    for each in {from_torch_dtype(leaf.dtype) for leaf in leaves}:
        if each is not target:
            check_cast(each, target, options.casting, options.policy)
    assert target.torch is not None
    here = leaves[0].device
    there = options.device or here
    carried = source if here != there and widens_exactly(source, target) else target
    if here.type == "cpu":
        batch = _new_batch((len(leaves), *shape), carried, options)
    else:
        batch = torch.empty((len(leaves), *shape), dtype=carried.torch, device=here)
    sources = [from_torch_dtype(leaf.dtype) for leaf in leaves]
    if (
        here.type == "cpu"
        and carried.numpy is not None
        and all(each.numpy is not None for each in sources)
        and not any(leaf.requires_grad for leaf in leaves)
    ):
        # NumPy casts, as for array leaves: NumPy's values, no torch warnings.
        view = share_tensor(batch, carried)
        for slot, leaf, each in zip(view, leaves, sources, strict=True):
            cast_into(slot, share_tensor(leaf.resolve_conj().resolve_neg(), each))
    else:
        for slot, leaf in zip(batch, leaves, strict=True):
            real = leaf.is_complex() and carried.kind != "c"
            slot.copy_(leaf.real if real else leaf)  # .real: no complex-to-real warning
    if here == there:
        return batch
    if here.type == "cpu":
        moved = host_to_device(batch, there, non_blocking=options.non_blocking, ours=True)
        return cast_tensor(moved, target)
    return move(batch, carried, target, there)
