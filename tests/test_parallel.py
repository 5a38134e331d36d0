"""Large casts run on several threads and still give exactly NumPy's values."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb


def _random_bits(dtype: np.dtype, count: int, seed: int) -> np.ndarray:
    """Every bit pattern is fair game: NaN payloads, infinities, subnormals, -0.0."""
    raw = np.random.default_rng(seed).integers(0, 256, count * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (np.float64, np.float32),
        (np.float32, np.float16),
        (np.int64, np.float32),
        (np.float16, np.float64),
    ],
)
def test_threaded_cast_equals_astype_bit_for_bit(source: type, target: type) -> None:
    assert torch.get_num_threads() >= 2, "the threaded path needs two torch threads"
    array = _random_bits(np.dtype(source), (8 << 20) // np.dtype(source).itemsize, seed=1)
    result = tb.to_tensor(array, dtype=target, casting="unsafe").numpy()
    with np.errstate(all="ignore"):
        expected = array.astype(target)
    width = f"u{np.dtype(target).itemsize}"
    assert np.array_equal(result.view(width), expected.view(width))


def test_threaded_cast_of_a_strided_view() -> None:
    array = _random_bits(np.dtype(np.float64), 4 << 20, seed=2).reshape(1024, -1)[::2, ::3]
    result = tb.to_tensor(array).numpy()
    with np.errstate(all="ignore"):
        expected = array.astype(np.float32)
    assert np.array_equal(result.view(np.uint32), expected.view(np.uint32))


def test_large_collate_equals_astype() -> None:
    samples = [np.random.default_rng(i).standard_normal((3, 64, 64)) for i in range(128)]
    batch = tb.collate(samples).numpy()
    assert np.array_equal(batch, np.stack(samples).astype(np.float32))


def test_a_forked_child_gets_its_own_thread_pool() -> None:
    # The parent's pool threads do not survive fork(); a child that reused the
    # pool object would wait forever. Run in a subprocess with a time limit.
    script = textwrap.dedent(
        """
        import multiprocessing, numpy as np, tensorbridge as tb
        big = np.ones(4 << 20)
        tb.to_tensor(big)                      # the parent's pool starts here

        def child(queue):
            # NumPy sums: a parallel torch kernel in a forked child hangs when the
            # parent used torch's pool (torch's own limitation; tensorbridge's casts
            # avoid it there, see _kernels.torch_kernel_safe).
            queue.put(float(tb.to_tensor(big).numpy().sum()))

        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        process = context.Process(target=child, args=(queue,))
        process.start()
        print(queue.get(timeout=60))
        process.join(60)
        """
    )
    done = S.run_child(script, warnings="error::RuntimeWarning")
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) == float(4 << 20)
