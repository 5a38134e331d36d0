"""Nested batches: the one container protocol, and ``tree_to_tensor`` / ``tree_to_numpy``.

What a container is, how its children are reached (with the path step each
one adds) and how it is rebuilt with new children is said once, here, and
read by the tree functions, ``collate`` and ``prefetch``: mappings (their type
kept where it can be rebuilt), lists, tuples, namedtuples, other sequences and
dataclass instances. Everything else is a leaf.

Options are checked once per call, not per leaf; each array leaf then goes
straight to the conversion core, where its plan is one lookup.
"""

from __future__ import annotations

import copy as copy_module
import dataclasses
import functools
import sys
from collections import UserDict, UserList
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt
import torch

from ._convert import to_numpy, to_tensor
from ._dtypes import FLOAT32, Casting, DTypeLike, DtypePolicy
from ._errors import InvalidArgumentError, InvalidInputError, TensorBridgeError, short_repr
from ._paths import Field, LeafDtypes, LeafOptions, format_path
from ._plan import Options
from ._transfer import batch_transfer

__all__ = [
    "Leaf",
    "check_used",
    "children",
    "format_path",
    "leaf_options",
    "rebuild",
    "recursion_error",
    "tree_to_numpy",
    "tree_to_tensor",
]

KeyT = TypeVar("KeyT")

#: A leaf conversion; its parameter is Any because the walk hands it an ndarray,
#: a NumPy scalar or a tensor as isinstance narrowed it.
Leaf = Callable[[Any], object]

# --------------------------------------------------------------------------- #
# The container protocol
# --------------------------------------------------------------------------- #

#: Values that are never walked into, though some are sequences.
_ATOMS: Final = (str, bytes, bytearray, memoryview, np.ndarray, np.generic, torch.Tensor)


def children(node: object) -> list[tuple[object, object]] | None:
    """The (path step, child) pairs of a container, in order; None for a leaf.

    A dataclass field declared with ``init=False`` and never set has no child.
    """
    kind = type(node)
    if kind is dict or (isinstance(node, Mapping) and not isinstance(node, _ATOMS)):
        return list(cast("Mapping[object, object]", node).items())
    if kind is list or kind is tuple:
        return list(enumerate(cast("Sequence[object]", node)))
    if isinstance(node, _ATOMS):
        return None
    fields: tuple[str, ...] | None = getattr(kind, "_fields", None)
    if fields is not None and isinstance(node, tuple):  # a namedtuple
        return list(zip(map(Field, fields), cast("tuple[object, ...]", node), strict=True))
    if isinstance(node, Sequence):  # list and tuple subclasses, range, UserList...
        return list(enumerate(cast("Sequence[object]", node)))
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        missing = object()
        return [
            (Field(field.name), value)
            for field in dataclasses.fields(node)
            if (value := getattr(node, field.name, missing)) is not missing
        ]
    return None


def rebuild(node: object, values: list[object], *, tuples_as_lists: bool = False) -> object:
    """A container like ``node`` holding ``values`` (in the order of ``children(node)``).

    Mappings keep their type where it can be rebuilt (a dict otherwise): a dict
    subclass or ``UserDict`` is copied (keeping a ``defaultdict``'s factory and
    a subclass's attributes) and refilled, so a ``Counter`` keeps its counts
    rather than adding them; other mappings are ``type(node)(items)``. Lists and
    their subclasses likewise; tuples, namedtuples and tuple subclasses
    (``torch.Size``, ``torch.return_types``) are rebuilt from the values, or
    become lists with ``tuples_as_lists`` (as ``default_collate`` makes them);
    other sequences (``range``...) become ``type(node)(values)`` or a list. A
    dataclass is copied with its fields replaced and its
    ``functools.cached_property`` values dropped (they recompute from the new
    fields); a field that was never set stays unset.
    """
    kind = type(node)
    if kind is dict:
        return dict(zip(cast("dict[object, object]", node), values, strict=True))
    if kind is list:
        return values
    if isinstance(node, Mapping):
        return _rebuild_mapping(cast("Mapping[object, object]", node), values)
    if isinstance(node, tuple):
        return _rebuild_tuple(cast("tuple[object, ...]", node), values, tuples_as_lists)
    if isinstance(node, Sequence):
        return _rebuild_sequence(cast("Sequence[object]", node), values)
    return _rebuild_dataclass(node, values)


def _rebuild_mapping(node: Mapping[object, object], values: list[object]) -> object:
    items = dict(zip(node, values, strict=True))
    try:
        if isinstance(node, dict):
            refill: dict[Any, Any] = copy_module.copy(node)
            refill.clear()
            for key, value in items.items():  # not update(): a Counter's adds to the counts
                refill[key] = value
            return refill
        if isinstance(node, UserDict):
            user: UserDict[Any, Any] = copy_module.copy(node)
            user.data = items
            return user
        kind: Any = type(node)
        return cast(object, kind(items))
    except TypeError:
        return items


