"""A worker process whose fake engine is slow: ``python -m tests.support.slow_worker PORT``.

Used to SIGKILL a worker in the middle of a generation and watch its row be recovered only after its lease.
"""

from __future__ import annotations

import sys
import time

import uvicorn

from backend.app import create_app
from backend.config import load_settings
from backend.engines.fake import FakeTTSEngine
from backend.engines.manager import EngineManager
from backend.services.container import Services


class SlowFakeTTS(FakeTTSEngine):
    def generate(self, text, prompt, *, language=None, seed=None, instruct=None):  # type: ignore[no-untyped-def]
        time.sleep(60)
        return super().generate(text, prompt, language=language, seed=seed, instruct=instruct)


def main() -> int:
    settings = load_settings()
    engines = EngineManager(settings, tts_factory=lambda _s: SlowFakeTTS())
    app = create_app(settings, services=Services.create(settings, engines=engines))
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
