"""Draw the benchmark ratios as an SVG bar chart for the docs.

    python benchmarks/bench.py --json benchmarks/results/cpu.json
    python benchmarks/chart.py benchmarks/results/cpu.json docs/assets/benchmarks-cpu.svg

Each bar is one row's ratio (tensorbridge time / raw time, shorter is faster);
the tick on each bar is the contract's bar for that row. Plain SVG, written by
hand, so the docs need no plotting library.
"""

from __future__ import annotations

import argparse
import html
import json
from pathlib import Path

WIDTH, LEFT, ROW, TOP = 760, 330, 34, 46


def svg(rows: list[dict[str, object]], title: str) -> str:
    scale_max = max(
        1.6, *(float(str(row["ratio"])) for row in rows), *(float(str(row["bar"])) for row in rows)
    )
    plot = WIDTH - LEFT - 70
    height = TOP + ROW * len(rows) + 40

    def x(value: float) -> float:
        return LEFT + plot * value / scale_max

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="13">'
        f"{html.escape(title)}</text>",
        f'<line x1="{x(1)}" y1="{TOP - 8}" x2="{x(1)}" y2="{height - 30}" stroke="#999" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{x(1)}" y="{height - 14}" text-anchor="middle" fill="#555">'
        "1.0 = as fast as raw</text>",
    ]
    for index, row in enumerate(rows):
        y = TOP + index * ROW
        ratio, bar = float(str(row["ratio"])), float(str(row["bar"]))
        colour = "#2e7d32" if row["met"] else "#c62828"
        label = f"{row['path']} vs {row['versus']}"
        parts += [
            f'<text x="{LEFT - 8}" y="{y + 15}" text-anchor="end">{html.escape(label[:52])}</text>',
            f'<rect x="{LEFT}" y="{y + 4}" width="{x(ratio) - LEFT:.1f}" height="16" '
            f'fill="{colour}"/>',
            f'<line x1="{x(bar):.1f}" y1="{y}" x2="{x(bar):.1f}" y2="{y + 24}" stroke="#000" '
            'stroke-width="2"/>',
            f'<text x="{x(ratio) + 6:.1f}" y="{y + 16}">{ratio:.2f}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", help="JSON written by bench.py --json")
    parser.add_argument("output", help="the SVG file to write")
    args = parser.parse_args()
    data = json.loads(Path(args.results).read_text(encoding="utf-8"))
    machine = data["machine"]
    title = (
        f"time / raw time (shorter is faster; black tick: the bar) - numpy {machine['numpy']}, "
        f"torch {machine['torch']}, {machine['cpus']} CPUs"
    )
    Path(args.output).write_text(svg(data["rows"], title), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
