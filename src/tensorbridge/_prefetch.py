"""``prefetch``: move the next batches of a loader to the GPU while the caller works.

The copies of batch N+1, N+2... are issued on a side stream; before the caller
sees a batch its current stream waits on that batch's event, and every yielded
tensor is recorded on the caller's stream (``Tensor.record_stream``) so the
caching allocator cannot hand its memory to the side stream while the caller's
kernels still read it. On the CPU, or any device other than CUDA, each batch is
simply converted when it is asked for.

Host memory: the source is resumed (``next()``) only after every copy issued so
far has finished reading host memory, so a loader that reuses its buffers (a
generator that overwrites one array, a page-locked buffer refilled in place)
never has a batch read while it is being overwritten. The last source batch is
held until its copy has finished.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

import numpy.typing as npt
import torch

from ._compat import new_event, new_stream
from ._dtypes import FLOAT32, Casting, DTypeLike, DtypePolicy
from ._errors import InvalidArgumentError, InvalidInputError, a_type
from ._paths import LeafDtypes
from ._plan import Options
from ._tree import children, convert_tree, tensor_leaf

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

__all__ = ["Prefetcher", "prefetch"]

BatchT = TypeVar("BatchT")
KeyT = TypeVar("KeyT")

Convert = Callable[[object], object]


class Prefetcher(Generic[BatchT]):
    """The iterable ``prefetch`` returns: each ``iter()`` starts a new pass over the source.

    ``len()`` is the source's length, and raises ``TypeError`` when the source
    has none (a generator).
    """

    __slots__ = ("_batches", "_convert", "_depth", "_device")

    def __init__(
        self, batches: Iterable[object], convert: Convert, device: torch.device | None, depth: int
    ) -> None:
        self._batches = batches
        self._convert = convert
        self._device = device
        self._depth = depth

    def __iter__(self) -> Iterator[BatchT]:
        if self._device is not None and self._device.type == "cuda":
            passed = _cuda_pass(self._batches, self._convert, self._device, self._depth)
        else:
            passed = _plain_pass(self._batches, self._convert)
        return cast("Iterator[BatchT]", passed)

    def __len__(self) -> int:
        if not isinstance(self._batches, Sized):
            raise TypeError(
                f"this prefetch has no len() because its source (a "
                f"{type(self._batches).__name__}) has none; iterate it to the end, or pass "
                "a source with a length (a list, a DataLoader over a map-style dataset)"
            )
        return len(self._batches)

    def __repr__(self) -> str:
        return (
            f"<tensorbridge prefetch of a {type(self._batches).__name__} "
            f"onto {self._device}, depth={self._depth}>"
        )


def _plain_pass(batches: Iterable[object], convert: Convert) -> Iterator[object]:
    for batch in batches:
        yield convert(batch)


def _cuda_pass(
    batches: Iterable[object], convert: Convert, device: torch.device, depth: int
) -> Iterator[object]:
    """One pass: keep ``depth`` batches in flight beyond the one the caller holds.

    A batch that failed (in the source or in its conversion) sits in the queue
    as its exception and is raised when its turn comes; nothing after it is
    fetched.
    """
    source = iter(batches)
    stream = new_stream(device)
    queue: deque[tuple[object, torch.cuda.Event] | Exception] = deque()
    last_event: torch.cuda.Event | None = None
    host_batch: object = None  # the newest source batch; its copy may still read it
    ended = False
    try:
        while True:
            while not ended and len(queue) <= depth:
                if last_event is not None:
                    last_event.synchronize()  # the source may now reuse its buffers
                    host_batch = None
                try:
                    host_batch = next(source)
                except StopIteration:
                    ended = True
                    break
                except Exception as error:  # raised when the caller reaches this batch
                    queue.append(error)
                    ended = True
                    break
                try:
                    converted, last_event = _issue(host_batch, convert, stream, device)
                except Exception as error:
                    queue.append(error)
                    ended = True
                    break
                queue.append((converted, last_event))
                del converted
            if not queue:
                return
            item = queue.popleft()
            if isinstance(item, Exception):
                raise item
            batch, event = item
            del item
            _hand_over(batch, event, device)
            yield batch
            # The caller's reference is the only one left: once dropped, the next
            # copy may reuse the memory (after the caller's stream is done with it).
            del batch
    finally:
        # A break, an error or garbage collection: no copy left running that reads
        # memory about to be released.
        stream.synchronize()
        queue.clear()
        del host_batch


def _hand_over(batch: object, event: torch.cuda.Event, device: torch.device) -> None:
    """Order the caller's current stream after ``batch``'s copy, and its memory after the caller."""
    current = torch.cuda.current_stream(device)
    current.wait_event(event)
    for tensor in _tensors(batch):
        if tensor.device == device:
            # The side stream allocated it; without this the caching allocator
            # could give it to the next copy while the caller's kernels still read it.
            tensor.record_stream(current)


def _issue(
    batch: object, convert: Convert, stream: torch.cuda.Stream, device: torch.device
) -> tuple[object, torch.cuda.Event]:
    """Start ``batch``'s conversion on ``stream``; the event marks its end."""
    if any(tensor.is_cuda for tensor in _tensors(batch)):
        # Device data the caller's stream may still be writing. Host data needs no
        # such wait, which would hold the copy back until the caller's last step ends.
        stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        converted = convert(batch)
        event = new_event()
        event.record(stream)
    return converted, event


def _tensors(tree: object, path: frozenset[int] = frozenset()) -> Iterator[torch.Tensor]:
    """The tensor leaves of a batch, through the containers ``tree_to_tensor`` walks.

    A container met again on its own path (a cycle) is skipped here; the
    conversion raises for it with the path named.
    """
    if isinstance(tree, torch.Tensor):
        yield tree
        return
    entries = children(tree)
    if entries is None or id(tree) in path:
        return
    inner = path | {id(tree)}
    for _, value in entries:
        yield from _tensors(value, inner)


