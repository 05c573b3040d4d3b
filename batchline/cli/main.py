"""``batchline``: dev | api | worker | migrate | dlq | load | token."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from batchline import logs
from batchline.cli import dlq as dlq_cli
from batchline.cli import load as load_cli
from batchline.cli import runtime
from batchline.cli import token as token_cli
from batchline.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchline", description="Bulk ingestion into PostgreSQL through Kafka."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="everything in one process, embedded services by default")
    commands.add_parser("api", help="the HTTP front doors")
    commands.add_parser("worker", help="the inserter (Faust agent), the projector and the sweeps")
    migrate = commands.add_parser(
        "migrate", help="apply database migrations and create or extend the entity tables"
    )
    migrate.add_argument(
        "--allow-destructive",
        action="store_true",
        help="allow entity schema changes that lose data (dropped fields or entities,"
        " changed types or logical keys)",
    )
    dlq_cli.add_parser(commands)
    load_cli.add_parser(commands)
    token_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return token_cli.run(args)  # needs no configuration, and may be making the first
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format, settings.log_repeat_seconds)
    try:
        if args.command == "dev":
            asyncio.run(runtime.dev_main(settings))
        elif args.command == "api":
            asyncio.run(runtime.api_main(settings))
        elif args.command == "worker":
            asyncio.run(runtime.worker_main(settings))
        elif args.command == "migrate":
            applied = asyncio.run(
                runtime.apply_migrations(settings, allow_destructive=args.allow_destructive)
            )
            print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
        elif args.command == "dlq":
            return dlq_cli.run(args, settings)
        elif args.command == "load":
            return load_cli.run(args)
    except RuntimeError as exc:
        print(f"batchline: {exc}", file=sys.stderr)
        return 2
    return 0
