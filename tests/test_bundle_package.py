"""The bundles package's seams: ``BundleService`` built from what it uses (no container), and the library plan's
refusals, each naming the entry at fault before anything is staged."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.services.bundles import BundleService
from backend.services.bundles.library import plan_library
from backend.services.container import Services
from backend.services.errors import ValidationError
from backend.services.zipguard import SafeZip
from tests.support.generation import add_profile_with_sample
from volume_bootstrap.bootstrap import bootstrap

P1 = "11111111-1111-4111-8111-111111111111"
P2 = "22222222-2222-4222-8222-222222222222"
S1 = "33333333-3333-4333-8333-333333333333"
G1 = "44444444-4444-4444-8444-444444444444"


@pytest.fixture
def services(make_settings) -> Iterator[Services]:
    settings = make_settings()
    bootstrap(settings, run_fsck=False)
    svc = Services.create(settings)
    yield svc
    svc.close()


def test_bundle_service_needs_only_settings_db_and_blobs(services: Services) -> None:
    """Built without the container: exports and imports work, and the manifest names the engine from the
    setting when the process has no engines."""
    bundles = BundleService(services.settings, services.db, services.blobs)
    profile_id = add_profile_with_sample(services, "Solo")
    exported = bundles.export_profile(profile_id)
    try:
        with zipfile.ZipFile(exported.path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
        assert manifest["kind"] == "profile" and manifest["profile"]["id"] == profile_id
        assert manifest["voice_prompt"]["engine"] == "fake"
        assert bundles.detect_kind(exported.path) == "profile"
        info = bundles.import_profile(exported.path)
        assert info.profile.name != "Solo" and info.profile.name.startswith("Solo")
    finally:
        exported.path.unlink(missing_ok=True)
    library = bundles.export_library()
    try:
        assert (library.profiles, library.samples) == (2, 2)
        result = bundles.import_library(library.path)
        assert result.nothing_new and len(result.profiles_skipped) == 2
    finally:
        library.path.unlink(missing_ok=True)


def _profile(pid: str, samples: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"profile": {"id": pid, "name": f"n-{pid[:4]}"}, "samples": samples or [], **extra}


def _sample(sid: str, file: str = "profiles/a.wav") -> dict[str, Any]:
    return {"id": sid, "file": file, "reference_text": "hello"}


def _plan(tmp_path: Path, manifest: dict[str, Any], files: tuple[str, ...] = ()) -> Any:
    path = tmp_path / "library.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name in files:
            zf.writestr(name, b"x")
    with SafeZip(path) as zf:
        return plan_library(zf, manifest)


FILES = ("profiles/a.wav", "profiles/b.wav", "generations/g.wav")
REFUSED = {
    "profiles not a list": ({"profiles": {}}, "'profiles' must be a list"),
    "profile not an object": ({"profiles": [1]}, "profiles[0] must be an object"),
    "profile without id": (
        {"profiles": [{"profile": {"name": "x"}}]},
        "profiles[0]: a library profile needs its uuid 'id'",
    ),
    "profile listed twice": (
        {"profiles": [_profile(P1), _profile(P1)]},
        f"profiles[1]: profile id {P1} is listed twice",
    ),
    "sample in two profiles": (
        {
            "profiles": [
                _profile(P1, [_sample(S1)]),
                _profile(P2, [_sample(S1, "profiles/b.wav")]),
            ]
        },
        f"profiles[1]: sample id {S1} appears in two profiles",
    ),
    "avatar not in the bundle": (
        {"profiles": [_profile(P1, avatar={"file": "profiles/none.png"})]},
        "profiles[0]: avatar file 'profiles/none.png' is not in the bundle",
    ),
    "generations not a list": (
        {"profiles": [], "generations": {"a": 1}},
        "'generations' must be a list",
    ),
    "generation listed twice": (
        {"profiles": [], "generations": [{"id": G1, "text": "a"}, {"id": G1, "text": "b"}]},
        f"generations[1]: generation id {G1} is listed twice",
    ),
    "generation file not in the bundle": (
        {"profiles": [], "generations": [{"text": "a", "file": "generations/none.wav"}]},
        "generations[0]: file 'generations/none.wav' is not in the bundle",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_library_plan_refuses_by_name(tmp_path: Path, case: str) -> None:
    manifest, needle = REFUSED[case]
    with pytest.raises(ValidationError) as caught:
        _plan(tmp_path, {"version": "1.1", "kind": "library", **manifest}, FILES)
    assert needle in str(caught.value)


def test_library_plan_reads_profiles_and_generations(tmp_path: Path) -> None:
    manifest = {
        "version": "1.1",
        "kind": "library",
        "profiles": [
            _profile(P1, [_sample(S1)], avatar={"file": "profiles/b.wav", "sha256": "0" * 64}),
            _profile(P2),
        ],
        "generations": [
            {
                "id": G1,
                "text": "hi",
                "file": "generations/g.wav",
                "profile_id": P1,
                "profile_name": "x" * 150,
            },
            {"text": "no audio", "profile_id": "not-a-uuid", "status": "failed"},
        ],
    }
    profiles, generations = _plan(tmp_path, manifest, FILES)
    assert [p.id_hint for p in profiles] == [P1, P2]
    assert [s.id_hint for s in profiles[0].samples] == [S1]
    assert profiles[0].avatar_entry == "profiles/b.wav"
    assert profiles[0].avatar_sha256 == "0" * 64
    assert profiles[1].avatar_entry is None and profiles[1].samples == []
    first, second = generations
    assert (first.id_hint, first.entry, first.profile_id) == (G1, "generations/g.wav", P1)
    assert first.profile_name == "x" * 100
    assert (second.id_hint, second.entry, second.profile_id) == (None, None, None)
