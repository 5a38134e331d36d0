"""Device parsing and the moves between host memory and a device."""

from __future__ import annotations

from typing import Final, TypeAlias

import torch

from ._dtypes import DType, cast_tensor, widens_exactly
from ._errors import InvalidArgumentError

__all__ = ["CPU", "DeviceLike", "is_cpu", "move", "parse_device"]

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
    if isinstance(device, torch.device):
        parsed = device
    elif isinstance(device, (str, int)) and not isinstance(device, bool):
        try:
            parsed = torch.device(device)
        except (RuntimeError, TypeError, ValueError) as error:
            raise InvalidArgumentError(
                f"device={device!r} is not a device torch can use ({error}); "
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
        index = torch.cuda.current_device() if parsed.index is None else parsed.index
        if index >= torch.cuda.device_count():
            raise InvalidArgumentError(
                f"device={device!r} was asked for, but only {torch.cuda.device_count()} "
                "CUDA device(s) exist"
            )
        return torch.device("cuda", index)
    return parsed


def is_cpu(device: torch.device) -> bool:
    return device.type == "cpu"


def same_device(a: torch.device, b: torch.device) -> bool:
    """Device equality that treats 'cuda' and 'cuda:<current>' as one device."""
    if a.type != b.type:
        return False
    if a.index == b.index:
        return True
    if a.type == "cuda":
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (
            b.index if b.index is not None else current
        )
    return False


def move(tensor: torch.Tensor, source: DType, target: DType, device: torch.device) -> torch.Tensor:
    """Cast ``tensor`` to ``target`` and move it to ``device``, in the cheaper order.

    A cast that widens exactly (uint8 to float32, float16 to float32) crosses
    the bus in the narrow dtype and runs on the far side; anything else (a
    narrowing or lossy cast) runs on the near side, before the transfer, so the
    bus never carries more bytes than the result has. The result is always new,
    C-contiguous memory.
    """
    if widens_exactly(source, target):
        moved = tensor.to(device=device, memory_format=torch.contiguous_format)
        return cast_tensor(moved, target)
    return cast_tensor(tensor, target).to(device=device, memory_format=torch.contiguous_format)
