"""The exceptions tensorbridge raises, and the few helpers every message uses."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CastingError",
    "InvalidArgumentError",
    "InvalidInputError",
    "ShareError",
    "TensorBridgeError",
    "UnsupportedDtypeError",
    "a_type",
    "first_line",
    "share_error",
    "short_repr",
    "with_article",
]


class TensorBridgeError(Exception):
    """Base class of every error tensorbridge raises on purpose.

    Catch this to handle any conversion problem; each subclass is also a
    builtin ``TypeError`` or ``ValueError``, so code written against NumPy or
    torch keeps working.
    """

    __module__ = "tensorbridge"


class ShareError(TensorBridgeError, ValueError):
    """``copy=False`` was passed but the result cannot share the input's memory."""

    __module__ = "tensorbridge"


class UnsupportedDtypeError(TensorBridgeError, TypeError):
    """A dtype has no counterpart on the target side (NumPy or torch)."""

    __module__ = "tensorbridge"


class CastingError(TensorBridgeError, TypeError):
    """The ``casting`` rule forbids the dtype change that was asked for."""

    __module__ = "tensorbridge"


class InvalidInputError(TensorBridgeError, TypeError):
    """The input cannot be converted: its type, layout or contents (a str, a dict, None...)."""

    __module__ = "tensorbridge"


class InvalidArgumentError(TensorBridgeError, ValueError):
    """An input or option has the right type but a value that cannot be used.

    Examples: ragged nested lists, an unknown dtype name, an invalid device or
    casting value, a masked array whose mask would be lost.
    """

    __module__ = "tensorbridge"


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters; never raises.

    (``value`` is typed Any: messages quote whatever they were given, narrowed or not.)
    """
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real message
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an error's message (its class name when it has none), cut short.

    torch's messages can be whole dispatcher tables (7,000 characters for
    ``device="mps"`` on a build without it): messages quote only this much.
    """
    text = str(error).strip()
    text = text.split("\n", 1)[0].strip() if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def a_type(value: Any) -> str:
    """``"an int"``, ``"a list"``, ``"an ndarray"``: the type of ``value`` with its article."""
    return with_article(type(value).__name__)


def with_article(name: str) -> str:
    """``name`` after "a" or "an", as it is read aloud ("an int64", "a uint8", "an ndarray")."""
    spoken_vowel = name[:1].lower() in "aeio" or name.lower().startswith(("nd", "x"))
    return f"{'an' if spoken_vowel else 'a'} {name}"


def share_error(reason: str) -> ShareError:
    """The ``ShareError`` of ``copy=False``, with the reason and the two ways out."""
    return ShareError(
        f"cannot share memory: {reason}. Pass copy=None to get a copy when sharing is "
        "impossible, or copy=True to always copy"
    )
