"""Contract section 8: tensors inside ``torch.func`` transforms.

Tensors inside ``torch.func`` transforms (``grad``, ``vmap``, ``functionalize``)
raise a ``TensorBridgeError``, never a raw error, on every path, trees and
``collate`` included (a same-dtype ``collate``, which is a ``torch.stack``, may
return torch's result). The message is short and says what was received.

Each call runs inside the transform; the error it raises is caught there and
examined outside, so the transform itself always completes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import func

import tensorbridge as tb

CALLS: dict[str, Callable[[torch.Tensor], Any]] = {
    "to_numpy": lambda x: tb.to_numpy(x),
    "to_numpy PRESERVE": lambda x: tb.to_numpy(x, dtype=tb.PRESERVE),
    "to_numpy float16": lambda x: tb.to_numpy(x, dtype=np.float16),
    "to_tensor float16": lambda x: tb.to_tensor(x, dtype=torch.float16),
    "to_tensor float64": lambda x: tb.to_tensor(x, dtype=torch.float64),
    "tree_to_numpy": lambda x: tb.tree_to_numpy({"x": x, "n": 1}),
    "tree_to_tensor float16": lambda x: tb.tree_to_tensor({"x": x, "n": 1}, dtype=torch.float16),
    "tree_to_tensor per-leaf float16": lambda x: tb.tree_to_tensor(
        {"x": x, "n": 1}, dtype={"x": torch.float16}
    ),
    "collate float16": lambda x: tb.collate([x, x], dtype=torch.float16),
    "collate of dicts float16": lambda x: tb.collate([{"x": x}, {"x": x}], dtype=torch.float16),
    "collate float64": lambda x: tb.collate([x, x], dtype=torch.float64),
}

TREE_CALLS = {"tree_to_numpy", "tree_to_tensor float16", "tree_to_tensor per-leaf float16"}


def _catching(call: Callable[[torch.Tensor], Any], box: dict[str, BaseException]) -> Any:
    def inner(x: torch.Tensor) -> torch.Tensor:
        try:
            call(x)
        except BaseException as e:  # examined outside the transform
            box["error"] = e
        return (x * x).sum()

    return inner


def _run(transform: str, call: Callable[[torch.Tensor], Any]) -> BaseException | None:
    box: dict[str, BaseException] = {}
    inner = _catching(call, box)
    if transform == "vmap":
        func.vmap(inner)(torch.arange(12, dtype=torch.float32).reshape(3, 4))
    elif transform == "grad":
        func.grad(inner)(torch.arange(4, dtype=torch.float32))
    elif transform == "functionalize":
        func.functionalize(inner)(torch.arange(4, dtype=torch.float32))
    elif transform == "grad of vmap":
        func.grad(lambda x: func.vmap(inner)(x).sum())(torch.ones(2, 3))
    else:
        raise AssertionError(transform)
    return box.get("error")


TRANSFORMS = ["vmap", "grad", "functionalize", "grad of vmap"]


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("name", list(CALLS))
def test_a_tensor_inside_a_transform_raises_a_tensorbridge_error(name: str, transform: str) -> None:
    error = _run(transform, CALLS[name])
    assert error is not None, f"{name} inside {transform} returned instead of raising"
    assert isinstance(error, tb.TensorBridgeError), (
        f"{name} inside {transform} raised a raw {type(error).__name__}: {error}"
    )
    assert isinstance(error, (TypeError, ValueError))
    if name in TREE_CALLS:
        message = str(error)
        assert re.search(r"\[[\"']x[\"']\]", message), f"the leaf path is not named: {message}"


MESSAGE_CALLS = ["to_numpy", "to_tensor float16", "tree_to_numpy", "collate float16"]


@pytest.mark.parametrize("transform", ["vmap", "grad", "functionalize"])
@pytest.mark.parametrize("name", MESSAGE_CALLS)
def test_the_message_says_the_tensor_is_inside_a_transform(name: str, transform: str) -> None:
    error = _run(transform, CALLS[name])
    assert isinstance(error, tb.TensorBridgeError), repr(error)
    message = str(error)
    assert len(message) < 600, f"a {len(message)}-character message: {message}"
    # torch's internal text tells the user nothing about the transform
    assert "data pointer" not in message, message
    assert "setup_context" not in message, message
    assert re.search(r"torch\.func|vmap|grad|functionali[sz]e|transform", message), message


@pytest.mark.parametrize("name", ["to_numpy", "tree_to_tensor float16", "collate float16"])
def test_calls_after_a_transform_work_as_before(name: str) -> None:
    _run("vmap", CALLS[name])
    _run("grad", CALLS[name])
    # nothing is left half-done: a plain tensor converts as it always does
    t = torch.arange(4, dtype=torch.float32)
    np.testing.assert_array_equal(tb.to_numpy(t), np.arange(4, dtype=np.float32))
    half = tb.tree_to_tensor({"x": t}, dtype=torch.float16)["x"]
    assert half.dtype == torch.float16
    assert torch.equal(half, t.to(torch.float16))
    batch = tb.collate([t, t], dtype=torch.float16)
    assert torch.equal(batch, torch.stack([t, t]).to(torch.float16))


@pytest.mark.parametrize("as_dicts", [False, True], ids=["tensors", "dicts"])
def test_a_same_dtype_collate_inside_vmap_gives_torchs_result_or_a_tensorbridge_error(
    as_dicts: bool,
) -> None:
    xs = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    expected = torch.stack([xs, 2 * xs], dim=1)  # what vmap of torch.stack gives

    def inner(x: torch.Tensor) -> torch.Tensor:
        if as_dicts:
            return tb.collate([{"x": x}, {"x": 2 * x}])["x"]
        return tb.collate([x, 2 * x])

    try:
        result = func.vmap(inner)(xs)
    except tb.TensorBridgeError:
        return  # allowed: the contract lets a same-dtype collate raise as well
    assert result.dtype == torch.float32
    assert torch.equal(result, expected)
