"""Draw the benchmark results as SVG charts, and Markdown tables, for the docs.

    python benchmarks/bench.py --json benchmarks/results/cpu.json
    python benchmarks/chart.py benchmarks/results/cpu.json docs/assets/benchmarks-cpu.svg

Reads the JSON ``bench.py --json`` writes::

    {"machine": {...},
     "rows":  [{"name": str, "group": str, "baseline": str, "ratio": float,
                "bar": float | None}, ...],
     "sweep": [{"path": str, "size": int, "ratio": float, "bar": float | None}, ...]}

(older files with ``path`` / ``versus`` in the rows are read too). A ratio is
tensorbridge's time divided by the baseline's time, so below 1 is faster.

The charts are drawn for the content column of the docs (at most ``WIDTH``
pixels wide, shown at their own size, never scaled down), with no text under
``SMALLEST_FONT`` pixels:

- ``rows`` become one horizontal bar chart per chart group (``CHARTS``), written
  next to OUTPUT as ``NAME-GROUP.svg``: one bar per row, its name and baseline
  above it, on a linear axis, the row's bar drawn as a black tick, and colours
  that say how the row did: green when tensorbridge is at least as fast as the
  baseline, amber when it is slower but within the bar, red when it misses it.
- ``sweep`` becomes a line chart of ratio against array size, both axes
  logarithmic, one line per path, written as ``NAME-sweep.svg``.

``--markdown`` also prints, per chart group, the table the benchmarks page
shows, and the table of the rows that miss their bar. Plain SVG written by
hand, so the docs need no plotting library.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

WIDTH = 680  # px; the docs' content column is about 690 px at a desktop width
SMALLEST_FONT = 11  # px
FONT = 'font-family="Helvetica, Arial, sans-serif"'
EM = 0.54  # average width of a character of that font, in em, for laying out text
GREEN, AMBER, RED = "#2e7d32", "#e69f00", "#c62828"
LINES = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#56b4e9", "#e69f00", "#000000")

# bench.py's groups -> (chart group, chart title). Groups not listed get a chart of their own.
CHARTS: dict[str, tuple[str, str]] = {
    "calls": ("calls", "Single calls"),
    "limit": ("large", "Large casts"),
    "trees": ("batches", "Batches"),
    "collate": ("batches", "Batches"),
    "workloads": ("workloads", "Real workloads"),
    "import": ("workloads", "Real workloads"),
}

# Baselines too long for a table cell, in a few words; the page spells them out.
SHORT_BASELINES: dict[str, str] = {
    "parallel copy of the larger side into new memory (the faster of t.clone() and a "
    "copy into np.empty memory)": "a parallel copy",
    "per leaf torch.from_numpy(x).float() / torch.from_numpy(x)": "hand-written, per leaf",
    "torch.utils.data.default_convert(batch) (same result)": "`default_convert(batch)`",
    "torch.utils.data.default_convert(batch) (keeps float64)": "`default_convert(batch)`, "
    "which keeps float64",
    "torch.stack([torch.from_numpy(x.astype(np.int64)) for x in slices])": "hand-written stack",
    "faster of t.to(dtype=torch.float32).numpy() and t.numpy().astype(np.float32)": "the "
    "faster of `.to()` and `astype`",
    "a budget of 0.15 s (the ratio is the time over the budget)": "a budget of 0.15 s",
    "per leaf t.detach().cpu().numpy()": "`t.detach().cpu().numpy()`, per leaf",
}


class Row(NamedTuple):
    name: str
    group: str
    baseline: str
    ratio: float
    bar: float | None

    @property
    def missed(self) -> bool:
        return self.bar is not None and self.ratio > self.bar


def _row(row: Mapping[str, Any]) -> Row:
    """A row in the current or the older format."""
    bar = row.get("bar")
    return Row(
        str(row.get("name", row.get("path", "?"))),
        str(row.get("group", "")),
        str(row.get("baseline", row.get("versus", "?"))),
        float(row["ratio"]),
        None if bar is None else float(bar),
    )


def _text(x: float, y: float, text: str, anchor: str = "start", **attrs: object) -> str:
    extra = "".join(f' {key.replace("_", "-")}="{value}"' for key, value in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{html.escape(text)}</text>'


def _wrap(text: str, width_px: float, size: float) -> list[str]:
    return textwrap.wrap(text, max(20, int(width_px / (size * EM)))) or [""]


def _nice_step(span: float, most: int = 7) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten giving at most ``most`` steps."""
    power = 10.0 ** math.floor(math.log10(span / most))
    for factor in (1, 2, 2.5, 5, 10):
        if span / (factor * power) <= most:
            return factor * power
    return 10 * power


