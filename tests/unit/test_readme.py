"""The README stays true: every setting is documented."""

from __future__ import annotations

from pathlib import Path

from batchline.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_batchline_setting_is_in_the_configuration_table() -> None:
    missing = [
        f"BATCHLINE_{name.upper()}"
        for name in Settings.model_fields
        if f"`BATCHLINE_{name.upper()}`" not in README
    ]
    assert missing == []


def test_the_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()[1:]]
    assert commands == ["./run dev", "./run test"]
