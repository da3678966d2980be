"""The real downloader of ``/models/download`` without the network: the hub's calls are replaced, the rest (its
progress bar class, the cancel between files, the byte watcher, the completeness check) is the real code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.engines import hfcache
from backend.engines.tiny import install_into_hf_cache
from backend.services.model_management import DownloadCancelled, DownloadTask, hub_downloader
from tests.support.app_contract import whisper_files

REPO = "openai/whisper-small"


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    src = whisper_files(tmp_path / "src")
    seen: dict[str, Any] = {}

    class Info:
        siblings = [type("S", (), {"size": 3000})(), type("S", (), {"size": 1096})()]

    class Api:
        def model_info(self, repo_id: str, files_metadata: bool = False) -> Info:
            assert files_metadata
            return Info()

    def download_snapshot(hf_home: Path, repo_id: str, *, lease_seconds: float, tqdm_class: Any):
        seen["lease_seconds"] = lease_seconds
        bar = tqdm_class(total=2, disable=True)
        bar.update(1)  # one file done; a cancel takes effect at the next one
        seen["after_first"] = True
        bar.update(1)
        bar.close()
        install_into_hf_cache(src, Path(hf_home) / "hub", repo_id)
        return hfcache.check_snapshot(hf_home, repo_id)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(hfcache, "download_snapshot", download_snapshot)
    return seen


def test_hub_downloader_fills_the_cache_with_sizes(
    tmp_path: Path, fake_hub: dict[str, Any]
) -> None:
    task = DownloadTask("whisper-small", REPO)
    hub_downloader(45.0)(tmp_path / "hf", REPO, task)
    assert task.total == 4096 and fake_hub["lease_seconds"] == 45.0
    assert hfcache.check_snapshot(tmp_path / "hf", REPO).complete


def test_hub_downloader_stops_between_files_when_cancelled(
    tmp_path: Path, fake_hub: dict[str, Any]
) -> None:
    task = DownloadTask("whisper-small", REPO)
    task.cancel.set()
    with pytest.raises(DownloadCancelled):
        hub_downloader(30.0)(tmp_path / "hf", REPO, task)
    assert "after_first" not in fake_hub
    assert not hfcache.check_snapshot(tmp_path / "hf", REPO).complete


def test_progress_event_shape() -> None:
    task = DownloadTask("whisper-small", REPO, total=200, current=50, filename="model.safetensors")
    event = task.progress_event()
    assert (event["progress"], event["status"], event["filename"]) == (
        25.0,
        "downloading",
        "model.safetensors",
    )
    task.status = "cancelled"
    assert task.progress_event()["status"] == "error"  # the app knows downloading|complete|error
    task.status = "complete"
    assert task.progress_event()["progress"] == 100.0
