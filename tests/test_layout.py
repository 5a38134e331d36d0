"""Contract section 5, the layout of a copied result, and rule 6 on size-1 dimensions.

"A copied result is writable (except as stated for grad views) and dense, and keeps
the input's memory order wherever the input is dense (every element stored once, no
gaps: C order, Fortran order, channels-last or any other permutation of the axes), as
``ndarray.astype`` (order ``"K"``) and ``Tensor.float()`` (``torch.preserve_format``)
keep it; any other input (a slice with gaps, a broadcast view) gives a C-contiguous
result."

Expected layouts come from NumPy itself: for a dense input, the strides of
``x.astype(target, order="K")``; strides of size-1 dimensions address nothing and are
not compared (section 5, rule 6), except between two calls, which must agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import strategies as S
import tensorbridge as tb

as_strided = np.lib.stride_tricks.as_strided

# ---------------------------------------------------------------------------
# helpers (candidates for tests/strategies.py)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# layouts: dense in any axis order (reversed axes too), with gaps, broadcast
# ---------------------------------------------------------------------------


@dataclass
class Layout:
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements
    offset: int
    size: int  # elements of the base
    kind: str  # "dense", "gaps" or "broadcast"

    def ndarray(self, base: np.ndarray) -> np.ndarray:
        size = base.itemsize
        return as_strided(
            base[self.offset :], self.shape, tuple(s * size for s in self.strides), writeable=True
        )

    def tensor(self, base: np.ndarray) -> torch.Tensor:
        assert all(s >= 0 for s in self.strides)
        return torch.from_numpy(base).as_strided(self.shape, self.strides, self.offset)


def _dense_strides(shape: tuple[int, ...], order: list[int]) -> list[int]:
    """Dense strides with ``order[-1]`` the fastest axis (C order is ``range(ndim)``)."""
    strides = [0] * len(shape)
    step = 1
    for axis in reversed(order):
        strides[axis] = step
        step *= shape[axis]
    return strides


@st.composite
def layouts(draw: st.DrawFn, *, allow_negative: bool = True) -> Layout:
    shape = list(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4), label="shape"))
    ndim = len(shape)
    order = draw(st.permutations(range(ndim)), label="axis order")
    kind = draw(st.sampled_from(["dense", "dense", "gaps", "broadcast"]), label="kind")
    if kind != "dense" and all(n == 1 for n in shape):
        shape[draw(st.integers(0, ndim - 1))] = 2  # a gap needs an axis longer than one
    long_axes = [axis for axis in range(ndim) if shape[axis] > 1]
    spread = shape.copy()
    if kind == "gaps":
        axis = draw(st.sampled_from(long_axes), label="gap axis")
        spread[axis] = 2 * shape[axis]  # every other element of a bigger array
        strides = _dense_strides(tuple(spread), order)
        strides[axis] *= 2
        size = math.prod(spread)
    elif kind == "broadcast":
        axis = draw(st.sampled_from(long_axes), label="broadcast axis")
        spread[axis] = 1
        strides = _dense_strides(tuple(spread), order)
        strides[axis] = 0
        size = math.prod(spread)
    else:
        strides = _dense_strides(tuple(shape), order)
        size = math.prod(shape)
    offset = 0
    if allow_negative:
        for axis in range(ndim):
            if draw(st.booleans(), label=f"reverse axis {axis}"):
                offset += (shape[axis] - 1) * strides[axis]
                strides[axis] = -strides[axis]
    return Layout(tuple(shape), tuple(strides), offset, size, kind)


def _values(size: int, dtype: Any) -> np.ndarray:
    return (np.arange(size) * 0.37 - 3.0).astype(np.float64).astype(dtype)


# ---------------------------------------------------------------------------
# every copying path
# ---------------------------------------------------------------------------


@dataclass
class CopyPath:
    """A path that copies: the input dtype, whether the input is a tensor, the call, and
    the result's NumPy dtype."""

    source_dtype: Any
    tensor_input: bool
    call: Callable[[Any], Any]
    target: Any
    read_only: bool = False


COPY_PATHS: dict[str, CopyPath] = {
    "to_tensor cast float64": CopyPath(np.float64, False, tb.to_tensor, np.float32),
    "to_tensor cast uint8 by policy": CopyPath(
        np.uint8,
        False,
        lambda x: tb.to_tensor(x, dtype=tb.DtypePolicy(unsigned="float32")),
        np.float32,
    ),
    "to_tensor copy=True": CopyPath(
        np.float32, False, lambda x: tb.to_tensor(x, copy=True), np.float32
    ),
    "to_tensor copy=True int64 PRESERVE": CopyPath(
        np.int64, False, lambda x: tb.to_tensor(x, dtype=tb.PRESERVE, copy=True), np.int64
    ),
    "to_tensor read-only": CopyPath(np.float32, False, tb.to_tensor, np.float32, read_only=True),
    "to_tensor byte-swapped": CopyPath(np.dtype(">f4"), False, tb.to_tensor, np.float32),
    "to_numpy of an ndarray, cast": CopyPath(np.float64, False, tb.to_numpy, np.float32),
    "to_numpy of an ndarray, copy=True": CopyPath(
        np.float32, False, lambda x: tb.to_numpy(x, copy=True), np.float32
    ),
    "tree_to_tensor leaf": CopyPath(
        np.float64, False, lambda x: tb.tree_to_tensor({"x": [x]})["x"][0], np.float32
    ),
    "convert_like to a tensor": CopyPath(
        np.float64,
        False,
        lambda x: tb.convert_like(x, torch.zeros(1), dtype=tb.FLOAT32),
        np.float32,
    ),
    "to_tensor of a tensor, cast": CopyPath(np.float64, True, tb.to_tensor, np.float32),
    "to_tensor of a tensor, copy=True": CopyPath(
        np.float32, True, lambda t: tb.to_tensor(t, copy=True), np.float32
    ),
    "to_numpy of a tensor, cast": CopyPath(np.float64, True, tb.to_numpy, np.float32),
    "to_numpy of a tensor, copy=True": CopyPath(
        np.float32, True, lambda t: tb.to_numpy(t, copy=True), np.float32
    ),
    "tree_to_numpy leaf": CopyPath(
        np.float64, True, lambda t: tb.tree_to_numpy({"x": (t,)})["x"][0], np.float32
    ),
}


def _inputs(path: CopyPath, layout: Layout) -> tuple[Any, np.ndarray]:
    """The input for ``path`` in ``layout``, and an ndarray with the same layout and values
    (what NumPy's expectations are computed from)."""
    base = _values(layout.size, path.source_dtype)
    array = layout.ndarray(base)
    if path.tensor_input:
        return layout.tensor(base), array
    if path.read_only:
        array = array.view()
        array.flags.writeable = False
    return array, array


@pytest.mark.parametrize("name", list(COPY_PATHS))
@given(data=st.data())
def test_copied_result_is_dense_and_keeps_a_dense_input_order(name, data):
    path = COPY_PATHS[name]
    layout = data.draw(layouts(allow_negative=not path.tensor_input), label="layout")
    source, as_array = _inputs(path, layout)
    first = path.call(source)
    second = path.call(source)
    assert S.element_strides(second) == S.element_strides(first), "strides differ between calls"
    assert str(first.dtype).removeprefix("torch.") == np.dtype(path.target).name
    S.assert_layout(first, as_array)
    S.assert_same_values(first, as_array.astype(path.target))
    S.assert_writable_copy(first, source)


# ---------------------------------------------------------------------------
# the named cases: data frames, transposes, channels-last, gaps, broadcast views
# ---------------------------------------------------------------------------

FRAME_SHAPES = [(2000, 20), (7, 3), (2, 2), (3, 1), (1, 4)]


@pytest.mark.parametrize("shape", FRAME_SHAPES)
def test_fortran_float64_frame_to_float32_tensor_is_fortran_ordered(shape):
    frame = np.asfortranarray(np.arange(math.prod(shape), dtype=np.float64).reshape(shape) / 7)
    first = tb.to_tensor(frame)
    second = tb.to_tensor(frame)
    assert first.dtype == torch.float32
    assert first.stride() == second.stride()
    expected = frame.astype(np.float32)  # order "K": Fortran stays Fortran
    assert expected.flags.f_contiguous
    assert S.significant(shape, first.stride()) == S.significant(shape, (1, shape[0]))
    assert first.t().is_contiguous()
    S.assert_same_bits(first, expected)
    S.assert_writable_copy(first, frame)


@pytest.mark.parametrize("shape", FRAME_SHAPES)
@pytest.mark.parametrize(
    "call",
    [
        lambda a: tb.to_numpy(a),
        lambda a: tb.tree_to_tensor({"frame": a})["frame"],
        lambda a: tb.tree_to_numpy([a])[0],
        lambda a: tb.to_tensor(a.astype(np.float32), copy=True),
    ],
    ids=["to_numpy", "tree_to_tensor", "tree_to_numpy", "to_tensor copy=True"],
)
def test_fortran_frame_stays_fortran_on_every_path(shape, call):
    frame = np.asfortranarray(np.arange(math.prod(shape), dtype=np.float64).reshape(shape) / 7)
    out = call(frame)
    if isinstance(out, torch.Tensor):
        assert out.t().is_contiguous(), f"strides {out.stride()}"
    else:
        assert out.flags.f_contiguous, f"strides {out.strides}"
    S.assert_same_bits(out, frame.astype(np.float32))


def test_read_only_and_byte_swapped_fortran_arrays_give_fortran_copies():
    frame = np.asfortranarray(np.arange(60, dtype=np.float32).reshape(6, 10))
    read_only = frame.view()
    read_only.flags.writeable = False
    swapped = frame.astype(">f4", order="K")
    assert swapped.flags.f_contiguous
    for source in (read_only, swapped):
        out = tb.to_tensor(source)
        assert out.dtype == torch.float32
        assert out.stride() == (1, 6)
        S.assert_same_bits(out, frame)
        S.assert_writable_copy(out, source)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: tb.to_tensor(t),
        lambda t: tb.to_tensor(t.float(), copy=True),
        lambda t: tb.to_numpy(t),
        lambda t: tb.to_numpy(t.float(), copy=True),
    ],
    ids=["to_tensor cast", "to_tensor copy=True", "to_numpy cast", "to_numpy copy=True"],
)
def test_transposed_tensor_keeps_its_order(call):
    t = torch.arange(35, dtype=torch.float64).reshape(5, 7).t()  # strides (1, 7)
    out = call(t)
    expected = t.float()  # torch.preserve_format
    assert S.element_strides(out) == tuple(expected.stride())
    S.assert_same_bits(out, expected)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: tb.to_tensor(t),
        lambda t: tb.to_tensor(t.float(), copy=True),
        lambda t: tb.tree_to_tensor({"image": t})["image"],
        lambda t: next(iter(tb.prefetch([t], device="cpu"))),
    ],
    ids=["to_tensor cast", "to_tensor copy=True", "tree_to_tensor", "prefetch"],
)
def test_channels_last_tensor_stays_channels_last(call):
    t = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    t = t.contiguous(memory_format=torch.channels_last)
    out = call(t)
    assert out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last), f"strides {out.stride()}"
    S.assert_same_bits(out, t.float())


def test_channels_last_tensor_to_numpy_keeps_the_order():
    t = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    t = t.contiguous(memory_format=torch.channels_last)
    out = tb.to_numpy(t)
    expected = t.numpy().astype(np.float32, order="K")
    assert out.strides == expected.strides
    S.assert_same_bits(out, expected)


def test_channels_last_ndarray_to_tensor_is_channels_last():
    nhwc = np.arange(2 * 4 * 5 * 3, dtype=np.float64).reshape(2, 4, 5, 3)
    nchw = nhwc.transpose(0, 3, 1, 2)  # an NCHW view of NHWC memory
    out = tb.to_tensor(nchw)
    assert out.is_contiguous(memory_format=torch.channels_last), f"strides {out.stride()}"
    S.assert_same_bits(out, nchw.astype(np.float32))


@pytest.mark.parametrize("permutation", [(2, 0, 1), (1, 2, 0), (0, 2, 1), (2, 1, 0)])
def test_axis_permutation_keeps_numpy_stride_order(permutation):
    a = np.arange(3 * 4 * 5, dtype=np.float64).reshape(3, 4, 5).transpose(permutation)
    expected = a.astype(np.float32, order="K")
    tensor_out = tb.to_tensor(a)
    assert S.element_strides(tensor_out) == S.element_strides(expected)
    assert np.argsort(tensor_out.stride()).tolist() == np.argsort(a.strides).tolist()
    numpy_out = tb.to_numpy(a)
    assert numpy_out.strides == expected.strides
    from_tensor = tb.to_numpy(torch.from_numpy(a))
    assert from_tensor.strides == expected.strides


#: (NumPy view, the same view in torch) of a 6 x 8 base: gaps, or a stride of 0
GAPPY: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "a[:, ::2]": (lambda a: a[:, ::2], lambda t: t[:, ::2]),
    "a[::2]": (lambda a: a[::2], lambda t: t[::2]),
    "a.T[:, ::2]": (lambda a: a.T[:, ::2], lambda t: t.t()[:, ::2]),
    "a[:, :3]": (lambda a: a[:, :3], lambda t: t[:, :3]),
    "a[1:4, 2:7].T": (lambda a: a[1:4, 2:7].T, lambda t: t[1:4, 2:7].t()),
    "broadcast_to": (lambda a: np.broadcast_to(a[:1], a.shape), lambda t: t[:1].expand(6, 8)),
    "broadcast_to, transposed": (
        lambda a: np.broadcast_to(a[:1], a.shape).T,
        lambda t: t[:1].expand(6, 8).t(),
    ),
}

#: (source dtype, tensor input?, call): every one copies
GAPPY_PATHS: dict[str, tuple[Any, bool, Callable[[Any], Any]]] = {
    "to_tensor cast": (np.float64, False, tb.to_tensor),
    "to_tensor copy=True": (np.float32, False, lambda x: tb.to_tensor(x, copy=True)),
    "to_numpy of an ndarray, cast": (np.float64, False, tb.to_numpy),
    "to_numpy of an ndarray, copy=True": (np.float32, False, lambda x: tb.to_numpy(x, copy=True)),
    "tree_to_tensor": (np.float64, False, lambda x: tb.tree_to_tensor({"x": x})["x"]),
    "to_tensor of a tensor, cast": (np.float64, True, tb.to_tensor),
    "to_tensor of a tensor, copy=True": (np.float32, True, lambda t: tb.to_tensor(t, copy=True)),
    "to_numpy of a tensor, cast": (np.float64, True, tb.to_numpy),
    "to_numpy of a tensor, copy=True": (np.float32, True, lambda t: tb.to_numpy(t, copy=True)),
}


@pytest.mark.parametrize("view", list(GAPPY))
@pytest.mark.parametrize("path", list(GAPPY_PATHS))
def test_input_with_gaps_or_broadcast_gives_a_c_contiguous_result(path, view):
    dtype, tensor_input, call = GAPPY_PATHS[path]
    numpy_view, torch_view = GAPPY[view]
    a = (np.arange(6 * 8) / 3).astype(dtype).reshape(6, 8)
    x = numpy_view(a)
    assert not S.is_dense(x)
    source = torch_view(torch.from_numpy(a)) if tensor_input else x
    first = call(source)
    second = call(source)
    assert S.element_strides(second) == S.element_strides(first)
    assert S.is_c_contiguous(first), f"strides {S.element_strides(first)}"
    S.assert_same_bits(first, x.astype(np.float32))
    S.assert_writable_copy(first, source)


# ---------------------------------------------------------------------------
# rule 6: strides of size-1 dimensions address nothing; such views share
# ---------------------------------------------------------------------------

#: (shape, byte strides) over a float32 base: the only odd stride is on a size-1 axis
SIZE1_ODD_STRIDES = {
    "negative stride on a trailing size-1 axis": ((3, 1), (4, -4)),
    "negative stride on a leading size-1 axis": ((1, 3), (-40, 4)),
    "stride not a multiple of the item size": ((3, 1), (4, 3)),
    "odd stride in the middle": ((2, 1, 3), (12, 7, 4)),
    "huge stride": ((3, 1), (4, 10**9 + 1)),
    "every axis of size 1": ((1, 1), (-3, 5)),
}


def _odd_size1_view(shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    """A writable view of a real 12-element float32 base (every address inside it)."""
    base = np.arange(12, dtype=np.float32)
    view = as_strided(base, shape, strides, writeable=True)
    assert np.shares_memory(view, base)
    return view


@pytest.mark.parametrize("name", list(SIZE1_ODD_STRIDES))
@pytest.mark.parametrize(
    "call",
    [
        lambda x: tb.to_tensor(x, copy=False),
        lambda x: tb.to_tensor(x, dtype=tb.PRESERVE, copy=False),
        lambda x: tb.to_numpy(x, copy=False),
        lambda x: tb.tree_to_tensor({"x": x}, copy=False)["x"],
    ],
    ids=["to_tensor", "to_tensor PRESERVE", "to_numpy", "tree_to_tensor"],
)
def test_odd_stride_on_a_size1_axis_still_shares(name, call):
    view = _odd_size1_view(*SIZE1_ODD_STRIDES[name])
    expected = view.copy()
    out = call(view)
    assert tuple(out.shape) == view.shape
    S.assert_same_bits(out, expected)
    last = tuple(n - 1 for n in view.shape)
    out[last] = 99.0
    assert view[last] == 99.0, "the result does not share the input's memory"
    view[(0,) * view.ndim] = -5.0
    assert out[(0,) * view.ndim] == -5.0


@pytest.mark.parametrize(
    ("shape", "strides"),
    [((3, 1), (1, 1000)), ((1, 3), (77, 1)), ((2, 1, 3), (3, 5, 1)), ((1,), (9,))],
)
def test_tensor_with_odd_stride_on_a_size1_axis_shares_with_to_numpy(shape, strides):
    base = torch.arange(12, dtype=torch.float32)
    t = base.as_strided(shape, strides)
    out = tb.to_numpy(t, copy=False)
    assert out.shape == shape
    assert out.flags.writeable
    last = tuple(n - 1 for n in shape)
    out[last] = 99.0
    assert t[last].item() == 99.0, "the result does not share the tensor's memory"
    back = tb.to_tensor(t, copy=False)
    back[(0,) * len(shape)] = -5.0
    assert t[(0,) * len(shape)].item() == -5.0
