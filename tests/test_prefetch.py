"""``prefetch`` (contract section 10): a loader's batches converted onto a device, ahead.

Three groups:

- everywhere: the CPU pass (a plain ``tree_to_tensor`` per batch, when asked
  for), ``len()``, new passes, errors at the call and at their batch;
- everywhere, with CUDA's streams and events replaced by recorders: the order
  of the side-stream pipeline (how far ahead it reads, that the source resumes
  only after the copies issued have read host memory, that the caller's stream
  waits before a batch is handed over, deferred errors, cleanup on ``break``);
- ``cuda``: the real thing, checked by values (a consumer mutating its
  batches, sources that overwrite their buffers, memory reuse on the side
  stream while the caller still reads a batch) and for leaks over many epochs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import threading
import types
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import tensorbridge as tb
from tensorbridge import _prefetch


class Pair(NamedTuple):
    image: Any
    label: Any


@dataclasses.dataclass
class Sample:
    pixels: Any
    caption: str


class Squares(Dataset[dict[str, Any]]):
    """Sample i: a uint8 image filled with i % 256 and the label i."""

    def __init__(self, length: int = 10, side: int = 4) -> None:
        self.length = length
        self.side = side

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "image": np.full((3, self.side, self.side), index % 256, dtype=np.uint8),
            "label": index,
        }


def numbered(count: int, log: list[object] | None = None) -> Iterator[dict[str, Any]]:
    """A generator of dict batches; batch i holds the value i; logs each batch it makes."""
    for i in range(count):
        if log is not None:
            log.append(("next", i))
        yield {"image": np.full((2, 3), i, dtype=np.uint8), "weight": np.full(2, i / 2)}


# ---------------------------------------------------------------------------
# everywhere: the CPU pass
# ---------------------------------------------------------------------------


def test_cpu_pass_yields_each_batch_converted_with_the_policy() -> None:
    batches = [
        {"image": np.full((2, 3), i, dtype=np.uint8), "x": np.full(2, i + 0.1), "name": f"b{i}"}
        for i in range(3)
    ]
    out = list(tb.prefetch(batches, device="cpu"))
    assert len(out) == 3
    for i, batch in enumerate(out):
        assert batch["image"].dtype == torch.uint8  # FLOAT32 keeps integers
        assert batch["image"].tolist() == [[i] * 3] * 2
        assert batch["x"].dtype == torch.float32  # and makes float64 float32
        assert batch["x"].tolist() == [np.float32(i + 0.1)] * 2
        assert batch["name"] == f"b{i}"


def test_cpu_pass_applies_an_explicit_dtype_and_keeps_containers() -> None:
    batches = [
        Pair(np.full((2,), 7, dtype=np.uint8), 3),
        [Sample(np.full((2,), 5, dtype=np.int16), "cat")],
    ]
    first, second = tb.prefetch(batches, device="cpu", dtype=torch.float32)
    assert type(first) is Pair
    assert first.image.dtype == torch.float32
    assert first.image.tolist() == [7.0, 7.0]
    assert first.label == 3
    assert isinstance(second, list)
    assert type(second[0]) is Sample
    assert second[0].pixels.tolist() == [5.0, 5.0]
    assert second[0].caption == "cat"


def test_cpu_pass_shares_memory_as_tree_to_tensor_does() -> None:
    array = np.zeros(4, dtype=np.float32)
    (batch,) = tb.prefetch([{"x": array}], device="cpu")
    array[0] = 5.0
    assert batch["x"][0].item() == 5.0
    batch["x"][1] = 6.0
    assert array[1] == 6.0


def test_device_none_keeps_each_leaf_where_it_is() -> None:
    (batch,) = tb.prefetch([{"x": torch.arange(3.0, dtype=torch.float64)}], device=None)
    assert batch["x"].device.type == "cpu"
    assert batch["x"].dtype == torch.float32


def test_cpu_pass_reads_the_source_only_as_batches_are_asked_for() -> None:
    log: list[object] = []
    iterator = iter(tb.prefetch(numbered(5, log), device="cpu"))
    assert log == []
    next(iterator)
    assert log == [("next", 0)]
    next(iterator)
    assert log == [("next", 0), ("next", 1)]


def test_len_is_the_source_length() -> None:
    assert len(tb.prefetch([np.zeros(1)] * 7, device="cpu")) == 7
    loader = DataLoader(Squares(10), batch_size=4)
    assert len(tb.prefetch(loader, device="cpu")) == 3


def test_len_of_a_generator_source_raises_typeerror_but_list_still_works() -> None:
    prefetched = tb.prefetch(numbered(3), device="cpu")
    with pytest.raises(TypeError, match=r"no len\(\) because its source \(a generator\)"):
        len(prefetched)
    assert len(list(prefetched)) == 3


def test_each_iteration_is_a_new_pass_over_the_source() -> None:
    loader = DataLoader(Squares(6), batch_size=4)
    prefetched = tb.prefetch(loader, device="cpu", dtype=torch.float32)
    first = [batch["label"].tolist() for batch in prefetched]
    second = [batch["label"].tolist() for batch in prefetched]
    assert first == second == [[0, 1, 2, 3], [4, 5]]
    assert next(iter(prefetched))["image"].dtype == torch.float32


def test_a_generator_source_gives_one_pass_as_the_generator_itself_does() -> None:
    prefetched = tb.prefetch(numbered(2), device="cpu")
    assert len(list(prefetched)) == 2
    assert list(prefetched) == []


def test_a_dataloader_of_dicts_yields_dicts_of_tensors() -> None:
    loader = DataLoader(Squares(5), batch_size=2, collate_fn=tb.collate)
    batches = list(tb.prefetch(loader, device="cpu", dtype=torch.float32))
    assert [batch["label"].tolist() for batch in batches] == [[0, 1], [2, 3], [4]]
    assert batches[1]["image"].dtype == torch.float32
    assert batches[1]["image"][1].unique().tolist() == [3.0]


def test_source_error_propagates_at_the_batch_where_it_happened() -> None:
    def failing() -> Iterator[np.ndarray]:
        yield np.zeros(2)
        yield np.ones(2)
        raise KeyError("corrupt file")

    iterator = iter(tb.prefetch(failing(), device="cpu"))
    assert next(iterator).tolist() == [0.0, 0.0]
    assert next(iterator).tolist() == [1.0, 1.0]
    with pytest.raises(KeyError, match="corrupt file"):
        next(iterator)


def test_conversion_error_names_the_leaf_at_its_batch() -> None:
    batches = [{"x": np.zeros(2)}, {"x": np.array(["text"])}]
    iterator = iter(tb.prefetch(batches, device="cpu"))
    assert next(iterator)["x"].tolist() == [0.0, 0.0]
    with pytest.raises(tb.UnsupportedDtypeError, match=r'batch\["x"\]'):
        next(iterator)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"device": "nonsense"}, tb.TensorBridgeError, "not a device torch knows"),
        ({"device": "meta"}, tb.TensorBridgeError, "holds no data"),
        ({"device": 1.5}, tb.TensorBridgeError, "is not a device"),
        ({"device": "cpu", "casting": "bogus"}, tb.TensorBridgeError, "casting"),
        ({"device": "cpu", "copy": "yes"}, tb.TensorBridgeError, "copy"),
        ({"device": "cpu", "dtype": "float"}, tb.UnsupportedDtypeError, "ambiguous"),
        ({"device": "cpu", "dtype": "no_such_dtype"}, tb.TensorBridgeError, "no_such_dtype"),
        ({"device": "cpu", "depth": 0}, tb.InvalidArgumentError, "depth=0"),
        ({"device": "cpu", "depth": -1}, tb.InvalidArgumentError, "at least 1"),
        ({"device": "cpu", "depth": 1.5}, tb.InvalidArgumentError, "depth=1.5"),
        ({"device": "cpu", "depth": True}, tb.InvalidArgumentError, "depth=True"),
        ({"device": "cpu", "depth": "2"}, tb.InvalidArgumentError, "depth='2'"),
    ],
)
def test_invalid_options_raise_at_the_call_not_in_the_loop(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    consumed: list[int] = []

    def source() -> Iterator[np.ndarray]:
        consumed.append(1)
        yield np.zeros(1)

    with pytest.raises(error, match=match):
        tb.prefetch(source(), **options)
    assert consumed == []


def test_depth_errors_are_invalid_argument_and_value_errors() -> None:
    with pytest.raises(ValueError, match="depth=0") as caught:
        tb.prefetch([], device="cpu", depth=0)
    assert isinstance(caught.value, tb.InvalidArgumentError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("options", [{"device": "cuda"}, {"device": "cpu", "pin_memory": True}])
def test_cuda_options_without_cuda_raise_at_the_call(options: dict[str, Any]) -> None:
    with pytest.raises(tb.InvalidArgumentError, match=r"torch.cuda.is_available\(\) is False"):
        tb.prefetch([np.zeros(1)], **options)


@pytest.mark.parametrize(
    ("batches", "match"),
    [
        (3, r"received an int \(not a loader\)"),
        ({"image": np.zeros(2)}, r"received a dict \(a single batch\?\)"),
        ("abc", r"received a str"),
        (b"abc", r"received a bytes"),
    ],
)
def test_what_is_not_an_iterable_of_batches_is_refused(batches: object, match: str) -> None:
    with pytest.raises(tb.InvalidInputError, match=match):
        tb.prefetch(batches, device="cpu")  # type: ignore[call-overload]


def test_the_result_is_documented_and_reads_well() -> None:
    prefetched = tb.prefetch([np.zeros(1)], device="cpu", depth=3)
    assert "list" in repr(prefetched)
    assert "depth=3" in repr(prefetched)
    assert "prefetch" in tb.__all__


# ---------------------------------------------------------------------------
# everywhere: the CUDA pipeline, with streams and events replaced by recorders
# ---------------------------------------------------------------------------


class _Recorder:
    """Stands in for ``torch.cuda`` in ``_prefetch``; logs what the pipeline asks for."""

    def __init__(self, log: list[object]) -> None:
        self.log = log
        self.events = 0

    def new_stream(self, device: torch.device) -> Any:
        log = self.log

        class SideStream:
            name = "side"

            def wait_stream(self, other: Any) -> None:
                log.append((f"side waits for {other.name}",))

            def synchronize(self) -> None:
                log.append(("side synchronize",))

        return SideStream()

    def new_event(self) -> Any:
        log, number = self.log, self.events
        self.events += 1

        class Event:
            index = number

            def record(self, stream: object) -> None:
                log.append(("record", number))

            def synchronize(self) -> None:
                log.append(("event synchronize", number))

        return Event()

    def namespace(self) -> types.SimpleNamespace:
        log = self.log

        class CallerStream:
            name = "caller"

            def wait_event(self, event: Any) -> None:
                log.append(("caller waits", event.index))

        current: list[Any] = [CallerStream()]

        @contextlib.contextmanager
        def stream(stream: Any) -> Iterator[None]:
            current.append(stream)
            try:
                yield
            finally:
                current.pop()

        cuda = types.SimpleNamespace(current_stream=lambda device=None: current[-1], stream=stream)
        return types.SimpleNamespace(Tensor=torch.Tensor, cuda=cuda)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The log of a CUDA pass run with recorders; ``run(...)`` starts one."""
    log: list[object] = []
    recorder = _Recorder(log)
    monkeypatch.setattr(_prefetch, "new_stream", recorder.new_stream)
    monkeypatch.setattr(_prefetch, "new_event", recorder.new_event)
    monkeypatch.setattr(_prefetch, "torch", recorder.namespace())
    return log


