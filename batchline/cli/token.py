"""``batchline token create ROLE [ROLE …]``: a new API token and the line that configures it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from batchline.tokens import Role, TokenConfigError, create_token


def add_parser(commands: Any) -> None:
    token = commands.add_parser("token", help="API tokens (bearer tokens with roles)")
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser(
        "create",
        help="print a new token and the BATCHLINE_API_TOKENS entry that lets it in",
        description="Prints the token (shown only this once) on the first line and the"
        " configuration line on the second. The configuration holds only the token's"
        " SHA-256; several entries are separated by commas.",
    )
    create.add_argument("roles", nargs="+", choices=[role.value for role in Role], metavar="ROLE",
                        help="producer, reader and/or operator")  # fmt: skip
    create.add_argument(
        "--name", help="who holds it (letters, digits, _ . -); default: the roles joined by -"
    )
    create.add_argument(
        "--tenant",
        action="append",
        dest="tenants",
        metavar="TENANT",
        help="it may act only for this tenant (X-Okapi-Tenant); repeat for several;"
        " default: any tenant the service serves",
    )


def run(args: argparse.Namespace) -> int:
    roles = frozenset(Role(role) for role in args.roles)
    name = args.name or "-".join(sorted(roles))
    try:
        tenants = frozenset(args.tenants) if args.tenants else None
        token, entry = create_token(roles, name, tenants)
    except TokenConfigError as exc:
        print(f"batchline: {exc}", file=sys.stderr)
        return 2
    print(token)
    print(f"BATCHLINE_API_TOKENS={entry.entry}")
    print(
        "The first line is the token: give it to the client (Authorization: Bearer …); it is"
        " not stored anywhere. Add the second line's entry to the API's BATCHLINE_API_TOKENS"
        " (entries separated by commas).",
        file=sys.stderr,
    )
    return 0
