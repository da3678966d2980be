"""Voice prompt cache: on the volume (shared by every worker, survives restarts) with an in-memory LRU in front.

Why: building a Qwen3-TTS voice prompt encodes the reference clips through the codec and the speaker encoder on
every request otherwise (Voicebox rebuilds it per request, and its on-disk cache never survives a restart because
``torch.load(weights_only=True)`` rejects the pickled dataclass it wrote). Here:

* the key is a sha256 over the engine name, model repo and revision, and — in the profile's stable sample order —
  sha256 of each sample's audio bytes and its reference text, so a changed sample, order, model or revision
  misses naturally (no explicit invalidation needed);
* entries are safetensors files (numpy arrays + string metadata): loading parses a header and raw buffers, it
  never unpickles anything;
* writes are atomic (temp file in ``voicebox/.tmp`` → fsync → ``os.replace`` → fsync dir), so a reader on another
  worker sees either nothing or a whole entry;
* each entry's header lists the sha256 of the sample audio it was built from, so deleting a profile can
  ``forget`` its prompts (the key alone cannot name them: it is a one-way hash);
* total size is bounded (``VOICEBOX_PROMPT_CACHE_MB``): oldest-mtime entries are evicted, and a hit refreshes the
  mtime, which makes eviction least-recently-used across workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from backend.engines.base import VoicePrompt
from backend.storage.atomic import write_bytes

if TYPE_CHECKING:
    from backend.config import Settings

log = logging.getLogger(__name__)

_SUFFIX = ".safetensors"
_META_KEY = "voicebox_meta"
_FORMAT_KEY = "voicebox_prompt_format"
#: header field: JSON list of the hex sha256 of each sample's audio the prompt was built from (``forget``)
_SOURCES_KEY = "voicebox_sources"
_FORMAT = "1"


def prompt_key(
    engine: str,
    repo_id: str,
    revision: str | None,
    samples: Sequence[tuple[bytes, str]],
) -> str:
    """The cache key of a voice prompt: hex sha256 over engine, model and the ordered samples."""
    h = hashlib.sha256()
    for part in ("voicebox-prompt-v1", engine, repo_id, revision or ""):
        h.update(part.encode("utf-8") + b"\0")
    h.update(str(len(samples)).encode() + b"\0")
    for audio_bytes, text in samples:
        h.update(hashlib.sha256(audio_bytes).digest())
        h.update(hashlib.sha256((text or "").encode("utf-8")).digest())
    return h.hexdigest()


def _header_sources(path: Path) -> list[str]:
    """The sample digests in a safetensors file's header (8-byte length, then a JSON header), read
    without loading the arrays."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 0 < size <= 1 << 24:
            raise ValueError("not a safetensors file")
        header = json.loads(f.read(size))
    meta = header.get("__metadata__") or {}
    listed = json.loads(meta.get(_SOURCES_KEY, "[]"))
    if not isinstance(listed, list):
        raise ValueError("prompt sources must be a list")
    return [str(x) for x in listed]


