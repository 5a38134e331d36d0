"""``python -m tensorbridge``: runs, exits 0, and reports what conversions really do."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
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


def _fields(text: str, section: str) -> dict[str, str]:
    """The "  key   value" lines of one section of the text report, whatever the widths."""
    lines = text.split(f"\n{section}\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return dict(line.strip().split(None, 1) for line in lines)


def test_report_lists_versions_and_cuda() -> None:
    text = _report()
    environment = _fields(text, "Environment")
    assert environment["numpy"] == np.__version__
    assert environment["torch"] == str(torch.__version__)  # names the build: +cpu, +cu130
    cuda = _fields(text, "CUDA")
    assert cuda["available"].startswith("yes") == torch.cuda.is_available()
    for index in range(torch.cuda.device_count()):
        assert cuda[f"cuda:{index}"] == torch.cuda.get_device_name(index)


def test_fields_are_read_whatever_the_column_width() -> None:
    text = "x\n\nEnvironment\n  torch      2.11.0+cu130.dev20260101+long\n  verdict    ok\n\nCUDA\n"
    assert _fields(text, "Environment")["torch"] == "2.11.0+cu130.dev20260101+long"


def test_report_rows_match_real_behaviour() -> None:
    lines = {line.split()[0]: line for line in _report().splitlines() if line.startswith("  ")}
    assert "copies -> torch.float32" in lines["float64"]
    assert "shares -> torch.float64" in lines["float64"]
    assert lines["float32"].count("shares -> torch.float32") == 2
    assert "UnsupportedDtypeError" in lines["longdouble"]
    assert "copies -> np.float32" in lines["torch.float64"]
    assert "copies -> np.complex64" in lines["torch.complex32"]


def test_ml_dtypes_types_are_named_by_their_module() -> None:
    pytest.importorskip("ml_dtypes")
    lines = {line.split()[0]: line for line in _report().splitlines() if line.startswith("  ")}
    assert "shares -> ml_dtypes.bfloat16" in lines["torch.bfloat16"]
    assert "shares -> ml_dtypes.float8_e4m3fn" in lines["torch.float8_e4m3fn"]
    assert "np.bfloat16" not in _report("--all")


def test_report_has_a_verdict_per_section_and_all_are_ok() -> None:
    verdicts = [line for line in _report().splitlines() if line.strip().startswith("verdict")]
    assert len(verdicts) == 4
    assert all(line.split(None, 1)[1].startswith("ok") for line in verdicts)
    assert "behave as documented" in verdicts[2]
    assert "behave as documented" in verdicts[3]
    assert "promise" not in "\n".join(verdicts)


def test_bit_and_sub_byte_dtypes_only_with_all() -> None:
    text, text_all = _report(), _report("--all")
    short = {line.split()[0] for line in text.splitlines() if line.startswith("  ")}
    full = {line.split()[0] for line in text_all.splitlines() if line.startswith("  ")}
    assert {"torch.int4", "torch.bits8", "torch.uint1", "torch.quint4x2"} <= full - short
    assert {"float32", "bfloat16", "torch.float8_e4m3fn", "torch.qint8"} <= short
    assert re.search(r"\(\d+ bit and sub-byte dtypes not shown: --all lists them\)", text)
    assert "not shown" not in text_all


def test_json_report_matches_real_conversions() -> None:
    report = json.loads(_report("--json"))
    assert report["environment"]["torch"] == str(torch.__version__)
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
    common = {row["dtype"]: row["common"] for row in report["torch_to_numpy"]["rows"]}
    assert common["torch.int4"] == "no"  # JSON lists every dtype, marked
    assert common["torch.float16"] == "yes"
