"""The exceptions tensorbridge raises: one base class, each also a builtin error."""

from __future__ import annotations

__all__ = [
    "CastingError",
    "InvalidArgumentError",
    "InvalidInputError",
    "ShareError",
    "TensorBridgeError",
    "UnsupportedDtypeError",
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
    """The input is not something that converts to an array (a str, a dict, None...)."""

    __module__ = "tensorbridge"


class InvalidArgumentError(TensorBridgeError, ValueError):
    """An input or option has the right type but a value that cannot be used.

    Examples: ragged nested lists, an unknown dtype name, an invalid device or
    casting value, a masked array whose mask would be lost.
    """

    __module__ = "tensorbridge"
