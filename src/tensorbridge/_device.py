"""Device parsing and the moves between host memory and a device."""

from __future__ import annotations

import contextlib
from typing import Final, TypeAlias, cast

import torch

from ._errors import InvalidArgumentError
from ._transfer import DIRECT_BYTES, RING_BYTES, tensor_to_device, tensor_to_host

__all__ = [
    "CPU",
    "DeviceLike",
    "device_to_host",
    "host_to_device",
    "parse_device",
    "same_device",
]

DeviceLike: TypeAlias = "str | torch.device | int | None"

CPU: Final = torch.device("cpu")


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
    # A device that names its index (or the CPU) parses the same way every time:
    # remembered, so small transfers do not pay for the checks again. (Keyed by type
    # too: True == 1, and device=True must not pass as device=1.)
    key = (type(device), device)
    with contextlib.suppress(TypeError):
        known = _PARSED.get(key)
        if known is not None:
            return known
    parsed = _parse(device)
    index = cast("int | None", parsed.index)  # the stubs say int; "cuda" alone has None
    if parsed.type == "cpu" or (index is not None and not _names_no_index(device)):
        if len(_PARSED) >= 64:
            _PARSED.clear()
        with contextlib.suppress(TypeError):
            _PARSED[key] = parsed
    return parsed


_PARSED: dict[tuple[type, object], torch.device] = {}


def _names_no_index(device: object) -> bool:
    """Whether ``device`` says "cuda" without an index (the current device: not fixed)."""
    if isinstance(device, torch.device):
        return cast("int | None", device.index) is None
    return isinstance(device, str) and ":" not in device


def _parse(device: object) -> torch.device:
    if isinstance(device, torch.device):
        parsed = device
    elif isinstance(device, (str, int)) and not isinstance(device, bool):
        try:
            parsed = torch.device(device)
        except (RuntimeError, TypeError, ValueError) as error:
            raise InvalidArgumentError(
                f"device={device!r} is not a device torch can use ({_first_line(error)}); "
                "pass 'cpu', 'cuda', 'cuda:N', a torch.device or a CUDA index"
            ) from None
    else:
        raise InvalidArgumentError(
            f"device={device!r} is not a device; pass 'cpu', 'cuda', 'cuda:N', "
            "a torch.device or a CUDA index"
        )
    if parsed.type == "cpu":
        return CPU
    if parsed.type == "meta":
        raise InvalidArgumentError(
            "device='meta' holds no data, so nothing can be converted onto it; "
            "use torch.empty(..., device='meta') to build shape-only tensors"
        )
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgumentError(
                f"device={device!r} was asked for, but torch.cuda.is_available() is False "
                "in this process (no GPU, or a CPU-only torch build); pass device=None or 'cpu'"
            )
        # The cast: torch's stubs type device.index as int, but a device named without
        # an index ("cuda") has None.
        index = (
            torch.cuda.current_device()
            if cast("int | None", parsed.index) is None
            else parsed.index
        )
        if index >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"device={device!r} was asked for, but only {torch.cuda.device_count()} "
                "CUDA device(s) exist"
            )
        return torch.device("cuda", index)
    try:
        torch.empty(0, device=parsed)  # other backends (mps, xpu...) report themselves
    except (RuntimeError, AssertionError, ImportError, TypeError, ValueError) as error:
        # torch's own message can be the whole dispatcher table (7,000 characters for
        # "mps" on a build without it): only its first line is kept.
        raise InvalidArgumentError(
            f"device={device!r} is not available in this process ({_first_line(error)}); "
            "pass device=None or 'cpu', or a device this torch build supports"
        ) from None
    return parsed


def _first_line(error: BaseException, limit: int = 160) -> str:
    text = str(error).strip()
    text = text.split("\n", 1)[0].strip() if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def same_device(a: torch.device, b: torch.device) -> bool:
    """Device equality that treats 'cuda' and 'cuda:<current>' as one device."""
    if a.type != b.type:
        return False
    if a.index == b.index:
        return True
    if a.type == "cuda":
        current = torch.cuda.current_device()
        # The casts: as in parse_device, the stubs' int is None for a bare "cuda".
        return (a.index if cast("int | None", a.index) is not None else current) == (
            b.index if cast("int | None", b.index) is not None else current
        )
    return False


def host_to_device(host: torch.Tensor, device: torch.device, *, non_blocking: bool) -> torch.Tensor:
    """Copy a CPU tensor to ``device``, C-contiguous, with torch's ``non_blocking``.

    Below ``RING_BYTES``, and for page-locked memory, this is the
    plain ``.to(device, non_blocking=...)``: under ``non_blocking=True`` a
    page-locked source (the caller's, as from ``DataLoader(pin_memory=True)``)
    may still be read after the return, so the caller must not write it until
    the current stream has passed the copy, exactly as in torch. Large pageable
    data goes through the page-locked staging ring (``_transfer``) and has been
    read in full when this returns. ``non_blocking=False`` returns a complete
    result.
    """
    if host.numel() * host.element_size() < RING_BYTES and host.is_contiguous():
        return host.to(device, non_blocking=non_blocking)
    return tensor_to_device(host, device, non_blocking=non_blocking)


def device_to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A C-contiguous CPU copy of a device tensor, final when this returns.

    Small tensors take the plain ``.to("cpu")``; large CUDA tensors go through
    ``tensor_to_host``: a page-locked result within the page-locked
    memory budget, else a pageable one through the staging ring.
    """
    if tensor.numel() * tensor.element_size() < DIRECT_BYTES and tensor.is_contiguous():
        return tensor.cpu()
    if tensor.device.type == "cuda":
        return tensor_to_host(tensor)
    return tensor.to(CPU, memory_format=torch.contiguous_format)
