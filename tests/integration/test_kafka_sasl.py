"""SASL on the wire: against a broker that requires SCRAM, batchline's processes log in with
the configured mechanism, and a login the broker refuses stops them at start-up with the
broker's reason instead of retrying in silence.

The embedded broker (Tansu 0.6, ``--authentication``) offers SCRAM but has no way to be given
a user before it requires authentication, so every login fails: what this proves is that
the settings reach the wire and a refusal is reported. A successful SCRAM login is left to a
real cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchline.cli.embedded import EmbeddedKafka
from batchline.settings import Settings
from tests.integration.processes import run_cli


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_refused_login_stops_the_api_at_start_up_with_the_brokers_reason(
    settings: Settings, tmp_path: Path, mechanism: str
) -> None:
    async with EmbeddedKafka(tmp_path / "broker", authentication=True) as broker:
        bootstrap = broker.bootstrap_servers
        finished = await run_cli(
            settings,
            "api",
            kafka_bootstrap_servers=bootstrap,
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism=mechanism,
            kafka_sasl_username="batchline",
            kafka_sasl_password="not-the-password",
            entities_dir=settings.entities_dir,
        )

    assert finished.code == 2, finished.err
    assert f"cannot reach Kafka at {bootstrap} over SASL_PLAINTEXT" in finished.err
    assert "SASL SCRAM authentication failed" in finished.err
    assert "not-the-password" not in finished.out + finished.err
