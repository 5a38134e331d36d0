"""``non_blocking`` means what it means in torch: contract section 10, devices.

A page-locked tensor of the caller's (what ``DataLoader(pin_memory=True)``
hands over) is copied asynchronously under ``non_blocking=True``: ``to_tensor``
returns while the copy is still queued on the current stream, and the values
are right once the stream has passed it. Under ``non_blocking=False`` the
result is complete and independent of the source when the call returns.

To tell the two apart, the current stream is first kept busy with matrix
products for about a quarter of a second, so that a copy queued behind them
cannot have ended by the time the call returns; an event recorded right after
the call is then still pending. Every test here needs a GPU (the ``cuda``
marker skips them without one).
"""

from __future__ import annotations

import math

import pytest
import torch

import tensorbridge as tb

pytestmark = pytest.mark.cuda

MB = 1 << 20
BUSY_S = 0.25

# (source dtype, result dtype): the same dtype, and a widening that crosses the
# bus as uint8 and is cast on the GPU after the copy.
DTYPES = [(torch.float32, torch.float32), (torch.uint8, torch.float32)]
# Below and above the size from which pageable data goes through the staging ring.
SIZES_MB = [1, 64]


def _keep_the_stream_busy(device: torch.device, seconds: float = BUSY_S) -> None:
    """Queue about ``seconds`` of matrix products on the current stream, and return at once."""
    a = torch.randn(4096, 4096, device=device)
    out = torch.empty_like(a)
    torch.mm(a, a, out=out)  # the first product chooses its kernel
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    torch.mm(a, a, out=out)
    end.record()
    end.synchronize()
    each_s = max(start.elapsed_time(end) / 1000, 1e-6)
    for _ in range(math.ceil(seconds / each_s)):
        torch.mm(a, a, out=out)


def _page_locked(megabytes: int, dtype: torch.dtype) -> torch.Tensor:
    items = megabytes * MB // torch.empty((), dtype=dtype).element_size()
    return (torch.arange(items) % 251).to(dtype).pin_memory()


@pytest.mark.parametrize("megabytes", SIZES_MB)
@pytest.mark.parametrize(("source_dtype", "result_dtype"), DTYPES, ids=str)
def test_page_locked_tensor_is_copied_asynchronously(
    megabytes: int, source_dtype: torch.dtype, result_dtype: torch.dtype
) -> None:
    device = torch.device("cuda")
    source = _page_locked(megabytes, source_dtype)
    expected = source.to(result_dtype)
    assert source.is_pinned()

    _keep_the_stream_busy(device)
    result = tb.to_tensor(source, dtype=result_dtype, device=device, non_blocking=True)
    returned = torch.cuda.Event()
    returned.record()

    # The copy is queued behind the products: had to_tensor waited for it, the
    # stream would be idle by now.
    assert not returned.query(), "to_tensor(non_blocking=True) waited for the copy"
    assert result.device.type == "cuda"
    assert result.dtype == result_dtype
    torch.cuda.current_stream(device).synchronize()
    assert torch.equal(result.cpu(), expected)


@pytest.mark.parametrize("megabytes", SIZES_MB)
@pytest.mark.parametrize(("source_dtype", "result_dtype"), DTYPES, ids=str)
def test_blocking_copy_is_complete_and_independent_on_return(
    megabytes: int, source_dtype: torch.dtype, result_dtype: torch.dtype
) -> None:
    device = torch.device("cuda")
    source = _page_locked(megabytes, source_dtype)
    expected = source.to(result_dtype)

    _keep_the_stream_busy(device)
    result = tb.to_tensor(source, dtype=result_dtype, device=device)  # non_blocking=False
    # Had the copy still been queued behind the products, it would read this write.
    source.fill_(7)
    assert torch.equal(result.cpu(), expected)
