"""``python -m backend.cli``: the ``voicebox-worker`` command."""

import sys

from backend.cli.main import main

sys.exit(main())