def _pass(batches: Any, log: list[object], depth: int = 2, fail_at: int = -1) -> Iterator[Any]:
    def convert(batch: object) -> object:
        index = int(np.asarray(batch["image"]).flat[0])  # type: ignore[index]
        log.append(("convert", index))
        if index == fail_at:
            raise tb.UnsupportedDtypeError(f"batch {index} cannot be converted")
        return {"image": torch.full((2,), index)}

    return _prefetch._cuda_pass(batches, convert, torch.device("cuda", 0), depth)


def _index(batch: dict[str, torch.Tensor]) -> int:
    return int(batch["image"][0])


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_pipeline_holds_depth_batches_in_flight_beside_the_one_handed_over(
    recorded: list[object], depth: int
) -> None:
    iterator = _pass(numbered(10, recorded), recorded, depth=depth)
    assert _index(next(iterator)) == 0
    assert [entry for entry in recorded if entry[0] == "next"] == [  # type: ignore[index]
        ("next", i) for i in range(depth + 1)
    ]
    assert _index(next(iterator)) == 1
    assert ("next", depth + 1) in recorded
    assert ("next", depth + 2) not in recorded


def test_pipeline_resumes_the_source_only_after_the_last_copy_read_host_memory(
    recorded: list[object],
) -> None:
    assert [_index(batch) for batch in _pass(numbered(6, recorded), recorded)] == list(range(6))
    for i in range(1, 6):
        resumed = recorded.index(("next", i))
        assert recorded.index(("record", i - 1)) < recorded.index(("event synchronize", i - 1))
        assert recorded.index(("event synchronize", i - 1)) < resumed


