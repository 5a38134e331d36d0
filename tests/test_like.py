"""``convert_like``: the result takes the reference's kind and device; the dtype is the caller's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tensorbridge as tb


def test_tensor_reference_gives_a_tensor_that_shares_a_writable_array() -> None:
    result = np.zeros(3, dtype=np.float32)
    out = tb.convert_like(result, torch.ones(2, dtype=torch.float64), dtype=tb.PRESERVE)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32  # value's dtype kept, not the reference's
    out[1] = 5.0
    assert result[1] == 5.0


def test_ndarray_reference_gives_an_ndarray_that_shares_a_cpu_tensor() -> None:
    result = torch.zeros(3, dtype=torch.int16)
    out = tb.convert_like(result, np.ones(2), dtype=tb.PRESERVE)
    assert type(out) is np.ndarray
    assert out.dtype == np.int16
    result[2] = 9
    assert out[2] == 9


def test_policy_applies_to_the_value_not_the_reference() -> None:
    result = np.arange(3.0)  # float64
    reference = torch.zeros(1, dtype=torch.float64)
    assert tb.convert_like(result, reference, dtype=tb.FLOAT32).dtype == torch.float32
    assert tb.convert_like(result, reference, dtype=tb.PRESERVE).dtype == torch.float64


def test_dtype_of_the_reference_is_one_explicit_choice() -> None:
    reference = np.zeros(2, dtype=np.float16)
    out = tb.convert_like(torch.tensor([1.5, 2.5]), reference, dtype=reference.dtype)
    assert out.dtype == np.float16
    assert out.tolist() == [1.5, 2.5]


def test_same_kind_input_is_returned_as_is_when_nothing_changes() -> None:
    array = np.ones(4, dtype=np.float32)
    assert tb.convert_like(array, np.zeros(1), dtype=tb.PRESERVE) is array
    tensor = torch.ones(4)
    assert tb.convert_like(tensor, torch.zeros(1), dtype=tb.PRESERVE) is tensor


def test_copy_true_never_shares() -> None:
    result = np.zeros(3, dtype=np.float32)
    out = tb.convert_like(result, torch.zeros(1), dtype=tb.PRESERVE, copy=True)
    out[0] = 1.0
    assert result[0] == 0.0


def test_copy_false_raises_share_error_when_a_cast_is_needed() -> None:
    with pytest.raises(tb.ShareError):
        tb.convert_like(np.arange(3.0), torch.zeros(1), dtype=tb.FLOAT32, copy=False)


def test_casting_rule_is_checked() -> None:
    with pytest.raises(tb.CastingError):
        tb.convert_like(np.arange(3.0), torch.zeros(1), dtype=torch.int32)


def test_python_values_become_the_reference_kind() -> None:
    assert tb.convert_like([1, 2], torch.zeros(1), dtype=tb.PRESERVE).tolist() == [1, 2]
    assert tb.convert_like([1, 2], np.zeros(1), dtype=tb.PRESERVE).tolist() == [1, 2]


@pytest.mark.parametrize("reference", [[1.0], 3.0, np.float64(1.0), None, "cpu"])
def test_reference_that_is_not_an_array_or_tensor_raises(reference: object) -> None:
    with pytest.raises(tb.InvalidInputError, match=r"reference is a .*not a torch.Tensor"):
        tb.convert_like(np.zeros(2), reference, dtype=tb.PRESERVE)  # type: ignore[call-overload]


def test_masked_array_reference_gives_a_plain_ndarray() -> None:
    reference = np.ma.masked_array(np.zeros(2), mask=[False, False])
    out = tb.convert_like(torch.ones(2), reference, dtype=tb.PRESERVE)
    assert type(out) is np.ndarray


@pytest.mark.cuda
def test_cuda_reference_puts_the_result_on_its_device() -> None:
    reference = torch.zeros(1, device="cuda")
    out = tb.convert_like(np.arange(3, dtype=np.float32), reference, dtype=tb.PRESERVE)
    assert out.device == reference.device
    assert out.cpu().tolist() == [0.0, 1.0, 2.0]
    back = tb.convert_like(out, np.zeros(1), dtype=tb.PRESERVE)
    assert type(back) is np.ndarray
    assert back.tolist() == [0.0, 1.0, 2.0]
