"""Paths into nested batches, and per-leaf dtypes keyed by them.

A path is a tuple of steps: a mapping key, a sequence index, or a ``Field``
(an attribute of a dataclass or namedtuple). ``format_path`` writes one the way
errors print it (``batch["meta"]["depth"]``), and ``parse_path`` reads that
spelling back, so a user can copy a path from an error into a per-leaf dtype.

``LeafOptions`` is what per-leaf dtypes become once checked: a trie of path
steps whose nodes carry the options of their subtree.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

from ._dtypes import DTypeLike, DtypePolicy
from ._errors import InvalidArgumentError, short_repr
from ._plan import Options

__all__ = ["Field", "LeafDtypes", "LeafOptions", "format_path", "parse_path"]

#: Per-leaf dtypes: a top-level key of the batch (or a path as errors print it,
#: ``'["meta"]["depth"]'``) mapped to the dtype or policy of everything under it.
#: Every other leaf follows the default policy, ``FLOAT32``.
DtypeOrPolicy: TypeAlias = "DTypeLike | DtypePolicy"
LeafDtypes: TypeAlias = "Mapping[Any, DtypeOrPolicy]"


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """A path step through an attribute (dataclass field or namedtuple field)."""

    name: str


def format_path(path: tuple[object, ...]) -> str:
    """``("image", 2)`` -> ``batch["image"][2]``; dataclass fields read ``.name``."""
    parts = ["batch"]
    for step in path:
        if isinstance(step, Field):
            parts.append(f".{step.name}")
        elif isinstance(step, str):
            parts.append(f'["{step}"]')
        else:
            parts.append(f"[{step!r}]")
    return "".join(parts)


_STEP: Final = re.compile(r"""\[(?P<item>[^\]]*)\]|\.(?P<field>[A-Za-z_][A-Za-z_0-9]*)""")


def parse_path(key: object) -> tuple[object, ...]:
    """A per-leaf dtype key as a path: a top-level key, or a path as errors print it.

    ``"image"`` and ``0`` are top-level keys; ``'["meta"]["depth"]'``,
    ``'batch["meta"]["depth"]'``, ``"[0][1]"`` and ``".image"`` are paths.

    Raises:
        InvalidArgumentError: a string that starts like a path but does not parse.
    """
    if not isinstance(key, str) or not key.startswith(("[", ".", "batch[", "batch.")):
        return (key,)
    text = key.removeprefix("batch")
    steps: list[object] = []
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None:
            raise InvalidArgumentError(
                f"the per-leaf dtype key {key!r} is not a path as errors print it; write a "
                """top-level key ("image") or a path such as '["meta"]["depth"]' or '[0]'"""
            )
        if match["field"] is not None:
            steps.append(Field(match["field"]))
        else:
            try:
                steps.append(ast.literal_eval(match["item"]))
            except (ValueError, SyntaxError):
                raise InvalidArgumentError(
                    f"the per-leaf dtype key {key!r} has the step [{match['item']}], which is "
                    """neither a quoted key nor an integer index; write '["name"]' or '[0]'"""
                ) from None
        position = match.end()
    return tuple(steps)


class LeafOptions:
    """Per-leaf options as a trie of path steps.

    Each node holds the options of its subtree, or None to inherit its
    parent's; ``child(step)`` descends. ``unused()`` lists the keys that
    matched no leaf, so a typo in a key can be reported rather than ignored.
    """

    __slots__ = ("children", "key", "options", "used")

    def __init__(self, options: Options | None = None, key: object = None) -> None:
        self.options = options
        self.key = key  # the user's spelling of the path to this node, for messages
        self.children: dict[object, LeafOptions] = {}
        self.used = False

    @classmethod
    def build(
        cls, default: Options, mapping: Mapping[Any, object], make: Callable[[object], Options]
    ) -> LeafOptions:
        """The trie of ``mapping``; ``make`` checks each distinct dtype once."""
        root = cls(default)
        made: list[tuple[object, Options]] = []
        for key, dtype in mapping.items():
            if dtype is None:
                raise InvalidArgumentError(
                    f"the per-leaf dtype of {short_repr(key)} is None, which is not a dtype; "
                    "pass tb.PRESERVE to keep that leaf's dtype, or leave the key out for the "
                    "default policy"
                )
            node = root
            for step in parse_path(key):
                node = node.children.setdefault(_step_key(step), cls())
            if node.options is not None and node is not root:
                raise InvalidArgumentError(
                    f"the per-leaf dtype keys {node.key!r} and {key!r} name the same leaf; keep one"
                )
            options = next((done for value, done in made if value is dtype), None)
            if options is None:
                options = make(dtype)
                made.append((dtype, options))
            node.options, node.key = options, key
        return root

    def child(self, step: object) -> LeafOptions | None:
        """The subtree under ``step``, or None when no key goes below this node."""
        try:
            return self.children.get(_step_key(step))
        except TypeError:  # an unhashable mapping key: no per-leaf key can name it
            return None

    def unused(self) -> list[object]:
        """The keys that no leaf of the batch fell under."""
        found: list[object] = []
        stack: list[LeafOptions] = [self]
        while stack:
            node = stack.pop()
            if node.key is not None and not node.used:
                found.append(node.key)
            stack.extend(node.children.values())
        return found


def _step_key(step: object) -> object:
    # A namedtuple field and a dataclass field are both reached by name; a bool key
    # must not match the index 1 (True == 1 in a dict).
    if isinstance(step, bool):
        return ("bool", step)
    return step
