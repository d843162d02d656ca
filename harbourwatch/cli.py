"""The ``harbourwatch`` command line.

Exit codes: 0 ok, 2 bad usage or config (the message names file, line and field),
1 runtime failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from harbourwatch import __version__

Handler = Callable[[argparse.Namespace], int]


def _decode(args: argparse.Namespace) -> int:
    from harbourwatch.decode_cmd import run_decode

    return run_decode(args.files, stats=args.stats, dedup_window_s=args.dedup_window)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harbourwatch",
        description="AIS vessel tracking and port-security alerts for small and medium ports.",
    )
    parser.add_argument("--version", action="version", version=f"harbourwatch {__version__}")
    verbose_help = "more logging (-vv: debug, logs every rejected line)"
    parser.add_argument("-v", "--verbose", action="count", default=0, help=verbose_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    decode = commands.add_parser("decode", help="decode NMEA logs to JSON lines")
    decode.add_argument("files", nargs="+", metavar="FILE",
                        help="log files, plain or gzip; '-' for stdin")
    decode.add_argument("--stats", action="store_true",
                        help="print per-source counters to stderr at the end")
    decode.add_argument("--dedup-window", type=float, default=3.0, metavar="S",
                        help="seconds within which the same payload is a duplicate (default 3)")
    decode.set_defaults(handler=_decode)

    from harbourwatch import commands as more

    more.add_commands(commands)
    for command in commands.choices.values():  # also after the command: ``run -v``
        command.add_argument("-v", "--verbose", dest="verbose_after", action="count",
                             default=0, help=verbose_help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from harbourwatch.logs import setup_logging

    setup_logging(args.verbose + args.verbose_after)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    sys.exit(main())
