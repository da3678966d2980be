from pathlib import Path

import pytest

from backend.config import SETTINGS_DOC, SettingsError, load_settings


def test_defaults_and_layout(tmp_path: Path) -> None:
    s = load_settings({"VOICEBOX_VOLUME": str(tmp_path)})
    assert s.volume == tmp_path
    assert s.db_path == tmp_path / "voicebox" / "db" / "voicebox.db"
    assert s.hf_home == tmp_path / "huggingface"
    assert s.tts_model == "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
    assert s.serverless is False
    assert s.lease_seconds == 30.0


def test_local_stand_in_when_nothing_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("backend.config.RUNPOD_VOLUME", Path("/definitely/not/mounted"))
    s = load_settings({})
    assert s.volume == Path("volume").absolute()
    assert s.volume_source.startswith("local stand-in")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VOICEBOX_LEASE_SECONDS", "abc"),
        ("VOICEBOX_LEASE_SECONDS", "0"),
        ("VOICEBOX_PORT", "70000"),
        ("VOICEBOX_PORT", "-1"),
        ("VOICEBOX_DEVICE", "tpu"),
        ("VOICEBOX_LOG_LEVEL", "LOUD"),
        ("VOICEBOX_MAX_UPLOAD_MB", "-1"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({"VOICEBOX_VOLUME": "/tmp", name: value})


def test_every_setting_is_documented() -> None:
    source = Path("backend/config.py").read_text()
    import re

    used = set(re.findall(r'"((?:VOICEBOX|SERVERLESS)[A-Z_]*)"', source))
    assert used <= set(SETTINGS_DOC), used - set(SETTINGS_DOC)
    doc = Path("docs/architecture.md").read_text()
    missing = [name for name in SETTINGS_DOC if name not in doc]
    assert not missing, f"docs/architecture.md does not document {missing}"


def test_port_zero_means_any_free_port() -> None:
    """scripts/run-local.sh sets it: the worker's loopback API must not take the bridge's 17493."""
    assert load_settings({"VOICEBOX_VOLUME": "/tmp", "VOICEBOX_PORT": "0"}).port == 0
    assert (
        "VOICEBOX_PORT=${VOICEBOX_PORT:-0}"
        in (Path(__file__).resolve().parents[1] / "scripts" / "run-local.sh").read_text()
    )
