"""How every ``voicebox-worker`` command reports a failure: one line on stderr, and under ``--json`` one JSON line
on stdout as well, so a script reading stdout never gets nothing (``db adopt --json`` used to exit 1 with an
empty stdout).

Stdlib only, and outside ``backend/cli/`` so that the client package does not depend on the server CLI: the
server's command groups (``backend/cli/``) and the client's ``remote``/``bridge`` commands (which may not import
the server) all use it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["parse_args", "report_failure"]


def report_failure(
    args: argparse.Namespace | None, message: str, code: int, kind: str | None = None
) -> int:
    """Print the failure (JSON on stdout too under ``--json``) and return ``code`` for the caller to exit with."""
    print(f"voicebox-worker: {message}", file=sys.stderr)
    if args is not None and getattr(args, "json", False):
        payload: dict[str, Any] = {
            "ok": False,
            "error": message,
            "error_type": kind or "error",
            "exit_code": code,
        }
        print(json.dumps(payload, sort_keys=True), flush=True)
    return code


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, whose usage errors (exit 2) are JSON on stdout too when ``--json`` was given."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--json" not in args:
        return parser.parse_args(args)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return parser.parse_args(args)
    except SystemExit as exc:
        text = captured.getvalue()
        if exc.code in (0, None):
            sys.stderr.write(text)
            raise
        lines = [line for line in text.splitlines() if line.strip()]
        message = lines[-1].split(": error: ", 1)[-1] if lines else "bad usage"
        sys.stderr.write("\n".join(lines[:-1]) + ("\n" if len(lines) > 1 else ""))
        report_failure(argparse.Namespace(json=True), message, int(exc.code or 2), "usage")
        raise SystemExit(exc.code) from None
