"""Host <-> GPU transfers at the bus rate, within a budget of page-locked memory.

A DMA runs at the bus rate only from or into page-locked (pinned) host memory;
from pageable memory the driver stages through a small buffer of its own at a
third of the rate or less. The engine here:

- **Host to device**, large data: a bounded *staging ring* of page-locked
  chunks per device, allocated once (lazily) and reused. Worker threads copy
  (or cast, with NumPy's values) the caller's ndarray, any strides, into one
  chunk while the DMA of the previous chunk runs on a copy stream; a CUDA
  event per chunk guards its reuse. The caller's stream waits on an event
  recorded after the last DMA (never a device-wide synchronize), so the result
  is ordered like any other tensor of that stream. The source has been read
  in full when the call returns, whatever ``non_blocking`` says.
- **Device to host**, large data: the DMA goes straight into a new page-locked
  result (bus rate, no second copy) while the page-locked memory that live
  results hold stays within the budget; past it, results are pageable and
  come through the ring, the DMA of one chunk overlapped with the host copy
  (and page faults) of the previous one on worker threads.
- **Small data** (below ``RING_BYTES`` to the device, ``DIRECT_BYTES`` from
  it): the plain torch call, nothing else.

The budget (``set_pinned_memory_budget``) bounds the staging rings plus the
page-locked memory held by results handed to the caller; a result counts
until the last array or tensor over its memory is gone.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, Protocol, cast

import numpy as np
import numpy.typing as npt
import torch

from ._compat import from_numpy, new_event, new_stream, reshape, view
from ._dtypes import DType, from_torch_dtype
from ._errors import InvalidArgumentError
from ._kernels import cast_into, share_ndarray
from ._threads import threads

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_PINNED_MEMORY_BUDGET",
    "DEFAULT_STAGING_BYTES",
    "DIRECT_BYTES",
    "RING_BYTES",
    "BatchTransfer",
    "batch_transfer",
    "device_to_host",
    "host_to_device",
    "open_batch",
    "pinned_memory_budget",
    "pinned_memory_in_use",
    "set_pinned_memory_budget",
    "stage_to_device",
    "tensor_to_device",
    "tensor_to_host",
]

#: Device-to-host copies of fewer bytes than this are the plain ``.cpu()``: no
#: pointer queries, no events. From here on a page-locked result wins: on an
#: H100 (PCIe 5 x16, torch 2.11) 12.1 against 10.1 GB/s at 1 MB, 29.0 against
#: 13.1 at 4 MB (best of 10; an H200 gave 22.6 against 7.1 at 1 MB).
DIRECT_BYTES: Final = 1 << 20
#: Host-to-device copies of fewer bytes than this are the plain ``.to(device)``:
#: the driver's own pageable staging beats one trip through the ring there. On an
#: H100 (torch 2.11, 16 threads): ring 18.0 against pageable 22.1 GB/s at 16 MB,
#: 29.0 against 22.4 at 64 MB.
RING_BYTES: Final = 32 << 20
#: Default size of one device's staging ring (shared by all threads).
DEFAULT_STAGING_BYTES: Final = 32 << 20
#: Default budget of page-locked memory: staging rings plus kept results.
DEFAULT_PINNED_MEMORY_BUDGET: Final = 256 << 20
#: Size of one chunk of the ring: one host copy, one DMA. Read when a ring is
#: made (benchmarks/bench_gpu.py --sweep varies it).
CHUNK_BYTES: int = 4 << 20
_MIN_STAGING_BYTES: Final = 1 << 20
_MAX_SLOTS: Final = 16


class _Event(Protocol):
    def record(self, stream: Any = None) -> None: ...
    def synchronize(self) -> None: ...


class _Ring:
    """One device's staging ring: page-locked chunks, a copy stream, an event per chunk."""

    def __init__(
        self,
        slots: list[torch.Tensor],
        stream: torch.cuda.Stream | None,
        events: Sequence[_Event],
        nbytes: int,
    ) -> None:
        self.slots = slots
        # NumPy views of the same chunks, for the host-side copies and casts.
        self.host: list[npt.NDArray[np.uint8]] = [slot.numpy() for slot in slots]
        self.stream = stream
        self.events = list(events)
        self.nbytes = nbytes
        self.chunk_bytes = slots[0].numel()
        self.lock = threading.Lock()

    def drain(self) -> None:
        """Wait until no DMA reads or writes a chunk."""
        for event in self.events:
            event.synchronize()


