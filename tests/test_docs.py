"""The Markdown of README.md and docs/ reads well at page width and is all reachable.

The examples themselves run in ``tests/test_doc_examples.py``, one block at a
time; this module checks what that test relies on (every fence is one it knows
how to treat) and what a reader sees: every page is in the site's navigation,
no table cell holds code long enough to overflow its column, and the charts are
drawn for the page's column with labels that stay readable.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^ *```(\S*)", re.MULTILINE)
# python: run by tests/test_doc_examples.py; bash: commands; text: not runnable
# (fragments, output, other libraries' calls).
FENCE_LANGUAGES = {"python", "bash", "text"}
CODE_SPAN = re.compile(r"`([^`]+)`")
LONGEST_CODE_IN_A_CELL = 48  # characters: about a third of the content column
COLUMN_PX = 690  # the content column of mkdocs-material at a desktop width
# A code block shows about 82 characters in that column, then scrolls sideways.
WIDEST_CODE_LINE = 80
SMALLEST_FONT_PX = 11


def _fences(text: str) -> list[str]:
    """The language of each opening fence (closing fences are the bare ones in between)."""
    return FENCE.findall(text)[::2]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_fence_is_python_bash_or_text(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert len(FENCE.findall(text)) % 2 == 0, "a fence is not closed"
    assert set(_fences(text)) <= FENCE_LANGUAGES, _fences(text)
    # The examples test finds ```python at the start of a line only.
    assert not re.search(r"^ +```python", text, re.MULTILINE)


@pytest.mark.parametrize("page", PAGES[1:], ids=lambda page: page.name)
def test_code_blocks_fit_the_column(page: Path) -> None:
    inside, wide = False, []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside and len(line) > WIDEST_CODE_LINE:
            wide.append(f"line {number}: {len(line)} characters")
    assert not wide, f"wrap these lines of code (the site cuts them off): {wide}"


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    listed = set(re.findall(r"^\s+- [^:]+: (\S+\.md)$", nav, re.MULTILINE))
    assert listed == {page.name for page in (ROOT / "docs").glob("*.md")}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_table_cells_hold_no_long_code(page: Path) -> None:
    rows = [line for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    long = [
        span
        for row in rows
        for span in CODE_SPAN.findall(row)
        if len(span) > LONGEST_CODE_IN_A_CELL
    ]
    assert not long, f"move these out of the table into the text around it: {long}"


CHARTS = sorted((ROOT / "docs" / "assets").glob("*.svg"))


def test_the_benchmarks_page_shows_every_chart() -> None:
    page = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"\]\(assets/([\w-]+\.svg)\)", page))
    assert shown == {chart.name for chart in CHARTS}


@pytest.mark.parametrize("chart", CHARTS, ids=lambda chart: chart.name)
def test_charts_fit_the_column_with_readable_labels(chart: Path) -> None:
    svg = chart.read_text(encoding="utf-8")
    width = float(re.search(r'<svg[^>]* width="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    assert width <= COLUMN_PX  # drawn at its own size, never scaled down
    sizes = [float(size) for size in re.findall(r'font-size="([\d.]+)"', svg)]
    assert sizes
    assert min(sizes) >= SMALLEST_FONT_PX
