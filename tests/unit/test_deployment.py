"""The deployment files stay valid."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_kafka_postgres_api_and_workers() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "postgres", "minio", "migrate", "api", "worker"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


@pytest.mark.skipif(
    shutil.which("docker-compose") is None and shutil.which("docker") is None,
    reason="neither docker-compose nor the docker CLI is installed",
)
def test_compose_file_is_accepted_by_compose() -> None:
    compose = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    # Without the plugin the docker CLI rejects `compose` (its wording varies by version).
    probe = subprocess.run([*compose, "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"{' '.join(compose)} is not usable here: {probe.stderr.strip()}")
    command = [*compose, "-f", "docker-compose.yml", "config", "-q"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_package_metadata_builds_without_deprecation_warnings() -> None:
    """`./run` installs the project; a license given as a TOML table makes setuptools print a
    deprecation warning to every newcomer. An SPDX string needs setuptools 77 or later."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    build_requires = project["build-system"]["requires"]
    assert "setuptools>=77" in build_requires
