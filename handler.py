"""RunPod entry file where the Hub looks for it (the repository root): the worker itself lives in ``backend``.

``python handler.py`` is the image's command; it is ``python -m backend.serverless_handler`` under another name
(cold start: volume, engines, API on loopback, then the RunPod SDK's loop). Importing this file starts nothing.
"""

from backend.serverless.launcher import main

if __name__ == "__main__":
    main()
