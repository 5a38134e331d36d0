"""Splitting large NumPy copies across threads.

NumPy's casts and copies run on one core; ``np.copyto`` releases the GIL, so
the same calls on disjoint slices run in parallel and give exactly NumPy's
values. The thread count follows ``torch.get_num_threads()``, so a user's (or a
DataLoader worker's) torch thread setting is honoured and never changed.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["PARALLEL_BYTES", "chunks", "run"]

#: Copies that write fewer bytes than this stay on the calling thread: below it,
#: handing work to threads costs more than it saves.
PARALLEL_BYTES: Final = 4 << 20

_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)


def threads() -> int:
    return max(1, torch.get_num_threads())


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    # A forked child (a DataLoader worker) inherits the pool object but not its
    # threads: keyed by process id, it gets a pool of its own.
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
        # numpy's stubs type one overload of reshape with typing.Self, which pyright
        # cannot resolve under pythonVersion 3.10.
        out, array = out.reshape(-1), array.reshape(-1)  # pyright: ignore[reportUnknownMemberType]
    # The cast: with an Any argument (shape[0] of an NDArray[Any]) several overloads of
    # np.linspace match, and pyright makes the result unknown.
    edges = np.linspace(0, cast(int, out.shape[0]), workers + 1).astype(int)
    return [(out[a:b], array[a:b]) for a, b in itertools.pairwise(edges) if b > a]
