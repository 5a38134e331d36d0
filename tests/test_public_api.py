"""The public surface: every name in __all__ imports, is documented, and errors read well."""

from __future__ import annotations

import importlib.metadata
import inspect
import pickle
import re
from pathlib import Path

import pytest

import tensorbridge as tb

EXPECTED = {
    "to_tensor",
    "to_numpy",
    "DtypePolicy",
    "FLOAT32",
    "PRESERVE",
    "shares_memory",
    "TensorBridgeError",
    "ShareError",
    "UnsupportedDtypeError",
    "CastingError",
    "InvalidInputError",
    "InvalidArgumentError",
    "convert_like",
    "__version__",
}
API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_all_is_the_contract_surface() -> None:
    assert set(tb.__all__) >= EXPECTED
    for name in tb.__all__:
        assert hasattr(tb, name), name


@pytest.mark.parametrize("name", [n for n in tb.__all__ if not n.isupper() and n != "__version__"])
def test_public_callables_are_documented(name: str) -> None:
    doc = inspect.getdoc(getattr(tb, name))
    assert doc, f"tb.{name} has no docstring"
    assert len(doc.splitlines()[0]) <= 100


def test_every_public_name_has_an_entry_in_the_api_reference() -> None:
    documented = set(re.findall(r"^::: tensorbridge\.(\w+)$", API_PAGE.read_text(), re.MULTILINE))
    missing = set(tb.__all__) - documented - {"__version__"}
    assert not missing, f"add '::: tensorbridge.NAME' to docs/api.md for {sorted(missing)}"
    assert documented <= set(tb.__all__), documented - set(tb.__all__)


def test_version_matches_installed_metadata() -> None:
    assert tb.__version__ == importlib.metadata.version("tensorbridge")


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (tb.ShareError, ValueError),
        (tb.UnsupportedDtypeError, TypeError),
        (tb.CastingError, TypeError),
        (tb.InvalidInputError, TypeError),
        (tb.InvalidArgumentError, ValueError),
    ],
)
def test_errors_subclass_the_base_and_a_builtin(error: type[Exception], builtin: type) -> None:
    assert issubclass(error, tb.TensorBridgeError)
    assert issubclass(error, builtin)
    assert error.__module__ == "tensorbridge"
    assert issubclass(tb.TensorBridgeError, Exception)
    assert getattr(tb, error.__name__) is error
    revived = pickle.loads(pickle.dumps(error("why; what to do")))
    assert type(revived) is error
    assert str(revived) == "why; what to do"


def test_policies_repr_by_name() -> None:
    assert repr(tb.FLOAT32) == "tb.FLOAT32"
    assert repr(tb.PRESERVE) == "tb.PRESERVE"
    assert "float16" in repr(tb.DtypePolicy(floating="float16"))
