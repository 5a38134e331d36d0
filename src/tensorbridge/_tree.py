"""Nested batches: ``tree_to_tensor`` and ``tree_to_numpy``.

One walker serves both directions. Options are checked once per call, not per
leaf; each leaf then goes straight to the conversion core, with the common
leaf (an ndarray or tensor that can be shared) handled in a few lines.
"""

from __future__ import annotations

import contextlib
import copy as copy_module
import dataclasses
import os
import sys
from collections import UserDict, UserList
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar, cast, overload

import numpy as np
import numpy.typing as npt
import torch

from ._convert import (
    array_fast_path,
    array_to_numpy,
    array_to_tensor,
    cast_array_fast,
    convert_to_numpy,
    convert_to_tensor,
    tensor_to_numpy,
    tensor_to_tensor,
)
from ._device import parse_device
from ._dtypes import FLOAT32, Casting, DTypeLike, DtypePolicy
from ._errors import InvalidArgumentError, InvalidInputError, TensorBridgeError
from ._paths import DtypeTree, Field, LeafDtypes, format_path
from ._plan import Options, numpy_options, tensor_options
from ._transfer import batch_transfer

__all__ = [
    "format_path",
    "rebuild_list",
    "rebuild_mapping",
    "recursion_error",
    "tree_to_numpy",
    "tree_to_tensor",
    "walk_tree",
]

_K = TypeVar("_K")
_T = TypeVar("_T")

# The parameter is Any, not object: walk hands a leaf its node as isinstance
# narrowed it (an ndarray or NumPy scalar whose type arguments pyright leaves
# unknown).
Leaf = Callable[[Any], object]
_SCALAR_REASON: Final = (
    "a NumPy scalar has no memory to share; its value always goes into new memory"
)


def rebuild_mapping(original: Mapping[Any, Any], items: dict[Any, Any]) -> Mapping[Any, Any]:
    """A mapping of ``original``'s type holding ``items``; a dict where that type can't be built.

    As ``default_collate`` rebuilds one: a copy of ``original`` updated with the
    items (which keeps a ``defaultdict``'s factory and a subclass's attributes),
    else ``type(original)(items)``. The copy is taken only of dicts and
    ``UserDict``s, whose copies own their items: a copy of another mutable
    mapping may share its storage with the original, and updating it would
    change the caller's data.
    """
    kind = type(original)
    if kind is dict:
        return items
    try:
        if isinstance(original, (dict, UserDict)):
            clone: Any = copy_module.copy(original)
            clone.update(items)
            return cast("Mapping[Any, Any]", clone)
        return kind(items)  # type: ignore[call-arg]
    except TypeError:
        return items


def rebuild_list(original: Sequence[Any], items: list[Any]) -> Sequence[Any]:
    """A sequence of ``original``'s type holding ``items``; a list where that type can't be built.

    ``default_collate``'s rule for sequences other than tuples: list subclasses
    (and ``UserList``s) are copied and refilled, other sequences are rebuilt with
    ``type(original)(items)``, and a ``range`` (or any type whose constructor
    refuses a list) becomes a list. (``default_collate`` copies every mutable
    sequence; here only those whose copies own their items, as in
    ``rebuild_mapping``.)
    """
    kind = type(original)
    if kind is list:
        return items
    try:
        if isinstance(original, (list, UserList)):
            clone: Any = copy_module.copy(original)
            for position, item in enumerate(items):
                clone[position] = item
            return cast("Sequence[Any]", clone)
        return kind(items)  # type: ignore[call-arg]
    except TypeError:
        return items


def _rebuild_tuple(original: tuple[Any, ...], items: list[Any]) -> tuple[Any, ...]:
    """A tuple of ``original``'s type (``torch.return_types``, ``torch.Size``), else a tuple."""
    kind = type(original)
    if kind is tuple:
        return tuple(items)
    try:
        return kind(items)
    except TypeError:
        return tuple(items)


# Sequences that are values, not containers: never walked into.
_NOT_CONTAINERS: Final = (str, bytes, bytearray, memoryview)


