"""Plot the cost-growth runs of bench/cost_growth.sh as SVG line charts (no plotting dependency).

python bench/plot_cost_growth.py results/query.jsonl "<run stamp>" docs/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLOURS = {"small": "#1f77b4", "medium": "#d62728"}
W, H, LEFT, BOTTOM, TOP, RIGHT = 560, 320, 60, 40, 30, 110


def runs(path: Path, stamp: str) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, dict[str, float]]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        note = row.get("note", "")
        if not note.startswith(stamp):
            continue
        fields = dict(part.split("=", 1) for part in note[len(stamp) :].split())
        out.setdefault(fields["dataset"], {})[int(fields["first"])] = row
    return out


def chart(data: dict[str, dict[int, dict[str, float]]], metric: str, title: str) -> str:
    xs = sorted({first for series in data.values() for first in series})
    top = max(row[metric] for series in data.values() for row in series.values()) * 1.15 or 1.0
    x_of = {x: LEFT + (W - LEFT - RIGHT) * i / max(len(xs) - 1, 1) for i, x in enumerate(xs)}

    def y_of(value: float) -> float:
        return H - BOTTOM - (H - BOTTOM - TOP) * value / top

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>',
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="black"/>',
        f'<text x="{(W - RIGHT + LEFT) / 2}" y="{H - 8}" text-anchor="middle">first (posts per page)</text>',
    ]
    for x in xs:
        parts.append(f'<text x="{x_of[x]}" y="{H - BOTTOM + 16}" text-anchor="middle">{x}</text>')
    for i in range(5):
        value = top * i / 4
        parts.append(f'<text x="{LEFT - 6}" y="{y_of(value) + 4}" text-anchor="end">{value:.0f}</text>')
    for n, (size, series) in enumerate(sorted(data.items())):
        points = " ".join(f"{x_of[x]},{y_of(series[x][metric])}" for x in sorted(series))
        colour = COLOURS.get(size, "black")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{W - RIGHT + 10}" y="{TOP + 20 + 18 * n}" fill="{colour}">{size}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main() -> None:
    results, stamp, out_dir = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    data = runs(results, stamp)
    (out_dir / "cost-growth-rps.svg").write_text(
        chart(data, "rps", "Home req/s by page size (c=16, one process)")
    )
    (out_dir / "cost-growth-p99.svg").write_text(chart(data, "p99_ms", "Home p99 ms by page size (c=16)"))
    print("| dataset | first | req/s | p50 ms | p99 ms | server CPU % |\n|---|---|---|---|---|---|")
    for size, series in sorted(data.items()):
        for first, row in sorted(series.items()):
            print(
                f"| {size} | {first} | {row['rps']} | {row['p50_ms']} | {row['p99_ms']} | {row['server_cpu_pct']} |"
            )


if __name__ == "__main__":
    main()
