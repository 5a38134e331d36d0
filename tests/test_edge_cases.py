"""Edge cases found in review, each pinned so it stays fixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tensorbridge as tb


@pytest.mark.parametrize("shape", [(), (1,), (3,)])
@pytest.mark.parametrize("copy", [None, True])
def test_complex_to_real_never_aliases_the_input(shape: tuple[int, ...], copy: bool | None) -> None:
    complex_tensor = torch.full(shape, 1 + 2j, dtype=torch.complex64)
    real = tb.to_tensor(complex_tensor, dtype=torch.float32, casting="unsafe", copy=copy)
    real.fill_(99.0)
    assert torch.all(complex_tensor == 1 + 2j)
    assert not tb.shares_memory(real, complex_tensor)


def test_tensor_casts_follow_numpy_not_torchs_double_rounding() -> None:
    # 1 + 2**-11 + 2**-40 rounds up to float16 directly, but to exactly 1 + 2**-11
    # (a tie, then rounded to even: 1.0) when it goes through float32 first.
    value = np.array([1 + 2**-11 + 2**-40])
    expected = value.astype(np.float16)
    assert expected[0] != np.float16(1.0)
    tensor = torch.from_numpy(value.copy())
    assert tb.to_tensor(tensor, dtype=torch.float16).numpy()[0] == expected[0]
    assert tb.to_numpy(tensor, dtype=np.float16)[0] == expected[0]
    assert tb.collate([tensor, tensor], dtype=torch.float16).numpy()[0, 0] == expected[0]


def test_tensors_that_require_grad_keep_their_graph_through_a_cast() -> None:
    weights = torch.ones(3, dtype=torch.float64, requires_grad=True)
    tb.to_tensor(weights).sum().backward()  # float32 by the default policy
    assert weights.grad is not None
    assert torch.equal(weights.grad, torch.ones(3, dtype=torch.float64))


def test_numpy_string_scalars_are_strings_in_trees_and_collate() -> None:
    name, tag = np.str_("cat"), np.bytes_(b"x")
    out = tb.tree_to_tensor({"name": name, "tag": tag, "x": np.zeros(2)})
    assert out["name"] is name
    assert out["tag"] is tag
    batch = tb.collate([{"n": np.str_("a")}, {"n": np.str_("b")}])
    assert batch["n"] == ["a", "b"]


@pytest.mark.parametrize("device", ["mps", "xpu", "hpu"])
def test_unavailable_backends_raise_a_tensorbridge_error(device: str) -> None:
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("mps is available here")
    with pytest.raises(tb.TensorBridgeError, match="not available") as raised:
        tb.to_tensor(np.ones(2), device=device)
    assert isinstance(raised.value, ValueError)


def test_collate_refuses_sparse_tensors() -> None:
    with pytest.raises(tb.TensorBridgeError, match="to_dense"):
        tb.collate([torch.eye(2).to_sparse(), torch.eye(2).to_sparse()])


def test_collate_complex_to_real_is_quiet_and_keeps_the_real_part() -> None:
    samples = [torch.tensor([1 + 2j, 3 - 4j]), torch.tensor([5 + 0j, -1j])]
    batch = tb.collate(samples, dtype=torch.float32, casting="unsafe")
    assert batch.tolist() == [[1.0, 3.0], [5.0, 0.0]]


def test_casting_error_names_the_policy_that_asked_for_the_cast() -> None:
    with pytest.raises(tb.CastingError, match=r"FLOAT32.*casting=\"safe\".*tb\.PRESERVE"):
        tb.to_tensor(np.zeros(2), casting="safe")


@pytest.mark.cuda
@pytest.mark.parametrize("elements", [1000, 1 << 20])  # below and above the pinned threshold
@pytest.mark.parametrize(
    ("source", "target"),
    [(np.float64, torch.float32), (np.uint8, torch.float32), (np.float32, None)],
)
def test_cuda_tensor_back_to_the_cpu_through_to_tensor(
    elements: int, source: type, target: torch.dtype | None
) -> None:
    host = (np.arange(elements) % 251).astype(source)
    on_gpu = torch.from_numpy(host).to("cuda")
    dtype = target if target is not None else tb.PRESERVE
    back = tb.to_tensor(on_gpu, dtype=dtype, device="cpu")
    expected = tb.to_tensor(torch.from_numpy(host), dtype=dtype)
    assert back.device.type == "cpu"
    assert back.dtype == expected.dtype
    assert torch.equal(back, expected)
    on_gpu.fill_(7)  # the result is a copy, final when the call returned
    assert torch.equal(back, expected)
