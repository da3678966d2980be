"""A fresh volume copies the demo models a set-up step prebuilt instead of building them (scripts/run-local.sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.engines import hfcache, tiny
from backend.engines.hfcache import check_snapshot, ensure_model
from backend.engines.tiny import DEMO_STT_REPO, DEMO_TTS_REPO, copy_prebuilt_models
from tests.support.settings import worker_settings
from tests.support.tiny_models import TinyModels


def _as_demo_set(models: TinyModels, prebuilt: Path) -> Path:
    """The tiny test checkpoints filed under the demo repo names: a prebuilt set without the 7 s build."""
    hub = prebuilt / "hub"
    hub.mkdir(parents=True)
    for source, repo in ((models.tts_repo, DEMO_TTS_REPO), (models.stt_repo, DEMO_STT_REPO)):
        shutil.copytree(
            models.hf_home / "hub" / f"models--{source.replace('/', '--')}",
            hub / f"models--{repo.replace('/', '--')}",
            symlinks=True,
        )
    return prebuilt


def test_copy_keeps_the_cache_layout_complete(tiny_models: TinyModels, tmp_path: Path) -> None:
    target = tmp_path / "volume" / "huggingface"
    repos = (tiny_models.tts_repo, tiny_models.stt_repo)
    assert copy_prebuilt_models(tiny_models.hf_home, target, repos) is True
    for repo in repos:
        assert check_snapshot(target, repo).complete, repo
    snapshot_files = [
        p for p in (target / "hub").rglob("*") if "snapshots" in p.parts and p.is_file()
    ]
    assert snapshot_files and all(
        p.is_symlink() for p in snapshot_files
    )  # links to blobs, as the hub
    assert not [
        p for p in (target / "hub").iterdir() if p.name.startswith(".")
    ]  # no partial copy left


def test_copy_refuses_an_incomplete_prebuilt_set(tmp_path: Path) -> None:
    (tmp_path / "prebuilt" / "hub" / f"models--{DEMO_TTS_REPO.replace('/', '--')}").mkdir(
        parents=True
    )
    target = tmp_path / "hf"
    assert (
        copy_prebuilt_models(tmp_path / "prebuilt", target, (DEMO_TTS_REPO, DEMO_STT_REPO)) is False
    )
    assert not (target / "hub").exists()


def test_fresh_volume_copies_the_prebuilt_demo_models_instead_of_building(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prebuilt = _as_demo_set(tiny_models, tmp_path / "prebuilt")

    def no_build(*_args: object) -> None:
        raise AssertionError("built the demo models although a prebuilt set was named")

    monkeypatch.setattr(tiny, "install_tiny_models", no_build)
    volume = tmp_path / "fresh-volume"
    settings = worker_settings(
        volume,
        tmp_path / "local",
        VOICEBOX_TTS_MODEL=DEMO_TTS_REPO,
        VOICEBOX_STT_MODEL=DEMO_STT_REPO,
        VOICEBOX_DEMO_PREBUILT=str(prebuilt),
    )
    assert settings.demo_prebuilt == prebuilt
    status = ensure_model(settings, DEMO_TTS_REPO, download=False)
    assert status.complete
    assert check_snapshot(settings.hf_home, DEMO_STT_REPO).complete
    assert hfcache.check_snapshot(settings.hf_home, DEMO_TTS_REPO).complete


def _repo_dir(hf_home: Path, repo: str) -> Path:
    return hf_home / "hub" / f"models--{repo.replace('/', '--')}"


def test_an_installed_repo_is_left_alone(tiny_models: TinyModels, tmp_path: Path) -> None:
    """A peer on the same volume may be loading from the repo it installed a moment ago: a second copy must
    not delete it and put its own in its place."""
    target = tmp_path / "hf"
    repos = (tiny_models.tts_repo, tiny_models.stt_repo)
    assert copy_prebuilt_models(tiny_models.hf_home, target, repos)
    installed = _repo_dir(target, tiny_models.tts_repo)
    inode = installed.stat().st_ino
    marker = installed / "peer-is-reading"
    marker.write_text("x")
    assert copy_prebuilt_models(tiny_models.hf_home, target, repos)
    assert installed.stat().st_ino == inode and marker.exists()
    assert not [p for p in (target / "hub").iterdir() if p.name.startswith(".")]


def test_an_incomplete_repo_is_replaced(tiny_models: TinyModels, tmp_path: Path) -> None:
    target = tmp_path / "hf"
    broken = _repo_dir(target, tiny_models.tts_repo)
    (broken / "refs").mkdir(parents=True)
    (broken / "refs" / "main").write_text(
        "0" * 40
    )  # names a snapshot that is not there (a killed build)
    repos = (tiny_models.tts_repo, tiny_models.stt_repo)
    assert copy_prebuilt_models(tiny_models.hf_home, target, repos)
    for repo in repos:
        assert check_snapshot(target, repo).complete, repo
    assert not [p for p in (target / "hub").iterdir() if p.name.startswith(".")]


def _copy_in_process(prebuilt: str, target: str, repos: tuple[str, ...], rounds: int) -> bool:
    results = []
    for _ in range(rounds):
        results.append(copy_prebuilt_models(Path(prebuilt), Path(target), repos))
    return all(results)


def test_two_processes_copying_at_once_both_end_with_a_whole_install(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    """Two workers' first starts on one fresh volume: both copy, neither fails, one whole repo stays."""
    import multiprocessing

    repos = (tiny_models.tts_repo, tiny_models.stt_repo)
    for attempt in range(5):
        target = tmp_path / f"hf-{attempt}"
        context = multiprocessing.get_context("spawn")
        with context.Pool(2) as pool:
            runs = [
                pool.apply_async(
                    _copy_in_process, (str(tiny_models.hf_home), str(target), repos, 3)
                )
                for _ in range(2)
            ]
            assert [run.get(timeout=120) for run in runs] == [True, True]
        for repo in repos:
            assert check_snapshot(target, repo).complete, (attempt, repo)
        assert not [p for p in (target / "hub").iterdir() if p.name.startswith(".")]
