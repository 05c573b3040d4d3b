"""Every route declares who may call it; tokens are configured as digests and found in
constant time; `batchline token create` prints a token and the entry that lets it in."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.access import Open, authentication_summary, classify, required_roles
from api.app import create_app
from batchline.cli.main import main
from batchline.settings import Settings
from batchline.tokens import Role, TokenConfigError, digest, parse_tokens

EXAMPLE_ENTITIES = Path(__file__).resolve().parents[2] / "entities"


def test_every_route_of_the_application_declares_its_access() -> None:
    app = create_app(Settings(entities_dir=EXAMPLE_ENTITIES))

    unclassified = [
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.resource is not None and classify(route.method, route.resource.canonical) is None
    ]

    assert unclassified == [], "add these routes to api.access.RULES"


@pytest.mark.parametrize(
    ("method", "path", "access"),
    [
        ("GET", "/health", Open.ALWAYS),
        ("HEAD", "/ready", Open.ALWAYS),
        ("GET", "/metrics", Open.METRICS),
        ("GET", "/openapi.json", Open.OPENAPI),
        ("POST", "/api/v1/batch-inserts", Role.PRODUCER),
        ("PUT", "/api/v1/batch-inserts/{batch_id}", Role.PRODUCER),
        ("GET", "/api/v1/batch-inserts/{batch_id}", Role.READER),
        ("DELETE", "/api/v1/batch-inserts/{batch_id}", Role.OPERATOR),
        ("GET", "/ops/dlq/messages/{letter_id}", Role.OPERATOR),
        ("POST", "/ops/dlq/replays", Role.OPERATOR),
        ("POST", "/instance-storage/instances/bulk", Role.PRODUCER),
        ("POST", "/data/{entity}", Role.PRODUCER),
        ("DELETE", "/data/{entity}/{lk}", Role.PRODUCER),
        ("GET", "/data/{entity}/{lk}", Role.READER),
        ("GET", "/entity/{entity}", Role.READER),
        # Near misses stay unclassified rather than borrowing a neighbour's rule.
        ("GET", "/api/v1/batch-insertsX", None),
        ("POST", "/health", None),
        ("GET", "/instance-storage/instances/bulk", None),
    ],
)
def test_routes_take_the_roles_the_readme_lists(method: str, path: str, access: object) -> None:
    assert classify(method, path) == access


def test_metrics_and_openapi_close_when_configured() -> None:
    open_settings = Settings()
    closed = Settings(metrics_public=False, openapi_public=False)

    assert required_roles(Open.METRICS, open_settings) == frozenset()
    assert required_roles(Open.METRICS, closed) == {Role.OPERATOR}
    assert required_roles(Open.OPENAPI, closed) == set(Role)
    assert required_roles(None, open_settings) == {Role.OPERATOR}  # unclassified: fail closed


def test_a_created_token_is_let_in_by_the_line_it_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "create", "producer", "reader", "--name", "nightly-loader"]) == 0
    token, line = capsys.readouterr().out.splitlines()
    name, _, value = line.partition("=")

    assert name == "BATCHLINE_API_TOKENS"
    assert token not in line
    found = Settings(api_tokens=value).api_token_table().find(token)
    assert found is not None
    assert found.name == "nightly-loader"
    assert found.roles == {Role.PRODUCER, Role.READER}
    assert Settings(api_tokens=value).api_token_table().find(token + "x") is None


def test_several_tokens_are_told_apart() -> None:
    entries = f"a:producer:{digest('one').hex()}, b:operator+reader:{digest('two').hex()}"
    table = Settings(api_tokens=entries).api_token_table()

    one, two = table.find("one"), table.find("two")
    assert one is not None
    assert two is not None
    assert (one.name, one.roles) == ("a", {Role.PRODUCER})
    assert (two.name, two.roles) == ("b", {Role.OPERATOR, Role.READER})
    assert table.find("three") is None
    assert not Settings().api_token_table()  # nothing configured: authentication off


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("bl_pasted-the-token-itself", "is not NAME:ROLE"),
        (f"x:writer:{'a' * 64}", "known: producer, reader, operator"),
        ("x:reader:bl_not-a-digest", "SHA-256"),
        (f"bad/name:reader:{'a' * 64}", "token name"),
        (f"x:reader:{'a' * 64}:diku+no-such/tenant", "is not a tenant id"),
    ],
)
def test_malformed_entries_are_refused_without_echoing_them(entries: str, message: str) -> None:
    with pytest.raises(TokenConfigError, match=message):
        parse_tokens(entries)
    with pytest.raises(ValueError, match=message) as refused:
        Settings(api_tokens=entries)
    assert "pasted-the-token" not in str(refused.value)


def test_a_token_may_be_bound_to_tenants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "producer", "--tenant", "college", "--tenant", "diku"]) == 0
    token, line = capsys.readouterr().out.splitlines()

    assert line.endswith(":college+diku")
    found = Settings(api_tokens=line.partition("=")[2]).api_token_table().find(token)
    assert found is not None
    assert found.tenants == {"college", "diku"}
    assert found.may_act_for("college")
    assert not found.may_act_for("university")


def test_start_up_says_whether_tokens_are_needed() -> None:
    entry = f"ops:operator:{digest('t').hex()}"

    assert authentication_summary(Settings()).startswith("authentication is off: anyone")
    assert authentication_summary(Settings(api_tokens=entry)).startswith("authentication is on")
