"""Voice prompt cache: keys, safetensors round trip (no pickle), atomic writes, size bound, LRU."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from backend.engines.base import VoicePrompt
from backend.engines.prompt_cache import PromptCache, prompt_key


def make_prompt(seed: int = 0, n: int = 100) -> VoicePrompt:
    rng = np.random.default_rng(seed)
    return VoicePrompt(
        arrays={
            "ref_code": rng.integers(0, 2048, size=(n, 4), dtype=np.int64),
            "ref_spk_embedding": rng.standard_normal(16).astype(np.float32),
        },
        meta={"ref_text": f"hello {seed}", "icl_mode": "1"},
    )


def cache(tmp_path: Path, max_bytes: int = 10**9, memory_items: int = 16) -> PromptCache:
    return PromptCache(tmp_path / "prompts", tmp_path / ".tmp", max_bytes, memory_items)


def test_key_depends_on_everything_that_matters() -> None:
    samples = [(b"audio-1", "one"), (b"audio-2", "two")]
    base = prompt_key("qwen3-tts", "Qwen/x", "abc", samples)
    assert base == prompt_key("qwen3-tts", "Qwen/x", "abc", list(samples))
    variants = [
        prompt_key("other", "Qwen/x", "abc", samples),
        prompt_key("qwen3-tts", "Qwen/y", "abc", samples),
        prompt_key("qwen3-tts", "Qwen/x", "abd", samples),
        prompt_key("qwen3-tts", "Qwen/x", "abc", samples[::-1]),  # order matters
        prompt_key("qwen3-tts", "Qwen/x", "abc", [(b"audio-1", "one!"), samples[1]]),
        prompt_key("qwen3-tts", "Qwen/x", "abc", [(b"audio-X", "one"), samples[1]]),
        prompt_key("qwen3-tts", "Qwen/x", "abc", samples[:1]),
        # no ambiguity from concatenation: moving bytes between audio and text changes the key
        prompt_key("qwen3-tts", "Qwen/x", "abc", [(b"audio-1o", "ne"), samples[1]]),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_roundtrip_survives_a_new_cache_object(tmp_path: Path) -> None:
    key = prompt_key("e", "r", "v", [(b"a", "t")])
    prompt = make_prompt()
    c1 = cache(tmp_path)
    path = c1.put(key, prompt)
    assert path.exists() and path.suffix == ".safetensors"
    assert not list((tmp_path / ".tmp").iterdir())  # temp file renamed, none left behind
    c2 = cache(tmp_path)  # a new process-level object: nothing in memory
    loaded = c2.get(key)
    assert loaded is not None and loaded.equals(prompt)
    assert loaded.arrays["ref_code"].dtype == np.int64
    assert c2.stats()["disk_hits"] == 1
    assert c2.get(key) is loaded and c2.stats()["memory_hits"] == 1


def test_file_is_safetensors_not_pickle(tmp_path: Path) -> None:
    key = prompt_key("e", "r", "v", [(b"a", "t")])
    data = cache(tmp_path).put(key, make_prompt()).read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    assert data[8 : 8 + 1] == b"{" and b"voicebox_meta" in data[8 : 8 + header_len]
    assert b"\x80\x04" not in data[:2]  # no pickle protocol marker at the start


def test_miss_and_corrupt_entries(tmp_path: Path) -> None:
    c = cache(tmp_path)
    key = prompt_key("e", "r", "v", [(b"a", "t")])
    assert c.get(key) is None
    path = c.path_for(key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00" * 64)  # torn / foreign file
    assert c.get(key) is None
    assert not path.exists()  # removed so it is rebuilt
    with pytest.raises(ValueError):
        c.path_for("../../etc/passwd")


def test_foreign_safetensors_is_rejected(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    c = cache(tmp_path)
    key = prompt_key("e", "r", "v", [(b"a", "t")])
    c.path_for(key).parent.mkdir(parents=True)
    save_file({"x": np.zeros(3, dtype=np.float32)}, str(c.path_for(key)))
    assert c.get(key) is None


def test_size_bound_evicts_least_recently_used(tmp_path: Path) -> None:
    probe = cache(tmp_path / "probe")
    size = probe.put(prompt_key("e", "r", "v", [(b"p", "")]), make_prompt()).stat().st_size
    c = cache(tmp_path, max_bytes=int(size * 3.5), memory_items=1)
    keys = [prompt_key("e", "r", "v", [(bytes([i]), "")]) for i in range(5)]
    now = time.time()
    for i, key in enumerate(keys[:3]):
        c.put(key, make_prompt(i))
        os.utime(c.path_for(key), (now - 100 + i, now - 100 + i))
    # use the oldest entry: a hit refreshes its mtime, so it survives the next evictions
    fresh = cache(tmp_path, max_bytes=int(size * 3.5), memory_items=1)
    assert fresh.get(keys[0]) is not None
    fresh.put(keys[3], make_prompt(3))
    fresh.put(keys[4], make_prompt(4))
    left = {p.name.split(".")[0] for p, _, _ in fresh.entries()}
    assert fresh.total_bytes() <= size * 3.5
    assert keys[0] in left and keys[4] in left and keys[3] in left
    assert keys[1] not in left and keys[2] not in left
    assert fresh.evictions == 2


def test_clear(tmp_path: Path) -> None:
    c = cache(tmp_path)
    for i in range(3):
        c.put(prompt_key("e", "r", "v", [(bytes([i]), "")]), make_prompt(i))
    assert c.clear() == 3
    assert c.entries() == [] and c.stats()["memory_items"] == 0