def test_pipeline_makes_the_caller_stream_wait_before_each_batch(
    recorded: list[object],
) -> None:
    for batch in _pass(numbered(4, recorded), recorded):
        i = _index(batch)
        assert recorded[-1] == ("caller waits", i)
        assert recorded.index(("record", i)) < len(recorded) - 1
        recorded.append(("handed over", i))
    assert ("side waits for caller",) not in recorded  # host batches need no such wait


def test_pipeline_orders_the_side_stream_after_the_caller_for_device_sources(
    recorded: list[object],
) -> None:
    batches = [{"image": torch.full((2,), i)} for i in range(2)]
    # CPU tensors stand in for device tensors here; ``is_cuda`` is what is read.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
        list(_pass(batches, recorded))
    assert recorded.count(("side waits for caller",)) == 2
    assert recorded.index(("side waits for caller",)) < recorded.index(("convert", 0))


def test_pipeline_raises_a_source_error_at_its_batch_and_stops(recorded: list[object]) -> None:
    def failing() -> Iterator[dict[str, np.ndarray]]:
        yield from numbered(2, recorded)
        raise OSError("disk gone")

    iterator = _pass(failing(), recorded)
    assert _index(next(iterator)) == 0  # the error was met already, while filling
    assert _index(next(iterator)) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)


