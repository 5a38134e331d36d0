"""Draw the benchmark results as SVG charts for the docs.

    python benchmarks/bench.py --json benchmarks/results/cpu.json
    python benchmarks/chart.py benchmarks/results/cpu.json docs/assets/benchmarks-cpu.svg

Reads the JSON ``bench.py --json`` writes::

    {"machine": {...},
     "rows":  [{"name": str, "baseline": str, "ratio": float, "bar": float | None}, ...],
     "sweep": [{"path": str, "size": int, "ratio": float}, ...]}      # optional

(older files with ``path`` / ``versus`` in the rows are read too). A ratio is
tensorbridge's time divided by the baseline's time, so below 1 is faster.

- ``rows`` become a horizontal bar chart (OUTPUT): one bar per row, on a linear
  axis with a scale, the row's target drawn as a black tick, and colours that say
  how the row did: green when tensorbridge is at least as fast as the baseline,
  amber when it is slower but within the target, red when it misses the target.
- ``sweep`` becomes a line chart of ratio against array size, both axes
  logarithmic, one line per path, written next to OUTPUT as ``NAME-sweep.svg``
  (or to ``--sweep PATH``).

Plain SVG written by hand, so the docs need no plotting library.
"""

from __future__ import annotations

import argparse
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FONT = 'font-family="Helvetica, Arial, sans-serif"'
CHAR = 6.6  # average width of a 12 px sans-serif character, for label layout
GREEN, AMBER, RED = "#2e7d32", "#e69f00", "#c62828"
LINES = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#56b4e9", "#e69f00", "#000000")


