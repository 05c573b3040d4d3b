"""The README's walkthrough, run as a user would: its shell commands in order, with curl,
against the live stack, each answer compared with the one the README shows under it.

A README answer is written ``# <status> <body>``, where ``...`` stands for any text. The
walkthrough assumes a fresh ``./run dev``; on the shared test stack its keys get this test's
tag and generated ids (``batch-001``, ``pa-001``) are compared by shape.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batchline.settings import Settings
from tests.integration.instances import storage_root

README = Path(__file__).resolve().parents[2] / "README.md"
# The sections whose shell blocks form the walkthrough, in the order a user runs them.
WALKTHROUGH = ("## Try it", "### Instance bulk upsert (FOLIO)")
DEV_URL = "http://127.0.0.1:8080"
_GENERATED_ID = re.compile(r"\b(batch|pa)-\d{3,}\b")
_STATUS = "\n@@status "


@dataclass
class Example:
    command: str
    answer: list[str] = field(default_factory=list)

    @property
    def expected(self) -> str | None:
        return "".join(self.answer) if self.answer else None


def shell_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"\n{section}\n") + len(section) + 2
    heading = re.compile(r"^#{2,} ", re.MULTILINE).search(text, start)
    body = text[start : heading.start() if heading else len(text)]
    return re.findall(r"```sh\n(.*?)```", body, re.DOTALL)


def examples(block: str) -> list[Example]:
    """Commands (continued over lines by ``\\`` or an open quote) and the answers under them."""
    found: list[Example] = []
    pending: list[str] = []
    for line in block.splitlines():
        if not pending and line.startswith("#"):
            assert found, f"an answer before any command: {line}"
            found[-1].answer.append(line[1:].strip())
            continue
        pending.append(line)
        text = "\n".join(pending)
        if text.count("'") % 2 == 0 and not text.endswith("\\"):
            found.append(Example(text))
            pending = []
    assert not pending, pending
    return found


def as_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")), re.DOTALL)


def replaced(text: str, values: dict[str, str]) -> str:
    """``text`` with each key of ``values`` replaced, in one pass (no replacement is replaced
    again), longest key first."""
    if not values:
        return text
    pattern = "|".join(re.escape(key) for key in sorted(values, key=len, reverse=True))
    return re.sub(pattern, lambda m: values[m[0]], text)


def shape(text: str) -> str:
    return _GENERATED_ID.sub(lambda m: f"{m[1]}-N", text)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's examples use curl")
async def test_the_readme_walkthrough_answers_as_the_readme_shows(
    api_url: str, settings: Settings, tag: str, tmp_path: Path
) -> None:
    keys = {
        "coord-42": f"coord-{tag}",
        "tech-1": f"tech-{tag}",
        "phone-1": f"phone-{tag}",
        "phone-2": f"phone2-{tag}",
        "phone-3": f"phone3-{tag}",
        "migration": f"migration-{tag}",
        ".batchline/storage": str(storage_root(settings)),
        DEV_URL: api_url,
    }
    batch_ids: dict[str, str] = {}
    ran = 0
    for section in WALKTHROUGH:
        for block in shell_blocks(section):
            for example in examples(block):
                command = replaced(example.command, keys | batch_ids)
                command = re.sub(r"\bcurl ", f"curl -w '{_STATUS}%{{http_code}}' ", command)
                process = await asyncio.create_subprocess_exec(
                    "bash",
                    "-c",
                    command,
                    cwd=tmp_path,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await asyncio.wait_for(process.communicate(), 60)
                assert process.returncode == 0, (example.command, err.decode())
                ran += 1
                if _STATUS not in out.decode():
                    continue
                body, status = out.decode().rsplit(_STATUS, 1)
                answer = replaced(f"{status} {body.strip()}", {v: k for k, v in keys.items()})
                created = re.match(r'201 \{"id":"(batch-\d+)"', answer)
                if created and not batch_ids:
                    batch_ids["batch-001"] = created[1]
                if example.expected is not None:
                    assert as_pattern(shape(example.expected)).fullmatch(shape(answer)), (
                        f"{example.command}\nREADME: {example.expected}\nreally:  {answer}"
                    )
    assert ran >= 10
