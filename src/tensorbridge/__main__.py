"""``python -m tensorbridge``: an environment and capability report for bug reports.

Every row of the dtype tables comes from really converting a small array or
tensor with ``to_tensor`` / ``to_numpy`` and looking at the result, so the report
shows what this installation does, not what a table says it should.
"""

from __future__ import annotations

import platform
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch

from . import FLOAT32, PRESERVE, DtypePolicy, __version__, shares_memory, to_numpy, to_tensor
from ._dtypes import DType, all_dtypes, ml_dtypes_module
from ._errors import TensorBridgeError

__all__ = ["main", "report"]


def _outcome(
    convert: Callable[[], np.ndarray | torch.Tensor], source: np.ndarray | torch.Tensor
) -> str:
    try:
        result = convert()
    except TensorBridgeError as error:
        return type(error).__name__
    verb = "shares" if shares_memory(source, result) else "copies"
    dtype = result.dtype
    name = str(dtype) if isinstance(dtype, torch.dtype) else f"np.{dtype}"
    return f"{verb} -> {name}"


def _numpy_row(record: DType, policy: DtypePolicy) -> str:
    assert record.numpy is not None
    array = np.zeros(3, dtype=record.numpy)
    return _outcome(lambda: to_tensor(array, dtype=policy), array)


def _torch_sample(record: DType) -> torch.Tensor | None:
    assert record.torch is not None
    try:
        if record.kind == "q":
            return torch.quantize_per_tensor(torch.zeros(3), 1.0, 0, record.torch)
        return torch.zeros(3, dtype=record.torch)
    except (RuntimeError, TypeError, NotImplementedError):
        return None


def _torch_row(sample: torch.Tensor, policy: DtypePolicy) -> str:
    return _outcome(lambda: to_numpy(sample, dtype=policy), sample)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        )
        if index == 0:
            lines.append("  " + "  ".join("-" * width for width in widths))
    return [line.rstrip() for line in lines]


def report() -> str:
    """The whole report as text."""
    ml_dtypes = ml_dtypes_module()
    ml_version = (
        getattr(ml_dtypes, "__version__", "installed")
        if ml_dtypes is not None
        else "not installed (bfloat16/float8 cannot reach NumPy; "
        "pip install 'tensorbridge[ml-dtypes]')"
    )
    lines = [
        f"tensorbridge {__version__}",
        "",
        "Environment",
        f"  python     {sys.version.split()[0]} ({platform.platform()})",
        f"  numpy      {np.__version__}",
        f"  torch      {torch.__version__}",
        f"  ml_dtypes  {ml_version}",
        "",
        "CUDA",
    ]
    if torch.cuda.is_available():
        lines.append(
            f"  available  yes (CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s))"
        )
        for index in range(torch.cuda.device_count()):
            lines.append(f"  cuda:{index}     {torch.cuda.get_device_name(index)}")
    else:
        lines.append("  available  no (device='cuda' raises a TensorBridgeError)")

    with warnings.catch_warnings():
        # Creating complex32 samples makes torch warn that ComplexHalf is
        # experimental; the report is the process here, so it may say so quietly.
        warnings.simplefilter("ignore")
        numpy_rows: list[tuple[str, ...]] = [
            ("numpy dtype", "to_tensor default (FLOAT32)", "to_tensor PRESERVE")
        ]
        torch_rows: list[tuple[str, ...]] = [
            ("torch dtype", "to_numpy default (FLOAT32)", "to_numpy PRESERVE")
        ]
        for record in all_dtypes():
            if record.numpy is not None:
                numpy_rows.append(
                    (record.name, _numpy_row(record, FLOAT32), _numpy_row(record, PRESERVE))
                )
            if record.torch is not None:
                sample = _torch_sample(record)
                if sample is None:
                    torch_rows.append((str(record.torch), "(torch cannot create it)", ""))
                else:
                    torch_rows.append(
                        (
                            str(record.torch),
                            _torch_row(sample, FLOAT32),
                            _torch_row(sample, PRESERVE),
                        )
                    )

    lines += ["", "NumPy -> torch (a 3-element array of each dtype)"]
    lines += _table(numpy_rows)
    lines += ["", "torch -> NumPy (a 3-element CPU tensor of each dtype)"]
    lines += _table(torch_rows)
    return "\n".join(lines)


def main() -> int:
    print(report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
