"""``batchline``: dev | api | worker | migrate | dlq | load | token."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from batchline import logs
from batchline.cli import devstate, runtime, supervisor
from batchline.cli import dlq as dlq_cli
from batchline.cli import load as load_cli
from batchline.cli import token as token_cli
from batchline.settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchline", description="Bulk ingestion into PostgreSQL through Kafka."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser(
        "dev",
        help="the API and workers as supervised processes, embedded services by default",
    )
    dev.add_argument(
        "--workers",
        type=_positive,
        default=supervisor.default_worker_count(),
        help="worker processes (default: one per core, %(default)s here)",
    )
    dev.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logs, and the chatter of Faust, Kafka clients and the embedded PostgreSQL",
    )
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


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "token":
        return token_cli.run(args)  # needs no configuration, and may be making the first
    settings = Settings()
    if args.command == "dev" and args.verbose:
        settings = settings.model_copy(update={"log_level": "debug"})
    logs.configure(settings.log_level, settings.log_format, settings.log_repeat_seconds)
    if args.command != "dev":
        settings = devstate.fill_in(settings)
    try:
        if args.command == "dev":
            asyncio.run(supervisor.dev_main(settings, args.workers, verbose=args.verbose))
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
            asyncio.run(runtime.check_schema(settings))
            return dlq_cli.run(args, settings)
        elif args.command == "load":
            if args.url is None:
                running = devstate.read(settings.data_dir)
                args.url = running.api_url if running else "http://127.0.0.1:8080"
            return load_cli.run(args)
    except RuntimeError as exc:
        print(f"batchline: {exc}", file=sys.stderr)
        return 2
    return 0