def _rebuild_tuple(node: tuple[object, ...], values: list[object], as_lists: bool) -> object:
    kind = type(node)
    if kind is tuple:
        return values if as_lists else tuple(values)
    if hasattr(kind, "_fields"):
        named: Any = kind
        return cast(object, named(*values))  # a namedtuple
    if as_lists:
        return values  # torch.return_types and other tuple subclasses too, as default_collate
    try:
        return kind(values)
    except TypeError:
        return tuple(values)


def _rebuild_sequence(node: Sequence[object], values: list[object]) -> object:
    try:
        if isinstance(node, (list, UserList)):
            clone: Any = copy_module.copy(node)
            for position, value in enumerate(values):
                clone[position] = value
            return cast(object, clone)
        kind: Any = type(node)
        return cast(object, kind(values))
    except TypeError:
        return values


def _rebuild_dataclass(node: object, values: list[object]) -> object:
    clone = copy_module.copy(node)
    state: dict[str, object] | None = getattr(clone, "__dict__", None)
    if state is not None:
        for name in [name for name in state if _is_cached_property(type(node), name)]:
            del state[name]
    names = [cast(Field, step).name for step, _ in children(node) or ()]
    for name, value in zip(names, values, strict=True):
        object.__setattr__(clone, name, value)  # frozen dataclasses too
    return clone


def _is_cached_property(kind: type, name: str) -> bool:
    return isinstance(getattr(kind, name, None), functools.cached_property)


# --------------------------------------------------------------------------- #
# Walking a tree
# --------------------------------------------------------------------------- #


class _LeafFailure(Exception):
    """Carries a leaf's TensorBridgeError up the tree, collecting the path on the way."""

    def __init__(self, error: TensorBridgeError) -> None:
        super().__init__(error)
        self.error = error
        self.reversed_path: list[object] = []


_ndarray: Final = np.ndarray
_Tensor: Final = torch.Tensor
# Leaves returned untouched, by exact type: most batches are mostly these.
_PLAIN: Final = frozenset({str, bytes, int, float, bool, complex, type(None)})


def _is_array_leaf(node: object) -> bool:
    return isinstance(node, (np.ndarray, torch.Tensor, np.generic)) and not isinstance(
        node,
        (str, bytes),  # np.str_ and np.bytes_ are strings
    )


def walk(
    node: object, leaf: Leaf, dtypes: LeafOptions | None, per_leaf: Callable[[Options], Leaf]
) -> object:
    """``node`` with ``leaf`` applied to every array leaf and the structure rebuilt.

    ``dtypes``, when given, holds per-leaf options: the subtree under a key
    converts with ``per_leaf(options)`` of that key.

    Raises:
        _LeafFailure: a leaf raised; ``walk_tree`` turns it back into the leaf's
            error class with the path in front.
    """
    kind = type(node)
    if kind in _PLAIN:
        return node
    if kind is dict and dtypes is None:  # the common batch, without a call per plain value
        return _walk_dict(cast("dict[object, object]", node), leaf, per_leaf)
    if kind is _ndarray or kind is _Tensor or _is_array_leaf(node):
        try:
            return leaf(node)
        except TensorBridgeError as error:
            raise _LeafFailure(error) from error
    entries = children(node)
    if entries is None:
        return node
    values: list[object] = []
    step: object = None
    try:
        for step, child in entries:
            below = None if dtypes is None else dtypes.child(step)
            if below is None:
                values.append(walk(child, leaf, None, per_leaf))
                continue
            below.used = True
            here = leaf if below.options is None else per_leaf(below.options)
            values.append(walk(child, here, below if below.children else None, per_leaf))
    except _LeafFailure as failure:
        failure.reversed_path.append(step)
        raise
    return rebuild(node, values)


def _walk_dict(
    node: dict[object, object], leaf: Leaf, per_leaf: Callable[[Options], Leaf]
) -> dict[object, object]:
    items: dict[object, object] = {}
    key: object = None
    try:
        for key, value in node.items():
            kind = type(value)
            if kind in _PLAIN:
                items[key] = value
            elif kind is _ndarray or kind is _Tensor:
                try:
                    items[key] = leaf(value)
                except TensorBridgeError as error:
                    raise _LeafFailure(error) from error
            else:
                items[key] = walk(value, leaf, None, per_leaf)
    except _LeafFailure as failure:
        failure.reversed_path.append(key)
        raise
    return items


