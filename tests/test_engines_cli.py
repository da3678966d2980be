"""``models status|prefetch|install-demo``: JSON output and exit codes 0 ok / 1 failure / 2 usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.cli import main
from backend.engines import hfcache
from backend.engines.tiny import DEMO_STT_REPO, DEMO_TTS_REPO
from tests.support.tiny_models import TinyModels


@pytest.fixture
def volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    vol = tmp_path / "volume"
    monkeypatch.setenv("VOICEBOX_VOLUME", str(vol))
    monkeypatch.setenv("VOICEBOX_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("VOICEBOX_TTS_MODEL", DEMO_TTS_REPO)
    monkeypatch.setenv("VOICEBOX_STT_MODEL", DEMO_STT_REPO)
    for key in ("HF_HOME", "HF_HUB_CACHE"):
        monkeypatch.delenv(key, raising=False)
    yield vol
    hfcache._set_hub_offline_constants(True)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    data = json.loads(out.strip().splitlines()[-1]) if "--json" in argv and out.strip() else {}
    return code, data, err


def test_status_of_an_empty_volume_fails_with_the_fix(volume: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, data, _ = run(capsys, "models", "status", "--json")
    assert code == 1 and data["ok"] is False
    assert [m["repo_id"] for m in data["models"]] == [DEMO_TTS_REPO, DEMO_STT_REPO]
    assert data["models"][0]["problems"] == ["not in the cache"]
    assert data["models"][0]["fix"] == "voicebox-worker models install-demo"
    assert data["models"][0]["source"] == "VOICEBOX_TTS_MODEL"
    code = main(["models", "status"])
    text = capsys.readouterr().out
    assert code == 1
    assert f"{DEMO_TTS_REPO} not downloaded — run `voicebox-worker models install-demo`" in text


def test_status_names_the_default_model_and_its_prefetch_command(
    volume: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("VOICEBOX_TTS_MODEL")
    code, data, _ = run(capsys, "models", "status", "--json")
    tts = data["models"][0]
    assert code == 1 and tts["repo_id"] == "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
    assert tts["source"] == "VOICEBOX_TTS_MODEL not set: default"
    assert tts["hint"].startswith(
        "Qwen/Qwen3-TTS-12Hz-1.7B-Base not downloaded — run `voicebox-worker"
    )
    assert tts["fix"] == "voicebox-worker models prefetch Qwen/Qwen3-TTS-12Hz-1.7B-Base"


def test_install_demo_then_status_ok(
    volume: Path,
    tiny_models: TinyModels,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    code, data, _ = run(capsys, "models", "install-demo", "--json")
    assert code == 0 and data["ok"] is True
    assert data["models"] == {"tts": DEMO_TTS_REPO, "stt": DEMO_STT_REPO}
    assert (volume / "huggingface" / "hub" / "models--voicebox-demo--tiny-qwen3-tts-base").is_dir()
    code, data, _ = run(capsys, "models", "status", "--json")
    assert code == 0 and all(m["complete"] for m in data["models"])
    # a second install finds them complete and builds nothing (scripts/run-local.sh starts fast)
    code, data, _ = run(capsys, "models", "install-demo", "--json")
    assert code == 0 and data["built"] is False


def test_status_without_settings_points_at_the_installed_demo_models(
    volume: Path,
    tiny_models: TinyModels,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    """After scripts/run-local.sh, a plain `models status` says which models that worker really uses."""
    assert main(["models", "install-demo"]) == 0
    capsys.readouterr()
    monkeypatch.delenv("VOICEBOX_TTS_MODEL")
    monkeypatch.delenv("VOICEBOX_STT_MODEL")
    assert main(["models", "status"]) == 1
    text = capsys.readouterr().out
    assert "Qwen/Qwen3-TTS-12Hz-1.7B-Base (VOICEBOX_TTS_MODEL not set: default)" in text
    assert "the offline demo models are installed on this volume" in text
    assert "VOICEBOX_TTS_MODEL=voicebox-demo/tiny-qwen3-tts-base" in text
    # prefetch of a complete repo needs no network at all
    code, data, _ = run(capsys, "models", "prefetch", DEMO_TTS_REPO, "--json")
    assert code == 0 and data["models"][0]["complete"]


def test_prefetch_without_network_exits_1(
    volume: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    import huggingface_hub

    def offline(*_a: object, **_k: object) -> str:
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    code, data, err = run(capsys, "models", "prefetch", "acme/missing", "--json")
    assert code == 1 and data["ok"] is False
    assert "acme/missing" in data["error"] and "network unreachable" in err


def test_usage_errors_exit_2(volume: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        main(["models", "nonsense"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["models", "prefetch", "--revision"])
    assert exc.value.code == 2