class _Budget:
    """The page-locked bytes tensorbridge may hold, and what it holds now."""

    def __init__(self, budget: int, staging_bytes: int) -> None:
        self.budget = budget
        self.staging_bytes = staging_bytes
        self.held = 0
        self.rings: dict[int, _Ring] = {}
        self.lock = threading.Lock()

    def reserve(self, nbytes: int, *, keep: int = 0) -> bool:
        """Count ``nbytes`` more as held, if that leaves ``keep`` bytes of the budget free."""
        with self.lock:
            if self.held + nbytes + keep > self.budget:
                return False
            self.held += nbytes
            return True

    def room_for_a_ring(self) -> int:
        """What results must leave free: the ring's size until some ring exists."""
        return 0 if self.rings else self.staging_bytes

    def release(self, nbytes: int) -> None:
        with self.lock:
            self.held -= nbytes


_budget = _Budget(DEFAULT_PINNED_MEMORY_BUDGET, DEFAULT_STAGING_BYTES)
_ring_lock = threading.Lock()  # one ring made at a time


def pinned_memory_budget() -> int:
    """The page-locked memory, in bytes, that tensorbridge may hold at once.

    The budget covers the staging ring of each GPU used (32 MB by default) plus
    the page-locked memory held by results of device-to-host copies that are
    still alive. The default is 256 MB per process.

    >>> import tensorbridge as tb  # the public names
    >>> tb.pinned_memory_budget() >= 0
    True
    """
    return _budget.budget


def pinned_memory_in_use() -> int:
    """The page-locked bytes tensorbridge holds now: staging rings and live results.

    A result's page-locked block is counted as torch's host allocator sizes it
    (the next power of two) until the last array or tensor over it is gone.

    >>> import tensorbridge as tb  # the public names
    >>> tb.pinned_memory_in_use() >= 0
    True
    """
    return _budget.held


def set_pinned_memory_budget(nbytes: int, *, staging_bytes: int | None = None) -> None:
    """Set how much page-locked memory tensorbridge may hold (default 256 MB).

    Page-locked memory makes host-device copies run at the bus rate, but it is
    taken from the operating system for as long as it is held. Within the
    budget, large GPU-to-host results are page-locked (DMA straight into them,
    the fastest way); past it they are ordinary pageable memory, filled through
    the staging ring (slower where fresh pageable memory is slow to fault in).
    Host-to-GPU copies need only the ring. ``nbytes=0`` turns page-locked
    staging off: every copy is then the plain torch call.

    Args:
        nbytes: the budget in bytes, staging rings included.
        staging_bytes: the size of each GPU's staging ring (default 32 MB, at
            least 1 MB, at most ``nbytes``; 0 for no ring). Existing rings are
            released (after their copies finish) and made again at this size.

    Raises:
        InvalidArgumentError: a value is not a non-negative int, or the ring
            does not fit in the budget.

    >>> import tensorbridge as tb  # the public names
    >>> old = tb.pinned_memory_budget()
    >>> tb.set_pinned_memory_budget(64 << 20)
    >>> tb.pinned_memory_budget()
    67108864
    >>> tb.set_pinned_memory_budget(old)
    """
    budget = _check_bytes("nbytes", nbytes)
    staging = (
        _budget.staging_bytes
        if staging_bytes is None
        else _check_bytes("staging_bytes", staging_bytes)
    )
    if staging_bytes is None:
        staging = min(staging, budget)
        staging = staging if staging >= _MIN_STAGING_BYTES else 0
    if 0 < staging < _MIN_STAGING_BYTES:
        raise InvalidArgumentError(
            f"staging_bytes={staging_bytes!r} is too small for a staging ring (at least "
            f"{_MIN_STAGING_BYTES} bytes); pass 0 for no ring, or 1 MB or more"
        )
    if staging > budget:
        raise InvalidArgumentError(
            f"staging_bytes={staging} does not fit in the budget nbytes={budget}; "
            "raise nbytes or lower staging_bytes"
        )
    with _ring_lock, _budget.lock:
        rings = list(_budget.rings.values())
        _budget.rings = {}
        _budget.budget = budget
        _budget.staging_bytes = staging
    for ring in rings:
        with ring.lock:
            ring.drain()
        _budget.release(ring.nbytes)


