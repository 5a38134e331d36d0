"""Nested batches: ``tree_to_tensor`` and ``tree_to_numpy``.

One walker serves both directions. Options are checked once per call, not per
leaf; each leaf then goes straight to the conversion core, with the common
leaf (an ndarray or tensor that can be shared) handled in a few lines.
"""

from __future__ import annotations

import copy as copy_module
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt
import torch

from ._convert import (
    FLOAT32_KEEPS_NUMPY,
    Options,
    array_to_numpy,
    array_to_tensor,
    convert_to_numpy,
    convert_to_tensor,
    numpy_options,
    tensor_options,
    tensor_to_numpy,
    tensor_to_tensor,
)
from ._dtypes import FLOAT32, Casting, DTypeLike, DtypePolicy
from ._errors import TensorBridgeError

__all__ = ["format_path", "rebuild_mapping", "tree_to_numpy", "tree_to_tensor", "walk_tree"]

_K = TypeVar("_K")

# The parameter is Any, not object: walk hands a leaf its node as isinstance
# narrowed it (an ndarray or NumPy scalar whose type arguments pyright leaves
# unknown).
Leaf = Callable[[Any], object]
_SCALAR_REASON: Final = (
    "a NumPy scalar has no memory to share; its value always goes into new memory"
)


def format_path(path: tuple[object, ...]) -> str:
    """``("image", 2)`` -> ``batch["image"][2]``; dataclass fields read ``.name``."""
    parts = ["batch"]
    for step in path:
        if isinstance(step, _Field):
            parts.append(f".{step.name}")
        elif isinstance(step, str):
            parts.append(f'["{step}"]')
        else:
            parts.append(f"[{step!r}]")
    return "".join(parts)


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    """A path step through an attribute (dataclass field or namedtuple field)."""

    name: str


def rebuild_mapping(original: Mapping[Any, Any], items: dict[Any, Any]) -> Mapping[Any, Any]:
    """A mapping of ``original``'s type holding ``items``; a dict where that type can't be built."""
    kind = type(original)
    if kind is dict:
        return items
    if isinstance(original, defaultdict):
        return defaultdict(original.default_factory, items)
    try:
        return kind(items)  # type: ignore[call-arg]
    except TypeError:
        return items


class _LeafFailure(Exception):
    """Carries a leaf's TensorBridgeError up the tree, collecting the path on the way."""

    def __init__(self, error: TensorBridgeError) -> None:
        super().__init__(error)
        self.error = error
        self.reversed_path: list[object] = []


# Leaves returned untouched, by exact type: most batches are mostly these, and
# an exact-type test is far cheaper than the isinstance chain below.
_PLAIN: Final = frozenset({str, bytes, int, float, bool, complex, type(None)})


def _list_or_tuple(value: object) -> bool:
    """A list or tuple, or a subclass of one other than a namedtuple."""
    return not hasattr(type(value), "_fields") and isinstance(value, (list, tuple))


def walk(tree: object, leaf: Leaf) -> object:
    """``tree`` with ``leaf`` applied to every array leaf and the structure rebuilt.

    Raises:
        _LeafFailure: a leaf raised; the caller turns it back into the leaf's
            error class with the path in front (see ``walk_tree``).
    """
    kind = type(tree)
    if kind in _PLAIN:
        return tree
    if kind is np.ndarray or (
        isinstance(tree, (np.ndarray, torch.Tensor, np.generic))
        and not isinstance(tree, (str, bytes))  # np.str_ and np.bytes_ are strings
    ):
        try:
            return leaf(tree)
        except TensorBridgeError as error:
            raise _LeafFailure(error) from error
    step: object = None
    try:
        # The casts: ``kind is dict`` does not narrow ``tree``, and isinstance leaves
        # a container's item types unknown to pyright.
        if kind is dict or isinstance(tree, Mapping):
            items: dict[object, object] = {}
            for step, value in cast("Mapping[object, object]", tree).items():
                items[step] = walk(value, leaf)
            return items if kind is dict else rebuild_mapping(tree, items)  # type: ignore[arg-type]
        if _list_or_tuple(tree):
            # Lists and tuples; subclasses other than namedtuples come back as the base type.
            converted: list[object] = []
            for step, value in enumerate(cast("list[object] | tuple[object, ...]", tree)):  # noqa: B007 (step: read by the except clause)
                converted.append(walk(value, leaf))
            return converted if isinstance(tree, list) else tuple(converted)
        if isinstance(tree, tuple):  # a namedtuple
            named: Any = kind
            fields: list[object] = []
            for name, value in zip(named._fields, cast("tuple[object, ...]", tree), strict=True):
                step = _Field(name)
                fields.append(walk(value, leaf))
            return named(*fields)
        if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
            rebuilt = copy_module.copy(tree)
            for field in dataclasses.fields(tree):
                step = _Field(field.name)
                # object.__setattr__ also works on frozen dataclasses.
                object.__setattr__(rebuilt, field.name, walk(getattr(tree, field.name), leaf))
            return rebuilt
    except _LeafFailure as failure:
        failure.reversed_path.append(step)
        raise
    return tree


