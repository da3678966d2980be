"""Shared fixtures: a temporary volume and its settings.

Each area keeps its own fixtures in ``tests/support/<area>.py``; they are registered here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from backend.config import Settings, load_settings
from tests.support.settings import worker_env

ROOT = Path(__file__).resolve().parents[1]

# The server's fixtures need the server's packages; the torch-free client venv (scripts/check-client-venv.sh)
# runs only the client and bridge tests, without them.
pytest_plugins: list[str] = (
    ["tests.support.api", "tests.support.tiny_models", "tests.support.postgres"]
    if importlib.util.find_spec("numpy")
    else []
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``needs_torch``: marked tests, and every test using the tiny real models, skip with the reason where
    torch is not installed (the torch-free client venv) instead of failing in a fixture."""
    if importlib.util.find_spec("torch") is not None:
        return
    skip = pytest.mark.skip(
        reason="needs torch: run it in the server venv (scripts/setup-venv.sh dev)"
    )
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "needs_torch" in item.keywords or "tiny_models" in fixtures:
            item.add_marker(skip)


def volume_env(volume: Path, local: Path, **extra: str) -> dict[str, str]:
    """``worker_env`` with short leases: peers of one simulated volume take over from each other quickly."""
    env = {"VOICEBOX_LEASE_SECONDS": "2", "VOICEBOX_LEASE_TIMEOUT": "60", **extra}
    return worker_env(volume, local, **env)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.both_backends``: the API fixtures once on the volume's SQLite, once on PostgreSQL."""
    if metafunc.definition.get_closest_marker("both_backends") is None:
        return
    if "database_backend" in metafunc.fixturenames:
        from tests.support.api import BACKENDS

        metafunc.parametrize("database_backend", BACKENDS, indirect=True)


@pytest.fixture
def volume_dir(tmp_path: Path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(tmp_path: Path, volume_dir: Path):
    """Settings for one simulated worker on the shared temp volume (each gets its own local dir)."""
    counter = {"n": 0}

    def factory(**extra: str) -> Settings:
        counter["n"] += 1
        local = tmp_path / f"local-{counter['n']}"
        env = volume_env(volume_dir, local, VOICEBOX_WORKER_ID=f"w{counter['n']}", **extra)
        return load_settings(env)

    return factory


@pytest.fixture
def subprocess_env(tmp_path: Path, volume_dir: Path):
    """Environment for worker subprocesses on the same temp volume."""

    def factory(name: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(volume_env(volume_dir, tmp_path / f"local-{name}", VOICEBOX_WORKER_ID=name))
        env.update(extra)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    return factory
