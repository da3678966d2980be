"""Schemathesis against the app's own OpenAPI spec: no generated request may make the server answer 5xx.

Why: every route's contract (docs/api.md) says a bad request is a 4xx naming the problem and a 500 is a bug.
Hand-written tests only try the inputs their authors thought of; here schemathesis generates valid and invalid
requests (positive and negative modes) for every operation in the spec -- path and query values, JSON bodies,
multipart uploads, headers -- and every schemathesis check runs on each answer (``--checks all``: a 5xx, an
undocumented status, a body or header that violates the spec, refused valid data, accepted invalid data). It runs in-process over ASGI with the
fake engines, on one temp volume. Before each operation a real profile (sample, avatar) and a finished
generation are seeded, and half the generated requests aim their ids at them, so the fuzz reaches the code
behind the 404s (exports, favourites, deletes, audio conversion, generation) and not only the validation.

Why not schemathesis' pytest plugin (``schema.parametrize()``): it does not run on pytest 9 (it uses the
removed ``Node._nodeid``). The Python API (``operation.as_strategy``) with ``@given`` is the same generator.

Bounded on purpose (deterministic, no example database, ``VOICEBOX_FUZZ_EXAMPLES`` per operation, 20 by
default): a tripwire in CI, not an exhaustive fuzz. Raise the number for a longer local run.

It found: ``GET /history?offset=<huge>`` answered 500 (SQLite's 64-bit bind overflowed; ``offset`` is now
bounded, 422), and a non-audio sample upload answered 400 with the temp file's path on the volume in the
message (libsndfile's text; the path is now removed). docs/reliability.md lists the whole hostile corpus.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.generation.modes import GenerationMode

from backend.app import create_app
from backend.engines.manager import EngineManager
from backend.services.container import Services
from tests.support.api import (
    PNG_1PX,
    add_generation,
    api_settings_for,
    audio_bytes,
    fresh_volume,
    voicebox_v10_bundle,
)

MAX_EXAMPLES = int(os.environ.get("VOICEBOX_FUZZ_EXAMPLES", "20"))

load_all_checks()
#: every check schemathesis has (``--checks all``): undocumented statuses, schema violations, content types,
#: headers, positive data refused, negative data accepted, ... -- not only 5xx.
ALL_CHECKS = CHECKS.get_all()

#: Operations whose schema-valid requests may still be refused with 400, and why: the rule is about the
#: *content* of an upload or a name only the running server knows, which JSON Schema cannot state. Every other
#: check still runs on them; the 400 itself is documented (``ErrorResponse``).
MODEL_NAMES = (
    "model names are the server's catalogue: an unknown one is a 400 listing the known names"
)
CONTENT_CHECKED: dict[tuple[str, str], str] = {
    ("POST", "/profiles/{profile_id}/samples"): "the file must decode as 2-30 s of audio",
    ("POST", "/profiles/{profile_id}/avatar"): "the file must be a PNG, JPEG or WEBP image",
    ("POST", "/profiles/import"): "the file must be a valid bundle zip",
    ("POST", "/history/import"): "the file must be a valid bundle zip",
    ("POST", "/library/import"): "the file must be a valid bundle zip",
    ("POST", "/transcribe"): "the file must decode as audio",
    **{
        (
            method,
            path,
        ): "an effects chain's types and per-type parameter ranges are checked by the server"
        for method, path in (
            ("PUT", "/profiles/{profile_id}/effects"),
            ("POST", "/generate"),
            ("POST", "/generate/stream"),
            ("POST", "/effects/preview/{generation_id}"),
            ("POST", "/effects/presets"),
            ("PUT", "/effects/presets/{preset_id}"),
            ("POST", "/generations/{generation_id}/versions/apply-effects"),
        )
    },
    ("POST", "/generate/{generation_id}/regenerate"): "only a completed generation has a new take",
    ("POST", "/stories/{story_id}/items"): "only a completed generation goes into a story",
    ("PUT", "/stories/{story_id}/items/times"): "the generations named must be in the story",
    ("PUT", "/stories/{story_id}/items/{item_id}/trim"): "trims must leave some of the clip",
    (
        "POST",
        "/stories/{story_id}/items/{item_id}/split",
    ): "the split point must be inside the clip",
    (
        "PUT",
        "/stories/{story_id}/items/{item_id}/version",
    ): "a version of the clip's own generation",
    ("POST", "/models/download"): MODEL_NAMES,
    ("POST", "/models/download/cancel"): MODEL_NAMES,
    ("GET", "/models/progress/{model_name}"): MODEL_NAMES,
    ("POST", "/models/{model_name}/unload"): MODEL_NAMES,
    ("DELETE", "/models/{model_name}"): MODEL_NAMES,
    ("POST", "/v1/audio/speech"): (
        "model names include the configured VOICEBOX_TTS_MODEL (no static enum); response_format aac is "
        "OpenAI's and answered 400 saying why"
    ),
}

#: Operations not fuzzed, and why. (``GET /generate/{id}/status`` streams server-sent events until the
#: generation ends; it is fuzzed with ``stream=false`` forced, below.)
EXCLUDED: dict[tuple[str, str], str] = {
    ("POST", "/volume/probe"): (
        "a valid body runs the real volume probe (fsync/publish timings, a lease-takeover subprocess) and "
        "may wait up to 120 s for a peer by design; its validation is tested in "
        "tests/test_bootstrap.py::test_volume_probe_route"
    ),
}


def not_available_operations() -> set[tuple[str, str]]:
    """Upstream operations this server answers with the documented not-available 400 (``api/unavailable.py``):
    valid data is refused there by design, so "valid data accepted" does not apply; every other check does."""
    from backend.api.unavailable import build_router

    return {(m.upper(), r.path) for r in build_router().routes for m in r.methods}  # type: ignore[attr-defined]


def spec_operations() -> list[tuple[str, str]]:
    """(METHOD, path) of every operation, from the routers alone (collection must not touch a volume)."""
    from fastapi import FastAPI

    from backend.app import api_routers

    app = FastAPI()
    for router in api_routers():
        app.include_router(router)
    return [
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        for method in ops
        if method in {"get", "put", "post", "delete", "patch"}
    ]


OPERATIONS = spec_operations()
NOT_AVAILABLE = not_available_operations()


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, volume_template: Path) -> Iterator[Any]:
    """The real app with the fake engines on one temp volume (shared by every operation's test)."""
    root = tmp_path_factory.mktemp("fuzz")
    volume = fresh_volume(volume_template, root / "volume")
    # A short job timeout bounds ``POST /generate?wait=true`` on a real profile.
    settings_ = api_settings_for(
        volume, root / "local", VOICEBOX_JOB_TIMEOUT_SECONDS="20", VOICEBOX_LEASE_TIMEOUT="10"
    )
    services = Services.create(settings_, engines=EngineManager(settings_))
    (settings_.exports_dir / "seed.wav").write_bytes(audio_bytes(1.0))
    (settings_.imports_dir / "seed.zip").write_bytes(voicebox_v10_bundle(name="From volume"))
    app = create_app(settings_, services=services)
    try:
        yield app
    finally:
        from schemathesis.python import asgi

        asgi.shutdown_lifespans()
        services.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


@pytest.fixture
def known_ids(fuzz_app: Any) -> dict[str, str]:
    """Fresh rows for this operation (an earlier operation may have deleted the previous ones)."""
    with TestClient(fuzz_app) as client:
        r = client.post("/profiles/import", files={"file": ("b.zip", voicebox_v10_bundle(), "a/z")})
        assert r.status_code == 200, r.text
        profile = r.json()
        r = client.post(
            f"/profiles/{profile['id']}/avatar", files={"file": ("a.png", PNG_1PX, "image/png")}
        )
        assert r.status_code == 200, r.text
        sample_id = client.get(f"/profiles/{profile['id']}/samples").json()[0]["id"]
    services: Services = fuzz_app.state.services
    generation_id = add_generation(services, profile_id=profile["id"], profile_name=profile["name"])
    return {
        "profile_id": profile["id"],
        "sample_id": sample_id,
        "generation_id": generation_id,
        "name": "seed.wav",
    }


def _strategy(operation: Any, known: dict[str, str]) -> st.SearchStrategy:
    """Valid and invalid requests; half of them with their ids (path or JSON body) aimed at real rows."""

    def aim(pair: tuple[Any, bool]) -> Any:
        case, hit = pair
        if hit:
            for name in list(case.path_parameters or {}):
                if name in known:
                    case.path_parameters[name] = known[name]
            if isinstance(case.body, dict) and "profile_id" in case.body:
                case.body["profile_id"] = known["profile_id"]
        return case

    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return st.one_of(
        [st.tuples(operation.as_strategy(mode), st.booleans()).map(aim) for mode in modes]
    )


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_request_makes_a_server_error(
    fuzz_app: Any, api_schema: Any, known_ids: dict[str, str], method: str, path: str
) -> None:
    reason = EXCLUDED.get((method, path))
    if reason:
        pytest.skip(reason)
    operation = api_schema[path][method]
    seen: Counter[int] = Counter()
    checks = ALL_CHECKS
    if (method, path) in CONTENT_CHECKED or (method, path) in NOT_AVAILABLE:
        checks = [c for c in ALL_CHECKS if c.__name__ != "positive_data_acceptance"]
    volume = str(fuzz_app.state.settings.volume)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation, known_ids))
    def run(case: Any) -> None:
        if path == "/generate/{generation_id}/status":
            # SSE by default: a stream on a generation in progress only ends with the generation.
            case.query = {**(case.query or {}), "stream": "false"}
        response = case.call()  # an exception inside the app propagates here: a failure as well
        seen[response.status_code] += 1
        case.validate_response(response, checks=checks)
        assert response.status_code < 500, (response.status_code, response.text[:500])
        if response.status_code >= 400:  # docs/api.md: no answer contains a server path
            assert volume not in response.text, response.text[:500]

    run()
    assert seen, "no request was generated"
    if os.environ.get("VOICEBOX_FUZZ_REPORT"):
        with open(os.environ["VOICEBOX_FUZZ_REPORT"], "a", encoding="utf-8") as report:
            print(method, path, sorted(seen.items()), file=report)