def test_pipeline_raises_a_conversion_error_at_its_batch_and_reads_no_further(
    recorded: list[object],
) -> None:
    iterator = _pass(numbered(10, recorded), recorded, fail_at=1)
    assert _index(next(iterator)) == 0
    with pytest.raises(tb.UnsupportedDtypeError, match="batch 1 cannot"):
        next(iterator)
    assert ("next", 2) not in recorded


def test_pipeline_break_waits_for_copies_in_flight_and_releases_the_source(
    recorded: list[object],
) -> None:
    closed: list[bool] = []

    def source() -> Iterator[dict[str, np.ndarray]]:
        try:
            yield from numbered(10, recorded)
        finally:
            closed.append(True)

    for batch in _pass(source(), recorded):
        if _index(batch) == 1:
            break
    del batch
    gc.collect()
    assert recorded[-1] == ("side synchronize",)
    assert closed == [True]


def test_pipeline_keeps_no_reference_to_a_batch_it_handed_over(recorded: list[object]) -> None:
    # The memory of a batch the caller dropped must be free before the next copy
    # is issued (the caching allocator can then reuse it, once the caller's stream
    # is done with it), so the pass must not hold it while it fills.
    handed: list[weakref.ref[torch.Tensor]] = []
    alive_while_filling: list[bool] = []

    def convert(batch: object) -> object:
        alive_while_filling.extend(ref() is not None for ref in handed)
        return torch.zeros(2)

    iterator = _prefetch._cuda_pass(range(5), convert, torch.device("cuda", 0), 1)
    batch = next(iterator)
    handed.append(weakref.ref(batch))
    del batch
    next(iterator)
    assert alive_while_filling == [False]


def test_an_empty_source_gives_an_empty_pass(recorded: list[object]) -> None:
    assert list(_pass([], recorded)) == []
    assert recorded == [("side synchronize",)]


