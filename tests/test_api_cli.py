"""``voicebox-worker profiles export|import`` between two volumes, with the progress bar on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.cli import main
from backend.services.container import Services
from tests.support.api import (
    PNG_1PX,
    add_generation,
    api_settings_for,
    fresh_volume,
    voicebox_v10_bundle,
)
from tests.support.settings import worker_env


def _env(monkeypatch: pytest.MonkeyPatch, volume: Path, local: Path) -> None:
    for key, value in worker_env(volume, local, VOICEBOX_WORKER_ID="cli").items():
        monkeypatch.setenv(key, value)


def test_cli_export_all_then_import_on_another_volume(
    tmp_path: Path,
    volume_template: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = fresh_volume(volume_template, tmp_path / "src")
    settings = api_settings_for(src, tmp_path / "src-local")
    services = Services.create(settings)
    with TestClient(create_app(settings, services=services)) as client:
        r = client.post(
            "/profiles/import",
            files={"file": ("b.zip", voicebox_v10_bundle(avatar=(".png", PNG_1PX)), "a/zip")},
        )
        pid = r.json()["id"]
    add_generation(services, profile_id=pid, profile_name="Narrator")
    services.close()

    out = tmp_path / "library.zip"
    _env(monkeypatch, src, tmp_path / "cli-local-1")
    assert main(["profiles", "export", "--all", "--history", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["profiles"] == 1
    assert "2/2" in captured.err  # the progress bar, on stderr
    assert main(["profiles", "export", str(out)]) == 1  # exists, no --force
    single = tmp_path / "one.zip"
    assert (
        main(["profiles", "export", "--profile", "Narrator", "--format", "1.0", str(single)]) == 0
    )
    capsys.readouterr()

    dst = fresh_volume(volume_template, tmp_path / "dst")
    _env(monkeypatch, dst, tmp_path / "cli-local-2")
    assert main(["profiles", "import", "--json", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "library" and report["profiles_created"] == ["Narrator"]
    assert report["generations_created"] == 1
    assert main(["profiles", "import", "--json", str(out)]) == 0
    assert "nothing new" in json.loads(capsys.readouterr().out)["message"]
    assert main(["profiles", "import", str(single)]) == 0
    assert "Narrator (1)" in capsys.readouterr().out
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    assert main(["profiles", "import", str(bad)]) == 1
    assert "zip" in capsys.readouterr().err
