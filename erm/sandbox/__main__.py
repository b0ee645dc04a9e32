"""``python -m erm.sandbox``: run the ERM stand-in on its own, like ``erm-bot sandbox``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from erm.sandbox.faults import add_fault_arguments, faults_from_arguments
from erm.sandbox.server import run_sandbox


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m erm.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON line with the URL first"
    )
    parser.add_argument("--token-ttl", type=int, default=86400, help="access token lifetime (s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo data")
    add_fault_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        faults = faults_from_arguments(args)
    except ValueError as exc:
        build_parser().error(str(exc))
    run_sandbox(args.host, args.port, args.json, faults, args.token_ttl, seed=args.seed)


if __name__ == "__main__":
    main()