def _other_sequence(value: object) -> bool:
    """A sequence ``walk`` descends into (range, UserList...); a bool, so nothing is narrowed."""
    return isinstance(value, Sequence) and not isinstance(value, _NOT_CONTAINERS)


def _children(node: object) -> Iterator[tuple[object, object]] | None:
    """(path step, child) pairs of a container ``walk`` descends into; None for a leaf."""
    if isinstance(node, Mapping):
        return iter(cast("Mapping[object, object]", node).items())
    names: tuple[str, ...] | None = getattr(type(node), "_fields", None)
    if names is not None and isinstance(node, tuple):  # a namedtuple
        return zip(map(Field, names), cast("tuple[object, ...]", node), strict=True)
    if _other_sequence(node):
        return enumerate(cast("Sequence[object]", node))
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return ((Field(f.name), getattr(node, f.name)) for f in dataclasses.fields(node))
    return None


def _short_path(path: list[object]) -> str:
    if len(path) <= 12:
        return format_path(tuple(path))
    return f"{format_path(tuple(path[:12]))}... ({len(path)} levels)"


def recursion_error(trees: Sequence[tuple[str, object]]) -> InvalidInputError:
    """The error for trees whose walk ran out of Python's recursion depth.

    Called only after a ``RecursionError``, so the walk's hot path pays nothing
    for it. ``trees`` are (message prefix, tree) pairs. Each is searched without
    recursion for a container that holds itself (a cycle), and the message
    names both paths; without a cycle, the trees are nested too deeply for a
    recursive walk, and the message says how deep.
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
    on_path: list[int] = [id(tree)]
    pending: list[Iterator[tuple[object, object]]] = []
    children = _children(tree)
    if children is not None:
        pending.append(children)
    depth = 0
    while pending:
        entry = next(pending[-1], None)
        if entry is None:
            pending.pop()
            on_path.pop()
            if path:
                path.pop()
            continue
        step, child = entry
        grandchildren = _children(child)
        if grandchildren is None:
            continue
        if id(child) in on_path:
            where = on_path.index(id(child))
            return f"{_short_path([*path, step])} is {_short_path(path[:where])} itself", depth
        path.append(step)
        on_path.append(id(child))
        pending.append(grandchildren)
        depth = max(depth, len(path))
    return None, depth


class _LeafFailure(Exception):
    """Carries a leaf's TensorBridgeError up the tree, collecting the path on the way."""

    def __init__(self, error: TensorBridgeError) -> None:
        super().__init__(error)
        self.error = error
        self.reversed_path: list[object] = []


_ndarray: Final = np.ndarray
# torch's stubs leave from_numpy's parameter unannotated.
_from_numpy: Final[Callable[[npt.NDArray[Any]], torch.Tensor]] = torch.from_numpy  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]

# Leaves returned untouched, by exact type: most batches are mostly these, and
# an exact-type test is far cheaper than the isinstance chain below.
_PLAIN: Final = frozenset({str, bytes, int, float, bool, complex, type(None)})


def _list_or_tuple(value: object) -> bool:
    """A list or tuple, or a subclass of one other than a namedtuple."""
    return not hasattr(type(value), "_fields") and isinstance(value, (list, tuple))


