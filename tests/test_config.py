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


def _docs_table() -> str:
    doc = Path("docs/architecture.md").read_text()
    start = doc.index("| variable | meaning and default |")
    end = doc.find("\n\n", start)
    return doc[start : len(doc) if end < 0 else end + 1]


def test_docs_table_is_the_declared_table() -> None:
    from backend.config import markdown_table

    assert _docs_table() == markdown_table(), "regenerate it: python -m backend.config"


def test_every_settings_field_is_declared_once() -> None:
    import dataclasses

    from backend.config import SETTINGS, Settings

    envs = [s.env for s in SETTINGS]
    assert len(envs) == len(set(envs))
    filled = {f for s in SETTINGS for f in s.read({"VOICEBOX_VOLUME": "/tmp"}, _done())}
    fields = {f.name for f in dataclasses.fields(Settings)} - {"extra"}
    assert filled == fields


def _done() -> dict[str, object]:
    return {"worker_id": "w", "max_upload_bytes": 50 * 1024 * 1024}


def test_defaults_are_the_documented_values(tmp_path: Path) -> None:
    """Each plain setting's value when unset is the default its docs row states."""
    from backend.config import SETTINGS

    s = load_settings({"VOICEBOX_VOLUME": str(tmp_path)})
    for setting in SETTINGS:
        if setting.parse is not None or setting.default_doc is not None:
            continue
        value = getattr(s, setting.attr)
        if setting.kind == "flag":
            assert value is False and setting.doc.endswith("; default 0"), setting.env
        elif setting.kind == "keys":
            assert value == () and setting.doc.endswith("; default unset"), setting.env
        else:
            documented = setting.doc.rsplit("; default ", 1)[1]
            expected = type(setting.default)(documented) * setting.scale
            assert value == expected, (setting.env, value, documented)


@pytest.mark.parametrize(
    ("env", "attr", "raw", "expected"),
    [
        ("VOICEBOX_LEASE_SECONDS", "lease_seconds", "2.5", 2.5),
        ("VOICEBOX_BACKUPS_KEEP", "backups_keep", "7", 7),
        ("VOICEBOX_MAX_UPLOAD_MB", "max_upload_bytes", "2", 2 * 1024 * 1024),
        ("VOICEBOX_PROMPT_CACHE_MB", "prompt_cache_bytes", "1", 1024 * 1024),
        ("SERVERLESS", "serverless", "yes", True),
        ("VOICEBOX_STREAM_JOBS", "stream_jobs", "1", True),
        ("VOICEBOX_API_KEYS", "api_keys", " a, b ,", ("a", "b")),
        ("VOICEBOX_TTS_MODEL", "tts_model", " fake ", "fake"),
        ("VOICEBOX_HOST", "host", "", "127.0.0.1"),
        ("VOICEBOX_PORT", "port", "8000", 8000),
        ("VOICEBOX_DEVICE", "device", "cuda:1", "cuda:1"),
        ("VOICEBOX_LOG_LEVEL", "log_level", "debug", "DEBUG"),
        ("VOICEBOX_SQLITE_VFS", "sqlite_vfs", "unix-none", "unix-none"),
        ("VOICEBOX_MAX_QUEUED", "max_queued", "9", 9),
        ("VOICEBOX_CORS_ORIGINS", "cors_any_origin", "*", True),
    ],
)
def test_values_are_read_from_the_environment(
    tmp_path: Path, env: str, attr: str, raw: str, expected: object
) -> None:
    s = load_settings({"VOICEBOX_VOLUME": str(tmp_path), env: raw})
    assert getattr(s, attr) == expected


def test_dependent_settings(tmp_path: Path) -> None:
    s = load_settings({"VOICEBOX_VOLUME": str(tmp_path), "VOICEBOX_WORKER_ID": "a/b"})
    assert s.local_dir == Path("/tmp/voicebox-local-a_b")
    assert s.max_queued == 4 and s.max_job_upload_bytes == 15_000_000
    small = load_settings({"VOICEBOX_VOLUME": str(tmp_path), "VOICEBOX_MAX_UPLOAD_MB": "1"})
    assert small.max_job_upload_bytes == 1024 * 1024  # never above the upload limit
    fake = load_settings({"VOICEBOX_VOLUME": str(tmp_path), "VOICEBOX_TTS_MODEL": "fake"})
    assert fake.max_queued == 16


def test_port_zero_means_any_free_port() -> None:
    """scripts/run-local.sh sets it: the worker's loopback API must not take the bridge's 17493."""
    assert load_settings({"VOICEBOX_VOLUME": "/tmp", "VOICEBOX_PORT": "0"}).port == 0
    assert (
        "VOICEBOX_PORT=${VOICEBOX_PORT:-0}"
        in (Path(__file__).resolve().parents[1] / "scripts" / "run-local.sh").read_text()
    )
