"""The volume's HF cache: completeness rules, offline switch, clear errors, download once under a lease."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from backend.config import load_settings
from backend.engines import hfcache
from backend.engines.hfcache import (
    ModelNotCachedError,
    check_snapshot,
    configure_hf_env,
    enable_offline,
    ensure_model,
    offline_requested,
    repo_cache_dir,
)
from backend.engines.tiny import install_into_hf_cache
from tests.support.tiny_models import TinyModels

REPO = "acme/tiny-qwen-like"


def fake_qwen_src(root: Path) -> Path:
    """A torch-free stand-in with the file set of a Qwen3-TTS Base repo."""
    src = root / "src"
    (src / "speech_tokenizer").mkdir(parents=True)
    (src / "config.json").write_text(json.dumps({"model_type": "qwen3_tts"}))
    (src / "generation_config.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"w" * 64)
    (src / "tokenizer_config.json").write_text("{}")
    (src / "speech_tokenizer" / "config.json").write_text("{}")
    (src / "speech_tokenizer" / "preprocessor_config.json").write_text("{}")
    (src / "speech_tokenizer" / "model.safetensors").write_bytes(b"c" * 64)
    return src


@pytest.fixture
def hf_home(tmp_path: Path) -> Path:
    home = tmp_path / "volume" / "huggingface"
    install_into_hf_cache(fake_qwen_src(tmp_path), home / "hub", REPO)
    return home


@pytest.fixture
def clean_hf_env(monkeypatch: pytest.MonkeyPatch):
    """Isolate the process env; restore the hub's offline constant afterwards."""
    for key in ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("VOICEBOX_HF_OFFLINE_AUTO", raising=False)
    yield monkeypatch
    hfcache._set_hub_offline_constants(True)  # the test session stays offline


def settings_for(volume: Path, **extra: str):
    env = {"VOICEBOX_VOLUME": str(volume), "VOICEBOX_LOCAL_DIR": str(volume / "_local")}
    env.update(extra)
    return load_settings(env)


def test_complete_snapshot(hf_home: Path) -> None:
    status = check_snapshot(hf_home, REPO)
    assert status.complete, status.problems
    assert status.commit and status.path and status.path.name == status.commit
    assert status.files == 7 and status.size_bytes > 128


def test_incomplete_blob_makes_it_incomplete(hf_home: Path) -> None:
    (repo_cache_dir(hf_home, REPO) / "blobs" / ("ab" * 32 + ".incomplete")).write_bytes(b"x")
    status = check_snapshot(hf_home, REPO)
    assert not status.complete
    assert any("incomplete" in p for p in status.problems)


@pytest.mark.parametrize(
    "victim",
    ["speech_tokenizer/model.safetensors", "speech_tokenizer/config.json", "config.json"],
)
def test_missing_required_file(hf_home: Path, victim: str) -> None:
    status0 = check_snapshot(hf_home, REPO)
    (status0.path / victim).unlink()
    status = check_snapshot(hf_home, REPO)
    assert not status.complete
    assert any(victim.split("/")[0] in p for p in status.problems), status.problems


def test_dangling_symlink_and_missing_ref(hf_home: Path) -> None:
    snap = check_snapshot(hf_home, REPO).path
    os.unlink(os.path.realpath(snap / "model.safetensors"))
    assert any("does not resolve" in p for p in check_snapshot(hf_home, REPO).problems)
    (repo_cache_dir(hf_home, REPO) / "refs" / "main").unlink()
    assert check_snapshot(hf_home, REPO).problems == ["no refs/main"]
    assert check_snapshot(hf_home, "nobody/nothing").problems == ["not in the cache"]


def test_sharded_index_needs_every_shard(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "llama"}))
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (src / "model-00001-of-00002.safetensors").write_bytes(b"1" * 10)
    home = tmp_path / "hf"
    install_into_hf_cache(src, home / "hub", "acme/sharded")
    status = check_snapshot(home, "acme/sharded")
    assert not status.complete
    assert status.problems == ["missing shard model-00002-of-00002.safetensors"]


