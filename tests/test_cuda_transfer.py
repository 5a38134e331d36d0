"""The transfer engine (``tensorbridge._transfer``): contract section 10, transfers.

The staging ring, the page-locked memory budget and torch's meaning of
``non_blocking``. The first tests run everywhere: the budget's settings and
accounting, the split of any-strided arrays into ring-sized pieces, and the
whole host-side pipeline on a ring of ordinary CPU memory (no events, no
streams). The tests marked ``cuda`` skip without a GPU; the race tests write
the source right after every non-blocking call, and the values must still be
those the source had at the call.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb
from tensorbridge import _transfer
from tensorbridge._dtypes import from_numpy_dtype, from_torch_dtype

MB = 1 << 20


@pytest.fixture(autouse=True)
def _restore_budget() -> Iterator[None]:
    budget, staging = _transfer.pinned_memory_budget(), _transfer._budget.staging_bytes
    yield
    _transfer.set_pinned_memory_budget(budget, staging_bytes=staging)


class _NoEvent:
    """A ring event for CPU memory, where every copy is complete on return."""

    def __init__(self) -> None:
        self.records = 0

    def record(self, stream: Any = None) -> None:
        self.records += 1

    def synchronize(self) -> None:
        pass


def _cpu_ring(slots: int, chunk: int) -> Any:
    block = torch.empty(slots * chunk, dtype=torch.uint8)
    parts = [block[i * chunk : (i + 1) * chunk] for i in range(slots)]
    return _transfer._Ring(parts, None, [_NoEvent() for _ in parts], slots * chunk)


def _layouts() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    base = rng.standard_normal((6, 10, 14))
    return [
        base,
        base[::-1],
        base[:, ::-2, 3:],
        base.transpose(2, 0, 1),
        base[..., 5],
        base.astype(">f8"),
        np.broadcast_to(base[:1], (4, 10, 14)),
        base.reshape(-1)[::3],
        np.asfortranarray(base),
    ]


# ---------------------------------------------------------------------------
# everywhere
# ---------------------------------------------------------------------------


def test_default_budget_is_256_mb_with_a_32_mb_ring():
    assert _transfer.DEFAULT_PINNED_MEMORY_BUDGET == 256 * MB
    assert _transfer.DEFAULT_STAGING_BYTES == 32 * MB


def test_budget_can_be_set_and_read_back():
    _transfer.set_pinned_memory_budget(64 * MB, staging_bytes=8 * MB)
    assert _transfer.pinned_memory_budget() == 64 * MB
    assert _transfer._budget.staging_bytes == 8 * MB
    _transfer.set_pinned_memory_budget(0)
    assert _transfer.pinned_memory_budget() == 0
    assert _transfer._budget.staging_bytes == 0  # the ring no longer fits: none


@pytest.mark.parametrize("value", [-1, 1.5, "256MB", None, True])
def test_budget_rejects_what_is_not_a_byte_count(value: Any):
    before = _transfer.pinned_memory_budget()
    with pytest.raises(tb.TensorBridgeError, match=r"nbytes=.* is not a number of bytes"):
        _transfer.set_pinned_memory_budget(value)
    assert _transfer.pinned_memory_budget() == before


def test_ring_larger_than_budget_raises():
    with pytest.raises(tb.TensorBridgeError, match="does not fit in the budget"):
        _transfer.set_pinned_memory_budget(16 * MB, staging_bytes=32 * MB)


def test_ring_below_one_megabyte_raises():
    with pytest.raises(tb.TensorBridgeError, match="too small for a staging ring"):
        _transfer.set_pinned_memory_budget(16 * MB, staging_bytes=4096)


def test_budget_reserves_up_to_its_limit_and_no_further():
    budget = _transfer._Budget(100, 0)
    assert budget.reserve(60)
    assert not budget.reserve(41)
    assert budget.reserve(40)
    budget.release(60)
    assert budget.held == 40


def test_a_leased_result_counts_until_its_last_view_is_gone():
    budget = _transfer._Budget(1 << 16, 0)
    assert budget.reserve(1 << 12)
    like = torch.empty((4, 8), dtype=torch.float32)
    block = torch.arange(1 << 12, dtype=torch.int64).to(torch.uint8)
    result = _transfer._leased(block, budget, 1 << 12, like)
    assert result.shape == (4, 8)
    assert result.dtype == torch.float32
    array = result.numpy()
    view = torch.from_numpy(array)[1:]
    del result, array
    gc.collect()
    assert budget.held == 1 << 12  # the torch view still holds the memory
    view[0, 0] = 1.5
    assert block[32:36].view(torch.float32).item() == 1.5  # shares the block
    del view
    gc.collect()
    assert budget.held == 0


@pytest.mark.parametrize("chunk_items", [1, 7, 64, 140, 10_000])
def test_pieces_cover_the_array_in_c_order(chunk_items: int):
    for array in _layouts():
        parts = _transfer.pieces(array, chunk_items)
        offset = 0
        for start, piece in parts:
            assert start == offset
            assert piece.size <= chunk_items
            offset += piece.size
        assert offset == array.size
        joined = np.concatenate([piece.ravel() for _, piece in parts])
        np.testing.assert_array_equal(joined, array.ravel(order="C"))


def test_pieces_are_views_not_copies():
    array = np.zeros((8, 9))[:, ::2]
    for _, piece in _transfer.pieces(array, 10):
        assert np.shares_memory(piece, array)


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_host_pipeline_casts_any_layout_as_numpy_does(slots: int):
    ring = _cpu_ring(slots, 256)
    bus = np.dtype(np.float32)
    for array in _layouts():
        out = torch.full((array.size,), -7.0, dtype=torch.float32)
        _transfer._send(ring, out.view(torch.uint8), array, bus)
        S.assert_same_bits(out.numpy().reshape(array.shape), array.astype(np.float32))


def test_host_pipeline_keeps_the_narrow_dtype_for_a_device_widening():
    ring = _cpu_ring(2, 64)
    images = np.random.default_rng(1).integers(0, 256, (5, 33, 7), dtype=np.uint8)[:, ::-1]
    out = torch.zeros(images.size, dtype=torch.uint8)
    _transfer._send(ring, out, images, np.dtype(np.uint8))
    np.testing.assert_array_equal(out.numpy().reshape(images.shape), images)


def test_host_pipeline_records_an_event_per_chunk():
    ring = _cpu_ring(2, 64)
    array = np.arange(100, dtype=np.float64)  # 400 float32 bytes: 7 chunks of 64
    out = torch.zeros(100, dtype=torch.float32)
    _transfer._send(ring, out.view(torch.uint8), array, np.dtype(np.float32))
    assert sum(event.records for event in ring.events) == 7
    np.testing.assert_array_equal(out.numpy(), array.astype(np.float32))


def test_receive_pipeline_copies_every_byte():
    ring = _cpu_ring(3, 100)
    source = torch.arange(1234, dtype=torch.int32)
    out = np.full(source.numel() * 4, 0xAB, dtype=np.uint8)
    _transfer._receive(ring, source.view(torch.uint8), out)
    np.testing.assert_array_equal(out.view(np.int32), source.numpy())


def test_host_tensor_copies_read_only_memory_without_warning():
    data = bytes(range(16))
    readonly = np.frombuffer(data, dtype=np.uint8)
    host = _transfer._host_tensor(readonly, from_numpy_dtype(np.dtype(np.uint8)))
    host += 1
    assert data == bytes(range(16))


def test_host_tensor_shares_an_array_torch_can_wrap():
    array = np.zeros(8, dtype=np.float32)
    host = _transfer._host_tensor(array, from_numpy_dtype(array.dtype))
    host[3] = 2.0
    assert array[3] == 2.0


def test_stage_to_device_needs_a_numpy_bus_dtype():
    complex32 = from_torch_dtype(torch.complex32)
    with pytest.raises(TypeError, match="no NumPy dtype"):
        _transfer.stage_to_device(
            np.zeros(4, np.complex64), complex32, torch.device("cpu"), non_blocking=False
        )


# ---------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------

# Elements: 36 MB as float32, above _transfer.RING_BYTES (32 MB), so that host-to-device
# copies take the ring, and more than one lap of it.
N = 9 << 20


def _cuda() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device())


@pytest.mark.cuda
@pytest.mark.parametrize("non_blocking", [False, True])
def test_narrowing_cast_through_the_ring_gives_numpy_values(non_blocking: bool):
    a = np.random.default_rng(0).standard_normal(2 * N)[::-2]  # strided, reversed
    bus = from_numpy_dtype(np.dtype(np.float32))
    t = _transfer.stage_to_device(a, bus, _cuda(), non_blocking=non_blocking)
    assert t.is_contiguous()
    assert t.dtype == torch.float32
    S.assert_same_bits(t.cpu().numpy(), a.astype(np.float32))


@pytest.mark.cuda
def test_widening_crosses_narrow_and_casts_on_the_device():
    a = np.random.default_rng(1).integers(0, 256, (4 * N // 1024, 1024), dtype=np.uint8)
    t = _transfer.stage_to_device(a, from_numpy_dtype(a.dtype), _cuda(), non_blocking=True)
    assert t.dtype == torch.uint8
    S.assert_same_bits(t.float().cpu().numpy(), a.astype(np.float32))


@pytest.mark.cuda
@pytest.mark.parametrize("path", ["stage", "tensor", "to_tensor"])
def test_source_overwritten_after_every_non_blocking_call(path: str):
    a = np.empty(N, dtype=np.float32)
    bus = from_numpy_dtype(a.dtype)
    results = []
    for i in range(12):
        a.fill(i)
        if path == "stage":
            t = _transfer.stage_to_device(a, bus, _cuda(), non_blocking=True)
        elif path == "tensor":
            t = _transfer.host_to_device(torch.from_numpy(a), _cuda(), non_blocking=True)
        else:
            t = tb.to_tensor(a, device="cuda", non_blocking=True)
        a.fill(-1)  # the caller may write the moment the call returns
        results.append(t)
    for i, t in enumerate(results):
        assert torch.all(t == i).item(), f"call {i} read a later write"


@pytest.mark.cuda
def test_ring_reuse_under_back_to_back_calls():
    _transfer.set_pinned_memory_budget(64 * MB, staging_bytes=8 * MB)
    arrays = [np.full(N, i, dtype=np.float64) for i in range(10)]
    bus = from_numpy_dtype(np.dtype(np.float32))
    results = [_transfer.stage_to_device(x, bus, _cuda(), non_blocking=True) for x in arrays]
    torch.cuda.synchronize()
    for i, t in enumerate(results):
        assert torch.all(t == i).item()
    assert _transfer.pinned_memory_in_use() <= _transfer.pinned_memory_budget()


@pytest.mark.cuda
def test_several_threads_convert_through_the_ring_at_once():
    errors: list[BaseException] = []
    bus = from_numpy_dtype(np.dtype(np.float32))

    def work(index: int) -> None:
        try:
            for step in range(4):
                value = index * 10 + step
                a = np.full(N // 2, value, dtype=np.float64)
                t = _transfer.stage_to_device(a, bus, _cuda(), non_blocking=True)
                a.fill(-1)
                back = _transfer.device_to_host(t)
                assert bool(torch.all(back == value)), (index, step)
        except Exception as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors


@pytest.mark.cuda
@pytest.mark.parametrize("non_blocking", [False, True])
def test_caller_pinned_source(non_blocking: bool):
    pinned = torch.full((N,), 3.0, dtype=torch.float32).pin_memory()
    t = _transfer.host_to_device(pinned, _cuda(), non_blocking=non_blocking)
    if non_blocking:
        # torch's promise: the caller waits for the stream before writing.
        torch.cuda.current_stream().synchronize()
    pinned.fill_(-1.0)
    assert torch.all(t == 3.0).item()


@pytest.mark.cuda
def test_result_is_ordered_on_the_callers_stream():
    side = torch.cuda.Stream()
    a = np.arange(N, dtype=np.float64)
    bus = from_numpy_dtype(np.dtype(np.float32))
    with torch.cuda.stream(side):
        t = _transfer.stage_to_device(a, bus, _cuda(), non_blocking=True)
        doubled = t * 2  # on the side stream, which must wait for the copy
    side.synchronize()
    S.assert_same_bits(doubled.cpu().numpy(), a.astype(np.float32) * 2)


@pytest.mark.cuda
def test_copy_into_a_slice_of_a_preallocated_device_buffer():
    batch = torch.full((3, N), -5.0, device="cuda")
    a = np.random.default_rng(2).standard_normal((N,))
    _transfer.copy_into_device(batch[1], a, non_blocking=True)
    S.assert_same_bits(batch[1].cpu().numpy(), a.astype(np.float32))
    assert torch.all(batch[0] == -5.0).item()
    assert torch.all(batch[2] == -5.0).item()


@pytest.mark.cuda
def test_kept_results_stay_within_the_budget():
    _transfer.set_pinned_memory_budget(96 * MB, staging_bytes=16 * MB)
    # 18 MB each, 32 MB as torch's host allocator rounds: two fit beside the ring.
    source = torch.arange(4 * N, device="cuda", dtype=torch.int32)
    pieces = [source[i * (N // 2) : (i + 1) * (N // 2)] for i in range(8)]
    kept = [_transfer.device_to_host(piece) for piece in pieces]
    assert _transfer.pinned_memory_in_use() <= 96 * MB
    for piece, host in zip(pieces, kept, strict=True):
        assert host.is_contiguous()
        np.testing.assert_array_equal(host.numpy(), piece.cpu().numpy())
    pinned = [host for host in kept if host.is_pinned()]
    assert pinned
    assert len(pinned) < len(kept)
    del kept, pinned, host
    gc.collect()
    assert _transfer.pinned_memory_in_use() <= 16 * MB  # the ring only


@pytest.mark.cuda
@pytest.mark.parametrize("budget", [0, 256 * MB])
@pytest.mark.parametrize("dtype", [torch.bool, torch.bfloat16, torch.complex64, torch.float64])
def test_device_to_host_values_for_any_dtype_and_layout(budget: int, dtype: torch.dtype):
    _transfer.set_pinned_memory_budget(budget)
    base = torch.randn(2048, 1024, device="cuda").to(dtype)
    for tensor in (base, base.t(), base[::2]):
        host = _transfer.device_to_host(tensor)
        assert host.is_contiguous()
        assert host.device.type == "cpu"
        assert torch.equal(host, tensor.cpu())


@pytest.mark.cuda
def test_pageable_results_through_the_ring_are_exact():
    _transfer.set_pinned_memory_budget(16 * MB, staging_bytes=16 * MB)  # no room for results
    tensor = torch.randn(N // 1024, 1024, device="cuda")
    for each in (tensor, tensor.t(), torch.view_as_complex(tensor.view(-1, 2)).conj()):
        host = _transfer.device_to_host(each)
        assert not host.is_pinned()
        assert host.is_contiguous()
        assert torch.equal(host.resolve_conj(), each.cpu().resolve_conj())


@pytest.mark.cuda
def test_changing_the_ring_size_between_calls():
    bus = from_numpy_dtype(np.dtype(np.float32))
    a = np.arange(N, dtype=np.float32)
    for staging in (4 * MB, 64 * MB, 1 * MB):
        _transfer.set_pinned_memory_budget(128 * MB, staging_bytes=staging)
        t = _transfer.stage_to_device(a, bus, _cuda(), non_blocking=False)
        np.testing.assert_array_equal(t.cpu().numpy(), a)
        assert _transfer.pinned_memory_in_use() <= 128 * MB


@pytest.mark.cuda
def test_small_calls_take_the_plain_path():
    a = np.arange(16, dtype=np.float64)
    t = _transfer.stage_to_device(
        a, from_numpy_dtype(np.dtype(np.float32)), _cuda(), non_blocking=True
    )
    S.assert_same_bits(t.cpu().numpy(), a.astype(np.float32))
    assert _transfer.device_to_host(t).tolist() == list(range(16))


def test_staging_wraps_only_arrays_torch_can_wrap():
    # NumPy calls any array of one element contiguous, whatever its strides; a
    # reversed one still cannot be wrapped by torch (found on an H100 run).
    for array in (
        np.array([False, True])[::-1][:1],
        np.arange(3, dtype=np.float32).reshape(1, 3)[::-1],
    ):
        host = _transfer._host_tensor(array, from_numpy_dtype(array.dtype))
        np.testing.assert_array_equal(host.numpy(), array)
