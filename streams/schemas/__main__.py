"""``python -m streams.schemas [--check]``: regenerate (or check) the contract schemas."""

from __future__ import annotations

import argparse
import sys

from streams.schemas import out_of_date, write_all


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.schemas")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a file is out of date; write nothing"
    )
    if parser.parse_args().check:
        stale = out_of_date()
        for name in stale:
            print(f"out of date: streams/schemas/{name} (run: python -m streams.schemas)")
        return 1 if stale else 0
    for path in write_all():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