def _check_bytes(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(
            f"{name}={value!r} is not a number of bytes; pass an int >= 0 (256 << 20 is 256 MB)"
        )
    return value


def _ring(device: torch.device) -> _Ring | None:
    """The staging ring of a CUDA device, made on first use; None where it does not fit.

    None too while this thread's open batch (``batch_transfer``) holds the ring:
    a leaf that did not fit in the batch then takes the plain copy.
    """
    batch: BatchTransfer | None = getattr(_batches, "open", None)
    if batch is not None and batch.block is not None:
        return None
    # The cast: torch's stubs type device.index as int, but "cuda" alone has None.
    given = cast("int | None", device.index)
    index = torch.cuda.current_device() if given is None else given
    ring = _budget.rings.get(index)
    if ring is not None:
        return ring
    with _ring_lock:
        budget = _budget
        ring = budget.rings.get(index)
        if ring is not None:
            return ring
        size = budget.staging_bytes
        if size < _MIN_STAGING_BYTES or not budget.reserve(size):
            return None  # asked again next time: results may have been freed by then
        try:
            ring = _new_ring(torch.device("cuda", index), size)
        except BaseException:
            budget.release(size)
            raise
        with budget.lock:
            budget.rings[index] = ring
        return ring


def _new_ring(device: torch.device, size: int) -> _Ring:
    count = min(_MAX_SLOTS, max(2, size // CHUNK_BYTES))
    chunk = size // count // 64 * 64
    block = torch.empty(chunk * count, dtype=torch.uint8, pin_memory=True)
    slots = [block[i * chunk : (i + 1) * chunk] for i in range(count)]
    return _Ring(slots, new_stream(device), [new_event() for _ in slots], size)


def _pow2(nbytes: int) -> int:
    # torch's caching host allocator hands out power-of-two blocks.
    return 1 << max(0, nbytes - 1).bit_length()


# --------------------------------------------------------------------------- #
# Page-locked results and their accounting
# --------------------------------------------------------------------------- #


class _Lease:
    """Owner of a page-locked block handed to the caller; returns it to the budget on death.

    The result is a NumPy array over the block whose ``base`` is the lease, so every
    view of it (NumPy or torch, which keeps the array alive) keeps the lease alive.
    """

    __slots__ = ("__array_interface__", "_block", "_budget", "_nbytes")

    def __init__(self, block: torch.Tensor, budget: _Budget, nbytes: int) -> None:
        self._block = block
        self._budget = budget
        self._nbytes = nbytes
        self.__array_interface__ = {
            "shape": (block.numel(),),
            "typestr": "|u1",
            "data": (block.data_ptr(), False),
            "version": 3,
        }

    def __del__(self) -> None:
        # Also runs during interpreter shutdown, with module globals gone: touch
        # only the lease's own attributes.
        with contextlib.suppress(Exception):
            self._budget.release(self._nbytes)


def _leased(block: torch.Tensor, budget: _Budget, nbytes: int, like: torch.Tensor) -> torch.Tensor:
    """A CPU tensor shaped and typed like ``like`` over ``block``, counted in ``budget``."""
    flat = from_numpy(np.asarray(_Lease(block, budget, nbytes)))
    return flat[: like.numel() * like.element_size()].view(like.dtype).view(like.shape)


# --------------------------------------------------------------------------- #
# Splitting an array into ring-sized pieces
# --------------------------------------------------------------------------- #


def pieces(array: npt.NDArray[Any], chunk_items: int) -> list[tuple[int, npt.NDArray[Any]]]:
    """Views of ``array`` of at most ``chunk_items`` elements, in C order.

    Each entry is ``(offset, piece)``: the piece's elements are, in C order,
    elements ``offset`` to ``offset + piece.size`` of ``array.ravel()``. Any
    strides work (negative, zero, non-contiguous); no data is copied.
    """
    chunk_items = max(1, chunk_items)
    if array.ndim == 1 or array.flags.c_contiguous:
        flat = _flat(array)
        return [(a, flat[a : a + chunk_items]) for a in range(0, flat.size, chunk_items)]
    shape = array.shape
    # The shallowest axis whose trailing block fits in a chunk.
    axis = next(k for k in range(1, array.ndim + 1) if math.prod(shape[k:]) <= chunk_items)
    row = math.prod(shape[axis:])
    per = max(1, chunk_items // row)
    span = shape[axis - 1] * row
    out: list[tuple[int, npt.NDArray[Any]]] = []
    for number, lead in enumerate(_indices(shape[: axis - 1])):
        for start in range(0, shape[axis - 1], per):
            stop = min(start + per, shape[axis - 1])
            index: tuple[int | slice, ...] = (*lead, slice(start, stop))
            out.append((number * span + start * row, array[index]))
    return out


def _indices(shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    # The cast: numpy's stubs leave np.ndindex's items untyped.
    return cast("Iterator[tuple[int, ...]]", iter(np.ndindex(*shape)))


def _flat(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return reshape(array, -1)


def _typed(
    chunk: npt.NDArray[np.uint8], dtype: np.dtype[Any], shape: tuple[int, ...]
) -> npt.NDArray[Any]:
    """The first bytes of a ring chunk as an array of ``dtype`` and ``shape``."""
    count = math.prod(shape) * dtype.itemsize
    return reshape(view(chunk[:count], dtype), shape)


# --------------------------------------------------------------------------- #
# Worker threads
# --------------------------------------------------------------------------- #

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            # Its own pool, not _parallel's: a conversion that runs on a _parallel
            # worker (a collate task, say) must not wait on tasks queued behind it.
            _pool = ThreadPoolExecutor(_MAX_SLOTS, thread_name_prefix="tensorbridge-transfer")
            _pool_pid = os.getpid()
        return _pool


def _run(tasks: Sequence[Callable[[], None]]) -> None:
    """Run the tasks at once: the first on this thread, the rest on the pool."""
    futures: list[Future[None]] = []
    inline: list[Callable[[], None]] = [tasks[0]]
    try:
        for index, task in enumerate(tasks[1:], start=1):
            try:
                futures.append(_executor().submit(task))
            except RuntimeError:
                # No new work during interpreter shutdown (an atexit handler): the
                # rest runs here, one after another.
                inline.extend(tasks[index:])
                break
        for task in inline:
            task()
    finally:
        for future in futures:
            future.result()  # re-raises a worker's exception here


def _on(stream: torch.cuda.Stream | None) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext() if stream is None else torch.cuda.stream(stream)


def _workers(ring: _Ring, jobs: int) -> list[list[int]]:
    """The ring's chunks split among the worker threads, one list per worker."""
    count = max(1, min(len(ring.slots), threads(), jobs))
    return [list(range(j, len(ring.slots), count)) for j in range(count)]


# --------------------------------------------------------------------------- #
# Host to device
# --------------------------------------------------------------------------- #


def _fill_and_send(
    ring: _Ring,
    slots: list[int],
    jobs: Sequence[tuple[int, npt.NDArray[Any]]],
    out_bytes: torch.Tensor,
    bus: np.dtype[Any],
) -> None:
    itemsize = bus.itemsize
    with _on(ring.stream):
        for number, (offset, piece) in enumerate(jobs):
            slot = slots[number % len(slots)]
            nbytes = piece.size * itemsize
            ring.events[slot].synchronize()  # the chunk's previous DMA has read it
            cast_into(_typed(ring.host[slot], bus, piece.shape), piece, parallel=False)
            start = offset * itemsize
            out_bytes[start : start + nbytes].copy_(ring.slots[slot][:nbytes], non_blocking=True)
            ring.events[slot].record(ring.stream)


def _send(
    ring: _Ring, out_bytes: torch.Tensor, array: npt.NDArray[Any], bus: np.dtype[Any]
) -> None:
    """Copy (casting to ``bus``) ``array`` into the flat bytes ``out_bytes``, chunk by chunk.

    Returns once every element has been read from ``array``; the DMAs may still run
    on ``ring.stream``. The caller holds ``ring.lock``.
    """
    jobs = pieces(array, ring.chunk_bytes // bus.itemsize)
    split = _workers(ring, len(jobs))
    _run(
        [
            functools.partial(_fill_and_send, ring, slots, jobs[j :: len(split)], out_bytes, bus)
            for j, slots in enumerate(split)
        ]
    )


def _finish(ring: _Ring, device: torch.device, non_blocking: bool) -> None:
    """Order the caller's stream after the ring's copies; wait for them unless non_blocking."""
    assert ring.stream is not None
    done = new_event()
    done.record(ring.stream)
    torch.cuda.current_stream(device).wait_event(done)
    if not non_blocking:
        done.synchronize()


def _bus_dtype(bus: DType) -> np.dtype[Any]:
    if bus.numpy is None:
        raise TypeError(
            f"{bus.name} has no NumPy dtype to stage through; cast in torch "
            "(tensor_to_device) instead"
        )
    return bus.numpy


def _host_tensor(array: npt.NDArray[Any], bus: DType) -> torch.Tensor:
    """A CPU tensor with ``array``'s values as ``bus``: the array itself where torch may wrap it."""
    dtype = _bus_dtype(bus)
    if not (
        array.dtype == dtype  # so native byte order too
        and array.flags.c_contiguous
        and array.flags.writeable
        and all(stride >= 0 for stride in array.strides)  # NumPy: 1 element is contiguous
    ):
        copy = np.empty(array.shape, dtype=dtype)
        cast_into(copy, array)
        array = copy
    return share_ndarray(array, bus)


def stage_to_device(
    array: npt.NDArray[Any], bus: DType, device: torch.device, *, non_blocking: bool
) -> torch.Tensor:
    """A new C-contiguous tensor on ``device`` holding ``array``'s values as ``bus``.

    The cast into ``bus`` runs on the host, in NumPy (values exactly those of
    ``array.astype``), chunk by chunk into the staging ring while earlier chunks
    cross the bus; pass ``bus`` equal to the array's dtype for an exact widening
    that the caller finishes on the device. ``array`` may have any strides and
    byte order, and may be read-only; it has been read in full when this returns.

    ``non_blocking=False`` returns once the copy is complete; ``True`` lets the
    DMA run on (the result is ordered on the current stream either way).
    ``bus`` needs a NumPy dtype (not complex32, nor bfloat16/float8 without
    ml_dtypes): stage those with ``tensor_to_device``.
    """
    dtype = _bus_dtype(bus)
    assert bus.torch is not None
    nbytes = array.size * dtype.itemsize
    ring = _ring(device) if device.type == "cuda" and nbytes >= RING_BYTES else None
    if ring is None:
        host = _host_tensor(array, bus)
        return host.to(device, non_blocking=non_blocking)
    assert ring.stream is not None
    # Allocated on the copy stream, so that no earlier work of the caller's stream
    # on recycled memory must finish first; record_stream keeps the block from
    # reuse until the caller's stream is done with it.
    with torch.cuda.stream(ring.stream):
        out = torch.empty(array.shape, dtype=bus.torch, device=device)
    out.record_stream(torch.cuda.current_stream(device))
    with ring.lock:
        _send(ring, _flat_bytes(out), array, dtype)
        _finish(ring, device, non_blocking)
    return out


def tensor_to_device(
    host: torch.Tensor, device: torch.device, *, non_blocking: bool
) -> torch.Tensor:
    """A CPU tensor copied to ``device``, C-contiguous; large pageable data through the ring.

    Page-locked memory (the caller's or tensorbridge's) is copied directly,
    asynchronously under ``non_blocking=True`` as in torch: the caller must not
    write it until the current stream has passed the copy. Tensors that require
    grad keep their autograd graph (plain ``.to``).
    """
    if (
        host.numel() * host.element_size() < RING_BYTES
        or device.type != "cuda"
        or host.requires_grad
        or host.is_conj()
        or host.is_neg()
        or host.layout != torch.strided
        or host.is_pinned()
    ):
        return host.to(device, non_blocking=non_blocking, memory_format=torch.contiguous_format)
    dtype = from_torch_dtype(host.dtype)
    if dtype.numpy_builtin:
        array = host.numpy()
    elif dtype.bits_torch is not None:
        array = host.view(dtype.bits_torch).numpy()
    else:
        return host.to(device, non_blocking=non_blocking, memory_format=torch.contiguous_format)
    ring = _ring(device)
    if ring is None:
        return host.to(device, non_blocking=non_blocking, memory_format=torch.contiguous_format)
    assert ring.stream is not None
    with torch.cuda.stream(ring.stream):
        out = torch.empty(host.shape, dtype=host.dtype, device=device)
    out.record_stream(torch.cuda.current_stream(device))
    with ring.lock:
        _send(ring, _flat_bytes(out), array, array.dtype)
        _finish(ring, device, non_blocking)
    return out


def _flat_bytes(tensor: torch.Tensor) -> torch.Tensor:
    flat = tensor.view(-1)
    return flat if flat.dtype == torch.uint8 else flat.view(torch.uint8)


# --------------------------------------------------------------------------- #
# Device to host
# --------------------------------------------------------------------------- #


def tensor_to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A C-contiguous CPU copy of a CUDA tensor, final when this returns.

    Page-locked where the budget allows (one DMA at the bus rate), else pageable
    through the staging ring, else the plain ``.cpu()`` copy.
    """
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes < DIRECT_BYTES or tensor.device.type != "cuda":
        return tensor.to("cpu", memory_format=torch.contiguous_format)
    size = _pow2(nbytes)
    budget = _budget
    if budget.reserve(size, keep=budget.room_for_a_ring()):
        try:
            block = torch.empty(size, dtype=torch.uint8, pin_memory=True)
            view = block[:nbytes].view(tensor.dtype).view(tensor.shape)
            view.copy_(tensor, non_blocking=True)
            done = new_event()
            done.record(torch.cuda.current_stream(tensor.device))
            done.synchronize()
        except BaseException:
            budget.release(size)
            raise
        return _leased(block, budget, size, tensor)
    ring = _ring(tensor.device)
    if ring is None:
        return tensor.to("cpu", memory_format=torch.contiguous_format)
    source = tensor.resolve_conj().resolve_neg().contiguous()
    out = np.empty(nbytes, dtype=np.uint8)
    assert ring.stream is not None
    ring.stream.wait_stream(torch.cuda.current_stream(tensor.device))
    with ring.lock:
        _receive(ring, _flat_bytes(source), out)
    return from_numpy(out).view(tensor.dtype).view(tensor.shape)


def _receive(ring: _Ring, source: torch.Tensor, out: npt.NDArray[np.uint8]) -> None:
    """Copy the flat bytes ``source`` into ``out`` through the ring; final on return.

    The caller holds ``ring.lock``.
    """
    chunk = ring.chunk_bytes
    spans = [(a, min(a + chunk, out.size)) for a in range(0, out.size, chunk)]
    split = _workers(ring, len(spans))
    _run(
        [
            functools.partial(_fetch_and_copy, ring, slots, spans[j :: len(split)], source, out)
            for j, slots in enumerate(split)
        ]
    )


def _fetch_and_copy(
    ring: _Ring,
    slots: list[int],
    spans: Sequence[tuple[int, int]],
    source: torch.Tensor,
    out: npt.NDArray[np.uint8],
) -> None:
    # Up to len(slots) DMAs in flight per worker: the next chunk crosses the bus
    # while this one is copied (and faulted in) on the host.
    in_flight: list[tuple[int, int, int]] = []

    def land() -> None:
        slot, start, stop = in_flight.pop(0)
        ring.events[slot].synchronize()
        np.copyto(out[start:stop], ring.host[slot][: stop - start])

    with _on(ring.stream):
        for number, (start, stop) in enumerate(spans):
            slot = slots[number % len(slots)]
            if len(in_flight) == len(slots):
                land()
            ring.events[slot].synchronize()  # a DMA of an earlier call has used it
            ring.slots[slot][: stop - start].copy_(source[start:stop], non_blocking=True)
            ring.events[slot].record(ring.stream)
            in_flight.append((slot, start, stop))
        while in_flight:
            land()


# --------------------------------------------------------------------------- #
# Processes
# --------------------------------------------------------------------------- #

# Rings of a parent process, kept (never freed) in a forked child, where CUDA
# cannot run: their memory is the parent's.
_orphans: list[object] = []


def _after_fork_in_child() -> None:
    global _budget, _pool, _pool_lock, _ring_lock
    _orphans.append(_budget)
    _ring_lock = threading.Lock()
    _budget = _Budget(_budget.budget, _budget.staging_bytes)
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- #
# Whole batches: one host-to-device copy for every leaf
# --------------------------------------------------------------------------- #

_ALIGN: Final = 256  # bytes between leaves in the staging block (CUDA's alignment)
_batches = threading.local()


class BatchTransfer:
    """Every leaf of one batch staged into one page-locked block, sent in one copy.

    ``collate`` and ``tree_to_tensor`` going to a GPU open one for the batch
    (``batch_transfer``); each leaf then asks ``place`` for its host slot (in
    the dtype that crosses the bus) and receives the device tensor it becomes.
    ``send`` copies the used part of the block to the device in one DMA and
    finishes each leaf there (a view of the copy, or its exact widening). The
    block is the device's staging ring, locked for the batch: no page-locked
    memory beyond the budget. A batch larger than the ring places what fits;
    the rest of its leaves take the per-leaf path.
    """

    def __init__(self, device: torch.device, non_blocking: bool) -> None:
        self.device = device
        self.non_blocking = non_blocking
        self.ring = _ring(device) if device.type == "cuda" else None
        self.used = 0
        self.leaves: list[tuple[int, int, torch.dtype, tuple[int, ...], torch.Tensor]] = []
        self.block: torch.Tensor | None = None
        if self.ring is not None:
            self.ring.lock.acquire()
            self.ring.drain()  # no earlier DMA still reads the block
            storage = self.ring.slots[0].untyped_storage()
            self.block = torch.empty(0, dtype=torch.uint8).set_(storage)

    def place(
        self, shape: tuple[int, ...], bus: DType, target: DType
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(a page-locked host tensor to fill as ``bus``, the device result as ``target``)."""
        if self.block is None or bus.torch is None or target.torch is None:
            return None
        count = math.prod(shape)
        nbytes = count * bus.itemsize
        start = -(-self.used // _ALIGN) * _ALIGN
        if start + nbytes > self.block.numel():
            return None
        host = self.block[start : start + nbytes].view(bus.torch).view(shape)
        result = torch.empty(shape, dtype=target.torch, device=self.device)
        self.leaves.append((start, nbytes, bus.torch, shape, result))
        self.used = start + nbytes
        return host, result

    def send(self) -> None:
        """One DMA of every placed leaf, then each finished on the device; unlocks the block."""
        ring, block = self.ring, self.block
        if ring is None or block is None:
            return
        try:
            if self.leaves:
                staged = torch.empty(self.used, dtype=torch.uint8, device=self.device)
                staged.copy_(block[: self.used], non_blocking=True)
                for start, nbytes, bus, shape, result in self.leaves:
                    result.copy_(staged[start : start + nbytes].view(bus).view(shape))
                # Each chunk's event now guards the block: the next user waits for this DMA.
                stream = torch.cuda.current_stream(self.device)
                for event in ring.events:
                    event.record(stream)
                if not self.non_blocking:
                    ring.events[-1].synchronize()
        finally:
            self.close()

    def close(self) -> None:
        if self.ring is not None and self.block is not None:
            self.block = None
            self.ring.lock.release()


@contextlib.contextmanager
def batch_transfer(device: torch.device | None, non_blocking: bool) -> Generator[None]:
    """Within the block, host leaves going to ``device`` cross the bus in one copy."""
    if device is None or device.type != "cuda" or getattr(_batches, "open", None) is not None:
        yield
        return
    batch = BatchTransfer(device, non_blocking)
    _batches.open = batch
    try:
        yield
    except BaseException:
        batch.close()
        raise
    finally:
        _batches.open = None
    batch.send()


def open_batch(device: torch.device) -> BatchTransfer | None:
    """The batch being collected for ``device`` on this thread, if any."""
    batch: BatchTransfer | None = getattr(_batches, "open", None)
    if batch is None or batch.block is None or batch.device != device:
        return None
    return batch


# --------------------------------------------------------------------------- #
# The two moves every path makes
# --------------------------------------------------------------------------- #


def host_to_device(host: torch.Tensor, device: torch.device, *, non_blocking: bool) -> torch.Tensor:
    """Copy a CPU tensor to ``device``, C-contiguous, with torch's ``non_blocking``.

    Below ``RING_BYTES``, and for page-locked memory, this is the plain
    ``.to(device, non_blocking=...)``: under ``non_blocking=True`` a page-locked
    source (the caller's, as from ``DataLoader(pin_memory=True)``) is copied
    asynchronously and may still be read after the return, so the caller must
    not write it until the current stream has passed the copy, exactly as in
    torch. Large pageable data goes through the page-locked staging ring and
    has been read in full when this returns. ``non_blocking=False`` returns a
    complete result.
    """
    if host.numel() * host.element_size() < RING_BYTES and host.is_contiguous():
        return host.to(device, non_blocking=non_blocking)
    return tensor_to_device(host, device, non_blocking=non_blocking)


def device_to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A C-contiguous CPU copy of a device tensor, final when this returns.

    Small tensors take the plain ``.to("cpu")``; large CUDA tensors go through
    ``tensor_to_host``: a page-locked result within the page-locked memory
    budget, else a pageable one through the staging ring.
    """
    if tensor.numel() * tensor.element_size() < DIRECT_BYTES and tensor.is_contiguous():
        return tensor.cpu()
    if tensor.device.type == "cuda":
        return tensor_to_host(tensor)
    return tensor.to("cpu", memory_format=torch.contiguous_format)