class PromptCache:
    """Voice prompts on disk under ``root`` (bounded to ``max_bytes``) with ``memory_items`` kept in memory."""

    def __init__(self, root: Path, tmp_dir: Path, max_bytes: int, memory_items: int = 16) -> None:
        self.root = Path(root)
        self.tmp_dir = Path(tmp_dir)
        self.max_bytes = int(max_bytes)
        self.memory_items = int(memory_items)
        self._memory: OrderedDict[str, VoicePrompt] = OrderedDict()
        self._lock = threading.Lock()
        self.disk_hits = 0
        self.memory_hits = 0
        self.misses = 0
        self.evictions = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> PromptCache:
        return cls(
            Path(settings.cache_dir) / "prompts",
            Path(settings.tmp_dir),
            int(settings.prompt_cache_bytes),
        )

    def path_for(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError("prompt cache keys are hex sha256 digests")
        return self.root / key[:2] / f"{key}{_SUFFIX}"

    # ------------------------------------------------------------------------------------------ read
    def get(self, key: str) -> VoicePrompt | None:
        """The cached prompt, or None. A corrupt entry is removed and reported as a miss."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.memory_hits += 1
                return self._memory[key]
        path = self.path_for(key)
        try:
            prompt = self._read(path)
        except FileNotFoundError:
            prompt = None
        except Exception as exc:  # noqa: BLE001 - a torn or foreign file is a miss, not an outage
            log.warning("dropping unreadable voice prompt %s: %s", path.name, exc)
            with contextlib.suppress(OSError):
                path.unlink()
            prompt = None
        if prompt is None:
            with self._lock:
                self.misses += 1
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # LRU across workers: a hit is a use
        with self._lock:
            self.disk_hits += 1
            self._remember(key, prompt)
        return prompt

    @staticmethod
    def _read(path: Path) -> VoicePrompt:
        from safetensors import safe_open

        arrays = {}
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            if header.get(_FORMAT_KEY) != _FORMAT:
                raise ValueError("not a voicebox prompt file")
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                arrays[name] = f.get_tensor(name)
        meta = json.loads(header.get(_META_KEY, "{}"))
        if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
        ):
            raise ValueError("prompt metadata must be a str→str mapping")
        return VoicePrompt(arrays=arrays, meta=meta)

    # ------------------------------------------------------------------------------------------ write
    def put(self, key: str, prompt: VoicePrompt, sources: Sequence[str] = ()) -> Path:
        """Store ``prompt`` atomically and evict old entries beyond the size bound.

        ``sources``: the hex sha256 of each sample's audio the prompt was built from (for ``forget``).
        """
        from safetensors.numpy import save

        path = self.path_for(key)
        data = save(
            {k: np.ascontiguousarray(v) for k, v in prompt.arrays.items()},
            metadata={
                _FORMAT_KEY: _FORMAT,
                _META_KEY: json.dumps(prompt.meta, sort_keys=True),
                _SOURCES_KEY: json.dumps(sorted(set(sources))),
            },
        )
        write_bytes(path, data, self.tmp_dir, prefix=f"prompt-{key[:16]}-")
        with self._lock:
            self._remember(key, prompt)
        self.evict(keep=key)
        return path

    # ------------------------------------------------------------------------------------------ forget
    def forget(self, sources: Sequence[str]) -> int:
        """Remove every entry built from any of these samples (hex sha256 of their audio); how many files
        went. Reads only each file's small header; entries written before sources were recorded (no header
        field) cannot be matched and age out of the LRU bound instead."""
        wanted = {s.lower() for s in sources}
        if not wanted:
            return 0
        with self._lock:
            # the memory copies are cheap to reload from disk; dropping them all forgets the right ones
            self._memory.clear()
        removed = 0
        for path, _, _ in self.entries():
            try:
                listed = set(_header_sources(path))
            except (OSError, ValueError):
                continue  # removed by a peer meanwhile, or not ours
            if listed & wanted:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed

    def _remember(self, key: str, prompt: VoicePrompt) -> None:
        self._memory[key] = prompt
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    # ------------------------------------------------------------------------------------------ bound
    def entries(self) -> list[tuple[Path, int, float]]:
        """(path, size, mtime) of every entry on disk."""
        out: list[tuple[Path, int, float]] = []
        if not self.root.is_dir():
            return out
        for p in self.root.glob(f"*/*{_SUFFIX}"):
            try:
                st = p.stat()
            except OSError:
                continue  # removed by a peer meanwhile
            out.append((p, st.st_size, st.st_mtime))
        return out

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self, keep: str | None = None) -> int:
        """Delete least recently used entries until the total fits ``max_bytes``; return how many went."""
        entries = sorted(self.entries(), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        removed = 0
        for path, size, _ in entries:
            if total <= self.max_bytes:
                break
            if keep and path.name == f"{keep}{_SUFFIX}":
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
            total -= size
            with self._lock:
                self._memory.pop(path.name[: -len(_SUFFIX)], None)
        self.evictions += removed
        return removed

    def clear(self) -> int:
        """Remove every entry (memory and disk); return how many files went."""
        with self._lock:
            self._memory.clear()
        removed = 0
        for path, _, _ in self.entries():
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
        return removed

    def stats(self) -> dict[str, int]:
        return {
            "memory_items": len(self._memory),
            "memory_hits": self.memory_hits,
            "disk_hits": self.disk_hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }
