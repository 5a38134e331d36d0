"""A call never depends on the calls before it (contract section 3), for the odd inputs.

Every odd input (nested, sparse, meta, fake and wrapper tensors, ZeroTensors,
freed storage, conjugate and negative views, grad tensors, quantized tensors,
read-only, byte-swapped, reversed, strided and size-1-strided arrays...) is
converted by every public path twice: once in a fresh interpreter as the first
conversion of the process, and once here after the plans of every dtype were
made by plain calls. Both must give the same outcome: the same result type,
dtype, shape, strides, writeability and sharing, or the same error class and
message.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import strategies as S
import tensorbridge as tb

_HERE = Path(__file__).resolve().parent


def _freed(view: bool, dtype: torch.dtype) -> torch.Tensor:
    base = torch.arange(64, dtype=dtype)
    tensor = base[8:16] if view else base
    base.untyped_storage().resize_(0)
    return tensor


def _conj() -> torch.Tensor:
    return torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj()


def _neg() -> torch.Tensor:
    return torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64).conj().imag


def _quantized() -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantize_per_tensor
        return torch.quantize_per_tensor(torch.ones(3), 0.5, 0, torch.qint8)


def _odd_size1(array: np.ndarray, stride: int) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(array, (array.size, 1), (array.itemsize, stride))


def _read_only() -> np.ndarray:
    array = np.arange(4, dtype=np.float32)
    array.flags.writeable = False
    return array


#: name -> a builder of a fresh input (the same in both processes)
CASES: dict[str, Callable[[], Any]] = {
    "nested tensor": S.nested_tensor,
    "sparse tensor": lambda: torch.zeros(3).to_sparse(),
    "meta tensor": lambda: torch.zeros(3, device="meta"),
    "fake tensor": S.fake_tensor,
    "wrapper tensor": lambda: S.WrapperTensor(torch.zeros(3)),
    "zero tensor": lambda: torch._efficientzerotensor(3),
    "freed float32 view": lambda: _freed(True, torch.float32),
    "freed float64 base": lambda: _freed(False, torch.float64),
    "conjugate view": _conj,
    "negative view": _neg,
    "grad float32": lambda: torch.ones(3, requires_grad=True),
    "grad float64": lambda: torch.ones(3, dtype=torch.float64, requires_grad=True),
    "quantized": _quantized,
    "transposed tensor": lambda: torch.arange(6.0).reshape(2, 3).T,
    "size-1 stride tensor": lambda: torch.arange(7.0).as_strided((3, 1), (1, 7)),
    "empty tensor": lambda: torch.zeros(0),
    "read-only array": _read_only,
    "byte-swapped array": lambda: np.arange(4, dtype=">f4"),
    "reversed array": lambda: np.arange(4, dtype=np.float32)[::-1],
    "size-1 odd stride array": lambda: _odd_size1(np.arange(4, dtype=np.float32), 3),
    "fortran float64": lambda: np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "structured field": lambda: np.zeros(3, dtype=[("a", "f4"), ("b", "f8")])["a"],
    "masked array": lambda: np.ma.masked_array(np.arange(3.0), mask=[False, True, False]),
    "numpy scalar": lambda: np.float64(1.5),
    "empty array": lambda: np.zeros(0, dtype=np.float32),
}

CALLS: dict[str, Callable[[Any], Any]] = {
    "to_tensor": tb.to_tensor,
    "to_tensor PRESERVE": lambda x: tb.to_tensor(x, dtype=tb.PRESERVE),
    "to_tensor copy=False": lambda x: tb.to_tensor(x, dtype=tb.PRESERVE, copy=False),
    "to_numpy": tb.to_numpy,
    "to_numpy PRESERVE": lambda x: tb.to_numpy(x, dtype=tb.PRESERVE),
    "to_numpy copy=True": lambda x: tb.to_numpy(x, dtype=tb.PRESERVE, copy=True),
    "tree_to_tensor": lambda x: tb.tree_to_tensor({"x": x})["x"],
    "tree_to_numpy": lambda x: tb.tree_to_numpy({"x": x})["x"],
    "collate": lambda x: tb.collate([x, x]),
}


def _describe(result: Any, source: Any) -> dict[str, Any]:
    if isinstance(result, torch.Tensor):
        shared = bool(
            result.layout is torch.strided
            and not result.is_nested
            and isinstance(source, (np.ndarray, torch.Tensor))
            and result.numel()
            and result.device.type == "cpu"
            and tb.shares_memory(result, source)
        )
        return {
            "type": "tensor",
            "dtype": str(result.dtype),
            "shape": None if result.is_nested else list(result.shape),
            "strides": None if result.is_nested else list(result.stride()),
            "shares": shared,
            "requires_grad": result.requires_grad,
        }
    if isinstance(result, np.ndarray):
        shared = bool(
            isinstance(source, (np.ndarray, torch.Tensor))
            and result.size
            and tb.shares_memory(result, source)
        )
        return {
            "type": "ndarray",
            "dtype": str(result.dtype),
            "shape": list(result.shape),
            "strides": list(result.strides),
            "writeable": bool(result.flags.writeable),
            "shares": shared,
        }
    return {"type": type(result).__name__}


def outcomes() -> dict[str, Any]:
    """Every case through every call: what came out, or which error with which message."""
    found: dict[str, Any] = {}
    for case, build in CASES.items():
        for call_name, call in CALLS.items():
            source = build()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # prototype and deprecation warnings
                    result = call(source)
            except Exception as error:  # the class and words are what is compared
                found[f"{case} | {call_name}"] = {"error": type(error).__name__, "text": str(error)}
            else:
                found[f"{case} | {call_name}"] = _describe(result, source)
    return found


def warm_up() -> None:
    """Make the plan of every dtype, for every call, by converting plain inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dtype in [torch.float32, torch.float64, torch.complex64, torch.int64, torch.qint8]:
            if dtype == torch.qint8:
                plain: Any = _quantized()
            else:
                plain = torch.zeros(3, dtype=dtype)
            for call in CALLS.values():
                with contextlib.suppress(tb.TensorBridgeError):
                    call(plain)
        for np_dtype in [np.float32, np.float64, ">f4"]:
            for call in CALLS.values():
                with contextlib.suppress(tb.TensorBridgeError):
                    call(np.zeros(3, dtype=np_dtype))


