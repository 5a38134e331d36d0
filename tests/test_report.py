"""``python -m tensorbridge``: runs, exits 0, and reports what conversions really do."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import torch


def _report(*arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-W", "error", "-m", "tensorbridge", *arguments],
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


def test_report_has_a_verdict_per_section_and_all_are_ok() -> None:
    verdicts = [line for line in _report().splitlines() if line.strip().startswith("verdict")]
    assert len(verdicts) == 4
    assert all(line.split(None, 1)[1].startswith("ok") for line in verdicts)


def test_json_report_matches_real_conversions() -> None:
    report = json.loads(_report("--json"))
    rows = {row["dtype"]: row for row in report["numpy_to_torch"]["rows"]}
    assert rows["float64"]["default"] == "copies -> torch.float32"
    assert rows["int64"]["default"] == "shares -> torch.int64"
    torch_rows = {row["dtype"]: row for row in report["torch_to_numpy"]["rows"]}
    assert torch_rows["torch.bfloat16"]["default"] == "copies -> np.float32"
    assert report["cuda"]["available"] == torch.cuda.is_available()
    for section in ("numpy_to_torch", "torch_to_numpy"):
        for row in report[section]["rows"]:
            assert row["default"] == row["promised_default"], row
            assert row["preserve"] == row["promised_preserve"], row
