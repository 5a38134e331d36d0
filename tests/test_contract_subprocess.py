"""Crash-class and process-level cases of contract sections 6 and 8, each in a child process.

Section 6: an in-place op on a tensor made from read-only memory (a read-only map,
directly or through a DLPack producer) must neither crash the process
(np.load(..., mmap_mode="r") maps the file read-only: a write there is a SIGSEGV)
nor mutate an immutable ``bytes`` object. Section 8: a lying
``__array_interface__`` with a null data pointer raises instead of crashing, a
list whose ``__getitem__`` returns itself does not hang, and conversions keep
working during interpreter shutdown (an ``atexit`` handler). The children run
with ``-W error``, so torch's "not writable" warning would fail them too.
"""

from __future__ import annotations

import subprocess

import pytest

import strategies as S

run_child = S.run_child  # one helper for every crash-class test: tests/strategies.py


def assert_clean(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode} (negative: killed by signal {-proc.returncode})\n"
        f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    assert proc.stderr == "", f"the child printed to stderr:\n{proc.stderr}"
    assert proc.stdout.strip().endswith("OK"), proc.stdout


# ---------------------------------------------------------------------------
# section 6: in-place ops on tensors made from read-only memory
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("copy", ["None", "True"])
def test_in_place_op_on_tensor_from_read_only_memmap(tmp_path, copy):
    code = """
        import sys
        import numpy as np
        import tensorbridge as tb

        folder, copy = sys.argv[1], {"None": None, "True": True}[sys.argv[2]]
        for dtype in ["float32", "uint8", "int64", "float64"]:
            path = f"{folder}/{dtype}.npy"
            original = (np.arange(64) % 50).astype(dtype)
            np.save(path, original)
            m = np.load(path, mmap_mode="r")
            t = tb.to_tensor(m, copy=copy)
            t.add_(1)
            t.mul_(2)
            t[0] = 7
            assert np.array_equal(m, original), "the read-only map changed"
            assert np.array_equal(np.load(path), original), "the file changed"
            assert t[1].item() == (original[1] + 1) * 2
        print("OK")
    """
    assert_clean(run_child(code, str(tmp_path), copy))


def test_copy_false_on_read_only_memmap_raises_share_error(tmp_path):
    path = tmp_path / "data.npy"
    code = """
        import sys
        import numpy as np
        import tensorbridge as tb

        np.save(sys.argv[1], np.arange(16, dtype=np.float32))
        m = np.load(sys.argv[1], mmap_mode="r")
        try:
            tb.to_tensor(m, copy=False)
        except tb.ShareError as e:
            assert "copy" in str(e), str(e)
        else:
            raise SystemExit("copy=False on read-only memory did not raise ShareError")
        print("OK")
    """
    assert_clean(run_child(code, str(path)))


def test_in_place_op_on_tensor_from_frombuffer_bytes():
    code = """
        import numpy as np
        import tensorbridge as tb

        for dtype in ["uint8", "float32", "int16", "float64"]:
            data = bytes(range(64))
            keep = bytes(bytearray(data))  # an independent copy to compare against
            a = np.frombuffer(data, dtype=dtype)
            t = tb.to_tensor(a)
            t.add_(1)
            t.zero_()
            assert data == keep, f"the immutable bytes object was mutated ({dtype})"
            again = np.frombuffer(data, dtype=dtype)
            assert np.array_equal(again, np.frombuffer(keep, dtype=dtype))
        print("OK")
    """
    assert_clean(run_child(code))


def test_in_place_op_on_tensor_from_bytes_buffer_under_preserve():
    code = """
        import numpy as np
        import tensorbridge as tb

        data = b"\\x00\\x01\\x02\\x03" * 8
        keep = bytes(bytearray(data))
        t = tb.to_tensor(np.frombuffer(data, dtype=np.uint8), dtype=tb.PRESERVE)
        t.fill_(255)
        t2 = tb.to_tensor(memoryview(data), dtype=tb.PRESERVE)
        t2.fill_(255)
        assert data == keep, "the immutable bytes object was mutated"
        print("OK")
    """
    assert_clean(run_child(code))


@pytest.mark.skipif(S.NUMPY_MAJOR < 2, reason="NumPy 1 cannot export read-only memory by DLPack")
@pytest.mark.parametrize("device_type", ["1", "3"])
def test_dlpack_read_only_memmap_survives_in_place_ops(tmp_path, device_type):
    code = """
        import sys
        import numpy as np
        import tensorbridge as tb

        class Producer:
            def __init__(self, array, device_type):
                self.array, self.device_type = array, device_type
            def __dlpack__(self, **kwargs):
                return self.array.__dlpack__(**kwargs)
            def __dlpack_device__(self):
                return (self.device_type, 0)

        path = sys.argv[1] + "/m.npy"
        np.save(path, np.arange(8, dtype=np.float32))
        m = np.load(path, mmap_mode="r")
        t = tb.to_tensor(Producer(m, int(sys.argv[2])), dtype=tb.PRESERVE)
        t.add_(1)
        assert float(m[0]) == 0.0
        print("OK")
    """
    assert_clean(run_child(code, str(tmp_path), device_type))


# ---------------------------------------------------------------------------
# section 8: no unbounded loops on user input; no crash on a null data pointer
# ---------------------------------------------------------------------------


def test_list_whose_getitem_returns_itself_does_not_hang():
    code = """
        import numpy as np
        import tensorbridge as tb

        class Loop(list):
            def __getitem__(self, index):
                return self

        # int32 elements make NumPy infer int32, which sends the probe for Python
        # ints (NumPy 1 on Windows infers int32 for them) down the sequence.
        for values in ([np.int32(1), np.int32(2)], [1, 2]):
            try:
                t = tb.to_tensor(Loop(values))
            except tb.TensorBridgeError:
                pass
            else:
                assert t.tolist() == [1, 2], t
        print("OK")
    """
    assert_clean(run_child(code, timeout=60))


def test_null_data_pointer_with_nonzero_shape_does_not_crash():
    code = """
        import tensorbridge as tb

        class Interface:
            __array_interface__ = {
                "shape": (4,), "typestr": "<f4", "data": (0, False), "version": 3
            }

        for function in (tb.to_tensor, tb.to_numpy):
            try:
                function(Interface()).sum()
            except tb.TensorBridgeError as error:
                assert len(str(error)) < 400
            else:
                raise SystemExit("a null pointer converted")
        print("OK")
    """
    assert_clean(run_child(code))


# ---------------------------------------------------------------------------
# section 8: conversions during interpreter shutdown
# ---------------------------------------------------------------------------


def test_large_conversion_in_an_atexit_handler_works():
    code = """
        import atexit
        import numpy as np
        import torch
        import tensorbridge as tb

        def convert():
            torch.set_num_threads(max(2, torch.get_num_threads()))
            a = np.ones((1024, 1024, 2))  # 16 MB of float64: the parallel cast
            t = tb.to_tensor(a)
            assert t.dtype == torch.float32 and float(t.sum()) == a.size
            b = tb.to_numpy(torch.ones(1 << 21, dtype=torch.float64))
            assert b.dtype == np.float32 and float(b.sum()) == 1 << 21
            print("OK")

        atexit.register(convert)
    """
    assert_clean(run_child(code))
