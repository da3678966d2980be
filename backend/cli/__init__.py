"""The ``voicebox-worker`` command line, one module per command group.

``main.py`` builds the parser and runs a command (bootstrap, serve, volume); ``db.py`` (the library database),
``models.py`` (the volume's model cache), ``bundles.py`` (profile bundles) add their groups, and the client's ``remote``/``bridge`` commands come from
``backend/client/cli.py`` (they live in the client package because it installs without the server).
``common.py`` holds the exit codes and ``CommandError``; ``backend/cli_report.py`` (outside this package, so the
client can use it without depending on the server CLI) is how every command reports a failure.

Importing this package is cheap: every command imports what it needs when it runs.
"""

from backend.cli.main import (
    EXIT_DB,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    build_parser,
    main,
)

__all__ = [
    "EXIT_DB",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandError",
    "build_parser",
    "main",
]
