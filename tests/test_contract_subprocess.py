"""Contract section 6, crash-class cases, each in a child process.

An in-place op on a tensor made from read-only memory must neither crash the
process (np.load(..., mmap_mode="r") maps the file read-only: a write there is a
SIGSEGV) nor mutate an immutable ``bytes`` object. The children run with
``-W error``, so torch's "not writable" warning would fail them too.
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
