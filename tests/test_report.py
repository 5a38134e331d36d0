"""``python -m tensorbridge``: runs, exits 0, and reports what conversions really do."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch


def _report() -> str:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "tensorbridge"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def test_report_lists_versions_and_cuda() -> None:
    text = _report()
    assert f"numpy      {np.__version__}" in text
    assert f"torch      {torch.__version__}" in text
    assert "CUDA" in text
    assert ("available  yes" in text) == torch.cuda.is_available()


def test_report_rows_match_real_behaviour() -> None:
    lines = {line.split()[0]: line for line in _report().splitlines() if line.startswith("  ")}
    assert "copies -> torch.float32" in lines["float64"]
    assert "shares -> torch.float64" in lines["float64"]
    assert lines["float32"].count("shares -> torch.float32") == 2
    assert "UnsupportedDtypeError" in lines["longdouble"]
    assert "copies -> np.float32" in lines["torch.float64"]
    assert "copies -> np.complex64" in lines["torch.complex32"]
