"""Every ```python example in README.md and docs/*.md runs, top to bottom, per page.

Blocks on one page share a namespace, as a reader running them in order would.
README examples run as ``__main__`` (its DataLoader example guards its workers
with ``if __name__ == "__main__":``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def test_there_are_examples() -> None:
    assert sum(len(BLOCK.findall(page.read_text(encoding="utf-8"))) for page in PAGES) >= 12


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_examples_run(page: Path) -> None:
    namespace: dict[str, object] = {"__name__": "__main__" if page.name == "README.md" else "docs"}
    for number, block in enumerate(BLOCK.findall(page.read_text(encoding="utf-8")), start=1):
        # dont_inherit: the examples must not run under this module's __future__ imports.
        code = compile(block, f"{page.name}[example {number}]", "exec", dont_inherit=True)
        exec(code, namespace)