# ---------------------------------------------------------------------------
# cuda: the real pipeline
# ---------------------------------------------------------------------------

# 16 MB of uint8 a batch: a copy long enough for a race to show.
BIG = (16, 1 << 20)


def _dict_batches(count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.integers(0, 255, size=(4, 3, 32, 32), dtype=np.uint8),
            "depth": rng.standard_normal((4, 8)),  # float64
            "label": np.arange(4, dtype=np.int64) + i,
            "pinned": torch.full((5,), float(i), dtype=torch.float64).pin_memory(),
            "meta": {"name": f"b{i}", "scale": np.float64(i) / 3},
        }
        for i in range(count)
    ]


@pytest.mark.cuda
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gpu_values_equal_the_cpu_conversion(depth: int) -> None:
    batches = _dict_batches(6)
    expected = [tb.tree_to_tensor(batch, device="cpu", dtype=torch.float32) for batch in batches]
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):  # the caller's current stream need not be the default one
        got = list(tb.prefetch(batches, device="cuda", dtype=torch.float32, depth=depth))
    torch.cuda.synchronize()
    assert len(got) == 6
    for batch, want, source in zip(got, expected, batches, strict=True):
        for key in ("image", "depth", "label", "pinned"):
            assert batch[key].device.type == "cuda", key
            assert batch[key].dtype == torch.float32, key
            assert torch.equal(batch[key].cpu(), want[key]), key
        # By hand, not through tensorbridge: uint8 -> float32 is exact.
        assert np.array_equal(batch["image"].cpu().numpy(), source["image"].astype(np.float32))
        assert batch["meta"]["name"] == source["meta"]["name"]
        assert batch["meta"]["scale"].item() == np.float32(source["meta"]["scale"])


@pytest.mark.cuda
def test_gpu_policy_keeps_uint8_and_int64() -> None:
    batches = _dict_batches(2)
    (first, _) = tb.prefetch(batches, device="cuda")
    assert first["image"].dtype == torch.uint8
    assert first["label"].dtype == torch.int64
    assert first["depth"].dtype == torch.float32
    assert np.array_equal(first["image"].cpu().numpy(), batches[0]["image"])


@pytest.mark.cuda
def test_gpu_consumer_mutating_yielded_batches_changes_nothing_else() -> None:
    batches = [{"x": np.full(BIG, i, dtype=np.uint8)} for i in range(6)]
    sums = []
    for batch in tb.prefetch(batches, device="cuda", dtype=torch.float32):
        batch["x"].add_(1000.0)  # in place, on the caller's stream
        sums.append(batch["x"][0, :8].sum().item())
    assert sums == [8 * (1000.0 + i) for i in range(6)]
    assert all(int(batch["x"][0, 0]) == i for i, batch in enumerate(batches))  # source unchanged


@pytest.mark.cuda
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("kind", ["numpy", "pinned", "pageable tensor"])
def test_gpu_source_that_overwrites_one_buffer_gives_each_batch_its_values(
    kind: str, depth: int
) -> None:
    if kind == "numpy":
        buffer: Any = np.zeros(BIG, dtype=np.uint8)
    else:
        buffer = torch.zeros(BIG, dtype=torch.uint8, pin_memory=kind == "pinned")

    def reusing() -> Iterator[dict[str, Any]]:
        for i in range(12):
            buffer[...] = i  # the same memory, rewritten for every batch
            yield {"x": buffer}

    got = []
    for batch in tb.prefetch(reusing(), device="cuda", dtype=torch.float32, depth=depth):
        torch.cuda._sleep(1_000_000)  # a step on the caller's stream
        got.append(batch["x"].unique().tolist())
    assert got == [[float(i)] for i in range(12)]