def walk_tree(tree: object, leaf: Leaf) -> object:
    """``walk``, with a leaf's error re-raised as its own class, its path in front."""
    try:
        return walk(tree, leaf)
    except _LeafFailure as failure:
        error = failure.error
        path = format_path(tuple(reversed(failure.reversed_path)))
        raise type(error)(f"{path}: {error}") from error


def _tensor_leaf(options: Options) -> Leaf:
    # The common leaf under the default options: an ndarray the policy keeps and
    # torch can wrap as it is (the same test as to_tensor's own fast path).
    fast = (
        options.policy is FLOAT32
        and options.device is None
        and options.copy is not True
        and not options.pin_memory
    )
    scalars_fast = fast and options.copy is None  # copy=False must raise for scalars

    def convert(value: object) -> object:
        if type(value) is np.ndarray:
            if fast and value.dtype in FLOAT32_KEEPS_NUMPY and value.flags.writeable:
                try:
                    # torch's stubs leave from_numpy's parameter unannotated.
                    return torch.from_numpy(value)  # pyright: ignore[reportUnknownMemberType]
                except ValueError:
                    pass
            return array_to_tensor(value, options, None, False)
        if isinstance(value, torch.Tensor):
            return tensor_to_tensor(value, options)
        # The casts to object (here and in _numpy_leaf): isinstance leaves the type
        # arguments of ndarray and np.generic unknown to pyright.
        if isinstance(value, np.ndarray):  # subclasses: the core's checks apply
            return convert_to_tensor(cast(object, value), options)
        assert isinstance(value, np.generic)
        scalar = np.asarray(cast(object, value))  # a fresh 0-d array
        if scalars_fast and scalar.dtype in FLOAT32_KEEPS_NUMPY:
            return torch.from_numpy(scalar)  # pyright: ignore[reportUnknownMemberType]
        return array_to_tensor(scalar, options, _SCALAR_REASON, True)

    return convert


def _numpy_leaf(options: Options) -> Leaf:
    def convert(value: object) -> object:
        if isinstance(value, torch.Tensor):
            return tensor_to_numpy(value, options)
        if type(value) is np.ndarray:
            return array_to_numpy(value, options, None, False)
        if isinstance(value, np.ndarray):
            return convert_to_numpy(cast(object, value), options)
        assert isinstance(value, np.generic)
        return array_to_numpy(np.asarray(cast(object, value)), options, _SCALAR_REASON, True)

    return convert


