"""A Griffe extension for the API reference: doctests render as code, not prose.

The docstrings end with bare ``>>>`` doctests (pytest runs them with
``--doctest-modules``). In Markdown, a line starting with ``>`` is a blockquote,
so mkdocstrings would show every example as nested quotes run into one line.
This extension puts the trailing doctests of each docstring into a Google-style
``Examples:`` section (rendered as highlighted ``pycon`` code), and fences any
doctest block that text or a section follows. Docstrings that already have an
``Examples:`` section are left alone. Loaded from mkdocs.yml.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")  # "Args:", "Returns:", "Examples:", ...
_EXAMPLES = re.compile(r"^Examples?:\s*$", re.MULTILINE)


def _is_doctest_start(lines: list[str], index: int) -> bool:
    return lines[index].startswith(">>>") and (index == 0 or not lines[index - 1].strip())


def _fence(lines: list[str]) -> list[str]:
    out: list[str] = []
    index = 0
    while index < len(lines):
        if _is_doctest_start(lines, index):
            end = index
            while end < len(lines) and lines[end].strip():
                end += 1
            out += ["```pycon", *lines[index:end], "```"]
            index = end
        else:
            out.append(lines[index])
            index += 1
    return out


def doctests_as_code(text: str) -> str:
    """The docstring with its column-0 ``>>>`` blocks turned into code."""
    if _EXAMPLES.search(text):
        return text
    lines = text.split("\n")
    first = next((i for i in range(len(lines)) if _is_doctest_start(lines, i)), None)
    if first is None or first == 0:
        return text if first is None else "\n".join(_fence(lines))
    rest = lines[first:]
    if any(_SECTION.match(line) for line in rest):
        return "\n".join(_fence(lines))
    return "\n".join(
        [*lines[:first], "Examples:", *(f"    {line}" if line else "" for line in rest)]
    )


class DoctestsAsCode(griffe.Extension):
    """Rewrites each docstring's bare doctests before mkdocstrings parses it."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        docstring.value = doctests_as_code(docstring.value)
        docstring.__dict__.pop("parsed", None)  # drop a parse of the old text, if any
