"""``python -m tensorbridge``: an environment and capability report for bug reports.

Every row of the dtype tables comes from really converting a small array or
tensor with ``to_tensor`` / ``to_numpy`` and looking at the result, so the report
shows what this installation does, not what a table says it should. Each row is
then compared with the documented behaviour for that dtype (a copy, a share or
an ``UnsupportedDtypeError``); a section whose rows all match reads "ok", and
the exit code is 0 only when every section does.

    python -m tensorbridge            # the report, common dtypes
    python -m tensorbridge --all      # also the bit and sub-byte dtypes
    python -m tensorbridge --json     # everything, as JSON
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch

from . import FLOAT32, PRESERVE, DtypePolicy, __version__, shares_memory, to_numpy, to_tensor
from ._dtypes import DType, all_dtypes, apply_policy, ml_dtypes_module
from ._errors import TensorBridgeError

__all__ = ["collect", "main", "render"]

Row = dict[str, str]

# Bit and sub-byte dtypes (torch's bits*, int1-int7, uint1-uint7 and packed
# quantized types, ml_dtypes' float4/float6): shown with --all only.
_SUB_BYTE = re.compile(r"^(float4|float6)_|\dx\d")


def _common(record: DType) -> bool:
    return record.kind != "x" and not _SUB_BYTE.search(record.name)


def _numpy_name(dtype: np.dtype[Any]) -> str:
    """A NumPy dtype as code spells it: ``np.float32``, ``ml_dtypes.bfloat16``."""
    return f"{'ml_dtypes' if dtype.type.__module__ == 'ml_dtypes' else 'np'}.{dtype}"


def _outcome(convert: Callable[[], npt.NDArray[Any] | torch.Tensor], source: object) -> str:
    """What a conversion did: "shares -> torch.float32", "copies -> np.float32" or the error."""
    try:
        result = convert()
    except TensorBridgeError as error:
        return type(error).__name__
    assert isinstance(source, (np.ndarray, torch.Tensor))
    shared = shares_memory(cast("npt.NDArray[Any] | torch.Tensor", source), result)
    verb = "shares" if shared else "copies"
    dtype: object = result.dtype
    name = _numpy_name(dtype) if isinstance(dtype, np.dtype) else str(dtype)
    return f"{verb} -> {name}"


def _promised(record: DType, policy: DtypePolicy, target_side: str) -> str:
    """The documented result for a small, writable, native array of ``record``."""
    result = apply_policy(policy, record)
    if target_side == "torch":
        name = None if result.torch is None else str(result.torch)
    else:
        name = None if result.numpy is None else _numpy_name(result.numpy)
    if name is None:
        return "UnsupportedDtypeError"
    return f"{'shares' if result is record else 'copies'} -> {name}"


def _torch_sample(record: DType) -> torch.Tensor | None:
    assert record.torch is not None
    try:
        if record.kind == "q":
            return torch.quantize_per_tensor(torch.zeros(3), 1.0, 0, record.torch)
        return torch.zeros(3, dtype=record.torch)
    except (RuntimeError, TypeError, NotImplementedError):
        return None


def _numpy_row(record: DType) -> Row:
    assert record.numpy is not None
    array = np.zeros(3, dtype=record.numpy)
    return {
        "dtype": record.name,
        "common": "yes" if _common(record) else "no",
        "default": _outcome(lambda: to_tensor(array), array),
        "preserve": _outcome(lambda: to_tensor(array, dtype=PRESERVE), array),
        "promised_default": _promised(record, FLOAT32, "torch"),
        "promised_preserve": _promised(record, PRESERVE, "torch"),
    }


def _torch_row(record: DType, tensor: torch.Tensor) -> Row:
    return {
        "dtype": str(record.torch),
        "common": "yes" if _common(record) else "no",
        "default": _outcome(lambda: to_numpy(tensor), tensor),
        "preserve": _outcome(lambda: to_numpy(tensor, dtype=PRESERVE), tensor),
        "promised_default": _promised(record, FLOAT32, "numpy"),
        "promised_preserve": _promised(record, PRESERVE, "numpy"),
    }


def _dtype_rows() -> tuple[list[Row], list[Row]]:
    numpy_rows: list[Row] = []
    torch_rows: list[Row] = []
    with warnings.catch_warnings():
        # Creating complex32 samples makes torch warn that ComplexHalf is
        # experimental; the report is the whole process, so it may say so quietly.
        warnings.simplefilter("ignore")
        for record in all_dtypes():
            if record.numpy is not None:
                numpy_rows.append(_numpy_row(record))
            tensor = _torch_sample(record) if record.torch is not None else None
            if tensor is not None:
                torch_rows.append(_torch_row(record, tensor))
    return numpy_rows, torch_rows


def _verdict(rows: list[Row]) -> str:
    wrong = [
        row["dtype"]
        for row in rows
        if (row["default"], row["preserve"]) != (row["promised_default"], row["promised_preserve"])
    ]
    if wrong:
        return f"PROBLEM: {', '.join(wrong)} did not behave as documented"
    errors = sum(1 for row in rows if "Error" in row["default"] + row["preserve"])
    return (
        f"ok: all {len(rows)} dtypes behave as documented; "
        f"{errors} raise UnsupportedDtypeError under one or both policies"
    )


def collect() -> dict[str, Any]:
    """Everything the report says, as plain data."""
    ml_dtypes = ml_dtypes_module()
    cuda = torch.cuda.is_available()
    numpy_rows, torch_rows = _dtype_rows()
    return {
        "tensorbridge": __version__,
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "numpy": importlib.metadata.version("numpy"),
            # torch.__version__ names the build ("+cpu", "+cu130"); the
            # package metadata of a PyPI CUDA wheel does not.
            "torch": str(torch.version.__version__),
            "ml_dtypes": str(getattr(ml_dtypes, "__version__", "installed")) if ml_dtypes else None,
            "verdict": (
                "ok"
                if ml_dtypes
                else "ok, without ml_dtypes: bfloat16 and float8 cannot reach NumPy "
                "(pip install 'tensorbridge[ml-dtypes]')"
            ),
        },
        "cuda": {
            "available": cuda,
            "version": torch.version.cuda,
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if cuda
            else [],
            "verdict": (
                f"ok: {torch.cuda.device_count()} device(s)"
                if cuda
                else "ok, CPU only: device='cuda' raises a TensorBridgeError"
            ),
        },
        "numpy_to_torch": {"rows": numpy_rows, "verdict": _verdict(numpy_rows)},
        "torch_to_numpy": {"rows": torch_rows, "verdict": _verdict(torch_rows)},
    }


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  " + "  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))]
    lines.append("  " + "  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return [line.rstrip() for line in lines]


def render(report: dict[str, Any], *, everything: bool = False) -> str:
    """The report as aligned text, a verdict line under each section.

    The dtype tables list the common dtypes; ``everything`` adds the bit and
    sub-byte ones (the verdicts always cover every dtype).
    """
    env, cuda = report["environment"], report["cuda"]
    lines = [
        f"tensorbridge {report['tensorbridge']}",
        "",
        "Environment",
        f"  python     {env['python']} ({env['platform']})",
        f"  numpy      {env['numpy']}",
        f"  torch      {env['torch']}",
        f"  ml_dtypes  {env['ml_dtypes'] or 'not installed'}",
        f"  verdict    {env['verdict']}",
        "",
        "CUDA",
        f"  available  {'yes (CUDA ' + str(cuda['version']) + ')' if cuda['available'] else 'no'}",
    ]
    lines += [f"  cuda:{i}     {name}" for i, name in enumerate(cuda["devices"])]
    lines.append(f"  verdict    {cuda['verdict']}")
    for key, title, header in (
        ("numpy_to_torch", "NumPy -> torch (a 3-element array of each dtype)", "numpy dtype"),
        ("torch_to_numpy", "torch -> NumPy (a 3-element CPU tensor of each dtype)", "torch dtype"),
    ):
        section = report[key]
        shown = [r for r in section["rows"] if everything or r["common"] == "yes"]
        rows = [(r["dtype"], r["default"], r["preserve"]) for r in shown]
        lines += ["", title]
        lines += _table((header, "default (FLOAT32)", "PRESERVE"), rows)
        if len(shown) < len(section["rows"]):
            hidden = len(section["rows"]) - len(shown)
            lines.append(f"  ({hidden} bit and sub-byte dtypes not shown: --all lists them)")
        lines.append(f"  verdict    {section['verdict']}")
    return "\n".join(lines)


def healthy(report: dict[str, Any]) -> bool:
    return all(
        report[key]["verdict"].startswith("ok")
        for key in ("environment", "cuda", "numpy_to_torch", "torch_to_numpy")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tensorbridge",
        description="Environment and capability report; exit code 0 when the install is healthy.",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--all", action="store_true", help="list the bit and sub-byte dtypes too")
    args = parser.parse_args(argv)
    report = collect()
    print(json.dumps(report, indent=2) if args.json else render(report, everything=args.all))
    return 0 if healthy(report) else 1


if __name__ == "__main__":
    raise SystemExit(main())
