"""API tokens: who may write, read and operate.

The configuration holds SHA-256 digests, never tokens: a leaked environment or compose
file grants nothing. Tokens are 256 random bits, so a plain digest is as strong as a slow
password hash would be and costs a microsecond per request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from batchline.tenants import is_tenant_name

TOKEN_PREFIX = "bl_"  # noqa: S105 - a label that makes a leaked token recognisable
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class Role(StrEnum):
    PRODUCER = "producer"  # writes through the front doors
    READER = "reader"  # reads batches, results, entities
    OPERATOR = "operator"  # deletes batches, dead letters and replays, the console


class TokenConfigError(ValueError):
    """An entry of BATCHLINE_API_TOKENS is not NAME:ROLE[+ROLE]:SHA256HEX[:TENANT[+TENANT]]."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    roles: frozenset[Role]
    digest: bytes
    # The tenants it may act for (X-Okapi-Tenant); None: any tenant the service serves.
    tenants: frozenset[str] | None = None

    @property
    def entry(self) -> str:
        """The token as one BATCHLINE_API_TOKENS entry."""
        entry = f"{self.name}:{'+'.join(sorted(self.roles))}:{self.digest.hex()}"
        return entry if self.tenants is None else f"{entry}:{'+'.join(sorted(self.tenants))}"

    def may_act_for(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(text: str) -> tuple[ApiToken, ...]:
    """``NAME:ROLE[+ROLE]:SHA256HEX[:TENANT[+TENANT]]`` entries separated by commas or
    white space."""
    tokens: list[ApiToken] = []
    for entry in re.split(r"[\s,]+", text.strip()):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (3, 4):
            raise TokenConfigError(
                f"API token entry {_shown(entry)} is not NAME:ROLE[+ROLE]:SHA256HEX"
                "[:TENANT[+TENANT]] (make one with `batchline token create ROLE`)"
            )
        name, roles, hex_digest = parts[:3]
        if not _NAME.match(name):
            raise TokenConfigError(f"API token name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        if not _DIGEST.match(hex_digest):
            raise TokenConfigError(
                f"API token {name!r}: the last part must be the token's SHA-256 in 64 lower-case"
                " hex digits, not the token itself"
            )
        try:
            parsed = frozenset(Role(role) for role in roles.split("+"))
        except ValueError:
            known = ", ".join(Role)
            raise TokenConfigError(f"API token {name!r}: roles {roles!r}, known: {known}") from None
        tenants = _tenants(name, parts[3]) if len(parts) == 4 else None
        tokens.append(ApiToken(name, parsed, bytes.fromhex(hex_digest), tenants))
    return tuple(tokens)


def _tenants(name: str, text: str) -> frozenset[str]:
    tenants = frozenset(text.split("+"))
    wrong = sorted(tenant for tenant in tenants if not is_tenant_name(tenant))
    if wrong:
        raise TokenConfigError(f"API token {name!r}: tenant {wrong[0]!r} is not a tenant id")
    return tenants


def _shown(entry: str) -> str:
    # A malformed entry may be a pasted token: say where it is, not what it is.
    return repr(entry[:6] + "…") if len(entry) > 6 else repr(entry)


def create_token(
    roles: frozenset[Role], name: str, tenants: frozenset[str] | None = None
) -> tuple[str, ApiToken]:
    """A new random token and its configuration entry."""
    if not _NAME.match(name):
        raise TokenConfigError(f"token name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    if tenants is not None:
        _tenants(name, "+".join(tenants))
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, ApiToken(name, roles, digest(token), tenants)


class TokenTable:
    """Finds the configured token a request presents, in time independent of which."""

    def __init__(self, tokens: tuple[ApiToken, ...]) -> None:
        self._tokens = tokens

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def find(self, presented: str) -> ApiToken | None:
        wanted = digest(presented)
        found: ApiToken | None = None
        for token in self._tokens:  # every entry compared, match or not
            if hmac.compare_digest(wanted, token.digest):
                found = token
        return found
