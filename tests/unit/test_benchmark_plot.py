"""The benchmark's SVG shows each figure at its size, against the target it is judged by."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import orjson

from benchmarks import plot

_SVG = "{http://www.w3.org/2000/svg}"

RESULTS: dict[str, Any] = {
    "machine": {"cores": 2, "memory_gib": 23.5, "cpu": "x86_64", "python": "3.11.7"},
    "date": "2026-11-25",
    "settings": {"records": 200_000, "batch": 1000, "clients": 8, "workers": 2},
    "copy_records_per_s": 200_000,
    "rest_records_per_s": 40_000,
    "kafka_records_per_s": 30_000,
    "budget_us_per_record_at_half_copy": 20.0,
    "cpu_us_per_record": {
        "copy": {"postgres": 4.5, "broker": 0.0, "benchmark": 0.5, "other": 0.0},
        "rest": {"postgres": 16.0, "broker": 4.0, "api": 3.0, "workers": 16.0, "other": 1.0},
        "kafka": {"postgres": 18.0, "broker": 5.0, "api": 2.0, "workers": 17.0, "other": 0.0},
    },
}


def _bars(svg: ET.Element) -> dict[str, float]:
    """Height of each bar segment, by its tooltip."""
    return {
        rect.findtext(f"{_SVG}title", ""): float(rect.get("height", "0"))
        for rect in svg.iter(f"{_SVG}rect")
        if rect.find(f"{_SVG}title") is not None and float(rect.get("width", "0")) > 10
    }


def test_bars_are_drawn_to_scale() -> None:
    svg = ET.fromstring(plot.render(RESULTS))
    bars = _bars(svg)

    assert bars["records/s: 40000"] / bars["records/s: 200000"] == 0.2
    assert bars["records/s: 30000"] / bars["records/s: 200000"] == 0.15
    # CPU segments stack per phase; each is drawn at its share.
    assert round(bars["workers: 16.0"] / bars["postgres: 16.0"], 6) == 1
    assert round(bars["broker: 5.0"] / bars["postgres: 18.0"], 3) == round(5 / 18, 3)
    # Zero-width segments (nothing spent) are left out.
    assert "broker: 0.0" not in bars


def test_targets_and_context_are_labelled() -> None:
    texts = [t.text for t in ET.fromstring(plot.render(RESULTS)).iter(f"{_SVG}text")]

    assert "target: 0.5 x COPY" in texts
    assert "budget at 0.5 x COPY" in texts
    assert any(t and t.startswith("2026-11-25: 2 cores") for t in texts)
    assert {"COPY", "REST", "Kafka producer"} <= set(texts)


def test_plots_a_saved_results_file(tmp_path: Path) -> None:
    saved = tmp_path / "e2e.json"
    saved.write_bytes(orjson.dumps(RESULTS))
    drawn = tmp_path / "e2e.svg"

    assert plot.main([str(saved), str(drawn)]) == 0
    assert ET.parse(drawn).getroot().tag == f"{_SVG}svg"
    assert plot.main([str(saved)]) == 2