def walk_tree(
    tree: object, leaf: Leaf, dtypes: LeafOptions | None, per_leaf: Callable[[Options], Leaf]
) -> object:
    """``walk``, with a leaf's error re-raised as its own class, its path in front."""
    try:
        return walk(tree, leaf, dtypes, per_leaf)
    except _LeafFailure as failure:
        error = failure.error
        if isinstance(error.__context__, RecursionError):
            # The stack ran out inside a leaf's conversion, which reports it as bad
            # input; it is the walk's depth (a cycle, or deep nesting) that did it.
            raise recursion_error([("", tree)]) from None
        path = format_path(tuple(reversed(failure.reversed_path)))
        raise type(error)(f"{path}: {error}") from error
    except RecursionError:
        # A cycle, or nesting deeper than the interpreter's stack: found out here,
        # after the fact, so that the walk itself keeps no record of where it has been.
        raise recursion_error([("", tree)]) from None


def recursion_error(trees: Sequence[tuple[str, object]]) -> InvalidInputError:
    """The error for trees whose walk ran out of Python's recursion depth.

    Called only after a ``RecursionError``, so the walk pays nothing for it.
    ``trees`` are (message prefix, tree) pairs. Each is searched, without
    recursion and in time linear in its size, for a container that holds
    itself (a cycle), and the message names both paths; without a cycle, the
    trees are nested too deeply for a recursive walk, and it says how deep.
    """
    deepest = 0
    for prefix, tree in trees:
        cycle, depth = _search(tree)
        if cycle is not None:
            return InvalidInputError(
                f"{prefix}{cycle}: the tree contains itself (a cycle), so walking it would "
                "never end; break the cycle, or convert the leaves yourself"
            )
        deepest = max(deepest, depth)
    return InvalidInputError(
        f"{trees[0][0]}the tree is nested {deepest} levels deep, deeper than Python's "
        f"recursion limit ({sys.getrecursionlimit()}) lets tensorbridge walk; flatten it, "
        "or convert its leaves yourself"
    )


def _search(tree: object) -> tuple[str | None, int]:
    """A depth-first search with an explicit stack: (the cycle, if any, in words; the depth)."""
    path: list[object] = []
    on_path: dict[int, int] = {id(tree): 0}  # container id -> its depth on the current path
    stack: list[tuple[int, Iterator[tuple[object, object]]]] = [
        (id(tree), iter(children(tree) or ()))
    ]
    depth = 0
    while stack:
        entry = next(stack[-1][1], None)
        if entry is None:
            del on_path[stack.pop()[0]]
            if path:
                path.pop()
            continue
        step, child = entry
        grandchildren = children(child)
        if grandchildren is None:
            continue
        where = on_path.get(id(child))
        if where is not None:
            return f"{_short_path([*path, step])} is {_short_path(path[:where])} itself", depth
        path.append(step)
        on_path[id(child)] = len(path)
        stack.append((id(child), iter(grandchildren)))
        depth = max(depth, len(path))
    return None, depth


def _short_path(path: list[object]) -> str:
    if len(path) <= 12:
        return format_path(tuple(path))
    return f"{format_path(tuple(path[:12]))}... ({len(path)} levels)"


# --------------------------------------------------------------------------- #
# Per-leaf dtypes
# --------------------------------------------------------------------------- #


def leaf_options(
    dtype: object, make: Callable[[object], Options]
) -> tuple[Options, LeafOptions | None]:
    """The options of ``dtype``, and of each per-leaf dtype when it is a mapping."""
    if not _per_leaf(dtype):
        return make(dtype), None
    default = make(FLOAT32)
    return default, LeafOptions.build(default, cast("Mapping[object, object]", dtype), make)


# Dtype arguments that are never per-leaf mappings, tested first: an isinstance test
# against the Mapping ABC costs more than the rest of a small tree's conversion.
_NOT_MAPPINGS: Final = (DtypePolicy, str, torch.dtype, np.dtype, type)


def _per_leaf(dtype: object) -> bool:
    return not isinstance(dtype, _NOT_MAPPINGS) and isinstance(dtype, Mapping)


def check_used(dtypes: LeafOptions | None, function: str, tree: object) -> None:
    """Raise for per-leaf dtype keys that named no part of the batch (a typo, usually)."""
    if dtypes is None:
        return
    unused = dtypes.unused()
    if unused:
        entries = children(tree)
        keys = [step for step, _ in entries] if entries is not None else []
        listed = ", ".join(short_repr(key, 30) for key in keys[:12])
        more = " ..." if len(keys) > 12 else ""
        raise InvalidArgumentError(
            f"{function}: the per-leaf dtype key(s) {', '.join(map(repr, unused))} match no "
            f"leaf of the batch, whose top-level keys are {listed or 'none'}{more}; check the "
            "spelling (keys are top-level keys of the batch, or paths as errors print them, "
            """such as '["meta"]["depth"]')"""
        )