def colour(ratio: float, bar: float | None) -> str:
    """Green: at least as fast as the baseline; amber: slower but within the bar; red: not."""
    if bar is not None and ratio > bar:
        return RED
    return GREEN if ratio <= 1.0 else AMBER


def _svg(height: float, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" {FONT} font-size="12">',
        f'<rect width="{WIDTH}" height="{height:.0f}" fill="#fff"/>',
        *(
            _text(8, 20 + 18 * i, line, font_size=14, font_weight="bold", fill="#111")
            for i, line in enumerate(_wrap(title, WIDTH - 16, 14))
        ),
    ]


def bar_chart(rows: Sequence[Row], title: str) -> str:
    """Horizontal bars of each row's ratio, its name and baseline above, its bar as a tick."""
    left, right = 8.0, 52.0  # room right of the scale for the longest bar's value
    plot = WIDTH - left - right
    top = 40 + 18 * (len(_wrap(title, WIDTH - 16, 14)) - 1) + 22  # under the "1 =" label
    top_value = max(1.0, *(r.ratio for r in rows), *(r.bar for r in rows if r.bar is not None))
    step = _nice_step(top_value * 1.05)
    scale_max = step * math.ceil(top_value * 1.05 / step)

    def x(value: float) -> float:
        return left + plot * value / scale_max

    ticks = [index * step for index in range(round(scale_max / step) + 1)]
    body: list[str] = []
    y = float(top)
    for row in rows:
        body.append(_text(left, y + 12, row.name, fill="#111", font_size=12))
        y += 16
        for line in _wrap(f"vs {row.baseline}", plot, 11):
            body.append(_text(left, y + 10, line, fill="#555", font_size=11))
            y += 13
        # Grid lines in the bar's band only, so that none runs through a label.
        body += [
            f'<line x1="{x(value):.1f}" y1="{y:.1f}" x2="{x(value):.1f}" y2="{y + 20:.1f}" '
            + ('stroke="#555" stroke-dasharray="4 2"/>' if value == 1 else 'stroke="#e6e6e6"/>')
            for value in sorted({*ticks, 1.0})
        ]
        body.append(
            f'<rect x="{left}" y="{y + 3:.1f}" width="{max(x(row.ratio) - left, 1):.1f}" '
            f'height="14" fill="{colour(row.ratio, row.bar)}"/>'
        )
        end = x(row.ratio)
        if row.bar is not None:
            body.append(
                f'<line x1="{x(row.bar):.1f}" y1="{y - 1:.1f}" x2="{x(row.bar):.1f}" '
                f'y2="{y + 21:.1f}" stroke="#000" stroke-width="2.5"/>'
            )
            end = max(end, x(row.bar))
        body.append(_text(end + 5, y + 15, f"{row.ratio:.2f}", fill="#111", font_weight="bold"))
        y += 30
    bottom = y
    height = bottom + 64
    parts = _svg(height, title)
    for value in ticks:
        parts += [
            f'<line x1="{x(value):.1f}" y1="{bottom:.1f}" x2="{x(value):.1f}" '
            f'y2="{bottom + 4:.1f}" stroke="#333"/>',
            _text(x(value), bottom + 16, f"{value:g}", "middle", fill="#333", font_size=11),
        ]
    parts += [
        f'<line x1="{x(1):.1f}" y1="{top - 8}" x2="{x(1):.1f}" y2="{top - 2}" stroke="#555"/>',
        _text(x(1), top - 12, "1 = as fast as the baseline", "middle", fill="#555", font_size=11),
        f'<line x1="{left}" y1="{bottom:.1f}" x2="{left + plot}" y2="{bottom:.1f}" stroke="#333"/>',
        _text(
            left + plot / 2,
            bottom + 31,
            "tensorbridge's time / the baseline's time (lower is faster)",
            "middle",
            fill="#333",
        ),
        *body,
        *_legend(
            left,
            bottom + 54,
            [
                (GREEN, "rect", "at least as fast"),
                (AMBER, "rect", "slower, within its bar"),
                (RED, "rect", "misses its bar"),
                ("#000", "tick", "the row's bar"),
            ],
        ),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def _legend(left: float, y: float, items: Sequence[tuple[str, str, str]]) -> list[str]:
    parts: list[str] = []
    x = left
    for fill, mark, label in items:
        if mark == "rect":
            parts.append(
                f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="14" height="12" fill="{fill}"/>'
            )
        elif mark == "tick":
            parts.append(
                f'<line x1="{x + 7:.1f}" y1="{y - 12:.1f}" x2="{x + 7:.1f}" y2="{y + 3:.1f}" '
                f'stroke="{fill}" stroke-width="2.5"/>'
            )
        else:
            parts.append(
                f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 16:.1f}" y2="{y - 4:.1f}" '
                f'stroke="{fill}" stroke-width="2.5"/>'
            )
        parts.append(_text(x + 20, y, label, fill="#333"))
        x += 20 + 12 * EM * len(label) + 16
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
        round(m * 10.0**e, 6)
        for e in range(-3, 3)
        for m in (1, 1.5, 2, 3, 5, 7)
        if min(ratios) / 1.3 <= m * 10.0**e <= max(ratios) * 1.3 or m * 10.0**e == 1
    ]
    y_low = math.log10(min([*ratios, *y_ticks]) / 1.15)
    y_high = math.log10(max([*ratios, *y_ticks]) * 1.15)
    left, right = 58, 14
    top = 40 + 18 * (len(_wrap(title, WIDTH - 16, 14)) - 1)
    plot_w, plot_h = WIDTH - left - right, 300
    legend_top = top + plot_h + 58
    half = (len(paths) + 1) // 2
    height = legend_top + 20 * half + 8

    def x(size: float) -> float:
        return left + plot_w * (math.log10(size) - x_low) / (x_high - x_low)

    def y(ratio: float) -> float:
        return top + plot_h * (y_high - math.log10(ratio)) / (y_high - y_low)

    parts = _svg(height, title)
    for exponent in range(x_low, x_high + 1):
        size = 10.0**exponent
        parts += [
            f'<line x1="{x(size):.1f}" y1="{top}" x2="{x(size):.1f}" y2="{top + plot_h}" '
            'stroke="#e6e6e6"/>',
            _text(x(size), top + plot_h + 16, _size_label(size), "middle", fill="#333"),
        ]
    for tick in y_ticks:
        style = 'stroke="#555" stroke-dasharray="5 3"' if tick == 1 else 'stroke="#e6e6e6"'
        parts += [
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" '
            f'y2="{y(tick):.1f}" {style}/>',
            _text(left - 6, y(tick) + 4, f"{tick:g}", "end", fill="#333"),
        ]
    middle = top + plot_h / 2
    parts += [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#333"/>',
        _text(left + plot_w / 2, top + plot_h + 36, "array size (elements)", "middle"),
        _text(left + plot_w - 6, y(1) - 6, "1 = as fast as the baseline", "end", fill="#555"),
        _text(
            18,
            middle,
            "tensorbridge / baseline time (lower is faster)",
            "middle",
            transform=f"rotate(-90 18 {middle:.1f})",
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
        column, line = divmod(index, half)
        parts += _legend(
            left + column * plot_w / 2, legend_top + 20 * line, [(stroke, "line", path)]
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def ratio_text(row: Row) -> str:
    """Two decimals, or three where two would hide that the row misses its bar (1.004 > 1)."""
    text = f"{row.ratio:.2f}"
    return f"{row.ratio:.3f}" if row.missed and float(text) <= (row.bar or 0.0) else text


def _cell(baseline: str) -> str:
    return SHORT_BASELINES.get(baseline, f"`{baseline}`")


def verdict(row: Row) -> str:
    if row.missed:
        return "**misses its bar**"
    if "budget" in row.baseline:  # a time against a budget, not against a faster call
        return "within its bar"
    if row.ratio < 0.95:
        return f"{1 / row.ratio:.1f}x as fast"
    if row.ratio <= 1.0:
        return "as fast"
    return "within its bar" if row.bar is not None else "no bar"


def markdown(rows: Sequence[Row]) -> str:
    """One chart group's rows as the table on docs/benchmarks.md."""
    lines = ["| row | compared with | ratio | bar | verdict |", "|---|---|---|---|---|"]
    for row in rows:
        bar = "" if row.bar is None else f"{row.bar:g}"
        lines.append(
            f"| {row.name} | {_cell(row.baseline)} | {ratio_text(row)} | {bar} | {verdict(row)} |"
        )
    return "\n".join(lines) + "\n"


def sweep_markdown(points: Sequence[Mapping[str, Any]]) -> str:
    """The sweep as a table: a row per size, a column per path, ratios over the bar in bold."""
    paths = list(dict.fromkeys(str(p["path"]) for p in points))
    sizes = sorted({float(p["size"]) for p in points})
    cell = {(str(p["path"]), float(p["size"])): _row({**p, "group": "sweep"}) for p in points}
    lines = [
        f"| elements | {' | '.join(path.removesuffix(' -> float32') for path in paths)} | bar |",
        "|---" * (len(paths) + 2) + "|",
    ]
    for size in sizes:
        row = [cell[path, size] for path in paths if (path, size) in cell]
        texts = [f"**{ratio_text(r)}**" if r.missed else ratio_text(r) for r in row]
        bar = "" if row[0].bar is None else f"{row[0].bar:g}"
        lines.append(f"| {elements(size)} | {' | '.join(texts)} | {bar} |")
    return "\n".join(lines) + "\n"


def elements(size: float) -> str:
    """An array size as the page writes it: 1e3, 6.4e4, 6.6e7."""
    return f"{size:.2g}".replace("e+0", "e").replace("e+", "e")


def _sweep_rows(points: Sequence[Mapping[str, Any]]) -> list[Row]:
    return [
        _row({**p, "name": f"{p['path']}, {elements(float(p['size']))} elements", "group": "sweep"})
        for p in points
    ]


def missed_markdown(rows: Sequence[tuple[str, Row]]) -> str:
    """Every (table, row) over its bar, with its ratio and bar: "Rows that miss their bar"."""
    lines = ["| table | row | ratio | bar |", "|---|---|---|---|"]
    lines += [f"| {t} | {r.name} | {ratio_text(r)} | {r.bar:g} |" for t, r in rows if r.missed]
    return "\n".join(lines) + "\n"


def chart_groups(rows: Sequence[Row]) -> dict[str, tuple[str, list[Row]]]:
    """Chart group -> (title, rows), in the order the groups first appear."""
    groups: dict[str, tuple[str, list[Row]]] = {}
    for row in rows:
        key, title = CHARTS.get(row.group, (row.group or "rows", row.group or "Ratios"))
        groups.setdefault(key, (title, []))[1].append(row)
    return groups


def _machine(data: Mapping[str, Any]) -> str:
    machine = data.get("machine", {})
    pieces = [
        f"{name} {machine[key]}"
        for key, name in (("numpy", "NumPy"), ("torch", "torch"))
        if key in machine
    ]
    if "cpus" in machine:
        pieces.append(f"{machine['cpus']} CPUs")
    return ", ".join(pieces)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", help="JSON written by bench.py --json")
    parser.add_argument("output", help="NAME.svg: the charts are written next to it as NAME-*.svg")
    parser.add_argument(
        "--markdown", action="store_true", help="also print the page's tables as Markdown"
    )
    args = parser.parse_args(argv)
    data = json.loads(Path(args.results).read_text(encoding="utf-8"))
    machine = _machine(data)
    output = Path(args.output)
    rows = [_row(row) for row in data.get("rows", [])]
    groups = chart_groups(rows)
    for key, (title, members) in groups.items():
        path = output.with_name(f"{output.stem}-{key}.svg")
        path.write_text(bar_chart(members, f"{title} ({machine})"), encoding="utf-8")
        print(f"wrote {path}")
        if args.markdown:
            print(f"\n{title}\n\n{markdown(members)}")
    sweep = data.get("sweep", [])
    if sweep:
        path = output.with_name(f"{output.stem}-sweep.svg")
        path.write_text(sweep_chart(sweep, f"Ratio by array size ({machine})"), encoding="utf-8")
        print(f"wrote {path}")
        if args.markdown:
            print(f"\nBy array size\n\n{sweep_markdown(sweep)}")
    if args.markdown:
        # In the page's order: the single calls, then the sweep, then the other groups.
        tables = [(title, row) for title, members in groups.values() for row in members]
        sweep_rows = [("By array size", row) for row in _sweep_rows(sweep)]
        calls = sum(1 for _, row in tables if row.group == "calls")
        in_page_order = [*tables[:calls], *sweep_rows, *tables[calls:]]
        print(f"\nRows that miss their bar\n\n{missed_markdown(in_page_order)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
