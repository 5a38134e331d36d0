"""Threads: NumPy copies split across a pool, and when torch's own threads are safe to use.

NumPy's casts and copies run on one core; ``np.copyto`` releases the GIL, so
the same calls on disjoint slices run in parallel and give exactly NumPy's
values. The thread count follows ``torch.get_num_threads()``, so a user's (or a
DataLoader worker's) torch thread setting is honoured and never changed.

torch's intra-op thread pool does not survive ``fork``: in a forked child whose
parent ran a parallel torch kernel, the child's next parallel kernel waits
forever for threads that no longer exist (plain ``torch.from_numpy(a).float()``
of 4M elements hangs there, and so does ``torch.stack`` of a batch).
DataLoader workers run one torch thread, which is safe; anywhere else a forked
child does its large copies and casts in NumPy, on this module's pool, which
is made anew in each process.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

import numpy.typing as npt
import torch

from ._compat import reshape

__all__ = ["PARALLEL_BYTES", "TORCH_GRAIN", "chunks", "run", "threads", "torch_threads_safe"]

#: Copies that write fewer bytes than this stay on the calling thread: below it,
#: handing work to threads costs more than it saves.
PARALLEL_BYTES: Final = 4 << 20

#: torch runs a kernel on the calling thread below this many elements
#: (``at::internal::GRAIN_SIZE``), so such kernels are safe even after fork.
TORCH_GRAIN: Final = 32768

_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)
_forked = False


def _note_fork() -> None:
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_note_fork)


def threads() -> int:
    """The number of threads torch would use (at least 1)."""
    return max(1, torch.get_num_threads())


def torch_threads_safe(numel: int) -> bool:
    """Whether a torch kernel over ``numel`` elements can run here without hanging (see above)."""
    return not _forked or numel < TORCH_GRAIN or torch.get_num_threads() == 1


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    # A forked child inherits the pool object but not its threads: keyed by
    # process id, it gets a pool of its own.
    key = (os.getpid(), workers)
    if _pool is None or _pool_key != key:
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tensorbridge")
        _pool_key = key
    return _pool


def run(tasks: Sequence[Callable[[], Any]]) -> None:
    """Run the tasks, on a thread pool when there are several and threads to spare."""
    workers = min(threads(), len(tasks))
    if workers <= 1:
        for task in tasks:
            task()
        return
    futures: list[Future[Any]] = []
    inline: Sequence[Callable[[], Any]] = ()
    try:
        pool = _executor(threads())
        for index, task in enumerate(tasks):
            try:
                futures.append(pool.submit(task))
            except RuntimeError:
                # The pool takes no new work during interpreter shutdown (an atexit
                # handler) or after it was shut down: the rest runs on this thread.
                inline = tasks[index:]
                break
        for task in inline:
            task()
    finally:
        for future in futures:
            future.result()  # re-raises a task's exception here


def chunks(
    out: npt.NDArray[Any], array: npt.NDArray[Any]
) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any]]] | None:
    """Disjoint matching slices of ``out`` and ``array`` for a parallel copy, or None."""
    workers = threads()
    if workers <= 1 or out.nbytes < PARALLEL_BYTES or out.ndim == 0:
        return None
    if out.shape[0] < workers:
        if not (out.flags.c_contiguous and array.flags.c_contiguous):
            return None
        out, array = reshape(out, -1), reshape(array, -1)
    rows = int(out.shape[0])
    edges = [rows * part // workers for part in range(workers + 1)]
    return [(out[a:b], array[a:b]) for a, b in itertools.pairwise(edges) if b > a]