@overload
def tree_to_tensor(
    tree: npt.NDArray[Any] | torch.Tensor | np.generic,
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    device: str | torch.device | int | None = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    non_blocking: bool = ...,
) -> torch.Tensor: ...
@overload
def tree_to_tensor(
    tree: dict[_K, npt.NDArray[Any]] | dict[_K, torch.Tensor],
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    device: str | torch.device | int | None = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    non_blocking: bool = ...,
) -> dict[_K, torch.Tensor]: ...
@overload
def tree_to_tensor(
    tree: list[npt.NDArray[Any]] | list[torch.Tensor],
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    device: str | torch.device | int | None = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    non_blocking: bool = ...,
) -> list[torch.Tensor]: ...
@overload
def tree_to_tensor(
    tree: tuple[npt.NDArray[Any], ...] | tuple[torch.Tensor, ...],
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    device: str | torch.device | int | None = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    non_blocking: bool = ...,
) -> tuple[torch.Tensor, ...]: ...
@overload
def tree_to_tensor(
    tree: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    device: str | torch.device | int | None = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    non_blocking: bool = ...,
) -> Any: ...
def tree_to_tensor(
    tree: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy = FLOAT32,
    device: str | torch.device | int | None = None,
    copy: bool | None = None,
    casting: Casting = "same_kind",
    pin_memory: bool = False,
    non_blocking: bool = False,
) -> Any:
    """Convert every array leaf of a nested batch with ``to_tensor``, keeping the structure.

    Dicts and other mappings (their type kept where it can be rebuilt, else a
    dict), lists, tuples, namedtuples and dataclass instances (frozen ones too)
    are walked; ndarrays, NumPy scalars and tensors are converted with the same
    options as ``to_tensor``; every other leaf (str, bytes, None, Python
    numbers, other objects) is returned untouched.

    Args:
        tree: the nested batch.
        dtype: a policy or dtype, as for ``to_tensor``, applied to every leaf.
        device: where every converted leaf goes, as for ``to_tensor``.
        copy: None, True or False, as for ``to_tensor``, per leaf.
        casting: NumPy's casting rule, checked for every leaf's dtype change.
        pin_memory: as for ``to_tensor``.
        non_blocking: as for ``to_tensor``.

    Returns:
        A new structure of the same shape (leaves that are not arrays are the
        same objects).

    Raises:
        TensorBridgeError: the subclass the leaf raised, its message starting
            with the leaf's path, for example ``batch["image"][2]: ...``.

    >>> import numpy as np, tensorbridge as tb
    >>> batch = {"image": np.zeros((2, 2)), "label": np.int64(3), "name": "cat"}
    >>> out = tb.tree_to_tensor(batch)
    >>> out["image"].dtype, out["label"], out["name"]
    (torch.float32, tensor(3), 'cat')
    """
    options = tensor_options(dtype, device, copy, casting, pin_memory, non_blocking)
    return walk_tree(tree, _tensor_leaf(options))


@overload
def tree_to_numpy(
    tree: npt.NDArray[Any] | torch.Tensor | np.generic,
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> npt.NDArray[Any]: ...
@overload
def tree_to_numpy(
    tree: dict[_K, npt.NDArray[Any]] | dict[_K, torch.Tensor],
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> dict[_K, npt.NDArray[Any]]: ...
@overload
def tree_to_numpy(
    tree: list[npt.NDArray[Any]] | list[torch.Tensor],
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> list[npt.NDArray[Any]]: ...
@overload
def tree_to_numpy(
    tree: tuple[npt.NDArray[Any], ...] | tuple[torch.Tensor, ...],
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> tuple[npt.NDArray[Any], ...]: ...
@overload
def tree_to_numpy(
    tree: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> Any: ...
def tree_to_numpy(
    tree: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy = FLOAT32,
    copy: bool | None = None,
    casting: Casting = "same_kind",
) -> Any:
    """Convert every array leaf of a nested batch with ``to_numpy``, keeping the structure.

    The same walk as ``tree_to_tensor``: tensors (on any device; GPU values are
    final when this returns), ndarrays and NumPy scalars are converted, every
    other leaf is returned untouched.

    Args:
        tree: the nested batch.
        dtype: a policy or dtype, as for ``to_numpy``, applied to every leaf.
        copy: None, True or False, as for ``to_numpy``, per leaf.
        casting: NumPy's casting rule, checked for every leaf's dtype change.

    Returns:
        A new structure of the same shape.

    Raises:
        TensorBridgeError: the subclass the leaf raised, its message starting
            with the leaf's path, for example ``batch["logits"]: ...``.

    >>> import torch, tensorbridge as tb
    >>> out = tb.tree_to_numpy({"logits": torch.zeros(2, dtype=torch.float64), "step": 7})
    >>> out["logits"].dtype, out["step"]
    (dtype('float32'), 7)
    """
    options = numpy_options(dtype, copy, casting)
    return walk_tree(tree, _numpy_leaf(options))
