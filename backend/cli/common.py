"""What every command group shares: exit codes, the handler type, ``CommandError`` and ``emit``.

Exit codes scripts can rely on: 0 success; 1 the operation failed (message on stderr); 2 bad usage; 3 the
database needs attention.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from backend.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DB = 0, 1, 2, 3

Handler = Callable[[argparse.Namespace, Settings], int]


class CommandError(RuntimeError):
    """A failure to report on one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def emit(args: argparse.Namespace, data: object, text: str | None = None) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=None, sort_keys=True, default=str))
    else:
        print(text if text is not None else json.dumps(data, indent=2, sort_keys=True, default=str))


def add_command(
    group: argparse._SubParsersAction, name: str, handler: Handler, help_text: str
) -> argparse.ArgumentParser:
    """A subcommand of ``group`` that runs ``handler`` and takes ``--json``, as every command does."""
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handler)
    return parser
