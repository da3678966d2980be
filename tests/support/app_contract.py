"""The Voicebox desktop app's expectations, for contract tests against ``serve`` and the bridge.

``voicebox_app_contract.json`` (next to this file) is written down from upstream ``jamiepine/voicebox``: its route
table (``backend/routes/*.py``: method + path), the response fields the app reads (``app/src/lib/api/types.ts``),
the statuses it knows and its background polls with their intervals. Data only, no upstream code.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backend.engines.fake import FakeTTSEngine
from backend.engines.tiny import install_into_hf_cache
from backend.services.model_management import DownloadTask

CONTRACT: dict[str, Any] = json.loads(
    (Path(__file__).with_name("voicebox_app_contract.json")).read_text()
)
ROUTES: list[tuple[str, str]] = [(m, p) for m, p in CONTRACT["routes"]]
#: upstream's mounted MCP server (not in the route table, but a path a client may call)
MOUNTS: list[tuple[str, str]] = [(m, p) for m, p in CONTRACT["mounts"]]
POLLS: list[dict[str, Any]] = CONTRACT["polls"]


def shape(body: Any, type_name: str) -> Any:
    """Assert ``body`` has every field the app's type requires (extra fields are fine); return it."""
    fields = CONTRACT["types"][type_name]["required"]
    assert isinstance(body, dict), f"{type_name}: expected an object, got {body!r:.200}"
    missing = [f for f in fields if f not in body]
    assert not missing, f"{type_name} lacks {missing}: {body!r:.300}"
    enum = CONTRACT["enums"].get(f"{type_name}.status")
    if enum is not None:
        assert body["status"] in enum, f"{type_name}.status {body['status']!r} not in {enum}"
    return body


def shapes(items: Iterable[Any], type_name: str) -> list[Any]:
    return [shape(item, type_name) for item in items]


def concrete(path: str, values: dict[str, str] | None = None) -> str:
    """A route template with its parameters filled (``values`` by name, else a placeholder)."""
    values = values or {}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), f"x-{m.group(1)}"), path)


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


class GatedTTS(FakeTTSEngine):
    """A fake engine whose every chunk waits for ``gate`` (so a test can cancel mid-generation)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Event()
        self.fail_next = False
        self.delay = 0.0  # seconds per chunk

    def generate(self, text, prompt, *, language=None, seed=None, instruct=None):  # type: ignore[no-untyped-def]
        self.started.set()
        if not self.gate.wait(30):
            raise TimeoutError("gate never opened")
        if self.delay:
            time.sleep(self.delay)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the engine failed once (test)")
        return super().generate(text, prompt, language=language, seed=seed, instruct=instruct)


def whisper_files(root: Path) -> Path:
    """A complete (tiny, fake) Whisper snapshot's files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    (root / "model.safetensors").write_bytes(b"w" * 4096)
    (root / "preprocessor_config.json").write_text("{}")
    (root / "tokenizer.json").write_text("{}")
    return root


class FakeDownloader:
    """Stands in for the hub: fills the cache with a fake snapshot, reporting byte progress.

    ``hold`` keeps a download running until released (or cancelled); ``fail`` makes the next one raise
    after it wrote a partial blob.
    """

    def __init__(self, src: Path) -> None:
        self.src = src
        self.hold = threading.Event()
        self.hold.set()
        self.fail: str | None = None
        self.calls: list[str] = []

    def __call__(self, hf_home: Path, repo_id: str, task: DownloadTask) -> None:
        self.calls.append(repo_id)
        task.total = 4096
        task.current = 1024
        task.filename = "model.safetensors"
        partial = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}" / "blobs"
        partial.mkdir(parents=True, exist_ok=True)
        (partial / "abc.incomplete").write_bytes(b"x" * 1024)
        while not self.hold.wait(0.01):
            if task.cancel.is_set():
                return
        if self.fail:
            raise RuntimeError(self.fail)
        (partial / "abc.incomplete").unlink()
        install_into_hf_cache(self.src, hf_home / "hub", repo_id)
        task.current = task.total