def walk(tree: object, leaf: Leaf, dtypes: DtypeTree | None = None) -> object:
    """``tree`` with ``leaf`` applied to every array leaf and the structure rebuilt.

    ``dtypes``, when given, holds per-leaf conversions (a ``Leaf`` per node, built
    by ``per_leaf``): the subtree under a key converts with that key's leaf.

    Raises:
        _LeafFailure: a leaf raised; the caller turns it back into the leaf's
            error class with the path in front (see ``walk_tree``).
    """
    kind = type(tree)
    if kind in _PLAIN:
        return tree
    if kind is not dict and (
        kind is np.ndarray
        or (
            isinstance(tree, (np.ndarray, torch.Tensor, np.generic))
            and not isinstance(tree, (str, bytes))
        )  # np.str_ and np.bytes_ are strings
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
                if dtypes is not None:
                    items[step] = _descend(value, leaf, dtypes, step)
                elif type(value) is _ndarray:  # the common leaves, without a call of walk
                    try:
                        items[step] = leaf(value)
                    except TensorBridgeError as error:
                        raise _LeafFailure(error) from error
                elif type(value) in _PLAIN:
                    items[step] = value
                else:
                    items[step] = walk(value, leaf)
            return items if kind is dict else rebuild_mapping(tree, items)  # type: ignore[arg-type]
        if _list_or_tuple(tree):
            # Lists and tuples, subclasses included (namedtuples below).
            converted: list[object] = []
            for step, value in enumerate(cast("list[object] | tuple[object, ...]", tree)):
                converted.append(
                    walk(value, leaf) if dtypes is None else _descend(value, leaf, dtypes, step)
                )
            if kind is list:
                return converted
            if isinstance(tree, list):
                return rebuild_list(cast("list[object]", tree), converted)
            return _rebuild_tuple(cast("tuple[object, ...]", tree), converted)
        if isinstance(tree, tuple):  # a namedtuple
            named: Any = kind
            fields: list[object] = []
            for name, value in zip(named._fields, cast("tuple[object, ...]", tree), strict=True):
                step = Field(name)
                fields.append(
                    walk(value, leaf) if dtypes is None else _descend(value, leaf, dtypes, step)
                )
            return named(*fields)
        if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
            rebuilt = copy_module.copy(tree)
            for field in dataclasses.fields(tree):
                step = Field(field.name)
                # object.__setattr__ also works on frozen dataclasses.
                value = getattr(tree, field.name)
                object.__setattr__(
                    rebuilt,
                    field.name,
                    walk(value, leaf) if dtypes is None else _descend(value, leaf, dtypes, step),
                )
            return rebuilt
        if _other_sequence(tree):
            # range, UserList and other sequences, as default_convert walks them.
            elements: list[object] = []
            for step, value in enumerate(cast("Sequence[object]", tree)):
                elements.append(
                    walk(value, leaf) if dtypes is None else _descend(value, leaf, dtypes, step)
                )
            return rebuild_list(cast("Sequence[object]", tree), elements)
    except _LeafFailure as failure:
        failure.reversed_path.append(step)
        raise
    return tree


def _descend(value: object, leaf: Leaf, dtypes: DtypeTree, step: object) -> object:
    """``walk`` of one child, under the per-leaf dtype its path falls under."""
    below = dtypes.child(step)
    if below is None:
        return walk(value, leaf)  # no per-leaf key names anything under this child
    below.used = True
    if below.dtype is not None:
        leaf = cast(Leaf, below.dtype)
    return walk(value, leaf, below if below.children else None)


def per_leaf(dtype: object, make_leaf: Callable[[object], _T]) -> tuple[_T, DtypeTree | None]:
    """What ``make_leaf`` makes of ``dtype``, and of each per-leaf dtype when it is a mapping.

    Each distinct dtype of the mapping is checked (and its options resolved)
    once, here, before any leaf is converted.
    """
    if not isinstance(dtype, Mapping):
        return make_leaf(dtype), None
    dtypes = DtypeTree.build(FLOAT32, cast("Mapping[object, object]", dtype))
    made: dict[int, _T] = {}
    stack = [dtypes]
    while stack:
        node = stack.pop()
        if node.dtype is not None:
            key = id(node.dtype)
            if key not in made:
                made[key] = make_leaf(node.dtype)
            node.dtype = made[key]
        stack.extend(node.children.values())
    return cast(_T, dtypes.dtype), dtypes


def check_used(dtypes: DtypeTree | None, function: str) -> None:
    """Raise for per-leaf dtype keys that named no part of the batch (a typo, usually)."""
    if dtypes is None:
        return
    unused = dtypes.unused()
    if unused:
        raise InvalidArgumentError(
            f"{function}: the per-leaf dtype key(s) {', '.join(map(repr, unused))} match no "
            "leaf of the batch; check the spelling (keys are top-level keys of the batch, or "
            """paths as errors print them, such as '["meta"]["depth"]')"""
        )


def walk_tree(tree: object, leaf: Leaf, dtypes: DtypeTree | None = None) -> object:
    """``walk``, with a leaf's error re-raised as its own class, its path in front."""
    try:
        return walk(tree, leaf, dtypes)
    except _LeafFailure as failure:
        error = failure.error
        path = format_path(tuple(reversed(failure.reversed_path)))
        raise type(error)(f"{path}: {error}") from error
    except RecursionError:
        # A cycle, or nesting deeper than the interpreter's stack: found out here,
        # after the fact, so that the walk itself keeps no record of where it has been.
        raise recursion_error([("", tree)]) from None


# The leaves of host calls with default options, by (type, dtype argument): the
# options are checked once, and a repeated call walks straight away. Bounded;
# forgotten in a forked child with the fast paths' tables.
_HOST_LEAVES: dict[tuple[type, object], Leaf] = {}


def _remember_leaf(dtype: object, leaf: Leaf) -> None:
    if len(_HOST_LEAVES) >= 64:
        _HOST_LEAVES.clear()
    with contextlib.suppress(TypeError):  # an unhashable dtype argument
        _HOST_LEAVES[(type(dtype), dtype)] = leaf


os.register_at_fork(after_in_child=_HOST_LEAVES.clear)


def _tensor_leaf(options: Options) -> Leaf:
    # The common leaf: an ndarray whose plan to_tensor's fast path remembers (a
    # share, or a cast that needs none of the general path's care), handled as
    # to_tensor does.
    remembered = array_fast_path(options)
    copy_none = options.copy is None

    def convert(value: object) -> object:
        if type(value) is _ndarray:
            if remembered is not None:
                fast = remembered.get(value.dtype)
                if fast is True:
                    if value.flags.writeable:
                        try:
                            return _from_numpy(value)
                        except ValueError:
                            pass
                elif fast and copy_none:
                    result = cast_array_fast(value, fast)
                    if result is not None:
                        return result
            return array_to_tensor(value, options, None, False)
        if isinstance(value, torch.Tensor):
            return tensor_to_tensor(value, options)
        # The casts to object (here and in _numpy_leaf): isinstance leaves the type
        # arguments of ndarray and np.generic unknown to pyright.
        if isinstance(value, np.ndarray):  # subclasses: the core's checks apply
            return convert_to_tensor(cast(object, value), options)
        assert isinstance(value, np.generic)
        scalar = np.asarray(cast(object, value))  # a fresh 0-d array
        if copy_none and remembered is not None and remembered.get(scalar.dtype) is True:
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
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
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
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
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
    found: Leaf | None = None
    dtypes: DtypeTree | None = None
    defaults = (
        device is None
        and copy is None
        and casting == "same_kind"
        and pin_memory is False
        and non_blocking is False
    )
    if defaults:
        try:  # noqa: SIM105 (contextlib.suppress costs more than this whole lookup)
            found = _HOST_LEAVES.get((type(dtype), dtype))
        except TypeError:
            pass  # unhashable: a per-leaf mapping, or a bad argument the checks explain
    if found is not None:
        leaf = found
    else:
        leaf, dtypes = per_leaf(
            dtype,
            lambda each: _tensor_leaf(
                tensor_options(each, device, copy, casting, pin_memory, non_blocking)
            ),
        )
        if defaults and dtypes is None:
            _remember_leaf(dtype, leaf)
    target = None if device is None else parse_device(device)
    if target is None or target.type != "cuda":
        result = walk_tree(tree, leaf, dtypes)
    else:
        # Every host leaf going to a GPU crosses the bus in one copy with the others.
        with batch_transfer(target, non_blocking is True):
            result = walk_tree(tree, leaf, dtypes)
    if dtypes is not None:
        check_used(dtypes, "tree_to_tensor")
    return result


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
    tree: dict[_K, npt.NDArray[Any]] | dict[_K, torch.Tensor],
    /,
    *,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
) -> dict[_K, npt.NDArray[Any]]: ...
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
    leaf, dtypes = per_leaf(dtype, lambda each: _numpy_leaf(numpy_options(each, copy, casting)))
    result = walk_tree(tree, leaf, dtypes)
    check_used(dtypes, "tree_to_numpy")
    return result