def test_unreadable_index_nested_shards_and_empty_weights_are_each_named(tmp_path: Path) -> None:
    """Every problem of a snapshot is listed, in walk order: empty weights, then indexes (a shard listed by a
    nested index is looked for beside that index)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (src / "broken.index.json").write_text("{not json")
    weight_map = {"a": "part-1.safetensors", "b": "part-2.safetensors"}
    (src / "sub" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": weight_map})
    )
    (src / "sub" / "part-1.safetensors").write_bytes(b"")
    (src / "model.safetensors").write_bytes(b"1" * 10)
    home = tmp_path / "hf"
    install_into_hf_cache(src, home / "hub", "acme/nested")
    status = check_snapshot(home, "acme/nested")
    assert status.files == 5
    assert status.problems == [
        "sub/part-1.safetensors is empty",
        "broken.index.json unreadable",
        "missing shard sub/part-2.safetensors",
    ]


def test_configure_env_and_offline_marker(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    settings = settings_for(tmp_path / "vol")
    home = configure_hf_env(settings, env)
    assert env["HF_HOME"] == str(tmp_path / "vol" / "huggingface") == str(home)
    assert env["HF_HUB_CACHE"] == str(home / "hub")
    assert not offline_requested(env)
    enable_offline(env)
    assert env["HF_HUB_OFFLINE"] == "1"
    assert not offline_requested(env)  # we switched it on: a missing repo may still download
    assert offline_requested({"HF_HUB_OFFLINE": "1"})
    assert offline_requested({"TRANSFORMERS_OFFLINE": "true"})


def test_ensure_model_offline_error_names_repo_and_command(
    tmp_path: Path, hf_home: Path, clean_hf_env: pytest.MonkeyPatch
) -> None:
    clean_hf_env.setenv("HF_HUB_OFFLINE", "1")
    settings = settings_for(tmp_path / "volume")
    assert ensure_model(settings, REPO).complete
    (repo_cache_dir(hf_home, REPO) / "blobs" / "deadbeef.incomplete").write_bytes(b"")
    with pytest.raises(ModelNotCachedError) as err:
        ensure_model(settings, REPO)
    msg = str(err.value)
    assert REPO in msg and f"voicebox-worker models prefetch {REPO}" in msg
    assert "incomplete" in msg and "HF_HUB_OFFLINE" in msg
    assert err.value.repo_id == REPO


def _fake_download(calls: list[str], src: Path, delay: float = 0.0):
    def snapshot_download(repo_id: str, revision=None, cache_dir=None, **_kw) -> str:
        calls.append(repo_id)
        assert os.environ.get("HF_HUB_OFFLINE") is None  # lifted for the download
        time.sleep(delay)
        return str(install_into_hf_cache(src, Path(cache_dir), repo_id))

    return snapshot_download


def test_missing_online_downloads_once_under_lease(
    tmp_path: Path, clean_hf_env: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    calls: list[str] = []
    src = fake_qwen_src(tmp_path)
    clean_hf_env.setattr(huggingface_hub, "snapshot_download", _fake_download(calls, src, 0.5))
    settings = settings_for(tmp_path / "volume", VOICEBOX_LEASE_SECONDS="30")
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(ensure_model(settings, REPO))
        except Exception as exc:  # noqa: BLE001
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert calls == [REPO]  # the second worker found the first one's download
    assert all(getattr(r, "complete", False) for r in results), results
    assert (settings.hf_home / ".locks" / "acme--tiny-qwen-like.lease").parent.is_dir()
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # complete → offline before loading


def test_download_failure_is_a_clear_error(
    tmp_path: Path, clean_hf_env: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def no_network(*_a: object, **_k: object) -> str:
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    clean_hf_env.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(ModelNotCachedError, match="download failed: OSError") as err:
        ensure_model(settings_for(tmp_path / "volume"), REPO)
    assert f"models prefetch {REPO}" in str(err.value)


def test_real_tiny_engine_refuses_incomplete_snapshot(
    tiny_models: TinyModels,
    tmp_path: Path,
) -> None:
    """The required check: the real Qwen engine, given an incomplete snapshot, names the repo."""
    from backend.engines.qwen import QwenTTSEngine

    volume = tmp_path / "volume"
    home = tiny_models.copy_cache_to(volume)
    settings = tiny_models.settings(volume)
    snap = check_snapshot(home, tiny_models.tts_repo).path
    shutil.rmtree(snap / "speech_tokenizer")
    with pytest.raises(ModelNotCachedError) as err:
        QwenTTSEngine(settings).load()
    assert tiny_models.tts_repo in str(err.value) and "speech_tokenizer" in str(err.value)

    home2 = tiny_models.copy_cache_to(tmp_path / "volume2")
    blobs = repo_cache_dir(home2, tiny_models.tts_repo) / "blobs"
    (blobs / "0123abcd.incomplete").write_bytes(b"partial")
    with pytest.raises(ModelNotCachedError, match="incomplete"):
        QwenTTSEngine(tiny_models.settings(tmp_path / "volume2")).load()