@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.parametrize("num_workers", [0, 2])
def test_gpu_dataloader_with_pinned_memory(num_workers: int) -> None:
    loader = DataLoader(
        Squares(40, side=64), batch_size=8, pin_memory=True, num_workers=num_workers
    )
    prefetched = tb.prefetch(loader, device="cuda", dtype=torch.float32)
    assert len(prefetched) == 5
    for epoch in range(2):
        labels = []
        for batch in prefetched:
            torch.cuda._sleep(1_000_000)
            assert batch["image"].dtype == torch.float32
            assert batch["image"].is_cuda
            per_sample = batch["image"].flatten(1)
            assert torch.equal(per_sample.min(1).values, per_sample.max(1).values), epoch
            assert per_sample[:, 0].cpu().tolist() == [float(v % 256) for v in batch["label"]]
            labels += batch["label"].tolist()
        assert labels == list(range(40))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [tb.FLOAT32, torch.float32])
def test_gpu_memory_of_a_batch_is_not_reused_while_the_caller_still_reads_it(
    dtype: Any,
) -> None:
    # Without record_stream the side stream may get a dropped batch's memory back
    # for the next copy while the caller's stream, sleeping, has yet to read it.
    batches = [np.full(BIG, i, dtype=np.uint8) for i in range(8)]
    sums = []
    for batch in tb.prefetch(batches, device="cuda", dtype=dtype, depth=1):
        torch.cuda._sleep(50_000_000)  # tens of milliseconds
        sums.append(batch.sum(dtype=torch.int64))  # runs after the sleep
        del batch  # the caller's last reference, before the next copy is issued
    numel = BIG[0] * BIG[1]
    assert [int(total) for total in sums] == [i * numel for i in range(8)]


@pytest.mark.cuda
def test_gpu_device_sources_are_read_after_the_caller_stream_wrote_them() -> None:
    def on_device() -> Iterator[torch.Tensor]:
        for i in range(6):
            torch.cuda._sleep(20_000_000)  # the fill below waits behind this
            yield torch.full((1 << 22,), float(i), dtype=torch.float64, device="cuda")

    got = [batch.unique().tolist() for batch in tb.prefetch(on_device(), device="cuda")]
    assert got == [[float(i)] for i in range(6)]


@pytest.mark.cuda
def test_gpu_errors_propagate_at_their_batch() -> None:
    def failing() -> Iterator[np.ndarray]:
        yield np.zeros(4)
        yield np.ones(4)
        raise KeyError("corrupt file")

    iterator = iter(tb.prefetch(failing(), device="cuda"))
    assert next(iterator).tolist() == [0.0] * 4
    assert next(iterator).tolist() == [1.0] * 4
    with pytest.raises(KeyError, match="corrupt file"):
        next(iterator)
    iterator = iter(tb.prefetch([np.zeros(2), np.array(["text"])], device="cuda"))
    assert next(iterator).tolist() == [0.0, 0.0]
    with pytest.raises(tb.UnsupportedDtypeError, match=r"batch"):
        next(iterator)


@pytest.mark.cuda
def test_gpu_many_epochs_and_breaks_leave_no_memory_thread_or_pinned_memory() -> None:
    def pinned_active() -> int:
        return int(torch.cuda.host_memory_stats().get("active_bytes.current", 0))

    batches = [{"x": np.full((1 << 20,), i, dtype=np.uint8)} for i in range(6)]
    prefetched = tb.prefetch(batches, device="cuda", dtype=torch.float32, pin_memory=True)
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    allocated, threads = torch.cuda.memory_allocated(), threading.active_count()
    pinned_after_warmup = None
    for epoch in range(40):
        for i, batch in enumerate(prefetched):
            assert int(batch["x"][0]) == i
            if epoch % 3 == 0 and i == 2:
                break  # an early exit leaves copies in flight behind
        del batch
        if epoch % 10 == 0:
            iterator = iter(prefetched)
            next(iterator)
            del iterator  # an abandoned pass, collected
        if epoch == 4:
            gc.collect()
            torch.cuda.synchronize()
            pinned_after_warmup = pinned_active()
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    assert torch.cuda.memory_allocated() == allocated
    assert threading.active_count() == threads
    assert pinned_after_warmup is not None
    # The pinned allocator frees a block lazily, once its copy's event is seen to
    # have completed: allow a few batches, far below the 200 batches a leak would hold.
    assert pinned_active() <= pinned_after_warmup + 8 * (1 << 20)
