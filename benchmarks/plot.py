"""The end-to-end benchmark's figures as one SVG: throughput against COPY, CPU per record.

    .venv/bin/python -m benchmarks.plot benchmarks/results/e2e.json e2e.svg

Plain SVG written by hand, so plotting needs no extra package. Left: records/second of
each phase with the 0.5 x COPY target; right: each phase's CPU per record, stacked by
process group, with the most the host may spend per record at that target.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import orjson

GROUP_COLOURS = {
    "postgres": "#336791",
    "broker": "#d9822b",
    "api": "#7a9e3b",
    "workers": "#b0413e",
    "supervisor": "#6b4c9a",
    "benchmark": "#8c8c8c",
    "other": "#cccccc",
}
_PHASES = {"copy": "COPY", "rest": "REST", "kafka": "Kafka producer"}
_PANEL_WIDTH = 340
_PANEL_HEIGHT = 220
_TOP = 40
_LEFT = 60
_BAR = 50


class _Canvas:
    def __init__(self) -> None:
        self.items: list[str] = []

    def rect(self, x: float, y: float, width: float, height: float, fill: str, title: str) -> None:
        self.items.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
            f'fill="{fill}"><title>{escape(title)}</title></rect>'
        )

    def text(
        self, x: float, y: float, content: str, anchor: str = "middle", size: int = 11
    ) -> None:
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}">'
            f"{escape(content)}</text>"
        )

    def dashed(self, x1: float, x2: float, y: float, label: str) -> None:
        self.items.append(
            f'<line x1="{x1:.1f}" x2="{x2:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="black" '
            f'stroke-dasharray="4 3"/>'
        )
        self.text(x2, y - 4, label, anchor="end", size=10)


def _bars(
    canvas: _Canvas,
    left: float,
    title: str,
    stacks: Sequence[tuple[str, Mapping[str, float]]],
    line: tuple[float, str],
    unit: str,
) -> None:
    """One panel: a stacked bar per phase, scaled so the tallest bar or the line fits."""
    top_value = max([sum(parts.values()) for _, parts in stacks] + [line[0]]) * 1.1
    scale = _PANEL_HEIGHT / top_value
    base = _TOP + _PANEL_HEIGHT
    canvas.text(left + _PANEL_WIDTH / 2, _TOP - 18, title, size=13)
    canvas.items.append(
        f'<line x1="{left}" x2="{left + _PANEL_WIDTH}" y1="{base}" y2="{base}" stroke="black"/>'
    )
    step = _PANEL_WIDTH / len(stacks)
    for position, (label, parts) in enumerate(stacks):
        x = left + step * position + (step - _BAR) / 2
        y = float(base)
        for part, value in parts.items():
            height = value * scale
            y -= height
            canvas.rect(x, y, _BAR, height, GROUP_COLOURS.get(part, "#4c72b0"), f"{part}: {value}")
        canvas.text(x + _BAR / 2, y - 4, f"{sum(parts.values()):,.1f}".removesuffix(".0"))
        canvas.text(x + _BAR / 2, base + 14, label)
    canvas.dashed(left, left + _PANEL_WIDTH, base - line[0] * scale, line[1])
    canvas.text(left - 8, base, f"0 {unit}", anchor="end", size=10)


def render(results: Mapping[str, Any]) -> str:
    """An SVG document of one benchmark run's figures (the JSON file's contents)."""
    canvas = _Canvas()
    copy_rate = results["copy_records_per_s"]
    throughput = [
        ("COPY", {"records/s": copy_rate}),
        ("REST", {"records/s": results["rest_records_per_s"]}),
        ("Kafka producer", {"records/s": results["kafka_records_per_s"]}),
    ]
    _bars(
        canvas,
        _LEFT,
        "records per second",
        throughput,
        (copy_rate / 2, "target: 0.5 x COPY"),
        "rec/s",
    )
    cpu = results["cpu_us_per_record"]
    stacks = [
        (_PHASES[phase], {g: spent[g] for g in GROUP_COLOURS if spent.get(g)})
        for phase, spent in cpu.items()
    ]
    budget = results["budget_us_per_record_at_half_copy"]
    right = _LEFT * 2 + _PANEL_WIDTH
    _bars(canvas, right, "CPU per record (us)", stacks, (budget, "budget at 0.5 x COPY"), "us")
    legend_y = _TOP + _PANEL_HEIGHT + 36
    for number, (group, colour) in enumerate(GROUP_COLOURS.items()):
        x = right + number * 56
        canvas.rect(x, legend_y, 10, 10, colour, group)
        canvas.text(x + 13, legend_y + 9, group, anchor="start", size=10)
    machine = results["machine"]
    settings = results["settings"]
    canvas.text(
        _LEFT,
        legend_y + 34,
        f"{results['date']}: {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"Python {machine['python']}; {settings['records']:,} records, batches of "
        f"{settings['batch']}, {settings['clients']} clients, {settings['workers']} worker(s)"
        f"{'; ' + settings['stack'] if 'stack' in settings else ''}",
        anchor="start",
        size=10,
    )
    width = right + _PANEL_WIDTH + _LEFT
    height = legend_y + 50
    body = "\n".join(canvas.items)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n'
        f"{body}\n</svg>\n"
    )


def output_path(requested: Path, run: Mapping[str, Any]) -> Path:
    """One drawing per stack measured: ``e2e.svg`` becomes ``e2e-dev.svg``, ``e2e-separate.svg``."""
    return requested.with_name(f"{requested.stem}-{run['stack']}{requested.suffix}")


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.plot RESULTS.json OUTPUT.svg", file=sys.stderr)
        return 2
    results = orjson.loads(Path(argv[0]).read_bytes())
    # A file of several stacks' runs draws each; an older file holds one run.
    for run in results.get("runs", [results]):
        drawing = output_path(Path(argv[1]), run) if "runs" in results else Path(argv[1])
        drawing.write_text(render(run))
        print(f"written: {drawing}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