@overload
def prefetch(
    batches: DataLoader[dict[KeyT, Any]],
    /,
    *,
    device: str | torch.device | int | None,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    depth: int = ...,
) -> Prefetcher[dict[KeyT, torch.Tensor]]: ...
@overload
def prefetch(
    batches: Iterable[npt.NDArray[Any]] | Iterable[torch.Tensor],
    /,
    *,
    device: str | torch.device | int | None,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    depth: int = ...,
) -> Prefetcher[torch.Tensor]: ...
@overload
def prefetch(
    batches: Iterable[dict[KeyT, npt.NDArray[Any]]] | Iterable[dict[KeyT, torch.Tensor]],
    /,
    *,
    device: str | torch.device | int | None,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    depth: int = ...,
) -> Prefetcher[dict[KeyT, torch.Tensor]]: ...
@overload
def prefetch(
    batches: Iterable[list[npt.NDArray[Any]]] | Iterable[list[torch.Tensor]],
    /,
    *,
    device: str | torch.device | int | None,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    depth: int = ...,
) -> Prefetcher[list[torch.Tensor]]: ...
@overload
def prefetch(
    batches: Iterable[tuple[npt.NDArray[Any], ...]] | Iterable[tuple[torch.Tensor, ...]],
    /,
    *,
    device: str | torch.device | int | None,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    depth: int = ...,
) -> Prefetcher[tuple[torch.Tensor, ...]]: ...
@overload
def prefetch(
    batches: Iterable[object],
    /,
    *,
    device: str | torch.device | int | None,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = ...,
    copy: bool | None = ...,
    casting: Casting = ...,
    pin_memory: bool = ...,
    depth: int = ...,
) -> Prefetcher[Any]: ...
def prefetch(
    batches: Iterable[object],
    /,
    *,
    device: str | torch.device | int | None,
    dtype: DTypeLike | DtypePolicy | LeafDtypes = FLOAT32,
    copy: bool | None = None,
    casting: Casting = "same_kind",
    pin_memory: bool = False,
    depth: int = 2,
) -> Prefetcher[Any]:
    """Iterate over ``batches`` converted onto ``device``, copying the next ones ahead.

    Each batch goes through ``tree_to_tensor`` with the options given (the
    dtype policy applied; uint8 images cross the bus as uint8 and become
    float32 on the GPU). On a CUDA device the next ``depth`` batches are copied
    on a side stream while the caller computes on the current one; the
    caller's current stream waits for a batch's copy before the batch is
    handed over, and its memory stays valid until that stream is done with it.
    Elsewhere (``device="cpu"``, say) each batch is converted when asked for,
    so the same loop runs on every machine.

    The source is resumed only after the copies already issued have read its
    host memory, so a loader that reuses its buffers is safe. An exception
    from the source or from a batch's conversion is raised when the loop
    reaches that batch. Leaving the loop early (``break``) waits for the copies
    in flight and releases them.

    Args:
        batches: any iterable of batches: a ``DataLoader``, a generator, a list.
        device: where every batch goes, as for ``tree_to_tensor``.
        dtype: a policy or dtype, or per-leaf dtypes, as for ``tree_to_tensor``.
        copy: as for ``tree_to_tensor`` (a copy to a GPU always copies).
        casting: NumPy's casting rule, checked for every leaf's dtype change.
        pin_memory: stage host data in new page-locked memory before each copy,
            so pageable NumPy batches are copied asynchronously too.
        depth: how many batches are copied ahead of the one in use (at least 1).

    Returns:
        An iterable that makes a new pass over ``batches`` each time it is
        iterated, with ``len()`` where ``batches`` has one.

    Raises:
        TensorBridgeError: an option is invalid (raised here, not in the loop),
            ``batches`` is not an iterable of batches, or a batch cannot be
            converted (raised at that batch).

    >>> import numpy as np, tensorbridge as tb
    >>> batches = [{"image": np.full((2, 3), i, dtype=np.uint8), "label": i} for i in range(3)]
    >>> loader = tb.prefetch(batches, device="cpu")
    >>> len(loader), [batch["image"].dtype for batch in loader][0]
    (3, torch.uint8)
    """
    # Typed as object: the checks are for callers the annotations do not bind.
    received = cast(object, batches)
    if isinstance(received, (str, bytes, Mapping)) or not isinstance(received, Iterable):
        kind = "a single batch?" if isinstance(received, Mapping) else "not a loader"
        raise InvalidInputError(
            f"prefetch takes an iterable of batches and received {a_type(received)} ({kind}); "
            "pass a DataLoader, a generator or a list of batches"
        )
    ahead = cast(object, depth)
    if not isinstance(ahead, int) or isinstance(ahead, bool) or ahead < 1:
        raise InvalidArgumentError(
            f"depth={depth!r} is not a number of batches to copy ahead; pass an int of "
            "at least 1 (2, the default, hides a copy behind one step)"
        )
    # Every option is checked now, so a mistake shows at the call, not in the loop;
    # a per-leaf mapping of dtypes can only be checked against a batch.
    checked_dtype = FLOAT32 if isinstance(cast(object, dtype), Mapping) else dtype
    target = Options.for_tensor(checked_dtype, device, copy, casting, pin_memory, True).device
    non_blocking = target is not None and target.type == "cuda"

    def make(each: object) -> Options:
        return Options.for_tensor(each, target, copy, casting, pin_memory, non_blocking)

    def convert(batch: object) -> object:
        return convert_tree(batch, dtype, make, tensor_leaf, "prefetch")

    return Prefetcher(batches, convert, target, depth)