# --------------------------------------------------------------------------- #
# Leaves
# --------------------------------------------------------------------------- #


def tensor_leaf(options: Options) -> Leaf:
    """The leaf conversion of ``tree_to_tensor``: ``to_tensor`` with the tree's options."""
    dtype, device, copy, casting = options.dtype, options.device, options.copy, options.casting
    pin_memory, non_blocking = options.pin_memory, options.non_blocking

    def convert(value: object) -> object:
        return to_tensor(
            value,
            dtype=cast(Any, dtype),
            device=device,
            copy=copy,
            casting=cast(Any, casting),
            pin_memory=pin_memory,
            non_blocking=non_blocking,
        )

    return convert


def numpy_leaf(options: Options) -> Leaf:
    """The leaf conversion of ``tree_to_numpy``: ``to_numpy`` with the tree's options."""
    dtype, copy, casting = options.dtype, options.copy, options.casting

    def convert(value: object) -> object:
        return to_numpy(value, dtype=cast(Any, dtype), copy=copy, casting=cast(Any, casting))

    return convert


def convert_tree(
    tree: object,
    dtype: object,
    make: Callable[[object], Options],
    per_leaf: Callable[[Options], Leaf],
    function: str,
) -> object:
    """Every array leaf of ``tree`` converted by ``per_leaf`` of its options."""
    options, dtypes = leaf_options(dtype, make)
    device = options.device
    if device is None or device.type != "cuda":
        result = walk_tree(tree, per_leaf(options), dtypes, per_leaf)
    else:
        # Every host leaf going to a GPU crosses the bus in one copy with the others.
        with batch_transfer(device, options.non_blocking):
            result = walk_tree(tree, per_leaf(options), dtypes, per_leaf)
    check_used(dtypes, function, tree)
    return result


# --------------------------------------------------------------------------- #
# tree_to_tensor, tree_to_numpy
# --------------------------------------------------------------------------- #


@overload
def tree_to_tensor(
    tree: npt.NDArray[Any] | torch.Tensor | np.generic,
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    device: str | torch.device | int | None = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    non_blocking: bool = ...,
) -> torch.Tensor: ...
@overload
def tree_to_tensor(
    tree: dict[KeyT, npt.NDArray[Any]] | dict[KeyT, torch.Tensor],
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    device: str | torch.device | int | None = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    non_blocking: bool = ...,
) -> dict[KeyT, torch.Tensor]: ...
@overload
def tree_to_tensor(
    tree: list[npt.NDArray[Any]] | list[torch.Tensor],
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
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
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
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
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
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
    dtype: DTypeLike | DtypePolicy | LeafDtypes = FLOAT32,
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
        dtype: a policy or dtype, as for ``to_tensor``, applied to every leaf;
            or per-leaf dtypes: a mapping from top-level keys (or printed paths
            such as ``'["meta"]["depth"]'``) to dtypes or policies, every other
            leaf following ``FLOAT32``.
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

    def make(each: object) -> Options:
        return Options.for_tensor(each, device, copy, casting, pin_memory, non_blocking)

    return convert_tree(tree, dtype, make, tensor_leaf, "tree_to_tensor")


@overload
def tree_to_numpy(
    tree: npt.NDArray[Any] | torch.Tensor | np.generic,
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> npt.NDArray[Any]: ...
@overload
def tree_to_numpy(
    tree: dict[KeyT, npt.NDArray[Any]] | dict[KeyT, torch.Tensor],
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> dict[KeyT, npt.NDArray[Any]]: ...
@overload
def tree_to_numpy(
    tree: list[npt.NDArray[Any]] | list[torch.Tensor],
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> list[npt.NDArray[Any]]: ...
@overload
def tree_to_numpy(
    tree: tuple[npt.NDArray[Any], ...] | tuple[torch.Tensor, ...],
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> tuple[npt.NDArray[Any], ...]: ...
@overload
def tree_to_numpy(
    tree: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> Any: ...
def tree_to_numpy(
    tree: object,
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = FLOAT32,
    copy: bool | None = None,
    casting: Casting = "same_kind",
) -> Any:
    """Convert every array leaf of a nested batch with ``to_numpy``, keeping the structure.

    The same walk as ``tree_to_tensor``: tensors (on any device; GPU values are
    final when this returns), ndarrays and NumPy scalars are converted, every
    other leaf is returned untouched.

    Args:
        tree: the nested batch.
        dtype: a policy or dtype, as for ``to_numpy``, applied to every leaf;
            or per-leaf dtypes, as for ``tree_to_tensor``.
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

    def make(each: object) -> Options:
        return Options.for_numpy(each, copy, casting)

    return convert_tree(tree, dtype, make, numpy_leaf, "tree_to_numpy")
