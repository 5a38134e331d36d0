"""The built API reference reads well: docstring examples are code blocks, not prose.

Builds the site once with ``mkdocs build --strict`` and parses ``api/index.html``
with the standard library's HTML parser. The ``test`` extra installs mkdocs (it
brings the ``docs`` extra), so these run under the README's test command; they
skip only where mkdocs is missing.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

import tensorbridge as tb

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTED = re.findall(
    r"^::: tensorbridge\.(\w+)$", (ROOT / "docs" / "api.md").read_text(), re.MULTILINE
)


class _Page(HTMLParser):
    """Splits a page's text into code (inside <pre>) and prose (<p>, <blockquote>, <li>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.code: list[str] = []
        self.blocks: list[str] = []  # the text of each <pre>
        self.prose: list[str] = []
        self.blockquotes = 0
        self.section_rows: list[tuple[str, int]] = []  # ("Returns:", rows) per section
        self._title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"br", "img", "hr", "input", "meta", "link"}:
            return
        self.open.append(tag)
        if tag == "pre":
            self.blocks.append("")
        classes = (dict(attrs).get("class") or "").split()
        if tag == "blockquote":
            self.blockquotes += 1
        if "doc-section-title" in classes:
            self._title = True
            self.section_rows.append(("", 0))
        if tag == "tr" and "doc-section-item" in classes and self.section_rows:
            title, rows = self.section_rows[-1]
            self.section_rows[-1] = (title, rows + 1)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open.pop() != tag:
                pass
        if tag == "span":
            self._title = False

    def handle_data(self, data: str) -> None:
        if self._title:
            title, rows = self.section_rows[-1]
            self.section_rows[-1] = (title + data, rows)
        if "pre" in self.open:
            self.code.append(data)
            self.blocks[-1] += data
        elif any(tag in self.open for tag in ("p", "blockquote", "li", "td")):
            self.prose.append(data)


def _examples(name: str) -> Iterator[str]:
    """The source lines (``>>> ...`` and ``... ...``) of the doctests in ``tb.NAME``'s docstring."""
    value = getattr(tb, name)
    if not (inspect.isclass(value) or inspect.isroutine(value)):
        return  # an instance such as tb.FLOAT32: its docstring is its class's
    for line in (inspect.getdoc(value) or "").splitlines():
        stripped = line.strip()
        if stripped.startswith((">>> ", "... ")):
            yield stripped


@pytest.fixture(scope="module")
def api_page(tmp_path_factory: pytest.TempPathFactory) -> _Page:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = _Page()
    page.feed((site / "api" / "index.html").read_text(encoding="utf-8"))
    return page


def test_the_api_page_documents_examples() -> None:
    assert sum(1 for name in DOCUMENTED for _ in _examples(name)) >= 20


@pytest.mark.parametrize("name", [n for n in DOCUMENTED if any(_examples(n))])
def test_every_docstring_example_is_a_code_block(api_page: _Page, name: str) -> None:
    code_lines = {line.rstrip() for line in "".join(api_page.code).splitlines()}
    prose = "".join(api_page.prose)
    for example in _examples(name):
        assert example in code_lines, f"tb.{name}: {example!r} is not in a code block"
        source = example[4:].strip()
        if len(source) > 12:
            assert source not in prose, f"tb.{name}: {source!r} renders as prose"


def test_no_example_prompt_in_prose_or_quotes(api_page: _Page) -> None:
    assert ">>>" not in "".join(api_page.prose)
    assert api_page.blockquotes == 0


def test_returns_is_one_row_per_function(api_page: _Page) -> None:
    returns = [rows for title, rows in api_page.section_rows if title.strip() == "Returns:"]
    assert len(returns) >= 5
    assert all(rows == 1 for rows in returns), returns


def test_signatures_are_wrapped_and_name_public_types(api_page: _Page) -> None:
    # mkdocs.yml: separate_signature, line_length 60 (formatted by ruff or black).
    signatures = [block for block in api_page.blocks if re.match(r"[A-Za-z_]\w*\(", block)]
    assert len(signatures) >= len(DOCUMENTED) - 2  # FLOAT32 and PRESERVE have none
    for signature in signatures:
        assert max(len(line) for line in signature.splitlines()) <= 64, signature
        assert not re.search(r"\b_[A-Z]\w*", signature), signature  # no private TypeVar
