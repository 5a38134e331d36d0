"""Every ```python block of README.md and docs/*.md runs on its own, as a reader copies it.

Each block is written to a file of its own and run by a fresh ``python -W error``
in an empty folder, one test per block, so a block that leans on a name from an
earlier block fails here with the ``NameError`` a reader would get. Blocks must
run on a CPU-only machine: one that can use a GPU picks its device with
``torch.cuda.is_available()``. Code that is deliberately not runnable (a
fragment, another library's call) is fenced as ```text, never as ```python;
``tests/test_docs.py`` checks that no other fence spelling slips past this test.

A block is a script (``__name__ == "__main__"``), so DataLoader workers start
as they do for a reader, under any start method. Starting Python with torch
takes about a second, so the blocks run two at a time: the first test that
needs a result starts every selected block, and each test waits for its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
TIMEOUT_S = 120  # per block; the slowest (two DataLoader workers) takes a few seconds
AT_ONCE = 2


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # of the block's first line of code
    code: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks() -> Iterator[Block]:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in PYTHON_BLOCK.finditer(text):
            line = text.count("\n", 0, match.start(1)) + 1
            yield Block(page.relative_to(ROOT).as_posix(), line, match.group(1))


BLOCKS = list(_blocks())


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: killed at the timeout
    output: str


def _run(block: Block, folder: Path) -> Outcome:
    folder.mkdir(parents=True)
    script = folder / "example.py"
    script.write_text(block.code, encoding="utf-8")
    try:
        done = subprocess.run(
            [sys.executable, "-W", "error", str(script)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    except subprocess.TimeoutExpired as error:
        return Outcome(None, f"still running after {TIMEOUT_S} s\n{error.stderr or ''}")
    return Outcome(done.returncode, done.stdout + done.stderr)


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Block, Future[Outcome]]]:
    here = Path(__file__).resolve()
    selected = [
        item.callspec.params["block"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.path.resolve() == here
        and hasattr(item, "callspec")
        and "block" in item.callspec.params
    ]
    root = tmp_path_factory.mktemp("examples")
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        futures = {
            block: pool.submit(_run, block, root / f"block-{index}")
            for index, block in enumerate(selected)
        }
        yield futures
        for future in futures.values():
            future.cancel()


def test_the_pages_have_examples() -> None:
    assert len(BLOCKS) >= 24
    assert {block.page for block in BLOCKS} >= {"README.md", "docs/getting-started.md"}


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_block_runs_alone(block: Block, outcomes: dict[Block, Future[Outcome]]) -> None:
    outcome = outcomes[block].result()
    assert outcome.returncode == 0, f"{block} failed when run alone:\n{outcome.output[-4000:]}"
