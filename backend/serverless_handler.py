"""Entry of the RunPod worker: ``python -m backend.serverless_handler`` (the Dockerfile's command).

Also RunPod's local test commands: ``SERVERLESS=1 python -m backend.serverless_handler --rp_serve_api`` (RunPod's
local API on port 8000) and ``--test_input '{"input": ...}'`` (one job, exit code 0/1). The work lives in
``backend.serverless.launcher``; this module only starts it, and only when run as a script, so importing it has no
side effects.
"""

from __future__ import annotations

from backend.serverless.launcher import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
