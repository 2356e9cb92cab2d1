"""The ``rcl`` command line: every job the app does, for scripts and clusters.

Each sub-command is a ``cmd_*`` function in one module of this package per topic that takes the parsed arguments and returns an exit
code; any exception is printed as one line saying what failed and what to do (:mod:`rcl.errors`),
never a traceback (``--debug`` or ``RCL_DEBUG=1`` shows it); library warnings print as one line each.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import warnings
from collections.abc import Callable
from importlib import import_module

from rcl import errors
from rcl.text import num as fmt  # noqa: F401  (re-exported to the command modules: one number format)

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


def command(name: str, help: str, add: Callable[[argparse.ArgumentParser], None]):
    """Register a sub-command: ``add`` sets up its arguments, the decorated function runs it."""

    def wrap(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (add, run, help)
        return run

    return wrap


def print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def table_lines(rows: list[dict], columns: list[str]) -> list[str]:
    """A plain fixed-width table (no dependency) for terminal listings: the header, then one line per row."""
    if not rows:
        return []
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in [columns, *cells]]


def print_table(rows: list[dict], columns: list[str]) -> None:
    for line in table_lines(rows, columns):
        print(line)


# One module per topic; each registers its commands on import, in this order in `rcl --help`.
COMMAND_MODULES = ("training", "runs", "report", "jobs", "sweep", "data", "guarantee", "labels", "review")


def _register_commands() -> None:
    for module in COMMAND_MODULES:
        import_module(f"rcl.cli.{module}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``rcl`` parser; given ``argv``, only the named sub-command's options are built.

    Building every sub-command's options imports what they need (training options need the config
    module, hence torch): a light command such as ``rcl jobs`` would pay seconds for nothing.
    """
    _register_commands()
    chosen = None if argv is None else next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="rcl",
        description="Risk-calibrated medical image classification: train, evaluate, explore.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if argv is None or name == chosen:
            add(p)
        p.set_defaults(run=run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None, *, command: str) -> None:
    """Library warnings (a dataset with empty classes, skipped files...) as one line each."""
    print(f"rcl {command}: warning: {message}", file=sys.stderr)


def _quiet_broken_pipe() -> int:
    """The reader went away (``rcl jobs | head -3``): stop writing, without a traceback."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141  # what a shell reports for a process ended by SIGPIPE


def main(argv: list[str] | None = None) -> int:
    """Run one command; any exception that reaches here is printed as one line (``rcl.errors``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    debug = args.debug or errors.debug_enabled()
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, command=args.command)
        try:
            code = int(args.run(args) or 0)
            sys.stdout.flush()
            return code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            return _quiet_broken_pipe()
        except Exception as exc:  # noqa: BLE001 - the one boundary: a user never sees a traceback
            if debug:
                raise
            print(f"rcl {args.command}: error: {errors.explain(exc)}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
