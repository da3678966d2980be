"""The typed engine seam: services reach the engines only through the ``Engines`` protocol, deleting a
profile forgets its cached voice prompts, and the engine's name reaches rows and bundle manifests."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from backend.engines.base import VOICEBOX_QWEN_ENGINE, Engines
from backend.engines.manager import EngineManager
from backend.services.container import Services
from backend.services.generation import GenerationInput
from tests.support.generation import add_profile_with_sample
from volume_bootstrap.bootstrap import bootstrap


@pytest.fixture
def services(make_settings):
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    svc = Services.create(settings, engines=EngineManager(settings))
    yield svc
    svc.close()


def _prompt_files(services: Services) -> set[str]:
    root = services.settings.cache_dir / "prompts"
    return {p.name for p in root.glob("*/*.safetensors")}


def _generate(services: Services, profile_id: str) -> None:
    row = services.generation.start(GenerationInput(profile_id=profile_id, text="Hello there."))
    done = services.generation.wait(row.id, timeout=60)
    assert done.status == "completed", done.error


def test_engine_manager_satisfies_the_protocol(services: Services) -> None:
    engines: Engines = (
        services.require_engines()
    )  # mypy checks the assignment; this checks the names
    for name in Engines.__dict__:
        if not name.startswith("_"):
            assert hasattr(engines, name), name
    assert engines.tts_engine_name == "fake"
    assert not engines.is_loaded("tts")  # naming the engine does not load it


def test_deleting_a_profile_forgets_its_prompts_only(services: Services) -> None:
    gone = add_profile_with_sample(services, "Gone", freq=220.0)
    kept = add_profile_with_sample(services, "Kept", freq=330.0)
    _generate(services, gone)
    first = _prompt_files(services)
    _generate(services, kept)
    both = _prompt_files(services)
    assert len(first) == 1 and len(both) == 2

    services.profiles.delete_profile(gone)

    assert _prompt_files(services) == both - first
    stats = services.require_engines().status()["stats"]
    builds = stats["prompt_builds"]
    _generate(services, kept)  # the kept profile's prompt is still cached
    assert services.require_engines().status()["stats"]["prompt_builds"] == builds


def test_forget_ignores_foreign_files_and_unknown_digests(services: Services) -> None:
    profile = add_profile_with_sample(services)
    _generate(services, profile)
    foreign = services.settings.cache_dir / "prompts" / "ab" / ("ab" * 32 + ".safetensors")
    foreign.parent.mkdir(parents=True, exist_ok=True)
    foreign.write_bytes(b"not a safetensors file")
    engines = services.require_engines()
    assert engines.forget_prompts(["0" * 64]) == 0
    assert engines.forget_prompts([]) == 0
    assert len(_prompt_files(services)) == 2


def test_generation_rows_and_manifests_name_the_engine(services: Services) -> None:
    profile = add_profile_with_sample(services)
    row = services.generation.start(GenerationInput(profile_id=profile, text="Hi."))
    assert row.engine == VOICEBOX_QWEN_ENGINE == "qwen"  # the Voicebox app's engine id
    services.generation.wait(row.id, timeout=60)
    exported = services.bundles.export_profile(profile)
    with zipfile.ZipFile(io.BytesIO(exported.path.read_bytes())) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert json.dumps(manifest).count('"engine": "fake"') >= 1


def test_manifest_engine_comes_from_the_engine_not_a_constant(make_settings) -> None:
    settings = make_settings()
    bootstrap(settings, run_fsck=False)

    class Named(EngineManager):
        @property
        def tts_engine_name(self) -> str:
            return "qwen3-tts"

    svc = Services.create(settings, engines=Named(settings))
    try:
        assert svc.bundles._prompt_info()["engine"] == "qwen3-tts"
    finally:
        svc.close()
    bare = Services.create(settings)
    try:
        assert bare.bundles._prompt_info()["engine"] == "fake"  # no engines: named by the setting
        with pytest.raises(Exception, match="no TTS engine is configured"):
            bare.require_engines()
    finally:
        bare.close()
