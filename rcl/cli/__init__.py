"""The ``rcl`` command line: every job the app does, for scripts and clusters.

Each sub-command is a ``cmd_*`` function in one module of this package per topic that takes the parsed arguments and returns an exit
code; a user error (bad path, bad matrix, unknown model, ...) is printed as one line, never a
traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from importlib import import_module

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


def command(name: str, help: str, add: Callable[[argparse.ArgumentParser], None]):
    """Register a sub-command: ``add`` sets up its arguments, the decorated function runs it."""

    def wrap(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (add, run, help)
        return run

    return wrap


def fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain fixed-width table (no dependency) for terminal listings."""
    if not rows:
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


# One module per topic; each registers its commands on import, in this order in `rcl --help`.
COMMAND_MODULES = ("training", "runs", "jobs", "data", "labels")


def _register_commands() -> None:
    for module in COMMAND_MODULES:
        import_module(f"rcl.cli.{module}")


def build_parser() -> argparse.ArgumentParser:
    _register_commands()
    parser = argparse.ArgumentParser(
        prog="rcl",
        description="Risk-calibrated medical image classification: train, evaluate, explore.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, PermissionError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"rcl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
