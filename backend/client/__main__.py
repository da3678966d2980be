"""``python -m backend.client remote ...`` / ``bridge``: the commands without the worker's CLI."""

import sys

from backend.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