def _text(x: float, y: float, text: str, anchor: str = "start", **attrs: object) -> str:
    extra = "".join(f' {key.replace("_", "-")}="{value}"' for key, value in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{html.escape(text)}</text>'


def _nice_step(span: float, most: int = 8) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten giving at most ``most`` steps."""
    power = 10.0 ** math.floor(math.log10(span / most))
    for factor in (1, 2, 2.5, 5, 10):
        if span / (factor * power) <= most:
            return factor * power
    return 10 * power


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _row(row: Mapping[str, Any]) -> tuple[str, str, float, float | None]:
    """(name, baseline, ratio, bar) from a row in the current or the older format."""
    name = str(row.get("name", row.get("path", "?")))
    baseline = str(row.get("baseline", row.get("versus", "?")))
    bar = row.get("bar")
    return name, baseline, float(row["ratio"]), None if bar is None else float(bar)


def colour(ratio: float, bar: float | None) -> str:
    """Green: at least as fast as the baseline; amber: slower but within the target; red: not."""
    if bar is not None and ratio > bar:
        return RED
    return GREEN if ratio <= 1.0 else AMBER


def bar_chart(rows: Sequence[Mapping[str, Any]], title: str) -> str:
    """Horizontal bars of each row's ratio, its target as a tick, on a labelled linear axis."""
    data = [_row(row) for row in rows]
    labels = [(name, f"vs {baseline}") for name, baseline, _, _ in data]
    left = 16 + CHAR * max(len(text) for pair in labels for text in pair)
    plot = 420.0
    width = left + plot + 90  # room for the value labels right of the longest bar
    row_height, top = 46, 58
    top_value = max(1.0, *(r for _, _, r, _ in data), *(b for *_, b in data if b is not None))
    step = _nice_step(top_value * 1.08)
    scale_max = step * math.ceil(top_value * 1.08 / step)
    groups = [str(row.get("group", "")) for row in rows]
    headings = {
        i: group for i, group in enumerate(groups) if group and (i == 0 or groups[i - 1] != group)
    }
    heading_height = 22
    offsets, y_next = [], float(top)
    for index in range(len(data)):
        y_next += heading_height if index in headings else 0
        offsets.append(y_next)
        y_next += row_height
    bottom = int(y_next)
    height = bottom + 96

    def x(value: float) -> float:
        return left + plot * value / scale_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" '
        f'viewBox="0 0 {width:.0f} {height}" {FONT} font-size="12">',
        f'<rect width="{width:.0f}" height="{height}" fill="#fff"/>',
        _text(width / 2, 22, title, "middle", font_size=14, font_weight="bold"),
    ]
    ticks = round(scale_max / step)
    for index in range(ticks + 1):
        value = index * step
        parts += [
            f'<line x1="{x(value):.1f}" y1="{top - 6}" x2="{x(value):.1f}" y2="{bottom}" '
            'stroke="#e0e0e0"/>',
            _text(x(value), bottom + 16, _fmt(value), "middle", fill="#333"),
        ]
    parts += [
        f'<line x1="{x(1):.1f}" y1="{top - 10}" x2="{x(1):.1f}" y2="{bottom}" stroke="#555" '
        'stroke-dasharray="5 3"/>',
        _text(x(1), top - 14, "1 = as fast as the baseline", "middle", fill="#555"),
        f'<line x1="{left}" y1="{bottom}" x2="{left + plot}" y2="{bottom}" stroke="#333"/>',
        _text(
            left + plot / 2,
            bottom + 36,
            "tensorbridge time / baseline time (lower is faster)",
            "middle",
            fill="#333",
        ),
    ]
    for index, (name, baseline, ratio, bar) in enumerate(data):
        y = offsets[index]
        if index in headings:
            parts.append(_text(8, y - 6, headings[index], fill="#333", font_weight="bold"))
        parts += [
            _text(left - 10, y + 16, name, "end", fill="#111"),
            _text(left - 10, y + 31, f"vs {baseline}", "end", fill="#666", font_size=11),
            f'<rect x="{left}" y="{y + 8}" width="{max(x(ratio) - left, 1):.1f}" height="22" '
            f'fill="{colour(ratio, bar)}"/>',
        ]
        end = x(ratio)
        if bar is not None:
            parts.append(
                f'<line x1="{x(bar):.1f}" y1="{y + 3}" x2="{x(bar):.1f}" y2="{y + 35}" '
                'stroke="#000" stroke-width="2.5"/>'
            )
            end = max(end, x(bar))
        parts.append(_text(end + 6, y + 23, f"{ratio:.2f}", fill="#111", font_weight="bold"))
    legend_y = bottom + 62
    parts += _legend(
        8,
        legend_y,
        [
            (GREEN, "rect", "at least as fast as the baseline"),
            (AMBER, "rect", "slower, not over its target"),
            (RED, "rect", "misses the target"),
            ("#000", "tick", "target"),
        ],
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _legend(left: float, y: float, items: Sequence[tuple[str, str, str]]) -> list[str]:
    parts: list[str] = []
    x = left
    for fill, mark, label in items:
        if mark == "rect":
            parts.append(f'<rect x="{x:.1f}" y="{y - 10}" width="14" height="12" fill="{fill}"/>')
        elif mark == "tick":
            parts.append(
                f'<line x1="{x + 7:.1f}" y1="{y - 12}" x2="{x + 7:.1f}" y2="{y + 3}" '
                f'stroke="{fill}" stroke-width="2.5"/>'
            )
        else:
            parts.append(
                f'<line x1="{x:.1f}" y1="{y - 4}" x2="{x + 14:.1f}" y2="{y - 4}" '
                f'stroke="{fill}" stroke-width="2.5"/>'
            )
        parts.append(_text(x + 19, y, label, fill="#333"))
        x += 19 + CHAR * len(label) + 18
    return parts


def _size_label(size: float) -> str:
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= factor:
            return f"{size / factor:g}{suffix}"
    return f"{size:g}"


def sweep_chart(points: Sequence[Mapping[str, Any]], title: str) -> str:
    """Ratio against size, log-log, one line per path, a dashed line at ratio 1."""
    paths: dict[str, list[tuple[float, float]]] = {}
    for point in points:
        paths.setdefault(str(point["path"]), []).append(
            (float(point["size"]), float(point["ratio"]))
        )
    for series in paths.values():
        series.sort()
    sizes = [s for series in paths.values() for s, _ in series]
    ratios = [r for series in paths.values() for _, r in series]
    x_low, x_high = math.floor(math.log10(min(sizes))), math.ceil(math.log10(max(sizes)))
    x_high = max(x_high, x_low + 1)
    y_ticks = [
        m * 10.0**e
        for e in range(-3, 3)
        for m in (1, 2, 5)
        if min(ratios) / 1.3 <= m * 10.0**e <= max(ratios) * 1.3 or m * 10.0**e == 1
    ]
    y_low = math.log10(min([*ratios, *y_ticks]) / 1.15)
    y_high = math.log10(max([*ratios, *y_ticks]) * 1.15)
    left, top, plot_w, plot_h = 70, 48, 520, 300
    legend_w = 24 + CHAR * max(len(path) for path in paths)
    width, height = left + plot_w + 20 + legend_w, top + plot_h + 60

    def x(size: float) -> float:
        return left + plot_w * (math.log10(size) - x_low) / (x_high - x_low)

    def y(ratio: float) -> float:
        return top + plot_h * (y_high - math.log10(ratio)) / (y_high - y_low)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" '
        f'viewBox="0 0 {width:.0f} {height}" {FONT} font-size="12">',
        f'<rect width="{width:.0f}" height="{height}" fill="#fff"/>',
        _text(width / 2, 22, title, "middle", font_size=14, font_weight="bold"),
    ]
    for exponent in range(x_low, x_high + 1):
        size = 10.0**exponent
        parts += [
            f'<line x1="{x(size):.1f}" y1="{top}" x2="{x(size):.1f}" y2="{top + plot_h}" '
            'stroke="#e0e0e0"/>',
            _text(x(size), top + plot_h + 16, _size_label(size), "middle", fill="#333"),
        ]
    for tick in y_ticks:
        style = 'stroke="#555" stroke-dasharray="5 3"' if tick == 1 else 'stroke="#e0e0e0"'
        parts += [
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" '
            f'y2="{y(tick):.1f}" {style}/>',
            _text(left - 6, y(tick) + 4, f"{tick:g}", "end", fill="#333"),
        ]
    parts += [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#333"/>',
        _text(left + plot_w / 2, top + plot_h + 38, "array size (elements)", "middle"),
        _text(left + plot_w - 6, y(1) - 6, "1 = as fast as the baseline", "end", fill="#555"),
        _text(
            16,
            top + plot_h / 2,
            "tensorbridge / baseline time (lower is faster)",
            "middle",
            transform=f"rotate(-90 16 {top + plot_h / 2})",
        ),
    ]
    for index, (path, series) in enumerate(paths.items()):
        stroke = LINES[index % len(LINES)]
        coords = " ".join(f"{x(s):.1f},{y(r):.1f}" for s, r in series)
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{stroke}" stroke-width="2"/>'
        )
        parts += [
            f'<circle cx="{x(s):.1f}" cy="{y(r):.1f}" r="3" fill="{stroke}"/>' for s, r in series
        ]
        legend_y = top + 14 + 20 * index
        parts += [
            f'<line x1="{left + plot_w + 16}" y1="{legend_y - 4}" x2="{left + plot_w + 32}" '
            f'y2="{legend_y - 4}" stroke="{stroke}" stroke-width="2.5"/>',
            _text(left + plot_w + 38, legend_y, path, fill="#333"),
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table for docs/benchmarks.md, with an honest verdict each."""
    lines = ["| path | compared with | ratio | target | verdict |", "|---|---|---|---|---|"]
    for row in rows:
        name, baseline, ratio, bar = _row(row)
        if bar is not None and ratio > bar:
            verdict = f"misses the target: {ratio:.2f}x the time"
        elif ratio <= 1.0:
            verdict = f"{1 / ratio:.1f}x as fast" if ratio < 0.95 else "as fast"
        else:
            verdict = f"{ratio:.2f}x the time" + ("" if bar is None else ", within the target")
        target = "" if bar is None else f"<= {bar:.3g}"
        lines.append(f"| {name} | `{baseline}` | {ratio:.2f} | {target} | {verdict} |")
    return "\n".join(lines) + "\n"


def _machine(data: Mapping[str, Any]) -> str:
    machine = data.get("machine", {})
    pieces = [f"{key} {machine[key]}" for key in ("numpy", "torch") if key in machine]
    if "cpus" in machine:
        pieces.append(f"{machine['cpus']} CPUs")
    return ", ".join(pieces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", help="JSON written by bench.py --json")
    parser.add_argument("output", help="the SVG file for the per-call rows")
    parser.add_argument("--sweep", help="the SVG file for the size sweep (default: OUTPUT-sweep)")
    parser.add_argument(
        "--markdown", action="store_true", help="also print the rows as a Markdown table"
    )
    args = parser.parse_args(argv)
    data = json.loads(Path(args.results).read_text(encoding="utf-8"))
    machine = _machine(data)
    output = Path(args.output)
    if data.get("rows"):
        title = f"tensorbridge against the raw calls ({machine})" if machine else "ratios"
        output.write_text(bar_chart(data["rows"], title), encoding="utf-8")
        print(f"wrote {output}")
        if args.markdown:
            print(markdown(data["rows"]))
    if data.get("sweep"):
        sweep = Path(args.sweep) if args.sweep else output.with_name(f"{output.stem}-sweep.svg")
        title = f"Ratio by array size ({machine})" if machine else "Ratio by array size"
        sweep.write_text(sweep_chart(data["sweep"], title), encoding="utf-8")
        print(f"wrote {sweep}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