_CHILD = f"""
import json, sys
sys.path.insert(0, {str(_HERE)!r})
import test_warm_calls
print(json.dumps(test_warm_calls.outcomes()))
"""


def test_odd_inputs_give_what_a_fresh_process_gives_them() -> None:
    done = S.run_child(_CHILD, warnings="ignore")
    assert done.returncode == 0, done.stderr[-3000:]
    cold = json.loads(done.stdout.strip().splitlines()[-1])
    warm_up()
    warm = outcomes()
    differ = {key: (cold[key], warm[key]) for key in cold if cold[key] != warm[key]}
    assert not differ, "\n".join(f"{key}: fresh {a} / warm {b}" for key, (a, b) in differ.items())


@pytest.mark.parametrize("context", ["no_grad", "inference_mode", "errstate"])
def test_odd_inputs_give_the_same_under_the_contexts_training_code_uses(context: str) -> None:
    warm_up()
    plain = outcomes()
    if context == "no_grad":
        manager: Any = torch.no_grad()
    elif context == "inference_mode":
        manager = torch.inference_mode()
    else:
        manager = np.errstate(all="raise")
    with manager:
        inside = outcomes()
    differ = {
        key: (plain[key], inside[key])
        for key in plain
        if plain[key] != inside[key]
        # results made with grad off never require grad, as torch's own are: only the
        # grad flag may differ there
        and not (context != "errstate" and _only_grad_differs(plain[key], inside[key]))
    }
    assert not differ, "\n".join(f"{key}: {a} / {b}" for key, (a, b) in differ.items())


def _only_grad_differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k != "requires_grad"} == {
        k: v for k, v in b.items() if k != "requires_grad"
    }


if __name__ == "__main__":  # pragma: no cover - run by hand for a look
    json.dump(outcomes(), sys.stdout, indent=1)
