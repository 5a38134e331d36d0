"""Device parsing and the moves between host memory and a device."""

from __future__ import annotations

from typing import Final, TypeAlias, cast

import torch

from ._dtypes import DType, cast_tensor, widens_exactly
from ._errors import InvalidArgumentError

__all__ = [
    "CPU",
    "PINNED_STAGING_BYTES",
    "DeviceLike",
    "device_to_host",
    "host_to_device",
    "move",
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
        raise InvalidArgumentError(
            f"device={device!r} is not available in this process ({error}); pass "
            "device=None or 'cpu', or a device this torch build supports"
        ) from None
    return parsed


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


def move(tensor: torch.Tensor, source: DType, target: DType, device: torch.device) -> torch.Tensor:
    """Cast ``tensor`` to ``target`` and move it to ``device``, in the cheaper order.

    A cast that widens exactly (uint8 to float32, float16 to float32) crosses
    the bus in the narrow dtype and runs on the far side; anything else (a
    narrowing or lossy cast) runs on the near side, before the transfer, so the
    bus never carries more bytes than the result has. The result is always new,
    C-contiguous memory.
    """
    if widens_exactly(source, target):
        return cast_tensor(_transfer(tensor, device), target)
    return _transfer(cast_tensor(tensor, target), device)


def _transfer(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    # To the host through device_to_host, as to_numpy does: final values, and
    # page-locked staging for large tensors.
    if device.type == "cpu":
        return device_to_host(tensor)
    return tensor.to(device=device, memory_format=torch.contiguous_format)


def host_to_device(
    host: torch.Tensor, device: torch.device, *, non_blocking: bool, ours: bool
) -> torch.Tensor:
    """Copy a CPU tensor to ``device``; asynchronously only where that is safe.

    The contract: host memory a pending copy reads from stays alive and
    unmodified until the copy is done. Three cases keep it:

    - pageable memory: the CUDA driver copies it into its own staging buffer
      before ``cudaMemcpyAsync`` returns, so the caller may change it at once;
    - page-locked memory that tensorbridge allocated (``ours``): nobody else
      holds it, and torch's caching host allocator keeps the block out of reuse
      until the copy's event has completed;
    - page-locked memory of the caller's: copied synchronously, because the
      caller may write to it the moment this returns.
    """
    if non_blocking and (ours or not host.is_pinned()):
        return host.to(device, non_blocking=True)
    return host.to(device)


#: Device-to-host copies of at least this many bytes go through a new page-locked
#: buffer (DMA at full bus speed) instead of pageable memory. Measured on an H200
#: (PCIe 5 x16, benchmarks/results/h200-2026-11-26): at 1 MB a new pinned buffer
#: already moved 22.6 GB/s against 7.1 GB/s pageable, and pageable copies of
#: 64 MB and more fell to 1.2 GB/s; smaller sizes were not measured.
PINNED_STAGING_BYTES: Final = 1 << 20


def device_to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A C-contiguous CPU copy of a device tensor, final when this returns."""
    if (
        tensor.device.type == "cuda"
        and tensor.numel() * tensor.element_size() >= PINNED_STAGING_BYTES
    ):
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        torch.cuda.current_stream(tensor.device).synchronize()
        return host
    return tensor.to(CPU, memory_format=torch.contiguous_format)
